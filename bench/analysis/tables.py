"""One table definition per benchmark, shared by the live table a run prints and the tables of
``distbench report``: the columns ``(header, justify)`` and how a record becomes a row. Also the
markdown rendering of any such table and the one-line form of environment values.
"""

from __future__ import annotations

import math

import numpy as np

from distbench.analysis.cost import gbps
from distbench.collectives import collective_names
from distbench.console import Column as C
from distbench.console import column, fmt_bytes, fmt_num, fmt_params

# the benchmarks besides the collectives (each has its table here)
BENCHMARKS = ("compress", "sgd", "fedavg", "parallel", "replay", "tune")


def known_benchmarks() -> tuple:
    """Every benchmark name a results document may carry (the readers refuse others)."""
    return (*collective_names(), *BENCHMARKS)

# ----------------------------------------------------------------------------- collectives

# priority 0: always shown; the higher the number, the sooner a narrow terminal hides it
COLLECTIVE_COLUMNS = [C("size"), C("count", priority=3), C("algorithm", "left"),
                      C("t_avg us", priority=4), C("t_min us", priority=5), C("t_max us"),
                      C("p99 us", priority=4), C("algbw GB/s", priority=3), C("busbw GB/s"),
                      C("x native"), C("bound us", priority=2), C("% bound", priority=1),
                      C("#wrong")]


SLOW_STATE = 1.3  # a size whose canary took this many times the run's fastest: a slow state

STATS_CAPTION = ("±: half the 95 % interval in % of the value (bootstrap over the iterations; "
                 "x native: paired over the interleaving rounds)")

SPIKE = "!"  # the marker of a row whose iterations had spikes (the footnote counts them)


def spike_mark(rec: dict) -> str:
    """:data:`SPIKE` for a record whose iterations had spikes, else ``""``."""
    return SPIKE if rec.get("spikes") else ""


def spikes_note(records: list[dict], label: str = "algorithm", most: int = 6) -> str:
    """The footnote of the rows marked :data:`SPIKE`: which (``label`` at size) and how many
    iterations were over 10x the median (a rank stalled); empty when none had spikes."""
    hits = [f"{r.get(label)} at {fmt_bytes(r['bytes'])} ({r['spikes']})"
            for r in records if r.get("spikes")]
    if not hits:
        return ""
    more = f" and {len(hits) - most} more" if len(hits) > most else ""
    return (f"{SPIKE} spikes, iterations over 10x the median (a rank stalled): "
            f"{', '.join(hits[:most])}{more}")


def with_ci(value, ci, fmt=fmt_num) -> str:
    """``"38235 ±1%"``: a value and half its interval's width in percent (the value alone
    without an interval)."""
    if value is None:
        return "-"
    text = fmt(value)
    if ci and None not in ci and value:
        text += f" ±{50 * (ci[1] - ci[0]) / abs(value):.0f}%"
    return text


# with --nonblocking: the three times of the overlap measurement and the overlap (t_max and the
# columns before it are then the pure time, start + wait)
OVERLAP_COLUMNS = [C("compute us", priority=2), C("total us", priority=2),
                   C("overlap %", priority=1, key="overlap")]


def collective_columns(nonblocking: bool = False) -> list[tuple[str, str]]:
    """The columns of a collective's table (:data:`OVERLAP_COLUMNS` added when
    ``nonblocking``)."""
    return COLLECTIVE_COLUMNS + (OVERLAP_COLUMNS if nonblocking else [])


def collective_row(rec: dict, fastest_canary: float | None = None) -> list[str]:
    """A collective record (allreduce and the others) as a row of :func:`collective_columns`:
    a size measured in a slow machine state (its canary over :data:`SLOW_STATE` times
    ``fastest_canary``) ends in ``*``, an algorithm whose iterations had spikes in
    :data:`SPIKE` (:func:`spikes_note` counts them);
    the overlap cells where the record has them (``--nonblocking``)."""
    slow = bool(fastest_canary and rec.get("canary_us")
                and rec["canary_us"] > SLOW_STATE * fastest_canary)
    row = [fmt_bytes(rec["bytes"]) + ("*" if slow else ""), str(rec["count"]),
           rec["algorithm"] + spike_mark(rec),
           fmt_num(rec["t_avg_us"]), fmt_num(rec["t_min_us"]),
           with_ci(rec["t_max_us"], rec.get("t_max_us_ci")), fmt_num(rec["p99_us"]),
           fmt_num(rec["algbw_gbps"]), fmt_num(rec["busbw_gbps"]),
           with_ci(rec.get("vs_native"), rec.get("vs_native_ci"), lambda x: f"{x:.2f}"),
           "-" if rec.get("bound_us") is None else fmt_num(rec["bound_us"]),
           "-" if rec.get("pct_of_bound") is None else f"{rec['pct_of_bound']:.0f}",
           "-" if rec.get("wrong") is None else str(rec["wrong"])]
    if "overlap_pct" in rec:
        row += [fmt_num(rec["t_compute_us"]), fmt_num(rec["t_total_us"]),
                f"{rec['overlap_pct']:.0f}"]
    return row


def state_caption(records: list[dict]) -> str:
    """How stable the machine was: the canary's range over the run and the sizes marked ``*``
    (measured in a slow state), and the interleaving rounds' median spread."""
    canaries = [r["canary_us"] for r in records if r.get("canary_us")]
    spreads = [r["round_spread"] for r in records if r.get("round_spread") is not None]
    if not canaries:
        return "machine state: not measured"
    lo, hi = min(canaries), max(canaries)
    slow = sorted({r["bytes"] for r in records if r.get("canary_us", 0) > SLOW_STATE * lo})
    text = (f"machine state: canary (np.add, 256 KiB) {fmt_num(lo)}-{fmt_num(hi)} us over the "
            f"run; " + (f"* = measured in a slow state (canary > {SLOW_STATE:g}x the fastest): "
                        f"{', '.join(fmt_bytes(b) for b in slow)}" if slow else
                        "stable (no size in a slow state)"))
    if spreads:
        text += f"; rounds' t_max spread: median {100 * float(np.median(spreads)):.0f} %"
    return text


def options_text(options: dict | None) -> str:
    """``{"inner": "ring"}`` -> ``"inner=ring"`` (empty for no options)."""
    return ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items()))


def algorithm_label(rec: dict) -> str:
    """The algorithm with its options, e.g. ``hierarchical (inner=ring)``."""
    opts = options_text(rec.get("options"))
    return rec["algorithm"] + (f" ({opts})" if opts else "")


# ----------------------------------------------------------------------------- compress

COMPRESS_COLUMNS = [C("size"), C("method", "left"), C("wire B/rank", key="wire"),
                    C("ratio", priority=2), C("compress us", priority=3),
                    C("exchange us", priority=3), C("decompress us", priority=3),
                    C("total us"), C("x native", priority=1), C("x ring"),
                    C("err/step", priority=1, key="err_per_step"), C("drift", priority=2),
                    C("break-even GB/s", key="break_even")]


def compress_row(r: dict) -> list[str]:
    """A compress record as a row of :data:`COMPRESS_COLUMNS` ("-" where a field is absent:
    the dense baselines have no phases, errors or break-even)."""
    def num(key):
        return fmt_num(r[key]) if r.get(key) is not None else "-"

    def ratio(key):
        return with_ci(r.get(key), r.get(key + "_ci"), lambda x: f"{x:.2f}")

    return [fmt_bytes(r["bytes"]), r["method"] + spike_mark(r),
            fmt_bytes(int(r["wire_bytes"])), num("compression_ratio"), num("compress_us"),
            num("exchange_us"), num("decompress_us"),
            with_ci(r.get("t_max_us"), r.get("t_max_us_ci")), ratio("vs_native"),
            ratio("vs_ring"), num("mean_step_error"), num("final_drift"),
            num("break_even_gbps")]


# ----------------------------------------------------------------------------- sgd

SGD_EVAL_COLUMNS = [C("mode", "left"), C("step"), C("epoch", priority=2),
                    C("wall s", priority=1), C("train loss"), C("f - f*", priority=1, key="gap"),
                    C("test acc"), C("rounds", priority=3), C("sent/rank", priority=1,
                                                               key="sent"),
                    C("tau mean", priority=2), C("tau max", priority=3),
                    C("consensus", priority=2)]

SGD_SUMMARY_COLUMNS = [C("mode", "left"), C("steps"), C("final loss", priority=1),
                       C("f - f*", priority=2, key="gap"), C("test acc"),
                       C("rounds", priority=3), C("sent/rank", key="sent"),
                       C("wall s", priority=1), C("steps/s", priority=2, key="steps_per_s"),
                       C("comm %", priority=2, key="comm"), C("to target s"),
                       C("to target sent", priority=1)]


def _fmt(x, digits: int = 4) -> str:
    return "-" if x is None else fmt_num(x, digits)


def sgd_series(rec: dict) -> str:
    """``sync``, ``sync topk``, ``local H=4``: a mode with its compressor and local steps."""
    name = str(rec.get("mode"))
    if name == "gossip":
        name += f" {rec.get('topology')}" + (" sgp" if rec.get("gossip") == "sgp" else "")
        if (rec.get("gossip_steps") or 1) > 1:
            name += f" K={rec['gossip_steps']}"
    if rec.get("compress") not in (None, "none"):
        name += f" {rec['compress']}"
    if rec.get("local_steps") and rec.get("mode") == "local":
        name += f" H={rec['local_steps']}"
    return name


def sgd_eval_row(rec: dict) -> list[str]:
    """An SGD evaluation record as a row of :data:`SGD_EVAL_COLUMNS`."""
    return [rec["mode"], str(rec["step"]), f"{rec['epoch']:.2f}", f"{rec['wall_s']:.3f}",
            _fmt(rec["train_loss"]), _fmt(rec["gap"], 3), f"{rec['test_acc']:.4f}",
            str(rec["rounds"]), fmt_bytes(rec["bytes_sent_max"]),
            _fmt(rec["staleness_mean"], 3), _fmt(rec["staleness_max"]),
            _fmt(rec.get("consensus"), 3)]


def sgd_summary_row(s: dict) -> list[str]:
    """An SGD summary record as a row of :data:`SGD_SUMMARY_COLUMNS`."""
    return [sgd_series(s), str(s.get("steps")), _fmt(s.get("final_loss")),
            _fmt(s.get("final_gap"), 3), _fmt(s.get("final_test_acc")),
            str(s.get("rounds")), fmt_bytes(int(s.get("bytes_sent_max") or 0)),
            _fmt(s.get("wall_s")),
            with_ci(s.get("steps_per_s"), s.get("steps_per_s_ci"), lambda x: fmt_num(x, 3)),
            "-" if s.get("comm_share") is None else f"{100 * s['comm_share']:.0f}",
            _fmt(s.get("time_to_target_s")),
            "-" if s.get("bytes_to_target") is None else fmt_bytes(s["bytes_to_target"])]


# ----------------------------------------------------------------------------- fedavg

FED_ROUND_COLUMNS = [C("series", "left"), C("round"), C("wall s", priority=1),
                     C("train loss"), C("f - f*", priority=2, key="gap"), C("test acc"),
                     C("clients", priority=2), C("up", priority=1), C("down", priority=3)]

FED_SUMMARY_COLUMNS = [C("series", "left"), C("rounds"), C("final loss", priority=1),
                       C("f - f*", priority=2, key="gap"), C("test acc"), C("up"),
                       C("down", priority=2), C("wall s", priority=1),
                       C("to target rounds"), C("to target up", priority=1),
                       C("to target s", priority=1)]


def fed_series(rec: dict, shown: tuple = ()) -> str:
    """``fedavg``, ``fedprox mu=0.1``, ``fedavg qsgd``, ``fedavg dp z=1``: an algorithm with
    the options that set it apart (those its strategy names in ``shown``, e.g. FedProx's mu;
    the uploads' compressor, DP noise)."""
    name = str(rec.get("algorithm"))
    options = rec.get("options") or {}
    for key in shown:
        if options.get(key) is not None:
            name += f" {key}={options[key]:g}"
    if rec.get("compress") not in (None, "none"):
        name += f" {rec['compress']}"
    if rec.get("dp_clip") is not None:
        name += f" dp z={rec.get('dp_noise') or 0:g}"
    if rec.get("decentralized"):
        name += f" p2p {rec.get('topology')}"
    return name


def _size(n) -> str:
    return "-" if n is None else fmt_bytes(int(n))


def fed_round_row(rec: dict) -> list[str]:
    """A fedavg round record as a row of :data:`FED_ROUND_COLUMNS`."""
    return [rec["series"], str(rec["round"]), f"{rec['wall_s']:.3f}", _fmt(rec["train_loss"]),
            _fmt(rec["gap"], 3), _fmt(rec["test_acc"]), str(rec["answered"]),
            _size(rec["bytes_up"]), _size(rec["bytes_down"])]


def fed_summary_row(s: dict) -> list[str]:
    """A fedavg summary record as a row of :data:`FED_SUMMARY_COLUMNS`."""
    return [s["series"], str(s["rounds"]), _fmt(s.get("final_loss")),
            _fmt(s.get("final_gap"), 3), _fmt(s.get("final_test_acc")),
            _size(s.get("bytes_up")), _size(s.get("bytes_down")), _fmt(s.get("wall_s")),
            "-" if s.get("round_to_target") is None else str(s["round_to_target"]),
            _size(s.get("bytes_up_to_target")), _fmt(s.get("time_to_target_s"))]


def abridge(rows: list, most: int) -> list:
    """At most ``most`` of ``rows``, evenly spread, the first and the last always kept."""
    if len(rows) <= most or most < 2:
        return list(rows)
    picks = sorted({round(i * (len(rows) - 1) / (most - 1)) for i in range(most)})
    return [rows[i] for i in picks]


# ----------------------------------------------------------------------------- parallel

PARALLEL_COLUMNS = [C("#", priority=2, key="place"), C("layout DxTxP", "left", key="layout"),
                    C("ZeRO", key="zero"), C("bucket MiB", priority=3), C("overlap", "left",
                                                                          priority=3),
                    C("batch", priority=2), C("step ms"), C("compute ms", priority=1),
                    C("comm ms", priority=1), C("exposed ms"), C("E", priority=2,
                                                                 key="efficiency"),
                    C("dp MB", priority=3), C("tp MB", priority=3), C("pp MB", priority=3),
                    C("memory GB", priority=1), C("bubble", priority=1)]


def _mb(rec: dict, cls: str) -> str:
    """Counted / closed-form MB of one traffic class ("lib" where the library's collective
    carried it: its wire bytes are not ours to count)."""
    counted, formula = rec.get(f"bytes_{cls}"), rec.get(f"bytes_{cls}_formula")
    if not counted and not formula:
        return "-"
    shown = "lib" if counted is None else fmt_num(counted / 1e6)
    return f"{shown} / {fmt_num(formula / 1e6)}"


def seconds_per_sequence(rec: dict) -> float:
    """A ``parallel`` step record's step time per sequence of its global batch D b m
    (seconds): the key that ranks layouts of different D fairly (throughput)."""
    return rec["step_s"] / rec.get("global_batch", 1)


def parallel_row(rec: dict, place: int) -> list[str]:
    """A ``parallel`` step record as a row of :data:`PARALLEL_COLUMNS` (``place``: its rank
    by step time)."""
    bubble = "-" if rec["pp"] == 1 else \
        f"{100 * rec['bubble']:.0f} % ({100 * rec['bubble_formula']:.0f} %)"
    return [str(place), rec["layout"], str(rec["zero"]), f"{rec['bucket_mb']:g}",
            "on" if rec.get("overlap", True) else "off", str(rec.get("global_batch", "-")),
            with_ci(rec["step_s"] * 1e3, [x * 1e3 for x in rec["step_s_ci"]]),
            fmt_num(rec["compute_s"] * 1e3), fmt_num(rec["comm_s"] * 1e3),
            fmt_num(rec["exposed_s"] * 1e3),
            f"{rec['efficiency']:.2f}" if rec.get("efficiency") is not None else "-",
            _mb(rec, "dp"), _mb(rec, "tp"), _mb(rec, "pp"),
            fmt_num(rec["memory_bytes"] / 1e9), bubble]


PARALLEL_MEMORY_COLUMNS = [C("layout DxTxP", "left", key="layout"), C("ZeRO", key="zero"),
                           C("params/rank", priority=1, key="params_per_rank"),
                           C("params GB", priority=2), C("grads GB", priority=2),
                           C("optimizer GB", priority=2), C("model states GB", priority=1),
                           C("activations GB", priority=1), C("total GB")]


def parallel_memory_row(rec: dict) -> list[str]:
    """A ``parallel --memory-only`` record as a row of :data:`PARALLEL_MEMORY_COLUMNS`."""
    gb = [rec[f"memory_{k}_bytes"] / 1e9 for k in ("params", "grads", "optimizer")]
    return [rec["layout"], str(rec["zero"]), fmt_params(rec['params_per_rank']),
            *(fmt_num(x) for x in gb), fmt_num(sum(gb)),
            fmt_num(rec["memory_activations_bytes"] / 1e9), fmt_num(rec["memory_bytes"] / 1e9)]


# ----------------------------------------------------------------------------- model fits

def _bw(x: float) -> str:
    """A bandwidth in GB/s; "-" for a free operation (a fitted cost of 0, or below 1 fs/B)."""
    return "-" if math.isinf(x) or x > 1e6 else fmt_num(x)


def fit_rows(fits) -> list[list[str]]:
    """Table rows of :class:`~distbench.analysis.fit.LineFit` (Hockney fits per algorithm
    and p)."""
    return [[f.algorithm, str(f.ranks), f.dtype or "-", fmt_num(f.alpha_us),
             fmt_num(f.bandwidth_gbps), f"{f.r2:.4f}", str(f.points)] for f in fits]


FIT_COLUMNS = [C("algorithm", "left"), C("p"), C("dtype", "left", priority=1),
               C("alpha us"), C("1/beta GB/s", key="bandwidth"), C("R^2", priority=1, key="r2"),
               C("points", priority=2)]

COST_COLUMNS = [C("algorithm", "left"), C("alpha us"), C("1/beta GB/s", key="bandwidth"),
                C("1/gamma GB/s", priority=1, key="reduction_bandwidth"),
                C("fitted on p", "left", priority=2, key="fitted_on"),
                C("points", priority=2), C("rms rel. error", key="rms_error"),
                C("note", "left", priority=3, wrap=True)]


def cost_rows(fits: dict) -> list[list[str]]:
    """Table rows of :class:`~distbench.analysis.fit.CostFit` per algorithm."""
    return [[a, fmt_num(f.params.alpha * 1e6), _bw(gbps(f.params.beta)),
             _bw(gbps(f.params.gamma)), ",".join(map(str, f.ranks)), str(f.points),
             f"{100 * f.rms_rel_error:.1f} %", f.note or ""] for a, f in fits.items()]


def check_table(rows) -> tuple[list, list[list[str]], list[list[str]]]:
    """Model check rows -> (columns, per-size rows "measured / predicted (error)", summary rows
    per algorithm: median and max |error|)."""
    algos = list(dict.fromkeys(r.algorithm for r in rows))
    by = {(r.nbytes, r.algorithm): r for r in rows}
    out = []
    for n in sorted({r.nbytes for r in rows}):
        cells = [fmt_bytes(n)]
        for a in algos:
            r = by.get((n, a))
            cells.append("-" if r is None else f"{fmt_num(r.measured_us)} / "
                         f"{fmt_num(r.predicted_us)} ({100 * r.error:+.0f} %)")
        out.append(cells)
    summary = []
    for a in algos:
        err = np.abs([r.error for r in rows if r.algorithm == a])
        summary.append([a, f"{100 * np.median(err):.0f} %", f"{100 * err.max():.0f} %",
                        str(err.size)])
    return [C("size")] + [C(a, priority=i // 2, key=a) for i, a in enumerate(algos)], out, summary


CHECK_SUMMARY_COLUMNS = [C("algorithm", "left"), C("median |error|", key="median_error"),
                         C("max |error|", key="max_error"), C("sizes", priority=1)]


def prediction_columns(algos: list[str]) -> list[C]:
    """The columns of ``model``'s predicted-time table: size, one per algorithm (the first
    few always shown), the fastest."""
    return [C("size"), *(C(a, priority=i // 3, key=a) for i, a in enumerate(algos)),
            C("fastest", "left")]


STEP_COLUMNS = [C("#", priority=2, key="place"), C("layout DxTxP", "left", key="layout"),
                C("ZeRO", key="zero"), C("bucket MiB", priority=3), C("batch", priority=2),
                C("step ms"), C("compute ms", priority=1), C("tp ms", priority=2),
                C("pp ms", priority=2), C("dp ms", priority=2), C("dp exposed ms"),
                C("E", priority=1, key="efficiency"), C("bubble", priority=1)]

STEP_CHECK_COLUMNS = [C("layout DxTxP", "left", key="layout"), C("ZeRO", key="zero"),
                      C("bucket MiB"), C("measured ms"), C("predicted ms"), C("error")]

# ----------------------------------------------------------------------------- replay

REPLAY_OP_COLUMNS = [C("#", key="index"), C("collective", "left"), C("dtype", "left",
                                                                       priority=2),
                     C("size"), C("group", priority=2), C("choice", "left", priority=1),
                     C("t_max us"), C("#wrong")]

REPLAY_COLUMNS = [C("choice", "left"), C("collective", "left"), C("ops"), C("bytes"),
                  C("time us", key="time"), C("share"), C("sent/rank", priority=1,
                                                          key="sent"),
                  C("x first", priority=1, key="x_first")]


def replay_op_rows(records: list[dict]) -> list[list[str]]:
    """The per-op rows of a replay (``~`` marks an op completed at its wait)."""
    return [[str(r["index"]) + ("~" if r.get("nonblocking") else ""), r["collective"],
             r["dtype"], fmt_bytes(r["bytes"]), str(r["group_size"]), r["choice"],
             with_ci(r["t_max_us"], r.get("t_max_us_ci")),
             "-" if r.get("wrong") is None else str(r["wrong"])]
            for r in records if r.get("kind") == "op"]


def replay_rows(records: list[dict]) -> tuple[list[list[str]], list[int]]:
    """Per choice: a row per collective type, then the whole iteration's; a separator after
    each choice."""
    rows, sections = [], []
    for rec in records:
        if rec.get("kind") == "collective":
            rows.append([rec["choice"], rec["collective"], str(rec["ops"]),
                         fmt_bytes(rec["bytes"]), fmt_num(rec["time_us"]),
                         "-" if rec.get("share") is None else f"{100 * rec['share']:.0f} %",
                         "", ""])
        elif rec.get("kind") == "iteration":
            sent = rec.get("bytes_sent_per_rank") or [0]
            rows.append([rec["choice"], "iteration", str(sum(1 for r in records if r.get(
                "kind") == "op" and r["choice"] == rec["choice"])),
                fmt_bytes(rec["trace_bytes"]), with_ci(rec["t_max_us"], rec.get("t_max_us_ci")),
                "100 %", fmt_bytes(int(max(sent))),
                with_ci(rec.get("vs_first"), rec.get("vs_first_ci"), lambda x: f"{x:.2f}")])
            sections.append(len(rows) - 1)
    return rows, sections


# ----------------------------------------------------------------------------- tune

TUNE_COLUMNS = [C("collective", "left"), C("p", key="ranks"), C("sizes", "left"),
                C("choice", "left"), C("default us", priority=1), C("choice us", priority=1),
                C("default / choice", key="gain")]

VERIFY_COLUMNS = [C("collective", "left"), C("size"), C("default us"), C("tuned us"),
                  C("default / tuned", key="ratio"), C("file picks", "left", priority=1),
                  C("forced us", priority=1)]

# ----------------------------------------------------------------------------- compare, info

COMPARE_COLUMNS = [C("benchmark / series", "left", key="series", wrap=True), C("size"),
                   C("p dtype", "left", priority=2, key="ranks_dtype"),
                   C("time A", priority=1), C("time B", priority=1), C("B/A time"),
                   C("95 % interval", key="interval"), C("effect", priority=3),
                   C("rate A", priority=2), C("rate B", priority=2),
                   C("B/A rate", priority=1), C("change", "left"), C("by", "left", priority=2)]

INFO_COLUMNS = [C("what", "left", wrap=True), C("value", "left", wrap=True)]


def table_columns(command: str) -> list[str]:
    """The ``--columns`` names of ``command``'s tables (for the check of the names given)."""
    tables = {"compress": [COMPRESS_COLUMNS], "sgd": [SGD_EVAL_COLUMNS, SGD_SUMMARY_COLUMNS],
              "fedavg": [FED_ROUND_COLUMNS, FED_SUMMARY_COLUMNS],
              "parallel": [PARALLEL_COLUMNS, PARALLEL_MEMORY_COLUMNS],
              "replay": [REPLAY_OP_COLUMNS, REPLAY_COLUMNS],
              "tune": [TUNE_COLUMNS, VERIFY_COLUMNS],
              "compare": [COMPARE_COLUMNS], "info": [INFO_COLUMNS],
              "model": [FIT_COLUMNS, COST_COLUMNS, CHECK_SUMMARY_COLUMNS, STEP_COLUMNS,
                        STEP_CHECK_COLUMNS, prediction_columns(_algorithm_names())]}
    cols = tables.get(command, [collective_columns(True)])
    return list(dict.fromkeys(column(c).name for table in cols for c in table))


def _algorithm_names() -> list[str]:
    """Every registered algorithm of every collective (``model``'s per-algorithm columns)."""
    from distbench.collectives import get_collective  # registries: plug-ins load on use

    return list(dict.fromkeys(a for c in collective_names() for a in get_collective(c).registry))


# ----------------------------------------------------------------------------- rendering

def md_table(columns, rows) -> str:
    """A markdown table; ``columns`` are :class:`~distbench.console.Column` s or (header,
    justify) tuples as for the rich tables (every column: a file is never narrow)."""
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    align = {"right": "---:", "left": ":---", "center": ":---:"}
    cols = [column(c) for c in columns]
    lines = ["| " + " | ".join(cell(c.header) for c in cols) + " |",
             "| " + " | ".join(align.get(c.justify, "---") for c in cols) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def completeness(doc: dict) -> str:
    """``complete``, ``INCOMPLETE: reason``, or ``not recorded`` (runs before the field)."""
    if "complete" not in doc:
        return "not recorded"
    return "complete" if doc["complete"] else f"INCOMPLETE: {doc.get('reason') or '?'}"


def fmt_env(v) -> str:
    """An environment value as one line of text (lists joined, control characters such as
    the NUL some MPI libraries end their version string with removed)."""
    if isinstance(v, (list, tuple)):
        text = ", ".join(map(str, v))
    elif isinstance(v, dict):
        text = ", ".join(f"{k}={x}" for k, x in v.items())
    else:
        text = "-" if v is None else str(v)
    return "".join(c for c in text if c.isprintable()).strip()
