"""From measurements to a decision, and the decision as the files the libraries read.

A candidate is ``default`` (the library's own decision), ``lib:<name>`` (one of the library's
algorithms, forced; its number for the rules file) or a distbench algorithm. Per (collective,
rank count, size) :func:`decide` picks the fastest candidate but switches away from the
default only where its paired interval of default / candidate lies above 1; adjacent sizes
with the same choice merge into ranges.

Files:

* Open MPI's ``coll_tuned`` dynamic rules (``coll_tuned_dynamic_rules_filename``, the classic
  format): the number of collectives; per collective its id, the number of communicator sizes;
  per size the rank count and the number of message-size rules; per rule ``msg_bytes algorithm
  fanout segsize`` (a rule from 0 bytes first, as coll/tuned requires; algorithm 0 keeps the
  library's fixed decision). Message sizes are bytes as coll/tuned computes them: the vector
  for allreduce, bcast and reduce, the whole buffer for allgather, reduce-scatter-block and
  all-to-all, distbench's size convention. Only library candidates go in it.
* MPICH's collective selection JSON (``MPIR_CVAR_COLL_SELECTION_TUNING_JSON_FILE``): nested
  ``collective=``, ``comm_type=intra``, ``comm_size<=``, ``avg_msg_size<=`` keys ending in
  ``algorithm=MPIR_<Coll>_intra_<name>``; the library choices by algorithm name (the textbook
  algorithm Open MPI's variant implements), the rest MPICH's default (``auto``).
* distbench's own table (``distbench_tuning.json``): every range with its choice, library or
  distbench's, for ``--algo auto``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from distbench.errors import UsageError

DEFAULT = "default"
FORMAT = "distbench-tuning"


@dataclass
class Range:
    """Sizes ``lo``..``hi`` bytes (inclusive) of ``collective`` at ``ranks`` ranks run
    ``choice`` (``default``, ``lib:<name>`` or a distbench algorithm); ``library_id`` for a
    library choice; ``gain``: default / choice at the range's sizes (median)."""

    collective: str
    ranks: int
    lo: int
    hi: int
    choice: str
    library_id: int = 0
    gain: float = 1.0


def choose(points: dict[str, tuple]) -> str:
    """The choice at one size: the fastest candidate whose default / candidate interval is
    above 1 (``points``: candidate -> (ratio, low, high) against the default), else the
    default."""
    best, best_x = DEFAULT, 1.0
    for name, (x, lo, _hi) in points.items():
        if name != DEFAULT and lo is not None and lo > 1.0 and x > best_x:
            best, best_x = name, x
    return best


def decide(measured: list[dict], library_ids: dict[str, int] | None = None,
           only=None) -> list[Range]:
    """The decision from tune records (``collective``, ``ranks``, ``bytes``, ``candidate``,
    ``x_default``, ``x_default_ci``); ``only(candidate)``: the candidates it may pick (e.g.
    the library's, for its rules file). Sizes with the same choice merge into ranges."""
    library_ids = library_ids or {}
    groups: dict = {}
    for r in measured:
        if only is not None and r["candidate"] != DEFAULT and not only(r["candidate"]):
            continue
        ci = r.get("x_default_ci") or [None, None]
        groups.setdefault((r["collective"], r["ranks"]), {}).setdefault(r["bytes"], {})[
            r["candidate"]] = (r.get("x_default") or 0.0, ci[0], ci[1])
    out = []
    for (coll, ranks), by_size in sorted(groups.items()):
        sizes = sorted(by_size)
        picks = {s: choose(by_size[s]) for s in sizes}
        start = 0
        for i, s in enumerate(sizes):
            if i + 1 == len(sizes) or picks[sizes[i + 1]] != picks[s]:
                run = sizes[start:i + 1]
                c = picks[s]
                gains = sorted(by_size[x][c][0] if c != DEFAULT else 1.0 for x in run)
                out.append(Range(coll, ranks, run[0], run[-1], c, library_ids.get(c, 0),
                                 gains[len(gains) // 2]))
                start = i + 1
    return out


def lookup(ranges: list[Range], collective: str, ranks: int, nbytes: int) -> Range | None:
    """The range covering ``nbytes`` (the nearest one below it past the last, the first
    before the first) for ``collective`` at ``ranks`` ranks (the nearest rank count tuned
    when not this one); None when the collective was not tuned."""
    mine = [r for r in ranges if r.collective == collective]
    if not mine:
        return None
    counts = sorted({r.ranks for r in mine})
    k = min(counts, key=lambda c: (abs(c - ranks), c))
    mine = sorted((r for r in mine if r.ranks == k), key=lambda r: r.lo)
    for r in mine:
        if r.lo <= nbytes <= r.hi:
            return r
    below = [r for r in mine if r.hi < nbytes]
    return below[-1] if below else mine[0]


# ----------------------------------------------------------------------------- Open MPI

def ompi_rules(ranges: list[Range], ids: dict[str, int]) -> str:
    """Open MPI's dynamic rules file of the library ranges (``ids``: collective -> its
    coll/tuned id). Each range becomes a rule from its first size; a rule from 0 bytes leads
    every rank count (the library's own decision where the decision kept it)."""
    by: dict = {}
    for r in ranges:
        by.setdefault(r.collective, {}).setdefault(r.ranks, []).append(r)
    lines = [f"{len(by)}  # collectives (distbench tune)"]
    for coll in sorted(by, key=lambda c: ids[c]):
        sizes = by[coll]
        lines += [f"{ids[coll]}  # {coll}", f"{len(sizes)}  # communicator sizes"]
        for ranks in sorted(sizes):
            rules = []
            for r in sorted(sizes[ranks], key=lambda r: r.lo):
                alg = r.library_id if r.choice.startswith("lib:") else 0
                lo = 0 if not rules else r.lo
                if rules and rules[-1][1] == alg:
                    continue
                rules.append((lo, alg))
            if rules[0][0] != 0:
                rules.insert(0, (0, 0))
            lines += [f"{ranks}  # ranks", f"{len(rules)}  # message sizes"]
            lines += [f"{lo} {alg} 0 0" for lo, alg in rules]
    return "\n".join(lines) + "\n"


def parse_ompi_rules(text: str) -> dict:
    """{collective id: {ranks: [(msg bytes, algorithm)]}} of a rules file (comments after
    ``#``).

    Raises:
        UsageError: not a rules file of this format.
    """
    nums = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split()
        try:
            nums += [int(x) for x in line]
        except ValueError:
            raise UsageError(f"not an Open MPI rules file: {line!r}") from None
    it = iter(nums)
    try:
        out = {}
        for _ in range(next(it)):
            cid, nsizes = next(it), next(it)
            out[cid] = {}
            for _ in range(nsizes):
                ranks, nrules = next(it), next(it)
                rules = []
                for _ in range(nrules):
                    lo, alg, _fanout, _seg = next(it), next(it), next(it), next(it)
                    rules.append((lo, alg))
                out[cid][ranks] = rules
    except StopIteration:
        raise UsageError("not an Open MPI rules file: it ends early") from None
    return out


# ----------------------------------------------------------------------------- MPICH

MPICH_COLL = {"allreduce": "Allreduce", "allgather": "Allgather", "alltoall": "Alltoall",
              "bcast": "Bcast", "reduce": "Reduce", "reduce-scatter": "Reduce_scatter_block"}
MPICH_NAMES = {"ring": "ring", "recursive_doubling": "recursive_doubling",
               "rabenseifner": "reduce_scatter_allgather", "binomial": "binomial",
               "bruck": "brucks", "pairwise": "pairwise", "linear": "linear",
               "basic_linear": "linear",
               "scatter_allgather": "scatter_recursive_doubling_allgather",
               "scatter_allgather_ring": "scatter_ring_allgather",
               "recursive_halving": "recursive_halving", "tree": "tree"}


def mpich_json(ranges: list[Range]) -> dict:
    """MPICH's selection JSON of the decision (library and distbench choices by algorithm
    name where MPICH has the algorithm; MPICH's ``auto`` elsewhere)."""
    out: dict = {}
    for coll in sorted({r.collective for r in ranges}):
        if coll not in MPICH_COLL:
            continue
        by_ranks: dict = {}
        for r in ranges:
            if r.collective == coll:
                by_ranks.setdefault(r.ranks, []).append(r)
        comm = {}
        for ranks in sorted(by_ranks):
            sizes = {}
            rs = sorted(by_ranks[ranks], key=lambda r: r.lo)
            for i, r in enumerate(rs):
                name = r.choice.removeprefix("lib:")
                mp = MPICH_NAMES.get(name)
                algo = (f"algorithm=MPIR_{MPICH_COLL[coll]}_intra_{mp}" if mp and
                        r.choice != DEFAULT else f"algorithm=MPIR_{MPICH_COLL[coll]}_allcomm_auto")
                top = "any" if i == len(rs) - 1 else str(r.hi)
                sizes["avg_msg_size=any" if top == "any" else f"avg_msg_size<={top}"] = {
                    algo: {}}
            comm[f"comm_size<={ranks}"] = sizes
        comm["comm_size=any"] = {f"algorithm=MPIR_{MPICH_COLL[coll]}_allcomm_auto": {}}
        out[f"collective={coll.replace('-', '_')}"] = {"comm_type=intra": comm}
    return out


# ----------------------------------------------------------------------------- distbench

def table_document(ranges: list[Range], library: str) -> dict:
    """distbench's own tuning table (``--algo auto``)."""
    return {"format": FORMAT, "version": 1, "library": library,
            "ranges": [asdict(r) for r in ranges]}


def read_table(path: str) -> list[Range]:
    """The ranges of a distbench tuning table.

    Raises:
        UsageError: a file that is not one (one line).
    """
    from distbench.files import read_json

    doc = read_json(path, "--tuning")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{path} is not a distbench tune table (distbench_tuning.json)")
    try:
        return [Range(**r) for r in doc["ranges"]]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path}: malformed tune table ({exc})") from None


def held_out_penalty(measured: list[dict]) -> tuple[float, list[float]] | None:
    """Decide on every other size, evaluate on the rest: the mean over the held-out points of
    t(choice) / t(best) - 1 with its 95 % interval (bootstrap over the points); None with no
    held-out point."""
    import numpy as np

    from distbench.metrics import interval

    by: dict = {}
    for r in measured:
        by.setdefault((r["collective"], r["ranks"]), {}).setdefault(r["bytes"], {})[
            r["candidate"]] = r
    penalties = []
    for key, sizes in by.items():
        order = sorted(sizes)
        train = [r for s in order[::2] for r in sizes[s].values()]
        ranges = decide(train)
        for s in order[1::2]:
            pick = lookup(ranges, key[0], key[1], s)
            cands = sizes[s]
            choice = pick.choice if pick is not None and pick.choice in cands else DEFAULT
            best = min(c["t_max_us"] for c in cands.values())
            penalties.append(cands[choice]["t_max_us"] / best - 1.0)
    if not penalties:
        return None
    vals = np.asarray(penalties)
    if vals.size < 2:
        return float(vals.mean()), [float(vals.mean())] * 2
    lo, hi = interval(lambda idx: np.take(vals, idx).mean(axis=-1), vals.size)
    return float(vals.mean()), [float(lo), float(hi)]


__all__ = ["DEFAULT", "Range", "choose", "decide", "held_out_penalty", "lookup",
           "mpich_json", "ompi_rules", "parse_ompi_rules", "read_table", "table_document"]
