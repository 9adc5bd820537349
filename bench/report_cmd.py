"""``distbench report DIR``: PNG plots and a ``REPORT.md`` of a run or a suite of runs.

DIR is a run folder (``results/<UTC>-allreduce/``), a suite folder (``make bench``: one JSON
document per benchmark, plus the allreduce runs at other rank counts in sub-folders for the
model check), or one results JSON file. Every results document found in DIR and its
sub-folders goes into the report:

* environment: what every run shares, then what differs between runs;
* allreduce (per run): busbw and latency vs size (log-log, native dashed), tables of t_max and
  busbw per size and algorithm, the alpha-beta (Hockney) fit per algorithm; with runs at two or
  more rank counts, the model fitted on the smaller ones against the largest (predicted vs
  measured per size, with the error);
* compress: per compressor wire bytes, time and error vs size;
* sgd: loss and accuracy vs step, vs bytes sent and vs wall time, per mode; the summary table.

Files go beside the results (or to ``--out``); existing plots of the same name are replaced.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import click

from distbench.report import fmt_bytes, fmt_num
from distbench.runtime import UsageError

ENV_KEYS = ("distbench", "git_commit", "mpi_library", "mpi4py", "numpy", "cupy", "python", "os",
            "cpu", "cpus", "ranks", "nodes", "ranks_per_node", "hostnames", "device", "backend",
            "emulated", "start_utc", "command")


def find_docs(path) -> list[tuple[str, dict]]:
    """(label, document) of every results document in ``path`` and its sub-folders.

    The label is the sub-folder (``.`` for ``path`` itself). Raises UsageError when there is
    none.
    """
    from distbench.results import load_run

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    folders = [path] if path.is_file() else [path, *sorted(
        {p.parent for p in path.rglob("*.json") if p.parent != path})]
    out = []
    for folder in folders:
        try:
            docs = load_run(folder)
        except FileNotFoundError:
            continue
        except ValueError as exc:
            raise UsageError(f"{folder}: not a results file ({exc})") from None
        label = "." if folder in (path,) else str(folder.relative_to(path))
        out.extend((label, d) for d in docs)
    if not out:
        raise UsageError(f"no distbench results (*.json with records) in {path}")
    return out


def md_table(columns, rows) -> str:
    """A markdown table; ``columns`` are (header, justify) as for the rich tables."""
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    align = {"right": "---:", "left": ":---", "center": ":---:"}
    lines = ["| " + " | ".join(cell(h) for h, _ in columns) + " |",
             "| " + " | ".join(align.get(j, "---") for _, j in columns) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


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
    by = {(r["bytes"], r["algorithm"]): r for r in records}
    rows = []
    for n in sorted({r["bytes"] for r in records}):
        rows.append([fmt_bytes(n)] + [fmt_num(by[(n, a)].get(field)) if (n, a) in by else "-"
                                      for a in algos])
    return [("size", "right")] + [(a, "right") for a in algos], rows


def allreduce_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    from distbench.model import hockney_fits
    from distbench.model_cmd import FIT_COLUMNS, fit_rows
    from distbench.plots import allreduce_plot

    recs = doc["records"]
    env = doc.get("environment", {})
    p = env.get("ranks", recs[0]["ranks"] if recs else "?")
    dtype = recs[0].get("dtype", "") if recs else ""
    algos = list(dict.fromkeys(r["algorithm"] for r in recs))
    title = f"AllReduce, {p} ranks, {dtype}"
    pngs = [allreduce_plot(recs, out / f"allreduce_busbw_{tag}.png", "busbw_gbps",
                           f"{title}: bus bandwidth"),
            allreduce_plot(recs, out / f"allreduce_latency_{tag}.png", "t_max_us",
                           f"{title}: time")]
    wrong = sum(r.get("wrong") or 0 for r in recs)
    checked = any(r.get("wrong") is not None for r in recs)
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", "",
             f"![busbw]({pngs[0].name})", f"![latency]({pngs[1].name})", "",
             "t_max (us), the slowest rank's mean time per call:", "",
             md_table(*_pivot(recs, "t_max_us", algos)), "",
             "busbw (GB/s) = S / t_max * 2(p-1)/p:", "",
             md_table(*_pivot(recs, "busbw_gbps", algos)), "",
             ("Correctness: " + (f"**{wrong} wrong elements**" if wrong else
                                 "every algorithm exact against MPI_Allreduce (#wrong = 0)")
              if checked else "Correctness: not checked (--no-check)."), "",
             "Alpha-beta (Hockney) fit t(n) = alpha + beta n on the medians (p50), least "
             "squares on relative residuals:", "",
             md_table(FIT_COLUMNS, fit_rows(hockney_fits([doc])))]
    return "\n".join(lines), pngs


def model_check_md(found, out: Path) -> tuple[str, list[Path]]:
    """Fit on the allreduce runs at the smaller rank counts, predict the largest."""
    from distbench.model import model_check
    from distbench.model_cmd import CHECK_SUMMARY_COLUMNS, COST_COLUMNS, check_table, cost_rows
    from distbench.plots import model_check_plot

    docs = [d for _, d in found if d.get("benchmark") == "allreduce" and d["records"]]
    ranks = sorted({d["records"][0]["ranks"] for d in docs})
    if len(ranks) < 2:
        return "", []
    top = ranks[-1]
    fit_docs = [d for d in docs if d["records"][0]["ranks"] < top]
    fits, rows = model_check(fit_docs, [d for d in docs if d["records"][0]["ranks"] == top])
    if not rows:
        return "", []
    cols, table, summary = check_table(rows)
    fitted = ", ".join(map(str, ranks[:-1]))
    over = sorted({d["records"][0]["ranks"] for d in docs
                   if _oversubscribed(d.get("environment", {}))})
    caveat = (f"\n\nThe runs at p = {', '.join(map(str, over))} had more ranks than CPUs: "
              "the formulas assume one core per rank, so expect them to under-predict there."
              if over else "")
    png = model_check_plot(rows, out / f"model_check_p{top}.png",
                           f"Model fitted on p = {fitted}, against the run at p = {top}")
    text = "\n".join([
        f"## Alpha-beta model: fitted on p = {fitted}, checked at p = {top}", "",
        "Each algorithm's textbook formula (distbench.cost: Thakur, Rabenseifner & Gropp "
        "2005; Patarasuk & Yuan 2009) fitted to the medians of the runs at the smaller rank "
        "counts (alpha, beta, gamma >= 0, relative residuals):", "",
        md_table(COST_COLUMNS, cost_rows(fits)), "", f"![model check]({png.name})", "",
        f"Measured / predicted p50 (us) at p = {top}, error = predicted / measured - 1:"
        + caveat, "",
        md_table(cols, table), "", md_table(CHECK_SUMMARY_COLUMNS, summary)])
    return text, [png]


COMPRESS_COLUMNS = [("size", "right"), ("method", "left"), ("wire B/rank", "right"),
                    ("ratio", "right"), ("compress us", "right"), ("exchange us", "right"),
                    ("decompress us", "right"), ("t_max us", "right"), ("x native", "right"),
                    ("err/step", "right"), ("drift", "right"), ("break-even GB/s", "right")]


def compress_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    from distbench.plots import panels

    recs = doc["records"]
    env = doc.get("environment", {})
    title = f"Gradient compression, {env.get('ranks', '?')} ranks, float32"
    png = panels(recs, out / f"compress_{tag}.png", "method", "bytes",
                 [("wire_bytes", "wire bytes per rank"), ("t_max_us", "time t_max (us)"),
                  ("mean_step_error", "error per step ||mean^ - mean|| / ||mean||"),
                  ("final_drift", "drift of the running sum (average gradients)")],
                 title, "gradient size (bytes)", ncols=2)
    rows = [[fmt_bytes(r["bytes"]), r["method"], fmt_bytes(int(r["wire_bytes"])),
             fmt_num(r.get("compression_ratio")), fmt_num(r.get("compress_us")),
             fmt_num(r.get("exchange_us")), fmt_num(r.get("decompress_us")),
             fmt_num(r.get("t_max_us")), fmt_num(r.get("vs_native")),
             fmt_num(r.get("mean_step_error")), fmt_num(r.get("final_drift")),
             fmt_num(r.get("break_even_gbps"))] for r in recs]
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", "", f"![compression]({png.name})", "",
             "Dense AllReduce dashed. ratio = dense / wire bytes; x native = t_max(dense "
             "native) / t_max; break-even: the link bandwidth below which the method beats "
             "the dense ring AllReduce.", "", md_table(COMPRESS_COLUMNS, rows)]
    return "\n".join(lines), [png]


def _series_name(rec: dict) -> str:
    name = str(rec.get("mode"))
    if rec.get("compress") not in (None, "none"):
        name += f" {rec['compress']}"
    if rec.get("local_steps") and rec.get("mode") == "local":
        name += f" H={rec['local_steps']}"
    return name


SGD_COLUMNS = [("mode", "left"), ("steps", "right"), ("final loss", "right"),
               ("f - f*", "right"), ("test acc", "right"), ("rounds", "right"),
               ("bytes sent/rank", "right"), ("wall s", "right"), ("steps/s", "right"),
               ("comm %", "right"), ("time to target s", "right")]


def sgd_md(label, doc, out: Path, tag: str) -> tuple[str, list[Path]]:
    from distbench.plots import grid_panels

    evals = [{**r, "series": _series_name(r)} for r in doc["records"]
             if r.get("kind", "eval") == "eval" and "train_loss" in r]
    sums = [r for r in doc["records"] if r.get("kind") == "summary"]
    env = doc.get("environment", {})
    first = doc["records"][0] if doc["records"] else {}
    title = (f"SGD: {first.get('dataset', env.get('dataset', ''))}, {first.get('model', '')}, "
             f"{env.get('ranks', '?')} ranks")
    pngs = []
    if evals:
        pngs.append(grid_panels(
            evals, out / f"sgd_convergence_{tag}.png", "series",
            [("train_loss", "training loss", True), ("test_acc", "test accuracy", False)],
            [("step", "step", False), ("bytes_sent_max", "bytes sent per rank", False),
             ("wall_s", "wall time (s)", False)], title))
    rows = [[_series_name(s), str(s.get("steps")), fmt_num(s.get("final_loss")),
             fmt_num(s.get("final_gap")), fmt_num(s.get("final_test_acc")),
             str(s.get("rounds")), fmt_bytes(int(s.get("bytes_sent_max") or 0)),
             fmt_num(s.get("wall_s")), fmt_num(s.get("steps_per_s")),
             "-" if s.get("comm_share") is None else f"{100 * s['comm_share']:.0f}",
             fmt_num(s.get("time_to_target_s"))] for s in sums]
    lines = [f"## {title}" + ("" if label == "." else f" ({label})"),
             f"`{env.get('command', '')}`", ""]
    lines += [f"![sgd]({p.name})" for p in pngs]
    if rows:
        lines += ["", md_table(SGD_COLUMNS, rows)]
    return "\n".join(lines), pngs


def write_report(path, out=None) -> tuple[Path, list[Path]]:
    """Write the plots and ``REPORT.md`` of the runs in ``path``; returns (REPORT.md, PNGs).

    Raises:
        UsageError: no results in ``path``, or ``out`` cannot be created.
    """
    found = find_docs(path)
    src = Path(path)
    out = Path(out) if out else (src.parent if src.is_file() else src)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    order = {"allreduce": 0, "compress": 2, "sgd": 3}
    found = sorted(found, key=lambda ld: (order.get(ld[1].get("benchmark"), 4), ld[0] != ".",
                                          -(ld[1].get("environment", {}).get("ranks") or 0)))
    sections, pngs = [], []
    seen: dict[str, int] = {}
    for label, doc in found:
        bench = doc.get("benchmark")
        p = doc.get("environment", {}).get("ranks", "x")
        tag = f"p{p}"
        seen[bench + tag] = seen.get(bench + tag, 0) + 1
        if seen[bench + tag] > 1:
            tag += f"_{seen[bench + tag]}"
        maker = {"allreduce": allreduce_md, "sgd": sgd_md,
                 "compress": compress_md}.get(bench)
        if maker is None or not doc["records"]:
            sections.append((4, f"## {_doc_name(label, doc)}\n\n{len(doc['records'])} "
                                "records (no plots for this benchmark)."))
            continue
        text, made = maker(label, doc, out, tag)
        sections.append((order.get(bench, 4), text))
        pngs += made
    text, made = model_check_md(found, out)
    if text:
        sections.append((1, text))
        pngs += made
    sections = [text for _, text in sorted(sections, key=lambda s: s[0])]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    runs = md_table([("run", "left"), ("records", "right"), ("started (UTC)", "left")],
                    [[_doc_name(lab, d), str(len(d["records"])),
                      d.get("environment", {}).get("start_utc", "-")] for lab, d in found])
    md = "\n\n".join([f"# distbench report: {src.name}",
                      f"Generated {now} by `distbench report` from `{src}`.", runs,
                      "## Environment", environment_md(found), *sections]) + "\n"
    report = out / "REPORT.md"
    from distbench.results import atomic_write

    atomic_write(report, md)
    return report, pngs


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for REPORT.md and the PNGs [default: beside the results].")
def report_command(run_dir, out):
    """Plots (PNG) and a markdown summary (REPORT.md) of a run or a suite folder.

    RUN_DIR: a run folder, a suite folder from `make bench`, or a results JSON file.
    """
    from distbench.cli import Job

    def run(_comm) -> int:
        from distbench.report import console

        report, pngs = write_report(run_dir, out)
        console().print(f"wrote {report} and {len(pngs)} plot(s):")
        for p in pngs:
            console().print(f"  {p}")
        return 0

    return Job("report", {"run_dir": run_dir, "out": out}, run, needs_mpi=False)
