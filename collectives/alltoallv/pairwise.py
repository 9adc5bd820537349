"""``pairwise``: p - 1 exchanges, one partner at a time, each of its own size (the libraries'
long-message all-to-all-v).

In step i = 1..p-1 rank r sends its block for r+i and receives rank (r-i)'s block, straight into
place; its own block is copied. The blocks differ in size, so a step takes as long as its
largest pair.

Cost (Hockney model, n bytes the mean send buffer, p ranks): ``T = (p-1) alpha + (p-1)/p n
beta`` for even blocks (Thakur, Rabenseifner & Gropp 2005, section 4), the uneven blocks of
the pattern up to 1.5x the beta term.

Bytes sent per rank: its blocks for the other ranks (``sum_j sendcounts[j]`` less its own).
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.alltoallv.split import counts, sent_bytes
from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import copy_into
from distbench.collectives.schedule import kernels

TAG = 0x5056  # "PV"


def steps(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None):
    """Step i: the block for rank + i out, rank - i's block in."""
    sc, sd, rc, rd = counts(comm, sendbuf, recvbuf, sendcounts, recvcounts)
    rank, size = comm.Get_rank(), comm.Get_size()
    copy_into(recvbuf[rd[rank]:rd[rank] + rc[rank]], sendbuf[sd[rank]:sd[rank] + sc[rank]])
    for i in range(1, size):
        dst, src = (rank + i) % size, (rank - i) % size
        yield (comm, sendbuf[sd[dst]:sd[dst] + sc[dst]], dst,
               recvbuf[rd[src]:rd[src] + rc[src]], src, TAG)


alltoallv, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Its blocks for the other ranks in the sweep's pattern."""
    return sent_bytes(count, ranks, rank, itemsize)


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """p - 1 latencies and (p-1)/p n, with a step across nodes when there are several."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    return lock_step(pf - 1, (pf - 1) / pf * n, 0.0, k < p)
