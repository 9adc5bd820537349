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

from dataclasses import dataclass, replace

import numpy as np

from distbench import watchdog
from distbench.algorithms.federated import (
    ALGORITHMS,
    PARTITIONS,
    FedConfig,
    FedDiverged,
    label_counts,
    make_clients,
    make_partition,
    run_federated,
)
from distbench.algorithms.federated.decentralized import run_decentralized
from distbench.algorithms.sgd import Problem, ProblemSpec, Targets
from distbench.algorithms.sgd.datasets import BUILTIN, load_dataset
from distbench.algorithms.sgd.gossip import topology
from distbench.analysis.answers import fed_answer
from distbench.analysis.tables import (
    FED_ROUND_COLUMNS,
    FED_SUMMARY_COLUMNS,
    abridge,
    fed_round_row,
    fed_series,
    fed_summary_row,
)
from distbench.benchmarks.outline import Run, check_duration
from distbench.benchmarks.sgd import STEP_LOWER_BOUND_S, rate_interval, shared_dataset
from distbench.command import Job, RunOptions
from distbench.declared import Names, arg, check, flatten, group, options_from
from distbench.errors import UsageError
from distbench.options import declared_command, given_names
from distbench.results import env_line
from distbench.runtime import get_backend, mpi

PARTITION, ALGORITHM = "Partition", "Algorithm options"
_TABLE_ROWS = 12  # rows per algorithm in the live table (every row is in the results)


@dataclass(kw_only=True)
class FedBenchConfig:
    """The options of ``distbench fedavg``: the algorithms and their declared options, the
    round loop's options (:class:`~distbench.algorithms.federated.FedConfig`), the partition
    and its options, the problem, the targets and the run options."""

    algorithms: list = arg(["fedavg"], "Comma list of registered federated algorithms (or "
                           "all), run one after another from the same model on the same "
                           "client samples.", type=Names(allow_all=True),
                           flags=("--algorithm",))
    federation: FedConfig = group(FedConfig)
    strategy_options: dict = options_from(ALGORITHMS.options, ALGORITHM)
    partition: str = arg("iid", "How the data is split among clients, a registered partition "
                         "(iid, dirichlet, shards, size-skew).", group=PARTITION)
    partition_options: dict = options_from(PARTITIONS.options, PARTITION)
    problem: ProblemSpec = group(ProblemSpec)
    targets: Targets = group(Targets, help={
        "target_loss": "Report rounds, bytes and time until the training loss is <= this.",
        "target_acc": "Report rounds, bytes and time until the test accuracy is >= this."})
    run: RunOptions = group(RunOptions)


def validate(cfg: FedBenchConfig) -> None:
    """Checks that need neither MPI nor the data. Raises UsageError (one line)."""
    check(cfg)
    PARTITIONS.require([cfg.partition], "--partition", allow_all=False)
    for name in cfg.algorithms:
        cfg.federation.check(ALGORITHMS[name], given_names())
    _check_idle(ALGORITHMS, cfg.algorithms, cfg.strategy_options, "--algorithm")
    _check_idle(PARTITIONS, [cfg.partition], cfg.partition_options, "--partition")
    idle = [flag for flag, name in (("--topology", "topology"),
                                    ("--gossip-steps", "gossip_steps"),
                                    ("--torus-shape", "torus_shape"),
                                    ("--topology-file", "topology_file"))
            if name in given_names() and not cfg.federation.decentralized]
    if idle:
        raise UsageError(f"{', '.join(idle)} do(es) nothing without --decentralized")
    check_duration(_local_steps(cfg, 1) * STEP_LOWER_BOUND_S, cfg.run.max_time,
                   "this federated run")


def _check_idle(registry, names: list[str], values: dict, flag: str) -> None:
    """An option of ``registry`` the user gave that none of ``names`` takes does nothing: an
    error naming it."""
    registry.check(values)
    declared, typed = registry.options(), given_names()
    taken = {o.name for n in names for o in registry.spec(n).options}
    idle = [declared[k].flag for k in values if k in declared and k in typed and k not in taken]
    if idle:
        raise UsageError(f"{', '.join(idle)} do(es) nothing with {flag} {','.join(names)}")


def _local_steps(cfg: FedBenchConfig, mean_steps: float) -> float:
    """Local steps of the whole run when a client takes ``mean_steps`` per epoch: the bound
    of --max-time (FedSGD: one per client and round)."""
    f = cfg.federation
    per_client = 0.0
    for n in cfg.algorithms:
        epochs, batch = ALGORITHMS.create(n, **cfg.strategy_options).work(f.local_epochs,
                                                                          f.local_batch)
        per_client += epochs * (mean_steps if batch else 1)
    return f.rounds * f.sampled() * per_client


def validate_mpi(cfg: FedBenchConfig, comm, read=None):
    """Checks that need the data or the communicator; returns (dataset, partition), made here
    on every rank alike and kept for the run."""
    f = cfg.federation
    if f.decentralized:  # the graph fits the job (one line, exit 2, before any data)
        topology(f.topology, comm.Get_size(), "d-psgd", f.torus_shape, f.topology_file)
    dataset = shared_dataset(cfg.problem.dataset, f.seed, comm, read)
    tag_ub = comm.Get_attr(mpi().TAG_UB)
    if tag_ub is not None and f.clients - 1 > tag_ub:
        raise UsageError(f"--clients {f.clients}: client ids are MPI tags, and this MPI's "
                         f"tags stop at {tag_ub}")
    parts = make_partition(cfg.partition, dataset.y_train, f.clients, f.seed,
                           **cfg.partition_options)
    B = f.local_batch
    per_epoch = np.mean([-(-p.size // B) if 0 < B < p.size else 1 for p in parts])
    check_duration(_local_steps(cfg, per_epoch) * STEP_LOWER_BOUND_S, cfg.run.max_time,
                   "this federated run")
    return dataset, parts


def summary(rows: list[dict], result, targets: Targets, strategy) -> dict:
    """The summary row of one algorithm (final values, totals, rounds/bytes/time to target)."""
    last = rows[-1]
    hit = next((r for r in rows if targets.reached(r)), None)
    rate_ci = rate_interval(rows, "round")
    return {
        "kind": "summary", "algorithm": strategy.name, "series": last["series"],
        "options": strategy.options(), "rounds": result.rounds,
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


def run(cfg: FedBenchConfig, prepared, comm, argv: list[str]) -> int:
    """Run every algorithm on every rank of ``comm``; rank 0 writes files and prints tables
    (one BLAS thread per rank by default, as ``distbench sgd``)."""
    from threadpoolctl import threadpool_limits  # heavy, and only a run needs it

    with threadpool_limits(limits=cfg.problem.blas_threads, user_api="blas"):
        return _run(cfg, *prepared, comm, argv)


def _base(cfg: FedBenchConfig, dataset, problem, size: int) -> dict:
    f = cfg.federation
    return {"benchmark": "fedavg", "dataset": dataset.name, "model": cfg.problem.model,
            "params": problem.model.n_params, "ranks": size, "clients": f.clients,
            "fraction": f.fraction, "local_epochs": f.local_epochs,
            "local_batch": f.local_batch, "lr": f.lr, "partition": cfg.partition,
            "compress": f.compression.method, "dp_clip": f.dp_clip, "dp_noise": f.dp_noise,
            "dropout": f.dropout, "slow_fraction": f.slow_fraction,
            "dtype": cfg.problem.dtype, "decentralized": f.decentralized,
            **({"topology": f.topology_file or f.topology, "gossip_steps": f.gossip_steps}
               if f.decentralized else {})}


def _run(cfg: FedBenchConfig, dataset, parts, comm, argv: list[str]) -> int:
    rank, size = comm.Get_rank(), comm.Get_size()
    spec = cfg.problem
    problem = Problem(dataset, spec.model, spec.l2, spec.width, spec.dtype, np,
                      with_optimum=rank == 0)
    counts = label_counts(dataset.y_train, parts, dataset.n_classes)
    base = _base(cfg, dataset, problem, size)
    extra = {"dataset": dataset.name, "n_train": dataset.n_train,
             "n_test": int(dataset.X_test.shape[0]), "f_star": problem.f_star,
             "f_star_note": problem.f_star_note}
    run = Run(comm, "fedavg", flatten(cfg), argv, get_backend("cpu"), cfg.run,
              extra_env=extra)
    run.writer.append(partition_records(parts, counts, size))
    clients = make_clients(problem, parts, rank, size)
    summaries = []
    for name in cfg.algorithms:
        strategy = ALGORITHMS.create(name, **cfg.strategy_options)
        tag = {"kind": "eval", **base, "algorithm": name, "options": strategy.options(),
               "source": ALGORITHMS.source(name)}
        tag["series"] = fed_series(tag, strategy.shown)
        rows: list = []
        try:
            result = _train(run, problem, parts, strategy, cfg, clients, tag, rows)
        except FedDiverged as exc:  # raised on every rank alike: no Abort needed
            return _diverged(exc, run, {**tag, "kind": "summary"}, rows)
        if not run.root:
            continue
        s = {**base, **summary(rows, result, cfg.targets, strategy)}
        summaries.append(s)
        run.writer.append([s])
        run.table(f"{tag['series']}: {dataset.name}, {spec.model}, {cfg.federation.clients} "
                  f"clients ({cfg.partition}), {size} ranks", FED_ROUND_COLUMNS,
                  [fed_round_row(r) for r in abridge(rows, _TABLE_ROWS)])
    run.emit(f"Federated summary: {dataset.name}, {spec.model}, {cfg.federation.clients} "
             f"clients ({cfg.partition}), {size} ranks", FED_SUMMARY_COLUMNS,
             [fed_summary_row(s) for s in summaries],
             _caption(cfg, run.env, run.writer, problem, dataset, parts, counts)
             if run.root else "", answer=lambda: fed_answer(summaries, cfg.targets.text()))
    return 0


def _train(run: Run, problem, parts, strategy, cfg: FedBenchConfig, clients, tag: dict,
           rows: list):
    """One algorithm's rounds, its evaluation rows written in batches as they come (rank 0;
    every one of them before the run ends, or fails)."""
    pending: list = []
    with run.progress(cfg.federation.rounds, f"fedavg {tag['series']}") as advance:
        def on_eval(rec):
            full = {**tag, **rec}
            advance(rec["round"] - (rows[-1]["round"] if rows else 0))
            rows.append(full)
            pending.append(full)
            if len(pending) >= 25:  # the files are rewritten in batches, not per round
                run.writer.append(pending)
                pending.clear()

        try:
            go = run_decentralized if cfg.federation.decentralized else run_federated
            return go(run.comm, problem, parts, strategy, cfg.federation, on_eval, clients,
                      watchdog.enter)
        finally:
            if pending:
                run.writer.append(pending)


def _diverged(exc: FedDiverged, run, tag: dict, rows: list) -> int:
    """End the run on a divergence: a summary saying where, the results marked incomplete,
    the records on stdout with ``--json``, one line; exit code 1."""
    if run.root:
        last = rows[-1] if rows else {}
        run.writer.append([{**tag, "diverged_at_round": exc.step,
                            "final_loss": last.get("train_loss"),
                            "final_test_acc": last.get("test_acc")}])
    run.fail(str(exc))
    return 1


def _caption(cfg: FedBenchConfig, env, writer, problem, dataset, parts, counts) -> str:
    f = cfg.federation
    sizes = np.array([p.size for p in parts])
    labels = (counts > 0).sum(axis=1)
    fstar = f"{problem.f_star:.6f}" if problem.f_star is not None else "-"
    dp = (f"; DP: clip {f.dp_clip:g}, noise z = {f.dp_noise:g}"
          if f.dp_clip is not None else "")
    return (f"{env_line(env)}\n{dataset.name}: {dataset.n_train} train / "
            f"{dataset.X_test.shape[0]} test, {problem.model.n_params} parameters, "
            f"f* = {fstar}; partition {cfg.partition}: {sizes.min()}-{int(np.median(sizes))}-"
            f"{sizes.max()} samples (min-median-max), {labels.mean():.1f} labels per client\n"
            f"{f.sampled()} of {f.clients} clients per round (ceil(C M)), E = "
            f"{f.local_epochs}, B = {f.local_batch}, lr {f.lr:g}, uploads "
            + (f"none: decentralized over a {f.topology} of the {env['ranks']} ranks "
               f"({f.gossip_steps} gossip round(s) per round), no server; up: the gossip's "
               "bytes, all ranks, cumulative; the model evaluated is the ranks' mean"
               if f.decentralized else
               f"{f.compression.method}{dp}; up/down: cumulative bytes through MPI (down: the "
               "model to every sampled client, up: every answering client's update)")
            + "; wall time excludes evaluation\n"
            f"target: {cfg.targets.text() or 'none (--target-loss/--target-acc)'}; "
            f"results: {writer.path}")


def _fedavg(cfg: FedBenchConfig) -> Job:
    cfg = replace(cfg, algorithms=ALGORITHMS.require(cfg.algorithms, "--algorithm"))
    validate(cfg)
    read = (None if cfg.problem.dataset in BUILTIN else  # a user's file: every rank checks it
            load_dataset(cfg.problem.dataset, cfg.federation.seed))
    return Job("fedavg", flatten(cfg), lambda comm, argv, prepared: run(cfg, prepared, comm,
                                                                         argv),
               options=cfg.run, validate=lambda comm: validate_mpi(cfg, comm, read))


fedavg_command = declared_command(
    "fedavg", FedBenchConfig, _fedavg,
    doc="""Federated learning with many simulated clients: FedSGD, FedAvg, FedProx, FedAvgM,
    FedAdam, SCAFFOLD and FedDyn under client sampling, non-IID data, dropouts and compressed
    or private uploads; accuracy per round and per byte.""",
    examples=["mpirun -n 4 distbench fedavg --algorithm fedsgd,fedavg --rounds 30",
              "mpirun -n 4 distbench fedavg --algorithm fedavg,scaffold,feddyn --partition "
              "dirichlet --alpha 0.1",
              "mpirun -n 4 distbench fedavg --compress qsgd --dropout 0.2"])
