"""The harness, cross-backend runs and per-node profiles, through the API and the CLI."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys

import numpy as np
import pytest

from mlms_ir.comparator import compare_outputs as compare
from mlms_ir.harness import measure, percentile, summarise
from mlms_ir.report.chrome_trace import chrome_trace
from mlms_ir.runner import aggregate, profile_backend, run_backends
from mlms_ir.backends.base import NodeTrace, TraceResult
from mlms_ir.zoo import builtin_path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args], capture_output=True, text=True, timeout=300)


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    values = sorted(rng.random(101).tolist())
    for q in (50, 90, 95, 99):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    s = summarise([3.0, 1.0, 2.0], warmup=2)
    assert (s.min, s.p50, s.max, s.mean, s.iterations, s.warmup) == (1.0, 2.0, 3.0, 2.0, 3, 2)
    assert s.stdev == pytest.approx(statistics.stdev([1, 2, 3]))


def test_measure_counts_warmup_iterations_and_syncs():
    calls = {"run": 0, "sync": 0}

    def run():
        calls["run"] += 1

    def sync():
        calls["sync"] += 1

    stats = measure(run, synchronize=sync, warmup=3, iterations=7)
    assert calls["run"] == 10 and calls["sync"] == 8  # once after warm-up, once per timed run
    assert stats.iterations == 7 and stats.warmup == 3
    stats = measure(run, warmup=0, iterations=1, min_time_s=0.05)
    assert stats.iterations > 1  # kept going for the minimum time


def test_compare():
    a = {"y": np.array([1.0, 2.0, 4.0])}
    assert compare(a, {"y": np.array([1.0, 2.5, 4.0])}) == {
        "max_abs_diff": 0.5, "max_rel_diff": 0.25, "outputs_compared": 1, "beyond_tolerance": 1, "elements_compared": 3,
        "agree": False}
    shape = compare(a, {"y": np.zeros(2)})
    assert shape["max_abs_diff"] == float("inf") and shape["agree"] is False and shape["beyond_tolerance"] == 3


def test_compare_verdict_follows_the_tolerance():
    ref = {"y": np.array([1000.0, 1.0, np.nan, -np.inf], np.float32), "ids": np.array([3, 4])}
    # 1000 + 0.9 is within 1e-4 + 1e-3*1000; 1 + 0.01 is not; NaN and -inf agree with themselves
    got = {"y": np.array([1000.9, 1.01, np.nan, -np.inf], np.float32), "ids": np.array([3, 4])}
    r = compare(ref, got)
    assert r["beyond_tolerance"] == 1 and r["elements_compared"] == 6 and r["outputs_compared"] == 2 and not r["agree"]
    assert r["max_abs_diff"] == pytest.approx(0.9, rel=1e-3)
    assert compare(ref, got, atol=0.02)["agree"]
    one_nan = compare(ref, {"y": np.array([1000.0, 1.0, 0.0, -np.inf], np.float32), "ids": np.array([3, 4])})
    assert one_nan["max_abs_diff"] == float("inf") and one_nan["beyond_tolerance"] == 1
    missing = compare(ref, {"y": ref["y"]})  # an output the other backend did not give disagrees
    assert missing["agree"] is False and missing["beyond_tolerance"] == 2 and missing["max_abs_diff"] == float("inf")
    z = {"z": np.array([1 + 1j, 2 + 0j])}
    assert compare(z, {"z": np.array([1 + 5j, 2 + 0j])})["beyond_tolerance"] == 1  # the imaginary part counts
    s = {"s": np.array(["a", "b"])}
    assert compare(s, {"s": np.array(["a", "c"])})["beyond_tolerance"] == 1 and compare(s, s)["agree"]
    both_nan = compare({"y": np.array([np.nan, 1.0])}, {"y": np.array([np.nan, 1.0])})
    assert both_nan["agree"] and both_nan["max_abs_diff"] == 0.0 and both_nan["max_rel_diff"] == 0.0


def test_run_records_every_backend_and_goes_on():
    r = run_backends(builtin_path(), ["ort", "reference", "tensorrt", "nope"], batches=[1, 4], iterations=5, warmup=1, system=False)
    got = [(x.backend, x.batch, x.status) for x in r.runs]
    assert got == [("ort", 1, "ok"), ("reference", 1, "ok"), ("tensorrt", 1, "unavailable"), ("nope", 1, "unavailable"),
                   ("ort", 4, "ok"), ("reference", 4, "ok"), ("tensorrt", 4, "unavailable"), ("nope", 4, "unavailable")]
    ref = r.runs[1]
    assert ref.compared_with == "ort" and ref.max_abs_diff < 1e-4
    assert r.runs[4].throughput == pytest.approx(4 / (r.runs[4].latency_ms["mean"] / 1000))
    assert set(r.runs[0].latency_ms) >= {"mean", "stdev", "min", "p50", "p90", "p95", "p99", "max"}


def test_aggregate_splits_fused_work_by_flops_and_reports_coverage():
    ev = lambda name, t, covers: NodeTrace(name=name, op_type="X", start_us=0, time_us=t, covers=covers)
    traces = [
        TraceResult({}, [ev("fused", 30.0, ["n0", "n1"]), ev("n2", 10.0, ["n2"]), ev("reorder", 10.0, [])], 50.0),
        TraceResult({}, [ev("fused", 60.0, ["n0", "n1"]), ev("n2", 20.0, ["n2"]), ev("reorder", 20.0, [])], 100.0),
    ]
    times, unatt, coverage, groups = aggregate(traces, None, {"n0": 2, "n1": 1, "n2": 5})
    assert times == {"n0": pytest.approx(30.0), "n1": pytest.approx(15.0), "n2": pytest.approx(15.0)}  # medians
    assert coverage == pytest.approx(120 / 150)
    assert unatt == [{"name": "reorder", "op_type": "X", "time_us": 15.0, "events": 1.0}]
    assert groups["n0"] == ["n0", "n1"]


def test_profile_on_ort_maps_every_node():
    report, traces = profile_backend(builtin_path(), "ort", batch=2, runs=3, iterations=5, warmup=1, roofline_device="xeon-8380", system=False)
    # on this 20 µs model the NCHWc layout reorders are a visible, noisy share; on ResNet-50 and
    # ViT-B/16 coverage is above 99% (tools/bench_harness.py measures it). Every node is mapped:
    assert {c for covers in report.mapping.values() for c in covers} == {f"n{i}" for i in range(11)}
    assert 0.3 < report.coverage <= 1.0
    assert {n.op_type for n in report.nodes} >= {"Conv", "Gemm", "MaxPool"}
    conv = next(n for n in report.nodes if n.op_type == "Conv")
    assert conv.achieved_flops_per_s == pytest.approx(conv.flops / (conv.time_us * 1e-6))
    assert conv.bound in ("compute", "memory")
    assert report.latency_ms["iterations"] == 5 and report.runs == 3
    trace = chrome_trace(traces, {n.id: n.name for n in report.nodes}, "ort:cpu")
    named = {e["name"] for e in trace["traceEvents"] if e.get("cat") == "node"}
    assert any(name.startswith("/features/") for name in named)


def test_cli_run_json(tmp_path):
    out = tmp_path / "run.json"
    r = _cli("run", "--backends", "ort,reference", "--batch", "1,2", "--iters", "5", "--warmup", "1", "--output", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["schema_version"] and d["system"]["cpu"]["logical_cores"] >= 1
    assert [(x["backend"], x["batch"]) for x in d["runs"]] == [("ort", 1), ("reference", 1), ("ort", 2), ("reference", 2)]
    assert d["runs"][1]["max_abs_diff"] < 1e-4 and d["runs"][0]["latency_ms"]["p99"] > 0
    assert d["runs"][1]["outputs_agree"] is True and d["runs"][1]["beyond_tolerance"] == 0
    assert d["runs"][0]["outputs_agree"] is None and (d["settings"]["atol"], d["settings"]["rtol"]) == (1e-4, 1e-3)


@pytest.mark.slow
def test_cli_run_marks_outputs_beyond_the_tolerance():
    """reference and ort differ in the last bits of the digits model's logits: zero tolerance flags it,
    in the table (a cross and a line saying how many elements) and in the JSON; timings are kept."""
    r = _cli("run", "--backends", "ort,reference", "--batch", "4", "--iters", "2", "--warmup", "0", "--atol", "0", "--rtol", "0")
    assert r.returncode == 0, r.stderr
    assert "✗" in r.stdout
    text = " ".join(r.stdout.split())  # rich wraps at the terminal's width
    assert re.search(r"reference on cpu at batch 4: \d+ output elements differ from ort's beyond 0 \+ 0\*\|ort\|", text)
    r = _cli("run", "--backends", "ort,reference", "--batch", "4", "--iters", "2", "--warmup", "0", "--atol", "0", "--rtol", "0",
             "--format", "json")
    rec = json.loads(r.stdout)["runs"][1]
    assert rec["status"] == "ok" and rec["outputs_agree"] is False and 0 < rec["beyond_tolerance"] <= 40
    assert rec["latency_ms"]["p50"] > 0
    r = _cli("run", "--atol", "-1")
    assert r.returncode == 2 and "--atol must be a finite number >= 0" in r.stderr


def test_cli_profile_json_and_trace(tmp_path):
    trace = tmp_path / "t.json"
    r = _cli("profile", "--batch", "1", "--runs", "2", "--iters", "3", "--opt", "none", "--format", "json", "--trace", str(trace))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["coverage"] == pytest.approx(1.0)
    assert {"id", "name", "op_type", "time_us", "macs", "flops", "share"} <= set(d["nodes"][0])
    t = json.loads(trace.read_text())
    assert any(e.get("ph") == "X" for e in t["traceEvents"])


@pytest.mark.slow
def test_cli_backends_and_errors(tmp_path):
    r = _cli("backends")
    assert r.returncode == 0 and "ort" in r.stdout and "tensorrt" in r.stdout
    r = _cli("run", "--backends", "tensorrt", "--batch", "1", "--iters", "2")
    assert r.returncode == 2 and r.stderr.startswith("mlms_ir: error: no backend ran")
    r = _cli("profile", "--backend", "ort")  # digits-cnn has a dynamic batch
    assert r.returncode == 2 and "unbound dims" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    r = _cli("run", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_threads_sets_onnxruntimes_intra_op_threads(capsys):
    """--threads N is ORT's intra_op_num_threads on run and profile (recorded with the session's
    options); with no ort backend, or below 1, it is one error line."""
    import json

    from mlms_ir.cli import main

    assert main(["run", "--batch", "1", "--backends", "ort,reference", "--threads", "1", "--iters", "3", "--warmup", "0",
                 "--format", "json", "--store", "none", "-q"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["backend"], r["options"].get("threads")) for r in runs] == [("ort", 1), ("reference", None)]
    assert main(["profile", "--batch", "1", "--threads", "2", "--runs", "1", "--iters", "2", "--format", "json",
                 "--store", "none", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["options"]["threads"] == 2
    assert main(["run", "--batch", "1", "--backends", "reference", "--threads", "1", "--store", "none"]) == 2
    assert capsys.readouterr().err == "mlms_ir: error: --threads sets onnxruntime's intra-op threads, and no backend here is ort\n"
    assert main(["run", "--batch", "1", "--threads", "0", "--store", "none"]) == 2
    assert "--threads must be an integer >= 1" in capsys.readouterr().err


def test_cli_compare_of_profiles_of_two_models_joins_no_node(tmp_path, cnn_path):
    """Node ids are positions in one graph: n0 of one model is not n0 of another, however alike."""
    store = str(tmp_path / "s.sqlite")
    for model in (str(builtin_path()), str(cnn_path)):
        r = _cli("profile", model, "--batch", "2", "--runs", "2", "--iters", "3", "--format", "json", "--store", store)
        assert r.returncode == 0, r.stderr
    r = _cli("runs", "compare", "1", "2", "--store", store)
    assert r.returncode == 0, r.stderr
    last = r.stdout.rstrip().splitlines()[-1]
    assert re.fullmatch(r"runs 1 and 2 are of different models \(sha256 [0-9a-f]{12} and [0-9a-f]{12}\): per-node rows not compared", last)
    assert "per node" not in r.stdout and "every run recorded the same settings" not in r.stdout
    assert "│ setting model " in r.stdout  # the model is the setting that differs
    r = _cli("runs", "compare", "1", "1", "--store", store)  # one model: its nodes side by side
    assert r.returncode == 0 and "per node: time_us" in r.stdout and "different models" not in r.stdout
