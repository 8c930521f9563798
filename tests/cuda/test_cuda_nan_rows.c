/*
 * The CUDA executor: a NaN in the cache spoils exactly the rows that see it, on every path
 * (support/nan_case.h), the merges' maximum keeping NaN. Exit 77 without a Hopper GPU.
 */
#include <stdio.h>

#include "gpu.h"
#include "nan_case.h"
#include "test_support.h"

int main(void) {
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  int runs = 0;
  for (int variant = 0; variant < NAN_CASE_VARIANTS; ++variant) {
    nan_case nc;
    nan_case_init(&nc, variant, 0x7a70 + (uint64_t)variant);
    for (int k = 0; k < NAN_CASE_PATHS; ++k, ++runs) {
      char label[256], why[512] = "";
      nan_case_label(&nc, &nan_case_paths[k], label, sizeof label);
      padec_case_poison(&nc.c, nc.o, nc.lse);
      if (run_path_gpu(&nc.c, &nan_case_paths[k], nc.o, nc.lse, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", label, why); /* the context may be unusable */
        return 1;
      }
      if (!nan_case_check(&nc, why, sizeof why)) {
        fprintf(stderr, "FAIL %s: %s\n", label, why);
        test_failures += 1;
      }
    }
    nan_case_free(&nc);
  }
  printf("test_cuda_nan_rows: %d runs, %d failures\n", runs, test_failures);
  return test_failures ? 1 : 0;
}
