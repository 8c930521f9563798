/*
 * Test cases whose KV pools (and optionally q and o) are larger than 4 GiB, without the memory:
 * the pools are sparse anonymous mappings (MAP_NORESERVE) of their full virtual size, and only
 * the pages that the block table names are touched. Used by tests/unit/test_large_offsets.c (the
 * CPU executor) and tests/cuda/test_cuda_large_pool.c (the GPU, which gets only the used pages
 * copied to their offsets).
 *
 * The block table draws its pages from the far end of the pool, in scattered order, and always
 * uses the pool's last page. Every byte of a used page that no token covers (slots past kv_len,
 * spare pages) holds 0xff: NaN in bf16, fp16, e4m3 and the fp32 scales, so a read of anything
 * but a valid token's data shows up in the output.
 */
#ifndef PADEC_TEST_LARGE_CASE_H
#define PADEC_TEST_LARGE_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

typedef struct large_case {
  /* The case as the harness knows it: c.k_pages, c.v_pages (and per-token c.k_scales,
   * c.v_scales) point into the mappings below, c.q is packed. Never padec_case_free it. */
  padec_case c;
  void *k_map, *v_map;                /* the pools: c.pool_bytes each */
  float *k_scales_map, *v_scales_map; /* per-token scales (mapped), c.scales_bytes each */
  size_t page_bytes;                  /* one page of one pool */
  size_t page_stride_bytes;           /* from one page to the next (page_bytes, or the case's
                                         kv_page_stride; the gap after a used page holds 0xff) */
  size_t page_scales_bytes;           /* one page's per-token scales (0 without) */
  int32_t *pages;                     /* the distinct page ids of the block table, ascending */
  int32_t num_distinct_pages;
  int64_t q_stride_token, q_stride_head; /* elements; 0: packed (as in padec_tensors) */
  int64_t o_stride_token, o_stride_head;
  void *q_view; /* q laid out with the strides above (mapped), or c.q */
  size_t q_view_bytes;
  size_t o_view_bytes; /* bytes an o laid out with the o strides spans */
} large_case;

/* Result of large_case_init. */
enum { LARGE_CASE_OK = 0, LARGE_CASE_NO_MAPPING = 1, LARGE_CASE_ERROR = -1 };

/* Builds a case with pools of num_pages pages, kv_page_stride elements apart (0: one page; see
 * padec_tensors.kv_page_stride). params: as for padec_case_init (q_len and the softmax scale are
 * resolved; fp8 scales are drawn). The strides are 0 for packed q and o, or element strides (the
 * mappings for strided q and o are sparse too). Returns LARGE_CASE_OK, LARGE_CASE_NO_MAPPING when
 * the kernel refuses a mapping of that size (a message in err), or LARGE_CASE_ERROR. */
int large_case_init(large_case *lc, const padec_params *params, int32_t batch,
                    const int32_t *kv_lens, int64_t num_pages, int64_t kv_page_stride,
                    int64_t q_stride_token,
                    int64_t q_stride_head, int64_t o_stride_token, int64_t o_stride_head,
                    uint64_t seed, char *err, size_t err_size);
void large_case_free(large_case *lc);

/* A sparse mapping of bytes (zero-filled on first touch), NULL when refused. Free with
 * large_unmap. */
void *large_map(size_t bytes);
void large_unmap(void *ptr, size_t bytes);

/* Tensors over the case: host pools, q_view with its strides, o with the o strides, lse. */
padec_tensors large_case_tensors(const large_case *lc, void *o, float *lse);

/* Copies an o laid out with the o strides into a packed o (c.o_bytes), for the check. */
void large_case_pack_o(const large_case *lc, const void *o_strided, void *o_packed);

/* The largest element offset a valid token of the case reaches in a pool, and the largest
 * per-token scale index (-1 without per-token scales): what the test claims to cover. */
int64_t large_case_max_pool_element(const large_case *lc);
int64_t large_case_max_scale_index(const large_case *lc);

/* The large-pool cases, one table for the CPU and the GPU tests. */
typedef struct large_spec {
  const char *label;
  padec_params params;
  int64_t num_pages;
  int64_t kv_page_stride; /* elements between pages; 0: one page */
  int32_t batch;
  int32_t lens[6];
  int64_t q_stride_token, q_stride_head, o_stride_token, o_stride_head; /* 0: packed */
  int64_t min_element; /* the case must reach at least this pool element offset */
  int64_t min_scale;   /* ... and this per-token scale index (0: no claim) */
  int host_only;       /* too large for a GPU's memory (a 130 GiB pool): the CPU test only */
} large_spec;

/* The table; *count receives its length. */
const large_spec *large_specs(int *count);

/* A large-pool test's exit status and last line, from its failed checks and the cases that ran
 * out of those it meant to run: 1 on any failure, else 77 (skipped) when any case was skipped,
 * so that a pass means every case ran, else 0. */
int large_exit_status(const char *test, int failures, int ran, int cases);

#endif /* PADEC_TEST_LARGE_CASE_H */
