"""The HTML report without a browser: its data, its escaping, its CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import onnx
import pytest

import mlms_ir
from mlms_ir.report.html import build_report_data, json_for_html, render_html, report
from mlms_ir.zoo import builtin_path

from report_models import HOSTILE, SCRIPT_CLOSE, blocks_model, hostile_model


class _Scan(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((self._in, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def _scan(html: str) -> _Scan:
    s = _Scan()
    s.feed(html)
    return s


def _data(html: str) -> dict:
    (payload,) = [t for a, t in _scan(html).scripts if a.get("type") == "application/json"]
    return json.loads(payload)


def _analysed(model, **kw):
    graph = mlms_ir.load(model, **kw)
    return mlms_ir.analyze(graph), graph


def test_data_has_every_node_placed_with_its_cost():
    a, g = _analysed(str(builtin_path()), batch=1)
    d = build_report_data(a, g)
    ops = [n for n in d["nodes"] if n["kind"] == "op"]
    assert len(ops) == a.totals.nodes == 11
    assert [n["kind"] for n in d["nodes"]].count("input") == 1 and [n["kind"] for n in d["nodes"]].count("output") == 1
    assert len(d["layout"]["pos"]) == len(d["nodes"])
    by_id = {c.id: c for c in a.nodes}
    for n in ops:
        assert n["macs"] == by_id[n["id"]].macs and n["params"] == by_id[n["id"]].params
    # the drawing goes top to bottom along the chain: image, conv1 ... logits
    ys = [p[1] for p in d["layout"]["pos"]]
    assert ys == sorted(ys)
    assert {k for k, _ in d["metrics"]} == {"macs", "flops", "params", "out_bytes"}
    assert d["collapsed"] is None and d["measured"] is False


def test_profile_and_divergence_become_metrics_and_the_summary():
    from mlms_ir.divergence import diverge
    from mlms_ir.runner import profile_backend

    a, g = _analysed(str(builtin_path()), batch=1)
    prof, _ = profile_backend(str(builtin_path()), "ort", batch=1, runs=2, warmup=1, iterations=3)
    div = diverge(str(builtin_path()), "ort", "reference", batch=1, introduced="all")
    d = build_report_data(a, g, profile=prof, divergence=div)
    keys = [k for k, _ in d["metrics"]]
    assert {"time_us", "share", "achieved", "div0", "div0i"} <= set(keys)
    timed = [n for n in d["nodes"] if n.get("time_us") is not None]
    fused = [n for n in d["nodes"] if "fused_into" in n]  # ORT's Conv+Relu kernels: the ReLU has no time of its own
    assert len(timed) + len(fused) >= 8 and all(n["kernels"] for n in timed + fused)  # ORT's own node names, per graph node
    assert all(n["time_us"] is None and n["share"] is None and n["achieved"] is None and n["fused_into"] in {t["id"] for t in timed}
               for n in fused)
    assert all(k["name"] and k["time_us"] >= 0 for n in timed for k in n["kernels"])
    unattributed = sum(u["time_us"] for u in prof.unattributed) / prof.node_time_us
    assert sum(n["share"] for n in timed) + unattributed == pytest.approx(1.0, abs=1e-6)
    assert d["summary"]["slowest"][0]["time_us"] == max(n["time_us"] for n in timed)
    assert d["summary"]["first_divergent"] == [{"backend": "ort", "reference": "reference", "node": None, "compared": 11}]
    with_err = [n for n in d["nodes"] if "div" in n]
    assert len(with_err) == 11 and all(n["div"]["div0"]["introduced_max_abs"] is not None for n in with_err)
    html = render_html(a, g, profile=prof, divergence=div)
    assert "slowest nodes" in html and "every tensor within tolerance" in html


def test_collapsed_view_draws_one_box_per_block_instance():
    a, g = _analysed(blocks_model(4))
    d = build_report_data(a, g)
    c = d["collapsed"]
    boxes = [it for it in c["items"] if isinstance(it, dict)]
    assert len(boxes) == 4 and all(b["kind"] == "block" and len(b["members"]) == 3 for b in boxes)
    assert sum(b["macs"] for b in boxes) == a.blocks[0].macs
    plain = [it for it in c["items"] if isinstance(it, int)]
    assert sorted(d["nodes"][i]["label"] for i in plain) == ["Softmax", "x", "y"]
    assert len(c["pos"]) == len(c["items"]) and c["edges"]


def test_hostile_strings_never_reach_the_page_as_markup():
    a, g = _analysed(hostile_model())
    html = render_html(a, g)
    assert "<img" not in html and "<svg onload" not in html and "<b>bold" not in html
    assert "alert(4)</script>" not in html and SCRIPT_CLOSE not in html
    scan = _scan(html)
    assert [t for t, _ in scan.tags].count("script") == 3  # the data, Chart.js, the report's script
    assert all(a.get("nonce") or a.get("type") == "application/json" for a, _ in scan.scripts)
    assert not any(k.startswith("on") for _, attrs in scan.tags for k in attrs)
    # ...yet every string arrives intact as data
    d = _data(html)
    names = {n["name"] for n in d["nodes"]}
    assert HOSTILE in names and "relu & <b>bold</b>" in names and SCRIPT_CLOSE in {n["name"] for n in d["nodes"] if n["kind"] == "output"}
    assert d["model"]["metadata"]["author"] == HOSTILE and d["model"]["doc_string"].startswith(SCRIPT_CLOSE)
    # the header's text went through Jinja2's escaping
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in html


def test_json_for_html_escapes_what_could_end_the_element():
    text = json_for_html({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


def test_page_is_self_contained_and_forbids_requests():
    a, g = _analysed(str(builtin_path()), batch=1)
    html = render_html(a, g)
    scan = _scan(html)
    csp = [attrs["content"] for t, attrs in scan.tags if t == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "connect-src 'none'" in csp[0]
    for tag, attrs in scan.tags:  # nothing loads from elsewhere: no src, no stylesheet links
        assert "src" not in attrs, (tag, attrs)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert "sourceMappingURL" not in html
    assert "Chart.js v4.6.1" in html  # vendored, inlined


def test_report_verb_writes_a_page(tmp_path):
    out = tmp_path / "r.html"
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "report", "--batch", "1", "-o", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stderr
    d = _data(out.read_text())
    assert d["model"]["name"] == "digits_cnn.onnx" and d["totals"]["macs"] > 0


def test_html_flags_on_analyze_profile_and_diverge(tmp_path):
    for verb, extra in (("analyze", []), ("profile", ["--runs", "2", "--iters", "3", "--warmup", "1"]), ("diverge", [])):
        out = tmp_path / f"{verb}.html"
        r = subprocess.run([sys.executable, "-m", "mlms_ir", verb, "--batch", "1", "--html", str(out), *extra],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (verb, r.stderr)
        d = _data(out.read_text())
        keys = {k for k, _ in d["metrics"]}
        assert ("time_us" in keys) == (verb == "profile") and ("div0" in keys) == (verb == "diverge"), verb


@pytest.mark.slow
def test_report_from_json_files(tmp_path):
    prof = tmp_path / "p.json"
    div = tmp_path / "d.json"
    runs = tmp_path / "r.json"
    base = [sys.executable, "-m", "mlms_ir"]
    for argv, path in ((["profile", "--batch", "1", "--runs", "2", "--iters", "3", "--format", "json"], prof),
                       (["diverge", "--batch", "1", "--format", "json"], div),
                       (["run", "--batch", "1,2", "--iters", "3", "--backends", "ort,reference", "--format", "json"], runs)):
        r = subprocess.run(base + argv + ["--output", str(path)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    out = tmp_path / "all.html"
    r = subprocess.run(base + ["report", "--profile", str(prof), "--divergence", str(div), "--runs", str(runs), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = _data(out.read_text())
    assert d["profile"]["backend"] == "ort" and d["divergence"][0]["backend"] == "ort"
    assert sorted({(x["backend"], x["batch"]) for x in d["runs"]}) == [("ort", 1), ("ort", 2), ("reference", 1), ("reference", 2)]
    assert d["totals"]["macs"] > 0  # the profile's batch bound the model's dynamic batch


#: The smallest JSON objects ``profile`` and ``run`` write (every field without a default).
PROFILE = {"model": {"name": "m", "path": None}, "system": {}, "backend": "ort", "device": "cpu", "options": {}, "batch": 1,
           "runs": 1, "coverage": 1.0, "node_time_us": 1.0, "latency_ms": {}, "traced_wall_ms": 1.0, "tracing_overhead": 0.0,
           "nodes": [], "unattributed": []}
NODE_TIME = {"id": "n0", "name": "", "op_type": "Conv", "time_us": 1.0, "share": 1.0, "events": 1, "macs": None, "flops": None,
             "achieved_flops_per_s": None, "intensity": None}
RUNS = {"model": {"name": "m", "path": None}, "system": {}, "settings": {}, "runs": []}


def _j(base, **kw) -> str:
    return json.dumps({**base, **kw})


@pytest.mark.parametrize("flag,content,msg", [
    ("--profile", "{not json", "is not JSON"),
    ("--profile", "[1, 2]", "does not hold a JSON object"),
    ("--profile", '{"nodes": 3}', "not what 'profile --format json' writes: no 'model', 'system', 'backend', 'device' ..."),
    ("--profile", _j(PROFILE)[:-1] + ', "coverage": NaN}', "holds NaN, which is not JSON"),
    ("--profile", _j(PROFILE, nodes=[1, 2]), "writes: nodes[0] is not an object"),
    ("--profile", _j(PROFILE, nodes=[{**NODE_TIME, "kernels": "abc"}]), "writes: nodes[0].kernels is not a list"),
    ("--profile", _j(PROFILE, nodes=[{"id": "n0"}]), "writes: nodes[0] has no 'name', 'op_type', 'time_us', 'share' ..."),
    ("--profile", _j(PROFILE, latency_ms=3), "writes: latency_ms is not an object"),
    ("--profile", _j(PROFILE, kind="run"), "writes: this is a 'run' result, not 'profile'"),
    ("--profile", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("--profile", b"\x08\x07\xff\xfe binary", "is not text"),
    ("--divergence", '{"reports": [], "failed": [{"backend": "torch", "error": "no torch"}]}', "only failed backends: torch: no torch"),
    ("--divergence", _j(PROFILE), "not what 'diverge --format json' writes: no 'reference', 'precision', 'atol', 'rtol' ..."),
    ("--runs", _j(RUNS, runs=[{"backend": "ort", "device": "cpu", "batch": 1, "status": "ok", "latency_ms": "fast"}]),
     "not what 'run --format json' writes: runs[0].latency_ms is not an object"),
])
def test_bad_result_files_are_one_plain_line(tmp_path, flag, content, msg):
    bad = tmp_path / "bad.json"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "report", "--batch", "1", flag, str(bad), "-o", str(tmp_path / "x.html")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlms_ir: error:") and msg in lines[0]


def test_missing_profile_file_is_a_clear_error(tmp_path):
    from mlms_ir.errors import ReportInputError

    with pytest.raises(ReportInputError, match="cannot read the profile file"):
        report(str(builtin_path()), profile=str(tmp_path / "nope.json"), batch=1)


def test_nodes_table_covers_subgraph_nodes_too():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] y) {
      y = If (c) <then_branch = t () => (float[2] a) { a = Relu (x) }, else_branch = e () => (float[2] b) { b = Neg (x) }>
    }""")
    a, g = _analysed(m)
    d = build_report_data(a, g)
    assert len([n for n in d["nodes"] if n["kind"] == "op"]) == 1  # the If is drawn; its branches are listed
    # a main-graph row is the index of its drawn node (the page rebuilds it), a subgraph's is a full row
    assert len(d["table"]) == 3 and d["nodes"][d["table"][0]]["id"] == "n0" and [r[9] for r in d["table"][1:]] == ["n0", "n0"]
    assert re.search(r"<subgraph: 1 nodes>", json.dumps([n.get("attrs") for n in d["nodes"]]))


def test_results_of_another_model_are_refused(tmp_path):
    from mlms_ir.errors import ReportInputError
    from mlms_ir.runner import profile_backend

    prof, _ = profile_backend(str(builtin_path()), "ort", batch=1, runs=1, warmup=0, iterations=1)
    a, g = _analysed(blocks_model(4))
    with pytest.raises(ReportInputError, match=r"of another model: node n0 is Conv there but MatMul here"):
        build_report_data(a, g, profile=prof)


def test_nan_figures_become_null_on_the_page():
    a, g = _analysed(str(builtin_path()), batch=1)
    prof = {**PROFILE, "coverage": float("nan"), "latency_ms": {"p50": float("inf")},
            "nodes": [{**NODE_TIME, "time_us": float("nan"), "share": 0.5}]}
    d = _data(render_html(a, g, profile=prof))
    assert d["profile"]["coverage"] is None and d["nodes"][1]["time_us"] is None


def test_collapse_skips_an_instance_that_data_leaves_and_reenters():
    """A scoped block whose members feed an unscoped node that feeds them back cannot be one box."""
    from onnx import TensorProto, helper

    nodes = []
    prev = "x"
    for i in range(3):
        sc = f"/layers/layers.{i}"
        nodes += [helper.make_node("Relu", [prev], [f"a{i}"], name=f"{sc}/Relu"),
                  helper.make_node("Shape", [f"a{i}"], [f"s{i}"], name=f"shape{i}"),  # unscoped, between members
                  helper.make_node("Reshape", [f"a{i}", f"s{i}"], [f"b{i}"], name=f"{sc}/Reshape"),
                  helper.make_node("Sigmoid", [f"b{i}"], [f"o{i}"], name=f"{sc}/Sigmoid")]
        prev = f"o{i}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [2, 8])])
    a, gr = _analysed(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert a.blocks and a.blocks[0].count == 3
    d = build_report_data(a, gr)
    assert d["collapsed"] is None  # every instance would be a cycle: nothing collapsed, no edge lost


# ----------------------------------------------------------------------------- run --scenario results

needs_loadgen = pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None,
                                   reason="mlcommons-loadgen is not installed (pip install '.[loadgen]')")


@pytest.fixture(scope="module")
def scenario_result():
    """A real Server run of the embedded model far beyond what it serves: 10^6 QPS under a 10 ms
    bound for 0.1 s is INVALID (tests/test_scenarios.py)."""
    from mlms_ir.scenarios import run_scenarios

    rep = run_scenarios(str(builtin_path()), ["ort"], scenario="server", target_qps=1e6, latency_bound_ms=10, duration_s=0.1,
                        system=False)
    assert rep.runs[0].status == "ok", rep.runs[0].error
    return rep


@needs_loadgen
def test_scenario_results_become_plot_data_and_a_verdict(scenario_result, tmp_path):
    import copy

    rep = copy.deepcopy(scenario_result)
    rec = rep.runs[0]
    rec.backend = HOSTILE  # a name that is markup stays text
    a, g = _analysed(str(builtin_path()), batch=1)
    html = render_html(a, g, scenarios=rep)
    d = _data(html)
    (r,) = d["scenarios"]["runs"]
    assert d["schema"] == "1.4" and d["measured"] is True and d["scenarios"]["settings"]["scenario"] == "Server"
    assert r["verdict"] == "INVALID" and r["valid"] is False and "latency bound not met" in r["invalid_reasons"]
    assert r["target_qps"] == 1e6 and r["latency_bound_ms"] == 10.0 and r["latency_percentile"] == 0.99
    assert r["latency_ms"] == rec.latency_ms and r["samples_per_s"] == rec.samples_per_s
    # the plots' data: the histogram (one more edge than counts) and samples/s in bins over time
    assert r["histogram"]["counts"] == rec.histogram.counts and len(r["histogram"]["edges_ms"]) == len(r["histogram"]["counts"]) + 1
    assert sum(r["histogram"]["counts"]) > 0
    assert r["timeline"]["samples_per_s"] == rec.timeline.samples_per_s and r["timeline"]["bin_s"] > 0
    assert "loadgen_summary" not in r  # LoadGen's text stays in the result's JSON
    # the verdict in a sentence of the header (escaped by the template), the tab and its script
    assert "LoadGen Server on " in html and ": INVALID; target 1 M QPS" in html and "bound 10 ms at p99" in html
    assert HOSTILE not in html and 'id="tab-scenarios"' in html and "scenario-hist-" in html and "scenario-qps-" in html


@needs_loadgen
def test_report_verb_takes_a_scenario_file(scenario_result, tmp_path, capsys):
    from mlms_ir.cli import main

    scen, out = tmp_path / "scen.json", tmp_path / "r.html"
    scen.write_text(scenario_result.to_json())
    assert main(["report", "--batch", "1", "--scenarios", str(scen), "-o", str(out)]) == 0
    d = _data(out.read_text())
    assert [r["verdict"] for r in d["scenarios"]["runs"]] == ["INVALID"]
    assert d["scenarios"]["runs"][0]["histogram"]["counts"] == scenario_result.runs[0].histogram.counts
    runs_file = tmp_path / "runs.json"
    runs_file.write_text(json.dumps({"kind": "run", **RUNS}))  # a run result given as scenarios
    assert main(["report", "--batch", "1", "--scenarios", str(runs_file), "-o", str(out)]) == 2
    assert "not what 'run --scenario --format json' writes: this is a 'run' result, not 'scenario'" in capsys.readouterr().err
