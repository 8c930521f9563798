/*
 * The device scheduler's closed form (src/cuda/sched_device_math.h), run serially on the host,
 * against the host scheduler: the same plan bytes (memcmp over layout.plan_bytes, from a
 * poisoned buffer, so every word must be written) over thousands of random cases and the edge
 * cases of the `even` policy: batch 0, all sequences empty, empty sequences at the start, middle
 * and end, fewer partitions than bins (zero-capacity bins), fewer workers than KV heads, workers
 * not a multiple of KV heads, one sequence in many pieces, windows, negative kv_lens (clamped to
 * 0 by the device scheduler; compared with the host plan of the clamped lengths).
 *
 * The emulation below mirrors the kernel in src/cuda/sched_device.cu step for step (the same
 * per-sequence functions, the same write set); only the prefix sums run serially here. `--long`
 * runs ten times more random cases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/sched_device_math.h"
#include "padec.h"
#include "test_support.h"

static int failures = 0;

/* The device scheduler's algorithm, serially: phase 1 (partitions and their prefix sum), phase 2
 * (per-sequence pieces, slots and groups, and their prefix sums), then every row from the
 * closed form, then the tails. Returns 0, or -1 when the batch has 2^31 or more partitions (the
 * plan is then all zero). */
static int emulate_device_plan(const padec_params *params, const padec_plan_layout *layout,
                               const int32_t *kv_lens, void *plan) {
  const padec_sd_regions r = padec__sd_regions(layout);
  int32_t *words = (int32_t *)plan;
  int32_t *work_indptr = words + r.work_indptr, *work_info = words + r.work_info;
  int32_t *reduce_indptr = words + r.reduce_indptr, *final_map = words + r.reduce_final_map;
  int32_t *partial_map = words + r.reduce_partial_map;
  int32_t *partition_indptr = words + r.partition_indptr;
  const int32_t batch = layout->batch, heads = layout->num_kv_heads, workers = layout->num_workers;
  const int32_t q_len = layout->q_len, window = params->window_left;
  const int32_t partition_tokens = layout->partition_tokens;

  /* Phase 1. */
  int64_t total = 0;
  partition_indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b) {
    total += padec__sd_num_partitions(kv_lens[b], q_len, window, partition_tokens);
    partition_indptr[b + 1] = (int32_t)total;
  }
  if (total > INT32_MAX) {
    memset(plan, 0, layout->plan_bytes);
    return -1;
  }
  padec_sd_geometry g;
  padec__sd_geometry_init(&g, batch, heads, layout->num_q_heads, workers, q_len, (int32_t)total);

  int32_t num_works = 0, num_slots = 0, num_groups = 0;
  if (!g.binned) {
    for (int32_t b = 0; b < batch; ++b) {
      const int32_t first = partition_indptr[b];
      const int32_t parts = partition_indptr[b + 1] - first;
      for (int32_t h = 0; h < heads; ++h) padec__sd_write_direct(&g, work_info, h, b, first, parts);
    }
    for (int32_t c = 0; c <= workers; ++c) work_indptr[c] = padec__sd_direct_work_indptr(&g, c);
    for (int32_t i = 0; i <= batch; ++i) reduce_indptr[i] = 0;
    num_works = heads * batch;
  } else {
    /* Phase 2: per-sequence counts, then exclusive prefix sums. */
    int32_t *item_offset = test_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    int32_t *slot_offset = test_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    int32_t *group_offset = test_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    int32_t items = 0;
    for (int32_t b = 0; b < batch; ++b) {
      const int32_t first = partition_indptr[b];
      const int32_t pieces = padec__sd_pieces(&g, first, partition_indptr[b + 1] - first);
      item_offset[b] = items;
      slot_offset[b] = num_slots;
      group_offset[b] = num_groups;
      items += pieces;
      if (pieces > 1) {
        num_slots += pieces;
        num_groups += 1;
      }
    }
    const int32_t per_head = items;
    num_works = heads * per_head;
    /* Every row. */
    for (int32_t h = 0; h < heads; ++h)
      for (int32_t b = 0; b < batch; ++b) {
        const int32_t first = partition_indptr[b];
        const int32_t parts = partition_indptr[b + 1] - first;
        const int32_t pieces = padec__sd_pieces(&g, first, parts);
        for (int32_t j = 0; j < pieces; ++j)
          padec__sd_write_piece(&g, work_info, work_indptr, h, b, first, parts, j,
                                h * per_head + item_offset[b] + j, pieces > 1 ? slot_offset[b] : -1);
      }
    for (int32_t c = padec__sd_tail_first_bin(&g); c < workers; ++c) work_indptr[c + 1] = num_works;
    work_indptr[0] = 0;
    /* Reduce maps. */
    reduce_indptr[0] = 0;
    for (int32_t b = 0; b < batch; ++b) {
      const int32_t first = partition_indptr[b];
      const int32_t pieces = padec__sd_pieces(&g, first, partition_indptr[b + 1] - first);
      if (pieces > 1) {
        reduce_indptr[group_offset[b] + 1] = slot_offset[b] + pieces;
        final_map[2 * group_offset[b]] = b * q_len;
        final_map[2 * group_offset[b] + 1] = (b + 1) * q_len;
      }
    }
    for (int32_t i = num_groups + 1; i <= batch; ++i) reduce_indptr[i] = num_slots;
    for (int32_t i = 0; i < num_slots; ++i) partial_map[i] = i * q_len;
    free(item_offset);
    free(slot_offset);
    free(group_offset);
  }
  /* Tails and padding. */
  for (int64_t i = workers + 1; i < r.work_indptr_words; ++i) work_indptr[i] = 0;
  for (int64_t i = (int64_t)num_works * 8; i < r.work_info_words; ++i) work_info[i] = 0;
  for (int64_t i = (int64_t)batch + 1; i < r.reduce_indptr_words; ++i) reduce_indptr[i] = 0;
  for (int64_t i = 2 * (int64_t)num_groups; i < r.reduce_final_map_words; ++i) final_map[i] = 0;
  for (int64_t i = num_slots; i < r.reduce_partial_map_words; ++i) partial_map[i] = 0;
  for (int64_t i = (int64_t)batch + 1; i < r.partition_indptr_words; ++i) partition_indptr[i] = 0;
  padec__sd_header((padec_plan_header *)plan, layout->params_key, batch, workers, heads, q_len,
                   partition_tokens, layout->policy, num_works, num_slots, num_groups, (int32_t)total);
  return 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) { return test_splitmix64(&rng); }
static int32_t below(int32_t n) { return n <= 0 ? 0 : (int32_t)(next_u64() % (uint64_t)n); }

static int g_cases = 0;

/* Builds the plan both ways and compares. Negative kv_lens are allowed: the host plan is built
 * from the lengths clamped to 0. */
static void compare(const char *label, int32_t kv_heads, int32_t group, int32_t q_len,
                    int32_t window, int32_t workers, int32_t partition, int32_t batch,
                    const int32_t *kv_lens) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = kv_heads;
  p.num_q_heads = kv_heads * group;
  p.head_dim = 128;
  p.page_size = 16;
  p.q_len = q_len;
  p.window_left = window;
  padec_plan_options o = {workers, partition, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  g_cases += 1;
  if (padec_plan_layout_init(&p, batch, &o, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: layout: %s\n", label, padec_last_message());
    failures += 1;
    return;
  }
  int32_t *clamped = test_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  for (int32_t b = 0; b < batch; ++b) clamped[b] = kv_lens[b] < 0 ? 0 : kv_lens[b];
  void *host = test_alloc(layout.plan_bytes), *device = test_alloc(layout.plan_bytes);
  memset(host, 0xa5, layout.plan_bytes);
  memset(device, 0x5a, layout.plan_bytes);
  const padec_status status = padec_plan_build(&p, &layout, clamped, host, layout.plan_bytes);
  const int rc = emulate_device_plan(&p, &layout, kv_lens, device);
  if (status == PADEC_STATUS_SIZE_OVERFLOW && rc == -1) goto done;
  if (status != PADEC_STATUS_OK || rc != 0) {
    fprintf(stderr, "FAIL %s: host %s (%s), emulation %d\n", label, padec_status_name(status),
            padec_last_message(), rc);
    failures += 1;
    goto done;
  }
  if (memcmp(host, device, layout.plan_bytes) != 0) {
    const int32_t *a = host, *d = device;
    size_t word = 0;
    while (a[word] == d[word]) ++word;
    const padec_plan_header *h = host;
    fprintf(stderr,
            "FAIL %s: plans differ at byte %zu (word %zu: host %d, closed form %d); kv_heads %d "
            "group %d q_len %d window %d workers %d partition %d batch %d; S %d works %d slots "
            "%d groups %d; offsets work_indptr %zu work_info %zu reduce_indptr %zu final_map %zu "
            "partial_map %zu partition_indptr %zu plan_bytes %zu\n",
            label, word * 4, word, a[word], d[word], kv_heads, group, q_len, window, workers,
            partition, batch, h->num_partitions, h->num_works, h->num_partial_slots,
            h->num_groups, layout.work_indptr_offset, layout.work_info_offset,
            layout.reduce_indptr_offset, layout.reduce_final_map_offset,
            layout.reduce_partial_map_offset, layout.partition_indptr_offset, layout.plan_bytes);
    if (batch <= 16) {
      fprintf(stderr, "  kv_lens:");
      for (int32_t b = 0; b < batch; ++b) fprintf(stderr, " %d", kv_lens[b]);
      fprintf(stderr, "\n");
    }
    failures += 1;
  }
done:
  free(clamped);
  free(host);
  free(device);
}

/* Lengths drawn from one of several shapes. */
static void random_lens(int32_t *lens, int32_t batch, int shape) {
  const int32_t long_one = below(batch > 0 ? batch : 1);
  for (int32_t b = 0; b < batch; ++b) {
    switch (shape) {
      case 0: lens[b] = below(200001); break;                        /* uniform */
      case 1: lens[b] = b == long_one ? 100000 + below(100001) : below(300); break; /* skewed */
      case 2: lens[b] = below(4) == 0 ? 0 : below(5000); break;     /* many empty */
      case 3: lens[b] = 0; break;                                    /* all empty */
      case 4: lens[b] = below(3) == 0 ? below(40) : 0; break;        /* tiny: S < N */
      case 5: lens[b] = below(8) == 0 ? -below(100) - 1 : below(3000); break; /* negatives */
      default: lens[b] = 1 + below(64); break;                       /* short */
    }
  }
}

static void random_case(int small) {
  static const int32_t groups[] = {1, 2, 4, 5, 8};
  const int32_t kv_heads = 1 + below(16);
  const int32_t group = groups[below(5)];
  const int32_t q_len = 1 + below(4);
  const int32_t window = below(3) == 0 ? 1 + below(5000) : 0;
  int32_t workers;
  switch (below(4)) {
    case 0: workers = 1 + below(kv_heads); break;                   /* around the head count */
    case 1: workers = kv_heads * (1 + below(64)); break;            /* a multiple */
    default: workers = 1 + below(1000); break;
  }
  const int32_t partition = 16 << below(9); /* 16 .. 4096 */
  const int32_t batch = small ? below(40) : (below(4) == 0 ? below(2049) : below(300));
  int32_t *lens = test_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  random_lens(lens, batch, below(7));
  compare("random", kv_heads, group, q_len, window, workers, partition, batch, lens);
  free(lens);
}

int main(int argc, char **argv) {
  const int scale = argc > 1 && strcmp(argv[1], "--long") == 0 ? 10 : 1;

  /* Edge cases first, each named. */
  const int32_t none[1] = {0};
  compare("batch 0", 2, 4, 1, 0, 64, 256, 0, none);
  compare("batch 0, W < H", 8, 1, 1, 0, 3, 256, 0, none);
  {
    const int32_t zeros[5] = {0, 0, 0, 0, 0};
    compare("all empty", 3, 2, 2, 0, 12, 16, 5, zeros);
    compare("all empty, W not a multiple", 3, 2, 2, 0, 14, 16, 5, zeros);
    compare("all empty, W < H", 4, 1, 1, 0, 3, 16, 5, zeros);
  }
  {
    const int32_t lens[6] = {0, 0, 40, 0, 17, 0}; /* S = 4 partitions of 16 < N */
    compare("S < N, empties around", 3, 1, 1, 0, 30, 16, 6, lens);
    compare("S < N, one head", 1, 1, 1, 0, 30, 16, 6, lens);
    compare("S < N, W not a multiple", 3, 1, 1, 0, 32, 16, 6, lens);
  }
  {
    const int32_t lens[4] = {0, 1000, 0, 0};
    compare("S == N", 2, 1, 1, 0, 126, 16, 4, lens); /* 63 partitions, 63 bins per head */
    compare("S == N + 1", 2, 1, 1, 0, 124, 16, 4, lens);
  }
  {
    const int32_t lens[3] = {16 * 2000, 5, 16 * 70};
    compare("1000+ pieces", 2, 2, 1, 0, 2 * 1500, 16, 3, lens);
    compare("65+ pieces", 1, 8, 4, 0, 80, 16, 3, lens);
  }
  {
    const int32_t lens[8] = {1, 0, 37, 300, 1000, 17, 2049, 4};
    for (int32_t w = 1; w <= 70; ++w) compare("workers sweep", 3, 2, 1, 0, w, 16, 8, lens);
    for (int32_t w = 1; w <= 40; ++w) compare("workers sweep, window", 2, 4, 3, 100, w, 16, 8, lens);
  }
  {
    const int32_t lens[4] = {-5, 100, -1, 0};
    compare("negative kv_lens", 2, 1, 1, 0, 8, 16, 4, lens);
    compare("negative kv_lens, W < H", 2, 1, 1, 0, 1, 16, 4, lens);
  }
  {
    /* Near 2^31 partitions (int32 arithmetic at its edge); then 2^31 or more: the host fails
     * with SIZE_OVERFLOW, the emulation zeroes. */
    int32_t lens[20];
    for (int i = 0; i < 20; ++i) lens[i] = INT32_MAX;
    compare("near 2^31 partitions, N = 1", 1, 1, 1, 0, 1, 16, 15, lens);
    compare("near 2^31 partitions, N = 3", 2, 1, 1, 0, 7, 16, 15, lens);
    compare("partition overflow", 1, 1, 1, 0, 4, 16, 20, lens);
  }
  {
    /* Many workers (65536) and a batch past one CTA chunk of the kernel. */
    int32_t *lens = test_alloc(sizeof(int32_t) * 5000);
    random_lens(lens, 5000, 0);
    compare("65536 workers", 4, 2, 1, 0, 65536, 256, 5000, lens);
    compare("batch 5000", 4, 2, 1, 0, 528, 256, 5000, lens);
    random_lens(lens, 5000, 4);
    compare("batch 5000, S < N", 4, 2, 1, 0, 65536, 256, 5000, lens);
    free(lens);
  }
  const int edge_cases = g_cases;
  for (int i = 0; i < 3000 * scale; ++i) random_case(i % 2);
  printf("%d cases (%d edge, %d random), %d failures\n", g_cases, edge_cases, g_cases - edge_cases,
         failures);
  return failures ? 1 : 0;
}
