"""How much of a nonblocking collective hides behind computation, measured as OSU's
nonblocking collective benchmarks do (Ohio State University, OSU Micro-Benchmarks 7,
``osu_iallreduce`` and friends, "overlap" = 100 (1 - (t_total - t_compute) / t_pure)):

* ``t_pure``: start + wait of the collective with nothing in between (the sweep's timing);
* ``t_compute``: a host computation calibrated on each rank to take ``ratio`` x t_pure
  (:class:`Compute`: a NumPy kernel on a cache-resident array, not a sleep), timed alone;
* ``t_total``: start, the same computation, wait;
* ``overlap_pct = 100 * max(0, 1 - (t_total - t_compute) / t_pure)``, clamped to [0, 100].

Each time is the median over the iterations of the slowest rank's time (the completion time's
p50; means are at the mercy of the scheduler's millisecond preemptions on a shared machine,
which fall on the short computations and calls alike). During the
computation the rank calls the request's ``Test()`` every ``progress_s`` seconds of compute
(OSU's ``-t`` probes): that is all the progress a single-threaded program gives the library's
nonblocking collectives (Open MPI's libnbc advances only inside MPI calls) and the only way a
hand-written schedule (:class:`distbench.collectives.schedule.Schedule`) advances; its local
work (reductions, copies) runs inside those calls. ``t_compute`` is timed without the
``Test()`` calls, so their cost, and any work done in them, counts as communication that was
not hidden. With ``ratio = 0`` nothing is computed: ``t_total`` is ``t_pure`` (measured once)
and the overlap is 0.
"""

from __future__ import annotations

import numpy as np

from distbench.runtime import mpi
from distbench.timing import time_interleaved

WORK_ELEMENTS = 8192  # float64: three 64 KiB arrays, resident in L2


def _noop() -> None:
    return None


class Compute:
    """A host computation in units of ``np.add`` on :data:`WORK_ELEMENTS` float64 (a few
    microseconds each), with a probe called every ``every`` units."""

    def __init__(self):
        self.a = np.full(WORK_ELEMENTS, 1.0)
        self.b = np.full(WORK_ELEMENTS, 2.0)
        self.c = np.empty(WORK_ELEMENTS)
        self.unit_s = self.calibrate()

    def run(self, units: int, probe=_noop, every: int = 1) -> None:
        """``units`` units of work, calling ``probe()`` after every ``every`` of them."""
        add, a, b, c = np.add, self.a, self.b, self.c
        for i in range(1, units + 1):
            add(a, b, out=c)
            if i % every == 0:
                probe()

    def units_for(self, seconds: float, repeats: int = 3) -> int:
        """Units that take about ``seconds`` on this rank: from :meth:`calibrate`'s rate, then
        rescaled once by the median of ``repeats`` runs of that many (a unit's time depends on
        how long the loop runs: 1.5-2x here between 1 ms and 20 ms)."""
        units = max(1, round(seconds / self.unit_s))
        wtime = mpi().Wtime
        took = []
        for _ in range(repeats):
            t0 = wtime()
            self.run(units)
            took.append(wtime() - t0)
        return max(1, round(units * seconds / max(float(np.median(took)), 1e-9)))

    def calibrate(self, seconds: float = 0.01, repeats: int = 3) -> float:
        """Seconds per unit on this rank: the median of ``repeats`` runs of about ``seconds``
        each (short runs here go 1.5-2x faster per unit than long ones, so the runs are as long
        as a large message's computation)."""
        wtime = mpi().Wtime
        t0 = wtime()
        self.run(100)
        units = max(100, int(seconds / max((wtime() - t0) / 100, 1e-9)))
        per = []
        for _ in range(repeats):
            t0 = wtime()
            self.run(units)
            per.append((wtime() - t0) / units)
        return float(np.median(per))


def completion_p50(comm, times: np.ndarray) -> float:
    """The median over iterations of the slowest rank's time (seconds; collective, the same on
    every rank; ``times`` the same length everywhere)."""
    times = np.ascontiguousarray(times, dtype=np.float64)
    slowest = np.empty_like(times)
    comm.Allreduce(times, slowest, op=mpi().MAX)
    return float(np.median(slowest)) if slowest.size else 0.0


def overlap_pct(t_pure: float, t_compute: float, t_total: float) -> float:
    """OSU's overlap in percent, clamped to [0, 100] (0 for a zero pure time)."""
    if t_pure <= 0:
        return 0.0
    return float(min(100.0, max(0.0, 100.0 * (1.0 - (t_total - t_compute) / t_pure))))


def measure(comm, starts: dict, pure: dict, iters: dict, warm: dict, ratio: float,
            progress_s: float, sync=None, on_block=None) -> dict:
    """The overlap of each nonblocking collective (collective over ``comm``).

    Args:
        starts: name -> callable starting the collective and returning its request
            (``Test()``/``Wait()``).
        pure: name -> t_pure in seconds (the median completion time of start + wait).
        iters, warm: name -> timed and warm-up iterations (as for the pure timing).
        ratio: computation length in units of t_pure (OSU: 1); 0 computes nothing.
        progress_s: seconds of computation between two ``Test()`` calls.
        sync: called after each timed iteration (a GPU stream synchronize), or None.
        on_block: ``on_block((name, "compute" | "total"), iterations)`` before each block of
            iterations (the watchdog's operation), or None.

    Returns:
        name -> ``{"t_pure_us", "t_compute_us", "t_total_us", "overlap_pct",
        "compute_units", "test_every"}``.
    """
    if ratio <= 0:
        return {n: {"t_pure_us": t * 1e6, "t_compute_us": 0.0, "t_total_us": t * 1e6,
                    "overlap_pct": 0.0, "compute_units": 0, "test_every": None}
                for n, t in pure.items()}
    work = Compute()
    every = max(1, round(progress_s / work.unit_s))
    units = {n: work.units_for(ratio * t) for n, t in pure.items()}
    fns = {}
    for n, start in starts.items():
        fns[(n, "compute")] = lambda u=units[n]: work.run(u, _noop, every)
        fns[(n, "total")] = lambda u=units[n], start=start: _overlapped(work, start, u, every)
    times = time_interleaved(comm, fns, {k: iters[k[0]] for k in fns},
                             {k: warm[k[0]] for k in fns}, sync=sync, on_block=on_block)
    out = {}
    for n, t_pure in pure.items():
        t_compute = completion_p50(comm, times[(n, "compute")])
        t_total = completion_p50(comm, times[(n, "total")])
        out[n] = {"t_pure_us": t_pure * 1e6, "t_compute_us": t_compute * 1e6,
                  "t_total_us": t_total * 1e6,
                  "overlap_pct": overlap_pct(t_pure, t_compute, t_total),
                  "compute_units": units[n], "test_every": every}
    return out


def _overlapped(work: Compute, start, units: int, every: int) -> None:
    """Start, compute with ``Test()`` probes, wait."""
    req = start()
    work.run(units, req.Test, every)
    req.Wait()


__all__ = ["Compute", "completion_p50", "measure", "overlap_pct"]
