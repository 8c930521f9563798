/*
 * Calibration of the cost policy's model (padec_cost_model) on the GPU, for `padec bench
 * --calibrate`.
 *
 * Synthetic batches in the reference shape (8 KV heads, 32 q heads, head_dim 128, bf16, page 16,
 * q_len 1, 256-token partitions) are built so that, under the even policy with W workers
 * (N = W / 8 bins per head), every worker gets the same work:
 *   - whole k P: N k sequences of P partitions: every worker runs k whole sequences (k items,
 *     k P partitions, no split), for k in {1, 2, 4, 8} and P in {1, 2, 4, 8, 16};
 *   - split 1 P: one sequence of N P partitions: every worker runs one piece of P partitions;
 *   - split 2 Q: N + 1 sequences, 2 Q partitions each but the first and last (Q): every inner
 *     bin boundary cuts a sequence in half, so a worker runs two pieces of Q partitions.
 * Each batch is timed with padec_gpu_bench (decode and merge between CUDA events, cold L2,
 * median), and the time of the busiest worker's work, read from the plan (items, partitions,
 * pieces of split sequences), is fitted by least squares on relative residuals (timing noise
 * grows with the time, and the short points are those that resolve the per-item costs):
 *     time = intercept + items x item_ns + partitions x partition_ns + pieces x split_ns,
 * the intercept being what every worker pays once (launch, the last merge). Each split point has
 * an unsplit twin with the same items and partitions per worker (whole 1 P, whole 2 Q), whose
 * difference is a model-free estimate of the split cost.
 *
 * The design, the regressors and the fit are host code (calibrate_fit.c, tested on the CPU); the
 * timing is bench/calibrate.cu, or bench/calibrate_stub.c in a build without CUDA.
 */
#ifndef PADEC_HARNESS_CALIBRATE_H
#define PADEC_HARNESS_CALIBRATE_H

#include <stdio.h>

#include "harness.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { PADEC_CALIBRATION_MAX_POINTS = 32 };

typedef struct padec_calibration_point {
  char label[32];   /* "whole k=4 P=8", "split k=1 P=16", "split k=2 P=4" */
  int32_t batch;    /* sequences */
  int32_t kv_len;   /* tokens of every sequence but the first and the last */
  int32_t edge_len; /* tokens of the first and the last sequence */
  int32_t twin;     /* the unsplit point with the same items and partitions per worker, or -1 */
  /* The busiest worker of the even plan (the largest predicted time under the default model):
   * its work items, partitions, and items that are pieces of split sequences. */
  int32_t items, partitions, split_items;
  int measured;       /* 1 once measured_us holds a time */
  double measured_us; /* median decode time */
  double fitted_us;   /* the fit's time for the point */
} padec_calibration_point;

typedef struct padec_calibration_fit {
  int ok; /* 1 when the fit ran (enough independent points) */
  double intercept_us, item_ns, partition_ns, split_ns;
  double rms_residual_us, max_abs_residual_us, max_relative_residual;
} padec_calibration_fit;

typedef struct padec_calibration {
  padec_params params;      /* the reference shape */
  int32_t num_workers;      /* W */
  int32_t partition_tokens; /* 256 */
  int iterations;           /* timed iterations of each point */
  int num_points;
  padec_calibration_point points[PADEC_CALIBRATION_MAX_POINTS];
  padec_calibration_fit fit;
  char device[128];
  double seconds; /* wall time of the measurements */
} padec_calibration;

/* The reference params and the points for num_workers workers (at least 8; a multiple of 8
 * gives every worker work). The regressors and times are left at zero. */
void padec_calibration_design(padec_calibration *c, int32_t num_workers);

/* The kv_lens of a point ([point->batch]). */
void padec_calibration_lengths(const padec_calibration_point *point, int32_t *kv_lens);

/* The point's batch as a workload (kv_lens malloc'd: padec_workload_free). Returns 0 or -1. */
int padec_calibration_workload(const padec_calibration *c, const padec_calibration_point *point,
                               padec_workload *workload);

/* The plan options of every point: W workers, 256-token partitions, the even policy. */
padec_plan_options padec_calibration_options(const padec_calibration *c);

/* Builds the even plan of a point on the host and fills its regressors. Returns 0, or -1 with a
 * message in err. */
int padec_calibration_regressors(const padec_calibration *c, padec_calibration_point *point,
                                 char *err, size_t err_size);

/* Fits the model to the measured points (c->fit; every measured point's fitted_us). Returns 0,
 * or -1 when fewer than four independent points were measured. */
int padec_calibration_fit_model(padec_calibration *c);

/* Prints the points, the fit, its residuals, the split-versus-unsplit differences and the line
 * to paste as the new defaults. */
void padec_calibration_print(FILE *stream, const padec_calibration *c);

/* Runs the whole calibration on GPU 0: the design for num_workers (0: the recommended count for
 * the reference params), each point timed over `iterations` (0: 100; padec_gpu_bench's minimum
 * of 50 applies), then the fit. Stops measuring after about 50 s of wall time and fits what it
 * has. Returns 0, or -1 with a message in err (no GPU, a CUDA error, a singular fit). */
int padec_gpu_calibrate(int32_t num_workers, int iterations, padec_calibration *c, char *err,
                        size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_HARNESS_CALIBRATE_H */
