/* `padec run`: every workload once on the chosen backend, with a NaN/Inf check of the output. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"

int cli_cmd_run(int argc, char **argv) {
  cli_session session;
  int ready;
  int rc = cli_session_open("run", CLI_FLAG_BACKEND | CLI_FLAG_SEED, argc, argv, &session, &ready);
  if (!ready) return rc;
  const cli_options opt = session.opt;
  padec_workload *workloads = session.workloads;
  const int count = session.count;
  const char *source = session.source;
  const char *backend = session.backend;
  const int use_gpu = session.use_gpu;
  int gpu_present = use_gpu || padec_gpu_available();
  char scale[32];
  cli_format_scale(opt.scale > 0.0 ? opt.scale : 1.0, scale, sizeof scale);
  printf("padec run: %d workload%s from %s; backend %s; lengths x%s; partition %d; policy %s\n",
         count, count == 1 ? "" : "s", source, backend, scale,
         opt.partition_tokens ? opt.partition_tokens : 256, cli_policy_label(&opt));
  printf("%-24s %6s %10s %9s %8s %12s  %s\n", "workload", "batch", "kv_tokens", "MB_moved",
         "workers", use_gpu ? "ms_with_copy" : "ms", "output");

  int failures = 0;
  for (int i = 0; i < count; ++i) {
    padec_workload w;
    char err[1024] = "";
    if (cli_scale_workload(&workloads[i], opt.scale > 0.0 ? opt.scale : 1.0, &w) != 0) {
      printf("%-24s out of memory\n", workloads[i].name);
      ++failures;
      continue;
    }
    padec_case c;
    if (padec_case_init(&c, &w.params, w.batch, w.kv_lens, opt.seed + (uint64_t)i) != 0) {
      printf("%-24s could not build the case (out of memory?)\n", w.name);
      padec_workload_free(&w);
      ++failures;
      continue;
    }
    const cli_choice choice = cli_choose(&opt, &c.params, c.batch, c.kv_lens, gpu_present);
    const padec_plan_options options = choice.options;
    void *o = NULL;
    float *lse = NULL;
    double seconds = 0.0;
    int ok = cli_alloc_outputs(&c, &o, &lse) == 0;
    if (!ok) snprintf(err, sizeof err, "out of memory for the outputs");
    if (ok) ok = cli_execute(&c, use_gpu, &choice, o, lse, &seconds, err, sizeof err) == 0;
    char workers[24];
    cli_workers_text(choice.grid_splits, options.num_workers, workers, sizeof workers);
    if (ok) {
      int64_t bad_o =
          cli_count_nonfinite(o, c.params.o_dtype, cli_lse_count(&c) * c.params.head_dim);
      int64_t bad_lse = cli_count_bad_lse(lse, cli_lse_count(&c));
      char status[96];
      if (bad_o || bad_lse) {
        snprintf(status, sizeof status, "BAD: %lld NaN/Inf in o, %lld NaN/+Inf in lse",
                 (long long)bad_o, (long long)bad_lse);
        ++failures;
      } else {
        snprintf(status, sizeof status, "ok (no NaN/Inf)");
      }
      char pick[48] = "";
      if (opt.policy_auto) cli_choice_name(&choice, pick, sizeof pick);
      printf("%-24s %6d %10lld %9.1f %8s %12.3f  %s%s%s%s\n", w.name, w.batch,
             (long long)cli_total_tokens(&w), (double)padec_workload_bytes(&w) / 1e6,
             workers, seconds * 1e3, status, pick[0] ? " [auto: " : "", pick,
             pick[0] ? "]" : "");
    } else {
      printf("%-24s %6d %10lld %9.1f %8s %12s  FAILED: %s\n", w.name, w.batch,
             (long long)cli_total_tokens(&w), (double)padec_workload_bytes(&w) / 1e6,
             workers, "-", err);
      ++failures;
    }
    fflush(stdout);
    free(o);
    free(lse);
    padec_case_free(&c);
    padec_workload_free(&w);
  }
  if (failures) printf("padec run: %d of %d workloads failed\n", failures, count);
  cli_session_close(&session);
  return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
