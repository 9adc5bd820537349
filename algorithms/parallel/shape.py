"""The shape of a training step, declared once (:mod:`distbench.declared`): the model (a
GPT by its shape or by its size), the batch, and the layouts, ZeRO stages, bucket caps,
overlap, pipeline schedule and accelerator speed swept. ``distbench parallel`` measures such a
step and ``distbench model --step`` predicts it; both make their options from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.pipeline import SCHEDULES
from distbench.algorithms.parallel.transformer import Transformer
from distbench.declared import Names, Numbers, arg, check
from distbench.errors import UsageError

MODEL, LAYOUT = "Model", "Layouts and stages"
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(kw_only=True, frozen=True)
class ModelShape:
    """A GPT-style transformer (:class:`~distbench.algorithms.parallel.transformer.
    Transformer`) by its shape, or by its size (``params``, with ``layers`` and ``heads``),
    and the step's batch."""

    layers: int = arg(8, "L.", low=1, high=1 << 20, group=MODEL)
    hidden: int = arg(512, "H.", low=1, high=1 << 24, group=MODEL)
    heads: int = arg(8, "A (attention heads; with --params too: they set the activations).",
                     low=1, high=1 << 20, group=MODEL)
    seq: int = arg(512, "S, tokens per sequence.", low=1, high=1 << 24, group=MODEL)
    vocab: int = arg(50257, "V.", low=1, high=1 << 30, group=MODEL)
    micro_batch: int = arg(1, "b, sequences per micro-batch.", low=1, high=1 << 24,
                           group=MODEL)
    micro_batches: int = arg(4, "m, micro-batches per step (gradients accumulate over them).",
                             low=1, high=1 << 24, group=MODEL)
    global_batch: int | None = arg(None, "B, sequences per step over all data-parallel ranks: "
                                   "each layout runs m = B / (D b) micro-batches, so that "
                                   "layouts compare on the same batch (instead of "
                                   "--micro-batches).", type=int, low=1, high=1 << 40,
                                   group=MODEL)
    params: float | None = arg(None, "A model of this many parameters, its --layers evenly "
                               "split (instead of --hidden and --vocab).", type=float, low=1,
                               high=1e16, group=MODEL)
    param_bytes: int = arg(2, "Bytes of a parameter and a gradient (2: fp16/bf16).",
                           choices=(1, 2, 4, 8), group=MODEL)

    def model(self) -> dict:
        """The keyword arguments of :meth:`Transformer.of` (by size when ``params`` is given:
        then ``hidden`` and ``vocab`` are not used), as results record it."""
        out = {"layers": self.layers, "heads": self.heads, "seq": self.seq,
               "micro_batch": self.micro_batch, "micro_batches": self.micro_batches,
               "param_bytes": int(self.param_bytes)}
        if self.params is not None:
            return {**out, "params": self.params}
        return {**out, "hidden": self.hidden, "vocab": self.vocab}

    def transformer(self) -> Transformer:
        return Transformer.of(self.model())


@dataclass(kw_only=True, frozen=True)
class StepOptions:
    """The configurations of the step swept: layouts (D x T x P), ZeRO stages, bucket caps,
    overlap, the pipeline schedule, and the accelerator's speed."""

    dp: int | None = arg(None, "D, data-parallel ranks [default: ranks / (T P)].", type=int,
                         low=1, high=1 << 40, group=LAYOUT)
    tp: int = arg(1, "T, tensor-parallel ranks (inside a node).", low=1, high=1 << 20,
                  group=LAYOUT)
    pp: int = arg(1, "P, pipeline stages.", low=1, high=1 << 20, group=LAYOUT)
    layouts: list | None = arg(None, "Several layouts, e.g. 4x1x1,2x2x1,1x2x2,1x1x4 (instead of "
                               "--dp/--tp/--pp); all: every layout of the ranks that fits the "
                               "model.", type=Names(allow_all=True), metavar="DxTxP,...",
                               group=LAYOUT)
    zero: list = arg([0], "ZeRO stages, comma-separated (0: plain data parallelism).",
                     type=Numbers(int, low=0, low_open=False), metavar="STAGES",
                     group=LAYOUT)
    bucket_mb: list = arg([25.0], "Gradient bucket caps in MiB, comma-separated (PyTorch DDP: "
                          "25).", type=Numbers(float), metavar="MIB,...", group=LAYOUT)
    overlap: bool = arg(True, "Start each bucket's exchange while the backward goes on.",
                        negatable=True, group=LAYOUT)
    pp_schedule: str = arg("1f1b", "Pipeline schedule.", choices=SCHEDULES,
                           flags=("--pp-schedule",), deprecated=("--schedule",), group=LAYOUT)
    tflops: float = arg(100.0, "The accelerator's speed, 1e12 FLOP/s.", low=0, low_open=True,
                        high=1e9, group=LAYOUT)

    def check(self) -> None:
        """Raises UsageError for stages other than 0-3, a layout that is not D x T x P, and
        --layouts given with --dp/--tp/--pp (which it replaces)."""
        check(self)
        for z in self.zero:
            if z not in ZERO_STAGES:
                raise UsageError(f"--zero takes stages 0, 1, 2, 3, not {z}")
        if self.layouts is not None:
            if self.layouts != ["all"]:
                for text in self.layouts:
                    Layout.parse(text)
            given = [f for f, on in (("--dp", self.dp is not None), ("--tp", self.tp != 1),
                                     ("--pp", self.pp != 1)) if on]
            if given:
                raise UsageError(f"give --layouts or {'/'.join(given)}, not both")


__all__ = ["LAYOUT", "MODEL", "ZERO_STAGES", "ModelShape", "StepOptions"]
