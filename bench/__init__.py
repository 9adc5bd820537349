"""distbench: MPI benchmarks for the communication side of distributed optimization.

Import namespace (DESIGN.md section 1): the harness is ``distbench`` (folder ``bench/``), the
communication kernels ``distbench.collectives`` and the optimization side
``distbench.algorithms``.
"""

__version__ = "0.1.0"
