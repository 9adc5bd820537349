"""Result records, environment metadata, their JSON/CSV files, and every way runs are loaded
back (:func:`load_run`, :func:`find_docs`).

A run writes ``<parent>/<UTC time>-<benchmark>/results.json`` (``{"schema", "benchmark",
"complete", "reason", "environment", "config", "records"}``) and ``results.csv`` (one row per
record). Both are rewritten atomically (temporary file + ``os.replace``, then an ``fsync`` of
the folder) every time records are appended, so an aborted run keeps what it measured; a run
folder (and, in a suite folder, a benchmark's file) is created exclusively, so an earlier run is
never overwritten. ``complete`` stays false, with the reason, until the run finishes (a timeout,
a failing rank, a signal or a divergence say so). The JSON is strict: a non-finite number is
written as null and the record's ``non_finite`` names the field and its value.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy

from distbench import __version__
from distbench.errors import DistbenchError, UsageError
from distbench.files import read_json
from distbench.runtime import proc_field, thread_levels

SCHEMA = 2
RUNNING = "not finished (still running, or ended without a word: killed)"


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(dist: str) -> str | None:
    from importlib import metadata  # 12 ms of start-up when imported with the module

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    return (proc_field("/proc/cpuinfo", "model name") or platform.processor()
            or platform.machine())


def scheduler_record(environ=None) -> dict | None:
    """This process's batch job as Slurm's ``SLURM_*`` variables tell it (None outside one):
    ``name`` ("slurm"), ``job_id``, ``step_id``, ``nodelist``, ``nodes``, ``partition``,
    ``cluster`` and ``launcher``: ``"mpirun"`` (ranks started by mpirun/PRRTE or hydra inside
    the allocation), ``"srun --mpi=TYPE"`` (direct launch) or None (the batch script itself)."""
    env = os.environ if environ is None else environ
    if not env.get("SLURM_JOB_ID"):
        return None
    if any(k in env for k in ("OMPI_COMM_WORLD_SIZE", "PRTE_LAUNCHED", "HYDRA_CONTROL_FD")):
        launcher = "mpirun"
    elif "SLURM_STEP_ID" in env:
        launcher = f"srun --mpi={env.get('SLURM_MPI_TYPE', 'none')}"
    else:
        launcher = None
    nodes = env.get("SLURM_JOB_NUM_NODES", "")
    return {"name": "slurm", "job_id": env["SLURM_JOB_ID"], "step_id": env.get("SLURM_STEP_ID"),
            "nodelist": env.get("SLURM_JOB_NODELIST"),
            "nodes": int(nodes) if nodes.isdigit() else None,
            "partition": env.get("SLURM_JOB_PARTITION"),
            "cluster": env.get("SLURM_CLUSTER_NAME"), "launcher": launcher}


def environment(comm, backend=None, argv: list[str] | None = None, extra: dict | None = None
                ) -> dict:
    """Everything needed to interpret and reproduce a run (collective over ``comm``).

    Keys: distbench version, git commit, MPI library version string, the MPI thread level
    provided and requested (``--thread-level``), mpi4py/numpy/cupy
    versions, Python, OS, CPU, ranks, nodes, ranks per node, hostnames, device, backend,
    command line, UTC start time, the emulated cluster (``DISTBENCH_EMULATED``) and the
    Slurm job (:func:`scheduler_record`, ``scheduler``) if any.
    """
    from mpi4py import MPI

    hosts = comm.allgather(MPI.Get_processor_name()) if comm is not None else [
        socket.gethostname()]
    per_host = Counter(hosts)
    env = {
        "distbench": __version__,
        "git_commit": _git_commit(),
        "mpi_library": MPI.Get_library_version().strip("\x00 \n").splitlines()[0].strip(),
        "mpi_version": "{}.{}".format(*MPI.Get_version()),
        **thread_levels(),
        "mpi4py": _version("mpi4py"),
        "numpy": numpy.__version__,
        "cupy": next((v for d in ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x")
                      if (v := _version(d))), None),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "ranks": comm.Get_size() if comm is not None else 1,
        "nodes": len(per_host),
        "ranks_per_node": sorted(set(per_host.values())),
        "hostnames": sorted(per_host),
        "device": "cpu",
        "command": " ".join(argv) if argv else " ".join(["distbench", *sys.argv[1:]]),
        "start_utc": utc_now().isoformat(timespec="seconds"),
    }
    if backend is not None:
        env["device"] = "gpu" if backend.on_gpu else "cpu"
        env["backend"] = backend.name
        if backend.on_gpu:
            env.update(backend.info)
            env["gpu_aware_mpi"] = backend.gpu_aware
            env["gpu_aware_detected"] = backend.gpu_aware_detected
    emulated = os.environ.get("DISTBENCH_EMULATED")
    if emulated:
        try:
            env["emulated"] = json.loads(emulated)
        except ValueError:
            env["emulated"] = emulated
    job = scheduler_record()
    if job:
        env["scheduler"] = job
    if extra:
        env.update(extra)
    return env


def env_line(env: dict) -> str:
    """One-line summary of an environment for table footers."""
    mpi = env.get("mpi_library", "MPI").split(",")[0]
    nodes = env.get("nodes", 1)
    parts = [mpi, f"{env.get('ranks')} ranks on {nodes} node{'s' if nodes != 1 else ''}"
             f" ({', '.join(env.get('hostnames', [])[:4])})",
             f"{env.get('device', 'cpu')}", f"numpy {env.get('numpy')}",
             f"mpi4py {env.get('mpi4py')}"]
    if env.get("emulated"):
        em = env["emulated"]
        if isinstance(em, dict):
            parts.append(f"emulated {em.get('nodes')}x{em.get('ranks_per_node')} "
                         f"link {em.get('link')}")
    job = env.get("scheduler")
    if isinstance(job, dict):
        parts.append(f"slurm job {job.get('job_id')} ({job.get('launcher') or 'batch'})")
    if env.get("git_commit"):
        parts.append(f"git {env['git_commit'][:12]}")
    return " · ".join(parts)


def atomic_write(path: Path, data: str | bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, a rename and (with
    ``durable``) an ``fsync`` of the file and the folder (so the new entry survives a crash;
    without, it survives the process being killed, which is what a run ending early needs
    fast).

    Raises:
        DistbenchError: the write failed (full disk, permissions): the message names the path
            and the errno; the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = errno.errorcode.get(exc.errno, "?") if exc.errno else "?"
        raise DistbenchError(f"cannot write {path}: {exc.strerror or exc} (errno {exc.errno} "
                             f"{code})") from None


def fsync_dir(folder: Path) -> None:
    """``fsync`` a folder, making a rename or a new entry in it durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def strict(value, path: str = "", found: dict | None = None):
    """``value`` with every non-finite float replaced by None (strict JSON); the dotted paths
    of the replaced values and their text go into ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found[path] = str(value)
        return None
    if isinstance(value, dict):
        return {k: strict(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # NumPy scalars
        return strict(value.item(), path, found)
    return value


def strict_record(rec: dict) -> dict:
    """A record made strict (:func:`strict`), with ``non_finite`` naming what was replaced."""
    found: dict = {}
    out = strict(rec, "", found)
    if found:
        out["non_finite"] = {**(rec.get("non_finite") or {}), **found}
    return out


def check_output_folder(parent) -> None:
    """That results can be written under ``parent``, checked before a run without creating
    anything: ``parent`` is a writable folder, or its nearest existing ancestor is one (and
    nothing on the way is a file); ``/proc`` and ``/sys`` are refused.

    Raises:
        UsageError: it cannot be created or written (``/proc/x``, a path under a regular file,
            no permission), naming the path and the reason.
    """
    path = Path(parent).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    why = None
    if path.parts[1:2] in (("proc",), ("sys",)):
        why = "a kernel file system"
    elif not probe.is_dir():
        why = f"{probe} is not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        why = f"no permission to write in {probe}"
    if why:
        raise UsageError(f"--output {parent}: cannot create or write there ({why})")


def new_run_dir(parent: str | os.PathLike, benchmark: str, when: _dt.datetime | None = None
                ) -> Path:
    """Create and return ``parent/<UTC>-<benchmark>`` (``-2``, ``-3``... if taken)."""
    when = when or utc_now()
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{when.strftime('%Y%m%dT%H%M%SZ')}-{benchmark}"
    for i in range(1, 1000):
        path = parent / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run folder under {parent}")


def csv_text(records: list[dict]) -> str:
    """Records as CSV text: header = union of keys in first-seen order; lists joined by ';'."""
    fields: dict[str, None] = {}
    for rec in records:
        fields.update(dict.fromkeys(rec))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: _csv_cell(v) for k, v in rec.items()})
    return buf.getvalue()


def _csv_cell(v):
    """Lists joined by ';', dicts as ``key=value`` pairs joined by ';'."""
    if isinstance(v, dict):
        return ";".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ";".join(map(str, v))
    return v


class RunWriter:
    """Accumulates one run's records and keeps its files up to date (rank 0 writes).

    Args:
        comm: communicator (None for a single process); only its rank 0 touches files, and the
            run folder's path is broadcast so every rank knows it.
        benchmark: name used in the folder and the JSON.
        parent: folder under which the run folder is created (``--output``), or an existing
            run folder when ``exact=True`` (a suite writes several benchmarks into one; a
            benchmark's file that exists already gets a ``-2``, ``-3``... name instead of being
            overwritten).
        config: the parsed options.
        env: :func:`environment`'s dict.

    The document says ``complete: false`` (reason :data:`RUNNING`) until :meth:`finish`;
    :meth:`mark_incomplete` records why a run ended early. Thread-safe (the watchdog thread
    marks runs while the main thread may be writing).

    Raises:
        UsageError: the folder cannot be created (the message names it).
        DistbenchError: a file cannot be written (full disk: the path and the errno).
    """

    def __init__(self, comm, benchmark: str, parent, config: dict, env: dict,
                 exact: bool = False):
        self.comm = comm
        self.is_root = comm is None or comm.Get_rank() == 0
        self.benchmark = benchmark
        self.config = config
        self.env = env
        self.records: list[dict] = []
        self.complete, self.reason = False, RUNNING
        self._lock = threading.Lock()
        path = stem = None
        if self.is_root:
            try:
                if exact:
                    path = Path(parent)
                    path.mkdir(parents=True, exist_ok=True)
                    stem = _free_stem(path, benchmark)
                else:
                    path, stem = new_run_dir(parent, benchmark), "results"
            except OSError as exc:
                raise UsageError(f"cannot create the results folder under {parent}: "
                                 f"{exc.strerror or exc}") from None
        if comm is not None and comm.Get_size() > 1:
            path, stem = comm.bcast((str(path), stem) if path else None, root=0)
        self.path = Path(path)
        self.stem = stem
        if self.is_root:
            self._write()

    @property
    def json_path(self) -> Path:
        return self.path / f"{self.stem}.json"

    @property
    def csv_path(self) -> Path:
        return self.path / f"{self.stem}.csv"

    def document(self) -> dict:
        return {"schema": SCHEMA, "benchmark": self.benchmark, "complete": self.complete,
                "reason": self.reason, "environment": self.env, "config": self.config,
                "records": self.records}

    def append(self, records: list[dict]) -> None:
        """Add records (made strict JSON) and rewrite both files atomically (no-op off rank
        0)."""
        if not self.is_root:
            return
        with self._lock:
            self.records.extend(strict_record(r) for r in records)
            self._write()

    def put(self, index: int, record: dict) -> None:
        """Record ``index`` (0-based; the next one appends) replaced by ``record``, as a record
        that grows run after run is kept up to date (``parallel --rounds``); both files
        rewritten atomically (no-op off rank 0)."""
        if not self.is_root:
            return
        with self._lock:
            rec = strict_record(record)
            if index < len(self.records):
                self.records[index] = rec
            else:
                self.records.append(rec)
            self._write()

    def finish(self) -> None:
        """The run completed: ``complete: true`` (rank 0 writes)."""
        if self.is_root:
            with self._lock:
                self.complete, self.reason = True, None
                self._write()

    def mark_incomplete(self, reason: str) -> None:
        """The run ends early because of ``reason`` (kept as the first one given). Fast: the
        JSON alone, without fsync, and without waiting more than 0.1 s for a write of the main
        thread to finish (``mpirun`` kills a rank about 0.25 s after its SIGTERM)."""
        if not self.is_root:
            return
        locked = self._lock.acquire(timeout=0.1)
        try:
            if not self.complete and self.reason == RUNNING:
                self.complete, self.reason = False, reason
                self._write(csv=False, durable=False)
        finally:
            if locked:
                self._lock.release()

    def _write(self, csv: bool = True, durable: bool = True) -> None:
        doc = strict({k: v for k, v in self.document().items() if k != "records"})
        doc["records"] = self.records
        atomic_write(self.json_path, json.dumps(doc, indent=1, default=str, allow_nan=False)
                     + "\n", durable)
        if csv:
            atomic_write(self.csv_path, csv_text(self.records), durable)


def _free_stem(folder: Path, benchmark: str) -> str:
    """``benchmark``, or ``benchmark-2``, ``-3``... : the first whose JSON does not exist yet,
    claimed by creating it exclusively."""
    for i in range(1, 1000):
        stem = benchmark if i == 1 else f"{benchmark}-{i}"
        try:
            fd = os.open(folder / f"{stem}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return stem
    raise FileExistsError(f"no free name for {benchmark}.json in {folder}")


def normalize(doc: dict) -> dict:
    """Bring a document written by an earlier distbench to today's record fields (in place):
    collective records get ``options`` (the algorithm's options; earlier runs recorded
    hierarchical's ``inner`` and the node grouping at the top level)."""
    for rec in doc.get("records", []):
        if not isinstance(rec, dict) or "options" in rec or "algorithm" not in rec:
            continue
        opts = {}
        if rec.get("inner"):
            opts["inner"] = rec["inner"]
            if rec.get("ranks_per_node") is not None:
                opts["ranks_per_node"] = rec["ranks_per_node"]
        rec["options"] = opts
    return doc


NUMERIC_SUFFIXES = ("_us", "_gbps", "_s", "_bytes", "_pct", "_ratio")
NUMERIC_FIELDS = ("bytes", "count", "ranks", "iters", "step", "steps", "round", "rounds",
                  "warmup", "wrong", "zero", "dp", "tp", "pp", "bucket_mb", "params",
                  "train_loss", "test_acc", "gap", "efficiency", "bubble", "client",
                  "samples", "vs_native", "vs_ring", "epoch", "canary_us", "spikes")
TEXT_FIELDS = ("benchmark", "algorithm", "method", "compressor", "mode", "kind", "layout",
               "series", "dtype", "device", "op", "partition", "schedule", "dataset", "model",
               "compress", "allreduce", "dp_algo", "tp_algo", "compute", "source")
OBJECT_FIELDS = ("options", "non_finite")
FLAG_FIELDS = ("in_place", "nonblocking", "overlap", "partial")
LIST_FIELDS = ("label_counts", "step_error", "drift")  # and bytes_*per_rank: per rank


def _number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _field_problem(key: str, value) -> str | None:
    """What is wrong with a record's field (None: nothing), by the field's name."""
    if key.endswith("_ci"):
        ok = value is None or (isinstance(value, list) and len(value) == 2
                               and all(_number(v) for v in value))
        return None if ok else "not null or a [low, high] pair of numbers"
    if key in LIST_FIELDS or (key.startswith("bytes") and key.endswith("per_rank")):
        ok = value is None or (isinstance(value, list) and all(_number(v) or isinstance(v, list)
                                                               for v in value))
        return None if ok else "not a list of numbers"
    if key in NUMERIC_FIELDS or key.endswith(NUMERIC_SUFFIXES):
        return None if _number(value) else "not a number"
    if key in TEXT_FIELDS:
        return None if value is None or isinstance(value, str) else "not text"
    if key in OBJECT_FIELDS:
        return None if value is None or isinstance(value, dict) else "not an object"
    if key in FLAG_FIELDS:
        return None if value is None or isinstance(value, bool) else "not true or false"
    return None


def check_document(doc, known: tuple | None = None) -> None:
    """That ``doc`` has the shape every reader relies on: the document's ``schema`` (an integer
    up to :data:`SCHEMA`), ``benchmark`` (one of ``known`` when given), ``complete`` (true or
    false) and ``environment`` and ``config`` (objects); ``records`` a list of objects of that
    benchmark whose fields have their types (numbers, texts, objects, flags, intervals,
    lists: by the field's name).

    Raises:
        ValueError: naming what is wrong and where (the readers turn it into a usage error).
    """
    if not isinstance(doc, dict):
        raise ValueError(f"the document is {type(doc).__name__}, not an object")
    schema = doc.get("schema", 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise ValueError(f"'schema' is {schema!r}: this distbench reads schemas 1 to {SCHEMA}")
    bench = doc.get("benchmark")
    if bench is not None and not isinstance(bench, str):
        raise ValueError(f"'benchmark' is {bench!r}, not a name")
    if known is not None and bench is not None and bench not in known:
        raise ValueError(f"'benchmark' is {bench!r}, not one of distbench's")
    if "complete" in doc and not isinstance(doc["complete"], bool):
        raise ValueError(f"'complete' is {doc['complete']!r}, not true or false")
    for key in ("environment", "config"):
        if not isinstance(doc.get(key, {}), dict):
            raise ValueError(f"'{key}' is not an object")
    records = doc.get("records")
    if not isinstance(records, list):
        raise ValueError(f"'records' is {type(records).__name__}, not a list of records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ValueError(f"record {i} is {type(rec).__name__}, not an object")
        if bench is not None and rec.get("benchmark", bench) != bench:
            raise ValueError(f"record {i} is a {rec['benchmark']!r} record in a {bench!r} run")
        for key, value in rec.items():
            why = _field_problem(key, value)
            if why:
                raise ValueError(f"record {i}: field {key!r} is {value!r}, {why}")


def load_run(path: str | os.PathLike, known: tuple | None = None) -> list[dict]:
    """Load the JSON document(s) of a run folder (or one JSON file), :func:`normalize` d.

    Returns a list of documents (a suite folder holds one per benchmark). Every file is read
    by :func:`distbench.files.read_json` (a regular file, size-capped, strict JSON of bounded
    depth) and checked (:func:`check_document`; ``known``: the benchmark names allowed).

    Raises:
        FileNotFoundError: no results JSON at ``path``.
        UsageError: a file that cannot be read as JSON (one line naming it).
        ValueError: a document not shaped like results (:func:`check_document`).
    """
    path = Path(path)
    if path.is_file() or not path.is_dir():
        files = [path]
    else:
        files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
    docs = []
    for f in files:
        doc = read_json(f)
        if isinstance(doc, dict) and "records" in doc:
            check_document(doc, known)
            docs.append(normalize(doc))
    if not docs:
        raise FileNotFoundError(f"no distbench results (*.json with records) in {path}")
    return docs


def find_docs(path, known: tuple | None = None) -> list[tuple[str, dict]]:
    """(label, document) of every results document in ``path`` and its sub-folders
    (``known``: the benchmark names allowed).

    The label is the sub-folder (``.`` for ``path`` itself).

    Raises:
        UsageError: ``path`` does not exist, holds no results, or a JSON file that is not one
            (one line naming the file and what is wrong).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{path} does not exist")
    folders = [path] if path.is_file() else [path, *sorted(
        {p.parent for p in path.rglob("*.json") if p.parent != path})]
    out = []
    for folder in folders:
        try:
            docs = load_run(folder, known)
        except FileNotFoundError:
            continue
        except ValueError as exc:
            raise UsageError(f"{folder}: not a results file ({exc})") from None
        label = "." if folder in (path,) else str(folder.relative_to(path))
        out.extend((label, d) for d in docs)
    if not out:
        raise UsageError(f"no distbench results (*.json with records) in {path}")
    return out
