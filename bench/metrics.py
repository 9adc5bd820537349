"""Metric definitions (the README's "Metrics"): latency statistics over ranks and iterations,
algbw and busbw.

* ``t_min``, ``t_avg``, ``t_max``: minimum, mean and maximum over ranks of each rank's mean
  per-iteration time (microseconds), as OSU's ``--full`` output.
* ``p50``, ``p99``: percentiles of the per-iteration completion time, i.e. for every iteration
  the maximum over ranks (a collective is done when its slowest rank is), microseconds.
* ``algbw = S / t_max`` with S the message size in bytes; ``busbw = algbw * factor``, the
  factor each collective declares (nccl-tests' bus bandwidth: 2 (p-1) / p for AllReduce, the
  per-link traffic of an optimal ring, comparable across rank counts). GB/s = 1e9 B/s.
"""

from __future__ import annotations

import numpy as np

GB = 1e9


def summarize(comm, times: np.ndarray, root: int = 0) -> dict | None:
    """Statistics of one measurement, gathered to ``root`` (collective).

    Args:
        comm: communicator of the measured ranks.
        times: this rank's per-iteration times in seconds, 1-D float64; same length on every
            rank.

    Returns:
        On ``root``: dict with ``t_min_us``, ``t_avg_us``, ``t_max_us``, ``p50_us``, ``p99_us``
        and ``iters``; None elsewhere.
    """
    times = np.ascontiguousarray(times, dtype=np.float64)
    rank, size = comm.Get_rank(), comm.Get_size()
    allt = np.empty((size, times.size), dtype=np.float64) if rank == root else None
    comm.Gather(times, allt, root=root)
    if rank != root:
        return None
    return stats_from_matrix(allt)


def stats_from_matrix(allt: np.ndarray) -> dict:
    """:func:`summarize`'s statistics from a (ranks x iterations) matrix of seconds."""
    if allt.shape[1] == 0:
        raise ValueError("no timed iterations")
    per_rank = allt.mean(axis=1)
    completion = allt.max(axis=0)
    p50, p99 = np.percentile(completion, [50, 99])
    return {
        "t_min_us": float(per_rank.min() * 1e6),
        "t_avg_us": float(per_rank.mean() * 1e6),
        "t_max_us": float(per_rank.max() * 1e6),
        "p50_us": float(p50 * 1e6),
        "p99_us": float(p99 * 1e6),
        "iters": int(allt.shape[1]),
    }


def algbw(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 B/s): ``nbytes / seconds``; 0 for an empty message."""
    if seconds <= 0:
        return 0.0
    return nbytes / seconds / GB
