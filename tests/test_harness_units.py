"""Serial unit tests of the harness: sizes, timing loop, metrics, results files, backends."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from checks import count_changed

from distbench.benchmarks.collective import SweepConfig, validate_sweep
from distbench.check import (
    PERIOD,
    Segment,
    fill_exact,
    fill_segments,
    input_table,
    mismatches,
    reduced_table,
)
from distbench.collectives import get_collective
from distbench.command import Iterations, Sizes
from distbench.errors import UsageError
from distbench.metrics import algbw, stats_from_matrix
from distbench.options import Size
from distbench.results import RunWriter, csv_text, new_run_dir
from distbench.runtime import Backend, array_module, get_backend, namespace_of
from distbench.timing import adaptive_iters, time_interleaved


class FakeComm:
    """Single-rank stand-in for the pieces of a communicator the timing loop uses."""

    def __init__(self):
        self.barriers = 0

    def Barrier(self):
        self.barriers += 1

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def allreduce(self, x, op=None):
        return x


@pytest.mark.parametrize("text,value", [("8", 8), ("64K", 65536), ("16M", 16 << 20),
                                        ("1G", 1 << 30), ("4KiB", 4096), ("2mb", 2 << 20)])
def test_size_suffixes_are_powers_of_1024(text, value):
    assert Size().convert(text, None, None) == value


@pytest.mark.parametrize("text", ["abc", "-8", "0", "1.5M", "K"])
def test_size_rejects_malformed(text):
    with pytest.raises(click.BadParameter):
        Size().convert(text, None, None)


def _sweep(min_bytes=8, max_bytes=64, factor=2, iters=None, **kw) -> SweepConfig:
    """A collective's configuration built by keyword, as the command line builds it."""
    return SweepConfig(algos=["native"], sizes=Sizes(min_bytes=min_bytes, max_bytes=max_bytes,
                                                     factor=factor),
                       iterations=Iterations(iters=iters), **kw)


def test_sweep_sizes_and_validation():
    assert _sweep(8, 64, 2).sizes.sweep() == [8, 16, 32, 64]
    assert _sweep(8, 100, 4).sizes.sweep() == [8, 32]
    for bad in (_sweep(64, 8), _sweep(8, 64, 1), _sweep(6, 64, dtype="float64"),
                _sweep(8, 64, iters=0)):
        with pytest.raises(UsageError):
            validate_sweep(bad)


def test_time_interleaved_alternates_blocks_and_counts_iterations():
    comm, calls = FakeComm(), []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = time_interleaved(comm, fns, {"a": 20, "b": 10}, warmup=3, rounds=5)
    assert len(times["a"]) == 20 and len(times["b"]) == 10
    assert np.all(times["a"] >= 0)
    timed = calls[6:]  # after 3 warm-up calls each
    assert calls[:6] == ["a"] * 3 + ["b"] * 3
    # five rounds; round r starts with a when r is even, with b when odd; blocks of 4 and 2
    expected = []
    for r in range(5):
        blocks = [["a"] * 4, ["b"] * 2]
        expected += sum(blocks if r % 2 == 0 else blocks[::-1], [])
    assert timed == expected
    assert comm.barriers == 6 + 30  # one untimed barrier before every call


def test_adaptive_iters_caps_by_budget_and_keeps_a_minimum():
    assert adaptive_iters(1e-6, 1000, 0.12) == 1000
    assert adaptive_iters(0.01, 100, 0.12) == 11
    assert adaptive_iters(1.0, 100, 0.12) == 5


def test_large_sizes_get_at_least_20_iterations_unless_the_time_is_capped(monkeypatch):
    """A 64 MiB-like call (30 ms) gets MIN_ITERS timed iterations; fewer (down to 5) only when
    the size's share of --max-time cannot hold them; -n is taken as given."""
    from distbench.benchmarks import collective

    monkeypatch.setattr(collective, "estimate_seconds", lambda comm, f, calls=2, sync=None: 0.03)
    monkeypatch.setattr(collective.watchdog, "enter", lambda *a, **k: None)
    fns = {"native": lambda: None, "ring": lambda: None}
    cfg = SweepConfig(algos=["ring"])
    iters, warm, _ = collective._iteration_plan(cfg, FakeComm(), fns, 64 << 20, None, str)
    assert iters == {"native": 20, "ring": 20} and warm == {"native": 2, "ring": 2}
    capped, _, _ = collective._iteration_plan(cfg, FakeComm(), fns, 64 << 20, None, str,
                                              share_s=0.6)
    assert set(capped.values()) == {9}  # 20 x 0.6 s / (2 calls x 20 x 1.1 x 30 ms)
    tiny, _, _ = collective._iteration_plan(cfg, FakeComm(), fns, 64 << 20, None, str,
                                            share_s=0.01)
    assert set(tiny.values()) == {5}
    given, _, _ = collective._iteration_plan(SweepConfig(algos=["ring"], iterations=Iterations(
        iters=3)), FakeComm(), fns, 64 << 20, None, str)
    assert set(given.values()) == {3}


def test_stats_over_ranks_and_iterations():
    # 2 ranks x 4 iterations, seconds
    allt = np.array([[1, 2, 3, 4], [4, 4, 1, 1]], dtype=float) * 1e-6
    st = stats_from_matrix(allt)
    assert st["t_min_us"] == pytest.approx(2.5) and st["t_max_us"] == pytest.approx(2.5)
    assert st["t_avg_us"] == pytest.approx(2.5)
    # completion = per-iteration max over ranks = [4, 4, 3, 4]
    assert st["p50_us"] == pytest.approx(4.0)
    assert st["p99_us"] == pytest.approx(4.0)
    allt = np.array([[1, 1], [3, 3]], dtype=float) * 1e-6
    st = stats_from_matrix(allt)
    assert (st["t_min_us"], st["t_avg_us"], st["t_max_us"]) == pytest.approx((1, 2, 3))


def test_algbw_busbw():
    assert algbw(1_000_000, 1e-3) == pytest.approx(1.0)
    factor = get_collective("allreduce").bus_factor
    assert 1.0 * factor(4) == pytest.approx(1.5)
    assert 2.0 * factor(2) == pytest.approx(2.0)
    assert 3.0 * factor(1) == 0.0


def test_run_dir_never_overwritten_and_files_rewritten_per_append(tmp_path):
    a = new_run_dir(tmp_path, "allreduce")
    b = new_run_dir(tmp_path, "allreduce")
    assert a != b and a.exists() and b.exists()
    w = RunWriter(None, "allreduce", tmp_path, {"x": 1}, {"ranks": 1})
    doc = json.loads(w.json_path.read_text())
    assert doc["records"] == [] and doc["config"] == {"x": 1}
    w.append([{"bytes": 8, "t": 1.0}])
    assert len(json.loads(w.json_path.read_text())["records"]) == 1
    w.append([{"bytes": 16, "t": 2.0, "extra": [1, 2]}])
    assert len(json.loads(w.json_path.read_text())["records"]) == 2
    assert w.csv_path.read_text().splitlines() == ["bytes,t,extra", "8,1.0,", "16,2.0,1;2"]
    assert not [p for p in w.path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_csv_text_union_of_fields():
    assert csv_text([{"a": 1}, {"b": 2}]).splitlines() == ["a,b", "1,", ",2"]


def test_fill_exact_is_small_integers_and_count_changed():
    buf = np.empty(5000, dtype=np.float32)
    fill_exact(buf, 3)
    assert buf.min() >= -8 and buf.max() <= 8 and np.all(buf == np.round(buf))
    part = np.empty(100, dtype=np.float32)
    fill_exact(part, 3, offset=4000)
    assert np.array_equal(part, buf[4000:4100])
    assert count_changed(FakeComm(), buf, 3) == 0
    buf[[7, 4999]] += 1
    assert count_changed(FakeComm(), buf, 3) == 2


@pytest.mark.parametrize("op", ["sum", "prod", "min", "max"])
def test_expected_results_equal_the_reduction_of_the_inputs(op):
    """The periodic tables describe exactly what reducing the ranks' filled buffers gives, for
    every rank count and op; PROD inputs are signed powers of two (exact products)."""
    n = 3 * PERIOD + 5
    reduce = {"sum": np.sum, "prod": np.prod, "min": np.min, "max": np.max}[op]
    for p in range(1, 6):
        bufs = np.empty((p, n), dtype=np.float64)
        for r in range(p):
            fill_exact(bufs[r], r, op=op)
        truth = reduce(bufs, axis=0)
        out = np.empty(n)
        segs = get_collective("allreduce").expected(n, p, 0, 0, op)
        fill_segments(out, segs)
        assert np.array_equal(out, truth), (op, p)
        assert mismatches(truth.astype(np.float32), segs) == 0
        assert np.array_equal(reduced_table(range(p), op), truth[:PERIOD])
    if op == "prod":
        assert set(np.unique(input_table(3, "prod"))) <= {-1, 1, 2}


def test_segments_with_a_phase_and_mismatch_counts():
    table = input_table(2)
    buf = np.zeros(40, dtype=np.int32)
    fill_segments(buf, [Segment(10, 40, table, phase=5)])
    assert np.array_equal(buf[:10], np.zeros(10))
    ref = np.empty(30, dtype=np.int32)
    fill_exact(ref, 2, offset=5)
    assert np.array_equal(buf[10:], ref)
    buf[[12, 39]] += 1
    assert mismatches(buf, [Segment(10, 40, table, phase=5)]) == 2


def test_backend_choice_and_clean_gpu_error():
    assert array_module("cpu") is np
    assert namespace_of(np.zeros(1)) is np
    with pytest.raises(UsageError):
        array_module("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="CuPy"):
            get_backend("gpu")
    with pytest.raises(UsageError):
        get_backend("cpu", gpu_aware="maybe")
    b = get_backend("cpu")
    assert isinstance(b, Backend) and not b.on_gpu and b.wrap_comm("c") == "c"
