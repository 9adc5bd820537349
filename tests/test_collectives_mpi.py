"""Every algorithm of every collective, exact against the library's call and against the exact
expected result, under mpirun with 2, 3, 4 and 5 ranks (``-m collectives`` runs these at 5)
and on one rank (COMM_SELF, in the serial run).

For each collective: every registered algorithm, blocking, and nonblocking (start, then Test()
until done) for every other combination below 2^20; the counts {0, 1, p-1, p, p+1, a prime
times p, about 2^20} (for the collectives whose buffers are p blocks: blocks of {0, 1, p-1, p,
p+1, 1009, 2^20/p} elements), every op with every dtype (each pair at two of the counts; at
2^20 every dtype with SUM and every other op with one dtype), in place and not, and the roots
0, p/2 and p-1. The send buffer must come back untouched.
"""

from __future__ import annotations

import numpy as np
import pytest

from distbench.check import fill_segments, mismatches
from distbench.collectives import collective_names, get_collective
from distbench.collectives.ops import INTEGER_OPS, in_place_sentinel, mpi_op
from distbench.collectives.words import typed_comm
from distbench.runtime import numpy_dtype

DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64"]
OPS = ["sum", "prod", "min", "max", "band", "bor", "bxor"]
LARGE = 1 << 20


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def counts(decl, p: int) -> list[int]:
    """The element counts to test (whole buffers; p blocks of m where the collective needs)."""
    if decl.count_multiple(p) > 1:
        return sorted({m * p for m in (0, 1, p - 1, p, p + 1, 1009, LARGE // p)})
    return sorted({0, 1, p - 1, p, p + 1, 1009 * p, LARGE + 3})


def combinations(decl, count: int, p: int, phase: int):
    """(op, dtype, in_place, root) to test at ``count`` (the ``phase``-th count): every third
    pair of op and dtype, a different third at each count, so that the counts cover every pair
    twice; at 2^20 every dtype with SUM and every other op with one dtype. In place and not
    alternate, and the roots 0, p/2, p-1 take turns, over the pairs."""
    ops = OPS if decl.reduction else ["sum"]
    pairs = [(o, d) for o in ops for d in DTYPES
             if not (o in INTEGER_OPS and numpy_dtype(d).kind not in "iu")]
    if count > LARGE // 2:
        pairs = [(o, d) for o, d in pairs
                 if o == "sum" or d == ("int32" if o in INTEGER_OPS else "float64")]
    elif len(pairs) > 6:
        pairs = pairs[phase % 3::3]
    roots = sorted({0, p // 2, p - 1}) if decl.rooted else [0]
    for i, (op, dtype) in enumerate(pairs):
        yield op, dtype, decl.in_place and (i + phase) % 2 == 1, roots[(i + phase) % len(roots)]


def run_once(decl, fn, comm, count, op, dtype, in_place, root, nonblocking=False):
    """One call of ``fn`` (a kernel, or a start with ``nonblocking``) on the exact inputs;
    returns (recv, wrong elements against the expected result, changed send elements)."""
    rank, p = comm.Get_rank(), comm.Get_size()
    dt = numpy_dtype(dtype)
    n_send, n_recv = decl.buffers(count, p, rank, root, in_place)
    send_in, recv_in = decl.inputs(count, p, rank, root, op, in_place)
    send = np.empty(n_send, dtype=dt)
    recv = np.full(n_recv, -99, dtype=dt)
    fill_segments(send, send_in)
    fill_segments(recv, recv_in)
    call = decl.invoke(fn, typed_comm(comm, dt), in_place_sentinel() if in_place else send,
                       recv, rank, root, mpi_op(op) if decl.reduction else None)
    if nonblocking:
        req = call()
        while not req.Test():
            pass
    else:
        call()
    expected = decl.expected(count, p, rank, root, op, in_place)
    return recv, mismatches(recv, expected), mismatches(send, send_in)


def check_collective(name: str, comm) -> int:
    """Every algorithm of ``name`` against the library and the exact result on ``comm``;
    returns the number of calls checked."""
    decl = get_collective(name)
    reg = decl.registry
    p = comm.Get_size()
    calls = 0
    for phase, count in enumerate(counts(decl, p)):
        combos = combinations(decl, count, p, phase)
        for i, (op, dtype, in_place, root) in enumerate(combos):
            args = (comm, count, op, dtype, in_place, root)
            ref, bad, changed = run_once(decl, reg.spec(decl.baseline).fn, *args)
            assert bad == 0 and changed == 0, (name, "native", count, op, dtype, in_place, root)
            forms = (False, True) if count <= LARGE // 2 and i % 2 == phase % 2 else (False,)
            for algo in reg:
                spec = reg.spec(algo)
                for nonblocking in forms:
                    fn = spec.start if nonblocking else spec.fn
                    got, bad, changed = run_once(decl, fn, *args, nonblocking=nonblocking)
                    label = (name, algo, count, op, dtype, in_place, root, nonblocking)
                    assert bad == 0, ("wrong elements", label, bad)
                    assert changed == 0, ("send buffer modified", label, changed)
                    assert np.array_equal(got, ref), ("differs from the library", label)
                    calls += 1
    comm.Barrier()
    return calls


@pytest.mark.mpi(min_size=2)
@pytest.mark.collectives
@pytest.mark.parametrize("name", collective_names())
def test_exact_against_the_library(name):
    assert check_collective(name, _world()) > 0


@pytest.mark.collectives
@pytest.mark.parametrize("name", collective_names())
def test_exact_on_one_rank(name):
    """p = 1 (COMM_SELF, the serial run; MPI initialized here if an earlier test of the session
    ran the CLI in process, which defers MPI_Init)."""
    from mpi4py import MPI

    from distbench.runtime import world

    world()
    assert check_collective(name, MPI.COMM_SELF) > 0


@pytest.mark.mpi(min_size=2)
@pytest.mark.collectives
def test_bad_sizes_raise_on_every_rank():
    """Buffers that are not p blocks raise ValueError before any message (no hang)."""
    comm = _world()
    p = comm.Get_size()
    bad = {
        "reduce-scatter": (np.ones(2 * p + 1), np.empty(2)),
        "allgather": (np.ones(2), np.empty(2 * p + 1)),
        "alltoall": (np.ones(2 * p + 1), np.empty(2 * p + 1)),
    }
    for name, (send, recv) in bad.items():
        reg = get_collective(name).registry
        for algo in reg:
            if algo == "native":
                continue
            with pytest.raises(ValueError, match="needs"):
                reg[algo](comm, send, recv)
    comm.Barrier()
