"""Gradient buckets, as PyTorch DDP forms them (Li et al. 2020, "PyTorch Distributed:
Experiences on Accelerating Data Parallel Training", VLDB, section 3.2.3): the flat gradient
buffer holds the layers in reverse order (the last layer first, since backward produces its
gradient first) and is cut into buckets of ``cap`` bytes; a bucket is ready, and its AllReduce
can start, when the backward of the last layer it covers is done, while the earlier layers'
backward goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class Bucket:
    """Elements ``[lo, hi)`` of the flat gradient buffer (reverse layer order), ready once
    the backward of layer ``ready_after`` (a forward index) is done."""

    lo: int
    hi: int
    ready_after: int

    @property
    def count(self) -> int:
        return self.hi - self.lo


def layer_offsets(layer_elements: list[int]) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each layer (forward order) in the reversed flat buffer."""
    out, off = [None] * len(layer_elements), 0
    for j in reversed(range(len(layer_elements))):
        out[j] = (off, off + layer_elements[j])
        off += layer_elements[j]
    return out


def make_buckets(layer_elements: list[int], cap_elements: int) -> list[Bucket]:
    """Buckets of at most ``cap_elements`` over the reversed buffer of ``layer_elements``
    (forward order), in the order they become ready (the buffer's order). A layer larger than
    the cap spans several buckets; ``cap_elements`` >= the whole buffer gives one bucket.

    Raises:
        ValueError: ``cap_elements`` < 1.
    """
    if cap_elements < 1:
        raise ValueError("a bucket holds at least one element")
    offsets = layer_offsets(layer_elements)
    total = sum(layer_elements)
    out, lo = [], 0
    while lo < total:
        hi = min(total, lo + cap_elements)
        # the last layer (in backward order) touching [lo, hi): the smallest forward index
        ready = min(j for j, (a, b) in enumerate(offsets) if a < hi and b > lo)
        out.append(Bucket(lo, hi, ready))
        lo = hi
    return out


__all__ = ["MIB", "Bucket", "layer_offsets", "make_buckets"]
