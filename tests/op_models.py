"""Helpers to write small ONNX models by hand and check a backend's outputs against onnxruntime's
(the op-version tests of the compatibility modules use them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def i64(name: str, values) -> onnx.TensorProto:
    """An int64 initializer."""
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def f32(name: str, values) -> onnx.TensorProto:
    """A float32 initializer."""
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def make_model(nodes, inputs, outputs, inits, opset: int) -> onnx.ModelProto:
    """A checked model at ``opset`` of the default domain (IR 8 up to opset 17, 9 up to 20, then 10:
    what onnx 1.18 in the agent environments reads)."""
    m = helper.make_model(helper.make_graph(nodes, f"opset{opset}", inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 17 else 9 if opset <= 20 else 10
    onnx.checker.check_model(m, full_check=True)
    return m


def one_node_model(node, inputs: dict, inits: list, opset: int) -> onnx.ModelProto:
    """``node`` alone (the tests of each compat handler alone); ``inputs``: name -> shape (float32)
    or (type, shape) of its graph inputs; its outputs' shapes as ONNX infers them (where it cannot:
    the first input's rank, dims unknown)."""
    ins = [helper.make_tensor_value_info(n, *(s if isinstance(s, tuple) else (onnx.TensorProto.FLOAT, s)))
           for n, s in inputs.items()]
    outs = [onnx.ValueInfoProto(name=o) for o in node.output if o]  # untyped: inference gives the types
    draft = helper.make_model(helper.make_graph([node], "alone", ins, outs, inits), opset_imports=[helper.make_opsetid("", opset)])
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(draft).graph.output}
    rank = len(next(iter(inputs.values())))
    outs = [inferred[o.name] if inferred[o.name].type.tensor_type.HasField("shape")
            else helper.make_tensor_value_info(o.name, inferred[o.name].type.tensor_type.elem_type or onnx.TensorProto.FLOAT,
                                               [f"d{i}" for i in range(rank)]) for o in outs]
    return make_model([node], ins, outs, inits, opset)


def one_node_feeds(inputs: dict, rng: np.random.Generator, dims: dict | None = None) -> dict[str, np.ndarray]:
    """Feeds for :func:`one_node_model`'s ``inputs``: float32 normals, typed ones as ones of that
    type (axes: 1); named dims as ``dims`` says."""
    feeds = {}
    for name, spec in inputs.items():
        if isinstance(spec, tuple):
            feeds[name] = np.ones(spec[1], helper.tensor_dtype_to_np_dtype(spec[0]))
        else:
            feeds[name] = rng.standard_normal([(dims or {}).get(d, d) for d in spec]).astype(np.float32)
    return feeds


def ort_outputs(model: onnx.ModelProto | str | Path, feeds: dict) -> dict[str, np.ndarray]:
    """onnxruntime's outputs (CPU), by output name."""
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def assert_outputs_match(got: dict, want: dict, *, atol: float, rtol: float) -> None:
    """The same outputs, in the same order, of the same shapes, within ``atol + rtol*|want|``."""
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].shape == v.shape, k
        np.testing.assert_allclose(got[k], v, atol=atol, rtol=rtol, err_msg=k)


def worker_outputs(backend, model: onnx.ModelProto | str | Path, feeds: dict, tmp_dir: Path | None = None) -> dict:
    """One run of ``model`` on a worker backend (``MXNetBackend``, ``OnnxTfBackend``), its outputs by
    name; a ``ModelProto`` is saved in ``tmp_dir`` first."""
    from mlms_ir.ir import load

    if isinstance(model, onnx.ModelProto):
        path = Path(tmp_dir) / "model.onnx"
        onnx.save(model, path)
        model = path
    with backend.prepare(load(model), "cpu") as s:
        _, got = s.measure_in_worker(feeds, warmup=0, iterations=1)
    return got


def standardized_conv_model(opset: int = 18) -> onnx.ModelProto:
    """A weight-standardised convolution as NFNet (timm's ScaledStdConv2d) exports it: the kernel is
    computed from an initializer ((w - mean) / sqrt(var + eps) * gain) by nodes in the graph."""
    rng = np.random.default_rng(3)
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["w", "axes"], ["mean"], keepdims=1, name="w_mean"),
        n("Sub", ["w", "mean"], ["centred"], name="w_centre"),
        n("Mul", ["centred", "centred"], ["sq"], name="w_square"),
        n("ReduceMean", ["sq", "axes"], ["var"], keepdims=1, name="w_var"),
        n("Add", ["var", "eps"], ["var_eps"], name="w_eps"),
        n("Sqrt", ["var_eps"], ["std"], name="w_std"),
        n("Div", ["centred", "std"], ["wn"], name="w_norm"),
        n("Mul", ["wn", "gain"], ["wg"], name="w_gain"),
        n("Conv", ["x", "wg", "b"], ["y"], pads=[1, 1, 1, 1], name="conv"),
    ]
    inits = [f32("w", rng.standard_normal((4, 3, 3, 3))), i64("axes", [1, 2, 3]), f32("eps", 1e-5),
             f32("gain", rng.uniform(0.5, 1.5, (4, 1, 1, 1))), f32("b", rng.standard_normal(4))]
    return make_model(nodes, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 6, 6])],
                      [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6, 6])], inits, opset)
