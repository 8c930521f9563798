"""Running a plan: run_cpu (padec_cpu_run) on numpy arrays or CPU torch tensors, run_cuda
(padec_cuda_run) on CUDA torch tensors. Every argument is checked here (dtype, device, shape,
strides, alignment) before the C call, which checks again."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from ._cuda import import_torch
from ._errors import Error, Status
from ._library import CParams, CTensors, check, lib
from ._params import DType, Fp8ScaleMode, Layout, Params
from ._plan import Plan
from ._tensors import NUMPY_DTYPES, Tensor, aligned_empty, describe, torch_dtype


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


def _bind(params: Params, plan: Plan, backend: str, q, k_pages, v_pages, page_indptr,
          page_indices, kv_lens, o, lse, k_scales, v_scales, return_lse: bool) -> _Call:
    if not isinstance(params, Params):
        raise Error(Status.BAD_ARGUMENT,
                    f"params: need a padec.Params, not {type(params).__name__}")
    if not isinstance(plan, Plan):
        raise Error(Status.BAD_ARGUMENT, f"plan: need a padec.Plan, not {type(plan).__name__}")
    params.validate()
    if _schedule_fields(params) != _schedule_fields(plan.params):
        raise Error(Status.PLAN_MISMATCH,
                    "the plan was built for num_q_heads, num_kv_heads, head_dim, q_len, "
                    f"window_left = {_schedule_fields(plan.params)}; params give "
                    f"{_schedule_fields(params)}")

    batch, q_len = plan.batch, params.q_len or 1
    tokens, heads, dim = batch * q_len, params.num_q_heads, params.head_dim
    kv_heads, page_size = params.num_kv_heads, params.page_size

    qt = describe("q", q)
    if backend == "cpu":
        qt.expect_device("cpu")
    elif not qt.device.startswith("cuda"):
        raise qt.fail(Status.BAD_ARGUMENT,
                      f"is on {qt.device}: run_cuda needs CUDA tensors (run_cpu runs on the host)")
    device = qt.device

    def tensor(name: str, value) -> Tensor:
        checked = describe(name, value)
        checked.expect_device(device)
        return checked

    qt.expect_dtype(params.q_dtype, "params.q_dtype")
    qt.expect_shape((tokens, heads, dim),
                    f"([batch * q_len, num_q_heads, head_dim]; the plan is for batch {batch})")
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
    for pages in (kt, vt):
        pages.expect_dtype(params.kv_dtype, "params.kv_dtype")
        pages.expect_shape(pool, meaning)
        pages.expect_contiguous()
        pages.expect_aligned(16)

    indptr, indices, lens = (tensor("page_indptr", page_indptr),
                             tensor("page_indices", page_indices), tensor("kv_lens", kv_lens))
    indptr.expect_shape((batch + 1,), "([batch + 1])")
    lens.expect_shape((batch,), "([batch])")
    if len(indices.shape) not in (1, 2):
        raise indices.fail(Status.BAD_ARGUMENT,
                           f"shape {list(indices.shape)}, need 1-D (CSR) or 2-D (a block table)")
    for index in (indptr, indices, lens):
        index.expect_element("int32")
        index.expect_contiguous()
        index.expect_aligned(4)

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

    if o is None:
        o = _empty(qt, (tokens, heads, dim), params.o_dtype)
    ot = tensor("o", o)
    ot.expect_dtype(params.o_dtype, "params.o_dtype")
    ot.expect_shape((tokens, heads, dim), "(the shape of q)")
    ot.expect_rows(writeable=True)
    ot.expect_writeable()
    ot.expect_aligned(ot.itemsize)

    lse_address = None
    if lse is None and return_lse:
        lse = _empty(qt, (tokens, heads), DType.FP32)
    if lse is not None:
        lt = tensor("lse", lse)
        lt.expect_element("float32")
        lt.expect_shape((tokens, heads), "([batch * q_len, num_q_heads])")
        lt.expect_contiguous()
        lt.expect_writeable()
        lt.expect_aligned(4)
        lse_address = lt.address

    c_tensors = CTensors(
        q=qt.address, q_stride_token=qt.stride(0, heads * dim), q_stride_head=qt.stride(1, dim),
        k_pages=kt.address, v_pages=vt.address, num_pages=num_pages,
        page_indptr=indptr.address, page_indices=indices.address, kv_lens=lens.address,
        k_scales=scales.get("k_scales"), v_scales=scales.get("v_scales"),
        o=ot.address, o_stride_token=ot.stride(0, heads * dim), o_stride_head=ot.stride(1, dim),
        lse=lse_address)
    return _Call(params.to_c(), c_tensors, device, o, lse)


def _workspace(workspace, plan: Plan, device: str, alignment: int) -> Tensor:
    checked = describe("workspace", workspace)
    checked.expect_device(device)
    checked.expect_element("uint8")
    checked.expect_contiguous()
    checked.expect_writeable()
    checked.expect_aligned(alignment)
    if checked.numel < plan.workspace_bytes:
        raise checked.fail(Status.WORKSPACE_TOO_SMALL,
                           f"{checked.numel} bytes, the plan needs {plan.workspace_bytes}")
    return checked


def run_cpu(params: Params, plan: Plan, q, k_pages, v_pages, page_indptr, page_indices, kv_lens,
            o=None, lse=None, k_scales=None, v_scales=None, *, return_lse: bool = False,
            workspace=None):
    """Runs a plan on the CPU (padec_cpu_run) on numpy arrays or CPU torch tensors. New outputs
    are of q's kind. Single-threaded C; the GIL is released during the call.

    q: [batch * q_len, num_q_heads, head_dim] in params.q_dtype; any positive token and head
    strides, each head's row contiguous. k_pages, v_pages: contiguous pools in params.kv_dtype,
    [num_pages, page_size, num_kv_heads, head_dim] (NHD) or [num_pages, num_kv_heads, page_size,
    head_dim] (HND), 16-byte aligned. page_indptr: int32 [batch + 1]. page_indices: int32, 1-D,
    or a 2-D block table [batch, S] with page_indptr[b] = b * S. kv_lens: int32 [batch], tokens
    per sequence with the new query tokens, as the plan was built for. o: shaped like q, in
    params.o_dtype; allocated if None. lse: float32 [batch * q_len, num_q_heads], natural log,
    -inf where a row sees no token; allocated if None and return_lse. k_scales, v_scales:
    float32 [num_pages, num_kv_heads, page_size] with Fp8ScaleMode.PER_TOKEN, one element with
    PER_TENSOR_DEVICE. workspace: uint8, plan.workspace_bytes or more; allocated if None.

    dtypes: bf16 as torch.bfloat16 or as its bits in uint16 (numpy has no bf16), fp16 as
    float16, fp32 as float32, fp8 e4m3 as torch.float8_e4m3fn or uint8.

    Returns o, or (o, lse) when lse is given or return_lse is set. Raises Error (status name and
    message) on a bad argument, before anything is written.
    """
    call = _bind(params, plan, "cpu", q, k_pages, v_pages, page_indptr, page_indices, kv_lens, o,
                 lse, k_scales, v_scales, return_lse)
    if workspace is None:
        workspace = aligned_empty(plan.workspace_bytes, 16)
    space = _workspace(workspace, plan, "cpu", 16)
    check(lib().padec_cpu_run(ctypes.byref(call.params), ctypes.byref(plan._c_layout),
                              plan.data.ctypes.data, ctypes.byref(call.tensors), space.address,
                              space.numel))
    return call.result()


def run_cuda(params: Params, plan: Plan, q, k_pages, v_pages, page_indptr, page_indices, kv_lens,
             o=None, lse=None, k_scales=None, v_scales=None, *, return_lse: bool = False,
             workspace=None):
    """Runs a plan on a CUDA device (padec_cuda_run): arguments and result as for run_cpu, all
    torch tensors on one CUDA device (the workspace 256-byte aligned). Runs on torch's current
    stream and never synchronises, so it can be captured in a CUDA graph; the plan is uploaded
    on first use (Plan.to_device: call it before capturing). Page ids and kv_lens are device
    data and are not checked; kv_lens must give the partitions the plan was built for.
    """
    call = _bind(params, plan, "cuda", q, k_pages, v_pages, page_indptr, page_indices, kv_lens, o,
                 lse, k_scales, v_scales, return_lse)
    torch = import_torch()
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream()
        device_plan = plan.to_device(q.device)
        if workspace is None:
            workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device=q.device)
        space = _workspace(workspace, plan, call.device, 256)
        check(lib().padec_cuda_run(ctypes.byref(call.params), ctypes.byref(plan._c_layout),
                                   device_plan.data_ptr(), ctypes.byref(call.tensors),
                                   space.address, space.numel, stream.cuda_stream))
    return call.result()
