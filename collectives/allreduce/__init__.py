"""AllReduce: the declaration and the registry of its algorithms, one module each.

Every algorithm has the signature ``allreduce(comm, sendbuf, recvbuf, op=None) -> None`` with
MPI semantics: ``recvbuf`` receives the elementwise reduction over ranks (``op`` an
``mpi4py.MPI.Op``, None for ``MPI.SUM``), ``sendbuf`` is untouched, any element count >= 0 and
any rank count >= 1. Buffers are contiguous 1-D NumPy or CuPy arrays of equal length and dtype.
Each module also declares ``bytes_sent`` (bytes per rank, exactly) and ``cost`` (its Hockney
formula); ``hierarchical`` declares its ``OPTIONS``. Third-party algorithms join through the
entry-point group ``distbench.allreduce``.
"""

from __future__ import annotations

from distbench.check import Segment, reduced_table
from distbench.collectives.allreduce import (
    hierarchical,
    naive,
    native,
    rabenseifner,
    recursive_doubling,
    ring,
    tree,
)
from distbench.collectives.collective import Collective
from distbench.registry import Algorithm, Registry

ALLREDUCE = Registry("algorithm", "distbench.allreduce", {
    name: Algorithm.from_module(module, "allreduce") for name, module in (
        ("native", native), ("naive", naive), ("ring", ring), ("tree", tree),
        ("recursive_doubling", recursive_doubling), ("rabenseifner", rabenseifner),
        ("hierarchical", hierarchical))})


def _buffers(count: int, ranks: int, rank: int, root: int) -> tuple[int, int]:
    return count, count


def _expected(count: int, ranks: int, rank: int, root: int, op: str) -> list[Segment]:
    return [Segment(0, count, reduced_table(range(ranks), op))]


def _invoke(fn, comm, send, recv, rank: int, root: int, op):
    if op is None:
        return lambda: fn(comm, send, recv)
    return lambda: fn(comm, send, recv, op=op)


COLLECTIVE = Collective(
    name="allreduce", title="AllReduce", call="MPI_Allreduce", registry=ALLREDUCE,
    buffers=_buffers, expected=_expected, invoke=_invoke,
    bus_factor=lambda p: 2.0 * (p - 1) / p, bus_formula="2(p-1)/p")
