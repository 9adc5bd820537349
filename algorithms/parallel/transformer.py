"""A GPT-style transformer by its shape: parameters, FLOPs and activation sizes per layer.

Parameter count (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM", SC21, section 5.1):
``P = 12 L H^2 (1 + 13/(12 H) + (V + S)/(12 L H))``: each transformer layer holds ``12 H^2 +
13 H`` (QKV ``3H^2 + 3H``, attention output ``H^2 + H``, MLP ``8H^2 + 5H``, two layer norms
``4H``), the embeddings ``(V + S) H`` (the output layer shares the token embedding).

FLOPs (the same paper, section 5.1, matrix multiplications, 2 FLOPs per multiply-add): the
forward of one layer on a micro-batch of b sequences of S tokens is ``24 b S H^2 (1 + S/(6H))``
and the logit layer's ``2 b S H V``; a backward is twice its forward (no recomputation).

``from_params`` builds a model of a given total size with its layers evenly split: per layer
``P / L`` parameters, ``H = sqrt(P / (12 L))``, FLOPs ``2 x (P/L) x b S`` forward per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from distbench.errors import UsageError


@dataclass(frozen=True)
class Transformer:
    """A GPT-style model and the step's batch.

    Attributes:
        layers, hidden, heads, seq, vocab: L, H, A, S, V.
        micro_batch: b, sequences per micro-batch; micro_batches: m per step.
        param_bytes: bytes of a parameter and of a gradient (2: fp16/bf16).
        params_total: set for a model given by its size (``from_params``): P, its layers
            evenly split; None for a model given by its shape.
    """

    layers: int = 24
    hidden: int = 1024
    heads: int = 16
    seq: int = 1024
    vocab: int = 50257
    micro_batch: int = 1
    micro_batches: int = 1
    param_bytes: int = 2
    params_total: float | None = None

    @classmethod
    def from_params(cls, params: float, layers: int = 24, **shape) -> Transformer:
        """A model of ``params`` parameters split evenly over ``layers`` layers (the hidden
        size follows from 12 H^2 per layer)."""
        hidden = max(1, round(math.sqrt(params / (12 * layers))))
        return cls(layers=layers, hidden=hidden, params_total=float(params), **shape)

    @classmethod
    def of(cls, opts: dict) -> Transformer:
        """The model of a configuration's ``model`` dict (the fields, or ``params`` with the
        layers and batch: :meth:`from_params`), as ``distbench parallel`` records it."""
        opts = dict(opts)
        params = opts.pop("params", None)
        return cls.from_params(params, **opts) if params is not None else cls(**opts)

    def check(self) -> None:
        """Raises UsageError for a shape that is not a model."""
        for name, value in (("--layers", self.layers), ("--hidden", self.hidden),
                            ("--heads", self.heads), ("--seq", self.seq),
                            ("--vocab", self.vocab), ("--micro-batch", self.micro_batch),
                            ("--micro-batches", self.micro_batches),
                            ("--param-bytes", self.param_bytes)):
            if value < 1:
                raise UsageError(f"{name} must be >= 1, not {value}")
        if self.params_total is None and self.hidden % self.heads:
            raise UsageError(f"--heads {self.heads} does not divide --hidden {self.hidden}")
        if self.params_total is not None and not self.params_total >= self.layers:
            raise UsageError(f"--params {self.params_total:g} is fewer than one per layer")

    def with_global_batch(self, dp: int, global_batch: int | None) -> Transformer:
        """This model with m = B / (D b) micro-batches per step, so that layouts of different
        data-parallel degree D train on the same global batch B of sequences (Megatron-LM's
        ``--global-batch-size``); itself when ``global_batch`` is None.

        Raises:
            UsageError: D b does not divide B.
        """
        if global_batch is None:
            return self
        per_step = dp * self.micro_batch
        if global_batch % per_step:
            raise UsageError(f"--global-batch {global_batch} is not a multiple of D x b = "
                             f"{dp} x {self.micro_batch} (layout with D = {dp})")
        return replace(self, micro_batches=global_batch // per_step)

    # ----------------------------------------------------------------- parameters
    @property
    def layer_params(self) -> float:
        """Parameters of one transformer layer."""
        if self.params_total is not None:
            return self.params_total / self.layers
        return 12.0 * self.hidden ** 2 + 13.0 * self.hidden

    @property
    def embedding_params(self) -> float:
        """Token and position embeddings (the output layer shares the token embedding); 0 for
        a model given by its size (all in the layers)."""
        if self.params_total is not None:
            return 0.0
        return float((self.vocab + self.seq) * self.hidden)

    @property
    def params(self) -> float:
        """P: every parameter of the model (Narayanan et al.'s formula for a shape)."""
        return self.layers * self.layer_params + self.embedding_params

    # ----------------------------------------------------------------- compute
    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch: b S."""
        return self.micro_batch * self.seq

    def layer_forward_flops(self) -> float:
        """FLOPs of one layer's forward on one micro-batch."""
        if self.params_total is not None:
            return 2.0 * self.layer_params * self.tokens
        h, s = float(self.hidden), float(self.seq)
        return 24.0 * self.micro_batch * s * h * h * (1.0 + s / (6.0 * h))

    def logit_forward_flops(self) -> float:
        """FLOPs of the logit layer's forward on one micro-batch (0 for a sized model)."""
        if self.params_total is not None:
            return 0.0
        return 2.0 * self.tokens * self.hidden * self.vocab

    def step_flops(self) -> float:
        """FLOPs of a whole training step (forward + backward = 3 forwards, every micro-batch
        of every layer and the logits), for the model unsplit."""
        return 3.0 * self.micro_batches * (self.layers * self.layer_forward_flops()
                                           + self.logit_forward_flops())

    # ----------------------------------------------------------------- activations
    def activation_elements(self) -> int:
        """Elements of the activation between two layers for one micro-batch: b S H (what a
        pipeline stage sends, and what tensor parallelism AllReduces)."""
        return self.tokens * self.hidden

    def activation_memory(self, tensor: int = 1) -> float:
        """Bytes of activations one layer keeps for its backward, per micro-batch, with T-way
        tensor parallelism and 16-bit activations: ``S b H (10 + 24/T + 5 A S / (H T))``
        (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
        Models", section 4.2, eq. 2 with tensor parallelism, no sequence parallelism)."""
        s, b, h, a = float(self.seq), float(self.micro_batch), float(self.hidden), self.heads
        return s * b * h * (10.0 + 24.0 / tensor + 5.0 * a * s / (h * tensor))


__all__ = ["Transformer"]
