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
from dataclasses import dataclass, replace

import numpy as np

from distbench import watchdog
from distbench.algorithms.compression.spec import COMPRESSION
from distbench.algorithms.sgd import (
    MODES,
    Diverged,
    Problem,
    ProblemSpec,
    SGDConfig,
    Targets,
    run_sgd,
)
from distbench.algorithms.sgd.datasets import BUILTIN, load_dataset, shard_bounds
from distbench.algorithms.sgd.models import make_model
from distbench.analysis.answers import sgd_answer
from distbench.analysis.tables import (
    SGD_EVAL_COLUMNS,
    SGD_SUMMARY_COLUMNS,
    sgd_eval_row,
    sgd_series,
    sgd_summary_row,
)
from distbench.benchmarks.outline import Run, check_duration
from distbench.collectives import ALLREDUCE
from distbench.command import Device, Job, RunOptions
from distbench.declared import Names, arg, check, flatten, group
from distbench.errors import UsageError
from distbench.metrics import interval
from distbench.options import declared_command, given_names
from distbench.results import env_line
from distbench.runtime import array_module, get_backend, root_computes

STEP_LOWER_BOUND_S = 5e-6  # an optimistic time of one SGD update (s), for --max-time


@dataclass(kw_only=True)
class SGDBenchConfig:
    """The options of ``distbench sgd``: the modes, the problem, the training spec (one
    :class:`~distbench.algorithms.sgd.SGDConfig` for every mode), the targets, the device
    and the run options."""

    modes: list | None = arg(None, "Comma list of sync, local, async, run one after another "
                             "on the same data and seed [default: sync,local,async; sync,local "
                             "on one rank].", type=Names(), flags=("--mode",))
    problem: ProblemSpec = group(ProblemSpec)
    training: SGDConfig = group(SGDConfig, skip=("method",))
    compressors: list = arg(["none"], "Comma list of compressors of the sync and local modes' "
                            "exchange (registered compression methods; none: dense), each run "
                            "as a series of its own on the same data and seed.", type=Names(),
                            flags=("--compress",), group=COMPRESSION)
    straggler: tuple = arg((), "That rank sleeps MS milliseconds per step (repeatable).",
                           multiple=True, metavar="RANK:MS", group="Training")
    targets: Targets = group(Targets)
    device: Device = group(Device)
    run: RunOptions = group(RunOptions)


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
    """Checks that need neither MPI nor the data. Raises UsageError (one line)."""
    check(cfg)
    for mode in cfg.modes or ["sync"]:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r} for --mode (choose {', '.join(MODES)})")
        replace(cfg.training, mode=mode).check_options()
    modes = cfg.modes or list(MODES)
    _check_idle(cfg, modes)
    ALLREDUCE.require([cfg.training.allreduce], "--allreduce", allow_all=False)
    cfg.training.compression.check(cfg.compressors, "--compress", typed=given_names())
    if cfg.device.device != "cpu":
        array_module(cfg.device.device)  # CuPy and a CUDA device, or a one-line usage error
    updates = cfg.training.steps if cfg.training.steps is not None else 0  # epochs: later
    check_duration(len(modes) * updates * STEP_LOWER_BOUND_S, cfg.run.max_time,
                   "this SGD run")


def _check_idle(cfg: SGDBenchConfig, modes: list[str]) -> None:
    """Options given for a mode that is not run are an error (they would do nothing)."""
    typed = given_names()
    idle = []
    if "local" not in modes and "local_steps" in typed:
        idle.append("--local-steps (local mode)")
    if "async" not in modes:
        idle += [f"{flag} (async mode)" for flag, name in (
            ("--max-staleness", "max_staleness"), ("--staleness-policy", "policy"),
            ("--staleness-lr", "staleness_lr")) if name in typed]
    if not {"sync", "local"} & set(modes) and ("compressors" in typed
                                                or cfg.compressors != ["none"]):
        idle.append("--compress (sync and local modes)")
    if "gossip" not in modes:
        idle += [f"{flag} (gossip mode)" for flag, name in (
            ("--topology", "topology"), ("--gossip", "gossip"),
            ("--gossip-steps", "gossip_steps"), ("--torus-shape", "torus_shape"),
            ("--topology-file", "topology_file")) if name in typed]
    if idle:
        raise UsageError(f"{', '.join(idle)} given, but --mode {','.join(modes)} does not run "
                         "it")


def series_for(cfg: SGDBenchConfig, size: int) -> list[tuple[str, str]]:
    """(mode, compressor) of every series, in order: each mode with every compressor of
    ``--compress`` (async, whose parameter server takes gradients whole, dense only)."""
    return [(mode, method) for mode in modes_for(cfg, size)
            for method in (["none"] if mode in ("async", "gossip") else cfg.compressors)]


def modes_for(cfg: SGDBenchConfig, size: int) -> list[str]:
    if cfg.modes is not None:
        return list(cfg.modes)
    return ["sync", "local", "async"] if size > 1 else ["sync", "local"]


def shared_dataset(name: str, seed: int, comm, read=None):
    """The dataset: ``read`` when a user's file was already read (and checked) by every rank
    while parsing; a bundled set is read by rank 0 alone and broadcast (one scikit-learn
    import per job, not per rank). Collective."""
    if read is not None:
        return read
    return root_computes(comm, lambda: load_dataset(name, seed))


def _check_compressors(cfg: SGDBenchConfig, dataset, size: int) -> None:
    """The compressors against the model's layers and the job's workers (PowerSGD's rank,
    the vote's flipping workers). Raises UsageError."""
    spec = cfg.problem
    model = make_model(spec.model, dataset.n_features, dataset.n_classes, spec.l2, spec.width)
    cfg.training.compression.check_fit(cfg.compressors, size,
                                       [shape for _, shape in model.shapes],
                                       f"the {spec.model} model")


def validate_mpi(cfg: SGDBenchConfig, comm, read=None):
    """Checks against the rank count (async needs 2 ranks, straggler ranks, shard sizes);
    returns the dataset (read once, for the run; ``read``: a user's file read while
    parsing)."""
    dataset = shared_dataset(cfg.problem.dataset, cfg.training.seed, comm, read)
    size = comm.Get_size()
    updates = 0
    for mode in modes_for(cfg, size):
        mcfg = cfg.training.for_mode(mode, size, dataset.n_train)
        mcfg.validate(size)
        updates += mcfg.steps
        workers = mcfg.workers(size)
        smallest = int(np.diff(shard_bounds(dataset.n_train, workers)).min())
        if smallest < mcfg.batch_size:
            raise UsageError(f"--batch-size {mcfg.batch_size} exceeds the {smallest} training "
                             f"samples of a worker's shard in {mode} mode ({workers} workers)")
    _check_compressors(cfg, dataset, size)
    check_duration(updates * STEP_LOWER_BOUND_S, cfg.run.max_time, "this SGD run")
    return dataset


# --------------------------------------------------------------------------- output

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


def summary(records: list[dict], result, targets: Targets, mode_config) -> dict:
    """The summary row of one mode (final values, totals, time and bytes to the target)."""
    last = records[-1]
    rate_ci = rate_interval(records)
    hit = next((r for r in records if targets.reached(r)), None)
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
        **{k: last.get(k) for k in ("consensus", "consensus_max", "spectral_gap", "degree",
                                    "topology", "gossip", "gossip_steps") if k in last},
        "bytes_per_step_max": max(result.bytes_per_rank) / max(result.steps, 1),
        "bytes_per_step_mean": (sum(result.bytes_per_rank) / len(result.bytes_per_rank)
                                / max(result.steps, 1)),
        "eval_every": mode_config.eval_every,
    }


# --------------------------------------------------------------------------- the run

def run(cfg: SGDBenchConfig, dataset, comm, argv: list[str]) -> int:
    """Run every mode on every rank of ``comm``; rank 0 writes files and prints tables.

    The BLAS runs ``--blas-threads`` threads per rank (default 1, the MPI convention): idle
    OpenBLAS threads spin for a while after a multithreaded call (the f* solve, an
    evaluation), and with several ranks per node they would steal the cores of the ranks
    still computing.
    """
    from threadpoolctl import threadpool_limits  # heavy, and only a run needs it

    with threadpool_limits(limits=cfg.problem.blas_threads, user_api="blas"):
        return _run(cfg, dataset, comm, argv)


def _run(cfg: SGDBenchConfig, dataset, comm, argv: list[str]) -> int:
    backend = get_backend(cfg.device.device, cfg.device.gpu_aware, comm)
    size, spec, t = comm.Get_size(), cfg.problem, cfg.training
    problem = Problem(dataset, spec.model, spec.l2, spec.width, spec.dtype, backend.xp,
                      with_optimum=comm.Get_rank() == 0)
    base = {"benchmark": "sgd", "dataset": dataset.name, "model": spec.model,
            "params": problem.model.n_params, "ranks": size, "batch_size": t.batch_size,
            "allreduce": t.allreduce, "dtype": spec.dtype, "partition": t.partition}
    extra = {"dataset": dataset.name, "n_train": dataset.n_train,
             "n_test": int(dataset.X_test.shape[0]), "f_star": problem.f_star,
             "f_star_note": problem.f_star_note}
    run = Run(comm, "sgd", _recorded(cfg), argv, backend, cfg.run, extra_env=extra)
    summaries = []
    for mode, method in series_for(cfg, size):
        mcfg = replace(t, compression=t.compression.of(method)).for_mode(mode, size,
                                                                       dataset.n_train)
        rows: list = []
        try:
            result = _train(run, problem, mcfg, base, rows)
        except Diverged as exc:  # raised on every rank alike: no Abort needed
            return _diverged(exc, run, base, rows, mcfg)
        if not run.root:
            continue
        s = {**base, **summary(rows, result, cfg.targets, mcfg),
             "compress": mcfg.compression.method}
        summaries.append(s)
        run.writer.append([s])
        run.table(f"SGD {sgd_series(s)}: {dataset.name}, {spec.model}, {size} ranks",
                  SGD_EVAL_COLUMNS,
                  [sgd_eval_row(r) for r in rows])
    run.emit(f"SGD summary: {dataset.name}, {spec.model}, {size} ranks",
             SGD_SUMMARY_COLUMNS, [sgd_summary_row(s) for s in summaries],
             _caption(cfg, run.env, run.writer, problem, dataset) if run.root else "",
             answer=lambda: sgd_answer(summaries, cfg.targets.text()))
    return 0


def _train(run: Run, problem: Problem, mcfg: SGDConfig, base: dict, rows: list):
    """One mode's training with its evaluation rows written as they come (rank 0) and the
    watchdog's interval started at each evaluation."""
    tag = {"kind": "eval", **base, "compress": mcfg.compression.method,
           "local_steps": mcfg.local_steps if mcfg.mode == "local" else None}
    with run.progress(mcfg.steps, f"sgd {mcfg.mode}") as advance:
        def on_eval(rec):
            full = {**tag, **rec}
            advance(rec["step"] - (rows[-1]["step"] if rows else 0))
            rows.append(full)
            run.writer.append([full])

        return run_sgd(run.wcomm, problem, mcfg, on_eval, watchdog.enter)


def _diverged(exc: Diverged, run, base: dict, rows: list, mcfg) -> int:
    """End the run on a divergence: a summary record of the mode saying where, the results
    marked incomplete, the records on stdout with ``--json``, one line; exit code 1."""
    if run.root:
        last = rows[-1] if rows else {}
        run.writer.append([{**base, "kind": "summary", "mode": exc.mode, "steps": exc.step,
                            "diverged_at_step": exc.step, "compress": mcfg.compression.method,
                            "final_loss": last.get("train_loss"),
                            "final_test_acc": last.get("test_acc")}])
        run.fail(str(exc))
    return 1


def _recorded(cfg: SGDBenchConfig) -> dict:
    """The configuration as results record it (straggler ranks as strings: JSON keys)."""
    config = flatten(cfg)
    config["straggler"] = {str(k): v for k, v in cfg.training.straggler.items()}
    return config


def _caption(cfg, env, writer, problem, dataset) -> str:
    t = cfg.training
    fstar = f"{problem.f_star:.6f}" if problem.f_star is not None else (
        f"unknown ({problem.f_star_note})" if problem.f_star_note else "- (not convex)")
    return (f"{env_line(env)}\n{dataset.name}: {dataset.n_train} train / "
            f"{dataset.X_test.shape[0]} test, {problem.model.n_params} parameters, "
            f"f* = {fstar}; batch {t.batch_size}/worker, lr {t.schedule.lr:g} "
            f"({t.schedule.schedule}{', x p in sync/local' if t.scale_lr else ''}), "
            f"allreduce {t.allreduce}, compress {','.join(cfg.compressors)} (sync, local)\n"
            f"sent/rank = max over ranks of bytes handed to MPI; wall time excludes "
            f"evaluation; comm % = rank 0's share of it in the exchange (async: the server "
            f"waiting for gradients)\n"
            f"target: {cfg.targets.text() or 'none (--target-loss/--target-acc)'}; "
            f"results: {writer.path}")


# --------------------------------------------------------------------------- command line

def _sgd(cfg: SGDBenchConfig) -> Job:
    cfg = replace(cfg, training=replace(cfg.training, straggler=parse_straggler(cfg.straggler)))
    validate(cfg)
    read = (None if cfg.problem.dataset in BUILTIN else  # a user's file: every rank checks it
            load_dataset(cfg.problem.dataset, cfg.training.seed))
    return Job("sgd", _recorded(cfg), lambda comm, argv, dataset: run(cfg, dataset, comm, argv),
               options=cfg.run, validate=lambda comm: validate_mpi(cfg, comm, read))


sgd_command = declared_command(
    "sgd", SGDBenchConfig, _sgd,
    doc="""Synchronous, local and asynchronous SGD on real data: convergence per step, per byte
    and per second, for AllReduce algorithms, compressors and stragglers.""",
    examples=["mpirun -n 4 distbench sgd", "mpirun -n 4 distbench sgd --mode sync,local "
              "--local-steps 8 --compress topk",
              "mpirun -n 4 distbench sgd --model mlp --target-acc 0.9 --straggler 1:5"])
