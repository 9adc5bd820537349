"""``recursive_doubling``: lg p' exchanges that double the data each time (MPICH's
``MPIR_Allgather_intra_recursive_doubling``, its medium-message algorithm for powers of two).

On p' = 2^k ranks, in the step with distance d = 1, 2, .., p'/2 rank q exchanges with q XOR d
the aligned group of d blocks it has gathered so far (:func:`~distbench.collectives.patterns.
doubling`), directly in ``recvbuf``.

Other p, with the fold MPICH uses for reduce-scatter and AllReduce (Thakur, Rabenseifner &
Gropp 2005, section 4; MPICH's own AllGather corrects the missing blocks with extra tree
steps instead): with r = p - p', of the first 2r ranks each even one sends its block to the
odd one above and sits out; the p' remaining ranks run recursive doubling over groups (block
pairs for the first r, single blocks for the others); at the end each odd rank < 2r sends the
whole result to the even one below.

Cost (Hockney model, n bytes gathered, p ranks): for p a power of two ``T = lg p alpha +
(p-1)/p n beta`` (Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1), section 4); otherwise the fold adds ``2 alpha + (n/p + n)
beta``.

Bytes sent per rank: its groups of 1, 2, .. p'/2 group-blocks in the doubling (``(p-1)/p n``
for p a power of two); an even rank < 2r sends only its block; an odd one adds the whole
result ``n``.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, fold, halving_levels
from distbench.collectives.inputs import place_own, pow2_floor
from distbench.collectives.ops import in_place
from distbench.collectives.patterns import (
    doubling,
    doubling_bytes,
    fold_out,
    group_bounds,
    group_rank,
)
from distbench.collectives.schedule import kernels

TAG = 0x4744  # "GD"


def steps(comm, sendbuf, recvbuf):
    """Swap doubling groups of blocks with rank XOR d, in ``recvbuf``, between the fold of
    the first 2r ranks in and out."""
    m = place_own(comm, sendbuf, recvbuf)
    if m is None:
        return
    rank, size = comm.Get_rank(), comm.Get_size()
    newrank = group_rank(rank, size)
    # a group of this rank's block alone sends it from sendbuf first (clean in cache)
    own = None if in_place(sendbuf) else sendbuf
    folded = rank < 2 * (size - pow2_floor(size))
    if folded:  # the fold: the even rank's block joins the odd one's
        lo = rank - rank % 2
        block = recvbuf[lo * m:(lo + 1) * m]
        yield (comm, own if own is not None else block, rank + 1, None, 0, TAG) \
            if newrank < 0 else (comm, None, 0, block, rank - 1, TAG)
    if newrank >= 0:
        yield from doubling(comm, recvbuf, group_bounds(m, size), newrank, TAG,
                            first=None if folded else own)
    yield from fold_out(comm, recvbuf, recvbuf, TAG)


allgather, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The doubling's group-blocks; the fold's block on an even rank < 2r, the whole result
    from an odd one (count = p m)."""
    q, m = group_rank(rank, ranks), count // ranks
    if ranks == 1 or count == 0 or q < 0:
        return 0 if ranks == 1 else m * itemsize  # q < 0: the fold's block only
    odd_folded = rank < 2 * (ranks - pow2_floor(ranks))
    return (doubling_bytes(q, group_bounds(m, ranks)) + odd_folded * count) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's recursive doubling plus the fold (a block in, the result out); the doubling's
    steps with distance >= k (the last, largest ones) cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi, _ = halving_levels(n, p, k)
    return fold(n, p, k, (a, b, 0.0 * n, ai, bi), (n / p, n), 0.0)
