"""The federated algorithms (:data:`ALGORITHMS`), each a strategy
(:class:`~distbench.algorithms.federated.strategy.Strategy`): what a client does locally and
how the server turns the clients' average update into the next global model.

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
payload in client-id order, decompresses it and forms the averages of the strategy's streams.

Algorithms are strategy classes; :meth:`~distbench.registry.Registry.create` builds one with
the options its constructor names (``--server-lr``, ``--mu``, ...), declared in its registry
entry. ``feddyn`` (:mod:`~distbench.algorithms.federated.feddyn`) shows what adding one takes:
its module and one line here.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.federated.client import client_seed
from distbench.algorithms.federated.feddyn import ALPHA, FedDyn
from distbench.algorithms.federated.strategy import ANSWERED, POPULATION, Strategy
from distbench.registry import Algorithm, Option, Registry, in_range

FedAvg = Strategy  # FedAvg is the base strategy's behaviour


class FedSGD(Strategy):
    """``fedsgd``: FedAvg with one full-batch step per client (E = 1, B = 0)."""

    name = "fedsgd"

    def work(self, epochs: int, batch: int) -> tuple[int, int]:
        return 1, 0


class FedProx(Strategy):
    """``fedprox``: FedAvg with the proximal term (mu/2) ||y - x_t||^2, mu >= 0: every local
    step adds mu (y - x_t) to the gradient."""

    name = "fedprox"
    shown = ("mu",)

    def __init__(self, mu: float = 0.01, server_lr: float = 1.0):
        super().__init__(server_lr)
        self.mu = float(mu)

    def options(self) -> dict:
        return {"mu": self.mu, **super().options()}

    def local_rule(self, client, x, extra, lr, work):
        if not self.mu:
            return None
        tmp, scale = work["tmp"], lr * self.mu

        def proximal(g, y):  # g = -lr (grad + mu (y - x_t))
            np.subtract(y, x, out=tmp)
            np.multiply(tmp, scale, out=tmp)
            np.subtract(g, tmp, out=g)

        return proximal


class FedAvgM(Strategy):
    """``fedavgm``: server momentum v = beta v + Delta, x += eta_s v (beta in [0, 1))."""

    name = "fedavgm"
    peer_to_peer = False  # its server keeps momentum

    def __init__(self, server_lr: float = 1.0, server_momentum: float = 0.9):
        super().__init__(server_lr)
        self.momentum = float(server_momentum)
        self.v = None

    def options(self) -> dict:
        return {**super().options(), "server_momentum": self.momentum}

    def start(self, x, extra) -> None:
        self.v = np.zeros_like(x)

    def server_update(self, x, means, extra) -> None:
        np.multiply(self.v, self.momentum, out=self.v)
        np.add(self.v, means[0], out=self.v)
        np.copyto(means[0], self.v)
        super().server_update(x, means, extra)


class FedAdam(Strategy):
    """``fedadam``: Adam at the server on the pseudo-gradient -Delta (Reddi et al. 2021)."""

    name = "fedadam"
    peer_to_peer = False  # its server keeps Adam's moments

    def __init__(self, server_lr: float = 0.03, beta1: float = 0.9, beta2: float = 0.99,
                 eps: float = 1e-3):
        super().__init__(server_lr)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = self.v = self.tmp = None

    def options(self) -> dict:
        return {**super().options(), "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}

    def start(self, x, extra) -> None:
        self.m, self.v, self.tmp = (np.zeros_like(x) for _ in range(3))

    def server_update(self, x, means, extra) -> None:
        m, v, tmp, delta = self.m, self.v, self.tmp, means[0]
        np.multiply(m, self.beta1, out=m)
        np.multiply(delta, 1.0 - self.beta1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(delta, delta, out=tmp)
        np.multiply(tmp, 1.0 - self.beta2, out=tmp)
        np.multiply(v, self.beta2, out=v)
        np.add(v, tmp, out=v)
        np.sqrt(v, out=tmp)
        np.add(tmp, self.eps, out=tmp)
        np.divide(m, tmp, out=delta)
        super().server_update(x, means, extra)


class Scaffold(Strategy):
    """``scaffold``: control variates (Karimireddy et al. 2020, Algorithm 1, option II): the
    server sends x and c, a client corrects every step by eta_l (c - c_k) and uploads Delta_k
    and Delta c_k = -(c + Delta_k / (K eta_l)) (c_k+ - c_k); x += eta_s Delta, c += sum_k
    (n_k / n) Delta c_k."""

    name = "scaffold"
    peer_to_peer = False  # its server keeps the global control variate
    down = 2
    up_weights = (ANSWERED, POPULATION)
    private = False  # DP's clipping and noise do not cover the control variates
    watches = (1,)

    def local_rule(self, client, x, extra, lr, work):
        c = extra[0]
        c_k = client.state.setdefault(self.name, np.zeros_like(x))
        corr = work["corr"]
        np.subtract(c, c_k, out=corr)
        np.multiply(corr, lr, out=corr)

        def control(g, y):  # g = -lr (grad - c_k + c)
            np.subtract(g, corr, out=g)

        return control

    def client_update(self, client, x, extra, delta, steps, lr, bufs) -> list:
        dc = bufs[1]  # Delta c_k = c_k+ - c_k = -(c + Delta / (K eta_l))
        np.multiply(delta, 1.0 / (steps * lr), out=dc)
        np.add(dc, extra[0], out=dc)
        np.negative(dc, out=dc)
        return [delta, dc]

    def uploaded(self, client, stream, value) -> None:
        # c_k moves by what the server sees of Delta c_k, so c stays the mean of the c_k
        np.add(client.state[self.name], value, out=client.state[self.name])

    def server_update(self, x, means, extra) -> None:
        super().server_update(x, means, extra)
        np.add(extra[0], means[1], out=extra[0])


SERVER_LR = Option("server_lr", float, None, "Server learning rate eta_s [default: 1; fedadam "
                   "0.03].", check=in_range("--server-lr", 0, 1e6, low_open=True))
ALGORITHMS = Registry("federated algorithm", "distbench.federated", {
    "fedsgd": Algorithm(FedSGD, options=(SERVER_LR,)),
    "fedavg": Algorithm(FedAvg, options=(SERVER_LR,)),
    "fedprox": Algorithm(FedProx, options=(Option(
        "mu", float, 0.01, "fedprox: proximal coefficient mu.",
        check=in_range("--mu", 0, 1e6)), SERVER_LR)),
    "fedavgm": Algorithm(FedAvgM, options=(SERVER_LR, Option(
        "server_momentum", float, 0.9, "fedavgm: server momentum beta.",
        check=in_range("--server-momentum", 0, 1, high_open=True)))),
    "fedadam": Algorithm(FedAdam, options=(SERVER_LR, Option(
        "beta1", float, 0.9, "fedadam: first-moment decay beta1.",
        check=in_range("--beta1", 0, 1, high_open=True)), Option(
        "beta2", float, 0.99, "fedadam: second-moment decay beta2.",
        check=in_range("--beta2", 0, 1, high_open=True)), Option(
        "eps", float, 1e-3, "fedadam: tau in m / (sqrt(v) + tau).",
        check=in_range("--eps", 0, 1e6, low_open=True)))),
    "scaffold": Algorithm(Scaffold, options=(SERVER_LR,)),
    "feddyn": Algorithm(FedDyn, options=(ALPHA,)),
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
        self.codec = cfg.compression.build()
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
                self.mirrors[key] = self.cfg.compression.build(
                    client_seed(self.cfg.seed, client, stream), client)
            payload += tuple(self.mirrors[key].compress(self.zeros)[len(self.bufs):])
        return self.codec.decompress(payload, (self.d,), out=self.out)

    def aggregate(self, up, plan, sizes, strategy, means: list, size: int, t: int) -> None:
        """The aggregates of round ``t``'s answering clients' uploads into ``means`` (one per
        stream, weighted as ``strategy.up_weights`` says), received in client-id order from
        the ranks holding them (client k on rank k mod ``size``; ``sizes``: n_k); with DP,
        stream 0 is the clipped updates' sum plus Gaussian noise of std Z S, over their
        number."""
        for m in means:
            m.fill(0)
        answered, cfg = plan.answered, self.cfg
        dp = cfg.dp_clip is not None
        totals = {ANSWERED: float(sizes[answered].sum()), POPULATION: float(sizes.sum())}
        for k in answered.tolist():
            for stream, weighing in enumerate(strategy.up_weights):
                w = 1.0 if dp and stream == 0 else sizes[k] / totals[weighing]
                dec = self.receive(up, k % size, k, stream)
                np.multiply(dec, w, out=dec)
                np.add(means[stream], dec, out=means[stream])
        if dp:
            noise = np.random.default_rng([cfg.seed, t, 0xD9]).normal(
                0.0, cfg.dp_noise * cfg.dp_clip, means[0].shape[0])
            np.add(means[0], noise.astype(means[0].dtype), out=means[0])
            np.multiply(means[0], 1.0 / answered.size, out=means[0])


__all__ = ["ALGORITHMS", "FedAdam", "FedAvg", "FedAvgM", "FedDyn", "FedProx", "FedSGD",
           "Scaffold", "Uplink"]
