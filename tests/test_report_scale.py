"""The HTML report at LLM scale, fast: folding, template references, size per node, layout growth.

The 50,000-node figures (file size, first paint in Chromium) come from ``tools/bench_report.py
--models llm_50k``; here a 48-layer decoder of small blocks (``tools/make_llm_graph.py``) checks
the same mechanisms in a few seconds.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import pytest

import mlms_ir
from mlms_ir.report import html as H
from mlms_ir.report.layout import layered_layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_llm_graph import build  # noqa: E402


@pytest.fixture(scope="module")
def decoder():
    """48 decoder layers of 78 nodes (3,760 nodes: above FOLD_BY_DEFAULT_NODES)."""
    model = build(layers=48, nodes=0)
    graph = mlms_ir.load(model)
    return mlms_ir.analyze(graph), graph


def expand(nodes):
    """What report.js does with the references: the full node entries."""
    out = []
    for r in nodes:
        if "t" not in r:
            out.append(r)
            continue
        t = nodes[r["t"]]
        n = {**t, **{k: v for k, v in r.items() if k not in ("t", "in", "out", "del")}}
        if "in" in r:
            n["inputs"] = [[x, *t["inputs"][j][1:]] for j, x in enumerate(r["in"])]
        if "out" in r:
            n["outputs"] = [[x, *t["outputs"][j][1:]] for j, x in enumerate(r["out"])]
        for k in r.get("del", []):
            del n[k]
        out.append(n)
    return out


def test_a_decoder_opens_folded_as_one_box_of_48(decoder):
    a, g = decoder
    d = H.build_report_data(a, g)
    assert len(g.nodes) > H.FOLD_BY_DEFAULT_NODES and d["view"] == "folded"
    folds = [it for it in d["folded"]["items"] if isinstance(it, dict)]
    assert [(f["label"], f["count"], len(f["instances"])) for f in folds] == [("layers.# ×48", 48, 48)]
    assert folds[0]["macs"] == a.blocks[0].macs  # the fold's figures are its instances' sums
    assert len(d["folded"]["pos"]) == len(d["folded"]["items"]) < 30
    # one template, every instance drawn with it
    boxes = [it for it in d["collapsed"]["items"] if isinstance(it, dict)]
    assert len(boxes) == 48 and {b["tpl"] for b in boxes} == {0} and len(d["templates"]) == 1
    t = d["templates"][0]
    assert t["members"] == boxes[0]["members"] and len(t["pos"]) == len(t["members"]) == a.blocks[0].nodes_per_block


def test_references_rebuild_exactly_the_full_nodes(decoder, monkeypatch):
    a, g = decoder
    d = H.build_report_data(a, g)
    refs = [n for n in d["nodes"] if "t" in n]
    assert len(refs) == 47 * a.blocks[0].nodes_per_block  # every node of instances 2..48
    monkeypatch.setattr(H, "_as_references", lambda draw, collapsed, templates: draw)
    full = H.build_report_data(a, g)["nodes"]
    assert expand(copy.deepcopy(d["nodes"])) == full
    # the nodes travel in well under half the bytes, and a main-graph table row is one number
    assert len(H.json_for_html(d["nodes"])) < 0.5 * len(H.json_for_html(full))
    assert sum(isinstance(r, int) for r in d["table"]) == len(g.nodes)


def test_a_reference_keeps_what_differs_from_its_template():
    t = {"id": "n1", "name": "a", "op": "Add", "inputs": [["x", "2", "activation"]], "outputs": [["y", "2"]], "macs": 0, "time_us": 3.0}
    d = {"id": "n9", "name": "b", "op": "Add", "inputs": [["x9", "4", "activation"]], "outputs": [["y9", "2"]], "macs": 0, "note": "z"}
    r = H._reference(d, t, 0)
    assert r == {"t": 0, "id": "n9", "name": "b", "inputs": [["x9", "4", "activation"]], "out": ["y9"], "note": "z", "del": ["time_us"]}
    assert expand([t, r])[1] == d


def test_too_large_to_lay_out_whole_ships_no_full_layout(decoder, monkeypatch):
    a, g = decoder
    monkeypatch.setattr(H, "FULL_LAYOUT_MAX_NODES", 1000)
    d = H.build_report_data(a, g)
    assert d["layout"] is None and d["view"] == "folded" and d["collapsed"] and d["templates"]


def test_a_small_graph_still_opens_whole():
    model = build(layers=4, nodes=0)
    g = mlms_ir.load(model)
    d = H.build_report_data(mlms_ir.analyze(g), g)
    assert d["view"] == "full" and d["layout"] is not None and d["folded"] is not None


def test_block_names_from_the_model_stay_data(decoder):
    """A fold box's label comes from the model's scope names: JSON-escaped like every other name."""
    model = build(layers=3, nodes=0)
    for n in model.graph.node:
        n.name = n.name.replace("/model/layers.", "/<img src=x onerror=alert(1)>.")
    g = mlms_ir.load(model)
    page = H.render_html(mlms_ir.analyze(g), g)
    assert "<img" not in page and "\\u003cimg src=x onerror=alert(1)\\u003e" in page
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert any(isinstance(it, dict) and it.get("fold") and it["label"].startswith("<img") for it in data["folded"]["items"])


def _decoder_layout_input(nodes: int) -> tuple[list[tuple[str, float, float]], list[tuple[str, str]]]:
    m = build(layers=48, nodes=nodes)
    producer: dict[str, str] = {x.name: f"in:{x.name}" for x in m.graph.input}
    boxes = [(v, 60.0, 22.0) for v in producer.values()]
    edges = []
    for i, nd in enumerate(m.graph.node):
        boxes.append((f"n{i}", 60.0, 22.0))
        edges += [(producer[x], f"n{i}") for x in nd.input if x in producer]
        producer.update((x, f"n{i}") for x in nd.output)
    return boxes, edges


def test_layout_time_grows_no_worse_than_n_log_n():
    """4x the nodes costs at most 4 x log(4n)/log(n) x 1.5 (slack for a loaded machine) the time;
    best of three each, interleaved. Timed in this thread's CPU time, which other processes on a
    loaded machine do not inflate (wall time gave a ratio of 12 once in the full suite, 4 alone),
    and with the cyclic collector paused, as render_html lays out (its passes over a test
    worker's own heap are not the layout's)."""
    from mlms_ir.ir.gc_pause import paused_gc

    small, large = _decoder_layout_input(3_000), _decoder_layout_input(12_000)
    ts, tl = math.inf, math.inf
    with paused_gc():
        for _ in range(3):
            t0 = time.thread_time()
            layered_layout(*small)
            ts = min(ts, time.thread_time() - t0)
            t0 = time.thread_time()
            layered_layout(*large)
            tl = min(tl, time.thread_time() - t0)
    n, m = len(small[0]), len(large[0])
    bound = (m / n) * math.log(m) / math.log(n) * 1.5
    assert tl / ts < bound, f"{n} nodes {ts:.3f} s, {m} nodes {tl:.3f} s: ratio {tl / ts:.2f} >= {bound:.2f}"
