"""The HTML report in a real browser: Playwright driving Debian's headless Chromium.

Chromium comes from ``apt-get install chromium`` (``.ci/run`` installs it); Playwright's own
browser download is never used. Without either, these tests skip, except under CI, where they
fail: CI must exercise them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import mlms_ir
from mlms_ir.report.html import render_html
from mlms_ir.zoo import builtin_path

from report_models import HOSTILE, SCRIPT_CLOSE, blocks_model, hostile_model

CHROMIUM = os.environ.get("MLMS_IR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def expect(locator):
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def _missing(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs chromium and the test extra)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _missing(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


class Page:
    """One report opened in a fresh page, with everything it logs, requests and pops up."""

    def __init__(self, browser, html: str, tmp_path: Path, name: str = "report.html") -> None:
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def fills(self) -> list[str | None]:
        return self.page.eval_on_selector_all("g.node.op rect", "rs => rs.map(r => r.getAttribute('fill'))")

    def close(self) -> None:
        self.page.close()


def _report(model, *, profile=None, divergence=None, runs=None, **bind) -> str:
    graph = mlms_ir.load(model, **bind)
    return render_html(mlms_ir.analyze(graph), graph, profile=profile, divergence=divergence, runs=runs)


@pytest.fixture(scope="module")
def measured_html():
    from mlms_ir.divergence import diverge
    from mlms_ir.runner import profile_backend, run_backends

    path = str(builtin_path())
    prof, _ = profile_backend(path, "ort", batch=1, runs=2, warmup=1, iterations=3)
    div = diverge(path, "ort", "reference", batch=1)
    runs = run_backends(path, ["ort", "reference"], batches=[1, 4], iterations=3, warmup=1)
    return _report(path, profile=prof, divergence=div, runs=runs, batch=1)


def test_renders_every_node_with_no_error_and_no_request(browser, measured_html, tmp_path):
    p = Page(browser, measured_html, tmp_path)
    try:
        assert p.page.locator("g.node.op").count() == 11
        assert p.page.locator("g.node.io").count() == 2
        assert p.page.inner_text("#node-count") == "11 nodes drawn"
        # every tab builds without error; the plots draw on their canvases
        for tab in ("nodes", "optypes", "blocks", "plots", "divergence", "runs", "model", "graph"):
            p.page.click(f"nav#tabs button[data-tab={tab}]")
        p.page.click("nav#tabs button[data-tab=plots]")
        drawn = p.page.eval_on_selector_all("section#plots figure:not([hidden]) canvas", "cs => cs.map(c => c.width > 0 && !!Chart.getChart(c))")
        assert drawn == [True, True, True, True]  # MACs, time by op type, roofline, latency against batch
        assert p.errors == []
        assert [u for u in p.requests if not u.startswith("file:")] == []
    finally:
        p.close()


def test_colouring_follows_the_metric(browser, measured_html, tmp_path):
    p = Page(browser, measured_html, tmp_path)
    try:
        assert p.page.input_value("#metric") == "time_us"  # measured time first when there is a profile
        by_time = p.fills()
        assert len(set(by_time)) > 3  # a scale, not one colour
        p.page.select_option("#metric", "params")
        by_params = p.fills()
        assert by_params != by_time
        assert "parameters" in p.page.inner_text("#legend")
        # the ReLUs and the MaxPool have no parameters: the lightest colour, not "no value"
        relu = p.page.get_attribute("g.node.op[data-id=n1] rect", "fill")
        assert relu == "#fff7d6"
        p.page.select_option("#metric", "div0")
        assert "divergence: ort vs reference" in p.page.inner_text("#legend")
        assert p.page.locator("g.node.exceeds").count() == 0  # a healthy backend: nothing beyond tolerance
        assert p.errors == []
    finally:
        p.close()


def test_a_fused_relu_reads_fused_into_its_conv(browser, measured_html, tmp_path):
    """ORT fuses each Conv+Relu into one kernel: the ReLU shows no sliver of time and no kernel-wide
    FLOP/s, only the node its kernel's time is on (issue #17)."""
    p = Page(browser, measured_html, tmp_path)
    try:
        p.page.click("g.node.op[data-id=n1]")
        details = p.page.text_content("#details")
        assert "fused into n0 (its kernel's time is there)" in details and "FLOP/s" not in details
        p.page.click("g.node.op[data-id=n0]")
        details = p.page.text_content("#details")
        assert re.search(r"fused with\s*n1", details) and re.search(r"time\s*\d+(\.\d+)? (ns|µs|ms|s)", details), details  # any unit: a loaded machine takes ms
        p.page.click("nav#tabs button[data-tab=nodes]")
        rows = p.page.inner_text("#node-table")
        assert re.search(r"^n1\t/features/relu1/Relu\tRelu\t.*\tfused into n0\t–", rows, re.M), rows
        assert p.errors == []
    finally:
        p.close()


def test_search_finds_and_selects_a_node(browser, measured_html, tmp_path):
    p = Page(browser, measured_html, tmp_path)
    try:
        p.page.fill("#search", "gemm")
        expect(p.page.locator("#search-count")).to_have_text(re.compile(r"^2 matches"))
        assert p.page.locator("g.node.match").count() == 2
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title") == "/classifier/fc1/Gemm"
        details = p.page.text_content("#details")  # raw text (the headings are upper-cased by CSS)
        assert "MACs" in details and "time" in details and "error: ort vs reference" in details
        assert "kernels / backend ops" in details.lower()
        p.page.fill("#search", "no such node")
        expect(p.page.locator("#search-count")).to_have_text(re.compile(r"^0 matches"))
        assert p.page.locator("g.node.match").count() == 0
    finally:
        p.close()


def test_hostile_names_stay_inert(browser, tmp_path):
    p = Page(browser, _report(hostile_model()), tmp_path)
    try:
        assert p.dialogs == [] and p.errors == []
        assert p.page.evaluate("document.querySelectorAll('img, iframe, object, embed, svg script, svg[onload]').length") == 0
        assert p.page.evaluate("[...document.querySelectorAll('b')].filter(b => b.textContent === 'bold').length") == 0
        assert p.page.evaluate("document.querySelectorAll('script').length") == 3
        assert p.page.locator("g.node.op").count() == 2
        # the names show as text: on the graph's input box, in the details, in the header
        assert HOSTILE in p.page.eval_on_selector_all("g.node.io text", "ts => ts.map(t => t.textContent).join('|')")
        p.page.fill("#search", "matmul")
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title") == HOSTILE
        assert "MatMul" in p.page.inner_text("#details")
        p.page.fill("#search", "<b>bold")
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title") == "relu & <b>bold</b>"
        assert SCRIPT_CLOSE in p.page.inner_text("#details")  # its output's name
        assert "<script>alert(4)</script>" in p.page.inner_text("header")
        p.page.click("nav#tabs button[data-tab=model]")
        body = p.page.inner_text("#model-body")
        assert HOSTILE in body and SCRIPT_CLOSE in body
        p.page.click("nav#tabs button[data-tab=nodes]")
        assert "relu & <b>bold</b>" in p.page.inner_text("#node-table")
        assert p.dialogs == [] and p.errors == []
    finally:
        p.close()


def test_hostile_block_names_stay_inert_folded_and_opened(browser, tmp_path):
    """Block labels and nodes rebuilt from template references come from the model's names too."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_llm_graph import build

    model = build(layers=3, nodes=0)
    for n in model.graph.node:
        n.name = n.name.replace("/model/layers.", "/" + HOSTILE + ".")
    p = Page(browser, _report(model), tmp_path)
    try:
        p.page.check("#collapse")
        assert p.page.text_content("g.node.fold").startswith("<img src=x")
        p.page.fill("#search", HOSTILE + ".2/mlp/down_proj")
        p.page.press("#search", "Enter")  # opens the third instance, whose nodes are references
        assert p.page.inner_text("#details-title").startswith("/" + HOSTILE + ".2/mlp/down_proj/MatMul_")
        assert p.page.evaluate("document.querySelectorAll('img, iframe, object, embed, svg script').length") == 0
        assert p.dialogs == [] and p.errors == []
    finally:
        p.close()


def test_repeated_blocks_fold_unfold_and_open(browser, tmp_path):
    p = Page(browser, _report(blocks_model(4)), tmp_path)
    try:
        assert p.page.locator("g.node.op").count() == 13  # a small graph opens whole
        p.page.check("#collapse")
        # folded: the four instances are one "×4" box
        assert p.page.locator("g.node.block").count() == 1 and p.page.text_content("g.node.fold") == "layers.# ×4"
        assert p.page.locator("g.node.op").count() == 1  # the Softmax head
        p.page.click("#unfold")
        assert p.page.locator("g.node.block").count() == 4 and p.page.locator("g.node.fold").count() == 0
        # a search opens the instance that holds the node and selects it there
        p.page.fill("#search", "layers.2/act")
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title") == "/layers/layers.2/act/Relu"
        assert p.page.locator("g.node.op").count() == 3 and "of layers/layers.2" in p.page.inner_text("#node-count")
        p.page.click("#back")
        assert p.page.locator("g.node.block").count() == 4
        assert p.page.inner_text("#details-title") == "layers/layers.2"
        p.page.click("#unfold")  # folds again
        p.page.click("g.node.fold")
        p.page.click("#details-unfold")
        assert p.page.locator("g.node.block").count() == 4
        p.page.dblclick("g.node.block >> nth=1")
        assert p.page.locator("g.node.op").count() == 3 and "of layers/layers.1" in p.page.inner_text("#node-count")
        p.page.uncheck("#collapse")
        assert p.page.locator("g.node.op").count() == 13 and p.page.locator("g.node.block").count() == 0
        assert p.errors == []
    finally:
        p.close()


def test_tables_sort_on_click(browser, measured_html, tmp_path):
    p = Page(browser, measured_html, tmp_path)
    try:
        p.page.click("nav#tabs button[data-tab=nodes]")
        col = "#node-table tbody tr td:nth-child(7)"  # params
        p.page.click("#node-table th:nth-child(7)")
        first = p.page.locator(col).first.inner_text()
        p.page.click("#node-table th:nth-child(7)")
        again = p.page.locator(col).first.inner_text()
        assert first != again and {first, again} >= {"0"}
        p.page.fill("#node-filter", "relu")
        expect(p.page.locator("#node-table tbody tr")).to_have_count(4)
        assert "4 nodes" in p.page.inner_text("#node-rows")
    finally:
        p.close()


def test_a_large_graph_draws_all_its_nodes(browser, tmp_path):
    """Many repeated blocks (1,200 drawn nodes): drawn whole, one "×400" box folded."""
    p = Page(browser, _report(blocks_model(400)), tmp_path)
    try:
        assert p.page.locator("g.node.op").count() == 1201
        p.page.check("#collapse")
        assert p.page.locator("g.node.block").count() == 1 and p.page.text_content("g.node.fold") == "layers.# ×400"
        p.page.click("#unfold")
        assert p.page.locator("g.node.block").count() == 400
        assert p.errors == []
    finally:
        p.close()


def test_an_llm_sized_graph_opens_folded_and_every_node_is_reachable(browser, tmp_path):
    """12 decoder layers of 1,000 nodes (tools/make_llm_graph.py): too large to lay out whole, so
    it opens folded; search, unfold, open, click and the nodes table still reach every node. The
    timing goal for 50,000 nodes lives in tools/bench_report.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_llm_graph import build

    model = build(layers=12, nodes=12_000)
    p = Page(browser, _report(model), tmp_path)
    try:
        assert p.page.text_content("g.node.fold") == "layers.# ×12"
        assert p.page.is_disabled("#collapse") and p.page.is_checked("#collapse")  # no whole layout to go back to
        p.page.fill("#search", "layers.7/mlp/down_proj/MatMul")
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title").startswith("/model/layers.7/mlp/down_proj/MatMul_")
        assert "of model/layers.7" in p.page.inner_text("#node-count")
        details = p.page.text_content("#details")  # rebuilt from its template's node: shapes and cost are there
        assert "1×16×128" in details and "MACs" in details
        p.page.click("#back")
        assert p.page.locator("g.node.block").count() == 12
        p.page.click("nav#tabs button[data-tab=nodes]")
        assert "of " + str(len(model.graph.node)) in p.page.inner_text("#node-rows")
        assert p.errors == []
    finally:
        p.close()


def test_a_large_graph_without_blocks_draws_only_what_is_near_the_window(browser, tmp_path):
    """Above CULL_AT items a view makes only the nodes near the window, and more as it pans and zooms."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_llm_graph import build

    g = mlms_ir.load(build(layers=12, nodes=9_000))
    a = mlms_ir.analyze(g)
    a.structure.blocks = []  # nothing to fold: the whole graph is drawn
    p = Page(browser, render_html(a, g), tmp_path)
    try:
        total = len(g.nodes)
        assert p.page.inner_text("#node-count") == f"{total} nodes drawn"
        first = p.page.locator("g.node").count()
        assert 0 < first < total / 10
        p.page.fill("#search", "layers.11/mlp/down_proj")  # near the bottom: not made yet
        p.page.press("#search", "Enter")
        assert p.page.inner_text("#details-title").startswith("/model/layers.11/mlp/down_proj/MatMul_")
        assert p.page.locator("g.node.selected").count() == 1 and p.page.locator("g.node.match").count() == 1
        p.page.click("#fit")  # all of it in the window: everything is made
        assert p.page.locator("g.node").count() == total + 2 + 1  # and the two inputs and the output
        assert p.errors == []
    finally:
        p.close()


def test_op_types_named_like_object_properties(browser, tmp_path):
    """Custom ops called toString or __proto__, in two domains, with measured times."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("toString", ["x"], ["a"], name="t", domain="com.x"),
             helper.make_node("__proto__", ["a"], ["b"], name="p", domain="com.x"),
             helper.make_node("Relu", ["b"], ["c"], name="r1"), helper.make_node("Relu", ["c"], ["y"], name="r2", domain="")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.x", 1)])
    graph = mlms_ir.load(m, lenient=True)
    from test_report_html import NODE_TIME, PROFILE

    prof = {**PROFILE, "latency_ms": {"p50": 0.1},
            "nodes": [{**NODE_TIME, "id": f"n{i}", "op_type": op, "time_us": 10.0 * (i + 1), "share": 0.25} for i, op in
                      enumerate(["toString", "__proto__", "Relu", "Relu"])]}
    p = Page(browser, render_html(mlms_ir.analyze(graph), graph, profile=prof), tmp_path)
    try:
        for tab in ("optypes", "plots", "nodes", "graph"):
            p.page.click(f"nav#tabs button[data-tab={tab}]")
        p.page.click("nav#tabs button[data-tab=optypes]")
        text = p.page.inner_text("#optype-table")
        assert "toString" in text and "__proto__" in text and "70 µs" in text  # the two Relus: 30 + 40 µs
        assert p.errors == []
    finally:
        p.close()


def test_cuda_profile_details(browser, tmp_path, monkeypatch):
    """A CUDA profile (the recorded trace replayed): the node panel shows the execution profile
    and each kernel's launch configuration; the header the run's GPU line."""
    import onnx

    from mlms_ir.backends import registry
    from mlms_ir.runner import profile_backend

    from cuda_replay import ReplayBackend, conv_relu_gemm, recorded_traces

    monkeypatch.setitem(registry._cache, "replay", ReplayBackend(recorded_traces()))
    path = tmp_path / "crg.onnx"
    onnx.save(conv_relu_gemm(), path)
    prof, _ = profile_backend(str(path), "replay", device="cuda", runs=2, iterations=3, warmup=1, system=False,
                              roofline_device="h200")
    p = Page(browser, _report(str(path), profile=prof), tmp_path)
    try:
        p.page.click("g.node.op[data-id=n0]")
        details = p.page.text_content("#details")
        assert "CUDA execution" in details and "launch overhead (host − GPU)" in details
        assert "49.3 µs" in details and "41.2 µs" in details  # 60 - 10.7 host minus GPU; idle before its kernels
        assert "grid 4×1×1, block 384×1×1, 168 regs" in details and "occupancy 1%" in details
        facts = p.page.text_content("#facts")
        assert "GPU execution" in facts and "7 kernels per run" in facts and "utilisation 5.0%" in facts
        assert p.errors == []
    finally:
        p.close()


def test_counters_details_and_roofline(browser, tmp_path):
    """Hardware counters (a hand-built ncu CSV attributed to its model): the node panel shows
    them, the graph colours by the measured/static ratio, the roofline draws their points."""
    import onnx

    from mlms_ir.gpu.counters_attribution import attribute_counters
    from mlms_ir.gpu.ncu_parse import parse_ncu_csv

    from test_ncu import DATA, counters_model

    path = tmp_path / "counters.onnx"
    onnx.save(counters_model(), path)
    graph = mlms_ir.load(str(path))
    counters = attribute_counters(parse_ncu_csv((DATA / "ncu_raw.csv").read_text()), mlms_ir.analyze(graph).nodes, "h200")
    counters.gpu = "NVIDIA H200"
    html = render_html(mlms_ir.analyze(graph, device="h200"), graph, counters=counters)
    p = Page(browser, html, tmp_path)
    try:
        p.page.click("g.node.op[data-id=n0]")
        details = p.page.text_content("#details")
        assert "hardware counters (ncu, NVIDIA H200)" in details and "tensor cores" in details and "FLOPs measured / static" in details
        p.page.select_option("#metric", "hw_flops_ratio")
        assert "measured / static FLOPs (ncu)" in p.page.inner_text("#legend")
        assert "counters" in p.page.text_content("#facts")
        p.page.click("nav#tabs button[data-tab=plots]")
        assert "triangles: hardware counters" in p.page.text_content("#roofline-caption")
        assert p.errors == []
    finally:
        p.close()


def test_symbolic_report_shows_formulas_and_plots_totals_against_the_dim(browser, tmp_path):
    # the embedded model with its batch left unbound: every figure a formula of N
    graph = mlms_ir.load(str(builtin_path()))
    html = render_html(mlms_ir.analyze(graph), graph)
    p = Page(browser, html, tmp_path, "symbolic.html")
    try:
        facts = p.page.inner_text("#facts")
        assert "·" in facts and "dims" in facts, facts  # MACs shown as a formula, e.g. 665 K·batch
        assert len(set(p.fills())) > 2  # coloured by MACs at batch=4,096: the convolutions stand out
        p.page.click("nav#tabs button[data-tab=plots]")
        assert p.page.locator("#fig-sweep").is_visible()
        assert p.page.inner_text("#sweep-caption").startswith("Totals against ")
        points = p.page.evaluate("() => Chart.getChart(document.getElementById('plot-sweep')).data.datasets[0].data.length")
        assert points == 13  # the only free dim, doubling from 1 to 4096
        assert p.errors == []
    finally:
        p.close()


def test_divergence_panel_names_the_wrong_backend_and_shows_infinite_errors(browser, tmp_path, onnx_reference):
    """The arbiter's verdict in the node panel (on onnx's own evaluator, whose BatchNormalization
    below 14 mlms_ir's reference backend corrects), and an fp16 overflow shown as ∞ (not as no error)."""
    from test_divergence import _batchnorm9_model, _fp16_overflow_model

    from mlms_ir.divergence import diverge

    model, _ = _batchnorm9_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    div = diverge(model, "ort", onnx_reference, inputs={"x": x})
    p = Page(browser, _report(model, divergence=div), tmp_path)
    try:
        p.page.click("g.node.op[data-id=n1]")
        details = p.page.text_content("#details")
        assert "onnx-reference is wrong here" in details and "onnx.reference in float64 at opset" in details
        assert p.errors == []
    finally:
        p.close()
    over = _fp16_overflow_model()
    div = diverge(over, "ort", "reference", inputs={"x": np.full((1, 16), 100.0, np.float32)}, precision="fp16")
    p = Page(browser, _report(over, divergence=div), tmp_path, name="over.html")
    try:
        p.page.click("g.node.op[data-id=n1]")
        assert "∞" in p.page.text_content("#details")
        assert p.errors == []
    finally:
        p.close()


@pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None, reason="mlcommons-loadgen is not installed (pip install '.[loadgen]')")
def test_scenario_tab_draws_the_histogram_and_samples_per_second(browser, tmp_path):
    from mlms_ir.scenarios import run_scenarios

    path = str(builtin_path())
    # 10^6 QPS under a 10 ms bound for 0.1 s: far beyond the embedded model on this machine, INVALID
    scen = run_scenarios(path, ["ort"], scenario="server", target_qps=1e6, latency_bound_ms=10, duration_s=0.1, system=False)
    graph = mlms_ir.load(path, batch=1)
    p = Page(browser, render_html(mlms_ir.analyze(graph), graph, scenarios=scen), tmp_path, "scenario.html")
    try:
        p.page.click("nav#tabs button[data-tab=scenarios]")
        drawn = p.page.eval_on_selector_all("section#scenarios canvas", "cs => cs.map(c => c.id + ' ' + (c.width > 0 && !!Chart.getChart(c)))")
        assert drawn == ["scenario-hist-0 true", "scenario-qps-0 true"]
        assert p.page.get_attribute("section#scenarios .verdict", "data-verdict") == "INVALID"
        body = p.page.inner_text("#scenario-body")
        assert "latency bound not met" in body and "10 ms at p99" in body
        assert "LoadGen Server" in p.page.inner_text("#facts")
        assert p.errors == []
        assert [u for u in p.requests if not u.startswith("file:")] == []
    finally:
        p.close()
