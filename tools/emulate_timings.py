"""Timings of the emulated cluster with and without Slurm (the README's "Performance of the
emulation itself" tables). Needs root and, for the Slurm rows, Debian's Slurm packages.

    sudo .venv/bin/python tools/emulate_timings.py [--reps 7]

Every figure is the median of ``--reps`` runs with the range (min-max), the variants of one
figure run interleaved (their order rotates each repetition), so a drift of the machine's speed
hits them alike:

* up / down: ``Cluster(4, 2, "1gbit")`` and ``SlurmCluster(4, 2, "1gbit")``: entering (network,
  and for Slurm munged, slurmctld, 4 slurmd, every node idle) and leaving the ``with``;
* job start: a 4-rank mpi4py job that only initializes MPI, does a Barrier and exits, on a
  running 2 x 2 cluster: plain mpirun, srun --mpi=pmix, salloc + mpirun, sbatch (its script
  runs srun): "start" from the launch command to rank 0 past the Barrier (every rank running
  MPI), "wall" until the launcher returns (sbatch: until squeue shows the job done);
* link rate: one-way rate of a 4 MiB ping-pong between two nodes (2 x 1), best of 3 round
  trips in a job, under plain mpirun and under srun, at 100mbit and 1gbit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from distbench.emulate.cluster import Cluster
from distbench.emulate.slurm import SlurmCluster

PY = sys.executable
START = ("import sys, time; from mpi4py import MPI; MPI.COMM_WORLD.Barrier(); "
         "MPI.COMM_WORLD.rank or open(sys.argv[1], 'w').write(repr(time.time()))")
PINGPONG = Path(__file__).resolve().parent / "pingpong.py"


def summary(values: list[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    v = [x * scale for x in values]
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))})"


def rotate(items: list, k: int) -> list:
    return items[k % len(items):] + items[:k % len(items)]


def up_down(reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for k in range(reps):
        for name in rotate(["mpirun", "slurm"], k):
            cluster = (Cluster if name == "mpirun" else SlurmCluster)(4, 2, "1gbit")
            t0 = time.perf_counter()
            with cluster:
                t1 = time.perf_counter()
            t2 = time.perf_counter()
            out.setdefault(f"{name} up", []).append(t1 - t0)
            out.setdefault(f"{name} down", []).append(t2 - t1)
    return out


def job_start(reps: int, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    stamp = tmp / "started"
    job = tmp / "start.sbatch"
    job.write_text(f'#!/bin/sh\nexec srun --mpi=pmix {PY} -c "{START}" {stamp}\n')
    sink = open(tmp / "batch.out", "wb")
    with Cluster(2, 2, "1gbit") as plain, SlurmCluster(2, 2, "1gbit", time_limit_s=120) as slurm:
        for k in range(reps + 1):  # the first round warms the page cache, not counted
            for name in rotate(["mpirun", "srun", "salloc", "sbatch"], k):
                stamp.unlink(missing_ok=True)
                t0 = time.time()
                if name == "mpirun":
                    code = plain.run([PY, "-c", START, str(stamp)])
                elif name == "sbatch":
                    code = slurm.batch(job, out=sink)
                else:
                    slurm.launch = name
                    code = slurm.run([PY, "-c", START, str(stamp)])
                wall = time.time() - t0
                assert code == 0, name
                if k:
                    out.setdefault(name + " start", []).append(float(stamp.read_text()) - t0)
                    out.setdefault(name + " wall", []).append(wall)
    return out


def link_rates(reps: int, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    res = tmp / "rate.txt"
    for link in ("100mbit", "1gbit"):
        with Cluster(2, 1, link) as plain, SlurmCluster(2, 1, link, time_limit_s=120) as slurm:
            for k in range(reps):
                for name in rotate(["mpirun", "srun"], k):
                    cluster = plain if name == "mpirun" else slurm
                    assert cluster.run([PY, str(PINGPONG), str(res)]) == 0
                    out.setdefault(f"{link} {name}", []).append(float(res.read_text()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ud = up_down(args.reps)
        js = job_start(args.reps, Path(tmp))
        lr = link_rates(args.reps, Path(tmp))
    print(f"medians of {args.reps} runs (min-max)\n")
    print("| 4 nodes x 2 ranks, 1gbit | up | down |\n|---|---:|---:|")
    for name in ("mpirun", "slurm"):
        print(f"| {name} | {summary(ud[name + ' up'])} s | {summary(ud[name + ' down'])} s |")
    print("\n| 4-rank job (MPI_Init + Barrier), 2 x 2 | start | start vs plain mpirun | wall |"
          "\n|---|---:|---:|---:|")
    base = statistics.median(js["mpirun start"])
    for name in ("mpirun", "srun", "salloc", "sbatch"):
        print(f"| {name} | {summary(js[name + ' start'])} s | "
              f"{statistics.median(js[name + ' start']) - base:+.3f} s | "
              f"{summary(js[name + ' wall'])} s |")
    print("\n| link | plain mpirun | srun --mpi=pmix | srun / mpirun |\n|---|---:|---:|---:|")
    for link in ("100mbit", "1gbit"):
        m, s = lr[f"{link} mpirun"], lr[f"{link} srun"]
        print(f"| {link} | {summary(m, 1e-9, '{:.4f}')} Gbit/s | "
              f"{summary(s, 1e-9, '{:.4f}')} Gbit/s | "
              f"{statistics.median(s) / statistics.median(m):.3f} |")


if __name__ == "__main__":
    main()
