"""The shared parts of the cost formulas (``cost(nbytes, ranks, ranks_per_node, **options)`` in
each algorithm module), vectorized over arrays of sizes and rank counts.

Coefficients are stacked in the order (alpha, beta, gamma, alpha', beta'): latency and time per
byte inside a node, time per byte reduced, latency and time per byte between nodes; an
algorithm returns ``(A, 5, *shape)``: A alternatives (the model takes the cheapest).
"""

from __future__ import annotations

import numpy as np


def lg_floor(p: np.ndarray) -> np.ndarray:
    """floor(log2 p) elementwise (p >= 1, integer array)."""
    return np.frexp(np.asarray(p).astype(np.float64))[1] - 1


def lg_ceil(p: np.ndarray) -> np.ndarray:
    """ceil(log2 p) elementwise (p >= 1, integer array)."""
    mant, exp = np.frexp(np.asarray(p).astype(np.float64))
    return np.where(mant == 0.5, exp - 1, exp)


def split_steps(steps, intra_steps, per_step_a, per_step_b):
    """(a, b, a', b') of ``steps`` steps of which ``intra_steps`` stay inside a node, each
    costing ``per_step_a`` latencies and ``per_step_b`` bytes."""
    inter = steps - intra_steps
    return (intra_steps * per_step_a, intra_steps * per_step_b, inter * per_step_a,
            inter * per_step_b)


def lock_step(a, b, c, multi) -> np.ndarray:
    """One alternative of ``a`` latencies, ``b`` bytes sent and ``c`` bytes reduced, all inside
    a node, or all between nodes where ``multi`` (the algorithm's steps run in lock step, and on
    several nodes every step has a pair that crosses them: ring, pairwise, Bruck)."""
    zero = np.zeros(np.broadcast(a, b, multi).shape)
    return one([np.where(multi, zero, a), np.where(multi, zero, b), c + zero,
                np.where(multi, a, zero), np.where(multi, b, zero)])


def one(coefficients) -> np.ndarray:
    """A single alternative: ``(5, *shape)`` coefficients -> ``(1, 5, *shape)``."""
    return np.asarray(coefficients, dtype=np.float64)[None]


def broadcast(nbytes, ranks, ranks_per_node):
    """(n float64, p int64, k int64) broadcast together; k = p where ``ranks_per_node`` is
    None (all ranks on one node).

    Raises:
        ValueError: a rank count < 1, or k < 1.
    """
    n, p = np.broadcast_arrays(np.asarray(nbytes, dtype=np.float64),
                               np.asarray(ranks, dtype=np.int64))
    if np.any(p < 1):
        raise ValueError("rank counts must be >= 1")
    k = p if ranks_per_node is None else np.broadcast_to(
        np.asarray(ranks_per_node, dtype=np.int64), p.shape)
    if np.any(k < 1):
        raise ValueError("ranks per node must be >= 1")
    return n, p, k


def cheapest_of(registry, names, nbytes, ranks, ranks_per_node) -> np.ndarray:
    """The cost alternatives of a library call taken to pick the best of the textbook
    algorithms ``names`` of ``registry``: their coefficients, stacked (the model takes the
    minimum)."""
    return np.concatenate([registry.spec(a).cost(nbytes, ranks, ranks_per_node)
                           for a in names])


def through_root(n, p, k, messages, per_peer, reduced) -> np.ndarray:
    """A linear algorithm's one alternative: the root exchanges ``messages`` messages and
    ``per_peer`` bytes with each of the other p - 1 ranks in turn, those of its own node (k - 1
    of them) at alpha, beta, the others at alpha', beta'; ``reduced`` bytes reduced."""
    inside = np.minimum(k, p) - 1
    outside = p - 1 - inside
    return one([messages * inside, inside * per_peer, reduced + 0.0 * n,
                messages * outside, outside * per_peer])


def tree_levels(n, p, k, passes: int = 1):
    """(a, b, a', b') of ``passes`` binomial trees of ceil(lg p) levels, each level one message
    of n bytes; the levels whose distance is >= k cross nodes."""
    levels = lg_ceil(p)
    return split_steps(passes * levels, passes * np.minimum(levels, lg_ceil(k)), 1.0, n)


def halving_levels(n, p, k, passes: int = 1):
    """(a, b, a', b', p') of ``passes`` recursive halvings (or doublings) over the p' =
    2^floor(lg p) ranks of the power-of-two group: lg p' steps that move (p'-1)/p' n in all;
    the steps with distance >= k, which move the largest halves, cross nodes."""
    levels = lg_floor(p)
    near = np.minimum(levels, lg_ceil(k))
    p2 = np.ldexp(1.0, levels)
    a, _, ai, _ = split_steps(passes * levels, passes * near, 1.0, np.zeros(np.shape(p)))
    b = passes * (np.ldexp(1.0, near) - 1) / p2 * n
    bi = passes * (p2 - np.ldexp(1.0, near)) / p2 * n
    return a, b, ai, bi, p2


def fold(n, p, k, coefficients, sizes: tuple, reduced) -> np.ndarray:
    """The power-of-two group's ``coefficients`` (a, b, c, a', b') plus MPICH's fold where p is
    not a power of two: one message of each of ``sizes`` bytes (e.g. the vector in and the
    result out), inside a node when k >= 2 (the fold's pairs are neighbours), and ``reduced``
    bytes reduced; one alternative."""
    extra = (np.ldexp(1.0, lg_floor(p)) < p).astype(np.float64)
    near = np.where(k >= 2, extra, 0)
    far = extra - near
    a, b, c, ai, bi = coefficients
    total = sum(sizes)
    return one([a + len(sizes) * near, b + near * total, c + extra * reduced,
                ai + len(sizes) * far, bi + far * total])
