/* Sparse large-pool test cases (large_case.h). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE under -std=c11 */
#include "large_case.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/numerics.h"
#include "test_support.h"

static int fail(char *err, size_t err_size, int code, const char *format, ...) {
  if (err && err_size) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
  }
  return code;
}

static uint64_t next_random(uint64_t *state) { return test_splitmix64(state); }

/* Uniform in [-1, 1) on a grid of 2^-23. */
static float uniform_signed(uint64_t *state) {
  return (float)(next_random(state) >> 40) * 0x1p-23f - 1.0f;
}

/* e4m3 scales in [1, 4] / 448, as bench/case.c draws them: nothing saturates. */
static float random_fp8_scale(uint64_t *state) {
  return (1.0f + 3.0f * (float)(next_random(state) >> 40) * 0x1p-24f) / 448.0f;
}

static size_t dtype_bytes(padec_dtype dtype) {
  return dtype == PADEC_DTYPE_E4M3 ? 1 : dtype == PADEC_DTYPE_FP32 ? 4 : 2;
}

static void store_element(void *base, padec_dtype dtype, size_t index, float value) {
  unsigned char *bytes = (unsigned char *)base + index * dtype_bytes(dtype);
  uint16_t half;
  switch (dtype) {
    case PADEC_DTYPE_BF16:
      half = padec__float_to_bf16(value);
      memcpy(bytes, &half, sizeof half);
      break;
    case PADEC_DTYPE_FP16:
      half = padec__float_to_fp16(value);
      memcpy(bytes, &half, sizeof half);
      break;
    case PADEC_DTYPE_FP32: memcpy(bytes, &value, sizeof value); break;
    case PADEC_DTYPE_E4M3: bytes[0] = padec__float_to_e4m3(value); break;
  }
}

void *large_map(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void *p =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void large_unmap(void *ptr, size_t bytes) {
  if (ptr) munmap(ptr, bytes ? bytes : 1);
}

static int compare_int32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* The first element of the pool row (token slot of one KV head) of a case's pools. */
static int64_t pool_row_start(const padec_case *c, int64_t page, int32_t slot, int32_t head) {
  const padec_params *p = &c->params;
  const int64_t in_page = p->kv_layout == PADEC_LAYOUT_HND ? (int64_t)head * p->page_size + slot
                                                           : (int64_t)slot * p->num_kv_heads + head;
  return page * c->kv_page_stride + in_page * p->head_dim;
}

static int64_t scale_index(const padec_params *p, int64_t page, int32_t slot, int32_t head) {
  return (page * p->num_kv_heads + head) * p->page_size + slot;
}

int large_case_init(large_case *lc, const padec_params *params, int32_t batch,
                    const int32_t *kv_lens, int64_t num_pages, int64_t kv_page_stride,
                    int64_t q_stride_token,
                    int64_t q_stride_head, int64_t o_stride_token, int64_t o_stride_head,
                    uint64_t seed, char *err, size_t err_size) {
  memset(lc, 0, sizeof *lc);
  padec_case *c = &lc->c;
  if (padec_params_validate(params) != PADEC_STATUS_OK)
    return fail(err, err_size, LARGE_CASE_ERROR, "params: %s", padec_last_message());
  if (batch < 1 || !kv_lens || num_pages < 1 || num_pages > INT32_MAX)
    return fail(err, err_size, LARGE_CASE_ERROR, "batch %d, num_pages %lld", batch,
                (long long)num_pages);
  padec_params p = *params;
  if (p.q_len == 0) p.q_len = 1;
  uint64_t state = seed;
  const int fp8 = p.kv_dtype == PADEC_DTYPE_E4M3;
  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR) {
    p.k_scale = random_fp8_scale(&state);
    p.v_scale = random_fp8_scale(&state);
  }
  c->params = p;
  c->batch = batch;
  c->num_tokens = (int64_t)batch * p.q_len;
  c->seed = seed;
  c->num_pages = num_pages;

  /* Block table: each row its used pages plus one spare, drawn from the last 2R + 1 pages. */
  c->kv_lens = malloc(sizeof(int32_t) * (size_t)batch);
  c->page_indptr = malloc(sizeof(int32_t) * ((size_t)batch + 1));
  if (!c->kv_lens || !c->page_indptr) goto out_of_memory;
  memcpy(c->kv_lens, kv_lens, sizeof(int32_t) * (size_t)batch);
  c->page_indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b)
    c->page_indptr[b + 1] = c->page_indptr[b] + (kv_lens[b] + p.page_size - 1) / p.page_size + 1;
  const int32_t rows = c->page_indptr[batch];
  const int64_t window = 2 * (int64_t)rows + 1;
  if (window > num_pages)
    return fail(err, err_size, LARGE_CASE_ERROR, "%lld pages cannot hold %d block-table pages",
                (long long)num_pages, rows);
  int32_t *candidates = malloc(sizeof(int32_t) * (size_t)window);
  c->page_indices = malloc(sizeof(int32_t) * (size_t)rows);
  lc->pages = malloc(sizeof(int32_t) * (size_t)rows);
  if (!candidates || !c->page_indices || !lc->pages) {
    free(candidates);
    goto out_of_memory;
  }
  for (int64_t i = 0; i < window; ++i) candidates[i] = (int32_t)(num_pages - window + i);
  for (int64_t i = window - 1; i > 0; --i) {
    const int64_t j = (int64_t)(next_random(&state) % (uint64_t)(i + 1));
    const int32_t swap = candidates[i];
    candidates[i] = candidates[j];
    candidates[j] = swap;
  }
  memcpy(c->page_indices, candidates, sizeof(int32_t) * (size_t)rows);
  free(candidates);
  /* The pool's last page holds the first tokens of the first non-empty sequence. */
  const int32_t last_page = (int32_t)(num_pages - 1);
  for (int32_t b = 0; b < batch; ++b) {
    if (kv_lens[b] == 0) continue;
    const int32_t at = c->page_indptr[b];
    for (int32_t i = 0; i < rows; ++i)
      if (c->page_indices[i] == last_page) c->page_indices[i] = c->page_indices[at];
    c->page_indices[at] = last_page;
    break;
  }
  memcpy(lc->pages, c->page_indices, sizeof(int32_t) * (size_t)rows);
  qsort(lc->pages, (size_t)rows, sizeof(int32_t), compare_int32);
  lc->num_distinct_pages = rows;

  /* The pools, sparse; every page of the block table poisoned, then the tokens written. */
  const size_t page_elems = (size_t)p.page_size * (size_t)p.num_kv_heads * (size_t)p.head_dim;
  if (kv_page_stride != 0 && kv_page_stride < (int64_t)page_elems)
    return fail(err, err_size, LARGE_CASE_ERROR, "kv_page_stride %lld is less than a page",
                (long long)kv_page_stride);
  c->kv_page_stride = kv_page_stride ? kv_page_stride : (int64_t)page_elems;
  lc->page_bytes = page_elems * dtype_bytes(p.kv_dtype);
  lc->page_stride_bytes = (size_t)c->kv_page_stride * dtype_bytes(p.kv_dtype);
  c->pool_bytes = (size_t)num_pages * lc->page_stride_bytes;
  lc->k_map = large_map(c->pool_bytes);
  lc->v_map = large_map(c->pool_bytes);
  if (!lc->k_map || !lc->v_map) {
    large_case_free(lc);
    return fail(err, err_size, LARGE_CASE_NO_MAPPING,
                "no sparse mapping of %.1f GiB for each KV pool", (double)c->pool_bytes / 0x1p30);
  }
  c->k_pages = lc->k_map;
  c->v_pages = lc->v_map;
  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN) {
    lc->page_scales_bytes = sizeof(float) * (size_t)p.num_kv_heads * (size_t)p.page_size;
    c->scales_bytes = (size_t)num_pages * lc->page_scales_bytes;
    lc->k_scales_map = large_map(c->scales_bytes);
    lc->v_scales_map = large_map(c->scales_bytes);
    if (!lc->k_scales_map || !lc->v_scales_map) {
      large_case_free(lc);
      return fail(err, err_size, LARGE_CASE_NO_MAPPING,
                  "no sparse mapping of %.1f GiB for each per-token scale array",
                  (double)c->scales_bytes / 0x1p30);
    }
    c->k_scales = lc->k_scales_map;
    c->v_scales = lc->v_scales_map;
  } else if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    c->scales_bytes = sizeof(float);
    c->k_scales = malloc(sizeof(float));
    c->v_scales = malloc(sizeof(float));
    if (!c->k_scales || !c->v_scales) goto out_of_memory;
    c->k_scales[0] = random_fp8_scale(&state);
    c->v_scales[0] = random_fp8_scale(&state);
  }
  for (int32_t i = 0; i < rows; ++i) {
    const size_t page = (size_t)lc->pages[i];
    memset((char *)lc->k_map + page * lc->page_stride_bytes, 0xff, lc->page_stride_bytes);
    memset((char *)lc->v_map + page * lc->page_stride_bytes, 0xff, lc->page_stride_bytes);
    if (lc->page_scales_bytes) {
      memset((char *)lc->k_scales_map + page * lc->page_scales_bytes, 0xff, lc->page_scales_bytes);
      memset((char *)lc->v_scales_map + page * lc->page_scales_bytes, 0xff, lc->page_scales_bytes);
    }
  }
  float k_tensor = 1.0f, v_tensor = 1.0f;
  if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR) {
    k_tensor = p.k_scale;
    v_tensor = p.v_scale;
  } else if (fp8 && p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    k_tensor = c->k_scales[0];
    v_tensor = c->v_scales[0];
  }
  for (int32_t b = 0; b < batch; ++b)
    for (int32_t t = 0; t < kv_lens[b]; ++t) {
      const int64_t page = c->page_indices[c->page_indptr[b] + t / p.page_size];
      const int32_t slot = t % p.page_size;
      for (int32_t h = 0; h < p.num_kv_heads; ++h) {
        float k_scale = k_tensor, v_scale = v_tensor;
        if (lc->page_scales_bytes) {
          const int64_t s = scale_index(&p, page, slot, h);
          k_scale = lc->k_scales_map[s] = random_fp8_scale(&state);
          v_scale = lc->v_scales_map[s] = random_fp8_scale(&state);
        }
        const size_t row = (size_t)pool_row_start(c, page, slot, h);
        for (int32_t d = 0; d < p.head_dim; ++d) {
          store_element(lc->k_map, p.kv_dtype, row + (size_t)d, uniform_signed(&state) / k_scale);
          store_element(lc->v_map, p.kv_dtype, row + (size_t)d, uniform_signed(&state) / v_scale);
        }
      }
    }

  /* q, packed for the oracle; and a strided copy when strides are given. */
  const size_t row_elems = (size_t)p.num_q_heads * (size_t)p.head_dim;
  c->q_bytes = (size_t)c->num_tokens * row_elems * dtype_bytes(p.q_dtype);
  c->o_bytes = (size_t)c->num_tokens * row_elems * dtype_bytes(p.o_dtype);
  c->q = malloc(c->q_bytes ? c->q_bytes : 1);
  if (!c->q) goto out_of_memory;
  for (size_t i = 0; i < (size_t)c->num_tokens * row_elems; ++i)
    store_element(c->q, p.q_dtype, i, uniform_signed(&state));
  lc->q_stride_token = q_stride_token;
  lc->q_stride_head = q_stride_head;
  lc->o_stride_token = o_stride_token;
  lc->o_stride_head = o_stride_head;
  const int64_t qst = q_stride_token ? q_stride_token : (int64_t)row_elems;
  const int64_t qsh = q_stride_head ? q_stride_head : p.head_dim;
  const int64_t ost = o_stride_token ? o_stride_token : (int64_t)row_elems;
  const int64_t osh = o_stride_head ? o_stride_head : p.head_dim;
  const int64_t q_extent =
      (c->num_tokens - 1) * qst + (int64_t)(p.num_q_heads - 1) * qsh + p.head_dim;
  const int64_t o_extent =
      (c->num_tokens - 1) * ost + (int64_t)(p.num_q_heads - 1) * osh + p.head_dim;
  lc->o_view_bytes = (size_t)o_extent * dtype_bytes(p.o_dtype);
  if (q_stride_token || q_stride_head) {
    lc->q_view_bytes = (size_t)q_extent * dtype_bytes(p.q_dtype);
    lc->q_view = large_map(lc->q_view_bytes);
    if (!lc->q_view) {
      large_case_free(lc);
      return fail(err, err_size, LARGE_CASE_NO_MAPPING, "no sparse mapping of %.1f GiB for q",
                  (double)lc->q_view_bytes / 0x1p30);
    }
    const size_t eb = dtype_bytes(p.q_dtype), d_bytes = (size_t)p.head_dim * eb;
    for (int64_t tok = 0; tok < c->num_tokens; ++tok)
      for (int32_t h = 0; h < p.num_q_heads; ++h)
        memcpy((char *)lc->q_view + (size_t)(tok * qst + h * qsh) * eb,
               (const char *)c->q + ((size_t)tok * row_elems + (size_t)h * (size_t)p.head_dim) * eb,
               d_bytes);
  } else {
    lc->q_view = c->q;
    lc->q_view_bytes = c->q_bytes;
  }
  return LARGE_CASE_OK;

out_of_memory:
  large_case_free(lc);
  return fail(err, err_size, LARGE_CASE_ERROR, "out of memory");
}

void large_case_free(large_case *lc) {
  padec_case *c = &lc->c;
  large_unmap(lc->k_map, c->pool_bytes);
  large_unmap(lc->v_map, c->pool_bytes);
  if (lc->k_scales_map) {
    large_unmap(lc->k_scales_map, c->scales_bytes);
    large_unmap(lc->v_scales_map, c->scales_bytes);
  } else {
    free(c->k_scales);
    free(c->v_scales);
  }
  if (lc->q_view && lc->q_view != c->q) large_unmap(lc->q_view, lc->q_view_bytes);
  free(c->q);
  free(c->kv_lens);
  free(c->page_indptr);
  free(c->page_indices);
  free(lc->pages);
  memset(lc, 0, sizeof *lc);
}

padec_tensors large_case_tensors(const large_case *lc, void *o, float *lse) {
  padec_tensors t = padec_case_tensors(&lc->c, o, lse);
  t.q = lc->q_view;
  t.q_stride_token = lc->q_stride_token;
  t.q_stride_head = lc->q_stride_head;
  t.o_stride_token = lc->o_stride_token;
  t.o_stride_head = lc->o_stride_head;
  return t;
}

void large_case_pack_o(const large_case *lc, const void *o_strided, void *o_packed) {
  const padec_params *p = &lc->c.params;
  const size_t eb = dtype_bytes(p->o_dtype), d_bytes = (size_t)p->head_dim * eb;
  const int64_t row_elems = (int64_t)p->num_q_heads * p->head_dim;
  const int64_t ost = lc->o_stride_token ? lc->o_stride_token : row_elems;
  const int64_t osh = lc->o_stride_head ? lc->o_stride_head : p->head_dim;
  for (int64_t tok = 0; tok < lc->c.num_tokens; ++tok)
    for (int32_t h = 0; h < p->num_q_heads; ++h)
      memcpy((char *)o_packed + (size_t)(tok * row_elems + (int64_t)h * p->head_dim) * eb,
             (const char *)o_strided + (size_t)(tok * ost + h * osh) * eb, d_bytes);
}

int64_t large_case_max_pool_element(const large_case *lc) {
  const padec_case *c = &lc->c;
  const padec_params *p = &c->params;
  int64_t largest = -1;
  for (int32_t b = 0; b < c->batch; ++b)
    for (int32_t t = 0; t < c->kv_lens[b]; ++t) {
      const int64_t page = c->page_indices[c->page_indptr[b] + t / p->page_size];
      for (int32_t h = 0; h < p->num_kv_heads; ++h) {
        const int64_t e = pool_row_start(c, page, t % p->page_size, h) + p->head_dim - 1;
        if (e > largest) largest = e;
      }
    }
  return largest;
}

int64_t large_case_max_scale_index(const large_case *lc) {
  if (!lc->page_scales_bytes) return -1;
  const padec_case *c = &lc->c;
  const padec_params *p = &c->params;
  int64_t largest = -1;
  for (int32_t b = 0; b < c->batch; ++b)
    for (int32_t t = 0; t < c->kv_lens[b]; ++t) {
      const int64_t page = c->page_indices[c->page_indptr[b] + t / p->page_size];
      const int64_t s = scale_index(p, page, t % p->page_size, p->num_kv_heads - 1);
      if (s > largest) largest = s;
    }
  return largest;
}

static padec_params make_params(int32_t q_heads, int32_t kv_heads, int32_t head_dim,
                                int32_t page_size, padec_layout layout, padec_dtype q,
                                padec_dtype kv, padec_dtype o, int32_t q_len, int32_t window,
                                padec_fp8_scale_mode mode) {
  padec_params p = test_params(q_heads, kv_heads, head_dim, page_size);
  p.kv_layout = layout;
  p.q_dtype = q;
  p.kv_dtype = kv;
  p.o_dtype = o;
  p.q_len = q_len;
  p.window_left = window;
  p.fp8_scale_mode = mode;
  if (mode == PADEC_FP8_SCALE_PER_TENSOR) {
    p.k_scale = 1.0f; /* placeholders: large_case_init draws the scales it quantises with */
    p.v_scale = 1.0f;
  }
  return p;
}

const large_spec *large_specs(int *count) {
  const int64_t two31 = INT64_C(1) << 31, two32 = INT64_C(1) << 32;
  /* clang-format off */
  static large_spec specs[10];
  const large_spec table[] = {
      /* 64 KiB pages: 163840 pages = 10 GiB; elements past 2^32. */
      {.label = "NHD bf16, D 256, 8 KV heads, page 16",
       .params = make_params(32, 8, 256, 16, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_BF16,
                             PADEC_DTYPE_BF16, 1, 0, PADEC_FP8_SCALE_NONE),
       .num_pages = 163840, .batch = 5, .lens = {1000, 17, 2500, 0, 300}, .min_element = two32},
      {.label = "HND fp16, D 128, page 64, q_len 3, window 500",
       .params = make_params(16, 4, 128, 64, PADEC_LAYOUT_HND, PADEC_DTYPE_FP16, PADEC_DTYPE_FP16,
                             PADEC_DTYPE_FP32, 3, 500, PADEC_FP8_SCALE_NONE),
       .num_pages = 163840, .batch = 3, .lens = {2000, 3, 700}, .min_element = two32},
      /* 4 KiB pages of one token: 2.6M pages = 10 GiB. */
      {.label = "NHD bf16, D 256, page 1",
       .params = make_params(16, 8, 256, 1, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_BF16,
                             PADEC_DTYPE_BF16, 2, 0, PADEC_FP8_SCALE_NONE),
       .num_pages = 2621440, .batch = 2, .lens = {600, 1}, .min_element = two32},
      /* fp8: one byte an element, so 6 GiB pools reach element 6.4e9. */
      {.label = "NHD e4m3 per-token, D 64, page 1024",
       .params = make_params(16, 8, 64, 1024, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_E4M3,
                             PADEC_DTYPE_BF16, 1, 0, PADEC_FP8_SCALE_PER_TOKEN),
       .num_pages = 12288, .batch = 2, .lens = {3000, 1025}, .min_element = two32},
      {.label = "HND e4m3 per-tensor, D 128, page 16",
       .params = make_params(8, 2, 128, 16, PADEC_LAYOUT_HND, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3,
                             PADEC_DTYPE_FP16, 4, 0, PADEC_FP8_SCALE_PER_TENSOR),
       .num_pages = 1572864, .batch = 3, .lens = {513, 4, 77}, .min_element = two32},
      {.label = "NHD e4m3 device scales, D 256, page 32, window 100",
       .params = make_params(32, 4, 256, 32, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_E4M3,
                             PADEC_DTYPE_BF16, 2, 100, PADEC_FP8_SCALE_PER_TENSOR_DEVICE),
       .num_pages = 196608, .batch = 4, .lens = {1500, 33, 2, 800}, .min_element = two32},
      /* Per-token scale indices past 2^31: 130 GiB fp8 pools and 8 GiB scale arrays. */
      {.label = "HND e4m3 per-token, scale index past 2^31",
       .params = make_params(8, 8, 64, 1024, PADEC_LAYOUT_HND, PADEC_DTYPE_BF16, PADEC_DTYPE_E4M3,
                             PADEC_DTYPE_FP32, 2, 0, PADEC_FP8_SCALE_PER_TOKEN),
       .num_pages = 266240, .batch = 2, .lens = {2048, 5}, .min_element = two31 * 64,
       .min_scale = two31, .host_only = 1},
      /* Pools with a page stride: two pages apart (K and V of a block side by side) and 16
       * bytes beyond a page, page offsets past 4 GiB. */
      {.label = "HND e4m3 per-tensor, D 128, page 16, two pages apart",
       .params = make_params(8, 2, 128, 16, PADEC_LAYOUT_HND, PADEC_DTYPE_BF16, PADEC_DTYPE_E4M3,
                             PADEC_DTYPE_BF16, 2, 0, PADEC_FP8_SCALE_PER_TENSOR),
       .num_pages = 786432, .kv_page_stride = 2 * 16 * 2 * 128, .batch = 3, .lens = {700, 16, 5},
       .min_element = two32},
      {.label = "NHD bf16, D 128, page 32, 16 bytes apart",
       .params = make_params(16, 2, 128, 32, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_BF16,
                             PADEC_DTYPE_FP32, 1, 300, PADEC_FP8_SCALE_NONE),
       .num_pages = 327680, .kv_page_stride = 32 * 2 * 128 + 8, .batch = 2, .lens = {1200, 33},
       .min_element = two31},
      /* q and o with token strides past 2^31 elements (q 8 GiB, o 16 GiB of address space). */
      {.label = "strided q and o, token stride 2^31 + 1024",
       .params = make_params(8, 2, 128, 32, PADEC_LAYOUT_NHD, PADEC_DTYPE_BF16, PADEC_DTYPE_BF16,
                             PADEC_DTYPE_FP32, 1, 0, PADEC_FP8_SCALE_NONE),
       .num_pages = 327680, .batch = 3, .lens = {900, 64, 1},
       .q_stride_token = two31 + 1024, .q_stride_head = 256,
       .o_stride_token = two31 + 2048, .o_stride_head = 384, .min_element = two31},
  };
  /* clang-format on */
  _Static_assert(sizeof table <= sizeof specs, "large_specs: the table outgrew its copy");
  memcpy(specs, table, sizeof table);
  *count = (int)(sizeof table / sizeof table[0]);
  return specs;
}

int large_exit_status(const char *test, int failures, int ran, int cases) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", test, failures);
    return 1;
  }
  if (ran < cases) {
    printf("%s: %d of %d cases passed, %d skipped (above): not every case ran\n", test, ran, cases,
           cases - ran);
    return 77;
  }
  printf("%s: all %d cases passed\n", test, cases);
  return 0;
}
