/*
 * The CPU executor: a NaN in the cache spoils exactly the rows that see it, on every path
 * (support/nan_case.h).
 */
#include <stdio.h>

#include "nan_case.h"
#include "test_support.h"

int main(void) {
  int runs = 0;
  for (int variant = 0; variant < NAN_CASE_VARIANTS; ++variant) {
    nan_case nc;
    nan_case_init(&nc, variant, 0x7a70 + (uint64_t)variant);
    for (int k = 0; k < NAN_CASE_PATHS; ++k, ++runs) {
      char label[256], why[256];
      nan_case_label(&nc, &nan_case_paths[k], label, sizeof label);
      padec_case_poison(&nc.c, nc.o, nc.lse);
      const padec_status status = run_path_cpu(&nc.c, &nan_case_paths[k], nc.o, nc.lse);
      if (status != PADEC_STATUS_OK) {
        fprintf(stderr, "FAIL %s: %s\n", label, padec_last_message());
        test_failures += 1;
      } else if (!nan_case_check(&nc, why, sizeof why)) {
        fprintf(stderr, "FAIL %s: %s\n", label, why);
        test_failures += 1;
      }
    }
    nan_case_free(&nc);
  }
  printf("test_nan_rows: %d runs, %d failures\n", runs, test_failures);
  return test_failures ? 1 : 0;
}
