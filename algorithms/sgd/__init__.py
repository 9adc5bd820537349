"""SGD over MPI: synchronous, local and asynchronous, with convergence records.

* ``sync`` and ``local``: :mod:`distbench.algorithms.sgd.synchronous`;
* ``async``: a parameter server (:mod:`distbench.algorithms.sgd.parameter_server`);
* shared parts (configuration, problem, sampler, clock, records):
  :mod:`distbench.algorithms.sgd.common`; the exchange: :mod:`.exchange`; models, datasets and
  learning-rate schedules: :mod:`.models`, :mod:`.datasets`, :mod:`.schedules`.

Every mode starts from the same parameters and draws minibatches from the same
:class:`~distbench.algorithms.sgd.common.Sampler` streams, so the modes are compared on the same
data order and seed. Wall time counts training only: evaluations happen with the clock stopped.
``T`` counts parameter updates: synchronous steps, local steps per rank, or updates applied by
the server.
"""

from __future__ import annotations

import numpy as np

from distbench.algorithms.sgd.common import (
    MODES,
    POLICIES,
    Diverged,
    Problem,
    ProblemSpec,
    Sampler,
    SGDConfig,
    SGDResult,
    Targets,
    steps_for_epochs,
)
from distbench.algorithms.sgd.parameter_server import run_async
from distbench.algorithms.sgd.synchronous import run_synchronous


def run_sgd(comm, problem: Problem, cfg: SGDConfig, on_eval=None, on_interval=None
            ) -> SGDResult:
    """Run one mode on every rank of ``comm`` (collective).

    Args:
        comm: mpi4py communicator (uncounted; the exchange wraps its own CountingComm).
        problem: the shared :class:`Problem` (same seed and data on every rank).
        cfg: the :class:`SGDConfig` (what it leaves to the mode and the data is filled in by
            :meth:`SGDConfig.for_mode`).
        on_eval: ``on_eval(record)`` called on rank 0 after each evaluation.
        on_interval: ``on_interval(label, seconds)`` called on every rank when the training
            between two evaluations starts, with the last interval's training seconds (the
            benchmark binds it to its watchdog).

    Raises:
        UsageError: see :meth:`SGDConfig.validate` and :class:`Sampler`.
        Diverged: the loss or the parameters stopped being finite (on every rank alike;
            NumPy's overflow warnings on the way there are silenced).
    """
    cfg = cfg.for_mode(cfg.mode, comm.Get_size(), problem.dataset.n_train)
    cfg.validate(comm.Get_size())
    with np.errstate(over="ignore", invalid="ignore"):
        if cfg.mode == "async":
            return run_async(comm, problem, cfg, on_eval)
        return run_synchronous(comm, problem, cfg, on_eval, on_interval)


__all__ = ["MODES", "POLICIES", "Diverged", "Problem", "ProblemSpec", "Sampler", "SGDConfig",
           "SGDResult", "Targets", "run_sgd", "steps_for_epochs"]
