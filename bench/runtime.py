"""MPI world, rank-0 output, the array backend (NumPy or CuPy) and GPU-aware-MPI detection.

The array backend is chosen in exactly one place, :func:`array_module`; everything else asks a
:class:`Backend` (from :func:`get_backend`) or the array itself (:func:`namespace_of`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from distbench.comm import HostStagingComm
from distbench.errors import DistbenchError, UsageError
from distbench.launcher import DEFAULT_THREAD_LEVEL, THREAD_LEVELS

_MPI: list = []  # mpi4py.MPI once imported (an import statement per call costs ~0.2 us)


def mpi():
    """``mpi4py.MPI``, imported lazily (``--help``, ``report`` and ``model`` need no MPI)."""
    if not _MPI:
        from mpi4py import MPI

        _MPI.append(MPI)
    return _MPI[0]


def world(thread_level: str | None = None):
    """The world communicator (``MPI.COMM_WORLD``), initializing MPI if nobody has yet, with
    ``MPI_Init_thread`` at ``thread_level`` (a :data:`THREAD_LEVELS` name; None:
    :data:`DEFAULT_THREAD_LEVEL`). :func:`distbench.cli.defer_mpi_init` keeps ``import
    mpi4py.MPI`` from initializing it earlier."""
    MPI = mpi()
    if not MPI.Is_initialized():
        _REQUESTED[0] = thread_level or DEFAULT_THREAD_LEVEL
        MPI.Init_thread(getattr(MPI, THREAD_LEVELS[_REQUESTED[0]]))
    return MPI.COMM_WORLD


_REQUESTED: list = [None]  # the level world() asked MPI_Init_thread for (None: MPI was
                           # initialized elsewhere, e.g. by mpi4py's import)


def thread_levels() -> dict:
    """The environment record's ``mpi_thread_level`` (what MPI provides) and
    ``mpi_thread_level_requested`` (what :func:`world` asked for; None if it did not init)."""
    running = mpi().Is_initialized() and not mpi().Is_finalized()
    return {"mpi_thread_level": thread_level_name() if running else None,
            "mpi_thread_level_requested": _REQUESTED[0]}


def thread_level_name(level: int | None = None) -> str:
    """The :data:`THREAD_LEVELS` name of an MPI thread level (default: the one MPI provides,
    ``MPI_Query_thread``)."""
    MPI = mpi()
    level = MPI.Query_thread() if level is None else level
    return next(k for k, v in THREAD_LEVELS.items() if getattr(MPI, v) == level)


def root_computes(comm, fn):
    """``fn()`` run on rank 0 of ``comm`` and its result broadcast (pickled; for set-up data,
    not hot paths). Collective. An exception on rank 0 is raised on every rank, so no rank is
    left waiting in the broadcast: a UsageError or DistbenchError as it is, any other as a
    DistbenchError naming it."""
    outcome = None
    if comm.Get_rank() == 0:
        try:
            outcome = ("ok", fn())
        except DistbenchError as exc:
            outcome = ("error", exc)
        except Exception as exc:
            outcome = ("error", DistbenchError(f"rank 0: {type(exc).__name__}: {exc}"))
    kind, value = comm.bcast(outcome, root=0)
    if kind == "error":
        raise value
    return value


def node_comm(comm):
    """Ranks sharing this node's memory (``Split_type(COMM_TYPE_SHARED)``); caller frees it."""
    MPI = mpi()
    return comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())


def local_rank_and_size(comm) -> tuple[int, int]:
    """This rank's index among the ranks of its node, and their number: from the launcher's
    environment (Open MPI, MPICH's hydra), else from the node's communicator."""
    for rank_key, size_key in (("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
                               ("MPI_LOCALRANKID", "MPI_LOCALNRANKS")):
        if rank_key in os.environ and size_key in os.environ:
            return int(os.environ[rank_key]), int(os.environ[size_key])
    nc = node_comm(comm)
    try:
        return nc.Get_rank(), nc.Get_size()
    finally:
        nc.Free()


def proc_field(path: str, key: str) -> str | None:
    """The value after ``key`` on the first line of a ``/proc`` file that starts with it
    (e.g. ``proc_field("/proc/meminfo", "MemAvailable:")`` -> ``"23456789 kB"``); None if the
    file or the line is missing."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line[len(key):].strip().lstrip(":").strip()
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- array backends


def array_module(device: str) -> ModuleType:
    """The array namespace for ``device`` (``"cpu"`` -> numpy, ``"gpu"`` -> cupy).

    This is the one place the backend is chosen.

    Raises:
        UsageError: ``device`` is not cpu/gpu, or gpu is asked for and CuPy is not installed or
            sees no CUDA device.
    """
    if device == "cpu":
        return np
    if device != "gpu":
        raise UsageError(f"unknown device {device!r} (choose cpu or gpu)")
    try:
        import cupy
    except ImportError:
        raise UsageError(
            "--device gpu needs CuPy: pip install 'distbench[gpu]' (cupy-cuda12x)"
        ) from None
    try:
        ndev = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise UsageError(f"--device gpu: CuPy found no usable CUDA device ({exc})") from None
    if ndev < 1:
        raise UsageError("--device gpu: CuPy found no CUDA device")
    return cupy


def numpy_dtype(name) -> np.dtype:
    """The NumPy dtype of a ``--dtype`` name (or a dtype); ``"bfloat16"`` is ml-dtypes' (a
    library NumPy lacks), imported on first use."""
    if isinstance(name, str) and name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def namespace_of(array) -> ModuleType:
    """The array module of ``array`` (numpy or cupy), so one kernel serves both backends."""
    if isinstance(array, np.ndarray):
        return np
    mod = type(array).__module__.split(".")[0]
    if mod == "cupy":
        import cupy

        return cupy
    return np


def mpix_query_cuda_support() -> bool | None:
    """Ask the MPI library whether it is CUDA-aware (Open MPI's ``MPIX_Query_cuda_support``).

    Looks the symbol up, via ctypes, in the libmpi this process has loaded. Returns True/False
    from the library, or None when the library has no such function (MPICH, or not Open MPI).
    """
    mpi()  # make sure libmpi is loaded
    candidates: list[str | None] = [None]
    with contextlib.suppress(OSError), open("/proc/self/maps") as fh:
        paths = {line.split()[-1] for line in fh if "/libmpi" in line}
        candidates += sorted(p for p in paths if os.path.basename(p).startswith("libmpi.so"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = []
        return bool(fn())
    return None


@dataclass
class Backend:
    """An array backend: module, device, and how buffers reach MPI.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        xp: the array module.
        device_id: CUDA device index this rank uses, or None on the host.
        gpu_aware: whether device buffers are passed to MPI directly; when False (and on a
            GPU) every MPI call goes through :class:`distbench.comm.HostStagingComm`.
    """

    name: str
    xp: ModuleType
    device_id: int | None = None
    gpu_aware: bool = False
    gpu_aware_detected: bool | None = None
    info: dict = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        return self.name == "cupy"

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def to_host(self, array, out: np.ndarray | None = None) -> np.ndarray:
        """Copy ``array`` into host memory (``out`` if given)."""
        if not self.on_gpu:
            if out is None:
                return np.array(array, copy=True)
            np.copyto(out, array)
            return out
        return array.get(out=out)

    def to_device(self, host: np.ndarray, out) -> None:
        """Copy host array ``host`` into backend array ``out`` (same shape and dtype)."""
        if not self.on_gpu:
            np.copyto(out, host)
        else:
            out.set(host)

    def host_empty(self, nbytes: int) -> np.ndarray:
        """A host byte buffer of ``nbytes`` (page-locked on a GPU backend, for fast copies)."""
        if self.on_gpu:
            import cupyx

            return cupyx.empty_pinned((nbytes,), dtype=np.uint8)
        return np.empty(nbytes, dtype=np.uint8)

    def wrap_comm(self, comm):
        """``comm`` itself when MPI can take this backend's buffers, else a host-staging proxy."""
        if self.on_gpu and not self.gpu_aware:
            return HostStagingComm(comm, self)
        return comm


def get_backend(device: str = "cpu", gpu_aware: str = "auto", comm=None) -> Backend:
    """Build the backend for ``device`` (cpu|gpu), picking the GPU by node-local rank.

    Args:
        device: ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy).
        gpu_aware: ``"auto"`` (ask the MPI library), ``"yes"`` or ``"no"``.
        comm: communicator used to find the local rank (default: world).

    Raises:
        UsageError: see :func:`array_module`; or ``gpu_aware`` not auto/yes/no.
    """
    if gpu_aware not in ("auto", "yes", "no"):
        raise UsageError(f"--gpu-aware must be auto, yes or no, not {gpu_aware!r}")
    xp = array_module(device)
    if xp is np:
        return Backend("numpy", np)
    comm = comm if comm is not None else world()
    local_rank, _ = local_rank_and_size(comm)
    ndev = xp.cuda.runtime.getDeviceCount()
    dev = local_rank % ndev
    xp.cuda.Device(dev).use()
    detected = mpix_query_cuda_support()
    aware = {"yes": True, "no": False}.get(gpu_aware, bool(detected))
    props = xp.cuda.runtime.getDeviceProperties(dev)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return Backend("cupy", xp, dev, aware, detected, {"gpu": name, "gpus_on_node": ndev})
