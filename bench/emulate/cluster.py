"""``distbench emulate``: a multi-node cluster on one machine, with rate-limited links.

Each "node" is a Linux network namespace with its own network stack and hostname; the nodes are
joined through a bridge by veth pairs whose two directions ``tc`` limits to the link rate
(:mod:`distbench.emulate.network`). MPI then uses shared memory inside a node and TCP between nodes,
as on a real cluster, so hierarchical and compressed collectives show what they save on slow
links.

How a job is launched (:class:`Cluster`):

* a hostfile lists each node's address with ``slots=K`` (hydra: ``ADDRESS:K``);
* mpirun runs inside the first node: ``ip netns exec NS0 unshare --uts sh -c 'hostname NS0;
  exec mpirun ...'`` (arguments passed positionally, never spliced into a shell string);
* mpirun's ssh launcher is replaced by :mod:`distbench.emulate.agent`, which runs each remote
  daemon in its node's namespace under the node's hostname;
* Open MPI 5 (PRRTE): ``--prtemca plm_ssh_agent AGENT``, ``--bind-to none`` (each node would pin
  its first rank to core 0), ``--mca mpi_yield_when_idle 1`` (more ranks than cores: without it
  an 8 B AllReduce takes ms instead of tens of us), ``--mca pml ob1 --mca btl self,sm,tcp``, and
  TCP (MPI and PRRTE's out-of-band channel) restricted to the emulated subnet;
* MPICH / Intel MPI (hydra): ``-launcher ssh -launcher-exec AGENT -iface eth0``, with
  ``UCX_TLS=tcp`` and ``FI_PROVIDER=tcp`` so traffic between nodes takes the shaped links.

The ranks get ``DISTBENCH_EMULATED`` (JSON, see :meth:`Cluster.emulated`), which the results'
environment records. The cluster is always torn down: on success, error, Ctrl-C, SIGTERM or
SIGHUP; a run killed outright is cleaned up by the next one (:func:`~distbench.emulate.network.
reap_leftovers`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from distbench.emulate.network import (
    BRIDGE,
    DEFAULT_SUBNET,
    LINK_MTU,
    NODE_IFACE,
    STATE_ROOT,
    Network,
    check_requirements,
    parse_subnet,
    tbf_burst_bytes,
)
from distbench.errors import DistbenchError, UsageError, eprint
from distbench.metrics import parse_rate

ENV_VAR = "DISTBENCH_EMULATED"
_STOP_GRACE_S = 5.0


def die_with_parent() -> None:
    """In a child about to exec (``preexec_fn``): SIGKILL it when this process dies, however it
    dies (``prctl(PR_SET_PDEATHSIG)``; kept across exec), so that a ``kill -9`` of ``distbench
    emulate`` ends the job it launched at once instead of leaving it to the next run's reaper."""
    import ctypes  # only in the child, before its exec

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived while a cluster was up (``signum`` says which)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def default_mpirun() -> str:
    """The ``mpirun`` beside this Python (the virtualenv's, e.g. PyPI Open MPI), else PATH's."""
    here = Path(sys.executable).parent / "mpirun"
    if here.exists():
        return str(here)
    return shutil.which("mpirun") or "mpirun"


@functools.lru_cache(maxsize=8)
def detect_mpi(mpirun: str) -> tuple[str, str]:
    """(family, version) of ``mpirun``: family ``"openmpi"`` (Open MPI >= 5, PRRTE) or
    ``"hydra"`` (MPICH, Intel MPI), from ``mpirun --version``.

    Raises:
        UsageError: not found, or an MPI whose launcher this module does not drive (Open MPI
            4 and older use ORTE, whose agent option differs; others are unknown).
    """
    try:
        out = subprocess.run([mpirun, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"cannot run {mpirun!r} --version ({exc})") from None
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    version = found.group(1) if found else ""
    if re.search(r"open ?mpi|open-mpi|prrte", out, re.IGNORECASE):
        if version and int(version.split(".")[0]) < 5:
            raise UsageError(f"Open MPI {version} is not supported by distbench emulate "
                             "(needs Open MPI >= 5 with PRRTE, or MPICH)")
        return "openmpi", version
    if "hydra" in out.lower():
        return "hydra", version
    first = out.strip().splitlines()[0] if out.strip() else "no version output"
    raise UsageError(f"distbench emulate supports Open MPI >= 5 and MPICH (hydra); "
                     f"{mpirun} is neither ({first})")


class Cluster:
    """An emulated cluster of ``nodes`` namespaces x ``ranks_per_node`` ranks.

    Use as a context manager (builds on enter, tears down on exit, also on an exception;
    meanwhile SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread)::

        with Cluster(2, 2, "1gbit") as cluster:
            code = cluster.run([sys.executable, "script.py"])

    Args:
        nodes: node count (>= 1).
        ranks_per_node: MPI ranks per node (>= 1), ``nodes * ranks_per_node`` in all.
        link: per-direction link rate (``100mbit``, ``1gbit``, ``10gbit``, ..., ``none``).
        subnet: private IPv4 network for the node addresses.
        mpirun: launcher path (default :func:`default_mpirun`).
        state_root: folder for the per-run state (default ``/run/distbench-emulate``).

    Raises:
        UsageError: bad arguments, missing privileges or tools, unsupported MPI.
    """

    def __init__(self, nodes: int, ranks_per_node: int = 1, link: str = "none",
                 subnet: str = DEFAULT_SUBNET, mpirun: str | None = None,
                 state_root: Path = STATE_ROOT):
        if nodes < 1:
            raise UsageError(f"--nodes must be >= 1, not {nodes}")
        if ranks_per_node < 1:
            raise UsageError(f"--ranks-per-node must be >= 1, not {ranks_per_node}")
        self.nodes, self.ranks_per_node, self.link = nodes, ranks_per_node, link
        self.rate_bits = parse_rate(link)
        self.subnet = parse_subnet(subnet, nodes)
        self.tools = check_requirements()
        self.mpirun = mpirun or default_mpirun()
        self.family, self.mpi_version = detect_mpi(self.mpirun)
        self.net = Network(nodes, self.rate_bits, self.subnet, self.tools, state_root)
        self._old_handlers: dict = {}

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Cluster:
        self._catch_signals()
        try:
            self.up()
        except BaseException:
            self._restore_signals()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.down()
        finally:
            self._restore_signals()

    def up(self) -> None:
        """Build the network, the hostfile and the agent (removed again on any failure)."""
        self.net.create()
        try:
            for run_id in self.net.reaped:
                eprint(f"distbench emulate: removed the leftovers of dead run {run_id}")
            self._write_launch_files()
        except BaseException:
            self.net.destroy()
            raise

    def down(self) -> None:
        """Kill whatever still runs in the nodes and delete everything :meth:`up` made."""
        self.net.destroy()

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            raise Interrupted(signum)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    # ------------------------------------------------------------------ launch
    @property
    def namespaces(self) -> list[str]:
        """Node namespace names (also the nodes' hostnames), node 0 first."""
        return self.net.namespaces

    @property
    def addresses(self) -> list[str]:
        """Node IPv4 addresses, node 0 first."""
        return self.net.addresses

    @property
    def size(self) -> int:
        return self.nodes * self.ranks_per_node

    def emulated(self) -> dict:
        """The ``DISTBENCH_EMULATED`` record: topology, link rate, shaping, subnet, bridge."""
        shaped = self.rate_bits is not None
        return {
            "nodes": self.nodes, "ranks_per_node": self.ranks_per_node,
            "link": self.link.lower(), "link_bit_per_s": self.rate_bits,
            "shaping": (f"tc tbf rate {self.link.lower()} burst "
                        f"{tbf_burst_bytes(self.rate_bits)} B, each direction of each node "
                        "link; no added latency") if shaped else "none",
            "mtu": LINK_MTU,
            "subnet": str(self.subnet), "bridge": f"{BRIDGE} in netns {self.net.switch}",
            "hosts": list(self.namespaces), "addresses": list(self.addresses),
            "mpi_launcher": self.family,
        }

    def emulated_json(self) -> str:
        """:meth:`emulated` as the compact JSON text the ranks get in ``DISTBENCH_EMULATED``."""
        return json.dumps(self.emulated(), separators=(",", ":"))

    def _write_launch_files(self) -> None:
        run_dir = self.net.run_dir
        self.hostfile = run_dir / "hostfile"
        sep = " slots=" if self.family == "openmpi" else ":"
        self.hostfile.write_text("".join(f"{a}{sep}{self.ranks_per_node}\n"
                                         for a in self.addresses))
        # PRRTE splits the agent option at spaces, so the agent is one path: a wrapper that
        # runs the stdlib-only agent module with an isolated, site-less (fast) interpreter.
        agent_py = Path(__file__).with_name("agent.py")
        self.agent = run_dir / "agent"
        self.agent.write_text("#!/bin/sh\nexec " + shlex.join(
            [sys.executable, "-I", "-S", str(agent_py), "--state", str(self.net.state_path)])
            + ' "$@"\n')
        self.agent.chmod(0o700)

    def mpirun_argv(self, argv: list[str], flags: list[str] = ()) -> list[str]:
        """The mpirun command line running ``argv`` on every rank (user ``flags`` last, so they
        can override the defaults)."""
        n = str(self.size)
        cidr = str(self.subnet)
        if self.family == "openmpi":
            return [self.mpirun, "--hostfile", str(self.hostfile), "-n", n,
                    "--prtemca", "plm_ssh_agent", str(self.agent),
                    "--prtemca", "oob_tcp_if_include", cidr,
                    "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1",
                    "--mca", "pml", "ob1", "--mca", "btl", "self,sm,tcp",
                    "--mca", "btl_tcp_if_include", cidr, "-x", ENV_VAR, *flags, *argv]
        return [self.mpirun, "-f", str(self.hostfile), "-n", n, "-launcher", "ssh",
                "-launcher-exec", str(self.agent), "-iface", NODE_IFACE,
                "-genv", "UCX_TLS", "tcp", "-genv", "FI_PROVIDER", "tcp",
                "-genv", ENV_VAR, self.emulated_json(), *flags, *argv]

    def command(self, argv: list[str], flags: list[str] = ()) -> list[str]:
        """The full command: mpirun inside node 0's namespace under node 0's hostname."""
        t, ns0 = self.tools, self.namespaces[0]
        return [t["ip"], "netns", "exec", ns0, t["unshare"], "--uts", t["sh"], "-c",
                '"$1" "$2" || exit 255; shift 2; exec "$@"', "sh", t["hostname"], ns0,
                *self.mpirun_argv(argv, flags)]

    def environ(self) -> dict[str, str]:
        """mpirun's environment: this process's, plus ``DISTBENCH_EMULATED``, ``TMPDIR`` in
        the run's folder (so the MPI library's session folders and shared-memory files go
        with the cluster when it is torn down or reaped) and, for Open MPI as root, its
        allow-root variables."""
        env = dict(os.environ)
        env[ENV_VAR] = self.emulated_json()
        tmp = self.net.run_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        env["OMPI_MCA_btl_sm_backing_directory"] = str(tmp)
        if self.family == "openmpi" and os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        return env

    def run(self, argv: list[str], flags: list[str] = (), timeout: float | None = None,
            **popen_kwargs) -> int:
        """Run ``argv`` on all ranks of the (built) cluster; return mpirun's exit code.

        ``popen_kwargs`` go to :class:`subprocess.Popen` (e.g. ``stdout=`` an open file; not
        a pipe, which nobody reads while this waits). On :class:`Interrupted` or
        ``KeyboardInterrupt`` (or ``timeout`` seconds passing) mpirun gets the signal, is
        killed after 5 s, and the exception propagates (``subprocess.TimeoutExpired``).
        """
        if not self.namespaces or self.net.run_dir is None:
            raise DistbenchError("the cluster is not up (use `with Cluster(...) as c`)")
        proc = subprocess.Popen(self.command(list(argv), list(flags)), env=self.environ(),
                                preexec_fn=die_with_parent, **popen_kwargs)
        try:
            return proc.wait(timeout=timeout)
        except BaseException as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            if proc.poll() is None:
                proc.send_signal(signum)
                try:
                    proc.wait(_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
