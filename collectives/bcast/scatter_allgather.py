"""``scatter_allgather``: binomial scatter of p blocks, then a ring AllGather of them (van de
Geijn's long-message broadcast; MPICH's ``MPIR_Bcast_intra_scatter_ring_allgather``).

The message is cut into p near-equal blocks, block j for relative rank j = (rank - root) mod p.
The binomial scatter gives every rank its block (the root sends half the message to v = p/2,
a quarter to p/4, ...: :func:`~distbench.collectives.patterns.binomial_scatter`), and p - 1 ring
steps circulate the blocks (:func:`~distbench.collectives.patterns.ring_allgather`). Each rank
then moves about ``2 n`` instead of the binomial tree's ``lg p n`` on the root.

Cost (Hockney model, n bytes, p ranks): ``T = (ceil(lg p) + p - 1) alpha + 2 (p-1)/p n beta``
(Barnett, Gupta, Payne, Shuler, van de Geijn & Watts 1994, "Interprocessor collective
communication library (InterCom)", SHPCC; Thakur, Rabenseifner & Gropp 2005, IJHPCA 19(1),
section 3).

Bytes sent per rank: the scatter's blocks for its subtree's children plus, in the ring, every
block but that of relative rank v + 1 (exactly: :func:`bytes_sent`); about ``2 (p-1)/p n`` on
the root and ``(p-1)/p n`` plus its subtree's share elsewhere.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lg_ceil, lock_step
from distbench.collectives.inputs import cached_bounds
from distbench.collectives.patterns import (
    binomial_scatter,
    ring_allgather,
    ring_bytes,
    scatter_bytes,
)
from distbench.collectives.schedule import kernels

TAG = 0x5341  # "SA"


def steps(comm, buf, root: int = 0):
    """Binomial scatter of p blocks from ``root``, then p - 1 ring steps in which relative
    rank v starts from its own block v."""
    size = comm.Get_size()
    if size > 1 and buf.shape[0]:
        bounds = cached_bounds(buf.shape[0], size)
        yield from binomial_scatter(comm, buf, bounds, TAG, root)
        yield from ring_allgather(comm, buf, bounds, (comm.Get_rank() - root) % size, TAG)


bcast, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0) -> int:
    """The scatter's subtree blocks for v's children and the ring's p - 1 blocks (all but
    v + 1's), in elements times the item size."""
    if ranks == 1 or count == 0:
        return 0
    v, bounds = (rank - root) % ranks, cached_bounds(count, ranks)
    return (scatter_bytes(v, ranks, bounds) + ring_bytes(bounds, ranks, v + 1)) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's scatter + allgather; with several nodes the ring's steps cross them, and so (at
    the root's first, largest sends) does the scatter."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    return lock_step(lg_ceil(p) + p - 1, 2 * (pf - 1) / pf * n, 0.0, k < p)
