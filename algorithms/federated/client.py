"""One simulated client: its data, its local training, and what it keeps between rounds (the
error-feedback memory of its compressed uploads, SCAFFOLD's control variate c_k).

Local training (McMahan et al. 2017, Algorithm 1, ClientUpdate): E epochs over the client's
n_k samples in minibatches of B (a fresh permutation per epoch; the last batch of an epoch
keeps the remainder, so every sample is used once per epoch), or, with B = 0, one step per
epoch on all n_k samples in their stored order. That is ``local_steps(n_k, E, B)`` =
E ceil(n_k / B) steps (E for B = 0) of

    y <- y - eta_l grad f_k(y)   (then the strategy's per-step correction, if any)

with the strategy's correction (FedProx's proximal term, SCAFFOLD's control variates, FedDyn's
regularizer: :meth:`~distbench.algorithms.federated.strategy.Strategy.local_rule`) applied to
each step; a slow client (FedProx's variable local work, Li et al. 2020, section 5.2) stops
after fewer steps. The minibatch order of client k in round t
comes from ``default_rng([seed, k, t])``, so it is the same on whichever rank simulates the
client and for every algorithm.
"""

from __future__ import annotations

import math

import numpy as np


def local_steps(n: int, epochs: int, batch: int) -> int:
    """Local steps of a full round: ``epochs * ceil(n / batch)``, or ``epochs`` for batch 0."""
    return epochs * (math.ceil(n / batch) if 0 < batch < n else 1)


def client_seed(seed: int, client: int, stream: int = 0) -> int:
    """A 32-bit seed of client ``client``'s compressor ``stream`` (0: the update, 1: SCAFFOLD's
    control variate), independent across clients and streams."""
    return int(np.random.SeedSequence([seed, client, stream]).generate_state(1)[0])


class Client:
    """Client ``cid`` with its rows of the training set.

    Args:
        cid: the client id (0..M-1).
        X: features (n_k, d_in) of the problem's dtype; y: int64 labels (n_k,).

    Attributes:
        uplink: the compressors of its uploads, one per stream (built on first use with
            :meth:`compressor`, error feedback per client as configured), kept across rounds.
        state: what the strategy keeps per client between rounds (SCAFFOLD's c_k, FedDyn's
            h_k), by the strategy's name; empty at the start of a run.
    """

    def __init__(self, cid: int, X, y):
        self.id, self.X, self.y = int(cid), X, y
        self.n = int(y.shape[0])
        self.reset()

    def reset(self) -> None:
        """Forget every state (a new algorithm starts from scratch)."""
        self.uplink: dict = {}
        self.state: dict = {}

    def compressor(self, stream: int, compression, seed: int):
        """This client's compressor of upload ``stream`` (built once from the
        :class:`~distbench.algorithms.compression.spec.Compression`; see :func:`client_seed`).

        Raises:
            UsageError: unknown compressor or bad options.
        """
        comp = self.uplink.get(stream)
        if comp is None:
            comp = self.uplink[stream] = compression.build(client_seed(seed, self.id, stream),
                                                           self.id)
        return comp

    def train(self, model, y, lr: float, epochs: int, batch: int, cap: int | None,
              rng: np.random.Generator, work: dict, rule=None) -> int:
        """Local SGD in place on ``y`` (shape (d,), the model's dtype); returns the steps taken.

        Args:
            model: the :class:`~distbench.algorithms.sgd.models.FlatModel`.
            y: starts as the global model x_t; ends as the client's model.
            lr: eta_l; epochs: E; batch: B (0: whole data); cap: stop after this many steps
                (a slow client), None for the full round.
            rng: this client's generator of the round (minibatch order).
            work: scratch arrays shared by the clients of a rank (``g`` of shape (d,), ``Xb``
                (B, d_in), ``yb`` (B,)).
            rule: the strategy's per-step correction ``rule(g, y)`` of ``g = -lr grad``, or
                None.
        """
        g = work["g"]
        whole = not 0 < batch < self.n
        total = local_steps(self.n, epochs, batch)
        steps = total if cap is None else min(cap, total)
        done = 0
        while done < steps:
            if whole:
                batches = [None]
            else:
                order = rng.permutation(self.n)
                batches = [order[a:a + batch] for a in range(0, self.n, batch)]
            for idx in batches:
                if done == steps:
                    break
                if idx is None:
                    Xb, yb = self.X, self.y
                else:
                    Xb, yb = work["Xb"][: idx.size], work["yb"][: idx.size]
                    self.X.take(idx, axis=0, out=Xb)
                    self.y.take(idx, out=yb)
                model.gradient(y, Xb, yb, g, -lr)
                if rule is not None:
                    rule(g, y)
                np.add(y, g, out=y)
                done += 1
        return done


def clip(delta, bound: float) -> float:
    """Scale ``delta`` in place to L2 norm at most ``bound`` (DP-FedAvg's clipping, McMahan et
    al. 2018, Algorithm 1); returns the norm before clipping."""
    norm = float(np.linalg.norm(delta))
    if norm > bound:
        np.multiply(delta, bound / norm, out=delta)
    return norm


__all__ = ["Client", "clip", "client_seed", "local_steps"]
