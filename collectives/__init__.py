"""The communication kernels: one subpackage per collective type, holding its declaration and
the registry of its algorithms (``COLLECTIVE`` and e.g. ``ALLREDUCE`` in its ``__init__``), and
one module per algorithm (``distbench.collectives.allreduce.ring``, ...).

A collective type is found by its folder: every subpackage here is one, and its command is the
folder's name with ``-`` for ``_`` (``reduce_scatter`` -> ``distbench reduce-scatter``).
Nothing is imported until asked for, so listing the commands stays cheap.

The names users' scripts import: :data:`ALLREDUCE` (name -> function with the AllReduce
signature, built-ins and entry-point plug-ins) and :func:`get_allreduce`; :func:`get_collective`
gives any declaration (:class:`~distbench.collectives.collective.Collective`).
"""

from __future__ import annotations

import importlib
import pkgutil


def collective_names() -> list[str]:
    """The command names of every collective type (``allreduce`` first, then by name)."""
    names = sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if m.ispkg)
    return sorted(names, key=lambda n: n != "allreduce")


def get_collective(name: str):
    """The declaration of collective ``name`` (command name, e.g. ``reduce-scatter``).

    Raises:
        KeyError: no such collective type.
    """
    if name not in collective_names():
        raise KeyError(f"unknown collective {name!r} (choose from "
                       f"{', '.join(collective_names())})")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").COLLECTIVE


def get_allreduce(name: str, **options):
    """The registered AllReduce ``name``, with the keyword ``options`` it accepts bound.

    Options an algorithm does not take are ignored (so a benchmark can pass, e.g.,
    ``ranks_per_node`` to every algorithm and only ``hierarchical`` uses it).

    Raises:
        KeyError: ``name`` is not registered (the message lists the registered names).
    """
    from distbench.collectives.allreduce import ALLREDUCE  # loaded on first use

    return ALLREDUCE.bind(name, **options)


def __getattr__(name: str):
    """``ALLREDUCE`` (the AllReduce registry), loaded on first use."""
    if name == "ALLREDUCE":
        from distbench.collectives.allreduce import ALLREDUCE  # listing commands loads none

        return ALLREDUCE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALLREDUCE", "collective_names", "get_allreduce", "get_collective"]
