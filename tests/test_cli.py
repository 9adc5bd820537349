"""End to end: `mpirun ... distbench allreduce` in a subprocess (serial pytest run only)."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from launch import DISTBENCH, MPIRUN, error_lines, mpi_env, mpirun, serial, usage_error_line

from distbench.collectives import ALLREDUCE

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH")


def test_sweep_all_algorithms_three_ranks(tmp_path):
    proc = mpirun(3, ["allreduce", "--algo", "all", "-b", "8", "-e", "256K", "-f", "8",
                      "-n", "4", "-w", "1", "--dtype", "int32", "--output", str(tmp_path),
                      "--json"])
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    sizes = [8 * 8**i for i in range(6)]
    assert {(r["algorithm"], r["bytes"]) for r in records} == {
        (a, s) for a in ALLREDUCE for s in sizes}
    for r in records:
        assert r["wrong"] == 0 and r["ranks"] == 3 and r["count"] == r["bytes"] // 4
        assert r["algbw_gbps"] == pytest.approx(r["bytes"] / (r["t_max_us"] * 1e-6) / 1e9)
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * 2 * 2 / 3)
        assert r["t_min_us"] <= r["t_avg_us"] <= r["t_max_us"]
    (run,) = list(tmp_path.iterdir())
    doc = json.loads((run / "results.json").read_text())
    assert doc["records"] == records
    assert doc["environment"]["ranks"] == 3 and "Open MPI" in doc["environment"]["mpi_library"]
    assert doc["environment"]["mpi_thread_level_requested"] == "multiple"  # the default
    # the pre-flight estimate: what the process held then + send, recv, a whole-vector scratch
    assert doc["environment"]["memory_estimate_bytes"] > 3 * 256 * 1024
    csv_lines = (run / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(records)
    # the table went to stderr (stdout carries the JSON) and names every algorithm
    assert all(a in proc.stderr for a in ALLREDUCE)


def test_second_run_never_overwrites(tmp_path):
    args = ["allreduce", "--algo", "ring", "-b", "8", "-e", "8", "-n", "2", "--output",
            str(tmp_path), "--quiet"]
    assert mpirun(2, args).returncode == 0
    assert mpirun(2, args).returncode == 0
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 2 and all((r / "results.json").exists() for r in runs)


def test_without_mpirun_runs_one_rank_and_says_how_to_launch_more(tmp_path):
    proc = serial(["allreduce", "--algo", "ring", "-b", "8", "-e", "64", "-n", "3",
                   "--output", str(tmp_path), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "mpirun -n" in proc.stderr


BAD = [
    (["-b", "abc"], "not a size"),
    (["-b", "-8"], "negative"),
    (["-b", "1M", "-e", "1K"], "larger than"),
    (["-f", "1"], ">= 2"),
    (["--algo", "ring,bogus"], "unknown algorithm"),
    (["--dtype", "complex64"], "dtype"),
    (["-n", "0"], "--iters"),
    (["-b", "12", "--dtype", "float64"], "multiple"),
    (["-e", "64G"], "lower --max-bytes"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(args, needle):
    proc = mpirun(2, ["allreduce", *args], timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_ranks_per_node_must_divide_ranks():
    proc = mpirun(3, ["allreduce", "--ranks-per-node", "2", "-e", "64"], timeout=60)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["Error: --ranks-per-node 2 does not divide the 3 ranks"]


def test_arguments_that_differ_between_ranks():
    env = mpi_env()
    import subprocess

    cmd = [MPIRUN, "--oversubscribe", "-n", "1", *DISTBENCH, "allreduce", "-e", "64", "-n", "5",
           ":", "-n", "1", *DISTBENCH, "allreduce", "-e", "64", "-n", "6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["Error: arguments differ between ranks (iters)"]


def test_a_parse_error_on_one_rank_only_ends_every_rank():
    env = mpi_env()
    import subprocess

    cmd = [MPIRUN, "--oversubscribe", "-n", "1", *DISTBENCH, "allreduce", "-e", "64", ":",
           "-n", "1", *DISTBENCH, "allreduce", "-e", "64", "--dtype", "nope"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2


def test_a_rank_that_raises_ends_the_job_quickly(tmp_path):
    """An algorithm that fails on rank 1 only: the others block in MPI; the job must still end."""
    script = tmp_path / "faulty.py"
    script.write_text(textwrap.dedent("""
        import sys
        from distbench import collectives
        from distbench.collectives.allreduce import ring

        def faulty(comm, sendbuf, recvbuf, op=None):
            if comm.Get_rank() == 1:
                raise RuntimeError("injected failure")
            ring.allreduce(comm, sendbuf, recvbuf)

        collectives.ALLREDUCE.register("faulty", faulty)
        from distbench.cli import main
        main(sys.argv[1:])
    """))
    import subprocess
    import sys

    t0 = time.monotonic()
    cmd = [MPIRUN, "--oversubscribe", "-n", "3", sys.executable, str(script), "allreduce",
           "--algo", "faulty", "-e", "1K", "--output", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=mpi_env())
    assert time.monotonic() - t0 < 30
    assert proc.returncode != 0
    assert "Error (rank 1): RuntimeError: injected failure" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wrong_results_exit_1(tmp_path):
    script = tmp_path / "wrong.py"
    script.write_text(textwrap.dedent("""
        import sys
        from distbench import collectives
        from distbench.collectives.allreduce import native

        def off_by_one(comm, sendbuf, recvbuf, op=None):
            native.allreduce(comm, sendbuf, recvbuf)
            if recvbuf.size:
                recvbuf[0] += 1

        collectives.ALLREDUCE.register("off_by_one", off_by_one)
        from distbench.cli import main
        main(sys.argv[1:])
    """))
    import subprocess
    import sys

    cmd = [MPIRUN, "--oversubscribe", "-n", "2", sys.executable, str(script), "allreduce",
           "--algo", "off_by_one", "-b", "8", "-e", "64", "-n", "2", "--output", str(tmp_path),
           "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=mpi_env())
    assert proc.returncode == 1
    records = json.loads(proc.stdout)
    bad = [r["wrong"] for r in records if r["algorithm"] == "off_by_one"]
    assert bad == [2] * 4  # element 0 wrong on both ranks, at each of the 4 sizes
    assert all(r["wrong"] == 0 for r in records if r["algorithm"] == "native")


def test_gpu_without_cupy_is_a_one_line_usage_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: --device gpu is not an error here")
    except ImportError:
        pass
    proc = mpirun(2, ["allreduce", "--device", "gpu", "-e", "64"], timeout=60)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: --device gpu needs CuPy")


@pytest.mark.parametrize("command", ["allreduce", "bcast", "compress", "info"])
def test_thread_level_is_recorded_and_bad_values_exit_2(tmp_path, command):
    """--thread-level initializes MPI at that level (every measuring command and info); the
    run's environment records what was asked for and what MPI provides; an unknown level is
    one line and exit code 2, on every rank."""
    bad = mpirun(2, [command, "--thread-level", "triple"])
    assert "--thread-level" in usage_error_line(bad)
    if command == "info":
        proc = mpirun(2, ["info", "--thread-level", "funneled"])
        assert proc.returncode == 0, proc.stderr
        return
    args = {"allreduce": ["-b", "8", "-e", "8"], "bcast": ["-b", "8", "-e", "8"],
            "compress": ["-b", "4K", "-e", "4K", "--gradients", "2", "--method", "none"]}[command]
    proc = mpirun(2, [command, *args, "-n", "3", "-w", "1", "--thread-level", "serialized",
                      "--output", str(tmp_path), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    (run,) = list(tmp_path.iterdir())
    env = json.loads((run / "results.json").read_text())["environment"]
    assert env["mpi_thread_level_requested"] == "serialized"
    assert env["mpi_thread_level"] in ("single", "funneled", "serialized", "multiple")
