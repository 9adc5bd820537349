"""Options declared once, as the fields of configuration dataclasses.

A configuration (a command's, or a spec of :mod:`distbench.algorithms` such as the compression
or the training spec) is a dataclass whose fields carry their :class:`~distbench.registry.Option`
(name, type, default, range, help, flags, heading). Three kinds of field:

* :func:`arg`: one option (the field's name is the option's);
* :func:`group`: a nested configuration whose options are the group's (shared groups such as
  the run options, sizes and iterations are declared once and reused, each command may give
  them other defaults or help texts and leave some out);
* :func:`options_from`: the options a registry's entries declare (an algorithm's ``--inner``,
  a compressor's), gathered into a dict.

:func:`options_of` lists every option of a configuration class (what
:mod:`distbench.options` turns into click options), :func:`build` makes an instance from
parsed values by keyword, :func:`flatten` gives the flat dict results record and
:func:`check` runs every declared check on an instance built in code (tests, ``replace``).

No click, no NumPy: algorithms declare their options here without importing the command line.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any

from distbench.errors import UsageError
from distbench.registry import Option, in_range

_NUMERIC = (int, float)


@dataclass(frozen=True)
class Names:
    """The type of an option holding a comma-separated list of names (:func:`names`; the
    command line parses it, a list given in code is taken as it is)."""

    allow_all: bool = False


@dataclass(frozen=True)
class Numbers:
    """The type of an option holding a comma-separated list of numbers (:func:`numbers`)."""

    kind: type = float
    low: float = 0.0
    low_open: bool = True


def names(text: str, flag: str, *, allow_all: bool = False) -> list[str]:
    """A comma-separated list of names (``"ring,tree"`` -> ``["ring", "tree"]``; ``"all"``
    kept as ``["all"]`` when ``allow_all``).

    Raises:
        UsageError: an empty list or item (``"ring,,tree"``, ``"ring,"``), an item with white
            space (``" ring"``), or a name given twice (it would run twice under one name).
    """
    items = str(text).split(",")
    if not text or any(not i for i in items):
        raise UsageError(f"{flag} takes comma-separated names without empty items, not "
                         f"{text!r}")
    for i in items:
        if any(c.isspace() for c in i):
            raise UsageError(f"{flag}: {i!r} has white space (write {flag} a,b,c)")
    twice = sorted({i for i in items if items.count(i) > 1})
    if twice:
        raise UsageError(f"{flag} names {', '.join(twice)} more than once")
    if "all" in items and (not allow_all or len(items) > 1):
        raise UsageError(f"{flag} takes 'all' alone" if allow_all else
                         f"{flag} does not take 'all'")
    return items


def numbers(text: str, flag: str, kind: type = float, low: float = 0.0,
            low_open: bool = True) -> list:
    """``"1,5,25"`` -> [1.0, 5.0, 25.0] (``kind`` int or float), each finite and above ``low``
    (at least ``low`` when not ``low_open``).

    Raises:
        UsageError: not such numbers (and as :func:`names` for the list itself).
    """
    vals = []
    for item in names(text, flag):
        try:
            v = kind(item)
        except (ValueError, OverflowError):
            raise UsageError(f"{flag} takes comma-separated {kind.__name__}s, not {text!r}"
                             ) from None
        if not math.isfinite(v) or v < low or (low_open and v == low):
            raise UsageError(f"{flag} takes finite numbers {'>' if low_open else '>='} "
                             f"{low:g}, not {item!r}")
        vals.append(v)
    return vals




def arg(default: Any = None, help: str = "", *, type: Any = None, low: float | None = None,
        high: float | None = None, low_open: bool = False, high_open: bool = False,
        factory: Callable[[], Any] | None = None, check: Callable | None = None,
        check_size: Callable | None = None, **presentation) -> Field:
    """A dataclass field declared as an option.

    Args:
        default: the value when none is given (``factory`` for a mutable one).
        help: the ``--help`` line.
        type: int, float, str, bool or a click parameter type (default: the default's type,
            str when it is None).
        low, high, low_open, high_open: the range of a number (ends included unless open);
            every int and float option is at least finite (NaN and infinities refused).
        check, check_size: see :class:`~distbench.registry.Option` (they replace the range).
        presentation: ``flags``, ``choices``, ``negatable``, ``multiple``, ``metavar``,
            ``group``, ``deprecated``, ``hidden`` (:class:`~distbench.registry.Option`).
    """
    spec = {"default": default, "help": help, "type": type, "range": (low, high, low_open,
            high_open), "check": check, "check_size": check_size, **presentation}
    if factory is None and isinstance(default, (list, dict, set)):
        factory = functools.partial(copy.copy, default)  # a fresh copy per instance
    kwargs = {"default_factory": factory} if factory is not None else {"default": default}
    return field(metadata={"option": spec}, **kwargs)


def group(cls: type, *, help: dict | None = None, skip: tuple = (), **defaults) -> Field:
    """A nested configuration ``cls`` whose options are this one's; ``defaults`` and ``help``
    (option name -> text) replace the group's own for this command, ``skip`` leaves options
    out (they keep their default)."""
    return field(default_factory=lambda: cls(**defaults),
                 metadata={"group": cls, "defaults": defaults, "help": help or {},
                           "skip": tuple(skip)})


def options_from(source: Callable[[], dict[str, Option]], heading: str = "") -> Field:
    """A dict field holding the options ``source()`` declares (a registry's
    :meth:`~distbench.registry.Registry.options`), shown under ``heading``."""
    return field(default_factory=dict, metadata={"registry": source, "heading": heading})


def _infer(default) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, _NUMERIC):
        return type(default)
    return str


def _make(f: Field, spec: dict, defaults: dict, help_over: dict) -> Option:
    name = f.name
    default = defaults.get(name, spec["default"] if f.default_factory is MISSING
                           else f.default_factory())
    kind = spec["type"] or _infer(spec["default"] if spec["default"] is not None else default)
    extra = {k: spec[k] for k in ("flags", "choices", "negatable", "multiple", "metavar",
                                  "group", "deprecated", "hidden") if k in spec}
    if isinstance(extra.get("flags"), str):
        extra["flags"] = (extra["flags"],)
    opt = Option(name, kind, default, help_over.get(name, spec["help"]),
                 check_size=spec["check_size"], **extra)
    check = spec["check"]
    if check is None and kind in _NUMERIC:
        low, high, low_open, high_open = spec["range"]
        check = in_range(opt.flag, low, high, low_open, high_open)
    return dataclasses.replace(opt, check=check)


def options_of(cls: type, *, defaults: dict | None = None, help: dict | None = None,
               skip: tuple = (), heading: str = "") -> list[Option]:
    """Every option of configuration class ``cls`` (groups and registries included), in
    declaration order; ``defaults``, ``help`` and ``skip`` as for :func:`group`."""
    defaults, help_over = defaults or {}, help or {}
    out: list[Option] = []
    for f in fields(cls):
        meta = f.metadata
        if "group" in meta:
            out += options_of(meta["group"], defaults={**meta["defaults"], **defaults},
                              help={**meta["help"], **help_over},
                              skip=tuple(meta["skip"]) + tuple(skip))
        elif "registry" in meta:
            out += [o if o.group else dataclasses.replace(o, group=meta["heading"])
                    for o in meta["registry"]().values() if o.name not in skip]
        elif "option" in meta and f.name not in skip:
            opt = _make(f, meta["option"], defaults, help_over)
            out.append(opt if opt.group or not heading else
                       dataclasses.replace(opt, group=heading))
    return out


def build(cls: type, values: dict, *, defaults: dict | None = None):
    """An instance of configuration ``cls`` from parsed ``values`` (option name -> value),
    by keyword; groups are built from the same values, registry options gathered into their
    dict (None values left out: not given). Fields without a value keep their default
    (``defaults`` first)."""
    defaults = defaults or {}
    kwargs = {}
    for f in fields(cls):
        meta = f.metadata
        if "group" in meta:
            kwargs[f.name] = build(meta["group"], values,
                                   defaults={**meta["defaults"], **defaults})
        elif "registry" in meta:
            kwargs[f.name] = {k: values[k] for k in meta["registry"]()
                              if values.get(k) is not None}
        elif f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.name in defaults:
            kwargs[f.name] = defaults[f.name]
    return cls(**kwargs)


def flatten(cfg) -> dict:
    """The configuration as one flat dict (groups' fields and registry options inline; other
    dataclass values as dicts): what results record as ``config``."""
    out: dict = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if "group" in f.metadata or (is_dataclass(value) and not isinstance(value, type)
                                     and _declares(type(value))):
            out.update(flatten(value))
        elif "registry" in f.metadata:
            out.update(value)
        elif is_dataclass(value) and not isinstance(value, type):
            out[f.name] = dataclasses.asdict(value)
        else:
            out[f.name] = value
    return out


def _declares(cls: type) -> bool:
    return any({"option", "group", "registry"} & set(f.metadata) for f in fields(cls))


def check(cfg, skip: tuple = ()) -> None:
    """Run every declared option's check on ``cfg``'s values (groups included).

    Raises:
        UsageError: the first value that is never valid (one line naming the flag).
    """
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if "group" in f.metadata:
            check(value, skip + tuple(f.metadata["skip"]))
        elif "registry" in f.metadata:
            declared = f.metadata["registry"]()
            for name, v in value.items():
                if name in declared:
                    declared[name].validate(v)
        elif "option" in f.metadata and f.name not in skip:
            _make(f, f.metadata["option"], {}, {}).validate(value)


__all__ = ["Names", "Numbers", "arg", "build", "check", "flatten", "group", "names", "numbers",
           "options_from", "options_of"]
