/*
 * The CPU executor: a NaN in the cache spoils exactly the rows that see it, on every path
 * (support/nan_case.h); and the shard merge weighs a shard that saw nothing as the GPU does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_case.h"
#include "test_support.h"

/* padec_cpu_merge_shards as the GPU's merge: a shard that saw nothing (LSE -inf) is added with
 * weight 0, so its row, 0 from any run but NaN from a GPU run whose query masked a NaN V, gives
 * what the GPU gives: the other shard's row for a row of zeros, NaN for a NaN row, and in both
 * the other shard's LSE. One row of 1 head of 64 dims, two shards. */
static void test_merge_of_a_shard_that_saw_nothing(void) {
  padec_params params = test_params(1, 1, 64, 16);
  params.o_dtype = PADEC_DTYPE_FP32;
  float *shard_o = test_alloc(sizeof(float) * 2 * 64), shard_lse[2] = {0.5f, -INFINITY};
  float *o = test_alloc(sizeof(float) * 64), lse = 0.0f;
  for (int nan_row = 0; nan_row <= 1; ++nan_row) {
    for (int d = 0; d < 64; ++d) {
      shard_o[d] = 0.25f * (float)(d - 32);
      shard_o[64 + d] = nan_row ? NAN : 0.0f;
    }
    const padec_shard_merge_tensors t = {2, 1, shard_o, shard_lse, o, 0, 0, &lse};
    CHECK(padec_cpu_merge_shards(&params, &t) == PADEC_STATUS_OK, "%s", padec_last_message());
    int as_gpu = lse == 0.5f;
    for (int d = 0; d < 64; ++d)
      as_gpu &= nan_row ? isnan(o[d]) : o[d] == shard_o[d];
    CHECK(as_gpu, "merge with a shard of LSE -inf and a %s row: not the GPU's result",
          nan_row ? "NaN" : "zero");
  }
  free(shard_o);
  free(o);
}

int main(void) {
  test_merge_of_a_shard_that_saw_nothing();
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
