"""``bruck``: ceil(lg p) exchanges for any p, for short messages (Bruck, Ho, Kipnis, Upfal &
Weathersby 1997, the index algorithm; MPICH's short-message all-to-all).

1. Rotate: position i of a scratch vector gets the block for rank (r+i) mod p.
2. For d = 1, 2, 4, .. < p: send every block whose position has bit d set to rank r+d and
   receive the same positions from r-d (packed into one message each way).
3. Position i now holds the block rank (r-i) mod p sent to this rank: ``recvbuf`` block j gets
   position (r-j) mod p.

Cost (Hockney model, n bytes per rank's send buffer, p ranks): ``T = ceil(lg p) alpha +
B/p n beta`` with B = the number of positions with bit d set summed over the steps (about
p/2 lg p; Bruck et al. 1997, "Efficient algorithms for all-to-all communications in multiport
message-passing systems", IEEE TPDS 8(11); Thakur, Rabenseifner & Gropp 2005, section 4). It
trades lg p/2 times the bytes for lg p instead of p - 1 latencies; the rotations and packing
(about (2 + lg p) n of local copies) are not in the formula.

Bytes sent per rank: ``B m`` (m = n/p elements per block), e.g. ``(p/2) lg p m`` for p a power
of two. In place the first rotation reads ``recvbuf`` and the last writes it.
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, lg_ceil, lock_step
from distbench.collectives.inputs import copy_into, exchange_input
from distbench.collectives.schedule import kernels
from distbench.runtime import namespace_of

TAG = 0x4231  # "B1"


@functools.lru_cache(maxsize=64)
def positions(ranks: int, dist: int) -> np.ndarray:
    """The block positions 0..p-1 with bit ``dist`` set (int64, cached): what step ``dist``
    sends."""
    idx = np.arange(ranks)
    return idx[(idx & dist) != 0]


def steps(comm, sendbuf, recvbuf):
    """Rotate into the ``"bruck"`` workspace, lg p packed exchanges at distances 1, 2, 4, ..,
    then the inverse rotation into ``recvbuf``."""
    setup = exchange_input(comm, sendbuf, recvbuf, copy=False)
    if setup is None:
        return
    src, m = setup
    rank, size = comm.Get_rank(), comm.Get_size()
    xp, n = namespace_of(recvbuf), recvbuf.shape[0]
    tmp = workspace(recvbuf, n, "bruck")
    copy_into(tmp[:n - rank * m], src[rank * m:])  # position i: the block for rank r+i
    copy_into(tmp[n - rank * m:], src[:rank * m])
    grid = tmp.reshape(size, m)
    dist = 1
    while dist < size:
        idx = positions(size, dist)
        out = workspace(recvbuf, idx.size * m, "pack").reshape(idx.size, m)
        into = workspace(recvbuf, idx.size * m, "unpack").reshape(idx.size, m)
        xp.take(grid, xp.asarray(idx) if xp is not np else idx, axis=0, out=out)
        yield (comm, out.reshape(-1), (rank + dist) % size, into.reshape(-1),
               (rank - dist) % size, TAG)
        grid[idx] = into
        dist <<= 1
    # position i holds rank (r - i)'s block: recvbuf block j <- position (r - j) mod p
    rows = recvbuf.reshape(size, m)
    rows[rank::-1] = grid[:rank + 1]
    rows[:rank:-1] = grid[rank + 1:]


alltoall, start = kernels(steps)


def packed_blocks(ranks):
    """B: the positions 0..p-1 with bit d set, summed over d = 1, 2, 4, .. < p (vectorized
    over p >= 1, closed form: per d, d of every 2d positions plus the tail's excess)."""
    p = np.asarray(ranks, dtype=np.int64)
    total = np.zeros(p.shape, dtype=np.int64)
    d = 1
    while d < max(int(p.max(initial=1)), 1):
        total += np.where(d < p, p // (2 * d) * d + np.maximum(p % (2 * d) - d, 0), 0)
        d <<= 1
    return total


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """B blocks of m (:func:`packed_blocks`; count = p m), the same on every rank: more than
    pairwise's p - 1 once p > 3."""
    if ranks == 1 or count == 0:
        return 0
    return int(packed_blocks(ranks)) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """Bruck et al.'s ceil(lg p) steps of B/p n bytes in all; with several nodes every step
    crosses them."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return lock_step(lg_ceil(p), packed_blocks(p) / p * n, 0.0, k < p)
