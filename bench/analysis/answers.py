"""The answer under each table: what a user would otherwise work out by eye, stated only where
the 95 % intervals separate ("no significant difference" where they overlap).

* collectives: the fastest algorithm per size range with its x native and interval, the
  crossover sizes, and where the library's own call is beaten;
* compress: the break-even link rate per compressor and the fastest exchange at each link rate
  (``--link``) from the measured compute time plus the link bytes at that rate;
* sgd / fedavg: which mode or algorithm reaches the target first in steps (rounds), bytes and
  time;
* parallel: the fastest layout and ZeRO stage per sequence and what limits it.

Each function takes the records of one run (as the live table and ``distbench report`` have
them) and returns the lines to print (plain text, no markup). An estimate is ``(value, low,
high)``; a point without an interval has ``low = -inf, high = +inf`` and can separate from
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from distbench.analysis.tables import sgd_series
from distbench.console import fmt_bytes, fmt_num
from distbench.tuning import DEFAULT as TUNE_DEFAULT

NO_INTERVAL = (-math.inf, math.inf)


def estimate(value, ci) -> tuple[float, float, float]:
    """``(value, low, high)`` from a value and its interval (None or a malformed interval:
    unbounded)."""
    if ci and len(ci) == 2 and None not in ci:
        return float(value), float(ci[0]), float(ci[1])
    return (float(value), *NO_INTERVAL)


def leaders(points: dict[str, tuple], higher_is_better: bool) -> tuple[str, ...]:
    """The names whose interval overlaps the best estimate's, the best first: one name when
    the best is significantly better than every other.

    Args:
        points: name -> ``(value, low, high)``.
    """
    if not points:
        return ()
    sign = 1 if higher_is_better else -1
    best = max(points, key=lambda n: sign * points[n][0])
    _, lo, hi = points[best]
    tied = [n for n, (_, lo2, hi2) in points.items() if n != best
            and (hi2 >= lo if higher_is_better else lo2 <= hi)]
    tied.sort(key=lambda n: -sign * points[n][0])
    return (best, *tied)


def size_ranges(sizes: Sequence[int], choice: dict[int, object]) -> list[tuple[int, int, object]]:
    """Adjacent sizes with the same choice merged: ``[(first, last, choice), ...]``."""
    out: list[list] = []
    for s in sizes:
        if out and out[-1][2] == choice[s]:
            out[-1][1] = s
        else:
            out.append([s, s, choice[s]])
    return [tuple(r) for r in out]


def span(first: int, last: int) -> str:
    """``8 B-4 KiB`` (or one size)."""
    return fmt_bytes(first) if first == last else f"{fmt_bytes(first)}-{fmt_bytes(last)}"


def _interval_text(values: list[tuple], fmt: Callable = lambda x: f"{x:.2f}") -> str:
    """``1.31 [1.12, 1.52]`` for one estimate, ``1.31-1.45, intervals within [1.12, 1.60]``
    for several."""
    lo = min(v[1] for v in values)
    hi = max(v[2] for v in values)
    bounds = f"[{fmt(lo)}, {fmt(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else \
        "no interval"
    if len(values) == 1:
        return f"{fmt(values[0][0])} {bounds}"
    a, b = min(v[0] for v in values), max(v[0] for v in values)
    return f"{fmt(a)}-{fmt(b)}, intervals within {bounds}"


def _joined(parts: list[str]) -> str:
    return "; ".join(parts) + "."


def _tie(who: Sequence[str], among: int) -> str:
    """``no significant difference between ring, native`` (``... between all 7`` when every
    candidate ties)."""
    if len(who) == among and among > 3:
        return f"no significant difference between all {among}"
    return f"no significant difference between {', '.join(who)}"


# ----------------------------------------------------------------------------- collectives

def collective_answer(records: Sequence[dict], baseline: str = "native") -> list[str]:
    """The answer under a collective's table (records of one collective, one rank count).

    On the x native scale (``baseline`` is 1, paired intervals over the interleaving rounds):
    per size the algorithms whose interval overlaps the fastest's; sizes with the same
    leaders merged into ranges; the crossovers between ranges with one clear winner; the
    sizes where an algorithm's whole interval is above 1 (the library's call beaten). An
    algorithm with wrong elements never leads.
    """
    points: dict[int, dict[str, tuple]] = {}
    for r in records:
        if r.get("wrong") or r.get("vs_native") is None:
            continue
        est = (1.0, 1.0, 1.0) if r["algorithm"] == baseline else \
            estimate(r["vs_native"], r.get("vs_native_ci"))
        points.setdefault(r["bytes"], {})[r["algorithm"]] = est
    sizes = sorted(s for s in points if len(points[s]) > 1)
    if not sizes:
        return []
    lead = {s: leaders(points[s], True) for s in sizes}
    parts = []
    for first, last, who in size_ranges(sizes, lead):
        within = [s for s in sizes if first <= s <= last]
        if len(who) == 1:
            best = who[0]
            ests = [points[s][best] for s in within]
            gain = "" if best == baseline else f" (x native {_interval_text(ests)})"
            parts.append(f"{span(first, last)}: {best}{gain}")
        else:
            among = max(len(points[s]) for s in within)
            parts.append(f"{span(first, last)}: {_tie(who, among)}")
    lines = ["Fastest: " + _joined(parts)]
    clear = [(f, la, w[0]) for f, la, w in size_ranges(sizes, lead) if len(w) == 1]
    cross = [f"{a[2]} -> {b[2]} between {fmt_bytes(a[1])} and {fmt_bytes(b[0])}"
             for a, b in zip(clear, clear[1:], strict=False) if a[2] != b[2]]
    if cross:
        lines.append("Crossovers: " + _joined(cross))
    beaten = {}
    for s in sizes:
        for name, (_, lo, _hi) in points[s].items():
            if name != baseline and lo > 1:
                beaten.setdefault(name, []).append(s)
    if beaten:
        text = []
        for name, at in beaten.items():
            runs = size_ranges(sizes, {s: s in at for s in sizes})
            text.append(f"{name} at " + ", ".join(span(f, la) for f, la, hit in runs if hit))
        lines.append(f"The library's {baseline} call is beaten (x native interval above 1) "
                     "by " + _joined(text))
    else:
        lines.append(f"The library's {baseline} call is never significantly beaten.")
    return lines


# ----------------------------------------------------------------------------- compress

DENSE = "dense ring"  # the exchange a compressor must beat on a slow link


def _exchange_at(rec: dict, bits_per_s: float) -> tuple[float, float, float]:
    """A compress record's exchange time (seconds) on a link of ``bits_per_s``: its measured
    compress and decompress time (with their intervals) plus its link bytes on the wire; the
    dense ring's link bytes alone."""
    wire = 8 * rec["link_bytes"] / bits_per_s
    if rec.get("compressor") is None:
        return wire, wire, wire
    value, lo, hi = wire, wire, wire
    for phase in ("compress", "decompress"):
        v, a, b = estimate(rec[f"{phase}_us"], rec.get(f"{phase}_us_ci"))
        value, lo, hi = value + v * 1e-6, lo + a * 1e-6, hi + b * 1e-6
    return value, lo, hi


def rate_text(bits_per_s: float) -> str:
    """``100 Mbit/s``, ``10 Gbit/s``."""
    for scale, unit in ((1e12, "Tbit/s"), (1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bits_per_s >= scale:
            return f"{fmt_num(bits_per_s / scale)} {unit}"
    return f"{fmt_num(bits_per_s)} bit/s"


def compress_answer(records: Sequence[dict], links: Sequence[float]) -> list[str]:
    """The answer under compress's table: per compressor its break-even link rate (below it
    the method beats a dense ring AllReduce) over the sizes, and for each link rate of
    ``links`` (bits per second) the fastest exchange per size range (measured compute time
    plus link bytes at that rate; the dense ring as wire time alone)."""
    sizes = sorted({r["bytes"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records if r.get("compressor")))
    if not sizes or not methods:
        return []
    lines = []
    even = []
    for m in methods:
        rates = [(r["bytes"], r["break_even_gbps"]) for r in records
                 if r["method"] == m and r.get("break_even_gbps") is not None]
        if not rates:
            continue
        lo, hi = min(x for _, x in rates), max(x for _, x in rates)
        where = fmt_num(lo * 8) if lo == hi else f"{fmt_num(lo * 8)}-{fmt_num(hi * 8)}"
        even.append(f"{m} below {where} Gbit/s" if hi > 0 else
                    f"{m} on no link (it sends as many bytes)")
    if even:
        lines.append("Pays off against a dense ring AllReduce on links: " + _joined(even))
    for bits in links:
        choice, best = {}, {}
        for s in sizes:
            at = {r["method"]: _exchange_at(r, bits) for r in records
                  if r["bytes"] == s and (r.get("compressor") or r["method"] == DENSE)}
            choice[s] = leaders(at, False)
            best[s] = at
        parts = []
        for first, last, who in size_ranges(sizes, choice):
            if len(who) == 1:
                ms = [best[s][who[0]][0] * 1e3 for s in sizes if first <= s <= last]
                parts.append(f"{span(first, last)} {who[0]} ({fmt_num(min(ms))}"
                             + ("" if len(ms) == 1 else f"-{fmt_num(max(ms))}") + " ms)")
            else:
                among = max(len(best[s]) for s in sizes if first <= s <= last)
                parts.append(f"{span(first, last)} {_tie(who, among)}")
        lines.append(f"At {rate_text(bits)}: " + _joined(parts))
    lines.append("Time only: weigh err/step and drift (sgd --compress measures the effect on "
                 "training).")
    return lines


# ----------------------------------------------------------------------------- training

def _to_target_time(s: dict, rate_key: str) -> tuple[float, float, float]:
    """Time to the target with the interval of the run's step (round) rate: the hit's wall
    time scaled by rate / the rate interval's ends."""
    t, rate, ci = s["time_to_target_s"], s.get(rate_key), s.get(f"{rate_key}_ci")
    if not rate or not ci or None in ci or min(ci) <= 0:
        return (t, *NO_INTERVAL)
    return t, t * rate / ci[1], t * rate / ci[0]


def _first(name_of: Callable, rows: list[dict], key: str, fmt: Callable) -> str:
    """Who reaches the target with the least of ``key`` (an exact count: ties named), then
    the others in order."""
    least = min(r[key] for r in rows)
    who = [name_of(r) for r in rows if r[key] == least]
    rest = [f"{name_of(r)} {fmt(r[key])}" for r in sorted(rows, key=lambda r: r[key])
            if r[key] != least]
    head = " and ".join(who) + f" ({fmt(least)})"
    return head + (f", then {', '.join(rest)}" if rest else "")


def target_answer(summaries: Sequence[dict], name_of: Callable, count_key: str,
                  count_word: str, bytes_key: str, rate_key: str, target: str) -> list[str]:
    """The answer under a training summary: who reaches ``target`` first in ``count_word``
    (exact), bytes (counted, exact) and time (with the step rate's interval); who never
    does."""
    if not target:
        return ["No target set (--target-loss, --target-acc): the summary has no time to "
                "target to compare."]
    hit = [s for s in summaries if s.get(count_key) is not None]
    missed = [name_of(s) for s in summaries if s.get(count_key) is None]
    tail = f" Never reached: {', '.join(missed)}." if missed else ""
    if not hit:
        return [f"None reached the target ({target})." + tail]
    lines = [f"First to the target ({target}) in {count_word}: "
             f"{_first(name_of, hit, count_key, str)}; in bytes sent per rank: "
             f"{_first(name_of, hit, bytes_key, lambda b: fmt_bytes(int(b)))}." + tail]
    times = {name_of(s): _to_target_time(s, rate_key) for s in hit}
    if len(times) > 1:
        who = leaders(times, False)
        if len(who) == 1:
            lines.append(f"In time: {who[0]} ({fmt_num(times[who[0]][0])} s "
                         f"[{fmt_num(times[who[0]][1])}, {fmt_num(times[who[0]][2])}]), "
                         "significantly first.")
        else:
            lines.append(f"In time: no significant difference between {', '.join(who)} "
                         "(intervals from the step rate overlap).")
    return lines


def sgd_answer(summaries: Sequence[dict], target: str) -> list[str]:
    """:func:`target_answer` for ``sgd``'s summary records (one per mode)."""
    return target_answer(summaries, sgd_series, "step_to_target", "steps", "bytes_to_target",
                         "steps_per_s", target)


def _series(s: dict) -> str:
    return s["series"]


def fed_answer(summaries: Sequence[dict], target: str) -> list[str]:
    """:func:`target_answer` for ``fedavg``'s summary records (one per algorithm; bytes:
    uploaded by all clients)."""
    return target_answer(summaries, _series, "round_to_target",
                         "communication rounds", "bytes_up_to_target", "rounds_per_s", target)


def per_link_rate(runs: Sequence[tuple[float, Sequence[dict]]]) -> tuple[list, list, list]:
    """Which compressor reaches the target first at which link rate: ``runs`` are (link rate
    in bits per second, the summaries of an ``sgd`` run at that rate); returns (the series
    names, one row per rate: the rate and each series' time to the target as ``(value, low,
    high)`` or None, the answer lines: the winner per rate, stated where the intervals
    separate)."""
    names = list(dict.fromkeys(sgd_series(s) for _, sums in runs for s in sums))
    rows, lines = [], []
    for bits, sums in sorted(runs, key=lambda r: r[0]):
        times = {sgd_series(s): _to_target_time(s, "steps_per_s") for s in sums
                 if s.get("time_to_target_s") is not None}
        rows.append([bits, *(times.get(n) for n in names)])
        who = leaders(times, False)
        if not who:
            lines.append(f"At {rate_text(bits)}: none reached the target.")
        elif len(who) == 1:
            lines.append(f"At {rate_text(bits)}: {who[0]} first ({fmt_num(times[who[0]][0])} s).")
        else:
            lines.append(f"At {rate_text(bits)}: {_tie(who, len(times))}.")
    return names, rows, lines


def replay_answer(records: Sequence[dict]) -> list[str]:
    """The answer under a replay: the whole trace's fastest choice per iteration (paired
    intervals against the first choice), and per collective the choice with the least time
    (sums of the ops' medians: no interval, so only a ranking)."""
    its = [r for r in records if r.get("kind") == "iteration"]
    if not its:
        return []
    first = its[0]["choice"]
    lines = [f"Communication per iteration ({first}): {fmt_num(its[0]['t_max_us'])} us."]
    if len(its) > 1:
        points = {r["choice"]: (1.0, 1.0, 1.0) if r["choice"] == first else
                  estimate(r.get("vs_first") or 0.0, r.get("vs_first_ci")) for r in its}
        who = leaders(points, True)
        if len(who) == 1:
            x = points[who[0]]
            lines.append(f"Fastest: {who[0]}" + ("" if who[0] == first else
                                                 f" ({_interval_text([x])} x {first})") + ".")
        else:
            lines.append(f"Fastest: {_tie(who, len(points))}.")
        colls = {}
        for r in records:
            if r.get("kind") == "collective":
                colls.setdefault(r["collective"], []).append(r)
        best = [f"{c}: {min(rs, key=lambda r: r['time_us'])['algorithm']}"
                for c, rs in colls.items() if len({r["algorithm"] for r in rs}) > 1]
        if best:
            lines.append("Least time per collective (sums of medians, a ranking): "
                         + _joined(best))
    return lines


# ----------------------------------------------------------------------------- tune

def tune_answer(records: list[dict], outputs: dict) -> list[str]:
    """The decision's switches, the library's inconsistencies and monotonicity, the held-out
    penalty, and the files written."""
    lines = []
    switched = [r for r in outputs.get("ranges", []) if r.choice != TUNE_DEFAULT]
    if switched:
        lines.append("Switch from the default: " + "; ".join(
            f"{r.collective} p={r.ranks} {fmt_bytes(r.lo)}-{fmt_bytes(r.hi)}: {r.choice} "
            f"({r.gain:.2f}x)" for r in switched) + ".")
    else:
        lines.append("The library's default is never significantly beaten: the decision "
                     "keeps it everywhere.")
    bad = []
    for r in records:
        if r["kind"] == "composition" and (r.get("x_default_ci") or [0])[0] is not None \
                and r["x_default_ci"][0] > 1.0:
            bad.append(f"{r['collective']} at {fmt_bytes(r['bytes'])} p={r['ranks']} "
                       f"slower than {r['candidate'].removeprefix('compose:')} "
                       f"({r['x_default']:.2f}x)")
    lines.append("Self-consistency (PGMPI): " + ("; ".join(bad) + "." if bad else
                                                 "the library's calls are never "
                                                 "significantly slower than a composition "
                                                 "of its own."))
    mono = _not_monotone(records)
    if mono:
        lines.append("Not monotone in size: " + "; ".join(mono) + ".")
    if outputs.get("holdout"):
        mean, ci = outputs["holdout"]
        lines.append(f"Held out (decided on every other size): mean penalty "
                     f"{100 * mean:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] against the "
                     "per-size best.")
    if outputs.get("ompi_rules"):
        lines.append(f"Files: {outputs['ompi_rules']}, {outputs['mpich_selection']}, "
                     f"{outputs['distbench_tuning']}.")
    return lines


def _not_monotone(records: list[dict]) -> list[str]:
    """Sizes where the default took significantly longer than at the next larger size."""
    out = []
    by: dict = {}
    for r in records:
        if r["kind"] == "candidate" and r["candidate"] == TUNE_DEFAULT:
            by.setdefault((r["collective"], r["ranks"]), []).append(r)
    for (coll, k), rs in by.items():
        rs.sort(key=lambda r: r["bytes"])
        for a, b in zip(rs, rs[1:], strict=False):
            if a["t_max_us_ci"] and b["t_max_us_ci"] and a["t_max_us_ci"][0] > \
                    b["t_max_us_ci"][1]:
                out.append(f"{coll} p={k}: {fmt_bytes(a['bytes'])} slower than "
                           f"{fmt_bytes(b['bytes'])}")
    return out


# ----------------------------------------------------------------------------- parallel

def parallel_answer(records: Sequence[dict]) -> list[str]:
    """The answer under parallel's table: the fastest layout and ZeRO stage by step time per
    sequence (significant only if its interval is below every other's), and what limits it:
    the larger of the pipeline bubble and the exposed time beyond it (communication), else
    compute."""
    recs = [r for r in records if r.get("kind", "step") == "step" and "step_s" in r]
    if not recs:
        return []

    def label(r):
        return (f"{r['layout']} ZeRO {r['zero']}, bucket {r['bucket_mb']:g} MiB"
                + ("" if r.get("overlap", True) else ", no overlap"))

    per_seq = {}
    for r in recs:
        b = r.get("global_batch", 1)
        lo, hi = r.get("step_s_ci") or NO_INTERVAL
        per_seq[label(r)] = (r["step_s"] / b, lo / b, hi / b)
    who = leaders(per_seq, False)
    best = next(r for r in recs if label(r) == who[0])
    ms = per_seq[who[0]][0] * 1e3
    bubble = best.get("bubble") or 0.0
    # the pipeline's waits are part of the exposed time: what is left of it is communication
    exposed = max(0.0, (best["exposed_s"] / best["step_s"] if best["step_s"] else 0.0) - bubble)
    if max(exposed, bubble) < 0.1:
        limit = f"compute ({100 * (1 - exposed - bubble):.0f} % of the step)"
    elif exposed >= bubble:
        limit = f"exposed communication ({100 * exposed:.0f} % of the step)"
    else:
        limit = f"the pipeline bubble ({100 * bubble:.0f} % idle)"
    if len(who) == 1 or len(per_seq) == 1:
        head = f"Fastest: {who[0]} ({fmt_num(ms)} ms per sequence)"
    else:
        head = (f"Fastest: no significant difference between {', '.join(who)} "
                f"(best {fmt_num(ms)} ms per sequence)")
    return [f"{head}; limited by {limit}."]


__all__ = ["collective_answer", "compress_answer", "estimate", "fed_answer", "leaders",
           "parallel_answer", "per_link_rate", "rate_text", "replay_answer", "sgd_answer",
           "size_ranges", "span", "target_answer", "tune_answer"]
