"""The ``ssh`` stand-in of an emulated cluster (``distbench emulate``).

mpirun starts its remote daemons with ``AGENT [ssh options] HOST COMMAND...`` (Open MPI 5 /
PRRTE: ``--prtemca plm_ssh_agent AGENT``; MPICH hydra: ``-launcher ssh -launcher-exec AGENT``).
This agent drops the ssh options, maps HOST (a node's IP address, or its namespace name) to the
node's network namespace through the run's state file, and replaces itself with::

    ip netns exec NS unshare --uts sh -c "hostname NS || exit 255; COMMAND"

so the daemon runs in that node's network stack under that node's own hostname (every namespace
otherwise shares the host's hostname, and PRRTE then merges all nodes into one and hangs).
COMMAND is the string an ssh server would hand to the remote shell (ssh joins its arguments with
spaces); the namespace name is quoted with :func:`shlex.quote`.

Standard library only, so :mod:`distbench.emulate.cluster` runs it as ``python -I -S agent.py``
(about 15 ms faster per daemon than importing the package). Also runnable as
``python -m distbench.emulate.agent --state STATE_JSON [ssh options] HOST COMMAND...``.
Exit code 255 (ssh's own failure code) on a usage error or an unknown host.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

# OpenSSH client options that take an argument (ssh(1) synopsis); every other option is a flag.
SSH_OPTIONS_WITH_ARGUMENT = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


def split_ssh_args(args: list[str]) -> tuple[str, str]:
    """Split an ssh command line (without the program name) into (host, remote command).

    Options (``-x``, ``-o Key=Value``, ``-oKey=Value``, ``-p 22``, grouped flags ``-xT``, ``--``)
    are dropped; ``user@host`` becomes ``host``. The remote command is the remaining arguments
    joined by single spaces, exactly as ssh sends it to the remote shell.

    Raises:
        ValueError: no host, or no remote command (an interactive login is not supported).
    """
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        i += 1
        for pos, letter in enumerate(arg[1:], start=1):
            if letter in SSH_OPTIONS_WITH_ARGUMENT:
                if pos == len(arg) - 1:  # the value is the next argument
                    i += 1
                break
    if i >= len(args):
        raise ValueError("no host given")
    host = args[i].rsplit("@", 1)[-1]
    command = " ".join(args[i + 1:])
    if not command.strip():
        raise ValueError(f"no command given for host {host!r} (interactive login unsupported)")
    return host, command


def agent_argv(state: dict, host: str, command: str) -> list[str]:
    """The argument list that runs ``command`` in the namespace of ``host``.

    Args:
        state: the run's state (keys ``hosts``: address or name -> namespace, and ``tools``:
            absolute paths of ``ip``, ``unshare``, ``sh`` and ``hostname``).
        host: an address or name from the hostfile.
        command: the remote shell command.

    Raises:
        KeyError: ``host`` is not a node of this cluster.
    """
    hosts = state["hosts"]
    if host not in hosts:
        raise KeyError(f"host {host!r} is not a node of this emulated cluster "
                       f"(nodes: {', '.join(sorted(set(hosts.values())))})")
    ns = hosts[host]
    tools = state["tools"]
    script = f"{shlex.quote(tools['hostname'])} {shlex.quote(ns)} || exit 255\n{command}"
    return [tools["ip"], "netns", "exec", ns, tools["unshare"], "--uts", tools["sh"], "-c",
            script]


def main(argv: list[str] | None = None) -> None:
    """``agent.py --state FILE [ssh options] HOST COMMAND...``: exec the command there."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--state":
        sys.stderr.write("usage: agent.py --state STATE_JSON [ssh options] HOST COMMAND\n")
        sys.exit(255)
    try:
        with open(args[1]) as fh:
            state = json.load(fh)
        host, command = split_ssh_args(args[2:])
        argv_out = agent_argv(state, host, command)
    except (OSError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.stderr.write(f"distbench emulate agent: {message}\n")
        sys.exit(255)
    sys.stdout.flush()
    os.execv(argv_out[0], argv_out)


if __name__ == "__main__":
    main()
