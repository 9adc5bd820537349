"""``naive``: linear reduce to rank 0, then linear broadcast from rank 0.

Every other rank sends its whole vector to the root, which adds them in rank order and sends
the result back to each rank in turn. The root receives and sends ``(p-1) n`` bytes, so its link
and its reduction are the bottleneck.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = 2 (p-1) (alpha + n beta) + (p-1) n gamma`` (Thakur, Rabenseifner & Gropp 2005,
section 2, the linear algorithms they improve upon).
"""

from __future__ import annotations

from mpi4py import MPI

from distbench.collectives._util import copy_into, reduce_ufunc, workspace
from distbench.runtime import namespace_of

TAG = 0x4E41  # "NA"


def allreduce(comm, sendbuf, recvbuf, op=MPI.SUM) -> None:
    """Reduce-to-root then broadcast, both linear.

    Args:
        comm: communicator (mpi4py or a distbench proxy).
        sendbuf: 1-D array (NumPy or CuPy), n elements; not modified.
        recvbuf: 1-D array like ``sendbuf``; receives the reduction over all ranks.
        op: MPI.SUM (default), PROD, MAX or MIN.

    Bytes per rank: non-root ranks send n*itemsize and receive n*itemsize; the root receives
    and sends (p-1)*n*itemsize.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    copy_into(recvbuf, sendbuf)
    if size == 1 or recvbuf.shape[0] == 0:
        return
    if rank == 0:
        fn = reduce_ufunc(op, namespace_of(recvbuf))
        tmp = workspace(recvbuf, recvbuf.shape[0])
        for src in range(1, size):
            comm.Recv(tmp, source=src, tag=TAG)
            fn(recvbuf, tmp, out=recvbuf)
        for dst in range(1, size):
            comm.Send(recvbuf, dest=dst, tag=TAG)
    else:
        comm.Send(sendbuf, dest=0, tag=TAG)
        comm.Recv(recvbuf, source=0, tag=TAG)
