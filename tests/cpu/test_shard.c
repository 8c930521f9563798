/*
 * Context-parallel decode on the CPU: a batch split by position into R = 1..8 shards
 * (tests/support/shard_case.h: random cuts with empty shards, reused and copied block tables),
 * each shard run by padec_cpu_run with its own plan (padec_plan_build_shard, random worker
 * counts, partition sizes and both policies), the R results merged by padec_cpu_merge_shards.
 *
 *  1. Every shard's o and LSE meet the tolerance rule against the oracle of that shard, and the
 *     merged o (bf16, fp16 or fp32) and LSE meet it against the oracle of the unsharded batch,
 *     every element, -inf rows included. Two merges give identical bytes; a merge without lse
 *     and a merge into strided o give the same o bytes and leave the gaps alone.
 *  2. R = 1: a shard covering the whole sequence plans the same bytes as padec_plan_build and,
 *     merged, reproduces the single run's o and LSE bit for bit.
 *  3. Argument errors of padec_cpu_merge_shards, padec_plan_build_shard and padec_cpu_run with
 *     shard arrays return the documented statuses, name the sequence where there is one, and
 *     write nothing.
 * A coverage count at the end guards against the generator drifting away from the cases that
 * matter (shards outside every window, empty shards, both table kinds, both policies).
 *
 * Usage: test_shard [cases per shard count]   (default 12)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../support/shard_case.h"

enum { MAX_SHARDS = 8 };

static struct {
  int cases, shard_runs;
  int empty_sequences, short_sequences;  /* seq_len 0; 0 < seq_len < R */
  int empty_shards;                      /* kv_len 0 in a sequence that is not empty */
  int unseen_shards;                     /* kv_len > 0, yet no query sees any of it */
  int partly_seen_shards;                /* some query rows see the shard, others none */
  int reused_tables, copied_tables;
  int policy_even, policy_batch_invariant, policy_cost, grid_runs;
  int strided_merges;
  /* Params seen: kv dtype and scale mode (bf16, fp16, e4m3 x 4 modes), o dtype, head_dim,
   * layout, q_len, windows. */
  int kv_kinds[6], o_dtypes[3], head_dims[3], layouts[2], q_lens[4], windowed;
} g_count;

static void *alloc_or_die(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

static void die_shard_case(const char *label, const shard_case *sc, const char *why) {
  fprintf(stderr, "FAIL %s: %s\n", label, why);
  shard_case_print(stderr, label, sc);
  exit(1);
}

static void die_check(const char *label, const shard_case *sc, const padec_case *c,
                      const padec_check_result *result, const char *why) {
  fprintf(stderr, "FAIL %s: %s\n", label, why);
  padec_check_print(stderr, label, c, result);
  shard_case_print(stderr, label, sc);
  exit(1);
}

static void die(const char *what) {
  fprintf(stderr, "FAIL %s (last message: \"%s\")\n", what, padec_last_message());
  exit(1);
}

static void count_case(const shard_case *sc, const float *shard_lse) {
  const int32_t R = sc->num_shards, batch = sc->whole.batch;
  const int32_t q_len = sc->whole.params.q_len, heads = sc->whole.params.num_q_heads;
  const size_t lse_elems = shard_case_lse_elems(sc);
  const padec_params *p = &sc->whole.params;
  g_count.cases += 1;
  g_count.shard_runs += R;
  g_count.kv_kinds[p->kv_dtype == PADEC_DTYPE_E4M3 ? 2 + (int)p->fp8_scale_mode
                                                   : (int)p->kv_dtype] += 1;
  g_count.o_dtypes[p->o_dtype] += 1;
  g_count.head_dims[p->head_dim == 64 ? 0 : p->head_dim == 128 ? 1 : 2] += 1;
  g_count.layouts[p->kv_layout] += 1;
  g_count.q_lens[p->q_len - 1] += 1;
  g_count.windowed += p->window_left > 0;
  for (int32_t r = 0; r < R; ++r) {
    if (sc->grid_splits[r] > 0)
      g_count.grid_runs += 1;
    else if (sc->options[r].policy == PADEC_POLICY_EVEN)
      g_count.policy_even += 1;
    else if (sc->options[r].policy == PADEC_POLICY_COST)
      g_count.policy_cost += 1;
    else
      g_count.policy_batch_invariant += 1;
  }
  for (int32_t b = 0; b < batch; ++b) {
    const int32_t seq_len = sc->whole.kv_lens[b];
    if (seq_len == 0) g_count.empty_sequences += 1;
    if (seq_len > 0 && seq_len < R) g_count.short_sequences += 1;
    for (int32_t r = 0; r < R; ++r) {
      const size_t at = (size_t)r * (size_t)batch + (size_t)b;
      if (sc->table_kind[at] == SHARD_TABLE_REUSED) g_count.reused_tables += 1;
      if (sc->table_kind[at] == SHARD_TABLE_COPIED) g_count.copied_tables += 1;
      if (sc->kv_lens[at] == 0) {
        if (seq_len > 0) g_count.empty_shards += 1;
        continue;
      }
      const float *lse =
          shard_lse + (size_t)r * lse_elems + (size_t)b * (size_t)q_len * (size_t)heads;
      int unseen = 0;
      for (int32_t i = 0; i < q_len * heads; ++i) unseen += isinf(lse[i]) && lse[i] < 0;
      if (unseen == q_len * heads) g_count.unseen_shards += 1;
      else if (unseen > 0) g_count.partly_seen_shards += 1;
    }
  }
}

/* Merges into o with strides (gaps between heads and tokens filled with 0xa5) and requires the
 * packed bytes of `packed` and untouched gaps. */
static void check_strided_merge(const char *label, const shard_case *sc, const float *shard_o,
                                const float *shard_lse, const void *packed) {
  const padec_params *p = &sc->whole.params;
  const size_t elem = p->o_dtype == PADEC_DTYPE_FP32 ? 4 : 2;
  const int64_t heads = p->num_q_heads, dim = p->head_dim;
  const int64_t stride_head = dim + 8, stride_token = heads * stride_head + 24;
  const int64_t tokens = sc->whole.num_tokens;
  const size_t bytes = (size_t)(tokens * stride_token) * elem;
  unsigned char *o = alloc_or_die(bytes);
  memset(o, 0xa5, bytes);
  padec_shard_merge_tensors t = shard_case_merge_tensors(sc, shard_o, shard_lse, o, NULL);
  t.o_stride_head = stride_head;
  t.o_stride_token = stride_token;
  if (padec_cpu_merge_shards(p, &t) != PADEC_STATUS_OK)
    die_shard_case(label, sc, "strided merge failed");
  for (int64_t token = 0; token < tokens; ++token) {
    for (int64_t h = 0; h < heads; ++h) {
      const unsigned char *got = o + (size_t)(token * stride_token + h * stride_head) * elem;
      const unsigned char *want =
          (const unsigned char *)packed + (size_t)((token * heads + h) * dim) * elem;
      if (memcmp(got, want, (size_t)dim * elem) != 0)
        die_shard_case(label, sc, "strided merge differs from the packed merge");
      const int64_t gap_end = h + 1 < heads ? stride_head : stride_token - h * stride_head;
      for (int64_t i = dim * (int64_t)elem; i < gap_end * (int64_t)elem; ++i)
        if (got[i] != 0xa5) die_shard_case(label, sc, "the strided merge wrote into a gap");
    }
  }
  free(o);
  g_count.strided_merges += 1;
}

/* One random case: every shard against its oracle, the merge against the unsharded oracle,
 * repeatability and the merge variants. */
static void check_case(const char *label, const shard_case *sc, int strided) {
  const int32_t R = sc->num_shards;
  const padec_case *whole = &sc->whole;
  const size_t o_elems = shard_case_o_elems(sc), lse_elems = shard_case_lse_elems(sc);
  float *shard_o = alloc_or_die(sizeof(float) * o_elems * (size_t)R);
  float *shard_lse = alloc_or_die(sizeof(float) * lse_elems * (size_t)R);
  memset(shard_o, 0xff, sizeof(float) * o_elems * (size_t)R);
  memset(shard_lse, 0xff, sizeof(float) * lse_elems * (size_t)R);
  char why[768];
  padec_check_result result;
  for (int32_t r = 0; r < R; ++r) {
    float *o = shard_o + (size_t)r * o_elems, *lse = shard_lse + (size_t)r * lse_elems;
    const padec_status status = shard_case_run_cpu(sc, r, o, lse);
    if (status != PADEC_STATUS_OK) {
      snprintf(why, sizeof why, "shard %d: %s: %s", r, padec_status_name(status),
               padec_last_message());
      die_shard_case(label, sc, why);
    }
    if (padec_check_output(&sc->shards[r], o, lse, &result) != 0)
      die_shard_case(label, sc, "the oracle failed on a shard");
    if (!result.pass) {
      snprintf(why, sizeof why, "shard %d outside tolerance against its oracle", r);
      die_check(label, sc, &sc->shards[r], &result, why);
    }
  }
  count_case(sc, shard_lse);

  void *o = alloc_or_die(whole->o_bytes), *o_again = alloc_or_die(whole->o_bytes);
  float *lse = alloc_or_die(sizeof(float) * lse_elems);
  float *lse_again = alloc_or_die(sizeof(float) * lse_elems);
  padec_case_poison(whole, o, lse);
  padec_shard_merge_tensors t = shard_case_merge_tensors(sc, shard_o, shard_lse, o, lse);
  padec_status status = padec_cpu_merge_shards(&whole->params, &t);
  if (status != PADEC_STATUS_OK) {
    snprintf(why, sizeof why, "padec_cpu_merge_shards: %s: %s", padec_status_name(status),
             padec_last_message());
    die_shard_case(label, sc, why);
  }
  if (padec_check_output(whole, o, lse, &result) != 0)
    die_shard_case(label, sc, "the oracle failed on the whole batch");
  if (!result.pass) die_check(label, sc, whole, &result, "merged output against the oracle");

  padec_case_poison(whole, o_again, lse_again);
  t = shard_case_merge_tensors(sc, shard_o, shard_lse, o_again, lse_again);
  if (padec_cpu_merge_shards(&whole->params, &t) != PADEC_STATUS_OK ||
      memcmp(o, o_again, whole->o_bytes) != 0 ||
      memcmp(lse, lse_again, sizeof(float) * lse_elems) != 0)
    die_shard_case(label, sc, "two merges of the same shards differ");
  padec_case_poison(whole, o_again, NULL);
  t = shard_case_merge_tensors(sc, shard_o, shard_lse, o_again, NULL);
  if (padec_cpu_merge_shards(&whole->params, &t) != PADEC_STATUS_OK ||
      memcmp(o, o_again, whole->o_bytes) != 0)
    die_shard_case(label, sc, "o differs when the merge has no lse");
  if (strided && whole->num_tokens > 0) check_strided_merge(label, sc, shard_o, shard_lse, o);

  free(o);
  free(o_again);
  free(lse);
  free(lse_again);
  free(shard_o);
  free(shard_lse);
}

static void check_random_cases(int cases_per_count, int32_t token_budget) {
  uint64_t seed = 0x5a4d0001;
  for (int32_t R = 1; R <= MAX_SHARDS; ++R) {
    for (int n = 0; n < cases_per_count; ++n) {
      shard_case sc;
      if (shard_case_random(&sc, R, token_budget, seed++) != 0) die("shard_case_random");
      char label[64];
      snprintf(label, sizeof label, "R=%d case %d", R, n);
      check_case(label, &sc, n % 3 == 0);
      shard_case_free(&sc);
    }
  }
}

/* R = 1: the shard plan equals the unsharded plan, and shard run + merge equals the single run
 * bit for bit (o in its dtype and LSE). */
static void check_single_shard(int cases, int32_t token_budget) {
  for (int n = 0; n < cases; ++n) {
    shard_case sc;
    if (shard_case_random(&sc, 1, token_budget, 0x51e0000 + (uint64_t)n) != 0)
      die("shard_case_random");
    char label[64];
    snprintf(label, sizeof label, "R=1 against the single run, case %d", n);
    sc.grid_splits[0] = 0; /* the plan the single run uses */
    const padec_case *whole = &sc.whole;
    padec_plan_layout layout, shard_layout;
    if (padec_plan_layout_init(&whole->params, whole->batch, &sc.options[0], &layout) !=
        PADEC_STATUS_OK)
      die_shard_case(label, &sc, "padec_plan_layout_init");
    void *plan = alloc_or_die(layout.plan_bytes), *shard_plan = NULL;
    void *workspace = alloc_or_die(layout.workspace_bytes);
    if (padec_plan_build(&whole->params, &layout, whole->kv_lens, plan, layout.plan_bytes) !=
            PADEC_STATUS_OK ||
        shard_case_plan(&sc, 0, &shard_layout, &shard_plan) != PADEC_STATUS_OK)
      die_shard_case(label, &sc, "plan build");
    if (memcmp(&layout, &shard_layout, sizeof layout) != 0 ||
        memcmp(plan, shard_plan, layout.plan_bytes) != 0)
      die_shard_case(label, &sc, "a shard over the whole sequence plans other bytes");

    const size_t lse_elems = shard_case_lse_elems(&sc);
    void *o_single = alloc_or_die(whole->o_bytes), *o_merged = alloc_or_die(whole->o_bytes);
    float *lse_single = alloc_or_die(sizeof(float) * lse_elems);
    float *lse_merged = alloc_or_die(sizeof(float) * lse_elems);
    float *shard_o = alloc_or_die(sizeof(float) * shard_case_o_elems(&sc));
    float *shard_lse = alloc_or_die(sizeof(float) * lse_elems);
    padec_case_poison(whole, o_single, lse_single);
    padec_case_poison(whole, o_merged, lse_merged);
    memset(shard_o, 0xff, sizeof(float) * shard_case_o_elems(&sc));
    memset(shard_lse, 0xff, sizeof(float) * lse_elems);
    const padec_tensors t = padec_case_tensors(whole, o_single, lse_single);
    if (padec_cpu_run(&whole->params, &layout, plan, &t, workspace, layout.workspace_bytes) !=
            PADEC_STATUS_OK ||
        shard_case_run_cpu(&sc, 0, shard_o, shard_lse) != PADEC_STATUS_OK)
      die_shard_case(label, &sc, "run");
    const padec_shard_merge_tensors m =
        shard_case_merge_tensors(&sc, shard_o, shard_lse, o_merged, lse_merged);
    if (padec_cpu_merge_shards(&whole->params, &m) != PADEC_STATUS_OK)
      die_shard_case(label, &sc, "merge");
    if (memcmp(o_single, o_merged, whole->o_bytes) != 0 ||
        memcmp(lse_single, lse_merged, sizeof(float) * lse_elems) != 0)
      die_shard_case(label, &sc, "the merge of one shard differs from the single run");
    free(plan);
    free(shard_plan);
    free(workspace);
    free(o_single);
    free(o_merged);
    free(lse_single);
    free(lse_merged);
    free(shard_o);
    free(shard_lse);
    shard_case_free(&sc);
  }
}

static padec_params small_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.page_size = 16;
  p.q_len = 2;
  return p;
}

static void expect_status(const char *what, padec_status got, padec_status want) {
  if (got != want) {
    fprintf(stderr, "FAIL %s: got %s, want %s (message: \"%s\")\n", what, padec_status_name(got),
            padec_status_name(want), padec_last_message());
    exit(1);
  }
  if (want != PADEC_STATUS_OK && padec_last_message()[0] == '\0') {
    fprintf(stderr, "FAIL %s: %s without a message\n", what, padec_status_name(got));
    exit(1);
  }
}

static void expect_message_has(const char *what, const char *needle) {
  if (!strstr(padec_last_message(), needle)) {
    fprintf(stderr, "FAIL %s: the message \"%s\" does not name \"%s\"\n", what,
            padec_last_message(), needle);
    exit(1);
  }
}

static void expect_unchanged(const char *what, const void *buffer, const void *copy, size_t bytes) {
  if (memcmp(buffer, copy, bytes) != 0) {
    fprintf(stderr, "FAIL %s: a failing call wrote into its output\n", what);
    exit(1);
  }
}

/* padec_cpu_merge_shards: every documented error, and nothing written on any of them. */
static void check_merge_errors(void) {
  enum { R = 3, ROWS = 5 };
  const padec_params params = small_params();
  const size_t row_elems = (size_t)params.num_q_heads * (size_t)params.head_dim;
  float *shard_o = alloc_or_die(sizeof(float) * R * ROWS * row_elems);
  float *shard_lse = alloc_or_die(sizeof(float) * R * ROWS * (size_t)params.num_q_heads + 16);
  for (size_t i = 0; i < R * ROWS * row_elems; ++i) shard_o[i] = (float)(i % 7) * 0.125f;
  for (size_t i = 0; i < R * ROWS * (size_t)params.num_q_heads; ++i) shard_lse[i] = (float)(i % 5);
  const size_t o_bytes = sizeof(float) * ROWS * row_elems + 16;
  const size_t lse_bytes = sizeof(float) * ROWS * (size_t)params.num_q_heads + 16;
  unsigned char *o = alloc_or_die(o_bytes), *o_copy = alloc_or_die(o_bytes);
  unsigned char *lse = alloc_or_die(lse_bytes), *lse_copy = alloc_or_die(lse_bytes);
  memset(o, 0x5a, o_bytes);
  memset(lse, 0x5a, lse_bytes);
  memcpy(o_copy, o, o_bytes);
  memcpy(lse_copy, lse, lse_bytes);

  padec_shard_merge_tensors good;
  memset(&good, 0, sizeof good);
  good.num_shards = R;
  good.rows = ROWS;
  good.shard_o = shard_o;
  good.shard_lse = shard_lse;
  good.o = o;
  good.lse = (float *)(void *)lse;

  struct {
    const char *what;
    padec_shard_merge_tensors t;
    int params_case; /* 0: good params, 1: NULL, 2: bad head_dim, 3: e4m3 output, 4: fp32 o */
    int null_tensors;
    padec_status want;
  } cases[28];
  int n = 0;
#define MERGE_CASE(label, field, value, pcase, want_status)  \
  do {                                                       \
    cases[n].what = label;                                   \
    cases[n].t = good;                                       \
    cases[n].t.field = value;                                \
    cases[n].params_case = pcase;                            \
    cases[n].null_tensors = 0;                               \
    cases[n].want = want_status;                             \
    n += 1;                                                  \
  } while (0)
  MERGE_CASE("merge: params NULL", rows, ROWS, 1, PADEC_STATUS_NULL_POINTER);
  MERGE_CASE("merge: head_dim 100", rows, ROWS, 2, PADEC_STATUS_UNSUPPORTED_HEAD_DIM);
  MERGE_CASE("merge: o_dtype e4m3", rows, ROWS, 3, PADEC_STATUS_UNSUPPORTED_DTYPE);
  MERGE_CASE("merge: tensors NULL", rows, ROWS, 0, PADEC_STATUS_NULL_POINTER);
  cases[n - 1].null_tensors = 1;
  MERGE_CASE("merge: shard_o NULL", shard_o, NULL, 0, PADEC_STATUS_NULL_POINTER);
  MERGE_CASE("merge: shard_lse NULL", shard_lse, NULL, 0, PADEC_STATUS_NULL_POINTER);
  MERGE_CASE("merge: o NULL", o, NULL, 0, PADEC_STATUS_NULL_POINTER);
  MERGE_CASE("merge: shard_o misaligned", shard_o,
             (const float *)(const void *)((const char *)shard_o + 2), 0,
             PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: shard_o one float off 16 bytes", shard_o, shard_o + 1, 0,
             PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: shard_lse misaligned", shard_lse,
             (const float *)(const void *)((const char *)shard_lse + 1), 0,
             PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: lse misaligned", lse, (float *)(void *)(lse + 2), 0,
             PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: bf16 o misaligned", o, o + 1, 0, PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: fp32 o misaligned", o, o + 2, 4, PADEC_STATUS_MISALIGNED_POINTER);
  MERGE_CASE("merge: num_shards 0", num_shards, 0, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: num_shards -1", num_shards, -1, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: rows -1", rows, -1, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: rows INT32_MIN", rows, INT32_MIN, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: o_stride_token -1", o_stride_token, -1, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: o_stride_head -1", o_stride_head, -1, 0, PADEC_STATUS_BAD_ARGUMENT);
  /* Outputs whose elements share addresses, or that land in the inputs. */
  MERGE_CASE("merge: o_stride_head 1 (heads overlap)", o_stride_head, 1, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: o = shard_o", o, (void *)(uintptr_t)shard_o, 4, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: lse = shard_lse", lse, shard_lse, 0, PADEC_STATUS_BAD_ARGUMENT);
  MERGE_CASE("merge: lse inside o", lse, (float *)(void *)(o + 16), 0, PADEC_STATUS_BAD_ARGUMENT);
  /* 2^31 - 1 shards of 2^24 rows of 4 x 64 floats: far beyond 2^62 bytes, refused before any
   * pointer is used. */
  MERGE_CASE("merge: num_shards x rows overflow", num_shards, INT32_MAX, 0,
             PADEC_STATUS_BAD_ARGUMENT);
  cases[n - 1].t.rows = 1 << 24;
#undef MERGE_CASE

  for (int i = 0; i < n; ++i) {
    padec_params p = params;
    if (cases[i].params_case == 2) p.head_dim = 100;
    if (cases[i].params_case == 3) p.o_dtype = PADEC_DTYPE_E4M3;
    if (cases[i].params_case == 4) p.o_dtype = PADEC_DTYPE_FP32;
    const padec_params *pp = cases[i].params_case == 1 ? NULL : &p;
    const padec_status status =
        padec_cpu_merge_shards(pp, cases[i].null_tensors ? NULL : &cases[i].t);
    expect_status(cases[i].what, status, cases[i].want);
    expect_unchanged(cases[i].what, o, o_copy, o_bytes);
    expect_unchanged(cases[i].what, lse, lse_copy, lse_bytes);
  }
  expect_message_has("merge: the overflow message", "num_shards");
  {
    padec_shard_merge_tensors in_input = good;
    in_input.lse = shard_lse + 4;
    expect_status("merge: lse inside shard_lse", padec_cpu_merge_shards(&params, &in_input),
                  PADEC_STATUS_BAD_ARGUMENT);
    expect_message_has("merge: the overlap message", "tensors.lse overlaps tensors.shard_lse, which the merge reads");
    expect_unchanged("merge: lse inside shard_lse", o, o_copy, o_bytes);
  }

  /* rows 0: nothing to do, every pointer may be NULL, and nothing is written. */
  padec_shard_merge_tensors empty;
  memset(&empty, 0, sizeof empty);
  empty.num_shards = 2;
  expect_status("merge: rows 0, NULL pointers", padec_cpu_merge_shards(&params, &empty),
                PADEC_STATUS_OK);
  empty.o = o;
  empty.lse = (float *)(void *)lse;
  expect_status("merge: rows 0", padec_cpu_merge_shards(&params, &empty), PADEC_STATUS_OK);
  expect_unchanged("merge: rows 0", o, o_copy, o_bytes);
  expect_unchanged("merge: rows 0", lse, lse_copy, lse_bytes);
  /* The good tensors do run (the cases above differ from a valid call in one field only). */
  expect_status("merge: the valid call", padec_cpu_merge_shards(&params, &good), PADEC_STATUS_OK);
  free(shard_o);
  free(shard_lse);
  free(o);
  free(o_copy);
  free(lse);
  free(lse_copy);
}

/* padec_plan_build_shard and padec_cpu_run with shard arrays: argument errors name the
 * sequence and write nothing; a plan built for other shards is refused where the partition
 * counts differ. */
static void check_shard_argument_errors(void) {
  padec_params p = small_params();
  p.window_left = 100;
  enum { BATCH = 4 };
  /* Sequence 0 holds an early shard of a long sequence, which the window of 100 excludes. */
  const int32_t kv_lens[BATCH] = {1000, 300, 37, 0};
  int32_t starts[BATCH] = {0, 0, 5, 40};
  int32_t seq_lens[BATCH] = {5000, 300, 50, 40};
  padec_case c;
  if (padec_case_init(&c, &p, BATCH, kv_lens, 0xe22) != 0) die("padec_case_init");
  const padec_plan_options options = {
      .num_workers = 7, .partition_tokens = 16, .policy = PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&c.params, BATCH, &options, &layout) != PADEC_STATUS_OK)
    die("padec_plan_layout_init");
  unsigned char *plan = alloc_or_die(layout.plan_bytes), *copy = alloc_or_die(layout.plan_bytes);
  unsigned char *whole_plan = alloc_or_die(layout.plan_bytes);
  memset(plan, 0xcd, layout.plan_bytes);
  memcpy(copy, plan, layout.plan_bytes);

  padec_status status = padec_plan_build_shard(&c.params, &layout, kv_lens, NULL, seq_lens, plan,
                                               layout.plan_bytes);
  expect_status("plan: shard_starts NULL", status, PADEC_STATUS_NULL_POINTER);
  expect_message_has("plan: shard_starts NULL", "shard_starts");
  expect_unchanged("plan: shard_starts NULL", plan, copy, layout.plan_bytes);
  status = padec_plan_build_shard(&c.params, &layout, kv_lens, starts, NULL, plan,
                                  layout.plan_bytes);
  expect_status("plan: seq_lens NULL", status, PADEC_STATUS_NULL_POINTER);
  expect_message_has("plan: seq_lens NULL", "seq_lens");
  expect_unchanged("plan: seq_lens NULL", plan, copy, layout.plan_bytes);

  starts[2] = -1;
  status = padec_plan_build_shard(&c.params, &layout, kv_lens, starts, seq_lens, plan,
                                  layout.plan_bytes);
  expect_status("plan: negative shard start", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("plan: negative shard start", "sequence 2");
  expect_unchanged("plan: negative shard start", plan, copy, layout.plan_bytes);
  starts[2] = 14; /* 14 + 37 = 51 > 50 */
  status = padec_plan_build_shard(&c.params, &layout, kv_lens, starts, seq_lens, plan,
                                  layout.plan_bytes);
  expect_status("plan: shard past seq_len", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("plan: shard past seq_len", "sequence 2");
  expect_unchanged("plan: shard past seq_len", plan, copy, layout.plan_bytes);
  starts[2] = 5;
  seq_lens[3] = 39; /* an empty shard at 40 of a 39-token sequence */
  status = padec_plan_build_shard(&c.params, &layout, kv_lens, starts, seq_lens, plan,
                                  layout.plan_bytes);
  expect_status("plan: empty shard past seq_len", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("plan: empty shard past seq_len", "sequence 3");
  expect_unchanged("plan: empty shard past seq_len", plan, copy, layout.plan_bytes);
  {
    /* start + kv_len beyond INT32_MAX: checked in 64 bits. */
    const int32_t big_lens[BATCH] = {1000, 300, 37, 64};
    int32_t big_starts[BATCH] = {0, 0, 5, INT32_MAX - 10};
    int32_t big_seq[BATCH] = {5000, 300, 50, INT32_MAX};
    status = padec_plan_build_shard(&c.params, &layout, big_lens, big_starts, big_seq, plan,
                                    layout.plan_bytes);
    expect_status("plan: shard end past INT32_MAX", status, PADEC_STATUS_BAD_ARGUMENT);
    expect_message_has("plan: shard end past INT32_MAX", "sequence 3");
    expect_unchanged("plan: shard end past INT32_MAX", plan, copy, layout.plan_bytes);
  }
  seq_lens[3] = 40; /* an empty shard that starts at seq_len: valid */
  status = padec_plan_build_shard(&c.params, &layout, kv_lens, starts, seq_lens, plan,
                                  layout.plan_bytes);
  expect_status("plan: valid shards", status, PADEC_STATUS_OK);
  /* Both arrays NULL is padec_plan_build. */
  if (padec_plan_build(&c.params, &layout, kv_lens, whole_plan, layout.plan_bytes) !=
      PADEC_STATUS_OK)
    die("padec_plan_build");
  memset(copy, 0, layout.plan_bytes);
  if (padec_plan_build_shard(&c.params, &layout, kv_lens, NULL, NULL, copy, layout.plan_bytes) !=
          PADEC_STATUS_OK ||
      memcmp(copy, whole_plan, layout.plan_bytes) != 0)
    die("padec_plan_build_shard without shards differs from padec_plan_build");
  /* The window excludes sequence 0's shard, so the two plans differ. */
  if (memcmp(plan, whole_plan, layout.plan_bytes) == 0)
    die("the shard plan equals the unsharded plan although the window excludes a shard");

  /* padec_cpu_run with shard arrays. */
  void *workspace = alloc_or_die(layout.workspace_bytes);
  void *o = alloc_or_die(c.o_bytes), *o_copy = alloc_or_die(c.o_bytes);
  const size_t lse_bytes = sizeof(float) * (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  float *lse = alloc_or_die(lse_bytes), *lse_copy = alloc_or_die(lse_bytes);
  padec_case_poison(&c, o, lse);
  memcpy(o_copy, o, c.o_bytes);
  memcpy(lse_copy, lse, lse_bytes);
  padec_tensors t = padec_case_tensors(&c, o, lse);
  t.shard_starts = starts;
  t.seq_lens = seq_lens;

  status = padec_cpu_run(&c.params, &layout, whole_plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: unsharded plan with shard arrays", status, PADEC_STATUS_PLAN_MISMATCH);
  expect_message_has("run: unsharded plan with shard arrays", "sequence 0");
  expect_unchanged("run: unsharded plan with shard arrays", o, o_copy, c.o_bytes);
  expect_unchanged("run: unsharded plan with shard arrays", lse, lse_copy, lse_bytes);
  t.shard_starts = NULL;
  t.seq_lens = NULL;
  status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: shard plan without shard arrays", status, PADEC_STATUS_PLAN_MISMATCH);
  expect_message_has("run: shard plan without shard arrays", "sequence 0");
  expect_unchanged("run: shard plan without shard arrays", o, o_copy, c.o_bytes);
  t.shard_starts = starts;
  status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: seq_lens NULL", status, PADEC_STATUS_NULL_POINTER);
  expect_message_has("run: seq_lens NULL", "seq_lens");
  expect_unchanged("run: seq_lens NULL", o, o_copy, c.o_bytes);
  t.seq_lens = seq_lens;
  starts[1] = 1; /* 1 + 300 > 300 */
  status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: shard past seq_len", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("run: shard past seq_len", "sequence 1");
  expect_unchanged("run: shard past seq_len", o, o_copy, c.o_bytes);
  expect_unchanged("run: shard past seq_len", lse, lse_copy, lse_bytes);
  status = padec_validate_kv_host(&c.params, BATCH, &t);
  expect_status("validate: shard past seq_len", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("validate: shard past seq_len", "sequence 1");
  starts[1] = -3;
  status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: negative shard start", status, PADEC_STATUS_BAD_ARGUMENT);
  expect_message_has("run: negative shard start", "sequence 1");
  expect_unchanged("run: negative shard start", o, o_copy, c.o_bytes);
  starts[1] = 0;

  /* The valid run: sequence 0's shard is outside every window, so its rows are empty. */
  status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  expect_status("run: valid shards", status, PADEC_STATUS_OK);
  c.shard_starts = starts;
  c.seq_lens = seq_lens;
  padec_check_result result;
  if (padec_check_output(&c, o, lse, &result) != 0 || !result.pass) {
    padec_check_print(stderr, "fixed shards", &c, &result);
    die("the fixed shard case against the oracle");
  }
  for (int32_t i = 0; i < c.params.q_len * c.params.num_q_heads; ++i)
    if (!(isinf(lse[i]) && lse[i] < 0)) die("a shard outside every window has a finite LSE");

  free(plan);
  free(copy);
  free(whole_plan);
  free(workspace);
  free(o);
  free(o_copy);
  free(lse);
  free(lse_copy);
  c.shard_starts = NULL;
  c.seq_lens = NULL;
  padec_case_free(&c);
}

int main(int argc, char **argv) {
  const int cases_per_count = argc > 1 ? atoi(argv[1]) : 12;
  const int32_t token_budget = 400000;
  check_shard_argument_errors();
  check_merge_errors();
  check_single_shard(24, token_budget);
  check_random_cases(cases_per_count, token_budget);
  struct {
    const char *what;
    int count;
  } coverage[] = {
      {"empty sequences", g_count.empty_sequences},
      {"sequences shorter than R", g_count.short_sequences},
      {"empty shards", g_count.empty_shards},
      {"shards no query sees", g_count.unseen_shards},
      {"shards some queries see", g_count.partly_seen_shards},
      {"reused block tables", g_count.reused_tables},
      {"copied block tables", g_count.copied_tables},
      {"even plans", g_count.policy_even},
      {"batch_invariant plans", g_count.policy_batch_invariant},
      {"cost plans", g_count.policy_cost},
      {"grid-path shard runs", g_count.grid_runs},
      {"strided merges", g_count.strided_merges},
  };
  if (cases_per_count >= 5) {
    for (size_t i = 0; i < sizeof coverage / sizeof coverage[0]; ++i) {
      if (coverage[i].count == 0) {
        fprintf(stderr, "FAIL: the random cases held no %s\n", coverage[i].what);
        return 1;
      }
    }
    int params_seen = g_count.windowed > 0;
    for (int i = 0; i < 6; ++i) params_seen &= g_count.kv_kinds[i] > 0;
    for (int i = 0; i < 3; ++i) params_seen &= g_count.o_dtypes[i] > 0 && g_count.head_dims[i] > 0;
    for (int i = 0; i < 4; ++i) params_seen &= g_count.q_lens[i] > 0;
    params_seen &= g_count.layouts[0] > 0 && g_count.layouts[1] > 0;
    if (!params_seen) {
      fprintf(stderr, "FAIL: the random cases missed a KV dtype or scale mode, an o dtype, a "
                      "head_dim, a layout, a q_len or windows\n");
      return 1;
    }
  }
  printf("test_shard: %d cases (R 1..%d), %d shard runs pass against the oracle; R=1 reproduces "
         "the single run; errors checked. Covered:",
         g_count.cases, MAX_SHARDS, g_count.shard_runs);
  for (size_t i = 0; i < sizeof coverage / sizeof coverage[0]; ++i)
    printf("%s %d %s", i ? "," : "", coverage[i].count, coverage[i].what);
  printf("\n");
  return 0;
}
