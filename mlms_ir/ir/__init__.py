"""The ONNX graph IR: loading, shape inference with bindings, and the :class:`Graph` wrapper."""

from __future__ import annotations

import onnx
import onnx.checker
import onnx.defs

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.graph import Graph, Node, TensorInfo, _topological_order
from mlms_ir.ir.load import LoadedModel, ModelSource, read_model
from mlms_ir.ir.shapes import Bindings, Dims, InputShapes, apply_bindings, infer_shapes, parse_bindings

__all__ = ["Bindings", "Graph", "LoadedModel", "Node", "TensorInfo", "load", "parse_bindings"]


def load(
    source: ModelSource | Graph,
    *,
    input_shapes: InputShapes = None,
    batch: int | None = None,
    dims: Dims = None,
    lenient: bool = False,
) -> Graph:
    """Load a model into a :class:`Graph`, bind dynamic dims and infer every shape.

    Args:
        source: a path to an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        input_shapes: ``{"input": [1, 3, 224, 224]}`` or strings ``"input:1x3x224x224"``.
        batch: the leading dim of every input whose leading dim is not fixed.
        dims: named symbolic dims, ``{"batch": 8, "seq": 128}`` or ``"batch=8,seq=128"``.
        lenient: analyse a model that ONNX's strict shape inference rejects (with a warning).

    External weight data is never read, only checked for presence and size.

    Raises:
        mlms_ir.errors.ModelLoadError: missing, empty, truncated or non-ONNX file.
        mlms_ir.errors.ExternalDataError: external data missing, short or outside the model's folder.
        mlms_ir.errors.InvalidModelError: dangling inputs, cycles, bad attributes, failed inference.
        mlms_ir.errors.UnsupportedOpsetError: an opset or IR version newer than onnx knows.
        mlms_ir.errors.ShapeBindingError: a binding that is malformed or does not fit the inputs.
    """
    if isinstance(source, Graph):
        loaded_from = getattr(source, "loaded", None)
        # re-read what the graph was loaded from: its own model lacks embedded weight data
        source = loaded_from.path or loaded_from.source if loaded_from is not None else source.model
    loaded = read_model(source)
    model = loaded.model
    warnings: list[str] = []
    if model.functions:
        try:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
            warnings.append(f"inlined {len(loaded.model.functions)} model-local function(s) before analysis")
        except Exception as exc:  # noqa: BLE001 - onnx's C++ inliner raises various types
            raise InvalidModelError(f"cannot inline the model's local functions: {' '.join(str(exc).split())}") from exc
    bindings = parse_bindings(input_shapes, batch, dims)
    _strip_weight_data(model.graph)
    _sort_nodes(model)
    _check_nodes(model)
    apply_bindings(model, bindings)
    inferred, inference_warnings = infer_shapes(model, lenient=lenient)
    warnings.extend(inference_warnings)
    graph = Graph(inferred, source=str(loaded.path) if loaded.path else None, ordered=True)
    graph.loaded = loaded
    graph.bindings = bindings
    graph.warnings = warnings
    return graph


#: Embedded initializers larger than this (float) or ``_INT_KEEP_BYTES`` (other types) lose their data
#: before shape inference: only their dims matter, and copying them through ONNX's C++ core costs
#: seconds and gigabytes on large models. Small integer tensors (shapes, axes) keep their values
#: for data propagation.
_FLOAT_KEEP_BYTES = 1024
_INT_KEEP_BYTES = 65536
STRIPPED_LOCATION = "mlms_ir:embedded-data-not-loaded"


def _strip_tensor(t: onnx.TensorProto) -> None:
    from mlms_ir.ir.dtypes import FLOAT_TYPES

    if t.data_location == onnx.TensorProto.EXTERNAL or t.data_type == onnx.TensorProto.STRING:
        return
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


def _strip_weight_data(g: onnx.GraphProto) -> None:
    for t in g.initializer:
        _strip_tensor(t)
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                _strip_tensor(a.t)
            if a.type == onnx.AttributeProto.GRAPH:
                _strip_weight_data(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    _strip_weight_data(sg)


def _sort_nodes(model: onnx.ModelProto) -> None:
    """Put the main graph's nodes in execution order (shape inference needs it); rejects cycles."""
    g = model.graph
    available = {vi.name for vi in g.input} | {i.name for i in g.initializer} | {s.values.name for s in g.sparse_initializer}
    order = _topological_order(list(g.node), available, set(), "the main graph")
    if order != list(range(len(order))):
        nodes = [g.node[i] for i in order]
        copies = [onnx.NodeProto() for _ in nodes]
        for c, n in zip(copies, nodes):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)


def _check_nodes(model: onnx.ModelProto) -> None:
    """Check attributes of every node whose op ONNX knows (types, required attributes)."""
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version
    ctx.opset_imports = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    lex = onnx.checker.C.LexicalScopeContext()
    known = {"", "ai.onnx", "ai.onnx.ml"}
    for i, node in enumerate(model.graph.node):
        if node.domain not in known:
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            continue  # subgraphs are checked by shape inference, which knows their outer scope
        domain = "" if node.domain == "ai.onnx" else node.domain
        version = ctx.opset_imports.get(domain, 0)
        try:
            known_op = onnx.defs.has(node.op_type, version, domain)
        except (TypeError, ValueError, UnicodeError) as exc:
            raise InvalidModelError(f"node #{i} has an unreadable op type or domain ({exc.__class__.__name__})") from exc
        if not known_op:
            continue  # unknown op: reported by the analysis, not fatal
        if node.op_type == "Constant" and any(_is_stripped(a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR):
            continue  # its value was stripped above (only its dims matter); the checker would look for the data file
        try:
            onnx.checker.C.check_node(node.SerializeToString(), ctx, lex)
        except Exception as exc:  # noqa: BLE001 - ValidationError and friends
            label = f"'{node.name}' ({node.op_type})" if node.name else f"#{i} ({node.op_type})"
            raise InvalidModelError(f"node {label} is invalid: {' '.join(str(exc).split())}") from exc
