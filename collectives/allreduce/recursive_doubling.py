"""``recursive_doubling``: lg p pairwise exchanges of the whole vector (MPICH's short-message
AllReduce).

In step k = 0 .. lg p - 1 rank r exchanges its partial sum with rank r XOR 2^k and both add what
they received, so after lg p steps every rank holds the full reduction. Both partners compute
``a op b`` from the same two operands (commutative ops), so all ranks get bit-identical results.

Non-powers of two, as MPICH does it (Thakur, Rabenseifner & Gropp 2005, section 4): let
p' = 2^floor(lg p) and r = p - p'. Among the first 2r ranks, each even rank sends its vector to
the odd rank above it and sits out; the odd ranks (new rank = rank // 2) and the ranks >= 2r
(new rank = rank - r) run recursive doubling on p' ranks; finally each odd rank < 2r sends the
result back to the even rank below it (:func:`~distbench.collectives.patterns.fold_in` /
``fold_out``, shared with ``rabenseifner`` and other collectives). In place
(``sendbuf = MPI.IN_PLACE``) every exchange goes through a scratch vector.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = lg p (alpha + n beta + n gamma)`` for p a power of two (Thakur, Rabenseifner &
Gropp 2005, "Optimization of collective communication operations in MPICH", IJHPCA 19(1),
section 4); otherwise ``T = (floor(lg p) + 2)(alpha + n beta) + (floor(lg p) + 1) n gamma``.
Latency-optimal; best for short vectors.

Bytes sent per rank: ``lg p' * n`` for every rank in the power-of-two group, plus ``n`` for each
rank < 2r: the even ones send their vector in ``fold_in`` (and nothing else), the odd ones
send the result back in ``fold_out``. For p a power of two: ``lg p * n`` on every rank.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, fold, lg_ceil, lg_floor, split_steps
from distbench.collectives.inputs import pow2_floor, reduce_input
from distbench.collectives.patterns import fold_in, fold_out, real_rank
from distbench.collectives.schedule import PURE, Local, kernels

TAG = 0x5244  # "RD"


def steps(comm, sendbuf, recvbuf, op=None):
    """lg p' whole-vector exchanges with rank XOR 2^k, between MPICH's fold in and out;
    the first one receives straight into ``recvbuf``."""
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src = setup
    pof2 = pow2_floor(comm.Get_size())
    rem = comm.Get_size() - pof2
    if rem:
        newrank, acc = yield from fold_in(comm, src, recvbuf, fn, TAG)
    else:  # no fold: skip its calls, this is the short-message path; every reduction below
        yield PURE  # is a Local step, so a recorded call replays without this generator
        newrank, acc = comm.Get_rank(), src
    if newrank >= 0:
        mask = 1
        if acc is not recvbuf:
            # First exchange: acc is still this rank's own vector, so the partner's can be
            # received straight into recvbuf (no scratch, no copy: the short-message path).
            partner = real_rank(newrank ^ 1, rem)
            yield (comm, acc, partner, recvbuf, partner, TAG)
            yield Local(fn, recvbuf, acc, recvbuf)
            acc, mask = recvbuf, 2
        if mask < pof2:
            tmp = workspace(recvbuf, recvbuf.shape[0])
        while mask < pof2:
            partner = real_rank(newrank ^ mask, rem)
            yield (comm, acc, partner, tmp, partner, TAG)
            yield Local(fn, acc, tmp, recvbuf)
            acc = recvbuf
            mask <<= 1
    if rem:
        yield from fold_out(comm, recvbuf, recvbuf, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """lg p' whole vectors in the power-of-two group; the fold adds one on each rank < 2r
    (in on the even ones, out on the odd ones)."""
    if ranks == 1 or count == 0:
        return 0
    n = count * itemsize
    pof2 = pow2_floor(ranks)
    rem, levels = ranks - pof2, pof2.bit_length() - 1
    if rank < 2 * rem:
        return n if rank % 2 == 0 else (levels + 1) * n
    return levels * n


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's recursive doubling, plus MPICH's fold; the levels with partner distance >= k
    cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    levels = lg_floor(p)
    a, b, ai, bi = split_steps(levels, np.minimum(levels, lg_ceil(k)), 1.0, n)
    return fold(n, p, k, (a, b, levels * n, ai, bi), (n, n), n)
