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

Some of onnx2torch's own converters compute something else than ONNX (found by ONNX's node test
cases, ``tools/conformance.py``); :data:`REPLACES` swaps in ours, which fix them or refuse what
torch cannot compute: ``CumSum`` (onnx2torch reversed by default), ``IsInf`` (it ignored
``detect_positive``/``detect_negative``), ``NonZero`` (it returned the indices transposed),
``TopK`` (ties in torch's order: ONNX takes the lower index first), ``NonMaxSuppression``
(boxes whose corners come in the other order), ``Pad`` (a constant value given as an input was
ignored), ``Resize`` (settings where torch's interpolation is not ONNX's are refused, some of
them only at run time, when the scales and sizes are known), ``ConvTranspose`` (``output_shape``,
which it ignored, is refused). ``CastLike`` and ``Size``, which
onnx2torch lacks and function bodies use, are ours too (:func:`cast_like`, :func:`size`); the
other ops it lacks entirely (Attention, RMSNormalization, the losses, Trilu, BitShift, LSTM ...)
and the replacements of its Flatten, Dropout, Clip, Conv, ConvTranspose, Reshape, DepthToSpace,
pooling and unsigned elementwise converters are in :mod:`~mlms_ir.backends.onnx2torch_ops`,
registered here too.

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
NOT_ALIASED = ("IsNaN",)

#: op -> ({new versions}, the older version): versions whose change torch's op has always computed,
#: so onnx2torch's older converter is right for them (a fact about torch, not about every framework,
#: hence not in :data:`~mlms_ir.backends.onnx_versions.SAME_AS`): MaxPool-22 drops a ceil-mode
#: window that starts in the right padding, as torch's pooling does (AveragePool-22 too: :data:`CONVERTERS`).
TORCH_SAME_AS = {"MaxPool": ({22}, 12)}

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
    old_fn = REPLACES.get((op, old)) or _older_or_fail(op, old)
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
        except KeyError:  # computed at run time: onnx2torch reads constants only
            from mlms_ir.backends.onnx2torch_ops import reduce_computed_axes

            return reduce_computed_axes(node, graph)
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


_MODULES: dict[str, type] = {}


def _module(name: str) -> type:
    """Our torch module class ``name`` (the classes are built on first use: torch is lazy)."""
    if not _MODULES:
        _MODULES.update(_build_modules())
    return _MODULES[name]


def _build_modules() -> dict[str, type]:
    import math

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

    class IsInf(nn.Module):
        """ONNX IsInf: +inf where ``detect_positive``, -inf where ``detect_negative``."""

        def __init__(self, detect_positive: bool, detect_negative: bool) -> None:
            super().__init__()
            self.detect_positive, self.detect_negative = detect_positive, detect_negative

        def forward(self, x):
            if self.detect_positive and self.detect_negative:
                return torch.isinf(x)
            if self.detect_positive:
                return torch.isposinf(x)
            if self.detect_negative:
                return torch.isneginf(x)
            return torch.zeros_like(x, dtype=torch.bool)

    class NonZero(nn.Module):
        """ONNX NonZero: the indices as [rank, count] (torch.nonzero gives [count, rank])."""

        def forward(self, x):
            return torch.nonzero(x).transpose(0, 1)

    class TopK(nn.Module):
        """ONNX TopK: among equal values the lower index comes first (a stable sort; torch.topk
        orders ties as it likes)."""

        def __init__(self, axis: int, largest: bool) -> None:
            super().__init__()
            self.axis, self.largest = axis, largest

        def forward(self, x, k):
            k = int(k.reshape(-1)[0])
            values, indices = torch.sort(x, dim=self.axis, descending=self.largest, stable=True)
            return values.narrow(self.axis, 0, k), indices.narrow(self.axis, 0, k)

    class CornersInOrder(nn.Module):
        """NonMaxSuppression's boxes with each corner pair in order (ONNX lets a box give its
        corners either way round; torchvision's nms takes min corner first): then onnx2torch's module."""

        def __init__(self, inner: nn.Module, center_point_box: bool) -> None:
            super().__init__()
            self.inner, self.center_point_box = inner, center_point_box

        # onnx2torch passes inputs after a skipped one by these names
        def forward(self, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None, score_threshold=None):
            if not self.center_point_box:
                a, b = boxes[..., :2], boxes[..., 2:]
                boxes = torch.cat([torch.minimum(a, b), torch.maximum(a, b)], dim=-1)
            return self.inner(boxes, scores, max_output_boxes_per_class=max_output_boxes_per_class,
                              iou_threshold=iou_threshold, score_threshold=score_threshold)

    class PadValue(nn.Module):
        """ONNX Pad with its constant value as an input (onnx2torch's dynamic Pad passed the tensor
        where torch takes a number, and padded with 0)."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, pads, value=None):
            if value is None or value.numel() == 0:
                return self.inner(x, pads)
            return self.inner(x, pads, value.reshape(-1)[0].item())

    class CheckedResize(nn.Module):
        """onnx2torch's Resize module, after a check of what is known only at run time: where
        the scales or sizes make torch's interpolation differ from ONNX's, it raises."""

        def __init__(self, inner: nn.Module, mode: str, coordinates: str) -> None:
            super().__init__()
            self.inner, self.mode, self.coordinates = inner, mode, coordinates

        # onnx2torch passes inputs after a skipped one by these names
        def forward(self, input_tensor, roi=None, scales=None, sizes=None):
            x = input_tensor
            if self.mode != "nearest":
                spatial = list(x.shape[2:])
                if sizes is not None and sizes.numel():
                    out = [int(v) for v in sizes.reshape(-1).tolist()[2:]]
                elif scales is not None and scales.numel():
                    factors = [float(v) for v in scales.reshape(-1).tolist()[2:]]
                    exact = [n * f for n, f in zip(spatial, factors)]
                    out = [math.floor(e) for e in exact]
                    if self.coordinates == "align_corners" and any(e - o > 1e-5 * max(1.0, e) for e, o in zip(exact, out)):
                        raise NotImplementedError(
                            f"Resize: {self.mode} with align_corners and scales {[float(f'{f:.6g}') for f in factors]} on "
                            f"{spatial}: ONNX aligns the unrounded sizes, torch's interpolation the rounded ones")
                else:
                    out = spatial
                if self.coordinates == "pytorch_half_pixel" and 1 in out:
                    raise NotImplementedError(f"Resize: {self.mode} with pytorch_half_pixel to a size of 1 ({out}): ONNX "
                                              "takes the first pixel, torch's interpolation the centre")
            return self.inner(x, roi=roi, scales=scales, sizes=sizes)

    class CastLike(nn.Module):
        """ONNX CastLike: the first input in the second one's dtype."""

        def forward(self, x, like):
            return x.to(like.dtype)

    class Size(nn.Module):
        """ONNX Size: the element count, an int64 scalar."""

        def forward(self, x):
            return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)

    return {cls.__name__: cls for cls in (SplitCeil, IsInf, NonZero, TopK, CornersInOrder, PadValue, CheckedResize, CastLike,
                                          Size)}


def split_18(node, graph):
    """``Split``-18: the version-13 converter when sizes are given; by ``num_outputs``, chunks of
    ceil(dim / n), the last one smaller."""
    if len(node.input_values) > 1 and node.input_values[1]:
        return _older_or_fail("Split", 13)(node, graph)  # sizes given: the same as version 13
    n = int(node.attributes.get("num_outputs", len(node.output_values)))
    return _result(_module("SplitCeil")(n, int(node.attributes.get("axis", 0))), node)


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

    if sum(1 for o in node.output_values if o) > 1:  # with Mean and InvStdDev: onnx2torch_ops' module
        from mlms_ir.backends.onnx2torch_ops import layer_normalization

        return layer_normalization(node, graph)
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


def cumsum(node, graph):
    """``CumSum``-11/14 with ONNX's defaults (onnx2torch read an absent ``reverse`` as 1)."""
    from onnx2torch.node_converters.cumsum import OnnxCumSum

    attrs = node.attributes
    return _result(OnnxCumSum(bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))), node)


def is_inf(node, graph):
    """``IsInf``-10/20 honouring ``detect_positive`` and ``detect_negative`` (onnx2torch ignored both)."""
    attrs = node.attributes
    return _result(_module("IsInf")(bool(attrs.get("detect_positive", 1)), bool(attrs.get("detect_negative", 1))), node)


def non_zero(node, graph):
    """``NonZero``-9/13: the indices as [rank, count] (onnx2torch returned them as [count, rank])."""
    return _result(_module("NonZero")(), node)


def top_k(node, graph):
    """``TopK``-10/11/24 by a stable sort: among equal values the lower index first, as ONNX says
    (onnx2torch's ``torch.topk`` orders ties as it likes)."""
    attrs = node.attributes
    return _result(_module("TopK")(int(attrs.get("axis", -1)), bool(attrs.get("largest", 1))), node)


def non_max_suppression(node, graph):
    """``NonMaxSuppression``-10/11: onnx2torch's, on boxes whose corners are put in order first
    (ONNX lets each box give them either way round; torchvision's nms assumes min corner first)."""
    result = _older_or_fail("NonMaxSuppression", 11)(node, graph)
    center = bool(node.attributes.get("center_point_box", 0))
    return _result(_module("CornersInOrder")(result.torch_module, center), node)


def pad(node, graph):
    """``Pad``-11/13: onnx2torch's, with the constant value (an input since version 11) passed
    as the number torch pads with (it padded with 0)."""
    result = _older_or_fail("Pad", 13)(node, graph)
    if len(node.input_values) < 3 or not node.input_values[2]:
        return result
    return _result(_module("PadValue")(result.torch_module), node)


def resize(node, graph):
    """``Resize``-11/13 (and 18/19 through :func:`same_when_default`): onnx2torch's, where torch's
    interpolation computes what ONNX defines; the rest is refused (:func:`_check_resize`), and
    what depends on the scales or sizes is checked at run time."""
    _check_resize(node)
    result = _older_or_fail("Resize", 13)(node, graph)
    mode = _text(node.attributes.get("mode", "nearest"))
    coords = _text(node.attributes.get("coordinate_transformation_mode", "half_pixel"))
    return _result(_module("CheckedResize")(result.torch_module, mode, coords), node)


def conv_transpose(node, graph):
    """``ConvTranspose``-1/11: onnx2torch's, except with ``output_shape``, which it ignored (the
    output had the size the pads give)."""
    if "output_shape" in node.attributes:
        raise NotImplementedError("ConvTranspose: output_shape is not supported by onnx2torch (it sizes the output "
                                  "from pads and output_padding)")
    return _older_or_fail("ConvTranspose", 11)(node, graph)


def cast_like(node, graph):
    """``CastLike``-15 (onnx2torch has none): a cast to the second input's dtype, known at run time."""
    return _result(_module("CastLike")(), node)


def size(node, graph):
    """``Size``-1/13 (onnx2torch has none): the element count as an int64 scalar."""
    return _result(_module("Size")(), node)


#: (op, version, our converter, the onnx2torch version it builds on: it is registered only where
#: onnx2torch has that one).
_TABLE: list[tuple[str, int, Callable, int | None]] = [
    *((op, v, same_when_default, old) for op, (versions, old, _, _) in SAME_WHEN_DEFAULT.items() for v in sorted(versions)),
    *((op, AXES_INPUT[op], reduce_18, 13) for op in REDUCE_18),
    ("AveragePool", 22, same_when_default, 11),  # as 19, and torch drops windows in the right padding (TORCH_SAME_AS)
    ("Split", 18, split_18, 13),
    ("Gelu", 20, gelu_20, None),
    ("NonZero", 9, non_zero, None),
    ("CastLike", 15, cast_like, None),
    ("Size", 1, size, None),
    ("Size", 13, size, None),
]
#: (op, version) -> our converter, registered where onnx2torch has none.
CONVERTERS: dict[tuple[str, int], Callable] = {(op, v): fn for op, v, fn, _ in _TABLE}
#: (op, version) -> the onnx2torch version the converter of :data:`CONVERTERS` builds on.
BUILDS_ON: dict[tuple[str, int], int] = {(op, v): base for op, v, _, base in _TABLE if base is not None}
#: (op, version) -> our converter, which replaces onnx2torch's own (and may call it: :func:`older`).
REPLACES: dict[tuple[str, int], Callable] = {
    ("LayerNormalization", 17): layer_norm_17, ("CumSum", 11): cumsum, ("CumSum", 14): cumsum, ("IsInf", 10): is_inf,
    ("NonZero", 13): non_zero, ("TopK", 10): top_k, ("TopK", 11): top_k, ("NonMaxSuppression", 10): non_max_suppression,
    ("NonMaxSuppression", 11): non_max_suppression, ("Pad", 11): pad, ("Pad", 13): pad, ("Resize", 11): resize,
    ("Resize", 13): resize, ("ConvTranspose", 1): conv_transpose, ("ConvTranspose", 11): conv_transpose,
}
#: What each replacement fixes, for :func:`patch`'s list.
REPLACES_WHY = {layer_norm_17: "unknown dims", cumsum: "reverse defaults to 0", is_inf: "detect_positive/negative",
                non_zero: "[rank, count]", top_k: "ties: lower index first", non_max_suppression: "corners in either order",
                pad: "the constant value input", resize: "settings torch computes differently refused",
                conv_transpose: "output_shape refused"}


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

    # first: the aliases below and our converters then build on the replacements (TopK-24 is our TopK-11)
    for (op, version), fn in REPLACES.items():
        own = older(op, version)
        if own is not None and registry.get(_key(op, version)) is own:
            _REPLACED[(op, version)] = own
            registry[_key(op, version)] = fn
            added.append(f"{op}-{version} ({REPLACES_WHY[fn]})")
    for (op, version), fn in CONVERTERS.items():
        base = BUILDS_ON.get((op, version))
        if base is None or has(op, base):
            register(op, version, fn)
    from mlms_ir.backends.onnx2torch_ops import OWN, REPLACING, converters as lacking  # ops onnx2torch lacks or gets wrong

    for (op, version), fn in lacking().items():
        register(op, version, fn)
    for (op, version), fn in REPLACING.items():  # onnx2torch's own that compute something else
        own = registry.get(_key(op, version))
        if own is not None and own is not fn:
            OWN.setdefault((op, version), own)  # what ours build on (onnx2torch's, or one of ours above)
            registry[_key(op, version)] = fn
            added.append(f"{op}-{version} (onnx2torch_ops)")
    # after ours: ReduceMax-20 is our ReduceMax-18
    for op, (versions, old) in [*SAME_AS.items(), *TORCH_SAME_AS.items()]:
        if op not in NOT_ALIASED and has(op, old):
            for v in sorted(versions):
                register(op, v, registry[_key(op, old)])
    return added
