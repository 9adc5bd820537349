"""``distbench compare A B``: two runs side by side, row by row.

Rows are matched on what identifies a measurement (:data:`SPECS`: the benchmark, the
algorithm / method / mode and its options, the size, the rank count and the dtype). For each
match the table shows B/A of the time (lower is better) and of the bandwidth or rate (higher is
better), and marks the change when it is larger than the runs' own spread:

* allreduce and compress rows carry per-iteration percentiles; a row's spread is
  ``p99 / p50 - 1`` (the larger of A's and B's), so a change is marked only when the mean moved
  by more than the tail of either run's iterations;
* rows of one run that repeat the same key (e.g. a suite run twice into one folder) give a
  spread from their repetitions: ``max / min - 1`` of the time;
* rows with neither are shown without a mark.

``--fail-on-regression X%`` makes the exit code 1 when any matched row's time grew by more than
X % (B/A > 1 + X/100), marked or not: the threshold is the user's statement of what matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import click

from distbench.analysis.tables import fmt_env, options_text
from distbench.collectives import collective_names
from distbench.command import Job
from distbench.console import console, fmt_bytes, fmt_num, print_table
from distbench.results import find_docs
from distbench.runtime import UsageError


@dataclass(frozen=True)
class Spec:
    """How to compare one benchmark's records."""

    key: tuple            # fields identifying a row (missing fields count as None)
    time: str             # lower is better
    rate: str | None      # higher is better (bandwidth, steps/s)
    rate_label: str
    p50: str | None = None
    p99: str | None = None
    select: tuple = ()    # (field, value) a record must have to be compared


# every collective's records compare alike: the algorithm with its options
_COLLECTIVE = Spec(("algorithm", "options", "ranks_per_node", "bytes", "ranks", "dtype",
                    "device"), "t_max_us", "busbw_gbps", "busbw", "p50_us", "p99_us")
SPECS = {
    **dict.fromkeys(collective_names(), _COLLECTIVE),
    "compress": Spec(("method", "error_feedback", "density", "bits", "allreduce", "bytes",
                      "ranks", "dtype", "device"), "t_max_us", None, "", "p50_us", "p99_us"),
    "sgd": Spec(("mode", "compress", "allreduce", "local_steps", "model", "dataset", "ranks",
                 "dtype", "batch_size"), "wall_s", "steps_per_s", "steps/s",
                select=(("kind", "summary"),)),
}
ENV_DIFF_KEYS = ("distbench", "git_commit", "mpi_library", "mpi4py", "numpy", "cupy", "python",
                 "os", "cpu", "cpus", "ranks", "nodes", "ranks_per_node", "hostnames", "device",
                 "backend", "emulated", "command")


def parse_percent(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 5.0 (UsageError unless a number >= 0)."""
    try:
        value = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"--fail-on-regression takes a percentage like 5%, not {text!r}") \
            from None
    if value < 0 or math.isnan(value):
        raise UsageError(f"--fail-on-regression must be >= 0, not {text!r}")
    return value


def _key(bench: str, rec: dict) -> tuple:
    return (bench,) + tuple(_hashable(rec.get(f)) for f in SPECS[bench].key)


def _hashable(v):
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, list):
        return repr(v)
    return v


def rows_of(found) -> dict[tuple, list[dict]]:
    """Key -> the records with that key, over every document of a run."""
    out: dict[tuple, list[dict]] = {}
    for _label, doc in found:
        bench = doc.get("benchmark")
        spec = SPECS.get(bench)
        if spec is None:
            continue
        for rec in doc["records"]:
            if all(rec.get(f) == v for f, v in spec.select) and rec.get(spec.time):
                out.setdefault(_key(bench, rec), []).append(rec)
    return out


def _spread(spec: Spec, recs: list[dict]) -> float | None:
    """Relative spread of one run's measurement of a key (see the module docstring)."""
    vals = []
    if spec.p50 and spec.p99:
        vals += [r[spec.p99] / r[spec.p50] - 1 for r in recs
                 if r.get(spec.p50) and r.get(spec.p99) is not None]
    times = [r[spec.time] for r in recs]
    if len(times) > 1 and min(times) > 0:
        vals.append(max(times) / min(times) - 1)
    return max(vals) if vals else None


def _mean(recs, field):
    vals = [r[field] for r in recs if r.get(field) is not None]
    return sum(vals) / len(vals) if vals else None


@dataclass
class Match:
    key: tuple
    time_a: float
    time_b: float
    rate_a: float | None
    rate_b: float | None
    spread: float | None

    @property
    def time_ratio(self) -> float:
        return self.time_b / self.time_a

    @property
    def rate_ratio(self) -> float | None:
        if not self.rate_a or self.rate_b is None:
            return None
        return self.rate_b / self.rate_a

    @property
    def change(self) -> str:
        """``slower``/``faster`` when the time moved by more than the spread, else ``""``."""
        if self.spread is None:
            return ""
        if self.time_ratio > 1 + self.spread:
            return "slower"
        if self.time_ratio < 1 / (1 + self.spread):
            return "faster"
        return ""


def match(found_a, found_b) -> tuple[list[Match], int, int]:
    """(matches in A's order, rows only in A, rows only in B)."""
    a, b = rows_of(found_a), rows_of(found_b)
    out = []
    for key, ra in a.items():
        rb = b.get(key)
        if not rb:
            continue
        spec = SPECS[key[0]]
        spreads = [s for s in (_spread(spec, ra), _spread(spec, rb)) if s is not None]
        out.append(Match(key, _mean(ra, spec.time), _mean(rb, spec.time),
                         _mean(ra, spec.rate) if spec.rate else None,
                         _mean(rb, spec.rate) if spec.rate else None,
                         max(spreads) if spreads else None))
    return out, len(set(a) - set(b)), len(set(b) - set(a))


def env_differences(found_a, found_b) -> list[tuple[str, str, str]]:
    """(key, A's value, B's value) for the environment keys that differ (first documents)."""
    ea = found_a[0][1].get("environment", {})
    eb = found_b[0][1].get("environment", {})
    return [(k, fmt_env(ea.get(k)), fmt_env(eb.get(k))) for k in ENV_DIFF_KEYS
            if ea.get(k) != eb.get(k)]


def _describe(key: tuple) -> tuple[str, str, str]:
    """(series, size, "ranks dtype") cells of a row key."""
    bench = key[0]
    rec = dict(zip(SPECS[bench].key, key[1:], strict=True))
    if "algorithm" in rec:
        what = rec["algorithm"]
        opts = options_text(dict(rec.get("options") or ()))
        if opts:
            what += f" ({opts})"
    elif bench == "compress":
        what = rec["method"]
    else:
        what = rec["mode"] + (f" {rec['compress']}" if rec.get("compress") not in (None, "none")
                              else "") + (f" H={rec['local_steps']}" if rec.get("local_steps")
                                          else "")
    if rec.get("allreduce") not in (None, "native") and bench != "allreduce":
        what += f" via {rec['allreduce']}"
    size = fmt_bytes(rec["bytes"]) if rec.get("bytes") else "-"
    return f"{bench} {what}", size, f"{rec.get('ranks')} {rec.get('dtype') or ''}".strip()


COLUMNS = [("benchmark / series", "left"), ("size", "right"), ("p dtype", "left"),
           ("time A", "right"), ("time B", "right"), ("B/A time", "right"),
           ("rate A", "right"), ("rate B", "right"), ("B/A rate", "right"),
           ("spread", "right"), ("change", "left")]


def run_compare(a: str, b: str, fail_pct: float | None) -> int:
    """Print the comparison; return 1 if ``fail_pct`` is given and exceeded, else 0."""
    found_a, found_b = find_docs(a), find_docs(b)
    matches, only_a, only_b = match(found_a, found_b)
    if not matches:
        raise UsageError(f"no rows of {a} match a row of {b} (same benchmark, algorithm, "
                         "size, ranks, dtype)")
    con = console()
    con.print(f"A: {a}\nB: {b}", markup=False, soft_wrap=True)
    diffs = env_differences(found_a, found_b)
    if diffs:
        con.print("Environments differ:")
        for k, va, vb in diffs:
            con.print(f"  {k}: A = {va} | B = {vb}", markup=False, soft_wrap=True)
    else:
        con.print("Same environment (versions, hosts, ranks, command).")
    rows, styles = [], []
    for m in matches:
        what, size, pd = _describe(m.key)
        unit = "s" if SPECS[m.key[0]].time.endswith("_s") else "us"
        rows.append([what, size, pd, f"{fmt_num(m.time_a)} {unit}", f"{fmt_num(m.time_b)} {unit}",
                     f"{m.time_ratio:.3f}", fmt_num(m.rate_a), fmt_num(m.rate_b),
                     "-" if m.rate_ratio is None else f"{m.rate_ratio:.3f}",
                     "-" if m.spread is None else f"±{100 * m.spread:.0f} %", m.change])
        styles.append({"slower": "red", "faster": "green"}.get(m.change))
    caption = ("time: allreduce and compress t_max, sgd wall; rate: allreduce busbw GB/s, "
               "sgd steps/s. change: B/A beyond the runs' spread (p99/p50 - 1, or repetitions)."
               f" Matched {len(matches)} rows; only in A: {only_a}, only in B: {only_b}.")
    print_table("distbench compare: B / A", COLUMNS, rows, caption=caption, row_styles=styles)
    if fail_pct is None:
        return 0
    worst = [m for m in matches if m.time_ratio > 1 + fail_pct / 100]
    if worst:
        w = max(worst, key=lambda m: m.time_ratio)
        what, size, pd = _describe(w.key)
        con.print(f"Regression: {len(worst)} row(s) slower by more than {fail_pct:g} % "
                  f"(worst: {what} {size} p={pd}, B/A = {w.time_ratio:.3f})", markup=False)
        return 1
    con.print(f"No row slower by more than {fail_pct:g} %.")
    return 0


@click.command("compare")
@click.argument("run_a", type=click.Path(exists=True))
@click.argument("run_b", type=click.Path(exists=True))
@click.option("--fail-on-regression", "fail", default=None, metavar="X%",
              help="Exit 1 when any matched row is slower in B by more than X percent.")
def compare_command(run_a, run_b, fail):
    """B/A of time and bandwidth for the rows two runs share (A: the reference).

    Rows match on benchmark, algorithm (method, mode), size, ranks and dtype; a change larger
    than the runs' own spread is marked. RUN_A, RUN_B: run or suite folders or JSON files.
    """
    fail_pct = None if fail is None else parse_percent(fail)
    return Job("compare", {"a": run_a, "b": run_b, "fail": fail_pct},
               lambda _comm, _argv: run_compare(run_a, run_b, fail_pct), needs_mpi=False)
