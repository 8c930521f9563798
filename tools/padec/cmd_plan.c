/* `padec plan`: the schedule of every workload, as a summary table or (--dump) as JSON. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"

typedef struct plan_stats {
  int64_t load_min, load_max, load_total; /* partitions per worker */
  int32_t items_min, items_max;           /* work items per worker */
  int32_t busy_workers;                   /* workers with at least one item */
} plan_stats;

/* Predicted time per worker of a plan under a cost model (NULL: the default), in us. */
typedef struct predicted_load {
  int ok;
  double min_us, mean_us, max_us;
  char why[256]; /* without ok: the library's message, or what failed */
} predicted_load;

static void predicted_failure(predicted_load *r, const char *step) {
  r->ok = 0;
  snprintf(r->why, sizeof r->why, "%s: %s", step, padec_last_message());
}

static predicted_load predict_plan(const padec_params *params, const padec_plan_layout *layout,
                                   const void *plan, const padec_cost_model *model) {
  predicted_load r;
  memset(&r, 0, sizeof r);
  double *ns = (double *)malloc(sizeof(double) * (size_t)layout->num_workers);
  if (!ns) snprintf(r.why, sizeof r.why, "out of memory");
  if (ns && padec_plan_predict(params, layout, plan, model, ns) != PADEC_STATUS_OK)
    predicted_failure(&r, "predict");
  else if (ns) {
    double sum = 0.0;
    r.min_us = ns[0];
    for (int32_t c = 0; c < layout->num_workers; ++c) {
      sum += ns[c];
      if (ns[c] < r.min_us) r.min_us = ns[c];
      if (ns[c] > r.max_us) r.max_us = ns[c];
    }
    r.min_us *= 1e-3;
    r.max_us *= 1e-3;
    r.mean_us = sum / layout->num_workers * 1e-3;
    r.ok = 1;
  }
  free(ns);
  return r;
}

/* The same workload planned under another policy (plan only, no workspace), predicted. */
static predicted_load predict_policy(const padec_workload *w, padec_plan_options options,
                                     padec_policy policy) {
  predicted_load r;
  memset(&r, 0, sizeof r);
  options.policy = policy;
  padec_plan_layout layout;
  if (padec_plan_layout_init(&w->params, w->batch, &options, &layout) != PADEC_STATUS_OK) {
    predicted_failure(&r, "layout");
    return r;
  }
  void *plan = cli_aligned_alloc(64, layout.plan_bytes);
  if (!plan)
    snprintf(r.why, sizeof r.why, "out of memory");
  else if (padec_plan_build(&w->params, &layout, w->kv_lens, plan, layout.plan_bytes) != PADEC_STATUS_OK)
    predicted_failure(&r, "build");
  else
    r = predict_plan(&w->params, &layout, plan, options.cost_model);
  free(plan);
  return r;
}

static void format_predicted(const predicted_load *p, char *text, size_t size) {
  if (!p->ok)
    snprintf(text, size, "-");
  else if (p->max_us < 1e7)
    snprintf(text, size, "%.1f/%.1f/%.1f %.3f", p->min_us, p->mean_us, p->max_us,
             p->mean_us > 0.0 ? p->max_us / p->mean_us : 0.0);
  else /* a model of absurd times: keep the cell a cell */
    snprintf(text, size, "%.3g/%.3g/%.3g %.3f", p->min_us, p->mean_us, p->max_us,
             p->mean_us > 0.0 ? p->max_us / p->mean_us : 0.0);
}

static plan_stats compute_stats(const padec_plan_view *view, int32_t num_workers) {
  plan_stats s;
  memset(&s, 0, sizeof s);
  s.load_min = INT64_MAX;
  s.items_min = INT32_MAX;
  for (int32_t c = 0; c < num_workers; ++c) {
    const int32_t items = view->work_indptr[c + 1] - view->work_indptr[c];
    if (items < s.items_min) s.items_min = items;
    if (items > s.items_max) s.items_max = items;
    int64_t load = 0;
    for (int32_t i = view->work_indptr[c]; i < view->work_indptr[c + 1]; ++i)
      load += view->work_info[8 * (int64_t)i + 5] - view->work_info[8 * (int64_t)i + 4];
    if (load < s.load_min) s.load_min = load;
    if (load > s.load_max) s.load_max = load;
    s.load_total += load;
    s.busy_workers += view->work_indptr[c + 1] > view->work_indptr[c];
  }
  if (num_workers == 0) s.load_min = 0, s.items_min = 0;
  return s;
}

/* The length of the well-formed UTF-8 sequence at s (1 to 4), or 0 where it is not one. */
static int utf8_sequence_length(const unsigned char *s) {
  const int length = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
                                   : s[0] >= 0xf0 && s[0] <= 0xf4                ? 4
                                                                                  : 0;
  for (int i = 1; i < length; ++i)
    if ((s[i] & 0xc0) != 0x80) return 0;
  /* Overlong three- and four-byte forms, surrogates and code points past U+10FFFF. */
  if (length == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
  if (length == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
  return length;
}

/* text as a JSON string: a workload's name may hold any bytes, and a byte that is not part of
 * well-formed UTF-8 becomes U+FFFD, so that the document stays valid JSON. */
static void json_string(const char *text) {
  putchar('"');
  for (const unsigned char *s = (const unsigned char *)text; *s;) {
    const int length = utf8_sequence_length(s);
    if (length == 0) {
      printf("\\ufffd");
      ++s;
    } else if (*s == '"' || *s == '\\') {
      printf("\\%c", *s++);
    } else if (*s < 0x20) {
      printf("\\u%04x", *s++);
    } else {
      fwrite(s, 1, (size_t)length, stdout);
      s += length;
    }
  }
  putchar('"');
}

static void json_int_array(const char *name, const int32_t *values, int64_t n, int last) {
  printf("      \"%s\": [", name);
  for (int64_t i = 0; i < n; ++i) printf(i ? ", %d" : "%d", values[i]);
  printf("]%s\n", last ? "" : ",");
}

/* Rows of `width` int32s, one row per line. */
static void json_rows(const char *name, const int32_t *values, int64_t rows, int width) {
  printf("      \"%s\": [", name);
  for (int64_t r = 0; r < rows; ++r) {
    printf(r ? ",\n        [" : "\n        [");
    for (int j = 0; j < width; ++j) printf(j ? ", %d" : "%d", values[r * width + j]);
    printf("]");
  }
  printf(rows ? "\n      ],\n" : "],\n");
}

static const char *dtype_name(padec_dtype dtype) {
  switch (dtype) {
    case PADEC_DTYPE_BF16: return "bf16";
    case PADEC_DTYPE_FP16: return "fp16";
    case PADEC_DTYPE_FP32: return "fp32";
    case PADEC_DTYPE_E4M3: return "e4m3";
  }
  return "?";
}

/* A workload that --policy auto sends to the grid path has no plan: its entry says so. */
static void dump_grid_pick(const padec_workload *w, int32_t grid_splits, int first) {
  printf("%s    {\n      \"name\": ", first ? "" : ",\n");
  json_string(w->name);
  printf(",\n      \"path\": \"grid\",\n      \"grid_splits\": %d,\n", grid_splits);
  json_int_array("kv_lens", w->kv_lens, w->batch, 1);
  printf("    }");
}

static void dump_plan(const padec_workload *w, const cli_plan *plan, const padec_plan_view *v,
                      const plan_stats *s, const predicted_load *predicted, int first) {
  const padec_plan_header *h = v->header;
  const padec_plan_layout *l = &plan->layout;
  const padec_params *p = &w->params;
  printf("%s    {\n      \"name\": ", first ? "" : ",\n");
  json_string(w->name);
  printf(
      ",\n      \"path\": \"persistent\",\n"
      "      \"params\": {\"num_q_heads\": %d, \"num_kv_heads\": %d, \"head_dim\": %d, "
      "\"page_size\": %d, \"q_len\": %d, \"window_left\": %d, \"kv_dtype\": \"%s\", "
      "\"kv_layout\": \"%s\"},\n",
      p->num_q_heads, p->num_kv_heads, p->head_dim, p->page_size, p->q_len > 0 ? p->q_len : 1,
      p->window_left, dtype_name(p->kv_dtype), p->kv_layout == PADEC_LAYOUT_HND ? "hnd" : "nhd");
  printf(
      "      \"header\": {\"batch\": %d, \"num_workers\": %d, \"num_kv_heads\": %d, "
      "\"q_len\": %d, \"partition_tokens\": %d, \"policy\": \"%s\", \"num_works\": %d, "
      "\"num_partial_slots\": %d, \"num_groups\": %d, \"num_partitions\": %d},\n",
      h->batch, h->num_workers, h->num_kv_heads, h->q_len, h->partition_tokens,
      cli_policy_name((padec_policy)h->policy), h->num_works, h->num_partial_slots,
      h->num_groups, h->num_partitions);
  printf(
      "      \"layout\": {\"max_works\": %d, \"max_partial_slots\": %d, \"max_partial_rows\": %d, "
      "\"plan_bytes\": %zu, \"workspace_bytes\": %zu},\n",
      l->max_works, l->max_partial_slots, l->max_partial_rows, l->plan_bytes, l->workspace_bytes);
  printf(
      "      \"load_partitions\": {\"min\": %lld, \"max\": %lld, \"total\": %lld, "
      "\"busy_workers\": %d},\n",
      (long long)s->load_min, (long long)s->load_max, (long long)s->load_total, s->busy_workers);
  if (predicted->ok) {
    printf("      \"predicted_us\": {\"min\": %.3f, \"mean\": %.3f, \"max\": %.3f},\n",
           predicted->min_us, predicted->mean_us, predicted->max_us);
  } else {
    printf("      \"predicted_error\": ");
    json_string(predicted->why);
    printf(",\n");
  }
  json_int_array("kv_lens", w->kv_lens, w->batch, 0);
  json_int_array("work_indptr", v->work_indptr, (int64_t)h->num_workers + 1, 0);
  json_rows("work_info", v->work_info, h->num_works, 8);
  json_int_array("reduce_indptr", v->reduce_indptr, (int64_t)h->batch + 1, 0);
  json_rows("reduce_final_map", v->reduce_final_map, h->num_groups, 2);
  json_int_array("reduce_partial_map", v->reduce_partial_map, h->num_partial_slots, 0);
  json_int_array("partition_indptr", v->partition_indptr, (int64_t)h->batch + 1, 1);
  printf("    }");
}

int cli_cmd_plan(int argc, char **argv) {
  cli_options opt;
  int rc = cli_parse_options("plan", CLI_FLAG_DUMP, argc, argv, &opt);
  if (rc != CLI_EXIT_OK || opt.help) {
    if (rc == CLI_EXIT_OK) cli_print_help("plan", stdout);
    cli_options_free(&opt);
    return rc;
  }
  padec_workload *workloads = NULL;
  int count = 0;
  const char *source = NULL;
  rc = cli_load_workloads(&opt, &workloads, &count, &source);
  if (rc != CLI_EXIT_OK) {
    cli_options_free(&opt);
    return rc;
  }
  /* Workers only need the GPU when none were given; asking costs a CUDA initialisation. */
  int gpu_present = opt.workers > 0 ? 0 : padec_gpu_available();
  char scale[32];
  cli_format_scale(opt.scale > 0.0 ? opt.scale : 1.0, scale, sizeof scale);

  if (opt.dump) {
    printf("{\n  \"padec_version\": \"%d.%d.%d\",\n  \"plans\": [\n", PADEC_VERSION_MAJOR,
           PADEC_VERSION_MINOR, PADEC_VERSION_PATCH);
  } else {
    printf(
        "padec plan: %d workload%s from %s; workers %s; lengths x%s; partition %d; policy %s\n",
        count, count == 1 ? "" : "s", source,
        opt.workers > 0 ? "from --workers"
        : gpu_present   ? "recommended for the GPU"
                        : "264 (no GPU: 2 per SM of an H100)",
        scale, opt.partition_tokens ? opt.partition_tokens : 256, cli_policy_label(&opt));
    printf("%-24s %6s %7s %-15s %6s %6s %9s %6s %7s %7s %21s %6s %9s %11s\n", "workload", "batch",
           "workers", "policy", "parts", "works", "items/wkr", "split", "p_slots", "p_rows",
           "load min/mean/max", "max/mn", "plan_B", "workspace_B");
  }
  int failures = 0, dumped = 0;
  for (int i = 0; i < count; ++i) {
    padec_workload w;
    char err[1024] = "";
    if (cli_scale_workload(&workloads[i], opt.scale > 0.0 ? opt.scale : 1.0, &w) != 0) {
      fprintf(stderr, "padec plan: %s: out of memory\n", workloads[i].name);
      ++failures;
      continue;
    }
    const cli_choice choice = cli_choose(&opt, &w.params, w.batch, w.kv_lens, gpu_present);
    const padec_plan_options options = choice.options;
    if (choice.grid_splits > 0) {
      /* --policy auto picked the grid path: there is no plan to show. */
      if (opt.dump)
        dump_grid_pick(&w, choice.grid_splits, dumped++ == 0);
      else
        printf("%-24s %6d  auto: the grid path, %d split%s a (sequence, KV head), no plan\n",
               w.name, w.batch, choice.grid_splits, choice.grid_splits > 1 ? "s" : "");
      padec_workload_free(&w);
      continue;
    }
    cli_plan plan;
    padec_plan_view view;
    if (cli_plan_make(&w.params, w.batch, w.kv_lens, &options, &plan, err, sizeof err) != 0) {
      fprintf(stderr, "padec plan: %s: %s\n", w.name, err);
      ++failures;
      padec_workload_free(&w);
      continue;
    }
    if (padec_plan_view_init(&plan.layout, plan.plan, &view) != PADEC_STATUS_OK) {
      fprintf(stderr, "padec plan: %s: %s\n", w.name, padec_last_message());
      ++failures;
    } else {
      plan_stats s = compute_stats(&view, options.num_workers);
      const padec_plan_header *h = view.header;
      if (opt.dump) {
        const predicted_load predicted = predict_plan(&w.params, &plan.layout, plan.plan, options.cost_model);
        dump_plan(&w, &plan, &view, &s, &predicted, dumped++ == 0);
      } else {
        double mean = (double)s.load_total / options.num_workers;
        char load[48];
        snprintf(load, sizeof load, "%lld/%.1f/%lld", (long long)s.load_min, mean,
                 (long long)s.load_max);
        char items[24];
        snprintf(items, sizeof items, "%d-%d", s.items_min, s.items_max);
        printf("%-24s %6d %7d %-15s %6d %6d %9s %6d %7d %7d %21s %6.2f %9zu %11zu\n", w.name, w.batch,
               options.num_workers, cli_policy_name(options.policy), h->num_partitions, h->num_works, items,
               h->num_groups, h->num_partial_slots, h->num_partial_slots * h->q_len, load,
               mean > 0.0 ? (double)s.load_max / mean : 0.0, plan.layout.plan_bytes,
               plan.layout.workspace_bytes);
      }
    }
    cli_plan_free(&plan);
    padec_workload_free(&w);
  }
  if (opt.dump) {
    printf("\n  ]\n}\n");
  } else {
    printf(
        "policy: the plan's (with --policy auto, the pick); parts: partitions per KV head; "
        "items/wkr: work items per worker, min-max; split: sequences split across workers (merge "
        "groups); p_slots/p_rows: partial slots/rows; load: partitions per worker\n");
    /* Every policy side by side, for the same workloads and workers. */
    static const padec_policy policies[3] = {PADEC_POLICY_EVEN, PADEC_POLICY_BATCH_INVARIANT,
                                             PADEC_POLICY_COST};
    char model[96] = "the default cost model (padec_cost_model_default)";
    if (opt.has_cost_model)
      snprintf(model, sizeof model, "the given cost model (--cost-model %g,%g,%g)",
               opt.cost_model.partition_ns, opt.cost_model.item_ns, opt.cost_model.split_ns);
    printf("\npredicted time per worker under %s: min/mean/max us, max/mean\n", model);
    printf("%-24s", "workload");
    for (int k = 0; k < 3; ++k) printf(" %-32s", cli_policy_name(policies[k]));
    printf("\n");
    for (int i = 0; i < count; ++i) {
      padec_workload w;
      if (cli_scale_workload(&workloads[i], opt.scale > 0.0 ? opt.scale : 1.0, &w) != 0) continue;
      padec_plan_options options = cli_plan_options(&opt, &w.params, gpu_present);
      if (opt.policy_auto) {
        /* The workers of auto's plan (one CTA an SM, say), as the table above shows them. */
        const cli_choice choice = cli_choose(&opt, &w.params, w.batch, w.kv_lens, gpu_present);
        if (choice.grid_splits == 0) options.num_workers = choice.options.num_workers;
      }
      printf("%-24s", w.name);
      predicted_load predicted[3];
      for (int k = 0; k < 3; ++k) {
        predicted[k] = predict_policy(&w, options, policies[k]);
        char cell[96];
        format_predicted(&predicted[k], cell, sizeof cell);
        printf(" %-32s", cell);
      }
      printf("\n");
      /* A cell without a prediction says why under the row. */
      for (int k = 0; k < 3; ++k)
        if (!predicted[k].ok) printf("%-24s   %s: %s\n", "", cli_policy_name(policies[k]), predicted[k].why);
      padec_workload_free(&w);
    }
  }
  padec_workloads_free(workloads, count);
  cli_options_free(&opt);
  return failures ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}
