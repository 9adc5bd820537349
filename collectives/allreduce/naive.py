"""``naive``: linear reduce to rank 0, then linear broadcast from rank 0.

Every other rank sends its whole vector to the root, which adds them in rank order and sends
the result back to each rank in turn. The root receives and sends ``(p-1) n`` bytes, so its link
and its reduction are the bottleneck.

Cost (Hockney model, n bytes, p ranks; alpha latency, beta time per byte, gamma reduction time
per byte): ``T = 2 (p-1) (alpha + n beta) + (p-1) n gamma`` (Thakur, Rabenseifner & Gropp 2005,
section 2, the linear algorithms they improve upon). On nodes of k ranks the root's messages
from and to the p - k ranks of other nodes take the inter-node alpha', beta'.

Bytes sent per rank: ``(p-1) n`` on the root (the result to each other rank), ``n`` elsewhere.
In place (``sendbuf = MPI.IN_PLACE``) the root reduces into ``recvbuf`` directly.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.kernels import (
    broadcast,
    copy_into,
    in_place,
    one,
    reduce_ufunc,
    split_steps,
)
from distbench.collectives.schedule import kernels
from distbench.runtime import namespace_of

TAG = 0x4E41  # "NA"


def steps(comm, sendbuf, recvbuf, op=None):
    """Reduce-to-root then broadcast, both linear (a schedule).

    Args:
        comm: communicator (mpi4py or a distbench proxy); one send or receive per step.
        sendbuf: 1-D array (NumPy or CuPy), n elements; not modified; or ``MPI.IN_PLACE``
            (the input is ``recvbuf``).
        recvbuf: 1-D array like ``sendbuf``; receives the reduction over all ranks.
        op: ``mpi4py.MPI.Op`` SUM (None, the default), PROD, MAX, MIN or a bitwise op.

    Raises:
        ValueError: ``op`` is not a predefined commutative op.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    src = recvbuf if in_place(sendbuf) else sendbuf
    if src is not recvbuf and (rank == 0 or size == 1):
        copy_into(recvbuf, src)
    if size == 1 or recvbuf.shape[0] == 0:
        return
    if rank == 0:
        tmp = workspace(recvbuf, recvbuf.shape[0])
        for peer in range(1, size):
            yield (comm, None, 0, tmp, peer, TAG)
            fn(recvbuf, tmp, out=recvbuf)
        for peer in range(1, size):
            yield (comm, recvbuf, peer, None, 0, TAG)
    else:
        yield (comm, src, 0, None, 0, TAG)
        yield (comm, None, 0, recvbuf, 0, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The root sends the result to each of the p-1 others; the others send their vector."""
    if ranks == 1 or count == 0:
        return 0
    n = count * itemsize
    return (ranks - 1) * n if rank == 0 else n


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    inside = np.minimum(k, p) - 1
    a, b, ai, bi = split_steps(2 * (p - 1), 2 * inside, 1.0, n)
    return one([a, b, (p - 1) * n, ai, bi])
