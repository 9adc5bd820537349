"""``distbench report``: PNG plots and REPORT.md from runs recorded by the real benchmarks
(tests/data), for single runs, several rank counts (the model check) and a suite folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from launch import mpi_env
from PIL import Image

from distbench.analysis.report import write_report
from distbench.analysis.tables import fmt_env, md_table
from distbench.cli import main
from distbench.collectives import collective_names
from distbench.results import find_docs

DATA = Path(__file__).parent / "data"


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["report", *map(str, args)])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _check_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 350
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    # a drawn plot: lines in several colours, not a blank canvas
    assert len(np.unique(pixels, axis=0)) > 50


def _embedded(md: str) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md))


def test_report_of_one_run(tmp_path, capsys):
    code, out, _ = _cli(capsys, DATA / "model" / "p2", "--out", tmp_path)
    assert code == 0 and "REPORT.md" in out
    md = (tmp_path / "REPORT.md").read_text()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["allreduce_busbw_p2.png", "allreduce_latency_p2.png"]
    assert _embedded(md) == set(pngs)
    for p in pngs:
        _check_png(tmp_path / p)
    doc = find_docs(DATA / "model" / "p2")[0][1]
    env = doc["environment"]
    assert "## Environment" in md and fmt_env(env["mpi_library"]) in md and env["numpy"] in md
    assert "\x00" not in md
    # one pivot row per size, one column per algorithm; the Hockney fit per algorithm
    algos = list(dict.fromkeys(r["algorithm"] for r in doc["records"]))
    assert "| size | " + " | ".join(algos) + " |" in md
    assert "Alpha-beta (Hockney) fit" in md
    for a in algos:
        assert re.search(rf"^\| {a} \| 2 \| float32 \| [0-9.e+-]+ \|", md, re.M), a
    assert "Alpha-beta model" not in md          # one rank count: nothing to check against


def test_report_with_several_rank_counts_checks_the_model(tmp_path):
    src = tmp_path / "runs"
    shutil.copytree(DATA / "model", src)
    report, pngs = write_report(src)              # default: beside the results
    assert report == src / "REPORT.md"
    names = {p.name for p in pngs}
    assert names == {f"allreduce_{k}_p{p}.png" for k in ("busbw", "latency")
                     for p in (2, 3, 4)} | {"model_check_p4.png"}
    md = report.read_text()
    assert _embedded(md) == names
    _check_png(src / "model_check_p4.png")
    assert "## Alpha-beta model: fitted on p = 2, 3, checked at p = 4" in md
    assert "oversubscribed" in md                 # 4 ranks on this 2-CPU machine
    # predicted vs measured per size: "measured / predicted (error %)" cells
    assert len(re.findall(r"\d / [0-9.e+]+ \([+-]\d+ %\)", md)) == 42


def test_md_table_escapes_pipes():
    text = md_table([("a", "left"), ("b", "right")], [["x|y", "1"]])
    assert text.splitlines() == ["| a | b |", "| :--- | ---: |", "| x\\|y | 1 |"]


def test_report_of_nothing_is_a_usage_error(tmp_path, capsys):
    code, _, err = _cli(capsys, tmp_path)
    assert code == 2 and err.startswith("Error: no distbench results") and err.count("\n") == 1


def test_report_of_a_suite(tmp_path):
    """A suite folder written by `make bench-run` (tests/data/suite): every benchmark's plots."""
    src = tmp_path / "suite"
    shutil.copytree(DATA / "suite", src)
    report, pngs = write_report(src)
    md = report.read_text()
    found = find_docs(src)
    benches = sorted(d["benchmark"] for _, d in found)
    assert benches == ["allreduce", "compress", "fedavg", "sgd"]
    names = {p.name for p in pngs}
    assert names == {"allreduce_busbw_p2.png", "allreduce_latency_p2.png", "compress_p2.png",
                     "sgd_convergence_p2.png", "fedavg_convergence_p2.png"}
    assert _embedded(md) == names
    for p in pngs:
        _check_png(p)
    docs = {d["benchmark"]: d for _, d in found}
    methods = [r["method"] for r in docs["compress"]["records"]]
    assert "## Gradient compression, 2 ranks" in md
    for m in set(methods):
        assert md.count(f"| {m} |") == methods.count(m)
    modes = [r["mode"] for r in docs["sgd"]["records"] if r.get("kind") == "summary"]
    assert "## SGD:" in md and modes
    for m in modes:
        assert re.search(rf"^\| {m}( H=\d+)? \| \d+ \|", md, re.M), m
    fed = [r for r in docs["fedavg"]["records"] if r.get("kind") == "summary"]
    assert "## Federated learning: digits, softmax, 20 clients (dirichlet)" in md and fed
    assert "Partition: 20 clients" in md
    for r in fed:
        assert re.search(rf"^\| {r['series']} \| {r['rounds']} \|", md, re.M), r["series"]


@pytest.mark.slow
def test_make_bench_end_to_end(tmp_path):
    """`make bench-run` (what `make bench` runs after installing) with tiny sweeps: every
    benchmark into one suite folder, then the report."""
    root = Path(__file__).resolve().parent.parent
    suite = tmp_path / "suite"
    cmd = ["make", "--no-print-directory", "-C", str(root), "bench-run", "NP=2", "MODEL_NP=",
           f"VENV={Path(sys.executable).parent.parent}", f"SUITE={suite}",
           "ALLREDUCE_ARGS=-b 8 -e 64 -f 8 -n 3 -w 1 --algo ring",
           "COLLECTIVE_ARGS=-b 64 -e 512 -f 8 -n 3 -w 1 --algo naive",
           "COMPRESS_ARGS=-b 4K -e 4K --gradients 2 -n 3 --method none,topk",
           "SGD_ARGS=--steps 6 --eval-every 3 --mode sync,local",
           "FEDAVG_ARGS=--rounds 3 --clients 8 --fraction 0.5 --algorithm fedsgd,fedavg",
           "PARALLEL_ARGS=--layers 2 --hidden 32 --heads 2 --seq 8 --vocab 50 --layouts all "
           "--iters 1",
           "TUNE_ARGS=--collective allreduce -b 8 -e 64 -f 8 -n 3 --no-hand-written"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=mpi_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    benches = sorted(d["benchmark"] for _, d in find_docs(suite))
    collectives = collective_names()
    assert benches == sorted([*collectives, "compress", "fedavg", "parallel", "sgd",
                              "tune"])
    assert all((suite / f"{c}.json").exists() for c in collectives)
    md = (suite / "REPORT.md").read_text()
    pngs = {p.name for p in suite.glob("*.png")}
    assert pngs == {f"{c.replace('-', '_')}_{kind}_p2.png" for c in collectives
                    for kind in ("busbw", "latency")} | {
        "compress_p2.png", "sgd_convergence_p2.png", "fedavg_convergence_p2.png",
        "parallel_p2.png"}
    assert _embedded(md) == pngs
