"""Gradient compressors: pure array operators (no MPI) for NumPy and CuPy arrays.

Every compressor ``C`` (GRACE's Compressor role) has

* ``compress(x) -> payload``: ``x`` is a floating-point gradient of any shape (read as its
  C-order flattening of ``d`` elements); the payload is a small fixed tuple of flat contiguous
  arrays, ready for mpi4py's buffer API;
* ``decompress(payload, shape, out=None) -> array``: ``D(payload)`` with ``shape``, float32
  unless ``out`` (or, for ``none``, the payload) says otherwise;
* ``decompress_add(payload, out)``: ``out += D(payload)`` (flat ``out``), and
  ``residual(payload, p, out)``: ``out = p - D(payload)`` (error feedback);
* ``wire_bytes(payload)``: the bytes that travel (``payload_bytes(d)`` gives the formula);
* ``summable``: payloads may be added by an AllReduce. Then ``payload[0]`` is the linear part
  that travels, ``D((sum_r payload_r[0],) + payload[1:]) = sum_r D(payload_r)``, and
  ``payload[1:]`` is identical on every rank (rand-k's indices) and never travels. For the
  others every array of the payload travels;
* ``biased``: ``E[D(C(x))] != x`` (error feedback is on by default for these).

Payload arrays are preallocated and owned by the compressor: the next ``compress`` call
overwrites them (``none`` returns a view of ``x`` itself). Temporaries come from
:func:`distbench.collectives._util.workspace`. On NumPy the kernels stream over cache-sized
blocks of ``block`` elements (default ``CHUNK``; a Python loop over blocks, never over
elements); on CuPy they run on the whole vector at once.

Registered in :data:`COMPRESSORS`; build one with :func:`make_compressor`.
"""

from __future__ import annotations

import math

import numpy as np

from distbench.algorithms.compressor import (
    Compressor,
    as_flat,
    blocks,
    check_density,
    check_index_range,
    keep_count,
    total,
)
from distbench.algorithms.quantization import QSGD
from distbench.collectives._util import workspace
from distbench.runtime import UsageError, namespace_of

SMALL = 1 << 17  # top-k below this many elements: one selection over the whole vector


class Identity(Compressor):
    """``none``: the dense baseline; the payload is ``x`` itself (4d bytes for float32)."""

    name = "none"
    summable = True

    def payload_bytes(self, d: int, itemsize: int = 4) -> int:
        return d * itemsize

    def compress(self, x) -> tuple:
        return (as_flat(x),)

    def _out_dtype(self, payload):
        return payload[0].dtype

    def _decompress_flat(self, payload, out) -> None:
        namespace_of(out).copyto(out, payload[0], casting="same_kind")

    def decompress_add(self, payload, out) -> None:
        namespace_of(out).add(out, payload[0], out=out)

    def residual(self, payload, p, out) -> None:
        namespace_of(out).subtract(p, payload[0], out=out)


class FP16(Identity):
    """``fp16``: cast to IEEE half precision and back; 2d bytes, summable (values beyond
    +-65504 become inf, below 6e-8 flush to zero)."""

    name = "fp16"

    def payload_bytes(self, d: int) -> int:
        return 2 * d

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        half = self._buf(xp, "half", x.shape[0], np.float16)
        xp.copyto(half, x, casting="same_kind")
        return (half,)

    def _out_dtype(self, payload):
        return np.float32


class Sign(Compressor):
    """``sign``: scaled sign ``C(x) = (||x||_1 / d) sign(x)`` (Karimireddy et al. 2019, "Error
    Feedback Fixes SignSGD", section 3; Bernstein et al. 2018 for signSGD).

    Payload ``(scale float32 (1,), bits uint8 (ceil(d/8),))``: one bit per element, set for a
    negative sign (``np.signbit``, so -0.0 counts as negative and +0.0 as positive: the value
    0 is sent as +-scale), packed with ``packbits`` (first element in the most significant
    bit). ``wire_bytes = 4 + ceil(d/8)``. Biased; ``||C(x) - x||^2 = ||x||^2 - ||x||_1^2 / d``.
    """

    name = "sign"
    biased = True

    def payload_bytes(self, d: int) -> int:
        return 4 + (d + 7) // 8

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        scale = self._buf(xp, "scale", 1, np.float32)
        neg = workspace(xp.empty(0, dtype=bool), d, "sign.neg")
        step = self.width(d, xp)
        tmp = workspace(x, min(d, step), "sign.abs")
        l1 = 0.0
        for a, b in blocks(d, xp, step):
            t = tmp[: b - a]
            xp.abs(x[a:b], out=t)
            l1 += total(xp, t)
            xp.signbit(x[a:b], out=neg[a:b])
        bits = self._buf(xp, "bits", (d + 7) // 8, np.uint8)
        bits[...] = xp.packbits(neg)
        scale[...] = l1 / d if d else 0.0
        return (scale, bits)

    def _decompress_flat(self, payload, out, add: bool = False) -> None:
        xp = namespace_of(out)
        scale, bits = payload
        d = out.shape[0]
        step = self.width(d, xp, 8)
        un = workspace(xp.empty(0, dtype=np.uint8), min(d, step) + 8, "sign.unpack")
        tmp = workspace(out, min(d, step), "sign.add") if add else None
        for a, b in blocks(d, xp, step):  # step is a multiple of 8: byte-aligned blocks
            u = un[: b - a]
            u[...] = xp.unpackbits(bits[a // 8: (b + 7) // 8])[: b - a]
            # bit 1 -> -scale, bit 0 -> +scale:  D = scale - 2 scale bit
            dst = tmp[: b - a] if add else out[a:b]
            xp.multiply(u, scale * np.float32(-2.0), out=dst)
            xp.add(dst, scale, out=dst)
            if add:
                xp.add(out[a:b], dst, out=out[a:b])

    def decompress_add(self, payload, out) -> None:
        """``out += D(payload)`` block by block (the block's D stays in cache)."""
        self._decompress_flat(payload, out, add=True)


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

    def __init__(self, density: float = 0.01, seed: int = 0):
        super().__init__()
        self.density = check_density(density)
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

    def __init__(self, density: float = 0.01, seed: int = 0):
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



COMPRESSORS = {
    "none": Identity,
    "fp16": FP16,
    "qsgd": QSGD,
    "sign": Sign,
    "topk": TopK,
    "randk": RandK,
}


def make_compressor(name: str, density: float = 0.01, bits: int = 8, seed: int = 0,
                    rank: int = 0, bucket_size: int = 512) -> Compressor:
    """A new compressor ``name`` with its options (the ones it does not use are ignored).

    Args:
        name: a key of :data:`COMPRESSORS`.
        density: kept fraction for ``topk``/``randk``, in (0, 1].
        bits: bits per element for ``qsgd``: 2, 4 or 8 (``s = 2**(bits-1) - 1`` levels).
        seed: seed of the random parts; ``randk`` needs the same seed on every rank.
        rank: this rank; ``qsgd`` draws independent rounding noise per rank from
            ``(seed, rank)``.
        bucket_size: elements per ``qsgd`` bucket (one float32 norm each), >= 1.

    Raises:
        UsageError: unknown name, density outside (0, 1], unsupported bits or bucket size.
    """
    if name not in COMPRESSORS:
        raise UsageError(f"unknown compression method {name!r} (choose from "
                         f"{', '.join(COMPRESSORS)})")
    check_density(density)
    if name == "qsgd":
        return QSGD(bits=bits, bucket_size=bucket_size, seed=seed, rank=rank)
    if name in ("topk", "randk"):
        return COMPRESSORS[name](density=density, seed=seed)
    return COMPRESSORS[name]()
