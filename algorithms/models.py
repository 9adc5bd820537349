"""Models with analytic gradients whose parameters live in ONE flat, contiguous vector.

The exchange in every SGD mode then moves one buffer: the weight matrices are reshaped views
into the vector (no copies), and a gradient is written into a vector of the same layout.
Everything runs on the array module of the parameter vector (NumPy or CuPy, via
:func:`distbench.runtime.namespace_of`), with workspaces allocated once per batch shape.

Objective on samples (X, y), n rows::

    f(theta) = (1/n) sum_i CE(softmax(z_i), y_i) + (l2/2) sum_W ||W||_F^2

(cross-entropy averaged over the rows, L2 on the weight matrices, not on the biases).

* :class:`Softmax`: multinomial logistic regression, z = X W + b; convex, so the optimum f*
  of the full training objective is found with L-BFGS (:func:`optimum`, Liu & Nocedal 1989,
  via ``scipy.optimize.minimize``).
* :class:`MLP`: one hidden ReLU layer of ``width`` units, z = relu(X W1 + b1) W2 + b2; He
  initialization for W1 and Glorot for W2 (He et al. 2015; Glorot & Bengio 2010).
"""

from __future__ import annotations

import abc
import math

import numpy as np
from distbench.runtime import UsageError, namespace_of

MODELS = ("softmax", "mlp")
EVAL_CHUNK = 8192  # rows per block when evaluating on a whole data set


class FlatModel(abc.ABC):
    """Shared machinery: the parameter layout, workspaces and the softmax cross-entropy.

    Args:
        n_features: d, input width.
        n_classes: C, output width.
        l2: L2 coefficient on the weight matrices (>= 0).
        shapes: ordered (name, shape) of the parameter blocks.
    """

    name = "model"
    convex = False

    def __init__(self, n_features: int, n_classes: int, l2: float, shapes):
        if l2 < 0:
            raise UsageError(f"--l2 must be >= 0, not {l2}")
        self.n_features, self.n_classes, self.l2 = int(n_features), int(n_classes), float(l2)
        self.shapes = list(shapes)
        self.offsets = [0]
        for _, shape in self.shapes:
            self.offsets.append(self.offsets[-1] + math.prod(shape))
        self.n_params = self.offsets[-1]
        self._ws: dict = {}

    # ------------------------------------------------------------------ layout and buffers
    def views(self, vector) -> dict:
        """Name -> reshaped view of flat ``vector`` (shape (n_params,)); no copies."""
        return {name: vector[a:b].reshape(shape) for (name, shape), a, b
                in zip(self.shapes, self.offsets[:-1], self.offsets[1:], strict=True)}

    def weights(self) -> list[str]:
        """Names of the blocks the L2 term applies to (the matrices)."""
        return [name for name, shape in self.shapes if len(shape) == 2]

    def _buf(self, key: str, shape, like, dtype=None):
        xp = namespace_of(like)
        dt = like.dtype if dtype is None else dtype
        full = (key, tuple(shape), xp.__name__, np.dtype(dt).str)
        buf = self._ws.get(full)
        if buf is None:
            buf = xp.empty(shape, dtype=dt)
            self._ws[full] = buf
        return buf

    def _rows(self, n: int, like):
        """Cached ``arange(n)`` (int64) of ``like``'s array module (row indices)."""
        xp = namespace_of(like)
        key = ("rows", n, xp.__name__)
        rows = self._ws.get(key)
        if rows is None:
            rows = self._ws[key] = xp.arange(n, dtype=np.int64)
        return rows

    def zeros(self, xp=np, dtype=np.float64):
        """A zero parameter vector (shape (n_params,)) of ``xp`` and ``dtype``."""
        return xp.zeros(self.n_params, dtype=dtype)

    # ------------------------------------------------------------------ objective pieces
    def _xent_backward(self, Z, y, want_loss: bool = True) -> float | None:
        """Cross-entropy of logits ``Z`` (n, C) against labels ``y`` (n,), summed over rows
        (None when ``want_loss`` is False: no device-to-host transfer on the hot path).

        Overwrites ``Z`` with d(sum CE)/dZ = softmax(Z) - onehot(y) (in place).
        """
        xp = namespace_of(Z)
        n = Z.shape[0]
        rows = self._rows(n, Z)
        m = self._buf("m", (n, 1), Z)
        s = self._buf("s", (n, 1), Z)
        xp.max(Z, axis=1, keepdims=True, out=m)
        xp.subtract(Z, m, out=Z)
        total = None
        if want_loss:
            total = -float(Z[rows, y].sum())
        xp.exp(Z, out=Z)
        xp.sum(Z, axis=1, keepdims=True, out=s)
        if want_loss:
            total += float(xp.log(s).sum())
        xp.divide(Z, s, out=Z)
        Z[rows, y] -= 1
        return total

    def _add_l2(self, theta, grad) -> None:
        if self.l2 == 0:
            return
        tv, gv = self.views(theta), self.views(grad)
        xp = namespace_of(theta)
        for name in self.weights():
            tmp = self._buf("l2_" + name, tv[name].shape, theta)
            xp.multiply(tv[name], self.l2, out=tmp)
            xp.add(gv[name], tmp, out=gv[name])

    def l2_term(self, theta) -> float:
        """(l2/2) * sum of squared weight-matrix entries (float)."""
        if self.l2 == 0:
            return 0.0
        tv = self.views(theta)
        return 0.5 * self.l2 * sum(float((tv[k] * tv[k]).sum()) for k in self.weights())

    # ------------------------------------------------------------------ public interface
    def gradient(self, theta, X, y, out) -> None:
        """Write the gradient of f on (X, y) into ``out`` (same shape/dtype as ``theta``).

        Args:
            theta: parameters, shape (n_params,), float32 or float64.
            X: features (n, d) of theta's dtype and array module; y: labels (n,) int64.
            out: output vector, shape (n_params,), written in place.
        """
        self.loss_grad(theta, X, y, out, want_loss=False)

    @abc.abstractmethod
    def loss_grad(self, theta, X, y, out, want_loss: bool = True) -> float | None:
        """f(theta) on (X, y) (float; None unless ``want_loss``), gradient written to ``out``."""

    @abc.abstractmethod
    def logits(self, theta, X, out) -> None:
        """Write z = model(X) (shape (n, C)) into ``out``."""

    def evaluate(self, theta, X, y) -> tuple[float, float]:
        """(f(theta) on (X, y), accuracy in [0, 1]); processed in blocks of EVAL_CHUNK rows."""
        xp = namespace_of(theta)
        n = X.shape[0]
        total, correct = 0.0, 0
        for a in range(0, n, EVAL_CHUNK):
            b = min(n, a + EVAL_CHUNK)
            Z = self._buf("eval_z", (b - a, self.n_classes), theta)
            self.logits(theta, X[a:b], Z)
            correct += int(xp.count_nonzero(xp.argmax(Z, axis=1) == y[a:b]))
            total += self._xent_backward(Z, y[a:b])
        return total / n + self.l2_term(theta), correct / n

    def init_params(self, seed: int, xp=np, dtype=np.float64):
        """Initial parameters (shape (n_params,)), identical on every rank for a given seed."""
        return self.zeros(xp, dtype)


class Softmax(FlatModel):
    """Multinomial logistic regression: parameters [W (d, C) row-major, b (C,)]."""

    name = "softmax"
    convex = True

    def __init__(self, n_features: int, n_classes: int, l2: float = 1e-3):
        super().__init__(n_features, n_classes, l2,
                         [("W", (n_features, n_classes)), ("b", (n_classes,))])

    def logits(self, theta, X, out) -> None:
        xp = namespace_of(theta)
        v = self.views(theta)
        xp.matmul(X, v["W"], out=out)
        xp.add(out, v["b"], out=out)

    def loss_grad(self, theta, X, y, out, want_loss: bool = True) -> float | None:
        xp = namespace_of(theta)
        n = X.shape[0]
        Z = self._buf("z", (n, self.n_classes), theta)
        self.logits(theta, X, Z)
        total = self._xent_backward(Z, y, want_loss)
        xp.multiply(Z, 1.0 / n, out=Z)
        g = self.views(out)
        xp.matmul(X.T, Z, out=g["W"])
        xp.sum(Z, axis=0, out=g["b"])
        self._add_l2(theta, out)
        return total / n + self.l2_term(theta) if want_loss else None


class MLP(FlatModel):
    """One hidden ReLU layer: parameters [W1 (d, h), b1 (h,), W2 (h, C), b2 (C,)]."""

    name = "mlp"

    def __init__(self, n_features: int, n_classes: int, l2: float = 1e-4, width: int = 64):
        if width < 1:
            raise UsageError(f"--width must be >= 1, not {width}")
        self.width = int(width)
        super().__init__(n_features, n_classes, l2,
                         [("W1", (n_features, width)), ("b1", (width,)),
                          ("W2", (width, n_classes)), ("b2", (n_classes,))])

    def init_params(self, seed: int, xp=np, dtype=np.float64):
        rng = np.random.default_rng(seed)
        host = np.zeros(self.n_params, dtype=np.float64)
        v = self.views(host)
        d, h, c = self.n_features, self.width, self.n_classes
        v["W1"][...] = rng.standard_normal((d, h)) * math.sqrt(2.0 / d)
        v["W2"][...] = rng.standard_normal((h, c)) * math.sqrt(2.0 / (h + c))
        return xp.asarray(host.astype(dtype))

    def _hidden(self, theta, X, H) -> None:
        xp = namespace_of(theta)
        v = self.views(theta)
        xp.matmul(X, v["W1"], out=H)
        xp.add(H, v["b1"], out=H)
        xp.maximum(H, 0, out=H)

    def logits(self, theta, X, out) -> None:
        xp = namespace_of(theta)
        v = self.views(theta)
        H = self._buf("eval_h", (X.shape[0], self.width), theta)
        self._hidden(theta, X, H)
        xp.matmul(H, v["W2"], out=out)
        xp.add(out, v["b2"], out=out)

    def loss_grad(self, theta, X, y, out, want_loss: bool = True) -> float | None:
        xp = namespace_of(theta)
        n = X.shape[0]
        v, g = self.views(theta), self.views(out)
        H = self._buf("h", (n, self.width), theta)
        Z = self._buf("z", (n, self.n_classes), theta)
        self._hidden(theta, X, H)
        xp.matmul(H, v["W2"], out=Z)
        xp.add(Z, v["b2"], out=Z)
        total = self._xent_backward(Z, y, want_loss)
        xp.multiply(Z, 1.0 / n, out=Z)
        xp.matmul(H.T, Z, out=g["W2"])
        xp.sum(Z, axis=0, out=g["b2"])
        dH = self._buf("dh", (n, self.width), theta)
        mask = self._buf("mask", (n, self.width), theta, dtype=bool)
        xp.matmul(Z, v["W2"].T, out=dH)
        xp.greater(H, 0, out=mask)
        xp.multiply(dH, mask, out=dH)
        xp.matmul(X.T, dH, out=g["W1"])
        xp.sum(dH, axis=0, out=g["b1"])
        self._add_l2(theta, out)
        return total / n + self.l2_term(theta) if want_loss else None


def make_model(name: str, n_features: int, n_classes: int, l2: float | None = None,
               width: int = 64) -> FlatModel:
    """Build ``softmax`` or ``mlp`` (``l2`` None: 1e-3 for softmax, 1e-4 for the MLP).

    Raises:
        UsageError: unknown model name, negative l2, width < 1.
    """
    if name == "softmax":
        return Softmax(n_features, n_classes, 1e-3 if l2 is None else l2)
    if name == "mlp":
        return MLP(n_features, n_classes, 1e-4 if l2 is None else l2, width)
    raise UsageError(f"unknown model {name!r} (choose {', '.join(MODELS)})")


def optimum(model: FlatModel, X: np.ndarray, y: np.ndarray, tol: float = 1e-10,
            max_iter: int = 20000) -> tuple[float, np.ndarray]:
    """f* = min f(theta) over the whole of (X, y) for a convex model, by L-BFGS in float64.

    Uses ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` (Liu & Nocedal 1989) from
    theta = 0 on host NumPy arrays. Returns ``(f_star, theta_star)`` (float, float64 vector).

    Raises:
        ValueError: the model is not convex (the MLP has no unique optimum to report).
        DistbenchError: L-BFGS ends with a gradient norm above ``sqrt(tol)`` (f* unreliable).
    """
    from distbench.runtime import DistbenchError
    from scipy.optimize import minimize

    if not model.convex:
        raise ValueError(f"f* is only defined here for convex models, not {model.name}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    grad = np.empty(model.n_params, dtype=np.float64)

    def fun(theta):
        f = model.loss_grad(theta, X, y, grad)
        return f, grad.copy()

    res = minimize(fun, model.zeros(), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0, "maxcor": 20})
    f_star, theta = float(res.fun), np.asarray(res.x)
    model.loss_grad(theta, X, y, grad)
    gnorm = float(np.linalg.norm(grad))
    if gnorm > math.sqrt(tol):
        raise DistbenchError(f"L-BFGS did not converge (gradient norm {gnorm:.2e}): "
                             f"{res.message}")
    return f_star, theta
