/*
 * The `cost` scheduling policy: bins of equal predicted time rather than equal partitions.
 *
 * Model. A work item of p partitions costs ci + p * cp, plus cs when it is one piece of a split
 * sequence (padec_cost_model, in integer units where a partition is cp = 1024; see
 * padec_plan_layout.cost_*). A sequence of P partitions cut into k pieces thus costs
 * k * (ci + cs) + P * cp instead of ci + P * cp. When an item's start-up costs a quarter of a
 * partition, a worker given twelve one-partition sequences is a fifth slower than one given a
 * single piece of twelve partitions, which `even` counts as equal.
 *
 * Shape. As in `even`, with W workers and H KV heads each head gets N = W / H bins of its own,
 * workers [h N, (h + 1) N), and every head is scheduled with the same pattern, so that a split
 * sequence has the same pieces in every head and one reduce group serves all heads (the merge
 * reads the same partial slots for every q head). Unlike `even`, the R = W mod H remaining workers
 * are not left idle: they are "spare" bins that take whole sequences as direct items, all H heads
 * of each (a direct item has no partner in another head to agree with). With W < H there are no
 * main bins (N = 0) and every sequence goes to the W spare bins, unsplit.
 *
 * Fill. For a capacity C, one walk goes through the sequences in order:
 *   - spare bins first (R > 0): a sequence goes there when all its H items, each of cost
 *     ci + P cp, fit into the spare bins from the current one on (a bin takes items while they
 *     fit; the next bin opens when one does not); otherwise it stays for the main bins. With N = 0
 *     every sequence must go there: an item that fits nowhere goes to an empty bin, and the last
 *     bin takes what is left, over C;
 *   - main bins: the rest of the sequence goes whole into the current bin when it fits (or when
 *     the bin is the last one). Otherwise the bin's remaining capacity ends inside the sequence
 *     at x partitions (x = what fits as a piece, ci + cs + x cp <= room). The sequence is split
 *     there when both pieces keep at least m = max(1, ceil((ci + cs) / cp)) partitions (x is
 *     lowered to P - m when only the remainder is too short): a piece of fewer would cost more
 *     in item and split overhead than the partitions it moves elsewhere. When no such split
 *     exists the bin closes and the sequence goes to the next one; an empty bin that cannot
 *     hold even a piece of m (C too small) takes m partitions (or the whole rest) anyway.
 * A capacity fits when no bin ends above C. The capacity used is the smallest that fits, found
 * by bisection between lo = ceil(H T / W) (T = sum of ci + P cp, the unsplit cost of one head)
 * and hi below, to within 1/4096 of lo (about 12 to 30 walks of O(batch + W) each). Then one walk
 * per head writes that head's items and one more writes the spare bins.
 *
 * Why hi fits (N > 0; no spare sequence ever makes a walk overflow, so this holds for whatever
 * subset of the batch stays in the main bins, whose unsplit cost is at most T):
 *  (1) If C >= ci + cs + 2 m cp, an empty bin always makes progress within C: when the rest of a
 *      sequence does not fit, r cp > C - ci - cs >= 2 m cp, so r > 2 m and x >= 2 m, and the
 *      piece min(x, r - m) >= m is a valid split.
 *  (2) Every main bin but the last closes with less than Wmax = ci + cs + 2 m cp unused: a bin
 *      closing without a split has x < m (room < ci + cs + m cp) or r < 2 m (room < rest <=
 *      ci + cs + 2 m cp); a bin closing with a split leaves less than cp (x taken whole) or less
 *      than m cp (x lowered to r - m, and room < ci + cs + r cp).
 *  (3) A split adds one item and at most two split costs (the first split of a sequence makes
 *      two pieces), at most ci + 2 cs, and there is at most one split per closed bin, so the
 *      items of one head cost at most T + (N - 1)(ci + 2 cs).
 * If the walk reaches the last bin, the first N - 1 bins hold at least (N - 1)(C - Wmax), and the
 * last holds the rest, at most T + (N - 1)(ci + 2 cs) - (N - 1)(C - Wmax) <= C when
 *     N C >= T + (N - 1)(2 ci + 3 cs + 2 m cp).
 * So hi = max(ci + cs + 2 m cp, ceil((T + (N - 1)(2 ci + 3 cs + 2 m cp)) / N)) fits. With N = 0,
 * hi = lo + max(ci + P cp) fits: a spare bin only closes when the next item does not fit, so
 * W - 1 closed bins hold more than (W - 1)(C - max item) >= (W - 1) H T / W, and the last bin
 * gets less than H T / W <= C. Bisection keeps hi fitting; if a walk at hi did not fit (it
 * cannot, by the above), the schedule would still be complete and valid, only less balanced.
 *
 * Bounds (padec__sched_bounds, the same as `even`'s, with N = W / H, 1 when W < H). Every
 * (sequence, head) gets at least one item. A main walk splits at most once per closed bin, so at
 * most N - 1 times per head, each time adding one item: at most H (batch + N - 1) items. Spare
 * bins only take whole sequences (one item per head, no split) and with W < H nothing is split:
 * H * batch = H (batch + 1 - 1). Partial slots: one per piece of a split sequence, the same in
 * every head. A split adds at most two slots (two when it is its sequence's first), so at most
 * 2 (N - 1); and the pieces of the split sequences number at most their count (<= batch) plus
 * the splits (<= N - 1). Both bounds are reached, for example by one long sequence among empty
 * ones (N pieces) and by sequences of 1, 2, ..., 2, 1 partitions with every bin boundary in the
 * middle of its own sequence (tests/unit/test_sched_invariants.c builds them for this policy).
 *
 * Cost units are int64: H * batch <= 2^28 (the layout's work-item limit), partitions per head
 * < 2^31, cp <= 2^16 and ci, cs <= 2^30 keep every sum below 2^61.
 */
#include <math.h>
#include <stdbool.h>

#include "../internal.h"
#include "sched.h"

/* The default model for Hopper, {partition_ns, item_ns, split_ns}: the only place these values
 * are written. `padec bench --calibrate` prints a replacement for the line below, measured on the
 * device it runs on; docs/PERF.md records whether the values in use are measured, and where. */
/* padec bench --calibrate on an NVIDIA H100 80GB HBM3, 264 workers (docs/PERF.md). */
static const padec_cost_model default_model = {11412.3, 3932.8, 3832.4};

#define COST_MAX_UNITS ((int64_t)1 << 30)

padec_status padec_cost_model_default(padec_cost_model *model) {
  if (!model) return padec__fail(PADEC_STATUS_NULL_POINTER, "model is NULL");
  *model = default_model;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec__cost_model_scaled(const padec_cost_model *model, const char *name,
                                      int32_t head_dim, int32_t kv_bytes,
                                      int32_t partition_tokens, padec_sched_cost_ns *out) {
  const padec_cost_model m = model ? *model : default_model;
  if (!isfinite(m.partition_ns) || !(m.partition_ns > 0.0))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "%s->partition_ns = %g: need a finite time above 0",
                       name, m.partition_ns);
  if (!isfinite(m.item_ns) || m.item_ns < 0.0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s->item_ns = %g: need a finite time of 0 or more", name, m.item_ns);
  if (!isfinite(m.split_ns) || m.split_ns < 0.0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s->split_ns = %g: need a finite time of 0 or more", name, m.split_ns);
  /* The reference partition moves 256 tokens x 128 dims x 2 bytes of K and of V. */
  const double scale = ((double)partition_tokens / 256.0) * ((double)head_dim / 128.0) *
                       ((double)kv_bytes / 2.0);
  /* Up to 128 times the reference: a finite time near DBL_MAX can scale to infinity, and a
   * predicted worker time would then be inf, or NaN for a worker with no partitions. */
  if (!isfinite(m.partition_ns * scale))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s->partition_ns = %g: times %g for %d-token partitions at head_dim %d it "
                       "is not a finite time",
                       name, m.partition_ns, scale, partition_tokens, head_dim);
  /* Down to 1/128 of the reference: a subnormal time can scale to 0, and an item or split
   * time of 0 would then be 0 / 0 partitions. */
  if (!(m.partition_ns * scale > 0.0))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s->partition_ns = %g: times %g for %d-token partitions at head_dim %d it "
                       "underflows to 0",
                       name, m.partition_ns, scale, partition_tokens, head_dim);
  out->partition = m.partition_ns * scale;
  out->item = m.item_ns;
  out->split = m.split_ns;
  return PADEC_STATUS_OK;
}

static int32_t to_units(double ns, double partition_ns) {
  const double units = ns / partition_ns * (double)PADEC_COST_PARTITION_UNITS;
  /* NaN and infinity (a partition time that underflowed to 0) land at the top of the range. */
  if (!(units < (double)COST_MAX_UNITS)) return (int32_t)COST_MAX_UNITS;
  return (int32_t)llround(units);
}

void padec__cost_units(const padec_sched_cost_ns *ns, int32_t *partition, int32_t *item,
                       int32_t *split) {
  *partition = PADEC_COST_PARTITION_UNITS;
  *item = to_units(ns->item, ns->partition);
  *split = to_units(ns->split, ns->partition);
}

/* ---- the scheduler -------------------------------------------------------------------------- */

typedef struct cost_ctx {
  const padec_sched_input *in;
  padec_sched_output *out;
  const int32_t *indptr; /* partition_indptr when the fill has it, else NULL (dry run) */
  int64_t cp, ci, cs;    /* partition, item and split costs */
  int64_t min_piece;     /* m: the fewest partitions of a piece of a split sequence */
  int32_t bins;          /* N: main bins per head (0 when workers < heads) */
  int32_t spare;         /* R: the spare bins after the H N main ones */
} cost_ctx;

static int32_t parts_of(const cost_ctx *x, int32_t b) {
  return x->indptr ? x->indptr[b + 1] - x->indptr[b] : padec__sched_sequence_partitions(x->in, b);
}

typedef struct spare_state {
  int32_t bin;  /* current spare bin, 0..R-1 */
  int64_t load; /* its cost so far */
} spare_state;

/* Whether H items of cost c fit into the spare bins from s on, all of them, within capacity. */
static bool spare_fits(const cost_ctx *x, const spare_state *s, int64_t capacity, int64_t c) {
  const int64_t heads = x->in->num_kv_heads;
  if (c == 0) return true;
  if (c > capacity) return false;
  const int64_t room = capacity - s->load;
  const int64_t here = room >= c ? room / c : 0;
  if (here >= heads) return true;
  const int64_t per_bin = capacity / c; /* >= 1 */
  const int64_t bins_needed = (heads - here + per_bin - 1) / per_bin;
  return bins_needed <= (int64_t)x->spare - 1 - s->bin;
}

/* Places the H items of sequence b (cost c each) into the spare bins from *s on, writing them
 * when e is not NULL. With main bins the caller has checked spare_fits. Without them (workers <
 * heads) the items have nowhere else to go: an item larger than the capacity takes an empty bin,
 * and the last bin takes whatever is left; either clears *fits. */
static void spare_place(const cost_ctx *x, spare_state *s, int64_t capacity, int64_t c,
                        bool *fits, padec_sched_emitter *e, int32_t b, int32_t kv_start,
                        int32_t parts) {
  const int32_t heads = x->in->num_kv_heads, q_len = x->in->q_len;
  const int32_t group = x->in->num_q_heads / heads;
  const int32_t first_worker = heads * x->bins;
  int32_t h = 0;
  while (h < heads) {
    const int64_t room = capacity - s->load;
    int64_t take = c == 0 ? heads - h : (room >= c ? room / c : 0);
    if (take > heads - h) take = heads - h;
    if (take == 0 && s->load == 0) { /* larger than a whole bin (workers < heads only) */
      take = 1;
      *fits = false;
    }
    if (take == 0 && s->bin == x->spare - 1) { /* the last bin is full (workers < heads only) */
      take = heads - h;
      *fits = false;
    }
    if (take > 0) {
      if (e)
        for (int32_t k = 0; k < take; ++k) {
          const int32_t head = h + k;
          padec__sched_emit(e, b, -1, b * q_len, (b + 1) * q_len, kv_start, kv_start + parts,
                            ((head + 1) * group) << 16 | (head * group));
        }
      s->load += take * c;
      h += (int32_t)take;
    } else {
      if (e) padec__sched_set_work_indptr(x->out, first_worker + s->bin + 1, e->num_works);
      s->bin += 1;
      s->load = 0;
    }
  }
}

typedef struct walk_result {
  bool fits;          /* no bin ends above the capacity */
  bool overflow;      /* the reduce arrays' capacities would be exceeded */
  int32_t num_slots;  /* partial slots: pieces of split sequences */
  int32_t num_groups; /* split sequences */
} walk_result;

/* Writes the reduce group of split sequence b (its pieces own slots [first, first + pieces)). */
static void write_group(const cost_ctx *x, walk_result *r, int32_t b, int32_t first,
                        int32_t pieces) {
  padec_sched_output *out = x->out;
  const int32_t q_len = x->in->q_len, g = r->num_groups;
  if ((int64_t)first + pieces > out->max_partial_slots || g >= x->in->batch) {
    r->overflow = true;
    return;
  }
  if (out->reduce_indptr) out->reduce_indptr[g + 1] = first + pieces;
  if (out->reduce_final_map) {
    out->reduce_final_map[2 * g] = b * q_len;
    out->reduce_final_map[2 * g + 1] = (b + 1) * q_len;
  }
  if (out->reduce_partial_map)
    for (int32_t k = 0; k < pieces; ++k) out->reduce_partial_map[first + k] = (first + k) * q_len;
}

/* One pass over the batch with capacity C (see the file comment). head >= 0 writes that head's
 * main items (and the reduce maps when write_reduce); spare writes the spare bins' items; with
 * e NULL the walk only measures. */
static walk_result walk(const cost_ctx *x, int64_t capacity, padec_sched_emitter *e, int32_t head,
                        bool write_reduce, bool spare) {
  const padec_sched_input *in = x->in;
  const int32_t batch = in->batch, q_len = in->q_len, bins = x->bins;
  const int32_t group = in->num_q_heads / in->num_kv_heads;
  const int64_t cp = x->cp, ci = x->ci, cs = x->cs, m = x->min_piece;
  padec_sched_emitter *main_e = head >= 0 ? e : NULL, *spare_e = spare ? e : NULL;
  const int32_t first_bin = head >= 0 ? head * bins : 0;
  const int32_t q_head_range = head >= 0 ? ((head + 1) * group) << 16 | (head * group) : 0;
  walk_result r = {true, false, 0, 0};
  spare_state s = {0, 0};
  int32_t bin = 0, kv_base = 0;
  int64_t load = 0;
  for (int32_t b = 0; b < batch; ++b) {
    const int32_t parts = parts_of(x, b);
    const int32_t base = kv_base;
    kv_base += parts;
    const int64_t whole = ci + parts * cp;
    if (x->spare > 0 && (bins == 0 || spare_fits(x, &s, capacity, whole))) {
      spare_place(x, &s, capacity, whole, &r.fits, spare_e, b, base, parts);
      continue;
    }
    int32_t done = 0, pieces = 0;
    for (;;) {
      const int32_t rest_parts = parts - done;
      const int64_t rest = ci + rest_parts * cp + (pieces > 0 ? cs : 0);
      const int64_t room = capacity - load;
      if (rest <= room || bin == bins - 1) {
        if (main_e)
          padec__sched_emit(main_e, b, pieces > 0 ? (r.num_slots + pieces) * q_len : -1,
                            b * q_len, (b + 1) * q_len, base + done, base + parts, q_head_range);
        load += rest;
        if (load > capacity) r.fits = false;
        pieces += 1;
        break;
      }
      int64_t piece = room >= ci + cs ? (room - ci - cs) / cp : -1;
      if (piece > rest_parts - m) piece = rest_parts - m;
      if (piece < m && load == 0) {
        /* An empty bin below what one piece needs: the capacity does not fit; take the smallest
         * piece, or the whole rest when it cannot be split. */
        r.fits = false;
        if (rest_parts < 2 * m) {
          if (main_e)
            padec__sched_emit(main_e, b, pieces > 0 ? (r.num_slots + pieces) * q_len : -1,
                              b * q_len, (b + 1) * q_len, base + done, base + parts,
                              q_head_range);
          load += rest;
          pieces += 1;
          break;
        }
        piece = m;
      }
      if (piece >= m) {
        if (main_e)
          padec__sched_emit(main_e, b, (r.num_slots + pieces) * q_len, b * q_len,
                            (b + 1) * q_len, base + done, base + done + (int32_t)piece,
                            q_head_range);
        done += (int32_t)piece;
        pieces += 1;
      }
      /* The bin closes: its end pointer is final. */
      if (main_e) padec__sched_set_work_indptr(x->out, first_bin + bin + 1, main_e->num_works);
      bin += 1;
      load = 0;
    }
    if (pieces > 1) {
      if (write_reduce) write_group(x, &r, b, r.num_slots, pieces);
      r.num_slots += pieces;
      r.num_groups += 1;
    }
  }
  if (main_e)
    for (int32_t j = bin; j < bins; ++j)
      padec__sched_set_work_indptr(x->out, first_bin + j + 1, main_e->num_works);
  if (spare_e)
    for (int32_t k = s.bin; k < x->spare; ++k)
      padec__sched_set_work_indptr(x->out, in->num_kv_heads * bins + k + 1, spare_e->num_works);
  return r;
}

padec_status padec__schedule_cost(const padec_sched_input *in, padec_sched_output *out,
                                  padec_sched_counts *counts) {
  const int32_t batch = in->batch, heads = in->num_kv_heads, workers = in->num_workers;
  if (in->cost_partition < 1 || in->cost_partition > ((int64_t)1 << 16) || in->cost_item < 0 ||
      in->cost_item > COST_MAX_UNITS || in->cost_split < 0 || in->cost_split > COST_MAX_UNITS)
    return padec__fail(PADEC_STATUS_INTERNAL, "cost schedule: cost units %lld/%lld/%lld",
                       (long long)in->cost_partition, (long long)in->cost_item,
                       (long long)in->cost_split);
  int32_t num_partitions;
  const padec_status status = padec__sched_partitions(in, out, &num_partitions);
  if (status != PADEC_STATUS_OK) return status;

  cost_ctx x;
  x.in = in;
  x.out = out;
  x.indptr = out->partition_indptr;
  x.cp = in->cost_partition;
  x.ci = in->cost_item;
  x.cs = in->cost_split;
  x.min_piece = (x.ci + x.cs + x.cp - 1) / x.cp;
  if (x.min_piece < 1) x.min_piece = 1;
  x.bins = workers >= heads ? workers / heads : 0;
  x.spare = workers - heads * x.bins;

  /* The unsplit cost of one head, and the largest item. */
  int64_t head_cost = 0, largest = 0;
  for (int32_t b = 0; b < batch; ++b) {
    const int64_t c = x.ci + parts_of(&x, b) * x.cp;
    head_cost += c;
    if (c > largest) largest = c;
  }

  /* The capacity: the smallest that fits, between lo and hi (see the file comment). */
  int64_t capacity = 0;
  if (batch > 0) {
    int64_t lo = (head_cost * heads + workers - 1) / workers, hi;
    if (x.bins == 0) {
      hi = lo + largest;
    } else {
      const int64_t waste = x.ci + x.cs + 2 * x.min_piece * x.cp;
      const int64_t per_split = 2 * x.ci + 3 * x.cs + 2 * x.min_piece * x.cp;
      hi = (head_cost + (int64_t)(x.bins - 1) * per_split + x.bins - 1) / x.bins;
      if (hi < waste) hi = waste;
      if (lo > hi) lo = hi;
    }
    while (lo < hi && (hi - lo) > lo / 4096) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (walk(&x, mid, NULL, -1, false, false).fits)
        hi = mid;
      else
        lo = mid + 1;
    }
    capacity = hi;
  }

  padec_sched_emitter e = {out, 0, false};
  walk_result shape = {true, false, 0, 0};
  padec__sched_set_work_indptr(out, 0, 0);
  if (out->reduce_indptr) out->reduce_indptr[0] = 0;
  for (int32_t h = 0; h < heads && x.bins > 0; ++h) {
    const walk_result r = walk(&x, capacity, &e, h, h == 0, false);
    if (h == 0) shape = r;
  }
  if (x.spare > 0) walk(&x, capacity, &e, -1, false, true);
  if (out->reduce_indptr)
    for (int32_t g = shape.num_groups + 1; g <= batch; ++g)
      out->reduce_indptr[g] = shape.num_slots;
  if (e.overflow || shape.overflow)
    return padec__fail(PADEC_STATUS_INTERNAL,
                       "cost schedule exceeded its capacity (%d works, %d partial slots)",
                       out->max_works, out->max_partial_slots);
  if (counts) {
    counts->num_works = e.num_works;
    counts->num_partial_slots = shape.num_slots;
    counts->num_groups = shape.num_groups;
    counts->num_partitions = num_partitions;
  }
  return PADEC_STATUS_OK;
}
