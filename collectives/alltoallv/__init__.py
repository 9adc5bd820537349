"""All-to-all with a block size per pair of ranks (``MPI_Alltoallv``): its declaration, the
split pattern of the sweep, and a registry with one module per algorithm.

Signature: ``alltoallv(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None) -> None``.
``sendbuf`` holds this rank's blocks for ranks 0..p-1 one after another, ``sendcounts[j]``
elements for rank j; ``recvbuf`` gets rank j's block for this rank at the offset of the blocks
before it, ``recvcounts[j]`` elements (1-D NumPy or CuPy arrays of one dtype). Without counts
the sweep's uneven pattern applies (:func:`pattern`): block r -> j is m (1 + (r + 2j) mod 3)
elements, so every rank sends and receives blocks of 1, 2 and 3 units, with m read from the
send buffer's length. Counts that do not match the buffers raise ValueError. Every module has
``start`` (same arguments), ``bytes_sent`` and ``cost``. Plug-ins: entry-point group
``distbench.alltoallv``. ``distbench replay`` passes a trace's split sizes.

Message size: the mean send buffer, 2 m p elements of the pattern (counts rounded down to a
multiple of 2p); busbw = algbw (p-1)/p.
"""

from __future__ import annotations

from distbench.check import Segment, input_table
from distbench.collectives.alltoallv import naive, native, pairwise
from distbench.collectives.alltoallv.split import pattern, pattern_unit
from distbench.collectives.collective import Collective
from distbench.registry import Algorithm, Registry

ALLTOALLV = Registry("algorithm", "distbench.alltoallv", {
    name: Algorithm.from_module(module, "alltoallv") for name, module in (
        ("native", native), ("naive", naive), ("pairwise", pairwise))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    send, recv = pattern(pattern_unit(count, ranks), ranks, rank)
    return sum(send), sum(recv)


def _inputs(count, ranks, rank, root, op, in_place=False):
    send, _ = pattern(pattern_unit(count, ranks), ranks, rank)
    return [Segment(0, sum(send), input_table(rank), 0)], []


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    """Block j: rank j's inputs at its block for this rank, v(offset + i, j)."""
    m = pattern_unit(count, ranks)
    out, lo = [], 0
    for j in range(ranks):
        sent = pattern(m, ranks, j)[0]
        n = sent[rank]
        out.append(Segment(lo, lo + n, input_table(j), sum(sent[:rank])))
        lo += n
    return out


COLLECTIVE = Collective(
    name="alltoallv", title="All-to-all-v", call="MPI_Alltoallv",
    nonblocking_call="MPI_Ialltoallv", registry=ALLTOALLV, reduction=False,
    size_meaning="each rank's mean send buffer (uneven blocks of 1, 2, 3 units per rank)",
    count_multiple=lambda p: 2 * p, bus_factor=lambda p: (p - 1) / p, bus_formula="(p-1)/p",
    buffers=_buffers, inputs=_inputs, expected=_expected)
