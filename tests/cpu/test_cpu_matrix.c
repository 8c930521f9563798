/*
 * The CPU executor (plan layout, plan build, padec_cpu_run) against the oracle over a matrix of
 * cases. The full cartesian product would take hours, so every axis is swept against a base case,
 * a few known-hard combinations are added, and a seeded random sample covers the interactions.
 * Each case runs twice: with forced splits (many workers, 16-token partitions, so that most
 * sequences are cut into pieces and merged) and without (one worker per KV head); and once more
 * with the same workers under the cost policy (its splits, and its spare worker's direct items).
 * The random sample alternates the even and cost policies.
 *
 * Also: lse may be NULL, strided q and o give the same bytes as packed ones and leave the gaps
 * alone, two runs give identical bytes, and an empty batch runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_support.h"

enum { MAX_BATCH = 32 };

static int g_cases_run;
static int g_split_runs, g_split_runs_with_merges;
static int g_cost_runs, g_cost_runs_with_merges;

static void *alloc_or_die(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

static void die_case(const char *label, const padec_case *c, const padec_check_result *result,
                     const char *why) {
  fprintf(stderr, "FAIL %s: %s\n", label, why);
  padec_check_print(stderr, label, c, result);
  exit(1);
}

static void die_status(const char *label, const padec_case *c, const char *call,
                       padec_status status) {
  char why[640];
  snprintf(why, sizeof why, "%s returned %s: %s", call, padec_status_name(status),
           padec_last_message());
  die_case(label, c, NULL, why);
}

/* A plan and workspace for one (case, options), in 64-byte aligned buffers. */
typedef struct built_plan {
  padec_plan_layout layout;
  void *plan;
  void *workspace;
} built_plan;

static void build_plan(const char *label, const padec_case *c, const padec_plan_options *options,
                       built_plan *out) {
  padec_status status = padec_plan_layout_init(&c->params, c->batch, options, &out->layout);
  if (status != PADEC_STATUS_OK) die_status(label, c, "padec_plan_layout_init", status);
  out->plan = alloc_or_die(out->layout.plan_bytes);
  out->workspace = alloc_or_die(out->layout.workspace_bytes);
  status =
      padec_plan_build(&c->params, &out->layout, c->kv_lens, out->plan, out->layout.plan_bytes);
  if (status != PADEC_STATUS_OK) die_status(label, c, "padec_plan_build", status);
}

static void free_plan(built_plan *p) {
  free(p->plan);
  free(p->workspace);
}

static void run_plan(const char *label, const padec_case *c, const built_plan *p,
                     const padec_tensors *tensors) {
  padec_status status = padec_cpu_run(&c->params, &p->layout, p->plan, tensors, p->workspace,
                                      p->layout.workspace_bytes);
  if (status != PADEC_STATUS_OK) die_status(label, c, "padec_cpu_run", status);
}

static size_t lse_bytes(const padec_case *c) {
  return sizeof(float) * (size_t)c->num_tokens * (size_t)c->params.num_q_heads;
}

/* Poisons, runs one plan and checks every element of o and lse against the oracle. Returns the
 * number of merge groups of the plan (sequences that were split). */
static int32_t run_and_check(const char *label, const padec_case *c,
                             const padec_plan_options *options) {
  built_plan p;
  build_plan(label, c, options, &p);
  void *o = alloc_or_die(c->o_bytes);
  float *lse = alloc_or_die(lse_bytes(c));
  padec_case_poison(c, o, lse);
  padec_tensors tensors = padec_case_tensors(c, o, lse);
  run_plan(label, c, &p, &tensors);
  padec_check_result result;
  if (padec_check_output(c, o, lse, &result) != 0) die_case(label, c, NULL, "the oracle failed");
  if (!result.pass) {
    char why[160];
    snprintf(why, sizeof why, "output outside tolerance (workers %d, partition_tokens %d)",
             options->num_workers, p.layout.partition_tokens);
    die_case(label, c, &result, why);
  }
  int32_t num_groups = ((const padec_plan_header *)p.plan)->num_groups;
  free(o);
  free(lse);
  free_plan(&p);
  g_cases_run += 1;
  return num_groups;
}

/* The grid path on the same case: poisons, runs padec_cpu_run_grid with num_splits, checks. */
static void run_grid_and_check(const char *label, const padec_case *c, int32_t num_splits) {
  padec_grid_layout layout;
  padec_status status = padec_grid_layout_init(&c->params, c->batch, num_splits, 16, &layout);
  if (status != PADEC_STATUS_OK) die_status(label, c, "padec_grid_layout_init", status);
  void *workspace = alloc_or_die(layout.workspace_bytes);
  void *o = alloc_or_die(c->o_bytes);
  float *lse = alloc_or_die(lse_bytes(c));
  padec_case_poison(c, o, lse);
  padec_tensors tensors = padec_case_tensors(c, o, lse);
  status = padec_cpu_run_grid(&c->params, &layout, &tensors, workspace, layout.workspace_bytes);
  if (status != PADEC_STATUS_OK) die_status(label, c, "padec_cpu_run_grid", status);
  padec_check_result result;
  if (padec_check_output(c, o, lse, &result) != 0) die_case(label, c, NULL, "the oracle failed");
  if (!result.pass) {
    char why[160];
    snprintf(why, sizeof why, "grid path output outside tolerance (%d splits)", num_splits);
    die_case(label, c, &result, why);
  }
  free(o);
  free(lse);
  free(workspace);
  g_cases_run += 1;
}

static padec_plan_options no_split_options(const padec_params *params) {
  padec_plan_options options = {params->num_kv_heads, 256, PADEC_POLICY_EVEN};
  return options;
}

/* 37 bins per head plus one spare worker: most sequences are cut, and the worker count is not a
 * multiple of the head count. */
static padec_plan_options split_options(const padec_params *params) {
  padec_plan_options options = {params->num_kv_heads * 37 + 1, 16, PADEC_POLICY_EVEN};
  return options;
}

static void check_case(const char *label, const padec_params *params, int32_t batch,
                       const int32_t *kv_lens, uint64_t seed) {
  padec_case c;
  if (padec_case_init(&c, params, batch, kv_lens, seed) != 0) {
    fprintf(stderr, "FAIL %s: padec_case_init failed\n", label);
    exit(1);
  }
  padec_plan_options split = split_options(&c.params), no_split = no_split_options(&c.params);
  g_split_runs += 1;
  if (run_and_check(label, &c, &split) > 0) g_split_runs_with_merges += 1;
  run_and_check(label, &c, &no_split);
  padec_plan_options cost = split;
  cost.policy = PADEC_POLICY_COST;
  g_cost_runs += 1;
  if (run_and_check(label, &c, &cost) > 0) g_cost_runs_with_merges += 1;
  /* The grid path, with a split count that varies from case to case (1 writes directly). */
  run_grid_and_check(label, &c, 1 + (int32_t)(seed % 7));
  padec_case_free(&c);
}

/* Lengths that stress one configuration: empty, shorter than q_len, around page and partition
 * boundaries, and one of a few thousand tokens. */
static int32_t boundary_lengths(const padec_params *params, int32_t *lens) {
  const int32_t q_len = params->q_len ? params->q_len : 1, page = params->page_size;
  const int32_t candidates[] = {0,    1,        q_len - 1,    q_len, 2,   17,  page - 1,
                                page, page + 1, 2 * page + 1, 255,   256, 257, 3001};
  int32_t n = 0;
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; ++i)
    if (candidates[i] >= 0 && candidates[i] <= 4096) lens[n++] = candidates[i];
  return n;
}

static padec_params base_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = 2;
  p.num_q_heads = 8;
  p.head_dim = 128;
  p.page_size = 16;
  p.kv_layout = PADEC_LAYOUT_NHD;
  p.q_dtype = PADEC_DTYPE_BF16;
  p.kv_dtype = PADEC_DTYPE_BF16;
  p.o_dtype = PADEC_DTYPE_BF16;
  p.q_len = 1;
  return p;
}

static uint64_t g_seed = 0x5eed0001;

static void check_with_boundary_lengths(const char *label, const padec_params *params) {
  int32_t lens[MAX_BATCH];
  int32_t batch = boundary_lengths(params, lens);
  check_case(label, params, batch, lens, g_seed++);
}

static void sweep_axes(void) {
  char label[128];
  padec_params p = base_params();
  check_with_boundary_lengths("base", &p);

  const padec_dtype kv_dtypes[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16};
  for (size_t i = 0; i < 2; ++i) {
    p = base_params();
    p.kv_dtype = kv_dtypes[i];
    snprintf(label, sizeof label, "kv_dtype %d", (int)kv_dtypes[i]);
    check_with_boundary_lengths(label, &p);
  }
  const padec_fp8_scale_mode modes[] = {PADEC_FP8_SCALE_NONE, PADEC_FP8_SCALE_PER_TENSOR,
                                        PADEC_FP8_SCALE_PER_TENSOR_DEVICE,
                                        PADEC_FP8_SCALE_PER_TOKEN};
  for (size_t i = 0; i < 4; ++i) {
    p = base_params();
    p.kv_dtype = PADEC_DTYPE_E4M3;
    p.fp8_scale_mode = modes[i];
    snprintf(label, sizeof label, "e4m3 scale mode %d", (int)modes[i]);
    check_with_boundary_lengths(label, &p);
  }
  p = base_params();
  p.q_dtype = PADEC_DTYPE_FP16;
  check_with_boundary_lengths("q fp16", &p);

  const padec_dtype o_dtypes[] = {PADEC_DTYPE_FP16, PADEC_DTYPE_FP32};
  for (size_t i = 0; i < 2; ++i) {
    p = base_params();
    p.o_dtype = o_dtypes[i];
    snprintf(label, sizeof label, "o_dtype %d", (int)o_dtypes[i]);
    check_with_boundary_lengths(label, &p);
  }
  p = base_params();
  p.kv_layout = PADEC_LAYOUT_HND;
  check_with_boundary_lengths("layout hnd", &p);

  for (int32_t page = 1; page <= 1024; page *= 2) {
    p = base_params();
    p.page_size = page;
    snprintf(label, sizeof label, "page_size %d", page);
    check_with_boundary_lengths(label, &p);
  }
  const int32_t head_dims[] = {64, 256};
  for (size_t i = 0; i < 2; ++i) {
    p = base_params();
    p.head_dim = head_dims[i];
    snprintf(label, sizeof label, "head_dim %d", head_dims[i]);
    check_with_boundary_lengths(label, &p);
  }
  /* Up to 64 query rows a KV head (q_len x group), the most padec_params_validate accepts. */
  const int32_t groups[] = {1, 5, 8, 16, 32, 64};
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; ++i) {
    p = base_params();
    p.num_q_heads = p.num_kv_heads * groups[i];
    snprintf(label, sizeof label, "group %d", groups[i]);
    check_with_boundary_lengths(label, &p);
  }
  const int32_t kv_heads[] = {1, 3};
  for (size_t i = 0; i < 2; ++i) {
    p = base_params();
    p.num_kv_heads = kv_heads[i];
    p.num_q_heads = 4 * kv_heads[i];
    snprintf(label, sizeof label, "num_kv_heads %d", kv_heads[i]);
    check_with_boundary_lengths(label, &p);
  }
  for (int32_t q_len = 2; q_len <= 4; ++q_len) {
    p = base_params();
    p.q_len = q_len;
    snprintf(label, sizeof label, "q_len %d", q_len);
    check_with_boundary_lengths(label, &p);
  }
  const int32_t windows[] = {7, 100, 5000};
  for (size_t i = 0; i < 3; ++i) {
    for (int32_t q_len = 1; q_len <= 4; q_len += 3) {
      p = base_params();
      p.window_left = windows[i];
      p.q_len = q_len;
      snprintf(label, sizeof label, "window %d q_len %d", windows[i], q_len);
      check_with_boundary_lengths(label, &p);
    }
  }
  /* The largest window: its arithmetic (last position - window) must not wrap in 32 bits, even
   * for sequences shorter than q_len. */
  for (int32_t q_len = 1; q_len <= 4; q_len += 3) {
    p = base_params();
    p.window_left = INT32_MAX;
    p.q_len = q_len;
    snprintf(label, sizeof label, "window INT32_MAX q_len %d", q_len);
    check_with_boundary_lengths(label, &p);
  }
  p = base_params();
  p.softmax_scale = 0.3f;
  check_with_boundary_lengths("softmax_scale 0.3", &p);
  /* Peaked softmax: scores spread over tens of binades (the row's running max jumps by up to
   * about 100 binades along a sequence), for the executor's rescale and the oracle alike. The
   * GPU matrix has the same scales for the kernel's lazy rescale; the CPU rescales eagerly. */
  const float peaked[] = {2.0f, 8.0f, 1e8f};
  for (int i = 0; i < 3; ++i) {
    p = base_params();
    p.softmax_scale = peaked[i];
    const char *kind = "";
    if (i == 1) {
      p.kv_dtype = PADEC_DTYPE_E4M3;
      p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
      kind = ", e4m3 per-token";
    } else if (i == 2) {
      p.kv_dtype = PADEC_DTYPE_FP16;
      p.o_dtype = PADEC_DTYPE_FP16;
      kind = ", fp16 kv and o";
    }
    snprintf(label, sizeof label, "softmax_scale %g%s", (double)peaked[i], kind);
    check_with_boundary_lengths(label, &p);
  }
}

/* Combinations that stress several code paths at once. */
static void hard_combinations(void) {
  padec_params p = base_params();
  p.q_len = 4;
  p.window_left = 7;
  p.page_size = 1;
  p.kv_layout = PADEC_LAYOUT_HND;
  p.kv_dtype = PADEC_DTYPE_E4M3;
  p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
  p.o_dtype = PADEC_DTYPE_FP32;
  check_with_boundary_lengths("q_len 4 window 7 page 1 hnd e4m3 per-token o fp32", &p);

  p = base_params();
  p.q_len = 3;
  p.window_left = 100;
  p.page_size = 1024;
  p.num_q_heads = 2 * 16;
  p.head_dim = 256;
  p.q_dtype = PADEC_DTYPE_FP16;
  p.o_dtype = PADEC_DTYPE_FP16;
  check_with_boundary_lengths("q_len 3 window 100 page 1024 group 16 head_dim 256 fp16", &p);

  p = base_params();
  p.q_len = 2;
  p.num_kv_heads = 3;
  p.num_q_heads = 15;
  p.head_dim = 64;
  p.page_size = 32;
  p.kv_dtype = PADEC_DTYPE_E4M3;
  p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
  p.kv_layout = PADEC_LAYOUT_HND;
  check_with_boundary_lengths("q_len 2 group 5 three kv heads page 32 e4m3 device scales", &p);
}

static uint64_t g_rng = 0x6d617472697831ull;

static uint32_t random_below(uint32_t bound) {
  return (uint32_t)(test_splitmix64(&g_rng) % bound);
}

static int32_t random_length(const padec_params *p) {
  switch (random_below(6)) {
    case 0:
      return (int32_t)random_below(5); /* 0 .. 4: empty and shorter than q_len */
    case 1:
      return p->page_size * (int32_t)(1 + random_below(4)) - 1 + (int32_t)random_below(3);
    case 2:
      return 16 * (int32_t)(1 + random_below(64)) - 1 + (int32_t)random_below(3);
    case 3:
      return 1000 + (int32_t)random_below(3000);
    default:
      return (int32_t)random_below(600);
  }
}

static void random_sample(int count) {
  static const padec_dtype kv_dtypes[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3};
  static const int32_t head_dims[] = {64, 128, 256};
  static const int32_t groups[] = {1, 4, 5, 8, 16};
  static const int32_t windows[] = {0, 0, 7, 100, 5000};
  for (int n = 0; n < count; ++n) {
    padec_params p;
    memset(&p, 0, sizeof p);
    p.num_kv_heads = 1 + (int32_t)random_below(3);
    p.num_q_heads = p.num_kv_heads * groups[random_below(5)];
    p.head_dim = head_dims[random_below(3)];
    p.page_size = 1 << random_below(11);
    p.kv_layout = (padec_layout)random_below(2);
    p.q_dtype = random_below(2) ? PADEC_DTYPE_BF16 : PADEC_DTYPE_FP16;
    p.kv_dtype = kv_dtypes[random_below(3)];
    p.o_dtype = (padec_dtype)random_below(3);
    p.q_len = 1 + (int32_t)random_below(4);
    p.window_left = windows[random_below(5)];
    if (p.kv_dtype == PADEC_DTYPE_E4M3) p.fp8_scale_mode = (padec_fp8_scale_mode)random_below(4);

    /* Keep the work of one case near that of the base case: fewer tokens for bigger heads. */
    int32_t token_budget = 120000 / (p.num_q_heads * p.head_dim / 64);
    int32_t batch = 1 + (int32_t)random_below(12), lens[MAX_BATCH], total = 0;
    for (int32_t b = 0; b < batch; ++b) {
      lens[b] = random_length(&p);
      if (total + lens[b] > token_budget) lens[b] = (int32_t)random_below(64);
      total += lens[b];
    }

    /* Every fourth case's pools are strided: two pages apart (as a cache that keeps a block's
     * K and V side by side) or 16 bytes beyond a page, the gaps NaN. */
    const int64_t page_elems = (int64_t)p.page_size * p.num_kv_heads * p.head_dim;
    const int64_t element_bytes = p.kv_dtype == PADEC_DTYPE_E4M3 ? 1 : 2;
    int64_t kv_page_stride = 0;
    if (n % 4 == 1) kv_page_stride = random_below(2) ? 2 * page_elems : page_elems + 16 / element_bytes;
    padec_case c;
    if (padec_case_init_strided(&c, &p, batch, lens, g_seed++, kv_page_stride) != 0) {
      fprintf(stderr, "FAIL random case %d: padec_case_init failed\n", n);
      exit(1);
    }
    /* The three policies in turn, and the grid path (1 to 9 splits) on every third case. */
    static const padec_policy policies[] = {PADEC_POLICY_EVEN, PADEC_POLICY_COST, PADEC_POLICY_BATCH_INVARIANT};
    padec_plan_options options = {1 + (int32_t)random_below(200), 16 << random_below(7), policies[n % 3]};
    char label[64];
    snprintf(label, sizeof label, "random case %d", n);
    run_and_check(label, &c, &options);
    if (n % 3 == 2) run_grid_and_check(label, &c, 1 + (int32_t)random_below(9));
    padec_case_free(&c);
  }
}

/* lse NULL, strided q and o, repeatability and the empty batch. */
static void check_tensor_variants(void) {
  padec_params p = base_params();
  p.q_len = 2;
  p.window_left = 100;
  int32_t lens[MAX_BATCH];
  int32_t batch = boundary_lengths(&p, lens);
  padec_case c;
  if (padec_case_init(&c, &p, batch, lens, g_seed++) != 0) exit(1);
  padec_plan_options options = split_options(&c.params);
  built_plan plan;
  build_plan("variants", &c, &options, &plan);

  void *o = alloc_or_die(c.o_bytes), *o_again = alloc_or_die(c.o_bytes);
  float *lse = alloc_or_die(lse_bytes(&c)), *lse_again = alloc_or_die(lse_bytes(&c));
  padec_case_poison(&c, o, lse);
  padec_tensors tensors = padec_case_tensors(&c, o, lse);
  run_plan("variants", &c, &plan, &tensors);
  padec_check_result result;
  if (padec_check_output(&c, o, lse, &result) != 0 || !result.pass)
    die_case("variants", &c, &result, "packed run outside tolerance");

  padec_case_poison(&c, o_again, lse_again);
  tensors = padec_case_tensors(&c, o_again, lse_again);
  run_plan("variants", &c, &plan, &tensors);
  if (memcmp(o, o_again, c.o_bytes) != 0 || memcmp(lse, lse_again, lse_bytes(&c)) != 0)
    die_case("variants", &c, NULL, "two runs of the same plan differ");

  padec_case_poison(&c, o_again, NULL);
  tensors = padec_case_tensors(&c, o_again, NULL);
  run_plan("variants", &c, &plan, &tensors);
  if (memcmp(o, o_again, c.o_bytes) != 0)
    die_case("variants", &c, NULL, "o differs when lse is NULL");

  /* kv_page_stride given as one page, not 0: the same pools, the same bytes. */
  padec_case_poison(&c, o_again, lse_again);
  tensors = padec_case_tensors(&c, o_again, lse_again);
  tensors.kv_page_stride = (int64_t)c.params.page_size * c.params.num_kv_heads * c.params.head_dim;
  run_plan("variants", &c, &plan, &tensors);
  if (memcmp(o, o_again, c.o_bytes) != 0 || memcmp(lse, lse_again, lse_bytes(&c)) != 0)
    die_case("variants", &c, NULL, "kv_page_stride of one page differs from 0");

  /* Strided q and o: padding between heads and between tokens. */
  const int64_t heads = c.params.num_q_heads, dim = c.params.head_dim;
  const int64_t stride_head = dim + 8, stride_token = heads * stride_head + 24;
  const size_t elem = 2; /* bf16 q and o */
  const size_t strided_bytes = (size_t)(c.num_tokens * stride_token) * elem;
  unsigned char *q_strided = alloc_or_die(strided_bytes), *o_strided = alloc_or_die(strided_bytes);
  memset(q_strided, 0x7f, strided_bytes); /* large finite bf16 values: wrong reads show */
  memset(o_strided, 0xa5, strided_bytes);
  for (int64_t token = 0; token < c.num_tokens; ++token)
    for (int64_t h = 0; h < heads; ++h)
      memcpy(q_strided + (size_t)(token * stride_token + h * stride_head) * elem,
             (const unsigned char *)c.q + (size_t)((token * heads + h) * dim) * elem,
             (size_t)dim * elem);
  tensors = padec_case_tensors(&c, o_strided, lse_again);
  tensors.q = q_strided;
  tensors.q_stride_token = stride_token;
  tensors.q_stride_head = stride_head;
  tensors.o_stride_token = stride_token;
  tensors.o_stride_head = stride_head;
  padec_case_poison(&c, NULL, lse_again);
  run_plan("variants strided", &c, &plan, &tensors);
  for (int64_t token = 0; token < c.num_tokens; ++token) {
    for (int64_t h = 0; h < heads; ++h) {
      const unsigned char *got =
          o_strided + (size_t)(token * stride_token + h * stride_head) * elem;
      if (memcmp(got, (const unsigned char *)o + (size_t)((token * heads + h) * dim) * elem,
                 (size_t)dim * elem) != 0)
        die_case("variants strided", &c, NULL, "strided o differs from the packed run");
      const unsigned char *gap = got + (size_t)dim * elem;
      size_t gap_bytes = (size_t)(h + 1 < heads ? stride_head - dim
                                                : stride_token - (heads - 1) * stride_head - dim) *
                         elem;
      for (size_t i = 0; i < gap_bytes; ++i)
        if (gap[i] != 0xa5)
          die_case("variants strided", &c, NULL, "a gap of strided o was written");
    }
  }
  if (memcmp(lse, lse_again, lse_bytes(&c)) != 0)
    die_case("variants strided", &c, NULL, "lse differs with strided q and o");

  /* Only the token stride padded (heads packed). */
  const int64_t token_only_stride = heads * dim + 40;
  const size_t token_only_bytes = (size_t)(c.num_tokens * token_only_stride) * elem;
  unsigned char *q_rows = alloc_or_die(token_only_bytes), *o_rows = alloc_or_die(token_only_bytes);
  memset(q_rows, 0x7f, token_only_bytes);
  memset(o_rows, 0xa5, token_only_bytes);
  for (int64_t token = 0; token < c.num_tokens; ++token)
    memcpy(q_rows + (size_t)(token * token_only_stride) * elem,
           (const unsigned char *)c.q + (size_t)(token * heads * dim) * elem,
           (size_t)(heads * dim) * elem);
  tensors = padec_case_tensors(&c, o_rows, NULL);
  tensors.q = q_rows;
  tensors.q_stride_token = token_only_stride;
  tensors.o_stride_token = token_only_stride;
  run_plan("variants token stride", &c, &plan, &tensors);
  for (int64_t token = 0; token < c.num_tokens; ++token) {
    const unsigned char *got = o_rows + (size_t)(token * token_only_stride) * elem;
    if (memcmp(got, (const unsigned char *)o + (size_t)(token * heads * dim) * elem,
               (size_t)(heads * dim) * elem) != 0)
      die_case("variants token stride", &c, NULL, "token-strided o differs from the packed run");
    for (size_t i = (size_t)(heads * dim) * elem; i < (size_t)token_only_stride * elem; ++i)
      if (got[i] != 0xa5) die_case("variants token stride", &c, NULL, "a row gap of o was written");
  }

  free(q_strided);
  free(o_strided);
  free(q_rows);
  free(o_rows);
  free(o);
  free(o_again);
  free(lse);
  free(lse_again);
  free_plan(&plan);
  padec_case_free(&c);

  /* An empty batch: nothing to do, and still OK. */
  padec_case empty;
  if (padec_case_init(&empty, &p, 0, NULL, g_seed++) != 0) exit(1);
  padec_plan_options empty_options = split_options(&empty.params);
  built_plan empty_plan;
  build_plan("empty batch", &empty, &empty_options, &empty_plan);
  tensors = padec_case_tensors(&empty, NULL, NULL);
  run_plan("empty batch", &empty, &empty_plan, &tensors);
  free_plan(&empty_plan);
  padec_case_free(&empty);
  g_cases_run += 1;
}

int main(int argc, char **argv) {
  int random_count = argc > 1 ? atoi(argv[1]) : 200;
  sweep_axes();
  hard_combinations();
  check_tensor_variants();
  random_sample(random_count);
  /* Guards against the split configuration silently ceasing to split (a scheduler change). */
  if (g_split_runs_with_merges * 2 < g_split_runs || g_cost_runs_with_merges * 4 < g_cost_runs) {
    fprintf(stderr,
            "FAIL: only %d of %d forced-split runs (even) and %d of %d (cost) merged any split\n",
            g_split_runs_with_merges, g_split_runs, g_cost_runs_with_merges, g_cost_runs);
    return 1;
  }
  printf("test_cpu_matrix: %d runs passed (%d of %d forced-split runs merged splits; cost policy "
         "%d of %d)\n",
         g_cases_run, g_split_runs_with_merges, g_split_runs, g_cost_runs_with_merges,
         g_cost_runs);
  return 0;
}
