"""distbench: MPI benchmarks for the communication side of distributed optimization.

One import namespace: the harness and its services are ``distbench`` (folder ``bench/``, with
``distbench.benchmarks``, ``distbench.analysis`` and ``distbench.emulate``), the communication
kernels ``distbench.collectives`` and the optimization side ``distbench.algorithms``. The map is
``docs/ARCHITECTURE.md``.
"""

__version__ = "0.1.0"
