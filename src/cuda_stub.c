/* Built when padec has no CUDA: every padec_cuda_* entry links and says so. */
#include "padec_cuda.h"
#include "internal.h"

padec_status padec_cuda_device_query(int32_t device, padec_cuda_device_info *info) {
  (void)device;
  (void)info;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_device_query: no CUDA in this build");
}

padec_status padec_cuda_recommended_workers(const padec_params *params, int32_t device,
                                            int32_t *num_workers) {
  (void)params;
  (void)device;
  (void)num_workers;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA,
                     "padec_cuda_recommended_workers: no CUDA in this build");
}

padec_status padec_cuda_run(const padec_params *params, const padec_plan_layout *layout,
                            const void *plan, const padec_tensors *tensors, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream) {
  (void)params;
  (void)layout;
  (void)plan;
  (void)tensors;
  (void)workspace;
  (void)workspace_bytes;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_run: no CUDA in this build");
}

padec_status padec_cuda_upload_plan(const padec_plan_layout *layout, const void *host_plan,
                                    void *device_plan, struct CUstream_st *stream) {
  (void)layout;
  (void)host_plan;
  (void)device_plan;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_upload_plan: no CUDA in this build");
}

padec_status padec_cuda_plan_build(const padec_params *params, const padec_plan_layout *layout,
                                   const int32_t *device_kv_lens, void *device_plan,
                                   size_t plan_bytes, struct CUstream_st *stream) {
  (void)params;
  (void)layout;
  (void)device_kv_lens;
  (void)device_plan;
  (void)plan_bytes;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_plan_build: no CUDA in this build");
}

padec_status padec_cuda_merge_shards(const padec_params *params,
                                     const padec_shard_merge_tensors *tensors,
                                     struct CUstream_st *stream) {
  (void)params;
  (void)tensors;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA,
                     "padec_cuda_merge_shards: no CUDA in this build");
}

padec_status padec_cuda_validate_kv(const padec_params *params, int32_t batch,
                                    const padec_tensors *tensors, void *device_scratch,
                                    struct CUstream_st *stream) {
  (void)params;
  (void)batch;
  (void)tensors;
  (void)device_scratch;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA,
                     "padec_cuda_validate_kv: no CUDA in this build");
}

padec_status padec_cuda_run_grid(const padec_params *params, const padec_grid_layout *layout,
                                 const padec_tensors *tensors, void *workspace,
                                 size_t workspace_bytes, struct CUstream_st *stream) {
  (void)params;
  (void)layout;
  (void)tensors;
  (void)workspace;
  (void)workspace_bytes;
  (void)stream;
  return padec__fail(PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_run_grid: no CUDA in this build");
}
