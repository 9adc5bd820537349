"""``distbench parallel``: the communication of one training step of a GPT-style model under
data, ZeRO, tensor and pipeline parallelism, measured on real MPI traffic, with the gradient
buckets overlapped with the backward pass.

Every configuration of the sweep (``--layouts`` x ``--zero`` x ``--bucket-mb``, x overlap on
and off with ``--sweep-overlap``) runs ``--steps`` steps after ``--warmup-steps``
(:class:`distbench.algorithms.parallel.step.Step`), ``--rounds`` times round-robin so that
the configurations compared are measured interleaved on a machine whose speed drifts, and
becomes one record (its steps pooled over the rounds): the step time (the slowest rank's,
median over the steps, with its 95 % interval), the compute, the communication exposed
beyond it, E = T_compute / T_step, bytes sent per rank by traffic class (counted, beside
the closed form of :mod:`distbench.algorithms.parallel.traffic`), memory per rank (ZeRO)
and the pipeline bubble (measured, beside (P-1)/(m+P-1)). The table ranks the
configurations by step time. ``--memory-only`` does the memory arithmetic for any model and
rank count without running.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distbench import watchdog
from distbench.algorithms.parallel.layout import Layout, all_layouts
from distbench.algorithms.parallel.pipeline import bubble_fraction
from distbench.algorithms.parallel.shape import ModelShape, StepOptions
from distbench.algorithms.parallel.step import Step, StepConfig, host_bytes
from distbench.algorithms.parallel.traffic import CLASSES, RankPlan
from distbench.algorithms.parallel.transformer import Transformer
from distbench.analysis.answers import parallel_answer
from distbench.analysis.tables import (
    PARALLEL_COLUMNS,
    PARALLEL_MEMORY_COLUMNS,
    parallel_memory_row,
    parallel_row,
    seconds_per_sequence,
)
from distbench.benchmarks.outline import Run, check_duration, mem_available
from distbench.collectives import get_collective
from distbench.command import Job, RunOptions
from distbench.console import fmt_bytes, fmt_params, print_table
from distbench.declared import arg, check, flatten, group
from distbench.errors import UsageError, eprint
from distbench.metrics import interval
from distbench.options import declared_command
from distbench.results import atomic_write, env_line
from distbench.runtime import get_backend, local_rank_and_size, mpi
from distbench.traces import TraceOp, to_chakra, to_distbench

STEP = "Step"


@dataclass(kw_only=True)
class ParallelConfig:
    """The options of ``distbench parallel``: the model and batch
    (:class:`~distbench.algorithms.parallel.shape.ModelShape`), the configurations swept
    (:class:`~distbench.algorithms.parallel.shape.StepOptions`), the collectives' algorithms,
    the steps timed and the run options."""

    shape: ModelShape = group(ModelShape)
    step: StepOptions = group(StepOptions)
    dp_algo: str = arg("native", "Algorithm of the data-parallel AllReduce / reduce-scatter / "
                       "allgather.", group=STEP)
    tp_algo: str = arg("native", "Algorithm of the tensor group's AllReduce.", group=STEP)
    ranks_per_node: int | None = arg(None, "Ranks of a node, for the tensor groups [default: "
                                     "the real nodes].", type=int, low=1, high=1 << 20,
                                     group=STEP)
    sweep_overlap: bool = arg(False, "Every configuration twice, with overlap on and off "
                              "(instead of --overlap/--no-overlap).", group=STEP)
    rounds: int = arg(1, "Run the list of configurations this many times round-robin, --iters "
                      "steps each time, so that the ones compared are measured interleaved; "
                      "a record pools its steps over the rounds.", low=1, high=1 << 20,
                      group=STEP)
    compute: str = arg("device", "device: each layer takes FLOPs / --tflops of wall time "
                       "without the host CPU; host: NumPy matmuls of the layer's shape.",
                       choices=("device", "host"), group=STEP)
    iters: int = arg(5, "Timed steps per configuration.", low=1, high=1 << 20,
                     flags=("-n", "--iters"), deprecated=("--steps",), group=STEP)
    warmup: int = arg(1, "Untimed warm-up steps per configuration.", low=0, high=1 << 20,
                      flags=("-w", "--warmup"), deprecated=("--warmup-steps",), group=STEP)
    memory_only: bool = arg(False, "Only the memory per rank (any model and rank count; no "
                            "MPI).", group=STEP)
    ranks: int | None = arg(None, "With --memory-only: the rank count [default: D x T x P].",
                            type=int, low=1, high=1 << 40, group=STEP)
    export_trace: str | None = arg(None, "Write the communication of one step (the last "
                                   "timed) of the one configuration run as a trace for "
                                   "distbench replay.", metavar="FILE", group=STEP)
    trace_format: str = arg("distbench", "--export-trace's format: distbench's (one file, "
                            "every rank) or chakra (PyTorch execution traces, FILE_<rank>.json "
                            "per rank).", choices=("distbench", "chakra"), group=STEP)
    run: RunOptions = group(RunOptions)

    def transformer(self, lay: Layout | None = None) -> Transformer:
        """The model; for a layout with --global-batch, with that layout's m = B / (D b).

        Raises:
            UsageError: D b does not divide --global-batch.
        """
        t = self.shape.transformer()
        return t if lay is None else t.with_global_batch(lay.dp, self.shape.global_batch)

    @property
    def overlaps(self) -> list[bool]:
        """The overlap settings each configuration runs with (both with --sweep-overlap)."""
        return [True, False] if self.sweep_overlap else [self.step.overlap]

    def layout_list(self, ranks: int, per_node: int | None = None) -> list[Layout]:
        """The layouts to run on ``ranks`` ranks (--layouts, or --dp x --tp x --pp);
        ``--layouts all``: every D x T x P = ranks that fits the model, the schedule and
        ``per_node`` ranks per node, by T then P.

        Raises:
            UsageError: ``all`` and no layout fits.
        """
        if self.step.layouts == ["all"]:
            out = []
            for lay in all_layouts(ranks):  # by T then P; bounded: the divisors of ranks
                try:
                    _check_layout(self, lay, ranks, per_node)
                except UsageError:
                    continue
                out.append(lay)
            if not out:
                raise UsageError(f"--layouts all: no D x T x P layout of {ranks} ranks fits "
                                 "the model")
            return out
        if self.step.layouts:
            return [Layout.parse(t) for t in self.step.layouts]
        st = self.step
        dp = st.dp if st.dp is not None else max(1, ranks // (st.tp * st.pp))
        return [Layout(dp, st.tp, st.pp)]


def validate(cfg: ParallelConfig) -> None:
    """Checks that need no MPI. Raises UsageError."""
    check(cfg)
    cfg.step.check()
    cfg.transformer().check()
    registries = {"allreduce": ["tp_algo", "dp_algo"], "reduce-scatter": [], "allgather": []}
    if any(z > 0 for z in cfg.step.zero) or cfg.dp_algo != "native":
        registries["reduce-scatter"].append("dp_algo")
        registries["allgather"].append("dp_algo")
    for collective, keys in registries.items():
        for key in keys:
            get_collective(collective).registry.require(
                [getattr(cfg, key)], f"--{key.replace('_', '-')} ({collective})",
                allow_all=False)
    if cfg.ranks is not None and not cfg.memory_only:
        raise UsageError("--ranks goes with --memory-only (a run's ranks are the job's)")
    if cfg.export_trace is not None:
        many = (cfg.step.layouts == ["all"] or len(cfg.step.layouts or [None]) > 1
                or len(cfg.step.zero) > 1 or len(cfg.step.bucket_mb) > 1 or cfg.sweep_overlap)
        if many or cfg.memory_only:
            raise UsageError("--export-trace writes one step of one configuration: give one "
                             "layout, ZeRO stage and bucket size (and no --memory-only)")
    if cfg.memory_only:
        ranks = cfg.ranks or math.prod((cfg.step.dp or 1, cfg.step.tp, cfg.step.pp))
        for lay in cfg.layout_list(ranks, cfg.ranks_per_node):
            _check_layout(cfg, lay, cfg.ranks or lay.ranks, cfg.ranks_per_node)
    else:  # at least the compute of every step, spread over the ranks of the layouts
        # with --global-batch: the whole batch's FLOPs (D = 1, m = B / b) over the ranks
        t = cfg.transformer(Layout(1, 1, 1))
        st = cfg.step
        lays = [] if st.layouts == ["all"] else [Layout.parse(x) for x in st.layouts or []]
        ranks = max([lay.ranks for lay in lays] or [(st.dp or 1) * st.tp * st.pp])
        configs = (len(st.zero) * len(st.bucket_mb) * max(1, len(lays)) * cfg.rounds
                   * len(cfg.overlaps))
        seconds = t.step_flops() / (cfg.step.tflops * 1e12) / ranks if cfg.compute == "device" \
            else 0.0
        check_duration(configs * (cfg.iters + cfg.warmup) * seconds, cfg.run.max_time,
                       "this sweep of steps")


def _check_layout(cfg: ParallelConfig, lay: Layout, ranks: int, per_node: int | None) -> None:
    t = cfg.transformer(lay)
    lay.check(ranks, t.heads, t.layers, per_node, t.micro_batches, cfg.step.pp_schedule)


def per_node(cfg: ParallelConfig, comm) -> int:
    """Ranks of a node: --ranks-per-node, or the fewest on any real node (collective, so every
    rank checks and enumerates layouts alike)."""
    _, local = local_rank_and_size(comm)
    return cfg.ranks_per_node or comm.allreduce(local, op=mpi().MIN)


def validate_mpi(cfg: ParallelConfig, comm) -> None:
    """Every layout against the rank count and the ranks of a node (same verdict on all)."""
    if cfg.ranks_per_node is not None and comm.Get_size() % cfg.ranks_per_node:
        raise UsageError(f"--ranks-per-node {cfg.ranks_per_node} does not divide the "
                         f"{comm.Get_size()} ranks")
    k = per_node(cfg, comm)
    lays = cfg.layout_list(comm.Get_size(), k)
    for lay in lays:
        _check_layout(cfg, lay, comm.Get_size(), k)
    # the buffers of the largest configuration on any rank of this node, before allocating
    rank = comm.Get_rank()
    st = cfg.step
    need = max(host_bytes(RankPlan.of(cfg.transformer(lay), lay, rank, z, st.pp_schedule), b)
               for lay in lays for z in st.zero for b in st.bucket_mb)
    _, local = local_rank_and_size(comm)
    node = comm.allreduce(need, op=mpi().MAX) * local
    avail = mem_available()
    if avail is not None and comm.allreduce(int(node > avail), op=mpi().MAX):
        raise UsageError(f"the step's buffers need about {fmt_bytes(node)} on a node "
                         f"({local} ranks) but {fmt_bytes(avail)} is available; try "
                         "--memory-only for this model, or a smaller one")


# ----------------------------------------------------------------------------- memory only

def memory_records(cfg: ParallelConfig) -> list[dict]:
    """The memory arithmetic of every (layout, ZeRO stage), no MPI: the largest rank's."""
    ranks = cfg.ranks or math.prod((cfg.step.dp or 1, cfg.step.tp, cfg.step.pp))
    out = []
    for lay in cfg.layout_list(ranks):
        model = cfg.transformer(lay)
        for z in cfg.step.zero:
            plans = [RankPlan.of(model, lay, r, z, cfg.step.pp_schedule)
                     for r in _stage_heads(lay)]
            worst = max(plans, key=lambda p: p.memory().total)
            mem = worst.memory()
            out.append({"benchmark": "parallel", "kind": "memory", "layout": str(lay),
                        "ranks": lay.ranks, "zero": z, "params": model.params,
                        "params_per_rank": worst.params, "memory_params_bytes": mem.params,
                        "memory_grads_bytes": mem.grads,
                        "memory_optimizer_bytes": mem.optimizer,
                        "memory_activations_bytes": mem.activations,
                        "memory_bytes": mem.total, "stage": worst.stage})
    return out


def _stage_heads(lay: Layout) -> list[int]:
    """A rank of the first and of the last stage: the ranks of a stage hold the same amount,
    and the first stage holds the most of every other (the embeddings, the most micro-batches
    in flight), so the largest rank is among these two whatever P is."""
    return sorted({0, (lay.pp - 1) * lay.tp * lay.dp})


def run_memory(cfg: ParallelConfig, _comm, _argv) -> int:
    recs = memory_records(cfg)
    if cfg.run.json:
        json.dump(recs, sys.stdout, indent=1)
        sys.stdout.write("\n")
    if not cfg.run.quiet:
        model = cfg.transformer()
        print_table(f"Memory per rank: {fmt_params(model.params)} parameters, "
                    f"{model.param_bytes}-byte parameters and gradients, Adam (K = 12)",
                    PARALLEL_MEMORY_COLUMNS, [parallel_memory_row(r) for r in recs],
                    caption="ZeRO (Rajbhandari et al. 2020, section 5.1): (2B + K) Psi, 2B Psi"
                    " + K Psi/N_d, B Psi + (B + K) Psi/N_d, (2B + K) Psi/N_d with B bytes per "
                    "parameter; activations: Korthikanti et al. 2022, eq. 2, times the "
                    "micro-batches a stage holds (1F1B: P - s; GPipe: m); the largest rank",
                    stderr=cfg.run.json)
    return 0


# ----------------------------------------------------------------------------- the run

def run(cfg: ParallelConfig, comm, argv: list[str]) -> int:
    """Run every configuration on every rank; rank 0 writes the records and the table."""
    model = cfg.transformer()
    run_ = Run(comm, "parallel", _recorded(cfg), argv, get_backend("cpu", "no", comm), cfg.run)
    rank, size = comm.Get_rank(), comm.Get_size()
    records = []
    configs = [(lay, z, b, o) for lay in cfg.layout_list(size, per_node(cfg, comm))
               for z in cfg.step.zero for b in cfg.step.bucket_mb for o in cfg.overlaps]
    pooled: list[list] = [[] for _ in configs]
    slots: dict[int, int] = {}  # configuration -> its record's place in the results
    with run_.progress(len(configs) * cfg.rounds, "parallel") as adv:
        for r in range(cfg.rounds):
            for i, (lay, zero, bucket, overlap) in enumerate(configs):
                plan = RankPlan.of(cfg.transformer(lay), lay, rank, zero, cfg.step.pp_schedule)
                step_cfg = StepConfig(bucket_mb=bucket, overlap=overlap, compute=cfg.compute,
                                      tflops=cfg.step.tflops, dp_algo=cfg.dp_algo,
                                      tp_algo=cfg.tp_algo)
                pooled[i].append(_measure(comm, cfg, plan, step_cfg))
                adv(1, f"parallel {lay} ZeRO-{zero} {bucket:g} MiB"
                       + " no overlap" * (not overlap))
                # the rounds so far, written as they end: a run stopped early keeps them
                rec = _gathered(comm, plan, step_cfg, pooled[i])
                if rank == 0:
                    rec.update(rounds_done=r + 1, partial=r + 1 < cfg.rounds)
                    slots.setdefault(i, len(slots))
                    run_.writer.put(slots[i], rec)
                    if r == cfg.rounds - 1:
                        records.append(rec)
    ranked = sorted(records, key=seconds_per_sequence)
    run_.emit(f"Training step of a {fmt_params(model.params)}-parameter "
              f"GPT on {size} ranks, ranked by time per sequence", PARALLEL_COLUMNS,
              [parallel_row(r, i + 1) for i, r in enumerate(ranked)],
              _caption(cfg, run_, model) if rank == 0 else "",
              answer=lambda: parallel_answer(records))
    wrong = sum(r["pp_wrong"] for r in records)
    if wrong and rank == 0:
        eprint(f"Error: {wrong} pipeline message(s) carried the wrong micro-batch")
    return 1 if comm.bcast(wrong, root=0) else 0


def _measure(comm, cfg: ParallelConfig, plan: RankPlan, step_cfg: StepConfig):
    """Build the step and run it warm-up + --steps times (collective): this rank's times
    (steps x 7: step, compute, pipeline wait, tp, dp, gather, communication; seconds), the bytes
    it sent in the last step by traffic class, the pipeline messages with the wrong
    micro-batch."""
    label = f"parallel {plan.layout} ZeRO-{plan.zero} {step_cfg.bucket_mb:g} MiB step"
    watchdog.enter(f"{label} (set-up)")
    step = Step(comm, plan, step_cfg)
    estimate = plan.compute_seconds(cfg.step.tflops) if cfg.compute == "device" else None
    times = []
    for k in range(cfg.warmup + cfg.iters):
        watchdog.enter(f"{label} {k + 1}", estimate)
        comm.Barrier()
        if cfg.export_trace is not None and k == cfg.warmup + cfg.iters - 1:
            step.trace = []  # the last step, recorded
        t = step.run()
        if k >= cfg.warmup:
            times.append(t)
    watchdog.idle()
    if step.trace is not None:
        export_trace(comm, step, plan, cfg)
    step.free()
    rows = np.array([[t.step, t.compute, t.pp_wait, t.tp, t.dp, t.gather, t.comm]
                     for t in times])
    return rows, times[-1].bytes, sum(t.pp_wrong for t in times)


def export_trace(comm, step: Step, plan: RankPlan, cfg: ParallelConfig) -> None:
    """Write the step's recorded ops as a trace (rank 0 writes; collective): each op on the
    global ranks of its group, in the dtype of the parameter word."""
    world = comm.Get_group()
    groups = {}
    for name, raw in zip(("dp", "tp", "pp"), step._raw, strict=True):
        groups[name] = [int(r) for r in mpi().Group.Translate_ranks(
            raw.Get_group(), list(range(raw.Get_size())), world)]
    # the step's own words (it sums them as integers: NumPy's float16 is ten times slower)
    dtype = {2: "int16", 4: "int32", 8: "int64"}.get(plan.model.param_bytes, "int32")
    ops = [TraceOp(i, coll, dtype, count, out, [], [], groups[g], peer, f"parallel:{g}")
           for i, (coll, g, count, out, peer) in enumerate(step.trace)]
    every = comm.gather(ops, root=0)
    if comm.Get_rank() != 0:
        return
    path = Path(cfg.export_trace)
    source = f"distbench parallel {plan.layout} ZeRO {plan.zero}"
    if cfg.trace_format == "chakra":
        stem = path.name[:-5] if path.name.endswith(".json") else path.name
        for r, mine in enumerate(every):
            atomic_write(path.with_name(f"{stem}_{r}.json"),
                         json.dumps(to_chakra(mine, comm.Get_size())))
    else:
        atomic_write(path, json.dumps(to_distbench(comm.Get_size(), every, source)))


def _gathered(comm, plan: RankPlan, step_cfg: StepConfig, rounds: list) -> dict | None:
    """One configuration's record on rank 0 from this rank's measured ``rounds`` (each
    :func:`_measure`'s result), gathered from every rank (collective); None elsewhere."""
    rows = np.concatenate([r[0] for r in rounds])
    sent = np.array([rounds[-1][1][c] for c in CLASSES], dtype=np.float64)
    formula = np.array([plan.traffic(step_cfg.bucket_mb)[c] for c in CLASSES],
                       dtype=np.float64)
    allrows = comm.gather(rows, root=0)
    allsent = comm.gather((sent, formula, plan.memory().total, plan.params,
                           sum(r[2] for r in rounds)), root=0)
    if comm.Get_rank() != 0:
        return None
    return _record(plan, step_cfg, np.stack(allrows), allsent)


def _record(plan, step_cfg, allrows, allsent) -> dict:
    """The configuration's record from every rank's times (ranks x steps x 7) and bytes."""
    step_per = allrows[:, :, 0].max(axis=0)        # each step: its slowest rank
    med = float(np.median(step_per))
    lo, hi = interval(lambda idx: np.median(np.take(step_per, idx), axis=-1), step_per.size)
    per_rank = np.median(allrows, axis=1)          # ranks x 7, medians over the steps
    compute = float(per_rank[:, 1].max())
    comm_s = per_rank[:, 6]  # the union of each rank's spans in communication
    sent = np.array([s[0] for s in allsent])
    formula = np.array([s[1] for s in allsent])
    lay = plan.layout
    rec = {
        "benchmark": "parallel", "kind": "step", "layout": str(lay), "dp": lay.dp,
        "tp": lay.tp, "pp": lay.pp, "zero": plan.zero, "bucket_mb": step_cfg.bucket_mb,
        "overlap": step_cfg.overlap, "schedule": plan.schedule, "dp_algo": step_cfg.dp_algo,
        "tp_algo": step_cfg.tp_algo, "compute": step_cfg.compute, "tflops": step_cfg.tflops,
        "ranks": lay.ranks, "params": plan.model.params,
        "params_per_rank": int(max(s[3] for s in allsent)),
        "micro_batches": plan.model.micro_batches,
        "global_batch": lay.dp * plan.model.micro_batch * plan.model.micro_batches,
        "steps": int(step_per.size),
        "step_s": med, "step_s_ci": [float(lo), float(hi)], "compute_s": compute,
        "exposed_s": max(0.0, med - compute), "comm_s": float(comm_s.max()),
        "efficiency": compute / med if med > 0 else None,
        "memory_bytes": float(max(s[2] for s in allsent)),
        "bubble": idle_fraction(allrows) if lay.pp > 1 else 0.0,
        "bubble_formula": bubble_fraction(lay.pp, plan.model.micro_batches),
        "pp_wrong": int(sum(s[4] for s in allsent)),
    }
    library = {"dp": step_cfg.dp_algo == "native", "tp": step_cfg.tp_algo == "native",
               "pp": False}
    for i, c in enumerate(CLASSES):
        # a library collective's wire bytes are its own: counted only for ours (and pp's p2p)
        rec[f"bytes_{c}"] = None if library[c] else float(sent[:, i].max())
        rec[f"bytes_{c}_formula"] = float(formula[:, i].max())
        rec[f"bytes_{c}_per_rank"] = None if library[c] else [float(x) for x in sent[:, i]]
    return rec


def idle_fraction(allrows: np.ndarray) -> float:
    """The pipeline bubble measured: the mean over ranks and steps of a rank's idle time over
    the step's time (the slowest rank's), idle being the time blocked in the pipeline's
    receives plus the time from the end of its own step to the end of the slowest rank's
    (a stage done early waits there, in the barrier before the next step). ``allrows``:
    ranks x steps x 7 (:func:`_measure`'s columns: step, compute, pipeline wait, ...)."""
    step = allrows[:, :, 0].max(axis=0)  # each step: its slowest rank
    idle = allrows[:, :, 2] + (step[None, :] - allrows[:, :, 0])
    keep = step > 0
    return float(np.mean(idle[:, keep] / step[None, keep])) if keep.any() else 0.0


def _recorded(cfg: ParallelConfig) -> dict:
    """The configuration as results record it (the model as a dict, as before)."""
    return {**flatten(cfg), "model": cfg.shape.model()}


def _caption(cfg: ParallelConfig, run_, model: Transformer) -> str:
    shape = (f"{fmt_params(model.params)} parameters" if model.params_total is not None else
             f"L={model.layers} H={model.hidden} A={model.heads} S={model.seq} V={model.vocab}"
             f" ({fmt_params(model.params)} parameters)")
    compute = (f"compute: a stand-in accelerator at {cfg.step.tflops:g} TFLOP/s" if cfg.compute ==
               "device" else "compute: NumPy matmuls of each layer's shape")
    batch = (f"b={model.micro_batch}, global batch B={cfg.shape.global_batch} (m = B / (D b))"
             if cfg.shape.global_batch else f"b={model.micro_batch}, m={model.micro_batches}")
    return (f"{env_line(run_.env)}\n{shape}; {batch}; "
            f"{model.param_bytes}-byte parameters; {cfg.step.pp_schedule}; overlap "
            f"{'on and off' if cfg.sweep_overlap else 'on' if cfg.step.overlap else 'off'}; "
            f"dp {cfg.dp_algo}, tp {cfg.tp_algo}; {compute}"
            "\nstep: the slowest rank's, median of the steps (± its 95 % interval); comm: the"
            " most time a rank spent communicating or with exchanges in flight; exposed ="
            " step - compute; E = compute / step; batch: sequences per step, D b m; MB sent"
            " per rank and step, counted / closed form (ring-optimal volume); bubble: time"
            " waiting for the pipeline / step, beside (P-1)/(m+P-1)"
            f"\nresults: {run_.writer.path}")


# ----------------------------------------------------------------------------- the command

def _parallel(cfg: ParallelConfig) -> Job:
    validate(cfg)
    if cfg.memory_only:
        return Job("parallel", _recorded(cfg), lambda c, a, _: run_memory(cfg, c, a),
                   needs_mpi=False)
    return Job("parallel", _recorded(cfg), lambda c, a, _: run(cfg, c, a), options=cfg.run,
               validate=lambda c: validate_mpi(cfg, c))


parallel_command = declared_command(
    "parallel", ParallelConfig, _parallel,
    doc="""The communication of a training step under data, ZeRO, tensor and pipeline
    parallelism: step time, exposed communication, bytes per class, memory per rank.""",
    examples=["mpirun -n 4 distbench parallel --layouts all --zero 0,1,3",
              "mpirun -n 4 distbench parallel --layouts 4x1x1,2x2x1 --bucket-mb 1,25 "
              "--sweep-overlap --rounds 3",
              "distbench parallel --memory-only --params 175e9 --layouts 1024x1x1,16x8x8 "
              "--zero 0,3 --ranks 1024"])
