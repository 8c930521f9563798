"""Bad inputs to run_cpu raise padec.Error with the status name and a message naming the
argument, and write nothing."""

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout, Status
from padec._library import _ABI_VERSION
from reference import make_case

PARAMS = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                      o_dtype=DType.FP32)
LENS = [40, 100]


@pytest.fixture
def case():
    return make_case(np.random.default_rng(1), PARAMS, LENS)


@pytest.fixture
def plan():
    return padec.build_plan(PARAMS, LENS, num_workers=4, partition_tokens=32)


def misaligned(array: np.ndarray, offset_bytes: int) -> np.ndarray:
    """A copy of array whose data starts offset_bytes past a 16-byte boundary."""
    raw = np.empty(array.nbytes + 32, np.uint8)
    start = -raw.ctypes.data % 16 + offset_bytes
    view = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    view[...] = array
    return view


def expect_error(status: Status, text: str, call, *args, **kwargs) -> padec.Error:
    with pytest.raises(padec.Error) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert (error.status, error.status_name) == (status, status.c_name), str(error)
    assert text in error.message, str(error)
    # Messages name the caller's arguments, not the C struct's fields.
    assert "tensors." not in error.message, str(error)
    return error


def replace(case, **changes):
    return dataclasses.replace(case, **changes).inputs


def test_q_dtype(case, plan):
    expect_error(Status.UNSUPPORTED_DTYPE, "q: dtype float32, but params.q_dtype is BF16",
                 padec.run_cpu, PARAMS, plan, *replace(case, q=case.q.astype(np.float32)))


def test_kv_dtype(case, plan):
    expect_error(Status.UNSUPPORTED_DTYPE, "k_pages: dtype float16", padec.run_cpu, PARAMS, plan,
                 *replace(case, k_pages=case.k_pages.view(np.float16)))


def test_q_shape(case, plan):
    expect_error(Status.BAD_ARGUMENT, "q: shape [2, 4, 64], need [4, 4, 64]", padec.run_cpu,
                 PARAMS, plan, *replace(case, q=case.q[:2]))


def test_pool_shape_follows_layout(case, plan):
    hnd = dataclasses.replace(PARAMS, kv_layout=Layout.HND)
    expect_error(Status.BAD_ARGUMENT, "(HND: [num_pages, num_kv_heads, page_size, head_dim])",
                 padec.run_cpu, hnd, plan, *case.inputs)


def test_pages_must_be_contiguous(case, plan):
    """Pages may be any distance apart (an interleaved [num_pages, 2, ...] cache runs: test_cpu),
    but each page's elements must be packed."""
    heads_outer = np.ascontiguousarray(case.k_pages.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    expect_error(Status.BAD_ARGUMENT, "k_pages: strides", padec.run_cpu, PARAMS, plan,
                 *replace(case, k_pages=heads_outer))


def test_pages_must_not_overlap(case, plan):
    pool = case.k_pages
    half = pool.strides[0] // 2
    overlapping = np.lib.stride_tricks.as_strided(pool, strides=(half, *pool.strides[1:]))
    expect_error(Status.BAD_ARGUMENT, "less than a page", padec.run_cpu, PARAMS, plan,
                 *replace(case, k_pages=overlapping, v_pages=overlapping))


def test_pages_in_reverse_order(case, plan):
    expect_error(Status.BAD_ARGUMENT, "a positive stride", padec.run_cpu, PARAMS, plan,
                 *replace(case, k_pages=case.k_pages[::-1], v_pages=case.v_pages[::-1]))


def test_pools_need_one_page_stride(case, plan):
    both = np.stack([case.k_pages, case.v_pages], axis=1)
    error = expect_error(Status.BAD_ARGUMENT, "the pools need the same page stride",
                         padec.run_cpu, PARAMS, plan, *replace(case, k_pages=both[:, 0]))
    assert "v_pages: pages contiguous, k_pages's 4096 elements apart" in error.message


def test_pages_4_gib_apart(case, plan):
    pool = case.k_pages
    # Never read: the binding refuses it from the strides alone.
    far = np.lib.stride_tricks.as_strided(pool, strides=(2**32, *pool.strides[1:]))
    expect_error(Status.BAD_ARGUMENT, "k_pages: pages 2147483648 elements apart: need fewer than "
                 "2^32 bytes", padec.run_cpu, PARAMS, plan, *replace(case, k_pages=far, v_pages=far))


def test_misaligned_pool(case, plan):
    expect_error(Status.MISALIGNED_POINTER, "v_pages: address", padec.run_cpu, PARAMS, plan,
                 *replace(case, v_pages=misaligned(case.v_pages, 8)))


def test_misaligned_q(case, plan):
    expect_error(Status.MISALIGNED_POINTER, "not 2-byte aligned", padec.run_cpu, PARAMS, plan,
                 *replace(case, q=misaligned(case.q, 1).view(np.uint8).view(np.uint16)))


def test_index_dtype(case, plan):
    expect_error(Status.UNSUPPORTED_DTYPE, "page_indptr: dtype int64, need int32", padec.run_cpu,
                 PARAMS, plan, *replace(case, page_indptr=case.page_indptr.astype(np.int64)))


def test_broadcast_q(case, plan):
    expect_error(Status.BAD_ARGUMENT, "need positive strides", padec.run_cpu, PARAMS, plan,
                 *replace(case, q=np.broadcast_to(case.q[:1], case.q.shape)))


def test_read_only_output(case, plan):
    o = np.zeros(case.q.shape, np.float32)
    o.flags.writeable = False
    expect_error(Status.BAD_ARGUMENT, "o: is read-only", padec.run_cpu, PARAMS, plan,
                 *case.inputs, o=o)


def test_overlapping_output(case, plan):
    buffer = np.zeros(case.q.size, np.float32)
    o = np.lib.stride_tricks.as_strided(buffer, case.q.shape, (4 * 64, 4 * 64, 4))
    expect_error(Status.BAD_ARGUMENT, "make elements overlap", padec.run_cpu, PARAMS, plan,
                 *case.inputs, o=o)


def test_not_an_array(case, plan):
    expect_error(Status.BAD_ARGUMENT, "kv_lens: need a numpy array or a torch tensor, not list",
                 padec.run_cpu, PARAMS, plan, *case.inputs[:5], LENS)


def test_byte_order(case, plan):
    expect_error(Status.UNSUPPORTED_DTYPE, "byte order", padec.run_cpu, PARAMS, plan,
                 *replace(case, kv_lens=case.kv_lens.astype(">i4")))


def test_page_out_of_range_writes_nothing(case, plan):
    """Caught in C (padec_validate_kv_host) before any output is written."""
    indices = case.page_indices.copy()
    indices[-1] = case.k_pages.shape[0] + 7
    o = np.full(case.q.shape, 3.0, np.float32)
    lse = np.full(case.q.shape[:2], 3.0, np.float32)
    expect_error(Status.PAGE_INDEX_OUT_OF_RANGE, "sequence 1: page_indices", padec.run_cpu,
                 PARAMS, plan, *replace(case, page_indices=indices), o=o, lse=lse)
    assert np.all(o == 3.0) and np.all(lse == 3.0)


def test_page_indices_shorter_than_the_table(case, plan):
    """page_indptr names more page ids than the page_indices array holds: refused before any
    of them is read, in the caller's words (page_indices, not C's num_page_indices, which the
    binding fills from its length), nothing written."""
    indices = case.page_indices[:-1]
    o = np.full(case.q.shape, 3.0, np.float32)
    expect_error(Status.BAD_ARGUMENT,
                 f"page_indices: {indices.size} page ids, but page_indptr[2] = {indices.size + 1}",
                 padec.run_cpu, PARAMS, plan, *replace(case, page_indices=indices), o=o)
    assert np.all(o == 3.0)


def test_empty_page_indices_with_pages_named(case, plan):
    """An empty page_indices whose page_indptr names pages: refused by the binding (C reads a
    length of 0 as "not given")."""
    o = np.full(case.q.shape, 3.0, np.float32)
    expect_error(Status.BAD_ARGUMENT, "page_indices: 0 page ids, but page_indptr[2]", padec.run_cpu,
                 PARAMS, plan, *replace(case, page_indices=case.page_indices[:0]), o=o)
    assert np.all(o == 3.0)


def test_block_table_rows_need_row_starts():
    """A 2-D page_indices is read through page_indptr[b] = b * S: an engine's cumulative page
    counts beside its [batch, S] table would read other rows' ids, all in range. Refused, as is
    a table of fewer rows than sequences, nothing written; more rows than sequences run."""
    table_case = make_case(np.random.default_rng(4), PARAMS, LENS, block_table=True)
    plan = padec.build_plan(PARAMS, LENS, num_workers=4, partition_tokens=32)
    table = table_case.page_indices
    width = table.shape[1]
    o = np.full(table_case.q.shape, 3.0, np.float32)
    used = np.array([0, 3, 10], np.int32)  # ceil(40 / 16), then + ceil(100 / 16)
    expect_error(Status.BAD_ARGUMENT,
                 f"page_indptr[1] = 3, but with a 2-D page_indices of rows of {width} it must be "
                 f"1 * {width} = {width}", padec.run_cpu, PARAMS, plan,
                 *replace(table_case, page_indptr=used), o=o)
    expect_error(Status.BAD_ARGUMENT, "page_indptr[1] = 3", padec.validate_kv, PARAMS, used,
                 table, table_case.kv_lens, num_pages=table_case.k_pages.shape[0])
    expect_error(Status.BAD_ARGUMENT, "a block table of 1 rows for a batch of 2", padec.run_cpu,
                 PARAMS, plan, *replace(table_case, page_indices=table[:1]), o=o)
    assert np.all(o == 3.0)
    taller = np.concatenate([table, np.zeros((3, width), np.int32)])
    ok = padec.run_cpu(PARAMS, plan, *replace(table_case, page_indices=taller))
    assert np.array_equal(ok, padec.run_cpu(PARAMS, plan, *table_case.inputs))


def test_kv_len_exceeds_pages(case):
    lens = np.array([40, 16 * 20], np.int32)
    plan = padec.build_plan(PARAMS, lens, num_workers=4)
    expect_error(Status.KV_LEN_EXCEEDS_PAGES, "sequence 1: kv_len = 320", padec.run_cpu, PARAMS,
                 plan, *replace(case, kv_lens=lens))


def test_plan_built_for_other_lengths(case):
    plan = padec.build_plan(PARAMS, [40, 20], num_workers=4, partition_tokens=32)
    expect_error(Status.PLAN_MISMATCH, "plan built for other kv_lens", padec.run_cpu, PARAMS,
                 plan, *case.inputs)


def test_plan_built_for_other_params(case, plan):
    windowed = dataclasses.replace(PARAMS, window_left=8)
    expect_error(Status.PLAN_MISMATCH, "the plan was built for", padec.run_cpu, windowed, plan,
                 *case.inputs)


def test_plan_for_other_batch(case):
    plan = padec.build_plan(PARAMS, LENS + [5], num_workers=4)
    expect_error(Status.BAD_ARGUMENT, "q: shape [4, 4, 64], need [6, 4, 64]", padec.run_cpu,
                 PARAMS, plan, *case.inputs)


def test_workspace_too_small(case, plan):
    expect_error(Status.WORKSPACE_TOO_SMALL, "workspace:", padec.run_cpu, PARAMS, plan,
                 *case.inputs, workspace=np.zeros(16, np.uint8))


FP8 = dataclasses.replace(PARAMS, kv_dtype=DType.E4M3)


def test_scales_missing():
    params = dataclasses.replace(FP8, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN)
    case = make_case(np.random.default_rng(2), params, LENS)
    plan = padec.build_plan(params, LENS, num_workers=4)
    expect_error(Status.BAD_SCALES, "k_scales: fp8_scale_mode PER_TOKEN needs it", padec.run_cpu,
                 params, plan, *case.inputs)
    expect_error(Status.BAD_SCALES, "v_scales: shape", padec.run_cpu, params, plan, *case.inputs,
                 k_scales=case.k_scales, v_scales=case.v_scales[:1])


def test_scales_without_a_mode_that_reads_them(case, plan):
    expect_error(Status.BAD_SCALES, "given with fp8_scale_mode NONE", padec.run_cpu, PARAMS, plan,
                 *case.inputs, k_scales=np.ones(1, np.float32), v_scales=np.ones(1, np.float32))


def test_bad_scale_values():
    """Per-tensor scales are checked by the library: values in params, device values at run."""
    params = dataclasses.replace(FP8, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR_DEVICE)
    case = make_case(np.random.default_rng(3), params, LENS)
    plan = padec.build_plan(params, LENS, num_workers=4)
    expect_error(Status.BAD_SCALES, "*k_scales = 0", padec.run_cpu, params, plan, *case.inputs,
                 k_scales=np.zeros(1, np.float32), v_scales=case.v_scales)
    negative = dataclasses.replace(FP8, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR, k_scale=-1.0)
    expect_error(Status.BAD_SCALES, "k_scale = -1", padec.run_cpu, negative, plan, *case.inputs)
    # Per-tensor scales not given are refused, not read as 1 (Params' defaults are C's zeros).
    unset = dataclasses.replace(FP8, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR)
    assert (unset.k_scale, unset.v_scale) == (0.0, 0.0)
    with pytest.raises(padec.Error) as caught:
        unset.validate()
    assert caught.value.status == Status.BAD_SCALES
    assert "k_scale = 0, v_scale = 0" in caught.value.message
    expect_error(Status.BAD_SCALES, "k_scale = 0, v_scale = 0", padec.run_cpu, unset, plan,
                 *case.inputs)


def test_run_cuda_refuses_host_arrays(case, plan):
    expect_error(Status.BAD_ARGUMENT, "run_cuda needs CUDA tensors", padec.run_cuda, PARAMS,
                 plan, *case.inputs)


def test_missing_library_is_named():
    env = dict(os.environ, PADEC_LIBRARY="/nonexistent/libpadec.so")
    script = "import padec; padec.build_plan(padec.Params(8, 2, 64, 16), [1], num_workers=1)"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, cwd=os.path.dirname(os.path.dirname(padec.__file__)))
    assert result.returncode != 0
    assert "libpadec.so not found (tried /nonexistent/libpadec.so)" in result.stderr


def test_other_library_version_is_named(tmp_path):
    """A library of another version is named by its version, even one that lacks symbols this
    package binds (the version is read before the prototypes)."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in library")
    major, minor = _ABI_VERSION
    source = tmp_path / "other.c"
    newer = major * 10000 + (minor + 1) * 100
    source.write_text(f"unsigned padec_version_number(void) {{ return {newer}; }}\n")
    library = tmp_path / "libother.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    env = dict(os.environ, PADEC_LIBRARY=str(library))
    result = subprocess.run([sys.executable, "-c", "import padec; padec.library_version()"],
                            env=env, capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(padec.__file__)))
    assert result.returncode != 0
    assert f"is version {major}.{minor + 1}; this package needs {major}.{minor}" in result.stderr, \
        result.stderr


def test_sparse_torch_lengths_are_named():
    torch = pytest.importorskip("torch")
    sparse = torch.tensor([40, 100], dtype=torch.int32).to_sparse()
    expect_error(Status.BAD_ARGUMENT, "kv_lens: a torch.sparse_coo tensor", padec.build_plan,
                 PARAMS, sparse, num_workers=4)


@pytest.mark.parametrize("field, value, text", [
    ("window_left", 2**32 + 5, "window_left = 4294967301 does not fit int32"),
    ("window_left", 2**31, "does not fit int32"),
    ("head_dim", 128.9, "head_dim = 128.9: need an integer"),
    ("page_size", None, "page_size = None: need an integer"),
    ("q_len", True, "q_len = True: need an integer"),
    ("softmax_scale", "0.1", "softmax_scale = '0.1': need a real number"),
    ("softmax_scale", 10**400, "does not fit a float"),
])
def test_params_fields_are_not_truncated(field, value, text):
    """An int32 field of padec_params gets an integer that fits (no silent wrap or truncation),
    named when it does not."""
    fields = dict(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    fields[field] = value
    expect_error(Status.BAD_ARGUMENT, text, padec.Params, **fields)


def test_numpy_integers_are_integers():
    params = padec.Params(num_q_heads=np.int64(4), num_kv_heads=np.int32(2), head_dim=64, page_size=16)
    assert params == PARAMS.__class__(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    assert type(params.num_q_heads) is int


def test_plan_built_on_the_device_needs_device_lengths_and_runs_on_the_device(case):
    """build_plan_cuda plans from lengths on a CUDA device; a CudaPlan cannot run on the host."""
    expect_error(Status.BAD_ARGUMENT, "kv_lens: is on cpu: build_plan_cuda plans from lengths on "
                 "a CUDA device", padec.build_plan_cuda, PARAMS, np.array(LENS, np.int32),
                 num_workers=4)
    expect_error(Status.BAD_ARGUMENT, "kv_lens: need a numpy array or a torch tensor, not list",
                 padec.build_plan_cuda, PARAMS, LENS, num_workers=4)
    device_plan = padec.CudaPlan(PARAMS, padec.plan_layout(PARAMS, len(LENS), num_workers=4),
                                 buffer=None, kv_lens=None)
    expect_error(Status.BAD_ARGUMENT, "plan: need a padec.Plan, not CudaPlan", padec.run_cpu,
                 PARAMS, device_plan, *case.inputs)
    expect_error(Status.BAD_ARGUMENT, "plan: need a padec.Plan or padec.CudaPlan, not str",
                 padec.run_cuda, PARAMS, "plan", *case.inputs)
    # A CudaPlan schedules whole sequences: shard arrays are refused with the way out.
    lens = np.array(LENS, np.int32)
    expect_error(Status.PLAN_MISMATCH, "a CudaPlan schedules whole sequences", padec.run_cuda,
                 PARAMS, device_plan, *case.inputs, shard_starts=lens * 0, seq_lens=lens)
    # A CudaPlan made by hand without its tensors: an Error naming them, not a Python one.
    expect_error(Status.BAD_ARGUMENT, "kv_lens: need a numpy array or a torch tensor, not "
                 "NoneType", device_plan.rebuild)


def test_num_workers_must_be_an_integer():
    expect_error(Status.BAD_ARGUMENT, "num_workers = 7.9: need an integer", padec.build_plan, PARAMS,
                 LENS, num_workers=7.9)


@pytest.mark.parametrize("call, text", [
    (lambda: padec.build_plan(dataclasses.asdict(PARAMS), LENS, num_workers=4),
     "params: need a padec.Params, not dict"),
    (lambda: padec.plan_layout((4, 2, 64, 16), 2, num_workers=4),
     "params: need a padec.Params, not tuple"),
    (lambda: padec.recommended_workers(None), "params: need a padec.Params, not NoneType"),
    (lambda: padec.recommended_workers(PARAMS, "gpu"), "device = 'gpu'"),
    (lambda: padec.recommended_workers(PARAMS, 1.5), "device = 1.5: need an integer"),
    (lambda: padec.device_info("x"), "device = 'x'"),
    (lambda: padec.device_info(1.5), "device = 1.5: need an integer"),
    (lambda: padec.device_info(2**32), "device = 4294967296 does not fit int32"),
    (lambda: padec.CostModel("fast", 1.0, 1.0),
     "CostModel.partition_ns = 'fast': need a real number"),
    (lambda: padec.CostModel(1.0, None, 1.0), "CostModel.item_ns = None: need a real number"),
    (lambda: padec.choose(PARAMS, LENS, 8, batch=2.5), "batch = 2.5: need an integer"),
    (lambda: padec.Params(4, 2, 64, 16, kv_layout=True), "kv_layout = True is not a Layout"),
    (lambda: padec.build_plan(PARAMS, [[40, 1], [100]], num_workers=4),
     "kv_lens: need a 1-D sequence of integers"),
    (lambda: padec.choose(PARAMS, [[40, 1], [100]], 8), "kv_lens: need a 1-D sequence"),
    (lambda: padec.device_info(-1), "device = -1: need a device index >= 0"),
    (lambda: padec.Params(4, 2, 64, 16, softmax_scale=1e-50),
     "softmax_scale = 1e-50 is outside a 32-bit float's range"),
    (lambda: padec.Params(4, 2, 64, 16, k_scale=1e300),
     "k_scale = 1e+300 is outside a 32-bit float's range"),
])
def test_wrong_argument_types_are_named(call, text):
    """A wrong type is an Error naming the argument, not an AttributeError, a ValueError or a
    silent conversion deep inside."""
    expect_error(Status.BAD_ARGUMENT, text, call)


def test_return_lse_must_be_a_bool(case, plan):
    """"no" is truthy: taken as a flag it would switch the LSE on."""
    expect_error(Status.BAD_ARGUMENT, "return_lse = 'no': need True or False", padec.run_cpu,
                 PARAMS, plan, *case.inputs, return_lse="no")
    o, lse = padec.run_cpu(PARAMS, plan, *case.inputs, return_lse=np.bool_(True))
    assert lse.shape == (len(LENS) * PARAMS.q_len, PARAMS.num_q_heads)


def test_enum_fields_take_numpy_integers():
    assert padec.Params(4, 2, 64, 16, kv_layout=np.int64(1)).kv_layout == Layout.HND
    assert padec.build_plan(PARAMS, LENS, num_workers=4, policy=np.int32(2)).layout.policy == 2


def fake_torch(current_device: int):
    """A stand-in for torch that reports a CUDA device as current, for the device defaults."""
    import types

    class FakeDevice:
        def __init__(self, spec):
            kind, _, index = str(spec).partition(":")
            if kind not in ("cpu", "cuda"):
                raise RuntimeError(f"bad device {spec!r}")
            self.type, self.index = kind, int(index) if index else None

    cuda = types.SimpleNamespace(is_available=lambda: True, current_device=lambda: current_device)
    return types.SimpleNamespace(Tensor=type("Tensor", (), {}), device=FakeDevice, cuda=cuda)


def test_cuda_device_defaults_to_the_current_device(monkeypatch):
    """Where no device is given, the CUDA queries ask about torch's current device, the one a
    run on torch's current stream uses, not device 0."""
    library = padec._library.lib()
    asked = []

    def query(device, info):
        asked.append(("query", device))
        return Status.OK

    def workers(params, device, out):
        asked.append(("workers", device))
        out._obj.value = 96
        return Status.OK

    monkeypatch.setitem(sys.modules, "torch", fake_torch(current_device=3))
    monkeypatch.setattr(library, "padec_cuda_device_query", query)
    monkeypatch.setattr(library, "padec_cuda_recommended_workers", workers)
    padec.device_info()
    assert padec.recommended_workers(PARAMS) == 96
    assert padec.build_plan(PARAMS, LENS).num_workers == 96
    padec.choose(PARAMS, LENS)
    padec.grid_recommended_splits(PARAMS, 2)
    # choose asks for the workers, then for the SM count (one CTA an SM for few pairs).
    assert asked == ([("query", 3)] + [("workers", 3)] * 3 + [("query", 3)] + [("workers", 3)])
    asked.clear()
    padec.device_info("cuda")
    padec.device_info("cuda:1")
    padec.recommended_workers(PARAMS, 2)
    assert asked == [("query", 3), ("query", 1), ("workers", 2)]
    expect_error(Status.BAD_ARGUMENT, "device = 'cpu': need a CUDA device", padec.device_info,
                 "cpu")
    expect_error(Status.BAD_ARGUMENT, "device = 'tpu:0' is not a device", padec.device_info,
                 "tpu:0")


def test_validate_kv_on_the_host(case):
    """validate_kv is run_cpu's block-table check on its own, for admission: the first bad
    sequence is named; shard arrays are checked when given."""
    pages = case.k_pages.shape[0]
    arrays = (case.page_indptr, case.page_indices, case.kv_lens)
    assert padec.validate_kv(PARAMS, *arrays, num_pages=pages) is None
    indices = case.page_indices.copy()
    indices[case.page_indptr[1]] = pages
    expect_error(Status.PAGE_INDEX_OUT_OF_RANGE, f"sequence 1: page_indices[{case.page_indptr[1]}]",
                 padec.validate_kv, PARAMS, case.page_indptr, indices, case.kv_lens,
                 num_pages=pages)
    too_long = case.kv_lens.copy()
    too_long[0] = 10**6
    expect_error(Status.KV_LEN_EXCEEDS_PAGES, "sequence 0: kv_len = 1000000",
                 padec.validate_kv, PARAMS, case.page_indptr, case.page_indices, too_long,
                 num_pages=pages)
    seq_lens = case.kv_lens + 5
    padec.validate_kv(PARAMS, *arrays, num_pages=pages, shard_starts=np.full(2, 5, np.int32),
                      seq_lens=seq_lens)
    expect_error(Status.BAD_ARGUMENT, "sequence 0: the shard ends at position", padec.validate_kv,
                 PARAMS, *arrays, num_pages=pages, shard_starts=np.full(2, 6, np.int32),
                 seq_lens=seq_lens)
    expect_error(Status.NULL_POINTER, "seq_lens: None, but shard_starts is given",
                 padec.validate_kv, PARAMS, *arrays, num_pages=pages,
                 shard_starts=np.zeros(2, np.int32))
    expect_error(Status.UNSUPPORTED_DTYPE, "kv_lens: dtype int64, need int32", padec.validate_kv,
                 PARAMS, case.page_indptr, case.page_indices, case.kv_lens.astype(np.int64),
                 num_pages=pages)
    expect_error(Status.BAD_ARGUMENT, "page_indptr: shape [2], need [3]", padec.validate_kv,
                 PARAMS, case.page_indptr[:2], case.page_indices, case.kv_lens, num_pages=pages)
    expect_error(Status.BAD_ARGUMENT, "num_pages = -1", padec.validate_kv, PARAMS, *arrays,
                 num_pages=-1)
    expect_error(Status.BAD_ARGUMENT, "num_pages = 2.0", padec.validate_kv, PARAMS, *arrays,
                 num_pages=2.0)
    expect_error(Status.BAD_ARGUMENT, "page_indptr: need a numpy array or a torch tensor",
                 padec.validate_kv, PARAMS, list(case.page_indptr), case.page_indices,
                 case.kv_lens, num_pages=pages)
    padec.validate_kv(PARAMS, np.zeros(1, np.int32), np.zeros(0, np.int32),
                      np.zeros(0, np.int32), num_pages=0)


def test_bf16_torch_lengths_are_named():
    torch = pytest.importorskip("torch")
    expect_error(Status.BAD_ARGUMENT, "kv_lens: need a 1-D sequence of integers", padec.build_plan,
                 PARAMS, torch.tensor([40.0, 100.0], dtype=torch.bfloat16), num_workers=4)


def test_group_of_params_the_library_refuses():
    expect_error(Status.BAD_HEAD_COUNT, "num_kv_heads", lambda: padec.Params(4, 0, 64, 16).group)


def test_output_and_lse_must_not_overlap(case, plan):
    """lse inside o's memory: the run would write one over the other."""
    buffer = np.full(case.q.size, np.nan, np.float32)
    o = buffer.reshape(case.q.shape)
    lse = buffer[:case.q.shape[0] * case.q.shape[1]].reshape(case.q.shape[:2])
    expect_error(Status.BAD_ARGUMENT, "lse and o overlap", padec.run_cpu, PARAMS, plan,
                 *case.inputs, o=o, lse=lse)
    assert np.all(np.isnan(buffer))


def test_output_over_what_the_run_reads_names_both(case, plan):
    """o over q, or over the block table: the library's check, in the caller's words."""
    rows = case.q.shape[0]
    buffer = np.zeros(rows * PARAMS.num_q_heads * PARAMS.head_dim * 4 + case.q.nbytes, np.uint8)
    o = buffer[:rows * PARAMS.num_q_heads * PARAMS.head_dim * 4].view(np.float32)
    o = o.reshape(rows, PARAMS.num_q_heads, PARAMS.head_dim)
    q = buffer[:case.q.nbytes].view(case.q.dtype).reshape(case.q.shape)
    q[...] = case.q
    expect_error(Status.BAD_ARGUMENT, "o and q overlap", padec.run_cpu, PARAMS, plan,
                 *replace(case, q=q), o=o)
    indices = buffer[:case.page_indices.nbytes].view(np.int32)
    indices[...] = case.page_indices
    expect_error(Status.BAD_ARGUMENT, "o overlaps page_indices, which the run reads",
                 padec.run_cpu, PARAMS, plan, *replace(case, page_indices=indices), o=o)
