"""``native``: the MPI library's own ``MPI_Alltoall``, the baseline.

Cost: whatever the library picks; the model takes the cheapest of the textbook algorithms
MPICH and Open MPI select among (:data:`CANDIDATES`: Bruck for short messages, pairwise
exchange for long ones; Thakur, Rabenseifner & Gropp 2005, section 4).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("bruck", "pairwise")

alltoall, start, cost = library_algorithm("Alltoall", "buffers", __package__, CANDIDATES)
