"""``distbench parallel`` end to end (serial tests that launch mpirun): records and results,
bad layouts, ``--memory-only``, and the run through report, compare and ``model --step``."""

from __future__ import annotations

import json

import pytest
from launch import mpirun, serial, usage_error_line

from distbench.algorithms.parallel.memory import model_state_bytes

SMALL = ["--layers", "4", "--hidden", "64", "--heads", "4", "--seq", "16", "--vocab", "97",
         "--micro-batches", "4", "--iters", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One 4-rank sweep of layouts, ZeRO stages and bucket caps on the ring algorithms."""
    out = tmp_path_factory.mktemp("parallel")
    proc = mpirun(4, ["parallel", *SMALL, "--layouts", "4x1x1,2x2x1,1x2x2,1x1x4", "--zero",
                      "0,1,3", "--bucket-mb", "0.01,25", "--dp-algo", "ring", "--tp-algo",
                      "ring", "--output", str(out), "--json", "--quiet"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = out.iterdir()
    return folder, json.loads(proc.stdout)


def test_records_carry_the_configuration_and_every_figure(run_dir):
    folder, printed = run_dir
    doc = json.loads((folder / "results.json").read_text())
    assert doc["complete"] is True and doc["benchmark"] == "parallel"
    recs = doc["records"]
    assert recs == printed
    assert len(recs) == 4 * 3 * 2
    assert sorted({(r["layout"], r["zero"], r["bucket_mb"]) for r in recs}) == sorted(
        (lay, z, b) for lay in ("4x1x1", "2x2x1", "1x2x2", "1x1x4") for z in (0, 1, 3)
        for b in (0.01, 25.0))
    for r in recs:
        assert r["dp_algo"] == "ring" and r["tp_algo"] == "ring" and r["overlap"] is True
        assert r["step_s_ci"][0] <= r["step_s"] <= r["step_s_ci"][1]
        assert 0 < r["compute_s"] <= r["step_s"] and r["exposed_s"] >= 0
        assert 0 <= r["comm_s"] <= r["step_s"], "communication time: a union, within the step"
        assert r["efficiency"] == pytest.approx(r["compute_s"] / r["step_s"])
        assert r["memory_bytes"] > 0 and r["pp_wrong"] == 0
        for cls in ("dp", "tp", "pp"):
            assert r[f"bytes_{cls}"] == pytest.approx(r[f"bytes_{cls}_formula"], rel=1e-12)
        if r["pp"] > 1:
            P = r["pp"]  # (P-1)/(m+P-1) at m = 4
            assert r["bubble_formula"] == pytest.approx((P - 1) / (4 + P - 1))
            assert 0 < r["bubble"] < 1
    by = {(r["layout"], r["zero"], r["bucket_mb"]): r for r in recs}
    # the data-parallel volume: ZeRO 1 = ZeRO 0; ZeRO 3 reduce-scatters every micro-batch as
    # DeepSpeed does: 3m/2 = 6x at m = 4
    z0, z1, z3 = (by["4x1x1", z, 25.0]["bytes_dp"] for z in (0, 1, 3))
    assert z1 == z0 and z3 == pytest.approx(6 * z0)
    assert by["4x1x1", 3, 25.0]["memory_bytes"] < by["4x1x1", 0, 25.0]["memory_bytes"]


def test_native_collectives_are_not_counted_as_our_bytes(tmp_path):
    proc = mpirun(2, ["parallel", *SMALL, "--layouts", "2x1x1,1x2x1", "--output", str(tmp_path),
                      "--json", "--quiet"], timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in json.loads(proc.stdout):
        assert r["bytes_dp"] is None and r["bytes_tp"] is None  # the library's, not ours
        assert r["bytes_dp_formula"] > 0 or r["dp"] == 1


@pytest.mark.parametrize("args, needle", [
    (["--dp", "3"], "needs D x T x P = 3 ranks, the job has 4"),
    (["--layouts", "1x4x1", "--heads", "6", "--hidden", "96"], "does not divide the 6 attention"),
    (["--layouts", "1x4x1", "--ranks-per-node", "2"], "a tensor-parallel group must stay"),
    (["--layouts", "2x2x1", "--ranks-per-node", "3"], "--ranks-per-node 3 does not divide"),
    (["--layouts", "1x1x4", "--micro-batches", "2"], "1F1B needs at least as many"),
    (["--layouts", "1x1x4", "--layers", "6"], "does not divide the 6 layers"),
    (["--layouts", "2x2"], "a layout is DxTxP"),
    (["--zero", "0,4"], "--zero takes stages"),
    (["--bucket-mb", "0"], "--bucket-mb': takes finite numbers > 0"),
    (["--dp-algo", "nope"], "nope"),
    (["--layouts", "4x1x1,2x2x1", "--global-batch", "6"], "--global-batch 6 is not a multiple"),
])
def test_bad_layouts_one_line_exit_2(args, needle, tmp_path):
    proc = mpirun(4, ["parallel", *SMALL, *args, "--output", str(tmp_path)], timeout=120)
    line = usage_error_line(proc)
    assert needle in line, line
    assert not list(tmp_path.iterdir()), "nothing written for bad input"


def test_global_batch_sweep_overlap_and_rounds(tmp_path):
    """--global-batch 8: m = 8 / D per layout, the same 8 sequences per step; --sweep-overlap:
    each configuration with overlap on and off; --rounds 2: the list twice, round-robin, each
    record pooling 2 x --steps steps; overlap never adds bytes."""
    proc = mpirun(4, ["parallel", *SMALL, "--layouts", "4x1x1,2x2x1,1x1x4", "--global-batch",
                      "8", "--sweep-overlap", "--rounds", "2", "--dp-algo", "ring",
                      "--output", str(tmp_path), "--json", "--quiet"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = json.loads(proc.stdout)
    assert sorted((r["layout"], r["overlap"]) for r in recs) == sorted(
        (lay, o) for lay in ("4x1x1", "2x2x1", "1x1x4") for o in (True, False))
    m = {"4x1x1": 2, "2x2x1": 4, "1x1x4": 8}
    for r in recs:
        assert r["global_batch"] == 8 and r["micro_batches"] == m[r["layout"]]
        assert r["steps"] == 2 * 2
        assert r["bubble_formula"] == pytest.approx((r["pp"] - 1) / (m[r["layout"]]
                                                                    + r["pp"] - 1))
        for cls in ("dp", "pp"):
            if r[f"bytes_{cls}"] is not None:
                assert r[f"bytes_{cls}"] == pytest.approx(r[f"bytes_{cls}_formula"])
    by = {(r["layout"], r["overlap"]): r for r in recs}
    for lay in m:
        assert by[lay, True]["bytes_dp_formula"] == by[lay, False]["bytes_dp_formula"]


def test_memory_only_is_the_zero_papers_arithmetic():
    """7.5e9 parameters over 64 data-parallel ranks (ZeRO, Figure 1): model states of 120,
    31.4, 16.6 and 1.88 GB per rank, no MPI needed."""
    proc = serial(["parallel", "--memory-only", "--params", "7.5e9", "--layers", "32", "--dp",
                   "64", "--zero", "0,1,2,3", "--json"])
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    assert [r["zero"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        states = (r["memory_params_bytes"] + r["memory_grads_bytes"]
                  + r["memory_optimizer_bytes"])
        assert states == pytest.approx(model_state_bytes(7.5e9, r["zero"], 64), rel=1e-9)
        assert r["memory_bytes"] == pytest.approx(states + r["memory_activations_bytes"])
    gb = [round(r["memory_params_bytes"] + r["memory_grads_bytes"]
                + r["memory_optimizer_bytes"]) / 1e9 for r in recs]
    assert gb == pytest.approx([120, 31.4, 16.6, 1.875], rel=3e-3)
    bad = serial(["parallel", "--memory-only", "--layouts", "4x2x1", "--ranks", "4"])
    assert "needs D x T x P = 8 ranks" in usage_error_line(bad)


def test_report_compare_and_model_check_of_a_run(run_dir, tmp_path):
    folder, _ = run_dir
    rep = serial(["report", str(folder), "--out", str(tmp_path)])
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "REPORT.md").read_text()
    assert "Training step, 4 ranks" in text and "parallel_p4.png" in text
    assert (tmp_path / "parallel_p4.png").stat().st_size > 10_000
    cmp = serial(["compare", str(folder), str(folder)])
    assert cmp.returncode == 0, cmp.stderr
    assert "Matched 24 rows" in cmp.stdout.replace("\n", " ")
    chk = serial(["model", "--step", "--alpha", "10", "--beta-gbps", "2", "--measured",
                  str(folder), "--json"])
    assert chk.returncode == 0, chk.stderr
    rows = json.loads(chk.stdout)
    assert len(rows) == 24
    assert all(r["predicted_s"] > 0 and r["measured_s"] > 0 for r in rows)
