"""Plan sizing and building on the host (padec_plan_layout_init, padec_plan_build,
padec_plan_build_shard), and the upload of a plan to a CUDA device (padec_cuda_upload_plan)."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from . import _cuda
from ._errors import Error, Status
from ._library import CCostModel, CPlanHeader, CPlanLayout, CPlanOptions, check, lib
from ._params import (INT32_MAX, Params, Policy, coerce_enum, expect_params, float_argument,
                      int32_argument, partition_tokens_argument)
from ._tensors import aligned_empty, describe, is_torch_tensor


@dataclasses.dataclass(frozen=True)
class CostModel:
    """padec_cost_model: the cost policy's model of a worker's time, in nanoseconds. A work item
    of p partitions costs item_ns + p * partition_ns * scale (+ split_ns for a piece of a split
    sequence); scale is the bytes a partition moves relative to 256 tokens of one KV head at
    head_dim 128 in bf16. default_cost_model() gives the library's default (Hopper)."""

    partition_ns: float
    item_ns: float
    split_ns: float

    def __post_init__(self):
        for name in ("partition_ns", "item_ns", "split_ns"):
            object.__setattr__(self, name,
                               float_argument(getattr(self, name), f"CostModel.{name}"))

    def to_c(self) -> CCostModel:
        return CCostModel(float(self.partition_ns), float(self.item_ns), float(self.split_ns))


def default_cost_model() -> CostModel:
    """The library's default cost model (padec_cost_model_default)."""
    model = CCostModel()
    check(lib().padec_cost_model_default(ctypes.byref(model)))
    return CostModel(model.partition_ns, model.item_ns, model.split_ns)


def _cost_model_pointer(cost_model: CostModel | None):
    """A pointer to the C model for cost_model (a CostModel or None: the default)."""
    if cost_model is None:
        return None
    if not isinstance(cost_model, CostModel):
        raise Error(Status.BAD_ARGUMENT, f"cost_model = {cost_model!r} is not a CostModel")
    return ctypes.pointer(cost_model.to_c())


@dataclasses.dataclass(frozen=True)
class PlanLayout:
    """padec_plan_layout: sizes and byte offsets of a plan buffer and of its workspace, a
    function of (params, batch, options) alone."""

    batch: int
    num_workers: int
    num_kv_heads: int
    num_q_heads: int
    head_dim: int
    q_len: int
    partition_tokens: int
    policy: int
    params_key: int
    max_works: int
    max_partial_slots: int
    max_partial_rows: int
    cost_partition: int  # cost policy: the model in integer units (a partition is 1024); else 0
    cost_item: int
    cost_split: int
    work_indptr_offset: int
    work_info_offset: int
    reduce_indptr_offset: int
    reduce_final_map_offset: int
    reduce_partial_map_offset: int
    partition_indptr_offset: int
    plan_bytes: int
    partial_o_offset: int
    partial_lse_offset: int
    merge_counters_offset: int
    workspace_bytes: int

    @classmethod
    def from_c(cls, layout: CPlanLayout) -> PlanLayout:
        return cls(**{field.name: getattr(layout, field.name) for field in dataclasses.fields(cls)})

    def to_c(self) -> CPlanLayout:
        return CPlanLayout(**dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class PlanHeader:
    """padec_plan_header: the first 64 bytes of a plan, with the counts in use."""

    magic: int
    version: int
    params_key: int
    batch: int
    num_workers: int
    num_kv_heads: int
    q_len: int
    partition_tokens: int
    policy: int
    num_works: int
    num_partial_slots: int
    num_groups: int
    num_partitions: int


def plan_layout(params: Params, batch: int, *, num_workers: int | None = None, partition_tokens: int = 0,
                policy: Policy = Policy.EVEN, cost_model: CostModel | None = None) -> PlanLayout:
    """Sizes and offsets of the plan and workspace for `batch` sequences (padec_plan_layout_init).

    num_workers: bins of the schedule, one CTA each on the GPU; None: recommended_workers of the
    current CUDA device (Error where there is none: pass it);
    partition_tokens: a power of two 16..16384, 0 means 256; policy: a Policy or its name
    ("even", "cost", "batch_invariant"); cost_model: the cost policy's CostModel, None for the
    default (checked whatever the policy). Raises Error.
    """
    expect_params(params)
    model = _cost_model_pointer(cost_model)
    workers = _cuda.workers_or_recommended(params, num_workers)
    options = CPlanOptions(num_workers=int32_argument(workers, "num_workers"),
                           partition_tokens=int32_argument(partition_tokens, "partition_tokens"),
                           policy=coerce_enum(Policy, policy, "policy", Status.BAD_ARGUMENT),
                           cost_model=model)
    layout = CPlanLayout()
    check(lib().padec_plan_layout_init(ctypes.byref(params.to_c()), int32_argument(batch, "batch"),
                                       ctypes.byref(options), ctypes.byref(layout)))
    return PlanLayout.from_c(layout)


def _partition_arguments(params: Params, kv_len, partition_tokens) -> tuple[int, int, int, int]:
    expect_params(params).checked_c()
    kv_len = int32_argument(kv_len, "kv_len")
    if kv_len < 0:
        raise Error(Status.BAD_ARGUMENT, f"kv_len = {kv_len} is negative")
    tokens = partition_tokens_argument(partition_tokens) or 256
    return kv_len, params.q_len or 1, params.window_left, tokens


def first_partition(params: Params, kv_len: int, partition_tokens: int = 0) -> int:
    """The first partition a plan schedules for a sequence of kv_len tokens
    (padec_first_partition): with a window, the partitions wholly before every query's window
    are skipped. Partition p covers tokens [p * partition_tokens, (p + 1) * partition_tokens);
    partition_tokens 0 means 256, as for build_plan. Raises Error."""
    return lib().padec_first_partition(*_partition_arguments(params, kv_len, partition_tokens))


def num_partitions(params: Params, kv_len: int, partition_tokens: int = 0) -> int:
    """The partitions a plan schedules for one KV head of a sequence of kv_len tokens
    (padec_num_partitions; 0 for kv_len 0): what Plan.partition_indptr counts per sequence.
    partition_tokens 0 means 256. Raises Error."""
    return lib().padec_num_partitions(*_partition_arguments(params, kv_len, partition_tokens))


def host_lengths(values, name: str = "kv_lens") -> np.ndarray:
    """Per-sequence integers for the host (kv_lens, shard_starts, seq_lens) as a new contiguous
    int32 numpy array (a copy: the plan keeps it read-only, and the caller's array stays as it
    was): a sequence of ints, a numpy array or a CPU torch tensor. A CUDA tensor is refused:
    reading it would synchronise."""
    if isinstance(values, np.ndarray) or is_torch_tensor(values):
        describe(name, values).expect_device("cpu")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as error:  # torch raises RuntimeError
        raise Error(Status.BAD_ARGUMENT,
                    f"{name}: need a 1-D sequence of integers ({error})") from None
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise Error(Status.BAD_ARGUMENT,
                    f"{name}: need a 1-D sequence of integers, got shape {list(array.shape)} "
                    f"of {array.dtype}")
    if array.size and (array.min() < -INT32_MAX - 1 or array.max() > INT32_MAX):
        raise Error(Status.BAD_ARGUMENT, f"{name}: values do not fit int32")
    return np.array(array, dtype=np.int32, order="C")


def check_shard_pair(shard_starts, seq_lens) -> bool:
    """Whether shards are given; Error (NULL_POINTER, as the library says) for one without the
    other."""
    if (shard_starts is None) != (seq_lens is None):
        given, missing = (("shard_starts", "seq_lens") if seq_lens is None
                          else ("seq_lens", "shard_starts"))
        raise Error(Status.NULL_POINTER,
                    f"{missing}: None, but {given} is given (shard_starts and seq_lens go "
                    "together)")
    return shard_starts is not None


def build_plan(params: Params, kv_lens, *, num_workers: int | None = None, partition_tokens: int = 0,
               policy: Policy = Policy.EVEN, cost_model: CostModel | None = None,
               shard_starts=None, seq_lens=None) -> Plan:
    """Schedules a batch on the host (padec_plan_build) for kv_lens, the tokens of each sequence
    with its new query tokens included. The plan is valid for runs with the same head counts,
    head_dim, q_len and window, and kv_lens giving the same partitions; dtypes, KV layout, page
    size and scales may change per run, except that a cost plan weighs partitions by their bytes
    and so keeps the KV element size (bf16 and fp16 go together, fp8 apart).

    shard_starts, seq_lens: one shard of context-parallel decode (padec_plan_build_shard), both
    or neither, [batch] integers like kv_lens: sequence b's kv_lens[b] tokens are positions
    [shard_starts[b], shard_starts[b] + kv_lens[b]) of a sequence of seq_lens[b] tokens. Run the
    plan with the same arrays. Raises Error."""
    expect_params(params)
    lens = host_lengths(kv_lens)
    shards = {}
    if check_shard_pair(shard_starts, seq_lens):
        for name, value in (("shard_starts", shard_starts), ("seq_lens", seq_lens)):
            shards[name] = host_lengths(value, name)
            if len(shards[name]) != len(lens):
                raise Error(Status.BAD_ARGUMENT,
                            f"{name}: {len(shards[name])} values, need one per sequence "
                            f"({len(lens)}, as kv_lens)")
    layout = plan_layout(params, len(lens), num_workers=num_workers,
                         partition_tokens=partition_tokens, policy=policy, cost_model=cost_model)
    layout_c = layout.to_c()
    data = aligned_empty(layout.plan_bytes, 16)
    check(lib().padec_plan_build_shard(
        ctypes.byref(params.to_c()), ctypes.byref(layout_c), lens.ctypes.data,
        shards["shard_starts"].ctypes.data if shards else None,
        shards["seq_lens"].ctypes.data if shards else None, data.ctypes.data, data.nbytes))
    for array in (data, lens, *shards.values()):
        array.flags.writeable = False
    return Plan(params, layout, data, lens, **shards)


def _check_plan_arrays(layout: PlanLayout, data, kv_lens, shard_starts, seq_lens) -> None:
    """The library reads layout.plan_bytes of a plan's bytes and takes no size with them
    (padec_cpu_run, padec_plan_predict, the upload): a Plan put together by hand, or unpickled
    from cut bytes, is refused here rather than read past its end."""
    if not isinstance(layout, PlanLayout):
        raise Error(Status.BAD_ARGUMENT, f"layout: need a PlanLayout, got {type(layout).__name__}")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1
            and data.flags.c_contiguous):
        raise Error(Status.BAD_ARGUMENT,
                    f"data: need a 1-D contiguous numpy uint8 array, got "
                    f"{getattr(data, 'dtype', type(data).__name__)} of shape "
                    f"{list(getattr(data, 'shape', ()))}")
    if data.nbytes != layout.plan_bytes:
        raise Error(Status.PLAN_MISMATCH,
                    f"data: {data.nbytes} bytes, its layout's plan_bytes is {layout.plan_bytes}")
    if data.ctypes.data % 16:
        raise Error(Status.MISALIGNED_POINTER,
                    f"data: address {data.ctypes.data:#x} is not 16-byte aligned")
    if (shard_starts is None) != (seq_lens is None):
        raise Error(Status.BAD_ARGUMENT, "shard_starts, seq_lens: give both or neither")
    for name, lengths in (("kv_lens", kv_lens), ("shard_starts", shard_starts),
                          ("seq_lens", seq_lens)):
        if lengths is None and name != "kv_lens":
            continue
        if not (isinstance(lengths, np.ndarray) and lengths.dtype == np.int32
                and lengths.shape == (layout.batch,)):
            raise Error(Status.BAD_ARGUMENT,
                        f"{name}: need a numpy int32 array of the layout's batch "
                        f"({layout.batch}), got {getattr(lengths, 'dtype', type(lengths).__name__)} "
                        f"of shape {list(getattr(lengths, 'shape', ()))}")


def _unpickled_plan(params: Params, layout: PlanLayout, data: bytes, kv_lens: np.ndarray,
                    shard_starts: np.ndarray | None, seq_lens: np.ndarray | None) -> Plan:
    def read_only(array: np.ndarray) -> np.ndarray:
        owned = np.array(array, dtype=np.int32, order="C")
        owned.flags.writeable = False
        return owned

    aligned = aligned_empty(len(data), 16)
    aligned[:] = np.frombuffer(data, dtype=np.uint8)
    aligned.flags.writeable = False
    return Plan(params, layout, aligned, read_only(kv_lens),
                None if shard_starts is None else read_only(shard_starts),
                None if seq_lens is None else read_only(seq_lens))


class _Schedule:
    """What Plan and CudaPlan share: the layout's counts."""

    layout: PlanLayout

    @property
    def batch(self) -> int:
        return self.layout.batch

    @property
    def num_workers(self) -> int:
        return self.layout.num_workers

    @property
    def workspace_bytes(self) -> int:
        return self.layout.workspace_bytes


class Plan(_Schedule):
    """A schedule for one batch, built by build_plan: plain data (offsets, no pointers).

    params: the Params it was built with; layout: its PlanLayout; data: the plan bytes, a
    read-only numpy uint8 array of layout.plan_bytes, 16-byte aligned; kv_lens: the int32 lengths
    it was built for; shard_starts, seq_lens: the int32 shard arrays it was built for, or None.
    The int32 metadata arrays are read-only numpy views (work_info, ...).
    """

    def __init__(self, params: Params, layout: PlanLayout, data: np.ndarray, kv_lens: np.ndarray,
                 shard_starts: np.ndarray | None = None, seq_lens: np.ndarray | None = None):
        _check_plan_arrays(layout, data, kv_lens, shard_starts, seq_lens)
        self.params = params
        self.layout = layout
        self.data = data
        self.kv_lens = kv_lens
        self.shard_starts = shard_starts
        self.seq_lens = seq_lens
        self._c_layout = layout.to_c()
        self._device_plans: dict[int, _cuda.DevicePlan] = {}

    def __reduce__(self):
        """Pickles the host plan only: its device copies stay behind (a copy uploads its own on
        first use), and the copy's arrays are again read-only, its bytes 16-byte aligned."""
        return (_unpickled_plan, (self.params, self.layout, self.data.tobytes(), self.kv_lens,
                                  self.shard_starts, self.seq_lens))

    def __repr__(self) -> str:
        header = self.header
        return (f"Plan(batch={self.batch}, num_workers={self.num_workers}, "
                f"num_works={header.num_works}, num_partial_slots={header.num_partial_slots}, "
                f"num_groups={header.num_groups}, plan_bytes={self.layout.plan_bytes}, "
                f"workspace_bytes={self.workspace_bytes})")

    @property
    def header(self) -> PlanHeader:
        c_header = CPlanHeader.from_buffer_copy(self.data.data)
        return PlanHeader(**{field.name: getattr(c_header, field.name)
                             for field in dataclasses.fields(PlanHeader)})

    def _int32_view(self, offset: int, count: int) -> np.ndarray:
        return self.data[offset:offset + 4 * count].view(np.int32)

    @property
    def work_indptr(self) -> np.ndarray:
        """int32 [num_workers + 1]: worker c owns work items work_indptr[c]:work_indptr[c + 1]."""
        return self._int32_view(self.layout.work_indptr_offset, self.num_workers + 1)

    @property
    def work_info(self) -> np.ndarray:
        """int32 [max_works, 8]: batch, partial_qo_loc (-1: direct), qo_start, qo_end, kv_start,
        kv_end (partitions), kv_offset, q_head_range (end << 16 | start)."""
        rows = self._int32_view(self.layout.work_info_offset, 8 * self.layout.max_works)
        return rows.reshape(-1, 8)

    @property
    def reduce_indptr(self) -> np.ndarray:
        """int32 [batch + 1]: CSR over the reduce groups."""
        return self._int32_view(self.layout.reduce_indptr_offset, self.batch + 1)

    @property
    def reduce_final_map(self) -> np.ndarray:
        """int32 [batch, 2]: output rows [start, end) of each reduce group."""
        return self._int32_view(self.layout.reduce_final_map_offset, 2 * self.batch).reshape(-1, 2)

    @property
    def reduce_partial_map(self) -> np.ndarray:
        """int32 [max_partial_slots]: first partial row of each split."""
        return self._int32_view(self.layout.reduce_partial_map_offset,
                                self.layout.max_partial_slots)

    @property
    def partition_indptr(self) -> np.ndarray:
        """int32 [batch + 1]: cumulative scheduled partitions of one KV head."""
        return self._int32_view(self.layout.partition_indptr_offset, self.batch + 1)

    def predict(self, cost_model: CostModel | None = None) -> np.ndarray:
        """The predicted time of every worker in nanoseconds, float64 [num_workers], under
        cost_model (None: the default) (padec_plan_predict): for comparing the policies' plans of
        one batch. Raises Error."""
        out = np.zeros(self.num_workers, dtype=np.float64)
        check(lib().padec_plan_predict(ctypes.byref(self.params.to_c()),
                                       ctypes.byref(self._c_layout), self.data.ctypes.data,
                                       _cost_model_pointer(cost_model), out.ctypes.data))
        return out

    def to_device(self, device=None, *, out=None):
        """The plan in CUDA memory, as a torch uint8 tensor. Uploaded on first use on each device
        (padec_cuda_upload_plan, asynchronous from a pinned copy) on torch's current stream, and
        kept with the plan: use it on that stream, or order your stream after it (run_cuda
        makes its stream wait for the upload itself). device: a torch device, "cuda:N" or N; None is the
        current device.

        out: a uint8 CUDA tensor of at least plan_bytes to upload into (always uploads; returns
        out). The caller keeps it: it is not kept with the plan, so later calls and run_cuda
        still use the plan's own copy. This is how a captured CUDA graph gets a new schedule:
        capture run_cuda(..., device_plan=out), then for each step build a plan for the new
        kv_lens with the same params, batch and options, upload it into out, replay. Uploads are refused during graph
        capture: call to_device before capturing.
        """
        if out is not None:
            _cuda.upload_plan(self, out)
            return out
        return self._device_plan(_cuda.device_index(device)).buffer

    def _device_plan(self, index: int) -> _cuda.DevicePlan:
        """The plan's own copy on CUDA device `index`, uploaded on first use."""
        kept = self._device_plans.get(index)
        if kept is None:
            buffer = _cuda.empty_bytes(self.layout.plan_bytes, index)
            kept = _cuda.DevicePlan(buffer, *_cuda.upload_plan(self, buffer))
            self._device_plans[index] = kept
        return kept


def _device_lengths(kv_lens):
    """kv_lens for the device scheduler: a 1-D contiguous int32 CUDA tensor."""
    lens = describe("kv_lens", kv_lens)
    if not lens.device.startswith("cuda"):
        raise lens.fail(Status.BAD_ARGUMENT,
                        f"is on {lens.device}: build_plan_cuda plans from lengths on a CUDA "
                        "device (build_plan plans from host lengths)")
    lens.expect_element("int32")
    if len(lens.shape) != 1:
        raise lens.fail(Status.BAD_ARGUMENT, f"shape {list(lens.shape)}, need [batch]")
    lens.expect_contiguous()
    lens.expect_aligned(4)
    return lens


class CudaPlan(_Schedule):
    """A plan that the GPU builds from lengths in device memory (padec_cuda_plan_build), under
    the `even` policy, for whole sequences: the schedule of a decode step that never goes back to
    the host, so that a CUDA graph can plan and decode the lengths of each replay. Made by
    build_plan_cuda; run_cuda takes it where it takes a Plan and runs from its buffer.

    params: the Params it was built with; layout: its PlanLayout; buffer: the plan bytes, a uint8
    CUDA tensor of layout.plan_bytes or more; kv_lens: the int32 CUDA tensor it plans from. Its
    contents are device data: read them with buffer.cpu() after the stream has run the build.
    """

    shard_starts = None  # whole sequences only: no device form of the shard plan
    seq_lens = None

    def __init__(self, params: Params, layout: PlanLayout, buffer, kv_lens):
        self.params = params
        self.layout = layout
        self.buffer = buffer
        self.kv_lens = kv_lens
        self._c_layout = layout.to_c()

    def __repr__(self) -> str:
        return (f"CudaPlan(batch={self.batch}, num_workers={self.num_workers}, "
                f"plan_bytes={self.layout.plan_bytes}, workspace_bytes={self.workspace_bytes}, "
                f"device={self.buffer.device})")

    def rebuild(self) -> None:
        """Schedules the lengths kv_lens holds now into the buffer: one small kernel on torch's
        current stream, no allocation, no synchronisation, so it can be captured with the run
        that follows it (write the next lengths into kv_lens, replay). Runs after it on the same
        stream see the new plan; order other streams after it. Raises Error."""
        lens = _device_lengths(self.kv_lens)
        if lens.shape[0] != self.batch:
            raise lens.fail(Status.PLAN_MISMATCH,
                            f"{lens.shape[0]} sequences, the plan's layout is for {self.batch}")
        _cuda.plan_buffer("buffer", self.buffer, self.layout.plan_bytes).expect_device(lens.device)
        torch = _cuda.import_torch()
        with torch.cuda.device(self.buffer.device):
            check(lib().padec_cuda_plan_build(
                ctypes.byref(self.params.checked_c()), ctypes.byref(self._c_layout),
                self.kv_lens.data_ptr(), self.buffer.data_ptr(), self.buffer.numel(),
                torch.cuda.current_stream().cuda_stream))


def build_plan_cuda(params: Params, kv_lens, *, num_workers: int | None = None,
                    partition_tokens: int = 0, out=None) -> CudaPlan:
    """Schedules a batch on the GPU from kv_lens, an int32 CUDA tensor [batch] (padec_cuda_plan_build,
    the `even` policy, whole sequences), on torch's current stream, and returns the CudaPlan that
    holds it. The plan bytes are those build_plan gives for the same lengths and options.

    For a CUDA graph: allocate kv_lens for the largest batch B (padding sequences of length 0),
    build once before capturing, capture plan.rebuild() and run_cuda(params, plan, ...) on one
    stream, then before each replay write the step's lengths, block table and q into the same
    tensors. num_workers: None is recommended_workers of kv_lens' device; partition_tokens as
    for build_plan; out: a uint8 CUDA tensor on kv_lens' device, 16-byte aligned, of
    layout.plan_bytes or more, to hold the plan (allocated when None). Raises Error."""
    expect_params(params)
    lens = _device_lengths(kv_lens)
    torch = _cuda.import_torch()
    with torch.cuda.device(kv_lens.device):
        layout = plan_layout(params, lens.shape[0], num_workers=num_workers,
                             partition_tokens=partition_tokens)
    if out is None:
        out = torch.empty(layout.plan_bytes, dtype=torch.uint8, device=kv_lens.device)
    _cuda.plan_buffer("out", out, layout.plan_bytes).expect_device(lens.device)
    plan = CudaPlan(params, layout, out, kv_lens)
    plan.rebuild()
    return plan
