"""choose (padec_choose_on_device, `auto`): the path and policy for a batch, what it gives runs as chosen,
and its errors."""

import numpy as np
import pytest

import padec
from padec import DType, Policy, Status
from reference import assert_close, make_case

PARAMS = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16)
WORKERS = 132


@pytest.mark.parametrize("lens, path, policy", [
    ([1024] * 64, "grid", "even"),                   # 64 x 8 blocks fill 132 workers, even lengths
    ([1000, 1100, 900] * 6, "grid", "even"),         # 18 x 8 = 144 >= 132, lengths near each other
    ([1024] * 4, "persistent", "cost"),              # 32 blocks for 132 workers: a plan splits
    ([32768] * 2 + [256] * 62, "persistent", "cost"),  # fills the device but skewed
    ([4096] + [16] * 20, "persistent", "cost"),      # skewed and small
])
def test_paths_and_policies(lens, path, policy):
    choice = padec.choose(PARAMS, lens, num_workers=WORKERS)
    assert (choice.path, choice.policy) == (path, policy), choice
    assert choice.num_workers == WORKERS and choice.partition_tokens == 256
    assert choice.grid_splits == padec.grid_recommended_splits(PARAMS, len(lens), WORKERS, 256)


def test_lengths_on_the_device_only():
    """Without lengths the choice is by shape alone and never the host-only cost policy."""
    assert padec.choose(PARAMS, batch=64, num_workers=WORKERS).path == "grid"
    small = padec.choose(PARAMS, None, WORKERS, batch=4)
    assert (small.path, small.policy) == ("persistent", "even")
    assert small.grid_splits == 5  # ceil(132 / (4 x 8))
    skewed = [32768] * 2 + [256] * 62
    assert padec.choose(PARAMS, batch=len(skewed), num_workers=WORKERS).path == "grid"
    assert padec.choose(PARAMS, skewed, num_workers=WORKERS).path == "persistent"


def test_deterministic_and_lengths_of_any_kind():
    lens = [300, 7, 4096, 0, 55]
    choices = {padec.choose(PARAMS, value, num_workers=16, batch=5)
               for value in (lens, tuple(lens), np.array(lens, np.int64),
                             np.array(lens, np.int32))}
    assert len(choices) == 1


def test_window_caps_the_splits():
    windowed = padec.Params(32, 8, 128, 16, window_left=300)
    choice = padec.choose(windowed, batch=2, num_workers=WORKERS)
    assert choice.grid_splits == padec.grid_recommended_splits(windowed, 2, WORKERS) == 3
    assert padec.choose(PARAMS, batch=2, num_workers=WORKERS).grid_splits == 9


def run_chosen(params, case, num_workers):
    """What a caller of choose does: the plan or the grid path, as chosen."""
    choice = padec.choose(params, case.kv_lens, num_workers=num_workers)
    if choice.path == "grid":
        layout = padec.grid_layout(params, len(case.kv_lens), num_splits=choice.grid_splits,
                                   partition_tokens=choice.partition_tokens)
        return choice, padec.run_cpu_grid(params, layout, *case.inputs, return_lse=True)
    plan = padec.build_plan(params, case.kv_lens, num_workers=choice.num_workers,
                            partition_tokens=choice.partition_tokens, policy=choice.policy)
    assert plan.header.policy == Policy[choice.policy.upper()]
    return choice, padec.run_cpu(params, plan, *case.inputs, return_lse=True)


@pytest.mark.parametrize("lens, workers, path", [
    ([300, 290, 310, 280], 8, "grid"),
    ([600, 40, 35, 30], 8, "persistent"),
    ([200, 300], 16, "persistent"),
])
def test_runs_as_chosen_match_the_reference(lens, workers, path):
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16, q_len=2,
                          o_dtype=DType.FP32)
    case = make_case(np.random.default_rng(len(lens) + workers), params, lens)
    choice, (o, lse) = run_chosen(params, case, workers)
    assert choice.path == path
    assert_close(o, lse, case)


def test_num_workers_defaults_to_the_device():
    try:
        expected = padec.recommended_workers(PARAMS)
    except padec.Error as error:
        assert error.status >= Status.NOT_BUILT_WITH_CUDA
        with pytest.raises(padec.Error) as caught:
            padec.choose(PARAMS, [100, 200])
        assert caught.value.status == Status.BAD_ARGUMENT
        assert "pass num_workers" in caught.value.message
        assert error.status_name in caught.value.message
        with pytest.raises(padec.Error, match="pass num_workers"):
            padec.grid_recommended_splits(PARAMS, 2)
    else:
        # 64 sequences x 8 KV heads outnumber the SMs: the recommended count.
        assert padec.choose(PARAMS, [100] * 64).num_workers == expected
        # 2 x 8 pairs do not: one CTA an SM, on the grid path where sm_count // 16 blocks a pair
        # fill the SMs (no more than the longest sequence's partitions), else a cost plan.
        sm_count = padec.device_info().sm_count
        assert pick(padec.choose(PARAMS, [4096, 4096])) == few_pairs_pick(sm_count, 16, 16)
        assert pick(padec.choose(PARAMS, [100, 200])) == few_pairs_pick(sm_count, 16, 1)


def pick(choice):
    return (choice.path, choice.grid_splits if choice.path == "grid" else choice.num_workers)


def few_pairs_pick(sm_count, pairs, partitions):
    """auto's pick for no more (sequence, KV head) pairs than SMs, 8 KV heads, even lengths."""
    per_pair = sm_count // pairs
    if pairs * per_pair * 16 >= sm_count * 15:
        return ("grid", min(per_pair, partitions))
    return ("persistent", sm_count - sm_count % 8)


@pytest.mark.parametrize("batch, sm_count, picked", [
    (16, 132, ("grid", 1)),         # 128 pairs on 132 SMs: one CTA a pair
    (2, 132, ("grid", 8)),          # 16 pairs: 132 // 16 CTAs each
    (1, 132, ("grid", 16)),         # 8 pairs: 16 each
    (9, 132, ("persistent", 128)),  # 72 pairs: one block each leaves 60 SMs idle, so a plan
    (16, 0, ("persistent", 264)),   # the SM count unknown: a plan of the given workers
    (17, 132, ("persistent", 264)), # 136 pairs outnumber the SMs
    (16, 264, ("persistent", 264)), # one CTA an SM already
])
def test_one_cta_an_sm_for_few_pairs(batch, sm_count, picked):
    if 0 < batch * 8 <= sm_count < 264:
        assert few_pairs_pick(sm_count, batch * 8, 32) == picked
    assert pick(padec.choose(PARAMS, [8192] * batch, 264, sm_count=sm_count)) == picked
    assert pick(padec.choose(PARAMS, batch=batch, num_workers=264, sm_count=sm_count)) == picked


def test_few_skewed_pairs_get_a_cost_plan_of_one_worker_an_sm():
    choice = padec.choose(PARAMS, [65536] + [1024] * 15, 264, sm_count=132)
    assert (choice.path, choice.policy, choice.num_workers) == ("persistent", "cost", 128)


@pytest.mark.parametrize("kv_dtype, lens, path, splits", [
    (DType.E4M3, [8192] * 20, "grid", 1),              # 160 pairs: between the SMs and workers
    (DType.BF16, [8192] * 20, "persistent", None),     # bf16 keeps the plan there
    (DType.E4M3, [8192 * 20] + [8192] * 19, "persistent", None),  # skewed: a plan
    (DType.E4M3, [8192] * 16, "grid", 1),              # 128 pairs: one CTA a pair
])
def test_fp8_between_the_sms_and_the_workers(kv_dtype, lens, path, splits):
    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16,
                          kv_dtype=kv_dtype)
    choice = padec.choose(params, lens, 264, sm_count=132)
    assert choice.path == path, choice
    if splits is not None:
        assert choice.grid_splits == splits
    # Without the SM count the previous rule: a plan of 264 workers.
    assert padec.choose(params, lens, 264).path == "persistent"


H200_BANDWIDTH = 4_800_000_000_000  # 36.4 GB/s an SM over 132 SMs
H100_BANDWIDTH = 3_350_000_000_000  # 25.4 GB/s an SM


@pytest.mark.parametrize("kv_dtype, lens, bandwidth, picked", [
    # b16-8k: 4 MiB a CTA in bf16, 2 MiB in fp8, past 1.5 MiB: the 264-worker plan on an H200
    (DType.BF16, [8192] * 16, H200_BANDWIDTH, ("persistent", 264)),
    (DType.E4M3, [8192] * 16, H200_BANDWIDTH, ("persistent", 264)),
    # b1-32k: 16 splits of 1 MiB (bf16): the grid stays
    (DType.BF16, [32768], H200_BANDWIDTH, ("grid", 16)),
    # 1.5 MiB a CTA exactly (3072 tokens of bf16, one split a pair) stays; 3328 tokens do not
    (DType.BF16, [3072] * 16, H200_BANDWIDTH, ("grid", 1)),
    (DType.BF16, [3328] * 16, H200_BANDWIDTH, ("persistent", 264)),
    # the H100's 25.4 GB/s an SM and an unknown bandwidth: one CTA an SM as before
    (DType.BF16, [8192] * 16, H100_BANDWIDTH, ("grid", 1)),
    (DType.BF16, [8192] * 16, 0, ("grid", 1)),
])
def test_one_cta_an_sm_by_the_bandwidth_an_sm(kv_dtype, lens, bandwidth, picked):
    params = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16,
                          kv_dtype=kv_dtype)
    choice = padec.choose(params, lens, 264, sm_count=132, memory_bytes_per_second=bandwidth)
    assert pick(choice) == picked, choice
    if picked[0] == "persistent":
        assert choice.policy == "cost"
    # The rule needs host lengths: by shape alone one CTA an SM stays.
    by_shape = padec.choose(params, batch=len(lens), num_workers=264, sm_count=132,
                            memory_bytes_per_second=bandwidth)
    assert by_shape.path == "grid"


@pytest.mark.parametrize("call, status, text", [
    (lambda: padec.choose(PARAMS, num_workers=8), Status.BAD_ARGUMENT,
     "kv_lens and batch are both None"),
    (lambda: padec.choose(PARAMS, [1, 2], num_workers=8, batch=3), Status.BAD_ARGUMENT,
     "batch = 3, but kv_lens has 2 sequences"),
    (lambda: padec.choose(PARAMS, [10, -3], num_workers=8), Status.BAD_ARGUMENT,
     "kv_lens[1] = -3 is negative"),
    (lambda: padec.choose(PARAMS, [[1, 2]], num_workers=8), Status.BAD_ARGUMENT,
     "1-D sequence of integers"),
    (lambda: padec.choose(PARAMS, [10], num_workers=0), Status.BAD_ARGUMENT,
     "num_workers = 0"),
    (lambda: padec.choose(PARAMS, batch=-1, num_workers=8), Status.BAD_ARGUMENT, "batch = -1"),
    (lambda: padec.choose(PARAMS, [10], num_workers=2**40), Status.BAD_ARGUMENT,
     "num_workers = 1099511627776 does not fit int32"),
    (lambda: padec.choose(padec.Params(8, 3, 64, 16), [10], num_workers=8),
     Status.BAD_HEAD_COUNT, "num_q_heads = 8, num_kv_heads = 3"),
    (lambda: padec.choose(PARAMS, [10], num_workers=8, sm_count=-1), Status.BAD_ARGUMENT,
     "sm_count = -1"),
    (lambda: padec.choose(PARAMS, [10], num_workers=8, sm_count=1.5), Status.BAD_ARGUMENT,
     "sm_count = 1.5"),
    (lambda: padec.choose(PARAMS, [10], num_workers=8, memory_bytes_per_second=-1),
     Status.BAD_ARGUMENT, "memory_bytes_per_second = -1"),
    (lambda: padec.choose(PARAMS, [10], num_workers=8, memory_bytes_per_second=2**63),
     Status.BAD_ARGUMENT, "memory_bytes_per_second = 9223372036854775808 does not fit int64"),
    (lambda: padec.choose(PARAMS, [10], num_workers=8, memory_bytes_per_second=1e12),
     Status.BAD_ARGUMENT, "memory_bytes_per_second = 1000000000000.0: need an integer"),
    (lambda: padec.choose((8, 2, 64, 16), [10], num_workers=8), Status.BAD_ARGUMENT,
     "params: need a padec.Params, not tuple"),
])
def test_errors(call, status, text):
    with pytest.raises(padec.Error) as caught:
        call()
    assert (caught.value.status, caught.value.status_name) == (status, status.c_name)
    assert text in caught.value.message, str(caught.value)


def test_lengths_on_another_device_kind_are_refused():
    """A meta (or any non-CUDA) tensor is neither host lengths nor device lengths."""
    torch = pytest.importorskip("torch")
    params = padec.Params(num_q_heads=8, num_kv_heads=2, head_dim=64, page_size=16)
    with pytest.raises(padec.Error, match="kv_lens: on meta, need the CPU"):
        padec.choose(params, torch.empty(4, dtype=torch.int32, device="meta"), num_workers=8)
