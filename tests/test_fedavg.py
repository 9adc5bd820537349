"""Federated learning on one process (MPI.COMM_SELF): the equivalences of the algorithms, the
partitions, the round plan, bytes against the formula, DP clipping, seeds, and the command's
bad inputs end to end (one line, exit 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from launch import serial, usage_error_line

from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.compression.spec import Compression
from distbench.algorithms.federated import (
    ALGORITHMS,
    FedConfig,
    FedDiverged,
    label_counts,
    make_partition,
    plan_round,
    run_federated,
)
from distbench.algorithms.federated.client import clip
from distbench.algorithms.sgd import Problem
from distbench.comm import CommProxy
from distbench.errors import UsageError


def _self():
    from distbench.runtime import mpi, world

    world()  # initializes MPI when a CLI test before this one deferred it
    return mpi().COMM_SELF


@pytest.fixture(scope="module")
def problem(digits):
    return Problem(digits, "softmax", dtype="float64", with_optimum=False)


def _compression(kwargs: dict) -> dict:
    """``compress=``, ``density=``, ``bits=`` keywords as the config's compression spec."""
    method = kwargs.pop("compress", "none")
    given = {k: kwargs.pop(k) for k in ("density", "bits") if k in kwargs}
    takes = {o.name for o in COMPRESSORS.spec(method).options}  # those the method takes
    options = {k: v for k, v in given.items() if k in takes}
    return {**kwargs, "compression": Compression(method, options=options)}


def _run(problem, parts, name, comm=None, **kwargs):
    options = {k: kwargs.pop(k) for k in ("mu", "server_lr", "server_momentum", "feddyn_alpha")
               if k in kwargs}
    cfg = FedConfig(**_compression({"clients": len(parts), "fraction": 1.0, "local_epochs": 1,
                                    "local_batch": 0, **kwargs}))  # every client, FedSGD's
    # work unless told
    return run_federated(comm or _self(), problem, parts, ALGORITHMS.create(name, **options),
                         cfg)


# ----------------------------------------------------------------- equivalences

@pytest.mark.parametrize("name,work", [("fedavg", {"local_epochs": 1, "local_batch": 0}),
                                       ("fedsgd", {"local_epochs": 3, "local_batch": 7})])
def test_fedsgd_with_every_client_is_full_batch_gd_on_the_weighted_objective(
        problem, digits, name, work):
    """E=1, B=0, all clients: x <- x - lr sum_k n_k/n grad f_k(x) = x - lr grad f(x)."""
    parts = make_partition("size-skew", digits.y_train, 9, 0, power=2.0)
    sizes = np.array([p.size for p in parts])
    assert sizes.max() >= 5 * sizes.min()  # unequal clients: the weights matter
    R, lr = 12, 0.5
    res = _run(problem, parts, name, rounds=R, fraction=1.0, lr=lr, **work)
    model = problem.model
    x = problem.init_params(0)
    g = np.empty_like(x)
    plain = x.copy()  # the same, averaging the clients' gradients with equal weights
    gk = np.empty_like(x)
    for _ in range(R):
        model.gradient(x, problem.X_train, problem.y_train, g)
        x -= lr * g
        mean = np.zeros_like(x)
        for p in parts:
            model.gradient(plain, problem.X_train[p], problem.y_train[p], gk)
            mean += gk / len(parts)
        plain -= lr * mean
    np.testing.assert_allclose(res.theta, x, rtol=0, atol=1e-12)
    assert np.abs(x - problem.init_params(0)).max() > 0.05  # it moved
    assert np.abs(plain - x).max() > 1e-4  # equal weights are another algorithm
    assert [r["round"] for r in res.records] == list(range(R + 1))
    assert all(r["answered"] == r["sampled"] == 9 for r in res.records[1:])


def test_fedprox_with_mu_0_is_fedavg(problem, digits):
    parts = make_partition("dirichlet", digits.y_train, 12, 1, alpha=0.3)
    common = {"rounds": 5, "fraction": 0.5, "local_epochs": 2, "local_batch": 8, "lr": 0.2}
    fedavg = _run(problem, parts, "fedavg", **common)
    prox0 = _run(problem, parts, "fedprox", mu=0.0, **common)
    prox = _run(problem, parts, "fedprox", mu=1.0, **common)
    np.testing.assert_array_equal(prox0.theta, fedavg.theta)
    assert np.abs(prox.theta - fedavg.theta).max() > 1e-4
    # the proximal term keeps the client models nearer x_t: smaller steps of the average
    start = problem.init_params(0)
    assert np.linalg.norm(prox.theta - start) < np.linalg.norm(fedavg.theta - start)


def test_fedavgm_with_momentum_0_and_rate_1_is_fedavg(problem, digits):
    parts = make_partition("iid", digits.y_train, 10, 2)
    common = {"rounds": 6, "fraction": 0.3, "local_epochs": 1, "local_batch": 16, "lr": 0.1}
    fedavg = _run(problem, parts, "fedavg", **common)
    m0 = _run(problem, parts, "fedavgm", server_momentum=0.0, server_lr=1.0, **common)
    m9 = _run(problem, parts, "fedavgm", server_momentum=0.9, **common)
    np.testing.assert_array_equal(m0.theta, fedavg.theta)
    assert np.abs(m9.theta - fedavg.theta).max() > 1e-4


def test_both_dirichlet_forms_against_their_definitions(digits):
    """hsu: q_k ~ Dir(A p), the labels' frequencies p; flwr: q_k ~ Dir(A 1). With a huge A a
    client takes the mix its concentration's mean names: p under hsu, equal shares under flwr
    (until the rare classes run out); on the digits at A = 0.1 flwr's clients hold more
    labels than hsu's (Dir(A) is Dir(10 A/C), less concentrated)."""
    from distbench.algorithms.federated.partitions import concentration

    prior = np.array([0.8, 0.1, 0.1, 0.0])
    np.testing.assert_allclose(concentration(2.0, prior, "hsu"), [1.6, 0.2, 0.2, 0.0])
    np.testing.assert_allclose(concentration(2.0, prior, "flwr"), [2.0, 2.0, 2.0, 0.0])
    labels = np.repeat([0, 1, 2], [2400, 300, 300])
    for form, want in (("hsu", [0.8, 0.1, 0.1]), ("flwr", [1 / 3, 1 / 3, 1 / 3])):
        first = make_partition("dirichlet", labels, 10, 0, alpha=1e4, dirichlet_form=form)[0]
        share = np.bincount(labels[first], minlength=3) / first.size
        np.testing.assert_allclose(share, want, atol=0.05)
    counts = {form: (label_counts(digits.y_train, make_partition(
        "dirichlet", digits.y_train, 100, 0, alpha=0.1, dirichlet_form=form), 10) > 0).sum(1)
        .mean() for form in ("hsu", "flwr")}
    assert counts["hsu"] < 1.6 < 2.2 < counts["flwr"], counts


def test_size_skew_stays_finite_at_large_powers(digits):
    parts = make_partition("size-skew", digits.y_train, 50, 0, power=100)
    assert sum(p.size for p in parts) == digits.n_train and min(p.size for p in parts) >= 1


def test_feddyn_with_alpha_0_is_fedavg_bit_for_bit(problem, digits):
    """FedDyn is a strategy added in one module; with alpha = 0 its regularizer and both
    gradient memories vanish and it is FedAvg, bit for bit, under sampling and dropouts."""
    parts = make_partition("dirichlet", digits.y_train, 12, 0, alpha=0.3)
    common = {"rounds": 4, "fraction": 0.5, "dropout": 0.2, "local_epochs": 2,
              "local_batch": 16, "lr": 0.2}
    fedavg = _run(problem, parts, "fedavg", **common)
    dyn0 = _run(problem, parts, "feddyn", feddyn_alpha=0.0, **common)
    np.testing.assert_array_equal(dyn0.theta, fedavg.theta)
    dyn = _run(problem, parts, "feddyn", feddyn_alpha=0.05, **common)
    assert not np.array_equal(dyn.theta, fedavg.theta)
    losses = [r["train_loss"] for r in dyn.records]
    assert losses[-1] < 0.6 * losses[0]  # it trains


def test_feddyn_server_state_follows_the_paper(problem, digits):
    """One round with every client answering: h = -alpha Delta (|P| = M), and the new model is
    x + Delta - h / alpha = x + 2 Delta (Acar et al. 2021, Algorithm 1)."""
    parts = make_partition("iid", digits.y_train, 4, 0)
    strategy = ALGORITHMS.create("feddyn", feddyn_alpha=0.5)
    cfg = FedConfig(clients=4, fraction=1.0, rounds=1, local_epochs=1, local_batch=32, lr=0.1)
    one = run_federated(_self(), problem, parts, strategy, cfg)
    delta = (one.theta - problem.init_params(0)) / 2  # the clients' average update
    np.testing.assert_allclose(strategy.h, -0.5 * delta, rtol=1e-12)
    assert np.linalg.norm(delta) > 0


def test_scaffold_with_one_client_is_local_sgd(problem):
    """One client: c = c_1, the correction c - c_1 vanishes and every round continues plain
    minibatch SGD on the client's data (a new permutation per epoch)."""
    n = problem.dataset.n_train
    parts = [np.arange(n, dtype=np.int64)]
    R, E, B, lr, seed = 4, 2, 64, 0.3, 5
    res = _run(problem, parts, "scaffold", rounds=R, local_epochs=E, local_batch=B, lr=lr,
               seed=seed)
    x = problem.init_params(seed)
    g = np.empty_like(x)
    for t in range(1, R + 1):
        rng = np.random.default_rng([seed, 0, t])
        for _ in range(E):
            order = rng.permutation(n)
            for a in range(0, n, B):
                idx = order[a:a + B]
                problem.model.gradient(x, problem.X_train[idx], problem.y_train[idx], g)
                x -= lr * g
    np.testing.assert_allclose(res.theta, x, rtol=0, atol=1e-12)
    assert np.abs(x - problem.init_params(seed)).max() > 0.1
    # SCAFFOLD's uploads and downloads carry the control variate too: 2 vectors each way
    assert res.records[-1]["bytes_up"] == res.records[-1]["bytes_down"] == R * 2 * x.nbytes


def test_scaffold_corrects_client_drift_under_label_skew(problem, digits):
    """With one label per client and many local steps FedAvg drifts; SCAFFOLD ends lower."""
    parts = make_partition("shards", digits.y_train, 10, 0, classes_per_client=1)
    common = {"rounds": 15, "fraction": 1.0, "local_epochs": 5, "local_batch": 10, "lr": 0.05}
    fedavg = _run(problem, parts, "fedavg", **common)
    scaffold = _run(problem, parts, "scaffold", **common)
    assert scaffold.records[-1]["train_loss"] < fedavg.records[-1]["train_loss"]


# ----------------------------------------------------------------- partitions

PARTS = [("iid", {}), ("dirichlet", {"alpha": 0.1}), ("dirichlet", {"alpha": 5.0}),
         ("shards", {"classes_per_client": 2}), ("shards", {"classes_per_client": 3}),
         ("size-skew", {"power": 1.5})]


@pytest.mark.parametrize("name,options", PARTS)
def test_every_sample_in_exactly_one_client(digits, name, options):
    y = digits.y_train
    parts = make_partition(name, y, 37, 3, **options)
    assert len(parts) == 37 and all(p.size >= 1 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(y.size))
    again = make_partition(name, y, 37, 3, **options)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))  # seeded
    counts = label_counts(y, parts, digits.n_classes)
    assert counts.sum() == y.size and (counts.sum(axis=0) == np.bincount(y)).all()


def _skew(y, parts, classes) -> float:
    """Mean total-variation distance of the clients' label mixes from the global one."""
    counts = label_counts(y, parts, classes).astype(float)
    mix = counts / counts.sum(axis=1, keepdims=True)
    return float(0.5 * np.abs(mix - np.bincount(y) / y.size).sum(axis=1).mean())


def test_dirichlet_approaches_iid_as_alpha_grows(digits):
    y, c = digits.y_train, digits.n_classes
    skews = [_skew(y, make_partition("dirichlet", y, 20, 0, alpha=a), c)
             for a in (0.01, 0.1, 1.0, 10.0, 1e6)]
    assert skews == sorted(skews, reverse=True) and skews[0] > 0.8
    iid = _skew(y, make_partition("iid", y, 20, 0), c)
    assert skews[-1] <= 1.3 * iid  # the sampling noise of 72 samples per client, no more
    sizes = [p.size for p in make_partition("dirichlet", y, 20, 0, alpha=0.01)]
    assert max(sizes) - min(sizes) <= 1  # label skew only, equal sizes


@pytest.mark.parametrize("c", [1, 2, 3, 10])
def test_shards_give_each_client_exactly_c_labels(digits, c):
    counts = label_counts(digits.y_train, make_partition(
        "shards", digits.y_train, 25, 4, classes_per_client=c), digits.n_classes)
    assert ((counts > 0).sum(axis=1) == c).all()


def test_size_skew_follows_the_power_law(digits):
    y = digits.y_train
    sizes = np.sort([p.size for p in make_partition("size-skew", y, 10, 0, power=1.0)])
    np.testing.assert_allclose(sizes, 1 + (y.size - 10) * np.arange(1, 11) / 55, atol=1)
    flat = [p.size for p in make_partition("size-skew", y, 10, 0, power=0.0)]
    assert max(flat) - min(flat) <= 1


@pytest.mark.parametrize("name,options,needle", [
    ("shards", {"classes_per_client": 11}, "exceeds the 10 classes"),
    ("shards", {"classes_per_client": 0}, r"--classes-per-client must be in \[1, 1048576\]"),
    ("shards", {"classes_per_client": 1, "clients": 4}, "a class would have no client"),
    ("dirichlet", {"alpha": 0.0}, r"--alpha must be in \(0, 1000000\]"),
    ("dirichlet", {"alpha": -1.0}, r"--alpha must be in \(0, 1000000\]"),
    ("dirichlet", {"alpha": math.inf}, r"--alpha must be in \(0, 1000000\]"),
    ("dirichlet", {"dirichlet_form": "x"}, "--dirichlet-form must be one of hsu, flwr"),
    ("size-skew", {"power": math.nan}, r"--power must be in \[0, 100\]"),
    ("iid", {"clients": 0}, "--clients must be >= 1"),
    ("iid", {"clients": 5000}, "exceeds the 1438 training samples"),
    ("zipf", {}, "unknown partition 'zipf'"),
])
def test_partition_errors(digits, name, options, needle):
    clients = options.pop("clients", 20)
    with pytest.raises(UsageError, match=needle):
        make_partition(name, digits.y_train, clients, 0, **options)


# ----------------------------------------------------------------- rounds, bytes, DP, seeds

def test_round_plan_is_seeded_and_counts_dropouts_and_slow_clients():
    cfg = FedConfig(clients=50, fraction=0.2, dropout=0.3, slow_fraction=0.5, seed=7)
    plan = plan_round(cfg, 3)
    assert plan.sampled.size == 10 and plan.answered.size == 7
    assert set(plan.answered) < set(plan.sampled) and len(plan.slow) == 5
    assert set(plan.slow) <= set(plan.sampled) and all(0 < u <= 1 for u in plan.slow.values())
    again = plan_round(cfg, 3)
    assert np.array_equal(plan.sampled, again.sampled) and plan.slow == again.slow
    assert not np.array_equal(plan.sampled, plan_round(cfg, 4).sampled)
    # 0.29 x 100 clients drop 29, and never all of them
    assert plan_round(FedConfig(clients=100, fraction=1.0, dropout=0.29), 1).answered.size == 71
    assert plan_round(FedConfig(clients=3, fraction=0.5, dropout=0.99), 1).answered.size == 1
    k = next(iter(plan.slow))
    assert 1 <= plan.cap(k, 10) <= 10 and plan.cap(-1, 10) is None


@pytest.mark.parametrize("name,compress", [("fedavg", "none"), ("fedavg", "qsgd"),
                                           ("fedadam", "topk"), ("scaffold", "randk"),
                                           ("fedprox", "sign"), ("fedavg", "fp16")])
def test_bytes_up_and_down_equal_the_formula(problem, digits, name, compress):
    parts = make_partition("iid", digits.y_train, 20, 0)
    cfg = FedConfig(**_compression(dict(rounds=4, clients=20, fraction=0.3, dropout=0.34,
                                        local_epochs=1, local_batch=32, compress=compress,
                                        density=0.05, bits=4)))
    res = run_federated(_self(), problem, parts, ALGORITHMS.create(name), cfg)
    d = problem.model.n_params
    s = 2 if name == "scaffold" else 1
    wire = make_compressor(compress, density=0.05, bits=4).compress(np.zeros(d)) if \
        compress != "none" else None
    up = d * 8 if wire is None else make_compressor(compress, density=0.05, bits=4).wire_bytes(
        wire)
    recs = res.records
    for prev, rec in zip(recs, recs[1:], strict=False):
        assert (rec["sampled"], rec["answered"]) == (6, 4)  # ceil(0.3 x 20), floor(0.34 x 6)
        assert rec["bytes_down"] - prev["bytes_down"] == 6 * s * d * 8
        assert rec["bytes_up"] - prev["bytes_up"] == 4 * s * up
    assert res.bytes_up_per_rank == [recs[-1]["bytes_up"]]
    assert res.bytes_down_per_rank == [recs[-1]["bytes_down"]]
    if compress in ("topk", "randk", "sign", "qsgd"):
        assert up < d * 8 / 4  # what compressed uploads save
    assert all(math.isfinite(r["train_loss"]) for r in recs)


class _Spy(CommProxy):
    """Keeps a copy of every buffer sent through it (each derived communicator its own)."""

    def __init__(self, comm):
        super().__init__(comm)
        self.sent, self.children = [], []

    def _child(self, sub):
        child = _Spy(sub)
        self.children.append(child)
        return child

    def Isend(self, buf, dest, tag=0):
        self.sent.append(np.array(buf, copy=True))
        return self.comm.Isend(buf, dest, tag)

    # what the round loop also calls: let through, unrecorded (a proxy lists what it handles)
    def Recv(self, buf, source=-1, tag=-1, status=None):
        return self.comm.Recv(buf, source, tag, status)

    def Bcast(self, buf, root=0):
        return self.comm.Bcast(buf, root)

    def Allgather(self, sendbuf, recvbuf):
        return self.comm.Allgather(sendbuf, recvbuf)


def test_dp_clipping_bounds_every_update(problem, digits):
    parts = make_partition("iid", digits.y_train, 10, 0)
    S = 0.05
    spy = _Spy(_self())
    cfg = FedConfig(rounds=3, clients=10, fraction=0.5, local_epochs=2, local_batch=8,
                    lr=0.5, dp_clip=S, dp_noise=0.0)
    res = run_federated(spy, problem, parts, ALGORITHMS.create("fedavg"), cfg)
    down, up = spy.children  # the two directions' communicators, in that order
    norms = [np.linalg.norm(b.view(np.float64)) for b in up.sent]
    assert len(norms) == 3 * 5 and max(norms) <= S * (1 + 1e-12)
    assert min(norms) >= S * (1 - 1e-9)  # they were longer: every one was clipped
    assert len(down.sent) == 15
    # no noise: the round's move is a mean of clipped updates, at most S long
    free = run_federated(_self(), problem, parts, ALGORITHMS.create("fedavg"),
                         FedConfig(**{**cfg.__dict__, "dp_clip": None}))
    assert np.linalg.norm(res.theta - problem.init_params(0)) <= 3 * S * (1 + 1e-12)
    assert np.linalg.norm(free.theta - problem.init_params(0)) > 3 * S
    noisy = run_federated(_self(), problem, parts, ALGORITHMS.create("fedavg"),
                          FedConfig(**{**cfg.__dict__, "dp_noise": 1.0}))
    assert np.linalg.norm(noisy.theta - res.theta) > S  # the noise, std S per coordinate


def test_clip_scales_only_longer_vectors():
    v = np.array([3.0, 4.0])
    assert clip(v, 10.0) == 5.0 and v.tolist() == [3.0, 4.0]
    assert clip(v, 1.0) == 5.0
    np.testing.assert_allclose(v, [0.6, 0.8])


def test_seeded_runs_repeat_and_other_seeds_differ(problem, digits):
    parts = make_partition("dirichlet", digits.y_train, 16, 0, alpha=0.5)
    common = {"rounds": 3, "fraction": 0.25, "local_epochs": 1, "local_batch": 16,
              "compress": "qsgd", "dropout": 0.25, "slow_fraction": 0.5}
    a = _run(problem, parts, "fedavg", **common)
    b = _run(problem, parts, "fedavg", **common)
    c = _run(problem, parts, "fedavg", seed=1, **common)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    assert [r["test_acc"] for r in a.records] == [r["test_acc"] for r in b.records]


# ----------------------------------------------------------------- the command

def test_command_parses_into_a_job():
    from distbench.benchmarks.fedavg import fedavg_command
    from distbench.command import Job

    job = fedavg_command.main(["--algorithm", "fedavg,fedprox,scaffold", "--mu", "0.1",
                               "--partition", "dirichlet", "--alpha", "0.2", "--clients", "30",
                               "--compress", "topk", "--no-error-feedback"],
                              standalone_mode=False)
    assert isinstance(job, Job) and job.name == "fedavg"
    cfg = job.config
    assert cfg["algorithms"] == ["fedavg", "fedprox", "scaffold"] and cfg["mu"] == 0.1
    assert (cfg["partition"], cfg["alpha"], cfg["clients"]) == ("dirichlet", 0.2, 30)
    assert cfg["method"] == "topk" and cfg["error_feedback"] is False
    every = fedavg_command.main(["--algorithm", "all"], standalone_mode=False)
    assert every.config["algorithms"] == list(ALGORITHMS)


PARSE_ERRORS = {  # arguments -> the error's text (the command line's parse, in-process)
    "--fraction nan": "'--fraction': 'nan' is not a finite number",
    "--lr inf": "'--lr': 'inf' is not a finite number",
    "--server-lr -1": "'--server-lr': '-1' is not in (0, 1000000]",
    "--server-momentum 1": "'--server-momentum': '1' is not in [0, 1)",
    "--local-batch -1": "'--local-batch': '-1' is not in [0, 1073741824]",
    "--rounds 2.5": "'--rounds': '2.5' is not an integer",
    "--dp-noise 1": "--dp-noise needs --dp-clip",
    "--compress zip": "unknown compression method 'zip'",
    "--l2 nan": "'--l2': 'nan' is not a finite number",
}


@pytest.mark.parametrize("args", PARSE_ERRORS)
def test_command_rejects_at_parse_time(args):
    from distbench.cli import _parse

    code, message = _parse(["fedavg", *args.split()])
    assert code == 2 and PARSE_ERRORS[args] in message, message


def test_config_checks_the_same_ranges_without_the_command_line():
    with pytest.raises(UsageError, match=r"--fraction must be in \(0, 1\], not nan"):
        FedConfig(fraction=math.nan).check()
    with pytest.raises(UsageError, match=r"--dropout must be in \[0, 1\), not 1"):
        FedConfig(dropout=1).check()
    with pytest.raises(UsageError, match="does not cover scaffold"):
        FedConfig(dp_clip=1.0).check(ALGORITHMS["scaffold"])
    FedConfig(dp_clip=1.0).check()


def test_divergence_stops_the_run(problem, digits):
    parts = make_partition("iid", digits.y_train, 6, 0)
    with pytest.raises(FedDiverged, match="diverged at round 1 \\(fedavg\\)") as info:
        _run(problem, parts, "fedavg", rounds=3, lr=1e6)
    assert info.value.step == 1 and info.value.mode == "fedavg"


BAD_INPUT = {  # the list and more: arguments -> the one line's text
    "--fraction 0": "Invalid value for '--fraction': '0' is not in (0, 1]",
    "--fraction 1.5": "Invalid value for '--fraction': '1.5' is not in (0, 1]",
    "--classes-per-client 4 --partition shards": "exceeds the 3 classes",
    "--alpha 0 --partition dirichlet": "Invalid value for '--alpha': '0' is not in (0,",
    "--clients 0": "Invalid value for '--clients': '0' is not in [1, 16777216]",
    "--dropout 1": "Invalid value for '--dropout': '1' is not in [0, 1)",
    "--algorithm fedavg,fedyogi": "unknown federated algorithm 'fedyogi'",
    "--algorithm scaffold --dp-clip 1": "does not cover scaffold",
    "--clients 61": "--clients 61 exceeds the 48 training samples",
}


@pytest.mark.slow
@pytest.mark.parametrize("args", BAD_INPUT)
def test_bad_input_exits_2_with_one_line(tmp_path, args):
    data = tmp_path / "three.csv"  # 3 classes, no scikit-learn import: quick to the check
    data.write_text("".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(60)))
    proc = serial(["fedavg", "--dataset", str(data), "--clients", "5", "--rounds", "1",
                   "--quiet", "--output", str(tmp_path / "out"), *args.split()], timeout=60)
    assert BAD_INPUT[args] in usage_error_line(proc)
    assert not (tmp_path / "out").exists()  # nothing ran
