/*
 * Bad inputs that tests/unit/test_api_errors.c does not try, so that every entry of the bad-input
 * table in docs/TESTING.md has a test:
 *   - params at their limits: more than 4096 q heads, more than 64 query rows (q_len x group) per
 *     KV head;
 *   - padec_validate_kv_host on its own: its pointer and batch checks, the first offending
 *     sequence named in the message when several are bad, page ids past kv_len not checked;
 *   - padec_cpu_run with a plan built for other kv_lens (PLAN_MISMATCH, nothing written);
 *   - padec_plan_view_init: NULL arguments, a buffer that is not a plan;
 *   - a plan whose body was edited after its build (each index array and work-item field in
 *     turn): padec_plan_view_init, padec_cpu_run (nothing written) and padec_cuda_upload_plan
 *     refuse it with PLAN_MISMATCH naming the element;
 *   - the CUDA entry points' host-side checks: in a build without CUDA every one returns
 *     NOT_BUILT_WITH_CUDA; in a CUDA build padec_cuda_run, padec_cuda_upload_plan and
 *     padec_cuda_device_query reject bad arguments before touching the device (every call here
 *     must fail its checks, so nothing is launched; host buffers stand in for device memory).
 *     padec_cuda_validate_kv's host-side checks are in tests/cuda/test_cuda_validate.c, which
 *     runs them with or without a GPU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "padec_cuda.h"
#include "test_support.h"


static void expect(const char *what, padec_status got, padec_status want, const char *needle) {
  CHECK(got == want, "%s: got %s, want %s (%s)", what, padec_status_name(got),
        padec_status_name(want), padec_last_message());
  if (got != PADEC_STATUS_OK && needle)
    CHECK(strstr(padec_last_message(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
          padec_last_message(), needle);
}

static padec_params valid_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.page_size = 16;
  return p;
}

static void *alloc_zeroed(size_t bytes) {
  void *p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  memset(p, 0, (bytes + 255) / 256 * 256 + 256);
  return p;
}

static void test_param_limits(void) {
  padec_params p = valid_params();
  p.num_kv_heads = 1;
  p.num_q_heads = 4097;
  expect("4097 q heads", padec_params_validate(&p), PADEC_STATUS_BAD_HEAD_COUNT, "num_q_heads");
  p.num_kv_heads = 64;
  p.num_q_heads = 4096; /* group 64, q_len 1: 64 rows, the limit */
  expect("4096 q heads, group 64", padec_params_validate(&p), PADEC_STATUS_OK, NULL);
  p.q_len = 2;
  expect("group 64, q_len 2", padec_params_validate(&p), PADEC_STATUS_BAD_HEAD_COUNT, "q_len");
  p = valid_params();
  p.num_kv_heads = 1;
  p.num_q_heads = 17;
  p.q_len = 4;
  expect("group 17, q_len 4", padec_params_validate(&p), PADEC_STATUS_BAD_HEAD_COUNT, "q_len");
  p.num_q_heads = 16;
  expect("group 16, q_len 4", padec_params_validate(&p), PADEC_STATUS_OK, NULL);
  padec_plan_options options = {4, 0, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  p.num_q_heads = 17;
  expect("layout with group 17, q_len 4", padec_plan_layout_init(&p, 1, &options, &layout),
         PADEC_STATUS_BAD_HEAD_COUNT, "q_len");
}

static void test_validate_kv_host(void) {
  padec_params p = valid_params(); /* pages of 16 tokens */
  int32_t indptr[5] = {0, 2, 3, 5, 6};
  int32_t indices[6] = {0, 1, 2, 3, 4, 5};
  int32_t lens[4] = {32, 16, 17, 0};
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.page_indptr = indptr;
  t.page_indices = indices;
  t.kv_lens = lens;
  t.num_pages = 6;
  expect("valid block table", padec_validate_kv_host(&p, 4, &t), PADEC_STATUS_OK, NULL);
  expect("params NULL", padec_validate_kv_host(NULL, 4, &t), PADEC_STATUS_NULL_POINTER, "params");
  padec_params bad = p;
  bad.page_size = 3;
  expect("bad params", padec_validate_kv_host(&bad, 4, &t), PADEC_STATUS_BAD_PAGE_SIZE,
         "page_size");
  expect("tensors NULL", padec_validate_kv_host(&p, 4, NULL), PADEC_STATUS_NULL_POINTER, "tensors");
  expect("batch -1", padec_validate_kv_host(&p, -1, &t), PADEC_STATUS_BAD_ARGUMENT, "batch");
  padec_tensors empty;
  memset(&empty, 0, sizeof empty);
  expect("batch 0, no arrays", padec_validate_kv_host(&p, 0, &empty), PADEC_STATUS_OK, NULL);
  padec_tensors no_lens = t;
  no_lens.kv_lens = NULL;
  expect("kv_lens NULL", padec_validate_kv_host(&p, 4, &no_lens), PADEC_STATUS_NULL_POINTER,
         "kv_lens");

  /* The first offending sequence is the one named, whatever comes after it. */
  lens[2] = 33; /* sequence 2 has two pages: 32 tokens at most */
  lens[3] = -5;
  expect("sequences 2 and 3 bad", padec_validate_kv_host(&p, 4, &t),
         PADEC_STATUS_KV_LEN_EXCEEDS_PAGES, "sequence 2");
  indices[2] = 6; /* sequence 1's only page, one past the pool */
  expect("sequence 1 page, sequence 2 length", padec_validate_kv_host(&p, 4, &t),
         PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "sequence 1");
  indices[2] = 2;
  lens[2] = 17;
  lens[3] = 0;
  /* Pages past kv_len are never read, so they are not checked: -1 padding is allowed. */
  indices[4] = -1; /* sequence 2's second page is used (17 tokens) */
  expect("used padding page", padec_validate_kv_host(&p, 4, &t),
         PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "sequence 2");
  lens[2] = 16;
  expect("unused padding page -1", padec_validate_kv_host(&p, 4, &t), PADEC_STATUS_OK, NULL);
  indices[5] = INT32_MIN; /* sequence 3 is empty: its page is never read */
  expect("empty sequence's page INT32_MIN", padec_validate_kv_host(&p, 4, &t), PADEC_STATUS_OK,
         NULL);
  t.num_pages = (int64_t)1 << 40; /* pools of more than 2^31 pages are fine */
  expect("num_pages 2^40", padec_validate_kv_host(&p, 4, &t), PADEC_STATUS_OK, NULL);

  /* A sequence whose pages end past page_indices (page_indptr[batch] entries) is refused before
   * its page ids are read: here 1000 slots of a 5-entry array (ASan catches a read). */
  int32_t *short_indices = malloc(sizeof(int32_t) * 5);
  if (!short_indices) exit(1);
  for (int i = 0; i < 5; ++i) short_indices[i] = i;
  int32_t past_indptr[3] = {0, 1000, 5};
  int32_t past_lens[2] = {16000, 0};
  padec_tensors past = t;
  past.page_indptr = past_indptr;
  past.page_indices = short_indices;
  past.kv_lens = past_lens;
  expect("pages past page_indices", padec_validate_kv_host(&p, 2, &past), PADEC_STATUS_BAD_ARGUMENT,
         "page_indptr[1] = 1000 is past page_indptr[2] = 5");
  /* A table that names more page ids than page_indices holds, when its length is given: refused
   * before any is read (the Python binding always gives it). Here page_indptr[batch] = 10 of a
   * 5-entry array; without num_page_indices the table is trusted. */
  int32_t long_indptr[3] = {0, 5, 10};
  int32_t long_lens[2] = {80, 80};
  int32_t *ten_slots = malloc(sizeof(int32_t) * 10);
  if (!ten_slots) exit(1);
  for (int i = 0; i < 10; ++i) ten_slots[i] = i % 5;
  padec_tensors longer = t;
  longer.page_indptr = long_indptr;
  longer.page_indices = short_indices;
  longer.kv_lens = long_lens;
  longer.num_page_indices = 5;
  expect("page_indptr[batch] past num_page_indices", padec_validate_kv_host(&p, 2, &longer),
         PADEC_STATUS_BAD_ARGUMENT, "page_indptr[2] = 10 page ids, but tensors.num_page_indices = 5");
  longer.page_indices = ten_slots;
  longer.num_page_indices = 10;
  expect("page_indptr[batch] = num_page_indices", padec_validate_kv_host(&p, 2, &longer), PADEC_STATUS_OK,
         NULL);
  longer.num_page_indices = 0;
  expect("num_page_indices 0: not checked", padec_validate_kv_host(&p, 2, &longer), PADEC_STATUS_OK, NULL);
  longer.num_page_indices = -1;
  expect("num_page_indices -1", padec_validate_kv_host(&p, 2, &longer), PADEC_STATUS_BAD_ARGUMENT,
         "tensors.num_page_indices = -1");
  free(ten_slots);
  free(short_indices);
}

/* A plan built for lengths with other partition counts is refused before anything is written. */
static void test_plan_for_other_lengths(void) {
  padec_params params = valid_params();
  const int32_t lens[3] = {100, 40, 7};
  padec_case c;
  if (padec_case_init(&c, &params, 3, lens, 0x7a11) != 0) exit(1);
  padec_plan_options options = {6, 16, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&c.params, 3, &options, &layout) != PADEC_STATUS_OK) exit(1);
  void *plan = alloc_zeroed(layout.plan_bytes);
  void *workspace = alloc_zeroed(layout.workspace_bytes);
  void *o = alloc_zeroed(c.o_bytes);
  const size_t lse_bytes = sizeof(float) * (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  float *lse = alloc_zeroed(lse_bytes);
  void *o_before = alloc_zeroed(c.o_bytes);
  const int32_t other[3] = {100, 40, 60}; /* 60 tokens: 4 partitions of 16, not 1 */
  expect("build for other lengths",
         padec_plan_build(&c.params, &layout, other, plan, layout.plan_bytes), PADEC_STATUS_OK,
         NULL);
  padec_tensors t = padec_case_tensors(&c, o, lse);
  padec_case_poison(&c, o, lse);
  memcpy(o_before, o, c.o_bytes);
  expect("run with a plan for other kv_lens",
         padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes),
         PADEC_STATUS_PLAN_MISMATCH, "sequence 2");
  CHECK(memcmp(o, o_before, c.o_bytes) == 0, "the refused run wrote o");

  padec_plan_view view;
  expect("view_init NULL plan", padec_plan_view_init(&layout, NULL, &view),
         PADEC_STATUS_NULL_POINTER, "plan");
  memset(plan, 0, layout.plan_bytes);
  expect("view_init of zeros", padec_plan_view_init(&layout, plan, &view),
         PADEC_STATUS_PLAN_MISMATCH, "plan");
  free(plan);
  free(workspace);
  free(o);
  free(lse);
  free(o_before);
  padec_case_free(&c);
}

/* A case, its plan as built (good), a copy to corrupt (plan), and what a run needs. */
typedef struct corrupt_fixture {
  padec_case c;
  padec_plan_layout layout;
  void *good, *plan, *workspace, *o, *o_before;
  float *lse;
  padec_tensors tensors;
} corrupt_fixture;

static void corrupt_fixture_init(corrupt_fixture *f, const padec_params *params, int32_t batch,
                                 const int32_t *lens, uint64_t seed,
                                 const padec_plan_options *options) {
  if (padec_case_init(&f->c, params, batch, lens, seed) != 0) exit(1);
  if (padec_plan_layout_init(&f->c.params, batch, options, &f->layout) != PADEC_STATUS_OK) exit(1);
  f->good = alloc_zeroed(f->layout.plan_bytes);
  f->plan = alloc_zeroed(f->layout.plan_bytes);
  f->workspace = alloc_zeroed(f->layout.workspace_bytes);
  f->o = alloc_zeroed(f->c.o_bytes);
  f->o_before = alloc_zeroed(f->c.o_bytes);
  f->lse = alloc_zeroed(sizeof(float) * (size_t)f->c.num_tokens * (size_t)f->c.params.num_q_heads);
  f->tensors = padec_case_tensors(&f->c, f->o, f->lse);
  expect("build", padec_plan_build(&f->c.params, &f->layout, lens, f->good, f->layout.plan_bytes),
         PADEC_STATUS_OK, NULL);
  memcpy(f->plan, f->good, f->layout.plan_bytes);
}

static void corrupt_fixture_free(corrupt_fixture *f) {
  free(f->good);
  free(f->plan);
  free(f->workspace);
  free(f->o);
  free(f->o_before);
  free(f->lse);
  padec_case_free(&f->c);
}

/* f->plan refused by padec_plan_view_init, padec_cpu_run (o not written) and, with CUDA,
 * padec_cuda_upload_plan (on the host, before any copy), each naming needle. */
static void expect_plan_refused(corrupt_fixture *f, const char *what, const char *needle) {
  char label[200];
  padec_plan_view view;
  snprintf(label, sizeof label, "view_init, %s", what);
  expect(label, padec_plan_view_init(&f->layout, f->plan, &view), PADEC_STATUS_PLAN_MISMATCH,
         needle);
  padec_case_poison(&f->c, f->o, f->lse);
  memcpy(f->o_before, f->o, f->c.o_bytes);
  snprintf(label, sizeof label, "cpu_run, %s", what);
  expect(label,
         padec_cpu_run(&f->c.params, &f->layout, f->plan, &f->tensors, f->workspace,
                       f->layout.workspace_bytes),
         PADEC_STATUS_PLAN_MISMATCH, needle);
  CHECK(memcmp(f->o, f->o_before, f->c.o_bytes) == 0, "the refused run (%s) wrote o", what);
#ifdef PADEC_HAVE_CUDA
  /* `o` stands in for the device buffer. */
  snprintf(label, sizeof label, "upload_plan, %s", what);
  expect(label, padec_cuda_upload_plan(&f->layout, f->plan, f->o, NULL),
         PADEC_STATUS_PLAN_MISMATCH, needle);
#endif
}

/* One value of a built plan changed, and the part of the message that names it. */
typedef struct plan_corruption {
  const char *what;
  size_t array_offset; /* a padec_plan_layout offset field's value */
  int32_t index;       /* int32 element within that array */
  int32_t value;
  const char *needle;
} plan_corruption;

/* A plan edited after its build: padec_plan_view_init, padec_cpu_run (nothing written) and
 * padec_cuda_upload_plan (with CUDA) refuse it, naming the array and element, instead of using its
 * values as indices, and a plan whose split items miss a (slot, KV head) of a group. The plan splits (6 workers over 2 KV heads, lengths 100/40/7, partitions of
 * 16), so it has partial slots and reduce groups to corrupt. */
static void test_corrupt_plan_body(void) {
  padec_params params = valid_params();
  const int32_t lens[3] = {100, 40, 7};
  const padec_plan_options options = {6, 16, PADEC_POLICY_EVEN};
  corrupt_fixture f;
  corrupt_fixture_init(&f, &params, 3, lens, 0x7a12, &options);
  const padec_plan_layout layout = f.layout;
  const void *good = f.good;
  const padec_plan_header *h = good;
  CHECK(h->num_partial_slots >= 2 && h->num_groups >= 1, "the plan should split: %d slots, %d groups",
        h->num_partial_slots, h->num_groups);
  /* The first split item, and a direct one. */
  const int32_t *info = (const int32_t *)((const char *)good + layout.work_info_offset);
  int32_t split = -1, direct = -1;
  for (int32_t w = 0; w < h->num_works; ++w) {
    if (info[8 * w + 1] >= 0 && split < 0) split = w;
    if (info[8 * w + 1] < 0 && direct < 0) direct = w;
  }
  /* A split item of another sequence: its slot belongs to another reduce group. */
  int32_t other_split = -1;
  for (int32_t w = 0; w < h->num_works; ++w)
    if (split >= 0 && info[8 * w + 1] >= 0 && info[8 * w] != info[8 * split]) other_split = w;
  /* Another slot of the split item's own group (its sequence's other piece, in any head). */
  int32_t sibling = -1;
  for (int32_t w = 0; w < h->num_works; ++w)
    if (split >= 0 && info[8 * w + 1] >= 0 && info[8 * w] == info[8 * split] &&
        info[8 * w + 1] != info[8 * split + 1])
      sibling = w;
  CHECK(split >= 0 && direct >= 0 && other_split >= 0 && sibling >= 0,
        "the plan should hold direct items and split items of two sequences");
  if (split < 0 || direct < 0 || other_split < 0 || sibling < 0)
    split = direct = other_split = sibling = 0;
  const plan_corruption cases[] = {
      {"work_indptr start", layout.work_indptr_offset, 0, 1, "work_indptr[0]"},
      {"work_indptr end", layout.work_indptr_offset, layout.num_workers, 1000, "work_indptr[6]"},
      {"work_indptr decreasing", layout.work_indptr_offset, 1, -1, "work_indptr[1]"},
      {"partition_indptr end", layout.partition_indptr_offset, 3, 1 << 20, "partition_indptr[3]"},
      {"reduce_indptr end", layout.reduce_indptr_offset, 3, 1 << 20, "reduce_indptr[3]"},
      {"reduce_final_map rows", layout.reduce_final_map_offset, 0, 1 << 20, "reduce_final_map[0]"},
      {"reduce_partial_map row", layout.reduce_partial_map_offset, 0, 1 << 20,
       "reduce_partial_map[0]"},
      {"sequence", layout.work_info_offset, 8 * direct, 1 << 20, "outside the batch"},
      {"rows", layout.work_info_offset, 8 * direct + 2, 1 << 20, "rows"},
      {"partitions", layout.work_info_offset, 8 * direct + 5, 1 << 20, "partitions"},
      {"kv_offset", layout.work_info_offset, 8 * direct + 6, 3, "kv_offset"},
      {"query heads", layout.work_info_offset, 8 * direct + 7, (200 << 16) | 196, "query heads"},
      {"partial slot", layout.work_info_offset, 8 * split + 1, 1 << 20, "partial_qo_loc"},
      {"slot of another sequence", layout.work_info_offset, 8 * split + 1,
       info[8 * other_split + 1], "another sequence's group"},
      /* Each of these leaves one (slot, KV head) of a group unwritten: its merge would never
       * see its last arrival, or would read a stale row. */
      {"slot written twice", layout.work_info_offset, 8 * split + 1, info[8 * sibling + 1],
       "do not write each of its"},
      {"split item made direct", layout.work_info_offset, 8 * split + 1, -1,
       "do not write each of its"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    const plan_corruption *k = &cases[i];
    memcpy(f.plan, good, layout.plan_bytes);
    int32_t *array = (int32_t *)((char *)f.plan + k->array_offset);
    array[k->index] = k->value;
    char what[160];
    snprintf(what, sizeof what, "corrupt %s", k->what);
    expect_plan_refused(&f, what, k->needle);
  }
  /* The plan as built passes all three. */
  padec_plan_view view;
  expect("view_init, as built", padec_plan_view_init(&layout, good, &view), PADEC_STATUS_OK, NULL);
  expect("cpu_run, as built",
         padec_cpu_run(&f.c.params, &layout, good, &f.tensors, f.workspace,
                       layout.workspace_bytes),
         PADEC_STATUS_OK, NULL);
  corrupt_fixture_free(&f);
}

/* The CUDA entry points' host-side argument checks. Every call below must fail them. */
static void test_cuda_entry_points(void) {
  padec_params p = valid_params();
  padec_plan_options options = {4, 16, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&p, 2, &options, &layout) != PADEC_STATUS_OK) exit(1);
  void *plan = alloc_zeroed(layout.plan_bytes);
  const int32_t lens[2] = {40, 3};
  if (padec_plan_build(&p, &layout, lens, plan, layout.plan_bytes) != PADEC_STATUS_OK) exit(1);
  char *buffer = alloc_zeroed(1 << 16); /* stands in for every device buffer; never read */
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.q = t.k_pages = t.v_pages = t.o = buffer;
  t.page_indptr = t.page_indices = t.kv_lens = (const int32_t *)(const void *)buffer;
  t.num_pages = 8;
  void *workspace = buffer;
  const size_t ws = layout.workspace_bytes;
  padec_cuda_device_info info;
  int32_t workers = 0;

#ifndef PADEC_HAVE_CUDA
  const padec_status none = PADEC_STATUS_NOT_BUILT_WITH_CUDA;
  expect("device_query", padec_cuda_device_query(0, &info), none, "CUDA");
  expect("recommended_workers", padec_cuda_recommended_workers(&p, 0, &workers), none, "CUDA");
  expect("upload_plan", padec_cuda_upload_plan(&layout, plan, buffer, NULL), none, "CUDA");
  expect("run", padec_cuda_run(&p, &layout, buffer, &t, workspace, ws, NULL), none, "CUDA");
  expect("validate_kv", padec_cuda_validate_kv(&p, 2, &t, buffer, NULL), none, "CUDA");
  (void)info;
#else
  expect("device_query info NULL", padec_cuda_device_query(0, NULL), PADEC_STATUS_NULL_POINTER,
         "info");
  const padec_status query = padec_cuda_device_query(1 << 20, &info);
  CHECK(query == PADEC_STATUS_BAD_ARGUMENT || query == PADEC_STATUS_NO_DEVICE,
        "device_query(2^20): %s", padec_status_name(query));
  padec_params bad = p;
  bad.head_dim = 96;
  expect("recommended_workers bad params", padec_cuda_recommended_workers(&bad, 0, &workers),
         PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim");
  expect("recommended_workers NULL", padec_cuda_recommended_workers(&p, 0, NULL),
         PADEC_STATUS_NULL_POINTER, "num_workers");
  expect("upload_plan NULL", padec_cuda_upload_plan(&layout, NULL, buffer, NULL),
         PADEC_STATUS_NULL_POINTER, "host_plan");
  void *zeros = alloc_zeroed(layout.plan_bytes);
  expect("upload_plan of zeros", padec_cuda_upload_plan(&layout, zeros, buffer, NULL),
         PADEC_STATUS_PLAN_MISMATCH, "host_plan");
  free(zeros);

  expect("run params NULL", padec_cuda_run(NULL, &layout, buffer, &t, workspace, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "params");
  expect("run bad params", padec_cuda_run(&bad, &layout, buffer, &t, workspace, ws, NULL),
         PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim");
  expect("run layout NULL", padec_cuda_run(&p, NULL, buffer, &t, workspace, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "layout");
  expect("run plan NULL", padec_cuda_run(&p, &layout, NULL, &t, workspace, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "plan");
  expect("run tensors NULL", padec_cuda_run(&p, &layout, buffer, NULL, workspace, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "tensors");
  expect("run workspace NULL", padec_cuda_run(&p, &layout, buffer, &t, NULL, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "workspace");
  expect("run workspace too small",
         padec_cuda_run(&p, &layout, buffer, &t, workspace, ws - 1, NULL),
         PADEC_STATUS_WORKSPACE_TOO_SMALL, "workspace");
  expect("run plan misaligned", padec_cuda_run(&p, &layout, buffer + 8, &t, workspace, ws, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "plan");
  expect("run workspace misaligned", padec_cuda_run(&p, &layout, buffer, &t, buffer + 8, ws, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "workspace");
  padec_params other = p;
  other.window_left = 5;
  expect("run params other than the layout's",
         padec_cuda_run(&other, &layout, buffer, &t, workspace, ws, NULL),
         PADEC_STATUS_PLAN_MISMATCH, "layout");
  padec_tensors b = t;
  b.kv_lens = NULL;
  expect("run kv_lens NULL", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_NULL_POINTER, "kv_lens");
  b = t;
  b.k_pages = buffer + 8;
  expect("run k_pages misaligned", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "k_pages");
  b = t;
  b.o = buffer + 1;
  expect("run o misaligned", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "tensors.o");
  b = t;
  b.num_pages = -1;
  expect("run num_pages -1", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "num_pages");
  b = t;
  b.q_stride_head = -1;
  expect("run q_stride_head -1", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "stride");
  /* The page stride's rules hold for both CUDA entries (the kernels' copies need them). */
  const int64_t page_elems = (int64_t)p.page_size * p.num_kv_heads * p.head_dim;
  b = t;
  b.kv_page_stride = 2 * page_elems + 1;
  expect("run kv_page_stride off 16 bytes", padec_cuda_run(&p, &layout, buffer, &b, workspace, ws, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "tensors.kv_page_stride = ");
  padec_grid_layout grid;
  if (padec_grid_layout_init(&p, 2, 2, 16, &grid) != PADEC_STATUS_OK) exit(1);
  b.kv_page_stride = page_elems / 2;
  expect("run_grid kv_page_stride half a page",
         padec_cuda_run_grid(&p, &grid, &b, workspace, grid.workspace_bytes, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "less than one page");
  padec_params fp8 = p;
  fp8.kv_dtype = PADEC_DTYPE_E4M3;
  fp8.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
  expect("run per-token scales NULL",
         padec_cuda_run(&fp8, &layout, buffer, &t, workspace, ws, NULL), PADEC_STATUS_BAD_SCALES,
         "k_scales");
  (void)workers;
#endif
  free(plan);
  free(buffer);
}

/* Split items whose slots are a multiset of the right count, sum and sum of squares but not the
 * slots themselves ({2, 3, 7} written as {1, 5, 6}: slots 1, 5 and 6 twice, 2, 3 and 7 never):
 * refused, where power sums of the keys let it through and the merge read rows never written.
 * One KV head, one sequence of 10 partitions over 10 workers: 10 pieces, slot k the k-th. */
static void test_split_slots_of_matching_power_sums(void) {
  padec_params params = valid_params();
  params.num_kv_heads = 1;
  params.num_q_heads = 4;
  const int32_t lens[1] = {160};
  const padec_plan_options options = {10, 16, PADEC_POLICY_EVEN};
  corrupt_fixture f;
  corrupt_fixture_init(&f, &params, 1, lens, 0x51075, &options);
  const padec_plan_header *h = f.plan;
  CHECK(h->num_partial_slots == 10, "the plan should have 10 slots, has %d", h->num_partial_slots);
  int32_t *info = (int32_t *)((char *)f.plan + f.layout.work_info_offset);
  int changed = 0;
  for (int32_t w = 0; w < h->num_works; ++w) {
    int32_t *loc = &info[8 * w + 1];
    const int32_t from = *loc;
    *loc = from == 2 ? 1 : from == 3 ? 5 : from == 7 ? 6 : from;
    changed += *loc != from;
  }
  CHECK(changed == 3, "three items should have moved, %d did", changed);
  expect_plan_refused(&f, "slots {2, 3, 7} as {1, 5, 6}",
                      "do not write each of its 10 partial slots");
  corrupt_fixture_free(&f);
}

int main(void) {
  test_param_limits();
  test_validate_kv_host();
  test_plan_for_other_lengths();
  test_corrupt_plan_body();
  test_split_slots_of_matching_power_sums();
  test_cuda_entry_points();
  if (test_failures) {
    fprintf(stderr, "test_validation: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_validation: all checks passed\n");
  return 0;
}
