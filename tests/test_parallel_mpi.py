"""The parallel step on MPI (under mpirun with 2, 3 and 4 ranks): the bytes each rank sends per
traffic class equal the closed forms for every layout of the job, every ZeRO stage and bucket
size; every pipeline message arrives for its micro-batch; a step without compute is its bare
communication; overlapping the buckets with the backward can only shorten the step.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from distbench.algorithms.parallel.layout import Layout
from distbench.algorithms.parallel.step import Step, StepConfig, host_bytes
from distbench.algorithms.parallel.traffic import CLASSES, RankPlan
from distbench.algorithms.parallel.transformer import Transformer

# 12 layers (P = 1, 2, 3, 4 divide them) of H = 48 with 12 heads (so do T = 1, 2, 3, 4),
# S = 24, V = 101: odd sizes, so layers, shards and buckets are uneven before the padding to
# a multiple of D.
MODEL = dict(layers=12, hidden=48, heads=12, seq=24, vocab=101, micro_batch=1)
FAST = 1e9  # TFLOP/s: the stand-in accelerator's compute takes no measurable time


def _layouts(n: int) -> list[Layout]:
    """Every D x T x P = n (P and T divide the layers and the heads)."""
    out = []
    for tp, pp in itertools.product(range(1, n + 1), repeat=2):
        if n % (tp * pp) == 0 and MODEL["layers"] % pp == 0 and MODEL["heads"] % tp == 0:
            out.append(Layout(n // (tp * pp), tp, pp))
    return out


def _step(comm, lay, zero, m=4, schedule="1f1b", **cfg):
    model = Transformer(**MODEL, micro_batches=m)
    plan = RankPlan.of(model, lay, comm.Get_rank(), zero, schedule)
    return plan, Step(comm, plan, StepConfig(**{"tflops": FAST, **cfg}))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_counted_bytes_equal_closed_forms(zero):
    """Ring algorithms move the optimal volume, so each rank's counted bytes per class equal
    RankPlan.traffic() exactly, for every layout of the job, bucket sizes that split layers
    and that hold the whole model, and both schedules."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for lay, bucket, schedule in itertools.product(_layouts(comm.Get_size()), (0.01, 25.0),
                                                   ("1f1b", "gpipe")):
        plan, step = _step(comm, lay, zero, bucket_mb=bucket, schedule=schedule,
                           dp_algo="ring", tp_algo="ring")
        for _ in range(2):  # the second step counts the same as the first
            t = step.run()
            want = plan.traffic(bucket)
            for c in CLASSES:
                assert t.bytes[c] == pytest.approx(want[c], rel=1e-12, abs=0), \
                    (str(lay), zero, bucket, schedule, c)
            assert t.pp_wrong == 0
        step.free()


@pytest.mark.mpi(min_size=2)
def test_zero_volumes_dp_equals_zero12_and_zero3_is_one_and_a_half():
    """Counted data-parallel bytes at m = 1: ZeRO 1 and 2 move what plain data parallelism
    does (reduce-scatter + allgather = AllReduce), ZeRO 3 1.5x as much (up to the padding: its
    gathers pad each layer, the reduce-scatter each bucket, to a multiple of D)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    lay = Layout(comm.Get_size(), 1, 1)
    sent = {}
    for zero in range(4):
        _, step = _step(comm, lay, zero, m=1, dp_algo="ring")
        sent[zero] = step.run().bytes["dp"]
        step.free()
    assert sent[0] > 0 and sent[1] == sent[0] and sent[2] == sent[0]
    assert sent[3] == pytest.approx(1.5 * sent[0], rel=1e-3)


@pytest.mark.mpi(min_size=2)
def test_zero_2_and_3_reduce_scatter_every_micro_batch():
    """DeepSpeed's ZeRO 2 and 3 reduce-scatter every micro-batch's gradients (no rank holds
    more than its shard, as the memory model counts): at m micro-batches ZeRO 2 moves
    (m + 1)/2 and ZeRO 3 3m/2 times plain data parallelism's bytes, which accumulate and move
    once."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    lay = Layout(comm.Get_size(), 1, 1)
    for m in (2, 4):
        sent = {}
        for zero in (0, 2, 3):
            _, step = _step(comm, lay, zero, m=m, dp_algo="ring")
            sent[zero] = step.run().bytes["dp"]
            step.free()
        assert sent[2] == pytest.approx((m + 1) / 2 * sent[0], rel=1e-3)
        assert sent[3] == pytest.approx(3 * m / 2 * sent[0], rel=1e-3)


@pytest.mark.mpi(min_size=2)
def test_measured_bubble_is_the_schedules_idle_time():
    """A balanced pipeline of all the ranks whose compute dominates (the stand-in accelerator
    at 2e-3 TFLOP/s: milliseconds per micro-batch, sleeping, so the cores stay free): the
    measured bubble, each stage's time blocked in the pipeline plus its time done before the
    slowest rank, is Narayanan's (P-1)/(m+P-1). (Counting the receives alone read 2/3 of it.)
    Scheduling noise on an oversubscribed host only adds idle time, so the least of five
    steps is the estimate."""
    from mpi4py import MPI

    from distbench.algorithms.parallel.pipeline import bubble_fraction
    from distbench.benchmarks.parallel import idle_fraction

    comm = MPI.COMM_WORLD
    P, m = comm.Get_size(), 8
    _, step = _step(comm, Layout(1, 1, P), 0, m=m, tflops=2e-3)
    step.run()  # warm-up
    rows = []
    for _ in range(5):
        comm.Barrier()
        t = step.run()
        rows.append([t.step, t.compute, t.pp_wait, t.tp, t.dp, t.gather, t.comm])
    step.free()
    allrows = comm.gather(np.array(rows), root=0)
    if comm.Get_rank() == 0:
        per_step = np.stack(allrows)
        measured = min(idle_fraction(per_step[:, i:i + 1]) for i in range(per_step.shape[1]))
        assert measured == pytest.approx(bubble_fraction(P, m), abs=0.05), measured


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_every_micro_batch_reaches_the_next_stage(schedule):
    """A pipeline of all the ranks: each stage receives one activation per micro-batch from
    the previous stage and one gradient from the next, each tagged with its micro-batch's
    number and checked on arrival."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    p = comm.Get_size()
    m = 6
    plan, step = _step(comm, Layout(1, 1, p), 0, m=m, schedule=schedule)
    t = step.run()
    neighbours = (plan.stage > 0) + (plan.stage < p - 1)
    assert t.pp_wrong == 0
    assert step.pipe.calls["Recv"] == m * neighbours
    assert step.pipe.calls["Isend"] == m * neighbours
    step.free()


@pytest.mark.mpi(min_size=2)
def test_zero_flops_is_the_bare_communication():
    """With compute that takes no time the step is its communication: the compute spent is a
    sliver and the step's time is accounted for by waiting on the pipeline, the tensor and
    the data groups."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    n = comm.Get_size()
    lay = Layout(1, 2, n // 2) if n % 2 == 0 and MODEL["layers"] % (n // 2) == 0 else \
        Layout(n, 1, 1)
    _, step = _step(comm, lay, 1, dp_algo="ring", tp_algo="ring", overlap=False)
    runs = [step.run() for _ in range(5)]
    step.free()
    for t in runs[1:]:
        comm_s = t.pp_wait + t.tp + t.dp + t.gather
        assert t.compute < 0.25 * t.step, (t.compute, t.step)
        assert comm_s <= t.step and comm_s >= 0.5 * t.step - 1e-3, (comm_s, t.step)


@pytest.mark.mpi(min_size=2)
def test_overlap_only_lowers_the_step():
    """Data parallelism on every rank, small buckets and a backward long enough to hide them:
    with overlap the step waits less for the data group after the backward and takes no
    longer (medians of interleaved steps)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    lay = Layout(comm.Get_size(), 1, 1)
    # 10.6 MB of gradients (12 layers of H = 192) in 0.5 MiB buckets: the exchanges take
    # long enough, against the last bucket's, for what overlap hides to show
    model = Transformer(**{**MODEL, "hidden": 192, "heads": 12}, micro_batches=1)
    plan = RankPlan.of(model, lay, comm.Get_rank(), 0)
    tflops = plan.compute_seconds(1.0) / 0.08  # about 80 ms of compute per step
    steps = {ov: Step(comm, plan, StepConfig(bucket_mb=0.5, overlap=ov, tflops=tflops,
                                             dp_algo="ring")) for ov in (True, False)}
    times = {True: [], False: []}
    for k in range(12):
        for ov in ((True, False) if k % 2 else (False, True)):
            comm.Barrier()
            t = steps[ov].run()
            times[ov].append((comm.allreduce(t.step, op=MPI.MAX), t.dp))
    for s in steps.values():
        s.free()
    med = {ov: np.median(np.array(v[2:]), axis=0) for ov, v in times.items()}
    assert med[True][1] < 0.6 * med[False][1], med  # much less waiting for the data group
    assert med[True][0] <= 1.1 * med[False][0] + 2e-3, med


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("zero", [0, 3])
def test_host_bytes_is_what_the_step_allocates(zero):
    """The pre-flight estimate equals the bytes of the step's arrays, for every layout."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for lay in _layouts(comm.Get_size()):
        plan, step = _step(comm, lay, zero, bucket_mb=0.01)
        arrays = [step.grad, step.sums[0].base, *step.shards, step.act, step.act_out,
                  step.pp_in, *step.pp_out.values(), step.full, step.part]
        assert host_bytes(plan, 0.01) == sum(a.nbytes for a in arrays), str(lay)
        step.free()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["ring", "native"])
@pytest.mark.parametrize("zero", [0, 1, 3])
def test_bucket_exchanges_are_exact_with_many_in_the_queue(algo, zero):
    """Gradients of rank-dependent integers in many small buckets (and, at ZeRO 3, the
    layers' blocking allgathers on the data group while buckets are in flight): after a step
    every bucket's AllReduce (ZeRO 0) or reduce-scatter shard (ZeRO 1, 3) equals the MPI
    library's own on the same gradient, element for element, for every layout of the job;
    ZeRO 1's allgather then puts the whole sum back into the bucket."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for lay in _layouts(comm.Get_size()):
        if lay.dp == 1:
            continue
        plan, step = _step(comm, lay, zero, bucket_mb=0.003, dp_algo=algo, tp_algo=algo)
        assert len(step.buckets) > 3, str(lay)
        idx = np.arange(step.grad.size)
        step.grad[:] = (idx % 7 + 3 * comm.Get_rank() + 1).astype(step.grad.dtype)
        data = step._raw[0]
        want = np.empty_like(step.grad)
        data.Allreduce(step.grad, want)
        step.run()
        d = data.Get_rank()
        for k, view in enumerate(step.views):
            lo = view.__array_interface__["data"][0] - step.grad.__array_interface__["data"][0]
            lo //= step.grad.itemsize
            full = want[lo: lo + view.size]
            if zero == 0:
                np.testing.assert_array_equal(step.sums[k], full, err_msg=f"{lay} bucket {k}")
            else:
                n = view.size // lay.dp
                np.testing.assert_array_equal(step.shards[k], full[d * n:(d + 1) * n],
                                              err_msg=f"{lay} bucket {k}")
            if zero == 1:  # the allgather of the (stood-in) updated shards, into the bucket
                np.testing.assert_array_equal(view, full, err_msg=f"{lay} bucket {k}")
        step.free()
