"""``distbench compare A B``: two runs side by side, row by row, and which differences are real.

Rows are matched on what identifies a measurement (:data:`SPECS`: the benchmark, the
algorithm / method / mode and its options, the size, the rank count and the dtype). For each
match the table shows B/A of the time (lower is better) and of the bandwidth or rate (higher is
better), the effect size (B/A - 1 of the time, in percent) and whether the change is
significant:

* rows with 95 % intervals (``<time>_ci``: a bootstrap over the iterations, written by
  distbench >= 0.2): the change is significant when the two intervals do not overlap, i.e. the
  interval of B/A, [B_low / A_high, B_high / A_low], excludes 1 (a conservative test: two 95 %
  intervals that do not overlap mean a difference at well below the 5 % level);
* older rows: a change is marked when it exceeds the runs' own spread, ``p99 / p50 - 1`` of
  the iterations (allreduce, compress) or ``max / min - 1`` of repeated rows of one run;
* rows with neither are shown undecided.

``--fail-on-regression X%`` makes the exit code 1 when any matched row is significantly slower
in B (as above) by more than X % (B/A > 1 + X/100). Incomplete runs are said so above the
table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import click

from distbench.analysis.tables import (
    COMPARE_COLUMNS,
    completeness,
    fmt_env,
    known_benchmarks,
    options_text,
)
from distbench.collectives import collective_names
from distbench.command import Job, TableView
from distbench.console import console, fmt_bytes, fmt_num, print_table
from distbench.declared import arg, group
from distbench.errors import UsageError
from distbench.options import declared_command
from distbench.results import find_docs


@dataclass(frozen=True)
class Spec:
    """How to compare one benchmark's records."""

    key: tuple            # fields identifying a row (missing fields count as None)
    time: str             # lower is better
    rate: str | None      # higher is better (bandwidth, steps/s)
    p50: str | None = None
    p99: str | None = None
    select: tuple = ()    # (field, value) a record must have to be compared
    label: str | None = None  # the field naming a row's series, when the records carry one


# every collective's records compare alike: the algorithm with its options
_COLLECTIVE = Spec(key=("algorithm", "options", "ranks_per_node", "bytes", "ranks", "dtype",
                         "device", "op", "root", "in_place", "nonblocking"), time="t_max_us",
                   rate="busbw_gbps", p50="p50_us", p99="p99_us")
SPECS = {
    **dict.fromkeys(collective_names(), _COLLECTIVE),
    # a method's label carries its compressor's options (topk(0.01), qsgd(4b))
    "compress": Spec(key=("method", "error_feedback", "allreduce", "bytes", "ranks", "dtype",
                          "device"), time="t_max_us", rate=None, p50="p50_us", p99="p99_us"),
    "sgd": Spec(key=("mode", "compress", "allreduce", "local_steps", "model", "dataset",
                     "ranks", "dtype", "batch_size"), time="wall_s", rate="steps_per_s",
                select=(("kind", "summary"),)),
    "fedavg": Spec(key=("series", "options", "partition", "clients", "fraction",
                        "local_epochs", "local_batch", "model", "dataset", "ranks", "dtype"),
                   time="wall_s", rate="rounds_per_s", select=(("kind", "summary"),),
                   label="series"),
    "parallel": Spec(key=("layout", "zero", "bucket_mb", "overlap", "schedule", "dp_algo",
                          "tp_algo", "compute", "tflops", "params", "micro_batches", "ranks"),
                     time="step_s", rate="efficiency", select=(("kind", "step"),)),
}
ENV_DIFF_KEYS = ("distbench", "git_commit", "mpi_library", "mpi4py", "numpy", "cupy", "python",
                 "os", "cpu", "cpus", "ranks", "nodes", "ranks_per_node", "hostnames", "device",
                 "backend", "emulated", "command")


def parse_percent(text: str) -> float:
    """``"5%"`` -> 5.0: a finite percentage from 0 to 1000 with its unit (a bare ``5`` could
    mean 5 % or 500 %: refused).

    Raises:
        UsageError: no ``%``, not a number, not finite, or outside [0, 1000].
    """
    raw = str(text).strip()
    if not raw.endswith("%"):
        raise UsageError(f"--fail-on-regression takes a percentage with its unit, like 5%, "
                         f"not {text!r}")
    try:
        value = float(raw[:-1])
    except ValueError:
        raise UsageError(f"--fail-on-regression takes a percentage like 5%, not {text!r}") \
            from None
    if not math.isfinite(value) or not 0 <= value <= 1000:
        raise UsageError(f"--fail-on-regression must be a finite percentage from 0% to 1000%, "
                         f"not {text!r}")
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


def _hull(recs, field) -> list[float] | None:
    """The smallest interval holding every record's ``field`` interval (None if any lacks
    one): repeated rows of a key widen it."""
    cis = [r.get(field) for r in recs]
    if not cis or any(not isinstance(c, list) or len(c) != 2 or None in c for c in cis):
        return None
    return [min(c[0] for c in cis), max(c[1] for c in cis)]


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
    ci_a: list | None = None
    ci_b: list | None = None

    @property
    def time_ratio(self) -> float:
        return self.time_b / self.time_a

    @property
    def ratio_ci(self) -> list[float] | None:
        """The interval of B/A from the two runs' intervals, or None without them."""
        if not self.ci_a or not self.ci_b or min(self.ci_a) <= 0:
            return None
        return [self.ci_b[0] / self.ci_a[1], self.ci_b[1] / self.ci_a[0]]

    @property
    def decided_by(self) -> str:
        """``intervals``, ``spread`` or ``undecided`` (what :attr:`change` rests on)."""
        if self.ratio_ci is not None:
            return "intervals"
        return "spread" if self.spread is not None else "undecided"

    @property
    def effect_pct(self) -> float:
        """B/A - 1 of the time, in percent (> 0: B is slower)."""
        return 100.0 * (self.time_ratio - 1.0)

    @property
    def rate_ratio(self) -> float | None:
        if not self.rate_a or self.rate_b is None:
            return None
        return self.rate_b / self.rate_a

    @property
    def change(self) -> str:
        """``slower``/``faster`` when the change is significant (see the module docstring),
        else ``""``."""
        ci = self.ratio_ci
        if ci is not None:
            return "slower" if ci[0] > 1 else "faster" if ci[1] < 1 else ""
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
                         max(spreads) if spreads else None,
                         _hull(ra, spec.time + "_ci"), _hull(rb, spec.time + "_ci")))
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
    spec = SPECS[bench]
    rec = dict(zip(spec.key, key[1:], strict=True))
    if spec.label:
        what = str(rec[spec.label])
    elif "algorithm" in rec:
        what = rec["algorithm"]
        opts = options_text(dict(rec.get("options") or ()))
        if opts:
            what += f" ({opts})"
        what += "".join(f" {k}={rec[k]}" for k in ("op", "root") if rec.get(k) is not None)
        what += " in-place" * bool(rec.get("in_place")) + " nonblocking" * bool(
            rec.get("nonblocking"))
    elif bench == "compress":
        what = rec["method"]
    elif bench == "parallel":
        what = (f"{rec['layout']} ZeRO-{rec['zero']} {rec['bucket_mb']:g} MiB"
                + " no-overlap" * (not rec.get("overlap", True))
                + "".join(f" {k.replace('_algo', '')} {rec[k]}" for k in ("dp_algo", "tp_algo")
                          if rec.get(k) not in (None, "native")))
    else:
        what = rec["mode"] + (f" {rec['compress']}" if rec.get("compress") not in (None, "none")
                              else "") + (f" H={rec['local_steps']}" if rec.get("local_steps")
                                          else "")
    if rec.get("allreduce") not in (None, "native") and bench != "allreduce":
        what += f" via {rec['allreduce']}"
    size = fmt_bytes(rec["bytes"]) if rec.get("bytes") else "-"
    return f"{bench} {what}", size, f"{rec.get('ranks')} {rec.get('dtype') or ''}".strip()


def run_compare(a: str, b: str, fail_pct: float | None) -> int:
    """Print the comparison; return 1 if ``fail_pct`` is given and exceeded, else 0."""
    found_a = find_docs(a, known_benchmarks())
    found_b = find_docs(b, known_benchmarks())
    matches, only_a, only_b = match(found_a, found_b)
    if not matches:
        raise UsageError(f"no rows of {a} match a row of {b} (same benchmark, algorithm, "
                         "size, ranks, dtype)")
    con = console()
    for tag, path, found in (("A", a, found_a), ("B", b, found_b)):
        status = sorted({completeness(d) for _, d in found if completeness(d) != "complete"})
        con.print(f"{tag}: {path}" + (f"  ({'; '.join(status)})" if status else ""),
                  markup=False, soft_wrap=True)
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
        ci = m.ratio_ci
        rows.append([what, size, pd, f"{fmt_num(m.time_a)} {unit}", f"{fmt_num(m.time_b)} {unit}",
                     f"{m.time_ratio:.3f}",
                     f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else
                     ("-" if m.spread is None else f"±{100 * m.spread:.0f} % spread"),
                     f"{m.effect_pct:+.1f} %", fmt_num(m.rate_a), fmt_num(m.rate_b),
                     "-" if m.rate_ratio is None else f"{m.rate_ratio:.3f}", m.change,
                     m.decided_by])
        styles.append({"slower": "red", "faster": "green"}.get(m.change))
    caption = ("time: t_max of the collectives and compress, sgd and fedavg wall, the parallel "
               "step; rate: busbw GB/s, sgd steps/s, fedavg rounds/s, parallel E; effect = "
               "B/A - 1 of the time. change: "
               "significant when the 95 % intervals of A and B do not overlap (the interval of "
               "B/A excludes 1); rows without intervals: B/A beyond the runs' spread (p99/p50 - "
               "1, or repetitions)."
               f" Matched {len(matches)} rows; only in A: {only_a}, only in B: {only_b}.")
    print_table("distbench compare: B / A", COMPARE_COLUMNS, rows, caption=caption,
                row_styles=styles)
    if fail_pct is None:
        return 0
    worst = [m for m in matches if m.change == "slower" and m.time_ratio > 1 + fail_pct / 100]
    undecided = sum(m.decided_by == "undecided" for m in matches)
    note = f" ({undecided} row(s) undecided: no interval or spread)" if undecided else ""
    if worst:
        w = max(worst, key=lambda m: m.time_ratio)
        what, size, pd = _describe(w.key)
        con.print(f"Regression: {len(worst)} row(s) significantly slower by more than "
                  f"{fail_pct:g} % (worst: {what} {size} p={pd}, B/A = {w.time_ratio:.3f})"
                  + note, markup=False)
        return 1
    con.print(f"No row significantly slower by more than {fail_pct:g} %{note}.")
    return 0


@dataclass(kw_only=True)
class CompareConfig:
    """The options of ``distbench compare`` (the two runs are its arguments)."""

    fail_on_regression: str | None = arg(None, "Exit 1 when any matched row is significantly "
                                         "slower in B (the 95 % intervals do not overlap) by "
                                         "more than X percent.", metavar="X%")
    view: TableView = group(TableView)


def _compare(cfg: CompareConfig, run_a: str, run_b: str) -> Job:
    fail = cfg.fail_on_regression
    fail_pct = None if fail is None else parse_percent(fail)
    return Job("compare", {"a": run_a, "b": run_b, "fail": fail_pct},
               lambda _comm, _argv, _: run_compare(run_a, run_b, fail_pct), needs_mpi=False,
               view=cfg.view)


compare_command = declared_command(
    "compare", CompareConfig, _compare,
    doc="""B/A of time and bandwidth for the rows two runs share (A: the reference).

    Rows match on benchmark, algorithm (method, mode), size, ranks and dtype; a change larger
    than the runs' own spread is marked. RUN_A, RUN_B: run or suite folders or JSON files.""",
    examples=["distbench compare results/A-allreduce results/B-allreduce",
              "distbench compare results/A-suite results/B-suite --fail-on-regression 5%"],
    extra=[click.Argument(["run_a"], type=click.Path(exists=True)),
           click.Argument(["run_b"], type=click.Path(exists=True))])
