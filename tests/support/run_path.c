#include "run_path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "test_support.h"

void run_path_name(const run_path *path, char *name, size_t size) {
  snprintf(name, size, "%s %d, partition %d", path->splits ? "grid splits" : "plan workers",
           path->splits ? path->splits : path->workers, path->partition_tokens);
}

static padec_plan_options plan_options(const run_path *path) {
  padec_plan_options options;
  memset(&options, 0, sizeof options);
  options.num_workers = path->workers;
  options.partition_tokens = path->partition_tokens;
  return options;
}

padec_status run_path_cpu(const padec_case *c, const run_path *path, void *o, float *lse) {
  const padec_tensors tensors = padec_case_tensors(c, o, lse);
  padec_status status;
  if (path->splits > 0) {
    padec_grid_layout layout;
    status = padec_grid_layout_init(&c->params, c->batch, path->splits, path->partition_tokens,
                                    &layout);
    if (status != PADEC_STATUS_OK) return status;
    void *workspace = test_alloc(layout.workspace_bytes);
    status = padec_cpu_run_grid(&c->params, &layout, &tensors, workspace, layout.workspace_bytes);
    free(workspace);
    return status;
  }
  const padec_plan_options options = plan_options(path);
  padec_plan_layout layout;
  status = padec_plan_layout_init(&c->params, c->batch, &options, &layout);
  if (status != PADEC_STATUS_OK) return status;
  void *plan = test_alloc(layout.plan_bytes), *workspace = test_alloc(layout.workspace_bytes);
  status = padec_plan_build(&c->params, &layout, c->kv_lens, plan, layout.plan_bytes);
  if (status == PADEC_STATUS_OK)
    status = padec_cpu_run(&c->params, &layout, plan, &tensors, workspace, layout.workspace_bytes);
  free(plan);
  free(workspace);
  return status;
}

int run_path_gpu(const padec_case *c, const run_path *path, void *o, float *lse, char *err,
                 size_t err_size) {
  if (path->splits > 0)
    return padec_gpu_run_case_grid(c, path->splits, path->partition_tokens, o, lse, err, err_size);
  const padec_plan_options options = plan_options(path);
  return padec_gpu_run_case(c, &options, o, lse, err, err_size);
}
