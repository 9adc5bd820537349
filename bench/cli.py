"""The ``distbench`` command line (click).

Subcommands parse and validate their options and return a :class:`~distbench.command.Job`;
they hold no measuring logic. They are imported only when invoked (:class:`LazyGroup`), so
``--help`` and one benchmark never load the others. :func:`main` then runs the job the same way
for every benchmark:

1. every rank parses its own argv; parse errors are agreed on by all ranks before anything else,
   so a bad flag gives one ``Error: ...`` line from rank 0, exit code 2, on every rank;
2. rank 0 broadcasts the parsed configuration and the other ranks compare it with theirs
   (arguments that differ between ranks are a usage error);
3. the job runs; an exception on any rank prints that rank's error and calls ``comm.Abort``,
   so the whole job ends instead of deadlocking.

Exit codes: 0 success, 1 failure (wrong results, a rank failed, divergence, a full disk),
2 usage error, 3 timeout (:mod:`distbench.watchdog`).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import warnings

import click

from distbench import __version__
from distbench.collectives import collective_names
from distbench.errors import DistbenchError, UsageError, eprint
from distbench.launcher import launched_by_mpirun, launcher_rank

# Start-up: this module imports only click and the dependency-free modules above, so
# ``distbench --help`` loads no NumPy, MPI or benchmark; the harness (runtime, watchdog,
# results, command) is imported by the functions below once a command runs (a command's own
# module imports it anyway).

# command -> (module, attribute, one-line help shown by `distbench --help` without importing)
COMMANDS = {
    "compress": ("distbench.benchmarks.compress", "compress_command",
                 "Gradient compressors: wire bytes, time, error, break-even bandwidth."),
    "sgd": ("distbench.benchmarks.sgd", "sgd_command",
            "Synchronous, local and asynchronous SGD on real data: convergence."),
    "fedavg": ("distbench.benchmarks.fedavg", "fedavg_command",
               "Federated learning: many clients, sampling, non-IID data, FedProx, SCAFFOLD."),
    "parallel": ("distbench.benchmarks.parallel", "parallel_command",
                 "A training step under data, ZeRO, tensor and pipeline parallelism."),
    "tune": ("distbench.benchmarks.tune", "tune_command",
             "The library's algorithms and distbench's: a decision, as tuning files."),
    "replay": ("distbench.benchmarks.replay", "replay_command",
               "A real job's trace through the library or any algorithm, per op."),
    "info": ("distbench.benchmarks.info", "info_command",
             "MPI library, versions, hosts, GPUs; memcpy and np.add bandwidth."),
    "report": ("distbench.analysis.report", "report_command",
               "Plots and a REPORT.md of a run or a suite folder."),
    "compare": ("distbench.analysis.compare", "compare_command",
                "B/A of time and bandwidth for the rows two runs share."),
    "model": ("distbench.analysis.prediction", "model_command",
              "Alpha-beta model: predicted times, fastest algorithm, crossovers."),
    "emulate": ("distbench.emulate.command", "emulate_command",
                "Run a subcommand on an emulated multi-node cluster."),
}


_BUILT: dict = {}  # command name -> its click command (or None), loaded on first use


class LazyGroup(click.Group):
    """A click group whose subcommands are imported when invoked: the collectives (one command
    per declaration under :mod:`distbench.collectives`) and :data:`COMMANDS`."""

    def list_commands(self, ctx) -> list[str]:
        return [*collective_names(), *COMMANDS]

    def get_command(self, ctx, name):
        # imported here, only for the command invoked: start-up and --help load no benchmark;
        # built once (click asks again while resolving)
        if name not in _BUILT:
            _BUILT[name] = self._load(name)
        return _BUILT[name]

    @staticmethod
    def _load(name):
        if name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        if name in collective_names():
            # only the command invoked is built: --help and the others load no benchmark
            from distbench.benchmarks.collective_command import build
            from distbench.collectives import get_collective

            return build(get_collective(name))
        return None

    def resolve_command(self, ctx, args):
        """As click's, with the commands listed when the name is unknown."""
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            raise click.UsageError(f"unknown command {args[0]!r} (collectives: "
                                   f"{', '.join(collective_names())}; other commands: "
                                   f"{', '.join(COMMANDS)})")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        rows = [(n, f"{n}: hand-written algorithms vs the library's call, by size.")
                for n in collective_names()]
        rows += [(n, text) for n, (_, _, text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distbench")
def cli():
    """distbench: collective algorithms, gradient compression and SGD modes, measured under MPI.

    Launch with mpirun, e.g. ``mpirun -n 4 distbench allreduce``.
    """


def _parse(argv: list[str]):
    """Run click on ``argv``; return (Job or exit code, error message or None)."""
    if not argv:
        argv = ["--help"]
    try:
        with warnings.catch_warnings():  # a check's NumPy or loader warning: the one line says it
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            result = cli.main(args=argv, prog_name="distbench", standalone_mode=False)
    except click.UsageError as exc:
        return 2, exc.format_message().splitlines()[0] if exc.format_message() else str(exc)
    except click.exceptions.Abort:
        return 1, "aborted"
    except UsageError as exc:
        return 2, str(exc)
    except click.ClickException as exc:
        return 2, exc.format_message()
    except DistbenchError as exc:
        return 1, str(exc)
    except Exception as exc:  # a bug in a command's checks: one line, not a traceback
        return 1, f"{type(exc).__name__}: {exc}"
    if _is_job(result):
        return result, None
    return (result if isinstance(result, int) else 0), None


def _is_job(result) -> bool:
    """Whether a command returned a :class:`~distbench.command.Job` (that module is loaded by
    every command that returns one; ``--help`` never loads it)."""
    command = sys.modules.get("distbench.command")
    return command is not None and isinstance(result, command.Job)


def defer_mpi_init() -> None:
    """Make ``import mpi4py.MPI`` stop initializing MPI (:func:`main` calls this first).

    Offline commands (``--help``, ``report``, ``compare``, ``model``) and the ``emulate``
    launcher then never start MPI; :func:`distbench.runtime.world` initializes it on first use,
    and mpi4py finalizes it at exit. No effect once MPI has been imported. (Here, not in the
    runtime, so that start-up imports no NumPy.)
    """
    import mpi4py

    if "mpi4py.MPI" not in sys.modules:
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = True


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits the process with the job's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    defer_mpi_init()
    job, message = _parse(argv)
    if not _is_job(job):
        sys.exit(_finish_early(job, message))
    job.argv = ["distbench", *argv]
    code = _apply_view(job)
    if code is not None:
        sys.exit(_finish_early(code, None))
    if job.inner:
        code = _check_inner(job.inner)
        if code is not None:
            sys.exit(code)
    if not job.needs_mpi:
        sys.exit(_run_offline(job))
    sys.exit(_run_mpi(job))


def _apply_view(job) -> int | None:
    """The job's ``--wide`` / ``--columns`` set for its tables; 2 after the one line when a
    name is not one of its columns (on rank 0 only under a launcher), else None."""
    view = job.table_view
    if view is None:
        return None
    from distbench.analysis.tables import table_columns  # a run loads it anyway

    try:
        view.apply(table_columns(job.name), job.name)
    except UsageError as exc:
        if (launcher_rank() or 0) == 0:
            eprint(f"Error: {exc}")
        return 2
    return None


def _check_inner(argv: list[str]) -> int | None:
    """Parse the command a job runs in turn (``emulate -- allreduce ...``) before anything is
    built for it: None if it parses, else the exit code after its one line (0 after a help)."""
    inner, message = _parse(argv)
    if _is_job(inner):
        if inner.name == "emulate":
            eprint("Error: `distbench emulate` cannot run inside an emulated cluster")
            return 2
        return None
    if message:
        eprint(f"Error: the command after `--`: {message}")
    return inner


def _finish_early(code: int, message: str | None) -> int:
    """Parse failed or the command printed help/version: agree across ranks if under MPI."""
    if launched_by_mpirun():
        from distbench.runtime import mpi, world  # MPI only under a launcher (start-up)

        comm = world()
        code = comm.allreduce(code, op=mpi().MAX)
        if comm.Get_rank() != 0:
            return code
    if message:
        eprint(f"Error: {message}")
    return code


def _run_offline(job) -> int:
    try:
        return int(job.run(None, job.argv, None) or 0)
    except UsageError as exc:
        eprint(f"Error: {exc}")
        return 2
    except DistbenchError as exc:
        eprint(f"Error: {exc}")
        return 1
    except Exception as exc:  # a bug: one line, not a traceback
        eprint(f"Error: {type(exc).__name__}: {exc}")
        return 1


def _run_mpi(job) -> int:
    # the harness and MPI: loaded once a command runs (start-up imports neither)
    from distbench import watchdog
    from distbench.runtime import mpi, world

    # the lowest level the run needs: the watchdog's deadlines need MULTIPLE (its thread sends
    # heartbeats; measured cost: docs, "Performance"), --timeout 0 needs none
    comm = world(job.options.mpi_thread_level())
    rank = comm.Get_rank()
    # Step 1: every rank parsed successfully; agree that all did (a rank whose argv failed to
    # parse is in _finish_early's allreduce with a non-zero code: the MAX tells everyone).
    if launched_by_mpirun():
        code = comm.allreduce(0, op=mpi().MAX)
        if code:
            return code
    # The watchdog runs from here on: a check that hangs is a timeout, not a hang.
    watchdog.start(comm, job.options.timeout)
    watchdog.enter("the checks before the run")
    # Step 2: rank 0's configuration is the one; the others compare (as JSON text, so a NaN
    # equals itself).
    root_config = comm.bcast(job.config if rank == 0 else None, root=0)
    differing = sorted(k for k in set(root_config) | set(job.config)
                       if _text(root_config.get(k)) != _text(job.config.get(k)))
    # Step 3: checks that need the communicator (same verdict on every rank).
    prepared = None
    if differing:
        problem = (f"arguments differ between ranks ({', '.join(differing)})", 2)
    else:
        problem, prepared = _validate(job, comm)
    problems = comm.allgather(problem)
    first = next((p for p in problems if p), None)
    if first:
        if rank == 0:
            eprint(f"Error: {first[0]}")
        watchdog.stop()
        return max(p[1] for p in problems if p)
    if comm.Get_size() == 1 and not launched_by_mpirun():
        eprint("Note: running as 1 rank; launch more with e.g. "
               f"`mpirun -n 4 {' '.join(job.argv)}`")
    # Step 4: run; any exception on any rank ends the whole job.
    try:
        code = int(job.run(comm, job.argv, prepared) or 0)
    except UsageError as exc:
        _fail(comm, f"Error: {exc}", 2)
    except DistbenchError as exc:
        _fail(comm, f"Error: {exc}", 1)
    except KeyboardInterrupt as exc:
        _fail(comm, f"Error: interrupted{f' by {exc}' if str(exc) else ''}", 130)
    except Exception as exc:  # a bug or an MPI error: say where, then end every rank
        _fail(comm, f"Error (rank {rank}): {type(exc).__name__}: {exc}", 1)
    watchdog.stop()
    return code


def _text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _validate(job, comm) -> tuple[tuple[str, int] | None, object]:
    """``((message, exit code) of the first check that fails on this rank, or None, what
    ``job.validate`` returned)``: the output folder, then ``job.validate``. The output folder is
    checked on rank 0 and its verdict broadcast before any other check, so no rank enters the
    job's checks (and their collectives) while rank 0 has already failed. Usage errors and
    failures are the checks' verdicts, which every rank reaches alike; any other exception (a
    bug, or a library's own error in a check that runs on some ranks only) ends the job at
    once, as during the run."""
    from distbench.results import check_output_folder  # the harness: loaded on use

    verdict = None
    if comm.Get_rank() == 0 and job.options.folder is not None:
        try:
            check_output_folder(job.options.folder)
        except UsageError as exc:
            verdict = (str(exc), 2)
    verdict = comm.bcast(verdict, root=0)
    if verdict is not None:
        return verdict, None
    try:
        return None, job.validate(comm) if job.validate is not None else None
    except UsageError as exc:
        return (str(exc), 2), None
    except DistbenchError as exc:
        return (str(exc), 1), None
    except Exception as exc:  # the others may be blocked in a collective of the checks
        _fail(comm, f"Error (rank {comm.Get_rank()}): {type(exc).__name__}: {exc}", 1)
    return None, None


def _fail(comm, line: str, code: int) -> None:
    """Print ``line`` and end the job. A single rank just exits; several ranks Abort, since the
    others may be blocked in a collective waiting for this one. The results are marked
    incomplete with ``line`` first (by rank 0, told through the watchdog)."""
    from distbench import watchdog  # the harness: loaded once a command runs (start-up)

    watchdog.report_failure(line.removeprefix("Error: "))
    eprint(line)
    if comm.Get_size() == 1:
        sys.exit(code)
    time.sleep(watchdog.ABORT_DELAY_S)
    comm.Abort(code)
