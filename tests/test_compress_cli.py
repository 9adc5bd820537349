"""End to end: `mpirun -n 2 distbench compress` in a subprocess (serial pytest run only)."""

from __future__ import annotations

import json
import math

import pytest
from launch import MPIRUN, error_lines, mpirun, serial

from distbench.algorithms.compression import COMPRESSORS
from distbench.collectives import ALLREDUCE
from distbench.launcher import launched_by_mpirun

pytestmark = [
    pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH"),
    # serial run only: under mpirun every rank would launch its own nested job
    pytest.mark.skipif(launched_by_mpirun(), reason="launches mpirun itself"),
]


def test_compress_all_methods_two_ranks(tmp_path):
    sizes = [64 << 10, 256 << 10]
    proc = mpirun(2, ["compress", "--method", "all", "-b", "64K", "-e", "256K", "-f", "4",
                      "--gradients", "3", "-n", "2", "-w", "0", "--bucket-size", "256",
                      "--output", str(tmp_path), "--json"], timeout=180)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    dense = [f"dense {a}" for a in ("native", "ring") if a in ALLREDUCE]
    by = {(r["bytes"], r["compressor"] or r["method"]): r for r in records}
    assert set(by) == {(s, m) for s in sizes for m in [*dense, *COMPRESSORS]}
    for s in sizes:
        d, k = s // 4, math.ceil(0.01 * s / 4)
        wire = {"none": 4 * d, "fp16": 2 * d, "qsgd": 4 * math.ceil(d / 256) + d,
                "sign": 4 + d // 8, "topk": 8 * k, "randk": 4 * k}
        native = by[(s, "dense native")]
        for m, w in wire.items():
            r = by[(s, m)]
            assert r["wire_bytes"] == w and r["compression_ratio"] == pytest.approx(s / w)
            assert r["link_bytes"] == pytest.approx(w)  # p = 2: 2(p-1)/p w = (p-1) w = w
            assert r["error_feedback"] == (m in ("sign", "topk", "randk"))
            assert r["vs_native"] == pytest.approx(native["t_max_us"] / r["t_max_us"])
            assert len(r["step_error"]) == len(r["drift"]) == 3
            assert all(e >= 0 and math.isfinite(e) for e in r["step_error"] + r["drift"])
            assert min(r[f"{ph}_us"] for ph in ("compress", "exchange", "decompress")) > 0
            assert r["break_even_gbps"] is None or r["break_even_gbps"] >= 0
        assert by[(s, "none")]["mean_step_error"] == 0.0
        assert by[(s, "fp16")]["mean_step_error"] < 1e-3
        assert by[(s, "qsgd")]["mean_step_error"] < 0.2
        assert by[(s, "topk")]["break_even_gbps"] > 0  # 8k bytes << the dense 4d bytes
        assert by[(s, "none")]["break_even_gbps"] == 0.0  # saves nothing
    (run,) = list(tmp_path.iterdir())
    doc = json.loads((run / "results.json").read_text())
    assert doc["benchmark"] == "compress" and doc["records"] == records
    assert doc["config"]["density"] == 0.01 and doc["environment"]["ranks"] == 2
    assert len((run / "results.csv").read_text().splitlines()) == 1 + len(records)
    assert "break-even" in proc.stderr and "topk(0.01)+EF" in proc.stderr  # the table


BAD = [
    (["--density", "0"], "density"),
    (["--density", "1.5"], "density"),
    (["--bits", "3"], "bits"),
    (["--method", "topk,gzip"], "unknown compression method"),
    (["--allreduce", "bogus"], "unknown algorithm"),
    (["-b", "6"], "multiple of float32"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_exits_2_with_one_line(args, message):
    proc = serial(["compress", *args], timeout=60)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0]


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh
                    if line.startswith("MemAvailable:"))


@pytest.mark.skipif(_mem_available() > 90 << 30, reason="this host could run it")
def test_gradient_too_large_for_memory_is_refused_up_front():
    proc = serial(["compress", "-b", "8188M", "-e", "8188M"], timeout=60)  # ~96 GiB per rank
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and "lower --max-bytes" in lines[0]


def test_bad_input_under_mpirun_one_line_from_rank_0():
    proc = mpirun(2, ["compress", "--density", "0"], timeout=60)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error:") and "density" in lines[0]
