"""The alpha-beta model: formulas against hand-computed values, fits that recover known
parameters, crossovers, the model check on recorded runs, and the ``distbench model`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distbench.analysis.cost import (
    CostParams,
    best_and_crossovers,
    coefficients,
    costed,
    predict,
    spec_of,
)
from distbench.analysis.fit import fit_cost_model, fit_line, hockney_fits, model_check, points
from distbench.cli import main
from distbench.results import load_run

S = costed()  # name -> Algorithm spec of every AllReduce with a cost formula
ALGORITHMS = list(S)

DATA = Path(__file__).parent / "data"
# Unit-free parameters make the hand computations readable: alpha = 1, beta = 0.01, gamma = 0.001.
P = CostParams(1.0, 0.01, 0.001)


@pytest.mark.parametrize("algo,n,p,kwargs,expected", [
    # 2 (p-1) (alpha + n beta) + (p-1) n gamma = 6 * 2 + 0.3
    ("naive", 100, 4, {}, 12.3),
    # 2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma = 6 + 1.5 + 0.075
    ("ring", 100, 4, {}, 7.575),
    # ceil(lg 5) = 3: 6 (alpha + n beta) + 3 n gamma = 12 + 0.3
    ("tree", 100, 5, {}, 12.3),
    # lg 8 = 3: 3 (alpha + n beta + n gamma) = 3 * 2.1
    ("recursive_doubling", 100, 8, {}, 6.3),
    # p = 6: (floor(lg 6) + 2)(alpha + n beta) + (floor(lg 6) + 1) n gamma = 4 * 2 + 3 * 0.1
    ("recursive_doubling", 100, 6, {}, 8.3),
    # 2 lg 8 alpha + 2 * 7/8 * 800 * 0.01 + 7/8 * 800 * 0.001 = 6 + 14 + 0.7
    ("rabenseifner", 800, 8, {}, 20.7),
    # p = 6, p' = 4: 4 + 12 + 0.6, plus the fold 2 alpha + 2 n beta + n gamma = 2 + 16 + 0.8
    ("rabenseifner", 800, 6, {}, 35.4),
    # k = 4: tree in the node 2*2*(1 + 1) + 2*0.1 = 8.2; ring on q = 2 leaders 2 + 1 + 0.05
    ("hierarchical", 100, 8, {"ranks_per_node": 4}, 11.25),
    ("hierarchical", 100, 8, {"ranks_per_node": 4, "inner": "tree"}, 8.2 + 2 * 2 + 0.1),
    # native: the fastest of recursive doubling (6.3), Rabenseifner (6 + 1.75 + 0.0875), ring
    ("native", 100, 8, {}, 6.3),
    ("native", 1, 1, {}, 0.0),
])
def test_formulas_against_hand_values(algo, n, p, kwargs, expected):
    assert predict(S[algo], P, n, p, options=kwargs) == pytest.approx(expected, rel=1e-12)


def test_two_level_network_uses_inter_node_parameters():
    two = CostParams(1.0, 0.01, 0.001, alpha_inter=10.0, beta_inter=0.1)
    # leaders' ring on 2 nodes with alpha' = 10, beta' = 0.1: 20 + 10 + 0.05; node tree 8.2
    assert predict(S["hierarchical"], two, 100, 8, ranks_per_node=4) == pytest.approx(38.25)
    # a flat ring across nodes runs at the slowest link: 14 alpha' + 2*7/8*100 beta' + gamma
    assert predict(S["ring"], two, 100, 8, ranks_per_node=4) == pytest.approx(140 + 17.5 + 0.0875)
    # naive: the root gets 3 messages from its node and 4 from the other, each way
    assert predict(S["naive"], two, 100, 8, ranks_per_node=4) == pytest.approx(
        2 * 3 * (1 + 1) + 2 * 4 * (10 + 10) + 7 * 0.1)
    # Rabenseifner on 8 = 2 x 4: 1 step of 2 across nodes (n/2 each way), 2 inside (n/4, n/8)
    c = coefficients(S["rabenseifner"], 1024, 8, 4)
    np.testing.assert_allclose(c, [4, 2 * (256 + 128), 896, 2, 2 * 512])


def test_ring_segments_add_latency_only():
    seg = 1 << 20
    c = coefficients(S["ring"], [2 * seg, 4 * seg, 4 * seg + 2], 2)
    # blocks of 1, 2 and 2 MiB + 1 B: 0, 1 and 2 extra messages in the reduce-scatter
    np.testing.assert_allclose(c[0], [2, 3, 4])
    np.testing.assert_allclose(c[1], [2 * seg, 4 * seg, 4 * seg + 2])


def test_vectorized_to_a_million_ranks():
    p = np.array([2, 1 << 10, 1 << 20, 3 * (1 << 19)])
    t = predict(S["recursive_doubling"], P, 100, p)
    np.testing.assert_allclose(t, [2.1, 21.0, 42.0, (20 + 2) * 2 + 21 * 0.1])
    grid = predict(S["ring"], P, np.geomspace(8, 1 << 30, 64)[:, None], p[None, :])
    assert grid.shape == (64, 4) and np.all(np.diff(grid, axis=0) >= 0)


def test_hierarchical_on_one_node_is_its_node_tree():
    # k = p: the tree reduce and broadcast inside the node, no leaders' exchange
    assert predict(S["hierarchical"], P, 100, 8) == pytest.approx(2 * 3 * (1 + 1) + 3 * 0.1)


@pytest.mark.parametrize("bad", [
    lambda: predict(S["hierarchical"], P, 8, 6, ranks_per_node=4),
    lambda: coefficients(S["native"], 8, 4),
    lambda: predict(S["ring"], P, 8, 0),
    lambda: spec_of("bogus"),
])
def test_bad_model_input_raises(bad):
    with pytest.raises(ValueError):
        bad()


def test_fit_line_recovers_alpha_beta():
    n = 8.0 * 4.0 ** np.arange(12)
    alpha, beta = 3e-6, 1 / 2.5e9
    a, b, r2 = fit_line(n, alpha + beta * n)
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(beta, rel=1e-9)
    assert r2 == pytest.approx(1.0)
    noise = 1 + 0.03 * np.random.default_rng(1).standard_normal(n.size)
    a, b, r2 = fit_line(n, (alpha + beta * n) * noise)
    assert a == pytest.approx(alpha, rel=0.05) and b == pytest.approx(beta, rel=0.05)
    assert 0.9 < r2 < 1.0
    with pytest.raises(ValueError):
        fit_line([64, 64], [1e-6, 2e-6])


def _synthetic(params, ranks, sizes):
    docs = []
    for p in ranks:
        recs = [{"algorithm": a, "bytes": int(n), "ranks": p, "dtype": "float32",
                 "options": {"inner": "ring"} if a == "hierarchical" else {},
                 "ranks_per_node": None,
                 "p50_us": float(predict(S[a], params, n, p, None,
                                         {"inner": "ring"} if a == "hierarchical" else None))
                 * 1e6} for a in ALGORITHMS for n in sizes]
        docs.append({"benchmark": "allreduce", "environment": {"ranks_per_node": [p]},
                     "records": recs})
    return docs


def test_cost_fit_across_ranks_recovers_parameters_and_predicts_p4():
    true = CostParams(4e-6, 1 / 3e9, 1 / 6e9)
    sizes = 8 * 4 ** np.arange(11)
    docs = _synthetic(true, (2, 3, 4), sizes)
    fits, rows = model_check(docs[:2], docs[2:])
    assert set(fits) == set(ALGORITHMS)
    # recursive doubling's beta and gamma coefficients differ in ratio between p = 2 and 3
    rd = fits["recursive_doubling"].params
    assert (rd.alpha, rd.beta, rd.gamma) == pytest.approx((true.alpha, true.beta, true.gamma),
                                                          rel=1e-6)
    assert fits["recursive_doubling"].note is None
    # the ring's are proportional (2:1) at every p: gamma folds into beta = beta + gamma / 2
    ring = fits["ring"]
    assert ring.note and ring.params.gamma == 0
    assert ring.params.beta == pytest.approx(true.beta + true.gamma / 2, rel=1e-9)
    assert fits["native"].params.alpha == pytest.approx(true.alpha, rel=1e-3)
    assert len(rows) == len(ALGORITHMS) * len(sizes)
    assert max(abs(r.error) for r in rows) < 1e-3
    # a given gamma is kept, not fitted
    pts = points(docs[:2])
    assert fit_cost_model(pts, S["ring"], gamma=true.gamma).params.beta == pytest.approx(
        true.beta, rel=1e-9)


def test_uneven_nodes_leave_hierarchical_out_of_the_fit():
    """3 ranks on 2 nodes (2 + 1, srun's placement in a 2 x 2 allocation): hierarchical's
    formula needs equal nodes, so those records are skipped, not a ValueError; the others
    are kept."""
    true = CostParams(4e-6, 1 / 3e9, 1 / 6e9)
    docs = _synthetic(true, (2, 3, 4), 8 * 4 ** np.arange(6))
    docs[1]["environment"]["ranks_per_node"] = [1, 2]
    pts = points(docs[1:2])
    assert pts and "hierarchical" not in {q.algorithm for q in pts}
    fits, rows = model_check(docs[:2], docs[2:])
    assert "hierarchical" in fits and fits["hierarchical"].ranks == (2,)
    assert {r.algorithm for r in rows} == set(ALGORITHMS)


def test_crossover_located_where_the_lines_cross():
    curves = {"a": lambda n: 1e-6 + n * 1e-9, "b": lambda n: 5e-6 + n * 0.5e-9}
    [(n, lo, hi)] = best_and_crossovers(curves, 8, 1 << 20)
    assert (lo, hi) == ("a", "b") and n == pytest.approx(8000, rel=1e-3)
    # recursive doubling -> Rabenseifner at p = 4: n = 2 alpha / (beta/2 + 5 gamma/4)
    par = CostParams.from_units(2.0, 12.5, 5.0)
    cur = {a: (lambda x, a=a: predict(S[a], par, x, 4)) for a in ("recursive_doubling",
                                                                  "rabenseifner")}
    [(n, lo, hi)] = best_and_crossovers(cur, 8, 1 << 26)
    assert lo == "recursive_doubling" and hi == "rabenseifner"
    assert n == pytest.approx(2 * par.alpha / (par.beta / 2 + 1.25 * par.gamma), rel=1e-3)


def test_hockney_and_check_on_recorded_runs():
    runs = {p: load_run(DATA / "model" / f"p{p}") for p in (2, 3, 4)}
    fits = hockney_fits(runs[2])
    sizes = {r["bytes"] for r in runs[2][0]["records"]}
    assert [f.algorithm for f in fits] == list(dict.fromkeys(
        r["algorithm"] for r in runs[2][0]["records"]))
    assert all(f.ranks == 2 and f.points == len(sizes) and f.alpha >= 0 and f.beta >= 0
               and f.r2 <= 1 for f in fits)
    cfits, rows = model_check(runs[2] + runs[3], runs[4])
    assert {f.ranks for f in cfits.values()} == {(2, 3)}
    assert len(rows) == len(runs[4][0]["records"])
    measured = {(r["algorithm"], r["bytes"]): r["p50_us"] for r in runs[4][0]["records"]}
    assert all(r.ranks == 4 and r.measured_us == pytest.approx(measured[(r.algorithm, r.nbytes)])
               and r.predicted_us > 0 for r in rows)


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_model_command_json(capsys):
    code, out, _ = _cli(capsys, "model", "--alpha", "2", "--beta-gbps", "12.5",
                        "--gamma-gbps", "5", "--ranks", "4,1048576", "--algo",
                        "recursive_doubling,rabenseifner,native", "--json")
    assert code == 0
    doc = json.loads(out)
    assert len(doc["predictions"]) == 2 * 3 * 13          # 2 p x 3 algorithms x 8 B..128 MiB
    [cross] = [c for c in doc["crossovers"] if c["ranks"] == 4]
    assert cross["below"] == "recursive_doubling" and cross["above"] == "rabenseifner"
    assert cross["bytes"] == pytest.approx(4e-6 / (0.5 / 12.5e9 + 1.25 / 5e9), rel=1e-3)
    # one parameter set: native is its candidates' minimum, "fastest" names the textbook one
    fastest = {(r["ranks"], r["bytes"]): r["fastest"] for r in doc["fastest"]}
    assert fastest[(4, 8)] == "recursive_doubling" and fastest[(4, 128 << 20)] == "rabenseifner"
    big = {r["algorithm"]: r["predicted_us"] for r in doc["predictions"]
           if r["ranks"] == 1048576 and r["bytes"] == 8}
    assert big["recursive_doubling"] == pytest.approx(20 * (2 + 8 / 12.5e3 + 8 / 5e3))


def test_model_command_fit_and_check(capsys):
    code, out, _ = _cli(capsys, "model", "--from", str(DATA / "model" / "p2"), "--from",
                        str(DATA / "model" / "p3"), "--measured", str(DATA / "model" / "p4"),
                        "--ranks", "4", "-e", "1M")
    assert code == 0
    assert "Model vs measurement at p = 4" in out and "Prediction error" in out
    assert "fitted on p" in out and "Predicted AllReduce time (us), p = 4" in out


@pytest.mark.parametrize("args,msg", [
    (["--ranks", "0"], "--ranks"),
    (["--ranks", "4,x"], "--ranks"),
    (["--from", str(DATA / "model" / "p2"), "--alpha", "1"], "either --from"),
    (["--measured", str(DATA / "model" / "p4")], "--measured needs --from"),
    (["--algo", "bogus"], "unknown algorithm"),
    (["--nodes", "3", "--ranks", "4"], "does not divide"),
    (["-b", "1M", "-e", "8"], "larger than"),
])
def test_model_command_bad_input(capsys, args, msg):
    code, _, err = _cli(capsys, "model", *args)
    assert code == 2
    assert err.startswith("Error: ") and msg in err and err.count("\n") == 1
