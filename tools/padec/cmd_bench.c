/* `padec bench`: median times and effective bandwidth per workload, on the CPU or the GPU. */
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "cli.h"
#include "gpu.h"

typedef struct bench_row {
  const padec_workload *w;
  int32_t workers;     /* the plan's; 0 on the grid path */
  int32_t grid_splits; /* the grid path's; 0 for a plan */
  int iterations;
  double plan_us, median_us, min_us, effective_gbps, copy_gbps; /* copy_gbps 0: not measured */
  const char *device;
} bench_row;

/* The row's workers and grid split count for the pick it ran. */
static void set_row_pick(bench_row *row, const cli_choice *choice) {
  row->workers = choice->grid_splits > 0 ? 0 : choice->options.num_workers;
  row->grid_splits = choice->grid_splits;
}

static void print_csv_field(const char *text) {
  putchar('"');
  for (const char *s = text; *s; ++s) {
    if (*s == '"') putchar('"');
    putchar(*s);
  }
  putchar('"');
}

static void print_header(int csv) {
  if (csv)
    printf(
        "workload,backend,device,batch,kv_tokens,bytes,workers,iterations,plan_us,median_us,"
        "min_us,effective_gbps,copy_gbps,effective_over_copy,grid_splits\n");
  else
    printf("%-24s %6s %10s %9s %7s %9s %11s %11s %8s %9s %8s\n", "workload", "batch", "kv_tokens",
           "MB_moved", "workers", "plan_us", "median_us", "min_us", "GB/s", "copy_GB/s",
           "eff/copy");
}

static void print_row(const bench_row *r, int csv, int gpu) {
  const padec_workload *w = r->w;
  uint64_t bytes = padec_workload_bytes(w);
  long long tokens = (long long)cli_total_tokens(w);
  double ratio = r->copy_gbps > 0.0 ? r->effective_gbps / r->copy_gbps : 0.0;
  if (csv) {
    print_csv_field(w->name);
    printf(",%s,", gpu ? "cuda" : "cpu");
    print_csv_field(r->device);
    printf(",%d,%lld,%llu,%d,%d,%.3f,%.3f,%.3f,%.3f,", w->batch, tokens, (unsigned long long)bytes,
           r->workers, r->iterations, r->plan_us, r->median_us, r->min_us, r->effective_gbps);
    if (r->copy_gbps > 0.0)
      printf("%.3f,%.4f,%d\n", r->copy_gbps, ratio, r->grid_splits);
    else
      printf(",,%d\n", r->grid_splits);
    return;
  }
  char copy[32] = "-", eff_copy[32] = "-";
  if (r->copy_gbps > 0.0) {
    snprintf(copy, sizeof copy, "%.1f", r->copy_gbps);
    snprintf(eff_copy, sizeof eff_copy, "%.3f", ratio);
  }
  char workers[24];
  cli_workers_text(r->grid_splits, r->workers, workers, sizeof workers);
  printf("%-24s %6d %10lld %9.1f %7s %9.2f %11.1f %11.1f %8.2f %9s %8s\n", w->name, w->batch,
         tokens, (double)bytes / 1e6, workers, r->plan_us, r->median_us, r->min_us,
         r->effective_gbps, copy, eff_copy);
}

/* A traced launch's timeline: per point, min / median / max over the CTAs that reached it. */
static void print_trace(const padec_gpu_trace *t) {
  printf("  timeline of one launch, %lld CTAs, us from the first CTA's entry (min / median / max):\n",
         (long long)t->ctas);
  for (int point = 0; point < PADEC_GPU_TRACE_POINTS; ++point) {
    if (t->reached[point] == 0) continue;
    printf("    %-11s %6lld CTAs %9.2f %9.2f %9.2f\n", padec_gpu_trace_point_names[point],
           (long long)t->reached[point], t->min_us[point], t->median_us[point], t->max_us[point]);
  }
}

/* Min, median and effective bandwidth of a CPU row from its run times (seconds; sorted here). */
static void fill_times(bench_row *row, const padec_workload *w, double *times,
                       int iterations) {
  row->min_us = times[0] * 1e6;
  for (int i = 1; i < iterations; ++i)
    if (times[i] * 1e6 < row->min_us) row->min_us = times[i] * 1e6;
  row->median_us = cli_median(times, iterations) * 1e6;
  row->effective_gbps = (double)padec_workload_bytes(w) / (row->median_us * 1e3);
  row->iterations = iterations;
}

/* One workload on the CPU: plan build times, then padec_cpu_run after one warm-up. */
static int bench_cpu(const cli_options *opt, const padec_workload *w, uint64_t seed,
                     int gpu_present, int iterations, bench_row *row, char *err, size_t err_size) {
  padec_case c;
  if (padec_case_init(&c, &w->params, w->batch, w->kv_lens, seed) != 0) {
    snprintf(err, err_size, "could not build the case (out of memory?)");
    return -1;
  }
  const cli_choice choice = cli_choose(opt, &c.params, c.batch, c.kv_lens, gpu_present);
  const padec_plan_options options = choice.options;
  set_row_pick(row, &choice);
  cli_plan plan;
  void *o = NULL;
  float *lse = NULL;
  int plan_runs = iterations > 11 ? iterations : 11;
  double *times = (double *)malloc(sizeof(double) * (size_t)plan_runs);
  int rc = -1;
  if (!times || cli_alloc_outputs(&c, &o, &lse) != 0) {
    snprintf(err, err_size, "out of memory");
    free(times);
    padec_case_free(&c);
    return -1;
  }
  if (choice.grid_splits > 0) {
    /* The grid path has no plan: time padec_cpu_run_grid alone (cli_execute's seconds). */
    rc = 0;
    for (int i = -1; i < iterations && rc == 0; ++i) {
      double seconds = 0.0;
      rc = cli_execute(&c, 0, &choice, o, lse, &seconds, err, err_size);
      if (i >= 0) times[i] = seconds;
    }
    if (rc == 0) fill_times(row, w, times, iterations);
  } else if (cli_plan_make(&c.params, c.batch, c.kv_lens, &options, &plan, err, err_size) == 0) {
    rc = 0;
    for (int i = 0; i < plan_runs && rc == 0; ++i) {
      double start = cli_now_seconds();
      if (cli_plan_rebuild(&c.params, c.kv_lens, &plan) != PADEC_STATUS_OK) {
        snprintf(err, err_size, "plan build: %s", padec_last_message());
        rc = -1;
      }
      times[i] = cli_now_seconds() - start;
    }
    if (rc == 0) row->plan_us = cli_median(times, plan_runs) * 1e6;
    padec_case_poison(&c, o, lse);
    padec_tensors tensors = padec_case_tensors(&c, o, lse);
    for (int i = -1; i < iterations && rc == 0; ++i) {
      double start = cli_now_seconds();
      padec_status status = padec_cpu_run(&c.params, &plan.layout, plan.plan, &tensors,
                                          plan.workspace, plan.layout.workspace_bytes);
      double seconds = cli_now_seconds() - start;
      if (status != PADEC_STATUS_OK) {
        snprintf(err, err_size, "padec_cpu_run: %s", padec_last_message());
        rc = -1;
      }
      if (i >= 0) times[i] = seconds;
    }
    if (rc == 0) fill_times(row, w, times, iterations);
    cli_plan_free(&plan);
  }
  free(times);
  free(o);
  free(lse);
  padec_case_free(&c);
  return rc;
}

/* `padec bench --calibrate`: the cost model fitted on the GPU (bench/calibrate.h). */
static int bench_calibrate(const cli_options *opt) {
  if (opt->file || opt->num_workload_lines > 0 || opt->only)
    return cli_usage_error("bench", "--calibrate runs its own batches: give no FILE, --workload "
                                    "or --only");
  if (opt->backend == CLI_BACKEND_CPU)
    return cli_usage_error("bench", "--calibrate measures the GPU: not with --backend cpu");
  if (opt->device_plan || opt->csv || opt->compare || opt->trace)
    return cli_usage_error("bench", "--calibrate goes with none of --device-plan, --csv, --compare, "
                                    "--trace");
  if (opt->scale > 0.0 || opt->partition_tokens)
    return cli_usage_error("bench", "--calibrate sets its own lengths and partitions: no "
                                    "--scale-lengths or --partition");
  if (opt->policy_auto || opt->policy != PADEC_POLICY_EVEN || opt->has_cost_model || opt->seed != 1)
    return cli_usage_error("bench", "--calibrate fits the cost model on batches of its own: no "
                                    "--policy, --cost-model or --seed");
  if (!padec_gpu_available()) {
    fprintf(stderr, "padec bench: --calibrate needs a GPU: %s\n", padec_gpu_unavailable_reason());
    return CLI_EXIT_USAGE;
  }
  static padec_calibration calibration;
  char err[1024] = "";
  if (padec_gpu_calibrate(opt->workers, opt->iterations, &calibration, err, sizeof err) != 0) {
    int measured = 0;
    for (int i = 0; i < calibration.num_points; ++i) measured += calibration.points[i].measured;
    if (measured) padec_calibration_print(stdout, &calibration); /* what was measured */
    fprintf(stderr, "padec bench --calibrate: %s\n", err);
    return CLI_EXIT_FAILURE;
  }
  padec_calibration_print(stdout, &calibration);
  return CLI_EXIT_OK;
}

/* `padec bench --compare`: one GPU row per workload with every path and policy. */
enum { COMPARE_COLUMNS = 4 };
static const char *const compare_names[COMPARE_COLUMNS] = {"even", "batch_inv", "cost", "grid"};

static void print_compare_header(void) {
  printf("%-24s", "workload");
  for (int k = 0; k < COMPARE_COLUMNS; ++k) printf(" %10s", compare_names[k]);
  printf(" %6s %-28s %9s\n", "splits", "auto", "auto/best");
}

/* Runs the columns of one workload; prints its row, or returns -1 with err set. */
static int bench_compare(const cli_options *opt, const padec_workload *w, int iterations,
                         char *err, size_t err_size) {
  double ratio[COMPARE_COLUMNS];
  const padec_plan_options base = cli_plan_options(opt, &w->params, 1);
  const int32_t grid_splits = padec_grid_recommended_splits(&w->params, w->batch, base.num_workers,
                                                            base.partition_tokens);
  for (int k = 0; k < COMPARE_COLUMNS; ++k) {
    padec_gpu_bench_result result;
    padec_plan_options options = base;
    options.policy = k == 0 ? PADEC_POLICY_EVEN : k == 1 ? PADEC_POLICY_BATCH_INVARIANT : PADEC_POLICY_COST;
    const int rc = k == 3 ? padec_gpu_bench_grid(w, grid_splits, base.partition_tokens, iterations,
                                                 &result, err, err_size)
                          : padec_gpu_bench(w, &options, iterations, &result, err, err_size);
    if (rc != 0) return -1;
    ratio[k] = result.effective_gbps / result.copy_gbps;
  }
  padec_choice choice;
  if (cli_auto_pick(opt, &w->params, w->batch, w->kv_lens, base.num_workers, 1, &choice) !=
      PADEC_STATUS_OK) {
    snprintf(err, err_size, "padec_choose_for_device: %s", padec_last_message());
    return -1;
  }
  const int picked = choice.path == PADEC_PATH_GRID                        ? 3
                     : choice.plan_options.policy == PADEC_POLICY_COST      ? 2
                     : choice.plan_options.policy == PADEC_POLICY_BATCH_INVARIANT ? 1
                                                                            : 0;
  double best = ratio[0];
  for (int k = 1; k < COMPARE_COLUMNS; ++k)
    if (ratio[k] > best) best = ratio[k];
  double picked_ratio = ratio[picked];
  char picked_name[48];
  snprintf(picked_name, sizeof picked_name, "%s", compare_names[picked]);
  /* auto's pick with another worker count or split count than its column's: measure it too. */
  const int other_workers =
      choice.path == PADEC_PATH_PERSISTENT && choice.plan_options.num_workers != base.num_workers;
  const int other_splits = choice.path == PADEC_PATH_GRID && choice.grid_splits != grid_splits;
  if (other_workers || other_splits) {
    padec_plan_options options = base;
    options.policy = choice.plan_options.policy;
    options.num_workers = choice.plan_options.num_workers;
    padec_gpu_bench_result result;
    const int rc = other_splits ? padec_gpu_bench_grid(w, choice.grid_splits, base.partition_tokens,
                                                       iterations, &result, err, err_size)
                                : padec_gpu_bench(w, &options, iterations, &result, err, err_size);
    if (rc != 0) return -1;
    picked_ratio = result.effective_gbps / result.copy_gbps;
    if (picked_ratio > best) best = picked_ratio;
    if (other_splits)
      snprintf(picked_name, sizeof picked_name, "grid, %d split%s: %.3f", choice.grid_splits,
               choice.grid_splits > 1 ? "s" : "", picked_ratio);
    else
      snprintf(picked_name, sizeof picked_name, "%s, %d workers: %.3f", compare_names[picked],
               options.num_workers, picked_ratio);
  }
  printf("%-24s", w->name);
  for (int k = 0; k < COMPARE_COLUMNS; ++k) printf(" %10.3f", ratio[k]);
  printf(" %6d %-28s %9.3f\n", grid_splits, picked_name, picked_ratio / best);
  return 0;
}

/* How the GPU timings found the L2, as bench/gpu.cu reads PADEC_BENCH_FLUSH. */
static const char *bench_flush_label(void) {
  const char *mode = getenv("PADEC_BENCH_FLUSH");
  if (mode && strcmp(mode, "none") == 0) return "warm L2 (PADEC_BENCH_FLUSH=none)";
  if (mode && strcmp(mode, "memset") == 0) return "cold L2 (a 256 MiB memset between iterations)";
  return "cold L2";
}

int cli_cmd_bench(int argc, char **argv) {
  cli_session session;
  int ready;
  const unsigned flags = CLI_FLAG_BACKEND | CLI_FLAG_ITERATIONS | CLI_FLAG_CSV | CLI_FLAG_SEED |
                         CLI_FLAG_DEVICE_PLAN | CLI_FLAG_CALIBRATE | CLI_FLAG_COMPARE |
                         CLI_FLAG_TRACE;
  {
    /* --calibrate needs no workloads: handle it before the session loads them. */
    cli_options first;
    int rc = cli_parse_options("bench", flags, argc, argv, &first);
    if (rc == CLI_EXIT_OK && first.calibrate && !first.help) rc = bench_calibrate(&first);
    const int done = rc != CLI_EXIT_OK || (first.calibrate && !first.help);
    cli_options_free(&first);
    if (done) return rc;
  }
  int rc = cli_session_open("bench", flags, argc, argv, &session, &ready);
  if (!ready) return rc;
  const cli_options opt = session.opt;
  padec_workload *workloads = session.workloads;
  const int count = session.count;
  const char *source = session.source;
  const char *backend = session.backend;
  const int use_gpu = session.use_gpu;
  if (opt.trace && (!use_gpu || opt.csv || opt.compare || opt.device_plan)) {
    cli_session_close(&session);
    return cli_usage_error("bench", "--trace needs the cuda backend and goes with none of --csv, "
                                    "--compare, --device-plan");
  }
  if (opt.csv && (opt.compare || opt.device_plan)) {
    cli_session_close(&session);
    return cli_usage_error("bench", "--csv goes with neither --compare nor --device-plan (their "
                                    "tables are not CSV)");
  }
  if (opt.device_plan && (opt.policy_auto || opt.policy != PADEC_POLICY_EVEN)) {
    cli_session_close(&session);
    return cli_usage_error("bench", "--device-plan times the device scheduler, which builds the "
                                    "even policy only: --policy %s is not timed there",
                           cli_policy_label(&opt));
  }
  if ((opt.compare || opt.device_plan) && !use_gpu) {
    cli_session_close(&session);
    return cli_usage_error("bench", "%s times the GPU: it needs the cuda backend, and this run's is "
                                    "%s", opt.compare ? "--compare" : "--device-plan", backend);
  }
  padec_gpu_bench_set_trace(opt.trace);
  int gpu_present = use_gpu || padec_gpu_available();
  int iterations = opt.iterations > 0 ? opt.iterations : (use_gpu ? 100 : 5);
  /* The GPU harness takes its median over at least 50 iterations. */
  if (use_gpu && iterations < 50) iterations = 50;
  char scale[32];
  cli_format_scale(opt.scale > 0.0 ? opt.scale : 1.0, scale, sizeof scale);
  if (!opt.csv) {
    printf(
        "padec bench: %d workload%s from %s; backend %s; %d iterations; lengths x%s; "
        "partition %d; policy %s\n",
        count, count == 1 ? "" : "s", source, backend, iterations, scale,
        opt.partition_tokens ? opt.partition_tokens : 256, cli_policy_label(&opt));
    if (use_gpu)
      printf(
          "median_us: decode + merge, CUDA events, %s; GB/s: bytes that must move / "
          "median; copy_GB/s: device-to-device copy\n",
          bench_flush_label());
    else
      printf(
          "median_us: wall time of padec_cpu_run, or padec_cpu_run_grid on the grid path "
          "(single thread) after one warm-up; plan_us: host plan build (0 on the grid path)\n");
  }
  int failures = 0, header_done = 0;
  for (int i = 0; i < count; ++i) {
    padec_workload w;
    char err[1024] = "";
    if (cli_scale_workload(&workloads[i], opt.scale > 0.0 ? opt.scale : 1.0, &w) != 0) {
      fprintf(stderr, "padec bench: %s: out of memory\n", workloads[i].name);
      ++failures;
      continue;
    }
    bench_row row;
    memset(&row, 0, sizeof row);
    row.w = &w;
    row.device = "cpu";
    padec_gpu_bench_result result;
    memset(&result, 0, sizeof result);
    int ok;
    if (use_gpu && opt.compare) {
      if (!header_done) {
        printf("effective / copy per path and policy (copy measured in each run)\n");
        print_compare_header();
        header_done = 1;
      }
      if (bench_compare(&opt, &w, iterations, err, sizeof err) != 0) {
        fprintf(stderr, "padec bench: %s: %s\n", w.name, err);
        ++failures;
      }
      fflush(stdout);
      padec_workload_free(&w);
      continue;
    }
    if (use_gpu && opt.device_plan) {
      padec_plan_options options = cli_plan_options(&opt, &w.params, 1);
      double plan_us = 0, graph_us = 0, host_us = 0;
      ok = padec_gpu_bench_device_plan(&w, &options, iterations, &plan_us, &graph_us, &host_us,
                                       err, sizeof err) == 0;
      if (ok) {
        printf("%-24s batch %6d  device plan %8.2f us  graph step %9.2f us  host plan + upload + "
               "decode %9.2f us\n",
               w.name, w.batch, plan_us, graph_us, host_us);
      } else {
        fprintf(stderr, "padec bench: %s: %s\n", w.name, err);
        ++failures;
      }
      padec_workload_free(&w);
      continue;
    }
    if (use_gpu) {
      const cli_choice choice = cli_choose(&opt, &w.params, w.batch, w.kv_lens, 1);
      set_row_pick(&row, &choice);
      ok = (choice.grid_splits > 0
                ? padec_gpu_bench_grid(&w, choice.grid_splits, choice.options.partition_tokens,
                                       iterations, &result, err, sizeof err)
                : padec_gpu_bench(&w, &choice.options, iterations, &result, err, sizeof err)) == 0;
      if (ok) {
        row.iterations = result.iterations;
        row.plan_us = result.plan_us;
        row.median_us = result.median_us;
        row.min_us = result.min_us;
        row.effective_gbps = result.effective_gbps;
        row.copy_gbps = result.copy_gbps;
        row.device = result.device;
      }
    } else {
      ok = bench_cpu(&opt, &w, opt.seed + (uint64_t)i, gpu_present, iterations, &row, err,
                     sizeof err) == 0;
    }
    if (!header_done) {
      if (use_gpu && !opt.csv) {
        /* The device the rows ran on, with what `auto` weighs of it. */
        const padec_device_shape shape = padec_gpu_device_shape();
        if (ok)
          printf("device: %s, %d SMs, %.0f GB/s peak memory bandwidth\n", result.device,
                 shape.sm_count, (double)shape.memory_bytes_per_second / 1e9);
        else
          printf("device: (unknown)\n");
      }
      print_header(opt.csv);
      header_done = 1;
    }
    if (ok) {
      print_row(&row, opt.csv, use_gpu);
      if (use_gpu && result.trace.ctas > 0) print_trace(&result.trace);
    } else {
      fprintf(stderr, "padec bench: %s: %s\n", w.name, err);
      ++failures;
    }
    fflush(stdout);
    padec_workload_free(&w);
  }
  if (failures) fprintf(stderr, "padec bench: %d of %d workloads failed\n", failures, count);
  cli_session_close(&session);
  return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
