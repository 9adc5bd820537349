"""A federated algorithm is a strategy (in the manner of Flower's ``Strategy``): the round loop
(:mod:`~distbench.algorithms.federated.rounds`) calls its lifecycle hooks and never names an
algorithm. :class:`Strategy` is the contract and FedAvg's behaviour (McMahan et al. 2017,
Algorithm 1, with a server rate eta_s as in Reddi et al. 2021, Algorithm 1).

One round t, with the hooks in the order they run:

1. :meth:`Strategy.start` (once per run) receives the server's state: x, and the ``down - 1``
   further vectors that travel to every sampled client with it (SCAFFOLD's c), which the
   strategy keeps and updates; :meth:`Strategy.work` gives the local work (E, B) from the
   configured one (FedSGD forces (1, 0));
2. :meth:`Strategy.configure_round` learns who takes part in round t (sampled, answered);
3. on a client: :meth:`Strategy.local_rule` gives the per-step correction of the local
   gradient (FedProx's proximal term, SCAFFOLD's control variates, FedDyn's linear and
   quadratic terms), called with the step's ``g = -eta_l grad f_k(y)`` and the model ``y``;
4. on a client, after training: :meth:`Strategy.client_update` turns Delta_k = y_k - x_t into
   the vectors it uploads (Delta_k, and more: SCAFFOLD's Delta c_k) and updates the client's
   own state (:attr:`Client.state`, a dict the strategy owns); :meth:`Strategy.uploaded` sees
   the streams it :attr:`~Strategy.watches` as the server will decompress them;
5. on the server: the uploads are aggregated per stream, stream i with the weights
   :attr:`Strategy.up_weights` [i] names (``answered``: n_k over the clients that answered,
   McMahan's w_k; ``population``: n_k over all clients); then :meth:`Strategy.server_update`
   moves x (and the server's state) with the aggregates.

A plug-in (entry-point group ``distbench.federated``) is a class with this interface whose
constructor takes its declared options by name (``registry.Option``s in its registry entry).
"""

from __future__ import annotations

import numpy as np

ANSWERED, POPULATION = "answered", "population"


class Strategy:
    """FedAvg, and the hooks every federated algorithm has (see the module docstring).

    Args:
        server_lr: eta_s > 0 (1: the weighted average of the client models).

    Class attributes:
        name: the registry name.
        down: vectors of d elements the server sends each sampled client (x first).
        up_weights: per uploaded stream, how the server weighs the clients (``answered`` or
            ``population``); its length is the number of streams a client uploads.
        private: whether DP-FedAvg's clipping and noise (on stream 0) cover all it uploads.
        watches: the upload streams :meth:`uploaded` is called with (decompressed on the
            client, as the server sees them).
        shown: the options that name its series in tables and plots (FedProx's mu).
        peer_to_peer: whether its server only averages, so ``--decentralized`` can run it
            without one (FedAvg, FedSGD, FedProx; not the server optimizers or SCAFFOLD).
    """

    name = "fedavg"
    down = 1
    up_weights: tuple = (ANSWERED,)
    private = True
    peer_to_peer = True
    watches: tuple = ()
    shown: tuple = ()

    def __init__(self, server_lr: float = 1.0):
        self.server_lr = float(server_lr)

    def options(self) -> dict:
        """The options this strategy was built with (for records and tables)."""
        return {"server_lr": self.server_lr}

    def work(self, epochs: int, batch: int) -> tuple[int, int]:
        """The local work (E, B) of a round, from the configured one."""
        return epochs, batch

    def start(self, x: np.ndarray, extra: list) -> None:
        """A run starts: ``x`` is the initial global model, ``extra`` the ``down - 1`` further
        vectors the server sends (zeros; views into the buffer that travels)."""

    def configure_round(self, t: int, sampled: np.ndarray, answered: np.ndarray,
                        clients: int) -> None:
        """Round ``t`` starts with the ``sampled`` client ids, of which ``answered`` answer,
        out of ``clients`` (on every rank alike)."""

    def local_rule(self, client, x: np.ndarray, extra: list, lr: float, work: dict):
        """The per-step correction of client ``client``'s local gradient, or None: a callable
        ``rule(g, y)`` changing ``g = -lr grad f_k(y)`` in place (``x``, ``extra``: what the
        server sent; ``work``: scratch vectors ``tmp`` and ``corr`` of shape (d,))."""
        return None

    def client_update(self, client, x: np.ndarray, extra: list, delta: np.ndarray,
                      steps: int, lr: float, bufs: list) -> list:
        """The vectors client ``client`` uploads after ``steps`` local steps of rate ``lr``:
        ``[delta]`` (Delta_k = y_k - x_t, clipped with DP) and, for a strategy with more
        streams, further vectors written into ``bufs[1:]``."""
        return [delta]

    def uploaded(self, client, stream: int, value: np.ndarray) -> None:
        """Stream ``stream`` of the client's upload, as the server will decompress it (a
        strategy whose client state must follow what the server sees updates it here)."""

    def server_update(self, x: np.ndarray, means: list, extra: list) -> None:
        """Move ``x`` (and the server's ``extra`` vectors) in place with the aggregated
        streams ``means`` (``means[0]``: the average Delta; it may be overwritten)."""
        if self.server_lr != 1.0:
            np.multiply(means[0], self.server_lr, out=means[0])
        np.add(x, means[0], out=x)


__all__ = ["ANSWERED", "POPULATION", "Strategy"]
