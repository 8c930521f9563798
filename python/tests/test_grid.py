"""The grid path on the CPU (run_cpu_grid): against run_cpu's plan path on the same inputs and
against the float64 reference, for several split counts; its layout, and its errors."""

import dataclasses

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout, Status
from reference import assert_close, make_case

LENS = [300, 4, 77, 513, 0]
CONFIGS = {
    "bf16": dict(),
    "fp16-hnd": dict(kv_dtype=DType.FP16, q_dtype=DType.FP16, kv_layout=Layout.HND),
    "fp8-token": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN),
    "fp8-tensor": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TENSOR,
                       k_scale=0.625, v_scale=1.5),
}


def assert_same_run(grid, plan):
    """Two runs of one batch (o fp32, lse) agree to fp32 rounding; empty rows exactly."""
    (grid_o, grid_lse), (plan_o, plan_lse) = grid, plan
    np.testing.assert_allclose(grid_o, plan_o, rtol=1e-5, atol=2e-6)
    assert np.array_equal(np.isneginf(grid_lse), np.isneginf(plan_lse))
    finite = np.isfinite(plan_lse)
    np.testing.assert_allclose(grid_lse[finite], plan_lse[finite], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("splits", [1, 2, 3, 8, 40])
@pytest.mark.parametrize("q_len, window", [(1, 0), (2, 45), (4, 0)])
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_plan_path_and_reference(config, q_len, window, splits):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32, q_len=q_len, window_left=window, **CONFIGS[config])
    case = make_case(np.random.default_rng([splits, q_len, window, len(config)]), params, LENS)
    layout = padec.grid_layout(params, len(LENS), num_splits=splits, partition_tokens=32)
    grid = padec.run_cpu_grid(params, layout, *case.inputs, **case.scales, return_lse=True)
    plan = padec.build_plan(params, case.kv_lens, num_workers=7, partition_tokens=32)
    assert_same_run(grid, padec.run_cpu(params, plan, *case.inputs, **case.scales,
                                        return_lse=True))
    assert_close(*grid, case)


@pytest.mark.parametrize("o_dtype", [DType.BF16, DType.FP16])
def test_half_outputs(o_dtype):
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=8, q_len=3,
                          o_dtype=o_dtype)
    case = make_case(np.random.default_rng(int(o_dtype)), params, [700, 33, 260])
    layout = padec.grid_layout(params, 3, num_splits=4, partition_tokens=64)
    o, lse = padec.run_cpu_grid(params, layout, *case.inputs, return_lse=True)
    assert o.dtype == (np.uint16 if o_dtype == DType.BF16 else np.float16)
    assert_close(o, lse, case)


def test_one_layout_serves_any_lengths_and_outputs_given():
    """A grid layout depends on the batch, not on the lengths: no plan to rebuild."""
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32, window_left=100)
    layout = padec.grid_layout(params, 3, num_splits=3)
    workspace = np.zeros(layout.workspace_bytes + 64, np.uint8)[16:]
    for seed, lens in enumerate([[10, 900, 300], [1, 2, 3], [4000, 0, 257]]):
        case = make_case(np.random.default_rng(seed), params, lens)
        o = np.full(case.q.shape, np.nan, np.float32)
        lse = np.full(case.q.shape[:2], np.nan, np.float32)
        result = padec.run_cpu_grid(params, layout, *case.inputs, o=o, lse=lse,
                                    workspace=workspace)
        assert result[0] is o and result[1] is lse
        assert_close(o, lse, case)


def test_deterministic():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    case = make_case(np.random.default_rng(3), params, [1000, 20])
    layout = padec.grid_layout(params, 2, num_splits=5, partition_tokens=16)
    first = padec.run_cpu_grid(params, layout, *case.inputs)
    assert first.tobytes() == padec.run_cpu_grid(params, layout, *case.inputs).tobytes()


def test_empty_batch():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16)
    layout = padec.grid_layout(params, 0, num_splits=4)
    pool = np.zeros((1, 16, 2, 64), np.uint16)
    o = padec.run_cpu_grid(params, layout, np.zeros((0, 4, 64), np.uint16), pool, pool,
                           np.zeros(1, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    assert o.shape == (0, 4, 64)


def test_layout():
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16, q_len=2)
    one = padec.grid_layout(params, 5, num_splits=1)
    assert (one.batch, one.num_splits, one.partition_tokens) == (5, 1, 256)
    assert (one.num_q_heads, one.num_kv_heads, one.head_dim, one.q_len) == (8, 2, 128, 2)
    assert one.workspace_bytes == 256  # no partials without splits
    four = padec.grid_layout(params, 5, num_splits=4, partition_tokens=64)
    # Partials for batch x splits x q_len rows of fp32 [heads, dim], then their LSEs.
    assert four.partial_lse_offset >= 5 * 4 * 2 * 8 * 128 * 4
    assert four.merge_counters_offset >= four.partial_lse_offset + 5 * 4 * 2 * 8 * 4
    assert four.workspace_bytes % 256 == 0 and four.params is params
    assert padec.GridLayout.from_c(params, four.to_c()) == four
    windowed = dataclasses.replace(params, window_left=8)
    assert padec.grid_layout(windowed, 5, num_splits=1).params_key != one.params_key


@pytest.mark.parametrize("batch, workers, window, splits", [
    (4, 132, 0, 17),      # ceil(132 / (4 x 2))
    (100, 132, 0, 1),
    (1, 10000, 0, 64),    # at most 64
    (1, 132, 300, 3),     # a window of 300 (+1 query) spans 2 partitions, +1 for its start
    (0, 132, 0, 1),
])
def test_recommended_splits(batch, workers, window, splits):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16,
                          window_left=window)
    assert padec.grid_recommended_splits(params, batch, workers) == splits


PARAMS = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                      o_dtype=DType.FP32)


@pytest.fixture
def case():
    return make_case(np.random.default_rng(1), PARAMS, [40, 100])


@pytest.fixture
def layout():
    return padec.grid_layout(PARAMS, 2, num_splits=3, partition_tokens=32)


def expect_error(status, text, call, *args, **kwargs):
    with pytest.raises(padec.Error) as caught:
        call(*args, **kwargs)
    assert (caught.value.status, caught.value.status_name) == (status, status.c_name)
    assert text in caught.value.message, str(caught.value)
    # Messages name the caller's arguments, not the C struct's fields.
    assert "tensors." not in caught.value.message, str(caught.value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(num_splits=0), "num_splits = 0: need 1..1024"),
    (dict(num_splits=1025), "num_splits = 1025"),
    (dict(num_splits=2, partition_tokens=100), "partition_tokens = 100"),
    (dict(num_splits=2**33), "num_splits = 8589934592 does not fit int32"),
])
def test_bad_layouts(kwargs, text):
    expect_error(Status.BAD_ARGUMENT, text, padec.grid_layout, PARAMS, 2, **kwargs)


@pytest.mark.parametrize("args, text", [
    ((-1, 132), "batch = -1: need 0..16777216"),
    ((2**24 + 1, 132), "batch = 16777217: need 0..16777216"),
    ((2, 0), "num_workers = 0: need 1..65536"),
    ((2, -5), "num_workers = -5: need 1..65536"),
    ((2, 65537), "num_workers = 65537: need 1..65536"),
    ((2, 132, 17), "partition_tokens = 17: need a power of two 16..16384"),
    ((2, 132, 8), "partition_tokens = 8: need a power of two 16..16384"),
    ((2, 132, 32768), "partition_tokens = 32768"),
    ((2, 132.0), "num_workers = 132.0: need an integer"),
])
def test_bad_recommended_splits_arguments(args, text):
    """The C function reads these as 1 or as 256 tokens without a word; grid_layout would refuse
    them, so the helper that feeds it refuses them first."""
    expect_error(Status.BAD_ARGUMENT, text, padec.grid_recommended_splits, PARAMS, *args)


def test_recommended_splits_for_partition_sizes():
    """0 is the default partition of 256 tokens. Without a window the splits fill the workers
    whatever the partition (132 workers / (2 sequences x 2 KV heads) = 33); a window caps them
    at the partitions it spans plus one (100 tokens: 7 of 16, 1 of 256 or 16384)."""
    assert padec.grid_recommended_splits(PARAMS, 2, 132, 0) == padec.grid_recommended_splits(
        PARAMS, 2, 132, 256)
    tokens = (16, 256, 16384)
    assert [padec.grid_recommended_splits(PARAMS, 2, 132, t) for t in tokens] == [33, 33, 33]
    windowed = dataclasses.replace(PARAMS, window_left=100)
    assert [padec.grid_recommended_splits(windowed, 2, 132, t) for t in tokens] == [8, 2, 2]


def test_bad_params_for_a_layout():
    expect_error(Status.UNSUPPORTED_HEAD_DIM, "head_dim = 96", padec.grid_layout,
                 padec.Params(8, 2, 96, 16), 2, num_splits=2)
    expect_error(Status.BAD_HEAD_COUNT, "num_kv_heads = 3", padec.grid_recommended_splits,
                 padec.Params(8, 3, 64, 16), 2, 132)


def test_layout_for_other_params(case, layout):
    windowed = dataclasses.replace(PARAMS, window_left=8)
    expect_error(Status.PLAN_MISMATCH, "the grid layout was made for", padec.run_cpu_grid,
                 windowed, layout, *case.inputs)


def test_layout_for_another_batch(case):
    layout = padec.grid_layout(PARAMS, 3, num_splits=2)
    expect_error(Status.BAD_ARGUMENT, "the grid layout is for batch 3", padec.run_cpu_grid, PARAMS,
                 layout, *case.inputs)


def test_plan_and_layout_are_not_interchangeable(case, layout):
    plan = padec.build_plan(PARAMS, case.kv_lens, num_workers=4)
    expect_error(Status.BAD_ARGUMENT, "layout: need a padec.GridLayout, not Plan",
                 padec.run_cpu_grid, PARAMS, plan, *case.inputs)
    expect_error(Status.BAD_ARGUMENT, "plan: need a padec.Plan, not GridLayout", padec.run_cpu,
                 PARAMS, layout, *case.inputs)


def test_argument_checks_are_run_cpus(case, layout):
    expect_error(Status.UNSUPPORTED_DTYPE, "q: dtype float32, but params.q_dtype is BF16",
                 padec.run_cpu_grid, PARAMS, layout, case.q.astype(np.float32), *case.inputs[1:])
    expect_error(Status.UNSUPPORTED_DTYPE, "kv_lens: dtype int64, need int32", padec.run_cpu_grid,
                 PARAMS, layout, *case.inputs[:5], case.kv_lens.astype(np.int64))
    expect_error(Status.WORKSPACE_TOO_SMALL, "the grid layout needs", padec.run_cpu_grid, PARAMS,
                 layout, *case.inputs, workspace=np.zeros(256, np.uint8))
    expect_error(Status.BAD_ARGUMENT, "run_cuda_grid needs CUDA tensors", padec.run_cuda_grid,
                 PARAMS, layout, *case.inputs)


def test_page_out_of_range_writes_nothing(case, layout):
    indices = case.page_indices.copy()
    indices[-1] = case.k_pages.shape[0] + 7
    o = np.full(case.q.shape, 3.0, np.float32)
    lse = np.full(case.q.shape[:2], 3.0, np.float32)
    expect_error(Status.PAGE_INDEX_OUT_OF_RANGE, "sequence 1: page_indices", padec.run_cpu_grid,
                 PARAMS, layout, *case.inputs[:4], indices, case.kv_lens, o=o, lse=lse)
    assert np.all(o == 3.0) and np.all(lse == 3.0)
