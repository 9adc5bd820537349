"""``naive``: every rank sends its whole vector to the root, which reduces them one by one.

The root receives ``(p-1) n`` bytes and does all ``(p-1) n`` of the reduction: the linear reduce
the trees improve upon.

Cost (Hockney model, n bytes, p ranks): ``T = (p-1)(alpha + n beta + n gamma)`` (Thakur,
Rabenseifner & Gropp 2005, section 4, the linear algorithm). On nodes of k ranks the messages
from the p - k ranks of other nodes go at alpha', beta'.

Bytes sent per rank: ``n`` from every rank but the root, nothing from the root.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import root_input
from distbench.collectives.schedule import kernels

TAG = 0x4E44  # "ND"


def steps(comm, sendbuf, recvbuf, op=None, root: int = 0):
    """The others' vectors to ``root``, which adds them in the order root + 1, root + 2, ..
    into ``recvbuf``."""
    fn = root_input(comm, sendbuf, recvbuf, op, root)
    if fn is None:
        return
    if comm.Get_rank() != root:
        yield (comm, sendbuf, root, None, 0, TAG)
        return
    tmp = workspace(recvbuf, recvbuf.shape[0])
    acc = sendbuf
    for i in range(1, comm.Get_size()):
        yield (comm, None, 0, tmp, (root + i) % comm.Get_size(), TAG)
        fn(acc, tmp, out=recvbuf)
        acc = recvbuf


reduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The whole vector to the root from every other rank, n each; nothing from the
    root."""
    return 0 if rank == root else count * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """p - 1 receives and reductions of n on the root; those from the p - k ranks of other
    nodes at alpha', beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 1, n, (p - 1) * n)
