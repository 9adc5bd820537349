"""Reusable scratch buffers ("workspaces") for kernels that need temporary memory.

Scratch buffers are cached per (array type, dtype, slot) and grow only, so a timed loop touches
the same already-faulted pages every iteration instead of allocating per call. The collective
kernels and the compressors draw their temporaries from here; the benchmarks call
:func:`clear_workspace` between message sizes.

A nonblocking collective in flight keeps its scratch across its steps while the rank calls
other collectives (a training step's tensor-parallel AllReduces while a gradient bucket's
ring is in flight), so each one draws from a private pool instead (:class:`PrivatePool`,
which :class:`~distbench.collectives.schedule.Schedule` enters around its local work); a
finished collective's pool is kept for the next, so steady state allocates nothing.
"""

from __future__ import annotations

from distbench.runtime import namespace_of

_WORKSPACE: dict = {}
_ACTIVE: list = []   # the private pools entered, innermost last
_SPARE: list = []    # pools of finished collectives, for the next ones
# Read by collectives.schedule's hot paths, never written there:
ACTIVE_POOLS = _ACTIVE  # non-empty while a PrivatePool is entered (a nonblocking collective's
                        # local work): no persistent plan may be recorded or replayed then
GENERATION = [0]  # bumped whenever a shared workspace is allocated or dropped (persistent
                  # requests built on the old memory are stale then)


def workspace(like, count: int, slot: str = "tmp"):
    """A scratch 1-D array of ``count`` elements with ``like``'s dtype and array module.

    Contents are undefined. The same memory is returned for the same slot until a larger
    request grows it (inside a :class:`PrivatePool`: that pool's). Call
    :func:`clear_workspace` to release everything.
    """
    cache = _ACTIVE[-1].buffers if _ACTIVE else _WORKSPACE
    key = (type(like), like.dtype, slot)  # the array type tells NumPy from CuPy
    buf = cache.get(key)
    if buf is None or buf.size < count:
        buf = namespace_of(like).empty(max(count, 1), dtype=like.dtype)
        cache[key] = buf
        if cache is _WORKSPACE:
            GENERATION[0] += 1
    return buf[:count]


class PrivatePool:
    """Scratch buffers of one nonblocking collective in flight: :func:`workspace` draws from
    them between :meth:`enter` and :meth:`leave`; :meth:`release` hands them to the next
    collective once this one is done (the buffers are then reused, not freed)."""

    __slots__ = ("buffers",)

    def __init__(self):
        self.buffers: dict = _SPARE.pop() if _SPARE else {}

    def enter(self) -> None:
        _ACTIVE.append(self)

    def leave(self) -> None:
        _ACTIVE.remove(self)

    def release(self) -> None:
        if self.buffers is not None:
            _SPARE.append(self.buffers)
            self.buffers = None


def clear_workspace() -> None:
    """Drop every cached scratch buffer (the benchmarks call this between message sizes)."""
    _WORKSPACE.clear()
    _SPARE.clear()
    GENERATION[0] += 1


_CACHES: list = []


def register_cache(release) -> None:
    """Register ``release()``, which frees a module's cached per-communicator state (split
    communicators, ...); :func:`release_caches` calls every registered one."""
    if release not in _CACHES:
        _CACHES.append(release)


def release_caches() -> None:
    """Drop every scratch buffer and release every registered cache (collective when a cache
    holds communicators: every rank calls it at the same point, e.g. the end of a sweep)."""
    clear_workspace()
    for release in _CACHES:
        release()
