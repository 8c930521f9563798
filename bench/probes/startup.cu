/*
 * What a decode CTA's start-up costs before its first K/V load can leave: the kernel-parameter
 * reads and the two dependent metadata loads (a sequence's lengths and page_indptr, then its
 * page ids) of the grid path. One CTA an SM (100 KiB of dynamic shared memory, 128 threads),
 * as the grid path of few pairs runs, with `padec bench`'s 256 MiB read flush before each
 * launch (read_flush.cuh) or none. Thread 0 of each CTA stamps %globaltimer at entry, after
 * the parameter reads, after the first load and after the second (each stamp waits for the
 * value before it), and the probe prints, over 50 launches after 5 warm-ups, the median of the
 * CTAs' median intervals in ns.
 *
 * The kernel's parameters are a 304-byte struct, as padec_decode_params is. "one line" reads
 * the two pointers from its first 64 bytes; "five lines" also adds an int from each of its
 * 64-byte lines into the first load's index (the decode kernel's start-up reads fields spread
 * over the whole struct), so every parameter read sits before the first load.
 *
 *   probe_startup        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "probe_util.cuh"

#include "../read_flush.cuh"

namespace {

/* 304 bytes, like padec_decode_params: the loads' pointers first, an int at the start of every
 * later 64-byte line (all zero, so they change no index). */
struct ProbeParams {
  const int32_t *lengths;   /* [ctas]: the first load */
  const int32_t *page_ids;  /* indexed by the first load's value: the second */
  uint64_t *stamps;         /* [ctas][4] */
  int32_t pad0[10];
  int32_t line1;
  int32_t pad1[15];
  int32_t line2;
  int32_t pad2[15];
  int32_t line3;
  int32_t pad3[15];
  int32_t line4;
  int32_t pad4[11];
};
static_assert(sizeof(ProbeParams) == 304, "the decode kernel's parameter size");

template <bool FiveLines>
__global__ void startup_probe(const __grid_constant__ ProbeParams p) {
  if (threadIdx.x != 0) return;
  const uint64_t entry = stamp_after(0);
  int32_t index = blockIdx.x;
  if (FiveLines) index += p.line1 + p.line2 + p.line3 + p.line4;
  const uint64_t params = stamp_after(index);
  const int32_t first = __ldg(p.lengths + index);
  const uint64_t loaded = stamp_after(first);
  const int32_t second = __ldg(p.page_ids + first);
  const uint64_t chased = stamp_after(second);
  uint64_t *out = p.stamps + (size_t)blockIdx.x * 4;
  out[0] = entry;
  out[1] = params;
  out[2] = loaded;
  out[3] = chased + (second == 0x7fffffff); /* keeps the second load */
}

bool check(cudaError_t error, const char *what) { return probe_check("probe_startup", error, what); }

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  const int ctas = prop.multiProcessorCount, shared_bytes = 100 << 10;
  const size_t flush_bytes = (size_t)256 << 20, table = (size_t)1 << 20; /* ints a table */
  void *flush = nullptr;
  int32_t *lengths = nullptr, *page_ids = nullptr;
  uint64_t *stamps = nullptr;
  if (!check(cudaMalloc(&flush, flush_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&lengths, table * sizeof(int32_t)), "cudaMalloc") ||
      !check(cudaMalloc(&page_ids, table * sizeof(int32_t)), "cudaMalloc") ||
      !check(cudaMalloc(&stamps, (size_t)ctas * 4 * sizeof(uint64_t)), "cudaMalloc") ||
      !check(cudaMemset(flush, 1, flush_bytes), "cudaMemset") ||
      !check(cudaMemset(page_ids, 0, table * sizeof(int32_t)), "cudaMemset"))
    return 2;
  /* CTA i's length sends its second load 64 KiB further for each CTA, as page tables of
   * different sequences lie apart. */
  std::vector<int32_t> host_lengths(table);
  for (size_t i = 0; i < table; ++i) host_lengths[i] = (int32_t)((i * 16384) % table);
  if (!check(cudaMemcpy(lengths, host_lengths.data(), table * sizeof(int32_t), cudaMemcpyHostToDevice), "cudaMemcpy"))
    return 2;
  for (auto kernel : {startup_probe<false>, startup_probe<true>})
    if (!check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes),
               "cudaFuncSetAttribute"))
      return 2;

  ProbeParams params = {};
  params.lengths = lengths;
  params.page_ids = page_ids;
  params.stamps = stamps;
  printf("%s: %d CTAs, one an SM; ns, median over 50 launches of the CTAs' median\n", prop.name, ctas);
  printf("%-12s %-8s %14s %14s %14s %16s\n", "parameters", "flush", "entry->params", "->first load",
         "->second load", "entry spread");
  std::vector<uint64_t> host(ctas * 4);
  for (int five = 0; five < 2; ++five) {
    for (int flushed = 0; flushed < 2; ++flushed) {
      std::vector<double> to_params, to_first, to_second, spread;
      for (int launch = 0; launch < 55; ++launch) {
        if (flushed) launch_read_flush(flush, flush_bytes, prop.multiProcessorCount, 0);
        if (five) startup_probe<true><<<ctas, 128, shared_bytes>>>(params);
        else startup_probe<false><<<ctas, 128, shared_bytes>>>(params);
        if (!check(cudaGetLastError(), "startup_probe") || !check(cudaDeviceSynchronize(), "startup_probe") ||
            !check(cudaMemcpy(host.data(), stamps, host.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost),
                   "cudaMemcpy"))
          return 1;
        if (launch < 5) continue;
        std::vector<double> a, b, c;
        uint64_t first_entry = UINT64_MAX, last_entry = 0;
        for (int i = 0; i < ctas; ++i) {
          const uint64_t *s = &host[(size_t)i * 4];
          a.push_back((double)(s[1] - s[0]));
          b.push_back((double)(s[2] - s[1]));
          c.push_back((double)(s[3] - s[2]));
          first_entry = std::min(first_entry, s[0]);
          last_entry = std::max(last_entry, s[0]);
        }
        to_params.push_back(probe_median(a));
        to_first.push_back(probe_median(b));
        to_second.push_back(probe_median(c));
        spread.push_back((double)(last_entry - first_entry));
      }
      printf("%-12s %-8s %14.0f %14.0f %14.0f %16.0f\n", five ? "five lines" : "one line", flushed ? "read" : "none",
             probe_median(to_params), probe_median(to_first), probe_median(to_second), probe_median(spread));
    }
  }
  cudaFree(flush);
  cudaFree(lengths);
  cudaFree(page_ids);
  cudaFree(stamps);
  return 0;
}
