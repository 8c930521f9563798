/*
 * The decode step as one CUDA graph, captured once and replayed every step.
 *
 * A server decodes a batch that changes every step: sequences grow by one token, new ones join,
 * finished ones leave. With a host scheduler every step would need the lengths on the host and a
 * plan upload; with padec the plan is built on the device inside the graph, from the lengths in
 * device memory, so one graph serves every step up to the largest batch it was captured for.
 *
 * This example allocates every buffer once for MAX_BATCH sequences of up to MAX_TOKENS tokens,
 * captures padec_cuda_plan_build + padec_cuda_run, and replays the graph for STEPS steps. Between
 * replays it writes only the step's inputs into the captured buffers: kv_lens (sequences join
 * over the first steps and grow by STEP_TOKENS tokens a step; the others are padding with
 * kv_len 0), and the per-tensor fp8 scales. The block table is the 2-D kind (a fixed row of
 * pages per sequence), so it does not change here; a server that allocates pages as sequences
 * grow writes page_indptr and page_indices into their buffers the same way. It prints the time
 * of each step (the graph alone, CUDA events) and checks that the outputs are finite.
 *
 * Usage: example_graph_step [steps]   (default 40)
 * Exit status: 0 finite outputs, 1 an error or a non-finite output, 2 usage error, 77 no usable
 * CUDA device.
 */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec_cuda.h"

#define MAX_BATCH 64
#define MAX_TOKENS 32768
#define STEP_TOKENS 1024

#define CUDA_OK(call)                                                                        \
  do {                                                                                       \
    cudaError_t error_ = (call);                                                             \
    if (error_ != cudaSuccess) {                                                             \
      fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(error_));                 \
      return 1;                                                                              \
    }                                                                                        \
  } while (0)

#define PADEC_OK(call)                                                                       \
  do {                                                                                       \
    padec_status status_ = (call);                                                           \
    if (status_ != PADEC_STATUS_OK) {                                                        \
      fprintf(stderr, "%s failed: %s: %s\n", #call, padec_status_name(status_),              \
              padec_last_message());                                                         \
      return 1;                                                                              \
    }                                                                                        \
  } while (0)

static float bf16_to_float(uint16_t bits) {
  const uint32_t word = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &word, sizeof f);
  return f;
}

int main(int argc, char **argv) {
  long steps = 40;
  if (argc == 2) {
    char *end = NULL;
    errno = 0;
    steps = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || errno != 0 || steps < 1 || steps > 1000000) steps = -1;
  }
  if (argc > 2 || steps < 1) {
    fprintf(stderr, "usage: %s [steps]   (steps: 1 to 1000000, default 40)\n", argv[0]);
    return 2;
  }
  padec_cuda_device_info info;
  if (padec_cuda_device_query(0, &info) != PADEC_STATUS_OK) {
    printf("no CUDA device: %s\n", padec_last_message());
    return 77;
  }
  if (info.cc_major < 9) { /* the library carries sm_90a code and sm_90 PTX only */
    printf("device 0 (%s) is of compute capability %d.%d; padec needs 9.0 or newer\n", info.name,
           info.cc_major, info.cc_minor);
    return 77;
  }

  /* A Llama-like layer: 32 q heads over 8 KV heads of 128, fp8 KV with per-tensor scales that
   * live in device memory (so the graph reads the current values at every replay). */
  padec_params params;
  memset(&params, 0, sizeof params);
  params.num_q_heads = 32;
  params.num_kv_heads = 8;
  params.head_dim = 128;
  params.page_size = 16;
  params.q_dtype = PADEC_DTYPE_BF16;
  params.kv_dtype = PADEC_DTYPE_E4M3;
  params.o_dtype = PADEC_DTYPE_BF16;
  params.q_len = 1;
  params.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;

  /* Sizes: everything for the largest batch, once. */
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  PADEC_OK(padec_cuda_recommended_workers(&params, 0, &options.num_workers));
  padec_plan_layout layout;
  PADEC_OK(padec_plan_layout_init(&params, MAX_BATCH, &options, &layout));
  const int32_t pages_per_seq = MAX_TOKENS / params.page_size;
  const int64_t num_pages = (int64_t)MAX_BATCH * pages_per_seq;
  const size_t page_bytes = (size_t)params.page_size * params.num_kv_heads * params.head_dim; /* fp8 */
  const size_t row_elems = (size_t)params.num_q_heads * params.head_dim;
  const size_t q_bytes = MAX_BATCH * row_elems * 2, o_bytes = MAX_BATCH * row_elems * 2;

  void *d_q, *d_k, *d_v, *d_o, *d_plan, *d_ws, *d_counters;
  int32_t *d_indptr, *d_indices, *d_lens;
  float *d_scales; /* [0]: K scale, [1]: V scale */
  CUDA_OK(cudaMalloc(&d_q, q_bytes));
  CUDA_OK(cudaMalloc(&d_k, (size_t)num_pages * page_bytes));
  CUDA_OK(cudaMalloc(&d_v, (size_t)num_pages * page_bytes));
  CUDA_OK(cudaMalloc(&d_o, o_bytes));
  CUDA_OK(cudaMalloc((void **)&d_indptr, sizeof(int32_t) * (MAX_BATCH + 1)));
  CUDA_OK(cudaMalloc((void **)&d_indices, sizeof(int32_t) * (size_t)num_pages));
  CUDA_OK(cudaMalloc((void **)&d_lens, sizeof(int32_t) * MAX_BATCH));
  CUDA_OK(cudaMalloc((void **)&d_scales, 2 * sizeof(float)));
  CUDA_OK(cudaMalloc(&d_plan, layout.plan_bytes));
  CUDA_OK(cudaMalloc(&d_ws, layout.workspace_bytes));
  /* Merge counters that every run leaves zero: zeroed once here, and each replay is one launch
   * for the decode (no counter-clearing kernel). */
  const size_t counter_bytes = sizeof(int32_t) * (size_t)MAX_BATCH * (size_t)params.num_kv_heads;
  CUDA_OK(cudaMalloc(&d_counters, counter_bytes));
  CUDA_OK(cudaMemset(d_counters, 0, counter_bytes));

  /* Contents: q about 0.75 (bf16 0x3f3f), K 0.5 and V 1.0 in e4m3; a 2-D block table (sequence b
   * owns pages [b * pages_per_seq, (b + 1) * pages_per_seq)). */
  CUDA_OK(cudaMemset(d_q, 0x3f, q_bytes));
  CUDA_OK(cudaMemset(d_k, 0x30, (size_t)num_pages * page_bytes));
  CUDA_OK(cudaMemset(d_v, 0x38, (size_t)num_pages * page_bytes));
  {
    int32_t *indptr = malloc(sizeof(int32_t) * (MAX_BATCH + 1));
    int32_t *indices = malloc(sizeof(int32_t) * (size_t)num_pages);
    if (!indptr || !indices) return 1;
    for (int32_t b = 0; b <= MAX_BATCH; ++b) indptr[b] = b * pages_per_seq;
    for (int64_t i = 0; i < num_pages; ++i) indices[i] = (int32_t)i;
    CUDA_OK(cudaMemcpy(d_indptr, indptr, sizeof(int32_t) * (MAX_BATCH + 1), cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_indices, indices, sizeof(int32_t) * (size_t)num_pages, cudaMemcpyHostToDevice));
    free(indptr);
    free(indices);
  }
  CUDA_OK(cudaMemset(d_lens, 0, sizeof(int32_t) * MAX_BATCH));

  padec_tensors tensors;
  memset(&tensors, 0, sizeof tensors);
  tensors.q = d_q;
  tensors.k_pages = d_k;
  tensors.v_pages = d_v;
  tensors.num_pages = num_pages;
  tensors.page_indptr = d_indptr;
  tensors.page_indices = d_indices;
  tensors.kv_lens = d_lens;
  tensors.k_scales = d_scales;
  tensors.v_scales = d_scales + 1;
  tensors.o = d_o;
  tensors.merge_counters = d_counters;

  /* Capture once: the device plan, then the decode. */
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct CUstream_st *s = (struct CUstream_st *)stream;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  padec_status plan_status = padec_cuda_plan_build(&params, &layout, d_lens, d_plan, layout.plan_bytes, s);
  padec_status run_status = padec_cuda_run(&params, &layout, d_plan, &tensors, d_ws, layout.workspace_bytes, s);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  PADEC_OK(plan_status);
  PADEC_OK(run_status);
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  printf("%s: %d workers, graph captured for up to %d sequences of %d tokens\n", info.name,
         options.num_workers, MAX_BATCH, MAX_TOKENS);

  /* The step's inputs live in pinned memory, so the copies are asynchronous. */
  int32_t *lens;
  float *scales;
  uint16_t *o = malloc(o_bytes);
  CUDA_OK(cudaMallocHost((void **)&lens, sizeof(int32_t) * MAX_BATCH));
  CUDA_OK(cudaMallocHost((void **)&scales, 2 * sizeof(float)));
  if (!o) return 1;
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  double total_us = 0.0;
  int bad = 0;
  for (int step = 0; step < steps; ++step) {
    /* Two sequences join per step; live sequence b has grown by STEP_TOKENS a step since it
     * joined; the rest of the batch is padding. */
    int32_t live = 0;
    int64_t tokens = 0;
    for (int32_t b = 0; b < MAX_BATCH; ++b) {
      const int64_t joined = b / 2;
      int64_t len = step >= joined ? 1 + (int64_t)(step - joined) * STEP_TOKENS + 37 * b : 0;
      if (len > MAX_TOKENS) len = MAX_TOKENS;
      lens[b] = (int32_t)len;
      live += len > 0;
      tokens += len;
    }
    scales[0] = 1.0f / (64.0f + (float)(step % 8)); /* K and V scales change every step */
    scales[1] = 1.0f / (32.0f + (float)(step % 4));
    CUDA_OK(cudaMemcpyAsync(d_lens, lens, sizeof(int32_t) * MAX_BATCH, cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemcpyAsync(d_scales, scales, 2 * sizeof(float), cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaEventRecord(start, stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaEventRecord(stop, stream));
    CUDA_OK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
    total_us += 1e3 * ms;
    printf("step %3d: %2d live sequences, %8lld KV tokens, %8.1f us\n", step, live,
           (long long)tokens, 1e3 * ms);
    CUDA_OK(cudaMemcpy(o, d_o, o_bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < o_bytes / 2; ++i)
      if (!isfinite(bf16_to_float(o[i]))) bad = 1;
  }
  printf("%ld steps, %.1f us a step on average, outputs %s\n", steps, steps ? total_us / steps : 0.0,
         bad ? "NOT FINITE" : "finite");

  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  cudaFreeHost(lens);
  cudaFreeHost(scales);
  free(o);
  void *buffers[] = {d_q, d_k, d_v, d_o, d_indptr, d_indices, d_lens, d_scales, d_plan, d_ws, d_counters};
  for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; ++i) cudaFree(buffers[i]);
  return bad;
}
