/*
 * A NaN in the cache spoils exactly the rows that see it, on every path: a batch of three e4m3
 * sequences (per-token scales, so one token's scale can be NaN) whose middle one, of 673 tokens,
 * holds one token with a NaN K or V scale: the first, one inside, or (K) the last, alone in its
 * 16-token partition (a split of its own in the plan of 64 workers; alone in the CPU executor's
 * last 32-token chunk where its item starts on a multiple of 32) and unseen by query 0 at
 * q_len 2. A NaN V is placed where every query sees it: on the GPU a
 * NaN V at a token that some query rows of the sequence see and others do not (q_len > 1, a
 * window's edge) spoils those others too, as the tensor cores multiply its zero weight by NaN
 * (DESIGN.md, "Numerics").
 * A NaN score made a chunk or a split look empty (max -inf, LSE -inf) and vanish, so whether a
 * row came out NaN depended on where the token fell, and so under `even` on the rest of the
 * batch. Expected, as the oracle has it: a NaN in K gives NaN output and NaN LSE in every row
 * that sees the token; a NaN in V NaN output and a finite LSE; every other row passes the
 * oracle. Used by tests/cpu/test_nan_rows.c and tests/cuda/test_cuda_nan_rows.c.
 */
#ifndef PADEC_TEST_NAN_CASE_H
#define PADEC_TEST_NAN_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "run_path.h"

/* Variants: the token (first, inside, last) x the pool (K, V) x q_len (1, 2). */
enum { NAN_CASE_VARIANTS = 12, NAN_CASE_PATHS = 4 };
/* The grid path with 1 and 5 splits and plans of 1 and 64 workers, 16-token partitions. */
extern const run_path nan_case_paths[NAN_CASE_PATHS];

typedef struct nan_case {
  padec_case c;
  int32_t position; /* the spoiled token of sequence 1 */
  int in_k;         /* 1: its K scale is NaN; 0: its V scale */
  void *o;          /* host outputs for a run */
  float *lse;
} nan_case;

/* Builds variant `variant`; running out of memory ends the test. */
void nan_case_init(nan_case *nc, int variant, uint64_t seed);
void nan_case_free(nan_case *nc);
void nan_case_label(const nan_case *nc, const run_path *path, char *label, size_t size);
/* Checks nc->o and nc->lse as above. Returns 1 when they are as expected, else 0 with why. */
int nan_case_check(const nan_case *nc, char *why, size_t size);

#endif
