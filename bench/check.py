"""Exact inputs, the exact results a collective must produce from them, and the element-for-
element check.

Rank r's input element i is ``v(i, r) = ((i * 7 + r * 13) % 17) - 8``, a small integer stored in
the benchmark dtype (for PROD: ``2`` where ``(i * 7 + r * 13) % 17 == 0``, else ``+-1``, so every
product is a signed power of two). Sums of such integers while they stay below the dtype's
largest exact integer (:func:`exact_ranks`: up to 60 ranks in bfloat16, 482 in float16, far more
in float32; products up to 136 and 187 ranks), their minima and maxima, their bitwise AND, OR
and XOR (integer dtypes), and products of signed powers of two are exact in every order of
evaluation, so every algorithm must match the exact result bit for bit, and so must the MPI
library's own call.

Both ``v`` and every reduction of it over ranks are periodic in i with period :data:`PERIOD`,
so an expected result is described by :class:`Segment` s (a range of the output, the 17-value
table it repeats and the phase) and checked against a tiled copy of the table, chunk by chunk,
with no arithmetic per element.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from distbench.runtime import mpi, namespace_of

CHUNK = 1 << 18  # elements per step when filling or comparing (bounds temporary memory)
PERIOD = 17


def _residues(rank: int) -> np.ndarray:
    return (np.arange(PERIOD, dtype=np.int64) * 7 + rank * 13) % PERIOD


def input_table(rank: int, op: str = "sum") -> np.ndarray:
    """``v(i, rank)`` for i = 0..16 (int64): integers in [-8, 8], or signed powers of two
    (``+-1``, ``2``) for ``op="prod"``."""
    res = _residues(rank)
    if op == "prod":
        return np.where(res == 0, 2, np.where(res % 2, 1, -1)).astype(np.int64)
    return res - 8


_REDUCE = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum,
           "band": np.bitwise_and, "bor": np.bitwise_or, "bxor": np.bitwise_xor}


def reduced_table(ranks: Iterable[int], op: str = "sum") -> np.ndarray:
    """The elementwise reduction over ``ranks`` of their :func:`input_table`, exact: int64, or
    Python integers (an object array) where a product's magnitude passes 2^62 (at about 1080
    ranks: int64 would wrap); ``op`` one of sum, prod, min, max, band, bor, bxor."""
    tables = np.stack([input_table(r, op) for r in ranks])
    if op != "prod":
        return _REDUCE[op].reduce(tables, axis=0)
    exact = np.multiply.reduce(tables.astype(object), axis=0)  # Python ints never wrap
    if max(abs(int(v)) for v in exact) < 1 << 62:
        return exact.astype(np.int64)
    return exact


def largest_exact_integer(dtype) -> int:
    """The largest integer N such that every integer of magnitude <= N is exact in ``dtype``
    (2^(mantissa bits + 1) for a float; bfloat16's comes from ml-dtypes)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return int(np.iinfo(dtype).max)
    try:
        nmant = np.finfo(dtype).nmant
    except ValueError:  # a type NumPy does not know the limits of (ml-dtypes' bfloat16)
        import ml_dtypes

        nmant = ml_dtypes.finfo(dtype).nmant
    return 2 ** (nmant + 1)


def exact_ranks(op: str, dtype, ranks: int) -> bool:
    """Whether reducing ``ranks`` ranks' exact inputs with ``op`` stays exact in ``dtype`` in
    any order: every partial result is bounded by the sum (PROD: the product) of the
    magnitudes, which must not exceed :func:`largest_exact_integer`."""
    mags = np.abs(np.stack([input_table(r, op) for r in range(ranks)])).astype(object)
    # in Python integers: a product of 64 factors of 2 would wrap in int64 (about 1080 ranks)
    bound = max(np.multiply.reduce(mags, axis=0)) if op == "prod" else (
        max(np.add.reduce(mags, axis=0)) if op == "sum" else max(mags.max(axis=0)))
    return int(bound) <= largest_exact_integer(dtype)


@dataclass(frozen=True)
class Segment:
    """Part of an expected output: ``out[lo + j] == table[(phase + j) % PERIOD]`` for
    ``0 <= j < hi - lo`` (element indices; ``table`` as from :func:`input_table`)."""

    lo: int
    hi: int
    table: np.ndarray
    phase: int = 0


def fill_exact(buf, rank: int, offset: int = 0, op: str = "sum") -> None:
    """Fill 1-D ``buf`` with rank ``rank``'s exact inputs, element i getting ``v(i + offset,
    rank)`` (the op's inputs for ``op="prod"``), chunk by chunk."""
    fill_segments(buf, [Segment(0, buf.shape[0], input_table(rank, op), offset)])


def _tiled(xp, table: np.ndarray, dtype, n: int):
    """``table`` repeated to at least ``n + PERIOD`` elements, in ``dtype`` on ``xp``."""
    reps = -(-(n + PERIOD) // PERIOD)
    return xp.asarray(np.tile(table, reps).astype(dtype))


def fill_segments(buf, segments: Sequence[Segment]) -> None:
    """Write the values ``segments`` describe into ``buf`` (the rest is left as it is)."""
    xp = namespace_of(buf)
    for seg in segments:
        tiled = _tiled(xp, seg.table, buf.dtype, min(CHUNK, seg.hi - seg.lo))
        for start in range(seg.lo, seg.hi, CHUNK):
            stop = min(seg.hi, start + CHUNK)
            off = (seg.phase + start - seg.lo) % PERIOD
            buf[start:stop] = tiled[off: off + stop - start]


def mismatches(buf, segments: Sequence[Segment]) -> int:
    """Elements of ``buf`` that differ from what ``segments`` describe (local; int)."""
    xp = namespace_of(buf)
    bad = 0
    for seg in segments:
        tiled = _tiled(xp, seg.table, buf.dtype, min(CHUNK, seg.hi - seg.lo))
        for start in range(seg.lo, seg.hi, CHUNK):
            stop = min(seg.hi, start + CHUNK)
            off = (seg.phase + start - seg.lo) % PERIOD
            bad += int(xp.count_nonzero(buf[start:stop] != tiled[off: off + stop - start]))
    return bad


def total(comm, local: int) -> int:
    """``local`` summed over the ranks of ``comm`` (collective)."""
    return int(comm.allreduce(int(local), op=mpi().SUM))


