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
* Persistent requests (the blocking kernels on host buffers and an ``mpi4py.MPI.Intracomm``
  itself, not a proxy): the first call of a kernel on a given (communicator, buffers, op,
  options) records its schedule as persistent requests, ``Recv_init``/``Send_init`` per step
  (the buffer specs parsed once); every later call on the same arguments runs the generator
  for its local work only and starts each step's recorded requests (``Start``/``Wait``, or
  ``Prequest.Startall``/``Request.Waitall`` for several), which saves mpi4py's per-call
  buffer parsing (:class:`Plans`). A schedule depends on the sizes, the rank count and the
  options, never on the data, so the recorded steps are the steps. Plans are cached like the
  workspaces and dropped with them (:func:`distbench.buffers.release_caches`); one recorded
  while a workspace grew, or before a workspace changed since, is recorded again (its
  requests would point at the old memory).
* :class:`Schedule` is the nonblocking one: every step is posted with ``Irecv``/``Isend``;
  ``Test()`` completes what has arrived and advances the generator, posting the next steps,
  as far as it can without waiting; ``Wait()`` finishes it. A rank that computes while a
  schedule is in flight calls ``Test()`` at intervals (the progress a single-threaded MPI
  program gets; see :mod:`distbench.benchmarks.overlap`). It has the methods of an
  ``mpi4py.MPI.Request`` that the benchmark uses, so the library's ``Iallreduce`` and a
  hand-written schedule are driven alike.

:func:`kernels` turns a generator function into the pair (blocking kernel, nonblocking start)
each algorithm module exports.
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.buffers import register_cache, workspace_generation
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


class Plans:
    """The cache of recorded schedules: key -> (workspace generation, (args, kwargs) kept
    alive, list of each step's persistent requests). ``recorded`` and ``reused`` count what happened
    (tests check the persistent path is taken and reused)."""

    LIMIT = 256  # plans kept at most (calls on ever new buffers, e.g. tests, free the oldest)

    def __init__(self):
        self.plans: dict = {}
        self.recorded = 0
        self.reused = 0

    def release(self) -> None:
        """Free every recorded request and forget every plan (local; no communication)."""
        for _, _, steps in self.plans.values():
            _free(steps)
        self.plans.clear()


PLANS = Plans()


def _free(steps) -> None:
    for reqs in steps:
        for r in reqs:
            r.Free()


_FAST: list = []  # (Intracomm type, ndarray type, IN_PLACE, Startall, Waitall), once MPI is up


def _fast():
    if not _FAST:
        MPI = mpi()
        _FAST.extend((MPI.Intracomm, np.ndarray, MPI.IN_PLACE, MPI.Prequest.Startall,
                      MPI.Request.Waitall))
    return _FAST


def _plan_key(fn, args, kwargs):
    """The cache key of a kernel call, or None where the persistent path does not apply (a
    proxy communicator, device buffers). Every call pays for it: a few type checks and ids."""
    intracomm, ndarray, in_place_, _, _ = _FAST or _fast()
    if not args or type(args[0]) is not intracomm:
        return None
    for a in args[1:]:
        if type(a) is not ndarray and a is not None and a is not in_place_:
            return None
    # the plan keeps args and kwargs alive, so their ids stay theirs while it exists
    if not kwargs:
        return (fn, *map(id, args))
    return (fn, *map(id, args), *((k, v if isinstance(v, (str, int, float)) else id(v))
                                  for k, v in sorted(kwargs.items())))


def _init(step) -> list:
    """Persistent requests of one step (receives first)."""
    if type(step) is tuple:
        step = (step,)
    reqs = []
    for comm, sbuf, dest, rbuf, source, tag in step:
        if rbuf is not None:
            reqs.append(comm.Recv_init(rbuf, source, tag))
        if sbuf is not None:
            reqs.append(comm.Send_init(sbuf, dest, tag))
    return reqs


def _record(steps) -> list:
    """Run the schedule with freshly built persistent requests; returns them per step."""
    _, _, _, startall, waitall = _fast()
    recorded = []
    for step in steps:
        reqs = _init(step)
        recorded.append(reqs)
        startall(reqs)
        waitall(reqs)
    return recorded


def _replay(steps, recorded) -> None:
    """Run the schedule's local work, starting each step's recorded requests."""
    _, _, _, startall, waitall = _FAST
    it = iter(recorded)
    for _ in steps:
        reqs = next(it)
        if len(reqs) == 1:
            r = reqs[0]
            r.Start()
            r.Wait()
        else:
            startall(reqs)
            waitall(reqs)


def run_persistent(fn, args, kwargs) -> None:
    """Run kernel generator ``fn(*args, **kwargs)`` to completion through its recorded
    persistent requests (recording them on the first call; see the module docstring), or with
    :func:`run` where they do not apply."""
    key = _plan_key(fn, args, kwargs)
    if key is None:
        run(fn(*args, **kwargs))
        return
    gen = workspace_generation()
    plan = PLANS.plans.get(key)
    if plan is not None and plan[0] == gen:
        PLANS.reused += 1
        _replay(fn(*args, **kwargs), plan[2])
        return
    if plan is not None:  # a workspace changed since: the requests point at old memory
        _free(PLANS.plans.pop(key)[2])
    recorded = _record(fn(*args, **kwargs))
    PLANS.recorded += 1
    if workspace_generation() != gen:  # a workspace grew meanwhile: record again next time
        _free(recorded)
        return
    if len(PLANS.plans) >= Plans.LIMIT:
        _free(PLANS.plans.pop(next(iter(PLANS.plans)))[2])
    PLANS.plans[key] = (gen, (args, kwargs), recorded)


register_cache(PLANS.release)


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

    __slots__ = ("_steps", "_reqs", "done", "_testall", "_waitall")

    def __init__(self, steps):
        MPI = mpi()
        self._testall, self._waitall = MPI.Request.Testall, MPI.Request.Waitall
        self._steps = steps
        self._reqs: list = []
        self.done = False
        self._advance()

    def _advance(self) -> None:
        step = next(self._steps, None)
        if step is None:
            self.done, self._reqs = True, []
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
    the kernel runs the schedule to completion (:func:`run_persistent`: through persistent
    requests where they apply), ``start`` returns a :class:`Schedule` in flight."""

    @functools.wraps(steps)
    def blocking(*args, **kwargs) -> None:
        run_persistent(steps, args, kwargs)

    @functools.wraps(steps)
    def start(*args, **kwargs) -> Schedule:
        return Schedule(steps(*args, **kwargs))

    return blocking, start


__all__ = ["PLANS", "Plans", "Schedule", "kernels", "run", "run_persistent"]
