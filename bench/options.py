"""The command line made from declared options (:mod:`distbench.declared`): click options,
commands whose configuration is built by keyword, help grouped under headings and ending with
examples, and old spellings kept for one release with a one-line warning.

:func:`declared_command` is how every subcommand is made: a configuration class (its fields
carry their options) and a function from the built configuration to a
:class:`~distbench.command.Job`. Parameter types: :class:`Size` (bytes with K, M, G suffixes),
:class:`Number` (a finite number, optionally bounded: what an option's
:class:`~distbench.registry.Range` becomes, refused while parsing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import click

from distbench.declared import Names, Numbers, build, names, numbers, options_of
from distbench.errors import UsageError, eprint
from distbench.launcher import launcher_rank
from distbench.registry import Option, Range, range_text


class Size(click.ParamType):
    """A size in bytes: an integer with an optional K, M or G suffix (powers of 1024)."""

    name = "size"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in "KMG" and text[-1:] else ""
        number = text[: len(text) - len(unit)]
        try:
            n = int(number)
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 8, 64K, 16M, 1G)", param, ctx)
        if n < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        if n == 0:
            self.fail(f"{value!r}: sizes start at 1 byte", param, ctx)
        return n * self._UNITS[unit]

    @staticmethod
    def text(n: int) -> str:
        """``67108864`` -> ``64M``: a size as it is typed."""
        for unit in ("G", "M", "K"):
            if n and n % Size._UNITS[unit] == 0:
                return f"{n // Size._UNITS[unit]}{unit}"
        return str(n)


class Number(click.ParamType):
    """A finite real number (``nan`` and ``inf`` are refused), optionally bounded: ``Number(
    low=0, low_open=True)`` is > 0, ``Number(0, 1, low_open=True)`` is in (0, 1]."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.integer = integer
        self.name = "integer" if integer else "number"

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.integer:
            if x != int(x):
                self.fail(f"{value!r} is not an integer", param, ctx)
            x = int(value) if isinstance(value, int) else _exact_int(value, x)
        lo_bad = self.low is not None and (x < self.low or (self.low_open and x == self.low))
        hi_bad = self.high is not None and (x > self.high or (self.high_open and x == self.high))
        if lo_bad or hi_bad:
            self.fail(f"{value!r} is not {self.range_text()}", param, ctx)
        return x

    def range_text(self) -> str:
        return range_text(self.low, self.high, self.low_open, self.high_open)


def _exact_int(text, x: float) -> int:
    """``"12345678901234567"`` as the exact integer it names (``"1e6"`` via float)."""
    try:
        return int(str(text).strip())
    except ValueError:
        return int(x)


class NameList(click.ParamType):
    """A comma-separated list of names, checked as :func:`~distbench.declared.names` does (a
    list given in code passes as it is)."""

    name = "names"

    def __init__(self, allow_all: bool = False):
        self.allow_all = allow_all

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        flag = param.opts[0] if param is not None else "the list"
        try:
            return names(value, flag, allow_all=self.allow_all)
        except UsageError as exc:
            self.fail(str(exc).removeprefix(f"{flag} "), param, ctx)


class NumberList(click.ParamType):
    """A comma-separated list of numbers, checked as :func:`~distbench.declared.numbers`
    does."""

    name = "numbers"

    def __init__(self, kind: type = float, low: float = 0.0, low_open: bool = True):
        self.kind, self.low, self.low_open = kind, low, low_open

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        flag = param.opts[0] if param is not None else "the list"
        try:
            return numbers(value, flag, self.kind, self.low, self.low_open)
        except UsageError as exc:
            self.fail(str(exc).removeprefix(f"{flag} "), param, ctx)


_PLAIN = {int: click.INT, float: click.FLOAT, str: click.STRING}


class TypedChoice(click.Choice):
    """A choice among values of any type (``(2, 4, 8)``): typed as text, returned as the
    value itself."""

    def __init__(self, values):
        self.values = {str(v): v for v in values}
        super().__init__(list(self.values))

    def convert(self, value, param, ctx):
        if not isinstance(value, str) and value in self.values.values():
            return value
        return self.values[super().convert(value, param, ctx)]


def click_type(opt: Option):
    """The click type of ``opt``: a choice, a :class:`Number` of its range when its check is a
    :class:`~distbench.registry.Range`, its own click type, or the plain type."""
    if opt.choices is not None:
        if all(isinstance(c, str) for c in opt.choices):
            return click.Choice(list(opt.choices))
        return TypedChoice(opt.choices)
    r = opt.check
    if isinstance(r, Range) and opt.type in (int, float):
        return Number(r.low, r.high, r.low_open, r.high_open, integer=opt.type is int)
    if isinstance(opt.type, Names):
        return NameList(opt.type.allow_all)
    if isinstance(opt.type, Numbers):
        return NumberList(opt.type.kind, opt.type.low, opt.type.low_open)
    if isinstance(opt.type, click.ParamType):
        return opt.type
    return _PLAIN.get(opt.type, click.STRING)


def help_text(opt: Option) -> str:
    """The option's help, ending with its range when its check is a bounded Range."""
    r = opt.check
    if not isinstance(r, Range) or (r.low is None and r.high is None) or opt.choices:
        return opt.help
    return f"{opt.help} [{range_text(r.low, r.high, r.low_open, r.high_open)}]"


class DeclaredOption(click.Option):
    """A click option that knows its heading in ``--help`` and its old spellings."""

    def __init__(self, *args, heading: str = "", old_spellings: tuple = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.heading = heading
        self.old_spellings = tuple(old_spellings)


def click_option(opt: Option) -> DeclaredOption:
    """The click option of a declared :class:`~distbench.registry.Option`."""
    flags = list(opt.flags) or [opt.flag]
    kwargs: dict = {"help": help_text(opt), "hidden": opt.hidden}
    if opt.type is bool:
        if opt.negatable:
            long = opt.flag
            flags = [f for f in flags if f != long] + [f"{long}/--no-{long[2:]}"]
        else:
            kwargs["is_flag"] = True
        kwargs["default"] = opt.default
        kwargs["show_default"] = opt.default is not None and opt.negatable
    else:
        default = opt.default
        if isinstance(opt.type, Size) and isinstance(default, int):
            default = Size.text(default)  # shown as typed (64M); the type converts it back
        elif isinstance(default, list):
            default = ",".join(map(str, default))
        kwargs.update(type=click_type(opt), default=default, multiple=opt.multiple,
                      metavar=opt.metavar,
                      show_default=default not in (None, (), []) and not opt.multiple)
    return DeclaredOption([*flags, opt.name], heading=opt.group, old_spellings=opt.deprecated,
                          **kwargs)


def click_options(cls: type, **kw) -> list[DeclaredOption]:
    """The click options of every option of configuration class ``cls``
    (:func:`~distbench.declared.options_of`'s keywords)."""
    return [click_option(o) for o in options_of(cls, **kw)]


class DeclaredCommand(click.Command):
    """A click command whose ``--help`` lists the options under their headings and ends with
    example command lines, and which accepts the old spelling of a renamed option for one
    release (a one-line warning on rank 0, then the new spelling)."""

    def __init__(self, *args, examples: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.examples = list(examples)

    def renamed(self) -> dict[str, str]:
        """Old spelling -> new one, for every option of the command."""
        return {old: next(o for o in p.opts if o.startswith("--"))
                for p in self.params if isinstance(p, DeclaredOption) for old in p.old_spellings}

    def parse_args(self, ctx, args):
        renamed = self.renamed()
        if renamed:
            args = [_respell(a, renamed, self.name) for a in args]
        return super().parse_args(ctx, args)

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "heading", "") or "Options", []).append(
                    record)
        general = sections.pop("Options", [])
        for heading, rows in [("Options", general), *sections.items()]:
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.examples:
            with formatter.section("Examples"):  # one line each, never re-wrapped
                for line in self.examples:
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


def given_names() -> frozenset:
    """The options of the command being parsed that the user gave (on the command line or
    through the environment), by parameter name; empty outside a command's parse. The checks
    of options that do nothing in the chosen mode use it: an option typed is an option meant,
    even at its default value."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return frozenset()
    typed = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return frozenset(p.name for p in ctx.command.params
                     if ctx.get_parameter_source(p.name) in typed)


_WARNED: set = set()


def _respell(arg: str, renamed: dict[str, str], command: str) -> str:
    """``arg`` with an old option spelling replaced by the new one (``--old=v`` too)."""
    name, eq, value = arg.partition("=")
    if name not in renamed:
        return arg
    new = renamed[name]
    if (command, name) not in _WARNED and launcher_rank() in (None, 0):
        _WARNED.add((command, name))
        eprint(f"Warning: {command} {name} is deprecated; use {new} (the old spelling goes in "
               "the next release)")
    return new + eq + value


def declared_command(name: str, cls: type, make: Callable, *, doc: str, examples=(),
                     extra: Sequence = (), command_class: type = DeclaredCommand,
                     **kw) -> DeclaredCommand:
    """The click command ``name``: the options of configuration ``cls`` (and the click
    options ``extra``), parsed into ``cls`` by keyword and handed to ``make(cfg, **rest)``
    (``rest``: the values of ``extra``), which returns the Job. ``kw``: as
    :func:`~distbench.declared.options_of`."""
    declared = click_options(cls, **kw)
    own = {p.name for p in declared}
    defaults = kw.get("defaults")

    def callback(**values):
        rest = {k: values.pop(k) for k in list(values) if k not in own}
        return make(build(cls, values, defaults=defaults), **rest)

    return command_class(name, params=[*declared, *extra], callback=callback, help=doc,
                         examples=examples)


__all__ = ["DeclaredCommand", "DeclaredOption", "NameList", "Number", "NumberList", "Size",
           "TypedChoice", "click_option", "click_options", "click_type", "declared_command",
           "given_names", "help_text"]
