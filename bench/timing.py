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
    on_block: Callable[[str, int], object] | None = None,
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
        rounds: the number of blocks each callable's iterations are split into (fewer when a
            callable has fewer iterations: :func:`rounds_used`).
        on_block: called as ``on_block(name, iterations)`` before each warm-up and each block
            (the watchdog's operation, e.g.).

    Returns:
        name -> float64 array of this rank's per-iteration times in seconds, in call order;
        round r of a name holds ``round_lengths(iters, rounds_used(...))[r]`` of them.
    """
    names = list(fns)
    n_it = {n: iters[n] if isinstance(iters, dict) else iters for n in names}
    n_wu = {n: warmup[n] if isinstance(warmup, dict) else warmup for n in names}
    barrier = comm.Barrier
    for n in names:
        f = fns[n]
        if on_block is not None and n_wu[n]:
            on_block(n, n_wu[n])
        for _ in range(n_wu[n]):
            barrier()
            f()
            if sync is not None:
                sync()
    nrounds = rounds_used(n_it, rounds)
    block = {n: math.ceil(n_it[n] / nrounds) for n in names}
    out: dict[str, list[float]] = {n: [] for n in names}
    wtime = mpi().Wtime
    for r in range(nrounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            todo = min(block[n], n_it[n] - len(out[n]))
            f, acc = fns[n], out[n]
            if on_block is not None and todo:
                on_block(n, todo)
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


def rounds_used(iters: dict[str, int], rounds: int = DEFAULT_ROUNDS) -> int:
    """The number of interleaving rounds :func:`time_interleaved` makes for ``iters``."""
    return max(1, min(rounds, min(iters.values())))


def round_lengths(n: int, nrounds: int) -> list[int]:
    """Iterations of each round for a callable with ``n`` timed iterations in ``nrounds``
    rounds (blocks of ceil(n / nrounds), the last ones shorter or empty)."""
    block = math.ceil(n / nrounds)
    return [max(0, min(block, n - r * block)) for r in range(nrounds)]


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


CANARY_ELEMENTS = 1 << 16  # 256 KiB of float32: in cache, a few tens of microseconds


def canary(comm, repeats: int = 5) -> float:
    """A fixed host kernel (``np.add`` of 64 Ki float32) timed on every rank, the median of
    ``repeats``, the slowest rank's (seconds; collective): measured between sizes, it shows
    whether the machine was in a fast or a slow state when each size was."""
    MPI = mpi()
    a = np.ones(CANARY_ELEMENTS, dtype=np.float32)
    b = np.empty_like(a)
    best = []
    for _ in range(repeats):
        t0 = MPI.Wtime()
        np.add(a, a, out=b)
        best.append(MPI.Wtime() - t0)
    return float(comm.allreduce(float(np.median(best)), op=MPI.MAX))
