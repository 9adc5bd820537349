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
from dataclasses import asdict, dataclass, field, replace

import click
import numpy as np

from distbench.algorithms.parallel.layout import ALL_LAYOUTS_MAX
from distbench.algorithms.parallel.shape import ModelShape, StepOptions
from distbench.analysis.cost import CostParams, best_and_crossovers, costed, gbps, predict
from distbench.analysis.fit import fit_cost_model, model_check, points
from distbench.analysis.step_prediction import check_against, run_step_model
from distbench.analysis.tables import (
    CHECK_SUMMARY_COLUMNS,
    COST_COLUMNS,
    STEP_CHECK_COLUMNS,
    check_table,
    cost_rows,
    known_benchmarks,
    prediction_columns,
)
from distbench.collectives import collective_names, get_collective
from distbench.command import Job, Sizes, TableView, size_sweep
from distbench.console import fmt_bytes, fmt_num, print_table
from distbench.declared import Names, Numbers, arg, check, flatten, group
from distbench.errors import UsageError
from distbench.options import click_option, declared_command, given_names
from distbench.results import find_docs

DEFAULTS = {"alpha": 2.0, "beta_gbps": 12.5, "gamma_gbps": 5.0}
DEFAULT_RANKS = (4, 1024, 1048576)


def load_docs(paths) -> list[dict]:
    """The result documents of run or suite folders (sub-folders included) or JSON files
    (UsageError if a path has none)."""
    return [doc for path in paths for _label, doc in find_docs(path, known_benchmarks())]


def prediction_table(params: dict[str, CostParams], algos: list[str], p: int, sizes_b,
                     ranks_per_node: int | None, options: dict, collective: str = "allreduce"):
    """Predicted times at ``p`` ranks: (columns, rows with the best marked bold, crossovers
    [(bytes, from, to)] among the algorithms other than the library's, records for --json).
    ``options`` are the algorithm options given (each algorithm gets those it takes)."""
    decl = get_collective(collective)
    specs = costed(collective)
    curves = {}
    for a in algos:
        opts = decl.registry.bound_options(a, options)
        curves[a] = (lambda x, a=a, o=opts: predict(specs[a], params[a], x, p, ranks_per_node,
                                                    o))
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
    columns = prediction_columns(algos)
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
        specs = costed(collective)
        fits = {a: fit_cost_model(pts, specs[a], gamma) for a in algos
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
    return fit_cost_model(pts, costed("allreduce")["ring"], gamma).params


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
        params = replace(params, alpha_inter=fi.alpha, beta_inter=fi.beta)
        caption += "; between nodes: ring fitted on " + ", ".join(opts["from_inter"])
    elif opts["fit_runs"] and opts["alpha_inter"] is not None:
        params = replace(params, alpha_inter=opts["alpha_inter"] * 1e-6, beta_inter=None if
                         opts["beta_inter_gbps"] is None else
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
                    STEP_CHECK_COLUMNS,
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
    algos = list(costed(collective)) if opts["algos"] == ["all"] else opts["algos"]
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
        params = {a: replace(f.params, alpha_inter=inter[0], beta_inter=inter[1])
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
                                                    opts["options"], collective)
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
PARAMETERS, FIT, SCALE = "Machine parameters", "Fitted parameters", "Ranks and nodes"


@dataclass(kw_only=True)
class ModelConfig:
    """The options of ``distbench model``: the collective and algorithms, the parameters
    (given, or fitted on runs), the rank counts and sizes; with ``--step`` a training step
    (:class:`~distbench.algorithms.parallel.shape.ModelShape` and
    :class:`~distbench.algorithms.parallel.shape.StepOptions`)."""

    collective: str = arg("allreduce", "The collective whose algorithms to model.",
                          choices=tuple(collective_names()))
    algos: list = arg(["all"], "Comma-separated algorithms, or 'all' (those with a cost "
                      "formula).", type=Names(allow_all=True), flags=("--algo",))
    fit_runs: tuple = arg((), "Fit each algorithm's alpha, beta, gamma on these runs of the "
                          "collective (repeat for several rank counts).", multiple=True,
                          type=click.Path(exists=True), flags=("--from",), group=FIT)
    measured: str | None = arg(None, "Compare the model fitted on --from with this run (e.g. "
                               "fit on p = 2, 3, check p = 4).", type=click.Path(exists=True),
                               group=FIT)
    from_inter: tuple = arg((), "With --step: fit alpha', beta' between nodes on these "
                            "allreduce runs (ring, one rank per node).", multiple=True,
                            type=click.Path(exists=True), group=FIT)
    alpha: float | None = arg(None, f"Latency per message in us [default: {DEFAULTS['alpha']}].",
                              type=float, low=0, high=1e9, group=PARAMETERS)
    beta_gbps: float | None = arg(None, "Link bandwidth 1/beta in GB/s [default: "
                                  f"{DEFAULTS['beta_gbps']}].", type=float, low=0,
                                  low_open=True, high=1e9, group=PARAMETERS)
    gamma_gbps: float | None = arg(None, "Reduction speed 1/gamma in GB/s (bytes reduced per "
                                   f"second) [default: {DEFAULTS['gamma_gbps']}; with --from: "
                                   "fitted].", type=float, low=0, low_open=True, high=1e9,
                                   group=PARAMETERS)
    alpha_inter: float | None = arg(None, "Latency between nodes in us [default: --alpha].",
                                    type=float, low=0, high=1e9, group=PARAMETERS)
    beta_inter_gbps: float | None = arg(None, "Bandwidth between nodes in GB/s [default: "
                                        "--beta-gbps].", type=float, low=0, low_open=True,
                                        high=1e9, group=PARAMETERS)
    ranks: list | None = arg(None, "Comma-separated rank counts p [default: 4,1024,1048576; "
                             "with --measured: its p].", type=Numbers(int, 1, False),
                             group=SCALE)
    nodes: int | None = arg(None, "Nodes q (k = p/q per node).", type=int, low=1,
                            high=MAX_RANKS, group=SCALE)
    ranks_per_node: int | None = arg(None, "Ranks per node k [default: all ranks on one node].",
                                     type=int, low=1, high=MAX_RANKS, group=SCALE)
    sizes: Sizes = group(Sizes, max_bytes=128 << 20, factor=4)
    json: bool = arg(False, "Print the fits, predictions, crossovers and check as JSON "
                     "instead of tables.")
    view: TableView = group(TableView)
    step: bool = arg(False, "Predict a training step of distbench parallel instead (the step "
                     "options; --ranks with --tp/--pp gives D = p / (T P); --measured: a "
                     "parallel run to check against).")
    shape: ModelShape = group(ModelShape)
    layout: StepOptions = group(StepOptions)
    options: dict = field(default_factory=dict)  # the algorithms' declared options given


def algorithm_options() -> dict:
    """Every option the collectives' algorithms declare (``--inner``, ...), but those the
    command has itself (``--ranks-per-node``): what ``model`` offers them generically."""
    out: dict = {}
    for name in collective_names():
        for opt in get_collective(name).registry.options().values():
            if opt.name != "ranks_per_node":
                out.setdefault(opt.name, opt)
    return out


def _check(cfg: ModelConfig) -> None:
    """The checks that need no file. Raises UsageError."""
    check(cfg)
    if cfg.ranks and max(cfg.ranks) >= MAX_RANKS:
        raise UsageError(f"--ranks {max(cfg.ranks)} is too large (the model takes rank counts "
                         f"below 2**53)")
    if cfg.measured and not cfg.fit_runs and not cfg.step:
        raise UsageError("--measured needs --from RUN (the runs the model is fitted on)")
    if cfg.from_inter and not cfg.step:
        raise UsageError("--from-inter goes with --step")
    if not cfg.step and (cfg.shape != ModelShape() or cfg.layout != StepOptions()):
        raise UsageError("the model and layout options (--layers, --zero, --layouts, ...) go "
                         "with --step")
    if cfg.step:
        cfg.layout.check()
        cfg.shape.transformer().check()
        if cfg.layout.layouts == ["all"] and cfg.ranks and max(cfg.ranks) > ALL_LAYOUTS_MAX:
            raise UsageError(f"--layouts all enumerates the layouts of at most "
                             f"{ALL_LAYOUTS_MAX} ranks, not {max(cfg.ranks)}; give --layouts "
                             "DxTxP,...")
    elif given_names() & {"from_inter"}:
        raise UsageError("--from-inter goes with --step")
    cfg.sizes.check()
    if cfg.nodes is not None and cfg.ranks_per_node is not None:
        raise UsageError("give --nodes or --ranks-per-node, not both")


def _check_algorithms(cfg: ModelConfig) -> None:
    """The algorithm names and the options given against the collective's costed
    algorithms. Raises UsageError."""
    specs = costed(cfg.collective)
    for a in cfg.algos if cfg.algos != ["all"] else []:
        if a not in specs:
            raise UsageError(f"unknown algorithm {a!r} for --algo (choose from "
                             f"{', '.join(specs)} or all: those with a cost formula)")
    registry = get_collective(cfg.collective).registry
    registry.check(cfg.options)
    chosen = specs if cfg.algos == ["all"] else {a: specs[a] for a in cfg.algos}
    declared, typed = algorithm_options(), given_names()
    taken = {o.name for s in chosen.values() for o in s.options}
    idle = [declared[k].flag for k in cfg.options if k in typed and k not in taken]
    if idle:
        raise UsageError(f"{', '.join(idle)} do(es) nothing for --collective {cfg.collective} "
                         "with these algorithms")
    inner = cfg.options.get("inner")
    if inner is not None and "inner" in taken and inner not in specs:
        raise UsageError(f"--inner {inner!r} has no cost formula (choose from "
                         f"{', '.join(specs)})")


def _model(cfg: ModelConfig, **options) -> Job:
    """Alpha-beta (Hockney) model: each algorithm's textbook time, the fastest per size and the
    crossover sizes, for any rank count."""
    cfg = replace(cfg, options={k: v for k, v in options.items() if v is not None})
    _check(cfg)
    if not cfg.step:
        _check_algorithms(cfg)
    opts = {**flatten(cfg), "fit_runs": list(cfg.fit_runs), "from_inter": list(cfg.from_inter),
            "options": cfg.options, "model": cfg.shape.model()}
    return Job("model", opts, lambda _comm, _argv, _: run_model(opts), needs_mpi=False,
               view=cfg.view)


model_command = declared_command(
    "model", ModelConfig, _model,
    doc="""Alpha-beta (Hockney) model: each algorithm's textbook time, the fastest per size and
    the crossover sizes, for any rank count.

    Parameters are given (--alpha, --beta-gbps, --gamma-gbps) or fitted on measured runs
    (--from RUN ...); --measured RUN checks the fitted model against a run at another p.
    Formulas: each algorithm's docstring (Thakur, Rabenseifner & Gropp 2005; Patarasuk & Yuan
    2009; see distbench.analysis.cost). With --step: a training step of distbench parallel.""",
    examples=["distbench model --ranks 8,64,1024 --alpha 1.5 --beta-gbps 25",
              "distbench model --from results/A-allreduce --from results/B-allreduce "
              "--measured results/C-allreduce",
              "distbench model --step --params 175e9 --layouts 1024x1x1,16x8x8 --zero 0,3"],
    extra=[click_option(o if o.group else replace(o, group="Algorithm options"))
           for o in algorithm_options().values()])
