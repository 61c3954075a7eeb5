"""``runs compare --format html``: the comparison as one self-contained, script-free page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from mlms_ir.report.store_text import format_value, node_delta, node_value
from mlms_ir.report.text import sig
from mlms_ir.results.comparison import Comparison


def _verdict(row: dict[str, Any], k: int) -> str:
    """``better``/``worse`` than the baseline for a figure whose direction is known."""
    vals, better = row["values"], row.get("better")
    if k == 0 or better is None or not isinstance(vals[0], (int, float)) or not isinstance(vals[k], (int, float)) or vals[k] == vals[0]:
        return ""
    improved = vals[k] < vals[0] if better == "lower" else vals[k] > vals[0]
    return "better" if improved else "worse"


def render_compare_html(comparison: Comparison) -> str:
    """The comparison of :func:`mlms_ir.compare.compare_runs` as HTML (every value escaped)."""
    cmp = comparison.to_dict()
    import jinja2

    from mlms_ir import __version__

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    text = resources.files("mlms_ir.report").joinpath("templates/compare.html.j2").read_text(encoding="utf-8")
    time = cmp["per_node"]["metric"] == "time_us"
    return env.from_string(text).render(cmp=cmp, ids=[str(r["id"]) for r in cmp["runs"]], fmt=format_value, verdict=_verdict,
                                        node_value=lambda v: node_value(v, time), node_delta=lambda d: node_delta(d, time), ratio=sig,
                                        version=__version__)
