"""Pieces every hand-written AllReduce shares: the reduction ufunc, block partitions and
reusable scratch buffers.

Scratch buffers are cached per (array module, dtype, slot) and grow only, so a timed loop
touches the same already-faulted pages every iteration instead of allocating per call.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from distbench.runtime import namespace_of

_WORKSPACE: dict = {}


def reduce_ufunc(op, xp):
    """The elementwise ufunc of ``xp`` for MPI reduction ``op`` (SUM, PROD, MAX or MIN).

    Called as ``fn(a, b, out=c)``. For a device module (CuPy) the returned function also waits
    for the current stream: kernels are queued asynchronously, and a GPU-aware MPI call that
    sends ``c`` right after would otherwise read it before the kernel has written it.

    Raises:
        ValueError: any other op (the hand-written algorithms reduce commutative ops only).
    """
    if xp is np and (op is MPI.SUM or op == MPI.SUM):  # the common case first: every call
        return np.add
    table = ((MPI.SUM, xp.add), (MPI.PROD, xp.multiply), (MPI.MAX, xp.maximum),
             (MPI.MIN, xp.minimum))
    for key, fn in table:
        if op == key:
            return fn if xp is np else _synchronized(fn, xp)
    raise ValueError(f"unsupported reduction op {op!r}: use SUM, PROD, MAX or MIN")


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


def workspace(like, count: int, slot: str = "tmp"):
    """A scratch 1-D array of ``count`` elements with ``like``'s dtype and array module.

    Contents are undefined. The same memory is returned for the same slot until a larger
    request grows it. Call :func:`clear_workspace` to release everything.
    """
    key = (type(like), like.dtype, slot)  # the array type tells NumPy from CuPy
    buf = _WORKSPACE.get(key)
    if buf is None or buf.size < count:
        buf = namespace_of(like).empty(max(count, 1), dtype=like.dtype)
        _WORKSPACE[key] = buf
    return buf[:count]


def clear_workspace() -> None:
    """Drop every cached scratch buffer (the harness calls this between message sizes)."""
    _WORKSPACE.clear()


def copy_into(dst, src) -> None:
    """``dst[...] = src`` for arrays of either module (both of the same module)."""
    namespace_of(dst).copyto(dst, src)
