/* GPU side of the harness (see gpu.h): device copies of a case, one checked run, and the
 * benchmark with a cold L2, CUDA events and the copy ceiling measured in the same process. */
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include "cuda/decode_params.h"
#include "gpu.h"
#include "internal.h"
#include "padec_cuda.h"
#include "read_flush.cuh"

namespace {

struct ErrorSink {
  char *buffer;
  size_t size;
};

int report(const ErrorSink &sink, const char *format, ...) {
  if (sink.buffer && sink.size) {
    va_list args;
    va_start(args, format);
    vsnprintf(sink.buffer, sink.size, format, args);
    va_end(args);
  }
  return -1;
}

#define GPU_CHECK(call)                                                                      \
  do {                                                                                       \
    cudaError_t error_ = (call);                                                             \
    if (error_ != cudaSuccess) {                                                             \
      report(sink, "%s failed: %s (%s:%d)", #call, cudaGetErrorString(error_), __FILE__, __LINE__); \
      goto fail;                                                                             \
    }                                                                                        \
  } while (0)

/* Device buffers that free themselves. */
struct DeviceBuffer {
  void *ptr = nullptr;
  size_t bytes = 0;
  cudaError_t alloc(size_t n) {
    bytes = n ? n : 16;
    return cudaMalloc(&ptr, bytes);
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

double host_seconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int dtype_bytes(padec_dtype t) { return t == PADEC_DTYPE_E4M3 ? 1 : t == PADEC_DTYPE_FP32 ? 4 : 2; }

/* Fills a buffer with random, finite values of the element type: uniform in [-1, 1] for 16-bit
 * types, and e4m3 codes away from NaN (the per-tensor scale makes their size irrelevant). */
__global__ void fill_random(uint8_t *data, size_t bytes, int element_bytes, uint64_t seed) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < bytes / element_bytes; i += stride) {
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    if (element_bytes == 1) {
      uint8_t code = (uint8_t)(x & 0xff);
      if ((code & 0x7f) >= 0x70) code &= 0xb7; /* keep |value| < 256, never NaN */
      data[i] = code;
    } else {
      const float u = (float)((x >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
      const uint32_t bits = __float_as_uint(u);
      reinterpret_cast<uint16_t *>(data)[i] = (uint16_t)(bits >> 16); /* bf16, also valid f16 data */
    }
  }
}


/* PADEC_BENCH_POOL_SCALE=N (1..1024, default 1): the pool holds N times the pages the batch
 * uses, as a server's pool is sized for its largest load, and the used pages are scattered
 * over all of it. -1 for a value that is not an integer in 1..1024. */
int64_t bench_pool_scale() {
  const char *text = getenv("PADEC_BENCH_POOL_SCALE");
  if (!text) return 1;
  char *end = nullptr;
  const long scale = strtol(text, &end, 10);
  return end != text && *end == '\0' && scale >= 1 && scale <= 1024 ? scale : -1;
}

/* The benchmarks' block table: each sequence's pages (exactly what its kv_len needs), scattered
 * over the pool by a fixed permutation, as a long-running server ends up with. With
 * PADEC_BENCH_PAGES=contiguous the pages are laid out in order instead (a fresh server), to
 * tell what the scatter costs. Returns the pool's page count (bench_pool_scale() times the
 * pages in use), or -1 where PADEC_BENCH_POOL_SCALE is bad or the pool would pass 2^31 - 1
 * pages; indptr has batch + 1 entries. */
int64_t scattered_block_table(const padec_workload *workload, std::vector<int32_t> &indptr,
                              std::vector<int32_t> &indices) {
  const int32_t page_size = workload->params.page_size;
  indptr.assign(workload->batch + 1, 0);
  for (int32_t b = 0; b < workload->batch; ++b)
    indptr[b + 1] = indptr[b] + (int32_t)((workload->kv_lens[b] + page_size - 1) / page_size);
  const int64_t used_pages = indptr[workload->batch];
  const int64_t pool_pages = used_pages * bench_pool_scale();
  if (pool_pages < 0 || pool_pages > INT32_MAX) return -1; /* page ids are int32 */
  const char *pages = getenv("PADEC_BENCH_PAGES");
  const bool contiguous = pages && strcmp(pages, "contiguous") == 0;
  /* A permutation of the pool's pages, of which the first used_pages are the block table. */
  std::vector<int32_t> order((size_t)(pool_pages > 0 ? pool_pages : 1));
  for (int64_t i = 0; i < pool_pages; ++i) order[i] = (int32_t)i;
  uint64_t state = 0x2545f4914f6cdd1dull;
  for (int64_t i = pool_pages - 1; i > 0 && !contiguous; --i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const int64_t j = (int64_t)(state % (uint64_t)(i + 1));
    std::swap(order[i], order[j]);
  }
  indices.assign(order.begin(), order.begin() + (used_pages > 0 ? used_pages : 1));
  return pool_pages;
}

__global__ void fill_float(float *data, size_t count, float value) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) data[i] = value;
}

/* Device copies of a benchmark workload: random q and pools, the scattered block table, fp8
 * scales as the mode needs (1/256 each), the outputs, and the 256 MiB buffer the L2 flush
 * reads; `tensors` points at them. */
struct BenchProblem {
  DeviceBuffer q, k, v, indptr, indices, lens, o, lse, k_scales, v_scales, flush, merge_counters;
  padec_tensors tensors;
};

/* PADEC_BENCH_COUNTERS: the merge counters a benchmarked run uses. kept (the default): a
 * self-resetting array zeroed once (padec_tensors.merge_counters), so a run is one launch;
 * workspace: NULL, the workspace's counters and the kernel that clears them before each run. */
bool bench_kept_counters() {
  const char *mode = getenv("PADEC_BENCH_COUNTERS");
  return !(mode && strcmp(mode, "workspace") == 0);
}

/* PADEC_BENCH_FLUSH: how the L2 is made cold before each timed iteration. read (the default): a
 * kernel reads a 256 MiB buffer, leaving L2 cold and clean; memset: a 256 MiB memset, cold and
 * dirty (the usual recipe, for comparison); none: no flush (warm L2 and instruction caches). */
enum class Flush { Read, Memset, None };

Flush flush_mode() {
  const char *mode = getenv("PADEC_BENCH_FLUSH");
  if (mode && strcmp(mode, "memset") == 0) return Flush::Memset;
  if (mode && strcmp(mode, "none") == 0) return Flush::None;
  return Flush::Read;
}

cudaError_t flush_l2(const BenchProblem &bp, const cudaDeviceProp &prop, Flush flush, int iteration,
                     cudaStream_t stream) {
  if (flush == Flush::None) return cudaSuccess;
  if (flush == Flush::Memset) return cudaMemsetAsync(bp.flush.ptr, iteration & 0xff, bp.flush.bytes, stream);
  launch_read_flush(bp.flush.ptr, bp.flush.bytes, prop.multiProcessorCount, stream);
  return cudaGetLastError();
}

/* PADEC_BENCH_KV=interleaved: K and V of each page side by side in one allocation ([pages][2]
 * [page], padec_tensors.kv_page_stride two pages), as a server that keeps a block's K and V
 * together holds them; otherwise two contiguous pools. */
bool bench_kv_interleaved() {
  const char *mode = getenv("PADEC_BENCH_KV");
  return mode && strcmp(mode, "interleaved") == 0;
}

int setup_bench_problem(const padec_workload *workload, BenchProblem &bp, const ErrorSink &sink) {
  const padec_params &p = workload->params;
  const int32_t batch = workload->batch;
  const int64_t tokens = (int64_t)batch * (p.q_len ? p.q_len : 1);
  const int kv_bytes = dtype_bytes(p.kv_dtype);
  const bool fp8 = p.kv_dtype == PADEC_DTYPE_E4M3;
  const bool token_scales = fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN;
  const bool device_scales = fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
  std::vector<int32_t> indptr, indices;
  const int64_t num_pages = scattered_block_table(workload, indptr, indices);
  if (num_pages < 0) {
    const char *scale = getenv("PADEC_BENCH_POOL_SCALE");
    return report(sink, "PADEC_BENCH_POOL_SCALE=%s: need an integer 1..1024 that keeps the pool "
                  "under 2^31 pages", scale ? scale : "1");
  }
  const int64_t pages = num_pages > 0 ? num_pages : 1;
  const size_t page_bytes = (size_t)p.page_size * p.num_kv_heads * p.head_dim * kv_bytes;
  const size_t pool_bytes = (size_t)pages * page_bytes;
  const bool interleaved = bench_kv_interleaved();
  const size_t scale_count = token_scales ? (size_t)pages * p.num_kv_heads * p.page_size : 1;
  GPU_CHECK(bp.q.alloc(tokens * p.num_q_heads * p.head_dim * 2));
  GPU_CHECK(bp.k.alloc(interleaved ? 2 * pool_bytes : pool_bytes));
  if (!interleaved) GPU_CHECK(bp.v.alloc(pool_bytes));
  GPU_CHECK(bp.indptr.alloc(sizeof(int32_t) * (batch + 1)));
  GPU_CHECK(bp.indices.alloc(sizeof(int32_t) * indices.size()));
  GPU_CHECK(bp.lens.alloc(sizeof(int32_t) * batch));
  GPU_CHECK(bp.o.alloc(tokens * p.num_q_heads * p.head_dim * dtype_bytes(p.o_dtype)));
  GPU_CHECK(bp.lse.alloc(sizeof(float) * tokens * p.num_q_heads));
  GPU_CHECK(bp.merge_counters.alloc(sizeof(int32_t) * (size_t)batch * p.num_kv_heads));
  GPU_CHECK(cudaMemset(bp.merge_counters.ptr, 0, bp.merge_counters.bytes));
  GPU_CHECK(bp.flush.alloc((size_t)256 << 20));
  GPU_CHECK(cudaMemset(bp.flush.ptr, 1, bp.flush.bytes));
  fill_random<<<1024, 256>>>(static_cast<uint8_t *>(bp.q.ptr), bp.q.bytes, 2, 1);
  fill_random<<<4096, 256>>>(static_cast<uint8_t *>(bp.k.ptr), bp.k.bytes, kv_bytes, 2);
  if (!interleaved) fill_random<<<4096, 256>>>(static_cast<uint8_t *>(bp.v.ptr), pool_bytes, kv_bytes, 3);
  if (token_scales || device_scales) {
    GPU_CHECK(bp.k_scales.alloc(sizeof(float) * scale_count));
    GPU_CHECK(bp.v_scales.alloc(sizeof(float) * scale_count));
    fill_float<<<256, 256>>>(static_cast<float *>(bp.k_scales.ptr), scale_count, 1.0f / 256.0f);
    fill_float<<<256, 256>>>(static_cast<float *>(bp.v_scales.ptr), scale_count, 1.0f / 256.0f);
  }
  GPU_CHECK(cudaGetLastError());
  GPU_CHECK(cudaMemcpy(bp.indptr.ptr, indptr.data(), sizeof(int32_t) * (batch + 1), cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(bp.indices.ptr, indices.data(), sizeof(int32_t) * indices.size(), cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(bp.lens.ptr, workload->kv_lens, sizeof(int32_t) * batch, cudaMemcpyHostToDevice));
  GPU_CHECK(cudaDeviceSynchronize());
  memset(&bp.tensors, 0, sizeof bp.tensors);
  bp.tensors.q = bp.q.ptr;
  bp.tensors.k_pages = bp.k.ptr;
  bp.tensors.v_pages = interleaved ? static_cast<const uint8_t *>(bp.k.ptr) + page_bytes : bp.v.ptr;
  if (interleaved) bp.tensors.kv_page_stride = 2 * (int64_t)(page_bytes / kv_bytes);
  bp.tensors.num_pages = num_pages;
  bp.tensors.page_indptr = static_cast<const int32_t *>(bp.indptr.ptr);
  bp.tensors.page_indices = static_cast<const int32_t *>(bp.indices.ptr);
  bp.tensors.kv_lens = static_cast<const int32_t *>(bp.lens.ptr);
  bp.tensors.k_scales = static_cast<const float *>(bp.k_scales.ptr);
  bp.tensors.v_scales = static_cast<const float *>(bp.v_scales.ptr);
  bp.tensors.o = bp.o.ptr;
  bp.tensors.lse = static_cast<float *>(bp.lse.ptr);
  bp.tensors.merge_counters = bench_kept_counters() ? static_cast<int32_t *>(bp.merge_counters.ptr) : nullptr;
  return 0;
fail:
  return -1;
}

}  // namespace

extern "C" const char *padec_gpu_unavailable_reason(void) {
  static char reason[640]; /* room for the device name (256) */
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(reason, sizeof reason, "no usable CUDA device (cudaGetDeviceCount: %s)",
             cudaGetErrorString(error));
    return reason;
  }
  if (count == 0) return "no CUDA device";
  cudaDeviceProp prop;
  error = cudaGetDeviceProperties(&prop, 0);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(reason, sizeof reason, "device 0: cudaGetDeviceProperties: %s", cudaGetErrorString(error));
    return reason;
  }
  if (prop.major < 9) {
    snprintf(reason, sizeof reason,
             "device 0 (%s) is of compute capability %d.%d; padec's kernels need 9.0 or newer",
             prop.name, prop.major, prop.minor);
    return reason;
  }
  return "";
}

extern "C" int padec_gpu_available(void) { return padec_gpu_unavailable_reason()[0] == '\0'; }

extern "C" int32_t padec_gpu_default_workers(const padec_params *params) {
  int32_t workers = 0;
  if (padec_cuda_recommended_workers(params, 0, &workers) != PADEC_STATUS_OK) return 0;
  return workers;
}

extern "C" padec_device_shape padec_gpu_device_shape(void) {
  padec_device_shape shape = {0, 0};
  padec_cuda_device_info info;
  if (padec_cuda_device_query(0, &info) != PADEC_STATUS_OK) return shape;
  shape.sm_count = info.sm_count;
  shape.memory_bytes_per_second = info.memory_bytes_per_second;
  return shape;
}

namespace {

/* The device copy of a case: every input uploaded, o, lse and the workspace poisoned. */
struct CaseBuffers {
  DeviceBuffer q, k, v, indptr, indices, lens, ks, vs, o, lse, ws, starts, seq_lens;
  padec_tensors tensors;
};

int upload_case(const padec_case *c, bool want_lse, size_t workspace_bytes, CaseBuffers &d,
                const ErrorSink &sink) {
  const int64_t rows = c->num_tokens * c->params.num_q_heads;
  GPU_CHECK(d.q.alloc(c->q_bytes));
  GPU_CHECK(d.k.alloc(c->pool_bytes));
  GPU_CHECK(d.v.alloc(c->pool_bytes));
  GPU_CHECK(d.indptr.alloc(sizeof(int32_t) * (c->batch + 1)));
  GPU_CHECK(d.indices.alloc(sizeof(int32_t) * (c->page_indptr[c->batch] + 1)));
  GPU_CHECK(d.lens.alloc(sizeof(int32_t) * (c->batch + 1)));
  GPU_CHECK(d.o.alloc(c->o_bytes));
  GPU_CHECK(d.lse.alloc(sizeof(float) * (rows + 1)));
  GPU_CHECK(d.ws.alloc(workspace_bytes));
  GPU_CHECK(cudaMemcpy(d.q.ptr, c->q, c->q_bytes, cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(d.k.ptr, c->k_pages, c->pool_bytes, cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(d.v.ptr, c->v_pages, c->pool_bytes, cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(d.indptr.ptr, c->page_indptr, sizeof(int32_t) * (c->batch + 1), cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(d.indices.ptr, c->page_indices, sizeof(int32_t) * c->page_indptr[c->batch], cudaMemcpyHostToDevice));
  GPU_CHECK(cudaMemcpy(d.lens.ptr, c->kv_lens, sizeof(int32_t) * c->batch, cudaMemcpyHostToDevice));
  if (c->shard_starts && c->seq_lens) {
    GPU_CHECK(d.starts.alloc(sizeof(int32_t) * (c->batch + 1)));
    GPU_CHECK(d.seq_lens.alloc(sizeof(int32_t) * (c->batch + 1)));
    GPU_CHECK(cudaMemcpy(d.starts.ptr, c->shard_starts, sizeof(int32_t) * c->batch, cudaMemcpyHostToDevice));
    GPU_CHECK(cudaMemcpy(d.seq_lens.ptr, c->seq_lens, sizeof(int32_t) * c->batch, cudaMemcpyHostToDevice));
  }
  if (c->k_scales) {
    GPU_CHECK(d.ks.alloc(c->scales_bytes));
    GPU_CHECK(d.vs.alloc(c->scales_bytes));
    GPU_CHECK(cudaMemcpy(d.ks.ptr, c->k_scales, c->scales_bytes, cudaMemcpyHostToDevice));
    GPU_CHECK(cudaMemcpy(d.vs.ptr, c->v_scales, c->scales_bytes, cudaMemcpyHostToDevice));
  }
  /* Poison: 0xff bytes are NaN in bf16, fp16 and fp32, so an unwritten element fails the check. */
  GPU_CHECK(cudaMemset(d.o.ptr, 0xff, c->o_bytes));
  GPU_CHECK(cudaMemset(d.lse.ptr, 0xff, sizeof(float) * (rows + 1)));
  GPU_CHECK(cudaMemset(d.ws.ptr, 0xff, workspace_bytes));
  d.tensors = padec_case_tensors(c, d.o.ptr, want_lse ? static_cast<float *>(d.lse.ptr) : nullptr);
  d.tensors.q = d.q.ptr;
  d.tensors.k_pages = d.k.ptr;
  d.tensors.v_pages = d.v.ptr;
  d.tensors.page_indptr = static_cast<const int32_t *>(d.indptr.ptr);
  d.tensors.page_indices = static_cast<const int32_t *>(d.indices.ptr);
  d.tensors.kv_lens = static_cast<const int32_t *>(d.lens.ptr);
  d.tensors.k_scales = c->k_scales ? static_cast<const float *>(d.ks.ptr) : nullptr;
  d.tensors.v_scales = c->v_scales ? static_cast<const float *>(d.vs.ptr) : nullptr;
  d.tensors.shard_starts = static_cast<const int32_t *>(d.starts.ptr);
  d.tensors.seq_lens = static_cast<const int32_t *>(d.seq_lens.ptr);
  return 0;
fail:
  return -1;
}

/* padec_gpu_set_kept_counters: the array, its entries, and whether runs use it. */
bool g_use_kept_counters;
int32_t *g_kept_counters;
int64_t g_kept_counter_count;

/* Points d.tensors.merge_counters at the kept array (grown to `count` entries and zeroed when
 * smaller) when runs use it. */
int attach_kept_counters(int64_t count, CaseBuffers &d, const ErrorSink &sink) {
  if (!g_use_kept_counters) return 0;
  if (count > g_kept_counter_count) {
    const int64_t grown = count > 4096 ? count : 4096;
    if (g_kept_counters) GPU_CHECK(cudaFree(g_kept_counters));
    g_kept_counters = nullptr;
    g_kept_counter_count = 0;
    GPU_CHECK(cudaMalloc(&g_kept_counters, sizeof(int32_t) * (size_t)grown));
    GPU_CHECK(cudaMemset(g_kept_counters, 0, sizeof(int32_t) * (size_t)grown));
    g_kept_counter_count = grown;
  }
  d.tensors.merge_counters = g_kept_counters;
  return 0;
fail:
  return -1;
}

/* Waits for the run, then downloads o and (when asked) lse. */
int download_case(const padec_case *c, const CaseBuffers &d, void *o, float *lse, const ErrorSink &sink) {
  GPU_CHECK(cudaDeviceSynchronize());
  GPU_CHECK(cudaMemcpy(o, d.o.ptr, c->o_bytes, cudaMemcpyDeviceToHost));
  if (lse)
    GPU_CHECK(cudaMemcpy(lse, d.lse.ptr, sizeof(float) * c->num_tokens * c->params.num_q_heads,
                         cudaMemcpyDeviceToHost));
  return 0;
fail:
  return -1;
}

}  // namespace

extern "C" int padec_gpu_run_case(const padec_case *c, const padec_plan_options *options, void *o,
                                  float *lse, char *err, size_t err_size) {
  ErrorSink sink{err, err_size};
  padec_plan_layout layout;
  void *host_plan = nullptr;
  int result = -1;
  CaseBuffers d;
  DeviceBuffer d_plan;
  if (padec_plan_layout_init(&c->params, c->batch, options, &layout) != PADEC_STATUS_OK)
    return report(sink, "plan layout: %s", padec_last_message());
  host_plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  if (!host_plan) return report(sink, "out of host memory");
  if (padec_plan_build_shard(&c->params, &layout, c->kv_lens, c->shard_starts, c->seq_lens, host_plan,
                             layout.plan_bytes) != PADEC_STATUS_OK) {
    report(sink, "plan build: %s", padec_last_message());
    goto fail;
  }
  if (upload_case(c, lse != nullptr, layout.workspace_bytes, d, sink) != 0 ||
      attach_kept_counters((int64_t)c->batch * c->params.num_kv_heads, d, sink) != 0)
    goto fail;
  GPU_CHECK(d_plan.alloc(layout.plan_bytes));
  if (padec_cuda_upload_plan(&layout, host_plan, d_plan.ptr, nullptr) != PADEC_STATUS_OK) {
    report(sink, "upload: %s", padec_last_message());
    goto fail;
  }
  if (padec_cuda_run(&c->params, &layout, d_plan.ptr, &d.tensors, d.ws.ptr, layout.workspace_bytes, nullptr) !=
      PADEC_STATUS_OK) {
    report(sink, "padec_cuda_run: %s", padec_last_message());
    goto fail;
  }
  result = download_case(c, d, o, lse, sink);
fail:
  free(host_plan);
  return result;
}

extern "C" int padec_gpu_run_case_grid(const padec_case *c, int32_t num_splits, int32_t partition_tokens,
                                       void *o, float *lse, char *err, size_t err_size) {
  ErrorSink sink{err, err_size};
  padec_grid_layout layout;
  CaseBuffers d;
  if (padec_grid_layout_init(&c->params, c->batch, num_splits, partition_tokens, &layout) != PADEC_STATUS_OK)
    return report(sink, "grid layout: %s", padec_last_message());
  if (upload_case(c, lse != nullptr, layout.workspace_bytes, d, sink) != 0 ||
      attach_kept_counters((int64_t)c->batch * c->params.num_kv_heads, d, sink) != 0)
    return -1;
  if (padec_cuda_run_grid(&c->params, &layout, &d.tensors, d.ws.ptr, layout.workspace_bytes, nullptr) !=
      PADEC_STATUS_OK)
    return report(sink, "padec_cuda_run_grid: %s", padec_last_message());
  return download_case(c, d, o, lse, sink);
}

extern "C" void padec_gpu_set_kept_counters(int on) { g_use_kept_counters = on != 0; }

extern "C" int padec_gpu_kept_counters_zero(char *err, size_t err_size) {
  ErrorSink sink{err, err_size};
  if (g_kept_counter_count == 0) return 1;
  std::vector<int32_t> counters((size_t)g_kept_counter_count);
  GPU_CHECK(cudaDeviceSynchronize());
  GPU_CHECK(cudaMemcpy(counters.data(), g_kept_counters, sizeof(int32_t) * counters.size(),
                       cudaMemcpyDeviceToHost));
  for (const int32_t counter : counters)
    if (counter != 0) return 0;
  return 1;
fail:
  return -1;
}

const char *const padec_gpu_trace_point_names[PADEC_GPU_TRACE_POINTS] = {
    "entry", "issued", "first_tile", "last_tile", "written", "merged", "exit"};

static bool g_bench_trace;

extern "C" void padec_gpu_bench_set_trace(int on) { g_bench_trace = on != 0; }

namespace {

static_assert((int)PADEC_GPU_TRACE_POINTS <= (int)PADEC_TRACE_EVENTS, "a CTA's stamps fit its stride");

/* One launch from a cold L2 with the kernel's timeline stamps on; summarises them in out. */
template <class Launch>
int trace_launch(BenchProblem &bp, const cudaDeviceProp &prop, Flush flush, Launch launch,
                 padec_gpu_trace *out, const ErrorSink &sink) {
  const int64_t max_ctas = (int64_t)1 << 16;
  const size_t count = (size_t)max_ctas * PADEC_TRACE_EVENTS;
  std::vector<uint64_t> stamps(count);
  std::vector<double> times;
  DeviceBuffer d_stamps;
  uint64_t first = UINT64_MAX;
  int rc;
  GPU_CHECK(d_stamps.alloc(count * sizeof(uint64_t)));
  GPU_CHECK(cudaMemset(d_stamps.ptr, 0, count * sizeof(uint64_t)));
  GPU_CHECK(flush_l2(bp, prop, flush, 0, nullptr));
  padec__cuda_set_trace(static_cast<uint64_t *>(d_stamps.ptr), max_ctas);
  rc = launch();
  padec__cuda_set_trace(nullptr, 0);
  if (rc != 0) return -1;
  GPU_CHECK(cudaDeviceSynchronize());
  GPU_CHECK(cudaMemcpy(stamps.data(), d_stamps.ptr, count * sizeof(uint64_t), cudaMemcpyDeviceToHost));
  memset(out, 0, sizeof *out);
  for (int64_t cta = 0; cta < max_ctas; ++cta) {
    const uint64_t entry = stamps[(size_t)cta * PADEC_TRACE_EVENTS + PADEC_TRACE_ENTRY];
    if (entry == 0) continue;
    out->ctas += 1;
    first = std::min(first, entry);
  }
  if (out->ctas == 0) return report(sink, "traced launch: no CTA wrote its stamps (more than %lld CTAs?)",
                                    (long long)max_ctas);
  for (int point = 0; point < PADEC_GPU_TRACE_POINTS; ++point) {
    times.clear();
    for (int64_t cta = 0; cta < max_ctas; ++cta) {
      const uint64_t stamp = stamps[(size_t)cta * PADEC_TRACE_EVENTS + point];
      if (stamp != 0) times.push_back((double)(stamp - first) * 1e-3);
    }
    out->reached[point] = (int64_t)times.size();
    if (times.empty()) continue;
    std::sort(times.begin(), times.end());
    out->min_us[point] = times.front();
    out->median_us[point] = times[times.size() / 2];
    out->max_us[point] = times.back();
  }
  return 0;
fail:
  padec__cuda_set_trace(nullptr, 0);
  return -1;
}

/* Times `launch` (one decode, on the legacy stream) `iterations` times after 5 warm-ups, each
 * from a cold L2, with CUDA events; then the copy ceiling; fills out. */
template <class Launch>
int time_launches(const padec_workload *workload, BenchProblem &bp, int iterations, Launch launch,
                  padec_gpu_bench_result *out, const ErrorSink &sink) {
  std::vector<double> times, copy_times;
  DeviceBuffer d_copy_a, d_copy_b;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaDeviceProp prop;
  int result = -1;
  const size_t copy_bytes = (size_t)1 << 30;
  const Flush flush = flush_mode();
  if (iterations < 50) iterations = 50;
  GPU_CHECK(cudaGetDeviceProperties(&prop, 0));
  GPU_CHECK(cudaEventCreate(&start));
  GPU_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < iterations + 5; ++i) {
    GPU_CHECK(flush_l2(bp, prop, flush, i, nullptr));
    GPU_CHECK(cudaEventRecord(start, nullptr));
    if (launch() != 0) goto fail;
    GPU_CHECK(cudaEventRecord(stop, nullptr));
    GPU_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    GPU_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 5) times.push_back(ms * 1e3);
  }
  memset(out, 0, sizeof *out);
  if (g_bench_trace && trace_launch(bp, prop, flush, launch, &out->trace, sink) != 0) goto fail;

  /* The ceiling: a device-to-device copy, bytes read plus bytes written. */
  GPU_CHECK(d_copy_a.alloc(copy_bytes));
  GPU_CHECK(d_copy_b.alloc(copy_bytes));
  GPU_CHECK(cudaMemset(d_copy_a.ptr, 1, copy_bytes));
  for (int i = 0; i < 12; ++i) {
    GPU_CHECK(cudaEventRecord(start, nullptr));
    GPU_CHECK(cudaMemcpyAsync(d_copy_b.ptr, d_copy_a.ptr, copy_bytes, cudaMemcpyDeviceToDevice, nullptr));
    GPU_CHECK(cudaEventRecord(stop, nullptr));
    GPU_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    GPU_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 2) copy_times.push_back(ms * 1e-3);
  }

  out->median_us = median(times);
  out->min_us = *std::min_element(times.begin(), times.end());
  out->copy_gbps = 2.0 * (double)copy_bytes / median(copy_times) / 1e9;
  out->effective_gbps = (double)padec_workload_bytes(workload) / (out->median_us * 1e-6) / 1e9;
  out->iterations = iterations;
  snprintf(out->device, sizeof out->device, "%.120s", prop.name);
  result = 0;
fail:
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  return result;
}

/* A fresh CUDA context (cudaDeviceReset) before each benchmarked workload, as a server allocates
 * its pool in a process of its own: buffers allocated where an earlier workload's were freed
 * ran up to 13% slower on the H100 (b1-32k-fp8 0.60 alone, 0.53 after swa4k-b32-32k-bf16's
 * pools; docs/PERF.md, "Method"). PADEC_BENCH_RESET=0 keeps one context for the whole run. */
int bench_fresh_context(const ErrorSink &sink) {
  const char *mode = getenv("PADEC_BENCH_RESET");
  if (mode && strcmp(mode, "0") == 0) return 0;
  GPU_CHECK(cudaDeviceReset());
  /* The reset freed the case runs' kept counters too: forget them, so a later case run
   * allocates new ones. */
  g_kept_counters = nullptr;
  g_kept_counter_count = 0;
  return 0;
fail:
  return -1;
}

/* PADEC_BENCH_PIPELINE_DEPTH=N (2 or 3) runs the decode with N tiles in flight
 * (padec__cuda_set_pipeline_depth; an instance of 2 stages keeps 2) instead of the library's
 * pick, so that one binary can be compared against itself at another depth. */
int bench_pipeline_override(const ErrorSink &sink) {
  const char *text = getenv("PADEC_BENCH_PIPELINE_DEPTH");
  long depth = 0;
  if (text) {
    char *end = nullptr;
    depth = strtol(text, &end, 10);
    if (end == text || *end != '\0' || depth < 2 || depth > 3)
      return report(sink, "PADEC_BENCH_PIPELINE_DEPTH='%s': the tiles in flight are 2 or 3", text);
  }
  padec__cuda_set_pipeline_depth((int)depth);
  return 0;
}

}  // namespace

extern "C" int padec_gpu_bench(const padec_workload *workload, const padec_plan_options *options,
                               int iterations, padec_gpu_bench_result *out, char *err,
                               size_t err_size) {
  ErrorSink sink{err, err_size};
  if (bench_fresh_context(sink) != 0 || bench_pipeline_override(sink) != 0) return -1;
  const padec_params &p = workload->params;
  const int32_t batch = workload->batch;
  padec_plan_layout layout;
  std::vector<double> plan_times;
  void *host_plan = nullptr;
  BenchProblem bp;
  DeviceBuffer d_plan, d_ws;
  int result = -1;
  /* PADEC_BENCH_MERGE=separate times the stand-alone merge kernel instead of the fused merge. */
  const char *merge_mode = getenv("PADEC_BENCH_MERGE");
  padec__cuda_set_separate_merge(merge_mode && strcmp(merge_mode, "separate") == 0);

  if (padec_plan_layout_init(&p, batch, options, &layout) != PADEC_STATUS_OK)
    return report(sink, "plan layout: %s", padec_last_message());
  host_plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  if (!host_plan) return report(sink, "out of host memory");
  for (int i = 0; i < 21; ++i) {
    const double t0 = host_seconds();
    if (padec_plan_build(&p, &layout, workload->kv_lens, host_plan, layout.plan_bytes) != PADEC_STATUS_OK) {
      report(sink, "plan build: %s", padec_last_message());
      goto fail;
    }
    plan_times.push_back((host_seconds() - t0) * 1e6);
  }
  if (setup_bench_problem(workload, bp, sink) != 0) goto fail;
  GPU_CHECK(d_plan.alloc(layout.plan_bytes));
  GPU_CHECK(d_ws.alloc(layout.workspace_bytes));
  GPU_CHECK(cudaMemcpy(d_plan.ptr, host_plan, layout.plan_bytes, cudaMemcpyHostToDevice));
  if (time_launches(workload, bp, iterations, [&]() {
        if (padec_cuda_run(&p, &layout, d_plan.ptr, &bp.tensors, d_ws.ptr, layout.workspace_bytes, nullptr) ==
            PADEC_STATUS_OK)
          return 0;
        return report(sink, "padec_cuda_run: %s", padec_last_message());
      }, out, sink) != 0)
    goto fail;
  out->plan_us = median(plan_times);
  result = 0;
fail:
  free(host_plan);
  return result;
}

extern "C" int padec_gpu_bench_grid(const padec_workload *workload, int32_t num_splits,
                                    int32_t partition_tokens, int iterations,
                                    padec_gpu_bench_result *out, char *err, size_t err_size) {
  ErrorSink sink{err, err_size};
  if (bench_fresh_context(sink) != 0 || bench_pipeline_override(sink) != 0) return -1;
  const padec_params &p = workload->params;
  padec_grid_layout layout;
  BenchProblem bp;
  DeviceBuffer d_ws;
  if (padec_grid_layout_init(&p, workload->batch, num_splits, partition_tokens, &layout) != PADEC_STATUS_OK)
    return report(sink, "grid layout: %s", padec_last_message());
  if (setup_bench_problem(workload, bp, sink) != 0) return -1;
  GPU_CHECK(d_ws.alloc(layout.workspace_bytes));
  if (time_launches(workload, bp, iterations, [&]() {
        if (padec_cuda_run_grid(&p, &layout, &bp.tensors, d_ws.ptr, layout.workspace_bytes, nullptr) ==
            PADEC_STATUS_OK)
          return 0;
        return report(sink, "padec_cuda_run_grid: %s", padec_last_message());
      }, out, sink) != 0)
    return -1;
  return 0;
fail:
  return -1;
}

extern "C" int padec_gpu_bench_device_plan(const padec_workload *workload,
                                           const padec_plan_options *options, int iterations,
                                           double *plan_us, double *graph_step_us,
                                           double *host_plan_plus_decode_us, char *err,
                                           size_t err_size) {
  ErrorSink sink{err, err_size};
  if (bench_fresh_context(sink) != 0) return -1;
  const padec_params &p = workload->params;
  const int32_t batch = workload->batch;
  padec_plan_layout layout;
  std::vector<double> plan_times, graph_times, host_times;
  std::vector<unsigned char> device_copy;
  void *host_plan = nullptr;
  BenchProblem bp;
  DeviceBuffer d_plan, d_ws;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  struct CUstream_st *s = nullptr;
  padec_status plan_status = PADEC_STATUS_OK, run_status = PADEC_STATUS_OK;
  cudaError_t capture_error = cudaSuccess;
  int result = -1;
  cudaDeviceProp prop;
  const Flush flush = flush_mode();
  if (iterations < 20) iterations = 20;

  if (padec_plan_layout_init(&p, batch, options, &layout) != PADEC_STATUS_OK)
    return report(sink, "plan layout: %s", padec_last_message());
  GPU_CHECK(cudaMallocHost(&host_plan, layout.plan_bytes)); /* pinned: a truly async upload */
  if (padec_plan_build(&p, &layout, workload->kv_lens, host_plan, layout.plan_bytes) != PADEC_STATUS_OK) {
    report(sink, "plan build: %s", padec_last_message());
    goto fail;
  }

  GPU_CHECK(cudaGetDeviceProperties(&prop, 0));
  GPU_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  s = reinterpret_cast<struct CUstream_st *>(stream);
  if (setup_bench_problem(workload, bp, sink) != 0) goto fail;
  GPU_CHECK(d_plan.alloc(layout.plan_bytes));
  GPU_CHECK(d_ws.alloc(layout.workspace_bytes));
  GPU_CHECK(cudaEventCreate(&start));
  GPU_CHECK(cudaEventCreate(&stop));

  /* The device plan must be the host plan, byte for byte, before anything is timed. */
  /* The poison on the build's stream: a cudaMemset on the legacy stream is not ordered before
   * work on a non-blocking stream, and could land on the plan the build writes. */
  GPU_CHECK(cudaMemsetAsync(d_plan.ptr, 0xab, layout.plan_bytes, stream));
  if (padec_cuda_plan_build(&p, &layout, bp.tensors.kv_lens, d_plan.ptr,
                            layout.plan_bytes, s) != PADEC_STATUS_OK) {
    report(sink, "padec_cuda_plan_build: %s", padec_last_message());
    goto fail;
  }
  device_copy.resize(layout.plan_bytes);
  GPU_CHECK(cudaStreamSynchronize(stream));
  GPU_CHECK(cudaMemcpy(device_copy.data(), d_plan.ptr, layout.plan_bytes, cudaMemcpyDeviceToHost));
  if (memcmp(device_copy.data(), host_plan, layout.plan_bytes) != 0) {
    report(sink, "the device plan differs from the host plan (workload %s)", workload->name);
    goto fail;
  }

  /* The plan kernel alone. */
  for (int i = 0; i < iterations + 5; ++i) {
    GPU_CHECK(cudaEventRecord(start, stream));
    if (padec_cuda_plan_build(&p, &layout, bp.tensors.kv_lens, d_plan.ptr,
                              layout.plan_bytes, s) != PADEC_STATUS_OK) {
      report(sink, "padec_cuda_plan_build: %s", padec_last_message());
      goto fail;
    }
    GPU_CHECK(cudaEventRecord(stop, stream));
    GPU_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    GPU_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 5) plan_times.push_back(ms * 1e3);
  }

  /* The step as one graph: device plan and decode (and the merge counters' clearing where the
   * run clears them in its workspace, PADEC_BENCH_COUNTERS=workspace). */
  GPU_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  plan_status = padec_cuda_plan_build(&p, &layout, bp.tensors.kv_lens,
                                      d_plan.ptr, layout.plan_bytes, s);
  if (plan_status == PADEC_STATUS_OK)
    run_status = padec_cuda_run(&p, &layout, d_plan.ptr, &bp.tensors, d_ws.ptr, layout.workspace_bytes, s);
  capture_error = cudaStreamEndCapture(stream, &graph);
  if (plan_status != PADEC_STATUS_OK || run_status != PADEC_STATUS_OK) {
    report(sink, "capture: %s", padec_last_message());
    goto fail;
  }
  GPU_CHECK(capture_error);
  GPU_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  GPU_CHECK(cudaGraphUpload(exec, stream));

  for (int i = 0; i < iterations + 5; ++i) {
    GPU_CHECK(flush_l2(bp, prop, flush, i, stream));
    GPU_CHECK(cudaStreamSynchronize(stream));
    const double t0 = host_seconds();
    GPU_CHECK(cudaGraphLaunch(exec, stream));
    GPU_CHECK(cudaStreamSynchronize(stream));
    if (i >= 5) graph_times.push_back((host_seconds() - t0) * 1e6);
  }

  /* The same step planned on the host. */
  for (int i = 0; i < iterations + 5; ++i) {
    GPU_CHECK(flush_l2(bp, prop, flush, i, stream));
    GPU_CHECK(cudaStreamSynchronize(stream));
    const double t0 = host_seconds();
    if (padec_plan_build(&p, &layout, workload->kv_lens, host_plan, layout.plan_bytes) != PADEC_STATUS_OK ||
        padec_cuda_upload_plan(&layout, host_plan, d_plan.ptr, s) != PADEC_STATUS_OK ||
        padec_cuda_run(&p, &layout, d_plan.ptr, &bp.tensors, d_ws.ptr, layout.workspace_bytes, s) != PADEC_STATUS_OK) {
      report(sink, "host-planned step: %s", padec_last_message());
      goto fail;
    }
    GPU_CHECK(cudaStreamSynchronize(stream));
    if (i >= 5) host_times.push_back((host_seconds() - t0) * 1e6);
  }

  if (plan_us) *plan_us = median(plan_times);
  if (graph_step_us) *graph_step_us = median(graph_times);
  if (host_plan_plus_decode_us) *host_plan_plus_decode_us = median(host_times);
  result = 0;
fail:
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (stream) {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  if (host_plan) cudaFreeHost(host_plan);
  return result;
}
