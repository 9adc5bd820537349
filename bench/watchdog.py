"""The watchdog: every operation of an MPI benchmark runs under a deadline, a rank that stops
answering is named, and whatever ends a run early (a timeout, a failing rank, SIGINT or
SIGTERM) leaves its results marked incomplete with the reason.

One :class:`Watchdog` per process, created by :mod:`distbench.cli` around a job on every rank
(collectively: it duplicates the world communicator for its own messages) and reached through
the module functions (:func:`enter`, :func:`track`, ...), which do nothing when no watchdog runs.
Its thread, on every rank:

* sends a heartbeat to rank 0 every :data:`BEAT_S` seconds (rank 0 sends one to every rank),
  carrying the number of the operation the rank's main thread has reached; a stopped or dead
  rank (SIGSTOP, a crash) sends none;
* on rank 0, when the current operation is past its deadline, says what was running and who did
  not arrive (ranks whose heartbeat is stale, else ranks that have not reached the operation),
  marks the results incomplete and calls ``MPI_Abort`` with exit code 3. A rank other than 0
  does the same, naming rank 0, when rank 0's heartbeat is stale too;
* receives the one-line failure of another rank (:func:`report_failure`) and marks the results
  incomplete with it before that rank aborts the job;
* turns SIGINT, SIGTERM and SIGHUP (``mpirun`` forwards Ctrl-C as SIGTERM) into a marked,
  reported end even while the main thread is blocked inside MPI (``signal.set_wakeup_fd``).

The deadline of an operation is ``--timeout`` seconds when given, else
``max(FLOOR_S, FACTOR x its estimated duration)``: generous enough never to fire on a healthy
run. Calls from a second thread need ``MPI_THREAD_MULTIPLE``; without it (or with
``--timeout 0``) deadlines are not watched, while signals still are.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading
import time

import numpy as np

from distbench.errors import eprint
from distbench.runtime import mpi

BEAT_S = 0.5       # heartbeat interval
STALE_S = 2.5      # a heartbeat older than this: the rank is stopped or dead
GRACE_S = 5.0      # a rank other than 0 waits this long past a deadline for rank 0 to act
SIGNAL_EXIT_DELAY_S = 0.15  # a rank other than 0, on SIGINT/SIGTERM: how long it stays
REPORT_WAIT_S = 0.3  # rank 0, on SIGTERM: how long it looks for another rank's report first
FROZEN_S = 2.0     # the watchdog's own sleep overshooting by this much: this process was frozen
FLOOR_S = 60.0     # default deadline: at least this long ...
FACTOR = 20.0      # ... and this many times the operation's estimated duration
TAG_BEAT, TAG_FAIL, TAG_ACK = 0x7701, 0x7702, 0x7703
FAIL_BYTES = 512   # a failure line travels in a fixed-size buffer
EXIT_TIMEOUT = 3
ABORT_DELAY_S = 0.2  # lets mpirun forward the last line before MPI_Abort tears the job down
WAKE = b"\0"        # written to the signal pipe by close(): no signal has number 0

_CURRENT: Watchdog | None = None


LAUNCHER_SIGTERM = ("interrupted by SIGTERM (from the launcher: mpirun's Ctrl-C or kill, or "
                    "the scheduler)")


def tell(line: str) -> None:
    """Print ``line`` where the user sees it while ``mpirun`` is tearing the job down: mpirun
    stops forwarding the ranks' output once it handles a Ctrl-C, so a rank whose stderr is not
    a terminal writes to its controlling terminal (``/dev/tty``) when it has one, else to
    stderr."""
    with contextlib.suppress(OSError, ValueError):
        if not sys.stderr.isatty():
            fd = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
            try:
                os.write(fd, (line + "\n").encode())
                return
            finally:
                os.close(fd)
    with contextlib.suppress(OSError, ValueError):
        eprint(line)


def default_limit(estimate_s: float | None) -> float:
    """The default deadline of an operation estimated to take ``estimate_s`` seconds."""
    return max(FLOOR_S, FACTOR * (estimate_s or 0.0))


def ranks_text(ranks: list[int]) -> str:
    """``[3]`` -> ``"rank 3"``, ``[1, 3]`` -> ``"ranks 1, 3"``."""
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


class Watchdog:
    """Deadlines, heartbeats, failure reports and signals of one MPI job (see the module doc).

    Args:
        comm: the job's communicator (every rank constructs the watchdog, collectively).
        timeout: seconds per operation; None: the default per operation; 0: no deadlines.
        signals: whether to turn SIGINT/SIGTERM/SIGHUP into a marked end (main thread only).

    Attributes:
        watching: whether deadlines are watched (``timeout != 0``, several ranks,
            ``MPI_THREAD_MULTIPLE``).
    """

    def __init__(self, comm, timeout: float | None = None, signals: bool = True):
        MPI = mpi()
        self.comm, self.timeout = comm, timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self.watching = timeout != 0 and self.size > 1 and multiple
        self._side = comm.Dup() if self.watching else None
        self._seq, self._label, self._limit, self._deadline = 0, None, 0.0, None
        self._markers: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fired = False
        self._failure: str | None = None  # rank 0: a failure another rank reported
        self._thaw_time: float | None = None  # when this process was last found frozen
        self._drain_lock = threading.Lock()  # the watchdog and the signal thread both drain
        now = time.monotonic()
        self._seen = np.full(self.size, now)                 # last heartbeat per rank
        self._reached = np.zeros(self.size, dtype=np.int64)  # operation reached per rank
        self._sends: dict[int, object] = {}
        # every rank's host and pid: on the launcher's SIGTERM, a peer on this host that is
        # gone is the rank that died (killed or crashed), not the launcher's own doing
        self._peers = comm.allgather((socket.gethostname(), os.getpid())) if self.size > 1 \
            else []
        self._rfd = self._wfd = None
        self._old_handlers: dict = {}
        self._threads = []
        if signals and threading.current_thread() is threading.main_thread():
            self._catch_signals()  # its own thread: no MPI call may delay it
            self._threads.append(threading.Thread(target=self._signal_loop, daemon=True,
                                                  name="distbench-signals"))
        if self.watching:
            self._threads.append(threading.Thread(target=self._loop, daemon=True,
                                                  name="distbench-watchdog"))
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ main-thread API
    def enter(self, label: str, estimate_s: float | None = None) -> None:
        """The main thread starts operation ``label`` expected to take ``estimate_s`` s."""
        limit = self.timeout if self.timeout else default_limit(estimate_s)
        with self._lock:
            self._seq += 1
            self._label, self._limit = label, limit
            self._deadline = time.monotonic() + limit

    def idle(self) -> None:
        """Between operations (writing files, printing, evaluating on rank 0): no estimate,
        but not unwatched either: a rank stopped here would otherwise leave the others
        waiting for it forever in the next collective. The deadline is --timeout, or the
        default floor."""
        limit = self.timeout if self.timeout else FLOOR_S
        with self._lock:
            if self._label is None:
                self._label = "start-up"
            elif not self._label.startswith("the pause after "):
                self._label = f"the pause after {self._label}"
            self._limit = limit
            self._deadline = time.monotonic() + limit

    def track(self, writer, on_fail=None) -> None:
        """Mark ``writer`` (a :class:`~distbench.results.RunWriter`) incomplete when the run
        ends early, then call ``on_fail()`` once (``--json``: the records so far on stdout)."""
        self._markers.append((writer, on_fail))

    def mark(self, reason: str) -> None:
        """Mark every tracked result incomplete with ``reason`` (any rank; files on rank 0)."""
        for writer, on_fail in list(self._markers):
            with contextlib.suppress(Exception):  # a full disk must not hide the reason
                writer.mark_incomplete(reason)
            if on_fail is not None and writer.is_root and not writer.complete:
                self._markers.remove((writer, on_fail))
                self._markers.append((writer, None))  # once
                with contextlib.suppress(Exception):
                    on_fail()

    def report_failure(self, line: str) -> None:
        """This rank is failing with ``line``: rank 0 marks the results before the job ends
        (waits up to 2 s for its acknowledgement)."""
        if self.rank == 0 or self._side is None:
            self.mark(line)
            return
        MPI = mpi()
        req = self._report(line)
        ack = np.zeros(1, dtype=np.int64)
        got = self._side.Irecv(ack, 0, TAG_ACK)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not MPI.Request.Testall([req, got]):
            time.sleep(0.01)

    def _report(self, line: str):
        """Send ``line`` to rank 0 as a failure report; returns the send request."""
        buf = np.zeros(FAIL_BYTES, dtype=np.uint8)
        data = line.encode()[:FAIL_BYTES - 1]
        buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._pending = buf  # the buffer must outlive the send
        return self._side.Isend(buf, 0, TAG_FAIL)

    def close(self) -> None:
        """Stop the thread and release the communicator (collective, at the end of the job)."""
        self._stop.set()
        if self._wfd is not None:  # wake the signal thread now, not at its next timeout
            with contextlib.suppress(OSError):
                os.write(self._wfd, WAKE)
        for t in self._threads:
            t.join(timeout=5)
        self._restore_signals()
        if self._side is not None:
            mpi().Request.Waitall(list(self._sends.values()))  # 8-byte eager sends
            self._side.Barrier()
            self._drain()
            self._side.Free()
            self._side = None

    # ------------------------------------------------------------------ the thread
    def _overran(self, last: float) -> tuple[float, float]:
        """(now, the seconds this process was frozen or 0), after a wait of BEAT_S that
        began at ``last``: a wait that overran by FROZEN_S means it was frozen (SIGSTOP, a
        suspended VM), which is noted as a thaw now."""
        now = time.monotonic()
        if now - last <= BEAT_S + FROZEN_S:
            return now, 0.0
        self._thaw_time = now
        return now, now - last

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(BEAT_S):
            last, frozen = self._overran(last)
            if frozen:
                self._thawed(frozen)
            self._beat()
            self._drain()
            self._check_deadline()

    def _thawed(self, gap: float) -> None:
        """This process was frozen for ``gap`` seconds (SIGSTOP, a suspended VM): it cannot
        judge the others by heartbeats it could not receive, nor by a deadline that passed
        while it was the one stopped; restart both clocks (the ranks that waited for it judge
        it, and their report reaches it in the next drain)."""
        with self._lock:
            if self._deadline is not None:
                self._deadline += gap
        self._seen[:] = time.monotonic()

    def _signal_loop(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            last, _ = self._overran(last)
            if self._wait_signal(BEAT_S):
                return

    def _just_frozen(self) -> bool:
        """Whether this process was found frozen in the last few beats, or has heard no
        other rank for STALE_S (its threads may not have run since it was resumed)."""
        now = time.monotonic()
        return (self._thaw_time is not None and now - self._thaw_time < 10 * BEAT_S) or (
            self.size > 1 and bool((now - self._seen[1:] > STALE_S).all()))

    def _beat(self) -> None:
        with self._lock:
            msg = np.array([self._seq], dtype=np.int64)
        targets = range(1, self.size) if self.rank == 0 else (0,)
        for dst in targets:
            prev = self._sends.get(dst)
            if prev is not None and not prev.Test():
                continue  # that rank is not receiving: do not pile up messages
            self._sends[dst] = self._side.Isend(msg.copy(), dst, TAG_BEAT)

    def _drain(self) -> None:
        """Receive every pending heartbeat and failure report."""
        with self._drain_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        MPI = mpi()
        status = MPI.Status()
        beat = np.zeros(1, dtype=np.int64)
        while self._side.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            src, tag = status.Get_source(), status.Get_tag()
            if tag == TAG_BEAT:
                self._side.Recv(beat, src, TAG_BEAT)
                self._seen[src] = time.monotonic()
                self._reached[src] = beat[0]
            elif tag == TAG_FAIL:
                buf = np.zeros(FAIL_BYTES, dtype=np.uint8)
                self._side.Recv(buf, src, TAG_FAIL)
                self._failure = bytes(buf).rstrip(b"\0").decode(errors="replace")
                self.mark(self._failure)
                self._side.Send(np.ones(1, dtype=np.int64), src, TAG_ACK)
            else:
                self._side.Recv(np.zeros(status.Get_count(MPI.BYTE), dtype=np.uint8), src,
                                tag)

    def _check_deadline(self) -> None:
        with self._lock:
            deadline, label, limit, seq = self._deadline, self._label, self._limit, self._seq
        now = time.monotonic()
        if deadline is None or now < deadline or self._fired or self._failure is not None:
            return  # (a failure reported by another rank is already ending the job)
        stale = [r for r in range(self.size) if r != self.rank and now - self._seen[r] > STALE_S]
        if self.rank != 0:
            if 0 not in stale and now < deadline + 3 * GRACE_S:
                return  # rank 0 is alive and acts first
            if now < deadline + GRACE_S:
                return
            who = f"{ranks_text([0])} did not arrive"
        elif stale:
            who = f"{ranks_text(stale)} did not arrive"
        else:
            behind = [r for r in range(1, self.size) if self._reached[r] < seq]
            who = (f"{ranks_text(behind)} did not arrive" if behind else
                   f"all {self.size} ranks are inside it (none stopped: a hang)")
        self._fire(f"timeout after {limit:g} s in {label}: {who}")

    def _fire(self, reason: str) -> None:
        self._fired = True
        self.mark(reason)
        if self.rank != 0:  # rank 0 marks the results with it if it ever runs again
            with contextlib.suppress(Exception):
                self._report(reason)
        eprint(f"Error: {reason}")
        time.sleep(ABORT_DELAY_S)
        self.comm.Abort(EXIT_TIMEOUT)

    # ------------------------------------------------------------------ signals
    def _catch_signals(self) -> None:
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._wfd, False)

        def handler(signum, _frame):
            """Nothing: the C-level handler has woken the signal thread (set_wakeup_fd),
            which ends the run; the main thread may be blocked in MPI meanwhile."""

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, handler)
        self._old_wakeup = signal.set_wakeup_fd(self._wfd)

    def _wait_signal(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a signal; on one, end the run (returns True)."""
        ready, _, _ = select.select([self._rfd], [], [], seconds)
        if not ready:
            return False
        data = os.read(self._rfd, 16).replace(WAKE, b"")
        if not data:
            return self._stop.is_set()  # woken by close()
        name = signal.Signals(data[0]).name
        reason = f"interrupted by {name}"
        if name == "SIGTERM":
            dead = self._dead_peers()
            reason = (f"{ranks_text(dead)} died (killed, e.g. by SIGKILL, or crashed); the "
                      "launcher then ended the job (SIGTERM)" if dead else LAUNCHER_SIGTERM)
        if self.rank == 0 and self._side is not None and self._just_frozen():
            # this rank was frozen just now, and a rank that timed out on it reported why
            # before the job was torn down (mpirun's SIGCONT, then SIGTERM): that is the
            # reason, said already. (Not otherwise: mpirun's SIGKILL follows in 0.17 s.)
            deadline = time.monotonic() + REPORT_WAIT_S
            while self._failure is None and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    self._drain()  # (a message sent while this rank was frozen needs polls)
                time.sleep(0.01)
            if self._failure is not None:
                os._exit(128 + data[0])
        if self.rank == 0:  # said first: mpirun's SIGKILL may follow within 0.25 s
            paths = [str(w.path) for w, _ in self._markers]
            tell(f"Error: {reason}" + (f"; the results measured so far are in {paths[-1]} "
                                       "(marked incomplete)" if paths else ""))
        self.mark(reason)
        if self.rank != 0:
            # mpirun kills the whole job once one rank is gone: leave rank 0 the moment it
            # needs to say so and to mark its files (its thread may wait for the GIL)
            time.sleep(SIGNAL_EXIT_DELAY_S)
        os._exit(128 + data[0])

    def _dead_peers(self) -> list[int]:
        """The ranks on this host whose process is gone (or a zombie)."""
        here, dead = socket.gethostname(), []
        for rank, (host, pid) in enumerate(self._peers):
            if host != here or rank == self.rank:
                continue
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                        dead.append(rank)
            except (ProcessLookupError, FileNotFoundError):
                dead.append(rank)
            except (PermissionError, OSError, IndexError):
                continue
        return dead

    def _restore_signals(self) -> None:
        if not self._old_handlers:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()
        for fd in (self._rfd, self._wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._rfd = self._wfd = None


# ------------------------------------------------------------------------- module functions

def start(comm, timeout: float | None = None) -> Watchdog:
    """Create this process's watchdog (collective) and make it the current one."""
    global _CURRENT
    _CURRENT = Watchdog(comm, timeout)
    return _CURRENT


def stop() -> None:
    """Close the current watchdog (collective)."""
    global _CURRENT
    if _CURRENT is not None:
        _CURRENT.close()
        _CURRENT = None


def current() -> Watchdog | None:
    return _CURRENT


def enter(label: str, estimate_s: float | None = None) -> None:
    """Start operation ``label`` under the current watchdog's deadline (no-op without one)."""
    if _CURRENT is not None:
        _CURRENT.enter(label, estimate_s)


def idle() -> None:
    if _CURRENT is not None:
        _CURRENT.idle()


def current_mark(reason: str) -> None:
    """Mark the tracked results incomplete with ``reason`` (see :meth:`Watchdog.mark`)."""
    if _CURRENT is not None:
        _CURRENT.mark(reason)


def track(writer, on_fail=None) -> None:
    if _CURRENT is not None:
        _CURRENT.track(writer, on_fail)


def report_failure(line: str) -> None:
    if _CURRENT is not None:
        _CURRENT.report_failure(line)
