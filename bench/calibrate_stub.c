/* The GPU side of the cost-model calibration in a build without CUDA: it says why it cannot run.
 * The design, the fit and the report (calibrate_fit.c) are built everywhere. */
#include <stdio.h>
#include <string.h>

#include "calibrate.h"

int padec_gpu_calibrate(int32_t num_workers, int iterations, padec_calibration *c, char *err,
                        size_t err_size) {
  (void)iterations;
  if (c) padec_calibration_design(c, num_workers > 0 ? num_workers : 16);
  if (err && err_size > 0) snprintf(err, err_size, "padec was built without CUDA");
  return -1;
}
