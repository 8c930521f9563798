/*
 * A sequence of kv_len 2^31 - 1 (the largest int32) under a sliding window, for the executors'
 * tests of token positions near INT32_MAX: only the window's tokens are read, but the last tile
 * of a stream that starts at the window, off a tile boundary, runs past INT32_MAX, where a
 * position in int32 would wrap and pass the "before the end" test.
 *
 * A short case (padec_case_init: 3 pages of 1024 tokens, random data, the window inside its last
 * page) whose block table is stretched: the sequence's row becomes 2^21 pages, the last three the
 * short case's, the rest its first page, so that the window sees the same tokens at the same
 * offsets in their pages as in the short case, whose oracle then checks the long run. The row
 * starts 2^21 + 64 entries into page_indices, after entries that hold a page id far past the
 * pool: a read through a wrapped position (2^21 entries before the row) reaches a page that does
 * not exist instead of a stray page that does. Used by tests/cpu/test_long_sequence.c and
 * tests/cuda/test_cuda_long_sequence.c.
 */
#ifndef PADEC_TEST_LONG_CASE_H
#define PADEC_TEST_LONG_CASE_H

#include <stdint.h>

#include "harness.h"
#include "run_path.h"

enum { LONG_CASE_PAGE_SIZE = 1024, LONG_CASE_WINDOW = 1000 };

typedef struct long_case {
  padec_case shorter; /* batch 1, kv_len 3071: the reference */
  /* The same data at kv_len 2^31 - 1, borrowing shorter's buffers. For the GPU: page_indices is
   * the guard and the row, and page_indptr starts past the guard (device data is not checked).
   * For the host, whose checks ask page_indptr[0] = 0: page_indices starts at the row, inside
   * the same array, with the guard before it. */
  padec_case longer, longer_host;
  int32_t indptr[2], indptr_host[2], lens[1];
  int32_t *indices;   /* the guard entries, then the stretched row */
  void *o;            /* host outputs for a run, shaped as shorter's (o_dtype fp32) */
  float *lse;
} long_case;

/* The variants both tiers run: bf16 NHD and e4m3 HND with per-token scales (whose scale loads
 * take the same positions), q_len 1 and 3; 8 query heads over 2 KV heads, head_dim 128, fp32
 * output. */
enum { LONG_CASE_VARIANTS = 4 };
/* Builds variant `variant` (0 .. LONG_CASE_VARIANTS - 1) and its host outputs. The case must
 * stay where it is built (longer points into it). Running out of memory ends the test. */
void long_case_init(long_case *lc, int variant, uint64_t seed);
void long_case_free(long_case *lc);

/* The paths each variant runs: the grid path with 1 and 3 splits, plans of 1 and 5 workers, all
 * of 256-token partitions. */
enum { LONG_CASE_PATHS = 4 };
extern const run_path long_case_paths[LONG_CASE_PATHS];

/* A label for failure reports: the KV dtype and layout, q_len, the seed and the path. */
void long_case_label(const long_case *lc, const run_path *path, char *label, size_t size);

#endif
