"""The alpha-beta (Hockney) model of every registered algorithm that declares a cost formula.

A message of n bytes between two ranks costs ``alpha + n beta`` (alpha: latency in seconds,
beta: seconds per byte, 1/beta the link bandwidth); reducing n bytes costs ``n gamma``; between
nodes alpha', beta' apply. Each algorithm declares its time as coefficients of (alpha, beta,
gamma, alpha', beta') that depend on n, on the rank count p and the ranks per node k (its
module's ``cost``; :class:`distbench.registry.Algorithm`), vectorized over n and p (a million
ranks is one more element, not a loop). An algorithm may declare several alternatives: the
library's own call is taken to be the cheapest of the textbook algorithms it selects among.
:func:`predict` multiplies them out and takes that minimum.

Sources of the formulas: each algorithm's docstring (Thakur, Rabenseifner & Gropp 2005,
"Optimization of collective communication operations in MPICH", IJHPCA 19(1); Patarasuk & Yuan
2009, JPDC 69(2); Zhu, Goodell, Gropp & Thakur 2009, EuroPVM/MPI). Fits of the formulas to
measurements are in :mod:`distbench.analysis.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distbench.collectives import get_collective
from distbench.registry import accepted

GB = 1e9


@dataclass(frozen=True)
class CostParams:
    """Machine parameters in SI units: ``alpha`` s per message, ``beta`` s per byte sent,
    ``gamma`` s per byte reduced; ``alpha_inter``/``beta_inter`` between nodes (None: same as
    inside a node)."""

    alpha: float
    beta: float
    gamma: float = 0.0
    alpha_inter: float | None = None
    beta_inter: float | None = None

    @classmethod
    def from_units(cls, alpha_us: float, beta_gbps: float, gamma_gbps: float | None = None,
                   alpha_inter_us: float | None = None,
                   beta_inter_gbps: float | None = None) -> CostParams:
        """From alpha in microseconds and bandwidths 1/beta, 1/gamma in GB/s (None or inf:
        free)."""
        def per_byte(gbps):
            return 0.0 if gbps is None or np.isinf(gbps) else 1.0 / (gbps * GB)

        return cls(alpha_us * 1e-6, per_byte(beta_gbps), per_byte(gamma_gbps),
                   None if alpha_inter_us is None else alpha_inter_us * 1e-6,
                   None if beta_inter_gbps is None else per_byte(beta_inter_gbps))

    @property
    def vector(self) -> np.ndarray:
        """(alpha, beta, gamma, alpha', beta') with the inter-node values filled in."""
        ai = self.alpha if self.alpha_inter is None else self.alpha_inter
        bi = self.beta if self.beta_inter is None else self.beta_inter
        return np.array([self.alpha, self.beta, self.gamma, ai, bi])


def gbps(per_byte: float) -> float:
    """Bandwidth in GB/s of a cost per byte in seconds (inf for 0)."""
    return float("inf") if per_byte <= 0 else 1.0 / per_byte / GB


def costed(collective: str = "allreduce") -> dict:
    """name -> :class:`~distbench.registry.Algorithm` of the algorithms of ``collective`` that
    declare a cost formula, baseline first (plug-ins included)."""
    decl = get_collective(collective)
    specs = (decl.registry.spec(a) for a in decl.algorithms())
    return {s.name: s for s in specs if s.cost is not None}


def spec_of(name: str, collective: str = "allreduce"):
    """The :class:`~distbench.registry.Algorithm` of a registered algorithm of ``collective``.

    Raises:
        ValueError: not registered.
    """
    registry = get_collective(collective).registry
    if name not in registry:
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(registry)})")
    return registry.spec(name)


def linear(specs: dict) -> list[str]:
    """The names among ``specs`` whose formula is one alternative (fixed algorithms; the
    others are a minimum, e.g. the library's call)."""
    return [a for a, s in specs.items() if alternatives(s, 1 << 20, 4).shape[0] == 1]


def alternatives(spec, nbytes, ranks, ranks_per_node=None, options: dict | None = None
                 ) -> np.ndarray:
    """The coefficient alternatives of algorithm ``spec``'s time: shape ``(A, 5, *broadcast)``;
    the time is ``min over a of c[a, 0] alpha + c[a, 1] beta + c[a, 2] gamma + c[a, 3]
    alpha' + c[a, 4] beta'`` (seconds, with the parameters in SI units).

    Args:
        spec: a :class:`~distbench.registry.Algorithm` (:func:`spec_of`, :func:`costed`).
        nbytes: message size(s) in bytes (array-like, broadcast with ``ranks``).
        ranks: rank count(s) p >= 1.
        ranks_per_node: k (None: all ranks on one node).
        options: the algorithm's options (e.g. ``{"inner": "ring"}``; those its formula does
            not take are left out); an option named ``ranks_per_node`` overrides the argument
            (hierarchical's own grouping).

    Raises:
        ValueError: no cost formula, p < 1, or options the formula rejects.
    """
    if spec.cost is None:
        raise ValueError(f"{spec.name!r} declares no cost formula")
    args = {"ranks_per_node": ranks_per_node, **accepted(spec.cost, options or {})}
    return np.asarray(spec.cost(nbytes, ranks, **args), dtype=np.float64)


def coefficients(spec, nbytes, ranks, ranks_per_node=None, options: dict | None = None
                 ) -> np.ndarray:
    """The coefficients ``(5, *broadcast)`` of a fixed (one-alternative) algorithm.

    Raises:
        ValueError: as :func:`alternatives`, or the algorithm is a minimum of alternatives
            (use :func:`predict`).
    """
    alt = alternatives(spec, nbytes, ranks, ranks_per_node, options)
    if alt.shape[0] != 1:
        raise ValueError(f"{spec.name!r} is the cheapest of {alt.shape[0]} alternatives, not "
                         "linear in the parameters: use predict()")
    return alt[0]


def predict(spec, params: CostParams, nbytes, ranks, ranks_per_node=None,
            options: dict | None = None) -> np.ndarray:
    """Predicted time in seconds, broadcast over ``nbytes`` and ``ranks``: the cheapest of the
    algorithm's alternatives. Arguments and errors as :func:`alternatives`."""
    alt = alternatives(spec, nbytes, ranks, ranks_per_node, options)
    return np.min(np.tensordot(params.vector, alt, axes=([0], [1])), axis=0)


def best_and_crossovers(curves: dict[str, callable], lo: float, hi: float, grid: int = 2048
                        ) -> list[tuple[float, str, str]]:
    """Sizes in [lo, hi] bytes where the fastest algorithm changes.

    Args:
        curves: name -> vectorized function of message size (bytes) -> seconds.
        lo, hi: size range in bytes (0 < lo <= hi).

    Returns:
        [(size in bytes, fastest below, fastest above)], ascending, located by bisection
        (to 0.1 %) between the points of a log-spaced grid.
    """
    names = list(curves)
    n = np.geomspace(lo, hi, grid) if hi > lo else np.array([lo])
    best = np.argmin([curves[a](n) for a in names], axis=0)
    out = []
    for i in np.flatnonzero(best[1:] != best[:-1]):
        a, b = names[best[i]], names[best[i + 1]]
        x0, x1 = n[i], n[i + 1]
        while x1 / x0 > 1.001:
            mid = np.sqrt(x0 * x1)
            if curves[a](mid) <= curves[b](mid):
                x0 = mid
            else:
                x1 = mid
        out.append((float(np.sqrt(x0 * x1)), a, b))
    return out


__all__ = ["CostParams", "alternatives", "best_and_crossovers", "coefficients", "costed",
           "gbps", "linear", "predict", "spec_of"]
