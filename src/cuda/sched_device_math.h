/*
 * The `even` schedule in closed form, per sequence: compiled by nvcc for the device scheduler
 * (sched_device.cu) and by the C compiler for the unit test that checks it against the host
 * scheduler (tests/unit/test_sched_closed_form.c). No state, no loops over the batch: every
 * function answers for one sequence, one piece or one bin, given the totals of the batch.
 *
 * Why a closed form exists. The host scheduler (src/sched/even.c) fills the N = workers /
 * kv_heads bins of a head greedily in sequence order, and moves to the next bin only when the
 * current one cannot take a partition of the current sequence. Every bin it leaves is therefore
 * full, so partition p of a head (counted over the whole batch) lands in the bin k with
 * C(k) <= p < C(k + 1), where C(k) = k * (S / N) + min(k, S mod N) is the capacity of the head's
 * first k bins (S partitions per head; the first S mod N bins take one more). Relative to the
 * head, that bin does not depend on the head: a head starts at bin h * N, except that with
 * 0 < S < N head h >= 1 starts at (h - 1) * N + S, on N - S bins of capacity zero that only
 * empty sequences at the start of the batch can land in (an empty sequence lands in the bin
 * that is open when its turn comes: the bin of the partition before it, or the head's first
 * bin). With S == 0, head h uses bin h alone.
 */
#ifndef PADEC_CUDA_SCHED_DEVICE_MATH_H
#define PADEC_CUDA_SCHED_DEVICE_MATH_H

#include <stdint.h>

#include "../common/numerics.h"
#include "padec.h"

/* The totals of a batch that every per-sequence answer needs. */
typedef struct padec_sd_geometry {
  int32_t batch;
  int32_t num_kv_heads;   /* H */
  int32_t group;          /* q heads per KV head */
  int32_t num_workers;    /* W */
  int32_t q_len;
  int32_t num_partitions; /* S: scheduled partitions of one KV head (the whole batch) */
  int32_t binned;         /* 1 when W >= H (bins and splits); 0: every item direct */
  int32_t bins_per_head;  /* N = W / H (1 when W < H) */
  int32_t average;        /* S / N */
  int32_t remainder;      /* S mod N */
  int32_t last_bin;       /* head-relative bin of partition S - 1 (0 when S == 0) */
} padec_sd_geometry;

/* One work item of a head: its bin and the bin of the head's previous item (the bins c in
 * [prev_bin, bin) end just before this item: work_indptr[c + 1] is this item's index), and its
 * partition range, global over the batch. */
typedef struct padec_sd_item {
  int32_t bin;
  int32_t prev_bin;
  int32_t kv_start;
  int32_t kv_end;
} padec_sd_item;

/* Word offsets (int32 units from the plan start) of the plan's arrays, and the words each owns
 * up to the next array (its padding included), so that every word of the plan is written. */
typedef struct padec_sd_regions {
  int64_t work_indptr, work_indptr_words;
  int64_t work_info, work_info_words;
  int64_t reduce_indptr, reduce_indptr_words;
  int64_t reduce_final_map, reduce_final_map_words;
  int64_t reduce_partial_map, reduce_partial_map_words;
  int64_t partition_indptr, partition_indptr_words;
  int64_t plan_words; /* layout.plan_bytes / 4 */
} padec_sd_regions;

/* padec_num_partitions, here for the device; a negative kv_len counts as 0. The divisions are
 * 32-bit (a 64-bit division is a long software sequence on the GPU): kv_len + partition_tokens
 * - 1 < 2^32 fits uint32, and a positive first token is below kv_len. */
PADEC_HD int32_t padec__sd_num_partitions(int32_t kv_len, int32_t q_len, int32_t window_left,
                                          int32_t partition_tokens) {
  if (kv_len <= 0) return 0;
  const uint32_t tokens = (uint32_t)partition_tokens;
  const int32_t end = (int32_t)(((uint32_t)kv_len + tokens - 1u) / tokens);
  int32_t first = 0;
  if (window_left > 0) {
    const int64_t first_token = (int64_t)kv_len - q_len - window_left;
    if (first_token > 0) first = (int32_t)((uint32_t)first_token / tokens);
  }
  return end - first;
}

/* C(k): partitions in the first k bins of a head, 0 <= k <= N (at most S, so int32). */
PADEC_HD int32_t padec__sd_capacity_before(const padec_sd_geometry *g, int32_t k) {
  const int32_t extra = k < g->remainder ? k : g->remainder;
  return k * g->average + extra;
}

/* The head-relative bin of partition p, 0 <= p < S: the k with C(k) <= p < C(k + 1). The
 * first `remainder` bins hold average + 1 partitions each, C(remainder) <= S in all. */
PADEC_HD int32_t padec__sd_bin_of(const padec_sd_geometry *g, int32_t p) {
  const int32_t in_big_bins = g->remainder > 0 ? g->remainder * (g->average + 1) : 0;
  if (p < in_big_bins) return p / (g->average + 1);
  /* average > 0 here: with average 0 every partition lies in the first `remainder` bins. */
  return g->remainder + (p - in_big_bins) / g->average;
}

PADEC_HD void padec__sd_geometry_init(padec_sd_geometry *g, int32_t batch, int32_t num_kv_heads,
                                      int32_t num_q_heads, int32_t num_workers, int32_t q_len,
                                      int32_t num_partitions) {
  g->batch = batch;
  g->num_kv_heads = num_kv_heads;
  g->group = num_q_heads / num_kv_heads;
  g->num_workers = num_workers;
  g->q_len = q_len;
  g->num_partitions = num_partitions;
  g->binned = num_workers >= num_kv_heads;
  g->bins_per_head = g->binned ? num_workers / num_kv_heads : 1;
  g->average = num_partitions / g->bins_per_head;
  g->remainder = num_partitions % g->bins_per_head;
  g->last_bin = 0;
  if (num_partitions > 0) g->last_bin = padec__sd_bin_of(g, num_partitions - 1);
}

/* Absolute bin of head h's first item (binned schedules). */
PADEC_HD int32_t padec__sd_head_first_bin(const padec_sd_geometry *g, int32_t h) {
  if (h == 0) return 0;
  if (g->num_partitions == 0) return h;
  return (h - 1) * g->bins_per_head + g->last_bin + 1;
}

/* Absolute bin of head h's last item (binned schedules, batch > 0). */
PADEC_HD int32_t padec__sd_head_last_bin(const padec_sd_geometry *g, int32_t h) {
  if (g->num_partitions == 0) return h;
  return h * g->bins_per_head + g->last_bin;
}

/* Work items of one sequence in each head: one per bin its partitions touch, one if empty. */
PADEC_HD int32_t padec__sd_pieces(const padec_sd_geometry *g, int32_t first_partition,
                                  int32_t partitions) {
  if (!g->binned || partitions == 0) return 1;
  return padec__sd_bin_of(g, first_partition + partitions - 1) -
         padec__sd_bin_of(g, first_partition) + 1;
}

/* Piece j of sequence b (partitions [first, first + partitions) of the head) in head h. Pieces of
 * one sequence lie in consecutive bins: with S >= N every bin has capacity, with S < N every
 * partition has a bin of its own. */
PADEC_HD padec_sd_item padec__sd_piece(const padec_sd_geometry *g, int32_t h, int32_t b,
                                       int32_t first, int32_t partitions, int32_t j) {
  padec_sd_item item;
  const int32_t head_base = h * g->bins_per_head;
  /* The bin open after the partitions before this sequence. */
  const int32_t open_bin = first > 0 ? head_base + padec__sd_bin_of(g, first - 1)
                                     : padec__sd_head_first_bin(g, h);
  if (partitions == 0) {
    item.bin = open_bin;
    item.kv_start = first;
    item.kv_end = first;
  } else {
    const int32_t k = padec__sd_bin_of(g, first) + j;
    const int32_t bin_start = padec__sd_capacity_before(g, k);
    const int32_t bin_end = padec__sd_capacity_before(g, k + 1);
    item.bin = head_base + k;
    item.kv_start = first > bin_start ? first : bin_start;
    item.kv_end = first + partitions < bin_end ? first + partitions : bin_end;
  }
  if (j > 0)
    item.prev_bin = item.bin - 1;
  else if (b > 0)
    item.prev_bin = open_bin;
  else
    item.prev_bin = h == 0 ? 0 : padec__sd_head_last_bin(g, h - 1);
  return item;
}

/* The first bin c whose work_indptr[c + 1] is the total item count (binned schedules). */
PADEC_HD int32_t padec__sd_tail_first_bin(const padec_sd_geometry *g) {
  if (g->batch == 0) return 0;
  return padec__sd_head_last_bin(g, g->num_kv_heads - 1);
}

/* Direct schedules (W < H): worker c runs heads c, c + W, ... of every sequence, in that order.
 * Index of the item of (head h, sequence b), and work_indptr[c], 0 <= c <= W. */
PADEC_HD int32_t padec__sd_direct_work_indptr(const padec_sd_geometry *g, int32_t c) {
  const int32_t per_worker = g->num_kv_heads / g->num_workers;
  const int32_t extra = g->num_kv_heads % g->num_workers;
  const int32_t heads_before = c * per_worker + (c < extra ? c : extra);
  return heads_before * g->batch;
}

PADEC_HD int32_t padec__sd_direct_work_index(const padec_sd_geometry *g, int32_t h, int32_t b) {
  const int32_t c = h % g->num_workers;
  return padec__sd_direct_work_indptr(g, c) + (h / g->num_workers) * g->batch + b;
}

/* One row of work_info. */
PADEC_HD void padec__sd_work_row(const padec_sd_geometry *g, int32_t h, int32_t b,
                                 int32_t partial_qo_loc, int32_t kv_start, int32_t kv_end,
                                 int32_t row[8]) {
  row[0] = b;
  row[1] = partial_qo_loc;
  row[2] = b * g->q_len;
  row[3] = (b + 1) * g->q_len;
  row[4] = kv_start;
  row[5] = kv_end;
  row[6] = 0;
  row[7] = (int32_t)((uint32_t)((h + 1) * g->group) << 16 | (uint32_t)(h * g->group));
}

/* Stores one 8-word row (16-byte aligned on the device: work_info rows are). */
PADEC_HD void padec__sd_store_row(int32_t *dst, const int32_t row[8]) {
#ifdef __CUDA_ARCH__
  int4 *d = reinterpret_cast<int4 *>(dst);
  d[0] = make_int4(row[0], row[1], row[2], row[3]);
  d[1] = make_int4(row[4], row[5], row[6], row[7]);
#else
  for (int i = 0; i < 8; ++i) dst[i] = row[i];
#endif
}

/* Binned schedules: writes piece j of sequence b in head h as work item `item` (its index in
 * the whole plan), and work_indptr[c + 1] = item for the bins c that end before it. `slot` is
 * the sequence's first partial slot, or -1 if it is not split. */
PADEC_HD void padec__sd_write_piece(const padec_sd_geometry *g, int32_t *work_info,
                                    int32_t *work_indptr, int32_t h, int32_t b, int32_t first,
                                    int32_t partitions, int32_t j, int32_t item, int32_t slot) {
  const padec_sd_item it = padec__sd_piece(g, h, b, first, partitions, j);
  int32_t row[8];
  padec__sd_work_row(g, h, b, slot < 0 ? -1 : (slot + j) * g->q_len, it.kv_start, it.kv_end, row);
  padec__sd_store_row(work_info + (int64_t)item * 8, row);
  for (int32_t c = it.prev_bin; c < it.bin; ++c) work_indptr[c + 1] = item;
}

/* Direct schedules: writes the item of (head h, sequence b). */
PADEC_HD void padec__sd_write_direct(const padec_sd_geometry *g, int32_t *work_info, int32_t h,
                                     int32_t b, int32_t first, int32_t partitions) {
  int32_t row[8];
  padec__sd_work_row(g, h, b, -1, first, first + partitions, row);
  padec__sd_store_row(work_info + (int64_t)padec__sd_direct_work_index(g, h, b) * 8, row);
}

/* The plan header, as padec_plan_build writes it. */
PADEC_HD void padec__sd_header(padec_plan_header *header, uint64_t params_key, int32_t batch,
                               int32_t num_workers, int32_t num_kv_heads, int32_t q_len,
                               int32_t partition_tokens, int32_t policy, int32_t num_works,
                               int32_t num_partial_slots, int32_t num_groups,
                               int32_t num_partitions) {
  header->magic = PADEC_PLAN_MAGIC;
  header->version = PADEC_VERSION_NUMBER;
  header->params_key = params_key;
  header->batch = batch;
  header->num_workers = num_workers;
  header->num_kv_heads = num_kv_heads;
  header->q_len = q_len;
  header->partition_tokens = partition_tokens;
  header->policy = policy;
  header->num_works = num_works;
  header->num_partial_slots = num_partial_slots;
  header->num_groups = num_groups;
  header->num_partitions = num_partitions;
  header->reserved_[0] = 0;
  header->reserved_[1] = 0;
}

/* The regions of a layout (the arrays in the order padec_plan_layout_init places them). */
PADEC_HD padec_sd_regions padec__sd_regions(const padec_plan_layout *l) {
  padec_sd_regions r;
  r.work_indptr = (int64_t)(l->work_indptr_offset / 4);
  r.work_info = (int64_t)(l->work_info_offset / 4);
  r.reduce_indptr = (int64_t)(l->reduce_indptr_offset / 4);
  r.reduce_final_map = (int64_t)(l->reduce_final_map_offset / 4);
  r.reduce_partial_map = (int64_t)(l->reduce_partial_map_offset / 4);
  r.partition_indptr = (int64_t)(l->partition_indptr_offset / 4);
  r.plan_words = (int64_t)(l->plan_bytes / 4);
  r.work_indptr_words = r.work_info - r.work_indptr;
  r.work_info_words = r.reduce_indptr - r.work_info;
  r.reduce_indptr_words = r.reduce_final_map - r.reduce_indptr;
  r.reduce_final_map_words = r.reduce_partial_map - r.reduce_final_map;
  r.reduce_partial_map_words = r.partition_indptr - r.reduce_partial_map;
  r.partition_indptr_words = r.plan_words - r.partition_indptr;
  return r;
}

#endif /* PADEC_CUDA_SCHED_DEVICE_MATH_H */
