/*
 * The test oracle: naive decode attention in double precision (or, for the tolerance baseline,
 * in plain float), gathering K/V through the block table with its own loop. It shares no code
 * with src/: its own element decoders, its own mask, its own softmax. Tests and `padec check`
 * only; never linked into the library.
 */
#ifndef PADEC_REF_ORACLE_H
#define PADEC_REF_ORACLE_H

#include <stddef.h>
#include <stdint.h>

/* Element codes; the values match padec_dtype so callers can pass those through. */
enum { PADEC_REF_BF16 = 0, PADEC_REF_FP16 = 1, PADEC_REF_FP32 = 2, PADEC_REF_E4M3 = 3 };
/* Scale modes; the values match padec_fp8_scale_mode. PER_TENSOR_DEVICE is read like PER_TENSOR
 * from k_scale/v_scale (the caller copies the device value). */
enum { PADEC_REF_SCALE_NONE = 0, PADEC_REF_SCALE_PER_TENSOR = 1, PADEC_REF_SCALE_PER_TOKEN = 3 };

typedef struct padec_ref_problem {
  int32_t num_q_heads, num_kv_heads, head_dim, page_size;
  int32_t layout_hnd;          /* 0: [pages][page_size][kv_heads][D]; 1: [pages][kv_heads][page_size][D] */
  int32_t q_dtype, kv_dtype;   /* PADEC_REF_* */
  int32_t q_len;               /* 1..4 */
  int32_t window_left;         /* 0: none */
  double softmax_scale;        /* already resolved (no 0 default here) */
  int32_t scale_mode;          /* PADEC_REF_SCALE_* */
  double k_scale, v_scale;     /* per tensor */
  const float *k_scales, *v_scales; /* per token: [num_pages][num_kv_heads][page_size] */
  int32_t batch;
  const int32_t *kv_lens;      /* [batch] */
  const int32_t *page_indptr;  /* [batch + 1] */
  const int32_t *page_indices;
  const void *q;               /* packed [batch * q_len][num_q_heads][head_dim] */
  const void *k_pages, *v_pages;
  int64_t kv_page_stride;      /* elements from one page to the next in each pool; 0: one page */
  /* Optional shards of context-parallel decode (both NULL: whole sequences). Sequence b's
   * kv_lens[b] cached tokens are then positions [shard_starts[b], shard_starts[b] + kv_lens[b])
   * of a sequence of seq_lens[b] tokens: query i sits at position seq_lens[b] - q_len + i and
   * sees the positions of its causal window that fall in the shard. A row that sees none of
   * them gets output 0 and LSE -inf, so the shards of a sequence combine with log-sum-exp
   * weights into the whole sequence's result. */
  const int32_t *shard_starts; /* [batch] */
  const int32_t *seq_lens;     /* [batch] */
  /* FLOAT precision only: the attention weights (exp(score - max), before normalising) rounded
   * to a 16-bit format before they weight V, as a reference computed in that format does and as
   * tensor-core kernels do with P (PADEC_REF_WEIGHTS_*; 0 keeps them float). The sum that
   * normalises them, and so the LSE, stays unrounded. */
  int32_t weights;
} padec_ref_problem;

enum { PADEC_REF_WEIGHTS_FLOAT = 0, PADEC_REF_WEIGHTS_BF16 = 1, PADEC_REF_WEIGHTS_FP16 = 2 };

enum { PADEC_REF_PRECISION_DOUBLE = 0, PADEC_REF_PRECISION_FLOAT = 1 };

/* out: [batch * q_len][num_q_heads][head_dim]; lse: [batch * q_len][num_q_heads] (natural log,
 * -inf for a row that sees no token, whose output is 0). precision FLOAT computes scores,
 * softmax and the weighted sum in float (the "plain fp32 implementation" of the tolerance rule).
 * Returns 0, or -1 on a malformed problem (with a message on stderr). */
int padec_ref_decode(const padec_ref_problem *problem, int precision, double *out, double *lse);

/* Element `index` of an array of dtype (PADEC_REF_*), as an exact double; NaN for an unknown
 * dtype. */
double padec_ref_element(const void *base, int32_t dtype, size_t index);

/* `value` as an output of dtype BF16, FP16 or FP32 would hold it: rounded to float, then to the
 * nearest value of the format (ties to even; past its largest finite value, infinity), by
 * arithmetic on the significand rather than on bits. NaN for other dtypes. */
double padec_ref_round(double value, int32_t dtype);

#endif /* PADEC_REF_ORACLE_H */
