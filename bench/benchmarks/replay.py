"""``distbench replay TRACE...``: a real job's communication, replayed from its trace
(:mod:`distbench.traces`) through the library's calls or any registered algorithm, timed,
counted and checked.

Every rank replays its ops in trace order, ``--iters`` times after ``--warmup``: each
collective on the communicator of its process group (built once per group), through the
algorithm ``--algo`` names for its collective (the library's call by default); an op a ``wait``
completes is started nonblocking and completed there; send and receive are nonblocking and
completed at their wait or before the next op. The trace's dtype and sizes are kept (counts
rounded down to what the collective needs, said in the caption); ``--ranks N`` replays a trace
recorded at another rank count at the job's N with each op's payload kept (all-to-all-v's
splits spread evenly). Before the timed iterations one untimed pass checks every op against
the exact result, as the sweeps do, and the bytes each rank hands to MPI are counted
(``CountingComm``; the library's own traffic is not visible: its ops count their send
buffers). ``--compare C ...`` replays the whole trace under each choice too, interleaved with
the first, and ranks the choices by time per iteration with paired intervals.

Records (``kind``): ``op`` (per op and choice: time with interval, bytes, wrong elements),
``collective`` (per collective type and choice: count, bytes, total time, share of the
iteration), ``iteration`` (per choice: time per iteration with its interval, bytes per rank
counted and from the trace), ``unknown`` (op names not replayed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
import numpy as np

from distbench import watchdog
from distbench.analysis.answers import replay_answer
from distbench.analysis.tables import (
    REPLAY_COLUMNS,
    REPLAY_OP_COLUMNS,
    replay_op_rows,
    replay_rows,
)
from distbench.benchmarks import outline
from distbench.check import Segment, fill_segments, input_table, mismatches
from distbench.collectives import collective_names, get_collective
from distbench.collectives.words import typed_comm
from distbench.comm import CountingComm
from distbench.command import Device, Iterations, Job, RunOptions
from distbench.console import fmt_bytes
from distbench.declared import Names, arg, flatten, group
from distbench.errors import UsageError, eprint
from distbench.metrics import summarize
from distbench.options import declared_command
from distbench.runtime import get_backend, mpi
from distbench.traces import Trace, TraceOp, read_trace

REPLAYED = set(collective_names()) | {"barrier", "send", "recv"}
DTYPES = ("float16", "bfloat16", "float32", "float64", "int16", "int32", "int64")


@dataclass(kw_only=True)
class ReplayConfig:
    """The options of ``distbench replay`` (the trace files are its arguments)."""

    algo: list | None = arg(None, "COLLECTIVE=ALGORITHM pairs, comma-separated: that "
                            "collective's ops through that registered algorithm (e.g. "
                            "allreduce=ring,bcast=binomial) [default: the library's call for "
                            "every op].", type=Names(), metavar="C=A,...")
    compare: tuple = arg((), "Also replay the whole trace under this choice (C=A pairs, or "
                         "native: the library everywhere), interleaved with --algo's, and rank "
                         "them (repeatable).", multiple=True, metavar="CHOICE")
    ranks: int | None = arg(None, "The job's rank count, to replay a trace recorded at another "
                            "one: each op keeps its payload.", type=int, low=1, high=1 << 20)
    strict: bool = arg(False, "An op this replay does not know is an error [default: a "
                       "warning line for each name, counted in the summary].")
    check: bool = arg(True, "Check every op against the exact result first (untimed).",
                      negatable=True)
    iterations: Iterations = group(Iterations, skip=("target_ci",), help={
        "iters": "Timed replays of the whole trace [default: 20].",
        "warmup": "Untimed replays first [default: 2]."})
    device: Device = group(Device)
    run: RunOptions = group(RunOptions)


# ----------------------------------------------------------------------------- choices

def parse_choice(text: str | list | None) -> dict[str, str]:
    """``allreduce=ring,bcast=binomial`` (or its list) -> {collective: algorithm}; ``native``
    or nothing: {} (the library everywhere).

    Raises:
        UsageError: an item that is not C=A, an unknown collective or algorithm.
    """
    items = text if isinstance(text, list) else [t for t in str(text or "").split(",") if t]
    out = {}
    for item in items:
        if item == "native":
            continue
        coll, sep, algo = item.partition("=")
        if not sep or not algo:
            raise UsageError(f"--algo / --compare take COLLECTIVE=ALGORITHM pairs (e.g. "
                             f"allreduce=ring), not {item!r}")
        if coll not in collective_names():
            raise UsageError(f"unknown collective {coll!r} in {item!r} (choose "
                             f"{', '.join(collective_names())})")
        get_collective(coll).registry.require([algo], f"{coll}=", allow_all=False)
        out[coll] = algo
    return out


def choice_name(choice: dict[str, str]) -> str:
    """``native`` or ``allreduce=ring,bcast=binomial``."""
    return ",".join(f"{c}={a}" for c, a in sorted(choice.items())) or "native"


# ----------------------------------------------------------------------------- the plan

@dataclass
class Planned:
    """One op made ready on this rank: its collective, communicator, buffers and call."""

    op: TraceOp
    comm: object          # the group's (counted) communicator, None off the group
    count: int            # distbench's count (the collective's convention)
    send: object = None
    recv: object = None
    expected: list | None = None
    send_inputs: list | None = None
    recv_inputs: list | None = None
    kwargs: dict | None = None
    note: str = ""


def _distbench_count(op: TraceOp, g: int) -> tuple[int, str]:
    """The op's count in distbench's convention for a group of g ranks (rounded down to
    what the collective needs), and a note when it was rounded."""
    c = op.collective
    if c == "allgather":
        n = op.out_count or op.count * g
    elif c == "reduce-scatter":
        n = op.count or op.out_count * g
    else:
        n = op.count
    if c in collective_names():
        m = max(1, get_collective(c).count_multiple(g))
        if c == "alltoallv":
            m = 1
        if n % m:
            return n // m * m, f"op {op.index}: {n} elements rounded down to {n // m * m}"
    return n, ""


def _rescaled(ops: list[TraceOp], recorded: int, ranks: int) -> list[TraceOp]:
    """The ops of a trace recorded at ``recorded`` ranks for ``ranks``: groups of the whole
    job become the whole job; all-to-all-v's splits spread evenly; payloads kept.

    Raises:
        UsageError: a sub-group (it has no counterpart at another rank count).
    """
    out = []
    for o in ops:
        if o.group and len(o.group) not in (recorded, ranks):
            raise UsageError(f"op {o.index} runs on a group of {len(o.group)} of the trace's "
                             f"{recorded} ranks: --ranks rescales only whole-job groups")
        group = list(range(ranks)) if o.group else []
        ins = [sum(o.in_split) // ranks] * ranks if o.in_split else []
        outs = [sum(o.out_split) // ranks] * ranks if o.out_split else []
        out.append(TraceOp(o.index, o.collective, o.dtype, o.count, o.out_count, ins, outs,
                           group, min(o.root, ranks - 1), o.name, o.nonblocking))
    return out


class Replayer:
    """One rank's replay of a trace: the group communicators (counted), the buffers of the
    largest op, each op planned (count, buffers, inputs, expected result) and the calls of
    each choice."""

    def __init__(self, comm, trace: Trace, ops: list[TraceOp], xp, strict: bool):
        self.comm, self.xp = comm, xp
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.groups: dict = {}  # global ranks -> the group's CountingComm (None: not in it)
        self.ops = [o for o in ops if o.collective in REPLAYED or o.collective == "wait"]
        self.skipped = [o for o in ops if o not in self.ops]
        if self.skipped and strict:
            raise UsageError(f"--strict: op {self.skipped[0].index} is a "
                             f"{self.skipped[0].collective!r}, which replay does not run")
        self.plans = [self._plan(o) for o in self.ops if o.collective != "wait"]
        self.notes = [p.note for p in self.plans if p.note]
        self._cached: dict = {}

    def _group(self, ranks: tuple):
        """The counted communicator of a process group (collective over ``comm``: every rank
        builds every group once, in the same order)."""
        if not ranks:
            ranks = tuple(range(self.size))
        if ranks not in self.groups:
            if list(ranks) == list(range(self.size)):
                self.groups[ranks] = CountingComm(self.comm.Dup())
            else:
                grp = self.comm.Get_group().Incl(list(ranks))
                sub = self.comm.Create(grp)
                grp.Free()
                self.groups[ranks] = CountingComm(sub) if sub != mpi().COMM_NULL else None
        return self.groups[ranks]

    def _plan(self, op: TraceOp) -> Planned:
        ranks = tuple(op.group)
        if ranks and max(ranks) >= self.size:
            raise UsageError(f"op {op.index} names rank {max(ranks)} of a job of {self.size} "
                             "ranks (give --ranks to rescale a trace recorded elsewhere)")
        comm = self._group(ranks)
        if op.dtype not in DTYPES:
            raise UsageError(f"op {op.index}: dtype {op.dtype} is not one the collectives "
                             f"take ({', '.join(DTYPES)})")
        if comm is None or op.collective in ("barrier", "send", "recv"):
            return Planned(op, comm, op.count)
        g, grank = comm.Get_size(), comm.Get_rank()
        count, note = _distbench_count(op, g)
        decl = get_collective(op.collective)
        dtype = np.dtype("uint16") if op.dtype == "bfloat16" else np.dtype(op.dtype)
        if op.dtype == "bfloat16":
            from ml_dtypes import bfloat16

            dtype = np.dtype(bfloat16)
        root = min(op.root, g - 1)
        kwargs = {}
        if op.collective == "alltoallv":
            sc = op.in_split or [count // g] * g
            every = comm.comm.allgather(sc)
            rc = [every[j][grank] for j in range(g)]
            n_send, n_recv = sum(sc), sum(rc)
            kwargs = {"sendcounts": sc, "recvcounts": rc}
            send_in, recv_in = [Segment(0, n_send, input_table(grank), 0)], []
            expected, lo = [], 0
            for j in range(g):
                expected.append(Segment(lo, lo + rc[j], input_table(j), sum(every[j][:grank])))
                lo += rc[j]
        else:
            n_send, n_recv = decl.buffers(count, g, grank, root)
            send_in, recv_in = decl.inputs(count, g, grank, root, "sum")
            expected = decl.expected(count, g, grank, root, "sum")
        send = self.xp.zeros(max(n_send, 0), dtype=dtype)
        recv = self.xp.zeros(max(n_recv, 0), dtype=dtype)
        return Planned(op, typed_comm(comm, dtype), count, send, recv, expected, send_in,
                       recv_in, kwargs, note)

    def bytes_by_group(self) -> dict[str, int]:
        """Bytes this rank handed to MPI to send so far, per group it is in (``"0,2"``: the
        group's global ranks)."""
        return {",".join(map(str, k)): c.bytes_sent + c.collective_bytes
                for k, c in self.groups.items() if c is not None}

    def reset(self) -> None:
        for c in self.groups.values():
            if c is not None:
                c.reset()

    def free(self) -> None:
        """Free the group communicators (collective)."""
        for c in self.groups.values():
            if c is not None:
                c.comm.Free()
        self.groups = {}

    def calls(self, choice: dict[str, str]) -> list:
        """(plan, its start) per op in trace order for ``choice``; a wait as (its op, None)."""
        by_index = {p.op.index: p for p in self.plans}
        return [(by_index.get(o.index), self._call(by_index[o.index], choice))
                if o.collective != "wait" else (o, None) for o in self.ops]

    def _call(self, p: Planned, choice: dict):
        """A zero-argument callable starting ``p``'s op; it returns a request-like object
        (``Wait``) or None when the call completed."""
        op, comm = p.op, p.comm
        if comm is None:
            return lambda: None
        if op.collective == "barrier":
            return comm.Barrier
        if op.collective in ("send", "recv"):
            buf = self.xp.zeros(op.count, dtype=np.dtype(op.dtype))
            if op.collective == "send":
                return lambda: comm.Isend(buf, op.root, 0x7E)
            return lambda: comm.Irecv(buf, op.root, 0x7E)
        decl = get_collective(op.collective)
        name = choice.get(op.collective, decl.baseline)
        spec = decl.registry.spec(name)
        fn = spec.start if op.nonblocking and spec.start is not None else spec.fn
        g = comm.Get_size()
        root = min(op.root, g - 1)
        if p.kwargs:
            kw = p.kwargs
            return lambda: fn(comm, p.send, p.recv, **kw)
        call = decl.invoke(fn, comm, p.send, p.recv, comm.Get_rank(), root, None)
        return call

    def check(self, choice: dict) -> dict[int, int]:
        """Wrong elements per op index (this rank) under ``choice``: every op once on its
        exact inputs, untimed."""
        wrong = {}
        for p, start in self.calls(choice):
            if start is None:
                continue  # a wait: its op was completed at once here
            if p.expected is None:
                req = start()
                if req is not None:
                    req.Wait()
                continue
            fill_segments(p.send, p.send_inputs)
            p.recv.fill(0)
            fill_segments(p.recv, p.recv_inputs)  # a broadcast's root: the message
            req = start()
            if req is not None and hasattr(req, "Wait"):
                req.Wait()
            wrong[p.op.index] = mismatches(p.recv, p.expected)
        return wrong

    def entries(self, choice: dict, log: dict) -> list:
        """The replay loop's flat program for ``choice``: per op (start, mode, its index, the
        append of its log): mode 0 completes in the call, 1 returns a request to wait for
        now, 2 a request its wait completes (or the iteration's end), 3 is that wait."""
        out = []
        for p, start in self.calls(choice):
            if start is None:
                if p.completes is not None:
                    out.append((None, 3, p.completes, log[p.completes].append))
                continue
            nonblocking = p.op.nonblocking or p.op.collective in ("send", "recv")
            returns = nonblocking or p.comm is not None and (
                p.op.collective in collective_names() and p.op.nonblocking)
            mode = 2 if nonblocking else (1 if returns else 0)
            out.append((start, mode, p.op.index, log[p.op.index].append))
        return out

    def iteration(self, choice: dict, log: dict | None = None) -> None:
        """One replay of the trace under ``choice``; each op's seconds appended to
        ``log[index]`` (issue to completion; None: not logged). One clock read per op: an
        op's end is the next one's start."""
        if log is None:
            log = {p.op.index: [] for p in self.plans}
        key = (choice_name(choice), id(log))
        prog = self._cached.get(key)
        if prog is None:
            prog = self._cached[key] = self.entries(choice, log)
        pending = {}
        t = time.perf_counter
        now = t()
        for start, mode, idx, add in prog:
            if mode == 0:
                start()
            elif mode == 2:
                pending[idx] = (start(), now)
                now = t()
                continue
            elif mode == 3:
                req, issued = pending.pop(idx, (None, now))
                if req is not None:
                    req.Wait()
                end = t()
                add(end - issued)
                now = end
                continue
            else:
                start().Wait()
            end = t()
            add(end - now)
            now = end
        for idx, (req, issued) in pending.items():  # no wait in the trace: at the end
            req.Wait()
            log[idx].append(t() - issued)

    def bytes_of(self, choice: dict) -> dict[str, int]:
        """Bytes this rank hands to MPI in one replay under ``choice``, per group
        (collective)."""
        self.reset()
        self.iteration(choice)
        return self.bytes_by_group()


# ----------------------------------------------------------------------------- the run

def _trace(paths) -> Trace:
    return read_trace(list(paths))


def _ops_for(trace: Trace, size: int, rank: int, ranks: int | None) -> list[TraceOp]:
    recorded = trace.ranks or (len(trace.per_rank) if len(trace.per_rank) > 1 else size)
    if len(trace.per_rank) > 1 and len(trace.per_rank) != size and ranks is None:
        raise UsageError(f"the trace has {len(trace.per_rank)} ranks' files, the job {size} "
                         "ranks")
    if recorded != size:
        if ranks is None:
            raise UsageError(f"the trace was recorded at {recorded} ranks, the job has {size}"
                             f" (give --ranks {size} to replay it here with each op's payload "
                             "kept)")
        if ranks != size:
            raise UsageError(f"--ranks {ranks} is not the job's {size} ranks")
        return _rescaled(trace.ops(rank), recorded, size)
    return trace.ops(rank)


def validate(cfg: ReplayConfig, traces) -> Trace:
    """Checks without MPI: the choices, the trace files read and parsed. Raises
    UsageError."""
    parse_choice(cfg.algo)
    for c in cfg.compare:
        parse_choice(c)
    trace = _trace(traces)
    if cfg.strict and trace.unknown:
        name = sorted(trace.unknown)[0]
        raise UsageError(f"--strict: the trace has {trace.unknown[name]} op(s) {name!r}, "
                         "which replay does not know")
    return trace


def validate_mpi(cfg: ReplayConfig, trace: Trace, comm):
    """The trace fits the job and the node's memory (the largest op's buffers, before any
    allocation). Returns this rank's ops."""
    size, rank = comm.Get_size(), comm.Get_rank()
    ops = _ops_for(trace, size, rank, cfg.ranks)
    biggest = max((o.nbytes for o in ops), default=0)
    outline.check_device_and_memory(comm, cfg.device.device, 4 * biggest * 2 + (64 << 20),
                                    f"the trace's largest op ({fmt_bytes(biggest)})")
    return ops


def run(cfg: ReplayConfig, trace: Trace, comm, ops: list[TraceOp], argv) -> int:
    backend = get_backend(cfg.device.device, cfg.device.gpu_aware, comm)
    run_ = outline.Run(comm, "replay", {**flatten(cfg), "trace": trace.source}, argv, backend,
                       cfg.run, extra_env={"trace": trace.source,
                                           "trace_format": trace.format})
    rp = Replayer(run_.wcomm, trace, ops, run_.xp, cfg.strict)
    if run_.root:
        for name, n in sorted(trace.unknown.items()):
            eprint(f"Warning: {n} op(s) {name!r} not replayed")
        for o in rp.skipped:
            eprint(f"Warning: op {o.index} ({o.name or o.collective}) not replayed")
    choices = [parse_choice(cfg.algo)] + [parse_choice(c) for c in cfg.compare]
    names = list(dict.fromkeys(choice_name(c) for c in choices))
    choices = {choice_name(c): c for c in choices}
    wrong = {}
    if cfg.check:
        for n in names:
            watchdog.enter(f"replay check ({n})", 10.0)
            mine = rp.check(choices[n])
            checked = [p.op.index for p in rp.plans if p.expected is not None or
                       p.comm is None and p.op.collective in collective_names()]
            counts = np.array([mine.get(i, 0) for i in checked], dtype=np.int64)
            total = np.zeros_like(counts)
            run_.wcomm.Allreduce(counts, total)  # every rank, the same ops: one vector
            wrong[n] = dict(zip(checked, total.tolist(), strict=True))
    iters = cfg.iterations.iters or 20
    warm = 2 if cfg.iterations.warmup is None else cfg.iterations.warmup
    logs = {n: {p.op.index: [] for p in rp.plans} for n in names}
    calls = {n: (lambda n=n: rp.iteration(choices[n], logs[n])) for n in names}
    per_call = {n: max(1e-3, 10 * sum(outline.call_lower_bound(o.nbytes) for o in ops))
                for n in names}
    timed = outline.time_all(run_.wcomm, calls, dict.fromkeys(names, iters),
                             dict.fromkeys(names, warm), lambda n: f"replay ({n})", per_call,
                             run_.sync)
    sent = {n: run_.wcomm.gather(rp.bytes_of(choices[n]), root=0) for n in names}
    rp.free()
    records = _records(run_, rp, names, choices, logs, timed, wrong, iters, sent, trace)
    if run_.root:
        run_.writer.append(records)
        ops_rows = replay_op_rows(records)
        run_.table(f"Replay per op: {trace.source.split('/')[-1]}", REPLAY_OP_COLUMNS,
                   ops_rows, "t_max: issue to completion, the slowest rank (± half the 95 % "
                   "interval); ~: nonblocking, completed at the trace's wait")
    rows, sections = replay_rows(records) if run_.root else ([], [])
    run_.emit(f"Replay of {trace.source.split('/')[-1]} ({trace.format}), {run_.size} ranks",
              REPLAY_COLUMNS, rows, _caption(run_, rp, trace, names) if run_.root else "",
              sections, answer=lambda: replay_answer(records))
    bad = sum(sum(w.values()) for w in wrong.values())
    if bad and run_.root:
        eprint(f"Error: {bad} wrong element(s) in the replayed ops; see #wrong")
    return 1 if bad else 0


def _records(run_, rp: Replayer, names, choices, logs, timed, wrong, iters, sent,
             trace) -> list:
    """The op, collective and iteration records (rank 0; collective: every rank calls it)."""
    out = []
    for n in names:
        per_op = {}
        for p in rp.plans:
            times = np.asarray(logs[n][p.op.index][-iters:], dtype=np.float64)
            per_op[p.op.index] = summarize(run_.wcomm, times)
        if not run_.root:
            continue
        it = timed.stats[n]
        total_us = it["t_max_us"]
        by_coll: dict = {}
        for p in rp.plans:
            st, o = per_op[p.op.index], p.op
            out.append({
                "benchmark": "replay", "kind": "op", "choice": n, "index": o.index,
                "collective": o.collective, "name": o.name, "dtype": o.dtype, "count": o.count,
                "out_count": o.out_count, "bytes": o.nbytes, "ranks": run_.size,
                "group_size": len(o.group) or run_.size, "nonblocking": o.nonblocking,
                "algorithm": choices[n].get(o.collective, "native"),
                "t_max_us": st["t_max_us"], "t_max_us_ci": st["t_max_us_ci"],
                "p50_us": st["p50_us"], "wrong": (wrong.get(n) or {}).get(o.index)})
            c = by_coll.setdefault(o.collective, {"ops": 0, "bytes": 0, "time_us": 0.0})
            c["ops"] += 1
            c["bytes"] += o.nbytes
            c["time_us"] += st["p50_us"]
        for coll, c in by_coll.items():
            out.append({"benchmark": "replay", "kind": "collective", "choice": n,
                        "collective": coll, "algorithm": choices[n].get(coll, "native"),
                        **c, "share": c["time_us"] / total_us if total_us else None,
                        "ranks": run_.size})
        out.append({"benchmark": "replay", "kind": "iteration", "choice": n,
                    "t_max_us": total_us, "t_max_us_ci": it.get("t_max_us_ci"),
                    "p50_us": it["p50_us"], "iters": iters, "ranks": run_.size,
                    "trace_bytes": int(sum(p.op.nbytes for p in rp.plans)),
                    "bytes_sent_per_rank": [int(sum(g.values())) for g in sent[n]],
                    "bytes_by_group": sent[n],
                    "vs_first": (timed.stats[names[0]]["t_max_us"] / total_us
                                 if total_us else None),
                    "vs_first_ci": timed.ratio_ci(names[0], n),
                    "unknown": sum(trace.unknown.values()) + len(rp.skipped)})
    return out


def _caption(run_, rp: Replayer, trace: Trace, names) -> str:
    from distbench.results import env_line

    notes = rp.notes[:3] + ([f"and {len(rp.notes) - 3} more rounded"] if len(rp.notes) > 3
                            else [])
    return (f"{env_line(run_.env)}\ntrace: {trace.source} ({trace.format}); "
            f"{len(rp.plans)} ops replayed, {sum(trace.unknown.values()) + len(rp.skipped)} "
            f"not; nonblocking = completed at the trace's wait\nt_max per op: issue to "
            f"completion, the slowest rank, median of the iterations' (± half the 95 % "
            f"interval); choices: {', '.join(names)}"
            + (f"\n{'; '.join(notes)}" if notes else "")
            + f"\nresults: {run_.writer.path}")


def _replay(cfg: ReplayConfig, traces: tuple) -> Job:
    trace = validate(cfg, traces)
    return Job("replay", {**flatten(cfg), "traces": list(traces)},
               lambda comm, argv, ops: run(cfg, trace, comm, ops, argv), options=cfg.run,
               validate=lambda comm: validate_mpi(cfg, trace, comm))


replay_command = declared_command(
    "replay", ReplayConfig, _replay,
    doc="""A real job's communication from its trace (PyTorch execution trace, PARAM's
    comms trace or distbench's own), replayed through the library's calls or any
    registered algorithm: per op and per collective time with intervals, bytes counted,
    every op checked. TRACE: one file (every rank's view), one per rank, or a folder.""",
    examples=["mpirun -n 2 distbench replay trace.json.gz",
              "mpirun -n 2 distbench replay trace.json.gz --algo allreduce=ring "
              "--compare native",
              "mpirun -n 4 distbench replay trace.json.gz --ranks 4"],
    extra=[click.Argument(["traces"], nargs=-1, required=True, type=click.Path())])

__all__ = ["ReplayConfig", "Replayer", "choice_name", "parse_choice", "replay_command", "run"]
