"""``native``: the MPI library's own ``MPI_Allgather``, the baseline.

Cost: whatever the library picks; the model takes the cheapest of the textbook algorithms
MPICH and Open MPI select among (:data:`CANDIDATES`: Bruck or recursive doubling for short
messages, the ring for long ones; Thakur, Rabenseifner & Gropp 2005, section 4).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("bruck", "recursive_doubling", "ring")

allgather, start, cost = library_algorithm("Allgather", "buffers", __package__, CANDIDATES)
