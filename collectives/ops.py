"""Reduction ops: the ``--op`` names and their MPI ops, the elementwise ufunc of each (NumPy or
CuPy), and ``MPI_IN_PLACE``.

The reduction op of every kernel is an ``mpi4py.MPI.Op`` or None for ``MPI.SUM``: the common
case needs no MPI lookup on the hot path, and no module imports mpi4py at import time. A kernel
whose collective has an in-place form takes ``sendbuf = mpi4py.MPI.IN_PLACE`` for it, as MPI
does (:func:`in_place`).
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.runtime import mpi

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


@functools.cache


def sum_op():
    """``mpi4py.MPI.SUM``, looked up once (the library calls' default op)."""
    return mpi().SUM


__all__ = ["INTEGER_OPS", "OPS", "in_place", "in_place_sentinel", "mpi_op", "reduce_ufunc",
           "sum_op"]
