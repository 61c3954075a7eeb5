"""MXNet 1.9's ONNX importer taught what today's exporters write (``backends/mxnet_compat.py``).

:func:`prepare` rewrites the ONNX model (it needs only onnx and numpy, so it is tested in the core
environment: the rewritten model must give onnxruntime the same outputs). The op translations run
in MXNet's agent environment (``bash tools/make_agent_envs.sh mxnet``); those tests skip without
it, except under CI, which creates it first.
"""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from mlms_ir.backends import mxnet_compat
from mlms_ir.backends.base import BackendError
from mlms_ir.backends.worker import MXNetBackend

from conftest import agent_backend
from compat_harness import check_alone, run_alone
from op_models import assert_outputs_match, f32, i64, make_model, ort_outputs, worker_outputs

RNG = np.random.default_rng(11)








def shape_model() -> onnx.ModelProto:
    """What dynamo writes around a dynamic batch: Shape -> Gather (0-d index) -> Unsqueeze ->
    Concat -> Reshape; a Constant; a 0-d Gather on data (a class token); Where and Expand whose
    operands have fewer dims than their results."""
    nodes = [
        h.make_node("Shape", ["x"], ["shp"], name="shape"),
        h.make_node("Gather", ["shp", "zero_i"], ["batch"], axis=0, name="batch"),
        h.make_node("Unsqueeze", ["batch", "ax0"], ["batch1"], name="unsq"),
        h.make_node("Constant", [], ["rest"], value=i64("rest_v", [-1]), name="const"),
        h.make_node("Concat", ["batch1", "rest"], ["target"], axis=0, name="concat"),
        h.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),                      # [2, 24]
        h.make_node("Gather", ["x", "zero_i"], ["first"], axis=1, name="token"),                # [2, 6]
        h.make_node("Greater", ["first", "bias6"], ["gt"], name="gt"),
        h.make_node("Where", ["gt", "first", "neg"], ["w"], name="where"),                      # neg is 0-d
        h.make_node("ReduceMean", ["x", "ax01"], ["row6"], keepdims=0, name="rowmean"),           # [6]
        h.make_node("Expand", ["row6", "shape26"], ["e"], name="expand"),                       # [6] -> [2, 6]
        h.make_node("Add", ["w", "e"], ["y"], name="add"),
    ]
    inits = [i64("zero_i", 0), i64("ax0", [0]), f32("bias6", np.linspace(-1, 1, 6)), f32("neg", -5.0),
             i64("ax01", [0, 1]), i64("shape26", [2, 6])]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 4, 6])],
                      [h.make_tensor_value_info("flat", T.FLOAT, ["N", None]), h.make_tensor_value_info("y", T.FLOAT, [2, 6])],
                      inits, 20)


def ops_model() -> onnx.ModelProto:
    """Every translation the module adds, at opset 20 with static shapes."""
    nodes = [
        h.make_node("ReduceMean", ["x", "ax_last"], ["m"], name="mean"),                         # keepdims unset: 1
        h.make_node("Sub", ["x", "m"], ["c"], name="centre"),
        h.make_node("LayerNormalization", ["c", "g", "b"], ["ln"], axis=-1, epsilon=1e-5, name="ln"),
        h.make_node("MatMul", ["ln", "w"], ["mm"], name="linear"),                               # [2,5,8]@[8,12]
        h.make_node("Split", ["mm", "sizes"], ["s0", "s1", "s2"], axis=2, name="split_uneven"),   # 6, 4, 2
        h.make_node("Gelu", ["s0"], ["g0"], name="gelu"),
        h.make_node("Gelu", ["s1"], ["g1"], approximate="tanh", name="gelu_tanh"),
        h.make_node("HardSwish", ["s2"], ["g2"], name="hswish"),
        h.make_node("Concat", ["g0", "g1", "g2"], ["cat"], axis=2, name="cat"),                   # [2,5,12]
        h.make_node("Split", ["cat"], ["h0", "h1"], axis=2, num_outputs=2, name="split_even"),    # 6, 6
        h.make_node("Erf", ["h1"], ["erf"], name="erf"),
        h.make_node("Mul", ["h0", "erf"], ["p"], name="mul"),
        h.make_node("Unsqueeze", ["p", "ax_1"], ["pu"], name="unsq"),                           # [2,1,5,6]
        h.make_node("Squeeze", ["pu", "ax_1"], ["ps"], name="sq"),
        h.make_node("Slice", ["ps", "st", "en", "sax", "step"], ["sl"], name="slice"),            # [2,5,3]: 0::2
        h.make_node("Gather", ["sl", "idx"], ["ga"], axis=1, name="gather_neg"),                  # [2,2,3]
        h.make_node("ReduceSum", ["ga", "ax_1"], ["y"], keepdims=0, name="sum"),                  # [2,3]
        h.make_node("Split", ["x"], ["xa", "xb", "xc"], axis=2, num_outputs=3, name="split_ceil"),  # 3, 3, 2
        h.make_node("Concat", ["xc", "xa", "xb"], ["xs"], axis=2, name="cat_back"),
        h.make_node("ReduceMean", ["x"], ["xn"], noop_with_empty_axes=1, name="noop_no_axes"),   # x itself
    ]
    inits = [i64("ax_last", [-1]), f32("g", np.linspace(0.5, 1.5, 8)), f32("b", np.linspace(-0.2, 0.2, 8)),
             f32("w", RNG.standard_normal((8, 12)) * 0.5), i64("sizes", [6, 4, 2]), i64("ax_1", [1]),
             i64("st", [np.iinfo(np.int64).min]), i64("en", [np.iinfo(np.int64).max]), i64("sax", [2]), i64("step", [2]),
             i64("idx", [-1, 0])]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 5, 8])],
                      [h.make_tensor_value_info("y", T.FLOAT, [2, 3]), h.make_tensor_value_info("xs", T.FLOAT, [2, 5, 8]),
                       h.make_tensor_value_info("xn", T.FLOAT, [2, 5, 8])], inits, 20)




# ---------------------------------------------------------------------------- prepare (always)
def test_prepare_folds_shape_arithmetic_and_keeps_the_results():
    model = shape_model()
    feeds = {"x": RNG.standard_normal((2, 4, 6)).astype(np.float32)}
    want = ort_outputs(model, feeds)
    done = mxnet_compat.prepare(model, {"x": (2, 4, 6)})
    # Shape, the batch Gather, Unsqueeze, Concat and the Constant are folded (Reshape keeps a constant
    # target); the token Gather on data is split in two; Where's 0-d operand and Expand's 1-d input get
    # the result's rank through a Reshape, and the one of the 0-d initializer is folded in the next pass
    assert [n.name for n in model.graph.node] == ["reshape", "token/gather", "token/squeeze", "gt", "where", "rowmean",
                                                 "expand/rank0", "expand", "add"]
    assert done == {"constants": 1, "folded": 5, "scalar_gathers": 1, "rank_fixes": 2}
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 4, 6]
    onnx.checker.check_model(model)
    assert_outputs_match(ort_outputs(model, feeds), want, atol=0, rtol=0)


def test_prepare_without_shapes_only_moves_constants():
    model = shape_model()
    feeds = {"x": RNG.standard_normal((2, 4, 6)).astype(np.float32)}
    want = ort_outputs(model, feeds)
    done = mxnet_compat.prepare(model)
    assert done == {"constants": 1, "folded": 0, "scalar_gathers": 2}  # the batch Gather stays and is split too
    assert "Shape" in [n.op_type for n in model.graph.node]
    assert_outputs_match(ort_outputs(model, feeds), want, atol=0, rtol=0)  # the batch is still read at run time


def test_prepare_keeps_the_opset_of_squeeze():
    x = h.make_tensor_value_info("x", T.FLOAT, [3, 4])
    m = make_model([h.make_node("Gather", ["x", "i"], ["y"], axis=1, name="g")], [x],
               [h.make_tensor_value_info("y", T.FLOAT, [3])], [i64("i", 2)], opset=11)
    feeds = {"x": RNG.standard_normal((3, 4)).astype(np.float32)}
    want = ort_outputs(m, feeds)
    mxnet_compat.prepare(m, {"x": (3, 4)})
    sq = next(n for n in m.graph.node if n.op_type == "Squeeze")
    assert len(sq.input) == 1 and sq.attribute[0].name == "axes"  # opset 11: axes is an attribute
    assert_outputs_match(ort_outputs(m, feeds), want, atol=0, rtol=0)


def test_prepare_tells_the_translations_the_shapes_and_types_they_need():
    """Hardmax and ArgMax/ArgMin get their input's shape, a Div of integers says so (the
    translations need them; MXNet's symbols do not carry them)."""
    nodes = [N("Hardmax", ["x"], ["h"], name="hm"), N("ArgMax", ["x"], ["a"], select_last_index=1, name="am"),
             N("Cast", ["x"], ["xi"], to=T.INT32, name="c"), N("Div", ["xi", "two"], ["q"], name="int_div"),
             N("Div", ["x", "half"], ["f"], name="float_div")]
    inits = [onnx.numpy_helper.from_array(np.array(2, np.int32), "two"), f32("half", 0.5)]
    m = make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                   [h.make_tensor_value_info(n, t, shp) for n, t, shp in (("h", T.FLOAT, ["N", 4]), ("a", T.INT64, [1, 4]),
                                                                          ("q", T.INT32, ["N", 4]), ("f", T.FLOAT, ["N", 4]))], inits, 13)
    mxnet_compat.prepare(m, {"x": (3, 4)})
    attrs = {n.name: {a.name: h.get_attribute_value(a) for a in n.attribute} for n in m.graph.node}
    assert attrs["hm"][mxnet_compat.INPUT_SHAPE_ATTR] == [3, 4]
    assert attrs["am"][mxnet_compat.INPUT_SHAPE_ATTR] == [3, 4]
    assert attrs["int_div"][mxnet_compat.INTEGER_ATTR] == 1
    assert mxnet_compat.INTEGER_ATTR not in attrs["float_div"]


def test_the_module_imports_nothing_of_mlms_ir_or_mxnet():
    from pathlib import Path

    import ast

    tree = ast.parse(Path(mxnet_compat.__file__).read_text())
    top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert sorted(top) == ["__future__", "functools"]  # the rest is imported inside the functions, in the framework's env
    # and the shared facts, from the package or from the module's own folder (beside agent.py)
    tried = [n for t in tree.body if isinstance(t, ast.Try) for part in (t.body, *[h.body for h in t.handlers])
             for n in part if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, n.level) for n in tried] == [("onnx_versions", 1), ("onnx_versions", 0)]


# ---------------------------------------------------------------------------- MXNet (needs the env)
@pytest.fixture(scope="module")
def mxnet():
    return agent_backend(MXNetBackend)


def pool_model() -> onnx.ModelProto:
    """Pooling as exporters write it: padded averages that do not count the padding (ONNX's
    default; PoolFormer, EfficientFormer), ceil_mode, uneven pads, and one that counts them."""
    nodes = [
        h.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], name="avg_same"),
        h.make_node("AveragePool", ["x"], ["b"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                    name="avg_ceil"),
        h.make_node("AveragePool", ["x"], ["c"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], name="avg_uneven"),
        h.make_node("AveragePool", ["x"], ["d"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1,
                    name="avg_uneven_counted"),
        h.make_node("MaxPool", ["x"], ["e"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, name="max_ceil"),
        h.make_node("MaxPool", ["x"], ["f"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0], name="max_uneven"),
        # the last window would start in the right padding: ONNX drops it (5 -> 4), MXNet's "full" keeps it
        h.make_node("AveragePool", ["x"], ["g"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                    name="avg_ceil_drop"),
        h.make_node("MaxPool", ["x"], ["i"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                    name="max_ceil_drop"),
    ]
    # g, i: onnxruntime and ONNX's reference evaluator give 4x4; ONNX 1.23's shape inference says 5x5
    shapes = {"a": [1, 2, 7, 7], "b": [1, 2, 4, 4], "c": [1, 2, 4, 4], "d": [1, 2, 4, 4], "e": [1, 2, 3, 3], "f": [1, 2, 4, 4],
              "g": [1, 2, None, None], "i": [1, 2, None, None]}
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 7, 7])],
                      [h.make_tensor_value_info(k, T.FLOAT, v) for k, v in shapes.items()], [], 20)


@pytest.mark.parametrize("make,x_shape", [(shape_model, (2, 4, 6)), (ops_model, (2, 5, 8)), (pool_model, (1, 2, 7, 7))],
                         ids=["shapes", "ops", "pools"])
def test_translations_match_onnxruntime(mxnet, make, x_shape, tmp_path):
    model = make()
    feeds = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    assert_outputs_match(worker_outputs(mxnet, model, feeds, tmp_path), ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


def test_what_onnx_node_cases_found_matches_onnxruntime(mxnet, tmp_path):
    """Through the agent (the harness cannot bind integer inputs or auxiliary states): a Div of
    integers truncates toward zero and comes back int32 as declared; BatchNormalization without
    epsilon uses ONNX's 1e-5 (MXNet's default is 1e-3), its mean and variance fed as inputs too
    (MXNet's auxiliary states); inputs without a common batch size (broadcasting); an input the
    model does not read."""
    nodes = [N("Div", ["a", "b"], ["q"], name="int_div"),
             N("BatchNormalization", ["x", "s", "bias", "m", "v"], ["y"], name="bn"),
             N("BatchNormalization", ["x", "s", "bias", "fm", "fv"], ["y2"], name="bn_fed"),
             N("Add", ["x", "row"], ["z"], name="bcast")]
    inits = [f32("s", [0.5, 1.0, 2.0]), f32("bias", [0.0, 0.1, -0.1]), f32("m", [0.1, 0.0, -0.2]), f32("v", [0.01, 0.002, 1.0])]
    vi = h.make_tensor_value_info
    model = make_model(nodes, [vi("a", T.INT32, [2, 3]), vi("b", T.INT32, [2, 3]), vi("x", T.FLOAT, [2, 3, 4, 4]),
                               vi("fm", T.FLOAT, [3]), vi("fv", T.FLOAT, [3]), vi("row", T.FLOAT, [4]), vi("unused", T.FLOAT, [5])],
                       [vi("q", T.INT32, [2, 3]), vi("y", T.FLOAT, [2, 3, 4, 4]), vi("y2", T.FLOAT, [2, 3, 4, 4]),
                        vi("z", T.FLOAT, [2, 3, 4, 4])], inits, 15)
    feeds = {"a": np.array([[7, -7, 5], [-9, 8, 1]], np.int32), "b": np.array([[2, 2, -3], [4, 3, 2]], np.int32),
             "x": RNG.standard_normal((2, 3, 4, 4)).astype(np.float32), "fm": np.array([0.2, -0.1, 0.0], np.float32),
             "fv": np.array([0.5, 0.02, 2.0], np.float32), "row": np.arange(4, dtype=np.float32),
             "unused": np.zeros(5, np.float32)}
    got, want = worker_outputs(mxnet, model, feeds, tmp_path), ort_outputs(model, feeds)
    assert got["q"].dtype == np.int32 and got["q"].tolist() == want["q"].tolist() == [[3, -3, -1], [-2, 2, 0]]
    assert_outputs_match(got, want, atol=1e-5, rtol=1e-5)


def test_weights_computed_in_the_graph_are_folded_for_mxnet(mxnet, tmp_path):
    from op_models import standardized_conv_model

    model = standardized_conv_model()
    feeds = {"x": RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    assert_outputs_match(worker_outputs(mxnet, model, feeds, tmp_path), ort_outputs(model, feeds), atol=1e-5, rtol=1e-5)


def test_an_op_mxnet_lacks_after_an_omitted_input_is_named(mxnet, tmp_path):
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="linear")
    model = make_model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 4, 4])], [h.make_tensor_value_info("y", T.FLOAT, [1, 2, 8, 8])],
                       [f32("scales", [1, 1, 2, 2])], 19)
    with pytest.raises(BackendError, match="NotImplementedError: Operator Resize not implemented"):
        worker_outputs(mxnet, model, {"x": np.ones((1, 2, 4, 4), np.float32)}, tmp_path)


def test_axes_computed_at_run_time_are_one_clear_line(mxnet, tmp_path):
    model = make_model([h.make_node("ReduceMean", ["x", "axes"], ["y"], name="dyn_mean")],
                       [h.make_tensor_value_info("x", T.FLOAT, [2, 3]), h.make_tensor_value_info("axes", T.INT64, [1])],
                       [h.make_tensor_value_info("y", T.FLOAT, [2, 1])], [], 20)
    with pytest.raises(BackendError) as e:
        worker_outputs(mxnet, model, {"x": np.ones((2, 3), np.float32), "axes": np.array([1], np.int64)}, tmp_path)
    assert "ReduceMean: its axes ('axes') are computed at run time" in str(e.value) and "\n" not in str(e.value)


def test_a_dynamo_exported_transformer_runs_on_mxnet(mxnet, dynamo_encoder):
    """A real exporter's output: torch's dynamo export of a Transformer encoder layer (conftest)."""
    path, feeds, want = dynamo_encoder
    assert_outputs_match(worker_outputs(mxnet, path, feeds), want, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------- each translation alone (needs the env)
N = h.make_node
INT64_MAX = 2**63 - 1
#: name -> (node, graph inputs (name -> shape, or (type, shape)), initializers, opset, the error it must give or None)
ALONE = {
    "reducemean18": (N("ReduceMean", ["x", "axes"], ["y"], name="m"), {"x": [2, 3, 4]}, [i64("axes", [-1])], 18, None),
    "unsqueeze13": (N("Unsqueeze", ["x", "axes"], ["y"], name="u"), {"x": [2, 3]}, [i64("axes", [0])], 13, None),
    "reducesum13-noop": (N("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1, name="s"), {"x": [2, 3]}, [], 13, None),
    "reducemean18-computed": (N("ReduceMean", ["x", "axes"], ["y"], name="m"), {"x": [2, 3], "axes": (T.INT64, [1])}, [], 18,
                              "ReduceMean: its axes ('axes') are computed at run time"),
    "split18-uneven": (N("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3, name="s"), {"x": [2, 11]}, [], 18, None),
    "split13-sizes": (N("Split", ["x", "sizes"], ["a", "b"], axis=1, name="s"), {"x": [2, 5]}, [i64("sizes", [2, 3])], 13, None),
    "hardswish": (N("HardSwish", ["x"], ["y"], name="hs"), {"x": [2, 3]}, [], 14, None),
    "gelu20": (N("Gelu", ["x"], ["y"], name="g"), {"x": [2, 3]}, [], 20, None),
    "gelu20-tanh": (N("Gelu", ["x"], ["y"], approximate="tanh", name="g"), {"x": [2, 3]}, [], 20, None),
    "erf": (N("Erf", ["x"], ["y"], name="e"), {"x": [2, 3]}, [], 13, None),
    "layernorm17": (N("LayerNormalization", ["x", "scale", "bias"], ["y"], epsilon=1e-5, name="ln"), {"x": [2, 3, 4]},
                    [f32("scale", [0.5, 1.0, 1.5, 2.0]), f32("bias", [0.0, 0.1, 0.2, 0.3])], 17, None),
    "layernorm17-axis1": (N("LayerNormalization", ["x", "scale"], ["y"], axis=1, name="ln"), {"x": [2, 3, 4]},
                          [f32("scale", np.ones((3, 4)))], 17, "LayerNormalization over axis 1"),
    "where16": (N("Where", ["cond", "x", "z"], ["y"], name="w"), {"x": [2, 3], "z": [2, 3]},
                [onnx.numpy_helper.from_array(np.array([[True, False, True], [False, True, False]]), "cond")], 16, None),
    "expand13": (N("Expand", ["x", "shape"], ["y"], name="e"), {"x": [1, 3]}, [i64("shape", [2, 3])], 13, None),
    "matmul13": (N("MatMul", ["x", "w"], ["y"], name="mm"), {"x": [2, 3, 4]}, [f32("w", np.linspace(-1, 1, 20).reshape(4, 5))], 13,
                 None),
    "avgpool-padded": (N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], name="ap"),
                       {"x": [1, 1, 5, 5]}, [], 17, None),
    "avgpool-uneven": (N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], name="ap"),
                       {"x": [1, 1, 5, 5]}, [], 17, None),
    "maxpool-ceil": (N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, name="mp"), {"x": [1, 1, 5, 5]},
                     [], 17, None),
    "conv-no-kernel-shape": (N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="c"), {"x": [1, 2, 5, 5]},
                             [f32("w", np.linspace(-1, 1, 54).reshape(3, 2, 3, 3))], 13, None),
    "gemm-no-bias": (N("Gemm", ["x", "w"], ["y"], transB=1, alpha=2.0, name="gm"), {"x": [2, 3]},
                     [f32("w", np.linspace(-1, 1, 12).reshape(4, 3))], 13, None),
    "gather-negative": (N("Gather", ["x", "idx"], ["y"], axis=0, name="ga"), {"x": [4, 3]}, [i64("idx", [-1, 0])], 13, None),
    "slice-to-the-end": (N("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"], name="sl"), {"x": [3, 6]},
                         [i64("starts", [1]), i64("ends", [INT64_MAX]), i64("axes", [1]), i64("steps", [2])], 13, None),
    # found by ONNX's node cases (tools/conformance.py)
    "cast19-saturate": (N("Cast", ["x"], ["y"], to=T.FLOAT16, saturate=1, name="c"), {"x": [2, 3]}, [], 19, None),
    "cast19-to-bfloat16": (N("Cast", ["x"], ["y"], to=T.BFLOAT16, name="c"), {"x": [2, 3]}, [], 19,
                           "Cast to BFLOAT16: MXNet 1.9 has no such type"),
    "div": (N("Div", ["x", "d"], ["y"], name="d"), {"x": [2, 3]}, [f32("d", [[2, -3, 1], [-2, 4, 3]])], 13, None),
    "argmax-last-index": (N("ArgMax", ["x"], ["y"], axis=1, keepdims=0, select_last_index=1, name="a"), {"x": [3, 4]}, [], 13,
                          None),
    "argmin-last-index": (N("ArgMin", ["x"], ["y"], axis=-1, select_last_index=1, name="a"), {"x": [2, 3, 4]}, [], 13, None),
    "hardmax13-axis1": (N("Hardmax", ["x"], ["y"], axis=1, name="h"), {"x": [2, 3, 4]}, [], 13, None),
    "hardmax11-axis1": (N("Hardmax", ["x"], ["y"], axis=1, name="h"), {"x": [2, 3, 4]}, [], 11, None),
    "lpnorm-l1-axis0": (N("LpNormalization", ["x"], ["y"], axis=0, p=1, name="n"), {"x": [3, 4]}, [], 13, None),
    "lppool-pads": (N("LpPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], p=3, name="lp"), {"x": [1, 2, 5, 5]}, [],
                    18, None),
    "lppool-dilations": (N("LpPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="lp"), {"x": [1, 1, 6, 6]}, [],
                         18, "LpPool with dilations [2, 2] is not translated for MXNet"),
    "lrn-default-bias": (N("LRN", ["x"], ["y"], size=3, name="l"), {"x": [1, 5, 3, 3]}, [], 13, None),
    "batchnorm-training": (N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1, name="bn"),
                           {"x": [2, 3, 4, 4]}, [f32("s", [1, 1, 1]), f32("b", [0, 0, 0]), f32("m", [0, 0, 0]), f32("v", [1, 1, 1])],
                           15, "BatchNormalization with training_mode=1 is not translated for MXNet"),
}


@pytest.fixture(scope="module")
def alone(mxnet, tmp_path_factory):
    """Every case of :data:`ALONE` run once in MXNet's environment (tests/compat_harness.py)."""
    return run_alone(mxnet.python()[0], "mxnet", ALONE, RNG, tmp_path_factory.mktemp("alone"))


def test_every_translation_has_a_case_alone():
    def func(fn):
        return getattr(fn, "func", fn)  # axes_from_input, pool and conv serve several ops

    covered = {func(mxnet_compat.TRANSLATIONS[node.op_type]) for node, *_ in ALONE.values()}
    assert covered == {func(fn) for fn in mxnet_compat.TRANSLATIONS.values()}


@pytest.mark.parametrize("case", ALONE)
def test_each_translation_alone(alone, case):
    """The translation mxnet_compat's table lists for one node, called directly (after prepare, no
    patch): its symbol gives onnxruntime's outputs, or it raises the one error it must."""
    check_alone(alone, ALONE, case, atol=1e-5)
