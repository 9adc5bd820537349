"""``rabenseifner``: recursive-halving reduce-scatter, then recursive-doubling allgather
(Rabenseifner's algorithm, MPICH's long-message AllReduce).

On p' = 2^k ranks the vector is cut into p' near-equal blocks (:func:`~distbench.collectives.
inputs.block_bounds`; blocks of size 0 when the count is below p'). Reduce-scatter: in the step
with distance d = p'/2, p'/4, ..., 1, rank q exchanges with q XOR d; each keeps the half of its
current block range that contains its own block q, sends the other half and adds the half it
receives. After lg p' steps rank q holds the full reduction of block q. The allgather reverses
the steps (d = 1, 2, ..., p'/2): partners swap their finished ranges, doubling them each step.

Non-powers of two are folded as MPICH does (Thakur, Rabenseifner & Gropp 2005, section 4):
the first 2r ranks (r = p - p') pair up, even ones send their vector to the odd ones and wait,
the p' remaining ranks run the algorithm, the odd ones send the result back
(:func:`distbench.collectives.patterns.fold_in` / ``fold_out``; the halving and doubling are
:func:`~distbench.collectives.patterns.halving` and ``doubling``). In place
(``sendbuf = MPI.IN_PLACE``) the same steps start from ``recvbuf``.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte), p a power of two: ``T = 2 lg p alpha + 2 (p-1)/p n beta + (p-1)/p n gamma``
(Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in
MPICH", IJHPCA 19(1), section 4, Allreduce; Rabenseifner 2004, ICCS). Otherwise the fold adds
``2 alpha + 2 n beta + n gamma`` and lg p becomes floor(lg p).

Bytes sent per rank q of the power-of-two group (B = block_bounds over p' blocks, in bytes):
reduce-scatter ``n - b_q`` (the halves it gives away partition everything but its own block),
allgather ``sum over d = 1, 2, .., p'/2 of the size of the aligned group of d blocks containing
q``; equal to ``2 (p'-1)/p' n`` when p' divides the count. The fold adds ``n`` on each rank < 2r
(as in ``recursive_doubling``).
"""

from __future__ import annotations

import numpy as np

from distbench.collectives import patterns
from distbench.collectives.coefficients import broadcast, fold, halving_levels
from distbench.collectives.inputs import cached_bounds, pow2_floor, reduce_input
from distbench.collectives.schedule import kernels

TAG = 0x5241  # "RA"


def steps(comm, sendbuf, recvbuf, op=None):
    """Recursive halving down to one block of p', recursive doubling back up to the vector,
    between MPICH's fold in and out."""
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    newrank, acc = yield from patterns.fold_in(comm, setup[1], recvbuf, setup[0], TAG)
    if newrank >= 0:
        bounds = cached_bounds(recvbuf.shape[0], pow2_floor(comm.Get_size()))
        yield from patterns.halving(comm, acc, recvbuf, bounds, newrank, setup[0], TAG)
        yield from patterns.doubling(comm, recvbuf, bounds, newrank, TAG)
    yield from patterns.fold_out(comm, recvbuf, recvbuf, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Reduce-scatter gives away everything but block q; allgather sends q's aligned groups
    of 1, 2, .., p'/2 blocks; ranks < 2r add n for the non-power-of-two fold."""
    if ranks == 1 or count == 0:
        return 0
    rem = ranks - pow2_floor(ranks)
    q = patterns.group_rank(rank, ranks)
    if q < 0:
        return count * itemsize
    bounds = cached_bounds(count, pow2_floor(ranks))
    sent = patterns.halving_bytes(q, bounds) + patterns.doubling_bytes(q, bounds)
    sent += count if rank < 2 * rem else 0
    return sent * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's recursive halving + doubling with MPICH's fold; the halving steps whose partner
    distance is >= k carry the share of the bytes that crosses nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi, p2 = halving_levels(n, p, k, passes=2)
    return fold(n, p, k, (a, b, (p2 - 1) / p2 * n, ai, bi), (n, n), n)
