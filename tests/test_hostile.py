"""Hostile input, command by command: every case gives one line and the documented exit code
within seconds, and none hangs. Cases the command line refuses while parsing run in-process
(``cli._parse``); those refused by a job's checks, by a file's reader, or under mpirun run as
processes, each under a 20 s limit (far above the few seconds they take)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from launch import mpirun, serial, usage_error_line

from distbench.cli import _parse
from distbench.errors import UsageError
from distbench.results import find_docs

DATA = Path(__file__).parent / "data"

P2 = str(DATA / "model" / "p2")

# (arguments, text of the one line; None: accepted): refused while parsing (exit 2), in-process
PARSE = [
    (["allreduce", "--algo", " ring"], "has white space"),
    (["allreduce", "--algo", "ring,ring"], "names ring more than once"),
    (["allreduce", "--algo", "ring,"], "without empty items"),
    (["allreduce", "--compute-ratio", "nan"], "'nan' is not a finite number"),
    (["allreduce", "--nonblocking", "--progress-us", "inf"], "'inf' is not a finite number"),
    (["allreduce", "--compute-ratio", "2"], "--compute-ratio go(es) with --nonblocking"),
    (["allreduce", "--timeout", "-1"], "is not >= 0"),
    (["fedavg", "--seed", "-1"], "'--seed': '-1' is not in [0,"),
    (["fedavg", "--partition", "size-skew", "--power", "1000"],
     "'--power': '1000' is not in [0, 100]"),
    (["fedavg", "--density", "0.5"], "--density do(es) nothing with --compress none"),
    (["fedavg", "--mu", "0.5"], "--mu do(es) nothing with --algorithm fedavg"),
    (["fedavg", "--algorithm", "fedavg,"], "without empty items"),
    (["fedavg", "--algorithm", "fedavg,fedavg"], "names fedavg more than once"),
    (["fedavg", "--alpha", "0.5"], "--alpha do(es) nothing with --partition iid"),
    (["fedavg", "--partition", "dirichlet", "--alpha", "0.5"], None),
    (["allreduce", "--progress-us", "50"], "--progress-us go(es) with --nonblocking"),
    (["sgd", "--local-steps", "8", "--mode", "sync"], "--local-steps (local mode) given"),
    (["sgd", "--schedule", "inverse", "--steps", "5"], None),  # old spelling: warned, parsed
    (["parallel", "--layouts", "", "--memory-only"], "without empty items"),
    (["parallel", "--layouts", "2x1x1,,1x2x1", "--memory-only"], "without empty items"),
    (["parallel", "--layouts", "2x1x1,2x1x1", "--memory-only"], "names 2x1x1 more than once"),
    (["parallel", "--layouts", "2x1x1", "--dp", "2", "--memory-only"],
     "give --layouts or --dp, not both"),
    (["parallel", "--zero", "0,0,3,3"], "names 0, 3 more than once"),
    (["parallel", "--zero", ""], "without empty items"),
    (["parallel", "--memory-only", "--params", "1e300"], "'1e300' is not in [1,"),
    (["parallel", "--memory-only", "--vocab", "1e300"], "is not in [1, 1073741824]"),
    (["parallel", "--memory-only", "--seq", "1e300"], "is not in [1, 16777216]"),
    (["parallel", "--memory-only", "--hidden", "1e300"], "is not in [1, 16777216]"),
    (["parallel", "--memory-only", "--layers", "1e18", "--hidden", "1e18"],
     "is not in [1, 1048576]"),
    (["parallel", "--memory-only", "--layouts", "all", "--ranks", "100000000"],
     "at most 1048576 ranks"),
    (["parallel", "--ranks", "4"], "--ranks goes with --memory-only"),
    (["model", "--layers", "4"], "go with --step"),
    (["model", "--collective", "reduce", "--inner", "ring"],
     "--inner do(es) nothing for --collective reduce"),
    (["model", "--step", "--ranks", "1000000000000", "--layouts", "all"],
     "at most 1048576 ranks"),
    (["model", "--step", "--params", "1e300", "--layouts", "8x1x1"], "'1e300' is not in [1,"),
    (["model", "--ranks", "0"], "--ranks"),
    (["compare", P2, P2, "--fail-on-regression", "inf%"], "a finite percentage"),
    (["compare", P2, P2, "--fail-on-regression", "1e400%"], "a finite percentage"),
    (["compare", P2, P2, "--fail-on-regression", "5"], "with its unit"),
    (["emulate", "--nodes", "100", "--", "allreduce"], "'100' is not in [1, 64]"),
    (["emulate", "--ranks-per-node", "100000", "--", "allreduce"], "is not in [1, 4096]"),
]


@pytest.mark.parametrize("argv,needle", PARSE, ids=[" ".join(a) for a, _ in PARSE])
def test_parse_time_refusals(argv, needle):
    t0 = time.monotonic()
    code, message = _parse(argv)
    assert time.monotonic() - t0 < 5
    if needle is None:
        assert not isinstance(code, int) or code == 0, message
    else:
        assert code == 2 and needle in message, (code, message)


def _one_line(proc, needle: str, code: int = 2) -> None:
    if code == 2:
        line = usage_error_line(proc)
    else:
        assert proc.returncode == code, proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.startswith("Error")]
        assert len(lines) == 1, proc.stderr
        line = lines[0]
    assert needle in line, line


def _results(tmp_path: Path, doc, name="results.json") -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return run


def _doc(**change) -> dict:
    doc = {"schema": 2, "benchmark": "allreduce", "complete": True, "environment": {},
           "config": {}, "records": [{"benchmark": "allreduce", "algorithm": "ring",
                                      "bytes": 8, "ranks": 2, "t_max_us": 1.0}]}
    doc.update(change)
    return doc


BAD_FILES = {
    "schema 999": (_doc(schema=999), "reads schemas 1 to"),
    "complete yes": (_doc(complete="yes"), "'complete' is 'yes'"),
    "another benchmark": (_doc(benchmark="zip"), "not one of distbench's"),
    "a record of another benchmark": (_doc(records=[{"benchmark": "sgd", "mode": "sync"}]),
                                      "a 'sgd' record in a 'allreduce' run"),
    "bytes as text": (_doc(records=[{"algorithm": "ring", "bytes": "8"}]),
                      "field 'bytes' is '8', not a number"),
    "options a list": (_doc(records=[{"algorithm": "ring", "bytes": 8, "options": []}]),
                       "field 'options' is [], not an object"),
    "records an object": (_doc(records={}), "'records' is dict"),
    "a record a number": (_doc(records=[1]), "record 0 is int"),
    "environment a list": (_doc(environment=[]), "'environment' is not an object"),
    "interval of three": (_doc(records=[{"algorithm": "ring", "t_max_us_ci": [1, 2, 3]}]),
                          "not null or a [low, high] pair"),
    "algorithm a number": (_doc(records=[{"algorithm": 3, "bytes": 8}]),
                           "field 'algorithm' is 3, not text"),
    "nested deeply": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "an integer beyond float": ('{"records": [{"bytes": ' + "9" * 400 + "}]}",
                                "an integer of 400 digits"),
    "not JSON": ("{", "is not JSON"),
    "NaN": ('{"records": [{"bytes": NaN}]}', "NaN is not JSON"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_results_files_are_one_line(tmp_path, case):
    doc, needle = BAD_FILES[case]
    run = _results(tmp_path, doc)
    with pytest.raises(UsageError, match=None) as info:
        find_docs(run, ("allreduce", "sgd"))
    assert needle in str(info.value), str(info.value)
    assert str(run) in str(info.value)  # names the file or its folder


def test_results_that_are_not_regular_files_never_block(tmp_path):
    """A FIFO named results.json (reading it would block for ever), a folder named so, a
    symbolic link loop, a file over the size cap: one line each, at once."""
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "results.json")
    folder = tmp_path / "folder"
    (folder / "results.json").mkdir(parents=True)
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "results.json").symlink_to(loop / "results.json")
    for run, needle in ((fifo, "is a FIFO"), (folder, "is a folder"),
                        (loop, "symbolic link loop")):
        t0 = time.monotonic()
        with pytest.raises(UsageError, match=needle):
            find_docs(run)
        assert time.monotonic() - t0 < 5
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "results.json", "wb") as fh:
        fh.truncate((64 << 20) + 1)
    with pytest.raises(UsageError, match="more than the 64 MiB"):
        find_docs(big)


@pytest.mark.slow
def test_report_compare_and_model_of_bad_files_end_to_end(tmp_path):
    """The same files through the commands: one line, exit 2, within seconds (report of a
    FIFO used to block, and ignore SIGTERM)."""
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "results.json")
    typed = _results(tmp_path, _doc(records=[{"algorithm": "ring", "bytes": "8"}]))
    for argv, needle in ((["report", str(fifo)], "is a FIFO"),
                         (["compare", str(fifo), str(typed)], "is a FIFO"),
                         (["report", str(typed)], "field 'bytes' is '8'"),
                         (["model", "--from", str(typed)], "field 'bytes' is '8'")):
        t0 = time.monotonic()
        _one_line(serial(argv, timeout=20), needle)
        assert time.monotonic() - t0 < 10


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sgd", "fedavg", "parallel", "allreduce", "compress"])
def test_a_bad_output_is_one_line_under_mpirun_and_never_waits(command, tmp_path):
    """--output under a regular file, or in /proc: one line from rank 0, exit 2, at once,
    for every command (sgd, fedavg and parallel used to wait 60 s for a timeout: rank 0 left
    the checks while the others entered their collectives)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    small = {"sgd": ["--steps", "2"], "fedavg": ["--rounds", "1"],
             "parallel": ["--layers", "2", "--hidden", "16", "--heads", "2", "--seq", "8",
                          "--vocab", "16"], "allreduce": ["-e", "8"],
             "compress": ["-b", "4K", "-e", "4K"]}[command]
    for out, needle in ((str(blocker / "sub"), "is not a folder"),
                        ("/proc/forbidden", "a kernel file system")):
        t0 = time.monotonic()
        proc = mpirun(2, [command, *small, "--output", out], timeout=60)
        assert time.monotonic() - t0 < 20, "it waited"
        _one_line(proc, needle)


@pytest.mark.slow
def test_emulate_checks_the_inner_command_before_building_anything():
    t0 = time.monotonic()
    for argv, needle in ((["emulate", "--nodes", "2", "--", "bogus"], "unknown command 'bogus'"),
                         (["emulate", "--nodes", "2", "--", "allreduce", "-b", "0"],
                          "sizes start at 1 byte")):
        proc = serial(argv, timeout=20)
        _one_line(proc, "the command after `--`: ")
        assert needle in proc.stderr
    assert time.monotonic() - t0 < 20
