"""Plan sizing and building, Params, the status table."""

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout, Status

PARAMS = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16)


@pytest.mark.parametrize("batch, workers", [(1, 2), (5, 16), (40, 7), (3, 1)])
def test_layout_bounds(batch, workers):
    """DESIGN.md's sizing: N = workers / kv_heads bins per head (1 if fewer workers than heads)."""
    layout = padec.plan_layout(PARAMS, batch, num_workers=workers)
    bins = max(1, workers // PARAMS.num_kv_heads)
    assert layout.batch == batch and layout.num_workers == workers
    assert layout.max_works == PARAMS.num_kv_heads * (batch + bins - 1)
    assert layout.max_partial_slots == min(2 * (bins - 1), batch + bins - 1)
    assert layout.partition_tokens == 256
    assert layout.workspace_bytes >= 256 and layout.plan_bytes % 16 == 0


def test_plan_views_agree_with_header():
    lens = [1000, 3, 0, 4096, 260]
    plan = padec.build_plan(PARAMS, lens, num_workers=10, partition_tokens=128)
    header = plan.header
    assert header.magic == 0x43454450 and header.batch == len(lens) and header.num_workers == 10
    assert plan.work_indptr[-1] == header.num_works
    assert plan.partition_indptr[-1] == header.num_partitions
    assert header.num_partitions == sum(-(-n // 128) for n in lens)
    assert plan.work_info.shape == (plan.layout.max_works, 8)
    assert plan.reduce_final_map.shape == (len(lens), 2)
    assert plan.data.ctypes.data % 16 == 0 and not plan.data.flags.writeable
    assert plan.kv_lens.tolist() == lens
    assert "num_works" in repr(plan)


def test_window_schedules_fewer_partitions():
    lens = [5000, 70]
    full = padec.build_plan(PARAMS, lens, num_workers=8, partition_tokens=64)
    windowed = padec.build_plan(padec.Params(8, 2, 128, 16, window_left=100), lens,
                                num_workers=8, partition_tokens=64)
    assert windowed.header.num_partitions < full.header.num_partitions
    assert windowed.layout.params_key != full.layout.params_key


def test_kv_lens_kinds_give_the_same_plan():
    lens = [77, 300, 1]
    plans = [padec.build_plan(PARAMS, value, num_workers=6)
             for value in (lens, tuple(lens), np.array(lens, np.int64), np.array(lens, np.int32))]
    assert len({plan.data.tobytes() for plan in plans}) == 1


def test_params_coercion():
    params = padec.Params(16, 4, 64, 32, kv_layout="hnd", q_dtype="fp16", kv_dtype="float8_e4m3fn",
                          o_dtype="torch.float32", fp8_scale_mode="per_token")
    assert params.kv_layout is Layout.HND and params.q_dtype is DType.FP16
    assert params.kv_dtype is DType.E4M3 and params.o_dtype is DType.FP32
    assert params.fp8_scale_mode is Fp8ScaleMode.PER_TOKEN and params.group == 4
    assert padec.Params(16, 4, 64, 32, q_dtype=1).q_dtype is DType.FP16
    assert padec.Params(16, 4, 64, 32, o_dtype=np.float32).o_dtype is DType.FP32
    params.validate()


def test_status_table_matches_the_library():
    from padec._library import status_name

    for status in Status:
        assert status_name(status) == status.c_name
    assert status_name(999) == "PADEC_STATUS_UNKNOWN"


def test_library_identity():
    assert padec.library_version().split(".")[:2] == padec.__version__.split(".")[:2]
    assert padec.library_path().name == "libpadec.so"


@pytest.mark.parametrize("call, status, text", [
    (lambda: padec.plan_layout(PARAMS, 4, num_workers=0), Status.BAD_ARGUMENT,
     "options.num_workers = 0"),
    (lambda: padec.plan_layout(PARAMS, 4, num_workers=8, partition_tokens=100),
     Status.BAD_ARGUMENT, "partition_tokens = 100"),
    (lambda: padec.plan_layout(PARAMS, -1, num_workers=8), Status.BAD_ARGUMENT, "batch = -1"),
    (lambda: padec.plan_layout(PARAMS, 2**40, num_workers=8), Status.BAD_ARGUMENT,
     "does not fit int32"),
    (lambda: padec.build_plan(PARAMS, [10, -3], num_workers=8), Status.BAD_ARGUMENT,
     "kv_lens[1] = -3 is negative"),
    (lambda: padec.build_plan(PARAMS, [[1, 2]], num_workers=8), Status.BAD_ARGUMENT,
     "1-D sequence of integers"),
    (lambda: padec.build_plan(PARAMS, [1.5], num_workers=8), Status.BAD_ARGUMENT,
     "1-D sequence of integers"),
    (lambda: padec.build_plan(padec.Params(8, 2, 96, 16), [1], num_workers=8),
     Status.UNSUPPORTED_HEAD_DIM, "head_dim = 96"),
    (lambda: padec.build_plan(padec.Params(8, 3, 64, 16), [1], num_workers=8),
     Status.BAD_HEAD_COUNT, "num_q_heads = 8, num_kv_heads = 3"),
    (lambda: padec.Params(8, 2, 64, 24).validate(), Status.BAD_PAGE_SIZE, "page_size = 24"),
    (lambda: padec.Params(8, 2, 64, 16, q_len=5).validate(), Status.BAD_Q_LEN, "q_len = 5"),
    (lambda: padec.Params(8, 2, 64, 16, q_dtype=DType.E4M3).validate(),
     Status.UNSUPPORTED_DTYPE, "q must be bf16 or fp16"),
    (lambda: padec.Params(8, 2, 64, 16, kv_dtype="int8"), Status.UNSUPPORTED_DTYPE,
     "kv_dtype = 'int8' is not a DType"),
    (lambda: padec.Params(8, 2, 64, 16, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN).validate(),
     Status.BAD_SCALES, "scales are for e4m3"),
    (lambda: padec.build_plan(PARAMS, [1], num_workers=8, policy="greedy"), Status.BAD_ARGUMENT,
     "policy = 'greedy' is not a Policy"),
])
def test_errors_carry_status_and_message(call, status, text):
    with pytest.raises(padec.Error) as caught:
        call()
    assert caught.value.status == status
    assert caught.value.status_name == status.c_name
    assert text in caught.value.message
    assert str(caught.value).startswith(status.c_name + ": ")


def test_to_device_out_is_not_kept_with_the_plan(monkeypatch):
    """A buffer given as out= stays the caller's: the plan's own device copy (what run_cuda
    uses) is never that buffer, which the caller may fill with another plan or free."""
    import types
    uploads = []
    monkeypatch.setattr(padec._cuda, "upload_plan",
                        lambda plan, out: uploads.append((plan, out)) or (None, 0))
    monkeypatch.setattr(padec._cuda, "device_index", lambda device: 0 if device is None else device)

    def empty_bytes(nbytes, device):
        return types.SimpleNamespace(nbytes=nbytes, device=types.SimpleNamespace(index=device))
    monkeypatch.setattr(padec._cuda, "empty_bytes", empty_bytes)
    params = padec.Params(8, 2, 64, 16)
    plan, other = (padec.build_plan(params, lens, num_workers=4) for lens in ([100], [900]))
    callers = empty_bytes(plan.layout.plan_bytes, 0)
    assert plan.to_device(out=callers) is callers
    own = plan.to_device()
    assert own is not callers and own.nbytes == plan.layout.plan_bytes
    assert plan.to_device(0) is own and plan.to_device() is own  # uploaded once, then kept
    other.to_device(out=callers)  # the caller reuses its buffer for another plan
    assert plan.to_device() is own
    assert [(p, o) for p, o in uploads] == [(plan, callers), (plan, own), (other, callers)]


class FakeStream:
    def __init__(self, handle):
        self.cuda_stream, self.waited = handle, []

    def wait_event(self, event):
        self.waited.append(event)


def test_a_run_on_another_stream_waits_for_the_upload():
    """The plan's copy is uploaded on the stream current at its first use; a run on another
    stream waits for the upload's event once, and marks the buffer as used on that stream for
    torch's allocator. Under capture the wait is not possible (the event is outside the graph)
    and is left out."""
    import types
    used_on = []
    buffer = types.SimpleNamespace(record_stream=used_on.append)
    uploaded = object()
    kept = padec._cuda.DevicePlan(buffer, uploaded, stream_handle=1)
    upload_stream, other, captured = FakeStream(1), FakeStream(2), FakeStream(3)
    assert kept.ready_on(upload_stream, lambda: False) is buffer
    assert upload_stream.waited == [] and used_on == []
    for _ in range(3):
        assert kept.ready_on(other, lambda: False) is buffer
    assert other.waited == [uploaded] and used_on == [other]
    assert kept.ready_on(captured, lambda: True) is buffer
    assert captured.waited == [] and used_on == [other, captured]


@pytest.mark.parametrize("window, q_len, tokens", [(0, 1, 0), (300, 2, 64), (1000, 4, 16)])
def test_partition_counts_are_the_plans(window, q_len, tokens):
    params = padec.Params(8, 2, 64, 16, window_left=window, q_len=q_len)
    lens = [0, 1, 255, 256, 257, 1500, 4000]
    plan = padec.build_plan(params, lens, num_workers=8, partition_tokens=tokens)
    counts = [padec.num_partitions(params, n, tokens) for n in lens]
    assert counts == np.diff(plan.partition_indptr).tolist()
    size = tokens or 256
    for n, count in zip(lens, counts):
        first = padec.first_partition(params, n, tokens)
        assert first + count == -(-n // size)  # the scheduled ones end at the last partition
        assert first == 0 or (first * size <= n - q_len - window < (first + 1) * size)


@pytest.mark.parametrize("args, text", [
    ((-1,), "kv_len = -1 is negative"),
    ((2**31,), "kv_len = 2147483648 does not fit int32"),
    ((10.0,), "kv_len = 10.0: need an integer"),
    ((10, 100), "partition_tokens = 100: need a power of two"),
])
def test_partition_count_errors(args, text):
    params = padec.Params(8, 2, 64, 16, window_left=100)
    for function in (padec.num_partitions, padec.first_partition):
        with pytest.raises(padec.Error) as caught:
            function(params, *args)
        assert caught.value.status == padec.Status.BAD_ARGUMENT and text in caught.value.message
    with pytest.raises(padec.Error, match="num_kv_heads = 3"):
        padec.num_partitions(padec.Params(8, 3, 64, 16), 10)


def test_pickled_plan_is_the_same_read_only_aligned_plan():
    """A plan pickled and loaded (sent to another process, cached on disk) is the same bytes,
    read-only and 16-byte aligned again, and runs the same."""
    import pickle

    from reference import make_case

    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16, q_len=2)
    case = make_case(np.random.default_rng(31), params, [300, 5, 70])
    plan = padec.build_plan(params, case.kv_lens, num_workers=6, partition_tokens=32)
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.data.tobytes() == plan.data.tobytes() and copy.layout == plan.layout
    assert not copy.data.flags.writeable and not copy.kv_lens.flags.writeable
    assert copy.data.ctypes.data % 16 == 0
    assert np.array_equal(copy.kv_lens, plan.kv_lens)
    assert (padec.run_cpu(params, copy, *case.inputs).tobytes() ==
            padec.run_cpu(params, plan, *case.inputs).tobytes())


def test_plan_arrays_are_checked_before_the_library_reads_them():
    """The library reads layout.plan_bytes of a plan with no size of its own: a Plan put
    together by hand or unpickled from cut bytes is refused, never read past its end."""
    import pickle

    plan = padec.build_plan(PARAMS, [300, 5, 70], num_workers=6, partition_tokens=32)
    size = plan.layout.plan_bytes

    def refused(status, text, **changes):
        arrays = dict(data=plan.data, kv_lens=plan.kv_lens, shard_starts=None, seq_lens=None)
        arrays.update(changes)
        with pytest.raises(padec.Error) as caught:
            padec.Plan(PARAMS, plan.layout, **arrays)
        assert caught.value.status == status, str(caught.value)
        assert text in caught.value.message, str(caught.value)

    refused(Status.PLAN_MISMATCH, f"data: 64 bytes, its layout's plan_bytes is {size}",
            data=plan.data[:64].copy())
    refused(Status.PLAN_MISMATCH, f"data: {size + 16} bytes",
            data=np.zeros(size + 16, np.uint8))
    refused(Status.BAD_ARGUMENT, "data: need a 1-D contiguous numpy uint8 array",
            data=plan.data.view(np.int32))
    unaligned = np.zeros(size + 16, np.uint8)
    shift = 1 if unaligned.ctypes.data % 16 == 0 else 0
    refused(Status.MISALIGNED_POINTER, "data: address", data=unaligned[shift:shift + size])
    refused(Status.BAD_ARGUMENT, "kv_lens: need a numpy int32 array of the layout's batch (3)",
            kv_lens=plan.kv_lens[:2].copy())
    refused(Status.BAD_ARGUMENT, "shard_starts, seq_lens: give both or neither",
            shard_starts=plan.kv_lens)
    with pytest.raises(padec.Error, match="layout: need a PlanLayout"):
        padec.Plan(PARAMS, plan.layout.to_c(), plan.data, plan.kv_lens)
    # A pickle whose plan bytes were cut is refused on load (loading calls the reducer's
    # function with its arguments).
    function, arguments = plan.__reduce__()
    for cut in (128, 256, size - 1):
        cut_arguments = (*arguments[:2], arguments[2][:cut], *arguments[3:])
        with pytest.raises(padec.Error, match=f"data: {cut} bytes"):
            function(*cut_arguments)
    assert pickle.loads(pickle.dumps(plan)).data.tobytes() == plan.data.tobytes()
    # The plan itself still passes.
    assert padec.Plan(PARAMS, plan.layout, plan.data, plan.kv_lens).data is plan.data
