"""run_cpu against the float64 reference, on numpy arrays (and CPU torch tensors if present)."""

import dataclasses

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout
from reference import STORAGE, assert_close, decode, make_case, random_values

KV_CONFIGS = {
    "bf16": dict(kv_dtype=DType.BF16),
    "fp16": dict(kv_dtype=DType.FP16),
    "fp8": dict(kv_dtype=DType.E4M3),
    "fp8-tensor": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR,
                       k_scale=0.625, v_scale=1.5),
    "fp8-tensor-device": dict(kv_dtype=DType.E4M3,
                              fp8_scale_mode=Fp8ScaleMode.PER_TENSOR_DEVICE),
    "fp8-token": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN),
}
# Sequences of very different lengths, one shorter than a partition, one of only the new tokens.
KV_LENS = [300, 4, 77, 513]


def run(case, *, num_workers=16, partition_tokens=32, **kwargs):
    plan = padec.build_plan(case.params, case.kv_lens, num_workers=num_workers,
                            partition_tokens=partition_tokens)
    return padec.run_cpu(case.params, plan, *case.inputs, **case.scales, **kwargs)


@pytest.mark.parametrize("window", [0, 45])
@pytest.mark.parametrize("q_len", [1, 2, 3, 4])
@pytest.mark.parametrize("layout", [Layout.NHD, Layout.HND])
@pytest.mark.parametrize("kv", KV_CONFIGS)
def test_matches_reference(kv, layout, q_len, window):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64,
                          page_size=(1, 8, 16, 64)[q_len - 1], kv_layout=layout,
                          q_dtype=DType.BF16 if q_len % 2 else DType.FP16, o_dtype=DType.FP32,
                          q_len=q_len, window_left=window, **KV_CONFIGS[kv])
    case = make_case(np.random.default_rng([q_len, window, list(KV_CONFIGS).index(kv), layout]),
                     params, KV_LENS)
    o, lse = run(case, return_lse=True)
    assert_close(o, lse, case)


@pytest.mark.parametrize("o_dtype", [DType.BF16, DType.FP16, DType.FP32])
@pytest.mark.parametrize("q_dtype", [DType.BF16, DType.FP16])
def test_output_dtypes(q_dtype, o_dtype):
    params = padec.Params(num_q_heads=4, num_kv_heads=4, head_dim=128, page_size=16,
                          q_dtype=q_dtype, o_dtype=o_dtype, q_len=2)
    case = make_case(np.random.default_rng(7), params, [90, 600, 33])
    o, lse = run(case, return_lse=True)
    assert o.dtype == STORAGE[o_dtype]
    assert_close(o, lse, case)


@pytest.mark.parametrize("group, q_len", [(1, 4), (2, 3), (8, 2), (16, 4)])
def test_gqa(group, q_len):
    params = padec.Params(num_q_heads=2 * group, num_kv_heads=2, head_dim=128, page_size=32,
                          o_dtype=DType.FP32, q_len=q_len, window_left=100)
    case = make_case(np.random.default_rng(group), params, [700, 150])
    assert_close(*run(case, return_lse=True, num_workers=6), case)


@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_head_dims(head_dim):
    params = padec.Params(num_q_heads=4, num_kv_heads=1, head_dim=head_dim, page_size=16,
                          kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN,
                          o_dtype=DType.FP32, softmax_scale=0.05)
    case = make_case(np.random.default_rng(head_dim), params, [260, 1, 64])
    assert_close(*run(case, return_lse=True), case)


def test_strided_q_and_o():
    """q as a slice of a fused qkv buffer, o with heads outermost: strides go to C as they are."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(3), params, [100, 250, 17])
    tokens = case.q.shape[0]
    qkv = random_values(np.random.default_rng(4), (tokens, 12, 64), DType.BF16)
    qkv[:, :8] = case.q
    o_heads_first = np.full((8, tokens, 64), np.nan, dtype=np.float32)
    o = o_heads_first.transpose(1, 0, 2)
    plan = padec.build_plan(params, case.kv_lens, num_workers=8, partition_tokens=64)
    result = padec.run_cpu(params, plan, qkv[:, :8], *case.inputs[1:], o=o)
    assert result is o
    assert_close(o, None, case)


@pytest.mark.parametrize("layout", [Layout.NHD, Layout.HND])
@pytest.mark.parametrize("kv", ["bf16", "fp8-token"])
def test_kv_interleaved_in_one_cache(kv, layout):
    """A cache that keeps each block's K and V side by side, [num_pages, 2, ...], taken as the
    views cache[:, 0] and cache[:, 1] (a page stride of two pages), on both paths; the
    contiguous copies give the same bits."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          kv_layout=layout, o_dtype=DType.FP32, q_len=2, window_left=70,
                          **KV_CONFIGS[kv])
    case = make_case(np.random.default_rng(list(KV_CONFIGS).index(kv)), params, KV_LENS)
    cache = np.stack([case.k_pages, case.v_pages], axis=1)
    interleaved = dataclasses.replace(case, k_pages=cache[:, 0], v_pages=cache[:, 1])
    assert interleaved.k_pages.strides[0] == 2 * case.k_pages.strides[0]
    o, lse = run(interleaved, return_lse=True)
    assert_close(o, lse, case)
    o_contiguous, lse_contiguous = run(case, return_lse=True)
    assert np.array_equal(o, o_contiguous) and np.array_equal(lse, lse_contiguous)
    layout_grid = padec.grid_layout(params, len(KV_LENS), num_splits=3, partition_tokens=32)
    o_grid, lse_grid = padec.run_cpu_grid(params, layout_grid, *interleaved.inputs,
                                          **case.scales, return_lse=True)
    assert_close(o_grid, lse_grid, case)


def test_kv_pages_padded():
    """Pages 16 bytes apart beyond their size, the gaps NaN: nothing between pages is read."""
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=8,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(12), params, [40, 3, 129])
    pad = 8  # bf16 elements: 16 bytes
    pools = []
    for pool in (case.k_pages, case.v_pages):
        flat = np.full((pool.shape[0], pool[0].size + pad), 0xFFFF, np.uint16)
        flat[:, :pool[0].size] = pool.reshape(pool.shape[0], -1)
        pools.append(flat[:, :pool[0].size].reshape(pool.shape))
    padded = dataclasses.replace(case, k_pages=pools[0], v_pages=pools[1])
    assert_close(*run(padded, return_lse=True), case)


def test_block_table():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=8,
                          kv_layout=Layout.HND, o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(5), params, [40, 3, 129], block_table=True)
    assert case.page_indices.ndim == 2
    assert_close(*run(case, return_lse=True), case)


def test_outputs_given_and_returned():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(6), params, [50, 70])
    o = np.zeros(case.q.shape, dtype=np.uint16)
    lse = np.zeros(case.q.shape[:2], dtype=np.float32)
    result = run(case, o=o, lse=lse)
    assert result[0] is o and result[1] is lse
    assert_close(o, lse, case)
    assert isinstance(run(case), np.ndarray)


def test_empty_sequence_gives_zero_and_minus_infinity():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(8), params, [0, 40, 1])
    o, lse = run(case, return_lse=True)
    assert np.all(o[:2] == 0) and np.all(np.isneginf(lse[:2]))
    assert np.all(np.isneginf(lse[4])) and np.all(np.isfinite(lse[5]))
    assert_close(o, lse, case)


def test_empty_batch():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    plan = padec.build_plan(params, [], num_workers=4)
    empty_pool = np.zeros((1, 16, 2, 64), dtype=np.uint16)
    o = padec.run_cpu(params, plan, np.zeros((0, 4, 64), np.uint16), empty_pool, empty_pool,
                      np.zeros(1, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    assert o.shape == (0, 4, 64)


def test_deterministic_and_workspace_reusable():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          kv_dtype=DType.FP16, window_left=30)
    case = make_case(np.random.default_rng(9), params, [900, 20, 333])
    plan = padec.build_plan(params, case.kv_lens, num_workers=12, partition_tokens=64)
    again = padec.build_plan(params, list(case.kv_lens), num_workers=12, partition_tokens=64)
    assert plan.data.tobytes() == again.data.tobytes()
    workspace = np.zeros(plan.workspace_bytes + 64, dtype=np.uint8)[16:]
    first = padec.run_cpu(params, plan, *case.inputs, workspace=workspace)
    second = padec.run_cpu(params, again, *case.inputs, workspace=workspace)
    assert first.tobytes() == second.tobytes()


def test_dtypes_and_layout_free_per_run():
    """A plan depends on heads, head_dim, q_len and window only: one plan serves other dtypes."""
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    lens = [120, 7]
    plan = padec.build_plan(params, lens, num_workers=4)
    other = dataclasses.replace(params, kv_dtype=DType.E4M3, kv_layout=Layout.HND, page_size=4,
                                o_dtype=DType.FP16, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR,
                                k_scale=2.0, v_scale=0.5)
    case = make_case(np.random.default_rng(10), other, lens)
    assert_close(padec.run_cpu(other, plan, *case.inputs), None, case)


def test_cost_plan_keeps_its_kv_element_size():
    """A cost plan weighs partitions by their bytes: fp16 may replace bf16, fp8 may not."""
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    lens = [120, 7]
    plan = padec.build_plan(params, lens, num_workers=4, policy="cost")
    fp16 = dataclasses.replace(params, kv_dtype=DType.FP16)
    case = make_case(np.random.default_rng(12), fp16, lens)
    assert_close(padec.run_cpu(fp16, plan, *case.inputs), None, case)
    fp8 = dataclasses.replace(params, kv_dtype=DType.E4M3)
    case = make_case(np.random.default_rng(13), fp8, lens)
    o = np.full(case.q.shape, 0x7FC0, dtype=np.uint16)
    with pytest.raises(padec.Error) as raised:
        padec.run_cpu(fp8, plan, *case.inputs, o=o)
    assert raised.value.status == padec.Status.PLAN_MISMATCH
    assert "kv_dtype" in raised.value.message and "cost policy" in raised.value.message
    assert np.all(o == 0x7FC0)


def test_empty_torch_tensors_run_like_numpy():
    """A step of padding sequences only, with no pages: an empty torch tensor has no storage
    (data_ptr() 0), yet it must be accepted as the empty numpy array is."""
    torch = pytest.importorskip("torch")
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    plan = padec.build_plan(params, [0, 0], num_workers=4)
    pool = torch.zeros((0, 16, 2, 64), dtype=torch.bfloat16)
    indptr, lens = torch.zeros(3, dtype=torch.int32), torch.zeros(2, dtype=torch.int32)
    indices = torch.zeros(0, dtype=torch.int32)
    o, lse = padec.run_cpu(params, plan, torch.ones((2, 4, 64), dtype=torch.bfloat16), pool, pool,
                           indptr, indices, lens, return_lse=True)
    assert torch.all(o == 0) and torch.all(torch.isneginf(lse))
    padec.validate_kv(params, indptr, indices, lens, num_pages=0)


def test_torch_cpu_tensors_match_numpy():
    torch = pytest.importorskip("torch")
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16, q_len=3,
                          kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN,
                          window_left=64)
    case = make_case(np.random.default_rng(11), params, [400, 90, 3])
    plan = padec.build_plan(params, torch.from_numpy(case.kv_lens), num_workers=8)
    expected_o, expected_lse = padec.run_cpu(params, plan, *case.inputs, **case.scales,
                                             return_lse=True)
    q = torch.from_numpy(case.q.view(np.int16)).view(torch.bfloat16)
    k = torch.from_numpy(case.k_pages).view(torch.float8_e4m3fn)
    v = torch.from_numpy(case.v_pages).view(torch.float8_e4m3fn)
    o, lse = padec.run_cpu(params, plan, q, k, v, *map(torch.from_numpy, case.inputs[3:]),
                           k_scales=torch.from_numpy(case.k_scales),
                           v_scales=torch.from_numpy(case.v_scales), return_lse=True)
    assert o.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert np.array_equal(o.view(torch.int16).numpy().view(np.uint16), expected_o)
    assert np.array_equal(lse.numpy(), expected_lse)
    assert_close(expected_o, expected_lse, case)


def test_decode_helpers_round_trip():
    """The test's own codecs: bf16 rounding and the e4m3 table's landmarks."""
    assert decode(np.array([0x3F80, 0xC000], np.uint16), DType.BF16).tolist() == [1.0, -2.0]
    codes = np.array([0x00, 0x01, 0x38, 0x7E, 0xFE, 0x7F], np.uint8)
    values = decode(codes, DType.E4M3)
    assert values[:5].tolist() == [0.0, 2.0**-9, 1.0, 448.0, -448.0] and np.isnan(values[5])


def test_run_binds_params_and_layout_once(monkeypatch):
    """Params and layouts are frozen: a run neither re-validates params nor rebuilds the C
    structs on every call (the per-call cost of binding), while bad params still raise each
    time."""
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(3), params, [5, 40])
    plan = padec.build_plan(params, case.kv_lens, num_workers=4)
    layout = padec.grid_layout(params, 2, num_splits=2)
    library = padec._library.lib()
    real_validate = library.padec_params_validate
    validated = []
    monkeypatch.setattr(library, "padec_params_validate",
                        lambda c_params: validated.append(c_params) or real_validate(c_params))
    first = padec.run_cpu(params, plan, *case.inputs)
    for _ in range(3):
        assert np.array_equal(padec.run_cpu(params, plan, *case.inputs), first)
        padec.run_cpu_grid(params, layout, *case.inputs)
    assert len(validated) <= 1
    monkeypatch.setattr(padec.GridLayout, "to_c", lambda self: pytest.fail("rebuilt"))
    padec.run_cpu_grid(params, layout, *case.inputs)
    bad = dataclasses.replace(params, num_kv_heads=3)
    for _ in range(2):
        with pytest.raises(padec.Error, match="num_kv_heads = 3"):
            padec.run_cpu(bad, plan, *case.inputs)
