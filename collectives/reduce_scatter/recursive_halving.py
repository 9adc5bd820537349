"""``recursive_halving``: lg p' exchanges that halve the data each time (MPICH's
``MPIR_Reduce_scatter_intra_recursive_halving``, its short-message algorithm).

On p' = 2^k ranks, in the step with distance d = p'/2, p'/4, ..., 1 rank q exchanges with
q XOR d: it keeps the half of its current range of blocks that holds block q, sends the other
half and adds the half it receives; after lg p' steps it holds the reduction of block q
(:func:`~distbench.collectives.patterns.halving`). Partial results go to a scratch vector, and
block q is copied to ``recvbuf`` at the end.

Other p, as MPICH does it (Thakur, Rabenseifner & Gropp 2005, section 4): with r = p - p', of
the first 2r ranks each even one sends its whole vector to the odd one above, which adds it and
takes the two ranks' blocks as its group; the p' remaining ranks run the halving over these
groups (block pairs for the first r, single blocks for the others); at the end each odd rank
< 2r sends the even one below its block (:func:`~distbench.collectives.patterns.fold_in`).

Cost (Hockney model, n bytes in all, p ranks): for p a power of two
``T = lg p alpha + (p-1)/p n beta + (p-1)/p n gamma`` (Thakur, Rabenseifner & Gropp 2005,
"Optimization of collective communication operations in MPICH", IJHPCA 19(1), section 4).
Otherwise the fold adds ``alpha + n beta + n gamma`` before and ``alpha + n/p beta`` after, and
the halving runs over p' groups, about ``(p'-1)/p' n`` bytes.

Bytes sent per rank: an even rank < 2r sends its vector, ``n``, and nothing else; every other
rank sends everything but its group in the halving (the groups of
:func:`~distbench.collectives.patterns.group_bounds`), plus its partner's block ``n/p`` on an
odd rank < 2r. For p a power of two: ``(p-1)/p n`` on every rank. In place the input is
``recvbuf``.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives import patterns
from distbench.collectives.coefficients import broadcast, fold, halving_levels
from distbench.collectives.inputs import copy_into, pow2_floor, scatter_input
from distbench.collectives.schedule import kernels

TAG = 0x5248  # "RH"


def steps(comm, sendbuf, recvbuf, op=None):
    """Halve the range of blocks lg p' times, each time keeping the half with this rank's
    group; partial results in the ``"acc"`` workspace, the own block copied out at the end."""
    setup = scatter_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src, m = setup
    rank = comm.Get_rank()
    work = workspace(recvbuf, src.shape[0], "acc")
    newrank, acc = yield from patterns.fold_in(comm, src, work, fn, TAG)
    if newrank >= 0:
        groups = patterns.group_bounds(m, comm.Get_size())
        yield from patterns.halving(comm, acc, work, groups, newrank, fn, TAG)
    partner = work[(rank - 1) * m:rank * m] if rank % 2 else None
    yield from patterns.fold_out(comm, partner, recvbuf[:m], TAG)
    if newrank >= 0:
        copy_into(recvbuf[:m], work[rank * m:(rank + 1) * m])


reduce_scatter, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The fold's vector on an even rank < 2r; else the halving's bytes over the groups, plus
    the partner's block on an odd rank < 2r."""
    if ranks == 1 or count == 0:
        return 0
    m, rem = count // ranks, ranks - pow2_floor(ranks)
    q = patterns.group_rank(rank, ranks)
    if q < 0:
        return count * itemsize
    sent = patterns.halving_bytes(q, patterns.group_bounds(m, ranks))
    return (sent + (m if rank < 2 * rem else 0)) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's recursive halving, plus the fold (the vector in, a block out) for other p; the
    steps whose distance is >= k cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi, p2 = halving_levels(n, p, k)
    return fold(n, p, k, (a, b, (p2 - 1) / p2 * n, ai, bi), (n, n / p), n)
