/*
 * The harness shared by the `padec` tool, the benchmark and the tests: the workload format
 * (bench/workloads.txt), random problem cases, and the check of an output against the oracle
 * with the tolerance rule. Host memory only; the CUDA side copies these buffers to the device.
 */
#ifndef PADEC_HARNESS_H
#define PADEC_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "padec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- workloads (workload.c) ------------------------------------------------------------------
 * One line of key=value pairs: name, q_heads, kv_heads, head_dim, page, kv (bf16|fp16|fp8),
 * window, lens (comma list, NxK = N repeated K times), q_len (default 1). Optional extensions:
 * q (bf16|fp16), o (bf16|fp16|fp32), layout (nhd|hnd), scales (none|tensor|device|token; fp8
 * defaults to tensor). */
typedef struct padec_workload {
  char name[96];
  padec_params params; /* heads, head_dim, page, dtypes, layout, q_len, window, fp8 scale mode */
  int32_t batch;
  int32_t *kv_lens; /* [batch], owned (malloc) */
} padec_workload;

/* Parses one line. Returns 0, or -1 with a message naming the key in err. Blank lines and
 * comments are errors here (the file reader skips them). */
int padec_workload_parse(const char *line, padec_workload *workload, char *err, size_t err_size);
/* Reads every workload of a file; *workloads is malloc'd. Returns 0, or -1 with err set
 * ("path:line: message"). */
int padec_workload_read_file(const char *path, padec_workload **workloads, int *count, char *err,
                             size_t err_size);
void padec_workload_free(padec_workload *workload);
void padec_workloads_free(padec_workload *workloads, int count);
/* Bytes that must move, as the workloads file defines them: attended tokens (every token some
 * query of the sequence sees) x kv_heads x head_dim x 2 (K and V) x element size. */
uint64_t padec_workload_bytes(const padec_workload *workload);

/* ---- random cases (case.c) --------------------------------------------------------------------
 * Host buffers of one problem filled with random, non-zero data: q and KV uniform in [-1, 1]
 * (fp8 caches quantised with random per-tensor or per-token scales), pages drawn at random from
 * a pool larger than needed (so page ids are scattered and not in order), per-sequence block
 * table rows with spare pages past kv_len. */
typedef struct padec_case {
  padec_params params; /* q_len resolved (0 -> 1); softmax_scale as given, 0 the library default */
  int32_t batch;
  int32_t *kv_lens;       /* [batch] */
  int32_t *page_indptr;   /* [batch + 1] */
  int32_t *page_indices;  /* [page_indptr[batch]] */
  int64_t num_pages;
  void *q;                /* packed [batch * q_len][num_q_heads][head_dim] */
  void *k_pages, *v_pages; /* 64-byte aligned pools of num_pages x kv_page_stride elements */
  int64_t kv_page_stride; /* elements from page to page: one page unless the case was built with
                             a longer stride (the gap after each page holds NaN bytes); 0 in a
                             case built elsewhere means one page */
  float *k_scales, *v_scales; /* per token [num_pages][kv_heads][page_size], or 1 float (device
                                 mode), or NULL */
  size_t q_bytes, o_bytes, pool_bytes, scales_bytes;
  int64_t num_tokens;     /* batch * q_len */
  uint64_t seed;
  /* A case that is one shard of context-parallel decode (see padec_tensors.shard_starts): [batch]
   * each, or NULL for whole sequences. padec_case_init leaves them NULL; whoever sets them keeps
   * them (padec_case_free does not free them). The tensors, the oracle, the check, the print and
   * padec_gpu_run_case all follow them. */
  const int32_t *shard_starts;
  const int32_t *seq_lens;
} padec_case;

/* Builds a case; kv_lens is copied. Returns 0, or -1 on allocation failure. */
int padec_case_init(padec_case *c, const padec_params *params, int32_t batch,
                    const int32_t *kv_lens, uint64_t seed);
/* The same, with pools of kv_page_stride elements a page (0: one page). A stride longer than a
 * page leaves a gap after each page, filled with NaN bytes, as a pool that interleaves K and V
 * per block (the other's page) or pads its pages would hold there for an executor that reads
 * the wrong place. The stride must satisfy padec_tensors.kv_page_stride's rules; -1 otherwise. */
int padec_case_init_strided(padec_case *c, const padec_params *params, int32_t batch,
                            const int32_t *kv_lens, uint64_t seed, int64_t kv_page_stride);
void padec_case_free(padec_case *c);
/* Tensors pointing at the case's host buffers (shard arrays included), with o and lse given by
 * the caller. */
padec_tensors padec_case_tensors(const padec_case *c, void *o, float *lse);
/* Fills o (o_bytes) and lse ([num_tokens * num_q_heads] floats, may be NULL) with a poison
 * pattern (NaN for float types) so that unwritten elements fail the check. */
void padec_case_poison(const padec_case *c, void *o, float *lse);

/* ---- checking (check.c) -----------------------------------------------------------------------
 * Tolerance rule: every element's error against the double oracle must be at most
 * 2 x (max error of the plain-float oracle, weights in o_dtype's 16-bit format, rounded to
 * o_dtype, over the element's output row: one query token, one head) + 2^-12 x the row's largest
 * exact value for 16-bit outputs, + 1e-5 for fp32 outputs; each LSE against 2 x the float
 * oracle's largest LSE error over the batch + 2^-20 x (1 + |lse| + ln(1 + the sequence's
 * kv_len)). NaN never passes. */
typedef struct padec_check_result {
  double max_abs_err;     /* of o against the double oracle */
  double baseline_err;    /* the largest row's max error of the float oracle (rounded to o_dtype) */
  double tolerance;       /* the largest row tolerance */
  double max_lse_err;
  double lse_tolerance;   /* the largest row LSE tolerance */
  int64_t bad_elements;   /* o elements over tolerance (NaN counts) */
  int64_t bad_lse;
  int64_t first_bad;      /* flat index of the first bad o element, -1 if none */
  int pass;
} padec_check_result;

/* Computes the oracle (cached in the case on first use is not done: each call recomputes) and
 * checks o (and lse when not NULL). Returns 0 when the check ran (see result->pass), -1 when the
 * oracle could not run. */
int padec_check_output(const padec_case *c, const void *o, const float *lse,
                       padec_check_result *result);
/* Element `index` of an output buffer of o dtype (bf16, fp16 or fp32), as a double. */
double padec_output_element(const void *o, padec_dtype dtype, size_t index);

/* Prints every field of the case's params and the result on one line, for failure reports. */
void padec_check_print(FILE *stream, const char *label, const padec_case *c,
                       const padec_check_result *result);

#ifdef __cplusplus
}
#endif
#endif /* PADEC_HARNESS_H */
