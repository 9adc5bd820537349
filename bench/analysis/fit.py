"""Fits of the alpha-beta (Hockney) model to measured AllReduce runs, and the check of the
textbook formulas (:mod:`distbench.analysis.cost`) against a run at another rank count.

* :func:`fit_line`, :func:`hockney_fits`: ``t(n) = alpha + beta n`` per algorithm and rank count
  (alpha in seconds, beta in seconds per byte; shown as alpha in us and 1/beta in GB/s), with R^2.
* :func:`fit_cost_model`: one algorithm's (alpha, beta, gamma) across rank counts, through its
  textbook formula; :func:`model_check` fits on some runs (e.g. p = 2, 3) and predicts another
  (e.g. p = 4) point by point.

Every fit minimises the *relative* residual ``t_model / t_measured - 1`` with non-negative
parameters, on the medians (``p50_us``) of the records: on a sweep from 8 B to 64 MiB an
unweighted fit lets the largest sizes alone decide alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

from distbench.analysis.cost import CostParams, alternatives, costed, gbps, predict


@dataclass(frozen=True)
class LineFit:
    """``t(n) = alpha + beta n`` for one algorithm at one rank count (SI units)."""

    algorithm: str
    ranks: int
    alpha: float
    beta: float
    r2: float
    points: int
    dtype: str | None = None

    @property
    def alpha_us(self) -> float:
        return self.alpha * 1e6

    @property
    def bandwidth_gbps(self) -> float:
        """1/beta in GB/s: the asymptotic algorithm bandwidth."""
        return gbps(self.beta)


def _relative_nnls(design: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative x minimising sum_i ((design_i . x) / t_i - 1)^2."""
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    x, _ = nnls(design / scale / t[:, None], np.ones_like(t))
    return x / scale


def fit_line(nbytes, seconds) -> tuple[float, float, float]:
    """Least-squares ``t = alpha + beta n`` with alpha, beta >= 0 on relative residuals.

    Args:
        nbytes: sizes in bytes, shape (m,), m >= 2 with at least two distinct sizes.
        seconds: measured times in seconds (> 0), shape (m,).

    Returns:
        (alpha in s, beta in s/byte, R^2): R^2 = 1 - SS_res / SS_tot weighted like the fit
        (weights 1/t^2, i.e. on relative residuals), 1 for a perfect line.

    Raises:
        ValueError: fewer than two distinct sizes, or a non-positive time.
    """
    n = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if n.shape != t.shape or np.unique(n).size < 2:
        raise ValueError("a line fit needs times at two or more distinct sizes")
    if np.any(t <= 0):
        raise ValueError("times must be > 0")
    alpha, beta = _relative_nnls(np.column_stack([np.ones_like(n), n]), t)
    w = 1.0 / t ** 2
    mean = float(np.sum(w * t) / np.sum(w))
    ss_tot = float(np.sum(w * (t - mean) ** 2))
    ss_res = float(np.sum(w * (t - alpha - beta * n) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(alpha), float(beta), r2


@dataclass(frozen=True)
class Point:
    """One measurement: median time ``seconds`` of ``algorithm`` (with its ``options``, a tuple
    of sorted items) at (nbytes, ranks) with ``ranks_per_node`` per node."""

    algorithm: str
    nbytes: int
    ranks: int
    ranks_per_node: int
    options: tuple
    seconds: float
    dtype: str

    @property
    def option_dict(self) -> dict:
        return dict(self.options)


def points(docs: list[dict], collective: str = "allreduce") -> list[Point]:
    """The ``collective`` records of result documents (``distbench.results.load_run``) as
    points; ranks per node from the record (``--ranks-per-node``) or else the run's
    environment. Records of an algorithm whose formula needs k ranks on every node
    (:attr:`~distbench.registry.Algorithm.equal_nodes`) from a run on unequal nodes (e.g. 3
    ranks on 2 nodes, 2 + 1, as srun places them) are left out."""
    specs = costed(collective)
    out = []
    for doc in docs:
        if doc.get("benchmark") != collective:
            continue
        node_sizes = doc.get("environment", {}).get("ranks_per_node") or [0]
        env_k = max(node_sizes)
        for rec in doc["records"]:
            if rec.get("p50_us") is None or rec["p50_us"] <= 0:
                continue
            p = int(rec["ranks"])
            k = rec.get("ranks_per_node") or env_k or p
            spec = specs.get(rec["algorithm"])
            if spec is not None and spec.equal_nodes and (
                    p % int(k) or (len(set(node_sizes)) > 1 and not rec.get("ranks_per_node"))):
                continue
            out.append(Point(rec["algorithm"], int(rec["bytes"]), p, int(k),
                             tuple(sorted((rec.get("options") or {}).items())),
                             rec["p50_us"] * 1e-6, rec.get("dtype")))
    return out



def hockney_fits(docs: list[dict], collective: str = "allreduce") -> list[LineFit]:
    """:func:`fit_line` per (algorithm, rank count, dtype) of the documents' ``collective``
    records, in first-seen order (groups with fewer than two sizes are left out)."""
    groups: dict[tuple, list[Point]] = {}
    for pt in points(docs, collective):
        groups.setdefault((pt.algorithm, pt.ranks, pt.dtype), []).append(pt)
    fits = []
    for (algo, p, dtype), pts in groups.items():
        n = np.array([q.nbytes for q in pts], dtype=np.float64)
        if np.unique(n).size < 2:
            continue
        alpha, beta, r2 = fit_line(n, np.array([q.seconds for q in pts]))
        fits.append(LineFit(algo, p, alpha, beta, r2, len(pts), dtype))
    return fits


@dataclass(frozen=True)
class CostFit:
    """An algorithm's (alpha, beta, gamma) fitted across rank counts."""

    algorithm: str
    params: CostParams
    ranks: tuple
    points: int
    rms_rel_error: float
    note: str | None = None


def _predict_points(spec, params: CostParams, pts: list[Point]) -> np.ndarray:
    return np.array([float(predict(spec, params, q.nbytes, q.ranks, q.ranks_per_node,
                                   q.option_dict)) for q in pts])


def _alternatives(spec, q: Point) -> np.ndarray:
    return alternatives(spec, q.nbytes, q.ranks, q.ranks_per_node, q.option_dict)


def fit_cost_model(points: list[Point], spec, gamma: float | None = None) -> CostFit:
    """Fit algorithm ``spec``'s formula (a :class:`~distbench.registry.Algorithm`) to its
    points at any mix of sizes and rank counts.

    The intra- and inter-node parameters are taken equal (one host, or one network). Formulas
    of one alternative are fitted by non-negative least squares on relative residuals; a
    minimum of alternatives (the library's call) by bounded nonlinear least squares (scipy
    ``least_squares``). When the data cannot separate beta from gamma (ring, tree and naive:
    their beta and gamma coefficients are proportional at every p) and ``gamma`` is not given,
    gamma is set to 0 and beta absorbs it.

    Args:
        points: :func:`points` (those of other algorithms are ignored).
        spec: the algorithm whose points to fit (its name selects them).
        gamma: s per byte reduced, fixed instead of fitted (None: fitted where identifiable).

    Raises:
        ValueError: fewer than two distinct sizes for the algorithm.
    """
    algorithm = spec.name
    pts = [q for q in points if q.algorithm == algorithm]
    if len({q.nbytes for q in pts}) < 2:
        raise ValueError(f"{algorithm}: need measurements at two or more sizes to fit")
    t = np.array([q.seconds for q in pts])
    note = None
    alts = [_alternatives(spec, q) for q in pts]
    if any(a.shape[0] > 1 for a in alts):
        params = _fit_nonlinear(spec, pts, t, gamma)
    else:
        cols = np.stack([a[0] for a in alts])
        design = np.column_stack([cols[:, 0] + cols[:, 3], cols[:, 1] + cols[:, 4], cols[:, 2]])
        if gamma is not None:
            ab = _relative_nnls(design[:, :2], t - design[:, 2] * gamma)
            x = np.array([*ab, gamma])
        elif _rank(design / t[:, None]) < 3:
            x = np.array([*_relative_nnls(design[:, :2], t), 0.0])
            note = "gamma folded into beta (not separable)"
        else:
            x = _relative_nnls(design, t)
        params = CostParams(*map(float, x))
    rel = _predict_points(spec, params, pts) / t - 1
    return CostFit(algorithm, params, tuple(sorted({q.ranks for q in pts})), len(pts),
                   float(np.sqrt(np.mean(rel ** 2))), note)


def _rank(matrix: np.ndarray, rtol: float = 1e-6) -> int:
    """Numerical rank of ``matrix`` after scaling its columns to unit norm."""
    norms = np.linalg.norm(matrix, axis=0)
    sv = np.linalg.svd(matrix[:, norms > 0] / norms[norms > 0], compute_uv=False)
    return int(np.sum(sv > rtol * sv[0])) if sv.size else 0


def _fit_nonlinear(spec, pts, t, gamma) -> CostParams:
    """Bounded least squares of relative residuals for formulas with a minimum in them."""
    n = np.array([q.nbytes for q in pts], dtype=np.float64)
    lo = n == n.min()
    x0 = np.array([max(float(np.median(t[lo])) / 4, 1e-7), float(np.median(t / n)) / 4,
                   0.0 if gamma is None else gamma])
    scale = np.array([1e-6, 1e-9, 1e-9])

    def resid(x):
        g = gamma if gamma is not None else x[2] * scale[2]
        return _predict_points(spec, CostParams(x[0] * scale[0], x[1] * scale[1], g),
                               pts) / t - 1

    sol = least_squares(resid, x0 / scale, bounds=(0, np.inf), method="trf")
    x = sol.x * scale
    return CostParams(float(x[0]), float(x[1]), float(gamma if gamma is not None else x[2]))


@dataclass(frozen=True)
class CheckRow:
    """A measured point beside the prediction of a model fitted on other rank counts."""

    algorithm: str
    nbytes: int
    ranks: int
    measured_us: float
    predicted_us: float

    @property
    def error(self) -> float:
        """predicted / measured - 1."""
        return self.predicted_us / self.measured_us - 1


def model_check(fit_docs: list[dict], measured_docs: list[dict], gamma: float | None = None,
                collective: str = "allreduce") -> tuple[dict[str, CostFit], list[CheckRow]]:
    """Fit every algorithm on ``fit_docs`` (e.g. runs at p = 2 and 3) and predict each point of
    ``measured_docs`` (e.g. a run at p = 4).

    Returns:
        (algorithm -> :class:`CostFit`, rows in the measured documents' order). Algorithms the
        fit runs lack (or measured at fewer than two sizes) are left out.
    """
    train = points(fit_docs, collective)
    specs = costed(collective)
    fits = {}
    for algo in dict.fromkeys(q.algorithm for q in train):
        if algo in specs and len({q.nbytes for q in train if q.algorithm == algo}) >= 2:
            fits[algo] = fit_cost_model(train, specs[algo], gamma)
    rows = []
    for q in points(measured_docs, collective):
        if q.algorithm in fits:
            pred = _predict_points(specs[q.algorithm], fits[q.algorithm].params, [q])[0]
            rows.append(CheckRow(q.algorithm, q.nbytes, q.ranks, q.seconds * 1e6, pred * 1e6))
    return fits, rows


__all__ = ["LineFit", "Point", "CostFit", "CheckRow", "fit_line", "points",
           "hockney_fits", "fit_cost_model", "model_check"]
