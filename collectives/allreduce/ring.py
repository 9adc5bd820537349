"""``ring``: reduce-scatter then allgather around a ring of p ranks (Patarasuk & Yuan 2009).

The vector is cut into p near-equal contiguous blocks (:func:`~distbench.collectives.inputs.
block_bounds`). Rank r sends to r+1 and receives from r-1 (mod p). In reduce-scatter step
s = 0..p-2 it forwards its partial sum of block (r-s) and adds its own part of the block (r-s-1)
it receives; afterwards it holds the full reduction of block (r+1), in ``recvbuf``
(:func:`~distbench.collectives.patterns.ring_reduce_scatter`). In allgather step s it forwards
block (r+1-s) and receives block (r-s) directly into ``recvbuf``. Every link carries the same
traffic, which is why the ring is bandwidth-optimal.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = 2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` (Patarasuk & Yuan 2009,
"Bandwidth optimal all-reduce algorithms for clusters of workstations", J. Parallel Distrib.
Comput. 69(2)).

Bytes sent per rank r (b_i = size of block i in bytes): ``2 n - b_{(r+1) mod p} - b_{(r+2) mod
p}``, i.e. ``2 (p-1)/p n`` when p divides the count. No initial copy of ``sendbuf``: the first
reduction reads ``sendbuf``, partial sums go to a one-block scratch buffer, received segments to
a segment-sized one. In place (``sendbuf = MPI.IN_PLACE``) the same steps read ``recvbuf``.

Segmentation: inside one node the reduce-scatter sends each block in segments of
:data:`~distbench.collectives.patterns.SEGMENT_BYTES`, as Open MPI's
``ompi_coll_base_allreduce_intra_ring_segmented`` does, which adds
``(p-1)(ceil(b / SEGMENT_BYTES) - 1) alpha`` (b the largest block in bytes) and changes no byte
count. A communicator that spans nodes sends whole blocks: over TCP a chain of
blocking 1 MiB exchanges runs at about half the link rate (measured on ``distbench emulate``
links), while one message per step streams at the full rate.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import block_bounds, cached_bounds, reduce_input
from distbench.collectives.patterns import (
    ring_allgather,
    ring_reduce_scatter,
    ring_segment,
    ring_segments_alpha,
)
from distbench.collectives.schedule import kernels

TAG = 0x5249  # "RI"


def steps(comm, sendbuf, recvbuf, op=None):
    """The ring's 2 (p-1) steps: reduce-scatter, after which this rank holds block rank + 1,
    then allgather."""
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src = setup
    rank, size = comm.Get_rank(), comm.Get_size()
    bounds = cached_bounds(recvbuf.shape[0], size)
    own = (rank + 1) % size
    # Every rank cuts every block into the same number of segments (from the largest block,
    # block 0), so sender and receiver agree on each message; a segment may be empty.
    yield from ring_reduce_scatter(comm, src, bounds, own, recvbuf[bounds[own]:bounds[own + 1]],
                                   fn, TAG, ring_segment(comm, bounds, recvbuf.itemsize))
    yield from ring_allgather(comm, recvbuf, bounds, own, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Reduce-scatter forwards every block but (r+1), allgather every block but (r+2):
    ``2 n - b_(r+1) - b_(r+2)``."""
    if ranks == 1 or count == 0:
        return 0
    sizes = np.diff(block_bounds(count, ranks)) * itemsize
    return int(sizes.sum()) * 2 - int(sizes[(rank + 1) % ranks]) - int(sizes[(rank + 2) % ranks])


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """Patarasuk & Yuan's formula; inside one node plus the segments' latencies, across nodes
    (whole blocks) every step at the inter-node alpha', beta' (the steps run in lock step)."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    multi = k < p  # across nodes the ring sends whole blocks (spans_nodes)
    a = 2 * (p - 1) + np.where(multi, 0, ring_segments_alpha(n, pf))
    return lock_step(a, 2 * (pf - 1) / pf * n, (pf - 1) / pf * n, multi)
