"""The outline every MPI benchmark shares: the bound on a run's duration, the check of the
node's memory, the interleaved timing of calls with their intervals (:func:`time_all`), and a
:class:`Run` that opens the run (backend, environment, results folder) and emits its records as
JSON and its table at the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from distbench import watchdog
from distbench.console import fmt_bytes, print_table, progress
from distbench.errors import UsageError, eprint
from distbench.metrics import gather, ratio_ci, round_means, round_spread, stats_from_matrix
from distbench.results import RunWriter, environment, strict_record
from distbench.runtime import array_module, local_rank_and_size, mpi, proc_field
from distbench.timing import round_lengths, rounds_used, time_interleaved

TARGET_CI_ROUNDS = 6   # --target-ci doubles the iterations at most this many times


def check_duration(lower_bound_s: float, max_time: float | None, what: str) -> None:
    """Refuse a run whose optimistic duration estimate exceeds ``--max-time`` seconds.

    Raises:
        UsageError: ``lower_bound_s`` > ``max_time`` (None: no bound).
    """
    if max_time is not None and lower_bound_s > max_time:
        raise UsageError(f"{what} would take at least {duration_text(lower_bound_s)}, beyond "
                         f"--max-time {max_time:g} s; lower the iterations or raise --max-time")


def duration_text(seconds: float) -> str:
    """``95 s``, ``12.5 min``, ``27.8 h``, ``3.2 days``, ``68.8 years``."""
    for unit, scale in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def call_lower_bound(nbytes: float) -> float:
    """An optimistic time of one call moving ``nbytes``: 1 us + nbytes at 50 GB/s (s)."""
    return 1e-6 + nbytes / 50e9


def mem_available() -> int | None:
    """This node's available memory in bytes (MemAvailable), or None if unknown."""
    value = proc_field("/proc/meminfo", "MemAvailable:")
    return int(value.split()[0]) * 1024 if value else None


def check_device_and_memory(comm, device: str, per_rank: int, what: str) -> None:
    """The device exists (``--device gpu`` needs CuPy and a GPU), and the ranks of this node
    fit its available memory at ``per_rank`` bytes each (host buffers only). Same verdict on
    every rank of a node.

    Raises:
        UsageError: no such device, or ``what`` (e.g. "a 64 MiB sweep") does not fit.
    """
    array_module(device)
    _, local = local_rank_and_size(comm)
    avail = mem_available() if device == "cpu" else None
    if avail is not None and local * per_rank > avail:
        raise UsageError(f"{what} needs about {fmt_bytes(local * per_rank)} on this node "
                         f"({local} ranks) but {fmt_bytes(avail)} is available; lower "
                         "--max-bytes")


@dataclass
class Timed:
    """What :func:`time_all` measured (statistics on rank 0 only).

    Attributes:
        stats: name -> :func:`distbench.metrics.stats_from_matrix`'s statistics, with
            ``round_spread`` (rank 0; empty elsewhere).
        iters: name -> timed iterations (more than planned when ``--target-ci`` added some).
        target_met: whether every interval met ``--target-ci`` (None without it).
    """

    stats: dict = field(default_factory=dict)
    iters: dict = field(default_factory=dict)
    target_met: bool | None = None
    _rounds: dict = field(default_factory=dict)
    _matrices: dict = field(default_factory=dict)

    def ratio_ci(self, base: str, other: str, seed: int = 0) -> list[float] | None:
        """95 % interval of t_max(base) / t_max(other), paired over interleaving rounds
        (rank 0; None elsewhere)."""
        if base not in self._matrices or other not in self._matrices:
            return None
        return ratio_ci(round_means(self._matrices[base], self._rounds[base]),
                        round_means(self._matrices[other], self._rounds[other]), seed)


def time_all(comm, calls: dict[str, Callable], iters: dict[str, int], warm: dict[str, int],
             label: Callable[[str], str], per_call_s: dict[str, float], sync=None,
             target_ci: float | None = None, deadline: float | None = None) -> Timed:
    """Time ``calls`` interleaved (:func:`distbench.timing.time_interleaved`) under the
    watchdog (operation ``label(name)`` per block, estimated from ``per_call_s``), and reduce
    the times to statistics with intervals on rank 0. Collective.

    With ``target_ci`` (percent), more iterations are added (doubling, at most
    :data:`TARGET_CI_ROUNDS` times, while ``time.monotonic()`` < ``deadline``) until every
    name's t_max interval is narrower than ``target_ci`` percent of t_max.
    """
    def on_block(name, n):
        watchdog.enter(label(name), n * per_call_s.get(name, 0.0))

    out = Timed(iters=dict(iters))
    times = time_interleaved(comm, calls, iters, warm, sync=sync, on_block=on_block)
    nr = rounds_used(iters)
    out._rounds = {n: round_lengths(iters[n], nr) for n in calls}
    for attempt in range(TARGET_CI_ROUNDS + 1):
        _reduce(comm, times, out)
        if target_ci is None:
            break
        wide = comm.bcast(_too_wide(out, target_ci) if comm.Get_rank() == 0 else None, root=0)
        out.target_met = not wide
        late = deadline is not None and comm.allreduce(time.monotonic() > deadline,
                                                      op=mpi().LOR)
        if not wide or late or attempt == TARGET_CI_ROUNDS:
            break
        more = {n: out.iters[n] for n in calls}  # double each
        extra = time_interleaved(comm, calls, more, 0, sync=sync, on_block=on_block)
        nr = rounds_used(more)
        for n in calls:
            times[n] = np.concatenate([times[n], extra[n]])
            out._rounds[n] += round_lengths(more[n], nr)
            out.iters[n] += more[n]
    watchdog.idle()
    return out


def _reduce(comm, times, out: Timed) -> None:
    for n, t in times.items():
        allt = gather(comm, t)
        if allt is None:
            continue
        st = stats_from_matrix(allt)
        st["round_spread"] = round_spread(round_means(allt, out._rounds[n]))
        out.stats[n], out._matrices[n] = st, allt


def _too_wide(out: Timed, target_ci: float) -> bool:
    for st in out.stats.values():
        lo, hi = st["t_max_us_ci"]
        if st["t_max_us"] > 0 and 100.0 * (hi - lo) / st["t_max_us"] > target_ci:
            return True
    return False


class Run:
    """One benchmark run on every rank: its backend, communicators, environment and results.

    Args:
        comm: the world communicator.
        benchmark: the name in the results (``allreduce``, ``compress``, ``sgd``).
        config: the parsed options (recorded).
        argv: the command line (recorded).
        backend: :func:`distbench.runtime.get_backend`'s backend.
        options: the run-wide options (:class:`distbench.command.RunOptions`): the results go
            under ``options.output`` (into ``options.run_dir`` exactly, for ``make bench``);
            ``json`` and ``quiet`` say what is printed.
        extra_env: more environment entries to record (dataset, f*, ...).

    Attributes: ``comm`` (MPI's), ``wcomm`` (the one buffers go through: a host-staging proxy
    on a GPU without GPU-aware MPI), ``xp``, ``rank``, ``size``, ``root`` (rank 0),
    ``sync`` (stream synchronize on a GPU, else None), ``env``, ``writer``, ``options``.
    """

    def __init__(self, comm, benchmark: str, config: dict, argv: list[str], backend, options,
                 extra_env: dict | None = None):
        self.comm, self.backend, self.xp = comm, backend, backend.xp
        self.options = options
        self.wcomm = backend.wrap_comm(comm)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.root = self.rank == 0
        self.sync = backend.synchronize if backend.on_gpu else None
        self.env = environment(comm, backend, argv, extra=extra_env)
        self.writer = RunWriter(comm, benchmark, options.folder, config, self.env,
                                exact=options.run_dir is not None)
        # a run that fails still prints its records with --json (complete: false in the file)
        watchdog.track(self.writer, (lambda: print_records(self.writer.records))
                       if options.json and self.root else None)

    @property
    def shows(self) -> bool:
        """Whether this rank prints tables (rank 0 without ``--quiet``)."""
        return self.root and not self.options.quiet

    def progress(self, total: int, description: str):
        """A progress bar on rank 0's terminal (see :func:`distbench.console.progress`)."""
        return progress(total, description, enabled=self.shows)

    def table(self, title: str, columns, rows, caption: str | None = None, **kw) -> None:
        """A table on rank 0 (none with ``--quiet``; on stderr when stdout carries JSON)."""
        if self.shows:
            print_table(title, columns, rows, caption, stderr=self.options.json, **kw)

    def emit(self, title: str, columns, rows, caption: str, sections=(),
             answer: Callable[[], list[str]] | None = None) -> None:
        """The run is complete (the results say so); on rank 0: the records as JSON on stdout
        (``--json``), then the table (on stderr when stdout carries JSON; none with
        ``--quiet``) and under it the lines ``answer()`` returns (:mod:`distbench.analysis.
        answers`: computed on rank 0 only)."""
        watchdog.idle()
        self.writer.finish()
        if not self.root:
            return
        if self.options.json:
            print_records(self.writer.records)
        if self.shows:
            self.table(title, columns, rows, caption, sections=sections,
                       notes=answer() if answer else ())


    def fail(self, reason: str) -> None:
        """End a run that cannot finish (a divergence; every rank calls it alike): the results
        marked incomplete with ``reason``, the records so far on stdout with ``--json``
        (``complete: false`` in the file says why), one line on rank 0."""
        if watchdog.current() is not None:
            watchdog.current_mark(reason)  # marks the results, prints them with --json
        else:
            self.writer.mark_incomplete(reason)
            if self.root and self.options.json:
                print_records(self.writer.records)
        if self.root:
            eprint(f"Error: {reason}; results: {self.writer.path}")


def print_records(records: list[dict]) -> None:
    """The records as JSON on stdout (rank 0's ``--json``), strict as the files are."""
    json.dump([strict_record(r) for r in records], sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


__all__ = ["Run", "Timed", "call_lower_bound", "check_device_and_memory", "check_duration",
           "duration_text", "mem_available", "print_records", "time_all"]
