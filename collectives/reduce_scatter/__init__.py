"""Reduce-scatter (``MPI_Reduce_scatter_block``): the declaration and the registry of its
algorithms, one module each.

Every algorithm is ``reduce_scatter(comm, sendbuf, recvbuf, op=None) -> None`` with MPI
semantics, and ``start`` with the same arguments returns it in flight (``Test``/``Wait``):

* ``comm``: an mpi4py communicator or a distbench proxy of one;
* ``sendbuf``: contiguous 1-D NumPy or CuPy array of p m elements (p blocks of m, any m >= 0),
  not modified; or ``MPI.IN_PLACE``, and then the input is ``recvbuf``;
* ``recvbuf``: m elements of the same dtype (p m in place), receiving block ``rank`` of the
  elementwise reduction over the ranks (in place: in its first m elements);
* ``op``: an ``mpi4py.MPI.Op``: SUM (None), PROD, MIN, MAX, BAND, BOR, BXOR.

They raise ValueError for an input that is not p blocks of m, or another op. Each module also
declares ``bytes_sent`` (bytes per rank, exactly) and ``cost`` (its Hockney formula); the
hand-written ones are schedules (:mod:`distbench.collectives.schedule`). Third-party
algorithms join through the entry-point group ``distbench.reduce_scatter``.

As in nccl-tests, a message size is the whole input of p blocks, so counts are rounded down to
a multiple of p, and busbw = algbw (p-1)/p.
"""

from __future__ import annotations

from distbench.collectives.collective import Collective, reduced, whole_input
from distbench.collectives.reduce_scatter import naive, native, pairwise, recursive_halving, ring
from distbench.registry import Algorithm, Registry

REDUCE_SCATTER = Registry("algorithm", "distbench.reduce_scatter", {
    name: Algorithm.from_module(module, "reduce_scatter") for name, module in (
        ("native", native), ("naive", naive), ("ring", ring),
        ("recursive_halving", recursive_halving), ("pairwise", pairwise))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return (0, count) if in_place else (count, count // ranks)


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    b = count // ranks
    return reduced(b, ranks, op, rank * b)


COLLECTIVE = Collective(
    name="reduce-scatter", title="Reduce-scatter", call="MPI_Reduce_scatter_block",
    registry=REDUCE_SCATTER, buffers=_buffers, expected=_expected, inputs=whole_input,
    bus_factor=lambda p: (p - 1) / p, bus_formula="(p-1)/p", count_multiple=lambda p: p,
    in_place=True, nonblocking_call="MPI_Ireduce_scatter_block",
    size_meaning="the whole pre-scatter buffer (p blocks; each rank receives size/p)")
