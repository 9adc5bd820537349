"""Serial tests of the shared collective helpers: block partitions, scratch workspaces, the
reduction ufunc table and the power-of-two folding arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from distbench import buffers
from distbench.buffers import PrivatePool, clear_workspace, workspace
from distbench.collectives.inputs import block_bounds, pow2_floor
from distbench.collectives.ops import reduce_ufunc
from distbench.collectives.patterns import real_rank


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 16])
def test_block_bounds_partition(parts):
    for count in [0, 1, parts - 1, parts, parts + 1, 1009, (1 << 20) + 3]:
        b = block_bounds(count, parts)
        assert b.dtype == np.int64 and b.shape == (parts + 1,)
        assert b[0] == 0 and b[-1] == count
        sizes = np.diff(b)
        base, extra = divmod(count, parts)
        # near-equal: the first count % parts blocks hold one element more
        assert np.array_equal(sizes[:extra], np.full(extra, base + 1))
        assert np.array_equal(sizes[extra:], np.full(parts - extra, base))


def test_workspace_reuses_and_grows():
    clear_workspace()
    like = np.zeros(4, dtype=np.float32)
    a = workspace(like, 100)
    assert a.shape == (100,) and a.dtype == np.float32
    b = workspace(like, 60)
    assert np.shares_memory(a, b) and b.shape == (60,), "same slot, smaller: same memory"
    other = workspace(like, 60, slot="node")
    assert not np.shares_memory(a, other), "slots are distinct buffers"
    wider = workspace(np.zeros(1, dtype=np.float64), 60)
    assert wider.dtype == np.float64 and not np.shares_memory(a, wider)
    big = workspace(like, 1000)
    assert big.shape == (1000,) and not np.shares_memory(a, big), "grown: a new buffer"
    assert np.shares_memory(workspace(like, 10), big), "the grown buffer is kept"
    assert workspace(like, 0).shape == (0,)
    clear_workspace()
    assert not buffers._WORKSPACE
    assert not np.shares_memory(workspace(like, 10), big), "cleared: fresh memory"
    clear_workspace()


def test_private_pool_keeps_a_collective_in_flight_apart():
    """Inside a pool a collective in flight gets its own scratch, kept across its steps, that
    the shared workspace (a blocking collective meanwhile) never hands out; once released the
    pool's buffers serve the next collective, so steady state allocates nothing."""
    clear_workspace()
    like = np.zeros(4, dtype=np.int16)
    shared = workspace(like, 50)
    pool = PrivatePool()
    pool.enter()
    mine = workspace(like, 50)
    pool.leave()
    assert not np.shares_memory(mine, shared)
    assert np.shares_memory(workspace(like, 50), shared), "outside: the shared buffer again"
    pool.enter()
    assert np.shares_memory(workspace(like, 20), mine), "the same scratch at its next step"
    pool.leave()
    second = PrivatePool()  # while the first is in flight: distinct scratch
    second.enter()
    assert not np.shares_memory(workspace(like, 50), mine)
    second.leave()
    pool.release()
    third = PrivatePool()  # after the first finished: its buffers, reused
    third.enter()
    assert np.shares_memory(workspace(like, 50), mine)
    third.leave()
    clear_workspace()


def test_reduce_ufunc_table():
    from mpi4py import MPI

    assert reduce_ufunc(MPI.SUM, np) is np.add
    assert reduce_ufunc(None, np) is np.add, "None is SUM"
    assert reduce_ufunc(MPI.PROD, np) is np.multiply
    assert reduce_ufunc(MPI.MAX, np) is np.maximum
    assert reduce_ufunc(MPI.MIN, np) is np.minimum
    assert reduce_ufunc(MPI.BXOR, np) is np.bitwise_xor
    for op in (MPI.LAND, MPI.MAXLOC, MPI.REPLACE):
        with pytest.raises(ValueError, match="unsupported reduction op"):
            reduce_ufunc(op, np)


def test_reduce_ufunc_waits_for_the_device_stream():
    """A device module's reduction waits for its stream (MPI may send the output next)."""
    from types import SimpleNamespace

    from mpi4py import MPI

    waits = []
    stream = SimpleNamespace(synchronize=lambda: waits.append(1))
    fake = SimpleNamespace(add=np.add, multiply=np.multiply, maximum=np.maximum,
                           minimum=np.minimum,
                           cuda=SimpleNamespace(get_current_stream=lambda: stream))
    fn = reduce_ufunc(MPI.MAX, fake)
    out = np.empty(3)
    fn(np.array([1.0, 5.0, 2.0]), np.array([4.0, 0.0, 2.0]), out=out)
    assert out.tolist() == [4.0, 5.0, 2.0] and waits == [1]


def test_power_of_two_folding():
    assert [pow2_floor(p) for p in range(1, 10)] == [1, 2, 2, 4, 4, 4, 4, 8, 8]
    for p in range(1, 20):
        rem = p - pow2_floor(p)
        members = sorted(real_rank(q, rem) for q in range(pow2_floor(p)))
        # the group is the odd ranks below 2 rem and every rank from 2 rem on
        assert members == [r for r in range(p) if r >= 2 * rem or r % 2 == 1]
