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
* Pure schedules: a generator that yields :data:`PURE` before its first message and hands
  every reduction to the driver as a :class:`Local` step (recursive doubling without
  MPICH's fold) is recorded as a flat list of calls (each request's ``Start``/``Wait``, each
  reduction's ufunc bound to its arrays); a later call on the same objects runs that list
  without the generator, and the kernel's memo of its last pure plan skips even the cache
  lookup (identity checks of the arguments). At 8 B and 2 ranks that is the message itself
  plus one ``np.add`` and about 0.3 us of Python.
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
import operator

import numpy as np

from distbench.buffers import (
    ACTIVE_POOLS,
    GENERATION,
    PrivatePool,
    register_cache,
)
from distbench.runtime import mpi


def _requests(step, recv: str, send: str) -> list:
    """One step's messages as requests made by the communicator methods ``recv`` and ``send``
    (receives first)."""
    if type(step) is tuple:
        step = (step,)
    reqs = []
    for comm, sbuf, dest, rbuf, source, tag in step:
        if rbuf is not None:
            reqs.append(getattr(comm, recv)(rbuf, source, tag))
        if sbuf is not None:
            reqs.append(getattr(comm, send)(sbuf, dest, tag))
    return reqs


def _post(step) -> list:
    """Post one step's messages nonblocking; returns their requests (receives first)."""
    return _requests(step, "Irecv", "Isend")


class Local:
    """A step of local work a generator hands to the driver instead of doing it inline:
    ``fn(a, b, out=out)`` (a reduction ufunc). Drivers run it at once; a schedule that yields
    :data:`PURE` first does all its local work this way, so its recorded plan replays without
    running the generator at all (the short-message path)."""

    __slots__ = ("fn", "a", "b", "out")

    def __init__(self, fn, a, b, out):
        self.fn, self.a, self.b, self.out = fn, a, b, out

    def __call__(self) -> None:
        self.fn(self.a, self.b, out=self.out)


PURE = Local(None, None, None, None)  # yielded first: "all my local work comes as Local steps"


class Plans:
    """The cache of recorded schedules: key -> (workspace generation, (args, kwargs) kept
    alive, the recorded actions (each step's persistent requests, and the :class:`Local`
    steps of a pure schedule), a pure schedule's actions as calls (:func:`_calls`) or None).
    ``recorded`` and ``reused`` count what happened (tests check the persistent path is
    taken and reused)."""

    LIMIT = 256  # plans kept at most (calls on ever new buffers, e.g. tests, free the oldest)

    def __init__(self):
        self.plans: dict = {}
        self.recorded = 0
        self.reused = 0

    def release(self) -> None:
        """Free every recorded request and forget every plan (local; no communication)."""
        for plan in self.plans.values():
            _free(plan[2])
        self.plans.clear()
        for memo in _MEMOS:  # nor may a kernel's memo keep the buffers alive
            memo[:] = [(), None, -1]


PLANS = Plans()


_MEMOS: list = []  # every kernel's memo of its last pure plan (kernels())
FREED = [0]  # bumped whenever recorded requests are freed (a kernel's memo of its last
             # plan is void then)


def _free(actions) -> None:
    FREED[0] += 1
    for reqs in actions:
        if type(reqs) is list:
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
    proxy communicator, device buffers)."""
    intracomm, ndarray, in_place_, _, _ = _FAST or _fast()
    if not args or type(args[0]) is not intracomm:
        return None
    for a in args[1:]:
        if type(a) is not ndarray and a is not None and a is not in_place_:
            return None
    return _key(fn, args, kwargs)


def _key(fn, args, kwargs):
    # the plan keeps args and kwargs alive, so their ids stay theirs while it exists
    if not kwargs:
        return (fn, *map(id, args))
    return (fn, *map(id, args), *((k, v if isinstance(v, (str, int, float)) else id(v))
                                  for k, v in sorted(kwargs.items())))


def _init(step) -> list:
    """Persistent requests of one step (receives first)."""
    return _requests(step, "Recv_init", "Send_init")


def _record(steps) -> tuple[list, bool]:
    """Run the schedule with freshly built persistent requests; returns the actions (each
    message step's requests, and the Local steps when the schedule is pure) and whether it
    is."""
    _, _, _, startall, waitall = _fast()
    recorded, pure = [], False
    for step in steps:
        if type(step) is Local:
            if step is PURE:
                pure = not recorded
            else:
                step()
                if pure:
                    recorded.append(step)
            continue
        reqs = _init(step)
        recorded.append(reqs)
        startall(reqs)
        waitall(reqs)
    return recorded, pure


def _start_wait(reqs, startall, waitall) -> None:
    if len(reqs) == 1:
        r = reqs[0]
        r.Start()
        r.Wait()
    elif len(reqs) == 2:  # a Sendrecv: two calls each beat one list conversion
        r, s = reqs
        r.Start()
        s.Start()
        s.Wait()
        r.Wait()
    else:
        startall(reqs)
        waitall(reqs)


def _replay(steps, recorded) -> None:
    """Run the schedule's local work, starting each step's recorded requests."""
    _, _, _, startall, waitall = _FAST
    it = iter(recorded)
    for step in steps:
        if type(step) is Local:
            if step is not PURE:
                step()
            continue
        _start_wait(next(it), startall, waitall)


def _calls(recorded) -> list:
    """A pure schedule's actions as zero-argument calls: each request's ``Start`` then its
    ``Wait`` (a step's sends waited for before its receives), each Local step's ufunc bound to
    its arrays (``functools.partial``: no Python frame per call)."""
    out = []
    for act in recorded:
        if type(act) is Local:
            out.append(functools.partial(act.fn, act.a, act.b, act.out))
        else:
            out += [r.Start for r in act] + [r.Wait for r in reversed(act)]
    return out


_PLANS = PLANS.plans


def run_persistent(fn, args, kwargs):
    """Run kernel generator ``fn(*args, **kwargs)`` to completion through its recorded
    persistent requests (recording them on the first call; see the module docstring), or with
    :func:`run` where they do not apply. Returns the plan it replayed (None otherwise)."""
    if ACTIVE_POOLS:  # inside a nonblocking collective's local work: its scratch
        run(fn(*args, **kwargs))  # comes from a pool no plan may point at
        return None
    # fast path: a plan for these very objects (it keeps them alive: their ids are theirs)
    plan = _PLANS.get(_key(fn, args, kwargs))
    if plan is not None and plan[0] == GENERATION[0]:
        PLANS.reused += 1
        if plan[3] is not None:  # pure: the recorded calls, no generator
            for call in plan[3]:
                call()
        else:
            _replay(fn(*args, **kwargs), plan[2])
        return plan
    key = _plan_key(fn, args, kwargs)
    if key is None:
        run(fn(*args, **kwargs))
        return None
    gen = GENERATION[0]
    if plan is not None:  # a workspace changed since: the requests point at old memory
        _free(_PLANS.pop(key)[2])
    recorded, pure = _record(fn(*args, **kwargs))
    PLANS.recorded += 1
    if GENERATION[0] != gen:  # a workspace grew meanwhile: record again next time
        _free(recorded)
        return None
    if len(_PLANS) >= Plans.LIMIT:
        _free(_PLANS.pop(next(iter(_PLANS)))[2])
    _PLANS[key] = (gen, (args, kwargs), recorded, _calls(recorded) if pure else None)
    return None


register_cache(PLANS.release)


def run(steps) -> None:
    """Run a schedule to completion with blocking calls (see the module docstring)."""
    waitall = None
    for step in steps:
        if type(step) is Local:
            if step is not PURE:
                step()
        elif type(step) is tuple:
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
            while type(step) is Local:  # local work: done now, before the next messages
                if step is not PURE:
                    step()
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
    the kernel runs the schedule to completion (:func:`run_persistent`: through persistent
    requests where they apply), ``start`` returns a :class:`Schedule` in flight."""

    last: list = [(), None, -1]  # the last pure plan run: its args, its calls, FREED then
    _MEMOS.append(last)

    @functools.wraps(steps)
    def blocking(*args, **kwargs) -> None:
        # the timed loop calls a kernel on the same objects every time: a pure plan's calls
        # again, after identity checks only (no key, no lookup)
        la, calls, freed = last
        if (not kwargs and freed == FREED[0] and len(args) == len(la)
                and all(map(operator.is_, args, la)) and not ACTIVE_POOLS):
            PLANS.reused += 1
            for call in calls:
                call()
            return
        plan = run_persistent(steps, args, kwargs)
        if plan is not None and plan[3] is not None and not kwargs:
            last[:] = [plan[1][0], plan[3], FREED[0]]

    @functools.wraps(steps)
    def start(*args, **kwargs) -> Schedule:
        return Schedule(steps(*args, **kwargs))

    return blocking, start


__all__ = ["PLANS", "PURE", "Local", "Plans", "Schedule", "kernels", "run", "run_persistent"]
