"""``distbench fedavg``: federated learning with many simulated clients over MPI: client
sampling, non-IID partitions, FedProx, server optimizers, SCAFFOLD, heterogeneous clients, and
compressed or differentially private uploads.

The algorithms given with ``--algorithm`` run one after another in one invocation, from the
same initial model, on the same partition and the same client samples. The partition goes to
``results/<UTC>-fedavg/results.{json,csv}`` first (``kind = "partition"``: samples and label
counts per client), then one row per evaluated round (``kind = "eval"``), then one summary row
per algorithm (``kind = "summary"``); rank 0 prints a table per algorithm and a summary. The
algorithms and the MPI protocol live in :mod:`distbench.algorithms.federated`.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import click
import numpy as np

from distbench import command
from distbench.algorithms.federated import (
    ALGORITHMS,
    OPTIONS,
    PARTITIONS,
    FedConfig,
    FedDiverged,
    label_counts,
    make_clients,
    make_partition,
    run_federated,
)
from distbench.algorithms.sgd import Problem
from distbench.algorithms.sgd.datasets import BUILTIN, load_dataset
from distbench.analysis.tables import (
    FED_ROUND_COLUMNS,
    FED_SUMMARY_COLUMNS,
    abridge,
    fed_round_row,
    fed_series,
    fed_summary_row,
)
from distbench.benchmarks.sgd import STEP_LOWER_BOUND_S, ensure_dataset, rate_interval, reached
from distbench.benchmarks.sweep import Run, check_duration
from distbench.command import Job, algorithm_options, csv_list, with_options
from distbench.console import print_table
from distbench.results import env_line
from distbench.runtime import UsageError, eprint, get_backend, mpi

# The round loop's options, in the order --help shows them.
ROUND_OPTIONS, CLIENT_OPTIONS, DP_OPTIONS = ({n: OPTIONS[n] for n in names} for names in (
    ("rounds", "clients", "fraction", "local_epochs", "local_batch", "lr"),
    ("slow_fraction", "dropout"), ("dp_clip", "dp_noise", "eval_every")))
_TABLE_ROWS = 12  # rows per algorithm in the live table (every row is in the results)


def fed_config(cfg) -> FedConfig:
    """The :class:`FedConfig` of the parsed options ``cfg``."""
    return FedConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(FedConfig)})


def validate(cfg) -> None:
    """Checks that need neither MPI nor the data. Raises UsageError (one line)."""
    cfg.algorithms = ALGORITHMS.require(cfg.algorithms, "--algorithm")
    PARTITIONS.require([cfg.partition], "--partition", allow_all=False)
    options = vars(cfg)
    command.check_algorithm_options(ALGORITHMS.options(), options)
    command.check_algorithm_options(PARTITIONS.options(), options)
    fcfg = fed_config(cfg)
    fcfg.check(any(ALGORITHMS[n].scaffold for n in cfg.algorithms))
    command.check_training_options(cfg)
    check_duration(_local_steps(cfg, fcfg, 1) * STEP_LOWER_BOUND_S, cfg.max_time,
                   "this federated run")


def _local_steps(cfg, fcfg: FedConfig, mean_steps: float) -> float:
    """Local steps of the whole run when a client takes ``mean_steps`` per epoch: the bound
    of --max-time (FedSGD: one per client and round)."""
    per_client = sum(1 if ALGORITHMS[n].full_batch else cfg.local_epochs * mean_steps
                     for n in cfg.algorithms)
    return cfg.rounds * fcfg.sampled() * per_client


def validate_mpi(cfg, data: dict, comm) -> None:
    """Checks that need the data or the communicator (the partition is made here, on every
    rank alike, and kept for the run)."""
    dataset = ensure_dataset(cfg, data, comm)
    tag_ub = comm.Get_attr(mpi().TAG_UB)
    if tag_ub is not None and cfg.clients - 1 > tag_ub:
        raise UsageError(f"--clients {cfg.clients}: client ids are MPI tags, and this MPI's "
                         f"tags stop at {tag_ub}")
    parts = data["parts"] = make_partition(
        cfg.partition, dataset.y_train, cfg.clients, cfg.seed,
        **{k: getattr(cfg, k) for k in PARTITIONS.options()})
    B = cfg.local_batch
    per_epoch = np.mean([-(-p.size // B) if 0 < B < p.size else 1 for p in parts])
    check_duration(_local_steps(cfg, fed_config(cfg), per_epoch) * STEP_LOWER_BOUND_S,
                   cfg.max_time, "this federated run")


def summary(rows: list[dict], result, cfg, algo) -> dict:
    """The summary row of one algorithm (final values, totals, rounds/bytes/time to target)."""
    last = rows[-1]
    hit = next((r for r in rows if reached(r, cfg)), None)
    rate_ci = rate_interval(rows, "round")
    return {
        "kind": "summary", "algorithm": algo.name, "series": last["series"],
        "options": algo.options(), "rounds": result.rounds,
        "final_loss": last["train_loss"], "final_gap": last["gap"],
        "final_test_acc": last["test_acc"], "final_train_acc": last["train_acc"],
        "bytes_up": last["bytes_up"], "bytes_down": last["bytes_down"],
        "bytes_up_per_rank": result.bytes_up_per_rank, "wall_s": result.wall_s,
        "rounds_per_s": result.rounds / result.wall_s if result.wall_s > 0 else None,
        "rounds_per_s_ci": rate_ci,
        "wall_s_ci": [result.rounds / rate_ci[1], result.rounds / rate_ci[0]] if rate_ci
        and rate_ci[0] > 0 else None,
        "round_to_target": hit["round"] if hit else None,
        "bytes_up_to_target": hit["bytes_up"] if hit else None,
        "bytes_down_to_target": hit["bytes_down"] if hit else None,
        "time_to_target_s": hit["wall_s"] if hit else None,
    }


def partition_records(parts, counts, size: int) -> list[dict]:
    """One ``kind = "partition"`` record per client: its rank, samples and label counts."""
    return [{"kind": "partition", "benchmark": "fedavg", "client": k, "rank": k % size,
             "samples": int(p.size), "label_counts": counts[k].tolist()}
            for k, p in enumerate(parts)]


def run(cfg, data: dict, comm, argv: list[str]) -> int:
    """Run every algorithm on every rank of ``comm``; rank 0 writes files and prints tables
    (one BLAS thread per rank by default, as ``distbench sgd``)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=cfg.blas_threads, user_api="blas"):
        return _run(cfg, data, comm, argv)


def _run(cfg, data: dict, comm, argv: list[str]) -> int:
    dataset = ensure_dataset(cfg, data, comm)
    if data.get("parts") is None:
        validate_mpi(cfg, data, comm)
    parts = data["parts"]
    rank, size = comm.Get_rank(), comm.Get_size()
    root = rank == 0
    problem = Problem(dataset, cfg.model, cfg.l2, cfg.width, cfg.dtype, np, with_optimum=root)
    counts = label_counts(dataset.y_train, parts, dataset.n_classes)
    base = {"benchmark": "fedavg", "dataset": dataset.name, "model": cfg.model,
            "params": problem.model.n_params, "ranks": size, "clients": cfg.clients,
            "fraction": cfg.fraction, "local_epochs": cfg.local_epochs,
            "local_batch": cfg.local_batch, "lr": cfg.lr, "partition": cfg.partition,
            "compress": cfg.compress, "dp_clip": cfg.dp_clip, "dp_noise": cfg.dp_noise,
            "dropout": cfg.dropout, "slow_fraction": cfg.slow_fraction, "dtype": cfg.dtype}
    extra = {"dataset": dataset.name, "n_train": dataset.n_train,
             "n_test": int(dataset.X_test.shape[0]), "f_star": problem.f_star,
             "f_star_note": problem.f_star_note}
    run = Run(comm, "fedavg", vars(cfg), argv, get_backend("cpu"), cfg.output,
              extra_env=extra)
    writer = run.writer
    writer.append(partition_records(parts, counts, size))
    clients = make_clients(problem, parts, rank, size)
    fcfg = fed_config(cfg)
    algo_options = {k: getattr(cfg, k) for k in ALGORITHMS.options()}
    summaries = []
    for name in cfg.algorithms:
        algo = ALGORITHMS.create(name, **algo_options)
        tag = {"kind": "eval", **base, "algorithm": name, "options": algo.options(),
               "source": ALGORITHMS.source(name)}
        tag["series"] = fed_series(tag)
        rows: list = []
        pending: list = []
        with run.progress(cfg.rounds, f"fedavg {tag['series']}", cfg.quiet) as advance:

            def on_eval(rec, tag=tag, rows=rows, pending=pending, advance=advance):
                full = {**tag, **rec}
                advance(rec["round"] - (rows[-1]["round"] if rows else 0))
                rows.append(full)
                pending.append(full)
                if len(pending) >= 25:  # the files are rewritten in batches, not per round
                    writer.append(pending)
                    pending.clear()

            try:
                result = run_federated(comm, problem, parts, algo, fcfg, on_eval, clients)
            except FedDiverged as exc:  # raised on every rank alike: no Abort needed
                return _diverged(exc, run, {**tag, "kind": "summary"}, rows, pending)
        if not root:
            continue
        s = {**base, **summary(rows, result, cfg, algo)}
        summaries.append(s)
        writer.append([*pending, s])
        if not cfg.quiet:
            print_table(f"{tag['series']}: {dataset.name}, {cfg.model}, {cfg.clients} "
                        f"clients ({cfg.partition}), {size} ranks", FED_ROUND_COLUMNS,
                        [fed_round_row(r) for r in abridge(rows, _TABLE_ROWS)],
                        stderr=cfg.json)
    run.emit(cfg.json, cfg.quiet, f"Federated summary: {dataset.name}, {cfg.model}, "
             f"{cfg.clients} clients ({cfg.partition}), {size} ranks", FED_SUMMARY_COLUMNS,
             [fed_summary_row(s) for s in summaries],
             _caption(cfg, run.env, writer, problem, dataset, parts, counts) if root else "")
    return 0


def _diverged(exc: FedDiverged, run, tag: dict, rows: list, pending: list) -> int:
    """End the run on a divergence: the rounds not yet written, a summary saying where, the
    results marked incomplete, one line; exit code 1."""
    if run.root:
        last = rows[-1] if rows else {}
        run.writer.append([*pending, {**tag, "diverged_at_round": exc.step,
                                      "final_loss": last.get("train_loss"),
                                      "final_test_acc": last.get("test_acc")}])
        run.writer.mark_incomplete(str(exc))
        eprint(f"Error: {exc}; results: {run.writer.path}")
    return 1


def _caption(cfg, env, writer, problem, dataset, parts, counts) -> str:
    sizes = np.array([p.size for p in parts])
    labels = (counts > 0).sum(axis=1)
    per_round = fed_config(cfg).sampled()
    target = ", ".join(t for t in (
        f"train loss <= {cfg.target_loss:g}" if cfg.target_loss is not None else "",
        f"test acc >= {cfg.target_acc:g}" if cfg.target_acc is not None else "") if t)
    fstar = f"{problem.f_star:.6f}" if problem.f_star is not None else "-"
    dp = (f"; DP: clip {cfg.dp_clip:g}, noise z = {cfg.dp_noise:g}"
          if cfg.dp_clip is not None else "")
    return (f"{env_line(env)}\n{dataset.name}: {dataset.n_train} train / "
            f"{dataset.X_test.shape[0]} test, {problem.model.n_params} parameters, "
            f"f* = {fstar}; partition {cfg.partition}: {sizes.min()}-{int(np.median(sizes))}-"
            f"{sizes.max()} samples (min-median-max), {labels.mean():.1f} labels per client\n"
            f"{per_round} of {cfg.clients} clients per round, E = {cfg.local_epochs}, "
            f"B = {cfg.local_batch}, lr {cfg.lr:g}, uploads {cfg.compress}{dp}; up/down: "
            f"cumulative bytes through MPI (down: the model to every sampled client, up: "
            f"every answering client's update); wall time excludes evaluation\n"
            f"target: {target or 'none (--target-loss/--target-acc)'}; results: {writer.path}")


@click.command("fedavg")
@click.option("--algorithm", "algorithms", default="fedavg", show_default=True,
              help="Comma list of fedsgd, fedavg, fedprox, fedavgm, fedadam, scaffold (or all), "
                   "run one after another from the same model on the same client samples.")
@with_options(algorithm_options(ROUND_OPTIONS))
@click.option("--partition", default="iid", show_default=True,
              help="How the data is split among clients: iid, dirichlet (--alpha), shards "
                   "(--classes-per-client), size-skew (--power).")
@with_options(algorithm_options(PARTITIONS.options()))
@with_options(algorithm_options(ALGORITHMS.options()))
@with_options(algorithm_options(CLIENT_OPTIONS))
@click.option("--compress", default="none", show_default=True,
              help="Compressor of the clients' uploads (none, fp16, qsgd, sign, topk, randk).")
@with_options(command.compressor_options(
    "Kept fraction for topk/randk.",
    "Residual memory per client [default: on for sign/topk/randk, off otherwise]."))
@with_options(algorithm_options(DP_OPTIONS))
@with_options(command.problem_options())
@with_options(command.training_options("rounds, bytes and time"))
@command.seed_option("Seed of every random choice (partition, samples, local batches, noise).")
@with_options(command.watch_options("evaluation interval (the rounds between two evaluations)"))
@with_options(command.output_options("fedavg", json_help="Print the records as JSON on stdout "
                             "(tables go to stderr).", quiet_help="No tables, no progress bar."))
def fedavg_command(algorithms, as_json, **options):
    """Federated learning with many simulated clients: FedSGD, FedAvg, FedProx, FedAvgM,
    FedAdam and SCAFFOLD under client sampling, non-IID data, dropouts and compressed or
    private uploads; accuracy per round and per byte."""
    cfg = SimpleNamespace(algorithms=csv_list(algorithms), json=as_json, **options)
    validate(cfg)
    data = {"dataset": None if cfg.dataset in BUILTIN else load_dataset(cfg.dataset, cfg.seed)}
    return Job("fedavg", vars(cfg), lambda comm, argv: run(cfg, data, comm, argv),
               validate=lambda comm: validate_mpi(cfg, data, comm), timeout=cfg.timeout,
               output=cfg.output)
