/*
 * The host side of `padec bench --calibrate` (bench/calibrate.h), which a machine without a GPU
 * can check: every point of the design gives each worker the work it is meant to (read back from
 * the even plan: k items of P partitions, whole or as pieces of split sequences), the fit recovers
 * a known model from times synthesised with it (exactly, and within a few percent under noise),
 * refuses too few points, and the report carries the line to paste as the new defaults. The
 * design's total KV traffic is checked to keep the calibration well inside its minute on an H100.
 * Without a GPU, padec_gpu_calibrate fails with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "gpu.h"
#include "test_support.h"


static padec_calibration calibration;

/* What each point is meant to give the busiest worker, from its label. */
static void expected_work(const padec_calibration_point *p, int32_t bins, int32_t *items,
                          int32_t *partitions, int32_t *split_items) {
  int k = 0, parts = 0;
  if (sscanf(p->label, "whole k=%d P=%d", &k, &parts) == 2) {
    *items = k;
    *partitions = k * parts;
    *split_items = 0;
  } else if (sscanf(p->label, "split k=%d P=%d", &k, &parts) == 2) {
    *items = k;
    *partitions = k * parts;
    /* With two bins per head there is no inner bin: each holds one piece and one whole. */
    *split_items = k == 2 && bins == 2 ? 1 : k;
  } else {
    *items = *partitions = *split_items = -1;
  }
}

static void test_design(int32_t workers) {
  padec_calibration *c = &calibration;
  padec_calibration_design(c, workers);
  const int32_t bins = workers / c->params.num_kv_heads;
  CHECK(c->num_points == 29, "%d points", c->num_points);
  CHECK(padec_params_validate(&c->params) == PADEC_STATUS_OK, "reference params: %s",
        padec_last_message());
  double kv_bytes = 0.0;
  for (int i = 0; i < c->num_points; ++i) {
    padec_calibration_point *p = &c->points[i];
    char err[256] = "";
    CHECK(padec_calibration_regressors(c, p, err, sizeof err) == 0, "%s", err);
    int32_t items, partitions, split_items;
    expected_work(p, bins, &items, &partitions, &split_items);
    CHECK(p->items == items && p->partitions == partitions && p->split_items == split_items,
          "W %d %s: the busiest worker runs %d items, %d partitions, %d pieces; want %d, %d, %d",
          workers, p->label, p->items, p->partitions, p->split_items, items, partitions,
          split_items);
    if (p->twin >= 0) {
      const padec_calibration_point *t = &c->points[p->twin];
      CHECK(t->split_items == 0 && t->items == p->items && t->partitions == p->partitions,
            "W %d %s: twin %s runs %d items, %d partitions, %d pieces", workers, p->label,
            t->label, t->items, t->partitions, t->split_items);
    }
    int64_t tokens = 0;
    int32_t *lens = malloc(sizeof(int32_t) * (size_t)p->batch);
    if (!lens) exit(1);
    padec_calibration_lengths(p, lens);
    for (int32_t b = 0; b < p->batch; ++b) tokens += lens[b];
    free(lens);
    kv_bytes += (double)tokens * c->params.num_kv_heads * c->params.head_dim * 2 * 2;
  }
  if (workers == 264) {
    /* 105 runs of each point (100 timed, 5 warm-ups) at 2 TB/s, well below an H100's copy rate,
     * plus the flush and the copy ceiling: a few seconds of the minute. */
    const double seconds = kv_bytes * 105 / 2e12 + c->num_points * (105 * 0.2e-3 + 12 * 1.5e-3);
    fprintf(stderr,
            "  design for 264 workers: %.1f GB of K and V per sweep, about %.1f s of GPU time\n",
            kv_bytes / 1e9, seconds);
    CHECK(seconds < 20.0, "the design needs about %.1f s of GPU time", seconds);
  }
}

static void test_fit(void) {
  padec_calibration *c = &calibration;
  padec_calibration_design(c, 264);
  for (int i = 0; i < c->num_points; ++i) {
    char err[256];
    if (padec_calibration_regressors(c, &c->points[i], err, sizeof err) != 0) {
      CHECK(0, "%s", err);
      return;
    }
  }
  const double intercept = 9.5, item = 1.7, partition = 5.3, split = 0.65; /* us */
  for (int noisy = 0; noisy < 2; ++noisy) {
    uint64_t state = 0x243f6a8885a308d3ull;
    for (int i = 0; i < c->num_points; ++i) {
      padec_calibration_point *p = &c->points[i];
      double t = intercept + item * p->items + partition * p->partitions + split * p->split_items;
      if (noisy) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        t *= 1.0 + 0.01 * ((double)(state >> 11) / 9007199254740992.0 - 0.5); /* +-0.5% */
      }
      p->measured_us = t;
      p->measured = 1;
    }
    CHECK(padec_calibration_fit_model(c) == 0 && c->fit.ok, "the fit failed");
    const padec_calibration_fit *f = &c->fit;
    const double tolerance = noisy ? 0.08 : 1e-9;
    CHECK(fabs(f->partition_ns - partition * 1e3) <= tolerance * partition * 1e3 &&
              fabs(f->item_ns - item * 1e3) <= tolerance * 4 * item * 1e3 &&
              fabs(f->split_ns - split * 1e3) <= tolerance * 8 * split * 1e3 + 1e-6 &&
              fabs(f->intercept_us - intercept) <= tolerance * 4 * intercept + 1e-9,
          "noise %d: fitted %.2f us + %.1f / %.1f / %.1f ns, want %.2f us + %.1f / %.1f / %.1f",
          noisy, f->intercept_us, f->item_ns, f->partition_ns, f->split_ns, intercept,
          item * 1e3, partition * 1e3, split * 1e3);
    CHECK(noisy ? f->max_relative_residual < 0.02 : f->rms_residual_us < 1e-9,
          "noise %d: residuals rms %g us, largest relative %g", noisy, f->rms_residual_us,
          f->max_relative_residual);
    fprintf(stderr, "  fit%s: %.2f us + items x %.1f + partitions x %.1f + pieces x %.1f ns\n",
            noisy ? " (0.5% noise)" : "", f->intercept_us, f->item_ns, f->partition_ns,
            f->split_ns);
  }
  /* The report: the table, the fit and the line to paste. */
  snprintf(c->device, sizeof c->device, "synthetic");
  FILE *f = tmpfile();
  if (f) {
    padec_calibration_print(f, c);
    char text[16384];
    rewind(f);
    const size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    CHECK(strstr(text, "static const padec_cost_model default_model = {") != NULL &&
              strstr(text, "split k=2 P=8") != NULL && strstr(text, "residuals") != NULL,
          "report:\n%s", text);
  }
  /* Too few measured points: no fit. */
  for (int i = 3; i < c->num_points; ++i) c->points[i].measured = 0;
  CHECK(padec_calibration_fit_model(c) == -1 && !c->fit.ok, "a fit from three points");
  /* Points that cannot separate the split from the item cost: singular. */
  for (int i = 0; i < c->num_points; ++i) c->points[i].measured = c->points[i].twin < 0 ? 1 : 0;
  CHECK(padec_calibration_fit_model(c) == -1, "a fit without split points");
}

static void test_no_gpu(void) {
  if (padec_gpu_available()) return; /* a real calibration is `padec bench --calibrate` */
  char err[256] = "";
  CHECK(padec_gpu_calibrate(0, 0, &calibration, err, sizeof err) == -1 && err[0] != '\0',
        "padec_gpu_calibrate without a GPU: '%s'", err);
}

int main(void) {
  test_design(264);
  test_design(132);
  test_design(40);
  test_design(16);
  test_fit();
  test_no_gpu();
  if (test_failures) {
    fprintf(stderr, "test_calibrate_fit: %d failure(s)\n", test_failures);
    return 1;
  }
  fprintf(stderr, "test_calibrate_fit: ok\n");
  return 0;
}
