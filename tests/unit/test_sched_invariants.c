/*
 * Invariants of the schedules over thousands of seeded random cases, through the public plan API
 * only. Every case is built under the even and cost policies, and every fourth one under
 * batch_invariant too; (a), (b), (d), (e) and (f) hold for all of them, (c) is each policy's
 * own.
 *
 * Usage: test_sched_invariants [num_cases [base_seed]]   (defaults 10000, 1)
 *        test_sched_invariants --case SEED                (one case, as printed by a failure)
 *
 * For every case the plan is built and checked for:
 *  (a) coverage: for every KV head h and sequence b, the items of (b, h), in work order, tile the
 *      scheduled partitions [partition_indptr[b], partition_indptr[b + 1]) exactly once, in KV
 *      order, with no empty piece; partition_indptr[b + 1] - partition_indptr[b] equals
 *      padec_num_partitions(...) and an independent formula; a sequence with no scheduled
 *      partition still gets exactly one direct item per head, with an empty range;
 *  (b) fields: q_head_range is (h + 1) * group << 16 | h * group for a valid h, qo range is
 *      [b * q_len, (b + 1) * q_len), kv_offset is 0;
 *  (c) even, balance (workers >= kv heads, N = workers / kv_heads): the non-empty items of head h
 *      all lie in bins [h * N, (h + 1) * N), and the partitions of head h in bin h * N + j are
 *      exactly S / N + (j < S % N ? 1 : 0), S = partition_indptr[batch] (the seed's capacity
 *      pattern; it implies that the N loads add up to S and differ by at most one); bins from
 *      kv_heads * N on hold no item at all. With workers < kv heads: worker c runs heads c,
 *      c + W, ... in order, every sequence in order, each as one direct item over its whole range;
 *      cost: bin h * N + j holds head h's items only, the same (sequence, partitions, slot) rows
 *      as bin j of head 0; the spare workers from kv_heads * N on (all of them when workers <
 *      kv heads) hold direct items only; every piece of a split sequence has at least
 *      m = max(1, ceil((item + split) / partition)) partitions (layout.cost_*); and no worker's
 *      cost exceeds the capacity that cost.c proves always fits;
 *      batch_invariant: a sequence of P partitions has ceil(P / max(4, ceil(P / 32))) items per
 *      head (one when P <= 4);
 *  (d) reduce maps: one group per split sequence (more than one item per head), none for others;
 *      reduce_final_map = (b * q_len, (b + 1) * q_len); the group's partial rows are, in order, the
 *      partial_qo_loc of the sequence's items, the same for every head; direct items
 *      (partial_qo_loc -1) belong exactly to unsplit sequences; every partial row range
 *      [loc, loc + q_len) lies below layout.max_partial_rows, locs are multiples of q_len and
 *      distinct across all groups; groups come in sequence order; reduce_indptr has batch + 1
 *      entries and repeats the last group's end after it;
 *  (e) header counts (num_works, num_partial_slots, num_groups, num_partitions) match the arrays
 *      and fit the layout's capacities; work_info rows, reduce_final_map rows and
 *      reduce_partial_map entries past the used counts are zero; work_indptr is monotone from 0
 *      to num_works;
 *  (f) determinism: two builds give identical bytes, and a build into a buffer pre-filled with
 *      garbage gives the same bytes and leaves the bytes past plan_bytes untouched.
 * It also reports the largest used/capacity ratios seen (random cases and constructed witnesses
 * that should reach the bounds exactly).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"
#include "test_support.h"

/* ---- random numbers (splitmix64) ----------------------------------------------------------- */
typedef struct rng {
  uint64_t state;
} rng;

static uint64_t rng_next(rng *r) { return test_splitmix64(&r->state); }

/* Uniform in [lo, hi]. */
static int32_t rng_range(rng *r, int32_t lo, int32_t hi) {
  uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
  return (int32_t)(lo + (int64_t)(rng_next(r) % span));
}

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Roughly log-uniform in [lo, hi], lo >= 1. */
static int32_t rng_log(rng *r, int32_t lo, int32_t hi) {
  int32_t bits_hi = 0;
  while (bits_hi < 31 && ((int64_t)1 << bits_hi) <= hi) ++bits_hi;
  int32_t bits = rng_range(r, 0, bits_hi);
  int64_t top = ((int64_t)1 << bits) - 1;
  if (top > hi) top = hi;
  if (top < lo) top = lo;
  return rng_range(r, lo, (int32_t)top);
}

/* ---- one case ------------------------------------------------------------------------------ */
enum { MAX_BATCH = 1024, MAX_LEN = 200000 };

typedef struct sched_case {
  uint64_t seed; /* 0 for the constructed witnesses */
  padec_policy policy;
  const char *mix;
  int32_t batch;
  int32_t kv_lens[MAX_BATCH];
  int32_t q_len;
  int32_t num_kv_heads;
  int32_t group;
  int32_t num_workers;
  int32_t window_left;
  int32_t partition_tokens;
} sched_case;

static const char *policy_name(padec_policy policy) {
  return policy == PADEC_POLICY_COST              ? "cost"
         : policy == PADEC_POLICY_BATCH_INVARIANT ? "batch_invariant"
                                                  : "even";
}

static void print_case(FILE *f, const sched_case *c) {
  int64_t sum = 0;
  int32_t lo = INT32_MAX, hi = 0, zeros = 0;
  for (int32_t b = 0; b < c->batch; ++b) {
    sum += c->kv_lens[b];
    if (c->kv_lens[b] < lo) lo = c->kv_lens[b];
    if (c->kv_lens[b] > hi) hi = c->kv_lens[b];
    zeros += c->kv_lens[b] == 0;
  }
  if (c->batch == 0) lo = 0;
  if (c->seed)
    fprintf(f, "case: seed %" PRIu64 " (rerun: test_sched_invariants --case %" PRIu64
               ", every policy)\n",
            c->seed, c->seed);
  else
    fprintf(f, "case: constructed witness\n");
  fprintf(f,
          "  mix %s, batch %d, kv_lens min %d max %d sum %" PRId64
          " zeros %d\n  q_len %d, num_kv_heads %d, group %d (num_q_heads %d), num_workers %d, "
          "window_left %d, partition_tokens %d, policy %s\n  kv_lens:",
          c->mix, c->batch, lo, hi, sum, zeros, c->q_len, c->num_kv_heads,
          c->group, c->num_kv_heads * c->group, c->num_workers, c->window_left,
          c->partition_tokens, policy_name(c->policy));
  int32_t shown = c->batch <= 64 ? c->batch : 32;
  for (int32_t b = 0; b < shown; ++b) fprintf(f, " %d", c->kv_lens[b]);
  if (shown < c->batch) fprintf(f, " ... (%d more)", c->batch - shown);
  fprintf(f, "\n");
}

static void generate_case(uint64_t seed, sched_case *c) {
  rng r = {seed};
  memset(c, 0, sizeof *c);
  c->seed = seed;

  double u = rng_unit(&r);
  c->batch = u < 0.3 ? rng_range(&r, 1, 8) : u < 0.7 ? rng_log(&r, 1, 128) : rng_range(&r, 1, MAX_BATCH);

  static const int32_t common_heads[] = {1, 2, 4, 8};
  c->num_kv_heads = rng_unit(&r) < 0.5 ? common_heads[rng_range(&r, 0, 3)] : rng_range(&r, 1, 16);
  c->group = rng_range(&r, 1, 16);
  c->q_len = rng_range(&r, 1, 4);
  c->partition_tokens = 1 << rng_range(&r, 4, 12);

  u = rng_unit(&r);
  const int32_t h = c->num_kv_heads;
  if (u < 0.40) {
    c->num_workers = rng_range(&r, 1, 1000);
  } else if (u < 0.60) {
    c->num_workers = h * rng_range(&r, 1, 1000 / h);
  } else if (u < 0.75 && h > 1) {
    c->num_workers = rng_range(&r, 1, h - 1); /* fewer workers than KV heads */
  } else if (u < 0.90) {
    c->num_workers = rng_range(&r, 1, 32);
  } else {
    int32_t n = rng_range(&r, 1, 999 / h);
    c->num_workers = h * n + (h > 1 ? rng_range(&r, 1, h - 1) : 0); /* not a multiple */
    if (c->num_workers > 1000) c->num_workers = h * n;
  }

  u = rng_unit(&r);
  c->window_left = u < 0.5 ? 0 : u < 0.75 ? rng_range(&r, 1, 512) : rng_range(&r, 1000, 300000);

  int32_t kind = rng_range(&r, 0, 5);
  int32_t p = c->partition_tokens;
  switch (kind) {
    case 0:
      c->mix = "uniform 0..200k";
      for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = rng_range(&r, 0, MAX_LEN);
      break;
    case 1:
      c->mix = "log-uniform 1..200k";
      for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = rng_log(&r, 1, MAX_LEN);
      break;
    case 2: {
      c->mix = "skewed: one huge + many small";
      for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = rng_range(&r, 0, 2048);
      c->kv_lens[rng_range(&r, 0, c->batch - 1)] = rng_range(&r, 50000, MAX_LEN);
      break;
    }
    case 3:
      c->mix = "short: 0..3 partitions";
      for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = rng_range(&r, 0, 3 * p);
      break;
    case 4: {
      c->mix = "all equal";
      int32_t len = rng_log(&r, 1, MAX_LEN);
      for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = len;
      break;
    }
    default:
      c->mix = "multiples of the partition (+-1)";
      for (int32_t b = 0; b < c->batch; ++b) {
        int32_t len = p * rng_range(&r, 0, MAX_LEN / p) + rng_range(&r, -1, 1);
        c->kv_lens[b] = len < 0 ? 0 : len > MAX_LEN ? MAX_LEN : len;
      }
      break;
  }
  u = rng_unit(&r);
  if (u < 0.05) {
    c->mix = "all empty";
    for (int32_t b = 0; b < c->batch; ++b) c->kv_lens[b] = 0;
  } else if (u < 0.35) {
    double z = 0.05 + 0.45 * rng_unit(&r);
    for (int32_t b = 0; b < c->batch; ++b)
      if (rng_unit(&r) < z) c->kv_lens[b] = 0;
  }
}

/* ---- checking ------------------------------------------------------------------------------ */
typedef struct stats {
  double max_work_ratio, max_slot_ratio;
  double max_work_ratio_wide, max_slot_ratio_wide; /* cases with N = workers / heads >= 16 */
  int64_t cases, cases_split, cases_few_workers, cases_not_multiple, cases_window;
  int64_t max_pieces;
} stats;

static char failure[1024];

static int fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(failure, sizeof failure, format, args);
  va_end(args);
  return 1;
}

#define REQUIRE(cond, ...) \
  do {                     \
    if (!(cond)) return fail(__VA_ARGS__); \
  } while (0)

/* Independent count of scheduled partitions: partition p in [0, ceil(L / P)) is scheduled iff it
 * reaches the earliest position any query sees, lo = max(0, L - q_len - W) (no lower limit
 * without a window), i.e. iff (p + 1) * P > lo. */
static int32_t expected_first(int32_t kv_len, int32_t q_len, int32_t window, int32_t partition) {
  if (window == 0) return 0;
  int64_t lo = (int64_t)kv_len - q_len - window;
  if (lo < 0) lo = 0;
  int32_t p = 0;
  while ((int64_t)(p + 1) * partition <= lo) ++p;
  return p;
}

static int32_t expected_partitions(int32_t kv_len, int32_t q_len, int32_t window, int32_t partition) {
  if (kv_len == 0) return 0;
  int32_t end = (int32_t)(((int64_t)kv_len + partition - 1) / partition);
  return end - expected_first(kv_len, q_len, window, partition);
}

/* Scratch arrays, sized for the largest case. */
enum { MAX_HEADS = 16, MAX_WORKERS = 1000 };
static int32_t group_of[MAX_BATCH];
static int32_t next_kv[MAX_HEADS * MAX_BATCH];
static int32_t item_count[MAX_HEADS * MAX_BATCH];
static unsigned char slot_used[PADEC_BATCH_INVARIANT_MAX_PIECES * MAX_BATCH];

static int check_items(const sched_case *c, const padec_plan_view *vp, int64_t *head_load);
static int check_cost(const sched_case *c, const padec_plan_layout *layout,
                      const padec_plan_view *v);
static int check_batch_invariant(const sched_case *c, const padec_plan_view *v);

static void stats_add(stats *st, const sched_case *c, const padec_plan_layout *layout,
                      int32_t num_works, int32_t num_slots, int32_t num_groups) {
  if (layout->max_works > 0) {
    double r = (double)num_works / layout->max_works;
    if (r > st->max_work_ratio) st->max_work_ratio = r;
  }
  if (layout->max_partial_slots > 0) {
    double r = (double)num_slots / layout->max_partial_slots;
    if (r > st->max_slot_ratio) st->max_slot_ratio = r;
  }
  if (c->num_workers / c->num_kv_heads >= 16) {
    double rw = (double)num_works / layout->max_works;
    double rs = (double)num_slots / layout->max_partial_slots;
    if (rw > st->max_work_ratio_wide) st->max_work_ratio_wide = rw;
    if (rs > st->max_slot_ratio_wide) st->max_slot_ratio_wide = rs;
  }
  st->cases += 1;
  st->cases_split += num_groups > 0;
  st->cases_few_workers += c->num_workers < c->num_kv_heads;
  st->cases_not_multiple +=
      c->num_workers >= c->num_kv_heads && c->num_workers % c->num_kv_heads != 0;
  st->cases_window += c->window_left > 0;
}

static int check_plan(const sched_case *c, const padec_plan_layout *layout, const void *plan,
                      stats *st) {
  const int32_t B = c->batch, H = c->num_kv_heads, W = c->num_workers;
  const int32_t q = c->q_len;
  padec_plan_view v;
  padec_status s = padec_plan_view_init(layout, plan, &v);
  REQUIRE(s == PADEC_STATUS_OK, "view_init: %s", padec_status_name(s));
  const padec_plan_header *hd = v.header;

  /* (e) header */
  REQUIRE(hd->magic == PADEC_PLAN_MAGIC && hd->version == PADEC_VERSION_NUMBER &&
              hd->params_key == layout->params_key,
          "header magic/version/params_key wrong");
  REQUIRE(hd->batch == B && hd->num_workers == W && hd->num_kv_heads == H && hd->q_len == q &&
              hd->partition_tokens == c->partition_tokens && hd->policy == (int32_t)c->policy,
          "header echo wrong: batch %d workers %d heads %d q_len %d partition %d policy %d",
          hd->batch, hd->num_workers, hd->num_kv_heads, hd->q_len, hd->partition_tokens,
          hd->policy);
  REQUIRE(hd->reserved_[0] == 0 && hd->reserved_[1] == 0, "header reserved_ not zero");
  const int32_t num_works = hd->num_works, num_slots = hd->num_partial_slots;
  const int32_t num_groups = hd->num_groups;
  REQUIRE(num_works >= 0 && num_works <= layout->max_works, "num_works %d, max_works %d",
          num_works, layout->max_works);
  REQUIRE(num_slots >= 0 && num_slots <= layout->max_partial_slots,
          "num_partial_slots %d, max_partial_slots %d", num_slots, layout->max_partial_slots);
  REQUIRE(num_groups >= 0 && num_groups <= B, "num_groups %d, batch %d", num_groups, B);
  REQUIRE(layout->max_partial_rows == layout->max_partial_slots * q,
          "max_partial_rows %d != max_partial_slots %d * q_len", layout->max_partial_rows,
          layout->max_partial_slots);

  /* (a) partition_indptr */
  REQUIRE(v.partition_indptr[0] == 0, "partition_indptr[0] = %d", v.partition_indptr[0]);
  for (int32_t b = 0; b < B; ++b) {
    int32_t L = c->kv_lens[b];
    int32_t want = expected_partitions(L, q, c->window_left, c->partition_tokens);
    int32_t api = padec_num_partitions(L, q, c->window_left, c->partition_tokens);
    int32_t first = padec_first_partition(L, q, c->window_left, c->partition_tokens);
    REQUIRE(api == want, "padec_num_partitions(%d) = %d, independent count %d", L, api, want);
    REQUIRE(first == expected_first(L, q, c->window_left, c->partition_tokens),
            "padec_first_partition(%d) = %d, want %d", L, first,
            expected_first(L, q, c->window_left, c->partition_tokens));
    int32_t got = v.partition_indptr[b + 1] - v.partition_indptr[b];
    REQUIRE(got == want, "partition_indptr[%d..%d] gives %d partitions, want %d (kv_len %d)", b,
            b + 1, got, want, L);
  }
  const int32_t S = v.partition_indptr[B];
  REQUIRE(hd->num_partitions == S, "header num_partitions %d, partition_indptr[batch] %d",
          hd->num_partitions, S);

  /* (e) work_indptr */
  REQUIRE(v.work_indptr[0] == 0, "work_indptr[0] = %d", v.work_indptr[0]);
  for (int32_t w = 0; w < W; ++w)
    REQUIRE(v.work_indptr[w] <= v.work_indptr[w + 1], "work_indptr not monotone at %d: %d > %d",
            w, v.work_indptr[w], v.work_indptr[w + 1]);
  REQUIRE(v.work_indptr[W] == num_works, "work_indptr[%d] = %d, num_works %d", W,
          v.work_indptr[W], num_works);
  for (int64_t i = 8 * (int64_t)num_works; i < 8 * (int64_t)layout->max_works; ++i)
    REQUIRE(v.work_info[i] == 0, "work_info row %" PRId64 " past num_works is not zero", i / 8);

  /* (d) reduce maps */
  for (int32_t b = 0; b < B; ++b) group_of[b] = -1;
  REQUIRE((size_t)layout->max_partial_slots <= sizeof slot_used, "test scratch too small");
  memset(slot_used, 0, (size_t)layout->max_partial_slots);
  REQUIRE(v.reduce_indptr[0] == 0, "reduce_indptr[0] = %d", v.reduce_indptr[0]);
  int32_t previous_b = -1;
  for (int32_t g = 0; g < num_groups; ++g) {
    int32_t start = v.reduce_final_map[2 * g], end = v.reduce_final_map[2 * g + 1];
    REQUIRE(start >= 0 && start % q == 0 && end == start + q && start / q < B,
            "reduce_final_map[%d] = (%d, %d) is not a sequence's rows", g, start, end);
    int32_t b = start / q;
    REQUIRE(group_of[b] == -1, "sequence %d has two reduce groups (%d and %d)", b, group_of[b], g);
    REQUIRE(b > previous_b, "reduce groups out of sequence order at group %d", g);
    previous_b = b;
    group_of[b] = g;
    int32_t lo = v.reduce_indptr[g], hi = v.reduce_indptr[g + 1];
    REQUIRE(hi - lo >= 2, "reduce group %d (sequence %d) has %d partials", g, b, hi - lo);
    if (hi - lo > st->max_pieces) st->max_pieces = hi - lo;
    for (int32_t k = lo; k < hi; ++k) {
      int32_t row = v.reduce_partial_map[k];
      REQUIRE(row >= 0 && row % q == 0 && row + q <= layout->max_partial_rows,
              "reduce_partial_map[%d] = %d: not a slot below max_partial_rows %d", k, row,
              layout->max_partial_rows);
      REQUIRE(!slot_used[row / q], "partial rows %d used twice", row);
      slot_used[row / q] = 1;
    }
  }
  REQUIRE(v.reduce_indptr[num_groups] == num_slots,
          "reduce_indptr[num_groups = %d] = %d, header num_partial_slots %d", num_groups,
          v.reduce_indptr[num_groups], num_slots);
  for (int32_t g = num_groups; g < B; ++g) {
    REQUIRE(v.reduce_indptr[g + 1] == num_slots, "reduce_indptr[%d] = %d: the tail must repeat %d",
            g + 1, v.reduce_indptr[g + 1], num_slots);
    REQUIRE(v.reduce_final_map[2 * g] == 0 && v.reduce_final_map[2 * g + 1] == 0,
            "reduce_final_map[%d] past num_groups is not zero", g);
  }
  for (int32_t k = num_slots; k < layout->max_partial_slots; ++k)
    REQUIRE(v.reduce_partial_map[k] == 0, "reduce_partial_map[%d] past num_slots is %d", k,
            v.reduce_partial_map[k]);

  for (int32_t i = 0; i < H * B; ++i) {
    next_kv[i] = v.partition_indptr[i % B];
    item_count[i] = 0;
  }
  int64_t *head_load = NULL;
  if (W >= H) {
    head_load = calloc((size_t)H * (size_t)W, sizeof(int64_t));
    if (!head_load) return fail("out of memory");
  }
  int rc = check_items(c, &v, head_load);
  free(head_load);
  if (rc) return rc;
  if (c->policy == PADEC_POLICY_COST && (rc = check_cost(c, layout, &v)) != 0) return rc;
  if (c->policy == PADEC_POLICY_BATCH_INVARIANT && (rc = check_batch_invariant(c, &v)) != 0)
    return rc;
  stats_add(st, c, layout, num_works, num_slots, num_groups);
  return 0;
}

/* (a), (b), (c), (d): the items, against the reduce maps already checked. */
static int check_items(const sched_case *c, const padec_plan_view *vp, int64_t *head_load) {
  const int32_t B = c->batch, H = c->num_kv_heads, G = c->group, W = c->num_workers;
  const int32_t q = c->q_len;
  const padec_plan_view v = *vp;
  const int32_t S = v.partition_indptr[B];
  const int32_t N = W >= H ? W / H : 0;
  const int even = c->policy == PADEC_POLICY_EVEN;
  int32_t expect_h = 0, expect_b = 0; /* workers < heads: the next item expected in a worker */
  for (int32_t w = 0; w < W; ++w) {
    if (!even) {
    } else if (W < H) {
      expect_h = w;
      expect_b = 0;
    } else if (w >= H * N) {
      REQUIRE(v.work_indptr[w] == v.work_indptr[w + 1],
              "worker %d >= kv_heads * N = %d has items (the last W mod H must be idle)", w,
              H * N);
    }
    for (int32_t i = v.work_indptr[w]; i < v.work_indptr[w + 1]; ++i) {
      const int32_t *row = v.work_info + 8 * (int64_t)i;
      int32_t b = row[0], loc = row[1], kv_start = row[4], kv_end = row[5];
      REQUIRE(b >= 0 && b < B, "item %d: batch %d", i, b);
      REQUIRE(row[2] == b * q && row[3] == (b + 1) * q, "item %d: qo range (%d, %d) for sequence %d",
              i, row[2], row[3], b);
      REQUIRE(row[6] == 0, "item %d: kv_offset %d", i, row[6]);
      int32_t qh_start = row[7] & 0xffff, qh_end = (int32_t)((uint32_t)row[7] >> 16);
      REQUIRE(qh_start % G == 0 && qh_end == qh_start + G && qh_start / G < H,
              "item %d: q_head_range %#x is not one KV head's q heads (group %d)", i,
              (unsigned)row[7], G);
      int32_t h = qh_start / G;
      int32_t parts = v.partition_indptr[b + 1] - v.partition_indptr[b];
      int32_t *next = &next_kv[h * B + b];
      int32_t *count = &item_count[h * B + b];
      REQUIRE(kv_start == *next,
              "item %d (worker %d, seq %d, head %d): kv_start %d, expected %d (gap, overlap or "
              "out of order)", i, w, b, h, kv_start, *next);
      REQUIRE(kv_end <= v.partition_indptr[b + 1], "item %d: kv_end %d past the sequence's %d", i,
              kv_end, v.partition_indptr[b + 1]);
      REQUIRE(kv_end > kv_start || (parts == 0 && *count == 0),
              "item %d (seq %d, head %d): empty range [%d, %d) in a sequence of %d partitions "
              "(or a second item)", i, b, h, kv_start, kv_end, parts);
      if (group_of[b] < 0) {
        REQUIRE(loc == -1, "item %d: sequence %d has no reduce group but partial_qo_loc %d", i, b,
                loc);
      } else {
        int32_t g = group_of[b];
        int32_t k = v.reduce_indptr[g] + *count;
        REQUIRE(k < v.reduce_indptr[g + 1],
                "sequence %d head %d has more items than its group %d has partials", b, h, g);
        REQUIRE(loc == v.reduce_partial_map[k],
                "item %d (seq %d, head %d, piece %d): partial_qo_loc %d, group slot %d", i, b, h,
                *count, loc, v.reduce_partial_map[k]);
      }
      *next = kv_end;
      *count += 1;
      if (!even) {
      } else if (W < H) {
        REQUIRE(h == expect_h && b == expect_b,
                "workers < heads: worker %d item %d is (head %d, seq %d), expected (%d, %d)", w, i,
                h, b, expect_h, expect_b);
        if (++expect_b == B) {
          expect_b = 0;
          expect_h += W;
        }
      } else {
        if (kv_end > kv_start)
          REQUIRE(w >= h * N && w < (h + 1) * N,
                  "item %d of head %d with partitions in worker %d, outside bins [%d, %d)", i, h, w,
                  h * N, (h + 1) * N);
        head_load[h * W + w] += kv_end - kv_start;
      }
    }
    if (even && W < H)
      REQUIRE(B == 0 || (expect_h >= H && expect_b == 0),
              "workers < heads: worker %d stops before head %d sequence %d", w, expect_h, expect_b);
  }
  for (int32_t h = 0; h < H; ++h)
    for (int32_t b = 0; b < B; ++b) {
      int32_t n = item_count[h * B + b];
      REQUIRE(next_kv[h * B + b] == v.partition_indptr[b + 1],
              "sequence %d head %d: items cover up to %d, the sequence ends at %d", b, h,
              next_kv[h * B + b], v.partition_indptr[b + 1]);
      REQUIRE(n >= 1, "sequence %d head %d has no item", b, h);
      if (group_of[b] < 0)
        REQUIRE(n == 1, "sequence %d head %d has %d items but no reduce group", b, h, n);
      else
        REQUIRE(n == v.reduce_indptr[group_of[b] + 1] - v.reduce_indptr[group_of[b]],
                "sequence %d head %d has %d items, its group %d partials", b, h, n,
                v.reduce_indptr[group_of[b] + 1] - v.reduce_indptr[group_of[b]]);
    }
  if (even && W >= H) {
    for (int32_t h = 0; h < H; ++h) {
      int64_t lo = INT64_MAX, hi = 0, sum = 0;
      for (int32_t j = 0; j < N; ++j) {
        int64_t load = head_load[h * W + h * N + j];
        int64_t want = S / N + (j < S % N ? 1 : 0);
        REQUIRE(load == want, "head %d bin %d (worker %d) holds %" PRId64
                " partitions, the even capacity is %" PRId64 " (S %d, N %d)",
                h, j, h * N + j, load, want, S, N);
        lo = load < lo ? load : lo;
        hi = load > hi ? load : hi;
        sum += load;
      }
      REQUIRE(hi - lo <= 1 && sum == S, "head %d loads differ by %" PRId64 " or miss S", h, hi - lo);
    }
  }
  return 0;
}

/* (c) for the cost policy, from the layout's cost units (see src/sched/cost.c). */
static int check_cost(const sched_case *c, const padec_plan_layout *layout,
                      const padec_plan_view *vp) {
  const padec_plan_view v = *vp;
  const int32_t B = c->batch, H = c->num_kv_heads, G = c->group, W = c->num_workers;
  const int32_t N = W >= H ? W / H : 0;
  const int64_t cp = layout->cost_partition, ci = layout->cost_item, cs = layout->cost_split;
  REQUIRE(cp == 1024 && ci >= 0 && ci <= (1 << 30) && cs >= 0 && cs <= (1 << 30),
          "layout cost units %" PRId64 "/%" PRId64 "/%" PRId64, cp, ci, cs);
  int64_t m = (ci + cs + cp - 1) / cp;
  if (m < 1) m = 1;
  /* The capacity cost.c proves to fit: no worker may cost more. */
  int64_t head_cost = 0, largest = 0, bound = 0;
  for (int32_t b = 0; b < B; ++b) {
    const int64_t cost = ci + (int64_t)(v.partition_indptr[b + 1] - v.partition_indptr[b]) * cp;
    head_cost += cost;
    if (cost > largest) largest = cost;
  }
  if (B > 0 && N == 0) {
    bound = (head_cost * H + W - 1) / W + largest;
  } else if (B > 0) {
    bound = (head_cost + (int64_t)(N - 1) * (2 * ci + 3 * cs + 2 * m * cp) + N - 1) / N;
    if (bound < ci + cs + 2 * m * cp) bound = ci + cs + 2 * m * cp;
  }
  for (int32_t w = 0; w < W; ++w) {
    int64_t load = 0;
    const int32_t first = v.work_indptr[w], count = v.work_indptr[w + 1] - first;
    const int32_t twin = w < H * N ? v.work_indptr[w % N] : 0; /* head 0's bin of the same j */
    if (w < H * N)
      REQUIRE(count == v.work_indptr[w % N + 1] - twin,
              "bin %d of head %d has %d items, the same bin of head 0 %d", w % N, w / N, count,
              v.work_indptr[w % N + 1] - twin);
    for (int32_t k = 0; k < count; ++k) {
      const int32_t *row = v.work_info + 8 * (int64_t)(first + k);
      const int32_t parts = row[5] - row[4], h = (row[7] & 0xffff) / G;
      load += ci + (int64_t)parts * cp + (row[1] >= 0 ? cs : 0);
      if (row[1] >= 0)
        REQUIRE(parts >= m, "worker %d item %d: a piece of %d partitions, the minimum is %" PRId64,
                w, first + k, parts, m);
      if (w >= H * N) {
        REQUIRE(row[1] == -1, "spare worker %d holds a piece of split sequence %d", w, row[0]);
      } else {
        REQUIRE(h == w / N, "worker %d (a bin of head %d) holds an item of head %d", w, w / N, h);
        const int32_t *ref = v.work_info + 8 * (int64_t)(twin + k);
        REQUIRE(row[0] == ref[0] && row[1] == ref[1] && row[4] == ref[4] && row[5] == ref[5],
                "worker %d item %d (seq %d [%d, %d) loc %d) differs from head 0's (seq %d [%d, "
                "%d) loc %d)",
                w, k, row[0], row[4], row[5], row[1], ref[0], ref[4], ref[5], ref[1]);
      }
    }
    REQUIRE(load <= bound,
            "worker %d costs %" PRId64 " units, above the capacity %" PRId64
            " that always fits (N %d)",
            w, load, bound, N);
  }
  return 0;
}

/* (c) for the batch_invariant policy: the piece count of each sequence. */
static int check_batch_invariant(const sched_case *c, const padec_plan_view *v) {
  const int32_t B = c->batch, H = c->num_kv_heads;
  for (int32_t b = 0; b < B; ++b) {
    const int32_t parts = v->partition_indptr[b + 1] - v->partition_indptr[b];
    int32_t size =
        (parts + PADEC_BATCH_INVARIANT_MAX_PIECES - 1) / PADEC_BATCH_INVARIANT_MAX_PIECES;
    if (size < PADEC_BATCH_INVARIANT_MIN_PIECE_PARTITIONS)
      size = PADEC_BATCH_INVARIANT_MIN_PIECE_PARTITIONS;
    const int32_t pieces = parts == 0 ? 1 : (parts + size - 1) / size;
    for (int32_t h = 0; h < H; ++h)
      REQUIRE(item_count[h * B + b] == pieces, "sequence %d (%d partitions) head %d: %d items, "
              "the piece rule gives %d", b, parts, h, item_count[h * B + b], pieces);
  }
  return 0;
}

/* Builds and checks one case; prints it and returns 1 on failure. */
static int run_case(const sched_case *c, stats *st) {
  padec_params params;
  memset(&params, 0, sizeof params);
  params.num_kv_heads = c->num_kv_heads;
  params.num_q_heads = c->num_kv_heads * c->group;
  params.head_dim = 128;
  params.page_size = 16;
  params.q_len = c->q_len;
  params.window_left = c->window_left;
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = c->num_workers;
  options.partition_tokens = c->partition_tokens;
  options.policy = c->policy;

  padec_plan_layout layout;
  padec_status s = padec_plan_layout_init(&params, c->batch, &options, &layout);
  if (s != PADEC_STATUS_OK) {
    fail("layout_init: %s (%s)", padec_status_name(s), padec_last_message());
    goto failed;
  }
  const size_t guard = 64;
  unsigned char *a = test_alloc(layout.plan_bytes);
  unsigned char *b = test_alloc(layout.plan_bytes + guard);
  int rc = 0;
  s = padec_plan_build(&params, &layout, c->kv_lens, a, layout.plan_bytes);
  if (s != PADEC_STATUS_OK) {
    rc = fail("build: %s (%s)", padec_status_name(s), padec_last_message());
  } else {
    rc = check_plan(c, &layout, a, st);
  }
  if (!rc) {
    /* (f) determinism, and independence from the buffer's previous contents. */
    rng r = {c->seed ^ 0xabcdefull};
    for (size_t i = 0; i < layout.plan_bytes + guard; i += 8) { /* plan_bytes is a multiple of 16 */
      const uint64_t bits = rng_next(&r);
      memcpy(b + i, &bits, 8);
    }
    unsigned char tail[64];
    memcpy(tail, b + layout.plan_bytes, guard);
    s = padec_plan_build(&params, &layout, c->kv_lens, b, layout.plan_bytes + guard);
    if (s != PADEC_STATUS_OK)
      rc = fail("build into garbage: %s (%s)", padec_status_name(s), padec_last_message());
    else if (memcmp(a, b, layout.plan_bytes) != 0) {
      size_t i = 0;
      while (a[i] == b[i]) ++i;
      rc = fail("build into a garbage-filled buffer differs at byte %zu of %zu", i,
                layout.plan_bytes);
    } else if (memcmp(tail, b + layout.plan_bytes, guard) != 0)
      rc = fail("build wrote past layout.plan_bytes");
  }
  if (!rc) {
    memset(b, 0, layout.plan_bytes);
    s = padec_plan_build(&params, &layout, c->kv_lens, b, layout.plan_bytes);
    if (s != PADEC_STATUS_OK || memcmp(a, b, layout.plan_bytes) != 0)
      rc = fail("second build differs (status %s)", padec_status_name(s));
  }
  free(a);
  free(b);
  if (!rc) return 0;
failed:
  fprintf(stderr, "FAIL: %s\n", failure);
  print_case(stderr, c);
  return 1;
}

/* Runs one witness case, which must reach the bound named by `which` (0: max_works, 1:
 * max_partial_slots) exactly. */
static int run_witness(const sched_case *c, int which, stats *st) {
  stats local;
  memset(&local, 0, sizeof local);
  if (run_case(c, &local)) return 1;
  double ratio = which == 0 ? local.max_work_ratio : local.max_slot_ratio;
  if (ratio != 1.0) {
    fprintf(stderr, "FAIL: witness did not reach %s (ratio %.4f)\n",
            which == 0 ? "max_works" : "max_partial_slots", ratio);
    print_case(stderr, c);
    return 1;
  }
  if (local.max_work_ratio > st->max_work_ratio) st->max_work_ratio = local.max_work_ratio;
  if (local.max_slot_ratio > st->max_slot_ratio) st->max_slot_ratio = local.max_slot_ratio;
  if (local.max_pieces > st->max_pieces) st->max_pieces = local.max_pieces;
  st->cases += 1;
  return 0;
}

/* Cases that must reach the layout's bounds exactly (the bounds claim to be exact). The even
 * and cost policies share their bounds; the witnesses of the cost policy use 256-token partitions,
 * where its minimum piece is one partition under the default model. batch_invariant's bounds
 * (32 pieces per sequence) are loose by design and have no witness. */
static int run_witnesses(padec_policy policy, stats *st) {
  static sched_case c;
  static const int32_t heads[] = {1, 2, 3, 8};
  static const int32_t bins[] = {2, 3, 7, 64, 240, 999};
  const int cost = policy == PADEC_POLICY_COST;
  for (int hi = 0; hi < 4; ++hi)
    for (int wi = 0; wi < 6; ++wi)
      for (int32_t q = 1; q <= 4; q += 3) {
        const int32_t H = heads[hi], N = bins[wi], W = N * H + (hi == 2 ? 1 : 0);
        /* Works: one long sequence among empty ones: H * (B + N - 1) items. */
        memset(&c, 0, sizeof c);
        c.policy = policy;
        c.mix = "witness: one long sequence among empty ones (max_works)";
        c.batch = 5;
        c.q_len = q;
        c.num_kv_heads = H;
        c.group = 2;
        c.num_workers = W;
        c.partition_tokens = cost ? 256 : 16;
        c.kv_lens[2] = cost ? 256 * N * 3 : 16 * N * 3 + 5;
        if (run_witness(&c, 0, st)) return 1;
        /* Slots: lengths [1, 2, ..., 2, 1] partitions, B = N + 1: every inner bin boundary falls
         * in the middle of its own two-partition sequence: 2 (N - 1) partial slots. */
        memset(&c, 0, sizeof c);
        c.policy = policy;
        c.mix = "witness: half-offset sequences (max_partial_slots = 2 (N - 1))";
        c.batch = N + 1;
        c.q_len = q;
        c.num_kv_heads = H;
        c.group = 3;
        c.num_workers = W;
        c.partition_tokens = cost ? 256 : 64;
        for (int32_t b = 0; b <= N; ++b)
          c.kv_lens[b] = (b == 0 || b == N) ? c.partition_tokens : 2 * c.partition_tokens;
        if (run_witness(&c, 1, st)) return 1;
        /* Slots when B <= N - 1: both sequences split, every boundary inside one: B + N - 1. */
        if (N >= 3) {
          memset(&c, 0, sizeof c);
          c.policy = policy;
          c.mix = "witness: two long sequences (max_partial_slots = B + N - 1)";
          c.batch = 2;
          c.q_len = q;
          c.num_kv_heads = H;
          c.group = 1;
          c.num_workers = W;
          c.partition_tokens = cost ? 256 : 16;
          /* N bins of 4 partitions; the sequences meet in the middle of bin 1. */
          c.kv_lens[0] = c.partition_tokens * 6;
          c.kv_lens[1] = c.partition_tokens * (4 * N - 6);
          if (run_witness(&c, 1, st)) return 1;
        }
      }
  return 0;
}

enum { NUM_POLICIES = 3 };
static const padec_policy policies[NUM_POLICIES] = {PADEC_POLICY_EVEN, PADEC_POLICY_COST,
                                                    PADEC_POLICY_BATCH_INVARIANT};

int main(int argc, char **argv) {
  static sched_case c;
  stats st[NUM_POLICIES], witness[NUM_POLICIES];
  memset(st, 0, sizeof st);
  memset(witness, 0, sizeof witness);
  if (argc == 3 && strcmp(argv[1], "--case") == 0) {
    generate_case(strtoull(argv[2], NULL, 10), &c);
    for (int p = 0; p < NUM_POLICIES; ++p) {
      c.policy = policies[p];
      print_case(stderr, &c);
      if (run_case(&c, &st[p])) return 1;
    }
    fprintf(stderr, "case passes\n");
    return 0;
  }
  long num_cases = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
  uint64_t base_seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;

  for (int p = 0; p < NUM_POLICIES; ++p)
    if (policies[p] != PADEC_POLICY_BATCH_INVARIANT && run_witnesses(policies[p], &witness[p]))
      return 1;

  rng seeds = {base_seed};
  for (long i = 0; i < num_cases; ++i) {
    generate_case(rng_next(&seeds), &c);
    for (int p = 0; p < NUM_POLICIES; ++p) {
      c.policy = policies[p];
      /* batch_invariant plans are up to 32 times larger; every fourth case keeps the time. */
      if (c.policy == PADEC_POLICY_BATCH_INVARIANT && i % 4 != 0) continue;
      if (run_case(&c, &st[p])) {
        fprintf(stderr, "(case %ld of %ld, base seed %" PRIu64 ")\n", i, num_cases, base_seed);
        return 1;
      }
    }
  }
  for (int p = 0; p < NUM_POLICIES; ++p) {
    const stats *s = &st[p];
    fprintf(stderr,
            "test_sched_invariants: %s: ok: %" PRId64 " random cases (%" PRId64
            " with splits, %" PRId64 " with workers < kv heads, %" PRId64
            " with workers not a multiple of kv heads, %" PRId64
            " with a window), largest group %" PRId64 " partials\n"
            "  random cases: max num_works / max_works %.4f, max num_partial_slots / "
            "max_partial_slots %.4f\n"
            "  random cases with workers / kv heads >= 16: max num_works / max_works %.4f, max "
            "num_partial_slots / max_partial_slots %.4f\n",
            policy_name(policies[p]), s->cases, s->cases_split, s->cases_few_workers,
            s->cases_not_multiple, s->cases_window, s->max_pieces, s->max_work_ratio,
            s->max_slot_ratio, s->max_work_ratio_wide, s->max_slot_ratio_wide);
    if (witness[p].cases)
      fprintf(stderr,
              "  %" PRId64 " witnesses:    max num_works / max_works %.4f, max "
              "num_partial_slots / max_partial_slots %.4f\n",
              witness[p].cases, witness[p].max_work_ratio, witness[p].max_slot_ratio);
  }
  return 0;
}
