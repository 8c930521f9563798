/*
 * Context-parallel decode over NCCL: one process per GPU, each holding one contiguous position
 * range (a shard) of every sequence's KV cache.
 *
 * A decode step reads the whole KV cache, so a long context is memory-bound on one GPU. Split by
 * position over R GPUs, each GPU reads 1/R of it. Rank r holds positions [L r / R, L (r + 1) / R)
 * of a sequence of L tokens (an empty range where L < R), in pages of its own; every rank has the
 * step's query tokens. Each rank
 *   1. plans its shard with padec_plan_build_shard (the shard's kv_lens, shard_starts and
 *      seq_lens) and runs padec_cuda_run with o_dtype FP32 and an LSE: a partial output and LSE
 *      for every query row of the batch (a row that sees nothing of the shard: output 0, LSE -inf);
 *   2. exchanges the partials and combines them with padec_cuda_merge_shards, shards in rank
 *      order, in one of two patterns, both run here:
 *      (a) all-gather: ncclAllGather stacks every rank's o and LSE into [R][...] buffers and every
 *          rank merges the whole output (for a replicated o_proj). Each rank receives R - 1
 *          partials.
 *      (b) by heads, the reduce-scatter pattern: rank j ends up with the merged output of q heads
 *          [H j / R, H (j + 1) / R) (for an o_proj split by heads, as in tensor parallelism).
 *          ncclReduceScatter only sums (or takes min, max, product, average), and the LSE-weighted
 *          merge is none of these, so the exchange is an all-to-all of head blocks (grouped
 *          ncclSend/ncclRecv) and the reduction is padec_cuda_merge_shards over the R blocks that
 *          arrive. The traffic is a reduce-scatter's: each rank receives (R - 1) / R of one partial.
 *   3. checks both results against padec_cuda_run over the whole, unsharded batch on its own GPU,
 *      and that the all-gathered merge came out bitwise the same on every rank.
 *
 * The batch is the same on every rank (one seed): bf16 q and KV, GQA 4 (32 q heads over 8 KV
 * heads of 128), pages of 16 tokens, 2 query tokens per sequence, a sliding window of 3000
 * tokens, and sequences of very different lengths: a padding slot (0 tokens) and sequences of 2
 * and 3 tokens leave some shards empty, and the window leaves the early shards of the 12000-token
 * sequence unseen (no partitions scheduled there).
 *
 * Usage: example_context_parallel_nccl [--ranks N] [--lens L1,L2,...] [--window W]
 *                                      [--bench [--iters N]]
 *   --ranks N  processes (GPUs 0..N-1); default every GPU, at least 2. --ranks 1 runs on one GPU.
 *   --lens     the sequence lengths (tokens, the 2 query tokens included).
 *   --window   the sliding window (default 3000; 0 is full attention).
 *   --bench    after the check, time the step with CUDA events: median microseconds of the shard
 *              decode, the exchange and the merge of each pattern, the whole step of each, and
 *              the one-GPU decode of the whole batch.
 * Exit status: 0 results match, 1 mismatch or error, 2 usage error, 77 fewer usable GPUs (compute
 * capability 9.0 or newer) than ranks.
 */
#define _POSIX_C_SOURCE 200809L

#include <cuda_runtime_api.h>
#include <errno.h>
#include <math.h>
#include <nccl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "padec_cuda.h"

#define MAX_RANKS 64
#define MAX_BATCH 256
#define WARMUP_ITERS 10
#define RANK_MISMATCH 1 /* exit status of a rank whose results disagree with the reference */
#define RANK_ERROR 3    /* exit status of a rank stopped by an error */

static int g_rank = -1; /* this process's rank, for messages; -1 in the parent */

#define CUDA_CHECK(call)                                                                      \
  do {                                                                                        \
    cudaError_t error_ = (call);                                                              \
    if (error_ != cudaSuccess) {                                                              \
      fprintf(stderr, "[rank %d] %s:%d: %s failed: %s (%s)\n", g_rank, __FILE__, __LINE__,    \
              #call, cudaGetErrorString(error_), cudaGetErrorName(error_));                   \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

#define NCCL_CHECK(call)                                                                      \
  do {                                                                                        \
    ncclResult_t result_ = (call);                                                            \
    if (result_ != ncclSuccess) {                                                             \
      fprintf(stderr, "[rank %d] %s:%d: %s failed: %s (%s)\n", g_rank, __FILE__, __LINE__,    \
              #call, ncclGetErrorString(result_), ncclGetLastError(NULL));                    \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

#define PADEC_CHECK(call)                                                                     \
  do {                                                                                        \
    padec_status status_ = (call);                                                            \
    if (status_ != PADEC_STATUS_OK) {                                                         \
      fprintf(stderr, "[rank %d] %s:%d: %s failed: %s: %s\n", g_rank, __FILE__, __LINE__,     \
              #call, padec_status_name(status_), padec_last_message());                       \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

typedef struct run_options {
  int ranks; /* 0: every GPU */
  int bench;
  int iters;
  int32_t batch;
  int32_t lens[MAX_BATCH];
  int32_t window; /* sliding window in tokens, 0 for none */
} run_options;

/* ---- host data ------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x70adec5eed000001ull;
static uint64_t next_u64(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [-amplitude, amplitude), as bf16 bits (round to nearest even). */
static uint16_t random_bf16(float amplitude) {
  const float f = ((float)(next_u64() >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * amplitude;
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

static float bf16_to_float(uint16_t bits) {
  const uint32_t word = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &word, sizeof f);
  return f;
}

static void *host_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) fprintf(stderr, "[rank %d] out of host memory (%zu bytes)\n", g_rank, bytes);
  return p;
}

/* The whole batch, the same on every rank: what one GPU would hold without context parallelism. */
typedef struct host_batch {
  padec_params params; /* o_dtype bf16: the final output */
  int32_t batch;
  int32_t rows;          /* query tokens: batch * q_len */
  const int32_t *seq_lens;
  int32_t *page_indptr;  /* [batch + 1] */
  int32_t *page_indices; /* [num_pages], a shuffled block table */
  int64_t num_pages;
  uint16_t *q;           /* [rows][num_q_heads][head_dim] */
  uint16_t *k, *v;       /* [num_pages][page_size][num_kv_heads][head_dim] (NHD) */
} host_batch;

/* Rank r's shard: positions [starts[b], starts[b] + lens[b]) of each sequence, in its own pages. */
typedef struct host_shard {
  int32_t *starts;       /* [batch] */
  int32_t *lens;         /* [batch] */
  int32_t *page_indptr;  /* [batch + 1] */
  int32_t *page_indices; /* [num_pages] */
  int64_t num_pages;     /* at least 1, so that the pools are never empty allocations */
  uint16_t *k, *v;
} host_shard;

static int64_t token_elems(const padec_params *p) { return (int64_t)p->num_kv_heads * p->head_dim; }
static int64_t row_elems(const padec_params *p) { return (int64_t)p->num_q_heads * p->head_dim; }

static int make_batch(const run_options *opt, host_batch *hb) {
  memset(hb, 0, sizeof *hb);
  padec_params *p = &hb->params;
  p->num_q_heads = 32;
  p->num_kv_heads = 8;
  p->head_dim = 128;
  p->page_size = 16;
  p->q_dtype = PADEC_DTYPE_BF16;
  p->kv_dtype = PADEC_DTYPE_BF16;
  p->o_dtype = PADEC_DTYPE_BF16;
  p->q_len = 2;
  p->window_left = opt->window;
  hb->batch = opt->batch;
  hb->rows = opt->batch * p->q_len;
  hb->seq_lens = opt->lens;

  hb->page_indptr = host_alloc(sizeof(int32_t) * (size_t)(hb->batch + 1));
  if (!hb->page_indptr) return 1;
  hb->page_indptr[0] = 0;
  for (int32_t b = 0; b < hb->batch; ++b) {
    const int64_t pages = ((int64_t)hb->seq_lens[b] + p->page_size - 1) / p->page_size;
    if (hb->page_indptr[b] + pages > INT32_MAX) {
      fprintf(stderr, "[rank %d] the batch needs more than 2^31 pages\n", g_rank);
      return 1;
    }
    hb->page_indptr[b + 1] = hb->page_indptr[b] + (int32_t)pages;
  }
  hb->num_pages = hb->page_indptr[hb->batch] > 0 ? hb->page_indptr[hb->batch] : 1;
  hb->page_indices = host_alloc(sizeof(int32_t) * (size_t)hb->num_pages);
  if (!hb->page_indices) return 1;
  for (int64_t i = 0; i < hb->num_pages; ++i) hb->page_indices[i] = (int32_t)i;
  for (int64_t i = hb->num_pages - 1; i > 0; --i) { /* Fisher-Yates: pages in no order */
    const int64_t j = (int64_t)(next_u64() % (uint64_t)(i + 1));
    const int32_t t = hb->page_indices[i];
    hb->page_indices[i] = hb->page_indices[j];
    hb->page_indices[j] = t;
  }

  const size_t q_elems = (size_t)hb->rows * (size_t)row_elems(p);
  const size_t pool_elems = (size_t)hb->num_pages * (size_t)p->page_size * (size_t)token_elems(p);
  hb->q = host_alloc(2 * q_elems);
  hb->k = host_alloc(2 * pool_elems);
  hb->v = host_alloc(2 * pool_elems);
  if (!hb->q || !hb->k || !hb->v) return 1;
  /* q of amplitude 2 gives scores of a few units: attention neither flat nor one-hot. */
  for (size_t i = 0; i < q_elems; ++i) hb->q[i] = random_bf16(2.0f);
  for (size_t i = 0; i < pool_elems; ++i) hb->k[i] = random_bf16(1.0f);
  for (size_t i = 0; i < pool_elems; ++i) hb->v[i] = random_bf16(1.0f);
  return 0;
}

/* Copies this rank's positions of every sequence out of the whole batch's pages into pages of its
 * own, as a rank that had cached only its shard would hold them. */
static int make_shard(const host_batch *hb, int rank, int ranks, host_shard *hs) {
  const padec_params *p = &hb->params;
  memset(hs, 0, sizeof *hs);
  hs->starts = host_alloc(sizeof(int32_t) * (size_t)hb->batch);
  hs->lens = host_alloc(sizeof(int32_t) * (size_t)hb->batch);
  hs->page_indptr = host_alloc(sizeof(int32_t) * (size_t)(hb->batch + 1));
  if (!hs->starts || !hs->lens || !hs->page_indptr) return 1;
  hs->page_indptr[0] = 0;
  for (int32_t b = 0; b < hb->batch; ++b) {
    const int64_t len = hb->seq_lens[b];
    const int64_t begin = len * rank / ranks, end = len * (rank + 1) / ranks;
    hs->starts[b] = (int32_t)begin;
    hs->lens[b] = (int32_t)(end - begin);
    const int64_t pages = (end - begin + p->page_size - 1) / p->page_size;
    hs->page_indptr[b + 1] = hs->page_indptr[b] + (int32_t)pages;
  }
  hs->num_pages = hs->page_indptr[hb->batch] > 0 ? hs->page_indptr[hb->batch] : 1;
  hs->page_indices = host_alloc(sizeof(int32_t) * (size_t)hs->num_pages);
  const size_t page_elems = (size_t)p->page_size * (size_t)token_elems(p);
  hs->k = host_alloc(2 * page_elems * (size_t)hs->num_pages);
  hs->v = host_alloc(2 * page_elems * (size_t)hs->num_pages);
  if (!hs->page_indices || !hs->k || !hs->v) return 1;
  for (int64_t i = 0; i < hs->num_pages; ++i) hs->page_indices[i] = (int32_t)i;
  memset(hs->k, 0, 2 * page_elems * (size_t)hs->num_pages);
  memset(hs->v, 0, 2 * page_elems * (size_t)hs->num_pages);

  const size_t token_bytes = 2 * (size_t)token_elems(p);
  const int64_t ps = p->page_size;
  for (int32_t b = 0; b < hb->batch; ++b) {
    for (int32_t t = 0; t < hs->lens[b]; ++t) {
      const int64_t pos = (int64_t)hs->starts[b] + t; /* in the sequence; t: in the shard */
      const int64_t from = hb->page_indices[hb->page_indptr[b] + pos / ps] * ps + pos % ps;
      const int64_t to = hs->page_indices[hs->page_indptr[b] + t / ps] * ps + t % ps;
      memcpy((char *)hs->k + (size_t)to * token_bytes, (const char *)hb->k + (size_t)from * token_bytes,
             token_bytes);
      memcpy((char *)hs->v + (size_t)to * token_bytes, (const char *)hb->v + (size_t)from * token_bytes,
             token_bytes);
    }
  }
  return 0;
}

/* ---- device state of one rank --------------------------------------------------------------- */

#define MAX_DEVICE_BUFFERS 32

typedef struct rank_ctx {
  int rank, ranks;
  ncclComm_t comm;
  cudaStream_t stream;
  const host_batch *hb;
  int32_t rows;
  int32_t heads, dim;

  padec_params shard_params; /* o_dtype FP32: the partials */
  padec_params merge_params; /* o_dtype bf16: the final output */
  padec_params heads_params; /* merge_params over this rank's head block only (pattern b) */
  padec_plan_layout layout;  /* one layout serves both plans: same params key, batch, workers */
  void *workspace;

  /* The whole batch on this GPU (the reference) and the shard (context parallel). */
  padec_tensors whole, shard;
  void *whole_plan, *shard_plan;
  uint16_t *ref_o;
  float *ref_lse;

  /* (a): every rank's o and LSE stacked; this rank's decode writes its own slot in place. */
  float *all_o;   /* [R][rows][heads][dim] */
  float *all_lse; /* [R][rows][heads] */
  uint16_t *o;    /* merged, [rows][heads][dim] bf16 */
  float *lse;     /* merged, [rows][heads] */

  /* (b): rank j gets heads [head_begin[j], head_begin[j + 1]). */
  int32_t head_begin[MAX_RANKS + 1];
  float *send_o, *send_lse; /* this rank's partial packed by destination: block j is [rows][Hj][dim] */
  float *recv_o, *recv_lse; /* [R][rows][H_me][dim] and [R][rows][H_me] */
  uint16_t *heads_o;        /* merged, [rows][H_me][dim] */
  float *heads_lse;         /* merged, [rows][H_me] */

  int32_t *barrier;  /* one int for an all-reduce that lines the ranks up (bench) */
  uint64_t *hashes;  /* [R], the all-gathered hashes of the merged (a) outputs */

  void *buffers[MAX_DEVICE_BUFFERS];
  int num_buffers;
} rank_ctx;

static int device_alloc(rank_ctx *c, void **ptr, size_t bytes) {
  if (c->num_buffers == MAX_DEVICE_BUFFERS) {
    fprintf(stderr, "[rank %d] too many device buffers\n", g_rank);
    return 1;
  }
  CUDA_CHECK(cudaMalloc(ptr, bytes > 0 ? bytes : 256));
  c->buffers[c->num_buffers++] = *ptr;
  return 0;
}

static int device_upload(rank_ctx *c, void **ptr, const void *host, size_t bytes) {
  if (device_alloc(c, ptr, bytes)) return 1;
  if (bytes > 0) CUDA_CHECK(cudaMemcpy(*ptr, host, bytes, cudaMemcpyHostToDevice));
  return 0;
}

/* Builds a plan on the host (the whole batch, or the shard when starts is given) and uploads it. */
static int upload_plan(rank_ctx *c, const padec_params *params, const int32_t *kv_lens,
                       const int32_t *starts, void **device_plan) {
  void *plan = host_alloc(c->layout.plan_bytes);
  if (!plan) return 1;
  if (starts)
    PADEC_CHECK(padec_plan_build_shard(params, &c->layout, kv_lens, starts, c->hb->seq_lens, plan,
                                       c->layout.plan_bytes));
  else
    PADEC_CHECK(padec_plan_build(params, &c->layout, kv_lens, plan, c->layout.plan_bytes));
  if (device_alloc(c, device_plan, c->layout.plan_bytes)) return 1;
  PADEC_CHECK(padec_cuda_upload_plan(&c->layout, plan, *device_plan, (struct CUstream_st *)c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* the host plan must outlive the copy */
  free(plan);
  return 0;
}

static int setup(rank_ctx *c, const host_batch *hb, const host_shard *hs) {
  const padec_params *p = &hb->params;
  const size_t rows = (size_t)hb->rows, heads = (size_t)p->num_q_heads, dim = (size_t)p->head_dim;
  const size_t R = (size_t)c->ranks;
  c->hb = hb;
  c->rows = hb->rows;
  c->heads = p->num_q_heads;
  c->dim = p->head_dim;
  c->shard_params = *p;
  c->shard_params.o_dtype = PADEC_DTYPE_FP32;
  c->merge_params = *p;
  for (int j = 0; j <= c->ranks; ++j) c->head_begin[j] = (int32_t)((int64_t)c->heads * j / c->ranks);
  const int32_t my_heads = c->head_begin[c->rank + 1] - c->head_begin[c->rank];
  /* The merge only needs the head count and head_dim; one KV head per q head keeps any block
   * size valid. */
  c->heads_params = *p;
  c->heads_params.num_q_heads = my_heads > 0 ? my_heads : 1;
  c->heads_params.num_kv_heads = c->heads_params.num_q_heads;

  CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));

  padec_plan_options options;
  memset(&options, 0, sizeof options);
  PADEC_CHECK(padec_cuda_recommended_workers(p, c->rank, &options.num_workers));
  PADEC_CHECK(padec_plan_layout_init(p, hb->batch, &options, &c->layout));
  if (device_alloc(c, &c->workspace, c->layout.workspace_bytes)) return 1;

  /* Inputs. Every rank has the query tokens; the KV pages are the whole batch's (for the
   * reference) and the shard's. */
  const size_t page_bytes = 2 * (size_t)p->page_size * (size_t)token_elems(p);
  void *q, *k, *v, *indptr, *indices, *lens, *shard_k, *shard_v, *shard_indptr, *shard_indices,
      *shard_lens, *starts;
  if (device_upload(c, &q, hb->q, 2 * rows * heads * dim) ||
      device_upload(c, &k, hb->k, page_bytes * (size_t)hb->num_pages) ||
      device_upload(c, &v, hb->v, page_bytes * (size_t)hb->num_pages) ||
      device_upload(c, &indptr, hb->page_indptr, sizeof(int32_t) * (size_t)(hb->batch + 1)) ||
      device_upload(c, &indices, hb->page_indices, sizeof(int32_t) * (size_t)hb->num_pages) ||
      device_upload(c, &lens, hb->seq_lens, sizeof(int32_t) * (size_t)hb->batch) ||
      device_upload(c, &shard_k, hs->k, page_bytes * (size_t)hs->num_pages) ||
      device_upload(c, &shard_v, hs->v, page_bytes * (size_t)hs->num_pages) ||
      device_upload(c, &shard_indptr, hs->page_indptr, sizeof(int32_t) * (size_t)(hb->batch + 1)) ||
      device_upload(c, &shard_indices, hs->page_indices, sizeof(int32_t) * (size_t)hs->num_pages) ||
      device_upload(c, &shard_lens, hs->lens, sizeof(int32_t) * (size_t)hb->batch) ||
      device_upload(c, &starts, hs->starts, sizeof(int32_t) * (size_t)hb->batch))
    return 1;

  /* Outputs. */
  if (device_alloc(c, (void **)&c->ref_o, 2 * rows * heads * dim) ||
      device_alloc(c, (void **)&c->ref_lse, 4 * rows * heads) ||
      device_alloc(c, (void **)&c->all_o, 4 * R * rows * heads * dim) ||
      device_alloc(c, (void **)&c->all_lse, 4 * R * rows * heads) ||
      device_alloc(c, (void **)&c->o, 2 * rows * heads * dim) ||
      device_alloc(c, (void **)&c->lse, 4 * rows * heads) ||
      device_alloc(c, (void **)&c->send_o, 4 * rows * heads * dim) ||
      device_alloc(c, (void **)&c->send_lse, 4 * rows * heads) ||
      device_alloc(c, (void **)&c->recv_o, 4 * R * rows * (size_t)my_heads * dim) ||
      device_alloc(c, (void **)&c->recv_lse, 4 * R * rows * (size_t)my_heads) ||
      device_alloc(c, (void **)&c->heads_o, 2 * rows * (size_t)my_heads * dim) ||
      device_alloc(c, (void **)&c->heads_lse, 4 * rows * (size_t)my_heads) ||
      device_alloc(c, (void **)&c->barrier, sizeof(int32_t)) ||
      device_alloc(c, (void **)&c->hashes, sizeof(uint64_t) * R))
    return 1;
  CUDA_CHECK(cudaMemset(c->barrier, 0, sizeof(int32_t)));
  /* Poison every output (0xff bytes: NaN in fp32 and bf16), so nothing unwritten passes. */
  CUDA_CHECK(cudaMemset(c->ref_o, 0xff, 2 * rows * heads * dim));
  CUDA_CHECK(cudaMemset(c->ref_lse, 0xff, 4 * rows * heads));
  CUDA_CHECK(cudaMemset(c->all_o, 0xff, 4 * R * rows * heads * dim));
  CUDA_CHECK(cudaMemset(c->all_lse, 0xff, 4 * R * rows * heads));
  CUDA_CHECK(cudaMemset(c->o, 0xff, 2 * rows * heads * dim));
  CUDA_CHECK(cudaMemset(c->lse, 0xff, 4 * rows * heads));
  CUDA_CHECK(cudaMemset(c->heads_o, 0xff, 2 * rows * (size_t)my_heads * dim));
  CUDA_CHECK(cudaMemset(c->heads_lse, 0xff, 4 * rows * (size_t)my_heads));

  memset(&c->whole, 0, sizeof c->whole);
  c->whole.q = q;
  c->whole.k_pages = k;
  c->whole.v_pages = v;
  c->whole.num_pages = hb->num_pages;
  c->whole.page_indptr = indptr;
  c->whole.page_indices = indices;
  c->whole.kv_lens = lens;
  c->whole.o = c->ref_o;
  c->whole.lse = c->ref_lse;

  memset(&c->shard, 0, sizeof c->shard);
  c->shard.q = q;
  c->shard.k_pages = shard_k;
  c->shard.v_pages = shard_v;
  c->shard.num_pages = hs->num_pages;
  c->shard.page_indptr = shard_indptr;
  c->shard.page_indices = shard_indices;
  c->shard.kv_lens = shard_lens;
  c->shard.shard_starts = starts;
  c->shard.seq_lens = lens; /* the whole lengths, as the whole batch's kv_lens */
  c->shard.o = c->all_o + (size_t)c->rank * rows * heads * dim;
  c->shard.lse = c->all_lse + (size_t)c->rank * rows * heads;

  if (upload_plan(c, &c->merge_params, hb->seq_lens, NULL, &c->whole_plan)) return 1;
  if (upload_plan(c, &c->shard_params, hs->lens, hs->starts, &c->shard_plan)) return 1;
  /* The copies and memsets above ran on the legacy default stream, which the non-blocking
   * stream of the step does not wait for. */
  CUDA_CHECK(cudaDeviceSynchronize());
  return 0;
}

/* ---- the parts of the step ------------------------------------------------------------------- */

static int decode_whole(rank_ctx *c) {
  PADEC_CHECK(padec_cuda_run(&c->merge_params, &c->layout, c->whole_plan, &c->whole, c->workspace,
                             c->layout.workspace_bytes, (struct CUstream_st *)c->stream));
  return 0;
}

static int decode_shard(rank_ctx *c) {
  PADEC_CHECK(padec_cuda_run(&c->shard_params, &c->layout, c->shard_plan, &c->shard, c->workspace,
                             c->layout.workspace_bytes, (struct CUstream_st *)c->stream));
  return 0;
}

/* (a) In place: this rank's slot of all_o / all_lse is its send buffer. */
static int allgather(rank_ctx *c) {
  const size_t o_count = (size_t)c->rows * (size_t)c->heads * (size_t)c->dim;
  const size_t lse_count = (size_t)c->rows * (size_t)c->heads;
  NCCL_CHECK(ncclGroupStart());
  NCCL_CHECK(ncclAllGather(c->all_o + (size_t)c->rank * o_count, c->all_o, o_count, ncclFloat,
                           c->comm, c->stream));
  NCCL_CHECK(ncclAllGather(c->all_lse + (size_t)c->rank * lse_count, c->all_lse, lse_count,
                           ncclFloat, c->comm, c->stream));
  NCCL_CHECK(ncclGroupEnd());
  return 0;
}

static int merge_all(rank_ctx *c) {
  padec_shard_merge_tensors t;
  memset(&t, 0, sizeof t);
  t.num_shards = c->ranks;
  t.rows = c->rows;
  t.shard_o = c->all_o;
  t.shard_lse = c->all_lse;
  t.o = c->o;
  t.lse = c->lse;
  PADEC_CHECK(padec_cuda_merge_shards(&c->merge_params, &t, (struct CUstream_st *)c->stream));
  return 0;
}

/* (b) Packs this rank's partial by destination (block j: heads of rank j, [rows][Hj][dim]; its
 * own block straight into its receive slot), then swaps blocks with every other rank. */
static int exchange_heads(rank_ctx *c) {
  const int me = c->rank;
  const size_t rows = (size_t)c->rows, dim = (size_t)c->dim, heads = (size_t)c->heads;
  const size_t my_heads = (size_t)(c->head_begin[me + 1] - c->head_begin[me]);
  const float *my_o = c->all_o + (size_t)me * rows * heads * dim;
  const float *my_lse = c->all_lse + (size_t)me * rows * heads;
  for (int j = 0; j < c->ranks; ++j) {
    const size_t begin = (size_t)c->head_begin[j], count = (size_t)c->head_begin[j + 1] - begin;
    if (count == 0 || rows == 0) continue;
    float *dst_o =
        j == me ? c->recv_o + (size_t)me * rows * my_heads * dim : c->send_o + rows * begin * dim;
    float *dst_lse = j == me ? c->recv_lse + (size_t)me * rows * my_heads : c->send_lse + rows * begin;
    CUDA_CHECK(cudaMemcpy2DAsync(dst_o, count * dim * 4, my_o + begin * dim, heads * dim * 4,
                                 count * dim * 4, rows, cudaMemcpyDeviceToDevice, c->stream));
    CUDA_CHECK(cudaMemcpy2DAsync(dst_lse, count * 4, my_lse + begin, heads * 4, count * 4, rows,
                                 cudaMemcpyDeviceToDevice, c->stream));
  }
  if (c->ranks == 1 || rows == 0) return 0;
  NCCL_CHECK(ncclGroupStart());
  for (int j = 0; j < c->ranks; ++j) {
    if (j == me) continue;
    const size_t begin = (size_t)c->head_begin[j], count = (size_t)c->head_begin[j + 1] - begin;
    if (count > 0) {
      NCCL_CHECK(ncclSend(c->send_o + rows * begin * dim, rows * count * dim, ncclFloat, j, c->comm,
                          c->stream));
      NCCL_CHECK(ncclSend(c->send_lse + rows * begin, rows * count, ncclFloat, j, c->comm, c->stream));
    }
    if (my_heads > 0) {
      NCCL_CHECK(ncclRecv(c->recv_o + (size_t)j * rows * my_heads * dim, rows * my_heads * dim,
                          ncclFloat, j, c->comm, c->stream));
      NCCL_CHECK(ncclRecv(c->recv_lse + (size_t)j * rows * my_heads, rows * my_heads, ncclFloat, j,
                          c->comm, c->stream));
    }
  }
  NCCL_CHECK(ncclGroupEnd());
  return 0;
}

static int merge_heads(rank_ctx *c) {
  if (c->head_begin[c->rank + 1] == c->head_begin[c->rank]) return 0; /* more ranks than heads */
  padec_shard_merge_tensors t;
  memset(&t, 0, sizeof t);
  t.num_shards = c->ranks;
  t.rows = c->rows;
  t.shard_o = c->recv_o;
  t.shard_lse = c->recv_lse;
  t.o = c->heads_o;
  t.lse = c->heads_lse;
  PADEC_CHECK(padec_cuda_merge_shards(&c->heads_params, &t, (struct CUstream_st *)c->stream));
  return 0;
}

static int step_allgather(rank_ctx *c) { return decode_shard(c) || allgather(c) || merge_all(c); }
static int step_heads(rank_ctx *c) { return decode_shard(c) || exchange_heads(c) || merge_heads(c); }

/* Returns when every rank has reached it (a one-int all-reduce, then a wait). */
static int barrier(rank_ctx *c) {
  NCCL_CHECK(ncclAllReduce(c->barrier, c->barrier, 1, ncclInt32, ncclSum, c->comm, c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  return 0;
}

/* ---- the check ------------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t hash, const void *data, size_t bytes) {
  const unsigned char *p = data;
  for (size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
  return hash;
}

#define O_ABS_TOL 2e-3
#define O_REL_TOL 2e-2
#define LSE_ABS_TOL 1e-3
#define LSE_REL_TOL 1e-4

typedef struct compare_result {
  double max_o_error, max_lse_error;
  int64_t bad;
  char first_bad[160];
} compare_result;

/* Compares rows x head_count heads of a merged output (o bf16 and LSE, packed) with the same heads
 * of the reference (which holds all `heads`, starting here at head_offset). Output: |o - ref| <=
 * O_ABS_TOL + O_REL_TOL |ref| for every element; LSE: the same with LSE_*, and -inf where the
 * reference is -inf (a row that sees no token). NaN never passes. */
static void compare(const uint16_t *o, const float *lse, const uint16_t *ref_o, const float *ref_lse,
                    int32_t rows, int32_t heads, int32_t head_offset, int32_t head_count, int32_t dim,
                    compare_result *r) {
  memset(r, 0, sizeof *r);
  for (int32_t row = 0; row < rows; ++row) {
    for (int32_t h = 0; h < head_count; ++h) {
      const size_t at = (size_t)row * (size_t)head_count + (size_t)h;
      const size_t ref_at = (size_t)row * (size_t)heads + (size_t)(head_offset + h);
      const double got_lse = lse[at], want_lse = ref_lse[ref_at];
      int ok = 1;
      if (isinf(want_lse) && want_lse < 0) {
        ok = isinf(got_lse) && got_lse < 0;
      } else {
        const double error = fabs(got_lse - want_lse);
        ok = error <= LSE_ABS_TOL + LSE_REL_TOL * fabs(want_lse);
        if (!isnan(r->max_lse_error) && !(error <= r->max_lse_error)) r->max_lse_error = error;
      }
      if (!ok && r->bad++ == 0)
        snprintf(r->first_bad, sizeof r->first_bad, "row %d head %d: lse %.7g, reference %.7g", row,
                 head_offset + h, got_lse, want_lse);
      for (int32_t d = 0; d < dim; ++d) {
        const double got = bf16_to_float(o[at * (size_t)dim + (size_t)d]);
        const double want = bf16_to_float(ref_o[ref_at * (size_t)dim + (size_t)d]);
        const double error = fabs(got - want);
        if (!isnan(r->max_o_error) && !(error <= r->max_o_error)) r->max_o_error = error;
        if (!(error <= O_ABS_TOL + O_REL_TOL * fabs(want)) && r->bad++ == 0)
          snprintf(r->first_bad, sizeof r->first_bad, "row %d head %d dim %d: o %.6g, reference %.6g",
                   row, head_offset + h, d, got, want);
      }
    }
  }
}

static int check(rank_ctx *c, int *mismatch) {
  const size_t rows = (size_t)c->rows, heads = (size_t)c->heads, dim = (size_t)c->dim;
  const int32_t my_begin = c->head_begin[c->rank];
  const int32_t my_heads = c->head_begin[c->rank + 1] - my_begin;
  uint16_t *ref_o = host_alloc(2 * rows * heads * dim), *o = host_alloc(2 * rows * heads * dim);
  uint16_t *heads_o = host_alloc(2 * rows * (size_t)my_heads * dim);
  float *ref_lse = host_alloc(4 * rows * heads), *lse = host_alloc(4 * rows * heads);
  float *heads_lse = host_alloc(4 * rows * (size_t)my_heads);
  uint64_t *hashes = host_alloc(sizeof(uint64_t) * (size_t)c->ranks);
  if (!ref_o || !o || !heads_o || !ref_lse || !lse || !heads_lse || !hashes) return 1;
  CUDA_CHECK(cudaMemcpy(ref_o, c->ref_o, 2 * rows * heads * dim, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(ref_lse, c->ref_lse, 4 * rows * heads, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(o, c->o, 2 * rows * heads * dim, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(lse, c->lse, 4 * rows * heads, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(heads_o, c->heads_o, 2 * rows * (size_t)my_heads * dim, cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(heads_lse, c->heads_lse, 4 * rows * (size_t)my_heads, cudaMemcpyDeviceToHost));

  compare_result a, b;
  compare(o, lse, ref_o, ref_lse, c->rows, c->heads, 0, c->heads, c->dim, &a);
  compare(heads_o, heads_lse, ref_o, ref_lse, c->rows, c->heads, my_begin, my_heads, c->dim, &b);
  printf("[rank %d] (a) all-gather + merge, all %d heads: max |o - ref| %.3g, max |lse - ref| %.3g: "
         "%s%s\n",
         c->rank, c->heads, a.max_o_error, a.max_lse_error, a.bad ? "MISMATCH, first at " : "match",
         a.first_bad);
  printf("[rank %d] (b) by heads, heads %d..%d: max |o - ref| %.3g, max |lse - ref| %.3g: %s%s\n",
         c->rank, my_begin, my_begin + my_heads - 1, b.max_o_error, b.max_lse_error,
         b.bad ? "MISMATCH, first at " : "match", b.first_bad);
  *mismatch = a.bad > 0 || b.bad > 0;

  /* The merge reads the same stacked bytes in the same order on every rank, so (a) must come out
   * bitwise the same everywhere. */
  uint64_t hash = fnv1a(0xcbf29ce484222325ull, o, 2 * rows * heads * dim);
  hash = fnv1a(hash, lse, 4 * rows * heads);
  CUDA_CHECK(cudaMemcpyAsync(c->hashes + c->rank, &hash, sizeof hash, cudaMemcpyHostToDevice, c->stream));
  NCCL_CHECK(ncclAllGather(c->hashes + c->rank, c->hashes, 1, ncclUint64, c->comm, c->stream));
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  CUDA_CHECK(cudaMemcpy(hashes, c->hashes, sizeof(uint64_t) * (size_t)c->ranks, cudaMemcpyDeviceToHost));
  int same = 1;
  for (int j = 0; j < c->ranks; ++j) same &= hashes[j] == hash;
  if (c->rank == 0 || !same)
    printf("[rank %d] (a) merged output bitwise the same on all %d ranks: %s\n", c->rank, c->ranks,
           same ? "yes" : "NO");
  if (!same) *mismatch = 1;

  free(ref_o);
  free(o);
  free(heads_o);
  free(ref_lse);
  free(lse);
  free(heads_lse);
  free(hashes);
  return 0;
}

/* ---- the benchmark --------------------------------------------------------------------------- */

static int compare_floats(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Median microseconds of `part` over iters runs (after a warm-up), each started with the ranks
 * lined up by a barrier, so that a collective is timed without the other ranks' lateness. */
static int time_part(rank_ctx *c, int (*part)(rank_ctx *), int iters, cudaEvent_t start,
                     cudaEvent_t stop, float *samples, double *median_us) {
  for (int i = -WARMUP_ITERS; i < iters; ++i) {
    if (barrier(c)) return 1;
    CUDA_CHECK(cudaEventRecord(start, c->stream));
    if (part(c)) return 1;
    CUDA_CHECK(cudaEventRecord(stop, c->stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 0) samples[i] = ms;
  }
  qsort(samples, (size_t)iters, sizeof *samples, compare_floats);
  const double median_ms =
      iters % 2 ? samples[iters / 2] : 0.5 * (samples[iters / 2 - 1] + samples[iters / 2]);
  *median_us = 1e3 * median_ms;
  return 0;
}

static int bench(rank_ctx *c, int iters) {
  struct {
    const char *name;
    int (*part)(rank_ctx *);
    double us;
  } parts[] = {
      {"shard decode", decode_shard, 0.0},
      {"(a) all-gather", allgather, 0.0},
      {"(a) merge", merge_all, 0.0},
      {"(a) step", step_allgather, 0.0},
      {"(b) pack + all-to-all", exchange_heads, 0.0},
      {"(b) merge", merge_heads, 0.0},
      {"(b) step", step_heads, 0.0},
      {"whole batch on one GPU", decode_whole, 0.0},
  };
  const size_t num_parts = sizeof parts / sizeof parts[0];
  float *samples = host_alloc(sizeof(float) * (size_t)iters);
  if (!samples) return 1;
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (size_t i = 0; i < num_parts; ++i)
    if (time_part(c, parts[i].part, iters, start, stop, samples, &parts[i].us)) return 1;
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  free(samples);

  char line[1024];
  int used = snprintf(line, sizeof line, "[rank %d] bench, median of %d (us):", c->rank, iters);
  for (size_t i = 0; i < num_parts && used > 0 && (size_t)used < sizeof line; ++i)
    used += snprintf(line + used, sizeof line - (size_t)used, "%s %s %.1f", i ? " |" : "", parts[i].name,
                     parts[i].us);
  printf("%s\n", line);
  return 0;
}

/* ---- one rank -------------------------------------------------------------------------------- */

/* Returns 1 on an error (after a message); *mismatch says whether the results disagreed. */
static int rank_main(int rank, int ranks, const ncclUniqueId *id, const run_options *opt, int *mismatch) {
  g_rank = rank;
  CUDA_CHECK(cudaSetDevice(rank));
  padec_cuda_device_info info;
  PADEC_CHECK(padec_cuda_device_query(rank, &info));

  rank_ctx *c = calloc(1, sizeof *c);
  if (!c) return 1;
  c->rank = rank;
  c->ranks = ranks;
  NCCL_CHECK(ncclCommInitRank(&c->comm, ranks, *id, rank));
  if (rank == 0) {
    int version = 0;
    NCCL_CHECK(ncclGetVersion(&version));
    printf("[rank 0] NCCL %d (built against %d), %d ranks\n", version, NCCL_VERSION_CODE, ranks);
  }

  host_batch hb;
  host_shard hs;
  if (make_batch(opt, &hb) || make_shard(&hb, rank, ranks, &hs)) return 1;
  int64_t total = 0, mine = 0, empty = 0;
  for (int32_t b = 0; b < hb.batch; ++b) {
    total += hb.seq_lens[b];
    mine += hs.lens[b];
    empty += hs.lens[b] == 0;
  }
  printf("[rank %d] %s: %lld of the batch's %lld KV tokens, %lld of %d sequences empty here\n", rank,
         info.name, (long long)mine, (long long)total, (long long)empty, hb.batch);

  if (setup(c, &hb, &hs)) return 1;
  /* The step, once, each pattern after its own shard decode; then the reference. */
  if (step_allgather(c) || step_heads(c) || decode_whole(c)) return 1;
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  if (check(c, mismatch)) return 1;
  if (opt->bench && bench(c, opt->iters)) return 1;

  NCCL_CHECK(ncclCommFinalize(c->comm));
  NCCL_CHECK(ncclCommDestroy(c->comm));
  for (int i = 0; i < c->num_buffers; ++i) CUDA_CHECK(cudaFree(c->buffers[i]));
  CUDA_CHECK(cudaStreamDestroy(c->stream));
  free(c);
  void *host[] = {hb.page_indptr, hb.page_indices, hb.q, hb.k, hb.v, hs.starts, hs.lens,
                  hs.page_indptr, hs.page_indices, hs.k, hs.v};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; ++i) free(host[i]);
  return 0;
}

/* ---- the parent ------------------------------------------------------------------------------ */

/* How many of the first CUDA devices can run padec's kernels (compute capability 9.0 or newer).
 * Asked in a child process: CUDA does not survive fork(), so the parent makes no CUDA call at all.
 * Returns -1 on a failure to fork or wait. */
static int count_gpus(void) {
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return -1;
  }
  if (pid == 0) {
    int count = 0, usable = 0;
    const cudaError_t error = cudaGetDeviceCount(&count);
    if (error != cudaSuccess) {
      printf("no CUDA device (cudaGetDeviceCount: %s)\n", cudaGetErrorString(error));
      count = 0;
    }
    for (int d = 0; d < count && usable < 250; ++d) {
      int major = 0;
      const cudaError_t query = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d);
      if (query != cudaSuccess || major < 9) {
        printf("GPU %d has compute capability %d.x; padec needs 9.0 or newer\n", d, major);
        break;
      }
      ++usable;
    }
    fflush(stdout);
    _exit(usable);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      perror("waitpid");
      return -1;
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int usage(const char *argv0, int code) {
  fprintf(code ? stderr : stdout,
          "usage: %s [--ranks N] [--lens L1,L2,...] [--window W] [--bench [--iters N]]\n"
          "  --ranks N  one process per GPU on GPUs 0..N-1, N <= %d (default: every GPU, at least 2)\n"
          "  --lens     sequence lengths in tokens, query tokens included, at most %d of them\n"
          "             (default 4099,1000,3,0,12000,517,2,64)\n"
          "  --window W sliding window in tokens, 0 for none (default 3000)\n"
          "  --bench    also time the step (median of --iters runs, default 200)\n",
          argv0, MAX_RANKS, MAX_BATCH);
  return code;
}

static int bad_argument(const char *argv0, const char *what, const char *value) {
  fprintf(stderr, "%s: bad %s '%s'\n", argv0, what, value);
  return usage(argv0, 2);
}

static int parse_int(const char *text, long low, long high, long *value) {
  char *end = NULL;
  errno = 0;
  const long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < low || v > high) return 1;
  *value = v;
  return 0;
}

static int parse_lens(const char *text, run_options *opt) {
  opt->batch = 0;
  const char *p = text;
  while (*p) {
    char *end = NULL;
    errno = 0;
    const long v = strtol(p, &end, 10);
    if (errno || end == p || v < 0 || v > INT32_MAX / 2 || opt->batch == MAX_BATCH) return 1;
    opt->lens[opt->batch++] = (int32_t)v;
    if (*end == ',') ++end;
    else if (*end) return 1;
    p = end;
  }
  return opt->batch == 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  run_options opt;
  memset(&opt, 0, sizeof opt);
  opt.iters = 200;
  static const int32_t default_lens[] = {4099, 1000, 3, 0, 12000, 517, 2, 64};
  opt.batch = (int32_t)(sizeof default_lens / sizeof default_lens[0]);
  memcpy(opt.lens, default_lens, sizeof default_lens);
  opt.window = 3000;
  for (int i = 1; i < argc; ++i) {
    long v = 0;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(argv[0], 0);
    if (strcmp(argv[i], "--bench") == 0) {
      opt.bench = 1;
    } else if (strcmp(argv[i], "--ranks") == 0 && i + 1 < argc) {
      if (parse_int(argv[++i], 1, MAX_RANKS, &v)) return bad_argument(argv[0], "--ranks", argv[i]);
      opt.ranks = (int)v;
    } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
      if (parse_int(argv[++i], 0, INT32_MAX, &v)) return bad_argument(argv[0], "--window", argv[i]);
      opt.window = (int32_t)v;
    } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      if (parse_int(argv[++i], 1, 1000000, &v)) return bad_argument(argv[0], "--iters", argv[i]);
      opt.iters = (int)v;
    } else if (strcmp(argv[i], "--lens") == 0 && i + 1 < argc) {
      if (parse_lens(argv[++i], &opt)) return bad_argument(argv[0], "--lens", argv[i]);
    } else {
      return bad_argument(argv[0], "argument", argv[i]);
    }
  }

  /* NVLink SHARP (NVLS) makes NCCL create NVLink multicast objects, which go through the driver
   * and the NVSwitch fabric manager and reserve device memory for every communicator. These
   * exchanges are a few hundred KiB, where in-switch multicast and reduction gain nothing over
   * plain NVLink peer copies, and a multicast set-up that goes wrong on a shared multi-GPU host
   * can leave its GPUs unusable until they are reset. So NCCL is kept off it; a value the user
   * set is left as it is. Set before NCCL reads its environment, and inherited by the ranks. */
  if (setenv("NCCL_NVLS_ENABLE", "0", 0) != 0) {
    perror("setenv(NCCL_NVLS_ENABLE)");
    return 1;
  }

  const int gpus = count_gpus();
  if (gpus < 0) return 1;
  const int ranks = opt.ranks ? opt.ranks : gpus;
  if (ranks < 1 || gpus < ranks || (!opt.ranks && gpus < 2)) {
    printf("%d usable GPU%s, %s: skipped\n", gpus, gpus == 1 ? "" : "s",
           opt.ranks ? "fewer than --ranks" : "need 2 (--ranks 1 runs on one)");
    return 77;
  }

  /* The id names the rendezvous that ncclCommInitRank joins; a thread of this process serves it,
   * so the parent stays alive until every rank is done. It makes no CUDA call. */
  ncclUniqueId id;
  const ncclResult_t id_result = ncclGetUniqueId(&id);
  if (id_result != ncclSuccess) {
    fprintf(stderr, "ncclGetUniqueId failed: %s (%s)\n", ncclGetErrorString(id_result),
            ncclGetLastError(NULL));
    return 1;
  }

  pid_t pids[MAX_RANKS];
  const pid_t parent = getpid();
  fflush(stdout);
  fflush(stderr);
  for (int r = 0; r < ranks; ++r) {
    pids[r] = fork();
    if (pids[r] < 0) {
      perror("fork");
      for (int j = 0; j < r; ++j) kill(pids[j], SIGTERM);
      return 1;
    }
    if (pids[r] == 0) {
      /* Do not outlive the parent (a test driver's timeout kills only the parent). */
      if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(RANK_ERROR);
      int mismatch = 0;
      const int failed = rank_main(r, ranks, &id, &opt, &mismatch);
      exit(failed ? RANK_ERROR : mismatch ? RANK_MISMATCH : 0);
    }
  }

  /* A rank that stops on an error leaves the others waiting in NCCL for it: stop them. A rank
   * whose results disagree has done every collective, so the others finish on their own. */
  int result = 0, live = ranks, stopping = 0;
  while (live > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      perror("waitpid");
      return 1;
    }
    int r = 0;
    while (r < ranks && pids[r] != pid) ++r;
    if (r == ranks) continue;
    pids[r] = 0;
    --live;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : RANK_ERROR;
    if (code == 0) continue;
    if (WIFSIGNALED(status) && !stopping)
      fprintf(stderr, "rank %d ended by signal %d\n", r, WTERMSIG(status));
    result = 1;
    if (code != RANK_MISMATCH && !stopping) {
      stopping = 1;
      if (live > 0) fprintf(stderr, "rank %d failed: stopping the other ranks\n", r);
      for (int j = 0; j < ranks; ++j)
        if (pids[j] > 0) kill(pids[j], SIGTERM);
    }
  }
  printf("%s\n", result ? "context-parallel decode: FAILED" : "context-parallel decode: all ranks match");
  return result;
}
