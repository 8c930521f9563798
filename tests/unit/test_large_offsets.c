/*
 * Index arithmetic past 4 GiB on the CPU: KV pools of 5 to 130 GiB (sparse mappings, only the
 * used pages touched; tests/support/large_case.h), with the block table's pages at the far end
 * of the pool, so that element offsets pass 2^31 and 2^32 and byte offsets pass 2^32; fp8
 * per-token scale indices past 2^31; q and o token strides past 2^31 elements. Each case runs
 * padec_cpu_run with and without splits and is checked against the oracle, which reads the same
 * pools. At the boundary, padec_validate_kv_host and padec_cpu_run accept the pool's last page
 * and reject page id num_pages (and a pool one page short) without writing any output.
 *
 * Exit 77 (skipped) when the kernel refuses sparse mappings of that size (e.g.
 * vm.overcommit_memory=2 or a ulimit -v). A single case whose mapping is refused is reported and
 * skipped while the others run, and the test then exits 77 too: a pass means every case ran.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/large_case.h"
#include "test_support.h"




/* o (with its strides) for every valid row is all 0xff bytes: nothing was written. */
static int o_untouched(const large_case *lc, const void *o, const float *lse) {
  const padec_params *p = &lc->c.params;
  const size_t eb = p->o_dtype == PADEC_DTYPE_FP32 ? 4 : 2;
  const int64_t row_elems = (int64_t)p->num_q_heads * p->head_dim;
  const int64_t ost = lc->o_stride_token ? lc->o_stride_token : row_elems;
  const int64_t osh = lc->o_stride_head ? lc->o_stride_head : p->head_dim;
  for (int64_t tok = 0; tok < lc->c.num_tokens; ++tok)
    for (int32_t h = 0; h < p->num_q_heads; ++h) {
      const unsigned char *row = (const unsigned char *)o + (size_t)(tok * ost + h * osh) * eb;
      for (size_t i = 0; i < (size_t)p->head_dim * eb; ++i)
        if (row[i] != 0xff) return 0;
    }
  const unsigned char *bytes = (const unsigned char *)lse;
  for (size_t i = 0; i < sizeof(float) * (size_t)lc->c.num_tokens * (size_t)p->num_q_heads; ++i)
    if (bytes[i] != 0xff) return 0;
  return 1;
}

static void poison_o(const large_case *lc, void *o, float *lse) {
  const padec_params *p = &lc->c.params;
  const size_t eb = p->o_dtype == PADEC_DTYPE_FP32 ? 4 : 2;
  const int64_t row_elems = (int64_t)p->num_q_heads * p->head_dim;
  const int64_t ost = lc->o_stride_token ? lc->o_stride_token : row_elems;
  const int64_t osh = lc->o_stride_head ? lc->o_stride_head : p->head_dim;
  for (int64_t tok = 0; tok < lc->c.num_tokens; ++tok)
    for (int32_t h = 0; h < p->num_q_heads; ++h)
      memset((char *)o + (size_t)(tok * ost + h * osh) * eb, 0xff, (size_t)p->head_dim * eb);
  memset(lse, 0xff, sizeof(float) * (size_t)lc->c.num_tokens * (size_t)p->num_q_heads);
}

/* Runs the plan of options on the case and checks it against the oracle. */
static void run_and_check(const char *label, const large_case *lc,
                          const padec_plan_options *options, void *o, void *o_packed, float *lse,
                          int boundary_checks) {
  const padec_case *c = &lc->c;
  padec_plan_layout layout;
  padec_status status = padec_plan_layout_init(&c->params, c->batch, options, &layout);
  CHECK(status == PADEC_STATUS_OK, "%s: layout: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) return;
  void *plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  void *workspace = aligned_alloc(256, (layout.workspace_bytes + 255) / 256 * 256);
  if (!plan || !workspace) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  status = padec_plan_build(&c->params, &layout, c->kv_lens, plan, layout.plan_bytes);
  CHECK(status == PADEC_STATUS_OK, "%s: build: %s", label, padec_last_message());
  padec_tensors t = large_case_tensors(lc, o, lse);

  if (status == PADEC_STATUS_OK && boundary_checks) {
    CHECK(padec_validate_kv_host(&c->params, c->batch, &t) == PADEC_STATUS_OK,
          "%s: the pool's last page is rejected: %s", label, padec_last_message());
    padec_tensors short_pool = t;
    short_pool.num_pages = c->num_pages - 1;
    poison_o(lc, o, lse);
    status =
        padec_cpu_run(&c->params, &layout, plan, &short_pool, workspace, layout.workspace_bytes);
    CHECK(status == PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE,
          "%s: a pool one page short gives %s, want PAGE_INDEX_OUT_OF_RANGE", label,
          padec_status_name(status));
    CHECK(o_untouched(lc, o, lse), "%s: the rejected run wrote o or lse", label);
    const int32_t rows = c->page_indptr[c->batch];
    int32_t *indices = malloc(sizeof(int32_t) * (size_t)rows);
    if (!indices) exit(1);
    memcpy(indices, c->page_indices, sizeof(int32_t) * (size_t)rows);
    int32_t at = -1; /* the last sequence's first used page */
    for (int32_t b = c->batch - 1; b >= 0 && at < 0; --b)
      if (c->kv_lens[b] > 0) at = c->page_indptr[b];
    indices[at] = (int32_t)c->num_pages;
    padec_tensors past_end = t;
    past_end.page_indices = indices;
    status = padec_cpu_run(&c->params, &layout, plan, &past_end, workspace, layout.workspace_bytes);
    CHECK(status == PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "%s: page id num_pages = %lld gives %s",
          label, (long long)c->num_pages, padec_status_name(status));
    CHECK(o_untouched(lc, o, lse), "%s: the rejected run wrote o or lse", label);
    free(indices);
  }

  if (status == PADEC_STATUS_OK || boundary_checks) {
    poison_o(lc, o, lse);
    status = padec_cpu_run(&c->params, &layout, plan, &t, workspace, layout.workspace_bytes);
    CHECK(status == PADEC_STATUS_OK, "%s: padec_cpu_run: %s", label, padec_last_message());
    if (status == PADEC_STATUS_OK) {
      if (o != o_packed) large_case_pack_o(lc, o, o_packed);
      padec_check_result result;
      const int rc = padec_check_output(c, o_packed, lse, &result);
      CHECK(rc == 0 && result.pass, "%s: output against the oracle", label);
      if (rc != 0 || !result.pass) padec_check_print(stderr, label, c, rc == 0 ? &result : NULL);
    }
  }
  free(plan);
  free(workspace);
}

/* Returns 1 when the case ran, 0 when its mapping was refused. */
static int run_spec(const large_spec *s, uint64_t seed) {
  large_case lc;
  char err[256];
  const int rc =
      large_case_init(&lc, &s->params, s->batch, s->lens, s->num_pages, s->kv_page_stride,
                      s->q_stride_token, s->q_stride_head, s->o_stride_token, s->o_stride_head,
                      seed, err, sizeof err);
  if (rc == LARGE_CASE_NO_MAPPING) {
    printf("  %-44s skipped: %s\n", s->label, err);
    return 0;
  }
  if (rc != LARGE_CASE_OK) {
    fprintf(stderr, "%s: case: %s\n", s->label, err);
    exit(1);
  }
  const int64_t max_element = large_case_max_pool_element(&lc);
  const int64_t max_scale = large_case_max_scale_index(&lc);
  const size_t elem_bytes =
      lc.page_bytes /
      ((size_t)s->params.page_size * (size_t)s->params.num_kv_heads * (size_t)s->params.head_dim);
  printf("  %-44s pool %6.1f GiB, last element %" PRId64 " (byte %.2f GiB)", s->label,
         (double)lc.c.pool_bytes / 0x1p30, max_element,
         (double)max_element * (double)elem_bytes / 0x1p30);
  if (max_scale >= 0) printf(", scale index %" PRId64, max_scale);
  printf("\n");
  /* The case must reach what it claims, or it tests nothing. */
  CHECK(max_element >= s->min_element, "%s: reaches element %" PRId64 " only", s->label,
        max_element);
  CHECK(s->min_scale == 0 || max_scale >= s->min_scale, "%s: reaches scale index %" PRId64 " only",
        s->label, max_scale);

  const int strided = lc.o_stride_token || lc.o_stride_head;
  void *o_packed = malloc(lc.c.o_bytes);
  void *o = strided ? large_map(lc.o_view_bytes) : o_packed;
  float *lse = malloc(sizeof(float) * (size_t)lc.c.num_tokens * (size_t)lc.c.params.num_q_heads);
  if (!o_packed || !o || !lse) {
    fprintf(stderr, "%s: no memory for o\n", s->label);
    exit(1);
  }
  const int32_t heads = lc.c.params.num_kv_heads;
  const padec_plan_options split = {97 * heads + 3, 16, PADEC_POLICY_EVEN};
  const padec_plan_options direct = {heads, 0, PADEC_POLICY_EVEN};
  char label[160];
  snprintf(label, sizeof label, "%s [split]", s->label);
  run_and_check(label, &lc, &split, o, o_packed, lse, 1);
  snprintf(label, sizeof label, "%s [direct]", s->label);
  run_and_check(label, &lc, &direct, o, o_packed, lse, 0);
  if (strided) large_unmap(o, lc.o_view_bytes);
  free(o_packed);
  free(lse);
  large_case_free(&lc);
  return 1;
}

int main(void) {
  int table_size;
  const large_spec *specs = large_specs(&table_size);
  const int count = table_size;
  int ran = 0;
  printf("test_large_offsets: %d cases\n", count);
  for (int i = 0; i < count; ++i) ran += run_spec(&specs[i], 0x1a76e000u + (uint64_t)i);
  return large_exit_status("test_large_offsets", test_failures, ran, count);
}
