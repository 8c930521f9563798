/* Internal helpers shared by the library's C sources (never included by nvcc-compiled kernels
 * except through the launch glue). */
#ifndef PADEC_INTERNAL_H
#define PADEC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "padec.h"

#if defined(__GNUC__) || defined(__clang__)
#define PADEC_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define PADEC_PRINTF(fmt_index, first_arg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records the detailed message of a failure (thread-local, and to the log callback) and returns
 * status, so that error paths read `return padec__fail(STATUS, "...", ...)`. */
padec_status padec__fail(padec_status status, const char *format, ...) PADEC_PRINTF(2, 3);

/* While muted, padec__fail records its message but does not call the log callback: for a
 * public function called as a check, whose failure the caller reports in its own words. */
void padec__mute_log(bool muted);

/* Clears this thread's last message (called on entry of public functions that succeed). */
void padec__clear_message(void);

/* params with defaults applied (q_len, softmax_scale). Validate first. */
padec_params padec__params_normalized(const padec_params *params);

/* Scheduled partitions of a sequence (or shard) of kv_len cached tokens whose query tokens end
 * at position query_end counted from its first cached token (query_end = kv_len for a whole
 * sequence; seq_len - shard_start for a shard): partitions of [0, kv_len) that the window of
 * some query reaches. padec_num_partitions(kv_len, ...) is the case query_end = kv_len. */
int32_t padec__shard_num_partitions(int32_t kv_len, int32_t query_end, int32_t q_len,
                                    int32_t window_left, int32_t partition_tokens);

/* The partition size of a layout: `requested`, or 256 for 0; BAD_ARGUMENT naming `name` unless a
 * power of two 16..16384. Shared by the plan and grid layouts. */
padec_status padec__partition_tokens(int32_t requested, const char *name, int32_t *tokens);

/* Where the partial results and merge counters go in a workspace (the plan's and the grid
 * path's): partial_o at 0 ([partial_rows][q heads][head_dim] floats), then partial_lse, then
 * `counters` int32, each 256-byte aligned; the whole at least 256 bytes. */
typedef struct padec_workspace_offsets {
  size_t partial_lse;
  size_t merge_counters;
  size_t bytes;
} padec_workspace_offsets;
padec_workspace_offsets padec__workspace_offsets(const padec_params *normalized,
                                                 int64_t partial_rows, size_t counters);

/* Fingerprint of the fields that shape a plan and its buffers. */
uint64_t padec__params_key(const padec_params *params);
/* A layout's fingerprint: padec__params_key, and for the cost policy the KV element size too,
 * since its cost units are scaled by it (a layout made for bf16 would balance an fp8 batch by
 * bf16 costs). */
uint64_t padec__layout_key(const padec_params *normalized, int32_t policy);

/* Bytes of one element of dtype (1, 2 or 4). */
int32_t padec__dtype_bytes(padec_dtype dtype);

/* Elements from one page of a KV pool to the next: tensors->kv_page_stride, or one page
 * (page_size * num_kv_heads * head_dim) where it is 0. */
int64_t padec__kv_page_stride(const padec_params *params, const padec_tensors *tensors);

/* One failed check of caller KV data (page_indptr, kv_lens, the shard arrays, page_indices): which
 * check, which sequence, and the values its message names. The host check
 * (padec_validate_kv_host, padec__check_shard) and the device check (src/cuda/validate.cu) both
 * report through padec__kv_fault_report, so that they give the same status and the same text.
 * The values of padec__kv_check follow the order in which padec_validate_kv_host checks a
 * sequence: the device check ranks faults by (sequence, check, page slot) and relies on it. */
typedef enum padec__kv_check {
  PADEC__KV_OK = 0,
  PADEC__KV_INDPTR_START = 1,    /* values: page_indptr[0] (sequence 0) */
  PADEC__KV_INDICES_LENGTH = 2,  /* page_indptr[batch], num_page_indices, batch (sequence 0): the
                                    table names more entries than page_indices holds */
  PADEC__KV_INDPTR_ORDER = 3,    /* page_indptr[b], page_indptr[b + 1] */
  PADEC__KV_INDPTR_END = 4,      /* page_indptr[b + 1], page_indptr[batch], batch: b's pages end
                                    past page_indices (a later entry of page_indptr falls) */
  PADEC__KV_LEN = 5,             /* kv_lens[b], pages of b, tokens those pages hold */
  PADEC__KV_SHARD_START = 6,     /* shard_starts[b] */
  PADEC__KV_SHARD_END = 7,       /* shard_starts[b], kv_lens[b], seq_lens[b] */
  PADEC__KV_PAGE_ID = 8          /* slot in page_indices, the page id there, num_pages */
} padec__kv_check;

typedef struct padec__kv_fault {
  int32_t check; /* padec__kv_check */
  int32_t sequence;
  int64_t values[3];
} padec__kv_fault;

/* The status and message of fault (padec__fail); OK, recording nothing, for PADEC__KV_OK. */
padec_status padec__kv_fault_report(const padec__kv_fault *fault);

/* The shard check of sequence b, shared by the plan builder and the host validation: OK when
 * shard_starts is NULL; else 0 <= shard_starts[b] and shard_starts[b] + kv_lens[b] <= seq_lens[b]
 * (in 64 bits), BAD_ARGUMENT naming the sequence otherwise. */
padec_status padec__check_shard(int32_t b, const int32_t *kv_lens, const int32_t *shard_starts,
                                const int32_t *seq_lens);

/* The checks of padec_validate_kv_host that read no array, shared with padec_cuda_validate_kv:
 * params, tensors not NULL, batch >= 0 and, when batch > 0, page_indptr, page_indices and
 * kv_lens not NULL. */
padec_status padec__check_kv_arguments(const padec_params *params, int32_t batch,
                                       const padec_tensors *tensors);

/* Whether [a, a + a_bytes) and [b, b + b_bytes) share a byte (NULL or 0 bytes: empty; the ends
 * saturate rather than wrap). */
bool padec__bytes_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes);
/* The same for `count` 4-byte elements from array (a byte count that would pass 2^64
 * saturates instead of wrapping; none for count < 1). */
bool padec__int32s_overlap(const void *array, int64_t count, const void *b, size_t b_bytes);

/* Pointer checks of the block table and shard arrays, shared by the executors and
 * padec_cuda_validate_kv: page_indptr, page_indices and kv_lens 4-byte aligned; shard_starts and
 * seq_lens both or neither, 4-byte aligned. */
padec_status padec__check_kv_arrays(const padec_tensors *tensors);

/* The tensor checks of padec__check_run_arguments (pointers, alignment, strides, scales,
 * shard arrays, outputs that overlap an input, each other, the first workspace_bytes of the
 * workspace or the plan's plan_bytes), for a batch of `batch` sequences; params normalized and
 * validated; plan NULL (and plan_bytes 0) on the grid path, which has none. */
padec_status padec__check_tensors(const padec_params *normalized, int32_t batch,
                                  const padec_tensors *tensors, const void *workspace,
                                  size_t workspace_bytes, const void *plan, size_t plan_bytes);

/* A grid split count: `splits` capped at max_splits (and at the grid layout's own limit) and,
 * with a window, at the partitions a window can span; at least 1. normalized: validated params
 * (padec__params_normalized); partition_tokens as padec__partition_tokens returns it. Shared by
 * padec_grid_recommended_splits and `auto` (choose.c). */
int32_t padec__grid_splits_capped(const padec_params *normalized, int64_t splits,
                                  int32_t partition_tokens, int32_t max_splits);

/* Argument checks of the grid path, shared by its CPU and CUDA executors: params against the
 * layout, workspace, then padec__check_tensors. */
padec_status padec__check_grid_arguments(const padec_params *params,
                                         const padec_grid_layout *layout,
                                         const padec_tensors *tensors, const void *workspace,
                                         size_t workspace_bytes);

/* PLAN_MISMATCH unless a layout's recorded shape (its params_key, padec__layout_key for its
 * policy, and heads, head_dim, q_len) is that of params (normalized); `name` names the layout in
 * the message. Grid layouts pass PADEC_POLICY_EVEN (no KV dtype in their key). */
padec_status padec__check_layout_shape(const padec_params *normalized, const char *name,
                                       uint64_t params_key, int32_t policy, int32_t num_q_heads,
                                       int32_t num_kv_heads, int32_t head_dim, int32_t q_len);

/* PLAN_MISMATCH unless *layout is exactly what padec_plan_layout_init gives for its own shape,
 * batch, workers, partition tokens and policy; the cost units, from the caller's model, only in
 * range (BAD_ARGUMENT otherwise). A layout edited by hand would have the scheduler and the executors index past the
 * caller's buffers. The window and dtypes do not size anything, so no params are needed. */
padec_status padec__check_plan_layout(const padec_plan_layout *layout, const char *name);

/* PLAN_MISMATCH unless the plan at `plan` (host memory) has a header that the build of this
 * layout writes: magic, fingerprint, batch, workers, heads, q_len, partition tokens, policy, and
 * counts within the layout's capacities. */
padec_status padec__check_plan_header(const padec_plan_layout *layout, const void *plan, const char *name);

/* PLAN_MISMATCH unless the body of a plan whose header passed is one the executors can run
 * without indexing past the caller's buffers: the index arrays start at 0, never decrease and
 * end at the header's counts; every work item's sequence, rows, partitions, query heads and
 * partial slot lie within the layout and its own sequence's; every reduce group's rows are one
 * sequence's and its partial rows within the partial buffers. O(works + batch + slots). The
 * executors trust the plan's values as indices, so a plan edited or corrupted after its build
 * must fail here, not write out of bounds. */
padec_status padec__check_plan_body(const padec_plan_layout *layout, const void *plan, const char *name);

/* Argument checks shared by the executors: params, layout, plan header (when plan_host is not
 * NULL), tensor pointers and alignment, workspace size. */
padec_status padec__check_run_arguments(const padec_params *params,
                                        const padec_plan_layout *layout, const void *plan,
                                        const void *plan_host, const padec_tensors *tensors,
                                        const void *workspace, size_t workspace_bytes);

/* Argument checks of the shard merge, shared by the CPU and CUDA entries. */
padec_status padec__check_shard_merge(const padec_params *params,
                                      const padec_shard_merge_tensors *tensors);

/* CUDA builds: before a CUDA entry point enqueues anything, fails (CUDA_ERROR, naming `entry`)
 * if an earlier CUDA call on this thread left an error pending, and clears it. Otherwise the
 * cudaGetLastError after this call's own launch would blame it on a launch that did happen. */
padec_status padec__cuda_check_no_pending_error(const char *entry);

/* CUDA builds: 1 makes padec_cuda_run use the stand-alone merge kernel instead of merging in
 * the decode kernel (tests cover both). Not thread-safe; tests only. */
void padec__cuda_set_separate_merge(int separate);

/* CUDA builds: the decode's K/V pipeline depth for the launches that follow, the tiles in
 * flight while the consumer waits (clamped to 2 up to the instance's stages); 0 keeps the
 * launch's own pick. Not thread-safe; tests and the benchmark only. */
void padec__cuda_set_pipeline_depth(int depth);

/* CUDA builds: decode launches of at most max_ctas CTAs write padec_trace_event stamps
 * (src/cuda/decode_params.h) to device_stamps, [max_ctas][PADEC_TRACE_EVENTS] uint64, which the
 * caller zeroes first (a point a CTA never reaches keeps its zero); NULL turns it off. Not
 * thread-safe; the benchmark's timeline only. */
void padec__cuda_set_trace(uint64_t *device_stamps, int64_t max_ctas);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_INTERNAL_H */
