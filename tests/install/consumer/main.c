/* Decodes one query against three cached tokens through an installed padec (CPU executor) and
 * compares with the softmax computed here; prints the linked library's version. Exit 0 when they
 * agree. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

enum { HEAD_DIM = 64, TOKENS = 3, PAGE = 4 };

/* bf16 of a float that is exactly representable (small integers over powers of two here). */
static uint16_t bf16(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return (uint16_t)(bits >> 16);
}

int main(void) {
  if (padec_version_number() != (unsigned)PADEC_VERSION_NUMBER) {
    fprintf(stderr, "header %d, library %u\n", PADEC_VERSION_NUMBER, padec_version_number());
    return 1;
  }
  padec_params params;
  memset(&params, 0, sizeof params);
  params.num_q_heads = 1;
  params.num_kv_heads = 1;
  params.head_dim = HEAD_DIM;
  params.page_size = PAGE;
  params.o_dtype = PADEC_DTYPE_FP32;
  params.softmax_scale = 1.0f;

  static _Alignas(64) uint16_t q[HEAD_DIM], k[PAGE * HEAD_DIM], v[PAGE * HEAD_DIM];
  static _Alignas(64) float o[HEAD_DIM];
  for (int d = 0; d < HEAD_DIM; ++d) q[d] = bf16(d == 0 ? 1.0f : 0.0f);
  /* Token t's key has t / 2 in dim 0 (scores 0, 0.5, 1); its value is t + 1 in every dim. */
  for (int t = 0; t < PAGE; ++t)
    for (int d = 0; d < HEAD_DIM; ++d) {
      k[t * HEAD_DIM + d] = bf16(d == 0 ? 0.5f * (float)t : 0.0f);
      v[t * HEAD_DIM + d] = bf16((float)(t + 1));
    }
  const int32_t kv_lens[1] = {TOKENS}, page_indptr[2] = {0, 1}, page_indices[1] = {0};

  padec_plan_options options = {.num_workers = 1};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&params, 1, &options, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "layout: %s\n", padec_last_message());
    return 1;
  }
  void *plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  void *workspace = aligned_alloc(256, (layout.workspace_bytes + 255) / 256 * 256 + 256);
  if (!plan || !workspace) return 1;
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.q = q;
  t.k_pages = k;
  t.v_pages = v;
  t.num_pages = 1;
  t.page_indptr = page_indptr;
  t.page_indices = page_indices;
  t.kv_lens = kv_lens;
  t.o = o;
  if (padec_plan_build(&params, &layout, kv_lens, plan, layout.plan_bytes) != PADEC_STATUS_OK ||
      padec_cpu_run(&params, &layout, plan, &t, workspace, layout.workspace_bytes) != PADEC_STATUS_OK) {
    fprintf(stderr, "run: %s\n", padec_last_message());
    return 1;
  }
  double weight_sum = 0.0, expected = 0.0;
  for (int token = 0; token < TOKENS; ++token) {
    const double w = exp(0.5 * token);
    weight_sum += w;
    expected += w * (token + 1);
  }
  expected /= weight_sum;
  for (int d = 0; d < HEAD_DIM; ++d)
    if (!(fabs(o[d] - expected) < 1e-3)) {
      fprintf(stderr, "o[%d] = %.6f, expected %.6f\n", d, (double)o[d], expected);
      return 1;
    }
  printf("padec %u: o = %.6f as expected\n", padec_version_number(), (double)o[0]);
  free(plan);
  free(workspace);
  return 0;
}
