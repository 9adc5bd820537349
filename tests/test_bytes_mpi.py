"""Bytes each rank sends, counted by :class:`distbench.comm.CountingComm`, equal each
algorithm's formula exactly (under mpirun with 2, 3 and 4 ranks).

The formulas are written here from the algorithms' definitions (block sizes from
``block_bounds``), independently of the implementations' loops.
"""

from __future__ import annotations

import numpy as np
import pytest

from distbench.check import count_wrong, fill_exact
from distbench.collectives import ALLREDUCE, get_allreduce, hierarchical
from distbench.collectives._util import block_bounds
from distbench.comm import CountingComm

DTYPE = np.dtype("float32")


def _counts(p: int, large: int = (1 << 20) + 3) -> list[int]:
    # (1 << 20) + 3 float32: ring blocks larger than its 1 MiB segments, for p <= 4.
    return sorted({0, 1, max(p - 1, 0), p + 1, 1009, large})


def _pof2(p: int) -> int:
    return 1 << (p.bit_length() - 1)


def _lg(p: int) -> int:
    return p.bit_length() - 1


def naive_bytes(r: int, p: int, n: int) -> int:
    """The root sends the result to each of the p-1 others; the others send their vector."""
    return (p - 1) * n if r == 0 else n


def ring_bytes(r: int, p: int, count: int, item: int) -> int:
    """Reduce-scatter forwards every block but (r+1), allgather every block but (r+2)."""
    sizes = np.diff(block_bounds(count, p)) * item
    return int(sizes.sum()) * 2 - int(sizes[(r + 1) % p]) - int(sizes[(r + 2) % p])


def binomial_children(r: int, p: int) -> int:
    """Children of r in the binomial tree rooted at 0: r + 2^k for 2^k < lowbit(r), < p."""
    low = r & -r if r else p
    return sum(1 for k in range(p.bit_length()) if (1 << k) < low and r + (1 << k) < p)


def tree_bytes(r: int, p: int, n: int) -> int:
    """The whole vector once to the parent (reduce), once to each child (broadcast)."""
    return n * ((r > 0) + binomial_children(r, p))


def recursive_doubling_bytes(r: int, p: int, n: int) -> int:
    pof2, rem = _pof2(p), p - _pof2(p)
    if r < 2 * rem:
        return n if r % 2 == 0 else (_lg(pof2) + 1) * n
    return _lg(pof2) * n


def rabenseifner_bytes(r: int, p: int, count: int, item: int) -> int:
    """Reduce-scatter gives away everything but block q; allgather sends q's aligned groups
    of 1, 2, .., p'/2 blocks; ranks < 2r add n for the non-power-of-two fold."""
    pof2, rem = _pof2(p), p - _pof2(p)
    n = count * item
    if r < 2 * rem and r % 2 == 0:
        return n
    q = r // 2 if r < 2 * rem else r - rem
    bounds = block_bounds(count, pof2) * item
    sent = n - int(bounds[q + 1] - bounds[q])
    d = 1
    while d < pof2:
        lo = q - q % d
        sent += int(bounds[lo + d] - bounds[lo])
        d *= 2
    return sent + (n if r < 2 * rem else 0)


def hierarchical_bytes(r: int, p: int, count: int, item: int, k: int, inner: str) -> int:
    """Tree inside the node of k consecutive ranks; the leaders add the inner algorithm's
    bytes among the p/k leaders."""
    local, nodes = r % k, p // k
    sent = tree_bytes(local, k, count * item)
    if local == 0 and nodes > 1:
        sent += FORMULAS[inner](r // k, nodes, count, item)
    return sent


FORMULAS = {
    "naive": lambda r, p, count, item: naive_bytes(r, p, count * item),
    "ring": ring_bytes,
    "tree": lambda r, p, count, item: tree_bytes(r, p, count * item),
    "recursive_doubling": lambda r, p, count, item: recursive_doubling_bytes(r, p, count * item),
    "rabenseifner": rabenseifner_bytes,
}


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


def test_every_algorithm_has_a_formula():
    assert set(ALLREDUCE) - {"native", "hierarchical"} == set(FORMULAS)


def test_formulas_match_textbook_totals():
    """Sanity of the formulas themselves when p divides the count (serial)."""
    for p in (2, 3, 4, 5, 8):
        count, item = 60 * p, 4
        n = count * item
        assert ring_bytes(0, p, count, item) * p == 2 * (p - 1) * n
        assert sum(tree_bytes(r, p, n) for r in range(p)) == 2 * (p - 1) * n
        assert sum(naive_bytes(r, p, n) for r in range(p)) == 2 * (p - 1) * n
        if p & (p - 1) == 0:
            assert rabenseifner_bytes(1, p, count, item) == 2 * (p - 1) * n // p
            assert recursive_doubling_bytes(1, p, n) == _lg(p) * n
    assert [binomial_children(r, 5) for r in range(5)] == [3, 0, 1, 0, 0]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_bytes_sent_match_formula(name):
    from mpi4py import MPI

    comm = CountingComm(MPI.COMM_WORLD)
    r, p = comm.Get_rank(), comm.Get_size()
    for count in _counts(p):
        _run_counted(comm, name, count)
        expected = FORMULAS[name](r, p, count, DTYPE.itemsize)
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
            expected = hierarchical_bytes(r, p, count, DTYPE.itemsize, k, inner)
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
    n = count * DTYPE.itemsize
    expected = tree_bytes(node.Get_rank(), node.Get_size(), n)
    if leaders is not None and leaders.Get_size() > 1:
        expected += ring_bytes(leaders.Get_rank(), leaders.Get_size(), count, DTYPE.itemsize)
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
