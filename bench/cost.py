"""Textbook AllReduce cost formulas in the alpha-beta (Hockney) model, vectorized.

A message of n bytes between two ranks costs ``alpha + n beta`` (alpha: latency in seconds,
beta: seconds per byte, 1/beta the link bandwidth); reducing n bytes costs ``n gamma``. Each
algorithm's time is linear in (alpha, beta, gamma) with coefficients that depend on n and on the
rank count p, so :func:`coefficients` returns those coefficients as arrays (broadcast over n and
p: a million ranks is one more element, not a loop) and :func:`predict` multiplies them out.

Formulas (n bytes, p ranks, lg = log2, p' = 2^floor(lg p), f = 1 if p is not a power of two).
Sources: Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1) (TRG); Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce
algorithms for clusters of workstations", JPDC 69(2); Zhu, Goodell, Gropp & Thakur 2009,
"Hierarchical collectives in MPICH2", EuroPVM/MPI.

=====================  =========================================================================
naive                  ``2 (p-1) (alpha + n beta) + (p-1) n gamma`` (linear reduce + broadcast,
                       the baseline TRG improve upon)
ring                   ``2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` (Patarasuk & Yuan),
                       plus ``(p-1)(ceil(n/p / S) - 1) alpha`` for the reduce-scatter's
                       segments of S = 1 MiB (``ring.SEGMENT_BYTES``) inside one node
                       (across nodes it sends whole blocks)
tree                   ``2 ceil(lg p) (alpha + n beta) + ceil(lg p) n gamma`` (TRG's binomial
                       reduce, then binomial broadcast)
recursive_doubling     ``lg p' (alpha + n beta + n gamma) + f (2 alpha + 2 n beta + n gamma)``
                       (TRG; the f term is MPICH's non-power-of-two fold)
rabenseifner           ``2 lg p' alpha + 2 (p'-1)/p' n beta + (p'-1)/p' n gamma`` + the same
                       fold (TRG: recursive-halving reduce-scatter + recursive-doubling
                       allgather)
hierarchical           ``2 ceil(lg k) (alpha + n beta) + ceil(lg k) n gamma + T_inner(q, n)``
                       on q nodes of k ranks, T_inner with the inter-node alpha', beta' (Zhu
                       et al.)
native                 the fastest of recursive_doubling, rabenseifner and ring at each (n, p):
                       the textbook algorithms MPICH (TRG) and Open MPI's ``coll/tuned`` select
                       among, assuming the library picks the best one
=====================  =========================================================================

These are the formulas in the docstrings of ``distbench.collectives.*``. On q > 1 nodes the flat
algorithms pay the inter-node alpha', beta' wherever a step crosses nodes (ranks numbered node
by node, k per node): every ring step (its steps run in lock step, so the slowest link sets the
pace), the naive root's p - k messages from other nodes, and the binary-distance steps of tree,
recursive doubling and Rabenseifner whose partner distance is >= k (exact for k and q powers of
two; an approximation otherwise).

Fits of these formulas to measurements are in :mod:`distbench.model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distbench.collectives.ring import SEGMENT_BYTES

LINEAR = ("naive", "ring", "tree", "recursive_doubling", "rabenseifner")
NATIVE_CANDIDATES = ("recursive_doubling", "rabenseifner", "ring")
ALGORITHMS = ("native", *LINEAR, "hierarchical")
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


def _lg_floor(p: np.ndarray) -> np.ndarray:
    return np.frexp(p.astype(np.float64))[1] - 1


def _lg_ceil(p: np.ndarray) -> np.ndarray:
    mant, exp = np.frexp(p.astype(np.float64))
    return np.where(mant == 0.5, exp - 1, exp)


def _split(steps, intra_steps, per_step_a, per_step_b):
    """(a, b, a', b') of ``steps`` steps of which ``intra_steps`` stay inside a node."""
    inter = steps - intra_steps
    return intra_steps * per_step_a, intra_steps * per_step_b, inter * per_step_a, \
        inter * per_step_b


def _check_nodes(p, k, ranks_per_node) -> None:
    if ranks_per_node is None or np.any(k < 1) or np.any(p % k):
        raise ValueError("hierarchical needs ranks_per_node >= 1 dividing the rank count")


def _node_tree(n, k) -> np.ndarray:
    """Binomial reduce + broadcast inside a node of k ranks (hierarchical's phases 1, 3)."""
    lk = _lg_ceil(k)
    zero = np.zeros(np.shape(n))
    return np.stack([2 * lk + zero, 2 * lk * n, lk * n, zero, zero])


def coefficients(algorithm: str, nbytes, ranks, ranks_per_node=None, inner: str = "ring"
                 ) -> np.ndarray:
    """Coefficients of (alpha, beta, gamma, alpha', beta') in ``algorithm``'s time.

    Args:
        algorithm: a name of :data:`LINEAR` or ``"hierarchical"`` (``native`` is a minimum,
            not linear: use :func:`predict`).
        nbytes: message size(s) in bytes (array-like, broadcast with ``ranks``).
        ranks: rank count(s) p >= 1.
        ranks_per_node: k, ranks per node (None: all ranks on one node; required for
            hierarchical, must divide p).
        inner: the leaders' algorithm for hierarchical (one of :data:`LINEAR`).

    Returns:
        float64 array of shape ``(5, *broadcast_shape)``: T = c[0] alpha + c[1] beta +
        c[2] gamma + c[3] alpha' + c[4] beta' (seconds, with the parameters in SI units).

    Raises:
        ValueError: unknown algorithm, p < 1, or a bad ``ranks_per_node`` for hierarchical.
    """
    n, p = np.broadcast_arrays(np.asarray(nbytes, dtype=np.float64),
                               np.asarray(ranks, dtype=np.int64))
    if np.any(p < 1):
        raise ValueError("rank counts must be >= 1")
    k = p if ranks_per_node is None else np.broadcast_to(np.asarray(ranks_per_node, np.int64),
                                                         p.shape)
    if algorithm == "hierarchical":
        _check_nodes(p, k, ranks_per_node)
        if inner not in LINEAR:
            raise ValueError(f"inner algorithm must be one of {', '.join(LINEAR)}, "
                             f"not {inner!r}")
        return _node_tree(n, k) + coefficients(inner, n, p // k, 1)  # leaders: all inter
    zero = np.zeros(p.shape)
    pf = p.astype(np.float64)
    if algorithm == "naive":
        inside = np.minimum(k, p) - 1
        a, b, ai, bi = _split(2 * (p - 1), 2 * inside, 1.0, n)
        return np.stack([a, b, (p - 1) * n, ai, bi])
    if algorithm == "ring":
        multi = k < p  # across nodes the ring sends whole blocks (ring.spans_nodes)
        segments = (p - 1) * np.maximum(np.ceil(np.ceil(n / pf) / SEGMENT_BYTES) - 1, 0)
        a = 2 * (p - 1) + np.where(multi, 0, segments)
        b = 2 * (pf - 1) / pf * n
        c = (pf - 1) / pf * n
        return np.stack([np.where(multi, 0, a), np.where(multi, 0, b), c,
                         np.where(multi, a, 0), np.where(multi, b, 0)])
    if algorithm == "tree":
        levels = _lg_ceil(p)
        a, b, ai, bi = _split(2 * levels, 2 * np.minimum(levels, _lg_ceil(k)), 1.0, n)
        return np.stack([a, b, levels * n, ai, bi])
    if algorithm in ("recursive_doubling", "rabenseifner"):
        levels = _lg_floor(p)
        p2 = np.ldexp(1.0, levels)
        fold = (p2 < p).astype(np.float64)
        near = np.minimum(levels, _lg_ceil(k))           # steps with partner distance < k
        fold_in = np.where(k >= 2, fold, 0)              # fold partners 2i, 2i+1
        fold_out = fold - fold_in
        if algorithm == "recursive_doubling":
            a, b, ai, bi = _split(levels, near, 1.0, n)
            c = (levels + fold) * n
        else:
            a, _, ai, _ = _split(2 * levels, 2 * near, 1.0, zero)
            b = 2 * (np.ldexp(1.0, near) - 1) / p2 * n
            bi = 2 * (p2 - np.ldexp(1.0, near)) / p2 * n
            c = ((p2 - 1) / p2 + fold) * n
        return np.stack([a + 2 * fold_in, b + 2 * fold_in * n, c,
                         ai + 2 * fold_out, bi + 2 * fold_out * n])
    raise ValueError(f"no cost formula for {algorithm!r} (known: {', '.join(ALGORITHMS)})")


def predict(algorithm: str, params: CostParams, nbytes, ranks, ranks_per_node=None,
            inner: str = "ring") -> np.ndarray:
    """Predicted AllReduce time in seconds, broadcast over ``nbytes`` and ``ranks``.

    ``native`` is the minimum over :data:`NATIVE_CANDIDATES`; hierarchical with
    ``inner="native"`` takes that minimum among the leaders. Other arguments as
    :func:`coefficients` (whose ValueErrors this raises).
    """
    vec = params.vector
    if algorithm == "native":
        return np.min([predict(a, params, nbytes, ranks, ranks_per_node)
                       for a in NATIVE_CANDIDATES], axis=0)
    if algorithm == "hierarchical" and inner == "native":
        n, p = np.broadcast_arrays(np.asarray(nbytes, np.float64), np.asarray(ranks, np.int64))
        k = np.broadcast_to(np.asarray(ranks_per_node or 0, np.int64), p.shape)
        _check_nodes(p, k, ranks_per_node)
        leaders = np.min([np.tensordot(vec, coefficients(a, n, p // k, 1), 1)
                          for a in NATIVE_CANDIDATES], axis=0)
        return np.tensordot(vec, _node_tree(n, k), 1) + leaders
    return np.tensordot(vec, coefficients(algorithm, nbytes, ranks, ranks_per_node, inner), 1)


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


__all__ = ["ALGORITHMS", "LINEAR", "NATIVE_CANDIDATES", "CostParams", "coefficients", "predict",
           "best_and_crossovers", "gbps"]
