"""The MPI library's own algorithm choice, forced at run time: Open MPI's ``coll_tuned``
control variables written through the MPI tool interface (MPI_T, ``ctypes`` on the library
mpi4py loaded; mpi4py has no MPI_T API), and the algorithms each collective lists.

What was found (Open MPI 5.0.11 from PyPI): ``coll_tuned_use_dynamic_rules`` and
``coll_tuned_<collective>_algorithm`` are writable through ``MPI_T_cvar_write`` (they are
registered settable, scope ALL), and ``coll/tuned`` reads them when a communicator is created:
a ``Dup`` made after the write runs the forced algorithm, the communicators made before keep
theirs. So every forced variant gets a communicator of its own, made once, and the variants are
timed interleaved in one job. The rules file (``coll_tuned_dynamic_rules_filename``) is read
when the component opens, so a tuned library needs a launch of its own (``tune --verify``).
MPICH's ``MPIR_CVAR_<COLL>_INTRA_ALGORITHM`` are read at every call, not per communicator:
this module does not force them (the MPICH selection file is written from the measured
decision, by algorithm name).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

# distbench's collective -> the Open MPI coll/tuned variable's name and the rules file's
# collective id (ompi/mca/coll/base/coll_base_functions.h, COLLTYPE_T)
OMPI = {"allreduce": ("allreduce", 2), "allgather": ("allgather", 0),
        "alltoall": ("alltoall", 3), "alltoallv": ("alltoallv", 4), "bcast": ("bcast", 7),
        "reduce": ("reduce", 11), "reduce-scatter": ("reduce_scatter_block", 13)}


def _libmpi() -> ctypes.CDLL | None:
    """The MPI library mpi4py loaded (from this process's memory map), or None."""
    try:
        with open("/proc/self/maps") as fh:
            path = next((ln.split()[-1] for ln in fh if "libmpi" in ln and ".so" in ln), None)
    except OSError:
        return None
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL) if path else None


class ControlVariables:
    """Open MPI's control variables through MPI_T (call after MPI is initialized).

    Attributes:
        available: whether the library is Open MPI with a writable ``coll_tuned``.
        why: why not, when not.
    """

    def __init__(self, library: str):
        self.available, self.why, self._lib, self._handles = False, "", None, {}
        if "open mpi" not in library.lower():
            self.why = "the library is not Open MPI (its algorithms are not forced here)"
            return
        lib = _libmpi()
        if lib is None:
            self.why = "the MPI library's file was not found in this process"
            return
        provided = ctypes.c_int()
        if lib.MPI_T_init_thread(0, ctypes.byref(provided)) != 0:
            self.why = "MPI_T_init_thread failed"
            return
        self._lib = lib
        try:
            self.write("coll_tuned_use_dynamic_rules", 1)
        except OSError as exc:
            self.why = str(exc)
            return
        self.available = True

    def _handle(self, name: str):
        if name not in self._handles:
            idx, count = ctypes.c_int(), ctypes.c_int()
            if self._lib.MPI_T_cvar_get_index(name.encode(), ctypes.byref(idx)) != 0:
                raise OSError(f"no control variable {name}")
            h = ctypes.c_void_p()
            if self._lib.MPI_T_cvar_handle_alloc(idx, None, ctypes.byref(h),
                                                 ctypes.byref(count)) != 0:
                raise OSError(f"cannot bind control variable {name}")
            self._handles[name] = h
        return self._handles[name]

    def write(self, name: str, value: int) -> None:
        """Write the integer control variable ``name``.

        Raises:
            OSError: no such variable, or the library refused the write.
        """
        v = ctypes.c_int(int(value))
        if self._lib.MPI_T_cvar_write(self._handle(name), ctypes.byref(v)) != 0:
            raise OSError(f"the library refused to write {name} = {value}")

    def read(self, name: str) -> int:
        v = ctypes.c_int()
        self._lib.MPI_T_cvar_read(self._handle(name), ctypes.byref(v))
        return v.value

    def forced(self, comm, collective: str, algorithm: int):
        """A duplicate of ``comm`` on which ``collective`` runs library algorithm
        ``algorithm`` (0: the library's own decision); collective over ``comm``."""
        var = f"coll_tuned_{OMPI[collective][0]}_algorithm"
        self.write(var, algorithm)
        try:
            return comm.Dup()
        finally:
            self.write(var, 0)


def ompi_info() -> str | None:
    """The ``ompi_info`` beside this Python's MPI (the venv's), or on the PATH."""
    here = Path(sys.executable).parent / "ompi_info"
    return str(here) if here.exists() else shutil.which("ompi_info")


def library_algorithms(collective: str, ranks: int) -> list[tuple[int, str]]:
    """``(id, name)`` of every algorithm Open MPI's ``coll_tuned`` lists for ``collective``
    (``ompi_info --parsable``; 0, the library's own decision, left out; ``two_proc`` only at
    2 ranks). Empty without ``ompi_info`` or for a collective it does not tune."""
    tool = ompi_info()
    if tool is None or collective not in OMPI:
        return []
    var = f"coll_tuned_{OMPI[collective][0]}_algorithm"
    try:
        out = subprocess.run([tool, "--param", "coll", "tuned", "--level", "9", "--parsable"],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        head = f"mca:coll:tuned:param:{var}:enumerator:value:"
        if line.startswith(head):
            num, _, name = line[len(head):].partition(":")
            if num.isdigit() and int(num) > 0 and (name != "two_proc" or ranks == 2):
                found.append((int(num), name))
    return found


__all__ = ["OMPI", "ControlVariables", "library_algorithms", "ompi_info"]
