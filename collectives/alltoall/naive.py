"""``naive``: post every receive and every send at once, then wait for all of them (Open MPI's
``basic_linear``, MPICH's ``isend_irecv``).

The p - 1 transfers in and out of each rank are left to the MPI library and the memory system
to order; with many ranks they contend, which is what pairwise exchange schedules away and
Bruck's lg p steps avoid for short messages.

Cost (Hockney model, n bytes per rank's send buffer, p ranks; one message at a time per rank):
``T = (p-1)(alpha + n/p beta)`` (Thakur, Rabenseifner & Gropp 2005, section 4); contention is
not in the model. On nodes of k ranks the p - k messages to other nodes go at alpha', beta'.

Bytes sent per rank: ``(p-1)/p n``, one block to each other rank. In place the blocks to send
are first copied to a scratch vector (one extra copy of n).
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, through_root
from distbench.collectives.inputs import exchange_input
from distbench.collectives.schedule import kernels

TAG = 0x4E41  # "NA"


def steps(comm, sendbuf, recvbuf):
    """One step: every block posted at once (p - 1 ``Irecv`` and ``Isend``), then
    ``Waitall``."""
    setup = exchange_input(comm, sendbuf, recvbuf)
    if setup is not None:
        src, m = setup
        yield [(comm, src[j * m:(j + 1) * m], j, recvbuf[j * m:(j + 1) * m], j, TAG)
               for j in range(comm.Get_size()) if j != comm.Get_rank()]


alltoall, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """One block of m to each other rank (count = p m), all posted at once: (p-1) m on
    every rank."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """p - 1 messages of n/p per rank; those to the p - k ranks of other nodes at alpha',
    beta'."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    return through_root(n, p, k, 1, n / p, 0.0)
