"""Compressed exchange under mpirun (2, 3 and 4 ranks): the result is the mean of the ranks'
decompressed payloads, and each rank sends exactly its payload's wire bytes."""

from __future__ import annotations

import numpy as np
import pytest

from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.compression.error_feedback import ErrorFeedback
from distbench.algorithms.compression.exchange import CompressedAllreduce, compressed_exchange
from distbench.algorithms.compression.spec import Compression
from distbench.collectives import ALLREDUCE
from distbench.comm import CountingComm

D = 2053  # not a multiple of 8, of 4, or of the bucket size
BUCKET = 256
METHODS = [("none", 8), ("fp16", 8), ("qsgd", 2), ("qsgd", 4), ("qsgd", 8), ("sign", 8),
           ("topk", 8), ("randk", 8)]


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _grad(rank: int, integer: bool = False) -> np.ndarray:
    rng = np.random.default_rng(1000 + rank)
    if integer:  # sums of these are exact in any order, in float32 and float16
        return rng.integers(-8, 9, D).astype(np.float32)
    return (rng.standard_normal(D) * np.exp(rng.standard_normal(D))).astype(np.float32)


def _make(name, bits, rank):
    return make_compressor(name, density=0.05, bits=bits, seed=7, rank=rank, bucket_size=BUCKET)


def _reference(comm, name, bits, grad) -> np.ndarray:
    """Mean of every rank's D(C(grad)), summed in rank order, from a twin compressor."""
    comp = _make(name, bits, comm.Get_rank())
    payload = tuple(a.copy() for a in comp.compress(grad))
    every = comm.allgather(payload)
    ref = comp.decompress(every[0], (D,)).copy()
    for pl in every[1:]:
        ref += comp.decompress(pl, (D,))
    return ref / comm.Get_size()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,bits", METHODS)
def test_exchange_is_the_mean_of_decompressed_payloads(name, bits):
    comm = _world()
    summable = COMPRESSORS[name].summable
    grad = _grad(comm.Get_rank(), integer=summable)
    ex = CompressedAllreduce(comm, _make(name, bits, comm.Get_rank()))
    out = ex(grad, np.full(D, np.nan, dtype=np.float32))
    ref = _reference(comm, name, bits, grad)
    # deterministic operations in the same order: bit for bit (summable ones on integer data,
    # whose sums are exact in any order the AllReduce picks)
    np.testing.assert_array_equal(out, ref)
    assert ex.wire_bytes == ex.compressor.payload_bytes(D)


@pytest.mark.mpi(min_size=2)
def test_fp16_on_real_values_within_half_precision():
    comm = _world()
    grad = _grad(comm.Get_rank())
    out = CompressedAllreduce(comm, _make("fp16", 8, comm.Get_rank()))(grad)
    exact = np.empty_like(grad)
    comm.Allreduce(grad, exact)
    exact /= comm.Get_size()
    ref = _reference(comm, "fp16", 8, grad)
    # the float16 sum inside the AllReduce rounds once per addition (2^-11 of the partial sum)
    gmax = comm.allreduce(float(np.abs(grad).max()), op=_max())
    np.testing.assert_allclose(out, ref, rtol=0, atol=comm.Get_size() * 2.0 ** -11 * gmax)
    assert np.linalg.norm(out - exact) <= 1e-3 * np.linalg.norm(exact)


def _max():
    from mpi4py import MPI

    return MPI.MAX


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", sorted(ALLREDUCE))
@pytest.mark.parametrize("name", ["none", "fp16", "randk"])
def test_summable_payloads_through_every_allreduce(algo, name):
    comm = _world()
    grad = _grad(comm.Get_rank(), integer=True)
    ex = CompressedAllreduce(comm, _make(name, 8, comm.Get_rank()), allreduce=algo)
    np.testing.assert_array_equal(ex(grad), _reference(comm, name, 8, grad))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,bits", METHODS)
def test_wire_bytes_counted_on_the_communicator(name, bits):
    comm = _world()
    counting = CountingComm(comm)
    comp = _make(name, bits, comm.Get_rank())
    ex = CompressedAllreduce(counting, comp)
    ex(_grad(comm.Get_rank()))
    k = int(np.ceil(0.05 * D))
    expected = {"none": 4 * D, "fp16": 2 * D, "sign": 4 + (D + 7) // 8, "topk": 8 * k,
                "randk": 4 * k,
                "qsgd": 4 * -(-D // BUCKET) + (D * bits + 7) // 8}[name]
    assert counting.collective_bytes == expected == ex.wire_bytes
    assert counting.bytes_sent == 0  # nothing point-to-point besides the collective
    if COMPRESSORS[name].summable:
        assert counting.calls["Allreduce"] == 1
    else:
        assert counting.calls["Allgather"] == 2  # two payload arrays, one call each


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name,bits", [("topk", 8), ("qsgd", 4), ("sign", 8)])
def test_allgatherv_path_gives_the_same_mean(name, bits):
    comm = _world()
    grad = _grad(comm.Get_rank())
    fixed = CompressedAllreduce(comm, _make(name, bits, comm.Get_rank()))(grad)
    counting = CountingComm(comm)
    varying = CompressedAllreduce(counting, _make(name, bits, comm.Get_rank()), uniform=False)
    np.testing.assert_array_equal(varying(grad), fixed)
    assert counting.calls["Allgatherv"] == 2


@pytest.mark.mpi(min_size=2)
def test_error_feedback_exchange_and_buffers_reused():
    comm = _world()
    rank = comm.Get_rank()
    ex = compressed_exchange(comm, Compression("topk", options={"density": 0.05}), seed=7)
    assert ex.error_feedback and isinstance(ex.compressor, ErrorFeedback)
    twin = ErrorFeedback(_make("topk", 8, rank))
    out = np.empty(D, dtype=np.float32)
    sent_sum = np.zeros(D)
    grads_sum = np.zeros(D)
    buffers = None
    for step in range(4):
        grad = _grad(rank + 10 * step)
        ex(grad, out)
        kept = {k: id(v) for k, v in ex._recv.items()}
        assert buffers is None or kept == buffers  # receive buffers allocated once
        buffers = kept
        payload = tuple(a.copy() for a in twin.compress(grad))
        every = comm.allgather(payload)
        ref = twin.decompress(every[0], (D,)).copy()
        for pl in every[1:]:
            ref += twin.decompress(pl, (D,))
        np.testing.assert_array_equal(out, ref / comm.Get_size())
        sent_sum += out
        grads_sum += grad
    # what was sent plus the ranks' residuals is everything
    resid = np.empty(D)
    comm.Allreduce(twin.residual_memory.astype(np.float64), resid)
    mean_grads = np.empty(D)
    comm.Allreduce(grads_sum, mean_grads)
    np.testing.assert_allclose(sent_sum + resid / comm.Get_size(),
                               mean_grads / comm.Get_size(), rtol=1e-5, atol=1e-5)
