"""The cost policy through the binding: a cost plan, its layout's cost units, the prediction, a
caller's model, and the errors of a bad model."""

import numpy as np
import pytest

import padec
from padec import Policy, Status

PARAMS = padec.Params(num_q_heads=32, num_kv_heads=8, head_dim=128, page_size=16)
SKEWED = [32768] * 2 + [256] * 126  # 2 long sequences among 126 short ones


def test_layout_mirror_keeps_the_cost_units():
    """The mirror of padec_plan_layout carries the cost fields: a layout built by the library
    round-trips, and a plan built from the round-tripped layout is the same plan."""
    layout = padec.plan_layout(PARAMS, 4, num_workers=16, policy="cost")
    assert padec.PlanLayout.from_c(layout.to_c()) == layout
    assert layout.cost_partition == 1024 and layout.cost_item > 0 and layout.cost_split > 0


def test_cost_plan_builds_and_covers_every_sequence():
    plan = padec.build_plan(PARAMS, SKEWED, num_workers=264, policy=Policy.COST)
    header = plan.header
    assert header.policy == Policy.COST == 1 and plan.layout.policy == 1
    assert plan.layout.cost_partition == 1024 and plan.layout.cost_item > 0
    assert header.num_groups == 2  # only the long sequences are split
    rows = plan.work_info[:header.num_works]
    # Every (sequence, KV head) covers its partitions exactly once.
    covered = np.zeros((PARAMS.num_kv_heads, len(SKEWED)), dtype=np.int64)
    for row in rows:
        covered[(row[7] & 0xFFFF) // PARAMS.group, row[0]] += row[5] - row[4]
    per_sequence = np.diff(plan.partition_indptr)
    assert (covered == per_sequence[None, :]).all()
    # The same batch under "cost" by name, and the layouts of other policies have no cost units.
    assert padec.build_plan(PARAMS, SKEWED, num_workers=264, policy="cost").data.tobytes() == \
        plan.data.tobytes()
    assert padec.plan_layout(PARAMS, 4, num_workers=16).cost_item == 0


def test_prediction_shows_cost_beating_even_on_a_skewed_batch():
    even = padec.build_plan(PARAMS, SKEWED, num_workers=264)
    cost = padec.build_plan(PARAMS, SKEWED, num_workers=264, policy="cost")
    even_ns, cost_ns = even.predict(), cost.predict()
    assert even_ns.shape == cost_ns.shape == (264,) and even_ns.dtype == np.float64
    assert cost_ns.max() < 0.99 * even_ns.max()
    # The prediction is the model's sum over each worker's items.
    model = padec.default_cost_model()
    rows = cost.work_info[:cost.header.num_works]
    worker_of = np.repeat(np.arange(264), np.diff(cost.work_indptr))
    items = model.item_ns + (rows[:, 5] - rows[:, 4]) * model.partition_ns + \
        np.where(rows[:, 1] >= 0, model.split_ns, 0.0)
    assert np.allclose(np.bincount(worker_of, weights=items, minlength=264), cost_ns)


def test_caller_model():
    default = padec.default_cost_model()
    assert default.partition_ns > 0 and default.item_ns >= 0 and default.split_ns >= 0
    by_default = padec.build_plan(PARAMS, SKEWED, num_workers=264, policy="cost",
                                  cost_model=default)
    by_none = padec.build_plan(PARAMS, SKEWED, num_workers=264, policy="cost")
    assert by_default.data.tobytes() == by_none.data.tobytes()
    dear = padec.CostModel(default.partition_ns, 64 * default.partition_ns, default.split_ns)
    plan = padec.build_plan(PARAMS, SKEWED, num_workers=264, policy="cost", cost_model=dear)
    assert plan.layout.cost_item == 64 * 1024
    assert plan.header.num_partial_slots < by_default.header.num_partial_slots
    assert plan.predict(dear).max() > plan.predict().max()


@pytest.mark.parametrize("model, text", [
    (padec.CostModel(0.0, 1.0, 1.0), "partition_ns = 0"),
    (padec.CostModel(1.0, -1.0, 1.0), "item_ns = -1"),
    (padec.CostModel(1.0, 1.0, float("nan")), "split_ns = nan"),
])
def test_bad_models_raise(model, text):
    with pytest.raises(padec.Error) as caught:
        padec.plan_layout(PARAMS, 4, num_workers=16, policy="cost", cost_model=model)
    assert caught.value.status == Status.BAD_ARGUMENT and text in str(caught.value)
    with pytest.raises(padec.Error):
        padec.build_plan(PARAMS, [5], num_workers=16, cost_model=model)  # checked for every policy
    plan = padec.build_plan(PARAMS, [5], num_workers=16)
    with pytest.raises(padec.Error):
        plan.predict(model)
    with pytest.raises(padec.Error):
        padec.plan_layout(PARAMS, 4, num_workers=16, policy="cost", cost_model=(1.0, 1.0, 1.0))
