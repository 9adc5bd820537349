"""``hierarchical``: reduce inside each node, AllReduce among node leaders, broadcast inside each
node (MPICH's SMP-aware AllReduce; Horovod's hierarchical AllReduce).

Nodes are the ranks sharing memory (``comm.Split_type(MPI.COMM_TYPE_SHARED)``) or, with
``ranks_per_node=K``, groups of K consecutive ranks (``comm.Split(rank // K)``), which emulates
K ranks per node on one host. Local rank 0 of each node is its leader. The three phases:

1. binomial-tree reduce inside the node to the leader (``patterns.binomial_reduce``),
2. AllReduce among the leaders with any registered algorithm (``inner``, default ``ring``;
   its schedule steps where it declares them, else its blocking call inside this schedule),
3. binomial-tree broadcast inside the node from the leader (``patterns.binomial_bcast``).

In place (``sendbuf = MPI.IN_PLACE``) the node reduce starts from ``recvbuf``, and the
leaders' AllReduce runs in place where the node reduction is ``recvbuf`` itself.

The node and leader communicators are created once per (communicator, ranks_per_node) and
cached, so timed calls never split (splitting is collective and slow); :func:`free_groups`
releases them.

Cost (Hockney model, n bytes, p = q k ranks on q nodes of k ranks; alpha/beta intra-node,
alpha'/beta' inter-node latency and time per byte, gamma reduction time per byte):
``T = 2 ceil(lg k) (alpha + n beta) + ceil(lg k) n gamma + T_inner(q, n; alpha', beta')``, e.g.
with the ring inside ``T_inner = 2 (q-1) alpha' + 2 (q-1)/q n beta' + (q-1)/q n gamma``
(Zhu, Goodell, Gropp & Thakur 2009, "Hierarchical collectives in MPICH2", EuroPVM/MPI;
Sergeev & Del Balso 2018, "Horovod", arXiv:1802.05799, hierarchical allreduce).
Only q leaders cross the (slow) inter-node network, each with its inner algorithm's traffic.

Bytes sent per rank: the ``tree`` formula inside its node for the reduce and the broadcast
(``n`` to the parent unless it is the leader, ``n`` to each binomial child), plus, on a leader,
the inner algorithm's bytes for its rank among the q leaders.
"""

from __future__ import annotations

import numpy as np

from distbench.buffers import register_cache, workspace
from distbench.collectives.allreduce.tree import bytes_sent as tree_bytes
from distbench.collectives.allreduce.tree import node_tree
from distbench.collectives.coefficients import broadcast
from distbench.collectives.inputs import copy_into, reduce_input
from distbench.collectives.ops import in_place_sentinel
from distbench.collectives.patterns import binomial_bcast, binomial_reduce
from distbench.collectives.schedule import kernels
from distbench.errors import UsageError
from distbench.registry import Option
from distbench.runtime import mpi

TAG = 0x4849  # "HI"

# (id(comm), ranks_per_node) -> (comm, node communicator, leaders communicator or None). The
# entry keeps ``comm`` alive, so its id cannot be reused by another object while cached.
_GROUPS: dict[tuple[int, int | None], tuple] = {}


def node_groups(comm, ranks_per_node: int | None = None):
    """The (node, leaders) communicators of ``comm``, split once and cached.

    Collective on the first call for a given (comm, ranks_per_node). ``leaders`` is None on
    ranks that are not local rank 0 of their node.

    Raises:
        ValueError: ``ranks_per_node`` is < 1 or does not divide the number of ranks.
    """
    size = comm.Get_size()
    if ranks_per_node is not None and (ranks_per_node < 1 or size % ranks_per_node):
        raise ValueError(
            f"ranks_per_node={ranks_per_node} must be >= 1 and divide the {size} ranks"
        )
    key = (id(comm), ranks_per_node)
    hit = _GROUPS.get(key)
    if hit is not None and hit[0] is comm:
        return hit[1], hit[2]
    MPI = mpi()
    rank = comm.Get_rank()
    if ranks_per_node is None:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    else:
        node = comm.Split(rank // ranks_per_node, rank)
    leader = node.Get_rank() == 0
    leaders = comm.Split(0 if leader else MPI.UNDEFINED, rank)
    if not leader:
        leaders = None  # MPI.COMM_NULL: nothing to free
    _GROUPS[key] = (comm, node, leaders)
    return node, leaders


def free_groups() -> None:
    """Free every cached node/leader communicator (collective; the benchmarks call it through
    :func:`distbench.buffers.release_caches`)."""
    for _, node, leaders in _GROUPS.values():
        node.Free()
        if leaders is not None:
            leaders.Free()
    _GROUPS.clear()


register_cache(free_groups)


def _registry():
    from distbench.collectives.allreduce import ALLREDUCE  # this collective's registry

    return ALLREDUCE


def _inner_algorithm(name: str):
    """The registered AllReduce ``name`` other than this one (its
    :class:`~distbench.registry.Algorithm`).

    Raises:
        ValueError: unknown, or ``hierarchical`` itself.
    """
    registry = _registry()
    if name == "hierarchical" or name not in registry:
        choices = ", ".join(k for k in registry if k != "hierarchical")
        raise ValueError(f"inner algorithm {name!r} is not one of: {choices}")
    return registry.spec(name)


def _check_inner(name: str) -> None:
    try:
        _inner_algorithm(name)
    except ValueError as exc:
        raise UsageError(f"--inner: {exc}") from None


def _check_ranks_per_node(k: int) -> None:
    if k < 1:
        raise UsageError(f"--ranks-per-node must be >= 1, not {k}")


def _check_divides(k: int, ranks: int) -> None:
    if ranks % k:
        raise UsageError(f"--ranks-per-node {k} does not divide the {ranks} ranks")


EQUAL_NODES = True  # the cost formula needs k ranks on every node

OPTIONS = (
    Option("ranks_per_node", int, None, "Group K consecutive ranks into one node for "
           "hierarchical [default: real nodes, COMM_TYPE_SHARED].",
           check=_check_ranks_per_node, check_size=_check_divides),
    Option("inner", str, "ring", "Algorithm among node leaders for hierarchical.",
           check=_check_inner),
)


def steps(comm, sendbuf, recvbuf, op=None, *, ranks_per_node: int | None = None,
          inner: str = "ring"):
    """Tree reduce in the node, ``inner`` among the node leaders, tree broadcast in the node.

    ``ranks_per_node`` groups K consecutive ranks into a node (None: the real shared-memory
    nodes); ``inner`` names the leaders' algorithm (default ``"ring"``).

    Raises:
        ValueError: ``ranks_per_node`` < 1 or not dividing the ranks; ``inner`` unknown or
            ``"hierarchical"``.
    """
    spec = _inner_algorithm(inner)
    node, leaders = node_groups(comm, ranks_per_node)
    setup = reduce_input(comm, sendbuf, recvbuf, op)
    if setup is None:
        return
    fn, src = setup
    if leaders is None:
        yield from binomial_reduce(node, src, recvbuf, fn, TAG)
    elif leaders.Get_size() == 1:  # one node: the node reduction is the result
        acc = yield from binomial_reduce(node, src, recvbuf, fn, TAG)
        if acc is not recvbuf:
            copy_into(recvbuf, acc)
    else:
        # The leaders' AllReduce needs a send buffer distinct from recvbuf (or IN_PLACE).
        node_sum = workspace(recvbuf, recvbuf.shape[0], "node") if node.Get_size() > 1 else src
        acc = yield from binomial_reduce(node, src, node_sum, fn, TAG)
        send = in_place_sentinel() if acc is recvbuf else acc
        if spec.steps is not None:
            yield from spec.steps(leaders, send, recvbuf, op=op)
        else:  # a plug-in without a schedule: its blocking call, inside this one
            spec.fn(leaders, send, recvbuf, op=op)
    yield from binomial_bcast(node, recvbuf, TAG)


allreduce, start = kernels(steps)


def bytes_sent(rank: int, ranks: int, count: int, itemsize: int,
               ranks_per_node: int | None = None, inner: str = "ring") -> int:
    """Tree inside the node of k consecutive ranks (``ranks_per_node``; None: one node of all
    ranks); the leaders add the inner algorithm's bytes among the p/k leaders.

    Raises:
        ValueError: the inner algorithm declares no byte formula.
    """
    k = ranks if ranks_per_node is None else ranks_per_node
    local, nodes = rank % k, ranks // k
    sent = tree_bytes(local, k, count, itemsize)
    if local == 0 and nodes > 1:
        inner_bytes = _registry().spec(inner).bytes_sent
        if inner_bytes is None:
            raise ValueError(f"inner algorithm {inner!r} declares no byte formula")
        sent += inner_bytes(rank // k, nodes, count, itemsize)
    return sent


def cost(nbytes, ranks, ranks_per_node=None, inner: str = "ring") -> np.ndarray:
    """Zhu et al.: the node's binomial reduce and broadcast, plus the inner algorithm among
    the q = p/k leaders, every step of which crosses nodes (each of the inner's alternatives).

    Raises:
        ValueError: k does not divide p, or the inner algorithm has no cost formula.
    """
    n, p, k = broadcast(nbytes, ranks, ranks_per_node)
    if np.any(p % k):
        raise ValueError("hierarchical needs ranks_per_node dividing the rank count")
    inner_cost = _registry().spec(inner).cost
    if inner_cost is None:
        raise ValueError(f"inner algorithm {inner!r} has no cost formula")
    leaders = inner_cost(n, p // k, 1)  # one rank per node: every step between nodes
    return node_tree(n, k)[None] + leaders
