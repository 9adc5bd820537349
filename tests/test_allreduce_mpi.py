"""Every registered AllReduce, exact against MPI_Allreduce, under mpirun with 2, 3 and 4 ranks."""

from __future__ import annotations

import numpy as np
import pytest

from distbench.check import count_wrong, fill_exact, unchanged
from distbench.collectives import ALLREDUCE, get_allreduce

DTYPES = ["float32", "float64", "int32", "int64"]


def _counts(p: int) -> list[int]:
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 1009, (1 << 20) + 3})


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(ALLREDUCE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_against_mpi_allreduce(name, dtype):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, p = comm.Get_rank(), comm.Get_size()
    fn = get_allreduce(name)
    for count in _counts(p):
        send = np.empty(count, dtype=dtype)
        fill_exact(send, rank)
        recv = np.full(count, -99, dtype=dtype)
        fn(comm, send, recv)
        assert count_wrong(comm, send, recv) == 0, (name, dtype, count)
        assert unchanged(send, rank), f"{name} modified sendbuf (count {count})"
