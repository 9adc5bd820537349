"""The ``distbench`` command line (click).

Subcommands parse and validate their options and return a :class:`Job`; they hold no measuring
logic. :func:`main` then runs the job the same way for every benchmark:

1. every rank parses its own argv; parse errors are agreed on by all ranks before anything else,
   so a bad flag gives one ``Error: ...`` line from rank 0, exit code 2, on every rank;
2. rank 0 broadcasts the parsed configuration and the other ranks compare it with theirs
   (arguments that differ between ranks are a usage error);
3. the job runs; an exception on any rank prints that rank's error and calls ``comm.Abort``,
   so the whole job ends instead of deadlocking.

Exit codes: 0 success, 1 failure (including wrong results), 2 usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from distbench import __version__
from distbench.runtime import DistbenchError, UsageError, defer_mpi_init, eprint


@dataclass
class Job:
    """What a subcommand hands to :func:`main`.

    Attributes:
        name: subcommand name.
        config: the parsed options (JSON-serializable; compared across ranks).
        run: ``run(comm) -> exit code``, called on every rank (or ``run(None)`` when
            ``needs_mpi`` is False, on the single process).
        needs_mpi: False for offline commands (report, compare, model).
        validate: optional ``validate(comm)`` run on every rank before ``run``; it raises
            :class:`UsageError` for input only detectable under MPI (rank count, memory). The
            ranks agree on the outcome, so rank 0 alone prints it and every rank exits 2.
    """

    name: str
    config: dict
    run: Callable[..., int]
    needs_mpi: bool = True
    validate: Callable | None = None
    argv: list = field(default_factory=list)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distbench")
def cli():
    """distbench: AllReduce algorithms, gradient compression and SGD modes, measured under MPI.

    Launch with mpirun, e.g. ``mpirun -n 4 distbench allreduce``.
    """


class Size(click.ParamType):
    """A size in bytes: an integer with an optional K, M or G suffix (powers of 1024)."""

    name = "size"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in "KMG" and text[-1:] else ""
        number = text[: len(text) - len(unit)]
        try:
            n = int(number)
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 8, 64K, 16M, 1G)", param, ctx)
        if n < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        if n == 0:
            self.fail(f"{value!r}: sizes start at 1 byte", param, ctx)
        return n * self._UNITS[unit]


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@cli.command("allreduce")
@click.option("--algo", "algos", default="all", show_default=True,
              help="Comma-separated algorithms, or 'all'. native is always measured.")
@click.option("-b", "--min-bytes", type=Size(), default="8", show_default=True,
              help="Smallest message in bytes (K, M, G suffixes: powers of 1024).")
@click.option("-e", "--max-bytes", type=Size(), default="64M", show_default=True,
              help="Largest message in bytes.")
@click.option("-f", "--step-factor", "factor", type=int, default=2, show_default=True,
              help="Multiply the size by this integer (>= 2) at each step.")
@click.option("-n", "--iters", type=int, default=None,
              help="Timed iterations per size and algorithm [default: 1000 up to 8 KiB, 100 "
                   "above, capped to ~0.12 s per size and algorithm, at least 5].")
@click.option("-w", "--warmup", type=int, default=None,
              help="Untimed warm-up iterations [default: iters/10, 1..100].")
@click.option("--dtype", type=click.Choice(["float32", "float64", "int32", "int64"]),
              default="float32", show_default=True)
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Buffers on the host (NumPy) or on this rank's GPU (CuPy).")
@click.option("--gpu-aware", type=click.Choice(["auto", "yes", "no"]), default="auto",
              show_default=True, help="Pass GPU buffers to MPI directly (yes) or stage "
              "them through host memory (no); auto asks the MPI library.")
@click.option("--ranks-per-node", type=int, default=None,
              help="Group K consecutive ranks into one node for hierarchical "
                   "[default: real nodes, COMM_TYPE_SHARED].")
@click.option("--inner", default="ring", show_default=True,
              help="Algorithm among node leaders for hierarchical.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare every algorithm's result with MPI_Allreduce (untimed).")
@click.option("--output", type=click.Path(file_okay=False), default="results",
              show_default=True, help="Parent folder of the run folder <UTC>-allreduce/.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Write allreduce.json/.csv into this exact folder (make bench's suite).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON on stdout "
              "(the table goes to stderr).")
@click.option("--quiet", is_flag=True, help="No table, no progress bar.")
def allreduce_command(algos, min_bytes, max_bytes, factor, iters, warmup, dtype, device,
                      gpu_aware, ranks_per_node, inner, check, output, run_dir, as_json, quiet):
    """Sweep AllReduce algorithms over message sizes against MPI_Allreduce.

    Reports t_avg/t_min/t_max over ranks, p99 of the per-iteration completion time, algbw,
    busbw, the time ratio to native (measured interleaved) and #wrong elements.
    """
    from distbench.harness import (
        SweepConfig,
        require_known,
        run_sweep,
        validate_mpi,
        validate_sweep,
    )

    names = require_known(_csv_list(algos))
    require_known([inner])
    cfg = SweepConfig(names, min_bytes, max_bytes, factor, iters, warmup, dtype, device,
                      gpu_aware, ranks_per_node, inner, check, output, as_json, quiet, run_dir)
    validate_sweep(cfg)
    from dataclasses import asdict

    return Job("allreduce", asdict(cfg), lambda comm: run_sweep(cfg, comm, _ARGV),
               validate=lambda comm: validate_mpi(cfg, comm))


@cli.command("info")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--gpu-aware", type=click.Choice(["auto", "yes", "no"]), default="auto",
              show_default=True)
def info_command(device, gpu_aware):
    """MPI library, versions, ranks, hosts, GPU status, and this host's single-core memcpy and
    np.add bandwidth (the physical reference for the benchmark tables)."""
    from distbench.info import run_info

    return Job("info", {"device": device, "gpu_aware": gpu_aware},
               lambda comm: run_info(comm, device, gpu_aware, _ARGV))


_ARGV: list[str] = []


def _register_commands() -> None:
    """Attach the subcommands that live in their benchmark's module."""
    from distbench.compress_bench import compress_command

    cli.add_command(compress_command)
    from distbench.sgd_bench import sgd_command

    cli.add_command(sgd_command)
    from distbench.compare import compare_command
    from distbench.model_cmd import model_command
    from distbench.report_cmd import report_command

    cli.add_command(model_command)
    cli.add_command(report_command)
    cli.add_command(compare_command)
    from distbench.emulate import emulate_command

    cli.add_command(emulate_command)


def _parse(argv: list[str]):
    """Run click on ``argv``; return (Job or exit code, error message or None)."""
    if not argv:
        argv = ["--help"]
    try:
        result = cli.main(args=argv, prog_name="distbench", standalone_mode=False)
    except click.UsageError as exc:
        return 2, exc.format_message().splitlines()[0] if exc.format_message() else str(exc)
    except click.exceptions.Abort:
        return 1, "aborted"
    except UsageError as exc:
        return 2, str(exc)
    except click.ClickException as exc:
        return 2, exc.format_message()
    if isinstance(result, Job):
        return result, None
    return (result if isinstance(result, int) else 0), None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits the process with the job's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    defer_mpi_init()
    _register_commands()
    job, message = _parse(argv)
    if not isinstance(job, Job):
        sys.exit(_finish_early(job, message))
    job.argv = ["distbench", *argv]
    _ARGV[:] = job.argv
    if not job.needs_mpi:
        sys.exit(_run_offline(job))
    sys.exit(_run_mpi(job))


def _finish_early(code: int, message: str | None) -> int:
    """Parse failed or the command printed help/version: agree across ranks if under MPI."""
    from distbench.runtime import launched_by_mpirun

    if launched_by_mpirun():
        from distbench.runtime import world

        comm = world()
        code = comm.allreduce(code, op=_mpi_max())
        if comm.Get_rank() != 0:
            return code
    if message:
        eprint(f"Error: {message}")
    return code


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX


def _run_offline(job: Job) -> int:
    try:
        return int(job.run(None) or 0)
    except UsageError as exc:
        eprint(f"Error: {exc}")
        return 2
    except DistbenchError as exc:
        eprint(f"Error: {exc}")
        return 1


def _run_mpi(job: Job) -> int:
    from distbench.runtime import launched_by_mpirun, world

    comm = world()
    rank = comm.Get_rank()
    # Step 1: every rank parsed successfully; agree that all did (a rank whose argv failed to
    # parse is in _finish_early's allreduce with a non-zero code: the MAX tells everyone).
    if launched_by_mpirun():
        code = comm.allreduce(0, op=_mpi_max())
        if code:
            return code
    # Step 2: rank 0's configuration is the one; the others compare.
    root_config = comm.bcast(job.config if rank == 0 else None, root=0)
    differing = sorted(k for k in set(root_config) | set(job.config)
                       if root_config.get(k) != job.config.get(k))
    # Step 3: checks that need the communicator (same verdict on every rank).
    problem = f"arguments differ between ranks ({', '.join(differing)})" if differing else None
    if problem is None and job.validate is not None:
        try:
            job.validate(comm)
        except UsageError as exc:
            problem = str(exc)
    problems = comm.allgather(problem)
    first = next((p for p in problems if p), None)
    if first:
        if rank == 0:
            eprint(f"Error: {first}")
        return 2
    if comm.Get_size() == 1 and not launched_by_mpirun():
        eprint("Note: running as 1 rank; launch more with e.g. "
               f"`mpirun -n 4 {' '.join(job.argv)}`")
    # Step 4: run; any exception on any rank ends the whole job.
    try:
        return int(job.run(comm) or 0)
    except UsageError as exc:
        _fail(comm, f"Error: {exc}", 2)
    except DistbenchError as exc:
        _fail(comm, f"Error: {exc}", 1)
    except KeyboardInterrupt:
        _fail(comm, "Error: interrupted", 130)
    except Exception as exc:  # a bug or an MPI error: say where, then end every rank
        _fail(comm, f"Error (rank {rank}): {type(exc).__name__}: {exc}", 1)
    return 1


def _fail(comm, line: str, code: int) -> None:
    """Print ``line`` and end the job. A single rank just exits; several ranks Abort, since the
    others may be blocked in a collective waiting for this one."""
    eprint(line)
    if comm.Get_size() == 1:
        sys.exit(code)
    comm.Abort(code)
