"""Bytes each rank sends, counted by :class:`distbench.comm.CountingComm`, equal each
algorithm's declared formula (its module's ``bytes_sent``) exactly (under mpirun with 2, 3 and
4 ranks); and the formulas themselves agree with the textbook totals.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import count_wrong

from distbench.check import fill_exact
from distbench.collectives import ALLREDUCE, get_allreduce
from distbench.collectives.allreduce import hierarchical, naive, rabenseifner, ring, tree
from distbench.collectives.allreduce import recursive_doubling as rd
from distbench.comm import CountingComm

DTYPE = np.dtype("float32")


def _counts(p: int, large: int = (1 << 20) + 3) -> list[int]:
    # (1 << 20) + 3 float32: ring blocks larger than its 1 MiB segments, for p <= 4.
    return sorted({0, 1, max(p - 1, 0), p + 1, 1009, large})


def _lg(p: int) -> int:
    return p.bit_length() - 1


def _formula(name):
    return ALLREDUCE.spec(name).bytes_sent


def _run_counted(comm, name, count, **options):
    """Call algorithm ``name`` twice on ``comm`` (a CountingComm of the world); count the second.
    """
    world = comm.comm
    send = np.empty(count, dtype=DTYPE)
    fill_exact(send, world.Get_rank())
    recv = np.empty_like(send)
    fn = get_allreduce(name, **options)
    fn(comm, send, recv)  # first call: splits (hierarchical) and grows workspaces, uncounted
    comm.reset()
    fn(comm, send, recv)
    assert count_wrong(world, send, recv) == 0, (name, count, options)
    total_sent = world.allreduce(comm.bytes_sent)
    total_recv = world.allreduce(comm.bytes_recv)
    assert total_sent == total_recv, f"{name}: bytes sent and received disagree"


HAND_WRITTEN = [a for a in ALLREDUCE if a != "native"]


def test_every_hand_written_algorithm_declares_a_formula():
    assert all(_formula(a) is not None for a in HAND_WRITTEN)
    assert _formula("native") is None, "the library's traffic is not visible to a wrapper"


def test_formulas_match_textbook_totals():
    """Sanity of the declared formulas themselves when p divides the count (serial)."""
    for p in (2, 3, 4, 5, 8):
        count, item = 60 * p, 4
        n = count * item
        assert ring.bytes_sent(0, p, count, item) * p == 2 * (p - 1) * n
        assert sum(tree.bytes_sent(r, p, count, item) for r in range(p)) == 2 * (p - 1) * n
        assert sum(naive.bytes_sent(r, p, count, item) for r in range(p)) == 2 * (p - 1) * n
        if p & (p - 1) == 0:
            assert rabenseifner.bytes_sent(1, p, count, item) == 2 * (p - 1) * n // p
            assert rd.bytes_sent(1, p, count, item) == _lg(p) * n
        # hierarchical with one rank per node is its inner algorithm among p leaders
        assert [hierarchical.bytes_sent(r, p, count, item, 1, "ring") for r in range(p)] == \
            [ring.bytes_sent(r, p, count, item) for r in range(p)]
    assert [tree.binomial_children(r, 5) for r in range(5)] == [3, 0, 1, 0, 0]
    for name in HAND_WRITTEN:
        assert _formula(name)(0, 1, 1009, 4) == 0, f"{name}: one rank sends nothing"
        assert _formula(name)(1, 4, 0, 4) == 0, f"{name}: an empty vector sends nothing"


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(set(HAND_WRITTEN) - {"hierarchical"}))
def test_bytes_sent_match_formula(name):
    from mpi4py import MPI

    comm = CountingComm(MPI.COMM_WORLD)
    r, p = comm.Get_rank(), comm.Get_size()
    for count in _counts(p):
        _run_counted(comm, name, count)
        expected = _formula(name)(r, p, count, DTYPE.itemsize)
        assert comm.bytes_sent == expected, (name, p, r, count, comm.bytes_sent, expected)
        assert comm.collective_bytes == 0, f"{name} used a library collective"


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("inner", ["ring", "recursive_doubling"])
def test_hierarchical_bytes(inner):
    from mpi4py import MPI

    comm = CountingComm(MPI.COMM_WORLD)
    r, p = comm.Get_rank(), comm.Get_size()
    for k in sorted({1, p} | ({2} if p % 2 == 0 else set())):
        for count in _counts(p, large=(1 << 16) + 3):
            _run_counted(comm, "hierarchical", count, ranks_per_node=k, inner=inner)
            expected = _formula("hierarchical")(r, p, count, DTYPE.itemsize, k, inner)
            assert comm.bytes_sent == expected, (inner, k, p, r, count, comm.bytes_sent)
            assert comm.collective_bytes == 0


@pytest.mark.mpi(min_size=2)
def test_hierarchical_bytes_shared_memory_nodes():
    """Default grouping (Split_type shared memory): the tree formula over the node's ranks,
    plus the ring's among the node leaders."""
    from mpi4py import MPI

    comm = CountingComm(MPI.COMM_WORLD)
    node, leaders = hierarchical.node_groups(comm)
    count = (1 << 16) + 3
    _run_counted(comm, "hierarchical", count)
    expected = tree.bytes_sent(node.Get_rank(), node.Get_size(), count, DTYPE.itemsize)
    if leaders is not None and leaders.Get_size() > 1:
        expected += ring.bytes_sent(leaders.Get_rank(), leaders.Get_size(), count,
                                    DTYPE.itemsize)
    assert comm.bytes_sent == expected


@pytest.mark.mpi(min_size=2)
def test_native_counts_one_vector():
    from mpi4py import MPI

    count = 1009
    comm = CountingComm(MPI.COMM_WORLD)
    _run_counted(comm, "native", count)
    assert comm.collective_bytes == count * DTYPE.itemsize
    assert comm.bytes_sent == 0
    assert comm.calls["Allreduce"] == 1
    MPI.COMM_WORLD.Barrier()
