"""distbench replay: the ResNet execution trace's ops and bytes at 2 ranks, a schema 1.0 trace
and a PARAM trace with uneven all-to-all-v at 3 and 4 ranks (exact, bytes counted), a parallel
step exported and replayed (the same bytes per rank and group), rescaling with --ranks, and bad
traces (one line, exit 2, nothing written)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from launch import mpirun, usage_error_line

from distbench.collectives import get_collective
from distbench.traces import read_trace

DATA = Path(__file__).parent / "data" / "traces"
RESNET = DATA / "resnet_2gpu_et.json.gz"  # a real DDP iteration (see the folder's README)
QUICK = ["-n", "1", "-w", "0", "--json", "--quiet"]


def _replay(n, trace, args, tmp_path, timeout=300):
    proc = mpirun(n, ["replay", *map(str, trace if isinstance(trace, list) else [trace]),
                      *QUICK, *args, "--output", str(tmp_path)], timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _formula(coll: str, algo: str, ranks: int, rank: int, count: int, itemsize: int) -> int:
    return get_collective(coll).registry.spec(algo).bytes_sent(rank, ranks, count, itemsize)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    return _replay(2, RESNET, ["--algo", "allreduce=ring,bcast=binomial"],
                   tmp_path_factory.mktemp("resnet"))


def test_the_resnet_trace_is_its_table_and_every_op_exact(resnet):
    ops = [r for r in resnet if r["kind"] == "op"]
    n, elems = Counter(), Counter()
    for r in ops:
        n[r["collective"], r["dtype"]] += 1
        elems[r["collective"], r["dtype"]] += r["count"]
    assert n == {("allreduce", "float32"): 15, ("bcast", "float32"): 3, ("bcast", "int64"): 3}
    assert elems[("allreduce", "float32")] == 76_671_096
    assert elems[("bcast", "float32")] == 159_360 and elems[("bcast", "int64")] == 159
    assert all(r["wrong"] == 0 for r in ops)
    assert sum(r["nonblocking"] for r in ops) == 6, "the broadcasts, completed at their waits"
    trace = read_trace([str(RESNET)])
    assert trace.unknown == {} and sum(o.collective == "wait" for o in trace.ops(0)) == 6


def test_the_resnet_bytes_each_rank_sends_are_the_algorithms_formula(resnet):
    it = next(r for r in resnet if r["kind"] == "iteration")
    ops = [r for r in resnet if r["kind"] == "op"]
    for rank in range(2):
        want = sum(_formula(r["collective"], r["algorithm"], 2, rank, r["count"],
                            r["bytes"] // max(r["count"], 1)) for r in ops)
        assert it["bytes_sent_per_rank"][rank] == want


@pytest.mark.parametrize("n, trace, algo", [
    (3, DATA / "et_1.0_3ranks.json", "alltoallv=pairwise,allgather=ring,reduce-scatter=ring"),
    (4, DATA / "param_4ranks.json", "alltoallv=pairwise"),
    (4, DATA / "param_4ranks.json", "alltoallv=naive")])
def test_schema_1_0_and_param_traces_with_uneven_alltoallv(n, trace, algo, tmp_path):
    recs = _replay(n, trace, ["--algo", algo], tmp_path)
    ops = [r for r in recs if r["kind"] == "op"]
    assert ops and all(r["wrong"] == 0 for r in ops if r["collective"] != "barrier")
    it = next(r for r in recs if r["kind"] == "iteration")
    assert it["unknown"] == 1, "the trace's one op replay does not know"
    if n == 4:  # native allreduce 4000 B, reduce 512 B, the [1, 3] group's allreduce 256 B,
        # and the pairwise blocks for the other ranks: (10 - split[r]) floats
        want = [4000 + 512 + (10 - s) * 4 + (256 if r in (1, 3) else 0)
                for r, s in enumerate([1, 2, 3, 4])]
        assert it["bytes_sent_per_rank"] == want


def test_a_parallel_step_exported_and_replayed_sends_the_same_bytes(tmp_path):
    step = ["--layers", "4", "--hidden", "64", "--heads", "4", "--seq", "16", "--vocab", "97",
            "--micro-batches", "4", "--iters", "2", "--layouts", "2x1x2", "--zero", "2",
            "--dp-algo", "ring", "--tp-algo", "ring"]
    trace = tmp_path / "step.json"
    proc = mpirun(4, ["parallel", *step, "--export-trace", str(trace), "--json", "--quiet",
                      "--output", str(tmp_path / "p")], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = next(r for r in json.loads(proc.stdout) if r.get("kind") == "step")
    recs = _replay(4, trace, ["--algo", "allreduce=ring,reduce-scatter=ring,allgather=ring"],
                   tmp_path / "r")
    it = next(r for r in recs if r["kind"] == "iteration")
    ops = [r for r in recs if r["kind"] == "op"]
    assert all(r["wrong"] == 0 for r in ops if r["wrong"] is not None)
    for rank, groups in enumerate(it["bytes_by_group"]):
        dp = next(v for k, v in groups.items() if set(map(int, k.split(","))) ==
                  {rank - rank % 2, rank - rank % 2 + 1})
        pp = next(v for k, v in groups.items() if set(map(int, k.split(","))) ==
                  {rank % 2, rank % 2 + 2})
        assert dp == rec["bytes_dp_per_rank"][rank]
        assert pp == rec["bytes_pp_per_rank"][rank]
    chakra = tmp_path / "chakra.json"
    proc = mpirun(4, ["parallel", *step, "--export-trace", str(chakra), "--trace-format",
                      "chakra", "--quiet", "--output", str(tmp_path / "c")], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(tmp_path.glob("chakra_*.json"))
    assert len(files) == 4
    again = _replay(4, files, ["--algo", "allreduce=ring,reduce-scatter=ring,allgather=ring"],
                    tmp_path / "c2")
    assert next(r for r in again if r["kind"] == "iteration")["bytes_sent_per_rank"] == \
        it["bytes_sent_per_rank"]


def test_ranks_rescales_keeping_each_ops_payload(tmp_path):
    recs = _replay(4, RESNET, ["--ranks", "4", "--algo", "allreduce=ring,bcast=binomial"],
                   tmp_path, timeout=600)
    ops = [r for r in recs if r["kind"] == "op"]
    assert sum(r["count"] for r in ops if r["collective"] == "allreduce") == 76_671_096
    assert all(r["group_size"] == 4 and r["wrong"] == 0 for r in ops)
    it = next(r for r in recs if r["kind"] == "iteration")
    ring = sum(_formula("allreduce", "ring", 4, 0, r["count"], 4) for r in ops
               if r["collective"] == "allreduce")
    assert abs(ring - sum(2 * 3 / 4 * r["count"] * 4 for r in ops
                          if r["collective"] == "allreduce")) < 15 * 4 * 4, "2(p-1)/p n"
    bcast = sum(_formula("bcast", "binomial", 4, 0, r["count"], r["bytes"] // r["count"])
                for r in ops if r["collective"] == "bcast")
    assert it["bytes_sent_per_rank"][0] == ring + bcast


def _bad(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "truncated.json.gz").write_bytes(gzip.compress(b'{"schema": "1.1.0-chakra"' * 100)[:40])
    (d / "text.json").write_text("not json {")
    (d / "schema.json").write_text(json.dumps({"schema": "2.0.0", "nodes": []}))
    (d / "negative.json").write_text(json.dumps([{"comms": "all_reduce", "in_msg_size": -4}]))
    (d / "huge.json").write_text(json.dumps([{"comms": "all_reduce",
                                              "in_msg_size": 1 << 50}]))
    return d


@pytest.mark.parametrize("name, needle", [
    ("truncated.json.gz", "not a complete gzip file"), ("text.json", "not JSON"),
    ("schema.json", "schema '2.0.0'"), ("negative.json", "in_msg_size -4"),
    ("huge.json", "in_msg_size 1125899906842624"),
    ("RESNET", "recorded at 2 ranks, the job has 3"), ("STRICT", "--strict")])
def test_bad_traces_are_one_line_exit_2_and_nothing_written(name, needle, tmp_path):
    d = _bad(tmp_path)
    trace = {"RESNET": RESNET, "STRICT": DATA / "et_1.0_3ranks.json"}.get(name, d / name)
    extra = ["--strict"] if name == "STRICT" else []
    out = tmp_path / "out"
    proc = mpirun(3, ["replay", str(trace), *extra, "--output", str(out)], timeout=120)
    line = usage_error_line(proc)
    assert needle in line, line
    assert not out.exists() or not any(out.iterdir()), "nothing written"


def test_unknown_choices_are_usage_errors(tmp_path):
    proc = mpirun(2, ["replay", str(RESNET), "--algo", "allreduce=nope", "--output",
                      str(tmp_path)], timeout=60)
    assert "nope" in usage_error_line(proc)
    proc = mpirun(2, ["replay", str(RESNET), "--algo", "ring", "--output", str(tmp_path)],
                  timeout=60)
    assert "COLLECTIVE=ALGORITHM" in usage_error_line(proc)
