"""``distbench emulate``: the command that builds an emulated cluster, runs a distbench
subcommand on it and tears it down (:class:`distbench.emulate.cluster.Cluster`)."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import click

from distbench.command import Job
from distbench.declared import arg
from distbench.emulate.cluster import Cluster, Interrupted, default_mpirun
from distbench.emulate.network import (
    DEFAULT_SUBNET,
    LINK_MTU,
    parse_subnet,
    tbf_burst_bytes,
)
from distbench.errors import UsageError, eprint
from distbench.launcher import launched_by_mpirun
from distbench.metrics import parse_rate
from distbench.options import DeclaredCommand, declared_command

MAX_NODES = 64  # namespaces, veths and one Slurm daemon each: beyond this a laptop gives up
RANKS_PER_CORE = 32  # oversubscription beyond this only thrashes (and fills /dev/shm)


def _separator(args: list[str]) -> int | None:
    """Index of the ``--`` that starts the inner command (not a ``--mpirun-flag`` value)."""
    for i, word in enumerate(args):
        if word == "--" and not (i and args[i - 1] in ("--mpirun-flag", "--mpirun")):
            return i
    return None


class _EmulateCommand(DeclaredCommand):
    """Splits argv at ``--`` before click sees it: the part after is the inner command."""

    def parse_args(self, ctx, args):
        split = _separator(args)
        ctx.meta["emulate.inner"] = None if split is None else args[split + 1:]
        return super().parse_args(ctx, args if split is None else args[:split])

    def collect_usage_pieces(self, ctx):
        return [self.options_metavar, "--", "SUBCOMMAND", "[ARGS]..."]


CLUSTER, SLURM = "Cluster", "Slurm"


@dataclass(kw_only=True)
class EmulateConfig:
    """The options of ``distbench emulate`` (the inner command follows ``--``)."""

    nodes: int = arg(2, "Emulated nodes (network namespaces).", low=1, high=MAX_NODES,
                     group=CLUSTER)
    ranks_per_node: int = arg(2, "MPI ranks per node.", low=1, high=1 << 12, group=CLUSTER)
    link: str = arg("1gbit", "Rate of each node's link, each direction: 100mbit, 1gbit, 10gbit, "
                    "..., none.", group=CLUSTER)
    subnet: str = arg(DEFAULT_SUBNET, "Private IPv4 network used only inside the namespaces.",
                      group=CLUSTER)
    mpirun_flags: tuple = arg((), "Extra mpirun argument (repeat; one argv element each, e.g. "
                              "--mpirun-flag=--report-bindings).", multiple=True,
                              metavar="FLAG", flags=("--mpirun-flag",), group=CLUSTER)
    mpirun: str | None = arg(None, "mpirun to use (default: the one beside Python).",
                             group=CLUSTER)
    scheduler: str = arg("mpirun", "mpirun: launch directly; slurm: a real Slurm (slurmctld + "
                         "one slurmd per node) runs the job.", choices=("mpirun", "slurm"),
                         group=SLURM)
    launch: str | None = arg(None, "Slurm: srun --mpi=pmix [default], or mpirun inside salloc.",
                             choices=("srun", "salloc"), group=SLURM)
    batch: str | None = arg(None, "Slurm: submit SCRIPT with sbatch instead (arguments after "
                            "`--` go to the script); print its output, return its exit code.",
                            type=click.Path(exists=True, dir_okay=False), metavar="SCRIPT",
                            group=SLURM)
    time_limit: int | None = arg(None, "Slurm: each job's time limit [default: 1800]; past it: "
                                 "exit 3.", type=int, low=1, high=7 * 86400, metavar="SECONDS",
                                 group=SLURM)


def run_emulated(config: dict) -> int:
    """Build the cluster of ``config`` (the command's options), run ``distbench INNER`` on it,
    tear it down; return the inner job's exit code (128 + signal number when interrupted)."""
    cluster = Cluster(config["nodes"], config["ranks_per_node"], config["link"],
                      config["subnet"], config["mpirun"])
    argv = [sys.executable, "-m", "distbench", *config["inner"]]
    try:
        with cluster:
            rate = cluster.rate_bits
            links = (f"links {cluster.link} each way (tbf burst {tbf_burst_bytes(rate)} B, "
                     if rate else "unshaped links (") + f"MTU {LINK_MTU}, no added latency)"
            eprint(f"distbench emulate: {cluster.nodes} nodes x {cluster.ranks_per_node} ranks "
                   f"({', '.join(cluster.namespaces)}) on {cluster.subnet}; {links}")
            return cluster.run(argv, config["mpirun_flags"])
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        eprint(f"Error: interrupted by {signal.Signals(signum).name}; "
               "the emulated cluster was torn down")
        return 128 + signum


def _emulate(cfg: EmulateConfig, stray) -> Job:
    """Run `distbench SUBCOMMAND ARGS` on NODES x RANKS-PER-NODE ranks of a cluster emulated
    with network namespaces and rate-limited links (the command's help)."""
    nodes, ranks_per_node, link, subnet = cfg.nodes, cfg.ranks_per_node, cfg.link, cfg.subnet
    mpirun_flags, mpirun, batch = cfg.mpirun_flags, cfg.mpirun, cfg.batch
    inner = click.get_current_context().meta.get("emulate.inner")
    if inner is None and batch is None:
        raise UsageError("missing `--` before the command to run, e.g. "
                         "`distbench emulate --nodes 2 -- allreduce`")
    if stray:
        raise UsageError(f"unexpected argument {stray[0]!r} before `--`")
    inner = inner or []
    if not inner and batch is None:
        raise UsageError("no subcommand after `--` (e.g. `-- allreduce`)")
    if inner and inner[0] == "emulate" and batch is None:
        raise UsageError("`distbench emulate` cannot run inside an emulated cluster")
    ranks, cores = nodes * ranks_per_node, os.cpu_count() or 1
    if ranks > RANKS_PER_CORE * cores:
        raise UsageError(f"{nodes} nodes x {ranks_per_node} ranks = {ranks} ranks on {cores} "
                         f"cores: more than {RANKS_PER_CORE} per core, which this machine cannot "
                         "run (lower --nodes or --ranks-per-node)")
    parse_rate(link)
    parse_subnet(subnet, nodes)
    if launched_by_mpirun():
        raise UsageError("run `distbench emulate` without mpirun: it starts mpirun itself")
    config = {"nodes": nodes, "ranks_per_node": ranks_per_node, "link": link,
              "subnet": subnet, "mpirun_flags": list(mpirun_flags),
              "mpirun": mpirun or default_mpirun(), "inner": list(inner)}
    if cfg.scheduler != "mpirun" or cfg.launch or batch or cfg.time_limit is not None:
        from distbench.emulate.slurm import run_slurm, slurm_config  # Slurm's mode only

        config = slurm_config(config, cfg.scheduler, cfg.launch, batch, cfg.time_limit)
        return Job("emulate", config, lambda _comm, _argv, _: run_slurm(config),
                   needs_mpi=False, inner=inner if batch is None else None)
    return Job("emulate", config, lambda _comm, _argv, _: run_emulated(config), needs_mpi=False,
               inner=inner)


emulate_command = declared_command(
    "emulate", EmulateConfig, _emulate, command_class=_EmulateCommand,
    doc="""Run `distbench SUBCOMMAND ARGS` on NODES x RANKS-PER-NODE ranks of a cluster emulated
    with network namespaces and rate-limited links (needs root, ip, tc and unshare).

    Each node is a network namespace with its own hostname; nodes are joined by a bridge
    through veth links that tc limits to --link in each direction (no added latency). MPI
    uses shared memory inside a node and TCP between nodes. The cluster is torn down on
    exit, error and Ctrl-C; the exit code is the inner job's.

    With --scheduler slurm the nodes run a real Slurm and the job goes through srun, salloc
    + mpirun, or sbatch (--batch SCRIPT), with a time limit (exit 3 past it).""",
    examples=["distbench emulate --nodes 2 --ranks-per-node 2 --link 1gbit -- allreduce -e 64M",
              "distbench emulate --scheduler slurm --launch salloc -- allreduce -e 1M",
              "distbench emulate --scheduler slurm --batch examples/slurm/bench.sbatch"],
    extra=[click.Argument(["stray"], nargs=-1, type=click.UNPROCESSED)])
