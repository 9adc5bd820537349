"""AllReduce by pairwise exchange: every rank sends its whole vector to every other rank and
reduces what it receives, in rank order, T = (p-1)(alpha + n beta) + (p-1) n gamma (the direct
algorithm of Thakur, Rabenseifner and Gropp 2005, sec. 2, used here as a plug-in example)."""

from distbench.collectives.coefficients import broadcast, one
from distbench.collectives.ops import reduce_ufunc
from distbench.registry import Algorithm
from distbench.runtime import namespace_of

TAG = 7


def allreduce(comm, sendbuf, recvbuf, op=None):
    """recvbuf = the reduction over ranks of sendbuf (1-D NumPy or CuPy arrays, any length);
    every rank adds the vectors in rank order, so every rank's result is the same."""
    rank, p = comm.Get_rank(), comm.Get_size()
    xp = namespace_of(recvbuf)
    fn = reduce_ufunc(op, xp)
    vectors = [xp.empty_like(sendbuf) for _ in range(p)]
    vectors[rank][...] = sendbuf
    for step in range(1, p):
        dst, src = (rank + step) % p, (rank - step) % p
        comm.Sendrecv(sendbuf, dst, TAG, vectors[src], src, TAG)
    recvbuf[...] = vectors[0]
    for r in range(1, p):
        fn(recvbuf, vectors[r], out=recvbuf)


def bytes_sent(rank, ranks, count, itemsize):
    """Bytes this rank sends: its vector to each of the p - 1 others."""
    return (ranks - 1) * count * itemsize


def cost(nbytes, ranks, ranks_per_node=None):
    """Coefficients of (alpha, beta, gamma, beta between nodes, alpha between nodes)."""
    n, p, _k = broadcast(nbytes, ranks, ranks_per_node)
    return one([p - 1, (p - 1) * n, (p - 1) * n, 0 * n, 0 * n])


ALGORITHM = Algorithm(allreduce, cost=cost, bytes_sent=bytes_sent)
