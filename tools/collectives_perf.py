#!/usr/bin/env python3
"""The README's performance tables of the collectives: repeated interleaved runs of every
collective at 2 and 4 ranks, reduced to medians with their spread (min-max over the runs).

    python tools/collectives_perf.py --ranks 2,4 --reps 3 --out results/perf   # run, then print
    python tools/collectives_perf.py --from results/perf                       # print only

Each repetition runs, per rank count and collective, ``distbench <collective>`` three times
(``-b 8 -e 16 -f 2``, ``-b 64K -e 1M -f 16``, ``-b 64M -e 64M``: the sizes 8 B, 64 KiB, 1 MiB
and 64 MiB, every algorithm timed interleaved with the library's call; where 8 B rounds down to
no element, a collective of p blocks at 4 ranks, its smallest size is 16 B: p float32) and once
with
``--nonblocking -b 1M -e 64M -f 64`` (the overlap at 1 MiB and 64 MiB), each into its own run
folder. The tables: per collective, rank count and size, the library's time, the best
hand-written algorithm (highest median ratio to the library over the repetitions), its time and
that ratio; and the overlap % of the library's and of the best hand-written nonblocking call.
A time is a run's p50 (the median over iterations of the slowest rank's time: on a shared
machine a mean carries the scheduler's millisecond stalls), a ratio p50(library) / p50(the
algorithm) within one run (timed interleaved). Every cell is the median over the repetitions,
with [min-max] beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BLOCKING = (["-b", "8", "-e", "16", "-f", "2"], ["-b", "64K", "-e", "1M", "-f", "16"],
            ["-b", "64M", "-e", "64M"])
NONBLOCKING = ["--nonblocking", "-b", "1M", "-e", "64M", "-f", "64"]
SIZES = {8: "8 B", 64 << 10: "64 KiB", 1 << 20: "1 MiB", 64 << 20: "64 MiB"}


def collectives() -> list[str]:
    from distbench.collectives import collective_names

    return collective_names()


def launch(ranks: int, args: list[str], out: Path) -> None:
    """``mpirun -n RANKS distbench ARGS --quiet --output OUT`` (oversubscribed past the
    cores, as the Makefile does)."""
    bindir = Path(sys.executable).parent
    mpirun = str(bindir / "mpirun") if (bindir / "mpirun").exists() else shutil.which("mpirun")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="^ofi")
    flags = ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"] \
        if ranks > (os.cpu_count() or 1) else []
    cmd = [mpirun, "-n", str(ranks), *flags, sys.executable, "-m", "distbench", *args,
           "--quiet", "--output", str(out)]
    print(f"$ mpirun -n {ranks} distbench {' '.join(args)}", flush=True)
    subprocess.run(cmd, check=True, env=env)


def run_all(out: Path, ranks: list[int], reps: int, only: list[str] | None = None) -> None:
    """Every repetition in turn (so that a slow spell of the machine hits one repetition, not
    one collective); ``only``: these collectives (their earlier runs in ``out`` replaced)."""
    for rep in range(reps):
        for p in ranks:
            for name in only or collectives():
                shutil.rmtree(out / f"rep{rep}" / f"p{p}" / name, ignore_errors=True)
                folder = out / f"rep{rep}" / f"p{p}" / name
                for args in BLOCKING:
                    launch(p, [name, *args], folder / "blocking")
                launch(p, [name, *NONBLOCKING], folder / "nonblocking")


def records(out: Path) -> list[dict]:
    recs = []
    for path in sorted(out.rglob("results.json")):
        doc = json.loads(path.read_text())
        recs += [{**r, "_run": str(path.parent)} for r in doc["records"]]
    return recs


def spread(values: list[float], fmt) -> str:
    """``median [min-max]`` (the median alone for one value)."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(values))}-{fmt(max(values))}]"


def us(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def pct(x: float) -> str:
    return f"{x:.0f}"


def ratio(x: float) -> str:
    return f"{x:.2f}"


def performance_table(recs: list[dict]) -> str:
    rows = ["| collective | p | size | library p50 us | best hand-written | its p50 us | "
            "x library |", "|---|---:|---:|---:|---|---:|---:|"]
    blocking = [r for r in recs if not r.get("nonblocking")]
    for name in collectives():
        for p in sorted({r["ranks"] for r in blocking}):
            for nbytes_req, label in SIZES.items():
                mine = pick([r for r in blocking if r["benchmark"] == name
                             and r["ranks"] == p], nbytes_req)
                if not mine:
                    continue
                lib = [r["p50_us"] for r in mine if r["algorithm"] == "native"]
                x = _ratios(mine)
                best = max(x, key=lambda a: statistics.median(x[a]))
                bt = [r["p50_us"] for r in mine if r["algorithm"] == best]
                bv = x[best]
                label = label if mine[0]["bytes"] >= nbytes_req else f"{mine[0]['bytes']} B"
                rows.append(f"| {name} | {p} | {label} | {spread(lib, us)} | {best} | "
                            f"{spread(bt, us)} | {spread(bv, ratio)} |")
    return "\n".join(rows)


def _ratios(mine: list[dict]) -> dict[str, list[float]]:
    """algorithm -> p50(native) / p50(algorithm) of each run (one run folder each)."""
    base = {r["_run"]: r["p50_us"] for r in mine if r["algorithm"] == "native"}
    out: dict[str, list[float]] = {}
    for r in mine:
        if r["algorithm"] != "native" and r["p50_us"] > 0:
            out.setdefault(r["algorithm"], []).append(base[r["_run"]] / r["p50_us"])
    return out


def overlap_table(recs: list[dict]) -> str:
    rows = ["| collective | p | size | library overlap % | best hand-written | its overlap % |",
            "|---|---:|---:|---:|---|---:|"]
    nb = [r for r in recs if r.get("nonblocking")]
    for name in collectives():
        for p in sorted({r["ranks"] for r in nb}):
            for nbytes_req, label in SIZES.items():
                mine = pick([r for r in nb if r["benchmark"] == name and r["ranks"] == p],
                            nbytes_req)
                if not mine:
                    continue
                lib = [r["overlap_pct"] for r in mine if r["algorithm"] == "native"]
                algos = {r["algorithm"] for r in mine} - {"native"}
                med = {a: statistics.median([r["overlap_pct"] for r in mine
                                             if r["algorithm"] == a]) for a in algos}
                best = max(sorted(med), key=med.get)
                bo = [r["overlap_pct"] for r in mine if r["algorithm"] == best]
                who = best if med[best] > 0 else "(every median 0)"
                rows.append(f"| {name} | {p} | {label} | {spread(lib, pct)} | {who} | "
                            f"{spread(bo, pct)} |")
    return "\n".join(rows)


def pick(group: list[dict], nbytes: int) -> list[dict]:
    """The records of ``group`` (one collective, one rank count) at the requested size
    ``nbytes``: counts are rounded down to a multiple of p elements for the block collectives,
    so the recorded bytes may be a little less; 8 B stands for the smallest message that is not
    empty (16 B: 4 float32 at 4 ranks, where 8 B rounds down to nothing)."""
    if nbytes == 8:
        small = sorted({r["bytes"] for r in group if 0 < r["bytes"] <= 16})
        return [r for r in group if small and r["bytes"] == small[0]]
    return [r for r in group if nbytes - 64 * r["ranks"] < r["bytes"] <= nbytes]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="run into this folder, then print the tables")
    ap.add_argument("--from", dest="src", type=Path, help="only print the tables of a folder")
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=None, help="comma-separated collectives to (re)run")
    args = ap.parse_args(argv)
    if args.out is None and args.src is None:
        ap.error("give --out DIR (run) or --from DIR (print)")
    if args.out is not None:
        run_all(args.out, [int(p) for p in args.ranks.split(",")], args.reps,
                args.only.split(",") if args.only else None)
    recs = records(args.src or args.out)
    print(performance_table(recs))
    print()
    print(overlap_table(recs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
