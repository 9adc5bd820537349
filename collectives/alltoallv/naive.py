"""``naive``: post every receive and every send at once, then wait for all of them (Open MPI's
``basic_linear`` all-to-all-v).

Cost (Hockney model, n bytes the mean send buffer, p ranks): ``T = (p-1)(alpha + n/p beta)``
(Thakur, Rabenseifner & Gropp 2005, section 4); contention is not in the model.

Bytes sent per rank: its blocks for the other ranks.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.alltoallv.split import counts, sent_bytes
from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import copy_into
from distbench.collectives.schedule import kernels

TAG = 0x4E56  # "NV"


def steps(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None):
    """One step: every block posted at once, then ``Waitall``."""
    sc, sd, rc, rd = counts(comm, sendbuf, recvbuf, sendcounts, recvcounts)
    rank, size = comm.Get_rank(), comm.Get_size()
    copy_into(recvbuf[rd[rank]:rd[rank] + rc[rank]], sendbuf[sd[rank]:sd[rank] + sc[rank]])
    if size > 1:
        yield [(comm, sendbuf[sd[j]:sd[j] + sc[j]], j, recvbuf[rd[j]:rd[j] + rc[j]], j, TAG)
               for j in range(size) if j != rank]


alltoallv, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """Its blocks for the other ranks in the sweep's pattern."""
    return sent_bytes(count, ranks, rank, itemsize)


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """p - 1 messages of about n/p per rank; those to other nodes at alpha', beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 1, n / p, 0.0)
