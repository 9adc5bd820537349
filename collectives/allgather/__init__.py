"""AllGather (``MPI_Allgather``): the declaration and the registry of its algorithms.

``allgather(comm, sendbuf, recvbuf) -> None``, MPI's semantics: each rank contributes
``sendbuf`` (a contiguous 1-D NumPy or CuPy array of m elements, any m >= 0, left untouched)
and ``recvbuf`` (p m elements, same dtype) receives all p blocks in rank order. With
``sendbuf = MPI.IN_PLACE`` a rank's block is already at its place in ``recvbuf``. A
``recvbuf`` that is not p blocks of m raises ValueError. ``start(comm, sendbuf, recvbuf)``
returns the same collective in flight, to be driven by ``Test``/``Wait``; ``bytes_sent`` and
``cost`` give each algorithm's bytes per rank and Hockney formula. The hand-written
algorithms are schedules (:mod:`distbench.collectives.schedule`); plug-ins come through the
entry-point group ``distbench.allgather``.

The size of a message is that of the gathered buffer (nccl-tests' convention): p blocks of
size/p, the count rounded down to a multiple of p. busbw = algbw (p-1)/p.
"""

from __future__ import annotations

from distbench.collectives.allgather import bruck, naive, native, recursive_doubling, ring
from distbench.collectives.collective import Collective, blocks_of_ranks, own_input
from distbench.registry import Algorithm, Registry

ALLGATHER = Registry("algorithm", "distbench.allgather", {
    name: Algorithm.from_module(module, "allgather") for name, module in (
        ("native", native), ("naive", naive), ("ring", ring),
        ("recursive_doubling", recursive_doubling), ("bruck", bruck))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return (0 if in_place else count // ranks), count


def _inputs(count, ranks, rank, root, op, in_place=False):
    """Rank r's block holds v(r m + i, r): every block of the result is told apart."""
    b = count // ranks
    mine = own_input(b, rank, lo=rank * b if in_place else 0, phase=rank * b)
    return ([], mine) if in_place else (mine, [])


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    b = count // ranks
    return blocks_of_ranks(count, ranks, lambda j: j * b)


COLLECTIVE = Collective(
    name="allgather", title="AllGather", call="MPI_Allgather", registry=ALLGATHER,
    buffers=_buffers, expected=_expected, inputs=_inputs,
    bus_factor=lambda p: (p - 1) / p, bus_formula="(p-1)/p", count_multiple=lambda p: p,
    reduction=False, in_place=True, nonblocking_call="MPI_Iallgather",
    size_meaning="the whole gathered buffer (p blocks; each rank contributes size/p)")
