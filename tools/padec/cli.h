/* Shared pieces of the `padec` tool: options, workload loading, plans, timing, reporting. */
#ifndef PADEC_TOOL_CLI_H
#define PADEC_TOOL_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"
#include "padec.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* Workers of a plan when no GPU tells us better: 2 per SM of an H100 (132 SMs). */
#define CLI_DEFAULT_WORKERS_NO_GPU 264
/* `padec check` scales each workload down to at most this many KV tokens by default. */
#define CLI_CHECK_MAX_TOKENS 65536

typedef enum { CLI_BACKEND_AUTO, CLI_BACKEND_CPU, CLI_BACKEND_CUDA } cli_backend;

/* Flags a subcommand accepts. */
enum {
  CLI_FLAG_BACKEND = 1u << 0,
  CLI_FLAG_ITERATIONS = 1u << 1,
  CLI_FLAG_CSV = 1u << 2,
  CLI_FLAG_DUMP = 1u << 3,
  CLI_FLAG_SEED = 1u << 4,
  CLI_FLAG_DEVICE_PLAN = 1u << 5,
  CLI_FLAG_CALIBRATE = 1u << 6,
  CLI_FLAG_COMPARE = 1u << 7,
  CLI_FLAG_TRACE = 1u << 8
};

typedef struct cli_options {
  const char *command;
  const char *file;            /* positional FILE, or NULL */
  const char **workload_lines; /* --workload values (argv pointers) */
  int num_workload_lines;
  cli_backend backend;
  int32_t workers;          /* 0: default */
  int32_t partition_tokens; /* 0: library default (256) */
  padec_policy policy;
  double scale;   /* 0: the command's default; else in (0, 1] */
  int iterations; /* 0: the command's default */
  int csv;
  int device_plan; /* bench: time the device scheduler and the one-graph step instead */
  int calibrate;   /* bench: fit the cost policy's model on the GPU instead */
  int compare;     /* bench: every path and policy per workload, and `auto`'s pick */
  int trace;       /* bench: the decode kernel's timeline of one more launch per workload */
  int policy_auto; /* --policy auto: padec_choose_for_device picks the path, policy and workers */
  padec_cost_model cost_model; /* --cost-model: the cost policy's model (has_cost_model) */
  int has_cost_model;          /* 0: padec_cost_model_default */
  int dump;
  uint64_t seed;
  const char *only; /* substring filter on workload names, or NULL */
  int help;         /* --help was given: print help and exit 0 */
} cli_options;

#if defined(__GNUC__) || defined(__clang__)
#define CLI_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define CLI_PRINTF(fmt_index, first_arg)
#endif

/* Prints "padec COMMAND: message" and a pointer to the help to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *format, ...) CLI_PRINTF(2, 3);

/* Parses argv[1..argc) of a subcommand. Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after printing
 * the problem to stderr. opt->workload_lines is malloc'd: cli_options_free. */
int cli_parse_options(const char *command, unsigned flags, int argc, char **argv, cli_options *opt);
void cli_options_free(cli_options *opt);

/* Loads the workloads that opt names (FILE, --workload, or bench/workloads.txt), filtered by
 * --only. Returns CLI_EXIT_OK or CLI_EXIT_USAGE after printing the problem. */
int cli_load_workloads(const cli_options *opt, padec_workload **workloads, int *count,
                       const char **source);

/* A copy of in with every kv_len (and a nonzero window) multiplied by factor in (0, 1]; a
 * nonzero length stays at least min(L, q_len) and a window at least 1. Returns 0 or -1 (memory). */
int cli_scale_workload(const padec_workload *in, double factor, padec_workload *out);
/* The largest 1/2^k (k >= 0) that brings the workload, scaled as cli_scale_workload scales it,
 * to at most max_tokens KV tokens; where the lengths' floors (q_len) keep it above, the largest
 * that gives the fewest. */
double cli_power_of_two_scale(const padec_workload *w, int64_t max_tokens);
/* "1", "1/16", or "0.3" */
void cli_format_scale(double factor, char *text, size_t size);
int64_t cli_total_tokens(const padec_workload *w);

/* Backend resolution: returns 1 for the GPU, 0 for the CPU, -1 (after a message) when cuda was
 * asked for and is not available. why gets a short reason for the choice. */
int cli_use_gpu(const cli_options *opt, char *why, size_t why_size);

/* "even", "cost" or "batch_invariant". */
const char *cli_policy_name(padec_policy policy);

/* What run, check and bench start from: parsed options, the workloads and the backend. */

typedef struct cli_session {
  cli_options opt;
  padec_workload *workloads;
  int count;
  const char *source;
  char backend[720]; /* "cpu (auto: " and padec_gpu_unavailable_reason's up to 640 */
  int use_gpu;
} cli_session;

/* Parses the command's options, prints its help if asked, loads the workloads and picks the
 * backend. Returns CLI_EXIT_OK with *ready = 1 when the command should run, else the exit code
 * to return (the session is then already closed). */
int cli_session_open(const char *command, unsigned flags, int argc, char **argv,
                     cli_session *session, int *ready);
void cli_session_close(cli_session *session);
/* Workers for params: --workers, else the GPU's recommendation when a GPU is present (and asked
 * for with gpu_present), else CLI_DEFAULT_WORKERS_NO_GPU. */
int32_t cli_workers(const cli_options *opt, const padec_params *params, int gpu_present);
padec_plan_options cli_plan_options(const cli_options *opt, const padec_params *params,
                                    int gpu_present);

/* How one workload runs: a plan with these options, or (grid_splits > 0) the grid path. */
typedef struct cli_choice {
  padec_plan_options options;
  int32_t grid_splits;
} cli_choice;
/* padec_choose_for_device for num_workers, with the GPU's SMs and memory bandwidth where
 * gpu_present and --workers did not set the count (else unknown: the count stays). */
padec_status cli_auto_pick(const cli_options *opt, const padec_params *params, int32_t batch,
                           const int32_t *kv_lens, int32_t num_workers, int gpu_present,
                           padec_choice *picked);
/* The plan options of cli_plan_options; under --policy auto, padec_choose_for_device's pick for
 * this batch (its host lengths, the worker count and, with a GPU and no --workers, its SMs and
 * memory bandwidth) instead. */
cli_choice cli_choose(const cli_options *opt, const padec_params *params, int32_t batch,
                      const int32_t *kv_lens, int gpu_present);
/* "even, W workers", "cost, W workers", "batch_invariant, W workers" or "grid, N splits", into
 * buf. */
const char *cli_choice_name(const cli_choice *choice, char *buf, size_t size);
/* A row's workers column: the worker count, or "grid:N" for the grid path (grid_splits N > 0),
 * which has no workers. Returns buf. */
const char *cli_workers_text(int32_t grid_splits, int32_t workers, char *buf, size_t size);
/* The policy line of a command's header: --policy's name, or "auto". */
const char *cli_policy_label(const cli_options *opt);

/* A host plan and its workspace, aligned as padec_cpu_run needs. */
typedef struct cli_plan {
  padec_plan_layout layout;
  void *plan;
  void *workspace;
} cli_plan;
/* Returns 0, or -1 with the library's message in err. */
int cli_plan_make(const padec_params *params, int32_t batch, const int32_t *kv_lens,
                  const padec_plan_options *options, cli_plan *plan, char *err, size_t err_size);
/* Rebuilds the plan in place (same layout); for timing. Returns the padec status. */
padec_status cli_plan_rebuild(const padec_params *params, const int32_t *kv_lens, cli_plan *plan);
void cli_plan_free(cli_plan *plan);

/* Runs case c once as choice says, on the GPU (padec_gpu_run_case or padec_gpu_run_case_grid) or
 * the CPU (a host plan and padec_cpu_run, or padec_cpu_run_grid), o and lse poisoned first.
 * seconds: wall time of the CPU run, or of the whole GPU call (upload, plan, run, download).
 * Returns 0, or -1 with err set. */
int cli_execute(const padec_case *c, int use_gpu, const cli_choice *choice, void *o, float *lse,
                double *seconds, char *err, size_t err_size);
/* Output buffers of a case: o (o_bytes) and lse ([num_tokens][num_q_heads] floats). */
int cli_alloc_outputs(const padec_case *c, void **o, float **lse);
int64_t cli_lse_count(const padec_case *c);

/* Non-finite elements among n of o_dtype; for lse (float) NaN and +inf count, -inf is legal. */
int64_t cli_count_nonfinite(const void *data, padec_dtype dtype, int64_t n);
int64_t cli_count_bad_lse(const float *lse, int64_t n);

double cli_now_seconds(void);
double cli_median(double *values, int n); /* sorts values */
void *cli_aligned_alloc(size_t alignment, size_t bytes);

/* The subcommands; argv[0] is the subcommand's name. */
int cli_cmd_run(int argc, char **argv);
int cli_cmd_check(int argc, char **argv);
int cli_cmd_plan(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);
/* Prints the help of command (NULL: the overview) to stream; returns 0, or -1 if unknown. */
int cli_print_help(const char *command, FILE *stream);

#endif /* PADEC_TOOL_CLI_H */
