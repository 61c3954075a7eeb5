"""Standalone: teach onnx-tf 1.10 the ONNX op versions that today's exporters emit and it lacks.

onnx-tf 1.10 (the last release; it needs TensorFlow 2.15) runs each node through the handler
method for the op's exact ``since_version`` at the model's opset, and knows nothing past opset
15 and not all of 13-15. PyTorch's exporters write opset 17 (TorchScript) and 18-20 (dynamo), so
without this module a ViT, a Swin, a ConvNeXt or anything that squeezes a dimension fails with
``Squeeze version 13 is not implemented``. :func:`patch` adds, each only where onnx-tf lacks it:

New versions whose semantics onnx-tf's previous version already has
    (:data:`onnx_versions.SAME_AS <mlms_ir.backends.onnx_versions.SAME_AS>`): opsets 16-21 only added types (bfloat16, float8, int4, optional) to
    ``Where``, ``LeakyRelu``, ``PRelu``, ``GreaterOrEqual``, ``LessOrEqual``, ``Equal``,
    ``Reshape``, ``Shape``, ``ConstantOfShape``, ``Cast``, ``Constant``, ``Identity``, ``Size``,
    ``Transpose``, ``Flatten``, ``IsInf``, ``IsNaN``, ``If``, ``Loop``, ``Scan``, ...
New versions that are the old one when a new attribute keeps its default
    (:data:`onnx_versions.SAME_WHEN_DEFAULT <mlms_ir.backends.onnx_versions.SAME_WHEN_DEFAULT>`,
    :func:`same_when_default`): ``ScatterElements``/``ScatterND`` 16 and 18 (``reduction``),
    ``Resize`` 18/19 (``antialias``, ``axes``, ``keep_aspect_ratio_policy``),
    ``AveragePool``-19 (``dilations``); another value is refused with a clear error.
Inputs that used to be attributes
    ``Squeeze``/``Unsqueeze`` 13 and 21 (``axes``), every ``Reduce*``-18 (``axes``,
    ``noop_with_empty_axes``; ``ReduceMax``/``ReduceMin``-20 too), ``Pad`` 18/19/21 (``axes``), ``Split``-18 (``num_outputs``).
    The axes must be known when the graph is built (an initializer or a ``Constant``: what
    exporters write); data-dependent axes are refused with a clear error.
Wrong results
    ``ReduceL1``/``ReduceL2`` over several axes: onnx-tf computed a matrix norm (``tf.norm``);
    every version now sums over the axes as ONNX says. ``Clip`` with ``min`` above ``max``:
    onnx-tf's ``tf.clip_by_value`` gave ``min``, ONNX ``max``.
Ops onnx-tf never had
    ``LayerNormalization``-17 (computed in float32, ``stash_type`` 1, with its optional
    ``Mean`` and ``InvStdDev`` outputs), ``Gelu``-20 (exact and tanh) and ``Mish``-18.

Each handler is a module-level function ``(cls, node, **kwargs) -> [tensors]``, as onnx-tf's own
``version_N`` class methods are (``cls``: onnx-tf's handler class of the op, whose older version a
handler may call; ``node``: onnx-tf's ``OnnxNode``; ``kwargs``: ``tensor_dict``...), listed in
:data:`HANDLERS`, :data:`REPLACES` and :data:`NEW_OPS`, so each can be tested alone.

It imports only the standard library and :mod:`~mlms_ir.backends.onnx_versions` at top level
(TensorFlow and onnx-tf inside the functions), never ``mlms_ir``, because it runs in the onnx-tf
environment: beside ``agent.py``, which imports it from its own folder, and beside a copy of
``mlms_ir.converters.onnx_tf_export``; ``onnx_versions.py`` goes with it to both places.
:func:`patch` is idempotent.
"""

from __future__ import annotations

import copy

try:  # imported as mlms_ir.backends.onnx_tf_compat
    from .onnx_versions import AXES_INPUT, REDUCE_18, SAME_AS, SAME_WHEN_DEFAULT, unsupported_setting
except ImportError:  # standalone: beside agent.py, or copied beside onnx_tf_export.py
    from onnx_versions import AXES_INPUT, REDUCE_18, SAME_AS, SAME_WHEN_DEFAULT, unsupported_setting

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


# ---------------------------------------------------------------------------- helpers
def _raw(cls, name: str):
    """``name`` as defined on ``cls`` or a base (the classmethod object, not a bound method)."""
    for klass in getattr(cls, "__mro__", ()):
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _older(cls, version: int):
    """onnx-tf's ``version_<version>`` of handler class ``cls``, bound to it."""
    fn = _raw(cls, f"version_{version}")
    if fn is None:
        raise ValueError(f"{getattr(cls, 'ONNX_OP', cls)}: onnx-tf has no version {version} to build on")
    return fn.__get__(None, cls)


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


def _tensors(node, kwargs) -> list:
    td = kwargs["tensor_dict"]
    return [td[x] if x else None for x in node.inputs]


# ---------------------------------------------------------------------------- axes as inputs
def squeeze_13(cls, node, **kwargs):
    """``Squeeze``-13: the axes input (none: every 1-dim)."""
    import tensorflow as tf

    x, *rest = _tensors(node, kwargs)
    axes = rest[0] if rest else None
    ax = [] if axes is None else _static_ints(axes, "Squeeze", node.name)
    return [tf.squeeze(x, axis=ax) if ax else tf.squeeze(x)]


def unsqueeze_13(cls, node, **kwargs):
    """``Unsqueeze``-13: the axes input, negative ones counted in the output's rank."""
    import tensorflow as tf

    x, axes = _tensors(node, kwargs)[:2]
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


def reduce_18(cls, node, **kwargs):
    """``Reduce*``-18: the axes input (and ``noop_with_empty_axes``) for onnx-tf's version 13."""
    import tensorflow as tf

    ins = _tensors(node, kwargs)
    axes = _static_ints(ins[1], node.op_type, node.name) if len(ins) > 1 and ins[1] is not None else []
    if not axes and int(node.attrs.get("noop_with_empty_axes", 0)):
        return [tf.identity(ins[0])]
    new = _with(node, inputs=node.inputs[:1], attrs={"axes": axes} if axes else {}, drop=("noop_with_empty_axes", "axes"))
    return _older(cls, 13)(new, **kwargs)


def pad_18(cls, node, **kwargs):
    """``Pad`` 18/19/21: the optional axes input (the pads of the other axes are 0); no ``wrap`` mode."""
    import tensorflow as tf

    if _text(node.attrs.get("mode", "constant")) == "wrap":
        raise ValueError(f"Pad node '{node.name}': mode 'wrap' is not supported by onnx-tf")
    ins = _tensors(node, kwargs)
    value = [n for n in node.inputs[2:3] if n]  # an omitted constant_value ("") is no input for onnx-tf
    if len(ins) < 4 or ins[3] is None:
        return _older(cls, 13)(_with(node, inputs=node.inputs[:2] + value), **kwargs)
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
    return _older(cls, 13)(_with(node, inputs=[node.inputs[0], name] + value), **kwargs)


def split_18(cls, node, **kwargs):
    """``Split``-18: the version-13 handler when sizes are given; by ``num_outputs``, chunks of
    ceil(dim / n), the last one smaller (computed in the graph: the dim is often unknown)."""
    import tensorflow as tf

    ins = _tensors(node, kwargs)
    if len(ins) > 1 and ins[1] is not None:
        return _older(cls, 13)(_with(node, drop=("num_outputs",)), **kwargs)
    x = ins[0]
    n = int(node.attrs.get("num_outputs", len(node.outputs)))
    axis = int(node.attrs.get("axis", 0))
    dim = tf.shape(x, out_type=tf.int64)[axis]
    chunk = (dim + n - 1) // n
    sizes = tf.concat([tf.fill([n - 1], chunk), [dim - chunk * (n - 1)]], axis=0)
    return list(tf.split(x, sizes, num=n, axis=axis))


# ---------------------------------------------------------------------------- defaults, wrong results
def same_when_default(cls, node, **kwargs):
    """A version of :data:`~mlms_ir.backends.onnx_versions.SAME_WHEN_DEFAULT` as onnx-tf's older
    one, while its new attributes keep their defaults (they are dropped); a value a later version
    added to an older attribute is refused (onnx-tf's Resize would take an unknown coordinate mode
    for half_pixel)."""
    op = node.op_type
    _, old, defaults, _ = SAME_WHEN_DEFAULT[op]
    found = unsupported_setting(op, node.attrs, defaults)
    if found is not None:
        raise ValueError(f"{op} node '{node.name}': {found[0]}={found[1]!r} is not supported by onnx-tf")
    return _older(cls, old)(_with(node, drop=tuple(defaults)), **kwargs)


def _vector_norm(node, kwargs, order: int) -> list:
    import tensorflow as tf

    x = _tensors(node, kwargs)[0]
    axes = node.attrs.get("axes")
    keep = int(node.attrs.get("keepdims", 1)) == 1
    axis = list(axes) if axes else None
    if order == 1:
        return [tf.reduce_sum(tf.abs(x), axis=axis, keepdims=keep)]
    return [tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis, keepdims=keep))]


def reduce_l1(cls, node, **kwargs):
    """``ReduceL1`` 1/11/13: the sum of |x| over the axes (onnx-tf ran ``tf.norm(ord=1)``, which over
    two axes is a matrix norm, the largest column sum)."""
    return _vector_norm(node, kwargs, 1)


def reduce_l2(cls, node, **kwargs):
    """``ReduceL2`` 1/11/13: sqrt(sum(x^2)) over the axes (onnx-tf's ``tf.norm(ord=2)`` over two axes
    is the spectral norm: ConvNeXt-V2's global response norm came out 2e-3 off)."""
    return _vector_norm(node, kwargs, 2)


def clip(cls, node, **kwargs):
    """``Clip`` 1/6/11/12/13: ``min(max(x, min), max)`` as ONNX defines it, so a ``min`` above ``max``
    gives ``max`` (onnx-tf ran ``tf.clip_by_value``, which gives ``min`` there); the small integer
    types computed in the wider ones onnx-tf's handler uses (``cls.cast_map``)."""
    import tensorflow as tf

    td = kwargs["tensor_dict"]
    x = td[node.inputs[0]]
    dtype = x.dtype

    def bound(i: int, attr: str):
        if len(node.inputs) > i and node.inputs[i]:
            return td[node.inputs[i]]
        return node.attrs.get(attr)  # Clip-1/6: attributes; absent: no bound

    lo, hi = bound(1, "min"), bound(2, "max")
    wide = getattr(cls, "cast_map", {}).get(dtype)
    y = tf.cast(x, wide) if wide is not None else x
    if lo is not None:
        y = tf.maximum(y, tf.cast(lo, y.dtype))
    if hi is not None:
        y = tf.minimum(y, tf.cast(hi, y.dtype))
    return [tf.cast(y, dtype) if wide is not None else y]


# ---------------------------------------------------------------------------- ops onnx-tf never had
def layer_norm_17(cls, node, **kwargs):
    """ONNX LayerNormalization-17 on TensorFlow ops, in float32 (``stash_type`` 1), with its
    optional ``Mean`` and ``InvStdDev`` outputs."""
    import tensorflow as tf

    x, scale, *rest = _tensors(node, kwargs)
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


def gelu_20(cls, node, **kwargs):
    """ONNX Gelu-20: exact (``approximate="none"``) or the tanh approximation."""
    import tensorflow as tf

    x = _tensors(node, kwargs)[0]
    approx = _text(node.attrs.get("approximate", "none"))
    if approx not in ("none", "tanh"):
        raise ValueError(f"Gelu node '{node.name}': unknown approximate={approx!r}")
    return [tf.nn.gelu(x, approximate=approx == "tanh")]


def mish_18(cls, node, **kwargs):
    """ONNX Mish-18: ``x * tanh(softplus(x))``."""
    import tensorflow as tf

    x = _tensors(node, kwargs)[0]
    return [x * tf.math.tanh(tf.math.softplus(x))]


# ---------------------------------------------------------------------------- tables
#: (op, version, handler, the onnx-tf version it builds on: it is added only where onnx-tf has
#: that one). Explicit handlers first; :func:`same_when_default` takes the versions left.
_TABLE: list[tuple[str, int, object, int | None]] = [
    ("Squeeze", 13, squeeze_13, None),
    ("Unsqueeze", 13, unsqueeze_13, None),
    *((op, AXES_INPUT[op], reduce_18, 13) for op in REDUCE_18),
    *(("Pad", v, pad_18, 13) for v in sorted(SAME_WHEN_DEFAULT["Pad"][0])),
    ("Split", 18, split_18, 13),
]
_TABLE += [(op, v, same_when_default, old) for op, (versions, old, _, _) in SAME_WHEN_DEFAULT.items()
           for v in sorted(versions) if (op, v) not in {(o, w) for o, w, _, _ in _TABLE}]
#: (op, version) -> handler, added to onnx-tf's handler class of the op where it lacks the version.
HANDLERS = {(op, v): fn for op, v, fn, _ in _TABLE}
#: (op, version) -> the onnx-tf version the handler of :data:`HANDLERS` calls.
BUILDS_ON = {(op, v): base for op, v, _, base in _TABLE if base is not None}
#: (op, version) -> handler that replaces onnx-tf's own (a wrong result).
REPLACES = {**{("ReduceL1", v): reduce_l1 for v in (1, 11, 13)}, **{("ReduceL2", v): reduce_l2 for v in (1, 11, 13)},
            **{("Clip", v): clip for v in (1, 6, 11, 12, 13)}}
#: op -> what its replacement in :data:`REPLACES` fixes (for :func:`patch`'s list).
REPLACED_WHY = {"ReduceL1": "a vector norm over the axes", "ReduceL2": "a vector norm over the axes",
                "Clip": "max where min > max"}
#: op -> (version, handler): ops onnx-tf never had, each a new handler class.
NEW_OPS = {"LayerNormalization": (17, layer_norm_17), "Gelu": (20, gelu_20), "Mish": (18, mish_18)}


# ---------------------------------------------------------------------------- patching
def patch() -> list[str]:
    """Add the handlers above to onnx-tf (idempotent); return what was added (``Op-version``)."""
    if _PATCHED:
        return list(_PATCHED)
    import importlib

    importlib.import_module("onnx_tf.common.handler_helper")  # imports every backend handler first
    from onnx_tf.handlers.backend_handler import BackendHandler
    from onnx_tf.handlers.handler import onnx_op

    handlers = {cls.ONNX_OP: cls for cls in BackendHandler.__subclasses__() if getattr(cls, "DOMAIN", "") == ""}
    added: list[str] = []

    def add(op: str, version: int, fn) -> None:
        h = handlers.get(op)
        if h is not None and _raw(h, f"version_{version}") is None:
            setattr(h, f"version_{version}", fn if isinstance(fn, classmethod) else classmethod(fn))
            added.append(f"{op}-{version}")

    for (op, version), fn in HANDLERS.items():
        base = BUILDS_ON.get((op, version))
        if base is None or _raw(handlers.get(op), f"version_{base}") is not None:
            add(op, version, fn)
    replaced: dict[str, list[int]] = {}
    for (op, version), fn in REPLACES.items():
        if op in handlers:
            setattr(handlers[op], f"version_{version}", classmethod(fn))
            replaced.setdefault(op, []).append(version)
    added.extend(f"{op}-{'/'.join(map(str, vs))} ({REPLACED_WHY[op]})" for op, vs in replaced.items())
    # after ours: Squeeze-21 is our Squeeze-13, ReduceMax-20 our ReduceMax-18
    for op, (versions, old) in SAME_AS.items():
        fn = _raw(handlers.get(op), f"version_{old}")
        if fn is not None:
            for v in sorted(versions):
                add(op, v, fn)
    for op, (version, fn) in NEW_OPS.items():
        if op not in handlers:
            cls = onnx_op(op)(type(op, (BackendHandler,), {f"version_{version}": classmethod(fn), "__doc__": fn.__doc__}))
            handlers[op] = cls
            _CLASSES.append(cls)
            added.append(f"{op}-{version}")
    _PATCHED.extend(added)
    return added
