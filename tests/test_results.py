"""Every result kind reads back what it writes: ``Kind.from_dict(r.to_dict())`` equals ``r``, and
its JSON carries ``kind`` first and ``schema_version``."""

from __future__ import annotations

import importlib.util
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


# --------------------------------------------------------------------------- measured kinds
@pytest.fixture(scope="module")
def measured():
    """One real run, profile and divergence of the embedded model (ORT against the reference)."""
    from mlms_ir.divergence import diverge_backends
    from mlms_ir.runner import profile_model, run_backends
    from mlms_ir.zoo import builtin_path

    model = str(builtin_path())
    run = run_backends(model, ["ort", "reference", "nope"], batches=[1], iterations=2, warmup=0, system=False)
    prof = profile_model(model, "ort", batch=1, runs=1, warmup=0, iterations=2, system=False)
    div = diverge_backends(model, ["ort", "nope"], "reference", batch=1)
    return run, prof, div


def test_run_profile_and_divergence_round_trip(measured):
    run, prof, div = measured
    assert {r.status for r in run.runs} == {"ok", "unavailable"} and div.failed and div.reports
    for result in (run, prof.report, div, div.reports[0]):
        back = _round_trip(result)
        assert back == result or back.to_dict() == result.to_dict()
    back = _round_trip(prof.report)
    assert back.nodes[0] == prof.report.nodes[0] and back.model == prof.report.model


def test_any_result_is_read_back_by_its_kind(measured, tmp_path):
    from mlms_ir.results.read import read_result

    run, prof, div = measured
    for result in (run, prof.report, div):
        path = tmp_path / f"{result.kind}.json"
        path.write_text(result.to_json())
        back = read_result(path)
        assert type(back) is type(result) and back.to_dict() == result.to_dict()


def test_evaluation_round_trips():
    from mlms_ir.results.base import ModelRef
    from mlms_ir.results.evaluation import BackendAccuracy, EvaluationReport

    r = EvaluationReport(model=ModelRef("m", None), dataset={"name": "digits", "samples": 10}, preprocess={}, reference={"top1": 0.9},
                         batch_size=5, results=[BackendAccuracy("ort", "cpu", "ok", samples=10, top1=0.9, top5=1.0, verdict="replicated"),
                                                BackendAccuracy("torch", "cpu", "failed", error="no torch")])
    assert _round_trip(r) == r


def test_join_puts_every_figure_of_a_node_together(measured):
    from mlms_ir.results.join import join

    _, prof, div = measured
    joined = join(prof.analysis, profile=prof.report, divergences=div.reports)
    assert list(joined) == [n.id for n in prof.analysis.nodes]
    conv = joined["n0"]
    assert conv.cost.op_type == "Conv" and conv.time is not None and conv.time.id == "n0"
    assert len(conv.divergence) == 1 and conv.divergence[0].id == "n0"


def test_renderers_are_chosen_by_kind_and_format(measured):
    from mlms_ir.errors import MlmsIrError
    from mlms_ir.report.select import formats_of, render

    run, prof, div = measured
    assert formats_of("analysis") == ["csv", "json", "md", "table"] and formats_of("run") == ["json", "table"]
    assert json.loads(render(run, "json"))["kind"] == "run"
    assert callable(render(div, "table")) and render(prof.analysis, "csv").startswith("id,")
    with pytest.raises(MlmsIrError, match="a run result has no 'csv' format; choose one of: json, table"):
        render(run, "csv")


@pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None, reason="mlcommons-loadgen is not installed (pip install '.[loadgen]')")
def test_a_scenario_file_is_read_back_as_its_report(tmp_path, capsys):
    from mlms_ir.cli import main
    from mlms_ir.errors import ReportInputError
    from mlms_ir.results.read import as_result, read_result
    from mlms_ir.results.scenario import ScenarioReport

    out = tmp_path / "scen.json"
    assert main(["run", "-q", "--scenario", "singlestream", "--duration", "0.1", "--format", "json", "-o", str(out),
                 "--store", "none"]) == 0
    back = read_result(out)
    assert type(back) is ScenarioReport and back.to_dict() == json.loads(out.read_text())
    rec = back.runs[0]
    assert rec.scenario == "SingleStream" and rec.valid is not None and rec.histogram is not None and rec.timeline is not None
    assert as_result(out, ScenarioReport) == back
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**back.to_dict(), "runs": "none"}))
    with pytest.raises(ReportInputError, match=r"the scenario results are not what 'run --scenario --format json' writes"):
        read_result(wrong)
