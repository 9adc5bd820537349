"""Broadcast (``MPI_Bcast``): the declaration and the registry of its algorithms, one module
each.

The algorithms take ``(comm, buf, root=0)``: ``buf`` is a contiguous 1-D NumPy or CuPy array,
the message on ``root`` and, on return, a copy of it everywhere else; any count >= 0, any
rank count >= 1, any root. There is no in-place form (the call is in place already). Each
module declares

* ``bcast`` (blocking) and ``start`` (returns the broadcast in flight: ``Test``/``Wait``);
* ``bytes_sent(rank, ranks, count, itemsize, root=0)``: bytes this rank sends, exactly;
* ``cost``: its Hockney formula; ``pipeline`` also its ``OPTIONS`` (``--segment-bytes``).

The hand-written ones are schedules (:mod:`distbench.collectives.schedule`); third-party
algorithms join through the entry-point group ``distbench.bcast``. busbw = algbw (nccl-tests'
factor for a broadcast: 1).
"""

from __future__ import annotations

from distbench.collectives.bcast import binomial, naive, native, pipeline, scatter_allgather
from distbench.collectives.collective import Collective, own_input
from distbench.registry import Algorithm, Registry

BCAST = Registry("algorithm", "distbench.bcast", {
    name: Algorithm.from_module(module, "bcast") for name, module in (
        ("native", native), ("naive", naive), ("binomial", binomial),
        ("scatter_allgather", scatter_allgather), ("pipeline", pipeline))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return 0, count


def _inputs(count, ranks, rank, root, op, in_place=False):
    return [], (own_input(count, root) if rank == root else [])


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    return own_input(count, root)


COLLECTIVE = Collective(
    name="bcast", title="Broadcast", call="MPI_Bcast", registry=BCAST, buffers=_buffers,
    expected=_expected, inputs=_inputs, bus_factor=lambda p: 1.0, bus_formula="1",
    reduction=False, rooted=True, nonblocking_call="MPI_Ibcast", single_buffer=True,
    size_meaning="the message the root sends")
