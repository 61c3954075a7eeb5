"""ORT's per-node times for nodes without a name, or with a name another node has.

onnxruntime profiles a node without a name as ``<OpType>_<index>``, an index its optimised graph
does not keep, and two nodes of one name under one name: the ORT backend gives every node a unique
name in the model ORT runs (:func:`mlms_ir.backends.ort.ort_names`). These tests check the
attribution against bare onnxruntime's own profile of the same file."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.ort import _model_for_ort, map_optimized_nodes, ort_names
from mlms_ir.inputs import random_feeds


def mlp(names: list[str], dtype=np.float32, width: int = 16) -> onnx.ModelProto:
    """x -> MatMul -> Relu -> MatMul -> Tanh, the nodes named ``names`` ("" for none)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((width, width)).astype(dtype), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((width, width)).astype(dtype), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name=names[0]),
             helper.make_node("Relu", ["a"], ["b"], name=names[1]),
             helper.make_node("MatMul", ["b", "w2"], ["c"], name=names[2]),
             helper.make_node("Tanh", ["c"], ["y"], name=names[3])]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", elem, ["N", width])],
                          [helper.make_tensor_value_info("y", elem, ["N", width])], [w, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def fp16_matmul() -> onnx.ModelProto:
    """x fp16[N,4] MatMul a float16 4x4 weight, unnamed: ORT's CPU provider runs it in float32
    between two Casts it inserts (``InsertedPrecisionFreeCast_x``, ``..._y``)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float16), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def bare_profile(path, feeds, opt: str | None = None) -> list[tuple[str, str]]:
    """(name, op) of every node event of one run of bare onnxruntime's own profiler."""
    so = onnxruntime.SessionOptions()
    so.enable_profiling = True
    so.log_severity_level = 4
    so.profile_file_prefix = str(path.parent / "bare")
    if opt == "none":
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = onnxruntime.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    events = json.loads(open(sess.end_profiling()).read())
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")), key=lambda e: e["ts"])
    return [(e["name"][: -len("_kernel_time")], e["args"]["op_name"]) for e in nodes]


def traced(graph, feeds, **options):
    with registry.get("ort").prepare(graph, **options) as s:
        (tr,) = s.trace(feeds)
        return tr.events, s.node_mapping


@pytest.mark.parametrize("opt", [None, "none"])
@pytest.mark.parametrize("names", [["", "", "", ""], ["mm", "", "", ""], ["d", "d", "", ""], ["MatMul_2", "", "Relu_1", ""]],
                         ids=["unnamed", "mixed", "duplicated", "like-ort-names"])
def test_every_node_gets_its_own_event(tmp_path, names, opt):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(names), path)
    g = mlms_ir.load(path, batch=2)
    feeds = random_feeds(g, seed=0)
    if names[0] == "d":  # onnxruntime refuses two nodes of one name; the kernels are those of the unnamed model
        with pytest.raises(Exception, match="two nodes with same node name"):
            bare_profile(path, feeds, opt)
        onnx.save(mlp([""] * 4), path)
    bare = bare_profile(path, feeds, opt)
    events, mapping = traced(g, feeds, opt=opt)
    ops = {n.id: n.op_type for n in g.nodes}
    # the same kernels as bare onnxruntime runs, in the same order
    assert [ev.op_type for ev in events] == [op for _, op in bare]
    # each covers exactly its own node: one node each, of its op type, all four
    assert all(len(ev.covers) == 1 and ops[ev.covers[0]] == ev.op_type for ev in events), events
    assert sorted(c for ev in events for c in ev.covers) == sorted(ops)
    assert "" not in mapping and all(len(v) == 1 for v in mapping.values()), mapping


def test_the_profile_attributes_every_unnamed_node(tmp_path):
    from mlms_ir.runner import profile_model

    path = tmp_path / "unnamed.onnx"
    onnx.save(mlp([""] * 4), path)
    report = profile_model(str(path), batch=2, runs=2, warmup=1, iterations=3, system=False).report
    assert report.coverage == 1.0 and report.unattributed == []
    assert sorted(n.id for n in report.nodes) == ["n0", "n1", "n2", "n3"]
    assert "" not in report.mapping


def test_inserted_casts_are_not_credited_to_the_node(tmp_path):
    """ORT runs the float16 MatMul in float32: the MatMul's event is n0's; the Casts it inserts
    (one writes n0's output ``y``) are nobody's. n0 once got the output Cast's time, and the
    mapping a ``''`` key."""
    path = tmp_path / "fp16.onnx"
    onnx.save(fp16_matmul(), path)
    g = mlms_ir.load(path, batch=2)
    feeds = random_feeds(g, seed=0)
    bare = bare_profile(path, feeds)
    assert sorted(op for _, op in bare) == ["Cast", "Cast", "MatMul"]  # what ORT runs for it
    events, mapping = traced(g, feeds)
    assert sorted((ev.op_type, tuple(ev.covers)) for ev in events) == [("Cast", ()), ("Cast", ()), ("MatMul", ("n0",))]
    assert "" not in mapping and sum(v == ["n0"] for v in mapping.values()) == 1, mapping


def test_names_are_unique_stable_and_keep_given_ones():
    g = mlms_ir.load(mlp(["mlms_ir:n1", "", "mlms_ir:n1", "Tanh_3"]), batch=1)
    names = ort_names(g)
    assert names == ort_names(g)
    assert names["n0"] == "mlms_ir:n1" and names["n3"] == "Tanh_3"  # the first of a name keeps it
    assert names["n1"] == "mlms_ir:n1'" and names["n2"] == "mlms_ir:n2"  # never one a node has
    assert len(set(names.values())) == 4 and "" not in names.values()


def if_model() -> onnx.ModelProto:
    """A main-graph MatMul named ``MatMul_0``; an If whose else branch has a Neg of that same name
    and whose then branch has an unnamed Relu (which ORT profiles as ``Relu_0``)."""
    then = helper.make_graph([helper.make_node("Relu", ["m"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Neg", ["m"], ["e"], name="MatMul_0")], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="MatMul_0"),
             helper.make_node("ReduceSum", ["m"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.ones((4, 4), np.float32), "w"),
                           numpy_helper.from_array(np.array(0, np.float32), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_subgraph_node_of_a_main_graph_nodes_name_is_not_that_node(tmp_path):
    path = tmp_path / "if.onnx"
    onnx.save(if_model(), path)
    g = mlms_ir.load(path)
    feeds = {"x": -np.ones((2, 4), np.float32)}  # the sum is negative: the else branch (the Neg) runs
    bare = bare_profile(path, feeds, "none")
    assert sorted(op for n, op in bare if n == "MatMul_0") == ["MatMul", "Neg"]  # one name, two nodes
    events, _ = traced(g, feeds, opt="none")
    by_op = {ev.op_type: ev.covers for ev in events}
    assert by_op["MatMul"] == ["n0"] and by_op["Neg"] == [] and by_op["If"] == ["n3"]
    # the model ORT runs: every node of every graph named, uniquely, as ort_names says
    run = onnx.load_model_from_string(_model_for_ort(g, "fp32")[0])
    given = [p.name for p in walk(run.graph)]
    assert sorted(given) == sorted(ort_names(g).values()) and len(set(given)) == len(given) == 6


def walk(g: onnx.GraphProto):
    for p in g.node:
        yield p
        for a in p.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from walk(a.g)


def test_names_that_tell_no_node_apart_map_to_nothing():
    """In ORT's optimised graph: a node ORT added without a name is profiled ``<OpType>_<index>``,
    which may be a node's own name; two nodes of one name are one name in the profile; a Cast ORT
    inserted writes an original tensor. None of these is credited to a node, and none is keyed ``''``."""
    g = mlms_ir.load(mlp(["Transpose_3", "r", "mm", "t"]), batch=1)
    opt = helper.make_model(helper.make_graph([
        helper.make_node("MatMul", ["x", "w"], ["a"], name="Transpose_3"),
        helper.make_node("Transpose", ["a"], ["a_t"]),  # added by ORT, without a name
        helper.make_node("Relu", ["a_t"], ["b"], name="r"),
        helper.make_node("MatMul", ["b", "w2"], ["c0"], name="mm"),
        helper.make_node("Cast", ["c0"], ["c"], name="InsertedPrecisionFreeCast_c", to=1),
        helper.make_node("Tanh", ["c"], ["y"], name="t"),
    ], "opt", [], []))
    m = map_optimized_nodes(g, opt)
    assert "" not in m and m["Transpose_3"] == [] and m["InsertedPrecisionFreeCast_c"] == []
    assert m["r"] == ["n1"] and m["mm"] == ["n2"] and m["t"] == ["n3"]
    twice = helper.make_model(helper.make_graph([
        helper.make_node("MatMul", ["x", "w"], ["a"], name="r"),
        helper.make_node("Relu", ["a"], ["b"], name="r"),
    ], "opt", [], []))
    assert map_optimized_nodes(g, twice)["r"] == []
    assert Counter(map(len, map_optimized_nodes(g, opt).values()))[0] == 2


def test_external_data_resolves_and_intermediates_still_come_back(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(mlp([""] * 4), path, save_as_external_data=True, location="w.bin", size_threshold=0)
    g = mlms_ir.load(path, batch=2)
    feeds = random_feeds(g, seed=0)
    with registry.get("ort").prepare(g) as s, registry.get("reference").prepare(g) as ref:
        (tr,) = s.trace(feeds)
        assert sorted(c for ev in tr.events for c in ev.covers) == ["n0", "n1", "n2", "n3"]
        got, want = s.intermediates(feeds, ["a", "b", "c", "y"]), ref.intermediates(feeds, ["a", "b", "c", "y"])
    assert got.keys() == want.keys() == {"a", "b", "c", "y"}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_quantized_unnamed_nodes_map_to_their_matmuls():
    """quantize_dynamic names its nodes after the node they replace (``<name>_quant``): an unnamed
    MatMul once gave every MatMul the same ``_quant``."""
    g = mlms_ir.load(mlp([""] * 4), batch=2)
    events, mapping = traced(g, random_feeds(g, seed=0), precision="int8")
    ops = {n.id: n.op_type for n in g.nodes}
    covered = {c: ev.op_type for ev in events for c in ev.covers}
    assert sorted(covered) == ["n0", "n1", "n2", "n3"], events
    assert all(len(ev.covers) <= 1 for ev in events) and "" not in mapping
    assert {c for c, op in covered.items() if "MatMul" in op} == {c for c, op in ops.items() if op == "MatMul"}


def test_nodes_out_of_execution_order_in_the_file_are_found_by_their_outputs(tmp_path):
    """The loader puts the main graph in execution order, so a node's id is not its place in the
    file; the name ORT sees must still be the node's own."""
    m = mlp([""] * 4)
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend([nodes[3], nodes[1], nodes[0], nodes[2]])
    path = tmp_path / "shuffled.onnx"
    onnx.save(m, path)
    g = mlms_ir.load(path, batch=2)
    events, _ = traced(g, random_feeds(g, seed=0))
    ops = {n.id: (n.op_type, n.outputs) for n in g.nodes}
    assert sorted(c for ev in events for c in ev.covers) == sorted(ops)
    assert all(ops[ev.covers[0]][0] == ev.op_type for ev in events)


def test_a_local_function_call_is_not_given_a_graph_nodes_name(tmp_path):
    """The loader inlines a model-local function (its Relu and Neg are graph nodes of their own);
    the call node in the file ORT loads is none of them, and none of its work is credited to
    another node."""
    f = helper.make_function("local", "Act", ["i"], ["o"], [helper.make_node("Relu", ["i"], ["r"]),
                                                            helper.make_node("Neg", ["r"], ["o"])],
                             [helper.make_opsetid("", 17)])
    m = mlp([""] * 4)
    m.graph.node[1].CopyFrom(helper.make_node("Act", ["a"], ["b"], domain="local"))
    m.opset_import.append(helper.make_opsetid("local", 1))
    m.functions.append(f)
    g = mlms_ir.load(m, batch=2)
    run = onnx.load_model_from_string(_model_for_ort(g, "fp32")[0])
    assert [p.name for p in run.graph.node] == ["mlms_ir:n0", "mlms_ir:?0", "mlms_ir:n3", "mlms_ir:n4"]
    events, mapping = traced(g, random_feeds(g, seed=0))
    ops = {n.id: n.op_type for n in g.nodes}
    assert all(len(ev.covers) <= 1 and all(ops[c] == ev.op_type for c in ev.covers) for ev in events), events
    assert {c for ev in events for c in ev.covers} >= {"n0", "n3", "n4"} and "" not in mapping
