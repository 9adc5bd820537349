"""``distbench info``: the environment a benchmark would record, the GPU / GPU-aware-MPI status,
and this host's single-core memcpy and ``np.add`` bandwidth, the physical reference an
AllReduce table is judged against (a shared-memory ring cannot beat a memcpy per step).
"""

from __future__ import annotations

import time

import numpy as np

from distbench.report import console, fmt_num, make_table
from distbench.results import environment
from distbench.runtime import UsageError, get_backend, mpix_query_cuda_support

REF_BYTES = 64 << 20


def host_bandwidth(nbytes: int = REF_BYTES, repeats: int = 7) -> dict:
    """Single-core memory bandwidth of this process, best of ``repeats`` (GB/s = 1e9 B/s).

    Returns ``memcpy_gbps``: ``np.copyto`` of an ``nbytes`` float32 buffer, counted as
    ``nbytes / t`` (bytes copied, as memcpy benchmarks do; the memory traffic is twice that),
    and ``add_gbps``: ``np.add(a, b, out=a)`` on ``nbytes`` vectors, counted as ``nbytes / t``
    (the rate at which a reduction consumes one incoming vector).
    """
    n = nbytes // 4
    a = np.ones(n, dtype=np.float32)
    b = np.ones(n, dtype=np.float32)
    np.copyto(b, a)  # fault the pages in
    copy_t = add_t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        copy_t = min(copy_t, time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.add(a, b, out=a)
        add_t = min(add_t, time.perf_counter() - t0)
    return {"memcpy_gbps": nbytes / copy_t / 1e9, "add_gbps": nbytes / add_t / 1e9,
            "reference_bytes": nbytes}


def gpu_status(device: str, gpu_aware: str, comm) -> dict:
    """GPU availability and GPU-aware-MPI status as a dict of printable values."""
    out = {"cuda_aware_mpi (MPIX_Query_cuda_support)": mpix_query_cuda_support()}
    try:
        import cupy  # noqa: F401
        out["cupy"] = "installed"
    except ImportError:
        out["cupy"] = "not installed"
        return out
    try:
        backend = get_backend("gpu", gpu_aware, comm)
    except UsageError as exc:
        out["gpu"] = str(exc)
        return out
    out.update(backend.info)
    out["gpu_buffers_to_mpi"] = "direct" if backend.gpu_aware else "host staging"
    return out


def run_info(comm, device: str, gpu_aware: str, argv: list[str]) -> int:
    """Print the info table on rank 0 (collective). Returns 0."""
    env = environment(comm, None, argv)
    gpu = gpu_status(device, gpu_aware, comm)
    comm.Barrier()
    bw = host_bandwidth() if comm.Get_rank() == 0 else None
    comm.Barrier()
    if comm.Get_rank() != 0:
        return 0
    rows = [(k, str(v)) for k, v in env.items() if k not in ("command", "start_utc")]
    rows += [(k, str(v)) for k, v in gpu.items()]
    rows += [("memcpy (1 core, np.copyto 64 MiB)", f"{fmt_num(bw['memcpy_gbps'])} GB/s"),
             ("np.add (1 core, 64 MiB, in place)", f"{fmt_num(bw['add_gbps'])} GB/s")]
    console().print(make_table("distbench info", [("what", "left"), ("value", "left")], rows))
    return 0
