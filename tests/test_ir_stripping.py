"""The loader strips large embedded tensors before shape inference; inference must still work.

ONNX's data propagation parses the values of every integer scalar or 1-D initializer and Constant
that feeds a node (Unsqueeze, Cast, Gather, ...) and fails on one whose data is absent. timm's
CoAtNet holds such a tensor: a 300 KB int64 relative-position index, Unsqueezed and fed to GatherND
(``Cannot parse data from external tensors``). These graphs reproduce that pattern without timm.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
import mlms_ir.ir as ir

N, HEADS = 96, 4  # N*N int64 indices: 72 KB, above the loader's keep threshold for integers
K = 64  # rows of the bias table


def _rel_pos_graph(*, as_constant: bool = False, prefix: str = "", outer_x: bool = False) -> onnx.GraphProto:
    """x[B, HEADS, N, N] + bias, bias = table gathered at a flat index table (as timm's RelPosBias).

    ``prefix`` names every value but x; ``outer_x`` takes x from the outer scope (a subgraph).
    """
    rng = np.random.default_rng(0)
    p = prefix
    index = numpy_helper.from_array(rng.integers(0, K, N * N, dtype=np.int64), f"{p}rel_index")
    assert index.ByteSize() > ir._INT_KEEP_BYTES
    inits = [
        numpy_helper.from_array(rng.standard_normal((K, HEADS)).astype(np.float32), f"{p}table"),
        numpy_helper.from_array(np.array([-1], np.int64), f"{p}axes_last"),
        numpy_helper.from_array(np.array([N, N, HEADS], np.int64), f"{p}bias_shape"),
        numpy_helper.from_array(np.array([0], np.int64), f"{p}axes_first"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", [f"{p}rel_index", f"{p}axes_last"], [f"{p}index2"]),
        helper.make_node("GatherND", [f"{p}table", f"{p}index2"], [f"{p}gathered"]),
        helper.make_node("Reshape", [f"{p}gathered", f"{p}bias_shape"], [f"{p}bias_nnh"]),
        helper.make_node("Transpose", [f"{p}bias_nnh"], [f"{p}bias_hnn"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", [f"{p}bias_hnn", f"{p}axes_first"], [f"{p}bias"]),
        helper.make_node("Add", ["x", f"{p}bias"], [f"{p}y"]),
    ]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], [f"{p}rel_index"], name=f"{p}const_index", value=index))
    else:
        inits.insert(1, index)
    x = [] if outer_x else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", HEADS, N, N])]
    return helper.make_graph(nodes, f"{p}relpos", x, [helper.make_tensor_value_info(f"{p}y", TensorProto.FLOAT, ["B", HEADS, N, N])],
                             initializer=inits)


def _model(graph: onnx.GraphProto, ir_version: int = 8) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = ir_version
    onnx.checker.check_model(m)
    return m


def _unstripped(model: onnx.ModelProto, monkeypatch, **kwargs) -> mlms_ir.Graph:
    with monkeypatch.context() as mp:
        mp.setattr(ir, "_INT_KEEP_BYTES", 1 << 30)
        return mlms_ir.load(model, **kwargs)


def _check(model: onnx.ModelProto, monkeypatch) -> mlms_ir.Graph:
    before = model.SerializeToString()
    g = mlms_ir.load(model, batch=2)  # strict: failed with "Cannot parse data from external tensors"
    assert model.SerializeToString() == before
    assert g.warnings == []
    assert g.tensor("index2").shape == (N * N, 1)
    assert g.tensor("bias").shape == (1, HEADS, N, N)
    assert g.tensor("y").shape == (2, HEADS, N, N)
    assert g.input_names == ["x"] and [vi.name for vi in g.proto.input] == [vi.name for vi in model.graph.input]
    assert g.initializer_names == [t.name for t in model.graph.initializer]
    assert [n.op_type for n in g.nodes] == [n.op_type for n in model.graph.node]
    ref = _unstripped(model, monkeypatch, batch=2)
    assert {k: t.shape for k, t in g.tensors.items()} == {k: t.shape for k, t in ref.tensors.items()}
    a, b = mlms_ir.analyze(g).totals, mlms_ir.analyze(ref).totals
    assert a.complete and (a.macs, a.flops, a.params, a.weight_bytes) == (b.macs, b.flops, b.params, b.weight_bytes)
    lenient = mlms_ir.load(model, batch=2, lenient=True)
    assert lenient.warnings == [] and lenient.tensor("y").shape == (2, HEADS, N, N)
    return g


def test_large_int_index_initializer_is_stripped_yet_inferred(monkeypatch):
    g = _check(_model(_rel_pos_graph()), monkeypatch)
    index = g.initializer_protos["rel_index"]
    assert ir._is_stripped(index) and list(index.dims) == [N * N]  # its data was still not kept
    assert g.tensor("rel_index").kind == "initializer"


def test_large_int_index_constant_is_stripped_yet_inferred(monkeypatch):
    g = _check(_model(_rel_pos_graph(as_constant=True)), monkeypatch)
    const = g.proto.node[0]
    assert (const.op_type, const.name, list(const.output)) == ("Constant", "const_index", ["rel_index"])
    assert ir._is_stripped(const.attribute[0].t)


def test_large_int_index_initializer_listed_as_input_ir3(monkeypatch):
    graph = _rel_pos_graph()
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in graph.initializer)
    _check(_model(graph, ir_version=3), monkeypatch)


def test_large_int_index_in_a_subgraph(monkeypatch):
    then_g = _rel_pos_graph(prefix="t_", outer_x=True)
    else_g = _rel_pos_graph(prefix="e_", outer_x=True, as_constant=True)
    outer = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "outer",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", HEADS, N, N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", HEADS, N, N])],
    )
    model = _model(outer)
    before = model.SerializeToString()
    g = mlms_ir.load(model, batch=2)
    assert model.SerializeToString() == before and g.warnings == []
    assert g.tensor("y").shape == (2, HEADS, N, N)
    assert g.input_names == ["c", "x"]
    branches = {a.name: a.g for a in g.proto.node[0].attribute}
    assert [t.name for t in branches["then_branch"].initializer] == [t.name for t in then_g.initializer]
    assert branches["else_branch"].node[0].op_type == "Constant"
    subs = g.nodes[0].subgraphs
    assert subs["then_branch"].tensor("t_bias").shape == (1, HEADS, N, N)
    assert subs["else_branch"].tensor("e_index2").shape == (N * N, 1)


def test_nothing_hidden_leaves_the_model_alone(cnn):
    m = onnx.ModelProto()
    m.CopyFrom(cnn)
    hidden = ir._hide_stripped_values(m)
    assert not hidden and m.SerializeToString() == cnn.SerializeToString()


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_other_stripped_tensors_are_not_hidden(dtype):
    # int32 feeds data propagation too; float 1-D never does and stays an initializer
    t = numpy_helper.from_array(np.zeros(20000, dtype), "big")
    g = helper.make_graph([helper.make_node("Cast", ["big"], ["y"], to=TensorProto.INT64)], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [20000])], initializer=[t])
    m = _model(g)
    hides = ir._strip_weight_data(m.graph)
    hidden = ir._hide_stripped_values(m)
    assert bool(hidden) == (dtype == np.int32) == hides  # the strip's walk tells whether there is anything to hide
    assert mlms_ir.load(_model(g)).tensor("y").shape == (20000,)


def test_external_data_small_ints_are_read_large_ones_hidden(tmp_path, monkeypatch):
    """A model saved with every tensor external (size_threshold=0): the small shape and axes
    tensors are read in for data propagation (Reshape's output shape is known), the 72 KB index
    table is hidden as if stripped, and the figures equal those of the same model embedded."""
    m = _model(_rel_pos_graph())
    embedded = mlms_ir.load(m, batch=2)
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    assert all(t.data_location == TensorProto.EXTERNAL for t in onnx.load(path, load_external_data=False).graph.initializer)
    g = mlms_ir.load(path, batch=2)  # strict: failed with "Cannot parse data from external tensors"
    assert g.warnings == [] and g.tensor("bias").shape == (1, HEADS, N, N) and g.tensor("y").shape == (2, HEADS, N, N)
    assert {k: t.shape for k, t in g.tensors.items()} == {k: t.shape for k, t in embedded.tensors.items()}
    a, b = mlms_ir.analyze(g).totals, mlms_ir.analyze(embedded).totals
    assert (a.macs, a.flops, a.params, a.weight_bytes) == (b.macs, b.flops, b.params, b.weight_bytes)
    protos = g.initializer_protos
    assert protos["bias_shape"].data_location != TensorProto.EXTERNAL  # read in: 24 bytes
    assert protos["rel_index"].data_location == TensorProto.EXTERNAL  # 72 KB: never read
    # a truncated data file is still a clean error, before anything is read
    data = (tmp_path / "m.data").read_bytes()
    (tmp_path / "m.data").write_bytes(data[:100])
    with pytest.raises(mlms_ir.errors.ExternalDataError, match="too short"):
        mlms_ir.load(path, batch=2)


def test_external_edge_cases(tmp_path):
    """A negative dim on an external tensor is a clean error; a small external shape tensor of a
    model given as a proto (no folder to read it from) is not hidden: strict inference refuses it
    rather than leaving the Reshape's shape unknown."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    shp = numpy_helper.from_array(np.array([4, 4], np.int64), "shp")
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shp"], ["r"])], "g", [x],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["d0", "d1"])], [shp])
    m = _model(g)
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, location="m.data", size_threshold=0)
    assert mlms_ir.load(path).tensor("r").shape == (4, 4)  # read in from the file
    proto = onnx.load(path, load_external_data=False)
    with pytest.raises(mlms_ir.errors.MlmsIrError):
        mlms_ir.load(proto)  # no folder: nothing is read, and nothing is silently hidden
    bad = onnx.load(path, load_external_data=False)
    bad.graph.initializer[0].dims[0] = -2
    onnx.save(bad, tmp_path / "bad.onnx")
    with pytest.raises(mlms_ir.errors.ExternalDataError, match="negative dim"):
        mlms_ir.load(tmp_path / "bad.onnx")
