"""SGD pieces that need no ranks: schedules, configuration checks, the sampler, a one-rank
run, and the command's bad inputs end to end (one line, exit 2)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from distbench.algorithms.sgd import Problem, Sampler, SGDConfig, run_sgd, steps_for_epochs
from distbench.algorithms.sgd.datasets import load_dataset
from distbench.algorithms.sgd.schedules import LRSchedule
from distbench.errors import UsageError


@pytest.fixture(scope="module")
def problem():
    return Problem(load_dataset("digits", 0), "softmax", dtype="float64")


def test_schedules():
    assert LRSchedule(0.5)(0) == LRSchedule(0.5)(10**6) == 0.5
    step = LRSchedule(1.0, "step", decay_factor=0.5, decay_every=10)
    assert [step(t) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    inv = LRSchedule(1.0, "inverse", t0=4)
    assert [inv(t) for t in (0, 4, 12)] == [1.0, 0.5, 0.25]
    # Goyal et al.: from eta to k*eta over the warm-up, then the scaled rate
    goyal = LRSchedule(0.1, scale=4, warmup=10)
    assert goyal(0) == pytest.approx(0.1) and goyal(5) == pytest.approx(0.25)
    assert goyal(10) == pytest.approx(0.4) and goyal(1000) == pytest.approx(0.4)
    ramp = LRSchedule(0.2, warmup=4)
    assert [ramp(t) for t in range(5)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    decayed_after_warmup = LRSchedule(1.0, "step", decay_factor=0.1, decay_every=5, warmup=5)
    assert decayed_after_warmup(9) == 1.0 and decayed_after_warmup(10) == pytest.approx(0.1)
    for bad in ({"lr": 0}, {"schedule": "cosine"}, {"decay_factor": 1.5}, {"warmup": -1},
                {"decay_every": 0}, {"t0": 0}):
        with pytest.raises(UsageError):
            LRSchedule(**bad)


def test_linear_scaling_per_mode():
    sched = LRSchedule(0.1)
    assert SGDConfig("sync", schedule=sched, scale_lr=True).lr(4).peak == pytest.approx(0.4)
    assert SGDConfig("local", schedule=sched, scale_lr=True).lr(4).peak == pytest.approx(0.4)
    assert SGDConfig("async", schedule=sched, scale_lr=True).lr(4).peak == pytest.approx(0.1)
    assert SGDConfig("sync", schedule=sched).lr(4).peak == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs,size,needle", [
    ({"mode": "hogwild"}, 2, "unknown mode"),
    ({"mode": "local", "local_steps": 0}, 2, "--local-steps"),
    ({"mode": "async"}, 1, "at least 2 ranks"),
    ({"steps": 0}, 2, "--steps"),
    ({"straggler": {3: 5.0}}, 2, "straggler"),
    ({"mode": "async", "max_staleness": -1}, 3, "max-staleness"),
    ({"mode": "async", "policy": "wait"}, 3, "policy"),
])
def test_config_validation(kwargs, size, needle):
    with pytest.raises(UsageError, match=needle):
        SGDConfig(**kwargs).validate(size)


def test_steps_for_epochs():
    assert steps_for_epochs(1, 1438, 32, 4) == math.ceil(1438 / 128)
    assert steps_for_epochs(2.5, 1000, 10, 1) == 250


def test_sampler_epochs_cover_the_shard_without_repeats(problem):
    s = Sampler(problem, worker=1, workers=3, batch_size=50, seed=4)
    X = problem.X_train
    seen = []
    for _ in range(s.per_epoch):
        Xb, _ = s.next()
        # recover row ids by matching rows (features of digits rows are distinct enough)
        seen.extend(int(np.argmin(((X - row) ** 2).sum(axis=1))) for row in Xb)
    assert len(set(seen)) == len(seen) == s.per_epoch * 50
    assert set(seen) <= set(s.indices.tolist())
    again = Sampler(problem, worker=1, workers=3, batch_size=50, seed=4)
    np.testing.assert_array_equal(again.next()[1], Sampler(problem, 1, 3, 50, 4).next()[1])
    with pytest.raises(UsageError, match="exceeds"):
        Sampler(problem, 0, 2, batch_size=10_000, seed=0)


def test_one_rank_sync_is_plain_minibatch_sgd(problem):
    from mpi4py import MPI

    cfg = SGDConfig("sync", steps=7, batch_size=16, schedule=LRSchedule(0.3), eval_every=3)
    res = run_sgd(MPI.COMM_SELF, problem, cfg)
    sampler = Sampler(problem, 0, 1, 16, cfg.seed)
    theta = problem.init_params(cfg.seed)
    g = np.empty_like(theta)
    for _ in range(7):
        problem.model.gradient(theta, *sampler.next(), g)
        theta -= 0.3 * g
    # equal up to rounding: the run folds -lr into the backward pass instead of a last pass
    np.testing.assert_allclose(res.theta, theta, rtol=0, atol=1e-13)
    assert np.abs(theta - problem.init_params(0)).max() > 0.01
    assert [r["step"] for r in res.records] == [0, 3, 6, 7]
    assert res.rounds == 7 and res.bytes_per_rank == [7 * theta.nbytes]  # native: the buffer
    assert res.records[-1]["gap"] > 0 and res.records[0]["train_loss"] == pytest.approx(
        math.log(10))


# ----------------------------------------------------------------- the command end to end

def _mpirun():
    return str(Path(sys.executable).with_name("mpirun"))


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    (["--dataset", "{bad}"], "not a numeric CSV"),
    (["--mode", "sync,hogwild"], "unknown mode 'hogwild'"),
    (["--mode", "local", "--local-steps", "0"], "'--local-steps': '0' is not in [1,"),
    (["--mode", "async", "--dataset", "{good}"], "async mode needs at least 2 ranks"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_text("1,2,0\n3,oops,1\n")
    # a small valid file (no scikit-learn import: the check that needs MPI comes quickly)
    good.write_text("".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="^ofi")
    cmd = [_mpirun(), "-n", "1", "--oversubscribe", sys.executable, "-m", "distbench", "sgd",
           "--steps", "2", "--quiet", "--output", str(tmp_path / "out"),
           *[a.format(bad=bad, good=good) for a in args]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], lines
    assert not (tmp_path / "out").exists()  # nothing ran


def test_command_parses_into_a_job():
    from distbench.benchmarks.sgd import sgd_command
    from distbench.command import Job

    job = sgd_command.main(["--mode", "sync,async", "--straggler", "1:5,2:0.5", "--straggler",
                            "3:1", "--compress", "topk", "--no-error-feedback", "--steps", "9"],
                           standalone_mode=False)
    assert isinstance(job, Job) and job.name == "sgd"
    cfg = job.config
    assert cfg["modes"] == ["sync", "async"] and cfg["steps"] == 9
    assert cfg["straggler"] == {"1": 5.0, "2": 0.5, "3": 1.0}
    assert cfg["compressors"] == ["topk"] and cfg["error_feedback"] is False
    for bad, needle in ((["--straggler", "x:1"], "RANK:MS"), (["--epochs", "2", "--steps", "3"],
                        "not both"), (["--compress", "zip"], "unknown compression"),
                        (["--density", "0.5"], "--density do(es) nothing with --compress none")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            sgd_command.main(bad, standalone_mode=False)
    with pytest.raises(click.BadParameter, match=re.escape("'0' is not in (0, 1]")):
        sgd_command.main(["--compress", "topk", "--density", "0"], standalone_mode=False)


def test_epochs_alone_set_the_steps(tmp_path):
    """--epochs E without --steps: T = ceil(E n / (B p)) updates (it once read as both)."""
    import json

    from launch import mpirun

    proc = mpirun(2, ["sgd", "--mode", "sync", "--epochs", "2", "--batch-size", "32", "--json",
                      "--quiet", "--output", str(tmp_path)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = next(r for r in json.loads(proc.stdout) if r.get("kind") == "summary")
    assert summary["steps"] == math.ceil(2 * 1438 / (32 * 2))
