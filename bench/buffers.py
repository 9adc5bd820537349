"""Reusable scratch buffers ("workspaces") for kernels that need temporary memory.

Scratch buffers are cached per (array type, dtype, slot) and grow only, so a timed loop touches
the same already-faulted pages every iteration instead of allocating per call. The collective
kernels and the compressors draw their temporaries from here; the benchmarks call
:func:`clear_workspace` between message sizes.
"""

from __future__ import annotations

from distbench.runtime import namespace_of

_WORKSPACE: dict = {}
GENERATION = [0]  # bumped whenever a workspace is allocated or dropped (persistent requests
                   # built on the old memory are stale then: collectives.schedule)


def workspace_generation() -> int:
    """A number that changes whenever any workspace's memory does (allocated, grown, cleared)."""
    return GENERATION[0]


def workspace(like, count: int, slot: str = "tmp"):
    """A scratch 1-D array of ``count`` elements with ``like``'s dtype and array module.

    Contents are undefined. The same memory is returned for the same slot until a larger
    request grows it. Call :func:`clear_workspace` to release everything.
    """
    key = (type(like), like.dtype, slot)  # the array type tells NumPy from CuPy
    buf = _WORKSPACE.get(key)
    if buf is None or buf.size < count:
        buf = namespace_of(like).empty(max(count, 1), dtype=like.dtype)
        _WORKSPACE[key] = buf
        GENERATION[0] += 1
    return buf[:count]


def clear_workspace() -> None:
    """Drop every cached scratch buffer (the benchmarks call this between message sizes)."""
    _WORKSPACE.clear()
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
