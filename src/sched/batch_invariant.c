/*
 * The `batch_invariant` scheduling policy.
 *
 * A sequence's split points depend on the sequence alone: its P scheduled partitions are cut
 * into pieces of max(MIN_PIECE, ceil(P / MAX_PIECES)) partitions. A sequence with one piece is
 * a direct item; the pieces of a split sequence own consecutive partial slots and merge in slot
 * order. Every executor computes an item the same way whichever worker runs it, so the output
 * and LSE of a sequence do not change with the rest of the batch or the worker count.
 *
 * Items are laid out head by head, sequence by sequence, piece by piece, and dealt to the
 * workers in that order: a worker takes items until its load reaches ceil(total / workers)
 * partitions. Load balance is thus within one piece; `even` balances better, this policy buys
 * reproducibility.
 */
#include "../internal.h"
#include "sched.h"

static int32_t piece_partitions(int32_t partitions) {
  const int32_t by_count =
      (partitions + PADEC_BATCH_INVARIANT_MAX_PIECES - 1) / PADEC_BATCH_INVARIANT_MAX_PIECES;
  return by_count > PADEC_BATCH_INVARIANT_MIN_PIECE_PARTITIONS
             ? by_count
             : PADEC_BATCH_INVARIANT_MIN_PIECE_PARTITIONS;
}

/* Pieces of a sequence: at least one, so that an empty sequence's output is written. */
static int32_t piece_count(int32_t partitions) {
  if (partitions == 0) return 1;
  const int32_t size = piece_partitions(partitions);
  return (partitions + size - 1) / size;
}

padec_status padec__schedule_batch_invariant(const padec_sched_input *in, padec_sched_output *out,
                                             padec_sched_counts *counts) {
  const int32_t batch = in->batch, heads = in->num_kv_heads, workers = in->num_workers;
  const int32_t q_len = in->q_len, group = in->num_q_heads / heads;
  int32_t num_partitions;
  padec_status status = padec__sched_partitions(in, out, &num_partitions);
  if (status != PADEC_STATUS_OK) return status;

  /* Reduce maps: one group per split sequence, in sequence order, with consecutive slots. */
  int32_t num_slots = 0, num_groups = 0;
  if (out->reduce_indptr) out->reduce_indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b) {
    const int32_t parts =
        padec__sched_sequence_partitions(in, b);
    const int32_t pieces = piece_count(parts);
    if (pieces < 2) continue;
    if (num_slots + pieces > out->max_partial_slots || num_groups >= batch)
      return padec__fail(PADEC_STATUS_INTERNAL, "batch_invariant schedule exceeded its slots");
    for (int32_t k = 0; k < pieces; ++k)
      if (out->reduce_partial_map) out->reduce_partial_map[num_slots + k] = (num_slots + k) * q_len;
    if (out->reduce_final_map) {
      out->reduce_final_map[2 * num_groups] = b * q_len;
      out->reduce_final_map[2 * num_groups + 1] = (b + 1) * q_len;
    }
    num_slots += pieces;
    num_groups += 1;
    if (out->reduce_indptr) out->reduce_indptr[num_groups] = num_slots;
  }
  if (out->reduce_indptr)
    for (int32_t g = num_groups + 1; g <= batch; ++g) out->reduce_indptr[g] = num_slots;

  /* Deal the items to the workers in order, ceil(total / workers) partitions each. */
  const int64_t total_load = (int64_t)num_partitions * heads;
  const int64_t target = workers > 0 ? (total_load + workers - 1) / workers : total_load;
  padec_sched_emitter e = {out, 0, false};
  int32_t worker = 0;
  int64_t load = 0;
  padec__sched_set_work_indptr(out, 0, 0);
  for (int32_t h = 0; h < heads; ++h) {
    const int32_t q_head_range = ((h + 1) * group) << 16 | (h * group);
    int32_t part_base = 0, slot = 0;
    for (int32_t b = 0; b < batch; ++b) {
      const int32_t parts =
          padec__sched_sequence_partitions(in, b);
      const int32_t pieces = piece_count(parts);
      const int32_t size = piece_partitions(parts);
      for (int32_t k = 0; k < pieces; ++k) {
        const int32_t begin = part_base + k * size;
        const int32_t end = k + 1 == pieces ? part_base + parts : begin + size;
        if (load >= target && load > 0 && worker + 1 < workers) {
          worker += 1;
          padec__sched_set_work_indptr(out, worker, e.num_works);
          load = 0;
        }
        const int32_t partial_loc = pieces < 2 ? -1 : (slot + k) * q_len;
        padec__sched_emit(&e, b, partial_loc, b * q_len, (b + 1) * q_len, begin, end, q_head_range);
        load += end - begin;
      }
      if (pieces >= 2) slot += pieces;
      part_base += parts;
    }
  }
  for (int32_t c = worker + 1; c <= workers; ++c) padec__sched_set_work_indptr(out, c, e.num_works);
  if (e.overflow)
    return padec__fail(PADEC_STATUS_INTERNAL, "batch_invariant schedule exceeded %d work items",
                       out->max_works);
  if (counts) {
    counts->num_works = e.num_works;
    counts->num_partial_slots = num_slots;
    counts->num_groups = num_groups;
    counts->num_partitions = num_partitions;
  }
  return PADEC_STATUS_OK;
}
