"""Gradient compressors: pure array operators (no MPI) for NumPy and CuPy arrays.

Every compressor ``C`` (GRACE's Compressor role) has

* ``compress(x) -> payload``: ``x`` is a floating-point gradient of any shape (read as its
  C-order flattening of ``d`` elements); the payload is a small fixed tuple of flat contiguous
  arrays, ready for mpi4py's buffer API;
* ``decompress(payload, shape, out=None) -> array``: ``D(payload)`` with ``shape``, float32
  unless ``out`` (or, for ``none``, the payload) says otherwise;
* ``decompress_add(payload, out)``: ``out += D(payload)`` (flat ``out``), and
  ``residual(payload, p, out)``: ``out = p - D(payload)`` (error feedback);
* ``wire_bytes(payload)``: the bytes that travel (``payload_bytes(d)`` gives the formula);
* ``summable``: payloads may be added by an AllReduce. Then ``payload[0]`` is the linear part
  that travels, ``D((sum_r payload_r[0],) + payload[1:]) = sum_r D(payload_r)``, and
  ``payload[1:]`` is identical on every rank (rand-k's indices) and never travels. For the
  others every array of the payload travels;
* ``biased``: ``E[D(C(x))] != x`` (error feedback is on by default for these);
* ``own_exchange``: the compressor brings its own collective exchange,
  ``exchange(comm, allreduce, shapes=...)`` (PowerSGD's two AllReduces, the majority vote);
  ``own_memory``: it keeps its own residual (DGC's accumulation) and is never wrapped in
  error feedback; ``allreduced``: its exchange sums by AllReduce (the link bytes of a
  break-even).

Payload arrays are preallocated and owned by the compressor: the next ``compress`` call
overwrites them (``none`` returns a view of ``x`` itself). Temporaries come from
:func:`distbench.buffers.workspace`. On NumPy the kernels stream over cache-sized
blocks of ``block`` elements (default ``CHUNK``; a Python loop over blocks, never over
elements); on CuPy they run on the whole vector at once.

Registered in :data:`COMPRESSORS`; build one with :func:`make_compressor`.
"""

from __future__ import annotations

from distbench.algorithms.compression.base import Compressor
from distbench.algorithms.compression.dense import FP16, Identity
from distbench.algorithms.compression.dgc import DGC
from distbench.algorithms.compression.powersgd import PowerSGD
from distbench.algorithms.compression.qsgd import QSGD
from distbench.algorithms.compression.sign import Sign
from distbench.algorithms.compression.sparse import SMALL, RandK, TopK
from distbench.algorithms.compression.vote import MajorityVote
from distbench.registry import Registry

# each class declares the options its constructor takes (OPTIONS); a plug-in class likewise
COMPRESSORS = Registry("compression method", "distbench.compressors", {
    "none": Identity,
    "fp16": FP16,
    "qsgd": QSGD,
    "sign": Sign,
    "topk": TopK,
    "randk": RandK,
    "powersgd": PowerSGD,
    "dgc": DGC,
    "majority": MajorityVote,
})


def make_compressor(name: str, seed: int = 0, rank: int = 0, **options) -> Compressor:
    """A new compressor ``name`` built with the options its constructor takes (bound by
    signature, as every registry does; a plug-in class gets the same treatment). Options it
    does not take are ignored.

    Args:
        name: a key of :data:`COMPRESSORS`.
        seed: seed of the random parts; ``randk`` and ``powersgd`` need the same seed on
            every rank.
        rank: this rank; ``qsgd`` draws independent rounding noise per rank from
            ``(seed, rank)``.
        options: the compressors' declared options (each class's ``OPTIONS``, gathered by
            :meth:`~distbench.registry.Registry.options`).

    Raises:
        UsageError: unknown name, or an option outside its declared range.
    """
    COMPRESSORS.check(options)
    return COMPRESSORS.create(name, seed=seed, rank=rank, **options)


__all__ = ["COMPRESSORS", "SMALL", "Compressor", "make_compressor"]
