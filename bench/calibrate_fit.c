/* The host side of the cost-model calibration (see calibrate.h): the design, the regressors read
 * from the even plans, the least-squares fit and the report. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"

enum { REFERENCE_KV_HEADS = 8, REFERENCE_PARTITION = 256 };

static void add_point(padec_calibration *c, const char *label, int32_t batch, int32_t kv_len,
                      int32_t edge_len, int32_t twin) {
  if (c->num_points >= PADEC_CALIBRATION_MAX_POINTS) return;
  padec_calibration_point *p = &c->points[c->num_points++];
  memset(p, 0, sizeof *p);
  snprintf(p->label, sizeof p->label, "%s", label);
  p->batch = batch;
  p->kv_len = kv_len;
  p->edge_len = edge_len;
  p->twin = twin;
}

void padec_calibration_design(padec_calibration *c, int32_t num_workers) {
  memset(c, 0, sizeof *c);
  c->params.num_kv_heads = REFERENCE_KV_HEADS;
  c->params.num_q_heads = 4 * REFERENCE_KV_HEADS;
  c->params.head_dim = 128;
  c->params.page_size = 16;
  c->params.kv_layout = PADEC_LAYOUT_NHD;
  c->params.q_dtype = PADEC_DTYPE_BF16;
  c->params.kv_dtype = PADEC_DTYPE_BF16;
  c->params.o_dtype = PADEC_DTYPE_BF16;
  c->params.q_len = 1;
  c->num_workers = num_workers;
  c->partition_tokens = REFERENCE_PARTITION;
  const int32_t bins = num_workers / REFERENCE_KV_HEADS > 0 ? num_workers / REFERENCE_KV_HEADS : 1;
  static const int32_t ks[] = {1, 2, 4, 8}, ps[] = {1, 2, 4, 8, 16};
  char label[32];
  int32_t whole_index[4][5];
  for (int ki = 0; ki < 4; ++ki)
    for (int pi = 0; pi < 5; ++pi) {
      snprintf(label, sizeof label, "whole k=%d P=%d", ks[ki], ps[pi]);
      whole_index[ki][pi] = c->num_points;
      add_point(c, label, bins * ks[ki], ps[pi] * REFERENCE_PARTITION,
                ps[pi] * REFERENCE_PARTITION, -1);
    }
  /* One sequence of N P partitions: one piece of P per worker; twin: whole k=1 P. */
  for (int pi = 0; pi < 5; ++pi) {
    snprintf(label, sizeof label, "split k=1 P=%d", ps[pi]);
    const int32_t len = bins * ps[pi] * REFERENCE_PARTITION;
    add_point(c, label, 1, len, len, whole_index[0][pi]);
  }
  /* N + 1 sequences of 2 Q partitions, Q at both ends: two pieces of Q per inner worker; twin:
   * whole k=2 P=Q. */
  for (int pi = 0; pi < 4; ++pi) {
    snprintf(label, sizeof label, "split k=2 P=%d", ps[pi]);
    add_point(c, label, bins + 1, 2 * ps[pi] * REFERENCE_PARTITION, ps[pi] * REFERENCE_PARTITION,
              whole_index[1][pi]);
  }
}

void padec_calibration_lengths(const padec_calibration_point *point, int32_t *kv_lens) {
  for (int32_t b = 0; b < point->batch; ++b)
    kv_lens[b] = (b == 0 || b == point->batch - 1) ? point->edge_len : point->kv_len;
}

int padec_calibration_workload(const padec_calibration *c, const padec_calibration_point *point,
                               padec_workload *workload) {
  memset(workload, 0, sizeof *workload);
  snprintf(workload->name, sizeof workload->name, "calibrate %s", point->label);
  workload->params = c->params;
  workload->batch = point->batch;
  workload->kv_lens = malloc(sizeof(int32_t) * (size_t)(point->batch > 0 ? point->batch : 1));
  if (!workload->kv_lens) return -1;
  padec_calibration_lengths(point, workload->kv_lens);
  return 0;
}

padec_plan_options padec_calibration_options(const padec_calibration *c) {
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = c->num_workers;
  options.partition_tokens = c->partition_tokens;
  options.policy = PADEC_POLICY_EVEN;
  return options;
}

int padec_calibration_regressors(const padec_calibration *c, padec_calibration_point *point,
                                 char *err, size_t err_size) {
  padec_workload w;
  if (padec_calibration_workload(c, point, &w) != 0) {
    snprintf(err, err_size, "out of memory");
    return -1;
  }
  const padec_plan_options options = padec_calibration_options(c);
  padec_plan_layout layout;
  void *plan = NULL;
  double *worker_ns = NULL;
  int rc = -1;
  if (padec_plan_layout_init(&c->params, w.batch, &options, &layout) != PADEC_STATUS_OK) {
    snprintf(err, err_size, "%s: plan layout: %s", point->label, padec_last_message());
    goto done;
  }
  plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  worker_ns = malloc(sizeof(double) * (size_t)c->num_workers);
  if (!plan || !worker_ns) {
    snprintf(err, err_size, "out of memory");
    goto done;
  }
  padec_plan_view v;
  if (padec_plan_build(&c->params, &layout, w.kv_lens, plan, layout.plan_bytes) !=
          PADEC_STATUS_OK ||
      padec_plan_predict(&c->params, &layout, plan, NULL, worker_ns) != PADEC_STATUS_OK ||
      padec_plan_view_init(&layout, plan, &v) != PADEC_STATUS_OK) {
    snprintf(err, err_size, "%s: plan: %s", point->label, padec_last_message());
    goto done;
  }
  int32_t busiest = 0;
  for (int32_t worker = 1; worker < c->num_workers; ++worker)
    if (worker_ns[worker] > worker_ns[busiest]) busiest = worker;
  point->items = point->partitions = point->split_items = 0;
  for (int32_t i = v.work_indptr[busiest]; i < v.work_indptr[busiest + 1]; ++i) {
    const int32_t *row = v.work_info + 8 * (int64_t)i;
    point->items += 1;
    point->partitions += row[5] - row[4];
    point->split_items += row[1] >= 0;
  }
  rc = 0;
done:
  free(plan);
  free(worker_ns);
  padec_workload_free(&w);
  return rc;
}

/* Solves the n x n system a x = b (a row-major, destroyed) by Gaussian elimination with partial
 * pivoting. Returns 0, or -1 when a pivot is negligible against the matrix's scale. */
static int solve(double *a, double *b, double *x, int n) {
  double scale = 0.0;
  for (int i = 0; i < n * n; ++i) scale = fabs(a[i]) > scale ? fabs(a[i]) : scale;
  if (!(scale > 0.0)) return -1;
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int row = col + 1; row < n; ++row)
      if (fabs(a[row * n + col]) > fabs(a[pivot * n + col])) pivot = row;
    if (fabs(a[pivot * n + col]) < 1e-12 * scale) return -1;
    if (pivot != col) {
      for (int k = 0; k < n; ++k) {
        const double t = a[col * n + k];
        a[col * n + k] = a[pivot * n + k];
        a[pivot * n + k] = t;
      }
      const double t = b[col];
      b[col] = b[pivot];
      b[pivot] = t;
    }
    for (int row = col + 1; row < n; ++row) {
      const double f = a[row * n + col] / a[col * n + col];
      for (int k = col; k < n; ++k) a[row * n + k] -= f * a[col * n + k];
      b[row] -= f * b[col];
    }
  }
  for (int row = n - 1; row >= 0; --row) {
    double sum = b[row];
    for (int k = row + 1; k < n; ++k) sum -= a[row * n + k] * x[k];
    x[row] = sum / a[row * n + row];
  }
  return 0;
}

int padec_calibration_fit_model(padec_calibration *c) {
  enum { K = 4 };
  double ata[K * K], atb[K], x[K];
  memset(ata, 0, sizeof ata);
  memset(atb, 0, sizeof atb);
  memset(&c->fit, 0, sizeof c->fit);
  int measured = 0;
  for (int i = 0; i < c->num_points; ++i) {
    const padec_calibration_point *p = &c->points[i];
    if (!p->measured) continue;
    /* Relative residuals: timing noise grows with the time, and the small points are the ones
     * that resolve the per-item and per-split costs. */
    if (!(p->measured_us > 0.0)) continue;
    const double weight = 1.0 / (p->measured_us * p->measured_us);
    const double row[K] = {1.0, p->items, p->partitions, p->split_items};
    for (int r = 0; r < K; ++r) {
      for (int k = 0; k < K; ++k) ata[r * K + k] += weight * row[r] * row[k];
      atb[r] += weight * row[r] * p->measured_us;
    }
    measured += 1;
  }
  if (measured < K || solve(ata, atb, x, K) != 0) return -1;
  padec_calibration_fit *f = &c->fit;
  f->ok = 1;
  f->intercept_us = x[0];
  f->item_ns = x[1] * 1e3;
  f->partition_ns = x[2] * 1e3;
  f->split_ns = x[3] * 1e3;
  double squares = 0.0;
  for (int i = 0; i < c->num_points; ++i) {
    padec_calibration_point *p = &c->points[i];
    p->fitted_us = x[0] + x[1] * p->items + x[2] * p->partitions + x[3] * p->split_items;
    if (!p->measured) continue;
    const double residual = p->measured_us - p->fitted_us;
    squares += residual * residual;
    if (fabs(residual) > f->max_abs_residual_us) f->max_abs_residual_us = fabs(residual);
    if (p->measured_us > 0.0 && fabs(residual) / p->measured_us > f->max_relative_residual)
      f->max_relative_residual = fabs(residual) / p->measured_us;
  }
  f->rms_residual_us = sqrt(squares / measured);
  return 0;
}

void padec_calibration_print(FILE *stream, const padec_calibration *c) {
  const padec_params *p = &c->params;
  fprintf(stream,
          "padec bench --calibrate: %s; %d workers (%d bins per KV head); %d iterations per "
          "point; %.1f s\n"
          "reference shape: %d KV heads, %d q heads, head_dim %d, bf16 KV (NHD, page %d), q_len "
          "%d, %d-token partitions, even policy; times: decode + merge, CUDA events, cold L2, "
          "median\n",
          c->device[0] ? c->device : "(no device)", c->num_workers,
          c->num_workers / p->num_kv_heads, c->iterations, c->seconds, p->num_kv_heads,
          p->num_q_heads, p->head_dim, p->page_size, p->q_len, c->partition_tokens);
  fprintf(stream, "%-16s %6s %9s %9s %6s %6s %6s %12s %10s %12s\n", "point", "batch", "kv_len",
          "edge_len", "items", "parts", "split", "measured_us", "fitted_us", "residual_us");
  for (int i = 0; i < c->num_points; ++i) {
    const padec_calibration_point *q = &c->points[i];
    fprintf(stream, "%-16s %6d %9d %9d %6d %6d %6d", q->label, q->batch, q->kv_len, q->edge_len,
            q->items, q->partitions, q->split_items);
    if (q->measured && c->fit.ok)
      fprintf(stream, " %12.2f %10.2f %+12.2f\n", q->measured_us, q->fitted_us,
              q->measured_us - q->fitted_us);
    else if (q->measured)
      fprintf(stream, " %12.2f %10s %12s\n", q->measured_us, "-", "-");
    else
      fprintf(stream, " %12s %10s %12s\n", "not run", "-", "-");
  }
  const padec_calibration_fit *f = &c->fit;
  if (!f->ok) {
    fprintf(stream, "fit: not enough independent measured points\n");
    return;
  }
  fprintf(stream,
          "fit: time = intercept + items x item_ns + partitions x partition_ns + split pieces x "
          "split_ns (least squares of the relative residuals over the measured points; items, "
          "partitions and pieces of the busiest worker)\n"
          "  intercept     %10.2f us  (paid once by every worker: launch, the last merge)\n"
          "  partition_ns  %10.1f     (per %d-token partition of one KV head, head_dim %d, bf16, "
          "per worker)\n"
          "  item_ns       %10.1f\n"
          "  split_ns      %10.1f\n"
          "  residuals: rms %.2f us, largest %.2f us (largest relative %.1f%%)\n",
          f->intercept_us, f->partition_ns, c->partition_tokens, p->head_dim, f->item_ns,
          f->split_ns, f->rms_residual_us, f->max_abs_residual_us,
          100.0 * f->max_relative_residual);
  fprintf(stream, "split against unsplit (same items and partitions per worker), per piece:\n");
  for (int i = 0; i < c->num_points; ++i) {
    const padec_calibration_point *q = &c->points[i];
    if (q->twin < 0 || !q->measured || q->split_items == 0) continue;
    const padec_calibration_point *t = &c->points[q->twin];
    if (!t->measured) continue;
    fprintf(stream, "  %-16s - %-16s %+8.2f us\n", q->label, t->label,
            (q->measured_us - t->measured_us) / q->split_items);
  }
  const double item = f->item_ns > 0.0 ? f->item_ns : 0.0;
  const double split = f->split_ns > 0.0 ? f->split_ns : 0.0;
  if (f->item_ns < 0.0 || f->split_ns < 0.0)
    fprintf(stream, "note: a negative constant is below the noise of these points; 0 below\n");
  if (!(f->partition_ns > 0.0)) {
    fprintf(stream, "note: partition_ns is not positive: the measurements are not usable\n");
    return;
  }
  fprintf(stream,
          "new defaults: paste over the default_model line of src/sched/cost.c (and record them in "
          "docs/PERF.md):\n"
          "static const padec_cost_model default_model = {%.1f, %.1f, %.1f}; /* padec bench "
          "--calibrate: %s, %d workers */\n"
          "or try them first: padec bench --policy cost --cost-model %.1f,%.1f,%.1f\n",
          f->partition_ns, item, split, c->device[0] ? c->device : "(no device)", c->num_workers,
          f->partition_ns, item, split);
}
