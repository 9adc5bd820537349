"""What every SGD mode shares: the configuration, the problem (data, model, f*), minibatch
sampling, the training clock, evaluation records and the result.

The modes themselves: :mod:`distbench.algorithms.sgd.synchronous` (sync and local) and
:mod:`distbench.algorithms.sgd.parameter_server` (async); :func:`distbench.algorithms.sgd.
run_sgd` runs one.

* ``sync``: every step each rank computes the gradient of its own minibatch; the gradients are
  averaged with a registered AllReduce (or a compressed exchange) and every rank applies the
  same update (minibatch SGD with an effective batch of p * B; Dean et al. 2012, Goyal et al.
  2017).
* ``local``: each rank takes H local steps on its own data, then the model deltas since the
  last average are averaged (compressed if asked): ceil(T / H) communication rounds for T steps
  (Stich 2019, "Local SGD converges fast and communicates little"; Lin et al. 2020).
* ``async``: a parameter server (:mod:`distbench.algorithms.sgd.parameter_server`).

Every mode starts from the same parameters and draws minibatches from the same
:class:`Sampler` streams, so the modes are compared on the same data order and seed. Wall time
counts training only: evaluations happen with the clock stopped. ``T`` counts parameter
updates: synchronous steps, local steps per rank, or updates applied by the server.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import KW_ONLY, dataclass, field, replace

import numpy as np

from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.sgd.datasets import PARTITIONS, Dataset, shard_indices
from distbench.algorithms.sgd.gossip import GOSSIP, TOPOLOGIES, topology
from distbench.algorithms.sgd.models import make_model, optimum
from distbench.algorithms.sgd.schedules import LRSchedule
from distbench.declared import arg, check, group
from distbench.errors import DistbenchError, UsageError
from distbench.runtime import namespace_of

MODES = ("sync", "local", "async", "gossip")
POLICIES = ("drop", "block")
PROBLEM, TRAINING, ASYNC, TARGETS = "Problem", "Training", "Asynchronous SGD", "Targets"
GOSSIP_GROUP = "Decentralized SGD (gossip)"


@dataclass(kw_only=True, frozen=True)
class ProblemSpec:
    """The learning problem of the benchmarks that train (``sgd``, ``fedavg``): the data, the
    model and its arithmetic (:class:`Problem` is the problem built from it)."""

    model: str = arg("softmax", "Softmax regression (convex, f* known) or a ReLU MLP.",
                     choices=("softmax", "mlp"), group=PROBLEM)
    width: int = arg(64, "MLP hidden units.", low=1, high=1 << 20, group=PROBLEM)
    l2: float | None = arg(None, "L2 coefficient on the weights [default: 1e-3 softmax, 1e-4 "
                           "mlp].", type=float, low=0, high=1e6, group=PROBLEM)
    dataset: str = arg("digits", "digits, breast_cancer (bundled with scikit-learn), or a "
                       "PATH.csv (label in the last column, optional header) or PATH.npz (X, "
                       "y).", group=PROBLEM)
    dtype: str = arg("float32", "Parameters, data and the exchanged vectors.",
                     choices=("float32", "float64"), group=PROBLEM)
    blas_threads: int = arg(1, "BLAS threads per rank.", low=1, high=1024, group=PROBLEM)


@dataclass(kw_only=True, frozen=True)
class Targets:
    """What "reaching the target" means: a training loss and/or a test accuracy."""

    target_loss: float | None = arg(None, "Report steps, bytes and time until the training "
                                    "loss is <= this.", type=float, group=TARGETS)
    target_acc: float | None = arg(None, "Report steps, bytes and time until the test accuracy "
                                   "is >= this.", type=float, low=0, high=1, low_open=True,
                                   group=TARGETS)

    @property
    def given(self) -> bool:
        return self.target_loss is not None or self.target_acc is not None

    def reached(self, rec: dict) -> bool:
        """Whether an evaluation row meets the targets given (all of them; never when none
        is given)."""
        if not self.given:
            return False
        ok_loss = self.target_loss is None or rec["train_loss"] <= self.target_loss
        ok_acc = self.target_acc is None or rec["test_acc"] >= self.target_acc
        return ok_loss and ok_acc

    def text(self) -> str:
        """``train loss <= 0.3, test acc >= 0.9`` (empty when none is given)."""
        return ", ".join(t for t in (
            f"train loss <= {self.target_loss:g}" if self.target_loss is not None else "",
            f"test acc >= {self.target_acc:g}" if self.target_acc is not None else "") if t)


@dataclass
class SGDConfig:
    """One mode's run: the training spec, its options declared here (``distbench sgd`` makes
    its flags from them); :meth:`for_mode` fills in what depends on the mode and the data.

    Attributes:
        mode: ``sync``, ``local`` or ``async``.
        steps: T, parameter updates (see the module docstring); None: from ``epochs``.
        epochs: passes over the training set when ``steps`` is None (default 20).
        batch_size: B, samples per minibatch per worker.
        schedule: the learning-rate schedule; its ``scale`` is set per mode when ``scale_lr``.
        scale_lr: linear scaling by the workers averaged per update (p for sync/local, 1 for
            async), Goyal et al. 2017.
        local_steps: H (local mode).
        allreduce, compression: the exchange
            (:class:`~distbench.algorithms.sgd.exchange.MeanExchange`); async is dense.
        straggler: rank -> milliseconds that rank sleeps per step (per update at the server).
        eval_every: evaluate every this many updates (local: at the end of the round that
            reaches it); the initial and final parameters are always evaluated. None: about
            20 evaluations per run.
        max_staleness, policy, staleness_lr: async bounds
            (:mod:`~distbench.algorithms.sgd.parameter_server`).
        partition: ``iid`` or ``label`` sharding.
        seed: seed of the initial parameters, the minibatch order and compressors.
    """

    mode: str = "sync"
    _: KW_ONLY
    steps: int | None = arg(None, "Parameter updates per mode (instead of --epochs): sync "
                            "steps, local steps per rank, or updates applied by the async "
                            "server.", type=int, low=1, high=1 << 40, group=TRAINING)
    epochs: float | None = arg(None, "Passes over the training set per mode [default: 20].",
                               type=float, low=0, low_open=True, high=1e6, group=TRAINING)
    batch_size: int = arg(32, "Minibatch size per worker.", low=1, high=1 << 30,
                          group=TRAINING)
    schedule: LRSchedule = group(LRSchedule)
    scale_lr: bool = arg(False, "Linear scaling: lr x workers averaged per update (Goyal et "
                         "al. 2017).", negatable=True, group=TRAINING)
    local_steps: int = arg(4, "H: local steps between averages (local mode).", low=1,
                           high=1 << 30, group=TRAINING)
    allreduce: str = arg("native", "Registered AllReduce for the exchange.", group=TRAINING)
    compression: Compression = group(Compression, help={
        "method": "Compressor of the sync gradients / local model deltas (a registered "
                  "compression method)."})
    straggler: dict = field(default_factory=dict)
    eval_every: int | None = arg(None, "Evaluate every N updates [default: about 20 rows per "
                                 "mode].", type=int, low=1, high=1 << 40, group=TRAINING)
    max_staleness: int | None = arg(None, "Async: bound S on tau = version now - version "
                                    "read.", type=int, low=0, high=1 << 30, group=ASYNC)
    policy: str = arg("drop", "Async: drop gradients staler than S, or block workers so none "
                      "is.", choices=POLICIES, flags=("--staleness-policy",), group=ASYNC)
    staleness_lr: bool = arg(False, "Async: step lr/tau for a gradient of staleness tau.",
                             negatable=True, group=ASYNC)
    partition: str = arg("iid", "How the training set is split among the workers: i.i.d. or "
                         "sorted by label.", choices=PARTITIONS, group=TRAINING)
    seed: int = arg(0, "Seed of every random choice (data order, compressors).", low=0,
                    high=2 ** 63 - 1)
    topology: str = arg("ring", "Gossip: the graph the workers average over: ring, torus, "
                        "exponential, one-peer-exponential or complete.", choices=TOPOLOGIES,
                        group=GOSSIP_GROUP)
    gossip: str = arg("d-psgd", "Gossip: D-PSGD (doubly stochastic W) or SGP (push-sum, "
                      "column-stochastic; directed and time-varying graphs).", choices=GOSSIP,
                      group=GOSSIP_GROUP)
    gossip_steps: int = arg(1, "Gossip: averaging rounds per SGD step.", low=1, high=1 << 16,
                            group=GOSSIP_GROUP)
    torus_shape: str | None = arg(None, "Gossip: the torus' R x C [default: the most square "
                                  "factorization of the ranks].", metavar="RxC",
                                  group=GOSSIP_GROUP)
    topology_file: str | None = arg(None, "Gossip: a file of edges, one 'i j' per line ('i "
                                    "-> j' or a first line 'directed' for a directed graph), "
                                    "instead of --topology.", metavar="FILE",
                                    group=GOSSIP_GROUP)
    steps_per_epoch: int = 1  # set by for_mode: parameter updates per pass (DGC's warm-up)

    def check_options(self) -> None:
        """Checks that need no rank count.

        Raises:
            UsageError: unknown mode; an option outside its declared range; --epochs with
                --steps; a negative straggler delay.
        """
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r} (choose {', '.join(MODES)})")
        check(self)
        if self.epochs is not None and self.steps is not None:
            raise UsageError("give --epochs or --steps, not both")
        if any(not ms >= 0 for ms in self.straggler.values()):
            raise UsageError("--straggler delays must be >= 0 ms")

    def validate(self, size: int) -> None:
        """All checks, including those against the rank count ``size``.

        Raises:
            UsageError: see :meth:`check_options`; async with fewer than 2 ranks; a straggler
                rank outside the job.
        """
        self.check_options()
        if self.mode == "async" and size < 2:
            raise UsageError("async mode needs at least 2 ranks (a parameter server and a "
                             "worker): launch with mpirun -n 2 or more")
        for rank in self.straggler:
            if not 0 <= rank < size:
                raise UsageError(f"--straggler rank {rank} outside 0..{size - 1}")
        if self.mode == "gossip":
            self.graph(size)

    def graph(self, size: int):
        """The gossip topology of this spec on ``size`` ranks
        (:func:`~distbench.algorithms.sgd.gossip.topology`). Raises UsageError."""
        return topology(self.topology, size, self.gossip, self.torus_shape,
                        self.topology_file)

    def for_mode(self, mode: str, size: int, n_train: int) -> SGDConfig:
        """This spec for one mode on ``size`` ranks and ``n_train`` samples: T from the
        epochs when no steps are given, the schedule's decay interval (a third of T) and 1/t
        constant (an epoch) where not given, about 20 evaluations, and async dense."""
        per_update = 1 if mode == "async" else size
        steps = self.steps if self.steps is not None else steps_for_epochs(
            self.epochs if self.epochs is not None else 20.0, n_train, self.batch_size,
            per_update)
        per_epoch = max(1, n_train // (self.batch_size * per_update))
        sched = replace(self.schedule, decay_every=self.schedule.decay_every or max(1, steps // 3),
                        t0=self.schedule.t0 or float(per_epoch))
        return replace(self, mode=mode, steps=steps, epochs=None, schedule=sched,
                       compression=Compression() if mode in ("async", "gossip")
                       else self.compression,
                       steps_per_epoch=per_epoch,
                       eval_every=self.eval_every or max(1, math.ceil(steps / 20)))

    def workers(self, size: int) -> int:
        """Ranks computing gradients: p, or p - 1 beside the parameter server."""
        return size - 1 if self.mode == "async" else size

    def lr(self, size: int) -> LRSchedule:
        """The schedule with this mode's linear-scaling factor."""
        k = (1 if self.mode == "async" else size) if self.scale_lr else 1
        return dataclasses.replace(self.schedule, scale=float(k))


class Diverged(DistbenchError):
    """Training diverged: the loss or the parameters are no longer finite at ``step``
    (exit code 1; raised on every rank alike)."""

    def __init__(self, mode: str, step: int):
        super().__init__(f"diverged at step {step} ({mode} mode): the training loss or the "
                         "parameters are not finite; lower --lr")
        self.mode, self.step = mode, step


def finite(record: dict | None, theta) -> bool:
    """Whether an evaluation ``record``'s loss and the parameters ``theta`` are finite."""
    xp = namespace_of(theta)
    loss = None if record is None else record.get("train_loss")
    return bool((loss is None or math.isfinite(loss)) and xp.isfinite(theta).all())


def steps_for_epochs(epochs: float, n_train: int, batch_size: int, workers_per_update: int
                     ) -> int:
    """Updates T that process ``epochs`` passes over ``n_train`` samples when each update
    consumes ``workers_per_update`` minibatches of ``batch_size``: ceil(E n / (B k))."""
    return max(1, math.ceil(epochs * n_train / (batch_size * workers_per_update)))


class Problem:
    """The data (on the array module ``xp`` in ``dtype``), the model, and f* (convex model).

    Args:
        dataset: a :class:`~distbench.algorithms.sgd.datasets.Dataset`.
        model: ``softmax`` or ``mlp``; l2, width: its options.
        dtype: ``float32`` or ``float64`` (parameters, data and the exchanged vector).
        xp: numpy or cupy.
        with_optimum: compute f* by L-BFGS (convex model only; rank 0 sets it). When L-BFGS
            does not converge, ``f_star`` stays None (rows show no f - f*) and
            ``f_star_note`` says why.
    """

    def __init__(self, dataset: Dataset, model: str = "softmax", l2: float | None = None,
                 width: int = 64, dtype: str = "float32", xp=np, with_optimum: bool = True):
        if dtype not in ("float32", "float64"):
            raise UsageError(f"--dtype must be float32 or float64, not {dtype!r}")
        self.dataset, self.xp, self.dtype = dataset, xp, np.dtype(dtype)
        self.model = make_model(model, dataset.n_features, dataset.n_classes, l2, width)
        self.X_train = xp.asarray(dataset.X_train.astype(self.dtype))
        self.y_train = xp.asarray(dataset.y_train)
        self.X_test = xp.asarray(dataset.X_test.astype(self.dtype))
        self.y_test = xp.asarray(dataset.y_test)
        self.f_star, self.f_star_note = None, None
        if with_optimum and self.model.convex:
            try:
                self.f_star = optimum(self.model, dataset.X_train, dataset.y_train)[0]
            except DistbenchError as exc:
                self.f_star_note = str(exc)

    def init_params(self, seed: int):
        return self.model.init_params(seed, self.xp, self.dtype)

    def evaluate(self, theta) -> tuple[float, float, float]:
        """(training objective, test accuracy, training accuracy) at ``theta``."""
        loss, train_acc = self.model.evaluate(theta, self.X_train, self.y_train)
        return loss, self.model.evaluate(theta, self.X_test, self.y_test)[1], train_acc


class Sampler:
    """Minibatches of one worker's shard: a fresh seeded permutation each epoch, consecutive
    batches of B rows, the incomplete last batch of an epoch dropped.

    The stream depends only on (seed, worker, workers, partition), so two modes with the same
    worker layout see identical minibatches. Rows are gathered into preallocated (B, d) and
    (B,) buffers with ``take(..., out=)``.

    Raises:
        UsageError: the shard holds fewer than B samples.
    """

    def __init__(self, problem: Problem, worker: int, workers: int, batch_size: int,
                 seed: int, partition: str = "iid"):
        xp = problem.xp
        self.xp, self.X, self.y = xp, problem.X_train, problem.y_train
        self.indices = shard_indices(problem.dataset.y_train, worker, workers, partition)
        self.B = int(batch_size)
        if self.indices.size < self.B:
            raise UsageError(f"--batch-size {self.B} exceeds the {self.indices.size} training "
                             f"samples of a worker's shard ({workers} workers)")
        self.per_epoch = self.indices.size // self.B
        self.rng = np.random.default_rng([seed, worker, workers])
        self.Xb = xp.empty((self.B, self.X.shape[1]), dtype=self.X.dtype)
        self.yb = xp.empty(self.B, dtype=self.y.dtype)
        self.pos = self.per_epoch

    def next(self):
        """The next minibatch as (Xb, yb) views of the preallocated buffers."""
        if self.pos == self.per_epoch:
            self.order = self.xp.asarray(self.indices[self.rng.permutation(self.indices.size)])
            self.pos = 0
        idx = self.order[self.pos * self.B:(self.pos + 1) * self.B]
        self.pos += 1
        self.X.take(idx, axis=0, out=self.Xb)
        self.y.take(idx, out=self.yb)
        return self.Xb, self.yb


@dataclass
class SGDResult:
    """What a mode's run returns on every rank.

    Attributes:
        theta: final parameters (identical on every rank).
        records: evaluation rows (rank 0; empty elsewhere).
        steps: T; rounds: communication rounds (sync: T, local: ceil(T/H), async: updates
            received by the server, dropped ones included).
        bytes_per_rank: bytes each rank handed to MPI to send (exact, gathered at the end).
        wall_s: training seconds on rank 0, evaluations excluded.
        times: this rank's training seconds split into ``compute`` (sampling + gradient;
            the server's updates in async), ``comm`` (exchange, or waiting for messages),
            ``sleep`` (straggler delay) and ``other`` (updates and the loop itself).
        staleness: taus of applied updates (async, rank 0), dropped: updates dropped.
    """

    theta: object
    records: list
    steps: int
    rounds: int
    bytes_per_rank: list
    wall_s: float
    times: dict
    staleness: list = field(default_factory=list)
    dropped: int = 0


class Clock:
    """Training time with evaluation pauses excluded (``time.perf_counter``, seconds)."""

    def __init__(self):
        self.total, self.start = 0.0, time.perf_counter()

    def pause(self) -> float:
        self.total += time.perf_counter() - self.start
        return self.total

    def resume(self) -> None:
        self.start = time.perf_counter()


def make_record(problem: Problem, cfg: SGDConfig, theta, step: int, wall_s: float,
                rounds: int, sent: list, lr: float, staleness: tuple | None = None,
                dropped: int = 0) -> dict:
    """One convergence row (evaluates ``theta``; call on the evaluating rank only).

    ``sent``: bytes sent so far by each rank; ``staleness``: (mean, max) of the applied
    updates' staleness (async) or None.
    """
    loss, test_acc, train_acc = problem.evaluate(theta)
    n = problem.dataset.n_train
    k = 1 if cfg.mode == "async" else len(sent)
    return {
        "mode": cfg.mode, "step": step, "epoch": step * cfg.batch_size * k / n,
        "wall_s": wall_s, "train_loss": loss,
        "gap": None if problem.f_star is None else loss - problem.f_star,
        "test_acc": test_acc, "train_acc": train_acc, "rounds": rounds,
        "bytes_sent_max": int(max(sent)), "bytes_sent_mean": float(np.mean(sent)),
        "staleness_mean": None if staleness is None else float(staleness[0]),
        "staleness_max": None if staleness is None else int(staleness[1]),
        "dropped": dropped if cfg.mode == "async" else None, "lr": lr,
    }


def warm_up(problem: Problem, batch_size: int) -> None:
    """One untimed gradient on the first rows (allocates the model's workspaces and wakes up
    the BLAS) so the first timed steps are not charged for them; leaves every sampler and
    counter untouched."""
    xp, model = problem.xp, problem.model
    b = min(batch_size, problem.dataset.n_train)
    theta = problem.init_params(0)
    model.gradient(theta, problem.X_train[:b], problem.y_train[:b], xp.empty_like(theta))


def gather_sent(comm, mine: int) -> list:
    """Every rank's byte count (collective, on the uncounted communicator)."""
    out = np.zeros(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([mine], dtype=np.int64), out)
    return [int(v) for v in out]
