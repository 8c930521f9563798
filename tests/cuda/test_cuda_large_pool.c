/*
 * The CUDA executor with KV pools larger than 4 GiB each on the device, the used pages at the
 * far end: element offsets past 2^32 (byte offsets past 8 GiB), pages of 1 to 1024 tokens, NHD
 * and HND, bf16/fp16/e4m3 with per-token scales, and q and o with token strides past 2^31
 * elements. The host holds each pool as a sparse mapping (tests/support/large_case.h); only the
 * pages of the block table are copied to the device, at their offsets, into pools whose every
 * other byte is 0xff (NaN in every KV dtype and in the scales), so a read of a wrong page or of
 * a slot past kv_len turns the output into NaN. Each case runs with and without splits and is
 * checked against the oracle (which reads the host pools), and against padec_cpu_run on the same
 * plan.
 *
 * Usage: test_cuda_large_pool [--quick]   (--quick: the first two cases, for compute-sanitizer)
 * Exit 77 without a Hopper GPU or where the host refuses the sparse mappings. A case whose
 * mapping is refused or that does not fit the device's free memory is reported and skipped while
 * the others run, and the test then exits 77 too: a pass means every case ran.
 */
#include <cuda_runtime_api.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/large_case.h"
#include "test_support.h"
#include "gpu.h"
#include "padec_cuda.h"


/* A CUDA call that must succeed; on failure the case is abandoned (goto done). */
#define CASE_CUDA_OK(call)                                                                         \
  do {                                                                                             \
    cudaError_t error_ = (call);                                                                   \
    if (error_ != cudaSuccess) {                                                                   \
      fprintf(stderr, "%s: %s failed: %s\n", label, #call, cudaGetErrorString(error_));            \
      test_failures += 1;                                                                          \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)



static size_t dtype_bytes(padec_dtype dtype) {
  return dtype == PADEC_DTYPE_E4M3 ? 1 : dtype == PADEC_DTYPE_FP32 ? 4 : 2;
}

/* Copies the pages of the block table (and their per-token scales) to the device pools. */
static cudaError_t upload_pages(const large_case *lc, char *d_k, char *d_v, char *d_ks,
                                char *d_vs) {
  for (int32_t i = 0; i < lc->num_distinct_pages; ++i) {
    const size_t page = (size_t)lc->pages[i];
    const size_t at = page * lc->page_stride_bytes; /* the page and the NaN gap after it */
    cudaError_t e = cudaMemcpy(d_k + at, (const char *)lc->k_map + at, lc->page_stride_bytes,
                               cudaMemcpyHostToDevice);
    if (e == cudaSuccess)
      e = cudaMemcpy(d_v + at, (const char *)lc->v_map + at, lc->page_stride_bytes,
                     cudaMemcpyHostToDevice);
    if (e == cudaSuccess && lc->page_scales_bytes) {
      const size_t s = page * lc->page_scales_bytes;
      e = cudaMemcpy(d_ks + s, (const char *)lc->k_scales_map + s, lc->page_scales_bytes,
                     cudaMemcpyHostToDevice);
      if (e == cudaSuccess)
        e = cudaMemcpy(d_vs + s, (const char *)lc->v_scales_map + s, lc->page_scales_bytes,
                       cudaMemcpyHostToDevice);
    }
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

/* Runs one plan on the device and on the host and checks both. */
static void run_options(const char *label, const large_case *lc, const padec_plan_options *options,
                        char *d_k, char *d_v, float *d_ks, float *d_vs, char *d_q) {
  const padec_case *c = &lc->c;
  const padec_params *p = &c->params;
  const size_t rows = (size_t)c->num_tokens * (size_t)p->num_q_heads;
  const size_t o_elem = dtype_bytes(p->o_dtype);
  const int64_t row_elems = (int64_t)p->num_q_heads * p->head_dim;
  const int64_t ost = lc->o_stride_token ? lc->o_stride_token : row_elems;
  const int64_t osh = lc->o_stride_head ? lc->o_stride_head : p->head_dim;
  padec_plan_layout layout;
  void *host_plan = NULL, *workspace = NULL, *d_plan = NULL, *d_workspace = NULL;
  void *d_o = NULL, *d_lse = NULL, *d_indptr = NULL, *d_indices = NULL, *d_lens = NULL;
  void *o_gpu = malloc(c->o_bytes), *o_cpu_view = NULL, *o_cpu = malloc(c->o_bytes);
  float *lse_gpu = malloc(sizeof(float) * rows), *lse_cpu = malloc(sizeof(float) * rows);
  const int strided_o = lc->o_stride_token || lc->o_stride_head;
  if (!o_gpu || !o_cpu || !lse_gpu || !lse_cpu) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  padec_status status = padec_plan_layout_init(p, c->batch, options, &layout);
  CHECK(status == PADEC_STATUS_OK, "%s: layout: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) goto done;
  host_plan = aligned_alloc(64, (layout.plan_bytes + 63) / 64 * 64);
  workspace = aligned_alloc(256, (layout.workspace_bytes + 255) / 256 * 256);
  if (!host_plan || !workspace) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  status = padec_plan_build(p, &layout, c->kv_lens, host_plan, layout.plan_bytes);
  CHECK(status == PADEC_STATUS_OK, "%s: build: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) goto done;

  CASE_CUDA_OK(cudaMalloc(&d_plan, layout.plan_bytes));
  CASE_CUDA_OK(cudaMalloc(&d_workspace, layout.workspace_bytes));
  CASE_CUDA_OK(cudaMalloc(&d_o, lc->o_view_bytes));
  CASE_CUDA_OK(cudaMalloc(&d_lse, sizeof(float) * rows));
  CASE_CUDA_OK(cudaMalloc(&d_indptr, sizeof(int32_t) * ((size_t)c->batch + 1)));
  CASE_CUDA_OK(cudaMalloc(&d_indices, sizeof(int32_t) * (size_t)c->page_indptr[c->batch]));
  CASE_CUDA_OK(cudaMalloc(&d_lens, sizeof(int32_t) * (size_t)c->batch));
  CASE_CUDA_OK(cudaMemcpy(d_indptr, c->page_indptr, sizeof(int32_t) * ((size_t)c->batch + 1),
                     cudaMemcpyHostToDevice));
  CASE_CUDA_OK(cudaMemcpy(d_indices, c->page_indices, sizeof(int32_t) * (size_t)c->page_indptr[c->batch],
                     cudaMemcpyHostToDevice));
  CASE_CUDA_OK(
      cudaMemcpy(d_lens, c->kv_lens, sizeof(int32_t) * (size_t)c->batch, cudaMemcpyHostToDevice));
  CASE_CUDA_OK(cudaMemset(d_o, 0xff, lc->o_view_bytes));
  CASE_CUDA_OK(cudaMemset(d_lse, 0xff, sizeof(float) * rows));
  CASE_CUDA_OK(cudaMemset(d_workspace, 0xff, layout.workspace_bytes));
  status = padec_cuda_upload_plan(&layout, host_plan, d_plan, NULL);
  CHECK(status == PADEC_STATUS_OK, "%s: upload: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) goto done;

  padec_tensors t = large_case_tensors(lc, d_o, d_lse);
  t.q = d_q;
  t.k_pages = d_k;
  t.v_pages = d_v;
  t.page_indptr = d_indptr;
  t.page_indices = d_indices;
  t.kv_lens = d_lens;
  t.k_scales = c->k_scales ? d_ks : NULL;
  t.v_scales = c->v_scales ? d_vs : NULL;
  status = padec_cuda_run(p, &layout, d_plan, &t, d_workspace, layout.workspace_bytes, NULL);
  CHECK(status == PADEC_STATUS_OK, "%s: padec_cuda_run: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) goto done;
  CASE_CUDA_OK(cudaDeviceSynchronize());
  CASE_CUDA_OK(cudaGetLastError());
  for (int64_t tok = 0; tok < c->num_tokens; ++tok)
    for (int32_t h = 0; h < p->num_q_heads; ++h)
      CASE_CUDA_OK(
          cudaMemcpy((char *)o_gpu + (size_t)(tok * row_elems + (int64_t)h * p->head_dim) * o_elem,
                     (const char *)d_o + (size_t)(tok * ost + h * osh) * o_elem,
                     (size_t)p->head_dim * o_elem, cudaMemcpyDeviceToHost));
  CASE_CUDA_OK(cudaMemcpy(lse_gpu, d_lse, sizeof(float) * rows, cudaMemcpyDeviceToHost));

  padec_check_result gpu_result;
  int rc = padec_check_output(c, o_gpu, lse_gpu, &gpu_result);
  CHECK(rc == 0 && gpu_result.pass, "%s: GPU output against the oracle", label);
  if (rc != 0 || !gpu_result.pass) {
    padec_check_print(stderr, label, c, rc == 0 ? &gpu_result : NULL);
    goto done;
  }

  /* The CPU executor on the same plan and host pools. */
  o_cpu_view = strided_o ? large_map(lc->o_view_bytes) : o_cpu;
  if (!o_cpu_view) {
    fprintf(stderr, "%s: no mapping for the strided host o\n", label);
    exit(1);
  }
  padec_tensors host = large_case_tensors(lc, o_cpu_view, lse_cpu);
  status = padec_cpu_run(p, &layout, host_plan, &host, workspace, layout.workspace_bytes);
  CHECK(status == PADEC_STATUS_OK, "%s: padec_cpu_run: %s", label, padec_last_message());
  if (status != PADEC_STATUS_OK) goto done;
  if (strided_o) large_case_pack_o(lc, o_cpu_view, o_cpu);
  for (size_t i = 0; i < rows; ++i) {
    const int both_empty =
        isinf(lse_gpu[i]) && isinf(lse_cpu[i]) && lse_gpu[i] < 0 && lse_cpu[i] < 0;
    if (!both_empty &&
        !(fabs((double)lse_gpu[i] - lse_cpu[i]) <= 2.0 * gpu_result.lse_tolerance + 1e-5)) {
      CHECK(0, "%s: lse[%zu] GPU %g CPU %g", label, i, (double)lse_gpu[i], (double)lse_cpu[i]);
      break;
    }
  }
  for (size_t i = 0; i < rows * (size_t)p->head_dim; ++i) {
    const float a = (float)padec_output_element(o_gpu, p->o_dtype, (size_t)i);
    const float b = (float)padec_output_element(o_cpu, p->o_dtype, (size_t)i);
    if (!(fabs((double)a - b) <= 2.0 * gpu_result.tolerance + 1e-6)) {
      CHECK(0, "%s: o[%zu] GPU %g CPU %g", label, i, (double)a, (double)b);
      break;
    }
  }
  printf("    %-58s ok: max error %.3g (tolerance %.3g)\n", label, gpu_result.max_abs_err,
         gpu_result.tolerance);

done:
  cudaFree(d_plan);
  cudaFree(d_workspace);
  cudaFree(d_o);
  cudaFree(d_lse);
  cudaFree(d_indptr);
  cudaFree(d_indices);
  cudaFree(d_lens);
  if (strided_o && o_cpu_view) large_unmap(o_cpu_view, lc->o_view_bytes);
  free(host_plan);
  free(workspace);
  free(o_gpu);
  free(o_cpu);
  free(lse_gpu);
  free(lse_cpu);
}

/* Returns 1 when the case ran, 0 when it was skipped (no mapping, or no room on the device). */
static int run_spec(const large_spec *s, uint64_t seed) {
  const char *label = s->label;
  large_case lc;
  char err[256];
  char *d_k = NULL, *d_v = NULL, *d_q = NULL;
  float *d_ks = NULL, *d_vs = NULL;
  int ran = 0;
  const int rc =
      large_case_init(&lc, &s->params, s->batch, s->lens, s->num_pages, s->kv_page_stride,
                      s->q_stride_token, s->q_stride_head, s->o_stride_token, s->o_stride_head,
                      seed, err, sizeof err);
  if (rc == LARGE_CASE_NO_MAPPING) {
    printf("  %-50s skipped: %s\n", label, err);
    return 0;
  }
  if (rc != LARGE_CASE_OK) {
    fprintf(stderr, "%s: case: %s\n", label, err);
    exit(1);
  }
  const padec_case *c = &lc.c;
  const int64_t max_element = large_case_max_pool_element(&lc);
  printf("  %-50s pools 2 x %.1f GiB, last element %" PRId64 " (byte %.2f GiB), %d pages used\n",
         label, (double)c->pool_bytes / 0x1p30, max_element,
         (double)max_element * (double)dtype_bytes(c->params.kv_dtype) / 0x1p30,
         lc.num_distinct_pages);
  CHECK(max_element >= s->min_element, "%s: reaches element %" PRId64 " only", label, max_element);

  size_t free_bytes = 0, total_bytes = 0;
  CASE_CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t need = 2 * c->pool_bytes + 2 * c->scales_bytes + lc.q_view_bytes + lc.o_view_bytes +
                      ((size_t)1 << 30);
  if (need > free_bytes) {
    printf("    skipped: needs %.1f GiB of device memory, %.1f GiB free\n", (double)need / 0x1p30,
           (double)free_bytes / 0x1p30);
    goto done;
  }
  CASE_CUDA_OK(cudaMalloc((void **)&d_k, c->pool_bytes));
  CASE_CUDA_OK(cudaMalloc((void **)&d_v, c->pool_bytes));
  CASE_CUDA_OK(cudaMemset(d_k, 0xff, c->pool_bytes));
  CASE_CUDA_OK(cudaMemset(d_v, 0xff, c->pool_bytes));
  if (c->scales_bytes) {
    CASE_CUDA_OK(cudaMalloc((void **)&d_ks, c->scales_bytes));
    CASE_CUDA_OK(cudaMalloc((void **)&d_vs, c->scales_bytes));
    CASE_CUDA_OK(cudaMemset(d_ks, 0xff, c->scales_bytes));
    CASE_CUDA_OK(cudaMemset(d_vs, 0xff, c->scales_bytes));
    if (!lc.page_scales_bytes) { /* the device-pointer per-tensor scales: one float each */
      CASE_CUDA_OK(cudaMemcpy(d_ks, c->k_scales, sizeof(float), cudaMemcpyHostToDevice));
      CASE_CUDA_OK(cudaMemcpy(d_vs, c->v_scales, sizeof(float), cudaMemcpyHostToDevice));
    }
  }
  CASE_CUDA_OK(upload_pages(&lc, d_k, d_v, (char *)d_ks, (char *)d_vs));
  CASE_CUDA_OK(cudaMalloc((void **)&d_q, lc.q_view_bytes));
  if (lc.q_view != c->q) { /* strided: copy the rows only */
    const padec_params *p = &c->params;
    const size_t eb = dtype_bytes(p->q_dtype);
    const int64_t qst =
        lc.q_stride_token ? lc.q_stride_token : (int64_t)p->num_q_heads * p->head_dim;
    const int64_t qsh = lc.q_stride_head ? lc.q_stride_head : p->head_dim;
    for (int64_t tok = 0; tok < c->num_tokens; ++tok)
      for (int32_t h = 0; h < p->num_q_heads; ++h) {
        const size_t at = (size_t)(tok * qst + h * qsh) * eb;
        CASE_CUDA_OK(cudaMemcpy(d_q + at, (const char *)lc.q_view + at, (size_t)p->head_dim * eb,
                           cudaMemcpyHostToDevice));
      }
  } else {
    CASE_CUDA_OK(cudaMemcpy(d_q, c->q, c->q_bytes, cudaMemcpyHostToDevice));
  }

  {
    const int32_t heads = c->params.num_kv_heads;
    const padec_plan_options split = {97 * heads + 3, 16, PADEC_POLICY_EVEN};
    padec_plan_options direct = {heads, 0, PADEC_POLICY_EVEN};
    padec_plan_options recommended = {padec_gpu_default_workers(&c->params), 0, PADEC_POLICY_EVEN};
    char run_label[160];
    snprintf(run_label, sizeof run_label, "%s [split]", label);
    run_options(run_label, &lc, &split, d_k, d_v, d_ks, d_vs, d_q);
    snprintf(run_label, sizeof run_label, "%s [direct]", label);
    run_options(run_label, &lc, &direct, d_k, d_v, d_ks, d_vs, d_q);
    if (recommended.num_workers > 0) {
      snprintf(run_label, sizeof run_label, "%s [%d workers]", label, recommended.num_workers);
      run_options(run_label, &lc, &recommended, d_k, d_v, d_ks, d_vs, d_q);
    }
  }
  ran = 1;

done:
  cudaFree(d_k);
  cudaFree(d_v);
  cudaFree(d_ks);
  cudaFree(d_vs);
  cudaFree(d_q);
  large_case_free(&lc);
  return ran;
}

int main(int argc, char **argv) {
  const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && !quick) {
    fprintf(stderr, "usage: test_cuda_large_pool [--quick]\n");
    return 2;
  }
  if (!padec_gpu_available()) {
    printf("no Hopper GPU: skipped\n");
    return 77;
  }
  int table_size;
  const large_spec *specs = large_specs(&table_size);
  const int count = quick ? 2 : table_size;
  int ran = 0, device_cases = 0;
  for (int i = 0; i < count; ++i) device_cases += !specs[i].host_only;
  printf("test_cuda_large_pool: %d cases\n", device_cases);
  for (int i = 0; i < count; ++i)
    if (!specs[i].host_only) ran += run_spec(&specs[i], 0x1a76e100u + (uint64_t)i);
  return large_exit_status("test_cuda_large_pool", test_failures, ran, device_cases);
}
