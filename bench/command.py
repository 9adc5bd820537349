"""What every subcommand is made of: the :class:`Job` it hands to :mod:`distbench.cli`, the
option groups the commands share, declared once (:class:`RunOptions`, :class:`Sizes`,
:class:`Iterations`, :class:`Device`), and the parsing of list-valued options.

A subcommand declares its configuration as a dataclass of these groups and its own options
(:mod:`distbench.declared`), is made with :func:`distbench.options.declared_command`, checks
what it can without MPI and returns a Job; it holds no measuring logic and no MPI.
:func:`distbench.cli.main` runs the job the same way for every command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field

import click

from distbench.declared import Names, arg, group
from distbench.errors import UsageError
from distbench.launcher import DEFAULT_THREAD_LEVEL, THREAD_LEVELS
from distbench.options import Size

DEFAULT_MAX_TIME = 3600.0

# --help headings shared by the commands
RUN = "Run control"
OUTPUT = "Output"
SIZES = "Message sizes"
ITERATIONS = "Iterations"
DEVICE = "Device"


@dataclass(kw_only=True)
class TableView:
    """Which columns the tables show: in a terminal those that fit its width (the least
    important hidden first, never a cell cut), every column with ``--wide`` or in piped
    output, the ones named with ``--columns``."""

    wide: bool = arg(False, "Show every column of the tables (a terminal otherwise hides the "
                     "least important that do not fit; piped output has them all).",
                     group=OUTPUT)
    columns: list | None = arg(None, "Show these columns of the tables (comma-separated "
                               "names, e.g. size,algorithm,t_max,busbw; a table's caption "
                               "names those it hid).", type=Names(), metavar="NAMES",
                               group=OUTPUT)

    def apply(self, known: list[str], command: str) -> None:
        """Check the ``--columns`` names against ``known`` (the command's tables' names) and
        make this the view of the tables printed from now on.

        Raises:
            UsageError: a name no table of ``command`` has.
        """
        from distbench.console import set_view

        unknown = [c for c in self.columns or () if c not in known]
        if unknown:
            raise UsageError(f"--columns: {unknown[0]!r} is not a column of {command}'s "
                             f"tables ({', '.join(known)})")
        set_view(self.wide, self.columns)


@dataclass(kw_only=True)
class RunOptions:
    """The options every measuring command shares: the MPI thread level, the watchdog's
    ``timeout`` and the bound on the run's estimated duration ``max_time`` (seconds), the
    results folder and what is printed."""

    thread_level: str | None = arg(
        None, "MPI_Init_thread's level. The watchdog's deadlines need 'multiple' (its thread "
        f"sends heartbeats); below it only signals are watched [default: {DEFAULT_THREAD_LEVEL},"
        " or single with --timeout 0].", choices=tuple(THREAD_LEVELS), group=RUN)
    timeout: float | None = arg(
        None, "Seconds one watched operation (a block of iterations, an evaluation interval, a "
        "step) may take before the job ends (exit 3) naming the ranks that did not arrive; 0: "
        "off [default: 60 s or 20x its estimated time, whichever is longer].", type=float,
        low=0, group=RUN)
    max_time: float = arg(
        DEFAULT_MAX_TIME, "Refuse a run estimated to take longer than this many seconds (and "
        "the time --target-ci may spend adding iterations).", low=0, low_open=True, group=RUN)
    output: str = arg("results", "Parent folder of the run folder <UTC>-<benchmark>/.",
                      type=click.Path(file_okay=False), group=OUTPUT)
    run_dir: str | None = arg(None, "Write <benchmark>.json/.csv into this exact folder (make "
                              "bench).", type=click.Path(file_okay=False), hidden=True)
    json: bool = arg(False, "Print the records as JSON on stdout (tables go to stderr).",
                     group=OUTPUT)
    quiet: bool = arg(False, "No table, no progress bar.", group=OUTPUT)
    view: TableView = group(TableView)

    @property
    def folder(self) -> str:
        """Where the results go: ``run_dir`` if given, else ``output`` (checked on rank 0
        before the run)."""
        return self.run_dir or self.output

    def mpi_thread_level(self) -> str | None:
        """The level to initialize MPI with (None: the default; ``single`` when the watchdog
        is off and nothing else needs a thread)."""
        return self.thread_level or ("single" if self.timeout == 0 else None)


@dataclass(kw_only=True)
class Sizes:
    """nccl-tests' sweep: ``-b/--min-bytes`` to ``-e/--max-bytes`` by ``-f/--step-factor``."""

    min_bytes: int = arg(8, "Smallest message in bytes (K, M, G suffixes: powers of 1024).",
                         type=Size(), flags=("-b", "--min-bytes"), group=SIZES)
    max_bytes: int = arg(64 << 20, "Largest message in bytes.", type=Size(),
                         flags=("-e", "--max-bytes"), group=SIZES)
    factor: int = arg(2, "Multiply the size by this integer at each step.", low=2,
                      flags=("-f", "--step-factor"), group=SIZES)

    def sweep(self) -> list[int]:
        """``min_bytes, min_bytes*factor, ...`` up to ``max_bytes``."""
        return size_sweep(self.min_bytes, self.max_bytes, self.factor)

    def check(self, itemsize: int = 1, dtype: str = "") -> None:
        """min <= max, and both a multiple of the element size. Raises UsageError."""
        check_size_range(self.min_bytes, self.max_bytes, self.factor, itemsize, dtype)


@dataclass(kw_only=True)
class Iterations:
    """Timed and warm-up iterations, and the interval a run may add iterations for."""

    iters: int | None = arg(None, "Timed iterations per size and algorithm [default: adaptive].",
                            type=int, low=1, flags=("-n", "--iters"), group=ITERATIONS)
    warmup: int | None = arg(None, "Untimed warm-up iterations [default: iters/10, 1..100].",
                             type=int, low=0, flags=("-w", "--warmup"), group=ITERATIONS)
    target_ci: float | None = arg(
        None, "Add iterations to a size (doubling, within --max-time) until every t_max "
        "interval is narrower than PCT percent of t_max, as pyperf's rigorous mode does.",
        type=float, low=0, high=100, low_open=True, metavar="PCT", group=ITERATIONS)


@dataclass(kw_only=True)
class Device:
    """Where the buffers live and how they reach MPI."""

    device: str = arg("cpu", "Buffers on the host (NumPy) or on this rank's GPU (CuPy).",
                      choices=("cpu", "gpu"), group=DEVICE)
    gpu_aware: str = arg("auto", "Pass GPU buffers to MPI directly (yes) or stage them through "
                         "host memory (no); auto asks the MPI library.",
                         choices=("auto", "yes", "no"), group=DEVICE)


def seed_arg(help: str = "Seed of every random choice.") -> Field:
    """``--seed``: an integer from 0 (NumPy's generators take 0 .. 2^63-1 here)."""
    return arg(0, help, low=0, high=2 ** 63 - 1)


@dataclass
class Job:
    """What a subcommand hands to :func:`distbench.cli.main`.

    Attributes:
        name: subcommand name.
        config: the parsed options as a flat JSON-serializable dict (compared across ranks).
        run: ``run(comm, argv) -> exit code``, called on every rank (``comm`` is None when
            ``needs_mpi`` is False, on the single process); ``argv`` is the command line as
            the user typed it (``["distbench", "allreduce", ...]``), recorded in results.
        options: the run-wide options (thread level, watchdog timeout, results folder); None
            for the offline commands.
        needs_mpi: False for offline commands (report, compare, model, emulate).
        validate: optional ``validate(comm)`` run on every rank before ``run``; it raises
            :class:`~distbench.errors.UsageError` for input only detectable under MPI (rank
            count, memory). The ranks agree on the outcome, so rank 0 alone prints it and every
            rank exits 2. What it returns is ``run``'s third argument.
        inner: the distbench command line this job runs in turn (``emulate -- allreduce
            ...``), parsed and checked by the CLI before this job runs (None: none).
        view: the tables' columns (``--wide``, ``--columns``) of a job without
            ``options`` (``options.view`` otherwise); None: the default view.
    """

    name: str
    config: dict
    run: Callable[..., int]
    options: RunOptions | None = None
    needs_mpi: bool = True
    validate: Callable | None = None
    argv: list = field(default_factory=list)
    inner: list | None = None
    view: TableView | None = None

    @property
    def table_view(self) -> TableView | None:
        """The view its tables follow (``view``, else the run options')."""
        return self.view or (self.options.view if self.options else None)


def size_sweep(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """``min_bytes, min_bytes*factor, ...`` up to ``max_bytes`` (nccl-tests' -b/-e/-f)."""
    out, s = [], min_bytes
    while s <= max_bytes:
        out.append(s)
        s *= factor
    return out


def check_size_range(min_bytes: int, max_bytes: int, factor: int, itemsize: int = 1,
                     dtype: str = "") -> None:
    """-b/-e/-f checks shared by the sweeps: min <= max, integer factor >= 2, both ends a
    multiple of ``itemsize`` (the element size of ``dtype``). Raises UsageError with a
    one-line message."""
    if min_bytes > max_bytes:
        raise UsageError(f"--min-bytes ({min_bytes}) is larger than --max-bytes "
                         f"({max_bytes})")
    if factor < 2:
        raise UsageError(f"--step-factor must be an integer >= 2, not {factor}")
    for s in (min_bytes, max_bytes):
        if s % itemsize:
            raise UsageError(f"size {s} B is not a multiple of {dtype}'s {itemsize} B")


__all__ = ["DEFAULT_MAX_TIME", "DEVICE", "ITERATIONS", "OUTPUT", "RUN", "SIZES", "Device",
           "Iterations", "Job", "RunOptions", "Sizes", "check_size_range", "seed_arg",
           "size_sweep"]
