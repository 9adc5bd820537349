"""The outline every MPI benchmark shares: checks of the iteration counts and of the node's
memory (the size sweep's are in :mod:`distbench.command`), and a :class:`Run` that opens the
run (backend, environment, results folder) and emits its records as JSON and its table at the
end.
"""

from __future__ import annotations

import json
import sys

from distbench.console import fmt_bytes, print_table, progress
from distbench.results import RunWriter, environment
from distbench.runtime import UsageError, array_module, local_rank_and_size, proc_field


def check_iterations(iters: int | None, warmup: int | None) -> None:
    """``-n`` >= 1 and ``-w`` >= 0 (None: the benchmark's default). Raises UsageError."""
    if iters is not None and iters < 1:
        raise UsageError(f"--iters must be >= 1, not {iters}")
    if warmup is not None and warmup < 0:
        raise UsageError(f"--warmup must be >= 0, not {warmup}")


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


class Run:
    """One benchmark run on every rank: its backend, communicators, environment and results.

    Args:
        comm: the world communicator.
        benchmark: the name in the results (``allreduce``, ``compress``, ``sgd``).
        config: the parsed options (recorded).
        argv: the command line (recorded).
        backend: :func:`distbench.runtime.get_backend`'s backend.
        output: parent folder of the run folder (``--output``).
        run_dir: write ``<benchmark>.json`` into this exact folder instead (``make bench``).
        extra_env: more environment entries to record (dataset, f*, ...).

    Attributes: ``comm`` (MPI's), ``wcomm`` (the one buffers go through: a host-staging proxy
    on a GPU without GPU-aware MPI), ``xp``, ``rank``, ``size``, ``root`` (rank 0),
    ``sync`` (stream synchronize on a GPU, else None), ``env``, ``writer``.
    """

    def __init__(self, comm, benchmark: str, config: dict, argv: list[str], backend,
                 output: str, run_dir: str | None = None, extra_env: dict | None = None):
        self.comm, self.backend, self.xp = comm, backend, backend.xp
        self.wcomm = backend.wrap_comm(comm)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.root = self.rank == 0
        self.sync = backend.synchronize if backend.on_gpu else None
        self.env = environment(comm, backend, argv, extra=extra_env)
        self.writer = RunWriter(comm, benchmark, run_dir or output, config, self.env,
                                exact=run_dir is not None)

    def progress(self, total: int, description: str, quiet: bool):
        """A progress bar on rank 0's terminal (see :func:`distbench.console.progress`)."""
        return progress(total, description, enabled=self.root and not quiet)

    def emit(self, as_json: bool, quiet: bool, title: str, columns, rows, caption: str,
             sections=()) -> None:
        """On rank 0: the records as JSON on stdout (``--json``), then the table (on stderr
        when stdout carries JSON; none with ``--quiet``)."""
        if not self.root:
            return
        if as_json:
            json.dump(self.writer.records, sys.stdout, indent=1, default=str)
            sys.stdout.write("\n")
            sys.stdout.flush()
        if not quiet:
            print_table(title, columns, rows, caption, stderr=as_json, sections=sections)


__all__ = ["check_iterations", "mem_available",
           "check_device_and_memory", "Run"]
