/* Options, workload loading and scaling, backend choice, plans and small utilities of the tool. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "gpu.h"

static const char default_workloads_file[] = "bench/workloads.txt";

int cli_usage_error(const char *command, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "padec %s: ", command);
  vfprintf(stderr, format, args);
  fprintf(stderr, "\nTry 'padec help %s'.\n", command);
  va_end(args);
  return CLI_EXIT_USAGE;
}

static int parse_long(const char *text, long long lo, long long hi, long long *value) {
  if (!text || !*text) return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
  *value = v;
  return 0;
}

/* A factor in (0, 1], as a decimal ("0.25") or a fraction ("1/16"). */
static int parse_scale(const char *text, double *value) {
  if (!text || !*text) return -1;
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text) return -1;
  if (*end == '/') {
    const char *denominator = end + 1;
    double d = strtod(denominator, &end);
    if (end == denominator || d <= 0.0) return -1;
    v /= d;
  }
  if (*end != '\0' || !(v > 0.0 && v <= 1.0)) return -1;
  *value = v;
  return 0;
}

/* "PARTITION_NS,ITEM_NS,SPLIT_NS", the constants `padec bench --calibrate` prints: finite, the
 * first above 0 and the others at least 0 (padec_cost_model's ranges). */
static int parse_cost_model(const char *text, padec_cost_model *model) {
  double v[3];
  const char *at = text;
  for (int k = 0; k < 3; ++k) {
    char *end = NULL;
    errno = 0;
    v[k] = strtod(at, &end);
    if (errno != 0 || end == at || !isfinite(v[k])) return -1;
    if (*end != (k < 2 ? ',' : '\0')) return -1;
    at = end + 1;
  }
  if (!(v[0] > 0.0) || v[1] < 0.0 || v[2] < 0.0) return -1;
  model->partition_ns = v[0];
  model->item_ns = v[1];
  model->split_ns = v[2];
  return 0;
}

int cli_parse_options(const char *command, unsigned flags, int argc, char **argv,
                      cli_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->command = command;
  opt->seed = 1;
  /* The valued options seen so far (known names only, so at most one each). */
  enum { CLI_VALUED_OPTIONS = 16 };
  char given_names[CLI_VALUED_OPTIONS][64];
  const char *given_values[CLI_VALUED_OPTIONS];
  int num_given = 0;
  opt->workload_lines = (const char **)malloc(sizeof(char *) * (size_t)(argc > 0 ? argc : 1));
  if (!opt->workload_lines) {
    fprintf(stderr, "padec %s: out of memory\n", command);
    return CLI_EXIT_FAILURE;
  }
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      opt->help = 1;
      continue;
    }
    if (arg[0] != '-' || arg[1] == '\0') {
      if (opt->file)
        return cli_usage_error(command, "more than one workloads file: '%s' and '%s'", opt->file,
                               arg);
      opt->file = arg;
      continue;
    }
    if (strcmp(arg, "--") == 0) return cli_usage_error(command, "unexpected '%s'", arg);

    /* --name=value or --name value */
    char name[64];
    const char *value = NULL;
    const char *eq = strchr(arg, '=');
    size_t name_length = eq ? (size_t)(eq - arg) : strlen(arg);
    if (name_length >= sizeof name) return cli_usage_error(command, "unknown option '%s'", arg);
    memcpy(name, arg, name_length);
    name[name_length] = '\0';
    if (eq) value = eq + 1;

    /* Boolean flags first. */
    if (strcmp(name, "--csv") == 0 && (flags & CLI_FLAG_CSV)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->csv = 1;
      continue;
    }
    if (strcmp(name, "--device-plan") == 0 && (flags & CLI_FLAG_DEVICE_PLAN)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->device_plan = 1;
      continue;
    }
    if (strcmp(name, "--trace") == 0 && (flags & CLI_FLAG_TRACE)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->trace = 1;
      continue;
    }
    if (strcmp(name, "--compare") == 0 && (flags & CLI_FLAG_COMPARE)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->compare = 1;
      continue;
    }
    if (strcmp(name, "--calibrate") == 0 && (flags & CLI_FLAG_CALIBRATE)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->calibrate = 1;
      continue;
    }
    if (strcmp(name, "--dump") == 0 && (flags & CLI_FLAG_DUMP)) {
      if (value) return cli_usage_error(command, "option '%s' takes no value", name);
      opt->dump = 1;
      continue;
    }

    int known = strcmp(name, "--workload") == 0 || strcmp(name, "--workers") == 0 ||
                strcmp(name, "--partition") == 0 || strcmp(name, "--policy") == 0 ||
                strcmp(name, "--cost-model") == 0 ||
                strcmp(name, "--scale-lengths") == 0 || strcmp(name, "--only") == 0 ||
                (strcmp(name, "--backend") == 0 && (flags & CLI_FLAG_BACKEND)) ||
                (strcmp(name, "--iterations") == 0 && (flags & CLI_FLAG_ITERATIONS)) ||
                (strcmp(name, "--seed") == 0 && (flags & CLI_FLAG_SEED));
    if (!known) return cli_usage_error(command, "unknown option '%s'", name);
    if (!value) {
      if (i + 1 >= argc) return cli_usage_error(command, "option '%s' needs a value", name);
      value = argv[++i];
    }
    /* Every valued option but --workload holds one value: a second one would silently win. */
    if (strcmp(name, "--workload") != 0) {
      int slot = 0;
      while (slot < num_given && strcmp(given_names[slot], name) != 0) ++slot;
      if (slot < num_given)
        return cli_usage_error(command, "option '%s' given twice ('%s', then '%s')", name,
                               given_values[slot], value);
      if (num_given < CLI_VALUED_OPTIONS) {
        snprintf(given_names[num_given], sizeof given_names[num_given], "%s", name);
        given_values[num_given++] = value;
      }
    }

    long long v = 0;
    if (strcmp(name, "--workload") == 0) {
      opt->workload_lines[opt->num_workload_lines++] = value;
    } else if (strcmp(name, "--workers") == 0) {
      if (parse_long(value, 1, 65536, &v) != 0)
        return cli_usage_error(command, "--workers %s: need an integer 1..65536", value);
      opt->workers = (int32_t)v;
    } else if (strcmp(name, "--partition") == 0) {
      if (parse_long(value, 16, 16384, &v) != 0 || (v & (v - 1)) != 0)
        return cli_usage_error(command, "--partition %s: need a power of two 16..16384 (tokens)",
                               value);
      opt->partition_tokens = (int32_t)v;
    } else if (strcmp(name, "--policy") == 0) {
      if (strcmp(value, "even") == 0) {
        opt->policy = PADEC_POLICY_EVEN;
      } else if (strcmp(value, "cost") == 0) {
        opt->policy = PADEC_POLICY_COST;
      } else if (strcmp(value, "batch_invariant") == 0) {
        opt->policy = PADEC_POLICY_BATCH_INVARIANT;
      } else if (strcmp(value, "auto") == 0) {
        opt->policy = PADEC_POLICY_EVEN;
        opt->policy_auto = 1;
      } else {
        return cli_usage_error(
            command, "--policy %s: built are 'even', 'cost', 'batch_invariant' and 'auto'", value);
      }
    } else if (strcmp(name, "--cost-model") == 0) {
      if (parse_cost_model(value, &opt->cost_model) != 0)
        return cli_usage_error(command,
                               "--cost-model %s: need PARTITION_NS,ITEM_NS,SPLIT_NS, finite, the "
                               "first above 0 and the others at least 0 (as padec bench "
                               "--calibrate prints them)",
                               value);
      opt->has_cost_model = 1;
    } else if (strcmp(name, "--scale-lengths") == 0) {
      if (parse_scale(value, &opt->scale) != 0)
        return cli_usage_error(
            command, "--scale-lengths %s: need a factor in (0, 1], e.g. 0.25 or 1/16", value);
    } else if (strcmp(name, "--only") == 0) {
      opt->only = value;
    } else if (strcmp(name, "--backend") == 0) {
      if (strcmp(value, "cpu") == 0)
        opt->backend = CLI_BACKEND_CPU;
      else if (strcmp(value, "cuda") == 0)
        opt->backend = CLI_BACKEND_CUDA;
      else if (strcmp(value, "auto") == 0)
        opt->backend = CLI_BACKEND_AUTO;
      else
        return cli_usage_error(command, "--backend %s: need cpu, cuda or auto", value);
    } else if (strcmp(name, "--iterations") == 0) {
      if (parse_long(value, 1, 1000000, &v) != 0)
        return cli_usage_error(command, "--iterations %s: need an integer 1..1000000", value);
      opt->iterations = (int)v;
    } else if (strcmp(name, "--seed") == 0) {
      if (parse_long(value, 0, INT64_MAX, &v) != 0)
        return cli_usage_error(command, "--seed %s: need a non-negative integer", value);
      opt->seed = (uint64_t)v;
    }
  }
  if (opt->file && opt->num_workload_lines > 0)
    return cli_usage_error(command, "give a workloads file ('%s') or --workload, not both",
                           opt->file);
  return CLI_EXIT_OK;
}

void cli_options_free(cli_options *opt) {
  free((void *)opt->workload_lines);
  opt->workload_lines = NULL;
}

int cli_load_workloads(const cli_options *opt, padec_workload **workloads, int *count,
                       const char **source) {
  char err[1024];
  padec_workload *list = NULL;
  int n = 0;
  if (opt->num_workload_lines > 0) {
    list = (padec_workload *)calloc((size_t)opt->num_workload_lines, sizeof *list);
    if (!list) {
      fprintf(stderr, "padec %s: out of memory\n", opt->command);
      return CLI_EXIT_FAILURE;
    }
    for (int i = 0; i < opt->num_workload_lines; ++i) {
      if (padec_workload_parse(opt->workload_lines[i], &list[n], err, sizeof err) != 0) {
        padec_workloads_free(list, n);
        return cli_usage_error(opt->command, "--workload: %s", err);
      }
      ++n;
    }
    *source = "--workload";
  } else {
    const char *path = opt->file;
    if (!path) {
      FILE *probe = fopen(default_workloads_file, "r");
      if (!probe)
        return cli_usage_error(opt->command,
                               "no workloads: give a FILE or --workload LINE (%s is not in the "
                               "current directory)",
                               default_workloads_file);
      fclose(probe);
      path = default_workloads_file;
    }
    if (padec_workload_read_file(path, &list, &n, err, sizeof err) != 0)
      return cli_usage_error(opt->command, "%s", err);
    *source = path;
  }
  if (opt->only) {
    int kept = 0;
    for (int i = 0; i < n; ++i) {
      if (strstr(list[i].name, opt->only))
        list[kept++] = list[i];
      else
        padec_workload_free(&list[i]);
    }
    n = kept;
  }
  if (n == 0) {
    padec_workloads_free(list, n);
    if (opt->only)
      return cli_usage_error(opt->command, "no workload of %s matches --only %s", *source,
                             opt->only);
    return cli_usage_error(opt->command, "no workloads in %s", *source);
  }
  *workloads = list;
  *count = n;
  return CLI_EXIT_OK;
}

int64_t cli_total_tokens(const padec_workload *w) {
  int64_t total = 0;
  for (int32_t b = 0; b < w->batch; ++b) total += w->kv_lens[b];
  return total;
}

/* A length times factor, rounded up, and never below the query tokens it holds. */
static int32_t scaled_length(int32_t len, double factor, int32_t q_len) {
  if (factor >= 1.0 || len <= 0) return len;
  const int32_t scaled = (int32_t)ceil((double)len * factor);
  const int32_t floor_len = len < q_len ? len : q_len;
  return scaled > floor_len ? scaled : floor_len;
}

static int32_t workload_q_len(const padec_workload *w) {
  return w->params.q_len > 0 ? w->params.q_len : 1;
}

int cli_scale_workload(const padec_workload *in, double factor, padec_workload *out) {
  *out = *in;
  out->kv_lens = (int32_t *)malloc(sizeof(int32_t) * (size_t)(in->batch > 0 ? in->batch : 1));
  if (!out->kv_lens) return -1;
  const int32_t q_len = workload_q_len(in);
  for (int32_t b = 0; b < in->batch; ++b) out->kv_lens[b] = scaled_length(in->kv_lens[b], factor, q_len);
  /* The window shrinks with the lengths, so that a scaled sliding-window workload still slides
   * instead of turning into full attention. */
  if (factor < 1.0 && in->params.window_left > 0) {
    int32_t window = (int32_t)llround((double)in->params.window_left * factor);
    out->params.window_left = window > 1 ? window : 1;
  }
  return 0;
}

/* The KV tokens of w once cli_scale_workload has scaled it by factor. */
static int64_t scaled_total_tokens(const padec_workload *w, double factor) {
  const int32_t q_len = workload_q_len(w);
  int64_t total = 0;
  for (int32_t b = 0; b < w->batch; ++b) total += scaled_length(w->kv_lens[b], factor, q_len);
  return total;
}

double cli_power_of_two_scale(const padec_workload *w, int64_t max_tokens) {
  double factor = 1.0;
  int64_t total = scaled_total_tokens(w, factor);
  /* Halving stops at the cap, or where it no longer shortens anything (every length at its
   * floor): the factor reported is then the largest that gives the shortest workload. */
  while (total > max_tokens && factor > 0x1p-62) { /* lengths are below 2^31: 1/2^31 floors all */
    const int64_t next = scaled_total_tokens(w, factor * 0.5);
    if (next >= total) break;
    factor *= 0.5;
    total = next;
  }
  return factor;
}

void cli_format_scale(double factor, char *text, size_t size) {
  if (factor >= 1.0) {
    snprintf(text, size, "1");
    return;
  }
  double inverse = 1.0 / factor;
  if (inverse < 1e15 && fabs(inverse - floor(inverse + 0.5)) < 1e-9) /* a whole number that fits */
    snprintf(text, size, "1/%.0f", inverse);
  else
    snprintf(text, size, "%.4g", factor);
}

int cli_use_gpu(const cli_options *opt, char *why, size_t why_size) {
  if (opt->backend == CLI_BACKEND_CPU) {
    snprintf(why, why_size, "cpu");
    return 0;
  }
  const char *missing = padec_gpu_unavailable_reason();
  const int available = missing[0] == '\0';
  if (opt->backend == CLI_BACKEND_CUDA) {
    if (!available) {
      fprintf(stderr, "padec %s: --backend cuda: %s\n", opt->command, missing);
      return -1;
    }
    snprintf(why, why_size, "cuda");
    return 1;
  }
  if (available)
    snprintf(why, why_size, "cuda (auto)");
  else
    snprintf(why, why_size, "cpu (auto: %s)", missing);
  return available ? 1 : 0;
}

int32_t cli_workers(const cli_options *opt, const padec_params *params, int gpu_present) {
  if (opt->workers > 0) return opt->workers;
  if (gpu_present) {
    int32_t workers = padec_gpu_default_workers(params);
    if (workers > 0) return workers;
  }
  return CLI_DEFAULT_WORKERS_NO_GPU;
}

padec_plan_options cli_plan_options(const cli_options *opt, const padec_params *params,
                                    int gpu_present) {
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = cli_workers(opt, params, gpu_present);
  options.partition_tokens = opt->partition_tokens;
  options.policy = opt->policy;
  if (opt->has_cost_model) options.cost_model = &opt->cost_model;
  return options;
}

void *cli_aligned_alloc(size_t alignment, size_t bytes) {
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  return aligned_alloc(alignment, rounded > 0 ? rounded : alignment);
}

int cli_plan_make(const padec_params *params, int32_t batch, const int32_t *kv_lens,
                  const padec_plan_options *options, cli_plan *plan, char *err, size_t err_size) {
  memset(plan, 0, sizeof *plan);
  padec_status status = padec_plan_layout_init(params, batch, options, &plan->layout);
  if (status != PADEC_STATUS_OK) {
    snprintf(err, err_size, "plan layout: %s", padec_last_message());
    return -1;
  }
  plan->plan = cli_aligned_alloc(64, plan->layout.plan_bytes);
  plan->workspace = cli_aligned_alloc(256, plan->layout.workspace_bytes);
  if (!plan->plan || !plan->workspace) {
    snprintf(err, err_size, "out of memory for a plan of %zu bytes and a workspace of %zu bytes",
             plan->layout.plan_bytes, plan->layout.workspace_bytes);
    cli_plan_free(plan);
    return -1;
  }
  status = padec_plan_build(params, &plan->layout, kv_lens, plan->plan, plan->layout.plan_bytes);
  if (status != PADEC_STATUS_OK) {
    snprintf(err, err_size, "plan build: %s", padec_last_message());
    cli_plan_free(plan);
    return -1;
  }
  return 0;
}

padec_status cli_plan_rebuild(const padec_params *params, const int32_t *kv_lens, cli_plan *plan) {
  return padec_plan_build(params, &plan->layout, kv_lens, plan->plan, plan->layout.plan_bytes);
}

void cli_plan_free(cli_plan *plan) {
  free(plan->plan);
  free(plan->workspace);
  plan->plan = NULL;
  plan->workspace = NULL;
}

int64_t cli_count_nonfinite(const void *data, padec_dtype dtype, int64_t n) {
  int64_t bad = 0;
  if (dtype == PADEC_DTYPE_FP32) {
    const float *f = (const float *)data;
    for (int64_t i = 0; i < n; ++i) bad += !isfinite(f[i]);
    return bad;
  }
  /* bf16 and fp16 are non-finite exactly when their exponent bits are all ones. */
  const uint16_t mask = dtype == PADEC_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
  const uint16_t *h = (const uint16_t *)data;
  for (int64_t i = 0; i < n; ++i) bad += (h[i] & mask) == mask;
  return bad;
}

int64_t cli_count_bad_lse(const float *lse, int64_t n) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += isnan(lse[i]) || (isinf(lse[i]) && lse[i] > 0.0f);
  return bad;
}

double cli_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double cli_median(double *values, int n) {
  if (n <= 0) return 0.0;
  qsort(values, (size_t)n, sizeof *values, compare_doubles);
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

int64_t cli_lse_count(const padec_case *c) { return c->num_tokens * c->params.num_q_heads; }

int cli_alloc_outputs(const padec_case *c, void **o, float **lse) {
  *o = cli_aligned_alloc(64, c->o_bytes);
  *lse = (float *)cli_aligned_alloc(64, sizeof(float) * (size_t)cli_lse_count(c));
  if (!*o || !*lse) {
    free(*o);
    free(*lse);
    *o = NULL;
    *lse = NULL;
    return -1;
  }
  return 0;
}

padec_status cli_auto_pick(const cli_options *opt, const padec_params *params, int32_t batch,
                           const int32_t *kv_lens, int32_t num_workers, int gpu_present,
                           padec_choice *picked) {
  /* The worker count and the rules that need the SMs are auto's only when --workers did not set
   * the count. */
  padec_device_shape device = {0, 0};
  if (gpu_present && opt->workers == 0) device = padec_gpu_device_shape();
  return padec_choose_for_device(params, batch, kv_lens, num_workers, &device, picked);
}

cli_choice cli_choose(const cli_options *opt, const padec_params *params, int32_t batch,
                      const int32_t *kv_lens, int gpu_present) {
  cli_choice choice;
  memset(&choice, 0, sizeof choice);
  choice.options = cli_plan_options(opt, params, gpu_present);
  if (!opt->policy_auto) return choice;
  padec_choice picked;
  /* On bad params the run itself reports the error: keep the plain options. */
  if (cli_auto_pick(opt, params, batch, kv_lens, choice.options.num_workers, gpu_present,
                    &picked) != PADEC_STATUS_OK)
    return choice;
  if (picked.path == PADEC_PATH_GRID) {
    choice.grid_splits = picked.grid_splits;
  } else {
    choice.options.policy = picked.plan_options.policy;
    choice.options.num_workers = picked.plan_options.num_workers;
  }
  return choice;
}

const char *cli_choice_name(const cli_choice *choice, char *buf, size_t size) {
  if (choice->grid_splits > 0)
    snprintf(buf, size, "grid, %d split%s", choice->grid_splits, choice->grid_splits > 1 ? "s" : "");
  else
    snprintf(buf, size, "%s, %d worker%s", cli_policy_name(choice->options.policy),
             choice->options.num_workers, choice->options.num_workers > 1 ? "s" : "");
  return buf;
}

const char *cli_workers_text(int32_t grid_splits, int32_t workers, char *buf, size_t size) {
  if (grid_splits > 0)
    snprintf(buf, size, "grid:%d", grid_splits);
  else
    snprintf(buf, size, "%d", workers);
  return buf;
}

const char *cli_policy_label(const cli_options *opt) {
  return opt->policy_auto ? "auto" : cli_policy_name(opt->policy);
}

/* The grid path of cli_execute on the CPU. */
static int execute_grid_cpu(const padec_case *c, const cli_choice *choice, void *o, float *lse,
                            double *seconds, char *err, size_t err_size) {
  padec_grid_layout layout;
  if (padec_grid_layout_init(&c->params, c->batch, choice->grid_splits,
                             choice->options.partition_tokens, &layout) != PADEC_STATUS_OK) {
    snprintf(err, err_size, "grid layout: %s", padec_last_message());
    return -1;
  }
  void *workspace = cli_aligned_alloc(256, layout.workspace_bytes);
  if (!workspace) {
    snprintf(err, err_size, "out of memory for the workspace");
    return -1;
  }
  padec_tensors tensors = padec_case_tensors(c, o, lse);
  const double start = cli_now_seconds();
  const padec_status status =
      padec_cpu_run_grid(&c->params, &layout, &tensors, workspace, layout.workspace_bytes);
  *seconds = cli_now_seconds() - start;
  free(workspace);
  if (status != PADEC_STATUS_OK) {
    snprintf(err, err_size, "padec_cpu_run_grid: %s", padec_last_message());
    return -1;
  }
  return 0;
}

int cli_execute(const padec_case *c, int use_gpu, const cli_choice *choice, void *o, float *lse,
                double *seconds, char *err, size_t err_size) {
  const padec_plan_options *options = &choice->options;
  padec_case_poison(c, o, lse);
  if (use_gpu) {
    double start = cli_now_seconds();
    int rc = choice->grid_splits > 0
                 ? padec_gpu_run_case_grid(c, choice->grid_splits, options->partition_tokens, o,
                                           lse, err, err_size)
                 : padec_gpu_run_case(c, options, o, lse, err, err_size);
    *seconds = cli_now_seconds() - start;
    return rc;
  }
  if (choice->grid_splits > 0) return execute_grid_cpu(c, choice, o, lse, seconds, err, err_size);
  cli_plan plan;
  if (cli_plan_make(&c->params, c->batch, c->kv_lens, options, &plan, err, err_size) != 0)
    return -1;
  padec_tensors tensors = padec_case_tensors(c, o, lse);
  double start = cli_now_seconds();
  padec_status status = padec_cpu_run(&c->params, &plan.layout, plan.plan, &tensors, plan.workspace,
                                      plan.layout.workspace_bytes);
  *seconds = cli_now_seconds() - start;
  cli_plan_free(&plan);
  if (status != PADEC_STATUS_OK) {
    snprintf(err, err_size, "padec_cpu_run: %s", padec_last_message());
    return -1;
  }
  return 0;
}

int cli_session_open(const char *command, unsigned flags, int argc, char **argv,
                     cli_session *session, int *ready) {
  memset(session, 0, sizeof *session);
  *ready = 0;
  int rc = cli_parse_options(command, flags, argc, argv, &session->opt);
  if (rc != CLI_EXIT_OK || session->opt.help) {
    if (rc == CLI_EXIT_OK) cli_print_help(command, stdout);
    cli_options_free(&session->opt);
    return rc;
  }
  rc = cli_load_workloads(&session->opt, &session->workloads, &session->count, &session->source);
  if (rc != CLI_EXIT_OK) {
    cli_options_free(&session->opt);
    return rc;
  }
  session->use_gpu = cli_use_gpu(&session->opt, session->backend, sizeof session->backend);
  if (session->use_gpu < 0) { /* the GPU asked for is not there: the request cannot run here */
    cli_session_close(session);
    return CLI_EXIT_USAGE;
  }
  *ready = 1;
  return CLI_EXIT_OK;
}

void cli_session_close(cli_session *session) {
  padec_workloads_free(session->workloads, session->count);
  session->workloads = NULL;
  session->count = 0;
  cli_options_free(&session->opt);
}

const char *cli_policy_name(padec_policy policy) {
  return policy == PADEC_POLICY_BATCH_INVARIANT ? "batch_invariant"
         : policy == PADEC_POLICY_COST          ? "cost"
                                                : "even";
}
