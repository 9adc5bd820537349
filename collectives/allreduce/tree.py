"""``tree``: binomial-tree reduce to rank 0, then binomial-tree broadcast from rank 0.

Reduce: in round k = 0, 1, ... a rank whose lowest set bit is 2^k sends its partial sum to
rank - 2^k and leaves; a rank with bit k clear receives from rank + 2^k (if it exists) and adds.
Broadcast runs the same tree backwards: rank r receives from r - lowbit(r), then sends to
r + 2^k for every 2^k < lowbit(r) (every 2^k < p for rank 0), largest first. Both are
MPICH's binomial algorithms (``MPIR_Reduce_intra_binomial``, ``MPIR_Bcast_intra_binomial``;
:func:`~distbench.collectives.patterns.binomial_reduce`, ``binomial_bcast``). In place
(``sendbuf = MPI.IN_PLACE``) the reduce starts from ``recvbuf``.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = 2 ceil(lg p) (alpha + n beta) + ceil(lg p) n gamma`` (Thakur, Rabenseifner &
Gropp 2005, "Optimization of collective communication operations in MPICH", IJHPCA 19(1): the
binomial broadcast and binomial reduce, MPICH's short-message algorithms). Latency-optimal in
the number of rounds, but every round moves the whole vector: its bandwidth term is
lg p p/(p-1) times the ring's.

Bytes sent per rank r: ``n`` to its parent in the reduce (every rank but 0) plus ``n`` to each
of its children in the broadcast, i.e. ``n ([r > 0] + #{k : 2^k < lowbit(r), r + 2^k < p})``
(for r = 0 every 2^k < p counts). Summed over ranks: ``2 (p-1) n``.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lg_ceil, one, tree_levels
from distbench.collectives.inputs import reduce_input
from distbench.collectives.patterns import binomial_bcast, binomial_children, binomial_reduce
from distbench.collectives.schedule import kernels

TAG = 0x5452  # "TR"


def steps(comm, sendbuf, recvbuf, op=None):
    """Up the binomial tree to rank 0 with partial sums (in ``recvbuf``), then back down
    with the result."""
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is not None:
        yield from binomial_reduce(comm, setup[1], recvbuf, setup[0], TAG)
        yield from binomial_bcast(comm, recvbuf, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The whole vector once to the parent (reduce) and once to each child (broadcast), i.e.
    ``n ([r > 0] + children(r))``."""
    if ranks == 1 or count == 0:
        return 0
    return count * itemsize * ((rank > 0) + binomial_children(rank, ranks))


def node_tree(nbytes, ranks_per_node) -> np.ndarray:
    """Coefficients of a binomial reduce + broadcast inside a node of k ranks, shape (5, ...)
    (the intra-node phases of ``hierarchical``)."""
    lk = lg_ceil(ranks_per_node)
    zero = np.zeros(np.shape(nbytes))
    return np.stack([2 * lk + zero, 2 * lk * nbytes, lk * nbytes, zero, zero])


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's binomial reduce then binomial broadcast; the levels whose partner distance is at
    least k cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi = tree_levels(n, p, k, passes=2)
    return one([a, b, lg_ceil(p) * n, ai, bi])
