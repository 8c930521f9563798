"""run_cuda on torch CUDA tensors: against the float64 reference, inside CUDA graph capture, on
torch's current stream, and bad inputs; run_cuda_grid, shards and merge_shards_cuda against
their CPU versions. Skipped without torch, a GPU, or a CUDA build."""

import dataclasses

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout, Status
from reference import assert_close, make_case, random_values, shard_bounds, shard_case

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)
if not padec.built_with_cuda():
    pytest.skip(f"{padec.library_path()} was built without CUDA", allow_module_level=True)

# The kernels keep P to 11 bits (fp16/fp8 caches, 16-bit outputs) or 16+ bits otherwise; a wiring
# bug (a wrong stride, page or scale) moves outputs by far more than these allowances.
ATOL = {DType.FP32: 2e-4, DType.BF16: 2e-3, DType.FP16: 2e-3}
NAN = float("nan")


def gpu(array: np.ndarray, dtype: DType = None):
    """A numpy storage array as a CUDA tensor of the padec dtype (bf16 and fp8 as torch's own)."""
    if dtype == DType.BF16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).cuda()
    tensor = torch.from_numpy(array).cuda()
    return tensor.view(torch.float8_e4m3fn) if dtype == DType.E4M3 else tensor


def host(tensor) -> np.ndarray:
    """A CUDA output as numpy storage (bf16 as its uint16 bits)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).cpu().numpy().view(np.uint16)
    return tensor.cpu().numpy()


def gpu_inputs(case) -> dict:
    p = case.params
    inputs = dict(q=gpu(case.q, p.q_dtype), k_pages=gpu(case.k_pages, p.kv_dtype),
                  v_pages=gpu(case.v_pages, p.kv_dtype), page_indptr=gpu(case.page_indptr),
                  page_indices=gpu(case.page_indices), kv_lens=gpu(case.kv_lens))
    if case.k_scales is not None:
        inputs.update(k_scales=gpu(case.k_scales), v_scales=gpu(case.v_scales))
    return inputs


def output(params, tokens):
    return torch.full((tokens, params.num_q_heads, params.head_dim), NAN, device="cuda",
                      dtype={DType.BF16: torch.bfloat16, DType.FP16: torch.float16,
                             DType.FP32: torch.float32}[params.o_dtype])


KV_CONFIGS = {
    "bf16": dict(kv_dtype=DType.BF16),
    "fp16": dict(kv_dtype=DType.FP16, q_dtype=DType.FP16),
    "fp8": dict(kv_dtype=DType.E4M3),
    "fp8-tensor": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR,
                       k_scale=0.625, v_scale=1.5),
    "fp8-tensor-device": dict(kv_dtype=DType.E4M3,
                              fp8_scale_mode=Fp8ScaleMode.PER_TENSOR_DEVICE),
    "fp8-token": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN),
}
LENS = [3000, 17, 600, 4, 1200]


def test_device_queries():
    info = padec.device_info(torch.cuda.current_device())
    assert info.sm_count > 0 and info.name
    # Hopper reports its memory clock and bus: over 1 TB/s, under 100.
    assert 10**12 < info.memory_bytes_per_second < 10**14
    params = padec.Params(32, 8, 128, 16)
    assert padec.recommended_workers(params, info.device) % params.num_kv_heads == 0


@pytest.mark.parametrize("splits", ["recommended", "many"])
@pytest.mark.parametrize("q_len, window", [(1, 0), (3, 100)])
@pytest.mark.parametrize("layout", [Layout.NHD, Layout.HND])
@pytest.mark.parametrize("kv", KV_CONFIGS)
def test_matches_reference(kv, layout, q_len, window, splits):
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128,
                          page_size=16 if layout == Layout.NHD else 64, kv_layout=layout,
                          o_dtype=DType.FP32 if q_len == 1 else DType.BF16, q_len=q_len,
                          window_left=window, **KV_CONFIGS[kv])
    case = make_case(np.random.default_rng([q_len, layout, len(kv)]), params, LENS)
    if splits == "recommended":
        options = dict(num_workers=padec.recommended_workers(params, torch.cuda.current_device()))
    else:
        options = dict(num_workers=132, partition_tokens=16)
    plan = padec.build_plan(params, case.kv_lens, **options)
    o, lse = padec.run_cuda(params, plan, **gpu_inputs(case), return_lse=True)
    assert o.device.type == "cuda" and lse.dtype == torch.float32
    assert_close(host(o), host(lse), case, atol=ATOL[params.o_dtype])


@pytest.mark.parametrize("head_dim", [64, 256])
def test_head_dims_and_strided_q(head_dim):
    """q as a slice of a fused qkv tensor, as inference engines hold it."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=head_dim, page_size=32,
                          kv_dtype=DType.FP16, o_dtype=DType.FP16, q_len=2)
    case = make_case(np.random.default_rng(head_dim), params, [700, 2, 65])
    inputs = gpu_inputs(case)
    qkv = torch.randn(case.q.shape[0], 12, head_dim, device="cuda").to(torch.bfloat16)
    qkv[:, :8] = inputs.pop("q")
    plan = padec.build_plan(params, case.kv_lens, num_workers=24, partition_tokens=64)
    o = padec.run_cuda(params, plan, q=qkv[:, :8], **inputs)
    assert_close(host(o), None, case, atol=ATOL[params.o_dtype])


@pytest.mark.parametrize("layout", [Layout.NHD, Layout.HND])
@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_kv_interleaved_in_one_cache(kv, layout):
    """A cache that keeps each block's K and V side by side, [num_pages, 2, ...], as the views
    cache[:, 0] and cache[:, 1], on the plan and grid paths."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16,
                          kv_layout=layout, o_dtype=DType.FP32, q_len=2, window_left=300,
                          **KV_CONFIGS[kv])
    case = make_case(np.random.default_rng([7, layout]), params, [1000, 3, 1499])
    inputs = gpu_inputs(case)
    cache = gpu(np.stack([case.k_pages, case.v_pages], axis=1), params.kv_dtype)
    inputs.update(k_pages=cache[:, 0], v_pages=cache[:, 1])
    assert inputs["k_pages"].stride(0) == 2 * inputs["k_pages"][0].numel()
    plan = padec.build_plan(params, case.kv_lens, num_workers=padec.recommended_workers(params))
    o, lse = padec.run_cuda(params, plan, **inputs, o=output(params, case.q.shape[0]),
                            return_lse=True)
    assert_close(host(o), host(lse), case, atol=ATOL[DType.FP32])
    layout_grid = padec.grid_layout(params, 3, num_splits=4)
    o, lse = padec.run_cuda_grid(params, layout_grid, **inputs, o=output(params, case.q.shape[0]),
                                 return_lse=True)
    assert_close(host(o), host(lse), case, atol=ATOL[DType.FP32])


def test_matches_run_cpu_on_the_same_plan():
    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16,
                          kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN,
                          o_dtype=DType.FP32, q_len=2, window_left=500)
    case = make_case(np.random.default_rng(5), params, LENS)
    plan = padec.build_plan(params, case.kv_lens, num_workers=264)
    gpu_o, gpu_lse = padec.run_cuda(params, plan, **gpu_inputs(case), return_lse=True)
    cpu_o, cpu_lse = padec.run_cpu(params, plan, *case.inputs, **case.scales, return_lse=True)
    np.testing.assert_allclose(host(gpu_o), cpu_o, atol=ATOL[DType.FP32])
    np.testing.assert_allclose(host(gpu_lse), cpu_lse, atol=1e-4)


def test_runs_on_the_current_stream():
    params = padec.Params(num_q_heads=8, num_kv_heads=8, head_dim=128, page_size=16)
    case = make_case(np.random.default_rng(6), params, [2000, 30])
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=64)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        o = padec.run_cuda(params, plan, **inputs)
        o_host = host(o)
    assert_close(o_host, None, case, atol=ATOL[params.o_dtype])


def test_a_run_on_another_stream_waits_for_the_upload():
    """The plan is uploaded on a side stream kept busy first; the run on the default stream must
    not read the plan buffer before the upload has landed."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16)
    case = make_case(np.random.default_rng(16), params, [2000, 30, 700])
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=16)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # some 0.1 s of the side stream before the upload
        plan.to_device()
    o = padec.run_cuda(params, plan, **inputs)
    assert_close(host(o), None, case, atol=ATOL[params.o_dtype])


def capture_step(step):
    """Captures step() in a CUDA graph after a warm-up on a side stream (torch's recipe)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def capture(params, plan, inputs, o, lse, **options):
    """Captures run_cuda in a CUDA graph."""
    return capture_step(lambda: padec.run_cuda(params, plan, **inputs, o=o, lse=lse, **options))


def replay_lengths(graph, full, inputs, o, lengths):
    """Replays graph for each list of lengths written into kv_lens, its output poisoned first,
    and checks it against the reference; yields the lengths after each check."""
    for lens in lengths:
        lens = np.array(lens, np.int32)
        inputs["kv_lens"].copy_(torch.from_numpy(lens))
        o.fill_(NAN)
        graph.replay()
        assert_close(host(o), None, dataclasses.replace(full, kv_lens=lens),
                     atol=ATOL[full.params.o_dtype])
        yield lens


def test_plan_with_a_device_copy_pickles_without_it():
    """The device copy (a CUDA tensor and its upload event) stays behind; the loaded plan
    uploads its own and runs the same."""
    import pickle

    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16)
    case = make_case(np.random.default_rng(32), params, LENS)
    plan = padec.build_plan(params, case.kv_lens, num_workers=16, partition_tokens=64)
    plan.to_device()
    copy = pickle.loads(pickle.dumps(plan))
    inputs = gpu_inputs(case)
    first = padec.run_cuda(params, plan, **inputs)
    second = padec.run_cuda(params, copy, **inputs)
    assert torch.equal(first, second)


def test_graph_capture_replays_with_new_q_and_device_scales():
    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16,
                          kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR_DEVICE,
                          o_dtype=DType.FP32, q_len=2)
    rng = np.random.default_rng(7)
    case = make_case(rng, params, LENS)
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=132, partition_tokens=64)
    plan.to_device()
    o, lse = output(params, case.q.shape[0]), torch.empty(case.q.shape[:2], device="cuda")
    graph = capture(params, plan, inputs, o, lse)
    for k_scale, v_scale in [(0.5, 2.0), (1.25, 0.75), (3.0, 0.125)]:
        case = dataclasses.replace(case, q=random_values(rng, case.q.shape, params.q_dtype),
                                   k_scales=np.array([k_scale], np.float32),
                                   v_scales=np.array([v_scale], np.float32))
        inputs["q"].copy_(gpu(case.q, params.q_dtype))
        inputs["k_scales"].fill_(k_scale)
        inputs["v_scales"].fill_(v_scale)
        o.fill_(NAN)
        graph.replay()
        assert_close(host(o), host(lse), case, atol=ATOL[params.o_dtype])


def test_graph_replays_a_new_plan_uploaded_into_the_captured_buffer():
    """Decode steps: lengths grow, the schedule is rebuilt on the host and uploaded into the
    plan buffer the graph was captured with (same params, batch and options)."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          o_dtype=DType.BF16)
    rng = np.random.default_rng(8)
    full = make_case(rng, params, [4000, 400, 1600])
    inputs = gpu_inputs(full)
    options = dict(num_workers=padec.recommended_workers(params, torch.cuda.current_device()))
    lens = np.array([1000, 3, 1499], np.int32)
    plan = padec.build_plan(params, lens, **options)
    device_plan = torch.empty(plan.layout.plan_bytes, dtype=torch.uint8, device="cuda")
    assert plan.to_device(out=device_plan) is device_plan
    own_copy = plan.to_device()
    inputs["kv_lens"].copy_(torch.from_numpy(lens))
    o = output(params, len(lens))
    graph = capture(params, plan, inputs, o, None, device_plan=device_plan)
    for step in range(3):
        lens = lens + np.array([700, 100, 0]) * step + 1
        new_plan = padec.build_plan(params, lens, **options)
        assert new_plan.to_device(out=device_plan) is device_plan
        inputs["kv_lens"].copy_(torch.from_numpy(lens))
        o.fill_(NAN)
        graph.replay()
        assert_close(host(o), None, dataclasses.replace(full, kv_lens=lens),
                     atol=ATOL[params.o_dtype])
    # The first plan's own copy still holds the first plan.
    assert np.array_equal(own_copy.cpu().numpy(), plan.data)


def test_device_plan_argument_is_checked():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(12), params, [100, 50])
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=8)
    size = plan.layout.plan_bytes
    for bad, status, text in (
            (torch.empty(size - 16, dtype=torch.uint8, device="cuda"), "WORKSPACE_TOO_SMALL",
             "device_plan"),
            (torch.empty(size, dtype=torch.uint8), "BAD_ARGUMENT", "device_plan: is on cpu"),
            (torch.empty(size // 4, dtype=torch.int32, device="cuda"), None, "device_plan"),
            (torch.empty(size + 16, dtype=torch.uint8, device="cuda")[1:], "MISALIGNED_POINTER",
             "device_plan")):
        o = output(params, 2)
        with pytest.raises(padec.Error, match=text) as raised:
            padec.run_cuda(params, plan, o=o, device_plan=bad, **inputs)
        if status is not None:
            assert raised.value.status.name == status
        assert torch.isnan(o).all(), "nothing is written on error"


@pytest.mark.parametrize("q_len, window", [(1, 0), (2, 300)])
def test_plan_built_on_the_device_is_the_host_plan(q_len, window):
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          q_len=q_len, window_left=window, o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(30 + q_len), params, LENS)
    inputs = gpu_inputs(case)
    device_plan = padec.build_plan_cuda(params, inputs["kv_lens"], num_workers=48)
    host_plan = padec.build_plan(params, case.kv_lens, num_workers=48)
    size = host_plan.layout.plan_bytes
    assert device_plan.layout == host_plan.layout
    assert np.array_equal(device_plan.buffer[:size].cpu().numpy(), host_plan.data)
    from_device, lse_device = padec.run_cuda(params, device_plan, **inputs, return_lse=True)
    from_host, lse_host = padec.run_cuda(params, host_plan, **inputs, return_lse=True)
    assert torch.equal(from_device, from_host) and torch.equal(lse_device, lse_host)
    assert_close(host(from_device), host(lse_device), case, atol=ATOL[params.o_dtype])


def test_graph_plans_and_decodes_new_lengths_on_the_device():
    """The decode step as one graph from Python: the device plan build and the run captured
    together, replayed with new lengths (padding sequences of length 0 too) and nothing built on
    the host."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          kv_dtype=DType.E4M3, o_dtype=DType.BF16)
    full = make_case(np.random.default_rng(31), params, [4000, 400, 1600, 900])
    inputs = gpu_inputs(full)
    plan = padec.build_plan_cuda(params, inputs["kv_lens"])
    counters = torch.zeros(len(full.kv_lens) * params.num_kv_heads, dtype=torch.int32,
                           device="cuda")
    workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device="cuda")
    o = output(params, len(full.kv_lens))

    def step():
        plan.rebuild()
        padec.run_cuda(params, plan, **inputs, o=o, workspace=workspace, merge_counters=counters)

    graph = capture_step(step)
    for lens in replay_lengths(graph, full, inputs, o,
                               ([1000, 3, 1499, 0], [4000, 400, 1600, 900], [2, 0, 17, 640])):
        assert not counters.any(), "the merge counters are left zero"
        expected = padec.build_plan(params, lens, num_workers=plan.num_workers)
        got = plan.buffer[:plan.layout.plan_bytes].cpu().numpy()
        assert np.array_equal(got, expected.data)


def test_build_plan_cuda_arguments_are_checked():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    lens = torch.tensor([100, 50], dtype=torch.int32, device="cuda")
    size = padec.plan_layout(params, 2, num_workers=8).plan_bytes
    for call, status, text in (
            (lambda: padec.build_plan_cuda(params, lens.long(), num_workers=8),
             Status.UNSUPPORTED_DTYPE, "kv_lens: dtype int64, need int32"),
            (lambda: padec.build_plan_cuda(params, lens.view(1, 2), num_workers=8),
             Status.BAD_ARGUMENT, r"kv_lens: shape \[1, 2\], need \[batch\]"),
            (lambda: padec.build_plan_cuda(params, lens.cpu(), num_workers=8),
             Status.BAD_ARGUMENT, "kv_lens: is on cpu"),
            (lambda: padec.build_plan_cuda(params, torch.zeros(4, dtype=torch.int32,
                                                                device="cuda")[::2],
                                           num_workers=8),
             Status.BAD_ARGUMENT, "kv_lens: strides"),
            (lambda: padec.build_plan_cuda(
                params, lens, num_workers=8,
                out=torch.empty(size - 16, dtype=torch.uint8, device="cuda")),
             Status.WORKSPACE_TOO_SMALL, "out: "),
            (lambda: padec.build_plan_cuda(params, lens, num_workers=8,
                                           out=torch.empty(size, dtype=torch.uint8)),
             Status.BAD_ARGUMENT, "out: is on cpu"),
            (lambda: padec.build_plan_cuda(params, lens, num_workers=0),
             Status.BAD_ARGUMENT, "num_workers = 0")):
        with pytest.raises(padec.Error, match=text) as raised:
            call()
        assert raised.value.status == status
    # A CudaPlan runs from its own buffer: a device_plan beside it is refused, nothing written.
    case = make_case(np.random.default_rng(32), params, [100, 50])
    inputs = gpu_inputs(case)
    plan = padec.build_plan_cuda(params, inputs["kv_lens"], num_workers=8)
    o = output(params, 2)
    with pytest.raises(padec.Error, match="device_plan: given with a CudaPlan"):
        padec.run_cuda(params, plan, **inputs, o=o, device_plan=plan.buffer)
    assert torch.isnan(o).all()
    # The run must read the lengths its schedule was built from: the same tensor.
    copied = dict(inputs, kv_lens=inputs["kv_lens"].clone())
    with pytest.raises(padec.Error, match="kv_lens: not the tensor the CudaPlan plans from") \
            as raised:
        padec.run_cuda(params, plan, **copied, o=o)
    assert raised.value.status == Status.PLAN_MISMATCH
    assert torch.isnan(o).all()
    # rebuild() checks the tensors it was given again: a CudaPlan for another batch.
    plan.kv_lens = torch.zeros(3, dtype=torch.int32, device="cuda")
    with pytest.raises(padec.Error, match="kv_lens: 3 sequences, the plan's layout is for 2"):
        plan.rebuild()
    # Another model's params: the plan does not fit them.
    other = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16)
    with pytest.raises(padec.Error) as raised:
        padec.run_cuda(other, plan, **inputs)
    assert raised.value.status == Status.PLAN_MISMATCH


# The refused run leaves the capture empty, which torch reports as a warning.
@pytest.mark.filterwarnings("ignore:The CUDA Graph is empty")
def test_upload_refused_during_capture():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(9), params, [100, 50])
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=8)
    padec.run_cuda(params, plan, **inputs)
    unuploaded = padec.build_plan(params, case.kv_lens, num_workers=8)
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(padec.Error, match="before capturing"), torch.cuda.graph(graph):
        padec.run_cuda(params, unuploaded, **inputs)


# The refused call leaves the capture empty, which torch reports as a warning.
@pytest.mark.filterwarnings("ignore:The CUDA Graph is empty")
def test_validate_kv_refused_during_capture():
    """validate_kv synchronises: under capture it is refused before its first read-back, and
    the capture stays valid (it ends without an error)."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(18), params, [100, 50])
    arrays = (gpu(case.page_indptr), gpu(case.page_indices), gpu(case.kv_lens))
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(padec.Error, match="being captured"), torch.cuda.graph(graph):
        padec.validate_kv(params, *arrays, num_pages=case.k_pages.shape[0])
    padec.validate_kv(params, *arrays, num_pages=case.k_pages.shape[0])


def test_workspace_16_byte_aligned():
    """The library asks a workspace 16 bytes of alignment, and so does the binding: a workspace
    16 bytes into an allocation runs both paths as a fresh one does."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(14), params, [300, 50])
    inputs = gpu_inputs(case)
    device = inputs["q"].device
    plan = padec.build_plan(params, case.kv_lens, num_workers=8)
    layout = padec.grid_layout(params, 2, num_splits=3)
    for run, schedule in ((padec.run_cuda, plan), (padec.run_cuda_grid, layout)):
        expected = run(params, schedule, **inputs)
        space = torch.empty(schedule.workspace_bytes + 512, dtype=torch.uint8, device=device)
        offset = 16 if space.data_ptr() % 256 == 0 else 256 - space.data_ptr() % 256 + 16
        o = run(params, schedule, **inputs, workspace=space[offset:])
        assert torch.equal(o, expected)


def expect_error(status, text, *args, **kwargs):
    with pytest.raises(padec.Error) as caught:
        padec.run_cuda(*args, **kwargs)
    assert caught.value.status == status, str(caught.value)
    assert text in caught.value.message, str(caught.value)
    # Messages name the caller's arguments, not the C struct's fields.
    assert "tensors." not in caught.value.message, str(caught.value)


def test_bad_inputs():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(10), params, [100, 50])
    inputs = gpu_inputs(case)
    plan = padec.build_plan(params, case.kv_lens, num_workers=8)
    device = inputs["q"].device

    expect_error(Status.BAD_ARGUMENT, f"k_pages: is on cpu, need {device}", params, plan,
                 **dict(inputs, k_pages=inputs["k_pages"].cpu()))
    expect_error(Status.UNSUPPORTED_DTYPE, "q: dtype float16", params, plan,
                 **dict(inputs, q=inputs["q"].half()))
    pool = inputs["v_pages"]
    shifted = torch.empty(pool.numel() + 8, dtype=pool.dtype, device=device)[1:1 + pool.numel()]
    expect_error(Status.MISALIGNED_POINTER, "v_pages: address", params, plan,
                 **dict(inputs, v_pages=shifted.view(pool.shape)))
    expect_error(Status.BAD_ARGUMENT, "kv_lens: need a numpy array or a torch tensor", params,
                 plan, **dict(inputs, kv_lens=[100, 50]))
    workspace = torch.empty(plan.workspace_bytes + 512, dtype=torch.uint8, device=device)[8:]
    expect_error(Status.MISALIGNED_POINTER, "workspace: address", params, plan, **inputs,
                 workspace=workspace)
    fp8_pool = torch.zeros(pool.shape, dtype=torch.uint8, device=device)
    per_token = dataclasses.replace(params, kv_dtype=DType.E4M3,
                                    fp8_scale_mode=Fp8ScaleMode.PER_TOKEN)
    expect_error(Status.BAD_SCALES, "k_scales: fp8_scale_mode PER_TOKEN needs it", per_token,
                 plan, **dict(inputs, k_pages=fp8_pool, v_pages=fp8_pool))


# The grid path, shards and their merge, choose with device lengths.


@pytest.mark.parametrize("splits", [1, 4, "recommended"])
@pytest.mark.parametrize("q_len, window", [(1, 0), (3, 100)])
@pytest.mark.parametrize("kv", ["bf16", "fp8-token", "fp8-tensor-device"])
def test_grid_matches_run_cpu_grid(kv, q_len, window, splits):
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          o_dtype=DType.FP32, q_len=q_len, window_left=window, **KV_CONFIGS[kv])
    case = make_case(np.random.default_rng([q_len, window, len(kv)]), params, LENS)
    if splits == "recommended":
        splits = padec.grid_recommended_splits(
            params, len(LENS), padec.recommended_workers(params, torch.cuda.current_device()))
    layout = padec.grid_layout(params, len(LENS), num_splits=splits, partition_tokens=64)
    o = output(params, case.q.shape[0])
    lse = torch.full(case.q.shape[:2], NAN, device="cuda")
    result = padec.run_cuda_grid(params, layout, **gpu_inputs(case), o=o, lse=lse)
    assert result[0] is o and result[1] is lse
    cpu_o, cpu_lse = padec.run_cpu_grid(params, layout, *case.inputs, **case.scales,
                                        return_lse=True)
    np.testing.assert_allclose(host(o), cpu_o, atol=ATOL[DType.FP32])
    np.testing.assert_allclose(host(lse), cpu_lse, atol=1e-4)
    assert_close(host(o), host(lse), case, atol=ATOL[params.o_dtype])


def test_one_counter_array_serves_plan_and_grid_runs():
    """merge_counters, zeroed once, through plan runs with splits and a grid run with splits:
    each run is right and leaves the array zero for the next."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(13), params, LENS)
    inputs = gpu_inputs(case)
    counters = torch.zeros(len(LENS) * params.num_kv_heads, dtype=torch.int32, device="cuda")
    for workers in (132, 1000, 7):
        plan = padec.build_plan(params, case.kv_lens, num_workers=workers, partition_tokens=16)
        o = padec.run_cuda(params, plan, **inputs, merge_counters=counters)
        assert_close(host(o), None, case, atol=ATOL[params.o_dtype])
        assert int(counters.abs().sum()) == 0
    layout = padec.grid_layout(params, len(LENS), num_splits=5, partition_tokens=64)
    o = padec.run_cuda_grid(params, layout, **inputs, merge_counters=counters)
    assert_close(host(o), None, case, atol=ATOL[params.o_dtype])
    assert int(counters.abs().sum()) == 0
    with pytest.raises(padec.Error, match="merge_counters"):
        padec.run_cuda(params, plan, **inputs, merge_counters=counters[:-1])


def test_grid_graph_replays_new_lengths():
    """The grid path reads the lengths on the device only: a captured graph replays new lengths
    with nothing rebuilt on the host."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16,
                          o_dtype=DType.BF16, q_len=2)
    full = make_case(np.random.default_rng(12), params, [4000, 400, 1600])
    inputs = gpu_inputs(full)
    layout = padec.grid_layout(params, 3, num_splits=8)
    workspace = torch.empty(layout.workspace_bytes, dtype=torch.uint8, device="cuda")
    o = output(params, full.q.shape[0])
    graph = capture_step(
        lambda: padec.run_cuda_grid(params, layout, **inputs, o=o, workspace=workspace))
    replayed = list(replay_lengths(graph, full, inputs, o,
                                   ([1000, 3, 1499], [4000, 400, 1600], [2, 0, 17])))
    assert len(replayed) == 3


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("num_shards", [1, 3])
def test_shards_and_merge_match_the_cpu(num_shards, grid):
    """Each shard run on the GPU into its slot of the stacked partials, then merged on the GPU:
    against the same steps on the CPU, and the merged output against the reference."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16, q_len=2,
                          window_left=700, kv_dtype=DType.E4M3,
                          fp8_scale_mode=Fp8ScaleMode.PER_TOKEN, o_dtype=DType.BF16)
    shard_params = dataclasses.replace(params, o_dtype=DType.FP32)
    rng = np.random.default_rng([num_shards, int(grid)])
    case = make_case(rng, params, LENS)
    bounds = shard_bounds(rng, case.kv_lens, num_shards)
    rows = case.q.shape[0]
    gpu_o = torch.full((num_shards, rows, 16, 128), NAN, device="cuda")
    gpu_lse = torch.full((num_shards, rows, 16), NAN, device="cuda")
    cpu_o = np.full((num_shards, rows, 16, 128), np.nan, np.float32)
    cpu_lse = np.full((num_shards, rows, 16), np.nan, np.float32)
    seq_lens = gpu(case.kv_lens)
    for r in range(num_shards):
        shard = shard_case(rng, case, bounds[r], bounds[r + 1])
        host_shards = dict(shard_starts=bounds[r], seq_lens=case.kv_lens)
        device_shards = dict(shard_starts=gpu(bounds[r].copy()), seq_lens=seq_lens)
        if grid:
            layout = padec.grid_layout(params, len(LENS), num_splits=4, partition_tokens=64)
            padec.run_cuda_grid(shard_params, layout, **gpu_inputs(shard), o=gpu_o[r],
                                lse=gpu_lse[r], **device_shards)
            padec.run_cpu_grid(shard_params, layout, *shard.inputs, **shard.scales, o=cpu_o[r],
                               lse=cpu_lse[r], **host_shards)
        else:
            plan = padec.build_plan(params, shard.kv_lens, num_workers=132, **host_shards)
            padec.run_cuda(shard_params, plan, **gpu_inputs(shard), o=gpu_o[r], lse=gpu_lse[r],
                           **device_shards)
            padec.run_cpu(shard_params, plan, *shard.inputs, **shard.scales, o=cpu_o[r],
                          lse=cpu_lse[r], **host_shards)
    np.testing.assert_allclose(host(gpu_o), cpu_o, atol=ATOL[DType.FP32])
    np.testing.assert_allclose(host(gpu_lse), cpu_lse, atol=1e-4)
    o, lse = padec.merge_shards_cuda(params, gpu_o, gpu_lse, return_lse=True)
    assert o.device.type == "cuda" and o.dtype == torch.bfloat16
    expected_o, expected_lse = padec.merge_shards_cpu(params, host(gpu_o), host(gpu_lse),
                                                      return_lse=True)
    assert np.array_equal(np.isneginf(host(lse)), np.isneginf(expected_lse))
    finite = np.isfinite(expected_lse)
    np.testing.assert_allclose(host(lse)[finite], expected_lse[finite], atol=1e-5)
    assert_close(host(o), host(lse), case, atol=ATOL[params.o_dtype])
    assert_close(expected_o, expected_lse, case, atol=ATOL[params.o_dtype])


def test_merge_on_the_current_stream_is_deterministic():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16,
                          o_dtype=DType.FP32)
    shard_o = torch.randn(4, 33, 8, 128, device="cuda")
    shard_lse = torch.randn(4, 33, 8, device="cuda")
    shard_lse[2, 5] = float("-inf")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        first = padec.merge_shards_cuda(params, shard_o, shard_lse)
        second = padec.merge_shards_cuda(params, shard_o, shard_lse)
        same = torch.equal(first, second)
    assert same
    expected = padec.merge_shards_cpu(params, host(shard_o), host(shard_lse))
    np.testing.assert_allclose(host(first), expected, atol=1e-5)


def test_choose_with_lengths_on_the_device():
    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16)
    workers = padec.recommended_workers(params, 0)
    lens = torch.tensor([32768] * 2 + [256] * 62, dtype=torch.int32)
    on_device = padec.choose(params, lens.cuda(), num_workers=workers)
    assert on_device == padec.choose(params, batch=64, num_workers=workers)
    assert padec.choose(params, lens).num_workers == workers
    # Without the counts, kv_lens' device is asked for both: 4 x 8 pairs get one CTA an SM, on
    # the grid path where sm_count // 32 blocks a pair fill the SMs (lengths on the device: the
    # splits are not capped by them), else as a plan of one worker an SM.
    sm_count = padec.device_info(0).sm_count
    few = torch.tensor([4096] * 4, dtype=torch.int32, device="cuda:0")
    picked = padec.choose(params, few)
    if 32 * (sm_count // 32) * 16 >= sm_count * 15:
        assert (picked.path, picked.grid_splits) == ("grid", sm_count // 32)
    else:
        assert (picked.path, picked.num_workers) == ("persistent", sm_count - sm_count % 8)
    assert padec.choose(params, few) == padec.choose(params, batch=4, num_workers=workers,
                                                     sm_count=sm_count)


def test_grid_and_merge_bad_inputs():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(13), params, [100, 50])
    inputs = gpu_inputs(case)
    layout = padec.grid_layout(params, 2, num_splits=2)
    device = inputs["q"].device
    workspace = torch.empty(layout.workspace_bytes + 512, dtype=torch.uint8, device=device)[8:]
    with pytest.raises(padec.Error, match="workspace: address"):
        padec.run_cuda_grid(params, layout, **inputs, workspace=workspace)
    with pytest.raises(padec.Error, match="seq_lens: None, but shard_starts is given"):
        padec.run_cuda_grid(params, layout, **inputs, shard_starts=inputs["kv_lens"])
    shard_o = torch.zeros(2, 2, 8, 64, device=device)
    shard_lse = torch.zeros(2, 2, 8, device=device)
    with pytest.raises(padec.Error, match=f"shard_lse: is on cpu, need {device}"):
        padec.merge_shards_cuda(params, shard_o, shard_lse.cpu())
    with pytest.raises(padec.Error, match=f"out: is on cpu, need {device}"):
        padec.merge_shards_cuda(params, shard_o, shard_lse, out=torch.zeros(2, 8, 64))
    with pytest.raises(padec.Error, match="merge_shards_cuda needs CUDA tensors"):
        padec.merge_shards_cuda(params, shard_o.cpu(), shard_lse.cpu())


def test_validate_kv_on_the_device_gives_the_host_message():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(17), params, [100, 50, 300])
    pages = case.k_pages.shape[0]
    indices = case.page_indices.copy()
    padec.validate_kv(params, gpu(case.page_indptr), gpu(indices), gpu(case.kv_lens),
                      num_pages=pages)
    indices[case.page_indptr[2]] = pages + 4
    with pytest.raises(padec.Error) as on_host:
        padec.validate_kv(params, case.page_indptr, indices, case.kv_lens, num_pages=pages)
    with pytest.raises(padec.Error) as on_device:
        padec.validate_kv(params, gpu(case.page_indptr), gpu(indices), gpu(case.kv_lens),
                          num_pages=pages)
    assert on_device.value.status == on_host.value.status == Status.PAGE_INDEX_OUT_OF_RANGE
    assert on_device.value.message == on_host.value.message
    with pytest.raises(padec.Error, match="page_indices: is on cpu, need cuda:"):
        padec.validate_kv(params, gpu(case.page_indptr), indices, gpu(case.kv_lens),
                          num_pages=pages)
    # An empty view of the device's page ids: C would read 0 as "length not given" and read
    # past it; the binding refuses it as it does on the host.
    with pytest.raises(padec.Error, match=r"page_indices: 0 page ids, but page_indptr\[3\]"):
        padec.validate_kv(params, gpu(case.page_indptr), gpu(indices)[:0], gpu(case.kv_lens),
                          num_pages=pages)
