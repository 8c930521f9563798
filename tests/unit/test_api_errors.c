/*
 * Every invalid argument listed in PRODUCT.md "Errors" gets its status from
 * padec_plan_layout_init, padec_plan_build or padec_cpu_run, a message that names the argument
 * (padec_last_message and the log callback), and no write to any output: the layout, the plan
 * buffer, o, lse and the workspace are poisoned before each call and compared byte for byte
 * after it. Also the status table: a name and a description for every value.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "padec_cuda.h"
#include "test_support.h"


/* ---- the log callback ------------------------------------------------------------------------ */

typedef struct logged {
  int calls;
  padec_status status;
  char message[512];
} logged;

static void record_log(void *user, padec_status status, const char *message) {
  logged *log = (logged *)user;
  log->calls += 1;
  log->status = status;
  snprintf(log->message, sizeof log->message, "%s", message ? message : "");
}

static logged g_log;

/* Checks the status, that the message names the argument (needle) and that the callback saw it. */
static void check_failure(const char *what, padec_status got, padec_status want, const char *needle,
                          int log_calls_before) {
  CHECK(got == want, "%s: got %s, want %s (%s)", what, padec_status_name(got),
        padec_status_name(want), padec_last_message());
  if (got == PADEC_STATUS_OK) return;
  const char *message = padec_last_message();
  CHECK(message && strstr(message, needle) != NULL, "%s: message \"%s\" does not name \"%s\"", what,
        message ? message : "(null)", needle);
  CHECK(g_log.calls == log_calls_before + 1 && g_log.status == got &&
            strcmp(g_log.message, message) == 0,
        "%s: the log callback saw %d call(s), status %s, \"%s\"", what,
        g_log.calls - log_calls_before, padec_status_name(g_log.status), g_log.message);
}

/* ---- buffers --------------------------------------------------------------------------------- */

/* 64-byte aligned with 64 spare bytes, so misaligned views (base + 1, + 2, + 8) stay inside. */
static void *alloc_padded(size_t bytes) {
  size_t rounded = (bytes + 64 + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  memset(p, 0, rounded);
  return p;
}

static size_t padded(size_t bytes) { return (bytes + 64 + 63) / 64 * 64; }

/* A valid problem, its plan, and output buffers; every error test perturbs one argument. */
typedef struct fixture {
  padec_case c;
  padec_plan_options options;
  padec_plan_layout layout;
  void *plan;
  void *workspace;
  void *o;
  float *lse;
  size_t lse_bytes;
  /* snapshots of the poisoned outputs */
  void *o_before, *lse_before, *workspace_before;
} fixture;

static padec_params valid_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.page_size = 16;
  p.q_dtype = PADEC_DTYPE_BF16;
  p.kv_dtype = PADEC_DTYPE_BF16;
  p.o_dtype = PADEC_DTYPE_BF16;
  return p;
}

static void fixture_init(fixture *f, const padec_params *params) {
  static const int32_t lens[] = {5, 40, 0, 17};
  memset(f, 0, sizeof *f);
  if (padec_case_init(&f->c, params, 4, lens, 0xe77) != 0) {
    fprintf(stderr, "padec_case_init failed\n");
    exit(1);
  }
  f->options.num_workers = 6; /* three bins per head: the 40-token sequence is split */
  f->options.partition_tokens = 16;
  padec_status status = padec_plan_layout_init(&f->c.params, f->c.batch, &f->options, &f->layout);
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "fixture layout: %s\n", padec_last_message());
    exit(1);
  }
  f->plan = alloc_padded(f->layout.plan_bytes);
  f->workspace = alloc_padded(f->layout.workspace_bytes);
  status = padec_plan_build(&f->c.params, &f->layout, f->c.kv_lens, f->plan, f->layout.plan_bytes);
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "fixture plan: %s\n", padec_last_message());
    exit(1);
  }
  f->lse_bytes = sizeof(float) * (size_t)f->c.num_tokens * (size_t)f->c.params.num_q_heads;
  f->o = alloc_padded(f->c.o_bytes);
  f->lse = alloc_padded(f->lse_bytes);
  f->o_before = alloc_padded(f->c.o_bytes);
  f->lse_before = alloc_padded(f->lse_bytes);
  f->workspace_before = alloc_padded(f->layout.workspace_bytes);
}

static void fixture_free(fixture *f) {
  padec_case_free(&f->c);
  free(f->plan);
  free(f->workspace);
  free(f->o);
  free(f->lse);
  free(f->o_before);
  free(f->lse_before);
  free(f->workspace_before);
}

static padec_tensors fixture_tensors(const fixture *f) {
  return padec_case_tensors(&f->c, f->o, f->lse);
}

/* Runs padec_cpu_run with the given arguments on poisoned outputs and checks the failure. */
static void expect_run(const char *what, fixture *f, const padec_params *params,
                       const padec_plan_layout *layout, const void *plan,
                       const padec_tensors *tensors, void *workspace, size_t workspace_bytes,
                       padec_status want, const char *needle) {
  memset(f->o, 0xff, padded(f->c.o_bytes)); /* NaN in every output dtype, as padec_case_poison */
  memset(f->lse, 0xff, padded(f->lse_bytes));
  memset(f->workspace, 0x5a, padded(f->layout.workspace_bytes));
  memcpy(f->o_before, f->o, padded(f->c.o_bytes));
  memcpy(f->lse_before, f->lse, padded(f->lse_bytes));
  memcpy(f->workspace_before, f->workspace, padded(f->layout.workspace_bytes));
  int calls = g_log.calls;
  padec_status got = padec_cpu_run(params, layout, plan, tensors, workspace, workspace_bytes);
  check_failure(what, got, want, needle, calls);
  CHECK(memcmp(f->o, f->o_before, padded(f->c.o_bytes)) == 0, "%s: o was written", what);
  CHECK(memcmp(f->lse, f->lse_before, padded(f->lse_bytes)) == 0, "%s: lse was written", what);
  CHECK(memcmp(f->workspace, f->workspace_before, padded(f->layout.workspace_bytes)) == 0,
        "%s: the workspace was written", what);
}

/* The common case: only the tensors differ from the fixture's. */
static void expect_run_tensors(const char *what, fixture *f, const padec_tensors *tensors,
                               padec_status want, const char *needle) {
  expect_run(what, f, &f->c.params, &f->layout, f->plan, tensors, f->workspace,
             f->layout.workspace_bytes, want, needle);
}

static void expect_layout(const char *what, const padec_params *params, int32_t batch,
                          const padec_plan_options *options, padec_status want,
                          const char *needle) {
  padec_plan_layout layout, before;
  memset(&layout, 0x77, sizeof layout);
  memcpy(&before, &layout, sizeof layout);
  int calls = g_log.calls;
  padec_status got = padec_plan_layout_init(params, batch, options, &layout);
  check_failure(what, got, want, needle, calls);
  CHECK(memcmp(&layout, &before, sizeof layout) == 0, "%s: the layout was written", what);
}

static void expect_build(const char *what, const padec_params *params,
                         const padec_plan_layout *layout, const int32_t *kv_lens, void *plan,
                         size_t plan_bytes, size_t poison_bytes, padec_status want,
                         const char *needle) {
  unsigned char *before = NULL;
  if (plan) {
    memset(plan, 0x33, poison_bytes);
    before = malloc(poison_bytes);
    if (!before) exit(1);
    memcpy(before, plan, poison_bytes);
  }
  int calls = g_log.calls;
  padec_status got = padec_plan_build(params, layout, kv_lens, plan, plan_bytes);
  check_failure(what, got, want, needle, calls);
  if (plan) {
    CHECK(memcmp(plan, before, poison_bytes) == 0, "%s: the plan buffer was written", what);
    free(before);
  }
}

/* ---- padec_plan_layout_init ------------------------------------------------------------------ */

typedef struct params_error {
  const char *what;
  padec_params params;
  padec_status want;
  const char *needle;
} params_error;

/* Invalid params, each one field away from valid_params(); every entry point must reject them. */
static int build_params_errors(params_error *errors) {
  int n = 0;
#define PARAMS_ERROR(field_assignments, status, needle_text)                                       \
  do {                                                                                             \
    padec_params p_ = valid_params();                                                              \
    field_assignments;                                                                             \
    errors[n].what = #field_assignments;                                                           \
    errors[n].params = p_;                                                                         \
    errors[n].want = status;                                                                       \
    errors[n].needle = needle_text;                                                                \
    n += 1;                                                                                        \
  } while (0)
  PARAMS_ERROR(p_.num_q_heads = 0, PADEC_STATUS_BAD_HEAD_COUNT, "num_q_heads");
  PARAMS_ERROR(p_.num_q_heads = -8, PADEC_STATUS_BAD_HEAD_COUNT, "num_q_heads");
  PARAMS_ERROR(p_.num_kv_heads = 0, PADEC_STATUS_BAD_HEAD_COUNT, "num_kv_heads");
  PARAMS_ERROR(p_.num_kv_heads = 3, PADEC_STATUS_BAD_HEAD_COUNT, "num_kv_heads");
  PARAMS_ERROR((p_.num_kv_heads = 16, p_.num_q_heads = 8), PADEC_STATUS_BAD_HEAD_COUNT,
               "num_q_heads");
  PARAMS_ERROR(p_.head_dim = 0, PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim");
  PARAMS_ERROR(p_.head_dim = 96, PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim");
  PARAMS_ERROR(p_.head_dim = 512, PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim");
  PARAMS_ERROR(p_.page_size = 0, PADEC_STATUS_BAD_PAGE_SIZE, "page_size");
  PARAMS_ERROR(p_.page_size = 3, PADEC_STATUS_BAD_PAGE_SIZE, "page_size");
  PARAMS_ERROR(p_.page_size = -16, PADEC_STATUS_BAD_PAGE_SIZE, "page_size");
  PARAMS_ERROR(p_.page_size = 2048, PADEC_STATUS_BAD_PAGE_SIZE, "page_size");
  PARAMS_ERROR(p_.kv_layout = (padec_layout)2, PADEC_STATUS_BAD_ARGUMENT, "kv_layout");
  PARAMS_ERROR(p_.q_dtype = PADEC_DTYPE_FP32, PADEC_STATUS_UNSUPPORTED_DTYPE, "q_dtype");
  PARAMS_ERROR(p_.q_dtype = PADEC_DTYPE_E4M3, PADEC_STATUS_UNSUPPORTED_DTYPE, "q_dtype");
  PARAMS_ERROR(p_.kv_dtype = PADEC_DTYPE_FP32, PADEC_STATUS_UNSUPPORTED_DTYPE, "kv_dtype = 2 (fp32)");
  PARAMS_ERROR(p_.kv_dtype = (padec_dtype)9, PADEC_STATUS_UNSUPPORTED_DTYPE, "kv_dtype");
  PARAMS_ERROR(p_.o_dtype = PADEC_DTYPE_E4M3, PADEC_STATUS_UNSUPPORTED_DTYPE, "o_dtype");
  PARAMS_ERROR(p_.o_dtype = (padec_dtype)-1, PADEC_STATUS_UNSUPPORTED_DTYPE, "o_dtype");
  PARAMS_ERROR(p_.q_len = 5, PADEC_STATUS_BAD_Q_LEN, "q_len");
  PARAMS_ERROR(p_.q_len = -1, PADEC_STATUS_BAD_Q_LEN, "q_len");
  PARAMS_ERROR(p_.window_left = -1, PADEC_STATUS_BAD_ARGUMENT, "window_left");
  PARAMS_ERROR(p_.softmax_scale = -0.125f, PADEC_STATUS_BAD_ARGUMENT, "softmax_scale");
  PARAMS_ERROR(p_.softmax_scale = NAN, PADEC_STATUS_BAD_ARGUMENT, "softmax_scale");
  PARAMS_ERROR(p_.softmax_scale = INFINITY, PADEC_STATUS_BAD_ARGUMENT, "softmax_scale");
  PARAMS_ERROR(p_.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR, PADEC_STATUS_BAD_SCALES,
               "fp8_scale_mode");
  PARAMS_ERROR((p_.kv_dtype = PADEC_DTYPE_E4M3, p_.fp8_scale_mode = (padec_fp8_scale_mode)9),
               PADEC_STATUS_BAD_SCALES, "fp8_scale_mode");
  PARAMS_ERROR((p_.kv_dtype = PADEC_DTYPE_E4M3, p_.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR,
                p_.k_scale = 0.0f, p_.v_scale = 1.0f),
               PADEC_STATUS_BAD_SCALES, "k_scale");
  PARAMS_ERROR((p_.kv_dtype = PADEC_DTYPE_E4M3, p_.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR,
                p_.k_scale = 1.0f, p_.v_scale = NAN),
               PADEC_STATUS_BAD_SCALES, "v_scale");
  PARAMS_ERROR((p_.kv_dtype = PADEC_DTYPE_E4M3, p_.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR,
                p_.k_scale = -1.0f, p_.v_scale = 1.0f),
               PADEC_STATUS_BAD_SCALES, "k_scale");
  PARAMS_ERROR((p_.kv_dtype = PADEC_DTYPE_E4M3, p_.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR,
                p_.k_scale = 1.0f, p_.v_scale = INFINITY),
               PADEC_STATUS_BAD_SCALES, "v_scale");
#undef PARAMS_ERROR
  return n;
}

enum { MAX_PARAMS_ERRORS = 64 };

static void test_layout_errors(void) {
  padec_params p = valid_params();
  padec_plan_options options = {4, 16, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  int calls = g_log.calls;
  check_failure("layout_init params NULL", padec_plan_layout_init(NULL, 1, &options, &layout),
                PADEC_STATUS_NULL_POINTER, "params", calls);
  expect_layout("layout_init options NULL", &p, 1, NULL, PADEC_STATUS_NULL_POINTER, "options");
  calls = g_log.calls;
  check_failure("layout_init layout NULL", padec_plan_layout_init(&p, 1, &options, NULL),
                PADEC_STATUS_NULL_POINTER, "layout", calls);

  params_error errors[MAX_PARAMS_ERRORS];
  int count = build_params_errors(errors);
  for (int i = 0; i < count; ++i) {
    char what[160];
    snprintf(what, sizeof what, "layout_init %s", errors[i].what);
    expect_layout(what, &errors[i].params, 1, &options, errors[i].want, errors[i].needle);
    int calls_validate = g_log.calls;
    snprintf(what, sizeof what, "params_validate %s", errors[i].what);
    check_failure(what, padec_params_validate(&errors[i].params), errors[i].want, errors[i].needle,
                  calls_validate);
  }

  expect_layout("batch -1", &p, -1, &options, PADEC_STATUS_BAD_ARGUMENT, "batch");
  expect_layout("batch 2^24 + 1", &p, (1 << 24) + 1, &options, PADEC_STATUS_BAD_ARGUMENT, "batch");
  const int32_t bad_workers[] = {0, -1, 65537};
  for (size_t i = 0; i < sizeof bad_workers / sizeof bad_workers[0]; ++i) {
    padec_plan_options o = options;
    o.num_workers = bad_workers[i];
    char what[64];
    snprintf(what, sizeof what, "num_workers %d", bad_workers[i]);
    expect_layout(what, &p, 1, &o, PADEC_STATUS_BAD_ARGUMENT, "num_workers");
  }
  const int32_t bad_partitions[] = {8, 24, -16, 32768};
  for (size_t i = 0; i < sizeof bad_partitions / sizeof bad_partitions[0]; ++i) {
    padec_plan_options o = options;
    o.partition_tokens = bad_partitions[i];
    char what[64];
    snprintf(what, sizeof what, "partition_tokens %d", bad_partitions[i]);
    expect_layout(what, &p, 1, &o, PADEC_STATUS_BAD_ARGUMENT, "partition_tokens");
  }
  padec_plan_options bad_policy = options;
  bad_policy.policy = (padec_policy)7;
  expect_layout("policy 7", &p, 1, &bad_policy, PADEC_STATUS_BAD_ARGUMENT, "policy");
}

/* ---- padec_plan_build ------------------------------------------------------------------------ */

static void test_build_errors(void) {
  fixture f;
  padec_params params = valid_params();
  fixture_init(&f, &params);
  const padec_params *p = &f.c.params;
  const size_t bytes = f.layout.plan_bytes, poison = padded(bytes);
  void *plan = f.plan;
  int calls = g_log.calls;
  check_failure("build params NULL", padec_plan_build(NULL, &f.layout, f.c.kv_lens, plan, bytes),
                PADEC_STATUS_NULL_POINTER, "params", calls);
  expect_build("build layout NULL", p, NULL, f.c.kv_lens, plan, bytes, poison,
               PADEC_STATUS_NULL_POINTER, "layout");
  expect_build("build plan NULL", p, &f.layout, f.c.kv_lens, NULL, bytes, 0,
               PADEC_STATUS_NULL_POINTER, "plan");
  expect_build("build kv_lens NULL", p, &f.layout, NULL, plan, bytes, poison,
               PADEC_STATUS_NULL_POINTER, "kv_lens");
  expect_build("build plan misaligned", p, &f.layout, f.c.kv_lens, (char *)plan + 8, bytes,
               poison - 8, PADEC_STATUS_MISALIGNED_POINTER, "plan");
  expect_build("build plan_bytes too small", p, &f.layout, f.c.kv_lens, plan, bytes - 1, poison,
               PADEC_STATUS_WORKSPACE_TOO_SMALL, "plan_bytes");
  /* Lengths inside the plan would be read after the build cleared them. */
  expect_build("build kv_lens inside the plan", p, &f.layout, (const int32_t *)plan + 16, plan, bytes,
               poison, PADEC_STATUS_BAD_ARGUMENT, "kv_lens overlaps plan, which the build writes");
  {
    int32_t shard_starts[4] = {0, 0, 0, 0};
    memset(plan, 0x33, poison);
    calls = g_log.calls;
    check_failure("build seq_lens inside the plan",
                  padec_plan_build_shard(p, &f.layout, f.c.kv_lens, shard_starts, (const int32_t *)plan,
                                         plan, bytes),
                  PADEC_STATUS_BAD_ARGUMENT, "seq_lens overlaps plan", calls);
    const unsigned char *bytes_after = plan;
    size_t written = 0;
    for (size_t i = 0; i < poison; ++i) written += bytes_after[i] != 0x33;
    CHECK(written == 0, "build seq_lens inside the plan: %zu plan bytes written", written);
  }

  int32_t lens[4];
  memcpy(lens, f.c.kv_lens, sizeof lens);
  lens[2] = -1;
  expect_build("build negative kv_len", p, &f.layout, lens, plan, bytes, poison,
               PADEC_STATUS_BAD_ARGUMENT, "kv_lens");

  /* Misaligned int32 arrays: refused, not read (a misaligned load is undefined behaviour). */
  int32_t lens_copy[8];
  char *lens_bytes = (char *)lens_copy;
  memcpy(lens_bytes + 2, f.c.kv_lens, sizeof lens);
  const int32_t *misaligned = (const int32_t *)(const void *)(lens_bytes + 2);
  expect_build("build kv_lens misaligned", p, &f.layout, misaligned, plan, bytes, poison,
               PADEC_STATUS_MISALIGNED_POINTER, "kv_lens");
  calls = g_log.calls;
  check_failure("build_shard shard_starts misaligned",
                padec_plan_build_shard(p, &f.layout, f.c.kv_lens, misaligned, f.c.kv_lens, plan, bytes),
                PADEC_STATUS_MISALIGNED_POINTER, "shard_starts", calls);
  calls = g_log.calls;
  check_failure("build_shard seq_lens misaligned",
                padec_plan_build_shard(p, &f.layout, f.c.kv_lens, f.c.kv_lens, misaligned, plan, bytes),
                PADEC_STATUS_MISALIGNED_POINTER, "seq_lens", calls);
  padec_choice choice;
  calls = g_log.calls;
  check_failure("choose kv_lens misaligned", padec_choose(p, f.c.batch, misaligned, 264, &choice),
                PADEC_STATUS_MISALIGNED_POINTER, "kv_lens", calls);
  padec_tensors t = padec_case_tensors(&f.c, f.o, f.lse);
  t.kv_lens = misaligned;
  calls = g_log.calls;
  check_failure("validate_kv_host kv_lens misaligned", padec_validate_kv_host(p, f.c.batch, &t),
                PADEC_STATUS_MISALIGNED_POINTER, "kv_lens", calls);
  t = padec_case_tensors(&f.c, f.o, f.lse);
  t.num_pages = -5;
  calls = g_log.calls;
  check_failure("validate_kv_host num_pages -5", padec_validate_kv_host(p, f.c.batch, &t),
                PADEC_STATUS_BAD_ARGUMENT, "tensors.num_pages = -5", calls);
  {
    double worker_ns[64 + 1];
    calls = g_log.calls;
    check_failure("predict worker_ns misaligned",
                  padec_plan_predict(p, &f.layout, f.plan, NULL,
                                     (double *)(void *)((char *)worker_ns + 4)),
                  PADEC_STATUS_MISALIGNED_POINTER, "worker_ns", calls);
  }

  params_error errors[MAX_PARAMS_ERRORS];
  int count = build_params_errors(errors);
  for (int i = 0; i < count; ++i) {
    char what[160];
    snprintf(what, sizeof what, "build %s", errors[i].what);
    expect_build(what, &errors[i].params, &f.layout, f.c.kv_lens, plan, bytes, poison,
                 errors[i].want, errors[i].needle);
  }

  /* A layout made for other schedule-shaping params. */
  padec_params other = *p;
  other.q_len = 2;
  expect_build("build layout for q_len 1 with q_len 2", &other, &f.layout, f.c.kv_lens, plan, bytes,
               poison, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.window_left = 7;
  expect_build("build layout without window, params with window", &other, &f.layout, f.c.kv_lens,
               plan, bytes, poison, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.num_q_heads = 16;
  expect_build("build layout for group 4 with group 8", &other, &f.layout, f.c.kv_lens, plan, bytes,
               poison, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.head_dim = 128;
  expect_build("build layout for head_dim 64 with 128", &other, &f.layout, f.c.kv_lens, plan, bytes,
               poison, PADEC_STATUS_PLAN_MISMATCH, "layout");
  fixture_free(&f);
}

/* ---- padec_cpu_run --------------------------------------------------------------------------- */

static void test_run_pointer_errors(fixture *f) {
  const padec_params *p = &f->c.params;
  padec_tensors t = fixture_tensors(f);
  const size_t ws = f->layout.workspace_bytes;

  expect_run("run params NULL", f, NULL, &f->layout, f->plan, &t, f->workspace, ws,
             PADEC_STATUS_NULL_POINTER, "params");
  expect_run("run layout NULL", f, p, NULL, f->plan, &t, f->workspace, ws,
             PADEC_STATUS_NULL_POINTER, "layout");
  expect_run("run plan NULL", f, p, &f->layout, NULL, &t, f->workspace, ws,
             PADEC_STATUS_NULL_POINTER, "plan");
  expect_run("run tensors NULL", f, p, &f->layout, f->plan, NULL, f->workspace, ws,
             PADEC_STATUS_NULL_POINTER, "tensors");
  expect_run("run workspace NULL", f, p, &f->layout, f->plan, &t, NULL, ws,
             PADEC_STATUS_NULL_POINTER, "workspace");

#define NULL_TENSOR(field)                                                                         \
  do {                                                                                             \
    padec_tensors bad = fixture_tensors(f);                                                        \
    bad.field = NULL;                                                                              \
    expect_run_tensors("run tensors." #field " NULL", f, &bad, PADEC_STATUS_NULL_POINTER, #field); \
  } while (0)
  NULL_TENSOR(q);
  NULL_TENSOR(o);
  NULL_TENSOR(k_pages);
  NULL_TENSOR(v_pages);
  NULL_TENSOR(page_indptr);
  NULL_TENSOR(page_indices);
  NULL_TENSOR(kv_lens);
#undef NULL_TENSOR

  /* Misaligned views: the data is copied to base + offset so only the address is wrong. */
  void *plan_copy = alloc_padded(f->layout.plan_bytes);
  memcpy((char *)plan_copy + 8, f->plan, f->layout.plan_bytes);
  expect_run("run plan misaligned", f, p, &f->layout, (char *)plan_copy + 8, &t, f->workspace, ws,
             PADEC_STATUS_MISALIGNED_POINTER, "plan");
  free(plan_copy);
  expect_run("run workspace misaligned", f, p, &f->layout, f->plan, &t, (char *)f->workspace + 8,
             ws, PADEC_STATUS_MISALIGNED_POINTER, "workspace");

  unsigned char *q_copy = alloc_padded(f->c.q_bytes);
  memcpy(q_copy + 1, f->c.q, f->c.q_bytes);
  padec_tensors bad = fixture_tensors(f);
  bad.q = q_copy + 1;
  expect_run_tensors("run q misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "tensors.q");
  free(q_copy);

  bad = fixture_tensors(f);
  bad.o = (char *)f->o + 1;
  expect_run_tensors("run o misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "tensors.o");
  bad = fixture_tensors(f);
  bad.lse = (float *)(void *)((char *)f->lse + 2);
  expect_run_tensors("run lse misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "lse");
  int32_t counters[4];
  bad = fixture_tensors(f);
  bad.merge_counters = (int32_t *)(void *)((char *)counters + 2);
  expect_run_tensors("run merge_counters misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER,
                     "tensors.merge_counters");

  /* Strides whose tensor would span more than 2^59 elements: refused by name, before any index
   * arithmetic can overflow. */
  static const struct {
    const char *what, *needle;
    int field; /* 0 q token, 1 q head, 2 o token, 3 o head */
    int64_t value;
  } strides[] = {
      {"run q_stride_token 2^62", "q_stride_token", 0, (int64_t)1 << 62},
      {"run q_stride_head 2^58", "q_stride_head", 1, (int64_t)1 << 58},
      {"run o_stride_token -1", "o_stride_token", 2, -1},
      {"run o_stride_head 2^62", "o_stride_head", 3, (int64_t)1 << 62},
      /* 8 heads this far apart fill 2^59 elements but for less than a row: the heads' stride is
       * named, not the packed token stride that finds no room left. */
      {"run q_stride_head 2^59 / 7", "q_stride_head = 82351536043346212", 1, ((int64_t)1 << 59) / 7},
      {"run o_stride_head 2^59 / 7", "o_stride_head = 82351536043346212", 3, ((int64_t)1 << 59) / 7},
  };
  for (size_t i = 0; i < sizeof strides / sizeof strides[0]; ++i) {
    bad = fixture_tensors(f);
    if (strides[i].field == 0) bad.q_stride_token = strides[i].value;
    if (strides[i].field == 1) bad.q_stride_head = strides[i].value;
    if (strides[i].field == 2) bad.o_stride_token = strides[i].value;
    if (strides[i].field == 3) bad.o_stride_head = strides[i].value;
    expect_run_tensors(strides[i].what, f, &bad, PADEC_STATUS_BAD_ARGUMENT, strides[i].needle);
  }

  /* Outputs whose elements would share addresses, with each other or with the query: refused
   * by name before anything is written. */
  bad = fixture_tensors(f);
  bad.o_stride_head = 1;
  expect_run_tensors("run o_stride_head 1 (heads overlap)", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.o_stride_head = 1");
  bad = fixture_tensors(f);
  bad.o_stride_head = 72; /* a packed token (8 x 64) is shorter than 8 heads 72 apart */
  expect_run_tensors("run o_stride_head 72 with packed tokens", f, &bad,
                     PADEC_STATUS_BAD_ARGUMENT, "tensors.o_stride_token = 0");
  bad = fixture_tensors(f);
  bad.o = (void *)bad.q;
  expect_run_tensors("run with o = q", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.o and tensors.q overlap");
  bad = fixture_tensors(f);
  bad.lse = (float *)f->o + 8;
  expect_run_tensors("run with lse inside o", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.lse and tensors.o overlap");
  bad = fixture_tensors(f);
  bad.lse = (float *)(uintptr_t)bad.q;
  expect_run_tensors("run with lse = q", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.lse and tensors.q overlap");
  bad = fixture_tensors(f);
  bad.o = (void *)bad.v_pages;
  expect_run_tensors("run with o in the V pool", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.o overlaps the V pool");
  bad = fixture_tensors(f);
  bad.lse = (float *)(uintptr_t)bad.k_pages + 4;
  expect_run_tensors("run with lse in the K pool", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.lse overlaps the K pool");
  bad = fixture_tensors(f);
  bad.lse = (float *)f->workspace;
  expect_run_tensors("run with lse in the workspace", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "tensors.lse overlaps the workspace");
  /* What the run writes may not land in what it reads: page ids or lengths written over mid-run
   * would send it to other pages. Refused by name before anything is written. */
  {
    const struct {
      const char *what, *needle;
      int field; /* 0 page_indices, 1 kv_lens, 2 page_indptr, 3 q, 4 k_pages, 5 lse, 6 merge_counters */
      void *at;
    } crossings[] = {
        {"run with page_indices inside o", "tensors.o overlaps tensors.page_indices, which the run reads", 0, f->o},
        {"run with kv_lens inside o", "tensors.o overlaps tensors.kv_lens", 1, (int32_t *)f->o + 2},
        {"run with page_indptr in the workspace", "the workspace overlaps tensors.page_indptr", 2, f->workspace},
        {"run with q in the workspace", "the workspace overlaps tensors.q", 3, (char *)f->workspace + 64},
        {"run with the K pool in the workspace", "the workspace overlaps the K pool", 4, f->workspace},
        {"run with lse over kv_lens", "tensors.lse overlaps tensors.kv_lens", 5, (void *)(uintptr_t)f->c.kv_lens},
        {"run with merge_counters inside o", "tensors.o overlaps tensors.merge_counters", 6, f->o},
        /* The plan is read item by item as the run goes: a partial or an output written over
         * it sends later items elsewhere. */
        {"run with lse inside the plan", "tensors.lse overlaps the plan, which the run reads", 5,
         (char *)f->plan + 64},
        {"run with merge_counters inside the plan", "tensors.merge_counters overlaps the plan", 6,
         (char *)f->plan + 16},
    };
    unsigned char *plan_before = malloc(f->layout.plan_bytes);
    if (!plan_before) exit(1);
    memcpy(plan_before, f->plan, f->layout.plan_bytes);
    for (size_t i = 0; i < sizeof crossings / sizeof crossings[0]; ++i) {
      bad = fixture_tensors(f);
      void *at = crossings[i].at;
      if (crossings[i].field == 0) bad.page_indices = at;
      if (crossings[i].field == 1) bad.kv_lens = at;
      if (crossings[i].field == 2) bad.page_indptr = at;
      if (crossings[i].field == 3) bad.q = at;
      if (crossings[i].field == 4) bad.k_pages = at;
      if (crossings[i].field == 5) bad.lse = at;
      if (crossings[i].field == 6) bad.merge_counters = at;
      expect_run_tensors(crossings[i].what, f, &bad, PADEC_STATUS_BAD_ARGUMENT, crossings[i].needle);
      CHECK(memcmp(f->plan, plan_before, f->layout.plan_bytes) == 0, "%s: the plan was written",
            crossings[i].what);
    }
    free(plan_before);
  }
  {
    /* Distinct but not packed: heads outermost ([heads][tokens][head_dim]) is accepted. */
    padec_tensors head_major = fixture_tensors(f);
    head_major.o_stride_token = f->c.params.head_dim;
    head_major.o_stride_head = (int64_t)f->c.num_tokens * f->c.params.head_dim;
    const padec_status status = padec_cpu_run(&f->c.params, &f->layout, f->plan, &head_major,
                                              f->workspace, f->layout.workspace_bytes);
    CHECK(status == PADEC_STATUS_OK, "run with a head-major o: %s (%s)",
          padec_status_name(status), padec_last_message());
  }

  bad = fixture_tensors(f);
  bad.num_page_indices = f->c.page_indptr[f->c.batch] - 1;
  expect_run_tensors("run with one page id fewer than page_indptr[batch] names", f, &bad,
                     PADEC_STATUS_BAD_ARGUMENT, "num_page_indices");

  /* The distance between pages: at least a page, pages 16-byte aligned, below 2^32 bytes. */
  const int64_t page_elems = (int64_t)f->c.params.page_size * f->c.params.num_kv_heads * f->c.params.head_dim;
  const struct {
    const char *what, *needle;
    padec_status want;
    int64_t value;
  } page_strides[] = {
      {"run kv_page_stride -1", "tensors.kv_page_stride = -1: need >= 0", PADEC_STATUS_BAD_ARGUMENT, -1},
      {"run kv_page_stride a page - 8", "less than one page", PADEC_STATUS_BAD_ARGUMENT, page_elems - 8},
      {"run kv_page_stride a page + 1 (2 bytes)", "pages must stay 16-byte aligned",
       PADEC_STATUS_MISALIGNED_POINTER, page_elems + 1},
      {"run kv_page_stride 2^31 bf16 elements", "fewer than 2^32 bytes", PADEC_STATUS_BAD_ARGUMENT,
       (int64_t)1 << 31},
      {"run kv_page_stride 2^31 - 7 bf16 elements (below 2^32 bytes, off 16)",
       "pages must stay 16-byte aligned", PADEC_STATUS_MISALIGNED_POINTER, ((int64_t)1 << 31) - 7},
  };
  for (size_t i = 0; i < sizeof page_strides / sizeof page_strides[0]; ++i) {
    bad = fixture_tensors(f);
    bad.kv_page_stride = page_strides[i].value;
    expect_run_tensors(page_strides[i].what, f, &bad, page_strides[i].want, page_strides[i].needle);
  }

  unsigned char *pool_copy = alloc_padded(f->c.pool_bytes);
  memcpy(pool_copy + 8, f->c.k_pages, f->c.pool_bytes);
  bad = fixture_tensors(f);
  bad.k_pages = pool_copy + 8;
  expect_run_tensors("run k_pages misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "k_pages");
  memcpy(pool_copy + 8, f->c.v_pages, f->c.pool_bytes);
  bad = fixture_tensors(f);
  bad.v_pages = pool_copy + 8;
  expect_run_tensors("run v_pages misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "v_pages");
  free(pool_copy);

  size_t indptr_bytes = sizeof(int32_t) * ((size_t)f->c.batch + 1);
  size_t indices_bytes = sizeof(int32_t) * (size_t)f->c.page_indptr[f->c.batch];
  size_t lens_bytes = sizeof(int32_t) * (size_t)f->c.batch;
  unsigned char *int_copy = alloc_padded(indptr_bytes + indices_bytes + lens_bytes);
  memcpy(int_copy + 2, f->c.page_indptr, indptr_bytes);
  bad = fixture_tensors(f);
  bad.page_indptr = (const int32_t *)(const void *)(int_copy + 2);
  expect_run_tensors("run page_indptr misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER,
                     "page_indptr");
  memcpy(int_copy + 2, f->c.page_indices, indices_bytes);
  bad = fixture_tensors(f);
  bad.page_indices = (const int32_t *)(const void *)(int_copy + 2);
  expect_run_tensors("run page_indices misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER,
                     "page_indices");
  memcpy(int_copy + 2, f->c.kv_lens, lens_bytes);
  bad = fixture_tensors(f);
  bad.kv_lens = (const int32_t *)(const void *)(int_copy + 2);
  expect_run_tensors("run kv_lens misaligned", f, &bad, PADEC_STATUS_MISALIGNED_POINTER, "kv_lens");
  free(int_copy);
}

static void test_run_data_errors(fixture *f) {
  const padec_params *p = &f->c.params;
  padec_tensors t = fixture_tensors(f);

  expect_run("run workspace too small", f, p, &f->layout, f->plan, &t, f->workspace,
             f->layout.workspace_bytes - 1, PADEC_STATUS_WORKSPACE_TOO_SMALL, "workspace");

  /* kv_len larger than the pages of its sequence, also with a plan built for those lengths. */
  int32_t lens[4];
  memcpy(lens, f->c.kv_lens, sizeof lens);
  int32_t pages_of_1 = f->c.page_indptr[2] - f->c.page_indptr[1];
  lens[1] = pages_of_1 * p->page_size + 1;
  padec_tensors bad = fixture_tensors(f);
  bad.kv_lens = lens;
  expect_run_tensors("run kv_len past its pages", f, &bad, PADEC_STATUS_KV_LEN_EXCEEDS_PAGES,
                     "kv_len");
  void *plan_for_lens = alloc_padded(f->layout.plan_bytes);
  if (padec_plan_build(p, &f->layout, lens, plan_for_lens, f->layout.plan_bytes) !=
      PADEC_STATUS_OK) {
    CHECK(0, "building a plan for lengths past the pages failed: %s", padec_last_message());
  } else {
    expect_run("run kv_len past its pages, plan built for it", f, p, &f->layout, plan_for_lens,
               &bad, f->workspace, f->layout.workspace_bytes, PADEC_STATUS_KV_LEN_EXCEEDS_PAGES,
               "kv_len");
  }
  free(plan_for_lens);
  memcpy(lens, f->c.kv_lens, sizeof lens);
  lens[3] = -1;
  expect_run_tensors("run negative kv_len", f, &bad, PADEC_STATUS_KV_LEN_EXCEEDS_PAGES, "kv_len");

  /* Page ids outside the pool: past the end, negative, and a pool declared too small. */
  const int32_t pages = f->c.page_indptr[f->c.batch];
  int32_t *indices = malloc(sizeof(int32_t) * (size_t)pages);
  if (!indices) exit(1);
  const int32_t first_used = f->c.page_indptr[1]; /* sequence 1 uses its first page */
  const int32_t bad_ids[] = {(int32_t)f->c.num_pages, -1, INT32_MAX};
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; ++i) {
    memcpy(indices, f->c.page_indices, sizeof(int32_t) * (size_t)pages);
    indices[first_used] = bad_ids[i];
    bad = fixture_tensors(f);
    bad.page_indices = indices;
    char what[64];
    snprintf(what, sizeof what, "run page id %d", bad_ids[i]);
    expect_run_tensors(what, f, &bad, PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "page_indices");
  }
  free(indices);
  int32_t largest_used = 0;
  for (int32_t b = 0; b < f->c.batch; ++b) {
    int32_t used = (f->c.kv_lens[b] + p->page_size - 1) / p->page_size;
    for (int32_t i = 0; i < used; ++i)
      if (f->c.page_indices[f->c.page_indptr[b] + i] > largest_used)
        largest_used = f->c.page_indices[f->c.page_indptr[b] + i];
  }
  bad = fixture_tensors(f);
  bad.num_pages = largest_used;
  expect_run_tensors("run num_pages below a used page id", f, &bad,
                     PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE, "page_indices");
  bad = fixture_tensors(f);
  bad.num_pages = -1;
  expect_run_tensors("run num_pages -1", f, &bad, PADEC_STATUS_BAD_ARGUMENT, "num_pages");

  /* A malformed block table. */
  int32_t indptr[5];
  memcpy(indptr, f->c.page_indptr, sizeof indptr);
  indptr[0] = 1;
  bad = fixture_tensors(f);
  bad.page_indptr = indptr;
  expect_run_tensors("run page_indptr[0] = 1", f, &bad, PADEC_STATUS_BAD_ARGUMENT, "page_indptr");
  memcpy(indptr, f->c.page_indptr, sizeof indptr);
  indptr[2] = indptr[1] - 1;
  bad = fixture_tensors(f);
  bad.page_indptr = indptr;
  expect_run_tensors("run page_indptr decreasing", f, &bad, PADEC_STATUS_BAD_ARGUMENT,
                     "page_indptr");

  /* Negative strides. */
  bad = fixture_tensors(f);
  bad.q_stride_token = -1;
  expect_run_tensors("run q_stride_token -1", f, &bad, PADEC_STATUS_BAD_ARGUMENT, "stride");
  bad = fixture_tensors(f);
  bad.o_stride_head = -64;
  expect_run_tensors("run o_stride_head -64", f, &bad, PADEC_STATUS_BAD_ARGUMENT, "stride");

  /* Invalid params reach the run as well. */
  params_error errors[MAX_PARAMS_ERRORS];
  int count = build_params_errors(errors);
  for (int i = 0; i < count; ++i) {
    char what[160];
    snprintf(what, sizeof what, "run %s", errors[i].what);
    expect_run(what, f, &errors[i].params, &f->layout, f->plan, &t, f->workspace,
               f->layout.workspace_bytes, errors[i].want, errors[i].needle);
  }
}

/* A plan used with other params, another batch or another worker count. */
static void test_run_plan_mismatch(fixture *f) {
  const padec_params *p = &f->c.params;
  padec_tensors t = fixture_tensors(f);
  const size_t ws = f->layout.workspace_bytes;

  padec_params other = *p;
  other.q_len = 2;
  expect_run("run q_len 2 with a q_len 1 plan", f, &other, &f->layout, f->plan, &t, f->workspace,
             ws, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.window_left = 7;
  expect_run("run window 7 with a plan without window", f, &other, &f->layout, f->plan, &t,
             f->workspace, ws, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.num_q_heads = 16;
  expect_run("run group 8 with a group 4 plan", f, &other, &f->layout, f->plan, &t, f->workspace,
             ws, PADEC_STATUS_PLAN_MISMATCH, "layout");
  other = *p;
  other.num_kv_heads = 4;
  other.num_q_heads = 16;
  expect_run("run 4 KV heads with a 2 KV head plan", f, &other, &f->layout, f->plan, &t,
             f->workspace, ws, PADEC_STATUS_PLAN_MISMATCH, "layout");

  /* The plan of this layout, used with the layout of another batch or worker count. */
  padec_plan_layout other_layout;
  if (padec_plan_layout_init(p, f->c.batch - 1, &f->options, &other_layout) != PADEC_STATUS_OK)
    exit(1);
  expect_run("run a batch-4 plan with a batch-3 layout", f, p, &other_layout, f->plan, &t,
             f->workspace, ws, PADEC_STATUS_PLAN_MISMATCH, "plan");
  padec_plan_options other_options = f->options;
  other_options.num_workers = 8;
  if (padec_plan_layout_init(p, f->c.batch, &other_options, &other_layout) != PADEC_STATUS_OK)
    exit(1);
  expect_run("run a 6-worker plan with an 8-worker layout", f, p, &other_layout, f->plan, &t,
             f->workspace, ws < other_layout.workspace_bytes ? other_layout.workspace_bytes : ws,
             PADEC_STATUS_PLAN_MISMATCH, "plan");
  other_options = f->options;
  other_options.partition_tokens = 32;
  if (padec_plan_layout_init(p, f->c.batch, &other_options, &other_layout) != PADEC_STATUS_OK)
    exit(1);
  expect_run("run a 16-token-partition plan with a 32-token layout", f, p, &other_layout, f->plan,
             &t, f->workspace,
             ws < other_layout.workspace_bytes ? other_layout.workspace_bytes : ws,
             PADEC_STATUS_PLAN_MISMATCH, "plan");

  /* A plan built for other params, presented with a layout of these params. */
  padec_params windowed = *p;
  windowed.window_left = 7;
  padec_plan_layout windowed_layout;
  if (padec_plan_layout_init(&windowed, f->c.batch, &f->options, &windowed_layout) !=
      PADEC_STATUS_OK)
    exit(1);
  void *windowed_plan = alloc_padded(windowed_layout.plan_bytes);
  if (padec_plan_build(&windowed, &windowed_layout, f->c.kv_lens, windowed_plan,
                       windowed_layout.plan_bytes) != PADEC_STATUS_OK)
    exit(1);
  expect_run("run a windowed plan with an unwindowed layout and params", f, p, &f->layout,
             windowed_plan, &t, f->workspace, ws, PADEC_STATUS_PLAN_MISMATCH, "plan");
  free(windowed_plan);

  /* Not a plan at all. */
  void *zeros = alloc_padded(f->layout.plan_bytes);
  expect_run("run a zeroed plan buffer", f, p, &f->layout, zeros, &t, f->workspace, ws,
             PADEC_STATUS_PLAN_MISMATCH, "plan");
  free(zeros);
}

/* A layout edited after padec_plan_layout_init: every entry point that takes a layout rejects it
 * (PLAN_MISMATCH, naming the layout) before it writes anything, instead of indexing the caller's
 * buffers by it. */
typedef struct layout_edit {
  const char *what;
  void (*apply)(padec_plan_layout *layout);
  padec_status want;
  const char *needle;
} layout_edit;

static void more_sequences(padec_plan_layout *l) { l->batch += 16; }
static void no_workers(padec_plan_layout *l) { l->num_workers = 0; }
static void more_workers(padec_plan_layout *l) { l->num_workers += 64; }
static void more_works(padec_plan_layout *l) { l->max_works += 100; }
static void fewer_partial_slots(padec_plan_layout *l) { l->max_partial_slots -= 1; }
static void later_work_info(padec_plan_layout *l) { l->work_info_offset += 16; }
static void smaller_plan(padec_plan_layout *l) { l->plan_bytes -= 16; }
static void default_partitions(padec_plan_layout *l) { l->partition_tokens = 0; }
static void unknown_policy(padec_plan_layout *l) { l->policy = 7; }
static void cost_policy(padec_plan_layout *l) { l->policy = PADEC_POLICY_COST; }
static void smaller_workspace(padec_plan_layout *l) { l->workspace_bytes -= 256; }
static void later_partial_lse(padec_plan_layout *l) { l->partial_lse_offset += 256; }

static void test_edited_layouts(fixture *f) {
  static const layout_edit edits[] = {
      {"batch + 16", more_sequences, PADEC_STATUS_PLAN_MISMATCH, "layout.max_works"},
      {"num_workers 0", no_workers, PADEC_STATUS_PLAN_MISMATCH, "num_workers"},
      {"num_workers + 64", more_workers, PADEC_STATUS_PLAN_MISMATCH, "layout.max_works"},
      {"max_works + 100", more_works, PADEC_STATUS_PLAN_MISMATCH, "layout.max_works"},
      {"max_partial_slots - 1", fewer_partial_slots, PADEC_STATUS_PLAN_MISMATCH, "layout.max_partial_slots"},
      {"work_info_offset + 16", later_work_info, PADEC_STATUS_PLAN_MISMATCH, "layout.work_info_offset"},
      {"plan_bytes - 16", smaller_plan, PADEC_STATUS_PLAN_MISMATCH, "layout.plan_bytes"},
      {"partition_tokens 0", default_partitions, PADEC_STATUS_PLAN_MISMATCH, "layout.partition_tokens"},
      {"policy 7", unknown_policy, PADEC_STATUS_PLAN_MISMATCH, "policy"},
      {"policy cost, no cost units", cost_policy, PADEC_STATUS_PLAN_MISMATCH, "layout"},
      {"workspace_bytes - 256", smaller_workspace, PADEC_STATUS_PLAN_MISMATCH, "layout.workspace_bytes"},
      {"partial_lse_offset + 256", later_partial_lse, PADEC_STATUS_PLAN_MISMATCH, "layout.partial_lse_offset"},
  };
  const padec_params *p = &f->c.params;
  padec_tensors t = fixture_tensors(f);
  const size_t big = 1 << 16;
  void *plan = alloc_padded(big);
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; ++i) {
    padec_plan_layout edited = f->layout;
    edits[i].apply(&edited);
    char what[160];
    snprintf(what, sizeof what, "build with layout %s", edits[i].what);
    expect_build(what, p, &edited, f->c.kv_lens, plan, big, big, edits[i].want, edits[i].needle);
    snprintf(what, sizeof what, "run with layout %s", edits[i].what);
    expect_run(what, f, p, &edited, f->plan, &t, f->workspace, f->layout.workspace_bytes, edits[i].want,
               edits[i].needle);

    padec_plan_view view, before;
    memset(&view, 0x6b, sizeof view);
    before = view;
    int calls = g_log.calls;
    snprintf(what, sizeof what, "view with layout %s", edits[i].what);
    check_failure(what, padec_plan_view_init(&edited, f->plan, &view), edits[i].want, edits[i].needle, calls);
    CHECK(memcmp(&view, &before, sizeof view) == 0, "%s: the view was written", what);

    double worker_ns[64];
    calls = g_log.calls;
    snprintf(what, sizeof what, "predict with layout %s", edits[i].what);
    check_failure(what, padec_plan_predict(p, &edited, f->plan, NULL, worker_ns), edits[i].want,
                  edits[i].needle, calls);

    /* The upload's copy size is the layout's: checked on the host before any CUDA call. */
    snprintf(what, sizeof what, "upload with layout %s", edits[i].what);
    calls = g_log.calls;
#ifdef PADEC_HAVE_CUDA
    check_failure(what, padec_cuda_upload_plan(&edited, f->plan, plan, NULL), edits[i].want, edits[i].needle,
                  calls);
#else
    check_failure(what, padec_cuda_upload_plan(&edited, f->plan, plan, NULL), PADEC_STATUS_NOT_BUILT_WITH_CUDA,
                  "CUDA", calls);
#endif
  }

#ifdef PADEC_HAVE_CUDA
  /* The device scheduler sizes its writes by the layout too (checked before any CUDA call). */
  {
    padec_plan_layout edited = f->layout;
    more_sequences(&edited);
    const int calls = g_log.calls;
    check_failure("device plan build with layout batch + 16",
                  padec_cuda_plan_build(p, &edited, f->c.kv_lens, plan, big, NULL), PADEC_STATUS_PLAN_MISMATCH,
                  "layout.max_works", calls);
  }
#endif

  /* The cost policy's scheduler divides by the worker count: a cost layout with none must be
   * rejected, not crash. */
  padec_plan_options cost = f->options;
  cost.policy = PADEC_POLICY_COST;
  padec_plan_layout cost_layout;
  CHECK(padec_plan_layout_init(p, f->c.batch, &cost, &cost_layout) == PADEC_STATUS_OK, "%s",
        padec_last_message());
  cost_layout.num_workers = 0;
  expect_build("build with a cost layout of 0 workers", p, &cost_layout, f->c.kv_lens, plan, big, big,
               PADEC_STATUS_PLAN_MISMATCH, "layout");

  /* A plan of another policy (a larger buffer) with this layout: the header says so. */
  padec_plan_options invariant = f->options;
  invariant.policy = PADEC_POLICY_BATCH_INVARIANT;
  padec_plan_layout invariant_layout;
  CHECK(padec_plan_layout_init(p, f->c.batch, &invariant, &invariant_layout) == PADEC_STATUS_OK &&
            invariant_layout.plan_bytes <= big,
        "%s", padec_last_message());
  CHECK(padec_plan_build(p, &invariant_layout, f->c.kv_lens, plan, big) == PADEC_STATUS_OK, "%s",
        padec_last_message());
  expect_run("run a batch_invariant plan with the even layout", f, p, &f->layout, plan, &t, f->workspace,
             f->layout.workspace_bytes, PADEC_STATUS_PLAN_MISMATCH, "policy");
  padec_plan_view view, before;
  memset(&view, 0x6b, sizeof view);
  before = view;
  int calls = g_log.calls;
  check_failure("view a batch_invariant plan with the even layout", padec_plan_view_init(&f->layout, plan, &view),
                PADEC_STATUS_PLAN_MISMATCH, "policy", calls);
  CHECK(memcmp(&view, &before, sizeof view) == 0, "view of another policy's plan: the view was written");
  calls = g_log.calls;
#ifdef PADEC_HAVE_CUDA
  check_failure("upload a batch_invariant plan with the even layout",
                padec_cuda_upload_plan(&f->layout, plan, f->workspace, NULL), PADEC_STATUS_PLAN_MISMATCH,
                "host_plan", calls);
#endif
  /* Not a plan: the view is not written either. */
  memset(plan, 0, big);
  calls = g_log.calls;
  check_failure("view a zeroed buffer", padec_plan_view_init(&f->layout, plan, &view), PADEC_STATUS_PLAN_MISMATCH,
                "plan", calls);
  CHECK(memcmp(&view, &before, sizeof view) == 0, "view of a zeroed buffer: the view was written");
  free(plan);
}

static void test_run_scale_errors(void) {
  padec_params params = valid_params();
  params.kv_dtype = PADEC_DTYPE_E4M3;
  params.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
  fixture f;
  fixture_init(&f, &params);
  padec_tensors bad = fixture_tensors(&f);
  bad.k_scales = NULL;
  expect_run_tensors("run per-token k_scales NULL", &f, &bad, PADEC_STATUS_BAD_SCALES, "k_scales");
  bad = fixture_tensors(&f);
  bad.v_scales = NULL;
  expect_run_tensors("run per-token v_scales NULL", &f, &bad, PADEC_STATUS_BAD_SCALES, "v_scales");
  unsigned char *scales_copy = alloc_padded(f.c.scales_bytes);
  memcpy(scales_copy + 2, f.c.k_scales, f.c.scales_bytes);
  bad = fixture_tensors(&f);
  bad.k_scales = (const float *)(const void *)(scales_copy + 2);
  expect_run_tensors("run per-token k_scales misaligned", &f, &bad, PADEC_STATUS_MISALIGNED_POINTER,
                     "k_scales");
  free(scales_copy);
  fixture_free(&f);

  params.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
  fixture_init(&f, &params);
  bad = fixture_tensors(&f);
  bad.v_scales = NULL;
  expect_run_tensors("run device scales v_scales NULL", &f, &bad, PADEC_STATUS_BAD_SCALES,
                     "v_scales");
  const float bad_values[] = {0.0f, -1.0f, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; ++i) {
    float k_value = bad_values[i], v_value = f.c.v_scales[0];
    padec_tensors device = fixture_tensors(&f);
    device.k_scales = &k_value;
    device.v_scales = &v_value;
    char what[64];
    snprintf(what, sizeof what, "run device k_scale %g", (double)bad_values[i]);
    expect_run_tensors(what, &f, &device, PADEC_STATUS_BAD_SCALES, "k_scales");
    k_value = f.c.k_scales[0];
    v_value = bad_values[i];
    snprintf(what, sizeof what, "run device v_scale %g", (double)bad_values[i]);
    expect_run_tensors(what, &f, &device, PADEC_STATUS_BAD_SCALES, "v_scales");
  }
  fixture_free(&f);
}

/* The fixture itself must run, or every check above would pass for the wrong reason. */
static void test_fixture_runs(fixture *f) {
  padec_tensors t = fixture_tensors(f);
  padec_case_poison(&f->c, f->o, f->lse);
  padec_status status =
      padec_cpu_run(&f->c.params, &f->layout, f->plan, &t, f->workspace, f->layout.workspace_bytes);
  CHECK(status == PADEC_STATUS_OK, "the valid fixture fails: %s", padec_last_message());
  padec_check_result result;
  CHECK(padec_check_output(&f->c, f->o, f->lse, &result) == 0 && result.pass,
        "the valid fixture's output is wrong");
}

/* ---- the status table ------------------------------------------------------------------------ */

static void test_status_table(void) {
  int count = 0;
#define CHECK_STATUS_(name, value, message)                                                        \
  CHECK((int)(name) == (value), "%s has value %d", #name, (int)(name));                            \
  CHECK(strcmp(padec_status_name(name), #name) == 0, "padec_status_name(%d) = %s", (value),        \
        padec_status_name(name));                                                                  \
  CHECK(strcmp(padec_status_str(name), message) == 0 && padec_status_str(name)[0] != '\0',         \
        "padec_status_str(%d) = %s", (value), padec_status_str(name));                             \
  count += 1;
  PADEC_STATUS_TABLE(CHECK_STATUS_)
#undef CHECK_STATUS_
  CHECK(count >= 20, "the status table has only %d entries", count);
  const int unknown[] = {-1, 1, 99, 111, 299, 999, 12345};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; ++i) {
    padec_status s = (padec_status)unknown[i];
    CHECK(strcmp(padec_status_name(s), "PADEC_STATUS_UNKNOWN") == 0, "padec_status_name(%d) = %s",
          unknown[i], padec_status_name(s));
    CHECK(padec_status_str(s) != NULL && padec_status_str(s)[0] != '\0',
          "padec_status_str(%d) is empty", unknown[i]);
  }
  CHECK(padec_version_number() == PADEC_VERSION_NUMBER, "padec_version_number() = %u",
        padec_version_number());
}

int main(void) {
  padec_set_log_callback(record_log, &g_log);
  test_status_table();
  test_layout_errors();
  test_build_errors();

  padec_params params = valid_params();
  fixture f;
  fixture_init(&f, &params);
  test_fixture_runs(&f);
  test_run_pointer_errors(&f);
  test_run_data_errors(&f);
  test_run_plan_mismatch(&f);
  test_edited_layouts(&f);
  test_fixture_runs(&f);
  fixture_free(&f);
  test_run_scale_errors();

  padec_set_log_callback(NULL, NULL);
  if (test_failures) {
    fprintf(stderr, "test_api_errors: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_api_errors: all checks passed\n");
  return 0;
}
