"""``naive``: linear gather to rank 0, then rank 0 sends the whole result to each rank.

Rank 0 receives p - 1 blocks and sends p - 1 whole vectors: its link carries ``(p-1) n``, p
times what the ring puts on any link.

Cost (Hockney model, n bytes gathered, p ranks): ``T = (p-1)(alpha + n/p beta) + (p-1)(alpha +
n beta)`` (the linear gather and broadcast Thakur, Rabenseifner & Gropp 2005 improve upon). On
nodes of k ranks the root's messages with the p - k ranks of other nodes go at alpha', beta'.

Bytes sent per rank: ``n/p`` (its block) on every rank but 0; ``(p-1) n`` on rank 0.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import place_own
from distbench.collectives.ops import in_place
from distbench.collectives.schedule import kernels

TAG = 0x4E47  # "NG"


def steps(comm, sendbuf, recvbuf):
    """Rank 0 collects the blocks one by one, then sends the whole result to each rank in
    turn; the others send their block and wait."""
    m = place_own(comm, sendbuf, recvbuf)
    if m is None:
        return
    rank = comm.Get_rank()
    if rank:
        mine = recvbuf[rank * m:(rank + 1) * m] if in_place(sendbuf) else sendbuf
        yield (comm, mine, 0, None, 0, TAG)
        yield (comm, None, 0, recvbuf, 0, TAG)
        return
    for peer in range(1, comm.Get_size()):
        yield (comm, None, 0, recvbuf[peer * m:(peer + 1) * m], peer, TAG)
    for peer in range(1, comm.Get_size()):
        yield (comm, recvbuf, peer, None, 0, TAG)


allgather, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Its block to rank 0 from every other rank; p - 1 copies of the whole result from rank
    0."""
    if ranks == 1 or count == 0:
        return 0
    return (ranks - 1) * count * itemsize if rank == 0 else count // ranks * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """The linear gather and broadcast; the root's messages with other nodes at alpha',
    beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 2, n + n / p, 0.0)
