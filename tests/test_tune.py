"""distbench tune: the decision switches only where the intervals separate and merges ranges;
the Open MPI rules file parses back to it, the MPICH JSON parses; under mpirun at 2 and 3 ranks
tune writes its files, every forced algorithm is exact, Open MPI loads the rules file without a
warning, and --algo auto runs what the table names; bad input is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from launch import MPIRUN, mpi_env, mpirun, serial, usage_error_line

from distbench.tuning import (
    Range,
    choose,
    decide,
    held_out_penalty,
    lookup,
    mpich_json,
    ompi_rules,
    parse_ompi_rules,
)


def _rec(size, cand, x, lo, hi, coll="allreduce", ranks=2, t=10.0):
    return {"collective": coll, "ranks": ranks, "bytes": size, "candidate": cand,
            "x_default": x, "x_default_ci": [lo, hi], "t_max_us": t / x, "kind": "candidate"}


RECORDS = [
    _rec(8, "default", 1, 1, 1), _rec(8, "lib:ring", 1.5, 0.9, 2.0),  # overlaps: default
    _rec(64, "default", 1, 1, 1), _rec(64, "lib:ring", 1.3, 1.1, 1.5),
    _rec(64, "ring", 1.4, 1.05, 1.9),                                  # fastest, separated
    _rec(512, "default", 1, 1, 1), _rec(512, "ring", 1.2, 1.1, 1.3),
    _rec(4096, "default", 1, 1, 1), _rec(4096, "lib:ring", 1.2, 1.1, 1.3),
    _rec(32768, "default", 1, 1, 1), _rec(32768, "lib:ring", 1.6, 1.2, 2.0),
]


def test_the_decision_switches_only_where_the_intervals_separate_and_merges():
    assert choose({"default": (1, 1, 1), "a": (1.5, 0.95, 2.0)}) == "default"
    assert choose({"default": (1, 1, 1), "a": (1.2, 1.01, 1.4), "b": (1.3, 1.1, 1.5)}) == "b"
    ranges = decide(RECORDS, {"lib:ring": 4})
    assert [(r.lo, r.hi, r.choice) for r in ranges] == [
        (8, 8, "default"), (64, 512, "ring"), (4096, 32768, "lib:ring")]
    assert ranges[2].library_id == 4 and ranges[2].gain == pytest.approx(1.6)
    lib = decide(RECORDS, {"lib:ring": 4}, only=lambda c: c.startswith("lib:"))
    assert [(r.lo, r.hi, r.choice) for r in lib] == [(8, 8, "default"), (64, 64, "lib:ring"),
                                                     (512, 512, "default"),
                                                     (4096, 32768, "lib:ring")]
    assert lookup(ranges, "allreduce", 2, 100).choice == "ring"
    assert lookup(ranges, "allreduce", 3, 1 << 30).choice == "lib:ring", "nearest ranks, last"
    assert lookup(ranges, "bcast", 2, 8) is None


def test_the_rules_file_parses_back_to_the_decision_and_the_mpich_json_parses():
    lib = decide(RECORDS, {"lib:ring": 4}, only=lambda c: c.startswith("lib:"))
    text = ompi_rules(lib, {"allreduce": 2})
    assert parse_ompi_rules(text) == {2: {2: [(0, 0), (64, 4), (512, 0), (4096, 4)]}}
    doc = json.loads(json.dumps(mpich_json(lib)))
    sizes = doc["collective=allreduce"]["comm_type=intra"]["comm_size<=2"]
    assert sizes["avg_msg_size<=64"] == {"algorithm=MPIR_Allreduce_intra_ring": {}}
    assert "avg_msg_size=any" in sizes
    with pytest.raises(Exception, match="not an Open MPI rules file"):
        parse_ompi_rules("algorithm: ring\n")


def test_held_out_penalty_is_against_the_per_size_best():
    mean, ci = held_out_penalty(RECORDS)
    assert mean >= 0 and ci[0] <= mean <= ci[1]
    assert held_out_penalty([_rec(8, "default", 1, 1, 1)]) is None


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    runs = {}
    for n in (2, 3):
        proc = mpirun(n, ["tune", "--collective", "allreduce,bcast", "-b", "64", "-e", "64K",
                          "-f", "32", "-n", "6", "--ranks", ",".join(map(str, range(2, n + 1))),
                          "--json", "--quiet", "--output", str(out / str(n))], timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[n] = (json.loads(proc.stdout), next((out / str(n)).iterdir()))
    return runs


def test_tune_writes_its_files_and_every_forced_algorithm_is_exact(tuned):
    for n, (recs, folder) in tuned.items():
        cands = [r for r in recs if r["kind"] == "candidate"]
        assert {r["ranks"] for r in cands} == set(range(2, n + 1))
        libs = {r["candidate"] for r in cands if r["candidate"].startswith("lib:")}
        assert {"lib:ring", "lib:recursive_doubling", "lib:binomial"} <= libs
        assert all(r["wrong"] == 0 for r in recs if r["kind"] in ("candidate", "composition"))
        for f in ("ompi_rules.txt", "mpich_selection.json", "distbench_tuning.json"):
            assert (folder / f).is_file(), f
        parse_ompi_rules((folder / "ompi_rules.txt").read_text())
        json.loads((folder / "mpich_selection.json").read_text())


def test_open_mpi_loads_the_rules_file_without_a_warning(tuned):
    _, folder = tuned[2]
    env = {**mpi_env(), "OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
           "OMPI_MCA_coll_tuned_dynamic_rules_filename": str(folder / "ompi_rules.txt")}
    proc = subprocess.run([MPIRUN, "-n", "2", "--oversubscribe", sys.executable, "-m",
                           "distbench", "allreduce", "--algo", "native", "-b", "64", "-e",
                           "64K", "-f", "32", "-n", "5", "--json", "--quiet", "--output",
                           str(folder.parent / "loaded")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warn" not in proc.stderr.lower(), proc.stderr[-2000:]
    assert all(r["wrong"] == 0 for r in json.loads(proc.stdout))


def test_algo_auto_runs_what_the_table_names(tuned, tmp_path):
    _, folder = tuned[2]
    table = folder / "distbench_tuning.json"
    doc = json.loads(table.read_text())
    doc["ranges"] = [Range("allreduce", 2, 0, 100, "ring").__dict__,
                     Range("allreduce", 2, 101, 1 << 20, "lib:recursive_doubling", 3).__dict__]
    table.write_text(json.dumps(doc))
    proc = mpirun(2, ["allreduce", "--algo", "auto", "--tuning", str(table), "-b", "64", "-e",
                      "64K", "-f", "32", "-n", "5", "--json", "--quiet", "--output",
                      str(tmp_path)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    picked = {r["bytes"]: r["options"]["picked"] for r in json.loads(proc.stdout)
              if r["algorithm"] == "auto"}
    assert picked == {64: "ring", 2048: "lib:recursive_doubling",
                      65536: "lib:recursive_doubling"}


@pytest.mark.parametrize("args, needle", [
    (["tune", "--collective", "allreduce,nope"], "unknown collective 'nope'"),
    (["tune", "--ranks", "9"], "--ranks 9 is more than the job's 2 ranks"),
    (["allreduce", "--algo", "auto"], "--algo auto needs --tuning"),
    (["allreduce", "--algo", "auto", "--tuning", "NOT_A_TABLE"], "not a distbench tune table"),
])
def test_bad_tune_input_is_one_line_exit_2(args, needle, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"format": "other"}))
    args = [str(tmp_path / "t.json") if a == "NOT_A_TABLE" else a for a in args]
    proc = mpirun(2, [*args, "--output", str(tmp_path / "out")], timeout=120)
    assert needle in usage_error_line(proc)


def test_verify_refuses_what_is_not_a_tune_run(tmp_path):
    proc = serial(["tune", "--verify", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "not a tune run folder" in proc.stderr
    (tmp_path / "ompi_rules.txt").write_text("# from another tool\nalgorithm ring\n")
    proc = serial(["tune", "--verify", str(tmp_path)], timeout=60)
    assert proc.returncode == 2 and "not an Open MPI rules file" in proc.stderr

