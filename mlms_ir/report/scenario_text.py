"""Terminal rendering of ``run --scenario`` results: LoadGen's verdict and figures per backend."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from mlms_ir.report.text import default_console, human_count, human_time_ms, plain
from mlms_ir.results.scenario import ScenarioReport

def verdict(valid: bool | None, status: str) -> str:
    if status != "ok":
        return status
    return "VALID" if valid else "INVALID"


def render_scenarios(report: ScenarioReport, *, console: Console | None = None) -> None:
    """One row per backend: verdict, target, throughput, latency percentiles; then why a run is
    invalid, each peak search's probes, and the settings."""
    console = console or default_console()
    s = report.settings
    scenario = str(s.get("scenario"))
    cpu = report.system.get("cpu", {}) if report.system else {}
    title = f"mlms_ir run --scenario {scenario.lower()}: {report.model.name} (MLPerf LoadGen {s.get('loadgen') or '?'})"
    if cpu:
        title += f"  ({cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores)"
    t = Table(title=plain(title), box=box.SIMPLE)
    cols = ["backend", "device", "result", "target QPS", "samples/s", "p50", "p90", "p99", "max", "bound", "queries", "batches"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("backend", "device", "result", "batches") else "right", no_wrap=c != "batches")
    for r in report.runs:
        lat = r.latency_ms or {}
        target = (r.peak_qps if r.peak_qps is not None else r.target_qps) if r.scenario == "Server" else None
        t.add_row(
            plain(r.backend), r.device,
            plain(verdict(r.valid, r.status), style="bold green" if r.valid else ("bold red" if r.status == "ok" else "yellow")),
            ("peak " if r.peak_qps is not None else "") + (human_count(target) if target else "-"),
            human_count(r.samples_per_s) if r.samples_per_s else "-",
            *(human_time_ms(lat[k]) if k in lat else "-" for k in ("p50", "p90", "p99", "max")),
            (f"{human_time_ms(r.latency_bound_ms)} @ p{_pct(r.latency_percentile)}" if r.latency_bound_ms is not None else "-"),
            f"{r.query_count:,}" if r.query_count is not None else "-",
            ", ".join(f"{n}x{b}" for b, n in r.batches.items()) or "-",
        )
    console.print(t)
    for r in report.runs:
        if r.status != "ok":
            console.print(plain(f"{r.backend} on {r.device}: {r.status}: {r.error}", style="yellow"))
        elif not r.valid and r.invalid_reasons:
            console.print(plain(f"{r.backend}: INVALID: " + "; ".join(r.invalid_reasons), style="red"))
        if r.probes:
            # the heading as a line of its own: as a table title it wrapped to the narrow table's width
            console.print(plain(f"{r.backend}: peak search (Server, bound {human_time_ms(r.latency_bound_ms)} at "
                                f"p{_pct(r.latency_percentile)})"))
            pt = Table(box=box.SIMPLE)
            for c in ("target QPS", "result", "samples/s", f"p{_pct(r.latency_percentile)}"):
                pt.add_column(c, justify="right")
            for p in r.probes:
                pt.add_row(human_count(p.target_qps), "VALID" if p.valid else "INVALID",
                           human_count(p.samples_per_s) if p.samples_per_s else "-", human_time_ms(p.latency_ms))
            console.print(pt)
    console.print(plain(f"LoadGen {scenario}, PerformanceOnly, at least {s.get('duration_s'):g} s"
                        + (f" and {s['min_queries']} queries" if s.get("min_queries") else "")
                        + f"; QSL of {s.get('sample_count')} samples (inputs: {s.get('inputs')}); "
                        f"the SUT batches up to {s.get('max_batch')}; latencies are LoadGen's, per query", style="dim"))


def _pct(p: float | None) -> str:
    if p is None:
        return "?"
    return f"{100 * p:g}"
