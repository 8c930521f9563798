/*
 * padec CUDA entry points. Includes no CUDA header: streams are passed as the driver's opaque
 * struct CUstream_st pointer (what cudaStream_t is), NULL meaning the legacy default stream.
 *
 * Built without CUDA, every function here links and returns PADEC_STATUS_NOT_BUILT_WITH_CUDA.
 * Where a CUDA call fails because the device cannot run the library's code at all (no kernel
 * image for its architecture, i.e. before Hopper, or a driver too old for the PTX), any function
 * below that launches or sets up a kernel returns PADEC_STATUS_UNSUPPORTED_DEVICE instead of
 * CUDA_ERROR, naming the device's compute capability.
 */
#ifndef PADEC_CUDA_H
#define PADEC_CUDA_H

#include "padec.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

typedef struct padec_cuda_device_info {
  int32_t device;
  int32_t sm_count;
  int32_t cc_major;
  int32_t cc_minor;
  int64_t l2_bytes;
  int64_t global_memory_bytes;
  char name[256];
  /* Peak memory bandwidth: 2 transfers a memory clock x the bus width (what `auto` weighs per SM,
   * padec_device_shape); 0 where the device does not report its memory clock. */
  int64_t memory_bytes_per_second;
} padec_cuda_device_info;

/* Queries device `device` (a cudaGetDevice index). Errors: NULL_POINTER (info), BAD_ARGUMENT
 * (device outside the devices present), NOT_BUILT_WITH_CUDA, NO_DEVICE, CUDA_ERROR. May
 * initialise the CUDA context; does not synchronise. */
padec_status padec_cuda_device_query(int32_t device, padec_cuda_device_info *info);

/* The recommended worker count (persistent CTAs) for params on that device: the CTAs it holds
 * at once (SM count x the decode kernel's occupancy on that device), rounded down to a multiple
 * of num_kv_heads; when it holds fewer CTAs than there are KV heads, all of them (the plans give
 * each worker whole heads then). Does not change the calling thread's current device; in a
 * thread that has made no device current, that is the runtime's default, device 0, and asking
 * for another device initialises device 0's context when it is restored: call cudaSetDevice
 * first in such a thread. Errors:
 * the padec_params_validate errors, NULL_POINTER, the padec_cuda_device_query errors,
 * CUDA_ERROR. */
padec_status padec_cuda_recommended_workers(const padec_params *params, int32_t device,
                                            int32_t *num_workers);

/* Runs a plan on the GPU, on `stream`: the persistent decode kernel, whose last split of each
 * group merges it. With tensors->merge_counters (zeroed once; see padec_tensors) that is the
 * only launch; without, a small kernel clears the workspace's counters first. `plan` is the
 * plan buffer in device memory (uploaded by the caller, e.g. with padec_cuda_upload_plan);
 * every tensor pointer is device memory; `workspace` is device memory of
 * layout->workspace_bytes or more, 16-byte aligned. Validates the host-side arguments
 * (pointers, alignment, params against the layout) before any launch; on a validation error
 * launches nothing; an error an earlier CUDA call left pending is reported (CUDA_ERROR) before
 * anything is launched. A valid run with nothing to launch (batch 0, or no workers) returns OK
 * at once and leaves such an error pending for the caller's next CUDA call. Only a failing
 * decode launch itself (CUDA_ERROR) can come after the counter-clearing kernel was queued, which
 * writes nothing but the workspace's counters.
 * Never allocates, never synchronises, never reads device memory from the host, so it can be
 * captured in a CUDA graph. Page ids, kv_lens, the plan's contents and the values behind
 * PADEC_FP8_SCALE_PER_TENSOR_DEVICE scales are device data and are not checked here: where the
 * block table may be bad, check it with padec_cuda_validate_kv (it synchronises: at admission,
 * not in the decode step) or padec_validate_kv_host; unchecked, a page id outside the pool is an
 * out-of-bounds read. Errors: the params errors, NULL_POINTER, MISALIGNED_POINTER,
 * PLAN_MISMATCH, WORKSPACE_TOO_SMALL, BAD_ARGUMENT (a negative stride or num_pages, strides
 * spanning more than 2^59 elements, a kv_page_stride below one page or past 2^32 bytes, outputs
 * that overlap each other, q, the K or V pool or the workspace, or anything the run writes
 * (outputs, workspace, merge counters) over anything it reads, the plan, block table, lengths
 * and scales included), BAD_SCALES, NOT_BUILT_WITH_CUDA,
 * CUDA_ERROR (launch). */
padec_status padec_cuda_run(const padec_params *params, const padec_plan_layout *layout,
                            const void *plan, const padec_tensors *tensors, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream);

/* padec_cpu_merge_shards on the GPU, on `stream`: every pointer of tensors is device memory.
 * The same arithmetic and order, so the bytes are identical run to run. One launch; never
 * allocates or synchronises (capturable). Errors: those of padec_cpu_merge_shards,
 * NOT_BUILT_WITH_CUDA, CUDA_ERROR (launch). */
padec_status padec_cuda_merge_shards(const padec_params *params,
                                     const padec_shard_merge_tensors *tensors,
                                     struct CUstream_st *stream);

/* Device scratch that padec_cuda_validate_kv needs (bytes, 16-byte aligned). */
#define PADEC_CUDA_VALIDATE_SCRATCH_BYTES 64

/* padec_validate_kv_host for caller data in device memory (page_indptr, page_indices, kv_lens
 * and the shard arrays of tensors): a kernel checks every sequence, then the call waits for it
 * and returns the status of the lowest-numbered offending sequence, with the message the host
 * check would give for the same data. It synchronises `stream`: an admission and debugging
 * entry, not part of the decode step (padec_cuda_run stays free of host round trips). Writes
 * nothing but device_scratch (device memory, PADEC_CUDA_VALIDATE_SCRATCH_BYTES). Checked on the
 * host first, launching nothing on error: the argument checks of padec_validate_kv_host (batch 0
 * returns OK and needs no array and no scratch), device_scratch not NULL and 16-byte aligned, the
 * int32 arrays 4-byte aligned, the shard arrays both or neither, device_scratch sharing no byte
 * with an array the check reads (page_indices where num_page_indices gives its length); an
 * argument error is reported before any data error. A stream under capture is refused
 * (CUDA_ERROR) without touching the capture. Errors: those of padec_validate_kv_host,
 * NULL_POINTER, MISALIGNED_POINTER, BAD_ARGUMENT (the scratch's overlap), NOT_BUILT_WITH_CUDA,
 * CUDA_ERROR. */
padec_status padec_cuda_validate_kv(const padec_params *params, int32_t batch,
                                    const padec_tensors *tensors, void *device_scratch,
                                    struct CUstream_st *stream);

/* Runs the grid path on the GPU, on `stream` (see padec_grid_layout): one launch of the decode
 * kernel over batch x num_kv_heads x num_splits blocks, each CTA one block, the last block of a
 * (sequence, KV head) to finish merging its splits. When num_splits > 1 and
 * tensors->merge_counters is NULL, a small kernel clears the workspace's merge counters first
 * (the decode launch overlaps it); with merge_counters it is one launch. Needs no plan and reads
 * the lengths only on the device. Same contract as padec_cuda_run: validates host-side
 * arguments first (the same errors, PLAN_MISMATCH for a grid layout that
 * padec_grid_layout_init did not make), never allocates, never synchronises, capturable.
 * workspace: device memory, layout->workspace_bytes, 16-byte aligned (checked). */
padec_status padec_cuda_run_grid(const padec_params *params, const padec_grid_layout *layout,
                                 const padec_tensors *tensors, void *workspace,
                                 size_t workspace_bytes, struct CUstream_st *stream);

/* Copies a host plan (layout->plan_bytes) to device memory, asynchronously on `stream`. The host
 * buffer must stay unchanged until the copy has run (pinned memory makes it truly async). Errors:
 * NULL_POINTER, MISALIGNED_POINTER (either plan not 16-byte aligned), PLAN_MISMATCH (a layout
 * that padec_plan_layout_init did not make; a host plan whose header is not this layout's:
 * another batch, worker count, partition size, policy or params; or a plan body whose indices
 * leave the layout's bounds, as padec_plan_view_init checks them: padec_cuda_run cannot check a
 * device plan, so this is where an edited or corrupt plan is refused), BAD_ARGUMENT (a cost
 * layout's cost_item or cost_split out of range), NOT_BUILT_WITH_CUDA, CUDA_ERROR (the copy's, or
 * an error an earlier CUDA call left pending, reported before anything is enqueued). */
padec_status padec_cuda_upload_plan(const padec_plan_layout *layout, const void *host_plan,
                                    void *device_plan, struct CUstream_st *stream);

/* Builds the plan on the GPU, on `stream`, from kv_lens in device memory: the same bytes as
 * padec_plan_build would write for the same lengths (header, every array, zeroed tails), so the
 * host never needs the lengths. device_kv_lens: device memory, int32 [layout->batch], tokens
 * including the new query tokens. device_plan: device memory, 16-byte aligned, plan_bytes
 * (layout->plan_bytes or more; only the first layout->plan_bytes are written). Whole sequences
 * only: there is no device form of padec_plan_build_shard, and a plan built here for a shard's
 * kv_lens schedules the wrong partitions under a window (padec_cuda_run cannot tell).
 *
 * Checked on the host before the launch (on error nothing is launched): params (and that they
 * match the layout: PLAN_MISMATCH), NULL and misaligned pointers, plan_bytes
 * (WORKSPACE_TOO_SMALL), the policy (`even`, the only one; BAD_ARGUMENT otherwise). The lengths
 * are device data and are not checked: a negative kv_len is read as 0 (an empty sequence), never
 * a memory error. A batch whose partitions (per KV head) reach 2^31, where padec_plan_build
 * returns SIZE_OVERFLOW, gets a plan of zero bytes (no magic, no work items), so the decode
 * kernels run nothing and leave the outputs as they were.
 *
 * Never allocates, never synchronises, never reads device memory from the host; the launch
 * shape (at most 16 CTAs of 1024 threads) depends on the layout alone, so the call can be
 * captured in a CUDA graph and replayed with new kv_lens. It runs in a few microseconds up to a
 * batch of 1024 sequences and stays correct for any batch (larger batches are scanned in chunks
 * of 1024 by each CTA, and take proportionally longer). Errors: the params errors, NULL_POINTER,
 * MISALIGNED_POINTER, PLAN_MISMATCH, WORKSPACE_TOO_SMALL, BAD_ARGUMENT, NOT_BUILT_WITH_CUDA,
 * CUDA_ERROR (launch).
 *
 * The decode step as one CUDA graph. Allocate for the largest batch B you will run: a layout
 * for B (padec_plan_layout_init), the plan and workspace buffers, and every tensor of
 * padec_tensors at its largest size (q and o for B * q_len tokens, kv_lens [B], page_indptr
 * [B + 1], page_indices and the page pools at their capacity, the two device scale floats for
 * PADEC_FP8_SCALE_PER_TENSOR_DEVICE). Capture, on one stream:
 *     padec_cuda_plan_build(params, &layout, kv_lens, plan, layout.plan_bytes, stream);
 *     padec_cuda_run(params, &layout, plan, &tensors, workspace, layout.workspace_bytes, stream);
 * (padec_cuda_run adds the decode kernel, and before it a kernel that clears the merge counters
 * unless tensors.merge_counters gives self-resetting ones), then
 * instantiate once. Before each replay, write the step's inputs into the same buffers (on the
 * stream, or before it): kv_lens, page_indptr and page_indices, q, the device scales. A replay
 * plans from those lengths and decodes with them; nothing is re-captured. The graph holds
 * pointers, not values: every buffer must stay allocated, at its address, while it is replayed.
 * Padding: a step with fewer than B sequences sets kv_len = 0 for the padding sequences (and
 * gives them page_indptr[b + 1] = page_indptr[b]); they get a direct work item that writes
 * zeros to their output rows (LSE -inf) and reads no KV. Rows of o stay in place: sequence b
 * writes rows [b * q_len, (b + 1) * q_len) whatever the other lengths. Params, worker count,
 * partition size and dtypes are fixed by the capture. */
padec_status padec_cuda_plan_build(const padec_params *params, const padec_plan_layout *layout,
                                   const int32_t *device_kv_lens, void *device_plan,
                                   size_t plan_bytes, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_CUDA_H */
