"""GPU paths: CuPy buffers through every algorithm, GPU-aware and host-staged.

Skipped cleanly (with the reason) when CuPy or a CUDA device is absent; the staging logic itself
is covered on the host by tests/test_staging_mpi.py.
"""

from __future__ import annotations

import json

import pytest
from launch import MPIRUN, mpirun

from distbench.errors import UsageError
from distbench.runtime import array_module


def _cupy_or_skip():
    try:
        return array_module("gpu")
    except UsageError as exc:
        pytest.skip(f"no GPU here: {exc}")


@pytest.mark.parametrize("gpu_aware", ["no", "auto"])
@pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH")
def test_gpu_sweep_exact(tmp_path, gpu_aware):
    _cupy_or_skip()
    proc = mpirun(2, ["allreduce", "--device", "gpu", "--gpu-aware", gpu_aware, "--algo", "all",
                      "-b", "8", "-e", "4M", "-f", "16", "-n", "3", "--output", str(tmp_path),
                      "--json"])
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert records and all(r["wrong"] == 0 and r["device"] == "gpu" for r in records)


@pytest.mark.mpi(min_size=2)
def test_cupy_buffers_through_staging_equal_numpy():
    cp = _cupy_or_skip()
    import numpy as np
    from mpi4py import MPI

    from distbench.check import fill_exact
    from distbench.collectives import ALLREDUCE
    from distbench.comm import HostStagingComm
    from distbench.runtime import get_backend

    comm = MPI.COMM_WORLD
    backend = get_backend("gpu", "no", comm)
    staged = HostStagingComm(comm, backend)
    for name, fn in ALLREDUCE.items():
        for count in (0, 1, 1009, (1 << 16) + 3):
            host = np.empty(count, dtype=np.float32)
            fill_exact(host, comm.Get_rank())
            ref = np.empty_like(host)
            comm.Allreduce(host, ref)
            send = cp.asarray(host)
            recv = cp.full(count, -99, dtype=cp.float32)
            fn(staged, send, recv)
            assert np.array_equal(cp.asnumpy(recv), ref), (name, count)
