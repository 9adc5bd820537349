"""Checks the kernel tests share (not the benchmark's: its check is the declarations' exact
results, :mod:`distbench.check`): a result against the library's own ``MPI_Allreduce``, and a
send buffer left untouched."""

from __future__ import annotations

from distbench.check import CHUNK, Segment, input_table, mismatches, total
from distbench.runtime import mpi, namespace_of


def count_wrong(comm, sendbuf, result, scratch=None, op=None) -> int:
    """Elements of ``result`` that differ from the library's ``MPI_Allreduce(sendbuf)``,
    summed over ranks (collective; the kernel tests' reference).

    The reference is computed chunk by chunk with the library's ``Allreduce`` (exact inputs make
    the chunked sum equal the whole one), so the check needs only a chunk of extra memory.
    ``scratch`` may supply that chunk (1-D, same dtype/module, at least min(CHUNK, n) long).
    """
    op = mpi().SUM if op is None else op
    xp = namespace_of(result)
    n = result.shape[0]
    if scratch is None:
        scratch = xp.empty(max(1, min(CHUNK, n)), dtype=result.dtype)
    bad = 0
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        ref = scratch[: stop - start]
        comm.Allreduce(sendbuf[start:stop], ref, op)
        bad += int(xp.count_nonzero(result[start:stop] != ref))
    return total(comm, bad)


def unchanged(buf, rank: int) -> bool:
    """True when ``buf`` still holds :func:`fill_exact`'s values for ``rank`` (local check)."""
    return mismatches(buf, [Segment(0, buf.shape[0], input_table(rank))]) == 0


def count_changed(comm, buf, rank: int) -> int:
    """Elements of ``buf`` no longer equal to :func:`fill_exact`'s values for ``rank``, summed
    over ranks (collective); the check that an algorithm left its sendbuf untouched."""
    return total(comm, mismatches(buf, [Segment(0, buf.shape[0], input_table(rank))]))
