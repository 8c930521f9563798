/*
 * libFuzzer target: a plan edited after its build, then padec_plan_view_init and padec_cpu_run.
 *
 * The input's first word picks a small problem (1 or 2 KV heads, group 1 or 2, q_len 1 or 2, a
 * window or none, 1 to 4 sequences of 0 to 135 tokens, 1 to 6 workers, a policy); the plan is
 * built, and each further pair of words changes one int32 of the plan's body (past the header):
 * a small step from its value, a small value, or any value. Whatever the edits, the view check
 * must refuse the plan or the run must stay in bounds: ASan and UBSan watch the run, which
 * executes every plan the check lets through on a random case (bench/case.c). fuzz_schedule
 * only views plans as built, so it cannot see a bad plan accepted; this target can.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_EDITS = 4 };

/* The next little-endian word of the input, 0 past its end. */
static uint32_t next_word(const uint8_t **data, size_t *size) {
  uint32_t value = 0;
  for (int i = 0; i < 4 && *size > 0; ++i, ++*data, --*size) value |= (uint32_t)**data << (8 * i);
  return value;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint32_t shape = next_word(&data, &size);
  padec_params params;
  memset(&params, 0, sizeof params);
  params.num_kv_heads = 1 + (int32_t)(shape % 2);
  params.num_q_heads = params.num_kv_heads * (1 + (int32_t)((shape >> 1) % 2));
  params.head_dim = 64;
  params.page_size = 16;
  params.q_len = 1 + (int32_t)((shape >> 2) % 2);
  params.window_left = (shape >> 3) & 1 ? 20 : 0;
  const int32_t batch = 1 + (int32_t)((shape >> 4) % 4);
  int32_t lens[4];
  for (int32_t b = 0; b < batch; ++b) lens[b] = (int32_t)((shape >> (8 + 4 * b)) % 16) * 9;
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = 1 + (int32_t)((shape >> 24) % 6);
  options.partition_tokens = 16;
  const uint32_t policy = (shape >> 30) % 3;
  options.policy = policy == 0   ? PADEC_POLICY_EVEN
                   : policy == 1 ? PADEC_POLICY_COST
                                 : PADEC_POLICY_BATCH_INVARIANT;
  padec_plan_layout layout;
  if (padec_plan_layout_init(&params, batch, &options, &layout) != PADEC_STATUS_OK) return 0;
  int32_t *plan = aligned_alloc(16, (layout.plan_bytes + 15) / 16 * 16);
  if (!plan) return 0;
  if (padec_plan_build(&params, &layout, lens, plan, layout.plan_bytes) != PADEC_STATUS_OK)
    abort(); /* a problem this small always plans */
  const size_t words = layout.plan_bytes / 4, header_words = sizeof(padec_plan_header) / 4;
  for (int k = 0; k < MAX_EDITS && size >= 8 && words > header_words; ++k) {
    const uint32_t where = next_word(&data, &size), how = next_word(&data, &size);
    int32_t *word = &plan[header_words + where % (words - header_words)];
    switch (how >> 30) {
      case 0: *word += (int8_t)how; break;           /* a small step */
      case 1: *word = (int32_t)(how & 0xff) - 2; break; /* a small value, -2 .. 253 */
      default: *word = (int32_t)how; break;          /* any value */
    }
  }
  padec_plan_view view;
  if (padec_plan_view_init(&layout, plan, &view) == PADEC_STATUS_OK) {
    padec_case c;
    if (padec_case_init(&c, &params, batch, lens, 7) == 0) {
      const size_t lse_bytes = sizeof(float) * (size_t)c.num_tokens * (size_t)params.num_q_heads;
      void *o = aligned_alloc(64, (c.o_bytes + 63) / 64 * 64 + 64);
      float *lse = aligned_alloc(64, (lse_bytes + 63) / 64 * 64 + 64);
      void *workspace = aligned_alloc(64, (layout.workspace_bytes + 63) / 64 * 64 + 64);
      if (o && lse && workspace) {
        memset(workspace, 0, layout.workspace_bytes);
        const padec_tensors tensors = padec_case_tensors(&c, o, lse);
        (void)padec_cpu_run(&params, &layout, plan, &tensors, workspace, layout.workspace_bytes);
      }
      free(o);
      free(lse);
      free(workspace);
      padec_case_free(&c);
    }
  }
  free(plan);
  return 0;
}
