"""Bytes each rank sends, counted by :class:`distbench.comm.CountingComm`, equal every
hand-written algorithm's declared formula (its module's ``bytes_sent``) exactly, for every
collective, blocking and nonblocking, in place and not, every root (under mpirun with 2-5
ranks); and the formulas themselves agree with the textbook totals (serial).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_collectives_mpi import counts, run_once

from distbench.collectives import collective_names, get_collective
from distbench.comm import CountingComm

ITEM = np.dtype("float32").itemsize


def hand_written(decl) -> list[str]:
    return [a for a in decl.registry if a != decl.baseline]


def _counted(decl, fn, comm, count, in_place, root, nonblocking):
    """Sent bytes of the second of two calls (the first splits communicators and grows
    workspaces), after checking the result."""
    run_once(decl, fn, comm, count, "sum", "float32", in_place, root, nonblocking)
    comm.reset()
    _, bad, changed = run_once(decl, fn, comm, count, "sum", "float32", in_place, root,
                               nonblocking)
    assert bad == 0 and changed == 0
    world = comm.comm
    assert world.allreduce(comm.bytes_sent) == world.allreduce(comm.bytes_recv)
    return comm.bytes_sent


@pytest.mark.mpi(min_size=2)
@pytest.mark.collectives
@pytest.mark.parametrize("name", collective_names())
def test_bytes_sent_match_the_formulas(name):
    from mpi4py import MPI

    decl = get_collective(name)
    comm = CountingComm(MPI.COMM_WORLD)
    rank, p = comm.Get_rank(), comm.Get_size()
    for algo in hand_written(decl):
        spec = decl.registry.spec(algo)
        for count in counts(decl, p):
            for root in (sorted({0, p - 1}) if decl.rooted else [0]):
                extra = {"root": root} if decl.rooted else {}
                expected = spec.bytes_sent(rank, p, count, ITEM, **extra)
                for in_place in (False, True) if decl.in_place else (False,):
                    for nonblocking in (False, True):
                        fn = spec.start if nonblocking else spec.fn
                        sent = _counted(decl, fn, comm, count, in_place, root, nonblocking)
                        assert sent == expected, (name, algo, p, rank, count, root, in_place,
                                                  nonblocking, sent, expected)
                        assert comm.collective_bytes == 0, f"{algo} used a library collective"
    MPI.COMM_WORLD.Barrier()


def test_every_algorithm_declares_its_formulas():
    for name in collective_names():
        decl = get_collective(name)
        for algo in decl.registry:
            spec = decl.registry.spec(algo)
            assert spec.cost is not None and spec.start is not None, (name, algo)
            assert (spec.bytes_sent is None) == (algo == decl.baseline), (name, algo)


def test_formulas_match_textbook_totals():
    """When p divides the count, and for the powers of two where the textbooks give them."""
    rs, ag, bc = (get_collective(c).registry for c in ("reduce-scatter", "allgather", "bcast"))
    red, a2a = get_collective("reduce").registry, get_collective("alltoall").registry
    for p in (2, 3, 4, 5, 8):
        m = 60
        n = m * p * ITEM
        for reg, names in ((rs, ("ring", "pairwise")), (ag, ("ring", "bruck")),
                           (a2a, ("pairwise", "naive"))):
            for a in names:
                assert all(reg.spec(a).bytes_sent(r, p, m * p, ITEM) == (p - 1) * n // p
                           for r in range(p)), (a, p)
        if p & (p - 1) == 0:
            lg = p.bit_length() - 1
            assert rs.spec("recursive_halving").bytes_sent(1, p, m * p, ITEM) == (p - 1) * n // p
            assert ag.spec("recursive_doubling").bytes_sent(1, p, m * p, ITEM) == \
                (p - 1) * n // p
            assert a2a.spec("bruck").bytes_sent(0, p, m * p, ITEM) == p // 2 * lg * m * ITEM
        for root in range(p):  # every rank but the root receives the message exactly once
            for a in ("naive", "binomial", "pipeline"):
                assert sum(bc.spec(a).bytes_sent(r, p, m * p, ITEM, root=root)
                           for r in range(p)) == (p - 1) * n, (a, p, root)
            assert sum(red.spec("binomial").bytes_sent(r, p, m * p, ITEM, root=root)
                       for r in range(p)) == (p - 1) * n
        # van de Geijn: block j travels down the binomial tree through popcount(j) links,
        # then the ring sends p - 1 blocks from each rank
        hops = sum(bin(j).count("1") for j in range(1, p))
        assert sum(bc.spec("scatter_allgather").bytes_sent(r, p, m * p, ITEM)
                   for r in range(p)) == (hops + p * (p - 1)) * n // p
    for name in collective_names():
        reg = get_collective(name).registry
        for a in hand_written(get_collective(name)):
            assert reg.spec(a).bytes_sent(0, 1, 1009, ITEM) == 0, (name, a, "one rank")
            assert reg.spec(a).bytes_sent(1, 4, 0, ITEM) == 0, (name, a, "nothing to send")
