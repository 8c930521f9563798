/*
 * What a kernel that does nothing but stream N bytes reaches under `padec bench`'s method: its
 * 256 MiB read flush (read_flush.cuh) before each launch (outside the timed region), CUDA events around one
 * launch, the median of 50 after 5 warm-ups, against a 1 GiB device-to-device copy. It times
 *   - once, an empty kernel of one CTA an SM (the launch and the two events, nothing else),
 *     without and with 100 KiB of dynamic shared memory (the decode kernel's order; the SMs'
 *     carveout then differs from the flush's),
 *   - for each size N, the best of a few plain streaming reads of N contiguous bytes (16-byte
 *     loads, several in flight a thread, 2 to 8 CTAs an SM), and a cudaMemcpyAsync moving N
 *     bytes (N / 2 read, N / 2 written; at these sizes its writes can stay in L2 past the
 *     timed window, so the read is the bound for a kernel that reads).
 * docs/PERF.md reads it to tell how much of the gap on the short workloads (64 MiB of fp8 for
 * b1-32k and g8-b128-2k) any kernel pays under the method, before its own work.
 *
 *   probe_size_ceiling        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "../read_flush.cuh"
#include "probe_util.cuh"

namespace {

/* Reads count 16-byte words, Unroll loads in flight a thread before any is used. */
template <int Unroll>
__global__ void stream_read(const uint4 *data, size_t count, unsigned *sink) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  unsigned acc = 0;
  for (; i + (Unroll - 1) * stride < count; i += Unroll * stride) {
    uint4 v[Unroll];
#pragma unroll
    for (int u = 0; u < Unroll; ++u) v[u] = __ldcs(data + i + u * stride);
#pragma unroll
    for (int u = 0; u < Unroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < count; i += stride) {
    const uint4 v = __ldcs(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc; /* keeps the loads; practically never stores */
}

__global__ void empty_kernel() {}

bool check(cudaError_t error, const char *what) { return probe_check("probe_size_ceiling", error, what); }

struct Probe {
  int sms = 0;
  uint4 *flush = nullptr, *data = nullptr, *copy_dst = nullptr;
  size_t flush_bytes = (size_t)256 << 20, max_bytes = (size_t)1 << 30;
  unsigned *sink = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;

  bool flush_l2() {
    launch_read_flush(flush, flush_bytes, sms, 0);
    return check(cudaGetLastError(), "flush");
  }

  /* The median of 50 timed launches of `launch` after 5 warm-ups, each from a flushed L2. */
  template <class Launch>
  bool median_us(Launch launch, const char *what, double *out) {
    std::vector<double> times;
    for (int i = 0; i < 55; ++i) {
      if (!flush_l2() || !check(cudaEventRecord(start), "cudaEventRecord") || !launch() ||
          !check(cudaGetLastError(), what) || !check(cudaEventRecord(stop), "cudaEventRecord") ||
          !check(cudaEventSynchronize(stop), what))
        return false;
      float ms = 0.f;
      if (!check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime")) return false;
      if (i >= 5) times.push_back(ms * 1e3);
    }
    std::sort(times.begin(), times.end());
    *out = times[times.size() / 2];
    return true;
  }
};

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  Probe pr;
  pr.sms = prop.multiProcessorCount;
  if (!check(cudaMalloc(&pr.flush, pr.flush_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&pr.data, pr.max_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&pr.copy_dst, pr.max_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&pr.sink, sizeof(unsigned)), "cudaMalloc") ||
      !check(cudaMemset(pr.flush, 1, pr.flush_bytes), "cudaMemset") ||
      !check(cudaMemset(pr.data, 2, pr.max_bytes), "cudaMemset") ||
      !check(cudaEventCreate(&pr.start), "cudaEventCreate") || !check(cudaEventCreate(&pr.stop), "cudaEventCreate"))
    return 2;

  /* The ceiling, as `padec bench` measures it: bytes read plus written by a 1 GiB copy. */
  double copy_us = 0;
  if (!pr.median_us([&] {
        return check(cudaMemcpyAsync(pr.copy_dst, pr.data, pr.max_bytes, cudaMemcpyDeviceToDevice), "copy");
      }, "copy", &copy_us))
    return 1;
  const double ceiling = 2.0 * (double)pr.max_bytes / (copy_us * 1e-6) / 1e9;
  const int shared_bytes = 100 << 10;
  double empty_us = 0, empty_shared_us = 0;
  if (!check(cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes),
             "cudaFuncSetAttribute") ||
      !pr.median_us([&] { empty_kernel<<<pr.sms, 128>>>(); return true; }, "empty", &empty_us) ||
      !pr.median_us([&] { empty_kernel<<<pr.sms, 128, shared_bytes>>>(); return true; }, "empty", &empty_shared_us))
    return 1;
  printf("%s: %d SMs; ceiling %.0f GB/s (1 GiB copy); empty kernel %.2f us, with 100 KiB shared %.2f us\n",
         prop.name, pr.sms, ceiling, empty_us, empty_shared_us);
  printf("%10s %12s %8s %8s %22s %12s %8s\n", "MiB", "read us", "GB/s", "/copy", "best read (CTAs/SM, in flight)",
         "copy us", "/copy");

  const size_t sizes_mib[] = {16, 32, 64, 128, 256, 512};
  for (size_t mib : sizes_mib) {
    const size_t bytes = mib << 20, count = bytes / sizeof(uint4);
    double best_us = 1e30;
    int best_ctas = 0, best_unroll = 0;
    for (int ctas : {2, 4, 8}) {
      for (int unroll : {4, 8}) {
        double us = 0;
        const int blocks = pr.sms * ctas;
        const bool ok = pr.median_us([&] {
          if (unroll == 4) stream_read<4><<<blocks, 256>>>(pr.data, count, pr.sink);
          else stream_read<8><<<blocks, 256>>>(pr.data, count, pr.sink);
          return true;
        }, "stream_read", &us);
        if (!ok) return 1;
        if (us < best_us) best_us = us, best_ctas = ctas, best_unroll = unroll;
      }
    }
    double copy_part_us = 0;
    if (!pr.median_us([&] {
          return check(cudaMemcpyAsync(pr.copy_dst, pr.data, bytes / 2, cudaMemcpyDeviceToDevice), "copy");
        }, "copy", &copy_part_us))
      return 1;
    const double read_gbps = (double)bytes / (best_us * 1e-6) / 1e9;
    const double copy_gbps = (double)bytes / (copy_part_us * 1e-6) / 1e9;
    char config[40];
    snprintf(config, sizeof config, "%d, %d x 16 B", best_ctas, best_unroll);
    printf("%10zu %12.2f %8.0f %8.3f %22s %12.2f %8.3f\n", mib, best_us, read_gbps, read_gbps / ceiling,
           config, copy_part_us, copy_gbps / ceiling);
  }
  cudaEventDestroy(pr.start);
  cudaEventDestroy(pr.stop);
  cudaFree(pr.flush);
  cudaFree(pr.data);
  cudaFree(pr.copy_dst);
  cudaFree(pr.sink);
  return 0;
}
