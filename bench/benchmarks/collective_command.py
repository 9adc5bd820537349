"""The command of every collective: ``distbench <collective>``, built from its declaration.

The options of :class:`~distbench.benchmarks.collective.SweepConfig` (sizes, iterations, dtype,
device, check, ``--nonblocking``, the run options), less ``--op`` where it does not reduce,
``--root`` where it has no root and ``--in-place`` where it has no ``MPI_IN_PLACE`` form, plus
one option per option its algorithms declare (``--inner``, ``--ranks-per-node``).
"""

from __future__ import annotations

import dataclasses

from distbench.benchmarks.collective import SweepConfig, run_sweep, validate_mpi, validate_sweep
from distbench.command import Job
from distbench.errors import UsageError
from distbench.options import click_option, declared_command
from distbench.tuning import read_table

ALGORITHM_OPTIONS = "Algorithm options"


def _skipped(decl) -> tuple:
    """The options of :class:`SweepConfig` this collective does not have."""
    return tuple(name for name, has in (("op", decl.reduction), ("root", decl.rooted),
                                        ("in_place", decl.in_place)) if not has)


def build(decl):
    """The click command ``distbench <decl.name>``."""
    declared = decl.registry.options()

    def make(cfg: SweepConfig, **options) -> Job:
        auto = "auto" in cfg.algos
        algos = decl.registry.require([a for a in cfg.algos if a != "auto"] or
                                      [decl.baseline], "--algo") + (["auto"] if auto else [])
        if auto and cfg.tuning is None:
            raise UsageError("--algo auto needs --tuning FILE (distbench tune's "
                             "distbench_tuning.json)")
        if cfg.tuning is not None:
            if not auto:
                raise UsageError("--tuning goes with --algo auto")
            read_table(cfg.tuning)  # a file of another tool: one line, exit 2
        decl.registry.check(options)
        cfg = dataclasses.replace(cfg, algos=algos, options={
            k: v for k, v in options.items() if v is not None})
        validate_sweep(cfg, decl)
        return Job(decl.name, cfg.record(),
                   lambda comm, argv, memory: run_sweep(decl, cfg, comm, argv, memory),
                   options=cfg.run, validate=lambda comm: validate_mpi(decl, cfg, comm))

    doc = (f"Sweep {decl.title} algorithms over message sizes against {decl.call}.\n\n"
           f"The size is {decl.size_meaning}. Reports t_avg/t_min/t_max over ranks, p99 of the "
           "per-iteration completion time, algbw, busbw, the time ratio to native (measured "
           "interleaved) and #wrong elements.")
    two = ",".join([a for a in decl.algorithms() if a != decl.baseline][:2])
    examples = [f"mpirun -n 4 distbench {decl.name}",
                f"mpirun -n 4 distbench {decl.name} -b 8 -e 1M -f 4 --algo {two}",
                f"mpirun -n 2 distbench {decl.name} --nonblocking -e 16M --json > run.json"]
    extra = [click_option(o if o.group else dataclasses.replace(o, group=ALGORITHM_OPTIONS))
             for o in declared.values()]
    return declared_command(decl.name, SweepConfig, make, doc=doc, examples=examples,
                            extra=extra, skip=_skipped(decl))


__all__ = ["build"]
