"""``feddyn``: federated learning with dynamic regularization (Acar, Zhao, Navarro, Mattina,
Whatmough and Saligrama, "Federated Learning Based on Dynamic Regularization", ICLR 2021,
Algorithm 1), as a strategy (:mod:`~distbench.algorithms.federated.strategy`): this module and
one registry line are all it takes, the round loop and the client are untouched.

Client k keeps h_k = grad L_k at its last model (h_k = 0 at first) and minimizes
L_k(y) - <h_k, y> + (alpha/2) ||y - x_t||^2, so each local step's gradient is
grad L_k(y) - h_k + alpha (y - x_t); after training h_k <- h_k - alpha (y_k - x_t). The
server keeps h, with h <- h - alpha (1/M) sum_{k answered} (y_k - x_t), and sets x_{t+1} =
(the clients' average model) - h / alpha, i.e. x += Delta - h / alpha with Delta the average
update. The average is the round loop's (n_k-weighted over the clients that answered; the
paper's plain mean when the clients hold as many samples). With alpha = 0 the regularizer,
h_k and h vanish and FedDyn is FedAvg.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.federated.strategy import Strategy
from distbench.registry import Option, in_range

ALPHA = Option("feddyn_alpha", float, 0.01, "feddyn: the dynamic regularizer's alpha (0: "
               "FedAvg).", check=in_range("--feddyn-alpha", 0, 1e6))


class FedDyn(Strategy):
    """``feddyn`` (see the module docstring).

    Args:
        feddyn_alpha: the regularization coefficient alpha, >= 0 (``--feddyn-alpha``).
    """

    name = "feddyn"
    peer_to_peer = False  # its server keeps h
    shown = ("feddyn_alpha",)

    def __init__(self, feddyn_alpha: float = ALPHA.default):
        super().__init__(1.0)
        self.alpha = float(feddyn_alpha)
        self.h = None
        self.share = 1.0  # |P_t| / M: the round's answering clients among all M

    def options(self) -> dict:
        return {"feddyn_alpha": self.alpha}

    def start(self, x, extra) -> None:
        self.h = np.zeros_like(x)

    def configure_round(self, t: int, sampled, answered, clients: int) -> None:
        self.share = answered.size / clients

    def local_rule(self, client, x, extra, lr, work):
        if not self.alpha:
            return None
        h_k = client.state.setdefault(self.name, np.zeros_like(x))
        tmp, a = work["tmp"], self.alpha

        def dynamic(g, y):  # g = -lr (grad - h_k + alpha (y - x_t))
            np.subtract(y, x, out=tmp)
            np.multiply(tmp, a, out=tmp)
            np.subtract(tmp, h_k, out=tmp)
            np.multiply(tmp, lr, out=tmp)
            np.subtract(g, tmp, out=g)

        return dynamic

    def client_update(self, client, x, extra, delta, steps, lr, bufs) -> list:
        if self.alpha:  # h_k <- h_k - alpha (y_k - x_t)
            h_k = client.state[self.name]
            np.subtract(h_k, self.alpha * delta, out=h_k)
        return [delta]

    def server_update(self, x, means, extra) -> None:
        delta = means[0]
        if self.alpha:  # h <- h - alpha (|P| / M) Delta; x += Delta - h / alpha
            np.subtract(self.h, self.alpha * self.share * delta, out=self.h)
            np.subtract(delta, self.h / self.alpha, out=delta)
        np.add(x, delta, out=x)


__all__ = ["ALPHA", "FedDyn"]
