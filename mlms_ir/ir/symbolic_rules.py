"""Per-op rules of the symbolic shape pass (:mod:`mlms_ir.ir.symbolic`).

Two tables, both keyed by ONNX op type (default domain):

* :data:`SHAPE_RULES`: output shapes from input shapes, attributes and the values of small
  integer inputs; dims are ints or sympy expressions, None where a rule cannot tell.
* :data:`VALUE_RULES`: the values of small integer outputs (shape arithmetic), as numpy object
  arrays of ints and expressions.

A rule runs only where ONNX's inference left a dim unknown; ops without a rule go through ONNX's
own per-node inference with the resolved input dims (which keeps every pass-through dim), and
whatever is still unknown becomes a named symbol.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import onnx

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir import expr as E
from mlms_ir.ir.symbolic import MAX_VALUE_ELEMENTS, is_int_type

log = logging.getLogger(__name__)

Shape = tuple | None
INT64_BIG = 2**62  # a Slice bound at or beyond this means "to the end"


class Ctx:
    """What a rule sees of one node."""

    def __init__(self, w, g, node, ins: list[Shape], onnx_outs: list[Shape]) -> None:
        self.w, self.g, self.node, self.ins, self.onnx_outs = w, g, node, ins, onnx_outs
        self.attrs = node.attrs
        self.proto = node.proto

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    def has(self, i: int) -> bool:
        return i < len(self.proto.input) and bool(self.proto.input[i])

    def shape(self, i: int) -> Shape:
        return self.ins[i] if i < len(self.ins) else None

    def val(self, i: int) -> np.ndarray | None:
        return self.w.value(self.g, self.proto.input[i]) if self.has(i) else None

    def ints(self, i: int) -> list | None:
        """Input ``i``'s values as a flat list (ints and expressions), or None."""
        v = self.val(i)
        if v is None:
            return None
        out = [E.normalize(_sym(x)) for x in v.reshape(-1).tolist()]
        return out if all(E.is_int(x) or E.is_symbolic(x) for x in out) else None

    def consts(self, i: int) -> list[int] | None:
        """Input ``i``'s values when they are all plain ints."""
        v = self.ints(i)
        return v if v is not None and all(E.is_int(x) for x in v) else None

    @property
    def n_out(self) -> int:
        return len(self.proto.output)


def _sym(x: Any) -> Any:
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


ShapeRule = Callable[[Ctx], list[Shape] | None]
ValueRule = Callable[[Ctx, list], list | None]
SHAPE_RULES: dict[str, ShapeRule] = {}
VALUE_RULES: dict[str, ValueRule] = {}


def _registrar(table: dict[str, Any]) -> Callable[..., Callable[[Any], Any]]:
    """A decorator factory that files a function under each op type it names in ``table``."""
    def register(*ops: str) -> Callable[[Any], Any]:
        def deco(fn: Any) -> Any:
            for op in ops:
                table[op] = fn
            return fn

        return deco

    return register


rule = _registrar(SHAPE_RULES)  #: ``@rule("Reshape")``: the output shapes of an op
value_rule = _registrar(VALUE_RULES)  #: ``@value_rule("Shape")``: the values of an op's small integer output


# ---------------------------------------------------------------------------- helpers
def prod(dims) -> Any:
    return E.normalize(math.prod(dims)) if dims else 1


def broadcast(*shapes: Shape) -> Shape:
    """Multidirectional (numpy) broadcasting; where two different dims meet, one of them is 1 at
    run time in a valid model, so the output dim is their Max (exact)."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = []
        for s in shapes:
            j = k - (rank - len(s))
            if j >= 0:
                dims.append(s[j])
        real = [d for d in dims if not (E.is_int(d) and d == 1)]
        if not real:
            out.append(1)
            continue
        first = real[0]
        if all(d == first for d in real[1:]):
            out.append(first)
        elif any(E.is_int(d) for d in real):
            out.append(next(d for d in real if E.is_int(d)))  # an int meets a symbol: the symbol is 1 or that int
        else:
            out.append(E.smax(*dict.fromkeys(real)))
    return tuple(out)


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def same(i: int = 0, outputs: int | None = None) -> ShapeRule:
    def fn(c: Ctx) -> list[Shape]:
        return [c.shape(i)] * (outputs or c.n_out)

    return fn


# ---------------------------------------------------------------------------- shape-preserving ops
SAME_SHAPE = (
    "Identity", "Cast", "CastLike", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not",
    "BitwiseNot", "IsNaN", "IsInf", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu",
    "Clip", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Swish",
    "Softmax", "LogSoftmax", "Hardmax", "CumSum", "LRN", "InstanceNormalization", "GroupNormalization",
    "MeanVarianceNormalization", "LpNormalization", "Trilu", "ReverseSequence", "BatchNormalization",
    "QuantizeLinear", "DequantizeLinear", "RMSNormalization", "ScatterND", "ScatterElements", "Scatter",
    "RandomNormalLike", "RandomUniformLike", "Bernoulli", "EyeLike", "Dropout", "DynamicQuantizeLinear",
)
for _op in SAME_SHAPE:
    SHAPE_RULES[_op] = same(0)

BROADCAST = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Sum", "Max", "Min", "Mean",
    "Where",
)


@rule(*BROADCAST)
def _broadcast(c: Ctx) -> list[Shape]:
    return [broadcast(*(c.shape(i) for i in range(len(c.proto.input)) if c.has(i)))]


@rule("DynamicQuantizeLinear")
def _dql(c: Ctx) -> list[Shape]:
    return [c.shape(0), (), ()]


@rule("LayerNormalization")
def _layer_norm(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None] * c.n_out
    axis = _axis(int(c.attr("axis", -1)), len(x))
    if not 0 <= axis < len(x):  # out of range (invalid): axis=-2**31 made a tuple of 2**31 ones (16 GB)
        return [None] * c.n_out
    stat = tuple(x[:axis]) + (1,) * (len(x) - axis)
    return [x, stat, stat][: c.n_out]


@rule("Shape")
def _shape(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    r = len(x) if x is not None else None
    if r is None:
        return [None]
    start, end = int(c.attr("start", 0)), c.attr("end")
    return [(len(range(r)[slice(start, None if end is None else int(end))]),)]


@rule("Size")
def _size(c: Ctx) -> list[Shape]:
    return [()]


# ---------------------------------------------------------------------------- reshaping
@rule("Reshape")
def _reshape(c: Ctx) -> list[Shape]:
    x, target = c.shape(0), c.ints(1)
    if target is None:
        return [None]
    allowzero = int(c.attr("allowzero", 0))
    out: list[Any] = []
    minus = None
    for i, t in enumerate(target):
        if E.is_int(t) and t == 0 and not allowzero:
            if x is None or i >= len(x):
                return [None]
            out.append(x[i])
        elif E.is_int(t) and t == -1:
            minus = i
            out.append(None)
        else:
            out.append(t)
    if minus is not None:
        if x is None:
            return [None]
        known = prod([d for d in out if d is not None])
        total = prod(x)
        if E.is_int(known) and known == 0:  # -1 beside a 0 (allowzero, invalid) or a 0 dim: no one size
            return [None]
        if E.is_int(total) and E.is_int(known):
            if total % known:  # no whole size fits (ONNX rejects the model): unknown, not a rounded one
                return [None]
            out[minus] = total // known
        else:
            out[minus] = E.exact_div(total, known)
    return [tuple(out)]


@rule("Flatten")
def _flatten(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    axis = _axis(int(c.attr("axis", 1)), len(x))
    return [(prod(x[:axis]), prod(x[axis:]))]


def _axes_of(c: Ctx, input_index: int) -> list[int] | None:
    if c.has(input_index):
        return c.consts(input_index)
    a = c.attr("axes")
    return [int(v) for v in a] if a is not None else []


@rule("Unsqueeze")
def _unsqueeze(c: Ctx) -> list[Shape]:
    x, axes = c.shape(0), _axes_of(c, 1)
    if x is None or axes is None:
        return [None]
    rank = len(x) + len(axes)
    axes = sorted(_axis(a, rank) for a in axes)
    out = list(x)
    for a in axes:
        out.insert(a, 1)
    return [tuple(out)]


@rule("Squeeze")
def _squeeze(c: Ctx) -> list[Shape]:
    x, axes = c.shape(0), _axes_of(c, 1)
    if x is None or axes is None:
        return [None]
    if not axes:
        if not all(E.is_int(d) for d in x):
            return [None]
        return [tuple(d for d in x if d != 1)]
    drop = {_axis(a, len(x)) for a in axes}
    return [tuple(d for i, d in enumerate(x) if i not in drop)]


@rule("Transpose")
def _transpose(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    perm = c.attr("perm") or list(reversed(range(len(x))))
    return [tuple(x[int(p)] for p in perm)]


@rule("Expand")
def _expand(c: Ctx) -> list[Shape]:
    x, target = c.shape(0), c.ints(1)
    if target is None:
        return [None]
    return [broadcast(x, tuple(target))]


@rule("Tile")
def _tile(c: Ctx) -> list[Shape]:
    x, reps = c.shape(0), c.ints(1)
    if x is None or reps is None or len(reps) != len(x):
        return [None]
    return [tuple(E.normalize(d * r) for d, r in zip(x, reps))]


@rule("ConstantOfShape")
def _const_of_shape(c: Ctx) -> list[Shape]:
    target = c.ints(0)
    return [tuple(target) if target is not None else None]


@rule("Concat")
def _concat(c: Ctx) -> list[Shape]:
    shapes = [c.shape(i) for i in range(len(c.proto.input)) if c.has(i)]
    if not shapes or any(s is None for s in shapes):
        return [None]
    rank = len(shapes[0])
    axis = _axis(int(c.attr("axis", 0)), rank)
    out = list(shapes[0])
    out[axis] = E.normalize(sum(s[axis] for s in shapes))
    for i in range(rank):
        if i != axis:
            out[i] = broadcast(*((s[i],) for s in shapes))[0]
    return [tuple(out)]


@rule("Split")
def _split(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None] * c.n_out
    axis = _axis(int(c.attr("axis", 0)), len(x))
    d = x[axis]
    sizes = c.ints(1) if c.has(1) else c.attr("split")
    if sizes:
        sizes = [E.normalize(_sym(s)) for s in sizes]
    else:
        n = int(c.attr("num_outputs", 0)) or c.n_out
        if n != c.n_out:  # the spec makes them equal; a hostile 2**31 must not size a list
            n = c.n_out
        chunk = E.ceildiv(d, n)
        sizes = [chunk] * (n - 1) + [E.normalize(d - chunk * (n - 1))]
    outs = []
    for s in sizes[: c.n_out]:
        o = list(x)
        o[axis] = s
        outs.append(tuple(o))
    return outs


def _slice_len(d: Any, start: Any, end: Any, step: int) -> Any:
    if step > 0:
        s = _clamp_pos(d, start)
        e = _clamp_pos(d, end)
        return E.smax(0, E.ceildiv(E.normalize(e - s), step))
    # negative step: start clamps to [0, d-1], end to [-1, d-1]
    s = _clamp_neg(d, start, 0)
    e = _clamp_neg(d, end, -1)
    return E.smax(0, E.ceildiv(E.normalize(s - e), -step))


def _clamp_pos(d: Any, v: Any) -> Any:
    if E.is_int(v):
        if v >= INT64_BIG:
            return d
        if v <= -INT64_BIG:
            return 0
        if v < 0:
            return E.smax(E.normalize(v + d), 0)
    return E.smin(v, d)


def _clamp_neg(d: Any, v: Any, low: int) -> Any:
    if E.is_int(v):
        if v >= INT64_BIG:
            return E.normalize(d - 1)
        if v <= -INT64_BIG:
            return low
        if v < 0:
            v = E.normalize(v + d)
    return E.smin(E.smax(v, low), E.normalize(d - 1))


@rule("Slice")
def _slice(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    if c.node.opset < 10:
        starts, ends, axes, steps = c.attr("starts"), c.attr("ends"), c.attr("axes"), None
    else:
        starts, ends = c.ints(1), c.ints(2)
        axes = c.consts(3) if c.has(3) else None
        steps = c.consts(4) if c.has(4) else None
        if c.has(3) and axes is None or c.has(4) and steps is None:
            return [None]
    if starts is None or ends is None:
        return [None]
    axes = list(axes) if axes else list(range(len(starts)))
    steps = list(steps) if steps else [1] * len(starts)
    out = list(x)
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = _axis(int(a), len(x))
        out[a] = _slice_len(x[a], _sym(s), _sym(e), int(st))
    return [tuple(out)]


@rule("Pad")
def _pad(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    pads = c.ints(1) if c.node.opset >= 11 else c.attr("pads")
    if pads is None:
        return [None]
    axes = c.consts(3) if c.has(3) else list(range(len(x)))
    if axes is None:
        return [None]
    n = len(axes)
    out = list(x)
    for k, a in enumerate(axes):
        a = _axis(int(a), len(x))
        out[a] = E.normalize(x[a] + _sym(pads[k]) + _sym(pads[k + n]))
    return [tuple(out)]


@rule("DepthToSpace")
def _d2s(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    b = int(c.attr("blocksize", 1))
    if x is None or len(x) != 4:
        return [None]
    return [(x[0], E.floordiv(x[1], b * b), E.normalize(x[2] * b), E.normalize(x[3] * b))]


@rule("SpaceToDepth")
def _s2d(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    b = int(c.attr("blocksize", 1))
    if x is None or len(x) != 4:
        return [None]
    return [(x[0], E.normalize(x[1] * b * b), E.floordiv(x[2], b), E.floordiv(x[3], b))]


# ---------------------------------------------------------------------------- indexing
@rule("Gather")
def _gather(c: Ctx) -> list[Shape]:
    x, idx = c.shape(0), c.shape(1)
    if x is None or idx is None:
        return [None]
    axis = _axis(int(c.attr("axis", 0)), len(x))
    return [tuple(x[:axis]) + tuple(idx) + tuple(x[axis + 1:])]


@rule("GatherElements")
def _gather_elements(c: Ctx) -> list[Shape]:
    return [c.shape(1)]


@rule("GatherND")
def _gather_nd(c: Ctx) -> list[Shape]:
    x, idx = c.shape(0), c.shape(1)
    b = int(c.attr("batch_dims", 0))
    if x is None or idx is None or not idx or not E.is_int(idx[-1]):
        return [None]
    return [tuple(idx[:-1]) + tuple(x[b + idx[-1]:])]


@rule("OneHot")
def _one_hot(c: Ctx) -> list[Shape]:
    idx, depth = c.shape(0), c.ints(1)
    if idx is None or depth is None:
        return [None]
    rank = len(idx) + 1
    axis = _axis(int(c.attr("axis", -1)), rank)
    out = list(idx)
    out.insert(axis, depth[0])
    return [tuple(out)]


# ---------------------------------------------------------------------------- compute
@rule("MatMul", "MatMulInteger", "QLinearMatMul")
def _matmul(c: Ctx) -> list[Shape]:
    bi = 3 if c.node.op_type == "QLinearMatMul" else 1
    a, b = c.shape(0), c.shape(bi)
    if a is None or b is None or not a or not b:
        return [None]
    a1, b1 = len(a) == 1, len(b) == 1
    a2 = (1,) + tuple(a) if a1 else tuple(a)
    b2 = tuple(b) + (1,) if b1 else tuple(b)
    batch = broadcast(a2[:-2], b2[:-2])
    out = tuple(batch) + (a2[-2], b2[-1])
    if a1:
        out = out[:-2] + out[-1:]
    if b1:
        out = out[:-1]
    return [out]


@rule("Gemm")
def _gemm(c: Ctx) -> list[Shape]:
    a, b = c.shape(0), c.shape(1)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return [None]
    m = a[1] if c.attr("transA", 0) else a[0]
    n = b[0] if c.attr("transB", 0) else b[1]
    return [(m, n)]


def _spatial(c: Ctx, x: tuple, kernel: list, *, ceil_mode: bool = False) -> tuple | None:
    n = len(x) - 2
    strides = list(c.attr("strides") or [1] * n)
    dil = list(c.attr("dilations") or [1] * n)
    pads = list(c.attr("pads") or [0] * (2 * n))
    auto = str(c.attr("auto_pad", "NOTSET"))
    out = []
    for i in range(n):
        d, k, s, dl = x[2 + i], kernel[i], int(strides[i]), int(dil[i])
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(E.ceildiv(d, s))
            continue
        pb, pe = (0, 0) if auto == "VALID" else (int(pads[i]), int(pads[i + n]))
        span = E.normalize(d + pb + pe - dl * (k - 1) - 1)
        if ceil_mode:
            full = E.normalize(E.ceildiv(span, s) + 1)
            # the last window must start inside the input or its left padding
            out.append(E.smin(full, E.ceildiv(E.normalize(d + pb), s)))
        else:
            out.append(E.normalize(E.floordiv(span, s) + 1))
    return tuple(out)


@rule("Conv", "ConvInteger", "QLinearConv")
def _conv(c: Ctx) -> list[Shape]:
    wi = 3 if c.node.op_type == "QLinearConv" else 1
    x, w = c.shape(0), c.shape(wi)
    if x is None or w is None or len(x) < 3:
        return [None]
    kernel = list(c.attr("kernel_shape") or w[2:])
    sp = _spatial(c, x, kernel)
    return [(x[0], w[0]) + sp] if sp is not None else [None]


@rule("MaxPool", "AveragePool", "LpPool")
def _pool(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    kernel = c.attr("kernel_shape")
    if x is None or not kernel:
        return [None] * c.n_out
    sp = _spatial(c, x, [int(k) for k in kernel], ceil_mode=bool(c.attr("ceil_mode", 0)))
    out = (x[0], x[1]) + sp
    return [out] * c.n_out


@rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    return [None] if x is None else [(x[0], x[1]) + (1,) * (len(x) - 2)]


@rule("ConvTranspose")
def _conv_transpose(c: Ctx) -> list[Shape]:
    x, w = c.shape(0), c.shape(1)
    if x is None or w is None:
        return [None]
    n = len(x) - 2
    group = int(c.attr("group", 1))
    if c.attr("output_shape"):
        sp = tuple(int(v) for v in c.attr("output_shape"))[-n:]
        return [(x[0], E.normalize(w[1] * group)) + sp]
    kernel = list(c.attr("kernel_shape") or w[2:])
    strides = list(c.attr("strides") or [1] * n)
    dil = list(c.attr("dilations") or [1] * n)
    pads = list(c.attr("pads") or [0] * (2 * n))
    outpad = list(c.attr("output_padding") or [0] * n)
    auto = str(c.attr("auto_pad", "NOTSET"))
    sp = []
    for i in range(n):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            sp.append(E.normalize(x[2 + i] * int(strides[i])))
        else:
            sp.append(E.normalize(int(strides[i]) * (x[2 + i] - 1) + int(outpad[i]) + (int(kernel[i]) - 1) * int(dil[i]) + 1
                                  - int(pads[i]) - int(pads[i + n])))
    return [(x[0], E.normalize(w[1] * group)) + tuple(sp)]


REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")


@rule(*REDUCE)
def _reduce(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    if c.has(1):
        axes = c.consts(1)
        if axes is None:
            return [None]
    else:
        axes = [int(a) for a in (c.attr("axes") or [])]
    keep = int(c.attr("keepdims", 1))
    if not axes:
        if int(c.attr("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(len(x)))
    drop = {_axis(a, len(x)) for a in axes}
    if keep:
        return [tuple(1 if i in drop else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in drop)]


@rule("ArgMax", "ArgMin")
def _argmax(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    a = _axis(int(c.attr("axis", 0)), len(x))
    if int(c.attr("keepdims", 1)):
        return [tuple(1 if i == a else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i != a)]


@rule("Einsum")
def _einsum(c: Ctx) -> list[Shape]:
    import re

    eq = str(c.attr("equation", "")).replace(" ", "")
    if "->" not in eq or "..." in eq:
        return [None]
    lhs, rhs = eq.split("->")
    sizes: dict[str, Any] = {}
    for i, term in enumerate(lhs.split(",")):
        s = c.shape(i)
        if s is None or len(s) != len(term):
            return [None]
        for letter, d in zip(term, s):
            sizes[letter] = broadcast((sizes.get(letter, 1),), (d,))[0]
    if not all(ch in sizes for ch in re.findall(r"[A-Za-z]", rhs)):
        return [None]
    return [tuple(sizes[ch] for ch in rhs)]


# ---------------------------------------------------------------------------- data-dependent
@rule("TopK")
def _topk(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None, None]
    k = c.ints(1)
    kd = k[0] if k else c.w.data_dim(c.node, "k of TopK, computed from data", "topk")
    a = _axis(int(c.attr("axis", -1)), len(x))
    out = tuple(kd if i == a else d for i, d in enumerate(x))
    return [out, out]


@rule("NonZero")
def _nonzero(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    n = c.w.data_dim(c.node, "non-zero elements NonZero finds", "nonzero")
    return [(len(x) if x is not None else None, n)] if x is not None else [None]


@rule("NonMaxSuppression")
def _nms(c: Ctx) -> list[Shape]:
    return [(c.w.data_dim(c.node, "boxes NonMaxSuppression keeps", "nms"), 3)]


@rule("Compress")
def _compress(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    n = c.w.data_dim(c.node, "elements Compress keeps", "compress")
    if c.attrs.get("axis") is None:
        return [(n,)]
    if x is None:
        return [None]
    a = _axis(int(c.attr("axis")), len(x))
    return [tuple(n if i == a else d for i, d in enumerate(x))]


@rule("Unique")
def _unique(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    u = c.w.data_dim(c.node, "distinct values Unique finds", "unique")
    if c.attrs.get("axis") is None:
        y = (u,)
        inverse = (prod(x),) if x is not None else None
    else:
        if x is None:
            return [None] * c.n_out
        a = _axis(int(c.attr("axis")), len(x))
        y = tuple(u if i == a else d for i, d in enumerate(x))
        inverse = (x[a],)
    return [y, (u,), inverse, (u,)][: c.n_out]


@rule("Range")
def _range(c: Ctx) -> list[Shape]:
    vals = [c.ints(i) for i in range(3)]
    if any(v is None or len(v) != 1 for v in vals):
        return [(c.w.data_dim(c.node, "elements Range makes from data", "range"),)]
    start, limit, delta = (v[0] for v in vals)
    if not E.is_int(delta) or delta == 0:
        return [(c.w.data_dim(c.node, "elements Range makes from data", "range"),)]
    return [(E.smax(0, E.ceildiv(E.normalize(limit - start), delta)),)]


@rule("Resize", "Upsample")
def _resize(c: Ctx) -> list[Shape]:
    x = c.shape(0)
    if x is None:
        return [None]
    if c.node.op_type == "Upsample" or c.node.opset < 11:
        scales_i, sizes_i = (1 if c.has(1) else None), None
    else:
        scales_i, sizes_i = 2, 3
    axes = c.attr("axes")
    axes = [_axis(int(a), len(x)) for a in axes] if axes else list(range(len(x)))
    if str(c.attr("keep_aspect_ratio_policy", "stretch")) != "stretch":
        return [None]
    if sizes_i is not None and c.has(sizes_i):
        sizes = c.ints(sizes_i)
        if sizes is None or len(sizes) != len(axes):
            return [None]
        out = list(x)
        for a, s in zip(axes, sizes):
            out[a] = s
        return [tuple(out)]
    if scales_i is not None and c.has(scales_i):
        v = c.val(scales_i)
        scales = [float(s) for s in v.reshape(-1).tolist()] if v is not None else None
    else:
        scales = [float(s) for s in (c.attr("scales") or [])] or None
    if scales is None or len(scales) != len(axes):
        return [None]
    sp = E.sympy()
    out = list(x)
    for a, s in zip(axes, scales):
        d = x[a]
        if E.is_int(d):
            out[a] = int(math.floor(d * s))
        else:
            out[a] = E.normalize(sp.floor(d * sp.Rational(Fraction(s))))
    return [tuple(out)]


@rule("RoiAlign", "MaxRoiPool")
def _roi(c: Ctx) -> list[Shape]:
    x, rois = c.shape(0), c.shape(1)
    if x is None or rois is None:
        return [None]
    if c.node.op_type == "RoiAlign":
        hw = (int(c.attr("output_height", 1)), int(c.attr("output_width", 1)))
    else:
        hw = tuple(int(v) for v in c.attr("pooled_shape"))
    return [(rois[0], x[1]) + hw]


# ---------------------------------------------------------------------------- control flow
def _if(c: Ctx) -> list[Shape]:
    cond = c.val(0)
    taken = None
    if cond is not None and cond.size == 1 and isinstance(cond.reshape(-1)[0], (bool, int, np.bool_, np.integer)):
        taken = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
    subs = [g for a, g in c.node.subgraphs.items() if taken is None or a == taken]
    outs: list[Shape] = []
    for k in range(c.n_out):
        branch = []
        for sub in subs:
            names = sub.output_names
            branch.append(c.w.shape(sub, names[k]) if k < len(names) else None)
        if any(b is None for b in branch) or len({len(b) for b in branch}) != 1:
            outs.append(None)
            continue
        dims = []
        for axis in range(len(branch[0])):
            ds = [b[axis] for b in branch]
            if all(d == ds[0] for d in ds):
                dims.append(ds[0])
            else:
                alternatives = " or ".join(f"{d} ({a})" for a, d in zip(c.node.subgraphs, ds))
                dims.append(c.w.data_dim(c.node, f"dim {axis} of output {k}: {alternatives}, by the branch taken", f"if_out{k}_d{axis}"))
        outs.append(tuple(dims))
    return outs


def loop_trips(c: Ctx) -> Any:
    """A Loop's iteration count: its max trip count M when known (an expression too), else a symbol."""
    m = c.ints(0) if c.has(0) else None
    if m and (E.is_symbolic(m[0]) or 0 <= m[0] < 2**31):
        trips = m[0]
    else:
        trips = c.w.data_dim(c.node, "iterations of Loop, set at run time", "loop")
    c.w.trips[c.node.id] = trips
    return trips


def _loop(c: Ctx) -> list[Shape]:
    body = c.node.subgraphs.get("body")
    if body is None:
        return [None] * c.n_out
    n_carried = len(c.proto.input) - 2
    outs: list[Shape] = []
    trips = loop_trips(c)
    for k in range(c.n_out):
        name = body.output_names[k + 1] if k + 1 < len(body.output_names) else None
        s = c.w.shape(body, name) if name else None
        if k < n_carried:
            init = c.shape(k + 2)
            outs.append(s if s is not None and s == init else (init if s is None else s))
        else:
            outs.append((trips,) + tuple(s) if s is not None else None)
    return outs


def _scan(c: Ctx) -> list[Shape]:
    body = c.node.subgraphs.get("body")
    if body is None:
        return [None] * c.n_out
    n_scan = int(c.attr("num_scan_inputs", 0))
    n_state = len(c.proto.input) - n_scan
    in_axes = list(c.attr("scan_input_axes") or [0] * n_scan)
    first = c.shape(n_state) if n_scan else None
    length = first[_axis(int(in_axes[0]), len(first))] if first else None
    out_axes = list(c.attr("scan_output_axes") or [0] * (c.n_out - n_state))
    outs: list[Shape] = []
    for k in range(c.n_out):
        name = body.output_names[k] if k < len(body.output_names) else None
        s = c.w.shape(body, name) if name else None
        if k < n_state:
            outs.append(s)
        elif s is None or length is None:
            outs.append(None)
        else:
            a = _axis(int(out_axes[k - n_state]), len(s) + 1)
            o = list(s)
            o.insert(a, length)
            outs.append(tuple(o))
    return outs


SHAPE_RULES["If"] = _if
SHAPE_RULES["Loop"] = _loop
SHAPE_RULES["Scan"] = _scan


# ---------------------------------------------------------------------------- values (shape arithmetic)

def _vector(items: list) -> np.ndarray:
    """A 1-D object array of ``items`` (built so that numpy never looks inside an expression)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _obj(x: Any) -> np.ndarray:
    a = np.empty((), dtype=object)
    a[()] = x
    return a


def _vec(f: Callable, *arrays: np.ndarray) -> np.ndarray:
    # float values divide as IEEE does (0/0 is NaN, as ONNX's Div gives): no numpy warning on stderr
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(np.frompyfunc(f, len(arrays), 1)(*arrays), dtype=object)


def _is_int_dtype(c: Ctx, k: int = 0) -> bool:
    t = c.g.tensor(c.proto.output[k])
    return t is not None and is_int_type(t.elem_type)


@value_rule("Shape")
def _v_shape(c: Ctx, vals: list) -> list | None:
    x = c.shape(0)
    if x is None:
        return None
    start, end = int(c.attr("start", 0)), c.attr("end")
    dims = list(x)[slice(start, None if end is None else int(end))]
    return [_vector(dims)]


@value_rule("Size")
def _v_size(c: Ctx, vals: list) -> list | None:
    x = c.shape(0)
    return None if x is None else [_obj(prod(x))]


def _to_int(a: Any) -> Any:
    """A float cast to an integer type: truncation, i.e. floor for the non-negative values of shapes."""
    if isinstance(a, float):
        return int(a)
    if E.is_symbolic(a) and a.is_integer is not True:
        return E.normalize(E.sympy().floor(a))
    if getattr(a, "is_Rational", False) and not a.is_Integer:
        return int(a)
    return E.normalize(a)


@value_rule("Identity", "Cast", "CastLike")
def _v_identity(c: Ctx, vals: list) -> list | None:
    v = vals[0]
    if c.node.op_type != "Identity" and _is_int_dtype(c):
        v = _vec(_to_int, v)
    return [v]


@value_rule("Reciprocal")
def _v_reciprocal(c: Ctx, vals: list) -> list | None:
    return [_vec(lambda a: E.normalize(E.sympy().Integer(1) / _num(a)), vals[0])]


@value_rule("Unsqueeze", "Squeeze", "Reshape", "Flatten")
def _v_reshape(c: Ctx, vals: list) -> list | None:
    out = c.w.shapes.get(c.proto.output[0])
    if out is None or not all(E.is_int(d) for d in out):
        return None
    return [vals[0].reshape(out)]


@value_rule("Concat")
def _v_concat(c: Ctx, vals: list) -> list | None:
    if any(v is None for v in vals):
        return None
    return [np.concatenate([np.atleast_1d(v) for v in vals], axis=int(c.attr("axis", 0)))]


@value_rule("Gather")
def _v_gather(c: Ctx, vals: list) -> list | None:
    idx = c.consts(1)
    if vals[0] is None or idx is None or vals[1] is None:
        return None
    i = np.asarray(vals[1].tolist(), dtype=np.int64)
    return [np.take(vals[0], i, axis=int(c.attr("axis", 0)))]


@value_rule("Slice")
def _v_slice(c: Ctx, vals: list) -> list | None:
    v = vals[0]
    if v is None or c.node.opset < 10:
        return None
    starts, ends = c.consts(1), c.consts(2)
    axes = c.consts(3) if c.has(3) else list(range(len(starts or [])))
    steps = c.consts(4) if c.has(4) else [1] * len(starts or [])
    if not starts or not ends or axes is None or steps is None:
        return None
    index = [slice(None)] * v.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        s = None if abs(s) >= INT64_BIG else s
        e = None if abs(e) >= INT64_BIG else e
        index[_axis(int(a), v.ndim)] = slice(s, e, st)
    return [v[tuple(index)]]


@value_rule("Transpose")
def _v_transpose(c: Ctx, vals: list) -> list | None:
    perm = c.attr("perm")
    return [np.transpose(vals[0], perm)]


def _arith(fn: Callable[[Any, Any], Any]) -> ValueRule:
    def rule_(c: Ctx, vals: list) -> list | None:
        if any(v is None for v in vals[:2]):
            return None
        return [_vec(lambda a, b: E.normalize(fn(_num(a), _num(b))), vals[0], vals[1])]

    return rule_


def _num(x: Any) -> Any:
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, float) and not x.is_integer():
        return E.sympy().Rational(Fraction(x))
    if isinstance(x, float):
        return int(x)
    return x


def _div(a: Any, b: Any) -> Any:
    if E.is_int(a) and E.is_int(b):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q  # ONNX integer Div truncates toward zero
    return E.floordiv(a, b)


def _mod(a: Any, b: Any) -> Any:
    if E.is_int(a) and E.is_int(b):
        return a % b
    return E.normalize(E.sympy().Mod(a, b))


VALUE_RULES["Add"] = _arith(lambda a, b: a + b)
VALUE_RULES["Sub"] = _arith(lambda a, b: a - b)
VALUE_RULES["Mul"] = _arith(lambda a, b: a * b)
VALUE_RULES["Mod"] = _arith(_mod)


@value_rule("Div")
def _v_div(c: Ctx, vals: list) -> list | None:
    if any(v is None for v in vals[:2]):
        return None
    if _is_int_dtype(c):
        return [_vec(lambda a, b: E.normalize(_div(_num(a), _num(b))), vals[0], vals[1])]
    return [_vec(lambda a, b: _true_div(_num(a), _num(b)), vals[0], vals[1])]


def _true_div(a: Any, b: Any) -> Any:
    """Float division of shape values, kept exact (a rational) as the graph means it."""
    if E.is_int(a) and E.is_int(b):
        return E.normalize(E.sympy().Rational(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a / b
    return E.normalize(a / b)


@value_rule("Neg")
def _v_neg(c: Ctx, vals: list) -> list | None:
    return [_vec(lambda a: E.normalize(-_num(a)), vals[0])]


@value_rule("Floor", "Ceil")
def _v_floor(c: Ctx, vals: list) -> list | None:
    sp = E.sympy()
    f = sp.floor if c.node.op_type == "Floor" else sp.ceiling
    return [_vec(lambda a: E.normalize(f(_num(a))) if not E.is_int(a) else a, vals[0])]


@value_rule("Min", "Max")
def _v_minmax(c: Ctx, vals: list) -> list | None:
    if any(v is None for v in vals):
        return None
    f = E.smin if c.node.op_type == "Min" else E.smax
    out = vals[0]
    for v in vals[1:]:
        out = _vec(lambda a, b: f(_num(a), _num(b)), out, v)
    return [out]


def _compare(op: str) -> ValueRule:
    def rule_(c: Ctx, vals: list) -> list | None:
        if any(v is None for v in vals[:2]):
            return None

        def f(a: Any, b: Any) -> Any:
            a, b = _num(a), _num(b)
            if E.is_int(a) and E.is_int(b):
                return {"Equal": a == b, "Less": a < b, "Greater": a > b, "LessOrEqual": a <= b, "GreaterOrEqual": a >= b}[op]
            sp = E.sympy()
            rel = {"Equal": sp.Eq, "Less": sp.Lt, "Greater": sp.Gt, "LessOrEqual": sp.Le, "GreaterOrEqual": sp.Ge}[op](a, b)
            if rel in (sp.true, sp.false):
                return bool(rel)
            return None

        out = _vec(f, vals[0], vals[1])
        return None if any(x is None for x in out.reshape(-1)) else [out]

    return rule_


for _op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
    VALUE_RULES[_op] = _compare(_op)


@value_rule("Not")
def _v_not(c: Ctx, vals: list) -> list | None:
    return [_vec(lambda a: not bool(a), vals[0])]


_LOGIC = {"And": lambda a, b: bool(a) and bool(b), "Or": lambda a, b: bool(a) or bool(b), "Xor": lambda a, b: bool(a) != bool(b)}


@value_rule(*_LOGIC)
def _v_logic(c: Ctx, vals: list) -> list | None:
    if any(v is None for v in vals[:2]) or not all(isinstance(x, (bool, int, np.bool_)) for v in vals[:2] for x in v.reshape(-1).tolist()):
        return None  # a condition that depends on the dims stays unknown
    return [_vec(_LOGIC[c.node.op_type], vals[0], vals[1])]


@value_rule("Where")
def _v_where(c: Ctx, vals: list) -> list | None:
    if any(v is None for v in vals[:3]):
        return None
    cond = np.asarray(vals[0].tolist(), dtype=bool) if vals[0].size else np.zeros(vals[0].shape, dtype=bool)
    a, b = np.broadcast_arrays(vals[1], vals[2])
    return [np.asarray(np.where(cond, a, b), dtype=object)]


@value_rule("ConstantOfShape")
def _v_cos(c: Ctx, vals: list) -> list | None:
    shape = c.consts(0)
    if shape is None or math.prod(shape) > MAX_VALUE_ELEMENTS:
        return None
    t = c.attrs.get("value")
    fill = onnx.numpy_helper.to_array(t).reshape(-1)[0].item() if t is not None else 0
    out = np.empty(shape, dtype=object)
    out.fill(fill)
    return [out]


@value_rule("Range")
def _v_range(c: Ctx, vals: list) -> list | None:
    v = [c.consts(i) for i in range(3)]
    if any(x is None for x in v):
        return None
    r = range(v[0][0], v[1][0], v[2][0]) if v[2][0] else range(0)
    if len(r) > MAX_VALUE_ELEMENTS:
        return None
    return [_vector(list(r))]


@value_rule("Expand")
def _v_expand(c: Ctx, vals: list) -> list | None:
    out = c.w.shapes.get(c.proto.output[0])
    if vals[0] is None or out is None or not all(E.is_int(d) for d in out):
        return None
    return [np.broadcast_to(vals[0], out).copy()]


#: op -> (reduction of a list of values, whether it needs at least one value)
_REDUCERS: dict[str, tuple[Callable[[list], Any], bool]] = {
    "ReduceProd": (prod, False), "ReduceSum": (lambda xs: E.normalize(sum(xs)), False),
    "ReduceMin": (lambda xs: E.smin(*xs), True), "ReduceMax": (lambda xs: E.smax(*xs), True),
}


@value_rule(*_REDUCERS)
def _v_reduce(c: Ctx, vals: list) -> list | None:
    """A reduction of a scalar or 1-D value over all of it (a shape's product, an image's shorter side)."""
    v = vals[0]
    reduce, needs_values = _REDUCERS[c.node.op_type]
    if v is None or v.ndim > 1 or (needs_values and v.size == 0):
        return None
    total = reduce([_num(x) for x in v.reshape(-1).tolist()])
    keep = int(c.attr("keepdims", 1))
    return [_vector([total]) if keep and v.ndim == 1 else _obj(total)]


# ---------------------------------------------------------------------------- the driver
#: The integer ranges ONNX's C++ inference reads input data in (the per-node fallback's data).
_FALLBACK_DATA = {onnx.TensorProto.INT64: (np.int64, -2**63, 2**63 - 1), onnx.TensorProto.INT32: (np.int32, -2**31, 2**31 - 1)}
#: Attributes that index an input's (or the output's) dims; ``batch_dims`` counts them.
_AXIS_ATTRS = frozenset({"axis", "axes", "batch_axis", "time_axis", "perm", "scan_input_axes", "scan_output_axes"})


def _axes_in_range(c: Ctx) -> bool:
    """Whether the node's axis attributes could name a dim of its tensors: within ``[-r - k, r + k)``
    for the largest input rank ``r`` and ``k`` values of the attribute (an Unsqueeze-like op names
    dims of an output up to ``k`` dims larger), and ``0 <= batch_dims <=`` that rank. ONNX's C++
    inference indexes shapes with some of them unchecked: GatherND with ``batch_dims=-2**31`` and
    inputs of known rank segfaults in it."""
    ranks = [len(s) for s in c.ins if s is not None]
    r = max(ranks, default=0)
    for name, v in c.attrs.items():
        if name == "batch_dims":
            if isinstance(v, int) and not 0 <= v <= r:
                return False
        elif name in _AXIS_ATTRS:
            vals = [v] if isinstance(v, int) else list(v) if isinstance(v, (list, tuple)) else []
            k = max(len(vals), 1)
            if any(isinstance(x, int) and not -r - k <= x < r + k for x in vals):
                return False
    return True


def _onnx_fallback(c: Ctx) -> list[Shape] | None:
    """ONNX's own per-node inference given the resolved input dims (each symbolic dim a unique
    name): it keeps every dim that passes through unchanged.

    This runs ONNX's C++ code in this process, on shapes and values the guarded whole-model
    inference may not have seen (:mod:`mlms_ir.ir.guard`), so it is only asked what protobuf and its
    C++ code can hold: a dim outside ``[0, 2**63)``, an input of ``2**63`` elements or more (ONNX
    multiplies dims in int64: they would wrap to a wrong number), or an axis attribute out of range
    (:func:`_axes_in_range`) leaves the node to its rule (no fallback), and an input's values go
    with it only where they are integers of its own integer type, in range (issue #16: a dim of
    3 * 2**80 from two Tiles raised ``ValueError`` here)."""
    node = c.proto
    if not _axes_in_range(c):
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, c.node.opset, node.domain or "")
    except Exception:  # noqa: BLE001 - unknown op
        return None
    names: dict[str, Any] = {}
    back: dict[Any, str] = {}
    types: dict[str, bytes] = {}
    data: dict[str, bytes] = {}
    for i, x in enumerate(node.input):
        if not x:
            continue
        t = c.g.tensor(x)
        s = c.shape(i)
        if t is None:
            return None
        tp = onnx.TypeProto()
        tp.tensor_type.elem_type = t.elem_type or onnx.TensorProto.FLOAT
        if s is not None:
            if math.prod(d for d in s if E.is_int(d)) >= 2**63:  # ONNX's int64 size arithmetic would wrap
                return None
            shape = tp.tensor_type.shape
            shape.SetInParent()
            for d in s:
                dim = shape.dim.add()
                if E.is_int(d):
                    if not 0 <= d < 2**63:
                        return None
                    dim.dim_value = d
                else:
                    key = back.get(d)
                    if key is None:
                        key = f"__mlms_s{len(back)}"
                        back[d] = key
                        names[key] = d
                    dim.dim_param = key
        types[x] = tp.SerializeToString()
        v = c.val(i)
        kind = _FALLBACK_DATA.get(tp.tensor_type.elem_type)
        if v is not None and kind is not None:
            items = [_sym(e) for e in v.reshape(-1).tolist()]
            if all(E.is_int(e) and kind[1] <= e <= kind[2] for e in items):
                arr = np.array(items, dtype=kind[0]).reshape(v.shape)
                data[x] = onnx.numpy_helper.from_array(arr, x).SerializeToString()
    opsets = {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in c.g.model.opset_import}
    try:
        outs = schema._infer_node_outputs(node.SerializeToString(), types, data, {}, opsets, c.g.model.ir_version)
    except Exception:  # noqa: BLE001 - ONNX's core rejects what it cannot infer
        return None
    result: list[Shape] = []
    for o in node.output:
        raw = outs.get(o)
        if raw is None:
            result.append(None)
            continue
        tp = onnx.TypeProto.FromString(raw)
        if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
            result.append(None)
            continue
        dims = []
        for d in tp.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param in names:
                dims.append(names[d.dim_param])
            else:
                dims.append(None)
        result.append(tuple(dims))
    return result


def _complete(s: Shape) -> bool:
    return s is not None and all(d is not None for d in s)


def apply(w, g, node) -> None:
    """Resolve the output shapes (and small integer values) of one node; recurse into subgraphs."""
    proto = node.proto
    ins = [w.shape(g, x) if x else None for x in proto.input]
    out_infos = [g.tensor(o) if o else None for o in proto.output]
    raw = [t.shape if t is not None else None for t in out_infos]
    onnx_outs: list[Shape] = [None if r is None else tuple(w.onnx_dim(d) for d in r) for r in raw]
    for attr, sub in node.subgraphs.items():
        w.inputs(sub, sub.input_names, f"subgraph {node.id}/{attr}")
        w.graph(sub, f"subgraph {node.id}/{attr}")
    c = Ctx(w, g, node, ins, onnx_outs)
    final = list(onnx_outs)
    standard = node.domain == ""
    if standard and node.op_type == "Loop":
        loop_trips(c)
    if not all(_complete(o) for o, x in zip(onnx_outs, proto.output) if x):
        ruled: list[Shape] | None = None
        fn = SHAPE_RULES.get(node.op_type) if standard else None
        if fn is not None:
            try:
                ruled = fn(c)
            except Exception as exc:  # noqa: BLE001 - a rule that cannot apply leaves the dims to the fallback
                log.debug("symbolic rule for %s failed: %s", node.op_type, exc)
                ruled = None
        if ruled is None or not all(_complete(r) for r, x in zip(ruled, proto.output) if x):
            fb = _onnx_fallback(c)
            if fb is not None:
                ruled = _merge_lists(ruled, fb)
        final = []
        for k, o in enumerate(proto.output):
            final.append(_merge(w, node, k, onnx_outs[k], ruled[k] if ruled and k < len(ruled) else None, raw[k]) if o else None)
    for k, o in enumerate(proto.output):
        if o:
            bad = next((d for d in final[k] or () if E.is_int(d) and d < 0), None)
            if bad is not None:
                raise InvalidModelError(
                    f"node {node.label}: output {k} gets a negative dim ({bad}) from its input shapes "
                    f"{', '.join(str(list(s)) if s is not None else '?' for s in ins)}; the input is too small for the op's attributes"
                )
            w.set_shape(o, final[k], out_infos[k])
    if standard and node.op_type in VALUE_RULES and proto.output and proto.output[0]:
        t = out_infos[0]
        if t is not None and t.elem_type != onnx.TensorProto.STRING:
            s = final[0]
            if s is not None and all(E.is_int(d) for d in s) and math.prod(s) <= MAX_VALUE_ELEMENTS:
                vals = [w.value(g, x) if x else None for x in proto.input]
                try:
                    out = VALUE_RULES[node.op_type](c, vals) if vals and vals[0] is not None or node.op_type in ("Shape", "Size", "ConstantOfShape", "Range") else None
                except Exception as exc:  # noqa: BLE001 - a value we cannot compute stays unknown
                    log.debug("symbolic value of %s failed: %s", node.op_type, exc)
                    out = None
                if out is not None and out[0] is not None:
                    v = out[0] if isinstance(out[0], np.ndarray) else _obj(out[0])  # np.take of a scalar index
                    if tuple(v.shape) == tuple(s):
                        w.values[proto.output[0]] = v


def _merge_lists(a: list[Shape] | None, b: list[Shape]) -> list[Shape]:
    if a is None:
        return b
    out = []
    for k in range(max(len(a), len(b))):
        x = a[k] if k < len(a) else None
        y = b[k] if k < len(b) else None
        if x is None or (y is not None and len(x) == len(y) and not _complete(x)):
            x = y if x is None else tuple(p if p is not None else q for p, q in zip(x, y))
        out.append(x)
    return out


def _merge(w, node, k: int, onnx_shape: Shape, ruled: Shape, raw: tuple | None) -> Shape:
    """ONNX's dims where they are known, the rule's elsewhere, and a named symbol where neither knows."""
    if onnx_shape is None and ruled is None:
        return None
    base = onnx_shape if onnx_shape is not None else ruled
    if ruled is not None and onnx_shape is not None and len(ruled) != len(onnx_shape):
        ruled = None
    out = []
    for axis, d in enumerate(base):
        if d is None and ruled is not None:
            d = ruled[axis]
            name = raw[axis] if raw is not None and axis < len(raw) else None
            if d is not None and isinstance(name, str) and name and name not in w.params:
                w.params[name] = d  # every tensor ONNX gave this unknown's name has this dim
        if d is None:
            d = w.unknown_dim(node, k, axis, raw[axis] if raw is not None and axis < len(raw) else None)
        out.append(E.normalize(d))
    return tuple(out)
