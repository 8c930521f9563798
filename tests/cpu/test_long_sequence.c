/*
 * The CPU executor at kv_len 2^31 - 1 under a sliding window (support/long_case.h), the twin of
 * tests/cuda/test_cuda_long_sequence.c: every variant and path of long_case, each output against
 * the short case's oracle, poisoned first. The host's checks ask page_indptr[0] = 0, so the
 * block table starts at the row, with the guard before it (long_case.longer_host).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "long_case.h"
#include "padec.h"
#include "test_support.h"

/* Runs one path of the long case into o and lse; returns the status. */
static padec_status run_path(const padec_case *longer, const long_case_path *path, void *o,
                             float *lse) {
  const padec_tensors tensors = padec_case_tensors(longer, o, lse);
  padec_status status;
  if (path->splits > 0) {
    padec_grid_layout layout;
    status = padec_grid_layout_init(&longer->params, 1, path->splits, LONG_CASE_PARTITION_TOKENS,
                                    &layout);
    if (status != PADEC_STATUS_OK) return status;
    void *workspace = test_alloc(layout.workspace_bytes);
    status = padec_cpu_run_grid(&longer->params, &layout, &tensors, workspace,
                                layout.workspace_bytes);
    free(workspace);
    return status;
  }
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = path->workers;
  options.partition_tokens = LONG_CASE_PARTITION_TOKENS;
  padec_plan_layout layout;
  status = padec_plan_layout_init(&longer->params, 1, &options, &layout);
  if (status != PADEC_STATUS_OK) return status;
  void *plan = test_alloc(layout.plan_bytes), *workspace = test_alloc(layout.workspace_bytes);
  status = padec_plan_build(&longer->params, &layout, longer->kv_lens, plan, layout.plan_bytes);
  if (status == PADEC_STATUS_OK)
    status = padec_cpu_run(&longer->params, &layout, plan, &tensors, workspace,
                           layout.workspace_bytes);
  free(plan);
  free(workspace);
  return status;
}

int main(void) {
  int runs = 0;
  for (int variant = 0; variant < LONG_CASE_VARIANTS; ++variant) {
    long_case lc;
    long_case_init(&lc, variant, 0x10a9 + (uint64_t)variant);
    const padec_case *shorter = &lc.shorter;
    void *o = lc.o;
    float *lse = lc.lse;
    for (int k = 0; k < LONG_CASE_PATHS; ++k, ++runs) {
      char label[256];
      long_case_label(&lc, &long_case_paths[k], label, sizeof label);
      padec_case_poison(shorter, o, lse);
      const padec_status status = run_path(&lc.longer_host, &long_case_paths[k], o, lse);
      padec_check_result result;
      if (status != PADEC_STATUS_OK) {
        fprintf(stderr, "FAIL %s: %s\n", label, padec_last_message());
        test_failures += 1;
      } else if (padec_check_output(shorter, o, lse, &result) != 0 || !result.pass) {
        padec_check_print(stderr, label, shorter, &result);
        test_failures += 1;
      }
    }
    long_case_free(&lc);
  }
  printf("test_long_sequence: %d runs at kv_len 2^31 - 1, %d failures\n", runs, test_failures);
  return test_failures ? 1 : 0;
}
