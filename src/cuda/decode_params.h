/* The parameter block of the CUDA decode and merge kernels, filled in exactly one host function
 * (fill_decode_params in launch.cu; the launch adds the pipeline's depth and the trace) and
 * passed by value as a __grid_constant__ argument. */
#ifndef PADEC_CUDA_DECODE_PARAMS_H
#define PADEC_CUDA_DECODE_PARAMS_H

#include <stdint.h>

struct padec_decode_params {
  const void *q;
  int64_t q_stride_token, q_stride_head; /* elements */
  const uint8_t *k_pages, *v_pages;
  uint32_t kv_page_bytes; /* from one page to the next in each pool (padec_tensors.kv_page_stride) */
  const int32_t *page_indptr, *page_indices, *kv_lens;
  const int32_t *shard_starts, *seq_lens; /* both NULL, or a context-parallel shard (padec.h) */
  const float *k_scales, *v_scales; /* per token, or one float each in device mode */
  void *o;
  int64_t o_stride_token, o_stride_head; /* elements */
  float *lse;                            /* may be NULL */
  float *partial_o, *partial_lse;
  int32_t *merge_counters;  /* [batch][num_kv_heads], zero at launch, zero again when every
                               group has merged (fused merge only) */
  int32_t fused_merge;      /* 1: the last CTA of a group merges it; 0: the merge kernel does */
  int32_t grid_splits;      /* 0: run the plan's work lists; > 0: the grid path (padec.h), CTA i
                               is split i % grid_splits of (sequence, KV head) i / grid_splits */
  const int32_t *work_indptr, *work_info, *partition_indptr;
  const int32_t *reduce_indptr, *reduce_final_map;
  /* First partial row of each split; NULL for the shard merge, whose partial k of row r is
   * row k * shard_rows + r of the stacked shard results. */
  const int32_t *reduce_partial_map;
  int64_t shard_rows;
  int32_t batch;
  int32_t num_q_heads, num_kv_heads, group, q_len, rows; /* rows = q_len * group */
  int32_t head_dim;
  int32_t window_left, page_size, partition_tokens;
  int32_t layout_hnd;
  int32_t q_dtype, o_dtype;  /* padec_dtype values */
  int32_t scale_mode;        /* padec_fp8_scale_mode */
  float k_scale, v_scale;    /* per-tensor values (mode PER_TENSOR; 1 otherwise) */
  float score_scale_log2;    /* softmax_scale * log2(e) */
  /* The K/V pipeline's depth (decode.cuh): tiles in flight while the consumer waits for one,
   * 2 to the instance's stages. Set at the launch, which knows the instance
   * (pick_pipeline_depth in launch.cu). */
  int32_t pipeline_depth;
  /* NULL, or [CTAs][PADEC_TRACE_EVENTS] %globaltimer stamps (ns) that thread 0 of each CTA writes
   * at the points of padec_trace_event (the benchmark's timeline; padec__cuda_set_trace). */
  uint64_t *trace;
};

/* The points of a decode CTA's life that a traced launch stamps. A stamp written per segment
 * keeps the last segment's. */
enum padec_trace_event {
  PADEC_TRACE_ENTRY = 0,       /* first instruction */
  PADEC_TRACE_ISSUED = 1,      /* cur's first tiles are issued (its metadata chain is behind) */
  PADEC_TRACE_FIRST_TILE = 2,  /* the first tile has landed and every warp may read it */
  PADEC_TRACE_LAST_TILE = 3,   /* a segment's last tile is consumed */
  PADEC_TRACE_WRITTEN = 4,     /* a segment's output or partial is written */
  PADEC_TRACE_MERGED = 5,      /* this CTA merged a group (left as the caller set it, zero, if
                                  it never did) */
  PADEC_TRACE_EXIT = 6,
  PADEC_TRACE_EVENTS = 8       /* stride per CTA */
};

#endif /* PADEC_CUDA_DECODE_PARAMS_H */
