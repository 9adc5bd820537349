"""``naive``: the root sends the whole message to every other rank in turn.

The root's link carries ``(p-1) n`` and the last rank waits for p - 1 transfers: the linear
broadcast the trees improve upon.

Cost (Hockney model, n bytes, p ranks): ``T = (p-1)(alpha + n beta)`` (Thakur, Rabenseifner &
Gropp 2005, section 3, the linear algorithm). On nodes of k ranks the root's messages to the
p - k ranks of other nodes go at alpha', beta'.

Bytes sent per rank: ``(p-1) n`` on the root, nothing elsewhere.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.schedule import kernels

TAG = 0x4E42  # "NB"


def steps(comm, buf, root: int = 0):
    """The root sends ``buf`` to root + 1, root + 2, .. in turn; every other rank receives
    once."""
    size = comm.Get_size()
    if size > 1 and buf.shape[0]:
        if comm.Get_rank() != root:
            yield (comm, None, 0, buf, root, TAG)
        else:
            for i in range(1, size):
                yield (comm, buf, (root + i) % size, None, 0, TAG)


bcast, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The whole message to each of the others from the root, (p-1) n; nothing from the
    others."""
    return (ranks - 1) * count * itemsize if rank == root else 0


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """p - 1 sends of n from the root; those to the p - k ranks of other nodes at alpha',
    beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 1, n, 0.0)
