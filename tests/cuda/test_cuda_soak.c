/*
 * Soak: thousands of random plans on the GPU against the CPU executor on the same plan. Each
 * case draws its shape (head_dim, KV heads, group, q_len), dtypes (q, KV with every fp8 scale
 * mode, o), page size (1 to 1024), layout, window, softmax scale, batch and lengths (empty,
 * shorter than q_len, on and off page and partition boundaries, skewed), worker count (1, fewer
 * than the KV heads, not a multiple of them, the recommended count, thousands) and partition size
 * (16 to 16384 tokens). The GPU output (padec_gpu_run_case) and the CPU output (padec_cpu_run)
 * must each pass padec_check_output against the oracle, and agree with each other within twice
 * the tolerance (LSE -inf exactly where the other is -inf). Every case is reproducible from the
 * seed and its index, which a failure prints.
 *
 * Usage: test_cuda_soak [--count N] [--seconds S] [--seed S] [--threads T] [--case I]
 *                       [--cpu-only]
 *   --count N    cases to run (default 400); --seconds S: stop after S seconds (default 120),
 *                whichever comes first
 *   --seed S     base seed (default 1); case i uses seed S and index i
 *   --threads T  host threads preparing, checking and launching cases (default: the CPU count,
 *                at most 16)
 *   --case I     run case I only, printing it
 *   --cpu-only   no GPU: the CPU executor against the oracle alone (to check the generator on a
 *                machine without a GPU); without it, no Hopper GPU means exit 77
 * The last line reports the count: "test_cuda_soak: N cases, M mismatches ...".
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpu.h"
#include "harness.h"
#include "test_support.h"

enum { MAX_BATCH = 24 };
/* KV elements times query rows a case may touch: sum(kv_len) x q_len x num_q_heads x head_dim.
 * Each case runs the oracle four times (double and float, for each executor's check) and the CPU
 * executor once, so this bounds the host time per case (tens of milliseconds). */
#define WORK_BUDGET 6000000.0

typedef struct soak_case {
  padec_params params;
  int32_t batch;
  int32_t kv_lens[MAX_BATCH];
  padec_plan_options options;
  int32_t grid_splits; /* > 0: the grid path with this many splits; 0: a plan with options */
  uint64_t seed;
} soak_case;

typedef struct stats {
  int64_t cases, failed_cases, bad_elements, bad_lse;
  int64_t fp8, per_token, hnd, windowed, few_workers, split_plans, page1, page1024, q_len4;
  int64_t head_dim256, empty_sequences, group16, huge_windows;
  int64_t batch_invariant, cost, grid;
} stats;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_next_index;
static int64_t g_count = 400;
static double g_seconds = 120.0;
static double g_start;
static uint64_t g_base_seed = 1;
static int g_cpu_only;
static stats g_stats;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t next_random(uint64_t *state) { return test_splitmix64(state); }

static int32_t below(uint64_t *state, int32_t bound) {
  return (int32_t)(next_random(state) % (uint64_t)bound);
}

static double unit(uint64_t *state) { return (double)(next_random(state) >> 11) * 0x1p-53; }

/* Roughly log-uniform in [0, hi]. */
static int32_t log_uniform(uint64_t *state, int32_t hi) {
  const double x = exp(unit(state) * log((double)hi + 1.0)) - 1.0;
  return (int32_t)(x < hi ? x : hi);
}

static void generate(int64_t index, soak_case *s) {
  memset(s, 0, sizeof *s);
  uint64_t state = g_base_seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)index * 0xd1342543de82ef95ull;
  next_random(&state);
  padec_params *p = &s->params;
  static const int32_t dims[] = {64, 128, 256};
  static const int32_t kv_heads[] = {1, 1, 2, 2, 3, 4, 8};
  p->head_dim = dims[below(&state, 3)];
  p->num_kv_heads = kv_heads[below(&state, 7)];
  p->q_len = 1 + below(&state, 4);
  int32_t group = below(&state, 4) == 0 ? 16 : 1 + below(&state, 16);
  while (group * p->q_len > 64) group /= 2;
  p->num_q_heads = p->num_kv_heads * group;
  p->page_size = 1 << below(&state, 11);
  p->kv_layout = below(&state, 2) ? PADEC_LAYOUT_HND : PADEC_LAYOUT_NHD;
  p->q_dtype = below(&state, 2) ? PADEC_DTYPE_FP16 : PADEC_DTYPE_BF16;
  static const padec_dtype outs[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_FP32};
  p->o_dtype = outs[below(&state, 3)];
  static const padec_dtype kvs[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3,
                                    PADEC_DTYPE_E4M3};
  p->kv_dtype = kvs[below(&state, 4)];
  if (p->kv_dtype == PADEC_DTYPE_E4M3) {
    p->fp8_scale_mode = (padec_fp8_scale_mode)below(&state, 4);
    p->k_scale = p->v_scale = 1.0f; /* the case draws the real per-tensor scales */
  }
  if (below(&state, 4) == 0) p->softmax_scale = (float)(0.02 + 0.3 * unit(&state));

  /* Lengths: a mix of shapes; the window is drawn against them. */
  s->batch = 1 + log_uniform(&state, MAX_BATCH - 1);
  const int32_t shape = below(&state, 6);
  const int32_t longest = 1 + log_uniform(&state, 20000);
  for (int32_t b = 0; b < s->batch; ++b) {
    int32_t len;
    switch (shape) {
      case 0: len = below(&state, longest + 1); break;           /* uniform */
      case 1: len = b == 0 ? longest : below(&state, 64); break; /* one long, many short */
      case 2: len = longest; break;                              /* all equal */
      case 3: len = below(&state, 5); break;                     /* 0..4: around q_len */
      case 4: len = (1 + below(&state, 8)) * p->page_size + below(&state, 3) - 1; break;
      default: len = log_uniform(&state, longest); break;
    }
    s->kv_lens[b] = len < 0 ? 0 : len;
  }
  /* Windows: a few tokens, up to the longest sequence, or near INT32_MAX (a "no limit"
   * sentinel some callers pass), where window arithmetic in 32 bits overflows. */
  const int32_t window_kind = below(&state, 6);
  p->window_left = window_kind == 0   ? 1 + below(&state, 16)
                   : window_kind == 1 ? 1 + log_uniform(&state, longest)
                   : window_kind == 2 ? INT32_MAX - below(&state, 4)
                                      : 0;

  /* Keep the host work bounded: scale long batches down (shapes and ratios stay). */
  double work = 0.0;
  for (int32_t b = 0; b < s->batch; ++b) work += (double)s->kv_lens[b];
  work *= (double)p->q_len * p->num_q_heads * p->head_dim;
  if (work > WORK_BUDGET) {
    const double factor = WORK_BUDGET / work;
    for (int32_t b = 0; b < s->batch; ++b) s->kv_lens[b] = (int32_t)(s->kv_lens[b] * factor);
  }

  /* Plan options. */
  const int32_t heads = p->num_kv_heads;
  switch (below(&state, 7)) {
    case 0: s->options.num_workers = 1; break;
    case 1: s->options.num_workers = heads > 1 ? 1 + below(&state, heads - 1) : 1; break;
    case 2: s->options.num_workers = heads * (1 + below(&state, 64)); break;
    case 3:
      s->options.num_workers = heads * (1 + below(&state, 64)) + 1 + below(&state, heads);
      break;
    case 4: s->options.num_workers = 1 + log_uniform(&state, 4000); break;
    default:
      s->options.num_workers = -1;
      break; /* the GPU's recommended count, when there is one */
  }
  /* Mostly small partitions, so that short (budget-scaled) sequences still split. */
  const int32_t partition_kind = below(&state, 4);
  s->options.partition_tokens = partition_kind == 0   ? 0
                                : partition_kind == 1 ? 16 << below(&state, 11)
                                                      : 16 << below(&state, 3);
  /* Paths and policies: the persistent kernel under each host policy, and the grid path. */
  const int32_t path = below(&state, 8);
  s->options.policy = path == 5   ? PADEC_POLICY_BATCH_INVARIANT
                      : path == 4 ? PADEC_POLICY_COST
                                  : PADEC_POLICY_EVEN;
  s->grid_splits = path >= 6 ? 1 + log_uniform(&state, 64) : 0;
  s->seed = next_random(&state);
}

static int run_cpu_grid(const padec_case *c, int32_t splits, int32_t partition_tokens, void *o,
                        float *lse) {
  padec_grid_layout layout;
  if (padec_grid_layout_init(&c->params, c->batch, splits, partition_tokens, &layout) != PADEC_STATUS_OK)
    return -1;
  void *workspace = test_alloc(layout.workspace_bytes);
  padec_tensors t = padec_case_tensors(c, o, lse);
  const padec_status status = padec_cpu_run_grid(&c->params, &layout, &t, workspace, layout.workspace_bytes);
  free(workspace);
  return status == PADEC_STATUS_OK ? 0 : -1;
}

static int run_cpu(const padec_case *c, const padec_plan_options *options, void *o, float *lse,
                   int *split) {
  padec_plan_layout layout;
  if (padec_plan_layout_init(&c->params, c->batch, options, &layout) != PADEC_STATUS_OK) return -1;
  void *plan = test_alloc(layout.plan_bytes);
  void *workspace = test_alloc(layout.workspace_bytes);
  int rc = -1;
  if (padec_plan_build(&c->params, &layout, c->kv_lens, plan, layout.plan_bytes) ==
      PADEC_STATUS_OK) {
    *split = ((const padec_plan_header *)plan)->num_groups > 0;
    padec_tensors t = padec_case_tensors(c, o, lse);
    rc = padec_cpu_run(&c->params, &layout, plan, &t, workspace, layout.workspace_bytes) ==
                 PADEC_STATUS_OK
             ? 0
             : -1;
  }
  free(plan);
  free(workspace);
  return rc;
}

static void report(int64_t index, const padec_case *c, const padec_plan_options *options,
                   const char *what, const padec_check_result *result) {
  char label[768];
  snprintf(label, sizeof label,
           "FAIL soak case %" PRId64 " (--seed %" PRIu64 " --case %" PRId64
           ", workers %d, partition %d): %s",
           index, g_base_seed, index, options->num_workers, options->partition_tokens, what);
  padec_check_print(stderr, label, c, result);
}

/* Runs case index; returns its bad element count (o and lse, GPU and CPU), -1 on a hard error. */
static int64_t run_one(int64_t index, stats *local, int verbose) {
  soak_case s;
  generate(index, &s);
  padec_case c;
  if (padec_case_init(&c, &s.params, s.batch, s.kv_lens, s.seed) != 0) {
    fprintf(stderr, "soak case %" PRId64 ": case init failed\n", index);
    return -1;
  }
  padec_plan_options options = s.options;
  if (options.num_workers < 0) {
    options.num_workers = g_cpu_only ? 0 : padec_gpu_default_workers(&c.params);
    if (options.num_workers <= 0) options.num_workers = 132;
  }
  if (verbose) {
    char label[96];
    snprintf(label, sizeof label, "soak case %" PRId64 " (workers %d, partition %d)", index,
             options.num_workers, options.partition_tokens);
    padec_check_print(stdout, label, &c, NULL);
  }
  const size_t rows = (size_t)c.num_tokens * (size_t)c.params.num_q_heads;
  void *o_gpu = test_alloc(c.o_bytes), *o_cpu = test_alloc(c.o_bytes);
  float *lse_gpu = test_alloc(sizeof(float) * rows),
        *lse_cpu = test_alloc(sizeof(float) * rows);
  int64_t bad = 0;
  int split = 0;
  char err[512];
  padec_check_result gpu_result, cpu_result;
  memset(&gpu_result, 0, sizeof gpu_result);

  padec_case_poison(&c, o_cpu, lse_cpu);
  if ((s.grid_splits ? run_cpu_grid(&c, s.grid_splits, options.partition_tokens, o_cpu, lse_cpu)
                     : run_cpu(&c, &options, o_cpu, lse_cpu, &split)) != 0) {
    report(index, &c, &options, padec_last_message(), NULL);
    bad = -1;
    goto done;
  }
  if (padec_check_output(&c, o_cpu, lse_cpu, &cpu_result) != 0) {
    report(index, &c, &options, "the oracle could not run", NULL);
    bad = -1;
    goto done;
  }
  if (!cpu_result.pass) {
    report(index, &c, &options, "CPU output against the oracle", &cpu_result);
    bad += cpu_result.bad_elements + cpu_result.bad_lse;
  }
  if (!g_cpu_only) {
    if ((s.grid_splits ? padec_gpu_run_case_grid(&c, s.grid_splits, options.partition_tokens, o_gpu,
                                                 lse_gpu, err, sizeof err)
                       : padec_gpu_run_case(&c, &options, o_gpu, lse_gpu, err, sizeof err)) != 0) {
      report(index, &c, &options, err, NULL);
      bad = -1;
      goto done;
    }
    if (padec_check_output(&c, o_gpu, lse_gpu, &gpu_result) != 0) {
      report(index, &c, &options, "the oracle could not run", NULL);
      bad = -1;
      goto done;
    }
    if (!gpu_result.pass) {
      report(index, &c, &options, "GPU output against the oracle", &gpu_result);
      bad += gpu_result.bad_elements + gpu_result.bad_lse;
    }
    /* GPU against CPU on the same plan: each within the tolerance of the oracle. */
    int64_t bad_pairs = 0;
    for (size_t i = 0; i < rows; ++i) {
      const int both_empty =
          isinf(lse_gpu[i]) && isinf(lse_cpu[i]) && lse_gpu[i] < 0 && lse_cpu[i] < 0;
      if (!both_empty &&
          !(fabs((double)lse_gpu[i] - lse_cpu[i]) <= 2.0 * gpu_result.lse_tolerance + 1e-5))
        bad_pairs += 1;
    }
    for (size_t i = 0; i < rows * (size_t)c.params.head_dim; ++i) {
      const double a = padec_output_element(o_gpu, c.params.o_dtype, (size_t)i);
      const double b = padec_output_element(o_cpu, c.params.o_dtype, (size_t)i);
      if (!(fabs(a - b) <= 2.0 * gpu_result.tolerance + 1e-6)) bad_pairs += 1;
    }
    if (bad_pairs) {
      char what[96];
      snprintf(what, sizeof what, "GPU and CPU differ in %" PRId64 " elements", bad_pairs);
      report(index, &c, &options, what, &gpu_result);
      bad += bad_pairs;
    }
  }

  local->batch_invariant += !s.grid_splits && options.policy == PADEC_POLICY_BATCH_INVARIANT;
  local->cost += !s.grid_splits && options.policy == PADEC_POLICY_COST;
  local->grid += s.grid_splits > 0;
  local->fp8 += c.params.kv_dtype == PADEC_DTYPE_E4M3;
  local->per_token += c.params.fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN;
  local->hnd += c.params.kv_layout == PADEC_LAYOUT_HND;
  local->windowed += c.params.window_left > 0;
  local->huge_windows += c.params.window_left >= (1 << 30);
  local->few_workers += options.num_workers < c.params.num_kv_heads;
  local->split_plans += split;
  local->page1 += c.params.page_size == 1;
  local->page1024 += c.params.page_size == 1024;
  local->q_len4 += c.params.q_len == 4;
  local->head_dim256 += c.params.head_dim == 256;
  local->group16 += c.params.num_q_heads / c.params.num_kv_heads == 16;
  for (int32_t b = 0; b < c.batch; ++b) local->empty_sequences += c.kv_lens[b] == 0;
  if (verbose && !g_cpu_only)
    printf("  GPU max error %.3g, CPU max error %.3g, tolerance %.3g\n", gpu_result.max_abs_err,
           cpu_result.max_abs_err, cpu_result.tolerance);
  else if (verbose)
    printf("  CPU max error %.3g, tolerance %.3g\n", cpu_result.max_abs_err, cpu_result.tolerance);

done:
  free(o_gpu);
  free(o_cpu);
  free(lse_gpu);
  free(lse_cpu);
  padec_case_free(&c);
  return bad;
}

static void *worker(void *arg) {
  (void)arg;
  stats local;
  memset(&local, 0, sizeof local);
  for (;;) {
    pthread_mutex_lock(&g_lock);
    const int64_t index = g_next_index;
    const int stop = index >= g_count || now_seconds() - g_start >= g_seconds;
    if (!stop) g_next_index += 1;
    pthread_mutex_unlock(&g_lock);
    if (stop) break;
    const int64_t bad = run_one(index, &local, 0);
    local.cases += 1;
    if (bad != 0) {
      local.failed_cases += 1;
      local.bad_elements += bad > 0 ? bad : 0;
    }
  }
  pthread_mutex_lock(&g_lock);
  int64_t *total = (int64_t *)(void *)&g_stats;
  const int64_t *mine = (const int64_t *)(const void *)&local;
  for (size_t i = 0; i < sizeof(stats) / sizeof(int64_t); ++i) total[i] += mine[i];
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

static int usage(void) {
  fprintf(stderr,
          "usage: test_cuda_soak [--count N] [--seconds S] [--seed S] [--threads T] "
          "[--case I] [--cpu-only]\n");
  return 2;
}

int main(int argc, char **argv) {
  long threads = sysconf(_SC_NPROCESSORS_ONLN);
  if (threads > 16) threads = 16;
  if (threads < 1) threads = 1;
  int64_t single = -1;
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    const char *value = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--cpu-only") == 0) {
      g_cpu_only = 1;
      continue;
    }
    if (!value) return usage();
    char *end = NULL;
    if (strcmp(arg, "--count") == 0)
      g_count = strtoll(value, &end, 10);
    else if (strcmp(arg, "--seconds") == 0)
      g_seconds = strtod(value, &end);
    else if (strcmp(arg, "--seed") == 0)
      g_base_seed = strtoull(value, &end, 10);
    else if (strcmp(arg, "--threads") == 0)
      threads = strtol(value, &end, 10);
    else if (strcmp(arg, "--case") == 0)
      single = strtoll(value, &end, 10);
    else
      return usage();
    if (!end || *end != '\0' || threads < 1 || g_count < 0) return usage();
    i += 1;
  }
  if (!g_cpu_only && !padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  if (single >= 0) {
    stats local;
    memset(&local, 0, sizeof local);
    const int64_t bad = run_one(single, &local, 1);
    printf("test_cuda_soak: case %" PRId64 ": %s\n", single, bad == 0 ? "ok" : "FAILED");
    return bad == 0 ? 0 : 1;
  }

  g_start = now_seconds();
  pthread_t *ids = malloc(sizeof(pthread_t) * (size_t)threads);
  if (!ids) return 1;
  for (long t = 0; t < threads; ++t)
    if (pthread_create(&ids[t], NULL, worker, NULL) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      return 1;
    }
  for (long t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
  free(ids);
  const double elapsed = now_seconds() - g_start;
  const stats *st = &g_stats;
  printf("test_cuda_soak: coverage: %" PRId64 " fp8 (%" PRId64 " per-token), %" PRId64
         " HND, %" PRId64 " windowed (%" PRId64 " near INT32_MAX), %" PRId64
         " with workers < KV heads, %" PRId64 " plans with splits, %" PRId64 " page 1, %" PRId64
         " page 1024, %" PRId64 " q_len 4, %" PRId64 " head_dim 256, %" PRId64 " group 16, %" PRId64
         " empty sequences, %" PRId64 " batch_invariant plans, %" PRId64 " cost plans, %" PRId64
         " grid runs\n",
         st->fp8, st->per_token, st->hnd, st->windowed, st->huge_windows, st->few_workers,
         st->split_plans, st->page1, st->page1024, st->q_len4, st->head_dim256, st->group16,
         st->empty_sequences, st->batch_invariant, st->cost, st->grid);
  printf("test_cuda_soak: %" PRId64 " cases (%s, seed %" PRIu64 ", %ld threads, %.1f s), %" PRId64
         " mismatches in %" PRId64 " failed cases\n",
         st->cases, g_cpu_only ? "CPU against the oracle only" : "GPU and CPU", g_base_seed,
         threads, elapsed, st->bad_elements, st->failed_cases);
  return st->failed_cases ? 1 : 0;
}
