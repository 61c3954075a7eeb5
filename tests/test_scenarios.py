"""MLPerf LoadGen scenarios (issue #20): LoadGen drives the queries, a backend session serves them.

Every LoadGen test here runs for a fraction of a second on the embedded digits-cnn model (about
20 µs a sample on ORT): a Server target of 10^6 QPS is far beyond what the loaded 2-core machine
serves and must be reported invalid; 500 QPS under a 200 ms bound is far within it and valid.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import onnx
import onnx.parser
import pytest

#: LoadGen itself (the loadgen extra, in the test extra); the tests of its absence run without it.
needs_loadgen = pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None,
                                   reason="mlcommons-loadgen is not installed (pip install '.[loadgen]')")

from mlms_ir.cli import main  # noqa: E402
from mlms_ir.errors import MissingExtraError, MlmsIrError  # noqa: E402
from mlms_ir.results.scenario import ScenarioReport  # noqa: E402
from mlms_ir.scenarios import (invalid_reasons, read_detail_log, run_scenarios, scenario_key,  # noqa: E402
                               server_min_queries)
from mlms_ir.zoo import builtin_path  # noqa: E402

MODEL = str(builtin_path())


def one(report: ScenarioReport):
    assert len(report.runs) == 1
    rec = report.runs[0]
    assert rec.status == "ok", rec.error
    return rec


# ----------------------------------------------------------------------------- Server: the verdict


@needs_loadgen
def test_server_beyond_capacity_is_invalid():
    # 10^6 arrivals a second for 0.1 s: 10^5 queries scheduled, each ~20 µs of work plus Python's
    # share; LoadGen stops issuing at the cap (twice the calibrated capacity's worth)
    rec = one(run_scenarios(MODEL, ["ort"], scenario="server", target_qps=1e6, latency_bound_ms=10, duration_s=0.1, system=False))
    assert rec.valid is False
    assert rec.scenario == "Server"
    assert rec.target_qps == 1e6 and rec.latency_bound_ms == 10.0 and rec.latency_percentile == 0.99
    assert "latency bound not met" in rec.invalid_reasons
    assert rec.latency_ms["p99"] > 10.0
    assert rec.overlatency_queries > 0.01 * rec.query_count
    assert rec.samples_per_s < 1e6
    assert any(r.startswith("stopped after") for r in rec.invalid_reasons)  # the cap, said in the reasons
    assert "Result is : INVALID" in rec.loadgen_summary


@needs_loadgen
def test_server_within_capacity_is_valid():
    # 500 QPS against a capacity of thousands, a 200 ms bound; LoadGen's early stopping needs 459
    # queries with none over the bound at p99 (0.99**459 < 0.01), the default minimum
    rec = one(run_scenarios(MODEL, ["ort"], scenario="server", target_qps=500, latency_bound_ms=200, duration_s=0.5, system=False))
    assert rec.valid is True, rec.invalid_reasons
    assert rec.invalid_reasons == []
    assert rec.query_count >= server_min_queries(0.99) == 459
    assert rec.overlatency_queries == 0
    assert rec.latency_ms["p99"] <= 200.0
    assert 300 < rec.samples_per_s < 700
    assert rec.loadgen_settings["target_qps"] == 500
    assert sum(int(b) * n for b, n in rec.batches.items()) >= rec.query_count  # every sample ran (padded batches count whole)
    assert "Result is : VALID" in rec.loadgen_summary


@needs_loadgen
def test_find_peak_brackets_the_highest_valid_qps():
    rep = run_scenarios(MODEL, ["ort"], scenario="server", find_peak_qps=True, latency_bound_ms=50, duration_s=0.1,
                        max_queries=3000, peak_tolerance=0.25, system=False)
    rec = one(rep)
    assert rec.valid is True and rec.peak_qps is not None
    assert rec.probes and any(p.valid for p in rec.probes)
    valid = [p.target_qps for p in rec.probes if p.valid]
    invalid = [p.target_qps for p in rec.probes if not p.valid]
    assert rec.peak_qps == max(valid) == rec.target_qps
    assert all(q > rec.peak_qps for q in invalid)  # every invalid probe lies above the peak found
    if invalid:  # bisected to the tolerance
        assert min(invalid) - rec.peak_qps <= 0.25 * rec.peak_qps + 1e-9


# ----------------------------------------------------------------------------- every scenario


@needs_loadgen
@pytest.mark.parametrize("scenario", ["singlestream", "multistream", "offline"])
def test_each_scenario_runs_and_parses(scenario):
    rec = one(run_scenarios(MODEL, ["ort"], scenario=scenario, duration_s=0.2, system=False))
    assert rec.valid is True, rec.invalid_reasons
    assert set(rec.latency_ms) == {"min", "mean", "p50", "p90", "p95", "p97", "p99", "p99.9", "max"}
    assert rec.latency_ms["min"] <= rec.latency_ms["p50"] <= rec.latency_ms["p99"] <= rec.latency_ms["max"]
    assert rec.samples_per_s > 0 and rec.query_count >= 1
    samples = rec.query_count * rec.samples_per_query  # the SUT's histogram counts every sample once
    assert rec.histogram is not None and sum(rec.histogram.counts) == samples
    assert rec.timeline is not None and rec.timeline.samples_per_s
    if scenario == "singlestream":
        assert rec.batches == {"1": rec.query_count} and rec.max_batch == 1
        assert rec.latency_percentile == 0.9
    elif scenario == "multistream":
        assert rec.samples_per_query == 8 and rec.batches == {"8": rec.query_count}  # 8 samples a query, one batch each
        assert rec.query_count >= 662  # LoadGen's minimum for MultiStream's p99
    else:
        assert rec.query_count == 1 and rec.max_batch == 32 and "32" in rec.batches  # one query of many samples
        assert rec.samples_per_query > 32


@needs_loadgen
def test_an_offline_query_that_ends_early_is_sized_again(monkeypatch):
    """A pilot that says far too few samples a second (a machine busy during it) sizes a query that
    ends before the minimum duration: mlms_ir sizes it again from what it served, and the run is
    valid; LoadGen's own verdict on each try decides."""
    import mlms_ir.scenarios as sc

    asked = []
    real = sc.run_loadgen

    def spy(lg, server, plan, cal, log_dir):
        asked.append(plan.target_qps)
        out = real(lg, server, plan, cal, log_dir)
        asked.append(out.detail.get("result_min_duration_met"))
        return out

    monkeypatch.setattr(sc, "offline_pilot", lambda *a, **k: 1.0)  # one sample: done in a millisecond
    monkeypatch.setattr(sc, "run_loadgen", spy)
    rec = one(run_scenarios(MODEL, ["ort"], scenario="offline", duration_s=0.1, system=False))
    assert asked[:2] == [1.0, False]  # the query sized by the pilot ended early ...
    assert asked[2] >= 2.0 and asked[-1] is True  # ... and was sized again until it lasted
    assert rec.valid is True, rec.invalid_reasons
    assert rec.target_qps == asked[-2]  # the record shows the size that ran
    assert rec.samples_per_query > 1


@needs_loadgen
def test_a_given_offline_target_is_run_as_given(monkeypatch):
    """A --target-qps the user gave is LoadGen's setting: too low, the run is invalid, not resized."""
    import mlms_ir.scenarios as sc

    calls = []
    real = sc.run_loadgen
    monkeypatch.setattr(sc, "run_loadgen", lambda *a: calls.append(a[2].target_qps) or real(*a))
    rec = one(run_scenarios(MODEL, ["ort"], scenario="offline", target_qps=1.0, duration_s=0.1, system=False))
    assert calls == [1.0]
    assert rec.valid is False and "minimum duration not met" in rec.invalid_reasons


@needs_loadgen
def test_a_model_with_a_fixed_batch_runs_one_sample_at_a_time(tmp_path):
    path = tmp_path / "fixed.onnx"
    onnx.save(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) }
    """), path)
    rec = one(run_scenarios(str(path), ["ort"], scenario="offline", duration_s=0.1, system=False))
    assert rec.max_batch == 1 and set(rec.batches) == {"1"}
    assert rec.batches["1"] == rec.samples_per_query  # one run per sample


@needs_loadgen
def test_given_inputs_are_split_into_samples():
    import numpy as np

    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    for scenario in ("singlestream", "offline"):
        rep = run_scenarios(MODEL, ["ort"], scenario=scenario, duration_s=0.1, inputs={"image": x}, system=False)
        assert one(rep).valid is True and rep.settings["sample_count"] == 5 and rep.settings["inputs"] == "given"


def test_detail_log_parsing(tmp_path):
    log = tmp_path / "mlperf_log_detail.txt"
    lines = [
        {"key": "result_validity", "value": "INVALID", "metadata": {"is_error": False, "is_warning": False}},
        {"key": "result_perf_constraints_met", "value": False, "metadata": {}},
        {"key": "result_min_duration_met", "value": True, "metadata": {}},
        {"key": "result_invalid_reason", "value": "Reduce target QPS to improve latency. ", "metadata": {}},
        {"key": "error_runtime", "value": "boom", "metadata": {"is_error": True}},
        {"key": "generic_message", "value": "a", "metadata": {}},
        {"key": "generic_message", "value": "b", "metadata": {}},
    ]
    log.write_text("noise\n" + "".join(":::MLLOG " + json.dumps(d) + "\n" for d in lines) + ":::MLLOG {broken\n")
    d = read_detail_log(log)
    assert d["result_validity"] == "INVALID" and d["generic_message"] == "b" and d["generic_message[]"] == ["a", "b"]
    assert d["errors"] == ["boom"]
    assert invalid_reasons(d) == ["latency bound not met", "Reduce target QPS to improve latency."]


# ----------------------------------------------------------------------------- results, store, renderers


@needs_loadgen
def test_result_round_trips_through_json_and_the_store(tmp_path):
    from mlms_ir.compare import compare_runs
    from mlms_ir.report.select import render
    from mlms_ir.report.store_text import run_headline
    from mlms_ir.store import Store, records_from_scenarios

    rep = run_scenarios(MODEL, ["ort", "reference"], scenario="singlestream", duration_s=0.1)
    d = rep.to_dict()
    assert d["kind"] == "scenario" and d["schema_version"] == "1.0"
    again = ScenarioReport.from_dict(json.loads(json.dumps(d)))
    assert again == rep
    assert again.to_dict() == d
    with Store(tmp_path / "s.sqlite") as st:
        runs = st.add_all(records_from_scenarios(rep))
        assert [r.kind for r in runs] == ["scenario", "scenario"]
        assert [r.backend for r in runs] == ["ort", "reference"]
        assert runs[0].summary["valid"] is True and runs[0].summary["scenario"] == "SingleStream"
        assert runs[0].summary["latency_ms"]["p50"] == rep.runs[0].latency_ms["p50"]
        assert st.payload(runs[0].id)["run"] == d["runs"][0]
        assert run_headline(runs[0]).startswith("SingleStream VALID p50 ")
        cmp = compare_runs(st, [runs[0].id, runs[1].id])
    figures = {f.field: f.values for f in cmp.figures}
    assert figures["LoadGen result"] == ["VALID", "VALID"]
    assert figures["latency p50 (ms)"] == [rep.runs[0].latency_ms["p50"], rep.runs[1].latency_ms["p50"]]
    assert json.loads(render(rep, "json"))["kind"] == "scenario"
    from rich.console import Console

    console = Console(record=True, width=200)
    render(rep, "table")(console)
    text = console.export_text()
    assert "VALID" in text and "reference" in text and "SingleStream" in text


# ----------------------------------------------------------------------------- the extra, the CLI


def test_without_the_extra_the_error_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # import mlperf_loadgen raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'mlms_ir\[loadgen\]'"):
        run_scenarios(MODEL, ["ort"], scenario="singlestream", duration_s=0.1)
    assert main(["run", "--scenario", "server", "--target-qps", "10", "--store", "none"]) == 2
    err = capsys.readouterr().err
    assert "mlms_ir[loadgen]" in err and err.count("\n") == 1


@needs_loadgen
def test_cli_runs_a_scenario_and_records_it(tmp_path, capsys, monkeypatch):
    from mlms_ir.store import Store

    monkeypatch.setenv("COLUMNS", "240")  # an xdist worker's longer tmp path must not wrap the headline

    store, out = tmp_path / "s.sqlite", tmp_path / "r.json"
    assert main(["run", "-q", "--scenario", "server", "--target-qps", "500", "--latency-bound", "200", "--duration", "0.3",
                 "--batch", "4", "--store", str(store), "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "scenario" and d["settings"]["scenario"] == "Server" and d["settings"]["max_batch"] == 4
    rec = d["runs"][0]
    assert rec["valid"] is True and rec["latency_bound_ms"] == 200 and rec["max_batch"] == 4
    with Store(store) as st:
        (r,) = st.list()
    assert r.kind == "scenario" and r.batch == 4 and r.settings["target_qps"] == 500 and r.summary["valid"] is True
    assert main(["runs", "list", "--store", str(store), "--kind", "scenario"]) == 0
    assert "Server VALID 500 QPS" in capsys.readouterr().out


@needs_loadgen
@pytest.mark.parametrize("argv, message", [
    (["--target-qps", "100"], "--target-qps belong to LoadGen's scenarios: give --scenario"),
    (["--find-peak"], "--find-peak belong to LoadGen's scenarios"),
    (["--scenario", "sever"], "unknown scenario 'sever'; one of: singlestream, multistream, server, offline"),
    (["--scenario", "server"], "the Server scenario needs a target QPS: give --target-qps N, or --find-peak"),
    (["--scenario", "singlestream", "--target-qps", "5"], "--target-qps sets the Server's arrival rate"),
    (["--scenario", "offline", "--find-peak"], "--find-peak and --latency-bound belong to the Server scenario"),
    (["--scenario", "server", "--target-qps", "-3"], "--target-qps must be a positive number, not '-3'"),
    (["--scenario", "server", "--target-qps", "9", "--duration", "0"], "--duration must be a positive number, not '0'"),
    (["--scenario", "singlestream", "--iters", "5"], "--iters set run's timing loop; with --scenario LoadGen decides"),
    (["--scenario", "offline", "--batch", "1,8"], "with --scenario, --batch is one number"),
])
def test_cli_refuses_what_does_not_fit(argv, message, capsys):
    assert main(["run", "--store", "none", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_help_documents_the_flags(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--scenario", "--target-qps", "--latency-bound", "--duration", "--min-queries", "--max-queries", "--find-peak"):
        assert flag in out


def test_scenario_names():
    assert [scenario_key(s) for s in ("Server", "single-stream", "multi_stream", "OFFLINE")] == \
        ["server", "singlestream", "multistream", "offline"]
    with pytest.raises(MlmsIrError):
        scenario_key("batch")


# ----------------------------------------------------------------------------- sweeps


@needs_loadgen
def test_sweep_axes_expand_and_run(tmp_path):
    from mlms_ir.sweep import execute_job, load_spec

    spec = load_spec({"name": "lg", "models": [MODEL], "backends": ["ort"], "scenarios": ["singlestream", "server", "offline"],
                      "target_qps": [100, 400], "latency_bound_ms": 200, "duration_s": 0.1})
    axes = [(j.settings["scenario"], j.settings["target_qps"], j.settings.get("latency_bound_ms")) for j in spec.jobs]
    # target_qps is an axis of server and offline only; the bound belongs to server
    assert axes == [("singlestream", None, None), ("server", 100.0, 200.0), ("server", 400.0, 200.0),
                    ("offline", 100.0, None), ("offline", 400.0, None)]
    assert len({j.key for j in spec.jobs}) == 5
    assert "server 400 QPS" in spec.jobs[2].label()
    plain = load_spec({"name": "p", "models": [MODEL], "backends": ["ort"]})
    assert "scenario" not in plain.jobs[0].settings  # specs without scenarios keep their job keys
    (rec,) = execute_job(spec.jobs[0])
    assert rec.kind == "scenario" and rec.status == "ok" and rec.summary["scenario"] == "SingleStream"
    assert rec.sweep == "lg" and rec.job_key == spec.jobs[0].key


@pytest.mark.parametrize("extra, message", [
    ({"scenarios": ["server"]}, "the server scenario needs 'target_qps'"),
    ({"scenarios": ["bogus"]}, "unknown scenario 'bogus'"),
    ({"target_qps": [10]}, "'target_qps' belong to LoadGen's scenarios: add 'scenarios'"),
    ({"scenarios": ["server"], "target_qps": [0]}, "'target_qps' must be positive numbers"),
    ({"scenarios": ["offline"], "latency_bound_ms": 5}, "'latency_bound_ms' is the server scenario's bound"),
    ({"scenarios": ["offline"], "duration_s": "long"}, "'duration_s' must be a positive number"),
    ({"scenarios": ["offline"], "scenario": ["server"]}, "give 'scenarios' (or its alias 'scenario'), not both"),
    ({"scenarios": ["offline"], "kind": "profile"}, "'scenarios' are run by kind 'run', not 'profile'"),
])
def test_sweep_axes_are_checked(extra, message):
    from mlms_ir.errors import SweepSpecError
    from mlms_ir.sweep import load_spec

    with pytest.raises(SweepSpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_spec({"name": "x", "models": [MODEL], "backends": ["ort"], **extra})


def test_a_partial_batch_runs_one_by_one_where_padding_costs_more():
    """Sessions whose batch of 8 costs what 8 single runs cost (ResNet-50 on a CPU): 2-7 samples run
    one by one, only a full 8 as a batch; where a batch costs what one run costs, 2 samples are
    padded to a batch. The costs are the calibration's, measured with the harness."""
    import time

    import numpy as np

    from mlms_ir.scenarios import Batcher, Samples, calibrate

    class Session:
        def __init__(self, batch_s: float, log: list) -> None:
            self.batch_s, self.log = batch_s, log

        def runner(self, feeds):
            return lambda: self.run(feeds)

        def run(self, feeds):
            n = feeds["x"].shape[0]
            self.log.append(n)
            time.sleep(self.batch_s if n > 1 else 0.005)

    samples = Samples([{"x": np.zeros((1, 2), np.float32)} for _ in range(8)], True)
    for batch_s, expect_from in ((0.1, 8), (0.005, 2)):  # far apart: the p50s of sleeps on a loaded machine
        log: list = []
        b = Batcher(samples, Session(0, log), Session(batch_s, log), 8)
        cal = calibrate(b)
        assert b.batch_from == expect_from and cal.max_batch == 8
        log.clear()
        b.run([0, 1, 2])
        assert log == ([1, 1, 1] if expect_from == 8 else [8]) and dict(b.batches) == ({1: 3} if expect_from == 8 else {8: 1})
        log.clear()
        b.run(list(range(8)))
        assert log == [8]
