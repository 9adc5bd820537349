"""Pieces the hand-written collectives share: the reduction ufunc of an MPI op, the in-place
sentinel, the checks and trivial cases of each collective's buffers, block partitions and
copies (the cost formulas' shared parts are in :mod:`distbench.collectives.costs`).

The reduction op of every kernel is an ``mpi4py.MPI.Op`` or None for ``MPI.SUM``: the common
case needs no MPI lookup on the hot path, and no module imports mpi4py at import time. A kernel
whose collective has an in-place form takes ``sendbuf = mpi4py.MPI.IN_PLACE`` for it, as MPI
does (:func:`in_place`).
"""

from __future__ import annotations

import functools

import numpy as np

from distbench.buffers import workspace
from distbench.runtime import mpi, namespace_of

# --op names -> MPI op names; the bitwise ones are defined for integer types only (MPI-4.1,
# section 6.9.2), like MPI's own.
OPS = {"sum": "SUM", "prod": "PROD", "min": "MIN", "max": "MAX", "band": "BAND", "bor": "BOR",
       "bxor": "BXOR"}
INTEGER_OPS = ("band", "bor", "bxor")


def mpi_op(name: str):
    """The ``mpi4py.MPI.Op`` of an ``--op`` name; None for ``"sum"`` (the kernels' default).

    Raises:
        KeyError: not one of :data:`OPS`.
    """
    return None if name == "sum" else getattr(mpi(), OPS[name])


@functools.cache
def in_place_sentinel():
    """``mpi4py.MPI.IN_PLACE``, looked up once."""
    return mpi().IN_PLACE


def in_place(sendbuf) -> bool:
    """Whether a kernel was called in place (``sendbuf`` is ``MPI.IN_PLACE``)."""
    return sendbuf is in_place_sentinel()


def reduce_ufunc(op, xp):
    """The elementwise ufunc of ``xp`` for MPI reduction ``op`` (None or SUM, PROD, MAX, MIN,
    BAND, BOR, BXOR).

    Called as ``fn(a, b, out=c)``. For a device module (CuPy) the returned function also waits
    for the current stream: kernels are queued asynchronously, and a GPU-aware MPI call that
    sends ``c`` right after would otherwise read it before the kernel has written it.

    Raises:
        ValueError: any other op (the hand-written algorithms reduce commutative predefined
            ops only).
    """
    if op is None and xp is np:  # the common case first: every call
        return np.add
    MPI = mpi()
    for key, name in ((MPI.SUM, "add"), (MPI.PROD, "multiply"), (MPI.MAX, "maximum"),
                      (MPI.MIN, "minimum"), (MPI.BAND, "bitwise_and"), (MPI.BOR, "bitwise_or"),
                      (MPI.BXOR, "bitwise_xor")):
        if op is None and key == MPI.SUM or op == key:
            fn = getattr(xp, name)
            return fn if xp is np else _synchronized(fn, xp)
    raise ValueError(f"unsupported reduction op {op!r}: use SUM, PROD, MAX, MIN, BAND, BOR or "
                     "BXOR")


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


def _synchronized(fn, xp):
    """``fn(a, b, out=c)`` followed by a wait for ``xp``'s current CUDA stream."""

    def reduce_and_wait(a, b, out):
        fn(a, b, out=out)
        xp.cuda.get_current_stream().synchronize()

    return reduce_and_wait


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


@functools.cache
def sum_op():
    """``mpi4py.MPI.SUM``, looked up once (the library calls' default op)."""
    return mpi().SUM


def library_algorithm(method: str, shape: str, package: str, candidates: tuple):
    """``(kernel, start, cost)`` of an MPI library call, the baseline ``native`` entry of a
    collective's registry.

    Args:
        method: the mpi4py method, e.g. ``"Allgather"``; ``start`` calls its nonblocking
            form (``Iallgather``) and returns its ``MPI.Request``.
        shape: the kernel's arguments: ``"buffers"`` ``(comm, sendbuf, recvbuf)``,
            ``"reduction"`` ``(comm, sendbuf, recvbuf, op=None)``, ``"root"`` ``(comm, buf,
            root=0)`` or ``"rooted reduction"`` ``(comm, sendbuf, recvbuf, op=None, root=0)``;
            op None is SUM. Buffers go to the library as they are (``MPI.IN_PLACE`` too).
        package: the collective's package, whose ``COLLECTIVE.registry`` holds ``candidates``.
        candidates: the textbook algorithms the library is taken to select among: ``cost`` is
            their coefficients stacked (the model takes the cheapest).
    """
    def make(name):
        if shape == "buffers":
            def call(comm, sendbuf, recvbuf):
                return getattr(comm, name)(sendbuf, recvbuf)
        elif shape == "reduction":
            def call(comm, sendbuf, recvbuf, op=None):
                if op is None:  # mpi4py's default op is SUM: one lookup less per call
                    return getattr(comm, name)(sendbuf, recvbuf)
                return getattr(comm, name)(sendbuf, recvbuf, op)
        elif shape == "root":
            def call(comm, buf, root: int = 0):
                return getattr(comm, name)(buf, root)
        else:
            def call(comm, sendbuf, recvbuf, op=None, root: int = 0):
                return getattr(comm, name)(sendbuf, recvbuf, op or sum_op(), root)
        call.__name__ = call.__qualname__ = name.lower()
        call.library_call = (name, shape)  # Collective.invoke binds the method itself
        call.__doc__ = f"``comm.{name}`` of the MPI library (buffer API)."
        return call

    def cost(nbytes, ranks, ranks_per_node=None) -> np.ndarray:
        import importlib

        from distbench.collectives.costs import cheapest_of

        registry = importlib.import_module(package).COLLECTIVE.registry
        return cheapest_of(registry, candidates, nbytes, ranks, ranks_per_node)

    cost.__doc__ = (f"The library is taken to pick the cheapest of {', '.join(candidates)} "
                    "(their coefficients, stacked).")
    return make(method), make("I" + method[0].lower() + method[1:]), cost
