"""Decentralized (peer-to-peer) federated learning: no server. Each rank is a site with its own
model and the clients it hosts (client k on rank k mod N); in round t the sampled clients on a
rank train from that rank's model (FedAvg's local SGD, FedProx's proximal term if chosen),
the rank takes the sample-weighted mean of their models, and the ranks then average with
their neighbours over a gossip topology (:mod:`distbench.algorithms.sgd.gossip`, D-PSGD's
doubly stochastic W, ``--gossip-steps`` rounds): the decentralized FedAvg of Lalitha et al.
("Fully decentralized federated learning", NeurIPS 2018 workshop) and of the gossip
literature (Hegedus et al. 2019). A rank none of whose clients was sampled keeps its model
and only gossips.

The evaluated model is the mean of the ranks' models; every evaluation records the consensus
distance. Traffic is the gossip's, per rank degree x model bytes per gossip round; the
records' ``bytes_up`` is its total over the ranks and ``bytes_per_client`` that total over
the clients.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.federated.client import local_steps
from distbench.algorithms.federated.rounds import FedResult, _Federation, plan_round
from distbench.algorithms.sgd.common import gather_sent
from distbench.algorithms.sgd.gossip import Gossip, topology
from distbench.errors import UsageError


class Decentralized(_Federation):
    """One decentralized run on this rank (see the module doc): its site model ``x``, its
    clients, the gossip with its neighbours."""

    def __init__(self, comm, problem, parts, strategy, cfg, on_eval, clients, on_interval):
        super().__init__(comm, problem, parts, strategy, cfg, on_eval, clients, on_interval)
        self.graph = topology(cfg.topology, self.size, "d-psgd", cfg.torus_shape,
                              cfg.topology_file)
        self.mixer = Gossip(comm, self.graph, self.d, self.x)
        self.avg = np.empty_like(self.x)

    def evaluate(self, t, plan) -> None:
        """Every rank's model averaged (uncounted, clock stopped) for rank 0's evaluation."""
        self.comm.Allreduce(self.x, self.avg)
        self.avg /= self.size
        dist = float(np.linalg.norm(self.x - self.avg))
        self._consensus = self.comm.allgather(dist)
        self._sent = gather_sent(self.comm, self.mixer.bytes_sent)
        super().evaluate(t, plan)

    def _record(self, t, plan, wall) -> dict:
        x, self.x = self.x, self.avg  # the record evaluates the mean model
        try:
            rec = super()._record(t, plan, wall)
        finally:
            self.x = x
        total = int(sum(self._sent))
        rec.update(bytes_up=total, bytes_down=0, bytes_per_client=total / self.cfg.clients,
                   consensus=float(np.mean(self._consensus)),
                   consensus_max=float(max(self._consensus)), topology=self.graph.name,
                   spectral_gap=self.graph.spectral_gap(), degree=self.graph.degree())
        return rec

    def round(self, t: int):
        """Round ``t``: this rank's sampled clients train from its model, the rank takes
        their sample-weighted mean, then gossips."""
        cfg, strategy = self.cfg, self.strategy
        plan = plan_round(cfg, t)
        strategy.configure_round(t, plan.sampled, plan.answered, cfg.clients)
        mine = [int(k) for k in plan.answered if k % self.size == self.rank]
        if mine:
            acc = np.zeros_like(self.x)
            total = 0.0
            for k in mine:
                cl = self.clients[k]
                np.copyto(self.y, self.x)
                rule = strategy.local_rule(cl, self.x, [], cfg.lr, self.work)
                rng = np.random.default_rng([cfg.seed, cl.id, t])
                cl.train(self.problem.model, self.y, cfg.lr, self.E, self.B,
                         plan.cap(k, local_steps(cl.n, self.E, self.B)), rng, self.work, rule)
                acc += cl.n * self.y
                total += cl.n
            np.multiply(acc, 1.0 / total, out=self.x)
        for _ in range(cfg.gossip_steps):
            self.mixer.mix(self.x)
        return plan

    def run(self) -> FedResult:
        result = super().run()
        self.mixer.free()
        sent = gather_sent(self.comm, self.mixer.bytes_sent)
        return FedResult(self.avg.copy(), self.records, result.rounds, sent,
                         [0] * self.size, result.wall_s)


def run_decentralized(comm, problem, parts: list, strategy, cfg, on_eval=None,
                      clients: dict | None = None, on_interval=None) -> FedResult:
    """:func:`~distbench.algorithms.federated.rounds.run_federated`'s peer-to-peer form (the
    module doc), same arguments.

    Raises:
        UsageError: an algorithm that keeps server state, a bad topology, see
            :meth:`~distbench.algorithms.federated.rounds.FedConfig.check`.
        FedDiverged: as for a run with a server.
    """
    cfg.check(strategy)
    if len(parts) != cfg.clients:
        raise UsageError(f"the partition has {len(parts)} clients, not {cfg.clients}")
    with np.errstate(over="ignore", invalid="ignore"):
        return Decentralized(comm, problem, parts, strategy, cfg, on_eval, clients,
                             on_interval).run()


__all__ = ["Decentralized", "run_decentralized"]
