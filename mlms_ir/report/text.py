"""Terminal rendering of an Analysis with rich tables (renderers never compute)."""

from __future__ import annotations

import math
import os
import re

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mlms_ir.report.formula import figure, pretty
from mlms_ir.results.analysis import SORT_KEYS as SORT_KEYS  # defined there: analyze checks --sort without rich
from mlms_ir.results.analysis import Analysis, NodeCost

#: Width of tables written to a pipe or file (a terminal uses its own; ``$COLUMNS`` overrides both).
PIPED_WIDTH = 240


#: SI prefixes, largest first: counts and rates (MACs, FLOP/s, B/s) and, where asked, small values.
_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
_SMALL_PREFIXES = ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))
#: Significant digits of every figure we print (the house style: no false precision).
DIGITS = 3
#: Times below this are noise (a profiler's clock, a share of a fused kernel): never printed finer.
TIME_RESOLUTION_US = 0.01


def _round_sig(x: float, digits: int = DIGITS) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


#: From this magnitude on a bare number is written in scientific notation (``8.51e37``): a
#: string of 16 or more digits cannot be read at a glance.
SCIENTIFIC_FROM = 1e9


def sci(x: int | float, digits: int = DIGITS) -> str:
    """``x`` in scientific notation to ``digits`` significant digits, trailing zeros dropped:
    8.51e37, -5.59e17, 1e21. Exact for ints of any size (no float conversion)."""
    from decimal import Decimal

    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    text = format(Decimal(x), f".{digits - 1}e")  # Decimal: an int beyond a float's range too
    mant, _, exp = text.lower().partition("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def _big(x) -> bool:
    """Whether ``x`` is too large for positional notation (an int beyond a float's range included)."""
    return abs(x) >= SCIENTIFIC_FROM if not isinstance(x, int) else abs(x) >= 10 ** 9


def sig(x: float, digits: int = DIGITS) -> str:
    """``x`` to ``digits`` significant digits in positional notation, trailing zeros dropped:
    0.0123456 -> '0.0123', 12.5 -> '12.5', 999.6 -> '1000' (never '1e+03'); from
    :data:`SCIENTIFIC_FROM` on in scientific notation (5.59e17)."""
    if isinstance(x, int) and _big(x):
        return sci(x, digits)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    r = _round_sig(x, digits)
    if r == 0:
        return "0"
    if _big(r):
        return sci(x, digits)
    places = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    text = f"{r:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_count(n: int | float | None, unit: str = "", *, small: bool = False, none: str = "?") -> str:
    """A count or rate with an SI prefix and three significant digits: 4_089_184_256 -> '4.09 G',
    1.51e15 with unit 'OP/s' -> '1.51 POP/s'. Integers below 1000 are shown whole; ``small``
    gives values below 1 the prefixes m, µ, n, p and f (0.0125 s -> '12.5 ms'); None reads ``none``."""
    if n is None:
        return none
    if isinstance(n, int) and abs(n) >= 1000 * _PREFIXES[0][0]:  # beyond the largest prefix (maybe beyond a float)
        return f"{sci(n)} {unit}".rstrip()
    v = float(n)
    if not math.isfinite(v):
        return f"{v} {unit}".rstrip()
    r = _round_sig(v)  # rounded first, so that 999_600 reads '1 M', not '1e+03 K'
    if abs(r) >= 1000 * _PREFIXES[0][0]:
        return f"{sci(v)} {unit}".rstrip()
    for factor, prefix in _PREFIXES:
        if abs(r) >= factor:
            return f"{sig(r / factor)} {prefix}{unit}"
    if small and 0 < abs(r) < 1:
        for factor, prefix in _SMALL_PREFIXES:
            if abs(r) >= factor or factor == _SMALL_PREFIXES[-1][0]:
                return f"{sig(r / factor)} {prefix}{unit}"
    return f"{int(v) if v.is_integer() else sig(r)} {unit}".rstrip()


_BINARY = ((1 << 60, "EiB"), (1 << 50, "PiB"), (1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def human_bytes(n: int | None) -> str:
    """Binary units: 1536 -> '1.50 KiB'; from 1024 EiB on in scientific notation ('5.16e35 B')."""
    if n is None:
        return "?"
    if abs(n) >= 1024 * _BINARY[0][0]:  # beyond the largest unit (an int maybe beyond a float's range)
        return f"{sci(n)} B"
    v = float(n)
    if not math.isfinite(v):
        return f"{v} B"
    for factor, suffix in _BINARY:
        if v >= factor:
            return f"{v / factor:.2f} {suffix}"
    return f"{int(v)} B" if v.is_integer() else f"{sig(v)} B"


def human_time_us(us: float | None) -> str:
    """A time given in µs, three significant digits and never finer than
    :data:`TIME_RESOLUTION_US`: 12.5 -> '12.5 µs', 12500 -> '12.5 ms', 0.341 -> '0.34 µs',
    0.00341 -> '< 0.01 µs' (noise); None -> '-'."""
    if us is None:
        return "-"
    v = float(us)
    if v == 0:
        return "0 µs"
    if abs(v) < TIME_RESOLUTION_US:
        return f"< {sig(TIME_RESOLUTION_US)} µs"
    r = _round_sig(v)
    if abs(r) < 1:
        r = round(v, 2)
    if abs(r) >= 1e6:
        return f"{sig(r / 1e6)} s"
    if abs(r) >= 1e3:
        return f"{sig(r / 1e3)} ms"
    return f"{sig(r)} µs"


def human_time_ms(ms: float | None) -> str:
    """A time given in ms, as :func:`human_time_us` writes it (0.0163 -> '16.3 µs')."""
    return "-" if ms is None else human_time_us(float(ms) * 1e3)


def clip(text: object, limit: int = 80) -> str:
    """``text`` on one line and at most ``limit`` characters: cut at the last word boundary
    before the limit (inside a word only when one word fills half the limit), ending in '…'."""
    one = " ".join(str(text).split())
    if len(one) <= limit:
        return one
    cut = one[: limit - 1]
    space = cut.rfind(" ") if one[limit - 1] != " " else len(cut)  # a word ending right at the cut stays
    if space >= limit // 2:
        cut = cut[:space].rstrip(" ,;:-")
    return cut + "…"


def fmt_shape(shape: list | None) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def sort_nodes(nodes: list[NodeCost], key: str) -> list[NodeCost]:
    """Nodes ordered for display by ``key`` (one of :data:`SORT_KEYS`)."""
    if key == "order":
        return list(nodes)
    def v(n: NodeCost, f: str) -> float:
        x = getattr(n, f)
        if x is None and n.rank:  # a formula: ordered by its value at a large size of every dim
            return n.rank.get(f, 0.0)
        return x or 0

    getter = {
        "macs": lambda n: (v(n, "macs"), v(n, "flops")),
        "flops": lambda n: (v(n, "flops"), v(n, "macs")),
        "params": lambda n: (n.params, v(n, "macs")),
        "output_bytes": lambda n: (v(n, "output_bytes"), 0),
        "bytes": lambda n: (v(n, "bytes_read") + v(n, "bytes_written"), 0),
        "time": lambda n: (v(n, "time_lower_bound_us"), v(n, "flops")),
    }[key]
    return sorted(nodes, key=getter, reverse=True)


def _exact(n: int | None) -> str:
    """A count and, while an SI prefix reads it (below 10**21), its exact digits: '4.09 G (4,089,184,256)'."""
    if n is None or not isinstance(n, int) or abs(n) >= 10 ** 21:
        return human_count(n)
    return f"{human_count(n)} ({n:,})"


def summary_rows(a: Analysis) -> list[tuple[str, str]]:
    t = a.totals
    m = a.model
    sym = t.symbolic or {}
    # A total that left something out is a lower bound: never shown as a bare number. Node sums
    # miss the uncounted nodes; sizes miss the tensors whose size is unknown.
    uncounted = t.unresolved_nodes + t.unknown_nodes
    nodes_gap = f"{uncounted} node{'s' if uncounted != 1 else ''} not counted" if uncounted else ""

    def io_gap(tensors: list[dict]) -> str:
        n = sum(1 for i in tensors if i.get("shape") is None or None in i["shape"])
        return f"{n} size{'s' if n != 1 else ''} unknown" if n else ""

    sizes_gap = ""
    if not t.complete and (io_gap(m.inputs) or any(s is None or None in s for n in a.nodes if n.parent is None
                                                   for s in n.output_shapes)):
        sizes_gap = "some tensor sizes unknown"

    gaps = {**dict.fromkeys(("macs", "int_macs", "flops"), nodes_gap),
            **dict.fromkeys(("activation_bytes", "peak_activation_bytes"), sizes_gap),
            "input_bytes": io_gap(m.inputs), "output_bytes": io_gap(m.outputs)}

    def fig(key: str, number) -> str:
        value, gap = getattr(t, key), gaps.get(key, "")
        if value is None and key not in sym:
            return f"unknown ({gap or 'not counted'})"
        text = figure(value, sym, key, number)
        return f"≥ {text} ({gap})" if gap else text

    rows = [
        ("model", m.name),
        ("producer", m.producer or "-"),
        ("opsets", ", ".join(f"{k} {v}" for k, v in m.opsets.items())),
        ("inputs", "; ".join(f"{i['name']}: {i['dtype']}[{fmt_shape(i['shape'])}]" for i in m.inputs) or "-"),
    ]
    if a.dims:
        rows.append(("dims", "; ".join(f"{d.name}: {d.meaning}" for d in a.dims)))
    rows += [
        ("nodes", f"{t.nodes} (depth {a.structure.depth})"),
        ("params", _exact(t.params)),
        ("MACs", fig("macs", _exact) + (f", of which integer {figure(t.int_macs, sym, 'int_macs', human_count)}"
                                        if t.int_macs or "int_macs" in sym else "")),
        ("FLOPs", fig("flops", _exact)),
        ("weights", human_bytes(t.weight_bytes) + (f" (params {human_bytes(t.param_bytes)})" if t.constant_bytes else "")),
        ("activations", fig("activation_bytes", human_bytes)),
        ("peak activations", fig("peak_activation_bytes", human_bytes) + (f" at {t.peak_at_node}" if t.peak_at_node else "")
         + (f" (at one of {', '.join(t.peak_candidates)}, by the dims)" if t.peak_candidates else "")),
        ("inputs / outputs", f"{fig('input_bytes', human_bytes)} / {fig('output_bytes', human_bytes)}"),
    ]
    if a.roofline is not None:
        r = a.roofline
        if r.lower_bound_us is None and "roofline_s" in sym:
            bound = (f"≥ {pretty(sym['roofline_s'], 'seconds')}; {r.compute_bound_nodes} compute-bound, {r.memory_bound_nodes} "
                     f"memory-bound nodes" + (f", {r.dims_bound_nodes} either, by the dims" if r.dims_bound_nodes else ""))
        else:
            bound = (f"≥ {human_time_us(r.lower_bound_us)}; {r.compute_bound_nodes} compute-bound, "
                     f"{r.memory_bound_nodes} memory-bound nodes ({r.compute_bound_share:.0%} of the bound is compute)")
        rows.append((f"roofline ({r.device})", bound))
    if not t.complete:
        per_iteration = sum(1 for s in {(s.owner, s.owner_op): s for s in a.structure.subgraphs
                                        if s.multiplier is None and not s.symbolic_multiplier and s.owner_op in ("Loop", "Scan")})
        rows.append(("complete", f"no: {t.unresolved_nodes} unresolved, {t.unknown_nodes} unknown-op nodes"
                     + (f", {per_iteration} loop{'s' if per_iteration != 1 else ''} counted per iteration" if per_iteration else "")))
    if a.dims:
        example = ",".join(f"{d.origin if d.kind == 'input' and d.origin else d.name}=N" for d in a.dims[:3])
        rows.append(("numbers", f"the figures above are exact formulas of the dims; bind them with --dims {example}"))
    return rows


def default_console() -> Console:
    """A console on stdout: a terminal's own width, or (piped into a file or a CI log) wide
    enough to keep every column; ``$COLUMNS`` overrides both."""
    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=PIPED_WIDTH)
    return console


#: Characters a model's strings may carry to garble or spoof a terminal: C0/C1 controls (NUL,
#: escape sequences, newlines), zero-width and bidirectional overrides (U+202E turns text around).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def printable(text: object) -> str:
    """``text`` with every control, zero-width and bidi-override character written as an escape
    (``\\u202e``): what a model names can never reorder, hide or break a line of our output."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def plain(text: object, **style: object) -> Text:
    """A rich Text of ``text`` as it is (never read as markup) and :func:`printable`."""
    return Text(printable(text), **style)


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
        t.add_row(*(plain(c) for c in row))
    return t


def share_cell(o) -> str:
    """An op type's share of the MACs: a percentage, 'by dims' (a ratio of formulas) or '?' (not counted)."""
    if o.share_macs is not None:
        return f"{o.share_macs:.1%}"
    return "by dims" if o.symbolic and "macs" in o.symbolic else "?"


def render_text(a: Analysis, *, top: int = 20, sort: str = "macs", console: Console | None = None) -> None:
    """Print the summary, the top nodes, op types and repeated blocks."""
    console = console or default_console()
    summary = Table(title=plain(f"mlms_ir analysis: {a.model.name}"), box=box.SIMPLE_HEAVY, show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value")
    for k, v in summary_rows(a):
        summary.add_row(plain(k), plain(v))
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
            figure(n.macs, n.symbolic, "macs", human_count) if n.status != "unknown_op" else "unknown",
            figure(n.flops, n.symbolic, "flops", human_count) if n.status != "unknown_op" else "unknown",
            human_count(n.params) if n.params else "-",
            figure(n.output_bytes, n.symbolic, "output_bytes", human_bytes),
            sig(n.intensity) if n.intensity is not None else "-",
        ]
        if show_roof:
            time = human_time_us(n.time_lower_bound_us)
            if n.time_lower_bound_us is None and n.symbolic and "roofline_s" in n.symbolic:
                time = pretty(n.symbolic["roofline_s"], "seconds")
            row += [n.bound or ("by dims" if n.symbolic and "roofline_s" in n.symbolic else "-"), time]
        rows.append(row)
    nodes = fit_table(f"top {top} nodes by {sort} (MACs count one multiply-add; FLOPs count two)", cols, rows,
                      left=("id", "name", "op", "output", "bound"))
    parts.append(nodes)

    ops = Table(title="op types", box=box.SIMPLE)
    for col in ("op", "count", "MACs", "share of MACs", "FLOPs", "params"):
        ops.add_column(col, justify="left" if col == "op" else "right")
    for o in a.structure.op_types:
        ops.add_row(plain(o.op_type if not o.domain else f"{o.domain}::{o.op_type}"), str(o.count),
                    figure(o.macs, o.symbolic, "macs", human_count), share_cell(o),
                    figure(o.flops, o.symbolic, "flops", human_count), human_count(o.params) if o.params else "-")
    parts.append(ops)

    if a.structure.blocks:
        blocks = Table(title="repeated blocks", box=box.SIMPLE)
        for col in ("block", "count", "nodes each", "MACs (all)", "params (all)", "found by"):
            blocks.add_column(col, justify="left" if col in ("block", "found by") else "right")
        for b in a.structure.blocks[:10]:
            blocks.add_row(plain(b.name), f"x {b.count}", str(b.nodes_per_block), figure(b.macs, b.symbolic, "macs", human_count),
                           human_count(b.params), b.found_by)
        parts.append(blocks)
    if a.unknown_ops:
        unk = Table(title="ops with no cost formula (not counted)", box=box.SIMPLE)
        unk.add_column("op")
        unk.add_column("count", justify="right")
        for u in a.unknown_ops:
            unk.add_row(plain(f"{u.domain}::{u.op_type}" if u.domain else u.op_type), str(u.count))
        parts.append(unk)
    if a.unresolved_dims:
        ud = Table(title="unresolved dims (bind with --dims, --batch or --input-shape)", box=box.SIMPLE)
        ud.add_column("dim")
        ud.add_column("inputs")
        ud.add_column("nodes left uncounted", justify="right")
        for d in a.unresolved_dims:
            ud.add_row(plain(d.dim), plain(", ".join(d.inputs) or "-"), str(len(d.nodes)))
        parts.append(ud)
    console.print(Group(*parts))
    for w in a.warnings:
        console.print(plain(f"warning: {w}", style="yellow"))


def _metric_value(metric: str, v) -> str:
    from mlms_ir.report.formula import UNITS, unit_of

    if v is None:
        return "-"
    unit = unit_of(metric)
    if unit == "bytes" and float(v).is_integer():
        return f"{human_bytes(v)} ({int(v):,} B)"
    return UNITS[unit](v) if unit != "count" else _exact(int(v)) if float(v).is_integer() else human_count(v)


def render_solution(sol, *, console: Console | None = None) -> None:
    """Print the answer of ``analyze --solve``."""
    console = console or default_console()
    fixed = ", ".join(f"{k}={v}" for k, v in sol.fixed.items())
    limit = _metric_value(sol.metric, sol.limit)
    if sol.dim is None:
        verdict = "holds" if sol.holds else "does not hold"
        console.print(plain(f"{sol.metric} {sol.op} {limit} {verdict}: {sol.metric} = {_metric_value(sol.metric, sol.at_value)}"
                           + (f" at {fixed}" if fixed else "") + " (no dim left free)"))
        return
    which = "largest" if sol.op in ("<=", "<") else "smallest"
    if sol.value is None:
        console.print(plain(f"no value of {sol.dim} gives {sol.metric} {sol.op} {limit}" + (f" at {fixed}" if fixed else "")))
        return
    line = f"{which} {sol.dim} with {sol.metric} {sol.op} {limit}" + (f" at {fixed}" if fixed else "") + f": {sol.dim} = {sol.value:,}"
    line += f" ({sol.metric} {_metric_value(sol.metric, sol.at_value)}"
    if sol.unbounded:
        line += f"; every {sol.dim} up to {sol.value:,} fits: {sol.metric} does not bound it)"
    elif sol.beyond is not None:
        step = sol.value + 1 if which == "largest" else sol.value - 1
        line += f"; {sol.dim} = {step:,} gives {_metric_value(sol.metric, sol.beyond)})"
    else:
        line += ")"
    console.print(plain(line))


def render_sweep(a: Analysis, dim: str, rows: list[dict], *, console: Console | None = None) -> None:
    """Print the totals along one dim (``analyze --sweep-dim``)."""
    console = console or default_console()
    bound = ", ".join(f"{k}={v}" for k, v in (a.bindings.get("dims") or {}).items())
    cols = [dim, "MACs", "FLOPs", "activations", "peak activations", "inputs"] + (["≥ time"] if a.roofline is not None else [])
    keys = [dim, "macs", "flops", "activation_bytes", "peak_activation_bytes", "input_bytes"] + (["roofline_s"] if a.roofline is not None else [])
    table = Table(title=plain(f"mlms_ir analysis: {a.model.name} along {dim}" + (f" ({bound})" if bound else "")), box=box.SIMPLE)
    for c in cols:
        table.add_column(c, justify="right", no_wrap=True)
    for r in rows:
        cells = [f"{r[dim]:,}"]
        for k in keys[1:]:
            v = r.get(k)
            cells.append("-" if v is None else human_bytes(v) if k.endswith("bytes") else
                         human_time_us(v * 1e6) if k == "roofline_s" else human_count(v))
        table.add_row(*cells)
    console.print(table)
