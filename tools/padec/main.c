/* `padec`: the command-line tool. Dispatch, help and version; the subcommands live in cmd_*.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char overview_help[] =
    "usage: padec COMMAND [FILE | --workload LINE]... [OPTIONS]\n"
    "\n"
    "Paged-attention decode: schedule, run, check and time the workloads of a workloads file.\n"
    "\n"
    "commands:\n"
    "  run     run every workload once (GPU if present, else CPU) and report time and NaNs\n"
    "  check   compare the output with the double-precision oracle; exit 1 on any failure\n"
    "  plan    print the schedule of every workload (--dump: the metadata buffers as JSON)\n"
    "  bench   time every workload: median time, effective GB/s\n"
    "  help    'padec help COMMAND' prints the options of COMMAND\n"
    "\n"
    "FILE defaults to bench/workloads.txt in the current directory. --workload LINE gives one\n"
    "workload in the file format instead (repeatable), e.g.\n"
    "  padec check --workload 'name=t q_heads=8 kv_heads=2 head_dim=128 page=16 kv=bf16 "
    "lens=100,2000'\n"
    "\n"
    "  padec --help       this text\n"
    "  padec --version    the tool's and the library's version\n"
    "\n"
    "An option that takes a value is given at most once, but --workload, which adds a\n"
    "workload each time (a flag may repeat).\n"
    "\n"
    "exit status: 0 success, 1 a failed check or run, 2 a usage error or a GPU asked for and\n"
    "absent (--backend cuda, --compare, --device-plan, --calibrate).\n";

static const char workload_help[] =
    "Workload line (the format of bench/workloads.txt): key=value pairs separated by spaces.\n"
    "  required: name q_heads kv_heads head_dim page kv(bf16|fp16|fp8)\n"
    "            lens (comma list of lengths; NxK = N repeated K times)\n"
    "  optional: window (0 = full attention, the default) q_len (1..4, default 1)\n"
    "            q (bf16|fp16) o (bf16|fp16|fp32) layout (nhd|hnd)\n"
    "            scales (none|tensor|device|token; kv=fp8 only, default tensor)\n";

static const char common_help[] =
    "  FILE                 workloads file (default: bench/workloads.txt if it exists)\n"
    "  --workload LINE      one workload in the file format (repeatable; instead of FILE)\n"
    "  --only TEXT          only the workloads whose name contains TEXT\n"
    "  --workers N          workers (persistent CTAs) of the plan. Default: the GPU's\n"
    "                       recommendation when a GPU is present, else 264 (2 per SM of an H100)\n"
    "  --partition T        tokens per partition, a power of two 16..16384 (default 256)\n"
    "  --policy P           scheduling policy: even (default, the seed's: equal partitions per\n"
    "                       worker), cost (equal predicted time per worker: every work item and\n"
    "                       every split costs a fixed start-up), batch_invariant (split points\n"
    "                       fixed by each sequence alone) or auto (padec_choose_for_device picks\n"
    "                       the path and policy per workload, the grid path included, and with\n"
    "                       a GPU and no --workers one CTA an SM for batches of no more\n"
    "                       (sequence, KV head) pairs than SMs (the grid path, or a cost\n"
    "                       plan where the lengths are skewed or the grid would leave SMs\n"
    "                       idle; not where a CTA would stream over 1.5 MiB on a card of more\n"
    "                       than 30 GB/s an SM), and for fp8 the grid path without splits for\n"
    "                       more pairs than SMs but fewer than the workers;\n"
    "                       the rows of run and check name the pick)\n"
    "  --cost-model P,I,S   the cost policy's model (padec_cost_model) in ns: partition_ns,\n"
    "                       item_ns, split_ns, as `padec bench --calibrate` fits them on a GPU\n"
    "                       (default: padec_cost_model_default)\n";

static const char run_help[] =
    "usage: padec run [FILE | --workload LINE]... [OPTIONS]\n"
    "\n"
    "Builds a random case per workload (fresh random q and KV, scattered pages), plans it, runs\n"
    "it once and prints one line per workload: the run time and whether the output has NaN or\n"
    "Inf. Exit 1 if any output does.\n"
    "\n"
    "options:\n"
    "  --backend B          cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
    "  --scale-lengths F    multiply every kv_len and window by F in (0, 1] (e.g. 0.25 or 1/16)\n"
    "  --seed S             random seed (default 1; the i-th workload run, from 0, after\n"
    "                       --only, uses S + i: rerun a row alone with --seed S + i)\n";

static const char check_help[] =
    "usage: padec check [FILE | --workload LINE]... [OPTIONS]\n"
    "\n"
    "Runs every workload on the backend and compares o and lse with the double-precision oracle:\n"
    "every element must be within 2 x (the error of a plain float implementation) + eps.\n"
    "Prints the max abs error and the tolerance per workload, PASS or FAIL, and the case of each\n"
    "failure on stderr. Exit 1 on any failure.\n"
    "\n"
    "The oracle is slow, so by default each workload is scaled down by the largest power of two\n"
    "1/2^k that leaves it at most 65536 KV tokens (sum of its kv_lens): kv_lens and the window\n"
    "are multiplied by it (a nonzero length stays at least q_len, a window at least 1). Where\n"
    "those floors keep it above 65536, the largest 1/2^k that gives the fewest tokens.\n"
    "--scale-lengths 1 checks the full sizes.\n"
    "\n"
    "options:\n"
    "  --backend B          cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
    "  --scale-lengths F    one factor in (0, 1] for every workload instead of the rule above\n"
    "  --seed S             random seed (default 1; the i-th workload run, from 0, after\n"
    "                       --only, uses S + i: rerun a row alone with --seed S + i)\n";

static const char plan_help[] =
    "usage: padec plan [FILE | --workload LINE]... [OPTIONS]\n"
    "\n"
    "Builds the schedule of every workload on the host and prints per workload: work items,\n"
    "split sequences (merge groups), partial slots and rows, the load per worker in partitions\n"
    "(min / mean / max, and max / mean), plan and workspace bytes. Then, for the same workloads\n"
    "and workers, the predicted time per worker of each policy side by side (even,\n"
    "batch_invariant, cost): min / mean / max in us and max / mean, under the cost policy's\n"
    "default model (padec_cost_model_default; docs/PERF.md says how far it is measured).\n"
    "\n"
    "options:\n"
    "  --dump               print the plans as JSON instead, per workload its \"path\":\n"
    "                       \"persistent\" with the header counts, the layout, and the\n"
    "                       buffers work_indptr, work_info (rows of 8), reduce_indptr,\n"
    "                       reduce_final_map (rows of 2), reduce_partial_map, partition_indptr\n"
    "                       (the rows and entries in use); \"grid\" (--policy auto's pick)\n"
    "                       with grid_splits and kv_lens\n"
    "  --scale-lengths F    multiply every kv_len and window by F in (0, 1]\n";

static const char bench_help[] =
    "usage: padec bench [FILE | --workload LINE]... [OPTIONS]\n"
    "\n"
    "Times every workload. Effective GB/s = bytes that must move (attended tokens x kv_heads x\n"
    "head_dim x 2 x element size) / median time.\n"
    "  cpu:  median wall time of padec_cpu_run over N runs after one warm-up; the plan build is\n"
    "        timed separately (median of max(N, 11) builds).\n"
    "  cuda: decode + merge timed with CUDA events, cold L2, median over N iterations; also the\n"
    "        device's copy bandwidth and effective / copy.\n"
    "\n"
    "options:\n"
    "  --backend B          cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
    "  --iterations N       timed runs (default 5 on the cpu, 100 on cuda, at least 50 there)\n"
    "  --csv                comma-separated output with a header line\n"
    "  --device-plan        cuda: time the device scheduler, one graph replay of the whole step\n"
    "                       (device plan + decode), and host plan + upload + decode; the\n"
    "                       even policy (the device scheduler's only)\n"
    "  --trace              cuda: after timing, one more launch with the decode kernel's\n"
    "                       timeline stamps on; per point (entry, first tiles issued, first\n"
    "                       tile landed, last tile, written, merged, exit) min / median / max\n"
    "                       over the CTAs, in us from the first CTA's entry\n"
    "  --compare            cuda: per workload, effective / copy of every path and policy (the\n"
    "                       persistent kernel under even, batch_invariant and cost, the grid path\n"
    "                       with its recommended splits) and of `auto`'s pick, with auto / best\n"
    "                       (a pick with another worker or split count is timed too, and its\n"
    "                       ratio shown)\n"
    "  --calibrate          cuda only: fit the cost policy's model (padec_cost_model) on this\n"
    "                       GPU instead of timing workloads: synthetic batches in which every\n"
    "                       worker gets k items of P partitions, whole or split, timed as above\n"
    "                       (about 30 points, under a minute); prints the fitted constants, the\n"
    "                       residuals and a line to paste as the new defaults. Takes --workers\n"
    "                       (default: the GPU's recommendation) and --iterations (default 100)\n"
    "                       and no workloads. Exit 2 without a GPU.\n"
    "  --scale-lengths F    multiply every kv_len and window by F in (0, 1]\n"
    "  --seed S             cpu: random seed (default 1); the cuda benchmark's data is fixed\n";

int cli_print_help(const char *command, FILE *stream) {
  const char *text = NULL;
  if (!command) {
    fputs(overview_help, stream);
    return 0;
  }
  if (strcmp(command, "run") == 0)
    text = run_help;
  else if (strcmp(command, "check") == 0)
    text = check_help;
  else if (strcmp(command, "plan") == 0)
    text = plan_help;
  else if (strcmp(command, "bench") == 0)
    text = bench_help;
  else if (strcmp(command, "help") == 0) {
    fputs(
        "usage: padec help [COMMAND]\n\nPrints the help of COMMAND (run, check, plan, bench), "
        "or the overview.\n",
        stream);
    return 0;
  } else {
    return -1;
  }
  fputs(text, stream);
  fputs(common_help, stream);
  fputs("\n", stream);
  fputs(workload_help, stream);
  return 0;
}

static void print_version(void) {
  unsigned library = padec_version_number();
  printf("padec %d.%d.%d (library %u.%u.%u, CUDA kernels: %s)\n", PADEC_VERSION_MAJOR,
         PADEC_VERSION_MINOR, PADEC_VERSION_PATCH, library / 10000, library / 100 % 100,
         library % 100,
#ifdef PADEC_HAVE_CUDA
         "built"
#else
         "not built"
#endif
  );
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) {
    fputs(overview_help, stderr);
    return CLI_EXIT_USAGE;
  }
  const char *command = argv[1];
  if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
    cli_print_help(NULL, stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(command, "--version") == 0 || strcmp(command, "version") == 0) {
    print_version();
    return CLI_EXIT_OK;
  }
  if (strcmp(command, "help") == 0) {
    if (argc > 3) {
      fprintf(stderr, "padec help: give one command, e.g. 'padec help check'\n");
      return CLI_EXIT_USAGE;
    }
    if (cli_print_help(argc == 3 ? argv[2] : NULL, stdout) != 0) {
      fprintf(stderr, "padec help: unknown command '%s' (commands: run, check, plan, bench)\n",
              argv[2]);
      return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
  }
  if (strcmp(command, "run") == 0) return cli_cmd_run(argc - 1, argv + 1);
  if (strcmp(command, "check") == 0) return cli_cmd_check(argc - 1, argv + 1);
  if (strcmp(command, "plan") == 0) return cli_cmd_plan(argc - 1, argv + 1);
  if (strcmp(command, "bench") == 0) return cli_cmd_bench(argc - 1, argv + 1);
  fprintf(stderr,
          "padec: unknown command '%s' (commands: run, check, plan, bench, help)\n"
          "Try 'padec --help'.\n",
          command);
  return CLI_EXIT_USAGE;
}

int main(int argc, char **argv) {
  int rc = dispatch(argc, argv);
  /* Output that never reached its file (a full disk, a closed pipe) is a failure: a script that
   * reads the CSV or the JSON would take a truncated table for a whole one. */
  errno = 0;
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "padec: writing the output failed%s%s\n", errno ? ": " : "",
            errno ? strerror(errno) : "");
    if (rc == CLI_EXIT_OK) rc = CLI_EXIT_FAILURE;
  }
  return rc;
}
