"""The face: live tables under a pseudo-terminal fit its width with no cell cut and keep the
default columns of that width; --columns and --wide; the answer under each table, checked on a
recorded run and on intervals that overlap; --help ends in examples and stays fast."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from launch import DISTBENCH, MPIRUN, mpi_env, mpirun, serial

from distbench.analysis.answers import (
    collective_answer,
    compress_answer,
    leaders,
    parallel_answer,
    per_link_rate,
    sgd_answer,
)
from distbench.cli import COMMANDS
from distbench.collectives import collective_names

DATA = Path(__file__).parent / "data"
PARALLEL = ["--layers", "4", "--hidden", "64", "--heads", "4", "--seq", "16", "--vocab", "97",
            "--micro-batches", "4", "--iters", "2", "--warmup", "1", "--layouts", "2x1x1"]

# each command's small run and the headers that must be visible at every width (its
# priority-0 columns, as header words: a unit goes on the header's second line)
LIVE = {
    "allreduce": (["-b", "8", "-e", "64K", "-f", "32"],
                  ["size", "algorithm", "t_max", "busbw", "x native", "#wrong"]),
    "compress": (["-b", "64K", "-e", "256K", "-f", "4", "--gradients", "2", "-n", "3"],
                 ["size", "method", "wire", "total", "x ring", "break-even"]),
    "sgd": (["--mode", "sync,local", "--steps", "40", "--eval-every", "20"],
            ["mode", "steps", "test acc", "sent/rank", "to target"]),
    "fedavg": (["--rounds", "3", "--algorithm", "fedavg"],
               ["series", "rounds", "test acc", "up", "to target"]),
    "parallel": (PARALLEL, ["layout", "ZeRO", "step", "exposed"]),
}
WIDTHS = (80, 100, 120, 200)


def _pty_run(argv: list[str], width: int, timeout: float = 180) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal ``width`` columns wide
    (COLUMNS set too, as a shell does); returns (exit code, everything it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {**mpi_env(), "COLUMNS": str(width), "TERM": "xterm"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks, deadline, done_at = [], time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the terminal closed: every writer has exited
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:  # exited; a daemon it left may hold the terminal
            done_at = done_at or time.monotonic()
            if time.monotonic() - done_at > 2.0:
                break
    else:
        proc.kill()
    os.close(master)
    code = proc.wait(timeout=30)
    text = b"".join(chunks).decode("utf-8", "replace")
    return code, re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).replace("\r", "")


def _table_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(("│", "┃", "┏", "└", "├", "┡"))]


@pytest.mark.parametrize("command", list(LIVE))
def test_live_table_fits_the_terminal_without_cutting_a_cell(command, tmp_path):
    """The command under pseudo-terminals 80, 100, 120 and 200 columns wide (the four runs at
    once: each its own terminal and results folder)."""
    args, headers = LIVE[command]

    def one(width):
        return _pty_run([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, command, *args,
                         "--output", str(tmp_path / str(width))], width)

    with ThreadPoolExecutor(len(WIDTHS)) as pool:
        runs = dict(zip(WIDTHS, pool.map(one, WIDTHS), strict=True))
    for width, (code, text) in runs.items():
        assert code == 0, (width, text[-3000:])
        lines = _table_lines(text)
        assert lines, text[-3000:]
        assert "…" not in text, f"a cell was cut at {width} columns"
        assert max(len(ln) for ln in lines) <= width, f"wider than {width} columns"
        last = max(i for i, ln in enumerate(lines) if ln.startswith("┏"))
        head = "\n".join(lines[last:last + 4])  # the last table: the summary
        for h in headers:
            assert all(w in head for w in h.split()), (width, h, head)
        if command == "allreduce" and width >= 100:
            assert "% bound" in head, "from 100 columns the collectives keep % of bound"
        if width == 200 and command == "allreduce":
            assert "hidden to fit" not in text, "200 columns show every column"
        elif width == 80:
            assert "hidden to fit 80 columns" in text, "the caption says what it hid"


@pytest.mark.parametrize("width", (80, 120))
def test_offline_tables_fit_too(width, tmp_path):
    compare = ["compare", str(DATA / "suite" / "allreduce.json"), str(DATA / "compare" / "b")]
    for argv in (["model", "--ranks", "4,64", "-e", "1M"], compare):
        code, text = _pty_run([*DISTBENCH, *argv], width, timeout=60)
        assert code in (0, 1), text[-2000:]
        lines = _table_lines(text)
        assert lines and "…" not in text
        assert max(len(ln) for ln in lines) <= width, text[-2000:]


def test_info_wraps_long_values_instead_of_cutting(tmp_path):
    code, text = _pty_run([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, "info"], 80)
    assert code == 0, text[-2000:]
    lines = _table_lines(text)
    assert "…" not in text and max(len(ln) for ln in lines) <= 80


def test_columns_picks_and_wide_shows_all_and_unknown_is_a_usage_error(tmp_path):
    base = ["allreduce", "-b", "8", "-e", "8", "--algo", "ring", "--output", str(tmp_path)]
    code, text = _pty_run([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, *base,
                           "--columns", "size,algorithm,busbw"], 80)
    assert code == 0, text
    head = "\n".join(_table_lines(text)[:4])
    assert "busbw" in head and "t_max" not in head and "#wrong" not in head
    code, text = _pty_run([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, *base,
                           "--wide"], 80)
    head = "\n".join(_table_lines(text)[:4])
    assert code == 0 and "p99" in head and "count" in head and "hidden to fit" not in text
    proc = mpirun(2, [*base, "--columns", "size,nope"], timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert lines == ["Error: --columns: 'nope' is not a column of allreduce's tables (size, "
                     "count, algorithm, t_avg, t_min, t_max, p99, algbw, busbw, x_native, "
                     "bound, pct_bound, n_wrong, compute, total, overlap)"]


def test_piped_output_keeps_every_column(tmp_path):
    proc = subprocess.run([MPIRUN, "-n", "2", "--oversubscribe", *DISTBENCH, "allreduce", "-b",
                           "8", "-e", "8", "--output", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env={**mpi_env(), "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert all(h in proc.stdout for h in ("t_avg us", "p99 us", "bound us", "count"))
    assert "hidden to fit" not in proc.stdout


# ----------------------------------------------------------------------------- answers

def _records(name: str) -> list[dict]:
    return json.loads((DATA / "answers" / name).read_text())["records"]


def test_answer_of_a_recorded_run_names_the_fastest_and_the_crossover():
    lines = collective_answer(_records("allreduce_p2.json"))
    assert lines[0].startswith("Fastest: 8 B-2 KiB: native; 32 KiB-512 KiB: recursive_doubling "
                               "(x native 2.94-3.77"), lines
    assert lines[1] == "Crossovers: native -> recursive_doubling between 2 KiB and 32 KiB.", lines
    assert "recursive_doubling at 32 KiB-512 KiB" in lines[2]


def _rec(size, algo, x, lo, hi):
    return {"bytes": size, "algorithm": algo, "vs_native": x, "vs_native_ci": [lo, hi],
            "wrong": 0}


def test_overlapping_intervals_are_no_significant_difference():
    recs = [_rec(8, "native", 1, 1, 1), _rec(8, "ring", 1.05, 0.9, 1.2),
            _rec(16, "native", 1, 1, 1), _rec(16, "ring", 1.02, 0.95, 1.1)]
    lines = collective_answer(recs)
    assert lines[0] == "Fastest: 8 B-16 B: no significant difference between ring, native."
    assert lines[-1] == "The library's native call is never significantly beaten."
    assert not any(ln.startswith("Crossovers") for ln in lines)


def test_wrong_results_never_win_and_a_missing_interval_separates_nothing():
    recs = [_rec(8, "native", 1, 1, 1), {**_rec(8, "ring", 3, 2.5, 3.5), "wrong": 4},
            _rec(8, "tree", 2, 1.5, 2.5), {**_rec(8, "naive", 5, 0, 0), "vs_native_ci": None}]
    assert leaders({"a": (1, 0, 2), "b": (3, 2.5, 4)}, True) == ("b",)
    line = collective_answer(recs)[0]
    assert "ring" not in line and "no significant difference between naive" in line


def test_compress_answer_break_even_and_the_best_per_link():
    dense = {"bytes": 1 << 20, "method": "dense ring", "compressor": None,
             "link_bytes": 1 << 20}
    fast = {"bytes": 1 << 20, "method": "topk", "compressor": "topk", "link_bytes": 1 << 14,
            "compress_us": 100.0, "compress_us_ci": [90, 110], "decompress_us": 50.0,
            "decompress_us_ci": [45, 55], "break_even_gbps": 6.9}
    lines = compress_answer([dense, fast], [1e8, 1e11])
    assert lines[0] == "Pays off against a dense ring AllReduce on links: topk below 55.2 Gbit/s."
    assert lines[1].startswith("At 100 Mbit/s: 1 MiB topk")
    assert lines[2].startswith("At 100 Gbit/s: 1 MiB dense ring")


def test_training_answer_steps_bytes_and_time():
    a = {"mode": "sync", "step_to_target": 100, "bytes_to_target": 4000,
         "time_to_target_s": 1.0, "steps_per_s": 100.0, "steps_per_s_ci": [95, 105]}
    b = {"mode": "local", "local_steps": 4, "step_to_target": 160, "bytes_to_target": 1000,
         "time_to_target_s": 0.5, "steps_per_s": 320.0, "steps_per_s_ci": [300, 340]}
    c = {"mode": "async", "step_to_target": None}
    lines = sgd_answer([a, b, c], "train loss <= 0.3")
    assert lines[0] == ("First to the target (train loss <= 0.3) in steps: sync (100), then "
                        "local H=4 160; in bytes sent per rank: local H=4 (1000 B), then sync "
                        "3.9 KiB. Never reached: async.")
    assert lines[1].startswith("In time: local H=4 (0.5 s"), lines
    b["steps_per_s_ci"] = [50, 340]
    assert "no significant difference" in sgd_answer([a, b], "x")[1]
    assert sgd_answer([a], "")[0].startswith("No target set")


def test_the_best_compressor_per_link_rate():
    def summary(method, t, lo, hi):
        return {"mode": "sync", "compress": method, "time_to_target_s": t, "steps_per_s": 100.0,
                "steps_per_s_ci": [100.0 * t / hi, 100.0 * t / lo]}

    slow = [summary("none", 1.0, 0.95, 1.05), summary("powersgd", 0.1, 0.09, 0.11)]
    fast = [summary("none", 0.05, 0.04, 0.06), summary("powersgd", 0.055, 0.05, 0.06)]
    names, rows, lines = per_link_rate([(1e10, fast), (1e8, slow)])
    assert names == ["sync", "sync powersgd"] and [r[0] for r in rows] == [1e8, 1e10]
    assert rows[0][2] == pytest.approx((0.1, 0.09, 0.11))
    assert lines == ["At 100 Mbit/s: sync powersgd first (0.1 s).",
                     "At 10 Gbit/s: no significant difference between sync, sync powersgd."]


def test_parallel_answer_names_the_limit():
    base = {"kind": "step", "zero": 0, "bucket_mb": 25, "global_batch": 4, "bubble": 0.0}
    recs = [{**base, "layout": "4x1x1", "step_s": 0.4, "step_s_ci": [0.39, 0.41],
             "exposed_s": 0.2},
            {**base, "layout": "1x1x4", "step_s": 0.8, "step_s_ci": [0.78, 0.82],
             "exposed_s": 0.0, "bubble": 0.4}]
    assert parallel_answer(recs) == ["Fastest: 4x1x1 ZeRO 0, bucket 25 MiB (100 ms per "
                                     "sequence); limited by exposed communication (50 % of "
                                     "the step)."]


# ----------------------------------------------------------------------------- help

@pytest.mark.parametrize("command", [*COMMANDS, *collective_names()])
def test_help_ends_in_examples_and_groups_options(command):
    proc = serial([command, "--help"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    tail = text[text.rindex("Examples:"):]
    examples = [ln for ln in tail.splitlines()[1:] if ln.strip()]
    assert 2 <= len(examples) <= 4, tail
    assert all("distbench" in ln for ln in examples), tail
    assert "Options:" in text or "Run control:" in text


def test_help_starts_neither_mpi_nor_rich():
    """--help of every command loads neither mpi4py.MPI (no MPI start) nor rich (the help is
    click's): what keeps it quick (its time is measured in the docs, not here)."""
    code = ("import sys\nfrom distbench.cli import main\n"
            "sys.argv=['distbench',sys.argv[1],'--help']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('mpi4py.MPI','rich') if m in sys.modules))")
    for command in [*COMMANDS, "allreduce"]:
        proc = subprocess.run([sys.executable, "-c", code, command], capture_output=True,
                              text=True, timeout=60)
        assert proc.stdout.strip().splitlines()[-1] == "[]", (command, proc.stdout[-300:])
