/*
 * How fast a GPU converts fp8 (e4m3) to f16, against a few reference instructions: each
 * form runs in 8 independent chains per thread over many resident warps, and the rate is
 * reported per SM and clock. docs/PERF.md reads it to tell whether the fp8 tile loop is bound by
 * its conversions (the loop converts every K and V byte once).
 *
 *   probe_conversion_rate        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "probe_util.cuh"

namespace {

enum Form { kCvt, kIntegerOps, kHfma2, kLop3, kFmul };

/* cvt.rn.f16x2.e4m3x2: the two low bytes of a word to two halves (one F2FP). */
__device__ __forceinline__ uint32_t cvt_e4m3x2(uint32_t word) {
  uint32_t out;
  asm volatile("{ .reg .b16 low, high; mov.b32 {low, high}, %1; cvt.rn.f16x2.e4m3x2 %0, low; }"
               : "=r"(out) : "r"(word));
  return out;
}

/* The integer form: bytes 1 and 3 moved to the halves' high bytes, then sign | magnitude >> 1,
 * which is the f16 of the e4m3 value times 2^-8 (subnormals included; NaN becomes finite). */
__device__ __forceinline__ uint32_t integer_e4m3x2(uint32_t word) {
  uint32_t bytes, magnitude, out;
  asm volatile("prmt.b32 %0, %1, 0, 0x3715;" : "=r"(bytes) : "r"(word));
  asm volatile("shr.b32 %0, %1, 1;" : "=r"(magnitude) : "r"(bytes));
  asm volatile("and.b32 %0, %1, 0x3F803F80;" : "=r"(magnitude) : "r"(magnitude));
  asm volatile("lop3.b32 %0, %1, 0x80008000, %2, 0xf8;" : "=r"(out) : "r"(bytes), "r"(magnitude));
  return out;
}

template <int F>
__device__ __forceinline__ uint32_t step(uint32_t v) {
  uint32_t out = v;
  if constexpr (F == kCvt) out = cvt_e4m3x2(v);
  if constexpr (F == kIntegerOps) out = integer_e4m3x2(v);
  if constexpr (F == kHfma2) asm volatile("fma.rn.f16x2 %0, %1, %1, %1;" : "=r"(out) : "r"(v));
  if constexpr (F == kLop3) asm volatile("lop3.b32 %0, %1, 0x12345678, %1, 0x96;" : "=r"(out) : "r"(v));
  if constexpr (F == kFmul) {
    float f;
    asm volatile("mul.f32 %0, %1, %1;" : "=f"(f) : "f"(__uint_as_float(v)));
    out = __float_as_uint(f);
  }
  return out;
}

constexpr int kChains = 8;

template <int F>
__global__ void chains(uint32_t *sink, int iterations) {
  uint32_t v[kChains];
  for (int i = 0; i < kChains; ++i) v[i] = threadIdx.x * 77u + i * 13u + blockIdx.x;
  for (int it = 0; it < iterations; ++it) {
#pragma unroll
    for (int i = 0; i < kChains; ++i) v[i] = step<F>(v[i]);
  }
  uint32_t x = 0;
  for (int i = 0; i < kChains; ++i) x ^= v[i];
  sink[blockIdx.x * blockDim.x + threadIdx.x] = x;
}

bool check(cudaError_t error, const char *what) { return probe_check("probe_conversion_rate", error, what); }

/* Times one form with the caller's two events (created once), every CUDA call checked. */
template <int F>
bool measure(const char *name, int instructions, uint32_t *sink, int blocks, int threads, int sms,
             int clock_khz, cudaEvent_t start, cudaEvent_t stop) {
  const int iterations = 4096;
  chains<F><<<blocks, threads>>>(sink, 16); /* warm-up */
  if (!check(cudaGetLastError(), name) || !check(cudaEventRecord(start), "cudaEventRecord")) return false;
  chains<F><<<blocks, threads>>>(sink, iterations);
  if (!check(cudaGetLastError(), name) || !check(cudaEventRecord(stop), "cudaEventRecord") ||
      !check(cudaEventSynchronize(stop), name))
    return false;
  float ms = 0.f;
  if (!check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime")) return false;
  const double forms = (double)blocks * threads * iterations * kChains;
  const double cycles = ms * 1e-3 * clock_khz * 1e3;
  printf("%-34s %8.3f ms %8.1f per SM and clock (%d instruction%s each)\n", name, ms,
         forms / cycles / sms, instructions, instructions == 1 ? "" : "s");
  return true;
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  int clock_khz = 0;
  if (!check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0), "clock rate")) return 2;
  const int sms = prop.multiProcessorCount, threads = 512, blocks = sms * 4;
  uint32_t *sink = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  if (!check(cudaMalloc(&sink, (size_t)blocks * threads * sizeof(uint32_t)), "cudaMalloc") ||
      !check(cudaEventCreate(&start), "cudaEventCreate") || !check(cudaEventCreate(&stop), "cudaEventCreate"))
    return 2;
  printf("%s: %d SMs, %d MHz (the rate assumes this clock)\n", prop.name, sms, clock_khz / 1000);
  const bool ok =
      measure<kCvt>("cvt e4m3x2 -> f16x2", 1, sink, blocks, threads, sms, clock_khz, start, stop) &&
      measure<kIntegerOps>("integer e4m3x2 -> f16x2 (x 2^-8)", 4, sink, blocks, threads, sms, clock_khz, start, stop) &&
      measure<kHfma2>("fma.rn.f16x2", 1, sink, blocks, threads, sms, clock_khz, start, stop) &&
      measure<kLop3>("lop3.b32", 1, sink, blocks, threads, sms, clock_khz, start, stop) &&
      measure<kFmul>("mul.f32", 1, sink, blocks, threads, sms, clock_khz, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(sink);
  return ok ? 0 : 1;
}
