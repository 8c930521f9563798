/* `auto` (padec_choose_for_device, padec_choose_on_device, padec_choose): the path, policy and
 * worker count for a batch, from its shape and the device's. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* A batch whose longest sequence has at least this many times the mean partitions is skewed: on
 * the grid path without splits that sequence's blocks alone would set the time. */
enum { SKEW_RATIO = 2 };
/* `auto`'s partition size on both paths, the seed's. */
enum { PARTITION_TOKENS = 256 };

/* One CTA an SM keeps two tiles in flight; on a card whose peak memory bandwidth an SM exceeds
 * this, that lone CTA cannot take its SM's share over a long stream, and a second CTA's bytes
 * in flight are worth more than the splits and merges of the plan that brings it. The H100 SXM
 * has 25.4 GB/s an SM (3.35 TB/s over 132 SMs), the H200 36.4 (4.8 TB/s). */
#define FAST_SM_BYTES_PER_SECOND 30e9
/* ... over a stream of more than this a CTA. On an H200 the one-CTA-an-SM grid path gained 5
 * and 9% over a 264-worker cost plan on g8-b128-2k (1 MiB and 512 KiB a CTA) and was level on
 * b1-32k (1 MiB and 512 KiB), and lost 5.8 and 3.2% on b16-8k (4 MiB and 2 MiB; PERF.md,
 * "main on an H200, start 33"). With this rule b16-8k gained 5.5 and 2.9% there, the rest level
 * (PERF.md, "`auto` by the card's bandwidth"). */
#define LONG_CTA_STREAM_BYTES (1.5 * 1024 * 1024)

/* Whether, on this device, one CTA an SM would leave each CTA a stream too long for it (see
 * FAST_SM_BYTES_PER_SECOND): with host lengths only (the rule needs the partitions), the longer
 * of the longest pair's share of floor(SMs / pairs) splits and an even share of the batch. */
static int lone_cta_streams_too_long(const padec_params *normalized, const int32_t *kv_lens,
                                     int64_t total_partitions, int64_t longest_partitions,
                                     int64_t pairs, const padec_device_shape *device) {
  const int32_t sms = device->sm_count;
  if (!kv_lens || sms <= 0 || pairs <= 0 || pairs > sms ||
      (double)device->memory_bytes_per_second / sms <= FAST_SM_BYTES_PER_SECOND)
    return 0;
  const double longest_share = (double)longest_partitions / (double)(sms / pairs);
  const double even_share = (double)total_partitions * normalized->num_kv_heads / sms;
  const double partition_bytes = (double)PARTITION_TOKENS * normalized->head_dim * 2.0 *
                                 padec__dtype_bytes(normalized->kv_dtype);
  const double share = longest_share > even_share ? longest_share : even_share;
  return share * partition_bytes > LONG_CTA_STREAM_BYTES;
}

padec_status padec_choose_on_device(const padec_params *params, int32_t batch,
                                    const int32_t *kv_lens, int32_t num_workers, int32_t sm_count,
                                    padec_choice *choice) {
  if (sm_count < 0 || sm_count > 65536)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "sm_count = %d: need 0 (unknown) or 1..65536",
                       sm_count);
  const padec_device_shape device = {sm_count, 0};
  return padec_choose_for_device(params, batch, kv_lens, num_workers, &device, choice);
}

padec_status padec_choose_for_device(const padec_params *params, int32_t batch,
                                     const int32_t *kv_lens, int32_t num_workers,
                                     const padec_device_shape *device, padec_choice *choice) {
  padec_status status = padec_params_validate(params);
  if (status != PADEC_STATUS_OK) return status;
  if (!device) return padec__fail(PADEC_STATUS_NULL_POINTER, "device is NULL");
  if (!choice) return padec__fail(PADEC_STATUS_NULL_POINTER, "choice is NULL");
  if ((uintptr_t)kv_lens % 4 != 0)
    return padec__fail(PADEC_STATUS_MISALIGNED_POINTER, "kv_lens must be 4-byte aligned");
  if (batch < 0 || batch > (1 << 24))
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "batch = %d: need 0..16777216", batch);
  if (num_workers < 1 || num_workers > 65536)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "num_workers = %d: need 1..65536", num_workers);
  const int32_t sm_count = device->sm_count;
  if (sm_count < 0 || sm_count > 65536)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "device->sm_count = %d: need 0 (unknown) or 1..65536", sm_count);
  if (device->memory_bytes_per_second < 0)
    return padec__fail(PADEC_STATUS_BAD_ARGUMENT,
                       "device->memory_bytes_per_second = %lld: need 0 (unknown) or more",
                       (long long)device->memory_bytes_per_second);
  const padec_params p = padec__params_normalized(params);
  const int32_t partition_tokens = PARTITION_TOKENS;
  int64_t total = 0, longest = 0;
  if (kv_lens) {
    for (int32_t b = 0; b < batch; ++b) {
      if (kv_lens[b] < 0)
        return padec__fail(PADEC_STATUS_BAD_ARGUMENT, "kv_lens[%d] = %d is negative", b, kv_lens[b]);
      const int64_t parts = padec_num_partitions(kv_lens[b], p.q_len, p.window_left, partition_tokens);
      total += parts;
      if (parts > longest) longest = parts;
    }
  }
  padec_choice c;
  memset(&c, 0, sizeof c);
  c.path = PADEC_PATH_PERSISTENT;
  c.partition_tokens = partition_tokens;
  c.plan_options.num_workers = num_workers;
  c.plan_options.partition_tokens = partition_tokens;
  c.plan_options.policy = PADEC_POLICY_EVEN;
  const int skewed = batch > 1 && total > 0 && longest * batch >= SKEW_RATIO * total;
  /* Enough (sequence, KV head) blocks to give every CTA one: the grid path without splits needs
   * no plan, no partials and no merge, and beat every plan on the H100 table where the lengths
   * are even. Skewed, the longest sequence's block alone sets the time: a plan splits it. */
  const int64_t pairs = (int64_t)batch * p.num_kv_heads;
  const int fills_device = pairs >= num_workers;
  c.grid_splits = padec_grid_recommended_splits(&p, batch, num_workers, partition_tokens);
  if (fills_device && !(kv_lens && skewed)) {
    c.path = PADEC_PATH_GRID;
  } else if (kv_lens) {
    /* Cost was ahead of even on 19 of the 20 benchmark workloads, 0.003 behind on the 20th. */
    c.plan_options.policy = PADEC_POLICY_COST;
  }
  /* No more (sequence, KV head) pairs than SMs, on a device that holds several CTAs an SM: one
   * CTA an SM. Each pair is then cut in half as many splits and the fused merge reads half the
   * partial rows, which outweighs the bytes in flight a second CTA an SM would add (PERF.md,
   * "One CTA an SM"). The grid path does it where every pair can get floor(SMs / pairs) blocks
   * with at most 1/16 of the SMs left over, and the lengths are not skewed: that is the plan's
   * work without the plan's metadata loads before a CTA's first KV load (two dependent loads
   * fewer), medians 0.4 to 2.4% ahead of the cost plan of one worker an SM on all six such
   * benchmark workloads on the H100 (128 CTAs on 132 SMs; PERF.md, "The grid path for few
   * pairs"). Elsewhere a cost plan of one worker an SM, a multiple of the KV heads as
   * padec_cuda_recommended_workers rounds: it splits a skewed batch's long sequences and not its
   * short ones, and it keeps every SM busy where floor(SMs / pairs) would not (9 x 8 pairs: 72
   * CTAs on 132 SMs). */
  if (c.path == PADEC_PATH_PERSISTENT && sm_count > 0 && num_workers > sm_count && pairs > 0 &&
      pairs <= sm_count && !lone_cta_streams_too_long(&p, kv_lens, total, longest, pairs, device)) {
    const int64_t per_pair = sm_count / pairs;
    const int grid_fills = pairs * per_pair * 16 >= (int64_t)sm_count * 15;
    if (grid_fills && !(kv_lens && skewed)) {
      c.path = PADEC_PATH_GRID;
      /* Capped by the longest sequence's partitions (with host lengths) and a window's span: a
       * split past either would only write an empty partial. */
      const int64_t wanted = kv_lens && longest < per_pair ? longest : per_pair;
      c.grid_splits = padec__grid_splits_capped(&p, wanted, partition_tokens, INT32_MAX);
    } else {
      /* pairs >= num_kv_heads, so the multiple is at least num_kv_heads. */
      c.plan_options.num_workers = sm_count - sm_count % p.num_kv_heads;
    }
  }
  /* fp8, more pairs than SMs but fewer than the workers, lengths not skewed (or not given): every
   * pair one grid block, no split. From 136 to 256 pairs on the H100 it was 1 to 5% ahead of
   * every plan and 3 to 6% ahead of the 264-worker cost plan (PERF.md, "Between the SMs and the
   * workers"); bf16 was level there and keeps the plan. */
  if (c.path == PADEC_PATH_PERSISTENT && sm_count > 0 && p.kv_dtype == PADEC_DTYPE_E4M3 &&
      pairs > sm_count && !(kv_lens && skewed)) {
    c.path = PADEC_PATH_GRID;
    c.grid_splits = 1;
  }
  *choice = c;
  padec__clear_message();
  return PADEC_STATUS_OK;
}

padec_status padec_choose(const padec_params *params, int32_t batch, const int32_t *kv_lens,
                          int32_t num_workers, padec_choice *choice) {
  return padec_choose_on_device(params, batch, kv_lens, num_workers, 0, choice);
}
