/*
 * The device scheduler (padec_cuda_plan_build) against the host scheduler: the same plan bytes
 * (memcmp over layout.plan_bytes) for thousands of random cases in one process, from a device
 * buffer poisoned before every build (so every byte must be written), with a guard past
 * layout.plan_bytes that must stay untouched. Cases: batch 0..2048 (and a few past one CTA
 * chunk of 1024, up to 20000), lengths 0..200k uniform, skewed (one long among short), many
 * empty, all empty, tiny (fewer partitions than bins), short; q_len 1..4, KV heads 1..16,
 * groups 1..8, workers 1..1000 (multiples of the heads, around the heads, fewer than the heads,
 * and 65536), windows, partitions 16..4096; negative kv_lens (read as 0: compared with the host
 * plan of the clamped lengths) and a batch of 2^31 partitions (a plan of zeros). Then the host
 * checks (nothing launched on error) and one captured CUDA graph of the plan alone, replayed with
 * new lengths (padding included) and compared with the host plan at every replay.
 *
 * Usage: test_cuda_device_plan [--quick]   (--quick: 200 random cases, for compute-sanitizer)
 * Exit 77 without a Hopper GPU.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "padec_cuda.h"
#include "test_support.h"

static int g_failures;
static int g_cases;

#define GUARD_BYTES 256
#define POISON 0xab

static uint64_t g_rng = 0x0123456789abcdefull;
static uint64_t next_u64(void) { return test_splitmix64(&g_rng); }
static int32_t below(int32_t n) { return n <= 0 ? 0 : (int32_t)(next_u64() % (uint64_t)n); }

static void *host_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

/* Device buffers that grow as the cases need. */
static void *g_d_plan, *g_d_lens;
static size_t g_d_plan_bytes, g_d_lens_bytes;
static unsigned char *g_h_plan;
static size_t g_h_plan_bytes;

static void ensure(void **device, size_t *have, size_t need) {
  if (*have >= need) return;
  if (*device) CUDA_OK(cudaFree(*device));
  CUDA_OK(cudaMalloc(device, need));
  *have = need;
}

static padec_params make_params(int32_t kv_heads, int32_t group, int32_t q_len, int32_t window) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = kv_heads;
  p.num_q_heads = kv_heads * group;
  p.head_dim = 128;
  p.page_size = 16;
  p.q_len = q_len;
  p.window_left = window;
  return p;
}

static void print_case(const char *label, const padec_params *p, const padec_plan_options *o,
                       int32_t batch, const int32_t *lens) {
  fprintf(stderr, "  [%s] kv_heads %d q_heads %d q_len %d window %d workers %d partition %d batch %d",
          label, p->num_kv_heads, p->num_q_heads, p->q_len, p->window_left, o->num_workers,
          o->partition_tokens, batch);
  if (batch <= 16) {
    fprintf(stderr, " lens");
    for (int32_t b = 0; b < batch; ++b) fprintf(stderr, " %d", lens[b]);
  }
  fprintf(stderr, "\n");
}

/* One case: host plan (of the clamped lengths) against the device plan. */
static void compare(const char *label, int32_t kv_heads, int32_t group, int32_t q_len,
                    int32_t window, int32_t workers, int32_t partition, int32_t batch,
                    const int32_t *lens) {
  const padec_params p = make_params(kv_heads, group, q_len, window);
  const padec_plan_options o = {workers, partition, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  g_cases += 1;
  if (padec_plan_layout_init(&p, batch, &o, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: layout: %s\n", label, padec_last_message());
    print_case(label, &p, &o, batch, lens);
    g_failures += 1;
    return;
  }
  int32_t *clamped = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  for (int32_t b = 0; b < batch; ++b) clamped[b] = lens[b] < 0 ? 0 : lens[b];
  void *host = host_alloc(layout.plan_bytes);
  const padec_status host_status = padec_plan_build(&p, &layout, clamped, host, layout.plan_bytes);

  const size_t total = layout.plan_bytes + GUARD_BYTES;
  ensure(&g_d_plan, &g_d_plan_bytes, total);
  ensure(&g_d_lens, &g_d_lens_bytes, sizeof(int32_t) * ((size_t)batch + 1));
  if (g_h_plan_bytes < total) {
    free(g_h_plan);
    g_h_plan = host_alloc(total);
    g_h_plan_bytes = total;
  }
  if (batch > 0)
    CUDA_OK(cudaMemcpy(g_d_lens, lens, sizeof(int32_t) * (size_t)batch, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(g_d_plan, POISON, total));
  const padec_status status =
      padec_cuda_plan_build(&p, &layout, (const int32_t *)g_d_lens, g_d_plan, total, NULL);
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: padec_cuda_plan_build: %s\n", label, padec_last_message());
    print_case(label, &p, &o, batch, lens);
    g_failures += 1;
    goto done;
  }
  CUDA_OK(cudaMemcpy(g_h_plan, g_d_plan, total, cudaMemcpyDeviceToHost));
  for (size_t i = layout.plan_bytes; i < total; ++i)
    if (g_h_plan[i] != POISON) {
      fprintf(stderr, "FAIL %s: byte %zu past plan_bytes %zu was written\n", label, i,
              layout.plan_bytes);
      print_case(label, &p, &o, batch, lens);
      g_failures += 1;
      goto done;
    }
  if (host_status == PADEC_STATUS_SIZE_OVERFLOW) {
    for (size_t i = 0; i < layout.plan_bytes; ++i)
      if (g_h_plan[i] != 0) {
        fprintf(stderr, "FAIL %s: partition overflow: byte %zu of the device plan is not 0\n",
                label, i);
        g_failures += 1;
        goto done;
      }
    goto done;
  }
  if (host_status != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL %s: host plan: %s\n", label, padec_last_message());
    print_case(label, &p, &o, batch, lens);
    g_failures += 1;
    goto done;
  }
  if (memcmp(host, g_h_plan, layout.plan_bytes) != 0) {
    size_t i = 0;
    while (((const unsigned char *)host)[i] == g_h_plan[i]) ++i;
    const size_t word = i / 4;
    int32_t a, d;
    memcpy(&a, (const unsigned char *)host + word * 4, 4);
    memcpy(&d, g_h_plan + word * 4, 4);
    fprintf(stderr,
            "FAIL %s: plans differ at byte %zu (host word %d, device word %d); offsets: "
            "work_indptr %zu work_info %zu reduce_indptr %zu final_map %zu partial_map %zu "
            "partition_indptr %zu plan_bytes %zu\n",
            label, i, a, d, layout.work_indptr_offset, layout.work_info_offset,
            layout.reduce_indptr_offset, layout.reduce_final_map_offset,
            layout.reduce_partial_map_offset, layout.partition_indptr_offset, layout.plan_bytes);
    print_case(label, &p, &o, batch, lens);
    g_failures += 1;
  }
done:
  free(clamped);
  free(host);
}

static void random_lens(int32_t *lens, int32_t batch, int shape) {
  const int32_t long_one = below(batch > 0 ? batch : 1);
  for (int32_t b = 0; b < batch; ++b) {
    switch (shape) {
      case 0: lens[b] = below(200001); break;
      case 1: lens[b] = b == long_one ? 100000 + below(100001) : below(300); break;
      case 2: lens[b] = below(4) == 0 ? 0 : below(5000); break;
      case 3: lens[b] = 0; break;
      case 4: lens[b] = below(3) == 0 ? below(40) : 0; break;
      case 5: lens[b] = below(8) == 0 ? -below(100) - 1 : below(3000); break;
      default: lens[b] = 1 + below(64); break;
    }
  }
}

static void random_case(void) {
  static const int32_t groups[] = {1, 2, 4, 5, 8};
  const int32_t kv_heads = 1 + below(16);
  const int32_t group = groups[below(5)];
  const int32_t q_len = 1 + below(4);
  const int32_t window = below(3) == 0 ? 1 + below(5000) : 0;
  int32_t workers;
  switch (below(4)) {
    case 0: workers = 1 + below(kv_heads); break;
    case 1: workers = kv_heads * (1 + below(64)); break;
    default: workers = 1 + below(1000); break;
  }
  const int32_t partition = 16 << below(9);
  const int32_t batch = below(4) == 0 ? below(2049) : below(300);
  int32_t *lens = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  random_lens(lens, batch, below(7));
  compare("random", kv_heads, group, q_len, window, workers, partition, batch, lens);
  free(lens);
}

/* Host-side checks: each error launches nothing (the poisoned buffer stays poisoned). */
static void check_errors(void) {
  const padec_params p = make_params(2, 4, 1, 0);
  const padec_plan_options o = {16, 256, PADEC_POLICY_EVEN};
  padec_plan_layout layout;
  if (padec_plan_layout_init(&p, 8, &o, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL errors: layout\n");
    g_failures += 1;
    return;
  }
  const size_t total = layout.plan_bytes + GUARD_BYTES;
  ensure(&g_d_plan, &g_d_plan_bytes, total + 16);
  ensure(&g_d_lens, &g_d_lens_bytes, 64);
  CUDA_OK(cudaMemset(g_d_lens, 0, 64));
  CUDA_OK(cudaMemset(g_d_plan, POISON, total + 16));
  const int32_t *lens = (const int32_t *)g_d_lens;
  padec_params other = p;
  other.q_len = 2;
  padec_plan_layout bad_policy = layout;
  bad_policy.policy = 7;
  /* A genuine layout of another policy: the device builds `even` only. */
  const padec_plan_options cost_options = {16, 256, PADEC_POLICY_COST};
  padec_plan_layout cost_layout;
  if (padec_plan_layout_init(&p, 8, &cost_options, &cost_layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL errors: cost layout\n");
    g_failures += 1;
    return;
  }
  struct {
    const char *what;
    padec_status got, want;
  } cases[] = {
      {"NULL params", padec_cuda_plan_build(NULL, &layout, lens, g_d_plan, total, NULL),
       PADEC_STATUS_NULL_POINTER},
      {"NULL layout", padec_cuda_plan_build(&p, NULL, lens, g_d_plan, total, NULL),
       PADEC_STATUS_NULL_POINTER},
      {"NULL kv_lens", padec_cuda_plan_build(&p, &layout, NULL, g_d_plan, total, NULL),
       PADEC_STATUS_NULL_POINTER},
      {"NULL plan", padec_cuda_plan_build(&p, &layout, lens, NULL, total, NULL),
       PADEC_STATUS_NULL_POINTER},
      {"misaligned plan",
       padec_cuda_plan_build(&p, &layout, lens, (char *)g_d_plan + 8, total, NULL),
       PADEC_STATUS_MISALIGNED_POINTER},
      {"misaligned kv_lens",
       padec_cuda_plan_build(&p, &layout, (const int32_t *)((const char *)lens + 2), g_d_plan,
                             total, NULL),
       PADEC_STATUS_MISALIGNED_POINTER},
      {"small plan", padec_cuda_plan_build(&p, &layout, lens, g_d_plan, layout.plan_bytes - 16, NULL),
       PADEC_STATUS_WORKSPACE_TOO_SMALL},
      {"other params", padec_cuda_plan_build(&other, &layout, lens, g_d_plan, total, NULL),
       PADEC_STATUS_PLAN_MISMATCH},
      {"edited policy", padec_cuda_plan_build(&p, &bad_policy, lens, g_d_plan, total, NULL),
       PADEC_STATUS_PLAN_MISMATCH},
      {"cost layout", padec_cuda_plan_build(&p, &cost_layout, lens, g_d_plan, total, NULL),
       PADEC_STATUS_BAD_ARGUMENT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    g_cases += 1;
    if (cases[i].got != cases[i].want) {
      fprintf(stderr, "FAIL errors: %s: got %s, want %s\n", cases[i].what,
              padec_status_name(cases[i].got), padec_status_name(cases[i].want));
      g_failures += 1;
    }
  }
  CUDA_OK(cudaDeviceSynchronize());
  unsigned char *back = host_alloc(total + 16);
  CUDA_OK(cudaMemcpy(back, g_d_plan, total + 16, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < total + 16; ++i)
    if (back[i] != POISON) {
      fprintf(stderr, "FAIL errors: a failing call wrote byte %zu of the plan\n", i);
      g_failures += 1;
      break;
    }
  free(back);
}

/* The plan alone in a captured graph: one capture for batch 64, replays with new lengths
 * (trailing and interleaved padding with kv_len 0), each compared with the host plan. */
static void check_graph(void) {
  const padec_params p = make_params(4, 2, 2, 0);
  const padec_plan_options o = {4 * 33, 64, PADEC_POLICY_EVEN};
  const int32_t batch = 64;
  padec_plan_layout layout;
  if (padec_plan_layout_init(&p, batch, &o, &layout) != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL graph: layout\n");
    g_failures += 1;
    return;
  }
  void *d_plan = NULL, *d_lens = NULL;
  int32_t *lens = host_alloc(sizeof(int32_t) * batch);
  void *host = host_alloc(layout.plan_bytes), *back = host_alloc(layout.plan_bytes);
  cudaStream_t stream;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_OK(cudaMalloc(&d_plan, layout.plan_bytes));
  CUDA_OK(cudaMalloc(&d_lens, sizeof(int32_t) * batch));
  CUDA_OK(cudaMemset(d_lens, 0, sizeof(int32_t) * batch));
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const padec_status status = padec_cuda_plan_build(&p, &layout, (const int32_t *)d_lens, d_plan,
                                                    layout.plan_bytes, (struct CUstream_st *)stream);
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL graph: capture: %s\n", padec_last_message());
    g_failures += 1;
    return;
  }
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 50; ++replay) {
    const int32_t active = below(batch + 1);
    for (int32_t b = 0; b < batch; ++b)
      lens[b] = b < active && below(5) != 0 ? below(replay % 2 ? 3000 : 100000) : 0;
    CUDA_OK(cudaMemcpyAsync(d_lens, lens, sizeof(int32_t) * batch, cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaMemsetAsync(d_plan, POISON, layout.plan_bytes, stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaMemcpyAsync(back, d_plan, layout.plan_bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    g_cases += 1;
    if (padec_plan_build(&p, &layout, lens, host, layout.plan_bytes) != PADEC_STATUS_OK ||
        memcmp(host, back, layout.plan_bytes) != 0) {
      fprintf(stderr, "FAIL graph: replay %d (active %d) differs from the host plan\n", replay,
              active);
      g_failures += 1;
    }
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
  CUDA_OK(cudaFree(d_plan));
  CUDA_OK(cudaFree(d_lens));
  free(lens);
  free(host);
  free(back);
}

int main(int argc, char **argv) {
  const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  const int32_t none[1] = {0};
  compare("batch 0", 2, 4, 1, 0, 64, 256, 0, none);
  compare("batch 0, W < H", 8, 1, 1, 0, 3, 256, 0, none);
  {
    const int32_t zeros[5] = {0, 0, 0, 0, 0};
    compare("all empty", 3, 2, 2, 0, 12, 16, 5, zeros);
    compare("all empty, W < H", 4, 1, 1, 0, 3, 16, 5, zeros);
    const int32_t lens[6] = {0, 0, 40, 0, 17, 0};
    compare("S < N, empties around", 3, 1, 1, 0, 30, 16, 6, lens);
    compare("S < N, W not a multiple", 3, 1, 1, 0, 32, 16, 6, lens);
    const int32_t pieces[3] = {16 * 2000, 5, 16 * 70};
    compare("1000+ pieces", 2, 2, 1, 0, 2 * 1500, 16, 3, pieces);
    const int32_t negative[4] = {-5, 100, -2147483647 - 1, 0};
    compare("negative kv_lens", 2, 1, 1, 0, 8, 16, 4, negative);
    compare("negative kv_lens, W < H", 2, 1, 1, 0, 1, 16, 4, negative);
    int32_t huge[20];
    for (int i = 0; i < 20; ++i) huge[i] = 2147483647;
    compare("near 2^31 partitions, N = 1", 1, 1, 1, 0, 1, 16, 15, huge);
    compare("near 2^31 partitions, N = 3", 2, 1, 1, 0, 7, 16, 15, huge);
    compare("partition overflow", 3, 1, 1, 0, 12, 16, 20, huge);
  }
  {
    const int32_t lens[8] = {1, 0, 37, 300, 1000, 17, 2049, 4};
    for (int32_t w = 1; w <= 70; ++w) compare("workers sweep", 3, 2, 1, 0, w, 16, 8, lens);
  }
  {
    /* Past one chunk of 1024 sequences, and the largest worker count. */
    const int32_t sizes[] = {1023, 1024, 1025, 2047, 2048, 2049, 5000, 20000};
    int32_t *lens = host_alloc(sizeof(int32_t) * 20000);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
      random_lens(lens, sizes[i], (int)(i % 6));
      compare("large batch", 8, 4, 1, 0, 1056, 256, sizes[i], lens);
      compare("large batch, W < H", 8, 4, 1, 0, 5, 256, sizes[i], lens);
      compare("large batch, 65536 workers", 4, 2, 2, 0, 65536, 256, sizes[i], lens);
    }
    random_lens(lens, 5000, 4);
    compare("batch 5000, S < N", 4, 2, 1, 0, 65536, 256, 5000, lens);
    free(lens);
  }
  const int edge = g_cases;
  const int random_cases = quick ? 200 : 4000;
  for (int i = 0; i < random_cases; ++i) random_case();
  check_errors();
  check_graph();
  printf("%d device plans compared (%d edge cases, %d random), %d failures\n", g_cases, edge,
         random_cases, g_failures);
  if (g_d_plan) cudaFree(g_d_plan);
  if (g_d_lens) cudaFree(g_d_lens);
  free(g_h_plan);
  return g_failures ? 1 : 0;
}
