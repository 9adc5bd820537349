"""PowerSGD, DGC and signSGD with majority vote under mpirun (2, 3 and 4 ranks): PowerSGD at
full rank is the exact mean and bit-identical under every AllReduce on exact inputs, its bytes
are r (n + m) per matrix plus the dense part, its warm start reuses Q; DGC's bytes; the vote
equals a NumPy reference and survives flipped workers."""

from __future__ import annotations

import numpy as np
import pytest

from distbench.algorithms.compression.exchange import compressed_exchange
from distbench.algorithms.compression.powersgd import PowerSGD, PowerSGDExchange
from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.compression.vote import MajorityVote, MajorityVoteExchange
from distbench.collectives import ALLREDUCE
from distbench.comm import CountingComm


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


SHAPES = [(12, 20), (20,), (6, 5), (30, 40)]  # two compressed matrices at r = 2, the rest dense
D = sum(int(np.prod(s)) for s in SHAPES)


def _grad(rank: int) -> np.ndarray:
    return np.random.default_rng(50 + rank).standard_normal(D).astype(np.float32)


def _exact_mean(comm, grad):
    every = comm.allgather(grad)
    return np.mean(every, axis=0, dtype=np.float64)


@pytest.mark.mpi(min_size=2)
def test_powersgd_at_full_rank_without_error_feedback_is_the_exact_mean():
    comm = _world()
    shape = (16, 24)
    grad = np.random.default_rng(comm.Get_rank()).standard_normal(16 * 24).astype(np.float32)
    comp = PowerSGD(powersgd_rank=16, min_compression_rate=0.1, error_feedback=False, seed=3)
    ex = PowerSGDExchange(comm, comp, "ring", [shape])
    out = ex(grad)
    ref = _exact_mean(comm, grad)
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert ex.wire_bytes == 4 * 16 * (16 + 24)


@pytest.mark.mpi(min_size=2)
def test_powersgd_bytes_are_r_n_plus_m_per_matrix_plus_the_dense_part():
    comm = _world()
    counting = CountingComm(comm)
    ex = compressed_exchange(counting, Compression("powersgd", options={"powersgd_rank": 2}),
                             seed=1, allreduce="native", shapes=SHAPES)
    ex(_grad(comm.Get_rank()))
    dense = 20 + 30  # the vector and the 6 x 5 matrix: 30 < 2 * 2 * 11
    want = 4 * (2 * (12 + 20) + 2 * (30 + 40) + dense)
    assert ex.wire_bytes == want
    assert counting.collective_bytes == want, "handed to the AllReduces: P, Q, the dense part"
    assert ex.compressor.payload_bytes(D, SHAPES) == want


def _exact_inputs(rank: int, p: int):
    """A 4 x 6 matrix per rank whose first two columns are the same 2 x Hadamard-like
    columns on every rank and whose other columns differ by rank (small integers), with
    Q0 selecting the first two columns: mean P = M Q0 has orthogonal columns of norm 2, so
    Gram-Schmidt gives entries of +-0.5, and every later sum is of multiples of 1/4."""
    h = np.array([[1, 1], [1, -1], [1, 1], [1, -1]], dtype=np.float32)
    rest = np.random.default_rng(rank).integers(-3, 4, (4, 4)).astype(np.float32)
    return np.concatenate([h, rest], axis=1).reshape(-1)


@pytest.mark.mpi(min_size=2)
def test_powersgd_is_bit_identical_under_every_allreduce_on_exact_inputs():
    comm = _world()
    grad = _exact_inputs(comm.Get_rank(), comm.Get_size())
    outs = {}
    for name in ALLREDUCE:
        comp = PowerSGD(powersgd_rank=2, min_compression_rate=0.5, error_feedback=False, seed=0)
        q0 = np.zeros((6, 2), dtype=np.float32)
        q0[0, 0] = q0[1, 1] = 1.0
        comp.initial_q = lambda xp, m, r, step=0, q0=q0: xp.asarray(q0.copy())
        ex = PowerSGDExchange(comm, comp, name, [(4, 6)])
        outs[name] = ex(grad).copy()
    ref = outs["native"]
    for name, out in outs.items():
        assert np.array_equal(out, ref), name


@pytest.mark.mpi(min_size=2)
def test_powersgd_warm_start_reuses_the_mean_q_and_error_feedback_keeps_the_rest():
    comm = _world()
    grad = _grad(comm.Get_rank())
    warm = compressed_exchange(comm, Compression("powersgd"), seed=2, shapes=SHAPES)
    warm(grad)
    q_after = warm._plan["q"].copy()
    e_old = warm.residual_memory.copy()
    drawn = []
    warm.compressor.initial_q = lambda xp, m, r, step=0: drawn.append(step) or xp.zeros((m, r))
    out = warm(grad)
    assert drawn == [], "a warm start draws no new Q"
    assert not np.array_equal(q_after, warm._plan["q"]), "Q moved on from the last step's"
    compressed = np.r_[0:240, 290:1490]
    assert np.allclose(warm.residual_memory[compressed], (grad + e_old - out)[compressed],
                       atol=1e-5), "the residual is M - P Q^T"
    assert np.all(warm.residual_memory[240:290] == 0), "the dense layers keep no residual"
    cold = compressed_exchange(comm, Compression("powersgd", options={
        "powersgd_warm_start": False}), seed=2, shapes=SHAPES)
    steps = []
    original = cold.compressor.initial_q
    cold.compressor.initial_q = lambda xp, m, r, step=0: steps.append(step) or original(
        xp, m, r, step)
    cold(grad)
    cold(grad)
    assert sorted(set(steps)) == [0, 1], "without warm start every step draws its own Q"


@pytest.mark.mpi(min_size=2)
def test_dgc_bytes_are_index_plus_value_per_selected_entry():
    comm = _world()
    counting = CountingComm(comm)
    d = 5000
    ex = compressed_exchange(counting, Compression("dgc"), seed=0, allreduce="native")
    g = np.random.default_rng(comm.Get_rank()).standard_normal(d).astype(np.float32)
    ks = []
    for _ in range(6):
        before = counting.collective_bytes
        ex(g)
        ks.append((counting.collective_bytes - before) // 8)
    assert ks == [1250, 313, 79, 20, 5, 5], "the warm-up densities, then 0.1 %"
    assert ex.error_feedback


@pytest.mark.mpi(min_size=2)
def test_majority_vote_equals_a_numpy_reference():
    comm = _world()
    p = comm.Get_size()
    d = 1003
    rng = np.random.default_rng(comm.Get_rank() + 9)
    g = rng.standard_normal(d).astype(np.float32)
    counting = CountingComm(comm)
    ex = MajorityVoteExchange(counting, MajorityVote(rank=comm.Get_rank()))
    out = ex(g)
    every = np.array(comm.allgather(g))
    signs = np.where(every >= 0, 1, -1).sum(axis=0)
    scale = np.mean([np.abs(x).astype(np.float64).sum() / d for x in every])
    ref = np.sign(signs) * scale
    assert np.allclose(out, ref, rtol=1e-6)
    if p % 2 == 0:
        assert np.any(out == 0) == np.any(signs == 0)
    assert ex.wire_bytes == (d + 7) // 8 + 4 == counting.collective_bytes


@pytest.mark.mpi(min_size=3)
def test_flipped_minority_still_points_downhill():
    """K < p/2 workers flipping their signs on a separable least-squares problem: the vote
    is still a descent direction, and steps along it lower the loss."""
    comm = _world()
    p, rank = comm.Get_size(), comm.Get_rank()
    k = (p - 1) // 2
    rng = np.random.default_rng(0)
    target = rng.standard_normal(200).astype(np.float32)
    x = np.zeros(200, dtype=np.float32)
    ex = MajorityVoteExchange(comm, MajorityVote(adversarial=k, rank=rank))
    loss0 = float(np.sum((x - target) ** 2))
    for _ in range(30):
        noise = np.random.default_rng(rank * 100 + _).standard_normal(200) * 0.1
        grad = (2 * (x - target) + noise).astype(np.float32)
        x -= 0.05 * ex(grad)
    assert float(np.sum((x - target) ** 2)) < 0.2 * loss0
