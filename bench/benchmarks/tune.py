"""``distbench tune``: from measurements to a decision, written as the tuning files the
libraries read.

For each collective (default: the six of MPI), each rank count (the job's, and with ``--ranks
2,4,...`` communicators of its first k ranks) and each size, every candidate is timed
interleaved, paired against the library's default decision, after a check against the exact
result: the library's default, each algorithm the library lists for that collective forced
(Open MPI's ``coll_tuned``, through MPI_T on a communicator of its own:
:mod:`distbench.mpit`), and distbench's hand-written algorithms. The decision
(:mod:`distbench.tuning`) switches away from the default only where the paired interval
says the candidate is faster; adjacent sizes with the same choice merge into ranges. It is
written into the run folder as an Open MPI rules file (``ompi_rules.txt``: the library's
algorithms only), an MPICH selection JSON (``mpich_selection.json``) and distbench's own
table (``distbench_tuning.json``: for ``--algo auto``).

Also measured, after Hunold and Carpen-Amarie's self-consistency guidelines (PGMPI, 2016):
the library's Allreduce against Reduce + Bcast and Reduce_scatter_block + Allgather, its Bcast
against Scatter + Allgather, its Reduce against Allreduce, flagged where the library's call
is significantly slower than the composition of its own calls; and sizes where its time is
significantly not monotone. ``--holdout`` decides on every other size and reports the mean
penalty on the rest against the per-size best. ``distbench tune --verify RUN`` (no launcher)
launches the library with the rules file and without, round-robin, and reports default /
tuned per size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distbench import watchdog
from distbench.analysis.answers import tune_answer
from distbench.analysis.tables import TUNE_COLUMNS, VERIFY_COLUMNS
from distbench.benchmarks import outline
from distbench.check import fill_segments, mismatches
from distbench.collectives import collective_names, get_collective
from distbench.command import Iterations, Job, RunOptions, Sizes
from distbench.console import fmt_bytes, fmt_num, print_table
from distbench.declared import Names, Numbers, arg, flatten, group
from distbench.errors import UsageError, eprint
from distbench.mpit import OMPI, ControlVariables, library_algorithms
from distbench.options import declared_command
from distbench.runtime import get_backend, mpi
from distbench.tuning import (
    DEFAULT,
    decide,
    held_out_penalty,
    mpich_json,
    ompi_rules,
    parse_ompi_rules,
    table_document,
)

TUNED = ("allreduce", "reduce-scatter", "allgather", "bcast", "reduce", "alltoall")


@dataclass(kw_only=True)
class TuneConfig:
    """The options of ``distbench tune``."""

    collectives: list = arg(list(TUNED), "Comma list of collectives to tune.", type=Names(),
                            flags=("--collective",), metavar="NAMES")
    sizes: Sizes = group(Sizes, min_bytes=8, max_bytes=1 << 20, factor=8)
    ranks: list | None = arg(None, "Rank counts to tune: communicators of the job's first k "
                             "ranks [default: the job's size].", type=Numbers(int, low=1),
                             metavar="K,...")
    hand_written: bool = arg(True, "Include distbench's hand-written algorithms as "
                             "candidates (they go in distbench's table, not the libraries' "
                             "files).", negatable=True)
    holdout: bool = arg(False, "Decide on every other size and report the mean penalty on "
                        "the others against the per-size best.")
    verify: str | None = arg(None, "Launch the library with RUN's rules file and without, "
                             "round-robin, and report default / tuned per size (run without "
                             "mpirun: it launches the job itself).", metavar="RUN")
    verify_ranks: int = arg(2, "--verify: the ranks to launch.", low=1, high=1 << 10)
    verify_rounds: int = arg(3, "--verify: launches of each, alternating.", low=1, high=100)
    iterations: Iterations = group(Iterations, skip=("target_ci",))
    run: RunOptions = group(RunOptions)


# ----------------------------------------------------------------------------- measuring

def _compositions(decl, comm, send, recv, count: int, k: int) -> dict:
    """The library's own calls composed into the collective (PGMPI's guidelines)."""
    xp = np
    out = {}
    if decl.name == "allreduce":
        def reduce_bcast():
            comm.Reduce(send, recv, root=0)
            comm.Bcast(recv, 0)
        out["compose:reduce+bcast"] = reduce_bcast
        if count % k == 0:
            tmp = xp.empty(count // k, dtype=send.dtype)

            def rs_ag():
                comm.Reduce_scatter_block(send, tmp)
                comm.Allgather(tmp, recv)
            out["compose:reduce_scatter+allgather"] = rs_ag
    elif decl.name == "bcast" and count % k == 0:
        tmp = xp.empty(count // k, dtype=recv.dtype)

        def scatter_ag():
            comm.Scatter(recv, tmp, 0)
            comm.Allgather(tmp, recv)
        out["compose:scatter+allgather"] = scatter_ag
    elif decl.name == "reduce":
        # the root's result in recv; the others need a receive buffer of their own
        full = recv if recv.shape == send.shape else xp.empty_like(send)
        out["compose:allreduce"] = lambda: comm.Allreduce(send, full)
    return out


def _measure_size(decl, sub, comms: dict, hand: list[str], nbytes: int, cfg, label):
    """One size of one collective on ``sub``: every candidate checked then timed
    interleaved; (records on sub's rank 0, wrong elements per candidate)."""
    k, rank = sub.Get_size(), sub.Get_rank()
    count = decl.count(nbytes, 4, k)
    n_send, n_recv = decl.buffers(count, k, rank, 0)
    send_in, recv_in = decl.inputs(count, k, rank, 0, "sum")
    expected = decl.expected(count, k, rank, 0, "sum")
    send, recv = np.zeros(n_send, np.float32), np.zeros(n_recv, np.float32)
    native = decl.registry.spec(decl.baseline).fn
    calls = {c: decl.invoke(native, comm, send, recv, rank, 0, None) for c, comm in
             comms.items()}
    for name in hand:
        calls[name] = decl.invoke(decl.registry.spec(name).fn, sub, send, recv, rank, 0, None)
    extra = _compositions(decl, comms[DEFAULT], send, recv, count, k)
    wrong = {}
    for name, call in {**calls, **extra}.items():
        watchdog.enter(f"{label(name)} (check)", 8 * outline.call_lower_bound(nbytes))
        fill_segments(send, send_in)
        recv.fill(0)
        fill_segments(recv, recv_in)
        call()
        wrong[name] = sub.allreduce(mismatches(recv, expected))
    fill_segments(send, send_in)
    fill_segments(recv, recv_in)
    every = {**calls, **extra}
    iters = cfg.iterations.iters or 30
    warm = 2 if cfg.iterations.warmup is None else cfg.iterations.warmup
    per_call = {n: 4 * outline.call_lower_bound(nbytes) for n in every}
    timed = outline.time_all(sub, every, dict.fromkeys(every, iters),
                             dict.fromkeys(every, warm), label, per_call)
    recs = []
    if rank == 0:
        for name in every:
            st = timed.stats[name]
            x = timed.stats[DEFAULT]["t_max_us"] / st["t_max_us"] if st["t_max_us"] else None
            recs.append({"benchmark": "tune", "kind": "composition" if name in extra
                         else "candidate", "collective": decl.name, "ranks": k,
                         "bytes": count * 4, "count": count, "candidate": name,
                         "t_max_us": st["t_max_us"], "t_max_us_ci": st["t_max_us_ci"],
                         "p50_us": st["p50_us"], "x_default": x,
                         "x_default_ci": timed.ratio_ci(DEFAULT, name), "wrong": wrong[name],
                         "iters": iters})
    return recs, sum(wrong.values())


def _first_ranks(comm, k: int):
    """A communicator of the first ``k`` ranks (``comm`` itself for all; COMM_NULL on the
    others). Collective."""
    if k == comm.Get_size():
        return comm
    grp = comm.Get_group().Incl(list(range(k)))
    sub = comm.Create(grp)
    grp.Free()
    return sub


def run_tune(cfg: TuneConfig, comm, argv) -> int:
    run = outline.Run(comm, "tune", flatten(cfg), argv, get_backend("cpu", "no", comm),
                      cfg.run)
    cv = ControlVariables(run.env.get("mpi_library", ""))
    if run.root and not cv.available:
        eprint(f"Note: the library's algorithms are not forced: {cv.why}")
    ranks = sorted(set(cfg.ranks or [run.size]))
    records, bad = [], 0
    ids: dict = {}
    for coll in cfg.collectives:
        decl = get_collective(coll)
        hand = [a for a in decl.registry if a != decl.baseline] if cfg.hand_written else []
        for k in ranks:
            sub = _first_ranks(comm, k)
            algs = comm.bcast(library_algorithms(coll, k) if run.root and cv.available
                              else [], root=0)
            if sub == mpi().COMM_NULL:  # not among the first k: wait for them
                comm.Barrier()
                continue
            comms = {DEFAULT: cv.forced(sub, coll, 0) if cv.available else sub.Dup()}
            for num, name in algs:
                comms[f"lib:{name}"] = cv.forced(sub, coll, num)
                ids[f"lib:{name}"] = num
            for nbytes in cfg.sizes.sweep():
                def label(n, nbytes=nbytes, k=k, coll=coll):
                    return f"tune {coll} {n} at {fmt_bytes(nbytes)}, {k} ranks"
                recs, wrong = _measure_size(decl, sub, comms, hand, nbytes, cfg, label)
                bad += wrong
                if run.root:
                    run.writer.append(recs)
                    records += recs
            for c in comms.values():
                c.Free()
            if sub is not comm:
                sub.Free()
            comm.Barrier()
    watchdog.idle()
    outputs = _write(run, records, ids, cfg.holdout) if run.root else {}
    rows = _rows(records, outputs.get("ranges", [])) if run.root else []
    run.emit(f"distbench tune, {run.size} ranks: the decision per collective, rank count and "
             "size range", TUNE_COLUMNS, rows, _caption(run, cv, outputs) if run.root else "",
             answer=lambda: tune_answer(records, outputs))
    if bad and run.root:
        eprint(f"Error: {bad} wrong element(s) among the candidates; see the records")
    return 1 if comm.bcast(bad, root=0) else 0


def _write(run, records: list[dict], ids: dict, holdout: bool) -> dict:
    """The decision and its files in the run folder (rank 0): their paths and ranges."""
    cands = [r for r in records if r["kind"] == "candidate"]
    ranges = decide(cands, ids)
    lib = decide(cands, ids, only=lambda c: c.startswith("lib:"))
    folder = Path(run.writer.path)
    coll_ids = {c: OMPI[c][1] for c in OMPI}
    files = {"ompi_rules": folder / "ompi_rules.txt",
             "mpich_selection": folder / "mpich_selection.json",
             "distbench_tuning": folder / "distbench_tuning.json"}
    tuned = [r for r in lib if r.collective in coll_ids]
    files["ompi_rules"].write_text(ompi_rules(tuned, coll_ids))
    files["mpich_selection"].write_text(json.dumps(mpich_json(lib), indent=1))
    files["distbench_tuning"].write_text(json.dumps(table_document(
        ranges, run.env.get("mpi_library", "")), indent=1))
    out = {"ranges": ranges, "library_ranges": lib,
           **{k: str(v) for k, v in files.items()}}
    if holdout:
        out["holdout"] = held_out_penalty(cands)
    run.writer.append([{"benchmark": "tune", "kind": "decision", **vars(r)} for r in ranges]
                      + [{"benchmark": "tune", "kind": "files", **{k: str(v) for k, v in
                                                                   files.items()}}])
    return out


def _rows(records: list[dict], ranges) -> list[list[str]]:
    """Per range: collective, ranks, sizes, choice, the default's and the choice's time at
    the range's largest size, and default / choice with its interval."""
    by = {(r["collective"], r["ranks"], r["bytes"], r["candidate"]): r for r in records}
    rows = []
    for rg in ranges:
        d = by.get((rg.collective, rg.ranks, rg.hi, DEFAULT))
        c = by.get((rg.collective, rg.ranks, rg.hi, rg.choice))
        x = c["x_default"] if c else None
        rows.append([rg.collective, str(rg.ranks), f"{fmt_bytes(rg.lo)}-{fmt_bytes(rg.hi)}",
                     rg.choice, fmt_num(d["t_max_us"]) if d else "-",
                     fmt_num(c["t_max_us"]) if c else "-",
                     _ci_text(x, c.get("x_default_ci") if c else None)])
    return rows


def _ci_text(x, ci) -> str:
    if x is None:
        return "-"
    if ci and None not in ci:
        return f"{x:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{x:.2f}"


def _caption(run, cv, outputs) -> str:
    from distbench.results import env_line

    forced = ("the library's algorithms forced through MPI_T on a communicator each" if
              cv.available else f"the library's algorithms not forced ({cv.why})")
    return (f"{env_line(run.env)}\ncandidates: the library's default, {forced}, and "
            "distbench's hand-written ones, timed interleaved; default / choice: paired over "
            "the rounds (95 % interval); the decision leaves the default only where that "
            f"interval is above 1\nresults: {run.writer.path}")


# ----------------------------------------------------------------------------- verify

def verify(cfg: TuneConfig) -> int:
    """Launch the library with the run's rules file and without, round-robin, for each tuned
    collective at ``--verify-ranks``; print default / tuned per size with an interval over
    the launches (no MPI in this process)."""
    from distbench.results import find_docs

    run_dir = Path(cfg.verify)
    rules = run_dir / "ompi_rules.txt"
    if not rules.is_file():
        raise UsageError(f"--verify {run_dir}: no ompi_rules.txt (not a tune run folder)")
    parse_ompi_rules(rules.read_text())  # refuses a file of another tool
    docs = [d for _, d in find_docs(str(run_dir)) if d.get("benchmark") == "tune"]
    if not docs:
        raise UsageError(f"--verify {run_dir}: not a tune run")
    recs = [r for d in docs for r in d["records"] if r.get("kind") == "candidate"]
    sizes = sorted({r["bytes"] for r in recs})
    colls = list(dict.fromkeys(r["collective"] for r in recs))
    mpirun = str(Path(sys.executable).parent / "mpirun")
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl": os.environ.get("OMPI_MCA_btl", "^ofi")}
    tuned_env = {**env, "OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
                 "OMPI_MCA_coll_tuned_dynamic_rules_filename": str(rules.resolve())}
    rows, warnings = [], []
    for coll in colls:
        times = {"default": [], "tuned": []}
        for _ in range(cfg.verify_rounds):
            for which, e in (("default", env), ("tuned", tuned_env)):
                with tempfile.TemporaryDirectory() as out:
                    cmd = [mpirun, "-n", str(cfg.verify_ranks), "--oversubscribe",
                           sys.executable, "-m", "distbench", coll, "--algo", "native",
                           "-b", str(sizes[0]), "-e", str(sizes[-1]), "-f",
                           str(max(2, sizes[1] // sizes[0]) if len(sizes) > 1 else 2),
                           "-n", str(cfg.iterations.iters or 30), "--json", "--quiet",
                           "--output", out]
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=e,
                                          timeout=900)
                if proc.returncode:
                    raise UsageError(f"--verify: {coll} exited {proc.returncode}: "
                                     f"{proc.stderr.strip().splitlines()[-1:]}")
                if which == "tuned" and "warning" in proc.stderr.lower():
                    warnings.append(proc.stderr.strip().splitlines()[0])
                got = {r["bytes"]: r["t_max_us"] for r in json.loads(proc.stdout)
                       if r.get("algorithm") == "native"}
                times[which].append(got)
        forced = {(r["bytes"], r["candidate"]): r for r in recs if r["collective"] == coll
                  and r["ranks"] == cfg.verify_ranks}
        for nbytes in sorted(times["default"][0]):
            d = np.array([t[nbytes] for t in times["default"]])
            t = np.array([t[nbytes] for t in times["tuned"]])
            ratio = d / t
            pick = _rule_for(parse_ompi_rules(rules.read_text()), coll, cfg.verify_ranks,
                             nbytes)
            lib = next((c for (b, c), r in forced.items() if b == nbytes and
                        r.get("candidate", "").startswith("lib:") and
                        _id_of(c, recs) == pick), None)
            ref = forced.get((nbytes, lib)) if lib else None
            rows.append([coll, fmt_bytes(nbytes), f"{np.median(d):.3g}", f"{np.median(t):.3g}",
                         f"{np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}]",
                         lib or "default", "-" if ref is None else f"{ref['t_max_us']:.3g}"])
    print_table(f"tune --verify {run_dir.name}: default / tuned over {cfg.verify_rounds} "
                f"launches each at {cfg.verify_ranks} ranks",
                VERIFY_COLUMNS, rows,
                caption="t_max us: the median over the launches; default / tuned: median "
                        "[min, max] over the launch pairs; forced: the tune run's time of the "
                        "algorithm the file picks (measured interleaved there)\n"
                        + ("warnings from the tuned library: " + "; ".join(warnings[:3])
                           if warnings else "the tuned library printed no warning"))
    return 0


def _rule_for(rules: dict, coll: str, ranks: int, nbytes: int) -> int:
    """The algorithm the rules give ``coll`` at ``ranks`` ranks and ``nbytes`` (0: none)."""
    per = rules.get(OMPI[coll][1], {})
    if not per:
        return 0
    k = min(per, key=lambda c: (abs(c - ranks), c))
    alg = 0
    for lo, a in per[k]:
        if nbytes >= lo:
            alg = a
    return alg


def _id_of(candidate: str, recs) -> int | None:
    name = candidate.removeprefix("lib:")
    coll = next((r["collective"] for r in recs if r["candidate"] == candidate), None)
    return next((i for i, n in library_algorithms(coll, 2) if n == name), None) \
        if coll else None


# ----------------------------------------------------------------------------- command

def validate(cfg: TuneConfig) -> None:
    for c in cfg.collectives:
        if c not in collective_names():
            raise UsageError(f"unknown collective {c!r} for --collective (choose "
                             f"{', '.join(collective_names())})")
    cfg.sizes.check(4, "float32")


def validate_mpi(cfg: TuneConfig, comm) -> None:
    for k in cfg.ranks or []:
        if k > comm.Get_size():
            raise UsageError(f"--ranks {k} is more than the job's {comm.Get_size()} ranks")


def _tune(cfg: TuneConfig) -> Job:
    if cfg.verify is not None:
        return Job("tune", {**flatten(cfg)}, lambda _c, _a, _p: verify(cfg), needs_mpi=False)
    validate(cfg)
    return Job("tune", flatten(cfg), lambda comm, argv, _: run_tune(cfg, comm, argv),
               options=cfg.run, validate=lambda comm: validate_mpi(cfg, comm))


tune_command = declared_command(
    "tune", TuneConfig, _tune,
    doc="""The library's algorithms (forced) and distbench's, timed interleaved per collective,
    rank count and size against the library's default; the decision written as an Open MPI
    rules file, an MPICH selection JSON and distbench's table (--algo auto). --verify RUN
    launches the library with the file and without.""",
    examples=["mpirun -n 4 distbench tune --collective allreduce,bcast -e 1M",
              "mpirun -n 4 distbench tune --ranks 2,4 --holdout",
              "distbench tune --verify results/<UTC>-tune --verify-ranks 4"])


__all__ = ["TUNED", "TuneConfig", "run_tune", "tune_command", "verify"]
