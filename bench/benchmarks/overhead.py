"""Harness overhead: ``native`` through distbench's timed loop vs a bare mpi4py loop
(``distbench info --overhead``).

Times ``comm.Allreduce`` on a small float32 message (default 8 B) two ways, alternating in
blocks of 1000 iterations so both see the same machine state:

* bare: ``Barrier(); t0 = Wtime(); comm.Allreduce(s, r); times.append(Wtime() - t0)``;
* harness: :func:`distbench.timing.time_interleaved` calling the registry's ``native`` through
  the same call the collective sweep builds.

The result is the median per-iteration completion time of each (max over ranks) and the
difference, in microseconds.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives import get_collective
from distbench.runtime import mpi
from distbench.timing import time_interleaved


def bare_loop(comm, send, recv, iters: int) -> np.ndarray:
    """Per-iteration seconds of ``iters`` barrier-separated ``comm.Allreduce`` calls."""
    MPI = mpi()
    out = []
    wtime, barrier, allreduce = MPI.Wtime, comm.Barrier, comm.Allreduce
    for _ in range(iters):
        barrier()
        t0 = wtime()
        allreduce(send, recv)
        out.append(wtime() - t0)
    return np.asarray(out)


def measure(comm, nbytes: int = 8, iters: int = 20000, block: int = 1000) -> dict:
    """Median completion times (us) of the bare and the harness loop, and their difference
    (collective). Returns ``{"bytes", "bare_us", "harness_us", "overhead_us"}``."""
    decl = get_collective("allreduce")
    send = np.ones(max(1, nbytes // 4), dtype=np.float32)
    recv = np.empty_like(send)
    call = decl.invoke(decl.registry.bind(decl.baseline), comm, send, recv, comm.Get_rank(), 0,
                       None)
    bare, harness = [], []
    bare_loop(comm, send, recv, block)  # warm-up
    for _ in range(max(1, iters // block)):
        bare.append(bare_loop(comm, send, recv, block))
        harness.append(time_interleaved(comm, {"native": call}, block, rounds=1)["native"])
    local = np.stack([np.concatenate(bare), np.concatenate(harness)])
    allt = np.empty_like(local)
    comm.Allreduce(local, allt, op=mpi().MAX)  # per-iteration completion time
    b, h = (float(np.median(x)) * 1e6 for x in allt)
    return {"bytes": send.nbytes, "bare_us": b, "harness_us": h, "overhead_us": h - b}
