"""The cost pass of a large graph in two processes (mlms_ir.passes.cost._run_split) counts what one
process counts, field for field: checked against the one-process pass on graphs built to cross
its seams (a weight read in both parts, weights behind Identity and Cast, unknown ops)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.passes import cost


def _model(layers: int = 60) -> onnx.ModelProto:
    """A chain of MatMul + Add + Relu (an op no formula knows in the third layer from the end, whose
    output's shape is unknown: the nodes after it are unresolved). Weight ``w{i % 3}``
    is read by every third MatMul, so both parts of a split read each; ``shared`` is read through an
    Identity by the last layer and directly by the first (the first reader owns it); ``half`` is a
    float16 weight read through a Cast."""
    nodes, inits = [], []
    for k in range(3):
        inits.append(numpy_helper.from_array(np.full((8, 8), k + 1, np.float32), f"w{k}"))
    inits.append(numpy_helper.from_array(np.ones((8,), np.float32), "shared"))
    inits.append(numpy_helper.from_array(np.ones((8, 8), np.float16), "half"))
    x = "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [x, f"w{i % 3}"], [f"m{i}"], name=f"mm{i}"))
        bias = "shared" if i == 0 else f"b{i}"
        if i == layers - 1:
            nodes.append(helper.make_node("Identity", ["shared"], ["shared_id"], name="id"))
            bias = "shared_id"
        elif i:
            inits.append(numpy_helper.from_array(np.full((8,), i, np.float32), bias))
        nodes.append(helper.make_node("Add", [f"m{i}", bias], [f"a{i}"], name=f"add{i}"))
        x = f"r{i}"
        if i == layers - 3:
            nodes.append(helper.make_node("Mystery", [f"a{i}"], [x], domain="example.custom", name=f"odd{i}"))
        else:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [x], name=f"relu{i}"))
    nodes.append(helper.make_node("Cast", ["half"], ["half32"], to=TensorProto.FLOAT, name="cast"))
    nodes.append(helper.make_node("MatMul", [x, "half32"], ["y"], name="last"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])


def _facts(r: cost.CostResult):
    return (r.nodes, r.top, r.subgraphs, list(r.param_owner.items()), list(r.param_elements.items()),
            [(k, t.name) for k, t in r.param_tensors.items()])


@pytest.fixture
def split_small(monkeypatch, lone_thread):
    monkeypatch.setattr(cost, "SPLIT_MIN_NODES", 1)


def test_two_processes_count_what_one_counts(split_small):
    g = mlms_ir.load(_model())
    assert cost._split_ok(g)
    one = cost.CostPass(g).run()
    two = cost.count_costs(g)
    assert _facts(two) == _facts(one)
    assert one.param_owner["shared"] == g.producer("a0").id  # read first by add0, in this process' part
    # w0-w2, shared, b1..b58, shared's Identity (a parameter of its own: the torch exporter's way
    # of storing an equal-valued parameter once), half
    assert sum(c.params for c in two.top) == sum(one.param_elements.values()) == 3 * 64 + 8 + 58 * 8 + 8 + 64
    assert {c.status for c in two.top} == {"counted", "free", "unknown_op", "unresolved"}
    assert sum(c.status == "counted" for c in two.top) > 100


def test_the_analysis_is_the_same_json(split_small, monkeypatch):
    split = mlms_ir.analyze(_model(80)).to_json()
    monkeypatch.setattr(cost, "SPLIT_MIN_NODES", 10**9)
    assert split == mlms_ir.analyze(_model(80)).to_json()


def test_a_failing_worker_leaves_its_part_to_this_process(split_small, monkeypatch):
    g = mlms_ir.load(_model())
    one = cost.CostPass(g).run()

    def broken(p, nodes):
        raise ValueError("a figure that is not a plain number")

    monkeypatch.setattr(cost, "_count_part", broken)
    assert _facts(cost.count_costs(g)) == _facts(one)


def test_no_process_to_be_had_counts_in_one(split_small, monkeypatch):
    from mlms_ir.ir import guard

    def no_fork(*a, **k):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    g = mlms_ir.load(_model())
    one = cost.CostPass(g).run()
    monkeypatch.setattr(guard, "start_guarded", no_fork)
    assert _facts(cost.count_costs(g)) == _facts(one)


def test_a_formula_error_in_the_workers_part_is_raised_here(split_small, monkeypatch):
    """The worker's part is counted again here, where the same error is raised as in one pass."""
    from dataclasses import replace

    real = cost.lookup

    def lookup(op_type, domain):
        entry = real(op_type, domain)
        if op_type != "Relu":
            return entry

        def fn(ctx):
            if ctx.node.name == "relu58":  # in the worker's part
                raise ValueError("an attribute out of its domain")
            return entry.fn(ctx)

        return replace(entry, fn=fn)

    monkeypatch.setattr(cost, "lookup", lookup)
    with pytest.raises(mlms_ir.errors.InvalidModelError, match="cannot count node.*relu58"):
        mlms_ir.analyze(_model())


def test_small_nested_or_symbolic_graphs_are_counted_in_one_process(monkeypatch):
    g = mlms_ir.load(_model())
    assert not cost._split_ok(g)  # below SPLIT_MIN_NODES
    cond = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "b", [], [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])])
    nested = helper.make_model(helper.make_graph(
        [helper.make_node("If", ["c"], ["z"], then_branch=cond, else_branch=cond)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    dynamic = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    from mlms_ir.ir.symbolic import resolve

    monkeypatch.setattr(cost, "SPLIT_MIN_NODES", 1)
    for model in (nested, dynamic):
        g = mlms_ir.load(model)
        resolve(g)
        assert not cost._split_ok(g)


def test_a_process_with_other_threads_counts_in_one(split_small):
    import threading

    g = mlms_ir.load(_model())
    assert cost._split_ok(g)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not cost._split_ok(g)
    finally:
        stop.set()
        t.join()
