"""onnx2torch 1.5 taught the ONNX op versions of opsets 18-21 that today's exporters write.

onnx2torch looks a node's converter up by the op's ``since_version`` at the model's opset, and
its registry stops at about opset 17. PyTorch's dynamo exporter writes opset 18-20, so a ViT or
a ConvNeXt (``Gelu``-20, ``Shape``-19, ``Reshape``-19, ``ReduceMean``-18 ...) had no converter;
the torch backend could convert such a model down with ``onnx.version_converter``, which has no
adapter for ``Gelu`` (it has no version before 20). :func:`patch` registers, where onnx2torch
lacks them, one converter per node, so each ONNX node still becomes one submodule and the
per-node mapping of the torch backend holds:

* versions that only added types (bfloat16, float8, int4): onnx2torch's previous converter
  (:data:`SAME_AS`);
* versions whose new attribute keeps its default: the previous converter, and a clear error
  otherwise (:data:`SAME_WHEN_DEFAULT`: ``AveragePool``-19's ``dilations``, ``ScatterND``-18's
  ``reduction``, ``Pad``-18/19/21 without ``axes`` and not in ``wrap`` mode, ``Resize``-18/19
  without antialiasing, ``axes`` or a new aspect-ratio or coordinate mode);
* every ``Reduce*``-18 (and ``ReduceMax``/``ReduceMin``-20): the ``axes`` input, a constant,
  becomes the attribute the version-13 converter reads;
* ``Split``-18: the version-13 converter when sizes are given, else chunks of ceil(dim / n);
* ``Gelu``-20: :class:`torch.nn.GELU` (exact or tanh);
* ``LayerNormalization``-17 where shape inference left the input's dims unknown: onnx2torch
  sized ``nn.LayerNorm`` with 0s (Hiera failed); such nodes normalise over the input's own
  trailing dims at run time.

Errors do not name the node: the torch backend converts a copy whose nodes are renamed to their
graph ids, and its own message names the node as the user knows it.
"""

from __future__ import annotations

import threading
from typing import Any

#: op -> ({new versions}, the onnx2torch converter version that behaves the same).
SAME_AS = {
    "Equal": ({19}, 13), "Reshape": ({19, 21}, 14), "Shape": ({19, 21}, 15), "ConstantOfShape": ({20, 21}, 9),
    "Cast": ({19, 21}, 13), "Constant": ({19, 21}, 13), "Identity": ({19, 21}, 16), "Transpose": ({21}, 13),
    "Flatten": ({21}, 13), "Squeeze": ({21}, 13), "Unsqueeze": ({21}, 13), "Size": ({19, 21}, 13),
    "Where": ({16}, 9), "LeakyRelu": ({16}, 6), "PRelu": ({16}, 9), "GreaterOrEqual": ({16}, 12),
    "LessOrEqual": ({16}, 12),
}
#: op -> ({new versions}, old version, {attribute: the values the old converter handles ("ones":
#: a list of 1s, "absent": none may be given)}, inputs it takes, attributes it does not know).
SAME_WHEN_DEFAULT = {
    "AveragePool": ({19}, 11, {"dilations": "ones"}, 1, ("dilations",)),
    "ScatterND": ({18}, 16, {"reduction": {"none"}}, 3, ()),
    "ScatterElements": ({18}, 16, {"reduction": {"none"}}, 3, ()),
    "Pad": ({18, 19, 21}, 13, {"mode": {"constant", "reflect", "edge"}}, 3, ()),
    "Resize": ({18, 19}, 13, {"antialias": {0}, "keep_aspect_ratio_policy": {"stretch"}, "axes": "absent",
                              "coordinate_transformation_mode": {"half_pixel", "pytorch_half_pixel", "align_corners",
                                                                 "asymmetric", "tf_crop_and_resize"}},
               4, ("antialias", "keep_aspect_ratio_policy", "axes")),
}
REDUCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
             "ReduceLogSumExp", "ReduceSumSquare")

_PATCHED: list[str] = []
_LOCK = threading.Lock()


def _check_defaults(node, op: str, defaults: dict[str, Any], max_inputs: int) -> None:
    for attr, ok in defaults.items():
        value = node.attributes.get(attr)
        if value is None:
            continue
        value = value.decode() if isinstance(value, bytes) else value
        if ok == "ones" and all(int(d) == 1 for d in value) or isinstance(ok, set) and value in ok:
            continue
        raise NotImplementedError(f"{op}: {attr}={value!r} is not supported by onnx2torch")
    extra = [x for x in node.input_values[max_inputs:] if x]
    if extra:
        raise NotImplementedError(f"{op}: input {max_inputs + 1} ({extra[0]}) is not supported by onnx2torch")


def _check_resize(node) -> None:
    """onnx2torch's Resize computes torch's interpolation and only warns where that is not ONNX's:
    refuse those cases (nearest other than floor/asymmetric, linear or cubic with another
    coordinate mode, another cubic coefficient, exclude_outside, crop-and-resize)."""
    def text(name: str, default: str) -> str:
        v = node.attributes.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

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


def patch() -> list[str]:
    """Register the converters above with onnx2torch where it lacks them (idempotent); return
    what was added (``Op-version``)."""
    with _LOCK:  # the torch backend may be prepared from several threads
        if not _PATCHED:
            _PATCHED.extend(_patch() or ["(nothing to add)"])
        return list(_PATCHED)


def _patch() -> list[str]:
    import onnx
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
    from onnx2torch.onnx_node import OnnxNode
    from onnx2torch.utils.common import OperationConverterResult, get_const_value, onnx_mapping_from_node
    import torch
    from torch import nn

    def has(op: str, version: int) -> bool:
        return OperationDescription("", op, version) in _CONVERTER_REGISTRY

    added: list[str] = []

    def register(op: str, version: int, fn) -> None:
        if not has(op, version):
            _CONVERTER_REGISTRY[OperationDescription("", op, version)] = fn
            added.append(f"{op}-{version}")

    def rebuilt(node, inputs: list[str], attrs: dict[str, Any], drop: tuple[str, ...] = ()):
        """``node`` with other inputs and attributes, under the same unique name (the submodule's)."""
        proto = onnx.NodeProto()
        proto.CopyFrom(node.proto)
        del proto.input[:]
        proto.input.extend(inputs)
        keep = [a for a in proto.attribute if a.name not in drop and a.name not in attrs]
        del proto.attribute[:]
        proto.attribute.extend(keep)
        proto.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())
        return OnnxNode(proto, unique_name=node.unique_name)

    for op, (versions, old) in SAME_AS.items():
        if has(op, old):
            for v in sorted(versions):
                register(op, v, _CONVERTER_REGISTRY[OperationDescription("", op, old)])

    for op, (versions, old, defaults, max_inputs, unknown) in SAME_WHEN_DEFAULT.items():
        if not has(op, old):
            continue
        old_fn = _CONVERTER_REGISTRY[OperationDescription("", op, old)]

        def when_default(node, graph, _old=old_fn, _op=op, _defaults=defaults, _max=max_inputs, _unknown=unknown):
            _check_defaults(node, _op, _defaults, _max)
            if _op == "Resize":
                _check_resize(node)
            trimmed = list(node.input_values[:_max])
            if trimmed == list(node.input_values) and not any(a in node.attributes for a in _unknown):
                return _old(node, graph)
            return _old(rebuilt(node, trimmed, {}, drop=_unknown), graph)

        for v in sorted(versions):
            register(op, v, when_default)

    for op in REDUCE_18:
        if not has(op, 13):
            continue
        old_fn = _CONVERTER_REGISTRY[OperationDescription("", op, 13)]

        def reduce_18(node, graph, _old=old_fn, _op=op):
            ins = list(node.input_values)
            axes: list[int] = []
            if len(ins) > 1 and ins[1]:
                try:
                    value = get_const_value(ins[1], graph)
                except KeyError:
                    raise NotImplementedError(f"{_op}: its axes are computed at run time; onnx2torch needs them "
                                              "constant") from None
                axes = [int(a) for a in (value.flatten().tolist() if hasattr(value, "flatten") else list(value))]
            if any(a < 0 for a in axes):
                # onnx2torch's Max/Min/Prod reduce one axis at a time and shift only non-negative ones
                vi = graph.value_info.get(ins[0]) if hasattr(graph, "value_info") else None
                rank = len(vi.type.tensor_type.shape.dim) if vi is not None and vi.type.tensor_type.HasField("shape") else None
                if rank is None:
                    if len(axes) > 1:
                        raise NotImplementedError(f"{_op}: negative axes {axes} need the input's rank, which shape "
                                                  "inference does not give")
                else:
                    axes = [a + rank if a < 0 else a for a in axes]
            if not axes and int(node.attributes.get("noop_with_empty_axes", 0)):
                return OperationConverterResult(torch_module=nn.Identity(),
                                                onnx_mapping=onnx_mapping_from_node(rebuilt(node, ins[:1], {})))
            attrs = {"axes": axes} if axes else {}
            return _old(rebuilt(node, ins[:1], attrs, drop=("noop_with_empty_axes",)), graph)

        register(op, 18, reduce_18)
        if op in ("ReduceMax", "ReduceMin"):
            register(op, 20, reduce_18)  # 20 only added bool inputs

    if has("Split", 13):
        split_13 = _CONVERTER_REGISTRY[OperationDescription("", "Split", 13)]

        class SplitCeil(nn.Module):
            """ONNX Split-18 by ``num_outputs``: chunks of ceil(dim / n), the last one smaller
            (onnx2torch's Split-13 module divides with floor, for even splits only)."""

            def __init__(self, num_outputs: int, axis: int) -> None:
                super().__init__()
                self.num_outputs, self.axis = num_outputs, axis

            def forward(self, x):
                return torch.split(x, -(-x.shape[self.axis] // self.num_outputs), dim=self.axis)

        def split_18(node, graph):
            if len(node.input_values) > 1 and node.input_values[1]:
                return split_13(node, graph)  # sizes given: the same as version 13
            n = int(node.attributes.get("num_outputs", len(node.output_values)))
            return OperationConverterResult(torch_module=SplitCeil(n, int(node.attributes.get("axis", 0))),
                                            onnx_mapping=onnx_mapping_from_node(node))

        register("Split", 18, split_18)

    ln_key = OperationDescription("", "LayerNormalization", 17)
    if ln_key in _CONVERTER_REGISTRY and not getattr(_CONVERTER_REGISTRY[ln_key], "mlms_ir_wrapped", False):
        from onnx2torch.node_converters.layer_norm import OnnxLayerNorm

        original_ln = _CONVERTER_REGISTRY[ln_key]

        def layer_norm_17(node, graph):
            if sum(1 for o in node.output_values if o) > 1:
                raise NotImplementedError("LayerNormalization: its Mean and InvStdDev outputs are not converted")
            # onnx2torch sizes nn.LayerNorm from the input's inferred shape; where inference left a
            # dim unknown it reads 0 (Hiera: "normalized_shape = [0]") or fails: normalise over the
            # input's own trailing dims at run time instead
            try:
                result = original_ln(node, graph)
            except Exception:  # noqa: BLE001 - e.g. no value_info for the input
                result = None
            shape = getattr(getattr(result, "torch_module", None), "normalized_shape", None)
            if result is not None and (shape is None or all(int(d) > 0 for d in shape)):
                return result
            module = OnnxLayerNorm(axis=int(node.attributes.get("axis", -1)), epsilon=float(node.attributes.get("epsilon", 1e-5)))
            return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

        layer_norm_17.mlms_ir_wrapped = True
        _CONVERTER_REGISTRY[ln_key] = layer_norm_17
        added.append("LayerNormalization-17 (unknown dims)")

    def gelu_20(node, graph):
        approx = node.attributes.get("approximate", "none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        if approx not in ("none", "tanh"):
            raise NotImplementedError(f"Gelu: unknown approximate={approx!r}")
        return OperationConverterResult(torch_module=nn.GELU(approximate=approx), onnx_mapping=onnx_mapping_from_node(node))

    register("Gelu", 20, gelu_20)
    return added
