/*
 * padec: paged-attention decode over a paged KV cache.
 *
 * One public C header. The flow is one way:
 *   padec_params + kv_lens -> padec_plan_layout_init (sizes) -> padec_plan_build (schedule, into
 *   caller memory) -> an executor (padec_cpu_run here, padec_cuda_run in padec_cuda.h).
 *
 * Contract for every function: it never aborts, never allocates, and reports failure through a
 * padec_status. On error nothing is written to any output argument. The detail of an error (which
 * argument, which values) goes to the log callback and to padec_last_message().
 */
#ifndef PADEC_H
#define PADEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PADEC_VERSION_MAJOR 0
#define PADEC_VERSION_MINOR 5
#define PADEC_VERSION_PATCH 0
#define PADEC_VERSION_NUMBER \
  (PADEC_VERSION_MAJOR * 10000 + PADEC_VERSION_MINOR * 100 + PADEC_VERSION_PATCH)

/* Returns PADEC_VERSION_NUMBER of the library actually linked. */
unsigned padec_version_number(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. Values are pinned and grouped: 0 ok; 1xx caller input; 2xx resources and
 * contract; 3xx device; 9xx internal.
 * ------------------------------------------------------------------------------------------- */
#define PADEC_STATUS_TABLE(X)                                                                    \
  X(PADEC_STATUS_OK, 0, "success")                                                               \
  X(PADEC_STATUS_NULL_POINTER, 100, "a required pointer argument is null")                       \
  X(PADEC_STATUS_MISALIGNED_POINTER, 101, "a pointer is not aligned as its element type needs")  \
  X(PADEC_STATUS_BAD_HEAD_COUNT, 102,                                                            \
    "head counts are inconsistent: num_q_heads must be a positive multiple of num_kv_heads")    \
  X(PADEC_STATUS_UNSUPPORTED_HEAD_DIM, 103, "head_dim must be 64, 128 or 256")                  \
  X(PADEC_STATUS_UNSUPPORTED_DTYPE, 104, "a dtype is not supported in that role")               \
  X(PADEC_STATUS_BAD_PAGE_SIZE, 105, "page_size must be a power of two from 1 to 1024")         \
  X(PADEC_STATUS_BAD_Q_LEN, 106, "q_len must be from 1 to 4")                                    \
  X(PADEC_STATUS_BAD_ARGUMENT, 107, "an argument is outside its documented range")              \
  X(PADEC_STATUS_KV_LEN_EXCEEDS_PAGES, 108,                                                      \
    "a kv_len is negative or needs more pages than the block table gives its sequence")        \
  X(PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, 109, "a page id is outside the page pool")             \
  X(PADEC_STATUS_BAD_SCALES, 110, "fp8 scales are missing, not finite, or given for a non-fp8 cache") \
  X(PADEC_STATUS_WORKSPACE_TOO_SMALL, 200, "a plan or workspace buffer is smaller than required") \
  X(PADEC_STATUS_PLAN_MISMATCH, 201,                                                             \
    "the plan was built for other parameters, another batch or another worker count")          \
  X(PADEC_STATUS_SIZE_OVERFLOW, 202, "a size or count does not fit the metadata's int32 fields")  \
  X(PADEC_STATUS_NOT_BUILT_WITH_CUDA, 300, "this padec library was built without CUDA")          \
  X(PADEC_STATUS_CUDA_ERROR, 301, "a CUDA runtime call failed")                                  \
  X(PADEC_STATUS_NO_DEVICE, 302, "no CUDA device is available")                                  \
  X(PADEC_STATUS_UNSUPPORTED_DEVICE, 303, "the CUDA device is older than padec's kernels need")  \
  X(PADEC_STATUS_INTERNAL, 900, "internal error in padec")

typedef enum padec_status {
#define PADEC_STATUS_ENUM_(name, value, message) name = value,
  PADEC_STATUS_TABLE(PADEC_STATUS_ENUM_)
#undef PADEC_STATUS_ENUM_
} padec_status;

/* "PADEC_STATUS_OK", ...; "PADEC_STATUS_UNKNOWN" for a value outside the table. Static strings. */
const char *padec_status_name(padec_status status);
/* One-line description of the status. Static string. */
const char *padec_status_str(padec_status status);

/* Optional log callback: receives the detailed message of every failing call (which argument,
 * which values). Global; set it before using padec from several threads. NULL turns it off. */
typedef void (*padec_log_fn)(void *user, padec_status status, const char *message);
void padec_set_log_callback(padec_log_fn fn, void *user);

/* The detailed message of this thread's last padec call if it failed; a call that succeeds
 * clears it (""). Valid until the next padec call on this thread. */
const char *padec_last_message(void);

/* ---------------------------------------------------------------------------------------------
 * Parameters of one attention layer. Zero-initialised fields take the defaults noted.
 * ------------------------------------------------------------------------------------------- */
typedef enum padec_dtype {
  PADEC_DTYPE_BF16 = 0, /* default */
  PADEC_DTYPE_FP16 = 1,
  PADEC_DTYPE_FP32 = 2, /* output only */
  PADEC_DTYPE_E4M3 = 3  /* KV cache only: fp8 e4m3 (OCP "fn": no infinities, 0x7f/0xff are NaN) */
} padec_dtype;

typedef enum padec_layout {
  PADEC_LAYOUT_NHD = 0, /* default: [num_pages, page_size, num_kv_heads, head_dim] */
  PADEC_LAYOUT_HND = 1  /* [num_pages, num_kv_heads, page_size, head_dim] */
} padec_layout;

typedef enum padec_fp8_scale_mode {
  PADEC_FP8_SCALE_NONE = 0,              /* default: the fp8 values are used as they are */
  PADEC_FP8_SCALE_PER_TENSOR = 1,        /* params.k_scale and params.v_scale */
  PADEC_FP8_SCALE_PER_TENSOR_DEVICE = 2, /* one float each at tensors.k_scales/v_scales, read at
                                            run time (a captured graph sees new values) */
  PADEC_FP8_SCALE_PER_TOKEN = 3          /* float [num_pages, num_kv_heads, page_size] each */
} padec_fp8_scale_mode;

typedef struct padec_params {
  int32_t num_q_heads;  /* query heads; a positive multiple of num_kv_heads, at most 4096, with
                           q_len x (num_q_heads / num_kv_heads) at most 64 (the query rows of one
                           KV head, which the GPU kernels hold at once) */
  int32_t num_kv_heads; /* KV heads; q head h reads KV head h / (num_q_heads / num_kv_heads) */
  int32_t head_dim;     /* elements per head: 64, 128 or 256 */
  int32_t page_size;    /* tokens per page: a power of two from 1 to 1024 */
  padec_layout kv_layout;
  padec_dtype q_dtype;  /* bf16 or fp16 */
  padec_dtype kv_dtype; /* bf16, fp16 or e4m3 */
  padec_dtype o_dtype;  /* bf16, fp16 or fp32 */
  int32_t q_len;        /* new query tokens per sequence, 1..4; 0 means 1 */
  int32_t window_left;  /* sliding window W in tokens: query i of a sequence of length L sees
                           positions [L - q_len + i - W, L - q_len + i]; 0 means no window */
  float softmax_scale;  /* multiplies q.k; 0 means 1 / sqrt(head_dim) */
  padec_fp8_scale_mode fp8_scale_mode; /* e4m3 caches only */
  float k_scale;        /* PADEC_FP8_SCALE_PER_TENSOR: dequantised K = fp8 value * k_scale */
  float v_scale;        /* PADEC_FP8_SCALE_PER_TENSOR: dequantised V = fp8 value * v_scale */
} padec_params;

/* Checks params on their own (head counts, dims, dtypes, page size, q_len, window, scales). */
padec_status padec_params_validate(const padec_params *params);

/* ---------------------------------------------------------------------------------------------
 * Plans. A plan is plain data in one caller-owned buffer: a padec_plan_header followed by the
 * metadata arrays (int32) at the offsets of padec_plan_layout. It holds offsets, never pointers,
 * so it can be copied, compared with memcmp and uploaded to a device as it is.
 * ------------------------------------------------------------------------------------------- */
typedef enum padec_policy {
  PADEC_POLICY_EVEN = 0, /* default: equal partitions per worker (the seed's algorithm) */
  /* Balances predicted time instead of partitions (padec_cost_model): every work item pays a
   * fixed start-up and every piece of a split sequence its partial write and merge share, so the
   * workers given many short sequences are not the last to finish. Bins of equal cost capacity,
   * the smallest with which the greedy fill fits, are filled in sequence order; a sequence is
   * split only where a bin's capacity ends inside it, and never into a piece whose partitions
   * cost less than the item and split overhead the split adds. Same buffers and size bounds as
   * `even`. The host scheduler only (padec_cuda_plan_build builds the even policy). */
  PADEC_POLICY_COST = 1,
  /* Split points depend only on the sequence: a sequence of P scheduled partitions is cut into
   * pieces of max(4, ceil(P / 32)) partitions, whatever else is in the batch and whatever the
   * worker count, and its splits merge in a fixed order. A sequence's output and LSE are then
   * bitwise the same in any batch (on the same executor and GPU model). The pieces are dealt to
   * workers in order, balancing partitions. The host scheduler only (padec_cuda_plan_build
   * builds the even policy). */
  PADEC_POLICY_BATCH_INVARIANT = 2
} padec_policy;

/* The batch-invariant policy's piece rule, exposed so that tests and callers can reason about
 * it: pieces of at least this many partitions, and at most this many pieces per sequence. */
#define PADEC_BATCH_INVARIANT_MIN_PIECE_PARTITIONS 4
#define PADEC_BATCH_INVARIANT_MAX_PIECES 32

/* The cost policy's model of a worker's time. A work item of p partitions costs
 *   item_ns + p * partition_ns * scale, plus split_ns when it is one piece of a split sequence,
 * where scale = (partition_tokens / 256) * (head_dim / 128) * (KV element bytes / 2) is the
 * K and V bytes a partition moves relative to the reference partition: 256 tokens of one KV head
 * at head_dim 128 in bf16 (128 KiB). Times are per worker while every worker is busy, in
 * nanoseconds; only their ratios shape a schedule. The defaults (padec_cost_model_default) are
 * for Hopper (H100, H200) and come from the calibration benchmark, `padec bench --calibrate`,
 * which fits the three constants to decode times measured on the device and prints them as a
 * replacement (docs/PERF.md tells which defaults are measured and on which device). */
typedef struct padec_cost_model {
  double partition_ns; /* one reference partition; finite, > 0 */
  double item_ns;      /* start-up of every work item: its metadata, the Q load, page-table
                          lookups, pipeline fill and epilogue; finite, >= 0 */
  double split_ns;     /* each piece of a split sequence: its partial write and its share of the
                          merge; finite, >= 0 */
} padec_cost_model;

/* Writes the default model (Hopper) to *model. Errors: NULL_POINTER. */
padec_status padec_cost_model_default(padec_cost_model *model);

typedef struct padec_plan_options {
  int32_t num_workers;      /* bins of the schedule (one CTA each on the GPU), 1..65536 */
  int32_t partition_tokens; /* tokens per partition, a power of two 16..16384; 0 means 256 */
  padec_policy policy;
  const padec_cost_model *cost_model; /* cost policy: NULL means padec_cost_model_default; read
                                         by padec_plan_layout_init, not kept */
} padec_plan_options;

/* Sizes and offsets of a plan; a function of (params, batch, options) alone, so buffers can be
 * allocated once for the largest batch and reused (and captured in a CUDA graph). */
typedef struct padec_plan_layout {
  int32_t batch;            /* sequences */
  int32_t num_workers;
  int32_t num_kv_heads;
  int32_t num_q_heads;
  int32_t head_dim;
  int32_t q_len;
  int32_t partition_tokens;
  int32_t policy;           /* padec_policy */
  uint64_t params_key;      /* fingerprint of the schedule-shaping fields of padec_params (heads,
                               head_dim, q_len, window; for the cost policy the KV dtype's size
                               too, which scales its units) */
  int32_t max_works;        /* rows of work_info */
  int32_t max_partial_slots; /* entries of reduce_partial_map */
  int32_t max_partial_rows;  /* rows of the partial buffers: max_partial_slots * q_len */
  /* The cost policy's model in integer units, scaled for this layout's head_dim, KV dtype and
   * partition_tokens: a partition costs cost_partition (1024), a work item cost_item more, a
   * piece of a split sequence cost_split more still (each 0..2^30; cost_partition is always
   * 1024). 0 for the other policies. */
  int32_t cost_partition;
  int32_t cost_item;
  int32_t cost_split;
  size_t work_indptr_offset;        /* int32 [num_workers + 1], bytes from the plan start */
  size_t work_info_offset;          /* int32 [max_works][8] */
  size_t reduce_indptr_offset;      /* int32 [batch + 1] */
  size_t reduce_final_map_offset;   /* int32 [batch][2] */
  size_t reduce_partial_map_offset; /* int32 [max_partial_slots] */
  size_t partition_indptr_offset;   /* int32 [batch + 1] */
  size_t plan_bytes;                /* whole plan buffer */
  size_t partial_o_offset;   /* in the workspace: float [max_partial_rows, num_q_heads, head_dim] */
  size_t partial_lse_offset; /* in the workspace: float [max_partial_rows, num_q_heads] */
  size_t merge_counters_offset; /* in the workspace: int32 [batch][num_kv_heads], GPU only */
  size_t workspace_bytes;    /* whole workspace buffer, at least 256 */
} padec_plan_layout;

/* Fills *layout. Errors: NULL_POINTER, the padec_params_validate errors, BAD_ARGUMENT (batch
 * outside 0..2^24, workers outside 1..65536, partition_tokens not a power of two 16..16384, an
 * unknown policy, a cost model with a time that is not finite, negative, or a partition_ns of 0
 * or below, or one that the layout's scale, from 1/128 to 128 times, takes past the largest
 * double or down to 0; the model is checked whatever the policy), SIZE_OVERFLOW. */
padec_status padec_plan_layout_init(const padec_params *params, int32_t batch,
                                    const padec_plan_options *options, padec_plan_layout *layout);

/* Header at the start of every plan buffer (64 bytes). */
#define PADEC_PLAN_MAGIC 0x43454450u /* "PDEC" */
typedef struct padec_plan_header {
  uint32_t magic;
  uint32_t version; /* PADEC_VERSION_NUMBER of the builder */
  uint64_t params_key;
  int32_t batch;
  int32_t num_workers;
  int32_t num_kv_heads;
  int32_t q_len;
  int32_t partition_tokens;
  int32_t policy;
  int32_t num_works;         /* rows of work_info in use */
  int32_t num_partial_slots; /* entries of reduce_partial_map in use */
  int32_t num_groups;        /* reduce groups in use (sequences that were split) */
  int32_t num_partitions;    /* scheduled partitions of one KV head: partition_indptr[batch] */
  int32_t reserved_[2];
} padec_plan_header;

/* Builds the schedule for kv_lens (host memory, [layout->batch], tokens including the new query
 * tokens) into plan (host memory, layout->plan_bytes or more, 16-byte aligned). Deterministic:
 * the same inputs give the same bytes. Unused tail rows are zero. Errors: NULL_POINTER,
 * MISALIGNED_POINTER (plan; kv_lens and the shard arrays need 4 bytes), PLAN_MISMATCH (params
 * differ from the layout's, a cost layout's KV dtype among them, or the layout is not field for
 * field what padec_plan_layout_init makes for its batch, workers, partition tokens and policy),
 * WORKSPACE_TOO_SMALL, BAD_ARGUMENT (a negative kv_len; lengths inside the plan buffer, which
 * is cleared before they are read; a layout of the cost policy whose cost_item or cost_split is
 * out of range), SIZE_OVERFLOW. */
padec_status padec_plan_build(const padec_params *params, const padec_plan_layout *layout,
                              const int32_t *kv_lens, void *plan, size_t plan_bytes);

/* padec_plan_build for one shard of context-parallel decode: sequence b holds kv_lens[b] tokens
 * at positions [shard_starts[b], shard_starts[b] + kv_lens[b]) of a sequence of seq_lens[b]
 * tokens (see padec_tensors.shard_starts). With a window, only the shard's partitions that some
 * query sees are scheduled; a shard wholly before every window gets no partitions (its rows come
 * out empty: output 0, LSE -inf). Both NULL is padec_plan_build. Additional errors: NULL_POINTER
 * (one of the two arrays NULL), BAD_ARGUMENT (a negative shard start, or a shard that ends past
 * its sequence), naming the sequence. */
padec_status padec_plan_build_shard(const padec_params *params, const padec_plan_layout *layout,
                                    const int32_t *kv_lens, const int32_t *shard_starts,
                                    const int32_t *seq_lens, void *plan, size_t plan_bytes);

/* Typed views into a plan buffer (pointers derived from the layout's offsets). */
typedef struct padec_plan_view {
  const padec_plan_header *header;
  const int32_t *work_indptr;        /* [num_workers + 1] */
  const int32_t *work_info;          /* [max_works][8]: batch, partial_qo_loc (-1: direct),
                                        qo_start, qo_end, kv_start, kv_end (partitions, global
                                        cumulative), kv_offset (0), q_head_range (end<<16|start) */
  const int32_t *reduce_indptr;      /* [batch + 1] */
  const int32_t *reduce_final_map;   /* [batch][2]: output rows [start, end) of each group */
  const int32_t *reduce_partial_map; /* [max_partial_slots]: first partial row of each split */
  const int32_t *partition_indptr;   /* [batch + 1]: cumulative scheduled partitions */
} padec_plan_view;

/* Fills *view for a plan built with this layout (host memory, 16-byte aligned). Errors, with
 * *view untouched: NULL_POINTER, MISALIGNED_POINTER, PLAN_MISMATCH (a layout that
 * padec_plan_layout_init did not make, a plan whose header is not this layout's, or a body that
 * no build makes: index arrays that do not start at 0, decrease or do not end at the header's
 * counts; a work item whose sequence, rows, partitions, query heads or partial slot leave the
 * layout or its own sequence's; a reduce group whose rows or partial rows leave the buffers).
 * padec_cpu_run, padec_plan_predict and padec_cuda_upload_plan check a plan this way. */
padec_status padec_plan_view_init(const padec_plan_layout *layout, const void *plan,
                                  padec_plan_view *view);

/* The predicted time of every worker of a built plan under a cost model, in nanoseconds: the sum
 * over the worker's items of their padec_cost_model cost, scaled for params.head_dim,
 * params.kv_dtype and the layout's partition_tokens (an item with partial_qo_loc >= 0 is a piece
 * of a split sequence). Plans of every policy, so that schedules can be compared under one
 * model. model NULL: the default. worker_ns: host memory, [layout->num_workers]. Errors:
 * NULL_POINTER, MISALIGNED_POINTER (worker_ns), the params errors, PLAN_MISMATCH (params,
 * layout and plan do not belong together; checked before the model), BAD_ARGUMENT (the model,
 * as padec_plan_layout_init checks it, or times so large that a worker's sum is not finite);
 * on error worker_ns is not written. */
padec_status padec_plan_predict(const padec_params *params, const padec_plan_layout *layout,
                                const void *plan, const padec_cost_model *model,
                                double *worker_ns);

/* The first scheduled partition of a sequence of kv_len tokens: with a window, partitions that
 * lie wholly before every query's window are not scheduled. Partition p covers tokens
 * [p * partition_tokens, (p + 1) * partition_tokens). */
int32_t padec_first_partition(int32_t kv_len, int32_t q_len, int32_t window_left,
                              int32_t partition_tokens);
/* Number of scheduled partitions of one sequence (0 for kv_len 0). */
int32_t padec_num_partitions(int32_t kv_len, int32_t q_len, int32_t window_left,
                             int32_t partition_tokens);

/* ---------------------------------------------------------------------------------------------
 * The grid path: no plan. Every (sequence, KV head, split) is one independent block of work: a
 * sequence's P scheduled partitions are cut into num_splits ranges of ceil(P / num_splits)
 * partitions (trailing ranges may be empty), each range writes a partial result, and the ranges
 * of a (sequence, KV head) are merged in split order. With num_splits = 1 every block writes the
 * final output. Nothing is computed on the host from the lengths, so the lengths may live on the
 * device only; the price is a split count fixed for the whole batch.
 * ------------------------------------------------------------------------------------------- */
typedef struct padec_grid_layout {
  int32_t batch;
  int32_t num_splits;       /* 1..1024 */
  int32_t num_kv_heads;
  int32_t num_q_heads;
  int32_t head_dim;
  int32_t q_len;
  int32_t partition_tokens; /* split granularity: splits are whole partitions (windows too) */
  int32_t reserved_;
  uint64_t params_key;
  /* The partials and counters are reserved only with num_splits > 1 (0 rows and 0 counters
   * otherwise: every block writes the final output). */
  size_t partial_o_offset;      /* float [batch * num_splits * q_len, num_q_heads, head_dim] */
  size_t partial_lse_offset;    /* float [batch * num_splits * q_len, num_q_heads] */
  size_t merge_counters_offset; /* int32 [batch][num_kv_heads], GPU only */
  size_t workspace_bytes;       /* whole workspace buffer, at least 256 */
} padec_grid_layout;

/* Fills *layout. Errors: NULL_POINTER, the params errors, BAD_ARGUMENT (batch outside
 * 0..2^24, num_splits outside 1..1024, partition_tokens not a power of two 16..16384, 0 = 256),
 * SIZE_OVERFLOW (2^31 blocks or more, or 2^29 partial rows or more). */
padec_status padec_grid_layout_init(const padec_params *params, int32_t batch, int32_t num_splits,
                                    int32_t partition_tokens, padec_grid_layout *layout);

/* The split count the grid path uses when the caller has no better one: enough blocks for
 * `num_workers` concurrent CTAs (padec_cuda_recommended_workers), ceil(num_workers / (batch x
 * num_kv_heads)), at least 1 and at most 64; with a window at most the partitions a window
 * spans plus one (more splits would be empty). It cannot fail: params that padec_params_validate
 * refuses, a batch or num_workers below 1 give 1, and a partition_tokens that
 * padec_grid_layout_init refuses counts as the default 256, all without a message or a log call
 * (padec_grid_layout_init reports them). */
int32_t padec_grid_recommended_splits(const padec_params *params, int32_t batch,
                                      int32_t num_workers, int32_t partition_tokens);

/* ---------------------------------------------------------------------------------------------
 * `auto`: path and policy picked from the shape. The rule and the benchmark table behind it are in
 * docs/PERF.md ("Policies and paths"); `padec bench --compare` prints the table for any workload.
 * ------------------------------------------------------------------------------------------- */
typedef enum padec_path {
  PADEC_PATH_PERSISTENT = 0, /* a plan (padec_plan_build) and padec_cpu_run / padec_cuda_run */
  PADEC_PATH_GRID = 1        /* no plan: padec_cpu_run_grid / padec_cuda_run_grid */
} padec_path;

typedef struct padec_choice {
  padec_path path;
  padec_plan_options plan_options; /* PERSISTENT: workers, partition size, policy (cost_model
                                      NULL) */
  int32_t grid_splits;             /* GRID: num_splits for padec_grid_layout_init */
  int32_t partition_tokens;        /* both paths */
} padec_choice;

/* What `auto` knows of the device: its SMs (padec_cuda_device_info.sm_count) and its peak memory
 * bandwidth (padec_cuda_device_info.memory_bytes_per_second); 0 for either means unknown. */
typedef struct padec_device_shape {
  int32_t sm_count;
  int64_t memory_bytes_per_second;
} padec_device_shape;

/* Picks the path, policy and worker count for a batch. kv_lens: host lengths [batch], or NULL
 * when they live on the device only (then the choice depends on the shape alone and is one the
 * device scheduler or the grid path can run). num_workers: concurrent CTAs of the device
 * (padec_cuda_recommended_workers). device: its SMs and memory bandwidth (padec_cuda_device_query).
 * A plan gets num_workers workers, except where the batch has at least one and no more
 * (sequence, KV head) pairs than device->sm_count and num_workers exceeds it: then one CTA an SM
 * (fewer splits, less to merge). That is the grid path with floor(sm_count / pairs) splits
 * (capped at a window's span and, when kv_lens is given, at the longest sequence's partitions)
 * where those blocks leave at most 1/16 of the SMs idle and the lengths are not skewed; else a
 * plan of sm_count rounded down to a multiple of num_kv_heads workers. Not on a device of more
 * than 30 GB/s of memory bandwidth an SM (an H200; the H100 SXM has 25.4) where, with kv_lens
 * given, a CTA would stream more than 1.5 MiB: a lone CTA an SM cannot keep enough bytes in
 * flight for that, and the plan keeps num_workers. With an fp8
 * cache, more pairs than sm_count but fewer than num_workers, and lengths not skewed (or not
 * given), the grid path with one split instead of a plan. Query
 * the device once per device and params (the queries are slow); this call is host arithmetic,
 * cheap enough for every decode step. Deterministic; reads nothing else. Errors: the params
 * errors, NULL_POINTER (device, choice), MISALIGNED_POINTER (kv_lens not 4-byte aligned),
 * BAD_ARGUMENT (batch outside 0..2^24, num_workers outside 1..65536, device->sm_count outside
 * 0..65536, a negative device->memory_bytes_per_second, a negative kv_len). */
padec_status padec_choose_for_device(const padec_params *params, int32_t batch,
                                     const int32_t *kv_lens, int32_t num_workers,
                                     const padec_device_shape *device, padec_choice *choice);

/* padec_choose_for_device with the SMs only (sm_count, 0 when unknown) and the memory bandwidth
 * unknown: the rules of an H100. Errors: BAD_ARGUMENT (sm_count outside 0..65536), then those of
 * padec_choose_for_device. */
padec_status padec_choose_on_device(const padec_params *params, int32_t batch,
                                    const int32_t *kv_lens, int32_t num_workers, int32_t sm_count,
                                    padec_choice *choice);

/* padec_choose_on_device with sm_count 0: the plan keeps num_workers workers. */
padec_status padec_choose(const padec_params *params, int32_t batch, const int32_t *kv_lens,
                          int32_t num_workers, padec_choice *choice);

/* ---------------------------------------------------------------------------------------------
 * Tensors of one run. Every pointer is host memory for padec_cpu_run and device memory for
 * padec_cuda_run. Element strides of q and o may be given, and the distance between the pages of
 * the KV pools (kv_page_stride), so that K and V may share one allocation.
 * ------------------------------------------------------------------------------------------- */
typedef struct padec_tensors {
  const void *q;          /* [batch * q_len tokens][num_q_heads][head_dim], q_dtype */
  int64_t q_stride_token; /* elements between tokens; 0 means num_q_heads * head_dim */
  int64_t q_stride_head;  /* elements between heads; 0 means head_dim */
  const void *k_pages;    /* K pool, kv_dtype, in params.kv_layout, 16-byte aligned */
  const void *v_pages;    /* V pool, same shape and kv_page_stride */
  int64_t num_pages;      /* pages in each pool */
  const int32_t *page_indptr;  /* [batch + 1], in pages: sequence b owns page_indices[indptr[b]..] */
  const int32_t *page_indices; /* [page_indptr[batch]], page ids in [0, num_pages) */
  const int32_t *kv_lens;      /* [batch], tokens, the new query tokens included. A length L
                                  below q_len is taken as it is: query i sees the positions
                                  up to L - q_len + i, so rows i < q_len - L see no token
                                  (output 0, LSE -inf) */
  const float *k_scales;  /* PER_TOKEN: [num_pages][num_kv_heads][page_size]; PER_TENSOR_DEVICE:
                             one float; otherwise unused. Per-token values are cache data, like
                             K and V: read as they are, never checked (a NaN scale, like a NaN
                             in K or V, spoils every row that sees its token: NaN output, and
                             for K a NaN LSE; on the GPU a NaN V also spoils the output of
                             every row of its sequence and KV head that masks its token, at
                             q_len > 1 or a window's edge: docs/DESIGN.md, "Numerics").
                             The PER_TENSOR_DEVICE value is checked
                             by the CPU executors (BAD_SCALES) and read as data on the GPU */
  const float *v_scales;  /* same as k_scales, for V */
  void *o;                /* [batch * q_len][num_q_heads][head_dim], o_dtype */
  int64_t o_stride_token; /* elements; 0 means num_q_heads * head_dim */
  int64_t o_stride_head;  /* elements; 0 means head_dim */
  float *lse;             /* optional [batch * q_len][num_q_heads], natural log; -inf where a row
                             sees no token */
  /* Context-parallel shards (optional; both NULL for whole sequences). When a sequence's KV cache
   * is split by position across several runs (GPUs), each run holds one contiguous range of it:
   * here sequence b's kv_lens[b] cached tokens are positions [shard_starts[b], shard_starts[b] +
   * kv_lens[b]) of a sequence whose whole length (the new query tokens included) is seq_lens[b].
   * The query tokens keep their positions seq_lens[b] - q_len + i, so the causal rule and the
   * window apply as in the unsharded sequence. kv_lens[b] may be 0 (nothing of b on this shard).
   * Need 0 <= shard_starts[b] and shard_starts[b] + kv_lens[b] <= seq_lens[b]. Give the plan the
   * same arrays (padec_plan_build_shard). The merge (padec_cpu_merge_shards,
   * padec_cuda_merge_shards) weighs each shard by its LSE, so set lse; and it takes fp32
   * partials: run shards with o_dtype FP32 (a 16-bit o would add its rounding before the merge,
   * and the merge does not read it). Neither is enforced here. */
  const int32_t *shard_starts; /* [batch] */
  const int32_t *seq_lens;     /* [batch] */
  /* Optional, for GPU runs (the CPU executors do not use it). Device memory, int32, at least
   * batch * num_kv_heads entries, 4-byte aligned: the arrival counters of the merge that the last
   * split of a group runs inside the decode kernel. They must be zero before the first run that
   * uses them (cudaMemset once, after allocation); the CTA that merges a group sets its counter
   * back to zero, so every run that completes leaves them all zero, for the next run, a CUDA
   * graph replay, or the other path (padec_cuda_run and padec_cuda_run_grid index them the same
   * way). A run with splits is then one kernel launch. Size them for the largest batch and keep
   * one array per stream: two runs in flight at once must not share it. After a kernel fault
   * (a CUDA error from the stream) zero them again. NULL: the counters live in the workspace and
   * a small kernel clears them before each run with splits (one more launch). */
  int32_t *merge_counters;
  /* Optional: the entries page_indices holds. When > 0, the host and device block-table checks
   * (padec_validate_kv_host, padec_cpu_run, padec_cuda_validate_kv) refuse a page_indptr[batch]
   * above it, which would read past the array; 0 trusts page_indptr[batch] as its length (so an
   * empty page_indices needs page_indptr all 0); negative values are refused. The Python binding
   * always sets it, and on host arrays refuses an empty array that page_indptr names pages of
   * (on CUDA tensors only validate_kv reads page_indptr to check that). */
  int64_t num_page_indices;
  /* Optional: elements from the start of a page to the start of the next, in both pools; 0 means
   * one page (page_size * num_kv_heads * head_dim: contiguous pools). Within a page the layout
   * is params.kv_layout. A cache that keeps a block's K and V side by side,
   * [num_pages][2][page_size][num_kv_heads][head_dim] (or HND within the page), is k_pages =
   * the base, v_pages = the base + one page, kv_page_stride = two pages. Need kv_page_stride >=
   * one page and below 2^32 bytes (BAD_ARGUMENT otherwise), and kv_page_stride x the element
   * size a multiple of 16 bytes, so that every page stays 16-byte aligned (MISALIGNED_POINTER
   * otherwise). Per-token scales stay [num_pages][num_kv_heads][page_size].
   * Every executor takes it (the CPU executors, padec_cuda_run, padec_cuda_run_grid). */
  int64_t kv_page_stride;
} padec_tensors;

/* Runs a plan on the CPU: every work item computes its partial (or the final output for direct
 * items), then the merge combines each group with log-sum-exp weights in a fixed order. fp32
 * accumulation. Validates everything first (pointers, alignment, plan against params and layout,
 * every page id, every kv_len against its pages, and outputs that would be written over each
 * other, over q, the K or V pool or the workspace, or anything the run writes over the plan,
 * the block table, the lengths or the scales: BAD_ARGUMENT naming both); on error writes
 * nothing.
 * workspace: host
 * memory of layout->workspace_bytes or more, 16-byte aligned. Single-threaded; safe to call from
 * several threads on distinct outputs and workspaces. Allocates nothing: its buffers take about
 * 100 KiB of the calling thread's stack (a 128 KiB thread stack is enough; tests/cpu/
 * test_small_stack.c). */
padec_status padec_cpu_run(const padec_params *params, const padec_plan_layout *layout,
                           const void *plan, const padec_tensors *tensors, void *workspace,
                           size_t workspace_bytes);

/* The shard results of context-parallel decode, stacked, and where their combination goes.
 * Every shard ran over the same batch (rows = batch * q_len query tokens) with the same params. */
typedef struct padec_shard_merge_tensors {
  int32_t num_shards;      /* R >= 1 */
  int32_t rows;            /* query tokens of the batch (batch * q_len) */
  const float *shard_o;    /* [R][rows][num_q_heads][head_dim]: each shard's o (o_dtype FP32) */
  const float *shard_lse;  /* [R][rows][num_q_heads]: each shard's lse */
  void *o;                 /* [rows][num_q_heads][head_dim], params.o_dtype */
  int64_t o_stride_token;  /* elements; 0 means num_q_heads * head_dim */
  int64_t o_stride_head;   /* elements; 0 means head_dim */
  float *lse;              /* optional [rows][num_q_heads] */
} padec_shard_merge_tensors;

/* Combines R shard results with log-sum-exp weights, shards in rank order 0..R-1 (deterministic:
 * the same bytes on every run and every rank). A row that no shard sees gets output 0 and LSE
 * -inf. The same arithmetic as the merge of split work items. Errors: the params errors,
 * NULL_POINTER, MISALIGNED_POINTER (shard_o: 16 bytes; shard_lse, lse: 4 bytes; o: its dtype),
 * BAD_ARGUMENT (num_shards < 1, rows < 0, shard_o * R beyond 2^62 bytes, o strides whose
 * elements overlap, o and lse overlapping each other, shard_o or shard_lse). */
padec_status padec_cpu_merge_shards(const padec_params *params,
                                    const padec_shard_merge_tensors *tensors);

/* Runs the grid path on the CPU: the same blocks and merge as padec_cuda_run_grid. Validates like
 * padec_cpu_run (layout against params: PLAN_MISMATCH; tensors; every page id and kv_len); on
 * error writes nothing. workspace: host memory of layout->workspace_bytes, 16-byte aligned. */
padec_status padec_cpu_run_grid(const padec_params *params, const padec_grid_layout *layout,
                                const padec_tensors *tensors, void *workspace,
                                size_t workspace_bytes);

/* Checks caller data on the host: every kv_len against its pages, every page id against the
 * pool, and the shard arrays when given (both or neither; 0 <= shard_starts[b] and
 * shard_starts[b] + kv_lens[b] <= seq_lens[b]), naming the first offending sequence in the
 * message. padec_cpu_run calls it. A negative tensors->num_pages is BAD_ARGUMENT. */
padec_status padec_validate_kv_host(const padec_params *params, int32_t batch,
                                    const padec_tensors *tensors);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_H */
