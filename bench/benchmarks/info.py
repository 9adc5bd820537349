"""``distbench info``: the environment a benchmark would record, the GPU / GPU-aware-MPI status,
every collective with its library calls and registered algorithms, the MPI datatype of each
``--dtype`` (or the fallback where the library has none), and this host's single-core memcpy
and ``np.add`` bandwidth, the physical reference a collective's table is judged against (a
shared-memory ring cannot beat a memcpy per step), measured twice: on rank 0 alone while the
others wait, and on every rank at once (what each core gets while its neighbours work too, as
during a collective; the figure every table's bound uses, :mod:`distbench.benchmarks.bound`),
with the point-to-point ``Sendrecv`` bandwidth around the ring, every rank sending at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from distbench.analysis.tables import INFO_COLUMNS
from distbench.benchmarks.collective import DTYPES
from distbench.benchmarks.overhead import measure
from distbench.collectives import collective_names, get_collective
from distbench.collectives.words import mpi_type
from distbench.command import Device, Job, RunOptions
from distbench.console import console, fmt_num, make_table
from distbench.declared import arg, flatten, group
from distbench.errors import UsageError
from distbench.options import declared_command
from distbench.results import environment
from distbench.runtime import (
    array_module,
    get_backend,
    mpi,
    mpix_query_cuda_support,
    numpy_dtype,
)

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


def p2p_bandwidth(comm, nbytes: int = REF_BYTES, repeats: int = 7) -> float:
    """``Sendrecv`` of ``nbytes`` to rank + 1 from rank - 1, every rank at once, barrier-
    separated; the slowest rank's best of ``repeats``, as ``nbytes / t`` in GB/s (collective;
    every rank gets the same value)."""
    MPI = mpi()
    n = nbytes // 4
    a = np.ones(n, dtype=np.float32)
    b = np.zeros(n, dtype=np.float32)
    rank, p = comm.Get_rank(), comm.Get_size()
    best = float("inf")
    for _ in range(repeats + 1):  # the first faults the pages in
        comm.Barrier()
        t0 = MPI.Wtime()
        comm.Sendrecv([a, MPI.FLOAT], (rank + 1) % p, 7, [b, MPI.FLOAT], (rank - 1) % p, 7)
        best = min(best, MPI.Wtime() - t0)
    return nbytes / comm.allreduce(best, op=MPI.MAX) / 1e9


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


def collective_rows() -> list[tuple[str, str]]:
    """One row per collective (its library calls and its algorithms, plug-ins marked) and one
    per ``--dtype`` (the MPI datatype mpi4py uses, or how the benchmark does without one)."""
    rows = []
    for name in collective_names():
        decl = get_collective(name)
        algos = [a + (f" [{decl.registry.source(a)}]" if decl.registry.source(a) else "")
                 for a in decl.algorithms()]
        rows.append((f"distbench {name}", f"{decl.call} / {decl.nonblocking_call}: "
                     + ", ".join(algos)))
    for dtype in DTYPES:
        t = mpi_type(numpy_dtype(dtype))
        rows.append((f"--dtype {dtype}", t.Get_name() if t is not None else
                     "no MPI datatype: sent as 16-bit words, library reductions through a "
                     "user-defined op"))
    return rows


def run_info(comm, device: str, gpu_aware: str, argv: list[str], overhead: bool = False
             ) -> int:
    """Print the info table on rank 0 (collective); with ``overhead``, also the harness's
    overhead per call over a bare mpi4py loop. Returns 0."""
    env = environment(comm, None, argv)
    gpu = gpu_status(device, gpu_aware, comm)
    comm.Barrier()
    bw = host_bandwidth() if comm.Get_rank() == 0 else None
    comm.Barrier()
    every = host_bandwidth()  # every rank at once
    slowest = {k: comm.allreduce(every[k], op=_min()) for k in ("memcpy_gbps", "add_gbps")}
    p2p = p2p_bandwidth(comm)
    over = measure(comm) if overhead else None
    if comm.Get_rank() != 0:
        return 0
    rows = [(k, str(v)) for k, v in env.items() if k not in ("command", "start_utc")]
    rows += [(k, str(v)) for k, v in gpu.items()]
    rows += collective_rows()
    p = comm.Get_size()
    rows += [("memcpy (1 core, np.copyto 64 MiB)", f"{fmt_num(bw['memcpy_gbps'])} GB/s"),
             ("np.add (1 core, 64 MiB, in place)", f"{fmt_num(bw['add_gbps'])} GB/s"),
             (f"memcpy (all {p} ranks at once, slowest)",
              f"{fmt_num(slowest['memcpy_gbps'])} GB/s per rank"),
             (f"np.add (all {p} ranks at once, slowest)",
              f"{fmt_num(slowest['add_gbps'])} GB/s per rank"),
             (f"Sendrecv 64 MiB around the ring (all {p} ranks at once, slowest)",
              f"{fmt_num(p2p)} GB/s per rank")]
    if over is not None:
        rows.append((f"harness overhead ({over['bytes']} B native, median of 20000)",
                     f"bare {over['bare_us']:.3f} us, harness {over['harness_us']:.3f} us, "
                     f"{over['overhead_us']:+.3f} us per call"))
    console().print(make_table("distbench info", INFO_COLUMNS, rows))
    return 0


def _min():
    return mpi().MIN


@dataclass(kw_only=True)
class InfoConfig:
    """The options of ``distbench info``."""

    overhead: bool = arg(False, "Also time MPI_Allreduce of 8 B through the harness and through "
                         "a bare mpi4py loop, alternating in blocks, and print the difference "
                         "of the medians (the harness's cost per call; run with mpirun -n 2).")
    device: Device = group(Device)
    run: RunOptions = group(RunOptions, skip=("max_time", "output", "run_dir", "json", "quiet"),
                            output=None)


def _info(cfg: InfoConfig) -> Job:
    if cfg.device.gpu_aware != "auto" and cfg.device.device != "gpu":
        raise UsageError("--gpu-aware goes with --device gpu")
    array_module(cfg.device.device)  # --device gpu: CuPy and a CUDA device, or one line
    return Job("info", flatten(cfg), lambda comm, argv, _: run_info(
        comm, cfg.device.device, cfg.device.gpu_aware, argv, cfg.overhead), options=cfg.run)


info_command = declared_command(
    "info", InfoConfig, _info,
    doc="""MPI library, versions, ranks, hosts, GPU status, the collectives and their algorithms,
    the MPI datatype of each --dtype, and this host's memcpy and np.add bandwidth on one core
    alone and on every rank at once, with the point-to-point bandwidth (the physical reference
    for the benchmark tables).""",
    examples=["mpirun -n 2 distbench info", "mpirun -n 2 distbench info --overhead",
              "mpirun -n 2 distbench info --device gpu"])
