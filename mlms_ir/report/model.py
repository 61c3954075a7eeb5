"""The report data model: plain dataclasses that serialise to the documented JSON schema.

Every renderer (rich table, JSON, CSV, Markdown, later HTML) reads these; none computes.
Changing a field is a :data:`SCHEMA_VERSION` bump with a note in ``docs/schema.rst``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

#: Version of the analysis JSON schema (``schema_version`` in every output).
SCHEMA_VERSION = "1.0"

ShapeList = list[int | str | None] | None


def json_safe(obj: Any) -> Any:
    """A copy that JSON can write and read back: NaN and infinities become None, tuples lists,
    dict keys strings. Every report's ``to_dict`` and the results store go through it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass
class NodeCost:
    """Static figures of one ONNX node.

    ``status`` is ``counted`` (a formula applied), ``free`` (known to cost nothing),
    ``unknown_op`` (no formula: listed, never silently zero) or ``unresolved`` (a shape it needs is
    unknown; bind the dims named in the analysis' ``unresolved_dims``).
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


@dataclass
class Totals:
    """Whole-model totals (main graph; control-flow nodes carry their subgraphs' cost)."""

    params: int
    param_bytes: int
    params_by_dtype: dict[str, int]
    macs: int
    int_macs: int
    flops: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    constant_bytes: int
    activation_bytes: int
    peak_activation_bytes: int
    peak_at_node: str | None
    input_bytes: int
    output_bytes: int
    nodes: int
    counted_nodes: int
    unresolved_nodes: int
    unknown_nodes: int
    complete: bool


@dataclass
class OpTypeStat:
    op_type: str
    domain: str
    count: int
    macs: int
    flops: int
    params: int
    share_macs: float
    share_flops: float


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
class Block:
    """A repeated block: ``count`` instances of the same structure."""

    name: str
    count: int
    nodes_per_block: int
    op_types: dict[str, int]
    macs: int
    flops: int
    params: int
    instances: list[str]
    found_by: str
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
    lower_bound_us: float
    compute_bound_nodes: int
    memory_bound_nodes: int
    compute_bound_share: float


@dataclass
class ModelInfo:
    name: str
    path: str | None
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
class Analysis:
    """The result of :func:`mlms_ir.analyze`: everything the static passes know of a model."""

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
    schema_version: str = SCHEMA_VERSION
    tool: dict[str, str] = field(default_factory=dict)

    @property
    def op_types(self) -> list[OpTypeStat]:
        return self.structure.op_types

    @property
    def blocks(self) -> list[Block]:
        return self.structure.blocks

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object (see docs/schema.rst)."""
        structure = dataclasses.asdict(self.structure)
        for b in structure["blocks"]:
            b.pop("members", None)
        return {
            "schema_version": self.schema_version,
            "tool": dict(self.tool),
            "model": dataclasses.asdict(self.model),
            "convention": dict(self.convention),
            "bindings": dict(self.bindings),
            "totals": dataclasses.asdict(self.totals),
            "op_types": structure.pop("op_types"),
            "blocks": structure.pop("blocks"),
            "structure": structure,
            "unknown_ops": [dataclasses.asdict(u) for u in self.unknown_ops],
            "unresolved_dims": [dataclasses.asdict(u) for u in self.unresolved_dims],
            "roofline": dataclasses.asdict(self.roofline) if self.roofline is not None else None,
            "warnings": list(self.warnings),
            # NodeCost holds only scalars and lists of shapes: a shallow copy is a faithful dict
            "nodes": [dict(vars(n)) for n in self.nodes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text; with ``indent``, everything is indented except the nodes, one per line
        (readable, and an order of magnitude faster to write on large graphs)."""
        d = self.to_dict()
        if indent is None:
            return json.dumps(d)
        nodes = d.pop("nodes")
        head = json.dumps(d, indent=indent)
        pad = " " * indent
        body = (",\n" + pad * 2).join(json.dumps(n) for n in nodes)
        tail = f'"nodes": [\n{pad * 2}{body}\n{pad}]' if nodes else '"nodes": []'
        return head[:-2] + f",\n{pad}{tail}\n}}"
