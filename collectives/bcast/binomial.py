"""``binomial``: the binomial tree (MPICH's ``MPIR_Bcast_intra_binomial``, its short-message
broadcast).

With relative ranks v = (rank - root) mod p, v receives from v - lowbit(v), then sends to
v + 2^k for every 2^k < lowbit(v), largest first (every 2^k < p from the root):
:func:`~distbench.collectives.patterns.binomial_bcast`. ceil(lg p) rounds, each moving the
whole message.

Cost (Hockney model, n bytes, p ranks): ``T = ceil(lg p)(alpha + n beta)`` (Thakur,
Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH",
IJHPCA 19(1), section 3). The levels whose distance is at least k (ranks per node) cross
nodes.

Bytes sent per rank: ``n`` to each binomial child of v, i.e. ``n #{k : 2^k < lowbit(v),
v + 2^k < p}``; ``(p-1) n`` summed over ranks.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, one, tree_levels
from distbench.collectives.patterns import binomial_bcast, binomial_children
from distbench.collectives.schedule import kernels

TAG = 0x4242  # "BB"


def steps(comm, buf, root: int = 0):
    """Down the binomial tree rooted at ``root``: receive from the parent, then send to each
    child, largest subtree first."""
    if comm.Get_size() > 1 and buf.shape[0]:
        yield from binomial_bcast(comm, buf, TAG, root)


bcast, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The whole message to each binomial child of relative rank (rank - root) mod p;
    nothing from a leaf."""
    return count * itemsize * binomial_children((rank - root) % ranks, ranks)


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's binomial broadcast: ceil(lg p) levels of n; the levels with distance >= k
    cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi = tree_levels(n, p, k)
    return one([a, b, 0.0 * n, ai, bi])
