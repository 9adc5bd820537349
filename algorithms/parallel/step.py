"""One training step's communication on MPI, on real buffers of the real sizes, with the
compute stood in for: data parallelism with gradient buckets (DDP), ZeRO 1-3, Megatron-LM
tensor parallelism and a pipeline (1F1B or GPipe) over D x T x P ranks.

What a rank (d, t, s) does, micro-batch by micro-batch in its stage's schedule
(:mod:`.pipeline`):

* forward of micro-batch i: receive the activation from stage s-1; per layer: (ZeRO 3:
  allgather the layer's parameters in the data group) half the layer's compute, an AllReduce
  of the b S H activation in the tensor group, the other half, another AllReduce (Shoeybi et
  al. 2019, section 3: after the attention block and after the MLP); the logits on the last
  stage; send the activation to stage s+1 (``Isend``);
* backward of micro-batch i: receive the gradient from stage s+1; on the last stage the LM
  head's backward and its tensor AllReduce (Megatron's ``parallel_lm_logits``); the layers in
  reverse, each twice its forward's compute with the same two AllReduces; each gradient bucket
  (:mod:`.buckets`) whose layers are all done is queued for its exchange (``--overlap``:
  nonblocking, one bucket at a time in the order they became ready, as DDP runs them,
  progressed by ``Test`` while the compute goes on; on a communicator of their own) or after
  the backward (no overlap): ZeRO 0 and 1 in the step's last micro-batch only (the gradients
  accumulate: DDP's ``no_sync``), ZeRO 2 and 3 in every micro-batch (a reduce-scatter into the
  rank's gradient shard, as DeepSpeed does, so no rank holds more than its shard); send the
  gradient to stage s-1;
* after the schedule: wait for the buckets' exchanges: an AllReduce (ZeRO 0) or a
  reduce-scatter (ZeRO 1-3) per bucket in the data group; the optimizer's update of the
  rank's (shard of the) parameters; ZeRO 1 and 2 then allgather the updated parameters.

The compute is either ``device``: the time FLOPs / ``tflops`` passes without using the host CPU
(short sleeps, testing the in-flight requests in between: how an accelerator computes while the
host drives the network), or ``host``: NumPy matmuls of the layer's shape, really computed,
with the tests between them. The buffers have the model's sizes but not its values (zeros of
an integer type of ``param_bytes`` bytes, summed exactly: so a micro-batch's reduce-scatter
writes its shard rather than adding to it, which moves the same bytes); each pipeline message
carries its micro-batch's number so the receiver checks that every activation and gradient
arrived.

Bytes are counted per traffic class by a :class:`~distbench.comm.CountingComm` on each group;
:class:`~distbench.algorithms.parallel.traffic.RankPlan` gives the closed forms.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from distbench.algorithms.parallel.buckets import make_buckets
from distbench.algorithms.parallel.pipeline import schedule
from distbench.algorithms.parallel.traffic import RankPlan
from distbench.collectives import get_collective
from distbench.comm import CountingComm
from distbench.runtime import mpi

WORD = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}  # a parameter's bytes -> a type
UPDATE_FLOPS = 10.0  # per parameter of the shard: Adam's update
POLL_S = 50e-6       # the stand-in accelerator's compute is cut into sleeps of this much
TAG_ACT, TAG_GRAD = 0, 1  # a pipeline message's tag: 2 x micro-batch + direction


@dataclass(frozen=True)
class StepConfig:
    """How the step runs (the layout and the model are in the :class:`RankPlan`).

    Attributes:
        bucket_mb: DDP's bucket cap in MiB (25 in PyTorch).
        overlap: start each bucket's exchange as soon as its gradients are ready.
        compute: ``device`` (stand-in accelerator) or ``host`` (NumPy matmuls).
        tflops: the stand-in accelerator's speed in 1e12 FLOP/s (``device``).
        dp_algo, tp_algo: registered algorithms of the data-parallel collectives (AllReduce,
            reduce-scatter, allgather by that name) and of the tensor group's AllReduce.
    """

    bucket_mb: float = 25.0
    overlap: bool = True
    compute: str = "device"
    tflops: float = 100.0
    dp_algo: str = "native"
    tp_algo: str = "native"


@dataclass
class StepTimes:
    """One rank's seconds in one step, by where they went."""

    step: float = 0.0
    compute: float = 0.0
    pp_wait: float = 0.0
    tp: float = 0.0
    dp: float = 0.0
    gather: float = 0.0
    comm: float = 0.0  # the union of the spans in communication calls or with exchanges in flight
    bytes: dict = field(default_factory=dict)  # class -> point-to-point bytes this rank sent
    pp_wrong: int = 0


class Progress:
    """The data-parallel bucket exchanges of a step: run one at a time, in the order their
    buckets became ready (as DDP runs its buckets one after another on one stream), each
    started nonblocking and tested while the rank computes (:meth:`poll`).

    One at a time is what makes concurrent hand-written schedules safe: two in flight on one
    communicator would post the same (source, tag) pairs and match each other's messages.
    """

    def __init__(self):
        self.queue: deque = deque()  # starts of the ready exchanges not yet begun
        self.current: list | None = None  # [request, start time]
        self.spans: list = []    # (start, completion) of each exchange

    def add(self, start) -> None:
        """Queue an exchange: ``start()`` begins it and returns its request."""
        self.queue.append(start)
        self.poll()

    def _begin_next(self) -> bool:
        if not self.queue:
            return False
        self.current = [self.queue.popleft()(), time.perf_counter()]
        return True

    def _finish(self) -> None:
        self.spans.append((self.current[1], time.perf_counter()))
        self.current = None

    def poll(self) -> None:
        """Complete the exchange in flight if it is done, starting the next; never blocks."""
        while self.current is not None or self._begin_next():
            if not self.current[0].Test():
                return
            self._finish()

    def wait(self) -> None:
        """Complete every queued exchange (blocking)."""
        while self.current is not None or self._begin_next():
            self.current[0].Wait()
            self._finish()


class Compute:
    """The stand-in for a layer's compute (see the module docstring)."""

    def __init__(self, cfg: StepConfig, plan: RankPlan, progress: Progress):
        self.cfg, self.progress = cfg, progress
        m, tp = plan.model, plan.layout.tp
        if cfg.compute == "host":
            cols = max(1, m.hidden // tp)
            self.a = np.ones((m.tokens, m.hidden), dtype=np.float32)
            self.w = np.ones((m.hidden, cols), dtype=np.float32)
            self.c = np.empty((m.tokens, cols), dtype=np.float32)
            self.per_matmul = 2.0 * m.tokens * m.hidden * cols
        self.seconds = 0.0

    def run(self, flops: float) -> None:
        """Compute ``flops``, testing the exchanges in flight in between. Counted as compute:
        ``device``, the nominal FLOPs / tflops (the stand-in accelerator is done then; time
        the host spends past it, in tests or oversleeping, is the host's and shows up as
        exposed communication); ``host``, the matmuls' own time, the tests' left out."""
        t0 = time.perf_counter()
        if self.cfg.compute == "host":
            polled = 0.0
            for _ in range(max(0, round(flops / self.per_matmul))):
                np.matmul(self.a, self.w, out=self.c)
                t1 = time.perf_counter()
                self.progress.poll()
                polled += time.perf_counter() - t1
            self.seconds += time.perf_counter() - t0 - polled
            return
        nominal = flops / (self.cfg.tflops * 1e12)
        end = t0 + nominal
        while True:
            self.progress.poll()
            left = end - time.perf_counter()
            if left <= 0:
                break
            time.sleep(min(left, POLL_S))
        self.seconds += nominal


class Step:
    """One rank's training step, built once and run repeatedly (collective over ``comm``).

    Args:
        comm: the job's communicator (D T P ranks).
        plan: this rank's :class:`RankPlan` (model, layout, ZeRO stage, schedule).
        cfg: :class:`StepConfig`.

    Raises:
        UsageError: an algorithm name not registered for one of the collectives it must run.
    """

    def __init__(self, comm, plan: RankPlan, cfg: StepConfig):
        self.plan, self.cfg = plan, cfg
        lay, model = plan.layout, plan.model
        data, tensor, pipe = lay.groups(comm)
        self._raw = (data, tensor, pipe)
        self.data, self.tensor, self.pipe = (CountingComm(c) for c in self._raw)
        # the bucket exchanges on their own communicator (counted with the data group's), so
        # that ZeRO 3's blocking allgathers never match a bucket's messages
        self.buckets_comm = self.data.Dup()
        self.word = WORD[model.param_bytes]
        self.D, self.T, self.P = lay.dp, lay.tp, lay.pp
        self.layers = plan.layer_elements()
        self.buckets = make_buckets(self.layers, plan.bucket_cap(cfg.bucket_mb))
        counts = [_multiple(b.count, self.D) for b in self.buckets]
        self.grad = np.zeros(sum(counts), dtype=self.word)
        self.views = _views(self.grad, counts)
        self.sums = _views(np.zeros_like(self.grad), counts)  # ZeRO 0: the AllReduce's output
        self.shards = [np.zeros(c // self.D, dtype=self.word) for c in counts]
        self.act = np.zeros(model.activation_elements(), dtype=self.word)
        self.act_out = np.zeros_like(self.act)
        # one send buffer per micro-batch and direction: an Isend's buffer stays untouched
        self.pp_out = {(tag, mb): np.zeros_like(self.act) for tag in (TAG_ACT, TAG_GRAD)
                       for mb in range(model.micro_batches)}
        self.pp_in = np.zeros_like(self.act)
        lay_counts = [_multiple(n, self.D) for n in self.layers]
        self.full = np.zeros(max(lay_counts, default=1), dtype=self.word)
        self.part = np.zeros(max(lay_counts, default=1) // self.D or 1, dtype=self.word)
        self.lay_counts = lay_counts
        self.trace: list | None = None  # set to a list to record the step's ops (a trace)
        self._bind(cfg)

    def _bind(self, cfg: StepConfig) -> None:
        ar = get_collective("allreduce").registry
        self.tp_allreduce = ar.bind(cfg.tp_algo)
        if self.plan.zero == 0:
            self.dp_start = ar.bind_start(cfg.dp_algo)
        else:
            self.dp_start = get_collective("reduce-scatter").registry.bind_start(cfg.dp_algo)
        self.allgather = get_collective("allgather").registry.bind(cfg.dp_algo)

    def free(self) -> None:
        """Free the group communicators (collective)."""
        self.buckets_comm.Free()
        for c in self._raw:
            c.Free()

    # ------------------------------------------------------------------ the step
    def run(self) -> StepTimes:
        """Run one step; returns this rank's :class:`StepTimes` (bytes by class)."""
        for c in (self.data, self.tensor, self.pipe):
            c.reset()
        out, progress = StepTimes(), Progress()
        self._spans = []
        compute = Compute(self.cfg, self.plan, progress)
        plan, model = self.plan, self.plan.model
        s, m = plan.stage, model.micro_batches
        layer_f = model.layer_forward_flops() / self.T
        sends, started = [], set()
        every = plan.zero >= 2  # ZeRO 2 and 3: every micro-batch's gradients reduce-scattered
        t_step = time.perf_counter()
        for kind, mb in schedule(plan.schedule, s, self.P, m):
            if kind == "F":
                self._forward(compute, layer_f, mb, out)
                sends.append(self._send(mb, s + 1, TAG_ACT))
                continue
            self._recv(mb, s + 1, TAG_GRAD, out)
            if s == self.P - 1:
                compute.run(2 * model.logit_forward_flops() / self.T)
                self._tp_allreduce(out)  # the LM head's input gradient (parallel_lm_logits)
            exchange = mb == m - 1 or every
            if every:
                started = set()  # this micro-batch's buckets
            for j in reversed(range(len(self.layers))):
                self._gather(j, out)  # ZeRO 3 gathers the embedding too, as DeepSpeed does
                if j > 0 or not plan.has_embedding:  # the lookup's backward is local
                    self._layer(compute, 2 * layer_f, out)
                if exchange and self.cfg.overlap:
                    self._start_ready(j, started, progress)
            if every and mb < m - 1 and not self.cfg.overlap:
                self._exchange_now(started, progress, out)
            sends.append(self._send(mb, s - 1, TAG_GRAD))
        self._exchange_now(started, progress, out)  # no overlap: every bucket, now
        compute.run(UPDATE_FLOPS * self.grad.shape[0] / (self.D if plan.zero else 1))
        if plan.zero in (1, 2) and self.D > 1:
            t0 = time.perf_counter()
            for shard, view in zip(self.shards, self.views, strict=True):
                self._log("allgather", "dp", shard.shape[0], view.shape[0])
                self.allgather(self.data, shard, view)
            out.dp += self._span(t0)
        mpi().Request.Waitall([r for r in sends if r is not None])
        out.step = time.perf_counter() - t_step
        out.compute = compute.seconds
        out.comm = union_seconds(self._spans + progress.spans)
        out.bytes = {name: c.bytes_sent
                     for name, c in (("dp", self.data), ("tp", self.tensor), ("pp", self.pipe))}
        return out

    def _forward(self, compute: Compute, layer_f: float, mb: int, out: StepTimes) -> None:
        """Micro-batch ``mb``'s forward on this stage (the activation received first)."""
        plan = self.plan
        self._recv(mb, plan.stage - 1, TAG_ACT, out)
        for j in range(len(self.layers)):
            self._gather(j, out)
            if j == 0 and plan.has_embedding:
                self._tp_allreduce(out)  # the vocabulary-parallel embedding's output
            else:
                self._layer(compute, layer_f, out)
        if plan.stage == self.P - 1:
            compute.run(plan.model.logit_forward_flops() / self.T)

    def _exchange_now(self, started: set, progress: Progress, out: StepTimes) -> None:
        """No overlap: every bucket not yet started, exchanged now (blocking)."""
        t0 = time.perf_counter()
        self._start_ready(-1, started, progress)
        progress.wait()
        out.dp += self._span(t0)

    def _span(self, t0: float) -> float:
        """Seconds since ``t0`` spent in a communication call, kept for :attr:`StepTimes.comm`."""
        t1 = time.perf_counter()
        self._spans.append((t0, t1))
        return t1 - t0

    def _layer(self, compute: Compute, flops: float, out: StepTimes) -> None:
        """Half the layer, the tensor group's AllReduce, the other half, another one."""
        for _ in range(2):
            compute.run(flops / 2)
            self._tp_allreduce(out)

    def _log(self, collective: str, group: str, count: int, out_count: int | None = None,
             peer: int = 0) -> None:
        """One op of the step in :attr:`trace` (when recording): its collective, group
        (``dp``, ``tp``, ``pp``), element counts of the parameter word and the peer."""
        if self.trace is not None:
            self.trace.append((collective, group, int(count),
                               int(count if out_count is None else out_count), int(peer)))

    def _tp_allreduce(self, out: StepTimes) -> None:
        """An AllReduce of the b S H activation in the tensor group (T > 1)."""
        if self.T > 1:
            self._log("allreduce", "tp", self.act.shape[0])
            t0 = time.perf_counter()
            self.tp_allreduce(self.tensor, self.act, self.act_out)
            out.tp += self._span(t0)

    def _gather(self, j: int, out: StepTimes) -> None:
        """ZeRO 3: the layer's parameters from every data-parallel rank's shard."""
        if self.plan.zero != 3 or self.D == 1:
            return
        t0 = time.perf_counter()
        n = self.lay_counts[j]
        self._log("allgather", "dp", n // self.D, n)
        self.allgather(self.data, self.part[: n // self.D], self.full[:n])
        out.gather += self._span(t0)

    def _start_ready(self, layer: int, started: set, progress: Progress) -> None:
        """Start the exchange of every bucket ready once ``layer``'s backward is done (-1:
        every bucket not yet started)."""
        for k, b in enumerate(self.buckets):
            if k in started or (layer >= 0 and b.ready_after != layer):
                continue
            started.add(k)
            if self.D == 1:
                continue
            recv = self.sums[k] if self.plan.zero == 0 else self.shards[k]
            self._log("allreduce" if self.plan.zero == 0 else "reduce-scatter", "dp",
                      self.views[k].shape[0], recv.shape[0])
            progress.add(lambda v=self.views[k], r=recv: self.dp_start(self.buckets_comm, v, r))

    def _recv(self, mb: int, peer: int, tag: int, out: StepTimes) -> None:
        if not 0 <= peer < self.P:
            return
        t0 = time.perf_counter()
        self._log("recv", "pp", self.pp_in.shape[0], peer=peer)
        self.pipe.Recv(self.pp_in, peer, 2 * mb + tag)
        out.pp_wait += self._span(t0)
        if self.pp_in.size and int(self.pp_in[0]) != (mb % 100) + 1:
            out.pp_wrong += 1

    def _send(self, mb: int, peer: int, tag: int):
        if not 0 <= peer < self.P:
            return None
        buf = self.pp_out[tag, mb]
        if buf.size:
            buf[0] = (mb % 100) + 1  # the receiver checks which micro-batch arrived
        self._log("send", "pp", buf.shape[0], peer=peer)
        return self.pipe.Isend(buf, peer, 2 * mb + tag)


def union_seconds(spans) -> float:
    """Seconds covered by the union of the (start, end) intervals ``spans`` (overlaps counted
    once: a bucket in flight during a blocking tensor AllReduce is one span of time)."""
    total, end = 0.0, -math.inf
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def host_bytes(plan: RankPlan, bucket_mb: float) -> int:
    """Bytes of the buffers a :class:`Step` of ``plan`` allocates on its rank: the gradient
    buffer and the AllReduce's output (each padded per bucket to a multiple of D), the shards,
    3 + 2m activations (work, AllReduce output, pipeline input; a send buffer per micro-batch
    and direction) and ZeRO 3's gathered layer and its shard (for the pre-flight check)."""
    model, D = plan.model, plan.layout.dp
    b = model.param_bytes
    layers = plan.layer_elements()
    grad = sum(_multiple(k.count, D) for k in make_buckets(layers, plan.bucket_cap(bucket_mb)))
    largest = max([_multiple(n, D) for n in layers], default=1)
    acts = (3 + 2 * model.micro_batches) * model.activation_elements()
    return b * (2 * grad + grad // D + acts + largest + (largest // D or 1))


def _multiple(n: int, q: int) -> int:
    """``n`` rounded up to a multiple of ``q`` (a reduce-scatter splits into q equal blocks)."""
    return -(-n // q) * q


def _views(buf: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    out, lo = [], 0
    for c in counts:
        out.append(buf[lo: lo + c])
        lo += c
    return out


__all__ = ["Compute", "Progress", "Step", "StepConfig", "StepTimes", "host_bytes"]
