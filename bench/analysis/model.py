"""``distbench model``: each algorithm's textbook time at any rank count, the best one per size
and the crossover sizes, from given or fitted alpha, beta, gamma; and the check of the model
against a run it was not fitted on (:func:`distbench.analysis.fit.model_check`). Every
algorithm of the chosen collective (``--collective``, default allreduce) that declares a cost
formula takes part, plug-ins included.

Offline (no MPI). The row builders here are shared with ``distbench report``'s markdown.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click
import numpy as np

from distbench.analysis.cost import CostParams, algorithms, best_and_crossovers, gbps, predict
from distbench.analysis.fit import fit_cost_model, model_check, points
from distbench.analysis.step_model import check_against, run_step_model
from distbench.analysis.tables import (
    CHECK_SUMMARY_COLUMNS,
    COST_COLUMNS,
    check_table,
    cost_rows,
)
from distbench.collectives import collective_names, get_collective
from distbench.command import (
    NON_NEGATIVE,
    POSITIVE,
    Job,
    apply,
    check_algorithm_options,
    check_size_range,
    csv_list,
    size_options,
    size_sweep,
    step_options,
)
from distbench.console import fmt_bytes, fmt_num, print_table
from distbench.results import find_docs
from distbench.runtime import UsageError

DEFAULTS = {"alpha": 2.0, "beta_gbps": 12.5, "gamma_gbps": 5.0}
DEFAULT_RANKS = (4, 1024, 1048576)


def load_docs(paths) -> list[dict]:
    """The result documents of run or suite folders (sub-folders included) or JSON files
    (UsageError if a path has none)."""
    return [doc for path in paths for _label, doc in find_docs(path)]


def prediction_table(params: dict[str, CostParams], algos: list[str], p: int, sizes_b,
                     ranks_per_node: int | None, options: dict, collective: str = "allreduce"):
    """Predicted times at ``p`` ranks: (columns, rows with the best marked bold, crossovers
    [(bytes, from, to)] among the algorithms other than the library's, records for --json).
    ``options`` are the algorithm options given (each algorithm gets those it takes)."""
    decl = get_collective(collective)
    curves = {}
    for a in algos:
        opts = decl.registry.bound_options(a, options)
        curves[a] = (lambda x, a=a, o=opts: predict(a, params[a], x, p, ranks_per_node, o,
                                                    collective))
    n = np.asarray(sizes_b, dtype=np.float64)
    times = np.array([curves[a](n) for a in algos])
    # with one parameter set the library's call is the minimum of its candidates by
    # construction: the best column then names the textbook algorithm it is assumed to pick
    shared = len({params[a] for a in algos}) == 1
    ranked = np.where(np.array([shared and a == decl.baseline and len(algos) > 1
                                for a in algos])[:, None], np.inf, times)
    best = np.argmin(ranked, axis=0)
    rows, records = [], []
    for j, nb in enumerate(sizes_b):
        cells = [fmt_bytes(nb)]
        for i, a in enumerate(algos):
            txt = fmt_num(times[i, j] * 1e6)
            cells.append(f"[bold green]{txt}[/]" if i == best[j] else txt)
            records.append({"ranks": p, "bytes": nb, "algorithm": a,
                            "predicted_us": float(times[i, j] * 1e6)})
        cells.append(algos[best[j]])
        rows.append(cells)
        records.append({"ranks": p, "bytes": nb, "fastest": algos[best[j]]})
    flat = {a: c for a, c in curves.items() if a != decl.baseline}
    cross = best_and_crossovers(flat, min(sizes_b), max(sizes_b)) if len(flat) > 1 else []
    columns = [("size", "right")] + [(a, "right") for a in algos] + [("fastest", "left")]
    return columns, rows, cross, records


def _params_from_options(opts, algos) -> tuple[dict[str, CostParams], str]:
    """Per-algorithm parameters and a caption saying where they come from."""
    inter = {k: opts[k] for k in ("alpha_inter", "beta_inter_gbps")}
    given = [k for k in ("alpha", "beta_gbps") if opts[k] is not None]
    if opts["fit_runs"]:
        if given:
            raise UsageError("give either --from RUN or --alpha/--beta-gbps, not both")
        return None, "fitted"
    vals = {k: DEFAULTS[k] if opts[k] is None else opts[k] for k in DEFAULTS}
    p = CostParams.from_units(vals["alpha"], vals["beta_gbps"], vals["gamma_gbps"],
                              inter["alpha_inter"], inter["beta_inter_gbps"])
    caption = (f"alpha {vals['alpha']:g} us, 1/beta {vals['beta_gbps']:g} GB/s, 1/gamma "
               f"{vals['gamma_gbps']:g} GB/s")
    if inter["alpha_inter"] is not None or inter["beta_inter_gbps"] is not None:
        caption += (f"; between nodes alpha' {fmt_num(p.vector[3] * 1e6)} us, 1/beta' "
                    f"{fmt_num(gbps(p.vector[4]))} GB/s")
    return dict.fromkeys(algos, p), caption


def _fit(opts, algos, gamma):
    """(fits per algorithm, model-check rows) from --from (and --measured) runs."""
    collective = opts["collective"]
    docs = load_docs(opts["fit_runs"])
    rows = []
    if opts["measured"]:
        fits, rows = model_check(docs, load_docs([opts["measured"]]), gamma, collective)
        fits = {a: f for a, f in fits.items() if a in algos}
        rows = [r for r in rows if r.algorithm in fits]
        if not rows:
            raise UsageError(f"no {collective} records of the fitted algorithms in "
                             f"{opts['measured']}")
    else:
        pts = points(docs, collective)
        fits = {a: fit_cost_model(pts, a, gamma, collective) for a in algos
                if len({q.nbytes for q in pts if q.algorithm == a}) >= 2}
    if not fits:
        raise UsageError(f"the --from runs have no {collective} records at two or more sizes "
                         "of the chosen algorithms")
    return fits, rows


def _ring_fit(paths: list[str], gamma: float | None, flag: str):
    """Alpha, beta, gamma of the ring AllReduce fitted on the runs ``paths`` (the step model's
    rings)."""
    pts = points(load_docs(paths), "allreduce")
    if len({q.nbytes for q in pts if q.algorithm == "ring"}) < 2:
        raise UsageError(f"{flag} needs allreduce runs with the ring algorithm at two or more "
                         "sizes (e.g. distbench allreduce --algo ring)")
    return fit_cost_model(pts, "ring", gamma).params


def _run_step(opts: dict) -> int:
    """``--step``: the training step's prediction (distbench.analysis.step_model)."""
    gamma = None if opts["gamma_gbps"] is None else 1.0 / (opts["gamma_gbps"] * 1e9)
    if opts["fit_runs"]:
        if opts["alpha"] is not None or opts["beta_gbps"] is not None:
            raise UsageError("give either --from RUN or --alpha/--beta-gbps, not both")
        f = _ring_fit(opts["fit_runs"], gamma, "--from")
        caption = "ring fitted on " + ", ".join(opts["fit_runs"])
        params = CostParams(f.alpha, f.beta, f.gamma)
    else:
        params, caption = _params_from_options(opts, ["ring"])
        params = params["ring"]
    if opts["from_inter"]:
        if opts["alpha_inter"] is not None or opts["beta_inter_gbps"] is not None:
            raise UsageError("give either --from-inter RUN or --alpha-inter/--beta-inter-gbps")
        fi = _ring_fit(opts["from_inter"], gamma, "--from-inter")
        params = CostParams(params.alpha, params.beta, params.gamma, fi.alpha, fi.beta)
        caption += "; between nodes: ring fitted on " + ", ".join(opts["from_inter"])
    elif opts["fit_runs"] and opts["alpha_inter"] is not None:
        params = CostParams(params.alpha, params.beta, params.gamma, opts["alpha_inter"] * 1e-6,
                            None if opts["beta_inter_gbps"] is None else
                            1.0 / (opts["beta_inter_gbps"] * 1e9))
    if opts["measured"]:
        docs = [d for d in load_docs([opts["measured"]]) if d.get("benchmark") == "parallel"]
        if not docs:
            raise UsageError(f"--measured {opts['measured']}: no parallel run there")
        rows = [r for d in docs for r in check_against(d, params)]
        if opts["json"]:
            json.dump(rows, sys.stdout, indent=1)
            sys.stdout.write("\n")
            return 0
        print_table("Step model vs measurement: measured / predicted step ms (error)",
                    [("layout DxTxP", "left"), ("ZeRO", "right"), ("bucket MiB", "right"),
                     ("measured ms", "right"), ("predicted ms", "right"), ("error", "right")],
                    [[r["layout"], str(r["zero"]), f"{r['bucket_mb']:g}",
                      fmt_num(r["measured_s"] * 1e3), fmt_num(r["predicted_s"] * 1e3),
                      f"{100 * r['error']:+.0f} %"] for r in rows],
                    caption=caption + "; error = predicted / measured - 1")
        return 0
    return run_step_model(opts, params, caption)


def run_model(opts: dict) -> int:
    """The ``model`` command's work (single process). Returns the exit code."""
    if opts["step"]:
        return _run_step(opts)
    collective = opts["collective"]
    title = get_collective(collective).title
    baseline = get_collective(collective).baseline
    algos = algorithms(collective) if opts["algos"] == ["all"] else opts["algos"]
    params, caption = _params_from_options(opts, algos)
    gamma = None if opts["gamma_gbps"] is None else 1.0 / (opts["gamma_gbps"] * 1e9)
    out = {"fits": {}, "predictions": [], "fastest": [], "crossovers": [], "check": []}
    json_mode = opts["json"]
    ranks = opts["ranks"] or list(DEFAULT_RANKS)
    if params is None:
        fits, rows = _fit(opts, algos, gamma)
        algos = list(fits)
        inter = (None if opts["alpha_inter"] is None else opts["alpha_inter"] * 1e-6,
                 None if opts["beta_inter_gbps"] is None else
                 1.0 / (opts["beta_inter_gbps"] * 1e9))
        params = {a: CostParams(f.params.alpha, f.params.beta, f.params.gamma, *inter)
                  for a, f in fits.items()}
        out["fits"] = {a: {**asdict(f.params), "ranks": list(f.ranks), "points": f.points,
                           "rms_rel_error": f.rms_rel_error, "note": f.note}
                       for a, f in fits.items()}
        out["check"] = [{**asdict(r), "error": r.error} for r in rows]
        caption = "per-algorithm parameters fitted on " + ", ".join(opts["fit_runs"])
        if rows and not opts["ranks"]:
            ranks = sorted({r.ranks for r in rows})
        if not json_mode:
            print_table("Alpha-beta-gamma fit per algorithm (textbook formula, all rank "
                        "counts of the runs)", COST_COLUMNS, cost_rows(fits))
        if rows and not json_mode:
            cols, table, summary = check_table(rows)
            p_meas = ",".join(map(str, sorted({r.ranks for r in rows})))
            print_table(f"Model vs measurement at p = {p_meas}: measured / predicted p50 us "
                        "(error)", cols, table)
            print_table("Prediction error per algorithm", CHECK_SUMMARY_COLUMNS, summary,
                        caption="error = predicted / measured - 1; model fitted on "
                        + ", ".join(opts["fit_runs"]))
    grid = size_sweep(opts["min_bytes"], opts["max_bytes"], opts["factor"])
    for p in ranks:
        k = _ranks_per_node(opts, p)
        cols, table, cross, recs = prediction_table(params, algos, p, grid, k,
                                                    {"inner": opts["inner"]}, collective)
        out["predictions"].extend(r for r in recs if "fastest" not in r)
        out["fastest"].extend(r for r in recs if "fastest" in r)
        out["crossovers"].extend({"ranks": p, "bytes": b, "below": lo, "above": hi}
                                 for b, lo, hi in cross)
        if json_mode:
            continue
        where = f"{p // k} nodes of {k}" if k else "one node"
        shared = len({params[a] for a in algos}) == 1 and baseline in algos
        cap = caption + "; fastest in bold" + (f" ({baseline}: the fastest textbook algorithm)"
                                               if shared else "") + \
            ". Crossovers among the textbook algorithms: " + (
            "; ".join(f"{lo} -> {hi} at {fmt_bytes(int(round(b)))}" for b, lo, hi in cross)
            or "none in this size range")
        print_table(f"Predicted {title} time (us), p = {p:,} ({where})", cols, table,
                    caption=cap)
    if json_mode:
        json.dump(out, sys.stdout, indent=1, default=_jsonable)
        sys.stdout.write("\n")
    return 0


def _jsonable(x):
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return str(x)


def _ranks_per_node(opts, p: int) -> int | None:
    if opts["nodes"] is not None:
        if p % opts["nodes"]:
            raise UsageError(f"--nodes {opts['nodes']} does not divide --ranks {p}")
        return p // opts["nodes"]
    if opts["ranks_per_node"] is not None:
        if p % opts["ranks_per_node"]:
            raise UsageError(f"--ranks-per-node {opts['ranks_per_node']} does not divide "
                             f"--ranks {p}")
        return opts["ranks_per_node"]
    return None


MAX_RANKS = 1 << 53  # rank counts are exact in the model's float64 arithmetic below this


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--ranks takes comma-separated integers, not {text!r}") from None
    if not vals or min(vals) < 1:
        raise UsageError("--ranks must be integers >= 1")
    if max(vals) >= MAX_RANKS:
        raise UsageError(f"--ranks {max(vals)} is too large (the model takes rank counts "
                         f"below 2**53)")
    return vals


MODEL_OPTIONS = [
    click.option("--collective", type=click.Choice(collective_names()), default="allreduce",
                 show_default=True, help="The collective whose algorithms to model."),
    click.option("--from", "fit_runs", multiple=True, type=click.Path(exists=True),
                 help="Fit each algorithm's alpha, beta, gamma on these runs of the collective "
                 "(repeat for several rank counts)."),
    click.option("--measured", type=click.Path(exists=True), default=None,
                 help="Compare the model fitted on --from with this run (e.g. fit on p = 2, "
                 "3, check p = 4)."),
    click.option("--alpha", type=NON_NEGATIVE, default=None,
                 help=f"Latency per message in us [default: {DEFAULTS['alpha']}]."),
    click.option("--beta-gbps", type=POSITIVE, default=None,
                 help=f"Link bandwidth 1/beta in GB/s [default: {DEFAULTS['beta_gbps']}]."),
    click.option("--gamma-gbps", type=POSITIVE, default=None,
                 help="Reduction speed 1/gamma in GB/s (bytes reduced per second) "
                 f"[default: {DEFAULTS['gamma_gbps']}; with --from: fitted]."),
    click.option("--alpha-inter", type=NON_NEGATIVE, default=None,
                 help="Latency between nodes in us [default: --alpha]."),
    click.option("--beta-inter-gbps", type=POSITIVE, default=None,
                 help="Bandwidth between nodes in GB/s [default: --beta-gbps]."),
    click.option("--ranks", "ranks", default=None,
                 help="Comma-separated rank counts p [default: 4,1024,1048576; with "
                 "--measured: its p]."),
    click.option("--nodes", type=int, default=None, help="Nodes q (k = p/q per node)."),
    click.option("--ranks-per-node", type=int, default=None,
                 help="Ranks per node k [default: all ranks on one node]."),
    click.option("--inner", default="ring", show_default=True,
                 help="Leaders' algorithm of hierarchical (an algorithm with a cost formula)."),
    click.option("--algo", "algos", default="all", show_default=True,
                 help="Comma-separated algorithms, or 'all'."),
    *size_options("8", "128M", 4, "Smallest message in bytes (K, M, G: powers of 1024).",
                  "Largest message in bytes.",
                  "Multiply the size by this integer (>= 2) at each row."),
    click.option("--json", is_flag=True, help="Print the fits, predictions, crossovers "
                 "and check as JSON instead of tables."),
    click.option("--step", is_flag=True, help="Predict a training step of distbench "
                 "parallel instead (the options below; --ranks with --tp/--pp gives D = p / "
                 "(T P); --measured: a parallel run to check against)."),
    click.option("--from-inter", multiple=True, type=click.Path(exists=True),
                 help="With --step: fit alpha', beta' between nodes on these allreduce runs "
                 "(ring, one rank per node)."),
    *step_options(),
]


def _model(**opts):
    """Alpha-beta (Hockney) model: each algorithm's textbook time, the fastest per size and the
    crossover sizes, for any rank count.

    Parameters are given (--alpha, --beta-gbps, --gamma-gbps) or fitted on measured runs
    (--from RUN ...); --measured RUN checks the fitted model against a run at another p.
    Formulas: each algorithm's docstring (Thakur, Rabenseifner & Gropp 2005; Patarasuk & Yuan
    2009; see distbench.analysis.cost).
    """
    opts["ranks"] = None if opts["ranks"] is None else _int_list(opts["ranks"])
    if opts["measured"] and not opts["fit_runs"] and not opts["step"]:
        raise UsageError("--measured needs --from RUN (the runs the model is fitted on)")
    collective = opts["collective"]
    known = algorithms(collective)
    names = csv_list(opts["algos"])
    if names != ["all"]:
        for a in names or [""]:
            if a not in known:
                raise UsageError(f"unknown algorithm {a!r} for --algo (choose from "
                                 f"{', '.join(known)} or all: those with a cost formula)")
    opts["algos"] = names
    declared = get_collective(collective).registry.options()
    if "inner" in declared:  # the leaders' algorithm of a hierarchical algorithm
        check_algorithm_options(declared, {"inner": opts["inner"]})
        if opts["inner"] not in known:
            raise UsageError(f"--inner {opts['inner']!r} has no cost formula (choose from "
                             f"{', '.join(known)})")
    opts["fit_runs"] = list(opts["fit_runs"])
    opts["from_inter"] = list(opts["from_inter"])
    if opts["from_inter"] and not opts["step"]:
        raise UsageError("--from-inter goes with --step")
    check_size_range(opts["min_bytes"], opts["max_bytes"], opts["factor"])
    if opts["nodes"] is not None and opts["ranks_per_node"] is not None:
        raise UsageError("give --nodes or --ranks-per-node, not both")
    for key in ("nodes", "ranks_per_node"):
        if opts[key] is not None and opts[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1")
    return Job("model", dict(opts), lambda _comm, _argv: run_model(opts), needs_mpi=False)


model_command = click.command("model")(apply(_model, MODEL_OPTIONS))
