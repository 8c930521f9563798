/*
 * One way to run a harness case: the grid path with a split count, or a plan of a worker count,
 * on the CPU executor or (through the harness, bench/gpu.h) on the GPU. Shared by the tests that
 * run one case every way (support/long_case.h, support/nan_case.h).
 */
#ifndef PADEC_TEST_RUN_PATH_H
#define PADEC_TEST_RUN_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

typedef struct run_path {
  int32_t splits;  /* > 0: the grid path with this many splits; 0: a plan */
  int32_t workers; /* the plan's workers (policy even) */
  int32_t partition_tokens;
} run_path;

/* "grid splits 3, partition 256" or "plan workers 5, partition 16". */
void run_path_name(const run_path *path, char *name, size_t size);

/* Runs the case on the CPU executor into o and lse (NULL for none). Returns the status; the
 * library's message says why. */
padec_status run_path_cpu(const padec_case *c, const run_path *path, void *o, float *lse);

/* The same on the GPU (padec_gpu_run_case, padec_gpu_run_case_grid: the device outputs poisoned
 * first). Returns 0, or -1 with a message in err; a fault leaves the context unusable. */
int run_path_gpu(const padec_case *c, const run_path *path, void *o, float *lse, char *err,
                 size_t err_size);

#endif
