"""The declaration of a collective type (nccl-tests' per-collective struct, in Python).

A :class:`Collective` names the registry of its algorithms, the MPI library's own call (the
registry's ``native`` entry: the baseline every algorithm is timed against), how the send and
receive buffers are sized from the element count and the rank count, the exact result each rank
must hold after a call on the exact inputs of :mod:`distbench.check`, the bus-bandwidth factor,
and how one call is made. The benchmark (:mod:`distbench.benchmarks.collective`) and the
offline analysis (report, compare, model) take any declaration; the registry's entries carry
each algorithm's byte and cost formulas and options (:class:`distbench.registry.Algorithm`).

Sizes follow nccl-tests: ``count`` is the element count of the size the user gave (for
AllReduce the vector), rounded down to a multiple of :attr:`Collective.count_multiple`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distbench.check import Segment
from distbench.registry import Registry


@dataclass(frozen=True)
class Collective:
    """One collective type.

    Attributes:
        name: the command and the records' ``benchmark`` (``"allreduce"``).
        title: for tables (``"AllReduce"``).
        call: the library function measured as the baseline (``"MPI_Allreduce"``).
        registry: its algorithms; ``baseline`` names the library's own.
        buffers: ``buffers(count, ranks, rank, root) -> (send elements, recv elements)``.
        expected: ``expected(count, ranks, rank, root, op) -> [Segment]``: what ``recv`` holds
            after a correct call (op a name: ``"sum"``, ``"prod"``, ``"min"``, ``"max"``).
        invoke: ``invoke(fn, comm, send, recv, rank, root, op) -> callable()`` that makes one
            call (op an ``mpi4py.MPI.Op`` or None for SUM).
        bus_factor: ``bus_factor(ranks)``: busbw = algbw x this (nccl-tests).
        bus_formula: the factor as text for captions (``"2(p-1)/p"``).
        count_multiple: ``count_multiple(ranks)``: counts are rounded down to a multiple.
        reduction: whether the collective takes a reduction op.
        rooted: whether it takes a root rank.
        baseline: the registry entry that is the library's call.
    """

    name: str
    title: str
    call: str
    registry: Registry
    buffers: Callable[[int, int, int, int], tuple[int, int]]
    expected: Callable[..., list[Segment]]
    invoke: Callable
    bus_factor: Callable[[int], float]
    bus_formula: str
    count_multiple: Callable[[int], int] = lambda ranks: 1
    reduction: bool = True
    rooted: bool = False
    baseline: str = "native"

    def count(self, nbytes: int, itemsize: int, ranks: int) -> int:
        """Elements of a message of ``nbytes`` bytes, rounded down to the count multiple."""
        m = max(1, self.count_multiple(ranks))
        return nbytes // itemsize // m * m

    def algorithms(self) -> list[str]:
        """The baseline first, then every other registered algorithm."""
        return [self.baseline] + [a for a in self.registry if a != self.baseline]
