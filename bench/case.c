/*
 * Random problem cases (harness.h, "random cases"). Everything is drawn from one splitmix64
 * stream seeded by the caller, so a case is reproduced by its params, lengths and seed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/numerics.h"
#include "harness.h"

static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1) on a grid of 2^-23: exact in float, and zero only with probability 2^-24. */
static float uniform_signed(uint64_t *state) {
  return (float)(next_random(state) >> 40) * 0x1p-23f - 1.0f;
}

static float uniform_between(uint64_t *state, float low, float high) {
  return low + (high - low) * (float)(next_random(state) >> 40) * 0x1p-24f;
}

static int32_t uniform_below(uint64_t *state, int32_t bound) {
  return (int32_t)(next_random(state) % (uint64_t)bound);
}

/* Scales for e4m3 in [1, 4] / 448: |x| / scale stays within 448 for |x| <= 1, so nothing
 * saturates, and the quantised values spread over the upper exponents of e4m3. */
static float random_fp8_scale(uint64_t *state) {
  return uniform_between(state, 1.0f, 4.0f) / 448.0f;
}

static size_t dtype_bytes(padec_dtype dtype) {
  switch (dtype) {
    case PADEC_DTYPE_BF16:
    case PADEC_DTYPE_FP16:
      return 2;
    case PADEC_DTYPE_FP32:
      return 4;
    case PADEC_DTYPE_E4M3:
      return 1;
  }
  return 0;
}

/* Stores value, converted to dtype, as element index of base. */
static void store_element(void *base, padec_dtype dtype, size_t index, float value) {
  unsigned char *bytes = (unsigned char *)base + index * dtype_bytes(dtype);
  switch (dtype) {
    case PADEC_DTYPE_BF16: {
      uint16_t v = padec__float_to_bf16(value);
      memcpy(bytes, &v, sizeof v);
      break;
    }
    case PADEC_DTYPE_FP16: {
      uint16_t v = padec__float_to_fp16(value);
      memcpy(bytes, &v, sizeof v);
      break;
    }
    case PADEC_DTYPE_FP32:
      memcpy(bytes, &value, sizeof value);
      break;
    case PADEC_DTYPE_E4M3:
      bytes[0] = padec__float_to_e4m3(value);
      break;
  }
}

/* 64-byte aligned, never NULL for a zero size (so pointer checks see a real buffer). */
static void *alloc_aligned(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  return aligned_alloc(64, rounded ? rounded : 64);
}

/* The per-token scale index of (page, slot, KV head), [num_pages][num_kv_heads][page_size]. */
static size_t scale_index(const padec_params *p, size_t page, size_t slot, size_t head) {
  return (page * (size_t)p->num_kv_heads + head) * (size_t)p->page_size + slot;
}

/* The first element of the pool row (head_dim elements) of (page, slot, KV head). */
static size_t pool_row_start(const padec_case *c, size_t page, size_t slot, size_t head) {
  const padec_params *p = &c->params;
  const size_t in_page = p->kv_layout == PADEC_LAYOUT_HND
                             ? head * (size_t)p->page_size + slot
                             : slot * (size_t)p->num_kv_heads + head;
  return page * (size_t)c->kv_page_stride + in_page * (size_t)p->head_dim;
}

static void fill_pool(padec_case *c, void *pool, float *token_scales, float tensor_scale,
                      uint64_t *state) {
  const padec_params *p = &c->params;
  const size_t heads = (size_t)p->num_kv_heads, page_size = (size_t)p->page_size;
  const size_t head_dim = (size_t)p->head_dim;
  const int fp8 = p->kv_dtype == PADEC_DTYPE_E4M3;
  for (size_t page = 0; page < (size_t)c->num_pages; ++page) {
    for (size_t head = 0; head < heads; ++head) {
      for (size_t slot = 0; slot < page_size; ++slot) {
        const size_t scale_at = scale_index(p, page, slot, head);
        float scale = 1.0f;
        if (token_scales) {
          token_scales[scale_at] = random_fp8_scale(state);
          scale = token_scales[scale_at];
        } else if (fp8) {
          scale = tensor_scale;
        }
        const size_t row_start = pool_row_start(c, page, slot, head);
        for (size_t d = 0; d < head_dim; ++d)
          store_element(pool, p->kv_dtype, row_start + d, uniform_signed(state) / scale);
      }
    }
  }
}

/* Every pool slot that no sequence attends (past kv_len in a row's last page, a row's spare
 * pages, the pages no row uses) holds NaN bytes in K and V, and a NaN per-token scale: an
 * executor that reads past kv_len and leans on a zero weight (0 x NaN is NaN) fails the
 * comparison instead of passing by luck, as it would on a server's uninitialised cache. All-ones
 * bytes are a NaN in bf16, fp16 and e4m3 alike. Returns -1 when the marks cannot be allocated. */
static int poison_unattended_slots(padec_case *c) {
  const padec_params *p = &c->params;
  const size_t page_size = (size_t)p->page_size, heads = (size_t)p->num_kv_heads;
  const size_t element_bytes = dtype_bytes(p->kv_dtype);
  const size_t row_bytes = (size_t)p->head_dim * element_bytes;
  const size_t slots = (size_t)c->num_pages * page_size;
  unsigned char *attended = calloc(slots > 0 ? slots : 1, 1);
  if (!attended) return -1;
  for (int32_t b = 0; b < c->batch; ++b)
    for (int64_t t = 0; t < c->kv_lens[b]; ++t) {
      const size_t page = (size_t)c->page_indices[c->page_indptr[b] + t / p->page_size];
      attended[page * page_size + (size_t)(t % p->page_size)] = 1;
    }
  for (size_t slot = 0; slot < slots; ++slot) {
    if (attended[slot]) continue;
    const size_t page = slot / page_size, in_page = slot % page_size;
    for (size_t head = 0; head < heads; ++head) {
      const size_t scale_at = scale_index(p, page, in_page, head);
      const size_t row_offset = pool_row_start(c, page, in_page, head) * element_bytes;
      memset((unsigned char *)c->k_pages + row_offset, 0xff, row_bytes);
      memset((unsigned char *)c->v_pages + row_offset, 0xff, row_bytes);
      if (p->kv_dtype == PADEC_DTYPE_E4M3 && p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN) {
        c->k_scales[scale_at] = NAN;
        c->v_scales[scale_at] = NAN;
      }
    }
  }
  free(attended);
  return 0;
}

int padec_case_init(padec_case *c, const padec_params *params, int32_t batch,
                    const int32_t *kv_lens, uint64_t seed) {
  return padec_case_init_strided(c, params, batch, kv_lens, seed, 0);
}

int padec_case_init_strided(padec_case *c, const padec_params *params, int32_t batch,
                            const int32_t *kv_lens, uint64_t seed, int64_t kv_page_stride) {
  if (!c) return -1;
  memset(c, 0, sizeof *c);
  if (!params || batch < 0 || (batch > 0 && !kv_lens)) return -1;
  padec_params p = *params;
  if (p.q_len == 0) p.q_len = 1;
  /* softmax_scale 0 stays 0, so that the library's default is what runs; the oracle resolves it
   * on its own (check.c). */
  if (p.num_q_heads < 1 || p.num_kv_heads < 1 || p.head_dim < 1 || p.page_size < 1 || p.q_len < 1 ||
      p.q_len > 4 || dtype_bytes(p.q_dtype) == 0 || dtype_bytes(p.kv_dtype) == 0 ||
      dtype_bytes(p.o_dtype) == 0)
    return -1;
  for (int32_t b = 0; b < batch; ++b)
    if (kv_lens[b] < 0) return -1;
  const size_t page_elems = (size_t)p.page_size * (size_t)p.num_kv_heads * (size_t)p.head_dim;
  if (kv_page_stride == 0) kv_page_stride = (int64_t)page_elems;
  if (kv_page_stride < (int64_t)page_elems ||
      (size_t)kv_page_stride * dtype_bytes(p.kv_dtype) % 16 != 0 ||
      (uint64_t)kv_page_stride * dtype_bytes(p.kv_dtype) >= ((uint64_t)1 << 32))
    return -1;
  c->kv_page_stride = kv_page_stride;

  uint64_t state = seed;
  c->seed = seed;
  c->batch = batch;
  c->num_tokens = (int64_t)batch * p.q_len;

  const int fp8 = p.kv_dtype == PADEC_DTYPE_E4M3;
  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR) {
    p.k_scale = random_fp8_scale(&state);
    p.v_scale = random_fp8_scale(&state);
  } else if (fp8) {
    p.k_scale = 0.0f;
    p.v_scale = 0.0f;
  }
  c->params = p;

  c->kv_lens = malloc(sizeof(int32_t) * (size_t)(batch > 0 ? batch : 1));
  c->page_indptr = malloc(sizeof(int32_t) * ((size_t)batch + 1));
  if (!c->kv_lens || !c->page_indptr) goto fail;
  if (batch > 0) memcpy(c->kv_lens, kv_lens, sizeof(int32_t) * (size_t)batch);

  /* Block-table rows with 0..2 spare pages each, drawn from a shuffled pool a quarter larger
   * than the rows need (plus 3), so that page ids are scattered and some pages are unused. */
  int64_t row_pages = 0;
  c->page_indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b) {
    row_pages += ((int64_t)kv_lens[b] + p.page_size - 1) / p.page_size + uniform_below(&state, 3);
    if (row_pages > INT32_MAX) goto fail;
    c->page_indptr[b + 1] = (int32_t)row_pages;
  }
  c->num_pages = row_pages + row_pages / 4 + 3;
  if (c->num_pages > INT32_MAX) goto fail;
  int32_t *pool_order = malloc(sizeof(int32_t) * (size_t)c->num_pages);
  c->page_indices = malloc(sizeof(int32_t) * (size_t)(row_pages > 0 ? row_pages : 1));
  if (!pool_order || !c->page_indices) {
    free(pool_order);
    goto fail;
  }
  for (int32_t i = 0; i < (int32_t)c->num_pages; ++i) pool_order[i] = i;
  for (int32_t i = (int32_t)c->num_pages - 1; i > 0; --i) {
    int32_t j = uniform_below(&state, i + 1), swap = pool_order[i];
    pool_order[i] = pool_order[j];
    pool_order[j] = swap;
  }
  memcpy(c->page_indices, pool_order, sizeof(int32_t) * (size_t)row_pages);
  free(pool_order);

  const size_t row_elems = (size_t)p.num_q_heads * (size_t)p.head_dim;
  c->q_bytes = (size_t)c->num_tokens * row_elems * dtype_bytes(p.q_dtype);
  c->o_bytes = (size_t)c->num_tokens * row_elems * dtype_bytes(p.o_dtype);
  c->pool_bytes = (size_t)c->num_pages * (size_t)kv_page_stride * dtype_bytes(p.kv_dtype);
  c->q = alloc_aligned(c->q_bytes);
  c->k_pages = alloc_aligned(c->pool_bytes);
  c->v_pages = alloc_aligned(c->pool_bytes);
  if (!c->q || !c->k_pages || !c->v_pages) goto fail;
  /* The gaps between pages, when the stride leaves any, keep these NaN bytes. */
  if ((size_t)kv_page_stride != page_elems) {
    memset(c->k_pages, 0xff, c->pool_bytes);
    memset(c->v_pages, 0xff, c->pool_bytes);
  }

  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN) {
    c->scales_bytes =
        sizeof(float) * (size_t)c->num_pages * (size_t)p.num_kv_heads * (size_t)p.page_size;
  } else if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    c->scales_bytes = sizeof(float);
  }
  if (c->scales_bytes) {
    c->k_scales = alloc_aligned(c->scales_bytes);
    c->v_scales = alloc_aligned(c->scales_bytes);
    if (!c->k_scales || !c->v_scales) goto fail;
  }

  for (size_t i = 0; i < (size_t)c->num_tokens * row_elems; ++i)
    store_element(c->q, p.q_dtype, i, uniform_signed(&state));

  float k_tensor_scale = p.k_scale, v_tensor_scale = p.v_scale;
  float *k_token_scales = NULL, *v_token_scales = NULL;
  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    c->k_scales[0] = k_tensor_scale = random_fp8_scale(&state);
    c->v_scales[0] = v_tensor_scale = random_fp8_scale(&state);
  } else if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN) {
    k_token_scales = c->k_scales;
    v_token_scales = c->v_scales;
  } else if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_NONE) {
    k_tensor_scale = v_tensor_scale = 1.0f;
  }
  fill_pool(c, c->k_pages, k_token_scales, k_tensor_scale, &state);
  fill_pool(c, c->v_pages, v_token_scales, v_tensor_scale, &state);
  if (poison_unattended_slots(c) != 0) goto fail;
  return 0;

fail:
  padec_case_free(c);
  return -1;
}

void padec_case_free(padec_case *c) {
  if (!c) return;
  free(c->kv_lens);
  free(c->page_indptr);
  free(c->page_indices);
  free(c->q);
  free(c->k_pages);
  free(c->v_pages);
  free(c->k_scales);
  free(c->v_scales);
  memset(c, 0, sizeof *c);
}

padec_tensors padec_case_tensors(const padec_case *c, void *o, float *lse) {
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.q = c->q;
  t.k_pages = c->k_pages;
  t.v_pages = c->v_pages;
  t.num_pages = c->num_pages;
  /* 0 (the default) when the pools are contiguous, so that both forms run. */
  const int64_t page_elems =
      (int64_t)c->params.page_size * c->params.num_kv_heads * c->params.head_dim;
  t.kv_page_stride = c->kv_page_stride == page_elems ? 0 : c->kv_page_stride;
  t.page_indptr = c->page_indptr;
  t.page_indices = c->page_indices;
  t.num_page_indices = c->batch > 0 ? c->page_indptr[c->batch] : 0;
  t.kv_lens = c->kv_lens;
  t.k_scales = c->k_scales;
  t.v_scales = c->v_scales;
  t.o = o;
  t.lse = lse;
  t.shard_starts = c->shard_starts;
  t.seq_lens = c->seq_lens;
  return t;
}

/* All-ones bytes are a NaN in bf16, fp16 and fp32 alike (exponent all ones, mantissa non-zero). */
void padec_case_poison(const padec_case *c, void *o, float *lse) {
  if (o) memset(o, 0xff, c->o_bytes);
  if (lse) memset(lse, 0xff, sizeof(float) * (size_t)c->num_tokens * (size_t)c->params.num_q_heads);
}
