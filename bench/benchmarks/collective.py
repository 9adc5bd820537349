"""The sweep every collective shares: for each message size, check every algorithm against the
exact result, time them interleaved with the library's own call, and report latency, algbw,
busbw and the ratio to native.

Like nccl-tests' common harness: each collective type is a declaration
(:class:`distbench.collectives.collective.Collective`: buffers, expected result, bus factor, how
to call it) and each algorithm a small function in its registry; this module does the sweep,
timing, checking, records and table for all of them, and builds each collective's command.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import click
import numpy as np

from distbench import watchdog
from distbench.analysis.tables import (
    COLLECTIVE_COLUMNS,
    STATS_CAPTION,
    algorithm_label,
    collective_row,
    state_caption,
)
from distbench.benchmarks.sweep import (
    Run,
    call_lower_bound,
    check_device_and_memory,
    check_duration,
    check_iterations,
    time_all,
)
from distbench.buffers import release_caches
from distbench.check import CHUNK, Segment, fill_exact, input_table, mismatches, total
from distbench.command import (
    DEFAULT_MAX_TIME,
    Job,
    algorithm_options,
    apply,
    check_algorithm_options,
    check_algorithm_options_size,
    check_size_range,
    csv_list,
    device_options,
    iteration_options,
    output_options,
    size_options,
    size_sweep,
    target_ci_option,
    watch_options,
)
from distbench.console import fmt_bytes
from distbench.metrics import algbw, rate_ci
from distbench.results import env_line
from distbench.runtime import eprint, get_backend
from distbench.timing import adaptive_iters, canary, estimate_seconds

SMALL_BYTES = 8192          # OSU's boundary between small and large messages
DEFAULT_ITERS = (1000, 100)  # small, large (before the time budget caps them)
BUDGET_S = 0.12              # timed seconds per (size, algorithm) when -n is not given
SENTINEL = -99               # recvbuf contents before a checked call
DTYPES = ("float32", "float64", "int32", "int64")


@dataclass
class SweepConfig:
    """Parsed options of a collective's command (sizes in bytes).

    ``options`` holds the algorithm options the registry declares (``ranks_per_node``,
    ``inner``, ...); each algorithm gets those its signature takes.
    """

    algos: list
    min_bytes: int = 8
    max_bytes: int = 64 << 20
    factor: int = 2
    iters: int | None = None
    warmup: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    gpu_aware: str = "auto"
    check: bool = True
    output: str = "results"
    json: bool = False
    quiet: bool = False
    run_dir: str | None = None
    timeout: float | None = None
    max_time: float = DEFAULT_MAX_TIME
    target_ci: float | None = None
    options: dict = field(default_factory=dict)

    def sizes(self) -> list[int]:
        return size_sweep(self.min_bytes, self.max_bytes, self.factor)

    def record(self) -> dict:
        """The configuration as results record it (algorithm options at the top level)."""
        out = asdict(self)
        out.update(out.pop("options"))
        return out


def validate_sweep(cfg: SweepConfig) -> None:
    """Checks that need no MPI. Raises UsageError with a one-line message."""
    check_size_range(cfg.min_bytes, cfg.max_bytes, cfg.factor, cfg.dtype)
    check_iterations(cfg.iters, cfg.warmup)
    check_duration(lower_bound_s(cfg), cfg.max_time, "this sweep")


def lower_bound_s(cfg: SweepConfig) -> float:
    """An optimistic duration of the sweep (s): every size and algorithm's timed and warm-up
    iterations at :func:`~distbench.benchmarks.sweep.call_lower_bound` each (with the
    adaptive default, at most ``BUDGET_S`` of timed calls)."""
    total = 0.0
    for nbytes in cfg.sizes():
        t = call_lower_bound(nbytes)
        default = DEFAULT_ITERS[0] if nbytes <= SMALL_BYTES else DEFAULT_ITERS[1]
        iters = cfg.iters if cfg.iters is not None else adaptive_iters(t, default, BUDGET_S)
        warm = cfg.warmup if cfg.warmup is not None else max(1, min(100, iters // 10))
        total += (len(cfg.algos) + 1) * (iters + warm) * t
    return total


def validate_mpi(decl, cfg: SweepConfig, comm) -> None:
    """Checks that need the communicator (same verdict on all ranks of a node): the device, the
    algorithm options against the rank count, and the memory of the largest size."""
    check_algorithm_options_size(decl.registry.options(), cfg.options, comm.Get_size())
    itemsize = np.dtype(cfg.dtype).itemsize
    count = cfg.max_bytes // itemsize
    send, recv = decl.buffers(count, comm.Get_size(), 0, 0)
    # send + recv + the largest scratch (a whole vector) + the check's tiled reference.
    per_rank = (send + 2 * recv) * itemsize + min(cfg.max_bytes, CHUNK * itemsize) + (64 << 20)
    check_device_and_memory(comm, cfg.device, per_rank,
                            f"a {fmt_bytes(cfg.max_bytes)} sweep")


def _iteration_plan(cfg, comm, fns, nbytes, sync, label):
    """Per-algorithm timed and warm-up iteration counts for one size (same on all ranks), and
    each call's estimated seconds (for the watchdog's deadlines)."""
    per_call = {}
    for n, f in fns.items():
        watchdog.enter(f"{label(n)} (estimate)", 2 * call_lower_bound(nbytes))
        per_call[n] = estimate_seconds(comm, f, sync=sync)
    if cfg.iters is not None:
        iters = dict.fromkeys(fns, cfg.iters)
    else:
        default = DEFAULT_ITERS[0] if nbytes <= SMALL_BYTES else DEFAULT_ITERS[1]
        iters = {n: adaptive_iters(per_call[n], default, BUDGET_S) for n in fns}
    if cfg.warmup is not None:
        warm = dict.fromkeys(fns, cfg.warmup)
    else:
        warm = {n: max(1, min(100, it // 10)) for n, it in iters.items()}
    return iters, warm, per_call


def run_sweep(decl, cfg: SweepConfig, comm, argv: list[str]) -> int:
    """Run the sweep of collective ``decl`` on every rank; returns the exit code (1 if any
    result was wrong)."""
    run = Run(comm, decl.name, cfg.record(), argv, get_backend(cfg.device, cfg.gpu_aware, comm),
              cfg.output, cfg.run_dir)
    deadline = time.monotonic() + cfg.max_time
    xp, wcomm, rank, p = run.xp, run.wcomm, run.rank, run.size
    registry = decl.registry
    names = [decl.baseline] + [a for a in cfg.algos if a != decl.baseline]
    fns = {n: registry.bind(n, **cfg.options) for n in names}
    bound = {n: registry.bound_options(n, cfg.options) for n in names}
    itemsize = np.dtype(cfg.dtype).itemsize
    root_rank, op = 0, None
    any_wrong = 0
    records_all = []
    sizes = cfg.sizes()
    with run.progress(len(sizes) * len(names), decl.name, cfg.quiet) as adv:
        for nbytes in sizes:
            count = decl.count(nbytes, itemsize, p)
            size = fmt_bytes(count * itemsize)

            def label(n, size=size):
                return f"{decl.name} {n} at {size}"

            watchdog.enter(f"{decl.name} at {size} (set-up)", 4 * call_lower_bound(nbytes))
            n_send, n_recv = decl.buffers(count, p, rank, root_rank)
            send = xp.empty(n_send, dtype=cfg.dtype)
            fill_exact(send, rank)
            recv = xp.empty(n_recv, dtype=cfg.dtype)
            calls = {n: decl.invoke(fn, wcomm, send, recv, rank, root_rank, op)
                     for n, fn in fns.items()}
            wrong = _check_all(decl, cfg, comm, calls, send, recv, count, run.sync, label,
                               nbytes)
            iters, warm, per_call = _iteration_plan(cfg, comm, calls, nbytes, run.sync, label)
            timed = time_all(comm, calls, iters, warm, label, per_call, run.sync,
                             cfg.target_ci, deadline)
            canary_us = canary(comm) * 1e6
            adv(len(names), f"{decl.name} {size}")
            if run.root:
                records = [_record(decl, cfg, run, n, count * itemsize, count, timed, warm[n],
                                   wrong[n], bound[n], canary_us) for n in names]
                records_all += records
                run.writer.append(records)
            any_wrong += sum(w or 0 for w in wrong.values())
            del send, recv, calls
            release_caches()
    rows, sections = _rows(records_all)
    run.emit(cfg.json, cfg.quiet, f"{decl.title}, {p} ranks, {cfg.dtype}", COLLECTIVE_COLUMNS,
             rows, _caption(decl, run, records_all), sections)
    if any_wrong:
        if run.root:
            eprint(f"Error: {any_wrong} wrong element(s); see the #wrong column")
        return 1
    return 0


def _rows(records: list[dict]):
    """Table rows of the records, a separator after each size, slow-state sizes marked."""
    rows, sections = [], []
    fastest = min((r["canary_us"] for r in records if r.get("canary_us")), default=None)
    for i, rec in enumerate(records):
        rows.append(collective_row(rec, fastest))
        if i + 1 == len(records) or records[i + 1]["bytes"] != rec["bytes"]:
            sections.append(len(rows) - 1)
    return rows, sections


def _check_all(decl, cfg, comm, calls, send, recv, count, sync, label, nbytes) -> dict:
    """Each algorithm's wrong elements (summed over ranks; None with --no-check): its output
    against the exact result, plus every element of the send buffer it changed. A send buffer
    found changed is refilled, so the next algorithm is judged on the right inputs."""
    if not cfg.check:
        return dict.fromkeys(calls)
    rank, p = comm.Get_rank(), comm.Get_size()
    expected = decl.expected(count, p, rank, 0, "sum")
    own = [Segment(0, send.shape[0], input_table(rank))]
    wrong = {}
    for n, call in calls.items():
        # the call, a fill and two compares: a few passes over the buffers
        watchdog.enter(f"{label(n)} (check)", 8 * call_lower_bound(nbytes))
        recv.fill(SENTINEL)
        call()
        if sync is not None:
            sync()
        bad, changed = mismatches(recv, expected), mismatches(send, own)
        if changed:
            fill_exact(send, rank)
        wrong[n] = total(comm, bad + changed)
    return wrong


def _record(decl, cfg, run, name, nbytes, count, timed, warm, wrong, options,
            canary_us) -> dict:
    st = timed.stats[name]
    factor = decl.bus_factor(run.size)
    bw = algbw(nbytes, st["t_max_us"] * 1e-6)
    t_ci = [x * 1e-6 for x in st["t_max_us_ci"]]
    base = timed.stats[decl.baseline]["t_max_us"]
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
        "source": decl.registry.source(name),
    }
    if cfg.target_ci is not None:
        rec["target_ci_pct"], rec["target_ci_met"] = cfg.target_ci, timed.target_met
    return rec


def _caption(decl, run, records) -> str:
    labels = sorted({algorithm_label(r) for r in records if r.get("options")})
    plugins = sorted({f"{r['algorithm']} from {r['source']}" for r in records if r.get("source")})
    extra = "".join(f"; {what}: {', '.join(items)}" for what, items in
                    (("options", labels), ("plug-ins", plugins)) if items)
    return (env_line(run.env) + f"\nx native = t_max(native) / t_max(algorithm), measured "
            f"interleaved; busbw = algbw * {decl.bus_formula}{extra}\n" + STATS_CAPTION
            + "\n" + state_caption(records) + f"\nresults: {run.writer.path}")


# ----------------------------------------------------------------------------- the command

def collective_command(decl):
    """The click command ``distbench <decl.name>``: the same options for every collective, plus
    one per option its algorithms declare."""
    declared = decl.registry.options()

    def command(algos, min_bytes, max_bytes, factor, iters, warmup, dtype, device, gpu_aware,
                check, timeout, max_time, target_ci, output, run_dir, as_json, quiet,
                **options):
        names = decl.registry.require(csv_list(algos) if algos.strip() != "all" else ["all"],
                                      "--algo")
        check_algorithm_options(declared, options)
        cfg = SweepConfig(names, min_bytes, max_bytes, factor, iters, warmup, dtype, device,
                          gpu_aware, check, output, as_json, quiet, run_dir, timeout, max_time,
                          target_ci, options)
        validate_sweep(cfg)
        return Job(decl.name, cfg.record(),
                   lambda comm, argv: run_sweep(decl, cfg, comm, argv),
                   validate=lambda comm: validate_mpi(decl, cfg, comm), timeout=timeout,
                   output=run_dir or output)

    command.__doc__ = (
        f"Sweep {decl.title} algorithms over message sizes against {decl.call}.\n\n"
        "Reports t_avg/t_min/t_max over ranks, p99 of the per-iteration completion time, "
        "algbw, busbw, the time ratio to native (measured interleaved) and #wrong elements.")
    options = [
        click.option("--algo", "algos", default="all", show_default=True,
                     help="Comma-separated algorithms, or 'all'. native is always measured."),
        *size_options("8", "64M", 2, "Smallest message in bytes (K, M, G suffixes: powers of "
                      "1024).", "Largest message in bytes."),
        *iteration_options("Timed iterations per size and algorithm [default: 1000 up to 8 "
                           "KiB, 100 above, capped to ~0.12 s per size and algorithm, at "
                           "least 5].", "Untimed warm-up iterations [default: iters/10, "
                           "1..100]."),
        click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32",
                     show_default=True),
        *device_options(),
        *algorithm_options(declared),
        click.option("--check/--no-check", default=True, show_default=True,
                     help=f"Compare every algorithm's result with the exact result, which "
                     f"{decl.call} must match too (untimed)."),
        *watch_options("operation (a size's check, estimate or block of iterations)"),
        target_ci_option(),
        *output_options(decl.name)[:1],
        click.option("--run-dir", type=click.Path(file_okay=False), default=None, hidden=True,
                     help=f"Write {decl.name}.json/.csv into this exact folder (make bench)."),
        *output_options(decl.name)[1:],
    ]
    return click.command(decl.name)(apply(command, options))
