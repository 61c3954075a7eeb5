"""Machine-readable renderings of an Analysis: JSON, CSV (one row per node) and Markdown."""

from __future__ import annotations

import csv
import io

from mlms_ir.report.formula import figure
from mlms_ir.results.analysis import Analysis
from mlms_ir.report.text import fmt_shape, human_bytes, human_count, printable, share_cell, sort_nodes, summary_rows

CSV_COLUMNS = (
    "id", "name", "op_type", "domain", "status", "parent", "macs", "flops", "int_macs", "params", "param_bytes",
    "bytes_read", "bytes_written", "output_bytes", "intensity", "bound", "time_lower_bound_us",
    "input_shapes", "output_shapes", "note", "symbolic",
)
#: Columns whose text can come from the model (names, shapes with its dim names, notes quoting them).
_CSV_TEXT = frozenset({"name", "op_type", "domain", "parent", "input_shapes", "output_shapes", "note", "symbolic"})
#: A cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection rule).
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet reads as text: prefixed with ``'`` when it starts with
    ``= + - @``, a tab or a carriage return (a model's name ``=HYPERLINK(...)`` is no formula).
    :func:`to_csv` first writes controls and bidi overrides as ``\\u202e`` (:func:`printable`): a
    lone carriage return would end the row in most readers, an override spoof the cell."""
    return "'" + text if text.startswith(_CSV_FORMULA_START) else text


def to_json(a: Analysis) -> str:
    return a.to_json(indent=2) + "\n"


def to_csv(a: Analysis) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for n in a.nodes:
        row = []
        for col in CSV_COLUMNS:
            v = getattr(n, col)
            if col in ("input_shapes", "output_shapes"):
                v = ";".join(fmt_shape(s) for s in v)
            elif col == "symbolic":
                v = ";".join(f"{k}={f}" for k, f in v.items()) if v else None
            if col in _CSV_TEXT and isinstance(v, str):
                v = csv_cell(printable(v))
            row.append("" if v is None else v)
        w.writerow(row)
    return buf.getvalue()


#: Markdown's inline syntax (emphasis, code, strikethrough, table pipes; links and images need
#: unescaped brackets, autolinks a ``<``) and the characters of HTML tags and entities, which
#: Markdown passes through.
_MD_SPECIAL = {c: "\\" + c for c in "\\`*_[]~|"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_TABLE = str.maketrans(_MD_SPECIAL)


def md_escape(s: object) -> str:
    """``s`` as literal text in a Markdown table cell: every inline-syntax character escaped (no
    link, image, emphasis or HTML from a model's names), controls, zero-width and bidi overrides
    written as ``\\u202e`` (as the table shows them), all on one line."""
    return printable(s).translate(_MD_TABLE)


_md_escape = md_escape


def to_markdown(a: Analysis, *, top: int = 20, sort: str = "macs") -> str:
    lines = [f"# mlms_ir analysis: {_md_escape(a.model.name)}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_md_escape(v)} |" for k, v in summary_rows(a)]
    lines += ["", f"## Top {top} nodes by {sort}", "", "MACs count one multiply-add; FLOPs count two.", "",
              "| id | name | op | output | MACs | FLOPs | params | out bytes |", "|---|---|---|---|---:|---:|---:|---:|"]
    for n in sort_nodes([n for n in a.nodes if n.parent is None], sort)[:top]:
        lines.append(
            f"| {n.id} | {_md_escape(n.name or '-')} | {_md_escape(n.op_type)} | {_md_escape(fmt_shape(n.output_shapes[0] if n.output_shapes else None))} "
            f"| {_md_escape(figure(n.macs, n.symbolic, 'macs', human_count))} | {_md_escape(figure(n.flops, n.symbolic, 'flops', human_count))} "
            f"| {human_count(n.params) if n.params else '-'} | {_md_escape(figure(n.output_bytes, n.symbolic, 'output_bytes', human_bytes))} |"
        )
    lines += ["", "## Op types", "", "| op | count | MACs | share of MACs | FLOPs |", "|---|---:|---:|---:|---:|"]
    for o in a.structure.op_types:
        share = share_cell(o)
        lines.append(f"| {_md_escape(o.op_type)} | {o.count} | {_md_escape(figure(o.macs, o.symbolic, 'macs', human_count))} | {share} "
                     f"| {_md_escape(figure(o.flops, o.symbolic, 'flops', human_count))} |")
    if a.structure.blocks:
        lines += ["", "## Repeated blocks", "", "| block | count | nodes each | MACs (all) |", "|---|---:|---:|---:|"]
        for b in a.structure.blocks:
            lines.append(f"| {_md_escape(b.name)} | {b.count} | {b.nodes_per_block} | {_md_escape(figure(b.macs, b.symbolic, 'macs', human_count))} |")
    if a.warnings:
        lines += ["", "## Warnings", ""] + [f"- {_md_escape(w)}" for w in a.warnings]
    return "\n".join(lines) + "\n"
