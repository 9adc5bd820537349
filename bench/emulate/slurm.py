"""Real Slurm on an emulated cluster: ``distbench emulate --scheduler slurm``.

On top of :class:`distbench.emulate.cluster.Cluster`'s network, one more namespace is the
controller (the "login node", hostname ``dbe-ID-ctl``): it runs ``munged`` and ``slurmctld``, and
every client command (``srun``, ``salloc``, ``sbatch``, ``squeue``, ``scancel``). Each node
namespace (hostname = namespace name) runs ``slurmd -D -N NODE``. The controller's link is
shaped like the nodes'. Jobs then start the way they do on a cluster:

* ``srun``: ``srun --mpi=pmix -N N -n N*K --kill-on-bad-exit=1 ...`` (direct launch, PMIx);
* ``salloc``: ``salloc ... mpirun -n N*K ...``: Open MPI's PRRTE reads the allocation and starts
  its daemons with ``srun``;
* ``batch``: ``sbatch`` of a script (its ``#SBATCH`` size and time are overridden by the
  cluster's), the job's state polled with ``squeue`` (``sbatch --wait`` polls slowly), its
  output printed as it grows, its exit code returned.

Start-up order matters for speed: slurmd and the client commands retry a closed slurmctld port
only after 1 s, so the slurmds start once its port listens (cluster up in ~0.2 s, not 1.1 s);
and a fresh slurmctld's main scheduler leaves batch jobs pending for its first ~3 s, so the
backfill pass runs every second (``SchedulerParameters=batch_sched_delay=0,bf_interval=1``):
a batch script starts within ~1 s.

Every job gets a time limit: Slurm's ``--time`` (whole minutes, rounded up) and this module's
own, to the second; past it the job is cancelled and :class:`JobTimeout` (exit 3) raised. A
daemon that dies during a job cancels it too (:class:`DistbenchError`).

Node entry: ``nsenter --net=/run/netns/NS unshare --uts --mount sh -c 'mount --bind HOSTS
/etc/hosts && hostname NAME && exec CMD'``, with a private hosts file naming every node (``ip
netns exec`` remounts ``/sys``, and slurmd then finds no cgroup file system). The bind mount
lives only in that private mount namespace and goes with its last process.

Files, all under the run folder (deleted at teardown): ``slurm/slurm.conf``, ``hosts``,
``munge/`` (key, socket, seed), ``ctld/`` (StateSaveLocation), ``NODE/spool``
(SlurmdSpoolDir) and ``NODE/tmp`` (TmpFS: the nodes share ``/tmp``, where Slurm's PMIx plugin
makes its per-job directory, and without it ``srun --mpi=pmix`` fails to launch the tasks yet
exits 0; a TaskProlog sets the tasks' TMPDIR to it too),
``*.log`` (the daemons' output) and ``job-ID.out`` (batch output). munged runs with
``--force`` only because the run folder is root-only (0700) and munged wants the socket's path
open to all; the daemons run in the namespaces, so the reaper of dead runs
(:func:`distbench.emulate.network.reap_leftovers`) ends them with the rest.

Ranks (and batch scripts) get ``DISTBENCH_EMULATED`` with ``scheduler``, ``launch`` and
``controller`` added, ``SLURM_CONF``, and Open MPI settings as environment variables (``pml
ob1``, ``btl self,sm,tcp`` on the emulated subnet, ``mpi_yield_when_idle``, PRRTE's out-of-band
channel on the subnet, no binding), so ``srun`` and ``mpirun`` inside a batch script behave as
the launch styles do. Needs Open MPI >= 5 and Debian's ``slurmctld slurmd slurm-client munge
libpmix2 libpmix-dev`` (Slurm's PMIx plugin loads the unversioned ``libpmix.so``).
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from distbench.emulate.cluster import ENV_VAR, Cluster, Interrupted
from distbench.emulate.network import (
    DEFAULT_SUBNET,
    NETNS_DIR,
    PREFIX,
    STATE_ROOT,
    Network,
    parse_subnet,
    signals_deferred,
)
from distbench.errors import DistbenchError, UsageError, eprint

LAUNCHES = ("srun", "salloc", "batch")
DEFAULT_TIME_LIMIT_S = 1800
PARTITION = "emulated"
PACKAGES = "slurmctld slurmd slurm-client munge libpmix2 libpmix-dev"
# tool -> Debian package that ships it
_TOOLS = {"munged": "munge", "mungekey": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd",
          "srun": "slurm-client", "salloc": "slurm-client", "sbatch": "slurm-client",
          "squeue": "slurm-client", "scancel": "slurm-client", "sinfo": "slurm-client",
          "nsenter": "util-linux", "mount": "mount"}
_PMIX_GLOBS = ("/usr/lib/*/libpmix.so", "/usr/lib/*/pmix*/lib/libpmix.so", "/usr/lib64/libpmix.so",
               "/usr/local/lib/libpmix.so", "/usr/lib/libpmix.so")
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
           "RESIZING", "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED"}
_ENTER = 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"'
_CTLD_PORT = 6817
_START_TIMEOUT_S = 30.0
_GRACE_S = 5.0


class JobTimeout(DistbenchError):
    """A job ran past its time limit and was cancelled; exit code 3."""

    exit_code = 3


def check_slurm(launch: str = "srun") -> dict[str, str]:
    """Absolute paths of the Slurm, munge and util-linux tools a Slurm cluster needs (key
    ``libpmix`` too, for ``srun --mpi=pmix``: launch styles ``srun`` and ``batch``).

    Raises:
        UsageError: one line naming the missing tools and their Debian packages.
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin",
                              "/bin"])
    found, missing = {}, {}
    for tool, package in _TOOLS.items():
        path = shutil.which(tool, path=search)
        if path is None:
            missing.setdefault(package, []).append(tool)
        else:
            found[tool] = os.path.abspath(path)
    if launch != "salloc":
        libs = [p for pattern in _PMIX_GLOBS for p in sorted(glob.glob(pattern))]
        if libs:
            found["libpmix"] = libs[0]
        else:
            missing.setdefault("libpmix-dev", []).append("libpmix.so")
    if missing:
        what = "; ".join(f"{pkg} ({', '.join(tools)})" for pkg, tools in missing.items())
        raise UsageError(f"--scheduler slurm needs Slurm and munge, and these packages are "
                         f"missing: {what} (Debian: apt-get install --no-install-recommends "
                         f"{PACKAGES})")
    return found


def slurm_config(config: dict, scheduler: str, launch: str | None, batch: str | None,
                 time_limit: int | None) -> dict:
    """Check the Slurm options of ``distbench emulate`` and add them to its ``config``
    (keys ``scheduler``, ``launch``, ``batch``, ``time_limit_s``).

    Raises:
        UsageError: Slurm options without ``--scheduler slurm``, ``--launch`` with
            ``--batch``, mpirun flags with ``--batch``, a time limit < 1 s, a missing inner
            command, or missing packages (:func:`check_slurm`).
    """
    if scheduler != "slurm":
        given = [o for o, v in (("--launch", launch), ("--batch", batch),
                                ("--time-limit", time_limit)) if v is not None]
        raise UsageError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} "
                         "--scheduler slurm")
    if batch is not None and launch is not None:
        raise UsageError("--batch runs the script with sbatch; it takes no --launch")
    if batch is not None and config["mpirun_flags"]:
        raise UsageError("--mpirun-flag does not apply to --batch (the script launches)")
    if batch is None and not config["inner"]:
        raise UsageError("no subcommand after `--` (e.g. `-- allreduce`), or give --batch")
    if time_limit is not None and time_limit < 1:
        raise UsageError(f"--time-limit must be >= 1 second, not {time_limit}")
    launch = "batch" if batch is not None else (launch or "srun")
    check_slurm(launch)
    return {**config, "scheduler": "slurm", "launch": launch,
            "batch": None if batch is None else os.path.abspath(batch),
            "time_limit_s": DEFAULT_TIME_LIMIT_S if time_limit is None else time_limit}


def _exit_code(status: int) -> int:
    """Shell-style exit code of a wait status (128 + signal for a killed process)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of process ``pid``
    (its ``/proc/PID/net/tcp``, state 0A)."""
    try:
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in map(str.split, rows))


def _log_tail(path: Path) -> str:
    """The last error line of a daemon's log (else its last line), for an error message."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return (errors or lines or ["empty log"])[-1]


class SlurmCluster(Cluster):
    """An emulated cluster with a Slurm controller and one slurmd per node (module doc).

    Use as a context manager, like :class:`~distbench.emulate.cluster.Cluster`::

        with SlurmCluster(2, 2, "1gbit", launch="srun") as cluster:
            code = cluster.run([sys.executable, "script.py"])
            code = cluster.batch("job.sbatch")

    Args:
        nodes, ranks_per_node, link, subnet, mpirun, state_root: as for ``Cluster``; each node
            has ``ranks_per_node`` Slurm CPUs.
        launch: how :meth:`run` starts a job: ``"srun"`` or ``"salloc"`` (``"batch"``
            recorded only: :meth:`batch` runs scripts in any case).
        time_limit_s: each job's time limit in seconds.

    Raises:
        UsageError: what ``Cluster`` raises; missing packages (:func:`check_slurm`); an MPI
            other than Open MPI >= 5; an unknown launch style or a time limit < 1 s.
    """

    def __init__(self, nodes: int, ranks_per_node: int = 1, link: str = "none",
                 subnet: str = DEFAULT_SUBNET, mpirun: str | None = None, launch: str = "srun",
                 time_limit_s: float = DEFAULT_TIME_LIMIT_S, state_root: Path = STATE_ROOT):
        if launch not in LAUNCHES:
            raise UsageError(f"unknown launch style {launch!r} (choose {', '.join(LAUNCHES)})")
        if time_limit_s < 1:
            raise UsageError(f"the time limit must be >= 1 second, not {time_limit_s}")
        self.slurm = check_slurm(launch)
        super().__init__(nodes, ranks_per_node, link, subnet, mpirun, state_root)
        if self.family != "openmpi":
            raise UsageError(f"--scheduler slurm needs Open MPI >= 5 (PRRTE's Slurm launcher, "
                             f"PMIx); {self.mpirun} is {self.family}")
        try:
            with_controller = parse_subnet(subnet, nodes + 1)
        except UsageError as exc:
            raise UsageError(f"{exc} and the Slurm controller") from None
        # one namespace more than nodes: the last is the controller
        self.net = Network(nodes + 1, self.rate_bits, with_controller, self.tools, state_root)
        self.launch, self.time_limit_s = launch, float(time_limit_s)
        out = subprocess.run([self.slurm["slurmd"], "-V"], capture_output=True, text=True,
                             timeout=30).stdout  # "slurm-wlm 22.05.8"
        self.version = "Slurm " + (out.split() or ["?"])[-1]
        self.job_id: str | None = None
        self._daemons: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ topology
    @property
    def namespaces(self) -> list[str]:
        """Compute node namespaces (also their hostnames and Slurm node names)."""
        return self.net.namespaces[:self.nodes]

    @property
    def addresses(self) -> list[str]:
        return self.net.addresses[:self.nodes]

    @property
    def controller(self) -> str:
        """The controller's namespace (the last one)."""
        return self.net.namespaces[self.nodes]

    @property
    def controller_host(self) -> str:
        """The controller's hostname (``SlurmctldHost``)."""
        return f"{PREFIX}-{self.net.run_id}-ctl"

    @property
    def daemon_pids(self) -> dict[str, int]:
        """``{"munged": pid, "slurmctld": pid, "slurmd NODE": pid, ...}`` of this cluster."""
        return {name: proc.pid for name, proc in self._daemons.items()}

    def emulated(self) -> dict:
        doc = super().emulated()
        doc.update(scheduler="slurm", slurm=self.version, launch=self.launch,
                   controller=self.controller_host,
                   controller_address=self.net.addresses[self.nodes],
                   time_limit_s=self.time_limit_s,
                   mpi_launcher={"srun": "srun --mpi=pmix", "salloc": "salloc + mpirun",
                                 "batch": "sbatch script"}[self.launch])
        return doc

    # ------------------------------------------------------------------ life cycle
    def up(self) -> None:
        """Build the network and Slurm's files (``Cluster.up``), start munged, slurmctld and
        the slurmds, and wait until every node is idle (all removed again on a failure).

        Raises:
            DistbenchError: a daemon exited, or the nodes were not idle within 30 s.
        """
        super().up()
        try:
            self._start_daemons()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Cancel the jobs, kill the recorded daemons, then delete the namespaces (which
        kills anything left in them) and the run folder with the spool and tmp folders."""
        with signals_deferred():
            try:
                if self._daemons:  # (a job on a node whose slurmd died never ends: no wait)
                    self._cancel_jobs(wait_s=0 if self._dead_daemon() else _GRACE_S)
            finally:
                try:
                    for proc in self._daemons.values():
                        if proc.poll() is None:
                            proc.kill()
                        proc.wait()
                    self._daemons.clear()
                finally:
                    super().down()

    def _write_launch_files(self) -> None:
        """(Called by ``Cluster.up``.) slurm.conf, hosts, munge key, TaskProlog, folders."""
        d = self.dir = self.net.run_dir / "slurm"
        for sub in ("munge", "ctld", "ctl-tmp", *(f"{n}/{s}" for n in self.namespaces
                                                  for s in ("spool", "tmp"))):
            (d / sub).mkdir(parents=True, mode=0o700)
        ctl_addr = self.net.addresses[self.nodes]
        self.hosts = d / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(
            f"{a} {n}\n" for a, n in zip(self.addresses, self.namespaces, strict=True))
            + f"{ctl_addr} {self.controller_host}\n")
        subprocess.run([self.slurm["mungekey"], "--create", f"--keyfile={d}/munge/munge.key"],
                       check=True, capture_output=True, timeout=30)
        prolog = d / "task_prolog"
        prolog.write_text(f'#!/bin/sh\necho "export TMPDIR={d}/$SLURMD_NODENAME/tmp"\n')
        prolog.chmod(0o700)
        nodes = "".join(f"NodeName={n} NodeAddr={a} CPUs={self.ranks_per_node} State=UNKNOWN\n"
                        for n, a in zip(self.namespaces, self.addresses, strict=True))
        self.conf = d / "slurm.conf"
        self.conf.write_text(f"""\
ClusterName={PREFIX}{self.net.run_id}
SlurmctldHost={self.controller_host}({ctl_addr})
SlurmctldPort={_CTLD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
StateSaveLocation={d}/ctld
SlurmdSpoolDir={d}/%n/spool
TmpFS={d}/%n/tmp
TaskProlog={prolog}
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/%n/slurmd.pid
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=2
InactiveLimit=0
SchedulerParameters=batch_sched_delay=0,bf_interval=1
{nodes}PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def environ(self) -> dict[str, str]:
        """The environment of every Slurm command (and so of the jobs): ``Cluster.environ``'s
        without an outer job's ``SLURM_*``, plus ``SLURM_CONF``, the controller's TMPDIR and
        Open MPI/PRRTE settings for the emulated subnet (see the module doc)."""
        env = {k: v for k, v in super().environ().items()
               if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
        cidr = str(self.subnet)
        env.update(SLURM_CONF=str(self.conf), TMPDIR=str(self.dir / "ctl-tmp"),
                   OMPI_MCA_pml="ob1", OMPI_MCA_btl="self,sm,tcp",
                   OMPI_MCA_btl_tcp_if_include=cidr, OMPI_MCA_mpi_yield_when_idle="1",
                   PRTE_MCA_oob_tcp_if_include=cidr, PRTE_MCA_hwloc_default_binding_policy="none")
        return env

    def on_node(self, ns: str, host: str, argv: list[str]) -> list[str]:
        """``argv`` run in namespace ``ns`` as host ``host`` with the cluster's hosts file."""
        return [self.slurm["nsenter"], f"--net={NETNS_DIR / ns}", self.tools["unshare"], "--uts",
                "--mount", self.tools["sh"], "-c", _ENTER, "sh", str(self.hosts), host, *argv]

    def on_controller(self, argv: list[str]) -> list[str]:
        """``argv`` run on the login node (the controller's namespace and hostname)."""
        return self.on_node(self.controller, self.controller_host, argv)

    def query(self, argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
        """Run a Slurm client command (squeue, sinfo, scancel) in the controller's network
        namespace (no hostname or hosts file needed: the cheap path for polling)."""
        cmd = [self.slurm["nsenter"], f"--net={NETNS_DIR / self.controller}", *argv]
        return subprocess.run(cmd, env=self.environ(), capture_output=True, text=True,
                              timeout=timeout)

    def _spawn(self, name: str, ns: str, host: str, argv: list[str]) -> None:
        log = self.dir / f"{name.replace(' ', '-')}.log"
        with open(log, "wb") as fh:
            self._daemons[name] = subprocess.Popen(
                self.on_node(ns, host, argv), env=self.environ(), stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def _dead_daemon(self) -> tuple[str, str] | None:
        """(name, "NAME exited with code C" or "NAME was killed by SIG") of the first daemon
        that is gone, else None."""
        for name, proc in self._daemons.items():
            code = proc.poll()
            if code is not None:
                how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                       else f"exited with code {code}")
                return name, f"{name} {how}"
        return None

    def _start_daemons(self) -> None:
        d, s = self.dir, self.slurm
        self._spawn("munged", self.controller, self.controller_host, [
            s["munged"], "--foreground", "--force", f"--socket={d}/munge/munge.socket",
            f"--key-file={d}/munge/munge.key", f"--pid-file={d}/munge/munged.pid",
            f"--log-file={d}/munge/munged.log", f"--seed-file={d}/munge/munged.seed"])
        self._wait_for(lambda: (d / "munge" / "munge.socket").exists(), "munged's socket")
        self._spawn("slurmctld", self.controller, self.controller_host, [s["slurmctld"], "-D"])
        # slurmd and sinfo retry a closed port only after 1 s: start them once it is open
        self._wait_for(lambda: _listening(self._daemons["slurmctld"].pid, _CTLD_PORT),
                       f"slurmctld listening on port {_CTLD_PORT}")
        for ns in self.namespaces:
            self._spawn(f"slurmd {ns}", ns, ns, [s["slurmd"], "-D", "-N", ns])

        def idle() -> bool:
            out = self.query([s["sinfo"], "-h", "-N", "-o", "%T"])
            states = out.stdout.split()
            return out.returncode == 0 and states == ["idle"] * self.nodes
        self._wait_for(idle, "every node idle in sinfo")

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not ready():
            dead = self._dead_daemon()
            if dead:
                log = self.dir / f"{dead[0].replace(' ', '-')}.log"
                raise DistbenchError(f"Slurm did not start: {dead[1]} ({_log_tail(log)})")
            if time.monotonic() > deadline:
                raise DistbenchError(f"Slurm did not start: no {what} after "
                                     f"{_START_TIMEOUT_S:g} s (logs in {self.dir})")
            time.sleep(0.02)

    # ------------------------------------------------------------------ jobs
    def job_state(self, job_id: str, settle_s: float = 0.0) -> tuple[str, int | None, str]:
        """(state, exit code or None, node list) of job ``job_id`` from ``squeue``
        (``("UNKNOWN", None, "")`` when the controller does not answer); with ``settle_s``,
        waits up to that long for a final state (a job is COMPLETING for a moment after its
        launcher returns)."""
        deadline = time.monotonic() + settle_s
        while True:
            out = self.query([self.slurm["squeue"], "-h", "-t", "all", "-j", str(job_id), "-O",
                              "State:|,exit_code:|,NodeList:|"])
            fields = [f.strip() for f in out.stdout.strip().split("|")]
            if out.returncode != 0 or len(fields) < 3:
                return "UNKNOWN", None, ""
            if fields[0] not in _ACTIVE or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        status = int(fields[1]) if fields[1].isdigit() else None
        code = None if status is None or fields[0] in _ACTIVE else _exit_code(status)
        return fields[0], code, fields[2]

    def _latest_job(self) -> str | None:
        out = self.query([self.slurm["squeue"], "-h", "-t", "all", "-o", "%i"])
        ids = [int(x) for x in out.stdout.split() if x.isdigit()]
        return str(max(ids)) if ids else None

    def _cancel_jobs(self, wait_s: float = 0.0) -> None:
        """scancel every job of this cluster; wait up to ``wait_s`` for them to end."""
        if self._daemons.get("slurmctld") is None or self._daemons["slurmctld"].poll() is not None:
            return
        try:
            self.query([self.slurm["scancel"], f"--partition={PARTITION}"], timeout=10)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                out = self.query([self.slurm["squeue"], "-h", "-o", "%T"], timeout=5)
                if out.returncode != 0 or not out.stdout.split():
                    return
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            return

    def _size(self, limit_s: float) -> list[str]:
        """Job size and Slurm time limit (whole minutes, rounded up) for sbatch/salloc/srun."""
        return [f"--nodes={self.nodes}", f"--ntasks={self.size}",
                f"--ntasks-per-node={self.ranks_per_node}", f"--time={math.ceil(limit_s / 60)}"]

    def _launch_argv(self, argv: list[str], flags: list[str], limit_s: float) -> list[str]:
        s, size = self.slurm, [*self._size(limit_s), "--job-name=distbench"]
        if self.launch == "salloc":
            return [s["salloc"], "--quiet", *size, self.mpirun, "-n", str(self.size),
                    "--bind-to", "none", "-x", ENV_VAR, *flags, *argv]
        return [s["srun"], "--mpi=pmix", "--kill-on-bad-exit=1", *size, *flags, *argv]

    def run(self, argv: list[str], flags: list[str] = (), timeout: float | None = None,
            **popen_kwargs) -> int:
        """Run ``argv`` on every rank as one Slurm job (``srun`` or ``salloc`` + ``mpirun``,
        per ``launch``); return the launcher's exit code (the job id is in ``job_id``).
        ``flags`` go to srun, or to mpirun under salloc; ``popen_kwargs`` to Popen.

        Raises:
            JobTimeout: past ``min(timeout, time_limit_s)`` seconds (the job is cancelled).
            DistbenchError: a daemon died during the job (the job is cancelled).
        """
        if self.launch == "batch":
            raise DistbenchError("this cluster runs batch scripts: use batch(script)")
        limit = self.time_limit_s if timeout is None else min(timeout, self.time_limit_s)
        self.job_id = None
        proc = subprocess.Popen(self.on_controller(self._launch_argv(list(argv), list(flags),
                                                                     limit)),
                                env=self.environ(), stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen_kwargs)
        try:
            code = self._supervise(proc.poll, limit)
        except BaseException:
            self._cancel_jobs()
            self._stop(proc)
            raise
        self.job_id = self._latest_job()
        return code

    def batch(self, script: str | os.PathLike, args: list[str] = (), timeout: float | None = None,
              out=None) -> int:
        """Submit ``script`` (with ``args``) with sbatch on all nodes, from the current folder;
        copy its output (stdout and stderr) to ``out`` (default: this stdout) as it grows;
        return the job's exit code (128 + signal if killed).

        Raises:
            JobTimeout, DistbenchError: as :meth:`run`; also when sbatch refuses the script.
        """
        limit = self.time_limit_s if timeout is None else min(timeout, self.time_limit_s)
        out = out if out is not None else sys.stdout.buffer
        output = self.dir / "job-%j.out"
        submit = subprocess.run(self.on_controller([
            self.slurm["sbatch"], "--parsable", *self._size(limit), f"--chdir={os.getcwd()}",
            f"--output={output}", str(script), *args]), env=self.environ(),
            capture_output=True, text=True, timeout=60)
        if submit.returncode != 0:
            why = (submit.stderr.strip().splitlines() or [f"exit {submit.returncode}"])[-1]
            raise DistbenchError(f"sbatch refused {script}: {why}")
        self.job_id = job = submit.stdout.strip().split(";")[0]
        path, offset, interval = self.dir / f"job-{job}.out", 0, 0.05

        def finished() -> int | None:  # polls squeue less often as the job goes on (<= 0.5 s)
            nonlocal offset, interval
            time.sleep(interval)
            interval = min(interval * 1.25, 0.5)
            state, code, _ = self.job_state(job)
            offset = _copy_new(path, offset, out)
            if state in _ACTIVE or state == "UNKNOWN":
                return None
            return 1 if code is None else code

        try:
            return self._supervise(finished, limit)
        except BaseException:
            self._cancel_jobs()
            raise
        finally:
            _copy_new(path, offset, out)

    def _supervise(self, poll, limit: float) -> int:
        """Call ``poll()`` (None while the job runs, else its exit code) every ~50 ms until
        it ends, a daemon dies or ``limit`` seconds pass."""
        deadline = time.monotonic() + limit
        while True:
            code = poll()
            if code is not None:
                return code
            dead = self._dead_daemon()
            if dead:
                job = self.job_id or self._latest_job()
                raise DistbenchError(f"{dead[1]} during Slurm job {job}; the job was cancelled")
            if time.monotonic() > deadline:
                job = self.job_id or self._latest_job()
                raise JobTimeout(f"Slurm job {job} ran past its time limit of {limit:g} s "
                                 "and was cancelled")
            time.sleep(0.05)

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _copy_new(path: Path, offset: int, out) -> int:
    """Write what ``path`` gained past ``offset`` to ``out``; return the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def run_slurm(config: dict) -> int:
    """``distbench emulate --scheduler slurm``: build the cluster of ``config`` (see
    :func:`slurm_config`), run ``distbench INNER`` (srun or salloc) or the batch script, tear
    it down; return the job's exit code (3 past the time limit, 128 + signal when
    interrupted). A failed job, a time-out or a dead daemon print one ``Error:`` line."""
    cluster = SlurmCluster(config["nodes"], config["ranks_per_node"], config["link"],
                           config["subnet"], config["mpirun"], config["launch"],
                           config["time_limit_s"])
    try:
        start = time.perf_counter()
        with cluster:
            eprint(f"distbench emulate: {cluster.version} on {cluster.nodes} nodes x "
                   f"{cluster.ranks_per_node} CPUs ({', '.join(cluster.namespaces)}; controller "
                   f"{cluster.controller_host}), link {cluster.link}, up in "
                   f"{time.perf_counter() - start:.2f} s; launch "
                   f"{cluster.emulated()['mpi_launcher']}, time limit "
                   f"{cluster.time_limit_s:g} s")
            launcher = cluster.emulated()["mpi_launcher"]
            if config["launch"] == "batch":
                code = cluster.batch(config["batch"], config["inner"])
                what = f"batch job {cluster.job_id} ({Path(config['batch']).name})"
                launcher = "sbatch"
            else:
                code = cluster.run([sys.executable, "-m", "distbench", *config["inner"]],
                                   config["mpirun_flags"])
                what = f"job {cluster.job_id} ({launcher})"
            if code and cluster.job_id is None:  # no job to ask about: the launcher's code
                eprint(f"Error: Slurm's {launcher} exited with code {code} before a job was "
                       "created (its output is above)")
            elif code:
                state = cluster.job_state(cluster.job_id, 3.0)[0]
                if state == "TIMEOUT":  # Slurm's own limit (whole minutes) came first
                    raise JobTimeout(f"Slurm {what} ran past its time limit and was cancelled")
                eprint(f"Error: Slurm {what} ended {state} with exit code {code}")
            return code
    except JobTimeout as exc:
        eprint(f"Error: {exc}")
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        eprint(f"Error: interrupted by {signal.Signals(signum).name}; the emulated Slurm "
               "cluster was torn down")
        return 128 + signum
