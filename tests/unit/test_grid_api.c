/*
 * The grid path's API: padec_grid_layout_init and padec_cpu_run_grid reject every bad argument
 * with its status and a message naming it, and write nothing (layout, o, lse and workspace are
 * poisoned before each call and compared after it); padec_grid_recommended_splits follows its
 * documented rule. Results are checked against the oracle by tests/cpu/test_cpu_matrix.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_support.h"


static void expect(const char *what, padec_status got, padec_status want, const char *needle) {
  CHECK(got == want, "%s: got %s, want %s (%s)", what, padec_status_name(got),
        padec_status_name(want), padec_last_message());
  CHECK(strstr(padec_last_message(), needle) != NULL, "%s: message \"%s\" does not name \"%s\"",
        what, padec_last_message(), needle);
}

static padec_params base_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.page_size = 16;
  p.q_len = 2;
  return p;
}

static void layout_errors(void) {
  const padec_params p = base_params();
  padec_grid_layout layout, poison;
  memset(&poison, 0xa5, sizeof poison);
  layout = poison;
  expect("batch -1", padec_grid_layout_init(&p, -1, 4, 0, &layout), PADEC_STATUS_BAD_ARGUMENT, "batch");
  expect("splits 0", padec_grid_layout_init(&p, 4, 0, 0, &layout), PADEC_STATUS_BAD_ARGUMENT, "num_splits");
  expect("splits 1025", padec_grid_layout_init(&p, 4, 1025, 0, &layout), PADEC_STATUS_BAD_ARGUMENT,
         "num_splits");
  expect("partition 24", padec_grid_layout_init(&p, 4, 4, 24, &layout), PADEC_STATUS_BAD_ARGUMENT,
         "partition_tokens");
  expect("NULL layout", padec_grid_layout_init(&p, 4, 4, 0, NULL), PADEC_STATUS_NULL_POINTER, "layout");
  padec_params bad = p;
  bad.num_q_heads = 7;
  expect("bad heads", padec_grid_layout_init(&bad, 4, 4, 0, &layout), PADEC_STATUS_BAD_HEAD_COUNT,
         "num_q_heads");
  padec_params wide = p;
  wide.num_kv_heads = 4096;
  wide.num_q_heads = 4096;
  expect("too many blocks", padec_grid_layout_init(&wide, 1 << 24, 64, 0, &layout),
         PADEC_STATUS_SIZE_OVERFLOW, "blocks");
  CHECK(memcmp(&layout, &poison, sizeof layout) == 0, "a failing layout init wrote the layout");

  CHECK(padec_grid_layout_init(&p, 5, 3, 0, &layout) == PADEC_STATUS_OK, "%s", padec_last_message());
  const size_t rows = 5u * 3u * 2u;
  CHECK(layout.partition_tokens == 256 && layout.num_splits == 3, "defaults");
  CHECK(layout.partial_lse_offset >= sizeof(float) * rows * 8 * 64, "partial_o holds every split's rows");
  CHECK(layout.merge_counters_offset >= layout.partial_lse_offset + sizeof(float) * rows * 8,
        "partial_lse holds every split's rows");
  CHECK(layout.workspace_bytes >= layout.merge_counters_offset + sizeof(int32_t) * 5 * 2 &&
            layout.workspace_bytes % 256 == 0,
        "workspace holds the counters");
}

static void run_errors(void) {
  const padec_params p = base_params();
  const int32_t lens[4] = {40, 0, 300, 7};
  padec_case c;
  if (padec_case_init(&c, &p, 4, lens, 77) != 0) exit(1);
  padec_grid_layout layout;
  CHECK(padec_grid_layout_init(&c.params, 4, 3, 16, &layout) == PADEC_STATUS_OK, "%s", padec_last_message());
  unsigned char *o = malloc(c.o_bytes), *o_poison = malloc(c.o_bytes);
  const size_t lse_bytes = sizeof(float) * (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  float *lse = malloc(lse_bytes), *lse_poison = malloc(lse_bytes);
  unsigned char *ws = aligned_alloc(64, layout.workspace_bytes), *ws_poison = malloc(layout.workspace_bytes);
  if (!o || !o_poison || !lse || !lse_poison || !ws || !ws_poison) exit(1);
  memset(o_poison, 0x5a, c.o_bytes);
  memset(lse_poison, 0x5a, lse_bytes);
  memset(ws_poison, 0x5a, layout.workspace_bytes);
#define RESET()                                           \
  do {                                                    \
    memcpy(o, o_poison, c.o_bytes);                       \
    memcpy(lse, lse_poison, lse_bytes);                   \
    memcpy(ws, ws_poison, layout.workspace_bytes);        \
  } while (0)
#define UNTOUCHED(what)                                                                      \
  CHECK(memcmp(o, o_poison, c.o_bytes) == 0 && memcmp(lse, lse_poison, lse_bytes) == 0 &&      \
            memcmp(ws, ws_poison, layout.workspace_bytes) == 0,                                \
        "%s wrote an output", what)
  padec_tensors t = padec_case_tensors(&c, o, lse);

  RESET();
  padec_params other = c.params;
  other.head_dim = 128;
  expect("other params", padec_cpu_run_grid(&other, &layout, &t, ws, layout.workspace_bytes),
         PADEC_STATUS_PLAN_MISMATCH, "grid layout");
  UNTOUCHED("other params");
  RESET();
  expect("small workspace", padec_cpu_run_grid(&c.params, &layout, &t, ws, layout.workspace_bytes - 1),
         PADEC_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
  UNTOUCHED("small workspace");
  RESET();
  expect("NULL workspace of 0 bytes", padec_cpu_run_grid(&c.params, &layout, &t, NULL, 0),
         PADEC_STATUS_NULL_POINTER, "workspace is NULL");
  UNTOUCHED("NULL workspace of 0 bytes");
  RESET();
  expect("NULL tensors", padec_cpu_run_grid(&c.params, &layout, NULL, ws, layout.workspace_bytes),
         PADEC_STATUS_NULL_POINTER, "tensors");
  UNTOUCHED("NULL tensors");
  RESET();
  expect("misaligned workspace", padec_cpu_run_grid(&c.params, &layout, &t, ws + 4, layout.workspace_bytes),
         PADEC_STATUS_MISALIGNED_POINTER, "workspace");
  UNTOUCHED("misaligned workspace");
  RESET();
  const int32_t saved = c.page_indices[0];
  c.page_indices[0] = (int32_t)c.num_pages;
  expect("page id past the pool", padec_cpu_run_grid(&c.params, &layout, &t, ws, layout.workspace_bytes),
         PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "sequence 0");
  UNTOUCHED("page id past the pool");
  c.page_indices[0] = saved;
  /* A layout edited after padec_grid_layout_init: more splits than its workspace holds (the
   * executor would write partial rows past it), a partition size it cannot make, other offsets.
   * (Another valid partition size is a valid layout: it sizes nothing.) */
  static const struct {
    const char *what;
    int field; /* 0 num_splits, 1 partition_tokens, 2 partial_lse_offset, 3 workspace_bytes, 4 batch */
    int64_t value;
  } edits[] = {
      {"num_splits 4000", 0, 4000},       {"num_splits 0", 0, 0},          {"num_splits 4", 0, 4},
      {"partition_tokens 0", 1, 0},       {"partition_tokens 24", 1, 24},  {"partial_lse_offset 0", 2, 0},
      {"workspace_bytes 256", 3, 256},    {"batch 40", 4, 40},
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; ++i) {
    padec_grid_layout edited = layout;
    if (edits[i].field == 0) edited.num_splits = (int32_t)edits[i].value;
    if (edits[i].field == 1) edited.partition_tokens = (int32_t)edits[i].value;
    if (edits[i].field == 2) edited.partial_lse_offset = (size_t)edits[i].value;
    if (edits[i].field == 3) edited.workspace_bytes = (size_t)edits[i].value;
    if (edits[i].field == 4) edited.batch = (int32_t)edits[i].value;
    RESET();
    expect(edits[i].what, padec_cpu_run_grid(&c.params, &edited, &t, ws, layout.workspace_bytes),
           PADEC_STATUS_PLAN_MISMATCH, "grid layout");
    UNTOUCHED(edits[i].what);
  }
  RESET();
  CHECK(padec_cpu_run_grid(&c.params, &layout, &t, ws, layout.workspace_bytes) == PADEC_STATUS_OK, "%s",
        padec_last_message());
  padec_check_result result;
  CHECK(padec_check_output(&c, o, lse, &result) == 0 && result.pass, "grid output against the oracle");
#undef RESET
#undef UNTOUCHED
  free(o);
  free(o_poison);
  free(lse);
  free(lse_poison);
  free(ws);
  free(ws_poison);
  padec_case_free(&c);
}

static void count_log_call(void *user, padec_status status, const char *message) {
  (void)status;
  (void)message;
  *(int *)user += 1;
}

static void recommended_splits(void) {
  padec_params p = base_params();
  p.q_len = 1;
  /* ceil(264 / (batch x 2 KV heads)), within 1..64. */
  CHECK(padec_grid_recommended_splits(&p, 1, 264, 0) == 64, "batch 1: capped at 64");
  CHECK(padec_grid_recommended_splits(&p, 16, 264, 0) == 9, "batch 16: ceil(264 / 32)");
  CHECK(padec_grid_recommended_splits(&p, 200, 264, 0) == 1, "batch 200: 1");
  /* A window caps it at the partitions the window spans plus one. */
  p.window_left = 1000;
  CHECK(padec_grid_recommended_splits(&p, 1, 264, 256) == 5, "window 1000: ceil(1001 / 256) + 1");
  CHECK(padec_grid_recommended_splits(&p, 0, 264, 0) == 1, "empty batch: 1");
  /* It cannot fail: bad arguments give 1 (or the default partition) without a log call or a
   * message. */
  int log_calls = 0;
  padec_set_log_callback(count_log_call, &log_calls);
  CHECK(padec_grid_recommended_splits(&p, 1, 264, 17) == 5, "partition 17 counts as 256");
  CHECK(padec_grid_recommended_splits(&p, 1, 264, 1 << 20) == 5, "partition 2^20 counts as 256");
  CHECK(padec_grid_recommended_splits(&p, -5, 264, 0) == 1, "batch -5: 1");
  CHECK(padec_grid_recommended_splits(&p, 1, 0, 0) == 1, "0 workers: 1");
  padec_params bad = p;
  bad.head_dim = 100;
  CHECK(padec_grid_recommended_splits(&bad, 1, 264, 0) == 1, "head_dim 100: 1");
  CHECK(padec_grid_recommended_splits(NULL, 1, 264, 0) == 1, "params NULL: 1");
  padec_set_log_callback(NULL, NULL);
  CHECK(log_calls == 0, "%d log calls", log_calls);
  CHECK(padec_last_message()[0] == '\0', "a message was left: %s", padec_last_message());
}

int main(void) {
  layout_errors();
  run_errors();
  recommended_splits();
  if (test_failures) {
    fprintf(stderr, "test_grid_api: %d failures\n", test_failures);
    return 1;
  }
  printf("test_grid_api: passed\n");
  return 0;
}
