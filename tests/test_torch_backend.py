"""The torch backend (onnx2torch): outputs against ONNX Runtime, the node -> submodule mapping on
awkward node names, per-node tracing, conversion errors, and kernel attribution on a CUDA
Chrome trace in torch.profiler's layout (tests/data/torch_cuda_trace.json; no GPU here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")
ort = pytest.importorskip("onnxruntime")

import mlms_ir  # noqa: E402
from mlms_ir.backends import registry  # noqa: E402
from mlms_ir.backends.base import BackendError, FeedError, NodeTrace  # noqa: E402
from mlms_ir.backends.torch_backend import TorchBackend  # noqa: E402
from mlms_ir.backends.torch_trace import (  # noqa: E402
    NODE_PREFIX,
    attribute_kernels,
    find_device_work,
    kernel_coverage,
    split_trace,
    trace_events,
)
from mlms_ir.ir.dtypes import np_dtype  # noqa: E402

from conftest import small_cnn  # noqa: E402

DATA = Path(__file__).parent / "data"
RNG = np.random.default_rng(0)


def _w(*shape: int, scale: float = 0.2) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def attention_block(d: int = 16, heads: int = 2, ff: int = 32) -> onnx.ModelProto:
    """One pre-LN transformer block over x[N, S, d]: LayerNorm, QKV MatMuls, per-head scaled
    dot-product attention (Reshape/Transpose/Softmax), output projection, residual, then an MLP
    with an Erf GELU and a second residual."""
    hd = d // heads
    inits = [
        numpy_helper.from_array(np.ones(d, np.float32), "ln_g"), numpy_helper.from_array(np.zeros(d, np.float32), "ln_b"),
        numpy_helper.from_array(_w(d, d), "wq"), numpy_helper.from_array(_w(d, d), "wk"),
        numpy_helper.from_array(_w(d, d), "wv"), numpy_helper.from_array(_w(d, d), "wo"),
        numpy_helper.from_array(np.array([0, 0, heads, hd], np.int64), "split_heads"),
        numpy_helper.from_array(np.array([0, 0, d], np.int64), "merge_heads"),
        numpy_helper.from_array(np.array(1.0 / np.sqrt(hd), np.float32), "scale"),
        numpy_helper.from_array(_w(d, ff), "w1"), numpy_helper.from_array(_w(ff), "b1"),
        numpy_helper.from_array(_w(ff, d), "w2"), numpy_helper.from_array(_w(d), "b2"),
        numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    N = helper.make_node
    nodes = [
        N("LayerNormalization", ["x", "ln_g", "ln_b"], ["h"], name="/ln/LayerNormalization", axis=-1),
        N("MatMul", ["h", "wq"], ["q"], name="/attn/q/MatMul"), N("MatMul", ["h", "wk"], ["k"], name="/attn/k/MatMul"),
        N("MatMul", ["h", "wv"], ["v"], name="/attn/v/MatMul"),
        N("Reshape", ["q", "split_heads"], ["q4"]), N("Reshape", ["k", "split_heads"], ["k4"]), N("Reshape", ["v", "split_heads"], ["v4"]),
        N("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]), N("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
        N("Transpose", ["v4"], ["vt"], perm=[0, 2, 1, 3]),
        N("MatMul", ["qt", "kt"], ["s"], name="/attn/scores"), N("Mul", ["s", "scale"], ["ss"]),
        N("Softmax", ["ss"], ["p"], name="/attn/Softmax", axis=-1), N("MatMul", ["p", "vt"], ["ctx"]),
        N("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]), N("Reshape", ["ctxt", "merge_heads"], ["merged"]),
        N("MatMul", ["merged", "wo"], ["o"], name="/attn/out/MatMul"), N("Add", ["x", "o"], ["r1"], name="/res1/Add"),
        N("MatMul", ["r1", "w1"], ["f1"]), N("Add", ["f1", "b1"], ["f1b"]),
        N("Div", ["f1b", "sqrt2"], ["g0"]), N("Erf", ["g0"], ["g1"]), N("Add", ["g1", "one"], ["g2"]),
        N("Mul", ["f1b", "g2"], ["g3"]), N("Mul", ["g3", "half"], ["gelu"]),
        N("MatMul", ["gelu", "w2"], ["f2"]), N("Add", ["f2", "b2"], ["f2b"]), N("Add", ["r1", "f2b"], ["y"], name="/res2/Add"),
    ]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def awkward_names() -> onnx.ModelProto:
    """Node names that break onnx2torch's own naming: 'Sigmoid_1' beside two unnamed Sigmoids
    (its dedup makes a second 'Sigmoid_1'), a duplicated name, dots, spaces and a colon, a Split
    whose two outputs are graph outputs in swapped order, an intermediate tensor as an output, and
    nodes stored out of topological order."""
    N = helper.make_node
    nodes = [
        N("Neg", ["c"], ["d"], name="odd name:with.dots/and spaces"),  # stored before its producer
        N("Relu", ["x"], ["a"], name="Sigmoid_1"),
        N("Sigmoid", ["a"], ["b"], name=""),
        N("Sigmoid", ["b"], ["c"], name=""),
        N("Split", ["d", "sp"], ["s0", "s1"], name="dup", axis=1),
        N("Mul", ["s0", "s1"], ["m"], name="dup"),
    ]
    g = helper.make_graph(
        nodes, "awkward", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s1", "m", "s0", "c")],
        [numpy_helper.from_array(np.array([2, 2], np.int64), "sp")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tol: float = 1e-4) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_allclose(a[k], b[k], atol=tol, rtol=tol, err_msg=k)


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend()


# ---------------------------------------------------------------------------------------------- availability
def test_registry_and_availability(backend):
    assert isinstance(registry.get("torch"), TorchBackend)
    assert registry.get("pytorch") is registry.get("torch")
    assert backend.name == "torch" and backend.devices == ("cpu", "cuda") and backend.extra == "torch"
    assert backend.available("cpu")
    assert not backend.available("tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_unavailable_with_a_reason(backend):
    avail = backend.available("cuda")
    assert not avail
    assert "CUDA" in avail.reason or "CPU-only" in avail.reason
    with pytest.raises(BackendError, match="cannot run on cuda"):
        backend.prepare(mlms_ir.load(small_cnn()), "cuda")


def test_missing_onnx2torch_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # "import onnx2torch" raises ImportError
    avail = TorchBackend().available("cpu")
    assert not avail and "mlms_ir[torch]" in avail.reason and "onnx2torch" in avail.reason


# ---------------------------------------------------------------------------------------------- outputs
def test_small_cnn_matches_onnxruntime(backend, cnn_path):
    graph = mlms_ir.load(cnn_path)
    feeds = {"x": RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)}
    with backend.prepare(graph) as s:
        _close(s.run(feeds), _ort(small_cnn(), feeds))
        assert s.node_mapping == {n.id: [n.id] for n in graph.nodes}
        assert s.unmapped == []
        assert s.options == {"precision": "fp32"}


def test_attention_block_matches_onnxruntime_from_bytes(backend):
    model = attention_block()
    graph = mlms_ir.load(model.SerializeToString())
    feeds = {"x": RNG.standard_normal((2, 5, 16)).astype(np.float32)}
    with backend.prepare(graph) as s:
        out = s.run(feeds)
        _close(out, _ort(model, feeds))
        # the same session runs another batch and sequence length
        feeds2 = {"x": RNG.standard_normal((3, 7, 16)).astype(np.float32)}
        _close(s.run(feeds2), _ort(model, feeds2))
        run = s.runner(feeds)
        _close(run(), out)
        s.synchronize()  # a no-op on the CPU


def test_awkward_node_names_map_one_to_one(backend):
    model = awkward_names()
    with pytest.raises(KeyError):  # onnx2torch's own naming breaks on this file
        __import__("onnx2torch").convert(model)
    graph = mlms_ir.load(model)
    feeds = {"x": RNG.standard_normal((2, 4)).astype(np.float32)}
    with backend.prepare(graph) as s:
        unique = onnx.ModelProto()
        unique.CopyFrom(model)
        for k, n in enumerate(unique.graph.node):
            n.name = f"node{k}"  # ORT rejects repeated node names
        _close(s.run(feeds), _ort(unique, feeds), tol=1e-6)
        assert sorted(s.node_mapping) == sorted(n.id for n in graph.nodes)
        # every submodule is the node of the same id: the module onnx2torch makes for its op type
        modules = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Neg": "OnnxNeg", "Split": "OnnxSplit13", "Mul": "OnnxBinaryMathOperation"}
        for target, (nid,) in s.node_mapping.items():
            assert target == nid
            assert type(s.module.get_submodule(target)).__name__ == modules[graph.node(nid).op_type]
        assert [graph.node(f"n{k}").name for k in range(4)] == ["Sigmoid_1", "", "", "odd name:with.dots/and spaces"]
        calls = [n for n in s.module.graph.nodes if n.op == "call_module"]
        assert [c.target for c in calls] == [n.id for n in graph.nodes]  # topological order
        split = next(n.id for n in graph.nodes if n.op_type == "Split")
        getitems = [k for k, v in s.fx_node_mapping.items() if v == split and k != split]
        assert getitems  # the getitem calls on the Split's outputs map to the Split
        trace = s.trace(feeds)[0]
        assert sorted(e.covers[0] for e in trace.events if e.kind == "node") == sorted(n.id for n in graph.nodes)


def _passthrough_model() -> onnx.ModelProto:
    """Outputs y = Relu(x), x itself (a graph input) and w (an initializer)."""
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "pt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("y", "x", "w")],
        [numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_passthrough_and_initializer_outputs(backend):
    m = _passthrough_model()
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    with backend.prepare(mlms_ir.load(m)) as s:
        out = s.run(feeds)
        _close(out, _ort(m, feeds))
        # no output aliases the feeds or the model's weights
        assert not np.shares_memory(out["x"], feeds["x"])
        out["w"][:] = 0
        out["x"][:] = 0
        _close(s.run(feeds), _ort(m, feeds))


def test_feeds_are_checked(backend):
    with backend.prepare(mlms_ir.load(small_cnn())) as s:
        with pytest.raises(FeedError):
            s.run({"x": np.zeros((1, 3, 16, 16), np.float64)})
        with pytest.raises(FeedError):
            s.run({"y": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(BackendError, match="closed"):
        s.run({"x": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(BackendError, match="takes only the option precision"):
        backend.prepare(mlms_ir.load(small_cnn()), opt="all")


# ---------------------------------------------------------------------------------------------- errors
def _single(op: str, opset: int, **attrs) -> onnx.ModelProto:
    inputs = ["x"]
    inits = []
    if op == "Split":
        attrs.setdefault("num_outputs", 2)
    node = helper.make_node(op, inputs, ["y"] if op != "Split" else ["y", "z"], name=f"my_{op.lower()}", **attrs)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output]
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize(
    "op, opset, attrs, pattern",
    [
        ("GlobalLpPool", 18, {}, r"cannot convert op GlobalLpPool \(opset 18; node 'my_globallppool' \(GlobalLpPool\)\)"),
        ("GlobalLpPool", 17, {}, r"cannot convert op GlobalLpPool"),
        ("Bernoulli", 18, {}, r"cannot convert op Bernoulli \(opset 18; node 'my_bernoulli' \(Bernoulli\)\)"),
        ("LpPool", 18, {"kernel_shape": [2, 2], "ceil_mode": 1}, r"cannot convert op LpPool at node 'my_lppool'.*ceil_mode=1"),
    ],
)
def test_unconvertible_op_names_it(backend, op, opset, attrs, pattern):
    graph = mlms_ir.load(_single(op, opset, **attrs))
    with pytest.raises(BackendError, match=pattern):
        backend.prepare(graph)


def test_export_quirks_are_adapted(backend):
    """What common exports write and onnx2torch rejects: an Identity of a weight feeding Conv (the
    legacy exporter's shared weights), ReduceMean with its axes as an input (opset 18, the dynamo
    exporter) and Reshape(allowzero=1) on a constant shape. An Identity feeding MatMul stays."""
    N = helper.make_node
    nodes = [
        N("Identity", ["w"], ["w_id"], name="share0"), N("Identity", ["w_id"], ["w_id2"], name="share1"),
        N("Conv", ["x", "w_id2", "b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        N("ReduceMean", ["c", "axes"], ["p"], name="/pool/ReduceMean", keepdims=0),
        N("Reshape", ["p", "shape"], ["f"], name="/flat/Reshape", allowzero=1),
        N("Identity", ["wf"], ["wf_id"], name="share2"),
        N("MatMul", ["f", "wf_id"], ["y"], name="/fc/MatMul"),
    ]
    inits = [numpy_helper.from_array(_w(4, 3, 3, 3), "w"), numpy_helper.from_array(_w(4), "b"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(np.array([-1, 4], np.int64), "shape"),
             numpy_helper.from_array(_w(4, 5), "wf")]
    g = helper.make_graph(nodes, "quirks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    # (onnx2torch alone rejected this model; with onnx2torch_ops registered, its Conv and Reshape convert as they are)
    graph = mlms_ir.load(m)
    feeds = {"x": RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    with backend.prepare(graph) as s:
        _close(s.run(feeds), _ort(m, feeds))
        ids = {n.name: n.id for n in graph.nodes}
        assert sorted(s.unmapped) == sorted([ids["share0"], ids["share1"]])
        assert ids["share2"] in s.node_mapping
        notes = " | ".join(s.rewrites)
        assert "down to" not in notes  # ReduceMean-18 has its own converter (backends/onnx2torch_compat.py)
        assert "folded 2 Identity" in notes and "allowzero=1 from 1 Reshape" in notes
        nodes = [e for e in s.trace(feeds)[0].events if e.kind == "node"]
        assert sorted(e.covers[0] for e in nodes) == sorted(s.node_mapping)


def test_an_op_onnx2torch_lacks_at_the_opset_is_converted_down(backend):
    """IsNaN-20 only added types; onnx2torch has IsNaN-13, so the model goes down to opset 17."""
    m = _single("IsNaN", 20)
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.BOOL
    x = RNG.standard_normal((1, 8, 4, 4)).astype(np.float32)
    x[0, 0, 0, :2] = np.nan
    with backend.prepare(mlms_ir.load(m)) as s:
        assert "converted opset 20 down to 17" in " | ".join(s.rewrites)
        np.testing.assert_array_equal(s.run({"x": x})["y"], np.isnan(x))


def test_a_model_whose_conversion_down_would_drop_a_setting_is_refused(backend):
    """IsNaN-20 sends the model down to opset 17, where onnx.version_converter leaves AveragePool's
    dilations (added in 19) on an AveragePool-11 that onnx2torch would pool without them: so the
    model is not converted down, and the op onnx2torch lacks is refused."""
    from mlms_ir.backends.torch_convert import settings_lost

    nodes = [helper.make_node("IsNaN", ["x"], ["nan"], name="nan"),
             helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], name="dilated")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                          [helper.make_tensor_value_info("nan", TensorProto.BOOL, None), helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    lower = onnx.version_converter.convert_version(m, 17)
    assert settings_lost(lower) == ["AveragePool-11 has no attribute dilations"]
    with pytest.raises(BackendError, match=r"onnx2torch cannot convert op IsNaN \(opset 20; node 'nan'"):
        backend.prepare(mlms_ir.load(m))


def test_a_weight_fed_as_a_graph_input_is_taken_at_run_time(backend):
    """onnx2torch reads Conv's and ConvTranspose's W among the initializers (it raised KeyError:
    'W'); onnx2torch_ops' modules take a W fed as a graph input when they run."""
    for op in ("Conv", "ConvTranspose"):
        node = helper.make_node(op, ["x", "W"], ["y"], kernel_shape=[3, 3], name="conv")
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5]),
                                            helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)])
        m.ir_version = 10
        feeds = {"x": RNG.standard_normal((1, 1, 5, 5)).astype(np.float32), "W": RNG.standard_normal((1, 1, 3, 3)).astype(np.float32)}
        with backend.prepare(mlms_ir.load(m)) as s:
            _close(s.run(feeds), _ort(m, feeds))


def fixed_reshape_model() -> onnx.ModelProto:
    """Relu then a Reshape to a fixed size: it fails at run time for any batch but 2."""
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"], name="/head/Reshape")],
        "rs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([2, 4, 2], np.int64), "shape")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_run_failure_names_the_node(backend):
    # a Reshape to a fixed size fails at run time when the batch differs from the export's
    m = fixed_reshape_model()
    with backend.prepare(mlms_ir.load(m)) as s:
        assert s.run({"x": np.ones((2, 8), np.float32)})["y"].shape == (2, 4, 2)
        with pytest.raises(BackendError, match=r"torch failed at node '/head/Reshape' \(Reshape\)"):
            s.run({"x": np.ones((3, 8), np.float32)})


# ---------------------------------------------------------------------------------------------- tracing
@pytest.mark.parametrize("make", [small_cnn, attention_block], ids=["cnn", "attention"])
def test_trace_one_node_event_per_node_per_run(backend, make):
    model = make()
    graph = mlms_ir.load(model)
    shape = (2, 3, 16, 16) if make is small_cnn else (2, 5, 16)
    feeds = {graph.input_names[0]: RNG.standard_normal(shape).astype(np.float32)}
    with backend.prepare(graph) as s:
        results = s.trace(feeds, runs=3)
        assert len(results) == 3
        ref = _ort(model, feeds)
        ids = [n.id for n in graph.nodes]
        for r in results:
            _close(r.outputs, ref)
            nodes = [e for e in r.events if e.kind == "node"]
            assert [e.covers for e in nodes] == [[i] for i in ids]  # one each, in execution order
            assert all(e.track == "cpu" and e.time_us > 0 and e.start_us >= 0 for e in nodes)
            assert all(e.start_us + e.time_us <= r.wall_us + 1e-3 for e in nodes)
            assert [e.op_type for e in nodes] == [n.op_type for n in graph.nodes]
            assert [e.name for e in nodes] == [n.name or n.id for n in graph.nodes]
            assert not [e for e in r.events if e.kind == "kernel"]  # no device work on the CPU
            starts = [e.start_us for e in nodes]
            assert starts == sorted(starts)
        # tracing leaves the module as it was: plain runs carry no ranges
        assert all(not type(m).__name__ == "Ranged" for m in s.module.children())
        _close(s.run(feeds), ref)


def test_trace_feeds_the_runner_aggregation(backend):
    from mlms_ir.runner import aggregate

    graph = mlms_ir.load(small_cnn())
    feeds = {"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    with backend.prepare(graph) as s:
        traces = s.trace(feeds, runs=2)
    median, unattributed, coverage, groups = aggregate(traces, graph, {})
    assert set(median) == {n.id for n in graph.nodes}
    assert unattributed == [] and coverage == 1.0 and groups == {}


# ---------------------------------------------------------------------------------------------- kernel attribution
@pytest.fixture(scope="module")
def cuda_trace() -> dict:
    return json.loads((DATA / "torch_cuda_trace.json").read_text())


OPS = {"n0": "Conv", "n1": "Relu", "n2": "Gemm"}


def test_attribute_kernels_on_a_recorded_cuda_trace(cuda_trace):
    kernels = attribute_kernels(cuda_trace, OPS)
    assert all(isinstance(k, NodeTrace) and k.kind == "kernel" for k in kernels)
    assert len(kernels) == 14  # 7 per run: 2 memcpys, a fill outside every node, 4 in nodes
    run0 = kernels[:7]
    assert [k.covers for k in run0] == [[], [], ["n0"], ["n0"], ["n1"], ["n2"], []]
    assert [k.op_type for k in run0] == ["", "", "Conv", "Conv", "Relu", "Gemm", ""]
    assert [k.args["category"] for k in run0] == ["gpu_memcpy", "kernel", "kernel", "kernel", "kernel", "kernel", "gpu_memcpy"]
    conv = run0[2]
    assert conv.name.startswith("sm90_xmma_fprop_implicit_gemm")
    assert conv.start_us == pytest.approx(70.0) and conv.time_us == pytest.approx(8.5)
    assert conv.track == "cuda:0 stream 7"
    assert conv.args["grid"] == [4, 1, 1] and conv.args["block"] == [384, 1, 1]
    assert conv.args["registers_per_thread"] == 168 and conv.args["shared_memory"] == 196608
    assert conv.args["occupancy_pct"] == 1 and conv.args["blocks_per_sm"] == pytest.approx(4 / 132, abs=1e-6)
    assert conv.args["attributed_by"] == "launch" and conv.args["stream"] == 7
    gemm = run0[5]  # cuBLAS launches through the driver API (cuLaunchKernelEx)
    assert gemm.name.startswith("nvjet") and gemm.covers == ["n2"] and gemm.args["attributed_by"] == "launch"
    fill = run0[1]  # launched between the input copy and the first node: nobody's
    assert "FillFunctor" in fill.name and fill.covers == [] and "attributed_by" not in fill.args
    assert run0[0].args["bytes"] == 6144
    # 15.7 us of 20.0 us of device time per run is inside node ranges
    assert kernel_coverage(kernels) == pytest.approx(15.7 / 20.0)
    assert kernel_coverage(run0) == pytest.approx(0.785)
    assert kernel_coverage([]) == 0.0
    assert kernel_coverage([NodeTrace("n0", "Conv", 0, 5.0, ["n0"])]) == 0.0  # node events do not count
    # the bare event list works too, and the origin can be set
    again = attribute_kernels(cuda_trace["traceEvents"], origin=0.0)
    assert [k.covers for k in again] == [k.covers for k in kernels]
    run0_start = next(e["ts"] for e in cuda_trace["traceEvents"] if e.get("name") == "mlms_ir.run::0" and e["cat"] == "user_annotation")
    assert again[2].start_us == pytest.approx(run0_start + 70.0, abs=1e-3)  # absolute with origin 0


def test_split_trace_per_run(cuda_trace):
    runs = split_trace(cuda_trace, OPS, {"n0": "/conv/Conv", "n1": "/relu/Relu", "n2": "/fc/Gemm"})
    assert len(runs) == 2
    for events, wall in runs:
        assert wall == pytest.approx(400.0)
        nodes = [e for e in events if e.kind == "node"]
        kernels = [e for e in events if e.kind == "kernel"]
        assert [(e.name, e.op_type, e.covers) for e in nodes] == [
            ("/conv/Conv", "Conv", ["n0"]), ("/relu/Relu", "Relu", ["n1"]), ("/fc/Gemm", "Gemm", ["n2"])]
        assert [e.start_us for e in nodes] == pytest.approx([30.0, 100.0, 140.0])
        assert [e.time_us for e in nodes] == pytest.approx([60.0, 30.0, 70.0])
        assert [e.args["device_us"] for e in nodes] == pytest.approx([10.7, 1.9, 3.1])
        assert [e.args["kernels"] for e in nodes] == [2, 1, 1]
        assert len(kernels) == 7 and kernels[0].start_us == pytest.approx(16.0)  # times from the run's start
        assert kernel_coverage(events) == pytest.approx(0.785)


def test_attribution_fallbacks():
    """Without a launch record, the host op named by the kernel's External id stands in; without
    either, the node range projected onto the kernel's stream (gpu_user_annotation) decides."""
    host = {"pid": 1, "tid": 1}
    dev = {"pid": 0, "tid": 7}
    events = [
        {"ph": "X", "cat": "user_annotation", "name": NODE_PREFIX + "n3", "ts": 0.0, "dur": 50.0, "args": {"External id": 1}, **host},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 5.0, "dur": 40.0, "args": {"External id": 2}, **host},
        {"ph": "X", "cat": "user_annotation", "name": NODE_PREFIX + "n4", "ts": 60.0, "dur": 50.0, "args": {"External id": 3}, **host},
        # nested node ranges (a subgraph node inside its owner): the innermost wins
        {"ph": "X", "cat": "user_annotation", "name": NODE_PREFIX + "n4/body/n0", "ts": 70.0, "dur": 10.0, "args": {"External id": 4}, **host},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 72.0, "dur": 2.0, "args": {"correlation": 900, "External id": 4}, **host},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 90.0, "dur": 2.0, "args": {"correlation": 901, "External id": 3}, **host},
        {"ph": "X", "cat": "gpu_user_annotation", "name": NODE_PREFIX + "n5", "ts": 300.0, "dur": 20.0, "args": {"External id": 9}, **dev},
        # kernel A: no launch record, External id 2 -> aten::mm inside n3
        {"ph": "X", "cat": "kernel", "name": "A", "ts": 100.0, "dur": 4.0, "args": {"correlation": 555, "External id": 2, "stream": 7}, **dev},
        # kernel B: launched inside n4/body/n0 (nested in n4)
        {"ph": "X", "cat": "kernel", "name": "B", "ts": 110.0, "dur": 3.0, "args": {"correlation": 900, "stream": 7}, **dev},
        # kernel C: launched in n4 after the nested range closed
        {"ph": "X", "cat": "kernel", "name": "C", "ts": 120.0, "dur": 2.0, "args": {"correlation": 901, "stream": 7}, **dev},
        # kernel D: nothing on the host, but inside n5's device-side range
        {"ph": "X", "cat": "kernel", "name": "D", "ts": 305.0, "dur": 5.0, "args": {"stream": 7}, **dev},
        # kernel E: nothing at all
        {"ph": "X", "cat": "kernel", "name": "E", "ts": 400.0, "dur": 1.0, "args": {"correlation": 777, "stream": 7}, **dev},
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": 7, "args": {"name": "stream 7"}},
    ]
    assert len(trace_events(events)) == len(events) - 1
    work = {w.event["name"]: w for w in find_device_work(events)}
    assert (work["A"].node, work["A"].via) == ("n3", "external id")
    assert (work["B"].node, work["B"].via) == ("n4/body/n0", "launch")
    assert (work["C"].node, work["C"].via) == ("n4", "launch")
    assert (work["D"].node, work["D"].via) == ("n5", "gpu range")
    assert (work["E"].node, work["E"].via, work["E"].launch_ts) == (None, "", None)
    ks = attribute_kernels({"traceEvents": events})
    assert [k.covers for k in ks] == [["n3"], ["n4/body/n0"], ["n4"], ["n5"], []]
    assert kernel_coverage(ks) == pytest.approx(14.0 / 15.0)
    # one run: the whole trace when it has no run ranges
    (evs, wall), = split_trace(events)
    assert len([e for e in evs if e.kind == "node"]) == 3 and wall == pytest.approx(401.0)


# ---------------------------------------------------------------------------------------------- intermediates
def split_identity() -> onnx.ModelProto:
    """A Conv whose weight goes through an Identity (folded into an initializer by the session),
    an Identity of an activation (kept), a Split with two outputs (the second also a graph
    output), a Shape (int64) and a head."""
    N = helper.make_node
    nodes = [
        N("Identity", ["w"], ["w_id"], name="share"),
        N("Conv", ["x", "w_id", "b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        N("Relu", ["c"], ["r"]),
        N("Identity", ["r"], ["r_id"], name="/keep/Identity"),
        N("Split", ["r_id", "sp"], ["s0", "s1"], name="/split/Split", axis=1),
        N("Sigmoid", ["s0"], ["g"]),
        N("Mul", ["s1", "g"], ["m"]),
        N("Shape", ["m"], ["shp"]),
        N("GlobalAveragePool", ["m"], ["p"]),
        N("Flatten", ["p"], ["y"]),
    ]
    inits = [numpy_helper.from_array(_w(4, 3, 3, 3), "w"), numpy_helper.from_array(_w(4), "b"),
             numpy_helper.from_array(np.array([1, 3], np.int64), "sp")]
    g = helper.make_graph(nodes, "split_identity", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("s1", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("shp", TensorProto.INT64, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _ort_all(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node output of ``model`` from ONNX Runtime (a copy with all of them as graph outputs,
    no graph optimizations)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in present:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
                present.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _node_outputs(graph) -> list[str]:
    return [o for n in graph.nodes for o in n.proto.output if o]


def _no_hooks(s) -> bool:
    return all(not m._forward_hooks for m in s.module.modules())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("make, shape, folded", [(small_cnn, (2, 3, 16, 16), []), (split_identity, (2, 3, 8, 8), ["share"])],
                         ids=["cnn", "split_identity"])
def test_intermediates_match_onnxruntime(backend, make, shape, folded, device):
    model = make()
    graph = mlms_ir.load(model)
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
    ref = _ort_all(model, feeds)
    names = _node_outputs(graph)
    folded_outputs = [o for n in graph.nodes if n.name in folded for o in n.proto.output]
    with backend.prepare(graph, device) as s:
        assert sorted(s.unmapped) == sorted(graph.node(n.id).id for n in graph.nodes if n.name in folded)
        asked = ["no_such_tensor", *names, "x"]
        got = s.intermediates(feeds, asked)
        assert _no_hooks(s)  # registered for the call only
        assert "no_such_tensor" not in got
        assert [n for n in names if n not in got] == folded_outputs  # exactly the folded nodes' outputs
        assert list(got) == [n for n in asked if n in got]  # in the order asked
        for n in names:
            if n in got:
                assert isinstance(got[n], np.ndarray), n
                assert got[n].shape == ref[n].shape, n
                assert got[n].dtype == ref[n].dtype == np_dtype(graph.tensor(n).elem_type), n
                np.testing.assert_allclose(got[n], ref[n], atol=1e-5, rtol=1e-5, err_msg=n)
        np.testing.assert_array_equal(got["x"], feeds["x"])
        assert not np.shares_memory(got["x"], feeds["x"])
        # graph outputs agree with a plain run's
        out = s.run(feeds)
        for n in graph.output_names:
            np.testing.assert_array_equal(got[n], out[n])
        assert s.intermediates(feeds, ["no_such_tensor"]) == {}
        assert s.intermediates(feeds, []) == {}
        assert _no_hooks(s)


def test_intermediates_multi_output_node(backend):
    """Each output of the Split comes from its place in the module's tuple, asked alone or together,
    and matches the getitem calls the fx graph makes on it."""
    model = split_identity()
    graph = mlms_ir.load(model)
    feeds = {"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    ref = _ort_all(model, feeds)
    with backend.prepare(graph) as s:
        split = next(n.id for n in graph.nodes if n.op_type == "Split")
        import operator

        picks = sorted(n.args[1] for n in s.module.graph.nodes
                       if n.op == "call_function" and n.target is operator.getitem and s.fx_node_mapping.get(n.name) == split)
        assert picks == [0, 1]
        assert list(s.intermediates(feeds, ["s1"])) == ["s1"]
        np.testing.assert_allclose(s.intermediates(feeds, ["s1"])["s1"], ref["s1"], atol=1e-6)
        both = s.intermediates(feeds, ["s1", "s0"])
        assert both["s0"].shape == (1, 1, 8, 8) and both["s1"].shape == (1, 3, 8, 8)
        np.testing.assert_allclose(both["s0"], ref["s0"], atol=1e-6)
        np.testing.assert_allclose(both["s1"], ref["s1"], atol=1e-6)
        # the folded Identity's output is missing, and so is a weight (not a node output)
        assert s.intermediates(feeds, ["w_id", "w", "c"]).keys() == {"c"}


def test_intermediates_are_copies(backend):
    """A later in-place op on a captured tensor does not change the value returned; values of one
    call survive the next."""

    class InplaceRelu(torch.nn.Module):
        def forward(self, t):
            return t.relu_()  # overwrites its input: the Conv's output

    model = small_cnn()
    graph = mlms_ir.load(model)
    feeds = {"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    ref = _ort_all(model, feeds)
    with backend.prepare(graph) as s:
        relu = graph.nodes[1].id
        assert graph.node(relu).op_type == "Relu"
        setattr(s.module, relu, InplaceRelu())
        got = s.intermediates(feeds, ["c1", "r1", "y"])
        assert (got["c1"] < 0).any()
        for n in ("c1", "r1", "y"):
            np.testing.assert_allclose(got[n], ref[n], atol=1e-5, rtol=1e-5, err_msg=n)
        keep = {k: v.copy() for k, v in got.items()}
        s.intermediates({"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}, ["c1", "r1", "y"])
        for n, value in keep.items():
            np.testing.assert_array_equal(got[n], value)


def test_intermediates_of_passthrough_and_initializer_outputs(backend):
    m = _passthrough_model()
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    with backend.prepare(mlms_ir.load(m)) as s:
        got = s.intermediates(feeds, ["w", "x", "y"])
        assert list(got) == ["w", "x", "y"]
        np.testing.assert_array_equal(got["w"], [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(got["x"], feeds["x"])
        np.testing.assert_array_equal(got["y"], [0.0, 0.5, 2.0])
        got["w"][:] = 0  # no alias of the model's weights
        np.testing.assert_array_equal(s.run(feeds)["w"], [1.0, 2.0, 3.0])


def test_intermediates_failure_names_the_node_and_removes_hooks(backend):
    m = fixed_reshape_model()
    with backend.prepare(mlms_ir.load(m)) as s:
        with pytest.raises(BackendError, match=r"torch failed at node '/head/Reshape' \(Reshape\)"):
            s.intermediates({"x": np.ones((3, 8), np.float32)}, ["r", "y"])
        assert _no_hooks(s)
        got = s.intermediates({"x": np.ones((2, 8), np.float32)}, ["r", "y"])
        assert got["y"].shape == (2, 4, 2) and got["r"].shape == (2, 8)
        with pytest.raises(FeedError):
            s.intermediates({"x": np.ones((2, 8), np.float64)}, ["r"])
    with pytest.raises(BackendError, match="closed"):
        s.intermediates({"x": np.ones((2, 8), np.float32)}, ["r"])
