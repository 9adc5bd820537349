"""``pairwise``: p - 1 direct exchanges (MPICH's ``MPIR_Reduce_scatter_intra_pairwise``, its
long-message algorithm, which also serves non-commutative ops).

In step i = 1..p-1 rank r sends its part of block (r+i) to rank r+i, receives rank (r-i)'s
part of block r, and adds it into its result; each block's p parts meet on its owner, one
message each. No rank ever forwards another's data.

Cost (Hockney model, n bytes in all, p ranks): ``T = (p-1) alpha + (p-1)/p n beta + (p-1)/p n
gamma`` (Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1), section 4, reduce-scatter for long messages).

Bytes sent per rank: ``(p-1)/p n``, one block to each other rank. In place the input is
``recvbuf``; the result is accumulated in a one-block scratch buffer and copied to its first
block at the end (which still holds block 0's input until then).
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.inputs import copy_into, scatter_input
from distbench.collectives.ops import in_place
from distbench.collectives.schedule import kernels

TAG = 0x5057  # "PW"


def steps(comm, sendbuf, recvbuf, op=None):
    """p - 1 exchanges with rank +- i; each received part is added into the result at once
    (into a one-block workspace in place)."""
    setup = scatter_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src, m = setup
    rank, size = comm.Get_rank(), comm.Get_size()
    out = recvbuf[:m]
    acc = workspace(recvbuf, m, "acc") if in_place(sendbuf) else out
    tmp = workspace(recvbuf, m)
    mine = src[rank * m:(rank + 1) * m]
    for i in range(1, size):
        dst, source = (rank + i) % size, (rank - i) % size
        yield (comm, src[dst * m:(dst + 1) * m], dst, tmp, source, TAG)
        fn(mine, tmp, out=acc)
        mine = acc
    if acc is not out:
        copy_into(out, acc)


reduce_scatter, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int) -> int:
    """One block of m to each other rank, its part of that rank's block (count = p m):
    (p-1) m on every rank."""
    return 0 if ranks == 1 else (ranks - 1) * (count // ranks) * itemsize


def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
    """TRG's pairwise exchange: p - 1 latencies, (p-1)/p n sent and reduced; with several
    nodes every step has a pair that crosses them."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    pf = p.astype(np.float64)
    b = (pf - 1) / pf * n
    return lock_step(pf - 1, b, b, k < p)
