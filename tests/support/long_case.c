#include "long_case.h"

#include "test_support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  kRowPages = 1 << 21, /* 2^31 tokens of pages of 1024 */
  kGuardEntries = kRowPages + 64,
  kShortPages = 3,
};

const run_path long_case_paths[LONG_CASE_PATHS] = {{1, 0, 256}, {3, 0, 256}, {0, 1, 256}, {0, 5, 256}};

void long_case_init(long_case *lc, int variant, uint64_t seed) {
  memset(lc, 0, sizeof *lc);
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.q_len = variant / 2 ? 3 : 1;
  p.o_dtype = PADEC_DTYPE_FP32;
  if (variant % 2) {
    p.kv_dtype = PADEC_DTYPE_E4M3;
    p.kv_layout = PADEC_LAYOUT_HND;
    p.fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
  }
  p.page_size = LONG_CASE_PAGE_SIZE;
  p.window_left = LONG_CASE_WINDOW;
  /* 2^31 - 1 is 1023 past a page boundary: the short case ends at the same offset of its page. */
  const int32_t short_len = (kShortPages - 1) * LONG_CASE_PAGE_SIZE + 1023;
  if (padec_case_init(&lc->shorter, &p, 1, &short_len, seed) != 0) {
    fprintf(stderr, "long_case: out of host memory\n");
    exit(1);
  }
  lc->indices = (int32_t *)test_alloc(sizeof(int32_t) * ((size_t)kGuardEntries + kRowPages));
  lc->o = test_alloc(lc->shorter.o_bytes);
  lc->lse = (float *)test_alloc(sizeof(float) * (size_t)lc->shorter.num_tokens *
                                (size_t)p.num_q_heads);
  for (int64_t i = 0; i < kGuardEntries; ++i) lc->indices[i] = 0x7f7f7f7f; /* past any pool */
  const int32_t *row = lc->shorter.page_indices + lc->shorter.page_indptr[0];
  int32_t *stretched = lc->indices + kGuardEntries;
  for (int64_t i = 0; i < kRowPages - kShortPages; ++i) stretched[i] = row[0];
  for (int32_t i = 0; i < kShortPages; ++i) stretched[kRowPages - kShortPages + i] = row[i];
  lc->indptr[0] = kGuardEntries;
  lc->indptr[1] = kGuardEntries + kRowPages;
  lc->lens[0] = INT32_MAX;
  lc->longer = lc->shorter;
  lc->longer.page_indptr = lc->indptr;
  lc->longer.page_indices = lc->indices;
  lc->longer.kv_lens = lc->lens;
  lc->indptr_host[0] = 0;
  lc->indptr_host[1] = kRowPages;
  lc->longer_host = lc->longer;
  lc->longer_host.page_indptr = lc->indptr_host;
  lc->longer_host.page_indices = stretched;
}

void long_case_free(long_case *lc) {
  free(lc->indices);
  free(lc->o);
  free(lc->lse);
  padec_case_free(&lc->shorter);
  memset(lc, 0, sizeof *lc);
}

void long_case_label(const long_case *lc, const run_path *path, char *label, size_t size) {
  const padec_params *p = &lc->shorter.params;
  char name[64];
  run_path_name(path, name, sizeof name);
  snprintf(label, size, "kv_len 2^31 - 1, window %d, kv %s %s%s, q_len %d, seed %" PRIu64 ", %s",
           p->window_left, p->kv_dtype == PADEC_DTYPE_E4M3 ? "e4m3" : "bf16",
           p->kv_layout == PADEC_LAYOUT_HND ? "HND" : "NHD",
           p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN ? " per-token scales" : "", p->q_len,
           lc->shorter.seed, name);
}
