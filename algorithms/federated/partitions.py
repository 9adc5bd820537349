"""How the training set is divided among M simulated clients (the non-IID cases of federated
learning), registered in :data:`PARTITIONS`.

Every partition function has the signature ``partition(labels, clients, seed, **options)``:
``labels`` int64 of shape (n,), values in ``0..C-1``; it returns a list of ``clients`` int64
index arrays (sorted rows of the training set), every sample in exactly one client and every
client holding at least one sample. The result depends only on its arguments (a seeded
``numpy.random.default_rng``), so every rank computes the same partition without talking.

Names follow flwr-datasets' partitioners (``flwr_datasets.partitioner``):

* ``iid`` (``IidPartitioner``): a seeded permutation cut into near-equal blocks;
* ``dirichlet --alpha A`` with ``--dirichlet-form``: client k draws label proportions q_k and
  fills its n/M places with samples drawn by q_k from what is left of each class (a class that
  runs out drops from q_k; when all of q_k's classes have run out, q_k is drawn again over the
  classes left); ``hsu`` (the default, what the documented figures use): q_k ~ Dir(A p), p the
  label distribution of the whole set (Hsu, Qi & Brown 2019, "Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification", section 3); ``flwr``:
  q_k ~ Dir(A 1), a scalar concentration for every class (flwr-datasets'
  ``InnerDirichletPartitioner`` with equal sizes and a scalar alpha). With C equally frequent
  classes Dir(A p) is Dir(A/C 1): at A = 0.1, 100 clients on the digits (C = 10), ``hsu``
  leaves 1.25 labels per client and ``flwr`` 2.62 (seed 0). A -> infinity gives every client
  the global mix (``hsu``) or an equal share of every class (``flwr``), A -> 0 one label per
  client;
* ``shards --classes-per-client c`` (McMahan et al. 2017, section 3, the pathological non-IID
  split; flwr's ``PathologicalPartitioner`` with ``num_classes_per_partition = c``): client k
  gets exactly c distinct labels, the labels ``pi[(k c + j) mod C]`` for j < c and a seeded
  permutation pi of the C labels, and each label's samples are shared near-equally among the
  clients that hold it;
* ``size-skew --power g`` (flwr's ``LinearPartitioner`` for g = 1, ``SquarePartitioner`` for
  g = 2, their ``IdToSizeFncPartitioner`` in general): client sizes proportional to
  (r + 1)^g for the clients' ranks r in a seeded order, at least one sample each, the
  samples themselves i.i.d. (g = 0 is ``iid``).

Raises (every partition): :class:`~distbench.runtime.UsageError` when the data cannot be split
that way (more clients than samples, more labels per client than labels, ...).
"""

from __future__ import annotations

import numpy as np

from distbench.collectives.inputs import block_bounds
from distbench.errors import UsageError
from distbench.registry import Algorithm, Option, Registry, in_range

ALPHA = in_range("--alpha", 0, 1e6, low_open=True)
CLASSES = in_range("--classes-per-client", 1, 1 << 20)
POWER = in_range("--power", 0, 100)


def _need_samples(n: int, clients: int) -> None:
    if clients < 1:
        raise UsageError(f"--clients must be >= 1, not {clients}")
    if clients > n:
        raise UsageError(f"--clients {clients} exceeds the {n} training samples (every client "
                         "needs one)")


def _cut(order: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """The blocks ``order[bounds[k]:bounds[k+1]]``, each sorted."""
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def iid(labels: np.ndarray, clients: int, seed: int) -> list[np.ndarray]:
    """Near-equal i.i.d. clients: a permutation of the n samples cut into ``clients`` blocks
    (sizes differ by at most one)."""
    n = int(labels.shape[0])
    _need_samples(n, clients)
    order = np.random.default_rng([seed, 0x11D]).permutation(n)
    return _cut(order, block_bounds(n, clients))


DIRICHLET_FORMS = ("hsu", "flwr")


def concentration(alpha: float, prior: np.ndarray, form: str = "hsu") -> np.ndarray:
    """The Dirichlet concentration of a client's label mix: ``alpha p`` (``hsu``, Hsu et al.
    2019) or ``alpha`` for every class (``flwr``, flwr-datasets' scalar alpha); classes absent
    from the set (p = 0) get none."""
    return alpha * prior if form == "hsu" else np.where(prior > 0, alpha, 0.0)


def dirichlet(labels: np.ndarray, clients: int, seed: int, alpha: float = 0.5,
              dirichlet_form: str = "hsu") -> list[np.ndarray]:
    """Label skew with near-equal sizes: q_k ~ Dir(alpha p) (``hsu``) or Dir(alpha 1)
    (``flwr``) per client (see the module)."""
    ALPHA(alpha)
    if dirichlet_form not in DIRICHLET_FORMS:
        raise UsageError(f"--dirichlet-form must be one of {', '.join(DIRICHLET_FORMS)}, not "
                         f"{dirichlet_form!r}")
    n = int(labels.shape[0])
    _need_samples(n, clients)
    rng = np.random.default_rng([seed, 0xD1])
    classes = int(labels.max()) + 1
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(classes)]
    left = np.array([p.size for p in pools], dtype=np.int64)
    prior = left / n
    conc = concentration(alpha, prior, dirichlet_form)
    sizes = np.diff(block_bounds(n, clients))
    out = []
    for k in range(clients):
        full = _redraw(rng, conc, prior > 0)
        take = np.zeros(classes, dtype=np.int64)
        need = int(sizes[k])
        while need:
            avail = left - take
            w = np.where(avail > 0, full, 0.0)
            if not (np.isfinite(w).all() and w.sum() > 0):
                w = _redraw(rng, conc, avail > 0)  # q's classes ran out
            draw = np.minimum(rng.multinomial(need, w / w.sum()), avail)
            take += draw
            need -= int(draw.sum())
        rows = [pools[c][p.size - left[c]: p.size - left[c] + take[c]]
                for c, p in enumerate(pools)]
        left -= take
        out.append(np.sort(np.concatenate(rows)))
    return out


def _redraw(rng, concentration: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """Label weights from Dir(concentration) over the classes still ``open_``; one open class
    at random when the draw underflows (alpha -> 0)."""
    w = np.zeros(concentration.shape[0])
    with np.errstate(all="ignore"):
        w[open_] = rng.dirichlet(concentration[open_])
    if not (np.isfinite(w).all() and w.sum() > 0):
        w[:] = 0.0
        w[rng.choice(np.flatnonzero(open_))] = 1.0
    return w


def shards(labels: np.ndarray, clients: int, seed: int, classes_per_client: int = 2
           ) -> list[np.ndarray]:
    """Exactly ``classes_per_client`` labels per client (see the module).

    Raises:
        UsageError: c > C; clients x c < C (a label would have no client); a label with
            fewer samples than the clients holding it.
    """
    c = int(classes_per_client)
    CLASSES(c)
    n = int(labels.shape[0])
    _need_samples(n, clients)
    classes = int(labels.max()) + 1
    if c > classes:
        raise UsageError(f"--classes-per-client {c} exceeds the {classes} classes of the data")
    if clients * c < classes:
        raise UsageError(f"shards: --clients {clients} x --classes-per-client {c} < "
                         f"{classes} classes (a class would have no client)")
    rng = np.random.default_rng([seed, 0x5AD])
    pi = rng.permutation(classes)
    held = [[int(pi[(k * c + j) % classes]) for j in range(c)] for k in range(clients)]
    holders: list[list[int]] = [[] for _ in range(classes)]
    for k, mine in enumerate(held):
        for label in mine:
            holders[label].append(k)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for label, who in enumerate(holders):
        pool = rng.permutation(np.flatnonzero(labels == label))
        if pool.size < len(who):
            raise UsageError(f"shards: class {label} has {pool.size} samples for "
                             f"{len(who)} clients; lower --clients or --classes-per-client")
        b = block_bounds(pool.size, len(who))
        for i, k in enumerate(who):
            parts[k].append(pool[b[i]:b[i + 1]])
    return [np.sort(np.concatenate(p)) for p in parts]


def size_skew(labels: np.ndarray, clients: int, seed: int, power: float = 1.0
              ) -> list[np.ndarray]:
    """i.i.d. samples, sizes proportional to (r + 1)^power (largest remainder rounding, every
    client at least one sample; r: the client's rank in a seeded order)."""
    POWER(power)
    n = int(labels.shape[0])
    _need_samples(n, clients)
    rng = np.random.default_rng([seed, 0x512E])
    # (r + 1)^g in logarithms, the largest 1: finite for any g (1000^100 overflows a float)
    logs = power * np.log(rng.permutation(clients) + 1.0)
    weight = np.exp(logs - logs.max())
    share = weight / weight.sum() * (n - clients)  # one sample each, the rest by weight
    sizes = np.floor(share).astype(np.int64)
    short = (n - clients) - int(sizes.sum())
    sizes[np.argsort(sizes - share, kind="stable")[:short]] += 1
    bounds = np.zeros(clients + 1, dtype=np.int64)
    np.cumsum(sizes + 1, out=bounds[1:])
    return _cut(rng.permutation(n), bounds)


PARTITIONS = Registry("partition", "distbench.partitions", {
    "iid": Algorithm(iid),
    "dirichlet": Algorithm(dirichlet, options=(Option(
        "alpha", float, 0.5, "dirichlet: concentration A of each client's label mix "
        "(small: few labels per client).", check=ALPHA), Option(
        "dirichlet_form", str, "hsu", "dirichlet: Dir(A p), p the labels' frequencies (hsu: "
        "Hsu et al. 2019), or Dir(A) for every class (flwr: flwr-datasets' scalar alpha).",
        choices=DIRICHLET_FORMS))),
    "shards": Algorithm(shards, options=(Option(
        "classes_per_client", int, 2, "shards: exactly this many labels per client.",
        check=CLASSES),)),
    "size-skew": Algorithm(size_skew, options=(Option(
        "power", float, 1.0, "size-skew: client sizes ~ (rank+1)^g (0: equal).",
        check=POWER),)),
})


def make_partition(name: str, labels: np.ndarray, clients: int, seed: int, **options
                   ) -> list[np.ndarray]:
    """Partition ``labels`` with the registered ``name``, passing it the ``options`` its
    signature takes (``alpha``, ``classes_per_client``, ``power``; others ignored).

    Raises:
        UsageError: unknown name, bad option, or data that cannot be split so.
    """
    PARTITIONS.require([name], "--partition", allow_all=False)
    return PARTITIONS.bind(name, **options)(np.asarray(labels, dtype=np.int64), clients,
                                            seed)


def label_counts(labels: np.ndarray, parts: list[np.ndarray], classes: int) -> np.ndarray:
    """int64 (clients, classes): how many samples of each label every client holds."""
    return np.stack([np.bincount(labels[p], minlength=classes) for p in parts])


__all__ = ["PARTITIONS", "make_partition", "label_counts", "iid", "dirichlet", "shards",
           "size_skew"]
