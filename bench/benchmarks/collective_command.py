"""The command of every collective: ``distbench <collective>``, built from its declaration.

The same options for every collective (sizes, iterations, dtype, device, check, output,
``--nonblocking``), plus ``--op`` where it reduces, ``--root`` where it has a root,
``--in-place`` where it has an ``MPI_IN_PLACE`` form, and one option per option its algorithms
declare (:func:`distbench.command.algorithm_options`).
"""

from __future__ import annotations

import click

from distbench.benchmarks.collective import (
    DTYPES,
    SweepConfig,
    run_sweep,
    validate_mpi,
    validate_sweep,
)
from distbench.collectives.kernels import OPS
from distbench.command import (
    Job,
    algorithm_options,
    apply,
    check_algorithm_options,
    csv_list,
    device_options,
    iteration_options,
    output_options,
    size_options,
    target_ci_option,
    watch_options,
)


def _collective_options(decl) -> list:
    """The options only some collectives have: ``--op``, ``--root``, ``--in-place``."""
    out = []
    if decl.reduction:
        out.append(click.option("--op", type=click.Choice(list(OPS)), default="sum",
                                show_default=True, help="Reduction op (band, bor, bxor: "
                                "integer dtypes). Exact inputs for each (PROD: signed powers "
                                "of two)."))
    if decl.rooted:
        out.append(click.option("--root", type=int, default=0, show_default=True,
                                help="The root rank (0..p-1)."))
    if decl.in_place:
        out.append(click.option("--in-place", is_flag=True,
                                help="Measure the MPI_IN_PLACE form, for the library and every "
                                "hand-written algorithm."))
    return out


NONBLOCKING_OPTIONS = [
    click.option("--nonblocking", is_flag=True,
                 help="Measure the nonblocking forms (the library's I-call, the hand-written "
                 "schedules) and their overlap with computation: pure, compute, total times "
                 "and overlap % (OSU's definition)."),
    click.option("--compute-ratio", type=float, default=1.0, show_default=True,
                 help="With --nonblocking: computation as a multiple of the pure time (0: "
                 "none, the total is the pure time)."),
    click.option("--progress-us", type=float, default=50.0, show_default=True,
                 help="With --nonblocking: microseconds of computation between two Test() "
                 "calls, the only progress a single-threaded rank gives."),
]


def build(decl):
    """The click command ``distbench <decl.name>``."""
    declared = decl.registry.options()

    def command(algos, min_bytes, max_bytes, factor, iters, warmup, dtype, device, gpu_aware,
                check, timeout, max_time, target_ci, output, run_dir, as_json, quiet,
                nonblocking, compute_ratio, progress_us, op="sum", root=0, in_place=False,
                **options):
        names = decl.registry.require(csv_list(algos) if algos.strip() != "all" else ["all"],
                                      "--algo")
        check_algorithm_options(declared, options)
        cfg = SweepConfig(names, min_bytes, max_bytes, factor, iters, warmup, dtype, device,
                          gpu_aware, check, output, as_json, quiet, run_dir, timeout, max_time,
                          target_ci, options, op, root, in_place, nonblocking, compute_ratio,
                          progress_us)
        validate_sweep(cfg, decl)
        return Job(decl.name, cfg.record(),
                   lambda comm, argv: run_sweep(decl, cfg, comm, argv),
                   validate=lambda comm: validate_mpi(decl, cfg, comm), timeout=timeout,
                   output=run_dir or output)

    command.__doc__ = (
        f"Sweep {decl.title} algorithms over message sizes against {decl.call}.\n\n"
        f"The size is {decl.size_meaning}. Reports t_avg/t_min/t_max over ranks, p99 of the "
        "per-iteration completion time, algbw, busbw, the time ratio to native (measured "
        "interleaved) and #wrong elements.")
    options = [
        click.option("--algo", "algos", default="all", show_default=True,
                     help="Comma-separated algorithms, or 'all'. native is always measured."),
        *size_options("8", "64M", 2, "Smallest message in bytes (K, M, G suffixes: powers of "
                      "1024).", "Largest message in bytes."),
        *iteration_options("Timed iterations per size and algorithm [default: 1000 up to 8 "
                           "KiB, 100 above, capped to ~0.12 s per size and algorithm, at "
                           "least 5].", "Untimed warm-up iterations [default: iters/10, "
                           "1..100]."),
        click.option("--dtype", type=click.Choice(list(DTYPES)), default="float32",
                     show_default=True, help="Element type (bfloat16 from ml-dtypes)."),
        *device_options(),
        *_collective_options(decl),
        *algorithm_options(declared),
        click.option("--check/--no-check", default=True, show_default=True,
                     help=f"Compare every algorithm's result with the exact result, which "
                     f"{decl.call} must match too (untimed)."),
        *NONBLOCKING_OPTIONS,
        *watch_options("operation (a size's check, estimate or block of iterations)"),
        target_ci_option(),
        *output_options(decl.name)[:1],
        click.option("--run-dir", type=click.Path(file_okay=False), default=None, hidden=True,
                     help=f"Write {decl.name}.json/.csv into this exact folder (make bench)."),
        *output_options(decl.name)[1:],
    ]
    return click.command(decl.name)(apply(command, options))


__all__ = ["build"]
