"""The results store as text: the list of recorded runs, one run, and a comparison of runs
(``runs list``, ``runs show``, ``runs compare``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from mlms_ir.report.text import TIME_RESOLUTION_US, clip, human_count, human_time_ms, human_time_us, plain, sig
from mlms_ir.results.comparison import Comparison


def format_value(v: Any) -> str:
    """A figure as the store's tables and the comparison page show it: floats with three
    significant digits (an SI prefix from 10,000 up, an exponent only below 0.001, as errors
    are), integers whole, lists and objects as JSON."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.3g}"
        return human_count(v) if abs(v) >= 1e4 else sig(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


#: Characters of a failed run's error that ``runs list`` shows (``runs show`` and the JSON keep it whole).
ERROR_CHARS = 80


def run_headline(r: Any) -> str:
    """The one figure ``runs list`` shows for a stored run (its error when it failed)."""
    s = r.summary
    if r.status != "ok":
        return clip(r.error or "failed", ERROR_CHARS)
    if r.kind == "scenario":
        lat = s.get("latency_ms") or {}
        qps = s.get("peak_qps") or s.get("target_qps")
        return " ".join(p for p in (str(s.get("scenario") or ""), "VALID" if s.get("valid") else "INVALID",
                                    f"{format_value(float(qps))} QPS" if qps and s.get("scenario") == "Server" else "",
                                    f"p50 {human_time_ms(lat['p50'])}" if lat.get("p50") is not None else "") if p)
    if r.kind in ("run", "profile") and isinstance(s.get("latency_ms"), dict):
        return f"p50 {human_time_ms(s['latency_ms'].get('p50', 0))}"
    if r.kind == "diverge":
        fd = s.get("first_divergent")
        return "first divergent: " + ((fd.get("name") or fd.get("id")) if isinstance(fd, dict) else "none")
    if r.kind == "analyze":
        return f"{format_value(s.get('macs') if s.get('macs') is not None else (s.get('symbolic') or {}).get('macs'))} MACs"
    if r.kind == "evaluate" and s.get("top1") is not None:
        return f"top-1 {100 * s['top1']:.2f}%"
    return ""


def render_run_list(runs: Sequence[Any], store_path: str, console: Any) -> None:
    """``runs list``: one row per stored run, newest first as given."""
    t = Table(title=f"recorded runs ({store_path})")
    for col in ("id", "kind", "status", "backend", "device", "batch", "precision"):  # short: never wrapped
        t.add_column(col, no_wrap=True)
    for col in ("model", "host", "figure", "recorded (UTC)"):
        t.add_column(col, overflow="fold")
    for r in runs:
        t.add_row(str(r.id), r.kind, r.status, r.backend or "-", r.device or "-", format_value(r.batch), r.precision or "-",
                  plain(r.model_name or "-"), plain(r.host or "-"), plain(run_headline(r)), r.created_at[:16].replace("T", " "))
    console.print(t)


def render_run(r: Any, nodes: Sequence[Any], payload: Any, console: Any) -> None:
    """``runs show``: one stored run's fields and summary, and its whole report when given."""
    t = Table(title=f"run {r.id} ({r.uid})", show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for k in ("kind", "status", "model_name", "model_path", "model_sha256", "backend", "device", "batch", "precision", "host",
              "mlms_ir_version", "sweep", "job_key", "created_at", "error"):
        v = getattr(r, k)
        if v not in (None, ""):
            t.add_row(k, plain(format_value(v)))
    for k, v in r.summary.items():
        t.add_row(k, plain(json.dumps(v) if isinstance(v, (dict, list)) else format_value(v)))
    t.add_row("nodes recorded", str(len(nodes)))
    console.print(t)
    if payload is not None:
        console.print_json(json.dumps(payload))


def render_compare(cmp: Comparison, console: Any) -> None:
    """``runs compare``: the comparison as rich tables, the settings that differ first."""
    ids = [str(r["id"]) for r in cmp.runs]
    t = Table(title="runs compared (the first is the baseline)")
    t.add_column("")
    for i in ids:
        t.add_column(f"run {i}", overflow="fold")
    for row in cmp.differing_settings:
        t.add_row(plain(f"setting {row.field}", style="bold"), *(plain(format_value(v), style="bold") for v in row.values))
    if cmp.differing_settings:
        t.add_section()
    for row in cmp.describe:
        if any(v is not None for v in row.values):
            t.add_row(row.field, *(plain(format_value(v)) for v in row.values))
    for row in cmp.figures:
        cells = []
        for k, v in enumerate(row.values):
            ratio = (row.ratio_to_first or [None] * len(ids))[k]
            cells.append(plain(format_value(v) + (f" ({sig(ratio)}x)" if k and ratio is not None else "")))
        t.add_row(row.field, *cells)
    console.print(t)
    if not cmp.differing_settings:
        console.print(plain("every run recorded the same settings", style="dim"))
    pn = cmp.per_node
    if pn.nodes:
        time = pn.metric == "time_us"
        nt = Table(title=f"per node: {pn.metric} ({pn.compared_nodes} nodes in common; largest changes first)")
        nt.add_column("node")
        nt.add_column("op")
        for i in ids:
            nt.add_column(f"run {i}", justify="right")
        for i in ids[1:]:
            nt.add_column(f"Δ {i}", justify="right")
        for n in pn.nodes:
            nt.add_row(plain(n.name or n.node_id), plain(n.op_type or ""), *(node_value(v, time) for v in n.values),
                       *(node_delta(d, time) for d in n.delta[1:]))
        console.print(nt)


def node_value(v: float | None, time: bool) -> str:
    """A per-node figure of the comparison: a time in µs (``time``), else an error."""
    return human_time_us(v) if time and v is not None else format_value(v)


def node_delta(d: float | None, time: bool) -> str:
    """A per-node change from the baseline, signed."""
    if d is None:
        return "-"
    if time:
        return human_time_us(abs(d)) if abs(d) < TIME_RESOLUTION_US else ("+" if d >= 0 else "-") + human_time_us(abs(d))
    return f"{d:+.3g}"
