"""onnx2torch 1.5 taught the ONNX op versions of opsets 18-21 that today's exporters write.

onnx2torch looks a node's converter up by the op's ``since_version`` at the model's opset, and
its registry stops at about opset 17. PyTorch's dynamo exporter writes opset 18-20, so a ViT or
a ConvNeXt (``Gelu``-20, ``Shape``-19, ``Reshape``-19, ``ReduceMean``-18 ...) had no converter;
the torch backend could convert such a model down with ``onnx.version_converter``, which has no
adapter for ``Gelu`` (it has no version before 20). :func:`patch` registers, where onnx2torch
lacks them, one converter per node, so each ONNX node still becomes one submodule and the
per-node mapping of the torch backend holds:

* versions that only added types (:data:`~mlms_ir.backends.onnx_versions.SAME_AS`, less
  :data:`NOT_ALIASED`): onnx2torch's converter of the older version;
* versions whose new attribute keeps its default and that get no new input: the older converter,
  and a clear error otherwise (:data:`~mlms_ir.backends.onnx_versions.SAME_WHEN_DEFAULT`:
  ``AveragePool``-19's ``dilations``, ``ScatterND``-18's ``reduction``, ``Pad``-18/19/21 without
  ``axes`` and not in ``wrap`` mode, ``Resize``-18/19 without antialiasing, ``axes``, a new
  aspect-ratio or coordinate mode, and only where torch's interpolation is ONNX's);
* every ``Reduce*``-18 (and ``ReduceMax``/``ReduceMin``-20): the ``axes`` input, a constant,
  becomes the attribute the version-13 converter reads (:func:`reduce_18`);
* ``Split``-18: the version-13 converter when sizes are given, else chunks of ceil(dim / n)
  (:func:`split_18`);
* ``Gelu``-20: :class:`torch.nn.GELU`, exact or tanh (:func:`gelu_20`);
* ``LayerNormalization``-17 where shape inference left the input's dims unknown: onnx2torch
  sized ``nn.LayerNorm`` with 0s (Hiera failed); such nodes normalise over the input's own
  trailing dims at run time (:func:`layer_norm_17`, which replaces onnx2torch's own).

Each converter is a module-level function ``(node, graph) -> OperationConverterResult`` of
onnx2torch's ``OnnxNode`` and ``OnnxGraph``, listed in :data:`CONVERTERS`; it finds the older
converter it builds on in onnx2torch's registry when called, so it can be tested alone.

Errors do not name the node: the torch backend converts a copy whose nodes are renamed to their
graph ids, and its own message names the node as the user knows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mlms_ir.backends.onnx_versions import AXES_INPUT, REDUCE_18, SAME_AS, SAME_WHEN_DEFAULT, unsupported_setting

#: Ops of :data:`~mlms_ir.backends.onnx_versions.SAME_AS` left unregistered: a model with them
#: is converted down to opset 17 by the torch backend (``adapt_for_onnx2torch``), as before.
NOT_ALIASED = ("IsInf", "IsNaN")

_PATCHED: list[str] = []
_LOCK = threading.Lock()
#: (op, version) -> onnx2torch's own converter that one of ours replaced (see :data:`REPLACES`).
_REPLACED: dict[tuple[str, int], Callable] = {}


# ---------------------------------------------------------------------------------------------- helpers
def _registry() -> dict:
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY

    return _CONVERTER_REGISTRY


def _key(op: str, version: int):
    from onnx2torch.node_converters.registry import OperationDescription

    return OperationDescription("", op, version)


def older(op: str, version: int) -> Callable | None:
    """onnx2torch's own converter of ``op``-``version``: the one ours replaced, if one did; None
    where it has none (or only one of ours)."""
    fn = _REPLACED.get((op, version)) or _registry().get(_key(op, version))
    return None if fn is None or getattr(fn, "__module__", None) == __name__ else fn


def _older_or_fail(op: str, version: int) -> Callable:
    fn = older(op, version)
    if fn is None:
        raise NotImplementedError(f"{op}: onnx2torch has no converter of version {version} to build on")
    return fn


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _rebuilt(node, inputs: list[str], attrs: dict[str, Any], drop: tuple[str, ...] = ()):
    """``node`` with other inputs and attributes, under the same unique name (the submodule's)."""
    import onnx
    from onnx2torch.onnx_node import OnnxNode

    proto = onnx.NodeProto()
    proto.CopyFrom(node.proto)
    del proto.input[:]
    proto.input.extend(inputs)
    keep = [a for a in proto.attribute if a.name not in drop and a.name not in attrs]
    del proto.attribute[:]
    proto.attribute.extend(keep)
    proto.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())
    return OnnxNode(proto, unique_name=node.unique_name)


def _result(module, node):
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


def _check_defaults(node, op: str, defaults: dict[str, set], max_inputs: int) -> None:
    found = unsupported_setting(op, node.attributes, defaults)
    if found is not None:
        raise NotImplementedError(f"{op}: {found[0]}={found[1]!r} is not supported by onnx2torch")
    extra = [x for x in node.input_values[max_inputs:] if x]
    if extra:
        raise NotImplementedError(f"{op}: input {max_inputs + 1} ({extra[0]}) is not supported by onnx2torch")


def _check_resize(node) -> None:
    """onnx2torch's Resize computes torch's interpolation and only warns where that is not ONNX's:
    refuse those cases (nearest other than floor/asymmetric, linear or cubic with another
    coordinate mode, another cubic coefficient, exclude_outside, crop-and-resize)."""
    def text(name: str, default: str) -> str:
        return _text(node.attributes.get(name, default))

    mode, coords = text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        ok = coords == "asymmetric" and text("nearest_mode", "round_prefer_floor") == "floor"
        what = f"nearest with {coords} and nearest_mode {text('nearest_mode', 'round_prefer_floor')}"
    else:
        ok = coords in ("half_pixel", "pytorch_half_pixel", "align_corners")
        what = f"{mode} with {coords}"
    if ok and mode == "cubic":
        ok = float(node.attributes.get("cubic_coeff_a", -0.75)) == -0.75 and int(node.attributes.get("exclude_outside", 0)) == 0
        what = "cubic with another coefficient or exclude_outside"
    if not ok:
        raise NotImplementedError(f"Resize: {what} is not what torch's interpolation computes")


# ---------------------------------------------------------------------------------------------- converters
def same_when_default(node, graph):
    """A version of :data:`~mlms_ir.backends.onnx_versions.SAME_WHEN_DEFAULT` as its older one,
    while its new attributes keep their defaults (they are dropped) and it has no new input."""
    op = node.operation_type
    _, old, defaults, max_inputs = SAME_WHEN_DEFAULT[op]
    _check_defaults(node, op, defaults, max_inputs)
    if op == "Resize":
        _check_resize(node)
    old_fn = _older_or_fail(op, old)
    trimmed = list(node.input_values[:max_inputs])
    if trimmed == list(node.input_values) and not any(a in node.attributes for a in defaults):
        return old_fn(node, graph)
    return old_fn(_rebuilt(node, trimmed, {}, drop=tuple(defaults)), graph)


def reduce_18(node, graph):
    """``Reduce*``-18: the constant ``axes`` input becomes the attribute of the version-13 converter;
    no axes with ``noop_with_empty_axes`` is an identity."""
    from onnx2torch.utils.common import get_const_value
    from torch import nn

    op = node.operation_type
    ins = list(node.input_values)
    axes: list[int] = []
    if len(ins) > 1 and ins[1]:
        try:
            value = get_const_value(ins[1], graph)
        except KeyError:
            raise NotImplementedError(f"{op}: its axes are computed at run time; onnx2torch needs them "
                                      "constant") from None
        axes = [int(a) for a in (value.flatten().tolist() if hasattr(value, "flatten") else list(value))]
    if any(a < 0 for a in axes):
        # onnx2torch's Max/Min/Prod reduce one axis at a time and shift only non-negative ones
        vi = graph.value_info.get(ins[0]) if hasattr(graph, "value_info") else None
        rank = len(vi.type.tensor_type.shape.dim) if vi is not None and vi.type.tensor_type.HasField("shape") else None
        if rank is None:
            if len(axes) > 1:
                raise NotImplementedError(f"{op}: negative axes {axes} need the input's rank, which shape "
                                          "inference does not give")
        else:
            axes = [a + rank if a < 0 else a for a in axes]
    if not axes and int(node.attributes.get("noop_with_empty_axes", 0)):
        return _result(nn.Identity(), _rebuilt(node, ins[:1], {}))
    attrs = {"axes": axes} if axes else {}
    return _older_or_fail(op, 13)(_rebuilt(node, ins[:1], attrs, drop=("noop_with_empty_axes",)), graph)


_SPLIT_CEIL: type | None = None


def _split_ceil() -> type:
    """The module of :func:`split_18` by ``num_outputs`` (built on first use: torch is lazy)."""
    global _SPLIT_CEIL
    if _SPLIT_CEIL is None:
        import torch
        from torch import nn

        class SplitCeil(nn.Module):
            """ONNX Split-18 by ``num_outputs``: chunks of ceil(dim / n), the last one smaller
            (onnx2torch's Split-13 module divides with floor, for even splits only)."""

            def __init__(self, num_outputs: int, axis: int) -> None:
                super().__init__()
                self.num_outputs, self.axis = num_outputs, axis

            def forward(self, x):
                return torch.split(x, -(-x.shape[self.axis] // self.num_outputs), dim=self.axis)

        _SPLIT_CEIL = SplitCeil
    return _SPLIT_CEIL


def split_18(node, graph):
    """``Split``-18: the version-13 converter when sizes are given; by ``num_outputs``, chunks of
    ceil(dim / n), the last one smaller."""
    if len(node.input_values) > 1 and node.input_values[1]:
        return _older_or_fail("Split", 13)(node, graph)  # sizes given: the same as version 13
    n = int(node.attributes.get("num_outputs", len(node.output_values)))
    return _result(_split_ceil()(n, int(node.attributes.get("axis", 0))), node)


def gelu_20(node, graph):
    """``Gelu``-20 as :class:`torch.nn.GELU` (exact, or the tanh approximation)."""
    from torch import nn

    approx = _text(node.attributes.get("approximate", "none"))
    if approx not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu: unknown approximate={approx!r}")
    return _result(nn.GELU(approximate=approx), node)


def layer_norm_17(node, graph):
    """onnx2torch's ``LayerNormalization``-17, except where shape inference left the input's dims
    unknown: there it sized ``nn.LayerNorm`` with 0s or failed; such nodes normalise over the
    input's own trailing dims at run time."""
    from onnx2torch.node_converters.layer_norm import OnnxLayerNorm

    if sum(1 for o in node.output_values if o) > 1:
        raise NotImplementedError("LayerNormalization: its Mean and InvStdDev outputs are not converted")
    original = older("LayerNormalization", 17)
    try:
        result = original(node, graph) if original is not None else None
    except Exception:  # noqa: BLE001 - e.g. no value_info for the input
        result = None
    shape = getattr(getattr(result, "torch_module", None), "normalized_shape", None)
    if result is not None and (shape is None or all(int(d) > 0 for d in shape)):
        return result
    module = OnnxLayerNorm(axis=int(node.attributes.get("axis", -1)), epsilon=float(node.attributes.get("epsilon", 1e-5)))
    return _result(module, node)


#: (op, version, our converter, the onnx2torch version it builds on: it is registered only where
#: onnx2torch has that one).
_TABLE: list[tuple[str, int, Callable, int | None]] = [
    *((op, v, same_when_default, old) for op, (versions, old, _, _) in SAME_WHEN_DEFAULT.items() for v in sorted(versions)),
    *((op, AXES_INPUT[op], reduce_18, 13) for op in REDUCE_18),
    ("Split", 18, split_18, 13),
    ("Gelu", 20, gelu_20, None),
]
#: (op, version) -> our converter, registered where onnx2torch has none.
CONVERTERS: dict[tuple[str, int], Callable] = {(op, v): fn for op, v, fn, _ in _TABLE}
#: (op, version) -> the onnx2torch version the converter of :data:`CONVERTERS` builds on.
BUILDS_ON: dict[tuple[str, int], int] = {(op, v): base for op, v, _, base in _TABLE if base is not None}
#: (op, version) -> our converter, which replaces onnx2torch's own (and calls it: :func:`older`).
REPLACES: dict[tuple[str, int], Callable] = {("LayerNormalization", 17): layer_norm_17}


# ---------------------------------------------------------------------------------------------- patching
def patch() -> list[str]:
    """Register the converters above with onnx2torch where it lacks them (idempotent); return
    what was added (``Op-version``)."""
    with _LOCK:  # the torch backend may be prepared from several threads
        if not _PATCHED:
            _PATCHED.extend(_patch() or ["(nothing to add)"])
        return list(_PATCHED)


def _patch() -> list[str]:
    registry = _registry()

    def has(op: str, version: int) -> bool:
        return _key(op, version) in registry

    added: list[str] = []

    def register(op: str, version: int, fn) -> None:
        if not has(op, version):
            registry[_key(op, version)] = fn
            added.append(f"{op}-{version}")

    for (op, version), fn in CONVERTERS.items():
        base = BUILDS_ON.get((op, version))
        if base is None or has(op, base):
            register(op, version, fn)
    # after ours: ReduceMax-20 is our ReduceMax-18
    for op, (versions, old) in SAME_AS.items():
        if op not in NOT_ALIASED and has(op, old):
            for v in sorted(versions):
                register(op, v, registry[_key(op, old)])
    for (op, version), fn in REPLACES.items():
        own = older(op, version)
        if own is not None and registry.get(_key(op, version)) is own:
            _REPLACED[(op, version)] = own
            registry[_key(op, version)] = fn
            added.append(f"{op}-{version} (unknown dims)")
    return added
