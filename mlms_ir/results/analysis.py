"""The ``analysis`` result: what the static passes know of a model (:func:`mlms_ir.analyze`).

Plain dataclasses that serialise to the documented JSON schema (``docs/schema.rst``); every
renderer (rich table, JSON, CSV, Markdown, HTML) reads them and none computes. Changing a field
is a :data:`SCHEMA_VERSION` bump with a note in ``docs/schema.rst``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import Any, TextIO

from mlms_ir.results.base import ModelRef, Result, build, build_dataclass, check_kind, field_types, json_fields, to_plain

#: Version of the analysis JSON schema (``schema_version`` in every output).
SCHEMA_VERSION = "1.2"

#: The figures that can be expressions of the model's dims, as keys of the ``symbolic`` objects.
SYMBOLIC_KEYS = ("macs", "flops", "bytes_read", "bytes_written", "output_bytes", "activation_bytes",
                 "peak_activation_bytes", "input_bytes", "roofline_s")

ShapeList = list[int | str | None] | None

#: How the node tables can be ordered (``analyze --sort``): here, not beside the rich renderer,
#: so that checking the flag imports no renderer.
SORT_KEYS = ("macs", "flops", "params", "output_bytes", "bytes", "time", "order")


def _node_dict(n: NodeCost) -> dict[str, Any]:
    """``n``'s JSON fields by name (``rank`` is not one), in field order."""
    return dict(zip(_NODE_JSON_FIELDS, _node_json_values(n)))


@dataclass(slots=True)  # no __dict__ a node: 200,000 NodeCosts hold tens of MB less
class NodeCost:
    """Static figures of one ONNX node.

    ``status`` is ``counted`` (a formula applied), ``free`` (known to cost nothing),
    ``unknown_op`` (no formula: listed, never silently zero) or ``unresolved`` (a shape it needs is
    unknown; bind the dims named in the analysis' ``unresolved_dims``).

    While the model's dims are unbound, a figure that depends on them is None and ``symbolic``
    holds it as an exact formula (a string in sympy syntax, keyed like the field; the roofline
    time as ``roofline_s``, in seconds).
    """

    id: str
    name: str
    op_type: str
    domain: str
    status: str
    macs: int | None
    flops: int | None
    int_macs: bool
    bytes_read: int | None
    bytes_written: int | None
    params: int
    param_bytes: int
    input_shapes: list[ShapeList]
    output_shapes: list[ShapeList]
    output_bytes: int | None
    intensity: float | None
    parent: str | None = None
    note: str = ""
    bound: str | None = None
    time_lower_bound_us: float | None = None
    symbolic: dict[str, str] | None = None
    #: Values used only to order nodes whose figures are formulas (each at every dim = 1024).
    rank: dict[str, float] | None = field(default=None, repr=False, metadata={"json": False})


_NODE_JSON_FIELDS = tuple(f.name for f in fields(NodeCost) if f.metadata.get("json", True))
_node_json_values = attrgetter(*_NODE_JSON_FIELDS)


@dataclass
class Totals:
    """Whole-model totals (main graph; control-flow nodes carry their subgraphs' cost)."""

    params: int
    param_bytes: int
    params_by_dtype: dict[str, int]
    macs: int | None
    int_macs: int | None
    flops: int | None
    bytes_read: int | None
    bytes_written: int | None
    weight_bytes: int
    constant_bytes: int
    activation_bytes: int | None
    peak_activation_bytes: int | None
    peak_at_node: str | None
    input_bytes: int | None
    output_bytes: int | None
    nodes: int
    counted_nodes: int
    unresolved_nodes: int
    unknown_nodes: int
    complete: bool
    #: Figures that are formulas of the model's dims (None where they are numbers): strings in
    #: sympy syntax keyed like the fields above (``roofline_s``: the roofline bound in seconds).
    symbolic: dict[str, str] | None = None
    #: Where the peak depends on the dims: every node whose live total may be the largest.
    peak_candidates: list[str] = field(default_factory=list)


@dataclass
class OpTypeStat:
    op_type: str
    domain: str
    count: int
    macs: int | None
    flops: int | None
    params: int
    share_macs: float | None
    share_flops: float | None
    symbolic: dict[str, str] | None = None


@dataclass
class UnknownOp:
    op_type: str
    domain: str
    count: int
    nodes: list[str]


@dataclass
class UnresolvedDim:
    """A dim that stays unknown after inference and bindings, with the nodes it leaves uncounted."""

    dim: str
    inputs: list[str]
    nodes: list[str]


@dataclass
class Dim:
    """A free symbol of the analysis' formulas: a dim of an input, or one set by the data."""

    name: str
    kind: str  # "input", "data" (set at run time by the data), "unknown" (no rule derives it)
    meaning: str
    origin: str | None = None


@dataclass
class Block:
    """A repeated block: ``count`` instances of the same structure."""

    name: str
    count: int
    nodes_per_block: int
    op_types: dict[str, int]
    macs: int | None
    flops: int | None
    params: int
    instances: list[str]
    found_by: str
    symbolic: dict[str, str] | None = None
    #: The node ids of each instance (for the HTML report's collapsing; not in the JSON).
    members: list[list[str]] = field(default_factory=list, repr=False, metadata={"json": False})


@dataclass
class SubgraphInfo:
    owner: str
    owner_op: str
    attribute: str
    nodes: int
    multiplier: int | None
    note: str
    #: The multiplier as an expression of the model's dims when it is one (a Loop's symbolic trip count).
    symbolic_multiplier: str | None = None


@dataclass
class Structure:
    node_count: int
    node_count_with_subgraphs: int
    depth: int
    op_types: list[OpTypeStat]
    blocks: list[Block]
    subgraphs: list[SubgraphInfo]


@dataclass
class Roofline:
    """A roofline bound on one device: the model cannot run faster than ``lower_bound_us``."""

    device: str
    peak_flops: dict[str, float]
    bandwidth_bytes_per_s: float
    ridge_intensity: float
    lower_bound_us: float | None
    compute_bound_nodes: int
    memory_bound_nodes: int
    compute_bound_share: float | None
    #: Nodes whose compute and memory times cross as the dims grow (no single bound).
    dims_bound_nodes: int = 0
    #: The bound as an expression of the model's dims (µs) while they are unbound; not in the
    #: JSON (``totals.symbolic.roofline_s`` carries it, in seconds).
    symbolic_lower_bound_us: Any = field(default=None, repr=False, metadata={"json": False})


@dataclass
class ModelInfo(ModelRef):
    """The analysed model file: the shared header (name, path) and what the file records."""

    graph_name: str
    producer: str
    ir_version: int
    opsets: dict[str, int]
    file_bytes: int | None
    external_data_bytes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    doc_string: str
    metadata: dict[str, str]


@dataclass
class Analysis(Result):
    """The result of :func:`mlms_ir.analyze`: everything the static passes know of a model."""

    kind = "analysis"

    model: ModelInfo
    convention: dict[str, str]
    bindings: dict[str, Any]
    totals: Totals
    structure: Structure
    unknown_ops: list[UnknownOp]
    unresolved_dims: list[UnresolvedDim]
    nodes: list[NodeCost]
    roofline: Roofline | None = None
    warnings: list[str] = field(default_factory=list)
    #: Every free symbol of the formulas (empty when all figures are numbers).
    dims: list[Dim] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION
    tool: dict[str, str] = field(default_factory=dict)

    @property
    def op_types(self) -> list[OpTypeStat]:
        return self.structure.op_types

    @property
    def blocks(self) -> list[Block]:
        return self.structure.blocks

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object (see docs/schema.rst): the structure's op types and blocks
        at the top level, the nodes last."""
        d = self.head_dict()
        # NodeCost holds only scalars, shapes and a dict of strings: a shallow copy is faithful
        # (and fast on 100k-node graphs)
        d["nodes"] = [_node_dict(n) for n in self.nodes]
        return d

    def head_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without its ``nodes`` (which :meth:`write_json` streams)."""
        structure = to_plain(self.structure)
        return {
            "kind": self.kind,
            "schema_version": self.schema_version,
            "tool": dict(self.tool),
            "model": to_plain(self.model),
            "convention": dict(self.convention),
            "bindings": to_plain(self.bindings),
            "totals": to_plain(self.totals),
            "op_types": structure.pop("op_types"),
            "blocks": structure.pop("blocks"),
            "structure": structure,
            "unknown_ops": to_plain(self.unknown_ops),
            "unresolved_dims": to_plain(self.unresolved_dims),
            "roofline": to_plain(self.roofline),
            "warnings": list(self.warnings),
            "dims": to_plain(self.dims),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        """The analysis a :meth:`to_dict` object (or a saved ``analyze --format json`` file) describes.

        What the JSON leaves out stays at its default: blocks' member node ids, the nodes' ranking
        values, the roofline's bound as a sympy expression (``totals.symbolic.roofline_s`` keeps
        it as text)."""
        check_kind(cls, data)
        structure = dict(data.get("structure") or {})
        structure["op_types"] = data.get("op_types") or []
        structure["blocks"] = data.get("blocks") or []
        fields = {f.name for f in json_fields(cls)} - {"structure"}
        body = {k: v for k, v in data.items() if k in fields}
        types = field_types(cls)
        kwargs = {k: build(types[k], v) for k, v in body.items()}
        kwargs["structure"] = build_dataclass(Structure, structure)
        return cls(**kwargs)

    @property
    def symbolic(self) -> bool:
        """True when some figure is a formula of unbound dims."""
        return bool(self.totals.symbolic)

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text; with ``indent``, everything is indented except the nodes, one compact
        object per line (readable, and an order of magnitude faster to write on large graphs)."""
        if indent is None:
            return json.dumps(self.to_dict())
        buf = io.StringIO()
        self.write_json(buf, indent=indent)
        return buf.getvalue()[:-1]  # without write_json's final newline

    def write_json(self, fh: TextIO, *, indent: int = 2, head: dict[str, Any] | None = None) -> None:
        """Write :meth:`to_json`'s text and a newline to ``fh``, the nodes encoded from the
        NodeCosts a thousand at a time (a 200,000-node analysis never becomes one list of dicts
        or one string). ``head`` is :meth:`head_dict`'s object when the caller has it already."""
        d = self.head_dict() if head is None else head
        head_text = json.dumps(d, indent=indent)
        pad = " " * indent
        nodes = self.nodes
        if not nodes:
            fh.write(head_text[:-2] + f',\n{pad}"nodes": []\n}}\n')
            return
        fh.write(head_text[:-2] + f',\n{pad}"nodes": [\n')
        ahead, self._nodes_text = self._nodes_text, None
        try:
            done = ahead is not None and ahead.indent == indent and ahead.count == len(nodes) and ahead.copy_to(fh)
        finally:
            if ahead is not None:
                ahead.close()
        if not done:
            for piece in nodes_json_chunks(nodes, indent):
                fh.write(piece)
        fh.write(f"\n{pad}]\n}}\n")

    #: The nodes' text encoded ahead (:meth:`attach_nodes_text`); not a field of the result.
    _nodes_text = None

    def attach_nodes_text(self, text: Any) -> None:
        """Give :meth:`write_json` the nodes' text encoded ahead of it (:func:`nodes_json_chunks`
        written by another process while the passes after the cost pass ran). ``text`` has
        ``indent``, ``count`` (the nodes it encoded), ``copy_to(fh)`` (writes the text and
        returns True, or returns False having written nothing) and ``close()``. The first
        :meth:`write_json` uses it, when its nodes and indent are those; the nodes must not change
        in between."""
        self._nodes_text = text


def nodes_json_chunks(nodes: list[NodeCost], indent: int = 2) -> Iterator[str]:
    """The text :meth:`Analysis.write_json` writes for ``nodes`` (one compact object per line,
    between ``"nodes": [`` and ``]``), a thousand nodes a piece."""
    pad = " " * indent
    sep = ",\n" + pad * 2
    shapes_text: dict[tuple[int, ...], str] = {}
    for start in range(0, len(nodes), 1000):
        yield (pad * 2 if start == 0 else sep) + sep.join(_node_lines(nodes[start:start + 1000], shapes_text))


#: One compact encoder for every node line (json.dumps with separators builds an encoder per call).
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _c_node_encoder():
    """The C encoder ``_COMPACT.encode`` makes on every call, made once and without the check
    for reference cycles (a node's dict holds numbers, strings and lists of them): a quarter
    less time for the 50,000 lines of a large graph. None where json has no C speedups."""
    from json.encoder import c_make_encoder, encode_basestring_ascii

    if c_make_encoder is None:
        return None
    e = _COMPACT
    return c_make_encoder(None, e.default, encode_basestring_ascii, None, e.key_separator, e.item_separator,
                          e.sort_keys, e.skipkeys, e.allow_nan)


_C_NODE_ENCODER = _c_node_encoder()


def _encode_node_line(d: Any) -> str:
    """``_COMPACT.encode(d)``, the same text (``d``: a node's dict, or a value in one)."""
    if _C_NODE_ENCODER is None:
        return _COMPACT.encode(d)
    return "".join(_C_NODE_ENCODER(d, 0))


#: A node's JSON line with every value in place (:func:`_node_lines`), its keys those of
#: ``_NODE_JSON_FIELDS`` in their order (a test holds them so).
_NODE_LINE = ('{"id":%s,"name":%s,"op_type":%s,"domain":%s,"status":%s,"macs":%s,"flops":%s,"int_macs":%s,'
              '"bytes_read":%s,"bytes_written":%s,"params":%s,"param_bytes":%s,"input_shapes":%s,"output_shapes":%s,'
              '"output_bytes":%s,"intensity":%s,"parent":%s,"note":%s,"bound":%s,"time_lower_bound_us":%s,"symbolic":%s}')


def _node_lines(nodes: list[NodeCost], shapes_text: dict[tuple[int, ...], str]) -> list[str]:
    """Each node's JSON line, the text ``_encode_node_line(_node_dict(n))`` gives (a test holds
    them equal), written straight into :data:`_NODE_LINE`: in two thirds of the time (0.25 s
    less for a 50,000-node graph). A node holding a value of another type than its field's
    usual ones (a subclass, a numpy number, a float that is not finite) is encoded through its
    dict.

    ``shapes_text``: the text of each node's input or output shape list by the ids of the shape
    lists in it (the NodeCosts of a graph share a few dozen: the cost pass makes one list per
    distinct shape), kept across the calls of one write; the nodes keep those lists alive."""
    enc = encode_basestring_ascii
    line = _NODE_LINE
    out: list[str] = []
    add = out.append
    for n in nodes:
        (id_, name, op_type, domain, status, macs, flops, int_macs, bytes_read, bytes_written, params, param_bytes,
         input_shapes, output_shapes, output_bytes, intensity, parent, note, bound, t_us, symbolic) = _node_json_values(n)
        if not (type(id_) is str and type(name) is str and type(op_type) is str and type(domain) is str
                and type(status) is str and type(note) is str and type(int_macs) is bool
                and type(params) is int and type(param_bytes) is int
                and type(input_shapes) is list and type(output_shapes) is list
                and (parent is None or type(parent) is str) and (bound is None or type(bound) is str)
                and (symbolic is None or type(symbolic) is dict)
                and (macs is None or type(macs) is int) and (flops is None or type(flops) is int)
                and (bytes_read is None or type(bytes_read) is int) and (bytes_written is None or type(bytes_written) is int)
                and (output_bytes is None or type(output_bytes) is int)
                and (intensity is None or (type(intensity) is float and _finite(intensity)))
                and (t_us is None or (type(t_us) is float and _finite(t_us)))):
            add(_encode_node_line(_node_dict(n)))
            continue
        key = tuple(map(id, input_shapes))
        ins = shapes_text.get(key)
        if ins is None:
            ins = shapes_text[key] = _encode_node_line(input_shapes)
        key = tuple(map(id, output_shapes))
        outs = shapes_text.get(key)
        if outs is None:
            outs = shapes_text[key] = _encode_node_line(output_shapes)
        # %s of an int or a float (their exact types, checked above) is json's text of it
        add(line % (
            enc(id_), enc(name), enc(op_type), enc(domain), enc(status),
            "null" if macs is None else macs, "null" if flops is None else flops,
            "true" if int_macs else "false",
            "null" if bytes_read is None else bytes_read, "null" if bytes_written is None else bytes_written,
            params, param_bytes, ins, outs, "null" if output_bytes is None else output_bytes,
            "null" if intensity is None else intensity,
            "null" if parent is None else enc(parent), enc(note), "null" if bound is None else enc(bound),
            "null" if t_us is None else t_us,
            "null" if symbolic is None else _encode_node_line(symbolic),
        ))
    return out


def _finite(x: float) -> bool:
    """Not a NaN or an infinity (which json writes as ``NaN``, ``Infinity``)."""
    return x - x == 0.0
