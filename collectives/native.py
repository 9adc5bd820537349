"""``native``: the MPI library's own ``MPI_Allreduce``, the baseline every algorithm is
measured and checked against.

Cost: whatever the library picks (Open MPI's ``coll/tuned`` or ``han``, MPICH's selection);
see ``distbench model`` for the textbook algorithms it chooses among.
"""

from __future__ import annotations

from mpi4py import MPI


def allreduce(comm, sendbuf, recvbuf, op=MPI.SUM) -> None:
    """``recvbuf[:] = sum over ranks of sendbuf`` via ``comm.Allreduce`` (buffer API).

    Args:
        comm: an mpi4py communicator (or a distbench proxy of one).
        sendbuf, recvbuf: contiguous 1-D arrays (NumPy or CuPy), same length and dtype.
        op: MPI reduction op, default ``MPI.SUM``.
    """
    comm.Allreduce(sendbuf, recvbuf, op)
