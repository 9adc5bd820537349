"""All-to-all (``MPI_Alltoall``): its declaration, and a registry with one module per
algorithm.

Signature: ``alltoall(comm, sendbuf, recvbuf) -> None``. ``sendbuf`` is a contiguous 1-D
NumPy or CuPy array of p blocks of m elements (block j goes to rank j); ``recvbuf``, as long
and of the same dtype, gets rank j's block for this rank in its block j. In place
(``sendbuf = MPI.IN_PLACE``) the blocks to send start out in ``recvbuf``. Buffers of different
lengths, or not a multiple of p, raise ValueError. Every module has ``start`` (same arguments,
returns a request-like object with ``Test``/``Wait``), ``bytes_sent`` and ``cost``; the
hand-written algorithms are schedules (:mod:`distbench.collectives.schedule`). Plug-ins:
entry-point group ``distbench.alltoall``.

Message size (nccl-tests): each rank's whole send buffer, size/p to every rank; counts are
rounded down to a multiple of p; busbw = algbw (p-1)/p.
"""

from __future__ import annotations

from distbench.collectives.alltoall import bruck, naive, native, pairwise
from distbench.collectives.collective import Collective, blocks_of_ranks, whole_input
from distbench.registry import Algorithm, Registry

ALLTOALL = Registry("algorithm", "distbench.alltoall", {
    name: Algorithm.from_module(module, "alltoall") for name, module in (
        ("native", native), ("naive", naive), ("pairwise", pairwise), ("bruck", bruck))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return (0 if in_place else count), count


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    """Block j: rank j's inputs at this rank's block, v(rank m + i, j)."""
    return blocks_of_ranks(count, ranks, lambda j: rank * (count // ranks))


COLLECTIVE = Collective(
    name="alltoall", title="All-to-all", call="MPI_Alltoall", nonblocking_call="MPI_Ialltoall",
    registry=ALLTOALL, reduction=False, in_place=True,
    size_meaning="each rank's send buffer (p blocks, size/p to each rank)",
    count_multiple=lambda p: p, bus_factor=lambda p: (p - 1) / p, bus_formula="(p-1)/p",
    buffers=_buffers, inputs=whole_input, expected=_expected)
