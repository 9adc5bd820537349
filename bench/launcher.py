"""Whether an MPI launcher started this process, and its rank, from the environment alone, and
the thread levels MPI can be initialized with (no MPI, no NumPy: the command line asks before
anything heavy is loaded)."""

from __future__ import annotations

import os

# --thread-level names -> MPI's constants, lowest first (MPI-4.1, section 11.2.1)
THREAD_LEVELS = {"single": "THREAD_SINGLE", "funneled": "THREAD_FUNNELED",
                 "serialized": "THREAD_SERIALIZED", "multiple": "THREAD_MULTIPLE"}
# The default: the watchdog's thread makes MPI calls (heartbeats), which needs MULTIPLE; what
# that costs a short message was measured (docs, "Performance": 0.13-0.16 us of a 1.7 us 8 B
# MPI_Allreduce, the watchdog's thread itself nothing measurable). With --timeout 0 the CLI
# asks for "single" (nothing else needs a thread).
DEFAULT_THREAD_LEVEL = "multiple"

# Environment variables set by MPI launchers; when none is present and the world has one rank,
# distbench was started without mpirun (a "singleton").
_LAUNCHER_ENV = (
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "MPI_LOCALNRANKS",
    "SLURM_STEP_ID",
    "HYDRA_CONTROL_FD",
)


def launched_by_mpirun() -> bool:
    """True when a launcher's environment variables are present."""
    return any(k in os.environ for k in _LAUNCHER_ENV)


def launcher_rank() -> int | None:
    """This process's world rank as the launcher's environment states it (Open MPI, PMIx,
    PMI, Slurm), without initializing MPI; None when not launched by one."""
    for key in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return None
