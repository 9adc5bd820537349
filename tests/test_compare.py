"""``distbench compare``: row matching, B/A ratios, spread marks, environment differences and
the regression exit code, on runs recorded by the real benchmarks (tests/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distbench.analysis.compare import Match, match, parse_percent
from distbench.cli import main
from distbench.errors import UsageError
from distbench.results import find_docs

DATA = Path(__file__).parent / "data"
P2 = DATA / "model" / "p2"


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    """Copy a run folder, applying ``edit(doc)`` to its JSON document."""
    shutil.copytree(src, dst)
    [path] = dst.glob("*.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return dst


def _slow_down(factor):
    def edit(doc):
        for rec in doc["records"]:
            for k in ("t_min_us", "t_avg_us", "t_max_us", "p50_us", "p99_us"):
                rec[k] *= factor
            rec["busbw_gbps"] /= factor
            rec["algbw_gbps"] /= factor
    return edit


def test_same_run_gives_ratio_one_and_exit_zero(capsys):
    code, out, _ = _cli(capsys, P2, P2, "--fail-on-regression", "0%")
    assert code == 0
    assert "Same environment" in out and "No row significantly slower by more than 0 %" in out
    n = len(json.loads((P2 / "allreduce.json").read_text())["records"])
    assert f"Matched {n} rows; only in A: 0, only in B: 0" in out.replace("\n", " ")
    assert out.count("1.000") >= 2 * n            # time and busbw ratios


def test_two_real_runs_match_row_by_row():
    found_a, found_b = find_docs(P2), find_docs(DATA / "compare" / "b")
    matches, only_a, only_b = match(found_a, found_b)
    recs_a = {(r["algorithm"], r["bytes"]): r for r in found_a[0][1]["records"]}
    recs_b = {(r["algorithm"], r["bytes"]): r for r in found_b[0][1]["records"]}
    assert len(matches) == len(recs_a) == len(recs_b) and only_a == only_b == 0
    for m in matches:
        key = (m.key[1], m.key[4])                  # algorithm, bytes
        a, b = recs_a[key], recs_b[key]
        assert m.time_ratio == pytest.approx(b["t_max_us"] / a["t_max_us"])
        assert m.rate_ratio == pytest.approx(b["busbw_gbps"] / a["busbw_gbps"])
        spread = max(a["p99_us"] / a["p50_us"], b["p99_us"] / b["p50_us"]) - 1
        assert m.spread == pytest.approx(spread)


def test_regression_threshold_sets_the_exit_code(tmp_path, capsys):
    slow = _edited_copy(P2, tmp_path / "slow", _slow_down(10.0))
    matches, _, _ = match(find_docs(P2), find_docs(slow))
    # these rows (written before intervals existed) are decided by their spread: a 10x
    # slowdown is significant where p99/p50 - 1 is below 900 %
    significant = [m for m in matches if m.spread < 9.0]
    assert 0 < len(significant) < len(matches)
    assert {m.decided_by for m in matches} == {"spread"}
    code, out, _ = _cli(capsys, P2, slow, "--fail-on-regression", "50%")
    assert code == 1
    assert f"Regression: {len(significant)} row(s) significantly slower by more than 50 %" in out
    assert "B/A = 10.000" in out
    code, out, _ = _cli(capsys, P2, slow, "--fail-on-regression", "950%")
    assert code == 0
    code, _, _ = _cli(capsys, slow, P2, "--fail-on-regression", "1%")   # B faster: fine
    assert code == 0


def test_intervals_decide_when_present(tmp_path, capsys):
    """Rows with intervals: significant only when they do not overlap; the effect size and
    the interval of B/A are shown; --fail-on-regression counts significant rows only."""
    overlapping = Match(("allreduce",), 100.0, 110.0, None, None, None, [90.0, 115.0],
                        [100.0, 120.0])
    assert overlapping.change == "" and overlapping.decided_by == "intervals"
    assert overlapping.ratio_ci == pytest.approx([100 / 115, 120 / 90])
    apart = Match(("allreduce",), 100.0, 130.0, None, None, 0.5, [95.0, 105.0], [125.0, 135.0])
    assert apart.change == "slower" and apart.effect_pct == pytest.approx(30.0)
    faster = Match(("allreduce",), 100.0, 70.0, None, None, None, [95.0, 105.0], [65.0, 75.0])
    assert faster.change == "faster"

    def with_ci(width, factor):
        def edit(doc):
            for rec in doc["records"]:
                rec["t_max_us"] *= factor
                rec["t_max_us_ci"] = [rec["t_max_us"] * (1 - width), rec["t_max_us"] * (1 + width)]
        return edit

    a = _edited_copy(P2, tmp_path / "a", with_ci(0.05, 1.0))
    b = _edited_copy(P2, tmp_path / "b", with_ci(0.05, 1.3))
    wide = _edited_copy(P2, tmp_path / "wide", with_ci(0.3, 1.3))
    code, out, _ = _cli(capsys, a, b, "--fail-on-regression", "20%")
    assert code == 1 and "Regression: 42 row(s) significantly slower by more than 20 %" in out
    assert "+30.0 %" in out and "intervals" in out
    code, out, _ = _cli(capsys, a, wide, "--fail-on-regression", "20%")
    assert code == 0, "30 % slower but within the intervals: not significant"
    code, _, _ = _cli(capsys, a, b, "--fail-on-regression", "40%")
    assert code == 0, "significant, but smaller than the threshold"


def test_change_is_marked_only_beyond_the_spread():
    assert Match(("allreduce",), 100.0, 150.0, None, None, 0.2).change == "slower"
    assert Match(("allreduce",), 100.0, 115.0, None, None, 0.2).change == ""
    assert Match(("allreduce",), 100.0, 80.0, None, None, 0.2).change == "faster"
    assert Match(("allreduce",), 100.0, 90.0, None, None, 0.2).change == ""
    assert Match(("allreduce",), 100.0, 900.0, None, None, None).change == ""


def test_environment_differences_in_the_header(tmp_path, capsys):
    def edit(doc):
        doc["environment"]["mpi_library"] = "MPICH Version: 4.2.0"
        doc["environment"]["hostnames"] = ["node1"]
    other = _edited_copy(P2, tmp_path / "other", edit)
    code, out, _ = _cli(capsys, P2, other)
    assert code == 0
    assert "Environments differ" in out
    assert "mpi_library: A = Open MPI" in out and "B = MPICH Version: 4.2.0" in out
    assert "hostnames: A = vm | B = node1" in out


def test_nothing_to_match_is_a_usage_error(capsys):
    code, _, err = _cli(capsys, P2, DATA / "model" / "p4")
    assert code == 2 and err.startswith("Error: no rows of") and err.count("\n") == 1


@pytest.mark.parametrize("text,value", [("5%", 5.0), ("12.5%", 12.5), ("0%", 0.0)])
def test_parse_percent(text, value):
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["abc", "-3%", "nan", "nan%", "inf%", "1e400%", "5", "2000%"])
def test_parse_percent_rejects(text, capsys):
    with pytest.raises(UsageError):
        parse_percent(text)
    code, _, err = _cli(capsys, P2, P2, "--fail-on-regression", text)
    assert code == 2 and "--fail-on-regression" in err


def test_suites_match_every_benchmark(capsys):
    """A suite folder from `make bench-run`: allreduce rows, compress rows and SGD summaries."""
    suite = DATA / "suite"
    docs = {d["benchmark"]: d for _, d in find_docs(suite)}
    expected = (len(docs["allreduce"]["records"]) + len(docs["compress"]["records"])
                + sum(r.get("kind") == "summary" for r in docs["sgd"]["records"])
                + sum(r.get("kind") == "summary" for r in docs["fedavg"]["records"]))
    matches, only_a, only_b = match(find_docs(suite), find_docs(suite))
    assert len(matches) == expected and only_a == only_b == 0
    assert {m.key[0] for m in matches} == {"allreduce", "compress", "sgd", "fedavg"}
    trained = [m for m in matches if m.key[0] in ("sgd", "fedavg")]
    assert all(m.rate_a and m.time_ratio == 1.0 and m.rate_ratio == 1.0 for m in trained)
    code, out, _ = _cli(capsys, suite, suite, "--fail-on-regression", "0%")
    assert code == 0 and "compress topk" in out and "sgd sync" in out
    assert "fedavg fedsgd" in out and "fedavg fedavg" in out
