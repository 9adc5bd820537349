"""Compressed exchange: the mean of the ranks' gradients through a compressor (GRACE's
Communicator role).

* Summable payloads (``none``, ``fp16``, ``randk``): the payload's first array is summed by a
  registered AllReduce (``distbench.collectives.get_allreduce(name)``), decompressed once and
  divided by p. Per-rank traffic of a bandwidth-optimal AllReduce: ``2 (p-1)/p * w`` bytes.
* The others (``qsgd``, ``sign``, ``topk``): every payload array is gathered with
  ``Allgather`` (``Allgatherv`` when the ranks' sizes may differ), then every rank
  decompresses the p payloads in rank order, sums them and divides by p. Per-rank traffic of
  a ring/Bruck Allgather: ``(p-1) * w`` bytes, the reason sparse and quantized payloads lose
  their advantage as p grows (Lin et al. 2018, section 3; Agarwal et al. 2022).

w is the payload's wire size (``compressor.wire_bytes``). All receive buffers are kept across
calls and grow only. NumPy and CuPy buffers alike (GPU buffers need a GPU-aware MPI or a
:class:`distbench.comm.HostStagingComm`). Built by :func:`compressed_exchange` (GRACE's
Communicator role; moved here beside the compressors it drives).
"""

from __future__ import annotations

import time

import numpy as np

from distbench.collectives import get_allreduce
from distbench.errors import UsageError
from distbench.runtime import namespace_of


def link_bytes(wire: int, ranks: int, summable: bool) -> float:
    """Bytes one rank sends on its link to exchange a ``wire``-byte payload: ``2(p-1)/p w``
    through a ring-style AllReduce when summable, ``(p-1) w`` through an Allgather."""
    if ranks <= 1:
        return 0.0
    return 2.0 * (ranks - 1) / ranks * wire if summable else float((ranks - 1) * wire)


def _sync(xp) -> None:
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


class CompressedAllreduce:
    """``out = (1/p) sum_r D(C_r(g_r))``: the mean of the ranks' gradients, compressed.

    Args:
        comm: communicator (mpi4py, or a distbench proxy such as ``CountingComm``).
        compressor: a compressor of :mod:`distbench.algorithms.compression` (one without its
            own exchange), or one wrapped in
            :class:`~distbench.algorithms.compression.error_feedback.ErrorFeedback`. Every rank
            must use the same kind and options (rand-k: the same seed).
        allreduce: registered AllReduce for summable payloads (default ``native``).
        uniform: whether every rank's payload has the same size (Allgather); None asks the
            compressor (all registered ones are uniform for equal gradient sizes); False
            exchanges the sizes and uses Allgatherv.

    Attributes after each call:
        wire_bytes: bytes of the payload this rank contributed (what it sent, counted once).
        seconds: ``{"compress", "exchange", "decompress"}`` wall times of the call (s).

    Raises:
        UsageError: unknown AllReduce name.
    """

    def __init__(self, comm, compressor, allreduce: str = "native", uniform: bool | None = None):
        self.comm = comm
        self.compressor = compressor
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        try:
            self._allreduce = get_allreduce(allreduce)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        self.uniform = True if uniform is None else bool(uniform)
        self._recv: dict = {}
        self.wire_bytes = 0
        self.seconds = {"compress": 0.0, "exchange": 0.0, "decompress": 0.0}

    @property
    def error_feedback(self) -> bool:
        """Whether the compressor keeps a residual memory."""
        return hasattr(self.compressor, "residual_memory")

    def _buffer(self, key, like, n: int):
        """A kept receive buffer of ``n`` elements with ``like``'s dtype and module."""
        xp = namespace_of(like)
        buf = self._recv.get(key)
        if buf is None or buf.dtype != like.dtype or buf.size < n or namespace_of(buf) is not xp:
            buf = xp.empty(max(n, 1), dtype=like.dtype)
            self._recv[key] = buf
        return buf[:n]

    def __call__(self, grad, out=None):
        """The mean over ranks of ``grad`` (collective).

        Args:
            grad: this rank's gradient (any shape, floating point; same shape on all ranks).
            out: array of grad's shape to write the mean into (C-contiguous); default a new
                float32 array (grad's dtype for ``none``).

        Returns:
            ``out``.
        """
        xp = namespace_of(grad)
        comp = self.compressor
        t0 = time.perf_counter()
        payload = comp.compress(grad)
        _sync(xp)
        t1 = time.perf_counter()
        wire = comp.wire_arrays(payload)
        self.wire_bytes = comp.wire_bytes(payload)
        if comp.summable:
            total = self._buffer("sum", wire[0], wire[0].shape[0])
            self._allreduce(self.comm, wire[0], total)
            gathered = None
        else:
            gathered = self._gather(wire)
        _sync(xp)
        t2 = time.perf_counter()
        if comp.summable:
            out = comp.decompress((total,) + tuple(payload[len(wire):]), grad.shape, out)
        else:
            out = self._decompress_all(gathered, grad.shape, out)
        if self.size > 1:
            xp.divide(out, self.size, out=out)
        _sync(xp)
        t3 = time.perf_counter()
        self.seconds = {"compress": t1 - t0, "exchange": t2 - t1, "decompress": t3 - t2}
        return out

    def _gather(self, wire) -> list:
        """Every rank's copy of each wire array: a list (per array) of p views."""
        p = self.size
        if self.uniform:
            rows = []
            for i, arr in enumerate(wire):
                n = arr.shape[0]
                buf = self._buffer(("gather", i), arr, p * n).reshape(p, n)
                self.comm.Allgather(arr, buf)
                rows.append([buf[r] for r in range(p)])
            return rows
        sizes = np.array([a.shape[0] for a in wire], dtype=np.int64)
        table = np.empty((p, sizes.shape[0]), dtype=np.int64)
        self.comm.Allgather(sizes, table)
        rows = []
        for i, arr in enumerate(wire):
            counts = table[:, i]
            displs = np.zeros(p, dtype=np.int64)
            np.cumsum(counts[:-1], out=displs[1:])
            buf = self._buffer(("gatherv", i), arr, int(counts.sum()))
            self.comm.Allgatherv(arr, [buf, (counts.tolist(), displs.tolist())])
            rows.append([buf[displs[r]: displs[r] + counts[r]] for r in range(p)])
        return rows

    def _decompress_all(self, gathered, shape, out):
        """``out = sum over ranks r (in rank order) of D(payload_r)``."""
        comp = self.compressor
        first = tuple(rows[0] for rows in gathered)
        out = comp.decompress(first, shape, out)
        flat = out.reshape(-1)
        for r in range(1, self.size):
            comp.decompress_add(tuple(rows[r] for rows in gathered), flat)
        return out


def compressed_exchange(comm, compression, seed: int = 0, allreduce: str = "native",
                        shapes=None, steps_per_epoch: int = 1):
    """A :class:`CompressedAllreduce` of ``compression`` (a
    :class:`~distbench.algorithms.compression.spec.Compression`) on ``comm``.

    The compressor is built with this rank's index (QSGD's rounding noise is independent per
    rank; rand-k's indices agree because ``seed`` is the same everywhere) and wrapped in error
    feedback as the spec says (None: when the compressor is biased). A compressor with its own
    exchange (``own_exchange``: PowerSGD, the majority vote) builds it; ``shapes`` (the
    vector's layers, for PowerSGD's matrices) and ``steps_per_epoch`` (DGC's warm-up) are
    handed to the compressors that use them.

    Raises:
        UsageError: unknown method or AllReduce, or an option out of its range.
    """
    comp = compression.build(seed, comm.Get_rank())
    inner = getattr(comp, "compressor", comp)
    for key, value in (("ranks", comm.Get_size()), ("steps_per_epoch", steps_per_epoch)):
        if hasattr(inner, key):
            setattr(inner, key, value)
    if getattr(comp, "own_exchange", False):
        return comp.exchange(comm, allreduce, shapes=shapes)
    return CompressedAllreduce(comm, comp, allreduce)


__all__ = ["CompressedAllreduce", "compressed_exchange", "link_bytes"]
