"""``naive``: linear reduce of the whole vector to rank 0, then a linear scatter of its blocks.

Every other rank sends its whole input to rank 0, which adds them in rank order and sends each
rank its block. Rank 0 receives ``(p-1) n`` bytes and reduces all of them: the bottleneck the
other algorithms remove.

Cost (Hockney model, n bytes in all, p ranks): ``T = (p-1)(alpha + n beta + n gamma) +
(p-1)(alpha + n/p beta)`` (the linear reduce and scatter Thakur, Rabenseifner & Gropp 2005
improve upon). On nodes of k ranks the root's messages with the p - k ranks of other nodes go
at alpha', beta'.

Bytes sent per rank: ``n`` on every rank but 0; rank 0 sends ``(p-1)/p n`` (a block to each).
In place the input is ``recvbuf``, whose first block then receives the result.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import copy_into, scatter_input
from distbench.collectives.schedule import kernels

TAG = 0x4E52  # "NR"


def steps(comm, sendbuf, recvbuf, op=None):
    """Everyone's whole input to rank 0, which sums them in the ``"acc"`` workspace.

    Rank 0 then sends each rank its block, and copies its own.
    """
    setup = scatter_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src, m = setup
    if comm.Get_rank():
        yield (comm, src, 0, None, 0, TAG)
        yield (comm, None, 0, recvbuf[:m], 0, TAG)
        return
    work = workspace(recvbuf, src.shape[0], "acc")
    tmp = workspace(recvbuf, src.shape[0])
    acc = src
    for peer in range(1, comm.Get_size()):
        yield (comm, None, 0, tmp, peer, TAG)
        fn(acc, tmp, out=work)
        acc = work
    for peer in range(1, comm.Get_size()):
        yield (comm, work[peer * m:(peer + 1) * m], peer, None, 0, TAG)
    copy_into(recvbuf[:m], work[:m])


reduce_scatter, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The whole input to rank 0 from the others; a block to each other rank from rank 0,
    (p-1) m."""
    if ranks == 1 or count == 0:
        return 0
    return (ranks - 1) * (count // ranks) * itemsize if rank == 0 else count * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """The linear reduce and scatter: 2 (p-1) messages through rank 0 and (p-1) n reduced
    there; those with other nodes at alpha', beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 2, n + n / p, (p - 1) * n)
