"""Side-by-side comparison of stored runs: across systems, backends, versions and precisions.

:func:`compare_runs` lines up what each run is (kind, model, backend, device, batch,
precision, host, CPU, GPU, versions) and what it measured (latency percentiles, throughput,
accuracy, output error, totals), then the per-node figures: time deltas against the first
run (the baseline) for profiles, errors for divergence runs, joined only between runs of the same
model (the same sha256, or where a record lacks one, the same op type and name at every node id
they share). First of all it lists the recorded settings that differ between the runs (``--opt
all`` against ``--opt none``), the model first where the runs are of different models.
"""

from __future__ import annotations

import json
from typing import Any

from mlms_ir.results.comparison import Comparison, DescribeRow, FigureRow, NodeRow, PerNode
from mlms_ir.store import Store, StoredRun

#: Packages whose versions the comparison lists (where any run recorded one).
_PACKAGES = ("onnxruntime", "torch", "onnx", "tensorrt", "numpy")


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _gpu(system: dict[str, Any]) -> str | None:
    gpus = _get(system, "gpu", "gpus") or []
    return ", ".join(str(g.get("name")) for g in gpus if isinstance(g, dict)) or None


def _precision(r: StoredRun) -> str | None:
    """The precision a run ran at (fp32 where a run of a measuring kind recorded none)."""
    return r.precision or ("fp32" if r.kind in ("run", "profile", "diverge", "counters") else None)


def describe_rows(runs: list[StoredRun]) -> list[DescribeRow]:
    """What each run is, one row per attribute."""
    rows: list[tuple[str, list[Any]]] = [
        ("kind", [r.kind for r in runs]),
        ("status", [r.status for r in runs]),
        ("model", [r.model_name for r in runs]),
        ("model sha256", [(r.model_sha256 or "")[:12] or None for r in runs]),
        ("backend", [r.backend for r in runs]),
        ("device", [r.device for r in runs]),
        ("batch", [r.batch for r in runs]),
        ("precision", [_precision(r) for r in runs]),
        ("host", [r.host for r in runs]),
        ("CPU", [_get(r.system, "cpu", "model") for r in runs]),
        ("architecture", [_get(r.system, "cpu", "architecture") for r in runs]),
        ("GPU", [_gpu(r.system) for r in runs]),
        ("mlms_ir", [r.mlms_ir_version for r in runs]),
    ]
    for pkg in _PACKAGES:
        vals = [_get(r.system, "software", "packages", pkg) for r in runs]
        if any(v is not None for v in vals):
            rows.append((pkg, vals))
    rows.append(("recorded", [r.created_at for r in runs]))
    return [DescribeRow(k, v) for k, v in rows]


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A run's recorded settings, one key per leaf: a backend's ``options`` by their own names
    (``opt``, ``precision``), anything else nested by dotted path (``bindings.dims.batch``). An
    empty mapping (a backend without options) has no leaf, so it gives no key."""
    out: dict[str, Any] = {}
    for k, v in (settings or {}).items():
        key = f"{prefix}{k}" if prefix or k != "options" else ""
        if isinstance(v, dict):
            out.update(flat_settings(v, f"{key}." if key else ""))
        else:
            out[key or k] = v
    return out


#: Settings that are also columns of a run: their value is the column's, as "what ran where"
#: shows it (a backend that records no ``precision`` option still ran at the run's precision).
_COLUMN_SETTINGS = {"precision": _precision, "device": lambda r: r.device, "backend": lambda r: r.backend,
                    "batch": lambda r: r.batch}


def _model_label(r: StoredRun) -> str | None:
    name = r.model_name or r.model_path
    return f"{name or '?'} (sha256 {r.model_sha256[:12]})" if r.model_sha256 else name


def _other_sha256(runs: list[StoredRun]) -> bool:
    """Whether two of the runs recorded different model sha256s."""
    return len({r.model_sha256 for r in runs if r.model_sha256}) > 1


def differing_settings(runs: list[StoredRun]) -> list[DescribeRow]:
    """The recorded settings whose values are not the same in every run (a setting one run
    lacks reads None there), in the order the runs recorded them; first ``model`` (its name and
    sha256) where the runs recorded models of different sha256."""
    flat = [flat_settings(r.settings) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = [DescribeRow("model", [_model_label(r) for r in runs])] if _other_sha256(runs) else []
    for k in keys:
        col = _COLUMN_SETTINGS.get(k)
        vals = [(col(r) if col and col(r) is not None else f.get(k)) for f, r in zip(flat, runs)]
        if len({json.dumps(v, sort_keys=True, default=str) for v in vals}) > 1:
            rows.append(DescribeRow(k, vals))
    return rows


def figure_rows(runs: list[StoredRun]) -> list[FigureRow]:
    """What each run measured; ``better`` says which way is better (for the deltas)."""
    specs: list[tuple[str, tuple[str, ...], str | None, str]] = [
        ("latency p50 (ms)", ("latency_ms", "p50"), "lower", "ms"),
        ("latency p90 (ms)", ("latency_ms", "p90"), "lower", "ms"),
        ("latency p99 (ms)", ("latency_ms", "p99"), "lower", "ms"),
        ("latency mean (ms)", ("latency_ms", "mean"), "lower", "ms"),
        ("throughput (items/s)", ("throughput",), "higher", ""),
        ("Server target QPS", ("target_qps",), "higher", ""),
        ("Server peak QPS", ("peak_qps",), "higher", ""),
        ("latency bound (ms)", ("latency_bound_ms",), None, "ms"),
        ("top-1", ("top1",), "higher", ""),
        ("top-5", ("top5",), "higher", ""),
        ("images/s", ("images_per_s",), "higher", ""),
        ("max abs diff vs first backend", ("max_abs_diff",), "lower", ""),
        ("profile coverage", ("coverage",), "higher", ""),
        ("node time (µs)", ("node_time_us",), "lower", "us"),
        ("tracing overhead", ("tracing_overhead",), None, ""),
        ("output max abs error", ("output_max_abs",), "lower", ""),
        ("kernel time under ncu (µs)", ("gpu_time_us",), "lower", "us"),
        ("measured / static FLOPs", ("flops_ratio",), None, ""),
        ("measured / static DRAM bytes", ("bytes_ratio",), None, ""),
        ("SM throughput (% of peak)", ("sm_pct",), None, ""),
        ("memory throughput (% of peak)", ("memory_pct",), None, ""),
        ("params", ("params",), None, ""),
        ("MACs", ("macs",), None, ""),
        ("FLOPs", ("flops",), None, ""),
        ("peak activation bytes", ("peak_activation_bytes",), None, ""),
    ]
    out = []
    for label, path, better, _unit in specs:
        vals = [_get(r.summary, *path) for r in runs]
        if len(path) == 1:  # an analysis whose figure is a formula of unbound dims shows the formula
            vals = [v if v is not None else _get(r.summary, "symbolic", path[0]) for v, r in zip(vals, runs)]
        if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) or any(isinstance(v, str) for v in vals):
            base = vals[0] if isinstance(vals[0], (int, float)) and vals[0] else None
            ratios = [(v / base) if base and isinstance(v, (int, float)) else None for v in vals]
            out.append(FigureRow(label, vals, ratios, better))
    agree = [_get(r.summary, "outputs_agree") for r in runs]
    if any(isinstance(v, bool) for v in agree):  # the verdict of run's output check (booleans: no ratio)
        out.append(FigureRow("outputs agree with first backend", agree, None, None))
    valid = [_get(r.summary, "valid") for r in runs]
    if any(isinstance(v, bool) for v in valid):  # LoadGen's verdict of a scenario run
        out.append(FigureRow("LoadGen result", [("VALID" if v else "INVALID") if isinstance(v, bool) else None for v in valid],
                             None, None))
    first_div = [_get(r.summary, "first_divergent") for r in runs]
    if any(r.kind == "diverge" for r in runs):
        out.append(FigureRow("first divergent node", [(d.get("name") or d.get("id")) if isinstance(d, dict) else
                                                      ("none" if r.kind == "diverge" else None) for d, r in zip(first_div, runs)],
                             None, None))
    return out


def _node_text(r: StoredRun, n: dict[str, Any]) -> str:
    return f"{n.get('op_type') or '?'}" + (f" '{n['name']}'" if n.get("name") else "") + f" in run {r.id}"


def model_difference(a: StoredRun, b: StoredRun, nodes_a: dict[str, dict[str, Any]] | None = None,
                     nodes_b: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Why runs ``a`` and ``b`` are of different models (None when, as far as their records tell,
    they are of the same one): their model sha256s where both recorded one, else (an old record
    without it) their per-node rows, which must have the same op type and name at every node id
    both have."""
    if a.model_sha256 and b.model_sha256:
        return None if a.model_sha256 == b.model_sha256 else f"sha256 {a.model_sha256[:12]} and {b.model_sha256[:12]}"
    for k, x in (nodes_a or {}).items():
        y = (nodes_b or {}).get(k)
        if y is not None and (x.get("op_type") != y.get("op_type") or (x.get("name") or None) != (y.get("name") or None)):
            return f"node {k} is {_node_text(a, x)} but {_node_text(b, y)}"
    return None


def node_rows(store: Store, runs: list[StoredRun], top: int = 20, notes: list[str] | None = None) -> PerNode:
    """Per-node figures joined on node id: time deltas against the first run (profiles) or
    errors (divergence runs), the ``top`` nodes by the largest absolute change. Node ids are
    positions in one graph: runs of another model than the first (:func:`model_difference`)
    leave the rows out, and ``notes`` (where given) gets the line that says why."""
    metric = ("time_us" if any(r.kind in ("profile", "counters") for r in runs)
              else "max_abs" if any(r.kind == "diverge" for r in runs) else None)
    if metric is None:  # analyses: no per-node figure to line up (their nodes are not read)
        return PerNode(metric)
    per = [{n["node_id"]: n for n in store.nodes(r.id)} for r in runs]
    if not per or not per[0]:
        return PerNode(metric)
    other = [(r, why) for r, p in zip(runs[1:], per[1:]) if (why := model_difference(runs[0], r, per[0], p))]
    if other:
        if notes is not None:
            (r, why), more = other[0], len(other) - 1
            notes.append(f"runs {runs[0].id} and {r.id} are of different models ({why})"
                         + (f", and {more} more run{'s' if more > 1 else ''} of another model than run {runs[0].id}" if more else "")
                         + ": per-node rows not compared")
        return PerNode(metric)
    ids = [k for k in per[0] if any(k in p for p in per[1:])] if len(per) > 1 else list(per[0])
    rows = []
    for k in ids:
        vals = [p.get(k, {}).get(metric) for p in per]
        base = vals[0]
        deltas = [(v - base) if isinstance(v, (int, float)) and isinstance(base, (int, float)) else None for v in vals]
        ref = per[0][k]
        rows.append(NodeRow(k, ref.get("name"), ref.get("op_type"), vals, deltas,
                            [(v / base) if isinstance(v, (int, float)) and base else None for v in vals]))
    rows.sort(key=lambda r: -max((abs(d) for d in r.delta[1:] if d is not None), default=abs(r.values[0] or 0.0)))
    return PerNode(metric, rows[:top], len(ids))


def compare_runs(store: Store, refs: list[int | str], top: int = 20, notes: list[str] | None = None) -> Comparison:
    """The comparison of the runs ``refs`` (ids or uids), the first one the baseline. ``notes``
    (where given) gets the lines a reader needs beside it: why the per-node rows were left out."""
    runs = [store.get(r) for r in refs]
    why: list[str] = []
    per_node = node_rows(store, runs, top, why)
    settings = differing_settings(runs)
    if why and not (settings and settings[0].field == "model"):  # told by the nodes of an old record without sha256
        settings.insert(0, DescribeRow("model", [_model_label(r) for r in runs]))
    if notes is not None:
        notes.extend(why)
    return Comparison(store=str(store.path), runs=[{k: v for k, v in r.to_dict().items() if k not in ("system", "settings")} for r in runs],
                      describe=describe_rows(runs), figures=figure_rows(runs), per_node=per_node, differing_settings=settings)
