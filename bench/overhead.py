"""Harness overhead: ``native`` through distbench's timed loop vs a bare mpi4py loop.

``mpirun -n 2 python -m distbench.overhead [BYTES] [ITERS]`` times ``comm.Allreduce`` on a
BYTES-byte float32 message (default 8) two ways, alternating in blocks of 1000 iterations so
both see the same machine state:

* bare: ``Barrier(); t0 = Wtime(); comm.Allreduce(s, r); times.append(Wtime() - t0)``;
* harness: :func:`distbench.timing.time_interleaved` calling the registry's ``native`` through
  the same ``functools.partial`` the allreduce sweep builds.

It prints the median per-iteration completion time of each (max over ranks) and the
difference, in microseconds (the allreduce issue's bound is 0.3 us).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
from mpi4py import MPI

from distbench.collectives import get_allreduce
from distbench.timing import time_interleaved


def bare_loop(comm, send, recv, iters: int) -> np.ndarray:
    out = []
    wtime, barrier, allreduce = MPI.Wtime, comm.Barrier, comm.Allreduce
    for _ in range(iters):
        barrier()
        t0 = wtime()
        allreduce(send, recv)
        out.append(wtime() - t0)
    return np.asarray(out)


def measure(comm, nbytes: int = 8, iters: int = 20000, block: int = 1000) -> dict:
    """Median completion times (us) of the bare and the harness loop, and their difference."""
    send = np.ones(max(1, nbytes // 4), dtype=np.float32)
    recv = np.empty_like(send)
    call = functools.partial(get_allreduce("native"), comm, send, recv)
    bare, harness = [], []
    bare_loop(comm, send, recv, block)  # warm-up
    for _ in range(max(1, iters // block)):
        bare.append(bare_loop(comm, send, recv, block))
        harness.append(time_interleaved(comm, {"native": call}, block, rounds=1)["native"])
    local = np.stack([np.concatenate(bare), np.concatenate(harness)])
    allt = np.empty_like(local)
    comm.Allreduce(local, allt, op=MPI.MAX)  # per-iteration completion time
    b, h = (float(np.median(x)) * 1e6 for x in allt)
    return {"bytes": send.nbytes, "bare_us": b, "harness_us": h, "overhead_us": h - b}


def main() -> None:
    comm = MPI.COMM_WORLD
    args = [int(a) for a in sys.argv[1:3]]
    res = measure(comm, *args)
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} ranks, {res['bytes']} B: bare {res['bare_us']:.3f} us, "
              f"harness {res['harness_us']:.3f} us, overhead {res['overhead_us']:+.3f} us/call")


if __name__ == "__main__":
    main()
