"""End to end: `mpirun ... distbench <collective>` for every collective (serial pytest run only):
records, sizes and bus factors, the nonblocking overlap fields, bad input, and the offline
commands (info, report, compare, model) over every collective."""

from __future__ import annotations

import json

import pytest
from launch import MPIRUN, mpirun, usage_error_line

from distbench.analysis.compare import match
from distbench.analysis.report import write_report
from distbench.cli import main
from distbench.collectives import collective_names, get_collective
from distbench.results import find_docs

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH")

P = 3
SIZES = [64, 4096, 262144]  # -b 64 -e 256K -f 64


def _extra(decl) -> list[str]:
    """Each collective's own options, so every kind is exercised once."""
    return ((["--op", "max"] if decl.reduction else []) + (["--root", "2"] if decl.rooted else [])
            + (["--in-place"] if decl.in_place and decl.name != "allreduce" else []))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One sweep of every collective at 3 ranks (int32; bfloat16 for allgather), in one suite
    folder; name -> (its records, the process)."""
    folder = tmp_path_factory.mktemp("suite")
    out = {}
    for name in collective_names():
        decl = get_collective(name)
        dtype = "bfloat16" if name == "allgather" else "int32"
        proc = mpirun(P, [name, "-b", "64", "-e", "256K", "-f", "64", "-n", "3", "-w", "1",
                          "--dtype", dtype, "--run-dir", str(folder), "--json", *_extra(decl)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = (json.loads(proc.stdout), proc)
    return folder, out


@pytest.mark.parametrize("name", collective_names())
def test_every_collective_sweeps_every_algorithm(suite, name):
    _, runs = suite
    records, proc = runs[name]
    decl = get_collective(name)
    itemsize = 2 if name == "allgather" else 4
    assert {(r["algorithm"], r["bytes"]) for r in records} == {
        (a, decl.count(s, itemsize, P) * itemsize) for a in decl.algorithms() for s in SIZES}
    for r in records:
        assert r["wrong"] == 0 and r["ranks"] == P and r["count"] % decl.count_multiple(P) == 0
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * decl.bus_factor(P))
        assert r["op"] == ("max" if decl.reduction else None)
        assert r["root"] == (2 if decl.rooted else None)
        assert r["in_place"] == (decl.in_place and name != "allreduce")
        # the bound beside every bandwidth: the algorithm's cost formula with the rates the
        # run measured on its own buffers (every algorithm here declares one)
        assert r["bound_us"] > 0 and r["alpha_us"] > 0
        assert r["pct_of_bound"] == pytest.approx(100 * r["bound_us"] / r["p50_us"])
        assert r["p2p_gbps"] is None or r["p2p_gbps"] > 0
        assert r["reduce_gbps"] is None or r["reduce_gbps"] > 0
    assert "% bound" in proc.stderr
    assert all(a in proc.stderr for a in decl.algorithms())  # the table, on stderr
    assert decl.size_meaning.split(" (")[0] in " ".join(proc.stderr.split())
    if decl.count_multiple(P) > 1:
        assert f"rounded down to a multiple of {decl.count_multiple(P)}" in " ".join(
            proc.stderr.split())


def test_bfloat16_says_how_the_library_reduces(suite):
    _, runs = suite
    caption = " ".join(runs["allgather"][1].stderr.split())
    assert "bfloat16 has no MPI datatype here" in caption


@pytest.mark.parametrize("ratio", ["1", "0"])
def test_nonblocking_overlap_fields(tmp_path, ratio):
    """0 <= overlap_pct <= 100 with the three times recorded; a compute-free run reports the
    pure time as the total, no compute and no overlap."""
    proc = mpirun(2, ["reduce-scatter", "--nonblocking", "--compute-ratio", ratio, "-b", "64K",
                      "-e", "1M", "-f", "16", "-n", "4", "-w", "1", "--output", str(tmp_path),
                      "--json"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(proc.stdout)
    assert {r["algorithm"] for r in records} == set(get_collective("reduce-scatter").algorithms())
    for r in records:
        assert r["nonblocking"] is True and r["wrong"] == 0
        assert 0 <= r["overlap_pct"] <= 100
        assert r["t_pure_us"] == pytest.approx(r["p50_us"])
        if ratio == "0":
            assert r["t_total_us"] == r["t_pure_us"] and r["t_compute_us"] == 0
            assert r["overlap_pct"] == 0
        else:
            assert r["t_compute_us"] > 0 and r["t_total_us"] > 0 and r["compute_units"] >= 1
    assert "overlap" in proc.stderr  # the table has the overlap columns


BAD = [
    (["scatter"], "unknown command 'scatter'"),
    (["bcast", "--root", "3", "-e", "64"], "--root 3 is outside the communicator"),
    (["reduce", "--root", "-1", "-e", "64"], "'--root': '-1' is not >= 0"),
    (["allreduce", "--op", "bxor", "--dtype", "float32"], "not defined for float32"),
    (["reduce-scatter", "--op", "band", "--dtype", "bfloat16"], "not defined for bfloat16"),
    (["allgather", "-b", "6", "--dtype", "float32"], "not a multiple of float32's 4 B"),
    (["alltoall", "-b", "12", "-e", "64", "--dtype", "float64"], "not a multiple"),
    (["allgather", "--op", "max"], "No such option '--op'"),
    (["bcast", "--in-place"], "No such option '--in-place'"),
    (["reduce", "--dtype", "bfloat16", "--device", "gpu"], "host-only"),
    (["bcast", "--segment-bytes", "0"], "--segment-bytes must be >= 1"),
    (["alltoall", "--nonblocking", "--progress-us", "0"], "'--progress-us': '0' is not in (0,"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(args, needle):
    assert needle in usage_error_line(mpirun(3, args, timeout=60))


def test_info_lists_every_collective_and_dtype():
    proc = mpirun(1, ["info"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in collective_names():
        decl = get_collective(name)
        assert f"distbench {name}" in proc.stdout and decl.nonblocking_call in proc.stdout
    assert "--dtype bfloat16" in proc.stdout and "user-defined op" in proc.stdout


def test_report_compare_and_model_cover_every_collective(suite, tmp_path, capsys):
    folder, _ = suite
    report, pngs = write_report(folder, tmp_path)
    md = report.read_text()
    for name in collective_names():
        assert f"## {get_collective(name).title}, 3 ranks" in md
        assert tmp_path / f"{name.replace('-', '_')}_busbw_p3.png" in pngs
    matches, only_a, only_b = match(find_docs(folder), find_docs(folder))
    assert {m.key[0] for m in matches} == set(collective_names()) and only_a == only_b == 0
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(folder), str(folder), "--fail-on-regression", "5%"])
    assert exit_.value.code == 0
    assert "op=max" in capsys.readouterr().out
    for name in collective_names():
        with pytest.raises(SystemExit) as exit_:
            main(["model", "--collective", name, "--ranks", "4,1024", "--json"])
        assert exit_.value.code == 0
        out = json.loads(capsys.readouterr().out)
        assert {r["algorithm"] for r in out["predictions"]} == set(
            get_collective(name).algorithms())
        with pytest.raises(SystemExit) as exit_:
            main(["model", "--collective", name, "--from", str(folder), "--json"])
        assert exit_.value.code == 0
        assert set(json.loads(capsys.readouterr().out)["fits"]) <= set(
            get_collective(name).algorithms())
    assert {d["benchmark"] for _, d in find_docs(folder)} == set(collective_names())
