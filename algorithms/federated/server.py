"""The federated algorithms (:data:`ALGORITHMS`): what a client does locally and how the server
turns the clients' average update into the next global model.

Every round the server holds the global model x_t (a flat vector of the model's dtype, shape
(d,)); the clients that answer return their updates Delta_k = y_k - x_t (y_k: the model after
local training), and the server forms their average Delta = sum_k w_k Delta_k with
w_k = n_k / sum_j n_j over the clients that answered (n_k: samples of client k; McMahan et al.
2017, Algorithm 1). The server optimizer then moves x along Delta, Reddi et al. 2021
("Adaptive Federated Optimization", Algorithm 1) treating -Delta as a pseudo-gradient:

* ``fedsgd`` (McMahan et al. 2017, section 2): one full-batch gradient step per client
  (E = 1, B = 0 whatever ``--local-epochs``/``--local-batch`` say), x += eta_s Delta;
* ``fedavg`` (McMahan et al. 2017, Algorithm 1): E epochs of minibatch SGD (batch B) per
  client, x += eta_s Delta (eta_s = 1: the weighted average of the client models);
* ``fedprox --mu X`` (Li et al. 2020, "Federated Optimization in Heterogeneous Networks",
  Algorithm 2): the local objective gets (mu/2) ||y - x_t||^2, so each local step adds
  mu (y - x_t) to the gradient; mu = 0 is fedavg;
* ``fedavgm`` (Hsu et al. 2019, section 4; Reddi et al. 2021): server momentum
  v = beta v + Delta, x += eta_s v; beta = 0 and eta_s = 1 is fedavg;
* ``fedadam`` (Reddi et al. 2021, Algorithm 2, FedAdam): m = b1 m + (1 - b1) Delta,
  v = b2 v + (1 - b2) Delta^2, x += eta_s m / (sqrt(v) + tau) (no bias correction, as there);
* ``scaffold`` (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for
  Federated Learning", Algorithm 1, option II): control variates c (server) and c_k (client)
  correct every local step, g <- g - c_k + c; after K local steps with rate eta_l the client
  sets c_k+ = c_k - c + (x_t - y_k) / (K eta_l) and uploads Delta_k and Delta c_k = c_k+ - c_k;
  the server does x += eta_s Delta and c += sum_k (n_k / n) Delta c_k, so c stays the
  n_k/n-weighted mean of the c_k (the paper's 1/N for equal sizes). With one client the
  correction is zero and SCAFFOLD is local SGD.

:class:`Uplink` is the server's side of the uploads: it receives each answering client's
payload in client-id order, decompresses it and forms the average Delta.

Algorithms are classes; :meth:`~distbench.registry.Registry.create` builds one with the options
its constructor names (``--server-lr``, ``--mu``, ...), so each declares its own. A plug-in
(entry-point group ``distbench.federated``) is a class with the same interface as
:class:`FedAvg`: class attributes ``name``, ``full_batch`` and ``scaffold``, an attribute
``mu``, ``options()`` and ``step(x, delta, xp)``.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.compression import make_compressor
from distbench.algorithms.federated.client import client_seed
from distbench.registry import Algorithm, Option, Registry, in_range


class FedAvg:
    """``fedavg``: x += eta_s Delta (see the module docstring).

    Args:
        server_lr: eta_s > 0 (1: the weighted average of the client models).

    Attributes (read by the round loop): ``full_batch`` (E = 1, B = 0 forced), ``mu`` (the
    proximal coefficient), ``scaffold`` (control variates travel both ways).
    """

    name = "fedavg"
    full_batch = False
    scaffold = False

    def __init__(self, server_lr: float = 1.0):
        self.server_lr = float(server_lr)
        self.mu = 0.0

    def options(self) -> dict:
        """The options this algorithm was built with (for records and tables)."""
        return {"server_lr": self.server_lr}

    def step(self, x, delta, xp) -> None:
        """``x += eta_s delta`` in place (``delta`` may be overwritten)."""
        if self.server_lr != 1.0:
            xp.multiply(delta, self.server_lr, out=delta)
        xp.add(x, delta, out=x)


class FedSGD(FedAvg):
    """``fedsgd``: FedAvg with one full-batch step per client (E = 1, B = 0)."""

    name = "fedsgd"
    full_batch = True


class FedProx(FedAvg):
    """``fedprox``: FedAvg with the proximal term (mu/2) ||y - x_t||^2, mu >= 0."""

    name = "fedprox"

    def __init__(self, mu: float = 0.01, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.mu = float(mu)

    def options(self) -> dict:
        return {"mu": self.mu, **super().options()}


class FedAvgM(FedAvg):
    """``fedavgm``: server momentum v = beta v + Delta, x += eta_s v (beta in [0, 1))."""

    name = "fedavgm"

    def __init__(self, server_lr: float = 1.0, server_momentum: float = 0.9):
        super().__init__(server_lr)
        self.momentum = float(server_momentum)
        self.v = None

    def options(self) -> dict:
        return {**super().options(), "server_momentum": self.momentum}

    def step(self, x, delta, xp) -> None:
        if self.v is None:
            self.v = xp.zeros_like(x)
        xp.multiply(self.v, self.momentum, out=self.v)
        xp.add(self.v, delta, out=self.v)
        xp.copyto(delta, self.v)
        super().step(x, delta, xp)


class FedAdam(FedAvg):
    """``fedadam``: Adam at the server on the pseudo-gradient -Delta (Reddi et al. 2021)."""

    name = "fedadam"

    def __init__(self, server_lr: float = 0.03, beta1: float = 0.9, beta2: float = 0.99,
                 eps: float = 1e-3):
        super().__init__(server_lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = self.v = self.tmp = None

    def options(self) -> dict:
        return {**super().options(), "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}

    def step(self, x, delta, xp) -> None:
        if self.m is None:
            self.m, self.v, self.tmp = (xp.zeros_like(x) for _ in range(3))
        m, v, tmp = self.m, self.v, self.tmp
        xp.multiply(m, self.beta1, out=m)
        xp.multiply(delta, 1.0 - self.beta1, out=tmp)
        xp.add(m, tmp, out=m)
        xp.multiply(delta, delta, out=tmp)
        xp.multiply(tmp, 1.0 - self.beta2, out=tmp)
        xp.multiply(v, self.beta2, out=v)
        xp.add(v, tmp, out=v)
        xp.sqrt(v, out=tmp)
        xp.add(tmp, self.eps, out=tmp)
        xp.divide(m, tmp, out=delta)
        super().step(x, delta, xp)


class Scaffold(FedAvg):
    """``scaffold``: control variates (Karimireddy et al. 2020), x += eta_s Delta."""

    name = "scaffold"
    scaffold = True


SERVER_LR = Option("server_lr", float, None, "Server learning rate eta_s [default: 1; fedadam "
                   "0.03].", check=in_range("--server-lr", 0, low_open=True))
ALGORITHMS = Registry("federated algorithm", "distbench.federated", {
    "fedsgd": Algorithm(FedSGD, options=(SERVER_LR,)),
    "fedavg": Algorithm(FedAvg, options=(SERVER_LR,)),
    "fedprox": Algorithm(FedProx, options=(Option(
        "mu", float, 0.01, "fedprox: proximal coefficient mu.",
        check=in_range("--mu", 0)), SERVER_LR)),
    "fedavgm": Algorithm(FedAvgM, options=(SERVER_LR, Option(
        "server_momentum", float, 0.9, "fedavgm: server momentum beta.",
        check=in_range("--server-momentum", 0, 1, high_open=True)))),
    "fedadam": Algorithm(FedAdam, options=(SERVER_LR, Option(
        "beta1", float, 0.9, "fedadam: first-moment decay beta1.",
        check=in_range("--beta1", 0, 1, high_open=True)), Option(
        "beta2", float, 0.99, "fedadam: second-moment decay beta2.",
        check=in_range("--beta2", 0, 1, high_open=True)), Option(
        "eps", float, 1e-3, "fedadam: tau in m / (sqrt(v) + tau).",
        check=in_range("--eps", 0, low_open=True)))),
    "scaffold": Algorithm(Scaffold, options=(SERVER_LR,)),
})


class Uplink:
    """The server's side of the uploads of a run with configuration ``cfg`` (a
    :class:`~distbench.algorithms.federated.rounds.FedConfig`) and d-element updates of
    ``dtype``: the receive buffers (the wire arrays of the compressor, sized exactly), and
    mirrors of the clients' randomized summable compressors (rand-k), which rebuild the parts
    of a payload that do not travel (the indices: same seed, same step as the client's)."""

    def __init__(self, cfg, d: int, dtype):
        self.cfg, self.d = cfg, d
        self.zeros = np.zeros(d, dtype=dtype)
        self.codec = make_compressor(cfg.compress, density=cfg.density, bits=cfg.bits)
        payload = self.codec.compress(self.zeros)
        wire = self.codec.wire_arrays(payload)
        self.bufs = [np.empty_like(a) for a in wire]
        self.side = len(payload) > len(wire)
        self.mirrors: dict = {}
        self.out = np.empty(d, dtype=dtype)

    def receive(self, up, source: int, client: int, stream: int) -> np.ndarray:
        """Receive one payload of ``client`` and return D(payload) (a (d,) scratch array)."""
        for b in self.bufs:
            up.Recv(b.view(np.uint8), source, client)
        payload = tuple(self.bufs)
        if self.side:
            key = (client, stream)
            if key not in self.mirrors:
                cfg = self.cfg
                self.mirrors[key] = make_compressor(
                    cfg.compress, density=cfg.density, bits=cfg.bits,
                    seed=client_seed(cfg.seed, client, stream), rank=client)
            payload += tuple(self.mirrors[key].compress(self.zeros)[len(self.bufs):])
        return self.codec.decompress(payload, (self.d,), out=self.out)

    def aggregate(self, up, plan, sizes, algo, acc, acc_c, size: int, t: int) -> None:
        """The average of round ``t``'s answering clients' updates into ``acc`` (and
        SCAFFOLD's sum_k n_k/n Delta c_k into ``acc_c``), received in client-id order from the
        ranks holding them (client k on rank k mod ``size``; ``sizes``: n_k); with DP, the
        clipped updates' sum plus Gaussian noise of std Z S, over their number."""
        acc.fill(0)
        acc_c.fill(0)
        answered = plan.answered
        cfg = self.cfg
        dp = cfg.dp_clip is not None
        total = float(sizes[answered].sum())
        for k in answered.tolist():
            w = 1.0 if dp else sizes[k] / total
            dec = self.receive(up, k % size, k, 0)
            np.multiply(dec, w, out=dec)
            np.add(acc, dec, out=acc)
            if algo.scaffold:
                dec = self.receive(up, k % size, k, 1)
                np.multiply(dec, sizes[k] / sizes.sum(), out=dec)
                np.add(acc_c, dec, out=acc_c)
        if dp:
            noise = np.random.default_rng([cfg.seed, t, 0xD9]).normal(
                0.0, cfg.dp_noise * cfg.dp_clip, acc.shape[0])
            np.add(acc, noise.astype(acc.dtype), out=acc)
            np.multiply(acc, 1.0 / answered.size, out=acc)


__all__ = ["ALGORITHMS", "FedAvg", "FedSGD", "FedProx", "FedAvgM", "FedAdam", "Scaffold",
           "Uplink"]
