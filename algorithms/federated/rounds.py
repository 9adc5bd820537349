"""The round loop of federated learning over MPI: rank 0 is the server, the M clients live on
all ranks (client k on rank k mod N) and a rank trains its sampled clients one after another.

Round t (1..R), on every rank the same :class:`RoundPlan` from ``default_rng([seed, t])``
(no message needed): K = ceil(C M) clients sampled without replacement (McMahan et al. 2017,
Algorithm 1), floor(F_drop K) of them dropped (they receive the model and never answer) and
floor(F_slow K) slow (a fraction u in (0, 1] of their local steps). Then

1. down: the server sends the global state (x_t, and SCAFFOLD's c: 1 or 2 vectors of d
   elements of the model's dtype) to every sampled client, one message per client to the rank
   holding it (``Isend``, tag = client id; its own clients' included, through MPI as well);
2. each rank receives the state of each of its sampled clients in client-id order, trains it
   (:meth:`~distbench.algorithms.federated.client.Client.train`), clips (``--dp-clip``) and
   compresses its update Delta_k = y_k - x_t with the client's own compressor (error feedback
   kept per client) and sends the payload's wire arrays to the server (``Isend``, tag = client
   id, as raw bytes); SCAFFOLD sends Delta c_k after it the same way;
3. up: the server receives the answering clients' payloads in client-id order, decompresses
   each and adds w_k D(payload_k) to the average (w_k = n_k / sum over the answering clients;
   with DP w_k = 1, Gaussian noise of standard deviation Z S is added to the sum, which is then
   divided by their number: DP-FedAvg, McMahan et al. 2018, Algorithm 1 with w_k = 1), and the
   algorithm's server optimizer moves x (:mod:`~distbench.algorithms.federated.server`).

Reproducibility: the sample, the dropouts, the slow clients, each client's minibatch order
(``default_rng([seed, k, t])``), its compressor's seed and the DP noise depend on the seed, the
round and the client only, and the server sums in client-id order, so the final model is the
same bit for bit whatever N is, and every algorithm of an invocation sees the same clients.

Bytes, counted exactly by a :class:`~distbench.comm.CountingComm` on each direction's own
communicator (duplicates of ``comm``): down per round = K s d b (s = 2 for SCAFFOLD, else 1;
b the dtype's bytes), up per round = A s w with A the clients that answered and w the
compressor's ``wire_bytes`` of a d-element update (d b uncompressed). Randomized summable
payloads (rand-k) send only their values: the server rebuilds the indices with a mirror of the
client's compressor (same seed, same step), as an AllReduce would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from distbench import watchdog
from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.compression.base import keep_count
from distbench.algorithms.federated.client import Client, clip, local_steps
from distbench.algorithms.federated.server import Uplink
from distbench.algorithms.sgd.common import Clock, Diverged, finite, gather_sent, warm_up
from distbench.comm import CountingComm
from distbench.registry import Option, in_range
from distbench.runtime import DistbenchError, UsageError, mpi


def _option(name: str, kind, default, text: str, *bounds, **open_ends) -> Option:
    """An option of the round loop with its range (see :class:`~distbench.registry.Range`)."""
    flag = "--" + name.replace("_", "-")
    return Option(name, kind, default, text, check=in_range(flag, *bounds, **open_ends))


# The numeric options of a run, declared once: FedConfig.check applies their ranges and
# ``distbench fedavg`` turns them into its flags (refused while parsing).
OPTIONS = {o.name: o for o in (
    _option("rounds", int, 50, "R: communication rounds per algorithm.", 1),
    _option("clients", int, 100, "M: simulated clients, client k on rank k mod N.", 1),
    _option("fraction", float, 0.1, "C: ceil(C M) clients sampled per round.", 0, 1,
            low_open=True),
    _option("local_epochs", int, 5, "E: local epochs per round.", 1),
    _option("local_batch", int, 10, "B: local minibatch; 0: all of a client's data (E=1, "
            "B=0 is FedSGD).", 0),
    _option("lr", float, 0.1, "Client learning rate eta_l.", 0, low_open=True),
    _option("slow_fraction", float, 0.0, "Share of the sampled clients that do only part "
            "(uniform) of their local steps each round.", 0, 1),
    _option("dropout", float, 0.0, "Share of the sampled clients that never answer in a "
            "round.", 0, 1, high_open=True),
    _option("dp_clip", float, None, "DP-FedAvg: clip every update to this L2 norm S.", 0,
            low_open=True),
    _option("dp_noise", float, 0.0, "DP-FedAvg: Gaussian noise of std Z*S on the sum.", 0),
    _option("eval_every", int, 1, "Evaluate every N rounds (the last one always).", 1),
)}


@dataclass
class FedConfig:
    """One algorithm's federated run (the options of ``distbench fedavg``, with its defaults:
    :data:`OPTIONS` and the compressor options').

    Attributes: rounds R; clients M; fraction C in (0, 1] sampled per round; local_epochs E and
    local_batch B (0 = all of a client's data); lr, the clients' rate eta_l; slow_fraction and
    dropout, the shares of the sampled clients that do part of their work or never answer;
    compress, density, bits, error_feedback: the uploads' compressor; dp_clip S (None: no DP)
    and dp_noise Z; eval_every: rounds between evaluations (the last round is always
    evaluated); seed.
    """

    rounds: int = OPTIONS["rounds"].default
    clients: int = OPTIONS["clients"].default
    fraction: float = OPTIONS["fraction"].default
    local_epochs: int = OPTIONS["local_epochs"].default
    local_batch: int = OPTIONS["local_batch"].default
    lr: float = OPTIONS["lr"].default
    slow_fraction: float = OPTIONS["slow_fraction"].default
    dropout: float = OPTIONS["dropout"].default
    compress: str = "none"
    density: float = 0.01
    bits: int = 8
    error_feedback: bool | None = None
    dp_clip: float | None = OPTIONS["dp_clip"].default
    dp_noise: float = OPTIONS["dp_noise"].default
    eval_every: int = OPTIONS["eval_every"].default
    seed: int = 0

    def check(self, scaffold: bool = False) -> None:
        """Raises UsageError for a value that is never valid (one line naming the flag), and
        for DP with SCAFFOLD (``scaffold``: SCAFFOLD is among the algorithms to run), whose
        control variates the clipping and noise do not cover."""
        for name, opt in OPTIONS.items():
            if getattr(self, name) is not None:
                opt.check(getattr(self, name))
        if self.dp_clip is None and self.dp_noise:
            raise UsageError("--dp-noise needs --dp-clip (the noise is Z times the clip norm)")
        COMPRESSORS.require([self.compress], "--compress", allow_all=False)
        make_compressor(self.compress, density=self.density, bits=self.bits)
        if scaffold and self.dp_clip is not None:
            raise UsageError("--dp-clip does not cover SCAFFOLD's control variates; run "
                             "scaffold without DP")

    def sampled(self) -> int:
        """K = ceil(C M) clients per round (at least 1; 0.1 x 100 is 10)."""
        return keep_count(self.fraction, self.clients)

    def work(self, algo) -> tuple[int, int]:
        """(E, B) of ``algo``: (1, 0) for FedSGD, else the configured ones."""
        return (1, 0) if algo.full_batch else (self.local_epochs, self.local_batch)


class FedDiverged(Diverged):
    """The global model or its training loss is no longer finite after ``round`` (raised on
    every rank alike; exit code 1). A :class:`~distbench.algorithms.sgd.common.Diverged`
    whose ``mode`` is the algorithm and ``step`` the round."""

    def __init__(self, algorithm: str, round_: int):
        DistbenchError.__init__(self, f"diverged at round {round_} ({algorithm}): the training "
                                "loss or the global model is not finite; lower --lr or "
                                "--server-lr")
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


def run_federated(comm, problem, parts: list, algo, cfg: FedConfig, on_eval=None,
                  clients: dict | None = None) -> FedResult:
    """Run ``algo`` (an :data:`~distbench.algorithms.federated.server.ALGORITHMS` instance)
    for ``cfg.rounds`` rounds on every rank of ``comm`` (collective; see the module docstring).

    Args:
        comm: mpi4py communicator (or a distbench proxy); the two directions run on
            duplicates of it, each wrapped in a CountingComm.
        problem: :class:`~distbench.algorithms.sgd.common.Problem` (same on every rank).
        parts: the partition, one sorted int64 index array of the training set per client.
        on_eval: ``on_eval(record)`` called on rank 0 after each evaluation.
        clients: this rank's clients from :func:`make_clients` (built when None); their
            state is reset.

    Raises:
        UsageError: see :meth:`FedConfig.check`; a partition of another length than
            ``cfg.clients``.
        FedDiverged: the global model or its loss stopped being finite (every rank alike).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported, not warned
        return _run(comm, problem, parts, algo, cfg, on_eval, clients)


def _run(comm, problem, parts: list, algo, cfg: FedConfig, on_eval, clients) -> FedResult:
    cfg.check(algo.scaffold)
    if len(parts) != cfg.clients:
        raise UsageError(f"the partition has {len(parts)} clients, not {cfg.clients}")
    rank, size = comm.Get_rank(), comm.Get_size()
    root = rank == 0
    model, dtype = problem.model, problem.dtype
    d, s = model.n_params, 2 if algo.scaffold else 1
    sizes = np.array([p.size for p in parts], dtype=np.int64)
    clients = make_clients(problem, parts, rank, size) if clients is None else clients
    for cl in clients.values():
        cl.reset()
    E, B = cfg.work(algo)
    down, up = CountingComm(comm.Dup()), CountingComm(comm.Dup())
    state = np.zeros(s * d, dtype=dtype)  # the server's x (and c)
    state[:d] = problem.init_params(cfg.seed)
    x, c = state[:d], state[d:]
    got = np.empty_like(state)  # a client's copy of the state
    y = np.empty(d, dtype=dtype)
    work = {"g": np.empty(d, dtype=dtype), "tmp": np.empty(d, dtype=dtype),
            "corr": np.empty(d, dtype=dtype), "Xb": np.empty((max(B, 1), model.n_features),
                                                             dtype=dtype),
            "yb": np.empty(max(B, 1), dtype=np.int64)}
    pool: list = []  # per trained client of a round: its update buffers (alive until sent)
    uplink = Uplink(cfg, d, dtype) if root else None
    acc, acc_c = np.empty(d, dtype=dtype), np.empty(d, dtype=dtype)
    records: list = []

    def evaluate(t: int, plan: RoundPlan | None) -> None:
        """Rank 0 evaluates x and records the round; every rank learns whether x is finite
        (and stops alike if not) and starts the watchdog's next interval."""
        wall = clock.pause()
        rec = None
        if root:
            loss, test_acc, train_acc = problem.evaluate(x)
            rec = {"algorithm": algo.name, "round": t, "wall_s": wall, "train_loss": loss,
                   "gap": None if problem.f_star is None else loss - problem.f_star,
                   "test_acc": test_acc, "train_acc": train_acc,
                   "sampled": 0 if plan is None else int(plan.sampled.size),
                   "answered": 0 if plan is None else int(plan.answered.size),
                   "slow": 0 if plan is None else len(plan.slow),
                   "bytes_up": int(up.bytes_recv), "bytes_down": int(down.bytes_sent)}
            records.append(rec)
            if on_eval is not None:
                on_eval(rec)
        ok[0] = finite(rec, x) if root else 0
        comm.Bcast(ok, root=0)  # every rank stops alike
        if not ok[0]:
            for proxy in (down, up):
                proxy.comm.Free()
            raise FedDiverged(algo.name, t)
        watchdog.enter(f"fedavg {algo.name} after round {t}", wall - last[0])
        last[0] = wall
        clock.resume()

    warm_up(problem, max(B, 1))
    comm.Barrier()
    last = [0.0]  # training seconds at the previous evaluation
    ok = np.zeros(1, dtype=np.int8)  # rank 0's verdict: the model is finite
    clock = Clock()
    evaluate(0, None)
    for t in range(1, cfg.rounds + 1):
        plan = plan_round(cfg, t)
        answered = set(plan.answered.tolist())
        sends = [down.Isend(state, int(k) % size, int(k)) for k in plan.sampled] if root else []
        mine = [int(k) for k in plan.sampled if k % size == rank]
        for j, k in enumerate(mine):
            down.Recv(got, 0, k)
            if k not in answered:
                continue
            while len(pool) <= j:
                pool.append([np.empty(d, dtype=dtype) for _ in range(s)])
            sends += _client_round(clients[k], model, cfg, algo, got[:d], got[d:], y, work,
                                   pool[j], plan.cap(k, local_steps(clients[k].n, E, B)), t,
                                   up)
        if root:
            uplink.aggregate(up, plan, sizes, algo, acc, acc_c, size, t)
        mpi().Request.Waitall(sends)
        if root:
            algo.step(x, acc, np)
            if algo.scaffold:
                np.add(c, acc_c, out=c)
        if t % cfg.eval_every == 0 or t == cfg.rounds:
            evaluate(t, plan)
    wall = float(comm.bcast(clock.pause() if root else None, root=0))
    comm.Bcast(x, root=0)
    sent_up, got_down = gather_sent(comm, up.bytes_sent), gather_sent(comm, down.bytes_recv)
    for proxy in (down, up):
        proxy.comm.Free()
    return FedResult(x.copy(), records, cfg.rounds, sent_up, got_down, wall)


def _client_round(cl: Client, model, cfg: FedConfig, algo, x, cvec, y, work, bufs,
                  cap: int | None, t: int, up) -> list:
    """Train client ``cl`` from the global state (x, and c for SCAFFOLD) and send its upload;
    returns the send requests (``bufs`` hold the update until they complete)."""
    E, B = cfg.work(algo)
    np.copyto(y, x)
    corr = None
    if algo.scaffold:
        if cl.c is None:
            cl.c = np.zeros_like(x)
        corr = work["corr"]
        np.subtract(cvec, cl.c, out=corr)
        np.multiply(corr, cfg.lr, out=corr)
    rng = np.random.default_rng([cfg.seed, cl.id, t])
    steps = cl.train(model, y, cfg.lr, E, B, cap, rng, work, algo.mu, x, corr)
    delta = bufs[0]
    np.subtract(y, x, out=delta)
    if cfg.dp_clip is not None:
        clip(delta, cfg.dp_clip)
    uploads = [delta]
    if algo.scaffold:  # Delta c_k = c_k+ - c_k = -(c + Delta / (K eta_l))
        dc = bufs[1]
        np.multiply(delta, 1.0 / (steps * cfg.lr), out=dc)
        np.add(dc, cvec, out=dc)
        np.negative(dc, out=dc)
        uploads.append(dc)
    reqs = []
    for stream, vec in enumerate(uploads):
        comp = cl.compressor(stream, cfg.compress, cfg.density, cfg.bits, cfg.error_feedback,
                             cfg.seed)
        payload = comp.compress(vec)
        reqs += [up.Isend(a.view(np.uint8), 0, cl.id) for a in comp.wire_arrays(payload)]
        if stream == 1:  # c_k moves by what the server sees, so c stays the mean of the c_k
            np.add(cl.c, comp.decompress(payload, (x.shape[0],), out=work["tmp"]), out=cl.c)
    return reqs


__all__ = ["OPTIONS", "FedConfig", "FedDiverged", "FedResult", "RoundPlan", "plan_round",
           "make_clients", "run_federated"]
