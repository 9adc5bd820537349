"""Files a user names (results for ``report``, ``compare`` and ``model --from``, a ``--dataset``,
a trace for ``replay``): opened only when they are regular files of a bounded size, JSON parsed
strictly and to a bounded depth, so that every bad file is one line naming it (a usage error,
exit 2) and none can hang the command (a FIFO, a device) or exhaust its memory.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from distbench.errors import UsageError

MAX_JSON_BYTES = 64 << 20   # a results file of a long suite is a few MB
MAX_DATA_BYTES = 1 << 30    # a --dataset or a trace
MAX_INT_DIGITS = 19         # integers beyond 64 bits are not measurements


def regular_file(path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> Path:
    """``path`` when it is a regular file (a link to one is followed) of at most ``max_bytes``.

    Raises:
        UsageError: it does not exist, is a folder, a FIFO, a device or a socket, a link loop,
            unreadable, or larger than ``max_bytes`` (one line naming it).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise UsageError(f"{what} {p} does not exist") from None
    except OSError as exc:
        why = "a symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror
        raise UsageError(f"{what} {p}: cannot read it ({why})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if
                stat.S_ISFIFO(st.st_mode) else "a device or socket")
        raise UsageError(f"{what} {p} is {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise UsageError(f"{what} {p} has {st.st_size} bytes, more than the {max_bytes >> 20} "
                         "MiB it may have")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {p}: no permission to read it")
    return p


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (beyond 64 bits)")
    return int(text)


def _constant(name: str):
    raise ValueError(f"{name} is not JSON (strict: no NaN or Infinity)")


def read_json(path, what: str = "results file", max_bytes: int = MAX_JSON_BYTES):
    """The JSON value of file ``path`` (:func:`regular_file`), parsed strictly: UTF-8, no
    NaN or Infinity, integers of at most 19 digits, nested at most as deep as Python's
    recursion limit allows (about 1000 levels; deeper is refused, not a crash).

    Raises:
        UsageError: see :func:`regular_file`; not UTF-8, not JSON, nested too deeply (one line
            naming the file).
    """
    p = regular_file(path, what, max_bytes)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {p} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                         ) from None
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot read it ({exc.strerror})") from None
    try:
        return json.loads(text, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise UsageError(f"{what} {p} is nested too deeply to be a results file") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {p} is not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise UsageError(f"{what} {p}: {exc}") from None


__all__ = ["MAX_DATA_BYTES", "MAX_JSON_BYTES", "read_json", "regular_file"]
