"""``ring``: p - 1 steps around a ring of p ranks (Patarasuk & Yuan 2009, the reduce-scatter
phase of their AllReduce).

Rank r sends to r+1 and receives from r-1 (mod p). In step s = 0..p-2 it forwards its partial
result of block (r-1-s), receives the partial of block (r-2-s) and adds its own part of that
block; after the last step it holds the full reduction of its own block r
(:func:`~distbench.collectives.patterns.ring_reduce_scatter`). Inside a node messages are cut
into 1 MiB segments, as the ring AllReduce does; across nodes whole blocks go.

Cost (Hockney model, n bytes in all, p ranks; alpha latency, beta time per byte, gamma
reduction time per byte): ``T = (p-1) alpha + (p-1)/p n beta + (p-1)/p n gamma`` plus
``(p-1)(ceil(n/p / 1 MiB) - 1) alpha`` for the segments inside a node (Patarasuk & Yuan 2009,
"Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 69(2); Thakur,
Rabenseifner & Gropp 2005, section 4).

Bytes sent per rank: every block but its own once, ``(p-1)/p n``. In place the same steps read
``recvbuf``; partial results go to a one-block scratch buffer either way.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import cached_bounds, scatter_input
from distbench.collectives.patterns import ring_reduce_scatter, ring_segment, ring_segments_alpha
from distbench.collectives.schedule import kernels

TAG = 0x5253  # "RS"


def steps(comm, sendbuf, recvbuf, op=None):
    """The ring's p - 1 steps, ending on this rank's own block, in 1 MiB segments inside a
    node."""
    setup = scatter_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src, m = setup
    bounds = cached_bounds(src.shape[0], comm.Get_size())
    yield from ring_reduce_scatter(comm, src, bounds, comm.Get_rank(), recvbuf[:m], fn, TAG,
                                   ring_segment(comm, bounds, recvbuf.itemsize))


reduce_scatter, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Every block but its own, once (count = p m): ``(p-1) m`` elements on every
    rank."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """Patarasuk & Yuan's reduce-scatter phase, plus the segments' latencies inside a node;
    across nodes every step at alpha', beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    multi = k < p
    b = (pf - 1) / pf * n
    return lock_step((p - 1) + np.where(multi, 0, ring_segments_alpha(n, pf)), b, b, multi)
