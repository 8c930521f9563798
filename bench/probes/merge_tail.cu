/*
 * The fused merge of b1-32k's grid path, without the rest of the decode. In the decode the
 * merging warp takes 1.8 us from its claim to its 16 partial rows and their LSEs back, warm or
 * cold, with loads or with bulk copies (docs/PERF.md, "The fused merge's steps" and "The
 * merge's rows by bulk copies"), where one L2 hit takes 0.15 us (probe_handoff). This probe
 * runs the same shape alone: 128 CTAs, one an SM (120 KiB of dynamic shared memory, 128
 * threads), in 8 groups of 16 splits. Each CTA writes 4 partial rows of 128 floats and their
 * LSEs where split s of KV head h writes them in the grid path (rows s * 32 + 4 h + warp), checks
 * in on its group's counter with one atom.acq_rel.gpu, and the last of a group merges: each warp
 * issues its 16 rows (a float4 a lane each) and the 16 LSEs, takes the maximum, adds the rows,
 * writes 512 bytes. Thread 0 of the merging CTA stamps %globaltimer after the claim's barrier,
 * after warp 0's first row is back, after its LSE maximum (every row and LSE back) and after
 * the rows are written (a block barrier).
 *
 * Cases: the merge alone (idle device); after each CTA streams 1 MiB from HBM by cp.async, two
 * 32 KiB stages in flight, as the decode's CTAs do before it (b1-32k-bf16's bytes); the same
 * with partial rows that an earlier launch wrote (no writes this launch); and the same with one
 * row a warp instead of 16 (the bytes a merging CTA would take if the 16 splits shared the
 * merge). Over 20 launches after 3 warm-ups it prints the medians over the launches of the
 * merging CTAs' median span of each step, in ns.
 *
 *   probe_merge_tail        (no arguments; device 0)
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <vector>

#include "probe_util.cuh"

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kSplits = 16, kGroups = 8, kCtas = kSplits * kGroups;
constexpr int kQHeads = kGroups * kWarps; /* 4 query heads a KV head, one a warp */
constexpr int kHeadDim = 128;
constexpr int kStageBytes = 32 << 10;
constexpr int kStreamStages = 32; /* 1 MiB a CTA */
constexpr int kSharedBytes = 120 << 10;
constexpr int kLaunches = 23, kWarmups = 3;
constexpr int kCases = 4;
constexpr int kSteps = 3;

const char *const kCaseNames[kCases] = {
    "merge alone",
    "after a 1 MiB stream a CTA",
    "after the stream, rows an earlier launch wrote",
    "after the stream, one row a warp",
};
const char *const kStepNames[kSteps] = {"claim -> first row", "claim -> rows and LSEs", "-> written"};

/* The decode's stream without its consumer: stages of 32 KiB by cp.async, two in flight. */
__device__ void stream(uint8_t *smem, const uint8_t *data) {
  const uint8_t *mine = data + (size_t)blockIdx.x * kStreamStages * kStageBytes;
  for (int stage = 0; stage < kStreamStages; ++stage) {
    probe_copy_stage<kThreads, kStageBytes>(smem + (stage % 2) * kStageBytes, mine + (size_t)stage * kStageBytes);
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();
}

/* stamps[cta][4]: claim, first row back, rows and LSEs back, written (0 where the CTA did not
 * merge). */
template <int Case>
__global__ void __launch_bounds__(kThreads) merge_tail(const uint8_t *data, float *partial_o, float *partial_lse,
                                                      int32_t *counters, float *out, uint64_t *stamps) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ int merges;
  const int cta = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kv = cta / kSplits, split = cta % kSplits;
  if (Case >= 1) stream(smem, data);
  if (Case != 2) {
    const int64_t row = (int64_t)split * kQHeads + kv * kWarps + warp;
    const float value = 1.f + 0.001f * (float)(split * 7 + lane);
    reinterpret_cast<float4 *>(partial_o + row * kHeadDim)[lane] = make_float4(value, value, value, value);
    if (lane == 0) partial_lse[row] = 0.25f * (float)split;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const bool last = add_acq_rel(counters + kv) == kSplits - 1;
    if (last) counters[kv] = 0;
    merges = last;
  }
  __syncthreads();
  uint64_t *mine = stamps + (size_t)cta * 4;
  if (!merges) {
    if (threadIdx.x == 0) mine[0] = mine[1] = mine[2] = mine[3] = 0;
    return;
  }
  const uint64_t claimed = global_now();
  constexpr int kRows = Case == 3 ? 1 : kSplits;
  float4 rows[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j)
    rows[j] = __ldcg(reinterpret_cast<const float4 *>(partial_o + ((int64_t)j * kQHeads + kv * kWarps + warp) * kHeadDim) + lane);
  const uint64_t first = stamp_after(__float_as_int(rows[0].x));
  const float lse = lane < kRows ? __ldcg(partial_lse + (int64_t)lane * kQHeads + kv * kWarps + warp) : -INFINITY;
  float max_lse = lse;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) max_lse = fmaxf(max_lse, __shfl_xor_sync(0xffffffffu, max_lse, off));
  float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
  const float weight = expf(lse - max_lse);
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const float w = __shfl_sync(0xffffffffu, weight, j);
    sum.x += w * rows[j].x;
    sum.y += w * rows[j].y;
    sum.z += w * rows[j].z;
    sum.w += w * rows[j].w;
  }
  /* Every row is in sum and every LSE in max_lse: the stamp waits for both. */
  const uint64_t all_back = stamp_after(__float_as_int(sum.x + sum.y + sum.z + sum.w + max_lse));
  reinterpret_cast<float4 *>(out + (int64_t)(kv * kWarps + warp) * kHeadDim)[lane] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    mine[0] = claimed;
    mine[1] = first;
    mine[2] = all_back;
    mine[3] = global_now();
  }
}

bool check(cudaError_t error, const char *what) { return probe_check("probe_merge_tail", error, what); }

template <int Case>
bool run_case(const uint8_t *data, float *partial_o, float *partial_lse, int32_t *counters, float *out,
              uint64_t *stamps, std::vector<double> (&spans)[kSteps]) {
  if (!check(cudaFuncSetAttribute(merge_tail<Case>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
             "cudaFuncSetAttribute"))
    return false;
  std::vector<uint64_t> host((size_t)kCtas * 4);
  for (int launch = 0; launch < kLaunches; ++launch) {
    merge_tail<Case><<<kCtas, kThreads, kSharedBytes>>>(data, partial_o, partial_lse, counters, out, stamps);
    if (!check(cudaGetLastError(), "merge_tail") || !check(cudaDeviceSynchronize(), "merge_tail") ||
        !check(cudaMemcpy(host.data(), stamps, host.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost), "cudaMemcpy"))
      return false;
    if (launch < kWarmups) continue;
    std::vector<double> step[kSteps];
    for (int cta = 0; cta < kCtas; ++cta) {
      const uint64_t *s = &host[(size_t)cta * 4];
      if (s[0] == 0) continue;
      step[0].push_back((double)(s[1] - s[0]));
      step[1].push_back((double)(s[2] - s[0]));
      step[2].push_back((double)(s[3] - s[2]));
    }
    if (step[0].size() != kGroups) {
      fprintf(stderr, "probe_merge_tail: %zu CTAs merged, not %d\n", step[0].size(), kGroups);
      return false;
    }
    for (int k = 0; k < kSteps; ++k) spans[k].push_back(probe_median(step[k]));
  }
  return true;
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  if (!check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 2;
  if (prop.multiProcessorCount < kCtas) {
    fprintf(stderr, "probe_merge_tail: needs %d SMs for one CTA an SM, the device has %d\n", kCtas,
            prop.multiProcessorCount);
    return 2;
  }
  const size_t data_bytes = (size_t)kCtas * kStreamStages * kStageBytes;
  const size_t rows = (size_t)kSplits * kQHeads;
  uint8_t *data = nullptr;
  float *partial_o = nullptr, *partial_lse = nullptr, *out = nullptr;
  int32_t *counters = nullptr;
  uint64_t *stamps = nullptr;
  if (!check(cudaMalloc(&data, data_bytes), "cudaMalloc") || !check(cudaMemset(data, 1, data_bytes), "cudaMemset") ||
      !check(cudaMalloc(&partial_o, rows * kHeadDim * sizeof(float)), "cudaMalloc") ||
      !check(cudaMalloc(&partial_lse, rows * sizeof(float)), "cudaMalloc") ||
      !check(cudaMalloc(&out, (size_t)kQHeads * kHeadDim * sizeof(float)), "cudaMalloc") ||
      !check(cudaMalloc(&counters, kGroups * sizeof(int32_t)), "cudaMalloc") ||
      !check(cudaMemset(counters, 0, kGroups * sizeof(int32_t)), "cudaMemset") ||
      !check(cudaMalloc(&stamps, (size_t)kCtas * 4 * sizeof(uint64_t)), "cudaMalloc"))
    return 2;
  printf("%s: %d CTAs (one an SM), %d groups of %d splits; ns, median over %d launches of the merging CTAs' median\n",
         prop.name, kCtas, kGroups, kSplits, kLaunches - kWarmups);
  printf("%-48s %20s %24s %12s\n", "case", kStepNames[0], kStepNames[1], kStepNames[2]);
  std::vector<double> spans[kCases][kSteps];
  const bool ok = run_case<0>(data, partial_o, partial_lse, counters, out, stamps, spans[0]) &&
                  run_case<1>(data, partial_o, partial_lse, counters, out, stamps, spans[1]) &&
                  run_case<2>(data, partial_o, partial_lse, counters, out, stamps, spans[2]) &&
                  run_case<3>(data, partial_o, partial_lse, counters, out, stamps, spans[3]);
  if (ok)
    for (int c = 0; c < kCases; ++c)
      printf("%-48s %20.0f %24.0f %12.0f\n", kCaseNames[c], probe_median(spans[c][0]), probe_median(spans[c][1]),
             probe_median(spans[c][2]));
  cudaFree(data);
  cudaFree(partial_o);
  cudaFree(partial_lse);
  cudaFree(out);
  cudaFree(counters);
  cudaFree(stamps);
  return ok ? 0 : 1;
}
