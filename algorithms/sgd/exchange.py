"""The exchange of synchronous and local SGD: the mean over ranks of one flat vector.

Dense: a registered AllReduce (``distbench.collectives.get_allreduce(name)``) of the vector,
then a scaling by 1/p. Compressed:
:func:`distbench.algorithms.compression.exchange.compressed_exchange` with a compressor of
:mod:`distbench.algorithms.compression`, wrapped in error feedback
(:mod:`distbench.algorithms.compression.error_feedback`) when asked or by default for biased
compressors; it returns the mean of the ranks' decompressed payloads. Summable payloads go
through the chosen AllReduce, the others through Allgather. The residual memory is per rank
and lives as long as the exchange (one mode's run).

:attr:`MeanExchange.bytes_sent` is exactly what this rank handed to MPI to send: point-to-point
send buffers plus the send buffers it contributed to collectives, counted by a
:class:`distbench.comm.CountingComm` around every call (for dense ``native`` the library is
called directly and the vector's bytes are added per call, the number the proxy would record:
the library's internal traffic is not visible to a wrapper).
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.compression.exchange import compressed_exchange
from distbench.collectives import get_allreduce
from distbench.comm import CountingComm
from distbench.errors import UsageError
from distbench.runtime import namespace_of


class MeanExchange:
    """``out = (1/p) sum over ranks of send`` for contiguous 1-D vectors of n elements.

    Args:
        comm: the communicator (mpi4py or a distbench proxy); wrapped in a CountingComm.
        n: vector length (elements).
        like: an array of the vector's dtype and array module (NumPy or CuPy).
        allreduce: registered AllReduce name (dense path, and the summable compressed path).
        compression: the :class:`~distbench.algorithms.compression.spec.Compression` (None or
            method ``none``: dense).
        seed: seed of randomized compressors (same on every rank).
        shapes: the vector's layers (PowerSGD compresses the matrices among them); None: one
            vector.
        steps_per_epoch: exchanges per epoch (DGC's density warm-up).

    Raises:
        UsageError: unknown AllReduce or compressor, or bad compressor options.
    """

    def __init__(self, comm, n: int, like, allreduce: str = "native", compression=None,
                 seed: int = 0, shapes=None, steps_per_epoch: int = 1):
        self.raw = comm
        self.comm = CountingComm(comm)
        self.size = comm.Get_size()
        self.n = int(n)
        self.xp = namespace_of(like)
        compressing = compression is not None and compression.active
        try:
            self.allreduce = get_allreduce(allreduce)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        self.calls = 0
        # native + dense: call the library directly and count the contributed buffer, the
        # same number the CountingComm would record, without the proxy's ~1.5 us per call
        self._native = allreduce == "native" and not compressing
        self._native_bytes = 0
        self._compressed = (compressed_exchange(self.comm, compression, seed, allreduce,
                                                shapes, steps_per_epoch)
                            if compressing else None)

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank handed to MPI to send through this exchange so far."""
        return self.comm.bytes_sent + self.comm.collective_bytes + self._native_bytes

    @property
    def error_feedback(self) -> bool:
        """Whether a residual memory is active (False on the dense path)."""
        return bool(self._compressed is not None and self._compressed.error_feedback)

    def warm_up(self, like) -> None:
        """One untimed, uncounted AllReduce of ``like``'s size with the registered algorithm
        (and a tiny Allgather for the compressed path) on the uncounted communicator, so
        connection set-up is not charged to the first timed step. Collective."""
        out = self.xp.empty_like(like)
        self.allreduce(self.raw, like, out)
        if self._compressed is not None:
            mine = np.zeros(1, dtype=np.int64)
            self.raw.Allgather(mine, np.zeros(self.size, dtype=np.int64))

    @property
    def dense(self) -> bool:
        """True when the exchange is a plain AllReduce (no compressor)."""
        return self._compressed is None

    def sum(self, send, out) -> None:
        """Dense path: ``out = sum over ranks of send`` (one registered AllReduce; SGD folds
        -lr/p into the gradient beforehand and adds ``out`` to its parameters).

        Raises:
            ValueError: the exchange compresses (a compressed exchange yields a mean).
        """
        if self._native:
            self.raw.Allreduce(send, out)
            self._native_bytes += send.nbytes
        elif self._compressed is None:
            self.allreduce(self.comm, send, out)
        else:
            raise ValueError("a compressed exchange has no sum(); use mean()")
        self.calls += 1

    def mean(self, send, out, scale: float = 1.0) -> None:
        """Write ``scale`` times the mean over ranks of ``send`` into ``out`` (both shape (n,),
        same dtype); collective: every rank calls it with its own ``send``. ``send`` is not
        modified (error feedback keeps its own copy). ``scale`` lets SGD fold its learning
        rate into the one pass that divides by p."""
        if self._compressed is not None:
            self.calls += 1
            self._compressed(send, out)
            if scale != 1.0:
                self.xp.multiply(out, scale, out=out)
            return
        self.sum(send, out)
        if self.size > 1 or scale != 1.0:
            self.xp.multiply(out, scale / self.size, out=out)
