"""Test set-up for both ways the suite runs (DESIGN.md section 6).

* ``pytest``: serial tests; tests marked ``mpi`` are skipped by pytest-mpi.
* ``mpirun -n N python -m pytest --with-mpi --only-mpi``: every rank runs the MPI tests.
  Only rank 0 prints pytest's report; another rank prints just its own failures (to stderr,
  prefixed with its rank). A test failing on any rank is failed on every rank (the outcome is
  agreed with an Allreduce after each test), so the run's exit code sees it and ranks stay in
  step. A watchdog aborts the whole job when one MPI test runs past ``MPI_TEST_TIMEOUT``
  seconds (default 120), so a deadlock ends the run instead of hanging CI.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest

MPI_TEST_TIMEOUT = float(os.environ.get("MPI_TEST_TIMEOUT", "120"))


def _under_mpi(config) -> bool:
    return bool(config.getoption("--with-mpi", default=False))


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def pytest_configure(config):
    if not _under_mpi(config):
        return
    rank = _world().Get_rank()
    config._distbench_rank = rank
    if rank != 0:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    config = item.config
    if not _under_mpi(config) or item.get_closest_marker("mpi") is None:
        return
    if report.when != "call":
        if report.failed:
            _tell(config, report)
        return
    comm = _world()
    failed_here = 1 if report.failed else 0
    failed_ranks = comm.allreduce(failed_here << comm.Get_rank())
    if failed_here:
        _tell(config, report)
    elif failed_ranks and not report.skipped:
        ranks = [r for r in range(comm.Get_size()) if failed_ranks >> r & 1]
        report.outcome = "failed"
        report.longrepr = f"failed on rank(s) {ranks}; see their output"


def _tell(config, report):
    rank = getattr(config, "_distbench_rank", 0)
    if rank != 0:
        sys.stderr.write(f"[rank {rank}] FAILED {report.nodeid}\n{report.longreprtext}\n")
        sys.stderr.flush()


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
