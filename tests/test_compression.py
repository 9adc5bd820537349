"""Compressor properties (serial): QSGD's unbiasedness and exact variance, top-k's selection and
contraction, the scaled-sign identity, the error-feedback identities, wire-byte formulas,
shapes and dtypes, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distbench.algorithms.compression import COMPRESSORS, SMALL, base, make_compressor
from distbench.algorithms.compression.error_feedback import ErrorFeedback, with_error_feedback
from distbench.algorithms.compression.spec import Compression
from distbench.errors import UsageError


def heavy(d: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Heavy-tailed test vector with some exact zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(2.5, d) * np.exp(rng.standard_normal(d))
    x[rng.integers(0, d, max(1, d // 50))] = 0.0
    return x.astype(dtype)


# --------------------------------------------------------------------------- QSGD


def _qsgd_samples(bits: int, d: int, bucket: int, n: int, raw: bool = True):
    """n independent quantizations of one vector x (compressing x tiled n times: the buckets
    line up because d is a multiple of ``bucket``)."""
    x = heavy(d, seed=bits)
    comp = make_compressor("qsgd", bits=bits, bucket_size=bucket, seed=3)
    comp.host_raw_bits = raw
    payload = comp.compress(np.tile(x, n))
    norms = payload[0][: d // bucket].copy()
    assert np.all(payload[0].reshape(n, -1) == norms)  # same x, same transmitted norms
    q = comp.decompress(payload, (n * d,)).reshape(n, d).astype(np.float64)
    return x.astype(np.float64), q, np.repeat(norms.astype(np.float64), bucket), comp.s


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_qsgd_unbiased_and_exact_variance(bits):
    d, bucket, n = 512, 128, 6000
    x, q, nu, s = _qsgd_samples(bits, d, bucket, n)
    y = s * np.abs(x) / nu
    tau = y - np.floor(y)
    var_i = (nu / s) ** 2 * tau * (1 - tau)  # exact per-coordinate variance
    # unbiased: the Monte Carlo mean is within 4 standard errors of x, per coordinate (where
    # rounding is random) and along random directions
    mean = q.mean(axis=0)
    random = var_i > 0
    np.testing.assert_array_equal(mean[~random], x[~random])
    z = (mean[random] - x[random]) / np.sqrt(var_i[random] / n)
    assert np.abs(z).max() < 4.0 + 1.5  # max of ~500 normals: 4 SE plus the union margin
    for u in np.random.default_rng(1).standard_normal((5, d)):
        proj = (q - x) @ u
        assert abs(proj.mean()) < 4 * proj.std() / math.sqrt(n)
    # variance per bucket: the exact value (nu^2/s^2) sum tau(1-tau) within 10 %, and below
    # QSGD's bound min(n/s^2, sqrt(n)/s) ||x||^2 (Lemma 3.1, n = bucket length)
    err2 = ((q - x) ** 2).reshape(n, d // bucket, bucket).sum(axis=2).mean(axis=0)
    exact = var_i.reshape(-1, bucket).sum(axis=1)
    np.testing.assert_allclose(err2, exact, rtol=0.10)
    norm2 = (x.reshape(-1, bucket) ** 2).sum(axis=1)
    assert np.all(err2 < min(bucket / s**2, math.sqrt(bucket) / s) * norm2)


def test_qsgd_generic_rng_path_unbiased():
    """The path CuPy takes (float uniforms from a Generator) quantizes the same way."""
    d, bucket, n = 256, 64, 4000
    x, q, nu, s = _qsgd_samples(4, d, bucket, n, raw=False)
    y = s * np.abs(x) / nu
    tau = y - np.floor(y)
    se = np.sqrt((nu / s) ** 2 * tau * (1 - tau) / n)
    random = se > 0
    assert np.abs((q.mean(axis=0) - x)[random] / se[random]).max() < 5.5


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("d", [1, 7, 1000, 70001])
def test_qsgd_rounds_to_an_adjacent_level(bits, d):
    """Every element becomes sign(x) nu l / s with l = floor or ceil of s|x|/nu, in every
    bucket including a short last one and an all-zero one."""
    x = heavy(d, seed=d)
    x[: min(d, 300)] = 0.0  # an all-zero bucket
    bucket = 300
    comp = make_compressor("qsgd", bits=bits, bucket_size=bucket, seed=d)
    payload = comp.compress(x)
    nu = np.repeat(payload[0].astype(np.float64), bucket)[:d]
    xb = x.astype(np.float64).reshape(-1)
    true_norm = np.sqrt(np.add.reduceat(xb**2, np.arange(0, d, bucket)))
    assert np.all(np.repeat(true_norm, bucket)[:d] <= nu)
    assert np.all(nu <= np.repeat(true_norm, bucket)[:d] * (1 + 1e-3))
    q = comp.decompress(payload, (d,)).astype(np.float64)
    s = comp.s
    safe = np.where(nu > 0, nu, 1.0)
    level = q * s / safe
    np.testing.assert_allclose(level, np.round(level), atol=1e-4)
    assert np.all(np.abs(level) <= s + 1e-4)
    assert np.all(np.abs(np.abs(level) - s * np.abs(xb) / safe) < 1 + 1e-4)
    assert np.all(q * xb >= 0)
    assert np.all(q[nu == 0] == 0)


# --------------------------------------------------------------------------- top-k, rand-k


@pytest.mark.parametrize("d,density", [(1, 0.5), (10, 0.3), (1000, 0.01), (SMALL + 999, 0.01),
                                       (300_000, 0.2), (300_000, 1.0)])
def test_topk_exact_k_largest_and_contraction(d, density):
    x = heavy(d, seed=d)
    comp = make_compressor("topk", density=density)
    values, indices = comp.compress(x)
    k = math.ceil(density * d - 1e-9)
    assert values.shape == indices.shape == (k,)
    assert values.dtype == np.float32 and indices.dtype == np.int32
    assert np.unique(indices).shape[0] == k
    np.testing.assert_array_equal(values, x[indices])
    np.testing.assert_array_equal(np.sort(np.abs(values)), np.sort(np.abs(x))[d - k:])
    y = comp.decompress((values, indices), (d,)).astype(np.float64)
    xd = x.astype(np.float64)
    assert np.sum((xd - y) ** 2) <= (1 - k / d) * np.sum(xd**2) + 1e-12


def test_topk_fallbacks_are_exact(monkeypatch):
    """A sampled threshold that is too high falls back to a lower one, then to one
    argpartition of everything; the selection stays exact."""
    d = SMALL + 5
    x = heavy(d, seed=11)
    comp = make_compressor("topk", density=0.05)
    k = comp.k(d)
    largest = np.argsort(np.abs(x))[-8:]

    class Unlucky:  # a sample of only the 8 largest entries: every threshold too high
        def integers(self, low, high, size):
            return np.resize(largest, size)

    monkeypatch.setattr(comp, "_sample_rng", Unlucky())
    assert comp._by_threshold(x, np, d, k) is None
    values, indices = comp.compress(x)
    np.testing.assert_array_equal(np.sort(np.abs(values)), np.sort(np.abs(x))[d - k:])


def test_randk_same_seed_same_indices_and_fresh_each_step():
    x = heavy(5000)
    a, b = (make_compressor("randk", density=0.02, seed=5) for _ in range(2))
    other = make_compressor("randk", density=0.02, seed=6)
    first = [a.compress(x)[1].copy() for _ in range(3)]
    for idx in first:
        np.testing.assert_array_equal(b.compress(x)[1], idx)  # step by step
        assert np.unique(idx).shape[0] == 100
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(other.compress(x)[1], first[0])
    values, indices = a.compress(x)
    np.testing.assert_array_equal(values, x[indices])
    assert a.summable and a.wire_arrays((values, indices)) == (values,)


# --------------------------------------------------------------------------- sign


@pytest.mark.parametrize("d", [1, 8, 13, 100_003])
def test_sign_identity(d):
    x = heavy(d, seed=d)
    comp = make_compressor("sign")
    payload = comp.compress(x)
    c = comp.decompress(payload, (d,)).astype(np.float64)
    xd = x.astype(np.float64)
    l1 = np.abs(xd).sum()
    np.testing.assert_allclose(np.abs(c), l1 / d, rtol=1e-6)
    assert np.all(c * xd >= 0)
    lhs = np.sum((c - xd) ** 2)
    np.testing.assert_allclose(lhs, np.sum(xd**2) - l1**2 / d, rtol=1e-5)


# --------------------------------------------------------------------------- error feedback


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_feedback_identities(name, dtype):
    d, steps = 3001, 12
    ef = ErrorFeedback(make_compressor(name, density=0.03, bits=4, bucket_size=100, seed=2))
    sent = np.zeros(d)
    total = np.zeros(d)
    e = np.zeros(d, dtype=dtype)
    for t in range(steps):
        g = heavy(d, seed=100 + t, dtype=dtype)
        p = g + e
        payload = ef.compress(g)
        dec = ef.decompress(payload, (d,), out=np.empty(d, dtype=dtype))
        np.testing.assert_array_equal(ef.residual_memory, p - dec)  # e_{t+1} = p_t - D(C(p_t))
        e = ef.residual_memory.copy()
        sent += dec
        total += g
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(sent + ef.residual_memory, total, rtol=0,
                               atol=50 * steps * eps * np.abs(total).max())
    assert ef.steps == steps


def test_error_feedback_bounds_the_running_sum_error():
    """Constant gradient, top-k at 1 %: without memory the same entries are dropped every
    step and the running-sum error grows linearly; with memory it stays bounded."""
    d = 2000
    g = heavy(d, seed=4)

    def running_error(comp, steps):
        sent = np.zeros(d)
        for _ in range(steps):
            sent += comp.decompress(comp.compress(g), (d,))
        return np.linalg.norm(sent - steps * g.astype(np.float64))

    plain = [running_error(make_compressor("topk", density=0.01), t) for t in (200, 800)]
    ef = [running_error(ErrorFeedback(make_compressor("topk", density=0.01)), t)
          for t in (200, 800)]
    assert plain[1] == pytest.approx(4 * plain[0], rel=1e-4)
    assert ef[1] <= 1.25 * ef[0] and ef[1] < 0.05 * plain[1]


def test_with_error_feedback_defaults_to_biased_compressors():
    for name, cls in COMPRESSORS.items():
        if cls.own_exchange or cls.own_memory:  # PowerSGD, DGC, the vote: their own memory
            assert not isinstance(Compression(name).build(), ErrorFeedback), name
            continue
        wrapped = with_error_feedback(make_compressor(name))
        assert isinstance(wrapped, ErrorFeedback) == cls.biased
        assert cls.biased == (name in ("sign", "topk", "randk"))
    assert not isinstance(with_error_feedback(make_compressor("topk"), False), ErrorFeedback)
    assert isinstance(with_error_feedback(make_compressor("qsgd"), True), ErrorFeedback)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("d", [1, 7, 8, 1001, 65537])
def test_wire_bytes_formulas(d):
    x = heavy(d)
    k = math.ceil(0.03 * d - 1e-9)
    expected = {"none": 4 * d, "fp16": 2 * d, "sign": 4 + math.ceil(d / 8), "topk": 8 * k,
                "randk": 4 * k}
    for name, want in expected.items():
        comp = make_compressor(name, density=0.03)
        assert comp.wire_bytes(comp.compress(x)) == comp.payload_bytes(d) == want, name
    for bits in (2, 4, 8):
        comp = make_compressor("qsgd", bits=bits, bucket_size=100)
        want = 4 * math.ceil(d / 100) + math.ceil(d * bits / 8)
        assert comp.wire_bytes(comp.compress(x)) == comp.payload_bytes(d) == want


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
@pytest.mark.parametrize("shape", [(0,), (5,), (3, 70), (1030,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decompress_shapes_and_dtypes(name, shape, dtype):
    x = heavy(max(1, math.prod(shape))).astype(dtype)[: math.prod(shape)].reshape(shape)
    comp = make_compressor(name, density=0.1, bits=2, bucket_size=64)
    payload = comp.compress(x)
    assert isinstance(payload, tuple)
    assert all(a.ndim == 1 and a.flags.c_contiguous for a in payload)
    y = comp.decompress(payload, shape)
    assert y.shape == shape
    assert y.dtype == (np.dtype(dtype) if name == "none" else np.float32)
    out = np.empty(shape, dtype=np.float64)
    assert comp.decompress(payload, shape, out=out) is out
    np.testing.assert_array_equal(out, y.astype(np.float64))
    if name in ("none", "fp16") and x.size:
        np.testing.assert_allclose(y, x, rtol=1e-3)
    if x.ndim == 2:  # a non-contiguous gradient is read in C order
        a, b = (make_compressor(name, density=0.1, bits=2, bucket_size=64) for _ in range(2))
        np.testing.assert_array_equal(a.decompress(a.compress(x.T), (x.size,)),
                                      b.decompress(b.compress(x.T.copy()), (x.size,)))


def test_keep_count_rounding():
    assert base.keep_count(0.07, 100) == 7
    assert base.keep_count(0.01, 25_000_000) == 250_000
    assert base.keep_count(1e-9, 10) == 1
    assert base.keep_count(1.0, 10) == 10
    assert base.keep_count(0.5, 0) == 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="gzip"), "unknown compression method"),
    (dict(name="topk", density=0.0), "density"),
    (dict(name="topk", density=-0.5), "density"),
    (dict(name="randk", density=1.5), "density"),
    (dict(name="topk", density="abc"), "density"),
    (dict(name="topk", density=float("nan")), "density"),
    (dict(name="qsgd", bits=3), "bits"),
    (dict(name="qsgd", bits=16), "bits"),
    (dict(name="qsgd", bucket_size=0), "bucket"),
])
def test_bad_options_raise_usage_error(kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_compressor(**kwargs)


def test_bad_arrays_raise_usage_error():
    with pytest.raises(UsageError, match="floating-point"):
        make_compressor("sign").compress(np.arange(10))
    comp = make_compressor("topk", density=0.5)
    payload = comp.compress(heavy(10))
    with pytest.raises(UsageError, match="shape"):
        comp.decompress(payload, (10,), out=np.empty(11, dtype=np.float32))
    ef = ErrorFeedback(make_compressor("sign"))
    ef.compress(heavy(10))
    with pytest.raises(UsageError, match="differs"):
        ef.compress(heavy(11))


def test_qsgd_seeded_per_rank():
    x = heavy(4096)

    def codes(seed, rank):
        return make_compressor("qsgd", bits=4, seed=seed, rank=rank).compress(x)[1].copy()

    np.testing.assert_array_equal(codes(1, 0), codes(1, 0))
    assert not np.array_equal(codes(1, 0), codes(1, 1))
    assert not np.array_equal(codes(1, 0), codes(2, 0))


@pytest.mark.parametrize("name,bits", [("qsgd", 2), ("qsgd", 4), ("qsgd", 8), ("sign", 8),
                                       ("topk", 8)])
def test_streamed_blocks_do_not_change_the_result(name, bits):
    """The host kernels stream over blocks; any block length gives the same payload (QSGD's
    dither stream included) and the same decompressed vector."""
    d = SMALL + 999
    x = heavy(d, seed=21)
    results = []
    for block in (1000, 4099, 1 << 19):
        comp = make_compressor(name, bits=bits, density=0.01, bucket_size=100, seed=4)
        comp.block = block
        payload = tuple(a.copy() for a in comp.compress(x))
        results.append((payload, comp.decompress(payload, (d,))))
    (p0, y0) = results[0]
    for payload, y in results[1:]:
        if name == "topk":  # the same set, in whatever order the blocks produced it
            np.testing.assert_array_equal(np.sort(payload[1]), np.sort(p0[1]))
        elif name == "sign":  # same bits; the scale's float32 partial sums differ
            np.testing.assert_array_equal(payload[1], p0[1])
            np.testing.assert_allclose(payload[0], p0[0], rtol=1e-6)
        else:
            for a, b in zip(payload, p0, strict=True):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(y, y0, rtol=1e-6 if name == "sign" else 0)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_decompress_add_and_residual_match_decompress(name):
    d = 10_007
    x = heavy(d, seed=8)
    comp = make_compressor(name, density=0.05, bits=4, bucket_size=100, seed=1)
    comp.block = 1000  # several streamed blocks
    payload = comp.compress(x)
    dec = comp.decompress(payload, (d,))
    acc = heavy(d, seed=9)
    expect = acc + dec
    comp.decompress_add(payload, acc)
    np.testing.assert_array_equal(acc, expect)
    p = heavy(d, seed=10)
    out = np.empty(d, dtype=np.float32)
    comp.residual(payload, p, out)
    np.testing.assert_array_equal(out, p - dec)


def test_gradient_sequence_is_reproducible_correlated_and_heavy_tailed():
    from distbench.algorithms.compression.gradient_sequence import GradientSequence

    d = 50_000

    def steps(rank, n=3, seed=1):
        seq = GradientSequence(np, d, seed, rank)
        out = []
        for _ in range(n):
            g = np.empty(d, dtype=np.float32)
            seq.next(g)
            out.append(g.astype(np.float64))
        return out

    a, a2, b = steps(0), steps(0), steps(1)
    for u, v in zip(a, a2, strict=True):
        np.testing.assert_array_equal(u, v)  # same seed and rank: same gradients

    def corr(u, v):
        return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))

    assert not np.array_equal(a[0], b[0])
    assert 0.2 < corr(a[0], b[0]) < 0.95  # ranks share the common component
    assert corr(a[0], a[1]) > 0.4  # AR(1) in time
    z = a[2] / a[2].std()
    assert np.mean(z**4) > 10  # heavy tails (a Gaussian has kurtosis 3)
