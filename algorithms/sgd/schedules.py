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

from distbench.declared import arg, check
from distbench.errors import UsageError

SCHEDULES = ("constant", "step", "inverse")
LEARNING_RATE = "Learning rate"


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule (see the module docstring); its options are declared here.

    Attributes:
        lr: base rate eta (> 0).
        schedule: ``constant``, ``step`` or ``inverse``.
        decay_factor: step decay multiplier in (0, 1].
        decay_every: steps between decays (>= 1; None: a third of the run, set per mode).
        t0: 1/t time constant in steps (> 0; None: one epoch, set per mode).
        scale: k, the linear-scaling factor (1 = no scaling; set per mode).
        warmup: warm-up steps (>= 0).
    """

    lr: float = arg(0.1, "Base learning rate.", low=0, low_open=True, high=1e6,
                    group=LEARNING_RATE)
    schedule: str = arg("constant", "constant; step: x decay-factor every decay-every steps; "
                        "inverse: lr t0/(t0+t).", choices=SCHEDULES,
                        flags=("--lr-schedule",), deprecated=("--schedule",),
                        group=LEARNING_RATE)
    decay_factor: float = arg(0.1, "Step decay multiplier.", low=0, high=1, low_open=True,
                              group=LEARNING_RATE)
    decay_every: int | None = arg(None, "Steps between decays [default: steps/3].", type=int,
                                  low=1, high=1 << 40, group=LEARNING_RATE)
    t0: float | None = arg(None, "1/t time constant in steps [default: 1 epoch].", type=float,
                           low=0, low_open=True, group=LEARNING_RATE)
    scale: float = 1.0
    warmup: int = arg(0, "Linear warm-up steps (Goyal et al. 2017).", low=0, high=1 << 40,
                      flags=("--lr-warmup",), deprecated=("--warmup",), group=LEARNING_RATE)

    def __post_init__(self):
        check(self)  # a schedule built in code is checked as the command line's is
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
            return self.peak * self.decay_factor ** (s // (self.decay_every or 1))
        return self.peak * (self.t0 or 1.0) / ((self.t0 or 1.0) + s)
