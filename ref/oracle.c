/*
 * The test oracle. Deliberately naive and deliberately independent of src/: elements are decoded
 * arithmetically (sign x integer significand x power of two, through ldexp) rather than by bit
 * reinterpretation as the library does, the mask is written out from its definition, and the
 * softmax is the textbook two-pass one (max, then exp and sum). Each (sequence, KV head) is first
 * gathered through the block table into a dense dequantised [kv_len][head_dim] array, so the
 * block-table walk is a single obvious loop.
 */
#include "oracle.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double decode_bf16(uint16_t bits) {
  int sign = (bits >> 15) & 1;
  int exponent = (bits >> 7) & 0xff;
  int mantissa = bits & 0x7f;
  double magnitude;
  if (exponent == 0xff)
    magnitude = mantissa ? NAN : INFINITY;
  else if (exponent == 0)
    magnitude = ldexp((double)mantissa, -133); /* subnormal: mantissa x 2^(1 - 127 - 7) */
  else
    magnitude = ldexp((double)(128 + mantissa), exponent - 134);
  return sign ? -magnitude : magnitude;
}

static double decode_fp16(uint16_t bits) {
  int sign = (bits >> 15) & 1;
  int exponent = (bits >> 10) & 0x1f;
  int mantissa = bits & 0x3ff;
  double magnitude;
  if (exponent == 0x1f)
    magnitude = mantissa ? NAN : INFINITY;
  else if (exponent == 0)
    magnitude = ldexp((double)mantissa, -24); /* subnormal: mantissa x 2^(1 - 15 - 10) */
  else
    magnitude = ldexp((double)(1024 + mantissa), exponent - 25);
  return sign ? -magnitude : magnitude;
}

/* OCP e4m3 "fn": bias 7, no infinities; only S.1111.111 is NaN, so 448 = 1.75 x 2^8 is finite. */
static double decode_e4m3(uint8_t bits) {
  int sign = (bits >> 7) & 1;
  int exponent = (bits >> 3) & 0xf;
  int mantissa = bits & 0x7;
  double magnitude;
  if (exponent == 0xf && mantissa == 0x7)
    magnitude = NAN;
  else if (exponent == 0)
    magnitude = ldexp((double)mantissa, -9); /* subnormal: mantissa x 2^(1 - 7 - 3) */
  else
    magnitude = ldexp((double)(8 + mantissa), exponent - 10);
  return sign ? -magnitude : magnitude;
}

static size_t element_bytes(int32_t dtype) {
  switch (dtype) {
    case PADEC_REF_BF16:
    case PADEC_REF_FP16:
      return 2;
    case PADEC_REF_FP32:
      return 4;
    case PADEC_REF_E4M3:
      return 1;
    default:
      return 0;
  }
}

double padec_ref_element(const void *base, int32_t dtype, size_t index) {
  const unsigned char *bytes = (const unsigned char *)base + index * element_bytes(dtype);
  switch (dtype) {
    case PADEC_REF_BF16: {
      uint16_t v;
      memcpy(&v, bytes, sizeof v);
      return decode_bf16(v);
    }
    case PADEC_REF_FP16: {
      uint16_t v;
      memcpy(&v, bytes, sizeof v);
      return decode_fp16(v);
    }
    case PADEC_REF_FP32: {
      float v;
      memcpy(&v, bytes, sizeof v);
      return (double)v;
    }
    case PADEC_REF_E4M3:
      return decode_e4m3(bytes[0]);
    default:
      return NAN;
  }
}

/* The nearest value (ties to even) of a binary format of `digits` significand bits, smallest
 * normal exponent `emin` and largest finite value `max`. v / quantum is exact in double (a float
 * divided by a power of two), and rint rounds ties to even in the default rounding mode. */
static double round_binary(double v, int digits, int emin, double max) {
  if (v == 0.0 || !isfinite(v)) return v;
  int e;
  (void)frexp(v, &e); /* |v| in [2^(e - 1), 2^e) */
  const int exponent = e - 1 < emin ? emin : e - 1;
  const double quantum = ldexp(1.0, exponent - (digits - 1));
  const double r = rint(v / quantum) * quantum;
  return fabs(r) > max ? copysign(INFINITY, v) : r;
}

double padec_ref_round(double value, int32_t dtype) {
  const double f = (double)(float)value;
  switch (dtype) {
    case PADEC_REF_BF16:
      return round_binary(f, 8, -126, ldexp(255.0, 120)); /* (2 - 2^-7) x 2^127 */
    case PADEC_REF_FP16:
      return round_binary(f, 11, -14, 65504.0);
    case PADEC_REF_FP32:
      return f;
    default:
      return NAN;
  }
}

static int fail(const char *message, long long value) {
  fprintf(stderr, "padec_ref_decode: %s (%lld)\n", message, value);
  return -1;
}

static int check_problem(const padec_ref_problem *p) {
  if (p->num_kv_heads < 1 || p->num_q_heads < 1 || p->num_q_heads % p->num_kv_heads != 0)
    return fail("num_q_heads must be a positive multiple of num_kv_heads", p->num_q_heads);
  if (p->head_dim < 1) return fail("head_dim must be positive", p->head_dim);
  if (p->page_size < 1) return fail("page_size must be positive", p->page_size);
  if (p->q_len < 1 || p->q_len > 4) return fail("q_len must be 1..4", p->q_len);
  if (p->window_left < 0) return fail("window_left must be >= 0", p->window_left);
  if (p->batch < 0) return fail("batch must be >= 0", p->batch);
  if (p->kv_page_stride < 0 ||
      (p->kv_page_stride > 0 &&
       p->kv_page_stride < (int64_t)p->page_size * p->num_kv_heads * p->head_dim))
    return fail("kv_page_stride must be 0 or at least one page", (long long)p->kv_page_stride);
  if (p->q_dtype != PADEC_REF_BF16 && p->q_dtype != PADEC_REF_FP16 && p->q_dtype != PADEC_REF_FP32)
    return fail("q_dtype must be bf16, fp16 or fp32", p->q_dtype);
  if (element_bytes(p->kv_dtype) == 0)
    return fail("kv_dtype is not a PADEC_REF_* code", p->kv_dtype);
  if (p->scale_mode != PADEC_REF_SCALE_NONE && p->scale_mode != PADEC_REF_SCALE_PER_TENSOR &&
      p->scale_mode != PADEC_REF_SCALE_PER_TOKEN)
    return fail("scale_mode must be NONE, PER_TENSOR or PER_TOKEN", p->scale_mode);
  if (p->weights < PADEC_REF_WEIGHTS_FLOAT || p->weights > PADEC_REF_WEIGHTS_FP16)
    return fail("weights must be FLOAT, BF16 or FP16", p->weights);
  if (p->scale_mode == PADEC_REF_SCALE_PER_TOKEN && (!p->k_scales || !p->v_scales))
    return fail("per-token scales need k_scales and v_scales", 0);
  if ((p->shard_starts == NULL) != (p->seq_lens == NULL))
    return fail("shard_starts and seq_lens go together", 0);
  if (p->batch == 0) return 0;
  if (!p->kv_lens || !p->page_indptr || !p->page_indices || !p->q || !p->k_pages || !p->v_pages)
    return fail("a tensor pointer is NULL", 0);
  if (p->shard_starts)
    for (int32_t b = 0; b < p->batch; ++b)
      if (p->shard_starts[b] < 0 || (int64_t)p->shard_starts[b] + p->kv_lens[b] > p->seq_lens[b])
        return fail("a shard starts before 0 or ends past its sequence, in sequence", b);
  for (int32_t b = 0; b < p->batch; ++b) {
    int64_t pages = (int64_t)p->page_indptr[b + 1] - p->page_indptr[b];
    if (p->kv_lens[b] < 0 || (int64_t)p->kv_lens[b] > pages * p->page_size)
      return fail("kv_len is negative or exceeds the pages of its sequence", b);
    int64_t used = ((int64_t)p->kv_lens[b] + p->page_size - 1) / p->page_size;
    for (int64_t i = 0; i < used; ++i)
      if (p->page_indices[p->page_indptr[b] + i] < 0)
        return fail("negative page id in sequence", b);
  }
  return 0;
}

/* Dequantised K and V of one (sequence, KV head): [kv_len][head_dim], in double and in float. */
typedef struct gathered {
  double *k, *v;
  float *k_float, *v_float;
} gathered;

static void gather(const padec_ref_problem *p, int32_t b, int32_t kv_head, gathered *g) {
  const int32_t d_count = p->head_dim, page_size = p->page_size, heads = p->num_kv_heads;
  for (int32_t t = 0; t < p->kv_lens[b]; ++t) {
    size_t page = (size_t)p->page_indices[p->page_indptr[b] + t / page_size];
    size_t slot = (size_t)(t % page_size);
    size_t in_page_row = p->layout_hnd ? (size_t)kv_head * (size_t)page_size + slot
                                       : slot * (size_t)heads + (size_t)kv_head;
    size_t page_start = page * (p->kv_page_stride > 0
                                    ? (size_t)p->kv_page_stride
                                    : (size_t)page_size * (size_t)heads * (size_t)d_count);
    double k_scale = 1.0, v_scale = 1.0;
    if (p->scale_mode == PADEC_REF_SCALE_PER_TENSOR) {
      k_scale = p->k_scale;
      v_scale = p->v_scale;
    } else if (p->scale_mode == PADEC_REF_SCALE_PER_TOKEN) {
      size_t at = (page * (size_t)heads + (size_t)kv_head) * (size_t)page_size + slot;
      k_scale = (double)p->k_scales[at];
      v_scale = (double)p->v_scales[at];
    }
    for (int32_t d = 0; d < d_count; ++d) {
      size_t element = page_start + in_page_row * (size_t)d_count + (size_t)d;
      double k = padec_ref_element(p->k_pages, p->kv_dtype, element);
      double v = padec_ref_element(p->v_pages, p->kv_dtype, element);
      size_t at = (size_t)t * (size_t)d_count + (size_t)d;
      g->k[at] = k * k_scale;
      g->v[at] = v * v_scale;
      /* The plain fp32 implementation dequantises with one float multiply. */
      g->k_float[at] = (float)k * (float)k_scale;
      g->v_float[at] = (float)v * (float)v_scale;
    }
  }
}

/* Cached tokens [first, last] (indices into sequence b's gathered rows) that query i of sequence
 * b sees; empty if last < first. The rule is stated on whole-sequence positions: query i sits at
 * position seq_len - q_len + i and sees [position - window_left, position] (from 0 without a
 * window); the cached tokens hold positions [start, start + kv_len). */
static void visible_range(const padec_ref_problem *p, int32_t b, int32_t i, int64_t *first,
                          int64_t *last) {
  const int64_t kv_len = p->kv_lens[b];
  const int64_t start = p->shard_starts ? p->shard_starts[b] : 0;
  const int64_t seq_len = p->seq_lens ? p->seq_lens[b] : kv_len;
  const int64_t position = seq_len - p->q_len + i;
  int64_t lowest = 0;
  if (p->window_left > 0 && position - p->window_left > 0) lowest = position - p->window_left;
  int64_t highest = position;
  if (lowest < start) lowest = start;
  if (highest > start + kv_len - 1) highest = start + kv_len - 1;
  *first = lowest - start;
  *last = highest - start;
}

static void attend_double(const padec_ref_problem *p, const double *q, const gathered *g,
                          int64_t first, int64_t last, double *scores, double *out, double *lse) {
  const int32_t d_count = p->head_dim;
  double max_score = -INFINITY;
  for (int64_t t = first; t <= last; ++t) {
    double dot = 0.0;
    for (int32_t d = 0; d < d_count; ++d) dot += q[d] * g->k[t * d_count + d];
    scores[t] = dot * p->softmax_scale;
    if (scores[t] > max_score) max_score = scores[t];
  }
  double sum = 0.0;
  for (int32_t d = 0; d < d_count; ++d) out[d] = 0.0;
  for (int64_t t = first; t <= last; ++t) {
    double weight = exp(scores[t] - max_score);
    sum += weight;
    for (int32_t d = 0; d < d_count; ++d) out[d] += weight * g->v[t * d_count + d];
  }
  for (int32_t d = 0; d < d_count; ++d) out[d] /= sum;
  *lse = max_score + log(sum);
}

static void attend_float(const padec_ref_problem *p, const float *q, const gathered *g,
                         int64_t first, int64_t last, float *scores, float *accumulator,
                         double *out, double *lse) {
  const int32_t d_count = p->head_dim;
  const float softmax_scale = (float)p->softmax_scale;
  float max_score = -INFINITY;
  for (int64_t t = first; t <= last; ++t) {
    float dot = 0.0f;
    for (int32_t d = 0; d < d_count; ++d) dot += q[d] * g->k_float[t * d_count + d];
    scores[t] = dot * softmax_scale;
    if (scores[t] > max_score) max_score = scores[t];
  }
  float sum = 0.0f;
  for (int32_t d = 0; d < d_count; ++d) accumulator[d] = 0.0f;
  const int32_t rounded_to = p->weights == PADEC_REF_WEIGHTS_BF16   ? PADEC_REF_BF16
                             : p->weights == PADEC_REF_WEIGHTS_FP16 ? PADEC_REF_FP16
                                                                    : PADEC_REF_FP32;
  for (int64_t t = first; t <= last; ++t) {
    const float weight = expf(scores[t] - max_score);
    sum += weight;
    const float applied = (float)padec_ref_round((double)weight, rounded_to);
    for (int32_t d = 0; d < d_count; ++d) accumulator[d] += applied * g->v_float[t * d_count + d];
  }
  for (int32_t d = 0; d < d_count; ++d) out[d] = (double)(accumulator[d] / sum);
  *lse = (double)(max_score + logf(sum));
}

int padec_ref_decode(const padec_ref_problem *problem, int precision, double *out, double *lse) {
  if (!problem) return fail("problem is NULL", 0);
  if (precision != PADEC_REF_PRECISION_DOUBLE && precision != PADEC_REF_PRECISION_FLOAT)
    return fail("precision must be DOUBLE or FLOAT", precision);
  const padec_ref_problem *p = problem;
  if (check_problem(p) != 0) return -1;
  if (p->batch > 0 && !out) return fail("out is NULL", 0);

  const int32_t d_count = p->head_dim, group = p->num_q_heads / p->num_kv_heads;
  int32_t longest = 1;
  for (int32_t b = 0; b < p->batch; ++b)
    if (p->kv_lens[b] > longest) longest = p->kv_lens[b];
  size_t dense = (size_t)longest * (size_t)d_count;
  gathered g;
  g.k = malloc(sizeof(double) * dense);
  g.v = malloc(sizeof(double) * dense);
  g.k_float = malloc(sizeof(float) * dense);
  g.v_float = malloc(sizeof(float) * dense);
  double *scores = malloc(sizeof(double) * (size_t)longest);
  float *scores_float = malloc(sizeof(float) * (size_t)longest);
  double *q_row = malloc(sizeof(double) * (size_t)d_count);
  float *q_row_float = malloc(sizeof(float) * (size_t)d_count);
  float *accumulator = malloc(sizeof(float) * (size_t)d_count);
  int status = 0;
  if (!g.k || !g.v || !g.k_float || !g.v_float || !scores || !scores_float || !q_row ||
      !q_row_float || !accumulator) {
    status = fail("out of memory for tokens", longest);
    goto done;
  }

  for (int32_t b = 0; b < p->batch; ++b) {
    for (int32_t kv_head = 0; kv_head < p->num_kv_heads; ++kv_head) {
      gather(p, b, kv_head, &g);
      for (int32_t i = 0; i < p->q_len; ++i) {
        int64_t first, last;
        visible_range(p, b, i, &first, &last);
        size_t token = (size_t)b * (size_t)p->q_len + (size_t)i;
        for (int32_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
          size_t row = token * (size_t)p->num_q_heads + (size_t)h;
          double *out_row = out + row * (size_t)d_count;
          double row_lse;
          if (last < first) {
            for (int32_t d = 0; d < d_count; ++d) out_row[d] = 0.0;
            row_lse = -INFINITY;
          } else {
            for (int32_t d = 0; d < d_count; ++d) {
              q_row[d] = padec_ref_element(p->q, p->q_dtype, row * (size_t)d_count + (size_t)d);
              q_row_float[d] = (float)q_row[d];
            }
            if (precision == PADEC_REF_PRECISION_DOUBLE)
              attend_double(p, q_row, &g, first, last, scores, out_row, &row_lse);
            else
              attend_float(p, q_row_float, &g, first, last, scores_float, accumulator, out_row,
                           &row_lse);
          }
          if (lse) lse[row] = row_lse;
        }
      }
    }
  }

done:
  free(g.k);
  free(g.v);
  free(g.k_float);
  free(g.v_float);
  free(scores);
  free(scores_float);
  free(q_row);
  free(q_row_float);
  free(accumulator);
  return status;
}
