"""Communication traces: one list of :class:`TraceOp` per rank, read from a PyTorch execution
trace (Chakra JSON), PARAM's basic comms trace or distbench's own format, and written in
distbench's format or as an execution trace.

Formats read (plain or gzip; one file replayed as every rank's view, one file per rank, or a
folder of ``*_<rank>.json[.gz]`` files):

* PyTorch execution traces, schema 1.1.x (``{"schema": "1.1.0-chakra.0.0.4", "nodes": [...]}``):
  a ``record_param_comms`` node's ``attrs`` carry ``collective_name``, ``dtype``,
  ``in_msg_nelems``, ``out_msg_nelems``, ``in_split_size``, ``out_split_size``, ``pg_name``,
  ``global_rank_start``, ``global_rank_stride`` and ``pg_size``; the root of a rooted collective
  is the fourth input value (``inputs.values[3]``).
* The same schema 1.0.x, whose comm nodes have no ``attrs``: the facts sit positionally in the
  node's inputs (``inputs``, ``input_types``, ``input_shapes`` at the node level, or the
  ``inputs`` object of 1.1): the tensors first (``[id, storage, offset, numel, itemsize,
  device]``, their type ``Tensor(float)`` the dtype), then an integer, the process group
  ``[name, desc]``, the root, the collective's name, the input and output split sizes, the
  group's first global rank, stride and size.
* PARAM's basic comms trace: a JSON list of ops with ``comms`` (the collective), ``in_msg_size``
  and ``out_msg_size`` (elements), ``dtype``, ``in_split``, ``out_split``, ``root``,
  ``pg_id`` or ``global_ranks`` / ``world_size``, ``req`` and ``markers`` ignored.
* distbench's own (``{"format": "distbench-trace", "version": 1, "ranks": p, "ops": [...]}``),
  what ``distbench parallel --export-trace`` writes: per op its collective, dtype, counts and
  splits, group (global ranks) and, for point-to-point ops, the peer; per-rank lists in
  ``"per_rank"`` when the ranks differ.

A ``wait`` completes the latest earlier op still outstanding: an op a wait completes was issued
nonblocking, the others are blocking (:func:`match_waits`). Sizes are elements of the op's
dtype, as the traces give them. Bad traces (a truncated gzip, not JSON, a schema this reader
cannot read, negative or huge sizes) raise UsageError with one line.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distbench.errors import UsageError
from distbench.files import MAX_DATA_BYTES, regular_file

# a trace op's collective -> distbench's name ("wait", "barrier", "send", "recv" are ops too)
COLLECTIVES = {
    "allreduce": "allreduce", "all_reduce": "allreduce",
    "broadcast": "bcast", "bcast": "bcast",
    "reduce": "reduce",
    "allgather": "allgather", "all_gather": "allgather", "all_gather_base": "allgather",
    "_allgather_base": "allgather", "allgather_base": "allgather",
    "allgather_into_tensor": "allgather", "all_gather_into_tensor": "allgather",
    "reduce_scatter": "reduce-scatter", "reducescatter": "reduce-scatter",
    "reduce_scatter_base": "reduce-scatter", "_reduce_scatter_base": "reduce-scatter",
    "reduce_scatter_tensor": "reduce-scatter",
    "all_to_all": "alltoall", "alltoall": "alltoall", "all_to_all_single": "alltoall",
    "all_to_allv": "alltoallv", "alltoallv": "alltoallv",
    "barrier": "barrier", "send": "send", "recv": "recv", "isend": "send", "irecv": "recv",
    "wait": "wait",
}
DTYPES = {"float": "float32", "float32": "float32", "double": "float64", "float64": "float64",
          "half": "float16", "float16": "float16", "bfloat16": "bfloat16", "long": "int64",
          "int64": "int64", "int": "int32", "int32": "int32", "short": "int16",
          "int16": "int16", "byte": "uint8", "uint8": "uint8",
          "char": "int8", "int8": "int8", "bool": "uint8"}
MAX_ELEMENTS = 1 << 40  # a size beyond this is not a real job's
SCHEMAS = ("1.0", "1.1")


@dataclass
class TraceOp:
    """One communication op of one rank's trace.

    Attributes:
        index: its position among the rank's comm ops (from 0).
        collective: distbench's name (``allreduce``, ``bcast``, ``alltoallv``, ``wait``, ...).
        dtype: NumPy's name of the element type (``float32``).
        count: input elements (``in_msg_nelems``); out_count: output elements.
        in_split, out_split: all-to-all-v's elements per peer (empty otherwise).
        group: the global ranks of its process group, in group-rank order (empty: all).
        root: the root's rank in the group (rooted collectives), or the peer (send, recv).
        name: the op's name in the trace (``record_param_comms:allreduce``).
        nonblocking: a later ``wait`` completes it (:func:`match_waits`).
        completes: for a ``wait``, the index of the op it completes (None: none).
    """

    index: int
    collective: str
    dtype: str = "float32"
    count: int = 0
    out_count: int = 0
    in_split: list = field(default_factory=list)
    out_split: list = field(default_factory=list)
    group: list = field(default_factory=list)
    root: int = 0
    name: str = ""
    nonblocking: bool = False
    completes: int | None = None

    @property
    def itemsize(self) -> int:
        import numpy as np  # only once sizes are asked for

        if self.dtype == "bfloat16":
            return 2
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the larger of its input and output."""
        return max(self.count, self.out_count) * self.itemsize


@dataclass
class Trace:
    """Every rank's ops, and where they came from.

    Attributes:
        ranks: p, the ranks the trace was recorded at (the job's size for one view).
        per_rank: one list of ops per rank (the same list for a symmetric trace's one view).
        source: the file(s); format: ``chakra-1.1``, ``chakra-1.0``, ``param``, ``distbench``.
        unknown: ops of names this reader does not replay, counted by name.
    """

    ranks: int
    per_rank: list
    source: str
    format: str
    unknown: dict = field(default_factory=dict)

    def ops(self, rank: int) -> list[TraceOp]:
        return self.per_rank[rank % len(self.per_rank)]


# ----------------------------------------------------------------------------- reading

def _load(path: Path):
    """The JSON of a plain or gzip file (one line for what is wrong)."""
    raw = regular_file(path, "trace", MAX_DATA_BYTES).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(f"trace {path}: not a complete gzip file ({exc})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"trace {path}: not JSON ({str(exc).splitlines()[0]})") from None


def _size(value, what: str, path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ELEMENTS:
        raise UsageError(f"trace {path}: {what} {value!r} is not a size of 0 to 2^40 elements")
    return value


def _splits(value, path) -> list[int]:
    if isinstance(value, str):
        try:
            value = json.loads(value or "[]")
        except ValueError:
            raise UsageError(f"trace {path}: split sizes {value!r} are not a list") from None
    if not isinstance(value, list):
        raise UsageError(f"trace {path}: split sizes {value!r} are not a list")
    return [_size(v, "a split size", path) for v in value]


def _dtype(name, path) -> str:
    key = str(name).lower().replace("torch.", "")
    m = re.search(r"tensor\((\w+)\)", key)
    key = m.group(1) if m else key
    if key not in DTYPES:
        raise UsageError(f"trace {path}: dtype {name!r} is not one this replay knows")
    return DTYPES[key]


def _group(start, stride, size) -> list[int]:
    if size is None or size <= 0:
        return []
    return [int(start or 0) + i * int(stride or 1) for i in range(int(size))]


def _chakra_node(node: dict, index: int, path) -> TraceOp | str:
    """A ``record_param_comms`` node as an op, or the name of an op this reader skips."""
    attrs = {a.get("name"): a.get("value") for a in node.get("attrs") or []
             if isinstance(a, dict)}
    inputs = node.get("inputs")
    if isinstance(inputs, dict):
        values, types = inputs.get("values") or [], inputs.get("types") or []
    else:
        values, types = inputs or [], node.get("input_types") or []
    if "collective_name" in attrs:
        name = attrs["collective_name"]
        dtype = attrs.get("dtype", "Float")
        count = attrs.get("in_msg_nelems", 0)
        out = attrs.get("out_msg_nelems", count)
        ins, outs = attrs.get("in_split_size", []), attrs.get("out_split_size", [])
        group = _group(attrs.get("global_rank_start"), attrs.get("global_rank_stride"),
                       attrs.get("pg_size"))
    else:  # schema 1.0: positional
        name = next((v for v in values if isinstance(v, str) and v.lower() in COLLECTIVES),
                    None) or next((v for v in values if isinstance(v, str) and v), None)
        if name is None:
            return "record_param_comms (no collective name)"
        at = values.index(name)
        tensors = values[0] if values and isinstance(values[0], list) else []
        numel = [t[3] for t in tensors if isinstance(t, list) and len(t) > 3]
        count = sum(numel) if numel else 0
        out = 0  # not recorded: the collective's convention gives it
        dtype = next((t for t in types if "Tensor(" in str(t)), "Tensor(float)")
        ins = values[at + 1] if len(values) > at + 1 else []
        outs = values[at + 2] if len(values) > at + 2 else []
        tail = values[at + 3:at + 6]
        group = _group(*tail) if len(tail) == 3 else []
        if "out_msg_nelems" in node:
            out = node["out_msg_nelems"]
    key = str(name).lower()
    if key not in COLLECTIVES:
        return str(name)
    coll = COLLECTIVES[key]
    root = values[3] if len(values) > 3 and isinstance(values[3], int) else 0
    if coll == "wait":
        return TraceOp(index, "wait", name=f"record_param_comms:{name}")
    op = TraceOp(index, coll, _dtype(dtype, path), _size(count, "in_msg_nelems", path),
                 _size(out, "out_msg_nelems", path), _splits(ins, path), _splits(outs, path),
                 group, int(root), f"record_param_comms:{name}")
    return op


def _from_chakra(doc: dict, path) -> tuple[list[TraceOp], dict, str]:
    schema = str(doc.get("schema", ""))
    major = ".".join(schema.split(".")[:2])
    if major not in SCHEMAS:
        raise UsageError(f"trace {path}: execution-trace schema {schema!r} (this replay reads "
                         f"{', '.join(s + '.x' for s in SCHEMAS)})")
    ops, unknown = [], {}
    for node in doc.get("nodes") or []:
        if not isinstance(node, dict) or node.get("name") != "record_param_comms":
            continue
        got = _chakra_node(node, len(ops), path)
        if isinstance(got, str):
            unknown[got] = unknown.get(got, 0) + 1
        else:
            ops.append(got)
    return ops, unknown, f"chakra-{major}"


def _from_param(doc: list, path) -> tuple[list[TraceOp], dict, str, int | None]:
    ops, unknown, world = [], {}, None
    for item in doc:
        if not isinstance(item, dict) or "comms" not in item:
            raise UsageError(f"trace {path}: a PARAM trace is a list of ops with 'comms'")
        key = str(item["comms"]).lower()
        if isinstance(item.get("world_size"), int):
            world = max(world or 0, item["world_size"])
        if key not in COLLECTIVES:
            unknown[item["comms"]] = unknown.get(item["comms"], 0) + 1
            continue
        coll = COLLECTIVES[key]
        if coll == "wait":
            ops.append(TraceOp(len(ops), "wait", name=f"param:{item['comms']}"))
            continue
        count = _size(item.get("in_msg_size", 0), "in_msg_size", path)
        ranks = item.get("global_ranks") or []
        ops.append(TraceOp(len(ops), coll, _dtype(item.get("dtype", "float"), path), count,
                           _size(item.get("out_msg_size", count), "out_msg_size", path),
                           _splits(item.get("in_split", []), path),
                           _splits(item.get("out_split", []), path),
                           [int(r) for r in ranks], int(item.get("root", item.get("peer", 0))),
                           f"param:{item['comms']}"))
    return ops, unknown, "param", world


def _from_distbench(doc: dict, path) -> tuple[list, int]:
    if doc.get("version") != 1:
        raise UsageError(f"trace {path}: distbench trace version {doc.get('version')!r} "
                         "(this replay reads 1)")
    ranks = doc.get("ranks")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or not 1 <= ranks <= 1 << 20:
        raise UsageError(f"trace {path}: 'ranks' is {ranks!r}")
    lists = doc.get("per_rank") or [doc.get("ops") or []]
    per_rank = []
    for ops in lists:
        mine = []
        for raw in ops:
            coll = raw.get("collective")
            if coll not in set(COLLECTIVES.values()):
                raise UsageError(f"trace {path}: unknown collective {coll!r}")
            mine.append(TraceOp(len(mine), coll, _dtype(raw.get("dtype", "float32"), path),
                                _size(raw.get("count", 0), "count", path),
                                _size(raw.get("out_count", raw.get("count", 0)), "out_count",
                                      path),
                                _splits(raw.get("in_split", []), path),
                                _splits(raw.get("out_split", []), path),
                                [int(r) for r in raw.get("group", [])], int(raw.get("root", 0)),
                                raw.get("name", coll)))
        per_rank.append(mine)
    return per_rank, ranks


def read_one(path: Path) -> tuple[list, dict, str, int | None]:
    """(ops of one rank's view, unknown op names, format, recorded ranks or None) of a file."""
    doc = _load(path)
    if isinstance(doc, dict) and doc.get("format") == "distbench-trace":
        per_rank, ranks = _from_distbench(doc, path)
        return per_rank, {}, "distbench", ranks
    if isinstance(doc, dict) and "nodes" in doc:
        ops, unknown, fmt = _from_chakra(doc, path)
        sizes = {o.group and len(o.group) for o in ops if o.group}
        return [ops], unknown, fmt, max(sizes) if sizes else None
    if isinstance(doc, list):
        ops, unknown, fmt, world = _from_param(doc, path)
        return [ops], unknown, fmt, world
    raise UsageError(f"trace {path}: neither an execution trace (nodes), a PARAM trace (a list "
                     "of ops) nor a distbench trace")


def _rank_of(path: Path) -> int | None:
    m = re.search(r"(\d+)(\.json)?(\.gz)?$", path.name)
    return int(m.group(1)) if m else None


def read_trace(paths: list[str]) -> Trace:
    """The trace in ``paths``: one file (every rank's view, or a distbench trace with its
    ranks), several files (one per rank, in the order of the numbers ending their names), or
    a folder of them; every wait matched (:func:`match_waits`).

    Raises:
        UsageError: no file, an unreadable or malformed one, files of different formats.
    """
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files += sorted((f for f in path.iterdir() if re.search(r"\.json(\.gz)?$", f.name)),
                            key=lambda f: (_rank_of(f) is None, _rank_of(f) or 0, f.name))
        else:
            files.append(path)
    if not files:
        raise UsageError(f"no trace files in {' '.join(paths)}")
    if len(files) > 1:
        files.sort(key=lambda f: (_rank_of(f) is None, _rank_of(f) or 0, f.name))
    per_rank, unknown, formats, ranks = [], {}, set(), None
    for f in files:
        lists, unk, fmt, recorded = read_one(f)
        per_rank += lists
        formats.add(fmt)
        ranks = recorded if ranks is None else ranks
        for k, v in unk.items():
            unknown[k] = unknown.get(k, 0) + v
    if len(formats) > 1:
        raise UsageError(f"the trace files mix formats: {', '.join(sorted(formats))}")
    for ops in per_rank:
        match_waits(ops)
    if len(files) > 1:
        ranks = len(per_rank)
    return Trace(ranks or 0, per_rank, " ".join(str(f) for f in files), formats.pop(), unknown)


def match_waits(ops: list[TraceOp]) -> None:
    """Each ``wait`` completes the latest earlier op that no wait has completed yet (what a
    ``work.wait()`` after ``async_op=True`` calls records: DDP's buffer broadcasts are each
    followed by their wait, while its gradient AllReduces, completed through futures, have
    none): that op is issued nonblocking; ops no wait completes are blocking."""
    pending: list[TraceOp] = []
    for op in ops:
        if op.collective == "wait":
            if pending:
                done = pending.pop()
                done.nonblocking, op.completes = True, done.index
        elif op.collective not in ("barrier",):
            pending.append(op)


# ----------------------------------------------------------------------------- writing

def to_distbench(ranks: int, per_rank: list[list[TraceOp]], source: str = "") -> dict:
    """A distbench trace document (``per_rank`` lists; one list: every rank's view)."""
    def op_dict(o: TraceOp) -> dict:
        d = {k: v for k, v in asdict(o).items()
             if k not in ("index", "nonblocking", "completes")}
        return {k: v for k, v in d.items() if v not in ([], "") or k == "collective"}

    doc = {"format": "distbench-trace", "version": 1, "ranks": ranks, "source": source}
    if len(per_rank) == 1:
        doc["ops"] = [op_dict(o) for o in per_rank[0]]
    else:
        doc["per_rank"] = [[op_dict(o) for o in ops] for ops in per_rank]
    return doc


CHAKRA_NAMES = {"allreduce": "allreduce", "bcast": "broadcast", "reduce": "reduce",
                "allgather": "all_gather", "reduce-scatter": "reduce_scatter",
                "alltoall": "all_to_all", "alltoallv": "all_to_allv", "barrier": "barrier",
                "send": "send", "recv": "recv", "wait": "wait"}
CHAKRA_DTYPES = {"float32": "Float", "float64": "Double", "float16": "Half",
                 "bfloat16": "BFloat16", "int64": "Long", "int32": "Int", "int16": "Short",
                 "uint8": "Byte",
                 "int8": "Char"}


def to_chakra(ops: list[TraceOp], ranks: int) -> dict:
    """One rank's ops as a PyTorch execution trace, schema 1.1.0-chakra.0.0.4: one
    ``record_param_comms`` node per op with the attributes this reader reads."""
    nodes = [{"id": 1, "name": "[pytorch|profiler|execution_trace|process]", "ctrl_deps": 0,
              "inputs": {"values": [], "shapes": [], "types": []},
              "outputs": {"values": [], "shapes": [], "types": []}, "attrs": []}]
    for i, o in enumerate(ops):
        group = o.group or list(range(ranks))
        stride = group[1] - group[0] if len(group) > 1 else 1
        attrs = [("collective_name", "string", CHAKRA_NAMES[o.collective]),
                 ("dtype", "string", CHAKRA_DTYPES.get(o.dtype, "Float")),
                 ("in_msg_nelems", "uint64", o.count), ("out_msg_nelems", "uint64", o.out_count),
                 ("in_split_size", "string", json.dumps(o.in_split)),
                 ("out_split_size", "string", json.dumps(o.out_split)),
                 ("global_rank_start", "uint64", group[0]),
                 ("global_rank_stride", "uint64", stride), ("pg_name", "string", "0"),
                 ("pg_size", "uint64", len(group))]
        nodes.append({"id": i + 2, "name": "record_param_comms", "ctrl_deps": 1,
                      "inputs": {"values": [[], 0, ["0", "default_pg"], o.root,
                                            CHAKRA_NAMES[o.collective]],
                                 "shapes": [], "types": []},
                      "outputs": {"values": [], "shapes": [], "types": []},
                      "attrs": [{"name": n, "type": t, "value": v} for n, t, v in attrs]})
    return {"schema": "1.1.0-chakra.0.0.4", "pid": 0, "time": "", "start_ts": 0,
            "nodes": nodes, "finish_ts": 0}


__all__ = ["COLLECTIVES", "DTYPES", "Trace", "TraceOp", "match_waits", "read_one",
           "read_trace", "to_chakra", "to_distbench"]
