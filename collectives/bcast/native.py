"""``native``: the MPI library's own ``MPI_Bcast``, the baseline.

Cost: whatever the library picks; the model takes the cheapest of the textbook algorithms
MPICH and Open MPI select among (:data:`CANDIDATES`: the binomial tree for short messages,
scatter + allgather for long ones, Open MPI's segmented pipelines; Thakur, Rabenseifner &
Gropp 2005, section 3).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("binomial", "scatter_allgather", "pipeline")

bcast, start, cost = library_algorithm("Bcast", "root", __package__, CANDIDATES)
