"""``distbench compress``: what each gradient compressor costs (time), saves (bytes on the wire)
and loses (error), measured interleaved with the dense AllReduce, and the link bandwidth below
which it starts to pay off.

Per gradient size: a sequence of ``--steps`` synthetic gradients
(:class:`distbench.algorithms.compression.gradient_sequence.GradientSequence`)
goes through every method's compressed exchange (untimed) to measure the error of the mean per
step and the drift of its running sum; then the exchanges of the last gradient are timed
interleaved with the dense ``native`` and ``ring`` AllReduce and a plain copy of the gradient
(:func:`distbench.timing.time_interleaved`).

Metrics per method (records; the table shows most of them):

* ``wire_bytes``: payload bytes a rank contributes per exchange; ``compression_ratio`` =
  4d / wire_bytes; ``link_bytes``: bytes a rank sends on its link for the exchange
  (:func:`distbench.algorithms.compression.exchange.link_bytes`).
* ``compress_us``, ``exchange_us``, ``decompress_us``: mean over ranks and iterations of the
  phases (decompress includes summing the p payloads and dividing by p); ``t_*_us``, ``p*_us``
  of the whole exchange as in the AllReduce benchmark; ``vs_native``/``vs_ring`` = t_max of the
  dense AllReduce / t_max of the method (> 1: faster); ``compress_x_copy`` = compress time /
  time of one ``copyto`` of the gradient.
* ``step_error``: ``||mean_hat_t - mean_t|| / ||mean_t||`` per step; ``drift``:
  ``||sum_{s<=t} (mean_hat_s - mean_s)||`` in units of the average ``||mean_s||``, per step
  (what SGD with step size 1 would accumulate; bounded with error feedback).
* ``break_even_gbps``: (dense ring link bytes ``2(p-1)/p * 4d`` - the method's link bytes) /
  (compress + decompress time), in GB/s = 1e9 B/s: a bandwidth-bound dense AllReduce is slower
  than the method on links slower than this; 0 when the method saves no bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from distbench import watchdog
from distbench.algorithms.compression import COMPRESSORS
from distbench.algorithms.compression.exchange import compressed_exchange, link_bytes
from distbench.algorithms.compression.gradient_sequence import GradientSequence
from distbench.algorithms.compression.powersgd import matrix_shape
from distbench.algorithms.compression.spec import COMPRESSION, Compression
from distbench.analysis.answers import compress_answer
from distbench.analysis.tables import (
    COMPRESS_COLUMNS,
    STATS_CAPTION,
    compress_row,
    spikes_note,
)
from distbench.benchmarks import outline
from distbench.buffers import release_caches
from distbench.collectives import ALLREDUCE, get_allreduce
from distbench.command import Device, Iterations, Job, RunOptions, Sizes, seed_arg
from distbench.console import fmt_bytes
from distbench.declared import Names, arg, check, flatten, group
from distbench.errors import UsageError
from distbench.metrics import GB, parse_rate, summarize
from distbench.options import declared_command, given_names
from distbench.results import env_line
from distbench.runtime import get_backend, mpi
from distbench.timing import adaptive_iters, estimate_seconds

DENSE = ("native", "ring")  # dense baselines, when registered
BUDGET_S = 0.6  # timed seconds per (size, method) when -n is not given


@dataclass(kw_only=True)
class CompressConfig:
    """The options of ``distbench compress`` (sizes in bytes of a float32 gradient)."""

    methods: list = arg(["all"], "Comma-separated compressors (registered compression "
                        "methods, plug-ins included) or all.", type=Names(allow_all=True),
                        flags=("--method",), group=COMPRESSION)
    compression: Compression = group(Compression, skip=("method",))
    sizes: Sizes = group(Sizes, min_bytes=1 << 20, max_bytes=100 << 20, factor=10, help={
        "min_bytes": "Smallest gradient, in BYTES of float32 (elements = bytes / 4; K, M, G "
                     "suffixes are powers of 1024).",
        "max_bytes": "Largest gradient in bytes (100M = 25 Mi float32, about ResNet-50's)."})
    gradients: int = arg(6, "Gradients in the sequence per size (for the error columns).",
                         low=1, high=1 << 20, deprecated=("--steps",))
    iterations: Iterations = group(Iterations, warmup=0, help={
        "iters": "Timed iterations per size and method [default: 20, capped to ~0.6 s, at "
                 "least 3].",
        "warmup": "Extra untimed iterations per size and method before the timed ones (the "
                  "error steps and a first call of each dense AllReduce already warm up)."})
    allreduce: str = arg("native", "Registered AllReduce for summable payloads.")
    links: list = arg(["100mbit", "1gbit", "10gbit"], "Link rates the answer under the table "
                      "compares the methods at (measured compute time plus link bytes at the "
                      "rate): 100mbit, 1gbit, 25gbit, ...", type=Names(),
                      flags=("--link",), metavar="RATES")
    seed: int = seed_arg("Seed of the gradient sequence and the compressors.")
    device: Device = group(Device)
    run: RunOptions = group(RunOptions)

    def sizes_swept(self) -> list[int]:
        return self.sizes.sweep()

    def lower_bound_s(self) -> float:
        """An optimistic duration (s): per size, the error steps and the timed and warm-up
        exchanges of every method and baseline, each at least one pass over the gradient."""
        total = 0.0
        its = self.iterations
        for nbytes in self.sizes.sweep():
            t = outline.call_lower_bound(nbytes)
            iters = its.iters if its.iters is not None else adaptive_iters(t, 20, BUDGET_S,
                                                                           minimum=3)
            calls = len(self.methods) + len(DENSE) + 1
            total += t * (self.gradients * len(self.methods) + calls * (iters + its.warmup))
        return total


def validate(cfg: CompressConfig) -> None:
    """Checks that need no MPI. Raises UsageError with a one-line message."""
    check(cfg)
    cfg.compression.check(cfg.methods, "--method", given_names())
    ALLREDUCE.require([cfg.allreduce], "--allreduce", allow_all=False)
    for rate in cfg.links:
        if parse_rate(rate) is None:
            raise UsageError(f"--link {rate}: a link rate such as 1gbit ('none' has no rate)")
    cfg.sizes.check(4, "float32")
    if cfg.sizes.max_bytes // 4 >= 1 << 31:
        raise UsageError("gradients of 2**31 elements or more need int64 indices")
    outline.check_duration(cfg.lower_bound_s(), cfg.run.max_time, "this compression sweep")


def validate_mpi(cfg: CompressConfig, comm) -> None:
    """The device exists, and the largest size fits this node's memory (same verdict on all
    ranks)."""
    # 8 shared float32 vectors (sequence state, mean, reference, output, scratch) plus, per
    # method, the running error sum, the error-feedback memory and its p buffer, and the
    # gathered payloads of up to 4 ranks at 8 bits.
    per_rank = cfg.sizes.max_bytes * (8 + 4 * len(cfg.methods)) + (128 << 20)
    outline.check_device_and_memory(comm, cfg.device.device, per_rank,
                                    f"a {fmt_bytes(cfg.sizes.max_bytes)} gradient with "
                                    f"{len(cfg.methods)} methods")
    cfg.compression.check_fit(cfg.methods, comm.Get_size(),
                              [matrix_shape(s // 4) for s in cfg.sizes.sweep()],
                              "the gradients swept (each read as one matrix)")


def _norm(xp, v) -> float:
    return float(xp.linalg.norm(v))


def run(cfg: CompressConfig, comm, argv: list[str]) -> int:
    """Run the benchmark on every rank; returns the exit code."""
    run = outline.Run(comm, "compress", flatten(cfg), argv,
                      get_backend(cfg.device.device, cfg.device.gpu_aware, comm), cfg.run)
    xp, wcomm, sync, rank, p, root = run.xp, run.wcomm, run.sync, run.rank, run.size, run.root
    env, writer = run.env, run.writer
    deadline = time.monotonic() + cfg.run.max_time
    dense = [a for a in DENSE if a in ALLREDUCE]
    sizes = cfg.sizes.sweep()
    rows, sections = [], []
    with run.progress(len(sizes) * (cfg.gradients + 1), "compress") as adv:
        for nbytes in sizes:
            d = nbytes // 4
            seq = GradientSequence(xp, d, cfg.seed, rank)
            grad, mean, out = (xp.empty(d, dtype=np.float32) for _ in range(3))
            exchanges = {m: compressed_exchange(wcomm, cfg.compression.of(m), cfg.seed,
                                                cfg.allreduce) for m in cfg.methods}
            drift = {m: xp.zeros(d, dtype=np.float32) for m in cfg.methods}
            step_err = {m: [] for m in cfg.methods}
            sum_err = {m: [] for m in cfg.methods}
            spent = dict.fromkeys(cfg.methods, 0.0)
            norms = []
            size = fmt_bytes(nbytes)
            for step in range(cfg.gradients):
                watchdog.enter(f"compress at {size} (error step {step + 1})",
                               (len(exchanges) + 2) * 20 * outline.call_lower_bound(nbytes))
                seq.next(grad)
                wcomm.Allreduce(grad, mean)
                xp.divide(mean, p, out=mean)
                ref = _norm(xp, mean)
                norms.append(ref)
                unit = float(np.mean(norms))  # drift is measured in average gradients
                for m, ex in exchanges.items():
                    comm.Barrier()
                    t0 = time.perf_counter()
                    ex(grad, out)
                    spent[m] += time.perf_counter() - t0
                    xp.subtract(out, mean, out=out)
                    xp.add(drift[m], out, out=drift[m])
                    step_err[m].append(_norm(xp, out) / ref if ref else 0.0)
                    sum_err[m].append(_norm(xp, drift[m]) / unit if unit else 0.0)
                adv(1, f"compress {fmt_bytes(nbytes)}: error over steps")
            del drift
            # timed: the last gradient through every method and the dense AllReduce
            fns = {f"dense {a}": _bind(get_allreduce(a), wcomm, grad, out) for a in dense}
            phases = {m: [] for m in cfg.methods}
            fns.update({m: _recorder(ex, grad, out, phases[m]) for m, ex in exchanges.items()})
            fns["copy"] = _bind_copy(xp, grad, out)
            watchdog.enter(f"compress at {size} (estimate)", 20 * outline.call_lower_bound(nbytes))
            est = {n: estimate_seconds(comm, f, 1, sync) for n, f in fns.items()
                   if n not in exchanges}
            est.update({m: comm.allreduce(spent[m] / cfg.gradients, op=mpi().MAX)
                        for m in exchanges})
            iters = {n: cfg.iterations.iters or adaptive_iters(t, 20, BUDGET_S, minimum=3)
                     for n, t in est.items()}
            timed = outline.time_all(comm, fns, iters, dict.fromkeys(fns, cfg.iterations.warmup),
                             lambda n, size=size: f"compress {n} at {size}", est, sync,
                             cfg.iterations.target_ci, deadline)
            split = {m: {k: summarize(comm, np.array(
                [ph[k] for ph in phases[m][-timed.iters[m]:]]))
                for k in ("compress", "exchange", "decompress")} for m in exchanges}
            adv(1, f"compress {fmt_bytes(nbytes)}: timed")
            if root:
                recs = _records(cfg, env, nbytes, p, dense, exchanges, timed, split,
                                step_err, sum_err)
                rows += [compress_row(r) for r in recs]
                sections.append(len(rows) - 1)
                writer.append(recs)
            del seq, grad, mean, out, exchanges, fns
            release_caches()
    run.emit(f"Gradient compression, {p} ranks, float32, mean over ranks",
             COMPRESS_COLUMNS, rows, _caption(cfg, env, writer), sections,
             answer=lambda: compress_answer(writer.records, [parse_rate(r) for r in cfg.links]))
    return 0


def _bind(fn, comm, send, recv):
    return lambda: fn(comm, send, recv)


def _bind_copy(xp, src, dst):
    return lambda: xp.copyto(dst, src)


def _recorder(ex, grad, out, log):
    def call():
        ex(grad, out)
        log.append(ex.seconds)

    return call


def _records(cfg, env, nbytes, p, dense, exchanges, timed, split, step_err, sum_err
             ) -> list[dict]:
    """Result records of one size (rank 0)."""
    stats, iters = timed.stats, timed.iters
    has_ring = "dense ring" in stats

    def ratios(name) -> dict:
        return {"vs_native_ci": timed.ratio_ci("dense native", name),
                "vs_ring_ci": timed.ratio_ci("dense ring", name) if has_ring else None}

    d = nbytes // 4
    dense_link = link_bytes(nbytes, p, True)
    t_native = stats["dense native"]["t_max_us"]
    t_ring = stats["dense ring"]["t_max_us"] if "dense ring" in stats else None
    t_copy = stats["copy"]["t_avg_us"]
    common = {"benchmark": "compress", "bytes": nbytes, "count": d, "dtype": "float32",
              "ranks": p, "device": env["device"], "allreduce": cfg.allreduce}
    recs = []
    for a in dense:
        st = stats[f"dense {a}"]
        recs.append({**common, "method": f"dense {a}", "compressor": None,
                     "error_feedback": False, "iters": iters[f"dense {a}"],
                     **{k: v for k, v in st.items() if k != "iters"},
                     "wire_bytes": nbytes, "link_bytes": dense_link, "compression_ratio": 1.0,
                     "vs_native": t_native / st["t_max_us"],
                     "vs_ring": t_ring / st["t_max_us"] if t_ring else None,
                     **ratios(f"dense {a}")})
    for m, ex in exchanges.items():
        st, ph = stats[m], split[m]
        comp = ex.compressor
        wire = comp.payload_bytes(d)
        link = link_bytes(wire, p, comp.allreduced)
        added = (ph["compress"]["t_avg_us"] + ph["decompress"]["t_avg_us"]) * 1e-6
        saved = dense_link - link
        recs.append({
            **common, "method": comp.describe(), "compressor": m,
            "source": COMPRESSORS.source(m),
            "error_feedback": ex.error_feedback, **cfg.compression.takes(m),
            "iters": iters[m], **{k: v for k, v in st.items() if k != "iters"},
            **{f"{k}_us": ph[k]["t_avg_us"] for k in ph},
            **{f"{k}_us_ci": ph[k]["t_avg_us_ci"] for k in ph},
            "compress_x_copy": ph["compress"]["t_avg_us"] / t_copy,
            "decompress_x_copy": ph["decompress"]["t_avg_us"] / t_copy,
            "wire_bytes": wire, "link_bytes": link, "compression_ratio": nbytes / wire,
            "vs_native": t_native / st["t_max_us"],
            "vs_ring": t_ring / st["t_max_us"] if t_ring else None, **ratios(m),
            "step_error": step_err[m], "drift": sum_err[m],
            "mean_step_error": float(np.mean(step_err[m])), "final_drift": sum_err[m][-1],
            "break_even_gbps": (saved / added / GB if added > 0 else None)
            if saved > 0 else 0.0,
        })
    return recs


def _caption(cfg, env, writer) -> str:
    return (
        f"{env_line(env)}\nwire B/rank: payload bytes a rank contributes; ratio = dense / wire "
        f"bytes. Times: mean over ranks (compress, exchange, decompress incl. summing the p "
        f"payloads) and t_max of the whole exchange; x native / x ring = dense t_max / t_max "
        f"(> 1: faster), measured interleaved.\nerr/step: mean over {cfg.gradients} steps of "
        f"||mean_hat - mean|| / ||mean||; drift: ||sum_t (mean_hat - mean)|| after the last "
        f"step, in units of the average ||mean|| (bounded with error feedback, +EF; growing "
        f"without it for biased methods).\nbreak-even: (dense "
        f"ring link bytes 2(p-1)/p*S - the method's link bytes) / (compress + decompress "
        f"time); on links slower than this the method beats a dense AllReduce.\n"
        f"{STATS_CAPTION}\n"
        + "".join(f"{n}\n" for n in [spikes_note(writer.records, "method")] if n)
        + f"results: {writer.path}")


def _compress(cfg: CompressConfig) -> Job:
    names = COMPRESSORS.require(cfg.methods, "--method")
    cfg = replace(cfg, methods=names)
    validate(cfg)
    return Job("compress", flatten(cfg), lambda comm, argv, _: run(cfg, comm, argv),
               options=cfg.run, validate=lambda comm: validate_mpi(cfg, comm))


compress_command = declared_command(
    "compress", CompressConfig, _compress,
    doc="""Gradient compression: bytes saved, time spent and error made by each compressor,
    against the dense AllReduce (native and ring), and its break-even link bandwidth.""",
    examples=["mpirun -n 4 distbench compress", "mpirun -n 4 distbench compress --method "
              "topk,qsgd -b 1M -e 16M",
              "mpirun -n 2 distbench compress --method sign --no-error-feedback"])
