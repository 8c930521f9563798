/*
 * padec_cuda_validate_kv against padec_validate_kv_host: for every block table below, uploaded
 * to exactly sized device buffers, the device check must give the same status and the same
 * padec_last_message() text as the host check on the same host data. Cases: valid tables; each
 * kind of bad input (page_indptr[0], a decreasing page_indptr, kv_len negative or past its pages,
 * a used page id negative, num_pages or past it, a negative shard start, a shard past its
 * sequence) in the first, a middle and the last sequence; several bad sequences and several bad
 * page slots at once (the lowest sequence, then its first failing check, then its first bad slot
 * wins); unused padding pages; shards; batch 0; a sequence of 2^21 pages (capacity 2^31 tokens);
 * a batch of 300000 sequences (more than one grid of sequence threads); pools of 0, -1 and 2^40
 * pages; and thousands of seeded random tables with up to four faults each. The scratch buffer's
 * neighbours must stay untouched. Then the host-side argument errors (nothing launched; they run
 * without a GPU too) and a stream under capture (refused, the capture left valid).
 *
 * Usage: test_cuda_validate [--quick]   (--quick: 200 random tables, for compute-sanitizer)
 * Exit 77 without a Hopper GPU.
 */
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "padec_cuda.h"
#include "test_support.h"

static int g_failures;
static int g_cases;

#define SCRATCH_GUARD 64
#define GUARD_BYTE 0x5a

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t next_u64(void) { return test_splitmix64(&g_rng); }
static int32_t below(int32_t n) { return n <= 0 ? 0 : (int32_t)(next_u64() % (uint64_t)n); }
static int32_t clamp32(int64_t v) {
  return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

static void *host_alloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

/* A block table on the host. */
typedef struct table {
  int32_t batch;
  int32_t page_size;
  int64_t num_pages;
  int32_t *page_indptr;  /* [batch + 1] */
  int32_t *page_indices; /* [num_indices] */
  int64_t num_indices;
  int32_t *kv_lens;      /* [batch] */
  int32_t *shard_starts; /* [batch] or NULL */
  int32_t *seq_lens;     /* [batch] or NULL */
} table;

static void table_free(table *t) {
  free(t->page_indptr);
  free(t->page_indices);
  free(t->kv_lens);
  free(t->shard_starts);
  free(t->seq_lens);
  memset(t, 0, sizeof *t);
}

/* A valid table: sequence b holds lens[b] tokens in its used pages plus `spare` pages of padding
 * (-1, never read), page ids drawn from [0, num_pages). */
static table table_make(int32_t batch, int32_t page_size, const int32_t *lens, int32_t spare,
                        int64_t num_pages, int with_shards) {
  table t;
  memset(&t, 0, sizeof t);
  t.batch = batch;
  t.page_size = page_size;
  t.num_pages = num_pages;
  t.page_indptr = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  t.kv_lens = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
  int64_t total = 0;
  t.page_indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b) {
    t.kv_lens[b] = lens[b];
    total += ((int64_t)lens[b] + page_size - 1) / page_size + spare;
    t.page_indptr[b + 1] = (int32_t)total;
  }
  t.num_indices = total;
  t.page_indices = host_alloc(sizeof(int32_t) * (size_t)(total ? total : 1));
  for (int32_t b = 0; b < batch; ++b) {
    const int32_t used = (int32_t)(((int64_t)lens[b] + page_size - 1) / page_size);
    for (int32_t i = t.page_indptr[b]; i < t.page_indptr[b + 1]; ++i)
      t.page_indices[i] = i - t.page_indptr[b] < used ? (int32_t)(next_u64() % (uint64_t)num_pages) : -1;
  }
  if (with_shards) {
    t.shard_starts = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    t.seq_lens = host_alloc(sizeof(int32_t) * ((size_t)batch + 1));
    for (int32_t b = 0; b < batch; ++b) {
      t.shard_starts[b] = below(5000);
      t.seq_lens[b] = t.shard_starts[b] + lens[b] + below(3);
    }
  }
  return t;
}

static table table_copy(const table *src) {
  table t = *src;
  const size_t n = (size_t)src->batch + 1;
  t.page_indptr = host_alloc(sizeof(int32_t) * n);
  memcpy(t.page_indptr, src->page_indptr, sizeof(int32_t) * n);
  t.kv_lens = host_alloc(sizeof(int32_t) * n);
  memcpy(t.kv_lens, src->kv_lens, sizeof(int32_t) * (size_t)src->batch);
  t.page_indices = host_alloc(sizeof(int32_t) * (size_t)(src->num_indices ? src->num_indices : 1));
  memcpy(t.page_indices, src->page_indices, sizeof(int32_t) * (size_t)src->num_indices);
  if (src->shard_starts) {
    t.shard_starts = host_alloc(sizeof(int32_t) * n);
    memcpy(t.shard_starts, src->shard_starts, sizeof(int32_t) * (size_t)src->batch);
    t.seq_lens = host_alloc(sizeof(int32_t) * n);
    memcpy(t.seq_lens, src->seq_lens, sizeof(int32_t) * (size_t)src->batch);
  }
  return t;
}

/* The first used page slot of sequence b (page_indptr[b] + i), for placing a bad page id. */
static int32_t used_slot(const table *t, int32_t b, int32_t i) { return t->page_indptr[b] + i; }
static int32_t used_pages(const table *t, int32_t b) {
  return (int32_t)(((int64_t)t->kv_lens[b] + t->page_size - 1) / t->page_size);
}

static padec_params params_for(int32_t page_size) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.page_size = page_size;
  return p;
}

static void *device_copy(const void *host, size_t bytes) {
  void *d = NULL;
  CUDA_OK(cudaMalloc(&d, bytes ? bytes : 4));
  if (bytes) CUDA_OK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
  return d;
}

static unsigned char *g_scratch_block; /* guard, scratch, guard */
static cudaStream_t g_stream;

static void *scratch(void) { return g_scratch_block + SCRATCH_GUARD; }

static void check_guards(const char *label) {
  unsigned char back[SCRATCH_GUARD * 2 + PADEC_CUDA_VALIDATE_SCRATCH_BYTES];
  CUDA_OK(cudaMemcpy(back, g_scratch_block, sizeof back, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < sizeof back; ++i) {
    if (i >= SCRATCH_GUARD && i < SCRATCH_GUARD + PADEC_CUDA_VALIDATE_SCRATCH_BYTES) continue;
    if (back[i] != GUARD_BYTE) {
      fprintf(stderr, "FAIL %s: byte %td around device_scratch was written\n", label,
              (ptrdiff_t)i - SCRATCH_GUARD);
      g_failures += 1;
      return;
    }
  }
}

/* Host check, then the device check on uploaded copies: same status, same message. When `want`
 * is not -1 the host status must be it (so that each case tests what its label says). */
static void compare(const char *label, const table *t, int want) {
  g_cases += 1;
  const padec_params p = params_for(t->page_size);
  padec_tensors h;
  memset(&h, 0, sizeof h);
  h.page_indptr = t->page_indptr;
  h.page_indices = t->page_indices;
  h.kv_lens = t->kv_lens;
  h.shard_starts = t->shard_starts;
  h.seq_lens = t->seq_lens;
  h.num_pages = t->num_pages;
  const padec_status host_status = padec_validate_kv_host(&p, t->batch, &h);
  char host_message[512];
  snprintf(host_message, sizeof host_message, "%s", padec_last_message());
  if (want != -1 && host_status != (padec_status)want) {
    fprintf(stderr, "FAIL %s: the host check gives %s (%s), the case expects %s\n", label,
            padec_status_name(host_status), host_message, padec_status_name((padec_status)want));
    g_failures += 1;
  }

  const size_t seq_bytes = sizeof(int32_t) * (size_t)t->batch;
  padec_tensors d = h;
  d.page_indptr = device_copy(t->page_indptr, seq_bytes + sizeof(int32_t));
  d.page_indices = device_copy(t->page_indices, sizeof(int32_t) * (size_t)t->num_indices);
  d.kv_lens = device_copy(t->kv_lens, seq_bytes);
  d.shard_starts = t->shard_starts ? device_copy(t->shard_starts, seq_bytes) : NULL;
  d.seq_lens = t->seq_lens ? device_copy(t->seq_lens, seq_bytes) : NULL;
  /* Alternate the legacy default stream and a created one. */
  struct CUstream_st *stream = (g_cases & 1) ? (struct CUstream_st *)g_stream : NULL;
  const padec_status device_status = padec_cuda_validate_kv(&p, t->batch, &d, scratch(), stream);
  char device_message[512];
  snprintf(device_message, sizeof device_message, "%s", padec_last_message());
  if (device_status != host_status || strcmp(device_message, host_message) != 0) {
    fprintf(stderr,
            "FAIL %s (batch %d, page_size %d, num_pages %lld%s):\n  host   %s \"%s\"\n"
            "  device %s \"%s\"\n",
            label, t->batch, t->page_size, (long long)t->num_pages,
            t->shard_starts ? ", shards" : "", padec_status_name(host_status), host_message,
            padec_status_name(device_status), device_message);
    g_failures += 1;
  }
  CUDA_OK(cudaFree((void *)d.page_indptr));
  CUDA_OK(cudaFree((void *)d.page_indices));
  CUDA_OK(cudaFree((void *)d.kv_lens));
  if (d.shard_starts) CUDA_OK(cudaFree((void *)d.shard_starts));
  if (d.seq_lens) CUDA_OK(cudaFree((void *)d.seq_lens));
}

/* Each kind of bad input at sequence b of a copy of base. */
enum fault_kind {
  FAULT_INDPTR_START,
  FAULT_INDPTR_ORDER,
  FAULT_INDPTR_END,
  FAULT_LEN_NEGATIVE,
  FAULT_LEN_MIN,
  FAULT_LEN_PAST_PAGES,
  FAULT_LEN_MAX,
  FAULT_PAGE_NUM_PAGES,
  FAULT_PAGE_NEGATIVE,
  FAULT_PAGE_MIN,
  FAULT_PAGE_MAX,
  FAULT_PAGE_LAST_SLOT,
  FAULT_SHARD_START,
  FAULT_SHARD_END,
  FAULT_KINDS
};

static const char *const kFaultNames[FAULT_KINDS] = {
    "page_indptr[0] = 1",         "page_indptr decreasing",   "pages past page_indices",
    "kv_len -1",
    "kv_len INT32_MIN",           "kv_len one past its pages", "kv_len INT32_MAX",
    "page id num_pages",          "page id -1",               "page id INT32_MIN",
    "page id INT32_MAX",          "last used page slot -1",   "shard start -1",
    "shard one past its sequence"};

/* Applies the fault; returns the status the host must give, or -1 where the fault does not apply
 * to this sequence (a page fault in an empty sequence, a shard fault without shards). */
static int apply_fault(table *t, int32_t b, int kind) {
  const int32_t pages = t->page_indptr[b + 1] - t->page_indptr[b];
  const int32_t used = used_pages(t, b);
  switch (kind) {
    case FAULT_INDPTR_START:
      if (b != 0) return -1;
      t->page_indptr[0] = 1;
      return PADEC_STATUS_BAD_ARGUMENT;
    case FAULT_INDPTR_ORDER:
      t->page_indptr[b + 1] = t->page_indptr[b] - 1;
      return PADEC_STATUS_BAD_ARGUMENT;
    case FAULT_INDPTR_END:
      /* b's pages end past page_indptr[batch] (and b + 1's start after they end). */
      if (b + 1 >= t->batch) return -1;
      t->page_indptr[b + 1] = t->page_indptr[t->batch] + 1000;
      return PADEC_STATUS_BAD_ARGUMENT;
    case FAULT_LEN_NEGATIVE:
      t->kv_lens[b] = -1;
      return PADEC_STATUS_KV_LEN_EXCEEDS_PAGES;
    case FAULT_LEN_MIN:
      t->kv_lens[b] = INT32_MIN;
      return PADEC_STATUS_KV_LEN_EXCEEDS_PAGES;
    case FAULT_LEN_PAST_PAGES:
      t->kv_lens[b] = clamp32((int64_t)pages * t->page_size + 1);
      return PADEC_STATUS_KV_LEN_EXCEEDS_PAGES;
    case FAULT_LEN_MAX:
      t->kv_lens[b] = INT32_MAX;
      return PADEC_STATUS_KV_LEN_EXCEEDS_PAGES;
    case FAULT_PAGE_NUM_PAGES:
    case FAULT_PAGE_NEGATIVE:
    case FAULT_PAGE_MIN:
    case FAULT_PAGE_MAX:
    case FAULT_PAGE_LAST_SLOT: {
      if (used == 0) return -1;
      const int32_t slot = used_slot(t, b, kind == FAULT_PAGE_LAST_SLOT ? used - 1 : used / 2);
      const int32_t value = kind == FAULT_PAGE_NUM_PAGES ? (int32_t)t->num_pages
                            : kind == FAULT_PAGE_MIN     ? INT32_MIN
                            : kind == FAULT_PAGE_MAX     ? INT32_MAX
                                                         : -1;
      t->page_indices[slot] = value;
      return PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE;
    }
    case FAULT_SHARD_START:
      if (!t->shard_starts) return -1;
      t->shard_starts[b] = -1;
      return PADEC_STATUS_BAD_ARGUMENT;
    case FAULT_SHARD_END:
      if (!t->shard_starts) return -1;
      t->seq_lens[b] = clamp32((int64_t)t->shard_starts[b] + t->kv_lens[b] - 1);
      return PADEC_STATUS_BAD_ARGUMENT;
    default:
      return -1;
  }
}

static void test_each_fault(const table *base, const char *name) {
  const int32_t where[3] = {0, base->batch / 2, base->batch - 1};
  const char *const where_names[3] = {"first", "middle", "last"};
  for (int kind = 0; kind < FAULT_KINDS; ++kind) {
    for (int w = 0; w < 3; ++w) {
      table t = table_copy(base);
      const int want = apply_fault(&t, where[w], kind);
      if (want != -1) {
        char label[256];
        snprintf(label, sizeof label, "%s: %s in the %s sequence (%d)", name, kFaultNames[kind],
                 where_names[w], where[w]);
        compare(label, &t, want);
      }
      table_free(&t);
    }
  }
}

/* Several bad sequences and slots at once: the lowest sequence, its first check, its first slot. */
static void test_several_faults(const table *base, const char *name) {
  char label[256];
  const int32_t last = base->batch - 1, mid = base->batch / 2;
  struct {
    int32_t first_b;
    int first_kind;
    int32_t second_b;
    int second_kind;
  } const pairs[] = {
      {mid, FAULT_PAGE_NEGATIVE, last, FAULT_LEN_NEGATIVE},
      {last, FAULT_PAGE_NEGATIVE, mid, FAULT_LEN_PAST_PAGES},
      {mid, FAULT_LEN_PAST_PAGES, mid, FAULT_PAGE_MAX},
      {mid, FAULT_PAGE_LAST_SLOT, mid, FAULT_PAGE_MIN},
      {1, FAULT_PAGE_NUM_PAGES, mid, FAULT_INDPTR_ORDER},
      {mid, FAULT_INDPTR_ORDER, 1, FAULT_PAGE_NUM_PAGES},
      {0, FAULT_INDPTR_START, last, FAULT_PAGE_NEGATIVE},
      {last, FAULT_PAGE_NEGATIVE, 0, FAULT_INDPTR_START},
      {mid, FAULT_SHARD_END, mid, FAULT_PAGE_NEGATIVE},
      {mid, FAULT_SHARD_START, mid, FAULT_SHARD_END},
      {last, FAULT_SHARD_START, mid, FAULT_PAGE_MAX},
      {mid, FAULT_SHARD_END, last, FAULT_LEN_MAX},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; ++i) {
    table t = table_copy(base);
    const int a = apply_fault(&t, pairs[i].first_b, pairs[i].first_kind);
    const int b = apply_fault(&t, pairs[i].second_b, pairs[i].second_kind);
    if (a != -1 && b != -1) {
      snprintf(label, sizeof label, "%s: %s in sequence %d and %s in sequence %d", name,
               kFaultNames[pairs[i].first_kind], pairs[i].first_b,
               kFaultNames[pairs[i].second_kind], pairs[i].second_b);
      compare(label, &t, -1);
    }
    table_free(&t);
  }
  /* Every used page of every sequence bad: sequence 0's (or the first non-empty one's) first. */
  table t = table_copy(base);
  for (int32_t b = 0; b < t.batch; ++b)
    for (int32_t i = 0; i < used_pages(&t, b); ++i) t.page_indices[used_slot(&t, b, i)] = -7;
  snprintf(label, sizeof label, "%s: every used page id bad", name);
  compare(label, &t, PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE);
  /* And every sequence's kv_len too: sequence 0's length is named. */
  for (int32_t b = 0; b < t.batch; ++b) t.kv_lens[b] = -1;
  snprintf(label, sizeof label, "%s: every kv_len and page id bad", name);
  compare(label, &t, PADEC_STATUS_KV_LEN_EXCEEDS_PAGES);
  table_free(&t);
}

static void test_pools(const table *base, const char *name) {
  char label[256];
  const int64_t pools[] = {0, -1, (int64_t)1 << 40};
  for (size_t i = 0; i < sizeof pools / sizeof pools[0]; ++i) {
    table t = table_copy(base);
    t.num_pages = pools[i];
    snprintf(label, sizeof label, "%s: num_pages %lld", name, (long long)pools[i]);
    compare(label, &t, -1);
    table_free(&t);
  }
}

/* A table of `batch` random sequences, then up to four faults. page_indptr entries only ever go
 * down, so neither check reads past page_indices (a sequence whose pages are read has a
 * page_indptr that rises from 0 to at most its original end). */
static void random_table(int trial) {
  const int32_t page_sizes[] = {1, 2, 16, 64, 1024};
  const int32_t page_size = page_sizes[below(5)];
  const int32_t batch = 1 + below(below(4) == 0 ? 3000 : 40);
  int32_t *lens = host_alloc(sizeof(int32_t) * (size_t)batch);
  for (int32_t b = 0; b < batch; ++b)
    lens[b] = below(4) == 0 ? 0 : below(page_size * (1 + below(12)) + 1);
  table t = table_make(batch, page_size, lens, below(3), 1 + below(5000), below(3) == 0);
  free(lens);
  const int faults = below(5);
  for (int f = 0; f < faults; ++f) {
    const int32_t b = below(batch);
    switch (below(6)) {
      case 0: /* page_indptr entry lowered (possibly below the previous one, or below 0) */
        t.page_indptr[below(batch + 1)] -= 1 + below(below(2) ? 4 : 100000);
        break;
      case 1: {
        const int64_t capacity = (int64_t)(t.page_indptr[b + 1] - t.page_indptr[b]) * page_size;
        const int64_t choices[] = {-1, INT32_MIN, capacity + 1, INT32_MAX, capacity, 0};
        const int64_t v = choices[below(6)];
        t.kv_lens[b] = clamp32(v);
        break;
      }
      case 2:
      case 3: {
        if (t.num_indices == 0) break;
        const int32_t values[] = {-1, INT32_MIN, INT32_MAX, (int32_t)t.num_pages, 0};
        t.page_indices[below((int32_t)t.num_indices)] = values[below(5)];
        break;
      }
      case 4:
        if (t.shard_starts) t.shard_starts[b] = below(2) ? -1 - below(10) : INT32_MAX;
        break;
      default:
        if (t.seq_lens)
          t.seq_lens[b] = clamp32((int64_t)t.shard_starts[b] + t.kv_lens[b] - 1 - below(3));
        else
          t.num_pages = below(3) - 1;
        break;
    }
  }
  char label[128];
  snprintf(label, sizeof label, "random table %d (%d faults)", trial, faults);
  compare(label, &t, -1);
  table_free(&t);
}

/* Host-side argument errors. Host buffers stand in for device memory: every call must fail its
 * checks before touching the device. */
static void expect(const char *what, padec_status got, padec_status want, const char *needle) {
  g_cases += 1;
  if (got != want || (got != PADEC_STATUS_OK && !strstr(padec_last_message(), needle))) {
    fprintf(stderr, "FAIL %s: got %s \"%s\", want %s naming \"%s\"\n", what,
            padec_status_name(got), padec_last_message(), padec_status_name(want), needle);
    g_failures += 1;
  }
}

static void test_arguments(void) {
  static int32_t buffer[64]; /* 16-byte aligned in practice; the checks below need only 4 */
  unsigned char *bytes = (unsigned char *)buffer;
  void *aligned_scratch = (void *)(((uintptr_t)bytes + 15) & ~(uintptr_t)15);
  padec_params p = params_for(16);
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.page_indptr = t.page_indices = t.kv_lens = buffer;
  t.num_pages = 8;
  expect("params NULL", padec_cuda_validate_kv(NULL, 2, &t, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "params");
  padec_params bad = p;
  bad.page_size = 3;
  expect("invalid params", padec_cuda_validate_kv(&bad, 2, &t, aligned_scratch, NULL),
         PADEC_STATUS_BAD_PAGE_SIZE, "page_size");
  expect("tensors NULL", padec_cuda_validate_kv(&p, 2, NULL, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "tensors");
  expect("batch -1", padec_cuda_validate_kv(&p, -1, &t, aligned_scratch, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "batch");
  padec_tensors none;
  memset(&none, 0, sizeof none);
  expect("batch 0, no arrays, no scratch", padec_cuda_validate_kv(&p, 0, &none, NULL, NULL),
         PADEC_STATUS_OK, "");
  padec_tensors b = t;
  b.kv_lens = NULL;
  expect("kv_lens NULL", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "kv_lens");
  b = t;
  b.page_indptr = NULL;
  expect("page_indptr NULL", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "page_indptr");
  b = t;
  b.page_indices = NULL;
  expect("page_indices NULL", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "page_indices");
  expect("device_scratch NULL", padec_cuda_validate_kv(&p, 2, &t, NULL, NULL),
         PADEC_STATUS_NULL_POINTER, "device_scratch");
  expect("device_scratch +8", padec_cuda_validate_kv(&p, 2, &t, (char *)aligned_scratch + 8, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "device_scratch");
  expect("device_scratch +4", padec_cuda_validate_kv(&p, 2, &t, (char *)aligned_scratch + 4, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "device_scratch");
  b = t;
  b.page_indptr = (const int32_t *)(const void *)(bytes + 2);
  expect("page_indptr +2", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "page_indptr");
  b = t;
  b.page_indices = (const int32_t *)(const void *)(bytes + 2);
  expect("page_indices +2", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "page_indices");
  b = t;
  b.kv_lens = (const int32_t *)(const void *)(bytes + 1);
  expect("kv_lens +1", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "kv_lens");
  b = t;
  b.shard_starts = buffer;
  expect("shard_starts without seq_lens", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "seq_lens");
  b = t;
  b.seq_lens = buffer;
  expect("seq_lens without shard_starts", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_NULL_POINTER, "shard_starts");
  b = t;
  b.shard_starts = (const int32_t *)(const void *)(bytes + 2);
  b.seq_lens = buffer;
  expect("shard_starts +2", padec_cuda_validate_kv(&p, 2, &b, aligned_scratch, NULL),
         PADEC_STATUS_MISALIGNED_POINTER, "shard_starts");

  /* A scratch carved from an array the check reads is refused before anything is set. The
   * scratch is the 64 bytes from base + 64; each case puts one array so that only its last
   * element lies there (page_indptr's batch + 1 entries, page_indices' num_page_indices), the
   * others 256 bytes on. */
  static int32_t regions[160];
  unsigned char *base = (unsigned char *)(((uintptr_t)regions + 63) & ~(uintptr_t)63);
  void *carved = base + 64;
  padec_tensors apart;
  memset(&apart, 0, sizeof apart);
  apart.page_indptr = apart.kv_lens = (const int32_t *)(const void *)(base + 256);
  apart.page_indices = (const int32_t *)(const void *)(base + 256);
  apart.num_pages = 8;
  apart.num_page_indices = 4;
  const int32_t *ends_on_scratch_3 = (const int32_t *)(const void *)(base + 64 - 8);
  const int32_t *ends_on_scratch_2 = (const int32_t *)(const void *)(base + 64 - 4);
  const int32_t *ends_on_scratch_4 = (const int32_t *)(const void *)(base + 64 - 12);
  b = apart;
  b.page_indptr = ends_on_scratch_3;
  expect("scratch on page_indptr[batch]", padec_cuda_validate_kv(&p, 2, &b, carved, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "tensors.page_indptr");
  b = apart;
  b.kv_lens = ends_on_scratch_2;
  expect("scratch on kv_lens[batch - 1]", padec_cuda_validate_kv(&p, 2, &b, carved, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "tensors.kv_lens");
  b = apart;
  b.shard_starts = ends_on_scratch_2;
  b.seq_lens = apart.kv_lens;
  expect("scratch on shard_starts[batch - 1]", padec_cuda_validate_kv(&p, 2, &b, carved, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "tensors.shard_starts");
  b = apart;
  b.shard_starts = apart.kv_lens;
  b.seq_lens = ends_on_scratch_2;
  expect("scratch on seq_lens[batch - 1]", padec_cuda_validate_kv(&p, 2, &b, carved, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "tensors.seq_lens");
  b = apart;
  b.page_indices = ends_on_scratch_4;
  expect("scratch on page_indices[num_page_indices - 1]",
         padec_cuda_validate_kv(&p, 2, &b, carved, NULL), PADEC_STATUS_BAD_ARGUMENT,
         "tensors.page_indices");
  /* A length whose byte count passes 2^64 saturates instead of wrapping to nothing. */
  b.num_page_indices = (int64_t)1 << 62;
  expect("scratch in page_indices of 2^62 entries", padec_cuda_validate_kv(&p, 2, &b, carved, NULL),
         PADEC_STATUS_BAD_ARGUMENT, "tensors.page_indices");
}

/* Under capture the call is refused before it enqueues anything, so the capture stays valid. */
static void test_capture(void) {
  g_cases += 1;
  const int32_t indptr[2] = {0, 1}, indices[1] = {0}, lens[1] = {16};
  padec_tensors t;
  memset(&t, 0, sizeof t);
  t.page_indptr = device_copy(indptr, sizeof indptr);
  t.page_indices = device_copy(indices, sizeof indices);
  t.kv_lens = device_copy(lens, sizeof lens);
  t.num_pages = 1;
  const padec_params p = params_for(16);
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  const padec_status status = padec_cuda_validate_kv(&p, 1, &t, scratch(), (struct CUstream_st *)s);
  cudaGraph_t graph = NULL;
  const cudaError_t end = cudaStreamEndCapture(s, &graph);
  if (status != PADEC_STATUS_CUDA_ERROR || !strstr(padec_last_message(), "captured") ||
      end != cudaSuccess) {
    fprintf(stderr, "FAIL capture: got %s \"%s\", capture ended with %s\n",
            padec_status_name(status), padec_last_message(), cudaGetErrorName(end));
    g_failures += 1;
  }
  if (graph) CUDA_OK(cudaGraphDestroy(graph));
  (void)cudaGetLastError();
  CUDA_OK(cudaStreamDestroy(s));
  CUDA_OK(cudaFree((void *)t.page_indptr));
  CUDA_OK(cudaFree((void *)t.page_indices));
  CUDA_OK(cudaFree((void *)t.kv_lens));
}

int main(int argc, char **argv) {
  const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  test_arguments();
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped (host-side argument checks: %d failure(s))\n", g_failures);
    return g_failures ? 1 : 77;
  }
  CUDA_OK(cudaMalloc((void **)&g_scratch_block, 2 * SCRATCH_GUARD + PADEC_CUDA_VALIDATE_SCRATCH_BYTES));
  CUDA_OK(cudaMemset(g_scratch_block, GUARD_BYTE, 2 * SCRATCH_GUARD + PADEC_CUDA_VALIDATE_SCRATCH_BYTES));
  /* A blocking stream: its kernels wait for the uploads (cudaMemcpy on the legacy stream). */
  CUDA_OK(cudaStreamCreate(&g_stream));

  /* A small table with empty sequences and spare pages, with and without shards. */
  const int32_t lens[9] = {40, 0, 16, 17, 1, 0, 300, 33, 5};
  for (int shards = 0; shards < 2; ++shards) {
    table base = table_make(9, 16, lens, 1, 64, shards);
    const char *name = shards ? "shards" : "whole sequences";
    compare(name, &base, PADEC_STATUS_OK);
    test_each_fault(&base, name);
    test_several_faults(&base, name);
    test_pools(&base, name);
    table_free(&base);
  }
  /* Pages of one token, a single sequence. */
  {
    const int32_t one[1] = {7};
    table base = table_make(1, 1, one, 0, 10, 0);
    compare("one sequence, pages of 1", &base, PADEC_STATUS_OK);
    test_each_fault(&base, "one sequence, pages of 1");
    table_free(&base);
  }
  /* Batch 0: nothing to check, no arrays needed. */
  {
    table empty;
    memset(&empty, 0, sizeof empty);
    empty.page_size = 16;
    empty.page_indptr = host_alloc(sizeof(int32_t));
    empty.page_indptr[0] = 0;
    empty.kv_lens = host_alloc(sizeof(int32_t));
    empty.page_indices = host_alloc(sizeof(int32_t));
    compare("batch 0", &empty, PADEC_STATUS_OK);
    table_free(&empty);
  }
  /* A sequence of 2^21 pages of 1024 tokens (capacity 2^31 tokens, past int32) between two short
   * ones: kv_len INT32_MAX fits; bad page ids at its first, a middle and its last slot. */
  {
    const int32_t big[3] = {5, INT32_MAX, 3000};
    table base = table_make(3, 1024, big, 0, 1 << 22, 0);
    compare("2^21 pages", &base, PADEC_STATUS_OK);
    const int32_t slots[3] = {0, 1234567, (1 << 21) - 1};
    for (int i = 0; i < 3; ++i) {
      table t = table_copy(&base);
      t.page_indices[used_slot(&t, 1, slots[i])] = (int32_t)t.num_pages;
      t.page_indices[used_slot(&t, 2, 0)] = -1;
      char label[128];
      snprintf(label, sizeof label, "2^21 pages: bad page at slot %d, and in the next sequence",
               slots[i]);
      compare(label, &t, PADEC_STATUS_PAGE_INDEX_OUT_OF_RANGE);
      table_free(&t);
    }
    table t = table_copy(&base);
    t.page_indptr[2] -= 1; /* one page short of INT32_MAX tokens */
    compare("2^21 pages: one page short", &t, PADEC_STATUS_KV_LEN_EXCEEDS_PAGES);
    table_free(&t);
    table_free(&base);
  }
  /* 300000 sequences: more than one grid of sequence threads (1024 x 256). */
  {
    const int32_t batch = 300000;
    int32_t *many = host_alloc(sizeof(int32_t) * batch);
    for (int32_t b = 0; b < batch; ++b) many[b] = below(50);
    table base = table_make(batch, 16, many, 0, 100000, 1);
    free(many);
    compare("300000 sequences", &base, PADEC_STATUS_OK);
    test_each_fault(&base, "300000 sequences");
    table_free(&base);
  }
  const int trials = quick ? 200 : 3000;
  for (int trial = 0; trial < trials; ++trial) random_table(trial);
  check_guards("after every case");

  test_capture();
  CUDA_OK(cudaStreamDestroy(g_stream));
  CUDA_OK(cudaFree(g_scratch_block));
  printf("test_cuda_validate: %d cases, %d failure(s)\n", g_cases, g_failures);
  return g_failures ? 1 : 0;
}
