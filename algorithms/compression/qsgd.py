"""QSGD: stochastic quantization to s levels per bucket (Alistarh, Grubic, Li, Tomioka &
Vojnovic 2017, "QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding",
section 3.1).

For a bucket v of the gradient (``bucket_size`` consecutive elements) with norm nu:

    Q_s(v_i) = nu * sign(v_i) * xi_i / s,   xi_i = l + 1 with probability tau_i, else l,

where ``l = floor(s |v_i| / nu)`` and ``tau_i = s |v_i| / nu - l``. It is unbiased,
``E Q_s(v) = v``, with variance ``E ||Q_s(v) - v||^2 = (nu^2 / s^2) sum_i tau_i (1 - tau_i)
<= min(n / s^2, sqrt(n) / s) nu^2`` (Lemma 3.1). ``bits`` in {2, 4, 8} gives
``s = 2**(bits-1) - 1``: sign and level together are a signed integer in [-s, s], sent in
``bits`` bits.

Implementation (no loop over elements): per bucket ``t = x * s 2^16 / nu`` (float32), plus a
dither ``r``, 16 random bits read as a signed integer (uniform on [-2^15, 2^15)); then
``code = round((t + r) / 2^16)``. Rounding with a uniform dither of one grid step is
stochastic rounding: ``code = l + 1`` with probability ``tau`` for ``s |x_i| / nu = l + tau``
(sign included, since rounding the signed value ``s x_i / nu`` this way rounds its magnitude
exactly as QSGD does), so the code is ``sign * xi`` in distribution; the dither's 2^-16 steps
make the probabilities, and the mean, exact up to 2^-16 of a level. The rounding itself is
one float32 addition of ``M = 1.5 * 2^39``, whose unit in the last place is 2^16: the low
byte of the sum's bit pattern is the code in two's complement. ``nu`` is the bucket's float32
L2 norm rounded up by the error bound of its float32 computation,
``(1 + max((n + 8) 2^-23, 2^-14))``, so ``|t| < s 2^16`` holds in floating point and every
code stays in [-s, s]; QSGD's guarantees hold for any nu >= ||v||_2.

Wire format: norms (float32, one per bucket), then the codes: int8 two's complement for
8 bits; for 2 and 4 bits ``code + s`` packed 4 or 2 per byte, first element in the lowest
bits. ``wire_bytes = 4 ceil(d / bucket_size) + ceil(d bits / 8)``.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.compression.base import Compressor, as_flat, blocks
from distbench.buffers import workspace
from distbench.registry import Option, in_range
from distbench.runtime import namespace_of

BITS = Option("bits", int, 8, "qsgd: bits per element (s = 2^(bits-1) - 1 levels).",
              choices=(2, 4, 8))
BUCKET_SIZE = Option("bucket_size", int, 512, "qsgd: elements per bucket (one float32 norm "
                     "each).", check=in_range("--bucket-size", 1, 1 << 30))

F = 1 << 16  # dither resolution: 16 random bits per element
MAGIC = np.float32(1.5 * 2.0**39)  # x + MAGIC rounds x to a multiple of F (ulp(MAGIC) = F)


def bucket_sq_norms(xp, xb, out) -> None:
    """``out[i] = sum_j xb[i, j]**2`` for a 2-D block of buckets (``vecdot`` on NumPy >= 2)."""
    if xp is np and hasattr(np, "vecdot"):
        np.vecdot(xb, xb, out=out)
    else:
        out[...] = (xb * xb).sum(axis=1)


def _parts(n: int, bucket: int):
    """Split a block of n elements (starting on a bucket boundary) into <= 2 rectangles of
    whole buckets: (start, stop, rows, row length, first bucket)."""
    full = n // bucket
    parts = [(0, full * bucket, full, bucket, 0)] if full else []
    if n - full * bucket:
        parts.append((full * bucket, n, 1, n - full * bucket, full))
    return parts


class QSGD(Compressor):
    """``qsgd``: see the module docstring. Unbiased; payload ``(norms float32 (ceil(d/B),),
    codes uint8 (ceil(d bits/8),))``.

    Args:
        bits: 2, 4 or 8.
        bucket_size: elements per bucket B (>= 1); one float32 norm each.
        seed, rank: the rounding noise comes from ``SeedSequence([seed, rank])`` (SFC64 on the
            host), so ranks draw independent noise and a run is reproducible.

    Raises:
        UsageError: bits not in {2, 4, 8}, or bucket_size < 1.
    """

    name = "qsgd"
    OPTIONS = (BITS, BUCKET_SIZE)

    def __init__(self, bits: int = BITS.default, bucket_size: int = BUCKET_SIZE.default,
                 seed: int = 0, rank: int = 0):
        super().__init__()
        BITS.validate(bits)
        BUCKET_SIZE.validate(bucket_size)
        self.bits, self.bucket_size = int(bits), int(bucket_size)
        self.s = 2 ** (self.bits - 1) - 1
        self.inflate = 1.0 + max((self.bucket_size + 8) * 2.0 ** -23, 2.0 ** -14)
        self.seed_seq = np.random.SeedSequence([int(seed), int(rank)])
        self._bitgen = np.random.SFC64(self.seed_seq)
        self._generic_rng = None
        self.host_raw_bits = True  # False: draw floats through the generic (CuPy) path

    def describe(self) -> str:
        return f"{self.name}({self.bits}b)"

    def _step(self, d: int, xp) -> int:
        """Block length: whole buckets and a multiple of 4 (whole code bytes at 2 bits)."""
        if xp is not np:
            return max(d, 1)
        rows = max(1, self.block // self.bucket_size)
        while (rows * self.bucket_size) % 4:
            rows += 1
        return rows * self.bucket_size

    def payload_bytes(self, d: int) -> int:
        return 4 * (-(-d // self.bucket_size)) + (d * self.bits + 7) // 8

    def _dither(self, xp, n: int):
        """n uniform integers in [-2^15, 2^15) (int16)."""
        if xp is np and self.host_raw_bits:
            return self._bitgen.random_raw((n + 3) // 4).view(np.int16)[:n]
        if self._generic_rng is None:
            seed = int(self.seed_seq.generate_state(1)[0])
            self._generic_rng = xp.random.default_rng(seed)
        u = self._generic_rng.random(n, dtype=xp.float32)
        xp.multiply(u, np.float32(F), out=u)  # [0, 2^16), truncated below
        return u.astype(xp.uint16).view(xp.int16)

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d, bsz = x.shape[0], self.bucket_size
        norms = self._buf(xp, "norms", -(-d // bsz), np.float32)
        codes = self._buf(xp, "codes", (d * self.bits + 7) // 8, np.uint8)
        step = self._step(d, xp)
        width = min(d, step)
        t = workspace(norms, width, "qsgd.t")
        scale = workspace(norms, -(-width // bsz), "qsgd.scale")
        q8 = workspace(codes, width + 4, "qsgd.q8")
        for a, b in blocks(d, xp, step):
            n = b - a
            nrm = norms[a // bsz: -(-b // bsz)]
            tb = t[:n]
            for lo, hi, rows, cols, first in _parts(n, bsz):
                xb = x[a + lo: a + hi].reshape(rows, cols)
                nb = nrm[first: first + rows]
                bucket_sq_norms(xp, xb, nb)
                xp.sqrt(nb, out=nb)
                xp.multiply(nb, np.float32(self.inflate), out=nb)
                sc = scale[:rows]
                xp.divide(np.float32(self.s * F), xp.where(nb > 0, nb, np.float32(1)), out=sc)
                xp.multiply(xb, sc[:, None], out=tb[lo:hi].reshape(rows, cols))
            xp.add(tb, self._dither(xp, n), out=tb)
            xp.add(tb, MAGIC, out=tb)  # bits of tb: those of MAGIC + round(tb / F)
            bits = tb.view(np.int32)
            if self.bits == 8:
                xp.copyto(codes[a:b].view(np.int8), bits, casting="unsafe")  # low byte
                continue
            c = q8[: n + (-n) % (8 // self.bits)]  # whole bytes; a is a multiple of 4
            c[n:] = 0
            xp.copyto(c[:n].view(np.int8), bits, casting="unsafe")
            xp.add(c[:n], np.uint8(self.s), out=c[:n])  # code + s in [0, 2s] (uint8 wraps)
            first = a * self.bits // 8
            self._pack(xp, c, codes[first: first + c.shape[0] * self.bits // 8])
        return (norms, codes)

    def _pack(self, xp, c, out) -> None:
        """Pack codes c (uint8 < 2^bits, whole bytes' worth) into ``out``, lowest bits first."""
        if self.bits == 4:
            v = c.view(np.uint16)  # c0 | c1 << 8 (little-endian)
            w = workspace(v, v.shape[0], "qsgd.pack")
            xp.right_shift(v, 4, out=w)
            xp.bitwise_or(w, v, out=w)  # low byte: c0 | c1 << 4
        else:
            v = c.view(np.uint32)  # c0 | c1 << 8 | c2 << 16 | c3 << 24
            w = workspace(v, v.shape[0], "qsgd.pack")
            w2 = workspace(v, v.shape[0], "qsgd.pack2")
            xp.right_shift(v, 6, out=w)
            xp.bitwise_or(w, v, out=w)  # c0 | c1 << 2 at bits 0-3, c2 | c3 << 2 at 16-19
            xp.right_shift(w, 12, out=w2)
            xp.bitwise_or(w, w2, out=w)  # low byte: c0 | c1 << 2 | c2 << 4 | c3 << 6
        xp.copyto(out, w, casting="unsafe")  # keep the low byte

    def _unpack(self, xp, packed, n: int):
        """Levels (int8 in [-s, s]) of the first n codes in ``packed``."""
        if self.bits == 4:
            v = workspace(xp.empty(0, dtype=np.uint16), packed.shape[0], "qsgd.unpack")
            w = workspace(v, v.shape[0], "qsgd.unpack2")
            xp.copyto(v, packed)
            xp.left_shift(v, 4, out=w)
            xp.bitwise_or(v, w, out=v)
            xp.bitwise_and(v, np.uint16(0x0F0F), out=v)  # bytes: c0, c1
        else:
            v = workspace(xp.empty(0, dtype=np.uint32), packed.shape[0], "qsgd.unpack")
            w = workspace(v, v.shape[0], "qsgd.unpack2")
            xp.copyto(v, packed)
            xp.left_shift(v, 12, out=w)
            xp.bitwise_or(v, w, out=v)
            xp.bitwise_and(v, np.uint32(0x000F000F), out=v)  # c0|c1<<2 | (c2|c3<<2) << 16
            xp.left_shift(v, 6, out=w)
            xp.bitwise_or(v, w, out=v)
            xp.bitwise_and(v, np.uint32(0x03030303), out=v)  # bytes: c0, c1, c2, c3
        c = v.view(np.uint8)[:n]
        xp.subtract(c, np.uint8(self.s), out=c)  # code - s, as int8 two's complement
        return c.view(np.int8)

    def decompress_add(self, payload, out) -> None:
        """``out += D(payload)`` block by block (the block's D stays in cache)."""
        self._decompress_flat(payload, out, add=True)

    def _decompress_flat(self, payload, out, add: bool = False) -> None:
        norms, codes = payload
        xp = namespace_of(out)
        d, bsz = out.shape[0], self.bucket_size
        step = self._step(d, xp)
        f = workspace(norms, -(-min(d, step) // bsz), "qsgd.f")
        tmp = workspace(out, min(d, step), "qsgd.add") if add else None
        for a, b in blocks(d, xp, step):
            n = b - a
            if self.bits == 8:
                levels = codes[a:b].view(np.int8)
            else:
                levels = self._unpack(xp, codes[a * self.bits // 8: -(-b * self.bits // 8)], n)
            nrm = norms[a // bsz: -(-b // bsz)]
            fb = f[: nrm.shape[0]]
            xp.divide(nrm, np.float32(self.s), out=fb)  # the value of one level
            dst = tmp[:n] if add else out[a:b]
            for lo, hi, rows, cols, first in _parts(n, bsz):
                xp.multiply(levels[lo:hi].reshape(rows, cols), fb[first: first + rows, None],
                            out=dst[lo:hi].reshape(rows, cols))
            if add:
                xp.add(out[a:b], dst, out=out[a:b])
