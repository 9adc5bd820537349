"""The AllReduce sweep: for each message size, check every algorithm against ``MPI_Allreduce``,
time them interleaved, and report latency, algbw, busbw and the ratio to native.

Like nccl-tests' common harness: the algorithms are small functions with one signature
(``distbench.collectives.ALLREDUCE``) and this module does the sweep, timing, checking and
printing for all of them.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from distbench.check import CHUNK, count_changed, count_wrong, fill_exact
from distbench.metrics import algbw, busbw_allreduce, summarize
from distbench.report import fmt_bytes, fmt_num, print_table, progress
from distbench.results import RunWriter, env_line, environment
from distbench.runtime import UsageError, get_backend, proc_field
from distbench.timing import adaptive_iters, estimate_seconds, time_interleaved

SMALL_BYTES = 8192          # OSU's boundary between small and large messages
DEFAULT_ITERS = (1000, 100)  # small, large (before the time budget caps them)
BUDGET_S = 0.12              # timed seconds per (size, algorithm) when -n is not given
SENTINEL = -99               # recvbuf contents before a checked call


@dataclass
class SweepConfig:
    """Parsed options of ``distbench allreduce`` (sizes in bytes)."""

    algos: list
    min_bytes: int = 8
    max_bytes: int = 64 << 20
    factor: int = 2
    iters: int | None = None
    warmup: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    gpu_aware: str = "auto"
    ranks_per_node: int | None = None
    inner: str = "ring"
    check: bool = True
    output: str = "results"
    json: bool = False
    quiet: bool = False
    run_dir: str | None = None

    def sizes(self) -> list[int]:
        return size_sweep(self.min_bytes, self.max_bytes, self.factor)


def size_sweep(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """``min_bytes, min_bytes*factor, ...`` up to ``max_bytes`` (nccl-tests' -b/-e/-f)."""
    out, s = [], min_bytes
    while s <= max_bytes:
        out.append(s)
        s *= factor
    return out


def check_size_range(min_bytes: int, max_bytes: int, factor: int, dtype: str) -> None:
    """-b/-e/-f checks shared by the sweeps: min <= max, integer factor >= 2, both ends a
    multiple of ``dtype``'s item size. Raises UsageError with a one-line message."""
    itemsize = np.dtype(dtype).itemsize
    if min_bytes > max_bytes:
        raise UsageError(f"--min-bytes ({min_bytes}) is larger than --max-bytes "
                         f"({max_bytes})")
    if factor < 2:
        raise UsageError(f"--step-factor must be an integer >= 2, not {factor}")
    for s in (min_bytes, max_bytes):
        if s % itemsize:
            raise UsageError(f"size {s} B is not a multiple of {dtype}'s {itemsize} B")


def validate_sweep(cfg: SweepConfig) -> None:
    """Checks that need no MPI. Raises UsageError with a one-line message."""
    check_size_range(cfg.min_bytes, cfg.max_bytes, cfg.factor, cfg.dtype)
    if cfg.iters is not None and cfg.iters < 1:
        raise UsageError(f"--iters must be >= 1, not {cfg.iters}")
    if cfg.warmup is not None and cfg.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, not {cfg.warmup}")
    if cfg.ranks_per_node is not None and cfg.ranks_per_node < 1:
        raise UsageError(f"--ranks-per-node must be >= 1, not {cfg.ranks_per_node}")


def mem_available() -> int | None:
    """This node's available memory in bytes (MemAvailable), or None if unknown."""
    value = proc_field("/proc/meminfo", "MemAvailable:")
    return int(value.split()[0]) * 1024 if value else None


def validate_mpi(cfg: SweepConfig, comm) -> None:
    """Checks that need the communicator (same verdict on all ranks of a node)."""
    from distbench.runtime import array_module, local_rank_and_size

    array_module(cfg.device)  # --device gpu without CuPy or a device: a usage error, here
    size = comm.Get_size()
    if cfg.ranks_per_node is not None and size % cfg.ranks_per_node:
        raise UsageError(f"--ranks-per-node {cfg.ranks_per_node} does not divide the "
                         f"{size} ranks")
    _, local = local_rank_and_size(comm)
    # sendbuf + recvbuf + the largest scratch (a whole vector) + the check's chunk.
    itemsize = np.dtype(cfg.dtype).itemsize
    per_rank = 3 * cfg.max_bytes + min(cfg.max_bytes, CHUNK * itemsize) + (64 << 20)
    avail = mem_available() if cfg.device == "cpu" else None
    if avail is not None and local * per_rank > avail:
        raise UsageError(f"a {fmt_bytes(cfg.max_bytes)} sweep needs about "
                         f"{fmt_bytes(local * per_rank)} on this node ({local} ranks) but "
                         f"{fmt_bytes(avail)} is available; lower --max-bytes")


def _iteration_plan(cfg, comm, fns, nbytes, sync):
    """Per-algorithm timed and warm-up iteration counts for one size (same on all ranks)."""
    if cfg.iters is not None:
        iters = dict.fromkeys(fns, cfg.iters)
    else:
        default = DEFAULT_ITERS[0] if nbytes <= SMALL_BYTES else DEFAULT_ITERS[1]
        iters = {n: adaptive_iters(estimate_seconds(comm, f, sync=sync), default, BUDGET_S)
                 for n, f in fns.items()}
    if cfg.warmup is not None:
        warm = dict.fromkeys(fns, cfg.warmup)
    else:
        warm = {n: max(1, min(100, it // 10)) for n, it in iters.items()}
    return iters, warm


def run_sweep(cfg: SweepConfig, comm, argv: list[str]) -> int:
    """Run the sweep on every rank; returns the exit code (1 if any result was wrong)."""
    from distbench.collectives import BASELINE, get_allreduce
    from distbench.collectives._util import clear_workspace

    backend = get_backend(cfg.device, cfg.gpu_aware, comm)
    xp = backend.xp
    wcomm = backend.wrap_comm(comm)
    rank, p = comm.Get_rank(), comm.Get_size()
    root = rank == 0
    names = [BASELINE] + [a for a in cfg.algos if a != BASELINE]
    fns_by_name = {n: get_allreduce(n, ranks_per_node=cfg.ranks_per_node, inner=cfg.inner)
                   for n in names}
    env = environment(comm, backend, argv)
    writer = RunWriter(comm, "allreduce", cfg.run_dir or cfg.output, asdict(cfg), env,
                       exact=cfg.run_dir is not None)
    sync = backend.synchronize if backend.on_gpu else None
    sizes = cfg.sizes()
    any_wrong = 0
    rows, sections = [], []
    with progress(len(sizes) * len(names), "allreduce", enabled=root and not cfg.quiet) as adv:
        for nbytes in sizes:
            count = nbytes // np.dtype(cfg.dtype).itemsize
            send = xp.empty(count, dtype=cfg.dtype)
            fill_exact(send, rank)
            recv = xp.empty(count, dtype=cfg.dtype)
            scratch = xp.empty(max(1, min(CHUNK, count)), dtype=cfg.dtype)
            wrong = {}
            for n, fn in fns_by_name.items():
                if cfg.check:
                    recv.fill(SENTINEL)
                    fn(wcomm, send, recv)
                    wrong[n] = count_wrong(wcomm, send, recv, scratch)
                    wrong[n] += count_changed(comm, send, rank, scratch)
                else:
                    wrong[n] = None
            calls = {n: functools.partial(fn, wcomm, send, recv) for n, fn in fns_by_name.items()}
            iters, warm = _iteration_plan(cfg, comm, calls, nbytes, sync)
            times = time_interleaved(comm, calls, iters, warm, sync=sync)
            records = []
            for n in names:
                st = summarize(comm, times[n])
                adv(1, f"allreduce {fmt_bytes(nbytes)} {n}")
                if not root:
                    continue
                bw = algbw(nbytes, st["t_max_us"] * 1e-6)
                records.append({
                    "benchmark": "allreduce", "algorithm": n, "bytes": nbytes, "count": count,
                    "dtype": cfg.dtype, "ranks": p, "iters": iters[n], "warmup": warm[n],
                    **{k: v for k, v in st.items() if k != "iters"},
                    "algbw_gbps": bw, "busbw_gbps": busbw_allreduce(bw, p),
                    "wrong": wrong[n], "device": env["device"],
                    "ranks_per_node": cfg.ranks_per_node, "inner": cfg.inner
                    if n == "hierarchical" else None,
                })
            if root:
                base = records[0]["t_max_us"]
                for rec in records:
                    rec["vs_native"] = base / rec["t_max_us"] if rec["t_max_us"] > 0 else None
                    rows.append(_row(rec))
                sections.append(len(rows) - 1)
                writer.append(records)
            any_wrong += sum(w or 0 for w in wrong.values())
            del send, recv, scratch
            clear_workspace()
    from distbench.collectives import hierarchical

    hierarchical.free_groups()
    if root:
        _emit(cfg, writer, rows, sections, env)
    if any_wrong:
        if root:
            print(f"Error: {any_wrong} wrong element(s); see the #wrong column", file=sys.stderr)
        return 1
    return 0


COLUMNS = [("size", "right"), ("count", "right"), ("algorithm", "left"),
           ("t_avg us", "right"), ("t_min us", "right"), ("t_max us", "right"),
           ("p99 us", "right"), ("algbw GB/s", "right"), ("busbw GB/s", "right"),
           ("x native", "right"), ("#wrong", "right")]


def _row(rec: dict) -> list[str]:
    return [fmt_bytes(rec["bytes"]), str(rec["count"]), rec["algorithm"],
            fmt_num(rec["t_avg_us"]), fmt_num(rec["t_min_us"]), fmt_num(rec["t_max_us"]),
            fmt_num(rec["p99_us"]), fmt_num(rec["algbw_gbps"]), fmt_num(rec["busbw_gbps"]),
            f"{rec['vs_native']:.2f}" if rec.get("vs_native") else "-",
            "-" if rec["wrong"] is None else str(rec["wrong"])]


def _emit(cfg, writer, rows, sections, env) -> None:
    if cfg.json:
        json.dump(writer.records, sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stdout.flush()
    if not cfg.quiet:
        caption = (env_line(env) + f"\nx native = t_max(native) / t_max(algorithm), measured "
                   f"interleaved; busbw = algbw * 2(p-1)/p; results: {writer.path}")
        print_table(f"AllReduce, {env['ranks']} ranks, {cfg.dtype}", COLUMNS, rows, caption,
                    stderr=cfg.json, sections=sections)


def require_known(algos: list[str]) -> list[str]:
    from distbench.collectives import ALLREDUCE

    if algos == ["all"]:
        return list(ALLREDUCE)
    unknown = [a for a in algos if a not in ALLREDUCE]
    if unknown:
        raise UsageError(f"unknown algorithm {unknown[0]!r} (choose from "
                         f"{', '.join(ALLREDUCE)} or all)")
    return algos

