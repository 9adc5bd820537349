"""The declaration of a collective type (nccl-tests' per-collective struct, in Python).

A :class:`Collective` names the registry of its algorithms, the MPI library's own call (the
registry's ``native`` entry: the baseline every algorithm is timed against) and its nonblocking
form, how the send and receive buffers are sized from the element count and the rank count, the
exact inputs each rank starts from and the exact result it must hold after a call (both as
:class:`~distbench.check.Segment` s of the periodic tables of :mod:`distbench.check`), the
bus-bandwidth factor, and how one call is made. The benchmark
(:mod:`distbench.benchmarks.collective`) and the offline analysis (report, compare, model) take
any declaration; the registry's entries carry each algorithm's byte and cost formulas, options
and nonblocking form (:class:`distbench.registry.Algorithm`).

Sizes follow nccl-tests: ``count`` is the element count of the size the user gave (for
AllReduce the vector; for AllGather and reduce-scatter the whole gathered or pre-scatter buffer;
for all-to-all each rank's send buffer), rounded down to a multiple of
:attr:`Collective.count_multiple`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distbench.check import Segment, input_table, reduced_table
from distbench.collectives.library import bind_library_call
from distbench.registry import Registry


@dataclass(frozen=True)
class Collective:
    """One collective type.

    Attributes:
        name: the command and the records' ``benchmark`` (``"allreduce"``).
        title: for tables (``"AllReduce"``).
        call: the library function measured as the baseline (``"MPI_Allreduce"``).
        registry: its algorithms; ``baseline`` names the library's own.
        buffers: ``buffers(count, ranks, rank, root, in_place=False) -> (send elements, recv
            elements)``; in place the send buffer is ``MPI.IN_PLACE`` (0 elements).
        expected: ``expected(count, ranks, rank, root, op, in_place=False) -> [Segment]``: what
            ``recv`` holds after a correct call (op a name: ``"sum"``, ``"prod"``, ...).
        inputs: ``inputs(count, ranks, rank, root, op, in_place=False) -> (send segments, recv
            segments)``: the exact inputs written into each buffer before a call (the rest of
            ``recv`` holds a sentinel).
        bus_factor: ``bus_factor(ranks)``: busbw = algbw x this (nccl-tests).
        bus_formula: the factor as text for captions (``"2(p-1)/p"``).
        count_multiple: ``count_multiple(ranks)``: counts are rounded down to a multiple.
        reduction: whether the collective takes a reduction op (``--op``).
        rooted: whether it takes a root rank (``--root``).
        in_place: whether it has an ``MPI_IN_PLACE`` form (``--in-place``).
        nonblocking_call: the library's nonblocking call (``"MPI_Iallreduce"``).
        size_meaning: what the message size is, for help texts and captions.
        single_buffer: the call takes one buffer, ``recv`` (a broadcast), not (send, recv).
        baseline: the registry entry that is the library's call.
    """

    name: str
    title: str
    call: str
    registry: Registry
    buffers: Callable[..., tuple[int, int]]
    expected: Callable[..., list[Segment]]
    inputs: Callable[..., tuple[list[Segment], list[Segment]]]
    bus_factor: Callable[[int], float]
    bus_formula: str
    count_multiple: Callable[[int], int] = lambda ranks: 1
    reduction: bool = True
    rooted: bool = False
    in_place: bool = False
    nonblocking_call: str = ""
    size_meaning: str = "the vector"
    single_buffer: bool = False
    baseline: str = "native"

    def count(self, nbytes: int, itemsize: int, ranks: int) -> int:
        """Elements of a message of ``nbytes`` bytes, rounded down to the count multiple."""
        m = max(1, self.count_multiple(ranks))
        return nbytes // itemsize // m * m

    def algorithms(self) -> list[str]:
        """The baseline first, then every other registered algorithm."""
        return [self.baseline] + [a for a in self.registry if a != self.baseline]

    def invoke(self, fn, comm, send, recv, rank: int, root: int, op) -> Callable[[], object]:
        """A callable making one call of ``fn`` (a kernel or a nonblocking start) on these
        buffers: ``fn(comm, send, recv)`` (``fn(comm, recv)`` for a single buffer) with
        ``op=`` (an ``mpi4py.MPI.Op``; left out for SUM, None) and ``root=`` where the
        collective takes them."""
        library = getattr(fn, "library_call", None)
        comm = getattr(fn, "on_comm", comm)  # a library call forced on a communicator of its own
        if library is not None:  # the library's own call, bound in C (collectives.library)
            return bind_library_call(comm, library, send, recv, root, op)
        kwargs = {}
        if self.reduction and op is not None:
            kwargs["op"] = op
        if self.rooted:
            kwargs["root"] = root
        if self.single_buffer:
            return (lambda: fn(comm, recv, **kwargs)) if kwargs else (lambda: fn(comm, recv))
        return (lambda: fn(comm, send, recv, **kwargs)) if kwargs else (
            lambda: fn(comm, send, recv))


# --------------------------------------------------------------------------- shared pieces
# The declarations' buffer, input and expected-result functions are built from these.

def own_input(count: int, rank: int, op: str = "sum", lo: int = 0, phase: int = 0
              ) -> list[Segment]:
    """Rank ``rank``'s exact inputs v(phase + i, rank) for i = 0..count-1, written from element
    ``lo`` on (:func:`distbench.check.input_table`)."""
    return [Segment(lo, lo + count, input_table(rank, op), phase)]


def whole_input(count, ranks, rank, root, op, in_place=False):
    """The inputs of a collective whose send buffer is the whole count (AllReduce,
    reduce-scatter, reduce, all-to-all): in ``send``, or in ``recv`` in place."""
    op = op or "sum"
    return ([], own_input(count, rank, op)) if in_place else (own_input(count, rank, op), [])


def reduced(count: int, ranks: int, op: str, phase: int = 0) -> list[Segment]:
    """The reduction over every rank of the inputs from element ``phase`` on, count elements."""
    return [Segment(0, count, reduced_table(range(ranks), op), phase)]


def blocks_of_ranks(count: int, ranks: int, phase_of) -> list[Segment]:
    """``ranks`` blocks of count/p elements, block j holding rank j's inputs from element
    ``phase_of(j)`` on (what AllGather and all-to-all deliver)."""
    b = count // ranks
    return [Segment(j * b, (j + 1) * b, input_table(j), phase_of(j)) for j in range(ranks)]
