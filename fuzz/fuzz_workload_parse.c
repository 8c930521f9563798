/*
 * libFuzzer target: the workload parser (bench/workload.c, padec_workload_parse).
 *
 * The input bytes, cut at the first NUL, are one workload line. Whatever they are, the parser
 * must not crash, leak, read or write out of bounds, or hit undefined behaviour, and its answer
 * must be consistent:
 *   - on failure: -1, a NUL-terminated, non-empty message within err, and the workload untouched;
 *   - on success: 0, params that padec_params_validate accepts, a batch in 0..2^24 with a
 *     kv_lens array of that many non-negative lengths, a NUL-terminated name, and a layout that
 *     padec_plan_layout_init accepts (the parser promises a parsed workload can be planned).
 *     Small batches are also planned and built, so the lengths reach the scheduler.
 * A small err buffer is used for every other input, so truncated messages are exercised too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int condition, const char *what, const char *line) {
  if (condition) return;
  fprintf(stderr, "fuzz_workload_parse: invariant violated: %s\n  line: %.200s\n", what, line);
  abort();
}

/* Builds a plan for a parsed workload with a few worker counts; must succeed. */
static void plan_workload(const padec_workload *w, const char *line) {
  const int32_t workers[] = {1, w->params.num_kv_heads, 3 * w->params.num_kv_heads + 1};
  for (size_t i = 0; i < sizeof workers / sizeof workers[0]; ++i) {
    padec_plan_options options = {workers[i] > 65536 ? 65536 : workers[i], 0, PADEC_POLICY_EVEN};
    padec_plan_layout layout;
    padec_status status = padec_plan_layout_init(&w->params, w->batch, &options, &layout);
    require(status == PADEC_STATUS_OK, "a parsed workload's layout is rejected", line);
    if (w->batch > 4096 || layout.plan_bytes > ((size_t)1 << 22)) continue;
    void *plan = aligned_alloc(16, (layout.plan_bytes + 15) / 16 * 16);
    require(plan != NULL, "out of memory", line);
    status = padec_plan_build(&w->params, &layout, w->kv_lens, plan, layout.plan_bytes);
    /* SIZE_OVERFLOW is the documented answer for more than 2^31 partitions in a batch. */
    require(status == PADEC_STATUS_OK || status == PADEC_STATUS_SIZE_OVERFLOW,
            "a parsed workload's plan does not build", line);
    free(plan);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *line = malloc(size + 1);
  if (!line) return 0;
  memcpy(line, data, size);
  line[size] = '\0';

  /* Alternate between a roomy and a tiny message buffer (truncation), keyed on the size. */
  char err_storage[512];
  const size_t err_size = size % 3 == 0 ? 7 : sizeof err_storage;
  memset(err_storage, 0x5a, sizeof err_storage);

  padec_workload w, before;
  memset(&w, 0xa5, sizeof w);
  memcpy(&before, &w, sizeof w);
  const int rc = padec_workload_parse(line, &w, err_storage, err_size);
  if (rc != 0) {
    require(rc == -1, "padec_workload_parse returned neither 0 nor -1", line);
    require(memchr(err_storage, '\0', err_size) != NULL, "the message is not NUL-terminated", line);
    require(err_storage[0] != '\0', "the message is empty", line);
    for (size_t i = err_size; i < sizeof err_storage; ++i)
      require(err_storage[i] == 0x5a, "the message overflowed err_size", line);
    require(memcmp(&w, &before, sizeof w) == 0, "a failed parse wrote the workload", line);
    free(line);
    return 0;
  }

  require(memchr(w.name, '\0', sizeof w.name) != NULL && w.name[0] != '\0',
          "the name is not a NUL-terminated, non-empty string", line);
  require(padec_params_validate(&w.params) == PADEC_STATUS_OK, "parsed params are invalid", line);
  require(w.batch >= 0 && w.batch <= (1 << 24), "batch outside 0..2^24", line);
  require(w.batch == 0 || w.kv_lens != NULL, "kv_lens is NULL", line);
  for (int32_t b = 0; b < w.batch; ++b) require(w.kv_lens[b] >= 0, "a negative length", line);
  (void)padec_workload_bytes(&w);
  plan_workload(&w, line);
  padec_workload_free(&w);
  require(w.kv_lens == NULL && w.batch == 0, "padec_workload_free left the workload set", line);
  free(line);
  return 0;
}
