/* The GPU side of the harness in a build without CUDA: no device, and every call says why. */
#include <stdio.h>
#include <string.h>

#include "gpu.h"

static const char not_built[] = "padec was built without CUDA";

static int fail(char *err, size_t err_size) {
  if (err && err_size > 0) snprintf(err, err_size, "%s", not_built);
  return -1;
}

int padec_gpu_available(void) { return 0; }

const char *padec_gpu_unavailable_reason(void) { return not_built; }

int32_t padec_gpu_default_workers(const padec_params *params) {
  (void)params;
  return 0;
}

padec_device_shape padec_gpu_device_shape(void) {
  const padec_device_shape unknown = {0, 0};
  return unknown;
}

int padec_gpu_run_case(const padec_case *c, const padec_plan_options *options, void *o, float *lse,
                       char *err, size_t err_size) {
  (void)c;
  (void)options;
  (void)o;
  (void)lse;
  return fail(err, err_size);
}

int padec_gpu_run_case_grid(const padec_case *c, int32_t num_splits, int32_t partition_tokens,
                            void *o, float *lse, char *err, size_t err_size) {
  (void)c;
  (void)num_splits;
  (void)partition_tokens;
  (void)o;
  (void)lse;
  return fail(err, err_size);
}

void padec_gpu_set_kept_counters(int on) { (void)on; }

int padec_gpu_kept_counters_zero(char *err, size_t err_size) { return fail(err, err_size); }

const char *const padec_gpu_trace_point_names[PADEC_GPU_TRACE_POINTS] = {
    "entry", "issued", "first_tile", "last_tile", "written", "merged", "exit"};

void padec_gpu_bench_set_trace(int on) { (void)on; }

int padec_gpu_bench_grid(const padec_workload *workload, int32_t num_splits, int32_t partition_tokens,
                         int iterations, padec_gpu_bench_result *result, char *err, size_t err_size) {
  (void)workload;
  (void)num_splits;
  (void)partition_tokens;
  (void)iterations;
  (void)result;
  return fail(err, err_size);
}

int padec_gpu_bench(const padec_workload *workload, const padec_plan_options *options,
                    int iterations, padec_gpu_bench_result *result, char *err, size_t err_size) {
  (void)workload;
  (void)options;
  (void)iterations;
  if (result) {
    memset(result, 0, sizeof *result);
    snprintf(result->device, sizeof result->device, "none (%s)", not_built);
  }
  return fail(err, err_size);
}

int padec_gpu_bench_device_plan(const padec_workload *workload, const padec_plan_options *options,
                                int iterations, double *plan_us, double *graph_step_us,
                                double *host_plan_plus_decode_us, char *err, size_t err_size) {
  (void)workload;
  (void)options;
  (void)iterations;
  if (plan_us) *plan_us = 0.0;
  if (graph_step_us) *graph_step_us = 0.0;
  if (host_plan_plus_decode_us) *host_plan_plus_decode_us = 0.0;
  return fail(err, err_size);
}
