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
from dataclasses import dataclass, field

import numpy as np

from distbench.algorithms.sgd.datasets import PARTITIONS, Dataset, shard_indices
from distbench.algorithms.sgd.models import make_model, optimum
from distbench.algorithms.sgd.schedules import LRSchedule
from distbench.runtime import DistbenchError, UsageError, namespace_of

MODES = ("sync", "local", "async")
POLICIES = ("drop", "block")


@dataclass
class SGDConfig:
    """One mode's run.

    Attributes:
        mode: ``sync``, ``local`` or ``async``.
        steps: T, parameter updates (see the module docstring).
        batch_size: B, samples per minibatch per worker.
        schedule: the learning-rate schedule; its ``scale`` is set per mode when ``scale_lr``.
        scale_lr: linear scaling by the workers averaged per update (p for sync/local, 1 for
            async), Goyal et al. 2017.
        local_steps: H (local mode).
        allreduce, compress, density, bits, error_feedback: the exchange
            (:class:`~distbench.algorithms.sgd.exchange.MeanExchange`); async is dense.
        straggler: rank -> milliseconds that rank sleeps per step (per update at the server).
        eval_every: evaluate every this many updates (local: at the end of the round that
            reaches it); the initial and final parameters are always evaluated.
        max_staleness, policy, staleness_lr: async bounds
            (:mod:`~distbench.algorithms.sgd.parameter_server`).
        partition: ``iid`` or ``label`` sharding.
        seed: seed of the initial parameters, the minibatch order and compressors.
    """

    mode: str = "sync"
    steps: int = 100
    batch_size: int = 32
    schedule: LRSchedule = field(default_factory=LRSchedule)
    scale_lr: bool = False
    local_steps: int = 1
    allreduce: str = "native"
    compress: str = "none"
    density: float = 0.01
    bits: int = 8
    error_feedback: bool | None = None
    straggler: dict = field(default_factory=dict)
    eval_every: int = 10
    max_staleness: int | None = None
    policy: str = "drop"
    staleness_lr: bool = False
    partition: str = "iid"
    seed: int = 0

    def check_options(self) -> None:
        """Checks that need no rank count.

        Raises:
            UsageError: unknown mode/policy/partition, steps/batch/local steps/eval interval
                < 1, negative staleness bound or straggler delay.
        """
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r} (choose {', '.join(MODES)})")
        for name, value in (("--steps", self.steps), ("--batch-size", self.batch_size),
                            ("--local-steps", self.local_steps),
                            ("--eval-every", self.eval_every)):
            if value < 1:
                raise UsageError(f"{name} must be >= 1, not {value}")
        if self.policy not in POLICIES:
            raise UsageError(f"unknown staleness policy {self.policy!r} "
                             f"(choose {', '.join(POLICIES)})")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise UsageError(f"--max-staleness must be >= 0, not {self.max_staleness}")
        if self.partition not in PARTITIONS:
            raise UsageError(f"unknown partition {self.partition!r} "
                             f"(choose {', '.join(PARTITIONS)})")
        if any(ms < 0 for ms in self.straggler.values()):
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
