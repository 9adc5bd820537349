"""The layout of a step's N = D x T x P ranks: data-parallel, tensor-parallel and pipeline
groups, Megatron-LM's order (Shoeybi et al. 2019, section 3; Narayanan et al. 2021,
section 3.3): tensor-parallel ranks are consecutive (inside a node), data-parallel ranks next,
pipeline stages outermost, so rank ``r`` has

    tensor index  t = r mod T
    data index    d = (r // T) mod D
    stage         s = r // (T D)

A tensor group is the T consecutive ranks of one (d, s); a data group the D ranks of one
(t, s), T apart; a pipeline group the P ranks of one (t, d), T D apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distbench.errors import UsageError

_LAYOUT = re.compile(r"(\d+)x(\d+)x(\d+)")


@dataclass(frozen=True)
class Layout:
    """D x T x P: data-parallel, tensor-parallel and pipeline degrees."""

    dp: int = 1
    tp: int = 1
    pp: int = 1

    @classmethod
    def parse(cls, text: str) -> Layout:
        """``"2x2x1"`` (D x T x P) -> Layout(2, 2, 1).

        Raises:
            UsageError: not three positive integers joined by ``x``.
        """
        m = _LAYOUT.fullmatch(text.strip())
        if not m or min(int(g) for g in m.groups()) < 1:
            raise UsageError(f"a layout is DxTxP with positive integers (e.g. 2x2x1), not "
                             f"{text!r}")
        return cls(*(int(g) for g in m.groups()))

    @property
    def ranks(self) -> int:
        return self.dp * self.tp * self.pp

    def __str__(self) -> str:
        return f"{self.dp}x{self.tp}x{self.pp}"

    def indices(self, rank: int) -> tuple[int, int, int]:
        """(data index, tensor index, stage) of ``rank``."""
        return (rank // self.tp) % self.dp, rank % self.tp, rank // (self.tp * self.dp)

    def check(self, ranks: int, heads: int | None, layers: int, ranks_per_node: int | None,
              micro_batches: int, schedule: str) -> None:
        """The layout against the job and the model.

        Raises:
            UsageError: D T P != the rank count; T not dividing the heads or the ranks of a
                node (a tensor group must stay inside one); P not dividing the layers; fewer
                micro-batches than stages for 1F1B.
        """
        if self.ranks != ranks:
            raise UsageError(f"layout {self} needs D x T x P = {self.ranks} ranks, the job has "
                             f"{ranks}")
        if heads is not None and heads % self.tp:
            raise UsageError(f"--tp {self.tp} does not divide the {heads} attention heads")
        if ranks_per_node is not None and ranks_per_node % self.tp:
            raise UsageError(f"--tp {self.tp} does not divide the {ranks_per_node} ranks of a "
                             "node (a tensor-parallel group must stay inside one)")
        if layers % self.pp:
            raise UsageError(f"--pp {self.pp} does not divide the {layers} layers")
        if schedule == "1f1b" and micro_batches < self.pp:
            raise UsageError(f"1F1B needs at least as many micro-batches as stages: "
                             f"--micro-batches {micro_batches} < --pp {self.pp}")

    def groups(self, comm):
        """(data, tensor, pipeline) communicators of this rank, by ``Split`` (collective);
        each ordered by the index along its dimension. The caller frees them."""
        rank = comm.Get_rank()
        d, t, s = self.indices(rank)
        data = comm.Split(s * self.tp + t, d)
        tensor = comm.Split(self.ranks + s * self.dp + d, t)
        pipe = comm.Split(2 * self.ranks + d * self.tp + t, s)
        return data, tensor, pipe


ALL_LAYOUTS_MAX = 1 << 20  # --layouts all enumerates the divisors of p: bounded to stay fast


def divisors(p: int) -> list[int]:
    """The divisors of ``p`` in increasing order (trial division up to sqrt p)."""
    small, large, d = [], [], 1
    while d * d <= p:
        if p % d == 0:
            small.append(d)
            if d * d != p:
                large.append(p // d)
        d += 1
    return small + large[::-1]


def all_layouts(p: int) -> list[Layout]:
    """Every D x T x P layout of ``p`` ranks, by T then P.

    Raises:
        UsageError: p above :data:`ALL_LAYOUTS_MAX` (the enumeration would not finish in a
            second; name the layouts instead).
    """
    if p > ALL_LAYOUTS_MAX:
        raise UsageError(f"--layouts all enumerates the layouts of at most {ALL_LAYOUTS_MAX} "
                         f"ranks, not {p}; give --layouts DxTxP,...")
    return [Layout(p // (t * q), t, q) for t in divisors(p) for q in divisors(p // t)]



__all__ = ["Layout", "ALL_LAYOUTS_MAX", "all_layouts", "divisors"]
