"""The MPI library's own calls: the ``native`` entry of every collective's registry (the
baseline each algorithm is timed against) and the one table of their call shapes.

A call shape says which arguments a library call takes after its buffers: an op
(``reduction``), a root (``root``), both (``rooted reduction``) or neither (``buffers``).
:func:`library_algorithm` builds the kernel of a library call from its shape, and
:meth:`distbench.collectives.collective.Collective.invoke` binds the communicator's own method to
its arguments from the same shape, in C (``functools.partial``), so the harness adds no Python
frame around the library's call. :data:`LIBRARY_CALLS` lists every mpi4py method the
declarations use (blocking and nonblocking): the communicator proxies of
:mod:`distbench.comm` and :mod:`distbench.collectives.words` define each of them (a test checks
it; a proxy refuses an undeclared call instead of forwarding it uncounted).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from distbench.collectives.ops import sum_op


@dataclass(frozen=True)
class CallShape:
    """The arguments of a library call: ``buffers`` (1: ``(buf)``, a broadcast; 2: ``(sendbuf,
    recvbuf)``), then the op if ``op``, then the root if ``root``."""

    buffers: int
    op: bool
    root: bool

    def arguments(self, send, recv, op, root: int) -> tuple:
        """The call's positional arguments (op None is SUM; left out when the call needs no
        op and no root follows it)."""
        args = (recv,) if self.buffers == 1 else (send, recv)
        if self.op and (op is not None or self.root):
            args += (op if op is not None else sum_op(),)
        if self.root:
            args += (root,)
        return args


CALL_SHAPES = {
    "buffers": CallShape(2, op=False, root=False),
    "reduction": CallShape(2, op=True, root=False),
    "root": CallShape(1, op=False, root=True),
    "rooted reduction": CallShape(2, op=True, root=True),
}

# every mpi4py method a collective's declaration calls, with its shape
LIBRARY_CALLS = {
    "Allreduce": "reduction", "Reduce_scatter_block": "reduction", "Allgather": "buffers",
    "Bcast": "root", "Reduce": "rooted reduction", "Alltoall": "buffers",
}


def nonblocking_name(method: str) -> str:
    """``Allgather`` -> ``Iallgather``: the library's nonblocking form of ``method``."""
    return "I" + method[0].lower() + method[1:]


def bind_library_call(comm, library: tuple[str, str], send, recv, root: int, op):
    """``comm.<method>`` bound to its arguments (``library``: the kernel's ``library_call``,
    (method, shape)); a zero-argument callable."""
    method, shape = library
    return functools.partial(getattr(comm, method),
                             *CALL_SHAPES[shape].arguments(send, recv, op, root))


def library_algorithm(method: str, shape: str, package: str, candidates: tuple):
    """``(kernel, start, cost)`` of an MPI library call, the baseline ``native`` entry of a
    collective's registry.

    Args:
        method: the mpi4py method, e.g. ``"Allgather"`` (a key of :data:`LIBRARY_CALLS`);
            ``start`` calls its nonblocking form (``Iallgather``) and returns its
            ``MPI.Request``.
        shape: a key of :data:`CALL_SHAPES`: the kernel is ``(comm, sendbuf, recvbuf)``,
            ``(comm, sendbuf, recvbuf, op=None)``, ``(comm, buf, root=0)`` or ``(comm, sendbuf,
            recvbuf, op=None, root=0)``; op None is SUM. Buffers go to the library as they are
            (``MPI.IN_PLACE`` too).
        package: the collective's package, whose ``COLLECTIVE.registry`` holds ``candidates``.
        candidates: the textbook algorithms the library is taken to select among: ``cost`` is
            their coefficients stacked (the model takes the cheapest).

    Raises:
        KeyError: an unknown shape, or a method :data:`LIBRARY_CALLS` does not list.
    """
    if LIBRARY_CALLS[method] != shape:
        raise KeyError(f"{method} has the call shape {LIBRARY_CALLS[method]!r}, not {shape!r}")
    form = CALL_SHAPES[shape]

    def make(name):
        if form.buffers == 1:
            def call(comm, buf, root: int = 0):
                return getattr(comm, name)(buf, root)
        elif form.root:
            def call(comm, sendbuf, recvbuf, op=None, root: int = 0):
                return getattr(comm, name)(sendbuf, recvbuf, op or sum_op(), root)
        elif form.op:
            def call(comm, sendbuf, recvbuf, op=None):
                if op is None:  # mpi4py's default op is SUM: one lookup less per call
                    return getattr(comm, name)(sendbuf, recvbuf)
                return getattr(comm, name)(sendbuf, recvbuf, op)
        else:
            def call(comm, sendbuf, recvbuf):
                return getattr(comm, name)(sendbuf, recvbuf)
        call.__name__ = call.__qualname__ = name.lower()
        call.library_call = (name, shape)  # Collective.invoke binds the method itself
        call.__doc__ = f"``comm.{name}`` of the MPI library (buffer API)."
        return call

    def cost(nbytes, ranks, ranks_per_node=None):
        # the collective's package imports this module: its registry is looked up on use
        import importlib

        from distbench.collectives.coefficients import cheapest_of

        registry = importlib.import_module(package).COLLECTIVE.registry
        return cheapest_of(registry, candidates, nbytes, ranks, ranks_per_node)

    cost.__doc__ = (f"The library is taken to pick the cheapest of {', '.join(candidates)} "
                    "(their coefficients, stacked).")
    return make(method), make(nonblocking_name(method)), cost


__all__ = ["CALL_SHAPES", "LIBRARY_CALLS", "CallShape", "bind_library_call",
           "library_algorithm", "nonblocking_name"]
