"""Communicator proxies: byte counting (tests, wire bytes) and host staging (GPU without
GPU-aware MPI).

Both wrap an ``mpi4py.MPI.Comm``: the communication calls a proxy handles are its own methods,
and everything else (ranks, sizes, barriers, the pickle-based lowercase calls of set-up code)
is forwarded, so a collective written against mpi4py's buffer API runs unchanged on top of
them. A buffer-API communication call a proxy does not define (:data:`COMMUNICATION`) raises
instead of going through unseen (uncounted, unstaged). Communicators derived from a proxy
(``Split``, ``Split_type``, ``Dup``) are proxies of the same kind sharing its state, so traffic
inside sub-communicators (the hierarchical algorithm) is seen too.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

# mpi4py's buffer-API communication calls (point-to-point, collectives, their persistent forms,
# neighbourhood collectives; with an I in front, the nonblocking ones: Isend, Iallreduce): a
# proxy must define the ones it lets through
COMMUNICATION = re.compile(r"(Send|Ssend|Bsend|Rsend|Recv|Sendrecv|Allreduce|Reduce|Bcast|"
                          r"Allgather|Gather|Scatter|Alltoall|Scan|Exscan|Neighbor_)\w*")


def is_communication(name: str) -> bool:
    """Whether ``name`` is a buffer-API communication call of mpi4py (:data:`COMMUNICATION`,
    or its nonblocking ``I`` form)."""
    if len(name) > 2 and name[0] in "IP" and name[1].islower():
        name = name[1].upper() + name[2:]
    return COMMUNICATION.fullmatch(name) is not None


def _v_bytes(comm, spec) -> np.ndarray:
    """What a rank's ``[array, (counts, displs)]`` all-to-all-v spec sends to the other ranks
    (a byte array of that length, for the counters)."""
    arr, (counts, _displs) = spec[0], spec[1]
    own = counts[comm.Get_rank()]
    return np.empty((sum(counts) - own) * arr.dtype.itemsize, dtype=np.uint8)


def _nbytes(buf) -> int:
    """Bytes in an mpi4py buffer argument (an array, or ``[array, datatype]``)."""
    if isinstance(buf, (list, tuple)):
        buf = buf[0]
    return int(getattr(buf, "nbytes", 0))


class CommProxy:
    """Forwards every attribute to the wrapped communicator ``comm``."""

    _derive = ("Split", "Split_type", "Dup", "Create", "Create_group")

    def __init__(self, comm):
        self.comm = comm

    def __getattr__(self, name):
        if is_communication(name):
            raise AttributeError(f"{type(self).__name__} does not handle {name}: define it on "
                                 "the proxy (forwarded, it would go through unseen)")
        attr = getattr(self.comm, name)
        if name in self._derive:

            def derived(*args, **kwargs):
                sub = attr(*args, **kwargs)
                return self._child(sub)

            return derived
        return attr

    def _child(self, sub):
        """A proxy of the same kind around derived communicator ``sub`` (sharing state)."""
        return type(self)(sub)


class CountingComm(CommProxy):
    """Counts bytes this rank sends through point-to-point and collective calls.

    ``bytes_sent`` counts the send buffers of ``Send/Isend/Ssend/Sendrecv`` (point-to-point
    payload leaving this rank); ``bytes_recv`` the receive buffers of ``Recv/Irecv/Sendrecv``
    (their capacity, which the algorithms size exactly); ``collective_bytes`` the send buffer
    this rank contributes to ``Allreduce/Allgather/Allgatherv/Bcast/Reduce/Reduce_scatter_block/
    Alltoall``;
    ``calls`` how often each method ran.
    """

    def __init__(self, comm, _state=None):
        super().__init__(comm)
        self._state = _state if _state is not None else {
            "bytes_sent": 0, "bytes_recv": 0, "collective_bytes": 0, "calls": Counter()
        }

    def _child(self, sub):
        return CountingComm(sub, self._state)

    bytes_sent = property(lambda self: self._state["bytes_sent"], doc="Bytes sent (int).")
    bytes_recv = property(lambda self: self._state["bytes_recv"],
                          doc="Receive-buffer bytes (int).")
    collective_bytes = property(lambda self: self._state["collective_bytes"],
                                doc="Send-buffer bytes contributed to collectives (int).")
    calls = property(lambda self: self._state["calls"], doc="Calls per method (Counter).")

    def reset(self) -> None:
        self._state.update(bytes_sent=0, bytes_recv=0, collective_bytes=0)
        self._state["calls"].clear()

    def _count(self, name, sent=None, recv=None, coll=None):
        st = self._state
        st["calls"][name] += 1
        if sent is not None:
            st["bytes_sent"] += _nbytes(sent)
        if recv is not None:
            st["bytes_recv"] += _nbytes(recv)
        if coll is not None:
            st["collective_bytes"] += _nbytes(coll)

    def Send(self, buf, dest, tag=0):
        self._count("Send", sent=buf)
        return self.comm.Send(buf, dest, tag)

    def Ssend(self, buf, dest, tag=0):
        self._count("Ssend", sent=buf)
        return self.comm.Ssend(buf, dest, tag)

    def Isend(self, buf, dest, tag=0):
        self._count("Isend", sent=buf)
        return self.comm.Isend(buf, dest, tag)

    def Recv(self, buf, source=-1, tag=-1, status=None):
        self._count("Recv", recv=buf)
        return self.comm.Recv(buf, source, tag, status)

    def Irecv(self, buf, source=-1, tag=-1):
        self._count("Irecv", recv=buf)
        return self.comm.Irecv(buf, source, tag)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=-1, recvtag=-1,
                 status=None):
        self._count("Sendrecv", sent=sendbuf, recv=recvbuf)
        return self.comm.Sendrecv(sendbuf, dest, sendtag, recvbuf, source, recvtag, status)

    def Allreduce(self, sendbuf, recvbuf, op=None):
        self._count("Allreduce", coll=sendbuf)
        return self.comm.Allreduce(sendbuf, recvbuf, *([op] if op is not None else []))

    def Allgather(self, sendbuf, recvbuf):
        self._count("Allgather", coll=sendbuf)
        return self.comm.Allgather(sendbuf, recvbuf)

    def Neighbor_allgather(self, sendbuf, recvbuf):
        """On a distributed-graph communicator: ``sendbuf`` goes to each out-neighbour, so
        ``bytes_sent`` grows by outdegree x its bytes."""
        outdegree = self.comm.Get_dist_neighbors_count()[1]
        self._count("Neighbor_allgather")
        self._state["bytes_sent"] += outdegree * _nbytes(sendbuf)
        return self.comm.Neighbor_allgather(sendbuf, recvbuf)

    def Allgatherv(self, sendbuf, recvbuf):
        self._count("Allgatherv", coll=sendbuf)
        return self.comm.Allgatherv(sendbuf, recvbuf)

    def Bcast(self, buf, root=0):
        self._count("Bcast", coll=buf if self.comm.Get_rank() == root else None)
        return self.comm.Bcast(buf, root)

    def Reduce(self, sendbuf, recvbuf, op=None, root=0):
        self._count("Reduce", coll=sendbuf)
        args = [op] if op is not None else []
        return self.comm.Reduce(sendbuf, recvbuf, *args, root=root)

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=None):
        self._count("Reduce_scatter_block", coll=sendbuf)
        return self.comm.Reduce_scatter_block(sendbuf, recvbuf, *([op] if op else []))

    def Alltoall(self, sendbuf, recvbuf):
        self._count("Alltoall", coll=sendbuf)
        return self.comm.Alltoall(sendbuf, recvbuf)

    def Alltoallv(self, sendbuf, recvbuf):
        """``sendbuf`` is ``[array, (counts, displs)]``: counted is what goes to the others."""
        self._count("Alltoallv", coll=_v_bytes(self.comm, sendbuf))
        return self.comm.Alltoallv(sendbuf, recvbuf)

    def Ialltoallv(self, sendbuf, recvbuf):
        self._count("Ialltoallv", coll=_v_bytes(self.comm, sendbuf))
        return self.comm.Ialltoallv(sendbuf, recvbuf)

    # the nonblocking forms of the library's collectives, counted as the blocking ones
    def Iallreduce(self, sendbuf, recvbuf, op=None):
        self._count("Iallreduce", coll=sendbuf)
        return self.comm.Iallreduce(sendbuf, recvbuf, *([op] if op is not None else []))

    def Ireduce_scatter_block(self, sendbuf, recvbuf, op=None):
        self._count("Ireduce_scatter_block", coll=sendbuf)
        return self.comm.Ireduce_scatter_block(sendbuf, recvbuf, *([op] if op else []))

    def Iallgather(self, sendbuf, recvbuf):
        self._count("Iallgather", coll=sendbuf)
        return self.comm.Iallgather(sendbuf, recvbuf)

    def Ibcast(self, buf, root=0):
        self._count("Ibcast", coll=buf if self.comm.Get_rank() == root else None)
        return self.comm.Ibcast(buf, root)

    def Ireduce(self, sendbuf, recvbuf, op=None, root=0):
        self._count("Ireduce", coll=sendbuf)
        return self.comm.Ireduce(sendbuf, recvbuf, *([op] if op is not None else []), root=root)

    def Ialltoall(self, sendbuf, recvbuf):
        self._count("Ialltoall", coll=sendbuf)
        return self.comm.Ialltoall(sendbuf, recvbuf)


class HostStagingComm(CommProxy):
    """Stages device buffers through host memory for an MPI library that is not GPU-aware.

    Every buffer argument that is not a host (NumPy) array is copied into a reusable host
    buffer before a send, and copied back to the device after a receive. ``backend`` supplies
    the copies (:meth:`distbench.runtime.Backend.to_host` / ``to_device``) and the host
    allocation (page-locked with CuPy). With ``force=True`` NumPy buffers are staged too, which
    is how the host tests exercise this path without a GPU.

    ``staged_bytes`` counts bytes copied each way (``"to_host"``, ``"to_device"``).

    Raises:
        TypeError: a nonblocking call (``Isend``/``Irecv``) with a buffer that needs staging:
            the copy back after completion would need a request wrapper, and no distbench
            kernel issues nonblocking calls on device buffers.
    """

    def __init__(self, comm, backend, force: bool = False, _shared=None):
        super().__init__(comm)
        self.backend = backend
        self.force = force
        self._shared = _shared if _shared is not None else {
            "pool": {}, "staged": Counter()
        }

    def _child(self, sub):
        return HostStagingComm(sub, self.backend, self.force, self._shared)

    @property
    def staged_bytes(self) -> Counter:
        return self._shared["staged"]

    def _needs(self, buf) -> bool:
        return buf is not None and (self.force or not isinstance(buf, np.ndarray))

    def _host(self, slot: str, buf) -> np.ndarray:
        """A host array shaped like ``buf`` backed by the reusable buffer ``slot``."""
        pool = self._shared["pool"]
        nbytes = int(buf.nbytes)
        if slot not in pool or pool[slot].nbytes < nbytes:
            pool[slot] = self.backend.host_empty(max(nbytes, 1))
        return pool[slot][:nbytes].view(np.dtype(buf.dtype.str)).reshape(buf.shape)

    def _out(self, slot, buf):
        if not self._needs(buf):
            return buf
        host = self._host(slot, buf)
        self.backend.to_host(buf, out=host)
        self._shared["staged"]["to_host"] += host.nbytes
        return host

    def _in(self, slot, buf):
        return self._host(slot, buf) if self._needs(buf) else buf

    def _back(self, host, buf):
        if host is not buf:
            self.backend.to_device(host, buf)
            self._shared["staged"]["to_device"] += host.nbytes

    def Send(self, buf, dest, tag=0):
        return self.comm.Send(self._out("send", buf), dest, tag)

    def Recv(self, buf, source=-1, tag=-1, status=None):
        host = self._in("recv", buf)
        self.comm.Recv(host, source, tag, status)
        self._back(host, buf)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=-1, recvtag=-1,
                 status=None):
        host = self._in("recv", recvbuf)
        self.comm.Sendrecv(self._out("send", sendbuf), dest, sendtag, host, source, recvtag,
                           status)
        self._back(host, recvbuf)

    def Allreduce(self, sendbuf, recvbuf, op=None):
        host = self._in("recv", recvbuf)
        args = [op] if op is not None else []
        self.comm.Allreduce(self._out("send", sendbuf), host, *args)
        self._back(host, recvbuf)

    def Bcast(self, buf, root=0):
        if self.comm.Get_rank() == root:
            host = self._out("send", buf)
            self.comm.Bcast(host, root)
        else:
            host = self._in("recv", buf)
            self.comm.Bcast(host, root)
            self._back(host, buf)

    def Allgather(self, sendbuf, recvbuf):
        host = self._in("recv", recvbuf)
        self.comm.Allgather(self._out("send", sendbuf), host)
        self._back(host, recvbuf)

    def _collective(self, name: str, sendbuf, recvbuf, *args):
        """A library collective ``name(sendbuf, recvbuf, *args)`` on staged buffers."""
        host = self._in("recv", recvbuf)
        getattr(self.comm, name)(self._out("send", sendbuf), host, *args)
        self._back(host, recvbuf)

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=None):
        self._collective("Reduce_scatter_block", sendbuf, recvbuf, *([op] if op else []))

    def Reduce(self, sendbuf, recvbuf, op=None, root=0):
        from mpi4py import MPI

        self._collective("Reduce", sendbuf, recvbuf, op or MPI.SUM, root)

    def Alltoall(self, sendbuf, recvbuf):
        self._collective("Alltoall", sendbuf, recvbuf)

    def Ialltoallv(self, sendbuf, recvbuf):
        self._unstaged("Ialltoallv", sendbuf[0], recvbuf[0])
        return self.comm.Ialltoallv(sendbuf, recvbuf)

    def Alltoallv(self, sendbuf, recvbuf):
        """Both are ``[array, (counts, displs)]`` specs: their arrays are staged."""
        host = self._in("recv", recvbuf[0])
        self.comm.Alltoallv([self._out("send", sendbuf[0]), *sendbuf[1:]],
                            [host, *recvbuf[1:]])
        self._back(host, recvbuf[0])

    def Allgatherv(self, sendbuf, recvbuf):
        """``recvbuf`` is ``[array, counts]`` or ``[array, counts, displs, datatype]`` (or a
        bare array); only the array part is staged."""
        spec = list(recvbuf) if isinstance(recvbuf, (list, tuple)) else [recvbuf]
        host = self._in("recv", spec[0])
        self.comm.Allgatherv(self._out("send", sendbuf), [host, *spec[1:]])
        self._back(host, spec[0])

    def _unstaged(self, name: str, *bufs) -> None:
        """A nonblocking call goes to MPI as it is; on buffers that need staging it cannot
        (the copy back after completion would need a request wrapper): TypeError."""
        if any(self._needs(b) for b in bufs):
            raise TypeError(f"{name} on a device buffer needs a GPU-aware MPI (--gpu-aware yes)")

    def Isend(self, buf, dest, tag=0):
        self._unstaged("Isend", buf)
        return self.comm.Isend(buf, dest, tag)

    def Irecv(self, buf, source=-1, tag=-1):
        self._unstaged("Irecv", buf)
        return self.comm.Irecv(buf, source, tag)

    def Iallreduce(self, sendbuf, recvbuf, op=None):
        self._unstaged("Iallreduce", sendbuf, recvbuf)
        return self.comm.Iallreduce(sendbuf, recvbuf, *([op] if op is not None else []))

    def Ireduce_scatter_block(self, sendbuf, recvbuf, op=None):
        self._unstaged("Ireduce_scatter_block", sendbuf, recvbuf)
        return self.comm.Ireduce_scatter_block(sendbuf, recvbuf, *([op] if op else []))

    def Iallgather(self, sendbuf, recvbuf):
        self._unstaged("Iallgather", sendbuf, recvbuf)
        return self.comm.Iallgather(sendbuf, recvbuf)

    def Ibcast(self, buf, root=0):
        self._unstaged("Ibcast", buf)
        return self.comm.Ibcast(buf, root)

    def Ireduce(self, sendbuf, recvbuf, op=None, root=0):
        self._unstaged("Ireduce", sendbuf, recvbuf)
        return self.comm.Ireduce(sendbuf, recvbuf, *([op] if op is not None else []), root=root)

    def Ialltoall(self, sendbuf, recvbuf):
        self._unstaged("Ialltoall", sendbuf, recvbuf)
        return self.comm.Ialltoall(sendbuf, recvbuf)
