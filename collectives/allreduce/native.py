"""``native``: the MPI library's own ``MPI_Allreduce``, the baseline every algorithm is
measured against.

Cost: whatever the library picks (Open MPI's ``coll/tuned`` or ``han``, MPICH's selection). The
model takes it to be the cheapest of the textbook algorithms MPICH (Thakur, Rabenseifner &
Gropp 2005) and Open MPI's ``coll/tuned`` select among, :data:`CANDIDATES`, assuming the
library picks the best one at each size and rank count.

Bytes sent per rank: inside the library, not visible to a wrapper (a
:class:`~distbench.comm.CountingComm` counts the one send buffer handed to it).
"""

from __future__ import annotations

import numpy as np

CANDIDATES = ("recursive_doubling", "rabenseifner", "ring")


def allreduce(comm, sendbuf, recvbuf, op=None) -> None:
    """``recvbuf[:] = reduction over ranks of sendbuf`` via ``comm.Allreduce`` (buffer API).

    Args:
        comm: an mpi4py communicator (or a distbench proxy of one).
        sendbuf, recvbuf: contiguous 1-D arrays (NumPy or CuPy), same length and dtype;
            ``sendbuf`` may be ``MPI.IN_PLACE``.
        op: an ``mpi4py.MPI.Op``; None for ``MPI.SUM``.
    """
    if op is None:
        comm.Allreduce(sendbuf, recvbuf)
    else:
        comm.Allreduce(sendbuf, recvbuf, op)


def start(comm, sendbuf, recvbuf, op=None):
    """``comm.Iallreduce``: the library's nonblocking AllReduce; returns its request."""
    if op is None:
        return comm.Iallreduce(sendbuf, recvbuf)
    return comm.Iallreduce(sendbuf, recvbuf, op)


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """The alternatives the library selects among: each of :data:`CANDIDATES`' coefficients."""
    from distbench.collectives.allreduce import ALLREDUCE  # the registry of this collective

    return np.concatenate([ALLREDUCE.spec(a).cost(nbytes, ranks, ranks_per_node)
                           for a in CANDIDATES])
