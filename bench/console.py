"""Terminal output: rich tables and progress bars, on rank 0 only.

Tables go to stdout, or to stderr when stdout carries ``--json`` records. Progress bars go to
stderr and disappear when done. rich is imported when something is printed (a ``--quiet`` run,
the other ranks and ``--help`` never load it: start-up).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence

_CONSOLES: dict = {}


def _width() -> int:
    """Terminal width: $COLUMNS, else the terminal's, else 200 (mpirun's pseudo-terminals and
    pipes report no size; a table is better wide than wrapped at 80)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    cols = shutil.get_terminal_size((0, 0)).columns
    return cols if cols >= 40 else 200


def console(stderr: bool = False):
    """The shared ``rich.console.Console`` writing to stdout (or stderr)."""
    if stderr not in _CONSOLES:
        from rich.console import Console


        _CONSOLES[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=False,
                                    width=_width())
    return _CONSOLES[stderr]


def make_table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence],
               caption: str | None = None, row_styles: Sequence[str | None] | None = None,
               sections: Sequence[int] = ()):
    """A ``rich.table.Table``; ``columns`` are (header, justify), ``sections`` row indices after
    which a separator line is drawn."""
    from rich.table import Table

    table = Table(title=title, caption=caption, caption_justify="left", header_style="bold",
                  pad_edge=False)
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True)
    breaks = set(sections)
    for i, row in enumerate(rows):
        style = row_styles[i] if row_styles else None
        table.add_row(*[str(c) for c in row], style=style, end_section=i in breaks)
    return table


def print_table(title: str, columns, rows, caption: str | None = None, stderr: bool = False,
                **kwargs) -> None:
    """Print :func:`make_table` on the chosen console (call on rank 0 only)."""
    console(stderr).print(make_table(title, columns, rows, caption, **kwargs))


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
