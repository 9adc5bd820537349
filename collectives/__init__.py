"""The AllReduce registry: name -> function, iterated by the harness, the tests and SGD.

Every entry has the signature ``allreduce(comm, sendbuf, recvbuf, op=MPI.SUM) -> None`` with MPI
semantics (DESIGN.md section 2): ``recvbuf`` receives the elementwise reduction over ranks,
``sendbuf`` is untouched, any element count >= 0 and any rank count >= 1. Buffers are contiguous
1-D NumPy or CuPy arrays of equal length and dtype.
"""

from __future__ import annotations

import functools
import inspect

from distbench.collectives import (
    hierarchical,
    naive,
    native,
    rabenseifner,
    recursive_doubling,
    ring,
    tree,
)

ALLREDUCE = {
    "native": native.allreduce,
    "naive": naive.allreduce,
    "ring": ring.allreduce,
    "tree": tree.allreduce,
    "recursive_doubling": recursive_doubling.allreduce,
    "rabenseifner": rabenseifner.allreduce,
    "hierarchical": hierarchical.allreduce,
}

BASELINE = "native"


def get_allreduce(name: str, **options):
    """The registered algorithm ``name``, with the keyword ``options`` it accepts bound.

    Options an algorithm does not take are ignored (so the harness can pass, e.g.,
    ``ranks_per_node`` to every algorithm and only ``hierarchical`` uses it).

    Raises:
        KeyError: ``name`` is not registered (the message lists the registered names).
    """
    try:
        fn = ALLREDUCE[name]
    except KeyError:
        raise KeyError(
            f"unknown algorithm {name!r} (choose from {', '.join(ALLREDUCE)})"
        ) from None
    params = inspect.signature(fn).parameters
    bound = {k: v for k, v in options.items() if k in params and v is not None}
    return functools.partial(fn, **bound) if bound else fn
