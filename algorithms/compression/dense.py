"""Dense compressors: ``none`` (the uncompressed baseline) and ``fp16`` (half precision)."""

from __future__ import annotations

import numpy as np

from distbench.algorithms.compression.base import Compressor, as_flat
from distbench.runtime import namespace_of


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
