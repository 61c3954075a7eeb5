"""Standalone: teach MXNet 1.9's ONNX importer what today's exporters write.

MXNet's importer (``mxnet.contrib.onnx.onnx2mx``, MXNet's last release) predates opset 13: it
reads ``axes`` only as an attribute, so every model from PyTorch's dynamo exporter (opset 18-20,
``ReduceMean`` with an ``axes`` input even in ResNet-18) fails with ``Invalid Parameter format for
axis ... <Symbol ...>``; it also reads the tensor inputs it needs at import time (``Reshape``'s
shape, ``Pad``'s pads, ``Slice``'s starts) only from initializers, not from ``Constant`` nodes.
This module fixes both, before the import, and adds the ops that CNNs and vision transformers
from torchvision and timm use and the importer lacks:

:func:`prepare` (on the ``ModelProto``)
    ``Constant`` nodes holding a tensor become initializers, so the importer finds their values;
    given the shapes the model runs at, ``Shape`` of a known shape and the small constant
    subgraphs after it (dynamo's shape arithmetic) are folded into initializers too. A
    ``Gather`` with a 0-d index becomes ``Gather`` + ``Squeeze`` (MXNet 1.x has no 0-d arrays),
    and ``Where``/``Expand`` operands get the result's rank (MXNet's broadcasting needs it).
:func:`patch` (on the importer's op table)
    - ``Squeeze``/``Unsqueeze`` 13+, ``ReduceSum`` 13+ and every other ``Reduce*`` 18+: the
      ``axes`` input (an initializer) becomes the attribute; ``noop_with_empty_axes`` is kept;
      ``keepdims`` defaults to 1 as in ONNX (the importer passed it on unset, and MXNet's default
      is 0).
    - ``Split`` 13+ (``split`` input, uneven sizes too) and 18 (``num_outputs``).
    - ``HardSwish``, ``Gelu`` (exact and tanh), ``Erf``, ``LayerNormalization`` (over the last
      axis), ``Where`` and ``Expand`` (both with ONNX's two-way broadcasting).
    - ``AveragePool`` and ``MaxPool``: the importer padded with zeros and pooled without, so every
      average counted the padding (ONNX's ``count_include_pad`` defaults to 0: PoolFormer was off
      by 0.05), and dropped ``ceil_mode``; both are kept now.
    - ``Conv``/``ConvTranspose`` without the optional ``kernel_shape`` (read from the weight);
      ``Gemm`` without its optional bias; ``MatMul`` of ``x[..., K]`` and a 2-D weight as ``dot`` (the importer's ``linalg_gemm2``
      needs equal leading dims); ``Gather`` with negative indices (``take`` in ``wrap`` mode);
      ``Slice`` with ONNX's "to the end" and "from the start" (INT64_MAX and INT64_MIN, which
      the importer passed on as nan or as an out-of-range int) and steps.
    - ``GraphProto.from_onnx`` collects the weights once (it copied all of them again at every
      node: 6 GB of MXNet's memory pool for ViT-B/16) and gives each weight's Variable a dtype.
    Axes or shapes computed at run time are refused with one clear line.

Each translation is a module-level function ``(attrs, inputs, proto_obj) -> (symbol or op name,
attrs, inputs)``, the importer's own convention (``proto_obj``: its ``GraphProto``, whose
``_params`` hold the weights), listed by op in :data:`TRANSLATIONS` (the importer keys its table
by op alone: one translation serves every version), so each can be tested alone.

It imports only the standard library and :mod:`~mlms_ir.backends.onnx_versions` at top level
(MXNet and onnx inside the functions), never ``mlms_ir``, because it runs in MXNet's environment
beside ``agent.py``, which imports it (and ``onnx_versions.py``) from its own folder.
:func:`patch` is idempotent.
"""

from __future__ import annotations

from functools import partial

try:  # imported as mlms_ir.backends.mxnet_compat
    from .onnx_versions import AXES_INPUT
except ImportError:  # standalone, beside agent.py
    from onnx_versions import AXES_INPUT

_PATCHED: list[str] = []
#: op -> the importer's own translation that one of ours replaced (and may call: :func:`original`).
_ORIGINALS: dict = {}


#: constant subgraphs are folded only while their inputs hold at most this many elements each
#: (16 M: weight-standardised kernels, as NFNet computes them, must fold: MXNet's Convolution
#: takes its weight only as a Variable).
FOLD_MAX_ELEMENTS = 1 << 24


def _constant_value(node):
    """The tensor a ``Constant`` node holds, or None (sparse or string constants)."""
    import numpy as np
    from onnx import AttributeProto, numpy_helper

    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs and attrs["value"].type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attrs["value"].t)
    if "value_float" in attrs:
        return np.array(attrs["value_float"].f, np.float32)
    if "value_floats" in attrs:
        return np.array(list(attrs["value_floats"].floats), np.float32)
    if "value_int" in attrs:
        return np.array(attrs["value_int"].i, np.int64)
    if "value_ints" in attrs:
        return np.array(list(attrs["value_ints"].ints), np.int64)
    return None


def prepare(proto, input_shapes: dict | None = None) -> dict:
    """Make ``proto`` importable by MXNet, in place; return what was done (counts).

    ``Constant`` nodes become initializers. With ``input_shapes`` (name -> the shape the model
    will run at), the inputs get those static shapes and every node whose inputs are all known
    becomes an initializer too: ``Shape`` of a tensor whose shape inference knows, and small
    constant subgraphs (the shape arithmetic dynamo exports carry: Shape -> Gather -> Range ->
    Reshape), evaluated with ONNX's reference evaluator at the model's opset. MXNet's importer
    builds a static graph, so this changes nothing it could have run, and lets it run the rest.
    """
    graph = proto.graph
    done = {"constants": 0, "folded": 0}
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=13)
    if input_shapes:
        inits = {t.name for t in graph.initializer}
        for vi in graph.input:
            if vi.name in input_shapes and vi.name not in inits:
                dims = vi.type.tensor_type.shape.dim
                del dims[:]
                for d in input_shapes[vi.name]:
                    dims.add().dim_value = int(d)
    # each pass folds what shape inference can see; a folded Reshape target lets the next pass see
    # the shapes after it (ONNX infers no shape from a computed target)
    for _ in range(MAX_PASSES):
        before = done["folded"]
        shapes, types = _inferred(proto) if input_shapes else ({}, {})
        _fold_pass(proto, shapes, bool(input_shapes), opset, done, types)
        if done["folded"] == before:
            break
    return done


#: folding passes at most (each re-runs shape inference); dynamo's ViT needs 3 at batch 1.
MAX_PASSES = 8


def _static_shapes(proto) -> dict[str, list[int]]:
    """name -> static shape, for every tensor ONNX's shape inference (with data propagation) knows."""
    return _inferred(proto)[0]


def _inferred(proto) -> tuple[dict[str, list[int]], dict[str, int]]:
    """(name -> static shape, name -> element type) of every tensor ONNX's shape inference (with
    data propagation) knows."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - folding is a help, not a requirement
        return {}, {}
    shapes, types = {}, {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = tt.elem_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    return shapes, types


def _fold_pass(proto, shapes: dict, fold: bool, opset: int, done: dict, types: dict | None = None) -> None:
    """One pass of :func:`prepare` over the main graph, in order."""
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    protos = {t.name: t for t in graph.initializer}
    known: dict = dict.fromkeys(protos)  # name -> value (None: not read yet)

    def value(name):
        if known.get(name) is None:
            known[name] = numpy_helper.to_array(protos[name])
        return known[name]

    keep = []
    for node in graph.node:
        out = None
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            v = _constant_value(node)
            out = None if v is None else [v]
            if out is not None:
                done["constants"] += 1
        elif fold and node.domain in ("", "ai.onnx") and not node.op_type.startswith("Random") \
                and not any(a.g.node or a.graphs for a in node.attribute):
            ins = [x for x in node.input if x]
            if node.op_type == "Shape" and ins and ins[0] in shapes:
                attrs = {a.name: a.i for a in node.attribute}  # Shape-15's start/end: Python's slice rules
                dims = shapes[ins[0]]
                out = [np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], np.int64)]
            elif ins and all(x in known for x in ins) and all(value(x).size <= FOLD_MAX_ELEMENTS for x in ins):
                try:
                    ev = ReferenceEvaluator(node, opsets={"": opset})
                    out = [np.asarray(o) for o in ev.run(None, {x: value(x) for x in ins})]
                except Exception:  # noqa: BLE001 - an op the evaluator cannot do stays in the graph
                    out = None
            if out is not None:
                done["folded"] += 1
        if out is None:
            _annotate(node, shapes, graph, known, done, types or {}, opset)
            keep.extend(_equal_ranks(node, shapes, known, value, graph, done)
                        or _split_scalar_gather(node, known, value, graph, done, opset))
            continue
        for name, v in zip(node.output, out, strict=False):  # an omitted optional output has no name
            if name:
                graph.initializer.append(numpy_helper.from_array(np.asarray(v), name))
                known[name] = np.asarray(v)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


#: the attribute prepare() gives a ceil_mode pooling node: its output's spatial dims (computed as
#: onnxruntime does), which the translation cuts MXNet's "full" pooling to.
OUTPUT_DIMS_ATTR = "mlms_ir_output_spatial_dims"
#: the attribute prepare() gives a node whose translation needs its first input's shape
#: (``Hardmax``, ``ArgMax``/``ArgMin`` with ``select_last_index``).
INPUT_SHAPE_ATTR = "mlms_ir_input_shape"
#: the attribute prepare() gives a ``Div`` of integers (MXNet computes it in float32; ONNX
#: truncates the quotient toward zero).
INTEGER_ATTR = "mlms_ir_integer"
#: the attribute prepare() gives a ``Hardmax``: the model's opset (the op's meaning changed in 13).
OPSET_ATTR = "mlms_ir_opset"
#: ONNX's integer element types (TensorProto's INT8..UINT64).
_INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})
#: ops whose translation reads :data:`INPUT_SHAPE_ATTR`.
_NEEDS_SHAPE = ("Hardmax", "ArgMax", "ArgMin")


def _annotate(node, shapes, graph, known, done, types=None, opset: int | None = None) -> None:
    """What the translations need from shape inference, written on the node: the output size of a
    ``ceil_mode`` pooling; the chunk sizes of a ``Split`` without a ``split`` input (ONNX-18
    ``num_outputs``: ceil-sized chunks, the last smaller; before 18: equal chunks); the input's
    shape of a ``Hardmax`` (and the opset) or an ``ArgMax``/``ArgMin``; whether a ``Div`` divides
    integers."""
    from onnx import helper, numpy_helper

    import numpy as np

    attrs = {a.name: a for a in node.attribute}
    if node.op_type in _NEEDS_SHAPE and node.input and node.input[0] in shapes and INPUT_SHAPE_ATTR not in attrs:
        node.attribute.append(helper.make_attribute(INPUT_SHAPE_ATTR, list(shapes[node.input[0]])))
        if node.op_type == "Hardmax" and opset:
            node.attribute.append(helper.make_attribute(OPSET_ATTR, int(opset)))
        return
    if node.op_type == "Div" and INTEGER_ATTR not in attrs and (types or {}).get(node.output[0]) in _INTEGER_TYPES:
        node.attribute.append(helper.make_attribute(INTEGER_ATTR, 1))
        return
    if node.op_type in ("MaxPool", "AveragePool", "LpPool") and "ceil_mode" in attrs and attrs["ceil_mode"].i \
            and node.input[0] in shapes and OUTPUT_DIMS_ATTR not in attrs and "kernel_shape" in attrs:
        # onnxruntime's and ONNX's reference rule; ONNX's shape inference (1.23) keeps the last
        # window even when it starts in the right padding, so its output shape is not used
        spatial = shapes[node.input[0]][2:]
        k = list(attrs["kernel_shape"].ints)
        nd = len(k)
        st = list(attrs["strides"].ints) if "strides" in attrs else [1] * nd
        pads = list(attrs["pads"].ints) if "pads" in attrs else [0] * (2 * nd)
        dil = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * nd
        out = []
        for i in range(nd):
            span = spatial[i] + pads[i] + pads[nd + i] - ((k[i] - 1) * dil[i] + 1)
            o = -(-span // st[i]) + 1
            if (o - 1) * st[i] >= spatial[i] + pads[i]:
                o -= 1
            out.append(o)
        node.attribute.append(helper.make_attribute(OUTPUT_DIMS_ATTR, out))
        done["pool_shapes"] = done.get("pool_shapes", 0) + 1
    elif node.op_type == "Split" and (len(node.input) < 2 or not node.input[1]) and node.input[0] in shapes:
        axis = attrs["axis"].i if "axis" in attrs else 0
        dims = shapes[node.input[0]]
        dim, n = dims[axis], len(node.output)
        if "split" in attrs or n == 0:
            return  # opset < 13 with explicit sizes: the importer reads them
        if "num_outputs" in attrs:
            n = attrs["num_outputs"].i
            chunk = -(-dim // n)
            sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(n)]
        else:
            sizes = [dim // n] * n
        name = f"{node.output[0]}::split_sizes"
        graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
        known[name] = np.array(sizes, np.int64)
        del node.input[1:]
        node.input.append(name)
        done["split_sizes"] = done.get("split_sizes", 0) + 1


def _equal_ranks(node, shapes, known, value, graph, done) -> list:
    """``Where``/``Expand`` whose operands have fewer dims than the result, with those operands
    reshaped to the result's rank first (leading 1s, as ONNX broadcasting reads them): MXNet's
    broadcast_like needs equal ranks. Needs the shapes from inference; [] when nothing to do."""
    from onnx import helper, numpy_helper

    import numpy as np

    if node.op_type not in ("Where", "Expand") or not node.output or node.output[0] not in shapes:
        return []
    rank = len(shapes[node.output[0]])
    operands = node.input[:3] if node.op_type == "Where" else node.input[:1]
    new_inputs, extra = list(node.input), []
    for i, name in enumerate(operands):
        shp = shapes.get(name, value(name).shape if name in known else None)
        if shp is None or len(shp) == rank:
            continue
        target = f"{node.output[0]}::rank{i}"
        shape = np.array([1] * (rank - len(shp)) + list(shp), np.int64)
        graph.initializer.append(numpy_helper.from_array(shape, target + "_shape"))
        known[target + "_shape"] = shape
        extra.append(helper.make_node("Reshape", [name, target + "_shape"], [target], name=f"{node.name}/rank{i}"))
        new_inputs[i] = target
    if not extra:
        return []
    done["rank_fixes"] = done.get("rank_fixes", 0) + len(extra)
    fixed = helper.make_node(node.op_type, new_inputs, list(node.output), name=node.name)
    fixed.attribute.extend(node.attribute)
    return extra + [fixed]


def _split_scalar_gather(node, known, value, graph, done, opset: int) -> list:
    """``Gather(x, i)`` with a 0-d constant ``i`` as ``Squeeze(Gather(x, [i]), axis)``: the same
    result, and MXNet 1.x, which reads a 0-d tensor as 1-d, keeps the gathered axis otherwise."""
    from onnx import helper, numpy_helper

    import numpy as np

    if node.op_type != "Gather" or len(node.input) != 2 or node.input[1] not in known or value(node.input[1]).ndim != 0:
        return [node]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    base = node.output[0]
    idx, axes, mid = f"{base}::index1d", f"{base}::axes", f"{base}::gathered"
    for name, arr in ((idx, value(node.input[1]).reshape(1)), (axes, np.array([axis], np.int64))):
        graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        known[name] = np.asarray(arr)
    done["scalar_gathers"] = done.get("scalar_gathers", 0) + 1
    squeeze = helper.make_node("Squeeze", [mid, axes], [base], name=f"{node.name}/squeeze") if opset >= 13 else \
        helper.make_node("Squeeze", [mid], [base], name=f"{node.name}/squeeze", axes=[axis])
    return [helper.make_node("Gather", [node.input[0], idx], [mid], name=f"{node.name}/gather", axis=axis), squeeze]


def _static(proto_obj, sym, op: str, what: str) -> list[int]:
    params = getattr(proto_obj, "_params", {})
    name = sym.name
    if name not in params:
        raise ValueError(f"{op}: its {what} ('{name}') are computed at run time; MXNet's importer needs them as an "
                         "initializer or a Constant")
    return [int(v) for v in params[name].asnumpy().reshape(-1)]


# ---------------------------------------------------------------------------- translations
def _is_ours(fn) -> bool:
    return getattr(getattr(fn, "func", fn), "__module__", None) == __name__


def original(op: str):
    """The importer's own translation of ``op`` (the one ours replaced, if one did), or None."""
    if op in _ORIGINALS:
        return _ORIGINALS[op]
    from mxnet.contrib.onnx.onnx2mx import _import_helper

    fn = _import_helper._convert_map.get(op)
    return None if fn is None or _is_ours(fn) else fn


def _original_or_fail(op: str):
    fn = original(op)
    if fn is None:
        raise ValueError(f"{op}: MXNet's importer has no translation of it to build on")
    return fn


def from_onnx(self, graph, opset_version):
    """The importer's ``GraphProto.from_onnx``, with three changes. An omitted optional input
    ("", Resize's roi) is None, not a KeyError. It copied every weight
    upstream of each node into the parameter dicts again at that node (quadratic: 6 GB of
    MXNet's memory pool for ViT-B/16); they are collected once, from the outputs. And each
    weight's Variable gets its array's dtype: without one, MXNet's type inference cannot
    type a weight that only feeds a cast (an index into take)."""
    from mxnet import symbol

    self.opset_version = opset_version
    self.model_metadata = self.get_graph_metadata(graph)
    for t in graph.initializer:
        if not t.name.strip():
            raise ValueError("Tensor's name is required.")
        self._params[t.name] = self._parse_array(t)
    for i in graph.input:
        if i.name in self._params:
            arr = self._params[i.name]
            self._nodes[i.name] = symbol.Variable(name=i.name, shape=arr.shape, dtype=arr.dtype)
        else:
            self._nodes[i.name] = symbol.Variable(name=i.name)
    for node in graph.node:
        name = node.name.strip() or None
        names = list(node.input)
        while names and not names[-1]:  # omitted optional inputs at the end
            names.pop()
        sym = self._convert_operator(name, node.op_type, self._parse_attr(node.attribute),
                                     [self._nodes[i] if i else None for i in names])
        for k, j in zip(list(node.output), range(len(sym.list_outputs())), strict=False):  # optional outputs
            self._nodes[k] = sym[j]
    outs = [self._nodes[o.name] for o in graph.output]
    out = symbol.Group(outs) if len(outs) > 1 else outs[0]
    self.arg_dict.update({a: self._params[a] for a in out.list_arguments() if a in self._params})
    self.aux_dict.update({a: self._params[a] for a in out.list_auxiliary_states() if a in self._params})
    return out, self.arg_dict, self.aux_dict


def axes_from_input(op: str, attrs, inputs, proto_obj):
    """``op`` of :data:`~mlms_ir.backends.onnx_versions.AXES_INPUT`: the ``axes`` input (an
    initializer) becomes the attribute the importer's own translation reads; ``keepdims``
    defaults to 1 as in ONNX; no axes with ``noop_with_empty_axes`` is an identity."""
    from mxnet import symbol

    attrs = dict(attrs)
    if op.startswith("Reduce"):
        attrs.setdefault("keepdims", 1)
    if len(inputs) > 1:
        axes = _static(proto_obj, inputs[1], op, "axes")
        noop = int(attrs.pop("noop_with_empty_axes", 0))
        inputs = inputs[:1]
        if axes:
            attrs["axes"] = axes
        elif noop:
            return symbol.identity(inputs[0]), attrs, inputs
    elif int(attrs.pop("noop_with_empty_axes", 0)) and not attrs.get("axes"):
        return symbol.identity(inputs[0]), attrs, inputs  # no axes and the flag: no reduction
    if op == "Unsqueeze":
        axes = list(attrs.get("axes", []))
        neg = [a for a in axes if a < 0]
        if len(neg) > 1 or (neg and len(axes) > 1):
            raise ValueError("Unsqueeze with several axes, some negative, needs the input's rank, which "
                             "MXNet's importer does not know")
        attrs["axes"] = sorted(axes)
    return _original_or_fail(op)(attrs, inputs, proto_obj)


def split(attrs, inputs, proto_obj):
    """``Split``: sizes from the ``split`` input (13+) or attribute, uneven ones as slices; else
    ``num_outputs`` (18) equal parts (prepare() gave uneven ones their sizes)."""
    from mxnet import symbol

    axis = int(attrs.get("axis", 0))
    if len(inputs) > 1:
        sizes = _static(proto_obj, inputs[1], "Split", "sizes")
    elif "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    else:
        n = int(attrs.get("num_outputs", 0))
        if n <= 0:
            raise ValueError("Split without sizes or num_outputs: MXNet's importer cannot tell how many outputs")
        return symbol.split(inputs[0], num_outputs=n, axis=axis), attrs, inputs[:1]
    if len(set(sizes)) == 1:
        return symbol.split(inputs[0], num_outputs=len(sizes), axis=axis), attrs, inputs[:1]
    parts, start = [], 0
    for s in sizes:
        parts.append(symbol.slice_axis(inputs[0], axis=axis, begin=start, end=start + s))
        start += s
    return symbol.Group(parts), attrs, inputs[:1]


def hard_swish(attrs, inputs, proto_obj):
    """``HardSwish``: x * hard_sigmoid(x) with alpha 1/6, beta 0.5."""
    from mxnet import symbol

    x = inputs[0]
    return x * symbol.hard_sigmoid(x, alpha=1.0 / 6, beta=0.5), attrs, inputs


def gelu(attrs, inputs, proto_obj):
    """``Gelu``-20: exact (MXNet's erf GELU) or the tanh approximation."""
    from mxnet import symbol

    x = inputs[0]
    approx = attrs.get("approximate", "none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    if approx == "tanh":
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + symbol.tanh(inner)), attrs, inputs
    if approx != "none":
        raise ValueError(f"Gelu: unknown approximate={approx!r}")
    return symbol.LeakyReLU(x, act_type="gelu"), attrs, inputs  # MXNet's gelu is the exact (erf) one


def erf(attrs, inputs, proto_obj):
    """``Erf``."""
    from mxnet import symbol

    return symbol.erf(inputs[0]), attrs, inputs


def layer_norm(attrs, inputs, proto_obj):
    """``LayerNormalization``-17 over the last axis (MXNet's LayerNorm takes one axis)."""
    from mxnet import symbol

    if int(attrs.get("axis", -1)) != -1:
        raise ValueError(f"LayerNormalization over axis {attrs.get('axis')}: MXNet's LayerNorm takes one axis, "
                         "only the last is translated")
    if int(attrs.get("stash_type", 1)) != 1:
        raise ValueError("LayerNormalization: only stash_type 1 (float32) is supported")
    x, gamma = inputs[0], inputs[1]
    beta = inputs[2] if len(inputs) > 2 else symbol.zeros_like(gamma)
    return symbol.LayerNorm(x, gamma, beta, axis=-1, eps=float(attrs.get("epsilon", 1e-5))), attrs, inputs


def where(attrs, inputs, proto_obj):
    """``Where`` with ONNX's broadcasting (the three both ways; MXNet's where wants one shape):
    prepare() gave them equal ranks, so broadcast_like against zeros of the common shape does it."""
    from mxnet import symbol

    cond, x, y = inputs
    target = None
    for sym in inputs:
        z = symbol.zeros_like(symbol.cast(sym, dtype="float32"))  # zeros_like: infinities stay out
        target = z if target is None else symbol.broadcast_add(target, z)
    return symbol.where(symbol.broadcast_like(cond, target), symbol.broadcast_like(x, target),
                        symbol.broadcast_like(y, target)), attrs, inputs


def expand(attrs, inputs, proto_obj):
    """``Expand`` to a constant shape, with ONNX's two-way broadcasting."""
    from mxnet import symbol

    shape = _static(proto_obj, inputs[1], "Expand", "shape")
    target = symbol.broadcast_add(symbol.zeros_like(symbol.cast(inputs[0], dtype="float32")),
                                  symbol.zeros(shape=tuple(shape)))
    return symbol.broadcast_like(inputs[0], target), attrs, inputs[:1]


def matmul(attrs, inputs, proto_obj):
    """``MatMul`` of ``x[..., K]`` and a 2-D weight as ``dot``: the importer's ``linalg_gemm2`` needs
    equal leading dims, and every Linear layer exports this; other MatMuls as the importer does."""
    from mxnet import symbol

    w = getattr(proto_obj, "_params", {}).get(inputs[1].name)
    if w is not None and len(w.shape) == 2:
        return symbol.dot(inputs[0], inputs[1]), attrs, inputs
    return _original_or_fail("MatMul")(attrs, inputs, proto_obj)


def pool(kind: str, attrs, inputs, proto_obj, op: str | None = None):
    """``AveragePool`` (``kind`` "avg") and ``MaxPool`` ("max"): the importer pads explicitly with
    zeros and pools without, so every average counted the padding (ONNX's default
    ``count_include_pad`` is 0), and drops ``ceil_mode``; both are kept here. ``kind`` "sum" (for
    :func:`lp_pool`) sums each window, the padding counting as zeros."""
    import numpy as np
    from mxnet import symbol

    x = inputs[0]
    op = op or f"{kind.title()}Pool"
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    nd = len(kernel)
    stride = tuple(int(v) for v in attrs.get("strides", (1,) * nd))
    pads = [int(v) for v in attrs.get("pads", (0,) * (2 * nd))]
    auto = attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise ValueError(f"{op} with auto_pad={auto} is not translated for MXNet; give the pads")
    if any(int(d) != 1 for d in attrs.get("dilations", ())):
        raise ValueError(f"{op} with dilations {list(attrs['dilations'])} is not translated for MXNet")
    convention = "full" if int(attrs.get("ceil_mode", 0)) else "valid"
    out_dims = [int(d) for d in attrs.get(OUTPUT_DIMS_ATTR, ())]
    include = bool(int(attrs.get("count_include_pad", 0)))
    begin, end = pads[:nd], pads[nd:]

    def cut(y):
        # MXNet's "full" keeps a last window that starts in the right padding; ONNX (and
        # onnxruntime) drop it: keep the spatial size shape inference gave in prepare()
        for i, d in enumerate(out_dims if convention == "full" else ()):
            y = symbol.slice_axis(y, axis=2 + i, begin=0, end=d)
        return y

    if convention == "full" and len(out_dims) != nd:
        raise ValueError(f"{op} with ceil_mode needs its output's shape (from the shapes the model "
                         "runs at) to be translated for MXNet")
    if begin == end:
        extra = {"count_include_pad": include} if kind == "avg" else {}
        return cut(symbol.Pooling(x, pool_type=kind, kernel=kernel, stride=stride, pad=tuple(begin),
                                  pooling_convention=convention, **extra)), attrs, inputs
    if nd not in (2, 3):
        raise ValueError(f"{op} over {nd} axes with uneven pads is not translated for MXNet")
    width = (0, 0, 0, 0) + tuple(v for b, e in zip(begin, end, strict=True) for v in (b, e))
    common = {"kernel": kernel, "stride": stride, "pooling_convention": convention}
    if kind == "max":  # edge values never beat the window's own maximum
        return cut(symbol.Pooling(symbol.pad(x, mode="edge", pad_width=width), pool_type="max", **common)), attrs, inputs
    total = symbol.Pooling(symbol.pad(x, mode="constant", pad_width=width), pool_type="sum", **common)
    if kind == "sum":
        return cut(total), attrs, inputs
    if include:
        return cut(total / float(np.prod(kernel))), attrs, inputs
    count = symbol.Pooling(symbol.pad(symbol.ones_like(x), mode="constant", pad_width=width), pool_type="sum",
                           **common)
    return cut(total / count), attrs, inputs


def conv(op: str, attrs, inputs, proto_obj):
    """``Conv``/``ConvTranspose`` (``op``) as the importer translates them, with ``kernel_shape``
    (optional in ONNX, the importer needs it) read from the weight where it is missing."""
    if "kernel_shape" not in attrs:
        w = getattr(proto_obj, "_params", {}).get(inputs[1].name)
        if w is None:
            raise ValueError(f"{op} without kernel_shape whose weight is computed at run time: MXNet's importer "
                             "needs one of them")
        attrs = {**attrs, "kernel_shape": tuple(int(d) for d in w.shape[2:])}
    return _original_or_fail(op)(attrs, inputs, proto_obj)


def gemm(attrs, inputs, proto_obj):
    """``Gemm``, its bias optional (the importer's reads a bias C always; optional since opset 11)."""
    from mxnet import symbol

    y = symbol.dot(inputs[0], inputs[1], transpose_a=bool(attrs.get("transA", 0)),
                   transpose_b=bool(attrs.get("transB", 0)))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if len(inputs) > 2:
        y = symbol.broadcast_add(y, inputs[2] * beta if beta != 1.0 else inputs[2])
    return y, attrs, inputs


def gather(attrs, inputs, proto_obj):
    """``Gather`` as ``take`` on integer indices (the importer makes every weight float32) in
    ``wrap`` mode (its default clips a negative index to 0 where ONNX counts it from the end)."""
    from mxnet import symbol

    idx = symbol.cast(inputs[1], dtype="int64")
    return symbol.take(inputs[0], idx, axis=int(attrs.get("axis", 0)), mode="wrap"), attrs, inputs


def slice_(attrs, inputs, proto_obj):
    """``Slice`` (10+) with constant starts, ends, axes and steps, ONNX's "to the end" and "from the
    start" (INT64_MAX and INT64_MIN, which the importer passed on as nan or as an out-of-range int)
    clamped as ONNX does; ``Slice``-1 (attributes) as the importer does."""
    from mxnet import symbol

    if len(inputs) < 3:
        return _original_or_fail("Slice")(attrs, inputs, proto_obj)
    starts = _static(proto_obj, inputs[1], "Slice", "starts")
    ends = _static(proto_obj, inputs[2], "Slice", "ends")
    axes = _static(proto_obj, inputs[3], "Slice", "axes") if len(inputs) > 3 and inputs[3] is not None \
        else list(range(len(starts)))
    steps = _static(proto_obj, inputs[4], "Slice", "steps") if len(inputs) > 4 else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"Slice: starts, ends, axes and steps differ in length ({len(starts)}, {len(ends)}, "
                         f"{len(axes)}, {len(steps)})")
    x = inputs[0]
    big = 2**31 - 1  # exporters write INT64_MAX / INT64_MIN for "to the end" / "from the start"
    for b, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st > 0:  # ONNX clamps: a start far below 0 is 0, an end far above the dim is the dim
            b, e = (0 if b <= -big else b), (None if e >= big else 0 if e <= -big else e)
        else:
            b, e = (None if b >= big else b), (None if e <= -big else e)
        if a >= 0:  # slice clamps starts and ends to the dim, as ONNX does (slice_axis refuses)
            pad = (None,) * a
            x = symbol.slice(x, begin=pad + (b,), end=pad + (e,), step=pad + (st,))
        elif st == 1:
            x = symbol.slice_axis(x, axis=a, begin=b, end=e)
        else:
            raise ValueError(f"Slice with step {st} on negative axis {a}: MXNet's importer does not know the rank")
    return x, attrs, inputs[:1]


def _symbol(op, attrs, inputs):
    """The symbol a translation's ``(op, attrs, inputs)`` stands for (as the importer builds it)."""
    from mxnet import symbol

    if not isinstance(op, str):
        return op
    fn = getattr(symbol, op)
    return fn(*inputs, **attrs) if isinstance(inputs, (list, tuple)) else fn(inputs, **attrs)


def _input_shape(op: str, attrs) -> list[int]:
    shape = [int(d) for d in attrs.get(INPUT_SHAPE_ATTR, ())]
    if INPUT_SHAPE_ATTR not in attrs:
        raise ValueError(f"{op}: its input's shape is not known before the run (ONNX's shape inference did not "
                         "give it), and its translation for MXNet needs it")
    return shape


#: ONNX element types MXNet 1.9 holds as themselves; the importer read the others (bfloat16,
#: float8, int4, float4...) as float32 or int8 and cast to nothing.
MXNET_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13})


def cast(attrs, inputs, proto_obj):
    """``Cast``: to a type MXNet has (:data:`MXNET_TYPES`) as the importer does, without the
    ``saturate`` (19) and ``round_mode`` (24) attributes, which concern float8 targets only (MXNet
    refused them as unknown arguments); to any other type, refused (the importer cast
    float32 to float32 and called it bfloat16 or float8)."""
    from onnx import TensorProto

    to = int(attrs.get("to", 0))
    if to not in MXNET_TYPES:
        try:
            name = TensorProto.DataType.Name(to)
        except ValueError:
            name = f"element type {to}"
        raise ValueError(f"Cast to {name}: MXNet 1.9 has no such type (its importer would return float32 values)")
    attrs = {k: v for k, v in attrs.items() if k not in ("saturate", "round_mode")}
    return _original_or_fail("Cast")(attrs, inputs, proto_obj)


def div(attrs, inputs, proto_obj):
    """``Div`` as the importer translates it; of integers (prepare() marks them), the quotient
    truncated toward zero as ONNX defines it (MXNet computes in float32)."""
    from mxnet import symbol

    integer = int(attrs.get(INTEGER_ATTR, 0))
    attrs = {k: v for k, v in attrs.items() if k != INTEGER_ATTR}
    y = _symbol(*_original_or_fail("Div")(attrs, inputs, proto_obj))
    return (symbol.trunc(y) if integer else y), attrs, inputs


def arg_extreme(op: str, attrs, inputs, proto_obj):
    """``ArgMax``/``ArgMin`` (``op``) as the importer translates them; with ``select_last_index``
    (which the importer ignored: it gave the first of equal values), the index in the reversed
    axis counted back from the end."""
    from mxnet import symbol

    last = int(attrs.get("select_last_index", 0))
    given = attrs
    attrs = {k: v for k, v in attrs.items() if k not in ("select_last_index", INPUT_SHAPE_ATTR)}
    if not last:
        return _original_or_fail(op)(attrs, inputs, proto_obj)
    shape = _input_shape(op, given)
    axis = int(attrs.get("axis", 0))
    axis = axis + len(shape) if axis < 0 else axis
    fn = symbol.argmax if op == "ArgMax" else symbol.argmin
    idx = fn(symbol.reverse(inputs[0], axis=axis), axis=axis, keepdims=bool(int(attrs.get("keepdims", 1))))
    return symbol.cast((shape[axis] - 1) - idx, dtype="int64"), attrs, inputs


def hardmax(attrs, inputs, proto_obj):
    """``Hardmax``: 1 at the first largest value, 0 elsewhere. Before opset 13 along the second
    axis of the input flattened to 2-D at ``axis`` (default 1); from 13 along the one axis ``axis``
    (default -1), which the importer treated as the old flattening (and the old default)."""
    import numpy as np
    from mxnet import symbol

    shape = _input_shape("Hardmax", attrs)
    rank = len(shape)
    new = int(attrs.get(OPSET_ATTR, 0) or proto_obj.opset_version) >= 13
    axis = int(attrs.get("axis", -1 if new else 1))
    axis = axis + rank if axis < 0 else axis
    x = inputs[0]
    if not new:
        rows, cols = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))
        y = symbol.one_hot(symbol.argmax(symbol.reshape(x, shape=(rows, cols)), axis=1), depth=cols)
        return symbol.reshape(y, shape=tuple(shape)), attrs, inputs
    y = symbol.one_hot(symbol.argmax(x, axis=axis), depth=shape[axis])  # the one-hot axis comes last
    if axis != rank - 1:
        order = list(range(rank - 1))
        order.insert(axis, rank - 1)
        y = symbol.transpose(y, axes=tuple(order))
    return y, attrs, inputs


def lp_normalization(attrs, inputs, proto_obj):
    """``LpNormalization``: x divided by its L1 or L2 norm along ``axis``, 0 where the norm is 0 (the
    importer returned the norm itself)."""
    from mxnet import symbol

    p = int(attrs.get("p", 2))
    if p not in (1, 2):
        raise ValueError(f"LpNormalization with p={p}: ONNX defines p 1 and 2 only")
    x = inputs[0]
    norm = symbol.norm(x, ord=p, axis=int(attrs.get("axis", -1)), keepdims=True)
    # a zero norm means zeros along the axis, which ONNX keeps (0, not 0/0): divide those by 1
    return symbol.broadcast_div(x, norm + (norm == 0)), attrs, inputs


def lp_pool(attrs, inputs, proto_obj):
    """``LpPool``: (sum of |x|^p over each window)^(1/p), the padding counting as zeros (MXNet's
    own lp pooling gave other values, and takes p 1, 2 and 3 only)."""
    from mxnet import symbol

    p = float(attrs.get("p", 2))
    if p <= 0:
        raise ValueError(f"LpPool with p={p:g}: p must be positive")
    attrs = {k: v for k, v in attrs.items() if k != "p"}
    total = pool("sum", attrs, [symbol.abs(inputs[0]) ** p], proto_obj, "LpPool")[0]
    return total ** (1.0 / p), attrs, inputs


def lrn(attrs, inputs, proto_obj):
    """``LRN`` as the importer translates it, with ONNX's default ``bias`` 1 (MXNet's ``knorm``
    defaults to 2, which the importer kept when the model leaves bias out)."""
    attrs = dict(attrs)
    attrs.setdefault("bias", 1.0)
    return _original_or_fail("LRN")(attrs, inputs, proto_obj)


def batch_norm(attrs, inputs, proto_obj):
    """``BatchNormalization`` as the importer translates it, with ONNX's default ``epsilon`` 1e-5
    (MXNet's ``eps`` defaults to 1e-3, which the importer kept when the model leaves epsilon out);
    ``training_mode`` 1 (opset 14: batch statistics and running-stat outputs) is refused."""
    if int(attrs.get("training_mode", 0)):
        raise ValueError("BatchNormalization with training_mode=1 is not translated for MXNet (inference only)")
    attrs = {k: v for k, v in attrs.items() if k != "training_mode"}
    attrs.setdefault("epsilon", 1e-5)
    return _original_or_fail("BatchNormalization")(attrs, inputs, proto_obj)


#: op -> our translation, put in the importer's table (keyed by op alone: one translation serves
#: every version of the op).
TRANSLATIONS = {
    **{op: partial(axes_from_input, op) for op in AXES_INPUT},
    "Split": split, "HardSwish": hard_swish, "Gelu": gelu, "Erf": erf, "LayerNormalization": layer_norm,
    "Where": where, "Expand": expand, "MatMul": matmul,
    "AveragePool": partial(pool, "avg"), "MaxPool": partial(pool, "max"),
    "Conv": partial(conv, "Conv"), "ConvTranspose": partial(conv, "ConvTranspose"),
    "Gemm": gemm, "Gather": gather, "Slice": slice_,
    "Cast": cast, "Div": div, "ArgMax": partial(arg_extreme, "ArgMax"), "ArgMin": partial(arg_extreme, "ArgMin"),
    "Hardmax": hardmax, "LpNormalization": lp_normalization, "LpPool": lp_pool, "LRN": lrn,
    "BatchNormalization": batch_norm,
}
#: ops whose translation calls the importer's own (:func:`original`): put only where it has one.
WRAPS = frozenset({*AXES_INPUT, "MatMul", "Conv", "ConvTranspose", "Slice", "Cast", "Div", "ArgMax", "ArgMin", "LRN",
                   "BatchNormalization"})


def patch() -> list[str]:
    """Put the translations above in MXNet's ONNX importer, and its ``from_onnx`` (idempotent);
    return what was added."""
    if _PATCHED:
        return list(_PATCHED)
    from mxnet.contrib.onnx.onnx2mx import _import_helper
    from mxnet.contrib.onnx.onnx2mx.import_onnx import GraphProto

    table = _import_helper._convert_map  # the same dict import_onnx reads as convert_map
    GraphProto.from_onnx = from_onnx
    added: list[str] = []
    for op, fn in TRANSLATIONS.items():
        own = original(op)
        if op in WRAPS and own is None:
            continue
        if own is not None:
            _ORIGINALS[op] = own
        table[op] = fn
        added.append(op)
    _PATCHED.extend(added)
    return added
