"""``distbench emulate --scheduler slurm``: a real Slurm (munged, slurmctld, one slurmd per node
namespace) running jobs through srun, salloc + mpirun and sbatch (serial run).

The cluster tests need root, network namespaces and Debian's ``slurmctld slurmd slurm-client
munge libpmix2 libpmix-dev`` (``.ci/run`` installs them); without them they are skipped with
the reason. Input checks and the results' Slurm record run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from launch import namespaces_skip_reason

from distbench.emulate.network import NETNS_DIR, PREFIX, STATE_ROOT, pids_in
from distbench.errors import UsageError
from distbench.launcher import launched_by_mpirun

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent
BATCH_SCRIPT = REPO / "examples" / "slurm" / "bench.sbatch"
PLACEMENT = REPO / "tests" / "data" / "placement.py"
FAIL = PLACEMENT.parent / "fail.py"

pytestmark = pytest.mark.skipif(launched_by_mpirun(), reason="serial tests: they launch jobs")


@pytest.fixture(scope="module")
def slurm_allowed():
    """Skip (saying why) unless Slurm clusters can be built here; probed once, when needed."""
    from distbench.emulate.slurm import check_slurm

    reason = namespaces_skip_reason(lambda: check_slurm("srun"))
    if reason is not None:
        pytest.skip(f"Slurm on the emulated cluster: {reason}")


needs_slurm = pytest.mark.usefixtures("slurm_allowed")


def _env(**extra) -> dict:
    env = {**os.environ, "OMPI_MCA_btl": os.environ.get("OMPI_MCA_btl", "^ofi"), **extra}
    env.pop("COLUMNS", None)
    return env


def _distbench(*args, timeout=120, **extra):
    return subprocess.run([PY, "-m", "distbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(**extra), cwd=REPO)


@pytest.fixture
def spawned():
    """A list to put started ``distbench emulate`` processes in: any still running when the
    test ends (it failed half-way) gets SIGTERM, so it tears its cluster down, then SIGKILL."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _errors(text: str) -> list[str]:
    """The lines that start with "Error", each from its "Error" on where a rank's output
    without a newline (Open MPI's btl warnings) ran into it on the shared stderr."""
    out = []
    for line in text.splitlines():
        if line.startswith("Error"):
            out.append(line)
        elif "] Error: " in line and "distbench" not in line.split("] Error: ")[0]:
            out.append("Error: " + line.split("] Error: ", 1)[1])
    return out


def _run_id(stderr: str) -> str:
    found = re.search(rf"{PREFIX}-([0-9a-f]{{6}})-ctl", stderr)
    assert found, stderr[-2000:]
    return found.group(1)


def _leftovers(run_id: str) -> list[str]:
    """What is left of run ``run_id``: its namespaces, its run folder (spool and tmp folders
    inside), any process that still has its hosts file mounted (every process in a node's
    or the controller's mount namespace) or names it on its command line."""
    found = [f"netns {p.name}" for p in NETNS_DIR.glob(f"{PREFIX}-{run_id}-*")]
    if (STATE_ROOT / run_id).exists():
        found.append(f"folder {STATE_ROOT / run_id}")
    marker = f"distbench-emulate/{run_id}"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            mounts = Path(f"/proc/{entry}/mountinfo").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in mounts:
            found.append(f"pid {entry} ({cmd!r}) has a mount from {marker}")
        elif f"{PREFIX}-{run_id}" in cmd or marker in cmd:
            found.append(f"pid {entry} runs {cmd!r}")
    return found


def _wait_for_state(proc, timeout=30) -> dict:
    """The state.json of the cluster that ``proc`` (distbench emulate) owns, once it and the
    namespaces it lists exist (it is written before they are built)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for path in STATE_ROOT.glob("*/state.json"):
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if doc["pid"] == proc.pid and all((NETNS_DIR / n).exists()
                                              for n in doc["namespaces"]):
                return doc
        time.sleep(0.05)
    raise AssertionError("the cluster never came up")


def _wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _netns_id(name: str) -> tuple[int, int]:
    st = os.stat(NETNS_DIR / name)
    return st.st_dev, st.st_ino


def _proc_netns(pid: int) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/net")
    return st.st_dev, st.st_ino


# ------------------------------------------------------------------ no privileges needed


@pytest.mark.parametrize("args", [
    ["--scheduler", "pbs", "--", "info"],
    ["--scheduler", "slurm", "--batch", "/nonexistent/job.sbatch"],
    ["--launch", "salloc", "--", "info"],
    ["--time-limit", "60", "--", "info"],
    ["--scheduler", "slurm", "--time-limit", "0", "--", "info"],
    ["--scheduler", "slurm", "--launch", "srun", "--batch", str(BATCH_SCRIPT)],
    ["--scheduler", "slurm", "--mpirun-flag=-x", "--batch", str(BATCH_SCRIPT)],
    ["--scheduler", "slurm"],
    ["--scheduler", "slurm", "--", ],
])
def test_bad_input_exits_2_with_one_line(args):
    proc = _distbench("emulate", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr


def test_missing_slurm_packages_one_line_exit_2(monkeypatch, capsys):
    """Without slurmd and munged: one line naming them and their packages, exit 2, before any
    namespace is built."""
    import distbench.emulate.slurm as slurm
    from distbench.cli import main

    real_which = slurm.shutil.which
    monkeypatch.setattr(slurm.shutil, "which", lambda name, path=None: None if name in (
        "slurmd", "munged", "mungekey") else real_which(name, path=path))
    with pytest.raises(UsageError) as info:
        slurm.check_slurm("salloc")
    assert "\n" not in str(info.value)
    assert "munge (munged, mungekey)" in str(info.value) and "slurmd (slurmd)" in str(info.value)
    with pytest.raises(SystemExit) as exited:
        main(["emulate", "--scheduler", "slurm", "--", "info"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: --scheduler slurm "
                                                                  "needs"), err
    assert "apt-get install" in err


def test_scheduler_record_tells_the_launcher():
    from distbench.results import env_line, scheduler_record

    assert scheduler_record({"PATH": "/bin"}) is None
    base = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[0-1]", "SLURM_JOB_NUM_NODES": "2",
            "SLURM_JOB_PARTITION": "p", "SLURM_CLUSTER_NAME": "c"}
    srun = scheduler_record({**base, "SLURM_STEP_ID": "0", "SLURM_MPI_TYPE": "pmix"})
    assert srun == {"name": "slurm", "job_id": "7", "step_id": "0", "nodelist": "n[0-1]",
                    "nodes": 2, "partition": "p", "cluster": "c", "launcher": "srun --mpi=pmix"}
    mpirun = scheduler_record({**base, "SLURM_STEP_ID": "0", "OMPI_COMM_WORLD_SIZE": "4"})
    assert mpirun["launcher"] == "mpirun"
    assert scheduler_record(base)["launcher"] is None  # the batch script itself
    assert "slurm job 7 (srun --mpi=pmix)" in env_line({"scheduler": srun, "ranks": 4})


# ------------------------------------------------------------------ Slurm clusters

@pytest.fixture(scope="module")
def slurm_cluster(slurm_allowed):
    """One 2 x 2 Slurm cluster at 100mbit shared by the placement tests."""
    from distbench.emulate.slurm import SlurmCluster

    cluster = SlurmCluster(2, 2, "100mbit", time_limit_s=120)
    with cluster:
        yield cluster
    assert _leftovers(cluster.net.run_id) == []


@needs_slurm
@pytest.mark.parametrize("launch", ["srun", "salloc", "batch"])
def test_placement_exact_allreduce_and_shaped_link(slurm_cluster, tmp_path, launch):
    """Every rank sits in its node's namespace under its hostname (2 per node, MPI sees 2
    nodes), hierarchical and ring AllReduce equal MPI_Allreduce across the node boundary,
    the ranks carry the job id and the emulated record, the daemons live in their
    namespaces, and traffic between nodes goes through the shaped link (a ping-pong never
    beats 100 Mbit/s by more than 15 %)."""
    cluster = slurm_cluster
    script, out = PLACEMENT, tmp_path / "placement.json"
    if launch == "batch":
        job = tmp_path / "job.sbatch"
        job.write_text(f"#!/bin/sh\n#SBATCH --nodes=9\nexec srun --mpi=pmix {PY} {script} "
                       f"{out}\n")
        assert cluster.batch(job, out=open(tmp_path / "job.out", "wb")) == 0
    else:
        cluster.launch = launch
        try:
            assert cluster.run([PY, str(script), str(out)]) == 0
        finally:
            cluster.launch = "srun"
    result = json.loads(out.read_text())
    node_ids = [_netns_id(ns) for ns in cluster.namespaces]
    assert result["nodes"] == 2 and result["wrong"] == 0 and result["changed"] == 0
    assert sorted(r["rank"] for r in result["ranks"]) == [0, 1, 2, 3]
    for r in result["ranks"]:
        node = r["rank"] // 2
        assert tuple(r["netns"]) == node_ids[node], r
        assert r["hostname"] == cluster.namespaces[node] and r["node_size"] == 2
        assert r["job"] == cluster.job_id and r["job"].isdigit()
        assert r["emulated"]["scheduler"] == "slurm"
        assert r["emulated"]["hosts"] == cluster.namespaces
    assert result["rate"] <= 1.15 * 100e6, result["rate"]
    ctl = _netns_id(cluster.controller)
    for name, pid in cluster.daemon_pids.items():
        where = _proc_netns(pid)
        assert where == (ctl if name in ("munged", "slurmctld") else
                         node_ids[cluster.namespaces.index(name.split()[1])]), name


@needs_slurm
@pytest.mark.parametrize("launch", ["srun", "salloc"])
def test_cli_allreduce_exact_and_records_the_job(tmp_path, launch):
    """`distbench emulate --scheduler slurm -- allreduce`: #wrong == 0 everywhere, and the
    results record the scheduler, job id, node list and launcher; nothing is left."""
    proc = _distbench("emulate", "--scheduler", "slurm", "--launch", launch, "--nodes", "2",
                      "--ranks-per-node", "2", "--link", "1gbit", "--time-limit", "120", "--",
                      "allreduce", "--algo", "hierarchical,ring", "-b", "8", "-e", "256K", "-f",
                      "8", "-n", "5", "--quiet", "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = _run_id(proc.stderr)
    (run,) = list(tmp_path.iterdir())
    doc = json.loads((run / "results.json").read_text())
    env = doc["environment"]
    assert env["nodes"] == 2 and env["ranks"] == 4
    assert env["hostnames"] == env["emulated"]["hosts"] == [f"{PREFIX}-{run_id}-n0",
                                                            f"{PREFIX}-{run_id}-n1"]
    assert env["emulated"]["scheduler"] == "slurm" and env["emulated"]["launch"] == launch
    job = env["scheduler"]
    assert job["name"] == "slurm" and job["job_id"].isdigit()
    assert job["nodelist"] == f"{PREFIX}-{run_id}-n[0-1]" and job["nodes"] == 2
    assert job["launcher"] == {"srun": "srun --mpi=pmix", "salloc": "mpirun"}[launch]
    assert {r["algorithm"] for r in doc["records"]} == {"native", "hierarchical", "ring"}
    assert all(r["wrong"] == 0 for r in doc["records"])
    assert _leftovers(run_id) == []


@needs_slurm
@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_batch_script_runs_make_bench(tmp_path, launcher):
    """examples/slurm/bench.sbatch end to end: `make bench` inside the job, with srun --mpi=pmix
    (QUICK=1, as CI runs it) and with mpirun reading the allocation (tinier sizes): the
    suite's report is written, every AllReduce is exact, the job's output is printed and the
    runs record the job and the launcher."""
    suite = tmp_path / "suite"
    extra = {"SUITE": str(suite), "QUICK": "1", "MPIRUN": ""}
    if launcher == "mpirun":
        extra.update(MPIRUN=str(Path(PY).parent / "mpirun"), MODEL_NP="2",
                     ALLREDUCE_ARGS="-b 8 -e 64K -f 64 -n 5",
                     COMPRESS_ARGS="-b 1K -e 64K -f 64 --gradients 2",
                     SGD_ARGS="--steps 20 --eval-every 10",
                     FEDAVG_ARGS="--rounds 3 --algorithm fedavg",
                     PARALLEL_ARGS="--layers 2 --hidden 64 --heads 2 --seq 16 --vocab 100 "
                                   "--layouts all --iters 1",
                     TUNE_ARGS="--collective allreduce -b 8 -e 4K -f 8 -n 5")
    proc = _distbench("emulate", "--scheduler", "slurm", "--nodes", "2", "--ranks-per-node",
                      "2", "--link", "1gbit", "--time-limit", "300", "--batch",
                      str(BATCH_SCRIPT), timeout=400, **extra)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    run_id = _run_id(proc.stderr)
    assert re.search(rf"distbench: job \d+ on {PREFIX}-{run_id}-n\[0-1\], 4 tasks", proc.stdout)
    assert (suite / "REPORT.md").exists() and (suite / "model-p2").is_dir()
    doc = json.loads((suite / "allreduce.json").read_text())
    assert doc["records"] and all(r["wrong"] == 0 for r in doc["records"])
    env = doc["environment"]
    assert env["nodes"] == 2 and env["emulated"]["launch"] == "batch"
    assert env["scheduler"]["launcher"] == ("mpirun" if launcher == "mpirun"
                                            else "srun --mpi=pmix")
    assert sorted(p.name.split("-")[-1] for p in suite.glob("*Z-*")) == [
        "compress", "fedavg", "parallel", "sgd", "tune"]
    (par,) = suite.glob("*Z-parallel")
    layouts = {r["layout"] for r in json.loads((par / "results.json").read_text())["records"]}
    # every D x T x P of 4 ranks but 1x4x1 (a tensor group stays inside a node of 2 ranks),
    # and 1x1x4 only where the model has 4 layers for 4 stages (QUICK's, not the tinier one)
    assert layouts == {"4x1x1", "2x2x1", "2x1x2", "1x2x2"} | (
        {"1x1x4"} if launcher == "srun" else set())
    assert _leftovers(run_id) == []


@needs_slurm
def test_failing_ranks_and_time_limit_then_nothing_left(tmp_path):
    """A rank that exits without finalizing (srun) or is killed (salloc + mpirun) fails the job
    within seconds; a job past its time limit is cancelled (JobTimeout); then teardown leaves
    no namespace, daemon, mount or spool folder."""
    from distbench.emulate.slurm import JobTimeout, SlurmCluster

    script = FAIL
    cluster = SlurmCluster(2, 2, "none", time_limit_s=60)
    with cluster:
        run_id, pids = cluster.net.run_id, cluster.daemon_pids
        ids = {_netns_id(ns) for ns in cluster.net.all_namespaces}
        for launch, how in (("srun", "exit"), ("salloc", "kill")):
            cluster.launch = launch
            start = time.monotonic()
            assert cluster.run([PY, str(script), how]) != 0
            assert time.monotonic() - start < 30, launch
            assert cluster.job_state(cluster.job_id, settle_s=5)[0] in ("FAILED", "CANCELLED")
        start = time.monotonic()
        with pytest.raises(JobTimeout, match="time limit of 3 s"):
            cluster.run(["sleep", "60"], timeout=3)
        assert time.monotonic() - start < 15
    assert pids_in(ids) == []
    assert not [pid for pid in pids.values() if Path(f"/proc/{pid}/cmdline").exists()
                and Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert _leftovers(run_id) == []


@needs_slurm
def test_daemon_failing_to_start_is_one_error_and_nothing_left():
    """slurmctld exits at start-up (a select plugin that does not exist): DistbenchError
    naming it and its log's error line; everything built so far is removed."""
    from distbench.emulate.slurm import SlurmCluster
    from distbench.errors import DistbenchError

    class Broken(SlurmCluster):
        def _write_launch_files(self):
            super()._write_launch_files()
            self.conf.write_text(self.conf.read_text().replace("select/cons_tres",
                                                               "select/nonexistent"))

    cluster = Broken(1, 1, "none")
    with pytest.raises(DistbenchError, match=r"Slurm did not start: slurmctld exited") as info:
        with cluster:
            pass
    assert "\n" not in str(info.value)
    assert _leftovers(cluster.net.run_id) == []


SLEEPER = "#!/bin/sh\ntouch {started}\nsrun --mpi=pmix sleep 60\n"


def _start_sleeper(tmp_path, spawned, *options):
    started = tmp_path / "started"
    job = tmp_path / "sleep.sbatch"
    job.write_text(SLEEPER.format(started=started))
    proc = subprocess.Popen(
        [PY, "-m", "distbench", "emulate", "--scheduler", "slurm", "--nodes", "2",
         "--ranks-per-node", "1", "--link", "none", *options, "--batch", str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    spawned.append(proc)
    state = _wait_for_state(proc)
    _wait_for(lambda: started.exists() or proc.poll() is not None, what="the job to start")
    assert proc.poll() is None, proc.communicate()
    return proc, state


@needs_slurm
def test_cli_failing_batch_job_propagates_its_exit_code(tmp_path):
    job = tmp_path / "fail.sbatch"
    job.write_text("#!/bin/sh\necho on $(hostname) job $SLURM_JOB_ID\nexit 7\n")
    proc = _distbench("emulate", "--scheduler", "slurm", "--nodes", "2", "--ranks-per-node", "1",
                      "--link", "none", "--batch", str(job))
    assert proc.returncode == 7, proc.stderr
    run_id = _run_id(proc.stderr)
    assert re.search(rf"on {PREFIX}-{run_id}-n0 job \d+", proc.stdout), proc.stdout
    errors = _errors(proc.stderr)
    assert len(errors) == 1 and "ended FAILED with exit code 7" in errors[0], proc.stderr
    assert _leftovers(run_id) == []


@needs_slurm
def test_cli_time_limit_exits_3(tmp_path, spawned):
    proc, state = _start_sleeper(tmp_path, spawned, "--time-limit", "4")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    errors = _errors(err)
    assert len(errors) == 1 and "ran past its time limit of 4 s" in errors[0], err
    assert _leftovers(state["run_id"]) == []


@needs_slurm
def test_cli_killed_slurmd_exits_1(tmp_path, spawned):
    """SIGKILL the slurmd of the node the batch script does not run on: the job is cancelled,
    one line names the daemon, exit 1, nothing left."""
    proc, state = _start_sleeper(tmp_path, spawned)
    node1 = f"{PREFIX}-{state['run_id']}-n1"
    [slurmd] = [int(p) for p in os.listdir("/proc")
                if p.isdigit() and _cmdline(p) == ["slurmd", "-D", "-N", node1]]
    os.kill(slurmd, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    errors = _errors(err)
    assert len(errors) == 1 and f"slurmd {node1} was killed by SIGKILL" in errors[0], err
    assert _leftovers(state["run_id"]) == []


def _cmdline(pid: str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.path.basename(a) if i == 0 else a
            for i, a in enumerate(raw.decode(errors="replace").split("\0")[:-1])]


@needs_slurm
def test_cli_sigint_exits_130_and_tears_down(tmp_path, spawned):
    """Ctrl-C (SIGINT) during an srun job: the job is cancelled (its ranks get SIGTERM; their
    results stay marked incomplete), the command ends with one line of its own, exit 130,
    nothing left."""
    proc = subprocess.Popen(
        [PY, "-m", "distbench", "emulate", "--scheduler", "slurm", "--nodes", "2",
         "--ranks-per-node", "1", "--link", "100mbit", "--", "allreduce", "--algo", "native",
         "-b", "4M", "-e", "4M", "-n", "100000", "--no-check", "--quiet", "--output",
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        cwd=REPO)
    spawned.append(proc)
    state = _wait_for_state(proc)
    nodes = {_netns_id(ns) for ns in state["namespaces"][:2]}

    def ranks_running():
        return sum("allreduce" in " ".join(_cmdline(str(p))) for p in pids_in(nodes)) >= 2
    _wait_for(ranks_running, what="the ranks")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    errors = _errors(err)
    ours = [e for e in errors if "the emulated Slurm cluster was torn down" in e]
    assert ours == [errors[-1]] and "interrupted by SIGINT" in ours[0], err
    assert all("marked incomplete" in e for e in errors[:-1]), err  # the ranks' own word
    for run in tmp_path.iterdir():  # (none when the ranks were still starting up)
        assert json.loads((run / "results.json").read_text())["complete"] is False
    assert _leftovers(state["run_id"]) == []


OWNER = textwrap.dedent("""
    import sys, time
    from distbench.emulate.slurm import SlurmCluster
    with SlurmCluster(2, 1, "none") as cluster:
        print(cluster.net.run_id, " ".join(map(str, cluster.daemon_pids.values())), flush=True)
        time.sleep(120)
""")


@needs_slurm
def test_killed_owner_is_reaped_by_the_next_cluster(spawned):
    """SIGKILL the process that owns a Slurm cluster: its daemons live in its namespaces, so
    the next cluster's reaper removes them with the namespaces."""
    from distbench.emulate.slurm import SlurmCluster

    owner = subprocess.Popen([PY, "-c", OWNER], stdout=subprocess.PIPE, text=True, env=_env())
    spawned.append(owner)
    run_id, *pids = owner.stdout.readline().split()
    assert len(pids) == 4  # munged, slurmctld, 2 slurmd
    owner.kill()
    owner.wait()
    assert all(_cmdline(p) for p in pids)  # orphaned, still running
    with SlurmCluster(1, 1, "none"):
        assert _leftovers(run_id) == []  # (or another test run reaped them first)
