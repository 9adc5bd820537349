"""``distbench sgd``: synchronous, local and asynchronous SGD on real data, with convergence
tables per step, per byte and per second.

The modes given with ``--mode`` run one after another in one invocation, on the same data,
initial parameters and minibatch streams. One row per evaluation goes to
``results/<UTC>-sgd/results.{json,csv}`` as the run goes (``kind = "eval"``), then one
summary row per mode (``kind = "summary"``); rank 0 prints a convergence table per mode and a
summary table. The training algorithms live in :mod:`distbench.algorithms.sgd`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import click
import numpy as np

from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.sgd import (
    MODES,
    Diverged,
    Problem,
    SGDConfig,
    run_sgd,
    steps_for_epochs,
)
from distbench.algorithms.sgd.datasets import BUILTIN, load_dataset, shard_bounds
from distbench.algorithms.sgd.schedules import LRSchedule
from distbench.analysis.tables import (
    SGD_EVAL_COLUMNS,
    SGD_SUMMARY_COLUMNS,
    sgd_eval_row,
    sgd_summary_row,
)
from distbench.benchmarks.sweep import Run, check_duration
from distbench.collectives import ALLREDUCE
from distbench.command import (
    POSITIVE,
    Job,
    RunOptions,
    check_training_options,
    compressor_options,
    device_options,
    output_options,
    problem_options,
    seed_option,
    training_options,
    watch_options,
    with_options,
)
from distbench.console import print_table
from distbench.metrics import interval
from distbench.results import env_line
from distbench.runtime import UsageError, array_module, eprint, get_backend, root_computes

STEP_LOWER_BOUND_S = 5e-6  # an optimistic time of one SGD update (s), for --max-time


@dataclass
class SGDBenchConfig(RunOptions):
    """Parsed options of ``distbench sgd`` (see the command's help)."""

    modes: list | None = None  # None: sync,local,async (sync,local on one rank)
    model: str = "softmax"
    width: int = 64
    l2: float | None = None
    dataset: str = "digits"
    partition: str = "iid"
    epochs: float | None = None
    steps: int | None = None
    batch_size: int = 32
    lr: float = 0.1
    schedule: str = "constant"
    decay_factor: float = 0.1
    decay_every: int | None = None
    t0: float | None = None
    scale_lr: bool = False
    warmup: int = 0
    local_steps: int = 4
    allreduce: str = "native"
    compress: str = "none"
    density: float = 0.01
    bits: int = 8
    error_feedback: bool | None = None
    max_staleness: int | None = None
    staleness_policy: str = "drop"
    staleness_lr: bool = False
    straggler: dict = field(default_factory=dict)
    eval_every: int | None = None
    target_loss: float | None = None
    target_acc: float | None = None
    dtype: str = "float32"
    blas_threads: int = 1
    device: str = "cpu"
    gpu_aware: str = "auto"
    seed: int = 0


def parse_straggler(values) -> dict:
    """``RANK:MS`` items (repeatable, or comma-separated) -> {rank: milliseconds}.

    Raises:
        UsageError: an item that is not ``int:number`` or a negative delay.
    """
    out: dict = {}
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            rank, sep, ms = item.partition(":")
            try:
                r, d = int(rank), float(ms)
            except ValueError:
                r, d = -1, -1.0
            if not sep or r < 0 or not d >= 0 or not math.isfinite(d):
                raise UsageError(f"--straggler takes RANK:MS (e.g. 1:20; a finite delay >= 0),"
                                 f" not {item!r}")
            out[r] = d
    return out


def validate(cfg: SGDBenchConfig) -> None:
    """Checks that need neither MPI nor the data. Raises UsageError.

    Options that default to a derived value (``--eval-every``, ``--decay-every``, ``--t0``)
    given as 0 are refused rather than silently replaced; numbers are finite (the option
    types refuse nan and inf)."""
    if cfg.modes is not None and not cfg.modes:
        raise UsageError("--mode needs at least one of " + ", ".join(MODES))
    if cfg.epochs is not None and cfg.steps is not None:
        raise UsageError("give --epochs or --steps, not both")
    for flag, value in (("--batch-size", cfg.batch_size), ("--eval-every", cfg.eval_every),
                        ("--decay-every", cfg.decay_every), ("--steps", cfg.steps)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1, not {value}")
    if cfg.seed < 0:
        raise UsageError(f"--seed must be >= 0, not {cfg.seed}")
    for mode in cfg.modes or ["sync"]:  # mode names, steps, batch, H, schedule, staleness
        mode_cfg(cfg, mode, 2, cfg.batch_size).check_options()
    ALLREDUCE.require([cfg.allreduce], "--allreduce", allow_all=False)
    check_training_options(cfg)
    if cfg.device != "cpu":
        array_module(cfg.device)  # CuPy and a CUDA device, or a one-line usage error
    COMPRESSORS.require([cfg.compress], "--compress", allow_all=False)
    make_compressor(cfg.compress, density=cfg.density, bits=cfg.bits)
    updates = cfg.steps if cfg.steps is not None else 0  # epochs: bounded once data is known
    check_duration(len(cfg.modes or MODES) * updates * STEP_LOWER_BOUND_S, cfg.max_time,
                   "this SGD run")


def modes_for(cfg: SGDBenchConfig, size: int) -> list[str]:
    if cfg.modes is not None:
        return list(cfg.modes)
    return ["sync", "local", "async"] if size > 1 else ["sync", "local"]


def ensure_dataset(cfg: SGDBenchConfig, data: dict, comm):
    """The dataset: a user's file was read (and checked) by every rank while parsing; a
    bundled set is read by rank 0 alone and broadcast (one scikit-learn import per job, not
    per rank). Collective."""
    if data.get("dataset") is None:
        data["dataset"] = root_computes(comm, lambda: load_dataset(cfg.dataset, cfg.seed))
    return data["dataset"]


def validate_mpi(cfg: SGDBenchConfig, data: dict, comm) -> None:
    """Checks against the rank count (async needs 2 ranks, straggler ranks, shard sizes)."""
    dataset = ensure_dataset(cfg, data, comm)
    size = comm.Get_size()
    updates = 0
    for mode in modes_for(cfg, size):
        mcfg = mode_cfg(cfg, mode, size, dataset.n_train)
        mcfg.validate(size)
        updates += mcfg.steps
        workers = mcfg.workers(size)
        smallest = int(np.diff(shard_bounds(dataset.n_train, workers)).min())
        if smallest < cfg.batch_size:
            raise UsageError(f"--batch-size {cfg.batch_size} exceeds the {smallest} training "
                             f"samples of a worker's shard in {mode} mode ({workers} workers)")
    check_duration(updates * STEP_LOWER_BOUND_S, cfg.max_time, "this SGD run")


def mode_cfg(cfg: SGDBenchConfig, mode: str, size: int, n_train: int):
    """The :class:`~distbench.algorithms.sgd.SGDConfig` of one mode."""
    per_update = 1 if mode == "async" else size
    if cfg.steps is not None:
        steps = cfg.steps
    else:
        steps = steps_for_epochs(cfg.epochs if cfg.epochs is not None else 20.0, n_train,
                                 cfg.batch_size, per_update)
    per_epoch = max(1, n_train // (cfg.batch_size * per_update))
    schedule = LRSchedule(cfg.lr, cfg.schedule, cfg.decay_factor,
                          cfg.decay_every or max(1, steps // 3), cfg.t0 or float(per_epoch),
                          1.0, cfg.warmup)
    return SGDConfig(
        mode=mode, steps=steps, batch_size=cfg.batch_size, schedule=schedule,
        scale_lr=cfg.scale_lr, local_steps=cfg.local_steps, allreduce=cfg.allreduce,
        compress="none" if mode == "async" else cfg.compress, density=cfg.density,
        bits=cfg.bits, error_feedback=cfg.error_feedback, straggler=dict(cfg.straggler),
        eval_every=cfg.eval_every or max(1, math.ceil(steps / 20)),
        max_staleness=cfg.max_staleness, policy=cfg.staleness_policy,
        staleness_lr=cfg.staleness_lr, partition=cfg.partition, seed=cfg.seed)


# --------------------------------------------------------------------------- output

def reached(rec: dict, cfg: SGDBenchConfig) -> bool:
    """Whether an evaluation row meets the targets given (all of them)."""
    if cfg.target_loss is None and cfg.target_acc is None:
        return False
    ok_loss = cfg.target_loss is None or rec["train_loss"] <= cfg.target_loss
    ok_acc = cfg.target_acc is None or rec["test_acc"] >= cfg.target_acc
    return ok_loss and ok_acc


def rate_interval(records: list[dict], unit: str = "step") -> list[float] | None:
    """95 % interval of the updates (the records' ``unit``: ``step``, or ``round`` for fedavg)
    per second, a bootstrap over the evaluation intervals (each interval's updates and training
    seconds resampled together: a ratio estimator); None with fewer than two intervals."""
    steps = np.diff([r[unit] for r in records]).astype(np.float64)
    secs = np.diff([r["wall_s"] for r in records]).astype(np.float64)
    keep = secs > 0
    steps, secs = steps[keep], secs[keep]
    if steps.size < 2:
        return None
    low, high = interval(lambda idx: np.take(steps, idx).sum(axis=-1)
                         / np.take(secs, idx).sum(axis=-1), steps.size)
    return [float(low), float(high)]


def summary(records: list[dict], result, cfg: SGDBenchConfig, mode_config) -> dict:
    """The summary row of one mode (final values, totals, time and bytes to the target)."""
    last = records[-1]
    rate_ci = rate_interval(records)
    hit = next((r for r in records if reached(r, cfg)), None)
    comm_s = result.times.get("comm", 0.0)
    return {
        "kind": "summary", "benchmark": "sgd", "mode": last["mode"],
        "steps": result.steps, "final_loss": last["train_loss"], "final_gap": last["gap"],
        "final_test_acc": last["test_acc"], "rounds": result.rounds,
        "bytes_sent_max": max(result.bytes_per_rank),
        "bytes_sent_mean": sum(result.bytes_per_rank) / len(result.bytes_per_rank),
        "bytes_per_rank": result.bytes_per_rank, "wall_s": result.wall_s,
        "steps_per_s": result.steps / result.wall_s if result.wall_s > 0 else None,
        "steps_per_s_ci": rate_ci,
        "wall_s_ci": [result.steps / rate_ci[1], result.steps / rate_ci[0]] if rate_ci
        and rate_ci[0] > 0 else None,
        "comm_share": comm_s / result.wall_s if result.wall_s > 0 else None,
        "time_to_target_s": hit["wall_s"] if hit else None,
        "bytes_to_target": hit["bytes_sent_max"] if hit else None,
        "step_to_target": hit["step"] if hit else None,
        "dropped": result.dropped if last["mode"] == "async" else None,
        "local_steps": mode_config.local_steps if last["mode"] == "local" else None,
        "eval_every": mode_config.eval_every,
    }


# --------------------------------------------------------------------------- the run

def run(cfg: SGDBenchConfig, data: dict, comm, argv: list[str]) -> int:
    """Run every mode on every rank of ``comm``; rank 0 writes files and prints tables.

    The BLAS runs ``--blas-threads`` threads per rank (default 1, the MPI convention): idle
    OpenBLAS threads spin for a while after a multithreaded call (the f* solve, an
    evaluation), and with several ranks per node they would steal the cores of the ranks
    still computing.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"):
        return _run(cfg, data, comm, argv)


def _run(cfg: SGDBenchConfig, data: dict, comm, argv: list[str]) -> int:
    dataset = ensure_dataset(cfg, data, comm)
    backend = get_backend(cfg.device, cfg.gpu_aware, comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    root = rank == 0
    problem = Problem(dataset, cfg.model, cfg.l2, cfg.width, cfg.dtype, backend.xp,
                      with_optimum=root)
    base = {"benchmark": "sgd", "dataset": dataset.name, "model": cfg.model,
            "params": problem.model.n_params, "ranks": size, "batch_size": cfg.batch_size,
            "allreduce": cfg.allreduce, "dtype": cfg.dtype, "partition": cfg.partition}
    extra = {"dataset": dataset.name, "n_train": dataset.n_train,
             "n_test": int(dataset.X_test.shape[0]), "f_star": problem.f_star,
             "f_star_note": problem.f_star_note}
    run = Run(comm, "sgd", _recorded(cfg), argv, backend, cfg.output, extra_env=extra)
    wcomm, writer = run.wcomm, run.writer
    show = root and not cfg.quiet
    summaries = []
    for mode in modes_for(cfg, size):
        mcfg = mode_cfg(cfg, mode, size, dataset.n_train)
        tag = {"kind": "eval", **base, "compress": mcfg.compress,
               "local_steps": mcfg.local_steps if mode == "local" else None}
        rows: list = []
        with run.progress(mcfg.steps, f"sgd {mode}", cfg.quiet) as advance:
            done = [0]

            def on_eval(rec, tag=tag, rows=rows, advance=advance, done=done):
                full = {**tag, **rec}
                rows.append(full)
                writer.append([full])
                advance(rec["step"] - done[0])
                done[0] = rec["step"]

            try:
                result = run_sgd(wcomm, problem, mcfg, on_eval)
            except Diverged as exc:  # raised on every rank alike: no Abort needed
                return _diverged(exc, run, base, rows, mcfg)
        if not root:
            continue
        s = {**base, **summary(rows, result, cfg, mcfg), "compress": mcfg.compress}
        summaries.append(s)
        writer.append([s])
        if show:
            print_table(f"SGD {mode}: {dataset.name}, {cfg.model}, {size} ranks",
                        SGD_EVAL_COLUMNS, [sgd_eval_row(r) for r in rows], stderr=cfg.json)
    run.emit(cfg.json, cfg.quiet, f"SGD summary: {dataset.name}, {cfg.model}, {size} ranks",
             SGD_SUMMARY_COLUMNS, [sgd_summary_row(s) for s in summaries],
             _caption(cfg, run.env, writer, problem, dataset) if root else "")
    return 0


def _diverged(exc: Diverged, run, base: dict, rows: list, mcfg) -> int:
    """End the run on a divergence: a summary record of the mode saying where, the results
    marked incomplete, one line; exit code 1."""
    if run.root:
        last = rows[-1] if rows else {}
        run.writer.append([{**base, "kind": "summary", "mode": exc.mode, "steps": exc.step,
                            "diverged_at_step": exc.step, "compress": mcfg.compress,
                            "final_loss": last.get("train_loss"),
                            "final_test_acc": last.get("test_acc")}])
        run.writer.mark_incomplete(str(exc))
        eprint(f"Error: {exc}; results: {run.writer.path}")
    return 1


def _recorded(cfg: SGDBenchConfig) -> dict:
    """The configuration as results record it (straggler ranks as strings: JSON keys)."""
    config = asdict(cfg)
    config["straggler"] = {str(k): v for k, v in cfg.straggler.items()}
    return config


def _caption(cfg, env, writer, problem, dataset) -> str:
    target = ", ".join(t for t in (
        f"train loss <= {cfg.target_loss:g}" if cfg.target_loss is not None else "",
        f"test acc >= {cfg.target_acc:g}" if cfg.target_acc is not None else "") if t)
    fstar = f"{problem.f_star:.6f}" if problem.f_star is not None else (
        f"unknown ({problem.f_star_note})" if problem.f_star_note else "- (not convex)")
    return (f"{env_line(env)}\n{dataset.name}: {dataset.n_train} train / "
               f"{dataset.X_test.shape[0]} test, {problem.model.n_params} parameters, "
               f"f* = {fstar}; batch {cfg.batch_size}/worker, lr {cfg.lr:g} "
               f"({cfg.schedule}{', x p in sync/local' if cfg.scale_lr else ''}), "
               f"allreduce {cfg.allreduce}, compress {cfg.compress} (sync, local)\n"
               f"sent/rank = max over ranks of bytes handed to MPI; wall time excludes "
               f"evaluation; comm % = rank 0's share of it in the exchange (async: the server "
               f"waiting for gradients)\n"
               f"target: {target or 'none (--target-loss/--target-acc)'}; "
               f"results: {writer.path}")


# --------------------------------------------------------------------------- command line

@click.command("sgd")
@click.option("--mode", "modes", default=None,
              help="Comma list of sync, local, async, run one after another on the same data "
                   "and seed [default: sync,local,async; sync,local on one rank].")
@with_options(problem_options())
@click.option("--partition", type=click.Choice(["iid", "label"]), default="iid",
              show_default=True, help="Shard the training set i.i.d. or sorted by label.")
@click.option("--epochs", type=POSITIVE, default=None,
              help="Passes over the training set per mode [default: 20].")
@click.option("--steps", type=int, default=None,
              help="Parameter updates per mode (instead of --epochs): sync steps, local steps "
                   "per rank, or updates applied by the async server.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Minibatch size per worker.")
@click.option("--lr", type=POSITIVE, default=0.1, show_default=True, help="Base learning rate.")
@click.option("--schedule", type=click.Choice(["constant", "step", "inverse"]),
              default="constant", show_default=True,
              help="constant; step: x decay-factor every decay-every steps; inverse: "
                   "lr t0/(t0+t).")
@click.option("--decay-factor", type=POSITIVE, default=0.1, show_default=True)
@click.option("--decay-every", type=int, default=None, help="[default: steps/3]")
@click.option("--t0", type=POSITIVE, default=None,
              help="1/t time constant in steps [default: 1 epoch].")
@click.option("--scale-lr/--no-scale-lr", default=False, show_default=True,
              help="Linear scaling: lr x workers averaged per update (Goyal et al. 2017).")
@click.option("--warmup", type=int, default=0, show_default=True,
              help="Linear warm-up steps (Goyal et al. 2017).")
@click.option("--local-steps", type=int, default=4, show_default=True,
              help="H: local steps between averages (local mode).")
@click.option("--allreduce", default="native", show_default=True,
              help="Registered AllReduce for the exchange.")
@click.option("--compress", default="none", show_default=True,
              help="Compressor for sync gradients / local model deltas (none, fp16, qsgd, "
                   "sign, topk, randk).")
@with_options(compressor_options(
    "Kept fraction for topk/randk.",
    "Residual memory [default: on for sign/topk/randk, off otherwise]."))
@click.option("--max-staleness", type=int, default=None,
              help="Async: bound S on tau = version now - version read.")
@click.option("--staleness-policy", type=click.Choice(["drop", "block"]), default="drop",
              show_default=True, help="Async: drop gradients staler than S, or block "
                                      "workers so none is.")
@click.option("--staleness-lr/--no-staleness-lr", default=False, show_default=True,
              help="Async: step lr/tau for a gradient of staleness tau.")
@click.option("--straggler", multiple=True, metavar="RANK:MS",
              help="That rank sleeps MS milliseconds per step (repeatable).")
@click.option("--eval-every", type=int, default=None,
              help="Evaluate every N updates [default: about 20 rows per mode].")
@with_options(training_options())
@seed_option()
@with_options(watch_options("evaluation interval (the steps between two evaluations)"))
@with_options([*device_options(), *output_options(
    "sgd", json_help="Print the records as JSON on stdout (tables go to stderr).",
    quiet_help="No tables, no progress bar.")])
def sgd_command(modes, straggler, as_json, **options):
    """Synchronous, local and asynchronous SGD on real data: convergence per step, per byte
    and per second, for AllReduce algorithms, compressors and stragglers."""
    mode_list = None if modes is None else [m.strip() for m in modes.split(",") if m.strip()]
    cfg = SGDBenchConfig(modes=mode_list, straggler=parse_straggler(straggler),
                         json=as_json, **options)
    validate(cfg)
    data = {"dataset": None if cfg.dataset in BUILTIN else load_dataset(cfg.dataset, cfg.seed)}
    return Job("sgd", _recorded(cfg), lambda comm, argv: run(cfg, data, comm, argv),
               validate=lambda comm: validate_mpi(cfg, data, comm), timeout=cfg.timeout,
               output=cfg.output)
