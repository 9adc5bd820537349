"""Learning-rate schedules: constant, step decay and 1/t, with linear scaling and warm-up.

``lr(t)`` for step t = 0, 1, 2, ... (t counts parameter updates: synchronous steps, local steps
or updates applied at the parameter server):

* ``constant``: eta;
* ``step``: eta * factor ** floor(t / every) (step decay, He et al. 2016);
* ``inverse``: eta * t0 / (t0 + t), the 1/t decay of SGD theory (Robbins & Monro 1951;
  Bottou, Curtis & Nocedal 2018, theorem 4.7).

Linear scaling (Goyal et al. 2017, section 2.1): with k workers averaging their minibatch
gradients, the base rate becomes k * eta. Gradual warm-up (Goyal et al. 2017, section 2.2):
during the first ``warmup`` steps the rate rises linearly, from eta to k * eta when scaling
(their recipe), and from eta / warmup to eta otherwise; the schedule above then applies to the
(scaled) base rate, its step counter starting after the warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from distbench.runtime import UsageError

SCHEDULES = ("constant", "step", "inverse")


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule (see the module docstring).

    Attributes:
        lr: base rate eta (> 0).
        schedule: ``constant``, ``step`` or ``inverse``.
        decay_factor: step decay multiplier in (0, 1].
        decay_every: steps between decays (>= 1).
        t0: 1/t time constant in steps (> 0).
        scale: k, the linear-scaling factor (1 = no scaling).
        warmup: warm-up steps (>= 0).
    """

    lr: float = 0.1
    schedule: str = "constant"
    decay_factor: float = 0.1
    decay_every: int = 1000
    t0: float = 1000.0
    scale: float = 1.0
    warmup: int = 0

    def __post_init__(self):
        if not self.lr > 0:
            raise UsageError(f"--lr must be > 0, not {self.lr}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r} "
                             f"(choose {', '.join(SCHEDULES)})")
        if not 0 < self.decay_factor <= 1:
            raise UsageError(f"--decay-factor must be in (0, 1], not {self.decay_factor}")
        if self.decay_every < 1:
            raise UsageError(f"--decay-every must be >= 1, not {self.decay_every}")
        if not self.t0 > 0:
            raise UsageError(f"--t0 must be > 0, not {self.t0}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be >= 0, not {self.warmup}")
        if not self.scale >= 1:
            raise UsageError(f"linear-scaling factor must be >= 1, not {self.scale}")

    @property
    def is_constant(self) -> bool:
        """True when every step has the same rate (constant schedule, no warm-up)."""
        return self.schedule == "constant" and self.warmup == 0

    @property
    def peak(self) -> float:
        """The rate reached after warm-up: k * eta."""
        return self.lr * self.scale

    def __call__(self, t: int) -> float:
        """The learning rate of step ``t`` (float)."""
        if t < self.warmup:
            if self.scale > 1:
                return self.lr + (self.peak - self.lr) * t / self.warmup
            return self.peak * (t + 1) / self.warmup
        s = t - self.warmup
        if self.schedule == "constant":
            return self.peak
        if self.schedule == "step":
            return self.peak * self.decay_factor ** (s // self.decay_every)
        return self.peak * self.t0 / (self.t0 + s)
