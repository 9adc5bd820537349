"""``ring``: reduce-scatter then allgather around a ring of p ranks (Patarasuk & Yuan 2009).

The vector is cut into p near-equal contiguous blocks (:func:`~distbench.collectives.kernels.
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
:data:`SEGMENT_BYTES`, as Open MPI's ``ompi_coll_base_allreduce_intra_ring_segmented`` does,
which adds ``(p-1)(ceil(b / SEGMENT_BYTES) - 1) alpha`` (b the largest block in bytes) and
changes no byte count. A communicator that spans nodes sends whole blocks: over TCP a chain of
blocking 1 MiB exchanges runs at about half the link rate (measured on ``distbench emulate``
links), while one message per step streams at the full rate.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.kernels import (
    block_bounds,
    broadcast,
    cached_bounds,
    copy_into,
    in_place,
    one,
    reduce_ufunc,
)
from distbench.collectives.patterns import ring_allgather, ring_reduce_scatter
from distbench.collectives.schedule import kernels
from distbench.runtime import mpi, namespace_of

TAG = 0x5249  # "RI"

# Reduce-scatter messages are cut into segments of this many bytes, so each received segment is
# still in cache when it is added (measured here, 2 ranks: 1 MiB segments are 20-25 % faster
# than whole blocks at 16-64 MiB; 256 KiB and 4 MiB are in between).
SEGMENT_BYTES = 1 << 20


_SPANS_NODES: dict = {}


def spans_nodes(comm) -> bool:
    """Whether ``comm``'s ranks are on more than one node (``COMM_TYPE_SHARED``), cached per
    communicator (the first call is collective)."""
    hit = _SPANS_NODES.get(id(comm))
    if hit is None or hit[0] is not comm:
        local = comm.Split_type(mpi().COMM_TYPE_SHARED)
        hit = (comm, local.Get_size() != comm.Get_size())
        local.Free()
        _SPANS_NODES[id(comm)] = hit  # holds comm, so its id is not reused while cached
    return hit[1]


def steps(comm, sendbuf, recvbuf, op=None):
    """Ring AllReduce: reduce-scatter then allgather of p blocks (a schedule).

    Args:
        comm: communicator (mpi4py or a distbench proxy); one exchange with each ring neighbour
            per step (``Sendrecv`` blocking, ``Isend``/``Irecv`` nonblocking).
        sendbuf: 1-D contiguous array (NumPy or CuPy), n elements; not modified; or
            ``MPI.IN_PLACE`` (the input is ``recvbuf``).
        recvbuf: 1-D array like ``sendbuf``; receives the reduction over all ranks.
        op: ``mpi4py.MPI.Op`` SUM (None, the default), PROD, MAX, MIN or a bitwise op.

    Raises:
        ValueError: ``op`` is not a predefined commutative op.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    src = recvbuf if in_place(sendbuf) else sendbuf
    count = recvbuf.shape[0]
    if size == 1 or count == 0:
        if src is not recvbuf:
            copy_into(recvbuf, src)
        return
    bounds = cached_bounds(count, size)
    # Every rank cuts every block into the same number of segments (from the largest block,
    # block 0), so sender and receiver agree on each message; a segment may be empty.
    seg = bounds[1] if spans_nodes(comm) else max(1, SEGMENT_BYTES // recvbuf.itemsize)
    own = (rank + 1) % size
    yield from ring_reduce_scatter(comm, src, bounds, own, recvbuf[bounds[own]:bounds[own + 1]],
                                   fn, TAG, seg)
    yield from ring_allgather(comm, recvbuf, bounds, own, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Reduce-scatter forwards every block but (r+1), allgather every block but (r+2)."""
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
    segments = (p - 1) * np.maximum(np.ceil(np.ceil(n / pf) / SEGMENT_BYTES) - 1, 0)
    a = 2 * (p - 1) + np.where(multi, 0, segments)
    b = 2 * (pf - 1) / pf * n
    c = (pf - 1) / pf * n
    return one([np.where(multi, 0, a), np.where(multi, 0, b), c,
                np.where(multi, a, 0), np.where(multi, b, 0)])
