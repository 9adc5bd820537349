"""Helpers for end-to-end tests that launch ``mpirun ... distbench`` in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
MPIRUN = str(BIN / "mpirun") if (BIN / "mpirun").exists() else shutil.which("mpirun")
DISTBENCH = [sys.executable, "-m", "distbench"]


def mpi_env() -> dict:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="^ofi", OMPI_MCA_mpi_yield_when_idle="1")
    # a test process started under pytest-mpi must not hand its own MPI identity to children
    for key in list(env):
        if key.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_", "OMPI_MCA_orte", "PRTE_")):
            env.pop(key)
    env.pop("COLUMNS", None)
    return env


def mpirun(n: int, args: list[str], timeout: float = 120, prefix: list[str] | None = None,
           **kw) -> subprocess.CompletedProcess:
    """Run ``mpirun -n N [prefix] python -m distbench ARGS``; returns the completed process."""
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", *(prefix or []), *DISTBENCH, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(),
                          **kw)


def serial(args: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m distbench ARGS`` without a launcher (a singleton MPI process)."""
    return subprocess.run([*DISTBENCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=mpi_env(), **kw)


def error_lines(text: str) -> list[str]:
    """Non-empty lines of ``text``, minus Open MPI's abort banner (lines of dashes and what it
    frames are the launcher's, not ours)."""
    out, in_banner = [], False
    for line in text.splitlines():
        if line.startswith("-----"):
            in_banner = not in_banner
            continue
        if in_banner or not line.strip() or line.startswith(("prterun", "[")):
            continue
        out.append(line)
    return out


def usage_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a usage error prints, after checking that there is one line, that it starts
    with ``Error: ``, that the exit code is 2 and that no traceback was printed."""
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def namespaces_skip_reason(extra_check=None) -> str | None:
    """Why emulated clusters cannot be built here (None when they can): a missing tool or
    privilege (``check_requirements``, then ``extra_check()``, raising ``UsageError``) or a
    failed ``ip netns add`` of a probe namespace, which is deleted again."""
    from distbench.emulate.network import check_requirements
    from distbench.errors import UsageError

    try:
        tools = check_requirements()
        if extra_check is not None:
            extra_check()
    except UsageError as exc:
        return str(exc)
    probe = f"dbe-probe-{os.getpid()}"
    made = subprocess.run([tools["ip"], "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces unavailable: {made.stderr.strip()}"
    subprocess.run([tools["ip"], "netns", "del", probe], capture_output=True)
    return None
