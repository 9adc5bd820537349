"""Error feedback: a residual memory around any compressor (GRACE's Memory role).

Each step adds the memory to the gradient, compresses the sum, and keeps what was not sent:

    p_t = g_t + e_t;    payload_t = C(p_t);    e_{t+1} = p_t - D(payload_t),    e_0 = 0.

Telescoping gives ``sum_t D(payload_t) + e_T = sum_t g_t``: nothing is lost, only delayed, so
the running sum of what was sent stays within ``||e_T||`` of the running sum of the gradients
(bounded for a contraction C), where plain biased compression drifts without bound. This is
the memory of Stich, Cordonnier & Jaggi 2018 ("Sparsified SGD with Memory", Algorithm 1,
top-k / rand-k) and Karimireddy, Rebjock, Stich & Jaggi 2019 ("Error Feedback Fixes SignSGD
and other Gradient Compression Schemes", Algorithm 2, EF-SignSGD); Seide et al. 2014 used it
for 1-bit SGD.
"""

from __future__ import annotations

from distbench.algorithms.compression.base import Compressor, as_flat
from distbench.errors import UsageError
from distbench.runtime import namespace_of


class ErrorFeedback:
    """A compressor with residual memory; same interface as the compressor it wraps.

    ``compress`` is stateful (it updates the residual); ``decompress``, ``decompress_add``,
    ``wire_bytes``, ``wire_arrays``, ``payload_bytes``, ``summable`` and ``biased`` are the
    wrapped compressor's, so payloads from ranks with and without memory mix freely.

    Attributes:
        compressor: the wrapped compressor.
        residual_memory: e_t, a flat array of the gradient's dtype and module (None before
            the first step); read-only for callers, and possibly another array object after
            each step (sparse compressors turn p into the residual in place and the two
            buffers swap roles, saving a pass).
        steps: compress calls so far.
    """

    def __init__(self, compressor: Compressor):
        self.compressor = compressor
        self.residual_memory = None
        self._p = None
        self.steps = 0

    @property
    def name(self) -> str:
        return self.compressor.name

    @property
    def summable(self) -> bool:
        return self.compressor.summable

    @property
    def biased(self) -> bool:
        return self.compressor.biased

    @property
    def allreduced(self) -> bool:
        return self.compressor.allreduced

    own_exchange = False
    own_memory = False

    def describe(self) -> str:
        return f"{self.compressor.describe()}+EF"

    def reset(self) -> None:
        """Forget the residual (e = 0)."""
        if self.residual_memory is not None:
            self.residual_memory.fill(0)
        self.steps = 0

    def compress(self, g) -> tuple:
        """``p = g + e; payload = C(p); e = p - D(payload)``; returns the payload.

        Args:
            g: gradient (any shape; flattened in C order), floating point. Not modified.

        Raises:
            UsageError: ``g`` has another length, dtype or array module than the first
                gradient (the memory is per parameter vector).
        """
        g = as_flat(g)
        xp = namespace_of(g)
        e = self.residual_memory
        if e is None:
            e = self.residual_memory = xp.zeros(g.shape[0], dtype=g.dtype)
            self._p = xp.empty_like(e)
        elif e.shape != g.shape or e.dtype != g.dtype or namespace_of(e) is not xp:
            raise UsageError(f"error feedback: gradient of {g.shape[0]} {g.dtype} differs "
                             f"from the memory's {e.shape[0]} {e.dtype}")
        p = self._p
        xp.add(g, e, out=p)
        payload = self.compressor.compress(p)
        if self.compressor.residual_in_place(payload, p):  # sparse: p becomes the residual
            self.residual_memory, self._p = p, e
        else:
            self.compressor.residual(payload, p, e)
        self.steps += 1
        return payload

    def decompress(self, payload, shape, out=None):
        return self.compressor.decompress(payload, shape, out)

    def decompress_add(self, payload, out) -> None:
        self.compressor.decompress_add(payload, out)

    def wire_arrays(self, payload) -> tuple:
        return self.compressor.wire_arrays(payload)

    def wire_bytes(self, payload) -> int:
        return self.compressor.wire_bytes(payload)

    def payload_bytes(self, d: int) -> int:
        return self.compressor.payload_bytes(d)


def with_error_feedback(compressor: Compressor, enabled: bool | None = None):
    """``compressor`` wrapped in :class:`ErrorFeedback` when ``enabled`` (None: when the
    compressor is biased, i.e. sign, topk and randk), else the compressor itself."""
    if enabled is None:
        enabled = compressor.biased
    return ErrorFeedback(compressor) if enabled else compressor
