/*
 * What a hand-off between SMs costs: the latency of one dependent access to a line that another
 * SM has just written, against a line this SM wrote and one an earlier kernel wrote, for plain
 * L2 loads (ld.global.cg, as the fused merge reads partial rows), acquire loads and atomics
 * (the merge's counter). The fused merge's steps at the end of a decode launch took about 1 us
 * each (docs/PERF.md, "Where the fused merge's time goes"), where a plain kernel's dependent
 * load from L2 takes about 0.2 us (probe_startup).
 *
 * One CTA an SM (120 KiB of dynamic shared memory, more than half an SM's; 128 threads). Every
 * CTA first writes its own region of the buffer, 256 lines of 128 bytes that chain into one
 * cycle (each line's first int is the index of the next), and its own counters; then the CTAs
 * meet at a grid-wide barrier (all are resident); then thread 0 of each CTA walks 64 dependent
 * hops of each case and stamps %globaltimer after the first hop and after the last. The probe
 * prints, over 20 launches after 3 warm-ups, the median of the CTAs' ns a hop (after the first)
 * and of their first hop. It runs every case twice: on an idle device, and loaded, where the odd
 * CTAs stream 4 MiB slices of their own from HBM (64 KiB in flight a CTA, L2 evict-first so that
 * the chains stay in L2) until every walker is done and only the even CTAs walk, as the last
 * CTAs of a decode launch, their own SMs quiet, meet the memory system while the rest still
 * stream.
 *
 *   probe_handoff        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "probe_util.cuh"

namespace {

constexpr int kLines = 256;       /* a region's lines */
constexpr int kLineInts = 32;     /* 128 bytes */
constexpr int kRegionInts = kLines * kLineInts;
constexpr int kHops = 64;
constexpr int kCases = 8;

const char *const kCaseNames[kCases] = {
    "ld.cg, lines this SM wrote",
    "ld.cg, lines the next CTA's SM wrote",
    "ld.cg, lines written half the grid away",
    "ld.cg, lines an earlier kernel wrote",
    "ld.acquire.gpu, lines the next CTA's SM wrote",
    "atom.relaxed.gpu, this SM's counters",
    "atom.relaxed.gpu, the next CTA's counters",
    "atom.acq_rel.gpu, this SM's counters",
};

/* The next line of a region's cycle: 97 is odd, so the steps visit all 256 lines. */
__host__ __device__ constexpr int next_line(int line) { return (line + 97) & (kLines - 1); }

__device__ __forceinline__ int load_acquire(const int32_t *address) {
  int32_t value;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(value) : "l"(address) : "memory");
  return value;
}

__device__ __forceinline__ int add_relaxed(int32_t *address) {
  int32_t old;
  asm volatile("atom.relaxed.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(old) : "l"(address) : "memory");
  return old;
}

/* Writes the chain of `region` (ints from region_start) with all of the CTA's threads. */
__device__ void write_chain(int32_t *buffer, int64_t region_start) {
  for (int line = threadIdx.x; line < kLines; line += blockDim.x)
    buffer[region_start + line * kLineInts] = (int32_t)(region_start + next_line(line) * kLineInts);
}

__global__ void prepare_old(int32_t *old_buffer) { write_chain(old_buffer, (int64_t)blockIdx.x * kRegionInts); }

struct Spans {
  uint64_t first, rest;
};

template <int Case>
__device__ Spans walk(int32_t *buffer, int32_t *old_buffer, int32_t *counters, int cta, int ctas) {
  int64_t start;
  int32_t *base = buffer;
  if (Case == 0 || Case == 5 || Case == 7) start = (int64_t)cta * kRegionInts;
  else if (Case == 2) start = (int64_t)((cta + ctas / 2) % ctas) * kRegionInts;
  else start = (int64_t)((cta + 1) % ctas) * kRegionInts;
  if (Case == 3) base = old_buffer;
  if (Case >= 5) base = counters;
  int32_t value = (int32_t)start;
  const uint64_t begin = stamp_after(value);
  uint64_t after_first = 0;
  for (int hop = 0; hop < kHops; ++hop) {
    if (Case <= 3) {
      value = __ldcg(base + value);
    } else if (Case == 4) {
      value = load_acquire(base + value);
    } else {
      /* Counters hold small counts: the next address is the line's start again, yet depends on
       * the value the atomic returned, so the hops stay dependent. */
      const int line_index = (hop + (Case == 6 ? kLines / 2 : 0)) & (kLines - 1); /* apart from the owner's */
      int32_t *line = base + start + ((uint32_t)value >> 30) + line_index * kLineInts;
      value = (Case == 7 ? add_acq_rel(line) : add_relaxed(line));
    }
    if (hop == 0) after_first = stamp_after(value);
  }
  const uint64_t end = stamp_after(value);
  return Spans{after_first - begin, end - after_first + (value == 0x7fffffff)};
}

constexpr int kStreamLoads = 32;                    /* 16-byte loads in flight a thread: 64 KiB a CTA */
constexpr int64_t kSliceVectors = int64_t{1} << 18; /* a CTA's 4 MiB of the stream, a power of two */

__device__ __forceinline__ int4 load_evict_first(const int4 *address, uint64_t policy) {
  int4 v;
  asm volatile("ld.global.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address), "l"(policy));
  return v;
}

/* A streaming CTA reads its slice of `stream` (wrapping), L2 evict-first so that the walkers'
 * lines stay, until every walker is done. */
__device__ void stream_until(const int4 *stream, const volatile int32_t *walkers_done, int walkers,
                             unsigned *sink) {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  const int64_t slice_start = (int64_t)blockIdx.x * kSliceVectors;
  int64_t offset = threadIdx.x;
  unsigned folded = 0;
  while (*walkers_done < walkers) {
    int4 values[kStreamLoads];
#pragma unroll
    for (int i = 0; i < kStreamLoads; ++i)
      values[i] = load_evict_first(stream + slice_start + ((offset + (int64_t)i * blockDim.x) & (kSliceVectors - 1)),
                                   policy);
#pragma unroll
    for (int i = 0; i < kStreamLoads; ++i) folded ^= (unsigned)(values[i].x ^ values[i].y ^ values[i].z ^ values[i].w);
    offset = (offset + (int64_t)kStreamLoads * blockDim.x) & (kSliceVectors - 1);
  }
  if (folded == 0x9e3779b9u) *sink = folded; /* keeps the loads; practically never stores */
}

/* sync[0]: the grid barrier's arrivals; sync[1]: the walkers done. With `stream`, the odd
 * CTAs stream (all their threads) and only the even ones walk. */
__global__ void __launch_bounds__(128) handoff_probe(int32_t *buffer, int32_t *old_buffer, int32_t *counters,
                                                     int32_t *sync, const int4 *stream, unsigned *sink,
                                                     uint64_t *out) {
  const int cta = blockIdx.x, ctas = gridDim.x;
  write_chain(buffer, (int64_t)cta * kRegionInts);
  for (int line = threadIdx.x; line < kLines; line += blockDim.x)
    counters[(int64_t)cta * kRegionInts + line * kLineInts] = 0;
  __syncthreads();
  const bool walker = !stream || cta % 2 == 0;
  if (threadIdx.x == 0) {
    /* Every CTA's writes are ordered before its release; the acquire loads see them all. */
    asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(sync) : "memory");
    while (load_acquire(sync) < ctas) {
    }
  }
  if (!walker) {
    stream_until(stream, sync + 1, (ctas + 1) / 2, sink);
    return;
  }
  if (threadIdx.x != 0) return;
  Spans spans[kCases];
  spans[0] = walk<0>(buffer, old_buffer, counters, cta, ctas);
  spans[1] = walk<1>(buffer, old_buffer, counters, cta, ctas);
  spans[2] = walk<2>(buffer, old_buffer, counters, cta, ctas);
  spans[3] = walk<3>(buffer, old_buffer, counters, cta, ctas);
  spans[4] = walk<4>(buffer, old_buffer, counters, cta, ctas);
  spans[5] = walk<5>(buffer, old_buffer, counters, cta, ctas);
  spans[6] = walk<6>(buffer, old_buffer, counters, cta, ctas);
  spans[7] = walk<7>(buffer, old_buffer, counters, cta, ctas);
  for (int c = 0; c < kCases; ++c) {
    out[((int64_t)cta * kCases + c) * 2] = spans[c].first;
    out[((int64_t)cta * kCases + c) * 2 + 1] = spans[c].rest;
  }
  asm volatile("red.relaxed.gpu.global.add.s32 [%0], 1;\n" ::"l"(sync + 1) : "memory");
}

bool check(cudaError_t error, const char *what) { return probe_check("probe_handoff", error, what); }

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  const int ctas = prop.multiProcessorCount, shared_bytes = 120 << 10;
  const size_t region_bytes = (size_t)kRegionInts * sizeof(int32_t) * (size_t)ctas;
  int32_t *buffer = nullptr, *old_buffer = nullptr, *counters = nullptr, *sync = nullptr;
  uint64_t *out = nullptr;
  int4 *stream = nullptr;
  unsigned *sink = nullptr;
  const size_t stream_bytes = (size_t)kSliceVectors * sizeof(int4) * (size_t)ctas;
  if (!check(cudaMalloc(&stream, stream_bytes), "cudaMalloc") ||
      !check(cudaMemset(stream, 1, stream_bytes), "cudaMemset") ||
      !check(cudaMalloc(&buffer, region_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&old_buffer, region_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&counters, region_bytes), "cudaMalloc") ||
      !check(cudaMalloc(&sync, 2 * sizeof(int32_t)), "cudaMalloc") ||
      !check(cudaMalloc(&sink, sizeof(unsigned)), "cudaMalloc") ||
      !check(cudaMalloc(&out, (size_t)ctas * kCases * 2 * sizeof(uint64_t)), "cudaMalloc") ||
      !check(cudaFuncSetAttribute(handoff_probe, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes),
             "cudaFuncSetAttribute"))
    return 2;
  /* All CTAs must be resident for the grid-wide barrier, one an SM (as many CTAs as SMs). */
  int per_sm = 0;
  if (!check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, handoff_probe, 128, shared_bytes),
             "cudaOccupancyMaxActiveBlocksPerMultiprocessor"))
    return 2;
  if (per_sm < 1) {
    fprintf(stderr, "probe_handoff: the probe's CTA does not fit an SM\n");
    return 2;
  }
  printf("%s: %d CTAs, one an SM; ns, median over 20 launches of the CTAs' median\n", prop.name, ctas);
  printf("%-48s %12s %12s %12s %12s\n", "case", "a hop", "first hop", "loaded hop", "loaded first");
  std::vector<std::vector<double>> first[2], rest[2];
  std::vector<uint64_t> host((size_t)ctas * kCases * 2);
  for (int loaded = 0; loaded < 2; ++loaded) {
    first[loaded].assign(kCases, {});
    rest[loaded].assign(kCases, {});
    for (int launch = 0; launch < 23; ++launch) {
      prepare_old<<<ctas, 128>>>(old_buffer);
      if (!check(cudaGetLastError(), "prepare_old") || !check(cudaMemset(sync, 0, 2 * sizeof(int32_t)), "cudaMemset"))
        return 1;
      handoff_probe<<<ctas, 128, shared_bytes>>>(buffer, old_buffer, counters, sync, loaded ? stream : nullptr, sink,
                                                 out);
      if (!check(cudaGetLastError(), "handoff_probe") || !check(cudaDeviceSynchronize(), "handoff_probe") ||
          !check(cudaMemcpy(host.data(), out, host.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost), "cudaMemcpy"))
        return 1;
      if (launch < 3) continue;
      for (int c = 0; c < kCases; ++c) {
        std::vector<double> f, r;
        for (int i = 0; i < ctas; i += loaded ? 2 : 1) { /* loaded: the walkers only */
          f.push_back((double)host[((size_t)i * kCases + c) * 2]);
          r.push_back((double)host[((size_t)i * kCases + c) * 2 + 1] / (kHops - 1));
        }
        first[loaded][c].push_back(probe_median(f));
        rest[loaded][c].push_back(probe_median(r));
      }
    }
  }
  for (int c = 0; c < kCases; ++c)
    printf("%-48s %12.0f %12.0f %12.0f %12.0f\n", kCaseNames[c], probe_median(rest[0][c]), probe_median(first[0][c]),
           probe_median(rest[1][c]), probe_median(first[1][c]));
  cudaFree(stream);
  cudaFree(buffer);
  cudaFree(old_buffer);
  cudaFree(counters);
  cudaFree(sync);
  cudaFree(sink);
  cudaFree(out);
  return 0;
}
