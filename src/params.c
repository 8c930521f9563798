/* Parameter validation, defaults, the plan fingerprint and the run-argument checks shared by the
 * CPU and CUDA executors. */
#include <math.h>
#include <string.h>

#include "internal.h"

int32_t padec__dtype_bytes(padec_dtype dtype) {
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

static bool is_power_of_two(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

/* A dtype value as its name, for messages ("not a padec_dtype" for other values). */
static const char *dtype_label(int dtype) {
  switch (dtype) {
    case PADEC_DTYPE_BF16: return "bf16";
    case PADEC_DTYPE_FP16: return "fp16";
    case PADEC_DTYPE_FP32: return "fp32";
    case PADEC_DTYPE_E4M3: return "e4m3";
    default: return "not a padec_dtype";
  }
}

padec_status padec_params_validate(const padec_params *params) {
  if (!params) return padec__fail(PADEC_STATUS_NULL_POINTER, "params is NULL");
  const padec_params *p = params;
  if (p->num_kv_heads < 1 || p->num_q_heads < 1 || p->num_q_heads % p->num_kv_heads != 0 ||
      p->num_q_heads > 4096)
    return padec__fail(PADEC_STATUS_BAD_HEAD_COUNT,
                       "num_q_heads = %d, num_kv_heads = %d: need num_kv_heads >= 1 and "
                       "num_q_heads a multiple of it, at most 4096",
                       p->num_q_heads, p->num_kv_heads);
  if (p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256)
    return padec__fail(PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "head_dim = %d: supported are 64, 128, 256",
                       p->head_dim);
  if (!is_power_of_two(p->page_size) || p->page_size > 1024)
    return padec__fail(PADEC_STATUS_BAD_PAGE_SIZE, "page_size = %d: need a power of two 1..1024",
                       p->page_size);
  if (p->kv_layout != PADEC_LAYOUT_NHD && p->kv_layout != PADEC_LAYOUT_HND)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "kv_layout = %d: need NHD (0) or HND (1)",
                       (int)p->kv_layout);
  if (p->q_dtype != PADEC_DTYPE_BF16 && p->q_dtype != PADEC_DTYPE_FP16)
    return padec__fail(PADEC_STATUS_UNSUPPORTED_DTYPE, "q_dtype = %d (%s): q must be bf16 or fp16",
                       (int)p->q_dtype, dtype_label((int)p->q_dtype));
  if (p->kv_dtype != PADEC_DTYPE_BF16 && p->kv_dtype != PADEC_DTYPE_FP16 &&
      p->kv_dtype != PADEC_DTYPE_E4M3)
    return padec__fail(PADEC_STATUS_UNSUPPORTED_DTYPE,
                       "kv_dtype = %d (%s): the KV cache must be bf16, fp16 or e4m3", (int)p->kv_dtype,
                       dtype_label((int)p->kv_dtype));
  if (p->o_dtype != PADEC_DTYPE_BF16 && p->o_dtype != PADEC_DTYPE_FP16 &&
      p->o_dtype != PADEC_DTYPE_FP32)
    return padec__fail(PADEC_STATUS_UNSUPPORTED_DTYPE, "o_dtype = %d (%s): o must be bf16, fp16 or fp32",
                       (int)p->o_dtype, dtype_label((int)p->o_dtype));
  if (p->q_len < 0 || p->q_len > 4)
    return padec__fail(PADEC_STATUS_BAD_Q_LEN, "q_len = %d: need 1..4 (0 means 1)", p->q_len);
  if ((p->q_len ? p->q_len : 1) * (p->num_q_heads / p->num_kv_heads) > 64)
    return padec__fail(PADEC_STATUS_BAD_HEAD_COUNT,
                       "q_len %d x group %d query rows per KV head: at most 64 are supported",
                       p->q_len ? p->q_len : 1, p->num_q_heads / p->num_kv_heads);
  if (p->window_left < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "window_left = %d: need >= 0 (0 = no window)",
                       p->window_left);
  if (!isfinite(p->softmax_scale) || p->softmax_scale < 0.0f)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "softmax_scale = %g: need a finite value > 0 (0 = 1/sqrt(head_dim))",
                       (double)p->softmax_scale);
  if (p->fp8_scale_mode < PADEC_FP8_SCALE_NONE || p->fp8_scale_mode > PADEC_FP8_SCALE_PER_TOKEN)
    return padec__fail(PADEC_STATUS_BAD_SCALES, "fp8_scale_mode = %d is not a padec_fp8_scale_mode",
                       (int)p->fp8_scale_mode);
  if (p->kv_dtype != PADEC_DTYPE_E4M3 && p->fp8_scale_mode != PADEC_FP8_SCALE_NONE)
    return padec__fail(PADEC_STATUS_BAD_SCALES,
                       "fp8_scale_mode = %d given for a kv_dtype = %d cache: scales are for e4m3",
                       (int)p->fp8_scale_mode, (int)p->kv_dtype);
  if (p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR &&
      !(isfinite(p->k_scale) && isfinite(p->v_scale) && p->k_scale > 0.0f && p->v_scale > 0.0f))
    return padec__fail(PADEC_STATUS_BAD_SCALES, "k_scale = %g, v_scale = %g: need finite values > 0",
                       (double)p->k_scale, (double)p->v_scale);
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_params padec__params_normalized(const padec_params *params) {
  padec_params p = *params;
  if (p.q_len == 0) p.q_len = 1;
  if (p.softmax_scale == 0.0f) p.softmax_scale = 1.0f / sqrtf((float)p.head_dim);
  if (p.fp8_scale_mode != PADEC_FP8_SCALE_PER_TENSOR) {
    p.k_scale = 1.0f;
    p.v_scale = 1.0f;
  }
  return p;
}

static uint64_t fnv1a(uint64_t hash, int64_t value) {
  for (int i = 0; i < 8; ++i) {
    hash ^= (uint64_t)(value >> (8 * i)) & 0xffu;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

uint64_t padec__params_key(const padec_params *params) {
  padec_params p = padec__params_normalized(params);
  uint64_t hash = 0xcbf29ce484222325ull;
  hash = fnv1a(hash, p.num_q_heads);
  hash = fnv1a(hash, p.num_kv_heads);
  hash = fnv1a(hash, p.head_dim);
  hash = fnv1a(hash, p.q_len);
  hash = fnv1a(hash, p.window_left);
  return hash;
}

uint64_t padec__layout_key(const padec_params *normalized, int32_t policy) {
  const uint64_t key = padec__params_key(normalized);
  return policy == PADEC_POLICY_COST ? fnv1a(key, padec__dtype_bytes(normalized->kv_dtype)) : key;
}

static bool aligned(const void *ptr, size_t alignment) {
  return ((uintptr_t)ptr % alignment) == 0;
}

padec_status padec__check_layout_shape(const padec_params *normalized, const char *name,
                                       uint64_t params_key, int32_t policy, int32_t num_q_heads,
                                       int32_t num_kv_heads, int32_t head_dim, int32_t q_len) {
  const padec_params *p = normalized;
  const bool same_shape = num_q_heads == p->num_q_heads && num_kv_heads == p->num_kv_heads &&
                          head_dim == p->head_dim && q_len == p->q_len;
  if (same_shape && params_key == padec__layout_key(p, policy)) return PADEC_STATUS_OK;
  const int kv_bytes = padec__dtype_bytes(p->kv_dtype), other_bytes = kv_bytes == 1 ? 2 : 1;
  if (same_shape && policy == PADEC_POLICY_COST &&
      params_key == fnv1a(padec__params_key(p), other_bytes))
    return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                       "params.kv_dtype = %d: %s was made under the cost policy for %d-byte KV "
                       "elements, and its model weighs a partition by its bytes; params give "
                       "%d-byte elements",
                       (int)p->kv_dtype, name, other_bytes, kv_bytes);
  return padec__fail(PADEC_STATUS_PLAN_MISMATCH,
                     "%s was made for num_q_heads %d, num_kv_heads %d, head_dim %d, q_len %d (or "
                     "another window, or for the cost policy another KV dtype); params give %d, "
                     "%d, %d, %d, window %d",
                     name, num_q_heads, num_kv_heads, head_dim, q_len, p->num_q_heads,
                     p->num_kv_heads, p->head_dim, p->q_len, p->window_left);
}

padec_status padec__check_run_arguments(const padec_params *params,
                                        const padec_plan_layout *layout, const void *plan,
                                        const void *plan_host, const padec_tensors *tensors,
                                        const void *workspace, size_t workspace_bytes) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!layout) return padec__fail(PADEC_STATUS_NULL_POINTER, "layout is NULL");
  if (!plan) return padec__fail(PADEC_STATUS_NULL_POINTER, "plan is NULL");
  if (!tensors) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors is NULL");
  if (!workspace) return padec__fail(PADEC_STATUS_NULL_POINTER, "workspace is NULL");
  padec_params p = padec__params_normalized(params);
  status = padec__check_layout_shape(&p, "layout", layout->params_key, layout->policy,
                                     layout->num_q_heads, layout->num_kv_heads, layout->head_dim,
                                     layout->q_len);
  if (status != PADEC_STATUS_OK) return status;
  status = padec__check_plan_layout(layout, "layout");
  if (status != PADEC_STATUS_OK) return status;
  if (!aligned(plan, 16))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "plan must be 16-byte aligned");
  if (plan_host) {
    status = padec__check_plan_header(layout, plan_host, "plan");
    if (status != PADEC_STATUS_OK) return status;
  }
  if (workspace_bytes < layout->workspace_bytes)
    return padec__fail(PADEC_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes = %zu, need %zu",
                       workspace_bytes, layout->workspace_bytes);
  if (!aligned(workspace, 16))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "workspace must be 16-byte aligned");
  return padec__check_tensors(&p, layout->batch, tensors, workspace, layout->workspace_bytes, plan,
                              layout->plan_bytes);
}

/* The element strides of a [tokens][heads][head_dim] tensor, the fields' 0 read as packed. */
typedef struct element_strides {
  int64_t token, head;
} element_strides;

static element_strides resolved_strides(int64_t heads, int64_t head_dim, int64_t stride_token,
                                        int64_t stride_head) {
  element_strides s = {stride_token ? stride_token : heads * head_dim,
                       stride_head ? stride_head : head_dim};
  return s;
}

/* A q or o tensor's element strides (0 = packed): not negative, and its last element's index
 * within 2^59, so that the executors' index and byte arithmetic cannot overflow 64 bits. */
static padec_status check_strides(const char *tensor, int64_t tokens, int64_t heads, int64_t head_dim,
                                  int64_t stride_token, int64_t stride_head) {
  if (stride_token < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.%s_stride_token = %lld: need >= 0 (0 = packed)",
                       tensor, (long long)stride_token);
  if (stride_head < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.%s_stride_head = %lld: need >= 0 (0 = packed)",
                       tensor, (long long)stride_head);
  const int64_t limit = (int64_t)1 << 59;
  const element_strides s = resolved_strides(heads, head_dim, stride_token, stride_head);
  const int64_t per_head = s.head, per_token = s.token;
  /* heads <= 4096 and head_dim <= 256, so only the strides can push the products past the limit. */
  if (heads > 1 && per_head > (limit - head_dim) / (heads - 1))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.%s_stride_head = %lld: %lld heads span more than 2^59 elements",
                       tensor, (long long)stride_head, (long long)heads);
  const int64_t head_span = (heads - 1) * per_head + head_dim;
  if (tokens > 1 && per_token > (limit - head_span) / (tokens - 1))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "tensors.%s_stride_token = %lld: %lld tokens span more than 2^59 elements", tensor,
                       (long long)stride_token, (long long)tokens);
  return PADEC_STATUS_OK;
}

/* An output's elements, [tokens][heads][head_dim] at these strides (elements, 0 = packed; checked
 * by check_strides first, so every span stays below 2^59), must sit at distinct addresses: taken
 * from the smallest stride up, each stride must clear everything the smaller ones span. */
typedef struct strided_axis {
  int64_t extent, stride, given; /* given: the field as the caller set it (0 = packed) */
  const char *field, *noun;
} strided_axis;

static padec_status check_distinct_elements(const char *tensor, int64_t tokens, int64_t heads,
                                            int64_t head_dim, int64_t stride_token,
                                            int64_t stride_head) {
  const element_strides s = resolved_strides(heads, head_dim, stride_token, stride_head);
  strided_axis axes[2] = {{heads, s.head, stride_head, "stride_head", "heads"},
                          {tokens, s.token, stride_token, "stride_token", "tokens"}};
  if (axes[1].stride < axes[0].stride) {
    const strided_axis smaller = axes[1];
    axes[1] = axes[0];
    axes[0] = smaller;
  }
  int64_t spanned = head_dim; /* the contiguous row of one head */
  for (int i = 0; i < 2; ++i) {
    if (axes[i].extent < 2) continue;
    if (axes[i].stride < spanned)
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "tensors.%s_%s = %lld elements (0 = packed; %lld used): the %lld %s "
                         "would overlap, each needs %lld",
                         tensor, axes[i].field, (long long)axes[i].given,
                         (long long)axes[i].stride, (long long)axes[i].extent, axes[i].noun,
                         (long long)spanned);
    spanned += (axes[i].extent - 1) * axes[i].stride;
  }
  return PADEC_STATUS_OK;
}

/* The bytes [begin, end) of a strided [tokens][heads][head_dim] tensor; empty without elements. */
typedef struct byte_span {
  uintptr_t begin, end;
} byte_span;

static byte_span tensor_span(const void *base, int64_t tokens, int64_t heads, int64_t head_dim,
                             int64_t stride_token, int64_t stride_head, int64_t element_bytes) {
  byte_span span = {0, 0};
  if (!base || tokens < 1 || heads < 1) return span;
  const element_strides s = resolved_strides(heads, head_dim, stride_token, stride_head);
  const int64_t elements = (tokens - 1) * s.token + (heads - 1) * s.head + head_dim;
  span.begin = (uintptr_t)base;
  span.end = span.begin + (uintptr_t)(elements * element_bytes);
  return span;
}

/* A page pool's bytes: num_pages pages of page_bytes, page_stride_bytes apart (the last one's
 * end saturates rather than wrap for pool sizes no memory holds). */
static byte_span pool_span(const void *base, int64_t num_pages, int64_t page_stride_bytes,
                           int64_t page_bytes) {
  byte_span span = {0, 0};
  if (!base || num_pages < 1) return span;
  span.begin = (uintptr_t)base;
  const uint64_t room = (uint64_t)(UINTPTR_MAX - span.begin); /* bytes after the base */
  const uint64_t page = (uint64_t)page_bytes, stride = (uint64_t)page_stride_bytes;
  const uint64_t last = (uint64_t)(num_pages - 1);
  if (page > room || (stride && last > (room - page) / stride))
    span.end = UINTPTR_MAX;
  else
    span.end = span.begin + (uintptr_t)(last * stride + page);
  return span;
}

/* bytes from base (the end saturates rather than wrap); empty without any. */
static byte_span bytes_span(const void *base, uint64_t bytes) {
  byte_span span = {0, 0};
  if (!base || bytes == 0) return span;
  span.begin = (uintptr_t)base;
  span.end = bytes > (uint64_t)(UINTPTR_MAX - span.begin) ? UINTPTR_MAX : span.begin + (uintptr_t)bytes;
  return span;
}

/* count 4-byte elements (ints or floats) from base; empty without any. */
static byte_span int32_span(const void *base, int64_t count) {
  if (count < 1) return bytes_span(base, 0);
  return bytes_span(base, (uint64_t)count > UINT64_MAX / 4 ? UINT64_MAX : (uint64_t)count * 4);
}

static bool spans_overlap(byte_span a, byte_span b) {
  return a.begin < a.end && b.begin < b.end && a.begin < b.end && b.begin < a.end;
}

bool padec__bytes_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
  return spans_overlap(bytes_span(a, a_bytes), bytes_span(b, b_bytes));
}

bool padec__int32s_overlap(const void *array, int64_t count, const void *b, size_t b_bytes) {
  return spans_overlap(int32_span(array, count), bytes_span(b, b_bytes));
}

typedef struct named_span {
  byte_span span;
  const char *name;
} named_span;

/* What a call writes may share no byte with what it reads (`reader` does the reading), nor
 * with anything else it writes: BAD_ARGUMENT naming both. */
static padec_status check_writes_apart(const named_span *written, size_t num_written,
                                       const named_span *read, size_t num_read, const char *reader) {
  for (size_t i = 0; i < num_written; ++i) {
    for (size_t j = 0; j < num_read; ++j)
      if (spans_overlap(written[i].span, read[j].span))
        return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "%s overlaps %s, which the %s reads",
                           written[i].name, read[j].name, reader);
    for (size_t j = i + 1; j < num_written; ++j)
      if (spans_overlap(written[i].span, written[j].span))
        return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "%s overlaps %s", written[i].name,
                           written[j].name);
  }
  return PADEC_STATUS_OK;
}

int64_t padec__kv_page_stride(const padec_params *params, const padec_tensors *tensors) {
  if (tensors->kv_page_stride) return tensors->kv_page_stride;
  return (int64_t)params->page_size * params->num_kv_heads * params->head_dim;
}

/* The distance between pages (0 = one page): at least a page, every page 16-byte aligned (the
 * kernels copy 16-byte chunks), and below 2^32 bytes (the kernels' page offsets are a 32 x 32-bit
 * multiply; a page id < 2^31 times it stays below 2^63). */
static padec_status check_page_stride(const padec_params *p, int64_t kv_page_stride) {
  if (kv_page_stride == 0) return PADEC_STATUS_OK;
  const int64_t page_elems = (int64_t)p->page_size * p->num_kv_heads * p->head_dim;
  const int64_t element_bytes = padec__dtype_bytes(p->kv_dtype);
  if (kv_page_stride < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.kv_page_stride = %lld: need >= 0 (0 = one page)",
                       (long long)kv_page_stride);
  if (kv_page_stride < page_elems)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "tensors.kv_page_stride = %lld elements is less than one page (%lld elements)",
                       (long long)kv_page_stride, (long long)page_elems);
  if (kv_page_stride > (((int64_t)1 << 32) - 1) / element_bytes)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "tensors.kv_page_stride = %lld elements: need fewer than 2^32 bytes between pages",
                       (long long)kv_page_stride);
  if (kv_page_stride * element_bytes % 16 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER,
                       "tensors.kv_page_stride = %lld elements of %lld bytes: pages must stay 16-byte aligned",
                       (long long)kv_page_stride, (long long)element_bytes);
  return PADEC_STATUS_OK;
}

padec_status padec__check_tensors(const padec_params *normalized, int32_t batch,
                                  const padec_tensors *tensors, const void *workspace,
                                  size_t workspace_bytes, const void *plan, size_t plan_bytes) {
  const padec_params p = *normalized;
  const padec_tensors *t = tensors;
  if (batch > 0) {
    if (!t->q) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.q is NULL");
    if (!t->o) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.o is NULL");
    if (!t->k_pages) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.k_pages is NULL");
    if (!t->v_pages) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.v_pages is NULL");
    if (!t->page_indptr) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.page_indptr is NULL");
    if (!t->page_indices) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.page_indices is NULL");
    if (!t->kv_lens) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.kv_lens is NULL");
  }
  if (t->num_pages < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.num_pages = %lld is negative",
                       (long long)t->num_pages);
  if (p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN ||
      p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE) {
    if (!t->k_scales)
      return padec__fail(PADEC_STATUS_BAD_SCALES, "tensors.k_scales is NULL: fp8_scale_mode %d needs it",
                         (int)p.fp8_scale_mode);
    if (!t->v_scales)
      return padec__fail(PADEC_STATUS_BAD_SCALES, "tensors.v_scales is NULL: fp8_scale_mode %d needs it",
                         (int)p.fp8_scale_mode);
    if (!aligned(t->k_scales, 4))
      return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.k_scales must be 4-byte aligned");
    if (!aligned(t->v_scales, 4))
      return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.v_scales must be 4-byte aligned");
  }
  size_t q_align = (size_t)padec__dtype_bytes(p.q_dtype);
  size_t o_align = (size_t)padec__dtype_bytes(p.o_dtype);
  if (!aligned(t->q, q_align))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.q must be %zu-byte aligned", q_align);
  if (!aligned(t->o, o_align))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.o must be %zu-byte aligned", o_align);
  if (!aligned(t->k_pages, 16))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.k_pages must be 16-byte aligned");
  if (!aligned(t->v_pages, 16))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.v_pages must be 16-byte aligned");
  if (!aligned(t->merge_counters, 4))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.merge_counters must be 4-byte aligned");
  if (!aligned(t->lse, 4))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.lse must be 4-byte aligned");
  padec_status status = padec__check_kv_arrays(t);
  if (status != PADEC_STATUS_OK) return status;
  status = check_page_stride(&p, t->kv_page_stride);
  if (status != PADEC_STATUS_OK) return status;
  const int64_t tokens = (int64_t)batch * p.q_len;
  status = check_strides("q", tokens, p.num_q_heads, p.head_dim, t->q_stride_token, t->q_stride_head);
  if (status != PADEC_STATUS_OK) return status;
  status = check_strides("o", tokens, p.num_q_heads, p.head_dim, t->o_stride_token, t->o_stride_head);
  if (status != PADEC_STATUS_OK) return status;
  status = check_distinct_elements("o", tokens, p.num_q_heads, p.head_dim, t->o_stride_token,
                                   t->o_stride_head);
  if (status != PADEC_STATUS_OK) return status;
  /* The outputs are written while q is still read (other splits of the same rows), and o and
   * lse are written by different threads: none may share a byte with another. */
  const byte_span q = tensor_span(t->q, tokens, p.num_q_heads, p.head_dim, t->q_stride_token,
                                  t->q_stride_head, padec__dtype_bytes(p.q_dtype));
  const byte_span o = tensor_span(t->o, tokens, p.num_q_heads, p.head_dim, t->o_stride_token,
                                  t->o_stride_head, padec__dtype_bytes(p.o_dtype));
  const byte_span lse = tensor_span(t->lse, tokens, p.num_q_heads, 1, 0, 0, 4);
  if (spans_overlap(o, q))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.o and tensors.q overlap: the output "
                                                  "would be written over the query it reads");
  if (spans_overlap(lse, o))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.lse and tensors.o overlap");
  if (spans_overlap(lse, q))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.lse and tensors.q overlap");
  /* Nor may they land in the cache or in the workspace the run writes its partials to (below,
   * with everything else a run writes and reads). */
  const int64_t kv_bytes = padec__dtype_bytes(p.kv_dtype);
  const int64_t page_stride_bytes = padec__kv_page_stride(&p, t) * kv_bytes;
  const int64_t page_bytes = (int64_t)p.page_size * p.num_kv_heads * p.head_dim * kv_bytes;
  const byte_span k_pool = pool_span(t->k_pages, t->num_pages, page_stride_bytes, page_bytes);
  const byte_span v_pool = pool_span(t->v_pages, t->num_pages, page_stride_bytes, page_bytes);
  const byte_span space = bytes_span(workspace, workspace_bytes);
  /* Nor may anything a run writes (the outputs, the workspace's partials, the merge counters)
   * land in anything it reads: a page id or a length written over mid-run sends the rest of
   * the run to other pages, or past the pools. */
  const int64_t scale_count = p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN
                                  ? t->num_pages * p.num_kv_heads * p.page_size
                              : p.fp8_scale_mode == PADEC_FP8_SCALE_PER_TENSOR_DEVICE ? 1
                                                                                       : 0;
  const named_span written[] = {{o, "tensors.o"},
                                {lse, "tensors.lse"},
                                {space, "the workspace"},
                                {int32_span(t->merge_counters, (int64_t)batch * p.num_kv_heads),
                                 "tensors.merge_counters"}},
                   read[] = {{q, "tensors.q"},
              {k_pool, "the K pool (tensors.k_pages)"},
              {v_pool, "the V pool (tensors.v_pages)"},
              {int32_span(t->page_indptr, batch > 0 ? (int64_t)batch + 1 : 0), "tensors.page_indptr"},
              /* num_page_indices 0 is not given: the first id at least is read. */
              {int32_span(t->page_indices, t->num_page_indices > 0 ? t->num_page_indices : batch > 0),
               "tensors.page_indices"},
              {int32_span(t->kv_lens, batch), "tensors.kv_lens"},
              {int32_span(t->shard_starts, batch), "tensors.shard_starts"},
              {int32_span(t->seq_lens, batch), "tensors.seq_lens"},
              {int32_span(t->k_scales, scale_count), "tensors.k_scales"},
              {int32_span(t->v_scales, scale_count), "tensors.v_scales"},
              /* Every item's metadata is read as the run goes. */
              {bytes_span(plan, plan_bytes), "the plan"}};
  return check_writes_apart(written, sizeof written / sizeof written[0], read,
                            sizeof read / sizeof read[0], "run");
}

static padec_status check_shard_pair(const padec_tensors *t) {
  if ((t->shard_starts == NULL) != (t->seq_lens == NULL))
    return padec__fail(PADEC_STATUS_NULL_POINTER,
                       "tensors.shard_starts and tensors.seq_lens go together: %s is NULL",
                       t->shard_starts ? "seq_lens" : "shard_starts");
  return PADEC_STATUS_OK;
}

padec_status padec__check_kv_arrays(const padec_tensors *tensors) {
  const padec_tensors *t = tensors;
  const struct {
    const void *array;
    const char *name;
  } arrays[] = {{t->page_indptr, "page_indptr"}, {t->page_indices, "page_indices"}, {t->kv_lens, "kv_lens"},
                {t->shard_starts, "shard_starts"}, {t->seq_lens, "seq_lens"}};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; ++i)
    if (!aligned(arrays[i].array, 4))
      return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.%s must be 4-byte aligned", arrays[i].name);
  return check_shard_pair(t);
}

padec_status padec__kv_fault_report(const padec__kv_fault *fault) {
  const int b = fault->sequence;
  const int64_t *v = fault->values;
  switch ((padec__kv_check)fault->check) {
    case PADEC__KV_OK:
      return PADEC_STATUS_OK;
    case PADEC__KV_INDPTR_START:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "page_indptr[0] = %d, must be 0", (int)v[0]);
    case PADEC__KV_INDICES_LENGTH:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "page_indptr[%d] = %lld page ids, but tensors.num_page_indices = %lld",
                         (int)v[2], (long long)v[0], (long long)v[1]);
    case PADEC__KV_INDPTR_ORDER:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "page_indptr[%d] = %d < page_indptr[%d] = %d",
                         b + 1, (int)v[1], b, (int)v[0]);
    case PADEC__KV_INDPTR_END:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "sequence %d: page_indptr[%d] = %d is past page_indptr[%d] = %d, the "
                         "length of page_indices",
                         b, b + 1, (int)v[0], (int)v[2], (int)v[1]);
    case PADEC__KV_LEN:
      return padec__fail(PADEC_STATUS_KV_LEN_EXCEEDS_PAGES,
                         "sequence %d: kv_len = %lld but its %d pages hold %lld tokens", b,
                         (long long)v[0], (int)v[1], (long long)v[2]);
    case PADEC__KV_SHARD_START:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "sequence %d: shard_starts[%d] = %d is negative", b, b, (int)v[0]);
    case PADEC__KV_SHARD_END:
      return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                         "sequence %d: the shard ends at position %lld (shard_starts %d + kv_lens "
                         "%d), past seq_lens[%d] = %d",
                         b, (long long)(v[0] + v[1]), (int)v[0], (int)v[1], b, (int)v[2]);
    case PADEC__KV_PAGE_ID:
      return padec__fail(PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE,
                         "sequence %d: page_indices[%d] = %d, pool has %lld pages", b, (int)v[0],
                         (int)v[1], (long long)v[2]);
  }
  return padec__fail(PADEC_STATUS_INTERNAL, "sequence %d: unknown KV check %d", b, fault->check);
}

padec_status padec__check_shard(int32_t b, const int32_t *kv_lens, const int32_t *shard_starts,
                                const int32_t *seq_lens) {
  if (!shard_starts) return PADEC_STATUS_OK;
  if (shard_starts[b] < 0)
    return padec__kv_fault_report(&(padec__kv_fault){
        .check = PADEC__KV_SHARD_START, .sequence = b, .values = {shard_starts[b]}});
  if ((int64_t)shard_starts[b] + kv_lens[b] > seq_lens[b])
    return padec__kv_fault_report(
        &(padec__kv_fault){.check = PADEC__KV_SHARD_END,
                           .sequence = b,
                           .values = {shard_starts[b], kv_lens[b], seq_lens[b]}});
  return PADEC_STATUS_OK;
}

padec_status padec__check_kv_arguments(const padec_params *params, int32_t batch,
                                       const padec_tensors *tensors) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!tensors) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors is NULL");
  if (batch < 0) return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "batch = %d is negative", batch);
  const padec_tensors *t = tensors;
  if (t->num_page_indices < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.num_page_indices = %lld: need >= 0 (0 = not given)",
                       (long long)t->num_page_indices);
  if (t->num_pages < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.num_pages = %lld is negative",
                       (long long)t->num_pages);
  if (batch > 0) {
    if (!t->page_indptr) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.page_indptr is NULL");
    if (!t->page_indices) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.page_indices is NULL");
    if (!t->kv_lens) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.kv_lens is NULL");
  }
  return PADEC_STATUS_OK;
}

padec_status padec_validate_kv_host(const padec_params *params, int32_t batch,
                                    const padec_tensors *tensors) {
  padec_status status = padec__check_kv_arguments(params, batch, tensors);
  if (status != PADEC_STATUS_OK || batch == 0) return status;
  const padec_tensors *t = tensors;
  /* Argument errors before data errors, as padec_cuda_validate_kv orders them. */
  status = padec__check_kv_arrays(t);
  if (status != PADEC_STATUS_OK) return status;
  if (t->page_indptr[0] != 0)
    return padec__kv_fault_report(&(padec__kv_fault){
        .check = PADEC__KV_INDPTR_START, .sequence = 0, .values = {t->page_indptr[0]}});
  if (t->num_page_indices > 0 && t->page_indptr[batch] > t->num_page_indices)
    return padec__kv_fault_report(&(padec__kv_fault){
        .check = PADEC__KV_INDICES_LENGTH,
        .sequence = 0,
        .values = {t->page_indptr[batch], t->num_page_indices, batch}});
  for (int32_t b = 0; b < batch; ++b) {
    int32_t first = t->page_indptr[b], last = t->page_indptr[b + 1];
    if (last < first)
      return padec__kv_fault_report(&(padec__kv_fault){
          .check = PADEC__KV_INDPTR_ORDER, .sequence = b, .values = {first, last}});
    /* page_indices has page_indptr[batch] entries: a sequence whose pages end past them (a later
     * entry of page_indptr falls) is refused before any of its page ids is read. */
    if (last > t->page_indptr[batch])
      return padec__kv_fault_report(
          &(padec__kv_fault){.check = PADEC__KV_INDPTR_END,
                             .sequence = b,
                             .values = {last, t->page_indptr[batch], batch}});
    int64_t len = t->kv_lens[b];
    int64_t capacity = (int64_t)(last - first) * params->page_size;
    if (len < 0 || len > capacity)
      return padec__kv_fault_report(&(padec__kv_fault){
          .check = PADEC__KV_LEN, .sequence = b, .values = {len, last - first, capacity}});
    status = padec__check_shard(b, t->kv_lens, t->shard_starts, t->seq_lens);
    if (status != PADEC_STATUS_OK) return status;
    int32_t pages_used = (int32_t)((len + params->page_size - 1) / params->page_size);
    for (int32_t i = 0; i < pages_used; ++i) {
      int32_t page = t->page_indices[first + i];
      if (page < 0 || page >= t->num_pages)
        return padec__kv_fault_report(
            &(padec__kv_fault){.check = PADEC__KV_PAGE_ID,
                               .sequence = b,
                               .values = {first + i, page, t->num_pages}});
    }
  }
  return PADEC_STATUS_OK;
}

padec_status padec__check_shard_merge(const padec_params *params,
                                      const padec_shard_merge_tensors *tensors) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!tensors) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors is NULL");
  const padec_shard_merge_tensors *t = tensors;
  if (t->num_shards < 1)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.num_shards = %d: need 1 or more",
                       t->num_shards);
  if (t->rows < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "tensors.rows = %d is negative", t->rows);
  const int64_t elements = (int64_t)t->rows * params->num_q_heads * params->head_dim;
  if (elements > 0 && t->num_shards > (INT64_C(1) << 60) / elements)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "tensors.num_shards = %d x rows = %d: the stacked shard_o passes 2^62 bytes",
                       t->num_shards, t->rows);
  if (t->rows > 0) {
    if (!t->shard_o) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.shard_o is NULL");
    if (!t->shard_lse) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.shard_lse is NULL");
    if (!t->o) return padec__fail(PADEC_STATUS_NULL_POINTER, "tensors.o is NULL");
  }
  /* The GPU merge reads shard_o rows as float4 (float2 at head_dim 64). */
  if (!aligned(t->shard_o, 16))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.shard_o must be 16-byte aligned");
  if (!aligned(t->shard_lse, 4))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.shard_lse must be 4-byte aligned");
  if (!aligned(t->lse, 4))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.lse must be 4-byte aligned");
  const size_t o_align = (size_t)padec__dtype_bytes(params->o_dtype);
  if (!aligned(t->o, o_align))
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "tensors.o must be %zu-byte aligned",
                       o_align);
  const padec_params p = padec__params_normalized(params);
  status = check_strides("o", t->rows, p.num_q_heads, p.head_dim, t->o_stride_token, t->o_stride_head);
  if (status != PADEC_STATUS_OK) return status;
  /* Every output element is written once, by one thread on the GPU, from inputs no write
   * touches. */
  status = check_distinct_elements("o", t->rows, p.num_q_heads, p.head_dim, t->o_stride_token,
                                   t->o_stride_head);
  if (status != PADEC_STATUS_OK) return status;
  const int64_t stacked_rows = (int64_t)t->num_shards * t->rows;
  const byte_span o = tensor_span(t->o, t->rows, p.num_q_heads, p.head_dim, t->o_stride_token,
                                  t->o_stride_head, padec__dtype_bytes(p.o_dtype));
  const byte_span lse = tensor_span(t->lse, t->rows, p.num_q_heads, 1, 0, 0, 4);
  const byte_span shard_o = tensor_span(t->shard_o, stacked_rows, p.num_q_heads, p.head_dim, 0, 0, 4);
  const byte_span shard_lse = tensor_span(t->shard_lse, stacked_rows, p.num_q_heads, 1, 0, 0, 4);
  const named_span written[] = {{o, "tensors.o"}, {lse, "tensors.lse"}},
                   read[] = {{shard_o, "tensors.shard_o"}, {shard_lse, "tensors.shard_lse"}};
  return check_writes_apart(written, 2, read, 2, "merge");
}
