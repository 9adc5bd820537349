"""``distbench emulate``: the command that builds an emulated cluster, runs a distbench
subcommand on it and tears it down (:class:`distbench.emulate.cluster.Cluster`)."""

from __future__ import annotations

import signal
import sys

import click

from distbench.command import Job
from distbench.emulate.cluster import Cluster, Interrupted, default_mpirun
from distbench.emulate.network import (
    DEFAULT_SUBNET,
    LINK_MTU,
    parse_rate,
    parse_subnet,
    tbf_burst_bytes,
)
from distbench.runtime import UsageError, eprint, launched_by_mpirun


def _separator(args: list[str]) -> int | None:
    """Index of the ``--`` that starts the inner command (not a ``--mpirun-flag`` value)."""
    for i, arg in enumerate(args):
        if arg == "--" and not (i and args[i - 1] in ("--mpirun-flag", "--mpirun")):
            return i
    return None


class _EmulateCommand(click.Command):
    """Splits argv at ``--`` before click sees it: the part after is the inner command."""

    def parse_args(self, ctx, args):
        split = _separator(args)
        ctx.meta["emulate.inner"] = None if split is None else args[split + 1:]
        return super().parse_args(ctx, args if split is None else args[:split])

    def collect_usage_pieces(self, ctx):
        return [self.options_metavar, "--", "SUBCOMMAND", "[ARGS]..."]


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


@click.command("emulate", cls=_EmulateCommand)
@click.option("--nodes", type=int, default=2, show_default=True,
              help="Emulated nodes (network namespaces).")
@click.option("--ranks-per-node", type=int, default=2, show_default=True,
              help="MPI ranks per node.")
@click.option("--link", default="1gbit", show_default=True,
              help="Rate of each node's link, each direction: 100mbit, 1gbit, 10gbit, ..., none.")
@click.option("--subnet", default=DEFAULT_SUBNET, show_default=True,
              help="Private IPv4 network used only inside the namespaces.")
@click.option("--mpirun-flag", "mpirun_flags", multiple=True, metavar="FLAG",
              help="Extra mpirun argument (repeat; one argv element each, e.g. "
                   "--mpirun-flag=--report-bindings).")
@click.option("--mpirun", default=None, help="mpirun to use (default: the one beside Python).")
@click.argument("stray", nargs=-1, type=click.UNPROCESSED)
def emulate_command(nodes, ranks_per_node, link, subnet, mpirun_flags, mpirun, stray):
    """Run `distbench SUBCOMMAND ARGS` on NODES x RANKS-PER-NODE ranks of a cluster emulated
    with network namespaces and rate-limited links (needs root, ip, tc and unshare).

    Each node is a network namespace with its own hostname; nodes are joined by a bridge
    through veth links that tc limits to --link in each direction (no added latency). MPI
    uses shared memory inside a node and TCP between nodes. The cluster is torn down on
    exit, error and Ctrl-C; the exit code is the inner job's.

    \b
    Example:
      distbench emulate --nodes 2 --ranks-per-node 2 --link 1gbit -- allreduce -e 64M
    """
    inner = click.get_current_context().meta.get("emulate.inner")
    if inner is None:
        raise UsageError("missing `--` before the command to run, e.g. "
                         "`distbench emulate --nodes 2 -- allreduce`")
    if stray:
        raise UsageError(f"unexpected argument {stray[0]!r} before `--`")
    if not inner:
        raise UsageError("no subcommand after `--` (e.g. `-- allreduce`)")
    if inner[0] == "emulate":
        raise UsageError("`distbench emulate` cannot run inside an emulated cluster")
    if nodes < 1:
        raise UsageError(f"--nodes must be >= 1, not {nodes}")
    if ranks_per_node < 1:
        raise UsageError(f"--ranks-per-node must be >= 1, not {ranks_per_node}")
    parse_rate(link)
    parse_subnet(subnet, nodes)
    if launched_by_mpirun():
        raise UsageError("run `distbench emulate` without mpirun: it starts mpirun itself")
    config = {"nodes": nodes, "ranks_per_node": ranks_per_node, "link": link,
              "subnet": subnet, "mpirun_flags": list(mpirun_flags),
              "mpirun": mpirun or default_mpirun(), "inner": list(inner)}
    return Job("emulate", config, lambda _comm, _argv: run_emulated(config), needs_mpi=False)
