"""Algorithms and compressors from other distributions, discovered through entry points
(``importlib.metadata``): a real ``.dist-info`` with an ``entry_points.txt`` on the path.

The plug-in distribution ``distbench-demo-plugins 0.3`` declares a correct AllReduce (a ring
written against the registry's interface), a deliberately wrong one, one declared with its byte
formula, a compressor, and (in a second distribution) one whose import fails; a third
distribution's name clashes with a built-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from launch import DISTBENCH, MPIRUN, error_lines, mpi_env

from distbench.launcher import launched_by_mpirun

pytestmark = pytest.mark.skipif(launched_by_mpirun(), reason="serial tests: they launch mpirun")

PLUGIN = '''
"""Demo plug-ins for distbench (a test fixture)."""
import numpy as np

from distbench.algorithms.compression.dense import FP16
from distbench.collectives.allreduce import ring
from distbench.registry import Algorithm


def pairwise(comm, sendbuf, recvbuf, op=None):
    """Correct: the built-in ring under another name."""
    ring.allreduce(comm, sendbuf, recvbuf, op)


def scribbler(comm, sendbuf, recvbuf, op=None):
    """Right result, but it writes over its send buffer (what an in-place bug does)."""
    ring.allreduce(comm, sendbuf, recvbuf, op)
    if sendbuf.size:
        sendbuf[:] = 0


def off_by_one(comm, sendbuf, recvbuf, op=None):
    """Wrong on purpose: one element off."""
    ring.allreduce(comm, sendbuf, recvbuf, op)
    if recvbuf.size:
        recvbuf[-1] += 1


def _bytes(rank, ranks, count, itemsize):
    return ring.bytes_sent(rank, ranks, count, itemsize)


DECLARED = Algorithm(pairwise, cost=ring.cost, bytes_sent=_bytes)


class Half(FP16):
    """fp16 under another name (a compressor class)."""

    name = "half"
'''


def _dist(site, name, version, entry_points):
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "demo_plugins.py").write_text(PLUGIN)
    _dist(site, "distbench-demo-plugins", "0.3", """
        [distbench.allreduce]
        pairwise = demo_plugins:pairwise
        off_by_one = demo_plugins:off_by_one
        declared = demo_plugins:DECLARED

        [distbench.compressors]
        half = demo_plugins:Half
        """)
    _dist(site, "distbench-broken", "1.0", """
        [distbench.allreduce]
        broken = no_such_module_anywhere:allreduce
        """)
    return site


def _env(site, *extra):
    env = mpi_env()
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in (site, *extra)])
    return env


def _run(site, n, args, *extra_paths):
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", *DISTBENCH, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env=_env(site, *extra_paths))


def test_registries_discover_plugins_in_process(site):
    code = textwrap.dedent("""
        import json
        from distbench.algorithms.compression import COMPRESSORS, make_compressor
        from distbench.collectives import ALLREDUCE
        out = {"algos": list(ALLREDUCE), "methods": list(COMPRESSORS),
               "source": ALLREDUCE.source("pairwise"), "builtin": ALLREDUCE.source("ring"),
               "declared": ALLREDUCE.spec("declared").bytes_sent(0, 2, 10, 4),
               "half": make_compressor("half").name, "warnings": ALLREDUCE.warnings}
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_env(site))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["algos"][:7] == ["native", "naive", "ring", "tree", "recursive_doubling",
                                "rabenseifner", "hierarchical"]
    assert {"pairwise", "off_by_one", "declared"} <= set(out["algos"])
    assert "broken" not in out["algos"]
    assert out["methods"][-1] == "half" and out["half"] == "half"
    assert out["source"] == "distbench-demo-plugins 0.3" and out["builtin"] is None
    assert out["declared"] == 40, "the declared byte formula (n at p = 2) comes with it"
    [warning] = out["warnings"]
    assert "broken" in warning and "distbench-broken 1.0" in warning


def test_plugin_measured_checked_and_recorded_like_a_builtin(site, tmp_path):
    proc = _run(site, 2, ["allreduce", "--algo", "ring,pairwise,declared", "-b", "8",
                          "-e", "4K", "-f", "8", "-n", "5", "--output", str(tmp_path), "--json"])
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    by = {}
    for r in recs:
        by.setdefault(r["algorithm"], []).append(r)
    assert set(by) == {"native", "ring", "pairwise", "declared"}
    assert all(r["wrong"] == 0 and r["t_max_us"] > 0 and r["vs_native"] for r in recs)
    assert {r["source"] for r in by["pairwise"]} == {"distbench-demo-plugins 0.3"}
    assert {r["source"] for r in by["ring"]} == {None}
    lines = error_lines(proc.stderr)
    assert sum("Warning: skipping plug-in algorithm 'broken'" in line for line in lines) == 1, \
        "one warning (rank 0), naming the plug-in, and the run goes on"
    assert "plug-ins: declared from distbench-demo-plugins 0.3" in " ".join(proc.stderr.split())
    [folder] = list(tmp_path.iterdir())
    for cmd in (["report", str(folder)], ["compare", str(folder), str(folder)]):
        done = subprocess.run([*DISTBENCH, *cmd], capture_output=True, text=True, timeout=120,
                              env=_env(site))
        assert done.returncode == 0, done.stderr
    assert "pairwise" in (folder / "REPORT.md").read_text()


def test_wrong_plugin_in_algo_all_is_reported_and_exits_1(site, tmp_path):
    proc = _run(site, 2, ["allreduce", "--algo", "all", "-b", "64", "-e", "64", "-n", "3",
                          "--output", str(tmp_path), "--json"])
    assert proc.returncode == 1
    recs = {r["algorithm"]: r for r in json.loads(proc.stdout)}
    assert "off_by_one" in recs and "pairwise" in recs and "hierarchical" in recs
    assert recs["off_by_one"]["wrong"] >= 1
    assert all(r["wrong"] == 0 for a, r in recs.items() if a != "off_by_one")
    assert any("wrong element" in line for line in error_lines(proc.stderr))


def test_plugin_compressor_in_method_all(site, tmp_path):
    proc = _run(site, 2, ["compress", "--method", "all", "-b", "4K", "-e", "4K", "--gradients", "2",
                          "-n", "2", "--output", str(tmp_path), "--json"])
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    [half] = [r for r in recs if r.get("compressor") == "half"]
    assert half["source"] == "distbench-demo-plugins 0.3"
    assert half["wire_bytes"] == 2 * 1024 and half["mean_step_error"] < 1e-2


def test_name_clash_with_a_builtin_is_a_usage_error(site, tmp_path):
    clash = tmp_path / "clash"
    clash.mkdir()
    _dist(clash, "distbench-clash", "2.0", """
        [distbench.allreduce]
        ring = demo_plugins:pairwise
        """)
    proc = _run(site, 2, ["allreduce", "-e", "64", "--output", str(tmp_path)], clash)
    assert proc.returncode == 2
    [line] = [x for x in error_lines(proc.stderr) if not x.startswith("Warning:")]
    assert line.startswith("Error:") and "'ring'" in line and "distbench-clash 2.0" in line
    assert "Traceback" not in proc.stderr


def test_an_algorithm_that_writes_its_send_buffer_is_the_only_one_blamed(site, tmp_path):
    """The inputs are refilled after an algorithm changed them, so the algorithms checked
    after it at the same size are judged on the right inputs: only the culprit is wrong."""
    extra = tmp_path / "scribble"
    extra.mkdir()
    _dist(extra, "distbench-scribble", "0.1", """
        [distbench.allreduce]
        scribbler = demo_plugins:scribbler
        """)
    proc = _run(site, 2, ["allreduce", "--algo", "scribbler,ring,pairwise", "-b", "64",
                          "-e", "4K", "-f", "8", "-n", "3", "--output", str(tmp_path / "out"),
                          "--json"], extra)
    assert proc.returncode == 1, proc.stderr
    recs = json.loads(proc.stdout)
    assert {r["algorithm"] for r in recs} == {"native", "scribbler", "ring", "pairwise"}
    for r in recs:
        if r["algorithm"] == "scribbler":
            assert r["wrong"] >= 1, r
        else:
            assert r["wrong"] == 0, (r["algorithm"], r["bytes"], r["wrong"])
