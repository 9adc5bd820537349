"""``native``: the MPI library's own ``MPI_Allreduce``, the baseline every algorithm is
measured against.

Cost: whatever the library picks (Open MPI's ``coll/tuned`` or ``han``, MPICH's selection). The
model takes it to be the cheapest of the textbook algorithms MPICH (Thakur, Rabenseifner &
Gropp 2005) and Open MPI's ``coll/tuned`` select among, :data:`CANDIDATES`, assuming the
library picks the best one at each size and rank count.

Bytes sent per rank: inside the library, not visible to a wrapper (a
:class:`~distbench.comm.CountingComm` counts the one send buffer handed to it).
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("recursive_doubling", "rabenseifner", "ring")

allreduce, start, cost = library_algorithm("Allreduce", "reduction", __package__, CANDIDATES)
