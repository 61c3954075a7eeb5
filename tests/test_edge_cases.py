"""Regression tests for edge cases found in review: each was a wrong number, a traceback or a
read of external data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.errors import ExternalDataError, InvalidModelError, ShapeBindingError


def test_constant_with_external_data_is_never_read(tmp_path, monkeypatch):
    (tmp_path / "ext").mkdir()
    (tmp_path / "cwd").mkdir()
    t = TensorProto()
    t.name, t.data_type = "c", TensorProto.INT64
    t.dims.extend([2])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "shape.bin"), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Reshape", ["x", "c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    p = tmp_path / "ext" / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), p)
    np.array([2, 4], np.int64).tofile(tmp_path / "ext" / "shape.bin")
    np.array([8, 1], np.int64).tofile(tmp_path / "cwd" / "shape.bin")
    monkeypatch.chdir(tmp_path / "cwd")
    a = mlms_ir.analyze(p, lenient=True)
    assert a.nodes[1].output_shapes[0] != [8, 1]  # the file in the working directory was not read


def _loop(trip: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[32] x) => (float[32] y) {{
      {trip}
      c = Constant <value = bool {{1}}> ()
      y = Loop (n, c, x) <body = b (int64 i, bool ci, float[32] xi) => (bool co, float[32] xo) {{
        co = Identity (ci)
        xo = Relu (xi)
      }}>
    }}""")


def test_loop_with_the_no_limit_sentinel_counts_per_iteration():
    a = mlms_ir.analyze(_loop("n = Constant <value = int64 {9223372036854775807}> ()"))
    assert a.totals.flops == 32 and not a.totals.complete
    assert any("one iteration only" in w for w in a.warnings)
    a = mlms_ir.analyze(_loop("n = Constant <value = int64 {3}> ()"))
    assert a.totals.flops == 3 * 32 and a.totals.complete
    relu = next(o for o in a.op_types if o.op_type == "Relu")
    assert relu.flops == 3 * 32  # the op-type table scales subgraph nodes like the totals


def test_outer_scope_reads_keep_tensors_alive():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[4,8] x, float[8,16] w) => (float[4,16] y) {
      t = MatMul (x, w)
      y = If (c) <then_branch = th () => (float[4,16] a) { a = Relu (t) },
                  else_branch = el () => (float[4,16] b) { b = MatMul (x, w) }>
    }""")
    a = mlms_ir.analyze(m)
    # at the If: c (1) + x (128) + w (512) + t (256) + y (256) bytes are all live
    assert a.totals.peak_activation_bytes == 1 + 128 + 512 + 256 + 256


def test_batch_skips_inputs_with_a_fixed_leading_dim():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x, float[1] s) => (y) { y = Mul (x, s) }""")
    g = mlms_ir.load(m, batch=8)
    assert g.tensor("y").shape == (8, 4) and g.tensor("s").shape == (1,)


@pytest.mark.parametrize("kwargs", [{"batch": 10**20}, {"input_shapes": {"x": 3}}, {"input_shapes": ["x:3x4x"]},
                                    {"input_shapes": ["x:3x4", "x:5x4"]}, {"dims": f"N={10**19}"}])
def test_bad_binding_values(kwargs):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x) => (y) { y = Relu (x) }""")
    with pytest.raises(ShapeBindingError):
        mlms_ir.load(m, **kwargs)


def test_reloading_a_graph_rebinds_it():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,64] x) => (y) { y = MatMul (x, w) }""")
    m.graph.initializer.append(numpy_helper.from_array(np.ones((64, 64), np.float32), "w"))
    g = mlms_ir.load(m)
    assert mlms_ir.load(g, batch=2).tensor("y").shape == (2, 64)


def test_duplicate_initializers_and_odd_external_locations(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (y) { y = Add (x, w) }""")
    m.graph.initializer.extend([numpy_helper.from_array(np.ones(2, np.float32), "w")] * 2)
    with pytest.raises(InvalidModelError, match="defined twice"):
        mlms_ir.analyze(m)
    t = TensorProto()
    t.name, t.data_type = "w", TensorProto.FLOAT
    t.dims.extend([2])
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "a\x00b"
    del m.graph.initializer[:]
    m.graph.initializer.append(t)
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    with pytest.raises(ExternalDataError):
        mlms_ir.analyze(p)


def test_matmulnbits_counts_unpacked_weights():
    k, n = 64, 32
    b = numpy_helper.from_array(np.zeros((n, 1, 32), np.uint8), "B")  # 4-bit, block 64: K*N/2 bytes
    s = numpy_helper.from_array(np.ones((n,), np.float32), "scales")
    g = helper.make_graph(
        [helper.make_node("MatMulNBits", ["x", "B", "scales"], ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=64)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])], [b, s],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    a = mlms_ir.analyze(m)
    assert a.totals.params == k * n and a.totals.macs == 2 * n * k


def test_markup_in_names_is_printed_as_text(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Relu (x) }""")
    m.graph.node[0].name = "[/bold]evil[link=http://x]"
    p = tmp_path / "a[bold]b.onnx"
    onnx.save(m, p)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "analyze", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "a[bold]b.onnx" in r.stdout and "[/bold]evil" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "analyze", str(p), "--output", str(tmp_path / "no" / "such" / "dir.txt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr
