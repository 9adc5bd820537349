"""PowerSGD: rank-r gradient compression by one step of power iteration, summable through any
AllReduce (Vogels, Karimireddy and Jaggi, "PowerSGD: Practical Low-Rank Gradient Compression
for Distributed Optimization", NeurIPS 2019, Algorithm 1; PyTorch's DDP communication hook
``powerSGD_hook`` is the deployed form).

Per layer, with M the gradient plus the error-feedback residual reshaped to an n x m matrix and
Q an m x r matrix warm-started from the previous step:

    P = M Q;  P = AllReduce-mean(P);  P = orthogonalize(P)  (Gram-Schmidt);
    Q = M^T P;  Q = AllReduce-mean(Q);  update = P Q^T;  residual = M - P Q^T.

Both AllReduces go through any registered algorithm (``--allreduce``): the P and Q of every
compressed layer are fused into one buffer each, as the hook does. Layers that do not pay off
(vectors, and matrices with n m < ``min_compression_rate`` r (n + m), PyTorch's
``_should_compress``) go dense in one fused AllReduce of their own, with no residual. The rank
is min(r, n, m) per matrix. Wire bytes per rank and step: r (n + m) float32 per compressed
matrix plus the dense part, all handed to AllReduce (so a ring moves 2 (p-1)/p of them per
link). The exchange is :class:`PowerSGDExchange`; the compressor object itself
(:class:`PowerSGD`) also compresses one vector alone (a single client's upload in ``fedavg``:
one power iteration from its own Q, payload P and Q), and gives the formulas.
"""

from __future__ import annotations

import math
import time

import numpy as np

from distbench.algorithms.compression.base import Compressor, as_flat
from distbench.collectives import get_allreduce
from distbench.errors import UsageError
from distbench.registry import Option, in_range
from distbench.runtime import namespace_of

RANK = Option("powersgd_rank", int, 2, "powersgd: the rank r of the approximation (PyTorch's "
              "matrix_approximation_rank).", check=in_range("--powersgd-rank", 1, 1 << 16))
WARM_START = Option("powersgd_warm_start", bool, True, "powersgd: start each step's power "
                    "iteration from the previous Q (the paper's warm start); off: a fresh "
                    "random Q every step.", negatable=True)
MIN_RATE = Option("min_compression_rate", float, 2.0, "powersgd: compress a matrix only when "
                  "n m >= this x r (n + m) (PyTorch's min_compression_rate); the others go "
                  "dense.", check=in_range("--min-compression-rate", 0, 1e6, low_open=True))
EPS = 1e-8  # the Gram-Schmidt guard against a zero column (PyTorch's epsilon)


def matrix_shape(d: int) -> tuple[int, int]:
    """The n x m matrix a flat d-element gradient is read as: n the largest divisor of d not
    above sqrt(d) (a square for powers of 4, n x 2n for the other powers of 2)."""
    if d <= 0:
        return (0, 0)
    n = math.isqrt(d)
    while d % n:
        n -= 1
    return (n, d // n)


def compressible(shape, rank: int, rate: float) -> bool:
    """Whether a layer of ``shape`` is compressed: a matrix with n m >= rate r (n + m)."""
    if len(shape) != 2:
        return False
    n, m = shape
    r = min(rank, n, m)
    return r > 0 and n * m >= rate * r * (n + m)


def orthogonalize(p, eps: float = EPS) -> None:
    """Gram-Schmidt on the columns of ``p`` (n x r), in place: the columns become orthonormal
    (a zero column stays zero, guarded by ``eps``), the same arithmetic on every rank."""
    xp = namespace_of(p)
    for i in range(p.shape[1]):
        col = p[:, i]
        col /= float(xp.linalg.norm(col)) + eps
        if i + 1 < p.shape[1]:
            rest = p[:, i + 1:]
            rest -= xp.outer(col, col @ rest)


class PowerSGD(Compressor):
    """``powersgd``: the compressor's formulas and its one-vector form.

    Args:
        powersgd_rank: r (>= 1); per matrix min(r, n, m).
        powersgd_warm_start: reuse Q across steps (True) or draw a new one each step.
        min_compression_rate: compress a matrix only when n m >= rate r (n + m).
        error_feedback: keep the residual M - P Q^T (None or True: on; False: off, the
            paper's ablation).
        seed: seed of Q's initial (and, without warm start, every) draw, the same on every
            rank.

    Payload of :meth:`compress` (one vector alone, read as :func:`matrix_shape`): ``(P (n r,),
    Q (m r,))`` float32 of one power iteration, or the vector itself when it does not pay off.
    """

    name = "powersgd"
    biased = True
    allreduced = True  # the exchange sums P and Q by AllReduce (link bytes 2(p-1)/p w)
    own_exchange = True
    OPTIONS = (RANK, WARM_START, MIN_RATE)

    def __init__(self, powersgd_rank: int = RANK.default,
                 powersgd_warm_start: bool = WARM_START.default,
                 min_compression_rate: float = MIN_RATE.default, error_feedback=None,
                 seed: int = 0):
        super().__init__()
        RANK.validate(powersgd_rank)
        MIN_RATE.validate(min_compression_rate)
        self.powersgd_rank = int(powersgd_rank)
        self.powersgd_warm_start = bool(powersgd_warm_start)
        self.min_compression_rate = float(min_compression_rate)
        self.error_feedback = error_feedback is not False
        self.seed = seed
        self._q = None

    def describe(self) -> str:
        return (f"powersgd(r={self.powersgd_rank}" + ("" if self.powersgd_warm_start else
                                                       ",cold") + ")"
                + ("+EF" if self.error_feedback else ""))

    def layers(self, d: int, shapes=None) -> list[tuple]:
        """The layer shapes of a d-element vector: ``shapes`` (their sizes must add up to d)
        or the one matrix :func:`matrix_shape` reads it as.

        Raises:
            UsageError: shapes whose sizes do not add up to d.
        """
        if shapes is None:
            return [matrix_shape(d)]
        shapes = [tuple(int(x) for x in s) for s in shapes]
        if sum(math.prod(s) for s in shapes) != d:
            raise UsageError(f"powersgd: layer shapes of {sum(math.prod(s) for s in shapes)} "
                             f"elements for a {d}-element vector")
        return shapes

    def payload_bytes(self, d: int, shapes=None) -> int:
        """Bytes a rank hands to AllReduce per step: r (n + m) float32 per compressed matrix,
        the other layers' elements dense."""
        total = 0
        for s in self.layers(d, shapes):
            if compressible(s, self.powersgd_rank, self.min_compression_rate):
                r = min(self.powersgd_rank, *s)
                total += r * (s[0] + s[1])
            else:
                total += math.prod(s)
        return 4 * total

    def check_shapes(self, shapes, what: str) -> None:
        """The rank fits: r <= min(n, m) for some matrix of ``shapes`` (else nothing could be
        compressed at that rank).

        Raises:
            UsageError: r is larger than every matrix allows.
        """
        mats = [s for s in shapes if len(s) == 2 and min(s) > 0]
        if mats and all(self.powersgd_rank > min(s) for s in mats):
            small = max(min(s) for s in mats)
            raise UsageError(f"--powersgd-rank {self.powersgd_rank} is larger than min(n, m) = "
                             f"{small} of every matrix of {what}")

    def initial_q(self, xp, m: int, r: int, step: int = 0):
        """The m x r starting Q: standard normal from (seed, step), float32, the same on every
        rank (a new draw per step without warm start)."""
        rng = np.random.default_rng([self.seed, 0x5057, step])
        return xp.asarray(rng.standard_normal((m, r)).astype(np.float32))

    # ---- one vector alone (a federated client's upload)

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        n, m = matrix_shape(d)
        if not compressible((n, m), self.powersgd_rank, self.min_compression_rate):
            dense = self._buf(xp, "dense", d, np.float32)
            dense[...] = x
            return (dense,)
        r = min(self.powersgd_rank, n, m)
        mat = x.reshape(n, m)
        if self._q is None or not self.powersgd_warm_start:
            self._q = self.initial_q(xp, m, r)
        p = self._buf(xp, "p", n * r, np.float32).reshape(n, r)
        xp.matmul(mat, self._q, out=p)
        orthogonalize(p)
        q = self._buf(xp, "q", m * r, np.float32).reshape(m, r)
        xp.matmul(mat.T, p, out=q)
        self._q = q.copy()
        return (p.reshape(-1), q.reshape(-1))

    def _decompress_flat(self, payload, out) -> None:
        if len(payload) == 1:
            out[...] = payload[0]
            return
        d = out.shape[0]
        n, m = matrix_shape(d)
        r = payload[0].shape[0] // n
        xp = namespace_of(out)
        xp.matmul(payload[0].reshape(n, r), payload[1].reshape(m, r).T,
                  out=out.reshape(n, m))

    def exchange(self, comm, allreduce: str = "native", shapes=None, **_):
        """The distributed form: :class:`PowerSGDExchange` on ``comm``."""
        return PowerSGDExchange(comm, self, allreduce, shapes)


class PowerSGDExchange:
    """``out = P Q^T`` per compressed layer and the exact mean of the others: PowerSGD's step
    (module doc) on ``comm``, collective.

    Attributes after each call: ``wire_bytes`` (bytes this rank handed to AllReduce),
    ``seconds`` (``compress``: M and P = M Q; ``exchange``: the three AllReduces;
    ``decompress``: orthogonalization, Q = M^T P, P Q^T and the residual), ``steps``.

    Raises:
        UsageError: an unknown AllReduce, or layer shapes that do not fit the vector.
    """

    def __init__(self, comm, compressor: PowerSGD, allreduce: str = "native", shapes=None):
        self.comm, self.compressor = comm, compressor
        self.size = comm.Get_size()
        try:
            self._allreduce = get_allreduce(allreduce)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        self.shapes = shapes
        self.residual_memory = None
        self.wire_bytes = 0
        self.seconds = {"compress": 0.0, "exchange": 0.0, "decompress": 0.0}
        self.steps = 0
        self._plan = None

    @property
    def error_feedback(self) -> bool:
        return self.compressor.error_feedback

    def _layout(self, d: int, xp) -> dict:
        """Offsets of every layer in the vector, in P's and Q's fused buffers and in the
        dense buffer; the buffers and the Qs (built once per vector size)."""
        comp = self.compressor
        mats, dense, off, poff, qoff, doff = [], [], 0, 0, 0, 0
        for s in comp.layers(d, self.shapes):
            size = math.prod(s)
            if compressible(s, comp.powersgd_rank, comp.min_compression_rate):
                n, m = s
                r = min(comp.powersgd_rank, n, m)
                mats.append((off, n, m, r, poff, qoff))
                poff += n * r
                qoff += m * r
            else:
                dense.append((off, size, doff))
                doff += size
            off += size
        qs = xp.empty(max(qoff, 1), dtype=np.float32)
        for (_o, _n, m, r, _p, q0) in mats:
            qs[q0:q0 + m * r] = comp.initial_q(xp, m, r).reshape(-1)
        return {"d": d, "xp": xp, "mats": mats, "dense": dense,
                "p": xp.empty(max(poff, 1), dtype=np.float32)[:poff],
                "p_sum": xp.empty(max(poff, 1), dtype=np.float32)[:poff],
                "q": qs[:qoff], "q_sum": xp.empty(max(qoff, 1), dtype=np.float32)[:qoff],
                "dense_in": xp.empty(max(doff, 1), dtype=np.float32)[:doff],
                "dense_out": xp.empty(max(doff, 1), dtype=np.float32)[:doff],
                "m": xp.empty(d, dtype=np.float32)}

    def _mean(self, send, recv) -> None:
        if send.shape[0]:
            self._allreduce(self.comm, send, recv)
            namespace_of(recv).divide(recv, self.size, out=recv)

    def __call__(self, grad, out=None):
        """The step's update (the mean over ranks of the low-rank approximations and of the
        dense layers) of this rank's ``grad`` (flat float32 of the layers' sizes); into
        ``out`` (a new array if None)."""
        comp = self.compressor
        xp = namespace_of(grad)
        flat = as_flat(grad)
        d = flat.shape[0]
        if self._plan is None or self._plan["d"] != d or self._plan["xp"] is not xp:
            self._plan = self._layout(d, xp)
            self.residual_memory = xp.zeros(d, dtype=np.float32) if comp.error_feedback \
                else None
        plan = self._plan
        if out is None:
            out = xp.empty(grad.shape, dtype=np.float32)
        res = out.reshape(-1)
        t0 = time.perf_counter()
        mm = plan["m"]
        if self.residual_memory is not None:
            xp.add(flat, self.residual_memory, out=mm)
        else:
            mm[...] = flat
        if not comp.powersgd_warm_start and self.steps:
            for (_o, _n, m, r, _p, q0) in plan["mats"]:
                plan["q"][q0:q0 + m * r] = comp.initial_q(xp, m, r, self.steps).reshape(-1)
        for (o, n, m, r, p0, q0) in plan["mats"]:
            xp.matmul(mm[o:o + n * m].reshape(n, m), plan["q"][q0:q0 + m * r].reshape(m, r),
                      out=plan["p"][p0:p0 + n * r].reshape(n, r))
        for (o, size, d0) in plan["dense"]:
            plan["dense_in"][d0:d0 + size] = mm[o:o + size]
        t1 = time.perf_counter()
        self._mean(plan["dense_in"], plan["dense_out"])
        self._mean(plan["p"], plan["p_sum"])
        t2 = time.perf_counter()
        for (o, n, m, r, p0, q0) in plan["mats"]:
            p = plan["p_sum"][p0:p0 + n * r].reshape(n, r)
            orthogonalize(p)
            xp.matmul(mm[o:o + n * m].reshape(n, m).T, p,
                      out=plan["q"][q0:q0 + m * r].reshape(m, r))
        t3 = time.perf_counter()
        self._mean(plan["q"], plan["q_sum"])
        plan["q"][...] = plan["q_sum"]  # the warm start of the next step: the mean Q
        t4 = time.perf_counter()
        for (o, n, m, r, p0, q0) in plan["mats"]:
            xp.matmul(plan["p_sum"][p0:p0 + n * r].reshape(n, r),
                      plan["q"][q0:q0 + m * r].reshape(m, r).T,
                      out=res[o:o + n * m].reshape(n, m))
        for (o, size, d0) in plan["dense"]:
            res[o:o + size] = plan["dense_out"][d0:d0 + size]
        if self.residual_memory is not None:
            xp.subtract(mm, res, out=self.residual_memory)
            for (o, size, _d0) in plan["dense"]:
                self.residual_memory[o:o + size] = 0  # dense layers were sent whole
        t5 = time.perf_counter()
        self.wire_bytes = int(plan["p"].nbytes + plan["q"].nbytes + plan["dense_in"].nbytes)
        self.seconds = {"compress": t1 - t0, "exchange": (t2 - t1) + (t4 - t3),
                        "decompress": (t3 - t2) + (t5 - t4)}
        self.steps += 1
        return out


__all__ = ["PowerSGD", "PowerSGDExchange", "compressible", "matrix_shape", "orthogonalize"]
