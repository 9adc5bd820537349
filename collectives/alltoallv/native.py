"""``native``: the MPI library's own ``MPI_Alltoallv``, the baseline.

Cost: whatever the library picks; the model takes the cheaper of the textbook algorithms
(:data:`CANDIDATES`; Thakur, Rabenseifner & Gropp 2005, section 4: all-to-all-v is pairwise
or linear in the libraries, Bruck needs equal blocks).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.alltoallv.pairwise import cost as _pairwise_cost
from distbench.collectives.alltoallv.split import counts

CANDIDATES = ("pairwise", "naive")


def _specs(comm, sendbuf, recvbuf, sendcounts, recvcounts):
    """mpi4py's ``[array, (counts, displs)(, datatype)]`` specs of the buffers (arrays, or
    ``[array, datatype]`` specs of the benchmark's typed buffers)."""
    send, st = (sendbuf[0], sendbuf[1:]) if isinstance(sendbuf, list) else (sendbuf, [])
    recv, rt = (recvbuf[0], recvbuf[1:]) if isinstance(recvbuf, list) else (recvbuf, [])
    sc, sd, rc, rd = counts(comm, send, recv, sendcounts, recvcounts)
    return [send, (sc, sd), *st], [recv, (rc, rd), *rt]


def alltoallv(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None) -> None:
    """``comm.Alltoallv`` of the MPI library with these counts (buffer API)."""
    comm.Alltoallv(*_specs(comm, sendbuf, recvbuf, sendcounts, recvcounts))


def start(comm, sendbuf, recvbuf, sendcounts=None, recvcounts=None):
    """``comm.Ialltoallv``: its ``MPI.Request``."""
    return comm.Ialltoallv(*_specs(comm, sendbuf, recvbuf, sendcounts, recvcounts))


alltoallv.mpi_calls = start.mpi_calls = ("Alltoallv",)  # the proxies must define them
cost = _pairwise_cost
