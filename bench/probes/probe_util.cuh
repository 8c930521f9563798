/*
 * What the probes share: a CUDA call's check that names the probe and the call, the
 * median of a sample, %globaltimer reads (one that cannot issue before a value is back), the
 * fused merge's check-in atomic and a decode stage's copy by cp.async.
 */
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

inline bool probe_check(const char *probe, cudaError_t error, const char *what) {
  if (error == cudaSuccess) return true;
  fprintf(stderr, "%s: %s: %s\n", probe, what, cudaGetErrorString(error));
  return false;
}

inline double probe_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/* The timer read is predicated on value, so it cannot issue before value's load is back. */
__device__ __forceinline__ uint64_t stamp_after(int32_t value) {
  uint64_t now;
  asm volatile(
      "{\n .reg .pred live;\n setp.ne.s32 live, %1, -2147483647;\n"
      " @live mov.u64 %0, %%globaltimer;\n @!live mov.u64 %0, 0;\n}\n"
      : "=l"(now)
      : "r"(value)
      : "memory");
  return now;
}

__device__ __forceinline__ uint64_t global_now() {
  uint64_t now;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(now)::"memory");
  return now;
}

/* A counter's arrival with release and acquire at device scope (the fused merge's check-in). */
__device__ __forceinline__ int add_acq_rel(int32_t *address) {
  int32_t old;
  asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(old) : "l"(address) : "memory");
  return old;
}

/* One stage of StageBytes from source into shared memory by the CTA's Threads threads, 16 bytes
 * a cp.async, committed as one group (the decode's K/V copies without their page lookups). */
template <int Threads, int StageBytes>
__device__ __forceinline__ void probe_copy_stage(uint8_t *stage, const uint8_t *source) {
  static_assert(StageBytes % (16 * Threads) == 0, "every thread copies whole 16-byte chunks");
#pragma unroll
  for (int c = 0; c < StageBytes / 16 / Threads; ++c) {
    const int offset = (c * Threads + (int)threadIdx.x) * 16;
    const unsigned destination = (unsigned)__cvta_generic_to_shared(stage + offset);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(destination), "l"(source + offset) : "memory");
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
