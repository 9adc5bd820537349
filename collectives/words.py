"""Element types the MPI library has no datatype for (bfloat16; float16 in an MPI without
``MPIX_C_FLOAT16``): their buffers travel as machine words of their size, and the library's
reductions use a user-defined MPI op on those words.

mpi4py finds a buffer's MPI datatype from its NumPy type code (:func:`mpi_type`); ml-dtypes'
``bfloat16`` has none, and NumPy cannot even export it through the buffer protocol. A
:class:`WordComm` wraps a communicator for one such dtype: every array of that dtype handed to a
point-to-point or collective call is passed as ``[array.view(uint16), MPI.UINT16_T]`` (the same
bytes), and every reduction op becomes a user-defined op (``MPI.Op.Create``, commutative) that
views the words as the dtype and applies the NumPy ufunc (ml-dtypes provides bfloat16's), so
``MPI_Allreduce`` and the hand-written algorithms run unchanged on top of it. The cost is one
view per buffer argument (about a microsecond per call, hand-written or library) and, in the
library, a Python call per reduced chunk.
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.ops import reduce_ufunc
from distbench.comm import CommProxy
from distbench.runtime import mpi

_USER_OPS: dict = {}


def mpi_type(dtype):
    """The MPI datatype mpi4py uses for NumPy ``dtype``, or None where the library has none."""
    try:
        return mpi().Datatype.fromcode(np.dtype(dtype).char)
    except (KeyError, ValueError):
        return None


def needs_words(dtype) -> bool:
    """Whether buffers of ``dtype`` must travel as words (no MPI datatype for it)."""
    return mpi_type(dtype) is None


def _word_type(itemsize: int):
    MPI = mpi()
    return {1: MPI.UINT8_T, 2: MPI.UINT16_T, 4: MPI.UINT32_T, 8: MPI.UINT64_T}[itemsize]


def user_op(op, dtype):
    """The user-defined MPI op applying reduction ``op`` (an ``MPI.Op``; None: SUM) to words
    holding ``dtype`` values; created once per (op, dtype) and kept until exit."""
    dtype = np.dtype(dtype)
    MPI = mpi()
    op = MPI.SUM if op is None else op
    for key, made in _USER_OPS.get(dtype, ()):
        if key == op:
            return made
    ufunc = reduce_ufunc(op, np)

    def apply(inbuf, inoutbuf, datatype):
        out = np.frombuffer(inoutbuf, dtype=dtype)
        ufunc(np.frombuffer(inbuf, dtype=dtype), out, out=out)

    made = MPI.Op.Create(apply, commute=True)
    _USER_OPS.setdefault(dtype, []).append((op, made))
    return made


class WordComm(CommProxy):
    """A communicator proxy passing arrays of ``dtype`` as words and reductions as user ops.

    Args:
        comm: the communicator (or another proxy) to wrap.
        dtype: the NumPy dtype without an MPI datatype (e.g. ml-dtypes' bfloat16).
    """

    def __init__(self, comm, dtype):
        super().__init__(comm)
        self.dtype = np.dtype(dtype)
        self._word = np.dtype(f"u{self.dtype.itemsize}")
        self._type = _word_type(self.dtype.itemsize)

    def _child(self, sub):
        return WordComm(sub, self.dtype)

    def _w(self, buf):
        """``buf`` as ``[words, MPI type]`` if it is an array of the dtype; else unchanged."""
        if getattr(buf, "dtype", None) == self.dtype:
            return [buf.view(self._word), self._type]
        return buf

    def _op(self, op):
        return user_op(op, self.dtype)

    # point-to-point (the hand-written algorithms)
    def Send(self, buf, dest, tag=0):
        return self.comm.Send(self._w(buf), dest, tag)

    def Recv(self, buf, source=-1, tag=-1, status=None):
        return self.comm.Recv(self._w(buf), source, tag, status)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=-1, recvtag=-1,
                 status=None):
        return self.comm.Sendrecv(self._w(sendbuf), dest, sendtag, self._w(recvbuf), source,
                                  recvtag, status)

    def Isend(self, buf, dest, tag=0):
        return self.comm.Isend(self._w(buf), dest, tag)

    def Irecv(self, buf, source=-1, tag=-1):
        return self.comm.Irecv(self._w(buf), source, tag)

    # the library's collectives (the baselines and the checks)
    def Allreduce(self, sendbuf, recvbuf, op=None):
        return self.comm.Allreduce(self._w(sendbuf), self._w(recvbuf), self._op(op))

    def Iallreduce(self, sendbuf, recvbuf, op=None):
        return self.comm.Iallreduce(self._w(sendbuf), self._w(recvbuf), self._op(op))

    def Reduce_scatter_block(self, sendbuf, recvbuf, op=None):
        return self.comm.Reduce_scatter_block(self._w(sendbuf), self._w(recvbuf), self._op(op))

    def Ireduce_scatter_block(self, sendbuf, recvbuf, op=None):
        return self.comm.Ireduce_scatter_block(self._w(sendbuf), self._w(recvbuf),
                                               self._op(op))

    def Reduce(self, sendbuf, recvbuf, op=None, root=0):
        return self.comm.Reduce(self._w(sendbuf), self._w(recvbuf), self._op(op), root)

    def Ireduce(self, sendbuf, recvbuf, op=None, root=0):
        return self.comm.Ireduce(self._w(sendbuf), self._w(recvbuf), self._op(op), root)

    def Allgather(self, sendbuf, recvbuf):
        return self.comm.Allgather(self._w(sendbuf), self._w(recvbuf))

    def Iallgather(self, sendbuf, recvbuf):
        return self.comm.Iallgather(self._w(sendbuf), self._w(recvbuf))

    def Alltoall(self, sendbuf, recvbuf):
        return self.comm.Alltoall(self._w(sendbuf), self._w(recvbuf))

    def _wv(self, spec):
        """An ``[array, (counts, displs)]`` spec with the array as words of its MPI type."""
        return [spec[0].view(self._word), spec[1], self._type]

    def Alltoallv(self, sendbuf, recvbuf):
        return self.comm.Alltoallv(self._wv(sendbuf), self._wv(recvbuf))

    def Ialltoallv(self, sendbuf, recvbuf):
        return self.comm.Ialltoallv(self._wv(sendbuf), self._wv(recvbuf))

    def Ialltoall(self, sendbuf, recvbuf):
        return self.comm.Ialltoall(self._w(sendbuf), self._w(recvbuf))

    def Bcast(self, buf, root=0):
        return self.comm.Bcast(self._w(buf), root)

    def Ibcast(self, buf, root=0):
        return self.comm.Ibcast(self._w(buf), root)


def typed_comm(comm, dtype):
    """``comm`` itself when MPI has a datatype for ``dtype``, else a :class:`WordComm`."""
    return WordComm(comm, dtype) if needs_words(dtype) else comm


__all__ = ["WordComm", "mpi_type", "needs_words", "typed_comm", "user_op"]
