"""Backends: the registry, ONNX Runtime and the reference evaluator, feeds, mapping of traced
work onto graph nodes, and TensorRT's layer mapping on recorded engine information."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.base import BackendError, BackendUnavailableError, FeedError
from mlms_ir.backends.ort import map_optimized_nodes
from mlms_ir.backends.tensorrt import layer_information, map_layers
from mlms_ir.inputs import load_feeds, random_feeds


def conv_net(channels: int = 16, size: int = 32) -> onnx.ModelProto:
    """Conv-Relu, Conv-Relu, residual Add, Relu, GlobalAveragePool, Flatten, Gemm: what ORT fuses."""
    rng = np.random.default_rng(0)
    c = channels
    inits = [
        numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * 0.1, "w0"),
        numpy_helper.from_array(np.zeros(c, np.float32), "b0"),
        numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.1, "w1"),
        numpy_helper.from_array(np.zeros(c, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((10, c)).astype(np.float32), "wf"),
        numpy_helper.from_array(np.zeros(10, np.float32), "bf"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="/conv0/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="/relu0/Relu"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/relu1/Relu"),
        helper.make_node("Add", ["r1", "r0"], ["a"], name="/add/Add"),
        helper.make_node("Relu", ["a"], ["r2"], name="/relu2/Relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="/fc/Gemm", transB=1),
    ]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture
def net_path(tmp_path):
    p = tmp_path / "net.onnx"
    onnx.save(conv_net(), p)
    return p


def test_registry_lists_every_backend_and_says_why_not():
    assert registry.names()[:6] == ["ort", "reference", "torch", "tensorrt", "mxnet", "onnx-tf"]
    assert registry.get("onnxruntime") is registry.get("ort")
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        registry.get("nope")
    cuda = registry.get("ort").available("cuda")
    assert not cuda and "CUDAExecutionProvider" in cuda.reason
    trt = registry.get("tensorrt").available("cuda")
    assert not trt and trt.reason
    assert not registry.get("reference").available("cuda")  # CPU only


def test_a_broken_backend_module_is_a_stand_in(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN, "broken", "mlms_ir.backends.does_not_exist:Nope")
    monkeypatch.setattr(registry, "_cache", {})
    be = registry.get("broken")
    a = be.available("cpu")
    assert not a and "cannot import mlms_ir.backends.does_not_exist" in a.reason
    with pytest.raises(BackendUnavailableError):
        be.prepare(mlms_ir.load(conv_net(), batch=1))


def test_ort_and_reference_agree(net_path):
    g = mlms_ir.load(net_path, batch=2)
    feeds = random_feeds(g, seed=1)
    with registry.get("ort").prepare(g) as ort, registry.get("reference").prepare(g) as ref:
        a, b = ort.run(feeds), ref.run(feeds)
    assert a.keys() == b.keys() == {"y"}
    np.testing.assert_allclose(a["y"], b["y"], rtol=1e-4, atol=1e-5)


def test_feeds_are_checked(net_path):
    g = mlms_ir.load(net_path, batch=2)
    with registry.get("ort").prepare(g) as s:
        with pytest.raises(FeedError, match="no input 'z'"):
            s.run({"z": np.zeros(1)})
        with pytest.raises(FeedError, match="expects float"):
            s.run({"x": np.zeros((2, 3, 32, 32), np.float64)})
        with pytest.raises(FeedError, match="dim 0 = 2"):
            s.run({"x": np.zeros((3, 3, 32, 32), np.float32)})
    with pytest.raises(BackendError, match="closed"):
        s.run({"x": np.zeros((2, 3, 32, 32), np.float32)})


def test_ort_trace_without_optimisations_is_one_to_one(net_path):
    g = mlms_ir.load(net_path, batch=1)
    with registry.get("ort").prepare(g, opt="none") as s:
        traces = s.trace(random_feeds(g), runs=3)
    assert len(traces) == 3
    for tr in traces:
        assert sorted(c for ev in tr.events for c in ev.covers) == sorted(n.id for n in g.nodes)
        assert all(len(ev.covers) == 1 for ev in tr.events)
        assert tr.wall_us >= sum(ev.time_us for ev in tr.events) * 0.5


def test_ort_trace_with_fusions_maps_back(net_path):
    g = mlms_ir.load(net_path, batch=1)
    with registry.get("ort").prepare(g, opt="all") as s:
        (tr,) = s.trace(random_feeds(g))
        mapping = s.node_mapping
    covered = {c for ev in tr.events for c in ev.covers}
    assert covered == {n.id for n in g.nodes}, mapping
    # Conv+Relu run as one kernel: some event covers both
    assert any(set(ev.covers) >= {"n0", "n1"} for ev in tr.events), mapping
    attributed = sum(ev.time_us for ev in tr.events if ev.covers)
    assert attributed / sum(ev.time_us for ev in tr.events) >= 0.5


def test_map_optimized_nodes_follows_derived_tensor_names():
    g = mlms_ir.load(conv_net(), batch=1)
    opt = helper.make_model(helper.make_graph([
        helper.make_node("ReorderInput", ["x"], ["reorder_0"], name="ReorderInput"),
        helper.make_node("Conv", ["reorder_0", "w0", "b0"], ["r0_nchwc"], name="r0_nchwc", domain="com.microsoft.nchwc"),
        helper.make_node("Conv", ["r0_nchwc", "w1", "b1", "r0_nchwc"], ["r2_nchwc"], name="r2_nchwc", domain="com.microsoft.nchwc"),
        helper.make_node("ReorderOutput", ["r2_nchwc"], ["r2"], name="ReorderOutput"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="/fc/Gemm", transB=1),
    ], "opt", [], []))
    m = map_optimized_nodes(g, opt)
    assert m["ReorderInput"] == [] and m["ReorderOutput"] == []
    assert m["r0_nchwc"] == ["n0", "n1"]  # Conv + Relu
    assert m["r2_nchwc"] == ["n2", "n3", "n4", "n5"]  # Conv + Relu + residual Add + Relu
    assert m["/fc/Gemm"] == ["n8"]


def test_a_fused_conv_named_after_its_own_output_covers_its_add_and_relu_only():
    """torch's dynamo exporter names a Conv's output apart from the Relu's (``getitem_138``,
    ``relu_39``); ORT's NCHWc Conv that fuses Conv + residual Add + Relu is named after the Conv's
    output. Each fused node covers its own three nodes: the residual chain was once taken whole by
    the last block's node (13 nodes of ResNet-50 on one Conv)."""
    c = 4
    nodes, weights, prev = [], [], "x"
    for k in range(4):
        w = numpy_helper.from_array(np.ones((c, c, 1, 1), np.float32), f"w{k}")
        weights.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"conv_{k}"], name=f"conv{k}"))
        if k:
            nodes.append(helper.make_node("Add", [f"conv_{k}", prev], [f"add_{k}"], name=f"add{k}"))
        nodes.append(helper.make_node("Relu", [f"add_{k}" if k else f"conv_{k}"], [f"relu_{k}"], name=f"relu{k}"))
        prev = f"relu_{k}"
    g = mlms_ir.load(helper.make_model(helper.make_graph(
        nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, c, 8, 8])], weights),
        opset_imports=[helper.make_opsetid("", 17)]))
    opt_nodes = [helper.make_node("ReorderInput", ["x"], ["tok_in"], name="ReorderInput")]
    prev = "tok_in"
    for k in range(4):
        ins = [prev, f"w{k}"] + (["", prev] if k else [])
        opt_nodes.append(helper.make_node("Conv", ins, [f"tok_{k}"], name=f"conv_{k}_nchwc", domain="com.microsoft.nchwc",
                                          activation="Relu"))
        prev = f"tok_{k}"
    opt_nodes.append(helper.make_node("ReorderOutput", [prev], ["relu_3"], name="ReorderOutput"))
    m = map_optimized_nodes(g, helper.make_model(helper.make_graph(opt_nodes, "opt", [], [])))
    ids = {n.name: n.id for n in g.nodes}
    assert m["conv_0_nchwc"] == [ids["conv0"], ids["relu0"]]
    for k in (1, 2, 3):
        assert m[f"conv_{k}_nchwc"] == [ids[f"conv{k}"], ids[f"add{k}"], ids[f"relu{k}"]], m


def test_reference_trace_covers_every_node(net_path):
    g = mlms_ir.load(net_path, batch=1)
    with registry.get("reference").prepare(g) as s:
        (tr,) = s.trace(random_feeds(g))
    assert [ev.covers for ev in tr.events] == [[n.id] for n in g.nodes]
    assert all(ev.time_us > 0 for ev in tr.events)


def test_random_feeds_respect_index_ranges_and_masks():
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("Mul", ["e", "m"], ["y"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [4, 50]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [4, 50, 1]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [4, 50])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 50, 3])],
        [numpy_helper.from_array(np.zeros((7, 3), np.float32), "table")],
    )
    graph = mlms_ir.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    f = random_feeds(graph, seed=3)
    assert f["ids"].dtype == np.int64 and f["ids"].min() >= 0 and f["ids"].max() < 7 and f["ids"].max() > 2
    assert (f["attention_mask"] == 1).all()
    assert np.array_equal(f["m"], random_feeds(graph, seed=3)["m"])  # seeded


def test_random_feeds_need_bound_dims(net_path):
    with pytest.raises(mlms_ir.errors.ShapeBindingError, match="unbound dims"):
        random_feeds(mlms_ir.load(net_path))


def test_npz_inputs(tmp_path):
    p = tmp_path / "in.npz"
    np.savez(p, x=np.ones((1, 3), np.float32))
    assert load_feeds(p)["x"].shape == (1, 3)
    bad = tmp_path / "bad.npz"
    bad.write_text("nope")
    with pytest.raises(mlms_ir.MlmsIrError, match="cannot read inputs"):
        load_feeds(bad)


def test_tensorrt_layer_mapping_from_recorded_engine_information():
    g = mlms_ir.load(conv_net(), batch=1)
    info = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "trt_engine_info.json").read_text())
    m = map_layers(layer_information(info), g)
    assert m["/conv0/Conv + /relu0/Relu"] == ["n0", "n1"]
    assert m["/conv1/Conv + /relu1/Relu + /add/Add + /relu2/Relu"] == ["n2", "n3", "n4", "n5"]
    assert m["Reformatting CopyNode for Input Tensor 0 to /conv0/Conv + /relu0/Relu"] == []
    assert m["/pool/GlobalAveragePool"] == ["n6"]  # no metadata: matched by name
    assert m["{ForeignNode[/flatten/Flatten.../fc/Gemm]}"] == ["n7", "n8"]


@pytest.mark.parametrize("backend", ["ort", "reference", "torch", "onnx-tf", "mxnet"])
def test_every_backend_runs_the_default_domain_spelt_ai_onnx(tmp_path, backend):
    """A node whose domain is spelt "ai.onnx" (onnxruntime's own session runs it): each backend
    that is installed gives bare onnxruntime's answer, none refuses the domain."""
    import onnxruntime

    be = registry.get(backend)
    if not be.available("cpu"):
        pytest.skip(f"{backend} is not installed here")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], domain="ai.onnx"), helper.make_node("Tanh", ["m"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("ai.onnx", 17)])
    m.ir_version = 8
    path = tmp_path / "spelt.onnx"
    onnx.save(m, path)
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with be.prepare(mlms_ir.load(path)) as session:
        got = session.run(feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
