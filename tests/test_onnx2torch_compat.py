"""The torch backend on the op versions of opsets 18-21 (``backends/onnx2torch_compat.py``).

Each model runs through the torch backend (onnx2torch) and onnxruntime; every ONNX node must
still become its own submodule (nothing unmapped, no opset conversion), and what onnx2torch
cannot do is one clear error naming the node.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import mlms_ir
from mlms_ir.backends.base import BackendError

pytest.importorskip("onnx2torch", exc_type=ImportError)
from mlms_ir.backends.torch_backend import TorchBackend  # noqa: E402

from op_models import assert_outputs_match, f32, i64, make_model, one_node_feeds, one_node_model, ort_outputs  # noqa: E402

RNG = np.random.default_rng(5)








def opset20_model() -> onnx.ModelProto:
    """ReduceMean-18 (axes input; noop), ReduceMax-20, Gelu-20 (exact, tanh), Shape-19,
    Reshape-19, Equal-19, ConstantOfShape-20, Pad-19, AveragePool-19, ScatterND-18, Split-18 (by
    num_outputs, uneven, and by sizes)."""
    nodes = [
        h.make_node("ReduceMean", ["x", "ax_hw"], ["m"], keepdims=1, name="mean"),
        h.make_node("Sub", ["x", "m"], ["c"], name="centre"),
        h.make_node("ReduceMean", ["c"], ["c_same"], noop_with_empty_axes=1, name="noop"),
        h.make_node("Gelu", ["c_same"], ["g"], name="gelu"),
        h.make_node("Gelu", ["g"], ["gt"], approximate="tanh", name="gelu_tanh"),
        h.make_node("Pad", ["gt", "pads", "pad_value"], ["p"], mode="constant", name="pad"),             # [2,3,6,6]
        h.make_node("AveragePool", ["p"], ["ap"], kernel_shape=[2, 2], strides=[2, 2], dilations=[1, 1], name="pool"),
        h.make_node("ReduceMax", ["ap", "ax_c"], ["mx"], keepdims=0, name="max"),                          # [2,3,3]
        h.make_node("Shape", ["mx"], ["shp"], name="shape"),
        h.make_node("ConstantOfShape", ["shp"], ["ones"], value=f32("one", [1.0]), name="ones"),
        h.make_node("Add", ["mx", "ones"], ["mx1"], name="plus1"),
        h.make_node("Reshape", ["mx1", "flat"], ["r"], name="reshape"),                                    # [2,9]
        h.make_node("Equal", ["r", "r"], ["eq"], name="eq"),
        h.make_node("Cast", ["eq"], ["eqf"], to=T.FLOAT, name="cast"),
        h.make_node("Mul", ["r", "eqf"], ["rm"], name="mul"),
        h.make_node("ScatterND", ["rm", "row", "upd"], ["sc"], name="scatter"),                            # [2,9]
        h.make_node("Split", ["sc"], ["a", "b"], axis=1, num_outputs=2, name="split_n"),                  # 5, 4
        h.make_node("Split", ["sc", "sizes"], ["e", "f"], axis=1, name="split_sizes"),                    # 4, 5
        h.make_node("Concat", ["b", "a", "f", "e"], ["y"], axis=1, name="cat"),                           # [2,18]
    ]
    inits = [i64("ax_hw", [2, 3]), i64("pads", [0, 0, 1, 1, 0, 0, 1, 1]), f32("pad_value", 0.25), i64("ax_c", [1]),
             i64("flat", [2, -1]), i64("row", [[1]]), f32("upd", [np.arange(9) / 9]), i64("sizes", [4, 5])]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 4, 4])],
                  [h.make_tensor_value_info("y", T.FLOAT, [2, 18])], inits, 20)


def opset21_model() -> onnx.ModelProto:
    """Opset 21's type-only versions: Transpose, Unsqueeze, Squeeze, Flatten, Reshape, Shape, Cast."""
    nodes = [
        h.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1], name="transpose"),
        h.make_node("Unsqueeze", ["t", "ax1"], ["u"], name="unsq"),
        h.make_node("Squeeze", ["u", "ax1"], ["s"], name="sq"),
        h.make_node("Flatten", ["s"], ["f"], axis=1, name="flatten"),
        h.make_node("Shape", ["f"], ["shp"], name="shape"),
        h.make_node("Cast", ["shp"], ["shpf"], to=T.FLOAT, name="cast"),
        h.make_node("Reshape", ["f", "back"], ["r"], name="reshape"),
        h.make_node("ReduceSum", ["shpf"], ["n"], keepdims=1, name="count"),
        h.make_node("Add", ["r", "n"], ["y"], name="add"),
    ]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4])], [h.make_tensor_value_info("y", T.FLOAT, [2, 4, 3])],
                  [i64("ax1", [1]), i64("back", [2, 4, 3])], 21)




@pytest.mark.parametrize("make,shape", [(opset20_model, (2, 4, 4, 4)), (opset21_model, (2, 3, 4))], ids=["opset20", "opset21"])
def test_each_node_converts_to_one_submodule_and_matches_onnxruntime(make, shape):
    model = make()
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
    graph = mlms_ir.load(model)
    with TorchBackend().prepare(graph) as s:
        got = s.run(feeds)
        assert s.unmapped == [] and sorted(s.node_mapping) == sorted(n.id for n in graph.nodes)
        assert not any("down to" in r for r in s.rewrites), s.rewrites
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("node,inits,message", [
    (h.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="axes_pad"), [i64("pads", [1, 1]), i64("axes", [1])],
     "op Pad at node 'axes_pad' (Pad): NotImplementedError: Pad: input 4 (axes) is not supported by onnx2torch"),
    (h.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap_pad"), [i64("pads", [0, 1, 0, 1])],
     "op Pad at node 'wrap_pad' (Pad): NotImplementedError: Pad: mode='wrap' is not supported by onnx2torch"),
], ids=["pad-axes", "pad-wrap"])
def test_what_onnx2torch_cannot_do_names_the_node(node, inits, message):
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, [2, 5])],
                   inits, 19)
    with pytest.raises(BackendError) as e:
        TorchBackend().prepare(mlms_ir.load(model))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_dilated_average_pool_is_refused():
    node = h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="dilated")
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 6, 6])],
                   [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 4, 4])], [], 19)
    with pytest.raises(BackendError, match=r"node 'dilated' \(AveragePool\): NotImplementedError: AveragePool: dilations=\[2, 2\] is not supported"):
        TorchBackend().prepare(mlms_ir.load(model))


def test_a_dynamo_exported_transformer_runs_on_torch(dynamo_encoder):
    path, feeds, want = dynamo_encoder
    with TorchBackend().prepare(mlms_ir.load(path)) as s:
        got = s.run(feeds)
        assert s.unmapped == [] and not any("down to" in r for r in s.rewrites)
    assert_outputs_match(got, want, atol=1e-5, rtol=1e-5)


def test_layer_norm_of_a_tensor_whose_shape_inference_cannot_tell():
    """The Reshape target is an input, so nothing after it has a static shape: onnx2torch sized
    nn.LayerNorm from that unknown shape (0s); the node now normalises over its input's own dims."""
    nodes = [h.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
             h.make_node("LayerNormalization", ["r", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5, name="ln")]
    model = make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 8]), h.make_tensor_value_info("shape", T.INT64, [2])],
                       [h.make_tensor_value_info("y", T.FLOAT, [None, None])],
                       [f32("scale", np.linspace(0.5, 1.5, 8)), f32("bias", np.linspace(-1, 1, 8))], 17)
    feeds = {"x": RNG.standard_normal((2, 3, 8)).astype(np.float32), "shape": np.array([6, 8], np.int64)}
    with TorchBackend().prepare(mlms_ir.load(model)) as s:
        got = s.run(feeds)
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "cubic", "nearest"])
def test_resize_19_converts_like_13(mode):
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric" if mode == "nearest" else "half_pixel"}
    if mode == "nearest":
        attrs["nearest_mode"] = "floor"
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attrs)
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 4, 4])], [h.make_tensor_value_info("y", T.FLOAT, [1, 2, 8, 8])],
                       [f32("scales", [1, 1, 2, 2])], 19)
    feeds = {"x": RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)}
    with TorchBackend().prepare(mlms_ir.load(model)) as s:
        got = s.run(feeds)
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


def test_an_antialiased_resize_is_refused():
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="aa", mode="linear", antialias=1)
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 8, 8])], [h.make_tensor_value_info("y", T.FLOAT, [1, 2, 4, 4])],
                       [f32("scales", [1, 1, 0.5, 0.5])], 19)
    with pytest.raises(BackendError, match=r"node 'aa' \(Resize\): NotImplementedError: Resize: antialias=1 is not supported"):
        TorchBackend().prepare(mlms_ir.load(model))


def test_weights_computed_in_the_graph_are_folded():
    from op_models import standardized_conv_model

    model = standardized_conv_model()
    feeds = {"x": RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    graph = mlms_ir.load(model)
    with TorchBackend().prepare(graph) as s:
        got = s.run(feeds)
        assert "folded 8 node(s) that compute weights from initializers" in " | ".join(s.rewrites)
        ids = {n.name: n.id for n in graph.nodes}
        assert sorted(s.unmapped) == sorted(i for name, i in ids.items() if name.startswith("w_"))
        assert ids["conv"] in s.node_mapping
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


def test_reductions_over_negative_axes():
    """onnx2torch's ReduceMax reduces one axis at a time and shifts only non-negative axes: with
    [-2, -1] and keepdims=0 on [N, C, H, W] it reduced H and C. The axes are made non-negative."""
    nodes = [h.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0, name="max_hw"),
             h.make_node("ReduceProd", ["x", "axes"], ["z"], keepdims=0, name="prod_hw")]
    model = make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4, 3])],
                       [h.make_tensor_value_info("y", T.FLOAT, [2, 3]), h.make_tensor_value_info("z", T.FLOAT, [2, 3])],
                       [i64("axes", [-2, -1])], 18)
    feeds = {"x": RNG.uniform(0.5, 1.5, (2, 3, 4, 3)).astype(np.float32)}
    with TorchBackend().prepare(mlms_ir.load(model)) as s:
        got = s.run(feeds)
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


def test_a_resize_torch_computes_differently_is_refused():
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="nearest_half", mode="nearest")  # ONNX defaults
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 3, 3])], [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 4, 4])],
                       [f32("scales", [1, 1, 1.5, 1.5])], 19)
    with pytest.raises(BackendError, match="Resize: nearest with half_pixel and nearest_mode round_prefer_floor is not what"):
        TorchBackend().prepare(mlms_ir.load(model))


# ---------------------------------------------------------------------------------------------- each converter alone
def convert_alone(convert, model: onnx.ModelProto, feeds: dict):
    """``convert`` called on the model's one node as onnx2torch calls a converter, and its module run
    on the inputs its mapping names (initializers from the model): (the result, outputs by name)."""
    import torch
    from onnx import numpy_helper
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.utils.safe_shape_inference import safe_shape_inference

    m = safe_shape_inference(model)
    graph = OnnxGraph(m.graph)
    (node,) = graph.nodes.values()
    result = convert(node, graph)
    values = {**{t.name: numpy_helper.to_array(t) for t in m.graph.initializer}, **feeds}
    args = [torch.from_numpy(np.array(values[n])) if n else None for n in result.onnx_mapping.inputs]
    with torch.inference_mode():
        out = result.torch_module(*args)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return result, {n: o.numpy() for n, o in zip(result.onnx_mapping.outputs, outs)}


X23 = {"x": [2, 3]}
#: name -> (table key, node, graph inputs, initializers, opset, the error it must raise or None)
ALONE = {
    "avgpool19": (("AveragePool", 19), h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[1, 1]),
                  {"x": [1, 2, 4, 4]}, [], 19, None),
    "avgpool19-dilated": (("AveragePool", 19), h.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2]),
                          {"x": [1, 1, 6, 6]}, [], 19, "AveragePool: dilations=[2, 2] is not supported by onnx2torch"),
    "scatternd18": (("ScatterND", 18), h.make_node("ScatterND", ["x", "row", "upd"], ["y"], reduction="none"), X23,
                    [i64("row", [[1]]), f32("upd", [[0.5, 1.5, 2.5]])], 18, None),
    "scatternd18-max": (("ScatterND", 18), h.make_node("ScatterND", ["x", "row", "upd"], ["y"], reduction="max"), X23,
                        [i64("row", [[1]]), f32("upd", [[0.5, 1.5, 2.5]])], 18, "ScatterND: reduction='max' is not supported"),
    "pad18": (("Pad", 18), h.make_node("Pad", ["x", "pads", "value"], ["y"]), X23, [i64("pads", [0, 1, 0, 2]), f32("value", 0.5)],
              18, None),
    "pad19-wrap": (("Pad", 19), h.make_node("Pad", ["x", "pads"], ["y"], mode="wrap"), X23, [i64("pads", [0, 1, 0, 1])], 19,
                   "Pad: mode='wrap' is not supported by onnx2torch"),
    "pad18-axes": (("Pad", 18), h.make_node("Pad", ["x", "pads", "", "axes"], ["y"]), X23, [i64("pads", [1, 1]), i64("axes", [1])],
                   18, "Pad: input 4 (axes) is not supported by onnx2torch"),
    "resize18": (("Resize", 18), h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear"), {"x": [1, 2, 4, 4]},
                 [f32("scales", [1, 1, 2, 2])], 18, None),
    "resize19-symmetric": (("Resize", 19), h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                                                       coordinate_transformation_mode="half_pixel_symmetric"),
                           {"x": [1, 1, 3, 3]}, [f32("scales", [1, 1, 2, 2])], 19,
                           "Resize: coordinate_transformation_mode='half_pixel_symmetric' is not supported by onnx2torch"),
    "reducemean18": (("ReduceMean", 18), h.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1), {"x": [2, 3, 4]},
                     [i64("axes", [-1])], 18, None),
    "reducemax18-negative": (("ReduceMax", 18), h.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0), {"x": [2, 3, 4]},
                             [i64("axes", [-2, -1])], 18, None),
    "reducemean18-noop": (("ReduceMean", 18), h.make_node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1), X23, [], 18, None),
    # computed axes: onnx2torch_ops' module takes them at run time
    "reducel2-18-computed": (("ReduceL2", 18), h.make_node("ReduceL2", ["x", "ax"], ["y"]), {"x": [2, 3], "ax": (T.INT64, [1])}, [], 18,
                             None),
    "split18": (("Split", 18), h.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3), {"x": [2, 11]}, [], 18, None),
    "split18-sizes": (("Split", 18), h.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1), {"x": [2, 5]},
                      [i64("sizes", [2, 3])], 18, None),
    "gelu20": (("Gelu", 20), h.make_node("Gelu", ["x"], ["y"]), X23, [], 20, None),
    "gelu20-tanh": (("Gelu", 20), h.make_node("Gelu", ["x"], ["y"], approximate="tanh"), X23, [], 20, None),
    "layernorm17": (("LayerNormalization", 17), h.make_node("LayerNormalization", ["x", "scale"], ["y"]), {"x": [2, 4]},
                    [f32("scale", [0.5, 1.0, 1.5, 2.0])], 17, None),
    "layernorm17-unknown-dims": (("LayerNormalization", 17), h.make_node("LayerNormalization", ["x", "scale"], ["y"]),
                                 {"x": ["N", "D"]}, [f32("scale", [0.5, 1.0, 1.5, 2.0])], 17, None),
    # onnx2torch's own converters that computed something else (found by tools/conformance.py)
    "cumsum14": (("CumSum", 14), h.make_node("CumSum", ["x", "axis"], ["y"]), X23, [i64("axis", 1)], 14, None),
    "cumsum11-reverse-exclusive": (("CumSum", 11), h.make_node("CumSum", ["x", "axis"], ["y"], reverse=1, exclusive=1), X23,
                                   [i64("axis", -1)], 11, None),
    "isinf10": (("IsInf", 10), h.make_node("IsInf", ["x"], ["y"]), X23, [], 10, None),
    "isinf10-positive": (("IsInf", 10), h.make_node("IsInf", ["x"], ["y"], detect_negative=0), X23, [], 10, None),
    "isinf10-negative": (("IsInf", 10), h.make_node("IsInf", ["x"], ["y"], detect_positive=0), X23, [], 10, None),
    "nonzero13": (("NonZero", 13), h.make_node("NonZero", ["x"], ["y"]), X23, [], 13, None),
    "nonzero9": (("NonZero", 9), h.make_node("NonZero", ["x"], ["y"]), {"x": [2, 2, 2]}, [], 9, None),
    "topk11-ties": (("TopK", 11), h.make_node("TopK", ["x", "k"], ["v", "i"], axis=1), {"x": [2, 5]}, [i64("k", [3])], 11, None),
    "topk10-ties-smallest": (("TopK", 10), h.make_node("TopK", ["x", "k"], ["v", "i"]), {"x": [2, 5]}, [i64("k", [2])], 10, None),
    "nms11-flipped": (("NonMaxSuppression", 11), h.make_node("NonMaxSuppression", ["boxes", "scores", "n", "iou"], ["y"]),
                      {"boxes": [1, 4, 4], "scores": [1, 1, 4]}, [i64("n", [3]), f32("iou", [0.5])], 11, None),
    "nms10-center": (("NonMaxSuppression", 10), h.make_node("NonMaxSuppression", ["boxes", "scores", "n"], ["y"], center_point_box=1),
                     {"boxes": [1, 4, 4], "scores": [1, 1, 4]}, [i64("n", [2])], 10, None),
    "pad13-value": (("Pad", 13), h.make_node("Pad", ["x", "pads", "value"], ["y"]), X23, [i64("pads", [0, 1, 1, 0]), f32("value", 2.5)],
                    13, None),
    "pad11-reflect": (("Pad", 11), h.make_node("Pad", ["x", "pads"], ["y"], mode="reflect"), {"x": [1, 2, 4, 4]},
                      [i64("pads", [0, 0, 1, 1, 0, 0, 1, 1])], 11, None),
    "resize13-linear": (("Resize", 13), h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear"), {"x": [1, 1, 4, 4]},
                        [f32("scales", [1, 1, 0.5, 0.5])], 13, None),
    "resize11-align-corners-fraction": (("Resize", 11), h.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                                                                    coordinate_transformation_mode="align_corners"),
                                        {"x": [1, 1, 2, 4]}, [f32("roi", []), f32("scales", [1, 1, 0.6, 0.6])], 11,
                                        "Resize: linear with align_corners and scales [0.6, 0.6] on [2, 4]: ONNX aligns"),
    "resize13-pytorch-half-pixel-to-1": (("Resize", 13), h.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear",
                                                                     coordinate_transformation_mode="pytorch_half_pixel"),
                                         {"x": [1, 1, 4, 4]}, [i64("sizes", [1, 1, 3, 1])], 13,
                                         "Resize: linear with pytorch_half_pixel to a size of 1 ([3, 1])"),
    "resize13-nearest-half-pixel": (("Resize", 13), h.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest"),
                                    {"x": [1, 1, 2, 2]}, [f32("scales", [1, 1, 2, 2])], 13,
                                    "Resize: nearest with half_pixel and nearest_mode round_prefer_floor is not what"),
    "convtranspose11": (("ConvTranspose", 11), h.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
                        {"x": [1, 2, 3, 3]}, [f32("w", RNG.standard_normal((2, 3, 3, 3)))], 11, None),
    "convtranspose11-output-shape": (("ConvTranspose", 11), h.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[3, 2],
                                                                        output_shape=[10, 8]),
                                     {"x": [1, 1, 3, 3]}, [f32("w", RNG.standard_normal((1, 2, 3, 3)))], 11,
                                     "ConvTranspose: output_shape is not supported by onnx2torch"),
    # ops onnx2torch lacks
    "castlike15": (("CastLike", 15), h.make_node("CastLike", ["x", "like"], ["y"]), X23, [i64("like", [0])], 15, None),
    "size13": (("Size", 13), h.make_node("Size", ["x"], ["y"]), {"x": [2, 3, 4]}, [], 13, None),
    "size1": (("Size", 1), h.make_node("Size", ["x"], ["y"]), X23, [], 11, None),
}
#: case -> feeds other than :func:`one_node_feeds`' normals, where those would not show the difference
FEEDS = {
    "reducel2-18-computed": {"x": np.array([[3, -4, 1], [0, 2, -2]], np.float32), "ax": np.array([-1], np.int64)},
    "isinf10": {"x": np.array([[-np.inf, 0, np.inf], [1, np.nan, -np.inf]], np.float32)},
    "isinf10-positive": {"x": np.array([[-np.inf, 0, np.inf], [1, np.nan, -np.inf]], np.float32)},
    "isinf10-negative": {"x": np.array([[-np.inf, 0, np.inf], [1, np.nan, -np.inf]], np.float32)},
    "nonzero13": {"x": np.array([[1, 0, 2], [0, 3, 0]], np.float32)},
    "nonzero9": {"x": np.array([[[1, 0], [0, 1]], [[0, 0], [2, 0]]], np.float32)},
    "topk11-ties": {"x": np.array([[1, 3, 3, 2, 3], [5, 5, 1, 1, 5]], np.float32)},
    "topk10-ties-smallest": {"x": np.array([[1, 3, 1, 2, 1], [5, 5, 1, 1, 5]], np.float32)},
    # ONNX's flipped-coordinates case: [y1, x1, y2, x2] with either corner first
    "nms11-flipped": {"boxes": np.array([[[1, 1, 0, 0], [0, 0.1, 1, 1.1], [0, 0.9, 1, -0.1], [0, 10, 1, 11]]], np.float32),
                      "scores": np.array([[[0.9, 0.75, 0.6, 0.95]]], np.float32)},
    "nms10-center": {"boxes": np.array([[[0.5, 0.5, 1, 1], [0.5, 0.6, 1, 1], [0.5, 0.4, 1, 1], [0.5, 10.5, 1, 1]]], np.float32),
                     "scores": np.array([[[0.9, 0.75, 0.6, 0.95]]], np.float32)},
}


def test_every_converter_has_a_case_alone():
    from mlms_ir.backends import onnx2torch_compat as compat

    tables = {**compat.CONVERTERS, **compat.REPLACES}
    assert {tables[key] for key, *_ in ALONE.values()} == set(tables.values())


@pytest.mark.parametrize("case", ALONE)
def test_each_converter_alone(case):
    """The converter the table lists for one node, called directly: its module gives onnxruntime's
    outputs, or it raises the one error it must."""
    from mlms_ir.backends import onnx2torch_compat as compat

    key, node, inputs, inits, opset, error = ALONE[case]
    convert = {**compat.CONVERTERS, **compat.REPLACES}[key]
    model = one_node_model(node, inputs, inits, opset)
    feeds = FEEDS.get(case) or one_node_feeds(inputs, RNG, {"N": 2, "D": 4})
    if error is not None:
        with pytest.raises(NotImplementedError, match=re.escape(error)):
            convert_alone(convert, model, feeds)
        return
    result, got = convert_alone(convert, model, feeds)
    assert_outputs_match(got, ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)
    if case == "layernorm17-unknown-dims":  # onnx2torch sized nn.LayerNorm with the unknown dim: 0
        assert type(result.torch_module).__name__ == "OnnxLayerNorm"
    if case == "layernorm17":
        assert type(result.torch_module).__name__ == "LayerNorm"
