"""Running a batch: a plan with run_cpu (padec_cpu_run) on numpy arrays or CPU torch tensors and
run_cuda (padec_cuda_run) on CUDA torch tensors; the grid path with run_cpu_grid and run_cuda_grid
(padec_cpu_run_grid, padec_cuda_run_grid), which take the same tensors. Every argument is checked
here (dtype, device, shape, strides, alignment) before the C call, which checks again."""

from __future__ import annotations

import ctypes
import dataclasses
import numbers
from typing import NamedTuple, Union

import numpy as np

from ._cuda import import_torch, plan_buffer
from ._errors import Error, Status
from ._grid import GridLayout
from ._library import CParams, CShardMergeTensors, CTensors, check, lib
from ._params import DType, Fp8ScaleMode, Layout, Params, expect_params, int32_argument
from ._plan import CudaPlan, Plan, check_shard_pair
from ._tensors import NUMPY_DTYPES, Tensor, aligned_empty, describe, torch_dtype

VALIDATE_SCRATCH_BYTES = 64  # PADEC_CUDA_VALIDATE_SCRATCH_BYTES of padec_cuda.h
Schedule = Union[Plan, CudaPlan, GridLayout]  # what a run function takes: a plan or a grid layout


@dataclasses.dataclass
class _Call:
    """The checked arguments of one run, ready for C. Holds the outputs (allocated if not given)."""

    params: CParams
    tensors: CTensors
    device: str
    o: object
    lse: object

    def result(self):
        return self.o if self.lse is None else (self.o, self.lse)


def _schedule_fields(params: Params) -> tuple[int, ...]:
    return (params.num_q_heads, params.num_kv_heads, params.head_dim, params.q_len or 1,
            params.window_left)


def _empty(like: Tensor, shape: tuple[int, ...], dtype: DType):
    """A new output on like's device and of like's kind (numpy array or torch tensor)."""
    if like.is_torch:
        torch = import_torch()
        return torch.empty(shape, dtype=torch_dtype(torch, dtype), device=like.value.device)
    return np.empty(shape, dtype=NUMPY_DTYPES[dtype])


class _Kind(NamedTuple):
    """What a run function takes as its schedule, and how the messages name it."""

    argument: str  # the argument's name
    classes: tuple[type, ...]
    noun: str
    made: str  # "built" or "made"
    suffix: str  # of the run functions' names


_PLAN = _Kind("plan", (Plan,), "the plan", "built", "")
_CUDA_PLAN = _Kind("plan", (Plan, CudaPlan), "the plan", "built", "")
_GRID = _Kind("layout", (GridLayout,), "the grid layout", "made", "_grid")


def _bind(params: Params, schedule: Schedule, kind: _Kind, backend: str, q, k_pages, v_pages, page_indptr,
          page_indices, kv_lens, o, lse, k_scales, v_scales, return_lse: bool, shard_starts,
          seq_lens) -> _Call:
    """Checks the arguments of one run against params and the schedule (a Plan or a GridLayout,
    as `kind` says) and binds them for C."""
    expect_params(params)
    if not isinstance(schedule, kind.classes):
        names = " or ".join(f"padec.{cls.__name__}" for cls in kind.classes)
        raise Error(Status.BAD_ARGUMENT, f"{kind.argument}: need a {names}, "
                    f"not {type(schedule).__name__}")
    c_params = params.checked_c()
    if _schedule_fields(params) != _schedule_fields(schedule.params):
        raise Error(Status.PLAN_MISMATCH,
                    f"{kind.noun} was {kind.made} for num_q_heads, num_kv_heads, head_dim, q_len, "
                    f"window_left = {_schedule_fields(schedule.params)}; params give "
                    f"{_schedule_fields(params)}")

    sharded = check_shard_pair(shard_starts, seq_lens)
    if isinstance(schedule, (Plan, CudaPlan)) and sharded != (schedule.shard_starts is not None):
        # A plan schedules a shard's partitions from its position: run without the arrays, or
        # with arrays the plan was not built for, the masks and windows would be those of other
        # tokens (and run_cuda could not tell).
        if sharded and isinstance(schedule, CudaPlan):
            raise Error(Status.PLAN_MISMATCH,
                        "shard_starts, seq_lens: given, but a CudaPlan schedules whole "
                        "sequences (there is no device form of the shard plan): build the "
                        "shard's plan on the host (build_plan with shard_starts= and seq_lens=)")
        if sharded:
            raise Error(Status.PLAN_MISMATCH,
                        "shard_starts, seq_lens: given, but the plan was built for whole "
                        "sequences (build_plan without them): build it with the same arrays")
        raise Error(Status.PLAN_MISMATCH,
                    "shard_starts, seq_lens: None, but the plan was built for shards "
                    "(build_plan with shard_starts= and seq_lens=): pass the same arrays")

    batch, q_len = schedule.batch, params.q_len or 1
    tokens, heads, dim = batch * q_len, params.num_q_heads, params.head_dim
    kv_heads, page_size = params.num_kv_heads, params.page_size

    qt = describe("q", q)
    if backend == "cpu":
        qt.expect_device("cpu")
    elif not qt.device.startswith("cuda"):
        raise qt.fail(Status.BAD_ARGUMENT,
                      f"is on {qt.device}: run_cuda{kind.suffix} needs CUDA tensors "
                      f"(run_cpu{kind.suffix} runs on the host)")
    device = qt.device

    def tensor(name: str, value) -> Tensor:
        checked = describe(name, value)
        checked.expect_device(device)
        return checked

    qt.expect_dtype(params.q_dtype, "params.q_dtype")
    qt.expect_shape((tokens, heads, dim),
                    f"([batch * q_len, num_q_heads, head_dim]; {kind.noun} is for batch {batch})")
    qt.expect_rows(writeable=False)
    qt.expect_aligned(qt.itemsize)

    kt, vt = tensor("k_pages", k_pages), tensor("v_pages", v_pages)
    num_pages = kt.shape[0] if kt.shape else 0
    if params.kv_layout == Layout.NHD:
        pool = (num_pages, page_size, kv_heads, dim)
        meaning = "(NHD: [num_pages, page_size, num_kv_heads, head_dim])"
    else:
        pool = (num_pages, kv_heads, page_size, dim)
        meaning = "(HND: [num_pages, num_kv_heads, page_size, head_dim])"
    page_strides = []
    for pages in (kt, vt):
        pages.expect_dtype(params.kv_dtype, "params.kv_dtype")
        pages.expect_shape(pool, meaning)
        page_strides.append(pages.expect_pages())
        pages.expect_aligned(16)
    if page_strides[0] != page_strides[1]:
        def apart(stride: int) -> str:
            return f"{stride} elements apart" if stride else "contiguous"
        raise vt.fail(Status.BAD_ARGUMENT,
                      f"pages {apart(page_strides[1])}, k_pages's {apart(page_strides[0])}: "
                      "the pools need the same page stride")
    kv_page_stride = page_strides[0]
    if kv_page_stride * kt.itemsize >= 2**32:
        raise kt.fail(Status.BAD_ARGUMENT,
                      f"pages {kv_page_stride} elements apart: need fewer than 2^32 bytes "
                      "between pages")
    if kv_page_stride and (kv_page_stride * kt.itemsize) % 16:
        raise kt.fail(Status.MISALIGNED_POINTER,
                      f"pages {kv_page_stride} elements apart: each page must stay 16-byte aligned")

    indptr, indices, lens, shards = _bind_block_table(
        tensor, batch, page_indptr, page_indices, kv_lens,
        (shard_starts, seq_lens) if sharded else None)

    scales = {}
    mode = params.fp8_scale_mode
    if mode in (Fp8ScaleMode.PER_TOKEN, Fp8ScaleMode.PER_TENSOR_DEVICE):
        for name, value in (("k_scales", k_scales), ("v_scales", v_scales)):
            if value is None:
                raise Error(Status.BAD_SCALES, f"{name}: fp8_scale_mode {mode.name} needs it")
            scale = tensor(name, value)
            scale.expect_element("float32")
            if mode == Fp8ScaleMode.PER_TOKEN:
                scale.expect_shape((num_pages, kv_heads, page_size),
                                   "([num_pages, num_kv_heads, page_size])", Status.BAD_SCALES)
            elif scale.numel != 1:
                raise scale.fail(Status.BAD_SCALES, f"shape {list(scale.shape)}, need one float32")
            scale.expect_contiguous()
            scale.expect_aligned(4)
            scales[name] = scale.address
    elif k_scales is not None or v_scales is not None:
        raise Error(Status.BAD_SCALES,
                    f"k_scales/v_scales given with fp8_scale_mode {mode.name}: they are read "
                    "with PER_TOKEN or PER_TENSOR_DEVICE only")

    o, ot, lse, lse_address = _bind_outputs(params, tensor, qt, tokens, ("o", o), ("lse", lse),
                                            return_lse, "(the shape of q)",
                                            "([batch * q_len, num_q_heads])")

    c_tensors = CTensors(
        q=qt.address, q_stride_token=qt.stride(0, heads * dim), q_stride_head=qt.stride(1, dim),
        k_pages=kt.address, v_pages=vt.address, num_pages=num_pages,
        page_indptr=indptr.address, page_indices=indices.address, kv_lens=lens.address,
        num_page_indices=indices.numel, kv_page_stride=kv_page_stride,
        k_scales=scales.get("k_scales"), v_scales=scales.get("v_scales"),
        o=ot.address, o_stride_token=ot.stride(0, heads * dim), o_stride_head=ot.stride(1, dim),
        lse=lse_address,
        shard_starts=shards["shard_starts"].address if shards else None,
        seq_lens=shards["seq_lens"].address if shards else None)
    return _Call(c_params, c_tensors, device, o, lse)


def _bind_block_table(tensor, batch: int, page_indptr, page_indices, kv_lens, shard_arrays):
    """Checks the block table, the lengths and the shard arrays (a pair, or None) of a batch:
    int32, contiguous, 4-byte aligned, one entry per sequence. Returns their Tensors, the shards
    as a dict by name."""
    indptr, indices, lens = (tensor("page_indptr", page_indptr),
                             tensor("page_indices", page_indices), tensor("kv_lens", kv_lens))
    indptr.expect_shape((batch + 1,), "([batch + 1])")
    lens.expect_shape((batch,), "([batch])")
    if len(indices.shape) not in (1, 2):
        raise indices.fail(Status.BAD_ARGUMENT,
                           f"shape {list(indices.shape)}, need 1-D (CSR) or 2-D (a block table)")
    if len(indices.shape) == 2 and indices.shape[0] < batch:
        raise indices.fail(Status.BAD_ARGUMENT,
                           f"a block table of {indices.shape[0]} rows for a batch of {batch}: "
                           f"row b holds sequence b's pages")
    shards = {}
    if shard_arrays is not None:
        for name, value in zip(("shard_starts", "seq_lens"), shard_arrays):
            shards[name] = tensor(name, value)
            shards[name].expect_shape((batch,), "([batch])")
    for index in (indptr, indices, lens, *shards.values()):
        index.expect_element("int32")
        index.expect_contiguous()
        index.expect_aligned(4)
    if indptr.device == "cpu":
        _expect_page_ids_named(indptr, indices, batch)
        _expect_block_table_rows(indptr, indices, batch)
    return indptr, indices, lens, shards


def _expect_block_table_rows(indptr: Tensor, indices: Tensor, batch: int) -> None:
    """A 2-D page_indices [rows, S] is read as rows through page_indptr[b] = b * S. Any other
    page_indptr (an engine's cumulative page counts, say) would read other rows' ids, which are
    in range and pass every check: the starts are compared here. On a CUDA tensor this reads
    page_indptr back (a synchronisation), so only validate_kv calls it there."""
    if len(indices.shape) != 2:
        return
    width = indices.shape[1]
    starts = indptr.value.cpu() if indptr.is_torch else indptr.value
    starts = np.asarray(starts, dtype=np.int64)
    wrong = np.flatnonzero(starts != np.arange(batch + 1, dtype=np.int64) * width)
    if wrong.size:
        b = int(wrong[0])
        raise indptr.fail(Status.BAD_ARGUMENT,
                          f"page_indptr[{b}] = {int(starts[b])}, but with a 2-D page_indices of "
                          f"rows of {width} it must be {b} * {width} = {b * width} (row b holds "
                          f"sequence b's pages)")


def _expect_page_ids_named(indptr: Tensor, indices: Tensor, batch: int) -> None:
    """C checks page_indptr[batch] against num_page_indices, but reads 0 as "not given" and
    names its own field, which the binding fills from page_indices' length: the count is checked
    here, in the caller's words. On a CUDA tensor this reads page_indptr[batch] back (a
    synchronisation), so only validate_kv, which synchronises anyway, calls it there."""
    if batch > 0:
        named = int(indptr.value[-1])
        if named > indices.numel:
            raise indices.fail(Status.BAD_ARGUMENT,
                               f"{indices.numel} page ids, but page_indptr[{batch}] = {named} "
                               f"names that many")


def _bind_merge_counters(call: _Call, merge_counters, schedule: Schedule,
                         params: Params) -> None:
    """Sets the C tensors' self-resetting merge counters (padec_tensors.merge_counters): int32,
    contiguous, on the run's device, batch * num_kv_heads entries or more."""
    if merge_counters is None:
        return
    counters = describe("merge_counters", merge_counters)
    counters.expect_device(call.device)
    counters.expect_element("int32")
    counters.expect_contiguous()
    counters.expect_writeable()
    counters.expect_aligned(4)
    need = schedule.batch * params.num_kv_heads
    if counters.numel < need:
        raise counters.fail(Status.BAD_ARGUMENT,
                            f"{counters.numel} entries, need batch * num_kv_heads = {need}")
    call.tensors.merge_counters = counters.address


# The C fields' names in the library's messages, as the arguments of the run and validate_kv
# calls (most are the same word) and of the shard merges (whose output is out and out_lse).
_ARGUMENT_NAMES = {name: name for name in (
    "q", "o", "lse", "k_pages", "v_pages", "page_indptr", "page_indices", "kv_lens", "k_scales",
    "v_scales", "shard_starts", "seq_lens", "merge_counters", "workspace")}
_RUN_NAMES = {
    **_ARGUMENT_NAMES,
    "q_stride_token": "q's token stride", "q_stride_head": "q's head stride",
    "o_stride_token": "o's token stride", "o_stride_head": "o's head stride",
    "kv_page_stride": "the page stride of k_pages and v_pages",
    "num_pages": "the pools' page count", "num_page_indices": "page_indices's length",
}
_MERGE_NAMES = {
    "shard_o": "shard_o", "shard_lse": "shard_lse", "o": "out", "lse": "out_lse",
    "o_stride_token": "out's token stride", "o_stride_head": "out's head stride",
    "num_shards": "shard_o's shard count", "rows": "shard_o's row count",
}

def _workspace(workspace, schedule: Schedule, noun: str, device: str, alignment: int) -> Tensor:
    checked = describe("workspace", workspace)
    checked.expect_device(device)
    checked.expect_element("uint8")
    checked.expect_contiguous()
    checked.expect_writeable()
    checked.expect_aligned(alignment)
    if checked.numel < schedule.workspace_bytes:
        raise checked.fail(Status.WORKSPACE_TOO_SMALL,
                           f"{checked.numel} bytes, {noun} needs {schedule.workspace_bytes}")
    return checked


def run_cpu(params: Params, plan: Plan, q, k_pages, v_pages, page_indptr, page_indices, kv_lens,
            o=None, lse=None, k_scales=None, v_scales=None, *, return_lse: bool = False,
            workspace=None, shard_starts=None, seq_lens=None):
    """Runs a plan on the CPU (padec_cpu_run) on numpy arrays or CPU torch tensors. New outputs
    are of q's kind. Single-threaded C; the GIL is released during the call.

    q: [batch * q_len, num_q_heads, head_dim] in params.q_dtype; any positive token and head
    strides, each head's row contiguous. k_pages, v_pages: pools in params.kv_dtype,
    [num_pages, page_size, num_kv_heads, head_dim] (NHD) or [num_pages, num_kv_heads, page_size,
    head_dim] (HND), 16-byte aligned, each page packed; the pages may be further apart than a
    page (the same distance in both, a multiple of 16 bytes below 2^32), so the views
    cache[:, 0] and cache[:, 1] of a [num_pages, 2, ...] cache are taken as they are.
    page_indptr: int32 [batch + 1]. page_indices: int32, 1-D,
    or a 2-D block table [batch or more rows, S] with page_indptr[b] = b * S (both checked on
    host arrays; on CUDA tensors validate_kv checks the starts). kv_lens: int32 [batch], tokens
    per sequence with the new query tokens, as the plan was built for. o: shaped like q, in
    params.o_dtype; allocated if None. lse: float32 [batch * q_len, num_q_heads], natural log,
    -inf where a row sees no token; allocated if None and return_lse. k_scales, v_scales:
    float32 [num_pages, num_kv_heads, page_size] with Fp8ScaleMode.PER_TOKEN, one element with
    PER_TENSOR_DEVICE. workspace: uint8, plan.workspace_bytes or more; allocated if None.

    shard_starts, seq_lens: one shard of context-parallel decode, both or neither, int32 [batch]
    each, as the plan was built with (build_plan; a plan built with them refuses a run without
    them, and one built without them refuses them: PLAN_MISMATCH): the pages hold sequence b's positions
    [shard_starts[b], shard_starts[b] + kv_lens[b]) of seq_lens[b] tokens, and the query tokens
    sit at the end of the whole sequence. Run shards with o_dtype FP32 and the LSE, then combine
    them with merge_shards_cpu.

    dtypes: bf16 as torch.bfloat16 or as its bits in uint16 (numpy has no bf16), fp16 as
    float16, fp32 as float32, fp8 e4m3 as torch.float8_e4m3fn or uint8.

    Returns o, or (o, lse) when lse is given or return_lse is set. Raises Error (status name and
    message) on a bad argument, before anything is written.
    """
    call = _bind(params, plan, _PLAN, "cpu", q, k_pages, v_pages, page_indptr, page_indices,
                 kv_lens, o, lse, k_scales, v_scales, return_lse, shard_starts, seq_lens)
    if workspace is None:
        workspace = aligned_empty(plan.workspace_bytes, 16)
    space = _workspace(workspace, plan, _PLAN.noun, "cpu", 16)
    check(lib().padec_cpu_run(ctypes.byref(call.params), ctypes.byref(plan._c_layout),
                              plan.data.ctypes.data, ctypes.byref(call.tensors), space.address,
                              space.numel), _RUN_NAMES)
    return call.result()


def run_cuda(params: Params, plan: Plan | CudaPlan, q, k_pages, v_pages, page_indptr, page_indices, kv_lens,
             o=None, lse=None, k_scales=None, v_scales=None, *, return_lse: bool = False,
             workspace=None, shard_starts=None, seq_lens=None, merge_counters=None,
             device_plan=None):
    """Runs a plan on a CUDA device (padec_cuda_run): arguments and result as for run_cpu, all
    torch tensors on one CUDA device (the workspace 16-byte aligned). Runs on torch's current
    stream and never synchronises, so it can be captured in a CUDA graph; the plan is uploaded
    on first use (Plan.to_device: call it before capturing), and a run on another stream than
    the upload's waits for it. Page ids, kv_lens and the shard
    arrays are device data and are not checked; kv_lens must give the partitions the plan was
    built for.

    merge_counters: optional int32 tensor of batch * num_kv_heads entries or more, zeroed once
    (torch.zeros) and kept for every later run on this stream: each run leaves it zero, and a
    run with splits is then one kernel launch instead of two (padec_tensors.merge_counters).

    device_plan: a uint8 CUDA tensor on q's device, plan.layout.plan_bytes or more, 16-byte
    aligned, that holds `plan` (plan.to_device(out=device_plan)): run from it instead of the
    plan's own copy. This is the buffer a captured CUDA graph reads: later plans of the same
    params, batch and options are uploaded into it before a replay, and the plans' own copies
    stay theirs. Its upload is ordered by the caller (the same stream, or an event); the
    device-side bytes are not checked against `plan`.

    plan may be a CudaPlan (build_plan_cuda): the run reads its buffer, on q's device, after
    the build queued before it on this stream, and kv_lens must be the tensor it plans from;
    device_plan is then refused (the CudaPlan is its own buffer).
    """
    call = _bind(params, plan, _CUDA_PLAN, "cuda", q, k_pages, v_pages, page_indptr, page_indices,
                 kv_lens, o, lse, k_scales, v_scales, return_lse, shard_starts, seq_lens)
    _bind_merge_counters(call, merge_counters, plan, params)
    torch = import_torch()
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream()
        # Every argument is checked before the plan's first upload is queued.
        if workspace is None:
            workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device=q.device)
        space = _workspace(workspace, plan, _PLAN.noun, call.device, 16)
        if isinstance(plan, CudaPlan):
            if device_plan is not None:
                raise Error(Status.BAD_ARGUMENT,
                            "device_plan: given with a CudaPlan, which runs from its own buffer "
                            "(build_plan_cuda's out=)")
            if kv_lens is not plan.kv_lens and kv_lens.data_ptr() != plan.kv_lens.data_ptr():
                raise Error(Status.PLAN_MISMATCH,
                            "kv_lens: not the tensor the CudaPlan plans from (build_plan_cuda's "
                            "kv_lens): the run would read other lengths than its schedule's")
            given = plan_buffer("plan.buffer", plan.buffer, plan.layout.plan_bytes)
            given.expect_device(call.device)
            plan_address = given.address
        elif device_plan is None:
            plan_address = plan._device_plan(torch.cuda.current_device()).ready_on(
                stream, torch.cuda.is_current_stream_capturing).data_ptr()
        else:
            given = plan_buffer("device_plan", device_plan, plan.layout.plan_bytes)
            given.expect_device(call.device)
            plan_address = given.address
        check(lib().padec_cuda_run(ctypes.byref(call.params), ctypes.byref(plan._c_layout),
                                   plan_address, ctypes.byref(call.tensors),
                                   space.address, space.numel, stream.cuda_stream), _RUN_NAMES)
    return call.result()


def run_cpu_grid(params: Params, layout: GridLayout, q, k_pages, v_pages, page_indptr,
                 page_indices, kv_lens, o=None, lse=None, k_scales=None, v_scales=None, *,
                 return_lse: bool = False, workspace=None, shard_starts=None, seq_lens=None):
    """Runs the grid path on the CPU (padec_cpu_run_grid): no plan, any lengths; the same blocks
    and merge as run_cuda_grid. layout: from grid_layout for this batch. Tensors, outputs and
    errors as for run_cpu (workspace: layout.workspace_bytes or more, 16-byte aligned)."""
    call = _bind(params, layout, _GRID, "cpu", q, k_pages, v_pages, page_indptr, page_indices,
                 kv_lens, o, lse, k_scales, v_scales, return_lse, shard_starts, seq_lens)
    if workspace is None:
        workspace = aligned_empty(layout.workspace_bytes, 16)
    space = _workspace(workspace, layout, _GRID.noun, "cpu", 16)
    check(lib().padec_cpu_run_grid(ctypes.byref(call.params), ctypes.byref(layout.c_layout()),
                                   ctypes.byref(call.tensors), space.address, space.numel),
          _RUN_NAMES)
    return call.result()


def run_cuda_grid(params: Params, layout: GridLayout, q, k_pages, v_pages, page_indptr,
                  page_indices, kv_lens, o=None, lse=None, k_scales=None, v_scales=None, *,
                  return_lse: bool = False, workspace=None, shard_starts=None, seq_lens=None,
                  merge_counters=None):
    """Runs the grid path on a CUDA device (padec_cuda_run_grid): one launch over batch x
    num_kv_heads x num_splits blocks (plus a kernel that clears the merge counters when
    num_splits > 1 and no merge_counters are given), on torch's current stream, never
    synchronising (capturable). Nothing is read from the lengths on the host, so kv_lens may
    change between replays of a captured graph. Arguments and result as for run_cuda
    (workspace: layout.workspace_bytes or more, 16-byte aligned; merge_counters as there, and
    the same tensor may serve both run_cuda and run_cuda_grid)."""
    call = _bind(params, layout, _GRID, "cuda", q, k_pages, v_pages, page_indptr, page_indices,
                 kv_lens, o, lse, k_scales, v_scales, return_lse, shard_starts, seq_lens)
    _bind_merge_counters(call, merge_counters, layout, params)
    torch = import_torch()
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream()
        if workspace is None:
            workspace = torch.empty(layout.workspace_bytes, dtype=torch.uint8, device=q.device)
        space = _workspace(workspace, layout, _GRID.noun, call.device, 16)
        check(lib().padec_cuda_run_grid(ctypes.byref(call.params), ctypes.byref(layout.c_layout()),
                                        ctypes.byref(call.tensors), space.address, space.numel,
                                        stream.cuda_stream), _RUN_NAMES)
    return call.result()


def _bind_outputs(params: Params, tensor, like: Tensor, rows: int, o_arg, lse_arg,
                  return_lse: bool, o_shape_text: str, lse_shape_text: str):
    """Checks (or allocates, like `like`) the output [rows, heads, dim] and the optional LSE
    [rows, heads] of a run or a merge. Returns (o, its Tensor, lse, lse address or None)."""
    heads, dim = params.num_q_heads, params.head_dim
    (o_name, o), (lse_name, lse) = o_arg, lse_arg
    if o is None:
        o = _empty(like, (rows, heads, dim), params.o_dtype)
    ot = tensor(o_name, o)
    ot.expect_dtype(params.o_dtype, "params.o_dtype")
    ot.expect_shape((rows, heads, dim), o_shape_text)
    ot.expect_rows(writeable=True)
    ot.expect_writeable()
    ot.expect_aligned(ot.itemsize)
    lse_address = None
    if not isinstance(return_lse, (bool, np.bool_)):
        raise Error(Status.BAD_ARGUMENT,
                    f"return_lse = {return_lse!r}: need True or False")
    if lse is None and return_lse:
        lse = _empty(like, (rows, heads), DType.FP32)
    if lse is not None:
        lt = tensor(lse_name, lse)
        lt.expect_element("float32")
        lt.expect_shape((rows, heads), lse_shape_text)
        lt.expect_contiguous()
        lt.expect_writeable()
        lt.expect_aligned(4)
        lse_address = lt.address
    return o, ot, lse, lse_address


def _bind_merge(params: Params, backend: str, shard_o, shard_lse, out, out_lse,
                return_lse: bool) -> tuple[CParams, CShardMergeTensors, object, object]:
    """Checks the arguments of a shard merge and binds them for C."""
    c_params = expect_params(params).checked_c()
    heads, dim = params.num_q_heads, params.head_dim
    so = describe("shard_o", shard_o)
    if backend == "cpu":
        so.expect_device("cpu")
    elif not so.device.startswith("cuda"):
        raise so.fail(Status.BAD_ARGUMENT, f"is on {so.device}: merge_shards_cuda needs CUDA "
                      "tensors (merge_shards_cpu merges on the host)")
    device = so.device

    def tensor(name: str, value) -> Tensor:
        checked = describe(name, value)
        checked.expect_device(device)
        return checked

    so.expect_element("float32")
    if len(so.shape) != 4 or so.shape[2:] != (heads, dim):
        raise so.fail(Status.BAD_ARGUMENT,
                      f"shape {list(so.shape)}, need [R, rows, {heads}, {dim}] ([shards, "
                      "batch * q_len, num_q_heads, head_dim])")
    shards, rows = so.shape[0], int32_argument(so.shape[1], "shard_o: rows")
    if shards < 1:
        raise so.fail(Status.BAD_ARGUMENT, "has no shard (R = 0), need 1 or more")
    int32_argument(shards, "shard_o: R")
    sl = tensor("shard_lse", shard_lse)
    sl.expect_element("float32")
    sl.expect_shape((shards, rows, heads), "([R, rows, num_q_heads], as shard_o)")
    for stacked in (so, sl):
        stacked.expect_contiguous()
    so.expect_aligned(16)  # the GPU merge reads its rows as float4
    sl.expect_aligned(4)

    out, ot, out_lse, lse_address = _bind_outputs(params, tensor, so, rows, ("out", out),
                                                  ("out_lse", out_lse), return_lse,
                                                  "([rows, num_q_heads, head_dim])",
                                                  "([rows, num_q_heads])")

    c_tensors = CShardMergeTensors(
        num_shards=shards, rows=rows, shard_o=so.address, shard_lse=sl.address, o=ot.address,
        o_stride_token=ot.stride(0, heads * dim), o_stride_head=ot.stride(1, dim),
        lse=lse_address)
    return c_params, c_tensors, out, out_lse


def merge_shards_cpu(params: Params, shard_o, shard_lse, out=None, out_lse=None, *,
                     return_lse: bool = False):
    """Combines the results of R shards of context-parallel decode on the host
    (padec_cpu_merge_shards), with log-sum-exp weights in shard order 0..R-1: the same bytes on
    every run. A row that no shard sees gets 0 and LSE -inf.

    shard_o: float32 [R, rows, num_q_heads, head_dim], contiguous: each shard's o (a run with
    o_dtype FP32), stacked; shard_lse: float32 [R, rows, num_q_heads], contiguous: their LSEs.
    out: [rows, num_q_heads, head_dim] in params.o_dtype, any positive token and head strides;
    allocated if None. out_lse: float32 [rows, num_q_heads]; allocated if None and return_lse.
    Only params' head counts, head_dim and o_dtype matter here.

    Returns out, or (out, out_lse) when out_lse is given or return_lse is set. Raises Error.
    """
    c_params, c_tensors, out, out_lse = _bind_merge(params, "cpu", shard_o, shard_lse, out,
                                                    out_lse, return_lse)
    check(lib().padec_cpu_merge_shards(ctypes.byref(c_params), ctypes.byref(c_tensors)),
          _MERGE_NAMES)
    return out if out_lse is None else (out, out_lse)


def merge_shards_cuda(params: Params, shard_o, shard_lse, out=None, out_lse=None, *,
                      return_lse: bool = False):
    """merge_shards_cpu on a CUDA device (padec_cuda_merge_shards): all torch tensors on one
    device; one launch on torch's current stream, never synchronising (capturable). The same
    arithmetic and order as merge_shards_cpu."""
    c_params, c_tensors, out, out_lse = _bind_merge(params, "cuda", shard_o, shard_lse, out,
                                                    out_lse, return_lse)
    torch = import_torch()
    with torch.cuda.device(shard_o.device):
        stream = torch.cuda.current_stream()
        check(lib().padec_cuda_merge_shards(ctypes.byref(c_params), ctypes.byref(c_tensors),
                                            stream.cuda_stream), _MERGE_NAMES)
    return out if out_lse is None else (out, out_lse)


def validate_kv(params: Params, page_indptr, page_indices, kv_lens, *, num_pages: int,
                shard_starts=None, seq_lens=None) -> None:
    """Checks a batch's caller data before it is run: every kv_len against its pages, every page
    id against a pool of num_pages pages, and the shard arrays when given (both or neither;
    0 <= shard_starts[b] and shard_starts[b] + kv_lens[b] <= seq_lens[b]). Raises Error naming
    the first offending sequence; returns None when all is well.

    Host arrays (numpy, CPU torch): padec_validate_kv_host, which run_cpu also runs. CUDA
    tensors: padec_cuda_validate_kv on torch's current stream, which run_cuda does not do (it
    trusts device data); this call waits for the stream, so it belongs to admission or
    debugging, not to the decode step, and is refused during graph capture. Arrays as for
    run_cpu: int32, contiguous; page_indptr [batch + 1], page_indices 1-D or a 2-D block table,
    kv_lens and the shard arrays [batch]."""
    c_params = expect_params(params).checked_c()
    lens = describe("kv_lens", kv_lens)
    device = lens.device
    if len(lens.shape) != 1:
        raise lens.fail(Status.BAD_ARGUMENT, f"shape {list(lens.shape)}, need [batch]")
    batch = int32_argument(lens.shape[0], "kv_lens: batch")
    if isinstance(num_pages, bool) or not isinstance(num_pages, numbers.Integral) \
            or not 0 <= num_pages < 2**63:
        raise Error(Status.BAD_ARGUMENT,
                    f"num_pages = {num_pages!r}: need an integer from 0 to 2^63 - 1")

    def tensor(name: str, value) -> Tensor:
        checked = describe(name, value)
        checked.expect_device(device)
        return checked

    sharded = check_shard_pair(shard_starts, seq_lens)
    indptr, indices, lens, shards = _bind_block_table(
        tensor, batch, page_indptr, page_indices, kv_lens,
        (shard_starts, seq_lens) if sharded else None)
    c_tensors = CTensors(
        page_indptr=indptr.address, page_indices=indices.address, kv_lens=lens.address,
        num_pages=int(num_pages), num_page_indices=indices.numel,
        shard_starts=shards["shard_starts"].address if shards else None,
        seq_lens=shards["seq_lens"].address if shards else None)
    if device == "cpu":
        check(lib().padec_validate_kv_host(ctypes.byref(c_params), batch,
                                           ctypes.byref(c_tensors)), _RUN_NAMES)
        return
    torch = import_torch()
    with torch.cuda.device(lens.value.device):
        # The read-backs below synchronise, which would invalidate a capture in progress (the C
        # call refuses one without touching it, but they come first): refused before them.
        if torch.cuda.is_current_stream_capturing():
            raise Error(Status.CUDA_ERROR,
                        "validate_kv: the current stream is being captured, and this call "
                        "synchronises it (call it before capturing)")
        _expect_page_ids_named(indptr, indices, batch)
        _expect_block_table_rows(indptr, indices, batch)
        stream = torch.cuda.current_stream()
        scratch = torch.empty(VALIDATE_SCRATCH_BYTES, dtype=torch.uint8, device=lens.value.device)
        check(lib().padec_cuda_validate_kv(ctypes.byref(c_params), batch,
                                           ctypes.byref(c_tensors), scratch.data_ptr(),
                                           stream.cuda_stream), _RUN_NAMES)
