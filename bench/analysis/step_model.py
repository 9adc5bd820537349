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
  make_buckets`) become ready layer by layer during the last micro-batch's backward; with
  overlap each starts when it is ready and the previous one is done (one exchange at a time),
  and only what runs past the backward is exposed; without overlap all of them are;
* then the optimizer's update of the rank's (shard of the) parameters and, for ZeRO 1 and 2,
  the allgather of the updated parameters.

E = compute / step, as the measurement reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distbench.algorithms.parallel.buckets import MIB, make_buckets
from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.model import Transformer
from distbench.algorithms.parallel.pipeline import bubble_fraction
from distbench.algorithms.parallel.traffic import RankPlan
from distbench.analysis.cost import CostParams

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
    dp_s: float
    dp_exposed_s: float
    bubble: float

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
    m, B = model.micro_batches, model.param_bytes
    speed = tflops * 1e12
    stages = []
    for s in range(P):
        plan = RankPlan.of(model, lay, s * T * D, zero, schedule)
        stages.append(_stage(plan, speed, tp_lv, dp_lv, pp_lv))
    t_mb = max(f + b for f, b, *_ in stages)
    pipe = (m + P - 1) * t_mb
    # the data-parallel exchanges and the update of the stage that ends last
    worst = max(range(P), key=lambda s: stages[s][0] + stages[s][1])
    _, _, layer_b, tp_mb, pp_mb = stages[worst]
    plan = RankPlan.of(model, lay, worst * T * D, zero, schedule)
    layers = plan.layer_elements()
    cap = max(D, int(bucket_mb * MIB) // B // D * D)
    buckets = make_buckets(layers, cap)
    exchange = allreduce_s if zero == 0 else reduce_scatter_s
    times = [exchange(bk.count * B, D, dp_lv) for bk in buckets]
    dp_total = float(sum(times))
    if overlap and D > 1:
        # ready times within the last backward: layers run in reverse, layer_b[j] each
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
    gather = sum(allgather_s(bk.count * B, D, dp_lv) for bk in buckets) if zero in (1, 2) \
        else 0.0
    compute = 3.0 * m * plan.forward_flops() / speed + update
    step = pipe + exposed + update + gather
    return StepPrediction(str(lay), zero, bucket_mb, step, compute, m * tp_mb, m * pp_mb,
                          dp_total + gather, exposed + gather, bubble_fraction(P, m))


def _stage(plan: RankPlan, speed: float, tp_lv, dp_lv, pp_lv):
    """(t_F, t_B, backward seconds per layer, tensor-group seconds per micro-batch, pipeline
    seconds per micro-batch) of one micro-batch on ``plan``'s stage."""
    model, lay = plan.model, plan.layout
    D, T, P, B = lay.dp, lay.tp, lay.pp, model.param_bytes
    act = plan.activation_bytes  # b S H elements of B bytes
    ar = allreduce_s(act, T, tp_lv)
    layer_f = model.layer_forward_flops() / T / speed
    gathers = [allgather_s(n * B, D, dp_lv) if plan.zero == 3 else 0.0
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
    logits = model.logit_forward_flops() / T / speed if plan.stage == P - 1 else 0.0
    p2p = pp_lv[0] + act * pp_lv[1]  # a message of b S H elements
    pp_f = p2p if plan.stage < P - 1 else 0.0
    pp_b = p2p if plan.stage > 0 else 0.0
    tp_mb = (4 * plan.stage_layers + plan.has_embedding) * ar
    return (fwd + logits + pp_f, sum(per_layer_b) + 2 * logits + pp_b,
            np.array(per_layer_b), tp_mb, pp_f + pp_b)


__all__ = ["StepPrediction", "allgather_s", "allreduce_s", "predict_step", "reduce_scatter_s"]
