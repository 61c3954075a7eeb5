"""The self-contained HTML report: the graph drawn top to bottom, coloured by a metric, with
tables and plots of the static analysis, a profile, divergence and run results.

One file that works offline: the styles, the report's script and the vendored Chart.js are
inlined, and a Content-Security-Policy forbids every request. Every string that comes from a
model (names, doc strings, metadata, attributes) travels as JSON inside a
``<script type="application/json">`` element (with ``<``, ``>`` and ``&`` escaped) and is put
on the page with ``textContent`` only, never parsed as HTML.

The layout is computed here (:mod:`mlms_ir.report.layout`), so the browser only draws; a
6,000-node graph renders in well under the 3 s the report promises, and a 50,000-node decoder
with its 48 layers folded too (``tools/bench_report.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import onnx

from mlms_ir.errors import MlmsIrError
from mlms_ir.ir import Graph
from mlms_ir.ir.gc_pause import paused_gc
from mlms_ir.ir.graph import node_reads
from mlms_ir.report.fusion import by_shown_time, shown_times
from mlms_ir.report.layout import Layout, layered_layout
from mlms_ir.report.run_text import oracle_verdict
from mlms_ir.report.scenario_text import verdict as scenario_verdict
from mlms_ir.results.analysis import Analysis
from mlms_ir.results.base import json_safe, to_plain
from mlms_ir.results.counters import CountersReport
from mlms_ir.results.divergence import DivergenceReport
from mlms_ir.results.join import join
from mlms_ir.results.profile import ProfileReport
from mlms_ir.results.read import as_divergences, as_result
from mlms_ir.results.run import RunReport
from mlms_ir.results.scenario import ScenarioReport

#: Version of the JSON the report's script reads (``data.schema``). 1.2: a fused kernel's time on
#: the node it was fused into, ``fused_into`` (and no time) on its other nodes. 1.3: ``scenarios``
#: (``run --scenario`` results: LoadGen's verdict, latency histogram and samples/s over time). 1.4: ``view``,
#: ``folded`` and ``templates``; ``layout`` null for a large graph with repeated blocks; a node of a block
#: instance as a reference to its template's node, a main-graph row of ``table`` as its node's index.
REPORT_DATA_VERSION = "1.4"
MAX_ATTR_CHARS = 300
MAX_LIST_ITEMS = 16
NODE_HEIGHT = 22.0
#: Above this many drawn nodes, a graph with repeated blocks opens folded (each run of instances one "×N" box).
FOLD_BY_DEFAULT_NODES = 2_000
#: Above this many drawn nodes, a graph with repeated blocks is not laid out whole: its views are the folded
#: one, one box per instance, and each instance opened on its own (its block's layout, shipped once).
FULL_LAYOUT_MAX_NODES = 10_000
CHAR_WIDTH = 6.6


# ------------------------------------------------------------------------------------------ inputs


def measured_inputs(profile: Any = None, divergence: Any = None, runs: Any = None, counters: Any = None,
                    scenarios: Any = None) -> tuple[ProfileReport | None, list[DivergenceReport], RunReport | None,
                                                    CountersReport | None, ScenarioReport | None]:
    """The measured results a report shows, typed: each may be the result object, its JSON (a
    dict) or the path of a ``--format json`` file (see :mod:`mlms_ir.results.read`)."""
    return (as_result(profile, ProfileReport), as_divergences(divergence), as_result(runs, RunReport),
            as_result(counters, CountersReport), as_result(scenarios, ScenarioReport))


#: Per-node figures of ``profile --counters`` shown on the page (their keys there: ``hw_`` + key).
COUNTER_FIELDS = ("kernels", "gpu_time_us", "flops", "static_flops", "flops_ratio", "tensor_inst", "tensor_cycles", "tensor_core",
                  "dram_bytes", "static_bytes", "bytes_ratio", "sm_pct", "memory_pct", "occupancy_pct", "achieved_flops_per_s",
                  "intensity", "attainable_flops_per_s", "roofline_share", "bound")


# --------------------------------------------------------------------------------------- the data


def _attr_text(a: onnx.AttributeProto) -> str:
    """A short, plain-text rendering of an attribute's value."""
    T = onnx.AttributeProto
    if a.type == T.GRAPH:
        return f"<subgraph: {len(a.g.node)} nodes>"
    if a.type == T.GRAPHS:
        return f"<{len(a.graphs)} subgraphs>"
    if a.type == T.TENSOR:
        t = a.t
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name if t.data_type else "?"
        return f"tensor {dt}[{', '.join(map(str, t.dims))}]"
    if a.type == T.TENSORS:
        return f"<{len(a.tensors)} tensors>"
    if a.type == T.SPARSE_TENSOR:
        return "sparse tensor"
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, list):
        items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value[:MAX_LIST_ITEMS]]
        value = "[" + ", ".join(map(str, items)) + (f", … ({len(value)} in all)]" if len(value) > MAX_LIST_ITEMS else "]")
    text = str(value)
    return text if len(text) <= MAX_ATTR_CHARS else text[:MAX_ATTR_CHARS] + "…"


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "?"
    return "×".join("?" if d is None else str(d) for d in shape) or "scalar"


def _err(x: Any) -> float | str | None:
    """An error figure for the page: a number, ``"inf"``/``"-inf"`` for an infinite error (JSON
    has no infinity, and an infinite error must not read as none), None when unknown."""
    if isinstance(x, (int, float)) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return _num(x)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _label_width(label: str) -> float:
    return max(44.0, 16.0 + CHAR_WIDTH * len(label))


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]


def _layout_payload(lay: Layout, ids: Sequence[str]) -> dict[str, Any]:
    index = {k: i for i, k in enumerate(ids)}
    pos = [[round(v, 1) for v in lay.nodes[k]] for k in ids]
    edges = [[index[s], index[d], [round(c, 1) for p in pts for c in p]] for s, d, pts in lay.edges if s in index and d in index]
    return {"width": round(lay.width, 1), "height": round(lay.height, 1), "pos": pos, "edges": edges}


def _sweep(analysis: Analysis, sweep: tuple[str, list[dict[str, Any]]] | None) -> dict[str, Any] | None:
    """The totals along one dim for the report's plot: the given sweep (``analyze --sweep-dim``),
    or, when the formulas have exactly one free dim, that dim doubling from 1 to 4096."""
    if sweep is not None:
        return {"dim": sweep[0], "rows": sweep[1]}
    if len(analysis.dims) != 1:
        return None
    from mlms_ir.errors import FormulaError
    from mlms_ir.passes.formulas import sweep as run_sweep

    dim = analysis.dims[0].name
    try:
        return {"dim": dim, "rows": run_sweep(analysis, dim, [2**k for k in range(13)])}
    except FormulaError:
        return None


def _formulas(symbolic: Mapping[str, str] | None) -> dict[str, str] | None:
    """Formulas as the page shows them (``3.07 K·batch·seq²``)."""
    if not symbolic:
        return None
    from mlms_ir.report.formula import pretty, unit_of

    return {k: pretty(v, unit_of(k)) for k, v in symbolic.items()}


def build_report_data(analysis: Analysis, graph: Graph, *, profile: Any = None, divergence: Any = None, runs: Any = None,
                      counters: Any = None, scenarios: Any = None, system: Mapping[str, Any] | None = None,
                      sweep: tuple[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Everything the report's page shows, as one JSON-ready dict (see ``docs/report.rst``).

    With dims left unbound, figures that are formulas come as ``formulas`` (the totals') and a
    node's ``formulas``, and ``sweep`` holds the totals along one dim for the plot (``sweep``
    given, or the only free dim doubling from 1 to 4096)."""
    prof, divs, run, hw, scen = measured_inputs(profile, divergence, runs, counters, scenarios)
    joined = join(analysis, profile=prof, counters=hw, divergences=divs)
    costs = {n.id: n for n in analysis.nodes}
    shown = shown_times(prof.nodes) if prof is not None else {}

    # ---- drawn nodes: graph inputs, the main graph's nodes, graph outputs
    draw: list[dict[str, Any]] = []
    for name in graph.input_names:
        info = graph.tensors.get(name)
        draw.append({"id": f"input:{name}", "kind": "input", "label": _short(name), "name": name,
                     "shape": _shape_text(info.shape if info else None), "dtype": info.dtype if info else "?"})
    tensors = graph.tensors
    shown_tensor: dict[str, tuple[str, str]] = {}  # name -> (shape text, kind), each tensor rendered once
    shape_texts: dict[Any, str] = {}  # and each shape

    def tensor_text(x: str) -> tuple[str, str]:
        r = shown_tensor.get(x)
        if r is None:
            t = tensors.get(x)
            if t is None:
                r = ("?", "?")
            else:
                key = tuple(t.shape) if t.shape is not None else None
                text = shape_texts.get(key)
                if text is None:
                    text = shape_texts[key] = _shape_text(t.shape)
                r = (text, t.kind)
            shown_tensor[x] = r
        return r

    for node in graph.nodes:
        c = costs.get(node.id)
        d: dict[str, Any] = {"id": node.id, "kind": "op", "label": node.op_type, "name": node.name, "op": node.op_type,
                             "domain": node.domain or "ai.onnx",
                             "attrs": [[a.name, _attr_text(a)] for a in node.proto.attribute],
                             "inputs": [[x, *tensor_text(x)] for x in node_reads(node.proto)],
                             "outputs": [[x, tensor_text(x)[0]] for x in node.proto.output if x]}
        if c is not None:
            d.update({"status": c.status, "macs": c.macs, "flops": c.flops, "params": c.params, "out_bytes": c.output_bytes,
                      "intensity": _num(c.intensity), "bound": c.bound, "lower_us": _num(c.time_lower_bound_us), "note": c.note})
            if c.symbolic:
                d["formulas"] = _formulas(c.symbolic)
        draw.append(d)
    for name in graph.output_names:
        info = graph.tensors.get(name)
        draw.append({"id": f"output:{name}", "kind": "output", "label": _short(name), "name": name,
                     "shape": _shape_text(info.shape if info else None), "dtype": info.dtype if info else "?"})
    index = {d["id"]: i for i, d in enumerate(draw)}

    # ---- measured figures onto the nodes
    metrics = [["macs", "MACs"], ["flops", "FLOPs"], ["params", "parameters"], ["out_bytes", "output bytes"]]
    for node_id, j in joined.items():
        i = index.get(node_id)
        if i is None:
            continue
        if (t := j.time) is not None:
            st = shown[t.id]  # a fused kernel's time on its host; "fused into" on the kernel's other nodes
            draw[i].update({"time_us": _num(st.time_us), "share": _num(st.share),
                            "achieved": _num(t.achieved_flops_per_s) if st.fused_into is None else None,
                            "kernels": to_plain(t.kernels), "fused_with": list(t.fused_with)})
            if st.fused_into is not None:
                draw[i]["fused_into"] = st.fused_into
            if t.kernel_count is not None:
                draw[i]["gpu"] = {k: _num(getattr(t, k)) for k in ("kernel_count", "cpu_us", "launch_overhead_us", "idle_us",
                                                                   "launch_latency_us")}
        if (c := j.counters) is not None:
            draw[i]["hw"] = {k: (getattr(c, k) if k in ("tensor_core", "bound") else _num(getattr(c, k))) for k in COUNTER_FIELDS}
            for k in ("flops_ratio", "bytes_ratio", "sm_pct", "memory_pct"):
                draw[i]["hw_" + k] = _num(getattr(c, k))
        for k, n in enumerate(j.divergence):
            if n is not None:
                draw[i].setdefault("div", {})[f"div{k}"] = {
                    **{f: (_err(getattr(n, f)) if f not in ("exceeds", "introduced_exceeds", "introduced_note") else getattr(n, f))
                       for f in ("max_abs", "max_rel", "cosine", "snr_db", "outside_share", "nan", "exceeds", "introduced_max_abs",
                                 "introduced_max_rel", "introduced_exceeds", "introduced_note")},
                    "oracle": None if n.oracle is None else {**to_plain(n.oracle), "errors": {b: _err(e) for b, e in n.oracle.errors.items()},
                                                             "verdict": oracle_verdict(n.oracle)}}
    if prof is not None:
        metrics += [["time_us", f"time (µs, {prof.backend} {prof.device})"], ["share", "share of time"],
                    ["achieved", "achieved FLOP/s"]]
    if hw is not None:
        metrics += [["hw_flops_ratio", "measured / static FLOPs (ncu)"], ["hw_bytes_ratio", "measured / static DRAM bytes (ncu)"],
                    ["hw_sm_pct", "SM throughput, % of peak (ncu)"], ["hw_memory_pct", "memory throughput, % of peak (ncu)"]]
    for k, r in enumerate(divs):
        metrics.append([f"div{k}", f"divergence: {r.backend} vs {r.reference} (max abs)"])
        metrics.append([f"div{k}i", f"introduced error: {r.backend} (max abs)"])

    # ---- edges between drawn nodes
    edges: list[tuple[str, str]] = []
    for node in graph.nodes:
        for x in node_reads(node.proto):  # inputs, and what If/Loop/Scan bodies read from outside
            p = graph.producer(x)
            if p is not None:
                edges.append((p.id, node.id))
            elif f"input:{x}" in index:
                edges.append((f"input:{x}", node.id))
    for name in graph.output_names:
        p = graph.producer(name)
        if p is not None:
            edges.append((p.id, f"output:{name}"))
        elif f"input:{name}" in index:
            edges.append((f"input:{name}", f"output:{name}"))

    sweep_data = _sweep(analysis, sweep)
    _values_at_sweep_end(draw, costs, sweep_data, metrics)

    ids = [d["id"] for d in draw]
    collapsed, group = _collapsed_view(analysis, draw, edges, index)
    folded = _folded_view(collapsed, draw, edges, index, group) if collapsed is not None else None
    templates = _block_templates(collapsed, draw, edges, index) if collapsed is not None else {}
    # a graph too large to draw whole is drawn folded only, and never laid out whole (the most costly step)
    full = None if collapsed is not None and len(draw) > FULL_LAYOUT_MAX_NODES else \
        _layout_payload(layered_layout([(d["id"], _label_width(d["label"]), NODE_HEIGHT) for d in draw], edges), ids)
    view = "folded" if collapsed is not None and (full is None or len(draw) > FOLD_BY_DEFAULT_NODES) else "full"

    # ---- summary
    t = analysis.totals
    summary: dict[str, Any] = {"params": t.params, "macs": t.macs, "flops": t.flops, "weight_bytes": t.weight_bytes,
                               "peak_activation_bytes": t.peak_activation_bytes, "nodes": t.nodes, "complete": t.complete,
                               "unknown_nodes": t.unknown_nodes, "unresolved_nodes": t.unresolved_nodes,
                               "formulas": _formulas(t.symbolic)}
    if prof is not None:
        slow = [n for n in by_shown_time(prof.nodes, shown) if _num(shown[n.id].time_us) is not None][:5]
        summary["slowest"] = [{"id": n.id, "name": n.name, "op_type": n.op_type, "time_us": shown[n.id].time_us,
                               "share": shown[n.id].share} for n in slow]
        summary["latency_ms"] = dict(prof.latency_ms)
        summary["coverage"] = prof.coverage
    if divs:
        summary["first_divergent"] = [{"backend": r.backend, "reference": r.reference, "node": r.first_divergent,
                                       "compared": r.compared_tensors} for r in divs]

    facts = (system or (prof.system if prof is not None else None) or (run.system if run is not None else None)
             or (scen.system if scen is not None else None) or {})
    return {
        "schema": REPORT_DATA_VERSION,
        "model": dataclasses.asdict(analysis.model),
        "tool": dict(analysis.tool),
        "bindings": dict(analysis.bindings),
        "totals": dataclasses.asdict(analysis.totals),
        "summary": summary,
        "system": facts,
        "measured": prof is not None or run is not None or hw is not None or scen is not None,
        "metrics": metrics,
        "nodes": _as_references(draw, collapsed, templates),
        "view": view,
        "layout": full,
        "collapsed": collapsed,
        "folded": folded,
        "templates": [t for t in templates.values()],
        "op_types": [dataclasses.asdict(o) for o in analysis.op_types],
        "blocks": [{k: v for k, v in dataclasses.asdict(b).items() if k != "members"} for b in analysis.blocks],
        "table": [index[n.id] if n.id in index and n.parent is None else _node_row(n) for n in analysis.nodes],
        "roofline": dataclasses.asdict(analysis.roofline) if analysis.roofline is not None else None,
        "profile": None if prof is None else _fields(prof, ("backend", "device", "options", "batch", "runs", "coverage",
                                                            "node_time_us", "latency_ms", "tracing_overhead", "unattributed",
                                                            "roofline_device", "gpu")),
        "divergence": [_fields(r, ("backend", "reference", "device", "precision", "atol", "rtol", "first_divergent", "first_nan",
                                   "top_introduced", "compared_tensors", "segments")) for r in divs],
        "runs": to_plain(run.runs) if run is not None else None,
        "scenarios": _scenario_data(scen),
        "counters": None if hw is None else _fields(hw, ("gpu", "device", "peak_flops_per_s", "peak_kind", "bandwidth_bytes_per_s",
                                                         "ridge_intensity", "coverage", "metric_set", "missing_metrics", "notes",
                                                         "totals")),
        "warnings": list(analysis.warnings),
        "dims": [dataclasses.asdict(d) for d in analysis.dims],
        "formulas": _formulas(t.symbolic),
        "sweep": sweep_data,
    }


#: What the page shows of each backend's ``run --scenario`` record (LoadGen's settings and summary
#: text stay in the result's JSON).
SCENARIO_FIELDS = ("backend", "device", "scenario", "status", "error", "valid", "invalid_reasons", "target_qps", "latency_bound_ms",
                   "latency_percentile", "samples_per_s", "scheduled_samples_per_s", "latency_ms", "query_count", "samples_per_query",
                   "overlatency_queries", "early_stopping", "max_batch", "batches", "histogram", "timeline", "peak_qps", "probes")


def _scenario_data(scen: ScenarioReport | None) -> dict[str, Any] | None:
    """The ``run --scenario`` results for the page: the settings, and per backend its figures
    with LoadGen's verdict as a word (VALID, INVALID, or the status of a run that failed)."""
    if scen is None:
        return None
    return {"model": scen.model.name, "settings": to_plain(scen.settings),
            "runs": [{**_fields(r, SCENARIO_FIELDS), "verdict": scenario_verdict(r.valid, r.status)} for r in scen.runs]}


def _fields(result: Any, names: Sequence[str]) -> dict[str, Any]:
    """Some fields of a result, as JSON data."""
    return {k: to_plain(getattr(result, k)) for k in names}


#: Figures a node's formula is evaluated for, to colour the graph: (node field, formula key, label).
_AT_FIELDS = (("macs", "macs", "MACs"), ("flops", "flops", "FLOPs"), ("out_bytes", "output_bytes", "output bytes"))


def _values_at_sweep_end(draw: list[dict[str, Any]], costs: Mapping[str, Any], sweep: Mapping[str, Any] | None,
                         metrics: list[list[str]]) -> None:
    """Formulas evaluated at the sweep's largest value (``macs_at``...), so that the graph can be
    coloured by them; the metric's label says at which dims."""
    if not sweep or not sweep["rows"]:
        return
    from mlms_ir.ir.expr import value_at
    from mlms_ir.report.formula import parse

    dim = sweep["dim"]
    point = {dim: sweep["rows"][-1][dim]}
    if not any(c.symbolic for c in costs.values()):
        return
    for d in draw:
        c = costs.get(d["id"])
        if c is None:
            continue
        for field, key, _ in _AT_FIELDS:
            v = getattr(c, key)
            if v is None and c.symbolic and key in c.symbolic:
                f = parse(c.symbolic[key])
                if {s.name for s in f.free_symbols} <= set(point):
                    v = value_at(f, point)
            d[field + "_at"] = _num(v)
    metrics[:0] = [[field + "_at", f"{label} at {dim}={point[dim]:,}"] for field, _, label in _AT_FIELDS]


def _node_row(n: Any) -> list[Any]:
    """One row of the nodes table (every node, subgraphs' too): see ``TABLE_COLUMNS`` in report.js."""
    return [n.id, n.name, n.op_type, n.status, n.macs, n.flops, n.params, n.output_bytes, _num(n.intensity), n.parent]


def _collapsed_view(analysis: Analysis, draw: list[dict[str, Any]], edges: list[tuple[str, str]],
                    index: dict[str, int]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The graph with each instance of a repeated block drawn as one node (None without blocks),
    and the box id of each node inside one."""
    group: dict[str, str] = {}
    boxes: list[dict[str, Any]] = []
    succ: dict[str, list[str]] = {}
    for s_, d_ in edges:
        succ.setdefault(s_, []).append(d_)
    order = {d["id"]: i for i, d in enumerate(draw)}
    for b in analysis.blocks:
        for k, members in enumerate(b.members):
            inside = [m for m in members if m in index]
            if len(inside) < 2 or any(m in group for m in inside):
                continue  # overlaps a block already taken (blocks come largest first)
            if _leaves_and_returns(set(inside), succ, order):
                continue  # data leaves the instance and comes back: one box would be a cycle
            gid = f"block:{len(boxes)}"
            for m in inside:
                group[m] = gid
            agg: dict[str, Any] = {"id": gid, "kind": "block", "label": f"{_short(b.name, 32)} [{k + 1}/{b.count}]",
                                   "name": b.instances[k] if k < len(b.instances) else b.name, "block": b.name,
                                   "members": [index[m] for m in inside]}
            _sum_figures(agg, [draw[index[m]] for m in inside])
            boxes.append(agg)
    if not boxes:
        return None, group
    view_ids = _view_ids(draw, group)
    by_id = {b["id"]: b for b in boxes}
    payload = _view_payload(view_ids, _view_edges(edges, group), by_id, draw, index)
    return payload, group


def _sum_figures(agg: dict[str, Any], parts: Sequence[Mapping[str, Any]]) -> None:
    for key in ("macs", "flops", "params", "out_bytes", "time_us", "share"):
        vals = [v for p in parts if (v := p.get(key)) is not None]
        agg[key] = sum(vals) if vals else None


def _view_ids(draw: list[dict[str, Any]], group: Mapping[str, str]) -> list[str]:
    """The drawn items of a view in graph order: a node, or the box that holds it (once)."""
    out: list[str] = []
    seen: set[str] = set()
    for d in draw:
        v = group.get(d["id"], d["id"])
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def _view_edges(edges: list[tuple[str, str]], group: Mapping[str, str]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((group.get(s, s), group.get(d, d)) for s, d in edges if group.get(s, s) != group.get(d, d)))


def _view_payload(view_ids: list[str], vedges: list[tuple[str, str]], by_id: Mapping[str, Any],
                  draw: list[dict[str, Any]], index: dict[str, int]) -> dict[str, Any]:
    """A view laid out: each entry of ``items`` is an index into ``data.nodes`` (a plain node) or a box."""
    sizes = [(v, _label_width(by_id[v]["label"]) if v in by_id else _label_width(draw[index[v]]["label"]), NODE_HEIGHT) for v in view_ids]
    payload = _layout_payload(layered_layout(sizes, vedges), view_ids)
    payload["items"] = [by_id[v] if v in by_id else index[v] for v in view_ids]
    return payload


def _folded_view(collapsed: dict[str, Any], draw: list[dict[str, Any]], edges: list[tuple[str, str]], index: dict[str, int],
                 group: dict[str, str]) -> dict[str, Any] | None:
    """The collapsed view with each run of instances of one block drawn as one "×N" box.

    Instances join a run in graph order while the run stays one box that no path leaves and
    re-enters (a box in a cycle cannot be drawn downwards). A fold box lists its instances as
    indices into ``collapsed.items``; an instance left alone is drawn as ``{"c": its index}``."""
    items = collapsed["items"]
    box_at = {it["id"]: k for k, it in enumerate(items) if isinstance(it, dict)}
    vids = [it["id"] if isinstance(it, dict) else draw[it]["id"] for it in items]
    vorder = {v: i for i, v in enumerate(vids)}
    vsucc: dict[str, list[str]] = {}
    for s_, d_ in _view_edges(edges, group):
        vsucc.setdefault(s_, []).append(d_)
    runs: list[list[str]] = []
    by_block: dict[str, list[str]] = {}
    for it in items:
        if isinstance(it, dict):
            by_block.setdefault(it["block"], []).append(it["id"])
    for ids in by_block.values():
        run = [ids[0]]
        for b in ids[1:]:
            if not _leaves_and_returns({*run, b}, vsucc, vorder):
                run.append(b)
            else:
                runs.append(run)
                run = [b]
        runs.append(run)
    if all(len(r) == 1 for r in runs):
        return None
    fold: dict[str, str] = {}
    boxes: dict[str, Any] = {}
    for r in runs:
        if len(r) == 1:
            boxes[r[0]] = {"c": box_at[r[0]]}
            continue
        first = items[box_at[r[0]]]
        fid = f"fold:{len(fold)}"
        for b in r:
            fold[b] = fid
        name = first["block"]
        agg: dict[str, Any] = {"id": fid, "kind": "block", "fold": True, "label": f"{_short(name, 32)} ×{len(r)}", "name": name,
                               "block": name, "count": len(r), "instances": [box_at[b] for b in r]}
        _sum_figures(agg, [items[box_at[b]] for b in r])
        boxes[fid] = agg
    fgroup = {m: fold.get(g, g) for m, g in group.items()}
    view_ids = _view_ids(draw, fgroup)
    labels = {k: v if "c" not in v else items[v["c"]] for k, v in boxes.items()}
    payload = _view_payload(view_ids, _view_edges(edges, fgroup), labels, draw, index)
    payload["items"] = [boxes[v] if v in boxes else index[v] for v in view_ids]
    return payload


def _block_templates(collapsed: dict[str, Any], draw: list[dict[str, Any]], edges: list[tuple[str, str]],
                     index: dict[str, int]) -> dict[str, dict[str, Any]]:
    """One layout per block, of its first instance, shipped once: an instance with the same ops in
    the same order, wired the same way inside, is drawn with it (its box gets ``tpl``, the
    template's number) and its nodes travel as references to the template's (see ``_as_references``)."""
    boxes = [it for it in collapsed["items"] if isinstance(it, dict)]
    local: dict[int, tuple[int, int]] = {}  # node index -> (box number, position in its box)
    for b, box in enumerate(boxes):
        for j, m in enumerate(box["members"]):
            local[m] = (b, j)
    inner: list[set[tuple[int, int]]] = [set() for _ in boxes]
    for s_, d_ in edges:
        a, z = local.get(index[s_]), local.get(index[d_])
        if a is not None and z is not None and a[0] == z[0]:
            inner[a[0]].add((a[1], z[1]))
    templates: dict[str, dict[str, Any]] = {}
    for b, box in enumerate(boxes):
        t = templates.get(box["block"])
        if t is None:
            m = box["members"]
            lay = layered_layout([(str(j), _label_width(draw[i]["label"]), NODE_HEIGHT) for j, i in enumerate(m)],
                                 sorted((str(u), str(v)) for u, v in inner[b]))
            t = {"block": box["block"], "n": len(templates), "box": b, "ops": [draw[i]["label"] for i in m],
                 "edges_set": inner[b], **_layout_payload(lay, [str(j) for j in range(len(m))])}
            templates[box["block"]] = t
            box["tpl"] = t["n"]
        elif len(box["members"]) == len(t["ops"]) and inner[b] == t["edges_set"] \
                and all(draw[i]["label"] == op for i, op in zip(box["members"], t["ops"])):
            box["tpl"] = t["n"]
    for t in templates.values():
        del t["edges_set"], t["ops"]
        t["members"] = boxes[t.pop("box")]["members"]
    return templates


_OWN_KEYS = ("id", "name", "inputs", "outputs")


def _as_references(draw: list[dict[str, Any]], collapsed: dict[str, Any] | None,
                   templates: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes for the page, each node of a block instance drawn with its block's template as a
    reference to the template's node (``t``: its index) with its own id, name and tensor names
    (``in``, ``out``) and only the fields that differ (``del``: those it lacks); the page rebuilds
    the full entries. On a 48-layer decoder this ships the nodes in about a third of the bytes."""
    if collapsed is None or not templates:
        return draw
    by_tpl = {t["n"]: t["members"] for t in templates.values()}
    out = list(draw)
    for box in collapsed["items"]:
        if not isinstance(box, dict) or "tpl" not in box:
            continue
        tmembers = by_tpl[box["tpl"]]
        if tmembers is box["members"]:
            continue
        for m, t_i in zip(box["members"], tmembers):
            out[m] = _reference(draw[m], draw[t_i], t_i)
    return out


def _reference(d: dict[str, Any], t: dict[str, Any], t_i: int) -> dict[str, Any]:
    ref: dict[str, Any] = {"t": t_i, "id": d["id"], "name": d["name"]}
    for key, short in (("inputs", "in"), ("outputs", "out")):
        mine, theirs = d.get(key, []), t.get(key, [])
        if [a[1:] for a in mine] == [b[1:] for b in theirs]:
            ref[short] = [a[0] for a in mine]
        else:
            ref[key] = mine
    for k, v in d.items():
        if k not in _OWN_KEYS and (k not in t or t[k] != v):
            ref[k] = v
    gone = [k for k in t if k not in d]
    if gone:
        ref["del"] = gone
    return ref


def _leaves_and_returns(inside: set[str], succ: dict[str, list[str]], order: dict[str, int]) -> bool:
    """Whether a path goes from the set out to other nodes and back in (drawn as one box, the
    set would then be part of a cycle). Only nodes placed before the set's last node can lead
    back, which bounds the search."""
    last = max(order[m] for m in inside)
    stack = [d for m in inside for d in succ.get(m, []) if d not in inside and order.get(d, last + 1) < last]
    seen: set[str] = set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        for d in succ.get(v, []):
            if d in inside:
                return True
            if d not in seen and order.get(d, last + 1) < last:
                stack.append(d)
    return False


# ---------------------------------------------------------------------------------------- the page


def _resource(name: str) -> str:
    return resources.files("mlms_ir.report").joinpath(name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot close the ``<script>`` element it is inlined in."""
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT").replace("<!--", "<\\!--")


def json_for_html(data: Any) -> str:
    """JSON for a ``<script type="application/json">`` element: ``<``, ``>`` and ``&`` escaped,
    so no string from a model can end the element or start markup; NaN becomes null and an
    infinity ``"inf"`` or ``"-inf"`` (:func:`~mlms_ir.results.base.plain_float`)."""
    text = json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(analysis: Analysis, graph: Graph, *, profile: Any = None, divergence: Any = None, runs: Any = None,
                counters: Any = None, scenarios: Any = None, system: Mapping[str, Any] | None = None, title: str | None = None,
                sweep: tuple[str, list[dict[str, Any]]] | None = None) -> str:
    """The report as one self-contained HTML document.

    Python's cyclic collector is paused meanwhile: at 50,000 nodes its passes over the page's new
    dicts and lists, all kept, took half of the time (3.25 s -> 1.55 s, interleaved)."""
    with paused_gc():
        return _render_html(analysis, graph, profile=profile, divergence=divergence, runs=runs, counters=counters,
                            scenarios=scenarios, system=system, title=title, sweep=sweep)


def _render_html(analysis: Analysis, graph: Graph, *, profile: Any, divergence: Any, runs: Any, counters: Any, scenarios: Any,
                 system: Mapping[str, Any] | None, title: str | None, sweep: tuple[str, list[dict[str, Any]]] | None) -> str:
    import jinja2

    from mlms_ir import __version__

    data = build_report_data(analysis, graph, profile=profile, divergence=divergence, runs=runs, counters=counters,
                             scenarios=scenarios, system=system, sweep=sweep)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(_resource("templates/report.html.j2"))
    chart = "\n".join(line for line in _resource("vendor/chart.umd.min.js").splitlines() if not line.startswith("//# sourceMappingURL"))
    return template.render(
        title=title or f"mlms_ir report: {analysis.model.name}",
        nonce=secrets.token_hex(16),
        css=_resource("templates/report.css"),
        script=_script_safe(_resource("templates/report.js")),
        chartjs=_script_safe(chart),
        data=json_for_html(data),
        model=data["model"], summary=data["summary"], totals=data["totals"],
        headline=_headline(data),
        version=__version__,
    )


def _headline(data: Mapping[str, Any]) -> list[str]:
    """Sentences a reader can quote (plain text; the template escapes them)."""
    from mlms_ir.report.text import human_bytes, human_count, human_time_ms, human_time_us

    s = data["summary"]
    m = data["model"]
    f = s.get("formulas") or {}
    macs = f.get("macs") or human_count(s["macs"])
    flops = f.get("flops") or human_count(s["flops"])
    peak = f.get("peak_activation_bytes") or human_bytes(s["peak_activation_bytes"])
    out = [f"{m['name']}: {human_count(s['params'])} parameters ({human_bytes(s['weight_bytes'])} of weights), "
           f"{macs} MACs ({flops} FLOPs) per run, peak activations {peak}, {s['nodes']} nodes"
           + ("." if s["complete"] else f"; {s['unknown_nodes']} nodes of unknown ops and {s['unresolved_nodes']} with unresolved "
                                         "shapes are not counted.")]
    if data.get("dims"):
        out.append("The figures are exact formulas of " + ", ".join(f"{d['name']} ({d['meaning']})" for d in data["dims"])
                   + "; bind them with --dims for numbers.")
    prof = data.get("profile")
    if prof and s.get("slowest"):
        lat = (prof.get("latency_ms") or {}).get("p50")
        slow = ", ".join(f"{n['name'] or n['id']} ({n['op_type']}, {human_time_us(float(n['time_us']))}"
                         + (f", {100 * float(n['share']):.1f}%" if n.get("share") is not None else "") + ")" for n in s["slowest"][:3])
        out.append(f"On {prof['backend']} ({prof.get('device')}): median latency "
                   + (human_time_ms(float(lat)) if lat is not None else "unknown") + f"; slowest nodes: {slow}.")
    for fd in s.get("first_divergent", []):
        node = fd.get("node")
        out.append(f"{fd['backend']} vs {fd.get('reference')}: "
                   + (f"first divergent node {node.get('name') or node.get('id')} ({node.get('op_type')})." if node
                      else "every tensor within tolerance." if fd.get("compared", 1) else "no node output was compared."))
    scen = data.get("scenarios")
    for r in (scen or {}).get("runs", []):
        out.append(_scenario_sentence(r))
    return out


def _scenario_sentence(r: Mapping[str, Any]) -> str:
    """One backend's LoadGen result in words: "LoadGen Server on ort (cpu): VALID; target 500 QPS, ..."."""
    from mlms_ir.report.text import human_count, human_time_ms

    head = f"LoadGen {r['scenario']} on {r['backend']} ({r['device']}): {r['verdict']}"
    if r["status"] != "ok":
        return head + (f": {r['error']}" if r.get("error") else ".")
    parts = []
    if r.get("peak_qps") is not None:
        parts.append(f"peak {human_count(r['peak_qps'])} QPS")
    elif r.get("target_qps") is not None:
        parts.append(f"target {human_count(r['target_qps'])} QPS")
    if r.get("samples_per_s") is not None:
        parts.append(f"{human_count(r['samples_per_s'])} samples/s")
    lat = r.get("latency_ms") or {}
    parts += [f"{k} {human_time_ms(lat[k])}" for k in ("p50", "p90", "p99") if lat.get(k) is not None]
    if r.get("latency_bound_ms") is not None:
        pct = r.get("latency_percentile")
        parts.append(f"bound {human_time_ms(r['latency_bound_ms'])}" + (f" at p{100 * pct:g}" if pct is not None else ""))
    text = head + ("; " + ", ".join(parts) if parts else "") + "."
    if r.get("valid") is False and r.get("invalid_reasons"):
        text += " Invalid: " + "; ".join(x.rstrip(".") for x in r["invalid_reasons"]) + "."
    return text


def write_html(path: str | Path, analysis: Analysis, graph: Graph, **kw: Any) -> Path:
    """Render the report and write it to ``path``; returns the path."""
    text = render_html(analysis, graph, **kw)
    p = Path(path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MlmsIrError(f"cannot write '{path}': {exc.strerror or exc}") from exc
    return p


def report(model: Any, *, profile: Any = None, divergence: Any = None, runs: Any = None, counters: Any = None,
           scenarios: Any = None, input_shapes: Any = None, batch: int | None = None, dims: Any = None, device: str | None = None, lenient: bool = False,
           output: str | Path | None = None) -> str:
    """Analyse ``model`` and render the HTML report (written to ``output`` when given).

    ``profile``, ``divergence``, ``runs``, ``counters`` and ``scenarios`` are report objects or the
    JSON of ``profile``, ``diverge``, ``run``, ``profile --counters`` and ``run --scenario`` with
    ``--format json`` (dicts, or paths of such files)."""
    from mlms_ir.ir import load
    from mlms_ir.passes.analyze import analyze

    prof, div, run, hw, scen = measured_inputs(profile, divergence, runs, counters, scenarios)
    if device is None and prof is not None and prof.roofline_device:
        device = prof.roofline_device
    if device is None and hw is not None and hw.device:
        device = hw.device
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims, lenient=lenient)
    analysis = analyze(graph, device=device)
    text = render_html(analysis, graph, profile=prof, divergence=div, runs=run, counters=hw, scenarios=scen)
    if output is not None:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MlmsIrError(f"cannot write '{output}': {exc.strerror or exc}") from exc
    return text

