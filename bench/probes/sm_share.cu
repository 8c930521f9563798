/*
 * Whether equal CTAs get equal shares of the memory bandwidth. The grid path of g8-b128-2k and
 * b1-32k runs 128 equal CTAs, one an SM, and their last tiles are consumed up to 7 us apart
 * (docs/PERF.md, Next steps item 4). This probe streams
 * the same bytes without any of the decode's work: one CTA an SM (120 KiB of dynamic shared
 * memory, 128 threads), each copying its own contiguous share of N bytes into shared memory by
 * cp.async, 32 KiB a stage, two stages in flight (the decode's pipeline without the
 * consumer), after the benchmark's read flush (read_flush.cuh). Each CTA stamps %globaltimer
 * at its start and once its last stage has landed, with its %smid.
 *
 * For 128 CTAs and for one CTA an SM, at 64 and 128 MiB (each CTA's share rounded down to
 * whole stages), over 20 launches after 3 warm-ups, it prints the medians over the launches of
 * the CTAs' earliest, median and latest ends (us from the launch's first start), and whether
 * the late SMs are the same from one launch to the next: the correlation of each SM's mean lateness (its end less the launch's median end) over
 * the first ten launches with that over the last ten, and the five latest and earliest SMs.
 *
 *   probe_sm_share        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "../read_flush.cuh"
#include "probe_util.cuh"

namespace {

constexpr int kThreads = 128;
constexpr int kStageBytes = 32 << 10;
constexpr int kStages = 3;
constexpr int kSharedBytes = 120 << 10; /* more than half an SM's: one CTA an SM */
constexpr int kLaunches = 23, kWarmups = 3;

/* CTA b copies stages [b * stages_per_cta, (b + 1) * stages_per_cta) of data, two in flight;
 * stamps[b] = {start, end, smid}. */
__global__ void __launch_bounds__(kThreads) share_stream(const uint8_t *data, int stages_per_cta, uint64_t *stamps) {
  extern __shared__ __align__(128) uint8_t smem[];
  const uint64_t start = global_now();
  const uint8_t *mine = data + (size_t)blockIdx.x * stages_per_cta * kStageBytes;
  probe_copy_stage<kThreads, kStageBytes>(smem, mine);
  if (stages_per_cta > 1) probe_copy_stage<kThreads, kStageBytes>(smem + kStageBytes, mine + kStageBytes);
  for (int s = 0; s < stages_per_cta; ++s) {
    /* Stage s has landed once at most one younger group is pending. */
    if (s + 1 < stages_per_cta) {
      asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    }
    __syncthreads(); /* every thread's part of stage s is in; its buffer s % 3 is free after */
    if (s + 2 < stages_per_cta)
      probe_copy_stage<kThreads, kStageBytes>(smem + (s + 2) % kStages * kStageBytes, mine + (size_t)(s + 2) * kStageBytes);
  }
  if (threadIdx.x == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;\n" : "=r"(smid));
    stamps[3 * blockIdx.x] = start;
    stamps[3 * blockIdx.x + 1] = global_now();
    stamps[3 * blockIdx.x + 2] = smid;
  }
}

bool check(cudaError_t error, const char *what) { return probe_check("probe_sm_share", error, what); }

double correlation(const std::vector<double> &a, const std::vector<double> &b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= (double)a.size();
  mb /= (double)b.size();
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0.0;
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  const int sms = prop.multiProcessorCount;
  const size_t flush_bytes = (size_t)256 << 20, max_bytes = (size_t)128 << 20;
  uint8_t *data = nullptr, *flush = nullptr;
  uint64_t *stamps = nullptr;
  if (!check(cudaMalloc(&data, max_bytes), "cudaMalloc") || !check(cudaMemset(data, 1, max_bytes), "cudaMemset") ||
      !check(cudaMalloc(&flush, flush_bytes), "cudaMalloc") ||
      !check(cudaMemset(flush, 0, flush_bytes), "cudaMemset") ||
      !check(cudaMalloc(&stamps, (size_t)sms * 3 * sizeof(uint64_t)), "cudaMalloc") ||
      !check(cudaFuncSetAttribute(share_stream, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
             "cudaFuncSetAttribute"))
    return 2;
  printf("%s: %d SMs; one CTA an SM, two 32 KiB stages in flight; us from the launch's first start,\n"
         "medians over %d launches\n",
         prop.name, sms, kLaunches - kWarmups);
  printf("%-26s %8s %8s %8s %8s  %s\n", "case (MiB, CTAs x stages)", "first", "median", "last", "r(SMs)", "latest / earliest SMs (smid:us)");
  const int cta_counts[2] = {128 < sms ? 128 : sms, sms};
  const size_t sizes[2] = {(size_t)64 << 20, (size_t)128 << 20};
  for (size_t size : sizes) {
    for (int ctas : cta_counts) {
      const int stages_per_cta = (int)(size / kStageBytes / (size_t)ctas);
      if (stages_per_cta < 1) {
        fprintf(stderr, "probe_sm_share: %zu MiB give %d CTAs no whole stage each\n", size >> 20, ctas);
        return 2;
      }
      std::vector<double> first, median, last;
      std::vector<std::vector<double>> lateness(2, std::vector<double>((size_t)sms, 0.0));
      std::vector<std::vector<int>> seen(2, std::vector<int>((size_t)sms, 0));
      std::vector<uint64_t> host((size_t)ctas * 3);
      for (int launch = 0; launch < kLaunches; ++launch) {
        launch_read_flush(flush, flush_bytes, sms, 0);
        share_stream<<<ctas, kThreads, kSharedBytes>>>(data, stages_per_cta, stamps);
        if (!check(cudaGetLastError(), "share_stream") || !check(cudaDeviceSynchronize(), "share_stream") ||
            !check(cudaMemcpy(host.data(), stamps, host.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost),
                   "cudaMemcpy"))
          return 1;
        if (launch < kWarmups) continue;
        uint64_t t0 = UINT64_MAX;
        for (int c = 0; c < ctas; ++c) t0 = std::min(t0, host[3 * (size_t)c]);
        std::vector<double> ends;
        for (int c = 0; c < ctas; ++c) ends.push_back((double)(host[3 * (size_t)c + 1] - t0) * 1e-3);
        std::vector<double> sorted = ends;
        std::sort(sorted.begin(), sorted.end());
        const double mid = sorted[sorted.size() / 2];
        first.push_back(sorted.front());
        median.push_back(mid);
        last.push_back(sorted.back());
        const int half = launch - kWarmups < (kLaunches - kWarmups) / 2 ? 0 : 1;
        for (int c = 0; c < ctas; ++c) {
          const size_t sm = (size_t)host[3 * (size_t)c + 2];
          if (sm >= (size_t)sms) continue;
          lateness[half][sm] += ends[(size_t)c] - mid;
          seen[half][sm] += 1;
        }
      }
      /* SMs seen in both halves: their mean lateness in each. */
      std::vector<double> a, b;
      std::vector<std::pair<double, int>> overall;
      for (int sm = 0; sm < sms; ++sm) {
        if (seen[0][(size_t)sm] == 0 || seen[1][(size_t)sm] == 0) continue;
        a.push_back(lateness[0][(size_t)sm] / seen[0][(size_t)sm]);
        b.push_back(lateness[1][(size_t)sm] / seen[1][(size_t)sm]);
        overall.push_back({(lateness[0][(size_t)sm] + lateness[1][(size_t)sm]) /
                               (seen[0][(size_t)sm] + seen[1][(size_t)sm]),
                           sm});
      }
      std::sort(overall.begin(), overall.end());
      char name[64];
      snprintf(name, sizeof name, "%zu MiB, %d CTAs x %d", size >> 20, ctas, stages_per_cta);
      printf("%-26s %8.2f %8.2f %8.2f %8.2f ", name, probe_median(first), probe_median(median), probe_median(last),
             a.size() > 2 ? correlation(a, b) : 0.0);
      for (size_t i = 0; i < 5 && i < overall.size(); ++i)
        printf(" %d:%+.1f", overall[overall.size() - 1 - i].second, overall[overall.size() - 1 - i].first);
      printf("  /");
      for (size_t i = 0; i < 5 && i < overall.size(); ++i) printf(" %d:%+.1f", overall[i].second, overall[i].first);
      printf("\n");
    }
  }
  cudaFree(data);
  cudaFree(flush);
  cudaFree(stamps);
  return 0;
}
