"""Hostile files the loader must refuse in one plain line (or read correctly): what is not a
regular file, opset versions beyond an int32, malformed sparse initializers, tensors without
their data, graph-level defects, negative dims, deep nesting, and the wording of a few messages.
Each model is built here, tiny."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.errors import InvalidModelError, ModelLoadError


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _relu() -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args, "--store", "none"], capture_output=True, text=True,
                          timeout=120)


def _one_line(r: subprocess.CompletedProcess, text: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("mlms_ir: error:") and text in lines[0], r.stderr


# --------------------------------------------------------------------------- 1. what is read
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    p = tmp_path / "fifo.onnx"
    os.mkfifo(p)
    with pytest.raises(ModelLoadError, match=r"is a FIFO \(named pipe\), not a regular file"):
        mlms_ir.load(p)
    _one_line(_cli("analyze", str(p)), "not a regular file")  # timeout=120: a hang fails the test


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_symlink_to_a_device_is_refused(tmp_path):
    p = tmp_path / "zero.onnx"
    p.symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match="is a character device, not a regular file"):
        mlms_ir.load(p)


def test_a_file_beyond_protobufs_limit_is_refused_before_it_is_read(tmp_path):
    p = tmp_path / "big.onnx"
    with open(p, "wb") as fh:
        fh.truncate(3 << 30)  # sparse: no disk used, and never read
    with pytest.raises(ModelLoadError, match=r"is 3,221,225,472 bytes, more than the 2 GiB protobuf can read"):
        mlms_ir.load(p)


def test_a_symlink_to_a_model_still_loads(tmp_path):
    onnx.save(_relu(), tmp_path / "m.onnx")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "m.onnx")
    assert len(mlms_ir.load(tmp_path / "link.onnx")) == 1


# --------------------------------------------------------------------------- 2. opset versions
@pytest.mark.parametrize("domain,version", [("com.microsoft", 2**62), ("ai.onnx.ml", 2**62), ("com.microsoft", 2**31),
                                            ("com.microsoft", -2**31 - 1), ("ai.onnx.ml", -1)])
def test_an_opset_version_beyond_int32_in_any_domain_is_one_line(domain, version):
    m = _relu()
    m.opset_import.append(helper.make_opsetid(domain, version))
    with pytest.raises(InvalidModelError, match=f"imports opset {version} of domain '{domain}', which is not a valid opset"):
        mlms_ir.load(m)


def test_the_largest_int32_opset_version_is_fine():
    m = _relu()
    m.opset_import.append(helper.make_opsetid("com.microsoft", 2**31 - 1))
    assert len(mlms_ir.load(m)) == 1


# --------------------------------------------------------------------------- 3. sparse initializers
def _sparse(dims, values, indices, name="w", idx_shape=None) -> onnx.SparseTensorProto:
    v = numpy_helper.from_array(np.array(values, np.float32), name)
    ix = np.array(indices, np.int64)
    i = numpy_helper.from_array(ix.reshape(idx_shape) if idx_shape else ix, "i_" + name)
    return helper.make_sparse_tensor(v, i, dims)


def _with_sparse(*sparse, shape=(4,), dense=()) -> onnx.ModelProto:
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", list(shape))], [_vi("y", None)], dense)
    m.graph.sparse_initializer.extend(sparse)
    return m


@pytest.mark.parametrize("lenient", [False, True])
def test_a_valid_sparse_initializer_analyses_without_lenient(lenient):
    m = _with_sparse(_sparse([4], [1, 2], [0, 3]))
    g = mlms_ir.load(m, lenient=lenient)
    w, y = g.tensors["w"], g.tensors["y"]
    assert (w.kind, w.shape, w.numel, w.nbytes) == ("initializer", (4,), 4, 16)
    assert y.shape == (4,)  # inferred from the sparse weight's dense type
    assert g.input_names == ["x"] and g.initializer_names == ["w"]
    assert len(g.model.graph.sparse_initializer) == 1 and len(g.model.graph.input) == 1  # the stand-in is gone
    coo = _with_sparse(_sparse([4, 4], [1, 2], [0, 0, 3, 3], idx_shape=(2, 2)), shape=(4, 4))
    assert mlms_ir.load(coo).tensors["y"].shape == (4, 4)


@pytest.mark.parametrize("case,text", [
    ("negative dim", r"sparse initializer 'w' in the main graph has a negative dim \[-4\]"),
    ("two sparse", "initializer 'w' is defined twice in the main graph"),
    ("sparse and dense", "initializer 'w' is defined twice in the main graph"),
    ("index beyond", r"has an index out of range for its shape \[4\]"),
    ("negative index", r"has an index out of range for its shape \[4\]"),
    ("coordinate beyond", r"has an index out of range for its shape \[4, 4\]"),
    ("count mismatch", r"has 3 values but indices of shape \[2\]; they must be \[3\] or \[3, 1\]"),
    ("more values than elements", r"holds 5 values but its shape \[4\] has 4 elements"),
])
@pytest.mark.parametrize("lenient", [False, True])
def test_a_malformed_sparse_initializer_is_refused(case, text, lenient):
    ok = _sparse([4], [1, 2], [0, 3])
    shape = (4,)
    sparse, dense = [ok], []
    if case == "negative dim":
        sparse = [_sparse([-4], [1], [0])]
    elif case == "two sparse":
        sparse = [ok, _sparse([4], [1, 2], [0, 3])]
    elif case == "sparse and dense":
        dense = [numpy_helper.from_array(np.ones(4, np.float32), "w")]
    elif case == "index beyond":
        sparse = [_sparse([4], [1, 2], [0, 99])]
    elif case == "negative index":
        sparse = [_sparse([4], [1, 2], [-1, 0])]
    elif case == "coordinate beyond":
        sparse, shape = [_sparse([4, 4], [1, 2], [0, 0, 3, 99], idx_shape=(2, 2))], (4, 4)
    elif case == "count mismatch":
        sparse = [_sparse([4], [1, 2, 3], [0, 1])]
    elif case == "more values than elements":
        sparse = [_sparse([4], [1, 2, 3, 4, 5], [0, 1, 2, 3, 0])]
    with pytest.raises(InvalidModelError, match=text):
        mlms_ir.load(_with_sparse(*sparse, shape=shape, dense=dense), lenient=lenient)


# --------------------------------------------------------------------------- 4. tensors without their data
def _matmul_with(w: onnx.TensorProto, t=TensorProto.FLOAT) -> onnx.ModelProto:
    n = w.dims[0]
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, n], t)], [_vi("y", [1, n], t)], [w])


def test_a_weight_with_no_data_is_refused():
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([1024, 1024])
    for lenient in (False, True):
        with pytest.raises(InvalidModelError,
                           match=r"tensor 'w' of shape \[1024, 1024\] holds no data \(it needs 1,048,576 values\)"):
            mlms_ir.load(_matmul_with(w), lenient=lenient)


def test_a_float16_weight_short_in_int32_data_is_refused():
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT16
    w.dims.extend([64, 64])
    w.int32_data.extend([15360] * 10)
    with pytest.raises(InvalidModelError, match=r"tensor 'w' of shape \[64, 64\] needs 4,096 values but holds 10"):
        mlms_ir.load(_matmul_with(w, TensorProto.FLOAT16))


def test_tensors_whose_data_is_whole_still_load():
    # an empty tensor needs no data; int32_data packs int4 two a value; complex numbers take two floats each
    empty = TensorProto()
    empty.name, empty.data_type = "e", TensorProto.FLOAT
    empty.dims.extend([0, 4])
    half = helper.make_tensor("w", TensorProto.FLOAT16, [4, 4], np.ones(16, np.float16))
    int4 = helper.make_tensor("q", TensorProto.INT4, [5], [1, 0, 1, 1, 0])
    cplx = helper.make_tensor("c", TensorProto.COMPLEX64, [3], [1 + 1j] * 3)
    assert len(half.int32_data) == 16 and len(int4.int32_data) == 3 and len(cplx.float_data) == 6
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Identity", ["e"], ["e2"]),
             helper.make_node("Identity", ["q"], ["q2"]), helper.make_node("Identity", ["c"], ["c2"])]
    m = _model(nodes, [_vi("x", [1, 4], TensorProto.FLOAT16)],
               [_vi("y", [1, 4], TensorProto.FLOAT16), _vi("e2", [0, 4]), _vi("q2", [5], TensorProto.INT4),
                _vi("c2", [3], TensorProto.COMPLEX64)], [half, empty, int4, cplx], opsets=(("", 21),))
    g = mlms_ir.load(m)
    assert g.tensors["w"].nbytes == 32 and g.tensors["e"].numel == 0


# --------------------------------------------------------------------------- 5. graph-level defects
def test_a_duplicate_graph_input_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2]), _vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(InvalidModelError, match="graph input 'x' is declared twice in the main graph"):
        mlms_ir.load(m)


def test_a_graph_output_nothing_produces_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("z", [2])])
    for lenient in (False, True):
        with pytest.raises(InvalidModelError, match="graph output 'z' of the main graph is not produced by any node"):
            mlms_ir.load(m, lenient=lenient)


def test_outputs_that_are_inputs_or_initializers_are_fine():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    m = _model([], [_vi("x", [2])], [_vi("x", [2]), _vi("w", [2])], [w])
    assert mlms_ir.load(m).output_names == ["x", "w"]


def test_an_empty_op_type_is_refused(tmp_path):
    m = _model([helper.make_node("", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(InvalidModelError, match="node #0 of the main graph has no op type"):
        mlms_ir.load(m)
    branch = helper.make_graph([helper.make_node("", ["x"], ["b"])], "then", [], [_vi("b", [2])])
    keep = helper.make_graph([helper.make_node("Identity", ["x"], ["k"])], "else", [], [_vi("k", [2])])
    n = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=keep)
    nested = _model([n], [_vi("c", [], TensorProto.BOOL), _vi("x", [2])], [_vi("y", [2])])
    p = tmp_path / "nested.onnx"
    onnx.save(nested, p)
    _one_line(_cli("analyze", str(p)), "a node of a subgraph has no op type")


# --------------------------------------------------------------------------- 6. negative dims
@pytest.mark.parametrize("value,warned", [(-5, True), (-2**63, True), (-1, False)])
def test_a_negative_input_dim_is_unknown_and_named_in_a_warning(value, warned):
    m = _relu()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = value
    g = mlms_ir.load(m)
    assert g.tensors["x"].shape == ("x_d0",)
    text = f"dim 0 of input 'x' is {value}, read as unknown"
    assert (text in g.warnings) is warned
    if warned:
        assert text in mlms_ir.analyze(m).warnings


# --------------------------------------------------------------------------- 7. deep nesting
def _nested_bytes(depth: int) -> bytes:
    """A model whose If nests ``depth`` levels deep, written as protobuf bytes (protobuf itself
    refuses to build the message: it checks the depth on every copy)."""
    def field(number: int, payload: bytes) -> bytes:
        def varint(n: int) -> bytes:
            out = b""
            while n >= 0x80:
                out += bytes([n & 0x7F | 0x80])
                n >>= 7
            return out + bytes([n])
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    num = {m.DESCRIPTOR.name: {f.name: f.number for f in m.DESCRIPTOR.fields}
           for m in (onnx.AttributeProto, onnx.NodeProto, onnx.GraphProto, onnx.ModelProto)}
    leaf = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "leaf", [], [_vi("r", [2])]).SerializeToString()
    out = field(num["GraphProto"]["output"], _vi("r", [2]).SerializeToString())
    body = leaf
    for k in range(depth):
        attrs = b""
        for name, g in (("then_branch", body), ("else_branch", leaf)):
            a = onnx.AttributeProto(name=name, type=onnx.AttributeProto.GRAPH).SerializeToString()
            attrs += field(num["NodeProto"]["attribute"], a + field(num["AttributeProto"]["g"], g))
        node = helper.make_node("If", ["c"], ["r"]).SerializeToString() + attrs
        body = field(num["GraphProto"]["node"], node) + out
    ins = b"".join(field(num["GraphProto"]["input"], v.SerializeToString())
                   for v in (_vi("x", [2]), _vi("c", [], TensorProto.BOOL)))
    m = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 17)])
    m.ClearField("graph")
    return m.SerializeToString() + field(num["ModelProto"]["graph"], body + ins)


def test_subgraphs_nested_beyond_protobufs_limit_are_named_as_such():
    ok = mlms_ir.load(_nested_bytes(5))  # the writer makes what protobuf reads, below its limit
    assert sum(1 for _ in ok.walk()) == 5 * 2 + 1
    data = _nested_bytes(40)
    with pytest.raises(ModelLoadError, match="nests messages deeper than protobuf's decoding limit allows"):
        mlms_ir.load(data)


def test_truncated_data_keeps_its_own_message():
    data = _relu().SerializeToString()
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        mlms_ir.load(data[:-7])


# --------------------------------------------------------------------------- 8. wording
def test_a_cycle_names_the_graph_plainly():
    m = _model([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                helper.make_node("Identity", ["b"], ["y"])], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(InvalidModelError, match=r"^the main graph has a cycle through node\(s\)"):
        mlms_ir.load(m)


@pytest.mark.parametrize("what", ["graph input", "initializer"])
def test_a_node_that_redefines_an_input_or_initializer_says_so(what):
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    out = "x" if what == "graph input" else "w"
    m = _model([helper.make_node("Relu", ["x"], [out]), helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [2])],
               [_vi("y", [2])], [w])
    article = "a" if what == "graph input" else "an"
    with pytest.raises(InvalidModelError, match=f"node #0 '' \\(Relu\\) redefines {article} {what} of that name"):
        mlms_ir.load(m)


def test_a_tensor_two_nodes_produce_names_both():
    m = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])], [_vi("x", [2])],
               [_vi("y", [2])])
    with pytest.raises(InvalidModelError, match=r"produced twice \(by node #0 '' \(Relu\) and node #1 '' \(Neg\)\)"):
        mlms_ir.load(m)


def test_external_data_fields_that_are_not_text_are_one_line(tmp_path):
    """Protobuf hands back bytes for a location that is not UTF-8: refused with one sentence (it
    was a TypeError traceback from pathlib)."""
    from mlms_ir.errors import ExternalDataError

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "LOCATIONX"
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(b"LOCATIONX", b"\xff\xfeCATIONX"))
    line = "tensor 'w' has external-data fields that are not valid UTF-8 text; the file is corrupt"
    with pytest.raises(ExternalDataError, match=line):
        mlms_ir.load(path)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "analyze", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr == f"mlms_ir: error: {line}\n"
