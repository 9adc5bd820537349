"""The round loop of federated learning over MPI: rank 0 is the server, the M clients live on
all ranks (client k on rank k mod N) and a rank trains its sampled clients one after another.

Round t (1..R), on every rank the same :class:`RoundPlan` from ``default_rng([seed, t])``
(no message needed): K = ceil(C M) clients sampled without replacement (McMahan et al. 2017,
Algorithm 1), floor(F_drop K) of them dropped (they receive the model and never answer) and
floor(F_slow K) slow (a fraction u in (0, 1] of their local steps). Then

1. down: the server sends the global state (x_t, and the strategy's further vectors, e.g.
   SCAFFOLD's c: ``strategy.down`` vectors of d elements of the model's dtype) to every sampled
   client, one message per client to the rank holding it (``Isend``, tag = client id; its own
   clients' included, through MPI as well);
2. each rank receives the state of each of its sampled clients in client-id order, trains it
   (:meth:`~distbench.algorithms.federated.client.Client.train`), clips (``--dp-clip``) and
   compresses each vector the strategy uploads (Delta_k = y_k - x_t, then e.g. SCAFFOLD's
   Delta c_k) with the client's own compressor of that stream (error feedback kept per
   client) and sends the payloads' wire arrays to the server (``Isend``, tag = client id, as
   raw bytes);
3. up: the server receives the answering clients' payloads in client-id order, decompresses
   each and adds w_k D(payload_k) to the average (w_k = n_k / sum over the answering clients;
   with DP w_k = 1, Gaussian noise of standard deviation Z S is added to the sum, which is then
   divided by their number: DP-FedAvg, McMahan et al. 2018, Algorithm 1 with w_k = 1), and the
   strategy's server update moves x (:mod:`~distbench.algorithms.federated.strategy`: the loop
   calls the strategy's hooks and names no algorithm).

Reproducibility: the sample, the dropouts, the slow clients, each client's minibatch order
(``default_rng([seed, k, t])``), its compressor's seed and the DP noise depend on the seed, the
round and the client only, and the server sums in client-id order, so the final model is the
same bit for bit whatever N is, and every algorithm of an invocation sees the same clients.

Bytes, counted exactly by a :class:`~distbench.comm.CountingComm` on each direction's own
communicator (duplicates of ``comm``): down per round = K s d b (s = ``strategy.down``, 2 for
SCAFFOLD; b the dtype's bytes), up per round = A u w with A the clients that answered, u the
strategy's upload streams and w the
compressor's ``wire_bytes`` of a d-element update (d b uncompressed). Randomized summable
payloads (rand-k) send only their values: the server rebuilds the indices with a mirror of the
client's compressor (same seed, same step), as an AllReduce would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from distbench.algorithms.compression import COMPRESSORS
from distbench.algorithms.compression.base import keep_count
from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.federated.client import Client, clip, local_steps
from distbench.algorithms.federated.server import Uplink
from distbench.algorithms.sgd.common import Clock, Diverged, finite, gather_sent, warm_up
from distbench.algorithms.sgd.gossip import TOPOLOGIES
from distbench.comm import CountingComm
from distbench.declared import arg, check, group
from distbench.errors import DistbenchError, UsageError
from distbench.runtime import mpi

ROUNDS, CLIENTS, PRIVACY = "Federated rounds", "Clients", "Differential privacy"
DECENTRAL = "Decentralized (no server)"


@dataclass(kw_only=True)
class FedConfig:
    """One algorithm's federated run, its options declared here (``distbench fedavg`` makes
    its flags from them).

    Attributes: rounds R; clients M; fraction C in (0, 1] sampled per round; local_epochs E and
    local_batch B (0 = all of a client's data); lr, the clients' rate eta_l; slow_fraction and
    dropout, the shares of the sampled clients that do part of their work or never answer;
    compression: the uploads' compressor; dp_clip S (None: no DP) and dp_noise Z; eval_every:
    rounds between evaluations (the last round is always evaluated); seed.
    """

    rounds: int = arg(50, "R: communication rounds per algorithm.", low=1, high=1 << 30,
                      group=ROUNDS)
    clients: int = arg(100, "M: simulated clients, client k on rank k mod N.", low=1,
                       high=1 << 24, group=ROUNDS)
    fraction: float = arg(0.1, "C: ceil(C M) clients sampled per round.", low=0, high=1,
                          low_open=True, group=ROUNDS)
    local_epochs: int = arg(5, "E: local epochs per round.", low=1, high=1 << 20, group=ROUNDS)
    local_batch: int = arg(10, "B: local minibatch; 0: all of a client's data (E=1, B=0 is "
                           "FedSGD).", low=0, high=1 << 30, group=ROUNDS)
    lr: float = arg(0.1, "Client learning rate eta_l.", low=0, low_open=True, high=1e6,
                    group=ROUNDS)
    slow_fraction: float = arg(0.0, "Share of the sampled clients that do only part (uniform) "
                               "of their local steps each round.", low=0, high=1, group=CLIENTS)
    dropout: float = arg(0.0, "Share of the sampled clients that never answer in a round.",
                         low=0, high=1, high_open=True, group=CLIENTS)
    compression: Compression = group(Compression, help={
        "method": "Compressor of the clients' uploads (a registered compression method).",
        "error_feedback": "Residual memory per client [default: on for the biased "
                          "compressors]."})
    dp_clip: float | None = arg(None, "DP-FedAvg: clip every update to this L2 norm S.",
                                type=float, low=0, low_open=True, high=1e12, group=PRIVACY)
    dp_noise: float = arg(0.0, "DP-FedAvg: Gaussian noise of std Z*S on the sum.", low=0,
                          high=1e6, group=PRIVACY)
    eval_every: int = arg(1, "Evaluate every N rounds (the last one always).", low=1,
                          high=1 << 30, group=ROUNDS)
    seed: int = arg(0, "Seed of every random choice (partition, samples, local batches, "
                    "noise).", low=0, high=2 ** 63 - 1)
    decentralized: bool = arg(False, "No server: the ranks average their clients' models "
                              "with their neighbours over --topology (peer-to-peer FL).",
                              group=DECENTRAL)
    topology: str = arg("ring", "Decentralized: the graph of the ranks (ring, torus, "
                        "exponential, one-peer-exponential, complete).", choices=TOPOLOGIES,
                        group=DECENTRAL)
    gossip_steps: int = arg(1, "Decentralized: gossip rounds per communication round.",
                            low=1, high=1 << 16, group=DECENTRAL)
    torus_shape: str | None = arg(None, "Decentralized: the torus' R x C.", metavar="RxC",
                                  group=DECENTRAL)
    topology_file: str | None = arg(None, "Decentralized: a file of edges 'i j' instead of "
                                    "--topology.", metavar="FILE", group=DECENTRAL)

    def check(self, strategy=None, typed: frozenset | None = None) -> None:
        """Raises UsageError for a value that is never valid (one line naming the flag), and
        for DP with a strategy whose uploads its clipping and noise do not cover
        (``strategy``: an instance or class, e.g. SCAFFOLD's control variates). ``typed``:
        the options the user gave (their compressor options are checked against it)."""
        check(self)
        if self.dp_clip is None and self.dp_noise:
            raise UsageError("--dp-noise needs --dp-clip (the noise is Z times the clip norm)")
        self.compression.check(typed=typed)
        why = getattr(COMPRESSORS.spec(self.compression.method).fn, "not_for_uploads", "")
        if why:
            raise UsageError(f"--compress {self.compression.method} is not for federated "
                             f"uploads: {why}")
        if self.decentralized and (self.compression.active or self.dp_clip is not None):
            raise UsageError("--decentralized has no uploads: it takes neither --compress nor "
                             "--dp-clip")
        if self.decentralized and strategy is not None and not strategy.peer_to_peer:
            raise UsageError(f"--decentralized runs the algorithms whose server only "
                             f"averages (fedavg, fedsgd, fedprox): {strategy.name} keeps "
                             "state on a server")
        if strategy is not None and self.dp_clip is not None and not strategy.private:
            raise UsageError(f"--dp-clip does not cover {strategy.name}'s further uploads; run "
                             f"{strategy.name} without DP")

    def sampled(self) -> int:
        """K = ceil(C M) clients per round (at least 1; 0.1 x 100 is 10)."""
        return keep_count(self.fraction, self.clients)


class FedDiverged(Diverged):
    """The global model or its training loss is no longer finite after ``round`` (raised on
    every rank alike; exit code 1). A :class:`~distbench.algorithms.sgd.common.Diverged`
    whose ``mode`` is the algorithm and ``step`` the round."""

    def __init__(self, algorithm: str, round_: int,
                 why: str = "the training loss or the global model is not finite"):
        DistbenchError.__init__(self, f"diverged at round {round_} ({algorithm}): {why}; lower "
                                "--lr or --server-lr, or see the docs on unsound pairs")
        self.mode, self.step = algorithm, round_


@dataclass(frozen=True)
class RoundPlan:
    """Who takes part in a round: ``sampled`` and ``answered`` (sorted int64 client ids) and
    ``slow`` (client id -> the fraction u in (0, 1] of its local steps it does)."""

    sampled: np.ndarray
    answered: np.ndarray
    slow: dict = field(default_factory=dict)

    def cap(self, client: int, full: int) -> int | None:
        """Local steps of ``client`` out of ``full``: ceil(u full) >= 1 if slow, else None."""
        u = self.slow.get(client)
        return None if u is None else max(1, math.ceil(u * full))


def _count(share: float, k: int) -> int:
    """floor(share k), robust to binary rounding (0.29 * 100 is 29)."""
    return math.floor(share * k + 1e-9)


def plan_round(cfg: FedConfig, t: int) -> RoundPlan:
    """Round ``t``'s plan (the same on every rank and for every algorithm)."""
    rng = np.random.default_rng([cfg.seed, t, 0x5A3])
    k = cfg.sampled()
    sampled = np.sort(rng.choice(cfg.clients, k, replace=False)).astype(np.int64)
    dropped = rng.choice(sampled, min(_count(cfg.dropout, k), k - 1), replace=False)
    slow_ids = rng.choice(sampled, _count(cfg.slow_fraction, k), replace=False)
    slow = {int(c): float(u) for c, u in zip(slow_ids, 1.0 - rng.random(slow_ids.size),
                                             strict=True)}
    return RoundPlan(sampled, np.setdiff1d(sampled, dropped).astype(np.int64), slow)


def make_clients(problem, parts: list, rank: int, size: int) -> dict[int, Client]:
    """The clients rank ``rank`` of ``size`` simulates (id k with k mod size == rank), with
    copies of their rows of the training set."""
    return {k: Client(k, problem.X_train[p], problem.y_train[p])
            for k, p in enumerate(parts) if k % size == rank}


@dataclass
class FedResult:
    """What :func:`run_federated` returns on every rank.

    Attributes: theta (the final global model, identical on every rank); records (rank 0's
    evaluation rows); rounds; bytes_up_per_rank and bytes_down_per_rank (bytes each rank sent
    up, and received down, through MPI); wall_s (rank 0's training seconds, evaluations
    excluded).
    """

    theta: np.ndarray
    records: list
    rounds: int
    bytes_up_per_rank: list
    bytes_down_per_rank: list
    wall_s: float


def run_federated(comm, problem, parts: list, strategy, cfg: FedConfig, on_eval=None,
                  clients: dict | None = None, on_interval=None) -> FedResult:
    """Run ``strategy`` (an :data:`~distbench.algorithms.federated.server.ALGORITHMS`
    instance) for ``cfg.rounds`` rounds on every rank of ``comm`` (collective; see the module
    docstring).

    Args:
        comm: mpi4py communicator (or a distbench proxy); the two directions run on
            duplicates of it, each wrapped in a CountingComm.
        problem: :class:`~distbench.algorithms.sgd.common.Problem` (same on every rank).
        parts: the partition, one sorted int64 index array of the training set per client.
        on_eval: ``on_eval(record)`` called on rank 0 after each evaluation.
        clients: this rank's clients from :func:`make_clients` (built when None); their
            state is reset.
        on_interval: ``on_interval(label, seconds)`` called on every rank when the rounds
            between two evaluations start, with the last interval's training seconds (the
            benchmark binds it to its watchdog).

    Raises:
        UsageError: see :meth:`FedConfig.check`; a partition of another length than
            ``cfg.clients``.
        FedDiverged: the global model or its loss stopped being finite, or the loss grew past
            :data:`DIVERGED` times the initial one (every rank alike).
    """
    cfg.check(strategy)
    if len(parts) != cfg.clients:
        raise UsageError(f"the partition has {len(parts)} clients, not {cfg.clients}")
    with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported, not warned
        return _Federation(comm, problem, parts, strategy, cfg, on_eval, clients,
                           on_interval).run()


DIVERGED = 10.0  # a training loss above this many times the initial one has diverged


class _Federation:
    """One run on this rank: the server's state (rank 0), this rank's clients and their
    buffers, the two counted directions, the clock."""

    def __init__(self, comm, problem, parts, strategy, cfg, on_eval, clients, on_interval):
        self.comm, self.problem, self.strategy, self.cfg = comm, problem, strategy, cfg
        self.on_eval, self.on_interval = on_eval, on_interval
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.root = self.rank == 0
        model, dtype = problem.model, problem.dtype
        d, s = model.n_params, strategy.down
        self.d = d
        self.sizes = np.array([p.size for p in parts], dtype=np.int64)
        self.clients = make_clients(problem, parts, self.rank, self.size) \
            if clients is None else clients
        for cl in self.clients.values():
            cl.reset()
        self.E, self.B = strategy.work(cfg.local_epochs, cfg.local_batch)
        self.down, self.up = CountingComm(comm.Dup()), CountingComm(comm.Dup())
        self.state = np.zeros(s * d, dtype=dtype)  # the server's x and further vectors
        self.state[:d] = problem.init_params(cfg.seed)
        self.x = self.state[:d]
        strategy.start(self.x, self._split(self.state)[1])
        self.got = np.empty_like(self.state)  # a client's copy of the state
        self.y = np.empty(d, dtype=dtype)
        B = max(self.B, 1)
        self.work = {"g": np.empty(d, dtype=dtype), "tmp": np.empty(d, dtype=dtype),
                     "corr": np.empty(d, dtype=dtype),
                     "Xb": np.empty((B, model.n_features), dtype=dtype),
                     "yb": np.empty(B, dtype=np.int64)}
        self.pool: list = []  # per trained client of a round: its upload buffers
        self.uplink = Uplink(cfg, d, dtype) if self.root else None
        self.means = [np.empty(d, dtype=dtype) for _ in strategy.up_weights]
        self.records: list = []
        self.ok = np.zeros(1, dtype=np.int8)  # rank 0's verdict: training is still sound
        self.last, self.first_loss, self.clock = 0.0, None, None

    def _split(self, state: np.ndarray) -> tuple[np.ndarray, list]:
        """x and the further vectors of a state buffer (views)."""
        d = self.d
        return state[:d], [state[d * (i + 1): d * (i + 2)] for i in range(self.strategy.down - 1)]

    def evaluate(self, t: int, plan: RoundPlan | None) -> None:
        """Rank 0 evaluates x and records the round; every rank learns whether training is
        still sound (and stops alike if not) and the next interval starts."""
        wall = self.clock.pause()
        rec, why = None, None
        if self.root:
            rec = self._record(t, plan, wall)
            self.records.append(rec)
            if self.on_eval is not None:
                self.on_eval(rec)
            why = self._unsound(rec)
        self.ok[0] = why is None if self.root else 0
        self.comm.Bcast(self.ok, root=0)  # every rank stops alike
        if not self.ok[0]:
            self.free()
            raise FedDiverged(self.strategy.name, t, self.comm.bcast(why, root=0))
        if self.on_interval is not None:
            self.on_interval(f"fedavg {self.strategy.name} after round {t}", wall - self.last)
        self.last = wall
        self.clock.resume()

    def _record(self, t: int, plan: RoundPlan | None, wall: float) -> dict:
        loss, test_acc, train_acc = self.problem.evaluate(self.x)
        f_star = self.problem.f_star
        return {"algorithm": self.strategy.name, "round": t, "wall_s": wall,
                "train_loss": loss, "gap": None if f_star is None else loss - f_star,
                "test_acc": test_acc, "train_acc": train_acc,
                "sampled": 0 if plan is None else int(plan.sampled.size),
                "answered": 0 if plan is None else int(plan.answered.size),
                "slow": 0 if plan is None else len(plan.slow),
                "bytes_up": int(self.up.bytes_recv), "bytes_down": int(self.down.bytes_sent)}

    def _unsound(self, rec: dict) -> str | None:
        """Why training has diverged (rank 0), or None: a loss or model that is not finite, or
        a loss past :data:`DIVERGED` times the first one."""
        if not finite(rec, self.x):
            return "the training loss or the global model is not finite"
        if self.first_loss is None:
            self.first_loss = rec["train_loss"]
        elif rec["train_loss"] > DIVERGED * max(self.first_loss, 1e-12):
            return (f"the training loss grew to {rec['train_loss']:.3g}, over {DIVERGED:g}x "
                    f"the initial {self.first_loss:.3g}")
        return None

    def round(self, t: int) -> RoundPlan:
        """Round ``t`` on this rank: the server's sends, this rank's clients' training and
        uploads, the server's aggregation and update."""
        cfg, strategy, size = self.cfg, self.strategy, self.size
        plan = plan_round(cfg, t)
        strategy.configure_round(t, plan.sampled, plan.answered, cfg.clients)
        answered = set(plan.answered.tolist())
        sends = [self.down.Isend(self.state, int(k) % size, int(k))
                 for k in plan.sampled] if self.root else []
        mine = [int(k) for k in plan.sampled if k % size == self.rank]
        for j, k in enumerate(mine):
            self.down.Recv(self.got, 0, k)
            if k not in answered:
                continue
            while len(self.pool) <= j:
                self.pool.append([np.empty(self.d, dtype=self.problem.dtype)
                                  for _ in strategy.up_weights])
            cl = self.clients[k]
            sends += self.client_round(cl, self.pool[j],
                                       plan.cap(k, local_steps(cl.n, self.E, self.B)), t)
        if self.root:
            self.uplink.aggregate(self.up, plan, self.sizes, strategy, self.means, size, t)
        mpi().Request.Waitall(sends)
        if self.root:
            strategy.server_update(self.x, self.means, self._split(self.state)[1])
        return plan

    def client_round(self, cl: Client, bufs: list, cap: int | None, t: int) -> list:
        """Train client ``cl`` from the state received and send its uploads; returns the send
        requests (``bufs`` hold the uploads until they complete)."""
        cfg, strategy, y = self.cfg, self.strategy, self.y
        x, extra = self._split(self.got)
        np.copyto(y, x)
        rule = strategy.local_rule(cl, x, extra, cfg.lr, self.work)
        rng = np.random.default_rng([cfg.seed, cl.id, t])
        steps = cl.train(self.problem.model, y, cfg.lr, self.E, self.B, cap, rng, self.work,
                         rule)
        delta = bufs[0]
        np.subtract(y, x, out=delta)
        if cfg.dp_clip is not None:
            clip(delta, cfg.dp_clip)
        reqs = []
        for stream, vec in enumerate(strategy.client_update(cl, x, extra, delta, steps, cfg.lr,
                                                             bufs)):
            comp = cl.compressor(stream, cfg.compression, cfg.seed)
            payload = comp.compress(vec)
            reqs += [self.up.Isend(a.view(np.uint8), 0, cl.id)
                     for a in comp.wire_arrays(payload)]
            if stream in strategy.watches:
                strategy.uploaded(cl, stream, comp.decompress(payload, (self.d,),
                                                              out=self.work["tmp"]))
        return reqs

    def free(self) -> None:
        for proxy in (self.down, self.up):
            proxy.comm.Free()

    def run(self) -> FedResult:
        comm, cfg = self.comm, self.cfg
        warm_up(self.problem, max(self.B, 1))
        comm.Barrier()
        self.clock = Clock()
        self.evaluate(0, None)
        for t in range(1, cfg.rounds + 1):
            plan = self.round(t)
            if t % cfg.eval_every == 0 or t == cfg.rounds:
                self.evaluate(t, plan)
        wall = float(comm.bcast(self.clock.pause() if self.root else None, root=0))
        comm.Bcast(self.x, root=0)
        sent_up = gather_sent(comm, self.up.bytes_sent)
        got_down = gather_sent(comm, self.down.bytes_recv)
        self.free()
        return FedResult(self.x.copy(), self.records, cfg.rounds, sent_up, got_down, wall)


__all__ = ["DIVERGED", "FedConfig", "FedDiverged", "FedResult", "RoundPlan", "make_clients",
           "plan_round", "run_federated"]
