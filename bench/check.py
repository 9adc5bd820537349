"""Exact inputs and the element-for-element check against ``MPI_Allreduce``.

Inputs are small integers stored in the benchmark dtype, so the sum over any number of ranks
(well below 2**24 / 17) is exact in every order and every algorithm must match the MPI
library bit for bit.
"""

from __future__ import annotations

from distbench.runtime import namespace_of

CHUNK = 1 << 18  # elements per step when filling or comparing (bounds temporary memory)


def fill_exact(buf, rank: int, offset: int = 0) -> None:
    """Fill 1-D ``buf`` with integers in [-8, 8] that depend on ``rank`` and position.

    Element ``i`` gets ``((i + offset) * 7 + rank * 13) % 17 - 8``; works in chunks of
    :data:`CHUNK` elements, so the temporary memory stays small for any buffer size.
    """
    xp = namespace_of(buf)
    n = buf.shape[0]
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        idx = xp.arange(start + offset, stop + offset, dtype=xp.int64)
        idx *= 7
        idx += rank * 13
        xp.remainder(idx, 17, out=idx)
        idx -= 8
        buf[start:stop] = idx.astype(buf.dtype, copy=False)


def count_wrong(comm, sendbuf, result, scratch=None, op=None) -> int:
    """Elements of ``result`` that differ from ``MPI_Allreduce(sendbuf)``, summed over ranks.

    The reference is computed chunk by chunk with the library's ``Allreduce`` (exact inputs make
    the chunked sum equal the whole one), so the check needs only a chunk of extra memory.
    ``scratch`` may supply that chunk (1-D, same dtype/module, at least min(CHUNK, n) long).
    Collective: every rank must call it. Returns the total over all ranks (int).
    """
    from mpi4py import MPI

    op = MPI.SUM if op is None else op

    def reference(ref, start, stop):
        comm.Allreduce(sendbuf[start:stop], ref, op)

    return _count_mismatches(comm, result, reference, scratch)


def unchanged(buf, rank: int) -> bool:
    """True when ``buf`` still holds :func:`fill_exact`'s values for ``rank`` (local check)."""
    xp = namespace_of(buf)
    ref = xp.empty_like(buf)
    fill_exact(ref, rank)
    return bool(xp.array_equal(ref, buf))


def count_changed(comm, buf, rank: int, scratch=None) -> int:
    """Elements of ``buf`` no longer equal to :func:`fill_exact`'s values for ``rank``, summed
    over ranks (collective); the check that an algorithm left its sendbuf untouched."""

    def reference(ref, start, stop):
        fill_exact(ref, rank, offset=start)

    return _count_mismatches(comm, buf, reference, scratch)


def _count_mismatches(comm, buf, reference, scratch=None) -> int:
    """Elements of ``buf`` that differ from ``reference(ref, start, stop)`` (which fills the
    chunk ``ref`` for ``buf[start:stop]``), chunk by chunk, summed over ranks (collective)."""
    from mpi4py import MPI

    xp = namespace_of(buf)
    n = buf.shape[0]
    if scratch is None:
        scratch = xp.empty(max(1, min(CHUNK, n)), dtype=buf.dtype)
    bad = 0
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        ref = scratch[: stop - start]
        reference(ref, start, stop)
        bad += int(xp.count_nonzero(buf[start:stop] != ref))
    return int(comm.allreduce(bad, op=MPI.SUM))
