"""Memory, structure, roofline and the JSON schema, on hand-computed models."""

from __future__ import annotations

import json

import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper, numpy_helper
import numpy as np

import mlms_ir
from mlms_ir.errors import UnknownDeviceError
from mlms_ir.passes.roofline import known_devices, resolve_device
from mlms_ir.results.analysis import SCHEMA_VERSION


def test_small_cnn_totals(cnn):
    a = mlms_ir.analyze(cnn, batch=2)
    t = a.totals
    # Conv: 2*8*16*16 out * 3*3*3 = 110592 MACs; Gemm: 2*10*8 = 160 MACs
    assert t.macs == 110592 + 160
    # params: w1 8*3*3*3=216 + b1 8 + w2 10*8=80 + b2 10
    assert t.params == 216 + 8 + 80 + 10
    assert t.param_bytes == 4 * t.params
    assert t.params_by_dtype == {"float": t.params}
    # FLOPs: conv 2*110592 + bias 4096; relu 4096; GAP 4096 (input elements); flatten 0; gemm 2*160 + 20
    assert t.flops == 2 * 110592 + 4096 + 4096 + 4096 + 2 * 160 + 20
    # activations: c1, r1 (2*8*16*16*4 = 16384 B each), p1, f1 (2*8*4 = 64 B each); y is an output
    assert t.activation_bytes == 2 * 16384 + 2 * 64
    # peak: at Relu, c1 and r1 are live (x was last read by the Conv): 16384 + 16384
    assert t.peak_activation_bytes == 32768
    assert t.peak_at_node == "n1"
    assert t.input_bytes == 2 * 3 * 16 * 16 * 4 and t.output_bytes == 2 * 10 * 4
    assert t.complete


def test_peak_counts_inputs_while_live():
    # x stays live until the Add at the end, so it is in every step's footprint
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[256] x) => (float[256] y) {
      a = Relu (x)
      b = Neg (a)
      y = Add (b, x)
    }""")
    a = mlms_ir.analyze(m)
    # at Neg: x, a, b live = 3 * 1024 B; at Add: x, b, y = 3 * 1024 B
    assert a.totals.peak_activation_bytes == 3 * 1024
    assert a.totals.activation_bytes == 2 * 1024


def test_shape_constants_are_not_params():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x) => (y) {
      r = Reshape (x, shp)
      y = MatMul (r, w)
    }""")
    m.graph.initializer.extend([
        numpy_helper.from_array(np.array([2, 12], dtype=np.int64), "shp"),
        numpy_helper.from_array(np.ones((12, 5), dtype=np.float32), "w"),
    ])
    a = mlms_ir.analyze(m)
    assert a.totals.params == 60
    assert a.totals.weight_bytes == 60 * 4 + 2 * 8
    assert a.totals.constant_bytes == 16


def test_shared_weight_counted_once():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,4] x) => (y) {
      a = MatMul (x, w)
      y = MatMul (a, w)
    }""")
    m.graph.initializer.append(numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w"))
    a = mlms_ir.analyze(m)
    assert a.totals.params == 16
    assert [n.params for n in a.nodes] == [16, 0]


def _chain(n_blocks: int, named: bool) -> onnx.ModelProto:
    nodes, inits = [], []
    prev = "x"
    for i in range(n_blocks):
        scope = f"/layers/layers.{i}" if named else ""
        w = f"w{i}"
        inits.append(numpy_helper.from_array(np.ones((8, 8), dtype=np.float32), w))
        nodes += [
            helper.make_node("MatMul", [prev, w], [f"m{i}"], name=f"{scope}/fc/MatMul" if named else ""),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"{scope}/act/Relu" if named else ""),
            helper.make_node("Add", [f"r{i}", prev], [f"o{i}"], name=f"{scope}/Add" if named else ""),
        ]
        prev = f"o{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], name="/head/Softmax" if named else ""))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_repeated_blocks_from_name_scopes():
    a = mlms_ir.analyze(_chain(6, named=True))
    b = a.blocks[0]
    assert (b.name, b.count, b.nodes_per_block, b.found_by) == ("layers.#", 6, 3, "name scopes")
    assert b.op_types == {"MatMul": 1, "Relu": 1, "Add": 1}
    assert b.macs == 6 * 2 * 8 * 8  # six 2x8 @ 8x8 MatMuls
    assert b.params == 6 * 64
    assert b.instances[0] == "layers/layers.0"


def test_repeated_blocks_from_the_dynamo_exporters_scope_metadata(tmp_path):
    """Nodes named by op only ("MatMul_3"), their module path in ``pkg.torch.onnx.name_scopes``
    metadata, as torch's dynamo exporter writes them: the same blocks from a file, bytes and a
    ModelProto. A file without such metadata is known not to hold it (its nodes' metadata is
    then not read)."""
    m = _chain(4, named=False)
    for k, node in enumerate(m.graph.node):
        layer, op = divmod(k, 3)
        scope = [f"layers.{layer}", ["fc", "act", ""][op]] if layer < 4 else ["head"]
        entry = node.metadata_props.add()
        entry.key, entry.value = "pkg.torch.onnx.name_scopes", repr(["", *[s for s in scope if s], node.op_type.lower()])
        node.name = f"{node.op_type}_{k}"
    path = tmp_path / "dynamo.onnx"
    path.write_bytes(m.SerializeToString())
    for source in (path, m.SerializeToString(), m):
        assert mlms_ir.load(source).loaded.scope_metadata
        b = mlms_ir.analyze(source).blocks[0]
        assert (b.name, b.count, b.nodes_per_block, b.found_by) == ("layers.#", 4, 3, "name scopes")
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(_chain(4, named=True).SerializeToString())
    assert not mlms_ir.load(plain).loaded.scope_metadata
    assert mlms_ir.analyze(plain).blocks[0].found_by == "name scopes"


def test_repeated_blocks_without_names():
    a = mlms_ir.analyze(_chain(5, named=False))
    b = a.blocks[0]
    assert (b.count, b.nodes_per_block, b.found_by) == (5, 3, "repeated op sequence")


def test_depth_and_op_types(cnn):
    a = mlms_ir.analyze(cnn, batch=1)
    assert a.structure.depth == 5
    conv = next(o for o in a.op_types if o.op_type == "Conv")
    assert conv.count == 1 and conv.share_macs == pytest.approx(55296 / (55296 + 80))


def test_roofline_on_a_known_device(cnn):
    a = mlms_ir.analyze(cnn, batch=1, device="a100")
    r = a.roofline
    assert r.device == "a100" and r.bandwidth_bytes_per_s == 2.039e12
    conv = a.nodes[0]
    # Conv: flops 2*55296 + 2048 bias; bytes: x 3072 + w 864 + b 32 read, 8192 written
    assert conv.flops == 112640
    assert conv.intensity == pytest.approx(112640 / (3072 + 864 + 32 + 8192))
    t_mem = (3072 + 864 + 32 + 8192) / 2.039e12
    t_cmp = 112640 / 1.95e13
    assert conv.bound == ("compute" if t_cmp >= t_mem else "memory")
    assert conv.time_lower_bound_us == pytest.approx(max(t_mem, t_cmp) * 1e6)
    assert r.lower_bound_us == pytest.approx(sum(n.time_lower_bound_us or 0 for n in a.nodes))


def test_custom_device_specs(tmp_path):
    d = resolve_device("fp32=1e12,bw=1e10,fp16=4e12")
    assert d.peak("fp32") == 1e12 and d.peak("fp16") == 4e12 and d.peak("int8") == 1e12
    f = tmp_path / "dev.json"
    f.write_text(json.dumps({"name": "mine", "peak_flops": {"fp32": 2e12}, "bandwidth_bytes_per_s": 5e10}))
    assert resolve_device(str(f)).name == "mine"
    with pytest.raises(UnknownDeviceError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    with pytest.raises(UnknownDeviceError, match="bw="):
        resolve_device("fp32=1e12")
    assert {"h200", "h100-sxm", "a100", "v100", "t4", "l4", "jetson-agx-orin"} <= set(known_devices())


def test_json_schema(cnn):
    d = json.loads(mlms_ir.analyze(cnn, batch=1).to_json())
    assert d["schema_version"] == SCHEMA_VERSION
    for key in ("model", "totals", "unknown_ops", "unresolved_dims", "op_types", "blocks", "nodes", "convention"):
        assert key in d
    for key in ("params", "macs", "flops", "weight_bytes", "activation_bytes", "peak_activation_bytes"):
        assert isinstance(d["totals"][key], int)
    node = d["nodes"][0]
    for key in ("id", "name", "op_type", "macs", "flops", "params", "input_shapes", "output_shapes", "output_bytes", "intensity"):
        assert key in node
    assert node["output_shapes"] == [[1, 8, 16, 16]]
    assert d["convention"]["version"]


def test_hostile_names_survive_as_text(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Relu (x) }""")
    m.graph.node[0].name = "<img src=x onerror=alert(1)> [bold]x[/bold] | a"
    from mlms_ir.report.formats import to_csv, to_markdown

    a = mlms_ir.analyze(m)
    md = to_markdown(a)
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md and "\\|" in md
    assert "<img src=x onerror=alert(1)>" in to_csv(a)
