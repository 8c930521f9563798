/* Plan sizing, building and views. The layout is computed from (params, batch, options) alone;
 * the build fills the caller's buffer through the scheduler of the chosen policy. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "sched/sched.h"

static int64_t first_partition_wide(int32_t kv_len, int32_t q_len, int32_t window_left,
                                    int32_t partition_tokens) {
  if (window_left <= 0 || partition_tokens <= 0) return 0;
  /* The earliest position any query sees is that of query 0: kv_len - q_len - window_left. */
  const int64_t first_token = (int64_t)kv_len - q_len - window_left;
  return first_token > 0 ? first_token / partition_tokens : 0;
}

int32_t padec_first_partition(int32_t kv_len, int32_t q_len, int32_t window_left,
                              int32_t partition_tokens) {
  /* Below 2^32 / 1; only a negative q_len (outside the params' domain) takes it past INT32_MAX. */
  const int64_t first = first_partition_wide(kv_len, q_len, window_left, partition_tokens);
  return first < INT32_MAX ? (int32_t)first : INT32_MAX;
}

int32_t padec__shard_num_partitions(int32_t kv_len, int32_t query_end, int32_t q_len,
                                    int32_t window_left, int32_t partition_tokens) {
  if (kv_len <= 0 || partition_tokens <= 0) return 0;
  const int64_t end = ((int64_t)kv_len + partition_tokens - 1) / partition_tokens;
  /* The first partition depends only on where the queries are. Outside the params' domain (a
   * negative q_len) it may land past the int32 range: compared in 64 bits, it gives 0. */
  const int64_t first = first_partition_wide(query_end, q_len, window_left, partition_tokens);
  return end > first ? (int32_t)(end - first) : 0;
}

int32_t padec_num_partitions(int32_t kv_len, int32_t q_len, int32_t window_left,
                             int32_t partition_tokens) {
  return padec__shard_num_partitions(kv_len, kv_len, q_len, window_left, partition_tokens);
}

static size_t align_up(size_t value, size_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

padec_status padec__partition_tokens(int32_t requested, const char *name, int32_t *tokens) {
  const int32_t t = requested ? requested : 256;
  if (t < 16 || t > 16384 || (t & (t - 1)) != 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s = %d: need a power of two 16..16384 (0 = 256)", name, requested);
  *tokens = t;
  return PADEC_STATUS_OK;
}

padec_workspace_offsets padec__workspace_offsets(const padec_params *normalized,
                                                 int64_t partial_rows, size_t counters) {
  const padec_params *p = normalized;
  const size_t row_elems = (size_t)p->num_q_heads * (size_t)p->head_dim;
  padec_workspace_offsets w;
  w.partial_lse = align_up(sizeof(float) * row_elems * (size_t)partial_rows, 256);
  w.merge_counters =
      align_up(w.partial_lse + sizeof(float) * (size_t)p->num_q_heads * (size_t)partial_rows, 256);
  w.bytes = align_up(w.merge_counters + sizeof(int32_t) * counters, 256);
  if (w.bytes == 0) w.bytes = 256;
  return w;
}

padec_status padec_plan_layout_init(const padec_params *params, int32_t batch,
                                    const padec_plan_options *options, padec_plan_layout *layout) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!options) return padec__fail(PADEC_STATUS_NULL_POINTER, "options is NULL");
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (batch < 0 || batch > (1 << 24))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "batch = %d: need 0..16777216", batch);
  if (options->num_workers < 1 || options->num_workers > 65536)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "options.num_workers = %d: need 1..65536",
                       options->num_workers);
  int32_t partition_tokens;
  status = padec__partition_tokens(options->partition_tokens, "options.partition_tokens",
                                   &partition_tokens);
  if (status != PADEC_STATUS_OK) return status;
  if (options->policy != PADEC_POLICY_EVEN && options->policy != PADEC_POLICY_COST &&
      options->policy != PADEC_POLICY_BATCH_INVARIANT)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "options.policy = %d: built are even (0), cost (1) and batch_invariant (2)",
                       (int)options->policy);

  padec_params p = padec__params_normalized(params);
  /* The model is checked whatever the policy, so that a bad one fails where it is given. */
  padec_sched_cost_ns cost_ns;
  status = padec__cost_model_scaled(options->cost_model, "options.cost_model", p.head_dim,
                                    padec__dtype_bytes(p.kv_dtype), partition_tokens, &cost_ns);
  if (status != PADEC_STATUS_OK) return status;
  padec_sched_bounds bounds =
      padec__sched_bounds(options->policy, batch, p.num_kv_heads, options->num_workers);
  int64_t partial_rows = bounds.max_partial_slots * p.q_len;
  /* work_info is indexed as row * 8 in int32 by both executors; partial rows times heads times
   * head_dim must fit a 64-bit byte count, which it does for any value below. */
  if (bounds.max_works > INT32_MAX / 8)
    return padec__fail(PADEC_STATUS_SIZE_OVERFLOW,
                       "batch %d with %d KV heads and %d workers needs %lld work items (below 2^28)", batch,
                       p.num_kv_heads, options->num_workers, (long long)bounds.max_works);
  if (partial_rows > INT32_MAX / 4)
    return padec__fail(PADEC_STATUS_SIZE_OVERFLOW,
                       "batch %d with %d KV heads, %d workers and q_len %d needs %lld partial rows (below "
                       "2^29)",
                       batch, p.num_kv_heads, options->num_workers, p.q_len, (long long)partial_rows);

  padec_plan_layout l;
  memset(&l, 0, sizeof l);
  l.batch = batch;
  l.num_workers = options->num_workers;
  l.num_kv_heads = p.num_kv_heads;
  l.num_q_heads = p.num_q_heads;
  l.head_dim = p.head_dim;
  l.q_len = p.q_len;
  l.partition_tokens = partition_tokens;
  l.policy = (int32_t)options->policy;
  l.params_key = padec__layout_key(&p, options->policy);
  l.max_works = (int32_t)bounds.max_works;
  l.max_partial_slots = (int32_t)bounds.max_partial_slots;
  l.max_partial_rows = (int32_t)partial_rows;
  if (options->policy == PADEC_POLICY_COST)
    padec__cost_units(&cost_ns, &l.cost_partition, &l.cost_item, &l.cost_split);

  size_t offset = sizeof(padec_plan_header);
  l.work_indptr_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * ((size_t)l.num_workers + 1), 16);
  l.work_info_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * 8 * (size_t)l.max_works, 16);
  l.reduce_indptr_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * ((size_t)batch + 1), 16);
  l.reduce_final_map_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * 2 * (size_t)batch, 16);
  l.reduce_partial_map_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * (size_t)l.max_partial_slots, 16);
  l.partition_indptr_offset = offset;
  offset = align_up(offset + sizeof(int32_t) * ((size_t)batch + 1), 16);
  l.plan_bytes = offset;

  const padec_workspace_offsets w =
      padec__workspace_offsets(&p, partial_rows, (size_t)batch * (size_t)p.num_kv_heads);
  l.partial_o_offset = 0;
  l.partial_lse_offset = w.partial_lse;
  l.merge_counters_offset = w.merge_counters;
  l.workspace_bytes = w.bytes;
  *layout = l;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

/* The fields of a plan layout, for the field-by-field check. */
#define PADEC_PLAN_LAYOUT_FIELDS_(X)                                                         \
  X(batch) X(num_workers) X(num_kv_heads) X(num_q_heads) X(head_dim) X(q_len)                \
  X(partition_tokens) X(policy) X(max_works) X(max_partial_slots) X(max_partial_rows)        \
  X(work_indptr_offset) X(work_info_offset) X(reduce_indptr_offset) X(reduce_final_map_offset) \
  X(reduce_partial_map_offset) X(partition_indptr_offset) X(plan_bytes) X(partial_o_offset)  \
  X(partial_lse_offset) X(merge_counters_offset) X(workspace_bytes)

padec_status padec__check_plan_layout(const padec_plan_layout *layout, const char *name) {
  const padec_plan_layout *l = layout;
  /* The sizes depend on the heads, head_dim and q_len, never on the window or the dtypes. */
  padec_params shape;
  memset(&shape, 0, sizeof shape);
  shape.num_q_heads = l->num_q_heads;
  shape.num_kv_heads = l->num_kv_heads;
  shape.head_dim = l->head_dim;
  shape.q_len = l->q_len;
  shape.page_size = 16;
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = l->num_workers;
  options.partition_tokens = l->partition_tokens;
  options.policy = (padec_policy)l->policy;
  padec_plan_layout expected;
  padec__mute_log(true);
  padec_status status = padec_plan_layout_init(&shape, l->batch, &options, &expected);
  padec__mute_log(false);
  if (status != PADEC_STATUS_OK) {
    char why[400];
    snprintf(why, sizeof why, "%s", padec_last_message());
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH, "%s is not a layout from padec_plan_layout_init (%s)",
                       name, why);
  }
  if (l->policy == PADEC_POLICY_COST && l->cost_partition != PADEC_COST_PARTITION_UNITS)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "%s.cost_partition = %d, but padec_plan_layout_init gives %d (a layout "
                       "edited, or from another padec version)",
                       name, l->cost_partition, (int)PADEC_COST_PARTITION_UNITS);
  if (l->policy == PADEC_POLICY_COST &&
      (l->cost_item < 0 || l->cost_item > (1 << 30) || l->cost_split < 0 || l->cost_split > (1 << 30)))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "%s.cost_item/cost_split = %d/%d: need 0..2^30 each (a layout from "
                       "padec_plan_layout_init)",
                       name, l->cost_item, l->cost_split);
  /* The fingerprint covers the window, and the cost units come from the caller's model. */
  expected.params_key = l->params_key;
  if (l->policy == PADEC_POLICY_COST) {
    expected.cost_partition = l->cost_partition;
    expected.cost_item = l->cost_item;
    expected.cost_split = l->cost_split;
  }
#define PADEC_CHECK_FIELD_(field)                                                                 \
  if (l->field != expected.field)                                                                 \
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,                                                \
                       "%s.%s = %lld, but padec_plan_layout_init gives %lld for its batch %d, %d " \
                       "workers, policy %d (a layout edited, or from another padec version)",     \
                       name, #field, (long long)l->field, (long long)expected.field, l->batch,    \
                       l->num_workers, l->policy);
  PADEC_PLAN_LAYOUT_FIELDS_(PADEC_CHECK_FIELD_)
  PADEC_CHECK_FIELD_(cost_partition)
  PADEC_CHECK_FIELD_(cost_item)
  PADEC_CHECK_FIELD_(cost_split)
#undef PADEC_CHECK_FIELD_
  return PADEC_STATUS_OK;
}

padec_status padec__check_plan_header(const padec_plan_layout *layout, const void *plan, const char *name) {
  const padec_plan_header *h = (const padec_plan_header *)plan;
  if (h->magic != PADEC_PLAN_MAGIC)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH, "%s has no padec plan header (magic %#x)", name,
                       (unsigned)h->magic);
  if (h->params_key != layout->params_key || h->batch != layout->batch ||
      h->num_workers != layout->num_workers || h->num_kv_heads != layout->num_kv_heads ||
      h->q_len != layout->q_len || h->partition_tokens != layout->partition_tokens ||
      h->policy != layout->policy)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "%s was built for batch %d, %d workers, partition %d, policy %d; the layout "
                       "says batch %d, %d workers, partition %d, policy %d (or other params)",
                       name, h->batch, h->num_workers, h->partition_tokens, h->policy, layout->batch,
                       layout->num_workers, layout->partition_tokens, layout->policy);
  if (h->num_works < 0 || h->num_works > layout->max_works || h->num_partial_slots < 0 ||
      h->num_partial_slots > layout->max_partial_slots)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "%s's header counts %d work items and %d partial slots; its layout holds "
                       "%d and %d",
                       name, h->num_works, h->num_partial_slots, layout->max_works,
                       layout->max_partial_slots);
  return PADEC_STATUS_OK;
}

/* An index array [count + 1] that starts at 0, never decreases and ends at `last`. */
static padec_status check_indptr(const int32_t *indptr, int32_t count, int32_t last,
                                 const char *plan_name, const char *array, const char *last_name) {
  if (indptr[0] != 0)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH, "%s.%s[0] = %d: need 0 (a corrupt plan)",
                       plan_name, array, indptr[0]);
  for (int32_t i = 0; i < count; ++i)
    if (indptr[i + 1] < indptr[i])
      return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                         "%s.%s[%d] = %d is below %s[%d] = %d (a corrupt plan)", plan_name, array,
                         i + 1, indptr[i + 1], array, i, indptr[i]);
  if (indptr[count] != last)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "%s.%s[%d] = %d, but the header's %s is %d (a corrupt plan)", plan_name,
                       array, count, indptr[count], last_name, last);
  return PADEC_STATUS_OK;
}

/* The reduce group that holds partial slot `slot` (reduce_indptr checked: non-decreasing). */
static int32_t group_of_slot(const int32_t *reduce_indptr, int32_t batch, int32_t slot) {
  int32_t lo = 0, hi = batch; /* reduce_indptr[lo] <= slot < reduce_indptr[hi] */
  while (hi - lo > 1) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (reduce_indptr[mid] <= slot)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* The typed arrays of a plan at the layout's offsets (nothing checked). */
static padec_plan_view view_of(const padec_plan_layout *layout, const void *plan) {
  const char *base = (const char *)plan;
  padec_plan_view v;
  v.header = (const padec_plan_header *)plan;
  v.work_indptr = (const int32_t *)(const void *)(base + layout->work_indptr_offset);
  v.work_info = (const int32_t *)(const void *)(base + layout->work_info_offset);
  v.reduce_indptr = (const int32_t *)(const void *)(base + layout->reduce_indptr_offset);
  v.reduce_final_map = (const int32_t *)(const void *)(base + layout->reduce_final_map_offset);
  v.reduce_partial_map = (const int32_t *)(const void *)(base + layout->reduce_partial_map_offset);
  v.partition_indptr = (const int32_t *)(const void *)(base + layout->partition_indptr_offset);
  return v;
}

/* A (slot, KV head) key's two fingerprints: splitmix64's finaliser of the key under two salts.
 * The split items' fingerprints, summed modulo 2^64, match the sums over every key of the plan
 * only when the items hold each key once, but for a chance of about 2^-64 each: power sums
 * (the count, the sum, the sum of squares) are matched by small permutations that are not one
 * ({1, 5, 6} and {2, 3, 7}). */
static uint64_t key_fingerprint(uint64_t key, uint64_t salt) {
  uint64_t z = key + salt;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

enum { kFingerprintSalts = 2 };
static const uint64_t kFingerprintSalt[kFingerprintSalts] = {0x9e3779b97f4a7c15ull,
                                                             0x632be59bd9b4e019ull};

padec_status padec__check_plan_body(const padec_plan_layout *layout, const void *plan,
                                    const char *name) {
  const padec_plan_view v = view_of(layout, plan);
  const padec_plan_header *h = v.header;
  const int32_t *work_indptr = v.work_indptr, *work_info = v.work_info;
  const int32_t *reduce_indptr = v.reduce_indptr, *final_map = v.reduce_final_map;
  const int32_t *partial_map = v.reduce_partial_map, *partition_indptr = v.partition_indptr;
  const int32_t batch = layout->batch, q_len = layout->q_len;
  const int32_t group = layout->num_q_heads / layout->num_kv_heads;
  padec_status status =
      check_indptr(work_indptr, layout->num_workers, h->num_works, name, "work_indptr", "num_works");
  if (status != PADEC_STATUS_OK) return status;
  status = check_indptr(partition_indptr, batch, h->num_partitions, name, "partition_indptr",
                        "num_partitions");
  if (status != PADEC_STATUS_OK) return status;
  status = check_indptr(reduce_indptr, batch, h->num_partial_slots, name, "reduce_indptr",
                        "num_partial_slots");
  if (status != PADEC_STATUS_OK) return status;
  /* A group merges its slots' partial rows into one sequence's output rows. */
  for (int32_t g = 0; g < batch; ++g) {
    if (reduce_indptr[g + 1] == reduce_indptr[g]) continue;
    const int32_t row_start = final_map[2 * g], row_end = final_map[2 * g + 1];
    if (row_start < 0 || row_start % q_len != 0 || row_start / q_len >= batch ||
        row_end != row_start + q_len)
      return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                         "%s.reduce_final_map[%d] = [%d, %d): need one sequence's %d rows of a "
                         "batch of %d (a corrupt plan)",
                         name, g, row_start, row_end, q_len, batch);
  }
  for (int32_t slot = 0; slot < h->num_partial_slots; ++slot) {
    const int32_t row = partial_map[slot];
    if (row < 0 || row % q_len != 0 || row > layout->max_partial_rows - q_len)
      return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                         "%s.reduce_partial_map[%d] = %d: need a multiple of q_len %d below %d "
                         "partial rows (a corrupt plan)",
                         name, slot, row, q_len, layout->max_partial_rows);
  }
  /* Every item: its sequence, its rows, its partitions within the sequence's, one KV head's
   * query heads, and a partial slot of its own sequence's group. The split items must write
   * each (slot, KV head) once, or a group's merge would wait for a missing arrival (its rows
   * never written, its counter left short for the next run) or read a stale row: their keys
   * slot x H + head are counted and their fingerprints summed, against the sums over every key
   * 0 .. slots x H - 1 (key_fingerprint). Exact checks would need memory for a bitmap or a sort,
   * which a run must not allocate. */
  uint64_t split_items = 0, fingerprint_sum[kFingerprintSalts] = {0, 0};
  for (int32_t w = 0; w < h->num_works; ++w) {
    const int32_t *r = work_info + (int64_t)w * 8;
    const int32_t b = r[0], loc = r[1], head_start = r[7] & 0xffff, head_end = r[7] >> 16;
    const char *why = NULL;
    if (b < 0 || b >= batch)
      why = "its sequence is outside the batch";
    else if (r[2] != b * q_len || r[3] != r[2] + q_len)
      why = "its rows are not its sequence's";
    else if (r[4] < partition_indptr[b] || r[5] < r[4] || r[5] > partition_indptr[b + 1])
      why = "its partitions are not within its sequence's";
    else if (r[6] != 0)
      why = "its kv_offset is not 0";
    else if (head_start % group != 0 || head_end != head_start + group ||
             head_end > layout->num_q_heads)
      why = "its query heads are not one KV head's group";
    else if (loc != -1) {
      const int32_t slot = loc >= 0 && loc % q_len == 0 ? loc / q_len : -1;
      if (slot < 0 || slot >= h->num_partial_slots)
        why = "its partial_qo_loc is not a partial slot of the plan";
      else if (final_map[2 * group_of_slot(reduce_indptr, batch, slot)] != r[2])
        why = "its partial slot belongs to another sequence's group";
      else {
        const uint64_t key = (uint64_t)slot * (uint64_t)layout->num_kv_heads +
                             (uint64_t)(head_start / group);
        split_items += 1;
        for (int i = 0; i < kFingerprintSalts; ++i)
          fingerprint_sum[i] += key_fingerprint(key, kFingerprintSalt[i]);
      }
    }
    if (why)
      return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                         "%s.work_info[%d] = {%d, %d, %d, %d, %d, %d, %d, %#x}: %s (a corrupt plan)",
                         name, w, r[0], r[1], r[2], r[3], r[4], r[5], r[6], (unsigned)r[7], why);
  }
  const uint64_t keys = (uint64_t)h->num_partial_slots * (uint64_t)layout->num_kv_heads;
  int keys_match = split_items == keys;
  for (int i = 0; i < kFingerprintSalts && keys_match; ++i) {
    uint64_t expected = 0;
    for (uint64_t key = 0; key < keys; ++key) expected += key_fingerprint(key, kFingerprintSalt[i]);
    keys_match = fingerprint_sum[i] == expected;
  }
  if (!keys_match)
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "%s: its %llu split items do not write each of its %d partial slots once "
                       "per KV head (%d heads; a corrupt plan)",
                       name, (unsigned long long)split_items, h->num_partial_slots,
                       layout->num_kv_heads);
  return PADEC_STATUS_OK;
}

static padec_sched_output output_arrays(const padec_plan_layout *layout, void *plan) {
  char *base = (char *)plan;
  padec_sched_output out;
  out.work_indptr = (int32_t *)(void *)(base + layout->work_indptr_offset);
  out.work_info = (int32_t *)(void *)(base + layout->work_info_offset);
  out.reduce_indptr = (int32_t *)(void *)(base + layout->reduce_indptr_offset);
  out.reduce_final_map = (int32_t *)(void *)(base + layout->reduce_final_map_offset);
  out.reduce_partial_map = (int32_t *)(void *)(base + layout->reduce_partial_map_offset);
  out.partition_indptr = (int32_t *)(void *)(base + layout->partition_indptr_offset);
  out.max_works = layout->max_works;
  out.max_partial_slots = layout->max_partial_slots;
  return out;
}

padec_status padec_plan_build(const padec_params *params, const padec_plan_layout *layout,
                              const int32_t *kv_lens, void *plan, size_t plan_bytes) {
  return padec_plan_build_shard(params, layout, kv_lens, NULL, NULL, plan, plan_bytes);
}

padec_status padec_plan_build_shard(const padec_params *params, const padec_plan_layout *layout,
                                    const int32_t *kv_lens, const int32_t *shard_starts,
                                    const int32_t *seq_lens, void *plan, size_t plan_bytes) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "plan is NULL");
  if (!kv_lens && layout->batch > 0) return padec__fail(PADEC_STATUS_NULL_POINTER, "kv_lens is NULL");
  if ((uintptr_t)plan % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "plan must be 16-byte aligned");
  if ((uintptr_t)kv_lens % 4 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "kv_lens must be 4-byte aligned");
  if ((uintptr_t)shard_starts % 4 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "shard_starts must be 4-byte aligned");
  if ((uintptr_t)seq_lens % 4 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "seq_lens must be 4-byte aligned");
  padec_params p = padec__params_normalized(params);
  status = padec__check_layout_shape(&p, "layout", layout->params_key, layout->policy,
                                     layout->num_q_heads, layout->num_kv_heads, layout->head_dim,
                                     layout->q_len);
  if (status != PADEC_STATUS_OK) return status;
  status = padec__check_plan_layout(layout, "layout");
  if (status != PADEC_STATUS_OK) return status;
  if (plan_bytes < layout->plan_bytes)
    return padec__fail(PADEC_STATUS_WORKSPACE_TOO_SMALL, "plan_bytes = %zu, need %zu", plan_bytes,
                       layout->plan_bytes);
  if ((shard_starts == NULL) != (seq_lens == NULL))
    return padec__fail(PADEC_STATUS_NULL_POINTER, "shard_starts and seq_lens go together: %s is NULL",
                       shard_starts ? "seq_lens" : "shard_starts");
  /* The plan is cleared and then filled from the lengths: lengths inside it would be read after
   * they were overwritten. */
  const struct {
    const int32_t *array;
    const char *name;
  } lengths[] = {{kv_lens, "kv_lens"}, {shard_starts, "shard_starts"}, {seq_lens, "seq_lens"}};
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; ++i)
    if (padec__bytes_overlap(lengths[i].array, (size_t)layout->batch * sizeof(int32_t), plan,
                             layout->plan_bytes))
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "%s overlaps plan, which the build writes",
                         lengths[i].name);
  for (int32_t b = 0; b < layout->batch; ++b) {
    if (kv_lens[b] < 0)
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "kv_lens[%d] = %d is negative", b, kv_lens[b]);
    status = padec__check_shard(b, kv_lens, shard_starts, seq_lens);
    if (status != PADEC_STATUS_OK) return status;
  }

  padec_sched_input in;
  memset(&in, 0, sizeof in);
  in.batch = layout->batch;
  in.num_kv_heads = p.num_kv_heads;
  in.num_q_heads = p.num_q_heads;
  in.num_workers = layout->num_workers;
  in.q_len = p.q_len;
  in.window_left = p.window_left;
  in.partition_tokens = layout->partition_tokens;
  in.kv_lens = kv_lens;
  in.shard_starts = shard_starts;
  in.seq_lens = seq_lens;
  in.cost_partition = layout->cost_partition;
  in.cost_item = layout->cost_item;
  in.cost_split = layout->cost_split;
  /* Dry run first (no arrays, only counts and capacity checks), so that a failure writes
   * nothing; the same function then fills the buffer. */
  padec_sched_output dry;
  memset(&dry, 0, sizeof dry);
  dry.max_works = layout->max_works;
  dry.max_partial_slots = layout->max_partial_slots;
  padec_sched_counts dry_counts, counts;
  padec_status (*schedule)(const padec_sched_input *, padec_sched_output *, padec_sched_counts *) =
      layout->policy == PADEC_POLICY_BATCH_INVARIANT ? padec__schedule_batch_invariant
      : layout->policy == PADEC_POLICY_COST          ? padec__schedule_cost
                                                      : padec__schedule_even;
  status = schedule(&in, &dry, &dry_counts);
  if (status != PADEC_STATUS_OK) return status;

  memset(plan, 0, layout->plan_bytes);
  padec_sched_output out = output_arrays(layout, plan);
  status = schedule(&in, &out, &counts);
  if (status != PADEC_STATUS_OK || memcmp(&counts, &dry_counts, sizeof counts) != 0)
    return padec__fail(PADEC_STATUS_INTERNAL, "schedule dry run and fill disagree");
  padec_plan_header *h = (padec_plan_header *)plan;
  h->magic = PADEC_PLAN_MAGIC;
  h->version = PADEC_VERSION_NUMBER;
  h->params_key = layout->params_key;
  h->batch = layout->batch;
  h->num_workers = layout->num_workers;
  h->num_kv_heads = layout->num_kv_heads;
  h->q_len = layout->q_len;
  h->partition_tokens = layout->partition_tokens;
  h->policy = layout->policy;
  h->num_works = counts.num_works;
  h->num_partial_slots = counts.num_partial_slots;
  h->num_groups = counts.num_groups;
  h->num_partitions = counts.num_partitions;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_plan_view_init(const padec_plan_layout *layout, const void *plan,
                                  padec_plan_view *view) {
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "plan is NULL");
  if (!view) return padec__fail(PADEC_STATUS_NULL_POINTER, "view is NULL");
  if ((uintptr_t)plan % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "plan must be 16-byte aligned");
  padec_status status = padec__check_plan_layout(layout, "layout");
  if (status != PADEC_STATUS_OK) return status;
  status = padec__check_plan_header(layout, plan, "plan");
  if (status != PADEC_STATUS_OK) return status;
  status = padec__check_plan_body(layout, plan, "plan");
  if (status != PADEC_STATUS_OK) return status;
  *view = view_of(layout, plan);
  padec__clear_message();
  return PADEC_STATUS_OK;
}

/* Worker c's time under the scaled model: its items, their partitions and splits. */
static double predicted_worker_ns(const padec_plan_view *v, const padec_plan_header *h,
                                  const padec_sched_cost_ns *ns, int32_t c) {
  int32_t begin = v->work_indptr[c], end = v->work_indptr[c + 1];
  if (begin < 0) begin = 0;
  if (end > h->num_works) end = h->num_works;
  double total = 0.0;
  for (int32_t i = begin; i < end; ++i) {
    const int32_t *row = v->work_info + 8 * (int64_t)i;
    total += ns->item + (double)(row[5] - row[4]) * ns->partition + (row[1] >= 0 ? ns->split : 0.0);
  }
  return total;
}

padec_status padec_plan_predict(const padec_params *params, const padec_plan_layout *layout,
                                const void *plan, const padec_cost_model *model,
                                double *worker_ns) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "plan is NULL");
  if (!worker_ns) return padec__fail(PADEC_STATUS_NULL_POINTER, "worker_ns is NULL");
  if ((uintptr_t)worker_ns % _Alignof(double))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "worker_ns must be %zu-byte aligned",
                       (size_t)_Alignof(double));
  padec_params p = padec__params_normalized(params);
  status = padec__check_layout_shape(&p, "layout", layout->params_key, layout->policy,
                                     layout->num_q_heads, layout->num_kv_heads, layout->head_dim,
                                     layout->q_len);
  if (status != PADEC_STATUS_OK) return status;
  const padec_plan_header *h = (const padec_plan_header *)plan;
  /* The layout first: the model is scaled by its partition size. */
  padec_plan_view v;
  status = padec_plan_view_init(layout, plan, &v);
  if (status != PADEC_STATUS_OK) return status;
  padec_sched_cost_ns ns;
  status = padec__cost_model_scaled(model, "model", p.head_dim, padec__dtype_bytes(p.kv_dtype),
                                    layout->partition_tokens, &ns);
  if (status != PADEC_STATUS_OK) return status;
  /* Each time is finite, but a sum of large ones may not be: every worker is added up before
   * the first is written, so that such a model writes nothing. */
  for (int32_t c = 0; c < layout->num_workers; ++c) {
    const double total = predicted_worker_ns(&v, h, &ns, c);
    if (!isfinite(total))
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "model: worker %d's predicted time is not finite (partition_ns %g, "
                         "item_ns %g, split_ns %g over its items)",
                         c, model ? model->partition_ns : ns.partition, ns.item, ns.split);
  }
  for (int32_t c = 0; c < layout->num_workers; ++c) worker_ns[c] = predicted_worker_ns(&v, h, &ns, c);
  padec__clear_message();
  return PADEC_STATUS_OK;
}
