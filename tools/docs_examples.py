"""The runnable examples of the documentation: find them, run them, and (``--write``) put what
they printed under their command, with the date and machine of the run.

A runnable example is a console block right after a ``<!-- runnable -->`` marker in README.md or
a page under docs/::

    <!-- runnable -->
    ```console
    $ mpirun -n 2 distbench allreduce -b 8 -e 1M -f 32
    ...its output...
    ```
    *Output of a run on 2026-12-08 (...).*

Its ``$`` lines run in order in an empty folder through a shell (``mpirun`` is the venv's, with
``--oversubscribe``; ``distbench`` is ``python -m distbench``; ``tests/...``, ``examples/...``
and ``docs/...`` paths are the repository's); the marker may append options
for the test run, ``<!-- runnable: -e 64K -->`` (click takes the last value of an option, so a
test can shrink sizes). The tests (tests/test_docs.py) run every example, check its exit code
and that the columns its shown output has are in what it prints. ``--write`` reruns each one on
a pseudo-terminal ``--columns`` wide and rewrites its output and date line.

    python tools/docs_examples.py --list
    python tools/docs_examples.py --write [--columns 100] [PAGE ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import os
import platform
import pty
import re
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- runnable(?::(?P<extra>[^>]*))? -->\s*$")
DATE_LINE = re.compile(r"^\*Output of (a|this) run on .*\*\s*$")


@dataclass
class Example:
    """One runnable example: where it is, its commands, the output shown, the test's extra
    options, and the lines (0-based, in its page) of its fence and date line."""

    page: Path
    line: int
    commands: list[str]
    shown: list[str]
    extra: str
    fence: tuple[int, int]
    date_line: int | None


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples(page: Path) -> list[Example]:
    """The runnable examples of ``page``, in order."""
    lines = page.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARKER.match(line)
        if not m:
            continue
        start = i + 1
        if start >= len(lines) or not lines[start].startswith("```console"):
            raise ValueError(f"{page}:{i + 1}: a runnable marker not followed by a console block")
        end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
        body = lines[start + 1:end]
        commands = [b[2:] for b in body if b.startswith("$ ")]
        shown = [b for b in body if not b.startswith("$ ")]
        date = next((j for j in (end + 1, end + 2)
                     if j < len(lines) and DATE_LINE.match(lines[j])), None)
        out.append(Example(page, i + 1, commands, shown, (m.group("extra") or "").strip(),
                           (start, end), date))
    return out


def shell_line(command: str, extra: str = "", mpirun: str | None = None,
               python: str | None = None) -> str:
    """A documented command as the shell line that runs it here: ``mpirun`` with
    ``--oversubscribe`` (and the venv's), ``distbench`` as ``python -m distbench``, ``extra``
    appended to the distbench command."""
    mpirun = mpirun or str(Path(sys.executable).parent / "mpirun")
    python = python or sys.executable
    line = re.sub(r"^mpirun\b", lambda _: f"{shlex.quote(mpirun)} --oversubscribe", command)
    # the repository's files by their place in it (the example runs in an empty folder)
    line = re.sub(r"(?<=\s)((?:tests|examples|docs)/\S+)",
                  lambda m: shlex.quote(str(ROOT / m.group(1))), line)
    line, found = re.subn(r"(^|\s)distbench\b",
                          lambda m: f"{m.group(1)}{shlex.quote(python)} -m distbench", line,
                          count=1)
    return f"{line} {extra}" if extra and found else line


def environment(columns: int | None = None) -> dict:
    """The environment the examples run in: Open MPI allowed as root, the venv first on PATH;
    COLUMNS set for a terminal's width, unset otherwise."""
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="^ofi", OMPI_MCA_mpi_yield_when_idle="1",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    for key in list(env):
        if key.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_", "PRTE_")):
            env.pop(key)
    env.pop("COLUMNS", None)
    if columns:
        env["COLUMNS"] = str(columns)
    return env


def run_on_terminal(line: str, cwd: Path, columns: int, timeout: float = 900) -> tuple[int, str]:
    """Run a shell line with its output on a pseudo-terminal ``columns`` wide: (exit code,
    the text it printed, escape sequences removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(line, shell=True, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env={**environment(columns), "TERM": "xterm"})
    os.close(slave)
    chunks, deadline, done_at = [], time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:  # exited; a daemon it left may hold the terminal
            done_at = done_at or time.monotonic()
            if time.monotonic() - done_at > 2.0:
                break
    os.close(master)
    code = proc.wait(timeout=60)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r", "")
    return code, re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)


def header_words(lines: list[str]) -> list[str]:
    """The column headings of the tables in ``lines`` (the rows between a table's top border
    and its header rule), word by word."""
    words, inside = [], False
    for line in lines:
        if line.startswith("┏"):
            inside = True
            continue
        if line.startswith("┡"):
            inside = False
            continue
        if inside:
            for cell in line.strip("┃").split("┃"):
                words += cell.split()
    return words


def _machine() -> str:
    cpus = os.cpu_count()
    try:
        out = subprocess.run([str(Path(sys.executable).parent / "mpirun"), "--version"],
                             capture_output=True, text=True, timeout=30).stdout.splitlines()
        mpi = out[0].replace("(Open MPI) ", "").strip() if out else "MPI"
    except OSError:
        mpi = "MPI"
    return f"{platform.node()}, {cpus} cores, {mpi}"


def write(example: Example, columns: int, cwd: Path) -> None:
    """Rerun ``example`` on a terminal ``columns`` wide and rewrite its output and date line
    in its page."""
    texts, codes = [], []
    for cmd in example.commands:
        code, text = run_on_terminal(shell_line(cmd), cwd, columns)
        codes.append(code)
        texts.append(text.rstrip("\n"))
    if any(codes):
        raise SystemExit(f"{example.page}:{example.line}: exit {codes}:\n" + "\n".join(texts))
    lines = example.page.read_text().splitlines()
    start, end = example.fence
    body = []
    for cmd, text in zip(example.commands, texts, strict=True):
        body += [f"$ {cmd}", *(ln.rstrip() for ln in text.splitlines())]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    date = (f"*Output of this run on {now} ({_machine()}; a terminal {columns} columns "
            "wide).*")
    new = [*lines[:start + 1], *body, lines[end], "", date]
    after = lines[(example.date_line if example.date_line is not None else end) + 1:]
    if after and not after[0].strip():
        after = after[1:]
    new += ["", *after]
    example.page.write_text("\n".join(new) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the runnable examples")
    ap.add_argument("--write", action="store_true", help="rerun them and rewrite the output")
    ap.add_argument("--columns", type=int, default=100, help="terminal width for --write")
    ap.add_argument("pages", nargs="*", help="only these pages")
    args = ap.parse_args(argv)
    chosen = [Path(p).resolve() for p in args.pages] or pages()
    import tempfile

    for page in chosen:
        # rewriting shifts the lines: take the examples again after each one
        i = 0
        while True:
            found = examples(page)
            if i >= len(found):
                break
            ex = found[i]
            if args.list or not args.write:
                print(f"{page.relative_to(ROOT)}:{ex.line}: {' && '.join(ex.commands)}")
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    write(ex, args.columns, Path(tmp))
                print(f"wrote {page.relative_to(ROOT)}:{ex.line}")
            i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
