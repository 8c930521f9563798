/*
 * The CUDA executor at kv_len 2^31 - 1 under a sliding window (support/long_case.h): the last
 * tile of a stream that starts at the window runs past INT32_MAX, and its positions must not
 * wrap (a wrapped position read page ids 2^21 entries before the sequence's row, here ids past
 * the pool: an illegal address). Every variant and path of long_case, each output against the
 * short case's oracle, poisoned first. Exit 77 without a Hopper GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "long_case.h"
#include "test_support.h"

int main(void) {
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  int runs = 0;
  for (int variant = 0; variant < LONG_CASE_VARIANTS; ++variant) {
    long_case lc;
    long_case_init(&lc, variant, 0x10a9 + (uint64_t)variant);
    const padec_case *shorter = &lc.shorter;
    void *o = lc.o;
    float *lse = lc.lse;
    for (int k = 0; k < LONG_CASE_PATHS; ++k, ++runs) {
      const run_path *path = &long_case_paths[k];
      char label[256], err[512] = "";
      long_case_label(&lc, path, label, sizeof label);
      padec_case_poison(shorter, o, lse);
      const int failed = run_path_gpu(&lc.longer, path, o, lse, err, sizeof err);
      if (failed) { /* a fault leaves the context unusable: stop here */
        fprintf(stderr, "FAIL %s: %s\n", label, err);
        return 1;
      }
      padec_check_result result;
      if (padec_check_output(shorter, o, lse, &result) != 0 || !result.pass) {
        padec_check_print(stderr, label, shorter, &result);
        test_failures += 1;
      }
    }
    long_case_free(&lc);
  }
  printf("test_cuda_long_sequence: %d runs at kv_len 2^31 - 1, %d failures\n", runs,
         test_failures);
  return test_failures ? 1 : 0;
}
