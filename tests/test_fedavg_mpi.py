"""Federated learning under mpirun (2, 3, 4 ranks): the same final model whatever the rank
count, bytes per rank against the formula, and the benchmark's records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distbench.algorithms import federated as fed
from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.sgd import Problem
from distbench.comm import CountingComm


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


CASES = [
    ("fedavg", "float32", {"compress": "qsgd", "dropout": 0.25, "slow_fraction": 0.5}),
    ("scaffold", "float64", {"compress": "topk", "density": 0.1}),
    ("fedadam", "float32", {"dp_clip": 0.5, "dp_noise": 0.3}),
    ("fedprox", "float64", {"compress": "randk", "density": 0.2, "slow_fraction": 1.0}),
]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,dtype,extra", CASES, ids=[c[0] for c in CASES])
def test_same_final_model_whatever_the_rank_count(digits, name, dtype, extra):
    """The clients on N ranks and all of them on one rank give the same model, bit for bit."""
    from mpi4py import MPI

    comm = _world()
    problem = Problem(digits, "softmax", dtype=dtype, with_optimum=False)
    parts = fed.make_partition("dirichlet", digits.y_train, 14, 2, alpha=0.5)
    extra = dict(extra)
    method = extra.pop("compress", "none")
    options = {"density": extra.pop("density")} if "density" in extra else {}
    cfg = fed.FedConfig(rounds=4, clients=14, fraction=0.5, local_epochs=1, local_batch=16,
                        lr=0.2, seed=9, compression=Compression(method, options=options),
                        **extra)
    spread = fed.run_federated(comm, problem, parts, fed.ALGORITHMS.create(name), cfg)
    alone = fed.run_federated(MPI.COMM_SELF, problem, parts, fed.ALGORITHMS.create(name), cfg)
    np.testing.assert_array_equal(spread.theta, alone.theta)
    assert np.abs(alone.theta - problem.init_params(9)).max() > 1e-3
    ref = spread.theta.copy()
    comm.Bcast(ref, root=0)
    assert np.array_equal(ref, spread.theta)  # every rank returns the same model
    if comm.Get_rank() == 0:
        assert [r["test_acc"] for r in spread.records] == [r["test_acc"] for r in alone.records]
        assert [r["bytes_up"] for r in spread.records] == [r["bytes_up"] for r in alone.records]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,compress", [("fedavg", "none"), ("scaffold", "qsgd"),
                                           ("fedavgm", "randk")])
def test_bytes_per_rank_equal_the_formula(digits, name, compress):
    """Down: the state (x, and c for SCAFFOLD) once per sampled client, to the rank holding it;
    up: the compressor's wire bytes per answering client, from the rank holding it."""
    comm = _world()
    rank, p = comm.Get_rank(), comm.Get_size()
    problem = Problem(digits, "softmax", dtype="float32", with_optimum=False)
    parts = fed.make_partition("iid", digits.y_train, 11, 0)
    cfg = fed.FedConfig(rounds=3, clients=11, fraction=0.6, dropout=0.3, local_epochs=1,
                        local_batch=32, compression=Compression(compress, options={
                            k: v for k, v in (("density", 0.05), ("bits", 2))
                            if k in {o.name for o in COMPRESSORS.spec(compress).options}}))
    outer = CountingComm(comm)
    res = fed.run_federated(outer, problem, parts, fed.ALGORITHMS.create(name), cfg)
    d, s = problem.model.n_params, 2 if name == "scaffold" else 1
    comp = make_compressor(compress, density=0.05, bits=2)
    wire = comp.wire_bytes(comp.compress(np.zeros(d, dtype=np.float32)))
    down = [0] * p
    up = [0] * p
    for t in range(1, 4):
        plan = fed.plan_round(cfg, t)
        for k in plan.sampled:
            down[k % p] += s * d * 4
        for k in plan.answered:
            up[k % p] += s * wire
    assert res.bytes_down_per_rank == down and res.bytes_up_per_rank == up
    # the point-to-point traffic is these messages and nothing else
    assert outer.bytes_sent == up[rank] + (sum(down) if rank == 0 else 0)
    if rank == 0:
        assert res.records[-1]["bytes_up"] == sum(up)
        assert res.records[-1]["bytes_down"] == sum(down)


@pytest.mark.mpi(min_size=2)
def test_benchmark_run_writes_partition_rounds_and_summaries(digits, tmp_path):
    from distbench.benchmarks.fedavg import fedavg_command

    comm = _world()
    out = comm.bcast(str(tmp_path) if comm.Get_rank() == 0 else None)
    job = fedavg_command.main(["--algorithm", "fedsgd,fedavg,scaffold", "--rounds", "6",
                               "--clients", "20", "--fraction", "0.5", "--partition", "shards",
                               "--target-acc", "0.5", "--lr", "0.3", "--eval-every", "2",
                               "--output", out, "--quiet"], standalone_mode=False)
    prepared = job.validate(comm)  # the data and the partition, as the CLI runs a job
    assert job.run(comm, ["distbench", "fedavg"], prepared) == 0
    if comm.Get_rank() != 0:
        return
    (folder,) = [q for q in tmp_path.iterdir() if q.name.endswith("-fedavg")]
    doc = json.loads((folder / "results.json").read_text())
    recs = doc["records"]
    parts = [r for r in recs if r["kind"] == "partition"]
    assert [r["client"] for r in parts] == list(range(20))
    assert sum(r["samples"] for r in parts) == digits.n_train
    assert all(sum(x > 0 for x in r["label_counts"]) == 2 for r in parts)  # shards, c = 2
    evals = [r for r in recs if r["kind"] == "eval"]
    sums = [r for r in recs if r["kind"] == "summary"]
    assert [s["algorithm"] for s in sums] == ["fedsgd", "fedavg", "scaffold"]
    for s in sums:
        rows = [r for r in evals if r["algorithm"] == s["algorithm"]]
        assert [r["round"] for r in rows] == [0, 2, 4, 6]
        assert s["final_test_acc"] == rows[-1]["test_acc"] and s["final_gap"] > 0
        assert s["bytes_up"] == rows[-1]["bytes_up"] == sum(s["bytes_up_per_rank"])
        assert s["round_to_target"] in (None, 2, 4, 6)
        low, high = s["rounds_per_s_ci"]  # a bootstrap over the 3 evaluation intervals
        assert 0 < low <= high and s["wall_s_ci"][0] <= s["wall_s_ci"][1]
        assert all(r["answered"] == 10 and r["clients"] == 20 for r in rows[1:])
    assert sums[2]["bytes_up"] == 2 * sums[1]["bytes_up"]  # SCAFFOLD: Delta y and Delta c
    assert (folder / "results.csv").read_text().count("\n") == len(recs) + 1
