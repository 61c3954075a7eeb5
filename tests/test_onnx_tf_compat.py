"""onnx-tf 1.10 with the op versions it lacks (``backends/onnx_tf_compat.py``).

The models use every op version the compat module adds or aliases that today's exporters write
(opset 17 from TorchScript, 18-20 from dynamo), and run on the onnx-tf worker backend against
onnxruntime. Refusals (a mode onnx-tf cannot do, axes computed at run time) must be one clear
line. The framework tests need the onnx-tf agent environment (``bash tools/make_agent_envs.sh
onnx-tf``): they skip without it, except under CI, which creates it first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from mlms_ir.backends import onnx_tf_compat
from mlms_ir.backends.base import BackendError
from mlms_ir.backends.worker import OnnxTfBackend

from conftest import agent_backend
from compat_harness import check_alone, run_alone
from op_models import assert_outputs_match, f32, i64, make_model, ort_outputs, worker_outputs

RNG = np.random.default_rng(7)








def opset17_model() -> onnx.ModelProto:
    """TorchScript-era versions: LayerNormalization-17 with all three outputs, Squeeze/Unsqueeze-13
    (negative, several and no axes), the opset-16 versions of LeakyRelu, PRelu, Where and the
    ordered comparisons, and ReduceL2-13 over two axes (onnx-tf's own handler took a matrix norm)."""
    nodes = [
        h.make_node("LayerNormalization", ["x", "scale", "bias"], ["ln", "mean", "inv"], axis=-1, epsilon=1e-5, name="ln"),
        h.make_node("Unsqueeze", ["ln", "ax_u"], ["u"], name="unsq"),          # [N,6,8] -> [N,1,6,8,1]
        h.make_node("Squeeze", ["u", "ax_u"], ["s"], name="sq"),               # back to [N,6,8]
        h.make_node("Unsqueeze", ["s", "ax_0"], ["u1"], name="unsq1"),         # [1,N,6,8]
        h.make_node("Squeeze", ["u1"], ["s1"], name="sq_all"),                 # no axes: every 1-dim (N=2 stays)
        h.make_node("LeakyRelu", ["s1"], ["lr"], alpha=0.1, name="lrelu"),
        h.make_node("PRelu", ["lr", "slope"], ["pr"], name="prelu"),
        h.make_node("GreaterOrEqual", ["pr", "zero"], ["ge"], name="ge"),
        h.make_node("LessOrEqual", ["pr", "zero"], ["le"], name="le"),
        h.make_node("Where", ["ge", "pr", "zero"], ["pos"], name="where"),
        h.make_node("Cast", ["le"], ["le_f"], to=T.FLOAT, name="cast"),
        h.make_node("Add", ["pos", "le_f"], ["y"], name="add"),
        h.make_node("ReduceL2", ["x"], ["l2"], axes=[1, 2], keepdims=1, name="l2_two_axes"),  # version 13: axes attribute
    ]
    inits = [f32("scale", np.linspace(0.5, 1.5, 8)), f32("bias", np.linspace(-1, 1, 8)), i64("ax_u", [-1, 1]),
             i64("ax_0", [0]), f32("slope", [0.25]), f32("zero", 0.0)]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 6, 8])],
                  [h.make_tensor_value_info("y", T.FLOAT, [2, 6, 8]), h.make_tensor_value_info("mean", T.FLOAT, [2, 6, 1]),
                   h.make_tensor_value_info("inv", T.FLOAT, [2, 6, 1]), h.make_tensor_value_info("l2", T.FLOAT, [2, 1, 1])],
                      inits, 17)


def opset20_model() -> onnx.ModelProto:
    """dynamo-era versions: Reduce*-18 with axes inputs (and noop_with_empty_axes), Pad-18 with
    axes, Split-18 with num_outputs (uneven), Gelu-20 (exact and tanh), Mish-18, Shape-19,
    ConstantOfShape-20, Reshape-19, Equal-19 and ScatterND-18."""
    nodes = [
        h.make_node("ReduceMean", ["x", "ax_last"], ["m"], keepdims=1, name="mean"),
        h.make_node("Sub", ["x", "m"], ["c"], name="centre"),
        h.make_node("Pad", ["c", "pads", "pad_value", "ax_last"], ["p"], mode="constant", name="pad"),  # [2,6,11]
        h.make_node("Split", ["p"], ["s0", "s1", "s2"], axis=2, num_outputs=3, name="split"),          # 4, 4, 3
        h.make_node("Gelu", ["s0"], ["g0"], name="gelu"),
        h.make_node("Gelu", ["s1"], ["g1"], approximate="tanh", name="gelu_tanh"),
        h.make_node("Mish", ["s2"], ["g2"], name="mish"),
        h.make_node("Concat", ["g0", "g1", "g2"], ["cat"], axis=2, name="cat"),
        h.make_node("ReduceMean", ["cat"], ["same"], noop_with_empty_axes=1, name="noop"),
        h.make_node("ReduceMax", ["same", "ax_1"], ["mx"], keepdims=0, name="max"),                    # [2,11]
        h.make_node("ReduceSumSquare", ["same"], ["ss"], keepdims=0, name="sumsq_all"),                # no axes: all
        h.make_node("ReduceL2", ["x", "ax_12"], ["l2"], keepdims=1, name="l2_two_axes"),              # [2,1,1]
        h.make_node("ReduceL1", ["x", "ax_12"], ["l1"], keepdims=0, name="l1_two_axes"),              # [2]
        h.make_node("Pad", ["x", "pads", "", "ax_last"], ["pz"], name="pad_no_value"),              # [2,6,11], zeros
        h.make_node("Shape", ["x"], ["shp"], name="shape"),
        h.make_node("ConstantOfShape", ["shp"], ["ones"], value=f32("one", [1.0]), name="ones"),
        h.make_node("Reshape", ["ones", "flat"], ["ones2"], name="reshape"),                           # [2,48]
        h.make_node("ReduceSum", ["ones2", "ax_1"], ["n"], keepdims=1, name="count"),                  # [2,1] = 48
        h.make_node("Equal", ["n", "fortyeight"], ["is48"], name="eq"),
        h.make_node("Where", ["is48", "mx", "zero"], ["w"], name="where"),
        h.make_node("ScatterND", ["w", "row0", "upd"], ["y"], name="scatter"),
    ]
    inits = [i64("ax_last", [-1]), i64("pads", [1, 2]), f32("pad_value", 0.5), i64("ax_1", [1]), i64("flat", [2, -1]),
             f32("fortyeight", 48.0), i64("ax_12", [1, 2]), f32("zero", 0.0), i64("row0", [[0]]), f32("upd", [np.arange(11) / 10])]
    return make_model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [2, 6, 8])],
                  [h.make_tensor_value_info("y", T.FLOAT, [2, 11]), h.make_tensor_value_info("ss", T.FLOAT, []),
                       h.make_tensor_value_info("l2", T.FLOAT, [2, 1, 1]), h.make_tensor_value_info("l1", T.FLOAT, [2]),
                       h.make_tensor_value_info("pz", T.FLOAT, [2, 6, 11])], inits, 20)


def refused_models() -> dict[str, tuple[onnx.ModelProto, str]]:
    """Models the compat module must refuse, with the message each must give."""
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    wrap = make_model([h.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap_pad")], [x],
                  [h.make_tensor_value_info("y", T.FLOAT, [2, 5])], [i64("pads", [0, 1, 0, 1])], 19)
    dyn = make_model([h.make_node("Squeeze", ["x", "axes"], ["y"], name="dyn_squeeze")],
                 [h.make_tensor_value_info("x", T.FLOAT, [2, 1]), h.make_tensor_value_info("axes", T.INT64, [1])],
                 [h.make_tensor_value_info("y", T.FLOAT, [2])], [], 17)
    sym = make_model([h.make_node("Resize", ["x4", "", "scales"], ["y"], name="sym_resize", mode="linear",
                                  coordinate_transformation_mode="half_pixel_symmetric")],
                     [h.make_tensor_value_info("x4", T.FLOAT, [1, 1, 3, 3])], [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 6, 6])],
                     [f32("scales", [1, 1, 2, 2])], 19)
    # a scale that does not give a whole length: onnx-tf resizes to the rounded one (mlms_ir's worker refuses it)
    rounded = make_model([h.make_node("Resize", ["x4", "", "scales"], ["y"], name="fraction", mode="linear")],
                         [h.make_tensor_value_info("x4", T.FLOAT, [1, 1, 3, 3])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 1, 5, 5])], [f32("scales", [1, 1, 1.7, 1.7])], 13)
    return {"resize": (sym, "Resize node 'sym_resize': coordinate_transformation_mode='half_pixel_symmetric' is not supported"),
            "rounded": (rounded, "node 'fraction' (Resize): onnx-tf resizes axis 2 to the rounded length 5 and maps "
                                 "coordinates with it, where ONNX uses the scale 1.7"),
            "wrap": (wrap, "Pad node 'wrap_pad': mode 'wrap' is not supported by onnx-tf"),
            "dyn": (dyn, "Squeeze node 'dyn_squeeze': its axes are computed at run time")}


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.elem_type == T.INT64:
            feeds[vi.name] = np.ones(shape, np.int64)
        else:
            feeds[vi.name] = RNG.standard_normal(shape).astype(np.float32)
    return feeds




# ---------------------------------------------------------------------------- always
def test_one_line_keeps_the_last_line_of_a_tensorflow_trace():
    class BackendIsNotSupposedToImplementIt(Exception):
        pass

    traced = BackendIsNotSupposedToImplementIt(
        'in user code:\n\n    File "/x/onnx_tf/backend_tf_module.py", line 99, in __call__  *\n        output_ops = f()\n\n'
        "    BackendIsNotSupposedToImplementIt: Shape version 19 is not implemented.\n")
    assert onnx_tf_compat.one_line(traced) == "BackendIsNotSupposedToImplementIt: Shape version 19 is not implemented."
    executed = RuntimeError('Graph execution error:\n\nDetected at node split defined at (most recent call last):\n'
                            '  File "/x/f.py", line 3, in f\n\nNumber of ways to split should evenly divide the split '
                            'dimension\n\t [[{{node split}}]] [Op:__inference_f_13]')
    assert onnx_tf_compat.one_line(executed) == "RuntimeError: Number of ways to split should evenly divide the split dimension"
    assert onnx_tf_compat.one_line(ValueError("a\n b")) == "ValueError: a b"
    assert onnx_tf_compat.one_line(KeyError()) == "KeyError"


def test_the_module_imports_nothing_of_mlms_ir_or_tensorflow():
    import ast

    tree = ast.parse(Path(onnx_tf_compat.__file__).read_text())
    top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert sorted(top) == ["__future__", "copy"]  # the rest is imported inside the functions, in the framework's env
    # and the shared facts, from the package or from the module's own folder (where they are copied with it)
    tried = [n for t in tree.body if isinstance(t, ast.Try) for part in (t.body, *[h.body for h in t.handlers])
             for n in part if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, n.level) for n in tried] == [("onnx_versions", 1), ("onnx_versions", 0)]


def test_the_test_models_are_valid_and_onnxruntime_runs_them(tmp_path):
    for make in (opset17_model, opset20_model):
        outs = ort_outputs(make(), _feeds(make()))
        assert all(np.isfinite(v).all() for v in outs.values())


# ---------------------------------------------------------------------------- onnx-tf (needs the env)
@pytest.fixture(scope="module")
def onnx_tf():
    return agent_backend(OnnxTfBackend)


@pytest.mark.slow
@pytest.mark.parametrize("make", [opset17_model, opset20_model], ids=["opset17", "opset20"])
def test_new_op_versions_match_onnxruntime(onnx_tf, make, tmp_path):
    model = make()
    feeds = _feeds(model)
    assert_outputs_match(worker_outputs(onnx_tf, model, feeds, tmp_path), ort_outputs(model, feeds), atol=2e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrap", "dyn", "resize", "rounded"])
def test_what_onnx_tf_cannot_do_is_one_clear_line(onnx_tf, case, tmp_path):
    model, message = refused_models()[case]
    with pytest.raises(BackendError) as e:
        worker_outputs(onnx_tf, model, _feeds(model), tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value) and "in user code" not in str(e.value)


@pytest.mark.slow
def test_opset20_model_to_saved_model(onnx_tf, tmp_path):
    from mlms_ir.converters.onnx_tf import to_saved_model

    onnx.save(opset20_model(), tmp_path / "m.onnx")
    res = to_saved_model(tmp_path / "m.onnx", tmp_path / "sm")
    assert res.max_abs_error is not None and res.max_abs_error < 1e-4
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_a_dynamo_exported_transformer_runs_on_onnx_tf(onnx_tf, dynamo_encoder):
    """A real exporter's output: torch's dynamo export of a Transformer encoder layer (conftest)."""
    path, feeds, want = dynamo_encoder
    assert_outputs_match(worker_outputs(onnx_tf, path, feeds), want, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------- each handler alone (needs the env)
N = h.make_node
#: name -> (node, graph inputs (name -> shape, or (type, shape)), initializers, opset, the error it must give or None)
ALONE = {
    "squeeze13": (N("Squeeze", ["x", "axes"], ["y"], name="sq"), {"x": [2, 1, 3, 1]}, [i64("axes", [1, -1])], 13, None),
    "squeeze13-all": (N("Squeeze", ["x"], ["y"], name="sq"), {"x": [2, 1, 3, 1]}, [], 13, None),
    "unsqueeze13": (N("Unsqueeze", ["x", "axes"], ["y"], name="unsq"), {"x": [2, 3]}, [i64("axes", [-1, 0])], 13, None),
    "reducemean18": (N("ReduceMean", ["x", "axes"], ["y"], keepdims=1, name="m"), {"x": [2, 3, 4]}, [i64("axes", [-1])], 18, None),
    "reducemean18-noop": (N("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1, name="m"), {"x": [2, 3]}, [], 18, None),
    "reducemax18-computed": (N("ReduceMax", ["x", "axes"], ["y"], name="dyn_max"), {"x": [2, 3], "axes": (T.INT64, [1])}, [], 18,
                             "ReduceMax node 'dyn_max': its axes are computed at run time"),
    "pad18-axes": (N("Pad", ["x", "pads", "value", "axes"], ["y"], name="p"), {"x": [2, 3]},
                   [i64("pads", [1, 2]), f32("value", 0.5), i64("axes", [-1])], 18, None),
    "pad19-wrap": (N("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap_pad"), {"x": [2, 3]}, [i64("pads", [0, 1, 0, 1])], 19,
                   "Pad node 'wrap_pad': mode 'wrap' is not supported by onnx-tf"),
    "split18": (N("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3, name="s"), {"x": [2, 11]}, [], 18, None),
    "split18-sizes": (N("Split", ["x", "sizes"], ["a", "b"], axis=1, name="s"), {"x": [2, 5]}, [i64("sizes", [2, 3])], 18, None),
    "scatternd18": (N("ScatterND", ["x", "row", "upd"], ["y"], reduction="none", name="sc"), {"x": [2, 3]},
                    [i64("row", [[1]]), f32("upd", [[0.5, 1.5, 2.5]])], 18, None),
    "scatternd18-add": (N("ScatterND", ["x", "row", "upd"], ["y"], reduction="add", name="sc"), {"x": [2, 3]},
                        [i64("row", [[1]]), f32("upd", [[0.5, 1.5, 2.5]])], 18,
                        "ScatterND node 'sc': reduction='add' is not supported by onnx-tf"),
    "avgpool19": (N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[1, 1], name="ap"), {"x": [1, 2, 4, 4]}, [], 19,
                  None),
    "resize19-symmetric": (N("Resize", ["x", "", "scales"], ["y"], mode="linear", name="sym",
                             coordinate_transformation_mode="half_pixel_symmetric"), {"x": [1, 1, 3, 3]},
                           [f32("scales", [1, 1, 2, 2])], 19,
                           "Resize node 'sym': coordinate_transformation_mode='half_pixel_symmetric' is not supported"),
    "reducel1-13": (N("ReduceL1", ["x"], ["y"], axes=[1, 2], keepdims=0, name="l1"), {"x": [2, 3, 4]}, [], 13, None),
    "clip13-min-above-max": (N("Clip", ["x", "lo", "hi"], ["y"], name="c"), {"x": [2, 3]}, [f32("lo", 1.0), f32("hi", 0.5)],
                             13, None),
    "clip6": (N("Clip", ["x"], ["y"], min=-0.5, max=0.5, name="c"), {"x": [2, 3]}, [], 6, None),
    "clip13-int8-max-only": (N("Clip", ["x", "", "hi"], ["y"], name="c"), {"x": (T.INT8, [2, 3])},
                             [onnx.numpy_helper.from_array(np.array(0, np.int8), "hi")], 13, None),
    "reducel2-13": (N("ReduceL2", ["x"], ["y"], axes=[1, 2], keepdims=1, name="l2"), {"x": [2, 3, 4]}, [], 13, None),
    "layernorm17": (N("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv"], epsilon=1e-5, name="ln"), {"x": [2, 3, 4]},
                    [f32("scale", [0.5, 1.0, 1.5, 2.0]), f32("bias", [0.0, 0.1, 0.2, 0.3])], 17, None),
    "gelu20-tanh": (N("Gelu", ["x"], ["y"], approximate="tanh", name="g"), {"x": [2, 3]}, [], 20, None),
    "mish18": (N("Mish", ["x"], ["y"], name="mish"), {"x": [2, 3]}, [], 18, None),
}


@pytest.fixture(scope="module")
def alone(onnx_tf, tmp_path_factory):
    """Every case of :data:`ALONE` run once in the onnx-tf environment (tests/compat_harness.py)."""
    return run_alone(onnx_tf.python()[0], "onnx-tf", ALONE, RNG, tmp_path_factory.mktemp("alone"))


def test_every_handler_has_a_case_alone():
    tables = {**onnx_tf_compat.HANDLERS, **onnx_tf_compat.REPLACES,
              **{(op, v): fn for op, (v, fn) in onnx_tf_compat.NEW_OPS.items()}}
    schema = onnx.defs.get_schema
    covered = {tables[(node.op_type, schema(node.op_type, opset).since_version)] for node, _, _, opset, _ in ALONE.values()}
    assert covered == set(tables.values())


@pytest.mark.parametrize("case", ALONE)
def test_each_handler_alone(alone, case):
    """The handler onnx_tf_compat's tables list for one node, called directly (no patch): it gives
    onnxruntime's outputs, or the one error it must."""
    check_alone(alone, ALONE, case, atol=2e-5)
