/*
 * Context-parallel decode on the GPU: the random shard cases of tests/cpu/test_shard.c
 * (tests/support/shard_case.h, R = 1..8), each shard run by padec_cuda_run with its own plan
 * (padec_plan_build_shard, uploaded) into one stacked fp32 buffer on the device, then merged
 * there by padec_cuda_merge_shards into the case's o dtype. Everything stays on one non-blocking
 * stream; outputs are poisoned (NaN) before every run.
 *
 *  - the merged o and LSE meet the tolerance rule against the oracle of the unsharded batch,
 *    every element, -inf rows included; each shard's o and LSE meet it against that shard's
 *    oracle;
 *  - each shard's GPU o and LSE agree with the CPU executor's for the same shard and plan
 *    options (each is within the tolerance of the oracle, so they are within twice of each
 *    other; -inf rows agree exactly), and the GPU merge agrees with padec_cpu_merge_shards on
 *    the same (downloaded) shard results;
 *  - two runs (shards and merge) give identical bytes;
 *  - a merge into strided o gives the packed bytes and leaves the gaps alone;
 *  - padec_cuda_merge_shards argument errors return the CPU entry's statuses and launch
 *    nothing.
 * Every CUDA call is checked. Exit 77 without a Hopper GPU.
 *
 * Usage: test_cuda_shard [cases per shard count]   (default 6)
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/shard_case.h"
#include "gpu.h"
#include "harness.h"
#include "padec_cuda.h"
#include "test_support.h"

enum { MAX_SHARDS = 8 };

static int g_cases, g_failures, g_strided;

static void *host_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

static void *device_alloc(size_t bytes) {
  void *p = NULL;
  CUDA_OK(cudaMalloc(&p, bytes ? bytes : 16));
  return p;
}

static void upload(void *device, const void *host, size_t bytes, cudaStream_t stream) {
  if (bytes) CUDA_OK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream));
}

static void download(void *host, const void *device, size_t bytes, cudaStream_t stream) {
  if (bytes) CUDA_OK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
}

/* Device copies of a shard case: the shared pool and q, each shard's tables and plan, one
 * workspace that every shard reuses in turn, the stacked shard outputs and the merged output. */
typedef struct device_case {
  void *q, *k_pages, *v_pages, *k_scales, *v_scales;
  void *indptr[MAX_SHARDS], *indices[MAX_SHARDS], *kv_lens[MAX_SHARDS];
  void *shard_starts[MAX_SHARDS], *seq_lens[MAX_SHARDS], *plan[MAX_SHARDS];
  padec_plan_layout layout[MAX_SHARDS];
  void *host_plan[MAX_SHARDS];
  void *workspace;
  size_t workspace_bytes;
  float *shard_o, *shard_lse;
  void *o;
  float *lse;
} device_case;

/* Uploads the case and its plans; returns 0, or -1 (reported) if a plan cannot be built. */
static int device_case_init(device_case *d, const shard_case *sc, cudaStream_t stream) {
  memset(d, 0, sizeof *d);
  const int32_t R = sc->num_shards, batch = sc->whole.batch;
  const padec_case *first = &sc->shards[0];
  d->q = device_alloc(sc->whole.q_bytes);
  d->k_pages = device_alloc(first->pool_bytes);
  d->v_pages = device_alloc(first->pool_bytes);
  upload(d->q, sc->whole.q, sc->whole.q_bytes, stream);
  upload(d->k_pages, first->k_pages, first->pool_bytes, stream);
  upload(d->v_pages, first->v_pages, first->pool_bytes, stream);
  if (first->k_scales) {
    d->k_scales = device_alloc(first->scales_bytes);
    d->v_scales = device_alloc(first->scales_bytes);
    upload(d->k_scales, first->k_scales, first->scales_bytes, stream);
    upload(d->v_scales, first->v_scales, first->scales_bytes, stream);
  }
  for (int32_t r = 0; r < R; ++r) {
    const padec_case *v = &sc->shards[r];
    const size_t lens_bytes = sizeof(int32_t) * (size_t)batch;
    const size_t indices_bytes = sizeof(int32_t) * (size_t)v->page_indptr[batch];
    d->indptr[r] = device_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    d->indices[r] = device_alloc(indices_bytes);
    d->kv_lens[r] = device_alloc(lens_bytes);
    d->shard_starts[r] = device_alloc(lens_bytes);
    d->seq_lens[r] = device_alloc(lens_bytes);
    upload(d->indptr[r], v->page_indptr, sizeof(int32_t) * ((size_t)batch + 1), stream);
    upload(d->indices[r], v->page_indices, indices_bytes, stream);
    upload(d->kv_lens[r], v->kv_lens, lens_bytes, stream);
    upload(d->shard_starts[r], v->shard_starts, lens_bytes, stream);
    upload(d->seq_lens[r], v->seq_lens, lens_bytes, stream);
    const padec_status status = shard_case_plan(sc, r, &d->layout[r], &d->host_plan[r]);
    if (status != PADEC_STATUS_OK) {
      fprintf(stderr, "FAIL: shard %d plan: %s: %s\n", r, padec_status_name(status),
              padec_last_message());
      return -1;
    }
    d->plan[r] = device_alloc(d->layout[r].plan_bytes);
    if (padec_cuda_upload_plan(&d->layout[r], d->host_plan[r], d->plan[r],
                               (struct CUstream_st *)stream) != PADEC_STATUS_OK) {
      fprintf(stderr, "FAIL: shard %d plan upload: %s\n", r, padec_last_message());
      return -1;
    }
    if (d->layout[r].workspace_bytes > d->workspace_bytes)
      d->workspace_bytes = d->layout[r].workspace_bytes;
  }
  d->workspace = device_alloc(d->workspace_bytes);
  d->shard_o = device_alloc(sizeof(float) * shard_case_o_elems(sc) * (size_t)R);
  d->shard_lse = device_alloc(sizeof(float) * shard_case_lse_elems(sc) * (size_t)R);
  d->o = device_alloc(sc->whole.o_bytes);
  d->lse = device_alloc(sizeof(float) * shard_case_lse_elems(sc));
  return 0;
}

static void device_case_free(device_case *d) {
  void *buffers[] = {d->q, d->k_pages, d->v_pages, d->k_scales, d->v_scales, d->workspace,
                     d->shard_o, d->shard_lse, d->o, d->lse};
  for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; ++i)
    if (buffers[i]) CUDA_OK(cudaFree(buffers[i]));
  for (int r = 0; r < MAX_SHARDS; ++r) {
    void *per_shard[] = {d->indptr[r], d->indices[r], d->kv_lens[r], d->shard_starts[r],
                         d->seq_lens[r], d->plan[r]};
    for (size_t i = 0; i < sizeof per_shard / sizeof per_shard[0]; ++i)
      if (per_shard[i]) CUDA_OK(cudaFree(per_shard[i]));
    free(d->host_plan[r]);
  }
  memset(d, 0, sizeof *d);
}

/* Host copies of one run's results. */
typedef struct host_results {
  float *shard_o, *shard_lse;
  void *o;
  float *lse;
} host_results;

static void host_results_alloc(host_results *h, const shard_case *sc) {
  h->shard_o = host_alloc(sizeof(float) * shard_case_o_elems(sc) * (size_t)sc->num_shards);
  h->shard_lse = host_alloc(sizeof(float) * shard_case_lse_elems(sc) * (size_t)sc->num_shards);
  h->o = host_alloc(sc->whole.o_bytes);
  h->lse = host_alloc(sizeof(float) * shard_case_lse_elems(sc));
}

static void host_results_free(host_results *h) {
  free(h->shard_o);
  free(h->shard_lse);
  free(h->o);
  free(h->lse);
}

/* Poisons every output, runs each shard and the merge on the stream, downloads everything.
 * Returns 0, or -1 (reported) when a padec call fails. */
static int run_on_gpu(const shard_case *sc, device_case *d, cudaStream_t stream,
                      host_results *out) {
  const int32_t R = sc->num_shards;
  const size_t o_elems = shard_case_o_elems(sc), lse_elems = shard_case_lse_elems(sc);
  struct CUstream_st *s = (struct CUstream_st *)stream;
  CUDA_OK(cudaMemsetAsync(d->shard_o, 0xff, sizeof(float) * o_elems * (size_t)R, stream));
  CUDA_OK(cudaMemsetAsync(d->shard_lse, 0xff, sizeof(float) * lse_elems * (size_t)R, stream));
  CUDA_OK(cudaMemsetAsync(d->o, 0xff, sc->whole.o_bytes, stream));
  CUDA_OK(cudaMemsetAsync(d->lse, 0xff, sizeof(float) * lse_elems, stream));
  CUDA_OK(cudaMemsetAsync(d->workspace, 0xff, d->workspace_bytes, stream));
  for (int32_t r = 0; r < R; ++r) {
    const padec_case *v = &sc->shards[r];
    padec_tensors t = padec_case_tensors(v, d->shard_o + (size_t)r * o_elems,
                                         d->shard_lse + (size_t)r * lse_elems);
    t.q = d->q;
    t.k_pages = d->k_pages;
    t.v_pages = d->v_pages;
    t.k_scales = d->k_scales;
    t.v_scales = d->v_scales;
    t.page_indptr = d->indptr[r];
    t.page_indices = d->indices[r];
    t.kv_lens = d->kv_lens[r];
    t.shard_starts = d->shard_starts[r];
    t.seq_lens = d->seq_lens[r];
    const padec_status status = padec_cuda_run(&v->params, &d->layout[r], d->plan[r], &t,
                                               d->workspace, d->workspace_bytes, s);
    if (status != PADEC_STATUS_OK) {
      fprintf(stderr, "FAIL: padec_cuda_run of shard %d: %s: %s\n", r, padec_status_name(status),
              padec_last_message());
      return -1;
    }
    CUDA_OK(cudaGetLastError());
  }
  const padec_shard_merge_tensors m =
      shard_case_merge_tensors(sc, d->shard_o, d->shard_lse, d->o, d->lse);
  const padec_status status = padec_cuda_merge_shards(&sc->whole.params, &m, s);
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL: padec_cuda_merge_shards: %s: %s\n", padec_status_name(status),
            padec_last_message());
    return -1;
  }
  CUDA_OK(cudaGetLastError());
  download(out->shard_o, d->shard_o, sizeof(float) * o_elems * (size_t)R, stream);
  download(out->shard_lse, d->shard_lse, sizeof(float) * lse_elems * (size_t)R, stream);
  download(out->o, d->o, sc->whole.o_bytes, stream);
  download(out->lse, d->lse, sizeof(float) * lse_elems, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  return 0;
}

/* o (count elements of dtype) and lse (lse_count) of two executors: within twice the oracle
 * tolerance of each other, -inf LSE rows on both sides. Returns 0, or -1 with a report. */
static int agree(const char *what, padec_dtype dtype, const void *a_o, const float *a_lse,
                 const void *b_o, const float *b_lse, size_t lse_count, int32_t head_dim,
                 const padec_check_result *tolerance) {
  for (size_t i = 0; i < lse_count; ++i) {
    const int a_empty = isinf(a_lse[i]) && a_lse[i] < 0, b_empty = isinf(b_lse[i]) && b_lse[i] < 0;
    if (a_empty != b_empty ||
        (!a_empty && !(fabs((double)a_lse[i] - (double)b_lse[i]) <=
                       2.0 * tolerance->lse_tolerance + 1e-5))) {
      fprintf(stderr, "FAIL %s: lse[%zu] GPU %.9g, CPU %.9g\n", what, i, (double)a_lse[i],
              (double)b_lse[i]);
      return -1;
    }
  }
  for (size_t i = 0; i < lse_count * (size_t)head_dim; ++i) {
    const double a = padec_output_element(a_o, dtype, i), b = padec_output_element(b_o, dtype, i);
    if (!(fabs(a - b) <= 2.0 * tolerance->tolerance + 1e-6)) {
      fprintf(stderr, "FAIL %s: o[%zu] GPU %.9g, CPU %.9g (tolerance %.3g)\n", what, i, a, b,
              2.0 * tolerance->tolerance + 1e-6);
      return -1;
    }
  }
  return 0;
}

/* A merge into strided o on the device: the packed bytes, gaps untouched. */
static int check_strided_merge(const shard_case *sc, device_case *d, cudaStream_t stream,
                               const void *packed) {
  const padec_params *p = &sc->whole.params;
  const size_t elem = p->o_dtype == PADEC_DTYPE_FP32 ? 4 : 2;
  const int64_t heads = p->num_q_heads, dim = p->head_dim, tokens = sc->whole.num_tokens;
  const int64_t stride_head = dim + 8, stride_token = heads * stride_head + 24;
  const size_t bytes = (size_t)(tokens * stride_token) * elem;
  void *d_o = device_alloc(bytes);
  unsigned char *o = host_alloc(bytes);
  CUDA_OK(cudaMemsetAsync(d_o, 0xa5, bytes, stream));
  padec_shard_merge_tensors m = shard_case_merge_tensors(sc, d->shard_o, d->shard_lse, d_o, NULL);
  m.o_stride_head = stride_head;
  m.o_stride_token = stride_token;
  int rc = 0;
  if (padec_cuda_merge_shards(p, &m, (struct CUstream_st *)stream) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL: strided padec_cuda_merge_shards: %s\n", padec_last_message());
    rc = -1;
  }
  CUDA_OK(cudaGetLastError());
  download(o, d_o, bytes, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  for (int64_t token = 0; rc == 0 && token < tokens; ++token) {
    for (int64_t h = 0; rc == 0 && h < heads; ++h) {
      const unsigned char *got = o + (size_t)(token * stride_token + h * stride_head) * elem;
      const unsigned char *want =
          (const unsigned char *)packed + (size_t)((token * heads + h) * dim) * elem;
      if (memcmp(got, want, (size_t)dim * elem) != 0) {
        fprintf(stderr, "FAIL: the strided merge differs from the packed merge (token %lld head "
                        "%lld)\n", (long long)token, (long long)h);
        rc = -1;
      }
      const int64_t gap_end = h + 1 < heads ? stride_head : stride_token - h * stride_head;
      for (int64_t i = dim * (int64_t)elem; rc == 0 && i < gap_end * (int64_t)elem; ++i)
        if (got[i] != 0xa5) {
          fprintf(stderr, "FAIL: the strided merge wrote into a gap (token %lld head %lld)\n",
                  (long long)token, (long long)h);
          rc = -1;
        }
    }
  }
  CUDA_OK(cudaFree(d_o));
  free(o);
  g_strided += 1;
  return rc;
}

/* padec_cuda_merge_shards refuses what padec_cpu_merge_shards refuses, and launches nothing. */
static int check_merge_errors(const shard_case *sc, device_case *d, cudaStream_t stream,
                              const void *merged) {
  const padec_params *p = &sc->whole.params;
  struct CUstream_st *s = (struct CUstream_st *)stream;
  const padec_shard_merge_tensors good =
      shard_case_merge_tensors(sc, d->shard_o, d->shard_lse, d->o, d->lse);
  padec_shard_merge_tensors bad[7];
  const padec_status want[7] = {PADEC_STATUS_BAD_ARGUMENT, PADEC_STATUS_BAD_ARGUMENT,
                                PADEC_STATUS_NULL_POINTER, PADEC_STATUS_NULL_POINTER,
                                PADEC_STATUS_MISALIGNED_POINTER, PADEC_STATUS_MISALIGNED_POINTER,
                                PADEC_STATUS_MISALIGNED_POINTER};
  for (int i = 0; i < 7; ++i) bad[i] = good;
  bad[0].num_shards = 0;
  bad[1].rows = -1;
  bad[2].shard_o = NULL;
  bad[3].o = NULL;
  bad[4].shard_lse = (const float *)(const void *)((const char *)d->shard_lse + 2);
  bad[5].o = (char *)d->o + 1;
  bad[6].shard_o = (const float *)d->shard_o + 1; /* 4-byte aligned, not 16: the float4 loads */
  int rc = 0;
  for (int i = 0; i < 7; ++i) {
    const padec_status got = padec_cuda_merge_shards(p, &bad[i], s);
    const padec_status cpu = padec_cpu_merge_shards(p, &bad[i]); /* validation only: refused */
    if (got != want[i] || cpu != want[i]) {
      fprintf(stderr, "FAIL: merge error case %d: GPU %s, CPU %s, want %s\n", i,
              padec_status_name(got), padec_status_name(cpu), padec_status_name(want[i]));
      rc = -1;
    }
  }
  if (padec_cuda_merge_shards(NULL, &good, s) != PADEC_STATUS_NULL_POINTER ||
      padec_cuda_merge_shards(p, NULL, s) != PADEC_STATUS_NULL_POINTER) {
    fprintf(stderr, "FAIL: padec_cuda_merge_shards with NULL params or tensors\n");
    rc = -1;
  }
  CUDA_OK(cudaGetLastError());
  /* An error an earlier CUDA call left pending is reported, and nothing is launched; the next
   * call runs. Once a process (a failure for the merge, one for the plan upload): compute-
   * sanitizer counts the provoked cudaMalloc failures. */
  static int provoked;
  if (!provoked) {
    provoked = 1;
    void *huge = NULL;
    if (cudaMalloc(&huge, (size_t)1 << 62) == cudaSuccess) cudaFree(huge);
    if (padec_cuda_merge_shards(p, &good, s) != PADEC_STATUS_CUDA_ERROR ||
        strstr(padec_last_message(), "pending") == NULL) {
      fprintf(stderr, "FAIL: a pending CUDA error was not reported: %s\n", padec_last_message());
      rc = -1;
    }
    /* The plan upload too: the copy is not enqueued behind the caller's failed call. */
    if (cudaMalloc(&huge, (size_t)1 << 62) == cudaSuccess) cudaFree(huge);
    if (padec_cuda_upload_plan(&d->layout[0], d->host_plan[0], d->plan[0], s) !=
            PADEC_STATUS_CUDA_ERROR ||
        strstr(padec_last_message(), "padec_cuda_upload_plan") == NULL ||
        strstr(padec_last_message(), "pending") == NULL) {
      fprintf(stderr, "FAIL: the plan upload did not report a pending CUDA error: %s\n",
              padec_last_message());
      rc = -1;
    }
  }
  CUDA_OK(cudaGetLastError());
  void *o = host_alloc(sc->whole.o_bytes);
  download(o, d->o, sc->whole.o_bytes, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  if (memcmp(o, merged, sc->whole.o_bytes) != 0) {
    fprintf(stderr, "FAIL: a refused padec_cuda_merge_shards wrote into o\n");
    rc = -1;
  }
  free(o);
  return rc;
}

static void run_case(const char *label, const shard_case *sc, cudaStream_t stream, int extras) {
  const int32_t R = sc->num_shards;
  const padec_case *whole = &sc->whole;
  const size_t o_elems = shard_case_o_elems(sc), lse_elems = shard_case_lse_elems(sc);
  device_case d;
  host_results first, again;
  host_results_alloc(&first, sc);
  host_results_alloc(&again, sc);
  float *cpu_o = host_alloc(sizeof(float) * o_elems);
  float *cpu_lse = host_alloc(sizeof(float) * lse_elems);
  void *cpu_merged = host_alloc(whole->o_bytes);
  float *cpu_merged_lse = host_alloc(sizeof(float) * lse_elems);
  padec_check_result result;
  char what[160];
  int failed = 1;
  g_cases += 1;

  if (device_case_init(&d, sc, stream) != 0 || run_on_gpu(sc, &d, stream, &first) != 0 ||
      run_on_gpu(sc, &d, stream, &again) != 0)
    goto done;
  if (memcmp(first.shard_o, again.shard_o, sizeof(float) * o_elems * (size_t)R) != 0 ||
      memcmp(first.shard_lse, again.shard_lse, sizeof(float) * lse_elems * (size_t)R) != 0 ||
      memcmp(first.o, again.o, whole->o_bytes) != 0 ||
      memcmp(first.lse, again.lse, sizeof(float) * lse_elems) != 0) {
    fprintf(stderr, "FAIL %s: two runs differ (not deterministic)\n", label);
    goto done;
  }
  if (padec_check_output(whole, first.o, first.lse, &result) != 0 || !result.pass) {
    fprintf(stderr, "FAIL %s: the merged GPU output against the oracle\n", label);
    padec_check_print(stderr, label, whole, &result);
    goto done;
  }
  /* The GPU merge against the CPU merge of the same shard results. */
  padec_case_poison(whole, cpu_merged, cpu_merged_lse);
  const padec_shard_merge_tensors m =
      shard_case_merge_tensors(sc, first.shard_o, first.shard_lse, cpu_merged, cpu_merged_lse);
  if (padec_cpu_merge_shards(&whole->params, &m) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: padec_cpu_merge_shards: %s\n", label, padec_last_message());
    goto done;
  }
  snprintf(what, sizeof what, "%s: GPU merge against CPU merge", label);
  if (agree(what, whole->params.o_dtype, first.o, first.lse, cpu_merged, cpu_merged_lse,
            lse_elems, whole->params.head_dim, &result) != 0)
    goto done;
  for (int32_t r = 0; r < R; ++r) {
    const float *o = first.shard_o + (size_t)r * o_elems;
    const float *lse = first.shard_lse + (size_t)r * lse_elems;
    if (padec_check_output(&sc->shards[r], o, lse, &result) != 0 || !result.pass) {
      fprintf(stderr, "FAIL %s: shard %d on the GPU against its oracle\n", label, r);
      padec_check_print(stderr, label, &sc->shards[r], &result);
      goto done;
    }
    memset(cpu_o, 0xff, sizeof(float) * o_elems);
    memset(cpu_lse, 0xff, sizeof(float) * lse_elems);
    const padec_status status = shard_case_run_cpu(sc, r, cpu_o, cpu_lse);
    if (status != PADEC_STATUS_OK) {
      fprintf(stderr, "FAIL %s: shard %d on the CPU: %s\n", label, r, padec_last_message());
      goto done;
    }
    snprintf(what, sizeof what, "%s: shard %d, GPU against CPU", label, r);
    if (agree(what, PADEC_DTYPE_FP32, o, lse, cpu_o, cpu_lse, lse_elems, whole->params.head_dim,
              &result) != 0)
      goto done;
  }
  if (extras && whole->num_tokens > 0) {
    if (check_strided_merge(sc, &d, stream, first.o) != 0) goto done;
    if (check_merge_errors(sc, &d, stream, first.o) != 0) goto done;
  }
  failed = 0;

done:
  if (failed) {
    shard_case_print(stderr, label, sc);
    g_failures += 1;
  }
  device_case_free(&d);
  host_results_free(&first);
  host_results_free(&again);
  free(cpu_o);
  free(cpu_lse);
  free(cpu_merged);
  free(cpu_merged_lse);
}

int main(int argc, char **argv) {
  const int cases_per_count = argc > 1 ? atoi(argv[1]) : 6;
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint64_t seed = 0x6a4d0001;
  for (int32_t R = 1; R <= MAX_SHARDS; ++R) {
    for (int n = 0; n < cases_per_count; ++n) {
      shard_case sc;
      if (shard_case_random(&sc, R, 400000, seed++) != 0) {
        fprintf(stderr, "shard_case_random failed\n");
        return 1;
      }
      char label[64];
      snprintf(label, sizeof label, "GPU R=%d case %d", R, n);
      run_case(label, &sc, stream, n % 3 == 0);
      shard_case_free(&sc);
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
  printf("test_cuda_shard: %d cases (R 1..%d), %d strided merges, %d failures\n", g_cases,
         MAX_SHARDS, g_strided, g_failures);
  return g_failures ? 1 : 0;
}
