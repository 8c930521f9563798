"""padec: paged-attention decode, the Python binding of libpadec.so (ctypes, no compiler needed).

    import numpy as np
    import padec

    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16)
    plan = padec.build_plan(params, kv_lens, num_workers=64)
    o = padec.run_cpu(params, plan, q, k_pages, v_pages, page_indptr, page_indices, kv_lens)

run_cpu takes numpy arrays (bf16 as uint16 bits) or CPU torch tensors; run_cuda takes torch CUDA
tensors and runs on torch's current stream, from a host Plan or from a CudaPlan that the GPU
built from lengths on the device (build_plan_cuda). torch is imported only by the CUDA path. The grid
path (grid_layout, run_cpu_grid, run_cuda_grid) needs no plan; choose() picks the path and policy
for a batch; merge_shards_cpu / merge_shards_cuda combine the shards of context-parallel decode
(build_plan and the run functions take shard_starts= and seq_lens=); validate_kv checks a block
table and its lengths, on the host or the device; num_partitions and first_partition tell what a
plan schedules for one sequence. The library is found through
$PADEC_LIBRARY, then padec/_lib/libpadec.so, then build/libpadec.so of the source tree; every
failure raises padec.Error with the status name and the library's message.
"""

from ._choose import Choice, choose
from ._cuda import DeviceInfo, built_with_cuda, device_info, recommended_workers
from ._errors import Error, Status
from ._grid import GridLayout, grid_layout, grid_recommended_splits
from ._library import library_path, library_version
from ._params import DType, Fp8ScaleMode, Layout, Params, Policy
from ._plan import (CostModel, CudaPlan, Plan, PlanHeader, PlanLayout, build_plan,
                    build_plan_cuda, default_cost_model, first_partition, num_partitions,
                    plan_layout)
from ._run import (merge_shards_cpu, merge_shards_cuda, run_cpu, run_cpu_grid, run_cuda,
                   run_cuda_grid, validate_kv)

__version__ = "0.5.0"

__all__ = [
    "Choice",
    "CostModel",
    "CudaPlan",
    "DType",
    "DeviceInfo",
    "Error",
    "Fp8ScaleMode",
    "GridLayout",
    "Layout",
    "Params",
    "Plan",
    "PlanHeader",
    "PlanLayout",
    "Policy",
    "Status",
    "build_plan",
    "build_plan_cuda",
    "built_with_cuda",
    "choose",
    "default_cost_model",
    "device_info",
    "first_partition",
    "grid_layout",
    "grid_recommended_splits",
    "library_path",
    "library_version",
    "merge_shards_cpu",
    "merge_shards_cuda",
    "num_partitions",
    "plan_layout",
    "recommended_workers",
    "run_cpu",
    "run_cpu_grid",
    "run_cuda",
    "run_cuda_grid",
    "validate_kv",
]
