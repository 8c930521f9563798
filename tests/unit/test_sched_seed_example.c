/*
 * The worked examples of the seed spec (reference/seed-spec.md, section 1.5), reproduced exactly
 * by the `even` policy through the public plan API.
 *
 * Example 1: contexts [1027, 700, 3000], q_len 1, gqa 8, one KV head, 8 workers, partitions of
 * 256 tokens. P = [5, 3, 12], S = 20, so bins 0-3 hold 3 partitions and bins 4-7 hold 2.
 * Example 2: three sequences of 1027 tokens, q_len 4, 240 workers (the MI308X oversubscribed
 * grid): S = 15 < 240, so 15 one-partition works in 3 groups of 5, partial rows 0, 4, ..., 56.
 *
 * padec's reduce_indptr has batch + 1 entries; entries past the last group repeat its end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"
#include "test_support.h"


static void check_array(const char *what, const int32_t *got, const int32_t *want, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    if (got[i] != want[i]) {
      fprintf(stderr, "%s[%d] = %d, want %d\n  got: ", what, i, got[i], want[i]);
      for (int32_t j = 0; j < n; ++j) fprintf(stderr, "%d ", got[j]);
      fprintf(stderr, "\n  want:");
      for (int32_t j = 0; j < n; ++j) fprintf(stderr, " %d", want[j]);
      fprintf(stderr, "\n");
      test_failures += 1;
      return;
    }
  }
}

typedef struct expected_work {
  int32_t worker;
  int32_t batch, loc, kv_start, kv_end;
} expected_work;

/* Builds the plan and checks every array against the expected values. */
static void run_example(const char *name, const int32_t *kv_lens, int32_t batch, int32_t q_len,
                        int32_t gqa, int32_t workers, const int32_t *want_work_indptr,
                        const expected_work *works, int32_t num_works,
                        const int32_t *want_reduce_indptr, int32_t num_groups,
                        const int32_t *want_final_map, const int32_t *want_partial_map,
                        int32_t num_slots, const int32_t *want_partition_indptr,
                        int32_t want_max_works, int32_t want_max_slots) {
  fprintf(stderr, "example %s\n", name);
  padec_params params;
  memset(&params, 0, sizeof params);
  params.num_kv_heads = 1;
  params.num_q_heads = gqa;
  params.head_dim = 128;
  params.page_size = 16;
  params.q_len = q_len;
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = workers;
  options.partition_tokens = 256;
  options.policy = PADEC_POLICY_EVEN;

  padec_plan_layout layout;
  padec_status st = padec_plan_layout_init(&params, batch, &options, &layout);
  CHECK(st == PADEC_STATUS_OK, "layout_init: %s (%s)", padec_status_name(st), padec_last_message());
  if (st != PADEC_STATUS_OK) return;
  CHECK(layout.max_works == want_max_works, "max_works %d, want %d", layout.max_works,
        want_max_works);
  CHECK(layout.max_partial_slots == want_max_slots, "max_partial_slots %d, want %d",
        layout.max_partial_slots, want_max_slots);
  CHECK(layout.max_partial_rows == want_max_slots * q_len, "max_partial_rows %d, want %d",
        layout.max_partial_rows, want_max_slots * q_len);

  void *plan = test_alloc(layout.plan_bytes);
  memset(plan, 0x5a, layout.plan_bytes);
  st = padec_plan_build(&params, &layout, kv_lens, plan, layout.plan_bytes);
  CHECK(st == PADEC_STATUS_OK, "build: %s (%s)", padec_status_name(st), padec_last_message());
  if (st != PADEC_STATUS_OK) {
    free(plan);
    return;
  }
  padec_plan_view v;
  st = padec_plan_view_init(&layout, plan, &v);
  CHECK(st == PADEC_STATUS_OK, "view_init: %s", padec_status_name(st));
  if (st != PADEC_STATUS_OK) {
    free(plan);
    return;
  }

  const padec_plan_header *h = v.header;
  CHECK(h->magic == PADEC_PLAN_MAGIC, "magic %#x", (unsigned)h->magic);
  CHECK(h->batch == batch && h->num_workers == workers && h->num_kv_heads == 1 &&
            h->q_len == q_len && h->partition_tokens == 256 && h->policy == PADEC_POLICY_EVEN,
        "header echo: batch %d workers %d heads %d q_len %d partition %d policy %d", h->batch,
        h->num_workers, h->num_kv_heads, h->q_len, h->partition_tokens, h->policy);
  CHECK(h->num_works == num_works, "num_works %d, want %d", h->num_works, num_works);
  CHECK(h->num_partial_slots == num_slots, "num_partial_slots %d, want %d", h->num_partial_slots,
        num_slots);
  CHECK(h->num_groups == num_groups, "num_groups %d, want %d", h->num_groups, num_groups);
  CHECK(h->num_partitions == want_partition_indptr[batch], "num_partitions %d, want %d",
        h->num_partitions, want_partition_indptr[batch]);

  check_array("work_indptr", v.work_indptr, want_work_indptr, workers + 1);
  check_array("partition_indptr", v.partition_indptr, want_partition_indptr, batch + 1);
  check_array("reduce_indptr", v.reduce_indptr, want_reduce_indptr, batch + 1);
  check_array("reduce_final_map", v.reduce_final_map, want_final_map, 2 * num_groups);
  check_array("reduce_partial_map", v.reduce_partial_map, want_partial_map, num_slots);

  const int32_t q_head_range = (gqa << 16) | 0;
  for (int32_t i = 0; i < num_works; ++i) {
    const expected_work *w = &works[i];
    int32_t want[8] = {w->batch,          w->loc, w->batch * q_len, (w->batch + 1) * q_len,
                       w->kv_start,       w->kv_end, 0,           q_head_range};
    const int32_t *row = v.work_info + 8 * (int64_t)i;
    char what[64];
    snprintf(what, sizeof what, "work_info[%d]", i);
    check_array(what, row, want, 8);
    CHECK(want_work_indptr[w->worker] <= i && i < want_work_indptr[w->worker + 1],
          "work %d expected in worker %d", i, w->worker);
  }
  /* Unused capacity is zero. */
  for (int64_t i = 8 * (int64_t)num_works; i < 8 * (int64_t)layout.max_works; ++i)
    CHECK(v.work_info[i] == 0, "work_info element %" PRId64 " past num_works is %d", i,
          v.work_info[i]);
  for (int32_t i = num_slots; i < layout.max_partial_slots; ++i)
    CHECK(v.reduce_partial_map[i] == 0, "reduce_partial_map[%d] past num_slots is %d", i,
          v.reduce_partial_map[i]);
  for (int32_t i = 2 * num_groups; i < 2 * batch; ++i)
    CHECK(v.reduce_final_map[i] == 0, "reduce_final_map element %d past num_groups is %d", i,
          v.reduce_final_map[i]);
  free(plan);
}

static void example_1(void) {
  const int32_t kv_lens[3] = {1027, 700, 3000};
  const int32_t work_indptr[9] = {0, 1, 3, 5, 6, 7, 8, 9, 10};
  const expected_work works[10] = {
      {0, 0, 0, 0, 3},  {1, 0, 1, 3, 5},  {1, 1, 2, 5, 6},  {2, 1, 3, 6, 8},
      {2, 2, 4, 8, 9},  {3, 2, 5, 9, 12}, {4, 2, 6, 12, 14}, {5, 2, 7, 14, 16},
      {6, 2, 8, 16, 18}, {7, 2, 9, 18, 20}};
  const int32_t reduce_indptr[4] = {0, 2, 4, 10};
  const int32_t final_map[6] = {0, 1, 1, 2, 2, 3};
  const int32_t partial_map[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const int32_t partition_indptr[4] = {0, 5, 8, 20};
  /* Bounds: works 1 * (3 + 8 - 1) = 10, slots min(2 * 7, 3 + 7) = 10: both reached exactly. */
  run_example("1: [1027, 700, 3000], q_len 1, gqa 8, 8 workers", kv_lens, 3, 1, 8, 8,
              work_indptr, works, 10, reduce_indptr, 3, final_map, partial_map, 10,
              partition_indptr, 10, 10);
}

static void example_2(void) {
  enum { workers = 240, q_len = 4 };
  const int32_t kv_lens[3] = {1027, 1027, 1027};
  int32_t work_indptr[workers + 1];
  for (int32_t c = 0; c <= workers; ++c) work_indptr[c] = c < 15 ? c : 15;
  expected_work works[15];
  int32_t partial_map[15];
  for (int32_t i = 0; i < 15; ++i) {
    works[i].worker = i;
    works[i].batch = i / 5;
    works[i].loc = i * q_len;
    works[i].kv_start = i;
    works[i].kv_end = i + 1;
    partial_map[i] = i * q_len;
  }
  const int32_t reduce_indptr[4] = {0, 5, 10, 15};
  const int32_t final_map[6] = {0, 4, 4, 8, 8, 12};
  const int32_t partition_indptr[4] = {0, 5, 10, 15};
  /* Bounds: works 3 + 239 = 242, slots min(2 * 239, 242) = 242. */
  run_example("2: 3 x 1027, q_len 4, gqa 8, 240 workers", kv_lens, 3, q_len, 8, workers,
              work_indptr, works, 15, reduce_indptr, 3, final_map, partial_map, 15,
              partition_indptr, 242, 242);
}

int main(void) {
  example_1();
  example_2();
  if (test_failures) {
    fprintf(stderr, "test_sched_seed_example: %d failure(s)\n", test_failures);
    return 1;
  }
  fprintf(stderr, "test_sched_seed_example: ok\n");
  return 0;
}
