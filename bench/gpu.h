/*
 * GPU side of the harness: run a case on the device and benchmark a workload. Implemented in
 * bench/gpu.cu when padec is built with CUDA, and by bench/gpu_stub.c otherwise (every function
 * then reports that no GPU is available).
 */
#ifndef PADEC_HARNESS_GPU_H
#define PADEC_HARNESS_GPU_H

#include "harness.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when padec was built with CUDA and a device of compute capability 9.0 or newer is present. */
int padec_gpu_available(void);
/* Why padec_gpu_available says 0, for a message: the CUDA error that hid the devices, device 0's
 * compute capability, or that padec was built without CUDA ("" when a GPU is available). */
const char *padec_gpu_unavailable_reason(void);

/* The recommended worker count for params on device 0 (0 if no GPU). */
int32_t padec_gpu_default_workers(const padec_params *params);
/* The SMs and memory bandwidth of device 0, for padec_choose_for_device; zeros without a GPU. */
padec_device_shape padec_gpu_device_shape(void);

/* Uploads the case (its shard arrays too, when set), builds a plan on the host with options
 * (padec_plan_build_shard), runs padec_cuda_run, downloads o
 * (c->o_bytes) and lse ([num_tokens * num_q_heads], may be NULL). The device outputs are
 * poisoned first. Returns 0, or -1 with a message in err. */
int padec_gpu_run_case(const padec_case *c, const padec_plan_options *options, void *o,
                       float *lse, char *err, size_t err_size);

/* The same for the grid path (padec_cuda_run_grid with num_splits and partition_tokens). */
int padec_gpu_run_case_grid(const padec_case *c, int32_t num_splits, int32_t partition_tokens,
                            void *o, float *lse, char *err, size_t err_size);

/* 1: the two run_case functions pass self-resetting merge counters (padec_tensors.merge_counters):
 * one device array kept across runs and cases, zeroed only when it is first allocated or grown,
 * so each run relies on the runs before it to have left it zero. 0 (the default): NULL, the
 * workspace's counters and their clearing kernel. Not for concurrent runs from several threads. */
void padec_gpu_set_kept_counters(int on);

/* Whether every entry of the kept counter array is zero, as every completed run must leave it:
 * 1 yes (or no array yet), 0 no, -1 on a CUDA error (message in err). */
int padec_gpu_kept_counters_zero(char *err, size_t err_size);

/* The points of a decode CTA's timeline (src/cuda/decode_params.h, padec_trace_event): entry,
 * first tiles issued, first tile landed, last tile consumed, output or partial written, group
 * merged, exit. */
enum { PADEC_GPU_TRACE_POINTS = 7 };
extern const char *const padec_gpu_trace_point_names[PADEC_GPU_TRACE_POINTS];

/* One traced launch: per point, over the CTAs that reached it, the time since the first CTA's
 * entry (microseconds, %globaltimer). */
typedef struct padec_gpu_trace {
  int64_t ctas; /* CTAs that ran; 0: not traced */
  int64_t reached[PADEC_GPU_TRACE_POINTS];
  double min_us[PADEC_GPU_TRACE_POINTS], median_us[PADEC_GPU_TRACE_POINTS],
      max_us[PADEC_GPU_TRACE_POINTS];
} padec_gpu_trace;

typedef struct padec_gpu_bench_result {
  double median_us;       /* decode + merge, cold L2, CUDA events */
  double min_us;
  double plan_us;         /* host plan build, median */
  double copy_gbps;       /* device-to-device copy, bytes read + written per second / 1e9 */
  double effective_gbps;  /* padec_workload_bytes / median */
  int iterations;
  char device[128];
  padec_gpu_trace trace;  /* filled when padec_gpu_bench_set_trace(1) */
} padec_gpu_bench_result;

/* 1: after timing, padec_gpu_bench and padec_gpu_bench_grid run one more launch from a cold L2
 * with the decode kernel's timeline stamps on (padec__cuda_set_trace) and summarise them in
 * result->trace. The stamps cost a few instructions per segment; the timed runs are untraced. */
void padec_gpu_bench_set_trace(int on);

/* Benchmarks one workload: starts from a fresh CUDA context (cudaDeviceReset, which frees every
 * device allocation of the process; PADEC_BENCH_RESET=0 keeps the context), so that no earlier
 * workload's freed buffers decide where this one's land. The same holds for
 * padec_gpu_bench_grid and padec_gpu_bench_device_plan. Median over `iterations` (at least 50)
 * with a cold L2 (a read of
 * 256 MiB between iterations, outside the timed region, which leaves L2 clean; the environment
 * variable PADEC_BENCH_FLUSH=memset flushes with a memset instead, which leaves it dirty).
 * One KV pool: the flush before every iteration leaves none of it in L2, so pools need no
 * rotating, even for workloads near the L2's size (b1-32k-fp8 and g8-b128-2k-fp8 move 64 MiB,
 * 1.3 times an H100's 50 MB) or smaller (--scale-lengths); only PADEC_BENCH_FLUSH=none runs them
 * from a warm L2. Returns 0, or -1 with a message in err. */
int padec_gpu_bench(const padec_workload *workload, const padec_plan_options *options,
                    int iterations, padec_gpu_bench_result *result, char *err, size_t err_size);

/* padec_gpu_bench for the grid path (no plan: plan_us is 0). */
int padec_gpu_bench_grid(const padec_workload *workload, int32_t num_splits, int32_t partition_tokens,
                         int iterations, padec_gpu_bench_result *result, char *err, size_t err_size);

/* The device scheduler and the one-graph decode step, for one workload (medians over
 * `iterations`, at least 20):
 *   plan_us                  the padec_cuda_plan_build kernel alone (CUDA events around one
 *                            launch: an upper bound, the gaps between events and kernel included);
 *   graph_step_us            one replay of a CUDA graph holding the device plan and the decode
 *                            (padec_cuda_plan_build + padec_cuda_run), host wall-clock from the
 *                            launch until the stream is idle;
 *   host_plan_plus_decode_us the same step planned on the host: padec_plan_build (the lengths
 *                            already on the host), padec_cuda_upload_plan from pinned memory and
 *                            padec_cuda_run, host wall-clock until the stream is idle.
 * Both steps start from a cold L2, flushed as padec_gpu_bench does (PADEC_BENCH_FLUSH), outside
 * the timed region. Before timing, the device plan is checked
 * against the host plan (memcmp); a difference is an error. Any output pointer may be NULL.
 * Returns 0, or -1 with a message in err. */
int padec_gpu_bench_device_plan(const padec_workload *workload, const padec_plan_options *options,
                                int iterations, double *plan_us, double *graph_step_us,
                                double *host_plan_plus_decode_us, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_HARNESS_GPU_H */
