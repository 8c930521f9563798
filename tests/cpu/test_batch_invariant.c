/*
 * The batch_invariant policy on the CPU executor:
 *  1. a fixed target sequence (its query and KV content) placed in many random batches (other
 *     sequences random, its position random, its pages at random page ids), under worker counts
 *     from 1 to 1000, gives bitwise the same output rows and LSE every time;
 *  2. random cases of every kind agree with the oracle under this policy (the tolerance rule).
 * The even policy is used as a control: its result for the target does change with the batch
 * (splits move), which shows that the comparison can fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static void *xalloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

/* bf16 bits of a random value in [-1, 1). */
static uint16_t random_bf16(uint32_t r) {
  float f = (float)(r & 0xffffff) / 8388608.0f - 1.0f;
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return (uint16_t)(bits >> 16);
}

typedef struct target_result {
  uint16_t *o;  /* q_len * heads * dim */
  float *lse;   /* q_len * heads */
} target_result;

enum { HEADS = 8, KV_HEADS = 2, DIM = 64, PAGE = 16, Q_LEN = 2, WINDOW = 0 };

/* Runs one random batch holding the target at a random position; copies the target's rows. */
static void run_batch(padec_policy policy, int32_t target_len, const uint16_t *target_q,
                      const uint16_t *target_k, const uint16_t *target_v, target_result *out,
                      int32_t *workers_used) {
  padec_params p;
  memset(&p, 0, sizeof p);
  p.num_q_heads = HEADS;
  p.num_kv_heads = KV_HEADS;
  p.head_dim = DIM;
  p.page_size = PAGE;
  p.q_len = Q_LEN;
  p.window_left = WINDOW;
  const int32_t batch = 1 + (int32_t)(next_u32() % 12);
  const int32_t where = (int32_t)(next_u32() % (uint32_t)batch);
  int32_t lens[12];
  int64_t pages_needed = 0;
  for (int32_t b = 0; b < batch; ++b) {
    lens[b] = b == where ? target_len : (int32_t)(next_u32() % 5000);
    pages_needed += (lens[b] + PAGE - 1) / PAGE;
  }
  const int32_t worker_choices[] = {1, 3, 7, 16, 64, 264, 1000};
  const int32_t workers = worker_choices[next_u32() % 7];
  *workers_used = workers;

  /* Pool with spare pages; page ids shuffled so the target's pages land anywhere. */
  const int64_t num_pages = pages_needed + 7;
  const size_t row = (size_t)KV_HEADS * DIM; /* NHD: a token's row holds every KV head */
  uint16_t *k = xalloc(sizeof(uint16_t) * (size_t)num_pages * PAGE * row);
  uint16_t *v = xalloc(sizeof(uint16_t) * (size_t)num_pages * PAGE * row);
  for (size_t i = 0; i < (size_t)num_pages * PAGE * row; ++i) {
    k[i] = random_bf16(next_u32());
    v[i] = random_bf16(next_u32());
  }
  int32_t *ids = xalloc(sizeof(int32_t) * (size_t)num_pages);
  for (int64_t i = 0; i < num_pages; ++i) ids[i] = (int32_t)i;
  for (int64_t i = num_pages - 1; i > 0; --i) {
    int64_t j = next_u32() % (uint32_t)(i + 1);
    int32_t t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
  }
  int32_t indptr[13];
  indptr[0] = 0;
  for (int32_t b = 0; b < batch; ++b) indptr[b + 1] = indptr[b] + (lens[b] + PAGE - 1) / PAGE;
  /* The target's tokens, copied into its pages. */
  for (int32_t t = 0; t < target_len; ++t) {
    const int64_t page = ids[indptr[where] + t / PAGE];
    const size_t dst = ((size_t)page * PAGE + (size_t)(t % PAGE)) * row;
    memcpy(k + dst, target_k + (size_t)t * row, sizeof(uint16_t) * row);
    memcpy(v + dst, target_v + (size_t)t * row, sizeof(uint16_t) * row);
  }
  const size_t q_row = (size_t)HEADS * DIM;
  uint16_t *q = xalloc(sizeof(uint16_t) * (size_t)batch * Q_LEN * q_row);
  for (size_t i = 0; i < (size_t)batch * Q_LEN * q_row; ++i) q[i] = random_bf16(next_u32());
  memcpy(q + (size_t)where * Q_LEN * q_row, target_q, sizeof(uint16_t) * Q_LEN * q_row);
  uint16_t *o = xalloc(sizeof(uint16_t) * (size_t)batch * Q_LEN * q_row);
  float *lse = xalloc(sizeof(float) * (size_t)batch * Q_LEN * HEADS);

  padec_plan_options options = {workers, 256, policy};
  padec_plan_layout layout;
  padec_status status = padec_plan_layout_init(&p, batch, &options, &layout);
  void *plan = NULL, *workspace = NULL;
  if (status == PADEC_STATUS_OK) {
    plan = xalloc(layout.plan_bytes);
    workspace = xalloc(layout.workspace_bytes);
    status = padec_plan_build(&p, &layout, lens, plan, layout.plan_bytes);
  }
  if (status == PADEC_STATUS_OK) {
    padec_tensors t;
    memset(&t, 0, sizeof t);
    t.q = q;
    t.k_pages = k;
    t.v_pages = v;
    t.num_pages = num_pages;
    t.page_indptr = indptr;
    t.page_indices = ids;
    t.kv_lens = lens;
    t.o = o;
    t.lse = lse;
    status = padec_cpu_run(&p, &layout, plan, &t, workspace, layout.workspace_bytes);
  }
  if (status != PADEC_STATUS_OK) {
    fprintf(stderr, "FAIL: %s (batch %d, workers %d)\n", padec_last_message(), batch, workers);
    exit(1);
  }
  memcpy(out->o, o + (size_t)where * Q_LEN * q_row, sizeof(uint16_t) * Q_LEN * q_row);
  memcpy(out->lse, lse + (size_t)where * Q_LEN * HEADS, sizeof(float) * Q_LEN * HEADS);
  free(k);
  free(v);
  free(ids);
  free(q);
  free(o);
  free(lse);
  free(plan);
  free(workspace);
}

/* Returns the number of batches whose target rows differ from the first batch's. */
static int count_differences(padec_policy policy, int32_t target_len, int batches) {
  const size_t row = (size_t)KV_HEADS * DIM, q_row = (size_t)HEADS * DIM;
  uint16_t *tk = xalloc(sizeof(uint16_t) * (size_t)(target_len + 1) * row);
  uint16_t *tv = xalloc(sizeof(uint16_t) * (size_t)(target_len + 1) * row);
  uint16_t *tq = xalloc(sizeof(uint16_t) * Q_LEN * q_row);
  for (size_t i = 0; i < (size_t)target_len * row; ++i) {
    tk[i] = random_bf16(next_u32());
    tv[i] = random_bf16(next_u32());
  }
  for (size_t i = 0; i < Q_LEN * q_row; ++i) tq[i] = random_bf16(next_u32());
  target_result first = {xalloc(sizeof(uint16_t) * Q_LEN * q_row), xalloc(sizeof(float) * Q_LEN * HEADS)};
  target_result other = {xalloc(sizeof(uint16_t) * Q_LEN * q_row), xalloc(sizeof(float) * Q_LEN * HEADS)};
  int32_t workers;
  run_batch(policy, target_len, tq, tk, tv, &first, &workers);
  int differences = 0;
  for (int i = 1; i < batches; ++i) {
    run_batch(policy, target_len, tq, tk, tv, &other, &workers);
    if (memcmp(first.o, other.o, sizeof(uint16_t) * Q_LEN * q_row) != 0 ||
        memcmp(first.lse, other.lse, sizeof(float) * Q_LEN * HEADS) != 0)
      differences += 1;
  }
  free(tk);
  free(tv);
  free(tq);
  free(first.o);
  free(first.lse);
  free(other.o);
  free(other.lse);
  return differences;
}

static void check_against_oracle(int cases) {
  for (int i = 0; i < cases; ++i) {
    padec_params p;
    memset(&p, 0, sizeof p);
    const padec_dtype kvs[] = {PADEC_DTYPE_BF16, PADEC_DTYPE_FP16, PADEC_DTYPE_E4M3};
    p.kv_dtype = kvs[next_u32() % 3];
    if (p.kv_dtype == PADEC_DTYPE_E4M3) p.fp8_scale_mode = (padec_fp8_scale_mode)(1 + next_u32() % 3);
    p.q_dtype = next_u32() % 2 ? PADEC_DTYPE_BF16 : PADEC_DTYPE_FP16;
    p.o_dtype = (padec_dtype)(next_u32() % 3);
    p.kv_layout = (padec_layout)(next_u32() % 2);
    p.page_size = 1 << (next_u32() % 8);
    p.head_dim = 64 << (next_u32() % 2);
    p.num_kv_heads = 1 + (int32_t)(next_u32() % 3);
    p.q_len = 1 + (int32_t)(next_u32() % 4);
    p.num_q_heads = p.num_kv_heads * (1 + (int32_t)(next_u32() % 8));
    p.window_left = next_u32() % 3 == 0 ? (int32_t)(next_u32() % 700) : 0;
    int32_t lens[6];
    for (int b = 0; b < 6; ++b) lens[b] = (int32_t)(next_u32() % 6000);
    padec_case c;
    if (padec_case_init(&c, &p, 6, lens, 1000 + (uint64_t)i) != 0) exit(1);
    padec_plan_options options = {1 + (int32_t)(next_u32() % 300), 16 << (next_u32() % 5),
                                  PADEC_POLICY_BATCH_INVARIANT};
    padec_plan_layout layout;
    void *plan = NULL, *workspace = NULL;
    void *o = xalloc(c.o_bytes);
    float *lse = xalloc(sizeof(float) * (size_t)c.num_tokens * (size_t)c.params.num_q_heads);
    padec_status status = padec_plan_layout_init(&c.params, c.batch, &options, &layout);
    if (status == PADEC_STATUS_OK) {
      plan = xalloc(layout.plan_bytes);
      workspace = xalloc(layout.workspace_bytes);
      status = padec_plan_build(&c.params, &layout, c.kv_lens, plan, layout.plan_bytes);
    }
    if (status == PADEC_STATUS_OK) {
      padec_case_poison(&c, o, lse);
      padec_tensors t = padec_case_tensors(&c, o, lse);
      status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
    }
    padec_check_result result;
    memset(&result, 0, sizeof result);
    if (status != PADEC_STATUS_OK || padec_check_output(&c, o, lse, &result) != 0 || !result.pass) {
      fprintf(stderr, "FAIL batch_invariant case %d (workers %d, partition %d): %s\n", i,
              options.num_workers, options.partition_tokens,
              status != PADEC_STATUS_OK ? padec_last_message() : "against the oracle");
      padec_check_print(stderr, "batch_invariant", &c, status == PADEC_STATUS_OK ? &result : NULL);
      exit(1);
    }
    free(plan);
    free(workspace);
    free(o);
    free(lse);
    padec_case_free(&c);
  }
}

int main(void) {
  /* Lengths: one piece (direct), a few pieces, and enough for the 32-piece cap to grow pieces. */
  const int32_t targets[] = {300, 4100, 37000};
  for (int i = 0; i < 3; ++i) {
    const int differences = count_differences(PADEC_POLICY_BATCH_INVARIANT, targets[i], 40);
    if (differences) {
      fprintf(stderr, "FAIL: batch_invariant: a %d-token sequence gave %d different results in 40 batches\n",
              targets[i], differences);
      return 1;
    }
  }
  /* Control: under `even` the same comparison does see differences. */
  const int control = count_differences(PADEC_POLICY_EVEN, 37000, 20);
  if (control == 0) {
    fprintf(stderr, "FAIL: the control (even policy) never changed: the comparison is not sensitive\n");
    return 1;
  }
  check_against_oracle(60);
  printf("batch_invariant: bitwise identical over 3 x 40 random batches; even differed in %d of 19; "
         "60 oracle cases pass\n", control);
  return 0;
}
