"""Standalone: facts about ONNX op versions that the compatibility layers share.

Frameworks look an ONNX node's implementation up by the op's version at the model's opset, and
their tables stop well before what today's exporters write (opset 17 from TorchScript, 18-21
from dynamo). Most newer versions change nothing an exporter uses, or change it only when a new
attribute or input is given; these tables say which, once, for
:mod:`~mlms_ir.backends.onnx2torch_compat`, :mod:`~mlms_ir.backends.onnx_tf_compat` and
:mod:`~mlms_ir.backends.mxnet_compat`. What a framework does with a fact (which older handler it
reuses, which error it raises) stays in that framework's module.

It imports nothing: the onnx-tf and MXNet compat modules run in those frameworks' own
environments, which have no ``mlms_ir``. They import it from their own folder, so it travels
with them: beside ``agent.py``, and copied beside ``onnx_tf_export.py``
(:func:`mlms_ir.converters.onnx_tf._run_script`).
"""

from __future__ import annotations

#: A value in :data:`SAME_WHEN_DEFAULT`: a list attribute whose entries are all 1 (``dilations``).
ONES = "ones"

#: op -> ({new versions}, the older version they behave as): the new versions only added types
#: (bfloat16, float8, float4, int4, int2, optional), none of which exporters write where these ops
#: run. Opsets 22-28 are mostly such bumps (22: bfloat16 on the float ops; 23-25: float4, float8e8m0,
#: int2 on the shape ops; 28: more types). Where a later version also reworded what it computes,
#: the older computation is the one the new text describes: Mod-28 (``fmod=0`` now allowed on
#: floats: floor division's remainder, the Python ``%`` of the integers it had), Cast-24
#: (``round_mode`` and the saturation of infinities: casts to float8 only). Not here:
#: MaxPool-22 and AveragePool-22, which drop a ceil-mode window that starts in the right padding
#: (earlier versions counted it): the same only for a framework that always dropped it (torch:
#: :data:`mlms_ir.backends.onnx2torch_compat.TORCH_SAME_AS`).
SAME_AS = {
    "Where": ({16}, 9), "LeakyRelu": ({16}, 6), "PRelu": ({16}, 9), "GreaterOrEqual": ({16}, 12),
    "LessOrEqual": ({16}, 12), "Equal": ({19}, 13), "Reshape": ({19, 21, 23, 24, 25}, 14),
    "Shape": ({19, 21, 23, 24, 25}, 15), "ConstantOfShape": ({20, 21, 23, 24, 25}, 9),
    "Cast": ({19, 21, 23, 24, 25, 28}, 13), "Constant": ({19, 21, 23, 24, 25}, 13),
    "Identity": ({19, 21, 23, 24, 25}, 16), "Size": ({19, 21, 23, 24, 25}, 13),
    "Transpose": ({21, 23, 24, 25}, 13), "Flatten": ({21, 23, 24, 25}, 13),
    "IsInf": ({20}, 10), "IsNaN": ({20}, 13), "If": ({16, 19, 21, 23, 24, 25}, 13),
    "Loop": ({16, 19, 21, 23, 24, 25}, 13), "Scan": ({16, 19, 21, 23, 24, 25}, 11),
    "Squeeze": ({21, 23, 24, 25}, 13), "Unsqueeze": ({21, 23, 24, 25}, 13),
    "ReduceMax": ({20}, 18), "ReduceMin": ({20}, 18),  # 20 added bool inputs
    # opset 22: bfloat16
    "Acos": ({22}, 7), "Asin": ({22}, 7), "Atan": ({22}, 7), "Cos": ({22}, 7), "Sin": ({22}, 7), "Tan": ({22}, 7),
    "Conv": ({22}, 11), "ConvTranspose": ({22}, 11), "Dropout": ({22}, 13), "Elu": ({22}, 6), "Selu": ({22}, 6),
    "HardSigmoid": ({22}, 6), "HardSwish": ({22}, 14), "InstanceNormalization": ({22}, 6), "EyeLike": ({22}, 9),
    "GlobalAveragePool": ({22}, 1), "GlobalMaxPool": ({22}, 1), "RoiAlign": ({22}, 16),
    "Round": ({22}, 11), "Softplus": ({22}, 1), "Softsign": ({22}, 1),
    "TopK": ({24}, 11),  # bfloat16
    "Celu": ({28}, 12), "Einsum": ({28}, 12), "DepthToSpace": ({28}, 13), "Mod": ({28}, 13),
    "ReduceLogSum": ({28}, 18), "ReduceLogSumExp": ({28}, 18), "CastLike": ({19, 21, 23, 24, 25}, 15),
}

#: op -> ({new versions}, the older version, {new attribute: the values given that keep the older
#: behaviour (an absent attribute always does; :data:`ONES`: a list of 1s)}, the inputs the older
#: version takes (more are new optional inputs)): the new versions behave as the older one while
#: their new attributes keep these values and no new input is given.
SAME_WHEN_DEFAULT = {
    "AveragePool": ({19}, 11, {"dilations": {ONES}}, 1),
    "ScatterND": ({16, 18}, 13, {"reduction": {"none"}}, 3),
    "ScatterElements": ({16, 18}, 13, {"reduction": {"none"}}, 3),
    "Resize": ({18, 19}, 13, {"antialias": {0}, "axes": set(), "keep_aspect_ratio_policy": {"stretch"}}, 4),
    "Pad": ({18, 19, 21, 23, 24, 25}, 13, {}, 3),  # 18 added the axes input
}

#: op -> {attribute: values a later version added to an attribute the older one had}: an older
#: handler would refuse them or, worse, take them for another (onnx-tf's Resize reads any unknown
#: coordinate mode as half_pixel).
NEW_VALUES = {
    "Resize": {"coordinate_transformation_mode": {"half_pixel_symmetric"}},  # Resize-19
    "Pad": {"mode": {"wrap"}},  # Pad-19
}

#: op -> the version whose ``axes`` attribute became an (optional) input: ReduceSum, Squeeze and
#: Unsqueeze in opset 13, every other reduction in 18.
AXES_INPUT = {
    "Squeeze": 13, "Unsqueeze": 13, "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18,
    "ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18, "ReduceLogSum": 18, "ReduceLogSumExp": 18,
    "ReduceSumSquare": 18,
}
#: The reductions whose ``axes`` became an input in opset 18.
REDUCE_18 = tuple(op for op, version in AXES_INPUT.items() if version == 18)


def keeps_old_behaviour(value, ok) -> bool:
    """Whether an attribute given as ``value`` is one of the values ``ok`` (from
    :data:`SAME_WHEN_DEFAULT`) that keep the older version's behaviour."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (list, tuple)):
        return ONES in ok and all(int(d) == 1 for d in value)
    return value in ok


def new_value(op: str, attrs) -> tuple[str, object] | None:
    """The first (attribute, value) of ``attrs`` (a mapping) that :data:`NEW_VALUES` lists for ``op``."""
    for attr, values in NEW_VALUES.get(op, {}).items():
        value = attrs.get(attr)
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value in values:
            return attr, value
    return None


def unsupported_setting(op: str, attrs, defaults) -> tuple[str, object] | None:
    """The first (attribute, value) of ``attrs`` that an older version's handler cannot honour:
    a ``defaults`` attribute (from :data:`SAME_WHEN_DEFAULT`) set to a value that changes the
    behaviour, or a value :data:`NEW_VALUES` lists for ``op``. None when the older handler computes
    the node as the newer version defines it."""
    for attr, ok in defaults.items():
        value = attrs.get(attr)
        if isinstance(value, bytes):
            value = value.decode()
        if value is not None and not keeps_old_behaviour(value, ok):
            return attr, value
    return new_value(op, attrs)
