"""Measure the one-way bit rate between rank 0 and rank 1 with a 4 MiB ping-pong.

Run as ``mpirun -n 2 python tools/pingpong.py OUT [REPS]`` (the emulated-cluster tests and
``tools/emulate_timings.py`` start it on two nodes): rank 0 writes the rate in bit/s (the 4 MiB
message's bits over half of the fastest round trip, the first one left out as warm-up) to OUT.
"""

import sys
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
buf = np.zeros(4 << 20, dtype=np.uint8)
times = []
for _ in range(reps):
    t = time.perf_counter()
    if comm.rank == 0:
        comm.Send(buf, 1)
        comm.Recv(buf, 1)
    elif comm.rank == 1:
        comm.Recv(buf, 0)
        comm.Send(buf, 0)
    times.append(time.perf_counter() - t)
if comm.rank == 0:
    with open(sys.argv[1], "w") as out:
        out.write(repr(buf.nbytes * 8 / (min(times[1:]) / 2)))
