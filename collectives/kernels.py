"""Pieces the hand-written collectives share: the reduction ufunc of an MPI op, the in-place
sentinel, block partitions, copies, and the step counts their cost formulas are written in.

The reduction op of every kernel is an ``mpi4py.MPI.Op`` or None for ``MPI.SUM``: the common
case needs no MPI lookup on the hot path, and no module imports mpi4py at import time. A kernel
whose collective has an in-place form takes ``sendbuf = mpi4py.MPI.IN_PLACE`` for it, as MPI
does (:func:`in_place`).
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.runtime import mpi, namespace_of

# --op names -> MPI op names; the bitwise ones are defined for integer types only (MPI-4.1,
# section 6.9.2), like MPI's own.
OPS = {"sum": "SUM", "prod": "PROD", "min": "MIN", "max": "MAX", "band": "BAND", "bor": "BOR",
       "bxor": "BXOR"}
INTEGER_OPS = ("band", "bor", "bxor")


def mpi_op(name: str):
    """The ``mpi4py.MPI.Op`` of an ``--op`` name; None for ``"sum"`` (the kernels' default).

    Raises:
        KeyError: not one of :data:`OPS`.
    """
    return None if name == "sum" else getattr(mpi(), OPS[name])


@functools.cache
def in_place_sentinel():
    """``mpi4py.MPI.IN_PLACE``, looked up once."""
    return mpi().IN_PLACE


def in_place(sendbuf) -> bool:
    """Whether a kernel was called in place (``sendbuf`` is ``MPI.IN_PLACE``)."""
    return sendbuf is in_place_sentinel()


def reduce_ufunc(op, xp):
    """The elementwise ufunc of ``xp`` for MPI reduction ``op`` (None or SUM, PROD, MAX, MIN,
    BAND, BOR, BXOR).

    Called as ``fn(a, b, out=c)``. For a device module (CuPy) the returned function also waits
    for the current stream: kernels are queued asynchronously, and a GPU-aware MPI call that
    sends ``c`` right after would otherwise read it before the kernel has written it.

    Raises:
        ValueError: any other op (the hand-written algorithms reduce commutative predefined
            ops only).
    """
    if op is None and xp is np:  # the common case first: every call
        return np.add
    MPI = mpi()
    for key, name in ((MPI.SUM, "add"), (MPI.PROD, "multiply"), (MPI.MAX, "maximum"),
                      (MPI.MIN, "minimum"), (MPI.BAND, "bitwise_and"), (MPI.BOR, "bitwise_or"),
                      (MPI.BXOR, "bitwise_xor")):
        if op is None and key == MPI.SUM or op == key:
            fn = getattr(xp, name)
            return fn if xp is np else _synchronized(fn, xp)
    raise ValueError(f"unsupported reduction op {op!r}: use SUM, PROD, MAX, MIN, BAND, BOR or "
                     "BXOR")


def _synchronized(fn, xp):
    """``fn(a, b, out=c)`` followed by a wait for ``xp``'s current CUDA stream."""

    def reduce_and_wait(a, b, out):
        fn(a, b, out=out)
        xp.cuda.get_current_stream().synchronize()

    return reduce_and_wait


def block_bounds(count: int, parts: int) -> np.ndarray:
    """Offsets of ``parts`` near-equal contiguous blocks of ``count`` elements.

    Returns an int64 array of length ``parts + 1``; block ``i`` is ``[b[i], b[i+1])``. The first
    ``count % parts`` blocks hold one element more (sizes differ by at most one).
    """
    base, extra = divmod(count, parts)
    sizes = np.full(parts, base, dtype=np.int64)
    sizes[:extra] += 1
    bounds = np.zeros(parts + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    return bounds


@functools.lru_cache(maxsize=256)
def cached_bounds(count: int, parts: int) -> tuple[int, ...]:
    """:func:`block_bounds` as a tuple of ints, memoized: a timed loop calls with the same
    (count, parts) every iteration, and building the NumPy array costs microseconds, as much as
    a small message."""
    return tuple(block_bounds(count, parts).tolist())


def copy_into(dst, src) -> None:
    """``dst[...] = src`` for arrays of either module (both of the same module)."""
    namespace_of(dst).copyto(dst, src)


def pow2_floor(p: int) -> int:
    """The largest power of two <= ``p`` (p >= 1)."""
    return 1 << (p.bit_length() - 1)


# ----------------------------------------------------------------------------- cost formulas
# The cost formulas (``cost(nbytes, ranks, ranks_per_node, **options)`` in each algorithm
# module) are vectorized over arrays of sizes and rank counts; these are their shared parts.
# Coefficients are stacked in the order (alpha, beta, gamma, alpha', beta'): latency and time
# per byte inside a node, time per byte reduced, latency and time per byte between nodes.


def lg_floor(p: np.ndarray) -> np.ndarray:
    """floor(log2 p) elementwise (p >= 1, integer array)."""
    return np.frexp(np.asarray(p).astype(np.float64))[1] - 1


def lg_ceil(p: np.ndarray) -> np.ndarray:
    """ceil(log2 p) elementwise (p >= 1, integer array)."""
    mant, exp = np.frexp(np.asarray(p).astype(np.float64))
    return np.where(mant == 0.5, exp - 1, exp)


def split_steps(steps, intra_steps, per_step_a, per_step_b):
    """(a, b, a', b') of ``steps`` steps of which ``intra_steps`` stay inside a node, each
    costing ``per_step_a`` latencies and ``per_step_b`` bytes."""
    inter = steps - intra_steps
    return (intra_steps * per_step_a, intra_steps * per_step_b, inter * per_step_a,
            inter * per_step_b)


def one(coefficients) -> np.ndarray:
    """A single alternative: ``(5, *shape)`` coefficients -> ``(1, 5, *shape)``."""
    return np.asarray(coefficients, dtype=np.float64)[None]


def broadcast(nbytes, ranks, ranks_per_node):
    """(n float64, p int64, k int64) broadcast together; k = p where ``ranks_per_node`` is
    None (all ranks on one node).

    Raises:
        ValueError: a rank count < 1, or k < 1.
    """
    n, p = np.broadcast_arrays(np.asarray(nbytes, dtype=np.float64),
                               np.asarray(ranks, dtype=np.int64))
    if np.any(p < 1):
        raise ValueError("rank counts must be >= 1")
    k = p if ranks_per_node is None else np.broadcast_to(
        np.asarray(ranks_per_node, dtype=np.int64), p.shape)
    if np.any(k < 1):
        raise ValueError("ranks per node must be >= 1")
    return n, p, k
