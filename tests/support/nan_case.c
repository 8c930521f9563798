#include "nan_case.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"

enum { kPageSize = 16, kSpoiledSequence = 1 };
static const int32_t kLens[3] = {40, 673, 33};
/* For K the last token, which query 0 of q_len 2 does not see; for V the one before it, which
 * every query sees (nan_case.h says why). */
static const int32_t kPositionsK[3] = {0, 255, 672}, kPositionsV[3] = {0, 255, 671};

const run_path nan_case_paths[NAN_CASE_PATHS] = {{1, 0, 16}, {5, 0, 16}, {0, 1, 16}, {0, 64, 16}};

void nan_case_init(nan_case *nc, int variant, uint64_t seed) {
  memset(nc, 0, sizeof *nc);
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = kPageSize;
  p.kv_dtype = PADEC_DTYPE_E4M3;
  p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
  p.o_dtype = PADEC_DTYPE_FP32;
  p.q_len = 1 + variant / 6;
  nc->in_k = variant % 2 == 0;
  nc->position = (nc->in_k ? kPositionsK : kPositionsV)[(variant / 2) % 3];
  if (padec_case_init(&nc->c, &p, 3, kLens, seed) != 0) {
    fprintf(stderr, "nan_case: out of host memory\n");
    exit(1);
  }
  const padec_case *c = &nc->c;
  const int64_t page = c->page_indices[c->page_indptr[kSpoiledSequence] + nc->position / kPageSize];
  float *scales = nc->in_k ? c->k_scales : c->v_scales;
  for (int32_t head = 0; head < p.num_kv_heads; ++head)
    scales[(page * p.num_kv_heads + head) * kPageSize + nc->position % kPageSize] = NAN;
  nc->o = test_alloc(c->o_bytes);
  nc->lse = (float *)test_alloc(sizeof(float) * (size_t)c->num_tokens * (size_t)p.num_q_heads);
}

void nan_case_free(nan_case *nc) {
  free(nc->o);
  free(nc->lse);
  padec_case_free(&nc->c);
  memset(nc, 0, sizeof *nc);
}

void nan_case_label(const nan_case *nc, const run_path *path, char *label, size_t size) {
  char name[64];
  run_path_name(path, name, sizeof name);
  snprintf(label, size, "NaN %s scale at token %d of %d, q_len %d, seed %" PRIu64 ", %s",
           nc->in_k ? "K" : "V", nc->position, kLens[kSpoiledSequence], nc->c.params.q_len,
           nc->c.seed, name);
}

int nan_case_check(const nan_case *nc, char *why, size_t size) {
  const padec_case *c = &nc->c;
  const int32_t q_len = c->params.q_len, heads = c->params.num_q_heads, dim = c->params.head_dim;
  const float *o = nc->o;
  int64_t spoiled_rows = 0;
  /* Query token i of the sequence sees positions up to L - q_len + i (no window). */
  for (int32_t i = 0; i < q_len; ++i) {
    if (nc->position > kLens[kSpoiledSequence] - q_len + i) continue;
    for (int32_t head = 0; head < heads; ++head, ++spoiled_rows) {
      const int64_t row = ((int64_t)kSpoiledSequence * q_len + i) * heads + head;
      for (int32_t d = 0; d < dim; ++d)
        if (!isnan(o[row * dim + d])) {
          snprintf(why, size, "query %d, head %d: o[%d] = %g where the token is seen, not NaN", i,
                   head, d, (double)o[row * dim + d]);
          return 0;
        }
      if (nc->in_k != (int)isnan(nc->lse[row])) {
        snprintf(why, size, "query %d, head %d: lse = %g, %s", i, head, (double)nc->lse[row],
                 nc->in_k ? "not NaN under a NaN K" : "NaN under a NaN V (the LSE has no V)");
        return 0;
      }
    }
  }
  /* The oracle's values there are NaN, so those elements (and under K those LSEs) count as bad;
   * every other element and LSE must pass. */
  padec_check_result result;
  if (padec_check_output(c, nc->o, nc->lse, &result) != 0) {
    snprintf(why, size, "the oracle did not run");
    return 0;
  }
  const int64_t want_lse = nc->in_k ? spoiled_rows : 0;
  if (result.bad_elements != spoiled_rows * dim || result.bad_lse != want_lse) {
    snprintf(why, size,
             "%lld bad elements and %lld bad LSEs, want %lld and %lld (the spoiled rows alone)",
             (long long)result.bad_elements, (long long)result.bad_lse,
             (long long)(spoiled_rows * dim), (long long)want_lse);
    return 0;
  }
  return 1;
}
