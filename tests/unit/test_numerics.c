/*
 * The library's element codecs (src/common/numerics.h, used by the CPU executor and in the CUDA
 * code) against the oracle's, which decode by arithmetic on the significand and round with rint
 * (ref/oracle.c): every bf16, fp16 and e4m3 code decodes to the same value, and float -> bf16 and
 * float -> fp16 round to the same value as the oracle over every float exponent, the ties, the
 * subnormal ranges and the overflow boundary. The checker rounds with the oracle's code, so a
 * library rounding bug would show in the outputs' errors; this test names it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/numerics.h"
#include "oracle.h"
#include "test_support.h"

/* Same value, or both NaN; zeros must agree in sign. */
static int same(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return a == b && signbit(a) == signbit(b);
}

static uint64_t g_state = 0x6e756d65ull;
static uint32_t next_bits(void) { return (uint32_t)(test_splitmix64(&g_state) >> 32); }

static void check_rounding(float f) {
  const uint16_t b = padec__float_to_bf16(f), h = padec__float_to_fp16(f);
  const double want_b = padec_ref_round((double)f, PADEC_REF_BF16);
  const double want_h = padec_ref_round((double)f, PADEC_REF_FP16);
  CHECK(same(padec__bf16_to_float(b), want_b), "float_to_bf16(%a) = %a, the oracle rounds to %a", (double)f,
        (double)padec__bf16_to_float(b), want_b);
  CHECK(same(padec__fp16_to_float(h), want_h), "float_to_fp16(%a) = %a, the oracle rounds to %a", (double)f,
        (double)padec__fp16_to_float(h), want_h);
}

int main(void) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const uint16_t c = (uint16_t)code;
    CHECK(same(padec__bf16_to_float(c), padec_ref_element(&c, PADEC_REF_BF16, 0)), "bf16 code %#06x", code);
    CHECK(same(padec__fp16_to_float(c), padec_ref_element(&c, PADEC_REF_FP16, 0)), "fp16 code %#06x", code);
  }
  for (uint32_t code = 0; code < 256; ++code) {
    const uint8_t c = (uint8_t)code;
    CHECK(same(padec__e4m3_to_float(c), padec_ref_element(&c, PADEC_REF_E4M3, 0)), "e4m3 code %#04x", code);
  }

  /* Every float exponent, with random mantissas. */
  for (int i = 0; i < 1 << 20; ++i) {
    const uint32_t bits = next_bits();
    float f;
    memcpy(&f, &bits, sizeof f);
    check_rounding(f);
  }
  /* Ties and their neighbours: every 16-bit value plus half a step of either format, and one
   * float ulp either side. */
  for (uint32_t code = 0; code < 65536; ++code) {
    const uint16_t c = (uint16_t)code;
    const float b = padec__bf16_to_float(c), h = padec__fp16_to_float(c);
    if (isfinite(b)) {
      const float half_step = ldexpf(1.0f, ilogbf(b == 0.0f ? 1e-38f : b) - 8);
      const float tie = b + half_step;
      check_rounding(tie);
      check_rounding(nextafterf(tie, INFINITY));
      check_rounding(nextafterf(tie, -INFINITY));
    }
    if (isfinite(h)) {
      /* fp16 steps: 2^(e - 10) for normal values, 2^-24 below 2^-14. */
      const int e = h == 0.0f || fabsf(h) < 6.103515625e-05f ? -14 : ilogbf(h);
      const float tie = h + ldexpf(1.0f, e - 11);
      check_rounding(tie);
      check_rounding(nextafterf(tie, INFINITY));
      check_rounding(nextafterf(tie, -INFINITY));
    }
  }
  /* The overflow boundaries. */
  const float edges[] = {65504.0f, 65519.99f, 65520.0f, 65536.0f, 3.3895314e38f, 3.4028235e38f, INFINITY, NAN};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; ++i) {
    check_rounding(edges[i]);
    check_rounding(-edges[i]);
  }
  if (test_failures) {
    fprintf(stderr, "test_numerics: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_numerics: every 16-bit and e4m3 code decodes as the oracle's; bf16 and fp16 rounding agree\n");
  return 0;
}
