"""``bruck``: ceil(lg p) steps for any p (Bruck, Ho, Kipnis, Upfal & Weathersby 1997, the
concatenation algorithm; MPICH's short-message AllGather for non-powers of two).

Rank r keeps the blocks it has in a scratch vector in rotated order (position i holds rank
(r+i)'s block), starting with its own at 0. In the step with distance d = 1, 2, 4, .. it sends
its first min(d, p-d) blocks to r-d and receives as many from r+d, appended at position d; after
ceil(lg p) steps it holds all p, and one rotation puts them in rank order in ``recvbuf``.

Cost (Hockney model, n bytes gathered, p ranks): ``T = ceil(lg p) alpha + (p-1)/p n beta``
(Bruck et al. 1997, "Efficient algorithms for all-to-all communications in multiport
message-passing systems", IEEE TPDS 8(11); Thakur, Rabenseifner & Gropp 2005, section 4), plus
two local copies of n (the rotations), which the formula leaves out.

Bytes sent per rank: ``sum over steps of min(d, p-d)`` blocks = ``(p-1)/p n``.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, lg_ceil, lock_step
from distbench.collectives.inputs import copy_into, gather_input
from distbench.collectives.schedule import kernels

TAG = 0x4252  # "BR"


def steps(comm, sendbuf, recvbuf):
    """Gather in rotated order in the ``"bruck"`` workspace, doubling the blocks each step;
    rotate into ``recvbuf`` at the end."""
    rank, size = comm.Get_rank(), comm.Get_size()
    own, m = gather_input(comm, sendbuf, recvbuf)
    n = recvbuf.shape[0]
    tmp = workspace(recvbuf, n, "bruck")
    copy_into(tmp[:m], own)
    dist = 1
    while dist < size and m:
        cnt = min(dist, size - dist)
        # the first step sends the original block (clean in cache), not its fresh copy
        yield (comm, own if dist == 1 else tmp[:cnt * m], (rank - dist) % size,
               tmp[dist * m:(dist + cnt) * m], (rank + dist) % size, TAG)
        dist <<= 1
    # position i holds rank (rank + i)'s block
    copy_into(recvbuf[rank * m:], tmp[:n - rank * m])
    copy_into(recvbuf[:rank * m], tmp[n - rank * m:])


allgather, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """min(d, p-d) blocks of m at each distance d = 1, 2, 4, ..: p - 1 blocks in all, the
    same on every rank (count = p m)."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """Bruck et al.'s ceil(lg p) steps carrying (p-1)/p n in all; with several nodes every
    step has a pair that crosses them (the rotations are not modelled)."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    return lock_step(lg_ceil(p), (pf - 1) / pf * n, 0.0, k < p)
