/*
 * Context-parallel test cases: a random batch (a harness case) split by position into R shards,
 * each shard a harness case of its own that the executors, the oracle and the check take as they
 * are. Used by tests/cpu/test_shard.c and tests/cuda/test_cuda_shard.c.
 *
 * Sequence b of seq_len L is cut at R - 1 random points (some shards empty, cuts on page,
 * partition, query and window edges); shard r holds positions [bounds[r], bounds[r + 1]). Its
 * block-table row is one of:
 *   reused  the whole sequence's pages covering its range (possible when the start is page
 *           aligned; sometimes the rest of the whole row follows as spare pages, which then hold
 *           later shards' tokens);
 *   copied  its own copy of its tokens (and per-token scales) in fresh pages of the pool, placed
 *           from slot 0, plus up to 2 spare fresh pages; every byte of a fresh page that no token
 *           covers is 0xff (NaN in bf16, fp16, e4m3 and the fp32 scales);
 *   empty   kv_len 0, with no page or one spare page.
 * All shards read one pool: the whole case's pages first, then the fresh pages in scattered
 * order.
 */
#ifndef PADEC_TEST_SHARD_CASE_H
#define PADEC_TEST_SHARD_CASE_H

#include <stdint.h>
#include <stdio.h>

#include "harness.h"

enum { SHARD_TABLE_EMPTY = 0, SHARD_TABLE_REUSED = 1, SHARD_TABLE_COPIED = 2 };

typedef struct shard_case {
  /* The unsharded batch; whole.params.o_dtype is the dtype of the merged output. */
  padec_case whole;
  int32_t num_shards;
  /* [batch][num_shards + 1]: shard r of sequence b holds positions
   * [bounds[b * (R + 1) + r], bounds[b * (R + 1) + r + 1]). */
  int32_t *bounds;
  /* [num_shards] views, never padec_case_free them: whole's params with o_dtype FP32, whole's q,
   * the pool below, their own kv_lens, block tables, shard_starts, and seq_lens = whole's
   * kv_lens. */
  padec_case *shards;
  padec_plan_options *options; /* [num_shards]: each shard's own plan options */
  int32_t *grid_splits;        /* [num_shards]: > 0: shard_case_run_cpu runs the grid path with
                                  this many splits (and options' partition size) instead */
  int32_t *table_kind;         /* [num_shards][batch]: SHARD_TABLE_* */
  /* The pool every shard reads (whole's pages, then fresh ones) and its per-token scales. */
  void *k_pages, *v_pages;
  float *k_scales, *v_scales;
  int64_t num_pages;
  /* Owned arrays behind the views: [num_shards][batch] each, and the block tables. */
  int32_t *kv_lens, *shard_starts, *seq_lens;
  int32_t *page_indptr; /* [num_shards][batch + 1] */
  int32_t *page_indices;
} shard_case;

/* Builds the whole case (padec_case_init with seed), the cuts, the tables and random per-shard
 * options (worker counts 1..300 and forced splits, partitions 16..1024, the even, batch-invariant
 * and cost policies; one shard in four on the grid path for the CPU), all drawn from seed. Returns 0, or -1 on a bad argument or an
 * allocation failure. */
int shard_case_init(shard_case *sc, const padec_params *params, int32_t batch,
                    const int32_t *seq_lens, int32_t num_shards, uint64_t seed);

/* shard_case_init with random params (every dtype, scale mode, layout, head_dim, group, page
 * size, q_len and window the library takes) and a random batch of 1..8 sequences (empty ones,
 * ones shorter than R and than q_len, long ones). token_budget bounds the batch's work: the
 * total length times num_q_heads x q_len x head_dim / 64 stays near it. */
int shard_case_random(shard_case *sc, int32_t num_shards, int32_t token_budget, uint64_t seed);

void shard_case_free(shard_case *sc);

/* Elements of one shard's o ([rows][num_q_heads][head_dim]) and lse ([rows][num_q_heads]). */
size_t shard_case_o_elems(const shard_case *sc);
size_t shard_case_lse_elems(const shard_case *sc);

/* Builds shard r's plan with its options (padec_plan_build_shard) into a new 64-byte aligned
 * buffer (*plan, free it). Returns the library's status. */
padec_status shard_case_plan(const shard_case *sc, int32_t r, padec_plan_layout *layout,
                             void **plan);

/* Shard r on the CPU executor: its plan, then padec_cpu_run into o and lse (fp32, one shard's
 * elements each), or padec_cpu_run_grid where grid_splits[r] > 0. Returns the library's status. */
padec_status shard_case_run_cpu(const shard_case *sc, int32_t r, float *o, float *lse);

/* Merge tensors over stacked shard results ([R] x one shard's elements) into o and lse (packed). */
padec_shard_merge_tensors shard_case_merge_tensors(const shard_case *sc, const float *shard_o,
                                                   const float *shard_lse, void *o, float *lse);

/* Prints the whole case (padec_check_print), then each sequence's cuts and table kinds and each
 * shard's options: everything needed to reproduce a failure. */
void shard_case_print(FILE *stream, const char *label, const shard_case *sc);

#endif /* PADEC_TEST_SHARD_CASE_H */
