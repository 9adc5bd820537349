"""An MPI program the emulated-cluster tests start on their clusters (not a test module).

``python placement.py OUT [PINGPONG_BYTES]``: every rank reports where it runs (its network
namespace, hostname, ranks on its node, pid, Slurm job id, the emulated record), the
hierarchical and ring AllReduce are checked against MPI_Allreduce across the node boundary
(skipped, ``wrong: null``, where distbench is not importable, e.g. an MPICH-only Python), and
rank 0 times a ping-pong of PINGPONG_BYTES (default 1 MiB) with the first rank of the other
half; rank 0 writes it all as JSON to OUT, the one-way rate in bit/s under ``rate``.
"""

import json
import os
import socket
import sys
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
node = comm.Split_type(MPI.COMM_TYPE_SHARED)
nodes = comm.allreduce(1 if node.Get_rank() == 0 else 0)
st = os.stat("/proc/self/ns/net")
emulated = os.environ.get("DISTBENCH_EMULATED")
me = {"rank": rank, "netns": [st.st_dev, st.st_ino], "hostname": socket.gethostname(),
      "node_size": node.Get_size(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID"),
      "emulated": json.loads(emulated) if emulated else None}

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
try:
    from checks import count_wrong, unchanged  # the kernel tests' reference checks

    from distbench.check import fill_exact
    from distbench.collectives import get_allreduce
except ImportError:
    wrong = changed = None
else:
    wrong = changed = 0
    for algo in ("hierarchical", "ring"):
        fn = get_allreduce(algo)
        for dtype in ("float32", "int64"):
            for count in (0, 1, 3, 4, 5, 1009, (1 << 17) + 3):
                send = np.empty(count, dtype=dtype)
                fill_exact(send, rank)
                recv = np.full(count, -99, dtype=dtype)
                fn(comm, send, recv)
                wrong += count_wrong(comm, send, recv)
                changed += 0 if unchanged(send, rank) else 1
    changed = comm.allreduce(changed)

peer = comm.size // 2
buf = np.zeros(int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20, dtype=np.uint8)
times = []
for _ in range(3):
    comm.Barrier()
    t = time.perf_counter()
    if rank == 0:
        comm.Send(buf, peer)
        comm.Recv(buf, peer)
    elif rank == peer:
        comm.Recv(buf, 0)
        comm.Send(buf, 0)
    times.append(time.perf_counter() - t)
ranks = comm.gather(me)
if rank == 0:
    with open(sys.argv[1], "w") as fh:
        json.dump({"ranks": ranks, "nodes": nodes, "wrong": wrong, "changed": changed,
                   "rate": buf.nbytes * 8 / (min(times[1:]) / 2),
                   "lib": MPI.Get_library_version()}, fh)
