"""What one rank of a D x T x P layout holds, computes and sends in one training step, in
closed form: the figures the measured step (:mod:`.step`) is checked against.

Parameters of rank (d, t, s): its stage's ``L/P`` layers and, on stage 0, the embeddings,
split over the T tensor ranks: ``Psi_r = (L/P x layer + [s = 0] x embedding) / T`` (tensor
parallelism splits the weight matrices; replicated layer norms and biases, ~1 % of a layer,
are counted as split too). The tied output layer is counted once, on stage 0 (Megatron-LM
keeps a copy on the last stage and all-reduces the two copies' gradients; that exchange is left
out here).

Bytes each rank sends per step, by traffic class, for algorithms that move the optimal volume
(a ring; n = the bytes being exchanged, q = the group's size). A reduce-scatter and an
allgather split their vector into D equal blocks, so each exchanged vector is padded to a
multiple of D: Psi_b below is the sum over the gradient buckets of ceil(count / D) D (the
buckets of :mod:`.buckets` for the cap), Psi_l the same sum over the layers (ZeRO 3 gathers a
layer at a time); both exceed Psi_r by less than D elements per bucket or layer.

* ``dp`` (data-parallel group, D ranks, gradients of B bytes). The micro-batches' gradients
  accumulate and are exchanged once after the last micro-batch for ZeRO 0 and 1 (DDP's
  ``no_sync``); ZeRO 2 and 3 reduce-scatter every micro-batch's gradients as DeepSpeed does, so
  that no rank ever holds more than its shard of them (the memory model's Psi / N_d):
  ZeRO 0: an AllReduce, ``2 (D-1)/D Psi_b B``; ZeRO 1: a reduce-scatter and an allgather of
  the updated parameters, the same ``2 (D-1)/D Psi_b B`` (ZeRO, section 7.2); ZeRO 2: ``m``
  reduce-scatters and the allgather, ``(m + 1)(D-1)/D Psi_b B``; ZeRO 3: per micro-batch the
  parameters allgathered before its forward and again before its backward and the gradients
  reduce-scattered, ``m (D-1)/D (2 Psi_l + Psi_b) B``, that is 3m/2 times data parallelism
  (1.5x for m = 1, the paper's).
* ``tp`` (tensor group, T ranks; Shoeybi et al. 2019, "Megatron-LM", section 3): two
  AllReduces of the activations b S H in each layer's forward and two in its backward, on
  stage 0 one after the vocabulary-parallel input embedding's forward, and on the last stage
  one in the LM head's backward (Megatron's ``parallel_lm_logits`` copies its input to the
  tensor-parallel region, whose backward all-reduces the gradient):
  ``(4 (L/P) + [s = 0] + [s = P-1]) x 2 (T-1)/T x m x b S H B`` (the parallel
  cross-entropy's b S scalars are left out).
* ``pp`` (neighbouring stages): the activation b S H to the next stage after each forward
  and its gradient to the previous stage after each backward: ``m b S H B`` each way.
"""

from __future__ import annotations

from dataclasses import dataclass

from distbench.algorithms.parallel.buckets import MIB, make_buckets
from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.memory import Memory, in_flight, rank_memory
from distbench.algorithms.parallel.transformer import Transformer

CLASSES = ("dp", "tp", "pp")


@dataclass(frozen=True)
class RankPlan:
    """One rank's share of a step (see the module docstring).

    Attributes:
        model, layout, zero, schedule: the configuration.
        data, tensor, stage: the rank's indices.
    """

    model: Transformer
    layout: Layout
    zero: int
    schedule: str
    data: int
    tensor: int
    stage: int

    @classmethod
    def of(cls, model: Transformer, layout: Layout, rank: int, zero: int = 0,
           schedule: str = "1f1b") -> RankPlan:
        d, t, s = layout.indices(rank)
        return cls(model, layout, zero, schedule, d, t, s)

    # ---------------------------------------------------------------- parameters
    @property
    def stage_layers(self) -> int:
        return self.model.layers // self.layout.pp

    def layer_elements(self) -> list[int]:
        """Gradient elements of each of this rank's layers, forward order (the embeddings
        first on stage 0)."""
        per = round(self.model.layer_params / self.layout.tp)
        out = [per] * self.stage_layers
        if self.stage == 0 and self.model.embedding_params:
            out.insert(0, round(self.model.embedding_params / self.layout.tp))
        return out

    @property
    def has_embedding(self) -> bool:
        """Whether this rank's first "layer" is the input embedding (stage 0)."""
        return self.stage == 0 and bool(self.model.embedding_params)

    @property
    def params(self) -> int:
        """Psi_r: the parameters this rank holds (before ZeRO's sharding)."""
        return sum(self.layer_elements())

    # ---------------------------------------------------------------- compute
    def forward_flops(self) -> float:
        """FLOPs of one micro-batch's forward on this rank (its layers, the logits on the
        last stage), split over the tensor group."""
        f = self.stage_layers * self.model.layer_forward_flops()
        if self.stage == self.layout.pp - 1:
            f += self.model.logit_forward_flops()
        return f / self.layout.tp

    def compute_seconds(self, tflops: float) -> float:
        """This rank's compute per step at ``tflops`` (1e12 FLOP/s): 3 forwards per
        micro-batch (a backward is two)."""
        return 3.0 * self.model.micro_batches * self.forward_flops() / (tflops * 1e12)

    # ---------------------------------------------------------------- traffic
    @property
    def activation_bytes(self) -> int:
        """b S H elements of B bytes: a pipeline message, a tensor-parallel AllReduce."""
        return self.model.activation_elements() * self.model.param_bytes

    def bucket_cap(self, bucket_mb: float) -> int:
        """A bucket cap of ``bucket_mb`` MiB in elements, a multiple of the data group's size
        (what the step's buckets are cut to)."""
        D = self.layout.dp
        n = max(1, int(bucket_mb * MIB) // self.model.param_bytes)
        return max(D, n // D * D)

    def padded(self, bucket_mb: float) -> tuple[int, int]:
        """(Psi_b, Psi_l): this rank's gradient elements padded to a multiple of D per bucket
        (the cap ``bucket_mb``), and per layer (ZeRO 3's gathers)."""
        D = self.layout.dp
        layers = self.layer_elements()
        buckets = make_buckets(layers, self.bucket_cap(bucket_mb))
        return (sum(-(-b.count // D) * D for b in buckets),
                sum(-(-n // D) * D for n in layers))

    def tp_allreduces(self) -> int:
        """The tensor group's AllReduces of b S H per micro-batch on this rank's stage."""
        return (4 * self.stage_layers + self.has_embedding
                + (self.stage == self.layout.pp - 1))

    def traffic(self, bucket_mb: float = 25.0) -> dict[str, float]:
        """Bytes this rank sends per step by class (the optimal volumes of the docstring,
        padding included, for buckets of ``bucket_mb`` MiB)."""
        D, T, P = self.layout.dp, self.layout.tp, self.layout.pp
        m, b = self.model.micro_batches, self.model.param_bytes
        psi_b, psi_l = self.padded(bucket_mb)
        moved = {0: 2 * psi_b, 1: 2 * psi_b, 2: (m + 1) * psi_b,
                 3: m * (2 * psi_l + psi_b)}[self.zero]
        dp = (D - 1) / D * moved * b
        tp = 2.0 * (T - 1) / T * self.tp_allreduces() * m * self.activation_bytes
        pp = m * self.activation_bytes * ((self.stage < P - 1) + (self.stage > 0))
        return {"dp": dp, "tp": tp, "pp": float(pp)}

    # ---------------------------------------------------------------- memory
    def memory(self) -> Memory:
        """Model states under ZeRO plus the activations the stage holds at once."""
        held = in_flight(self.schedule, self.stage, self.layout.pp, self.model.micro_batches)
        acts = self.stage_layers * self.model.activation_memory(self.layout.tp) * held
        return rank_memory(self.params, self.zero, self.layout.dp, self.model.param_bytes,
                           acts)


__all__ = ["CLASSES", "RankPlan"]
