"""Terminal rendering of run and profile reports (rich tables)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from mlms_ir.results.profile import ProfileReport
from mlms_ir.results.run import RunReport
from mlms_ir.report.fusion import by_shown_time, shown_times
from mlms_ir.report.text import default_console, fit_table, human_count, human_time_ms, human_time_us, plain, sig


def _sci(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def render_runs(report: RunReport, *, console: Console | None = None) -> None:
    console = console or default_console()
    cpu = report.system.get("cpu", {}) if report.system else {}
    title = f"mlms_ir run: {report.model.name}"
    if cpu:
        title += f"  ({cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores)"
    t = Table(title=plain(title), box=box.SIMPLE)
    cols = ("backend", "device", "batch", "mean ms", "p50", "p90", "p99", "stdev", "items/s", "max abs diff", "status")
    for c in cols:
        t.add_column(c, justify="left" if c in ("backend", "device", "status") else "right", no_wrap=True)
    for r in report.runs:
        lat = r.latency_ms or {}
        t.add_row(
            r.backend, r.device, str(r.batch),
            *((sig(lat[k]) if lat else "-") for k in ("mean", "p50", "p90", "p99", "stdev")),
            human_count(r.throughput) if r.throughput else "-",
            (plain(("equal (no elements)" if r.max_abs_diff is None and r.outputs_agree else _sci(r.max_abs_diff))
                   + (" ✗" if r.outputs_agree is False else ""),
                  style="bold red" if r.outputs_agree is False else "")
             if r.compared_with else ("(reference)" if r.status == "ok" else "-")),
            r.status,
        )
    console.print(t)
    why = {}
    for r in report.runs:
        if r.status != "ok":
            why.setdefault((r.backend, r.device, r.status, r.error), None)
    for backend, device, status, error in why:
        console.print(plain(f"{backend} on {device}: {status}: {error}", style="yellow"))
    s = report.settings
    for r in report.runs:
        if r.outputs_agree is False:
            console.print(plain(f"{r.backend} on {r.device} at batch {r.batch}: {r.beyond_tolerance:,} output elements differ "
                               f"from {r.compared_with}'s beyond {s.get('atol'):g} + {s.get('rtol'):g}*|{r.compared_with}| "
                               f"(max abs {_sci(r.max_abs_diff)}, max rel {_sci(r.max_rel_diff)})", style="bold red"))
    console.print(plain(f"{_iterations_done(report)} after {s.get('warmup')} warm-up runs; inputs: {s.get('inputs')}; "
                       "diffs against the first backend that ran", style="dim"))


def _iterations_done(report: RunReport) -> str:
    """The timed iterations each configuration ran: the number asked for, or with ``min_time_s``
    the range each configuration's harness actually ran (its latency's ``iterations``)."""
    s = report.settings
    done = sorted({int(r.latency_ms["iterations"]) for r in report.runs if r.latency_ms and r.latency_ms.get("iterations")})
    if not done or done == [s.get("iterations")]:
        return f"{s.get('iterations')} iterations"
    span = f"{done[0]:,}" if len(done) == 1 else f"{done[0]:,}-{done[-1]:,}"
    why = f" (at least {s.get('iterations')} and {s.get('min_time_s'):g} s)" if s.get("min_time_s") else ""
    return f"{span} iterations{why}"


def render_profile(report: ProfileReport, *, top: int = 20, console: Console | None = None) -> None:
    console = console or default_console()
    lat = report.latency_ms
    head = Table(title=plain(f"mlms_ir profile: {report.model.name} on {report.backend} ({report.device})"),
                 box=box.SIMPLE_HEAVY, show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row("options", plain(", ".join(f"{k}={v}" for k, v in report.options.items() if v is not None) or "-"))
    head.add_row("latency (untraced)", f"mean {human_time_ms(lat['mean'])}, p50 {human_time_ms(lat['p50'])}, p99 {human_time_ms(lat['p99'])} over {lat['iterations']:g} runs")
    head.add_row("traced run", f"median {human_time_ms(report.traced_wall_ms)} of {report.runs} runs (tracing overhead {report.tracing_overhead:+.1%} on the untraced median)")
    head.add_row("node time", f"{human_time_us(report.node_time_us)} per run; {report.coverage:.1%} attributed to graph nodes")
    gpu = report.gpu or {}
    if "busy_us" in gpu:
        lat_us = gpu.get("launch_latency_us")
        head.add_row("GPU", f"{gpu['kernels']:.0f} kernels per run on {len(gpu.get('streams') or [])} stream(s); busy "
                     f"{human_time_us(gpu['busy_us'])}, idle {human_time_us(gpu['idle_us'])} before the last kernel ends; "
                     f"utilisation {gpu['utilization']:.1%} of the traced run"
                     + (f"; launch to start {human_time_us(lat_us)} on average" if lat_us is not None else ""))
    tele = (gpu.get("telemetry") or {})
    sampled = tele.get("gpus") or [] if tele.get("available") else []
    g0 = next((g for g in sampled if g.get("index") == gpu.get("telemetry_gpu")), sampled[0] if len(sampled) == 1 else None)
    if g0 is not None:

        def _mean(key: str, unit: str, scale: float = 1.0) -> str | None:
            v = g0.get(key)
            return f"{v['mean'] / scale:.0f} {unit}" if v else None

        parts = [p for p in (_mean("sm_clock_mhz", "MHz SM"), _mean("mem_clock_mhz", "MHz memory"), _mean("power_w", "W"),
                             _mean("temperature_c", "°C"), _mean("gpu_utilization_pct", "% busy"),
                             _mean("memory_used_bytes", "MiB used", 2**20)) if p]
        head.add_row(f"NVML GPU {g0.get('index')} (timed runs, mean)", ", ".join(parts) or "no samples")
    elif sampled:
        head.add_row("NVML", f"{len(sampled)} GPUs sampled; which one ran this is unknown (CUDA_VISIBLE_DEVICES): see the JSON")
    elif tele and not tele.get("available", True):
        head.add_row("NVML", plain(f"unavailable: {tele.get('reason', '')}"))
    console.print(head)
    on_gpu = any(n.kernel_count is not None for n in report.nodes)
    cols = ["id", "name", "op", "time", "share", "MACs", "FLOPs", "achieved FLOP/s"]
    if on_gpu:
        cols += ["kernels", "host", "launch overhead", "GPU idle before"]
    if report.roofline_device:
        cols += ["bound", "≥ time"]
    cols.append("fused with")
    shown = shown_times(report.nodes)
    rows = []
    for n in by_shown_time(report.nodes, shown)[:top]:
        s = shown[n.id]
        if s.fused_into is not None:  # its share of a kernel timed for another node: no time or rate of its own
            when = [f"fused into {s.fused_into}", "-"]
            rate = "-"
        else:
            when = [human_time_us(s.time_us), f"{s.share:.1%}"]
            rate = human_count(n.achieved_flops_per_s, none="-")
        row = [n.id, n.name or "-", n.op_type, *when, human_count(n.macs), human_count(n.flops), rate]
        if on_gpu:
            row += ["-" if n.kernel_count is None else f"{n.kernel_count:g}", human_time_us(n.cpu_us),
                    human_time_us(n.launch_overhead_us) if n.launch_overhead_us is None or n.launch_overhead_us >= 0
                    else "-" + human_time_us(-n.launch_overhead_us), human_time_us(n.idle_us)]
        if report.roofline_device:
            row += [n.bound or "-", human_time_us(n.time_lower_bound_us)]
        others = [] if s.fused_into is not None else n.fused_with
        row.append(", ".join(others[:3]) + (f" +{len(others) - 3}" if len(others) > 3 else ""))
        rows.append(row)
    t = fit_table(f"top {top} nodes by time", cols, rows, left=("id", "name", "op", "bound", "fused with"))
    console.print(t)
    if any(s.fused_into is not None for s in shown.values()):
        console.print(plain("a fused kernel's time and FLOP/s are on the node it was fused into (the one with the most FLOPs); "
                            "the JSON splits its time among its nodes by their FLOPs", style="dim"))
    if report.unattributed:
        u = Table(title="work not attributed to graph nodes", box=box.SIMPLE)
        for c in ("backend node", "op", "time", "events/run"):
            u.add_column(c, justify="left" if c in ("backend node", "op") else "right")
        for e in report.unattributed[:10]:
            u.add_row(plain(e["name"]), plain(e["op_type"]), human_time_us(e["time_us"]), f"{e['events']:.0f}")
        console.print(u)



def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def oracle_verdict(oracle) -> str:
    """The arbiter's verdict in words: "reference is wrong here", "ort is wrong here", or why it
    cannot say."""
    if oracle is None:
        return ""
    if not oracle.errors:
        return oracle.note or "no exact result"
    if len(oracle.wrong) == 1:
        return f"{oracle.wrong[0]} is wrong here"
    if oracle.wrong:
        return f"both are wrong here ({oracle.closer} is closer)" if oracle.closer else "both are wrong here"
    return "both within tolerance of the exact result"


def _outputs_error(outputs) -> str:
    """The model outputs' worst error in words: no figure where none was compared, and the outputs
    whose error is no number (another shape, or values that are not real numbers) said as such."""
    if not outputs:
        return "no output compared (the model computes none from its inputs)"
    known = [o.max_abs for o in outputs if o.max_abs is not None]
    text = f"max abs error {max(known):.3g}" if known else "no error figure"
    other = len(outputs) - len(known)
    if other:
        text += f"; {other} output{'s' if other > 1 else ''} {'are' if other > 1 else 'is'} not comparable as numbers (see the table)"
    return text


def render_divergence(report, *, top: int = 15, console: Console | None = None) -> None:
    """The first divergent node, the nodes that introduce the most error, and the worst tensors."""
    console = console or default_console()
    head = Table(title=plain(f"mlms_ir diverge: {report.model.name}: {report.backend} ({report.device}) vs {report.reference}"),
                 box=box.SIMPLE_HEAVY, show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row("precision", report.precision)
    head.add_row("tolerance", f"|d| > {report.atol:g} + {report.rtol:g}·|ref|")
    fd = report.first_divergent
    head.add_row("first divergent node", plain(f"{fd['id']} {fd['name']} ({fd['op_type']})" if fd
                                               else "none: every tensor within tolerance" if report.compared_tensors
                                               else "none: no node output was compared"))
    if report.first_nan:
        fn = report.first_nan
        head.add_row("first NaN", plain(f"{fn['id']} {fn['name']} ({fn['op_type']})"))
    head.add_row("outputs", _outputs_error(report.outputs))
    head.add_row("compared", f"{report.compared_tensors} tensor{'' if report.compared_tensors == 1 else 's'}" + (f"; {len(report.missing_tensors)} not exposed by the backend" if report.missing_tensors else "") + (f"; streamed in {report.segments} segments" if report.segments > 1 else ""))
    console.print(head)
    if report.top_introduced:
        by_id = {n.id: n for n in report.nodes}
        rows = [[t["id"], t["name"] or "-", t["op_type"], _g(t["introduced_max_abs"]), _g(t["introduced_max_rel"]), "yes" if t["exceeds"] else "no",
                 oracle_verdict(by_id[t["id"]].oracle) if t["id"] in by_id else ""]
                for t in report.top_introduced]
        console.print(fit_table("nodes by introduced error (re-run alone with the reference's inputs; the exact result in float64 says who is wrong)",
                                ["id", "name", "op", "introduced max abs", "max rel", "exceeds", "exact result says"], rows,
                                left=("id", "name", "op", "exceeds", "exact result says")))
    if not report.nodes:
        return
    nodes = sorted(report.nodes, key=lambda n: -(n.max_abs or 0.0))[:top]
    rows = [[n.id, n.name or "-", n.op_type, _g(n.max_abs), _g(n.max_rel), _g(n.cosine), _g(n.snr_db), f"{n.outside_share:.1%}",
             str(n.nan), _g(n.introduced_max_abs)] for n in nodes]
    console.print(fit_table(f"top {top} nodes by accumulated max abs error",
                            ["id", "name", "op", "max abs", "max rel", "cosine", "SNR dB", "outside tol", "NaN", "introduced"],
                            rows, left=("id", "name", "op")))
