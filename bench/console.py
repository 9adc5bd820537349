"""Terminal output: rich tables and progress bars, on rank 0 only.

Tables go to stdout, or to stderr when stdout carries ``--json`` records. A table's columns
(:class:`Column`) carry a priority: in a terminal the table keeps the columns that fit its
width, dropping the least important first, and never cuts a cell; its caption says what it
hid and how to show it (``--wide``, ``--columns``). Piped output (not a terminal) gets every
column. Progress bars go to stderr and disappear when done. rich is imported when something is
printed (a ``--quiet`` run, the other ranks and ``--help`` never load it: start-up).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_CONSOLES: dict = {}
PIPED_WIDTH = 10_000  # piped output is never wrapped or cut: a file holds any width


UNITS = ("us", "ms", "s", "GB/s", "MB", "GB", "MiB", "B/rank", "%")


@dataclass(frozen=True)
class Column:
    """A table's column.

    Attributes:
        header: the heading; a trailing unit (``us``, ``GB/s``, ...) goes on a second line
            in a terminal, as nccl-tests prints its units.
        justify: ``right``, ``left`` or ``center``.
        priority: 0 for the columns a table always shows; the higher, the sooner a narrow
            terminal hides it.
        key: its ``--columns`` name (default: the header's words without the unit,
            lowercased, ``#`` and ``%`` spelled out: ``t_max``, ``busbw``, ``x_native``,
            ``pct_bound``, ``n_wrong``).
        wrap: a text column that may wrap over lines (a long value in ``info``) rather than
            widen the table; numbers never wrap.
    """

    header: str
    justify: str = "right"
    priority: int = 0
    key: str = ""
    wrap: bool = False

    @property
    def name(self) -> str:
        if self.key:
            return self.key
        words = self.header.split()
        if len(words) > 1 and words[-1] in UNITS:
            words = words[:-1]
        text = " ".join(words).replace("%", "pct ").replace("#", "n_").lower()
        return "_".join(re.findall(r"[a-z0-9_/^*]+", text)).replace("/", "_per_")

    @property
    def heading(self) -> str:
        """The header as a terminal shows it: the unit on its own line."""
        words = self.header.split(" ")
        if len(words) > 1 and words[-1] in UNITS:
            return " ".join(words[:-1]) + "\n" + words[-1]
        return self.header


def column(spec) -> Column:
    """A :class:`Column` from a Column or a ``(header, justify[, priority])`` tuple."""
    return spec if isinstance(spec, Column) else Column(*spec)


LAUNCHERS = ("prterun", "mpirun", "mpiexec", "mpiexec.hydra", "orterun", "prun", "srun")


@dataclass(frozen=True)
class Terminal:
    """Where a stream ends up: a terminal (and its width) or a pipe or file."""

    is_terminal: bool
    width: int


_TERMINALS: dict = {}


def terminal(stderr: bool = False) -> Terminal:
    """Whether stdout (or stderr) reaches a terminal, and its width.

    A rank's own stream is not the answer: Open MPI hands every rank a pseudo-terminal of no
    size whatever mpirun writes to (a file included), and MPICH's hydra a pipe. So under a
    launcher, the stream of the launcher's front-end process (``mpirun``, ``mpiexec``,
    ``srun``: the first ancestor of that name, read from ``/proc``) decides, and its
    terminal's size is the width. ``$COLUMNS``, when set, is the width. Without ``/proc`` or
    a launcher ancestor: this process's stream; a terminal of no size counts as 200 wide.
    """
    if stderr in _TERMINALS:
        return _TERMINALS[stderr]
    fd = 2 if stderr else 1
    found = _launcher_stream(fd)
    if found is None:
        tty = os.isatty(fd)
        size = _size(fd) if tty else 0
    else:
        tty, size = found
    if os.environ.get("COLUMNS", "").isdigit():
        size = int(os.environ["COLUMNS"])
    _TERMINALS[stderr] = Terminal(tty, size if size >= 40 else 200)
    return _TERMINALS[stderr]


def _size(fd: int) -> int:
    try:
        return os.get_terminal_size(fd).columns
    except OSError:
        return 0


def _launcher_stream(fd: int) -> tuple[bool, int] | None:
    """(is a terminal, its width) of stream ``fd`` of the launcher that started this process
    (None: no launcher among the ancestors, or no ``/proc``)."""
    pid = os.getppid()
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            return None
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name in LAUNCHERS:
            try:
                with open(f"/proc/{pid}/fd/{fd}", "rb", buffering=0) as stream:
                    tty = os.isatty(stream.fileno())
                    return tty, _size(stream.fileno()) if tty else 0
            except OSError:
                return None
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
        if pid <= 1:
            return None
    return None


def _width(stderr: bool = False) -> int:
    """The width tables fit: the terminal's (see :func:`terminal`)."""
    return terminal(stderr).width


@dataclass
class View:
    """How tables are shown this run: every column (``wide``), the columns named
    (``select``), or as many as fit the terminal."""

    wide: bool = False
    select: tuple = ()


_VIEW = View()


def set_view(wide: bool = False, select=()) -> None:
    """``--wide`` and ``--columns`` for the tables printed from now on."""
    _VIEW.wide, _VIEW.select = bool(wide), tuple(select or ())


def column_names(tables) -> list[str]:
    """Every ``--columns`` name of ``tables`` (lists of column specs), in order, once."""
    return list(dict.fromkeys(column(c).name for cols in tables for c in cols))


def console(stderr: bool = False):
    """The shared ``rich.console.Console`` writing to stdout (or stderr)."""
    if stderr not in _CONSOLES:
        from rich.console import Console

        term = terminal(stderr)
        _CONSOLES[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=False,
                                    width=term.width, force_terminal=term.is_terminal)
    return _CONSOLES[stderr]


def make_table(title: str, columns: Sequence, rows: Sequence[Sequence],
               caption: str | None = None, row_styles: Sequence[str | None] | None = None,
               sections: Sequence[int] = (), keep: Sequence[int] | None = None,
               two_line: bool = True, wrap_width: int = 40):
    """A ``rich.table.Table``; ``columns`` are :class:`Column` s or (header, justify[,
    priority]) tuples, ``keep`` the indices of those shown (None: all), ``sections`` row
    indices after which a separator line is drawn, ``two_line``: units under the headers,
    ``wrap_width``: the widest a wrapping column grows."""
    from rich.table import Table

    cols = [column(c) for c in columns]
    keep = list(range(len(cols))) if keep is None else list(keep)
    table = Table(title=title, caption=caption, caption_justify="left", header_style="bold",
                  pad_edge=False)
    for i in keep:
        table.add_column(cols[i].heading if two_line else cols[i].header,
                         justify=cols[i].justify, no_wrap=not cols[i].wrap,
                         max_width=wrap_width if cols[i].wrap else None,
                         overflow="fold" if cols[i].wrap else "ellipsis")
    breaks = set(sections)
    for i, row in enumerate(rows):
        style = row_styles[i] if row_styles else None
        table.add_row(*[str(row[j]) for j in keep], style=style, end_section=i in breaks)
    return table


def table_width(columns: Sequence, rows: Sequence[Sequence], keep: Sequence[int]) -> int:
    """The width in characters of the table of the ``keep`` columns with no cell cut, as
    rich measures it (a wrapping column counted at 20 characters: it wraps to fit)."""
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=PIPED_WIDTH, file=open(os.devnull, "w"))
    table = make_table("", columns, rows, keep=keep, wrap_width=20)
    return Measurement.get(probe, probe.options, table).maximum


def fit(columns: Sequence, rows: Sequence[Sequence], width: int) -> list[int]:
    """The indices of the columns to show within ``width`` characters: all that fit, the ones
    of the highest priority number dropped first (the rightmost first among equals); the
    priority-0 columns always stay (the table then overflows rather than cut a cell)."""
    cols = [column(c) for c in columns]
    keep = list(range(len(cols)))
    order = sorted((i for i in keep if cols[i].priority > 0),
                   key=lambda i: (-cols[i].priority, -i))
    for i in [None, *order]:
        if i is not None:
            keep.remove(i)
        if table_width(cols, rows, keep) <= width:
            break
    return keep


def shown(columns: Sequence, rows: Sequence[Sequence], terminal: bool, width: int
          ) -> tuple[list[int], str]:
    """(indices of the columns to show, the caption's note on the hidden ones) under this
    run's :class:`View`: the ``--columns`` names this table has (all of them when it has
    none of those), ``--wide`` or piped output every column, else those that fit
    ``width``."""
    cols = [column(c) for c in columns]
    if _VIEW.select:
        picked = [i for i, c in enumerate(cols) if c.name in _VIEW.select]
        return picked or list(range(len(cols))), ""
    if _VIEW.wide or not terminal:
        return list(range(len(cols))), ""
    keep = fit(cols, rows, width)
    hidden = [cols[i].name for i in range(len(cols)) if i not in keep]
    note = (f"hidden to fit {width} columns: {', '.join(hidden)} (--wide shows all; "
            f"--columns {','.join(cols[i].name for i in keep[:3])},... picks)" if hidden else "")
    return keep, note


def print_table(title: str, columns, rows, caption: str | None = None, stderr: bool = False,
                notes: Sequence[str] = (), **kwargs) -> None:
    """Print :func:`make_table` on the chosen console (call on rank 0 only), its columns as
    :func:`shown` chooses them, never a cell cut; ``notes``: lines printed under it (the
    table's answer)."""
    con = console(stderr)
    keep, note = shown(columns, rows, con.is_terminal, _width(stderr))
    if note:
        caption = f"{caption}\n{note}" if caption else note
    kwargs.setdefault("two_line", con.is_terminal)  # piped: one header line, as before
    table = make_table(title, columns, rows, caption, keep=keep, **kwargs)
    wraps = any(column(columns[i]).wrap for i in keep)
    need = 0 if wraps else table_width(columns, rows, keep)
    con.width = max(_width(stderr) if con.is_terminal else PIPED_WIDTH, need)
    con.print(table)
    for line in notes:  # wrapped at the terminal's width (a file's lines are not wrapped)
        con.print(line, width=_width(stderr) if con.is_terminal else PIPED_WIDTH)


@contextlib.contextmanager
def progress(total: int, description: str, enabled: bool = True) -> Iterator:
    """A progress bar on stderr; yields ``advance(n=1, description=None)``.

    Disabled (a no-op callable) when ``enabled`` is False (other ranks, ``--quiet``) or when
    stderr is not a terminal.
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda n=1, description=None: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console(True),
                   transient=True)
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1, description: str | None = None) -> None:
            if description is not None:
                bar.update(task, advance=n, description=description)
            else:
                bar.advance(task, n)

        yield advance


def fmt_bytes(n: int) -> str:
    """Human size in powers of 1024 (``8 B``, ``64 KiB``, ``16 MiB``)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def fmt_params(n: float) -> str:
    """A parameter count: 29.5M, 1.32B, 175B (3 significant digits; K below a million)."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def fmt_num(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, no scientific notation below 1e7."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1e7 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"
