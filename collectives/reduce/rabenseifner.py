"""``rabenseifner``: recursive-halving reduce-scatter, then a binomial gather of the blocks to
the root (Rabenseifner's reduce, MPICH's ``MPIR_Reduce_intra_reduce_scatter_gather``, its
long-message algorithm).

On p' = 2^k ranks the vector is cut into p' near-equal blocks. The recursive halving leaves
group rank q with the reduction of block q (:func:`~distbench.collectives.patterns.halving`);
the gather reverses it: at distance d = 1, 2, .. a rank with bit d set sends its d finished
blocks to q - d (:func:`~distbench.collectives.patterns.binomial_gather`), until group rank 0
holds the result. Ranks are taken relative to the root, shifted so that the root is group rank
0 (relative rank 1 when p is not a power of two, else 0).

Other p, with MPICH's fold (Thakur, Rabenseifner & Gropp 2005, section 4): of the first 2r
relative ranks (r = p - p') each even one sends its whole vector to the odd one above, which
adds it (:func:`~distbench.collectives.patterns.fold_in`).

Cost (Hockney model, n bytes, p ranks): for p a power of two ``T = 2 lg p alpha + 2 (p-1)/p n
beta + (p-1)/p n gamma`` (Rabenseifner 2004, "Optimization of collective reduction operations",
ICCS; Thakur, Rabenseifner & Gropp 2005, IJHPCA 19(1), section 4); otherwise the fold adds
``alpha + n beta + n gamma``.

Bytes sent per rank (group rank q, blocks b over p'): the halving sends everything but block q,
the gather blocks [q, q + lowbit(q)) (nothing from group rank 0); an even rank < 2r sends its
vector ``n`` and nothing else. For p a power of two: ``n - b_q`` + the gather's share.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, fold, halving_levels
from distbench.collectives.inputs import cached_bounds, pow2_floor, root_input
from distbench.collectives.patterns import (
    binomial_gather,
    fold_in,
    gather_bytes,
    group_rank,
    halving,
    halving_bytes,
)
from distbench.collectives.schedule import kernels

TAG = 0x5244  # "RD"


def _offset(root: int, ranks: int) -> int:
    """The rank offset that makes the root group rank 0 (relative rank 1 if there is a fold)."""
    return (root - (1 if ranks != pow2_floor(ranks) else 0)) % ranks


def steps(comm, sendbuf, recvbuf, op=None, root: int = 0):
    """Recursive halving, then the blocks gathered back up the same tree to ``root``; partial
    results in ``recvbuf`` on the root, in the ``"acc"`` workspace elsewhere."""
    fn = root_input(comm, sendbuf, recvbuf, op, root)
    if fn is None:
        return
    offset = _offset(root, comm.Get_size())
    work = recvbuf if comm.Get_rank() == root else workspace(sendbuf, sendbuf.shape[0], "acc")
    newrank, acc = yield from fold_in(comm, sendbuf, work, fn, TAG, offset)
    if newrank >= 0:
        bounds = cached_bounds(sendbuf.shape[0], pow2_floor(comm.Get_size()))
        yield from halving(comm, acc, work, bounds, newrank, fn, TAG, offset)
        yield from binomial_gather(comm, work, bounds, newrank, TAG, offset)


reduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The fold's vector from an even relative rank < 2r; else the halving's and the gather's
    bytes of its group rank."""
    if ranks == 1 or count == 0:
        return 0
    q = group_rank((rank - _offset(root, ranks)) % ranks, ranks)
    if q < 0:
        return count * itemsize
    bounds = cached_bounds(count, pow2_floor(ranks))
    return (halving_bytes(q, bounds) + gather_bytes(q, bounds)) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """Rabenseifner's reduce: the halving and the gather each ``lg p alpha + (p-1)/p n beta``
    (their steps with distance >= k across nodes), plus the fold's vector for other p."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi, p2 = halving_levels(n, p, k, passes=2)
    return fold(n, p, k, (a, b, (p2 - 1) / p2 * n, ai, bi), (n,), n)
