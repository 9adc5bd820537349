"""``native``: the MPI library's own ``MPI_Reduce_scatter_block``, the baseline.

Cost: whatever the library picks; the model takes the cheapest of the textbook algorithms
MPICH and Open MPI select among (:data:`CANDIDATES`: recursive halving for short messages,
pairwise exchange and the ring for long ones; Thakur, Rabenseifner & Gropp 2005, section 4).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("recursive_halving", "pairwise", "ring")

reduce_scatter, start, cost = library_algorithm("Reduce_scatter_block", "reduction", __package__,
                                                CANDIDATES)
