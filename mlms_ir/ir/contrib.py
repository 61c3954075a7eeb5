"""Output shapes of common com.microsoft (ONNX Runtime contrib) ops.

ONNX's shape inference does not know these ops, so everything downstream of one would lose its
shape. Each rule here gives an op's output shapes from its input shapes and attributes; the
inferred shapes are added as value_info and inference runs again.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper

MS = "com.microsoft"

Shape = list[int | str | None]
Rule = Callable[[onnx.NodeProto, list[Shape | None], list[int]], list[Shape | None]]

_RULES: dict[str, Rule] = {}


def _rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            _RULES[op] = fn
        return fn

    return deco


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


@_rule(
    "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "LayerNormalization",
    "RotaryEmbedding", "DequantizeLinear", "QuantizeLinear", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearSoftmax", "BiasDropout", "BiasSoftmax", "Inverse", "GemmFastGelu",
)
def _same_as_first(node, shapes, types):
    return [shapes[0]]


@_rule("QLinearAdd", "QLinearMul")
def _broadcast_qlinear(node, shapes, types):
    a, b = (shapes[0], shapes[3]) if len(shapes) > 3 else (shapes[0], None)
    return [_broadcast(a, b)]


def _broadcast(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + list(a)
    b = [1] * (n - len(b)) + list(b)
    out: Shape = []
    for x, y in zip(a, b):
        out.append(y if x == 1 else x if y == 1 or x == y else (x if isinstance(x, int) else y))
    return out


def _matmul_shape(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None or not a or not b:
        return None
    if len(b) == 1:
        return list(a[:-1])
    if len(a) == 1:
        return list(b[:-2]) + [b[-1]]
    batch = _broadcast(list(a[:-2]), list(b[:-2])) or []
    return batch + [a[-2], b[-1]]


@_rule("FusedMatMul")
def _fused_matmul(node, shapes, types):
    a, b = shapes[0], shapes[1]
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return [None]
    if _attr(node, "transA", 0):
        a = list(a[:-2]) + [a[-1], a[-2]]
    if _attr(node, "transB", 0):
        b = list(b[:-2]) + [b[-1], b[-2]]
    return [_matmul_shape(a, b)]


@_rule("MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QOrderedMatMul")
def _matmul_like(node, shapes, types):
    return [_matmul_shape(shapes[0], shapes[1])]


@_rule("MatMulNBits")
def _matmul_nbits(node, shapes, types):
    a = shapes[0]
    n = _attr(node, "N")
    return [None if a is None or n is None else list(a[:-1]) + [int(n)]]


@_rule("Attention")
def _attention(node, shapes, types):
    x, w = shapes[0], shapes[1] if len(shapes) > 1 else None
    if x is None or len(x) != 3:
        return [None]
    sizes = _attr(node, "qkv_hidden_sizes")
    if sizes:
        v = int(sizes[2])
    elif w is not None and isinstance(w[-1], int):
        v = w[-1] // 3
    else:
        return [None]
    heads = int(_attr(node, "num_heads", 1) or 1)
    past = shapes[4] if len(shapes) > 4 else None
    present = None
    if past is not None and len(past) == 5 and all(isinstance(d, int) for d in (past[3], x[1])):
        present = [2, x[0], heads, past[3] + x[1], past[4]]
    elif isinstance(v, int) and v % heads == 0 and len(node.output) > 1 and node.output[1]:
        present = [2, x[0], heads, x[1], (sizes[1] if sizes else v) // heads]
    return [[x[0], x[1], v], present]


@_rule("MultiHeadAttention")
def _mha(node, shapes, types):
    q = shapes[0]
    v = shapes[2] if len(shapes) > 2 else None
    if q is None:
        return [None]
    if len(q) == 5:  # packed QKV: B, S, N, 3, H
        n, h = q[2], q[4]
        return [[q[0], q[1], n * h if isinstance(n, int) and isinstance(h, int) else None]]
    if len(q) != 3:
        return [None]
    heads = _attr(node, "num_heads")
    if v is not None and len(v) == 3:
        return [[q[0], q[1], v[2]]]
    if v is not None and len(v) == 4 and heads:
        return [[q[0], q[1], v[1] * v[3] if all(isinstance(d, int) for d in (v[1], v[3])) else None]]
    return [[q[0], q[1], q[2]]]


@_rule("GroupQueryAttention")
def _gqa(node, shapes, types):
    q = shapes[0]
    if q is None or len(q) != 3:
        return [None]
    heads, kv = _attr(node, "num_heads"), _attr(node, "kv_num_heads")
    k = shapes[1] if len(shapes) > 1 else None
    if not heads or not kv or not isinstance(q[2], int):
        return [list(q)]
    packed = k is None
    head = q[2] // (heads + 2 * kv) if packed else q[2] // heads
    past = shapes[3] if len(shapes) > 3 else None
    total = q[1]
    if past is not None and len(past) == 4 and isinstance(past[2], int) and isinstance(q[1], int):
        total = past[2] + q[1]
    present = [q[0], kv, total, head]
    return [[q[0], q[1], heads * head], present, list(present)]


@_rule("EmbedLayerNormalization")
def _embed_ln(node, shapes, types):
    ids, word = shapes[0], shapes[2] if len(shapes) > 2 else None
    if ids is None or word is None or len(ids) != 2:
        return [None, None]
    return [[ids[0], ids[1], word[-1]], [ids[0]]]


@_rule("QLinearGlobalAveragePool")
def _qgap(node, shapes, types):
    x = shapes[0]
    if x is None:
        return [None]
    if _attr(node, "channels_last", 0):
        return [[x[0]] + [1] * (len(x) - 2) + [x[-1]]]
    return [list(x[:2]) + [1] * (len(x) - 2)]


@_rule("FusedConv", "NhwcConv", "QLinearConv")
def _conv(node, shapes, types):
    x = shapes[0]
    w = shapes[3] if node.op_type == "QLinearConv" else shapes[1]
    if x is None or w is None or len(x) < 3:
        return [None]
    nhwc = node.op_type == "NhwcConv"
    spatial = list(x[1:-1]) if nhwc else list(x[2:])
    k = _attr(node, "kernel_shape") or list(w[2:])
    n = len(spatial)
    strides = _attr(node, "strides") or [1] * n
    dil = _attr(node, "dilations") or [1] * n
    pads = _attr(node, "pads") or [0] * (2 * n)
    out = []
    for i, s in enumerate(spatial):
        if not isinstance(s, int) or not isinstance(k[i], int):
            out.append(None)
            continue
        eff = (k[i] - 1) * dil[i] + 1
        out.append((s + pads[i] + pads[i + n] - eff) // strides[i] + 1)
    return [[x[0]] + out + [w[0]]] if nhwc else [[x[0], w[0]] + out]


def _shape_of(vi: onnx.ValueInfoProto | None) -> Shape | None:
    if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim
    ]


def add_contrib_shapes(model: onnx.ModelProto) -> bool:
    """Add value_info for contrib-op outputs that inference left without a shape. True if any added."""
    g = model.graph
    if not any(n.domain == MS and n.op_type in _RULES for n in g.node):
        return False
    infos: dict[str, onnx.ValueInfoProto] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        infos[vi.name] = vi
    for init in g.initializer:
        infos.setdefault(init.name, helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    outputs = {o.name for o in g.output}
    added = False
    for node in g.node:
        if node.domain != MS or node.op_type not in _RULES:
            continue
        if all(o == "" or _shape_of(infos.get(o)) is not None for o in node.output):
            continue
        shapes = [_shape_of(infos.get(i)) if i else None for i in node.input]
        types = [infos[i].type.tensor_type.elem_type if i in infos else 0 for i in node.input]
        try:
            outs = _RULES[node.op_type](node, shapes, types)
        except (IndexError, TypeError, ValueError, ZeroDivisionError):
            continue  # malformed node: leave its shapes unknown
        for name, shape in zip(node.output, outs):
            if not name or shape is None or _shape_of(infos.get(name)) is not None:
                continue
            elem = types[0] if types else 0
            if node.op_type in ("QuantizeLinear",):
                elem = onnx.TensorProto.UINT8
            if node.op_type in ("DequantizeLinear", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
                elem = onnx.TensorProto.FLOAT
            existing = infos.get(name)
            if existing is not None and existing.type.tensor_type.elem_type:
                elem = existing.type.tensor_type.elem_type
            vi = helper.make_tensor_value_info(name, elem, shape)
            if name in outputs:
                for o in g.output:
                    if o.name == name:
                        o.CopyFrom(vi)
            else:
                if existing is not None and existing in g.value_info:
                    g.value_info.remove(existing)
                g.value_info.append(vi)
            infos[name] = vi
            added = True
    return added
