"""The network of an emulated cluster: namespaces, a bridge, veth links, ``tc`` shaping, teardown.

Layout of one run (``ID`` = 6 random hex digits, unique among live runs)::

    netns dbe-ID-sw:  bridge br0, ports n0 .. n{N-1}  (egress shaped: the switch -> node direction)
    netns dbe-ID-n0:  lo, eth0 = 10.213.0.1/24        (egress shaped: the node -> switch direction)
    netns dbe-ID-n1:  lo, eth0 = 10.213.0.2/24
    (one namespace per further node)

Nothing is created in the host's own network namespace: the bridge lives in a "switch"
namespace, each veth pair is created directly between the switch and a node namespace, and the
subnet's addresses exist only inside the node namespaces. Two runs therefore never collide on an
interface name or address; only the namespace names carry the run ID. Deleting the namespaces
deletes the links and the bridge with them.

Each direction of each node link is limited by a token bucket (``tc qdisc ... tbf rate R burst
B``) with a small burst, ``B = max(32 KiB, R x 100 us)``: a large burst lets a short exchange go
at memory speed (a 256 KiB burst lets a 4 MiB ping-pong beat a 1 Gbit/s limit), while above
about 2.6 Gbit/s a 32 KiB bucket refills too often for this host to keep up (10gbit reached only
3.5 Gbit/s; with R x 100 us = 125 kB it reaches 8-9 Gbit/s). Links use jumbo frames (MTU 9000,
as HPC Ethernet usually does), which cuts the per-packet CPU cost of TCP between namespaces
that share the host's cores. This kernel has ``tbf`` and ``htb`` but no ``netem``, so links add
no latency beyond the veth's own (a few microseconds).

Bookkeeping: ``/run/distbench-emulate/ID/state.json`` lists the run's namespaces and owner PID
and is held under an exclusive ``flock`` for the life of the run. The kernel drops the lock when
the owner dies, however it dies, so a later run that can take the lock has proof the owner is
dead and removes its leftovers (:func:`reap_leftovers`).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from distbench.errors import DistbenchError, UsageError
from distbench.runtime import proc_field

STATE_ROOT = Path("/run/distbench-emulate")
NETNS_DIR = Path("/run/netns")
PREFIX = "dbe"
DEFAULT_SUBNET = "10.213.0.0/24"
TBF_MIN_BURST_BYTES = 32 * 1024
TBF_BURST_SECONDS = 100e-6
LINK_MTU = 9000
TBF_LATENCY = "50ms"
BRIDGE = "br0"
NODE_IFACE = "eth0"
_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21
_TOOLS = {"ip": "iproute2's `ip`", "tc": "iproute2's `tc`", "unshare": "util-linux's `unshare`",
          "hostname": "`hostname`", "sh": "`sh`"}


def tbf_burst_bytes(rate_bits: int) -> int:
    """Token-bucket size in bytes for a link of ``rate_bits`` bits/s: max(32 KiB, 100 us of
    traffic) (see the module doc for why)."""
    return max(TBF_MIN_BURST_BYTES, int(rate_bits / 8 * TBF_BURST_SECONDS))


def parse_subnet(text: str, nodes: int) -> ipaddress.IPv4Network:
    """The private IPv4 network the nodes' addresses come from (e.g. ``10.213.0.0/24``).

    Raises:
        UsageError: not an IPv4 network in CIDR form, not private, or fewer host addresses
            than ``nodes``.
    """
    try:
        net = ipaddress.IPv4Network(str(text), strict=True)
    except ValueError as exc:
        raise UsageError(f"--subnet {text!r} is not an IPv4 network in CIDR form ({exc})") from None
    if not net.is_private or net.is_loopback or net.is_link_local:
        raise UsageError(f"--subnet {text} is not a private network (use e.g. {DEFAULT_SUBNET})")
    if net.num_addresses - 2 < nodes:
        raise UsageError(f"--subnet {text} has room for {max(net.num_addresses - 2, 0)} nodes, "
                         f"not {nodes}")
    return net


def _effective_caps() -> int:
    value = proc_field("/proc/self/status", "CapEff:")
    if value:
        return int(value.split()[0], 16)
    return -1 if os.geteuid() == 0 else 0


def check_requirements() -> dict[str, str]:
    """Absolute paths of the tools an emulated cluster needs: ``ip``, ``tc``, ``unshare``,
    ``hostname`` and ``sh``.

    Raises:
        UsageError: one line naming everything missing: root (CAP_NET_ADMIN and CAP_SYS_ADMIN,
            for namespaces, links, qdiscs and hostnames) and/or a tool.
    """
    missing = []
    caps = _effective_caps()
    need = [name for bit, name in ((_CAP_NET_ADMIN, "CAP_NET_ADMIN"),
                                   (_CAP_SYS_ADMIN, "CAP_SYS_ADMIN")) if not caps >> bit & 1]
    if need:
        missing.append(f"root ({' and '.join(need)})")
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin",
                              "/bin"])
    tools = {}
    for name, what in _TOOLS.items():
        path = shutil.which(name, path=search)
        if path is None:
            missing.append(what)
        else:
            tools[name] = os.path.abspath(path)
    if missing:
        raise UsageError("distbench emulate needs " + ", ".join(missing) + ", which "
                         + ("is" if len(missing) == 1 else "are") + " missing here")
    return tools


def _tool(argv: list[str], lines: list[str] | None = None) -> None:
    """Run ``argv`` (``ip``/``tc``, ``-batch -`` fed with ``lines``); raise on failure."""
    text = "".join(line + "\n" for line in lines) if lines is not None else None
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DistbenchError(f"`{' '.join(argv[:4])} ...` failed: "
                             f"{detail[0] if detail else 'exit ' + str(proc.returncode)}")


def _netns_id(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in(namespace_ids: set[tuple[int, int]]) -> list[int]:
    """Processes whose network namespace is one of ``namespace_ids`` ((st_dev, st_ino) pairs)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone, or a zombie (its namespaces are already released)
            continue
        if (st.st_dev, st.st_ino) in namespace_ids:
            found.append(int(entry))
    return found


@contextmanager
def signals_deferred():
    """Hold off SIGINT/SIGTERM/SIGHUP (main thread only) so a teardown is never cut short;
    a signal that arrives meanwhile is delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def destroy_namespaces(names: list[str], tools: dict[str, str], grace_s: float = 5.0) -> None:
    """Kill every process left in the namespaces ``names``, then delete them (which removes
    their links, bridge and qdiscs). Missing namespaces are skipped.

    Raises:
        DistbenchError: a process survived SIGKILL for ``grace_s`` seconds, or ``ip`` failed.
    """
    ids = {i for i in map(_netns_id, names) if i is not None}
    deadline = time.monotonic() + grace_s
    while ids:
        pids = pids_in(ids)
        if not pids:
            break
        if time.monotonic() > deadline:
            raise DistbenchError(f"processes {pids} survived SIGKILL in namespaces {names}")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
    present = [n for n in names if (NETNS_DIR / n).exists()]
    if present:
        _tool([tools["ip"], "-force", "-batch", "-"], [f"netns del {n}" for n in present])


def _lock_path(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when someone else holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def reap_leftovers(tools: dict[str, str], state_root: Path = STATE_ROOT,
                   min_age_s: float = 60.0) -> list[str]:
    """Remove what runs that are provably dead left behind; return their run IDs.

    A run is dead when the flock on its ``state.json`` can be taken (the kernel releases it
    when the owner exits, even by SIGKILL). A run folder without ``state.json`` (its owner died
    before creating anything) is removed once older than ``min_age_s`` and unlocked.
    """
    reaped = []
    try:
        entries = sorted(state_root.iterdir())
    except OSError:
        return reaped
    for run_dir in entries:
        state_path = run_dir / "state.json"
        if not state_path.exists():
            partial = run_dir / "state.json.tmp"
            try:
                old = time.time() - run_dir.stat().st_mtime > min_age_s
            except OSError:
                continue
            fd = _lock_path(partial) if partial.exists() else None
            if old and (fd is not None or not partial.exists()):
                shutil.rmtree(run_dir, ignore_errors=True)
            if fd is not None:
                os.close(fd)
            continue
        if reap_run(run_dir, tools):
            reaped.append(run_dir.name)
    return reaped


def reap_run(run_dir: Path, tools: dict[str, str]) -> bool:
    """Remove one run's leftovers (its namespaces and whatever still runs in them, its folder
    with the MPI library's session files) if its owner is provably dead (the flock on its
    ``state.json`` can be taken); returns whether it did."""
    fd = _lock_path(run_dir / "state.json")
    if fd is None:
        return False  # alive (or gone)
    try:
        with open(run_dir / "state.json") as fh:
            state = json.load(fh)
        destroy_namespaces(list(state.get("namespaces", [])), tools)
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    except (OSError, ValueError, DistbenchError):
        return False  # leave it for a later run; never fail this one over another's leftovers
    finally:
        os.close(fd)


def start_guardian(run_dir: Path) -> subprocess.Popen:
    """A process that tears this run down as soon as its owner dies, however it dies (a
    ``kill -9`` included): it blocks on a pipe from this process; at end of file, if the run's
    state is still there and unlocked, it reaps it (:func:`reap_run`). In its own session, so
    a Ctrl-C meant for the run does not end it first."""
    return subprocess.Popen([sys.executable, "-m", "distbench.emulate.guard", str(run_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


class Network:
    """Namespaces, bridge, links and shaping of one emulated cluster (see the module doc).

    Args:
        nodes: number of node namespaces (>= 1).
        rate_bits: per-direction link rate in bits/s, or None for unshaped links.
        subnet: the nodes' network; node ``i`` gets its ``i + 1``-th host address.
        tools: from :func:`check_requirements`.
        state_root: where run folders live.

    After :meth:`create`: ``run_id``, ``run_dir``, ``switch`` (namespace name), ``namespaces``
    (node namespace names, also their hostnames) and ``addresses`` (node IPv4 addresses).
    """

    def __init__(self, nodes: int, rate_bits: int | None, subnet: ipaddress.IPv4Network,
                 tools: dict[str, str], state_root: Path = STATE_ROOT):
        self.nodes, self.rate_bits, self.subnet, self.tools = nodes, rate_bits, subnet, tools
        self.state_root = Path(state_root)
        self.addresses = [str(subnet.network_address + 1 + i) for i in range(nodes)]
        self.run_id = ""
        self.run_dir: Path | None = None
        self.switch = ""
        self.namespaces: list[str] = []
        self.reaped: list[str] = []
        self._lock_fd: int | None = None
        self._guardian: subprocess.Popen | None = None

    @property
    def all_namespaces(self) -> list[str]:
        return [*self.namespaces, self.switch] if self.switch else []

    def state(self) -> dict:
        """What the agent and a later reaper read from ``state.json``."""
        hosts = {addr: ns for addr, ns in zip(self.addresses, self.namespaces, strict=True)}
        hosts.update({ns: ns for ns in self.namespaces})
        return {"run_id": self.run_id, "pid": os.getpid(), "namespaces": self.all_namespaces,
                "hosts": hosts, "tools": self.tools, "subnet": str(self.subnet),
                "rate_bits": self.rate_bits, "created": time.time()}

    def _claim_run_dir(self) -> None:
        self.state_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for _ in range(100):
            run_id = secrets.token_hex(3)
            names = [f"{PREFIX}-{run_id}-sw"] + [f"{PREFIX}-{run_id}-n{i}"
                                                 for i in range(self.nodes)]
            if any((NETNS_DIR / n).exists() for n in names):
                continue
            try:
                (self.state_root / run_id).mkdir(mode=0o700)
            except FileExistsError:
                continue
            self.run_id, self.run_dir = run_id, self.state_root / run_id
            self.switch, self.namespaces = names[0], names[1:]
            return
        raise DistbenchError(f"no free run ID under {self.state_root}")

    def _write_state(self) -> None:
        tmp = self.run_dir / "state.json.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        os.write(fd, json.dumps(self.state(), indent=1).encode())
        os.rename(tmp, self.run_dir / "state.json")

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def create(self) -> None:
        """Reap dead runs' leftovers, then build this run's namespaces, links and qdiscs.
        On any failure (or signal) everything built so far is removed before raising."""
        self.reaped = reap_leftovers(self.tools, self.state_root)
        self._claim_run_dir()
        try:
            self._write_state()
            self._guardian = start_guardian(self.run_dir)
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _build(self) -> None:
        ip, tc, sw = self.tools["ip"], self.tools["tc"], self.switch
        _tool([ip, "-batch", "-"], [f"netns add {n}" for n in self.all_namespaces])
        lines = [f"link add {BRIDGE} mtu {LINK_MTU} type bridge", f"link set {BRIDGE} up"]
        for i, ns in enumerate(self.namespaces):
            lines += [f"link add n{i} mtu {LINK_MTU} type veth peer name {NODE_IFACE} "
                      f"mtu {LINK_MTU} netns {ns}", f"link set n{i} master {BRIDGE} up"]
        _tool([ip, "-n", sw, "-batch", "-"], lines)
        plen = self.subnet.prefixlen
        for ns, addr in zip(self.namespaces, self.addresses, strict=True):
            _tool([ip, "-n", ns, "-batch", "-"], [f"addr add {addr}/{plen} dev {NODE_IFACE}",
                                                  f"link set {NODE_IFACE} up", "link set lo up"])
        if self.rate_bits is None:
            return
        tbf = (f"root tbf rate {self.rate_bits}bit burst {tbf_burst_bytes(self.rate_bits)} "
               f"latency {TBF_LATENCY}")
        _tool([tc, "-n", sw, "-batch", "-"],
              [f"qdisc replace dev n{i} {tbf}" for i in range(self.nodes)])
        for ns in self.namespaces:
            _tool([tc, "-n", ns, "-batch", "-"], [f"qdisc replace dev {NODE_IFACE} {tbf}"])

    def destroy(self) -> None:
        """Kill what runs in the namespaces, delete them and the run folder (idempotent;
        signals are held off meanwhile so an impatient second Ctrl-C cannot cut it short)."""
        with signals_deferred():
            try:
                if self.switch:
                    destroy_namespaces(self.all_namespaces, self.tools)
                # Only once the namespaces are gone: otherwise state.json stays, so the next run
                # (which can take its lock once this process has exited) removes them.
                if self.run_dir is not None:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None
                if self._guardian is not None:  # torn down: it finds nothing to do and exits
                    with suppress(OSError):
                        self._guardian.stdin.close()
                    with suppress(subprocess.TimeoutExpired):
                        self._guardian.wait(timeout=10)  # gone before the run reports its end
                    self._guardian = None
