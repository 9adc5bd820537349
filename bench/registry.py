"""Registries of named plug-ins: the algorithms of each collective and the gradient compressors.

One idiom serves every registry (:class:`Registry`):

* built-ins are given as ``name -> object`` (a function, a class, or an :class:`Algorithm`
  declaring a function together with its cost formula, byte formula and options);
* third-party objects arrive through Python entry points (``importlib.metadata``), in the
  registry's group (``distbench.allreduce``, ``distbench.compressors``, ...), discovered once, on
  first use. A plug-in that fails to import is a one-line warning naming it and the run goes on;
  one whose name clashes with a built-in is a :class:`~distbench.runtime.UsageError`;
* options are bound by signature: :meth:`Registry.bind` passes a function only the keyword
  options its signature names (and which are not None), :meth:`Registry.create` does the same
  for a class's constructor. An algorithm's options are thereby declared next to it, and the
  options actually bound are what records carry (:meth:`Registry.bound_options`);
* :meth:`Registry.require` is the one check of user-given names (``--algo``, ``--method``, ...).

A registry is a read-only mapping ``name -> object`` (the function or class itself), so
``ALLREDUCE["ring"](comm, send, recv)`` works as a plain dict would.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from distbench.errors import UsageError, eprint
from distbench.launcher import launcher_rank


@dataclass(frozen=True)
class Option:
    """One option, declared once: an algorithm's (next to it), a compressor's, or a field of a
    command's configuration (:func:`distbench.options.arg`); :mod:`distbench.options` turns it
    into a click option and builds configurations from the parsed values by keyword.

    Attributes:
        name: the keyword argument's (or field's) name (``ranks_per_node``); the flag is
            ``--ranks-per-node`` unless ``flags`` says otherwise.
        type: ``int``, ``float``, ``str`` or ``bool`` (a flag), or a click parameter type.
        default: the value when the user gives none (None: the algorithm's own default).
        help: one line for ``--help``.
        check: ``check(value)`` raises UsageError for a value that is never valid (a
            :class:`Range` for numbers: the command line refuses it while parsing).
        check_size: ``check_size(value, ranks)`` raises UsageError for a value that does not fit
            the communicator's size (run on every rank before the job).
        flags: the spellings on the command line (``("-b", "--min-bytes")``); empty: the
            name's.
        choices: the values allowed (a click choice), or None.
        negatable: a boolean with a ``--no-`` form (``--check/--no-check``).
        multiple: the flag may repeat; the value is a tuple.
        metavar: the value's name in ``--help``.
        group: the heading ``--help`` lists the option under.
        deprecated: old spellings still accepted for one release, with a one-line warning.
        hidden: left out of ``--help``.
    """

    name: str
    type: Any = str
    default: Any = None
    help: str = ""
    check: Callable[[Any], None] | None = None
    check_size: Callable[[Any, int], None] | None = None
    flags: tuple[str, ...] = ()
    choices: tuple | None = None
    negatable: bool = False
    multiple: bool = False
    metavar: str | None = None
    group: str = ""
    deprecated: tuple[str, ...] = ()
    hidden: bool = False

    @property
    def flag(self) -> str:
        """The option's main long spelling (``--ranks-per-node``)."""
        longs = [f for f in self.flags if f.startswith("--")]
        return longs[0] if longs else "--" + self.name.replace("_", "-")

    def validate(self, value) -> None:
        """Run :attr:`check` on ``value`` (None: not given, nothing to check).

        Raises:
            UsageError: the value is never valid.
        """
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{self.flag} must be one of "
                             f"{', '.join(map(str, self.choices))}, not {value!r}")
        if self.check is not None:
            self.check(value)


def range_text(low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False) -> str:
    """``>= 1``, ``> 0``, ``<= 5``, ``in (0, 1]`` or ``finite``: the interval from ``low`` to
    ``high`` (None: unbounded), ends included unless open."""
    def num(x) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"

    if low is not None and high is not None:
        return (f"in {'(' if low_open else '['}{num(low)}, {num(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{'>' if low_open else '>='} {num(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {num(high)}"
    return "finite"


@dataclass(frozen=True)
class Range:
    """A check that a value is a finite number from ``low`` to ``high`` (None: unbounded; ends
    included unless open), for :attr:`Option.check` or called directly; built by
    :func:`in_range`. :func:`distbench.command.algorithm_options` turns an option whose check
    is a Range into a click option of that range (refused while parsing)."""

    flag: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __call__(self, value) -> None:
        """Raises :class:`~distbench.runtime.UsageError` unless ``value`` is in the range (NaN
        and infinities never are), e.g. ``--fraction must be in (0, 1], not nan``."""
        low, high = self.low, self.high
        ok = isinstance(value, numbers.Real) and math.isfinite(value) and (
            low is None or (value > low if self.low_open else value >= low)) and (
            high is None or (value < high if self.high_open else value <= high))
        if not ok:
            raise UsageError(f"{self.flag} must be "
                             f"{range_text(low, high, self.low_open, self.high_open)}, "
                             f"not {value}")


def in_range(flag: str, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False) -> Range:
    """The :class:`Range` check of option ``flag``."""
    return Range(flag, low, high, low_open, high_open)


@dataclass(frozen=True)
class Algorithm:
    """A collective algorithm with what the benchmark and the model know about it.

    Attributes:
        fn: the kernel, e.g. ``allreduce(comm, sendbuf, recvbuf, op=None)``.
        cost: ``cost(nbytes, ranks, ranks_per_node, **options)`` -> float64 array of shape
            ``(A, 5, *broadcast shape)``: A alternatives of the coefficients of (alpha, beta,
            gamma, alpha', beta') in the Hockney model; the time is the cheapest alternative
            (A = 1 for a fixed algorithm; the library's call is the minimum over the textbook
            algorithms it selects among). None: no formula (left out of ``distbench model``).
        bytes_sent: ``bytes_sent(rank, ranks, count, itemsize, **options)`` -> bytes this rank
            sends through point-to-point calls, exactly. None: not declared.
        options: the options the kernel takes (keyword arguments), see :class:`Option`.
        source: ``"distribution version"`` of a plug-in; None for a built-in.
        start: the nonblocking form: ``start(...)`` with the kernel's arguments returns a
            request-like object with ``Test() -> bool`` and ``Wait()`` (an ``mpi4py.MPI.Request``
            from the library, a :class:`distbench.collectives.schedule.Schedule` from a
            hand-written algorithm). None: blocking only.
        steps: the schedule generator the kernel and ``start`` run
            (:mod:`distbench.collectives.schedule`), for algorithms built from others; None if
            not written as one.
        name: its registry name (set by :meth:`Registry.spec`).
        equal_nodes: its cost formula holds only with the same number of ranks on every node
            (a two-level algorithm); the fits leave out its runs on unequal nodes.
    """

    fn: Callable
    cost: Callable | None = None
    bytes_sent: Callable | None = None
    options: tuple[Option, ...] = ()
    source: str | None = None
    start: Callable | None = None
    steps: Callable | None = None
    name: str = ""
    equal_nodes: bool = False

    @classmethod
    def from_module(cls, module, fn_name: str) -> Algorithm:
        """The algorithm a kernel module declares: function ``fn_name``, and the module's
        ``cost``, ``bytes_sent``, ``OPTIONS``, ``start``, ``steps`` and ``EQUAL_NODES`` where
        it defines them."""
        return cls(getattr(module, fn_name), getattr(module, "cost", None),
                   getattr(module, "bytes_sent", None), tuple(getattr(module, "OPTIONS", ())),
                   start=getattr(module, "start", None), steps=getattr(module, "steps", None),
                   equal_nodes=bool(getattr(module, "EQUAL_NODES", False)))


@dataclass
class _Entry:
    name: str
    obj: Any
    spec: Algorithm | None
    source: str | None


def accepted(obj, options: dict) -> dict:
    """The items of ``options`` that ``obj``'s signature (a function's, or a class's
    constructor's) names as parameters, None values left out."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        names = set(options)
    else:
        names = set(params)
    return {k: v for k, v in options.items() if k in names and v is not None}


@dataclass
class Registry(Mapping):
    """Named plug-ins of one kind (see the module docstring).

    Args:
        kind: what one entry is, for messages (``"algorithm"``, ``"compression method"``).
        group: the entry-point group of third-party entries (``"distbench.allreduce"``).
        builtins: name -> function, class or :class:`Algorithm`, in display order.
    """

    kind: str
    group: str
    builtins: dict = field(default_factory=dict)
    _entries: dict | None = field(default=None, repr=False)
    warnings: list = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ loading
    def _load(self) -> dict:
        if self._entries is not None:
            return self._entries
        entries = {}
        for name, obj in self.builtins.items():
            spec = obj if isinstance(obj, Algorithm) else None
            entries[name] = _Entry(name, spec.fn if spec else obj, spec, None)
        for ep in _entry_points(self.group):
            source = _dist_label(ep)
            if ep.name in entries:
                raise UsageError(f"plug-in {self.kind} {ep.name!r} from {source} clashes with "
                                 f"a built-in {self.kind} of that name (group {self.group})")
            try:
                obj = ep.load()
            except Exception as exc:  # any failure inside a third party's import
                self._warn(f"Warning: skipping plug-in {self.kind} {ep.name!r} from {source} "
                           f"({ep.value}): {type(exc).__name__}: {exc}")
                continue
            spec = obj if isinstance(obj, Algorithm) else None
            entries[ep.name] = _Entry(ep.name, spec.fn if spec else obj, spec, source)
        self._entries = entries
        return entries

    def _warn(self, line: str) -> None:
        self.warnings.append(line)
        if launcher_rank() in (None, 0):
            eprint(line)

    def register(self, name: str, obj, source: str | None = None) -> None:
        """Add ``obj`` (a function, class or :class:`Algorithm`) as ``name`` from a script, the
        way an entry point adds it from a package.

        Raises:
            UsageError: ``name`` is taken.
        """
        entries = self._load()
        if name in entries:
            raise UsageError(f"{self.kind} {name!r} is already registered")
        spec = obj if isinstance(obj, Algorithm) else None
        entries[name] = _Entry(name, spec.fn if spec else obj, spec, source)

    def reload(self) -> None:
        """Forget the discovered entries (they are found again on next use)."""
        self._entries = None
        self.warnings.clear()

    # ------------------------------------------------------------------ mapping
    def __getitem__(self, name: str):
        return self._load()[name].obj

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, name) -> bool:
        return name in self._load()

    # ------------------------------------------------------------------ metadata
    def spec(self, name: str) -> Algorithm:
        """The :class:`Algorithm` declared for ``name`` (a bare function gets an empty one,
        with its plug-in source)."""
        e = self._entry(name)
        if e.spec is not None:
            return dataclasses.replace(e.spec, name=name, source=e.source or e.spec.source)
        # a bare class or function declares its options as an OPTIONS attribute (compressors)
        return Algorithm(e.obj, options=tuple(getattr(e.obj, "OPTIONS", ())), source=e.source,
                         name=name)

    def source(self, name: str) -> str | None:
        """``"distribution version"`` of a plug-in entry; None for a built-in."""
        return self._entry(name).source

    def options(self) -> dict[str, Option]:
        """Every option the entries declare, by name, first declaration first."""
        out: dict[str, Option] = {}
        for name in self:
            for opt in self.spec(name).options:
                out.setdefault(opt.name, opt)
        return out

    def check(self, values: dict) -> None:
        """Run each declared option's check on the value given in ``values`` (UsageError on a
        bad one; None: not given)."""
        for name, opt in self.options().items():
            opt.validate(values.get(name))

    def check_size(self, values: dict, ranks: int) -> None:
        """Run each declared option's ``check_size`` against the rank count (UsageError)."""
        for name, opt in self.options().items():
            if values.get(name) is not None and opt.check_size is not None:
                opt.check_size(values[name], ranks)

    def _entry(self, name: str) -> _Entry:
        entries = self._load()
        if name not in entries:
            raise KeyError(self.unknown_message(name))
        return entries[name]

    # ------------------------------------------------------------------ names
    def unknown_message(self, name: str, flag: str | None = None) -> str:
        where = f" for {flag}" if flag else ""
        return (f"unknown {self.kind} {name!r}{where} (choose from "
                f"{', '.join(self._load())}{' or all' if flag else ''})")

    def require(self, names: list[str], flag: str, allow_all: bool = True,
                exclude: tuple = ()) -> list[str]:
        """The user's ``names`` checked against the registry (``["all"]``: every entry but
        ``exclude``).

        Raises:
            UsageError: an empty list, or a name that is not registered (one message for every
                registry: ``unknown algorithm 'x' for --algo (choose from ...)``).
        """
        if allow_all and names == ["all"]:
            return [n for n in self if n not in exclude]
        if not names:
            raise UsageError(f"{flag} needs at least one {self.kind} (choose from "
                             f"{', '.join(self)}{' or all' if allow_all else ''})")
        for n in names:
            if n not in self or n in exclude:
                raise UsageError(self.unknown_message(n, flag))
        return list(names)

    # ------------------------------------------------------------------ binding
    def bind(self, name: str, **options):
        """Entry ``name`` (a function) with the keyword ``options`` its signature takes bound.

        Options it does not take, or that are None, are ignored, so a benchmark can hand every
        algorithm the same options and each uses its own.

        Raises:
            KeyError: ``name`` is not registered (the message lists the registered names).
        """
        fn = self._entry(name).obj
        bound = accepted(fn, options)
        return functools.partial(fn, **bound) if bound else fn

    def bind_start(self, name: str, **options):
        """The nonblocking form (:attr:`Algorithm.start`) of entry ``name`` with the options it
        takes bound, as :meth:`bind` does for the kernel.

        Raises:
            UsageError: ``name`` declares no nonblocking form.
        """
        start = self.spec(name).start
        if start is None:
            raise UsageError(f"{self.kind} {name!r} has no nonblocking form (it declares no "
                             "start)")
        bound = accepted(start, options)
        return functools.partial(start, **bound) if bound else start

    def bound_options(self, name: str, options: dict) -> dict:
        """The options :meth:`bind` would pass to ``name`` (for records and tables)."""
        return accepted(self._entry(name).obj, options)

    def create(self, name: str, **options):
        """A new instance of entry ``name`` (a class), built with the options its constructor
        takes.

        Raises:
            UsageError: ``name`` is not registered.
        """
        if name not in self:
            raise UsageError(self.unknown_message(name))
        cls = self._entry(name).obj
        return cls(**accepted(cls, options))


def _entry_points(group: str) -> list:
    """The entry points of ``group`` (none when DISTBENCH_NO_PLUGINS is set)."""
    if os.environ.get("DISTBENCH_NO_PLUGINS"):
        return []
    from importlib import metadata  # ~25 ms at import: only once plug-ins are looked up

    return list(metadata.entry_points(group=group))


def _dist_label(ep) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name'] or dist.name} {dist.version}"


__all__ = ["Algorithm", "Option", "Range", "Registry", "accepted", "in_range", "range_text"]
