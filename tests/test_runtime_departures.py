"""Where a runtime computes an op differently from ONNX's definition (onnx's node test cases, which
``tools/conformance.py`` runs), mlms_ir fixes the result or refuses exactly that configuration:

- ``ort`` and ``ort-isolated`` refuse Attention's ``qk_matmul_output`` in the settings onnxruntime
  writes differently, MaxUnpool with an ``output_shape`` other than the default one, and Resize with
  ``align_corners`` where input length x scale is not a whole number, and MaxPool with SAME padding
  and dilations (onnxruntime pads for the undilated kernel) (``mlms_ir.backends.ort.DEPARTURES``);
  nearby settings still run and agree with ``onnx.reference``;
- ``ort`` gives ``float8e4m3fn`` outputs as ``ml_dtypes.float8_e4m3fn``, not as onnxruntime's uint8 bits;
- the ``reference`` backend stacks Loop's scan outputs on a new axis (onnx 1.23's evaluator
  ``vstack``\\ s them: scalars came back (n, 1), Range's function body among them).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.base import BackendError
from mlms_ir.backends.ort import DEPARTURES, departures

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset: int = 19) -> onnx.ModelProto:
    g = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _vi(name: str, elem: int = T.FLOAT, shape=None):
    return h.make_tensor_value_info(name, elem, shape)


def _graph(model: onnx.ModelProto):
    return mlms_ir.load(model.SerializeToString())


def _reference(model: onnx.ModelProto, feeds: dict) -> dict:
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in model.graph.output]
    return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))


def _agrees(model: onnx.ModelProto, feeds: dict, backend: str = "ort") -> None:
    """The backend runs the model and agrees with onnx.reference."""
    expected = _reference(model, feeds)
    with registry.get(backend).prepare(_graph(model), "cpu") as s:
        got = s.run(feeds)
    for name, e in expected.items():
        assert got[name].shape == e.shape, name
        np.testing.assert_allclose(got[name], e, atol=1e-5, rtol=1e-3, err_msg=name)


def _refused(model: onnx.ModelProto, feeds: dict, *, at: str, backend: str = "ort") -> str:
    """The one-line message the backend refuses the model with, at ``prepare`` or at ``run``."""
    graph = _graph(model)
    if at == "prepare":
        with pytest.raises(BackendError) as info:
            registry.get(backend).prepare(graph, "cpu")
    else:
        with registry.get(backend).prepare(graph, "cpu") as s, pytest.raises(BackendError) as info:
            s.run(feeds)
    message = str(info.value)
    assert "\n" not in message and "refused" in message, message
    return message


# ---------------------------------------------------------------------------------------------- Resize
def resize(mode: str = "linear", coords: str = "align_corners", *, scales=None, sizes=None, fed: bool = True,
           **attrs) -> tuple[onnx.ModelProto, dict]:
    """Resize of a (1, 1, 4, 5) input by ``scales`` or ``sizes``: fed as inputs, or initializers."""
    x = RNG.standard_normal((1, 1, 4, 5)).astype(np.float32)
    name, value = ("scales", np.array(scales, np.float32)) if scales is not None else ("sizes", np.array(sizes, np.int64))
    ins = ["X", "", name] if scales is not None else ["X", "", "", name]
    node = h.make_node("Resize", ins, ["Y"], mode=mode, coordinate_transformation_mode=coords, **attrs)
    inputs = [_vi("X", T.FLOAT, [1, 1, 4, 5])]
    feeds = {"X": x}
    if fed:
        inputs.append(_vi(name, T.FLOAT if scales is not None else T.INT64, [len(value)]))
        feeds[name] = value
        inits = []
    else:
        inits = [numpy_helper.from_array(value, name)]
    return _model([node], inputs, [_vi("Y")], inits), feeds


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_align_corners_with_a_fractional_output_length_is_refused_before_the_run(mode):
    model, feeds = resize(mode, scales=[1, 1, 0.6, 0.6])
    message = _refused(model, feeds, at="run")
    assert "Resize" in message and "align_corners" in message and "axis 2" in message and "x scale = 2.4" in message, message


def test_resize_align_corners_with_constant_fractional_scales_is_refused_when_prepared():
    model, feeds = resize("cubic", scales=[1, 1, 0.8, 0.8], fed=False)
    assert "input length x scale = 3.2" in _refused(model, feeds, at="prepare")


def test_resize_align_corners_keeping_the_aspect_ratio_is_refused():
    model, feeds = resize("linear", sizes=[3, 3], axes=[2, 3], keep_aspect_ratio_policy="not_larger")
    _refused(model, feeds, at="run")


def test_resize_align_corners_with_scales_computed_in_the_model_is_refused_when_prepared():
    x = RNG.standard_normal((1, 1, 4, 5)).astype(np.float32)
    nodes = [h.make_node("Mul", ["s", "two"], ["scales"]),
             h.make_node("Resize", ["X", "", "scales"], ["Y"], mode="linear", coordinate_transformation_mode="align_corners")]
    model = _model(nodes, [_vi("X", T.FLOAT, [1, 1, 4, 5]), _vi("s", T.FLOAT, [4])], [_vi("Y")],
                   [numpy_helper.from_array(np.array(2, np.float32), "two")])
    message = _refused(model, {"X": x, "s": np.array([0.5, 0.5, 0.3, 0.3], np.float32)}, at="prepare")
    assert "'scales' is computed inside the model" in message, message


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("case", [
    dict(scales=[1, 1, 2, 2]),                  # whole scales: whole output lengths
    dict(scales=[1, 1, 0.5, 1.6]),              # 4 x 0.5 = 2, 5 x 1.6 = 8
    dict(scales=[1, 1, 0.3, 0.25]),             # fractional, but one output element (at 0 either way)
    dict(sizes=[1, 1, 3, 2]),                   # sizes stretch: the lengths asked for
    dict(coords="half_pixel", scales=[1, 1, 0.6, 0.6]),  # another coordinate mode
])
def test_resize_settings_onnxruntime_computes_as_onnx_still_run(mode, case):
    model, feeds = resize(mode, **case)
    _agrees(model, feeds)


# ---------------------------------------------------------------------------------------------- MaxUnpool
def maxunpool(output_shape=None) -> tuple[onnx.ModelProto, dict]:
    x = np.array([[[[5, 6], [7, 8]]]], np.float32)
    idx = np.array([[[[5, 7], [13, 15]]]], np.int64)
    ins, inputs, feeds = ["x", "i"], [_vi("x", T.FLOAT, [1, 1, 2, 2]), _vi("i", T.INT64, [1, 1, 2, 2])], {"x": x, "i": idx}
    if output_shape is not None:
        ins.append("shape")
        inputs.append(_vi("shape", T.INT64, [4]))
        feeds["shape"] = np.array(output_shape, np.int64)
    node = h.make_node("MaxUnpool", ins, ["y"], kernel_shape=[2, 2], strides=[2, 2])
    return _model([node], inputs, [_vi("y")], opset=22), feeds


def test_maxunpool_with_a_larger_output_shape_is_refused():
    model, feeds = maxunpool([1, 1, 5, 5])
    message = _refused(model, feeds, at="run")
    assert "MaxUnpool" in message and "[1, 1, 5, 5]" in message and "[1, 1, 4, 4]" in message, message


@pytest.mark.parametrize("output_shape", [None, [1, 1, 4, 4]])
def test_maxunpool_into_the_default_shape_still_runs(output_shape):
    model, feeds = maxunpool(output_shape)
    _agrees(model, feeds)


# ---------------------------------------------------------------------------------------------- MaxPool
def maxpool(auto_pad: str, dilations=(1, 1), strides=(1, 1)) -> tuple[onnx.ModelProto, dict]:
    node = h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], auto_pad=auto_pad, dilations=list(dilations),
                       strides=list(strides))
    return _model([node], [_vi("x", T.FLOAT, [1, 1, 6, 5])], [_vi("y")], opset=12), {"x": RNG.standard_normal((1, 1, 6, 5)).astype(np.float32)}


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_maxpool_same_with_dilations_is_refused(auto_pad):
    model, feeds = maxpool(auto_pad, dilations=(2, 2))
    message = _refused(model, feeds, at="prepare")
    assert "MaxPool" in message and auto_pad in message and "dilations [2, 2]" in message, message


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_maxpool_same_without_dilations_still_runs(auto_pad):
    model, feeds = maxpool(auto_pad, strides=(2, 2) if auto_pad == "SAME_UPPER" else (1, 1))
    _agrees(model, feeds)


# ---------------------------------------------------------------------------------------------- Attention
def attention(mode: int, *, causal: int = 0, mask: str | None = None, softcap: float = 0.0,
              qk: bool = True) -> tuple[onnx.ModelProto, dict]:
    feeds = {"Q": RNG.standard_normal((2, 3, 4, 8)).astype(np.float32),
             "K": RNG.standard_normal((2, 3, 6, 8)).astype(np.float32),
             "V": RNG.standard_normal((2, 3, 6, 8)).astype(np.float32)}
    if mask == "float":
        feeds["attn_mask"] = RNG.standard_normal((4, 6)).astype(np.float32)
    elif mask == "bool":
        feeds["attn_mask"] = RNG.random((4, 6)) > 0.3
    attrs = {"is_causal": causal, "qk_matmul_output_mode": mode}
    if softcap:
        attrs["softcap"] = softcap
    outs = ["Y", "", "", "qk"] if qk else ["Y"]
    node = h.make_node("Attention", list(feeds), outs, **attrs)
    inputs = [_vi(k, T.BOOL if v.dtype == bool else T.FLOAT, list(v.shape)) for k, v in feeds.items()]
    return _model([node], inputs, [_vi(o) for o in outs if o], opset=23), feeds


@pytest.mark.parametrize("setting, words", [
    (dict(mode=2, causal=1), "is_causal=1"),
    (dict(mode=2, causal=1, mask="float"), "is_causal=1"),
    (dict(mode=2, mask="bool"), "a boolean attn_mask"),
    (dict(mode=0, softcap=2.0), "before the softcap"),
])
def test_attention_qk_matmul_output_onnxruntime_writes_differently_is_refused(setting, words):
    model, feeds = attention(**setting)
    message = _refused(model, feeds, at="prepare")
    assert "Attention" in message and "qk_matmul_output" in message and words in message, message


@pytest.mark.parametrize("setting", [
    dict(mode=2, mask="float"),             # a float mask is added as given
    dict(mode=2, causal=1, qk=False),       # Y alone: onnxruntime agrees
    dict(mode=1, causal=1, softcap=2.0),
    dict(mode=3, causal=1, mask="bool"),
    dict(mode=0, causal=1),
])
def test_attention_settings_onnxruntime_computes_as_onnx_still_run(setting):
    model, feeds = attention(**setting)
    _agrees(model, feeds)


# ---------------------------------------------------------------------------------------------- both ort backends
def test_ort_isolated_refuses_and_runs_the_same():
    model, feeds = resize("linear", scales=[1, 1, 0.6, 0.6])
    assert "align_corners" in _refused(model, feeds, at="run", backend="ort-isolated")
    model, feeds = attention(2, causal=1)
    assert "is_causal=1" in _refused(model, feeds, at="prepare", backend="ort-isolated")
    model, feeds = resize("linear", scales=[1, 1, 2, 2])
    _agrees(model, feeds, backend="ort-isolated")


def test_the_departures_of_a_model_without_them_check_nothing():
    model, _ = resize("linear", coords="half_pixel", scales=[1, 1, 0.6, 0.6])
    assert not departures(_graph(model))
    model, _ = resize("linear", scales=[1, 1, 0.6, 0.6])
    assert departures(_graph(model))  # fed scales: checked before each run
    assert set(DEPARTURES) == {"Attention", "MaxPool", "MaxUnpool", "Resize"}


# ---------------------------------------------------------------------------------------------- float8
@pytest.mark.parametrize("backend", ["ort", "ort-isolated"])
def test_float8e4m3fn_outputs_come_back_as_float8_not_as_their_bits(backend):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.array([0.5, -1.75, 3.0, 448.0, 1e-3], np.float32)
    node = h.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E4M3FN)
    model = _model([node], [_vi("x", T.FLOAT, [5])], [_vi("y", T.FLOAT8E4M3FN, [5])])
    with registry.get(backend).prepare(_graph(model), "cpu") as s:
        got = s.run({"x": x})["y"]
    assert got.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(got.astype(np.float32), x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32))


# ---------------------------------------------------------------------------------------------- reference Loop
@pytest.mark.parametrize("shape", [[], [3], [2, 3]])
def test_the_reference_backend_stacks_loop_scan_outputs_as_onnxruntime(shape):
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["x_in", "one"], ["x_out"]),
         h.make_node("Identity", ["x_out"], ["scan"])],
        "body",
        [_vi("i", T.INT64, []), _vi("cond_in", T.BOOL, []), _vi("x_in", T.FLOAT, shape)],
        [_vi("cond_out", T.BOOL, []), _vi("x_out", T.FLOAT, shape), _vi("scan", T.FLOAT, shape)],
        [numpy_helper.from_array(np.array(1, np.float32), "one")])
    loop = h.make_node("Loop", ["M", "c", "x0"], ["xf", "ys"], body=body)
    model = _model([loop], [_vi("M", T.INT64, []), _vi("c", T.BOOL, []), _vi("x0", T.FLOAT, shape)],
                   [_vi("xf", T.FLOAT, shape), _vi("ys", T.FLOAT, None)], opset=16)
    feeds = {"M": np.array(4, np.int64), "c": np.array(True), "x0": np.zeros(shape, np.float32)}
    with registry.get("reference").prepare(_graph(model), "cpu") as s:
        got = s.run(feeds)["ys"]
    assert got.shape == (4, *shape)
    np.testing.assert_array_equal(got, np.stack([np.full(shape, k + 1, np.float32) for k in range(4)]))
    with registry.get("ort").prepare(_graph(model), "cpu") as s:
        np.testing.assert_array_equal(s.run(feeds)["ys"], got)


def test_the_reference_backend_runs_range_s_function_body_to_shape_n():
    """Range-11's function body (a Loop whose scan output is a scalar) as a graph, as onnx's
    ``test_range_*_expanded`` cases run it: 1, 3 (not [[1], [3]])."""
    body = onnx.defs.get_schema("Range", 11).function_body
    model = _model(list(body.node), [_vi(n, T.FLOAT, []) for n in body.input], [_vi(body.output[0], T.FLOAT, None)], opset=11)
    feeds = {"start": np.array(1, np.float32), "limit": np.array(5, np.float32), "delta": np.array(2, np.float32)}
    with registry.get("reference").prepare(_graph(model), "cpu") as s:
        got = s.run(feeds)[body.output[0]]
    np.testing.assert_array_equal(got, np.array([1, 3], np.float32))
    assert got.shape == (2,)
