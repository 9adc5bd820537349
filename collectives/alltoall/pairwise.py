"""``pairwise``: p - 1 exchanges, one partner at a time (Open MPI's and MPICH's long-message
all-to-all).

In step i = 1..p-1 rank r sends its block for r+i to rank r+i and receives rank (r-i)'s block
for it, directly into place; its own block is copied. Every rank talks to exactly one partner
in each direction per step, so no link or memory port is oversubscribed.

Cost (Hockney model, n bytes per rank's send buffer, p ranks): ``T = (p-1) alpha + (p-1)/p n
beta`` (Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations
in MPICH", IJHPCA 19(1), section 4).

Bytes sent per rank: ``(p-1)/p n``. In place the blocks to send are first copied to a scratch
vector (one extra copy of n): a block received early would otherwise overwrite one still to
be sent.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import exchange_input
from distbench.collectives.schedule import kernels

TAG = 0x5041  # "PA"


def steps(comm, sendbuf, recvbuf):
    """Step i = 1..p-1: the block for rank + i out, rank - i's block in, straight into its
    place in ``recvbuf``."""
    setup = exchange_input(comm, sendbuf, recvbuf)
    if setup is None:
        return
    src, m = setup
    rank, size = comm.Get_rank(), comm.Get_size()
    for i in range(1, size):
        dst, source = (rank + i) % size, (rank - i) % size
        yield (comm, src[dst * m:(dst + 1) * m], dst, recvbuf[source * m:(source + 1) * m],
               source, TAG)


alltoall, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """One block of m to each other rank, one partner per step (count = p m): (p-1) m on
    every rank."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's pairwise exchange: p - 1 latencies and (p-1)/p n; with several nodes every step
    has a pair that crosses them."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    return lock_step(pf - 1, (pf - 1) / pf * n, 0.0, k < p)
