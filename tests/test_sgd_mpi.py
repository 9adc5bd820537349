"""SGD modes under mpirun (2, 3, 4 ranks): equivalences, rounds, exact byte counts, the async
staleness bounds and shutdown, and accuracy on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.sgd import Problem, Sampler, SGDConfig, Targets, run_sgd
from distbench.algorithms.sgd.parameter_server import HEADER_BYTES
from distbench.algorithms.sgd.schedules import LRSchedule
from distbench.comm import CountingComm


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def problem64(digits):
    return Problem(digits, "softmax", dtype="float64", with_optimum=False)


def _same_everywhere(comm, theta) -> bool:
    ref = theta.copy()
    comm.Bcast(ref, root=0)
    return bool(comm.allreduce(bool(np.array_equal(ref, theta)), op=_land()))


def _land():
    from mpi4py import MPI

    return MPI.LAND


@pytest.mark.mpi(min_size=2)
def test_local_sgd_with_one_local_step_equals_sync(problem64):
    comm = _world()
    common = {"steps": 25, "batch_size": 16, "schedule": LRSchedule(0.3, "inverse", t0=10),
              "eval_every": 100}
    sync = run_sgd(comm, problem64, SGDConfig("sync", **common))
    local1 = run_sgd(comm, problem64, SGDConfig("local", local_steps=1, **common))
    local5 = run_sgd(comm, problem64, SGDConfig("local", local_steps=5, **common))
    start = problem64.init_params(0)
    assert np.abs(sync.theta - start).max() > 0.1  # it trained
    np.testing.assert_allclose(local1.theta, sync.theta, rtol=0, atol=1e-12)
    # averaging only every 5 steps is a different algorithm: the test can tell them apart
    assert np.abs(local5.theta - sync.theta).max() > 1e-6
    assert all(_same_everywhere(comm, r.theta) for r in (sync, local1, local5))


@pytest.mark.mpi(min_size=2)
def test_async_with_one_worker_equals_sequential_sgd(digits):
    comm = _world()
    sub = comm.Split(0 if comm.Get_rank() < 2 else 1, comm.Get_rank())
    try:
        if comm.Get_rank() >= 2:
            return
        problem = Problem(digits, "mlp", width=16, dtype="float32", with_optimum=False)
        sched = LRSchedule(0.2, "step", decay_factor=0.5, decay_every=7)
        cfg = SGDConfig("async", steps=20, batch_size=24, schedule=sched, eval_every=5,
                        seed=3)
        res = run_sgd(sub, problem, cfg)
        assert res.dropped == 0 and res.rounds == 20
        assert res.staleness == ([0] * 20 if sub.Get_rank() == 0 else [])
        sampler = Sampler(problem, 0, 1, 24, seed=3)
        theta = problem.init_params(3)
        g = np.empty_like(theta)
        for t in range(20):
            problem.model.gradient(theta, *sampler.next(), g)
            np.multiply(g, sched(t), out=g)
            np.subtract(theta, g, out=theta)
        np.testing.assert_array_equal(res.theta, theta)  # bit for bit
        assert [r["step"] for r in res.records] == [0, 5, 10, 15, 20] if sub.Get_rank() == 0 \
            else res.records == []
    finally:
        sub.Free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("steps,H", [(10, 3), (9, 3), (7, 1)])
def test_local_rounds_and_bytes_sent(problem64, steps, H):
    comm = _world()
    rank, p = comm.Get_rank(), comm.Get_size()
    outer = CountingComm(comm)
    cfg = SGDConfig("local", steps=steps, batch_size=8, local_steps=H, allreduce="naive",
                    eval_every=4)
    res = run_sgd(outer, problem64, cfg)
    rounds = math.ceil(steps / H)
    assert res.rounds == rounds
    vec = problem64.model.n_params * 8
    expected = [rounds * vec * (p - 1)] + [rounds * vec] * (p - 1)  # naive: root sends p-1
    assert res.bytes_per_rank == expected
    # what the exchange counted is what actually went through point-to-point sends, besides
    # one untimed warm-up AllReduce of the vector before the clock starts
    warm = expected[rank] // rounds
    assert outer.bytes_sent == res.bytes_per_rank[rank] + warm
    if rank == 0:
        assert [r["rounds"] for r in res.records] == sorted({0, *[
            math.ceil(t / H) for t in range(1, steps + 1)
            if t % H == 0 or t == steps if any(e <= t < e + H for e in range(4, steps + 1, 4))
            or t == steps]})


@pytest.mark.mpi(min_size=2)
def test_sync_bytes_sent_with_native(problem64):
    comm = _world()
    outer = CountingComm(comm)
    cfg = SGDConfig("sync", steps=6, batch_size=8, eval_every=3)
    res = run_sgd(outer, problem64, cfg)
    vec = problem64.model.n_params * 8
    assert res.rounds == 6 and res.bytes_per_rank == [6 * vec] * comm.Get_size()
    # one AllReduce of the one flat vector per step (and one untimed warm-up)
    assert outer.calls["Allreduce"] == 6 + 1
    if comm.Get_rank() == 0:
        assert [r["bytes_sent_max"] for r in res.records] == [0, 3 * vec, 6 * vec]


@pytest.mark.mpi(min_size=2)
def test_async_bytes_sent_and_clean_shutdown(digits):
    comm = _world()
    rank, p = comm.Get_rank(), comm.Get_size()
    problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
    outer = CountingComm(comm)
    T = 30
    res = run_sgd(outer, problem, SGDConfig("async", steps=T, batch_size=8, eval_every=10))
    msg = HEADER_BYTES + problem.model.n_params * 4
    # every dispatch of parameters yields exactly one gradient (applied or drained at the end):
    # p-1 initial dispatches, one after each of the first T-1 updates, then p-1 STOP headers
    dispatches = (p - 1) + (T - 1)
    assert res.bytes_per_rank[0] == dispatches * msg + (p - 1) * HEADER_BYTES
    assert sum(res.bytes_per_rank[1:]) == dispatches * msg
    assert all(b % msg == 0 for b in res.bytes_per_rank[1:])
    # the protocol's messages, besides an untimed 8-byte round trip per worker beforehand
    warm = 8 * (p - 1) if rank == 0 else 8
    assert outer.bytes_sent == res.bytes_per_rank[rank] + warm
    assert outer.calls["Isend"] == (dispatches + p - 1 if rank == 0
                                    else res.bytes_per_rank[rank] // msg)
    # nonblocking only (the blocking calls are the warm-up round trip)
    assert outer.calls["Send"] == outer.calls["Recv"] == (p - 1 if rank == 0 else 1)
    assert _same_everywhere(comm, res.theta)
    assert len(res.staleness) == T if rank == 0 else True


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("policy,S", [("block", 0), ("block", 1), ("drop", 0), ("drop", 1)])
def test_async_staleness_bound(digits, policy, S):
    comm = _world()
    problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
    # rank 1 is slow, so the others' updates pile up while it computes (a blocked run is
    # nearly sequential, so it gets fewer steps and a shorter delay)
    T, delay = (40, 2.0) if policy == "block" else (200, 5.0)
    cfg = SGDConfig("async", steps=T, batch_size=8, eval_every=T, max_staleness=S,
                    policy=policy, straggler={1: delay})
    res = run_sgd(comm, problem, cfg)
    if comm.Get_rank() != 0:
        return
    assert len(res.staleness) == T and max(res.staleness) <= S
    if policy == "block":
        assert res.dropped == 0 and res.rounds in range(T, T + comm.Get_size())
        if S == 0:
            assert set(res.staleness) == {0}
    else:
        assert res.rounds == T + res.dropped
        assert res.dropped > 0  # the straggler's gradients arrive too stale


@pytest.mark.mpi(min_size=3)
def test_async_without_bound_sees_staleness(digits):
    comm = _world()
    problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
    cfg = SGDConfig("async", steps=200, batch_size=8, eval_every=200, straggler={1: 5.0})
    res = run_sgd(comm, problem, cfg)
    if comm.Get_rank() == 0:
        assert max(res.staleness) >= 2 and res.records[-1]["staleness_max"] == max(
            res.staleness)
        assert res.dropped == 0 and res.rounds == 200


@pytest.mark.mpi(min_size=4)
def test_softmax_on_digits_sync_reaches_93_percent(digits):
    comm = _world()
    sub = comm.Split(0 if comm.Get_rank() < 4 else 1, comm.Get_rank())
    try:
        if comm.Get_rank() >= 4:
            return
        problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
        cfg = SGDConfig("sync", steps=60, batch_size=32, schedule=LRSchedule(0.5),
                        eval_every=60)
        res = run_sgd(sub, problem, cfg)
        _, test_acc, _ = problem.evaluate(res.theta)
        assert test_acc >= 0.93
        if sub.Get_rank() == 0:
            assert res.records[-1]["test_acc"] == test_acc and res.records[-1]["step"] == 60
    finally:
        sub.Free()


@pytest.mark.mpi(min_size=2)
def test_topk_with_error_feedback_tracks_uncompressed_sgd(digits):
    """Top-k at 1 % density (7 of 650 coordinates per step) on 2 ranks, 300 steps.

    Calibrated once (float32, seed 0, lr 0.5, batch 32, 2 ranks) and frozen: final training
    loss uncompressed 0.0995, top-k + EF 0.0970, top-k without EF 0.2615.
    """
    comm = _world()
    sub = comm.Split(0 if comm.Get_rank() < 2 else 1, comm.Get_rank())
    try:
        if comm.Get_rank() >= 2:
            return
        problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
        final = {}
        for name, compress, ef in (("dense", "none", None), ("ef", "topk", True),
                                   ("plain", "topk", False)):
            cfg = SGDConfig("sync", steps=300, batch_size=32, schedule=LRSchedule(0.5),
                            eval_every=300, compression=Compression(
                                compress, ef, {"density": 0.01} if compress == "topk" else {}))
            res = run_sgd(sub, problem, cfg)
            final[name] = problem.evaluate(res.theta)[0]
            if compress == "topk":  # 7 float32 values + 7 int32 indices per step
                assert res.bytes_per_rank == [300 * 56] * 2
        assert abs(final["ef"] - final["dense"]) <= 0.10 * final["dense"], final
        assert final["plain"] >= 1.5 * final["dense"], final
    finally:
        sub.Free()


@pytest.mark.mpi(min_size=2)
def test_local_sgd_compresses_the_model_delta(problem64):
    comm = _world()
    p = comm.Get_size()
    outer = CountingComm(comm)
    cfg = SGDConfig("local", steps=12, batch_size=8, local_steps=4,
                    compression=Compression("topk", options={"density": 0.05}), eval_every=12)
    res = run_sgd(outer, problem64, cfg)
    k = math.ceil(0.05 * problem64.model.n_params)
    assert res.rounds == 3 and res.bytes_per_rank == [3 * 8 * k] * p
    assert outer.calls["Allgather"] >= 2 * 3  # values and indices each round
    assert _same_everywhere(comm, res.theta)
    start = problem64.init_params(0)
    # each average moves at most the union of the ranks' k coordinates
    assert 0 < np.count_nonzero(res.theta != start) <= 3 * p * k


@pytest.mark.mpi(min_size=2)
def test_benchmark_run_writes_rows_and_summaries(digits, tmp_path):
    import json

    from distbench.benchmarks.sgd import SGDBenchConfig, run
    from distbench.command import RunOptions

    comm = _world()
    out = comm.bcast(str(tmp_path) if comm.Get_rank() == 0 else None)
    cfg = SGDBenchConfig(modes=["sync", "local", "async"], training=SGDConfig(
        steps=20, eval_every=10, local_steps=3, schedule=LRSchedule(0.5)),
        targets=Targets(target_acc=0.5), run=RunOptions(output=out, quiet=True))
    assert run(cfg, digits, comm, ["distbench", "sgd"]) == 0
    if comm.Get_rank() != 0:
        return
    (folder,) = [p for p in tmp_path.iterdir() if p.name.endswith("-sgd")]
    doc = json.loads((folder / "results.json").read_text())
    evals = [r for r in doc["records"] if r["kind"] == "eval"]
    summaries = [r for r in doc["records"] if r["kind"] == "summary"]
    assert [s["mode"] for s in summaries] == ["sync", "local", "async"]
    steps = {m: [r["step"] for r in evals if r["mode"] == m] for m in ("sync", "local", "async")}
    assert steps == {"sync": [0, 10, 20], "local": [0, 12, 20], "async": [0, 10, 20]}
    assert [s["rounds"] for s in summaries[:2]] == [20, 7]
    for s in summaries:
        last = [r for r in evals if r["mode"] == s["mode"]][-1]
        assert s["final_loss"] == last["train_loss"] and s["final_gap"] > 0
        assert s["bytes_sent_max"] == max(s["bytes_per_rank"]) >= last["bytes_sent_max"]
        assert s["time_to_target_s"] is not None and s["step_to_target"] <= 20
    assert doc["environment"]["f_star"] == pytest.approx(evals[0]["train_loss"] - evals[0]["gap"])
    assert (folder / "results.csv").read_text().count("\n") == len(doc["records"]) + 1
