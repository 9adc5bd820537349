"""The arguments of the hand-written collectives: each collective's buffer checks and trivial
cases (one rank, no elements), block partitions and copies between arrays of either module.
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.buffers import workspace
from distbench.collectives.ops import in_place, reduce_ufunc
from distbench.runtime import namespace_of


def reduce_input(comm, sendbuf, recvbuf, op):
    """``(reduction ufunc, input)`` of an AllReduce-shaped call (the input ``sendbuf``, or
    ``recvbuf`` in place), or None when there is nothing to communicate (one rank, no
    elements): the input is then copied to ``recvbuf`` already.

    Raises:
        ValueError: ``op`` is not a predefined commutative op (:func:`reduce_ufunc`).
    """
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    src = recvbuf if in_place(sendbuf) else sendbuf
    if comm.Get_size() > 1 and recvbuf.shape[0]:
        return fn, src
    if src is not recvbuf:
        copy_into(recvbuf, src)
    return None


def root_input(comm, sendbuf, recvbuf, op, root: int):
    """The reduction ufunc of a reduce to ``root``, or None when there is nothing to
    communicate (one rank, no elements): the root's ``recvbuf`` then holds ``sendbuf``.

    Raises:
        ValueError: ``op`` is not a predefined commutative op.
    """
    fn = reduce_ufunc(op, namespace_of(sendbuf))
    if comm.Get_size() > 1 and sendbuf.shape[0]:
        return fn
    if comm.Get_rank() == root:
        copy_into(recvbuf, sendbuf)
    return None


def scatter_input(comm, sendbuf, recvbuf, op):
    """``(reduction ufunc, input, m)`` of a reduce-scatter: the p m-element input (``sendbuf``,
    or ``recvbuf`` in place, whose first m elements then receive the result) and the block
    length m; None when there is nothing to communicate (one rank, empty blocks; the result is
    then in place).

    Raises:
        ValueError: the input is not p times the block (in place: not a multiple of p); ``op``
            not a predefined commutative op.
    """
    fn = reduce_ufunc(op, namespace_of(recvbuf))
    p = comm.Get_size()
    src = recvbuf if in_place(sendbuf) else sendbuf
    m = recvbuf.shape[0] // p if src is recvbuf else recvbuf.shape[0]
    if src.shape[0] != p * m:
        raise ValueError(f"reduce-scatter on {p} ranks needs an input of {p} x the block "
                         f"(got {src.shape[0]} elements for blocks of {m})")
    if p > 1 and m:
        return fn, src, m
    if src is not recvbuf:
        copy_into(recvbuf, src)
    return None


def gather_input(comm, sendbuf, recvbuf):
    """``(own block, m)`` of an AllGather: this rank's m elements (``sendbuf``, or its block of
    ``recvbuf`` in place) and m.

    Raises:
        ValueError: ``recvbuf`` is not p times the block.
    """
    p, rank = comm.Get_size(), comm.Get_rank()
    if in_place(sendbuf):
        m = recvbuf.shape[0] // p
        sendbuf = recvbuf[rank * m:(rank + 1) * m]
    m = sendbuf.shape[0]
    if recvbuf.shape[0] != p * m:
        raise ValueError(f"allgather on {p} ranks needs a receive buffer of {p} x the block "
                         f"(got {recvbuf.shape[0]} elements for blocks of {m})")
    return sendbuf, m


def place_own(comm, sendbuf, recvbuf) -> int | None:
    """Check an AllGather's buffers (:func:`gather_input`), copy this rank's block into its
    place in ``recvbuf`` (nothing to do in place) and return the block length m; None when
    there is nothing to communicate (one rank, empty blocks)."""
    own, m = gather_input(comm, sendbuf, recvbuf)
    if not in_place(sendbuf):
        rank = comm.Get_rank()
        copy_into(recvbuf[rank * m:(rank + 1) * m], own)
    return m if comm.Get_size() > 1 and m else None


def exchange_input(comm, sendbuf, recvbuf, copy: bool = True):
    """``(input, m)`` of an all-to-all: the p m-element send buffer and the block length m,
    with this rank's own block already copied into place. In place the blocks to send are in
    ``recvbuf``: with ``copy`` they are first copied to the ``"a2a"`` workspace (for algorithms
    that receive a block before sending the one in its place), else ``recvbuf`` is returned.
    None when there is nothing to communicate (one rank, empty blocks).

    Raises:
        ValueError: the buffers differ in length or are not a multiple of p.
    """
    p, rank = comm.Get_size(), comm.Get_rank()
    src = recvbuf if in_place(sendbuf) else sendbuf
    n = recvbuf.shape[0]
    if src.shape[0] != n or n % p:
        raise ValueError(f"alltoall on {p} ranks needs send and receive buffers of the same "
                         f"multiple of {p} elements (got {src.shape[0]} and {n})")
    m = n // p
    if src is not recvbuf:
        copy_into(recvbuf[rank * m:(rank + 1) * m], src[rank * m:(rank + 1) * m])
    if p == 1 or m == 0:
        return None
    if src is recvbuf and copy:
        src = workspace(recvbuf, n, "a2a")
        copy_into(src, recvbuf)
    return src, m


def block_bounds(count: int, parts: int) -> np.ndarray:
    """Offsets of ``parts`` near-equal contiguous blocks of ``count`` elements.

    Returns an int64 array of length ``parts + 1``; block ``i`` is ``[b[i], b[i+1])``. The first
    ``count % parts`` blocks hold one element more (sizes differ by at most one).
    """
    base, extra = divmod(count, parts)
    sizes = np.full(parts, base, dtype=np.int64)
    sizes[:extra] += 1
    bounds = np.zeros(parts + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    return bounds


@functools.lru_cache(maxsize=256)


def cached_bounds(count: int, parts: int) -> tuple[int, ...]:
    """:func:`block_bounds` as a tuple of ints, memoized: a timed loop calls with the same
    (count, parts) every iteration, and building the NumPy array costs microseconds, as much as
    a small message."""
    return tuple(block_bounds(count, parts).tolist())


def copy_into(dst, src) -> None:
    """``dst[...] = src`` for arrays of either module (both of the same module)."""
    namespace_of(dst).copyto(dst, src)


def pow2_floor(p: int) -> int:
    """The largest power of two <= ``p`` (p >= 1)."""
    return 1 << (p.bit_length() - 1)


__all__ = ["block_bounds", "cached_bounds", "copy_into", "exchange_input", "gather_input",
           "place_own", "pow2_floor", "reduce_input", "root_input", "scatter_input"]
