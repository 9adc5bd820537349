"""The deployed compressors' claims, measured: ``sgd`` on digits with the MLP over several seeds
for dense SGD, PowerSGD rank 2 with and without error feedback, DGC at 99.9 % final sparsity,
signSGD with majority vote clean and with 1 of 5 workers flipped; the median final test
accuracy over the seeds with its spread (min-max), the bytes sent per rank and the compression
against dense. Prints a markdown table (the docs' compress page).

    python tools/compressor_aims.py [--seeds 5] [--ranks 5] [--epochs 20]
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
CASES = [
    ("dense", ["--compress", "none"]),
    ("powersgd r=2", ["--compress", "powersgd", "--powersgd-rank", "2"]),
    ("powersgd r=2, no error feedback", ["--compress", "powersgd", "--powersgd-rank", "2",
                                         "--no-error-feedback"]),
    ("dgc 99.9 %", ["--compress", "dgc", "--dgc-density", "0.001"]),
    ("signSGD majority vote", ["--compress", "majority"]),
    ("signSGD majority vote, 1 flipped", ["--compress", "majority", "--adversarial", "1"]),
]


def run(ranks: int, seed: int, epochs: float, extra: list[str], out: str) -> dict:
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl": "^ofi"}
    cmd = [str(BIN / "mpirun"), "-n", str(ranks), "--oversubscribe", "--mca",
           "mpi_yield_when_idle", "1", sys.executable, "-m", "distbench", "sgd", "--model",
           "mlp", "--mode", "sync", "--epochs", str(epochs), "--seed", str(seed), "--json",
           "--quiet", "--output", out, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return next(r for r in json.loads(proc.stdout) if r.get("kind") == "summary")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ranks", type=int, default=5)
    ap.add_argument("--epochs", type=float, default=20)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        dense_bytes = None
        for name, extra in CASES:
            runs = [run(args.ranks, s, args.epochs, extra, out) for s in range(args.seeds)]
            acc = [r["final_test_acc"] for r in runs]
            sent = statistics.median(r["bytes_sent_max"] for r in runs)
            dense_bytes = dense_bytes or sent
            rows.append((name, statistics.median(acc), min(acc), max(acc), sent,
                         dense_bytes / sent))
    print(f"sgd --model mlp --mode sync --epochs {args.epochs:g}, {args.ranks} ranks, seeds "
          f"0-{args.seeds - 1}")
    print("| series | test acc (median) | min-max | sent/rank | compression |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, med, lo, hi, sent, ratio in rows:
        print(f"| {name} | {med:.4f} | {lo:.4f}-{hi:.4f} | {sent / 1024:.0f} KiB | "
              f"{ratio:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
