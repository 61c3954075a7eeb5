"""The Graph: an ONNX graph wrapped as a networkx multigraph, with tensor facts by name.

One graph node per ONNX node, under a stable, unique id (``n<index>`` after the node's position
in the ONNX file; subgraph nodes are prefixed by their owner, e.g. ``n12/then_branch/n3``), since
ONNX names may be empty or repeated. One edge per (producer, consumer, tensor). Graph inputs,
initializers and outputs are nodes too (``input:x``, ``initializer:w``, ``output:y``), so the
networkx view shows where every tensor comes from.
"""

from __future__ import annotations

import functools
import marshal
import math
from collections.abc import Iterator
from dataclasses import dataclass
from sys import intern
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

if TYPE_CHECKING:
    import networkx as nx

    from mlms_ir.ir.load import NodeRow

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.dtypes import dtype_name, nbytes
from mlms_ir.ir.load import read_node

Dim = int | str | None
Shape = tuple[Dim, ...]
TensorKind = Literal["input", "initializer", "constant", "derived", "activation"]
#: What kind of ONNX value a name holds (the ``value`` case of its TypeProto).
ValueKind = Literal["tensor", "sparse_tensor", "sequence", "map", "optional"]
_VALUE_KINDS: dict[str | None, ValueKind] = {
    "tensor_type": "tensor", "sparse_tensor_type": "sparse_tensor", "sequence_type": "sequence", "map_type": "map",
    "optional_type": "optional", None: "tensor",  # a typeless value info: a tensor of unknown type
}

SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})
_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_STATIC_KINDS = frozenset({"initializer", "constant", "derived"})
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"})


class _cached:
    """``functools.cached_property`` without its lock (Python 3.11 takes an RLock on every first
    get: a quarter of the cost pass on a 50,000-node graph). The value is stored in the instance's
    ``__dict__`` under the same name, so later gets are plain attribute reads; computing it twice
    from two threads gives the same value."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


@dataclass(frozen=True)
class TensorInfo:
    """What is known statically about one tensor.

    ``shape`` is None when even the rank is unknown; a dim is an int when known, a str for a
    named symbolic dim, None when unknown; after the symbolic pass (:mod:`mlms_ir.ir.symbolic`)
    a dim that is not an int is an exact sympy expression of the model's dims. ``kind`` tells where the tensor comes from: a graph
    input, an initializer, a Constant node's output, ``derived`` (computed from weights and
    constants only, e.g. an Identity or DequantizeLinear of a weight) or an activation.
    ``value_kind`` says whether the name holds a tensor or, where its type is declared, a
    sequence, map or optional (then ``elem_type`` is 0 and ``shape`` None; the whole type is
    :meth:`Graph.value_type`).
    """

    name: str
    elem_type: int
    shape: Shape | None
    kind: TensorKind
    external: bool = False
    value_kind: ValueKind = "tensor"

    def __init__(self, name: str, elem_type: int, shape: Shape | None, kind: TensorKind, external: bool = False,
                 value_kind: ValueKind = "tensor") -> None:
        # The instance's dict in one store, where a frozen dataclass' own __init__ makes one
        # object.__setattr__ call per field: 1.1 us instead of 2.3 a tensor, 0.3 s of a
        # 200,000-node graph's load
        object.__setattr__(self, "__dict__", {"name": name, "elem_type": elem_type, "shape": shape, "kind": kind,
                                              "external": external, "value_kind": value_kind})

    @property
    def dtype(self) -> str:
        """The ONNX element type's name: ``float``, ``float16``, ``int64``..."""
        return dtype_name(self.elem_type)

    # The facts below come from one cached pair for a plain shape (most tensors): a tensor's
    # ``__dict__`` gains one entry, not six (27 MB less at 50,000 nodes, about 100 MB at 200,000).
    @_cached
    def _size(self) -> tuple[int, int | None] | None:
        """(elements, bytes) when every dim is an int, else None."""
        return _size_pair(self.elem_type, self.shape)

    @property
    def known(self) -> bool:
        """True when the shape is fully known (every dim an int)."""
        return self._size is not None

    @property
    def numel(self) -> int | None:
        """Number of elements, or None while the shape is not fully known."""
        size = self._size
        return None if size is None else size[0]

    @property
    def nbytes(self) -> int | None:
        """Size in bytes (sub-byte types round up), or None when the shape or type is unknown."""
        size = self._size
        return None if size is None else size[1]

    @property
    def sym_known(self) -> bool:
        """True when every dim is known, as an int or as an exact expression of the model's dims
        (see :mod:`mlms_ir.ir.symbolic`)."""
        return self._size is not None or self._sym_known

    @property
    def sym_numel(self):
        """Number of elements: an int, an expression of the model's dims, or None when unknown."""
        size = self._size
        return size[0] if size is not None else self._sym_numel

    @property
    def sym_nbytes(self):
        """Size in bytes as an int or an expression of the model's dims, or None when unknown."""
        size = self._size
        return size[1] if size is not None else self._sym_nbytes

    @_cached
    def _sym_known(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) or _is_expr(d) for d in self.shape)

    @_cached
    def _sym_numel(self):
        if not self._sym_known:
            return None
        return _sym_prod(self.shape)

    @_cached
    def _sym_nbytes(self):
        n = self._sym_numel
        if n is None:
            return None
        from mlms_ir.ir.dtypes import dtype_bits
        from mlms_ir.ir.expr import ceildiv, normalize

        bits = dtype_bits(self.elem_type)
        if bits is None:
            return None
        return normalize(n * (bits // 8)) if bits % 8 == 0 else ceildiv(n * bits, 8)

    @property
    def is_weight(self) -> bool:
        """Stored in the model: an initializer or a Constant node's value."""
        return self.kind in ("initializer", "constant")

    @property
    def is_static(self) -> bool:
        """Known before any input arrives: stored weights and tensors derived from them only."""
        return self.kind in ("initializer", "constant", "derived")


class Node:
    """One ONNX node as seen by the passes: its id, position, proto and graph, and the proto's op
    type, name, domain (``""`` for ``ai.onnx``), inputs and outputs read once (the passes read them
    again and again; a proto hands back new strings on every read)."""

    __slots__ = ("id", "index", "proto", "graph", "op_type", "name", "domain", "inputs", "outputs", "_attrs")

    def __init__(self, id: str, index: int, proto: onnx.NodeProto, graph: Graph, row: NodeRow | None = None) -> None:
        self.id = id
        self.index = index
        self.proto = proto
        self.graph = graph
        self._attrs: dict[str, Any] | None = None
        # read already, by the loader's check of the file's text, or read here (a subgraph's node);
        # ``inputs``/``outputs``: the tensor names, ``""`` for an omitted optional one (interned)
        if row is not None:
            self.op_type, self.domain, self.name, self.inputs, self.outputs, _, _ = row
        else:
            self.op_type, self.domain, self.name, self.inputs, self.outputs = read_node(proto)

    def __repr__(self) -> str:
        return f"Node(id={self.id!r}, index={self.index}, op_type={self.op_type!r}, name={self.name!r})"

    @property
    def attrs(self) -> dict[str, Any]:
        """Attribute values by name (subgraph attributes stay GraphProtos)."""
        if self._attrs is None:
            try:
                self._attrs = {a.name: helper.get_attribute_value(a) for a in self.proto.attribute}
            except Exception as exc:  # malformed AttributeProto
                raise InvalidModelError(
                    f"node {self.label} has a malformed attribute ({exc}); re-export the model"
                ) from exc
        return self._attrs

    @property
    def label(self) -> str:
        """A short human name: ``'name' (OpType)`` or ``#index (OpType)``."""
        return f"'{self.name}' ({self.op_type})" if self.name else f"{self.id} ({self.op_type})"

    @property
    def opset(self) -> int:
        return self.graph.opset(self.domain)

    @property
    def subgraphs(self) -> dict[str, Graph]:
        return self.graph.subgraphs.get(self.id, {})


class Graph:
    """An ONNX graph with a networkx view and tensor lookups.

    Build one with :func:`mlms_ir.load`; subgraphs of If/Loop/Scan are Graphs too, with
    :attr:`parent` set, and look up outer-scope tensors through it.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        proto: onnx.GraphProto | None = None,
        *,
        parent: Graph | None = None,
        prefix: str = "",
        source: str | None = None,
        ordered: bool = False,
        loaded: Any = None,
        bindings: Any = None,
        warnings: list[str] | None = None,
        types_pending: bool = False,
        node_rows: list[NodeRow] | None = None,
    ) -> None:
        # types_pending: build the nodes only; :meth:`_build_tensors` completes the graph once the
        # model's value infos are in place (what :func:`mlms_ir.load` does while inference runs).
        # node_rows: the nodes as the loader read them (:func:`~mlms_ir.ir.load.node_rows`), one
        # per node of the (ordered) graph, so that no proto field is read twice
        self.model = model
        #: Provenance, set by :func:`mlms_ir.load`: the :class:`~mlms_ir.ir.load.LoadedModel` (file,
        #: weights), the :class:`~mlms_ir.ir.shapes.Bindings` applied, and the loader's warnings.
        #: None (empty) on graphs built directly and on subgraphs.
        self.loaded = loaded
        self.bindings = bindings
        self.warnings: list[str] = list(warnings or [])
        self._ordered = ordered  # the caller already checked and sorted this graph's nodes
        self.proto = model.graph if proto is None else proto
        self.parent = parent
        self.prefix = prefix
        self.source = source
        self._opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
        self.tensors: dict[str, TensorInfo] = {}
        self.nodes: list[Node] = []
        self.subgraphs: dict[str, dict[str, Graph]] = {}
        self._producer: dict[str, Node] = {}
        # built on first use (an analysis asks for neither): see consumers() and node()
        self._consumers: dict[str, list[Node]] | None = None
        self._by_id: dict[str, Node] | None = None
        self._nx: nx.MultiDiGraph | None = None
        #: Set by :func:`mlms_ir.ir.symbolic.resolve` once every dim is an exact expression.
        self.symbolic = None
        self._build_nodes(node_rows)
        if not types_pending:
            self._build_tensors()

    # ----------------------------------------------------------------- construction
    # A Graph is built in two steps: its nodes (order, producers, consumers, which outputs are
    # constant or derived from weights), then its tensors' facts from the value infos, then its
    # subgraphs (which look up the outer tensors). :func:`mlms_ir.load` takes the first step while
    # ONNX's shape inference runs in its child, and the second once the inferred types are back.
    def _build_nodes(self, rows: list[NodeRow] | None = None) -> None:
        """Nodes, producers, consumers and the kinds of their outputs; no tensor facts yet."""
        g = self.proto
        init_names = set()
        self.initializer_protos: dict[str, onnx.TensorProto] = {}
        # the weights' facts need no inferred type: made here (while inference runs, in a load)
        weights: list[TensorInfo] = []
        for init in g.initializer:
            name = intern(init.name)
            if name in self.initializer_protos:
                raise InvalidModelError(f"initializer '{name}' is defined twice in {self.label}")
            self.initializer_protos[name] = init
            init_names.add(name)
            # external in the file: not data the loader stripped, which it marks with one entry,
            # its location "mlms_ir:..." (a file's tensor has an offset and a length as well)
            external = init.data_location == onnx.TensorProto.EXTERNAL and (
                len(init.external_data) > 1
                or not any(e.key == "location" and e.value.startswith("mlms_ir:") for e in init.external_data)
            )
            weights.append(TensorInfo(name, init.data_type, tuple(init.dims), "initializer", external))
        if g.sparse_initializer:
            check_sparse_initializers(g, self.label)
            for sp in g.sparse_initializer:
                v = sp.values
                init_names.add(v.name)
                weights.append(TensorInfo(v.name, v.data_type, tuple(int(d) for d in sp.dims), "initializer"))
        self._weights = weights
        declared = [vi.name for vi in g.input]
        if len(set(declared)) != len(declared):
            seen: set[str] = set()
            twice = next(x for x in declared if x in seen or seen.add(x))
            raise InvalidModelError(f"graph input '{twice}' is declared twice in {self.label}; "
                                    "ONNX graphs must define every tensor once")
        self.input_names = [x for x in declared if x not in init_names] if init_names else declared
        self.output_names = [vi.name for vi in g.output]
        self.initializer_names = [i.name for i in g.initializer] + [s.values.name for s in g.sparse_initializer]

        raw_nodes = list(g.node)
        prefix = self.prefix
        if self._ordered:
            order = range(len(raw_nodes))
        else:
            order = topological_order(raw_nodes, set(self.input_names) | init_names, self._outer_names(), self.label,
                                      inputs=set(self.input_names))
        if rows is not None and (not self._ordered or len(rows) != len(raw_nodes)):
            raise ValueError("node_rows must hold one row per node of an ordered graph")
        # What a tensor's kind would be when a node reads it: stored weights and the outputs of
        # Constants and of weight-only nodes are static; a subgraph's other names are its own
        # activations and inputs, or else the outer scope's (complete by the time a subgraph is built).
        static = set(init_names)
        static.add("")  # an omitted optional input: no tensor, nothing that makes its reader dynamic
        local: set[str] | None = None
        if self.parent is not None:
            local = {vi.name for vi in g.value_info} | set(self.output_names) | init_names | set(self.input_names)
            outer = self.parent.tensor

            def is_static(x: str) -> bool:
                if x in static:
                    return True
                if x in local:  # type: ignore[operator]
                    return False
                t = outer(x)
                return t is not None and t.kind in _STATIC_KINDS
        else:
            is_static = static.__contains__
        # the main graph: whether every input a node names is static, in one C call ("" is an
        # omitted optional input, which the test below skips: it counts as static)
        all_static = static.issuperset if local is None else None
        kinds: dict[str, TensorKind] = {}
        owners: list[Node] = []
        # The loop below runs once per node of a 200,000-node graph: locals, no property calls.
        producer, nodes = self._producer, self.nodes
        position: dict[str, int] = {}  # tensor -> the position in ``nodes`` of its producer
        preds: list[tuple[int, ...]] = []
        for i in order:
            p = raw_nodes[i]
            if rows is None:
                node = Node(f"{prefix}n{i}", i, p, self)
                attributes = p.attribute
                has_subgraph = bool(attributes) and any(a.type in _GRAPH_ATTRS for a in attributes)
            else:
                row = rows[i]
                node = Node(f"{prefix}n{i}", i, p, self, row)
                has_subgraph = row[5]
            k = len(nodes)
            nodes.append(node)
            outputs = node.outputs
            for out in outputs:
                if out:
                    producer[out] = node
            op_type, inputs = node.op_type, node.inputs
            kind: TensorKind | None = None
            if op_type == "Constant" and node.domain == "":
                kind = "constant"
            elif (
                not has_subgraph and op_type not in _NONDETERMINISTIC and any(inputs)
                and (all_static(inputs) if all_static is not None else all(is_static(x) for x in inputs if x))
            ):
                kind = "derived"
            if kind is not None:
                for out in outputs:
                    if out:
                        kinds[out] = kind
                        static.add(out)
            if local is not None:
                local.update(o for o in outputs if o and o not in kinds)
            reads = []
            for inp in inputs:
                if inp:
                    j = position.get(inp)
                    if j is not None:
                        reads.append(j)
            preds.append(tuple(reads))
            for out in outputs:
                if out:
                    position[out] = k
            if has_subgraph:
                owners.append(node)
        self._kinds, self._owners = kinds, owners
        if self.parent is None:
            # a subgraph may pass an outer-scope value through as its output; the main graph has none
            for name in self.output_names:
                if name not in producer and name not in init_names and name not in declared:
                    raise InvalidModelError(
                        f"graph output '{name}' of {self.label} is not produced by any node, nor is it a graph input "
                        "or initializer; the model is incomplete"
                    )
        #: For each node (by position in :attr:`nodes`), the positions of the nodes of this graph
        #: that produce its inputs, in input order (graph inputs, weights and outer names left out).
        self.preds: list[tuple[int, ...]] = preds

    def _build_tensors(self, table: TypeTable | None = None) -> None:
        """The tensors' facts (from the value infos, weights and inputs, with the kinds
        :meth:`_build_nodes` found), then the subgraphs. ``table``: this graph's value infos and
        outputs as already read (:func:`read_type_table`; the loader has it from the inference
        child, which read them for its own check), instead of reading them again here."""
        g = self.proto
        tensors = self.tensors
        tensors.clear()
        kinds = self._kinds
        types: dict[bytes, tuple] = {}  # a graph's values share a few dozen types: each read once
        if table is None:
            for vi in g.value_info:
                _put_value_info(tensors, vi, kinds.get(vi.name, "activation"), types)
            for vi in g.output:
                _put_value_info(tensors, vi, kinds.get(vi.name, "activation"), types)
        else:
            facts = [_type_facts(onnx.ValueInfoProto.FromString(key).type) for key in table.keys]
            get_kind = kinds.get
            for names, indices in (table.value_info, table.output):
                for name, i in zip(names, indices):
                    _put_tensor(tensors, name, facts[i], get_kind(name, "activation"))
        for t in self._weights:
            tensors[t.name] = t
        init_names = set(self.initializer_names)
        for vi in g.input:
            if vi.name not in init_names:
                _put_value_info(tensors, vi, "input", types)
        for node in self.nodes:
            for out in node.outputs:
                if out and out not in tensors:
                    tensors[out] = TensorInfo(out, 0, None, kinds.get(out, "activation"))
        for node in self._owners:
            for attr in node.proto.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    self._add_subgraph(node, attr.name, attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for k, sub in enumerate(attr.graphs):
                        self._add_subgraph(node, f"{attr.name}[{k}]", sub)

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The networkx view (built on first use): op nodes by id, ``input:``, ``initializer:`` and
        ``output:`` nodes, one edge per (producer, consumer, tensor) keyed by the tensor name."""
        if self._nx is None:
            self._nx = self._build_nx()
        return self._nx

    def _build_nx(self) -> nx.MultiDiGraph:
        import networkx as nx

        G = nx.MultiDiGraph()
        for name in self.input_names:
            G.add_node(f"input:{name}", kind="input", tensor=name)
        for name in self.initializer_names:
            G.add_node(f"initializer:{name}", kind="initializer", tensor=name)
        for node in self.nodes:
            G.add_node(node.id, kind="op", op_type=node.op_type, name=node.name)
        tensors = self.tensors
        for node in self.nodes:
            for k, inp in enumerate(node.inputs):
                if not inp:
                    continue
                prod = self._producer.get(inp)
                if prod is not None:
                    G.add_edge(prod.id, node.id, key=inp, tensor=inp, slot=k)
                elif inp in tensors and tensors[inp].kind == "input":
                    G.add_edge(f"input:{inp}", node.id, key=inp, tensor=inp, slot=k)
                elif inp in tensors and tensors[inp].kind == "initializer":
                    G.add_edge(f"initializer:{inp}", node.id, key=inp, tensor=inp, slot=k)
        for name in self.output_names:
            G.add_node(f"output:{name}", kind="output", tensor=name)
            prod = self._producer.get(name)
            src = prod.id if prod is not None else (f"input:{name}" if name in self.input_names else f"initializer:{name}")
            if src in G:
                G.add_edge(src, f"output:{name}", key=name, tensor=name, slot=0)
        return G

    def _add_subgraph(self, node: Node, attr: str, proto: onnx.GraphProto) -> None:
        sub = Graph(self.model, proto, parent=self, prefix=f"{node.id}/{attr}/", source=self.source)
        self.subgraphs.setdefault(node.id, {})[attr] = sub

    def _outer_names(self) -> set[str]:
        names: set[str] = set()
        p = self.parent
        while p is not None:
            names.update(p.tensors)
            p = p.parent
        return names

    # ----------------------------------------------------------------- lookups
    @property
    def label(self) -> str:
        return f"subgraph {self.prefix.rstrip('/')}" if self.prefix else "the main graph"

    def opset(self, domain: str = "") -> int:
        """The opset version the model imports for ``domain`` (0 when not imported)."""
        return self._opsets.get("" if domain == "ai.onnx" else domain, 0)

    def tensor(self, name: str) -> TensorInfo | None:
        """Facts about tensor ``name`` (looking through outer scopes), or None if unknown."""
        g: Graph | None = self
        while g is not None:
            t = g.tensors.get(name)
            if t is not None:
                return t
            g = g.parent
        return None

    def value_type(self, name: str) -> onnx.TypeProto | None:
        """The declared ONNX type of ``name`` (a graph input or output, or a value info of this
        graph), or None when nothing declares it: the full type of sequences, maps and optionals,
        which :class:`TensorInfo` only names (``value_kind``)."""
        for vi in (*self.proto.input, *self.proto.output, *self.proto.value_info):
            if vi.name == name and vi.HasField("type"):
                return vi.type
        return None

    def node(self, node_id: str) -> Node:
        """The node of this graph with id ``node_id`` (KeyError if there is none)."""
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {n.id: n for n in self.nodes}
        return by_id[node_id]

    def producer(self, tensor: str) -> Node | None:
        """The node of this graph that writes ``tensor`` (None for inputs, weights, outer names)."""
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """The nodes of this graph that read ``tensor``, in execution order (a node once per
        input that names it)."""
        users = self._consumers
        if users is None:
            users = {}
            for node in self.nodes:
                for inp in node.inputs:
                    if inp:
                        readers = users.get(inp)
                        if readers is None:
                            users[inp] = [node]
                        else:
                            readers.append(node)
            self._consumers = users
        return users.get(tensor, [])

    def walk(self) -> Iterator[Node]:
        """Every node of this graph and of its subgraphs, owners before their subgraph's nodes."""
        for node in self.nodes:
            yield node
            for sub in self.subgraphs.get(node.id, {}).values():
                yield from sub.walk()

    def all_subgraphs(self) -> Iterator[tuple[Node, str, Graph]]:
        """Every (owner node, attribute name, subgraph), nested ones included."""
        if not self.subgraphs:
            return  # none (an LLM's 200,000 nodes are not walked to find out)
        for node in self.nodes:
            for attr, sub in self.subgraphs.get(node.id, {}).items():
                yield node, attr, sub
                yield from sub.all_subgraphs()

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"<Graph {self.proto.name!r}: {len(self.nodes)} nodes, {len(self.input_names)} inputs>"


@functools.lru_cache(maxsize=65536)
def _sym_prod(shape: tuple):
    """The product of a symbolic shape's dims (many tensors share a shape: computed once)."""
    import sympy

    from mlms_ir.ir.expr import normalize

    # one Mul of every dim: math.prod rebuilt the growing product at each step (a 2,000-dim
    # input took 25 s, one Mul 1.4 s)
    return normalize(sympy.Mul(*shape))


def _size_pair(elem_type: int, shape: Shape | None) -> tuple[int, int | None] | None:
    """(elements, bytes) of a tensor of this type and shape when every dim is an int, else None
    (:attr:`TensorInfo._size`)."""
    n = _int_numel(shape)
    return None if n is None else (n, nbytes(elem_type, n))


def _int_numel(shape: Shape | None) -> int | None:
    """The product of a shape whose dims are all ints; None for any other shape."""
    if shape is None:
        return None
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def _is_expr(d: object) -> bool:
    return d is not None and not isinstance(d, (int, str)) and hasattr(type(d), "free_symbols")


def shape_json(shape: Shape | None) -> list[int | str | None] | None:
    """A shape as JSON writes it: ints, and symbolic dims as strings in sympy syntax."""
    if shape is None:
        return None
    out = list(shape)
    for d in out:
        if type(d) is not int and d is not None:
            break
    else:
        return out  # the common case: plain numbers (bools are no dims)
    from mlms_ir.ir.expr import to_str

    return [d if isinstance(d, int) or d is None else to_str(d) for d in shape]


def _dims(tp: onnx.TypeProto) -> tuple[int, Shape | None]:
    """Element type and shape of a tensor TypeProto (non-tensor types give elem 0, no shape)."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        tt = tp.tensor_type
    elif which == "sparse_tensor_type":
        tt = tp.sparse_tensor_type
    else:
        return 0, None
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims: list[Dim] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")  # one call, not two HasFields (53,000 value infos at 50k nodes)
        if which == "dim_value":
            v = d.dim_value
            dims.append(v if v >= 0 else None)
        elif which == "dim_param":
            dims.append(d.dim_param or None)
        else:
            dims.append(None)
    return tt.elem_type, tuple(dims)


def _put_value_info(tensors: dict[str, TensorInfo], vi: onnx.ValueInfoProto, kind: TensorKind,
                    types: dict[bytes, tuple] | None = None) -> None:
    """``vi``'s facts into ``tensors``; ``types`` caches them by the serialized type (a 50,000-node
    LLM's 53,000 value infos have 30 distinct types: one C call each instead of a walk of the dims;
    equal types then share their shape tuple, and their (elements, bytes) pair, which each
    TensorInfo would otherwise compute on its first size query)."""
    facts = None
    if types is not None:
        key = type_key(vi.SerializeToString())
        facts = types.get(key)
    if facts is None:
        facts = _type_facts(vi.type)
        if types is not None:
            types[key] = facts
    _put_tensor(tensors, vi.name, facts, kind)


def _put_tensor(tensors: dict[str, TensorInfo], name: str, facts: tuple, kind: TensorKind) -> None:
    """A tensor of ``name`` with a declared type's :func:`_type_facts` into ``tensors``."""
    name = intern(name)  # the string the nodes hold (see Node)
    t = tensors[name] = TensorInfo(name, facts[0], facts[1], kind, False, facts[2])
    t.__dict__["_size"] = facts[3]  # as TensorInfo._size computes it


def _type_facts(tp: onnx.TypeProto) -> tuple:
    """(element type, shape, value kind, (elements, bytes) or None) of a declared type: what a
    TensorInfo of that type holds."""
    elem, shape = _dims(tp)
    return elem, shape, _VALUE_KINDS.get(tp.WhichOneof("value"), "tensor"), _size_pair(elem, shape)


@dataclass
class TypeTable:
    """A graph's declared types as :func:`read_type_table` read them, each value info once: for
    its inputs, value infos and outputs, the names in order and each one's type as an index into
    ``keys``, the distinct types (:func:`type_key` s: a 200,000-node decoder's 213,000 value
    infos have 8). The inference child reads them so for its "every output resolved" check and
    sends them with its answer (:meth:`to_bytes`); the loader builds the tensors from them
    (:meth:`Graph._build_tensors`) instead of reading the 213,000 value infos again."""

    keys: list[bytes]
    input: tuple[list[str], list[int]]
    value_info: tuple[list[str], list[int]]
    output: tuple[list[str], list[int]]

    def to_bytes(self) -> bytes:
        return marshal.dumps((self.keys, self.input, self.value_info, self.output))

    @classmethod
    def from_bytes(cls, data: bytes) -> TypeTable | None:
        """The table :meth:`to_bytes` wrote, or None when ``data`` is not one (a name that is not
        text, an index out of range: the loader then reads the value infos itself)."""
        try:
            keys, *sections = marshal.loads(data)
            ok = type(keys) is list and all(type(k) is bytes for k in keys) and len(sections) == 3
            for names, indices in sections if ok else ():
                ok = ok and len(names) == len(indices) and all(type(n) is str for n in names) and (
                    not indices or (all(type(i) is int for i in indices) and 0 <= min(indices) and max(indices) < len(keys)))
        except (ValueError, TypeError, EOFError):
            return None
        return cls(keys, *sections) if ok else None


def read_type_table(g: onnx.GraphProto) -> TypeTable:
    """``g``'s inputs, value infos and outputs as a :class:`TypeTable`: one pass over them, each
    serialized once (its type told apart by its bytes, as :func:`_put_value_info` does)."""
    index: dict[bytes, int] = {}
    keys: list[bytes] = []

    def section(vis) -> tuple[list[str], list[int]]:
        names: list[str] = []
        indices: list[int] = []
        add_name, add_index = names.append, indices.append
        for vi in vis:
            key = type_key(vi.SerializeToString())
            i = index.get(key)
            if i is None:
                i = index[key] = len(keys)
                keys.append(key)
            add_name(vi.name)
            add_index(i)
        return names, indices

    return TypeTable(keys, section(g.input), section(g.value_info), section(g.output))


def type_key(data: bytes) -> bytes:
    """A serialized ValueInfoProto less its name (field 1, which protobuf writes first): the bytes
    of its type and the rest, equal for equal types. (Reading ``vi.type`` to serialize it alone
    makes a message object per value info and costs twice as much.) Were the name not first, the
    key would keep it: every value info its own entry, the facts the same."""
    if not data or data[0] != 0x0A:
        return data
    n = shift = 0
    i = 1
    while True:
        b = data[i]
        n |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            break
        shift += 7
    return data[i + n:]


def topological_order(nodes: list[onnx.NodeProto], available: set[str], outer: set[str], where: str,
                      inputs: set[str] | None = None) -> list[int]:
    """Indices of ``nodes`` in a valid execution order (the file's order when it is one).
    ``available``: the graph's inputs and initializers; ``inputs``: which of them are graph inputs
    (for the message that names a redefined one; the others are initializers).

    Raises InvalidModelError for an input that nothing defines, a tensor defined twice, or a cycle.
    """
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for out in n.output:
            if not out:
                continue
            if out in available:
                what = ("a graph input or initializer" if inputs is None
                        else "a graph input" if out in inputs else "an initializer")
                raise InvalidModelError(
                    f"tensor '{out}' in {where} is produced twice: node #{i} '{n.name}' ({n.op_type}) redefines {what} "
                    "of that name; ONNX graphs must define every tensor once"
                )
            j = producer.get(out)
            if j is not None:
                raise InvalidModelError(
                    f"tensor '{out}' in {where} is produced twice (by node #{j} '{nodes[j].name}' ({nodes[j].op_type}) "
                    f"and node #{i} '{n.name}' ({n.op_type})); ONNX graphs must define every tensor once"
                )
            producer[out] = i

    def implicit_inputs(n: onnx.NodeProto) -> list[str]:
        # Outer-scope names a subgraph of this node reads also order the node after their producers.
        names: list[str] = []
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                names.extend(free_names(sg))
        return names

    deps: list[list[int]] = []
    in_order = True
    for i, n in enumerate(nodes):
        d: list[int] = []
        names = list(n.input)
        if n.attribute and any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            names += implicit_inputs(n)
        for inp in names:
            if not inp or inp in available:
                continue
            j = producer.get(inp)
            if j is None:
                if inp in outer:
                    continue
                raise InvalidModelError(
                    f"node #{i} '{n.name}' ({n.op_type}) in {where} reads '{inp}', which no node, graph input "
                    "or initializer defines; the model is incomplete"
                )
            d.append(j)
            if j >= i:
                in_order = False
        deps.append(d)
    if in_order:
        return list(range(len(nodes)))
    # Kahn's algorithm, stable on the file's order.
    import heapq

    indeg = [len(set(d)) for d in deps]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in set(d):
            users[j].append(i)
    ready = [i for i, k in enumerate(indeg) if k == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = [i for i in range(len(nodes)) if indeg[i] > 0][:3]
        names = ", ".join(f"#{i} '{nodes[i].name}' ({nodes[i].op_type})" for i in stuck)
        raise InvalidModelError(f"{where} has a cycle through node(s) {names}; ONNX graphs must be acyclic")
    return order


def check_sparse_initializers(g: onnx.GraphProto, where: str) -> None:
    """The sparse initializers of ``g`` are well-formed: each named once (dense ones included),
    dims not negative, values a 1-D tensor of NNZ values, indices int64 of shape ``[NNZ]``
    (positions in the flattened tensor) or ``[NNZ, rank]`` (coordinates), each in range, and the
    data as long as the dims say. The values of embedded indices are read (external ones never)."""
    from mlms_ir.ir.load import check_tensor_data

    names = {t.name for t in g.initializer}
    for sp in g.sparse_initializer:
        v, ix = sp.values, sp.indices
        name = v.name
        if name in names:
            raise InvalidModelError(f"initializer '{name}' is defined twice in {where} (a sparse initializer and another "
                                    "initializer of that name)")
        names.add(name)
        dims = [int(d) for d in sp.dims]
        if any(d < 0 for d in dims):
            raise InvalidModelError(f"sparse initializer '{name}' in {where} has a negative dim {dims}")
        if len(v.dims) != 1:
            raise InvalidModelError(f"the values of sparse initializer '{name}' in {where} have shape {list(v.dims)}; "
                                    "they must be a 1-D tensor")
        nnz = int(v.dims[0])
        numel = math.prod(dims)
        if nnz > numel:
            raise InvalidModelError(f"sparse initializer '{name}' in {where} holds {nnz:,} values but its shape "
                                    f"{dims} has {numel:,} elements")
        if list(ix.dims) not in ([nnz], [nnz, len(dims)]):
            raise InvalidModelError(f"sparse initializer '{name}' in {where} has {nnz:,} values but indices of shape "
                                    f"{list(ix.dims)}; they must be [{nnz}] or [{nnz}, {len(dims)}]")
        if ix.data_type != onnx.TensorProto.INT64:
            raise InvalidModelError(f"the indices of sparse initializer '{name}' in {where} are "
                                    f"{dtype_name(ix.data_type)}; they must be int64")
        for t in (v, ix):
            if t.data_location != onnx.TensorProto.EXTERNAL and t.data_type != onnx.TensorProto.STRING:
                check_tensor_data(t)
        if ix.data_location == onnx.TensorProto.EXTERNAL or not nnz:
            continue  # never read external data
        try:
            idx = numpy_helper.to_array(ix)
        except Exception as exc:  # noqa: BLE001 - malformed tensor data
            raise InvalidModelError(f"the indices of sparse initializer '{name}' in {where} cannot be read ({exc})") from exc
        if not idx.size:
            continue
        bound = np.asarray([min(d, 2**63 - 1) for d in (dims if idx.ndim == 2 else [numel])], dtype=np.int64)
        if idx.min() < 0 or (idx >= bound).any():
            raise InvalidModelError(f"sparse initializer '{name}' in {where} has an index out of range for its shape "
                                    f"{dims}: the file is corrupt")


def free_names(g: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads from outer scopes (recursively)."""
    defined = {vi.name for vi in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        defined.update(o for o in n.output if o)
    free: list[str] = []
    for n in g.node:
        free.extend(i for i in n.input if i and i not in defined)
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                free.extend(x for x in free_names(sg) if x not in defined)
    free.extend(o.name for o in g.output if o.name not in defined)
    return free


def node_reads(proto: onnx.NodeProto) -> list[str]:
    """The names a node reads: its inputs, and the outer-scope names its subgraphs use (an If
    branch reading a tensor of the graph around it)."""
    names = [x for x in proto.input if x]
    for a in proto.attribute:
        subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []
        for g in subs:
            inner = {i.name for i in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
            names += [x for n in g.node for x in node_reads(n) if x not in inner]
    return list(dict.fromkeys(names))


def constant_value(graph: Graph, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` if it is an embedded (not external) initializer or Constant output."""
    g: Graph | None = graph
    while g is not None:
        init = g.initializer_protos.get(name)
        if init is not None:
            if init.data_location == onnx.TensorProto.EXTERNAL:
                return None
            try:
                return numpy_helper.to_array(init)
            except Exception:  # noqa: BLE001 - malformed tensor data
                return None
        prod = g.producer(name)
        if prod is not None:
            if prod.op_type == "Constant" and prod.domain == "":
                for a in prod.proto.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        if a.t.data_location == onnx.TensorProto.EXTERNAL:
                            return None  # never read external data
                        try:
                            return numpy_helper.to_array(a.t)
                        except Exception:  # noqa: BLE001
                            return None
                    if a.name in ("value_int", "value_float"):
                        return np.array(a.i if a.name == "value_int" else a.f)
                    if a.name in ("value_ints", "value_floats"):
                        return np.array(list(a.ints) if a.name == "value_ints" else list(a.floats))
            return None
        g = g.parent
    return None
