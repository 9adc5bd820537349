"""The bound beside every bandwidth: at each size of a collective's sweep, the machine's own
point-to-point and reduction rates are measured in the same process group, on the case's own
buffers, with every rank active at once, interleaved with the algorithms; each algorithm's
alpha-beta-gamma cost formula (its module's ``cost``, :mod:`distbench.analysis.cost`) evaluated
with them is its bound at that size, and the measured time is shown as a percentage of it.

Three reference calls, timed like the algorithms (barrier, ``Wtime`` per iteration; the median
iteration, ``p50_us``, so that a stalled iteration does not loosen the bound):

* ``alpha``: ``Sendrecv`` of one element around the ring (send to r+1, receive from r-1):
  alpha = its time.
* ``p2p``: ``Sendrecv`` of half the case's largest buffer into its other half, around the ring:
  beta = (t_p2p - alpha) / (bytes of the half), 1/beta the point-to-point bandwidth.
* ``reduce``: the run's reduction ufunc (``np.add`` for ``--op sum``) of one half into the
  other on every rank at once: gamma = t_reduce / (bytes of the half), 1/gamma the reduction
  bandwidth (the rate a reduction consumes one incoming vector, as ``distbench info`` counts).

``bound_us`` = the cheapest alternative of the algorithm's cost coefficients times (alpha, beta,
gamma) (one node's parameters for the inter-node ones too: the ring's slowest link sets the
p2p time), and ``pct_of_bound`` = 100 bound_us / p50_us (the algorithm's median iteration
too): 100 % means the algorithm moves and
reduces its bytes as fast as one message and one ufunc call do on this machine, in this state.
The references overwrite the case's buffers, so they run after its check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from distbench.analysis.cost import CostParams, predict
from distbench.collectives.ops import reduce_ufunc
from distbench.collectives.words import mpi_type
from distbench.runtime import mpi, namespace_of

TAG = 0x424E  # "BN"
ALPHA, P2P, REDUCE = "·alpha", "·p2p", "·reduce"  # names no algorithm has
NAMES = (ALPHA, P2P, REDUCE)


def reference_calls(comm, buffers, op) -> tuple[dict[str, Callable], int]:
    """The three reference calls on the largest of ``buffers`` (arrays of the case; a two-
    element scratch of its dtype where it has fewer than two elements) and the bytes ``p2p``
    and ``reduce`` move (half the buffer). Collective calls (every rank, the same sizes)."""
    arrays = [b for b in buffers if hasattr(b, "shape")]
    buf = max(arrays, key=lambda b: b.shape[0])
    xp = namespace_of(buf)
    if buf.shape[0] < 2:
        buf = xp.zeros(2, dtype=buf.dtype)
    # the same size on every rank (an all-to-all-v's buffers differ between ranks)
    half = comm.allreduce(buf.shape[0], op=mpi().MIN) // 2
    a, b = buf[:half], buf[half: 2 * half]
    rank, p = comm.Get_rank(), comm.Get_size()
    dest, src = (rank + 1) % p, (rank - 1) % p
    fn = reduce_ufunc(op, xp)
    # pre-built typed specs, as the library's call gets them (benchmarks.collective)
    T = mpi_type(buf.dtype) if xp is np and type(comm) is mpi().Intracomm else None
    a1, b1, sa, sb = ((a[:1], b[:1], a, b) if T is None else
                      ([a[:1], T], [b[:1], T], [a, T], [b, T]))

    def alpha():
        comm.Sendrecv(a1, dest, TAG, b1, src, TAG)

    def p2p():
        comm.Sendrecv(sa, dest, TAG, sb, src, TAG)

    def reduce():
        fn(a, b, out=b)

    return {ALPHA: alpha, P2P: p2p, REDUCE: reduce}, half * buf.itemsize


def parameters(stats: dict, nbytes: int) -> CostParams:
    """alpha, beta, gamma (SI units) from the references' statistics (``p50_us`` each) and
    the bytes ``nbytes`` their p2p and reduce calls moved."""
    t_a = stats[ALPHA]["p50_us"] * 1e-6
    t_p = stats[P2P]["p50_us"] * 1e-6
    t_r = stats[REDUCE]["p50_us"] * 1e-6
    return CostParams(t_a, max(t_p - t_a, 0.0) / nbytes, t_r / nbytes)


def reference_fields(params: CostParams) -> dict:
    """The record's ``alpha_us``, ``p2p_gbps`` and ``reduce_gbps`` (None where free)."""
    def gbps(per_byte):
        return None if per_byte <= 0 else 1.0 / per_byte / 1e9

    return {"alpha_us": params.alpha * 1e6, "p2p_gbps": gbps(params.beta),
            "reduce_gbps": gbps(params.gamma)}


def bound_fields(spec, options: dict | None, params: CostParams, nbytes: int, ranks: int,
                 p50_us: float) -> dict:
    """``bound_us`` and ``pct_of_bound`` (100 bound / ``p50_us``) of one record of algorithm
    ``spec`` (a :class:`~distbench.registry.Algorithm`; None for one that declares no cost
    formula, or one its formula rejects)."""
    try:
        bound = float(np.asarray(predict(spec, params, nbytes, ranks, None, options))) * 1e6
    except (ValueError, TypeError):
        return {"bound_us": None, "pct_of_bound": None}
    pct = 100 * bound / p50_us if p50_us > 0 else None
    return {"bound_us": bound, "pct_of_bound": pct}


__all__ = ["NAMES", "bound_fields", "parameters", "reference_calls", "reference_fields"]
