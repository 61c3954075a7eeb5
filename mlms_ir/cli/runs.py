"""``runs list|show|compare``: the results store on the command line; and recording into it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from mlms_ir.cli.analyze import _write
from mlms_ir.compare import format_value as _fmt
from mlms_ir.errors import MlmsIrError


def record(store: str | None, make_records: Callable[[], list], quiet: bool = False) -> list:
    """Keep a command's results in the store (``store``: a path, ``none``, or None for the
    default). A store that cannot be written costs a warning, never the command's result.
    ``quiet`` (for a command about to fail with its one error line) says nothing on success."""
    from mlms_ir.store import Store, resolve_store_path

    path = resolve_store_path(store)
    if path is None:
        return []
    try:
        with Store(path) as st:
            runs = st.add_all(make_records())
    except MlmsIrError as exc:
        print(f"mlms_ir: warning: not recorded: {exc}", file=sys.stderr)
        return []
    if runs and not quiet:
        ids = ", ".join(str(r.id) for r in runs)
        print(f"recorded {'run' if len(runs) == 1 else 'runs'} {ids} in {path}", file=sys.stderr)
    return runs


def _open(store: str | None):
    from mlms_ir.store import Store, StoreError, resolve_store_path

    path = resolve_store_path(store)
    if path is None:
        raise StoreError("no results store: --store none (or MLMS_IR_STORE=none) turns it off")
    if not path.exists():
        raise StoreError(f"no results store at '{path}' yet: run analyze, run, profile or diverge first")
    return Store(path)


class Runs:
    """The results store: list, show and compare recorded runs."""

    def list(self, kind: str | None = None, model: str | None = None, backend: str | None = None, sweep: str | None = None,
             limit: int = 30, store: str | None = None, format: str = "table") -> None:  # noqa: A002
        """The newest recorded runs first.

        Args:
            kind: only runs of this kind: analyze, run, profile, diverge or evaluate.
            model: only runs whose model name or path contains this.
            backend: only runs of this backend.
            sweep: only the runs of this sweep.
            limit: at most this many.
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table or json.
        """
        from mlms_ir.store import KINDS

        if kind is not None and kind not in KINDS:
            raise MlmsIrError(f"unknown --kind '{kind}'; one of: {', '.join(KINDS)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise MlmsIrError(f"--limit must be a positive integer, got '{limit}'")
        with _open(store) as st:
            runs = st.list(kind=kind, model=model, backend=backend, sweep=sweep, limit=limit)
            path = st.path
        if str(format) == "json":
            _write(json.dumps({"store": str(path), "runs": [r.to_dict() for r in runs]}, indent=2) + "\n", None)
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=f"recorded runs ({path})")
        for col in ("id", "kind", "status", "backend", "device", "batch", "precision"):  # short: never wrapped
            t.add_column(col, no_wrap=True)
        for col in ("model", "host", "figure", "recorded (UTC)"):
            t.add_column(col, overflow="fold")
        for r in runs:
            t.add_row(str(r.id), r.kind, r.status, r.backend or "-", r.device or "-", _fmt(r.batch), r.precision or "-",
                      Text(r.model_name or "-"), Text(r.host or "-"), Text(_headline(r)), r.created_at[:16].replace("T", " "))
        Console().print(t)

    def show(self, run: str, store: str | None = None, format: str = "table", payload: bool = False) -> None:  # noqa: A002
        """One recorded run: what ran where, its figures, and (with --payload) its whole report.

        Args:
            run: the run's id or uid (a unique prefix of at least 6 characters).
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table or json.
            payload: include the whole stored report (JSON).
        """
        with _open(store) as st:
            r = st.get(run)
            nodes = st.nodes(r.id)
            report = st.payload(r.id) if payload else None
        if str(format) == "json":
            d = r.to_dict()
            d["nodes"] = nodes
            if payload:
                d["payload"] = report
            _write(json.dumps(d, indent=2) + "\n", None)
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=f"run {r.id} ({r.uid})", show_header=False)
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k in ("kind", "status", "model_name", "model_path", "model_sha256", "backend", "device", "batch", "precision", "host",
                  "mlms_ir_version", "sweep", "job_key", "created_at", "error"):
            v = getattr(r, k)
            if v not in (None, ""):
                t.add_row(k, Text(_fmt(v)))
        for k, v in r.summary.items():
            t.add_row(k, Text(json.dumps(v) if isinstance(v, (dict, list)) else _fmt(v)))
        t.add_row("nodes recorded", str(len(nodes)))
        console = Console()
        console.print(t)
        if report is not None:
            console.print_json(json.dumps(report))

    def compare(self, *runs: str, store: str | None = None, format: str | None = None, output: str | None = None,  # noqa: A002
                top: int = 20) -> None:
        """Runs side by side, the first one the baseline: what ran where, latency, accuracy,
        errors, and per-node time deltas (profiles) or errors (divergence).

        Args:
            runs: two or more run ids or uids.
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table (default), json or html; inferred from --output's suffix.
            output: write to this file instead of stdout.
            top: how many nodes the per-node table lists.
        """
        from pathlib import Path

        from mlms_ir.compare import compare_runs

        if len(runs) < 2:
            raise MlmsIrError("give two or more runs to compare (see 'runs list')")
        fmt = format or {".json": "json", ".html": "html", ".htm": "html"}.get(Path(output).suffix.lower() if output else "", "table")
        if fmt not in ("table", "json", "html"):
            raise MlmsIrError(f"unknown --format '{fmt}'; choose table, json or html")
        with _open(store) as st:
            cmp = compare_runs(st, list(runs), top=int(top))
        if fmt == "json":
            _write(json.dumps(cmp, indent=2) + "\n", output)
        elif fmt == "html":
            from mlms_ir.report.compare_html import render_compare_html

            _write(render_compare_html(cmp), output)
        else:
            from mlms_ir.cli.run import _render

            _render(lambda console: render_compare(cmp, console), output)


def _headline(r) -> str:
    s = r.summary
    if r.status != "ok":
        return (r.error or "failed")[:80]
    if r.kind in ("run", "profile") and isinstance(s.get("latency_ms"), dict):
        return f"p50 {s['latency_ms'].get('p50', 0):.3f} ms"
    if r.kind == "diverge":
        fd = s.get("first_divergent")
        return "first divergent: " + ((fd.get("name") or fd.get("id")) if isinstance(fd, dict) else "none")
    if r.kind == "analyze":
        return f"{_fmt(s.get('macs') if s.get('macs') is not None else (s.get('symbolic') or {}).get('macs'))} MACs"
    if r.kind == "evaluate" and s.get("top1") is not None:
        return f"top-1 {100 * s['top1']:.2f}%"
    return ""


def render_compare(cmp: dict[str, Any], console) -> None:
    """The comparison as rich tables."""
    from rich.table import Table
    from rich.text import Text

    ids = [str(r["id"]) for r in cmp["runs"]]
    t = Table(title="runs compared (the first is the baseline)")
    t.add_column("")
    for i in ids:
        t.add_column(f"run {i}", overflow="fold")
    for row in cmp["describe"]:
        if any(v is not None for v in row["values"]):
            t.add_row(row["field"], *(Text(_fmt(v)) for v in row["values"]))
    for row in cmp["figures"]:
        cells = []
        for k, v in enumerate(row["values"]):
            ratio = (row.get("ratio_to_first") or [None] * len(ids))[k]
            cells.append(Text(_fmt(v) + (f" ({ratio:.2f}x)" if k and ratio is not None else "")))
        t.add_row(row["field"], *cells)
    console.print(t)
    pn = cmp["per_node"]
    if pn["nodes"]:
        unit = "µs" if pn["metric"] == "time_us" else ""
        nt = Table(title=f"per node: {pn['metric']} ({pn['compared_nodes']} nodes in common; largest changes first)")
        nt.add_column("node")
        nt.add_column("op")
        for i in ids:
            nt.add_column(f"run {i}", justify="right")
        for i in ids[1:]:
            nt.add_column(f"Δ {i}", justify="right")
        for n in pn["nodes"]:
            nt.add_row(Text(n["name"] or n["node_id"]), n["op_type"] or "", *(_fmt(v) + unit for v in n["values"]),
                       *((f"{d:+.4g}{unit}" if d is not None else "-") for d in n["delta"][1:]))
        console.print(nt)


def sweep(spec: str, store: str | None = None, executor: str = "local", address: str | None = None, workers: int = 1,
          progress: bool = True, format: str = "table") -> None:  # noqa: A002
    """Run a sweep: a YAML matrix of models x backends x devices x batch sizes x precisions.

    Each job runs in its own worker process with a timeout; its result goes into the results
    store as soon as it ends. A failing job is recorded as failed and the sweep goes on; running
    the same spec again resumes it, skipping the jobs already stored.

    Args:
        spec: the sweep's YAML file (see docs/store.rst).
        store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
        executor: local (worker processes here) or ray (a Ray cluster).
        address: the Ray cluster's address (default: start a local one, or RAY_ADDRESS).
        workers: local jobs run at once (1 keeps timings undisturbed).
        progress: show a progress bar.
        format: table or json (the summary).
    """
    from mlms_ir.store import StoreError, resolve_store_path
    from mlms_ir.sweep import load_spec, run_sweep

    path = resolve_store_path(store)
    if path is None:
        raise StoreError("a sweep keeps its results in the store: give --store PATH")
    sp = load_spec(spec)
    res = run_sweep(sp, path, executor=str(executor), workers=workers, address=address, progress=bool(progress))
    if str(format) == "json":
        _write(json.dumps({"store": str(path), **res.to_dict()}, indent=2) + "\n", None)
    else:
        print(f"sweep {res.name}: {res.jobs} jobs, {res.skipped} already stored, {res.ok} ok, {res.failed} failed "
              f"in {res.seconds:.1f} s; runs {_ranges(res.run_ids)} in {path}")
    if res.failed and not res.ok and not res.skipped:
        raise MlmsIrError(f"every job of sweep '{res.name}' failed (see 'runs list --sweep {res.name}')")


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    out, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if i is not None:
            start = prev = i
    return ", ".join(out)
