"""Memory per rank of model states under ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models", SC20, section 5.1, Figure 1) and the
activations a pipeline stage holds.

With Psi parameters on a rank, 16-bit parameters and gradients (``param_bytes`` B = 2 each) and
K = 12 bytes of Adam state per parameter (fp32 master weights, momentum and variance), sharded
over N_d data-parallel ranks:

    stage 0 (plain data parallelism)   (B + B + K) Psi
    stage 1 (optimizer states)         (B + B) Psi + K Psi / N_d
    stage 2 (+ gradients)              B Psi + (B + K) Psi / N_d
    stage 3 (+ parameters)             (B + B + K) Psi / N_d

The paper's numbers are these with B = 2: 16 Psi, 4 Psi + 12 Psi / N_d, 2 Psi + 14 Psi / N_d,
16 Psi / N_d.
"""

from __future__ import annotations

from dataclasses import dataclass

K_ADAM = 12  # bytes per parameter of Adam's state in mixed precision (ZeRO, section 3.1)


def model_state_bytes(psi: float, stage: int, data_ranks: int, param_bytes: int = 2,
                      k: int = K_ADAM) -> float:
    """Bytes of parameters, gradients and optimizer state on one rank (the table above).

    Raises:
        ValueError: a stage other than 0-3.
    """
    b, n = float(param_bytes), float(data_ranks)
    if stage == 0:
        return (b + b + k) * psi
    if stage == 1:
        return (b + b) * psi + k * psi / n
    if stage == 2:
        return b * psi + (b + k) * psi / n
    if stage == 3:
        return (b + b + k) * psi / n
    raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, not {stage}")


@dataclass(frozen=True)
class Memory:
    """One rank's memory in bytes: model states (parameters, gradients, optimizer state) and
    the activations its stage keeps for the backward."""

    params: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


def rank_memory(psi: float, stage: int, data_ranks: int, param_bytes: int,
                activation_bytes: float, k: int = K_ADAM) -> Memory:
    """The split of :func:`model_state_bytes` into its parts, plus ``activation_bytes``."""
    b, n = float(param_bytes), float(data_ranks)
    params = b * psi / (n if stage >= 3 else 1.0)
    grads = b * psi / (n if stage >= 2 else 1.0)
    optimizer = k * psi / (n if stage >= 1 else 1.0)
    return Memory(params, grads, optimizer, activation_bytes)


def in_flight(schedule: str, stage: int, stages: int, micro_batches: int) -> int:
    """Micro-batches whose activations a stage holds at once: all m under GPipe; under 1F1B
    stage s holds at most P - s (Narayanan et al. 2021, section 2.2.1)."""
    if schedule == "gpipe":
        return micro_batches
    return min(micro_batches, stages - stage)


__all__ = ["K_ADAM", "Memory", "in_flight", "model_state_bytes", "rank_memory"]
