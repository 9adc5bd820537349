"""Gossip topologies without MPI: mixing matrices doubly (D-PSGD) or column (SGP) stochastic,
spectral gaps against closed forms and NumPy, the exponential graph's gap shrinking as
1/log2(n), one-peer exponential graphs averaging exactly in log2(n) rounds, push-sum's
invariants; and bad topologies on the command line (one line, exit 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from launch import mpirun, usage_error_line

from distbench.algorithms.sgd.gossip import TOPOLOGIES, spectral_gap, topology, torus_shape
from distbench.errors import UsageError


@pytest.mark.parametrize("name, p", [(t, p) for t in TOPOLOGIES for p in (2, 4, 6, 8, 16)
                                     if not (t == "torus" and p == 2)])  # no 2-D torus of 2
def test_mixing_matrices_are_stochastic_as_the_gossip_needs(name, p):
    for t in range(3):
        w = topology(name, p).matrix(t)
        assert np.allclose(w.sum(axis=0), 1) and np.allclose(w.sum(axis=1), 1), "doubly"
        assert (w >= 0).all()
        s = topology(name, p, "sgp").matrix(t)
        assert np.allclose(s.sum(axis=0), 1), "column stochastic"


def test_the_ring_gap_is_the_closed_form_and_numpys():
    for n in (3, 5, 8, 16):
        topo = topology("ring", n)
        w = topo.matrix()
        eig = np.sort(np.linalg.eigvalsh(w))[::-1]
        assert topo.spectral_gap() == pytest.approx(1 - max(abs(eig[1]), abs(eig[-1])),
                                                    abs=1e-9)
        assert topo.spectral_gap() == pytest.approx(2 / 3 * (1 - math.cos(2 * math.pi / n)),
                                                    abs=1e-9)


def test_the_exponential_gap_shrinks_as_one_over_log2_n():
    gaps = {n: topology("exponential", n).spectral_gap() for n in (4, 8, 16)}
    for n, gap in gaps.items():
        assert gap * (math.log2(n) + 1) == pytest.approx(2, rel=1e-9)
    assert gaps[4] > gaps[8] > gaps[16]


@pytest.mark.parametrize("n", [2, 4, 8])
def test_one_peer_exponential_averages_exactly_in_log2_n_rounds(n):
    topo = topology("one-peer-exponential", n)
    assert len(topo.rounds) == max(1, int(math.log2(n)))
    x = np.random.default_rng(n).standard_normal((n, 7))
    for t in range(len(topo.rounds)):
        x = topo.matrix(t) @ x
    assert np.max(np.abs(x - x.mean(axis=0))) <= 1e-12
    assert topo.spectral_gap() == pytest.approx(1.0, abs=1e-12)
    assert topo.degree() == 1


def test_push_sum_keeps_the_sum_and_the_weights_on_a_directed_graph():
    topo = topology("exponential", 6, "sgp")
    assert topo.directed
    x = np.random.default_rng(0).standard_normal((6, 5))
    w = np.ones(6)
    total = x.sum(axis=0)
    for t in range(60):
        x, w = topo.matrix(t) @ x, topo.matrix(t) @ w
        assert np.allclose(x.sum(axis=0), total) and w.sum() == pytest.approx(6)
    z = x / w[:, None]
    assert np.allclose(z, total / 6, atol=1e-6), "the de-biased models reach the average"


def test_torus_shapes_and_spectral_gap_of_one_node():
    assert torus_shape(12, None) == (3, 4) and torus_shape(8, "2x4") == (2, 4)
    assert spectral_gap(np.ones((1, 1))) == 0.0
    for bad, p in ((None, 5), ("3x3", 8), ("2by4", 8), ("1x8", 8)):
        with pytest.raises(UsageError):
            torus_shape(p, bad)


def test_edge_files(tmp_path):
    f = tmp_path / "edges"
    f.write_text("# a path and its closing edge\n0 1\n1 2\n2 3\n3 0\n")
    assert np.allclose(topology("ring", 4, edges_file=str(f)).matrix(),
                       topology("ring", 4).matrix())
    f.write_text("directed\n0 1\n1 2\n2 0\n")
    assert topology("x", 3, "sgp", edges_file=str(f)).directed
    with pytest.raises(UsageError, match="needs --gossip sgp"):
        topology("x", 3, "d-psgd", edges_file=str(f))
    f.write_text("0 1\n2 3\n")
    with pytest.raises(UsageError, match="not connected"):
        topology("x", 4, edges_file=str(f))
    f.write_text("0 9\n")
    with pytest.raises(UsageError, match="rank 9 does not exist"):
        topology("x", 4, edges_file=str(f))


@pytest.mark.parametrize("args, needle", [
    (["--topology", "torus"], "a torus does not fit 5 ranks"),
    (["--topology", "star"], "'star'"),
    (["--topology-file", "EDGES"], "rank 7 does not exist in a job of 5 ranks"),
    (["--topology-file", "SPLIT"], "not connected"),
])
def test_bad_topologies_are_one_line_exit_2(args, needle, tmp_path):
    (tmp_path / "EDGES").write_text("0 1\n1 7\n")
    (tmp_path / "SPLIT").write_text("0 1\n2 3\n3 4\n")
    args = [str(tmp_path / a) if a in ("EDGES", "SPLIT") else a for a in args]
    proc = mpirun(5, ["sgd", "--mode", "gossip", "--steps", "4", *args, "--output",
                      str(tmp_path / "out")], timeout=120)
    assert needle in usage_error_line(proc)


def test_gossip_options_without_gossip_mode_are_an_error(tmp_path):
    proc = mpirun(2, ["sgd", "--mode", "sync", "--topology", "ring", "--output", str(tmp_path)],
                  timeout=60)
    assert "--topology (gossip mode)" in usage_error_line(proc)
