/*
 * The device scheduler: the `even` plan built on the GPU from kv_lens in device memory, the same
 * bytes as padec_plan_build (header, every array, zeroed tails and padding). No host round trip,
 * no allocation, a launch shape that depends on the layout alone: capturable in a CUDA graph.
 *
 * The host scheduler is a serial greedy walk; here every sequence answers for itself from the
 * batch totals (the closed form of sched_device_math.h), so the work is three block-wide prefix
 * sums and a parallel write:
 *   1. partitions per sequence -> prefix sum -> partition_indptr and S (per KV head);
 *   2. with S known, the bins of every sequence in closed form -> its pieces (work items per
 *      head), partial slots and reduce group -> prefix sums -> item, slot and group offsets;
 *   3. every work item (row of work_info, the work_indptr entries of the bins that end before
 *      it), every reduce entry, the tails and the header, written in parallel.
 *
 * One CTA of 1024 threads scans 1024 sequences at a time; a larger batch is scanned in chunks
 * (the scans then run twice, since the item count per head must be known before the first row
 * is written), so the kernel is correct for any batch and fastest up to 1024 sequences. The work
 * is pure integer arithmetic on a few KiB; its cost is the latency of the scans and the bytes
 * of work_info. Those bytes are written by up to 16 CTAs, each of which repeats the scans (a few
 * hundred cycles) and writes the rows of its own KV heads: no CTA waits for another.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "../internal.h"
#include "cuda_status.h"
#include "padec_cuda.h"
#include "sched_device_math.h"

namespace padec_cuda_sched {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxCtas = 16;

struct PlanArgs {
  const int32_t *kv_lens; /* [batch] */
  int32_t *plan;          /* the plan buffer, as int32 words */
  padec_sd_regions regions;
  uint64_t params_key;
  int32_t batch, num_kv_heads, num_q_heads, num_workers;
  int32_t q_len, window_left, partition_tokens, policy;
};

struct Int3 {
  int32_t items, slots, groups;
};

struct Shared {
  long long scan64[kWarps];
  int32_t scan[3][kWarps];
  /* The current chunk's sequences, for the item-parallel write. */
  int32_t item_offset[kThreads]; /* first item of each sequence, relative to the chunk */
  int32_t first[kThreads];       /* first scheduled partition (global over the batch) */
  int32_t partitions[kThreads];
  int32_t slot[kThreads];        /* first partial slot, -1 if not split */
};

/* Inclusive block-wide sum over the 1024 threads; *total is the block's sum. */
__device__ __forceinline__ long long block_inclusive_sum(long long v, long long *warp_sums,
                                                         long long *total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const long long n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    long long w = lane < kWarps ? warp_sums[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const long long n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    if (lane < kWarps) warp_sums[lane] = w;
  }
  __syncthreads();
  if (warp > 0) v += warp_sums[warp - 1];
  *total = warp_sums[kWarps - 1];
  __syncthreads();
  return v;
}

/* Exclusive block-wide sums of three counters at once. */
__device__ __forceinline__ Int3 block_exclusive_sum3(Int3 v, int32_t (*warp_sums)[kWarps],
                                                     Int3 *total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Int3 s = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t a = __shfl_up_sync(0xffffffffu, s.items, o);
    const int32_t b = __shfl_up_sync(0xffffffffu, s.slots, o);
    const int32_t c = __shfl_up_sync(0xffffffffu, s.groups, o);
    if (lane >= o) {
      s.items += a;
      s.slots += b;
      s.groups += c;
    }
  }
  if (lane == 31) {
    warp_sums[0][warp] = s.items;
    warp_sums[1][warp] = s.slots;
    warp_sums[2][warp] = s.groups;
  }
  __syncthreads();
  /* Warps 0, 1 and 2 scan the warp sums of the three counters. */
  for (int k = warp; k < 3; k += kWarps) {
    int32_t w = lane < kWarps ? warp_sums[k][lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    if (lane < kWarps) warp_sums[k][lane] = w;
  }
  __syncthreads();
  Int3 ex = {s.items - v.items, s.slots - v.slots, s.groups - v.groups};
  if (warp > 0) {
    ex.items += warp_sums[0][warp - 1];
    ex.slots += warp_sums[1][warp - 1];
    ex.groups += warp_sums[2][warp - 1];
  }
  total->items = warp_sums[0][kWarps - 1];
  total->slots = warp_sums[1][kWarps - 1];
  total->groups = warp_sums[2][kWarps - 1];
  __syncthreads();
  return ex;
}

__global__ void __launch_bounds__(kThreads) plan_even_kernel(const __grid_constant__ PlanArgs a) {
  __shared__ Shared sh;
  const int tid = threadIdx.x;
  const int32_t batch = a.batch, heads = a.num_kv_heads, workers = a.num_workers;
  const bool writer = blockIdx.x == 0; /* CTA 0 writes everything that is not per head */
  const padec_sd_regions &r = a.regions;
  int32_t *const work_indptr = a.plan + r.work_indptr;
  int32_t *const work_info = a.plan + r.work_info;
  int32_t *const reduce_indptr = a.plan + r.reduce_indptr;
  int32_t *const final_map = a.plan + r.reduce_final_map;
  int32_t *const partial_map = a.plan + r.reduce_partial_map;
  int32_t *const partition_indptr = a.plan + r.partition_indptr;
  const int num_chunks = (batch + kThreads - 1) / kThreads;
  const bool single = num_chunks <= 1;

  /* Partitions of this thread's sequence in `chunk` and the first of them (global), from the
   * running total before the chunk; *chunk_total gets the chunk's partitions. */
  auto scan_partitions = [&](int chunk, long long before, int32_t *first, int32_t *parts,
                             long long *chunk_total) {
    const int32_t b = chunk * kThreads + tid;
    *parts = b < batch ? padec__sd_num_partitions(a.kv_lens[b], a.q_len, a.window_left,
                                                  a.partition_tokens)
                       : 0;
    const long long inclusive = before + block_inclusive_sum(*parts, sh.scan64, chunk_total);
    *first = (int32_t)(inclusive - *parts);
    return inclusive;
  };

  /* Phase 1: partition_indptr and S. */
  long long total = 0;
  int32_t my_first = 0, my_parts = 0; /* kept for phase 2 when the batch is one chunk */
  for (int chunk = 0; chunk < num_chunks; ++chunk) {
    long long chunk_total;
    const long long inclusive = scan_partitions(chunk, total, &my_first, &my_parts, &chunk_total);
    const int32_t b = chunk * kThreads + tid;
    if (writer && b < batch) partition_indptr[b + 1] = (int32_t)inclusive;
    total += chunk_total;
  }
  if (writer && tid == 0) partition_indptr[0] = 0;
  if (total > INT32_MAX) {
    /* The host build fails with SIZE_OVERFLOW here; the device writes a plan of zeros, which
     * has no work items (and no magic), so that a kernel that runs it does nothing. */
    __syncthreads();
    if (writer) {
      int4 *words4 = reinterpret_cast<int4 *>(a.plan);
      for (int64_t i = tid; i < r.plan_words / 4; i += kThreads) words4[i] = make_int4(0, 0, 0, 0);
    }
    return;
  }
  padec_sd_geometry g;
  padec__sd_geometry_init(&g, batch, heads, a.num_q_heads, workers, a.q_len, (int32_t)total);

  int32_t num_works = 0, num_slots = 0, num_groups = 0;
  if (!g.binned) {
    /* Fewer workers than KV heads: every item direct, worker c runs heads c, c + W, ... */
    long long before = 0;
    for (int chunk = 0; chunk < num_chunks; ++chunk) {
      int32_t first = my_first, parts = my_parts;
      if (!single) {
        long long chunk_total;
        scan_partitions(chunk, before, &first, &parts, &chunk_total);
        before += chunk_total;
      }
      const int32_t b = chunk * kThreads + tid;
      if (b < batch)
        for (int32_t h = blockIdx.x; h < heads; h += gridDim.x)
          padec__sd_write_direct(&g, work_info, h, b, first, parts);
    }
    num_works = heads * batch;
    if (writer) {
      for (int32_t c = tid; c <= workers; c += kThreads)
        work_indptr[c] = padec__sd_direct_work_indptr(&g, c);
      for (int32_t i = tid; i <= batch; i += kThreads) reduce_indptr[i] = 0;
    }
  } else {
    /* Phase 2: pieces, slots and groups of every sequence, and their totals. A batch of one
     * chunk gets the totals from the scan that also gives the offsets. */
    int32_t per_head = 0;
    if (!single) {
      long long before = 0;
      for (int chunk = 0; chunk < num_chunks; ++chunk) {
        int32_t first, parts;
        long long chunk_total;
        scan_partitions(chunk, before, &first, &parts, &chunk_total);
        before += chunk_total;
        const int32_t pieces = chunk * kThreads + tid < batch ? padec__sd_pieces(&g, first, parts) : 0;
        const Int3 v = {pieces, pieces > 1 ? pieces : 0, pieces > 1 ? 1 : 0};
        Int3 sum;
        block_exclusive_sum3(v, sh.scan, &sum);
        per_head += sum.items;
        num_slots += sum.slots;
        num_groups += sum.groups;
      }
    }
    /* Phase 3: offsets, then every row. */
    Int3 carry = {0, 0, 0};
    long long before = 0;
    for (int chunk = 0; chunk < num_chunks; ++chunk) {
      const int32_t b = chunk * kThreads + tid;
      const int32_t count = batch - chunk * kThreads < kThreads ? batch - chunk * kThreads : kThreads;
      int32_t first = my_first, parts = my_parts;
      if (!single) {
        long long chunk_total;
        scan_partitions(chunk, before, &first, &parts, &chunk_total);
        before += chunk_total;
      }
      const int32_t pieces = b < batch ? padec__sd_pieces(&g, first, parts) : 0;
      const bool split = pieces > 1;
      const Int3 v = {pieces, split ? pieces : 0, split ? 1 : 0};
      Int3 sum;
      const Int3 ex = block_exclusive_sum3(v, sh.scan, &sum);
      if (single) {
        per_head = sum.items;
        num_slots = sum.slots;
        num_groups = sum.groups;
      }
      const int32_t slot = split ? carry.slots + ex.slots : -1;
      if (writer && split) {
        const int32_t group = carry.groups + ex.groups;
        reduce_indptr[group + 1] = slot + pieces;
        final_map[2 * group] = b * a.q_len;
        final_map[2 * group + 1] = (b + 1) * a.q_len;
      }
      sh.item_offset[tid] = ex.items;
      sh.first[tid] = first;
      sh.partitions[tid] = parts;
      sh.slot[tid] = slot;
      __syncthreads();
      /* One thread per work item of the chunk (items of one sequence are consecutive; the
       * sequence is the last whose first item is not past this one). */
      for (int32_t i = tid; i < sum.items; i += kThreads) {
        int32_t lo = 0, hi = count - 1;
        while (lo < hi) {
          const int32_t mid = (lo + hi + 1) >> 1;
          if (sh.item_offset[mid] <= i) lo = mid;
          else hi = mid - 1;
        }
        const int32_t j = i - sh.item_offset[lo];
        const int32_t item_in_head = carry.items + i;
        for (int32_t h = blockIdx.x; h < heads; h += gridDim.x)
          padec__sd_write_piece(&g, work_info, work_indptr, h, chunk * kThreads + lo, sh.first[lo],
                                sh.partitions[lo], j, h * per_head + item_in_head, sh.slot[lo]);
      }
      carry.items += sum.items;
      carry.slots += sum.slots;
      carry.groups += sum.groups;
      __syncthreads(); /* the chunk's shared arrays are read before the next chunk writes them */
    }
    num_works = heads * per_head;
    if (writer) {
      for (int32_t c = padec__sd_tail_first_bin(&g) + tid; c < workers; c += kThreads)
        work_indptr[c + 1] = num_works;
      if (tid == 0) {
        work_indptr[0] = 0;
        reduce_indptr[0] = 0;
      }
      for (int32_t i = num_groups + 1 + tid; i <= batch; i += kThreads) reduce_indptr[i] = num_slots;
      for (int32_t i = tid; i < num_slots; i += kThreads) partial_map[i] = i * a.q_len;
    }
  }

  /* Tails and padding: unused rows of work_info (all CTAs), the rest by CTA 0. */
  {
    int4 *rows4 = reinterpret_cast<int4 *>(work_info);
    const int64_t stride = (int64_t)gridDim.x * kThreads;
    for (int64_t i = 2 * (int64_t)num_works + (int64_t)blockIdx.x * kThreads + tid;
         i < r.work_info_words / 4; i += stride)
      rows4[i] = make_int4(0, 0, 0, 0);
  }
  if (writer) {
    for (int64_t i = workers + 1 + tid; i < r.work_indptr_words; i += kThreads) work_indptr[i] = 0;
    for (int64_t i = (int64_t)batch + 1 + tid; i < r.reduce_indptr_words; i += kThreads)
      reduce_indptr[i] = 0;
    for (int64_t i = 2 * (int64_t)num_groups + tid; i < r.reduce_final_map_words; i += kThreads)
      final_map[i] = 0;
    for (int64_t i = num_slots + tid; i < r.reduce_partial_map_words; i += kThreads)
      partial_map[i] = 0;
    for (int64_t i = (int64_t)batch + 1 + tid; i < r.partition_indptr_words; i += kThreads)
      partition_indptr[i] = 0;
    if (tid == 0) {
      padec_plan_header header;
      padec__sd_header(&header, a.params_key, batch, workers, heads, a.q_len, a.partition_tokens,
                       a.policy, num_works, num_slots, num_groups, (int32_t)total);
      *reinterpret_cast<padec_plan_header *>(a.plan) = header;
    }
  }
}

}  // namespace padec_cuda_sched

extern "C" padec_status padec_cuda_plan_build(const padec_params *params,
                                              const padec_plan_layout *layout,
                                              const int32_t *device_kv_lens, void *device_plan,
                                              size_t plan_bytes, struct CUstream_st *stream) {
  using namespace padec_cuda_sched;
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!device_plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "device_plan is NULL");
  if (!device_kv_lens && layout->batch > 0)
    return padec__fail(PADEC_STATUS_NULL_POINTER, "device_kv_lens is NULL");
  if ((uintptr_t)device_plan % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "device_plan must be 16-byte aligned");
  if ((uintptr_t)device_kv_lens % 4 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "device_kv_lens must be 4-byte aligned");
  const padec_params p = padec__params_normalized(params);
  status = padec__check_layout_shape(&p, "layout", layout->params_key, layout->policy,
                                     layout->num_q_heads, layout->num_kv_heads, layout->head_dim,
                                     layout->q_len);
  if (status != PADEC_STATUS_OK) return status;
  /* A layout the library made first: an edited one is PLAN_MISMATCH whatever field was edited. */
  status = padec__check_plan_layout(layout, "layout");
  if (status != PADEC_STATUS_OK) return status;
  if (layout->policy != PADEC_POLICY_EVEN)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "layout.policy = %d: the device scheduler builds the even policy",
                       layout->policy);
  if (plan_bytes < layout->plan_bytes)
    return padec__fail(PADEC_STATUS_WORKSPACE_TOO_SMALL, "plan_bytes = %zu, need %zu",
                       plan_bytes, layout->plan_bytes);
  /* The kernel writes the plan while CTAs still read the lengths. */
  if (padec__bytes_overlap(device_kv_lens, (size_t)layout->batch * sizeof(int32_t), device_plan,
                           layout->plan_bytes))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "device_kv_lens overlaps device_plan, which the build writes");

  PlanArgs args;
  args.kv_lens = device_kv_lens;
  args.plan = static_cast<int32_t *>(device_plan);
  args.regions = padec__sd_regions(layout);
  args.params_key = layout->params_key;
  args.batch = layout->batch;
  args.num_kv_heads = layout->num_kv_heads;
  args.num_q_heads = layout->num_q_heads;
  args.num_workers = layout->num_workers;
  args.q_len = layout->q_len;
  args.window_left = p.window_left;
  args.partition_tokens = layout->partition_tokens;
  args.policy = layout->policy;
  const int ctas = layout->num_kv_heads < kMaxCtas ? layout->num_kv_heads : kMaxCtas;
  const padec_status pending = padec__cuda_check_no_pending_error("padec_cuda_plan_build");
  if (pending != PADEC_STATUS_OK) return pending;
  plan_even_kernel<<<ctas, kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(args);
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return padec__cuda_fail(error, "device plan kernel launch");
  padec__clear_message();
  return PADEC_STATUS_OK;
}
