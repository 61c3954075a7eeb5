"""Completing shape inference where ONNX's data propagation stops.

ONNX propagates shape values through Shape/Gather/Concat/... but not through every op (e.g. a
``Div`` of a dim by the window size, as Swin's window partitioning computes). When inference
leaves a node output without a resolved shape, this pass walks the main graph once in execution
order: it keeps the values of small constant tensors (initializers, Constants, and Shape of a
tensor whose shape is known), evaluates shape arithmetic on them, and re-infers each unresolved
node alone with ONNX's per-node inference, given those values. The model's nodes are not changed;
only value_info is added.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx
import onnx.defs
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

MAX_ELEMENTS = 4096


def _resolved(tp: onnx.TypeProto | None, names: frozenset[str] = frozenset()) -> bool:
    """A tensor type whose every dim is a value or one of the graph inputs' dim names."""
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return False
    return all(d.HasField("dim_value") or d.dim_param in names for d in tp.tensor_type.shape.dim)


def _all_resolved(g: onnx.GraphProto, names: frozenset[str], outputs: list[str] | None = None,
                  tables: list | None = None) -> bool:
    """Whether every node output of ``g`` has a :func:`_resolved` type (the last declaration of a
    name counts): the usual answer, found from one pass over the value infos
    (:func:`~mlms_ir.ir.graph.read_type_table`) without building their table of protos. Each
    distinct type is looked at once (a 200,000-node decoder's 213,000 value infos have 8).
    ``outputs``: the names of every output of ``g``'s nodes, when the caller has them (else read
    from the nodes). ``tables``: where the answer is yes, the :class:`~mlms_ir.ir.graph.TypeTable`
    read is appended to it (the loader's tensors are built from it)."""
    from mlms_ir.ir.graph import read_type_table

    table = read_type_table(g)
    states = []  # by type: 0 not a tensor, 1 unresolved, 2 resolved
    for key in table.keys:
        tp = onnx.ValueInfoProto.FromString(key).type
        states.append(0 if tp.WhichOneof("value") != "tensor_type" else 2 if _resolved(tp, names) else 1)
    state_of = states.__getitem__
    last: dict[str, int] = {}
    for section_names, indices in (table.input, table.value_info, table.output):
        last.update(zip(section_names, map(state_of, indices)))
    get = last.get
    wanted = outputs if outputs is not None else [o for n in g.node for o in n.output if o]
    if all(get(o) == 2 for o in wanted):
        if tables is not None:
            tables.append(table)
        return True
    return False


def _static_shape(tp: onnx.TypeProto | None) -> list[int] | None:
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    dims = tp.tensor_type.shape.dim
    return [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else None


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes(node: onnx.NodeProto, args: list[np.ndarray], a: dict) -> list[int]:
    if len(args) > 1:
        return [int(v) for v in np.asarray(args[1]).reshape(-1)]
    return [int(v) for v in a.get("axes", [])]


def _np_eval(node: onnx.NodeProto, args: list[np.ndarray]) -> list[np.ndarray] | None:
    """numpy versions of the shape-arithmetic ops; None means "ask the reference evaluator"."""
    op = node.op_type
    a = _attrs(node)
    if op == "Identity":
        return [args[0]]
    if op == "Gather":
        return [np.take(args[0], args[1], axis=int(a.get("axis", 0)))]
    if op == "Unsqueeze":
        out = args[0]
        axes = sorted(ax % (out.ndim + len(_axes(node, args, a))) for ax in _axes(node, args, a))
        for ax in axes:
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Squeeze":
        axes = _axes(node, args, a)
        return [np.squeeze(args[0], axis=tuple(axes) if axes else None)]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(x) for x in args], axis=int(a["axis"]))]
    if op == "Cast":
        return [args[0].astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))]
    if op in ("Add", "Sub", "Mul"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op]
        return [f(args[0], args[1]).astype(args[0].dtype)]
    if op == "Div":
        if np.issubdtype(args[0].dtype, np.integer):
            return [np.trunc(args[0] / args[1]).astype(args[0].dtype)]
        return [(args[0] / args[1]).astype(args[0].dtype)]
    if op in ("Floor", "Ceil", "Neg", "Abs", "Sqrt"):
        return [getattr(np, {"Floor": "floor", "Ceil": "ceil", "Neg": "negative", "Abs": "abs", "Sqrt": "sqrt"}[op])(args[0])]
    if op in ("Min", "Max"):
        f = np.minimum if op == "Min" else np.maximum
        out = args[0]
        for x in args[1:]:
            out = f(out, x)
        return [out]
    if op in ("Equal", "Less", "Greater"):
        return [{"Equal": np.equal, "Less": np.less, "Greater": np.greater}[op](args[0], args[1])]
    if op == "Where":
        return [np.where(args[0], args[1], args[2])]
    return None


def _ref_eval(node: onnx.NodeProto, args: list[np.ndarray], opset: int) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" for k in range(len(node.input))]
    n = onnx.NodeProto()
    n.CopyFrom(node)
    del n.input[:]
    n.input.extend(nm if x else "" for nm, x in zip(names, node.input))
    del n.output[:]
    n.output.extend(f"o{k}" for k in range(len(node.output)))
    n.name = ""
    present = [(nm, v) for nm, x, v in zip(names, node.input, args) if x]
    g = helper.make_graph(
        [n], "fold",
        [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)) for nm, v in present],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in n.output],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    outs = ReferenceEvaluator(m).run(None, dict(present))
    return [np.asarray(o) for o in outs]


REFERENCE_OPS = frozenset({"Slice", "Reshape", "Range", "ConstantOfShape", "Expand", "Tile", "ReduceProd",
                           "ReduceSum", "Transpose", "Flatten", "Size", "Mod", "Not", "And", "Or"})


def _output_size(node: onnx.NodeProto, args: list[np.ndarray]) -> int:
    """An upper estimate of the elements an op would produce from these constant inputs
    (so that a Range(0, 4e9) is never evaluated)."""
    op = node.op_type
    try:
        if op == "Range":
            start, limit, delta = (float(a.reshape(-1)[0]) for a in args[:3])
            return 0 if delta == 0 else max(0, math.ceil((limit - start) / delta))
        if op == "ConstantOfShape":
            return math.prod(int(d) for d in args[0].reshape(-1))
        if op == "Expand":
            return math.prod(np.broadcast_shapes(args[0].shape, tuple(int(d) for d in args[1].reshape(-1))))
        if op == "Tile":
            return args[0].size * math.prod(int(d) for d in args[1].reshape(-1))
    except (ValueError, TypeError, IndexError, OverflowError):
        return MAX_ELEMENTS + 1
    return max((a.size for a in args), default=0)


def _evaluate(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray] | None:
    args = [values[x] if x else np.array([]) for x in node.input]
    if _output_size(node, [a for x, a in zip(node.input, args) if x]) > MAX_ELEMENTS:
        return None
    try:
        with np.errstate(all="ignore"):
            out = _np_eval(node, [values[x] for x in node.input if x])
        if out is None and node.op_type in REFERENCE_OPS:
            out = _ref_eval(node, args, opset)
    except Exception as exc:  # noqa: BLE001 - an op we cannot evaluate stays unknown
        log.debug("cannot evaluate %s: %s", node.op_type, exc)
        return None
    if out is None or any(o.size > MAX_ELEMENTS for o in out):
        return None
    return out


def complete_shapes(inferred: onnx.ModelProto, outputs: list[str] | None = None, tables: list | None = None) -> int:
    """Resolve more output shapes of the main graph in place; returns how many were resolved.
    ``outputs``: the names of every output of the main graph's nodes, when the caller has them
    (its check that all are resolved already, the usual case, then reads no node). ``tables``:
    where every output was resolved already, the main graph's value infos as that check read
    them (a :class:`~mlms_ir.ir.graph.TypeTable`) are appended to it."""
    g = inferred.graph
    inits = {t.name for t in g.initializer}
    names = frozenset(
        d.dim_param for vi in g.input if vi.name not in inits and vi.type.HasField("tensor_type")
        for d in vi.type.tensor_type.shape.dim if d.dim_param
    )
    if _all_resolved(g, names, outputs, tables):
        return 0
    types: dict[str, onnx.TypeProto] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type
    values: dict[str, np.ndarray] = {}
    for t in g.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
        if t.data_location != onnx.TensorProto.EXTERNAL and math.prod(t.dims) <= MAX_ELEMENTS:
            try:
                values[t.name] = numpy_helper.to_array(t)
            except Exception:  # noqa: BLE001
                pass
    opsets = {o.domain: o.version for o in inferred.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    outputs = {o.name: o for o in g.output}
    value_infos = {vi.name: vi for vi in g.value_info}
    resolved = 0
    for node in g.node:
        if node.domain not in ("", "ai.onnx") or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
        ):
            continue
        if node.op_type == "Constant":
            try:
                attr = node.attribute[0]
                if attr.type == onnx.AttributeProto.TENSOR and (
                    attr.t.data_location == onnx.TensorProto.EXTERNAL or math.prod(attr.t.dims) > MAX_ELEMENTS
                ):
                    continue  # never read external data; large constants are not shape arithmetic
                v = numpy_helper.to_array(attr.t) if attr.type == onnx.AttributeProto.TENSOR else np.asarray(helper.get_attribute_value(attr))
                if v.size <= MAX_ELEMENTS:
                    values[node.output[0]] = v
            except Exception:  # noqa: BLE001
                pass
            continue
        if not all(_resolved(types.get(o), names) for o in node.output if o) and all(x in types for x in node.input if x):
            try:
                schema = onnx.defs.get_schema(node.op_type, opset, "")
                data = {x: numpy_helper.from_array(values[x]).SerializeToString() for x in node.input if x in values}
                outs = schema._infer_node_outputs(
                    node.SerializeToString(),
                    {x: types[x].SerializeToString() for x in node.input if x},
                    data, {}, opsets, inferred.ir_version,
                )
            except Exception as exc:  # noqa: BLE001 - leave this node as inference left it
                log.debug("per-node inference of %s failed: %s", node.op_type, exc)
                outs = {}
            for name, raw in outs.items():
                tp = onnx.TypeProto.FromString(raw)
                if _resolved(tp, names) and not _resolved(types.get(name), names):
                    types[name] = tp
                    vi = helper.make_value_info(name, tp)
                    if name in outputs:
                        outputs[name].CopyFrom(vi)
                    elif name in value_infos:
                        value_infos[name].CopyFrom(vi)
                    else:
                        g.value_info.append(vi)
                        value_infos[name] = g.value_info[-1]
                    resolved += 1
        if node.op_type == "Shape":
            shape = _static_shape(types.get(node.input[0]))
            if shape is not None:
                a = _attrs(node)
                start, end = int(a.get("start", 0)), a.get("end")
                values[node.output[0]] = np.array(shape[start : None if end is None else int(end)], dtype=np.int64)
        elif node.op_type == "Size":
            shape = _static_shape(types.get(node.input[0]))
            if shape is not None:
                values[node.output[0]] = np.array(math.prod(shape), dtype=np.int64)
        elif all(x in values for x in node.input if x) and node.input:
            out = _evaluate(node, values, opset)
            if out is not None:
                for name, v in zip(node.output, out):
                    if name:
                        values[name] = v
    return resolved
