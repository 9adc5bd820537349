"""Metric definitions (the README's "Metrics"): latency statistics over ranks and iterations,
algbw and busbw, and the 95 % confidence interval of each.

* ``t_min``, ``t_avg``, ``t_max``: minimum, mean and maximum over ranks of each rank's mean
  per-iteration time (microseconds), as OSU's ``--full`` output.
* ``p50``, ``p99``: percentiles of the per-iteration completion time, i.e. for every iteration
  the maximum over ranks (a collective is done when its slowest rank is), microseconds.
* ``algbw = S / t_max`` with S the message size in bytes; ``busbw = algbw * factor``, the
  factor each collective declares (nccl-tests' bus bandwidth: 2 (p-1) / p for AllReduce, the
  per-link traffic of an optimal ring, comparable across rank counts). GB/s = 1e9 B/s.
* Intervals: a percentile bootstrap (``scipy.stats.bootstrap``, seeded) over the iterations for
  the times, mapped through S / t for the bandwidths, and over the interleaving rounds, paired,
  for the ratio to native (both measured in the same rounds).
"""

from __future__ import annotations

import re

import numpy as np

from distbench.errors import UsageError

GB = 1e9


N_RESAMPLES = 500      # bootstrap resamples per interval
CONFIDENCE = 0.95
SPIKE_FACTOR = 10.0    # an iteration this many times the median (and ...)
SPIKE_MIN_S = 1e-3     # ... at least this much above it) is a spike
FIELDS = ("t_min_us", "t_avg_us", "t_max_us", "p50_us", "p99_us")


def gather(comm, times: np.ndarray, root: int = 0) -> np.ndarray | None:
    """Every rank's per-iteration times as a (ranks x iterations) matrix on ``root``
    (collective; None elsewhere). ``times``: 1-D seconds, the same length on every rank."""
    times = np.ascontiguousarray(times, dtype=np.float64)
    rank, size = comm.Get_rank(), comm.Get_size()
    allt = np.empty((size, times.size), dtype=np.float64) if rank == root else None
    comm.Gather(times, allt, root=root)
    return allt


def summarize(comm, times: np.ndarray, root: int = 0, seed: int = 0) -> dict | None:
    """:func:`stats_from_matrix` of one measurement, gathered to ``root`` (collective; None
    off the root)."""
    allt = gather(comm, times, root)
    return None if allt is None else stats_from_matrix(allt, seed=seed)


def stats_from_matrix(allt: np.ndarray, seed: int = 0) -> dict:
    """Statistics of a (ranks x iterations) matrix of seconds.

    Returns ``t_min_us``, ``t_avg_us``, ``t_max_us`` (min / mean / max over ranks of each
    rank's mean), ``p50_us``, ``p99_us`` (of the completion times, the max over ranks of each
    iteration), each with its 95 % interval ``<field>_ci`` ([low, high], us; a bootstrap over
    the iterations, seeded), ``iters``, and ``spikes``: iterations whose completion took more
    than ``SPIKE_FACTOR`` times the median and at least ``SPIKE_MIN_S`` more (a rank stalled,
    e.g. stopped and resumed).

    Raises:
        ValueError: no iterations.
    """
    if allt.shape[1] == 0:
        raise ValueError("no timed iterations")
    completion = allt.max(axis=0)
    point = _statistics(allt, completion, np.arange(allt.shape[1]))
    low, high = interval(lambda idx: _statistics(allt, completion, idx), allt.shape[1], seed)
    out = {}
    for k, f in enumerate(FIELDS):
        out[f] = float(point[k] * 1e6)
        out[f + "_ci"] = [float(low[k] * 1e6), float(high[k] * 1e6)]
    med = float(np.median(completion))
    out["iters"] = int(allt.shape[1])
    out["spikes"] = int(np.count_nonzero(
        (completion > SPIKE_FACTOR * med) & (completion > med + SPIKE_MIN_S)))
    return out


def _statistics(allt, completion, idx) -> np.ndarray:
    """The :data:`FIELDS` (in seconds) over the iterations ``idx`` (any leading batch shape),
    shape (5, *batch)."""
    per = np.take(allt, idx, axis=1).mean(axis=-1)  # (ranks, *batch)
    c = np.take(completion, idx)
    p50, p99 = np.percentile(c, [50, 99], axis=-1)
    return np.stack([per.min(axis=0), per.mean(axis=0), per.max(axis=0), p50, p99])


def interval(statistic, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile-bootstrap interval of ``statistic(idx)`` over ``n`` exchangeable units
    (iterations, rounds), resampled with ``scipy.stats.bootstrap`` (``N_RESAMPLES``, seeded).
    ``statistic`` takes index arrays of any leading shape and returns (k, *batch) or
    (*batch). With fewer than 2 units the interval is the point itself."""
    idx = np.arange(n)
    if n < 2:
        point = np.asarray(statistic(idx), dtype=np.float64)
        return point, point
    from scipy.stats import bootstrap  # scipy: only when a run summarizes

    res = bootstrap((idx,), lambda i, axis=-1: statistic(i), vectorized=True,
                    n_resamples=N_RESAMPLES,
                    method="percentile", confidence_level=CONFIDENCE,
                    rng=np.random.default_rng(seed), batch=100)
    return (np.asarray(res.confidence_interval.low, dtype=np.float64),
            np.asarray(res.confidence_interval.high, dtype=np.float64))


def round_means(allt: np.ndarray, rounds: list[int]) -> np.ndarray:
    """Each rank's mean over each interleaving round: (ranks x rounds), ``rounds`` the
    iterations per round in call order (:func:`distbench.timing.round_lengths`)."""
    edges = np.cumsum([0, *rounds])
    return np.stack([allt[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:],
                                                                 strict=True) if b > a], axis=1)


def ratio_ci(base: np.ndarray, other: np.ndarray, seed: int = 0) -> list[float]:
    """95 % interval of ``t_max(base) / t_max(other)`` paired over interleaving rounds:
    ``base`` and ``other`` are (ranks x rounds) :func:`round_means` measured in the same
    rounds; the rounds are resampled together (a round's machine state hits both)."""
    n = min(base.shape[1], other.shape[1])
    base, other = base[:, :n], other[:, :n]

    def stat(idx):
        return (np.take(base, idx, axis=1).mean(axis=-1).max(axis=0)
                / np.take(other, idx, axis=1).mean(axis=-1).max(axis=0))

    low, high = interval(stat, n, seed)
    return [float(low), float(high)]


def round_spread(per_round: np.ndarray) -> float:
    """(max - min) / median of the per-round t_max (max over ranks of a round's mean): how much
    the machine's speed moved while one measurement was interleaved."""
    tmax = per_round.max(axis=0)
    med = float(np.median(tmax))
    return float((tmax.max() - tmax.min()) / med) if med > 0 else 0.0


def rate_ci(nbytes: int, seconds_ci, factor: float = 1.0) -> list[float]:
    """The interval of a bandwidth ``factor * nbytes / t`` in GB/s from the interval of t
    (seconds): [factor S / t_high, factor S / t_low]."""
    lo, hi = seconds_ci
    return [factor * algbw(nbytes, hi), factor * algbw(nbytes, lo)]


def algbw(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 B/s): ``nbytes / seconds``; 0 for an empty message."""
    if seconds <= 0:
        return 0.0
    return nbytes / seconds / GB


_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|tbit)", re.IGNORECASE)
_UNIT = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


def parse_rate(text: str) -> int | None:
    """Link rate in bits per second from ``tc``-style text: ``100mbit``, ``1gbit``, ``10gbit``,
    ``2.5gbit``, ``500kbit`` (decimal units, as ``tc``); ``none`` means unshaped (returns None).

    Raises:
        UsageError: malformed or zero rate.
    """
    text = str(text).strip()
    if text.lower() == "none":
        return None
    m = _RATE.fullmatch(text)
    if not m:
        raise UsageError(f"malformed link rate {text!r} (use e.g. 100mbit, 1gbit, 10gbit or none)")
    bits = int(round(float(m.group(1)) * _UNIT[m.group(2).lower()]))
    if bits < 1000:
        raise UsageError(f"link rate {text!r} is below 1kbit")
    return bits
