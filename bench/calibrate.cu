/* The GPU side of the cost-model calibration (see calibrate.h): every point of the design timed
 * with padec_gpu_bench (the benchmark's CUDA events, cold L2 and median), then the fit. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "calibrate.h"
#include "gpu.h"

namespace {

/* Measuring stops after this much wall time (setup, flushes and copies included), so that the
 * whole calibration stays near a minute even on a slow or shared device. */
constexpr double kTimeBudgetSeconds = 50.0;

double seconds_now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int fail(char *err, size_t err_size, const char *message) {
  if (err && err_size) snprintf(err, err_size, "%s", message);
  return -1;
}

/* Device memory a point's benchmark needs: K and V pools, the 256 MiB flush buffer and the two
 * 1 GiB buffers of the copy ceiling (outputs and block table are small). */
size_t point_bytes(const padec_calibration *c, const padec_calibration_point *p) {
  const size_t token_bytes = (size_t)c->params.num_kv_heads * (size_t)c->params.head_dim * 2;
  const size_t tokens = (size_t)(p->batch > 2 ? p->batch - 2 : 0) * (size_t)p->kv_len +
                        (size_t)(p->batch < 2 ? p->batch : 2) * (size_t)p->edge_len;
  return 2 * tokens * token_bytes + ((size_t)256 << 20) + ((size_t)2 << 30);
}

}  // namespace

extern "C" int padec_gpu_calibrate(int32_t num_workers, int iterations, padec_calibration *c,
                                   char *err, size_t err_size) {
  if (!padec_gpu_available())
    return fail(err, err_size, "no CUDA device of compute capability 9.0 or newer");
  padec_calibration_design(c, 16); /* for the reference params */
  if (num_workers <= 0) num_workers = padec_gpu_default_workers(&c->params);
  if (num_workers < 16)
    return fail(err, err_size,
                "the calibration needs at least 16 workers (2 bins per KV head of its 8)");
  padec_calibration_design(c, num_workers);
  c->iterations = iterations <= 0 ? 100 : iterations < 50 ? 50 : iterations; /* bench's minimum */

  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess)
    return fail(err, err_size, "cudaGetDeviceProperties failed");
  snprintf(c->device, sizeof c->device, "%.120s", prop.name);
  for (int i = 0; i < c->num_points; ++i)
    if (padec_calibration_regressors(c, &c->points[i], err, err_size) != 0) return -1;

  const double start = seconds_now();
  for (int i = 0; i < c->num_points; ++i) {
    if (seconds_now() - start > kTimeBudgetSeconds) break;
    padec_calibration_point *p = &c->points[i];
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess)
      return fail(err, err_size, "cudaMemGetInfo failed");
    if (point_bytes(c, p) > free_bytes) continue; /* reported as "not run" */
    padec_workload w;
    if (padec_calibration_workload(c, p, &w) != 0) return fail(err, err_size, "out of memory");
    const padec_plan_options options = padec_calibration_options(c);
    padec_gpu_bench_result result;
    char message[512] = "";
    const int rc = padec_gpu_bench(&w, &options, c->iterations, &result, message, sizeof message);
    padec_workload_free(&w);
    if (rc != 0) {
      if (err && err_size) snprintf(err, err_size, "%s: %s", p->label, message);
      return -1;
    }
    p->measured_us = result.median_us;
    p->measured = 1;
  }
  c->seconds = seconds_now() - start;
  if (padec_calibration_fit_model(c) != 0)
    return fail(err, err_size,
                "the fit needs at least four independent measured points (see the table)");
  return 0;
}
