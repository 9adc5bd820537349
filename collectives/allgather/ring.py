"""``ring``: p - 1 steps around a ring (Thakur, Rabenseifner & Gropp 2005, MPICH's long-message
AllGather).

Rank r first puts its own block into ``recvbuf`` (no copy in place); in step s = 0..p-2 it
sends block (r-s) to r+1 and receives block (r-s-1) from r-1, directly into place
(:func:`~distbench.collectives.patterns.ring_allgather`). Every link carries the same traffic.

Cost (Hockney model, n bytes gathered, p ranks): ``T = (p-1) alpha + (p-1)/p n beta``
(Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in
MPICH", IJHPCA 19(1), section 4).

Bytes sent per rank: every block but its left neighbour's, ``(p-1)/p n``.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import cached_bounds, place_own
from distbench.collectives.ops import in_place
from distbench.collectives.patterns import ring_allgather
from distbench.collectives.schedule import kernels

TAG = 0x5247  # "RG"


def steps(comm, sendbuf, recvbuf):
    """Own block into place, then p - 1 steps, each passing the block received last on to
    the right neighbour."""
    if place_own(comm, sendbuf, recvbuf) is not None:
        yield from ring_allgather(comm, recvbuf, cached_bounds(recvbuf.shape[0], comm.Get_size()),
                                  comm.Get_rank(), TAG, None if in_place(sendbuf) else sendbuf)


allgather, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """p - 1 blocks of m, every block but the left neighbour's (count = p m), on every
    rank."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's ring: p - 1 latencies and (p-1)/p n; with several nodes every step has a link
    that crosses them."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    return lock_step(pf - 1, (pf - 1) / pf * n, 0.0, k < p)
