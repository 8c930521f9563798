/*
 * libFuzzer target: the scheduler, through padec_plan_layout_init and padec_plan_build.
 *
 * The input decodes to a schedule problem: KV heads, group, q_len, window, worker count,
 * partition size and a batch of lengths (from empty to near INT32_MAX, in runs so that long
 * batches are cheap to express). The plan is built into a buffer with guard bytes on both sides,
 * and every invariant a kernel relies on is checked in O(items log items):
 *   - header: magic, the layout's fields, counts within the layout's capacities;
 *   - work_indptr: 0 at the start, monotone, num_works at the end; workers from
 *     kv_heads * (workers / kv_heads) on are idle when there are at least as many workers as
 *     heads;
 *   - every item: a sequence of the batch, its own query rows, a KV head's q heads, kv_offset 0,
 *     a partition range inside its sequence's [partition_indptr[b], partition_indptr[b + 1]);
 *   - partition_indptr: from 0, each step equal to padec_num_partitions of the sequence;
 *   - coverage: for every KV head, the items of each sequence tile its scheduled partitions
 *     exactly once (no gap, no overlap; an empty sequence has exactly one empty item);
 *   - reduce maps: one group per sequence with more than one item, with the sequence's rows in
 *     reduce_final_map and as many distinct, in-bounds partial rows as the sequence has items per
 *     head, equal to the items' partial_qo_loc in KV order for every head; direct items (-1)
 *     exactly for unsplit sequences; reduce_indptr monotone with a repeated tail;
 *   - nothing written outside [plan, plan + plan_bytes), and the same bytes on a second build
 *     into a buffer of other contents;
 *   - cost policy (with the default model or one of a few extreme ones): main bin h N + j holds
 *     head h's items, the spare workers from H N on hold direct items only, every piece of a
 *     split sequence has at least m = max(1, ceil((item + split) / partition)) partitions, and no
 *     worker costs more than the capacity that src/sched/cost.c proves to fit.
 * A violation prints the problem and calls abort().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_BATCH = 512, GUARD = 64 };

typedef struct problem {
  padec_params params;
  padec_plan_options options;
  padec_cost_model model;
  int32_t batch;
  int32_t kv_lens[MAX_BATCH];
} problem;

static const problem *g_problem; /* for the failure report */

static void report_problem(void) {
  const problem *p = g_problem;
  if (!p) return;
  fprintf(stderr,
          "  num_q_heads=%d num_kv_heads=%d q_len=%d window_left=%d workers=%d partition=%d "
          "batch=%d lens=",
          p->params.num_q_heads, p->params.num_kv_heads, p->params.q_len, p->params.window_left,
          p->options.num_workers, p->options.partition_tokens, p->batch);
  for (int32_t b = 0; b < p->batch && b < 64; ++b)
    fprintf(stderr, "%s%d", b ? "," : "", p->kv_lens[b]);
  fprintf(stderr, "%s\n", p->batch > 64 ? ",..." : "");
}

#define REQUIRE(cond, ...)                                                                         \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_schedule: invariant violated: " __VA_ARGS__);                          \
      fprintf(stderr, "\n");                                                                       \
      report_problem();                                                                            \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

typedef struct reader {
  const uint8_t *data;
  size_t size;
} reader;

static uint32_t read_u8(reader *r) {
  if (r->size == 0) return 0;
  r->size -= 1;
  return *r->data++;
}

static uint32_t read_u16(reader *r) {
  const uint32_t low = read_u8(r);
  return low | read_u8(r) << 8;
}

static uint32_t read_u32(reader *r) {
  const uint32_t low = read_u16(r);
  return low | read_u16(r) << 16;
}

/* A length whose magnitude is spread over every scale: 0, small, around partition boundaries,
 * long, and near INT32_MAX. */
static int32_t read_length(reader *r, int32_t partition_tokens) {
  const uint32_t kind = read_u8(r);
  switch (kind % 8) {
    case 0: return 0;
    case 1: return (int32_t)(read_u8(r) % 8);
    case 2: return (int32_t)read_u8(r);
    case 3: { /* one below, at or one above a partition boundary */
      const int32_t k = (int32_t)(read_u8(r) % 64);
      const int32_t len = k * partition_tokens + (int32_t)(read_u8(r) % 3) - 1;
      return len < 0 ? 0 : len;
    }
    case 4: return (int32_t)read_u16(r);
    case 5: return (int32_t)(read_u32(r) % (1u << 22));
    case 6: return (int32_t)(read_u32(r) & 0x7fffffffu);
    default: return INT32_MAX - (int32_t)read_u8(r);
  }
}

static void decode(reader *r, problem *p) {
  memset(p, 0, sizeof *p);
  const uint32_t shape = read_u32(r);
  const int32_t kv_heads = 1 + (int32_t)(shape % 16);
  const int32_t q_len = 1 + (int32_t)((shape >> 4) % 4);
  int32_t group = 1 + (int32_t)((shape >> 6) % 16);
  while (group * q_len > 64) group -= 1;
  p->params.num_kv_heads = kv_heads;
  p->params.num_q_heads = kv_heads * group;
  p->params.head_dim = 64 << ((shape >> 10) % 3);
  p->params.page_size = 1 << ((shape >> 12) % 11);
  p->params.q_len = (shape >> 16) & 1 ? q_len : (q_len == 1 ? 0 : q_len); /* 0 means 1 */
  const uint32_t window_kind = (shape >> 17) % 4;
  const uint32_t window_value = read_u32(r);
  p->params.window_left = window_kind == 0   ? 0
                          : window_kind == 1 ? (int32_t)(window_value % 64)
                          : window_kind == 2 ? (int32_t)(window_value % 100000)
                                             : (int32_t)(window_value & 0x7fffffffu);
  const uint32_t worker_code = read_u16(r);
  int32_t workers;
  switch ((shape >> 19) % 4) {
    case 0: workers = 1 + (int32_t)(worker_code % 8); break;
    case 1: workers = kv_heads * (1 + (int32_t)(worker_code % 64)); break;
    case 2: workers = 1 + (int32_t)(worker_code % 1024); break;
    default: workers = 1 + (int32_t)(worker_code % 8192); break;
  }
  p->options.num_workers = workers;
  p->options.partition_tokens = (shape >> 21) % 12 == 11 ? 0 : 16 << ((shape >> 21) % 11);
  /* Every policy must keep every invariant checked below. Bits 25-26: even, batch_invariant,
   * cost with the default model, cost with one of the models below (bits 27-29). */
  static const padec_cost_model models[8] = {
      {6000.0, 0.0, 0.0}, {6000.0, 384000.0, 800.0}, {1.0, 1e12, 1e12}, {6000.0, 1500.0, 0.0},
      {1e-3, 0.0, 5.0},   {1e12, 1.0, 1.0},          {6000.0, 0.0, 1e5}, {375.0, 1500.0, 800.0}};
  switch ((shape >> 25) & 3) {
    case 0: p->options.policy = PADEC_POLICY_EVEN; break;
    case 1: p->options.policy = PADEC_POLICY_BATCH_INVARIANT; break;
    case 2: p->options.policy = PADEC_POLICY_COST; break;
    default:
      p->options.policy = PADEC_POLICY_COST;
      p->model = models[(shape >> 27) & 7];
      p->options.cost_model = &p->model;
      break;
  }
  const int32_t partition_tokens = p->options.partition_tokens ? p->options.partition_tokens : 256;

  /* The batch: runs of (length, repeat). */
  int32_t batch = 0;
  const int32_t target = (int32_t)(read_u16(r) % (MAX_BATCH + 1));
  while (batch < target) {
    const int32_t len = read_length(r, partition_tokens);
    int32_t repeat = 1 + (int32_t)(read_u8(r) % 16);
    if (r->size == 0) repeat = target - batch; /* input exhausted: fill with the last length */
    for (int32_t i = 0; i < repeat && batch < target; ++i) p->kv_lens[batch++] = len;
  }
  p->batch = batch;
}

static int compare_items(const void *a, const void *b) {
  const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
  for (int i = 0; i < 2; ++i)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

/* The cost policy's own rules (see src/sched/cost.c for the bound's proof). */
static void check_cost(const problem *p, const padec_plan_layout *layout,
                       const padec_plan_view *v) {
  const int32_t B = p->batch, H = p->params.num_kv_heads, W = p->options.num_workers;
  const int32_t G = p->params.num_q_heads / H, N = W >= H ? W / H : 0;
  const int64_t cp = layout->cost_partition, ci = layout->cost_item, cs = layout->cost_split;
  REQUIRE(cp == 1024 && ci >= 0 && ci <= (1 << 30) && cs >= 0 && cs <= (1 << 30),
          "cost units %lld/%lld/%lld", (long long)cp, (long long)ci, (long long)cs);
  int64_t m = (ci + cs + cp - 1) / cp;
  if (m < 1) m = 1;
  int64_t head_cost = 0, largest = 0, bound = 0;
  for (int32_t b = 0; b < B; ++b) {
    const int64_t c = ci + (int64_t)(v->partition_indptr[b + 1] - v->partition_indptr[b]) * cp;
    head_cost += c;
    if (c > largest) largest = c;
  }
  if (B > 0 && N == 0) {
    bound = (head_cost * H + W - 1) / W + largest;
  } else if (B > 0) {
    bound = (head_cost + (int64_t)(N - 1) * (2 * ci + 3 * cs + 2 * m * cp) + N - 1) / N;
    if (bound < ci + cs + 2 * m * cp) bound = ci + cs + 2 * m * cp;
  }
  for (int32_t w = 0; w < W; ++w) {
    int64_t load = 0;
    for (int32_t i = v->work_indptr[w]; i < v->work_indptr[w + 1]; ++i) {
      const int32_t *row = v->work_info + 8 * (int64_t)i;
      const int64_t parts = row[5] - row[4];
      load += ci + parts * cp + (row[1] >= 0 ? cs : 0);
      REQUIRE(row[1] < 0 || parts >= m, "worker %d item %d: a piece of %lld partitions, m %lld",
              w, i, (long long)parts, (long long)m);
      if (w >= H * N)
        REQUIRE(row[1] < 0, "spare worker %d holds a piece of a split sequence", w);
      else
        REQUIRE((row[7] & 0xffff) / G == w / N, "worker %d holds an item of another head", w);
    }
    REQUIRE(load <= bound, "worker %d costs %lld units, above %lld", w, (long long)load,
            (long long)bound);
  }
}

static void check_plan(const problem *p, const padec_plan_layout *layout, const void *plan) {
  padec_plan_view v;
  REQUIRE(padec_plan_view_init(layout, plan, &v) == PADEC_STATUS_OK, "view of a built plan");
  const padec_plan_header *h = v.header;
  const int32_t B = p->batch, H = p->params.num_kv_heads, W = p->options.num_workers;
  const int32_t G = p->params.num_q_heads / H;
  const int32_t q = layout->q_len;
  REQUIRE(h->magic == PADEC_PLAN_MAGIC && h->version == PADEC_VERSION_NUMBER, "header magic");
  REQUIRE(h->params_key == layout->params_key && h->batch == B && h->num_workers == W &&
              h->num_kv_heads == H && h->q_len == q &&
              h->partition_tokens == layout->partition_tokens && h->policy == layout->policy,
          "header fields differ from the layout");
  const int32_t num_works = h->num_works, num_slots = h->num_partial_slots;
  const int32_t num_groups = h->num_groups;
  REQUIRE(num_works >= 0 && num_works <= layout->max_works, "num_works %d, max_works %d", num_works,
          layout->max_works);
  REQUIRE(num_slots >= 0 && num_slots <= layout->max_partial_slots, "num_partial_slots %d, max %d",
          num_slots, layout->max_partial_slots);
  REQUIRE(num_groups >= 0 && num_groups <= B, "num_groups %d, batch %d", num_groups, B);
  REQUIRE(B == 0 || num_works >= H * B, "num_works %d: fewer than one item per (seq, head)",
          num_works);

  /* partition_indptr. */
  REQUIRE(v.partition_indptr[0] == 0, "partition_indptr[0] = %d", v.partition_indptr[0]);
  for (int32_t b = 0; b < B; ++b) {
    const int32_t parts =
        padec_num_partitions(p->kv_lens[b], q, p->params.window_left, layout->partition_tokens);
    REQUIRE((int64_t)v.partition_indptr[b + 1] - v.partition_indptr[b] == parts,
            "partition_indptr step of sequence %d is not its %d partitions", b, parts);
  }
  REQUIRE(h->num_partitions == v.partition_indptr[B], "header num_partitions");

  /* work_indptr. */
  REQUIRE(v.work_indptr[0] == 0, "work_indptr[0] = %d", v.work_indptr[0]);
  for (int32_t w = 0; w < W; ++w)
    REQUIRE(v.work_indptr[w + 1] >= v.work_indptr[w], "work_indptr decreases at %d", w + 1);
  REQUIRE(v.work_indptr[W] == num_works, "work_indptr[W] = %d, num_works %d", v.work_indptr[W],
          num_works);
  /* even only: with W >= H, the last W mod H workers stay idle. */
  if (W >= H && layout->policy == PADEC_POLICY_EVEN)
    for (int32_t w = H * (W / H); w < W; ++w)
      REQUIRE(v.work_indptr[w] == v.work_indptr[w + 1], "idle worker %d has items", w);

  /* Reduce groups: which sequence each belongs to, in bounds, slots distinct. */
  int32_t *group_of = malloc(sizeof(int32_t) * (size_t)(B > 0 ? B : 1));
  unsigned char *slot_used = calloc((size_t)layout->max_partial_rows + 1, 1);
  REQUIRE(group_of && slot_used, "out of memory");
  for (int32_t b = 0; b < B; ++b) group_of[b] = -1;
  REQUIRE(v.reduce_indptr[0] == 0, "reduce_indptr[0] = %d", v.reduce_indptr[0]);
  for (int32_t g = 0; g < num_groups; ++g) {
    const int32_t start = v.reduce_final_map[2 * g], end = v.reduce_final_map[2 * g + 1];
    REQUIRE(start >= 0 && start % q == 0 && end == start + q && start / q < B,
            "reduce_final_map[%d] = (%d, %d) is not one sequence's rows", g, start, end);
    const int32_t b = start / q;
    REQUIRE(group_of[b] < 0, "sequence %d has two reduce groups", b);
    group_of[b] = g;
    const int32_t lo = v.reduce_indptr[g], hi = v.reduce_indptr[g + 1];
    REQUIRE(lo >= 0 && hi - lo >= 2 && hi <= num_slots,
            "reduce group %d spans slots [%d, %d) of %d", g, lo, hi, num_slots);
    for (int32_t k = lo; k < hi; ++k) {
      const int32_t row = v.reduce_partial_map[k];
      REQUIRE(row >= 0 && row % q == 0 && (int64_t)row + q <= layout->max_partial_rows,
              "reduce_partial_map[%d] = %d outside max_partial_rows %d", k, row,
              layout->max_partial_rows);
      REQUIRE(!slot_used[row], "partial row %d used by two pieces", row);
      slot_used[row] = 1;
    }
  }
  REQUIRE(v.reduce_indptr[num_groups] == num_slots, "reduce_indptr[num_groups] = %d, slots %d",
          v.reduce_indptr[num_groups], num_slots);
  for (int32_t g = num_groups; g < B; ++g)
    REQUIRE(v.reduce_indptr[g + 1] == num_slots, "reduce_indptr tail [%d] = %d", g + 1,
            v.reduce_indptr[g + 1]);

  /* Items: fields, then sorted by (head, sequence, kv_start) for the coverage check. */
  int64_t *items = malloc(sizeof(int64_t) * 4 * (size_t)(num_works > 0 ? num_works : 1));
  REQUIRE(items != NULL, "out of memory");
  for (int32_t i = 0; i < num_works; ++i) {
    const int32_t *row = v.work_info + 8 * (int64_t)i;
    const int32_t b = row[0], loc = row[1];
    REQUIRE(b >= 0 && b < B, "item %d: sequence %d", i, b);
    REQUIRE(row[2] == b * q && row[3] == (b + 1) * q, "item %d: query rows [%d, %d)", i, row[2],
            row[3]);
    REQUIRE(row[6] == 0, "item %d: kv_offset %d", i, row[6]);
    const int32_t qh_start = row[7] & 0xffff, qh_end = (int32_t)((uint32_t)row[7] >> 16);
    REQUIRE(qh_start % G == 0 && qh_end == qh_start + G && qh_start / G < H,
            "item %d: q_head_range %#x", i, (unsigned)row[7]);
    REQUIRE(
        row[4] >= v.partition_indptr[b] && row[4] <= row[5] && row[5] <= v.partition_indptr[b + 1],
        "item %d: partitions [%d, %d) outside sequence %d's [%d, %d)", i, row[4], row[5], b,
        v.partition_indptr[b], v.partition_indptr[b + 1]);
    REQUIRE(loc == -1 || (loc >= 0 && loc % q == 0 && (int64_t)loc + q <= layout->max_partial_rows),
            "item %d: partial_qo_loc %d", i, loc);
    items[4 * i] = (int64_t)(qh_start / G) * B + b;
    items[4 * i + 1] = row[4];
    items[4 * i + 2] = row[5];
    items[4 * i + 3] = loc;
  }
  qsort(items, (size_t)num_works, sizeof(int64_t) * 4, compare_items);
  int32_t i = 0;
  for (int32_t head = 0; head < H; ++head)
    for (int32_t b = 0; b < B; ++b) {
      const int64_t key = (int64_t)head * B + b;
      const int32_t begin = v.partition_indptr[b], end = v.partition_indptr[b + 1];
      REQUIRE(i < num_works && items[4 * i] == key, "sequence %d head %d has no item", b, head);
      int32_t next = begin, pieces = 0;
      const int32_t g = group_of[b];
      for (; i < num_works && items[4 * i] == key; ++i, ++pieces) {
        REQUIRE(items[4 * i + 1] == next, "sequence %d head %d: gap or overlap at partition %d", b,
                head, next);
        REQUIRE(items[4 * i + 2] > next || (begin == end && pieces == 0),
                "sequence %d head %d: an empty piece", b, head);
        next = (int32_t)items[4 * i + 2];
        if (g < 0) {
          REQUIRE(items[4 * i + 3] == -1, "sequence %d (no reduce group) has a partial item", b);
        } else {
          const int32_t k = v.reduce_indptr[g] + pieces;
          REQUIRE(k < v.reduce_indptr[g + 1] && items[4 * i + 3] == v.reduce_partial_map[k],
                  "sequence %d head %d piece %d: partial_qo_loc %lld is not its group's slot", b,
                  head, pieces, (long long)items[4 * i + 3]);
        }
      }
      REQUIRE(next == end, "sequence %d head %d: items end at %d, the sequence at %d", b, head,
              next, end);
      REQUIRE(g < 0 ? pieces == 1 : pieces == v.reduce_indptr[g + 1] - v.reduce_indptr[g],
              "sequence %d head %d: %d pieces, group %d", b, head, pieces, g);
    }
  REQUIRE(i == num_works, "items of no (sequence, head)");
  if (layout->policy == PADEC_POLICY_COST) check_cost(p, layout, &v);
  free(items);
  free(group_of);
  free(slot_used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static problem p;
  reader r = {data, size};
  decode(&r, &p);
  g_problem = &p;

  padec_plan_layout layout;
  padec_status status = padec_plan_layout_init(&p.params, p.batch, &p.options, &layout);
  REQUIRE(status == PADEC_STATUS_OK, "layout_init: %s (%s)", padec_status_name(status),
          padec_last_message());
  const size_t bytes = layout.plan_bytes;
  unsigned char *buffer = aligned_alloc(16, (bytes + 2 * GUARD + 15) / 16 * 16);
  unsigned char *again = aligned_alloc(16, (bytes + 15) / 16 * 16 + 16);
  REQUIRE(buffer && again, "out of memory");
  memset(buffer, 0xc3, bytes + 2 * GUARD);
  unsigned char *plan = buffer + GUARD;
  status = padec_plan_build(&p.params, &layout, p.kv_lens, plan, bytes);
  for (size_t i = 0; i < GUARD; ++i)
    REQUIRE(buffer[i] == 0xc3 && plan[bytes + i] == 0xc3, "the build wrote outside plan_bytes");
  if (status == PADEC_STATUS_SIZE_OVERFLOW) {
    /* Documented for more than 2^31 partitions of one head; check that it is so, and that the
     * failed build wrote nothing. */
    int64_t total = 0;
    for (int32_t b = 0; b < p.batch; ++b)
      total += padec_num_partitions(p.kv_lens[b], layout.q_len, p.params.window_left,
                                    layout.partition_tokens);
    REQUIRE(total > INT32_MAX, "SIZE_OVERFLOW for %lld partitions", (long long)total);
    for (size_t i = 0; i < bytes; ++i) REQUIRE(plan[i] == 0xc3, "a failed build wrote the plan");
  } else {
    REQUIRE(status == PADEC_STATUS_OK, "build: %s (%s)", padec_status_name(status),
            padec_last_message());
    check_plan(&p, &layout, plan);
    memset(again, 0x11, bytes);
    status = padec_plan_build(&p.params, &layout, p.kv_lens, again, bytes);
    REQUIRE(status == PADEC_STATUS_OK && memcmp(plan, again, bytes) == 0,
            "a second build into another buffer gives other bytes");
  }
  free(buffer);
  free(again);
  g_problem = NULL;
  return 0;
}
