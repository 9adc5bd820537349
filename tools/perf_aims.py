#!/usr/bin/env python3
"""Measure every aim of the performance issue on this machine and print one table: each figure
is the median of repeated runs with its [min-max] spread, never a best single run, and every
ratio is taken inside one run between calls measured interleaved (this VM flips between a fast
and a slow state every 10-25 s).

    python tools/perf_aims.py                      # every part, default repetitions
    python tools/perf_aims.py --parts short,startup --reps 5
    python tools/perf_aims.py --json results/perf-aims.json

Parts (``--parts``):

* ``threads``: native ``MPI_Allreduce`` of 8 B at 2 ranks under ``--thread-level single``,
  ``multiple`` without the watchdog (``--timeout 0``) and ``multiple`` with it (the default),
  back to back in rotating order: what the thread level and the watchdog's thread cost.
* ``short``: ``mpirun -n 2 distbench allreduce -b 8 -e 8 --json`` ``--reps`` times: the best
  hand-written algorithm's ``vs_native`` (t_max(native) / t_max(algorithm), interleaved in the
  run); and the harness's overhead per call over a bare mpi4py loop at 8 B
  (:func:`distbench.benchmarks.overhead.measure`, both loops alternating in blocks).
* ``startup``: wall time of ``mpirun -n 2 distbench allreduce -b 8 -e 8 -n 10`` minus that of
  ``mpirun -n 2 python -c 'from mpi4py import MPI'`` (the pair run back to back, ``--reps``
  pairs), of ``distbench --help`` (no mpirun), and what ``import scipy.stats`` adds to
  ``import numpy`` (rank 0 imports it for the bootstrap intervals).
* ``compress``: one process; 25M float32 (a heavy-tailed synthetic gradient), each
  compressor's ``compress`` and ``decompress`` in steady state over 25 repetitions, each
  repetition's time divided by a ``np.copyto`` of the gradient timed right before it.
* ``large``: ``mpirun -n 2 distbench allreduce -b 16M -e 64M --json`` ``--reps`` times: timed
  iterations per algorithm at 32 and 64 MiB, the ring's measured time as a percentage of its
  bound at 64 MiB (``pct_of_bound`` where the run reports it; and this tool's own bound from
  point-to-point and ``np.add`` bandwidth measured with both ranks active, interleaved with the
  ring), and the peak RSS of each rank against 3x the message + 100 MiB and against the
  run's pre-flight memory estimate.

Environment: Open MPI from the venv (``.venv/bin/mpirun``), run as root with the variables the
README gives; ``--mpirun`` and ``--python`` point elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def env() -> dict:
    out = dict(os.environ)
    out.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out.setdefault("OMPI_MCA_btl", "^ofi")
    return out


def spread(values) -> dict:
    """Median and [min, max] of a list of numbers."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def text(s: dict, fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}-{fmt.format(s['max'])}]"


class Runner:
    def __init__(self, args):
        self.mpirun = args.mpirun
        self.python = args.python
        self.distbench = str(Path(self.python).with_name("distbench"))
        self.out = Path(tempfile.mkdtemp(prefix="perf-aims-"))

    def mpi(self, n: int, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
        full = [self.mpirun, "-n", str(n), "--oversubscribe", "--mca", "mpi_yield_when_idle",
                "1", *cmd]
        return subprocess.run(full, capture_output=True, text=True, env=env(), cwd=ROOT,
                              timeout=timeout)

    def records(self, n: int, *args: str) -> list[dict]:
        res = self.mpi(n, self.distbench, *args, "--json", "--output", str(self.out))
        if res.returncode:
            raise RuntimeError(f"distbench {' '.join(args)}: {res.stderr[-2000:]}")
        return json.loads(res.stdout)

    def worker(self, n: int, part: str, *extra: str) -> list[dict]:
        res = self.mpi(n, self.python, __file__, "--worker", part, *extra)
        if res.returncode:
            raise RuntimeError(f"worker {part}: {res.stderr[-2000:]}")
        return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


# ----------------------------------------------------------------------------- parts

def part_short(r: Runner, reps: int) -> dict:
    best, best_names, over, bare = [], [], [], []
    for _ in range(reps):
        recs = r.records(2, "allreduce", "-b", "8", "-e", "8", "--quiet")
        hand = [x for x in recs if x["algorithm"] != "native"]
        top = max(hand, key=lambda x: x["vs_native"])
        best.append(top["vs_native"])
        best_names.append(top["algorithm"])
        o = r.worker(2, "overhead")[0]
        over.append(o["overhead_us"])
        bare.append(o["bare_us"])
    return {"best_vs_native_8B": spread(best), "best_names": best_names,
            "harness_overhead_us": spread(over), "bare_loop_us": spread(bare)}


def _wall(cmd, runner=None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr[-2000:]}")
    return time.perf_counter() - t0


def part_startup(r: Runner, reps: int) -> dict:
    base = [r.mpirun, "-n", "2", "--oversubscribe"]
    bare_cmd = base + [r.python, "-c", "from mpi4py import MPI"]
    run_cmd = base + [r.distbench, "allreduce", "-b", "8", "-e", "8", "-n", "10", "--quiet",
                      "--output", str(r.out)]
    helps, bares, runs, diffs, infos, scipy = [], [], [], [], [], []
    _wall(bare_cmd)  # warm the file cache
    numpy_only = [r.python, "-c", "import numpy"]
    with_scipy = [r.python, "-c", "import numpy; import scipy.stats"]
    for _ in range(max(reps, 5)):
        b = _wall(bare_cmd)
        t = _wall(run_cmd)
        bares.append(b)
        runs.append(t)
        diffs.append(t - b)
        helps.append(_wall([r.distbench, "--help"]))
        infos.append(_wall(base + [r.distbench, "info"]))
        scipy.append(_wall(with_scipy) - _wall(numpy_only))
    return {"bare_mpi4py_s": spread(bares), "one_size_run_s": spread(runs),
            "run_minus_bare_s": spread(diffs), "help_s": spread(helps),
            "info_s": spread(infos), "scipy_stats_import_s": spread(scipy)}


def part_compress(r: Runner, reps: int) -> dict:
    res = subprocess.run([r.python, __file__, "--worker", "compress"], capture_output=True,
                         text=True, env=env(), cwd=ROOT, timeout=1800)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.splitlines()[-1])


def part_large(r: Runner, reps: int) -> dict:
    iters32, iters64, pct_run, pct_tool, rss, est, sweep_s = [], [], [], [], [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        recs = r.records(2, "allreduce", "-b", "16M", "-e", "64M", "--quiet")
        sweep_s.append(time.perf_counter() - t0)
        iters32.append(min(x["iters"] for x in recs if x["bytes"] == 32 * MIB))
        iters64.append(min(x["iters"] for x in recs if x["bytes"] == 64 * MIB))
        ring = [x for x in recs if x["bytes"] == 64 * MIB and x["algorithm"] == "ring"][0]
        if ring.get("pct_of_bound") is not None:
            pct_run.append(ring["pct_of_bound"])
        pct_tool.append(r.worker(2, "bound")[0]["pct_of_bound"])
        m = r.worker(2, "rss", r.distbench, "allreduce", "-b", "64M", "-e", "64M", "--quiet",
                     "--output", str(r.out))
        rss.append(max(x["peak_rss_bytes"] for x in m) / MIB)
        est.append(max(x["estimate_bytes"] for x in m) / MIB)
    out = {"min_iters_32MiB": spread(iters32), "min_iters_64MiB": spread(iters64),
           "sweep_16_64MiB_s": spread(sweep_s),
           "ring_pct_of_bound_tool": spread(pct_tool),
           "peak_rss_MiB": spread(rss), "rss_limit_MiB": 3 * 64 + 100,
           "estimate_MiB": spread(est),
           "estimate_error_pct": spread([100 * (e - m) / m for e, m in zip(est, rss, strict=True)])}
    if pct_run:
        out["ring_pct_of_bound_run"] = spread(pct_run)
    return out


THREAD_CONFIGS = {"single": ["--thread-level", "single"],
                  "multiple, no watchdog": ["--thread-level", "multiple", "--timeout", "0"],
                  "multiple + watchdog (default)": ["--thread-level", "multiple"]}


def part_threads(r: Runner, reps: int) -> dict:
    """What the MPI thread level and the watchdog's thread cost a short message: native 8 B
    (20000 iterations) under each of :data:`THREAD_CONFIGS`, the three run back to back
    ``max(reps, 5)`` times (rotating the order); p50 per run, and each run's difference to the
    single-level run of its round."""
    p50 = {k: [] for k in THREAD_CONFIGS}
    names = list(THREAD_CONFIGS)
    for i in range(max(reps, 5)):
        order = names[i % 3:] + names[: i % 3]
        for k in order:
            recs = r.records(2, "allreduce", "-b", "8", "-e", "8", "--algo", "native", "-n",
                             "20000", "-w", "1000", "--quiet", *THREAD_CONFIGS[k])
            p50[k].append(recs[0]["p50_us"])
    out = {k: spread(v) for k, v in p50.items()}
    for k in names[1:]:
        out[f"{k} - single"] = spread([a - b for a, b in zip(p50[k], p50["single"],
                                                               strict=True)])
    return out


PARTS = {"threads": part_threads, "short": part_short, "startup": part_startup,
         "compress": part_compress, "large": part_large}


# ----------------------------------------------------------------------------- workers

def worker_overhead() -> None:
    from distbench.benchmarks.overhead import measure
    from distbench.runtime import world

    comm = world()
    out = measure(comm)
    if comm.Get_rank() == 0:
        print(json.dumps(out))


def worker_bound() -> None:
    """The ring at 64 MiB, n ranks, against 2(p-1)/p n/B_p2p + (p-1)/p n/B_add, with B_p2p
    (Sendrecv with the ring neighbours) and B_add (np.add) measured with every rank active,
    all three interleaved in 10 rounds; median over the rounds of each."""
    import numpy as np

    from distbench.collectives.allreduce import ALLREDUCE
    from distbench.runtime import mpi, world

    comm = world()
    MPI = mpi()
    p, rank = comm.Get_size(), comm.Get_rank()
    n = 64 * MIB
    a = np.ones(n // 4, dtype=np.float32)
    b = np.ones(n // 4, dtype=np.float32)
    c = np.empty_like(a)
    ring = ALLREDUCE["ring"]
    right, left = (rank + 1) % p, (rank - 1) % p

    def timed(fn):
        comm.Barrier()
        t0 = MPI.Wtime()
        fn()
        return comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX)

    ring(comm, a, c)
    t_p2p, t_add, t_ring = [], [], []
    for _ in range(10):
        t_p2p.append(timed(lambda: comm.Sendrecv(a, right, 1, c, left, 1)))
        t_add.append(timed(lambda: np.add(a, b, out=c)))
        t_ring.append(min(timed(lambda: ring(comm, a, c)) for _ in range(2)))
    bp2p, badd = n / statistics.median(t_p2p), n / statistics.median(t_add)
    bound = 2 * (p - 1) / p * n / bp2p + (p - 1) / p * n / badd
    t = statistics.median(t_ring)
    if rank == 0:
        print(json.dumps({"p2p_gbps": bp2p / 1e9, "add_gbps": badd / 1e9, "bound_us": bound * 1e6,
                          "ring_us": t * 1e6, "pct_of_bound": 100 * bound / t}))


def worker_rss(cmd: list[str]) -> None:
    """Run ``cmd`` (this rank's part of an MPI job: the launcher's environment is inherited)
    and print its peak RSS and the pre-flight memory estimate it recorded."""
    import resource

    res = subprocess.run(cmd, capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    estimate = None
    folder = Path(cmd[cmd.index("--output") + 1])
    runs = sorted(folder.glob("*/results.json"), key=lambda f: f.stat().st_mtime)
    if runs:
        doc = json.loads(runs[-1].read_text())
        estimate = doc.get("environment", {}).get("memory_estimate_bytes")
    if estimate is None:  # before the estimate was recorded: validate_mpi's formula
        nbytes = 64 * MIB
        estimate = 3 * nbytes + min(nbytes, (1 << 18) * 4) + 64 * MIB
    print(json.dumps({"peak_rss_bytes": peak, "estimate_bytes": estimate,
                      "rc": res.returncode}))


def worker_compress(reps: int = 25) -> None:
    import numpy as np

    from distbench.algorithms.compression import make_compressor
    from distbench.algorithms.compression.gradient_sequence import GradientSequence

    d = 25 * 1000 * 1000
    x = np.empty(d, dtype=np.float32)
    GradientSequence(np, d, 0, 0).next(x)
    dst = np.empty_like(x)
    out = np.empty_like(x)
    methods = {"topk(1%)": ("topk", {"density": 0.01}), "qsgd(8b)": ("qsgd", {"bits": 8}),
               "sign": ("sign", {}), "fp16": ("fp16", {})}
    comps = {k: make_compressor(name, **kw) for k, (name, kw) in methods.items()}
    ratios = {k: {"compress": [], "decompress": []} for k in comps}
    pc = time.perf_counter
    for c in comps.values():  # warm: workspaces, pages
        c.decompress(c.compress(x), x.shape, out=out)
    np.copyto(dst, x)
    for _ in range(reps):
        for k, c in comps.items():
            t0 = pc()
            np.copyto(dst, x)
            t_copy = pc() - t0
            t0 = pc()
            payload = c.compress(x)
            t_c = pc() - t0
            t0 = pc()
            np.copyto(dst, x)
            t_copy2 = pc() - t0
            t0 = pc()
            c.decompress(payload, x.shape, out=out)
            t_d = pc() - t0
            ratios[k]["compress"].append(t_c / t_copy)
            ratios[k]["decompress"].append(t_d / t_copy2)
    print(json.dumps({k: {ph: spread(v) for ph, v in r.items()} | {"copy_gbps": None}
                      for k, r in ratios.items()}))


# ----------------------------------------------------------------------------- main

def table(results: dict) -> str:
    lines = ["| aim | figure | median [min-max] |", "|---|---|---|"]
    s = results.get("short")
    if s:
        names = ", ".join(sorted(set(s["best_names"])))
        lines.append(f"| 8 B n=2 best hand-written vs native (>= 0.8) | {names} | "
                     f"{text(s['best_vs_native_8B'])} |")
        lines.append(f"| harness overhead over bare mpi4py loop (<= 0.1 us) | us per call | "
                     f"{text(s['harness_overhead_us'])} (bare {text(s['bare_loop_us'])}) |")
    s = results.get("startup")
    if s:
        lines.append(f"| 1-size run minus bare mpi4py import under mpirun (<= 0.08 s) | s | "
                     f"{text(s['run_minus_bare_s'])} (run {text(s['one_size_run_s'])}, bare "
                     f"{text(s['bare_mpi4py_s'])}) |")
        lines.append(f"| distbench --help (< 0.12 s) | s | {text(s['help_s'])} |")
        if "scipy_stats_import_s" in s:
            lines.append(f"| of which import scipy.stats (rank 0, for the intervals) | s | "
                         f"{text(s['scipy_stats_import_s'])} |")
        lines.append(f"| mpirun -n 2 distbench info | s | {text(s['info_s'])} |")
    s = results.get("threads")
    if s:
        for k in THREAD_CONFIGS:
            lines.append(f"| native 8 B n=2 p50, {k} | us | {text(s[k])} |")
        for k in list(THREAD_CONFIGS)[1:]:
            lines.append(f"| {k} minus single (same round) | us | {text(s[k + ' - single'])} |")
    s = results.get("compress")
    if s:
        aims = {"topk(1%)": 2.5, "qsgd(8b)": 3.0, "sign": 1.8, "fp16": None}
        for k, v in s.items():
            aim = f" (<= {aims[k]})" if aims.get(k) else ""
            lines.append(f"| {k} compress / copy{aim} | x copy | {text(v['compress'])} |")
            lines.append(f"| {k} decompress / copy (<= 1.5) | x copy | {text(v['decompress'])} |")
    s = results.get("large")
    if s:
        lines.append(f"| timed iterations at 32 MiB (>= 20) | fewest over algorithms | "
                     f"{text(s['min_iters_32MiB'])} |")
        lines.append(f"| timed iterations at 64 MiB (>= 20) | fewest over algorithms | "
                     f"{text(s['min_iters_64MiB'])} |")
        lines.append(f"| sweep 16-64 MiB, 2 ranks | s | {text(s['sweep_16_64MiB_s'])} |")
        if "ring_pct_of_bound_run" in s:
            lines.append(f"| ring 64 MiB n=2, % of bound, shown by the run (>= 90) | % | "
                         f"{text(s['ring_pct_of_bound_run'])} |")
        lines.append(f"| ring 64 MiB n=2, % of bound, this tool's (>= 90) | % | "
                     f"{text(s['ring_pct_of_bound_tool'])} |")
        lines.append(f"| peak RSS per rank at 64 MiB (<= {s['rss_limit_MiB']} MiB) | MiB | "
                     f"{text(s['peak_rss_MiB'])} |")
        lines.append(f"| pre-flight estimate - peak (within 5 %) | % of peak | "
                     f"{text(s['estimate_error_pct'])} (estimate {text(s['estimate_MiB'])} MiB) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="short,startup,compress,large")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--mpirun", default=str(ROOT / ".venv/bin/mpirun"))
    ap.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        {"overhead": worker_overhead, "bound": worker_bound, "compress": worker_compress,
         "rss": lambda: worker_rss(rest)}[args.worker]()
        return
    runner = Runner(args)
    results = {}
    for part in args.parts.split(","):
        print(f"== {part}", file=sys.stderr, flush=True)
        results[part] = PARTS[part](runner, args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
