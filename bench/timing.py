"""The timed loop shared by every benchmark.

Each iteration is timed on its own with ``MPI.Wtime`` around the call, after an untimed
barrier (OSU / IMB style). Several callables compared with each other are measured
*interleaved*: the iterations are split into at most ``rounds`` blocks and the callables take
turns block by block (with the order rotated every round), so a drift of the machine's speed
(here: a fast and a slow state every 10-25 s) hits all of them alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from distbench.runtime import mpi

DEFAULT_ROUNDS = 10


def time_interleaved(
    comm,
    fns: dict[str, Callable[[], object]],
    iters: int | dict[str, int],
    warmup: int | dict[str, int] = 0,
    sync: Callable[[], object] | None = None,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, np.ndarray]:
    """Time each zero-argument callable ``iters`` times, interleaved in blocks.

    Args:
        comm: communicator whose ``Barrier`` separates iterations (every rank must call this
            with the same names and counts).
        fns: name -> callable; called with no arguments.
        iters: timed iterations, one count for all or one per name (>= 1).
        warmup: untimed iterations per name, run before the timed ones.
        sync: called after each timed call, inside the timed region (e.g. a CUDA stream
            synchronize, so device work is counted); None on the host.
        rounds: the number of blocks each callable's iterations are split into.

    Returns:
        name -> float64 array of this rank's per-iteration times in seconds, in call order.
    """
    names = list(fns)
    n_it = {n: iters[n] if isinstance(iters, dict) else iters for n in names}
    n_wu = {n: warmup[n] if isinstance(warmup, dict) else warmup for n in names}
    barrier = comm.Barrier
    for n in names:
        f = fns[n]
        for _ in range(n_wu[n]):
            barrier()
            f()
            if sync is not None:
                sync()
    nrounds = max(1, min(rounds, min(n_it.values())))
    block = {n: math.ceil(n_it[n] / nrounds) for n in names}
    out: dict[str, list[float]] = {n: [] for n in names}
    wtime = mpi().Wtime
    for r in range(nrounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            todo = min(block[n], n_it[n] - len(out[n]))
            f, acc = fns[n], out[n]
            if sync is None:
                for _ in range(todo):
                    barrier()
                    t0 = wtime()
                    f()
                    acc.append(wtime() - t0)
            else:
                for _ in range(todo):
                    barrier()
                    t0 = wtime()
                    f()
                    sync()
                    acc.append(wtime() - t0)
    return {n: np.asarray(out[n], dtype=np.float64) for n in names}


def estimate_seconds(comm, fn: Callable[[], object], calls: int = 2,
                     sync: Callable[[], object] | None = None) -> float:
    """Slowest rank's best time of ``calls`` barrier-separated calls of ``fn`` (seconds).

    Collective; every rank gets the same value, so iteration counts derived from it agree.
    """
    MPI = mpi()
    best = math.inf
    for _ in range(calls):
        comm.Barrier()
        t0 = MPI.Wtime()
        fn()
        if sync is not None:
            sync()
        best = min(best, MPI.Wtime() - t0)
    return float(comm.allreduce(best, op=MPI.MAX))


def adaptive_iters(t_call: float, default: int, budget_s: float, minimum: int = 5) -> int:
    """Iterations for a call of ``t_call`` seconds: ``default`` capped so they take about
    ``budget_s`` seconds (barrier included), but never fewer than ``minimum``."""
    per = max(t_call, 1e-6) + 2e-6
    return int(max(minimum, min(default, budget_s // per)))
