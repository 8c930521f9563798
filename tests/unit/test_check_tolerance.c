/*
 * The checker's teeth (bench/check.c): an output that the CPU executor computed passes, and the
 * same output with one wrong row fails, where "wrong" is smaller than the rounding error of the
 * batch's largest values but larger than that of the row's own: a row of a 3001-token sequence
 * (values near 0.03) scaled by 1.02, beside short sequences whose values reach 1. A tolerance
 * taken over the whole batch would pass it; the rule is per row. Also: one NaN fails, and an
 * empty row must be exactly 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numerics.h" /* the fp16 encoder, to write a wrong output */
#include "harness.h"
#include "run_path.h"
#include "test_support.h"

static padec_case g_case;
static void *g_o, *g_o_right;
static float *g_lse;

/* Element i of the bf16 output, set to `value` (rounded to nearest by the float's top bits). */
static void set_bf16(void *o, size_t i, double value) {
  float f = (float)value;
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  const uint16_t h = (uint16_t)(bits >> 16);
  memcpy((unsigned char *)o + 2 * i, &h, sizeof h);
}

/* The CPU executor's output for the case, through a plan of 16 workers. */
static void run_cpu(const padec_case *c, void *o, float *lse) {
  static const run_path plan_of_16 = {0, 16, 0};
  padec_case_poison(c, o, lse);
  CHECK(run_path_cpu(c, &plan_of_16, o, lse) == PADEC_STATUS_OK, "%s", padec_last_message());
}

/* Both cases' shape: 8 query heads over 2 KV heads, head_dim 128, pages of 16, bf16 KV. */
static padec_params case_params(padec_dtype o_dtype) {
  padec_params p = test_params(8, 2, 128, 16);
  p.o_dtype = o_dtype;
  return p;
}

static int check_passes(const char *what) {
  padec_check_result result;
  CHECK(padec_check_output(&g_case, g_o, g_lse, &result) == 0, "%s: the oracle did not run", what);
  padec_check_print(stdout, what, &g_case, &result);
  return result.pass;
}

/* A 65536-token sequence's rows hold values near 0.005, where an absolute epsilon of 1e-4 (about
 * 25 fp16 ulps there) let a row 1% off pass, and its LSE moves by 6e-5 when 4 tokens are dropped,
 * below an absolute 1e-4: both fail now. fp16 outputs, beside short sequences. */
static void test_long_rows(void) {
  const padec_params p = case_params(PADEC_DTYPE_FP16);
  const int32_t lens[] = {65536, 1, 2, 17};
  if (padec_case_init(&g_case, &p, 4, lens, 0xc4ec) != 0) exit(1);
  const size_t rows = (size_t)g_case.num_tokens * (size_t)p.num_q_heads, dim = (size_t)p.head_dim;
  g_o = test_alloc(g_case.o_bytes);
  g_lse = test_alloc(sizeof(float) * rows);
  run_cpu(&g_case, g_o, g_lse);
  CHECK(check_passes("64k: the executor's output"), "the executor's output fails the check");
  /* Sequence 0's 8 rows scaled by 1.01 (fp16, rounded to nearest through float). */
  uint16_t *half = g_o;
  for (size_t i = 0; i < 8 * dim; ++i) {
    const float scaled = (float)(1.01 * padec_output_element(g_o, PADEC_DTYPE_FP16, i));
    half[i] = padec__float_to_fp16(scaled);
  }
  CHECK(!check_passes("64k: sequence 0's rows scaled by 1.01"), "a long row 1%% off passes");
  /* The first 4 tokens dropped (a window 4 short of the sequence), checked against all tokens. */
  padec_case dropped = g_case;
  dropped.params.window_left = lens[0] - 5;
  run_cpu(&dropped, g_o, g_lse);
  padec_check_result result;
  CHECK(padec_check_output(&g_case, g_o, g_lse, &result) == 0 && result.bad_lse > 0,
        "64k without its first 4 tokens: %lld LSEs caught", (long long)result.bad_lse);
  free(g_o);
  free(g_lse);
  padec_case_free(&g_case);
}

int main(void) {
  const padec_params p = case_params(PADEC_DTYPE_BF16);
  const int32_t lens[] = {3001, 1, 2, 0, 17};
  const int32_t batch = (int32_t)(sizeof lens / sizeof lens[0]);
  if (padec_case_init(&g_case, &p, batch, lens, 0xc4ec) != 0) return 1;
  const padec_params *cp = &g_case.params;

  g_o = test_alloc(g_case.o_bytes);
  g_o_right = test_alloc(g_case.o_bytes);
  const size_t rows = (size_t)g_case.num_tokens * (size_t)cp->num_q_heads;
  g_lse = test_alloc(sizeof(float) * rows);
  run_cpu(&g_case, g_o, g_lse);
  memcpy(g_o_right, g_o, g_case.o_bytes);

  CHECK(check_passes("the executor's output"), "the executor's output fails the check");

  /* Row 0 (sequence 0, head 0): small values; the short sequences' rows hold values near 1. */
  const size_t dim = (size_t)cp->head_dim;
  double row_max = 0.0, batch_max = 0.0;
  for (size_t i = 0; i < rows * dim; ++i) {
    const double v = fabs(padec_output_element(g_o, cp->o_dtype, i));
    if (i < dim && v > row_max) row_max = v;
    if (v > batch_max) batch_max = v;
  }
  CHECK(row_max < 0.1 && batch_max > 0.5, "the case no longer has small and large rows (%g, %g)", row_max,
        batch_max);
  for (size_t d = 0; d < dim; ++d) set_bf16(g_o, d, 1.02 * padec_output_element(g_o_right, cp->o_dtype, d));
  CHECK(!check_passes("row 0 scaled by 1.02"), "a row 2%% off passes the check");

  memcpy(g_o, g_o_right, g_case.o_bytes);
  set_bf16(g_o, dim * 8 + 5, NAN); /* sequence 1's row */
  CHECK(!check_passes("one NaN"), "a NaN passes the check");

  /* Sequence 3 is empty: its rows must be exactly 0, not merely small. */
  memcpy(g_o, g_o_right, g_case.o_bytes);
  const size_t empty_row = (size_t)3 * (size_t)cp->num_q_heads;
  CHECK(padec_output_element(g_o, cp->o_dtype, empty_row * dim) == 0.0, "the empty row is not 0");
  set_bf16(g_o, empty_row * dim, 1e-6);
  CHECK(!check_passes("an empty row with 1e-6"), "an empty row that is not exactly 0 passes");

  free(g_o);
  free(g_o_right);
  free(g_lse);
  padec_case_free(&g_case);
  test_long_rows();
  if (test_failures) {
    fprintf(stderr, "test_check_tolerance: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_check_tolerance: all checks passed\n");
  return 0;
}
