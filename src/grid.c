/* The grid path's sizes and argument checks (the executors are in cpu/executor.c and
 * cuda/launch.cu). */
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { GRID_MAX_SPLITS = 1024, GRID_RECOMMENDED_MAX_SPLITS = 64 };

padec_status padec_grid_layout_init(const padec_params *params, int32_t batch, int32_t num_splits,
                                    int32_t partition_tokens, padec_grid_layout *layout) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (batch < 0 || batch > (1 << 24))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "batch = %d: need 0..16777216", batch);
  if (num_splits < 1 || num_splits > GRID_MAX_SPLITS)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "num_splits = %d: need 1..%d", num_splits,
                       GRID_MAX_SPLITS);
  int32_t tokens;
  status = padec__partition_tokens(partition_tokens, "partition_tokens", &tokens);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params p = padec__params_normalized(params);
  /* One CTA per block (a 1-D grid), and partial rows indexed in int32 by the merge. */
  const int64_t blocks = (int64_t)batch * p.num_kv_heads * num_splits;
  const int64_t partial_rows = num_splits > 1 ? (int64_t)batch * num_splits * p.q_len : 0;
  if (blocks > INT32_MAX || partial_rows > INT32_MAX / 4)
    return padec__fail(PADEC_STATUS_SIZE_OVERFLOW,
                       "batch %d x %d KV heads x %d splits: 2^31 blocks or more, or 2^29 partial "
                       "rows or more",
                       batch, p.num_kv_heads, num_splits);
  padec_grid_layout l;
  memset(&l, 0, sizeof l);
  l.batch = batch;
  l.num_splits = num_splits;
  l.num_kv_heads = p.num_kv_heads;
  l.num_q_heads = p.num_q_heads;
  l.head_dim = p.head_dim;
  l.q_len = p.q_len;
  l.partition_tokens = tokens;
  l.params_key = padec__params_key(&p);
  const size_t counters = num_splits > 1 ? (size_t)batch * (size_t)p.num_kv_heads : 0;
  const padec_workspace_offsets w = padec__workspace_offsets(&p, partial_rows, counters);
  l.partial_o_offset = 0;
  l.partial_lse_offset = w.partial_lse;
  l.merge_counters_offset = w.merge_counters;
  l.workspace_bytes = w.bytes;
  *layout = l;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

int32_t padec_grid_recommended_splits(const padec_params *params, int32_t batch,
                                      int32_t num_workers, int32_t partition_tokens) {
  /* A recommendation, not a call that can fail: bad arguments give 1 without a message or a log
   * call, and layout_init reports them when the caller goes on. */
  padec__mute_log(true);
  const padec_status status = padec_params_validate(params);
  int32_t tokens = 256;
  if (status == PADEC_STATUS_OK &&
      padec__partition_tokens(partition_tokens, "partition_tokens", &tokens) != PADEC_STATUS_OK)
    tokens = 256;
  padec__mute_log(false);
  padec__clear_message();
  if (status != PADEC_STATUS_OK || batch <= 0 || num_workers <= 0) return 1;
  const padec_params p = padec__params_normalized(params);
  const int64_t blocks = (int64_t)batch * p.num_kv_heads;
  return padec__grid_splits_capped(&p, (num_workers + blocks - 1) / blocks, tokens,
                                   GRID_RECOMMENDED_MAX_SPLITS);
}

int32_t padec__grid_splits_capped(const padec_params *normalized, int64_t splits,
                                  int32_t partition_tokens, int32_t max_splits) {
  if (max_splits > GRID_MAX_SPLITS) max_splits = GRID_MAX_SPLITS;
  if (splits > max_splits) splits = max_splits;
  if (normalized->window_left > 0) {
    /* The union of the queries' windows, plus one partition for its unaligned start. */
    const int64_t spanned =
        ((int64_t)normalized->window_left + normalized->q_len + partition_tokens - 1) /
            partition_tokens + 1;
    if (splits > spanned) splits = spanned;
  }
  return splits < 1 ? 1 : (int32_t)splits;
}

/* PLAN_MISMATCH unless *layout is what padec_grid_layout_init gives for params (normalized, of
 * the layout's shape) and the layout's own batch, splits and partition tokens: the executors
 * size the partial rows and counters from these fields. */
static padec_status check_grid_layout(const padec_params *normalized, const padec_grid_layout *layout) {
  const padec_grid_layout *l = layout;
  padec_grid_layout expected;
  padec__mute_log(true);
  padec_status status = padec_grid_layout_init(normalized, l->batch, l->num_splits, l->partition_tokens, &expected);
  padec__mute_log(false);
  if (status != PADEC_STATUS_OK) {
    char why[400];
    snprintf(why, sizeof why, "%s", padec_last_message());
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH, "grid layout is not a layout from padec_grid_layout_init (%s)",
                       why);
  }
#define PADEC_CHECK_FIELD_(field)                                                                   \
  if (l->field != expected.field)                                                                   \
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,                                                  \
                       "grid layout.%s = %lld, but padec_grid_layout_init gives %lld for its batch " \
                       "%d and %d splits (a layout edited, or from another padec version)",         \
                       #field, (long long)l->field, (long long)expected.field, l->batch, l->num_splits);
  PADEC_CHECK_FIELD_(partition_tokens)
  PADEC_CHECK_FIELD_(partial_o_offset)
  PADEC_CHECK_FIELD_(partial_lse_offset)
  PADEC_CHECK_FIELD_(merge_counters_offset)
  PADEC_CHECK_FIELD_(workspace_bytes)
#undef PADEC_CHECK_FIELD_
  return PADEC_STATUS_OK;
}

padec_status padec__check_grid_arguments(const padec_params *params,
                                         const padec_grid_layout *layout,
                                         const padec_tensors *tensors, const void *workspace,
                                         size_t workspace_bytes) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!tensors) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors is NULL");
  const padec_params p = padec__params_normalized(params);
  status = padec__check_layout_shape(&p, "grid layout", layout->params_key, PADEC_POLICY_EVEN,
                                     layout->num_q_heads, layout->num_kv_heads, layout->head_dim,
                                     layout->q_len);
  if (status != PADEC_STATUS_OK) return status;
  status = check_grid_layout(&p, layout);
  if (status != PADEC_STATUS_OK) return status;
  if (!workspace) return padec__fail(PADEC_STATUS_NULL_POINTER, "workspace is NULL");
  if (workspace_bytes < layout->workspace_bytes)
    return padec__fail(PADEC_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes = %zu, need %zu",
                       workspace_bytes, layout->workspace_bytes);
  if ((uintptr_t)workspace % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "workspace must be 16-byte aligned");
  return padec__check_tensors(&p, layout->batch, tensors, workspace, layout->workspace_bytes,
                              NULL, 0);
}
