"""``rabenseifner``: recursive-halving reduce-scatter, then recursive-doubling allgather
(Rabenseifner's algorithm, MPICH's long-message AllReduce).

On p' = 2^k ranks the vector is cut into p' near-equal blocks (:func:`~distbench.collectives.
kernels.block_bounds`; blocks of size 0 when the count is below p'). Reduce-scatter: in the step
with distance d = p'/2, p'/4, ..., 1, rank q exchanges with q XOR d; each keeps the half of its
current block range that contains its own block q, sends the other half and adds the half it
receives. After lg p' steps rank q holds the full reduction of block q. The allgather reverses
the steps (d = 1, 2, ..., p'/2): partners swap their finished ranges, doubling them each step.

Non-powers of two are folded as MPICH does (Thakur, Rabenseifner & Gropp 2005, section 4):
the first 2r ranks (r = p - p') pair up, even ones send their vector to the odd ones and wait,
the p' remaining ranks run the algorithm, the odd ones send the result back
(:func:`distbench.collectives.recursive_doubling.fold_in` / ``fold_out``).

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

from distbench.buffers import workspace
from distbench.collectives.allreduce.recursive_doubling import (
    fold_in,
    fold_out,
    folded,
    levels_near,
    real_rank,
)
from distbench.collectives.kernels import (
    broadcast,
    cached_bounds,
    copy_into,
    pow2_floor,
    reduce_ufunc,
    split_steps,
)
from distbench.runtime import namespace_of

TAG = 0x5241  # "RA"


def allreduce(comm, sendbuf, recvbuf, op=None) -> None:
    """Rabenseifner AllReduce: recursive-halving reduce-scatter + recursive-doubling allgather.

    Args:
        comm: communicator (mpi4py or a distbench proxy); uses ``Send``/``Recv``/``Sendrecv``.
        sendbuf: 1-D contiguous array (NumPy or CuPy), n elements; not modified.
        recvbuf: 1-D array like ``sendbuf``; receives the reduction over all ranks.
        op: ``mpi4py.MPI.Op`` SUM (None, the default), PROD, MAX or MIN.

    Raises:
        ValueError: ``op`` is not SUM/PROD/MAX/MIN.
    """
    size = comm.Get_size()
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    count = recvbuf.shape[0]
    if size == 1 or count == 0:
        copy_into(recvbuf, sendbuf)
        return
    pof2 = pow2_floor(size)
    rem = size - pof2
    newrank, acc = fold_in(comm, sendbuf, recvbuf, fn, TAG)
    if newrank >= 0:
        bounds = cached_bounds(count, pof2)
        tmp = workspace(recvbuf, bounds[pof2 // 2])  # the first (largest) half: largest receive
        # Reduce-scatter by recursive halving: [lo, hi) is the block range still being reduced.
        lo, hi = 0, pof2
        dist = pof2 >> 1
        while dist:
            partner = real_rank(newrank ^ dist, rem)
            mid = lo + dist
            if newrank < mid:
                keep_lo, keep_hi, give_lo, give_hi = lo, mid, mid, hi
            else:
                keep_lo, keep_hi, give_lo, give_hi = mid, hi, lo, mid
            k0, k1 = bounds[keep_lo], bounds[keep_hi]
            part = tmp[: k1 - k0]
            comm.Sendrecv(acc[bounds[give_lo]:bounds[give_hi]], partner, TAG,
                          part, partner, TAG)
            fn(acc[k0:k1], part, out=recvbuf[k0:k1])
            acc = recvbuf
            lo, hi = keep_lo, keep_hi
            dist >>= 1
        # Allgather by recursive doubling: swap finished aligned groups of dist blocks.
        dist = 1
        while dist < pof2:
            partner = real_rank(newrank ^ dist, rem)
            mine = newrank & ~(dist - 1)
            theirs = mine ^ dist
            comm.Sendrecv(recvbuf[bounds[mine]:bounds[mine + dist]], partner, TAG,
                          recvbuf[bounds[theirs]:bounds[theirs + dist]], partner, TAG)
            dist <<= 1
    fold_out(comm, recvbuf, TAG)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Reduce-scatter gives away everything but block q; allgather sends q's aligned groups
    of 1, 2, .., p'/2 blocks; ranks < 2r add n for the non-power-of-two fold."""
    if ranks == 1 or count == 0:
        return 0
    pof2 = pow2_floor(ranks)
    rem = ranks - pof2
    n = count * itemsize
    if rank < 2 * rem and rank % 2 == 0:
        return n
    q = rank // 2 if rank < 2 * rem else rank - rem
    bounds = [b * itemsize for b in cached_bounds(count, pof2)]
    sent = n - (bounds[q + 1] - bounds[q])
    d = 1
    while d < pof2:
        lo = q - q % d
        sent += bounds[lo + d] - bounds[lo]
        d *= 2
    return sent + (n if rank < 2 * rem else 0)


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's recursive halving + doubling with MPICH's fold; the halving steps whose partner
    distance is >= k carry the share of the bytes that crosses nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    levels, near = levels_near(p, k)
    p2 = np.ldexp(1.0, levels)
    a, _, ai, _ = split_steps(2 * levels, 2 * near, 1.0, np.zeros(p.shape))
    b = 2 * (np.ldexp(1.0, near) - 1) / p2 * n
    bi = 2 * (p2 - np.ldexp(1.0, near)) / p2 * n
    return folded(n, p, k, levels, a, b, (p2 - 1) / p2 * n, ai, bi)
