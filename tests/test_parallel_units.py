"""Serial tests of the parallel step's arithmetic: parameters, ZeRO memory, buckets, pipeline
schedules, layouts and the closed-form traffic."""

from __future__ import annotations

import pytest

from distbench.algorithms.parallel.buckets import layer_offsets, make_buckets
from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.memory import model_state_bytes, rank_memory
from distbench.algorithms.parallel.pipeline import bubble_fraction, schedule
from distbench.algorithms.parallel.traffic import RankPlan
from distbench.algorithms.parallel.transformer import Transformer
from distbench.errors import UsageError


def test_parameter_count_is_narayanans_formula():
    m = Transformer(layers=96, hidden=12288, heads=96, seq=2048, vocab=51200)
    L, H, S, V = 96, 12288, 2048, 51200
    assert m.params == pytest.approx(12 * L * H**2 * (1 + 13 / (12 * H) + (V + S) / (12 * L * H)))
    assert 174e9 < m.params < 176e9, "GPT-3"
    sized = Transformer.from_params(7.5e9, layers=32)
    assert sized.params == pytest.approx(7.5e9) and sized.layer_params == pytest.approx(7.5e9 / 32)
    assert 12 * sized.layers * sized.hidden**2 == pytest.approx(7.5e9, rel=1e-3)


def test_flops_per_step():
    m = Transformer(layers=2, hidden=64, heads=4, seq=32, vocab=100, micro_batch=2,
                    micro_batches=3)
    layer = 24 * 2 * 32 * 64**2 * (1 + 32 / (6 * 64))
    assert m.layer_forward_flops() == pytest.approx(layer)
    assert m.step_flops() == pytest.approx(3 * 3 * (2 * layer + 2 * 2 * 32 * 64 * 100))


@pytest.mark.parametrize("n", [1, 8, 64])
def test_zero_memory_is_the_papers_table(n):
    psi = 1e9
    assert model_state_bytes(psi, 0, n) == pytest.approx(16 * psi)
    assert model_state_bytes(psi, 1, n) == pytest.approx(4 * psi + 12 * psi / n)
    assert model_state_bytes(psi, 2, n) == pytest.approx(2 * psi + 14 * psi / n)
    assert model_state_bytes(psi, 3, n) == pytest.approx(16 * psi / n)
    for stage in range(4):
        parts = rank_memory(psi, stage, n, 2, 0.0)
        assert parts.total == pytest.approx(model_state_bytes(psi, stage, n))
    with pytest.raises(ValueError):
        model_state_bytes(psi, 4, n)


def test_zero_papers_example_7_5b_over_64_ranks():
    """ZeRO, Figure 1: 7.5B parameters, N_d = 64: 120, 31.4, 16.6 and 1.88 GB."""
    gb = [model_state_bytes(7.5e9, s, 64) / 1e9 for s in range(4)]
    assert gb == pytest.approx([120.0, 31.4, 16.6, 1.875], rel=3e-3)  # the paper rounds


def test_buckets_cover_every_parameter_once_in_reverse_layer_order():
    layers = [5, 17, 3, 40, 8]
    offsets = layer_offsets(layers)
    assert offsets[-1][0] == 0 and offsets[0][1] == sum(layers), "last layer first"
    for cap in (1, 4, 10, 25, 1000):
        buckets = make_buckets(layers, cap)
        assert buckets[0].lo == 0 and buckets[-1].hi == sum(layers)
        assert all(a.hi == b.lo for a, b in zip(buckets, buckets[1:], strict=False))
        assert all(0 < b.count <= cap for b in buckets)
        ready = [b.ready_after for b in buckets]
        assert ready == sorted(ready, reverse=True), "ready in backward order"
        for b in buckets:  # ready once every layer it touches has its gradient
            touched = [j for j, (lo, hi) in enumerate(offsets) if lo < b.hi and hi > b.lo]
            assert b.ready_after == min(touched)
    assert len(make_buckets(layers, 1000)) == 1


@pytest.mark.parametrize("P,m", [(1, 1), (2, 2), (4, 4), (4, 8), (3, 5)])
def test_1f1b_order(P, m):
    for s in range(P):
        order = schedule("1f1b", s, P, m)
        assert sorted(order) == sorted([("F", i) for i in range(m)] + [("B", i) for i in range(m)])
        assert [i for k, i in order if k == "F"] == list(range(m))
        assert [i for k, i in order if k == "B"] == list(range(m))
        held = peak = 0
        for kind, i in order:
            if kind == "B":
                assert ("F", i) in order[: order.index(("B", i))]
            held += 1 if kind == "F" else -1
            peak = max(peak, held)
        assert peak <= P - s, "1F1B holds at most P - s micro-batches on stage s"
        warm = 0
        while warm < len(order) and order[warm][0] == "F":
            warm += 1
        assert warm == min(P - s - 1, m) + (1 if m > P - s - 1 else 0)
    gpipe = schedule("gpipe", 0, P, m)
    assert gpipe[:m] == [("F", i) for i in range(m)]
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)


def test_layouts():
    lay = Layout.parse("2x2x2")
    assert (lay.dp, lay.tp, lay.pp, lay.ranks) == (2, 2, 2, 8)
    assert [lay.indices(r) for r in range(8)] == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0),
                                                 (0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1)]
    for bad in ("2x2", "0x1x4", "axbxc"):
        with pytest.raises(UsageError):
            Layout.parse(bad)
    ok = dict(heads=4, layers=4, ranks_per_node=4, micro_batches=4, schedule="1f1b")
    lay.check(8, **ok)
    for change, needle in (({"heads": 3}, "heads"), ({"ranks_per_node": 3}, "node"),
                           ({"layers": 3}, "layers"), ({"micro_batches": 1}, "1F1B")):
        with pytest.raises(UsageError, match=needle):
            lay.check(8, **{**ok, **change})
    with pytest.raises(UsageError, match="needs D x T x P = 8"):
        lay.check(4, **ok)


def test_traffic_volumes_dp_zero_and_tensor_pipeline():
    m = Transformer(layers=4, hidden=64, heads=4, seq=16, vocab=128, micro_batches=1)
    lay = Layout(4, 1, 1)
    plans = {z: RankPlan.of(m, lay, 1, zero=z) for z in range(4)}
    dp = {z: p.traffic()["dp"] for z, p in plans.items()}
    assert dp[0] == dp[1] == dp[2] == pytest.approx(2 * 3 / 4 * m.params * 2)
    assert dp[3] == pytest.approx(1.5 * dp[0]), "ZeRO-3 moves 1.5x data parallelism's"
    mb = Transformer(layers=4, hidden=64, heads=4, seq=16, vocab=128, micro_batch=2,
                     micro_batches=4)
    tp = RankPlan.of(mb, Layout(1, 2, 2), 0)
    act = 2 * 16 * 64 * 2
    # 2 layers x 4 AllReduces (+ the embedding's on stage 0, + the LM head's backward on the
    # last stage) of b S H per micro-batch, ring volume 2 (T-1)/T = 1 at T = 2, m = 4
    assert tp.traffic()["tp"] == pytest.approx((2 * 4 + 1) * 1 * 4 * act)
    stage1 = RankPlan.of(mb, Layout(1, 2, 2), 2)
    assert stage1.stage == 1 and stage1.traffic()["tp"] == pytest.approx(
        (2 * 4 + 1) * 1 * 4 * act)
    assert tp.traffic()["pp"] == 4 * act, "stage 0 only sends forward"
    mid = RankPlan.of(mb, Layout(1, 1, 4), 1)
    assert mid.traffic()["pp"] == 2 * 4 * act, "a middle stage sends both ways"
    assert tp.params == (2 * round(m.layer_params / 2) + round(m.embedding_params / 2))
    last = RankPlan.of(mb, Layout(1, 2, 2), 3)
    assert last.forward_flops() > RankPlan.of(mb, Layout(1, 2, 2), 1).forward_flops() - 1


def test_union_seconds_counts_overlapping_spans_once():
    from distbench.algorithms.parallel.step import union_seconds

    assert union_seconds([]) == 0.0
    assert union_seconds([(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(2.0)
    # a bucket in flight over two blocking calls: one span of 0..4
    assert union_seconds([(1.0, 2.0), (0.0, 4.0), (3.0, 3.5)]) == pytest.approx(4.0)
    assert union_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == pytest.approx(4.0)
