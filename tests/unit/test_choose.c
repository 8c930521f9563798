/* padec_choose (`auto`): the rule of docs/PERF.md on the shapes of the benchmark table, and its
 * argument errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "padec.h"

static int g_failures;

#define EXPECT(cond, ...)                  \
  do {                                     \
    if (!(cond)) {                         \
      fprintf(stderr, "FAIL: " __VA_ARGS__); \
      fputc('\n', stderr);                 \
      g_failures += 1;                     \
    }                                      \
  } while (0)

static padec_params params_with(int32_t q_heads, int32_t kv_heads) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = q_heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = 128;
  p.page_size = 16;
  return p;
}

static padec_choice choose(const padec_params *p, int32_t batch, const int32_t *lens) {
  padec_choice c;
  memset(&c, 0x5a, sizeof c);
  const padec_status status = padec_choose(p, batch, lens, 264, &c);
  EXPECT(status == PADEC_STATUS_OK, "padec_choose: %s", padec_last_message());
  return c;
}

static int32_t *repeat(int32_t len, int32_t count) {
  int32_t *lens = malloc(sizeof(int32_t) * (size_t)count);
  if (!lens) exit(1);
  for (int32_t i = 0; i < count; ++i) lens[i] = len;
  return lens;
}

int main(void) {
  const padec_params p = params_with(32, 8);
  /* b64-4k: 512 (sequence, KV head) blocks for 264 CTAs, even lengths: the grid, one split. */
  int32_t *even64 = repeat(4096, 64);
  padec_choice c = choose(&p, 64, even64);
  EXPECT(c.path == PADEC_PATH_GRID && c.grid_splits == 1, "b64-4k: grid with 1 split (got path %d, %d splits)",
         (int)c.path, c.grid_splits);
  /* The same shape with the lengths on the device only: still the grid (it needs no lengths). */
  c = choose(&p, 64, NULL);
  EXPECT(c.path == PADEC_PATH_GRID, "b64-4k without host lengths: grid");
  /* skew-b64: one 32k sequence among 1k ones: a plan under the cost policy. */
  int32_t *skew = repeat(1024, 64);
  skew[0] = 32768;
  c = choose(&p, 64, skew);
  EXPECT(c.path == PADEC_PATH_PERSISTENT && c.plan_options.policy == PADEC_POLICY_COST,
         "skew-b64: persistent, cost");
  EXPECT(c.plan_options.num_workers == 264 && c.plan_options.partition_tokens == 256,
         "the plan options carry the worker count and the partition size");
  /* b16-8k: 128 blocks for 264 CTAs: a plan that splits, cost. */
  int32_t *b16 = repeat(8192, 16);
  c = choose(&p, 16, b16);
  EXPECT(c.path == PADEC_PATH_PERSISTENT && c.plan_options.policy == PADEC_POLICY_COST,
         "b16-8k: persistent, cost");
  /* Without host lengths a plan must come from the device scheduler: even. */
  c = choose(&p, 16, NULL);
  EXPECT(c.path == PADEC_PATH_PERSISTENT && c.plan_options.policy == PADEC_POLICY_EVEN,
         "b16-8k without host lengths: persistent, even");
  /* g8-b128: one KV head, 128 blocks: a plan. */
  const padec_params g8 = params_with(8, 1);
  int32_t *b128 = repeat(2048, 128);
  c = choose(&g8, 128, b128);
  EXPECT(c.path == PADEC_PATH_PERSISTENT, "g8-b128-2k: persistent");
  /* An empty batch and empty sequences are fine. */
  c = choose(&p, 0, NULL);
  EXPECT(c.path == PADEC_PATH_PERSISTENT, "batch 0: persistent");
  int32_t zeros[4] = {0, 0, 0, 0};
  c = choose(&p, 4, zeros);
  EXPECT(c.grid_splits >= 1, "empty sequences: a valid split count");

  /* Errors name the argument and write nothing. */
  padec_choice untouched;
  memset(&untouched, 0x33, sizeof untouched);
  padec_choice out = untouched;
  EXPECT(padec_choose(&p, 4, zeros, 264, NULL) == PADEC_STATUS_NULL_POINTER, "NULL choice");
  EXPECT(padec_choose(&p, -1, NULL, 264, &out) == PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "batch"), "negative batch");
  EXPECT(padec_choose(&p, 4, zeros, 0, &out) == PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "num_workers"), "zero workers");
  int32_t negative[2] = {5, -3};
  EXPECT(padec_choose(&p, 2, negative, 264, &out) == PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "kv_lens[1]"), "negative kv_len");
  padec_params bad = p;
  bad.head_dim = 96;
  EXPECT(padec_choose(&bad, 2, zeros, 264, &out) == PADEC_STATUS_UNSUPPORTED_HEAD_DIM, "bad head_dim");
  EXPECT(memcmp(&out, &untouched, sizeof out) == 0, "an error wrote the choice");

  free(even64);
  free(skew);
  free(b16);
  free(b128);
  if (g_failures) return 1;
  printf("test_choose: passed\n");
  return 0;
}
