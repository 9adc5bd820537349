"""AllReduce: the declaration and the registry of its algorithms, one module each.

Every algorithm has the signature ``allreduce(comm, sendbuf, recvbuf, op=None) -> None`` with
MPI semantics: ``recvbuf`` receives the elementwise reduction over ranks (``op`` an
``mpi4py.MPI.Op``, None for ``MPI.SUM``), ``sendbuf`` is untouched (or ``MPI.IN_PLACE``: the
input is ``recvbuf``), any element count >= 0 and any rank count >= 1. Buffers are contiguous
1-D NumPy or CuPy arrays of equal length and dtype. Each module also declares ``start`` (the
nonblocking form, same arguments, returns a request with ``Test``/``Wait``), ``bytes_sent``
(bytes per rank, exactly) and ``cost`` (its Hockney formula); the hand-written ones are
schedules (``steps``, :mod:`distbench.collectives.schedule`); ``hierarchical`` declares its
``OPTIONS``. Third-party algorithms join through the entry-point group ``distbench.allreduce``.
"""

from __future__ import annotations

from distbench.collectives.allreduce import (
    hierarchical,
    naive,
    native,
    rabenseifner,
    recursive_doubling,
    ring,
    tree,
)
from distbench.collectives.collective import Collective, reduced, whole_input
from distbench.registry import Algorithm, Registry

ALLREDUCE = Registry("algorithm", "distbench.allreduce", {
    name: Algorithm.from_module(module, "allreduce") for name, module in (
        ("native", native), ("naive", naive), ("ring", ring), ("tree", tree),
        ("recursive_doubling", recursive_doubling), ("rabenseifner", rabenseifner),
        ("hierarchical", hierarchical))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return (0 if in_place else count), count


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    return reduced(count, ranks, op)


COLLECTIVE = Collective(
    name="allreduce", title="AllReduce", call="MPI_Allreduce", registry=ALLREDUCE,
    buffers=_buffers, expected=_expected, inputs=whole_input,
    bus_factor=lambda p: 2.0 * (p - 1) / p, bus_formula="2(p-1)/p", in_place=True,
    nonblocking_call="MPI_Iallreduce")
