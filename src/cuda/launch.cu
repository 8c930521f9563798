/*
 * CUDA entry points: validation, the one function that fills the kernel parameter block, the
 * merge kernel, instance selection and launches. Exports only extern "C" padec_* symbols.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "../internal.h"
#include "cuda_status.h"
#include "decode.cuh"
#include "padec_cuda.h"

namespace padec_cuda {

/*
 * The merge: one warp per (reduce group, query row, q head) combines the group's splits with
 * log-sum-exp weights, reading the splits in slot order, so the result is bitwise the same on
 * every run. The launch shape depends on (batch, q_len, heads) only, never on the plan's
 * contents: groups past the plan's count exit at once.
 */
template <int HeadDim>
__global__ void __launch_bounds__(128) merge_kernel(const __grid_constant__ padec_decode_params p) {
  const int group = blockIdx.x;
  const int slot_begin = p.reduce_indptr[group], slot_end = p.reduce_indptr[group + 1];
  if (slot_end <= slot_begin) return;
  const int row_offset = blockIdx.y;
  const int row = p.reduce_final_map[2 * group] + row_offset;
  if (row >= p.reduce_final_map[2 * group + 1]) return;
  const int head = blockIdx.z * 4 + (threadIdx.x >> 5);
  if (head >= p.num_q_heads) return;
  merge_row_warp<HeadDim>(p, slot_begin, slot_end, row_offset, row, head, threadIdx.x & 31);
}

/*
 * Zeroes the fused merge's arrival counters. It releases the decode launch behind it at once
 * (a programmatic dependent launch): the decode's CTAs start, fetch metadata and stream K/V
 * while this grid runs, and wait for it only before their first counter atomic.
 */
__global__ void __launch_bounds__(256) clear_merge_counters(int32_t *counters, int64_t count) {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    counters[i] = 0;
}

/* The shard merge: one warp per (query row, q head) combines the R stacked shard results, in rank
 * order, with the arithmetic of the split merge. */
template <int HeadDim>
__global__ void __launch_bounds__(128) merge_shards_kernel(const __grid_constant__ padec_decode_params p) {
  const int row = blockIdx.x;
  const int head = blockIdx.y * 4 + (threadIdx.x >> 5);
  if (head >= p.num_q_heads) return;
  merge_row_warp<HeadDim>(p, 0, p.batch, row, row, head, threadIdx.x & 31);
}

typedef void (*decode_fn)(padec_decode_params);

struct DecodeInstance {
  decode_fn kernel;
  int smem_bytes;
  int stages; /* of its K/V pipeline */
};

template <int HeadDim, int Kind, int NTiles, bool PSplit>
DecodeInstance instance() {
  using Cfg = DecodeConfig<HeadDim, Kind, NTiles>;
  return DecodeInstance{decode_kernel<HeadDim, Kind, NTiles, PSplit>, Cfg::kSmemBytes, Cfg::kStages};
}

/* The one selection function: the decode instance for the parameters' head_dim, cache kind
 * (dtype, and for fp8 whether the scales are per token), query rows per KV head and output
 * dtype. Up to 8 rows fit one n8 tile; more take two (16 rows a pass, in passes beyond 16).
 * f16 MMAs (fp16 and fp8 caches) carry P's low part only for fp16 and fp32 outputs; bf16 caches
 * always do. */
static DecodeInstance select_decode(const padec_params &normalized) {
  const int head_dim = normalized.head_dim;
  const int rows = normalized.q_len * (normalized.num_q_heads / normalized.num_kv_heads);
  const int kind = normalized.kv_dtype == PADEC_DTYPE_BF16   ? KV_BF16
                   : normalized.kv_dtype == PADEC_DTYPE_FP16 ? KV_F16
                   : normalized.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN ? KV_E4M3_PER_TOKEN
                                                                            : KV_E4M3;
  const bool wide = rows > 8;
  const bool p_split = normalized.o_dtype != PADEC_DTYPE_BF16;
#define PADEC_SELECT_SPLIT_(D, K, S) return wide ? instance<D, K, 2, S>() : instance<D, K, 1, S>();
#define PADEC_SELECT_KIND_(D, K)                   \
  {                                                \
    if (p_split) PADEC_SELECT_SPLIT_(D, K, true)   \
    PADEC_SELECT_SPLIT_(D, K, false)               \
  }
#define PADEC_SELECT_(D)                                       \
  if (head_dim == D) {                                         \
    if (kind == KV_BF16) PADEC_SELECT_SPLIT_(D, KV_BF16, true) \
    if (kind == KV_F16) PADEC_SELECT_KIND_(D, KV_F16)          \
    if (kind == KV_E4M3) PADEC_SELECT_KIND_(D, KV_E4M3)        \
    PADEC_SELECT_KIND_(D, KV_E4M3_PER_TOKEN)                   \
  }
  PADEC_SELECT_(64)
  PADEC_SELECT_(128)
  PADEC_SELECT_(256)
#undef PADEC_SELECT_
#undef PADEC_SELECT_KIND_
#undef PADEC_SELECT_SPLIT_
  return DecodeInstance{nullptr, 0, 0};
}

static decode_fn select_merge(int head_dim) {
  if (head_dim == 64) return merge_kernel<64>;
  if (head_dim == 128) return merge_kernel<128>;
  if (head_dim == 256) return merge_kernel<256>;
  return nullptr;
}

static decode_fn select_merge_shards(int head_dim) {
  if (head_dim == 64) return merge_shards_kernel<64>;
  if (head_dim == 128) return merge_shards_kernel<128>;
  if (head_dim == 256) return merge_shards_kernel<256>;
  return nullptr;
}

}  // namespace padec_cuda

using namespace padec_cuda;

/* Tests set this to run the stand-alone merge kernel instead of the fused merge. */
static int g_separate_merge;

extern "C" void padec__cuda_set_separate_merge(int separate) { g_separate_merge = separate; }

/* Tests and the benchmark set this to run the decode with another pipeline depth than
 * launch_decode picks (0: its pick). */
static int g_pipeline_depth;

extern "C" void padec__cuda_set_pipeline_depth(int depth) { g_pipeline_depth = depth; }

/* The benchmark's timeline buffer: launches of at most g_trace_ctas CTAs stamp it. */
static uint64_t *g_trace;
static int64_t g_trace_ctas;

extern "C" void padec__cuda_set_trace(uint64_t *device_stamps, int64_t max_ctas) {
  g_trace = device_stamps;
  g_trace_ctas = device_stamps ? max_ctas : 0;
}

/* The workspace and schedule a launch runs with: a plan's, or the grid path's. */
struct LaunchShape {
  int32_t batch, partition_tokens;
  size_t partial_o_offset, partial_lse_offset, merge_counters_offset;
  const padec_plan_layout *plan_layout; /* NULL on the grid path */
  const void *plan;
  int32_t grid_splits;                  /* 0 with a plan */
};

/* Fills the decode kernel's parameter block: the only place that does. */
static padec_decode_params fill_decode_params(const padec_params *normalized,
                                              const LaunchShape &shape, const padec_tensors *t,
                                              void *workspace) {
  const padec_params &p = *normalized;
  padec_decode_params d;
  memset(&d, 0, sizeof d);
  d.q = t->q;
  d.q_stride_head = t->q_stride_head ? t->q_stride_head : p.head_dim;
  d.q_stride_token = t->q_stride_token ? t->q_stride_token : (int64_t)p.num_q_heads * p.head_dim;
  d.k_pages = static_cast<const uint8_t *>(t->k_pages);
  d.v_pages = static_cast<const uint8_t *>(t->v_pages);
  /* Below 2^32 bytes (padec__check_tensors). */
  d.kv_page_bytes = static_cast<uint32_t>(padec__kv_page_stride(&p, t) * padec__dtype_bytes(p.kv_dtype));
  d.page_indptr = t->page_indptr;
  d.page_indices = t->page_indices;
  d.kv_lens = t->kv_lens;
  d.shard_starts = t->shard_starts;
  d.seq_lens = t->seq_lens;
  d.k_scales = t->k_scales;
  d.v_scales = t->v_scales;
  d.o = t->o;
  d.o_stride_head = t->o_stride_head ? t->o_stride_head : p.head_dim;
  d.o_stride_token = t->o_stride_token ? t->o_stride_token : (int64_t)p.num_q_heads * p.head_dim;
  d.lse = t->lse;
  char *work = static_cast<char *>(workspace);
  d.partial_o = reinterpret_cast<float *>(work + shape.partial_o_offset);
  d.partial_lse = reinterpret_cast<float *>(work + shape.partial_lse_offset);
  d.merge_counters = t->merge_counters ? t->merge_counters
                                       : reinterpret_cast<int32_t *>(work + shape.merge_counters_offset);
  if (shape.plan_layout) {
    const padec_plan_layout *layout = shape.plan_layout;
    const char *plan_bytes = static_cast<const char *>(shape.plan);
    d.fused_merge = !g_separate_merge;
    d.work_indptr = reinterpret_cast<const int32_t *>(plan_bytes + layout->work_indptr_offset);
    d.work_info = reinterpret_cast<const int32_t *>(plan_bytes + layout->work_info_offset);
    d.partition_indptr = reinterpret_cast<const int32_t *>(plan_bytes + layout->partition_indptr_offset);
    d.reduce_indptr = reinterpret_cast<const int32_t *>(plan_bytes + layout->reduce_indptr_offset);
    d.reduce_final_map = reinterpret_cast<const int32_t *>(plan_bytes + layout->reduce_final_map_offset);
    d.reduce_partial_map = reinterpret_cast<const int32_t *>(plan_bytes + layout->reduce_partial_map_offset);
  } else {
    /* Split s of sequence b owns partial rows (b * grid_splits + s) * q_len + query token: the
     * merge's stacked-rows form with q_len rows a slot. */
    d.fused_merge = 1;
    d.grid_splits = shape.grid_splits;
    d.shard_rows = p.q_len;
  }
  d.batch = shape.batch;
  d.num_q_heads = p.num_q_heads;
  d.num_kv_heads = p.num_kv_heads;
  d.group = p.num_q_heads / p.num_kv_heads;
  d.q_len = p.q_len;
  d.rows = d.group * p.q_len;
  d.head_dim = p.head_dim;
  d.window_left = p.window_left;
  d.page_size = p.page_size;
  d.partition_tokens = shape.partition_tokens;
  d.layout_hnd = p.kv_layout == PADEC_LAYOUT_HND;
  d.q_dtype = p.q_dtype;
  d.o_dtype = p.o_dtype;
  d.scale_mode = p.kv_dtype == PADEC_DTYPE_E4M3 ? p.fp8_scale_mode : PADEC_FP8_SCALE_NONE;
  d.k_scale = p.k_scale;
  d.v_scale = p.v_scale;
  d.score_scale_log2 = p.softmax_scale * 1.4426950408889634f;
  return d;
}

extern "C" padec_status padec__cuda_check_no_pending_error(const char *entry) {
  const cudaError_t pending = cudaGetLastError();
  if (pending == cudaSuccess) return PADEC_STATUS_OK;
  return padec__fail(PADEC_STATUS_CUDA_ERROR,
                     "%s: an earlier CUDA call on this thread failed and its error is pending: %s "
                     "(%s); nothing was launched", entry, cudaGetErrorName(pending),
                     cudaGetErrorString(pending));
}

/* The decode's K/V pipeline depth (decode.cuh): two tiles in flight while the consumer waits
 * for one. When a launch's CTAs all start together, each requesting its first tiles at once, the
 * DRAM serves those requests interleaved, so the fewer a CTA asks for the sooner its first tile
 * lands, and two 32 KiB tiles a CTA still keep the DRAM busy: +0.4 to +2.5% on 17 of the 20
 * benchmark workloads on an H100 against three (docs/PERF.md, "Two tiles in flight"). The
 * exception is an fp8 launch of more CTAs than the device holds at once (two an SM): its CTAs
 * start in waves, each streams one short item, and a third tile in flight is worth more than
 * an early first one (b256-1k-fp8, 2048 CTAs of 1024 tokens, 0.7 to 1.3% slower with two). */
static padec_status pick_pipeline_depth(const padec_params &normalized, const DecodeInstance &decode,
                                        int64_t ctas, int *depth) {
  *depth = 2;
  if (normalized.kv_dtype == PADEC_DTYPE_E4M3) {
    int device = 0, sms = 0;
    cudaError_t error = cudaGetDevice(&device);
    if (error == cudaSuccess) error = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (error != cudaSuccess) return padec__cuda_fail(error, "cudaDeviceGetAttribute(multiProcessorCount)");
    if (ctas > 2 * (int64_t)sms) *depth = 3;
  }
  if (g_pipeline_depth > 0) *depth = g_pipeline_depth;
  if (*depth > decode.stages) *depth = decode.stages;
  if (*depth < 2) *depth = 2;
  return PADEC_STATUS_OK;
}

/* The decode launch of both paths: the kernel instance, its shared-memory attribute, the
 * clearing of the workspace's merge counters when splits merge in the kernel and the caller gave
 * no self-resetting counters (the decode then launches as its programmatic dependent), and
 * `ctas` CTAs. */
static padec_status launch_decode(const padec_params &normalized, const padec_decode_params &d,
                                  int64_t ctas, bool clear_counters, cudaStream_t s) {
  const padec_status pending = padec__cuda_check_no_pending_error("decode");
  if (pending != PADEC_STATUS_OK) return pending;
  const DecodeInstance decode = select_decode(normalized);
  if (!decode.kernel) return padec__fail(PADEC_STATUS_INTERNAL, "no kernel instance for head_dim %d", normalized.head_dim);
  /* Idempotent and cheap; needed once per kernel before a launch above 48 KiB. */
  cudaError_t error = cudaFuncSetAttribute(reinterpret_cast<const void *>(decode.kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, decode.smem_bytes);
  if (error != cudaSuccess) return padec__cuda_fail(error, "cudaFuncSetAttribute(decode)");
  padec_decode_params traced = d;
  traced.trace = ctas <= g_trace_ctas ? g_trace : nullptr;
  const padec_status picked = pick_pipeline_depth(normalized, decode, ctas, &traced.pipeline_depth);
  if (picked != PADEC_STATUS_OK) return picked;
  if (clear_counters) {
    const int64_t count = (int64_t)d.batch * normalized.num_kv_heads;
    const int64_t blocks = (count + 255) / 256 < 256 ? (count + 255) / 256 : 256;
    clear_merge_counters<<<(unsigned)blocks, 256, 0, s>>>(d.merge_counters, count);
    error = cudaGetLastError();
    if (error != cudaSuccess) return padec__cuda_fail(error, "merge counter clear launch");
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((unsigned)ctas);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = decode.smem_bytes;
  config.stream = s;
  cudaLaunchAttribute overlap = {};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &overlap;
  config.numAttrs = clear_counters ? 1 : 0;
  error = cudaLaunchKernelEx(&config, decode.kernel, traced);
  if (error != cudaSuccess) return padec__cuda_fail(error, "decode kernel launch");
  return PADEC_STATUS_OK;
}

extern "C" {

padec_status padec_cuda_run_grid(const padec_params *params, const padec_grid_layout *layout,
                                 const padec_tensors *tensors, void *workspace,
                                 size_t workspace_bytes, struct CUstream_st *stream) {
  padec_status status = padec__check_grid_arguments(params, layout, tensors, workspace, workspace_bytes);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params normalized = padec__params_normalized(params);
  if (layout->batch == 0) return PADEC_STATUS_OK;
  LaunchShape shape = {layout->batch, layout->partition_tokens, layout->partial_o_offset,
                       layout->partial_lse_offset, layout->merge_counters_offset, nullptr, nullptr,
                       layout->num_splits};
  const padec_decode_params d = fill_decode_params(&normalized, shape, tensors, workspace);
  const int64_t ctas = (int64_t)layout->batch * normalized.num_kv_heads * layout->num_splits;
  status = launch_decode(normalized, d, ctas, layout->num_splits > 1 && !tensors->merge_counters,
                         reinterpret_cast<cudaStream_t>(stream));
  if (status != PADEC_STATUS_OK) return status;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_cuda_device_query(int32_t device, padec_cuda_device_info *info) {
  if (!info) return padec__fail(PADEC_STATUS_NULL_POINTER, "info is NULL");
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return padec__fail(PADEC_STATUS_NO_DEVICE, "no CUDA device (%s)",
                       error == cudaSuccess ? "count 0" : cudaGetErrorName(error));
  }
  if (device < 0 || device >= count)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "device = %d: %d devices present", device, count);
  cudaDeviceProp prop;
  error = cudaGetDeviceProperties(&prop, device);
  if (error != cudaSuccess) return padec__cuda_fail(error, "cudaGetDeviceProperties");
  memset(info, 0, sizeof *info);
  info->device = device;
  info->sm_count = prop.multiProcessorCount;
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->l2_bytes = prop.l2CacheSize;
  info->global_memory_bytes = (int64_t)prop.totalGlobalMem;
  memcpy(info->name, prop.name, sizeof info->name - 1); /* both 256 bytes; the last stays 0 */
  int memory_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess &&
      memory_khz > 0 && bus_bits > 0) {
    info->memory_bytes_per_second = 2 * (int64_t)memory_khz * 1000 * (bus_bits / 8);
  } else {
    (void)cudaGetLastError(); /* optional: an attribute the device lacks is not an error here */
  }
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_cuda_recommended_workers(const padec_params *params, int32_t device,
                                            int32_t *num_workers) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!num_workers) return padec__fail(PADEC_STATUS_NULL_POINTER, "num_workers is NULL");
  padec_cuda_device_info info;
  status = padec_cuda_device_query(device, &info);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params normalized = padec__params_normalized(params);
  DecodeInstance inst = select_decode(normalized);
  /* The attribute and the occupancy are the current device's: `device` is made current for
   * them and the caller's device restored (neither call synchronises). */
  int current = 0;
  cudaError_t error = cudaGetDevice(&current);
  if (error != cudaSuccess) return padec__cuda_fail(error, "cudaGetDevice");
  if (current != device) {
    error = cudaSetDevice(device);
    if (error != cudaSuccess) return padec__cuda_fail(error, "cudaSetDevice");
  }
  int per_sm = 0;
  error = cudaFuncSetAttribute(reinterpret_cast<const void *>(inst.kernel),
                               cudaFuncAttributeMaxDynamicSharedMemorySize, inst.smem_bytes);
  const char *failed = "cudaFuncSetAttribute";
  if (error == cudaSuccess) {
    error = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, reinterpret_cast<const void *>(inst.kernel), kThreads, inst.smem_bytes);
    failed = "cudaOccupancyMaxActiveBlocksPerMultiprocessor";
  }
  /* The failure is reported while `device` is current: its message names that device. */
  const padec_status failure = error != cudaSuccess ? padec__cuda_fail(error, failed) : PADEC_STATUS_OK;
  const cudaError_t restore = current != device ? cudaSetDevice(current) : cudaSuccess;
  if (failure != PADEC_STATUS_OK) return failure;
  if (restore != cudaSuccess)
    return padec__cuda_fail(restore, "cudaSetDevice (restoring the caller's device)");
  if (per_sm < 1) per_sm = 1;
  /* One resident CTA per worker; a multiple of the KV heads so no worker sits idle. */
  int32_t workers = info.sm_count * per_sm;
  if (workers >= params->num_kv_heads) workers -= workers % params->num_kv_heads;
  *num_workers = workers;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_cuda_upload_plan(const padec_plan_layout *layout, const void *host_plan,
                                    void *device_plan, struct CUstream_st *stream) {
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!host_plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "host_plan is NULL");
  if (!device_plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "device_plan is NULL");
  if (reinterpret_cast<uintptr_t>(host_plan) % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "host_plan must be 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(device_plan) % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "device_plan must be 16-byte aligned");
  /* The copy's size is the layout's: it must be a layout the library made, and the plan its. */
  padec_status status = padec__check_plan_layout(layout, "layout");
  if (status != PADEC_STATUS_OK) return status;
  status = padec__check_plan_header(layout, host_plan, "host_plan");
  if (status != PADEC_STATUS_OK) return status;
  /* padec_cuda_run cannot read a device plan's values, so they are checked here, on the host. */
  status = padec__check_plan_body(layout, host_plan, "host_plan");
  if (status != PADEC_STATUS_OK) return status;
  status = padec__cuda_check_no_pending_error("padec_cuda_upload_plan");
  if (status != PADEC_STATUS_OK) return status;
  cudaError_t error = cudaMemcpyAsync(device_plan, host_plan, layout->plan_bytes, cudaMemcpyHostToDevice,
                                      reinterpret_cast<cudaStream_t>(stream));
  if (error != cudaSuccess) return padec__cuda_fail(error, "cudaMemcpyAsync(plan)");
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_cuda_run(const padec_params *params, const padec_plan_layout *layout,
                            const void *plan, const padec_tensors *tensors, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream) {
  padec_status status = padec__check_run_arguments(params, layout, plan, NULL, tensors, workspace,
                                                   workspace_bytes);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params normalized = padec__params_normalized(params);
  if (layout->batch == 0 || layout->num_workers == 0) return PADEC_STATUS_OK;

  LaunchShape shape = {layout->batch, layout->partition_tokens, layout->partial_o_offset,
                       layout->partial_lse_offset, layout->merge_counters_offset, layout, plan, 0};
  const padec_decode_params d = fill_decode_params(&normalized, shape, tensors, workspace);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const bool clear_counters = d.fused_merge && layout->max_partial_slots > 0 && !tensors->merge_counters;
  status = launch_decode(normalized, d, layout->num_workers, clear_counters, s);
  if (status != PADEC_STATUS_OK) return status;
  if (!d.fused_merge && layout->max_partial_slots > 0) {
    const decode_fn merge = select_merge(normalized.head_dim);
    if (!merge) return padec__fail(PADEC_STATUS_INTERNAL, "no merge instance for head_dim %d", normalized.head_dim);
    const dim3 grid(layout->batch, normalized.q_len, (normalized.num_q_heads + 3) / 4);
    merge<<<grid, 128, 0, s>>>(d);
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) return padec__cuda_fail(error, "merge kernel launch");
  }
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_cuda_merge_shards(const padec_params *params,
                                     const padec_shard_merge_tensors *tensors,
                                     struct CUstream_st *stream) {
  padec_status status = padec__check_shard_merge(params, tensors);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params p = padec__params_normalized(params);
  const padec_shard_merge_tensors *t = tensors;
  if (t->rows == 0) return PADEC_STATUS_OK;
  const decode_fn merge = select_merge_shards(p.head_dim);
  if (!merge) return padec__fail(PADEC_STATUS_INTERNAL, "no merge instance for head_dim %d", p.head_dim);
  /* The merge reads only these fields of the parameter block. */
  padec_decode_params d;
  memset(&d, 0, sizeof d);
  d.partial_o = const_cast<float *>(t->shard_o);
  d.partial_lse = const_cast<float *>(t->shard_lse);
  d.reduce_partial_map = nullptr;
  d.shard_rows = t->rows;
  d.batch = t->num_shards; /* the merge's slot range is [0, batch) */
  d.o = t->o;
  d.o_dtype = p.o_dtype;
  d.o_stride_head = t->o_stride_head ? t->o_stride_head : p.head_dim;
  d.o_stride_token = t->o_stride_token ? t->o_stride_token : (int64_t)p.num_q_heads * p.head_dim;
  d.lse = t->lse;
  d.num_q_heads = p.num_q_heads;
  d.head_dim = p.head_dim;
  status = padec__cuda_check_no_pending_error("padec_cuda_merge_shards");
  if (status != PADEC_STATUS_OK) return status;
  const dim3 grid(t->rows, (p.num_q_heads + 3) / 4);
  merge<<<grid, 128, 0, reinterpret_cast<cudaStream_t>(stream)>>>(d);
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return padec__cuda_fail(error, "shard merge kernel launch");
  padec__clear_message();
  return PADEC_STATUS_OK;
}

}  // extern "C"
