/* Context-parallel test cases (shard_case.h). Everything is drawn from one splitmix64 stream
 * seeded by the caller, so a case is reproduced by its seed (and, for shard_case_init, its
 * params and lengths). */
#include "shard_case.h"

#include <stdlib.h>
#include <string.h>
#include "test_support.h"

static uint64_t next_random(uint64_t *state) { return test_splitmix64(state); }

/* Uniform in [0, bound); 0 for bound <= 0. */
static int32_t below(uint64_t *state, int64_t bound) {
  return bound <= 0 ? 0 : (int32_t)(next_random(state) % (uint64_t)bound);
}

static int32_t clamp(int64_t value, int64_t low, int64_t high) {
  return (int32_t)(value < low ? low : value > high ? high : value);
}

/* 64-byte aligned, never NULL for a zero size. */
static void *alloc_aligned(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  return aligned_alloc(64, rounded ? rounded : 64);
}

static size_t kv_element_bytes(padec_dtype dtype) {
  return dtype == PADEC_DTYPE_E4M3 ? 1 : dtype == PADEC_DTYPE_FP32 ? 4 : 2;
}

static int compare_int32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* One cut of a sequence of L tokens, in [0, L]: anywhere, on an even split, on a page edge, at
 * the query tokens or the window's first token, or on a 16-token (partition) edge. */
static int32_t draw_cut(uint64_t *state, int mode, int32_t r, int32_t num_shards, int32_t len,
                        const padec_params *p) {
  switch (mode) {
    case 0:
      return below(state, (int64_t)len + 1);
    case 1: {
      const int64_t chunk = ((int64_t)len + num_shards - 1) / num_shards;
      return clamp(chunk * r, 0, len);
    }
    case 2:
      return clamp((int64_t)p->page_size * below(state, len / p->page_size + 2), 0, len);
    case 3: {
      const int32_t q_len = p->q_len, window = p->window_left;
      switch (below(state, 5)) {
        case 0:
          return clamp((int64_t)len - q_len + below(state, q_len + 1), 0, len);
        case 1:
          return clamp((int64_t)len - 1, 0, len);
        case 2:
          if (window > 0)
            return clamp((int64_t)len - q_len - window + below(state, q_len + 3) - 1, 0, len);
          return below(state, (int64_t)len + 1);
        case 3:
          return below(state, 2) ? 0 : len;
        default:
          return below(state, (int64_t)len + 1);
      }
    }
    default:
      return clamp(16 * (int64_t)below(state, len / 16 + 2) + below(state, 3) - 1, 0, len);
  }
}

static padec_plan_options draw_options(uint64_t *state, const padec_params *p) {
  padec_plan_options o;
  memset(&o, 0, sizeof o);
  switch (below(state, 4)) {
    case 0:
      o.num_workers = 1;
      break;
    case 1:
      o.num_workers = p->num_kv_heads;
      break;
    case 2:
      o.num_workers = 1 + below(state, 300);
      break;
    default:
      o.num_workers = 37 * p->num_kv_heads + 1; /* forced splits with 16-token partitions */
      break;
  }
  o.partition_tokens = 16 << below(state, 7);
  const uint32_t policy = below(state, 3);
  o.policy = policy == 0 ? PADEC_POLICY_EVEN : policy == 1 ? PADEC_POLICY_BATCH_INVARIANT
                                                           : PADEC_POLICY_COST;
  return o;
}

/* Element row (of head_dim elements) of (page, slot, kv head) in a pool. */
static size_t pool_row(const padec_params *p, int64_t page, int32_t slot, int32_t head) {
  if (p->kv_layout == PADEC_LAYOUT_NHD)
    return ((size_t)page * (size_t)p->page_size + (size_t)slot) * (size_t)p->num_kv_heads +
           (size_t)head;
  return ((size_t)page * (size_t)p->num_kv_heads + (size_t)head) * (size_t)p->page_size +
         (size_t)slot;
}

static size_t scale_index(const padec_params *p, int64_t page, int32_t slot, int32_t head) {
  return ((size_t)page * (size_t)p->num_kv_heads + (size_t)head) * (size_t)p->page_size +
         (size_t)slot;
}

int shard_case_init(shard_case *sc, const padec_params *params, int32_t batch,
                    const int32_t *seq_lens, int32_t num_shards, uint64_t seed) {
  if (!sc) return -1;
  memset(sc, 0, sizeof *sc);
  if (num_shards < 1 || batch < 0) return -1;
  if (padec_case_init(&sc->whole, params, batch, seq_lens, seed) != 0) return -1;
  const padec_case *w = &sc->whole;
  const padec_params *p = &w->params;
  const int32_t R = num_shards, ps = p->page_size;
  const size_t per_shard = (size_t)(batch > 0 ? batch : 1);
  uint64_t state = seed ^ 0x73686172645f6373ull;
  sc->num_shards = R;

  sc->bounds = malloc(sizeof(int32_t) * per_shard * (size_t)(R + 1));
  sc->shards = calloc((size_t)R, sizeof(padec_case));
  sc->options = calloc((size_t)R, sizeof(padec_plan_options));
  sc->grid_splits = calloc((size_t)R, sizeof(int32_t));
  sc->table_kind = malloc(sizeof(int32_t) * per_shard * (size_t)R);
  sc->kv_lens = malloc(sizeof(int32_t) * per_shard * (size_t)R);
  sc->shard_starts = malloc(sizeof(int32_t) * per_shard * (size_t)R);
  sc->seq_lens = malloc(sizeof(int32_t) * per_shard * (size_t)R);
  sc->page_indptr = malloc(sizeof(int32_t) * ((size_t)batch + 1) * (size_t)R);
  int32_t *rows = malloc(sizeof(int32_t) * per_shard * (size_t)R); /* table rows of (r, b) */
  int32_t *extra = malloc(sizeof(int32_t) * per_shard * (size_t)R);
  if (!sc->bounds || !sc->shards || !sc->options || !sc->grid_splits || !sc->table_kind || !sc->kv_lens ||
      !sc->shard_starts || !sc->seq_lens || !sc->page_indptr || !rows || !extra) {
    free(rows);
    free(extra);
    shard_case_free(sc);
    return -1;
  }

  /* Cuts, sorted, from one mode per sequence. */
  for (int32_t b = 0; b < batch; ++b) {
    int32_t *cut = sc->bounds + (size_t)b * (size_t)(R + 1);
    const int32_t len = w->kv_lens[b];
    const int mode = below(&state, 5);
    cut[0] = 0;
    cut[R] = len;
    for (int32_t r = 1; r < R; ++r) cut[r] = draw_cut(&state, mode, r, R, len, p);
    qsort(cut + 1, (size_t)(R > 1 ? R - 1 : 0), sizeof(int32_t), compare_int32);
  }
  for (int32_t r = 0; r < R; ++r) {
    sc->options[r] = draw_options(&state, p);
    /* One shard in four runs on the grid path (on the CPU), with 1 to 8 splits. */
    sc->grid_splits[r] = below(&state, 4) == 0 ? 1 + (int32_t)below(&state, 8) : 0;
  }

  /* Table kinds and sizes. */
  int64_t fresh_pages = 0, total_rows = 0;
  for (int32_t r = 0; r < R; ++r) {
    for (int32_t b = 0; b < batch; ++b) {
      const size_t at = (size_t)r * (size_t)batch + (size_t)b;
      const int32_t *cut = sc->bounds + (size_t)b * (size_t)(R + 1);
      const int32_t start = cut[r], end = cut[r + 1];
      const int32_t whole_row = w->page_indptr[b + 1] - w->page_indptr[b];
      sc->kv_lens[at] = end - start;
      sc->shard_starts[at] = start;
      sc->seq_lens[at] = w->kv_lens[b];
      if (end == start) {
        sc->table_kind[at] = SHARD_TABLE_EMPTY;
        rows[at] = whole_row > 0 ? below(&state, 2) : 0;
      } else if (start % ps == 0 && below(&state, 3) != 0) {
        sc->table_kind[at] = SHARD_TABLE_REUSED;
        const int32_t first = start / ps, needed = (end + ps - 1) / ps;
        extra[at] = below(&state, 2) ? whole_row - needed : 0; /* the rest of the row as spares */
        rows[at] = needed - first + extra[at];
      } else {
        sc->table_kind[at] = SHARD_TABLE_COPIED;
        extra[at] = below(&state, 3);
        rows[at] = (end - start + ps - 1) / ps + extra[at];
        fresh_pages += rows[at];
      }
      total_rows += rows[at];
    }
  }

  const int64_t num_pages = w->num_pages + fresh_pages;
  const size_t page_bytes =
      (size_t)ps * (size_t)p->num_kv_heads * (size_t)p->head_dim * kv_element_bytes(p->kv_dtype);
  const size_t pool_bytes = (size_t)num_pages * page_bytes;
  const int per_token = p->kv_dtype == PADEC_DTYPE_E4M3 &&
                        p->fp8_scale_mode == PADEC_FP8_SCALE_PER_TOKEN;
  const size_t page_scales = (size_t)ps * (size_t)p->num_kv_heads;
  const size_t scales_bytes = per_token ? sizeof(float) * (size_t)num_pages * page_scales : 0;
  sc->num_pages = num_pages;
  sc->page_indices = malloc(sizeof(int32_t) * (size_t)(total_rows > 0 ? total_rows : 1));
  sc->k_pages = alloc_aligned(pool_bytes);
  sc->v_pages = alloc_aligned(pool_bytes);
  int32_t *fresh_ids = malloc(sizeof(int32_t) * (size_t)(fresh_pages > 0 ? fresh_pages : 1));
  if (per_token) {
    sc->k_scales = alloc_aligned(scales_bytes);
    sc->v_scales = alloc_aligned(scales_bytes);
  }
  if (!sc->page_indices || !sc->k_pages || !sc->v_pages || !fresh_ids ||
      (per_token && (!sc->k_scales || !sc->v_scales))) {
    free(rows);
    free(extra);
    free(fresh_ids);
    shard_case_free(sc);
    return -1;
  }
  memcpy(sc->k_pages, w->k_pages, w->pool_bytes);
  memcpy(sc->v_pages, w->v_pages, w->pool_bytes);
  memset((char *)sc->k_pages + w->pool_bytes, 0xff, pool_bytes - w->pool_bytes);
  memset((char *)sc->v_pages + w->pool_bytes, 0xff, pool_bytes - w->pool_bytes);
  if (per_token) {
    memcpy(sc->k_scales, w->k_scales, w->scales_bytes);
    memcpy(sc->v_scales, w->v_scales, w->scales_bytes);
    memset((char *)sc->k_scales + w->scales_bytes, 0xff, scales_bytes - w->scales_bytes);
    memset((char *)sc->v_scales + w->scales_bytes, 0xff, scales_bytes - w->scales_bytes);
  }
  for (int64_t i = 0; i < fresh_pages; ++i) fresh_ids[i] = (int32_t)(w->num_pages + i);
  for (int64_t i = fresh_pages - 1; i > 0; --i) {
    const int64_t j = below(&state, i + 1);
    const int32_t swap = fresh_ids[i];
    fresh_ids[i] = fresh_ids[j];
    fresh_ids[j] = swap;
  }

  /* Fill the tables and copy the tokens of copied shards. */
  const size_t row_bytes = (size_t)p->head_dim * kv_element_bytes(p->kv_dtype);
  int64_t next_fresh = 0, index_base = 0;
  for (int32_t r = 0; r < R; ++r) {
    int32_t *indptr = sc->page_indptr + (size_t)r * ((size_t)batch + 1);
    int32_t *indices = sc->page_indices + index_base;
    indptr[0] = 0;
    for (int32_t b = 0; b < batch; ++b) {
      const size_t at = (size_t)r * (size_t)batch + (size_t)b;
      const int32_t start = sc->shard_starts[at], len = sc->kv_lens[at];
      const int32_t *whole_pages = w->page_indices + w->page_indptr[b];
      int32_t *row = indices + indptr[b];
      indptr[b + 1] = indptr[b] + rows[at];
      if (sc->table_kind[at] == SHARD_TABLE_EMPTY) {
        if (rows[at] > 0) row[0] = whole_pages[0];
      } else if (sc->table_kind[at] == SHARD_TABLE_REUSED) {
        memcpy(row, whole_pages + start / ps, sizeof(int32_t) * (size_t)rows[at]);
      } else {
        for (int32_t i = 0; i < rows[at]; ++i) row[i] = fresh_ids[next_fresh++];
        for (int32_t j = 0; j < len; ++j) {
          const int32_t position = start + j;
          const int64_t src_page = whole_pages[position / ps], dst_page = row[j / ps];
          const int32_t src_slot = position % ps, dst_slot = j % ps;
          for (int32_t h = 0; h < p->num_kv_heads; ++h) {
            const size_t src = pool_row(p, src_page, src_slot, h) * row_bytes;
            const size_t dst = pool_row(p, dst_page, dst_slot, h) * row_bytes;
            memcpy((char *)sc->k_pages + dst, (const char *)w->k_pages + src, row_bytes);
            memcpy((char *)sc->v_pages + dst, (const char *)w->v_pages + src, row_bytes);
            if (per_token) {
              sc->k_scales[scale_index(p, dst_page, dst_slot, h)] =
                  w->k_scales[scale_index(p, src_page, src_slot, h)];
              sc->v_scales[scale_index(p, dst_page, dst_slot, h)] =
                  w->v_scales[scale_index(p, src_page, src_slot, h)];
            }
          }
        }
      }
    }

    padec_case *v = &sc->shards[r];
    memset(v, 0, sizeof *v);
    v->params = w->params;
    v->params.o_dtype = PADEC_DTYPE_FP32;
    v->batch = batch;
    v->kv_lens = sc->kv_lens + (size_t)r * (size_t)batch;
    v->page_indptr = indptr;
    v->page_indices = indices;
    v->num_pages = num_pages;
    v->q = w->q;
    v->k_pages = sc->k_pages;
    v->v_pages = sc->v_pages;
    v->k_scales = per_token ? sc->k_scales : w->k_scales;
    v->v_scales = per_token ? sc->v_scales : w->v_scales;
    v->q_bytes = w->q_bytes;
    v->o_bytes = sizeof(float) * shard_case_o_elems(sc);
    v->pool_bytes = pool_bytes;
    v->scales_bytes = per_token ? scales_bytes : w->scales_bytes;
    v->num_tokens = w->num_tokens;
    v->seed = w->seed;
    v->shard_starts = sc->shard_starts + (size_t)r * (size_t)batch;
    v->seq_lens = sc->seq_lens + (size_t)r * (size_t)batch;
    index_base += indptr[batch];
  }
  free(rows);
  free(extra);
  free(fresh_ids);
  return 0;
}

int shard_case_random(shard_case *sc, int32_t num_shards, int32_t token_budget, uint64_t seed) {
  static const int32_t head_dims[] = {64, 128, 256};
  static const int32_t groups[] = {1, 2, 4, 5, 8, 16};
  static const padec_dtype kv_dtypes[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3};
  uint64_t state = seed;
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_kv_heads = 1 + below(&state, 3);
  p.num_q_heads = p.num_kv_heads * groups[below(&state, 6)];
  p.head_dim = head_dims[below(&state, 3)];
  p.page_size = 1 << below(&state, 11);
  p.kv_layout = below(&state, 2) ? PADEC_LAYOUT_HND : PADEC_LAYOUT_NHD;
  p.q_dtype = below(&state, 2) ? PADEC_DTYPE_FP16 : PADEC_DTYPE_BF16;
  p.kv_dtype = kv_dtypes[below(&state, 3)];
  if (p.kv_dtype == PADEC_DTYPE_E4M3) p.fp8_scale_mode = (padec_fp8_scale_mode)below(&state, 4);
  p.o_dtype = (padec_dtype)below(&state, 3);
  p.q_len = 1 + below(&state, 4);
  switch (below(&state, 5)) {
    case 0:
      p.window_left = 1 + below(&state, 16);
      break;
    case 1:
      p.window_left = 16 + below(&state, 300);
      break;
    case 2:
      p.window_left = 300 + below(&state, 3000);
      break;
    default:
      p.window_left = 0;
      break;
  }
  if (below(&state, 6) == 0) p.softmax_scale = 0.05f + 0.01f * (float)below(&state, 46);

  /* Work of the oracle and the executors: tokens x q heads x q_len x head_dim. */
  int64_t budget =
      (int64_t)token_budget * 64 / ((int64_t)p.num_q_heads * p.q_len * p.head_dim);
  if (budget < 64) budget = 64;
  const int32_t batch = 1 + below(&state, 8);
  int32_t lens[8];
  for (int32_t b = 0; b < batch; ++b) {
    int32_t len;
    switch (below(&state, 8)) {
      case 0:
        len = 0;
        break;
      case 1:
        len = 1 + below(&state, num_shards > 1 ? num_shards - 1 : 1); /* shorter than R */
        break;
      case 2:
        len = 1 + below(&state, p.q_len + 1); /* around q_len */
        break;
      case 3:
        len = p.page_size * (1 + below(&state, 4)) - 1 + below(&state, 3);
        break;
      default:
        len = 1 + below(&state, 4000);
        break;
    }
    if (len > budget) len = below(&state, budget < 64 ? budget : 64);
    budget -= len;
    lens[b] = len;
  }
  return shard_case_init(sc, &p, batch, lens, num_shards, next_random(&state));
}

void shard_case_free(shard_case *sc) {
  if (!sc) return;
  padec_case_free(&sc->whole);
  free(sc->bounds);
  free(sc->shards);
  free(sc->options);
  free(sc->grid_splits);
  free(sc->table_kind);
  free(sc->kv_lens);
  free(sc->shard_starts);
  free(sc->seq_lens);
  free(sc->page_indptr);
  free(sc->page_indices);
  free(sc->k_pages);
  free(sc->v_pages);
  free(sc->k_scales);
  free(sc->v_scales);
  memset(sc, 0, sizeof *sc);
}

size_t shard_case_lse_elems(const shard_case *sc) {
  return (size_t)sc->whole.num_tokens * (size_t)sc->whole.params.num_q_heads;
}

size_t shard_case_o_elems(const shard_case *sc) {
  return shard_case_lse_elems(sc) * (size_t)sc->whole.params.head_dim;
}

padec_status shard_case_plan(const shard_case *sc, int32_t r, padec_plan_layout *layout,
                             void **plan) {
  const padec_case *v = &sc->shards[r];
  *plan = NULL;
  padec_status status = padec_plan_layout_init(&v->params, v->batch, &sc->options[r], layout);
  if (status != PADEC_STATUS_OK) return status;
  *plan = alloc_aligned(layout->plan_bytes);
  if (!*plan) return PADEC_STATUS_INTERNAL;
  return padec_plan_build_shard(&v->params, layout, v->kv_lens, v->shard_starts, v->seq_lens,
                                *plan, layout->plan_bytes);
}

padec_status shard_case_run_cpu(const shard_case *sc, int32_t r, float *o, float *lse) {
  const padec_case *v = &sc->shards[r];
  if (sc->grid_splits[r] > 0) {
    padec_grid_layout grid;
    padec_status status = padec_grid_layout_init(&v->params, v->batch, sc->grid_splits[r],
                                                 sc->options[r].partition_tokens, &grid);
    if (status != PADEC_STATUS_OK) return status;
    void *workspace = alloc_aligned(grid.workspace_bytes);
    if (!workspace) return PADEC_STATUS_INTERNAL;
    const padec_tensors t = padec_case_tensors(v, o, lse);
    status = padec_cpu_run_grid(&v->params, &grid, &t, workspace, grid.workspace_bytes);
    free(workspace);
    return status;
  }
  padec_plan_layout layout;
  void *plan = NULL, *workspace = NULL;
  padec_status status = shard_case_plan(sc, r, &layout, &plan);
  if (status == PADEC_STATUS_OK) {
    workspace = alloc_aligned(layout.workspace_bytes);
    if (!workspace) status = PADEC_STATUS_INTERNAL;
  }
  if (status == PADEC_STATUS_OK) {
    const padec_tensors t = padec_case_tensors(&sc->shards[r], o, lse);
    status = padec_cpu_run(&sc->shards[r].params, &layout, plan, &t, workspace,
                           layout.workspace_bytes);
  }
  free(plan);
  free(workspace);
  return status;
}

padec_shard_merge_tensors shard_case_merge_tensors(const shard_case *sc, const float *shard_o,
                                                   const float *shard_lse, void *o, float *lse) {
  padec_shard_merge_tensors t;
  memset(&t, 0, sizeof t);
  t.num_shards = sc->num_shards;
  t.rows = (int32_t)sc->whole.num_tokens;
  t.shard_o = shard_o;
  t.shard_lse = shard_lse;
  t.o = o;
  t.lse = lse;
  return t;
}

static const char *kind_letter(int32_t kind) {
  return kind == SHARD_TABLE_REUSED ? "R" : kind == SHARD_TABLE_COPIED ? "C" : "E";
}

void shard_case_print(FILE *stream, const char *label, const shard_case *sc) {
  const int32_t R = sc->num_shards, batch = sc->whole.batch;
  padec_check_print(stream, label, &sc->whole, NULL);
  fprintf(stream, "  %d shards, pool of %lld pages (whole case: %lld); tables R reused, C copied, "
                  "E empty\n",
          R, (long long)sc->num_pages, (long long)sc->whole.num_pages);
  for (int32_t b = 0; b < batch; ++b) {
    const int32_t *cut = sc->bounds + (size_t)b * (size_t)(R + 1);
    fprintf(stream, "  sequence %d: seq_len %d cuts ", b, sc->whole.kv_lens[b]);
    for (int32_t r = 0; r <= R; ++r) fprintf(stream, "%s%d", r ? "," : "", cut[r]);
    fprintf(stream, " tables ");
    for (int32_t r = 0; r < R; ++r)
      fprintf(stream, "%s", kind_letter(sc->table_kind[(size_t)r * (size_t)batch + (size_t)b]));
    fputc('\n', stream);
  }
  for (int32_t r = 0; r < R; ++r)
    fprintf(stream, "  shard %d: num_workers %d partition_tokens %d policy %s\n", r,
            sc->options[r].num_workers, sc->options[r].partition_tokens,
            sc->grid_splits[r] > 0 ? "grid path"
            : sc->options[r].policy == PADEC_POLICY_BATCH_INVARIANT ? "batch_invariant"
            : sc->options[r].policy == PADEC_POLICY_COST            ? "cost"
                                                                    : "even");
}
