"""``native``: the MPI library's own ``MPI_Reduce``, the baseline.

Cost: whatever the library picks; the model takes the cheapest of the textbook algorithms
MPICH and Open MPI select among (:data:`CANDIDATES`: the binomial tree for short messages,
Rabenseifner's reduce-scatter + gather for long ones; Thakur, Rabenseifner & Gropp 2005,
section 4).

Bytes sent per rank: inside the library, not visible to a wrapper.
"""

from __future__ import annotations

from distbench.collectives.library import library_algorithm

CANDIDATES = ("binomial", "rabenseifner")

reduce, start, cost = library_algorithm("Reduce", "rooted reduction", __package__, CANDIDATES)
