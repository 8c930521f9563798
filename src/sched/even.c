/*
 * The `even` scheduling policy.
 *
 * Every (sequence, KV head) is cut into partitions of partition_tokens; with W = num_workers
 * bins and H KV heads, each head gets N = W / H consecutive bins whose capacities, in
 * partitions, differ by at most one and add up to the head's total S. A greedy pass fills the
 * bins in sequence order; a sequence is split exactly where a bin boundary falls inside it.
 * Every head sees the same split pattern, so the reduce maps are shared by all heads, and so are
 * the partial rows (different heads write different q-head columns of the same rows).
 *
 * Beyond the seed (which asserted W % H == 0 and W >= H):
 *   - W not a multiple of H: N = W / H rounded down; the last W mod H workers get no work.
 *   - W < H: no splits; worker c runs, in order, heads c, c + W, c + 2W, ... of every sequence as
 *     direct items.
 *   - A sequence may be split into any number of pieces; all counts are checked against int32.
 */
#include <stdbool.h>

#include "../internal.h"
#include "sched.h"

padec_sched_bounds padec__sched_bounds(padec_policy policy, int32_t batch, int32_t num_kv_heads,
                                       int32_t num_workers) {
  padec_sched_bounds bounds;
  if (policy == PADEC_POLICY_BATCH_INVARIANT) {
    /* At most MAX_PIECES pieces per sequence and head; only split sequences own slots. */
    bounds.max_works = (int64_t)num_kv_heads * batch * PADEC_BATCH_INVARIANT_MAX_PIECES;
    bounds.max_partial_slots = (int64_t)batch * PADEC_BATCH_INVARIANT_MAX_PIECES;
    return bounds;
  }
  int64_t bins_per_head = num_workers >= num_kv_heads ? num_workers / num_kv_heads : 1;
  /* Every sequence gives at least one work per head; each of the N - 1 inner bin boundaries adds
   * at most one more. Each split point opens at most two partial slots (the pieces on its two
   * sides), and there are no more slots than pieces. The cost policy keeps the same bounds
   * (cost.c proves it). */
  bounds.max_works = batch == 0 ? 0 : (int64_t)num_kv_heads * ((int64_t)batch + bins_per_head - 1);
  int64_t by_splits = 2 * (bins_per_head - 1);
  int64_t by_pieces = (int64_t)batch + bins_per_head - 1;
  bounds.max_partial_slots = batch == 0 ? 0 : (by_splits < by_pieces ? by_splits : by_pieces);
  return bounds;
}

padec_status padec__schedule_even(const padec_sched_input *in, padec_sched_output *out,
                                  padec_sched_counts *counts) {
  const int32_t batch = in->batch, heads = in->num_kv_heads, workers = in->num_workers;
  const int32_t q_len = in->q_len;
  const int32_t group = in->num_q_heads / heads;

  int32_t num_partitions;
  const padec_status status = padec__sched_partitions(in, out, &num_partitions);
  if (status != PADEC_STATUS_OK) return status;
  /* (qo_end << 16 | qo_start) must fit: q heads are at most 4096 (checked with the params). */

  padec_sched_emitter e = {out, 0, false};
  int32_t num_slots = 0, num_groups = 0;

  if (workers < heads) {
    for (int32_t c = 0; c < workers; ++c) {
      padec__sched_set_work_indptr(out, c, e.num_works);
      for (int32_t h = c; h < heads; h += workers) {
        int32_t q_head_range = ((h + 1) * group) << 16 | (h * group);
        for (int32_t b = 0; b < batch; ++b) {
          int32_t base = out->partition_indptr ? out->partition_indptr[b] : 0;
          int32_t parts = padec__sched_sequence_partitions(in, b);
          padec__sched_emit(&e, b, -1, b * q_len, (b + 1) * q_len, base, base + parts, q_head_range);
        }
      }
    }
    padec__sched_set_work_indptr(out, workers, e.num_works);
    if (out->reduce_indptr)
      for (int32_t g = 0; g <= batch; ++g) out->reduce_indptr[g] = 0;
  } else {
    const int32_t bins_per_head = workers / heads;
    const int32_t average = num_partitions / bins_per_head;
    const int32_t remainder = num_partitions % bins_per_head;
#define BIN_CAPACITY(c) (average + (((c) % bins_per_head) < remainder ? 1 : 0))
    int32_t cid = 0;
    int32_t reduce_pointer = 0, group_count = 0, slot = 0;
    if (out->work_indptr) out->work_indptr[0] = 0;
    for (int32_t h = 0; h < heads && cid < workers; ++h) {
      const int32_t q_head_range = ((h + 1) * group) << 16 | (h * group);
      slot = 0;
      reduce_pointer = 0;
      group_count = 0;
      int32_t b = 0, done = 0, nsplit = 0;
      int32_t remain = BIN_CAPACITY(cid);
      int32_t kv_begin = 0, kv_end = 0;
      if (batch > 0) {
        kv_begin = out->partition_indptr ? out->partition_indptr[0] : 0;
        kv_end = kv_begin + padec__sched_sequence_partitions(in, 0);
      }
      int32_t running = 0; /* cumulative partitions before sequence b, when indptr is absent */
      while (cid < workers && b < batch) {
        const int32_t left = (kv_end - kv_begin) - done;
        const int32_t qo_start = b * q_len, qo_end = (b + 1) * q_len;
        if (remain >= left) {
          if (nsplit == 0) {
            padec__sched_emit(&e, b, -1, qo_start, qo_end, kv_begin + done, kv_end, q_head_range);
          } else {
            padec__sched_emit(&e, b, slot, qo_start, qo_end, kv_begin + done, kv_end, q_head_range);
            if (reduce_pointer + nsplit + 1 > out->max_partial_slots || group_count >= batch) {
              e.overflow = true;
            } else {
              if (out->reduce_indptr) out->reduce_indptr[group_count + 1] = reduce_pointer + nsplit + 1;
              if (out->reduce_final_map) {
                out->reduce_final_map[2 * group_count] = qo_start;
                out->reduce_final_map[2 * group_count + 1] = qo_end;
              }
              if (out->reduce_partial_map)
                for (int32_t s = 0; s <= nsplit; ++s)
                  out->reduce_partial_map[reduce_pointer + s] = slot - (nsplit - s) * q_len;
            }
            reduce_pointer += nsplit + 1;
            group_count += 1;
            slot += q_len;
          }
          padec__sched_set_work_indptr(out, cid + 1, e.num_works);
          remain -= left;
          running += kv_end - kv_begin;
          b += 1;
          done = 0;
          nsplit = 0;
          if (b < batch) {
            kv_begin = out->partition_indptr ? out->partition_indptr[b] : running;
            kv_end = kv_begin + padec__sched_sequence_partitions(in, b);
          }
        } else {
          if (remain > 0) {
            int32_t piece_end = kv_begin + done + remain;
            padec__sched_emit(&e, b, slot, qo_start, qo_end, kv_begin + done,
                      piece_end < kv_end ? piece_end : kv_end, q_head_range);
            slot += q_len;
            done += remain;
            nsplit += 1;
          }
          /* The bin closes: its end pointer is final. */
          padec__sched_set_work_indptr(out, cid + 1, e.num_works);
          cid += 1;
          remain = cid < workers ? BIN_CAPACITY(cid) : 0;
        }
        if (e.overflow) break;
      }
      if (b < batch && !e.overflow)
        return padec__fail(PADEC_STATUS_INTERNAL,
                           "even schedule ran out of bins at head %d, sequence %d", h, b);
      if (cid < workers) cid += 1;
    }
#undef BIN_CAPACITY
    for (int32_t c = cid; c <= workers; ++c) padec__sched_set_work_indptr(out, c, e.num_works);
    if (out->reduce_indptr) {
      out->reduce_indptr[0] = 0;
      for (int32_t g = group_count + 1; g <= batch; ++g) out->reduce_indptr[g] = reduce_pointer;
    }
    /* Slots are counted in pieces; each piece owns q_len partial rows. */
    num_slots = reduce_pointer;
    num_groups = group_count;
  }
  if (e.overflow)
    return padec__fail(PADEC_STATUS_INTERNAL,
                       "even schedule exceeded its capacity (%d works, %d partial slots)",
                       out->max_works, out->max_partial_slots);
  if (counts) {
    counts->num_works = e.num_works;
    counts->num_partial_slots = num_slots;
    counts->num_groups = num_groups;
    counts->num_partitions = num_partitions;
  }
  return PADEC_STATUS_OK;
}
