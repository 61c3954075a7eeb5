"""Every result kind reads back what it writes: ``Kind.from_dict(r.to_dict())`` equals ``r``, and
its JSON carries ``kind`` first and ``schema_version``."""

from __future__ import annotations

import json

import numpy as np
import onnx.parser
import pytest

import mlms_ir
from mlms_ir.results.analysis import Analysis


def _round_trip(result):
    d = json.loads(json.dumps(result.to_dict()))
    assert next(iter(d)) == "kind" and d["kind"] == type(result).kind and d["schema_version"]
    back = type(result).from_dict(d)
    assert back.to_dict() == d
    return back


def test_analysis_with_formulas_dims_and_roofline_round_trips():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[batch, seq, 16] x) => (float[batch, seq, 8] y) {
        h = MatMul (x, w1)
        r = Relu (h)
        y = MatMul (r, w2)
    }""")
    rng = np.random.default_rng(0)
    m.graph.initializer.extend([onnx.numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
                                onnx.numpy_helper.from_array(rng.standard_normal((32, 8)).astype(np.float32), "w2")])
    a = mlms_ir.analyze(m, device="h100-sxm")
    assert a.symbolic and a.dims and a.roofline is not None
    back = _round_trip(a)
    assert back.totals.symbolic == a.totals.symbolic and back.dims == a.dims
    assert back.nodes[0].symbolic == a.nodes[0].symbolic and back.nodes[0].input_shapes == a.nodes[0].input_shapes
    assert back.structure.op_types == a.structure.op_types


def test_analysis_of_a_bound_model_round_trips(tmp_path):
    from mlms_ir.zoo import builtin_path

    a = mlms_ir.analyze(mlms_ir.load(builtin_path(), batch=2), device="a100")
    back = _round_trip(a)
    assert back.totals == a.totals and back.model == a.model and back.bindings == a.bindings
    assert [b.name for b in back.blocks] == [b.name for b in a.blocks]


def test_a_result_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="not 'analysis'"):
        Analysis.from_dict({"kind": "run"})
