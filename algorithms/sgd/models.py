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

from distbench.errors import DistbenchError, UsageError
from distbench.runtime import namespace_of

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
        # [start, stop) of each weight matrix in the flat vector (the L2 term's blocks)
        self.weight_slices = [(a, b) for (_, shape), a, b in zip(
            self.shapes, self.offsets[:-1], self.offsets[1:], strict=True) if len(shape) == 2]
        self._views: dict = {}
        self._ws: dict = {}

    # ------------------------------------------------------------------ layout and buffers
    def views(self, vector) -> dict:
        """Name -> reshaped view of flat ``vector`` (shape (n_params,)); no copies.

        Cached per vector object (the hot path asks for the same few vectors every step).
        """
        hit = self._views.get(id(vector))
        if hit is not None and hit[0] is vector:
            return hit[1]
        v = {name: vector[a:b].reshape(shape) for (name, shape), a, b
             in zip(self.shapes, self.offsets[:-1], self.offsets[1:], strict=True)}
        if len(self._views) >= 32:
            self._views.clear()
        self._views[id(vector)] = (vector, v)  # holding the vector keeps its id unique
        return v

    def _work(self, n: int, like) -> dict:
        """Workspaces for a batch of ``n`` rows, allocated once per (n, array type, dtype):
        logits ``z`` (n, C), row max ``m`` and sum ``s`` (n, 1), row indices ``rows``, and
        hidden-layer arrays ``h``, ``dh`` (n, width) and ``mask`` for the MLP."""
        key = (n, type(like), like.dtype)
        ws = self._ws.get(key)
        if ws is None:
            xp, dt = namespace_of(like), like.dtype
            ws = {"z": xp.empty((n, self.n_classes), dtype=dt),
                  "m": xp.empty((n, 1), dtype=dt), "s": xp.empty((n, 1), dtype=dt),
                  "rows": xp.arange(n, dtype=np.int64), "l2": xp.empty(self.n_params, dt)}
            width = getattr(self, "width", 0)
            if width:
                ws.update(h=xp.empty((n, width), dtype=dt), dh=xp.empty((n, width), dtype=dt),
                          mask=xp.empty((n, width), dtype=bool))
            self._ws[key] = ws
        return ws

    def zeros(self, xp=np, dtype=np.float64):
        """A zero parameter vector (shape (n_params,)) of ``xp`` and ``dtype``."""
        return xp.zeros(self.n_params, dtype=dtype)

    # ------------------------------------------------------------------ objective pieces
    def _xent_backward(self, Z, y, ws, scale: float = 1.0,
                       want_loss: bool = True) -> float | None:
        """Cross-entropy of logits ``Z`` (n, C) against labels ``y`` (n,), summed over rows
        (None when ``want_loss`` is False: no device-to-host transfer on the hot path).

        Overwrites ``Z`` with ``scale`` * d(sum CE)/dZ = scale (softmax(Z) - onehot(y)).
        """
        xp = namespace_of(Z)
        rows, m, s = ws["rows"], ws["m"], ws["s"]
        Z.max(axis=1, keepdims=True, out=m)
        xp.subtract(Z, m, out=Z)
        total = None
        if want_loss:
            total = -float(Z[rows, y].sum())
        xp.exp(Z, out=Z)
        Z.sum(axis=1, keepdims=True, out=s)
        if want_loss:
            total += float(xp.log(s).sum())
        if scale != 1.0:
            xp.multiply(s, 1.0 / scale, out=s)
        xp.divide(Z, s, out=Z)
        Z[rows, y] -= scale
        return total

    def _add_l2(self, theta, grad, tmp, scale: float = 1.0) -> None:
        """``grad += scale l2 theta`` on the weight blocks (``tmp``: scratch of theta's size)."""
        if self.l2 == 0:
            return
        xp = namespace_of(theta)
        for a, b in self.weight_slices:
            t = tmp[a:b]
            xp.multiply(theta[a:b], self.l2 * scale, out=t)
            xp.add(grad[a:b], t, out=grad[a:b])

    def l2_term(self, theta) -> float:
        """(l2/2) * sum of squared weight-matrix entries (float)."""
        if self.l2 == 0:
            return 0.0
        return 0.5 * self.l2 * sum(float((theta[a:b] * theta[a:b]).sum())
                                   for a, b in self.weight_slices)

    # ------------------------------------------------------------------ public interface
    def gradient(self, theta, X, y, out, scale: float = 1.0) -> None:
        """Write ``scale`` times the gradient of f on (X, y) into ``out``.

        Args:
            theta: parameters, shape (n_params,), float32 or float64.
            X: features (n, d) of theta's dtype and array module; y: labels (n,) int64.
            out: output vector, shape (n_params,) like ``theta``, written in place.
            scale: factor folded into the backward pass at no cost (SGD passes -lr, or
                -lr/p before a summing AllReduce, and saves a pass over the vector).
        """
        self.loss_grad(theta, X, y, out, want_loss=False, scale=scale)

    @abc.abstractmethod
    def loss_grad(self, theta, X, y, out, want_loss: bool = True,
                  scale: float = 1.0) -> float | None:
        """f(theta) on (X, y) (float; None unless ``want_loss``), ``scale`` times its gradient
        written to ``out``."""

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
            ws = self._work(b - a, theta)
            Z = ws["z"]
            self.logits(theta, X[a:b], Z)
            correct += int(xp.count_nonzero(xp.argmax(Z, axis=1) == y[a:b]))
            total += self._xent_backward(Z, y[a:b], ws)
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

    def loss_grad(self, theta, X, y, out, want_loss: bool = True,
                  scale: float = 1.0) -> float | None:
        xp = namespace_of(theta)
        n = X.shape[0]
        ws = self._work(n, theta)
        Z = ws["z"]
        self.logits(theta, X, Z)
        total = self._xent_backward(Z, y, ws, scale / n, want_loss)
        g = self.views(out)
        xp.matmul(X.T, Z, out=g["W"])
        Z.sum(axis=0, out=g["b"])
        self._add_l2(theta, out, ws["l2"], scale)
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
        H = self._work(X.shape[0], theta)["h"]
        self._hidden(theta, X, H)
        xp.matmul(H, v["W2"], out=out)
        xp.add(out, v["b2"], out=out)

    def loss_grad(self, theta, X, y, out, want_loss: bool = True,
                  scale: float = 1.0) -> float | None:
        xp = namespace_of(theta)
        n = X.shape[0]
        v, g = self.views(theta), self.views(out)
        ws = self._work(n, theta)
        H, Z, dH, mask = ws["h"], ws["z"], ws["dh"], ws["mask"]
        self._hidden(theta, X, H)
        xp.matmul(H, v["W2"], out=Z)
        xp.add(Z, v["b2"], out=Z)
        total = self._xent_backward(Z, y, ws, scale / n, want_loss)
        xp.matmul(H.T, Z, out=g["W2"])
        Z.sum(axis=0, out=g["b2"])
        xp.matmul(Z, v["W2"].T, out=dH)
        xp.greater(H, 0, out=mask)
        xp.multiply(dH, mask, out=dH)
        xp.matmul(X.T, dH, out=g["W1"])
        dH.sum(axis=0, out=g["b1"])
        self._add_l2(theta, out, ws["l2"], scale)
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
