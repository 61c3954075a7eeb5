"""``.. mlms-op-costs::``: the counting-conventions table, generated from the op-cost registry.

Every row comes from :func:`mlms_ir.passes.registry.entries` at build time (domain, op type,
category and the formula line of the registered function), so the documentation lists exactly
the ops and formulas the installed code counts with.

Options:

``:domain:``
    only the ops of this domain (``ai.onnx`` for the default domain, ``com.microsoft``, ...).
``:category:``
    only the ops of this category (``compute``, ``elementwise``, ``data-movement``, ``free``,
    ``control-flow``).
``:summary:``
    put a sentence before the table giving the convention version and the op counts per category.
"""

from __future__ import annotations

from collections import Counter

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: Categories in the order the docs explain them; an unknown one is still shown (and warned about).
CATEGORIES = ("compute", "elementwise", "data-movement", "free", "control-flow")


def build_table(header: list[str], rows: list[list[nodes.Node | str]], widths: list[int], classes: list[str] | None = None) -> nodes.table:
    """A docutils table; a cell is a string (plain text) or a node (placed in a paragraph)."""
    table = nodes.table(classes=classes or [])
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)

    def row_of(cells: list[nodes.Node | str]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            para = nodes.paragraph()
            para += nodes.Text(cell) if isinstance(cell, str) else cell
            entry += para
            row += entry
        return row

    thead = nodes.thead()
    thead += row_of(header)
    group += thead
    tbody = nodes.tbody()
    for r in rows:
        tbody += row_of(r)
    group += tbody
    return table


class OpCostsDirective(SphinxDirective):
    has_content = False
    option_spec = {
        "domain": directives.unchanged,
        "category": directives.unchanged,
        "summary": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        from mlms_ir.passes.registry import CONVENTION_VERSION, entries

        domain = self.options.get("domain")
        category = self.options.get("category")
        all_entries = entries()
        for e in all_entries:
            if e.category not in CATEGORIES:
                logger.warning(
                    "op %s::%s has category %r, which the docs do not explain",
                    e.domain or "ai.onnx", e.op_type, e.category, location=self.get_location(),
                )
        chosen = [
            e for e in all_entries
            if (domain is None or (e.domain or "ai.onnx") == domain)
            and (category is None or e.category == category)
        ]
        if not chosen:
            logger.warning("mlms-op-costs: no registered op matches %s", self.options, location=self.get_location())
            return []
        out: list[nodes.Node] = []
        if "summary" in self.options:
            counts = Counter(e.category for e in chosen)
            domains = Counter(e.domain or "ai.onnx" for e in chosen)
            parts = [f"{counts[c]} {c}" for c in CATEGORIES if counts[c]]
            parts += [f"{n} {c}" for c, n in sorted(counts.items()) if c not in CATEGORIES]
            text = (
                f"Convention {CONVENTION_VERSION}: {len(chosen)} registered ops ("
                + ", ".join(parts)
                + ") in "
                + ", ".join(f"{d} ({n})" for d, n in sorted(domains.items()))
                + ". Any other op is reported as unknown."
            )
            out.append(nodes.paragraph(text=text))
        rows: list[list[nodes.Node | str]] = []
        for e in chosen:
            formula = e.formula or "(no formula line)"
            rows.append([e.domain or "ai.onnx", nodes.literal(text=e.op_type), e.category, formula])
        out.append(build_table(["domain", "op", "category", "formula"], rows, [14, 22, 14, 60], ["mlms-op-costs"]))
        return out


def setup(app: Sphinx) -> dict:
    app.add_directive("mlms-op-costs", OpCostsDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
