"""Federated learning over MPI: many simulated clients, client sampling, non-IID partitions,
FedProx, server optimizers, SCAFFOLD, and compressed or differentially private uploads.

* :mod:`.partitions`: how the training set is divided among the clients (:data:`PARTITIONS`:
  ``iid``, ``dirichlet``, ``shards``, ``size-skew``, named as flwr-datasets names them);
* :mod:`.strategy`: what a federated algorithm is (a strategy with lifecycle hooks);
* :mod:`.server`: the algorithms (:data:`ALGORITHMS`: ``fedsgd``, ``fedavg``, ``fedprox``,
  ``fedavgm``, ``fedadam``, ``scaffold``, and ``feddyn`` from :mod:`.feddyn`) and the server's
  side of the uploads;
* :mod:`.client`: a client's data, local training and upload state;
* :mod:`.rounds`: the round loop and its MPI protocol (:func:`run_federated`).

The data, models and f* come from :mod:`distbench.algorithms.sgd` (``Problem``); the uploads'
compressors and error feedback from :mod:`distbench.algorithms.compression`.
"""

from __future__ import annotations

from distbench.algorithms.federated.partitions import PARTITIONS, label_counts, make_partition
from distbench.algorithms.federated.rounds import (
    DIVERGED,
    FedConfig,
    FedDiverged,
    FedResult,
    RoundPlan,
    make_clients,
    plan_round,
    run_federated,
)
from distbench.algorithms.federated.server import ALGORITHMS

__all__ = ["ALGORITHMS", "DIVERGED", "PARTITIONS", "FedConfig", "FedDiverged", "FedResult",
           "RoundPlan", "label_counts", "make_clients", "make_partition", "plan_round",
           "run_federated"]
