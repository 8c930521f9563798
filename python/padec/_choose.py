"""`auto` (padec_choose_for_device): the path, policy, worker count and split count for a batch,
from its shape."""

from __future__ import annotations

import ctypes
import dataclasses

from ._cuda import device_info, workers_or_recommended
from ._errors import Error, Status
from ._library import CChoice, CDeviceShape, check, lib
from ._params import Params, Policy, expect_params, int32_argument, int64_argument
from ._plan import host_lengths
from ._tensors import describe, is_torch_tensor

PATHS = ("persistent", "grid")  # padec_path by value


@dataclasses.dataclass(frozen=True)
class Choice:
    """padec_choice: what choose() picked.

    path "persistent": build_plan with num_workers, partition_tokens and policy, then run_cpu or
    run_cuda. path "grid": grid_layout with num_splits=grid_splits and partition_tokens, then
    run_cpu_grid or run_cuda_grid. policy is a Policy name ("even", "cost",
    "batch_invariant"), which build_plan takes as it is; grid_splits is filled on both paths.
    """

    path: str
    policy: str
    num_workers: int
    partition_tokens: int
    grid_splits: int


def choose(params: Params, kv_lens=None, num_workers: int | None = None, *,
           batch: int | None = None, sm_count: int | None = None,
           memory_bytes_per_second: int | None = None) -> Choice:
    """Picks the path, policy and worker count for a batch (padec_choose_for_device), by the rule
    of docs/PERF.md: the grid path where batch x num_kv_heads fills num_workers and the lengths
    are not skewed, else a plan (the cost policy when the lengths are known). Where batch x
    num_kv_heads is no more than sm_count (and num_workers more): one CTA an SM. That is the grid
    path with sm_count // (batch x num_kv_heads) splits (capped at a window's span and, with host
    lengths, at the longest sequence's partitions) where those blocks leave at most 1/16 of the
    SMs idle and the lengths are not skewed; else a plan of one worker an SM. Not on a device of
    more than 30 GB/s of memory bandwidth an SM where, with host lengths, a CTA would stream more
    than 1.5 MiB: the plan keeps num_workers there. With an fp8 cache,
    where it is more than sm_count but less than num_workers and the lengths are not skewed (or
    not given), the grid path with one split.

    kv_lens: the tokens of each sequence, on the host (a sequence of ints, a numpy array or a CPU
    torch tensor); a CUDA tensor, or None with `batch`, means the lengths live on the device
    only, and the choice depends on the shape alone. num_workers: concurrent CTAs of the device;
    None means recommended_workers(params) of kv_lens' device where kv_lens is a CUDA tensor,
    else of the current CUDA device, and is required without one. batch: the number of
    sequences, needed only without kv_lens (else it must agree). sm_count: the device's SMs;
    None means that same device's where num_workers is None too, else 0 (unknown: the plan
    keeps num_workers). memory_bytes_per_second: the device's peak memory bandwidth, taken the
    same way as sm_count (0: unknown, the rules of an H100). Both device queries are slow: for a
    call every decode step, pass num_workers, sm_count and memory_bytes_per_second
    (recommended_workers, device_info) queried once. Deterministic. Raises Error.
    """
    expect_params(params)
    lens = None
    device = None  # where the counts not given are asked: kv_lens' device, else the current one
    if kv_lens is not None:
        if is_torch_tensor(kv_lens) and kv_lens.device.type != "cpu":
            if kv_lens.device.type != "cuda":
                raise Error(Status.BAD_ARGUMENT,
                            f"kv_lens: on {kv_lens.device}, need the CPU (lengths read on the "
                            "host) or a CUDA device (the shape alone)")
            device = kv_lens.device
            shape = describe("kv_lens", kv_lens).shape
            if len(shape) != 1:
                raise Error(Status.BAD_ARGUMENT, f"kv_lens: shape {list(shape)}, need [batch]")
            count = shape[0]
        else:
            lens = host_lengths(kv_lens)
            count = len(lens)
        if batch is not None and int32_argument(batch, "batch") != count:
            raise Error(Status.BAD_ARGUMENT,
                        f"batch = {batch}, but kv_lens has {count} sequences")
        batch = count
    elif batch is None:
        raise Error(Status.BAD_ARGUMENT, "kv_lens and batch are both None: give one of them")
    workers = int32_argument(workers_or_recommended(params, num_workers, device), "num_workers")
    if sm_count is None or memory_bytes_per_second is None:
        info = device_info(device) if num_workers is None else None
        if sm_count is None:
            sm_count = info.sm_count if info else 0
        if memory_bytes_per_second is None:
            memory_bytes_per_second = info.memory_bytes_per_second if info else 0
    shape = CDeviceShape(int32_argument(sm_count, "sm_count"),
                         int64_argument(memory_bytes_per_second, "memory_bytes_per_second"))
    choice = CChoice()
    check(lib().padec_choose_for_device(ctypes.byref(params.to_c()),
                                        int32_argument(batch, "batch"),
                                        None if lens is None else lens.ctypes.data, workers,
                                        ctypes.byref(shape), ctypes.byref(choice)))
    return Choice(path=PATHS[choice.path],
                  policy=Policy(choice.plan_options.policy).name.lower(),
                  num_workers=choice.plan_options.num_workers,
                  partition_tokens=choice.partition_tokens, grid_splits=choice.grid_splits)
