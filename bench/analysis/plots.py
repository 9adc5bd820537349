"""PNG plots of distbench runs (matplotlib's Agg renderer, no display needed).

Each function draws one figure from result records (``distbench.results.load_run`` documents)
and writes it with :func:`save`; it returns the file's path. Figures are built on
``matplotlib.figure.Figure`` directly, never through pyplot's global state, so no GUI backend
is loaded (``savefig`` renders PNG with Agg) and nothing leaks between calls. Colours are fixed
per series name so an algorithm has the same colour in every plot; the baselines (``native``,
the dense exchange ``none``) are black and dashed.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullLocator

from distbench.collectives import collective_names, get_collective
from distbench.results import atomic_write

# a figure of records with missing or empty columns says so in its table; matplotlib's
# "no positive values to log-scale" and the like would only precede a report's one line
warnings.filterwarnings("ignore", category=UserWarning, module="matplotlib")
warnings.filterwarnings("ignore", category=UserWarning, module=__name__)

BASELINES = ("native", "dense native", "dense ring")
DPI = 110
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#bcbd22", "#17becf"]
@functools.lru_cache(maxsize=1)
def _families() -> tuple:
    """The names of series that share a plot, each family from its registry (so they get
    distinct colours): every collective's algorithms but the baselines, the compressors, the
    SGD modes, the federated algorithms."""
    # the registries, on the first plot (report of a collective's run loads no algorithms)
    from distbench.algorithms.compression import COMPRESSORS
    from distbench.algorithms.federated import ALGORITHMS
    from distbench.algorithms.sgd import MODES

    names: list[str] = []
    for c in collective_names():
        decl = get_collective(c)
        names += [a for a in decl.algorithms() if a != decl.baseline and a not in names]
    return names, list(COMPRESSORS), list(MODES), list(ALGORITHMS)


def _base(name: str) -> str:
    """``topk(0.01)+EF`` -> ``topk``; ``local H=4`` -> ``local``."""
    return name.split(" ")[0].split("(")[0].split("+")[0]


def color(name: str) -> str:
    """A stable colour per series name (black / grey for the baselines)."""
    if name in BASELINES:
        return "#666666" if name == "dense ring" else "black"
    base = _base(name)
    families = _families()
    idx = next((f.index(base) for f in families if base in f), sum(map(ord, base)))
    return _PALETTE[idx % len(_PALETTE)]


def style(name: str) -> dict:
    """Line keyword arguments: dashed without markers for the baselines (native, the dense
    AllReduce of the compression benchmark), solid with markers for the rest; a method with
    error feedback (``+EF``) keeps its compressor's colour."""
    if name in BASELINES:
        return {"color": color(name), "linestyle": "--", "linewidth": 1.6, "marker": None}
    return {"color": color(name), "linestyle": "-", "linewidth": 1.3, "marker": "o",
            "markersize": 3}


def _bytes_label(x, _pos=None) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if x >= scale:
            v = x / scale
            return f"{v:.0f}{unit}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}{unit}"
    return f"{x:.0f}" if x >= 1 else f"{x:.2g}"


def _num_label(x, _pos=None) -> str:
    return f"{x:g}"


def _log_axis(ax, axis: str = "x", in_bytes: bool = False, numticks: int = 8) -> None:
    """Log scale with plain tick labels (base 2 and K/M/G for bytes); no mathtext, which
    would take most of the drawing time."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2 if in_bytes else 10)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if in_bytes:
        target.set_major_locator(LogLocator(base=2, numticks=numticks))
    target.set_major_formatter(FuncFormatter(_bytes_label if in_bytes else _num_label))
    if in_bytes:
        target.set_minor_locator(NullLocator())
        return

    def minor(x, _pos=None) -> str:
        # label 2x and 5x when the axis spans less than ~1.5 decades (else 1 label or none)
        lo, hi = sorted(target.get_view_interval())
        lead = f"{x:.0e}"[0]
        return f"{x:g}" if lo > 0 and hi / lo < 30 and lead in "25" else ""

    target.set_minor_formatter(FuncFormatter(minor))


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG (``DPI`` dots per inch), atomically: rendered in memory, then
    written through :func:`distbench.results.atomic_write`, so a full disk leaves no partial
    file (and raises DistbenchError naming the path and the errno)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write(Path(path), buf.getvalue())
    return path


def _series(records: Sequence[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for rec in records:
        out.setdefault(str(rec[key]), []).append(rec)
    return out


def _draw(ax, series: dict[str, list[dict]], x: str, y: str, order=None,
          positive: bool = False) -> None:
    """One line per series (``positive``: drop points <= 0, for log axes)."""
    names = sorted(series, key=lambda n: (n not in BASELINES, order.index(n) if order and
                                          n in order else 99, n))
    for name in names:
        pts = sorted((r[x], r[y]) for r in series[name] if isinstance(r.get(y), (int, float))
                     and r.get(x) is not None and (not positive or r[y] > 0))
        if pts:
            xy = np.array(pts, dtype=np.float64)
            ax.plot(xy[:, 0], xy[:, 1], label=name, **style(name))


def _legend(ax, **kwargs) -> None:
    """The axes' legend, when something on them has a label (an empty legend only warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def allreduce_plot(records: Sequence[dict], path: Path, metric: str, title: str) -> Path:
    """busbw (``metric="busbw_gbps"``) or latency (``"t_max_us"``) vs message size, log-log,
    one line per algorithm, native dashed."""
    fig = Figure(figsize=(7.5, 4.8))
    fig.subplots_adjust(left=0.125, right=0.97, top=0.93, bottom=0.11)
    ax = fig.add_subplot()
    _draw(ax, _series(records, "algorithm"), "bytes", metric, _families()[0])
    _log_axis(ax, "x", in_bytes=True, numticks=14)
    _log_axis(ax, "y")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel({"busbw_gbps": "bus bandwidth (GB/s)", "t_max_us": "time t_max (us)"}
                  .get(metric, metric))
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8, ncol=2)
    return save(fig, path)


def model_check_plot(rows, path: Path, title: str) -> Path:
    """Measured (markers) and predicted (lines) time vs size per algorithm, log-log; ``rows``
    are :class:`distbench.analysis.fit.CheckRow`."""
    fig = Figure(figsize=(7.5, 4.8))
    fig.subplots_adjust(left=0.125, right=0.97, top=0.93, bottom=0.11)
    ax = fig.add_subplot()
    for algo in dict.fromkeys(r.algorithm for r in rows):
        pts = sorted((r.nbytes, r.measured_us, r.predicted_us) for r in rows
                     if r.algorithm == algo)
        xs, meas, pred = np.array(pts, dtype=np.float64).T
        c = color(algo)
        ax.plot(xs, pred, color=c, linestyle="--" if algo == "native" else "-", linewidth=1.2,
                label=f"{algo} model")
        ax.plot(xs, meas, color=c, linestyle="none", marker="o", markersize=4)
    _log_axis(ax, "x", in_bytes=True, numticks=14)
    _log_axis(ax, "y")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("time p50 (us): dots measured, lines model")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8, ncol=2)
    return save(fig, path)


def panels(records: Sequence[dict], path: Path, key: str, x: str, ys: Sequence[tuple],
           title: str, xlabel: str, ncols: int | None = None,
           order: Sequence[str] | None = None) -> Path:
    """Panels of ``field`` vs the byte size ``x`` (log-log) for each ``(field, label)`` in
    ``ys``, one line per value of ``key``, ``ncols`` panels per row (default: all in one).
    Fields with "bytes" in their name get byte tick labels; points <= 0 are left out."""
    ncols = ncols or len(ys)
    nrows = -(-len(ys) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.5 * nrows + 0.4))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.92 if nrows > 1 else 0.88,
                        bottom=0.08 if nrows > 1 else 0.14, wspace=0.25, hspace=0.3)
    series = _series(records, key)
    for i, (field, label) in enumerate(ys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _draw(ax, series, x, field, list(order) if order else None, positive=True)
        _log_axis(ax, "x", in_bytes=True)
        _log_axis(ax, "y", in_bytes="bytes" in field)
        if i >= len(ys) - ncols:
            ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
        if i == 0:
            _legend(ax, fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def grid_panels(records: Sequence[dict], path: Path, key: str, rows: Sequence[tuple],
                cols: Sequence[tuple], title: str) -> Path:
    """A grid of panels: row i plots field ``rows[i] = (field, label, log_y)`` against column
    j's x field ``cols[j] = (field, label, log_x)``, one line per value of ``key`` (used for
    SGD: loss and accuracy vs step, bytes sent and wall time)."""
    fig = Figure(figsize=(4.0 * len(cols), 3.3 * len(rows)))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.08, wspace=0.22,
                        hspace=0.12)
    series = _series(records, key)
    for i, (yf, ylabel, logy) in enumerate(rows):
        for j, (xf, xlabel, logx) in enumerate(cols):
            ax = fig.add_subplot(len(rows), len(cols), i * len(cols) + j + 1)
            _draw(ax, series, xf, yf)
            if logx:
                _log_axis(ax, "x", in_bytes="bytes" in xf)
            elif "bytes" in xf:
                ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
            if logy:
                _log_axis(ax, "y")
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
            if i == 0 and j == 0:
                _legend(ax, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def step_plots(records: Sequence[dict], path: Path, title: str) -> Path:
    """``distbench parallel``'s figure: the step time vs the bucket cap (MiB, log x), one line
    per (layout, ZeRO stage, overlap) with its 95 % interval (where the run has two bucket
    caps or more); and one stacked bar per (layout, ZeRO stage, overlap) at its best bucket
    cap: compute and exposed communication (the step's rest), the fastest on top."""
    steps = [r for r in records if r.get("kind") == "step"]
    groups: dict[str, list[dict]] = {}
    for r in steps:
        groups.setdefault(f"{r['layout']} ZeRO-{r['zero']}"
                          + ("" if r.get("overlap", True) else " no overlap"), []).append(r)
    best = sorted((min(rs, key=lambda r: r["step_s"]) for rs in groups.values()),
                  key=lambda r: r["step_s"])
    curve = len({r["bucket_mb"] for r in steps}) > 1  # a curve needs two bucket caps
    fig = Figure(figsize=(12 if curve else 7, max(4.2, 1.2 + 0.28 * len(best))),
                 layout="constrained")  # room for the bars' labels, whatever their length
    if curve:
        ax = fig.add_subplot(1, 2, 1)
        for name, rs in sorted(groups.items()):
            rs = sorted(rs, key=lambda r: r["bucket_mb"])
            x = np.array([r["bucket_mb"] for r in rs])
            y = np.array([r["step_s"] * 1e3 for r in rs])
            ci = np.array([[r["step_s_ci"][0] * 1e3, r["step_s_ci"][1] * 1e3] for r in rs])
            err = np.abs(np.vstack([y - ci[:, 0], ci[:, 1] - y]))
            ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, lw=1.2, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("bucket cap (MiB)")
        ax.set_ylabel("step time (ms)")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, fontsize=7, ncol=2)
    ax = fig.add_subplot(1, 2, 2) if curve else fig.add_subplot(1, 1, 1)
    pos = np.arange(len(best))[::-1]  # the fastest on top
    compute = np.array([r["compute_s"] * 1e3 for r in best])
    exposed = np.array([r["exposed_s"] * 1e3 for r in best])
    ax.barh(pos, compute, color="#4c72b0", label="compute")
    ax.barh(pos, exposed, left=compute, color="#dd8452", label="exposed communication")
    ax.set_yticks(pos, [f"{r['layout']} ZeRO-{r['zero']} {r['bucket_mb']:g} MiB"
                        + ("" if r.get("overlap", True) else " no overlap") for r in best],
                  fontsize=7)
    ax.set_xlabel("step time (ms)")
    ax.grid(True, axis="x", alpha=0.3)
    _legend(ax, fontsize=8, loc="upper right")  # the fastest, shortest bars are on top
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


__all__ = ["allreduce_plot", "model_check_plot", "panels", "grid_panels", "step_plots", "color",
           "style", "save"]


def link_rate_plot(names: Sequence[str], rows: Sequence[Sequence], path: Path, title: str
                   ) -> Path:
    """Time to the target (s, with its interval as error bars) against the link rate (bit/s),
    one line per series (:func:`distbench.analysis.answers.per_link_rate`'s rows)."""
    fig = Figure(figsize=(7.5, 4.8))
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.12)
    ax = fig.add_subplot()
    for j, name in enumerate(names):
        pts = [(r[0], r[j + 1]) for r in rows if r[j + 1] is not None]
        if not pts:
            continue
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1][0] for p in pts], dtype=float)
        lo = np.array([p[1][1] for p in pts], dtype=float)
        hi = np.array([p[1][2] for p in pts], dtype=float)
        err = np.vstack([np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi),
                                                                          hi - y, 0)])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=name, color=f"C{j % 10}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("link rate (bit/s)")
    ax.set_ylabel("time to target (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8)
    return save(fig, path)


def replay_plots(records: Sequence[dict], path: Path, title: str) -> Path:
    """A replay: the per-op timeline (each op's median time in trace order, one bar each,
    coloured by collective, one row per choice) and the per-collective breakdown (time per
    collective type and choice)."""
    ops = [r for r in records if r.get("kind") == "op"]
    colls = [r for r in records if r.get("kind") == "collective"]
    choices = list(dict.fromkeys(r["choice"] for r in ops))
    kinds = list(dict.fromkeys(r["collective"] for r in ops))
    fig = Figure(figsize=(12, 3.2 + 1.6 * len(choices)))
    fig.subplots_adjust(left=0.2, right=0.98, top=0.9, bottom=0.12, wspace=0.25)
    ax = fig.add_subplot(1, 2, 1)
    for row, choice in enumerate(choices):
        mine = [r for r in ops if r["choice"] == choice]
        start = 0.0
        for r in mine:
            width = (r.get("p50_us") or 0) / 1e3
            ax.barh(row, width, left=start, color=f"C{kinds.index(r['collective']) % 10}",
                    edgecolor="white", linewidth=0.3)
            start += width
    ax.set_yticks(range(len(choices)), choices, fontsize=7)
    ax.set_xlabel("time in trace order (ms, each op's median)")
    ax.set_title("per-op timeline", fontsize=9)
    for k in kinds:
        ax.barh(0, 0, color=f"C{kinds.index(k) % 10}", label=k)
    _legend(ax, fontsize=7)
    ax2 = fig.add_subplot(1, 2, 2)
    x = np.arange(len(kinds))
    w = 0.8 / max(1, len(choices))
    for j, choice in enumerate(choices):
        ys = [next((r["time_us"] / 1e3 for r in colls if r["choice"] == choice
                    and r["collective"] == k), 0.0) for k in kinds]
        ax2.bar(x + j * w, ys, w, label=choice, color=f"C{j % 10}")
    ax2.set_xticks(x + w * (len(choices) - 1) / 2, kinds, fontsize=8)
    ax2.set_ylabel("time per iteration (ms)")
    ax2.set_title("per collective", fontsize=9)
    _legend(ax2, fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)
