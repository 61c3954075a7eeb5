"""Terminal rendering of a ``counters`` result (:class:`~mlms_ir.results.counters.CountersReport`)
with rich tables: a pure function of the report, which computes no figure."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from mlms_ir.report.text import default_console, fit_table, human_count, human_time_us, plain, sig
from mlms_ir.results.counters import CountersReport


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else sig(v)


def _fmt_share(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if v >= 1e-3 or v == 0 else f"{v * 100:.2g}%"


def _fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render_counters(report: CountersReport, console: Any = None, top: int = 20) -> None:
    """Print ``report`` as rich tables: the summary, the ``top`` nodes by GPU time, the
    unattributed kernels and the notes."""
    console = console or default_console()
    t = report.totals
    head = Table(title=plain(f"mlms_ir counters: {report.model.name or '?'} on {report.gpu or 'GPU ?'} (Nsight Compute)"),
                 box=box.SIMPLE_HEAVY, show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    s = report.settings
    head.add_row("metrics", plain(f"{report.metric_set or 'custom'} ({len(report.metrics)} metrics); replay {s.get('replay_mode', '?')}, "
                                 f"cache control {s.get('cache_control', '?')}, clock control {s.get('clock_control', '?')}"))
    head.add_row("kernels", f"{t.kernels} profiled, {human_time_us(t.gpu_time_us)} GPU time; "
                            f"{report.coverage:.1%} attributed to graph nodes")
    head.add_row("FLOPs (SIMT)", f"{human_count(t.flops, none='-')} measured, {human_count(t.static_flops, none='-')} static (ratio {_fmt_ratio(t.flops_ratio)})"
                 + (f"; {human_count(t.tensor_inst, none='-')} tensor-core instructions not counted" if t.tensor_core else ""))
    head.add_row("DRAM bytes", f"{human_count(t.dram_bytes, 'B', none='-')} measured, {human_count(t.static_bytes, 'B', none='-')} static "
                               f"(ratio {_fmt_ratio(t.bytes_ratio)})")
    head.add_row("throughput", f"{human_count(t.achieved_flops_per_s, 'FLOP/s', none='-')}; SM {_fmt_pct(t.sm_pct)} %, memory "
                               f"{_fmt_pct(t.memory_pct)} % of peak (time-weighted)")
    if report.device:
        head.add_row("roofline", f"{report.device}: {human_count(report.peak_flops_per_s, 'FLOP/s', none='-')} ({report.peak_kind}), "
                                 f"{human_count(report.bandwidth_bytes_per_s, 'B/s', none='-')}, ridge {_fmt_ratio(report.ridge_intensity)} FLOP/B")
    console.print(head)
    cols = ["id", "name", "op", "kernels", "GPU time", "share", "FLOPs", "static", "ratio", "DRAM B", "static B", "B ratio",
            "FLOP/B", "FLOP/s"]
    if report.device:
        cols += ["% of roof", "bound"]
    cols += ["SM %", "mem %", "TC"]
    rows = []
    for n in report.nodes[:top]:
        row = [n.id, n.name or "-", n.op_type or "-", str(n.kernels), human_time_us(n.gpu_time_us), f"{n.share:.1%}",
               human_count(n.flops, none="-"), human_count(n.static_flops, none="-"), _fmt_ratio(n.flops_ratio), human_count(n.dram_bytes, none="-"),
               human_count(n.static_bytes, none="-"), _fmt_ratio(n.bytes_ratio), _fmt_ratio(n.intensity), human_count(n.achieved_flops_per_s, none="-")]
        if report.device:
            row += [_fmt_share(n.roofline_share), n.bound or "-"]
        row += [_fmt_pct(n.sm_pct), _fmt_pct(n.memory_pct), "yes" if n.tensor_core else ""]
        rows.append(row)
    console.print(fit_table(f"top {top} nodes by GPU time", cols, rows, left=("id", "name", "op", "bound", "TC")))
    if report.unattributed:
        u = Table(title="kernels outside every node's range", box=box.SIMPLE)
        for c in ("ID", "kernel", "GPU time", "DRAM B"):
            u.add_column(c, justify="left" if c == "kernel" else "right", overflow="ellipsis", no_wrap=True,
                         max_width=60 if c == "kernel" else None)
        for k in report.unattributed[:10]:
            u.add_row(str(k.id), plain(k.name), human_time_us((k.time_s or 0.0) * 1e6), human_count(k.dram_bytes, none="-"))
        console.print(u)
    for note in report.notes:
        console.print(plain(note, style="yellow"))
