"""Decentralized SGD: gossip over a topology instead of an AllReduce.

* ``d-psgd`` (Lian et al., "Can Decentralized Algorithms Outperform Centralized Algorithms?",
  NeurIPS 2017): every worker takes a gradient step on its own model and averages it with its
  neighbours through a doubly stochastic mixing matrix W, in the adapt-then-combine order
  ``x_i <- sum_j W_ij (x_j - lr g_j(x_j))`` (the order of SGP; on the complete graph with one
  gossip step it is exactly synchronous SGD).
* ``sgp`` (Stochastic Gradient Push, Assran, Loizou, Ballas and Rabbat, ICML 2019,
  Algorithm 1): the same with a column-stochastic P (each worker splits its model evenly among
  itself and its out-neighbours, which works on directed and time-varying graphs) and push-sum
  weights w (``w <- P w``, w_0 = 1): the de-biased model ``z_i = x_i / w_i`` is where gradients
  are taken and what is evaluated; sum_i x_i and sum_i w_i = p are invariant.

Topologies (:func:`topology`; W is built once):

* ``ring``, ``torus`` (R x C with wrap-around), ``complete``, a file of edges: undirected,
  Metropolis-Hastings weights ``W_ij = 1 / (1 + max(d_i, d_j))`` (Xiao and Boyd 2004), which
  are symmetric, hence doubly stochastic;
* ``exponential`` (static; Ying et al., "Exponential Graph is Provably Efficient for
  Decentralized Deep Training", NeurIPS 2021): i sends to i + 2^k mod p for k = 0 .. ceil(log2
  p) - 1, weights 1/(tau + 1) on itself and its tau in-neighbours (a circulant: doubly
  stochastic);
* ``one-peer-exponential`` (time-varying, the same paper): at gossip round t, i averages with
  i - 2^(t mod tau): W_t = (I + S_t) / 2; for p a power of two the product of tau rounds is
  exactly (1/p) 1 1^T (finite-time consensus).

The exchange is a neighbourhood collective on a distributed-graph communicator
(``Create_dist_graph_adjacent`` once per topology, or per round of a time-varying one;
``Neighbor_allgather`` each gossip round): one call per round whatever the degree, the
library schedules the messages and may place ranks for the topology, and a node sends its
vector to each out-neighbour, ``degree x model bytes`` per round, counted by
:class:`~distbench.comm.CountingComm`. Each receiver applies its row of the mixing matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distbench.comm import CountingComm
from distbench.errors import UsageError
from distbench.files import regular_file
from distbench.runtime import namespace_of

TOPOLOGIES = ("ring", "torus", "exponential", "one-peer-exponential", "complete")
GOSSIP = ("d-psgd", "sgp")
MAX_EDGES_BYTES = 16 << 20  # an edge file larger than this is refused


@dataclass
class Topology:
    """A (possibly time-varying) graph on p ranks with its mixing matrices.

    Attributes:
        name: the topology's name (or ``file:PATH``).
        p: ranks.
        rounds: one mixing matrix per gossip round of a period (p x p float64; one for a
            static graph), row i the weights rank i applies to what it receives.
        directed: whether the edges have a direction (exponential graphs, a directed file).
    """

    name: str
    p: int
    rounds: list
    directed: bool = False

    def matrix(self, t: int = 0) -> np.ndarray:
        """The mixing matrix of gossip round ``t``."""
        return self.rounds[t % len(self.rounds)]

    def period(self) -> np.ndarray:
        """The product of the matrices of one period (the static matrix for a static graph)."""
        out = np.eye(self.p)
        for w in self.rounds:
            out = w @ out
        return out

    def in_neighbors(self, rank: int, t: int = 0) -> list[int]:
        """Ranks whose vector ``rank`` uses in round ``t`` (its row's non-zeros, itself
        excluded), ascending."""
        row = self.matrix(t)[rank]
        return [j for j in np.flatnonzero(row).tolist() if j != rank]

    def out_neighbors(self, rank: int, t: int = 0) -> list[int]:
        """Ranks that use ``rank``'s vector in round ``t`` (its column's non-zeros)."""
        col = self.matrix(t)[:, rank]
        return [i for i in np.flatnonzero(col).tolist() if i != rank]

    def degree(self) -> float:
        """Messages a node sends per gossip round, averaged over a period and the nodes."""
        return float(np.mean([len(self.out_neighbors(i, t)) for t in range(len(self.rounds))
                              for i in range(self.p)]))

    def max_degree(self) -> int:
        """The busiest node's messages per gossip round."""
        return max(len(self.out_neighbors(i, t)) for t in range(len(self.rounds))
                   for i in range(self.p))

    def spectral_gap(self) -> float:
        """1 - |lambda_2| of the period's product (the second largest eigenvalue modulus;
        1 for a graph that averages exactly within a period)."""
        return spectral_gap(self.period())


def spectral_gap(w: np.ndarray) -> float:
    """1 - the second largest |eigenvalue| of ``w`` (NumPy's eigenvalues; 0 for p = 1)."""
    if w.shape[0] < 2:
        return 0.0
    mods = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
    return float(1.0 - mods[1])


def metropolis(adjacency: np.ndarray) -> np.ndarray:
    """Metropolis-Hastings weights of an undirected graph (symmetric 0/1 adjacency, no
    self-loops): W_ij = 1 / (1 + max(d_i, d_j)) on edges, the rest of each row on the
    diagonal; symmetric and doubly stochastic."""
    deg = adjacency.sum(axis=1)
    w = np.where(adjacency > 0, 1.0 / (1.0 + np.maximum.outer(deg, deg)), 0.0)
    np.fill_diagonal(w, 1.0 - w.sum(axis=1))
    return w


def column_stochastic(adjacency: np.ndarray) -> np.ndarray:
    """SGP's push weights of a directed graph (adjacency[i, j] = 1: j sends to i): each j
    splits evenly among itself and its out-neighbours, P_ij = 1 / (1 + out_j)."""
    a = adjacency.copy().astype(np.float64)
    np.fill_diagonal(a, 1.0)
    return a / a.sum(axis=0, keepdims=True)


def _undirected(p: int, edges) -> np.ndarray:
    a = np.zeros((p, p))
    for i, j in edges:
        if i != j:
            a[i, j] = a[j, i] = 1.0
    return a


def torus_shape(p: int, shape: str | None) -> tuple[int, int]:
    """R x C of a torus on p ranks: ``shape`` (``"RxC"``) or the most square factorization
    with both sides >= 2.

    Raises:
        UsageError: a shape that is malformed or does not multiply to p, or a p with no such
            factorization (a prime).
    """
    if shape:
        try:
            r, c = (int(x) for x in shape.lower().split("x"))
        except ValueError:
            raise UsageError(f"--torus-shape takes RxC (e.g. 2x4), not {shape!r}") from None
        if r < 2 or c < 2 or r * c != p:
            raise UsageError(f"--torus-shape {shape}: a torus of {p} ranks needs R x C = {p} "
                             "with R, C >= 2")
        return r, c
    best = next((r for r in range(math.isqrt(p), 1, -1) if p % r == 0), None)
    if best is None:
        raise UsageError(f"a torus does not fit {p} ranks (R x C = {p} with R, C >= 2 has no "
                         "solution); give another --topology or rank count")
    return best, p // best


def read_edges(path: str, p: int) -> tuple[list[tuple[int, int]], bool]:
    """The edges of a topology file: one ``i j`` per line (``#`` comments; ``i -> j`` or a
    ``directed`` first line for a directed graph), ranks 0 .. p-1.

    Raises:
        UsageError: unreadable file, a malformed line, a rank outside 0 .. p-1.
    """
    text = regular_file(path, "--topology-file", MAX_EDGES_BYTES).read_text()
    edges, directed = [], False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.lower() == "directed":
            directed = True
            continue
        parts = line.replace("->", " ").split()
        try:
            i, j = (int(x) for x in parts)
        except ValueError:
            raise UsageError(f"--topology-file {path}:{n}: expected 'i j', got {raw!r}") from None
        if not (0 <= i < p and 0 <= j < p):
            raise UsageError(f"--topology-file {path}:{n}: rank {i if not 0 <= i < p else j} "
                             f"does not exist in a job of {p} ranks")
        edges.append((i, j))
        directed = directed or "->" in raw
    if not edges and p > 1:
        raise UsageError(f"--topology-file {path}: no edges")
    return edges, directed


def _connected(adjacency: np.ndarray, directed: bool) -> bool:
    from scipy.sparse.csgraph import connected_components  # only to check a graph

    n, _ = connected_components(adjacency, directed=directed,
                                connection="strong" if directed else "weak")
    return n == 1


def topology(name: str, p: int, gossip: str = "d-psgd", torus: str | None = None,
             edges_file: str | None = None) -> Topology:
    """The topology ``name`` on p ranks with the mixing matrices of ``gossip`` (module doc).

    Raises:
        UsageError: an unknown topology or gossip, a torus that does not fit p, an edge file
            naming ranks outside the job, a disconnected graph, a directed graph for d-psgd.
    """
    if gossip not in GOSSIP:
        raise UsageError(f"unknown --gossip {gossip!r} (choose {', '.join(GOSSIP)})")
    if edges_file is None and name not in TOPOLOGIES:
        raise UsageError(f"unknown --topology {name!r} (choose {', '.join(TOPOLOGIES)}, or "
                         "give --topology-file)")
    if p == 1:
        return Topology(name, 1, [np.ones((1, 1))])
    if edges_file is not None:
        edges, directed = read_edges(edges_file, p)
        if directed and gossip == "d-psgd":
            raise UsageError("a directed --topology-file needs --gossip sgp (D-PSGD's W must "
                             "be doubly stochastic)")
        adj = np.zeros((p, p))
        for i, j in edges:
            if i != j:
                if directed:
                    adj[j, i] = 1.0  # i -> j: j receives from i
                else:
                    adj[i, j] = adj[j, i] = 1.0
        if not _connected(adj, directed):
            raise UsageError(f"--topology-file {edges_file}: the graph is not "
                             f"{'strongly ' if directed else ''}connected (gossip cannot "
                             "reach consensus)")
        w = column_stochastic(adj) if gossip == "sgp" else metropolis(adj)
        return Topology(f"file:{Path(edges_file).name}", p, [w], directed)
    if name in ("exponential", "one-peer-exponential"):
        tau = max(1, math.ceil(math.log2(p)))
        hops = sorted({(1 << k) % p for k in range(tau)} - {0})
        if name == "exponential":
            adj = np.zeros((p, p))
            for i in range(p):
                for h in hops:
                    adj[(i + h) % p, i] = 1.0  # i sends to i + 2^k
            return Topology(name, p, [column_stochastic(adj)], directed=True)
        rounds = []
        for h in hops:
            w = np.eye(p) * 0.5
            for i in range(p):
                w[i, (i - h) % p] += 0.5
            rounds.append(w)
        return Topology(name, p, rounds, directed=True)
    if name == "complete":
        return Topology(name, p, [np.full((p, p), 1.0 / p)])
    if name == "ring":
        adj = _undirected(p, [(i, (i + 1) % p) for i in range(p)])
    else:
        r, c = torus_shape(p, torus)
        adj = _undirected(p, [(i * c + j, i * c + (j + 1) % c) for i in range(r)
                              for j in range(c)] +
                          [(i * c + j, ((i + 1) % r) * c + j) for i in range(r)
                           for j in range(c)])
    w = metropolis(adj)
    if gossip == "sgp":
        w = column_stochastic(adj)
    return Topology(name, p, [w])


class Gossip:
    """The gossip rounds of one rank: ``mix(x)`` replaces its vector (and, SGP, its push-sum
    weight) by its row of the round's mixing matrix applied to its in-neighbours' vectors.
    Collective over ``comm``.

    Attributes:
        counting: the CountingComm every neighbourhood exchange goes through.
        weight: SGP's push-sum weight w (1.0 for D-PSGD).
        rounds: gossip rounds so far.
    """

    def __init__(self, comm, topo: Topology, n: int, like, sgp: bool = False):
        self.topo, self.sgp = topo, sgp
        self.rank = comm.Get_rank()
        self.counting = CountingComm(comm)
        self.xp = namespace_of(like)
        width = n + 1 if sgp else n  # SGP sends its push-sum weight with the vector
        self.comms, self.rows, self.recv = [], [], []
        for t in range(len(topo.rounds)):
            ins, outs = topo.in_neighbors(self.rank, t), topo.out_neighbors(self.rank, t)
            graph = comm.Create_dist_graph_adjacent(ins, outs, reorder=False)
            self.comms.append(CountingComm(graph, self.counting._state))
            row = topo.matrix(t)[self.rank]
            self.rows.append((float(row[self.rank]), [float(row[j]) for j in ins]))
            self.recv.append(self.xp.empty((len(ins), width), dtype=like.dtype))
        self.send = self.xp.empty(width, dtype=like.dtype)
        self.weight = 1.0
        self.rounds = 0

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank sent to its neighbours so far (degree x vector bytes per round)."""
        return self.counting.bytes_sent

    def mix(self, x) -> None:
        """One gossip round on ``x`` (this rank's flat vector, in place)."""
        t = self.rounds % len(self.comms)
        self_w, weights = self.rows[t]
        n = x.shape[0]
        self.send[:n] = x
        if self.sgp:
            self.send[n] = self.weight
        recv = self.recv[t]
        self.comms[t].Neighbor_allgather(self.send, recv)
        xp = self.xp
        xp.multiply(x, self_w, out=x)
        new_w = self_w * self.weight
        for k, w in enumerate(weights):
            x += w * recv[k, :n]
            if self.sgp:
                new_w += w * float(recv[k, n])
        if self.sgp:
            self.weight = new_w
        self.rounds += 1

    def free(self) -> None:
        for c in self.comms:
            c.comm.Free()
        self.comms = []


__all__ = ["GOSSIP", "TOPOLOGIES", "Gossip", "Topology", "column_stochastic", "metropolis",
           "read_edges", "spectral_gap", "topology", "torus_shape"]
