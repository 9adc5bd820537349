"""``distbench report DIR``: PNG plots and a ``REPORT.md`` of a run or a suite of runs.

DIR is a run folder (``results/<UTC>-allreduce/``), a suite folder (``make bench``: one JSON
document per benchmark, plus the allreduce runs at other rank counts in sub-folders for the
model check), or one results JSON file. Every results document found in DIR and its
sub-folders goes into the report:

* environment: what every run shares, then what differs between runs;
* each collective (allreduce and any other declared one, per run): busbw and latency vs size
  (log-log, native dashed), tables of t_max and busbw per size and algorithm, the alpha-beta
  (Hockney) fit per algorithm; with runs at two or more rank counts, the model fitted on the
  smaller ones against the largest (predicted vs measured per size, with the error);
* compress: per compressor wire bytes, time and error vs size;
* sgd: loss and accuracy vs step, vs bytes sent and vs wall time, per mode; the summary table;
* fedavg: test accuracy and training loss vs round and vs bytes uploaded, per algorithm; the
  partition (samples and labels per client) and the summary table;
* parallel: the step time vs the bucket cap per (layout, ZeRO stage), compute and exposed
  communication per configuration (stacked bars), the table ranked by time per sequence.

Files go beside the results (or to ``--out``); existing plots of the same name are replaced.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import click

from distbench.algorithms.sgd.common import Targets
from distbench.analysis.answers import (
    collective_answer,
    compress_answer,
    fed_answer,
    parallel_answer,
    per_link_rate,
    rate_text,
    replay_answer,
    sgd_answer,
)
from distbench.analysis.fit import hockney_fits, model_check
from distbench.analysis.plots import (
    allreduce_plot,
    grid_panels,
    link_rate_plot,
    model_check_plot,
    panels,
    replay_plots,
    step_plots,
)
from distbench.analysis.tables import (
    CHECK_SUMMARY_COLUMNS,
    COMPRESS_COLUMNS,
    COST_COLUMNS,
    FED_SUMMARY_COLUMNS,
    FIT_COLUMNS,
    PARALLEL_COLUMNS,
    REPLAY_COLUMNS,
    SGD_SUMMARY_COLUMNS,
    algorithm_label,
    check_table,
    completeness,
    compress_row,
    cost_rows,
    fed_summary_row,
    fit_rows,
    fmt_env,
    known_benchmarks,
    md_table,
    parallel_row,
    replay_rows,
    seconds_per_sequence,
    sgd_series,
    sgd_summary_row,
)
from distbench.collectives import collective_names, get_collective
from distbench.command import Job
from distbench.console import console, fmt_bytes, fmt_num, fmt_params
from distbench.declared import arg
from distbench.errors import UsageError
from distbench.metrics import parse_rate
from distbench.options import declared_command
from distbench.results import atomic_write, find_docs

ENV_KEYS = ("distbench", "git_commit", "mpi_library", "mpi4py", "numpy", "cupy", "python", "os",
            "cpu", "cpus", "ranks", "nodes", "ranks_per_node", "hostnames", "device", "backend",
            "emulated", "start_utc", "command")


def _status(doc: dict) -> str:
    """A warning line ahead of an incomplete run's section."""
    return "" if doc.get("complete", True) else f"**Incomplete run** ({doc.get('reason')}).\n\n"


def _doc_name(label: str, doc: dict) -> str:
    env = doc.get("environment", {})
    where = "" if label == "." else f" ({label})"
    return f"{doc.get('benchmark', '?')}, p = {env.get('ranks', '?')}{where}"


def environment_md(found) -> str:
    envs = [(_doc_name(lab, d), d.get("environment", {})) for lab, d in found]
    keys = [k for k in ENV_KEYS if any(k in e for _, e in envs)]
    same = [k for k in keys if len({fmt_env(e.get(k)) for _, e in envs}) == 1]
    differ = [k for k in keys if k not in same]
    parts = [md_table([("", "left"), ("value", "left")],
                      [[k, fmt_env(envs[0][1].get(k))] for k in same])]
    if differ:
        parts.append("Differing between the runs:\n\n" + md_table(
            [("run", "left")] + [(k, "left") for k in differ],
            [[name] + [fmt_env(e.get(k)) for k in differ] for name, e in envs]))
    over = [name for name, e in envs if _oversubscribed(e)]
    if over:
        parts.append(f"Note: more ranks than CPUs (oversubscribed) in: {'; '.join(over)}. "
                     "Ranks then take turns on the cores: latencies include scheduler time "
                     "slices, which no alpha-beta model of a network describes.")
    return "\n\n".join(parts)


def _oversubscribed(env: dict) -> bool:
    """More ranks than CPUs on a single host."""
    return bool(env.get("cpus") and env.get("nodes") == 1 and
                (env.get("ranks") or 0) > env["cpus"])


def _pivot(records, field, algos):
    """Rows of ``field`` per size, one column per algorithm."""
    by = {(r["bytes"], r["algorithm"]): r for r in records}
    rows = []
    for n in sorted({r["bytes"] for r in records}):
        rows.append([fmt_bytes(n)] + [fmt_num(by[(n, a)].get(field)) if (n, a) in by else "-"
                                      for a in algos])
    return [("size", "right")] + [(a, "right") for a in algos], rows


def answer_md(lines: list[str]) -> list[str]:
    """The answer lines (:mod:`distbench.analysis.answers`) as the block that heads a
    section."""
    if not lines:
        return []
    return [f"> **Answer.** {lines[0]}", *(f"> {ln}" for ln in lines[1:]), ""]


def _targets(doc: dict) -> str:
    """The run's target (``train loss <= 0.3``) from its recorded configuration."""
    cfg = doc.get("config") or {}
    return Targets(target_loss=cfg.get("target_loss"), target_acc=cfg.get("target_acc")).text()


def collective_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    """The section of a collective's run (allreduce or any other declared collective)."""
    decl = get_collective(doc["benchmark"])
    recs = doc["records"]
    env = doc.get("environment", {})
    p = env.get("ranks", recs[0]["ranks"] if recs else "?")
    dtype = recs[0].get("dtype", "") if recs else ""
    algos = list(dict.fromkeys(r["algorithm"] for r in recs))
    labels = sorted({algorithm_label(r) for r in recs if r.get("options")})
    title = f"{decl.title}, {p} ranks, {dtype}"
    name = decl.name.replace("-", "_")
    pngs = [allreduce_plot(recs, out / f"{name}_busbw_{tag}.png", "busbw_gbps",
                           f"{title}: bus bandwidth"),
            allreduce_plot(recs, out / f"{name}_latency_{tag}.png", "t_max_us",
                           f"{title}: time")]
    wrong = sum(r.get("wrong") or 0 for r in recs)
    checked = any(r.get("wrong") is not None for r in recs)
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", "",
             *answer_md(collective_answer(recs, decl.baseline)),
             f"![busbw]({pngs[0].name})", f"![latency]({pngs[1].name})", "",
             *([f"Options: {'; '.join(labels)}.", ""] if labels else []),
             "t_max (us), the slowest rank's mean time per call:", "",
             md_table(*_pivot(recs, "t_max_us", algos)), "",
             f"busbw (GB/s) = S / t_max * {decl.bus_formula}:", "",
             md_table(*_pivot(recs, "busbw_gbps", algos)), "",
             ("Correctness: " + (f"**{wrong} wrong elements**" if wrong else
                                 f"every algorithm exact, {decl.call} included (#wrong = 0)")
              if checked else "Correctness: not checked (--no-check)."), "",
             "Alpha-beta (Hockney) fit t(n) = alpha + beta n on the medians (p50), least "
             "squares on relative residuals:", "",
             md_table(FIT_COLUMNS, fit_rows(hockney_fits([doc], decl.name)))]
    return "\n".join(lines), pngs


def model_check_md(found, out: Path, collective: str = "allreduce") -> tuple[str, list[Path]]:
    """Fit on the collective's runs at the smaller rank counts, predict the largest."""
    docs = [d for _, d in found if d.get("benchmark") == collective and d["records"]]
    ranks = sorted({d["records"][0]["ranks"] for d in docs})
    if len(ranks) < 2:
        return "", []
    top = ranks[-1]
    fit_docs = [d for d in docs if d["records"][0]["ranks"] < top]
    fits, rows = model_check(fit_docs, [d for d in docs if d["records"][0]["ranks"] == top],
                             collective=collective)
    if not rows:
        return "", []
    cols, table, summary = check_table(rows)
    fitted = ", ".join(map(str, ranks[:-1]))
    over = sorted({d["records"][0]["ranks"] for d in docs
                   if _oversubscribed(d.get("environment", {}))})
    caveat = (f"\n\nThe runs at p = {', '.join(map(str, over))} had more ranks than CPUs: "
              "the formulas assume one core per rank, so expect them to under-predict there."
              if over else "")
    stem = "model_check" if collective == "allreduce" else f"model_check_{collective}"
    png = model_check_plot(rows, out / f"{stem}_p{top}.png",
                           f"Model fitted on p = {fitted}, against the run at p = {top}")
    text = "\n".join([
        f"## Alpha-beta model: fitted on p = {fitted}, checked at p = {top} "
        f"({get_collective(collective).title})", "",
        "Each algorithm's textbook formula (distbench.analysis.cost: Thakur, Rabenseifner & Gropp "
        "2005; Patarasuk & Yuan 2009) fitted to the medians of the runs at the smaller rank "
        "counts (alpha, beta, gamma >= 0, relative residuals):", "",
        md_table(COST_COLUMNS, cost_rows(fits)), "", f"![model check]({png.name})", "",
        f"Measured / predicted p50 (us) at p = {top}, error = predicted / measured - 1:"
        + caveat, "",
        md_table(cols, table), "", md_table(CHECK_SUMMARY_COLUMNS, summary)])
    return text, [png]


def compress_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    recs = doc["records"]
    env = doc.get("environment", {})
    title = f"Gradient compression, {env.get('ranks', '?')} ranks, float32"
    png = panels(recs, out / f"compress_{tag}.png", "method", "bytes",
                 [("wire_bytes", "wire bytes per rank"), ("t_max_us", "time t_max (us)"),
                  ("mean_step_error", "error per step ||mean^ - mean|| / ||mean||"),
                  ("final_drift", "drift of the running sum (average gradients)")],
                 title, "gradient size (bytes)", ncols=2)
    rows = [compress_row(r) for r in recs]
    links = (doc.get("config") or {}).get("links") or ["100mbit", "1gbit", "10gbit"]
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", "",
             *answer_md(compress_answer(recs, [parse_rate(x) for x in links])),
             f"![compression]({png.name})", "",
             "Dense AllReduce dashed. ratio = dense / wire bytes; x native, x ring = t_max "
             "of the dense AllReduce / t_max; break-even: the link bandwidth below which the "
             "method beats the dense ring AllReduce.", "", md_table(COMPRESS_COLUMNS, rows)]
    return "\n".join(lines), [png]


def _training_section(label, doc, png: Path, title: str, evals, ys, xs
                      ) -> tuple[list[str], list[Path]]:
    """The heading, command and convergence plot of a benchmark that trains: panels of the
    ``ys`` fields against the ``xs`` fields (:func:`grid_panels`), one line per series."""
    env = doc.get("environment", {})
    pngs = [grid_panels(evals, png, "series", ys, xs, title)] if evals else []
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", ""]
    return lines + [f"![{png.stem}]({p.name})" for p in pngs], pngs


def sgd_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    evals = [{**r, "series": sgd_series(r)} for r in doc["records"]
             if r.get("kind", "eval") == "eval" and "train_loss" in r]
    sums = [r for r in doc["records"] if r.get("kind") == "summary"]
    env = doc.get("environment", {})
    first = doc["records"][0] if doc["records"] else {}
    title = (f"SGD: {first.get('dataset', env.get('dataset', ''))}, {first.get('model', '')}, "
             f"{env.get('ranks', '?')} ranks")
    ys = [("train_loss", "training loss", True), ("test_acc", "test accuracy", False)]
    if any(r.get("consensus") for r in evals):  # gossip: how far the models are apart
        ys.append(("consensus", "consensus distance mean ||x_i - x_bar||", True))
    lines, pngs = _training_section(
        label, doc, out / f"sgd_convergence_{tag}.png", title, evals, ys,
        [("step", "step", False), ("bytes_sent_max", "bytes sent per rank", False),
         ("wall_s", "wall time (s)", False)])
    rows = [sgd_summary_row(s) for s in sums]
    if rows:
        lines[2:2] = answer_md(sgd_answer(sums, _targets(doc)))
        lines += ["", md_table(SGD_SUMMARY_COLUMNS, rows)]
    return "\n".join(lines), pngs


def fedavg_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    """The section of a federated run: accuracy and loss per round and per byte uploaded, the
    partition and the summary."""
    recs = doc["records"]
    evals = [r for r in recs if r.get("kind") == "eval"]
    sums = [r for r in recs if r.get("kind") == "summary"]
    parts = [r for r in recs if r.get("kind") == "partition"]
    first = evals[0] if evals else {}
    title = (f"Federated learning: {first.get('dataset', '')}, {first.get('model', '')}, "
             f"{first.get('clients', len(parts))} clients ({first.get('partition', '?')}), "
             f"{doc.get('environment', {}).get('ranks', '?')} ranks")
    lines, pngs = _training_section(
        label, doc, out / f"fedavg_convergence_{tag}.png", title, evals,
        [("test_acc", "test accuracy", False), ("train_loss", "training loss", True)],
        [("round", "round", False), ("bytes_up", "bytes uploaded (all clients)", False)])
    if parts:
        sizes = sorted(r["samples"] for r in parts)
        labels = [sum(c > 0 for c in r["label_counts"]) for r in parts]
        lines += ["", f"Partition: {len(parts)} clients, {sizes[0]} to {sizes[-1]} samples "
                      f"(median {sizes[len(sizes) // 2]}), {min(labels)} to {max(labels)} "
                      f"labels per client (mean {sum(labels) / len(labels):.1f})."]
    if sums:
        lines[2:2] = answer_md(fed_answer(sums, _targets(doc)))
        lines += ["", "up / down: bytes through MPI, all clients together (down: the model "
                      "to every sampled client; up: every answering client's update).", "",
                  md_table(FED_SUMMARY_COLUMNS, [fed_summary_row(s) for s in sums])]
    return "\n".join(lines), pngs


def link_rate_md(found, out: Path) -> tuple[str, list[Path]]:
    """The best compressor per link rate: the sgd runs of emulated clusters at different link
    rates, the time to the target of every series at each, the winner where the intervals
    separate, and the plot (nothing with fewer than two rates)."""
    runs = []
    for _, doc in found:
        rate = ((doc.get("environment") or {}).get("emulated") or {})
        if doc.get("benchmark") == "sgd" and isinstance(rate, dict) and \
                rate.get("link_bit_per_s"):
            sums = [r for r in doc["records"] if r.get("kind") == "summary"]
            runs.append((float(rate["link_bit_per_s"]), sums))
    if len({r for r, _ in runs}) < 2:
        return "", []
    names, rows, lines = per_link_rate(runs)
    png = link_rate_plot(names, rows, out / "sgd_link_rates.png",
                         "Time to the target per compressor and link rate")

    def cell(est) -> str:
        if est is None:
            return "-"
        v, lo, hi = est
        return fmt_num(v) + ("" if lo == float("-inf") else f" [{fmt_num(lo)}, {fmt_num(hi)}]")

    table = md_table([("link", "left"), *((n, "right") for n in names)],
                     [[rate_text(r[0]), *(cell(e) for e in r[1:])] for r in rows])
    return "\n".join(["## The best compressor per link rate (sgd on emulated clusters)", "",
                      *answer_md(lines), f"![link rates]({png.name})", "",
                      "Time to the target in seconds, with the 95 % interval of each run's "
                      "step rate:", "", table]), [png]


def replay_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    """The section of a ``distbench replay`` run: its answer, the timeline and breakdown
    plot, and the per-collective table."""
    recs = doc["records"]
    env = doc.get("environment", {})
    title = (f"Replay of {str(env.get('trace', '?')).split('/')[-1]}, "
             f"{env.get('ranks', '?')} ranks")
    png = replay_plots(recs, out / f"replay_{tag}.png", title)
    rows, _ = replay_rows(recs)
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", "", *answer_md(replay_answer(recs)),
             f"![replay]({png.name})", "", md_table(REPLAY_COLUMNS, rows)]
    return "\n".join(lines), [png]


def tune_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    """The section of a ``distbench tune`` run: its answer and the decision per range."""
    from distbench.analysis.answers import tune_answer
    from distbench.tuning import Range

    recs = doc["records"]
    env = doc.get("environment", {})
    ranges = [Range(**{k: r[k] for k in ("collective", "ranks", "lo", "hi", "choice",
                                         "library_id", "gain")})
              for r in recs if r.get("kind") == "decision"]
    files = next((r for r in recs if r.get("kind") == "files"), {})
    answer = tune_answer(recs, {"ranges": ranges, **{k: v for k, v in files.items()
                                                     if k not in ("benchmark", "kind")}})
    rows = [[r.collective, str(r.ranks), f"{fmt_bytes(r.lo)}-{fmt_bytes(r.hi)}", r.choice,
             f"{r.gain:.2f}"] for r in ranges]
    lines = [f"## Tuning decision, {env.get('ranks', '?')} ranks"
             + ("" if label == "." else f" ({label})"), f"`{env.get('command', '')}`", "",
             *answer_md(answer),
             md_table([("collective", "left"), ("p", "right"), ("sizes", "left"),
                       ("choice", "left"), ("default / choice", "right")], rows)]
    return "\n".join(lines), []


def parallel_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    """The section of a ``distbench parallel`` run: step time vs bucket cap, compute and
    exposed communication per layout, and the ranked table."""
    steps = [r for r in doc["records"] if r.get("kind") == "step"]
    env = doc.get("environment", {})
    title = (f"Training step, {env.get('ranks', '?')} ranks: "
             f"{fmt_params(steps[0]['params'])}-parameter GPT" if steps else "Training step")
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", ""]
    if not steps:
        return "\n".join(lines + ["No step records."]), []
    png = step_plots(steps, out / f"parallel_{tag}.png", title)
    ranked = sorted(steps, key=seconds_per_sequence)
    lines += [*answer_md(parallel_answer(steps)), f"![parallel]({png.name})", "",
              "Step: the slowest rank's, median of the steps (± its 95 % interval); comm: the "
              "most time a rank spent in communication calls or with exchanges in flight; "
              "exposed = "
              "step - compute; E = compute / step; batch: sequences per step (D b m), the rank "
              "is by step time per sequence; MB sent per rank and step, counted / closed "
              "form ('lib': the library's collective carried it); bubble measured (formula).",
              "", md_table(PARALLEL_COLUMNS, [parallel_row(r, i + 1)
                                               for i, r in enumerate(ranked)])]
    return "\n".join(lines), [png]


def write_report(path, out=None) -> tuple[Path, list[Path]]:
    """Write the plots and ``REPORT.md`` of the runs in ``path``; returns (REPORT.md, PNGs).

    Raises:
        UsageError: no results in ``path``, or ``out`` cannot be created.
    """
    found = find_docs(path, known_benchmarks())
    src = Path(path)
    out = Path(out) if out else (src.parent if src.is_file() else src)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    # the collectives in their order, each followed by its model check; then the others
    collectives = collective_names()
    order = {c: 2 * i for i, c in enumerate(collectives)}
    order.update(compress=100, sgd=101, fedavg=102, parallel=103, replay=104, tune=105)
    makers = {**dict.fromkeys(collectives, collective_md), "sgd": sgd_md,
              "compress": compress_md, "fedavg": fedavg_md, "parallel": parallel_md,
              "replay": replay_md, "tune": tune_md}
    found = sorted(found, key=lambda ld: (order.get(ld[1].get("benchmark"), 200), ld[0] != ".",
                                          -(ld[1].get("environment", {}).get("ranks") or 0)))
    sections, pngs = [], []
    before = {png: png.stat().st_mtime_ns for png in out.glob("*.png")}
    seen: dict[str, int] = {}
    for label, doc in found:
        bench = doc.get("benchmark")
        p = doc.get("environment", {}).get("ranks", "x")
        tag = f"p{p}"
        seen[bench + tag] = seen.get(bench + tag, 0) + 1
        if seen[bench + tag] > 1:
            tag += f"_{seen[bench + tag]}"
        maker = makers.get(bench)
        if maker is None or not doc["records"]:
            sections.append((200, f"## {_doc_name(label, doc)}\n\n{len(doc['records'])} "
                                  "records (no plots for this benchmark)."))
            continue
        try:
            text, made = maker(label, doc, out, tag)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            for png in out.glob("*.png"):  # no half report: the plots drawn for it go too
                if before.get(png) != png.stat().st_mtime_ns:
                    png.unlink(missing_ok=True)
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UsageError(f"{src / label if label != '.' else src}: malformed {bench} "
                             f"results ({what})") from None
        sections.append((order.get(bench, 200), _status(doc) + text))
        pngs += made
    text, made = link_rate_md(found, out)
    if text:
        sections.append((101.5, text))
        pngs += made
    for c in collectives:
        text, made = model_check_md(found, out, c)
        if text:
            sections.append((order[c] + 1, text))
            pngs += made
    sections = [text for _, text in sorted(sections, key=lambda s: s[0])]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    runs = md_table([("run", "left"), ("records", "right"), ("started (UTC)", "left"),
                     ("status", "left")],
                    [[_doc_name(lab, d), str(len(d["records"])),
                      d.get("environment", {}).get("start_utc", "-"), completeness(d)]
                     for lab, d in found])
    md = "\n\n".join([f"# distbench report: {src.name}",
                      f"Generated {now} by `distbench report` from `{src}`.", runs,
                      "## Environment", environment_md(found), *sections]) + "\n"
    report = out / "REPORT.md"
    atomic_write(report, md)
    return report, pngs


@dataclass(kw_only=True)
class ReportConfig:
    """The options of ``distbench report`` (the run folder is its argument)."""

    out: str | None = arg(None, "Folder for REPORT.md and the PNGs [default: beside the "
                          "results].", type=click.Path(file_okay=False))


def _report(cfg: ReportConfig, run_dir: str) -> Job:
    def run(_comm, _argv, _) -> int:
        report, pngs = write_report(run_dir, cfg.out)
        console().print(f"wrote {report} and {len(pngs)} plot(s):")
        for p in pngs:
            console().print(f"  {p}")
        return 0

    return Job("report", {"run_dir": run_dir, "out": cfg.out}, run, needs_mpi=False)


report_command = declared_command(
    "report", ReportConfig, _report,
    doc="""Plots (PNG) and a markdown summary (REPORT.md) of a run or a suite folder.

    RUN_DIR: a run folder, a suite folder from `make bench`, or a results JSON file.""",
    examples=["distbench report results/20261207T120000Z-allreduce",
              "distbench report results/20261207T120000Z-suite --out /tmp/report"],
    extra=[click.Argument(["run_dir"], type=click.Path(exists=True))])
