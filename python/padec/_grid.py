"""The grid path's sizes (padec_grid_layout_init, padec_grid_recommended_splits). The grid path
needs no plan: every (sequence, KV head, split) is one block of work, so a GridLayout is all that
run_cpu_grid and run_cuda_grid take besides the tensors."""

from __future__ import annotations

import ctypes
import dataclasses

from ._cuda import workers_or_recommended
from ._errors import Error, Status
from ._library import CGridLayout, check, lib
from ._params import Params, expect_params, int32_argument, partition_tokens_argument


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """padec_grid_layout: the split count, partition size and workspace of the grid path for
    `batch` sequences, with the Params it was made for (made by grid_layout). A sequence's
    scheduled partitions are cut into num_splits ranges of whole partitions; with num_splits 1
    every block writes the final output and there is no merge."""

    params: Params
    batch: int
    num_splits: int
    num_kv_heads: int
    num_q_heads: int
    head_dim: int
    q_len: int
    partition_tokens: int
    params_key: int
    partial_o_offset: int
    partial_lse_offset: int
    merge_counters_offset: int
    workspace_bytes: int

    @classmethod
    def from_c(cls, params: Params, layout: CGridLayout) -> GridLayout:
        return cls(params, **{field.name: getattr(layout, field.name)
                              for field in dataclasses.fields(cls) if field.name != "params"})

    def to_c(self) -> CGridLayout:
        return CGridLayout(**{field.name: getattr(self, field.name)
                              for field in dataclasses.fields(self) if field.name != "params"})

    def c_layout(self) -> CGridLayout:
        """to_c(), made once and shared (the layout is frozen; the C functions take it as
        const)."""
        made = self.__dict__.get("_c_layout")
        if made is None:
            made = self.to_c()
            object.__setattr__(self, "_c_layout", made)
        return made


def grid_layout(params: Params, batch: int, *, num_splits: int,
                partition_tokens: int = 0) -> GridLayout:
    """The grid path's layout for `batch` sequences (padec_grid_layout_init). num_splits: 1..1024
    ranges per (sequence, KV head), see grid_recommended_splits; partition_tokens: the split
    granularity, a power of two 16..16384, 0 means 256. Valid for runs with the same head counts,
    head_dim, q_len and window, any lengths. Raises Error."""
    expect_params(params)
    layout = CGridLayout()
    check(lib().padec_grid_layout_init(ctypes.byref(params.to_c()), int32_argument(batch, "batch"),
                                       int32_argument(num_splits, "num_splits"),
                                       int32_argument(partition_tokens, "partition_tokens"),
                                       ctypes.byref(layout)))
    return GridLayout.from_c(params, layout)


MAX_BATCH = 1 << 24
MAX_WORKERS = 65536


def grid_recommended_splits(params: Params, batch: int, num_workers: int | None = None,
                            partition_tokens: int = 0) -> int:
    """The split count for the grid path when there is no better one
    (padec_grid_recommended_splits): enough blocks for num_workers concurrent CTAs, 1..64, with
    a window no more than the partitions it spans plus one. num_workers: None means
    recommended_workers(params) of the current CUDA device, and is required without one.

    The C function cannot fail: it reads arguments it would refuse as 1 or as the default
    partition size. Here they raise Error BAD_ARGUMENT, as grid_layout would for the same values:
    batch outside 0..2^24, num_workers outside 1..65536, partition_tokens neither 0 nor a power
    of two 16..16384; bad params raise their status."""
    expect_params(params).validate()
    batch = int32_argument(batch, "batch")
    if not 0 <= batch <= MAX_BATCH:
        raise Error(Status.BAD_ARGUMENT, f"batch = {batch}: need 0..{MAX_BATCH}")
    partition_tokens = partition_tokens_argument(partition_tokens)
    workers = int32_argument(workers_or_recommended(params, num_workers), "num_workers")
    if not 1 <= workers <= MAX_WORKERS:
        raise Error(Status.BAD_ARGUMENT, f"num_workers = {workers}: need 1..{MAX_WORKERS}")
    return lib().padec_grid_recommended_splits(ctypes.byref(params.to_c()), batch, workers,
                                               partition_tokens)
