"""``binomial``: the binomial tree (MPICH's ``MPIR_Reduce_intra_binomial``, its short-message
reduce).

With relative ranks v = (rank - root) mod p, in round k a rank whose lowest set bit is 2^k
sends its partial result to v - 2^k and leaves; a rank with bit k clear receives from v + 2^k
(if it exists) and reduces (:func:`~distbench.collectives.patterns.binomial_reduce`). Partial
results go to ``recvbuf`` on the root and to a scratch vector elsewhere.

Cost (Hockney model, n bytes, p ranks): ``T = ceil(lg p)(alpha + n beta + n gamma)`` (Thakur,
Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH",
IJHPCA 19(1), section 4). The levels whose distance is at least k (ranks per node) cross nodes.

Bytes sent per rank: ``n`` from every rank but the root (once, to its parent).
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, lg_ceil, one, tree_levels
from distbench.collectives.inputs import copy_into, root_input
from distbench.collectives.patterns import binomial_reduce
from distbench.collectives.schedule import kernels

TAG = 0x4244  # "BD"


def steps(comm, sendbuf, recvbuf, op=None, root: int = 0):
    """Up the binomial tree rooted at ``root``; partial results in ``recvbuf`` on the root, in
    the ``"acc"`` workspace elsewhere."""
    fn = root_input(comm, sendbuf, recvbuf, op, root)
    if fn is None:
        return
    mine = comm.Get_rank() == root
    out = recvbuf if mine else workspace(sendbuf, sendbuf.shape[0], "acc")
    acc = yield from binomial_reduce(comm, sendbuf, out, fn, TAG, root)
    if mine and acc is not recvbuf:
        copy_into(recvbuf, acc)


reduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The vector (or its partial result) once to the parent from every rank but the root:
    n each."""
    return 0 if rank == root else count * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's binomial reduce: ceil(lg p) levels of n sent and reduced; the levels with
    distance >= k cross nodes."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    a, b, ai, bi = tree_levels(n, p, k)
    return one([a, b, lg_ceil(p) * n, ai, bi])
