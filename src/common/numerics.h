/*
 * Numerics written once and compiled by both the C compiler and nvcc: element codecs (bf16,
 * fp16, fp8 e4m3) and the online-softmax state with its merge rule. The CPU executor and the
 * CUDA kernels use these, so the two executors agree on every rounding step they share.
 */
#ifndef PADEC_COMMON_NUMERICS_H
#define PADEC_COMMON_NUMERICS_H

#include <stdint.h>
#include <string.h>
#ifndef __CUDACC__
#include <math.h>
#endif

#ifdef __CUDACC__
#define PADEC_HD __host__ __device__ __forceinline__
#else
#define PADEC_HD static inline
#endif

/* log2(e): softmax runs in base 2 so that exp is one ex2 instruction on the GPU. */
#define PADEC_LOG2E 1.4426950408889634f
#define PADEC_LN2 0.6931471805599453f

PADEC_HD float padec__bits_to_float(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

PADEC_HD uint32_t padec__float_to_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

PADEC_HD float padec__bf16_to_float(uint16_t h) { return padec__bits_to_float((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN (quiet). */
PADEC_HD uint16_t padec__float_to_bf16(float f) {
  uint32_t bits = padec__float_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

PADEC_HD float padec__fp16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return padec__bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return padec__bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  /* Subnormal: mantissa * 2^-24, exact in float. */
  float magnitude = (float)mantissa * 5.9604644775390625e-08f;
  return sign ? -magnitude : magnitude;
}

/* Round to nearest even, overflow to infinity. */
PADEC_HD uint16_t padec__float_to_fp16(float f) {
  uint32_t bits = padec__float_to_bits(f);
  uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (abs_bits >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
  if (abs_bits < 0x38800000u) {
    /* Result is subnormal or zero: scale to units of 2^-24 and round to nearest even. */
    float scaled = padec__bits_to_float(abs_bits) * 16777216.0f;
    uint32_t whole = (uint32_t)scaled;
    float fraction = scaled - (float)whole;
    if (fraction > 0.5f || (fraction == 0.5f && (whole & 1u))) whole += 1u;
    return (uint16_t)(sign | whole);
  }
  uint32_t rounded = abs_bits + 0x0fffu + ((abs_bits >> 13) & 1u);
  return (uint16_t)(sign | (((rounded >> 13) - (112u << 10)) & 0x7fffu));
}

/* fp8 e4m3 ("fn": bias 7, no infinities, S.1111.111 is NaN, max 448). */
PADEC_HD float padec__e4m3_to_float(uint8_t v) {
  uint32_t sign = (uint32_t)(v & 0x80u) << 24;
  uint32_t exponent = (v >> 3) & 0xfu;
  uint32_t mantissa = v & 0x7u;
  if (exponent == 0xfu && mantissa == 0x7u) return padec__bits_to_float(sign | 0x7fc00000u);
  if (exponent != 0) return padec__bits_to_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
  float magnitude = (float)mantissa * 0.001953125f; /* mantissa * 2^-9 */
  return sign ? -magnitude : magnitude;
}

/* Round to nearest even with saturation to +-448 (what quantisers of KV caches do). */
PADEC_HD uint8_t padec__float_to_e4m3(float f) {
  uint32_t bits = padec__float_to_bits(f);
  uint8_t sign = (uint8_t)((bits >> 24) & 0x80u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
  float a = padec__bits_to_float(abs_bits);
  if (a >= 464.0f) return (uint8_t)(sign | 0x7eu); /* 448 is the largest finite value */
  if (a < 0.015625f) {
    /* Subnormal range: units of 2^-9, round to nearest even. */
    float scaled = a * 512.0f;
    uint32_t whole = (uint32_t)scaled;
    float fraction = scaled - (float)whole;
    if (fraction > 0.5f || (fraction == 0.5f && (whole & 1u))) whole += 1u;
    return (uint8_t)(sign | whole); /* whole == 8 is the smallest normal, encoded the same way */
  }
  uint32_t rounded = abs_bits + 0x7ffffu + ((abs_bits >> 20) & 1u);
  uint32_t code = ((rounded >> 20) - (120u << 3)) & 0x7fu;
  if (code > 0x7eu) code = 0x7eu;
  return (uint8_t)(sign | code);
}

/* Online-softmax state of one query row, in base 2: max_log2 is the running max of
 * (score * softmax_scale * log2e), sum the running sum of 2^(s - max_log2). The output
 * accumulator that goes with it is scaled by the same factor. A row that has seen nothing has
 * max_log2 = -inf and sum = 0. */
typedef struct padec_softmax_state {
  float max_log2;
  float sum;
} padec_softmax_state;

/* Scale factor 2^(old - new) for rescaling the accumulator when the max rises; 0 when the old
 * max is -inf (nothing accumulated), never NaN. */
PADEC_HD float padec__rescale_factor(float old_max_log2, float new_max_log2) {
  if (old_max_log2 == new_max_log2) return 1.0f; /* covers -inf == -inf */
  return exp2f(old_max_log2 - new_max_log2);
}

/* Natural-log LSE of a finished state: -inf for an empty row, NaN for a row a NaN spoiled (its
 * sum is NaN). */
PADEC_HD float padec__state_lse(padec_softmax_state s) {
  if (s.sum == 0.0f) return -INFINITY;
  return (s.max_log2 + log2f(s.sum)) * PADEC_LN2;
}

/* The larger of a and b, NaN if either is (fmaxf returns the other): the merges' maximum of the
 * partial LSEs, so that a NaN partial spoils the merged row instead of vanishing from it. */
PADEC_HD float padec__max_keeping_nan(float a, float b) {
  return (a != a || a > b) ? a : b;
}

#endif /* PADEC_COMMON_NUMERICS_H */
