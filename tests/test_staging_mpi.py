"""The host-staging path of the GPU code, exercised with NumPy (under mpirun with 2, 3, 4 ranks).

Every registered algorithm runs on ``HostStagingComm(CountingComm(world), numpy backend,
force=True)``, so every buffer handed to MPI is copied to a host buffer first and back after.
The result must be exact, and the staged bytes must equal the bytes that went through MPI:
copies to the host = bytes sent (point-to-point payload plus collective contributions), copies
back = bytes received.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import count_wrong, unchanged

from distbench.check import fill_exact
from distbench.collectives import ALLREDUCE, get_allreduce
from distbench.comm import CountingComm, HostStagingComm
from distbench.runtime import Backend


def _counts(p: int) -> list[int]:
    return sorted({0, 1, p + 1, 1009, (1 << 18) + 3})


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(ALLREDUCE))
def test_staged_exact_and_bytes_match(name):
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank, p = world.Get_rank(), world.Get_size()
    counted = CountingComm(world)
    staged = HostStagingComm(counted, Backend("numpy", np), force=True)
    options = {"ranks_per_node": 2 if p % 2 == 0 else 1} if name == "hierarchical" else {}
    fn = get_allreduce(name, **options)
    for count in _counts(p):
        send = np.empty(count, dtype="float64")
        fill_exact(send, rank)
        recv = np.full(count, -99.0)
        staged.staged_bytes.clear()
        counted.reset()
        fn(staged, send, recv)
        assert count_wrong(world, send, recv) == 0, (name, count)
        assert unchanged(send, rank), (name, count)
        to_host, to_device = staged.staged_bytes["to_host"], staged.staged_bytes["to_device"]
        sent = counted.bytes_sent + counted.collective_bytes
        received = recv.nbytes if name == "native" else counted.bytes_recv
        assert to_host == sent, (name, count, to_host, sent)
        assert to_device == received, (name, count, to_device, received)
        # every rank moves data in every algorithm once there is any (p >= 2)
        assert (to_host > 0) == (count > 0) and (to_device > 0) == (count > 0), (name, count)


@pytest.mark.mpi(min_size=2)
def test_allgatherv_through_staging():
    """Variable-size payloads (Allgatherv) staged through host buffers arrive intact."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, p = comm.Get_rank(), comm.Get_size()
    staged = HostStagingComm(comm, Backend("numpy", np), force=True)
    counts = [r + 1 for r in range(p)]
    displs = [sum(counts[:r]) for r in range(p)]
    send = np.full(counts[rank], rank, dtype=np.int32)
    recv = np.full(sum(counts), -1, dtype=np.int32)
    staged.Allgatherv(send, [recv, counts, displs, MPI.INT32_T])
    expected = np.concatenate([np.full(c, r, dtype=np.int32) for r, c in enumerate(counts)])
    assert np.array_equal(recv, expected)
    assert staged.staged_bytes["to_device"] == recv.nbytes
