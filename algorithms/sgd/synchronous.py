"""Synchronous and local SGD over MPI.

* ``sync``: every step each rank computes the gradient of its own minibatch; the gradients are
  averaged with a registered AllReduce (or a compressed exchange) and every rank applies the
  same update (minibatch SGD with an effective batch of p * B; Dean et al. 2012, Goyal et al.
  2017).
* ``local``: each rank takes H local steps on its own data, then the model deltas since the
  last average are averaged (compressed if asked): ceil(T / H) communication rounds for T steps
  (Stich 2019, "Local SGD converges fast and communicates little"; Lin et al. 2020).

Both start from the same parameters and draw minibatches from the same
:class:`~distbench.algorithms.sgd.common.Sampler` streams as every other mode.
"""

from __future__ import annotations

import time

from distbench import watchdog
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


def run_synchronous(comm, problem: Problem, cfg: SGDConfig, on_eval) -> SGDResult:
    """sync (H = 1, gradients exchanged) and local (H >= 1, model deltas exchanged)."""
    xp, model = problem.xp, problem.model
    rank, p = comm.Get_rank(), comm.Get_size()
    local = cfg.mode == "local"
    H = cfg.local_steps if local else 1
    T = cfg.steps
    lr = cfg.lr(p)
    sampler = Sampler(problem, rank, p, cfg.batch_size, cfg.seed, cfg.partition)
    theta = problem.init_params(cfg.seed)
    grad = xp.empty_like(theta)
    avg = xp.empty_like(theta)
    anchor = xp.array(theta, copy=True) if local else None
    exchange = MeanExchange(comm, model.n_params, theta, cfg.allreduce, cfg.compress,
                            cfg.density, cfg.bits, cfg.error_feedback, cfg.seed)
    delay = cfg.straggler.get(rank, 0) / 1000.0
    records: list = []
    pc = time.perf_counter
    last = [0.0]  # training seconds at the previous evaluation

    def evaluate(step: int, rounds: int) -> None:
        wall = clock.pause()
        sent = gather_sent(comm, exchange.bytes_sent)
        rec = None
        if rank == 0:
            rec = make_record(problem, cfg, theta, step, wall, rounds, sent,
                              lr(max(step - 1, 0)))
            records.append(rec)
            if on_eval is not None:
                on_eval(rec)
        if not comm.bcast(finite(rec, theta), root=0):  # every rank stops alike
            raise Diverged(cfg.mode, step)
        watchdog.enter(f"sgd {cfg.mode} after step {step}", wall - last[0])
        last[0] = wall
        clock.resume()

    warm_up(problem, cfg.batch_size)
    exchange.warm_up(theta)
    comm.Barrier()
    clock = Clock()
    evaluate(0, 0)
    t, rounds, next_eval = 0, 0, cfg.eval_every
    compute = comm_s = sleep = 0.0
    nxt, gradient, add = sampler.next, model.gradient, xp.add
    fixed = lr.peak if lr.is_constant else None
    # The step size is folded into the backward pass: grad = -lr/p g in dense sync (the
    # AllReduce sum is then the update) and -lr g in a local step; a compressor gets g.
    dense, inv_p = exchange.dense, 1.0 / p
    if not local:  # sync: one step per round, the gradients exchanged every step
        while t < T:
            t0 = pc()
            Xb, yb = nxt()
            eta = fixed or lr(t)
            gradient(theta, Xb, yb, grad, -eta * inv_p if dense else 1.0)
            t1 = pc()
            compute += t1 - t0
            if delay:
                time.sleep(delay)
                t0, t1 = t1, pc()
                sleep += t1 - t0
            if dense:
                exchange.sum(grad, avg)  # = -lr * mean gradient
            else:
                exchange.mean(grad, avg, -eta)
            comm_s += pc() - t1
            add(theta, avg, out=theta)
            t += 1
            rounds = t
            if t >= next_eval or t == T:
                evaluate(t, rounds)
                next_eval += cfg.eval_every
    while local and t < T:  # local: h steps on the own shard, then the deltas averaged
        for _ in range(min(H, T - t)):
            t0 = pc()
            Xb, yb = nxt()
            gradient(theta, Xb, yb, grad, -(fixed or lr(t)))
            t1 = pc()
            compute += t1 - t0
            if delay:
                time.sleep(delay)
                t0, t1 = t1, pc()
                sleep += t1 - t0
            add(theta, grad, out=theta)
            t += 1
        t0 = pc()
        xp.subtract(theta, anchor, out=grad)
        exchange.mean(grad, avg)
        xp.add(anchor, avg, out=theta)
        xp.copyto(anchor, theta)
        comm_s += pc() - t0
        rounds += 1
        if t >= next_eval or t == T:
            evaluate(t, rounds)
            while next_eval <= t:
                next_eval += cfg.eval_every
    mine = clock.pause()
    times = {"compute": compute, "comm": comm_s, "sleep": sleep,
             "other": mine - compute - comm_s - sleep}
    wall = float(comm.bcast(mine if rank == 0 else None, root=0))
    sent = gather_sent(comm, exchange.bytes_sent)
    return SGDResult(theta, records, T, rounds, sent, wall, times)
