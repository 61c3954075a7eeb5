"""Terminal rendering of an Analysis with rich tables (renderers never compute)."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mlms_ir.report.model import Analysis, NodeCost

SORT_KEYS = ("macs", "flops", "params", "output_bytes", "bytes", "time", "order")


def human_count(n: int | float | None, unit: str = "") -> str:
    """4_089_184_256 -> '4.09 G' (SI, three significant digits)."""
    if n is None:
        return "?"
    n = float(n)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}".rstrip() if n != int(n) else f"{int(n)} {unit}".rstrip()


def human_bytes(n: int | None) -> str:
    """Binary units: 1536 -> '1.50 KiB'."""
    if n is None:
        return "?"
    v = float(n)
    for factor, suffix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if v >= factor:
            return f"{v / factor:.2f} {suffix}"
    return f"{int(v)} B"


def human_time_us(us: float | None) -> str:
    """12.5 -> '12.5 µs', 12500 -> '12.5 ms'."""
    if us is None:
        return "-"
    if us >= 1e6:
        return f"{us / 1e6:.3g} s"
    if us >= 1e3:
        return f"{us / 1e3:.3g} ms"
    return f"{us:.3g} µs"


def fmt_shape(shape: list | None) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def sort_nodes(nodes: list[NodeCost], key: str) -> list[NodeCost]:
    """Nodes ordered for display by ``key`` (one of :data:`SORT_KEYS`)."""
    if key == "order":
        return list(nodes)
    getter = {
        "macs": lambda n: (n.macs or 0, n.flops or 0),
        "flops": lambda n: (n.flops or 0, n.macs or 0),
        "params": lambda n: (n.params, n.macs or 0),
        "output_bytes": lambda n: (n.output_bytes or 0, 0),
        "bytes": lambda n: ((n.bytes_read or 0) + (n.bytes_written or 0), 0),
        "time": lambda n: (n.time_lower_bound_us or 0.0, n.flops or 0),
    }[key]
    return sorted(nodes, key=getter, reverse=True)


def summary_rows(a: Analysis) -> list[tuple[str, str]]:
    t = a.totals
    m = a.model
    rows = [
        ("model", m.name),
        ("producer", m.producer or "-"),
        ("opsets", ", ".join(f"{k} {v}" for k, v in m.opsets.items())),
        ("inputs", "; ".join(f"{i['name']}: {i['dtype']}[{fmt_shape(i['shape'])}]" for i in m.inputs) or "-"),
        ("nodes", f"{t.nodes} (depth {a.structure.depth})"),
        ("params", f"{human_count(t.params)} ({t.params:,})"),
        ("MACs", f"{human_count(t.macs)} ({t.macs:,})" + (f", of which integer {human_count(t.int_macs)}" if t.int_macs else "")),
        ("FLOPs", f"{human_count(t.flops)} ({t.flops:,})"),
        ("weights", human_bytes(t.weight_bytes) + (f" (params {human_bytes(t.param_bytes)})" if t.constant_bytes else "")),
        ("activations", human_bytes(t.activation_bytes)),
        ("peak activations", human_bytes(t.peak_activation_bytes) + (f" at {t.peak_at_node}" if t.peak_at_node else "")),
        ("inputs / outputs", f"{human_bytes(t.input_bytes)} / {human_bytes(t.output_bytes)}"),
    ]
    if a.roofline is not None:
        r = a.roofline
        rows.append(
            (
                f"roofline ({r.device})",
                f"≥ {human_time_us(r.lower_bound_us)}; {r.compute_bound_nodes} compute-bound, "
                f"{r.memory_bound_nodes} memory-bound nodes ({r.compute_bound_share:.0%} of the bound is compute)",
            )
        )
    if not t.complete:
        rows.append(("complete", f"no: {t.unresolved_nodes} unresolved, {t.unknown_nodes} unknown-op nodes"))
    return rows


def fit_table(title: str, cols: list[str], rows: list[list[str]], *, left: tuple[str, ...] = (), shrink: str = "name") -> Table:
    """A table whose columns keep their content's width, except ``shrink`` (names from the
    model), which is cut with an ellipsis when the terminal is too narrow. Cells are plain text
    (model names are never read as markup)."""
    t = Table(title=title, box=box.SIMPLE)
    for k, col in enumerate(cols):
        width = max([len(col)] + [len(r[k]) for r in rows])
        if col == shrink:
            t.add_column(col, overflow="ellipsis", no_wrap=True, max_width=60, min_width=8)
        else:
            t.add_column(col, justify="left" if col in left else "right", no_wrap=True, min_width=min(width, 24))
    for row in rows:
        t.add_row(*(Text(c) for c in row))
    return t


def render_text(a: Analysis, *, top: int = 20, sort: str = "macs", console: Console | None = None) -> None:
    """Print the summary, the top nodes, op types and repeated blocks."""
    console = console or Console()
    summary = Table(title=Text(f"mlms_ir analysis: {a.model.name}"), box=box.SIMPLE_HEAVY, show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    for k, v in summary_rows(a):
        summary.add_row(Text(k), Text(v))
    parts: list = [summary]

    show_roof = a.roofline is not None
    cols = ["id", "name", "op", "output", "MACs", "FLOPs", "params", "out bytes", "FLOP/B"] + (["bound", "≥ time"] if show_roof else [])
    rows = []
    for n in sort_nodes([n for n in a.nodes if n.parent is None], sort)[:top]:
        row = [
            n.id,
            n.name or "-",
            n.op_type if not n.domain else f"{n.domain}::{n.op_type}",
            fmt_shape(n.output_shapes[0] if n.output_shapes else None),
            human_count(n.macs) if n.status != "unknown_op" else "unknown",
            human_count(n.flops) if n.status != "unknown_op" else "unknown",
            human_count(n.params) if n.params else "-",
            human_bytes(n.output_bytes),
            f"{n.intensity:.3g}" if n.intensity is not None else "-",
        ]
        if show_roof:
            row += [n.bound or "-", human_time_us(n.time_lower_bound_us)]
        rows.append(row)
    nodes = fit_table(f"top {top} nodes by {sort} (MACs count one multiply-add; FLOPs count two)", cols, rows,
                      left=("id", "name", "op", "output", "bound"))
    parts.append(nodes)

    ops = Table(title="op types", box=box.SIMPLE)
    for col in ("op", "count", "MACs", "share of MACs", "FLOPs", "params"):
        ops.add_column(col, justify="left" if col == "op" else "right")
    for o in a.structure.op_types:
        ops.add_row(Text(o.op_type if not o.domain else f"{o.domain}::{o.op_type}"), str(o.count), human_count(o.macs),
                    f"{o.share_macs:.1%}", human_count(o.flops), human_count(o.params) if o.params else "-")
    parts.append(ops)

    if a.structure.blocks:
        blocks = Table(title="repeated blocks", box=box.SIMPLE)
        for col in ("block", "count", "nodes each", "MACs (all)", "params (all)", "found by"):
            blocks.add_column(col, justify="left" if col in ("block", "found by") else "right")
        for b in a.structure.blocks[:10]:
            blocks.add_row(Text(b.name), f"x {b.count}", str(b.nodes_per_block), human_count(b.macs), human_count(b.params), b.found_by)
        parts.append(blocks)
    if a.unknown_ops:
        unk = Table(title="ops with no cost formula (not counted)", box=box.SIMPLE)
        unk.add_column("op")
        unk.add_column("count", justify="right")
        for u in a.unknown_ops:
            unk.add_row(Text(f"{u.domain}::{u.op_type}" if u.domain else u.op_type), str(u.count))
        parts.append(unk)
    if a.unresolved_dims:
        ud = Table(title="unresolved dims (bind with --dims, --batch or --input-shape)", box=box.SIMPLE)
        ud.add_column("dim")
        ud.add_column("inputs")
        ud.add_column("nodes left uncounted", justify="right")
        for d in a.unresolved_dims:
            ud.add_row(Text(d.dim), Text(", ".join(d.inputs) or "-"), str(len(d.nodes)))
        parts.append(ud)
    console.print(Group(*parts))
    for w in a.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
