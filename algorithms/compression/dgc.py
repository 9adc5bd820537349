"""Deep Gradient Compression (Lin, Han, Mao, Wang and Dally, ICLR 2018): top-k sparsification
at 99.9 % with the four techniques that keep its accuracy.

Per worker, with g this step's gradient, u the corrected momentum and v the accumulation:

* local gradient clipping (section 3.2): g scaled down to norm ``dgc_clip / sqrt(p)`` when it
  is longer (off by default; the paper uses it for its RNNs);
* momentum correction (section 3.2, eq. 6): ``u = m u + g``, ``v = v + u`` (the momentum lives
  on the worker, before sparsification, so the optimizer takes no momentum of its own);
* the k = ceil(density d) entries of largest |v| are sent as (value, index) pairs, and
  momentum factor masking (section 3.2) clears both v and u where they were sent
  (``v[sent] = 0``, ``u[sent] = 0``): what was not sent stays in v, the error feedback of DGC;
* warm-up training (section 3.3): the density falls exponentially over the first epochs, 25 %,
  6.25 %, 1.5625 %, 0.4 % (75 %, 93.75 %, 98.4375 %, 99.6 % sparsity), then ``dgc_density``
  (0.1 %: 99.9 % sparsity). ``dgc_warmup_epochs`` spreads those four stages over that many
  epochs (the paper: 4); an epoch is ``steps_per_epoch`` calls (the caller sets it; 1 by
  default, so that in ``distbench compress`` each gradient of the sequence is an epoch).

The pairs travel by Allgather (the exchange of :mod:`.exchange`): 8 bytes per selected entry
per rank, and each rank adds the p sparse vectors in rank order and divides by p.
"""

from __future__ import annotations

import math

import numpy as np

from distbench.algorithms.compression.base import Compressor, as_flat, check_index_range
from distbench.algorithms.compression.sparse import largest
from distbench.buffers import workspace
from distbench.registry import Option, in_range
from distbench.runtime import namespace_of

WARMUP_DENSITIES = (0.25, 0.0625, 0.015625, 0.004)  # the paper's four warm-up stages
DENSITY = Option("dgc_density", float, 0.001, "dgc: the final fraction of the coordinates sent "
                 "(0.001: the paper's 99.9 % sparsity), at most the warm-up's first 0.25.",
                 check=in_range("--dgc-density", 0, 0.25, low_open=True))
MOMENTUM = Option("dgc_momentum", float, 0.9, "dgc: the momentum m of the momentum correction "
                  "on each worker (u = m u + g).", check=in_range("--dgc-momentum", 0, 1,
                                                                  high_open=True))
WARMUP = Option("dgc_warmup_epochs", float, 4.0, "dgc: epochs over which the density falls "
                "25 %, 6.25 %, 1.5625 %, 0.4 % to --dgc-density (0: no warm-up).",
                check=in_range("--dgc-warmup-epochs", 0, 1e6))
CLIP = Option("dgc_clip", float, None, "dgc: clip each worker's gradient to norm CLIP / "
              "sqrt(p) before the accumulation (local gradient clipping) [default: off].",
              check=lambda v: v is None or in_range("--dgc-clip", 0, 1e300, low_open=True)(v))


class DGC(Compressor):
    """``dgc``: a stateful sparsifier (module doc); payload ``(values float32 (k,), indices
    int32 (k,))``, ``wire_bytes = 8 k``.

    Args:
        dgc_density, dgc_momentum, dgc_warmup_epochs, dgc_clip: the options above.
        ranks: p, for the clipping threshold.
        steps_per_epoch: calls per epoch, for the warm-up (set by the caller).

    Attributes:
        residual_memory: v, what was not sent yet (None before the first step).
        momentum: u.
        steps: compress calls so far.
    """

    name = "dgc"
    biased = True
    own_memory = True  # v is its error feedback: never wrapped in another
    not_for_uploads = ("its momentum correction and accumulation live on a worker from step "
                       "to step, and clients are sampled afresh each round (use topk with "
                       "error feedback)")
    OPTIONS = (DENSITY, MOMENTUM, WARMUP, CLIP)

    def __init__(self, dgc_density: float = DENSITY.default,
                 dgc_momentum: float = MOMENTUM.default,
                 dgc_warmup_epochs: float = WARMUP.default, dgc_clip: float | None = None,
                 ranks: int = 1, steps_per_epoch: int = 1):
        super().__init__()
        for opt, v in ((DENSITY, dgc_density), (MOMENTUM, dgc_momentum),
                       (WARMUP, dgc_warmup_epochs), (CLIP, dgc_clip)):
            opt.validate(v)
        self.dgc_density = float(dgc_density)
        self.dgc_momentum = float(dgc_momentum)
        self.dgc_warmup_epochs = float(dgc_warmup_epochs)
        self.dgc_clip = None if dgc_clip is None else float(dgc_clip)
        self.ranks = max(1, int(ranks))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.residual_memory = None
        self.momentum = None
        self.steps = 0

    def describe(self) -> str:
        return f"dgc({self.dgc_density:g})"

    def density_at(self, step: int) -> float:
        """The density of step ``step`` (0-based): a warm-up stage, then ``dgc_density``."""
        epoch = step / self.steps_per_epoch
        if epoch < self.dgc_warmup_epochs:
            stage = min(len(WARMUP_DENSITIES) - 1,
                        int(epoch * len(WARMUP_DENSITIES) / self.dgc_warmup_epochs))
            return max(self.dgc_density, WARMUP_DENSITIES[stage])
        return self.dgc_density

    def k(self, d: int, step: int | None = None) -> int:
        """Entries sent at ``step`` (default: after the warm-up): ceil(density d), >= 1."""
        density = self.dgc_density if step is None else self.density_at(step)
        return 0 if d <= 0 else min(d, max(1, math.ceil(density * d - 1e-9)))

    def payload_bytes(self, d: int) -> int:
        """After the warm-up: 8 bytes (a float32 value and an int32 index) per entry sent."""
        return 8 * self.k(d)

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        check_index_range(d)
        if self.residual_memory is None or self.residual_memory.shape[0] != d:
            self.residual_memory = xp.zeros(d, dtype=np.float32)
            self.momentum = xp.zeros(d, dtype=np.float32)
        u, v = self.momentum, self.residual_memory
        g = x
        if self.dgc_clip is not None:
            norm = float(xp.linalg.norm(x))
            limit = self.dgc_clip / math.sqrt(self.ranks)
            if norm > limit:
                g = workspace(x, d, "dgc.clip")
                xp.multiply(x, limit / norm, out=g)
        xp.multiply(u, self.dgc_momentum, out=u)
        xp.add(u, g, out=u)
        xp.add(v, u, out=v)
        k = self.k(d, self.steps)
        values = self._buf(xp, "values", k, np.float32)
        indices = self._buf(xp, "indices", k, np.int32)
        if k:
            mag = workspace(v, d, "dgc.abs")
            xp.abs(v, out=mag)
            picked = largest(xp, mag, k)
            indices[...] = picked
            values[...] = v[picked]
            v[picked] = 0  # sent: out of the accumulation ...
            u[picked] = 0  # ... and momentum factor masking
        self.steps += 1
        return (values, indices)

    def _decompress_flat(self, payload, out) -> None:
        values, indices = payload
        out.fill(0)
        out[indices] = values

    def decompress_add(self, payload, out) -> None:
        values, indices = payload
        out[indices] += values  # distinct indices: no lost updates


__all__ = ["DGC", "WARMUP_DENSITIES"]
