/*
 * Checking an output against the oracle (harness.h, "checking"), with the FlashAttention
 * tolerance rule, row by row: an element of an output row (one query token, one head) may be off
 * by twice the largest error of a plain implementation over that row (the float oracle on the
 * same rounded inputs, its attention weights in the output's 16-bit format as a reference in
 * that format has them, rounded to o_dtype), plus a small epsilon. Decoding and rounding are
 * the oracle's, so no library code enters the bound.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "oracle.h"

/* Why these epsilons. The tolerance is already 2 x baseline; the epsilon only has to cover the
 * noise between two valid fp32 evaluation orders (split points, merge order, base-2 exponentials,
 * rescaling), which is a few float ulps of the row's values and of its LSE's terms. So it is
 * relative: to the row's largest exact value for o; for the LSE to 1 + |lse| + ln(1 + kv_len),
 * which bounds the row's largest score and the log of its sum. An absolute one
 * (1e-4 for 16-bit outputs) was most of the tolerance of a long sequence's rows, whose values
 * are small (about 0.007 at 32k tokens, where 1e-4 is 26 fp16 ulps): a row scaled by 1.01, or an
 * LSE without one of 32768 tokens (3e-5), passed. A real bug moves o by far more than these
 * (dropping or doubling a 16-token partition of a 4096-token sequence: about 0.4% of the row,
 * and lse by ~4e-3).
 * A rounding flip of a 16-bit output (float noise pushing a value across a rounding midpoint)
 * needs no epsilon of its own: it can only happen where the float oracle's own rounding error is
 * already about half an ulp, so the baseline covers it; 2^-12 of the row's largest value (a
 * quarter of an fp16 ulp there) is margin on top. fp32 outputs keep an absolute 1e-5: the GPU
 * carries P in 16 bits (a bf16 or f16 high part and a low part), about 2^-17 of the V values it
 * weighs, which the plain implementation's float weights do not model; 2^-20 of the row's
 * largest value failed valid GPU results (errors of 2e-7 to 3e-6, NVIDIA H100). Absolute is
 * right here only because every case's decoded V values lie in [-1, 1], up to e4m3 rounding
 * (case.c draws them so); V of larger magnitude would need this epsilon scaled by the largest
 * |V| the row weighs. */
#define PADEC_CHECK_EPS_FP32_OUTPUT 1e-5
#define PADEC_CHECK_REL_EPS_HALF_OUTPUT 0x1p-12
#define PADEC_CHECK_REL_EPS_LSE 0x1p-20

/* The oracle's own decoder and rounding (ref/oracle.c), not the library's: a rounding bug in
 * src/common/numerics.h must not move the baseline along with the result. */
double padec_output_element(const void *o, padec_dtype dtype, size_t index) {
  return dtype == PADEC_DTYPE_E4M3 ? NAN : padec_ref_element(o, (int32_t)dtype, index);
}

static padec_ref_problem oracle_problem(const padec_case *c) {
  const padec_params *p = &c->params;
  padec_ref_problem r;
  memset(&r, 0, sizeof r);
  r.num_q_heads = p->num_q_heads;
  r.num_kv_heads = p->num_kv_heads;
  r.head_dim = p->head_dim;
  r.page_size = p->page_size;
  r.layout_hnd = p->kv_layout == PADEC_LAYOUT_HND;
  r.q_dtype = (int32_t)p->q_dtype;
  r.kv_dtype = (int32_t)p->kv_dtype;
  r.q_len = p->q_len;
  r.window_left = p->window_left;
  /* 0 is the library's default, 1 / sqrt(head_dim), resolved here in double. */
  r.softmax_scale = p->softmax_scale != 0.0f ? (double)p->softmax_scale : 1.0 / sqrt((double)p->head_dim);
  r.scale_mode = PADEC_REF_SCALE_NONE;
  if (p->kv_dtype == PADEC_DTYPE_E4M3) {
    switch (p->fp8_scale_mode) {
      case PADEC_FP8_SCALE_NONE:
        break;
      case PADEC_FP8_SCALE_PER_TENSOR:
        r.scale_mode = PADEC_REF_SCALE_PER_TENSOR;
        r.k_scale = (double)p->k_scale;
        r.v_scale = (double)p->v_scale;
        break;
      case PADEC_FP8_SCALE_PER_TENSOR_DEVICE:
        r.scale_mode = PADEC_REF_SCALE_PER_TENSOR;
        r.k_scale = c->k_scales ? (double)c->k_scales[0] : NAN;
        r.v_scale = c->v_scales ? (double)c->v_scales[0] : NAN;
        break;
      case PADEC_FP8_SCALE_PER_TOKEN:
        r.scale_mode = PADEC_REF_SCALE_PER_TOKEN;
        r.k_scales = c->k_scales;
        r.v_scales = c->v_scales;
        break;
    }
  }
  r.batch = c->batch;
  r.kv_lens = c->kv_lens;
  r.page_indptr = c->page_indptr;
  r.page_indices = c->page_indices;
  r.q = c->q;
  r.k_pages = c->k_pages;
  r.v_pages = c->v_pages;
  r.kv_page_stride = c->kv_page_stride;
  r.shard_starts = c->shard_starts;
  r.seq_lens = c->seq_lens;
  return r;
}

int padec_check_output(const padec_case *c, const void *o, const float *lse,
                       padec_check_result *result) {
  if (!c || !result || (c->num_tokens > 0 && !o)) return -1;
  memset(result, 0, sizeof *result);
  result->first_bad = -1;
  const padec_params *p = &c->params;
  const size_t rows = (size_t)c->num_tokens * (size_t)p->num_q_heads;
  const size_t head_dim = (size_t)p->head_dim;
  const size_t elems = rows * head_dim;
  double *exact = malloc(sizeof(double) * (elems ? elems : 1));
  double *plain = malloc(sizeof(double) * (elems ? elems : 1));
  double *exact_lse = malloc(sizeof(double) * (rows ? rows : 1));
  double *plain_lse = malloc(sizeof(double) * (rows ? rows : 1));
  double *row_tolerance = malloc(sizeof(double) * (rows ? rows : 1));
  double *lse_tolerance = malloc(sizeof(double) * (rows ? rows : 1));
  int status = -1;
  if (!exact || !plain || !exact_lse || !plain_lse || !row_tolerance || !lse_tolerance) goto done;
  padec_ref_problem problem = oracle_problem(c);
  if (padec_ref_decode(&problem, PADEC_REF_PRECISION_DOUBLE, exact, exact_lse) != 0) goto done;
  /* The plain implementation of a 16-bit output computes in float with its attention weights in
   * the output's format, as a reference written in that format does (and as the GPU's
   * tensor-core PV does with f16 P): that rounding is not an error of the kernel's. */
  problem.weights = p->o_dtype == PADEC_DTYPE_BF16   ? PADEC_REF_WEIGHTS_BF16
                    : p->o_dtype == PADEC_DTYPE_FP16 ? PADEC_REF_WEIGHTS_FP16
                                                     : PADEC_REF_WEIGHTS_FLOAT;
  if (padec_ref_decode(&problem, PADEC_REF_PRECISION_FLOAT, plain, plain_lse) != 0) goto done;

  /* The baseline per output row (one query token, one head): its largest plain-float error.
   * Errors scale with a row's values, so a batch-wide baseline would let a row of small values
   * be wrong by the rounding error of the batch's largest. */
  const int fp32_output = p->o_dtype == PADEC_DTYPE_FP32;
  double lse_baseline = 0.0;
  for (size_t r = 0; r < rows; ++r) {
    double row_baseline = 0.0, row_largest = 0.0;
    for (size_t d = 0; d < head_dim; ++d) {
      const size_t i = r * head_dim + d;
      const double err = fabs(padec_ref_round(plain[i], (int32_t)p->o_dtype) - exact[i]);
      if (err > row_baseline) row_baseline = err;
      if (fabs(exact[i]) > row_largest) row_largest = fabs(exact[i]);
    }
    if (row_baseline > result->baseline_err) result->baseline_err = row_baseline;
    row_tolerance[r] = 2.0 * row_baseline + (fp32_output ? PADEC_CHECK_EPS_FP32_OUTPUT
                                                         : PADEC_CHECK_REL_EPS_HALF_OUTPUT * row_largest);
    if (row_tolerance[r] > result->tolerance) result->tolerance = row_tolerance[r];
    if (!isinf(exact_lse[r]) && fabs(plain_lse[r] - exact_lse[r]) > lse_baseline)
      lse_baseline = fabs(plain_lse[r] - exact_lse[r]);
  }
  /* The LSE's baseline is the batch's: its noise comes from the scores (a dot product's
   * rounding, times the softmax scale), whose magnitudes the rows share, and a row's own plain
   * error can be small by luck (softmax_scale 1e8: 0.8 on one row, 69 from a valid order). Its
   * epsilon is the row's: an LSE is max + ln(sum of exp(s - max)) with the sum between 1 and
   * the row's tokens, so a few ulps of 1 + |lse| + ln(1 + kv_len) bound the float noise of its
   * terms, whatever the LSE itself. */
  for (size_t r = 0; r < rows; ++r) {
    lse_tolerance[r] = 0.0;
    if (isinf(exact_lse[r])) continue;
    const int32_t b = (int32_t)(r / ((size_t)p->q_len * (size_t)p->num_q_heads));
    const double lse_scale = 1.0 + fabs(exact_lse[r]) + log1p((double)c->kv_lens[b]);
    lse_tolerance[r] = 2.0 * lse_baseline + PADEC_CHECK_REL_EPS_LSE * lse_scale;
    if (lse_tolerance[r] > result->lse_tolerance) result->lse_tolerance = lse_tolerance[r];
  }

  int nan_seen = 0;
  for (size_t i = 0; i < elems; ++i) {
    double value = padec_output_element(o, p->o_dtype, i);
    double err = fabs(value - exact[i]);
    int bad;
    if (isinf(exact_lse[i / head_dim])) {
      bad = value != 0.0; /* a row that sees nothing must be exactly 0, never NaN */
    } else {
      bad = !(err <= row_tolerance[i / head_dim]);
    }
    if (isnan(err))
      nan_seen = 1;
    else if (err > result->max_abs_err)
      result->max_abs_err = err;
    if (bad) {
      if (result->first_bad < 0) result->first_bad = (int64_t)i;
      result->bad_elements += 1;
    }
  }
  if (nan_seen) result->max_abs_err = NAN;

  if (lse) {
    int lse_nan_seen = 0;
    for (size_t r = 0; r < rows; ++r) {
      double value = (double)lse[r];
      int bad;
      double err;
      if (isinf(exact_lse[r])) {
        bad = !(isinf(value) && value < 0.0); /* -inf must be -inf exactly */
        err = bad ? INFINITY : 0.0;
      } else {
        err = fabs(value - exact_lse[r]);
        bad = !(err <= lse_tolerance[r]);
      }
      if (isnan(err))
        lse_nan_seen = 1;
      else if (err > result->max_lse_err)
        result->max_lse_err = err;
      if (bad) result->bad_lse += 1;
    }
    if (lse_nan_seen) result->max_lse_err = NAN;
  }
  result->pass = result->bad_elements == 0 && result->bad_lse == 0;
  status = 0;

done:
  free(exact);
  free(plain);
  free(exact_lse);
  free(plain_lse);
  free(row_tolerance);
  free(lse_tolerance);
  return status;
}

static const char *dtype_name(padec_dtype dtype) {
  switch (dtype) {
    case PADEC_DTYPE_BF16:
      return "bf16";
    case PADEC_DTYPE_FP16:
      return "fp16";
    case PADEC_DTYPE_FP32:
      return "fp32";
    case PADEC_DTYPE_E4M3:
      return "e4m3";
  }
  return "?";
}

static const char *scale_mode_name(padec_fp8_scale_mode mode) {
  switch (mode) {
    case PADEC_FP8_SCALE_NONE:
      return "none";
    case PADEC_FP8_SCALE_PER_TENSOR:
      return "tensor";
    case PADEC_FP8_SCALE_PER_TENSOR_DEVICE:
      return "device";
    case PADEC_FP8_SCALE_PER_TOKEN:
      return "token";
  }
  return "?";
}

/* A longer batch prints its first lengths and its size: the line stays readable in a log. */
#define PADEC_CHECK_PRINT_LENS 64

void padec_check_print(FILE *stream, const char *label, const padec_case *c,
                       const padec_check_result *result) {
  const padec_params *p = &c->params;
  fprintf(stream,
          "%s: num_q_heads=%d num_kv_heads=%d head_dim=%d page_size=%d layout=%s q=%s kv=%s o=%s "
          "q_len=%d window_left=%d softmax_scale=%.9g fp8_scale_mode=%s k_scale=%.9g v_scale=%.9g",
          label ? label : "case", p->num_q_heads, p->num_kv_heads, p->head_dim, p->page_size,
          p->kv_layout == PADEC_LAYOUT_HND ? "hnd" : "nhd", dtype_name(p->q_dtype),
          dtype_name(p->kv_dtype), dtype_name(p->o_dtype), p->q_len, p->window_left,
          (double)p->softmax_scale, scale_mode_name(p->fp8_scale_mode), (double)p->k_scale,
          (double)p->v_scale);
  if (p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE && c->k_scales && c->v_scales)
    fprintf(stream, " device_k_scale=%.9g device_v_scale=%.9g", (double)c->k_scales[0],
            (double)c->v_scales[0]);
  fprintf(stream, " batch=%d seed=0x%llx num_pages=%lld kv_page_stride=%lld lens=", c->batch,
          (unsigned long long)c->seed, (long long)c->num_pages, (long long)c->kv_page_stride);
  for (int32_t b = 0; b < c->batch && b < PADEC_CHECK_PRINT_LENS; ++b)
    fprintf(stream, "%s%d", b ? "," : "", c->kv_lens[b]);
  if (c->batch > PADEC_CHECK_PRINT_LENS) fprintf(stream, ",...(%d)", c->batch);
  if (c->shard_starts && c->seq_lens) {
    fprintf(stream, " shard_starts=");
    for (int32_t b = 0; b < c->batch && b < PADEC_CHECK_PRINT_LENS; ++b)
      fprintf(stream, "%s%d", b ? "," : "", c->shard_starts[b]);
    fprintf(stream, " seq_lens=");
    for (int32_t b = 0; b < c->batch && b < PADEC_CHECK_PRINT_LENS; ++b)
      fprintf(stream, "%s%d", b ? "," : "", c->seq_lens[b]);
  }
  if (result) {
    fprintf(stream,
            " | %s max_abs_err=%.3g baseline_err=%.3g tolerance=%.3g max_lse_err=%.3g "
            "lse_tolerance=%.3g bad_elements=%lld bad_lse=%lld first_bad=%lld",
            result->pass ? "PASS" : "FAIL", result->max_abs_err, result->baseline_err,
            result->tolerance, result->max_lse_err, result->lse_tolerance,
            (long long)result->bad_elements, (long long)result->bad_lse,
            (long long)result->first_bad);
    if (result->first_bad >= 0) {
      int64_t row = result->first_bad / p->head_dim;
      fprintf(stream, " (token %lld head %lld dim %lld)", (long long)(row / p->num_q_heads),
              (long long)(row % p->num_q_heads), (long long)(result->first_bad % p->head_dim));
    }
  }
  fputc('\n', stream);
}
