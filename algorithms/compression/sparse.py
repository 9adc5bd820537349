"""Sparsifiers: ``topk`` (largest magnitudes) and ``randk`` (random coordinates)."""

from __future__ import annotations

import math

import numpy as np

from distbench.algorithms.compression.base import (
    Compressor,
    as_flat,
    blocks,
    check_index_range,
    keep_count,
)
from distbench.buffers import workspace
from distbench.registry import Option, in_range
from distbench.runtime import namespace_of

SMALL = 1 << 17  # top-k below this many elements: one selection over the whole vector

DENSITY = Option("density", float, 0.01, "topk, randk: the fraction of the coordinates kept.",
                 check=in_range("--density", 0, 1, low_open=True))


def largest(xp, mag, k: int):
    """Positions of k largest entries of the 1-D array ``mag`` (any order; ties arbitrary).

    Selection, never a sort: the k-th largest value theta comes from ``partition``
    (introselect, O(n), the algorithm behind ``argpartition``, but moving values only); then
    every entry above theta and the first entries equal to theta. Returns int64 positions.
    """
    n = mag.shape[0]
    theta = xp.partition(mag, n - k)[n - k]
    above = xp.flatnonzero(mag > theta)
    ties = xp.flatnonzero(mag == theta)[: k - above.shape[0]]
    return xp.concatenate((above, ties))


class TopK(Compressor):
    """``topk``: the ``k = ceil(density d)`` entries of largest magnitude (Stich, Cordonnier &
    Jaggi 2018, "Sparsified SGD with Memory"; Lin et al. 2018, "Deep Gradient Compression").

    Payload ``(values float32 (k,), indices int32 (k,))``; ``wire_bytes = 8k``. Biased, a
    contraction: ``||x - C(x)||^2 <= (1 - k/d) ||x||^2``.

    Selection never sorts: above ``SMALL`` elements a threshold is estimated from a random
    sample of 65536 magnitudes, set about four standard deviations below the sample's k/d
    quantile so that at least k entries reach it with high probability; the entries at or
    above it are collected block by block (index and signed value, while the block is in
    cache) and :func:`largest` picks the k largest among them. If fewer than k reached the
    threshold, a lower sample quantile is tried, then :func:`largest` of all d magnitudes.
    Every path returns exactly a set of k largest magnitudes (ties broken arbitrarily).
    """

    name = "topk"
    biased = True
    OPTIONS = (DENSITY,)

    def __init__(self, density: float = DENSITY.default, seed: int = 0):
        super().__init__()
        DENSITY.validate(density)
        self.density = float(density)
        self._sample_rng = np.random.default_rng([seed, 0x70CB])

    def describe(self) -> str:
        return f"{self.name}({self.density:g})"

    def k(self, d: int) -> int:
        """Number of entries kept: ``ceil(density d)`` (at least 1 when d > 0)."""
        return keep_count(self.density, d)

    def payload_bytes(self, d: int) -> int:
        return 8 * self.k(d)

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        check_index_range(d)
        k = self.k(d)
        values = self._buf(xp, "values", k, np.float32)
        indices = self._buf(xp, "indices", k, np.int32)
        if k == 0:
            return (values, indices)
        found = self._by_threshold(x, xp, d, k) if d > SMALL and k < d else None
        if found is None:
            mag = workspace(x, d, "topk.abs")
            xp.abs(x, out=mag)
            picked = largest(xp, mag, k)
            indices[...] = picked
            values[...] = x[picked]
        else:
            indices[...], values[...] = found
        return (values, indices)

    def _by_threshold(self, x, xp, d: int, k: int):
        """(indices, values) of k largest |x| through a sampled threshold, or None."""
        m = 1 << 16
        sample = xp.asarray(self._sample_rng.integers(0, d, m))
        mags = xp.abs(x[sample])
        expect = m * k / d
        for sigmas in (4.0, 16.0):
            r = min(m, int(math.ceil(expect + sigmas * math.sqrt(expect) + 4 * sigmas)))
            thr = xp.partition(mags, m - r)[m - r]
            idx, val = self._at_least(x, xp, d, thr)
            n = idx.shape[0]
            if n >= k:
                sel = largest(xp, xp.abs(val), k)
                return idx[sel], val[sel]
            if r == m:
                break
        return None

    def _at_least(self, x, xp, d: int, thr):
        """Indices (int64) and values of the entries with ``|x| >= thr``, block by block."""
        step = self.width(d, xp)
        tmp = workspace(x, min(d, step), "topk.abs")
        hit = workspace(xp.empty(0, dtype=bool), tmp.shape[0], "topk.hit")
        idx, val = [], []
        for a, b in blocks(d, xp, step):
            t, h, xb = tmp[: b - a], hit[: b - a], x[a:b]
            xp.abs(xb, out=t)
            xp.greater_equal(t, thr, out=h)
            nz = xp.flatnonzero(h)
            if nz.shape[0]:
                val.append(xb[nz])
                idx.append(nz + a)
        if not idx:
            return xp.empty(0, dtype=xp.int64), xp.empty(0, dtype=x.dtype)
        return xp.concatenate(idx), xp.concatenate(val)

    def _decompress_flat(self, payload, out) -> None:
        values, indices = payload
        out.fill(0)
        out[indices] = values

    def decompress_add(self, payload, out) -> None:
        values, indices = payload
        out[indices] += values  # indices are distinct: no lost updates

    def residual(self, payload, p, out) -> None:
        values, indices = payload
        namespace_of(out).copyto(out, p)
        out[indices] -= values

    def residual_in_place(self, payload, p) -> bool:
        values, indices = payload  # copies of p's entries, never views of p
        p[indices] -= values
        return True


class RandK(TopK):
    """``randk``: ``k = ceil(density d)`` coordinates drawn uniformly without replacement, the
    sparsification baseline (Stich, Cordonnier & Jaggi 2018, rand_k; unscaled, so a biased
    contraction like top-k, with ``E||x - C(x)||^2 = (1 - k/d) ||x||^2``).

    The indices of step t come from a generator seeded with ``(seed, t)``, t counting this
    compressor's ``compress`` calls: every rank built with the same seed draws the same
    indices at the same step, so the payloads are summable. Payload ``(values float32 (k,),
    indices int32 (k,))``; only ``values`` travels: ``wire_bytes = 4k``.
    """

    name = "randk"
    summable = True

    def __init__(self, density: float = DENSITY.default, seed: int = 0):
        super().__init__(density, seed)
        self.seed = int(seed)
        self.step = 0

    def payload_bytes(self, d: int) -> int:
        return 4 * self.k(d)

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        check_index_range(d)
        k = self.k(d)
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        values = self._buf(xp, "values", k, np.float32)
        indices = self._buf(xp, "indices", k, np.int32)
        if k:
            indices[...] = xp.asarray(rng.choice(d, k, replace=False, shuffle=False))
            values[...] = x[indices]
        return (values, indices)
