/* `padec check`: every workload on the backend against the double-precision oracle. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"

/* The factor a workload's lengths and windows are scaled by: --scale-lengths, or the largest
 * 1/2^k that leaves at most CLI_CHECK_MAX_TOKENS KV tokens. */
static double check_scale(const cli_options *opt, const padec_workload *workload) {
  return opt->scale > 0.0 ? opt->scale : cli_power_of_two_scale(workload, CLI_CHECK_MAX_TOKENS);
}

int cli_cmd_check(int argc, char **argv) {
  cli_session session;
  int ready;
  int rc = cli_session_open("check", CLI_FLAG_BACKEND | CLI_FLAG_SEED, argc, argv, &session, &ready);
  if (!ready) return rc;
  const cli_options opt = session.opt;
  padec_workload *workloads = session.workloads;
  const int count = session.count;
  const char *source = session.source;
  const char *backend = session.backend;
  const int use_gpu = session.use_gpu;
  int gpu_present = use_gpu || padec_gpu_available();
  printf("padec check: %d workload%s from %s; backend %s; partition %d; policy %s\n", count,
         count == 1 ? "" : "s", source, backend, opt.partition_tokens ? opt.partition_tokens : 256,
         cli_policy_label(&opt));
  if (opt.scale > 0.0) {
    char scale[32];
    cli_format_scale(opt.scale, scale, sizeof scale);
    printf("lengths and windows scaled by %s (--scale-lengths)\n", scale);
  } else {
    printf(
        "lengths and windows scaled per workload by the largest 1/2^k that leaves at most %d "
        "KV tokens (--scale-lengths 1: full size)\n",
        CLI_CHECK_MAX_TOKENS);
  }
  /* The name and scale columns as wide as their longest entry, so that every row lines up
   * (a scale can read 1/2147483648). */
  int name_width = 24, scale_width = 6;
  for (int i = 0; i < count; ++i) {
    char scale[32];
    cli_format_scale(check_scale(&opt, &workloads[i]), scale, sizeof scale);
    const int name_length = (int)strlen(workloads[i].name), scale_length = (int)strlen(scale);
    if (name_length > name_width) name_width = name_length;
    if (scale_length > scale_width) scale_width = scale_length;
  }
  printf("%-*s %*s %6s %10s %8s %11s %11s %11s %11s  %s\n", name_width, "workload", scale_width,
         "scale", "batch", "kv_tokens", "workers", "max_err", "tolerance", "lse_err", "lse_tol",
         "result");

  int failures = 0;
  for (int i = 0; i < count; ++i) {
    const double factor = check_scale(&opt, &workloads[i]);
    char scale[32];
    cli_format_scale(factor, scale, sizeof scale);
    padec_workload w;
    if (cli_scale_workload(&workloads[i], factor, &w) != 0) {
      printf("%-*s %*s FAIL: out of memory\n", name_width, workloads[i].name, scale_width, scale);
      ++failures;
      continue;
    }
    padec_case c;
    if (padec_case_init(&c, &w.params, w.batch, w.kv_lens, opt.seed + (uint64_t)i) != 0) {
      printf("%-*s %*s FAIL: could not build the case (out of memory?)\n", name_width, w.name,
             scale_width, scale);
      padec_workload_free(&w);
      ++failures;
      continue;
    }
    const cli_choice choice = cli_choose(&opt, &c.params, c.batch, c.kv_lens, gpu_present);
    const padec_plan_options options = choice.options;
    void *o = NULL;
    float *lse = NULL;
    double seconds = 0.0;
    char err[1024] = "";
    padec_check_result result;
    memset(&result, 0, sizeof result);
    int ran = cli_alloc_outputs(&c, &o, &lse) == 0;
    if (!ran) snprintf(err, sizeof err, "out of memory for the outputs");
    if (ran) ran = cli_execute(&c, use_gpu, &choice, o, lse, &seconds, err, sizeof err) == 0;
    if (ran && padec_check_output(&c, o, lse, &result) != 0) {
      snprintf(err, sizeof err, "the oracle could not run");
      ran = 0;
    }
    char workers[24];
    cli_workers_text(choice.grid_splits, options.num_workers, workers, sizeof workers);
    if (ran) {
      char pick[48] = "";
      if (opt.policy_auto) cli_choice_name(&choice, pick, sizeof pick);
      printf("%-*s %*s %6d %10lld %8s %11.3e %11.3e %11.3e %11.3e  %s%s%s%s\n", name_width,
             w.name, scale_width, scale, w.batch, (long long)cli_total_tokens(&w), workers, result.max_abs_err,
             result.tolerance, result.max_lse_err, result.lse_tolerance,
             result.pass ? "PASS" : "FAIL", pick[0] ? " [auto: " : "", pick, pick[0] ? "]" : "");
      if (!result.pass) {
        ++failures;
        char label[320];
        snprintf(label, sizeof label, "padec check %s (seed %llu, workers %s, partition %d)",
                 w.name, (unsigned long long)(opt.seed + (uint64_t)i), workers,
                 options.partition_tokens ? options.partition_tokens : 256);
        padec_check_print(stderr, label, &c, &result);
      }
    } else {
      printf("%-*s %*s %6d %10lld %8s  FAIL: %s\n", name_width, w.name, scale_width, scale, w.batch,
             (long long)cli_total_tokens(&w), workers, err);
      ++failures;
    }
    fflush(stdout);
    free(o);
    free(lse);
    padec_case_free(&c);
    padec_workload_free(&w);
  }
  if (failures)
    printf("padec check: %d of %d workloads FAILED\n", failures, count);
  else
    printf("padec check: %d of %d workloads passed\n", count, count);
  cli_session_close(&session);
  return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
