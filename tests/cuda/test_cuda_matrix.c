/*
 * The CUDA executor against the oracle, and against the CPU executor on the same plan, over a
 * matrix: every axis swept against a base case plus a seeded random sample of combinations, each
 * with forced splits (many workers, 16-token partitions) and without (one worker per KV head).
 * Outputs are poisoned on the device first; every element must meet the tolerance; two runs of
 * the same plan must give identical bytes (the second with self-resetting merge counters kept
 * across cases, which must all be zero at the end), and the merge fused into the decode kernel
 * must give the same bytes as the stand-alone merge kernel. Under the batch_invariant policy a
 * sequence's rows must not change with its neighbours or the worker count. Exit 77 where there
 * is no Hopper GPU.
 *
 * `--short` runs a small subset (for compute-sanitizer).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "harness.h"
#include "internal.h"
#include "test_support.h"

static int g_cases;
static int g_failures;

/* The pools' page stride of the cases built next (padec_tensors.kv_page_stride). */
enum pool_stride { POOLS_CONTIGUOUS, POOLS_TWO_PAGES, POOLS_PADDED };
static enum pool_stride g_pool_stride = POOLS_CONTIGUOUS;
/* Scale the first query token's bf16 rows by 2^-120 in the cases built next: the f16 MMAs'
 * power-of-two row scale would be 2^134 there (inf) without its cap. */
static int g_tiny_first_query;

/* padec_case_init with g_pool_stride: two pages apart (as a cache that keeps each block's K and
 * V side by side) or 16 bytes beyond a page, the gaps NaN. Exits on failure. */
static void init_case(padec_case *c, const padec_params *params, int32_t batch, const int32_t *lens,
                      uint64_t seed) {
  const int64_t page_elems = (int64_t)params->page_size * params->num_kv_heads * params->head_dim;
  const int64_t element_bytes = params->kv_dtype == PADEC_DTYPE_E4M3 ? 1 : 2;
  const int64_t stride = g_pool_stride == POOLS_TWO_PAGES ? 2 * page_elems
                         : g_pool_stride == POOLS_PADDED  ? page_elems + 16 / element_bytes
                                                          : 0;
  if (padec_case_init_strided(c, params, batch, lens, seed, stride) != 0) {
    fprintf(stderr, "case init failed\n");
    exit(1);
  }
  if (g_tiny_first_query && c->params.q_dtype == PADEC_DTYPE_BF16) {
    /* bf16 is a float's top half: take 120 off each nonzero element's exponent (the data's
     * elements are near 1, so they land near 2^-120, above bf16's smallest 2^-133). */
    uint16_t *q = c->q;
    for (int64_t i = 0; i < (int64_t)c->params.num_q_heads * c->params.head_dim; ++i) {
      uint32_t bits = (uint32_t)q[i] << 16;
      float value;
      memcpy(&value, &bits, sizeof value);
      value = ldexpf(value, -120);
      memcpy(&bits, &value, sizeof bits);
      q[i] = (uint16_t)(bits >> 16);
    }
  }
}

/* The CPU executor on the same options, for the partial-path comparison. */
static int run_cpu(const padec_case *c, const padec_plan_options *options, void *o, float *lse) {
  padec_plan_layout layout;
  if (padec_plan_layout_init(&c->params, c->batch, options, &layout) != PADEC_STATUS_OK) return -1;
  void *plan = test_alloc(layout.plan_bytes);
  void *workspace = test_alloc(layout.workspace_bytes);
  int rc = -1;
  if (padec_plan_build(&c->params, &layout, c->kv_lens, plan, layout.plan_bytes) == PADEC_STATUS_OK) {
    padec_tensors t = padec_case_tensors(c, o, lse);
    rc = padec_cpu_run(&c->params, &layout, plan, &t, workspace, layout.workspace_bytes) == PADEC_STATUS_OK ? 0 : -1;
  }
  free(plan);
  free(workspace);
  return rc;
}

/* GPU and CPU executors on the same schedule: each within the oracle tolerance, so within twice
 * of each other; LSE rows must agree on -inf exactly. */
static void compare_with_cpu(const char *label, const padec_case *c, const padec_check_result *result,
                             const void *o, const float *lse, const void *o_cpu, const float *lse_cpu) {
  const size_t lse_count = (size_t)c->num_tokens * (size_t)c->params.num_q_heads;
  for (size_t i = 0; i < lse_count; ++i) {
    const int both_empty = isinf(lse[i]) && isinf(lse_cpu[i]) && lse[i] < 0 && lse_cpu[i] < 0;
    if (!both_empty && !(fabsf(lse[i] - lse_cpu[i]) <= 2.0 * result->lse_tolerance + 1e-5)) {
      fprintf(stderr, "FAIL %s: lse[%zu] GPU %g CPU %g\n", label, i, (double)lse[i], (double)lse_cpu[i]);
      g_failures += 1;
      return;
    }
  }
  for (int64_t i = 0; i < (int64_t)(lse_count * (size_t)c->params.head_dim); ++i) {
    const float a = (float)padec_output_element(o, c->params.o_dtype, (size_t)i);
    const float b = (float)padec_output_element(o_cpu, c->params.o_dtype, (size_t)i);
    if (!(fabsf(a - b) <= 2.0 * result->tolerance + 1e-6)) {
      fprintf(stderr, "FAIL %s: o[%lld] GPU %g CPU %g\n", label, (long long)i, (double)a, (double)b);
      g_failures += 1;
      return;
    }
  }
}

/* The K/V pipeline depths the second runs take in turn (padec__cuda_set_pipeline_depth; 0 is
 * the launch's own pick). The depth only moves when bytes land, never what is computed, so
 * every one must give the first run's bytes. */
static const int k_pipeline_depths[] = {2, 3, 0};
static int g_second_pipeline;

/* The checks of one GPU output that need no CPU run: every element against the oracle (result
 * filled), and a second run's bytes equal to the first's. Returns 0, or -1 after reporting. */
static int check_gpu_output(const char *label, const padec_case *c, const void *o, const float *lse,
                            const void *o_again, const float *lse_again, padec_check_result *result) {
  const size_t lse_bytes = sizeof(float) * (size_t)c->num_tokens * (size_t)c->params.num_q_heads;
  if (padec_check_output(c, o, lse, result) != 0 || !result->pass) {
    fprintf(stderr, "FAIL %s: GPU output against the oracle\n", label);
    padec_check_print(stderr, label, c, result);
    g_failures += 1;
    return -1;
  }
  if (memcmp(o, o_again, c->o_bytes) != 0 || memcmp(lse, lse_again, lse_bytes) != 0) {
    fprintf(stderr, "FAIL %s: two runs differ (not deterministic; the second at pipeline depth %d)\n", label,
            k_pipeline_depths[g_second_pipeline]);
    padec_check_print(stderr, label, c, result);
    g_failures += 1;
    return -1;
  }
  return 0;
}

/* The second run of a case, whose bytes must equal the first's: with the harness's kept merge
 * counters (padec_tensors.merge_counters), which every earlier case's second run used and must
 * have left zero, where the first run had the workspace's counters and their clearing kernel;
 * and at the next pipeline depth of k_pipeline_depths, where the first run had the launch's pick. */
static int run_again_with_kept_counters(int grid, const padec_case *c, const padec_plan_options *options,
                                        int32_t num_splits, void *o, float *lse, char *err, size_t err_size) {
  g_second_pipeline = (g_second_pipeline + 1) % (int)(sizeof k_pipeline_depths / sizeof k_pipeline_depths[0]);
  padec_gpu_set_kept_counters(1);
  padec__cuda_set_pipeline_depth(k_pipeline_depths[g_second_pipeline]);
  const int rc = grid ? padec_gpu_run_case_grid(c, num_splits, 16, o, lse, err, err_size)
                      : padec_gpu_run_case(c, options, o, lse, err, err_size);
  padec__cuda_set_pipeline_depth(0);
  padec_gpu_set_kept_counters(0);
  return rc;
}

/* The grid path on the GPU: against the oracle, deterministic, and against the CPU grid path. */
static void run_grid_case(const char *label, const padec_params *params, int32_t batch,
                          const int32_t *lens, uint64_t seed, int32_t num_splits) {
  padec_case c;
  init_case(&c, params, batch, lens, seed);
  const size_t lse_count = (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  void *o = test_alloc(c.o_bytes), *o_again = test_alloc(c.o_bytes), *o_cpu = test_alloc(c.o_bytes);
  float *lse = test_alloc(sizeof(float) * lse_count + 4);
  float *lse_again = test_alloc(sizeof(float) * lse_count + 4);
  float *lse_cpu = test_alloc(sizeof(float) * lse_count + 4);
  char err[512], full_label[256];
  snprintf(full_label, sizeof full_label, "%s [grid, %d splits]", label, num_splits);
  g_cases += 1;
  padec_check_result result;
  padec_grid_layout layout;
  void *workspace = NULL;
  if (padec_gpu_run_case_grid(&c, num_splits, 16, o, lse, err, sizeof err) != 0 ||
      run_again_with_kept_counters(1, &c, NULL, num_splits, o_again, lse_again, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL %s: %s\n", full_label, err);
    g_failures += 1;
    goto done;
  }
  if (check_gpu_output(full_label, &c, o, lse, o_again, lse_again, &result) != 0) goto done;
  if (padec_grid_layout_init(&c.params, c.batch, num_splits, 16, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: grid layout: %s\n", full_label, padec_last_message());
    g_failures += 1;
    goto done;
  }
  workspace = test_alloc(layout.workspace_bytes);
  {
    padec_tensors t = padec_case_tensors(&c, o_cpu, lse_cpu);
    if (padec_cpu_run_grid(&c.params, &layout, &t, workspace, layout.workspace_bytes) != PADEC_STATUS_OK) {
      fprintf(stderr, "FAIL %s: CPU grid path: %s\n", full_label, padec_last_message());
      g_failures += 1;
      goto done;
    }
  }
  compare_with_cpu(full_label, &c, &result, o, lse, o_cpu, lse_cpu);
done:
  free(workspace);
  free(o);
  free(o_again);
  free(o_cpu);
  free(lse);
  free(lse_again);
  free(lse_cpu);
  padec_case_free(&c);
}

/* Direct: one worker a KV head, whole sequences. Split: more workers than KV heads and short
 * partitions, so that most sequences are cut. */
/* The policy of run_case's plans: `even`, except in the block of main that runs `cost`. */
static padec_policy g_policy = PADEC_POLICY_EVEN;

static padec_plan_options case_options(int32_t kv_heads, int split) {
  const padec_plan_options options = {split ? 97 * kv_heads + 3 : kv_heads, split ? 16 : 256, g_policy};
  return options;
}

/* The reduce groups of run_case's split plan for these lengths. */
static int32_t split_plan_groups(const padec_params *params, int32_t batch, const int32_t *lens) {
  const padec_plan_options options = case_options(params->num_kv_heads, 1);
  padec_plan_layout layout;
  if (padec_plan_layout_init(params, batch, &options, &layout) != PADEC_STATUS_OK) return -1;
  void *plan = test_alloc(layout.plan_bytes);
  padec_plan_view view;
  int32_t groups = -1;
  if (padec_plan_build(params, &layout, lens, plan, layout.plan_bytes) == PADEC_STATUS_OK &&
      padec_plan_view_init(&layout, plan, &view) == PADEC_STATUS_OK)
    groups = view.header->num_groups;
  free(plan);
  return groups;
}

static void run_case(const char *label, const padec_params *params, int32_t batch,
                     const int32_t *lens, uint64_t seed, int split) {
  padec_case c;
  init_case(&c, params, batch, lens, seed);
  const padec_plan_options options = case_options(c.params.num_kv_heads, split);
  const size_t lse_count = (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  void *o = test_alloc(c.o_bytes), *o_again = test_alloc(c.o_bytes), *o_cpu = test_alloc(c.o_bytes);
  float *lse = test_alloc(sizeof(float) * lse_count + 4);
  float *lse_again = test_alloc(sizeof(float) * lse_count + 4);
  float *lse_cpu = test_alloc(sizeof(float) * lse_count + 4);
  char err[512];
  char full_label[256];
  snprintf(full_label, sizeof full_label, "%s%s", label, split ? " [split]" : " [direct]");
  g_cases += 1;
  if (padec_gpu_run_case(&c, &options, o, lse, err, sizeof err) != 0 ||
      run_again_with_kept_counters(0, &c, &options, 0, o_again, lse_again, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL %s: %s\n", full_label, err);
    padec_check_print(stderr, full_label, &c, NULL);
    g_failures += 1;
    goto done;
  }
  if (split) {
    padec__cuda_set_separate_merge(1);
    const int rc = padec_gpu_run_case(&c, &options, o_cpu, lse_cpu, err, sizeof err);
    padec__cuda_set_separate_merge(0);
    if (rc != 0 || memcmp(o, o_cpu, c.o_bytes) != 0 || memcmp(lse, lse_cpu, sizeof(float) * lse_count) != 0) {
      fprintf(stderr, "FAIL %s: the stand-alone merge kernel differs from the fused merge %s\n", full_label,
              rc ? err : "");
      padec_check_print(stderr, full_label, &c, NULL);
      g_failures += 1;
      goto done;
    }
  }
  padec_check_result result;
  if (check_gpu_output(full_label, &c, o, lse, o_again, lse_again, &result) != 0) goto done;
  if (run_cpu(&c, &options, o_cpu, lse_cpu) != 0) {
    fprintf(stderr, "FAIL %s: CPU executor: %s\n", full_label, padec_last_message());
    g_failures += 1;
    goto done;
  }
  compare_with_cpu(full_label, &c, &result, o, lse, o_cpu, lse_cpu);
done:
  free(o);
  free(o_again);
  free(o_cpu);
  free(lse);
  free(lse_again);
  free(lse_cpu);
  padec_case_free(&c);
}

static padec_params base_params(void) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = 16;
  p.kv_dtype = PADEC_DTYPE_BF16;
  p.q_dtype = PADEC_DTYPE_BF16;
  p.o_dtype = PADEC_DTYPE_BF16;
  p.q_len = 1;
  return p;
}

static void both(const char *label, const padec_params *p, int32_t batch, const int32_t *lens, uint64_t seed) {
  run_case(label, p, batch, lens, seed, 0);
  run_case(label, p, batch, lens, seed + 1, 1);
  /* Split counts 1 (direct writes) to 9, varying with the case. */
  run_grid_case(label, p, batch, lens, seed + 2, 1 + (int32_t)((seed * 7) % 9));
}

static uint64_t rng_state = 0x1234567887654321ull;
static uint32_t next_random(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

/* batch_invariant on the GPU: the rows of sequence 0 must stay bitwise the same when the other
 * sequences shrink or empty out (same pool, same data) and under any worker count. */
static void check_batch_invariance(const padec_params *params, uint64_t seed) {
  const int32_t lens[] = {9000, 3000, 700, 12000, 40, 5000};
  padec_case c;
  if (padec_case_init(&c, params, 6, lens, seed) != 0) {
    fprintf(stderr, "case init failed\n");
    exit(1);
  }
  const size_t row_elems = (size_t)c.params.num_q_heads * (size_t)c.params.head_dim;
  const size_t target_bytes = (size_t)c.params.q_len * row_elems * (c.params.o_dtype == PADEC_DTYPE_FP32 ? 4 : 2);
  const size_t lse_count = (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  void *o = test_alloc(c.o_bytes), *first_o = test_alloc(target_bytes);
  float *lse = test_alloc(sizeof(float) * lse_count + 4);
  float *first_lse = test_alloc(sizeof(float) * (size_t)c.params.q_len * (size_t)c.params.num_q_heads);
  const int32_t worker_choices[] = {1, 7, 64, 264, 1000};
  int32_t original[6];
  memcpy(original, c.kv_lens, sizeof original);
  char err[512];
  g_cases += 1;
  for (int trial = 0; trial < 12; ++trial) {
    for (int b = 1; b < 6; ++b) c.kv_lens[b] = trial == 0 ? original[b] : (int32_t)(next_random() % (uint32_t)(original[b] + 1));
    padec_plan_options options = {worker_choices[trial % 5], 256, PADEC_POLICY_BATCH_INVARIANT};
    if (padec_gpu_run_case(&c, &options, o, lse, err, sizeof err) != 0) {
      fprintf(stderr, "FAIL batch invariance: %s\n", err);
      g_failures += 1;
      break;
    }
    if (trial == 0) {
      /* The invariant output must also be the right one. */
      padec_check_result result;
      if (padec_check_output(&c, o, lse, &result) != 0 || !result.pass) {
        fprintf(stderr, "FAIL batch invariance: the output against the oracle\n");
        padec_check_print(stderr, "batch invariance", &c, &result);
        g_failures += 1;
        break;
      }
      memcpy(first_o, o, target_bytes);
      memcpy(first_lse, lse, sizeof(float) * (size_t)c.params.q_len * (size_t)c.params.num_q_heads);
    } else if (memcmp(first_o, o, target_bytes) != 0 ||
               memcmp(first_lse, lse, sizeof(float) * (size_t)c.params.q_len * (size_t)c.params.num_q_heads) != 0) {
      fprintf(stderr, "FAIL batch invariance: sequence 0 changed in trial %d (workers %d)\n", trial,
              options.num_workers);
      padec_check_print(stderr, "batch invariance", &c, NULL);
      g_failures += 1;
      break;
    }
  }
  memcpy(c.kv_lens, original, sizeof original);
  free(o);
  free(first_o);
  free(lse);
  free(first_lse);
  padec_case_free(&c);
}

int main(int argc, char **argv) {
  const int short_run = argc > 1 && strcmp(argv[1], "--short") == 0;
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  const int32_t lens[] = {1, 0, 37, 300, 1000, 17, 2049, 4};
  const int32_t batch = 8;
  padec_params p = base_params();
  both("base", &p, batch, lens, 1);
  {
    padec_params q = p;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    both("e4m3 per-tensor", &q, batch, lens, 11);
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    both("e4m3 per-token", &q, batch, lens, 13);
    /* fp8 rows of 64 bytes in a 128-byte shared-memory pitch: the copy geometry no other case of
     * the short subset has, so that the sanitizers see it too. */
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    q.head_dim = 64;
    both("e4m3 per-tensor, head_dim 64", &q, batch, lens, 17);
  }
  /* Plans of the cost policy (a split plan's long sequences cut in unequal pieces, spare workers
   * with direct items). */
  {
    g_policy = PADEC_POLICY_COST;
    const int32_t skewed[] = {20000, 3, 40, 700, 0, 5};
    both("cost", &p, 6, skewed, 30);
    padec_params q = p;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    q.q_len = 3;
    both("cost, e4m3 per-token, q_len 3", &q, batch, lens, 33);
    g_policy = PADEC_POLICY_EVEN;
  }
  /* Strided pools: the kernel's page offsets from padec_tensors.kv_page_stride, on both layouts,
   * both copy paths of fp8 and small and large pages. */
  {
    g_pool_stride = POOLS_TWO_PAGES;
    both("pools two pages apart", &p, batch, lens, 35);
    padec_params q = p;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    q.kv_layout = PADEC_LAYOUT_HND;
    both("pools two pages apart, e4m3 HND", &q, batch, lens, 36);
    g_pool_stride = POOLS_PADDED;
    both("pools padded, e4m3 HND", &q, batch, lens, 37);
    q.kv_layout = PADEC_LAYOUT_NHD;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    q.page_size = 1;
    q.q_len = 2;
    both("pools padded, e4m3 per-token, page 1", &q, batch, lens, 38);
    q = p;
    q.head_dim = 256;
    q.page_size = 1024;
    q.window_left = 300;
    both("pools padded, head_dim 256, page 1024", &q, batch, lens, 39);
    g_pool_stride = POOLS_CONTIGUOUS;
  }
  /* A query token whose rows are all below 2^-113 (bf16 with an f16-MMA cache): its scores are
   * 0 to f32, so it weighs V evenly; the row scale must not overflow to inf (NaN rows). */
  {
    g_tiny_first_query = 1;
    padec_params q = p;
    q.kv_dtype = PADEC_DTYPE_FP16;
    both("tiny first query, fp16 cache", &q, batch, lens, 41);
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    both("tiny first query, e4m3 cache", &q, batch, lens, 42);
    g_tiny_first_query = 0;
  }
  /* More reduce groups than a warp has lanes: the fused merge's group search takes a second
   * round and its slot range comes from loads (up to 32 groups, from the first round's). Every
   * seventh sequence is empty (no group). */
  enum { kManyGroups = 70 };
  int32_t many_lens[kManyGroups];
  for (int b = 0; b < kManyGroups; ++b) many_lens[b] = b % 7 == 3 ? 0 : 100 + (int32_t)(next_random() % 700);
  both("many groups", &p, kManyGroups, many_lens, 400);
  const int32_t many_groups = split_plan_groups(&p, kManyGroups, many_lens);
  if (many_groups <= 32) {
    fprintf(stderr, "FAIL many groups: the split plan has %d reduce groups, not more than 32\n", many_groups);
    g_failures += 1;
  }
  if (!short_run) {
    padec_params q = p;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
    q.q_len = 3;
    both("many groups, e4m3, q_len 3", &q, 40, many_lens, 401);
  }
  if (!short_run) {
    /* Peaked softmax: with these scales the scores of the test data spread over tens of
     * binades (base-2 sigma about 11 at scale 2, 44 at 8), so a warp's rows move their reference
     * max past the lazy rescale's margin (2^8) again and again along a sequence, by up to about
     * 100 binades; on the bf16 instance and the f16 ones with and without P's low part, one and
     * two n-tiles, head_dim 64 to 256, q_len 2 and a window. The last case's scores are of the
     * order of 2^29 (one token takes the whole weight); it does not construct the rounding
     * case the margin test's difference avoids (a tile max one float step above the
     * reference, at scores near 2^27). */
    const struct {
      float scale;
      padec_dtype kv, o;
      padec_fp8_scale_mode mode;
      int32_t head_dim, group, q_len, window;
      const char *label;
    } peaked[] = {
        {2.0f, PADEC_DTYPE_BF16, PADEC_DTYPE_BF16, PADEC_FP8_SCALE_NONE, 128, 4, 1, 0, "peaked softmax 2"},
        {8.0f, PADEC_DTYPE_E4M3, PADEC_DTYPE_BF16, PADEC_FP8_SCALE_PER_TENSOR, 128, 4, 1, 0,
         "peaked softmax 8, e4m3"},
        {2.0f, PADEC_DTYPE_E4M3, PADEC_DTYPE_FP32, PADEC_FP8_SCALE_PER_TOKEN, 128, 4, 1, 0,
         "peaked softmax 2, e4m3 per-token, o fp32"},
        {8.0f, PADEC_DTYPE_FP16, PADEC_DTYPE_FP16, PADEC_FP8_SCALE_NONE, 128, 4, 1, 0,
         "peaked softmax 8, fp16 kv and o"},
        {4.0f, PADEC_DTYPE_FP16, PADEC_DTYPE_BF16, PADEC_FP8_SCALE_NONE, 64, 4, 1, 0,
         "peaked softmax 4, fp16 kv, head_dim 64"},
        {4.0f, PADEC_DTYPE_E4M3, PADEC_DTYPE_FP16, PADEC_FP8_SCALE_PER_TENSOR, 128, 16, 1, 0,
         "peaked softmax 4, e4m3, o fp16, 16 rows"},
        {8.0f, PADEC_DTYPE_E4M3, PADEC_DTYPE_BF16, PADEC_FP8_SCALE_PER_TOKEN, 256, 4, 2, 500,
         "peaked softmax 8, e4m3 per-token, head_dim 256, q_len 2, window"},
        {1e8f, PADEC_DTYPE_FP16, PADEC_DTYPE_FP16, PADEC_FP8_SCALE_NONE, 128, 4, 1, 0,
         "peaked softmax 1e8, fp16 kv and o"},
    };
    for (int i = 0; i < (int)(sizeof peaked / sizeof peaked[0]); ++i) {
      padec_params q = p;
      q.softmax_scale = peaked[i].scale;
      q.kv_dtype = peaked[i].kv;
      q.o_dtype = peaked[i].o;
      q.fp8_scale_mode = peaked[i].mode;
      q.head_dim = peaked[i].head_dim;
      q.num_kv_heads = 2;
      q.num_q_heads = 2 * peaked[i].group;
      q.q_len = peaked[i].q_len;
      q.window_left = peaked[i].window;
      both(peaked[i].label, &q, batch, lens, 190 + (uint64_t)i);
    }
  }
  if (!short_run) {
    padec_params q = p;
    q.fp8_scale_mode = PADEC_FP8_SCALE_NONE;
    q.kv_dtype = PADEC_DTYPE_FP16;
    both("fp16 kv", &q, batch, lens, 21);
    q.q_dtype = PADEC_DTYPE_FP16;
    both("fp16 q and kv", &q, batch, lens, 22);
    q = p;
    q.q_dtype = PADEC_DTYPE_FP16;
    both("fp16 q, bf16 kv", &q, batch, lens, 23);
    q = p;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
    both("e4m3 device scales", &q, batch, lens, 24);
    q.fp8_scale_mode = PADEC_FP8_SCALE_NONE;
    both("e4m3 unscaled", &q, batch, lens, 25);
    const padec_dtype outs[] = {PADEC_DTYPE_FP16, PADEC_DTYPE_FP32};
    for (int i = 0; i < 2; ++i) {
      q = p;
      q.o_dtype = outs[i];
      both("o dtype", &q, batch, lens, 30 + (uint64_t)i);
    }
    q = p;
    q.kv_layout = PADEC_LAYOUT_HND;
    both("HND", &q, batch, lens, 40);
    const int32_t pages[] = {1, 2, 32, 64, 128, 1024};
    for (int i = 0; i < 6; ++i) {
      q = p;
      q.page_size = pages[i];
      both("page size", &q, batch, lens, 50 + (uint64_t)i);
    }
    const int32_t dims[] = {64, 256};
    for (int i = 0; i < 2; ++i)
      for (int kv = 0; kv < 2; ++kv) {
        q = p;
        q.head_dim = dims[i];
        if (kv) {
          q.kv_dtype = PADEC_DTYPE_E4M3;
          q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
        }
        both("head dim", &q, batch, lens, 60 + (uint64_t)(2 * i + kv));
      }
    const int32_t groups[] = {1, 4, 5, 8, 16};
    for (int i = 0; i < 5; ++i)
      for (int ql = 1; ql <= 4; ++ql) {
        q = p;
        q.num_kv_heads = 2;
        q.num_q_heads = 2 * groups[i];
        q.q_len = ql;
        both("group x q_len", &q, batch, lens, 70 + (uint64_t)(10 * i + ql));
      }
    const int32_t windows[] = {1, 7, 100, 5000};
    for (int i = 0; i < 4; ++i) {
      q = p;
      q.window_left = windows[i];
      q.q_len = 1 + i % 4;
      both("window", &q, batch, lens, 120 + (uint64_t)i);
    }
    /* The most query rows a KV head may have (64: passes of 16 rows), and the largest window,
     * whose position arithmetic must not wrap in 32 bits. */
    const int32_t wide[3][2] = {{32, 1}, {32, 2}, {64, 1}};
    for (int i = 0; i < 3; ++i) {
      q = p;
      q.num_kv_heads = 2;
      q.num_q_heads = 2 * wide[i][0];
      q.q_len = wide[i][1];
      both("wide group", &q, batch, lens, 130 + (uint64_t)i);
    }
    q = p;
    q.window_left = INT32_MAX;
    q.q_len = 4;
    both("window INT32_MAX", &q, batch, lens, 135);
    /* Promised combinations the cases above leave out: per-token fp8 at head_dim 64 with two
     * n-tiles of rows, fp16 caches in HND at head_dim 64 and 128, device scales in HND at
     * head_dim 64, many KV heads, and grid merges of more than 64 slots (the fused merge's
     * loop over slot batches; partitions of 16 tokens give up to 129 splits here). */
    q = p;
    q.head_dim = 64;
    q.num_q_heads = 2 * 16;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    both("e4m3 per-token, head_dim 64, 16 rows", &q, batch, lens, 136);
    for (int i = 0; i < 2; ++i) {
      q = p;
      q.kv_dtype = PADEC_DTYPE_FP16;
      q.kv_layout = PADEC_LAYOUT_HND;
      q.head_dim = i ? 128 : 64;
      both("fp16 HND", &q, batch, lens, 137 + (uint64_t)i);
    }
    q = p;
    q.head_dim = 64;
    q.kv_layout = PADEC_LAYOUT_HND;
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR_DEVICE;
    both("e4m3 device scales, HND, head_dim 64", &q, batch, lens, 139);
    q = p;
    q.num_kv_heads = 32;
    q.num_q_heads = 64;
    both("32 KV heads", &q, batch, lens, 140);
    run_grid_case("grid, many splits", &p, batch, lens, 141, 100);
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    run_grid_case("grid, many splits, 32 KV heads, e4m3 per-token", &q, batch, lens, 142, 70);
    /* fp8 with per-tensor scales at head_dim 128 (the benchmark's fp8 instance) across both
     * layouts, small and large pages, with and without a window. */
    const int32_t fp8_pages[] = {16, 32, 1024};
    for (int i = 0; i < 3; ++i)
      for (int layout = 0; layout < 2; ++layout)
        for (int windowed = 0; windowed < 2; ++windowed) {
          q = p;
          q.head_dim = 128;
          q.kv_dtype = PADEC_DTYPE_E4M3;
          q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TENSOR;
          q.page_size = fp8_pages[i];
          q.kv_layout = layout ? PADEC_LAYOUT_HND : PADEC_LAYOUT_NHD;
          q.window_left = windowed ? 100 : 0;
          both("fp8 per-tensor", &q, batch, lens, 140 + (uint64_t)(4 * i + 2 * layout + windowed));
        }
    /* Random combinations. */
    for (int i = 0; i < 40; ++i) {
      q = base_params();
      const padec_dtype kvs[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3};
      q.kv_dtype = kvs[next_random() % 3];
      if (q.kv_dtype == PADEC_DTYPE_E4M3) q.fp8_scale_mode = (padec_fp8_scale_mode)(1 + next_random() % 3);
      q.q_dtype = next_random() % 2 ? PADEC_DTYPE_BF16 : PADEC_DTYPE_FP16;
      q.o_dtype = (padec_dtype)(next_random() % 3);
      q.kv_layout = (padec_layout)(next_random() % 2);
      q.page_size = 1 << (next_random() % 11);
      q.head_dim = 64 << (next_random() % 3);
      q.num_kv_heads = 1 + (int32_t)(next_random() % 3);
      q.q_len = 1 + (int32_t)(next_random() % 4);
      q.num_q_heads = q.num_kv_heads * (1 + (int32_t)(next_random() % (64 / q.q_len)) % 16);
      q.window_left = next_random() % 3 == 0 ? (int32_t)(next_random() % 600) : 0;
      int32_t random_lens[6];
      for (int b = 0; b < 6; ++b) random_lens[b] = (int32_t)(next_random() % 3000);
      /* Every fifth with strided pools. */
      g_pool_stride = i % 5 != 2 ? POOLS_CONTIGUOUS : i % 2 ? POOLS_TWO_PAGES : POOLS_PADDED;
      both("random", &q, 6, random_lens, 200 + (uint64_t)i);
    }
    g_pool_stride = POOLS_CONTIGUOUS;
  }
  {
    padec_params q = base_params();
    q.q_len = 2;
    check_batch_invariance(&q, 300);
    q.kv_dtype = PADEC_DTYPE_E4M3;
    q.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
    q.o_dtype = PADEC_DTYPE_FP32;
    check_batch_invariance(&q, 301);
  }
  {
    char err[512];
    const int zero = padec_gpu_kept_counters_zero(err, sizeof err);
    if (zero != 1) {
      fprintf(stderr, "FAIL: the kept merge counters are not all zero after the last run%s%s\n",
              zero < 0 ? ": " : "", zero < 0 ? err : "");
      g_failures += 1;
    }
  }
  printf("%d GPU cases, %d failures\n", g_cases, g_failures);
  return g_failures ? 1 : 0;
}
