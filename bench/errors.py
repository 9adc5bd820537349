"""The two errors a user sees as one line, and how that line is printed (no dependencies, so
the command line can load it before anything heavy).

* :class:`UsageError`: bad input; exit code 2, before anything runs.
* :class:`DistbenchError`: a failure the user should see as ``Error: ...``; exit code 1.
"""

from __future__ import annotations

import sys
from typing import Any


class DistbenchError(Exception):
    """A failure the user should see as one line (``Error: ...``); exit code 1."""


class UsageError(DistbenchError):
    """Bad input; exit code 2."""


def eprint(*args: Any) -> None:
    """Print to stderr and flush (any rank; used for errors)."""
    print(*args, file=sys.stderr, flush=True)


__all__ = ["DistbenchError", "UsageError", "eprint"]
