"""Reduce (``MPI_Reduce``): declaration and registry.

Algorithms: ``reduce(comm, sendbuf, recvbuf, op=None, root=0) -> None`` and ``start`` (same
arguments, the reduce in flight). On ``root``, ``recvbuf`` (like ``sendbuf``: a contiguous 1-D
NumPy or CuPy array, any count >= 0) receives the elementwise reduction over the ranks of their
``sendbuf``, which no algorithm modifies; elsewhere ``recvbuf`` is not used (the benchmark
passes an empty array). ``op`` is an ``mpi4py.MPI.Op`` (None: SUM; PROD, MIN, MAX and the
bitwise ones too); any other raises ValueError. ``bytes_sent(rank, ranks, count, itemsize,
root=0)`` and ``cost`` are each module's byte count and Hockney formula; the hand-written
algorithms are schedules (:mod:`distbench.collectives.schedule`); plug-ins join through the
entry-point group ``distbench.reduce``. busbw = algbw (nccl-tests' factor 1).
"""

from __future__ import annotations

from distbench.collectives.collective import Collective, reduced, whole_input
from distbench.collectives.reduce import binomial, naive, native, rabenseifner
from distbench.registry import Algorithm, Registry

REDUCE = Registry("algorithm", "distbench.reduce", {
    name: Algorithm.from_module(module, "reduce") for name, module in (
        ("native", native), ("naive", naive), ("binomial", binomial),
        ("rabenseifner", rabenseifner))})


def _buffers(count: int, ranks: int, rank: int, root: int, in_place: bool = False):
    return count, (count if rank == root else 0)


def _expected(count: int, ranks: int, rank: int, root: int, op: str, in_place: bool = False):
    return reduced(count, ranks, op) if rank == root else []


COLLECTIVE = Collective(
    name="reduce", title="Reduce", call="MPI_Reduce", registry=REDUCE, buffers=_buffers,
    expected=_expected, inputs=whole_input, bus_factor=lambda p: 1.0, bus_formula="1",
    rooted=True, nonblocking_call="MPI_Ireduce", size_meaning="each rank's vector")
