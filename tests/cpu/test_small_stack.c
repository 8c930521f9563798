/*
 * The CPU executor on a thread with a small stack (128 KiB, musl's default for new threads): it
 * keeps its buffers on the stack and must fit, at the largest shape (head_dim 256, 64 query rows
 * a KV head) and with the fp8 decode table, and still be right (checked against the oracle).
 * Sanitizer builds grow every frame, so they get a larger stack.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_support.h"

#if defined(__SANITIZE_ADDRESS__)
#define STACK_KIB 1024
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_KIB 1024
#endif
#endif
#ifndef STACK_KIB
#define STACK_KIB 128
#endif

typedef struct job {
  padec_params params;
  padec_status status;
  int pass;
} job;

/* Everything but the executor's call is prepared here too, on the small stack: the case, the
 * plan and the check allocate on the heap. */
static void *run_job(void *arg) {
  job *j = (job *)arg;
  static const int32_t lens[] = {300, 1, 0, 40};
  padec_case c;
  if (padec_case_init(&c, &j->params, 4, lens, 0x57ac) != 0) exit(1);
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = 8;
  options.partition_tokens = 64;
  padec_plan_layout layout;
  if (padec_plan_layout_init(&c.params, c.batch, &options, &layout) != PADEC_STATUS_OK) exit(1);
  void *plan = test_alloc(layout.plan_bytes), *workspace = test_alloc(layout.workspace_bytes);
  void *o = test_alloc(c.o_bytes);
  float *lse = test_alloc(sizeof(float) * (size_t)c.num_tokens * (size_t)c.params.num_q_heads);
  if (padec_plan_build(&c.params, &layout, c.kv_lens, plan, layout.plan_bytes) != PADEC_STATUS_OK) exit(1);
  padec_case_poison(&c, o, lse);
  padec_tensors t = padec_case_tensors(&c, o, lse);
  j->status = padec_cpu_run(&c.params, &layout, plan, &t, workspace, layout.workspace_bytes);
  padec_check_result result;
  j->pass = j->status == PADEC_STATUS_OK && padec_check_output(&c, o, lse, &result) == 0 && result.pass;
  free(plan);
  free(workspace);
  free(o);
  free(lse);
  padec_case_free(&c);
  return NULL;
}

int main(void) {
  job jobs[2];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 2; ++i) {
    padec_params *p = &jobs[i].params;
    p->num_kv_heads = 1;
    p->num_q_heads = 64;
    p->head_dim = 256;
    p->page_size = 16;
    if (i == 1) {
      p->kv_dtype = PADEC_DTYPE_E4M3;
      p->fp8_scale_mode = PADEC_FP8_SCALE_PER_TOKEN;
      p->o_dtype = PADEC_DTYPE_FP32;
    }
  }
  for (int i = 0; i < 2; ++i) {
    pthread_attr_t attr;
    pthread_t thread;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, (size_t)STACK_KIB * 1024) == 0,
          "a %d KiB stack", STACK_KIB);
    CHECK(pthread_create(&thread, &attr, run_job, &jobs[i]) == 0 && pthread_join(thread, NULL) == 0,
          "the thread did not run");
    pthread_attr_destroy(&attr);
    CHECK(jobs[i].status == PADEC_STATUS_OK, "case %d: %s", i, padec_status_name(jobs[i].status));
    CHECK(jobs[i].pass, "case %d: output outside tolerance", i);
  }
  if (test_failures) {
    fprintf(stderr, "test_small_stack: %d check(s) failed\n", test_failures);
    return 1;
  }
  printf("test_small_stack: head_dim 256, 64 rows a KV head, bf16 and fp8 per-token, on a %d KiB stack\n",
         STACK_KIB);
  return 0;
}
