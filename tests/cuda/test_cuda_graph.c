/*
 * The whole decode step in one CUDA graph: padec_cuda_plan_build + padec_cuda_run captured once
 * for a largest batch, then replayed with new kv_lens, new block tables, new q, new KV pages and
 * new per-tensor device scales (fp8, PADEC_FP8_SCALE_PER_TENSOR_DEVICE) at every replay, with no
 * re-capture. Every replay is a fresh random case (bench/harness.h) of the captured batch whose
 * buffers are copied into the captured device buffers (allocated once at their largest sizes);
 * its output is checked against the oracle with the tolerance rule, its padding sequences
 * (kv_len 0) must give exact zero rows and LSE -inf, and the plan the graph built on the device
 * must equal the host plan of the replay's lengths. Outputs are poisoned before every replay. Two
 * of the three configurations give self-resetting merge counters (padec_tensors.merge_counters,
 * zeroed once), which every replay must leave zero; the third uses the workspace's.
 *
 * Usage: test_cuda_graph [--quick]   (--quick: 3 replays per configuration)
 * Exit 77 without a Hopper GPU.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "harness.h"
#include "padec_cuda.h"
#include "test_support.h"

static int g_failures;
static int g_replays;

static uint64_t g_rng = 0x5eed5eed12345678ull;
static uint64_t next_u64(void) { return test_splitmix64(&g_rng); }
static int32_t below(int32_t n) { return n <= 0 ? 0 : (int32_t)(next_u64() % (uint64_t)n); }

static void *host_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

static size_t dtype_bytes(padec_dtype dtype) {
  return dtype == PADEC_DTYPE_E4M3 ? 1 : dtype == PADEC_DTYPE_FP32 ? 4 : 2;
}

typedef struct config {
  const char *label;
  padec_params params;
  padec_plan_options options;
  int32_t max_batch;
  int32_t max_len; /* tokens per sequence, at most */
  int kept_counters; /* 1: padec_tensors.merge_counters, zeroed once before the capture */
} config;

static void run_config(const config *cfg, int replays) {
  const padec_params *p = &cfg->params;
  const int32_t batch = cfg->max_batch;
  const int32_t q_len = p->q_len ? p->q_len : 1;
  padec_plan_layout layout;
  if (padec_plan_layout_init(p, batch, &cfg->options, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: layout: %s\n", cfg->label, padec_last_message());
    g_failures += 1;
    return;
  }
  /* Largest sizes of every buffer over all replays (padec_case_init draws up to 2 spare pages
   * per sequence and a pool a quarter larger than the rows, plus 3 pages). */
  const int64_t max_row_pages =
      (int64_t)batch * (((int64_t)cfg->max_len + p->page_size - 1) / p->page_size + 2);
  const int64_t max_pages = max_row_pages + max_row_pages / 4 + 3;
  const size_t page_bytes = (size_t)p->page_size * (size_t)p->num_kv_heads *
                            (size_t)p->head_dim * dtype_bytes(p->kv_dtype);
  const size_t tokens = (size_t)batch * (size_t)q_len;
  const size_t row_elems = (size_t)p->num_q_heads * (size_t)p->head_dim;
  const size_t q_bytes = tokens * row_elems * dtype_bytes(p->q_dtype);
  const size_t o_bytes = tokens * row_elems * dtype_bytes(p->o_dtype);
  const size_t lse_count = tokens * (size_t)p->num_q_heads;
  const int device_scales = p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE;

  void *d_q, *d_k, *d_v, *d_indptr, *d_indices, *d_lens, *d_o, *d_lse, *d_plan, *d_ws;
  void *d_ks = NULL, *d_vs = NULL, *d_counters = NULL;
  const size_t counter_bytes = sizeof(int32_t) * (size_t)batch * (size_t)p->num_kv_heads;
  CUDA_OK(cudaMalloc(&d_q, q_bytes));
  CUDA_OK(cudaMalloc(&d_k, (size_t)max_pages * page_bytes));
  CUDA_OK(cudaMalloc(&d_v, (size_t)max_pages * page_bytes));
  CUDA_OK(cudaMalloc(&d_indptr, sizeof(int32_t) * ((size_t)batch + 1)));
  CUDA_OK(cudaMalloc(&d_indices, sizeof(int32_t) * (size_t)max_row_pages));
  CUDA_OK(cudaMalloc(&d_lens, sizeof(int32_t) * (size_t)batch));
  CUDA_OK(cudaMalloc(&d_o, o_bytes));
  CUDA_OK(cudaMalloc(&d_lse, sizeof(float) * lse_count));
  CUDA_OK(cudaMalloc(&d_plan, layout.plan_bytes));
  CUDA_OK(cudaMalloc(&d_ws, layout.workspace_bytes));
  if (device_scales) {
    CUDA_OK(cudaMalloc(&d_ks, sizeof(float)));
    CUDA_OK(cudaMalloc(&d_vs, sizeof(float)));
  }
  if (cfg->kept_counters) {
    CUDA_OK(cudaMalloc(&d_counters, counter_bytes));
    CUDA_OK(cudaMemset(d_counters, 0, counter_bytes));
  }
  /* Capture-time contents do not matter (the graph reads them at replay), but keep them valid. */
  CUDA_OK(cudaMemset(d_lens, 0, sizeof(int32_t) * (size_t)batch));
  CUDA_OK(cudaMemset(d_indptr, 0, sizeof(int32_t) * ((size_t)batch + 1)));

  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.q = d_q;
  t.k_pages = d_k;
  t.v_pages = d_v;
  t.num_pages = max_pages;
  t.page_indptr = (const int32_t *)d_indptr;
  t.page_indices = (const int32_t *)d_indices;
  t.kv_lens = (const int32_t *)d_lens;
  t.k_scales = (const float *)d_ks;
  t.v_scales = (const float *)d_vs;
  t.o = d_o;
  t.lse = (float *)d_lse;
  t.merge_counters = (int32_t *)d_counters;

  cudaStream_t stream;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct CUstream_st *s = (struct CUstream_st *)stream;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  padec_status plan_status = padec_cuda_plan_build(p, &layout, (const int32_t *)d_lens, d_plan,
                                                   layout.plan_bytes, s);
  padec_status run_status = plan_status == PADEC_STATUS_OK
                                ? padec_cuda_run(p, &layout, d_plan, &t, d_ws, layout.workspace_bytes, s)
                                : plan_status;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (plan_status != PADEC_STATUS_OK || run_status != PADEC_STATUS_OK || end != cudaSuccess) {
    fprintf(stderr, "FAIL %s: capture: plan %s, run %s, end capture %s: %s\n", cfg->label,
            padec_status_name(plan_status), padec_status_name(run_status), cudaGetErrorString(end),
            padec_last_message());
    g_failures += 1;
    exit(1);
  }
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));

  int32_t *lens = host_alloc(sizeof(int32_t) * (size_t)batch);
  void *o = host_alloc(o_bytes), *host_plan = host_alloc(layout.plan_bytes);
  void *device_plan = host_alloc(layout.plan_bytes);
  float *lse = host_alloc(sizeof(float) * lse_count);
  for (int replay = 0; replay < replays; ++replay) {
    /* Lengths grow from replay to replay; the first `active` sequences are live, some of them
     * empty, the rest are padding (kv_len 0). The last replay is all padding. */
    const int32_t active = replay == replays - 1 ? 0 : replay == 0 ? batch : 1 + below(batch);
    const int32_t grown = cfg->max_len / 4 + (int32_t)((int64_t)(cfg->max_len * 3 / 4) * replay / replays);
    for (int32_t b = 0; b < batch; ++b)
      lens[b] = b < active && below(6) != 0 ? 1 + below(grown) : 0;
    padec_case c;
    if (padec_case_init(&c, p, batch, lens, 1000 + (uint64_t)replay) != 0 || c.num_pages > max_pages ||
        c.page_indptr[batch] > max_row_pages) {
      fprintf(stderr, "FAIL %s: replay %d: case init (pages %lld of %lld)\n", cfg->label, replay,
              (long long)c.num_pages, (long long)max_pages);
      g_failures += 1;
      padec_case_free(&c);
      continue;
    }
    /* The step's inputs, into the captured buffers, on the graph's stream. */
    CUDA_OK(cudaMemcpyAsync(d_q, c.q, c.q_bytes, cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemcpyAsync(d_k, c.k_pages, c.pool_bytes, cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemcpyAsync(d_v, c.v_pages, c.pool_bytes, cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemcpyAsync(d_indptr, c.page_indptr, sizeof(int32_t) * ((size_t)batch + 1),
                            cudaMemcpyHostToDevice, stream));
    if (c.page_indptr[batch] > 0)
      CUDA_OK(cudaMemcpyAsync(d_indices, c.page_indices, sizeof(int32_t) * (size_t)c.page_indptr[batch],
                              cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemcpyAsync(d_lens, c.kv_lens, sizeof(int32_t) * (size_t)batch,
                            cudaMemcpyHostToDevice, stream));
    if (device_scales) {
      CUDA_OK(cudaMemcpyAsync(d_ks, c.k_scales, sizeof(float), cudaMemcpyHostToDevice, stream));
      CUDA_OK(cudaMemcpyAsync(d_vs, c.v_scales, sizeof(float), cudaMemcpyHostToDevice, stream));
    }
    CUDA_OK(cudaMemsetAsync(d_o, 0xff, o_bytes, stream));
    CUDA_OK(cudaMemsetAsync(d_lse, 0xff, sizeof(float) * lse_count, stream));
    CUDA_OK(cudaMemsetAsync(d_plan, 0xab, layout.plan_bytes, stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaMemcpyAsync(o, d_o, o_bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaMemcpyAsync(lse, d_lse, sizeof(float) * lse_count, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaMemcpyAsync(device_plan, d_plan, layout.plan_bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    g_replays += 1;

    char label[160];
    snprintf(label, sizeof label, "%s, replay %d (%d live of %d)", cfg->label, replay, active, batch);
    if (padec_plan_build(&c.params, &layout, c.kv_lens, host_plan, layout.plan_bytes) != PADEC_STATUS_OK ||
        memcmp(host_plan, device_plan, layout.plan_bytes) != 0) {
      fprintf(stderr, "FAIL %s: the plan built in the graph differs from the host plan\n", label);
      g_failures += 1;
    }
    if (d_counters) {
      /* Every replay must leave the counters zero for the next one. */
      int32_t *counters = host_alloc(counter_bytes);
      CUDA_OK(cudaMemcpy(counters, d_counters, counter_bytes, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < counter_bytes / sizeof(int32_t); ++i)
        if (counters[i] != 0) {
          fprintf(stderr, "FAIL %s: merge counter %zu is %d after the replay\n", label, i, counters[i]);
          g_failures += 1;
          break;
        }
      free(counters);
    }
    padec_check_result result;
    if (padec_check_output(&c, o, lse, &result) != 0 || !result.pass) {
      fprintf(stderr, "FAIL %s: output against the oracle\n", label);
      padec_check_print(stderr, label, &c, &result);
      g_failures += 1;
    }
    for (int32_t b = 0; b < batch; ++b) {
      if (lens[b] != 0) continue;
      int bad = 0;
      for (size_t i = (size_t)b * q_len * row_elems; i < (size_t)(b + 1) * q_len * row_elems; ++i)
        if ((float)padec_output_element(o, p->o_dtype, (size_t)i) != 0.0f) bad = 1;
      for (size_t i = (size_t)b * q_len * p->num_q_heads; i < (size_t)(b + 1) * q_len * p->num_q_heads; ++i)
        if (!(isinf(lse[i]) && lse[i] < 0)) bad = 1;
      if (bad) {
        fprintf(stderr, "FAIL %s: padding sequence %d: output not 0 or LSE not -inf\n", label, b);
        g_failures += 1;
        break;
      }
    }
    padec_case_free(&c);
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
  void *buffers[] = {d_q, d_k, d_v, d_indptr, d_indices, d_lens, d_o, d_lse, d_plan, d_ws, d_ks, d_vs, d_counters};
  for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; ++i)
    if (buffers[i]) CUDA_OK(cudaFree(buffers[i]));
  free(lens);
  free(o);
  free(host_plan);
  free(device_plan);
  free(lse);
}

static padec_params base_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = 16;
  p.q_dtype = PADEC_DTYPE_BF16;
  p.kv_dtype = PADEC_DTYPE_BF16;
  p.o_dtype = PADEC_DTYPE_BF16;
  p.q_len = 1;
  return p;
}

int main(int argc, char **argv) {
  const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  config configs[3];
  /* fp8 with device scales, splits forced (16-token partitions, workers not a multiple of the
   * heads). */
  configs[0].label = "e4m3 device scales, split";
  configs[0].params = base_params();
  configs[0].params.kv_dtype = PADEC_DTYPE_E4M3;
  configs[0].params.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
  configs[0].options = (padec_plan_options){2 * 40 + 1, 16, PADEC_POLICY_EVEN};
  configs[0].max_batch = 16;
  configs[0].max_len = 3000;
  configs[0].kept_counters = 1;
  /* The same with the recommended workers and default partitions. */
  configs[1] = configs[0];
  configs[1].label = "e4m3 device scales, recommended workers";
  configs[1].options = (padec_plan_options){padec_gpu_default_workers(&configs[0].params), 0,
                                            PADEC_POLICY_EVEN};
  configs[1].max_batch = 48;
  configs[1].max_len = 6000;
  configs[1].kept_counters = 0;
  /* bf16, q_len 3, a window, HND pages of 32, fp32 output, group 8. */
  configs[2].label = "bf16 q_len 3, window, HND";
  configs[2].params = base_params();
  configs[2].params.num_q_heads = 16;
  configs[2].params.q_len = 3;
  configs[2].params.window_left = 700;
  configs[2].params.kv_layout = PADEC_LAYOUT_HND;
  configs[2].params.page_size = 32;
  configs[2].params.o_dtype = PADEC_DTYPE_FP32;
  configs[2].options = (padec_plan_options){2 * 24, 64, PADEC_POLICY_EVEN};
  configs[2].max_batch = 12;
  configs[2].max_len = 4000;
  configs[2].kept_counters = 1;
  for (int i = 0; i < 3; ++i) run_config(&configs[i], quick ? 3 : 12);
  printf("%d graph replays checked, %d failures\n", g_replays, g_failures);
  return g_failures ? 1 : 0;
}
