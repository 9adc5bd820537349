"""What every subcommand is made of: the :class:`Job` it hands to :mod:`distbench.cli`, the
:class:`Size` parameter type, and the click option blocks the benchmarks share (sizes,
iterations, device, output, algorithm options declared next to the algorithms).

A subcommand parses and checks its options and returns a Job; it holds no measuring logic and
no MPI. :func:`distbench.cli.main` runs the job the same way for every command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from distbench.registry import Option, Range, in_range, range_text
from distbench.runtime import DEFAULT_THREAD_LEVEL, THREAD_LEVELS, UsageError, numpy_dtype


@dataclass
class Job:
    """What a subcommand hands to :func:`distbench.cli.main`.

    Attributes:
        name: subcommand name.
        config: the parsed options (JSON-serializable; compared across ranks).
        run: ``run(comm, argv) -> exit code``, called on every rank (``comm`` is None when
            ``needs_mpi`` is False, on the single process); ``argv`` is the command line as
            the user typed it (``["distbench", "allreduce", ...]``), recorded in results.
        needs_mpi: False for offline commands (report, compare, model, emulate).
        validate: optional ``validate(comm)`` run on every rank before ``run``; it raises
            :class:`~distbench.runtime.UsageError` for input only detectable under MPI (rank
            count, memory). The ranks agree on the outcome, so rank 0 alone prints it and every
            rank exits 2.
        timeout: the watchdog's ``--timeout`` (None: its default per operation; 0: off).
        output: the folder results go under, checked on rank 0 before the run.
    """

    name: str
    config: dict
    run: Callable[..., int]
    needs_mpi: bool = True
    validate: Callable | None = None
    argv: list = field(default_factory=list)
    timeout: float | None = None
    output: str | None = None


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


def size_sweep(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """``min_bytes, min_bytes*factor, ...`` up to ``max_bytes`` (nccl-tests' -b/-e/-f)."""
    out, s = [], min_bytes
    while s <= max_bytes:
        out.append(s)
        s *= factor
    return out


def check_size_range(min_bytes: int, max_bytes: int, factor: int, dtype: str | None = None
                     ) -> None:
    """-b/-e/-f checks shared by the sweeps: min <= max, integer factor >= 2, both ends a
    multiple of ``dtype``'s item size (None: any byte count). Raises UsageError with a
    one-line message."""
    itemsize = 1 if dtype is None else numpy_dtype(dtype).itemsize
    if min_bytes > max_bytes:
        raise UsageError(f"--min-bytes ({min_bytes}) is larger than --max-bytes "
                         f"({max_bytes})")
    if factor < 2:
        raise UsageError(f"--step-factor must be an integer >= 2, not {factor}")
    for s in (min_bytes, max_bytes):
        if s % itemsize:
            raise UsageError(f"size {s} B is not a multiple of {dtype}'s {itemsize} B")


class Number(click.ParamType):
    """A finite real number (``nan`` and ``inf`` are refused), optionally bounded: ``Number(
    low=0, low_open=True)`` is > 0, ``Number(0, 1, low_open=True)`` is in (0, 1]."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.integer = integer

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.integer:
            if x != int(x):
                self.fail(f"{value!r} is not an integer", param, ctx)
            x = int(x)
        lo_bad = self.low is not None and (x < self.low or (self.low_open and x == self.low))
        hi_bad = self.high is not None and (x > self.high or (self.high_open and x == self.high))
        if lo_bad or hi_bad:
            self.fail(f"{value!r} is not {self.range_text()}", param, ctx)
        return x

    def range_text(self) -> str:
        return range_text(self.low, self.high, self.low_open, self.high_open)


FINITE = Number()
POSITIVE = Number(0, low_open=True)
NON_NEGATIVE = Number(0)
POSITIVE_INT = Number(1, integer=True)
NON_NEGATIVE_INT = Number(0, integer=True)
DEFAULT_MAX_TIME = 3600.0


@dataclass(kw_only=True)
class RunOptions:
    """The parsed options every measuring command shares: :func:`watch_options` (``timeout``,
    ``max_time`` in seconds) and :func:`output_options` (``output`` folder, ``json``, ``quiet``).
    A command's config dataclass derives from it."""

    timeout: float | None = None
    max_time: float = DEFAULT_MAX_TIME
    output: str = "results"
    json: bool = False
    quiet: bool = False


_THREAD_LEVEL: list = [None]  # the --thread-level of the command being parsed (cli reads it)


def requested_thread_level() -> str | None:
    """The ``--thread-level`` the parsed command asked for (None: not given)."""
    return _THREAD_LEVEL[0]


def _remember_thread_level(ctx, param, value):
    _THREAD_LEVEL[0] = value
    return value


def thread_level_option():
    """``--thread-level``: the level MPI is initialized with (before any MPI call, so the
    command line says it, not the config; recorded in the run's environment)."""
    return click.option(
        "--thread-level", type=click.Choice(list(THREAD_LEVELS)), default=None,
        expose_value=False, is_eager=True, callback=_remember_thread_level,
        help="MPI_Init_thread's level. The watchdog's deadlines need 'multiple' (its thread "
        "sends heartbeats); below it only signals are watched [default: "
        f"{DEFAULT_THREAD_LEVEL}, or single with --timeout 0].")


def watch_options(what: str = "operation"):
    """``--timeout`` (the watchdog's deadline per operation), ``--max-time`` (the bound on
    a run's estimated duration) and ``--thread-level`` (:func:`thread_level_option`)."""
    return [
        thread_level_option(),
        click.option("--timeout", type=NON_NEGATIVE, default=None,
                     help=f"Seconds one {what} may take before the job ends (exit 3) naming "
                     "the ranks that did not arrive; 0: off [default: 60 s or 20x its estimated "
                     "time, whichever is longer]."),
        click.option("--max-time", type=POSITIVE, default=DEFAULT_MAX_TIME, show_default=True,
                     help="Refuse a run estimated to take longer than this many seconds (and "
                     "the time --target-ci may spend adding iterations)."),
    ]


def target_ci_option():
    """``--target-ci PCT``: add iterations until every interval is narrow enough."""
    return click.option("--target-ci", type=Number(0, 100, low_open=True), default=None,
                        metavar="PCT", help="Add iterations to a size (doubling, within "
                        "--max-time) until every t_max interval is narrower than PCT percent "
                        "of t_max, as pyperf's rigorous mode does.")


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in value.split(",") if v.strip()]


def apply(fn, options: list):
    """Decorate ``fn`` with the click ``options`` in order (the first one shows first)."""
    for o in reversed(options):
        fn = o(fn)
    return fn


def with_options(options: list):
    """A decorator applying the click ``options`` (:func:`apply`), for use beside single
    ``@click.option`` lines."""
    return lambda fn: apply(fn, options)


def size_options(min_bytes: str, max_bytes: str, factor: int, min_help: str, max_help: str,
                 factor_help: str = "Multiply the size by this integer (>= 2) at each step."):
    """``-b/--min-bytes``, ``-e/--max-bytes``, ``-f/--step-factor`` (nccl-tests' sweep)."""
    return [
        click.option("-b", "--min-bytes", type=Size(), default=min_bytes, show_default=True,
                     help=min_help),
        click.option("-e", "--max-bytes", type=Size(), default=max_bytes, show_default=True,
                     help=max_help),
        click.option("-f", "--step-factor", "factor", type=int, default=factor,
                     show_default=True, help=factor_help),
    ]


def iteration_options(iters_help: str, warmup_help: str, warmup_default: int | None = None):
    """``-n/--iters`` (default adaptive) and ``-w/--warmup``."""
    return [
        click.option("-n", "--iters", type=int, default=None, help=iters_help),
        click.option("-w", "--warmup", type=int, default=warmup_default,
                     show_default=warmup_default is not None, help=warmup_help),
    ]


DEVICE_HELP = "Buffers on the host (NumPy) or on this rank's GPU (CuPy)."
GPU_AWARE_HELP = ("Pass GPU buffers to MPI directly (yes) or stage them through host memory "
                  "(no); auto asks the MPI library.")


def device_options():
    """``--device cpu|gpu`` and ``--gpu-aware auto|yes|no``."""
    return [
        click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu",
                     show_default=True, help=DEVICE_HELP),
        click.option("--gpu-aware", type=click.Choice(["auto", "yes", "no"]), default="auto",
                     show_default=True, help=GPU_AWARE_HELP),
    ]


def output_options(benchmark: str, json_help: str = "Print the records as JSON on stdout "
                   "(the table goes to stderr).", quiet_help: str = "No table, no progress bar."):
    """``--output DIR``, ``--json``, ``--quiet``."""
    return [
        click.option("--output", type=click.Path(file_okay=False), default="results",
                     show_default=True,
                     help=f"Parent folder of the run folder <UTC>-{benchmark}/."),
        click.option("--json", "as_json", is_flag=True, help=json_help),
        click.option("--quiet", is_flag=True, help=quiet_help),
    ]


def compressor_options(density_help: str = "Kept fraction for topk and randk, in (0, 1].",
                       error_feedback_help: str = "Residual memory around every method "
                       "[default: on for the biased ones: sign, topk, randk]."):
    """``--density``, ``--bits`` and ``--error-feedback/--no-error-feedback``: the options of
    the compressors (every benchmark that compresses)."""
    return [
        click.option("--density", type=float, default=0.01, show_default=True,
                     help=density_help),
        click.option("--bits", type=int, default=8, show_default=True,
                     help="Bits per element for qsgd: 2, 4 or 8 (s = 2^(bits-1) - 1 levels)."),
        click.option("--error-feedback/--no-error-feedback", default=None,
                     help=error_feedback_help),
    ]


def problem_options():
    """``--model``, ``--width``, ``--l2``, ``--dataset``: the learning problem of the benchmarks
    that train (:class:`distbench.algorithms.sgd.Problem`)."""
    return [
        click.option("--model", type=click.Choice(["softmax", "mlp"]), default="softmax",
                     show_default=True,
                     help="Softmax regression (convex, f* known) or a ReLU MLP."),
        click.option("--width", type=int, default=64, show_default=True,
                     help="MLP hidden units."),
        click.option("--l2", type=NON_NEGATIVE, default=None,
                     help="L2 coefficient on the weights [default: 1e-3 softmax, 1e-4 mlp]."),
        click.option("--dataset", default="digits", show_default=True,
                     help="digits, breast_cancer (bundled with scikit-learn), or a PATH.csv "
                          "(label in the last column, optional header) or PATH.npz (X, y)."),
    ]


def training_options(what: str = "time and bytes"):
    """``--target-loss``, ``--target-acc``, ``--dtype``, ``--blas-threads``: the targets and
    arithmetic of the benchmarks that train (``what``: what is reported until the target)."""
    return [
        click.option("--target-loss", type=FINITE, default=None,
                     help=f"Report {what} until the training loss is <= this."),
        click.option("--target-acc", type=Number(0, 1, low_open=True), default=None,
                     help=f"Report {what} until the test accuracy is >= this."),
        click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
                     show_default=True),
        click.option("--blas-threads", type=int, default=1, show_default=True,
                     help="BLAS threads per rank."),
    ]


def check_training_options(cfg) -> None:
    """The values of :func:`problem_options` and :func:`training_options` that are never valid
    (``cfg`` has their attributes). Raises UsageError (NaN and infinities included)."""
    in_range("--width", 1)(cfg.width)
    in_range("--blas-threads", 1)(cfg.blas_threads)
    if cfg.l2 is not None:
        in_range("--l2", 0)(cfg.l2)
    if cfg.target_acc is not None:
        in_range("--target-acc", 0, 1, low_open=True)(cfg.target_acc)
    if cfg.target_loss is not None:
        in_range("--target-loss")(cfg.target_loss)


def seed_option(help: str = "Seed of every random choice (data order, compressors)."):
    """``--seed`` (an integer, default 0)."""
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _click_type(opt: Option):
    """A :class:`Number` of the option's range when its check is a
    :class:`~distbench.registry.Range` (refused while parsing), else the plain type."""
    r = opt.check
    if isinstance(r, Range) and opt.type in (int, float):
        return Number(r.low, r.high, r.low_open, r.high_open, integer=opt.type is int)
    return _CLICK_TYPES.get(opt.type, click.STRING)


def algorithm_options(declared: dict[str, Option]):
    """One click option per algorithm option declared in a registry (``--inner``, ...)."""
    return [click.option(opt.flag, opt.name, type=_click_type(opt), default=opt.default,
                         show_default=opt.default is not None, help=_with_range(opt))
            for opt in declared.values()]


def _with_range(opt: Option) -> str:
    """The option's help, ending with its range when its check is a Range."""
    r = opt.check
    if not isinstance(r, Range):
        return opt.help
    return f"{opt.help} [{range_text(r.low, r.high, r.low_open, r.high_open)}]"


def check_algorithm_options(declared: dict[str, Option], values: dict) -> None:
    """Run each declared option's ``check`` on the value given (UsageError on a bad one)."""
    for name, opt in declared.items():
        if values.get(name) is not None and opt.check is not None:
            opt.check(values[name])


def check_algorithm_options_size(declared: dict[str, Option], values: dict, ranks: int) -> None:
    """Run each declared option's ``check_size`` against the rank count."""
    for name, opt in declared.items():
        if values.get(name) is not None and opt.check_size is not None:
            opt.check_size(values[name], ranks)


# ----------------------------------------------------------------------------- a training step

STEP_SCHEDULES = ("1f1b", "gpipe")  # distbench.algorithms.parallel.pipeline.SCHEDULES


def step_options():
    """The model, layout and accelerator of a training step (``distbench parallel`` measures
    it, ``distbench model --step`` predicts it): a GPT-style transformer by shape or size,
    D x T x P layouts, ZeRO stages, bucket caps, overlap, the pipeline schedule, --tflops."""
    return [
        click.option("--layers", type=POSITIVE_INT, default=8, show_default=True, help="L."),
        click.option("--hidden", type=POSITIVE_INT, default=512, show_default=True,
                     help="H."),
        click.option("--heads", type=POSITIVE_INT, default=8, show_default=True, help="A."),
        click.option("--seq", type=POSITIVE_INT, default=512, show_default=True,
                     help="S, tokens per sequence."),
        click.option("--vocab", type=POSITIVE_INT, default=50257, show_default=True,
                     help="V."),
        click.option("--micro-batch", type=POSITIVE_INT, default=1, show_default=True,
                     help="b, sequences per micro-batch."),
        click.option("--micro-batches", type=POSITIVE_INT, default=4, show_default=True,
                     help="m, micro-batches per step (gradients accumulate over them)."),
        click.option("--global-batch", type=POSITIVE_INT, default=None,
                     help="B, sequences per step over all data-parallel ranks: each layout "
                          "runs m = B / (D b) micro-batches, so that layouts compare on the "
                          "same batch (instead of --micro-batches)."),
        click.option("--params", type=POSITIVE, default=None,
                     help="A model of this many parameters, its --layers evenly split "
                          "(instead of --hidden/--heads/--vocab)."),
        click.option("--param-bytes", type=click.Choice(["1", "2", "4", "8"]), default="2",
                     show_default=True,
                     help="Bytes of a parameter and a gradient (2: fp16/bf16)."),
        click.option("--dp", type=POSITIVE_INT, default=None,
                     help="D, data-parallel ranks [default: ranks / (T P)]."),
        click.option("--tp", type=POSITIVE_INT, default=1, show_default=True,
                     help="T, tensor-parallel ranks (inside a node)."),
        click.option("--pp", type=POSITIVE_INT, default=1, show_default=True,
                     help="P, pipeline stages."),
        click.option("--layouts", default=None, metavar="DxTxP,...",
                     help="Several layouts, e.g. 4x1x1,2x2x1,1x2x2,1x1x4 (instead of --dp/"
                          "--tp/--pp); all: every layout of the ranks that fits the model."),
        click.option("--zero", default="0", show_default=True, metavar="STAGES",
                     help="ZeRO stages, comma-separated (0: plain data parallelism)."),
        click.option("--bucket-mb", default="25", show_default=True, metavar="MIB,...",
                     help="Gradient bucket caps in MiB, comma-separated (PyTorch DDP: 25)."),
        click.option("--overlap/--no-overlap", default=True, show_default=True,
                     help="Start each bucket's exchange while the backward goes on."),
        click.option("--schedule", type=click.Choice(list(STEP_SCHEDULES)), default="1f1b",
                     show_default=True, help="Pipeline schedule."),
        click.option("--tflops", type=POSITIVE, default=100.0, show_default=True,
                     help="The accelerator's speed, 1e12 FLOP/s."),
    ]


def step_model(layers, hidden, heads, seq, vocab, micro_batch, micro_batches, params,
               param_bytes) -> dict:
    """The keyword arguments of :class:`~distbench.algorithms.parallel.model.Transformer`
    from :func:`step_options` (by size when ``params`` is given)."""
    if params is not None:
        return {"layers": layers, "seq": seq, "micro_batch": micro_batch,
                "micro_batches": micro_batches, "param_bytes": int(param_bytes),
                "params": params}
    return {"layers": layers, "hidden": hidden, "heads": heads, "seq": seq, "vocab": vocab,
            "micro_batch": micro_batch, "micro_batches": micro_batches,
            "param_bytes": int(param_bytes)}


def float_list(text: str, flag: str) -> list[float]:
    """``"1,5,25"`` -> [1.0, 5.0, 25.0]. Raises UsageError unless all are finite and > 0."""
    try:
        vals = [float(v) for v in csv_list(text)]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, not {text!r}") from None
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise UsageError(f"{flag} takes positive numbers, not {text!r}")
    return vals


def zero_stages(text: str) -> list[int]:
    """``--zero "0,1,3"`` -> [0, 1, 3]. Raises UsageError for anything but stages 0-3."""
    try:
        stages = [int(z) for z in csv_list(text)]
    except ValueError:
        raise UsageError(f"--zero takes comma-separated stages 0-3, not {text!r}") from None
    if not stages:
        raise UsageError("--zero needs at least one stage")
    for z in stages:
        if z not in (0, 1, 2, 3):
            raise UsageError(f"--zero takes stages 0, 1, 2, 3, not {z}")
    return stages


__all__ = ["Job", "Size", "size_sweep", "check_size_range", "csv_list", "apply", "with_options",
           "size_options", "iteration_options", "device_options", "output_options",
           "compressor_options", "seed_option", "watch_options", "thread_level_option",
           "target_ci_option",
           "Number", "FINITE", "POSITIVE", "NON_NEGATIVE", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "problem_options", "training_options",
           "check_training_options",
           "algorithm_options", "check_algorithm_options", "check_algorithm_options_size",
           "RunOptions", "DEFAULT_MAX_TIME", "step_options", "step_model", "float_list",
           "zero_stages", "STEP_SCHEDULES"]
