"""The compressor interface shared by every gradient compressor (GRACE's Compressor role),
with the helpers the kernels share: input checks, streamed blocks and owned buffers.

The interface and the payload conventions are described in
:mod:`distbench.algorithms.compression`, which registers the compressors.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from distbench.buffers import workspace
from distbench.errors import UsageError
from distbench.runtime import namespace_of

CHUNK = 1 << 19  # elements per streamed block on the host (2 MiB of float32: stays in cache)


def as_flat(x):
    """``x`` as a contiguous 1-D view (a copy only if ``x`` is not C-contiguous).

    Raises:
        UsageError: ``x`` is not a real floating-point array.
    """
    xp = namespace_of(x)
    if x.dtype.kind != "f":
        raise UsageError(f"compressors take floating-point gradients, not {x.dtype}")
    return xp.ascontiguousarray(x).reshape(-1)


def blocks(n: int, xp, step: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``range(n)``: ``step`` long on NumPy (cache-sized
    blocks), a single block on CuPy (one kernel per operation over the whole vector)."""
    step = step if xp is np else max(n, 1)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def total(xp, a) -> float:
    """Sum of a block as a Python float (float32 pairwise on NumPy, float64 on CuPy)."""
    return float(np.add.reduce(a)) if xp is np else float(a.sum(dtype=xp.float64))


def keep_count(fraction: float, d: int) -> int:
    """``ceil(fraction d)`` robust to binary rounding (0.07 * 100 keeps 7), within [1, d]."""
    if d <= 0:
        return 0
    kd = fraction * d
    return min(d, max(1, math.ceil(kd - 1e-9 * max(1.0, kd))))


def check_index_range(d: int) -> None:
    """Sparse payloads carry int32 indices. Raises UsageError for d >= 2**31."""
    if d >= 1 << 31:
        raise UsageError(f"sparse compressors index with int32: {d} elements is too many")


class Compressor(abc.ABC):
    """Base class: owned payload buffers, wire accounting and dense decompress helpers.

    Subclasses implement :meth:`compress`, :meth:`_decompress_flat` and
    :meth:`payload_bytes`, and override :meth:`decompress_add` / :meth:`residual` when a
    cheaper form than "decompress into a temporary, then add/subtract" exists.
    """

    name = ""
    summable = False
    biased = False
    own_exchange = False  # it builds its own exchange: exchange(comm, allreduce, **context)
    own_memory = False  # it keeps its own residual: never wrapped in error feedback
    not_for_uploads = ""  # why a federated client's upload cannot use it ("": it can)
    block = CHUNK  # elements per streamed block on the host (an instance may lower it)
    OPTIONS: tuple = ()  # the options the constructor takes (registry.Option), declared here

    @property
    def allreduced(self) -> bool:
        """Whether its exchange sums payloads by AllReduce (else: Allgather)."""
        return self.summable

    def options(self) -> dict:
        """The declared options this compressor was built with (for records and tables)."""
        return {o.name: getattr(self, o.name) for o in self.OPTIONS}

    def __init__(self):
        self._bufs: dict = {}

    def _buf(self, xp, key: str, n: int, dtype):
        """This compressor's own grow-only array ``key`` of ``n`` elements (payloads must
        outlive the shared ``workspace`` temporaries)."""
        dtype = np.dtype(dtype)
        b = self._bufs.get(key)
        if b is None or namespace_of(b) is not xp or b.dtype != dtype or b.size < n:
            b = xp.empty(max(n, 1), dtype=dtype)
            self._bufs[key] = b
        return b[:n]

    def describe(self) -> str:
        """The name with its parameters (for tables and records)."""
        return self.name

    def width(self, d: int, xp, multiple: int = 1) -> int:
        """Block length for a d-element vector: ``block`` rounded down to a multiple of
        ``multiple`` on NumPy (at least one), all of d on CuPy."""
        if xp is not np:
            return max(d, 1)
        return max(multiple, self.block // multiple * multiple)

    def wire_arrays(self, payload) -> tuple:
        """The arrays of ``payload`` that travel (``payload[:1]`` when summable)."""
        return tuple(payload[:1]) if self.summable else tuple(payload)

    def wire_bytes(self, payload) -> int:
        """Bytes of the arrays of ``payload`` that travel (int)."""
        return int(sum(a.nbytes for a in self.wire_arrays(payload)))

    @abc.abstractmethod
    def payload_bytes(self, d: int) -> int:
        """``wire_bytes`` of the payload of a ``d``-element float32 vector (the formula)."""

    @abc.abstractmethod
    def compress(self, x) -> tuple:
        """The payload of gradient ``x`` (tuple of flat contiguous arrays)."""

    @abc.abstractmethod
    def _decompress_flat(self, payload, out) -> None:
        """Write ``D(payload)`` into the flat contiguous array ``out``."""

    def _out_dtype(self, payload):
        return np.float32

    def decompress(self, payload, shape, out=None):
        """``D(payload)`` with ``shape``: into ``out`` if given (C-contiguous, that shape),
        else a new array (float32; the payload's dtype for ``none``).

        Raises:
            UsageError: ``out`` has another shape or is not C-contiguous.
        """
        shape = tuple(int(s) for s in shape) if isinstance(shape, (tuple, list)) else (
            int(shape),)
        if out is None:
            out = namespace_of(payload[0]).empty(shape, dtype=self._out_dtype(payload))
        elif tuple(out.shape) != shape or not out.flags.c_contiguous:
            raise UsageError(f"decompress: out must be a C-contiguous array of shape {shape}")
        self._decompress_flat(payload, out.reshape(-1))
        return out

    def decompress_add(self, payload, out) -> None:
        """``out += D(payload)`` for a flat contiguous ``out``."""
        tmp = workspace(out, out.shape[0], "compress.add")
        self._decompress_flat(payload, tmp)
        namespace_of(out).add(out, tmp, out=out)

    def residual(self, payload, p, out) -> None:
        """``out = p - D(payload)`` (flat arrays of equal length; ``out`` is not ``p``)."""
        self._decompress_flat(payload, out)
        namespace_of(out).subtract(p, out, out=out)

    def residual_in_place(self, payload, p) -> bool:
        """``p -= D(payload)`` when that is cheaper than :meth:`residual` and the payload does
        not alias ``p``; returns whether it did (the base class never does)."""
        return False
