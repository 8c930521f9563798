/*
 * padec CUDA entry points. Includes no CUDA header: streams are passed as the driver's opaque
 * struct CUstream_st pointer (what cudaStream_t is), NULL meaning the legacy default stream.
 *
 * Built without CUDA, every function here links and returns PADEC_STATUS_NOT_BUILT_WITH_CUDA.
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
} padec_cuda_device_info;

/* Queries device `device` (a cudaGetDevice index). Errors: NOT_BUILT_WITH_CUDA, NO_DEVICE,
 * CUDA_ERROR. May initialise the CUDA context; does not synchronise. */
padec_status padec_cuda_device_query(int32_t device, padec_cuda_device_info *info);

/* The recommended worker count (persistent CTAs) for params on that device: a multiple of
 * num_kv_heads sized from the SM count and the decode kernel's occupancy. */
padec_status padec_cuda_recommended_workers(const padec_params *params, int32_t device,
                                            int32_t *num_workers);

/* Runs a plan on the GPU, on `stream`: the persistent decode kernel, then the merge kernel.
 * `plan` is the plan buffer in device memory (uploaded by the caller, e.g. with
 * padec_cuda_upload_plan); every tensor pointer is device memory; `workspace` is device memory
 * of layout->workspace_bytes or more, 256-byte aligned. Validates the host-side arguments
 * (pointers, alignment, params against the layout) before any launch; on error launches nothing.
 * Never allocates, never synchronises, never reads device memory from the host, so it can be
 * captured in a CUDA graph. Page ids and kv_lens are device data and are not checked here (see
 * padec_validate_kv_host). Errors: the params errors, NULL_POINTER, MISALIGNED_POINTER,
 * PLAN_MISMATCH, WORKSPACE_TOO_SMALL, BAD_SCALES, NOT_BUILT_WITH_CUDA, CUDA_ERROR (launch). */
padec_status padec_cuda_run(const padec_params *params, const padec_plan_layout *layout,
                            const void *plan, const padec_tensors *tensors, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream);

/* Copies a host plan (layout->plan_bytes) to device memory, asynchronously on `stream`. The host
 * buffer must stay unchanged until the copy has run (pinned memory makes it truly async). */
padec_status padec_cuda_upload_plan(const padec_plan_layout *layout, const void *host_plan,
                                    void *device_plan, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_CUDA_H */
