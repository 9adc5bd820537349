"""The alpha-beta model of a training step (distbench.analysis.step_prediction): its volumes are
the closed forms the measured step is checked against, the pipeline's bubble, overlap, the
level each group runs at, and ``distbench model --step`` on the command line (serial)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch import serial, usage_error_line

from distbench.algorithms.parallel.buckets import MIB, make_buckets
from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.traffic import RankPlan
from distbench.algorithms.parallel.transformer import Transformer
from distbench.analysis.cost import CostParams
from distbench.analysis.step_prediction import allreduce_s, predict_step

DATA = Path(__file__).resolve().parent / "data"
MODEL = Transformer(layers=8, hidden=96, heads=8, seq=32, vocab=211, micro_batches=4)
BETA = 1e-9  # 1 GB/s
FREE_COMPUTE = 1e12  # TFLOP/s: compute takes no time


def _params(alpha=0.0, beta=BETA, gamma=0.0, beta_inter=None):
    return CostParams(alpha, beta, gamma, None, beta_inter)


@pytest.mark.parametrize("lay", ["4x1x1", "2x2x1", "2x1x2", "1x2x2", "1x1x4", "2x2x2"])
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_volumes_are_the_closed_forms(lay, zero):
    """With alpha = gamma = 0 each class's predicted seconds are its closed-form bytes times
    beta (of the stage the prediction reports), so the model and the measured step's check
    agree."""
    layout = Layout.parse(lay)
    pred = predict_step(MODEL, layout, zero, 0.05, False, FREE_COMPUTE, _params(), None)
    plan = RankPlan.of(MODEL, layout, pred.stage * layout.tp * layout.dp, zero)
    for cls, seconds in (("dp", pred.dp_s), ("tp", pred.tp_s), ("pp", pred.pp_s)):
        assert seconds == pytest.approx(plan.traffic(0.05)[cls] * BETA, rel=1e-9), cls
    assert pred.dp_s > 0 or layout.dp == 1
    assert pred.tp_s > 0 or layout.tp == 1
    assert pred.pp_s > 0 or layout.pp == 1


def test_bubble_of_a_compute_bound_pipeline():
    """No communication cost: the step is (m + P - 1) micro-batch slots of the slowest stage,
    the bubble fraction (P - 1)/(m + P - 1) of it idle (Narayanan et al. 2021)."""
    model = Transformer(layers=8, hidden=96, heads=8, seq=32, vocab=1, micro_batches=6)
    free = CostParams(0.0, 0.0, 0.0)
    for P in (1, 2, 4):
        pred = predict_step(model, Layout(1, 1, P), 0, 25, True, 1e-3, free, None)
        per_mb = 3 * model.layers / P * model.layer_forward_flops() / 1e9
        update = pred.compute_s - 6 * per_mb
        assert pred.step_s == pytest.approx((6 + P - 1) * per_mb + update, rel=1e-3)
        assert pred.bubble == pytest.approx((P - 1) / (6 + P - 1))


def test_overlap_only_lowers_the_step_and_hides_buckets_behind_the_backward():
    lay = Layout(8, 1, 1)
    for tflops in (1e-3, 1e-2, 1.0, 100.0):
        for bucket in (0.01, 0.1, 1.0, 25.0):
            on = predict_step(MODEL, lay, 0, bucket, True, tflops, _params(2e-6), None)
            off = predict_step(MODEL, lay, 0, bucket, False, tflops, _params(2e-6), None)
            assert on.step_s <= off.step_s + 1e-15
            assert on.dp_s == pytest.approx(off.dp_s)
    # a long backward hides every bucket but those ready at its end: the embedding's and the
    # first layer's (the embedding's backward, a lookup's, takes no time)
    slow = predict_step(MODEL, lay, 0, 0.01, True, 1e-4, _params(2e-6), None)
    plan = RankPlan.of(MODEL, lay, 0, 0)
    cap = int(0.01 * MIB) // 2 // 8 * 8
    last = [b for b in make_buckets(plan.layer_elements(), cap) if b.ready_after <= 1]
    assert slow.dp_exposed_s == pytest.approx(
        sum(allreduce_s(b.count * 2, 8, (2e-6, BETA, 0.0)) for b in last), rel=1e-9)
    assert slow.dp_exposed_s < 0.25 * slow.dp_s


def test_groups_run_at_the_level_they_span():
    """8 ranks, 4 per node: a tensor group of 4 stays inside a node, a data group of 2 (T D = 8)
    crosses; a slower network between nodes only slows what crosses."""
    lay = Layout(2, 4, 1)
    fast = predict_step(MODEL, lay, 0, 25, False, FREE_COMPUTE, _params(), 4)
    slow = predict_step(MODEL, lay, 0, 25, False, FREE_COMPUTE, _params(beta_inter=10 * BETA), 4)
    assert slow.tp_s == pytest.approx(fast.tp_s)
    assert slow.dp_s == pytest.approx(10 * fast.dp_s)
    one_node = predict_step(MODEL, lay, 0, 25, False, FREE_COMPUTE,
                            _params(beta_inter=10 * BETA), 8)
    assert one_node.dp_s == pytest.approx(fast.dp_s)


def test_zero3_moves_one_and_a_half_times_data_parallelism_at_one_micro_batch():
    model = Transformer(layers=8, hidden=96, heads=8, seq=32, vocab=211, micro_batches=1)
    lay = Layout(8, 1, 1)
    z = [predict_step(model, lay, s, 25, False, FREE_COMPUTE, _params(), None).dp_s
         for s in range(4)]
    assert z[1] == pytest.approx(z[0]) and z[2] == pytest.approx(z[0])
    assert z[3] == pytest.approx(1.5 * z[0])


def test_model_step_command_ranks_layouts_per_rank_count():
    proc = serial(["model", "--step", "--layers", "8", "--hidden", "96", "--heads", "8",
                   "--seq", "32", "--vocab", "211", "--tp", "2", "--pp", "2", "--ranks",
                   "16,1024", "--ranks-per-node", "8", "--zero", "0,3", "--json"])
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    assert sorted({(r["ranks"], r["layout"]) for r in recs}) == [(16, "4x2x2"),
                                                                  (1024, "256x2x2")]
    assert {r["zero"] for r in recs} == {0, 3}
    for r in recs:
        assert 0 < r["efficiency"] <= 1 and r["step_s"] >= r["compute_s"]
    table = serial(["model", "--step", "--layouts", "8x1x1,4x2x1,2x2x2", "--alpha", "5",
                    "--beta-gbps", "10", "--alpha-inter", "20", "--beta-inter-gbps", "1",
                    "--ranks-per-node", "4"])
    assert table.returncode == 0, table.stderr
    assert "p = 8 (2 nodes of 4)" in table.stdout and "4x2x1" in table.stdout


def test_model_step_global_batch_ranks_layouts_on_the_same_batch():
    """--global-batch B: each layout runs m = B / (D b) micro-batches, the same B sequences per
    step; the ranking is by time per sequence (so, at one B, by step time)."""
    base = ["model", "--step", "--layers", "8", "--hidden", "96", "--heads", "8", "--seq",
            "32", "--vocab", "211", "--micro-batch", "2", "--layouts", "8x1x1,4x2x1,2x1x4",
            "--ranks-per-node", "4", "--json"]
    fixed = json.loads(serial([*base, "--global-batch", "32"]).stdout)
    assert {r["layout"]: r["global_batch"] for r in fixed} == dict.fromkeys(
        ("8x1x1", "4x2x1", "2x1x4"), 32)
    by = {r["layout"]: r for r in fixed}
    # the 2x1x4 pipeline runs m = 32 / (2 x 2) = 8 micro-batches: bubble 3 / (8 + 3)
    assert by["2x1x4"]["bubble"] == pytest.approx(3 / 11)
    per_replica = json.loads(serial([*base, "--micro-batches", "4"]).stdout)
    assert {r["layout"]: r["global_batch"] for r in per_replica} == {
        "8x1x1": 64, "4x2x1": 32, "2x1x4": 16}
    table = serial([*base[:-1], "--global-batch", "32"]).stdout
    order = [lay for lay in sorted(by, key=lambda k: by[k]["step_s"])]
    assert [table.index(f" {lay} ") for lay in order] == sorted(
        table.index(f" {lay} ") for lay in order)


def test_model_step_fitted_per_level():
    """Alpha, beta fitted on ring runs (inside a node from p = 2, 3; between nodes from p = 4,
    standing in for a run across nodes): the data group that crosses nodes takes the second."""
    base = ["model", "--step", "--layers", "8", "--hidden", "96", "--heads", "8", "--seq", "32",
            "--vocab", "211", "--layouts", "2x4x1", "--ranks-per-node", "4", "--json",
            "--from", str(DATA / "model" / "p2"), "--from", str(DATA / "model" / "p3")]
    one = serial(base)
    two = serial([*base, "--from-inter", str(DATA / "model" / "p4")])
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = json.loads(one.stdout)[0], json.loads(two.stdout)[0]
    assert a["tp_s"] == pytest.approx(b["tp_s"]) and a["tp_s"] > 0
    assert a["dp_s"] != pytest.approx(b["dp_s"], rel=1e-3)


@pytest.mark.parametrize("args, needle", [
    (["--layouts", "2x2"], "a layout is DxTxP"),
    (["--layouts", "1x3x1", "--heads", "8"], "does not divide the 8 attention heads"),
    (["--layouts", "1x1x4", "--micro-batches", "2"], "1F1B needs at least"),
    (["--layouts", "2x4x1", "--ranks-per-node", "2"], "must stay inside one"),
    (["--tp", "3", "--ranks", "16"], "does not divide --ranks 16"),
    (["--zero", "4", "--layouts", "2x1x1"], "--zero takes stages"),
    (["--layouts", "4x1x1", "--global-batch", "6"], "--global-batch 6 is not a multiple"),
    (["--layouts", "2x1x1", "--from-inter", str(DATA.parent.parent / "docs")],
     "no distbench results"),
    ([], "--step needs --layouts"),
])
def test_model_step_bad_input_one_line_exit_2(args, needle):
    line = usage_error_line(serial(["model", "--step", *args]))
    assert needle in line, line
