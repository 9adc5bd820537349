"""Every registered AllReduce, exact against MPI_Allreduce, under mpirun with 2, 3 and 4 ranks.

Also: the hierarchical algorithm for each node grouping and inner algorithm, the MAX/MIN/PROD
reductions, repeated calls (cached communicators and scratch reused), one rank (COMM_SELF, in
the serial run) and the errors the hierarchical options raise.
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import count_wrong, unchanged

from distbench.check import fill_exact
from distbench.collectives import ALLREDUCE, get_allreduce
from distbench.collectives.allreduce import hierarchical

DTYPES = ["float32", "float64", "int32", "int64"]
HAND_WRITTEN = sorted(set(ALLREDUCE) - {"native"})


def _counts(p: int) -> list[int]:
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 1009, (1 << 20) + 3})


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _check(comm, fn, count, dtype, label, op=None, fill=None):
    """Run ``fn`` once on exact inputs; assert the result equals MPI_Allreduce's and sendbuf is
    untouched."""
    rank = comm.Get_rank()
    send = np.empty(count, dtype=dtype)
    fill_exact(send, rank)
    if fill is not None:
        send[:] = fill(send)
    before = send.copy()
    recv = np.full(count, -99, dtype=dtype)
    if op is None:
        fn(comm, send, recv)
    else:
        fn(comm, send, recv, op=op)
    assert count_wrong(comm, send, recv, op=op) == 0, (label, dtype, count)
    assert np.array_equal(send, before), f"{label} modified sendbuf (count {count})"
    return recv


def _groupings(p: int) -> list[int]:
    return sorted({1, p} | ({2} if p % 2 == 0 else set()))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(ALLREDUCE))
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_against_mpi_allreduce(name, dtype):
    comm = _world()
    rank, p = comm.Get_rank(), comm.Get_size()
    fn = get_allreduce(name)
    for count in _counts(p):
        send = np.empty(count, dtype=dtype)
        fill_exact(send, rank)
        recv = np.full(count, -99, dtype=dtype)
        fn(comm, send, recv)
        assert count_wrong(comm, send, recv) == 0, (name, dtype, count)
        assert unchanged(send, rank), f"{name} modified sendbuf (count {count})"


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("inner,dtype", [("ring", "float32"), ("recursive_doubling", "int64")])
def test_hierarchical_groupings(inner, dtype):
    """Every ranks_per_node in {1, 2 when it divides p, p} with each inner algorithm."""
    comm = _world()
    p = comm.Get_size()
    for k in _groupings(p):
        fn = get_allreduce("hierarchical", ranks_per_node=k, inner=inner)
        node, leaders = hierarchical.node_groups(comm, k)
        assert node.Get_size() == k and node.Get_rank() == comm.Get_rank() % k
        assert (leaders is not None) == (comm.Get_rank() % k == 0)
        if leaders is not None:
            assert leaders.Get_size() == p // k and leaders.Get_rank() == comm.Get_rank() // k
        for count in _counts(p):
            _check(comm, fn, count, dtype, f"hierarchical k={k} inner={inner}")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", HAND_WRITTEN)
@pytest.mark.parametrize("opname", ["MAX", "MIN", "PROD"])
def test_other_ops(name, opname):
    """MAX and MIN on the exact inputs; PROD on inputs in {1, 2} (products <= 2**p, exact)."""
    from mpi4py import MPI

    comm = _world()
    op = getattr(MPI, opname)
    dtype, fill = ("int32", lambda x: x % 2 + 1) if opname == "PROD" else ("float64", None)
    fn = get_allreduce(name)
    for count in _counts(comm.Get_size()):
        recv = _check(comm, fn, count, dtype, f"{name} {opname}", op=op, fill=fill)
        if opname == "PROD" and count > 17:
            assert recv.max() > 2, "PROD inputs should multiply to more than one rank's value"


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_repeated_calls_reuse_state(name):
    """The same call twice, then a smaller and a larger count: cached communicators and
    workspaces are reused (and regrown) without stale data leaking into the result."""
    comm = _world()
    p = comm.Get_size()
    options = {"ranks_per_node": 2 if p % 2 == 0 else 1} if name == "hierarchical" else {}
    fn = get_allreduce(name, **options)
    for count in (4099, 4099, p + 1, (1 << 20) + 3, 4099):
        _check(comm, fn, count, "float32", f"{name} repeated")
    if name == "hierarchical":
        cached = dict(hierarchical._GROUPS)
        _check(comm, fn, 4099, "float32", "hierarchical again")
        assert hierarchical._GROUPS == cached, "a repeated call split the communicator again"
        node, _ = hierarchical.node_groups(comm, options["ranks_per_node"])
        assert node is cached[(id(comm), options["ranks_per_node"])][1]


@pytest.mark.mpi(min_size=2)
def test_hierarchical_bad_options_raise():
    """Options are checked before any communication, on every rank alike (no hang)."""
    comm = _world()
    p = comm.Get_size()
    send = np.ones(8, dtype="float32")
    recv = np.empty_like(send)
    for k in (0, p + 1):
        with pytest.raises(ValueError, match="ranks_per_node"):
            hierarchical.allreduce(comm, send, recv, ranks_per_node=k)
    for inner in ("hierarchical", "no_such_algorithm"):
        with pytest.raises(ValueError, match="inner algorithm"):
            hierarchical.allreduce(comm, send, recv, ranks_per_node=1, inner=inner)
    comm.Barrier()


@pytest.mark.parametrize("name", sorted(ALLREDUCE))
def test_single_rank(name):
    """One rank (COMM_SELF, serial run): recvbuf becomes a copy of sendbuf, for every op."""
    from mpi4py import MPI

    fn = get_allreduce(name)
    for count in (0, 1, 1009):
        send = np.arange(count, dtype="float64") - 7
        for op in (MPI.SUM, MPI.MAX):
            recv = np.full(count, -99.0)
            fn(MPI.COMM_SELF, send, recv, op=op)
            assert np.array_equal(recv, send), (name, count, op)


@pytest.mark.mpi(min_size=2)
def test_ring_segments_inside_a_node_and_sends_whole_blocks_across_nodes():
    """One host: the reduce-scatter is cut into 1 MiB segments; a communicator that spans nodes
    (forced here through the cache) sends one message per step. Both exact, same bytes."""
    from mpi4py import MPI

    from distbench.collectives import patterns
    from distbench.collectives.allreduce import ring
    from distbench.collectives.inputs import cached_bounds
    from distbench.comm import CountingComm

    world = MPI.COMM_WORLD
    rank, p = world.Get_rank(), world.Get_size()
    count = (1 << 20) + 3  # float64: blocks of 8/p MiB, several segments each
    send = np.empty(count, dtype=np.float64)
    fill_exact(send, rank)
    seg = patterns.SEGMENT_BYTES // 8
    nseg = -(-cached_bounds(count, p)[1] // seg)
    sent = {}
    for spans in (False, True):
        comm = CountingComm(world)
        assert patterns.spans_nodes(comm) is False  # one host: Split_type finds every rank
        patterns._SPANS_NODES[id(comm)] = (comm, spans)
        comm.reset()
        recv = np.full(count, -99.0)
        ring.allreduce(comm, send, recv)
        assert count_wrong(world, send, recv) == 0
        expected_msgs = (p - 1) * (1 if spans else nseg) + (p - 1)
        assert comm.calls["Sendrecv"] == expected_msgs
        sent[spans] = comm.bytes_sent
    assert sent[False] == sent[True]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", HAND_WRITTEN)
@pytest.mark.parametrize("count", [1, 1009, (1 << 18) + 3])
def test_persistent_requests_are_recorded_once_and_reused(name, count):
    """A kernel called again on the same buffers replays its recorded persistent requests
    (collectives.schedule.PLANS), bit-exact against MPI_Allreduce on every call, with new
    inputs each time (the requests read and write the buffers' current contents)."""
    from distbench.buffers import release_caches
    from distbench.collectives.schedule import PLANS

    comm = _world()
    rank = comm.Get_rank()
    fn = get_allreduce(name)
    send = np.empty(count, dtype=np.float32)
    recv = np.empty(count, dtype=np.float32)
    before = (PLANS.recorded, PLANS.reused)
    for call in range(4):
        fill_exact(send, rank, offset=call)
        recv.fill(-99)
        fn(comm, send, recv)
        assert count_wrong(comm, send, recv) == 0, (name, count, call)
        assert unchanged(send, rank) if call == 0 else True
    recorded, reused = PLANS.recorded - before[0], PLANS.reused - before[1]
    # recorded on the first call (again on the second where a workspace grew during the
    # first), replayed on every later one
    assert 1 <= recorded <= 2 and reused == 4 - recorded, (recorded, reused)
    assert any(v[1][0][1] is send and v[1][0][2] is recv for v in PLANS.plans.values())
    release_caches()
    assert not PLANS.plans
