"""Standalone: teach onnx-tf 1.10 the ONNX op versions that today's exporters emit and it lacks.

onnx-tf 1.10 (the last release; it needs TensorFlow 2.15) runs each node through the handler
method for the op's exact ``since_version`` at the model's opset, and knows nothing past opset
15 and not all of 13-15. PyTorch's exporters write opset 17 (TorchScript) and 18-20 (dynamo), so
without this module a ViT, a Swin, a ConvNeXt or anything that squeezes a dimension fails with
``Squeeze version 13 is not implemented``. :func:`patch` adds, each only where onnx-tf lacks it:

New versions whose semantics onnx-tf's previous version already has
    (:data:`SAME_AS`): opsets 16-21 only added types (bfloat16, float8, int4, optional) to
    ``Where``, ``LeakyRelu``, ``PRelu``, ``GreaterOrEqual``, ``LessOrEqual``, ``Equal``,
    ``Reshape``, ``Shape``, ``ConstantOfShape``, ``Cast``, ``Constant``, ``Identity``, ``Size``,
    ``Transpose``, ``Flatten``, ``IsInf``, ``IsNaN``, ``If``, ``Loop``, ``Scan``, ...
New versions that are the old one when a new attribute keeps its default
    (:data:`SAME_WHEN_DEFAULT`): ``ScatterElements``/``ScatterND`` 16 and 18 (``reduction``),
    ``Resize`` 18/19 (``antialias``, ``axes``, ``keep_aspect_ratio_policy``),
    ``AveragePool``-19 (``dilations``); another value is refused with a clear error.
Inputs that used to be attributes
    ``Squeeze``/``Unsqueeze`` 13 and 21 (``axes``), every ``Reduce*``-18 (``axes``,
    ``noop_with_empty_axes``; ``ReduceMax``/``ReduceMin``-20 too), ``Pad`` 18/19/21 (``axes``), ``Split``-18 (``num_outputs``).
    The axes must be known when the graph is built (an initializer or a ``Constant``: what
    exporters write); data-dependent axes are refused with a clear error.
A wrong result
    ``ReduceL1``/``ReduceL2`` over several axes: onnx-tf computed a matrix norm (``tf.norm``);
    every version now sums over the axes as ONNX says.
Ops onnx-tf never had
    ``LayerNormalization``-17 (computed in float32, ``stash_type`` 1, with its optional
    ``Mean`` and ``InvStdDev`` outputs), ``Gelu``-20 (exact and tanh) and ``Mish``-18.

It imports only the standard library at top level (TensorFlow and onnx-tf inside :func:`patch`),
never ``mlms_ir``, because it runs in the onnx-tf environment: beside ``agent.py``, which imports
it from its own folder, and beside a copy of ``mlms_ir.converters.onnx_tf_export``.
:func:`patch` is idempotent.
"""

from __future__ import annotations

import copy

#: op -> ({new versions}, the onnx-tf version that behaves the same for every type exporters use).
SAME_AS = {
    "Where": ({16}, 9), "LeakyRelu": ({16}, 6), "PRelu": ({16}, 9), "GreaterOrEqual": ({16}, 12),
    "LessOrEqual": ({16}, 12), "Equal": ({19}, 13), "Reshape": ({19, 21}, 14), "Shape": ({19, 21}, 15),
    "ConstantOfShape": ({20, 21}, 9), "Cast": ({19, 21}, 13), "Constant": ({19, 21}, 13),
    "Identity": ({19, 21}, 16), "Size": ({19, 21}, 13), "Transpose": ({21}, 13), "Flatten": ({21}, 13),
    "IsInf": ({20}, 10), "IsNaN": ({20}, 13), "If": ({16, 19, 21}, 13), "Loop": ({16, 19, 21}, 13),
    "Scan": ({16, 19, 21}, 11), "Squeeze": ({21}, 13), "Unsqueeze": ({21}, 13),
}
#: op -> ({new versions}, old version, {attribute: the values that keep the old behaviour}).
SAME_WHEN_DEFAULT = {
    "ScatterElements": ({16, 18}, 13, {"reduction": {"none"}}),
    "ScatterND": ({16, 18}, 13, {"reduction": {"none"}}),
    "Resize": ({18, 19}, 13, {"antialias": {0}, "axes": {None}, "keep_aspect_ratio_policy": {"stretch"}}),
    "AveragePool": ({19}, 11, {"dilations": {None, "ones"}}),
}
#: op -> {attribute: values a later opset added that onnx-tf's old handler would read as another
#: (its Resize takes any unknown coordinate mode for half_pixel)}.
REFUSED = {"Resize": {"coordinate_transformation_mode": {"half_pixel_symmetric"}}}
#: the reductions whose ``axes`` became an input in opset 18 (ReduceSum did so in 13).
REDUCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
             "ReduceLogSumExp", "ReduceSumSquare")

_PATCHED: list[str] = []
#: the handler classes made here: onnx-tf finds handlers through ``BackendHandler.__subclasses__()``,
#: which holds only weak references, so without these a garbage collection would drop them.
_CLASSES: list[type] = []


def one_line(exc: BaseException) -> str:
    """The exception's type and the last meaningful line of its message: TensorFlow wraps an error
    raised while tracing in many lines of 'in user code' context, which are no use to a user."""
    name = type(exc).__name__
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    traced = len(lines) > 1 and any("in user code" in ln or ln.startswith("File ") for ln in lines)
    lines = [ln for ln in lines if not ln.startswith("[[{{node ")] or lines  # graph-execution node tags
    if not lines:
        return name
    msg = lines[-1] if traced else " ".join(lines)
    for prefix in (name + ":", "BackendIsNotSupposedToImplementIt:"):
        if msg.startswith(prefix):
            msg = msg[len(prefix):].strip()
    return f"{name}: {msg}"[:2000]


def _raw(cls, name: str):
    """``name`` as defined on ``cls`` or a base (the classmethod object, not a bound method)."""
    for klass in getattr(cls, "__mro__", ()):
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _static_ints(tensor, op: str, name: str, what: str = "axes") -> list[int]:
    import tensorflow as tf

    value = tf.get_static_value(tensor)
    if value is None:
        raise ValueError(f"{op} node '{name}': its {what} are computed at run time; onnx-tf needs them when the "
                         "graph is built (an initializer or a Constant)")
    return [int(a) for a in value.reshape(-1)]


def _with(node, *, inputs=None, attrs=None, drop=()):
    """A copy of onnx-tf's ``OnnxNode`` with other inputs and attributes (handlers may mutate attrs)."""
    new = copy.copy(node)
    new.inputs = list(node.inputs if inputs is None else inputs)
    new.attrs = {k: v for k, v in dict(node.attrs).items() if k not in drop}
    new.attrs.update(attrs or {})
    return new


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def patch() -> list[str]:
    """Add the handlers described above to onnx-tf (idempotent); return what was added (``Op-version``)."""
    if _PATCHED:
        return list(_PATCHED)
    import tensorflow as tf
    from onnx_tf.common import handler_helper  # noqa: F401 - imports every backend handler first
    from onnx_tf.handlers.backend_handler import BackendHandler
    from onnx_tf.handlers.handler import onnx_op

    handlers = {cls.ONNX_OP: cls for cls in BackendHandler.__subclasses__() if getattr(cls, "DOMAIN", "") == ""}
    added: list[str] = []

    def add(op: str, version: int, fn) -> None:
        h = handlers.get(op)
        if h is not None and _raw(h, f"version_{version}") is None:
            setattr(h, f"version_{version}", fn if isinstance(fn, classmethod) else classmethod(fn))
            added.append(f"{op}-{version}")

    def tensors(node, kwargs) -> list:
        td = kwargs["tensor_dict"]
        return [td[x] if x else None for x in node.inputs]

    # -- axes as inputs: Squeeze / Unsqueeze 13
    def squeeze_13(cls, node, **kwargs):
        x, *rest = tensors(node, kwargs)
        axes = rest[0] if rest else None
        ax = [] if axes is None else _static_ints(axes, "Squeeze", node.name)
        return [tf.squeeze(x, axis=ax) if ax else tf.squeeze(x)]

    def unsqueeze_13(cls, node, **kwargs):
        x, axes = tensors(node, kwargs)[:2]
        ax = _static_ints(axes, "Unsqueeze", node.name)
        if any(a < 0 for a in ax):
            if x.shape.rank is None:
                raise ValueError(f"Unsqueeze node '{node.name}': negative axes need the input's rank")
            rank = x.shape.rank + len(ax)
            ax = [a + rank if a < 0 else a for a in ax]
        if len(set(ax)) != len(ax):
            raise ValueError(f"Unsqueeze node '{node.name}': repeated axes {ax}")
        for a in sorted(ax):
            x = tf.expand_dims(x, axis=a)
        return [x]

    add("Squeeze", 13, squeeze_13)
    add("Unsqueeze", 13, unsqueeze_13)

    # -- ReduceL1 / ReduceL2, every version: onnx-tf runs tf.norm(ord=1|2, axis=axes), which over
    # two axes is a matrix norm (the largest column sum; the spectral norm), not ONNX's sum of |x|
    # or sqrt(sum(x^2)): ConvNeXt-V2's global response norm came out 2e-3 off
    def vector_norm(order: int):
        def norm(cls, node, **kwargs):
            x = tensors(node, kwargs)[0]
            axes = node.attrs.get("axes")
            keep = int(node.attrs.get("keepdims", 1)) == 1
            axis = list(axes) if axes else None
            if order == 1:
                return [tf.reduce_sum(tf.abs(x), axis=axis, keepdims=keep)]
            return [tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis, keepdims=keep))]

        return classmethod(norm)

    for op, order in (("ReduceL1", 1), ("ReduceL2", 2)):
        h = handlers.get(op)
        if h is not None:
            for v in (1, 11, 13):
                setattr(h, f"version_{v}", vector_norm(order))
            added.append(f"{op}-1/11/13 (a vector norm over the axes)")

    # -- Reduce*-18: axes input, noop_with_empty_axes
    for op in REDUCE_18:
        old = _raw(handlers.get(op), "version_13")
        if old is None:
            continue

        def reduce_18(cls, node, _old=old, _op=op, **kwargs):
            ins = tensors(node, kwargs)
            axes = _static_ints(ins[1], _op, node.name) if len(ins) > 1 and ins[1] is not None else []
            if not axes and int(node.attrs.get("noop_with_empty_axes", 0)):
                return [tf.identity(ins[0])]
            new = _with(node, inputs=node.inputs[:1], attrs={"axes": axes} if axes else {},
                        drop=("noop_with_empty_axes", "axes"))
            return _old.__get__(None, cls)(new, **kwargs)

        add(op, 18, reduce_18)
        if op in ("ReduceMax", "ReduceMin"):
            add(op, 20, reduce_18)  # 20 only added bool inputs

    # -- Pad 18/19/21: optional axes input; 19 adds mode "wrap"
    old_pad = _raw(handlers.get("Pad"), "version_13")
    if old_pad is not None:
        def pad_18(cls, node, **kwargs):
            if _text(node.attrs.get("mode", "constant")) == "wrap":
                raise ValueError(f"Pad node '{node.name}': mode 'wrap' is not supported by onnx-tf")
            ins = tensors(node, kwargs)
            value = [n for n in node.inputs[2:3] if n]  # an omitted constant_value ("") is no input for onnx-tf
            if len(ins) < 4 or ins[3] is None:
                return old_pad.__get__(None, cls)(_with(node, inputs=node.inputs[:2] + value), **kwargs)
            x = ins[0]
            rank = x.shape.rank
            if rank is None:
                raise ValueError(f"Pad node '{node.name}': padding given axes needs the input's rank")
            axes = [a + rank if a < 0 else a for a in _static_ints(ins[3], "Pad", node.name)]
            pads = _static_ints(ins[1], "Pad", node.name, "pads")
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            name = f"{node.outputs[0]}::mlms_ir_full_pads"
            kwargs["tensor_dict"][name] = tf.constant(full, dtype=tf.int64)
            return old_pad.__get__(None, cls)(_with(node, inputs=[node.inputs[0], name] + value), **kwargs)

        for v in (18, 19, 21):
            add("Pad", v, pad_18)

    # -- Split-18: num_outputs instead of the split input
    old_split = _raw(handlers.get("Split"), "version_13")
    if old_split is not None:
        def split_18(cls, node, **kwargs):
            ins = tensors(node, kwargs)
            if len(ins) > 1 and ins[1] is not None:
                return old_split.__get__(None, cls)(_with(node, drop=("num_outputs",)), **kwargs)
            x = ins[0]
            n = int(node.attrs.get("num_outputs", len(node.outputs)))
            axis = int(node.attrs.get("axis", 0))
            dim = tf.shape(x, out_type=tf.int64)[axis]  # often unknown while tracing: computed in the graph
            chunk = (dim + n - 1) // n  # ONNX: ceil(dim / n) each, the last one smaller
            sizes = tf.concat([tf.fill([n - 1], chunk), [dim - chunk * (n - 1)]], axis=0)
            return list(tf.split(x, sizes, num=n, axis=axis))

        add("Split", 18, split_18)

    # -- versions that only added types
    for op, (versions, old) in SAME_AS.items():
        fn = _raw(handlers.get(op), f"version_{old}")
        if fn is not None:
            for v in sorted(versions):
                add(op, v, fn)

    # -- versions that are the old one while a new attribute keeps its default
    for op, (versions, old, defaults) in SAME_WHEN_DEFAULT.items():
        fn = _raw(handlers.get(op), f"version_{old}")
        if fn is None:
            continue

        def when_default(cls, node, _old=fn, _op=op, _defaults=defaults, **kwargs):
            for attr, ok in _defaults.items():
                value = _text(node.attrs.get(attr))
                if value is None:
                    continue
                if isinstance(value, (list, tuple)):
                    if "ones" in ok and all(int(d) == 1 for d in value):
                        continue
                elif value in ok:
                    continue
                raise ValueError(f"{_op} node '{node.name}': {attr}={value!r} is not supported by onnx-tf")
            for attr, bad in REFUSED.get(_op, {}).items():  # new values onnx-tf would silently take for another
                value = _text(node.attrs.get(attr))
                if value in bad:
                    raise ValueError(f"{_op} node '{node.name}': {attr}={value!r} is not supported by onnx-tf")
            return _old.__get__(None, cls)(_with(node, drop=tuple(_defaults)), **kwargs)

        for v in sorted(versions):
            add(op, v, when_default)

    # -- ops onnx-tf never had
    def new_op(cls, version: int) -> None:
        handlers[cls.ONNX_OP] = cls
        _CLASSES.append(cls)
        added.append(f"{cls.ONNX_OP}-{version}")

    if "LayerNormalization" not in handlers:
        @onnx_op("LayerNormalization")
        class LayerNormalization(BackendHandler):
            """ONNX LayerNormalization-17 on TensorFlow ops, in float32 (``stash_type`` 1)."""

            @classmethod
            def version_17(cls, node, **kwargs):
                x, scale, *rest = tensors(node, kwargs)
                bias = rest[0] if rest else None
                eps = float(node.attrs.get("epsilon", 1e-5))
                if int(node.attrs.get("stash_type", 1)) != 1:
                    raise ValueError(f"LayerNormalization node '{node.name}': only stash_type 1 (float32) is supported")
                rank = x.shape.rank
                if rank is None:
                    raise ValueError(f"LayerNormalization node '{node.name}': the input's rank is unknown")
                axis = int(node.attrs.get("axis", -1))
                axes = list(range(axis + rank if axis < 0 else axis, rank))
                xs = tf.cast(x, tf.float32)
                mean = tf.reduce_mean(xs, axis=axes, keepdims=True)
                centred = xs - mean
                inv = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True) + eps)
                y = tf.cast(centred * inv, x.dtype) * scale
                if bias is not None:
                    y = y + bias
                named = [i for i, o in enumerate(node.outputs) if o]  # omitted optional outputs are ""
                return [y, mean, inv][:max(named, default=0) + 1]

        new_op(LayerNormalization, 17)

    if "Gelu" not in handlers:
        @onnx_op("Gelu")
        class Gelu(BackendHandler):
            """ONNX Gelu-20: exact (``approximate="none"``) or the tanh approximation."""

            @classmethod
            def version_20(cls, node, **kwargs):
                x = tensors(node, kwargs)[0]
                approx = _text(node.attrs.get("approximate", "none"))
                if approx not in ("none", "tanh"):
                    raise ValueError(f"Gelu node '{node.name}': unknown approximate={approx!r}")
                return [tf.nn.gelu(x, approximate=approx == "tanh")]

        new_op(Gelu, 20)

    if "Mish" not in handlers:
        @onnx_op("Mish")
        class Mish(BackendHandler):
            """ONNX Mish-18: ``x * tanh(softplus(x))``."""

            @classmethod
            def version_18(cls, node, **kwargs):
                x = tensors(node, kwargs)[0]
                return [x * tf.math.tanh(tf.math.softplus(x))]

        new_op(Mish, 18)

    _PATCHED.extend(added)
    return added
