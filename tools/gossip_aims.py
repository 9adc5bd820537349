"""Decentralized SGD's aims, measured: D-PSGD on a ring against synchronous SGD on digits
(softmax) over several seeds at 8 ranks, the steps each needs to the target loss (median over
the seeds and the min-max of the ratio), and the neighbour messages per node and step; with
``--emulate RATE,...``, the same modes (sync through the ring AllReduce, the parameter server,
gossip on a ring) on an emulated cluster of 8 nodes at each link rate: the time to the target
per mode with its interval. Prints markdown tables (the docs' sgd page).

    python tools/gossip_aims.py [--seeds 5] [--ranks 8] [--target-loss 0.3]
    python tools/gossip_aims.py --emulate 100mbit,1gbit --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_btl": "^ofi"}


def sgd(prefix: list[str], args: list[str], out: str) -> list[dict]:
    cmd = [*prefix, "sgd", *args, "--json", "--quiet", "--output", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return [r for r in json.loads(proc.stdout) if r.get("kind") == "summary"]


def local(args, out: str) -> None:
    mpirun = [str(BIN / "mpirun"), "-n", str(args.ranks), "--oversubscribe", "--mca",
              "mpi_yield_when_idle", "1", sys.executable, "-m", "distbench"]
    ratios, steps = [], {"sync": [], "gossip": []}
    per_step = None
    for seed in range(args.seeds):
        sums = sgd(mpirun, ["--mode", "sync,gossip", "--topology", "ring", "--target-loss",
                            str(args.target_loss), "--seed", str(seed)], out)
        by = {s["mode"]: s for s in sums}
        for m in steps:
            steps[m].append(by[m]["step_to_target"])
        ratios.append(by["gossip"]["step_to_target"] / by["sync"]["step_to_target"])
        per_step = by["gossip"]["bytes_per_step_max"] / (4 * by["gossip"].get("params", 650))
    print(f"softmax on digits, {args.ranks} ranks, target loss {args.target_loss}, seeds "
          f"0-{args.seeds - 1}")
    print("| mode | steps to target (median) | min-max |")
    print("| --- | ---: | ---: |")
    for m, v in steps.items():
        print(f"| {m} | {statistics.median(v):g} | {min(v)}-{max(v)} |")
    print(f"\ngossip / sync steps: median {statistics.median(ratios):.2f}, min-max "
          f"{min(ratios):.2f}-{max(ratios):.2f}; neighbour messages per node and step "
          f"(busiest node, in models): {per_step:g}")


def emulated(args, out: str) -> None:
    print(f"\nemulated cluster of {args.ranks} nodes x 1 rank, softmax on digits, target loss "
          f"{args.target_loss}: time to target, s [95 % interval]")
    print("| link | " + " | ".join(("sync (ring AllReduce)", "async (server)", "gossip ring"))
          + " |")
    print("| --- | ---: | ---: | ---: |")
    for rate in args.emulate.split(","):
        prefix = [sys.executable, "-m", "distbench", "emulate", "--nodes", str(args.ranks),
                  "--ranks-per-node", "1", "--link", rate, "--"]
        sums = sgd(prefix, ["--mode", "sync,async,gossip", "--allreduce", "ring",
                            "--topology", "ring", "--target-loss", str(args.target_loss)], out)
        cells = []
        for mode in ("sync", "async", "gossip"):
            s = next(x for x in sums if x["mode"] == mode)
            t, rate_s, ci = s.get("time_to_target_s"), s.get("steps_per_s"), \
                s.get("steps_per_s_ci")
            if t is None:
                cells.append("-")
            elif ci:
                cells.append(f"{t:.3g} [{t * rate_s / ci[1]:.3g}, {t * rate_s / ci[0]:.3g}]")
            else:
                cells.append(f"{t:.3g}")
        print(f"| {rate} | " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--target-loss", type=float, default=0.3)
    ap.add_argument("--emulate", default="", help="link rates of an emulated cluster")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        if args.emulate:
            emulated(args, out)
        else:
            local(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
