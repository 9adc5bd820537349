"""Schedules: every hand-written collective is written once, as a generator of communication
steps, and run either blocking or nonblocking (libNBC's round schedule, Hoefler, Lumsdaine &
Rehm 2007, "Implementation and performance analysis of non-blocking collective operations for
MPI", SC07, section 3).

A step is what one round of the algorithm sends and receives: the tuple
``(comm, sendbuf, dest, recvbuf, source, tag)`` (either buffer may be None: a send or a receive
alone), or a list of such tuples posted together. The generator does its local work (reductions,
copies) between two ``yield`` s, i.e. only once the previous step's messages have completed.

* :func:`run` is the blocking driver: a tuple becomes one ``Sendrecv``, ``Send`` or ``Recv``
  (so the blocking kernels cost what hand-written blocking code costs); a list is posted with
  ``Irecv``/``Isend`` and completed with ``Waitall``.
* :class:`Schedule` is the nonblocking one: every step is posted with ``Irecv``/``Isend``;
  ``Test()`` completes what has arrived and advances the generator, posting the next steps,
  as far as it can without waiting; ``Wait()`` finishes it. Its local work draws scratch
  from a pool of its own (:class:`~distbench.buffers.PrivatePool`), so the collectives the
  rank runs while it is in flight do not overwrite it. A rank that computes while a
  schedule is in flight calls ``Test()`` at intervals (the progress a single-threaded MPI
  program gets; see :mod:`distbench.benchmarks.overlap`). It has the methods of an
  ``mpi4py.MPI.Request`` that the benchmark uses, so the library's ``Iallreduce`` and a
  hand-written schedule are driven alike.

:func:`kernels` turns a generator function into the pair (blocking kernel, nonblocking start)
each algorithm module exports.
"""

from __future__ import annotations

import functools

from distbench.buffers import PrivatePool
from distbench.runtime import mpi


def _post(step) -> list:
    """Post one step's messages nonblocking; returns their requests (receives first)."""
    if type(step) is tuple:
        step = (step,)
    reqs = []
    for comm, sbuf, dest, rbuf, source, tag in step:
        if rbuf is not None:
            reqs.append(comm.Irecv(rbuf, source, tag))
        if sbuf is not None:
            reqs.append(comm.Isend(sbuf, dest, tag))
    return reqs


def run(steps) -> None:
    """Run a schedule to completion with blocking calls (see the module docstring)."""
    waitall = None
    for step in steps:
        if type(step) is tuple:
            comm, sbuf, dest, rbuf, source, tag = step
            if rbuf is None:
                comm.Send(sbuf, dest, tag)
            elif sbuf is None:
                comm.Recv(rbuf, source, tag)
            else:
                comm.Sendrecv(sbuf, dest, tag, rbuf, source, tag)
        else:
            waitall = waitall or mpi().Request.Waitall
            waitall(_post(step))


class Schedule:
    """A collective in progress, posted step by step with nonblocking calls.

    Args:
        steps: the generator of steps (see the module docstring); its first step is posted
            here, so the local work before it runs in the constructor.
    """

    __slots__ = ("_steps", "_reqs", "done", "_testall", "_waitall", "_pool")

    def __init__(self, steps):
        MPI = mpi()
        self._testall, self._waitall = MPI.Request.Testall, MPI.Request.Waitall
        self._steps = steps
        self._reqs: list = []
        self.done = False
        self._pool = PrivatePool()  # its scratch, untouched by other collectives meanwhile
        self._advance()

    def _advance(self) -> None:
        self._pool.enter()
        try:
            step = next(self._steps, None)
        finally:
            self._pool.leave()
        if step is None:
            self.done, self._reqs = True, []
            self._pool.release()
        else:
            self._reqs = _post(step)

    def Test(self) -> bool:
        """Complete every step whose messages have arrived, posting the next ones; True once
        the whole collective is done. Never blocks."""
        while not self.done:
            if not self._testall(self._reqs):
                return False
            self._advance()
        return True

    def Wait(self) -> None:
        """Complete the collective (blocking)."""
        while not self.done:
            self._waitall(self._reqs)
            self._advance()


def kernels(steps):
    """``(blocking kernel, nonblocking start)`` of the generator function ``steps``; both take
    ``steps``' arguments (and show its signature and docstring, so options bind by name):
    the kernel runs the schedule to completion (:func:`run`), ``start`` returns a
    :class:`Schedule` in flight."""

    @functools.wraps(steps)
    def blocking(*args, **kwargs) -> None:
        run(steps(*args, **kwargs))

    @functools.wraps(steps)
    def start(*args, **kwargs) -> Schedule:
        return Schedule(steps(*args, **kwargs))

    return blocking, start


__all__ = ["Schedule", "kernels", "run"]
