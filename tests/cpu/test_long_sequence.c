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
#include "test_support.h"

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
      const padec_status status = run_path_cpu(&lc.longer_host, &long_case_paths[k], o, lse);
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
