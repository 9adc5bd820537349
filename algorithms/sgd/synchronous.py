"""Synchronous and local SGD over MPI.

* ``sync``: every step each rank computes the gradient of its own minibatch; the gradients are
  averaged with a registered AllReduce (or a compressed exchange) and every rank applies the
  same update (minibatch SGD with an effective batch of p * B; Dean et al. 2012, Goyal et al.
  2017).
* ``local``: each rank takes H local steps on its own data, then the model deltas since the
  last average are averaged (compressed if asked): ceil(T / H) communication rounds for T steps
  (Stich 2019, "Local SGD converges fast and communicates little"; Lin et al. 2020).
* ``gossip``: each rank takes a step on its own model and averages it with its neighbours
  (``--gossip-steps`` rounds of :class:`~distbench.algorithms.sgd.gossip.Gossip`: D-PSGD or
  SGP's push-sum); the evaluated model is the average of the ranks' (de-biased) models, and
  every evaluation records the consensus distance, mean_i ||z_i - z_bar||.

Both start from the same parameters and draw minibatches from the same
:class:`~distbench.algorithms.sgd.common.Sampler` streams as every other mode.
"""

from __future__ import annotations

import time

import numpy as np

from distbench.algorithms.sgd.common import (
    Clock,
    Diverged,
    Problem,
    Sampler,
    SGDConfig,
    SGDResult,
    finite,
    gather_sent,
    make_record,
    warm_up,
)
from distbench.algorithms.sgd.exchange import MeanExchange
from distbench.algorithms.sgd.gossip import Gossip


class _Loop:
    """One run of sync or local SGD on this rank: the parameters, the exchange, the clock and
    the split of the training time (compute, communication, straggler sleep).

    Both modes are the same loop (:meth:`run`): rounds of h = min(H, T - t) steps, H = 1 in
    sync mode; a sync step exchanges its gradient before the update, a local round averages
    the model deltas after its steps."""

    def __init__(self, comm, problem: Problem, cfg: SGDConfig, on_eval, on_interval):
        xp = problem.xp
        self.comm, self.problem, self.cfg = comm, problem, cfg
        self.on_eval, self.on_interval = on_eval, on_interval
        self.rank, self.p = comm.Get_rank(), comm.Get_size()
        self.local = cfg.mode == "local"
        self.gossiping = cfg.mode == "gossip"
        self.H = cfg.local_steps if self.local else 1
        self.lr = cfg.lr(self.p)
        self.fixed = self.lr.peak if self.lr.is_constant else None
        self.sampler = Sampler(problem, self.rank, self.p, cfg.batch_size, cfg.seed,
                               cfg.partition)
        self.theta = problem.init_params(cfg.seed)
        self.grad, self.avg = xp.empty_like(self.theta), xp.empty_like(self.theta)
        self.anchor = xp.array(self.theta, copy=True) if self.local else None
        self.exchange = self.mixer = None
        if self.gossiping:
            self.graph = cfg.graph(self.p)
            self.mixer = Gossip(comm, self.graph, problem.model.n_params, self.theta,
                                sgp=cfg.gossip == "sgp")
            self.z = xp.array(self.theta, copy=True)  # the de-biased model x / w (SGP)
        else:
            self.exchange = MeanExchange(
                comm, problem.model.n_params, self.theta, cfg.allreduce, cfg.compression,
                cfg.seed, shapes=[shape for _, shape in problem.model.shapes],
                steps_per_epoch=max(1, cfg.steps_per_epoch // self.H))
        self.delay = cfg.straggler.get(self.rank, 0) / 1000.0
        self.records: list = []
        self.times = {"compute": 0.0, "comm": 0.0, "sleep": 0.0}
        self.last = 0.0  # training seconds at the previous evaluation
        self.clock: Clock | None = None

    def evaluate(self, step: int, rounds: int) -> None:
        """Rank 0 evaluates and records; every rank learns whether training is still finite
        (and stops alike if not), then the next interval starts."""
        wall = self.clock.pause()
        sent = gather_sent(self.comm, self.bytes_sent)
        model, extra = self.theta, {}
        if self.gossiping:
            model, extra = self.consensus()
        rec = None
        if self.rank == 0:
            rec = {**make_record(self.problem, self.cfg, model, step, wall, rounds, sent,
                                 self.lr(max(step - 1, 0))), **extra}
            self.records.append(rec)
            if self.on_eval is not None:
                self.on_eval(rec)
        if not self.comm.bcast(finite(rec, model), root=0):  # every rank stops alike
            raise Diverged(self.cfg.mode, step)
        if self.on_interval is not None:
            self.on_interval(f"sgd {self.cfg.mode} after step {step}", wall - self.last)
        self.last = wall
        self.clock.resume()

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank handed to MPI in its exchange or to its neighbours so far."""
        return self.mixer.bytes_sent if self.gossiping else self.exchange.bytes_sent

    def consensus(self):
        """Gossip: (the average of the ranks' de-biased models, the consensus fields: mean
        and max over ranks of ||z_i - z_bar||); collective, on the uncounted communicator,
        with the clock stopped."""
        xp = self.problem.xp
        avg = xp.empty_like(self.z)
        self.comm.Allreduce(self.z, avg)
        avg /= self.p
        dist = float(xp.linalg.norm(self.z - avg))
        every = self.comm.allgather(dist)
        return avg, {"consensus": float(np.mean(every)), "consensus_max": float(max(every)),
                     "spectral_gap": self.graph.spectral_gap(),
                     "degree": self.graph.degree(), "topology": self.graph.name,
                     "gossip": self.cfg.gossip, "gossip_steps": self.cfg.gossip_steps}

    def step(self, t: int) -> None:
        """One minibatch gradient and update on this rank's shard. The step size is folded
        into the backward pass: grad = -lr/p g in dense sync (the AllReduce sum is then the
        update) and -lr g in a local step; a compressor gets g (its mean is scaled after)."""
        pc = time.perf_counter
        t0 = pc()
        Xb, yb = self.sampler.next()
        eta = self.fixed or self.lr(t)
        dense_sync = not self.local and not self.gossiping and self.exchange.dense
        scale = -eta / self.p if dense_sync else (-eta if self.local or self.gossiping else 1.0)
        self.problem.model.gradient(self.z if self.gossiping else self.theta, Xb, yb,
                                    self.grad, scale)
        t1 = pc()
        self.times["compute"] += t1 - t0
        if self.delay:
            time.sleep(self.delay)
            t0, t1 = t1, pc()
            self.times["sleep"] += t1 - t0
        if self.local:
            self.problem.xp.add(self.theta, self.grad, out=self.theta)
            return
        if self.gossiping:  # adapt, then combine with the neighbours
            xp = self.problem.xp
            xp.add(self.theta, self.grad, out=self.theta)
            for _ in range(self.cfg.gossip_steps):
                self.mixer.mix(self.theta)
            xp.multiply(self.theta, 1.0 / self.mixer.weight, out=self.z)
            self.times["comm"] += pc() - t1
            return
        if dense_sync:
            self.exchange.sum(self.grad, self.avg)  # = -lr * mean gradient
        else:
            self.exchange.mean(self.grad, self.avg, -eta)
        self.times["comm"] += pc() - t1
        self.problem.xp.add(self.theta, self.avg, out=self.theta)

    def average(self) -> None:
        """Local mode, after a round: the mean of the ranks' model deltas since the last
        average, applied to the anchor every rank shares."""
        xp = self.problem.xp
        t0 = time.perf_counter()
        xp.subtract(self.theta, self.anchor, out=self.grad)
        self.exchange.mean(self.grad, self.avg)
        xp.add(self.anchor, self.avg, out=self.theta)
        xp.copyto(self.anchor, self.theta)
        self.times["comm"] += time.perf_counter() - t0

    def run(self) -> SGDResult:
        cfg, comm = self.cfg, self.comm
        warm_up(self.problem, cfg.batch_size)
        if self.exchange is not None:
            self.exchange.warm_up(self.theta)
        comm.Barrier()
        self.clock = Clock()
        self.evaluate(0, 0)
        t, rounds, next_eval, T = 0, 0, cfg.eval_every, cfg.steps
        while t < T:
            for _ in range(min(self.H, T - t)):
                self.step(t)
                t += 1
            if self.local:
                self.average()
            rounds += cfg.gossip_steps if self.gossiping else 1
            if t >= next_eval or t == T:
                self.evaluate(t, rounds)
                while next_eval <= t:
                    next_eval += cfg.eval_every
        mine = self.clock.pause()
        times = {**self.times, "other": mine - sum(self.times.values())}
        wall = float(comm.bcast(mine if self.rank == 0 else None, root=0))
        sent = gather_sent(comm, self.bytes_sent)
        if self.mixer is not None:
            self.mixer.free()
        return SGDResult(self.theta, self.records, T, rounds, sent, wall, times)


def run_synchronous(comm, problem: Problem, cfg: SGDConfig, on_eval, on_interval=None
                    ) -> SGDResult:
    """sync (H = 1, gradients exchanged) and local (H >= 1, model deltas exchanged): one
    loop (:class:`_Loop`). ``on_interval(label, seconds)``: see
    :func:`distbench.algorithms.sgd.run_sgd`."""
    return _Loop(comm, problem, cfg, on_eval, on_interval).run()
