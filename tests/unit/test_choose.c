/* padec_choose, padec_choose_on_device and padec_choose_for_device (`auto`): the rule of
 * docs/PERF.md on the shapes of the benchmark table, and their argument errors. */
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
  /* With the SM count (132, two CTAs an SM): one CTA an SM where the (sequence, KV head) pairs
   * are no more than the SMs, on the grid path with floor(SMs / pairs) splits. */
  padec_choice on_device;
#define EXPECT_GRID(params, batch, lens, workers, sms, splits, what)                                 \
  EXPECT(padec_choose_on_device(params, batch, lens, workers, sms, &on_device) == PADEC_STATUS_OK && \
             on_device.path == PADEC_PATH_GRID && on_device.grid_splits == (splits),                 \
         "%s: grid, %d splits (got path %d, %d splits)", what, splits, (int)on_device.path,          \
         on_device.grid_splits)
  EXPECT_GRID(&g8, 128, b128, 264, 132, 1, "g8-b128-2k on 132 SMs");
  EXPECT_GRID(&p, 16, b16, 264, 132, 1, "b16-8k on 132 SMs");
  EXPECT_GRID(&p, 16, NULL, 264, 132, 1, "b16-8k on 132 SMs without host lengths");
  int32_t b1[1] = {32768};
  EXPECT_GRID(&p, 1, b1, 264, 132, 16, "b1-32k on 132 SMs (8 pairs)");
  EXPECT_GRID(&p, 1, NULL, 264, 132, 16, "b1-32k on 132 SMs without host lengths");
  /* No more splits than the longest sequence has partitions (known with host lengths only). */
  int32_t b1_short[1] = {700};
  EXPECT_GRID(&p, 1, b1_short, 264, 132, 3, "one 700-token sequence (3 partitions), 8 pairs");
  int32_t b1_empty[1] = {0};
  EXPECT_GRID(&p, 1, b1_empty, 264, 132, 1, "one empty sequence");
  /* A window caps the splits at its span (padec_grid_recommended_splits: 5 partitions for 1001
   * tokens) and, with host lengths, at the partitions it reaches (4 here). */
  padec_params windowed = p;
  windowed.window_left = 1000;
  EXPECT_GRID(&windowed, 1, NULL, 264, 132, 5, "b1 with a 1000-token window, lengths on the device");
  EXPECT_GRID(&windowed, 1, b1, 264, 132, 4, "b1-32k with a 1000-token window");
  /* Where floor(SMs / pairs) blocks a pair leave more than 1/16 of the SMs idle (9 x 8 pairs:
   * 72 CTAs on 132 SMs), a cost plan of one worker an SM. 4 x 8 pairs fill 128. */
  int32_t *b9 = repeat(8192, 9);
  EXPECT(padec_choose_on_device(&p, 9, b9, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 128 &&
             on_device.plan_options.policy == PADEC_POLICY_COST,
         "9 x 8 pairs on 132 SMs: a cost plan of 128 workers (got path %d, %d workers)",
         (int)on_device.path, on_device.plan_options.num_workers);
  EXPECT(padec_choose_on_device(&p, 9, NULL, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 128 &&
             on_device.plan_options.policy == PADEC_POLICY_EVEN,
         "9 x 8 pairs, lengths on the device: an even plan of 128 workers");
  free(b9);
  EXPECT_GRID(&p, 4, NULL, 264, 132, 4, "4 x 8 pairs on 132 SMs");
  /* One pair: every SM, past padec_grid_recommended_splits' cap of 64; with host lengths no
   * more than the sequence's partitions. */
  const padec_params single_head = params_with(8, 1);
  EXPECT_GRID(&single_head, 1, NULL, 264, 132, 132, "one pair on 132 SMs");
  EXPECT_GRID(&single_head, 1, b1, 264, 132, 128, "one 32768-token pair on 132 SMs");
  EXPECT_GRID(&single_head, 2, NULL, 264, 132, 66, "two pairs on 132 SMs");
  /* One pair more than the SMs keeps the recommended count. */
  const padec_params one_head = params_with(8, 1);
  EXPECT(padec_choose_on_device(&one_head, 133, NULL, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 264,
         "133 pairs on 132 SMs: a plan of 264 workers (got %d)", on_device.plan_options.num_workers);
  EXPECT_GRID(&one_head, 132, NULL, 264, 132, 1, "132 pairs on 132 SMs");
  /* Skewed lengths keep a cost plan of one worker an SM, a multiple of the KV heads. */
  int32_t skew16[16];
  for (int i = 0; i < 16; ++i) skew16[i] = i == 0 ? 65536 : 1024;
  EXPECT(padec_choose_on_device(&p, 16, skew16, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 128 &&
             on_device.plan_options.policy == PADEC_POLICY_COST,
         "skewed, 128 pairs on 132 SMs: a cost plan of 128 workers (got path %d, %d workers)",
         (int)on_device.path, on_device.plan_options.num_workers);
  /* A device of one CTA an SM, or an unknown SM count: a plan of the given workers. */
  EXPECT(padec_choose_on_device(&g8, 128, b128, 132, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 132,
         "one CTA an SM already: a plan of 132 workers");
  EXPECT(padec_choose_on_device(&g8, 128, b128, 264, 0, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 264,
         "SM count unknown: a plan of 264 workers");
  /* The grid path is unaffected, and so is a skewed batch of many pairs. */
  EXPECT(padec_choose_on_device(&p, 64, even64, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_GRID, "b64-4k on 132 SMs: grid");
  EXPECT(padec_choose_on_device(&p, 64, skew, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.plan_options.num_workers == 264, "skew-b64 on 132 SMs: 264 workers");
  /* More KV heads than SMs: even one sequence outnumbers the SMs, and the count stays. */
  const padec_params many_heads = params_with(64, 16);
  EXPECT(padec_choose_on_device(&many_heads, 1, NULL, 48, 8, &on_device) == PADEC_STATUS_OK &&
             on_device.plan_options.num_workers == 48, "16 pairs on 8 SMs: 48 workers");
  /* 16 pairs on 24 SMs: one block a pair would leave a third of the SMs idle; a plan of one
   * worker an SM, rounded down to the 16 KV heads. */
  EXPECT(padec_choose_on_device(&many_heads, 1, NULL, 48, 24, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 16,
         "16 pairs on 24 SMs: a plan of 16 workers (got %d)", on_device.plan_options.num_workers);
  /* fp8 between the SMs and the workers: the grid path, one split; not with bf16, nor skewed,
   * nor without the SM count. */
  padec_params fp8 = p;
  fp8.kv_dtype = PADEC_DTYPE_E4M3;
  int32_t *b20 = repeat(8192, 20);
  EXPECT(padec_choose_on_device(&fp8, 20, b20, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_GRID && on_device.grid_splits == 1,
         "fp8, 160 pairs on 132 SMs: grid, 1 split (got path %d, %d splits)", (int)on_device.path,
         on_device.grid_splits);
  EXPECT(padec_choose_on_device(&fp8, 20, NULL, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_GRID && on_device.grid_splits == 1,
         "fp8, 160 pairs, lengths on the device: grid, 1 split");
  EXPECT_GRID(&fp8, 16, b16, 264, 132, 1, "fp8, 128 pairs on 132 SMs");
  EXPECT(padec_choose_on_device(&p, 20, b20, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT && on_device.plan_options.num_workers == 264,
         "bf16, 160 pairs: a plan of 264 workers");
  EXPECT(padec_choose_on_device(&fp8, 20, b20, 264, 0, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT, "fp8, 160 pairs, SMs unknown: a plan");
  b20[0] = 8192 * 20;
  EXPECT(padec_choose_on_device(&fp8, 20, b20, 264, 132, &on_device) == PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_PERSISTENT &&
             on_device.plan_options.policy == PADEC_POLICY_COST,
         "fp8, 160 pairs, skewed: a cost plan");
  /* The boundary on one KV head: 132 pairs on 132 SMs and 133 both take the grid, one split. */
  padec_params fp8_one_head = params_with(8, 1);
  fp8_one_head.kv_dtype = PADEC_DTYPE_E4M3;
  EXPECT_GRID(&fp8_one_head, 132, NULL, 264, 132, 1, "fp8, 132 pairs on 132 SMs");
  EXPECT(padec_choose_on_device(&fp8_one_head, 133, NULL, 264, 132, &on_device) ==
                 PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_GRID && on_device.grid_splits == 1,
         "fp8, 133 pairs on 132 SMs: grid, 1 split");
  /* A window does not change the pick: the grid path reads the windowed partitions only. */
  padec_params fp8_window = fp8;
  fp8_window.window_left = 4096;
  EXPECT(padec_choose_on_device(&fp8_window, 19, b20 + 1, 264, 132, &on_device) ==
                 PADEC_STATUS_OK &&
             on_device.path == PADEC_PATH_GRID && on_device.grid_splits == 1,
         "fp8 with a window, 152 pairs: grid, 1 split");
  free(b20);

  /* With the memory bandwidth: on a device of more than 30 GB/s an SM (an H200's 4.8 TB/s over
   * 132 SMs) one CTA an SM is kept only where a CTA streams at most 1.5 MiB (host lengths). */
  const padec_device_shape h200 = {132, 4800000000000LL}, h100 = {132, 3350000000000LL};
#define EXPECT_PICK(params, batch, lens, device, grid_splits_or_0, workers, what)                  \
  do {                                                                                            \
    padec_choice picked;                                                                          \
    memset(&picked, 0x5a, sizeof picked);                                                         \
    const padec_status s_ = padec_choose_for_device(params, batch, lens, 264, &(device), &picked); \
    const int want_grid = (grid_splits_or_0) > 0;                                                 \
    EXPECT(s_ == PADEC_STATUS_OK &&                                                               \
               picked.path == (want_grid ? PADEC_PATH_GRID : PADEC_PATH_PERSISTENT) &&            \
               (want_grid ? picked.grid_splits == (grid_splits_or_0)                              \
                          : picked.plan_options.num_workers == (workers)),                        \
           "%s: got status %d, path %d, %d splits, %d workers", what, (int)s_, (int)picked.path,  \
           picked.grid_splits, picked.plan_options.num_workers);                                  \
  } while (0)
  /* b16-8k: 4 MiB a CTA in bf16, 2 MiB in fp8: the 264-worker cost plan on the H200. */
  EXPECT_PICK(&p, 16, b16, h200, 0, 264, "b16-8k-bf16 on an H200");
  EXPECT_PICK(&fp8, 16, b16, h200, 0, 264, "b16-8k-fp8 on an H200");
  padec_choice plan264;
  EXPECT(padec_choose_for_device(&p, 16, b16, 264, &h200, &plan264) == PADEC_STATUS_OK &&
             plan264.plan_options.policy == PADEC_POLICY_COST, "b16-8k on an H200: the cost policy");
  /* g8-b128-2k (1 MiB, 512 KiB) and b1-32k (16 splits of 1 MiB, 512 KiB) keep the grid. */
  EXPECT_PICK(&g8, 128, b128, h200, 1, 0, "g8-b128-2k-bf16 on an H200");
  padec_params g8_fp8 = g8;
  g8_fp8.kv_dtype = PADEC_DTYPE_E4M3;
  EXPECT_PICK(&g8_fp8, 128, b128, h200, 1, 0, "g8-b128-2k-fp8 on an H200");
  EXPECT_PICK(&p, 1, b1, h200, 16, 0, "b1-32k-bf16 on an H200");
  EXPECT_PICK(&fp8, 1, b1, h200, 16, 0, "b1-32k-fp8 on an H200");
  /* Twice as long: 16 splits of 2 MiB. In fp8, 1 MiB: the grid. */
  int32_t b1_long[1] = {65536};
  EXPECT_PICK(&p, 1, b1_long, h200, 0, 264, "one 64k sequence, bf16, on an H200");
  EXPECT_PICK(&fp8, 1, b1_long, h200, 16, 0, "one 64k sequence, fp8, on an H200");
  /* The boundary: 1.5 MiB a CTA in bf16 is 3072 tokens (12 partitions) one split a pair; 3328
   * tokens (13 partitions) is past it. */
  int32_t *b16_at = repeat(3072, 16), *b16_past = repeat(3328, 16);
  EXPECT_PICK(&p, 16, b16_at, h200, 1, 0, "128 pairs of 3072 tokens (1.5 MiB a CTA) on an H200");
  EXPECT_PICK(&p, 16, b16_past, h200, 0, 264, "128 pairs of 3328 tokens on an H200");
  free(b16_at);
  free(b16_past);
  /* The rule needs host lengths; and a skewed batch's plan of one worker an SM goes too. */
  EXPECT_PICK(&p, 16, NULL, h200, 1, 0, "b16-8k on an H200, lengths on the device");
  EXPECT_PICK(&p, 16, skew16, h200, 0, 264, "skewed, 128 pairs, on an H200");
  /* The H100's 25.4 GB/s an SM, and an unknown bandwidth: the rules of padec_choose_on_device. */
  EXPECT_PICK(&p, 16, b16, h100, 1, 0, "b16-8k-bf16 on an H100");
  EXPECT_PICK(&p, 1, b1_long, h100, 16, 0, "one 64k sequence, bf16, on an H100");
  const padec_device_shape sms_only = {132, 0};
  EXPECT_PICK(&p, 16, b16, sms_only, 1, 0, "b16-8k, bandwidth unknown");
  EXPECT_PICK(&p, 16, skew16, sms_only, 0, 128, "skewed, 128 pairs, bandwidth unknown");
  /* fp8 between the SMs and the workers is not one CTA an SM's rule: the grid path stays. */
  int32_t *b20_fp8 = repeat(8192, 20);
  EXPECT_PICK(&fp8, 20, b20_fp8, h200, 1, 0, "fp8, 160 pairs, on an H200");
  free(b20_fp8);

  /* An empty batch keeps the count (no pairs to spread). */
  EXPECT(padec_choose_on_device(&many_heads, 0, NULL, 48, 8, &on_device) == PADEC_STATUS_OK &&
             on_device.plan_options.num_workers == 48,
         "batch 0: 48 workers (got %d)", on_device.plan_options.num_workers);
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
  EXPECT(padec_choose_on_device(&p, 4, zeros, 264, -1, &out) == PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "sm_count"), "negative sm_count");
  EXPECT(padec_choose_on_device(&p, 4, zeros, 264, 65537, &out) == PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "sm_count"), "sm_count too large");
  const padec_device_shape negative_sms = {-1, 0}, negative_bandwidth = {132, -1};
  EXPECT(padec_choose_for_device(&p, 4, zeros, 264, NULL, &out) == PADEC_STATUS_NULL_POINTER &&
             strstr(padec_last_message(), "device"), "NULL device");
  EXPECT(padec_choose_for_device(&p, 4, zeros, 264, &h200, NULL) == PADEC_STATUS_NULL_POINTER &&
             strstr(padec_last_message(), "choice"), "NULL choice (for_device)");
  EXPECT(padec_choose_for_device(&p, 4, zeros, 264, &negative_sms, &out) ==
                 PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "device->sm_count = -1"), "negative device->sm_count");
  EXPECT(padec_choose_for_device(&p, 4, zeros, 264, &negative_bandwidth, &out) ==
                 PADEC_STATUS_BAD_ARGUMENT &&
             strstr(padec_last_message(), "device->memory_bytes_per_second = -1"),
         "negative device->memory_bytes_per_second");
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
