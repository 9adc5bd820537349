"""``tree``: binomial-tree reduce to rank 0, then binomial-tree broadcast from rank 0.

Reduce: in round k = 0, 1, ... a rank whose lowest set bit is 2^k sends its partial sum to
rank - 2^k and leaves; a rank with bit k clear receives from rank + 2^k (if it exists) and adds.
Broadcast runs the same tree backwards: rank r receives from r - lowbit(r), then sends to
r + 2^k for every 2^k < lowbit(r) (every 2^k < p for rank 0), largest first. Both are
MPICH's binomial algorithms (``MPIR_Reduce_intra_binomial``, ``MPIR_Bcast_intra_binomial``).

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

from distbench.buffers import workspace
from distbench.collectives.kernels import (
    broadcast,
    copy_into,
    lg_ceil,
    one,
    reduce_ufunc,
    split_steps,
)
from distbench.runtime import namespace_of

TAG = 0x5452  # "TR"


def binomial_reduce(comm, sendbuf, out, fn, tag: int = TAG):
    """Binomial-tree reduce of ``sendbuf`` over ``comm`` to rank 0.

    Partial sums are accumulated in ``out`` (same length and dtype as ``sendbuf``, may not
    alias it); received vectors land in the ``"tmp"`` workspace slot.

    Returns:
        The array holding this rank's partial sum when it is done: ``out`` if it received from a
        child, ``sendbuf`` itself on a leaf (so a leaf never copies). On rank 0 this is the full
        reduction (``sendbuf`` only when the communicator has one rank).
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    acc = sendbuf
    mask = 1
    while mask < size:
        if rank & mask:
            comm.Send(acc, rank - mask, tag)
            break
        child = rank + mask
        if child < size:
            tmp = workspace(out, out.shape[0])
            comm.Recv(tmp, child, tag)
            fn(acc, tmp, out=out)
            acc = out
        mask <<= 1
    return acc


def binomial_bcast(comm, buf, tag: int = TAG) -> None:
    """Binomial-tree broadcast of ``buf`` from rank 0 of ``comm`` (in place on the others)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    mask = 1
    while mask < size:
        if rank & mask:
            comm.Recv(buf, rank - mask, tag)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:
        if rank + mask < size:
            comm.Send(buf, rank + mask, tag)
        mask >>= 1


def allreduce(comm, sendbuf, recvbuf, op=None) -> None:
    """Binomial-tree reduce to rank 0, then binomial-tree broadcast.

    Args:
        comm: communicator (mpi4py or a distbench proxy); uses ``Send``/``Recv``.
        sendbuf: 1-D contiguous array (NumPy or CuPy), n elements; not modified.
        recvbuf: 1-D array like ``sendbuf``; receives the reduction over all ranks.
        op: ``mpi4py.MPI.Op`` SUM (None, the default), PROD, MAX or MIN.

    Raises:
        ValueError: ``op`` is not SUM/PROD/MAX/MIN.
    """
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    if comm.Get_size() == 1 or recvbuf.shape[0] == 0:
        copy_into(recvbuf, sendbuf)
        return
    binomial_reduce(comm, sendbuf, recvbuf, fn)
    binomial_bcast(comm, recvbuf)


def binomial_children(rank: int, ranks: int) -> int:
    """Children of ``rank`` in the binomial tree rooted at 0: r + 2^k for 2^k < lowbit(r)
    (every 2^k for the root) with r + 2^k < p."""
    low = rank & -rank if rank else ranks
    return sum(1 for k in range(ranks.bit_length()) if (1 << k) < low and rank + (1 << k) < ranks)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """The whole vector once to the parent (reduce), once to each child (broadcast)."""
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
    levels = lg_ceil(p)
    a, b, ai, bi = split_steps(2 * levels, 2 * np.minimum(levels, lg_ceil(k)), 1.0, n)
    return one([a, b, levels * n, ai, bi])
