"""Pipeline schedules: the order in which a stage runs the forward (F) and backward (B)
passes of the step's micro-batches.

* ``gpipe`` (Huang et al. 2019, "GPipe", section 2.2): every forward, then every backward.
* ``1f1b`` (PipeDream-Flush; Narayanan et al. 2021, section 2.2.1, Figure 4): stage s of P
  first runs ``min(P - s - 1, m)`` forwards (warm-up), then alternates one forward and one
  backward, then runs the remaining backwards (cool-down); at most P - s micro-batches are in
  flight on stage s.

Both have the bubble fraction ``(P - 1) / (m + P - 1)`` of the step when F and B take the
same time on every stage (Narayanan et al. 2021, section 2.2.1).
"""

from __future__ import annotations

SCHEDULES = ("1f1b", "gpipe")


def schedule(kind: str, stage: int, stages: int, micro_batches: int) -> list[tuple[str, int]]:
    """The passes of ``stage`` in order: ``[("F", 0), ("F", 1), ..., ("B", 0), ...]``.

    Raises:
        ValueError: an unknown schedule.
    """
    m = micro_batches
    if kind == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    if kind != "1f1b":
        raise ValueError(f"unknown schedule {kind!r} (choose {', '.join(SCHEDULES)})")
    warm = min(stages - stage - 1, m)
    out = [("F", i) for i in range(warm)]
    for i in range(m - warm):
        out += [("F", warm + i), ("B", i)]
    out += [("B", i) for i in range(m - warm, m)]
    return out


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """The idle share of a step, ``(P - 1) / (m + P - 1)``."""
    return (stages - 1) / (micro_batches + stages - 1)


__all__ = ["SCHEDULES", "bubble_fraction", "schedule"]
