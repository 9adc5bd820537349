"""``naive``: linear reduce to rank 0, then linear broadcast from rank 0.

Every other rank sends its whole vector to the root, which adds them in rank order and sends
the result back to each rank in turn. The root receives and sends ``(p-1) n`` bytes, so its link
and its reduction are the bottleneck.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = 2 (p-1) (alpha + n beta) + (p-1) n gamma`` (Thakur, Rabenseifner & Gropp 2005,
section 2, the linear algorithms they improve upon). On nodes of k ranks the root's messages
from and to the p - k ranks of other nodes take the inter-node alpha', beta'.

Bytes sent per rank: ``(p-1) n`` on the root (the result to each other rank), ``n`` elsewhere.
In place (``sendbuf = MPI.IN_PLACE``) the root reduces into ``recvbuf`` directly.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import reduce_input
from distbench.collectives.schedule import kernels

TAG = 0x4E41  # "NA"


def steps(comm, sendbuf, recvbuf, op=None):
    """Rank 0 receives and adds the p - 1 other vectors in rank order, then sends the sum back
    to each rank in turn."""
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src = setup
    size = comm.Get_size()
    if comm.Get_rank():
        yield (comm, src, 0, None, 0, TAG)
        yield (comm, None, 0, recvbuf, 0, TAG)
        return
    tmp = workspace(recvbuf, recvbuf.shape[0])
    acc = src
    for peer in range(1, size):
        yield (comm, None, 0, tmp, peer, TAG)
        fn(acc, tmp, out=recvbuf)
        acc = recvbuf
    for peer in range(1, size):
        yield (comm, recvbuf, peer, None, 0, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The root sends the result to each of the p-1 others; the others send their vector
    once."""
    if ranks == 1 or count == 0:
        return 0
    n = count * itemsize
    return (ranks - 1) * n if rank == 0 else n


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """The linear reduce and broadcast: 2 (p-1) messages of n through rank 0 and (p-1) n
    reduced; those with other nodes at alpha', beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 2, 2 * n, (p - 1) * n)
