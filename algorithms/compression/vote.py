"""signSGD with majority vote (Bernstein, Wang, Azizzadenesheli and Anandkumar, "signSGD:
Compressed Optimisation for Non-Convex Problems", ICML 2018, Algorithm 3; and Bernstein, Zhao,
Azizzadenesheli and Anandkumar, "signSGD with Majority Vote is Communication Efficient and
Fault Tolerant", ICLR 2019, Algorithm 1; Signum is the variant with momentum).

Each worker sends the signs of its gradient (or, Signum, of its momentum ``m = beta m + (1 -
beta) g``), packed 1 bit per element (``numpy.packbits``: a set bit is a non-negative entry);
the aggregate is the sign of the sum of the signs, the majority vote (0 where the vote ties,
which an even p allows). The vote is implemented with the collectives the project has: an
Allgather of the packed bits (d/8 bytes per worker; every rank receives the p - 1 others and
votes locally, so there is no separate return message as in the paper's parameter server),
plus one float per worker, the mean |g| of its vector, so that the vote scaled by the
workers' mean magnitude drops into SGD at the dense learning rate (the paper's raw sign update
is that with a learning rate of its own). ``--adversarial K`` makes the last K ranks send
flipped signs (the ICLR 2019 fault-tolerance experiment: the vote survives K < p/2).
"""

from __future__ import annotations

import time

import numpy as np

from distbench.algorithms.compression.base import Compressor, as_flat, total
from distbench.errors import UsageError
from distbench.registry import Option, in_range
from distbench.runtime import namespace_of

MOMENTUM = Option("signum_momentum", float, 0.0, "majority: Signum's momentum beta (each "
                  "worker sends the sign of m = beta m + (1 - beta) g; 0: signSGD).",
                  check=in_range("--signum-momentum", 0, 1, high_open=True))
ADVERSARIAL = Option("adversarial", int, 0, "majority: the last K ranks send flipped signs "
                     "(the vote's fault tolerance, K < p/2 to survive; K < p).",
                     check=in_range("--adversarial", 0, 1 << 20))


class MajorityVote(Compressor):
    """``majority``: one worker's side of the vote. Payload ``(bits uint8 (ceil(d/8),),
    scale float32 (1,))``, ``wire_bytes = ceil(d/8) + 4``. The vote needs every worker's
    bits at once: :class:`MajorityVoteExchange` (a payload alone decompresses to the worker's
    scaled sign).

    Args:
        signum_momentum: beta (0: plain signSGD).
        adversarial: K, the number of flipping workers (the last K ranks).
        rank: this rank (whether it flips), ranks: p (checked against K by the exchange).
    """

    name = "majority"
    biased = True
    own_exchange = True
    own_memory = True  # no error feedback: the vote is not a sum of decompressions
    not_for_uploads = ("the vote is a collective of all workers, not an upload to a server "
                       "(use sign)")
    OPTIONS = (MOMENTUM, ADVERSARIAL)

    def __init__(self, signum_momentum: float = 0.0, adversarial: int = 0, rank: int = 0):
        super().__init__()
        MOMENTUM.validate(signum_momentum)
        ADVERSARIAL.validate(adversarial)
        self.signum_momentum = float(signum_momentum)
        self.adversarial = int(adversarial)
        self.rank = int(rank)
        self.ranks = 1
        self.momentum = None

    def describe(self) -> str:
        base = "signum" if self.signum_momentum else "signsgd"
        return f"{base}-vote" + (f"(K={self.adversarial})" if self.adversarial else "")

    def payload_bytes(self, d: int) -> int:
        return (d + 7) // 8 + 4

    @property
    def flips(self) -> bool:
        """Whether this rank is one of the K adversarial workers (the last K)."""
        return self.adversarial > 0 and self.rank >= self.ranks - self.adversarial

    def compress(self, x) -> tuple:
        x = as_flat(x)
        xp = namespace_of(x)
        d = x.shape[0]
        src = x
        if self.signum_momentum:
            if self.momentum is None or self.momentum.shape[0] != d:
                self.momentum = xp.zeros(d, dtype=np.float32)
            m = self.momentum
            xp.multiply(m, self.signum_momentum, out=m)
            m += (1.0 - self.signum_momentum) * x
            src = m
        bits = self._buf(xp, "bits", (d + 7) // 8, np.uint8)
        bits[...] = xp.packbits(src >= 0)
        if self.flips:
            xp.invert(bits, out=bits)
        scale = self._buf(xp, "scale", 1, np.float32)
        scale[0] = total(xp, xp.abs(src)) / d if d else 0.0
        return (bits, scale)

    def _decompress_flat(self, payload, out) -> None:
        bits, scale = payload
        xp = namespace_of(out)
        d = out.shape[0]
        signs = xp.unpackbits(bits)[:d].astype(np.float32)
        xp.multiply(signs, 2.0, out=out)
        out -= 1.0
        out *= float(scale[0])

    def exchange(self, comm, allreduce: str = "native", **_):
        return MajorityVoteExchange(comm, self)


class MajorityVoteExchange:
    """``out = mean_r(scale_r) * sign(sum_r sign_r)``: the majority vote of the ranks' signs
    (0 on a tie), collective. Attributes after each call: ``wire_bytes``, ``seconds``.

    Raises:
        UsageError: K adversarial workers are as many as the ranks or more.
    """

    residual_memory = None
    error_feedback = False

    def __init__(self, comm, compressor: MajorityVote):
        self.comm, self.compressor = comm, compressor
        self.size = comm.Get_size()
        compressor.ranks = self.size
        if compressor.adversarial >= self.size and compressor.adversarial:
            raise UsageError(f"--adversarial {compressor.adversarial}: at most "
                             f"{self.size - 1} of the {self.size} workers can flip")
        self._bufs: dict = {}
        self.wire_bytes = 0
        self.seconds = {"compress": 0.0, "exchange": 0.0, "decompress": 0.0}

    def _buf(self, xp, key, shape, dtype):
        b = self._bufs.get(key)
        if b is None or b.shape != shape or namespace_of(b) is not xp:
            b = xp.empty(shape, dtype=dtype)
            self._bufs[key] = b
        return b

    def __call__(self, grad, out=None):
        xp = namespace_of(grad)
        d = as_flat(grad).shape[0]
        t0 = time.perf_counter()
        bits, scale = self.compressor.compress(grad)
        t1 = time.perf_counter()
        p = self.size
        all_bits = self._buf(xp, "bits", (p, bits.shape[0]), np.uint8)
        all_scale = self._buf(xp, "scale", (p,), np.float32)
        self.comm.Allgather(bits, all_bits)
        self.comm.Allgather(scale, all_scale)
        t2 = time.perf_counter()
        if out is None:
            out = xp.empty(grad.shape, dtype=np.float32)
        res = out.reshape(-1)
        ones = xp.unpackbits(all_bits, axis=1)[:, :d].sum(axis=0, dtype=np.int32)
        votes = xp.sign(2 * ones - p)  # +1, -1, or 0 on a tie
        xp.multiply(votes, float(all_scale.mean(dtype=np.float64)), out=res,
                    casting="unsafe")
        t3 = time.perf_counter()
        self.wire_bytes = int(bits.nbytes + scale.nbytes)
        self.seconds = {"compress": t1 - t0, "exchange": t2 - t1, "decompress": t3 - t2}
        return out


__all__ = ["MajorityVote", "MajorityVoteExchange"]
