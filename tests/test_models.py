"""Models: analytic gradients against central finite differences, the flat parameter layout,
evaluation, and f* from L-BFGS (serial)."""

from __future__ import annotations

import numpy as np
import pytest

from distbench.algorithms.sgd.datasets import load_dataset
from distbench.algorithms.sgd.models import MLP, Softmax, make_model, optimum
from distbench.errors import UsageError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _fd_check(model, theta, X, y, coords, h=1e-6):
    """Max |analytic - central difference| over ``coords``, and the gradient's max |entry|."""
    grad = np.empty_like(theta)
    model.loss_grad(theta, X, y, grad)
    scratch = np.empty_like(theta)
    worst = 0.0
    for i in coords:
        e = np.zeros_like(theta)
        e[i] = h
        fd = (model.loss_grad(theta + e, X, y, scratch)
              - model.loss_grad(theta - e, X, y, scratch)) / (2 * h)
        worst = max(worst, abs(fd - grad[i]))
    return worst, float(np.abs(grad[coords]).max())


@pytest.mark.parametrize("model_name", ["softmax", "mlp"])
def test_gradient_matches_finite_differences(digits, model_name):
    model = make_model(model_name, digits.n_features, digits.n_classes, l2=0.01, width=12)
    rng = np.random.default_rng(3)
    theta = model.init_params(1) + 0.05 * rng.standard_normal(model.n_params)
    X, y = digits.X_train[:40], digits.y_train[:40]
    # every block of the flat vector (weights and biases of each layer) is probed
    coords = np.concatenate([rng.choice(np.arange(a, b), size=min(8, b - a), replace=False)
                             for a, b in zip(model.offsets[:-1], model.offsets[1:], strict=True)])
    worst, scale = _fd_check(model, theta, X, y, coords)
    assert scale > 1e-3  # the probed entries are not trivially zero
    assert worst < 1e-7, worst


def test_gradient_is_the_loss_grad_gradient_and_float32_agrees(digits):
    model = Softmax(digits.n_features, digits.n_classes, l2=1e-3)
    rng = np.random.default_rng(0)
    theta = 0.1 * rng.standard_normal(model.n_params)
    X, y = digits.X_train[:64], digits.y_train[:64]
    g64, g = np.empty_like(theta), np.empty_like(theta)
    model.loss_grad(theta, X, y, g64)
    model.gradient(theta, X, y, g)
    np.testing.assert_array_equal(g, g64)
    g32 = np.empty(model.n_params, dtype=np.float32)
    model.gradient(theta.astype(np.float32), X.astype(np.float32), y, g32)
    np.testing.assert_allclose(g32, g64, rtol=0, atol=2e-6)


def test_flat_layout_views_share_memory():
    model = MLP(5, 3, width=4)
    theta = np.arange(model.n_params, dtype=np.float64)
    assert model.n_params == 5 * 4 + 4 + 4 * 3 + 3
    v = model.views(theta)
    assert [v[k].shape for k in ("W1", "b1", "W2", "b2")] == [(5, 4), (4,), (4, 3), (3,)]
    v["W2"][0, 0] = -1.0
    assert theta[5 * 4 + 4] == -1.0  # a view into the one vector, not a copy
    assert all(np.shares_memory(theta, a) for a in v.values())


def test_evaluate_matches_loss_grad_and_counts_accuracy(digits):
    model = make_model("mlp", digits.n_features, digits.n_classes, width=8)
    theta = model.init_params(7)
    X, y = digits.X_test, digits.y_test
    loss, acc = model.evaluate(theta, X, y)
    assert loss == pytest.approx(model.loss_grad(theta, X, y, np.empty_like(theta)), rel=1e-12)
    z = np.empty((X.shape[0], digits.n_classes))
    model.logits(theta, X, z)
    assert acc == pytest.approx(np.mean(np.argmax(z, axis=1) == y))


def test_mlp_init_is_seeded():
    model = MLP(10, 4, width=6)
    np.testing.assert_array_equal(model.init_params(5), model.init_params(5))
    assert not np.array_equal(model.init_params(5), model.init_params(6))


def test_optimum_is_a_minimum(digits):
    model = Softmax(digits.n_features, digits.n_classes, l2=1e-2)
    f_star, theta = optimum(model, digits.X_train, digits.y_train)
    grad = np.empty_like(theta)
    assert model.loss_grad(theta, digits.X_train, digits.y_train, grad) == pytest.approx(f_star)
    assert np.linalg.norm(grad) < 1e-5
    rng = np.random.default_rng(1)
    for _ in range(3):  # convex: every perturbation is worse
        other = theta + 1e-2 * rng.standard_normal(theta.shape)
        assert model.evaluate(other, digits.X_train, digits.y_train)[0] > f_star
    with pytest.raises(ValueError):
        optimum(MLP(64, 10, width=4), digits.X_train, digits.y_train)


def test_bad_model_options():
    with pytest.raises(UsageError):
        make_model("resnet", 4, 2)
    with pytest.raises(UsageError):
        make_model("mlp", 4, 2, width=0)
    with pytest.raises(UsageError):
        make_model("softmax", 4, 2, l2=-1.0)
