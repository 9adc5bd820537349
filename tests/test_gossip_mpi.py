"""Gossip under mpirun (2, 3 and 4 ranks): D-PSGD on the complete graph with one gossip step is
synchronous SGD; each node sends degree x model bytes per gossip round, counted on the
neighbourhood exchange; SGP's push-sum keeps the sum of the models and of the weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from distbench.algorithms.sgd import Problem, SGDConfig, run_sgd
from distbench.algorithms.sgd.datasets import load_dataset
from distbench.algorithms.sgd.gossip import Gossip, topology


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def problem():
    return Problem(load_dataset("digits", 0), "softmax", with_optimum=False)


@pytest.mark.mpi(min_size=2)
def test_dpsgd_on_the_complete_graph_with_one_gossip_step_is_synchronous_sgd(problem):
    comm = _world()
    base = SGDConfig("sync", steps=30, batch_size=16, eval_every=30)
    sync = run_sgd(comm, problem, base)
    gossip = run_sgd(comm, problem, replace(base, mode="gossip", topology="complete"))
    assert np.allclose(gossip.theta, sync.theta, rtol=1e-4, atol=1e-6)
    if comm.Get_rank() == 0:
        assert gossip.records[-1]["consensus"] < 1e-5, "every node holds the same model"


@pytest.mark.mpi(min_size=2)
def test_bytes_per_node_per_round_are_degree_times_the_model(problem):
    comm = _world()
    p = comm.Get_size()
    steps, k = 12, 2
    res = run_sgd(comm, problem, SGDConfig("gossip", steps=steps, batch_size=16,
                                           eval_every=steps, topology="ring", gossip_steps=k))
    degree = len(topology("ring", p).out_neighbors(comm.Get_rank()))
    assert degree == (1 if p == 2 else 2)
    model = problem.model.n_params * 4
    assert res.bytes_per_rank == [degree * model * steps * k] * p
    assert res.rounds == steps * k


@pytest.mark.mpi(min_size=2)
def test_sgp_push_sum_keeps_the_sums_on_a_directed_graph():
    comm = _world()
    p, rank = comm.Get_size(), comm.Get_rank()
    topo = topology("exponential", p, "sgp")
    x = np.random.default_rng(rank).standard_normal(33).astype(np.float64)
    total = comm.allreduce(x.copy())
    g = Gossip(comm, topo, 33, x, sgp=True)
    for _ in range(5):
        g.mix(x)
    assert np.allclose(comm.allreduce(x.copy()), total)
    assert comm.allreduce(g.weight) == pytest.approx(p)
    g.free()
