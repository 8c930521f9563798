/*
 * The `cost` policy beyond the invariants that every policy keeps (test_sched_invariants,
 * test_sched_edges), through the public API only:
 *  - the model: padec_cost_model_default, the layout's integer units (scaled by head_dim, KV
 *    dtype and partition size; 0 for the other policies), a caller's model, and the bad models
 *    and layouts that must be refused without writing anything;
 *  - padec_plan_predict against an independent sum over the work items, and its errors;
 *  - the point of the policy: on a skewed batch (2 sequences of 32k and 126 of 256 tokens, 8 KV
 *    heads, 264 workers) the busiest worker is predicted faster than under `even`, and on
 *    uniform batches it is never predicted more than 1% slower;
 *  - shards (padec_plan_build_shard): the same partitions as `even`, each (shard, head) covered;
 *  - the device scheduler refuses the policy (BAD_ARGUMENT; NOT_BUILT_WITH_CUDA without CUDA).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"
#include "padec_cuda.h"
#include "test_support.h"


static padec_params make_params(int32_t kv_heads, int32_t group, int32_t head_dim,
                                padec_dtype kv_dtype) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = kv_heads;
  p.num_q_heads = kv_heads * group;
  p.head_dim = head_dim;
  p.page_size = 16;
  p.kv_dtype = kv_dtype;
  if (kv_dtype == PADEC_DTYPE_E4M3) {
    p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    p.k_scale = p.v_scale = 1.0f;
  }
  return p;
}

typedef struct built {
  padec_plan_layout layout;
  void *plan;
  double *worker_ns;
  double max_ns, mean_ns;
} built;

/* Builds a plan and its prediction under the default model; returns 0 or 1 (a failed check). */
static int build(built *out, const padec_params *p, int32_t batch, const int32_t *lens,
                 int32_t workers, int32_t partition, padec_policy policy,
                 const padec_cost_model *model) {
  memset(out, 0, sizeof *out);
  padec_plan_options o = {workers, partition, policy, model};
  padec_status s = padec_plan_layout_init(p, batch, &o, &out->layout);
  CHECK(s == PADEC_STATUS_OK, "layout: %s", padec_last_message());
  if (s != PADEC_STATUS_OK) return 1;
  out->plan = test_alloc(out->layout.plan_bytes);
  s = padec_plan_build(p, &out->layout, lens, out->plan, out->layout.plan_bytes);
  CHECK(s == PADEC_STATUS_OK, "build: %s", padec_last_message());
  out->worker_ns = calloc((size_t)workers, sizeof(double));
  if (!out->worker_ns) exit(1);
  if (s == PADEC_STATUS_OK)
    s = padec_plan_predict(p, &out->layout, out->plan, NULL, out->worker_ns);
  CHECK(s == PADEC_STATUS_OK, "predict: %s", padec_last_message());
  double sum = 0.0;
  for (int32_t c = 0; c < workers; ++c) {
    sum += out->worker_ns[c];
    if (out->worker_ns[c] > out->max_ns) out->max_ns = out->worker_ns[c];
  }
  out->mean_ns = sum / workers;
  return s != PADEC_STATUS_OK;
}

static void release(built *b) {
  free(b->plan);
  free(b->worker_ns);
  b->plan = NULL;
  b->worker_ns = NULL;
}

static int32_t kv_bytes(padec_dtype dtype) { return dtype == PADEC_DTYPE_E4M3 ? 1 : 2; }

/* ---- the model and its units ---------------------------------------------------------------- */

static void test_model_units(void) {
  padec_cost_model d;
  CHECK(padec_cost_model_default(NULL) == PADEC_STATUS_NULL_POINTER, "NULL model");
  CHECK(padec_cost_model_default(&d) == PADEC_STATUS_OK && isfinite(d.partition_ns) &&
            d.partition_ns > 0 && isfinite(d.item_ns) && d.item_ns >= 0 &&
            isfinite(d.split_ns) && d.split_ns >= 0,
        "default model %g/%g/%g", d.partition_ns, d.item_ns, d.split_ns);

  static const int32_t dims[] = {64, 128, 256};
  static const padec_dtype dtypes[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3};
  static const int32_t partitions[] = {16, 256, 16384};
  int32_t lens[1] = {1000};
  for (int di = 0; di < 3; ++di)
    for (int ti = 0; ti < 3; ++ti)
      for (int pi = 0; pi < 3; ++pi) {
        padec_params p = make_params(2, 4, dims[di], dtypes[ti]);
        padec_plan_options o = {16, partitions[pi], PADEC_POLICY_COST, NULL};
        padec_plan_layout l;
        CHECK(padec_plan_layout_init(&p, 1, &o, &l) == PADEC_STATUS_OK, "%s",
              padec_last_message());
        /* partition_ns scales with the bytes a partition moves; item and split do not. */
        const double partition_ns = d.partition_ns * (partitions[pi] / 256.0) *
                                    (dims[di] / 128.0) * (kv_bytes(dtypes[ti]) / 2.0);
        const double item = d.item_ns / partition_ns * 1024.0;
        const double split = d.split_ns / partition_ns * 1024.0;
        const int32_t want_item = item >= (1 << 30) ? (1 << 30) : (int32_t)llround(item);
        const int32_t want_split = split >= (1 << 30) ? (1 << 30) : (int32_t)llround(split);
        CHECK(l.cost_partition == 1024 && l.cost_item == want_item && l.cost_split == want_split,
              "head_dim %d kv %d partition %d: units %d/%d/%d, want 1024/%d/%d", dims[di],
              (int)dtypes[ti], partitions[pi], l.cost_partition, l.cost_item, l.cost_split,
              want_item, want_split);
        void *plan = test_alloc(l.plan_bytes);
        CHECK(padec_plan_build(&p, &l, lens, plan, l.plan_bytes) == PADEC_STATUS_OK, "%s",
              padec_last_message());
        free(plan);
        for (int other = 0; other < 2; ++other) {
          o.policy = other ? PADEC_POLICY_BATCH_INVARIANT : PADEC_POLICY_EVEN;
          CHECK(padec_plan_layout_init(&p, 1, &o, &l) == PADEC_STATUS_OK &&
                    l.cost_partition == 0 && l.cost_item == 0 && l.cost_split == 0,
                "policy %d: cost units %d/%d/%d, want 0", (int)o.policy, l.cost_partition,
                l.cost_item, l.cost_split);
        }
      }
  /* fp8 moves half the bytes of bf16: the item costs twice as many partition units. */
  padec_params bf16 = make_params(1, 1, 128, PADEC_DTYPE_BF16);
  padec_params fp8 = make_params(1, 1, 128, PADEC_DTYPE_E4M3);
  padec_plan_options o = {8, 256, PADEC_POLICY_COST, NULL};
  padec_plan_layout lb, lf;
  if (padec_plan_layout_init(&bf16, 4, &o, &lb) == PADEC_STATUS_OK &&
      padec_plan_layout_init(&fp8, 4, &o, &lf) == PADEC_STATUS_OK)
    CHECK(llabs((long long)lf.cost_item - 2LL * lb.cost_item) <= 1,
          "fp8 item units %d, bf16 %d", lf.cost_item, lb.cost_item);
}

/* A caller's model shapes the plan; NULL is the default. */
static void test_caller_model(void) {
  padec_params p = make_params(2, 4, 128, PADEC_DTYPE_BF16);
  int32_t lens[40];
  for (int32_t b = 0; b < 40; ++b) lens[b] = b % 5 == 0 ? 9000 : 300 + 37 * b;
  padec_cost_model d;
  padec_cost_model_default(&d);
  built by_null, by_default, no_overhead, heavy;
  if (build(&by_null, &p, 40, lens, 64, 256, PADEC_POLICY_COST, NULL) ||
      build(&by_default, &p, 40, lens, 64, 256, PADEC_POLICY_COST, &d))
    return;
  CHECK(memcmp(by_null.plan, by_default.plan, by_null.layout.plan_bytes) == 0,
        "NULL and the default model give other plans");
  /* No overhead: the cost is the partition count, and pieces may be one partition. */
  padec_cost_model zero = {d.partition_ns, 0.0, 0.0};
  if (!build(&no_overhead, &p, 40, lens, 64, 256, PADEC_POLICY_COST, &zero)) {
    CHECK(no_overhead.layout.cost_item == 0 && no_overhead.layout.cost_split == 0,
          "units %d/%d", no_overhead.layout.cost_item, no_overhead.layout.cost_split);
    release(&no_overhead);
  }
  /* An item as dear as 64 partitions: splits are worth it only for long sequences, so there
   * are fewer of them than under the default, and no piece is shorter than 64 + split. */
  padec_cost_model dear = {d.partition_ns, 64.0 * d.partition_ns, d.split_ns};
  if (!build(&heavy, &p, 40, lens, 64, 256, PADEC_POLICY_COST, &dear)) {
    const padec_plan_header *h = heavy.plan, *hd = by_default.plan;
    CHECK(h->num_partial_slots < hd->num_partial_slots,
          "dear items: %d partial slots, the default %d", h->num_partial_slots,
          hd->num_partial_slots);
    padec_plan_view v;
    padec_plan_view_init(&heavy.layout, heavy.plan, &v);
    const int32_t m = (heavy.layout.cost_item + heavy.layout.cost_split + 1023) / 1024;
    for (int32_t i = 0; i < h->num_works; ++i)
      if (v.work_info[8 * i + 1] >= 0)
        CHECK(v.work_info[8 * i + 5] - v.work_info[8 * i + 4] >= m,
              "item %d: a piece of %d partitions, the minimum %d", i,
              v.work_info[8 * i + 5] - v.work_info[8 * i + 4], m);
    release(&heavy);
  }
  release(&by_null);
  release(&by_default);
}

static int unchanged(const void *buffer, size_t bytes, unsigned char fill) {
  const unsigned char *b = buffer;
  for (size_t i = 0; i < bytes; ++i)
    if (b[i] != fill) return 0;
  return 1;
}

static void test_bad_models(void) {
  padec_params p = make_params(2, 4, 128, PADEC_DTYPE_BF16);
  padec_cost_model d;
  padec_cost_model_default(&d);
  const double nan = NAN, inf = INFINITY;
  const padec_cost_model bad[] = {
      {0.0, d.item_ns, d.split_ns},  {-1.0, d.item_ns, d.split_ns}, {nan, d.item_ns, d.split_ns},
      {inf, d.item_ns, d.split_ns},  {d.partition_ns, -1.0, 0.0},    {d.partition_ns, nan, 0.0},
      {d.partition_ns, inf, 0.0},    {d.partition_ns, 0.0, -0.5},    {d.partition_ns, 0.0, nan},
      {d.partition_ns, 0.0, -inf}};
  const char *field[] = {"partition_ns", "partition_ns", "partition_ns", "partition_ns",
                         "item_ns",      "item_ns",      "item_ns",      "split_ns",
                         "split_ns",     "split_ns"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i)
    for (int policy = 0; policy < 3; ++policy) {
      /* The model is checked whatever the policy. */
      padec_plan_options o = {8, 0, (padec_policy)policy, &bad[i]};
      padec_plan_layout l;
      memset(&l, 0x5a, sizeof l);
      padec_status s = padec_plan_layout_init(&p, 3, &o, &l);
      CHECK(s == PADEC_STATUS_BAD_ARGUMENT && strstr(padec_last_message(), field[i]) &&
                unchanged(&l, sizeof l, 0x5a),
            "model %zu (%g/%g/%g), policy %d: %s (%s)", i, bad[i].partition_ns, bad[i].item_ns,
            bad[i].split_ns, policy, padec_status_name(s), padec_last_message());
    }
  /* A finite partition time that the layout's scale (here 16384-token partitions at head_dim
   * 256: x128) takes to infinity: refused where it is given, by its argument's name, so that
   * padec_plan_predict cannot return inf or NaN times. */
  {
    const padec_cost_model huge = {1e307, 1.0, 1.0};
    padec_params wide = make_params(1, 1, 256, PADEC_DTYPE_BF16);
    padec_plan_options o = {4, 16384, PADEC_POLICY_COST, &huge};
    padec_plan_layout l;
    padec_status s = padec_plan_layout_init(&wide, 2, &o, &l);
    CHECK(s == PADEC_STATUS_BAD_ARGUMENT &&
              strstr(padec_last_message(), "options.cost_model->partition_ns"),
          "a model scaled to infinity, layout: %s (%s)", padec_status_name(s), padec_last_message());
    o.cost_model = NULL;
    o.policy = PADEC_POLICY_EVEN;
    const int32_t two[2] = {40000, 0};
    void *plan = NULL;
    s = padec_plan_layout_init(&wide, 2, &o, &l);
    if (s == PADEC_STATUS_OK) {
      plan = test_alloc(l.plan_bytes);
      s = padec_plan_build(&wide, &l, two, plan, l.plan_bytes);
    }
    CHECK(s == PADEC_STATUS_OK, "even plan: %s", padec_last_message());
    double worker_ns[4];
    if (plan) s = padec_plan_predict(&wide, &l, plan, &huge, worker_ns);
    CHECK(s == PADEC_STATUS_BAD_ARGUMENT && strstr(padec_last_message(), "model->partition_ns"),
          "a model scaled to infinity, predict: %s (%s)", padec_status_name(s), padec_last_message());
    /* Times each finite after the scale whose sum over a worker's items is not: refused, and
     * nothing written. */
    const padec_cost_model sums_to_inf[] = {{1e306, 1e308, 0.0}, {1.0, DBL_MAX, DBL_MAX}};
    for (size_t i = 0; plan && i < 2; ++i) {
      for (int w = 0; w < 4; ++w) worker_ns[w] = -7.0;
      s = padec_plan_predict(&wide, &l, plan, &sums_to_inf[i], worker_ns);
      CHECK(s == PADEC_STATUS_BAD_ARGUMENT && strstr(padec_last_message(), "predicted time is not finite") &&
                worker_ns[0] == -7.0 && worker_ns[3] == -7.0,
            "a model whose sums overflow (%zu), predict: %s (%s)", i, padec_status_name(s),
            padec_last_message());
    }
    free(plan);
  }
  {
    /* A subnormal partition time that the scale (16-token fp8 partitions: 1/32) takes to 0 is
     * refused, not turned into 0 / 0 units. */
    padec_params fp8 = p;
    fp8.kv_dtype = PADEC_DTYPE_E4M3;
    const padec_cost_model tiny = {1e-323, 0.0, 0.0}; /* twice the smallest subnormal */
    padec_plan_options o = {8, 16, PADEC_POLICY_COST, &tiny};
    padec_plan_layout l;
    const padec_status s = padec_plan_layout_init(&fp8, 2, &o, &l);
    CHECK(s == PADEC_STATUS_BAD_ARGUMENT && strstr(padec_last_message(), "underflows to 0") &&
              strstr(padec_last_message(), "options.cost_model->partition_ns"),
          "a model scaled to 0: %s (%s)", padec_status_name(s), padec_last_message());
  }
  /* Extreme but valid ratios land inside the units' range. */
  const padec_cost_model extreme[] = {{1e-300, 1e300, 1e300}, {1e300, 1e-300, 0.0},
                                      {5e-324, 1.0, 1.0}};
  int32_t lens[3] = {70000, 5, 0};
  for (size_t i = 0; i < 3; ++i) {
    padec_plan_options o = {8, 0, PADEC_POLICY_COST, &extreme[i]};
    padec_plan_layout l;
    CHECK(padec_plan_layout_init(&p, 3, &o, &l) == PADEC_STATUS_OK && l.cost_item >= 0 &&
              l.cost_item <= (1 << 30) && l.cost_split >= 0 && l.cost_split <= (1 << 30),
          "extreme model %zu: %s, units %d/%d", i, padec_last_message(), l.cost_item,
          l.cost_split);
    void *plan = test_alloc(l.plan_bytes);
    CHECK(padec_plan_build(&p, &l, lens, plan, l.plan_bytes) == PADEC_STATUS_OK,
          "extreme model %zu: %s", i, padec_last_message());
    free(plan);
  }
  /* A layout whose cost fields were changed by hand: refused, the plan untouched. */
  padec_plan_options o = {8, 0, PADEC_POLICY_COST, NULL};
  padec_plan_layout good;
  if (padec_plan_layout_init(&p, 3, &o, &good) != PADEC_STATUS_OK) {
    CHECK(0, "layout: %s", padec_last_message());
    return;
  }
  /* padec_plan_layout_init always gives a partition 1024 units: any other value is an edit. */
  const int32_t fields[][3] = {{0, 10, 10},   {7, 10, 10},  {70000, 10, 10},
                               {1024, -1, 0}, {1024, 0, -1}, {1024, (1 << 30) + 1, 0}};
  const padec_status want[] = {PADEC_STATUS_PLAN_MISMATCH, PADEC_STATUS_PLAN_MISMATCH,
                               PADEC_STATUS_PLAN_MISMATCH, PADEC_STATUS_BAD_ARGUMENT,
                               PADEC_STATUS_BAD_ARGUMENT,  PADEC_STATUS_BAD_ARGUMENT};
  void *plan = test_alloc(good.plan_bytes);
  for (int i = 0; i < 6; ++i) {
    padec_plan_layout l = good;
    l.cost_partition = fields[i][0];
    l.cost_item = fields[i][1];
    l.cost_split = fields[i][2];
    memset(plan, 0xc3, good.plan_bytes);
    padec_status s = padec_plan_build(&p, &l, lens, plan, good.plan_bytes);
    CHECK(s == want[i] && strstr(padec_last_message(), "layout.cost_") &&
              unchanged(plan, good.plan_bytes, 0xc3),
          "layout cost fields %d/%d/%d: %s (%s)", fields[i][0], fields[i][1], fields[i][2],
          padec_status_name(s), padec_last_message());
  }
  /* The units are scaled by the KV element size, so a cost layout is its dtype's: made for
   * bf16, it is refused with e4m3 params (it would balance fp8 items by bf16 costs). An even
   * layout does not depend on the dtype. */
  padec_params other_dtype = p;
  other_dtype.kv_dtype = p.kv_dtype == PADEC_DTYPE_E4M3 ? PADEC_DTYPE_BF16 : PADEC_DTYPE_E4M3;
  memset(plan, 0xc3, good.plan_bytes);
  padec_status s = padec_plan_build(&other_dtype, &good, lens, plan, good.plan_bytes);
  CHECK(s == PADEC_STATUS_PLAN_MISMATCH && strstr(padec_last_message(), "params.kv_dtype") &&
            strstr(padec_last_message(), "cost policy") && unchanged(plan, good.plan_bytes, 0xc3),
        "cost layout of another KV dtype: %s (%s)", padec_status_name(s), padec_last_message());
  padec_plan_options even_options = {8, 0, PADEC_POLICY_EVEN, NULL};
  padec_plan_layout even;
  s = padec_plan_layout_init(&p, 3, &even_options, &even);
  if (s == PADEC_STATUS_OK) s = padec_plan_build(&other_dtype, &even, lens, plan, even.plan_bytes);
  CHECK(s == PADEC_STATUS_OK, "even layout of another KV dtype: %s (%s)", padec_status_name(s),
        padec_last_message());
  free(plan);
}

/* ---- prediction ------------------------------------------------------------------------------ */

static void test_predict(void) {
  padec_params p = make_params(4, 2, 64, PADEC_DTYPE_E4M3);
  int32_t lens[9] = {0, 1, 4000, 250, 70000, 3, 512, 513, 9999};
  padec_cost_model d;
  padec_cost_model_default(&d);
  const padec_cost_model custom = {1000.0, 250.0, 125.0};
  for (int policy = 0; policy < 3; ++policy) {
    padec_plan_options o = {37, 64, (padec_policy)policy, NULL};
    padec_plan_layout l;
    if (padec_plan_layout_init(&p, 9, &o, &l) != PADEC_STATUS_OK) {
    CHECK(0, "layout: %s", padec_last_message());
    continue;
  }
    void *plan = test_alloc(l.plan_bytes);
    if (padec_plan_build(&p, &l, lens, plan, l.plan_bytes) != PADEC_STATUS_OK) {
      CHECK(0, "build: %s", padec_last_message());
      free(plan);
      continue;
    }
    double got[37];
    for (int mi = 0; mi < 2; ++mi) {
      const padec_cost_model *model = mi ? &custom : NULL;
      const padec_cost_model m = mi ? custom : d;
      CHECK(padec_plan_predict(&p, &l, plan, model, got) == PADEC_STATUS_OK, "%s",
            padec_last_message());
      /* Independently: head_dim 64 x fp8 x 64-token partitions move 1/16 of the reference. */
      const double partition_ns = m.partition_ns / 16.0;
      padec_plan_view v;
      padec_plan_view_init(&l, plan, &v);
      for (int32_t c = 0; c < 37; ++c) {
        double want = 0.0;
        for (int32_t i = v.work_indptr[c]; i < v.work_indptr[c + 1]; ++i) {
          const int32_t *row = v.work_info + 8 * i;
          want += m.item_ns + (row[5] - row[4]) * partition_ns + (row[1] >= 0 ? m.split_ns : 0.0);
        }
        CHECK(fabs(got[c] - want) <= 1e-9 * (want + 1.0), "policy %d worker %d: %.3f ns, want %.3f",
              policy, c, got[c], want);
      }
    }
    /* Errors. */
    const padec_cost_model bad = {0.0, 1.0, 1.0};
    CHECK(padec_plan_predict(&p, &l, plan, &bad, got) == PADEC_STATUS_BAD_ARGUMENT, "bad model");
    CHECK(padec_plan_predict(NULL, &l, plan, NULL, got) == PADEC_STATUS_NULL_POINTER,
          "NULL params");
    CHECK(padec_plan_predict(&p, NULL, plan, NULL, got) == PADEC_STATUS_NULL_POINTER,
          "NULL layout");
    CHECK(padec_plan_predict(&p, &l, NULL, NULL, got) == PADEC_STATUS_NULL_POINTER, "NULL plan");
    CHECK(padec_plan_predict(&p, &l, plan, NULL, NULL) == PADEC_STATUS_NULL_POINTER, "NULL out");
    padec_params other = p;
    other.window_left = 100;
    CHECK(padec_plan_predict(&other, &l, plan, NULL, got) == PADEC_STATUS_PLAN_MISMATCH,
          "another window");
    padec_plan_layout wrong = l;
    wrong.num_workers = 36;
    CHECK(padec_plan_predict(&p, &wrong, plan, NULL, got) == PADEC_STATUS_PLAN_MISMATCH,
          "another worker count");
    memset(plan, 0, sizeof(padec_plan_header));
    CHECK(padec_plan_predict(&p, &l, plan, NULL, got) == PADEC_STATUS_PLAN_MISMATCH, "no header");
    free(plan);
  }
}

/* ---- the point of the policy ----------------------------------------------------------------- */

static void test_skewed_batch(void) {
  /* 2 sequences of 32k tokens and 126 of 256, 8 KV heads, 264 workers (2 per SM of an H100). */
  padec_params p = make_params(8, 4, 128, PADEC_DTYPE_BF16);
  int32_t lens[128];
  for (int32_t b = 0; b < 128; ++b) lens[b] = b < 2 ? 32768 : 256;
  built even, cost;
  if (build(&even, &p, 128, lens, 264, 256, PADEC_POLICY_EVEN, NULL) ||
      build(&cost, &p, 128, lens, 264, 256, PADEC_POLICY_COST, NULL))
    return;
  fprintf(stderr,
          "  skewed batch (2 x 32k + 126 x 256, 8 KV heads, 264 workers), predicted busiest "
          "worker: even %.1f us, cost %.1f us (mean %.1f us)\n",
          even.max_ns / 1e3, cost.max_ns / 1e3, cost.mean_ns / 1e3);
  CHECK(cost.max_ns < 0.99 * even.max_ns, "cost %.0f ns is not below even's %.0f ns",
        cost.max_ns, even.max_ns);
  release(&even);
  release(&cost);

  /* The same with the short sequences first, and with one long sequence among 500 short. */
  for (int32_t b = 0; b < 128; ++b) lens[b] = b >= 126 ? 32768 : 256;
  if (!build(&even, &p, 128, lens, 264, 256, PADEC_POLICY_EVEN, NULL) &&
      !build(&cost, &p, 128, lens, 264, 256, PADEC_POLICY_COST, NULL)) {
    CHECK(cost.max_ns < 0.99 * even.max_ns, "long last: cost %.0f ns, even %.0f ns",
          cost.max_ns, even.max_ns);
    release(&even);
    release(&cost);
  }
  static int32_t many[501];
  for (int32_t b = 0; b < 501; ++b) many[b] = b == 250 ? 100000 : 100 + (b * 37) % 400;
  if (!build(&even, &p, 501, many, 264, 256, PADEC_POLICY_EVEN, NULL) &&
      !build(&cost, &p, 501, many, 264, 256, PADEC_POLICY_COST, NULL)) {
    fprintf(stderr, "  1 x 100k + 500 short: even %.1f us, cost %.1f us (mean %.1f us)\n",
            even.max_ns / 1e3, cost.max_ns / 1e3, cost.mean_ns / 1e3);
    CHECK(cost.max_ns < 0.99 * even.max_ns, "1 x 100k + 500 short: cost %.0f ns, even %.0f ns",
          cost.max_ns, even.max_ns);
    release(&even);
    release(&cost);
  }
}

static void test_uniform_batches(void) {
  /* (batch, kv_len, kv heads, workers, partition, q_len, window, kv dtype) */
  static const int32_t cases[][8] = {
      {128, 4096, 8, 264, 256, 1, 0, 0},   {264, 256, 8, 264, 256, 1, 0, 0},
      {64, 1000, 8, 264, 256, 1, 0, 0},    {32, 32768, 8, 264, 256, 1, 0, 0},
      {256, 1024, 8, 264, 256, 1, 0, 0},   {1, 32768, 8, 264, 256, 1, 0, 0},
      {16, 8192, 8, 264, 256, 1, 0, 1},    {64, 4096, 1, 132, 256, 1, 0, 0},
      {7, 50000, 4, 1000, 16, 4, 0, 0},    {200, 3000, 2, 2, 256, 2, 0, 0},
      {32, 32768, 8, 264, 256, 1, 4096, 0}, {100, 777, 3, 97, 64, 3, 0, 1},
      {512, 2048, 8, 264, 512, 1, 0, 1},   {128, 2048, 8, 263, 256, 1, 0, 0},
      {1024, 512, 8, 264, 256, 1, 0, 0},   {48, 16384, 16, 264, 1024, 1, 0, 0}};
  static int32_t lens[1024];
  double worst = 0.0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    const int32_t *k = cases[i];
    padec_params p = make_params(k[2], 4, 128, k[7] ? PADEC_DTYPE_E4M3 : PADEC_DTYPE_BF16);
    p.q_len = k[5];
    p.window_left = k[6];
    for (int32_t b = 0; b < k[0]; ++b) lens[b] = k[1];
    built even, cost;
    if (build(&even, &p, k[0], lens, k[3], k[4], PADEC_POLICY_EVEN, NULL) ||
        build(&cost, &p, k[0], lens, k[3], k[4], PADEC_POLICY_COST, NULL))
      continue;
    const double ratio = cost.max_ns / even.max_ns;
    if (ratio > worst) worst = ratio;
    CHECK(ratio <= 1.01,
          "uniform batch %d x %d, %d KV heads, %d workers, partition %d: cost's busiest worker "
          "%.0f ns, even's %.0f ns",
          k[0], k[1], k[2], k[3], k[4], cost.max_ns, even.max_ns);
    release(&even);
    release(&cost);
  }
  fprintf(stderr, "  uniform batches: cost's busiest worker at most %.4f x even's\n", worst);
}

/* Shards: the cost policy counts partitions as `even` does (padec_plan_build_shard), and covers
 * every (sequence, head) exactly, windowed shards wholly before the window included. */
static void test_shards(void) {
  padec_params p = make_params(2, 4, 128, PADEC_DTYPE_BF16);
  p.window_left = 3000;
  p.q_len = 2;
  const int32_t seq_lens[6] = {20000, 20000, 5000, 9000, 700, 100000};
  const int32_t starts[6] = {0, 10000, 0, 4000, 0, 50000};
  const int32_t kv_lens[6] = {10000, 10000, 5000, 5000, 0, 50000};
  void *plans[2] = {NULL, NULL};
  padec_plan_layout layouts[2];
  for (int k = 0; k < 2; ++k) {
    padec_plan_options o = {13, 256, k ? PADEC_POLICY_COST : PADEC_POLICY_EVEN, NULL};
    if (padec_plan_layout_init(&p, 6, &o, &layouts[k]) != PADEC_STATUS_OK) {
    CHECK(0, "layout: %s", padec_last_message());
    return;
  }
    plans[k] = test_alloc(layouts[k].plan_bytes);
    CHECK(padec_plan_build_shard(&p, &layouts[k], kv_lens, starts, seq_lens, plans[k],
                                 layouts[k].plan_bytes) == PADEC_STATUS_OK,
          "shard build: %s", padec_last_message());
  }
  padec_plan_view ve, vc;
  if (padec_plan_view_init(&layouts[0], plans[0], &ve) == PADEC_STATUS_OK &&
      padec_plan_view_init(&layouts[1], plans[1], &vc) == PADEC_STATUS_OK) {
    CHECK(memcmp(ve.partition_indptr, vc.partition_indptr, sizeof(int32_t) * 7) == 0,
          "the policies count the shards' partitions differently");
    int64_t covered[2][6];
    memset(covered, 0, sizeof covered);
    for (int32_t i = 0; i < vc.header->num_works; ++i) {
      const int32_t *row = vc.work_info + 8 * i;
      covered[(row[7] & 0xffff) / 4][row[0]] += row[5] - row[4];
    }
    for (int32_t h = 0; h < 2; ++h)
      for (int32_t b = 0; b < 6; ++b)
        CHECK(covered[h][b] == vc.partition_indptr[b + 1] - vc.partition_indptr[b],
              "shard %d head %d: %lld partitions covered of %d", b, h, (long long)covered[h][b],
              vc.partition_indptr[b + 1] - vc.partition_indptr[b]);
    /* Entries 0 and 1 are the two halves of a 20000-token sequence: the first lies wholly
     * before the window of the queries (positions 19998 and 19999 see 3000 tokens back), the
     * second holds it. */
    CHECK(vc.partition_indptr[1] - vc.partition_indptr[0] == 0 &&
              vc.partition_indptr[2] - vc.partition_indptr[1] > 0,
          "window: the shard before the window should have no partitions (%d, %d)",
          vc.partition_indptr[1] - vc.partition_indptr[0],
          vc.partition_indptr[2] - vc.partition_indptr[1]);
  }
  free(plans[0]);
  free(plans[1]);
}

/* ---- the device scheduler builds `even` only ------------------------------------------------- */

static void test_device_scheduler_refuses(void) {
  padec_params p = make_params(2, 4, 128, PADEC_DTYPE_BF16);
  padec_plan_options o = {8, 0, PADEC_POLICY_COST, NULL};
  padec_plan_layout l;
  if (padec_plan_layout_init(&p, 4, &o, &l) != PADEC_STATUS_OK) {
    CHECK(0, "layout: %s", padec_last_message());
    return;
  }
  /* The policy is checked before any device call; the pointers are never dereferenced. */
  void *fake_plan = (void *)(uintptr_t)4096;
  const int32_t *fake_lens = (const int32_t *)(uintptr_t)8192;
  const padec_status s = padec_cuda_plan_build(&p, &l, fake_lens, fake_plan, l.plan_bytes, NULL);
#ifdef PADEC_HAVE_CUDA
  CHECK(s == PADEC_STATUS_BAD_ARGUMENT && strstr(padec_last_message(), "policy"),
        "padec_cuda_plan_build with the cost policy: %s (%s)", padec_status_name(s),
        padec_last_message());
#else
  CHECK(s == PADEC_STATUS_NOT_BUILT_WITH_CUDA, "padec_cuda_plan_build: %s", padec_status_name(s));
#endif
}

int main(void) {
  test_model_units();
  test_caller_model();
  test_bad_models();
  test_predict();
  test_skewed_batch();
  test_uniform_batches();
  test_shards();
  test_device_scheduler_refuses();
  if (test_failures) {
    fprintf(stderr, "test_sched_cost: %d failure(s)\n", test_failures);
    return 1;
  }
  fprintf(stderr, "test_sched_cost: ok\n");
  return 0;
}
