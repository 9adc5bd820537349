"""Synthetic gradient sequences for the compression benchmark: correlated in time and
heavy-tailed across coordinates, like SGD's, reproducible from a seed."""

from __future__ import annotations

import math

import numpy as np


class GradientSequence:
    """Synthetic gradients that look like SGD's: correlated in time and heavy-tailed.

    ``g_t^r = sigma * (c_t + n_t^r)`` elementwise, with per-coordinate scales ``sigma =
    exp(1.5 z)`` (log-normal, z ~ N(0, 1): a few coordinates dominate, as in real layers), a
    component ``c_t`` common to all ranks (the full-batch gradient) and a per-rank component
    ``n_t^r`` (minibatch noise), both AR(1) in time:
    ``c_{t+1} = rho c_t + sqrt(1 - rho^2) xi``, rho = 0.9 for c and 0.5 for n, xi ~ N(0, 1).
    Marginally each coordinate is a Gaussian scale mixture with a log-normal scale, i.e.
    heavy-tailed. Seeded from ``(seed, rank)`` (and ``seed`` for the shared parts).
    """

    RHO_COMMON, RHO_NOISE, LOG_SCALE_STD = 0.9, 0.5, 1.5

    def __init__(self, xp, d: int, seed: int, rank: int):
        self.xp, self.d = xp, d
        self._shared = self._rng([seed, 1])
        self._own = self._rng([seed, 2, rank])
        self.sigma = self._normal(self._rng([seed, 0]))
        xp.multiply(self.sigma, np.float32(self.LOG_SCALE_STD), out=self.sigma)
        xp.exp(self.sigma, out=self.sigma)
        self.common = self._normal(self._shared)
        self.noise = self._normal(self._own)
        self._tmp = xp.empty(d, dtype=np.float32)

    def _rng(self, key):
        if self.xp is np:
            return np.random.Generator(np.random.SFC64(np.random.SeedSequence(key)))
        return self.xp.random.default_rng(int(np.random.SeedSequence(key).generate_state(1)[0]))

    def _normal(self, rng, out=None):
        if self.xp is np:
            return rng.standard_normal(self.d, dtype=np.float32, out=out)
        z = rng.standard_normal(self.d, dtype=np.float32)
        if out is None:
            return z
        out[...] = z
        return out

    def _advance(self, state, rng, rho: float) -> None:
        xp = self.xp
        self._normal(rng, out=self._tmp)
        xp.multiply(state, np.float32(rho), out=state)
        xp.multiply(self._tmp, np.float32(math.sqrt(1 - rho * rho)), out=self._tmp)
        xp.add(state, self._tmp, out=state)

    def next(self, out) -> None:
        """Write this rank's next gradient into ``out`` (float32, d elements)."""
        xp = self.xp
        xp.add(self.common, self.noise, out=out)
        xp.multiply(out, self.sigma, out=out)
        self._advance(self.common, self._shared, self.RHO_COMMON)
        self._advance(self.noise, self._own, self.RHO_NOISE)
