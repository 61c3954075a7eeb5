"""The ONNX graph IR: loading, shape inference with bindings, and the :class:`Graph` wrapper."""

from __future__ import annotations

import math

import onnx
import onnx.checker
import onnx.defs
from onnx import ModelProto

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.gc_pause import paused_gc
from mlms_ir.ir.graph import Graph, Node, TensorInfo, topological_order
from mlms_ir.ir.guard import check_allocation
from mlms_ir.ir.load import (Holders, LoadedModel, ModelSource, NodeRow, check_tensor_data, checked_rows, node_rows, nodes_holding,
                             read_model, read_small_external_ints)
from mlms_ir.ir.shapes import (Bindings, Dims, InputShapes, PendingInference, apply_bindings, parse_bindings, parse_input_values,
                               start_infer_shapes)

__all__ = ["Bindings", "Graph", "LoadedModel", "Node", "TensorInfo", "load", "parse_bindings"]


def load(
    source: ModelSource | Graph,
    *,
    input_shapes: InputShapes = None,
    batch: int | None = None,
    dims: Dims = None,
    lenient: bool = False,
    input_values: dict[str, object] | str | None = None,
) -> Graph:
    """Load a model into a :class:`Graph`, bind dynamic dims and infer every shape.

    Args:
        source: a path to an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        input_shapes: ``{"input": [1, 3, 224, 224]}`` or strings ``"input:1x3x224x224"``.
        batch: the leading dim of every input whose leading dim is not fixed.
        dims: named symbolic dims, ``{"batch": 8, "seq": 128}`` or ``"batch=8,seq=128"``: the
            inputs' dim names, ``<input>_d<axis>`` for an anonymous one, or a dim the symbolic
            pass names (``nonzero_n12``: see :func:`mlms_ir.ir.symbolic.resolve`).
        lenient: analyse a model that ONNX's strict shape inference rejects (with a warning).
        input_values: values of scalar inputs, ``{"sr": 16000}`` or ``"sr=16000"``: an ``If`` whose
            condition they decide counts the branch taken.

    External weight data is never read, only checked for presence and size.

    Raises:
        mlms_ir.errors.ModelLoadError: missing, empty, truncated or non-ONNX file.
        mlms_ir.errors.ExternalDataError: external data missing, short or outside the model's folder.
        mlms_ir.errors.InvalidModelError: dangling inputs, cycles, bad attributes, failed inference.
        mlms_ir.errors.UnsupportedOpsetError: an opset or IR version newer than onnx knows.
        mlms_ir.errors.ShapeBindingError: a binding that is malformed or does not fit the inputs.
    """
    with paused_gc():
        return _load(source, input_shapes=input_shapes, batch=batch, dims=dims, lenient=lenient, input_values=input_values)


def _load(
    source: ModelSource | Graph,
    *,
    input_shapes: InputShapes,
    batch: int | None,
    dims: Dims,
    lenient: bool,
    input_values: dict[str, object] | str | None,
) -> Graph:
    if isinstance(source, Graph):
        loaded_from = getattr(source, "loaded", None)
        # re-read what the graph was loaded from: its own model lacks embedded weight data
        source = loaded_from.path or loaded_from.source if loaded_from is not None else source.model
    loaded = read_model(source)
    model = loaded.model
    holders, loaded.holders = loaded.holders, None
    rows: list[NodeRow] | None = None
    warnings: list[str] = []
    if model.functions:
        try:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
            warnings.append(f"inlined {len(loaded.model.functions)} model-local function(s) before analysis")
        except Exception as exc:  # noqa: BLE001 - onnx's C++ inliner raises various types
            raise InvalidModelError(f"cannot inline the model's local functions: {' '.join(str(exc).split())}") from exc
        rows = node_rows(model.graph)
        if rows is None:  # the inliner writes text: not expected
            raise InvalidModelError("the model's local functions inline to names that are not valid UTF-8 text")
    # A model whose main graph holds no subgraph (most, and every large export) is sent to shape
    # inference before its nodes are read: the loader reads them (2.1 s of a 200,000-node decoder)
    # while inference runs, and sends the model again in the rare case that they were not in
    # execution order. A model with subgraphs is read and ordered first (their outer names order it).
    early = rows is None and holders is not None and not holders.nested
    nested = False
    if not early:
        if rows is None:
            rows = checked_rows(model.graph, loaded.where)
        nested = _check_counts(model, rows)
    known: list[NodeRow] | Holders | None = holders if early else rows
    bindings = parse_bindings(input_shapes, batch, dims)
    bindings.input_values = parse_input_values(input_values)
    if loaded.path is not None and loaded.external_data_bytes:
        # shapes, axes and small index tables stored externally: data propagation needs their values
        read_small_external_ints(model, loaded.path.parent, _INT_KEEP_BYTES, known)
    hides = _strip_weight_data(model.graph, known)
    if not early:
        rows = _sort_nodes(model, rows, nested)
    from mlms_ir.ir.symbolic import name_anonymous_dims

    name_anonymous_dims(model, warnings)
    leftover = apply_bindings(model, bindings)
    source_name = str(loaded.path) if loaded.path else None

    def start() -> tuple[PendingInference, _HiddenValues]:
        hidden = _hide_stripped_values(model, hides)
        try:
            # A model without subgraphs gets back only what inference adds to its main graph
            # (value infos, outputs): its own nodes stay, and no second copy of them is sent and parsed.
            return start_infer_shapes(model, lenient=lenient, types_only=not nested,
                                      outputs=None if rows is None else [o for row in rows for o in row[4] if o]), hidden
        finally:
            hidden.restore(model)  # the child has its own copy

    try:
        pending, hidden = start()
    except TypeError:  # a name that is not text, met while hiding stripped values: said as such
        checked_rows(model.graph, loaded.where)
        raise
    graph = None
    try:
        # while ONNX's inference runs in its child: the nodes' names, their attribute checks, and
        # the graph's nodes
        if early:
            rows = checked_rows(model.graph, loaded.where)
            _check_counts(model, rows)
            ordered = _sort_nodes(model, rows, nested)
            if ordered is not rows:  # inference was sent the nodes out of order: again, in order
                pending.cancel()
                rows = ordered
                pending, hidden = start()
        assert rows is not None
        _check_nodes(model, rows)
        if not nested:
            graph = Graph(model, source=source_name, ordered=True, loaded=loaded, bindings=bindings, warnings=warnings,
                          types_pending=True, node_rows=rows)
        body, inference_warnings, table = pending.result()
    finally:
        pending.cancel()
    warnings.extend(inference_warnings)
    if graph is not None:
        g = model.graph
        del g.value_info[:]
        del g.output[:]
        g.MergeFromString(body)
        loaded.model = model
        graph.warnings.extend(inference_warnings)
        graph._build_tensors(table)  # the child's reading of the value infos just merged
    else:
        inferred = ModelProto()
        inferred.ParseFromString(body)
        hidden.restore(inferred)
        # The model as read is done with once inference has given its copy: one copy of a
        # 200,000-node graph's proto (hundreds of MB) less for the rest of the analysis.
        loaded.model = inferred
        del model
        graph = Graph(inferred, source=source_name, ordered=True, loaded=loaded, bindings=bindings, warnings=warnings,
                      node_rows=rows)  # inference keeps the nodes as they were sent
    if bindings.input_values:
        _check_input_values(graph, bindings.input_values)
    if leftover or bindings.input_values:
        from mlms_ir.ir.symbolic import resolve

        resolve(graph, leftover)
    return graph


def _check_input_values(graph: Graph, values: dict[str, float]) -> None:
    from mlms_ir.errors import ShapeBindingError

    for name in values:
        t = graph.tensors.get(name) if name in graph.input_names else None
        if t is None:
            raise ShapeBindingError(f"the model has no input '{name}'; its inputs are: {', '.join(graph.input_names) or '(none)'}")
        if t.shape is None or len(t.shape) > 1 or (len(t.shape) == 1 and t.shape[0] != 1):
            raise ShapeBindingError(f"--input-value gives '{name}' one value, but it is not a scalar (shape {t.shape})")


#: Embedded initializers larger than this (float) or ``_INT_KEEP_BYTES`` (other types) lose their data
#: before shape inference: only their dims matter, and copying them through ONNX's C++ core costs
#: seconds and gigabytes on large models. Small integer tensors (shapes, axes) keep their values
#: for data propagation; larger integer scalars and 1-D tensors (index tables) are shown to shape
#: inference as data-less inputs (see :class:`_HiddenValues`), since ONNX fails on absent data.
_FLOAT_KEEP_BYTES = 1024
_INT_KEEP_BYTES = 65536
STRIPPED_LOCATION = "mlms_ir:embedded-data-not-loaded"


def _strip_tensor(t: onnx.TensorProto) -> None:
    from mlms_ir.ir.dtypes import FLOAT_TYPES

    if t.data_location == onnx.TensorProto.EXTERNAL or t.data_type == onnx.TensorProto.STRING:
        return
    check_tensor_data(t)
    if t.ByteSize() <= (_FLOAT_KEEP_BYTES if t.data_type in FLOAT_TYPES else _INT_KEEP_BYTES):
        return
    for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        t.ClearField(f)
    t.data_location = onnx.TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", STRIPPED_LOCATION


def _is_stripped(t: onnx.TensorProto) -> bool:
    """Whether :func:`_strip_tensor` took this tensor's data away."""
    return t.data_location == onnx.TensorProto.EXTERNAL and any(
        e.key == "location" and e.value == STRIPPED_LOCATION for e in t.external_data)


def _strip_weight_data(g: onnx.GraphProto, rows: list[NodeRow] | Holders | None = None) -> bool:
    """Strip the embedded data of ``g``'s weights and Constants (subgraphs included) as
    :func:`_strip_tensor` does; returns whether one of them is a tensor :func:`_hides` (then
    :func:`_hide_stripped_values` has work: this walk has looked at every one already).
    ``rows``: ``g``'s :func:`~mlms_ir.ir.load.node_rows` or :class:`~mlms_ir.ir.load.Holders`, when the caller has them."""
    hides = False
    for t in g.initializer:
        _strip_tensor(t)
        hides = hides or _hides(t)
    for n in nodes_holding(g, rows):
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                _strip_tensor(a.t)
                hides = hides or _hides(a.t)
            if a.type == onnx.AttributeProto.GRAPH:
                hides = _strip_weight_data(a.g) or hides
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    hides = _strip_weight_data(sg) or hides
    return hides


def _subgraphs(g: onnx.GraphProto) -> list[onnx.GraphProto]:
    """``g`` and every graph nested in its nodes' attributes, depth first (the same order for a copy of ``g``)."""
    out = [g]
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out.extend(_subgraphs(a.g))
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    out.extend(_subgraphs(sg))
    return out


#: Tensors whose values ONNX's data propagation parses: scalars and 1-D tensors of these types
#: (``DataPropagationContextImpl::getInputData``), e.g. shapes, axes and index tables.
_SHAPE_DATA_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
_HIDDEN_PREFIX = "mlms_ir:stripped:"


def _hides(t: onnx.TensorProto) -> bool:
    """An integer scalar or 1-D tensor without its data here: stripped by the loader, or a large one
    in an external file (the small ones were read in; a small one that could not be, from a model
    given as bytes, is left for inference to reject: it may be a shape)."""
    if len(t.dims) > 1 or t.data_type not in _SHAPE_DATA_TYPES or t.data_location != onnx.TensorProto.EXTERNAL:
        return False
    if _is_stripped(t):
        return True
    from mlms_ir.ir.dtypes import nbytes

    return (nbytes(t.data_type, math.prod(max(int(d), 0) for d in t.dims)) or 0) > _INT_KEEP_BYTES


class _HiddenValues:
    """Stripped tensors shown to ONNX's shape inference as main-graph inputs, and how to put them back.

    Data propagation reads the values of every integer scalar or 1-D initializer and Constant that
    feeds a node (Unsqueeze, Cast, Gather, Concat, ...) and fails on a tensor whose data is absent
    ("Cannot parse data from external tensors"), e.g. a relative-position index table of a few
    hundred KB. A graph input of the same name, type and shape has no data: inference then keeps
    its shape and only leaves its values unknown, as it does for any input. Such a large table is
    never a shape itself (a shape or axes tensor is far below the keep threshold).
    """

    def __init__(self, inputs: int) -> None:
        self.inputs = inputs
        self.initializers: list[tuple[int, int, onnx.TensorProto]] = []  # (graph, index, tensor)
        self.constants: list[tuple[int, int, onnx.NodeProto]] = []  # (graph, index, original node)
        #: The main graph's sparse initializers, which ONNX's inference refuses ("has unsupported
        #: type: sparse_tensor(float)"): shown to it as inputs of their dense type and shape.
        self.sparse: list[onnx.SparseTensorProto] = []

    def __bool__(self) -> bool:
        return bool(self.initializers or self.constants or self.sparse)

    def restore(self, model: onnx.ModelProto) -> None:
        """Undo the hiding in ``model`` (the hidden model or a copy of it, e.g. inference's result)."""
        if not self:
            return
        if self.sparse:
            del model.graph.sparse_initializer[:]
            model.graph.sparse_initializer.extend(self.sparse)
        graphs = _subgraphs(model.graph)
        for gi, i, node in self.constants:
            graphs[gi].node[i].CopyFrom(node)
        for gi, i, t in self.initializers:  # ascending (graph, index): every earlier one is back in place
            graphs[gi].initializer.insert(i, t)
        del model.graph.input[self.inputs:]


def _hide_stripped_values(model: onnx.ModelProto, candidates: bool = True) -> _HiddenValues:
    """Replace, in place, every stripped integer scalar or 1-D tensor by a main-graph input (see :class:`_HiddenValues`).

    An initializer becomes an input of its own name (an outer-scope value for a subgraph); a
    Constant becomes an Identity of a new input. A name defined twice (shadowing) is left alone.
    ``candidates``: False when the caller knows no tensor :func:`_hides` (what
    :func:`_strip_weight_data` returns): nothing is walked.
    """
    main = model.graph
    hidden = _HiddenValues(len(main.input))
    if main.sparse_initializer:
        _hide_sparse(main, hidden)
    if not candidates:
        return hidden
    graphs = _subgraphs(main)
    if not any(_hides(t) for g in graphs for t in g.initializer) and not any(
        n.op_type == "Constant" and n.domain in ("", "ai.onnx") and _hides(a.t)
        for g in graphs for n in g.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ):
        return hidden
    defined: dict[str, int] = {}
    for g in graphs:
        for name in [vi.name for vi in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]:
            defined[name] = defined.get(name, 0) + 1
    main_inputs = {vi.name for vi in main.input}
    new_inputs: list[onnx.ValueInfoProto] = []
    for gi, g in enumerate(graphs):
        for i, t in enumerate(g.initializer):
            if not _hides(t):
                continue
            if gi == 0 and t.name in main_inputs:
                pass  # also a graph input (IR < 4 style): dropping the initializer leaves that input
            elif defined[t.name] == 1:
                new_inputs.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            else:
                continue
            hidden.initializers.append((gi, i, t))
        for i, n in enumerate(g.node):
            if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or len(n.output) != 1:
                continue
            value = next((a.t for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
            source = _HIDDEN_PREFIX + n.output[0]
            if value is None or not _hides(value) or source in defined:
                continue
            output, name = n.output[0], n.name
            if type(name) is not str:  # bytes, not UTF-8: refused by the caller before the node is changed
                raise TypeError(f"node #{i}'s name is not text")
            original = onnx.NodeProto()
            original.CopyFrom(n)
            hidden.constants.append((gi, i, original))
            new_inputs.append(onnx.helper.make_tensor_value_info(source, value.data_type, list(value.dims)))
            n.Clear()
            n.op_type, n.name = "Identity", name
            n.input.append(source)
            n.output.append(output)
    for gi, i, _ in reversed(hidden.initializers):
        del graphs[gi].initializer[i]
    main.input.extend(new_inputs)
    return hidden


def _hide_sparse(main: onnx.GraphProto, hidden: _HiddenValues) -> None:
    """Show the main graph's sparse initializers to ONNX's inference as inputs of their type and
    dense shape (no dense data is made: inference needs their types only), after checking them."""
    from mlms_ir.ir.graph import check_sparse_initializers

    check_sparse_initializers(main, "the main graph")
    declared = {vi.name for vi in main.input}
    hidden.sparse = [onnx.SparseTensorProto() for _ in main.sparse_initializer]
    for copy, sp in zip(hidden.sparse, main.sparse_initializer):
        copy.CopyFrom(sp)
        if sp.values.name not in declared:
            main.input.append(onnx.helper.make_tensor_value_info(sp.values.name, sp.values.data_type, list(sp.dims)))
    del main.sparse_initializer[:]


def _sort_nodes(model: onnx.ModelProto, rows: list[NodeRow], nested: bool = True) -> list[NodeRow]:
    """Put the main graph's nodes in execution order (shape inference needs it); rejects cycles.
    ``rows``: the nodes as read (:func:`~mlms_ir.ir.load.node_rows`); returned in the new order.
    ``nested``: whether a node of the main graph holds a subgraph (whose outer names order it too)."""
    g = model.graph
    inputs = {vi.name for vi in g.input}
    available = inputs | {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
    if not nested and _in_order(rows, available):
        return rows
    order = topological_order(list(g.node), available, set(), "the main graph",
                              inputs=inputs - {i.name for i in g.initializer})
    if order != list(range(len(order))):
        nodes = [g.node[i] for i in order]
        copies = [onnx.NodeProto() for _ in nodes]
        for c, n in zip(copies, nodes):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)
        rows = [rows[i] for i in order]
    return rows


def _in_order(rows: list[NodeRow], available: set[str]) -> bool:
    """Whether the nodes (none holding a subgraph) are in execution order already, each tensor
    defined once: one pass over the names (most files are). False sends the caller to
    :func:`topological_order`, which sorts them or names what is wrong."""
    defined = set(available)
    add = defined.add
    for row in rows:
        for x in row[3]:
            if x and x not in defined:
                return False
        for out in row[4]:
            if out:
                if out in defined:
                    return False
                add(out)
    return True


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        yield from _all_nodes_below(node)


#: Memory the analysis holds per node of the graph, at least (its Graph, NodeCosts, tables): a
#: chain of 1,000,000 one-input nodes peaked at 3.8 KB a node, a 200,000-node decoder at 5.5 KB
#: (2026-12-07). A graph whose node count times this exceeds the memory budget is refused before
#: inference and the passes start building per-node structures.
ANALYSIS_BYTES_PER_NODE = 3 << 10


def _check_counts(model: onnx.ModelProto, rows: list[NodeRow]) -> bool:
    """Sizes a model declares must fit the memory budget before the passes build anything from
    them: the node count (:data:`ANALYSIS_BYTES_PER_NODE` each, subgraphs included), and
    attributes that size a per-node list must fit the node (a Scan's ``num_scan_inputs`` of 2**31
    would make a 16 GB list before any other check fails). Returns whether a node of the main
    graph holds a subgraph."""
    count = len(rows)
    nested = False
    top = model.graph.node
    for i, (op_type, domain, _name, _ins, _outs, holds, _tensors) in enumerate(rows):
        if holds:
            nested = True
            for sub in _all_nodes_below(top[i]):
                count += 1
                _check_scan(sub)
        if not op_type:
            _no_op_type(f"node '{_name}' of the main graph" if _name else f"node #{i} of the main graph")
        if op_type == "Scan" and domain == "":
            _check_scan(top[i])
    check_allocation(f"analysing a graph of {count:,} nodes", count * ANALYSIS_BYTES_PER_NODE)
    return nested


def _all_nodes_below(node: onnx.NodeProto):
    """Every node of ``node``'s subgraphs, nested ones included."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield from _all_nodes(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            for g in a.graphs:
                yield from _all_nodes(g)


def _no_op_type(node: str) -> None:
    raise InvalidModelError(f"{node} has no op type (its op_type is empty); every ONNX node must name its operator")


def _check_scan(node: onnx.NodeProto) -> None:
    """``node`` (one of a subgraph, or a Scan of the main graph) names an op, and a Scan's
    ``num_scan_inputs`` fits its inputs."""
    op_type = node.op_type
    if not op_type:
        _no_op_type(f"node '{node.name}' of a subgraph" if node.name else "a node of a subgraph")
    if op_type == "Scan" and node.domain in ("", "ai.onnx"):
        n = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
        if not 0 <= n <= len(node.input):
            label = f"'{node.name}'" if node.name else "a Scan"
            raise InvalidModelError(f"Scan node {label} declares {n} scan inputs but has {len(node.input)} inputs")


def _check_nodes(model: onnx.ModelProto, rows: list[NodeRow]) -> None:
    """Check attributes of every node whose op ONNX knows (types, required attributes).
    ``rows``: the main graph's nodes as read (:func:`~mlms_ir.ir.load.node_rows`), in order."""
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    ctx.opset_imports = opsets
    lex = onnx.checker.C.LexicalScopeContext()
    check = onnx.checker.C.check_node
    known_ops: dict[tuple[str, str], bool] = {}  # (op type, domain) -> whether ONNX defines it
    for i, (node, (op_type, domain, name, _ins, _outs, holds, _tensors)) in enumerate(zip(model.graph.node, rows)):
        if holds:
            continue  # subgraphs are checked by shape inference, which knows their outer scope
        if domain and domain != "ai.onnx.ml":
            continue
        known_op = known_ops.get((op_type, domain))
        if known_op is None:
            try:
                known_op = known_ops[(op_type, domain)] = onnx.defs.has(op_type, opsets.get(domain, 0), domain)
            except (TypeError, ValueError, UnicodeError) as exc:
                raise InvalidModelError(f"node #{i} has an unreadable op type or domain ({exc.__class__.__name__})") from exc
        if not known_op:
            continue  # unknown op: reported by the analysis, not fatal
        if op_type == "Constant" and any(_is_stripped(a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR):
            continue  # its value was stripped above (only its dims matter); the checker would look for the data file
        try:
            check(node.SerializeToString(), ctx, lex)
        except Exception as exc:  # noqa: BLE001 - ValidationError and friends
            label = f"'{name}' ({op_type})" if name else f"#{i} ({op_type})"
            raise InvalidModelError(f"node {label} is invalid: {' '.join(str(exc).split())}") from exc
