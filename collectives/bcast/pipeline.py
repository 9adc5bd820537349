"""``pipeline``: a chain root -> root+1 -> ... -> root+p-1 with the message cut into segments
(Open MPI's ``ompi_coll_base_bcast_intra_pipeline``).

Rank v = (rank - root) mod p receives segment j from v - 1 while it forwards segment j - 1 to
v + 1 (one exchange per step); the root only sends, the last rank only receives. After the
pipe fills (p - 1 steps), one segment reaches the last rank per step, so for long messages the
time approaches ``n beta`` whatever p.

Cost (Hockney model, n bytes in s segments of S = n/s bytes, p ranks): ``T = (p - 2 + s)(alpha
+ S beta)`` (Pjesivac-Grbovic, Angskun, Bosilca, Fagg, Gabriel & Dongarra 2007, "Performance
analysis of MPI collective operations", Cluster Computing 10(2), the segmented chain/pipeline
broadcast). With several nodes one link of the chain crosses them, at alpha', beta', and the
pipe goes at the speed of its slowest link.

Bytes sent per rank: ``n`` from every rank but the last of the chain (v = p - 1), which sends
nothing. Option ``segment_bytes`` (``--segment-bytes``) sets S.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.coefficients import broadcast, lock_step
from distbench.collectives.schedule import kernels
from distbench.errors import UsageError
from distbench.registry import Option

TAG = 0x5049  # "PI"
SEGMENT_BYTES = 1 << 17


def _check_segment(value: int) -> None:
    if value < 1:
        raise UsageError(f"--segment-bytes must be >= 1, not {value}")


OPTIONS = (
    Option("segment_bytes", int, None, "Segment size of the pipeline broadcast in bytes "
           f"[default: {SEGMENT_BYTES}].", check=_check_segment),
)


def steps(comm, buf, root: int = 0, *, segment_bytes: int | None = None):
    """Segments of ``segment_bytes`` (default :data:`SEGMENT_BYTES`, at least one element)
    down the chain root, root + 1, ..: receive segment j while forwarding segment j - 1."""
    rank, size = comm.Get_rank(), comm.Get_size()
    count = buf.shape[0]
    seg = max(1, (segment_bytes or SEGMENT_BYTES) // buf.itemsize)
    v = (rank - root) % size
    nxt = (rank + 1) % size if v < size - 1 else None
    prv = (rank - 1) % size if v else None
    for j in range(0, count + seg, seg) if count and size > 1 else ():
        recv = buf[j:j + seg] if prv is not None and j < count else None
        send = buf[j - seg:j] if nxt is not None and j else None
        if send is not None or recv is not None:
            yield (comm, send, nxt, recv, prv, TAG)


bcast, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int, root: int = 0,
               segment_bytes: int | None = None) -> int:
    """The whole message, segment by segment, from every rank but the last of the chain
    (relative rank p - 1)."""
    return count * itemsize if (rank - root) % ranks < ranks - 1 else 0


def cost(nbytes, ranks, ranks_per_node=None, segment_bytes: int | None = None) -> np.ndarray:
    """Pjesivac-Grbovic et al.'s pipeline: p - 2 + s steps of one segment of S bytes; with
    several nodes the chain's slowest link sets the pace."""
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    seg = np.minimum(float(segment_bytes or SEGMENT_BYTES), np.maximum(n, 1.0))
    s = np.ceil(n / seg)
    stages = np.where(p > 1, p - 2 + s, 0)
    return lock_step(stages, stages * seg, 0.0, k < p)
