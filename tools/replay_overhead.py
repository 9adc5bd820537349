"""The replay's own cost per op: a trace of N barriers replayed against N bare
``comm.Barrier()`` calls, interleaved round by round in one job; prints the median per-op
times and their ratio with the spread over the rounds.

    mpirun -n 2 python tools/replay_overhead.py [--ops 1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--allreduce", type=int, default=0, metavar="ELEMENTS",
                    help="float32 AllReduces of this size instead of barriers")
    args = ap.parse_args()
    import numpy as np
    from mpi4py import MPI

    from distbench.benchmarks.replay import Replayer
    from distbench.traces import Trace, TraceOp

    comm = MPI.COMM_WORLD
    n = args.allreduce
    ops = [TraceOp(i, "allreduce", "float32", n, n) if n else TraceOp(i, "barrier")
           for i in range(args.ops)]
    trace = Trace(comm.Get_size(), [ops], "barriers", "distbench")
    rp = Replayer(comm, trace, ops, np, strict=False)
    group = rp.plans[0].comm  # the job's group, counted, as the replay calls it
    send, recv = np.ones(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    bare_op = (lambda: group.Allreduce(send, recv)) if n else group.Barrier
    bare, replay = [], []
    for r in range(args.rounds + 2):
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(args.ops):
            bare_op()
        t1 = time.perf_counter()
        comm.Barrier()
        t2 = time.perf_counter()
        rp.iteration({})
        t3 = time.perf_counter()
        if r >= 2:  # two warm-up rounds
            bare.append((t1 - t0) / args.ops)
            replay.append((t3 - t2) / args.ops)
    ratios = sorted(b / a for a, b in zip(bare, replay, strict=True))
    if comm.Get_rank() == 0:
        what = f"AllReduces of {n} float32" if n else "barriers"
        print(f"{comm.Get_size()} ranks, {args.ops} {what} x {args.rounds} rounds: bare "
              f"{1e6 * statistics.median(bare):.2f} us, replayed "
              f"{1e6 * statistics.median(replay):.2f} us per op; replayed / bare: median "
              f"{statistics.median(ratios):.3f} (rounds' 10-90 %: "
              f"{ratios[len(ratios) // 10]:.3f}-{ratios[9 * len(ratios) // 10]:.3f})")
    rp.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
