"""Communication patterns several collectives are built from, as schedule steps
(:mod:`distbench.collectives.schedule`): binomial trees, MPICH's non-power-of-two fold, ring
reduce-scatter and allgather, recursive halving and doubling, binomial scatter and gather;
and the byte counts of each, from which the algorithms' ``bytes_sent`` formulas are written.

Every generator here is used with ``yield from`` inside an algorithm's schedule; those that
produce a value (the array holding a partial result, a rank in the power-of-two group) return
it. Ranks are *relative*: a pattern rooted at ``root`` works on ``v = (rank - offset) mod p``
and talks to ``(v' + offset) mod p`` (``offset`` = root for the trees).

Sources: Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1) (binomial trees, recursive halving/doubling, the fold of
section 4, the binomial scatter of the long-message broadcast); Patarasuk & Yuan 2009, JPDC
69(2) (the ring).
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.inputs import pow2_floor
from distbench.runtime import mpi

# Ring reduce-scatter messages inside a node are cut into segments of this many bytes, so each
# received segment is still in cache when it is added (measured here, 2 ranks: 1 MiB segments
# are 20-25 % faster than whole blocks at 16-64 MiB; 256 KiB and 4 MiB are in between).
SEGMENT_BYTES = 1 << 20

_SPANS_NODES: dict = {}


def spans_nodes(comm) -> bool:
    """Whether ``comm``'s ranks are on more than one node (``COMM_TYPE_SHARED``), cached per
    communicator (the first call is collective)."""
    hit = _SPANS_NODES.get(id(comm))
    if hit is None or hit[0] is not comm:
        local = comm.Split_type(mpi().COMM_TYPE_SHARED)
        hit = (comm, local.Get_size() != comm.Get_size())
        local.Free()
        _SPANS_NODES[id(comm)] = hit  # holds comm, so its id is not reused while cached
    return hit[1]


def ring_segment(comm, bounds, itemsize: int) -> int:
    """Elements per ring reduce-scatter message: :data:`SEGMENT_BYTES` inside one node, whole
    blocks on a communicator that spans nodes (over TCP a chain of blocking 1 MiB exchanges
    runs at about half the link rate, one message per step at the full rate)."""
    return bounds[1] if spans_nodes(comm) else max(1, SEGMENT_BYTES // itemsize)


def ring_segments_alpha(n, p):
    """The extra latencies of :func:`ring_segment` inside a node: (p-1)(ceil(b / SEGMENT_BYTES)
    - 1), b = ceil(n / p) bytes (vectorized; for the cost formulas)."""
    return (p - 1) * np.maximum(np.ceil(np.ceil(n / p) / SEGMENT_BYTES) - 1, 0)


def lowbit(v: int, size: int) -> int:
    """The lowest set bit of relative rank ``v`` (``size``'s next power of two for v = 0)."""
    return v & -v if v else 1 << (size - 1).bit_length()


def binomial_children(v: int, size: int) -> int:
    """Children of relative rank ``v`` in the binomial tree rooted at 0: v + 2^k for every
    2^k < lowbit(v) with v + 2^k < size."""
    low = lowbit(v, size)
    return sum(1 for k in range(size.bit_length()) if (1 << k) < low and v + (1 << k) < size)


def binomial_reduce(comm, src, out, fn, tag: int, root: int = 0):
    """Binomial-tree reduce of ``src`` to ``root`` (MPICH's ``MPIR_Reduce_intra_binomial``).

    In round k a rank whose relative rank has lowest set bit 2^k sends its partial result to
    v - 2^k and leaves; one with bit k clear receives from v + 2^k (if it exists) into the
    ``"tmp"`` workspace and reduces into ``out`` (same length as ``src``; may alias it).

    Returns (through ``yield from``): the array holding this rank's partial result when done:
    ``out`` if it received anything, else ``src`` itself (a leaf never copies); on the root,
    the full reduction.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    v = (rank - root) % size
    acc, mask = src, 1
    while mask < size:
        if v & mask:
            yield (comm, acc, (v - mask + root) % size, None, 0, tag)
            break
        if v + mask < size:
            tmp = workspace(out, out.shape[0])
            yield (comm, None, 0, tmp, (v + mask + root) % size, tag)
            fn(acc, tmp, out=out)
            acc = out
        mask <<= 1
    return acc


def binomial_bcast(comm, buf, tag: int, root: int = 0):
    """Binomial-tree broadcast of ``buf`` from ``root`` (``MPIR_Bcast_intra_binomial``): v
    receives from v - lowbit(v), then sends to v + 2^k for 2^k < lowbit(v), largest first."""
    rank, size = comm.Get_rank(), comm.Get_size()
    v = (rank - root) % size
    mask = lowbit(v, size)
    if v:
        yield (comm, None, 0, buf, (v - mask + root) % size, tag)
    mask >>= 1
    while mask > 0:
        if v + mask < size:
            yield (comm, buf, (v + mask + root) % size, None, 0, tag)
        mask >>= 1


def binomial_scatter(comm, buf, bounds, tag: int, root: int = 0):
    """Binomial scatter of the blocks of ``buf`` from ``root`` (MPICH's
    ``scatter_for_bcast``): block ``j`` is ``buf[bounds[j]:bounds[j+1]]`` and belongs to
    relative rank j; v receives the blocks of its subtree [v, v + lowbit(v)) from its parent and
    sends [v + 2^k, v + 2^(k+1)) to each child v + 2^k."""
    rank, size = comm.Get_rank(), comm.Get_size()
    v = (rank - root) % size
    mask = lowbit(v, size)
    if v:
        yield (comm, None, 0, buf[bounds[v]:bounds[min(v + mask, size)]],
               (v - mask + root) % size, tag)
    mask >>= 1
    while mask > 0:
        if v + mask < size:
            yield (comm, buf[bounds[v + mask]:bounds[min(v + 2 * mask, size)]],
                   (v + mask + root) % size, None, 0, tag)
        mask >>= 1


def scatter_bytes(v: int, size: int, bounds) -> int:
    """Elements :func:`binomial_scatter` sends from relative rank ``v``."""
    mask, sent = lowbit(v, size) >> 1, 0
    while mask > 0:
        if v + mask < size:
            sent += bounds[min(v + 2 * mask, size)] - bounds[v + mask]
        mask >>= 1
    return sent


# ---------------------------------------------------------------------------- the ring

def ring_reduce_scatter(comm, src, bounds, own: int, out, fn, tag: int, seg: int):
    """p - 1 ring steps after which ``out`` holds the reduction of block ``own`` (Patarasuk &
    Yuan's reduce-scatter phase).

    Rank r sends to r + 1 and receives from r - 1. In step s it forwards its partial result of
    block own - 1 - s (its own contribution, read from ``src``, at s = 0), receives the partial
    of block own - 2 - s into the ``"tmp"`` workspace and adds its own contribution; partials go
    to the ``"acc"`` workspace (one block), the last one to ``out``. Messages are cut into
    segments of ``seg`` elements, the same number for every block (from the largest, block 0).
    ``src`` may alias the buffer ``out`` lies in (in place): each block of ``src`` is read before
    ``out`` is written, and ``out`` is written last.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    nseg = -(-bounds[1] // seg) if bounds[1] else 1
    tmp = workspace(out, min(seg, bounds[1]))
    acc = workspace(out, bounds[1], "acc") if size > 2 else None
    sending = src[bounds[(own - 1) % size]:bounds[(own - 1) % size + 1]]
    for step in range(size - 1):
        blk = (own - 2 - step) % size
        lo, hi = bounds[blk], bounds[blk + 1]
        dst = out if step == size - 2 else acc[: hi - lo]
        for j in range(0, nseg * seg, seg):
            part = tmp[: max(0, min(hi - lo - j, seg))]
            yield (comm, sending[j:j + seg], right, part, left, tag)
            fn(src[lo + j:lo + j + part.shape[0]], part, out=dst[j:j + part.shape[0]])
        sending = dst


def ring_allgather(comm, buf, bounds, own: int, tag: int, first=None):
    """p - 1 ring steps that circulate the blocks of ``buf``: rank r holds block ``own`` and in
    step s sends block own - s to r + 1 and receives block own - s - 1 from r - 1, in place.
    ``first``: the array step 0 sends instead of block ``own`` of ``buf`` (an AllGather's send
    buffer: the block just copied into ``buf`` is still dirty in this core's cache, and the
    peer reading it from there costs more than reading the clean original)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    for step in range(size - 1):
        s, r = (own - step) % size, (own - step - 1) % size
        out = first if step == 0 and first is not None else buf[bounds[s]:bounds[s + 1]]
        yield (comm, out, right, buf[bounds[r]:bounds[r + 1]], left, tag)


def ring_bytes(bounds, size: int, skip: int) -> int:
    """Elements a ring phase sends: every block but ``skip`` (mod ``size``)."""
    return bounds[size] - bounds[0] - (bounds[skip % size + 1] - bounds[skip % size])


# ---------------------------------------------------------------------------- the fold

def real_rank(newrank: int, rem: int) -> int:
    """The relative rank of power-of-two group member ``newrank`` (see :func:`fold_in`)."""
    return newrank * 2 + 1 if newrank < rem else newrank + rem


def group_rank(v: int, size: int) -> int:
    """Relative rank ``v``'s rank in the power-of-two group; -1 for an even v < 2r."""
    rem = size - pow2_floor(size)
    if v >= 2 * rem:
        return v - rem
    return v // 2 if v % 2 else -1


@functools.lru_cache(maxsize=256)
def group_bounds(m: int, ranks: int) -> tuple[int, ...]:
    """Element offsets of the p' groups of blocks of m elements the fold leaves: group q < r
    holds blocks 2q and 2q+1 (the pair that folded into one), group q >= r block q + r
    (r = p - p'); p' + 1 entries."""
    rem = ranks - pow2_floor(ranks)
    starts = [(2 * q if q < rem else q + rem) * m for q in range(pow2_floor(ranks))]
    return (*starts, ranks * m)


def fold_in(comm, src, out, fn, tag: int, offset: int = 0, lo: int = 0, hi: int | None = None):
    """MPICH's non-power-of-two pre-step (Thakur, Rabenseifner & Gropp 2005, section 4): of
    the first 2r relative ranks (r = p - p', p' = 2^floor(lg p)), each even one sends
    ``src[lo:hi]`` to the odd one above and sits out; the odd one reduces it into ``out[lo:hi]``.

    Returns (through ``yield from``): ``(newrank, acc)``, the rank in the power-of-two group
    (-1 for a rank that sat out) and the array now holding this rank's partial result
    (``out`` where it reduced, ``src`` elsewhere).
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    v = (rank - offset) % size
    newrank = group_rank(v, size)
    if v >= 2 * (size - pow2_floor(size)):
        return newrank, src
    hi = src.shape[0] if hi is None else hi
    if newrank < 0:
        yield (comm, src[lo:hi], (v + 1 + offset) % size, None, 0, tag)
        return newrank, src
    tmp = workspace(out, hi - lo)
    yield (comm, None, 0, tmp, (v - 1 + offset) % size, tag)
    fn(src[lo:hi], tmp, out=out[lo:hi])
    return newrank, out


def fold_out(comm, sendbuf, recvbuf, tag: int, offset: int = 0):
    """MPICH's non-power-of-two post-step: each odd relative rank < 2r sends ``sendbuf`` to the
    even one below, which receives it into ``recvbuf``."""
    rank, size = comm.Get_rank(), comm.Get_size()
    v = (rank - offset) % size
    if v < 2 * (size - pow2_floor(size)):
        if v % 2:
            yield (comm, sendbuf, (v - 1 + offset) % size, None, 0, tag)
        else:
            yield (comm, None, 0, recvbuf, (v + 1 + offset) % size, tag)


# ------------------------------------------------------------- recursive halving and doubling

def halving(comm, acc, out, bounds, newrank: int, fn, tag: int, offset: int = 0):
    """Recursive-halving reduce-scatter on the p' ranks of the power-of-two group: at distance
    d = p'/2, ..., 1, group rank q exchanges with q XOR d, keeps the half of its block range
    that holds block q, sends the other half (of ``acc``) and reduces the half it receives into
    ``out``. ``bounds`` has p' + 1 entries (group block q is ``[bounds[q], bounds[q+1])``).

    Returns (through ``yield from``): the array holding block q reduced over the group
    (``out``; ``acc`` when p' = 1).
    """
    pof2 = len(bounds) - 1
    size = comm.Get_size()
    rem = size - pof2
    tmp = workspace(out, max(bounds[pof2 // 2] - bounds[0], bounds[pof2] - bounds[pof2 // 2]))
    lo, hi, dist = 0, pof2, pof2 >> 1
    while dist:
        partner = (real_rank(newrank ^ dist, rem) + offset) % size
        mid = lo + dist
        keep, give = ((lo, mid), (mid, hi)) if newrank < mid else ((mid, hi), (lo, mid))
        k0, k1 = bounds[keep[0]], bounds[keep[1]]
        part = tmp[: k1 - k0]
        yield (comm, acc[bounds[give[0]]:bounds[give[1]]], partner, part, partner, tag)
        fn(acc[k0:k1], part, out=out[k0:k1])
        acc = out
        (lo, hi), dist = keep, dist >> 1
    return acc


def halving_bytes(q: int, bounds) -> int:
    """Elements :func:`halving` sends from group rank ``q``: everything but its own block."""
    pof2 = len(bounds) - 1
    return bounds[pof2] - bounds[0] - (bounds[q + 1] - bounds[q])


def doubling(comm, buf, bounds, newrank: int, tag: int, offset: int = 0, first=None):
    """Recursive-doubling allgather on the power-of-two group: at distance d = 1, 2, ..,
    p'/2 partners q, q XOR d swap their finished aligned groups of d blocks of ``buf``.
    ``first``: the array the first step sends instead of group block q (as for
    :func:`ring_allgather`)."""
    pof2 = len(bounds) - 1
    size = comm.Get_size()
    rem, dist = size - pof2, 1
    while dist < pof2:
        partner = (real_rank(newrank ^ dist, rem) + offset) % size
        mine = newrank & ~(dist - 1)
        theirs = mine ^ dist
        out = first if dist == 1 and first is not None else buf[bounds[mine]:bounds[mine + dist]]
        yield (comm, out, partner, buf[bounds[theirs]:bounds[theirs + dist]], partner, tag)
        dist <<= 1


def doubling_bytes(q: int, bounds) -> int:
    """Elements :func:`doubling` sends from group rank ``q``: its aligned groups of 1, 2, ..,
    p'/2 blocks."""
    pof2, sent, d = len(bounds) - 1, 0, 1
    while d < pof2:
        lo = q - q % d
        sent += bounds[lo + d] - bounds[lo]
        d *= 2
    return sent


def binomial_gather(comm, buf, bounds, newrank: int, tag: int, offset: int = 0):
    """Gather the blocks of the power-of-two group to group rank 0 (the reverse of recursive
    halving): at distance d = 1, 2, .., a rank q with bit d set sends its blocks [q, q + d) to
    q - d and leaves; the others receive [q + d, q + 2d)."""
    pof2 = len(bounds) - 1
    size = comm.Get_size()
    rem, dist = size - pof2, 1
    while dist < pof2:
        if newrank & dist:
            yield (comm, buf[bounds[newrank]:bounds[newrank + dist]],
                   (real_rank(newrank - dist, rem) + offset) % size, None, 0, tag)
            return
        yield (comm, None, 0, buf[bounds[newrank + dist]:bounds[newrank + 2 * dist]],
               (real_rank(newrank + dist, rem) + offset) % size, tag)
        dist <<= 1


def gather_bytes(q: int, bounds) -> int:
    """Elements :func:`binomial_gather` sends from group rank ``q`` (none from 0)."""
    if q == 0:
        return 0
    d = q & -q
    return bounds[q + d] - bounds[q]
