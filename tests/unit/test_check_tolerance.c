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

#include "harness.h"
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

static int check_passes(const char *what) {
  padec_check_result result;
  CHECK(padec_check_output(&g_case, g_o, g_lse, &result) == 0, "%s: the oracle did not run", what);
  padec_check_print(stdout, what, &g_case, &result);
  return result.pass;
}

int main(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = 16;
  const int32_t lens[] = {3001, 1, 2, 0, 17};
  const int32_t batch = (int32_t)(sizeof lens / sizeof lens[0]);
  if (padec_case_init(&g_case, &p, batch, lens, 0xc4ec) != 0) return 1;
  const padec_params *cp = &g_case.params;

  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = 16;
  padec_plan_layout layout;
  CHECK(padec_plan_layout_init(cp, batch, &options, &layout) == PADEC_STATUS_OK, "%s", padec_last_message());
  void *plan = test_alloc(layout.plan_bytes), *workspace = test_alloc(layout.workspace_bytes);
  g_o = test_alloc(g_case.o_bytes);
  g_o_right = test_alloc(g_case.o_bytes);
  const size_t rows = (size_t)g_case.num_tokens * (size_t)cp->num_q_heads;
  g_lse = test_alloc(sizeof(float) * rows);
  CHECK(padec_plan_build(cp, &layout, g_case.kv_lens, plan, layout.plan_bytes) == PADEC_STATUS_OK, "%s",
        padec_last_message());
  padec_case_poison(&g_case, g_o, g_lse);
  padec_tensors t = padec_case_tensors(&g_case, g_o, g_lse);
  CHECK(padec_cpu_run(cp, &layout, plan, &t, workspace, layout.workspace_bytes) == PADEC_STATUS_OK, "%s",
        padec_last_message());
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

  free(plan);
  free(workspace);
  free(g_o);
  free(g_o_right);
  free(g_lse);
  padec_case_free(&g_case);
  if (test_failures) {
    fprintf(stderr, "test_check_tolerance: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_check_tolerance: all checks passed\n");
  return 0;
}
