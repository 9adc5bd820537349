"""Test set-up for both ways the suite runs.

* ``pytest``: serial tests; tests marked ``mpi`` are skipped by pytest-mpi.
* ``mpirun -n N python -m pytest --only-mpi``: every rank runs the MPI tests (pytest-mpi's
  ``--only-mpi`` alone; combined with ``--with-mpi`` it would run the serial tests too).
  Only rank 0 prints pytest's report. A test that fails on any rank prints that rank's
  failure (to stderr, prefixed with its rank) and aborts the whole job with exit code 1: the
  other ranks may be blocked inside the test waiting for it, and a failure must fail the run
  rather than hang it. A watchdog aborts the whole job when one MPI test runs past
  ``MPI_TEST_TIMEOUT`` seconds (default 120), so a deadlock ends the run instead of hanging CI.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

MPI_TEST_TIMEOUT = float(os.environ.get("MPI_TEST_TIMEOUT", "120"))


def _under_mpi(config) -> bool:
    return bool(config.getoption("--with-mpi", default=False)
                or config.getoption("--only-mpi", default=False))


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if not _under_mpi(config):
        return
    rank = _world().Get_rank()
    if rank != 0:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


# Suites that skip when the machine lacks something (root, namespaces, Slurm packages, MPICH):
# the serial run names what was skipped and why in one line per reason.
_ENVIRONMENT_SUITES = ("tests/test_emulate.py", "tests/test_slurm.py")


def pytest_terminal_summary(terminalreporter, config):
    if _under_mpi(config):
        return
    reasons: dict[str, set] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if report.nodeid.startswith(_ENVIRONMENT_SUITES) and isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
            reasons.setdefault(reason, set()).add(report.nodeid)
    for reason, tests in reasons.items():
        terminalreporter.write_line(f"skipped {len(tests)} test(s): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    config = item.config
    if not _under_mpi(config) or item.get_closest_marker("mpi") is None or not report.failed:
        return
    # The other ranks may be blocked inside this test waiting for this one: end the job now.
    comm = _world()
    sys.stderr.write(
        f"[rank {comm.Get_rank()}] FAILED {report.nodeid} ({report.when})\n"
        f"{report.longreprtext}\n[rank {comm.Get_rank()}] aborting the MPI job\n"
    )
    sys.stderr.flush()
    comm.Abort(1)


@pytest.fixture(scope="session")
def digits(request):
    """The bundled digits set, split with seed 0. Under mpirun rank 0 reads it and broadcasts
    it (one scikit-learn import per job instead of one per rank: the suite's start-up time)."""
    from distbench.algorithms.sgd.datasets import load_dataset

    if not _under_mpi(request.config):
        return load_dataset("digits", seed=0)
    comm = _world()
    return comm.bcast(load_dataset("digits", seed=0) if comm.Get_rank() == 0 else None)


@pytest.fixture(autouse=True)
def _mpi_watchdog(request):
    """Abort the MPI job if one MPI test runs longer than MPI_TEST_TIMEOUT seconds."""
    if not _under_mpi(request.config) or request.node.get_closest_marker("mpi") is None:
        yield
        return
    comm = _world()

    def fire():
        sys.stderr.write(
            f"[rank {comm.Get_rank()}] {request.node.nodeid} exceeded {MPI_TEST_TIMEOUT:.0f} s;"
            " aborting the job\n"
        )
        sys.stderr.flush()
        comm.Abort(3)

    timer = threading.Timer(MPI_TEST_TIMEOUT, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
