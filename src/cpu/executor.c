/*
 * The CPU executor: runs a plan's work items, then the merge, with the numerics the GPU kernels
 * use (fp32 accumulation, base-2 online softmax over token chunks, LSE-weighted merge in slot
 * order). It is the default backend without a GPU and the reference the GPU partials are
 * compared with, so it walks exactly the same work items.
 */
#include <math.h>
#include <string.h>

#include "../common/numerics.h"
#include "../internal.h"

/* ROWS_PER_PASS: query rows attended at once (a KV head has up to 64: q_len x group); more take
 * passes over the tokens, which keeps the executor's stack near 100 KiB (threads of small
 * stacks can call it) at the price of decoding K/V once per pass. */
enum { CHUNK_TOKENS = 32, MAX_HEAD_DIM = 256, ROWS_PER_PASS = 16 };

typedef struct run_context {
  padec_params p;
  int32_t partition_tokens;
  const padec_tensors *t;
  float *partial_o;
  float *partial_lse;
  int32_t group; /* q heads per KV head */
  int64_t q_stride_token, q_stride_head, o_stride_token, o_stride_head;
  int64_t page_stride;    /* elements between pages of a KV pool */
  float k_scale, v_scale; /* per-tensor (value or the device-pointer value) */
  float e4m3_table[256];  /* every e4m3 code decoded once per run: a load instead of branches */
} run_context;

static void load_row(const run_context *ctx, const void *base, int64_t index, padec_dtype dtype,
                     int32_t n, float *out) {
  switch (dtype) {
    case PADEC_DTYPE_BF16: {
      const uint16_t *src = (const uint16_t *)base + index;
      for (int32_t d = 0; d < n; ++d) out[d] = padec__bf16_to_float(src[d]);
      break;
    }
    case PADEC_DTYPE_FP16: {
      const uint16_t *src = (const uint16_t *)base + index;
      for (int32_t d = 0; d < n; ++d) out[d] = padec__fp16_to_float(src[d]);
      break;
    }
    case PADEC_DTYPE_E4M3: {
      const uint8_t *src = (const uint8_t *)base + index;
      for (int32_t d = 0; d < n; ++d) out[d] = ctx->e4m3_table[src[d]];
      break;
    }
    case PADEC_DTYPE_FP32:
      memcpy(out, (const float *)base + index, sizeof(float) * (size_t)n);
      break;
  }
}

static void store_element(void *base, int64_t index, padec_dtype dtype, float value) {
  switch (dtype) {
    case PADEC_DTYPE_BF16:
      ((uint16_t *)base)[index] = padec__float_to_bf16(value);
      break;
    case PADEC_DTYPE_FP16:
      ((uint16_t *)base)[index] = padec__float_to_fp16(value);
      break;
    case PADEC_DTYPE_FP32:
      ((float *)base)[index] = value;
      break;
    case PADEC_DTYPE_E4M3:
      break; /* never an output dtype (validated) */
  }
}

/* Element index of (page, token in page, kv head, 0) in a pool. */
static int64_t pool_index(const run_context *ctx, int64_t page, int32_t token_in_page,
                          int32_t kv_head) {
  const padec_params *p = &ctx->p;
  if (p->kv_layout == PADEC_LAYOUT_NHD)
    return page * ctx->page_stride + ((int64_t)token_in_page * p->num_kv_heads + kv_head) * p->head_dim;
  return page * ctx->page_stride + ((int64_t)kv_head * p->page_size + token_in_page) * p->head_dim;
}

static int32_t query_end_of(const padec_tensors *t, int32_t b) {
  return t->seq_lens ? t->seq_lens[b] - t->shard_starts[b] : t->kv_lens[b];
}

/* One work item: the query rows of sequence b's KV head over num_partitions of its scheduled
 * partitions, from the first_partition-th on. A plan's work_info row, or a grid block. */
typedef struct work_item {
  int32_t b;
  int32_t partial_loc; /* first partial row, or -1: the item writes the final output */
  int32_t qo_start;    /* first query token */
  int32_t q_head_start;
  int64_t first_partition; /* counted from the sequence's first scheduled partition */
  int64_t num_partitions;
} work_item;

/* Query rows [first_row, first_row + rows) of one work item (row r: query token r / group, q head
 * q_head_start + r % group) over the item's token range. Rows are independent: a row's result
 * does not depend on the pass it is in. */
static void run_row_pass(const run_context *ctx, const work_item *item, int32_t first_row, int32_t rows) {
  const padec_params *p = &ctx->p;
  const padec_tensors *t = ctx->t;
  const int32_t b = item->b, partial_loc = item->partial_loc, qo_start = item->qo_start;
  const int32_t q_head_start = item->q_head_start;
  const int32_t kv_head = q_head_start / ctx->group;
  const int32_t dim = p->head_dim, q_len = p->q_len;
  const int32_t kv_len = t->kv_lens[b];
  /* Query positions, counted from this call's first cached token (past kv_len on a shard that
   * ends before the sequence does). */
  const int32_t query_end = query_end_of(t, b);
  const int32_t T = ctx->partition_tokens;
  const int32_t first = padec_first_partition(query_end, q_len, p->window_left, T);
  int64_t token_begin = (first + item->first_partition) * T;
  int64_t token_end = (first + item->first_partition + item->num_partitions) * (int64_t)T;
  if (token_end > kv_len) token_end = kv_len;

  float q[ROWS_PER_PASS][MAX_HEAD_DIM];
  float acc[ROWS_PER_PASS][MAX_HEAD_DIM];
  padec_softmax_state state[ROWS_PER_PASS];
  int64_t visible_begin[ROWS_PER_PASS], visible_end[ROWS_PER_PASS];
  const float score_scale = p->softmax_scale * PADEC_LOG2E;
  for (int32_t r = 0; r < rows; ++r) {
    const int32_t qi = (first_row + r) / ctx->group, head = q_head_start + (first_row + r) % ctx->group;
    const int64_t q_index = (int64_t)(qo_start + qi) * ctx->q_stride_token + head * ctx->q_stride_head;
    load_row(ctx, t->q, q_index, p->q_dtype, dim, q[r]);
    for (int32_t d = 0; d < dim; ++d) q[r][d] *= score_scale;
    memset(acc[r], 0, sizeof(float) * (size_t)dim);
    state[r].max_log2 = -INFINITY;
    state[r].sum = 0.0f;
    const int64_t last = (int64_t)query_end - q_len + qi; /* last visible position */
    int64_t lo = p->window_left > 0 ? last - p->window_left : 0;
    if (lo < 0) lo = 0;
    visible_begin[r] = lo > token_begin ? lo : token_begin;
    visible_end[r] = last + 1 < token_end ? last + 1 : token_end;
  }

  const int32_t *pages = t->page_indices + t->page_indptr[b];
  /* K transposed, so that a row's scores over the chunk's tokens are one vectorisable loop per
   * dim (each score still sums its dims in order: the same bits as a dot product per token). */
  float k_columns[MAX_HEAD_DIM][CHUNK_TOKENS];
  float k_row[MAX_HEAD_DIM];
  float v_rows[CHUNK_TOKENS][MAX_HEAD_DIM];
  float k_token_scale[CHUNK_TOKENS], v_token_scale[CHUNK_TOKENS];
  const bool per_token = p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN;
  for (int64_t chunk = token_begin; chunk < token_end; chunk += CHUNK_TOKENS) {
    const int32_t n = (int32_t)(token_end - chunk < CHUNK_TOKENS ? token_end - chunk : CHUNK_TOKENS);
    for (int32_t j = 0; j < n; ++j) {
      const int64_t pos = chunk + j;
      const int64_t page = pages[pos / p->page_size];
      const int32_t in_page = (int32_t)(pos % p->page_size);
      const int64_t index = pool_index(ctx, page, in_page, kv_head);
      load_row(ctx, t->k_pages, index, p->kv_dtype, dim, k_row);
      for (int32_t d = 0; d < dim; ++d) k_columns[d][j] = k_row[d];
      load_row(ctx, t->v_pages, index, p->kv_dtype, dim, v_rows[j]);
      if (per_token) {
        const int64_t s = (page * p->num_kv_heads + kv_head) * p->page_size + in_page;
        k_token_scale[j] = t->k_scales[s];
        v_token_scale[j] = t->v_scales[s];
      } else {
        k_token_scale[j] = ctx->k_scale;
        v_token_scale[j] = ctx->v_scale;
      }
    }
    for (int32_t r = 0; r < rows; ++r) {
      /* The row's visible tokens of this chunk: [seen_begin, seen_end). */
      const int64_t seen_begin_pos = visible_begin[r] > chunk ? visible_begin[r] : chunk;
      const int64_t seen_end_pos = visible_end[r] < chunk + n ? visible_end[r] : chunk + n;
      if (seen_end_pos <= seen_begin_pos) continue;
      const int32_t seen_begin = (int32_t)(seen_begin_pos - chunk), seen_end = (int32_t)(seen_end_pos - chunk);
      float scores[CHUNK_TOKENS];
      for (int32_t j = 0; j < n; ++j) scores[j] = 0.0f;
      for (int32_t d = 0; d < dim; ++d) {
        const float qd = q[r][d];
        const float *column = k_columns[d];
        for (int32_t j = 0; j < n; ++j) scores[j] += qd * column[j];
      }
      float chunk_max = -INFINITY;
      int chunk_nan = 0;
      for (int32_t j = 0; j < n; ++j) {
        if (j < seen_begin || j >= seen_end) {
          scores[j] = -INFINITY;
          continue;
        }
        scores[j] *= k_token_scale[j];
        if (scores[j] > chunk_max) chunk_max = scores[j];
        chunk_nan |= scores[j] != scores[j];
      }
      /* A NaN score (a NaN in K or in its scale) spoils the row: its sum and accumulator become
       * NaN and stay so, and its output and LSE come out NaN, as the oracle's do, wherever the
       * token falls among chunks and splits. */
      if (chunk_nan) {
        state[r].sum = NAN;
        for (int32_t d = 0; d < dim; ++d) acc[r][d] = NAN;
      }
      if (chunk_max == -INFINITY) continue;
      const float new_max = state[r].max_log2 > chunk_max ? state[r].max_log2 : chunk_max;
      const float rescale = padec__rescale_factor(state[r].max_log2, new_max);
      state[r].max_log2 = new_max;
      state[r].sum *= rescale;
      for (int32_t d = 0; d < dim; ++d) acc[r][d] *= rescale;
      for (int32_t j = 0; j < n; ++j) {
        if (scores[j] == -INFINITY) continue;
        const float weight = exp2f(scores[j] - new_max);
        state[r].sum += weight;
        const float wv = weight * v_token_scale[j];
        for (int32_t d = 0; d < dim; ++d) acc[r][d] += wv * v_rows[j][d];
      }
    }
  }

  for (int32_t r = 0; r < rows; ++r) {
    const int32_t qi = (first_row + r) / ctx->group, head = q_head_start + (first_row + r) % ctx->group;
    const float inv = state[r].sum > 0.0f ? 1.0f / state[r].sum : 0.0f;
    const float lse = padec__state_lse(state[r]);
    if (partial_loc < 0) {
      const int64_t o_index = (int64_t)(qo_start + qi) * ctx->o_stride_token + head * ctx->o_stride_head;
      for (int32_t d = 0; d < dim; ++d) store_element(t->o, o_index + d, p->o_dtype, acc[r][d] * inv);
      if (t->lse) t->lse[(int64_t)(qo_start + qi) * p->num_q_heads + head] = lse;
    } else {
      const int64_t row = (int64_t)partial_loc + qi;
      float *dst = ctx->partial_o + (row * p->num_q_heads + head) * dim;
      for (int32_t d = 0; d < dim; ++d) dst[d] = acc[r][d] * inv;
      ctx->partial_lse[row * p->num_q_heads + head] = lse;
    }
  }
}

/* Runs one work item: query rows (q_len x group) of one KV head over a token range. */
static void run_work_item(const run_context *ctx, const work_item *item) {
  const int32_t rows = ctx->p.q_len * ctx->group;
  for (int32_t first = 0; first < rows; first += ROWS_PER_PASS)
    run_row_pass(ctx, item, first, rows - first < ROWS_PER_PASS ? rows - first : ROWS_PER_PASS);
}

/* Where the partial results of one output row live: partial k (k counted from the first of the
 * merge) is row slot_rows[k] + row_offset of (o, lse) when slot_rows is given (a reduce group's
 * splits), else row k * slot_stride + row_offset (stacked shards). */
typedef struct partial_rows {
  const float *o;   /* [rows][heads][dim] */
  const float *lse; /* [rows][heads] */
  const int32_t *slot_rows;
  int64_t slot_stride;
  int64_t row_offset;
  int32_t count;
} partial_rows;

static int64_t partial_row(const partial_rows *src, int32_t k) {
  return src->slot_rows ? (int64_t)src->slot_rows[k] + src->row_offset
                        : k * src->slot_stride + src->row_offset;
}

/* Combines the partials of one (row, head) with log-sum-exp weights, in order k = 0, 1, ...; the
 * GPU merge (merge_row_warp) does the same operations in the same order, a partial that saw
 * nothing (LSE -inf) included with weight 0, so that the two give the same bytes even for a row
 * the GPU left NaN beside an LSE of -inf (a NaN V its query masks: DESIGN.md, "Numerics"). */
static void merge_one_row(const partial_rows *src, int32_t heads, int32_t head, int32_t dim,
                          padec_dtype o_dtype, void *o, int64_t o_index, float *lse_out) {
  float max_lse = -INFINITY;
  for (int32_t k = 0; k < src->count; ++k)
    max_lse = padec__max_keeping_nan(max_lse, src->lse[partial_row(src, k) * heads + head]);
  float out[MAX_HEAD_DIM];
  memset(out, 0, sizeof(float) * (size_t)dim);
  float weight_sum = 0.0f;
  if (max_lse != -INFINITY) {
    for (int32_t k = 0; k < src->count; ++k) {
      const int64_t prow = partial_row(src, k);
      const float lse = src->lse[prow * heads + head];
      const float weight = lse == -INFINITY ? 0.0f : expf(lse - max_lse);
      weight_sum += weight;
      const float *row = src->o + (prow * heads + head) * dim;
      for (int32_t d = 0; d < dim; ++d) out[d] += weight * row[d];
    }
  }
  const float inv = weight_sum > 0.0f ? 1.0f / weight_sum : 0.0f;
  for (int32_t d = 0; d < dim; ++d) store_element(o, o_index + d, o_dtype, out[d] * inv);
  /* A NaN partial LSE (a spoiled split) makes every weight, the output and the LSE NaN. */
  if (lse_out) *lse_out = weight_sum != 0.0f ? max_lse + logf(weight_sum) : -INFINITY;
}

static void merge_into_output(const run_context *ctx, const partial_rows *src, int32_t row) {
  const int32_t heads = ctx->p.num_q_heads;
  for (int32_t head = 0; head < heads; ++head) {
    const int64_t o_index = (int64_t)row * ctx->o_stride_token + head * ctx->o_stride_head;
    merge_one_row(src, heads, head, ctx->p.head_dim, ctx->p.o_dtype, ctx->t->o, o_index,
                  ctx->t->lse ? ctx->t->lse + (int64_t)row * heads + head : NULL);
  }
}

/* Combines the splits of every reduce group, in slot order, into the output. */
static void run_merge(const run_context *ctx, const padec_plan_view *v, int32_t batch) {
  for (int32_t g = 0; g < batch; ++g) {
    const int32_t first_slot = v->reduce_indptr[g], end_slot = v->reduce_indptr[g + 1];
    if (end_slot <= first_slot) continue;
    const int32_t row_start = v->reduce_final_map[2 * g], row_end = v->reduce_final_map[2 * g + 1];
    for (int32_t row = row_start; row < row_end; ++row) {
      const partial_rows src = {ctx->partial_o, ctx->partial_lse, v->reduce_partial_map + first_slot,
                                0, row - row_start, end_slot - first_slot};
      merge_into_output(ctx, &src, row);
    }
  }
}

/* Everything a run needs besides the work: normalized params, scales, strides, partial buffers.
 * Reads the device-mode scale floats, so it can fail (BAD_SCALES). */
static padec_status init_context(run_context *ctx, const padec_params *params,
                                 int32_t partition_tokens, const padec_tensors *tensors,
                                 void *workspace, size_t partial_o_offset,
                                 size_t partial_lse_offset) {
  memset(ctx, 0, sizeof *ctx);
  ctx->p = padec__params_normalized(params);
  ctx->partition_tokens = partition_tokens;
  ctx->t = tensors;
  const padec_params *p = &ctx->p;
  if (p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    ctx->k_scale = tensors->k_scales[0];
    ctx->v_scale = tensors->v_scales[0];
    if (!(isfinite(ctx->k_scale) && isfinite(ctx->v_scale) && ctx->k_scale > 0.0f &&
          ctx->v_scale > 0.0f))
      return padec__fail(PADEC_STATUS_BAD_SCALES, "*k_scales = %g, *v_scales = %g: need finite values > 0",
                         (double)ctx->k_scale, (double)ctx->v_scale);
  } else {
    ctx->k_scale = p->k_scale;
    ctx->v_scale = p->v_scale;
  }
  ctx->group = p->num_q_heads / p->num_kv_heads;
  for (int code = 0; code < 256; ++code) ctx->e4m3_table[code] = padec__e4m3_to_float((uint8_t)code);
  ctx->q_stride_head = tensors->q_stride_head ? tensors->q_stride_head : p->head_dim;
  ctx->q_stride_token = tensors->q_stride_token ? tensors->q_stride_token
                                                : (int64_t)p->num_q_heads * p->head_dim;
  ctx->o_stride_head = tensors->o_stride_head ? tensors->o_stride_head : p->head_dim;
  ctx->o_stride_token = tensors->o_stride_token ? tensors->o_stride_token
                                                : (int64_t)p->num_q_heads * p->head_dim;
  ctx->page_stride = padec__kv_page_stride(p, tensors);
  ctx->partial_o = (float *)((char *)workspace + partial_o_offset);
  ctx->partial_lse = (float *)((char *)workspace + partial_lse_offset);
  return PADEC_STATUS_OK;
}

static int32_t sequence_partitions(const run_context *ctx, int32_t b) {
  return padec__shard_num_partitions(ctx->t->kv_lens[b], query_end_of(ctx->t, b), ctx->p.q_len,
                                     ctx->p.window_left, ctx->partition_tokens);
}

padec_status padec_cpu_run(const padec_params *params, const padec_plan_layout *layout,
                           const void *plan, const padec_tensors *tensors, void *workspace,
                           size_t workspace_bytes) {
  padec_status status = padec__check_run_arguments(params, layout, plan, plan, tensors, workspace,
                                                   workspace_bytes);
  if (status != PADEC_STATUS_OK) return status;
  status = padec_validate_kv_host(params, layout->batch, tensors);
  if (status != PADEC_STATUS_OK) return status;
  padec_plan_view view;
  status = padec_plan_view_init(layout, plan, &view);
  if (status != PADEC_STATUS_OK) return status;
  run_context ctx;
  status = init_context(&ctx, params, layout->partition_tokens, tensors, workspace,
                        layout->partial_o_offset, layout->partial_lse_offset);
  if (status != PADEC_STATUS_OK) return status;
  /* A plan built for other lengths would silently read the wrong tokens. */
  for (int32_t b = 0; b < layout->batch; ++b) {
    const int32_t planned = view.partition_indptr[b + 1] - view.partition_indptr[b];
    const int32_t needed = sequence_partitions(&ctx, b);
    if (planned != needed)
      return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                         "sequence %d: the plan has %d partitions but kv_len %d needs %d (plan "
                         "built for other kv_lens or shards)", b, planned, tensors->kv_lens[b],
                         needed);
  }
  padec__clear_message();

  const int32_t num_works = view.work_indptr[layout->num_workers];
  for (int32_t w = 0; w < num_works; ++w) {
    const int32_t *row = view.work_info + (int64_t)w * 8;
    const work_item item = {row[0], row[1], row[2], row[7] & 0xffff,
                            (int64_t)row[4] - view.partition_indptr[row[0]], row[5] - row[4]};
    run_work_item(&ctx, &item);
  }
  run_merge(&ctx, &view, layout->batch);
  return PADEC_STATUS_OK;
}

padec_status padec_cpu_run_grid(const padec_params *params, const padec_grid_layout *layout,
                                const padec_tensors *tensors, void *workspace,
                                size_t workspace_bytes) {
  padec_status status =
      padec__check_grid_arguments(params, layout, tensors, workspace, workspace_bytes);
  if (status != PADEC_STATUS_OK) return status;
  status = padec_validate_kv_host(params, layout->batch, tensors);
  if (status != PADEC_STATUS_OK) return status;
  run_context ctx;
  status = init_context(&ctx, params, layout->partition_tokens, tensors, workspace,
                        layout->partial_o_offset, layout->partial_lse_offset);
  if (status != PADEC_STATUS_OK) return status;
  padec__clear_message();

  const int32_t splits = layout->num_splits, q_len = ctx.p.q_len;
  for (int32_t b = 0; b < layout->batch; ++b) {
    const int64_t parts = sequence_partitions(&ctx, b);
    const int64_t per_split = (parts + splits - 1) / splits;
    for (int32_t h = 0; h < ctx.p.num_kv_heads; ++h) {
      for (int32_t s = 0; s < splits; ++s) {
        const int64_t first = s * per_split;
        const int64_t count = first < parts ? (parts - first < per_split ? parts - first : per_split) : 0;
        const work_item item = {b, splits > 1 ? (b * splits + s) * q_len : -1, b * q_len,
                                h * ctx.group, first, count};
        run_work_item(&ctx, &item);
      }
    }
    if (splits == 1) continue;
    /* Split s of sequence b owns partial rows (b * splits + s) * q_len + query token. */
    for (int32_t qi = 0; qi < q_len; ++qi) {
      const partial_rows src = {ctx.partial_o, ctx.partial_lse, NULL, q_len,
                                (int64_t)b * splits * q_len + qi, splits};
      merge_into_output(&ctx, &src, b * q_len + qi);
    }
  }
  return PADEC_STATUS_OK;
}

padec_status padec_cpu_merge_shards(const padec_params *params,
                                    const padec_shard_merge_tensors *tensors) {
  padec_status status = padec__check_shard_merge(params, tensors);
  if (status != PADEC_STATUS_OK) return status;
  const padec_params p = padec__params_normalized(params);
  const padec_shard_merge_tensors *t = tensors;
  const int32_t heads = p.num_q_heads;
  const int64_t o_stride_head = t->o_stride_head ? t->o_stride_head : p.head_dim;
  const int64_t o_stride_token = t->o_stride_token ? t->o_stride_token : (int64_t)heads * p.head_dim;
  for (int32_t row = 0; row < t->rows; ++row) {
    const partial_rows src = {t->shard_o, t->shard_lse, NULL, t->rows, row, t->num_shards};
    for (int32_t head = 0; head < heads; ++head)
      merge_one_row(&src, heads, head, p.head_dim, p.o_dtype, t->o,
                    (int64_t)row * o_stride_token + head * o_stride_head,
                    t->lse ? t->lse + (int64_t)row * heads + head : NULL);
  }
  padec__clear_message();
  return PADEC_STATUS_OK;
}
