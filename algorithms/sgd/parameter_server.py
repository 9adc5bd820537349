"""Asynchronous SGD with a parameter server on rank 0 and p - 1 workers (Dean et al. 2012,
"Large scale distributed deep networks", Downpour SGD; Recht et al. 2011 for the analysis of
stale updates).

Protocol, on mpi4py's buffer API with nonblocking point-to-point (no pickling). Every message
is one host buffer ``[int64 version, int64 command | body]``:

* server -> worker (tag ``TAG_PARAMS``): the parameters and their version v (the number of
  updates applied so far), or a header-only STOP;
* worker -> server (tag ``TAG_GRAD``): a minibatch gradient and the version it was computed at.

The server keeps one ``Irecv`` posted per busy worker, takes whichever gradient arrives first
(``Waitany``), applies ``theta -= lr * g`` at once and records the staleness
tau = v(now) - v(read); the worker then gets the new parameters (``Isend``). After T applied
updates the server drains every gradient still in flight and sends each worker STOP, so every
request completes and every worker leaves its loop.

``max_staleness`` S bounds tau:

* ``drop``: a gradient with tau > S is discarded (counted in ``dropped``) and its worker gets
  fresh parameters (Zhang, Gupta, Lian & Liu 2016 discuss both choices).
* ``block``: no gradient is ever staler than S. The server keeps the workers holding
  parameters in version order o_1..o_m and maintains the invariant that applying them in that
  order would give each a staleness <= S, i.e. v + (j - 1) - v(read of o_j) <= S. A gradient is
  applied only when that stays true (otherwise it is held and its worker waits), and a worker
  receives new parameters only while fewer than S + 1 workers hold parameters (otherwise it
  waits): the bounded-staleness model of Ho et al. 2013 (SSP), stated on versions. With S = 0
  this is sequential SGD.

``staleness_lr``: the step of a gradient with staleness tau is lr / max(1, tau) (Zhang et al.
2016, "Staleness-aware async-SGD").
"""

from __future__ import annotations

import collections
import time

import numpy as np

from distbench.algorithms.sgd.common import (
    Clock,
    Diverged,
    Sampler,
    SGDResult,
    finite,
    make_record,
    warm_up,
)
from distbench.comm import CountingComm
from distbench.errors import DistbenchError
from distbench.runtime import mpi, namespace_of

TAG_PARAMS, TAG_GRAD, TAG_WARM = 0x5053, 0x4752, 0x574D  # "PS", "GR", "WM"
CMD_PARAMS, CMD_GRAD, CMD_STOP = 0, 1, 2
HEADER_BYTES = 16


class Message:
    """A host byte buffer ``[int64 version, int64 command | n elements of dtype]`` with views
    ``header`` (2 int64) and ``body`` (n,)."""

    def __init__(self, n: int, dtype):
        dtype = np.dtype(dtype)
        self.buf = np.zeros(HEADER_BYTES + n * dtype.itemsize, dtype=np.uint8)
        self.header = self.buf[:HEADER_BYTES].view(np.int64)
        self.body = self.buf[HEADER_BYTES:].view(dtype)

    @property
    def nbytes(self) -> int:
        return int(self.buf.nbytes)


def _host(array) -> np.ndarray:
    return array if namespace_of(array) is np else array.get()


def run_async(comm, problem, cfg, on_eval=None) -> SGDResult:
    """Asynchronous SGD on every rank of ``comm`` (rank 0 serves, the others compute).

    Returns on every rank the server's final parameters and the exact bytes each rank sent.
    Raises DistbenchError when a message breaks the protocol (wrong size or command).
    """
    rank = comm.Get_rank()
    cc = CountingComm(comm)
    warm_up(problem, cfg.batch_size)
    _warm_links(comm)
    if rank == 0:
        out = _Server(comm, cc, problem, cfg, on_eval).run()
    else:
        out = _worker(cc, problem, cfg)
    theta_host = np.ascontiguousarray(_host(out["theta"])) if rank == 0 else np.empty(
        problem.model.n_params, dtype=problem.dtype)
    comm.Bcast(theta_host, root=0)
    sent = np.zeros(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([cc.bytes_sent + cc.collective_bytes], dtype=np.int64), sent)
    wall = float(comm.bcast(out.get("wall", 0.0), root=0))
    rounds, dropped, diverged = comm.bcast((out.get("rounds"), out.get("dropped"),
                                            out.get("diverged")), root=0)
    if diverged is not None:
        raise Diverged(cfg.mode, diverged)
    return SGDResult(problem.xp.asarray(theta_host), out.get("records", []), cfg.steps, rounds,
                     [int(v) for v in sent], wall, out["times"], out.get("taus", []), dropped)


def _warm_links(comm) -> None:
    """Untimed, uncounted round trip of 8 bytes between the server and each worker, so the
    point-to-point connections exist before the clock starts."""
    buf = np.zeros(1, dtype=np.int64)
    if comm.Get_rank() == 0:
        for w in range(1, comm.Get_size()):
            comm.Recv(buf, source=w, tag=TAG_WARM)
            comm.Send(buf, dest=w, tag=TAG_WARM)
    else:
        comm.Send(buf, dest=0, tag=TAG_WARM)
        comm.Recv(buf, source=0, tag=TAG_WARM)


class _Server:
    """Rank 0's event loop (see the module docstring)."""

    def __init__(self, comm, cc, problem, cfg, on_eval):
        self.MPI = mpi()
        self.cc, self.problem, self.cfg, self.on_eval = cc, problem, cfg, on_eval
        self.nw = comm.Get_size() - 1
        n, dtype = problem.model.n_params, problem.dtype
        self.theta = np.array(_host(problem.init_params(cfg.seed)), dtype=dtype, copy=True)
        self.smsg = [Message(n, dtype) for _ in range(self.nw)]
        self.rmsg = [Message(n, dtype) for _ in range(self.nw)]
        self.sreq = [self.MPI.REQUEST_NULL] * self.nw
        self.rreq = [self.MPI.REQUEST_NULL] * self.nw
        self.read = [0] * self.nw
        self.received = [0] * self.nw
        self.v, self.rounds, self.dropped = 0, 0, 0
        self.diverged: int | None = None
        self.taus: list[int] = []
        self.tau_sum, self.tau_max = 0, 0
        self.lr = cfg.lr(comm.Get_size())
        self.S = cfg.max_staleness
        self.block = cfg.policy == "block" and self.S is not None
        self.outstanding: list[int] = []  # workers holding parameters, in version order
        self.held: set[int] = set()
        self.waiting: collections.deque = collections.deque()
        self.delay = cfg.straggler.get(0, 0) / 1000.0
        self.next_eval = cfg.eval_every
        self.records: list = []
        self.times = {"compute": 0.0, "comm": 0.0, "sleep": 0.0, "other": 0.0}

    # -- messages
    def dispatch(self, i: int) -> None:
        """Send worker i the current parameters and post the receive of its gradient."""
        self.sreq[i].Wait()
        m = self.smsg[i]
        m.header[0], m.header[1] = self.v, CMD_PARAMS
        np.copyto(m.body, self.theta)
        self.sreq[i] = self.cc.Isend(m.buf, dest=i + 1, tag=TAG_PARAMS)
        self.rreq[i] = self.cc.Irecv(self.rmsg[i].buf, source=i + 1, tag=TAG_GRAD)
        self.read[i] = self.v
        if self.block:
            self.outstanding.append(i)

    def check(self, i: int, status) -> None:
        m = self.rmsg[i]
        count = status.Get_count(self.MPI.BYTE)
        if count != m.nbytes or m.header[1] != CMD_GRAD or m.header[0] != self.read[i]:
            raise DistbenchError(f"async protocol: bad message from rank {i + 1} ({count} B, "
                                 f"command {m.header[1]}, version {m.header[0]} "
                                 f"!= {self.read[i]})")

    # -- updates
    def apply(self, i: int) -> None:
        t0 = time.perf_counter()
        tau = self.v - self.read[i]
        eta = self.lr(self.v)
        if self.cfg.staleness_lr and tau > 1:
            eta /= tau
        g = self.rmsg[i].body
        np.multiply(g, eta, out=g)
        np.subtract(self.theta, g, out=self.theta)
        self.v += 1
        self.taus.append(tau)
        self.tau_sum += tau
        self.tau_max = max(self.tau_max, tau)
        t1 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        self.times["compute"] += t1 - t0
        self.times["sleep"] += time.perf_counter() - t1
        if self.v >= self.next_eval or self.v == self.cfg.steps:
            self.evaluate(eta)
            while self.next_eval <= self.v:
                self.next_eval += self.cfg.eval_every

    def evaluate(self, eta: float) -> None:
        wall = self.clock.pause()
        gbytes = self.rmsg[0].nbytes
        sent = [self.cc.bytes_sent] + [r * gbytes for r in self.received]
        stal = (self.tau_sum / len(self.taus), self.tau_max) if self.taus else None
        rec = make_record(self.problem, self.cfg, self.problem.xp.asarray(self.theta), self.v,
                          wall, self.rounds, sent, eta, stal, self.dropped)
        self.records.append(rec)
        if self.on_eval is not None:
            self.on_eval(rec)
        if self.diverged is None and not finite(rec, self.theta):
            self.diverged = self.v  # the loop ends, the workers get STOP, all ranks raise
        self.clock.resume()

    def progress_block(self) -> None:
        """Apply every held gradient the invariant allows, then hand out parameters."""
        O, S = self.outstanding, self.S
        changed = True
        while changed and self.v < self.cfg.steps:
            changed = False
            for k, i in enumerate(O):
                if i in self.held and all(self.v + j + 1 - self.read[O[j]] <= S
                                          for j in range(k)):
                    del O[k]
                    self.held.discard(i)
                    self.apply(i)
                    self.waiting.append(i)
                    changed = True
                    break
        while self.v < self.cfg.steps and self.waiting and len(O) <= S:
            self.dispatch(self.waiting.popleft())

    # -- the loop
    def run(self) -> dict:
        MPI, T, S = self.MPI, self.cfg.steps, self.S
        status = MPI.Status()
        self.clock = Clock()
        self.evaluate(self.lr(0))
        if self.block:
            self.waiting.extend(range(self.nw))
            self.progress_block()
        else:
            for i in range(self.nw):
                self.dispatch(i)
        while self.v < T and self.diverged is None:
            t0 = time.perf_counter()
            i = MPI.Request.Waitany(self.rreq, status)
            self.times["comm"] += time.perf_counter() - t0
            if i == MPI.UNDEFINED:
                raise DistbenchError("async protocol: no worker is computing")
            self.rreq[i] = MPI.REQUEST_NULL
            self.check(i, status)
            self.received[i] += 1
            self.rounds += 1
            if self.block:
                self.held.add(i)
                self.progress_block()
            elif S is not None and self.v - self.read[i] > S:
                self.dropped += 1
                self.dispatch(i)
            else:
                self.apply(i)
                if self.v < T:
                    self.dispatch(i)
        wall = self.clock.pause()
        self.times["other"] = wall - sum(self.times.values())
        self.shutdown()
        return {"theta": self.theta, "records": self.records, "wall": wall,
                "rounds": self.rounds, "times": self.times, "taus": self.taus,
                "dropped": self.dropped, "diverged": self.diverged}

    def shutdown(self) -> None:
        """Drain gradients still in flight, then send every worker STOP (header only)."""
        MPI = self.MPI
        for i in range(self.nw):
            if self.rreq[i] != MPI.REQUEST_NULL:
                self.rreq[i].Wait()
                self.rreq[i] = MPI.REQUEST_NULL
                self.received[i] += 1
            self.sreq[i].Wait()
            m = self.smsg[i]
            m.header[0], m.header[1] = self.v, CMD_STOP
            self.sreq[i] = self.cc.Isend(m.buf[:HEADER_BYTES], dest=i + 1, tag=TAG_PARAMS)
        MPI.Request.Waitall(self.sreq)


def _worker(cc, problem, cfg) -> dict:
    """A worker's loop: receive parameters, compute a minibatch gradient, send it; until STOP."""
    MPI = mpi()
    xp, model = problem.xp, problem.model
    rank, p = cc.Get_rank(), cc.Get_size()
    sampler = Sampler(problem, rank - 1, p - 1, cfg.batch_size, cfg.seed, cfg.partition)
    n, dtype = model.n_params, problem.dtype
    rmsg, smsg = Message(n, dtype), Message(n, dtype)
    theta = xp.empty(n, dtype=dtype)
    grad = xp.empty(n, dtype=dtype)
    delay = cfg.straggler.get(rank, 0) / 1000.0
    times = {"compute": 0.0, "comm": 0.0, "sleep": 0.0, "other": 0.0}
    pc = time.perf_counter
    rreq = cc.Irecv(rmsg.buf, source=0, tag=TAG_PARAMS)
    sreq = MPI.REQUEST_NULL
    while True:
        t0 = pc()
        rreq.Wait()
        sreq.Wait()
        t1 = pc()
        times["comm"] += t1 - t0
        if rmsg.header[1] == CMD_STOP:
            break
        if rmsg.header[1] != CMD_PARAMS:
            raise DistbenchError(f"async protocol: rank {rank} got command {rmsg.header[1]}")
        if xp is np:
            np.copyto(theta, rmsg.body)
        else:
            theta.set(rmsg.body)
        Xb, yb = sampler.next()
        model.gradient(theta, Xb, yb, grad)
        if xp is np:
            np.copyto(smsg.body, grad)
        else:
            grad.get(out=smsg.body)
        t2 = pc()
        times["compute"] += t2 - t1
        if delay:
            time.sleep(delay)
            times["sleep"] += pc() - t2
        smsg.header[0], smsg.header[1] = rmsg.header[0], CMD_GRAD
        rreq = cc.Irecv(rmsg.buf, source=0, tag=TAG_PARAMS)
        sreq = cc.Isend(smsg.buf, dest=0, tag=TAG_GRAD)
    return {"theta": theta, "times": times}
