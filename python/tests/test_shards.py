"""Context-parallel shards on the CPU: a batch cut by position into R shards, each planned and run
on its own pages (shard_starts, seq_lens) with fp32 output and LSE, then merged
(merge_shards_cpu), against the unsharded run_cpu; the merge on its own; the errors."""

import dataclasses

import numpy as np
import pytest

import padec
from padec import DType, Fp8ScaleMode, Layout, Status
from reference import (assert_close, decode, make_case, merge_reference, shard_bounds,
                       shard_case)

LENS = [700, 1, 0, 300, 57, 1024]
CONFIGS = {
    "bf16": dict(),
    "fp16-hnd": dict(kv_dtype=DType.FP16, q_dtype=DType.FP16, kv_layout=Layout.HND),
    "fp8-token": dict(kv_dtype=DType.E4M3, fp8_scale_mode=Fp8ScaleMode.PER_TOKEN),
    "fp8-tensor-device": dict(kv_dtype=DType.E4M3,
                              fp8_scale_mode=Fp8ScaleMode.PER_TENSOR_DEVICE),
}


def run_shards(rng, case, bounds, *, grid: bool = False):
    """Each shard of case (bounds from shard_bounds) run with fp32 output and LSE into its slot of
    the stacked partials: ([R, rows, heads, dim], [R, rows, heads])."""
    params = dataclasses.replace(case.params, o_dtype=DType.FP32)
    num_shards, batch = len(bounds) - 1, len(case.kv_lens)
    shard_o = np.full((num_shards, *case.q.shape), np.nan, np.float32)
    shard_lse = np.full((num_shards, *case.q.shape[:2]), np.nan, np.float32)
    for r in range(num_shards):
        shard = shard_case(rng, case, bounds[r], bounds[r + 1])
        shards = dict(shard_starts=bounds[r], seq_lens=case.kv_lens)
        if grid:
            layout = padec.grid_layout(params, batch, num_splits=3, partition_tokens=32)
            padec.run_cpu_grid(params, layout, *shard.inputs, **shard.scales, o=shard_o[r],
                               lse=shard_lse[r], **shards)
        else:
            plan = padec.build_plan(params, shard.kv_lens, num_workers=6, partition_tokens=32,
                                    **shards)
            assert plan.shard_starts.tolist() == bounds[r].tolist()
            padec.run_cpu(params, plan, *shard.inputs, **shard.scales, o=shard_o[r],
                          lse=shard_lse[r], **shards)
    return shard_o, shard_lse


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4])
@pytest.mark.parametrize("q_len, window", [(1, 0), (2, 100), (3, 0)])
@pytest.mark.parametrize("config", CONFIGS)
def test_merged_shards_match_the_unsharded_run(config, q_len, window, num_shards):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32, q_len=q_len, window_left=window, **CONFIGS[config])
    rng = np.random.default_rng([num_shards, q_len, window, len(config)])
    case = make_case(rng, params, LENS)
    bounds = shard_bounds(rng, case.kv_lens, num_shards)
    shard_o, shard_lse = run_shards(rng, case, bounds)
    o, lse = padec.merge_shards_cpu(params, shard_o, shard_lse, return_lse=True)
    plan = padec.build_plan(params, case.kv_lens, num_workers=6, partition_tokens=32)
    whole_o, whole_lse = padec.run_cpu(params, plan, *case.inputs, **case.scales,
                                       return_lse=True)
    np.testing.assert_allclose(o, whole_o, rtol=1e-5, atol=2e-6)
    assert np.array_equal(np.isneginf(lse), np.isneginf(whole_lse))
    finite = np.isfinite(whole_lse)
    np.testing.assert_allclose(lse[finite], whole_lse[finite], rtol=1e-6, atol=1e-6)
    assert_close(o, lse, case)
    expected_o, expected_lse = merge_reference(shard_o, shard_lse)
    np.testing.assert_allclose(o, expected_o, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_shards", [2, 4])
def test_even_cuts_on_the_grid_path(num_shards):
    """Cuts at whole pages, as a rank's pool holds them, and the grid path on each shard."""
    params = padec.Params(num_q_heads=16, num_kv_heads=4, head_dim=128, page_size=16, q_len=2,
                          window_left=500, o_dtype=DType.BF16)
    rng = np.random.default_rng(num_shards)
    case = make_case(rng, params, [2048, 640, 96, 2])
    pages = -(-case.kv_lens // params.page_size)
    cuts = [np.minimum(-(-pages * r // num_shards) * params.page_size, case.kv_lens)
            for r in range(num_shards + 1)]
    bounds = np.stack(cuts).astype(np.int32)
    shard_o, shard_lse = run_shards(rng, case, bounds, grid=True)
    o = np.full(case.q.shape, 0x7FC0, np.uint16)
    lse = np.full(case.q.shape[:2], np.nan, np.float32)
    result = padec.merge_shards_cpu(params, shard_o, shard_lse, out=o, out_lse=lse)
    assert result[0] is o and result[1] is lse
    assert_close(o, lse, case)


def test_empty_shards_give_zero_and_minus_infinity():
    """A shard wholly outside every window (or empty) gives rows 0 and -inf; the merge ignores
    them, and a row that no shard sees comes out 0 and -inf."""
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32, window_left=50)
    rng = np.random.default_rng(5)
    case = make_case(rng, params, [1000, 0])
    bounds = np.array([[0, 0], [600, 0], [1000, 0]], np.int32)
    shard_o, shard_lse = run_shards(rng, case, bounds)
    assert np.all(np.isneginf(shard_lse[0])) and np.all(shard_o[0] == 0)
    assert np.all(np.isfinite(shard_lse[1, 0]))
    o, lse = padec.merge_shards_cpu(params, shard_o, shard_lse, return_lse=True)
    assert np.all(o[1] == 0) and np.all(np.isneginf(lse[1]))
    assert_close(o, lse, case)


@pytest.mark.parametrize("o_dtype", [DType.FP32, DType.BF16, DType.FP16])
def test_merge_against_float64(o_dtype):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=128, page_size=16,
                          o_dtype=o_dtype)
    rng = np.random.default_rng(int(o_dtype))
    shard_o = rng.standard_normal((3, 5, 8, 128)).astype(np.float32)
    shard_lse = rng.uniform(-5, 5, (3, 5, 8)).astype(np.float32)
    shard_lse[1, 2] = -np.inf  # one shard saw nothing of row 2
    shard_lse[:, 4, 3] = -np.inf  # no shard saw row 4 of head 3
    shard_o[:, 4, 3] = 0.0
    expected_o, expected_lse = merge_reference(shard_o, shard_lse)
    o, lse = padec.merge_shards_cpu(params, shard_o, shard_lse, return_lse=True)
    tolerance = {DType.FP32: 1e-6, DType.BF16: 2.0**-8, DType.FP16: 2.0**-11}[o_dtype]
    got = decode(o, o_dtype)
    assert np.all(np.abs(got - expected_o) <= tolerance * np.abs(expected_o) + 1e-6)
    assert np.array_equal(np.isneginf(lse), np.isneginf(expected_lse))
    finite = np.isfinite(expected_lse)
    np.testing.assert_allclose(lse[finite], expected_lse[finite], rtol=1e-6, atol=1e-6)
    again = padec.merge_shards_cpu(params, shard_o, shard_lse)
    assert again.tobytes() == o.tobytes()


def test_merge_into_strided_output_and_empty_rows():
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.FP32)
    rng = np.random.default_rng(9)
    shard_o = rng.standard_normal((2, 3, 4, 64)).astype(np.float32)
    shard_lse = rng.standard_normal((2, 3, 4)).astype(np.float32)
    heads_first = np.full((4, 3, 64), np.nan, np.float32)
    out = padec.merge_shards_cpu(params, shard_o, shard_lse, out=heads_first.transpose(1, 0, 2))
    np.testing.assert_allclose(out, merge_reference(shard_o, shard_lse)[0], rtol=1e-5, atol=1e-6)
    empty = padec.merge_shards_cpu(params, np.zeros((2, 0, 4, 64), np.float32),
                                   np.zeros((2, 0, 4), np.float32))
    assert empty.shape == (0, 4, 64)


def test_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    params = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16,
                          o_dtype=DType.BF16)
    rng = np.random.default_rng(10)
    shard_o = rng.standard_normal((3, 2, 4, 64)).astype(np.float32)
    shard_lse = rng.standard_normal((3, 2, 4)).astype(np.float32)
    expected = padec.merge_shards_cpu(params, shard_o, shard_lse)
    o, lse = padec.merge_shards_cpu(params, torch.from_numpy(shard_o),
                                    torch.from_numpy(shard_lse), return_lse=True)
    assert o.dtype == torch.bfloat16 and lse.dtype == torch.float32
    assert np.array_equal(o.view(torch.int16).numpy().view(np.uint16), expected)


# Errors.

PARAMS = padec.Params(num_q_heads=4, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                      o_dtype=DType.FP32, window_left=40)
SEQ_LENS = np.array([300, 90], np.int32)
STARTS = np.array([100, 0], np.int32)  # the shard holds [100, 200) and [0, 90)


@pytest.fixture
def shard():
    rng = np.random.default_rng(1)
    whole = make_case(rng, PARAMS, SEQ_LENS)
    return shard_case(rng, whole, STARTS, np.array([200, 90]))


@pytest.fixture
def plan(shard):
    return padec.build_plan(PARAMS, shard.kv_lens, num_workers=4, partition_tokens=32,
                            shard_starts=STARTS, seq_lens=SEQ_LENS)


def expect_error(status, text, call, *args, **kwargs):
    with pytest.raises(padec.Error) as caught:
        call(*args, **kwargs)
    assert (caught.value.status, caught.value.status_name) == (status, status.c_name)
    assert text in caught.value.message, str(caught.value)
    # Messages name the caller's arguments, not the C struct's fields.
    assert "tensors." not in caught.value.message, str(caught.value)


def test_plan_keeps_copies_of_the_arrays():
    lens, starts, seq_lens = (np.array(STARTS), STARTS.copy(), SEQ_LENS.copy())
    plan = padec.build_plan(PARAMS, lens, num_workers=4, shard_starts=starts, seq_lens=seq_lens)
    for given, kept in ((lens, plan.kv_lens), (starts, plan.shard_starts),
                        (seq_lens, plan.seq_lens)):
        assert given.flags.writeable and not kept.flags.writeable
        assert not np.shares_memory(given, kept) and kept.tolist() == given.tolist()
    assert padec.build_plan(PARAMS, lens, num_workers=4).shard_starts is None


def test_shard_runs_as_planned(shard, plan):
    """Sequence 0's window (positions 258..299) misses the shard: no partitions, empty rows."""
    assert np.diff(plan.partition_indptr).tolist() == [0, 2]
    o, lse = padec.run_cpu(PARAMS, plan, *shard.inputs, shard_starts=STARTS, seq_lens=SEQ_LENS,
                           return_lse=True)
    assert np.all(o[:2] == 0) and np.all(np.isneginf(lse[:2]))
    assert np.all(np.isfinite(o[2:])) and np.all(np.isfinite(lse[2:]))


@pytest.mark.parametrize("kwargs, status, text", [
    (dict(shard_starts=STARTS), Status.NULL_POINTER,
     "seq_lens: None, but shard_starts is given"),
    (dict(seq_lens=SEQ_LENS), Status.NULL_POINTER, "shard_starts: None, but seq_lens is given"),
    (dict(shard_starts=STARTS[:1], seq_lens=SEQ_LENS), Status.BAD_ARGUMENT,
     "shard_starts: 1 values, need one per sequence (2, as kv_lens)"),
    (dict(shard_starts=[100, 1.5], seq_lens=SEQ_LENS), Status.BAD_ARGUMENT,
     "shard_starts: need a 1-D sequence of integers"),
    (dict(shard_starts=[-1, 0], seq_lens=SEQ_LENS), Status.BAD_ARGUMENT,
     "sequence 0: shard_starts[0] = -1 is negative"),
    (dict(shard_starts=STARTS, seq_lens=[199, 90]), Status.BAD_ARGUMENT,
     "sequence 0: the shard ends at position 200 (shard_starts 100 + kv_lens 100), past "
     "seq_lens[0] = 199"),
])
def test_build_plan_errors(kwargs, status, text):
    expect_error(status, text, padec.build_plan, PARAMS, [100, 90], num_workers=4, **kwargs)


@pytest.mark.parametrize("kwargs, status, text", [
    (dict(shard_starts=STARTS), Status.NULL_POINTER, "seq_lens: None"),
    (dict(shard_starts=STARTS.astype(np.int64), seq_lens=SEQ_LENS), Status.UNSUPPORTED_DTYPE,
     "shard_starts: dtype int64, need int32"),
    (dict(shard_starts=STARTS, seq_lens=SEQ_LENS[:1]), Status.BAD_ARGUMENT,
     "seq_lens: shape [1], need [2] ([batch])"),
    (dict(shard_starts=STARTS, seq_lens=list(SEQ_LENS)), Status.BAD_ARGUMENT,
     "seq_lens: need a numpy array or a torch tensor, not list"),
    (dict(shard_starts=STARTS, seq_lens=np.array([150, 90], np.int32)), Status.BAD_ARGUMENT,
     "sequence 0: the shard ends at position 200"),
    # The plan was built for these shards: with a window, other shards schedule other partitions.
    (dict(shard_starts=np.array([180, 0], np.int32), seq_lens=SEQ_LENS), Status.PLAN_MISMATCH,
     "built for other kv_lens or shards"),
    (dict(), Status.PLAN_MISMATCH, "shard_starts, seq_lens: None, but the plan was built for "
     "shards"),
])
def test_run_errors(shard, plan, kwargs, status, text):
    o = np.full(shard.q.shape, 3.0, np.float32)
    expect_error(status, text, padec.run_cpu, PARAMS, plan, *shard.inputs, o=o, **kwargs)
    assert np.all(o == 3.0)


def test_shard_plan_needs_its_arrays():
    """Without a window a shard plan has the partitions of a whole-sequence plan for the same
    kv_lens, so no partition check can tell them apart; yet a shard in the middle of its
    sequence sees all its tokens, which a whole sequence of kv_lens tokens masks for q_len > 1.
    The plan knows whether it was built for shards: runs must agree with it."""
    params = dataclasses.replace(PARAMS, window_left=0)
    rng = np.random.default_rng(2)
    shard = shard_case(rng, make_case(rng, params, SEQ_LENS), STARTS, np.array([200, 90]))
    sharded = padec.build_plan(params, shard.kv_lens, num_workers=4, partition_tokens=32,
                               shard_starts=STARTS, seq_lens=SEQ_LENS)
    whole = padec.build_plan(params, shard.kv_lens, num_workers=4, partition_tokens=32)
    assert sharded.partition_indptr.tolist() == whole.partition_indptr.tolist()
    for run, kwargs in ((padec.run_cpu, {}), (padec.run_cuda, {})):
        o = np.full(shard.q.shape, 3.0, np.float32)
        expect_error(Status.PLAN_MISMATCH, "None, but the plan was built for shards", run,
                     params, sharded, *shard.inputs, o=o)
        expect_error(Status.PLAN_MISMATCH, "given, but the plan was built for whole sequences",
                     run, params, whole, *shard.inputs, o=o, shard_starts=STARTS,
                     seq_lens=SEQ_LENS)
        assert np.all(o == 3.0)
    # The grid path has no plan: shards or not is the run's alone, and each run gives what the
    # plan built for the same choice gives (the two differ: the shard sees all its tokens).
    layout = padec.grid_layout(params, 2, num_splits=2, partition_tokens=32)
    grid_shard = padec.run_cpu_grid(params, layout, *shard.inputs, shard_starts=STARTS,
                                    seq_lens=SEQ_LENS)
    grid_whole = padec.run_cpu_grid(params, layout, *shard.inputs)
    planned_shard = padec.run_cpu(params, sharded, *shard.inputs, shard_starts=STARTS,
                                  seq_lens=SEQ_LENS)
    planned_whole = padec.run_cpu(params, whole, *shard.inputs)
    np.testing.assert_allclose(grid_shard, planned_shard, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grid_whole, planned_whole, rtol=1e-5, atol=1e-6)
    assert not np.allclose(grid_shard, grid_whole, rtol=1e-3, atol=1e-4)


def test_merge_errors():
    o = np.zeros((2, 3, 4, 64), np.float32)
    lse = np.zeros((2, 3, 4), np.float32)
    merge = padec.merge_shards_cpu
    expect_error(Status.UNSUPPORTED_DTYPE, "shard_o: dtype float16, need float32", merge, PARAMS,
                 o.astype(np.float16), lse)
    expect_error(Status.BAD_ARGUMENT, "shard_o: shape [3, 4, 64], need [R, rows, 4, 64]", merge,
                 PARAMS, o[0], lse)
    expect_error(Status.BAD_ARGUMENT, "shard_o: shape [2, 3, 2, 64]", merge, PARAMS,
                 o[:, :, :2], lse)
    expect_error(Status.BAD_ARGUMENT, "shard_o: has no shard", merge, PARAMS, o[:0], lse[:0])
    expect_error(Status.BAD_ARGUMENT, "shard_lse: shape [2, 2, 4], need [2, 3, 4]", merge, PARAMS,
                 o, lse[:, :2])
    expect_error(Status.BAD_ARGUMENT, "shard_o: strides", merge, PARAMS,
                 np.zeros((3, 2, 4, 64), np.float32).transpose(1, 0, 2, 3), lse)
    expect_error(Status.MISALIGNED_POINTER, "shard_lse: address", merge, PARAMS, o,
                 np.zeros(lse.size * 4 + 2, np.uint8)[2:].view(np.float32).reshape(lse.shape))
    expect_error(Status.UNSUPPORTED_DTYPE, "out: dtype uint16, but params.o_dtype is FP32", merge,
                 PARAMS, o, lse, out=np.zeros((3, 4, 64), np.uint16))
    expect_error(Status.BAD_ARGUMENT, "out: shape [2, 4, 64], need [3, 4, 64]", merge, PARAMS, o,
                 lse, out=np.zeros((2, 4, 64), np.float32))
    read_only = np.zeros((3, 4), np.float32)
    read_only.flags.writeable = False
    expect_error(Status.BAD_ARGUMENT, "out_lse: is read-only", merge, PARAMS, o, lse,
                 out_lse=read_only)
    expect_error(Status.BAD_ARGUMENT, "shard_lse: need a numpy array or a torch tensor", merge,
                 PARAMS, o, lse.tolist())
    expect_error(Status.BAD_ARGUMENT, "params: need a padec.Params, not dict", merge,
                 dataclasses.asdict(PARAMS), o, lse)
    expect_error(Status.BAD_HEAD_COUNT, "num_kv_heads = 3", merge, padec.Params(4, 3, 64, 16), o,
                 lse)
    expect_error(Status.BAD_ARGUMENT, "merge_shards_cuda needs CUDA tensors",
                 padec.merge_shards_cuda, PARAMS, o, lse)
    # The library's overlap checks, named in the call's words: out and out_lse, not o and lse.
    expect_error(Status.BAD_ARGUMENT, "out overlaps shard_o", merge, PARAMS, o, lse, out=o[1])
    stacked = np.zeros(3 * 4 * 64, np.float32)
    expect_error(Status.BAD_ARGUMENT, "out overlaps out_lse", merge, PARAMS, o, lse,
                 out=stacked.reshape(3, 4, 64), out_lse=stacked[:12].reshape(3, 4))
