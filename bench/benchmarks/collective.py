"""The sweep every collective shares: for each message size, check every algorithm against the
exact result, time them interleaved with the library's own call, and report latency, algbw,
busbw and the ratio to native; with ``--nonblocking``, the nonblocking forms and how much of
each hides behind computation (:mod:`distbench.benchmarks.overlap`).

Like nccl-tests' common harness: each collective type is a declaration
(:class:`distbench.collectives.collective.Collective`: buffers, exact inputs and result, bus
factor, whether it takes an op, a root, an in-place form) and each algorithm a small function in
its registry; this module does the sweep, timing, checking, records and table for all of them
(each collective's command is built in :mod:`distbench.benchmarks.collective_command`).
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from distbench import watchdog
from distbench.analysis.answers import collective_answer
from distbench.analysis.tables import (
    STATS_CAPTION,
    algorithm_label,
    collective_columns,
    collective_row,
    spikes_note,
    state_caption,
)
from distbench.benchmarks import bound, outline, overlap
from distbench.buffers import release_caches
from distbench.check import CHUNK, exact_ranks, fill_segments, mismatches, total
from distbench.collectives.ops import INTEGER_OPS, OPS, in_place_sentinel, mpi_op
from distbench.collectives.words import mpi_type, needs_words, typed_comm
from distbench.command import DEFAULT_MAX_TIME, Device, Iterations, RunOptions, Sizes
from distbench.console import fmt_bytes
from distbench.declared import Names, arg, check, flatten, group
from distbench.errors import UsageError, eprint
from distbench.metrics import algbw, rate_ci
from distbench.options import given_names
from distbench.results import env_line
from distbench.runtime import get_backend, mpi, numpy_dtype, proc_field
from distbench.timing import adaptive_iters, canary, estimate_seconds

SMALL_BYTES = 8192          # OSU's boundary between small and large messages
DEFAULT_ITERS = (1000, 100)  # small, large (before the time budget caps them)
BUDGET_S = 0.12              # timed seconds per (size, algorithm) when -n is not given
MIN_ITERS = 20               # ... but at least this many at every size (up to 64 MiB and beyond)
CAPPED_MIN_ITERS = 5         # fewer only when --max-time leaves no time for MIN_ITERS
SENTINEL = -99               # recvbuf contents before a checked call
DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64")


NONBLOCKING = "Nonblocking and overlap"


@dataclass(kw_only=True)
class Overlap:
    """``--nonblocking`` and the computation its overlap is measured against."""

    nonblocking: bool = arg(False, "Measure the nonblocking forms (the library's I-call, the "
                            "hand-written schedules) and their overlap with computation: pure, "
                            "compute, total times and overlap % (OSU's definition).",
                            group=NONBLOCKING)
    compute_ratio: float = arg(1.0, "With --nonblocking: computation as a multiple of the pure "
                               "time (0: none, the total is the pure time).", low=0,
                               group=NONBLOCKING)
    progress_us: float = arg(50.0, "With --nonblocking: microseconds of computation between "
                             "two Test() calls, the only progress a single-threaded rank "
                             "gives.", low=0, low_open=True, high=1e6, group=NONBLOCKING)


@dataclass(kw_only=True)
class SweepConfig:
    """The configuration of a collective's command (sizes in bytes).

    ``options`` holds the algorithm options the registry declares (``ranks_per_node``,
    ``inner``, ...); each algorithm gets those its signature takes. ``op`` and ``root`` are
    used by the collectives that take them; the overlap options only with ``nonblocking``.
    """

    algos: list = arg(["all"], "Comma-separated algorithms, or 'all'. native is always "
                      "measured.", type=Names(allow_all=True), flags=("--algo",))
    sizes: Sizes = group(Sizes)
    iterations: Iterations = group(Iterations, help={
        "iters": "Timed iterations per size and algorithm [default: 1000 up to 8 KiB, 100 "
                 "above, capped to ~0.12 s per size and algorithm, at least 5]."})
    dtype: str = arg("float32", "Element type (bfloat16 from ml-dtypes).", choices=DTYPES)
    device: Device = group(Device)
    op: str = arg("sum", "Reduction op (band, bor, bxor: integer dtypes). Exact inputs for "
                  "each (PROD: signed powers of two).", choices=tuple(OPS))
    root: int = arg(0, "The root rank (0..p-1).", low=0)
    in_place: bool = arg(False, "Measure the MPI_IN_PLACE form, for the library and every "
                         "hand-written algorithm.")
    check: bool = arg(True, "Compare every algorithm's result with the exact result, which the "
                      "library's call must match too (untimed).", negatable=True)
    overlap: Overlap = group(Overlap)
    tuning: str | None = arg(None, "With --algo auto: distbench tune's table "
                             "(distbench_tuning.json); auto runs, at each size and rank count, "
                             "the choice it names.", metavar="FILE")
    options: dict = field(default_factory=dict)
    run: RunOptions = group(RunOptions)

    def sizes_swept(self) -> list[int]:
        return self.sizes.sweep()

    @functools.cached_property
    def np_dtype(self) -> np.dtype:
        """The NumPy dtype of ``dtype`` (ml-dtypes' for bfloat16), computed once."""
        return numpy_dtype(self.dtype)

    def record(self) -> dict:
        """The configuration as results record it (flat; algorithm options at the top)."""
        return flatten(self)


def validate_sweep(cfg: SweepConfig, decl=None) -> None:
    """Checks that need no MPI (with ``decl``, also those of the collective: op, in place,
    nonblocking forms). Raises UsageError with a one-line message."""
    check(cfg)
    cfg.sizes.check(cfg.np_dtype.itemsize, cfg.dtype)
    outline.check_duration(lower_bound_s(cfg), cfg.run.max_time, "this sweep")
    if cfg.op in INTEGER_OPS and cfg.np_dtype.kind not in "iu":
        raise UsageError(f"--op {cfg.op} is not defined for {cfg.dtype} (MPI defines the "
                         "bitwise ops for integer types only)")
    if cfg.dtype == "bfloat16" and cfg.device.device == "gpu":
        raise UsageError("--dtype bfloat16 is host-only (CuPy has no bfloat16)")
    typed = given_names()
    given = [f for f, name in (("--compute-ratio", "compute_ratio"),
                               ("--progress-us", "progress_us")) if name in typed]
    if given and not cfg.overlap.nonblocking:
        raise UsageError(f"{' and '.join(given)} go(es) with --nonblocking")
    if decl is None:
        return
    if cfg.in_place and not decl.in_place:
        raise UsageError(f"{decl.name} has no in-place form")
    if cfg.overlap.nonblocking:
        lacking = [a for a in cfg.algos if a != "auto" and decl.registry.spec(a).start is None]
        if lacking:
            raise UsageError(f"--nonblocking: {', '.join(lacking)} declare(s) no nonblocking "
                             "form (start)")


def lower_bound_s(cfg: SweepConfig) -> float:
    """An optimistic duration of the sweep (s): every size and algorithm's timed and warm-up
    iterations at :func:`~distbench.benchmarks.outline.call_lower_bound` each (with the
    adaptive default, at most ``BUDGET_S`` of timed calls); with ``--nonblocking`` the overlap
    measurement's computation and overlapped calls too."""
    total = 0.0
    for nbytes in cfg.sizes.sweep():
        t = outline.call_lower_bound(nbytes)
        default = DEFAULT_ITERS[0] if nbytes <= SMALL_BYTES else DEFAULT_ITERS[1]
        iters = cfg.iterations.iters if cfg.iterations.iters is not None else adaptive_iters(
            t, default, BUDGET_S, CAPPED_MIN_ITERS)
        its = cfg.iterations
        warm = its.warmup if its.warmup is not None else max(1, min(100, iters // 10))
        total += (len(cfg.algos) + 1) * (iters + warm) * t
    ratio = cfg.overlap.compute_ratio if cfg.overlap.nonblocking else 0.0
    return total * (1 + ratio + max(1.0, ratio)) if ratio > 0 else total


def validate_mpi(decl, cfg: SweepConfig, comm) -> int:
    """Checks that need the communicator (same verdict on all ranks of a node): the root, the
    exactness of the check at this rank count, the device, the algorithm options against the
    rank count, and the memory of the largest size. Returns this rank's memory estimate in
    bytes (recorded in the environment).

    Raises:
        UsageError: any of them fails."""
    p = comm.Get_size()
    if decl.rooted and cfg.root >= p:
        raise UsageError(f"--root {cfg.root} is outside the communicator ({p} ranks: 0..{p - 1})")
    if cfg.check and decl.reduction and not exact_ranks(cfg.op, cfg.np_dtype, p):
        raise UsageError(f"--op {cfg.op} over {p} ranks is not exact in {cfg.dtype}: the check "
                         "would fail; use --no-check or a wider dtype")
    if cfg.device.device == "gpu" and (cfg.in_place or cfg.overlap.nonblocking
                                       or needs_words(cfg.dtype)):
        if get_backend("gpu", cfg.device.gpu_aware, comm).gpu_aware is False:
            raise UsageError("--in-place, --nonblocking and dtypes without an MPI type need a "
                             "GPU-aware MPI with --device gpu (--gpu-aware yes)")
    decl.registry.check_size(cfg.options, p)
    # this rank's own estimate (no collective here: a rank whose earlier check failed does not
    # get this far; the CLI gathers every rank's verdict)
    per_rank = memory_estimate(decl, cfg, p, comm.Get_rank())
    outline.check_device_and_memory(comm, cfg.device.device, per_rank,
                                    f"a {fmt_bytes(cfg.sizes.max_bytes)} sweep")
    return per_rank


SCIPY_STATS_RSS = 67 << 20  # what `import scipy.stats` adds to a process's RSS (measured here,
                            # scipy 1.17 with its OpenBLAS: 30 -> 97 MiB); rank 0 imports it for
                            # the intervals


def memory_estimate(decl, cfg: SweepConfig, p: int, rank: int) -> int:
    """This rank's peak memory for the sweep's largest size (bytes): what the process holds
    now (VmRSS: interpreter, NumPy, MPI, distbench) + send + recv + the largest scratch (a
    whole vector) + the check's tiled reference, and on rank 0 scipy.stats' import if it is
    yet to come (the intervals)."""
    itemsize = cfg.np_dtype.itemsize
    send, recv = decl.buffers(cfg.sizes.max_bytes // itemsize, p, rank, min(cfg.root, p - 1))
    send, recv = max(send, 0), max(recv, 0)
    now = proc_field("/proc/self/status", "VmRSS:")
    base = int(now.split()[0]) * 1024 if now else 64 << 20
    scipy = SCIPY_STATS_RSS if rank == 0 and "scipy.stats" not in sys.modules else 0
    return (base + (send + 2 * recv) * itemsize + min(cfg.sizes.max_bytes, CHUNK * itemsize)
            + scipy)


def _iteration_plan(cfg, comm, fns, nbytes, sync, label, share_s=None, checked=False):
    """Per-algorithm timed and warm-up iteration counts for one size (same on all ranks), and
    each call's estimated seconds (for the watchdog's deadlines).

    Without ``-n``: ``DEFAULT_ITERS`` capped to ``BUDGET_S`` of timed calls each, but at least
    :data:`MIN_ITERS`; fewer (down to :data:`CAPPED_MIN_ITERS`) only when this size's share of
    the time ``--max-time`` leaves (``share_s``, seconds) cannot hold MIN_ITERS of every call.
    ``checked``: every call already ran once (the check), so one estimating call suffices.
    """
    per_call = {}
    for n, f in fns.items():
        watchdog.enter(f"{label(n)} (estimate)", 2 * outline.call_lower_bound(nbytes))
        per_call[n] = estimate_seconds(comm, f, calls=1 if checked else 2, sync=sync)
    if cfg.iterations.iters is not None:
        iters = dict.fromkeys(fns, cfg.iterations.iters)
    else:
        default = DEFAULT_ITERS[0] if nbytes <= SMALL_BYTES else DEFAULT_ITERS[1]
        minimum = MIN_ITERS
        need = sum(MIN_ITERS * 1.1 * (t + 2e-6) for t in per_call.values())
        if share_s is not None and need > share_s:
            minimum = max(CAPPED_MIN_ITERS, int(MIN_ITERS * share_s / need))
        minimum = comm.allreduce(minimum, op=mpi().MIN)
        iters = {n: adaptive_iters(per_call[n], default, BUDGET_S, minimum) for n in fns}
    if cfg.iterations.warmup is not None:
        warm = dict.fromkeys(fns, cfg.iterations.warmup)
    else:
        warm = {n: max(1, min(100, it // 10)) for n, it in iters.items()}
    return iters, warm, per_call


@dataclass
class Case:
    """One size's buffers and calls on every rank: ``send`` (``MPI.IN_PLACE`` in place),
    ``recv``, the exact inputs written into each, and name -> zero-argument call (blocking:
    the kernel; nonblocking: start + wait) and name -> start (nonblocking only)."""

    count: int
    send: object
    recv: object
    send_inputs: list
    recv_inputs: list
    calls: dict
    starts: dict


def _case(decl, cfg, run, comm, forms, count) -> Case:
    """Allocate and fill one size's buffers and bind every algorithm's call to them."""
    rank, p, xp = run.rank, run.size, run.xp
    dtype = cfg.np_dtype
    n_send, n_recv = decl.buffers(count, p, rank, cfg.root, cfg.in_place)
    send_in, recv_in = decl.inputs(count, p, rank, cfg.root, cfg.op, cfg.in_place)
    send = xp.empty(n_send, dtype=dtype)
    recv = xp.empty(n_recv, dtype=dtype)
    fill_segments(send, send_in)
    arg = in_place_sentinel() if cfg.in_place else send
    op = mpi_op(cfg.op) if decl.reduction else None
    # the library's call gets pre-built typed buffer specs ([buf, MPI.FLOAT]: mpi4py then
    # skips working out the datatype from the array every call); the hand-written kernels
    # slice arrays, and their messages go through persistent requests (collectives.schedule)
    n_arg, n_recv = (typed_specs(arg, recv, dtype) if type(comm) is mpi().Intracomm else
                     (arg, recv))  # a proxy (host staging, words) takes arrays
    bound_calls = {n: decl.invoke(f, comm, *((n_arg, n_recv) if n == decl.baseline else
                                             (arg, recv)), rank, cfg.root, op)
                   for n, f in forms.items()}
    calls = {n: (lambda start=s: start().Wait()) for n, s in bound_calls.items()}
    case = (Case(count, send, recv, send_in, recv_in, calls, bound_calls) if cfg.overlap.nonblocking
            else Case(count, send, recv, send_in, recv_in, bound_calls, {}))
    if not cfg.check:  # the check resets recv before each call itself
        _reset(case)
    return case


def typed_specs(send, recv, dtype):
    """``[array, datatype]`` specs of host buffers whose dtype MPI has a datatype for (the
    buffers themselves otherwise, and ``MPI.IN_PLACE`` as it is)."""
    T = mpi_type(dtype)
    if T is None:
        return send, recv

    def spec(b):
        return [b, T] if type(b) is np.ndarray else b

    return spec(send), spec(recv)


def _check_all(decl, cfg, comm, case: Case, sync, label, nbytes) -> dict:
    """Each algorithm's wrong elements (summed over ranks; None with --no-check): its output
    against the exact result, plus every element of the send buffer it changed. A send buffer
    found changed is refilled, so the next algorithm is judged on the right inputs."""
    if not cfg.check:
        return dict.fromkeys(case.calls)  # recv already holds its inputs (_case)
    rank, p = comm.Get_rank(), comm.Get_size()
    expected = decl.expected(case.count, p, rank, cfg.root, cfg.op, cfg.in_place)
    wrong = {}
    for n, call in case.calls.items():
        # the call, a fill and two compares: a few passes over the buffers
        watchdog.enter(f"{label(n)} (check)", 8 * outline.call_lower_bound(nbytes))
        _reset(case)
        call()
        if sync is not None:
            sync()
        bad, changed = mismatches(case.recv, expected), mismatches(case.send, case.send_inputs)
        if changed:
            fill_segments(case.send, case.send_inputs)
        wrong[n] = total(comm, bad + changed)
    if case.recv_inputs:  # the timed calls start from the inputs too (in place, a root's
        _reset(case)      # message); without inputs in recv they overwrite it anyway
    return wrong


def _reset(case: Case) -> None:
    """``recv`` back to the sentinel and its exact inputs (the sentinel only where no input
    covers it: one pass over the buffer, not two)."""
    covered = sum(s.hi - s.lo for s in case.recv_inputs)
    if covered < case.recv.shape[0]:
        case.recv.fill(SENTINEL)
    fill_segments(case.recv, case.recv_inputs)


def _measure(cfg, run, comm, case: Case, nbytes, label, deadline, sizes_left=1):
    """Time every call interleaved under the watchdog (:func:`~distbench.benchmarks.outline.
    time_all`); with --nonblocking also their overlap. Returns (timed, warm, overlap records by
    name, and rank 0's :class:`~distbench.analysis.cost.CostParams` measured by the references
    of :mod:`distbench.benchmarks.bound`). ``sizes_left``: this size and the ones after it
    (they share the time to ``deadline``)."""
    share = (max(0.0, deadline - time.monotonic()) / sizes_left
             if cfg.run.max_time < DEFAULT_MAX_TIME else None)
    # the machine's own rates on these buffers, interleaved with the algorithms (bound.py)
    refs, ref_bytes = bound.reference_calls(typed_comm(run.wcomm, cfg.np_dtype),
                                            (case.send, case.recv), mpi_op(cfg.op))
    calls = {**case.calls, **refs}
    iters, warm, per_call = _iteration_plan(cfg, comm, calls, nbytes, run.sync, label,
                                            share, checked=cfg.check)
    # In place the repeated calls reduce their own output: sums may overflow to inf (and so
    # may the reduce reference's repeated sums).
    with np.errstate(over="ignore", invalid="ignore"):
        timed = outline.time_all(comm, calls, iters, warm, label, per_call, run.sync,
                         cfg.iterations.target_ci, deadline)
        params = bound.parameters(timed.stats, ref_bytes) if run.root else None
        extra = {}
        if cfg.overlap.nonblocking:
            pure = comm.bcast({n: timed.stats[n]["p50_us"] * 1e-6 for n in case.starts}
                              if run.root else None, root=0)

            def on_block(key, n):  # the computation, or start + computation + wait
                watchdog.enter(f"{label(key[0])} ({key[1]})",
                               n * (1 + cfg.overlap.compute_ratio) * 2 * per_call[key[0]])

            its = {n: timed.iters[n] for n in case.starts}
            extra = overlap.measure(comm, case.starts, pure, its, warm,
                                    cfg.overlap.compute_ratio, cfg.overlap.progress_us * 1e-6,
                                    run.sync,
                                    on_block)
            watchdog.idle()
    return timed, warm, extra, params


def run_sweep(decl, cfg: SweepConfig, comm, argv: list[str], memory: int | None = None) -> int:
    """Run the sweep of collective ``decl`` on every rank; returns the exit code (1 if any
    result was wrong). ``memory``: :func:`validate_mpi`'s estimate, recorded."""
    backend = get_backend(cfg.device.device, cfg.device.gpu_aware, comm)
    run = outline.Run(comm, decl.name, cfg.record(), argv, backend, cfg.run,
                      extra_env={"memory_estimate_bytes": memory})
    deadline = time.monotonic() + cfg.run.max_time
    wcomm = typed_comm(run.wcomm, cfg.np_dtype)
    registry = decl.registry
    names = [decl.baseline] + [a for a in cfg.algos if a != decl.baseline]
    bind = registry.bind_start if cfg.overlap.nonblocking else registry.bind
    auto = AutoChoice(decl, cfg, run, wcomm, bind) if "auto" in names else None
    forms = {n: bind(n, **cfg.options) for n in names if n != "auto"}
    opts = {n: registry.bound_options(n, cfg.options) if n != "auto" else {} for n in names}
    itemsize = cfg.np_dtype.itemsize
    any_wrong = 0
    records_all = []
    sizes = cfg.sizes.sweep()
    with run.progress(len(sizes) * len(names), decl.name) as adv:
        for i, nbytes in enumerate(sizes):
            count = decl.count(nbytes, itemsize, run.size)
            size = fmt_bytes(count * itemsize)

            def label(n, size=size):
                return f"{decl.name} {n} at {size}"

            watchdog.enter(f"{decl.name} at {size} (set-up)", 4 * outline.call_lower_bound(nbytes))
            if auto is not None:
                forms["auto"] = auto.form(count * itemsize)
                opts["auto"] = {"picked": auto.picked}
            case = _case(decl, cfg, run, wcomm, forms, count)
            wrong = _check_all(decl, cfg, comm, case, run.sync, label, nbytes)
            timed, warm, extra, params = _measure(cfg, run, comm, case, nbytes, label, deadline,
                                          len(sizes) - i)
            canary_us = canary(comm) * 1e6
            adv(len(names), f"{decl.name} {size}")
            if run.root:
                records = [_record(decl, cfg, run, n, count, timed, warm[n], wrong[n],
                                   opts[n], canary_us, extra.get(n, {}), params)
                           for n in names]
                records_all += records
                run.writer.append(records)
            any_wrong += sum(w or 0 for w in wrong.values())
            del case
            release_caches()
    rows, sections = _rows(records_all)
    run.emit(_title(decl, cfg, run.size), collective_columns(cfg.overlap.nonblocking),
             rows, _caption(decl, cfg, run, records_all), sections,
             answer=lambda: collective_answer(records_all, decl.baseline))
    if any_wrong:
        if run.root:
            eprint(f"Error: {any_wrong} wrong element(s); see the #wrong column")
        return 1
    return 0


class AutoChoice:
    """``--algo auto``: at each size, what distbench tune's table names for this collective
    and rank count (:func:`distbench.tuning.lookup`): a hand-written algorithm, the library's
    default, or a library algorithm forced on a communicator of its own (MPI_T, made once
    per algorithm). ``picked`` names the last choice (recorded as the record's option)."""

    def __init__(self, decl, cfg, run, comm, bind):
        from distbench.mpit import ControlVariables
        from distbench.tuning import read_table

        self.decl, self.cfg, self.run, self.comm, self.bind = decl, cfg, run, comm, bind
        self.ranges = read_table(cfg.tuning)
        self.cv = None
        self.forced: dict = {}
        self.picked = decl.baseline
        self._mpit = ControlVariables

    def form(self, nbytes: int):
        from distbench.tuning import lookup

        rg = lookup(self.ranges, self.decl.name, self.run.size, nbytes)
        choice = "default" if rg is None else rg.choice
        self.picked = choice
        if choice == "default":
            return self.bind(self.decl.baseline, **self.cfg.options)
        if not choice.startswith("lib:"):
            spec = self.decl.registry.spec(choice)
            if spec.steps is None:
                return self.bind(choice, **self.cfg.options)
            # a kernel of its own: the schedules keep one plan per kernel, and the same
            # algorithm measured beside auto would otherwise rebuild it at every call
            from distbench.collectives.schedule import kernels
            from distbench.registry import accepted

            blocking, start = kernels(spec.steps)
            fn = start if self.cfg.overlap.nonblocking else blocking
            bound = accepted(fn, self.cfg.options)
            return functools.partial(fn, **bound) if bound else fn
        if self.cv is None:
            self.cv = self._mpit(self.run.env.get("mpi_library", ""))
        if not self.cv.available:
            raise UsageError(f"--algo auto: the table picks {choice}, which cannot be forced "
                             f"here ({self.cv.why})")
        if choice not in self.forced:
            forced = self.cv.forced(self.run.wcomm, self.decl.name, rg.library_id)
            self.forced[choice] = typed_comm(forced, self.cfg.np_dtype)
        native, comm = self.decl.registry.spec(self.decl.baseline).fn, self.forced[choice]

        def on_forced(_comm, *args, **kwargs):  # the library's call, on its communicator
            return native(comm, *args, **kwargs)

        # Collective.invoke binds the library's call in C on this communicator, as for native
        on_forced.on_comm = comm
        if hasattr(native, "library_call"):
            on_forced.library_call = native.library_call
        return on_forced


def _rows(records: list[dict]):
    """Table rows of the records, a separator after each size, slow-state sizes marked."""
    rows, sections = [], []
    fastest = min((r["canary_us"] for r in records if r.get("canary_us")), default=None)
    for i, rec in enumerate(records):
        rows.append(collective_row(rec, fastest))
        if i + 1 == len(records) or records[i + 1]["bytes"] != rec["bytes"]:
            sections.append(len(rows) - 1)
    return rows, sections


def _record(decl, cfg, run, name, count, timed, warm, wrong, options, canary_us,
            extra, params) -> dict:
    nbytes = count * cfg.np_dtype.itemsize
    st = timed.stats[name]
    factor = decl.bus_factor(run.size)
    bw = algbw(nbytes, st["t_max_us"] * 1e-6)
    t_ci = [x * 1e-6 for x in st["t_max_us_ci"]]
    base = timed.stats[decl.baseline]["t_max_us"]
    # --algo auto: the algorithm it picked at this size carries the formulas (the library's
    # own for a library choice)
    spec_name = name
    if name == "auto":
        picked = options.get("picked", decl.baseline)
        spec_name = picked if picked in decl.registry else decl.baseline
    rec = {
        "benchmark": decl.name, "algorithm": name, "bytes": nbytes, "count": count,
        "dtype": cfg.dtype, "ranks": run.size, "iters": timed.iters[name], "warmup": warm,
        **{k: v for k, v in st.items() if k != "iters"},
        "algbw_gbps": bw, "algbw_gbps_ci": rate_ci(nbytes, t_ci),
        "busbw_gbps": bw * factor, "busbw_gbps_ci": rate_ci(nbytes, t_ci, factor),
        "vs_native": base / st["t_max_us"] if st["t_max_us"] > 0 else None,
        "vs_native_ci": timed.ratio_ci(decl.baseline, name),
        "canary_us": canary_us, "wrong": wrong, "device": run.env["device"],
        "ranks_per_node": cfg.options.get("ranks_per_node"), "options": options,
        "source": decl.registry.source(spec_name),
        "op": cfg.op if decl.reduction else None, "root": cfg.root if decl.rooted else None,
        "in_place": cfg.in_place, "nonblocking": cfg.overlap.nonblocking, **extra,
        **bound.bound_fields(decl.registry.spec(spec_name),
                             {} if name == "auto" else options, params, nbytes, run.size,
                             st["p50_us"]),
        **bound.reference_fields(params),
    }
    if cfg.iterations.target_ci is not None:
        rec["target_ci_pct"], rec["target_ci_met"] = cfg.iterations.target_ci, timed.target_met
    return rec


def _title(decl, cfg, ranks: int) -> str:
    parts = [decl.title, f"{ranks} ranks", cfg.dtype]
    parts += [f"op {cfg.op}"] if decl.reduction else []
    parts += [f"root {cfg.root}"] if decl.rooted else []
    parts += ["in place"] * cfg.in_place + ["nonblocking"] * cfg.overlap.nonblocking
    return ", ".join(parts)


def _caption(decl, cfg, run, records) -> str:
    labels = sorted({algorithm_label(r) for r in records if r.get("options")})
    plugins = sorted({f"{r['algorithm']} from {r['source']}" for r in records if r.get("source")})
    extra = "".join(f"; {what}: {', '.join(items)}" for what, items in
                    (("options", labels), ("plug-ins", plugins)) if items)
    notes = [f"size = {decl.size_meaning}"]
    if decl.count_multiple(run.size) > 1:
        notes.append(f"counts rounded down to a multiple of {decl.count_multiple(run.size)} "
                     "elements")
    if needs_words(cfg.np_dtype):
        notes.append(f"{cfg.dtype} has no MPI datatype here: buffers travel as 16-bit words "
                     f"and {decl.call}'s reductions use a user-defined MPI op")
    if cfg.overlap.nonblocking:
        notes.append(f"nonblocking: {decl.nonblocking_call} and the hand-written schedules; "
                     f"pure = start+wait, compute = {cfg.overlap.compute_ratio:g} x pure of NumPy "
                     f"work with Test() every {cfg.overlap.progress_us:g} us in total = "
                     "start+compute+wait; "
                     "overlap = 100 max(0, 1 - (total - compute) / pure)")
    return (env_line(run.env) + f"\nx native = t_max(native) / t_max(algorithm), measured "
            f"interleaved; busbw = algbw * {decl.bus_formula}{extra}; {'; '.join(notes)}\n"
            + STATS_CAPTION + "\n" + state_caption(records)
            + "".join(f"\n{n}" for n in [spikes_note(records)] if n)
            + f"\nresults: {run.writer.path}")
