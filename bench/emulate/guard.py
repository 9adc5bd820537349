"""The guardian of one emulated cluster (:func:`distbench.emulate.network.start_guardian`):
``python -m distbench.emulate.guard RUN_DIR``. It reads its standard input until end of file,
which comes when the process that built the cluster closes it after tearing the cluster down,
or dies (a ``kill -9`` included: the kernel closes the pipe). Then, if the run's state is still
there and unlocked (its owner is gone), it tears the run down: it kills what still runs in the
namespaces, deletes them and removes the run's folder (:func:`~distbench.emulate.network.
reap_run`). A run torn down normally leaves it nothing to do.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m distbench.emulate.guard RUN_DIR\n")
        return 2
    run_dir = Path(args[0])
    while sys.stdin.buffer.read(1 << 16):  # until the owner closes the pipe, or dies
        pass
    if not (run_dir / "state.json").exists():
        return 0  # torn down by its owner (the usual end: no import needed)
    from distbench.emulate.network import reap_run  # after the wait: start-up stays light

    for _ in range(50):  # the owner's lock goes with its process: up to 5 s for it to exit
        state = run_dir / "state.json"
        if not state.exists():
            return 0  # torn down by its owner
        try:
            tools = json.loads(state.read_text())["tools"]
        except (OSError, ValueError, KeyError):
            return 0
        if reap_run(run_dir, tools):
            return 0
        time.sleep(0.1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
