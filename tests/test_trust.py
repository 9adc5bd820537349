"""Results you can trust: the watchdog (a stopped rank is named, exit 3 within the timeout plus
a few seconds), spikes of a rank that stalls and resumes, runs marked incomplete (timeout,
signals, divergence), strict JSON, durable writes that never overwrite, and the error paths
that ended in a traceback or a hang (serial tests that launch mpirun)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from launch import DISTBENCH, MPIRUN, error_lines, mpi_env, mpirun, serial

from distbench.errors import DistbenchError, UsageError
from distbench.launcher import launched_by_mpirun
from distbench.results import RUNNING, RunWriter, check_output_folder
from distbench.watchdog import LAUNCHER_SIGTERM

pytestmark = pytest.mark.skipif(launched_by_mpirun(), reason="serial tests: they launch mpirun")


def _doc(folder: Path) -> dict:
    [path] = list(folder.glob("*/results.json"))
    text = path.read_text()

    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _rank_pid(marker: str, rank: int, timeout: float = 20.0) -> int:
    """The pid of the distbench rank ``rank`` whose command line contains ``marker``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in cmd and "-m distbench" in cmd and \
                    f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
                return int(entry)
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} of {marker!r} never started")


def _start(n: int, args: list[str]) -> subprocess.Popen:
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", *DISTBENCH, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=mpi_env(), start_new_session=True)


@pytest.mark.parametrize("n,stopped", [(2, 1), (3, 2), (2, 0)])
def test_a_stopped_rank_is_named_and_the_job_ends_with_exit_3(tmp_path, n, stopped):
    """SIGSTOP one rank mid-sweep: the job ends within the timeout + 10 s, exit 3, one line
    naming it, its results marked with that line. Rank 0 too: the others judge it, and once
    mpirun's SIGTERM resumes it, it neither judges them by the heartbeats it missed nor
    replaces the reason they reported with the SIGTERM."""
    marker = str(tmp_path)
    proc = _start(n, ["allreduce", "-b", "8", "-e", "64M", "--timeout", "4", "--quiet",
                      "--output", marker])
    pid = _rank_pid(marker, stopped)
    _wait_records(tmp_path)  # mid-sweep: some sizes measured
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        with_suppress_kill(pid)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, err
    assert elapsed < 4 + 10, f"took {elapsed:.1f} s after the stop"
    [line] = [x for x in error_lines(err) if x.startswith("Error:")]
    assert line.startswith("Error: timeout after 4 s in allreduce ")
    assert line.endswith(f": rank {stopped} did not arrive"), line
    doc = _doc(tmp_path)
    if stopped == 0:
        # rank 0 writes the files, and mpirun gives it 0.4 s between its SIGCONT and its
        # SIGKILL to write the reason the others reported: on a loaded machine it may not
        assert doc["complete"] is False and doc["reason"] in (
            line.removeprefix("Error: "), RUNNING), doc["reason"]
    else:
        assert doc["complete"] is False and doc["reason"] == line.removeprefix("Error: ")
    assert doc["records"], "what was measured before the timeout stays"
    folder = next(tmp_path.glob("*-allreduce"))
    done = serial(["report", str(folder)])
    assert done.returncode == 0, done.stderr
    assert "INCOMPLETE: timeout after 4 s" in (folder / "REPORT.md").read_text()


def _wait_records(folder: Path, timeout: float = 60.0) -> None:
    """Wait until the run in ``folder`` has written at least one record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in folder.glob("*/results.json"):
            try:
                if json.loads(path.read_text())["records"]:
                    return
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.1)
    raise AssertionError("the run wrote no record")


def with_suppress_kill(pid: int) -> None:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


def test_a_rank_that_stalls_and_resumes_leaves_spikes_in_the_record(tmp_path):
    marker = str(tmp_path)
    # two sizes of many ~10 us iterations: once the first is recorded, the second's timed
    # loop (>= 1 s even on a fast machine) is running
    proc = _start(2, ["allreduce", "--algo", "native", "-b", "8", "-e", "16", "-n", "200000",
                      "-w", "0", "--timeout", "60", "--json", "--output", marker])
    pid = _rank_pid(marker, 1)
    _wait_records(tmp_path)
    time.sleep(0.3)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(1.0)
    os.kill(pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rec = json.loads(out)[-1]
    assert rec["bytes"] == 16
    assert rec["spikes"] >= 1, "a 1 s stall among ~20 us iterations is a spike"
    assert rec["p99_us"] < 1e5, "one spike does not move the 99th percentile"
    assert "native!" in err, "the table marks the row"
    assert f"native at 16 B ({rec['spikes']})" in err, "the footnote counts the spikes"


def test_ctrl_c_of_a_single_rank_marks_the_results_and_says_where(tmp_path):
    proc = subprocess.Popen([*DISTBENCH, "allreduce", "-b", "8", "-e", "64M", "--quiet",
                             "--output", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=mpi_env())
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    [line] = [x for x in error_lines(err) if x.startswith("Error")]
    folder = next(tmp_path.glob("*-allreduce"))
    assert line == f"Error: interrupted by SIGINT; the results measured so far are in " \
                   f"{folder} (marked incomplete)"
    doc = _doc(tmp_path)
    assert doc["complete"] is False and doc["reason"] == "interrupted by SIGINT"
    assert doc["records"]


def test_ctrl_c_of_mpirun_leaves_the_run_marked_incomplete(tmp_path):
    proc = _start(2, ["allreduce", "-b", "8", "-e", "64M", "--quiet", "--output",
                      str(tmp_path)])
    _rank_pid(str(tmp_path), 0)
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    doc = _doc(tmp_path)
    # mpirun forwards SIGTERM and kills about 0.25 s later: the reason is written unless the
    # disk is too slow for that, and the run never claims to be complete
    assert doc["complete"] is False and doc["reason"] in (LAUNCHER_SIGTERM, RUNNING)


def test_a_rank_killed_by_sigkill_is_named_as_such(tmp_path):
    """SIGKILL one rank: mpirun ends the others with SIGTERM; rank 0 names the rank that died
    (its process is gone from this host) rather than a bare "interrupted by SIGTERM"."""
    proc = _start(3, ["allreduce", "-b", "8", "-e", "64M", "--quiet", "--output",
                      str(tmp_path)])
    pid = _rank_pid(str(tmp_path), 2)
    _wait_records(tmp_path)
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    doc = _doc(tmp_path)
    assert doc["complete"] is False
    assert doc["reason"] in ("rank 2 died (killed, e.g. by SIGKILL, or crashed); the launcher "
                             "then ended the job (SIGTERM)", RUNNING), doc["reason"]
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_ctrl_c_of_mpirun_in_a_terminal_says_where_the_results_are(tmp_path):
    """In a terminal (script(1) gives mpirun one), Ctrl-C reaches the ranks as mpirun's
    SIGCONT, SIGTERM and, 0.17 s later, SIGKILL, and mpirun no longer forwards their output:
    rank 0 writes its line to the terminal at once, then marks the results."""
    log = tmp_path / "terminal.log"
    out = tmp_path / "out"
    cmd = " ".join([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, "allreduce", "-b", "8",
                    "-e", "64M", "--quiet", "--output", str(out)])
    proc = subprocess.Popen(["script", "-qfec", cmd, str(log)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=mpi_env(), start_new_session=True)
    _rank_pid(str(out), 0)
    _wait_records(out)
    time.sleep(2.0)  # past the first summary's lazy imports, which hold the GIL in bursts
    launcher = next(int(p) for p in os.listdir("/proc") if p.isdigit() and _is_launcher(p, out))
    os.kill(launcher, signal.SIGINT)
    proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    folder = next(out.glob("*-allreduce"))
    assert f"Error: {LAUNCHER_SIGTERM}; the results measured so far are in {folder} " \
           "(marked incomplete)" in text, text[-2000:]
    doc = _doc(out)
    assert doc["complete"] is False and doc["reason"] in (LAUNCHER_SIGTERM, RUNNING)


def _is_launcher(pid: str, marker) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return comm in ("prterun", "mpirun") and str(marker) in cmd


def test_a_complete_run_is_strict_json_with_intervals(tmp_path):
    proc = mpirun(2, ["allreduce", "--algo", "ring", "-b", "1K", "-e", "64K", "-f", "64",
                      "--output", str(tmp_path), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    doc = _doc(tmp_path)
    assert doc["complete"] is True and doc["reason"] is None and doc["schema"] == 2
    for rec in doc["records"]:
        for f in ("t_min_us", "t_avg_us", "t_max_us", "p50_us", "p99_us", "algbw_gbps",
                  "busbw_gbps", "vs_native"):
            lo, hi = rec[f + "_ci"]
            assert 0 < lo <= hi, (f, rec[f + "_ci"])
        assert rec["canary_us"] > 0 and rec["spikes"] >= 0 and rec["round_spread"] >= 0
    native = [r for r in doc["records"] if r["algorithm"] == "native"]
    assert all(r["vs_native_ci"] == [1.0, 1.0] for r in native), "paired with itself"


def test_target_ci_adds_iterations_and_says_whether_it_was_met(tmp_path):
    proc = mpirun(2, ["allreduce", "--algo", "ring", "-b", "64K", "-e", "64K", "-n", "5",
                      "--target-ci", "1", "--max-time", "20", "--output", str(tmp_path),
                      "--json"])
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    assert all(r["target_ci_pct"] == 1 and r["target_ci_met"] in (True, False) for r in recs)
    assert all(r["iters"] > 5 for r in recs), "a 1 % target needs more than 5 iterations"
    assert all(r["iters"] <= 5 * 2 ** 6 for r in recs), "at most six doublings"


def test_training_that_diverges_stops_exit_1_and_the_results_hold_it(tmp_path):
    proc = mpirun(2, ["sgd", "--mode", "sync", "--steps", "400", "--eval-every", "10",
                      "--lr", "1e6", "--output", str(tmp_path)])
    assert proc.returncode == 1
    [line] = [x for x in error_lines(proc.stderr) if x.startswith("Error")]
    assert line.startswith("Error: diverged at step 10 (sync mode)")
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    doc = _doc(tmp_path)
    assert doc["complete"] is False and doc["reason"].startswith("diverged at step 10")
    [summary] = [r for r in doc["records"] if r["kind"] == "summary"]
    assert summary["diverged_at_step"] == 10
    assert any(r.get("non_finite") for r in doc["records"] if r["kind"] == "eval"), \
        "the non-finite loss is null in the JSON and named in non_finite"


BAD = [
    # each a case the trust issue found, as run under mpirun -n 2
    (["sgd", "--seed", "-1", "--steps", "20"], 2, "'--seed': '-1' is not in [0,"),
    (["compress", "--seed", "-1"], 2, "'--seed': '-1' is not in [0,"),
    (["sgd", "--epochs", "inf"], 2, "not a finite number"),
    (["sgd", "--batch-size", "0"], 2, "'--batch-size': '0' is not in [1,"),
    (["sgd", "--l2", "nan"], 2, "not a finite number"),
    (["sgd", "--target-loss", "nan"], 2, "not a finite number"),
    (["sgd", "--lr", "inf"], 2, "not a finite number"),
    (["sgd", "--straggler", "1:inf"], 2, "--straggler takes RANK:MS"),
    (["sgd", "--eval-every", "0"], 2, "'--eval-every': '0' is not in [1,"),
    (["sgd", "--decay-every", "0"], 2, "'--decay-every': '0' is not in [1,"),
    (["sgd", "--t0", "0"], 2, "is not > 0"),
    (["allreduce", "--algo", "hierarchical", "--inner", "hierarchical"], 2,
     "inner algorithm 'hierarchical'"),
    (["allreduce", "--algo", ""], 2, "without empty items"),
    (["allreduce", "--algo", ","], 2, "without empty items"),
    (["allreduce", "--output", "/proc/x"], 2, "--output /proc/x: cannot create"),
    (["allreduce", "-n", "100000000000"], 2, "beyond --max-time 3600 s"),
    (["allreduce", "-w", "1e12"], 2, "beyond --max-time"),
    (["compress", "-n", "100000000000"], 2, "beyond --max-time"),
    (["sgd", "--steps", "1000000000000"], 2, "beyond --max-time"),
    (["allreduce", "--timeout", "-1"], 2, "is not >= 0"),
    (["allreduce", "--target-ci", "0"], 2, "is not in (0, 100]"),
]


@pytest.mark.parametrize("args,code,needle", BAD)
def test_bad_input_one_line_and_the_exit_code(tmp_path, args, code, needle):
    if "--output" not in args:
        args = [*args, "--output", str(tmp_path)]
    proc = mpirun(2, args, timeout=90)
    assert proc.returncode == code, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], lines
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*-*")), "nothing ran"


def test_output_under_a_regular_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        check_output_folder(blocker / "sub")
    check_output_folder(tmp_path / "new" / "deeper")  # creatable: fine, and not created
    assert not (tmp_path / "new").exists()


def test_sgd_dataset_of_random_bytes_or_invalid_utf8_is_one_line(tmp_path):
    for name, data in (("random.csv", os.urandom(4096)), ("latin.csv", b"1,2\n\xe9,3\n")):
        path = tmp_path / name
        path.write_bytes(data)
        proc = serial(["sgd", "--dataset", str(path), "--output", str(tmp_path)])
        assert proc.returncode == 2
        [line] = error_lines(proc.stderr)
        assert line.startswith(f"Error: {path}: not a numeric CSV file"), line
    big = tmp_path / "big.csv"
    big.write_text("".join(f"{i},{i % 3},{1e30 if i == 5 else i % 2}\n" for i in range(20)))
    proc = serial(["sgd", "--dataset", str(big), "--output", str(tmp_path)])
    assert proc.returncode == 2 and "below 2**53" in proc.stderr


def test_a_failing_check_on_one_rank_ends_the_job(tmp_path):
    """A check that raises something other than a usage error on one rank only, while the
    others wait in a collective: the job ends at once with that rank's line (no hang)."""
    script = tmp_path / "faulty.py"
    script.write_text(textwrap.dedent("""
        import sys
        from distbench import collectives
        from distbench.collectives.allreduce import ring
        from distbench.registry import Algorithm, Option

        def check(value, ranks):
            from mpi4py import MPI
            if MPI.COMM_WORLD.Get_rank() == 1:
                raise RuntimeError("injected check failure")

        collectives.ALLREDUCE.register("faulty", Algorithm(
            ring.allreduce, options=(Option("knob", int, 1, "a knob", check_size=check),)))
        from distbench.cli import main
        main(sys.argv[1:])
    """))
    t0 = time.monotonic()
    proc = subprocess.run([MPIRUN, "-n", "2", "--oversubscribe", sys.executable, str(script),
                           "allreduce", "--algo", "faulty", "-e", "1K", "--output",
                           str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env=mpi_env())
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1
    assert "Error (rank 1): RuntimeError: injected check failure" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_and_report_bad_input(tmp_path):
    proc = serial(["model", "--ranks", "99999999999999999999999999"])
    assert proc.returncode == 2 and "too large" in proc.stderr
    proc = serial(["model", "--alpha", "nan"])
    assert proc.returncode == 2 and "not a finite number" in proc.stderr
    for body, needle in (('{"records": 5}', "'records' is int"),
                         ('{"benchmark": "allreduce", "records": [{"bytes": "x"}]}',
                          "field 'bytes' is 'x'"),
                         ('{"benchmark": "allreduce", "records": [{"algorithm": "ring", '
                          '"bytes": 8}]}', "missing field 'ranks'")):
        folder = tmp_path / f"r{len(needle)}"
        folder.mkdir()
        (folder / "results.json").write_text(body)
        proc = serial(["report", str(folder)])
        assert proc.returncode == 2, proc.stderr
        [line] = error_lines(proc.stderr)
        assert line.startswith("Error:") and needle in line, line
        assert proc.stderr.strip() == line, "one line, no warnings before it"
        assert sorted(p.name for p in folder.iterdir()) == ["results.json"], "no half report"
    # records the plots can draw but the tables cannot (no 'bytes'): before, two PNGs and a
    # matplotlib warning came before the error line
    recs = [{"benchmark": "allreduce", "algorithm": a, "ranks": 2, "count": 256,
             "dtype": "float32", "iters": 5, "t_min_us": 4.0, "t_avg_us": 5.0, "t_max_us": 6.0,
             "p50_us": 5.0, "p99_us": 7.0, "algbw_gbps": 0.17, "busbw_gbps": 0.17, "wrong": 0}
            for a in ("native", "ring")]
    folder = tmp_path / "no-bytes"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(
        {"benchmark": "allreduce", "complete": True, "environment": {"ranks": 2},
         "records": recs}))
    proc = serial(["report", str(folder)])
    assert proc.returncode == 2 and proc.stderr.strip() == error_lines(proc.stderr)[0]
    assert "missing field 'bytes'" in proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["results.json"], "no half report"


# ------------------------------------------------------------------------------ unit tests

def test_results_never_overwrite_in_a_suite_folder(tmp_path):
    a = RunWriter(None, "allreduce", tmp_path, {}, {}, exact=True)
    b = RunWriter(None, "allreduce", tmp_path, {}, {}, exact=True)
    assert a.json_path.name == "allreduce.json" and b.json_path.name == "allreduce-2.json"
    a.append([{"bytes": 8}])
    b.finish()
    assert json.loads(a.json_path.read_text())["records"] == [{"bytes": 8}]
    assert json.loads(b.json_path.read_text())["complete"] is True


def test_non_finite_values_become_null_and_are_named(tmp_path):
    w = RunWriter(None, "sgd", tmp_path, {"lr": float("inf")}, {})
    w.append([{"train_loss": float("nan"), "ok": 1.0, "hist": [1.0, float("-inf")]}])
    doc = json.loads(w.json_path.read_text(), parse_constant=lambda c: pytest.fail(c))
    [rec] = doc["records"]
    assert rec["train_loss"] is None and rec["hist"] == [1.0, None]
    assert rec["non_finite"] == {"train_loss": "nan", "hist[1]": "-inf"}
    assert doc["config"]["lr"] is None
    assert doc["complete"] is False and doc["reason"] == RUNNING
    w.mark_incomplete("timeout after 5 s")
    w.mark_incomplete("a later reason")
    assert json.loads(w.json_path.read_text())["reason"] == "timeout after 5 s"


def test_a_full_disk_names_the_path_and_errno_and_leaves_no_temp_file(tmp_path, monkeypatch):
    w = RunWriter(None, "allreduce", tmp_path, {}, {})
    before = w.json_path.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("distbench.results.os.fsync", full)
    with pytest.raises(DistbenchError, match=r"cannot write .*results.json: No space left on "
                       r"device \(errno 28 ENOSPC\)"):
        w.append([{"bytes": 8}])
    assert sorted(p.name for p in w.path.iterdir()) == ["results.csv", "results.json"]
    assert w.json_path.read_text() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_report_on_a_full_disk_is_one_line_and_no_partial_png(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        (full / "fill").write_bytes(b"\0" * (60 * 1024))
        data = Path(__file__).parent / "data" / "model" / "p2"
        proc = serial(["report", str(data), "--out", str(full / "rep")])
        assert proc.returncode == 1
        [line] = error_lines(proc.stderr)
        assert "No space left on device (errno 28 ENOSPC)" in line
        assert not [p for p in (full / "rep").iterdir() if p.suffix == ".png"]
        assert not list((full / "rep").glob(".*tmp"))
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def test_intervals_are_seeded_and_contain_the_mean():
    from distbench.metrics import ratio_ci, round_means, stats_from_matrix

    rng = np.random.default_rng(7)
    allt = 1e-5 + rng.normal(0, 1e-6, size=(3, 400)) ** 2
    a, b = stats_from_matrix(allt), stats_from_matrix(allt)
    assert a == b, "seeded: the same data give the same intervals"
    lo, hi = a["t_avg_us_ci"]
    assert lo < a["t_avg_us"] < hi and hi - lo < 0.1 * a["t_avg_us"]
    slow = allt * 1.5
    r = ratio_ci(round_means(slow, [40] * 10), round_means(allt, [40] * 10))
    assert r[0] == pytest.approx(1.5) and r[1] == pytest.approx(1.5)
    noisy = allt * rng.uniform(0.5, 2.0, size=(1, 400))
    lo, hi = ratio_ci(round_means(noisy, [40] * 10), round_means(allt, [40] * 10))
    assert lo < hi and not math.isclose(lo, hi)
