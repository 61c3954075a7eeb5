"""Bad input gets one clear error (a documented exception; exit 2 from the CLI), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnx.parser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import mlms_ir
from mlms_ir.errors import (
    ExternalDataError,
    InvalidModelError,
    MlmsIrError,
    ModelLoadError,
    UnsupportedOpsetError,
)

from conftest import small_cnn


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args], capture_output=True, text=True, timeout=120)


def _with_external(tmp_path, location: str, *, write: bool = True, size: int | None = None):
    """A model whose one weight is stored externally at ``location`` (relative to tmp_path/model)."""
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = d / "model.onnx"
    p.write_bytes(m.SerializeToString())
    if write:
        (d / location).write_bytes(b"\0" * (64 if size is None else size))
    return p


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        mlms_ir.analyze(tmp_path / "nope.onnx")


def test_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="is a directory"):
        mlms_ir.analyze(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        mlms_ir.analyze(p)


def test_truncated_file(tmp_path):
    data = small_cnn().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        mlms_ir.analyze(p)


def test_text_and_random_bytes(tmp_path):
    p = tmp_path / "readme.onnx"
    p.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="not"):
        mlms_ir.analyze(p)
    rng = np.random.default_rng(0)
    for _ in range(20):
        try:
            mlms_ir.analyze(rng.bytes(int(rng.integers(1, 400))))
        except MlmsIrError:
            pass


def test_dangling_input():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Add (x, ghost) }""")
    with pytest.raises(InvalidModelError, match="reads 'ghost'"):
        mlms_ir.analyze(m)


def test_cycle():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
      a = Add (x, b)
      b = Relu (a)
      y = Identity (b)
    }""")
    with pytest.raises(InvalidModelError, match="cycle"):
        mlms_ir.analyze(m)


def test_tensor_defined_twice():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Relu (x) y = Neg (x) }""")
    with pytest.raises(InvalidModelError, match="produced twice"):
        mlms_ir.analyze(m)


def test_unsupported_opset():
    m = small_cnn()
    m.opset_import[0].version = 999
    with pytest.raises(UnsupportedOpsetError, match="opset 999"):
        mlms_ir.analyze(m)
    m.opset_import[0].version = 17
    m.ir_version = 999
    with pytest.raises(UnsupportedOpsetError, match="IR version 999"):
        mlms_ir.analyze(m)


def test_bad_attribute():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,8,8] x) => (y) { y = MaxPool <kernel_shape=[2,2,2]> (x) }""")
    with pytest.raises(InvalidModelError):
        mlms_ir.analyze(m)
    m2 = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,8,8] x) => (y) { y = Softmax <axis="zero"> (x) }""")
    with pytest.raises(InvalidModelError, match="invalid"):
        mlms_ir.analyze(m2)


def test_unknown_op_is_reported_not_fatal():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "acme" : 1]>
    g (float[2,3] x) => (y) { a = Relu (x) y = acme.Frobnicate (a) }""")
    a = mlms_ir.analyze(m)
    assert [(u.domain, u.op_type, u.count) for u in a.unknown_ops] == [("acme", "Frobnicate", 1)]
    assert a.totals.flops == 6  # the Relu: 2*3 elements
    assert not a.totals.complete


def test_external_data_ok_is_never_read(tmp_path):
    p = _with_external(tmp_path, "w.bin")
    a = mlms_ir.analyze(p)
    assert a.totals.params == 16
    assert a.model.external_data_bytes == 64


def test_external_data_missing(tmp_path):
    p = _with_external(tmp_path, "w.bin", write=False)
    with pytest.raises(ExternalDataError, match="missing"):
        mlms_ir.analyze(p)


def test_external_data_too_short(tmp_path):
    p = _with_external(tmp_path, "w.bin", size=10)
    with pytest.raises(ExternalDataError, match="too short"):
        mlms_ir.analyze(p)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_folder(tmp_path, location):
    p = _with_external(tmp_path, "w.bin")
    m = onnx.load(p, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    p.write_bytes(m.SerializeToString())
    with pytest.raises(ExternalDataError, match="outside the model's folder"):
        mlms_ir.analyze(p)


def test_external_data_symlink_escape(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 64)
    p = _with_external(tmp_path, "w.bin", write=False)
    os.symlink(outside, p.parent / "w.bin")
    with pytest.raises(ExternalDataError, match="outside the model's folder"):
        mlms_ir.analyze(p)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "missing.onnx",
        lambda d: d,
        lambda d: (d / "e.onnx").write_bytes(b"") or d / "e.onnx",
        lambda d: (d / "t.onnx").write_text("hello") or d / "t.onnx",
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path, make):
    r = _cli("analyze", str(make(tmp_path)))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlms_ir: error: "), r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_binding(cnn_path):
    r = _cli("analyze", str(cnn_path), "--input-shape", "bogus:1x2")
    assert r.returncode == 2
    assert r.stderr.strip() == "mlms_ir: error: the model has no input 'bogus'; its inputs are: x"


_VALID = small_cnn().SerializeToString()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.sampled_from(["set", "delete", "insert"])),
        min_size=1,
        max_size=8,
    ),
    cut=st.integers(1, len(_VALID)),
)
def test_random_mutations_give_a_result_or_a_clean_error(edits, cut):
    data = bytearray(_VALID[:cut] if cut < len(_VALID) and cut % 7 == 0 else _VALID)
    for pos, val, kind in edits:
        pos = min(pos, len(data) - 1)
        if kind == "set":
            data[pos] = val
        elif kind == "delete" and len(data) > 1:
            del data[pos]
        else:
            data.insert(pos, val)
    try:
        a = mlms_ir.analyze(bytes(data))
    except MlmsIrError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        if a.totals.symbolic:  # a mutated dim became a free symbol: the figures are formulas
            assert a.totals.macs is None or a.totals.macs >= 0
        else:
            assert a.totals.macs >= 0 and a.totals.flops >= 0


_OPS = ["Conv", "Relu", "Gemm", "MatMul", "Flatten", "GlobalAveragePool", "Reshape", "Softmax", "MaxPool", "Add", "LSTM", "Einsum", "Attention"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.lists(st.integers(-3, 70), min_size=0, max_size=5),
    attr=st.sampled_from(["pads", "strides", "kernel_shape", "dilations", "group", "transB", "axis"]),
    values=st.lists(st.integers(-4, 9), min_size=0, max_size=6),
    node=st.integers(0, 4),
    op=st.sampled_from(_OPS + [None]),
)
def test_semantic_mutations_give_a_result_or_a_clean_error(dims, attr, values, node, op):
    m = small_cnn()
    shape = m.graph.input[0].type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = d
    n = m.graph.node[node]
    del n.attribute[:]
    if attr in ("group", "transB", "axis"):
        n.attribute.append(helper.make_attribute(attr, values[0] if values else 0))
    else:
        n.attribute.append(helper.make_attribute(attr, values, attr_type=onnx.AttributeProto.INTS))
    if op is not None:
        n.op_type = op
    try:
        a = mlms_ir.analyze(m)
    except MlmsIrError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        if a.totals.symbolic:  # a mutated dim became a free symbol: the figures are formulas
            assert a.totals.macs is None or a.totals.macs >= 0
        else:
            assert a.totals.macs >= 0 and a.totals.flops >= 0
