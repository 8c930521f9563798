/*
 * Edge cases of the `even` and `cost` schedules and of the plan API, through the public API only
 * (every case runs under both policies; the expectations that are one policy's own say so):
 * batch 0, all sequences empty, one sequence split into more than 64 and more than 1000 pieces
 * (where the seed's aiter scheduler wrote extra reduce groups past reduce_indptr[batch]), one
 * worker, fewer workers than KV heads, workers not a multiple of KV heads, windows longer than
 * every sequence, and the error paths (bad arguments, negative kv_len, small or misaligned
 * buffers, int32 overflow), which must leave every output untouched.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

static int failures = 0;
static const char *current = "";
static padec_policy g_policy = PADEC_POLICY_EVEN; /* the policy every case is built with */

static const char *policy_name(padec_policy policy) {
  return policy == PADEC_POLICY_COST ? "cost" : "even";
}

#define CHECK(cond, ...)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: [%s, %s] check failed: %s: ", __FILE__, __LINE__,           \
              policy_name(g_policy), current, #cond);                                      \
      fprintf(stderr, __VA_ARGS__);                                                        \
      fprintf(stderr, "\n");                                                               \
      failures += 1;                                                                       \
    }                                                                                      \
  } while (0)

static padec_params make_params(int32_t kv_heads, int32_t group, int32_t q_len, int32_t window) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = kv_heads;
  p.num_q_heads = kv_heads * group;
  p.head_dim = 128;
  p.page_size = 16;
  p.q_len = q_len;
  p.window_left = window;
  return p;
}

static padec_plan_options make_options(int32_t workers, int32_t partition) {
  padec_plan_options o;
  memset(&o, 0, sizeof o);
  o.num_workers = workers;
  o.partition_tokens = partition;
  o.policy = g_policy;
  return o;
}

static void *alloc_aligned(size_t bytes) {
  size_t rounded = (bytes + 15) / 16 * 16;
  void *p = aligned_alloc(16, rounded ? rounded : 16);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

/* A built plan and its view. */
typedef struct built {
  padec_params params;
  padec_plan_layout layout;
  void *plan;
  padec_plan_view v;
  const int32_t *kv_lens;
  int32_t group;
} built;

static int build(built *out, const padec_params *params, int32_t batch,
                 const padec_plan_options *options, const int32_t *kv_lens) {
  memset(out, 0, sizeof *out);
  out->params = *params;
  out->kv_lens = kv_lens;
  out->group = params->num_q_heads / params->num_kv_heads;
  padec_status s = padec_plan_layout_init(params, batch, options, &out->layout);
  CHECK(s == PADEC_STATUS_OK, "layout_init: %s (%s)", padec_status_name(s), padec_last_message());
  if (s != PADEC_STATUS_OK) return 1;
  out->plan = alloc_aligned(out->layout.plan_bytes);
  memset(out->plan, 0xa5, out->layout.plan_bytes);
  s = padec_plan_build(params, &out->layout, kv_lens, out->plan, out->layout.plan_bytes);
  CHECK(s == PADEC_STATUS_OK, "build: %s (%s)", padec_status_name(s), padec_last_message());
  if (s != PADEC_STATUS_OK) {
    free(out->plan);
    out->plan = NULL;
    return 1;
  }
  s = padec_plan_view_init(&out->layout, out->plan, &out->v);
  CHECK(s == PADEC_STATUS_OK, "view_init: %s", padec_status_name(s));
  return s != PADEC_STATUS_OK;
}

static void release(built *b) {
  free(b->plan);
  b->plan = NULL;
}

static const int32_t *work(const built *b, int32_t i) { return b->v.work_info + 8 * (int64_t)i; }

static int32_t worker_of(const built *b, int32_t item) {
  for (int32_t w = 0; w < b->layout.num_workers; ++w)
    if (item < b->v.work_indptr[w + 1]) return w;
  return -1;
}

/* The generic consistency of a plan (a compact form of test_sched_invariants): every (sequence,
 * head) tiled exactly once in KV order, qo and q-head fields, one reduce group per split sequence
 * whose partial rows are its items' partial_qo_loc, tails of the reduce arrays. */
static void check_consistent(const built *b) {
  const padec_plan_view *v = &b->v;
  const int32_t B = b->layout.batch, H = b->layout.num_kv_heads, q = b->layout.q_len;
  const int32_t G = b->group, num_works = v->header->num_works;
  const int32_t num_groups = v->header->num_groups, num_slots = v->header->num_partial_slots;
  CHECK(v->work_indptr[0] == 0 && v->work_indptr[b->layout.num_workers] == num_works,
        "work_indptr ends %d..%d, num_works %d", v->work_indptr[0],
        v->work_indptr[b->layout.num_workers], num_works);
  for (int32_t w = 0; w < b->layout.num_workers; ++w)
    CHECK(v->work_indptr[w] <= v->work_indptr[w + 1], "work_indptr decreases at %d", w);
  CHECK(num_works <= b->layout.max_works && num_slots <= b->layout.max_partial_slots &&
            num_groups <= B,
        "counts %d works, %d slots, %d groups over the capacities %d, %d, %d", num_works,
        num_slots, num_groups, b->layout.max_works, b->layout.max_partial_slots, B);
  CHECK(v->partition_indptr[0] == 0, "partition_indptr[0] = %d", v->partition_indptr[0]);
  for (int32_t s = 0; s < B; ++s)
    CHECK(v->partition_indptr[s + 1] - v->partition_indptr[s] ==
              padec_num_partitions(b->kv_lens[s], q, b->params.window_left,
                                   b->layout.partition_tokens),
          "partition_indptr of sequence %d", s);
  CHECK(v->header->num_partitions == v->partition_indptr[B], "header num_partitions %d",
        v->header->num_partitions);

  int32_t *group_of = malloc(sizeof(int32_t) * (size_t)(B + 1));
  int32_t *next = malloc(sizeof(int32_t) * (size_t)H * (size_t)(B + 1));
  int32_t *count = calloc((size_t)H * (size_t)(B + 1), sizeof(int32_t));
  if (!group_of || !next || !count) exit(1);
  for (int32_t s = 0; s < B; ++s) group_of[s] = -1;
  CHECK(v->reduce_indptr[0] == 0, "reduce_indptr[0] = %d", v->reduce_indptr[0]);
  for (int32_t g = 0; g < num_groups; ++g) {
    int32_t row = v->reduce_final_map[2 * g];
    CHECK(row % q == 0 && v->reduce_final_map[2 * g + 1] == row + q && row / q < B,
          "reduce_final_map[%d] = (%d, %d)", g, row, v->reduce_final_map[2 * g + 1]);
    if (row / q < B && row >= 0) {
      CHECK(group_of[row / q] == -1, "sequence %d has two groups", row / q);
      group_of[row / q] = g;
    }
    CHECK(v->reduce_indptr[g + 1] - v->reduce_indptr[g] >= 2, "group %d has %d partials", g,
          v->reduce_indptr[g + 1] - v->reduce_indptr[g]);
  }
  for (int32_t g = num_groups; g < B; ++g) {
    CHECK(v->reduce_indptr[g + 1] == num_slots, "reduce_indptr[%d] = %d, tail must be %d", g + 1,
          v->reduce_indptr[g + 1], num_slots);
    CHECK(v->reduce_final_map[2 * g] == 0 && v->reduce_final_map[2 * g + 1] == 0,
          "reduce_final_map[%d] past the groups is not zero", g);
  }
  CHECK(v->reduce_indptr[num_groups] == num_slots, "reduce_indptr[num_groups] = %d, slots %d",
        v->reduce_indptr[num_groups], num_slots);
  for (int32_t k = 0; k < num_slots; ++k) {
    int32_t row = v->reduce_partial_map[k];
    CHECK(row >= 0 && row % q == 0 && row + q <= b->layout.max_partial_rows,
          "reduce_partial_map[%d] = %d", k, row);
    for (int32_t k2 = 0; k2 < k; ++k2)
      if (v->reduce_partial_map[k2] == row) {
        CHECK(0, "partial row %d used by slots %d and %d", row, k2, k);
        break;
      }
  }
  for (int32_t k = num_slots; k < b->layout.max_partial_slots; ++k)
    CHECK(v->reduce_partial_map[k] == 0, "reduce_partial_map[%d] past the slots is %d", k,
          v->reduce_partial_map[k]);
  for (int64_t i = 8 * (int64_t)num_works; i < 8 * (int64_t)b->layout.max_works; ++i)
    CHECK(v->work_info[i] == 0, "work_info row %" PRId64 " past num_works is not zero", i / 8);

  for (int32_t h = 0; h < H; ++h)
    for (int32_t s = 0; s < B; ++s) next[h * B + s] = v->partition_indptr[s];
  for (int32_t i = 0; i < num_works; ++i) {
    const int32_t *r = work(b, i);
    int32_t s = r[0], h = (r[7] & 0xffff) / G;
    if (s < 0 || s >= B || h >= H) {
      CHECK(0, "item %d: sequence %d, head %d", i, s, h);
      continue;
    }
    CHECK(r[2] == s * q && r[3] == (s + 1) * q && r[6] == 0 &&
              r[7] == (((h + 1) * G) << 16 | (h * G)),
          "item %d: fields %d %d %d %d", i, r[2], r[3], r[6], r[7]);
    CHECK(r[4] == next[h * B + s] && r[5] <= v->partition_indptr[s + 1] &&
              (r[5] > r[4] || (count[h * B + s] == 0 &&
                               v->partition_indptr[s + 1] == v->partition_indptr[s])),
          "item %d (seq %d, head %d): range [%d, %d), expected start %d, sequence end %d", i, s,
          h, r[4], r[5], next[h * B + s], v->partition_indptr[s + 1]);
    if (group_of[s] < 0) {
      CHECK(r[1] == -1, "item %d: unsplit sequence %d with partial_qo_loc %d", i, s, r[1]);
    } else {
      int32_t k = v->reduce_indptr[group_of[s]] + count[h * B + s];
      CHECK(k < v->reduce_indptr[group_of[s] + 1] && r[1] == v->reduce_partial_map[k],
            "item %d (seq %d, head %d, piece %d): partial_qo_loc %d, group slot %d", i, s, h,
            count[h * B + s], r[1], v->reduce_partial_map[k]);
    }
    next[h * B + s] = r[5];
    count[h * B + s] += 1;
  }
  for (int32_t h = 0; h < H; ++h)
    for (int32_t s = 0; s < B; ++s) {
      CHECK(next[h * B + s] == v->partition_indptr[s + 1] && count[h * B + s] >= 1,
            "seq %d head %d: covered to %d of %d with %d items", s, h, next[h * B + s],
            v->partition_indptr[s + 1], count[h * B + s]);
      int32_t want = group_of[s] < 0 ? 1
                                     : v->reduce_indptr[group_of[s] + 1] -
                                           v->reduce_indptr[group_of[s]];
      CHECK(count[h * B + s] == want, "seq %d head %d: %d items, want %d", s, h, count[h * B + s],
            want);
    }
  free(group_of);
  free(next);
  free(count);
}

/* ---- cases ---------------------------------------------------------------------------------- */

static void test_batch_zero(void) {
  current = "batch 0";
  static const int32_t heads[] = {1, 2, 8};
  static const int32_t workers[] = {1, 3, 8, 1000};
  for (int hi = 0; hi < 3; ++hi)
    for (int wi = 0; wi < 4; ++wi) {
      padec_params p = make_params(heads[hi], 4, 2, 0);
      padec_plan_options o = make_options(workers[wi], 0);
      built b;
      if (build(&b, &p, 0, &o, NULL)) continue; /* kv_lens may be NULL at batch 0 */
      const padec_plan_header *h = b.v.header;
      CHECK(h->batch == 0 && h->num_works == 0 && h->num_partial_slots == 0 &&
                h->num_groups == 0 && h->num_partitions == 0,
            "header counts %d %d %d %d", h->num_works, h->num_partial_slots, h->num_groups,
            h->num_partitions);
      for (int32_t w = 0; w <= workers[wi]; ++w)
        CHECK(b.v.work_indptr[w] == 0, "work_indptr[%d] = %d", w, b.v.work_indptr[w]);
      CHECK(b.v.reduce_indptr[0] == 0 && b.v.partition_indptr[0] == 0, "indptr[0] not 0");
      CHECK(b.layout.max_partial_slots == 0 && b.layout.max_partial_rows == 0,
            "batch 0 capacity: %d partial slots", b.layout.max_partial_slots);
      if (hi == 2 && wi == 3)
        fprintf(stderr, "  note: batch 0, 8 KV heads, 1000 workers: max_works %d (none used)\n",
                b.layout.max_works);
      check_consistent(&b);
      release(&b);
    }
  /* A non-null kv_lens at batch 0 is fine too. */
  padec_params p = make_params(1, 1, 1, 0);
  padec_plan_options o = make_options(4, 0);
  int32_t unused = -5; /* never read at batch 0 */
  built b;
  if (!build(&b, &p, 0, &o, &unused)) release(&b);
}

static void test_all_empty(void) {
  current = "all sequences empty";
  int32_t lens[7] = {0, 0, 0, 0, 0, 0, 0};
  /* W >= H: the seed's filler puts head h, all sequences, in bin h (S = 0: every bin has zero
   * capacity and each head moves on by one bin). W < H: worker c runs heads c, c + W, ... */
  static const int32_t cfg[][3] = {{1, 1, 1}, {1, 8, 1}, {2, 8, 3}, {4, 4, 1}, {8, 3, 2},
                                   {8, 8, 4}, {3, 100, 2}};
  for (int ci = 0; ci < 7; ++ci) {
    int32_t H = cfg[ci][0], W = cfg[ci][1], q = cfg[ci][2];
    for (int32_t window = 0; window <= 64; window += 64) {
      padec_params p = make_params(H, 2, q, window);
      padec_plan_options o = make_options(W, 0);
      built b;
      if (build(&b, &p, 7, &o, lens)) continue;
      check_consistent(&b);
      CHECK(b.v.header->num_works == 7 * H && b.v.header->num_groups == 0 &&
                b.v.header->num_partial_slots == 0 && b.v.header->num_partitions == 0,
            "H %d W %d: %d works, %d groups", H, W, b.v.header->num_works, b.v.header->num_groups);
      for (int32_t i = 0; i < b.v.header->num_works; ++i) {
        const int32_t *r = work(&b, i);
        int32_t h = (r[7] & 0xffff) / 2;
        CHECK(r[1] == -1 && r[4] == 0 && r[5] == 0, "item %d: loc %d range [%d, %d)", i, r[1],
              r[4], r[5]);
        if (g_policy == PADEC_POLICY_EVEN) {
          int32_t want_worker = W >= H ? h : h % W;
          CHECK(worker_of(&b, i) == want_worker,
                "H %d W %d: item %d of head %d in worker %d, want %d", H, W, i, h,
                worker_of(&b, i), want_worker);
        } else if (W >= H) {
          /* cost: in one of head h's bins, or in a spare worker (a direct item). */
          int32_t w = worker_of(&b, i), N = W / H;
          CHECK((w >= h * N && w < (h + 1) * N) || w >= H * N,
                "H %d W %d: item %d of head %d in worker %d", H, W, i, h, w);
        }
      }
      release(&b);
    }
  }
}

/* One long sequence (optionally among others) split into many pieces. */
static void check_long_split(int32_t len, int32_t H, int32_t W, int32_t partition, int32_t q,
                             int with_others, int32_t want_pieces) {
  int32_t lens[5] = {100, len, 50, 0, 3000};
  const int32_t *kv = with_others ? lens : lens + 1;
  int32_t B = with_others ? 5 : 1;
  int32_t s_long = with_others ? 1 : 0;
  padec_params p = make_params(H, 4, q, 0);
  padec_plan_options o = make_options(W, partition);
  built b;
  if (build(&b, &p, B, &o, kv)) return;
  check_consistent(&b);
  const padec_plan_view *v = &b.v;
  int32_t N = W / H;
  int32_t S = v->partition_indptr[B];
  const int32_t P = v->partition_indptr[s_long + 1] - v->partition_indptr[s_long];
  int32_t min_piece = 1;
  if (g_policy == PADEC_POLICY_COST) {
    /* cost: pieces of at least m partitions; the smallest capacity that fits gives pieces of
     * x = ceil(P / N) partitions when m is 1 (and the sequence is alone), so ceil(P / x) of
     * them. Otherwise only bounds are known here (test_sched_invariants checks the rest). */
    const int64_t cp = b.layout.cost_partition, ci = b.layout.cost_item;
    const int64_t cs = b.layout.cost_split;
    min_piece = (int32_t)((ci + cs + cp - 1) / cp);
    if (min_piece < 1) min_piece = 1;
    const int32_t x = (P + N - 1) / N;
    want_pieces = !with_others && min_piece == 1 ? (P + x - 1) / x : -2;
  }
  if (want_pieces == -1) {
    /* Bins of head 0 hold S / N (+1 for the first S % N) partitions, in order: count those that
     * meet the long sequence's range. */
    int32_t a = v->partition_indptr[s_long], e = v->partition_indptr[s_long + 1], start = 0;
    want_pieces = 0;
    for (int32_t j = 0; j < N; ++j) {
      int32_t cap = S / N + (j < S % N ? 1 : 0);
      if (cap > 0 && start < e && start + cap > a) want_pieces += 1;
      start += cap;
    }
  }
  /* Find the long sequence's group. */
  int32_t g_long = -1;
  for (int32_t g = 0; g < v->header->num_groups; ++g)
    if (v->reduce_final_map[2 * g] == s_long * q) g_long = g;
  CHECK(g_long >= 0, "len %d W %d: the long sequence has no reduce group", len, W);
  if (g_long >= 0) {
    int32_t pieces = v->reduce_indptr[g_long + 1] - v->reduce_indptr[g_long];
    if (want_pieces == -2) {
      CHECK(pieces <= N && (int64_t)pieces * min_piece <= P,
            "len %d H %d W %d partition %d: %d pieces of at least %d partitions over %d bins", len,
            H, W, partition, pieces, min_piece, N);
      if (!with_others) want_pieces = pieces;
    }
    CHECK(pieces == want_pieces || want_pieces == -2,
          "len %d H %d W %d partition %d: %d pieces, want %d", len, H, W, partition, pieces,
          want_pieces);
    CHECK(v->reduce_final_map[2 * g_long + 1] == (s_long + 1) * q, "final map end %d",
          v->reduce_final_map[2 * g_long + 1]);
  }
  if (!with_others) {
    /* Exactly one group; its partial rows are 0, q, 2q, ...; reduce_indptr = [0, pieces]. */
    CHECK(v->header->num_groups == 1 && v->reduce_indptr[0] == 0 &&
              v->reduce_indptr[1] == want_pieces && v->header->num_partial_slots == want_pieces,
          "groups %d, reduce_indptr [%d, %d], slots %d", v->header->num_groups,
          v->reduce_indptr[0], v->reduce_indptr[1], v->header->num_partial_slots);
    for (int32_t k = 0; k < want_pieces && k < v->header->num_partial_slots; ++k)
      CHECK(v->reduce_partial_map[k] == k * q, "reduce_partial_map[%d] = %d, want %d", k,
            v->reduce_partial_map[k], k * q);
    CHECK(v->header->num_works == H * want_pieces, "num_works %d, want %d", v->header->num_works,
          H * want_pieces);
    /* even: piece sizes follow the capacities S / N + (bin < S % N). cost: every piece has the
     * size of the first (the capacity's), but for the last two (the rest, and the one that may
     * leave the last its minimum), and at least the minimum. */
    const int32_t first_piece = v->header->num_works > 0 ? work(&b, 0)[5] - work(&b, 0)[4] : 0;
    for (int32_t i = 0; i < v->header->num_works; ++i) {
      const int32_t *r = work(&b, i);
      int32_t w = worker_of(&b, i), j = w % N;
      if (g_policy == PADEC_POLICY_EVEN) {
        int32_t cap = S / N + (j < S % N ? 1 : 0);
        CHECK(r[5] - r[4] == cap, "item %d in worker %d: %d partitions, capacity %d", i, w,
              r[5] - r[4], cap);
      } else {
        const int32_t size = r[5] - r[4], k = i % want_pieces;
        CHECK(size >= min_piece && size <= first_piece &&
                  (k + 2 >= want_pieces || size == first_piece),
              "item %d (piece %d of %d) in worker %d: %d partitions, the first piece %d, the "
              "minimum %d",
              i, k, want_pieces, w, size, first_piece, min_piece);
      }
    }
  }
  release(&b);
}

static void test_long_splits(void) {
  current = "one long sequence, many pieces";
  /* 200k tokens, 256-token partitions: 782 partitions on 1000 bins: 782 one-partition pieces. */
  check_long_split(200000, 1, 1000, 256, 1, 0, 782);
  check_long_split(200000, 1, 1000, 256, 4, 0, 782);
  /* 16-token partitions: 12500 partitions, 1000 bins of 12 or 13. */
  check_long_split(200000, 1, 1000, 16, 1, 0, 1000);
  check_long_split(200000, 1, 2048, 16, 3, 0, 2048);
  check_long_split(200000, 8, 8 * 1024, 16, 2, 0, 1024);
  /* Around the seed's warp size: 64, 65 and 128 pieces. */
  check_long_split(65 * 256, 1, 64, 256, 1, 0, 64);
  check_long_split(65 * 256, 1, 65, 256, 1, 0, 65);
  check_long_split(65 * 256, 2, 130, 256, 4, 0, 65);
  check_long_split(128 * 256, 1, 128, 256, 2, 0, 128);
  /* Among other sequences (one of them empty): the groups of every split sequence stay within
   * reduce_indptr[batch + 1] and reduce_final_map[batch]. */
  current = "one long sequence among others";
  {
    int32_t lens[5] = {100, 200000, 50, 0, 3000};
    padec_params p = make_params(2, 8, 1, 0);
    padec_plan_options o = make_options(2000, 16);
    built b;
    if (!build(&b, &p, 5, &o, lens)) {
      check_consistent(&b);
      CHECK(b.v.header->num_groups <= 5, "%d groups for 5 sequences", b.v.header->num_groups);
      release(&b);
    }
  }
  for (int32_t W = 64; W <= 16384; W *= 4) check_long_split(200000, 1, W, 16, 1, 1, -1);
}

static void test_one_worker(void) {
  current = "one worker";
  int32_t lens[5] = {1000, 0, 5000, 17, 200000};
  for (int32_t H = 1; H <= 4; H += 3) {
    padec_params p = make_params(H, 2, 2, 0);
    padec_plan_options o = make_options(1, 256);
    built b;
    if (build(&b, &p, 5, &o, lens)) continue;
    check_consistent(&b);
    CHECK(b.v.header->num_works == 5 * H && b.v.header->num_groups == 0 &&
              b.v.work_indptr[1] == 5 * H,
          "H %d: %d works, %d groups", H, b.v.header->num_works, b.v.header->num_groups);
    CHECK(b.layout.max_works == 5 * H && b.layout.max_partial_slots == 0,
          "H %d: capacities %d works, %d slots", H, b.layout.max_works,
          b.layout.max_partial_slots);
    /* even: head by head, sequence by sequence; cost (workers < heads: every sequence in the
     * spare bins): sequence by sequence, head by head. Whole ranges. */
    for (int32_t i = 0; i < 5 * H; ++i) {
      const int32_t *r = work(&b, i);
      const int even = g_policy == PADEC_POLICY_EVEN;
      int32_t h = even ? i / 5 : i % H, s = even ? i % 5 : i / H;
      CHECK(r[0] == s && r[1] == -1 && (r[7] & 0xffff) == 2 * h &&
                r[4] == b.v.partition_indptr[s] && r[5] == b.v.partition_indptr[s + 1],
            "H %d item %d: (seq %d, loc %d, head start %d, [%d, %d))", H, i, r[0], r[1],
            r[7] & 0xffff, r[4], r[5]);
    }
    release(&b);
  }
}

static void test_fewer_workers_than_heads(void) {
  current = "workers < kv heads";
  int32_t lens[4] = {3000, 0, 1, 70000};
  static const int32_t cfg[][2] = {{8, 3}, {8, 7}, {8, 1}, {16, 5}, {3, 2}};
  for (int ci = 0; ci < 5; ++ci) {
    int32_t H = cfg[ci][0], W = cfg[ci][1];
    padec_params p = make_params(H, 3, 1, 0);
    padec_plan_options o = make_options(W, 256);
    built b;
    if (build(&b, &p, 4, &o, lens)) continue;
    check_consistent(&b);
    CHECK(b.layout.max_works == 4 * H && b.v.header->num_works == 4 * H &&
              b.layout.max_partial_slots == 0 && b.v.header->num_groups == 0,
          "H %d W %d: capacity %d works (%d used), %d slots", H, W, b.layout.max_works,
          b.v.header->num_works, b.layout.max_partial_slots);
    if (g_policy == PADEC_POLICY_COST) {
      /* Sequence by sequence, head by head, cut into W contiguous runs of direct items; no
       * worker costs more than an even share plus one item. */
      const int64_t cp = b.layout.cost_partition, cu = b.layout.cost_item;
      int64_t total = 0, largest = 0, worst = 0;
      for (int32_t s = 0; s < 4; ++s) {
        const int64_t cost = cu + cp * (b.v.partition_indptr[s + 1] - b.v.partition_indptr[s]);
        total += H * cost;
        if (cost > largest) largest = cost;
      }
      for (int32_t i = 0; i < 4 * H; ++i) {
        const int32_t *r = work(&b, i);
        const int32_t s = i / H, h = i % H;
        CHECK(r[0] == s && r[1] == -1 && r[7] == ((h + 1) * 3 << 16 | h * 3) &&
                  r[4] == b.v.partition_indptr[s] && r[5] == b.v.partition_indptr[s + 1],
              "H %d W %d item %d: (seq %d, loc %d, qhr %#x, [%d, %d)), want head %d seq %d", H,
              W, i, r[0], r[1], (unsigned)r[7], r[4], r[5], h, s);
      }
      for (int32_t c = 0; c < W; ++c) {
        int64_t load = 0;
        for (int32_t i = b.v.work_indptr[c]; i < b.v.work_indptr[c + 1]; ++i)
          load += cu + cp * (work(&b, i)[5] - work(&b, i)[4]);
        if (load > worst) worst = load;
      }
      CHECK(worst <= (total + W - 1) / W + largest,
            "H %d W %d: the busiest worker costs %" PRId64 ", above %" PRId64 " + %" PRId64, H, W,
            worst, (total + W - 1) / W, largest);
      release(&b);
      continue;
    }
    /* even: worker c runs heads c, c + W, ... in order, each over every sequence in order. */
    for (int32_t c = 0; c < W; ++c) {
      int32_t i = b.v.work_indptr[c];
      for (int32_t h = c; h < H; h += W)
        for (int32_t s = 0; s < 4; ++s, ++i) {
          CHECK(i < b.v.work_indptr[c + 1], "H %d W %d: worker %d ends early", H, W, c);
          if (i >= b.v.work_indptr[c + 1]) break;
          const int32_t *r = work(&b, i);
          CHECK(r[0] == s && r[1] == -1 && r[7] == ((h + 1) * 3 << 16 | h * 3) &&
                    r[4] == b.v.partition_indptr[s] && r[5] == b.v.partition_indptr[s + 1],
                "H %d W %d worker %d item %d: (seq %d, loc %d, qhr %#x, [%d, %d)), want head %d "
                "seq %d",
                H, W, c, i, r[0], r[1], (unsigned)r[7], r[4], r[5], h, s);
        }
      CHECK(i == b.v.work_indptr[c + 1], "H %d W %d: worker %d has extra items", H, W, c);
    }
    release(&b);
  }
}

static void test_workers_not_multiple(void) {
  current = "workers not a multiple of kv heads";
  int32_t lens[6] = {1027, 700, 3000, 0, 90000, 5};
  static const int32_t cfg[][2] = {{4, 10}, {3, 1000}, {16, 31}, {5, 7}, {2, 3}};
  for (int ci = 0; ci < 5; ++ci) {
    int32_t H = cfg[ci][0], W = cfg[ci][1], N = W / H;
    padec_params p = make_params(H, 2, 2, 0);
    padec_plan_options o = make_options(W, 256);
    built b;
    if (build(&b, &p, 6, &o, lens)) continue;
    check_consistent(&b);
    int32_t S = b.v.partition_indptr[6];
    if (g_policy == PADEC_POLICY_COST) {
      /* Head h's items in its bins or in the spare workers, which hold direct items only; and
       * the predicted busiest worker no slower than even's, whose spare workers idle. */
      for (int32_t i = 0; i < b.v.header->num_works; ++i) {
        const int32_t *r = work(&b, i);
        const int32_t h = (r[7] & 0xffff) / 2, w = worker_of(&b, i);
        CHECK((w >= h * N && w < (h + 1) * N) || (w >= H * N && r[1] == -1),
              "H %d W %d: item %d (head %d, loc %d) in worker %d", H, W, i, h, r[1], w);
      }
      padec_plan_options oe = o;
      oe.policy = PADEC_POLICY_EVEN;
      built be;
      if (!build(&be, &p, 6, &oe, lens)) {
        double *cost_ns = calloc((size_t)W, sizeof(double));
        double *even_ns = calloc((size_t)W, sizeof(double));
        if (!cost_ns || !even_ns) exit(1);
        CHECK(padec_plan_predict(&p, &b.layout, b.plan, NULL, cost_ns) == PADEC_STATUS_OK &&
                  padec_plan_predict(&p, &be.layout, be.plan, NULL, even_ns) == PADEC_STATUS_OK,
              "predict: %s", padec_last_message());
        double cost_max = 0, even_max = 0;
        for (int32_t c = 0; c < W; ++c) {
          cost_max = cost_ns[c] > cost_max ? cost_ns[c] : cost_max;
          even_max = even_ns[c] > even_max ? even_ns[c] : even_max;
        }
        CHECK(cost_max <= even_max, "H %d W %d: cost's busiest worker %.0f ns, even's %.0f ns", H,
              W, cost_max, even_max);
        free(cost_ns);
        free(even_ns);
        release(&be);
      }
      release(&b);
      continue;
    }
    for (int32_t c = H * N; c < W; ++c)
      CHECK(b.v.work_indptr[c] == b.v.work_indptr[c + 1], "H %d W %d: worker %d is not idle", H,
            W, c);
    /* Per head, its N bins hold S / N (+1 for the first S % N) partitions of that head. */
    int64_t *load = calloc((size_t)W * (size_t)H, sizeof(int64_t));
    if (!load) exit(1);
    for (int32_t i = 0; i < b.v.header->num_works; ++i) {
      const int32_t *r = work(&b, i);
      load[(r[7] & 0xffff) / 2 * W + worker_of(&b, i)] += r[5] - r[4];
    }
    for (int32_t h = 0; h < H; ++h)
      for (int32_t c = 0; c < W; ++c) {
        int64_t want = 0;
        if (c >= h * N && c < (h + 1) * N) want = S / N + ((c - h * N) < S % N ? 1 : 0);
        CHECK(load[h * W + c] == want, "H %d W %d: head %d worker %d holds %" PRId64
              " partitions, want %" PRId64, H, W, h, c, load[h * W + c], want);
      }
    free(load);
    release(&b);
  }
}

static void test_windows(void) {
  current = "windows";
  int32_t lens[5] = {1000, 70000, 5, 0, 4096};
  /* A window longer than every sequence schedules the same partitions as no window. */
  for (int32_t q = 1; q <= 4; ++q) {
    padec_params p0 = make_params(2, 4, q, 0), pw = make_params(2, 4, q, 1000000);
    padec_params pe = make_params(2, 4, q, 70000 - q); /* reaches token 0 of the longest */
    padec_plan_options o = make_options(16, 256);
    built b0, bw, be;
    if (build(&b0, &p0, 5, &o, lens)) continue;
    if (!build(&bw, &pw, 5, &o, lens)) {
      check_consistent(&bw);
      size_t header = sizeof(padec_plan_header);
      CHECK(memcmp((char *)b0.plan + header, (char *)bw.plan + header,
                   b0.layout.plan_bytes - header) == 0,
            "q_len %d: window 1e6 gives another schedule than no window", q);
      release(&bw);
    }
    if (!build(&be, &pe, 5, &o, lens)) {
      size_t header = sizeof(padec_plan_header);
      CHECK(memcmp((char *)b0.plan + header, (char *)be.plan + header,
                   b0.layout.plan_bytes - header) == 0,
            "q_len %d: window kv_len - q_len gives another schedule than no window", q);
      release(&be);
    }
    release(&b0);
  }
  /* A small window skips the partitions before it: 1027 tokens, q_len 1, window 10 sees tokens
   * 1016..1026, partitions 3 and 4 of 256. */
  {
    int32_t one[1] = {1027};
    padec_params p = make_params(1, 8, 1, 10);
    padec_plan_options o = make_options(8, 256);
    CHECK(padec_first_partition(1027, 1, 10, 256) == 3, "first partition %d",
          padec_first_partition(1027, 1, 10, 256));
    CHECK(padec_num_partitions(1027, 1, 10, 256) == 2, "partitions %d",
          padec_num_partitions(1027, 1, 10, 256));
    /* Outside the params' domain (q_len negative) the first partition passes INT32_MAX: it is
     * clamped, and the count is 0, without a signed overflow (UBSan tier). */
    CHECK(padec_first_partition(INT32_MAX, INT32_MIN, 1, 1) == INT32_MAX, "clamped first %d",
          padec_first_partition(INT32_MAX, INT32_MIN, 1, 1));
    CHECK(padec_num_partitions(INT32_MAX, INT32_MIN, 1, 1) == 0, "partitions past the range %d",
          padec_num_partitions(INT32_MAX, INT32_MIN, 1, 1));
    built b;
    if (!build(&b, &p, 1, &o, one)) {
      check_consistent(&b);
      CHECK(b.v.partition_indptr[1] == 2, "partition_indptr[1] = %d", b.v.partition_indptr[1]);
      release(&b);
    }
  }
  /* Boundaries: window exactly to a partition start, and just before it. lo = L - q_len - W. */
  CHECK(padec_first_partition(1024 + 256 + 4, 4, 1024, 256) == 1, "lo 256 -> partition 1");
  CHECK(padec_first_partition(1024 + 255 + 4, 4, 1024, 256) == 0, "lo 255 -> partition 0");
  CHECK(padec_num_partitions(0, 1, 100, 256) == 0 && padec_num_partitions(0, 1, 0, 256) == 0,
        "empty sequences have no partition");
  CHECK(padec_num_partitions(1, 4, 0, 16) == 1, "a sequence shorter than q_len has 1 partition");
}

/* Buffers untouched by failing calls. */
static int unchanged(const unsigned char *buf, size_t n, unsigned char fill) {
  for (size_t i = 0; i < n; ++i)
    if (buf[i] != fill) return 0;
  return 1;
}

static void expect_layout_error(const char *what, const padec_params *p, int32_t batch,
                                const padec_plan_options *o, padec_status want) {
  padec_plan_layout layout;
  memset(&layout, 0x3c, sizeof layout);
  padec_status s = padec_plan_layout_init(p, batch, o, &layout);
  CHECK(s == want, "%s: layout_init gave %s, want %s", what, padec_status_name(s),
        padec_status_name(want));
  CHECK(unchanged((const unsigned char *)&layout, sizeof layout, 0x3c),
        "%s: layout written on error", what);
  CHECK(s == PADEC_STATUS_OK || padec_last_message()[0] != '\0', "%s: no message", what);
}

static void expect_build_error(const char *what, const padec_params *p,
                               const padec_plan_layout *layout, const int32_t *kv_lens,
                               size_t offset, size_t bytes, padec_status want) {
  size_t total = layout->plan_bytes + 64;
  unsigned char *buf = alloc_aligned(total);
  memset(buf, 0xc3, total);
  padec_status s = padec_plan_build(p, layout, kv_lens, buf + offset, bytes);
  CHECK(s == want, "%s: build gave %s (%s), want %s", what, padec_status_name(s),
        padec_last_message(), padec_status_name(want));
  CHECK(unchanged(buf, total, 0xc3), "%s: the plan buffer was written on error", what);
  CHECK(padec_last_message()[0] != '\0', "%s: no message", what);
  free(buf);
}

static void test_errors(void) {
  current = "errors";
  padec_params p = make_params(2, 4, 1, 0);
  padec_plan_options o = make_options(8, 256);
  padec_plan_layout layout;

  expect_layout_error("batch -1", &p, -1, &o, PADEC_STATUS_BAD_ARGUMENT);
  expect_layout_error("batch 2^24 + 1", &p, (1 << 24) + 1, &o, PADEC_STATUS_BAD_ARGUMENT);
  static const int32_t bad_workers[] = {0, -3, 65537, INT32_MAX};
  for (int i = 0; i < 4; ++i) {
    padec_plan_options ob = make_options(bad_workers[i], 256);
    expect_layout_error("bad num_workers", &p, 4, &ob, PADEC_STATUS_BAD_ARGUMENT);
  }
  static const int32_t bad_partitions[] = {8, 100, 32768, -256, 1, 24};
  for (int i = 0; i < 6; ++i) {
    padec_plan_options ob = make_options(8, bad_partitions[i]);
    expect_layout_error("bad partition_tokens", &p, 4, &ob, PADEC_STATUS_BAD_ARGUMENT);
  }
  {
    padec_plan_options ob = make_options(8, 256);
    ob.policy = (padec_policy)7;
    expect_layout_error("bad policy", &p, 4, &ob, PADEC_STATUS_BAD_ARGUMENT);
  }
  {
    padec_params pn = make_params(2, 4, 1, -1);
    expect_layout_error("negative window", &pn, 4, &o, PADEC_STATUS_BAD_ARGUMENT);
    padec_params pq = make_params(2, 4, 5, 0);
    expect_layout_error("q_len 5", &pq, 4, &o, PADEC_STATUS_BAD_Q_LEN);
  }
  expect_layout_error("null options", &p, 4, NULL, PADEC_STATUS_NULL_POINTER);
  CHECK(padec_plan_layout_init(&p, 4, &o, NULL) == PADEC_STATUS_NULL_POINTER, "null layout");
  {
    /* 256 KV heads x 2^24 sequences: more work items than int32 rows can index. */
    padec_params ph = make_params(256, 1, 1, 0);
    padec_plan_options oh = make_options(256, 256);
    expect_layout_error("2^24 x 256 heads", &ph, 1 << 24, &oh, PADEC_STATUS_SIZE_OVERFLOW);
    /* The largest legal batch with one head still sizes fine (not built here). */
    padec_params p1 = make_params(1, 1, 4, 0);
    padec_plan_options o1 = make_options(65536, 256);
    CHECK(padec_plan_layout_init(&p1, 1 << 24, &o1, &layout) == PADEC_STATUS_OK &&
              layout.max_works == (1 << 24) + 65535 &&
              layout.max_partial_slots == 2 * 65535,
          "2^24 x 1 head x 65536 workers: max_works %d, slots %d", layout.max_works,
          layout.max_partial_slots);
  }

  /* Build errors: nothing written. */
  int32_t lens[4] = {1000, 20, 0, 300};
  if (padec_plan_layout_init(&p, 4, &o, &layout) != PADEC_STATUS_OK) {
    CHECK(0, "layout_init failed");
    return;
  }
  int32_t neg[4] = {1000, 20, -1, 300};
  expect_build_error("negative kv_len", &p, &layout, neg, 0, layout.plan_bytes,
                     PADEC_STATUS_BAD_ARGUMENT);
  int32_t neg_last[4] = {1000, 20, 0, INT32_MIN};
  expect_build_error("INT32_MIN kv_len", &p, &layout, neg_last, 0, layout.plan_bytes,
                     PADEC_STATUS_BAD_ARGUMENT);
  expect_build_error("buffer one byte short", &p, &layout, lens, 0, layout.plan_bytes - 1,
                     PADEC_STATUS_WORKSPACE_TOO_SMALL);
  expect_build_error("zero-byte buffer", &p, &layout, lens, 0, 0,
                     PADEC_STATUS_WORKSPACE_TOO_SMALL);
  expect_build_error("misaligned plan", &p, &layout, lens, 4, layout.plan_bytes,
                     PADEC_STATUS_MISALIGNED_POINTER);
  expect_build_error("null kv_lens", &p, &layout, NULL, 0, layout.plan_bytes,
                     PADEC_STATUS_NULL_POINTER);
  CHECK(padec_plan_build(&p, &layout, lens, NULL, layout.plan_bytes) == PADEC_STATUS_NULL_POINTER,
        "null plan");
  {
    padec_params pw = make_params(2, 4, 1, 128);
    expect_build_error("layout for another window", &pw, &layout, lens, 0, layout.plan_bytes,
                       PADEC_STATUS_PLAN_MISMATCH);
    padec_params pq = make_params(2, 4, 2, 0);
    expect_build_error("layout for another q_len", &pq, &layout, lens, 0, layout.plan_bytes,
                       PADEC_STATUS_PLAN_MISMATCH);
    padec_params pg = make_params(2, 8, 1, 0);
    expect_build_error("layout for another group", &pg, &layout, lens, 0, layout.plan_bytes,
                       PADEC_STATUS_PLAN_MISMATCH);
  }
  /* Partitions past int32: 16 sequences of INT32_MAX tokens in 16-token partitions are 2^31. */
  {
    int32_t huge[16];
    for (int i = 0; i < 16; ++i) huge[i] = INT32_MAX;
    padec_params p1 = make_params(1, 1, 1, 0);
    padec_plan_options o16 = make_options(1000, 16);
    padec_plan_layout l16;
    if (padec_plan_layout_init(&p1, 16, &o16, &l16) == PADEC_STATUS_OK)
      expect_build_error("2^31 partitions", &p1, &l16, huge, 0, l16.plan_bytes,
                         PADEC_STATUS_SIZE_OVERFLOW);
    /* 15 of them (15 x 2^27 partitions) still fit. */
    built b;
    if (!build(&b, &p1, 15, &o16, huge)) {
      check_consistent(&b);
      CHECK(b.v.partition_indptr[15] == 15 * (1 << 27), "partition_indptr[15] = %d",
            b.v.partition_indptr[15]);
      release(&b);
    }
    /* One INT32_MAX sequence with a window: ceil(L / P) - first partition. */
    padec_params pw = make_params(1, 1, 4, 100);
    if (!build(&b, &pw, 1, &o16, huge)) {
      check_consistent(&b);
      int32_t lo = INT32_MAX - 4 - 100;
      CHECK(b.v.partition_indptr[1] == (1 << 27) - lo / 16, "windowed INT32_MAX: %d partitions",
            b.v.partition_indptr[1]);
      release(&b);
    }
  }
  /* The widest q_head_range: 4096 q heads (64 KV heads of 64, or 4096 of 1). */
  {
    int32_t one[2] = {5000, 0};
    padec_params pg = make_params(64, 64, 1, 0);
    padec_plan_options o4 = make_options(64 * 4, 256);
    built b;
    if (!build(&b, &pg, 2, &o4, one)) {
      check_consistent(&b);
      CHECK(work(&b, 0)[7] == (64 << 16), "q_head_range %#x", (unsigned)work(&b, 0)[7]);
      const int32_t *last = work(&b, b.v.header->num_works - 1);
      CHECK(last[7] == (4096 << 16 | 4032), "last q_head_range %#x", (unsigned)last[7]);
      release(&b);
    }
    padec_params ph = make_params(4096, 1, 1, 0);
    padec_plan_options o5 = make_options(5000, 256);
    if (!build(&b, &ph, 2, &o5, one)) {
      check_consistent(&b);
      const int32_t *last = work(&b, b.v.header->num_works - 1);
      CHECK(last[7] == (4096 << 16 | 4095), "last q_head_range %#x", (unsigned)last[7]);
      release(&b);
    }
  }
}

int main(void) {
  static const padec_policy policies[] = {PADEC_POLICY_EVEN, PADEC_POLICY_COST};
  for (int p = 0; p < 2; ++p) {
    g_policy = policies[p];
    test_batch_zero();
    test_all_empty();
    test_long_splits();
    test_one_worker();
    test_fewer_workers_than_heads();
    test_workers_not_multiple();
    test_windows();
    test_errors();
  }
  if (failures) {
    fprintf(stderr, "test_sched_edges: %d failure(s)\n", failures);
    return 1;
  }
  fprintf(stderr, "test_sched_edges: ok\n");
  return 0;
}
