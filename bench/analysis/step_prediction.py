"""The alpha-beta model of one ``distbench parallel`` training step at any scale: what the
step of a D x T x P layout costs when each exchange is a ring on its group and each group runs
on the links it spans (inside a node: alpha, beta; between nodes: alpha', beta').

Costs of the exchanges (n bytes on a group of q ranks; Thakur, Rabenseifner & Gropp 2005,
section 4; Patarasuk & Yuan 2009): AllReduce ``2(q-1) alpha + 2 (q-1)/q n beta + (q-1)/q n
gamma``; reduce-scatter ``(q-1) alpha + (q-1)/q n (beta + gamma)``; allgather ``(q-1) alpha +
(q-1)/q n beta``; a pipeline message ``alpha + n beta``. A group crosses nodes when the ranks
it spans do not fit in one node of k ranks (Megatron-LM's order, :mod:`~distbench.algorithms.
parallel.layout`: a tensor group spans T ranks, a data group T D, a pipeline T D P), and then
runs at the between-node parameters.

The step of the slowest stage, as :mod:`~distbench.algorithms.parallel.step` runs it:

* pipeline: ``(m + P - 1) x (t_F + t_B)`` (the bubble of Narayanan et al. 2021, section
  2.2.1), where t_F is a micro-batch's forward on the stage (compute at ``tflops``, the tensor
  group's AllReduces, ZeRO 3's parameter allgathers, the message to the next stage) and t_B
  its backward (twice the compute, the same exchanges);
* data parallelism: the gradient buckets (:func:`~distbench.algorithms.parallel.buckets.
  make_buckets`) become ready layer by layer during the last micro-batch's backward (ZeRO 2
  and 3: during every micro-batch's backward, each reduce-scattered then); with overlap each
  starts when it is ready and the previous one is done (one exchange at a time), and only what
  runs past the backward is exposed (ZeRO 2 and 3: an earlier micro-batch's exchanges also
  where they outlast the next micro-batch's compute); without overlap all of them are;
* then the optimizer's update of the rank's (shard of the) parameters and, for ZeRO 1 and 2,
  the allgather of the updated parameters.

E = compute / step, as the measurement reports it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from distbench.algorithms.parallel.buckets import make_buckets
from distbench.algorithms.parallel.layout import Layout, all_layouts
from distbench.algorithms.parallel.pipeline import bubble_fraction
from distbench.algorithms.parallel.traffic import RankPlan
from distbench.algorithms.parallel.transformer import Transformer
from distbench.analysis.cost import CostParams
from distbench.analysis.tables import STEP_COLUMNS
from distbench.console import fmt_num, fmt_params, print_table
from distbench.errors import UsageError

UPDATE_FLOPS = 10.0  # per parameter of the shard (Adam), as the measured step computes it


@dataclass(frozen=True)
class StepPrediction:
    """Predicted seconds of one step of one configuration (the slowest stage's)."""

    layout: str
    zero: int
    bucket_mb: float
    step_s: float
    compute_s: float
    tp_s: float
    pp_s: float
    dp_s: float          # the data group's exchanges (ZeRO 3's allgathers included)
    dp_exposed_s: float  # those the step waits for
    bubble: float
    stage: int = 0  # the stage whose figures these are (the last to end its step)
    global_batch: int = 0  # sequences per step, D b m

    @property
    def exposed_s(self) -> float:
        return max(0.0, self.step_s - self.compute_s)

    @property
    def efficiency(self) -> float:
        return self.compute_s / self.step_s if self.step_s > 0 else 1.0


def _level(params: CostParams, crosses: bool) -> tuple[float, float, float]:
    a, b, g, ai, bi = params.vector
    return (ai, bi, g) if crosses else (a, b, g)


def allreduce_s(n: float, q: int, lv) -> float:
    a, b, g = lv
    return 0.0 if q == 1 else 2 * (q - 1) * a + (q - 1) / q * n * (2 * b + g)


def reduce_scatter_s(n: float, q: int, lv) -> float:
    a, b, g = lv
    return 0.0 if q == 1 else (q - 1) * a + (q - 1) / q * n * (b + g)


def allgather_s(n: float, q: int, lv) -> float:
    a, b, _ = lv
    return 0.0 if q == 1 else (q - 1) * a + (q - 1) / q * n * b


def predict_step(model: Transformer, lay: Layout, zero: int, bucket_mb: float, overlap: bool,
                 tflops: float, params: CostParams, ranks_per_node: int | None,
                 schedule: str = "1f1b") -> StepPrediction:
    """The step of ``lay`` on ``lay.ranks`` ranks, ``ranks_per_node`` per node (None: one
    node); seconds. ``tflops`` is the accelerator's speed in 1e12 FLOP/s.

    Raises:
        ValueError: a ZeRO stage outside 0-3.
    """
    if zero not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {zero}")
    k = ranks_per_node or lay.ranks
    D, T, P = lay.dp, lay.tp, lay.pp
    tp_lv = _level(params, T > k)
    dp_lv = _level(params, T * D > k)
    pp_lv = _level(params, T * D * P > k)
    m = model.micro_batches
    speed = tflops * 1e12
    stages = []
    for s in range(P):
        plan = RankPlan.of(model, lay, s * T * D, zero, schedule)
        stages.append(_stage(plan, speed, tp_lv, dp_lv, pp_lv))
    t_mb = max(f + b for f, b, *_ in stages)
    pipe = (m + P - 1) * t_mb
    # after the pipeline: each stage's data-parallel exchanges and update; the last to end
    tails = [_tail(RankPlan.of(model, lay, s * T * D, zero, schedule), stages[s][2], bucket_mb,
                   overlap, speed, dp_lv) for s in range(P)]
    s = max(range(P), key=lambda i: tails[i][0])
    tail, dp_total, exposed, update, gather = tails[s]
    _, _, _, tp_mb, pp_mb, gather_mb = stages[s]
    plan = RankPlan.of(model, lay, s * T * D, zero, schedule)
    compute = 3.0 * m * plan.forward_flops() / speed + update
    if zero >= 2 and m > 1:  # the earlier micro-batches' reduce-scatters (DeepSpeed's)
        per_mb = dp_total
        hidden = (stages[s][0] + stages[s][1]) if overlap else 0.0
        dp_total += (m - 1) * per_mb
        exposed += (m - 1) * max(0.0, per_mb - hidden)
        tail += (m - 1) * max(0.0, per_mb - hidden)
    gather += m * gather_mb  # ZeRO 3's, in every forward and backward, waited for
    return StepPrediction(str(lay), zero, bucket_mb, pipe + tail, compute, m * tp_mb,
                          m * pp_mb, dp_total + gather, exposed + gather,
                          bubble_fraction(P, m), s, D * model.micro_batch * m)


def _tail(plan: RankPlan, layer_b, bucket_mb: float, overlap: bool, speed: float, dp_lv):
    """(seconds past the pipeline, the buckets' exchange seconds, those exposed, the update,
    ZeRO 1/2's allgather) of ``plan``'s stage; ``layer_b``: its layers' backward seconds."""
    D, B, zero = plan.layout.dp, plan.model.param_bytes, plan.zero
    layers = plan.layer_elements()
    buckets = make_buckets(layers, plan.bucket_cap(bucket_mb))
    exchange = allreduce_s if zero == 0 else reduce_scatter_s
    times = [exchange(-(-bk.count // D) * D * B, D, dp_lv) for bk in buckets]
    dp_total = float(sum(times))
    if overlap and D > 1:
        # ready times within the last backward: layers run in reverse, layer_b[j] each;
        # one exchange at a time, each from when its bucket is ready
        done, clock = {}, 0.0
        for j in reversed(range(len(layers))):
            clock += layer_b[j]
            done[j] = clock
        end = 0.0
        for bk, t in zip(buckets, times, strict=True):
            end = max(end, done[bk.ready_after]) + t
        exposed = max(0.0, end - clock)
    else:
        exposed = dp_total
    update = UPDATE_FLOPS * plan.params / (D if zero else 1) / speed
    gather = sum(allgather_s(-(-bk.count // D) * D * B, D, dp_lv) for bk in buckets) \
        if zero in (1, 2) else 0.0
    return exposed + update + gather, dp_total, exposed, update, gather


def _stage(plan: RankPlan, speed: float, tp_lv, dp_lv, pp_lv):
    """(t_F, t_B, backward seconds per layer, tensor-group, pipeline and ZeRO 3 allgather
    seconds per micro-batch) of one micro-batch on ``plan``'s stage."""
    model, lay = plan.model, plan.layout
    D, T, P, B = lay.dp, lay.tp, lay.pp, model.param_bytes
    act = plan.activation_bytes  # b S H elements of B bytes
    ar = allreduce_s(act, T, tp_lv)
    layer_f = model.layer_forward_flops() / T / speed
    gathers = [allgather_s(-(-n // D) * D * B, D, dp_lv) if plan.zero == 3 else 0.0
               for n in plan.layer_elements()]
    per_layer_b = []
    fwd = 0.0
    for j in range(len(gathers)):
        if j == 0 and plan.has_embedding:
            fwd += gathers[j] + ar
            per_layer_b.append(gathers[j])
        else:
            fwd += gathers[j] + layer_f + 2 * ar
            per_layer_b.append(gathers[j] + 2 * layer_f + 2 * ar)
    last = plan.stage == P - 1
    logits = model.logit_forward_flops() / T / speed if last else 0.0
    p2p = pp_lv[0] + act * pp_lv[1]  # a message of b S H elements
    pp_f = p2p if plan.stage < P - 1 else 0.0
    pp_b = p2p if plan.stage > 0 else 0.0
    tp_mb = plan.tp_allreduces() * ar
    head_b = 2 * logits + (ar if last else 0.0)  # the LM head's backward and its AllReduce
    return (fwd + logits + pp_f, sum(per_layer_b) + head_b + pp_b,
            np.array(per_layer_b), tp_mb, pp_f + pp_b, 2 * sum(gathers))


__all__ = ["StepPrediction", "allgather_s", "allreduce_s", "predict_step", "reduce_scatter_s"]


# ----------------------------------------------------------------------------- the command

def step_row(pred: StepPrediction, place: int) -> list[str]:
    """A prediction as a row of :data:`STEP_COLUMNS` (``place``: its rank by step time per
    sequence)."""
    ms = [fmt_num(x * 1e3) for x in (pred.step_s, pred.compute_s, pred.tp_s, pred.pp_s,
                                     pred.dp_s, pred.dp_exposed_s)]
    bubble = "-" if pred.bubble == 0 else f"{100 * pred.bubble:.0f} %"
    return [str(place), pred.layout, str(pred.zero), f"{pred.bucket_mb:g}",
            str(pred.global_batch), *ms,
            f"{pred.efficiency:.2f}", bubble]


def step_layouts(opts: dict) -> list[tuple[int, Layout]]:
    """(ranks, layout) pairs: ``--layouts`` (each of the ``--ranks`` given, if any), or
    D = p / (T P) for each ``--ranks`` p (D: ``--dp`` when given).

    Raises:
        UsageError: no layout, a layout whose rank count is not among ``--ranks``, or a rank
            count that T P does not divide.
    """
    if opts["layouts"] == ["all"]:
        if not opts["ranks"]:
            raise UsageError("--layouts all needs --ranks P,... (the layouts of each)")
        return [(p, lay) for p in opts["ranks"] for lay in all_layouts(p)]
    if opts["layouts"]:
        lays = [Layout.parse(t) for t in opts["layouts"]]
        for lay in lays:
            if opts["ranks"] and lay.ranks not in opts["ranks"]:
                raise UsageError(f"layout {lay} has {lay.ranks} ranks, which --ranks "
                                 f"{','.join(map(str, opts['ranks']))} does not name")
        return [(lay.ranks, lay) for lay in lays]
    tp, pp = opts["tp"], opts["pp"]
    if opts["dp"] is not None:
        return [(opts["dp"] * tp * pp, Layout(opts["dp"], tp, pp))]
    if not opts["ranks"]:
        raise UsageError("--step needs --layouts DxTxP,..., --dp/--tp/--pp or --ranks")
    out = []
    for p in opts["ranks"]:
        if p % (tp * pp):
            raise UsageError(f"--tp {tp} x --pp {pp} does not divide --ranks {p}")
        out.append((p, Layout(p // (tp * pp), tp, pp)))
    return out


def run_step_model(opts: dict, params: CostParams, caption: str) -> int:
    """``distbench model --step``: every (layout, ZeRO stage, bucket cap) predicted and
    ranked by step time, one table per rank count; ``--json`` prints the records."""
    base = Transformer.of(opts["model"])
    base.check()
    stages, buckets = opts["zero"], opts["bucket_mb"]
    per_p: dict[int, list[StepPrediction]] = {}
    for p, lay in step_layouts(opts):
        k = opts["ranks_per_node"] or (p // opts["nodes"] if opts["nodes"] else None)
        if opts["nodes"] and p % opts["nodes"]:
            raise UsageError(f"--nodes {opts['nodes']} does not divide {p} ranks")
        try:
            model = base.with_global_batch(lay.dp, opts["global_batch"])
            lay.check(p, model.heads, model.layers, k, model.micro_batches,
                      opts["pp_schedule"])
        except UsageError:
            if opts["layouts"] == ["all"]:  # enumerated: keep those that fit
                continue
            raise
        for z in stages:
            for b in buckets:
                per_p.setdefault(p, []).append(predict_step(
                    model, lay, z, b, opts["overlap"], opts["tflops"], params, k,
                    opts["pp_schedule"]))
    if opts["json"]:
        out = [{"ranks": p, **asdict(x), "exposed_s": x.exposed_s, "efficiency": x.efficiency}
               for p, preds in per_p.items() for x in preds]
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for p, preds in per_p.items():
        k = opts["ranks_per_node"] or (p // opts["nodes"] if opts["nodes"] else None)
        where = f"{p // k} nodes of {k}" if k and k < p else "one node"
        ranked = sorted(preds, key=lambda x: x.step_s / x.global_batch)
        print_table(f"Predicted training step of a {fmt_params(base.params)}-parameter GPT, "
                    f"p = {p:,} ({where}), ranked by time per sequence", STEP_COLUMNS,
                    [step_row(x, i + 1) for i, x in enumerate(ranked)],
                    caption=f"{caption}; {opts['tflops']:g} TFLOP/s; {opts['pp_schedule']}, "
                    f"overlap {'on' if opts['overlap'] else 'off'}, rings on every group; "
                    "batch: sequences per step, D b m; "
                    "dp: the data group's exchanges, exposed: what runs past the backward "
                    "(distbench.analysis.step_prediction)")
    return 0


def check_against(doc: dict, params: CostParams) -> list[dict]:
    """Measured ``parallel`` step records of ``doc`` beside the model's prediction of their
    configuration (the run's model, accelerator speed, schedule, overlap and nodes)."""
    cfg = doc.get("config", {})
    base = Transformer.of(cfg["model"])
    k = cfg.get("ranks_per_node") or max(doc.get("environment", {}).get("ranks_per_node")
                                         or [0]) or None
    out = []
    for rec in doc["records"]:
        if rec.get("kind") != "step":
            continue
        lay = Layout(rec["dp"], rec["tp"], rec["pp"])
        model = base.with_global_batch(lay.dp, cfg.get("global_batch"))
        pred = predict_step(model, lay, rec["zero"], rec["bucket_mb"], rec["overlap"],
                            rec["tflops"], params, k, rec["schedule"])
        out.append({"layout": rec["layout"], "zero": rec["zero"],
                    "bucket_mb": rec["bucket_mb"], "measured_s": rec["step_s"],
                    "predicted_s": pred.step_s, "error": pred.step_s / rec["step_s"] - 1})
    if not out:
        raise UsageError("the --measured run has no parallel step records")
    return out
