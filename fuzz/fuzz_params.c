/*
 * libFuzzer target: parameter validation and plan sizing with arbitrary bytes.
 *
 * The input is read as a padec_params (every byte pattern, so enums out of range, NaN and
 * infinite floats, negative counts), then a batch and the three numbers of padec_plan_options
 * (workers, partition, policy), with the cost policy a padec_cost_model (three doubles, any
 * bits), then the four arguments of padec_first_partition / padec_num_partitions. Checked:
 *   - padec_params_validate never crashes, returns a status from the table, and leaves a
 *     non-empty message naming a field when it fails;
 *   - padec_plan_layout_init fails with the same status when the params are invalid, writes
 *     nothing on failure, and on success gives a layout whose arrays are ordered, 16-byte aligned,
 *     disjoint and large enough for their documented shapes, with max_works and
 *     max_partial_slots equal to the documented bounds, and cost units (cost policy: a partition
 *     1024, item and split 0..2^30; 0 otherwise); a cost model with a time that is not finite,
 *     negative, or a partition time not above 0 is refused with BAD_ARGUMENT (so is one whose
 *     scaled partition time overflows, which this target does not require);
 *   - padec_first_partition / padec_num_partitions, for arguments in their documented ranges,
 *     count between 0 and ceil(kv_len / partition_tokens) partitions.
 * The rest of the input, if any, is a small block table for padec_validate_kv_host, whose answer
 * is compared with an independent check of the same rules.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int condition, const char *what) {
  if (condition) return;
  fprintf(stderr, "fuzz_params: invariant violated: %s (last message: \"%s\")\n", what,
          padec_last_message());
  abort();
}

/* Reads n bytes into out (zero-filled past the input). */
static void take(const uint8_t **data, size_t *size, void *out, size_t n) {
  size_t have = *size < n ? *size : n;
  memset(out, 0, n);
  memcpy(out, *data, have);
  *data += have;
  *size -= have;
}

static int known_status(padec_status status) {
  switch (status) {
#define CASE_(name, value, message) case name:
    PADEC_STATUS_TABLE(CASE_)
#undef CASE_
    return 1;
  }
  return 0;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void check_layout(const padec_params *params, int32_t batch,
                         const padec_plan_options *options, const padec_plan_layout *l) {
  const int32_t heads = params->num_kv_heads, workers = options->num_workers;
  const int32_t q_len = params->q_len ? params->q_len : 1;
  require(l->batch == batch && l->num_workers == workers && l->num_kv_heads == heads &&
              l->num_q_heads == params->num_q_heads && l->head_dim == params->head_dim &&
              l->q_len == q_len,
          "layout fields differ from the arguments");
  require(l->partition_tokens == (options->partition_tokens ? options->partition_tokens : 256),
          "layout partition_tokens");
  const int64_t bins = workers >= heads ? workers / heads : 1;
  int64_t max_works, max_slots;
  if (options->policy == PADEC_POLICY_BATCH_INVARIANT) {
    /* At most MAX_PIECES pieces per sequence and head. */
    max_works = (int64_t)heads * batch * PADEC_BATCH_INVARIANT_MAX_PIECES;
    max_slots = (int64_t)batch * PADEC_BATCH_INVARIANT_MAX_PIECES;
  } else {
    const int64_t by_splits = 2 * (bins - 1), by_pieces = (int64_t)batch + bins - 1;
    max_works = batch == 0 ? 0 : (int64_t)heads * (batch + bins - 1);
    max_slots = batch == 0 ? 0 : (by_splits < by_pieces ? by_splits : by_pieces);
  }
  if (options->policy == PADEC_POLICY_COST)
    require(l->cost_partition == 1024 && l->cost_item >= 0 && l->cost_item <= (1 << 30) &&
                l->cost_split >= 0 && l->cost_split <= (1 << 30),
            "cost units out of range");
  else
    require(l->cost_partition == 0 && l->cost_item == 0 && l->cost_split == 0,
            "cost units of a policy that has none");
  require(l->max_works == max_works, "max_works is not the policy's bound");
  require(l->max_partial_slots == max_slots, "max_partial_slots is not the policy's bound");
  require(l->max_partial_rows == (int64_t)max_slots * q_len, "max_partial_rows");

  /* Plan arrays: in order, 16-byte aligned, each large enough, inside plan_bytes. */
  const size_t offsets[6] = {l->work_indptr_offset,        l->work_info_offset,
                             l->reduce_indptr_offset,      l->reduce_final_map_offset,
                             l->reduce_partial_map_offset, l->partition_indptr_offset};
  const size_t bytes[6] = {4 * ((size_t)workers + 1), 32 * (size_t)max_works,
                           4 * ((size_t)batch + 1),   8 * (size_t)batch,
                           4 * (size_t)max_slots,     4 * ((size_t)batch + 1)};
  size_t end = sizeof(padec_plan_header);
  for (int i = 0; i < 6; ++i) {
    require(offsets[i] % 16 == 0, "a plan array is not 16-byte aligned");
    require(offsets[i] >= end, "plan arrays overlap or are out of order");
    end = offsets[i] + bytes[i];
  }
  require(l->plan_bytes >= end, "plan_bytes is smaller than its arrays");
  require(l->plan_bytes - end < 16, "plan_bytes has more than alignment padding");

  /* Workspace: partial o, partial lse, merge counters. */
  const size_t partial_rows = (size_t)max_slots * (size_t)q_len;
  const size_t row_elems = (size_t)params->num_q_heads * (size_t)params->head_dim;
  require(l->partial_o_offset == 0, "partial_o_offset");
  require(l->partial_lse_offset % 256 == 0 && l->merge_counters_offset % 256 == 0 &&
              l->workspace_bytes % 256 == 0,
          "workspace offsets are not 256-byte aligned");
  require(l->partial_lse_offset >= 4 * partial_rows * row_elems, "partial_o does not fit");
  require(l->merge_counters_offset >=
              l->partial_lse_offset + 4 * partial_rows * (size_t)params->num_q_heads,
          "partial_lse does not fit");
  require(l->workspace_bytes >= l->merge_counters_offset + 4 * (size_t)batch * (size_t)heads,
          "merge counters do not fit");
  require(l->workspace_bytes >= 256, "workspace_bytes below 256");
}

static void check_partitions(int32_t kv_len, int32_t q_len, int32_t window, int32_t tokens) {
  const int32_t first = padec_first_partition(kv_len, q_len, window, tokens);
  const int32_t count = padec_num_partitions(kv_len, q_len, window, tokens);
  const int64_t all = kv_len > 0 ? ceil_div(kv_len, tokens) : 0;
  require(first >= 0, "padec_first_partition is negative");
  require(count >= 0 && count <= all, "padec_num_partitions outside 0..ceil(kv_len / T)");
  require(kv_len == 0 || count >= 1, "a non-empty sequence has no scheduled partition");
  require(count == 0 || first + count == all, "scheduled partitions do not end at the last one");
  /* Independent: the first partition holds query 0's first visible position, if it sees any. */
  int64_t lo = (int64_t)kv_len - q_len - window;
  if (window == 0 || lo < 0) lo = 0;
  require(count == 0 || first == (int32_t)(lo / tokens), "padec_first_partition");
}

/* An independent statement of padec_validate_kv_host's rules for a small block table. */
static padec_status expected_kv_status(const padec_params *p, int32_t batch, const int32_t *indptr,
                                       const int32_t *indices, const int32_t *lens,
                                       int64_t num_pages, int64_t num_page_indices) {
  if (num_pages < 0) return PADEC_STATUS_BAD_ARGUMENT; /* an argument: checked for any batch */
  if (batch == 0) return PADEC_STATUS_OK;
  if (indptr[0] != 0) return PADEC_STATUS_BAD_ARGUMENT;
  /* A given length of page_indices bounds the table (0: not given). */
  if (num_page_indices > 0 && indptr[batch] > num_page_indices) return PADEC_STATUS_BAD_ARGUMENT;
  for (int32_t b = 0; b < batch; ++b) {
    if (indptr[b + 1] < indptr[b]) return PADEC_STATUS_BAD_ARGUMENT;
    /* page_indices has indptr[batch] entries: pages ending past them are refused. */
    if (indptr[b + 1] > indptr[batch]) return PADEC_STATUS_BAD_ARGUMENT;
    const int64_t capacity = (int64_t)(indptr[b + 1] - indptr[b]) * p->page_size;
    if (lens[b] < 0 || lens[b] > capacity) return PADEC_STATUS_KV_LEN_EXCEEDS_PAGES;
    for (int64_t t = 0; t < lens[b]; t += p->page_size) {
      const int32_t page = indices[indptr[b] + t / p->page_size];
      if (page < 0 || page >= num_pages) return PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE;
    }
  }
  return PADEC_STATUS_OK;
}

static void fuzz_block_table(const padec_params *params, const uint8_t *data, size_t size) {
  enum { MAX_BATCH = 16, MAX_PAGES = 64 };
  uint8_t shape[4];
  take(&data, &size, shape, sizeof shape);
  const int32_t batch = shape[0] % (MAX_BATCH + 1);
  int32_t indptr[MAX_BATCH + 1], lens[MAX_BATCH], indices[MAX_PAGES];
  int64_t num_pages = (int64_t)(shape[1] % 64) - 2;                /* sometimes negative or zero */
  if (shape[2] & 1) num_pages = INT64_C(1) << (31 + shape[2] % 8); /* beyond int32 */
  indptr[0] = (shape[3] & 7) == 7 ? 1 : 0;
  for (int32_t b = 0; b < batch; ++b) {
    uint8_t pages, len_code[2];
    take(&data, &size, &pages, 1);
    take(&data, &size, len_code, 2);
    int32_t next = indptr[b] + pages % 9 - ((pages & 0xf0) == 0xf0 ? 9 : 0); /* rarely decreasing */
    if (next > MAX_PAGES) next = MAX_PAGES;
    indptr[b + 1] = next;
    /* Lengths near the capacity of the row, on both sides of it, sometimes negative. */
    const int64_t capacity = (int64_t)(next - indptr[b]) * params->page_size;
    int64_t len = capacity - (int64_t)(int8_t)len_code[0];
    if (len_code[1] == 0xff) len = -1 - len_code[0];
    if (len > INT32_MAX) len = INT32_MAX;
    if (len < INT32_MIN) len = INT32_MIN;
    lens[b] = (int32_t)len;
  }
  for (int32_t i = 0; i < MAX_PAGES; ++i) {
    uint8_t code;
    take(&data, &size, &code, 1);
    indices[i] = code == 0xff ? INT32_MAX : code == 0xfe ? INT32_MIN : (int32_t)code - 4;
  }
  /* The rules read page_indices only below page_indptr[batch] and where page_indptr is monotone;
   * a negative indptr would be a caller's out-of-bounds table, not padec's. */
  for (int32_t b = 0; b <= batch; ++b)
    if (indptr[b] < 0) indptr[b] = 0;

  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.page_indptr = indptr;
  t.page_indices = indices;
  t.kv_lens = lens;
  t.num_pages = num_pages;
  /* Sometimes the array's length, sometimes a few entries short of the table, sometimes none. */
  if (shape[3] & 8) t.num_page_indices = (shape[3] & 16) ? MAX_PAGES : 1 + (shape[3] >> 5);
  const padec_status got = padec_validate_kv_host(params, batch, &t);
  const padec_status want =
      expected_kv_status(params, batch, indptr, indices, lens, num_pages, t.num_page_indices);
  if (got != want) {
    fprintf(stderr, "fuzz_params: padec_validate_kv_host gives %s, the rules give %s\n",
            padec_status_name(got), padec_status_name(want));
    abort();
  }
  require(got == PADEC_STATUS_OK || padec_last_message()[0] != '\0',
          "padec_validate_kv_host failed without a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  padec_params params;
  int32_t batch;
  padec_plan_options options;
  padec_cost_model model;
  int32_t partition_args[4];
  take(&data, &size, &params, sizeof params);
  take(&data, &size, &batch, sizeof batch);
  memset(&options, 0, sizeof options);
  take(&data, &size, &options.num_workers, sizeof options.num_workers);
  take(&data, &size, &options.partition_tokens, sizeof options.partition_tokens);
  take(&data, &size, &options.policy, sizeof options.policy);
  if (options.policy == PADEC_POLICY_COST) {
    take(&data, &size, &model, sizeof model);
    options.cost_model = &model;
  }
  take(&data, &size, partition_args, sizeof partition_args);

  const padec_status status = padec_params_validate(&params);
  require(known_status(status), "padec_params_validate returned a status outside the table");
  if (status != PADEC_STATUS_OK)
    require(padec_last_message()[0] != '\0', "padec_params_validate failed without a message");

  padec_plan_layout layout, before;
  memset(&layout, 0x6b, sizeof layout);
  memcpy(&before, &layout, sizeof layout);
  const padec_status layout_status = padec_plan_layout_init(&params, batch, &options, &layout);
  require(known_status(layout_status), "padec_plan_layout_init returned an unknown status");
  if (status != PADEC_STATUS_OK)
    require(layout_status == status, "layout_init and params_validate disagree on the params");
  const int model_ok = !options.cost_model ||
                       (isfinite(model.partition_ns) && model.partition_ns > 0.0 &&
                        isfinite(model.item_ns) && model.item_ns >= 0.0 &&
                        isfinite(model.split_ns) && model.split_ns >= 0.0);
  if (!model_ok) require(layout_status != PADEC_STATUS_OK, "layout_init accepted a bad cost model");
  if (layout_status != PADEC_STATUS_OK) {
    require(memcmp(&layout, &before, sizeof layout) == 0, "a failed layout_init wrote the layout");
    require(padec_last_message()[0] != '\0', "padec_plan_layout_init failed without a message");
  } else {
    check_layout(&params, batch, &options, &layout);
  }

  /* Partition counting, inside the documented ranges of its arguments. */
  const int32_t kv_len = partition_args[0] & INT32_MAX;
  const int32_t q_len = 1 + (int32_t)((uint32_t)partition_args[1] % 4);
  const int32_t window = partition_args[2] & INT32_MAX;
  const int32_t tokens = 16 << ((uint32_t)partition_args[3] % 11);
  check_partitions(kv_len, q_len, window, tokens);
  check_partitions(kv_len, q_len, window & 0xffff, tokens);

  if (status == PADEC_STATUS_OK) fuzz_block_table(&params, data, size);
  return 0;
}
