"""Which renderer draws which result in which format: one table keyed by (kind, format).

A renderer is a pure function of the result (and display options such as ``top``): it returns
the text to write (JSON, CSV, Markdown, HTML) or, for ``table``, a function that prints rich
tables on the console it is given. :func:`render` picks it; the CLI's ``emit`` writes what it
returns, so every verb ends the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlms_ir.errors import MlmsIrError
from mlms_ir.results.base import Result

#: A console function: prints the result's tables on a rich Console.
Draw = Callable[[Any], None]
Rendered = str | Draw


def _analysis_table(a: Any, *, top: int = 20, sort: str = "macs", **_: Any) -> Draw:
    from mlms_ir.report.text import render_text

    return lambda console: render_text(a, top=top, sort=sort, console=console)


def _analysis_json(a: Any, **_: Any) -> str:
    from mlms_ir.report.formats import to_json

    return to_json(a)


def _analysis_csv(a: Any, **_: Any) -> str:
    from mlms_ir.report.formats import to_csv

    return to_csv(a)


def _analysis_md(a: Any, *, top: int = 20, sort: str = "macs", **_: Any) -> str:
    from mlms_ir.report.formats import to_markdown

    return to_markdown(a, top=top, sort=sort)


def _run_table(r: Any, **_: Any) -> Draw:
    from mlms_ir.report.run_text import render_runs

    return lambda console: render_runs(r, console=console)


def _profile_table(r: Any, *, top: int = 20, **_: Any) -> Draw:
    from mlms_ir.report.run_text import render_profile

    return lambda console: render_profile(r, top=top, console=console)


def _divergence_table(r: Any, *, top: int = 15, **_: Any) -> Draw:
    from mlms_ir.report.run_text import render_divergence

    return lambda console: render_divergence(r, top=top, console=console)


def _diverge_table(r: Any, *, top: int = 15, **_: Any) -> Draw:
    from rich.text import Text

    from mlms_ir.report.run_text import render_divergence

    def draw(console: Any) -> None:
        for rep in r.reports:
            render_divergence(rep, top=top, console=console)
        for f in r.failed:
            console.print(Text(f"{f.backend}: failed: {f.error}", style="yellow"))

    return draw


def _scenario_table(r: Any, **_: Any) -> Draw:
    from mlms_ir.report.scenario_text import render_scenarios

    return lambda console: render_scenarios(r, console=console)


def _counters_table(r: Any, *, top: int = 20, **_: Any) -> Draw:
    from mlms_ir.report.counters_text import render_counters

    return lambda console: render_counters(r, console=console, top=top)


def _evaluation_table(r: Any, **_: Any) -> Draw:
    from mlms_ir.report.evaluation_text import render_evaluation

    return lambda console: render_evaluation(r, console)


def _comparison_table(r: Any, **_: Any) -> Draw:
    from mlms_ir.report.store_text import render_compare

    return lambda console: render_compare(r, console)


def _comparison_html(r: Any, **_: Any) -> str:
    from mlms_ir.report.compare_html import render_compare_html

    return render_compare_html(r)


def _json(r: Result, **_: Any) -> str:
    return r.to_json()


#: (kind, format) -> renderer. ``json`` is every result's own ``to_json`` unless listed.
RENDERERS: dict[tuple[str, str], Callable[..., Rendered]] = {
    ("analysis", "table"): _analysis_table,
    ("analysis", "json"): _analysis_json,
    ("analysis", "csv"): _analysis_csv,
    ("analysis", "md"): _analysis_md,
    ("run", "table"): _run_table,
    ("profile", "table"): _profile_table,
    ("divergence", "table"): _divergence_table,
    ("diverge", "table"): _diverge_table,
    ("counters", "table"): _counters_table,
    ("scenario", "table"): _scenario_table,
    ("evaluation", "table"): _evaluation_table,
    ("comparison", "table"): _comparison_table,
    ("comparison", "html"): _comparison_html,
}


def formats_of(kind: str) -> list[str]:
    """The formats a result of ``kind`` can be written in (``json`` always)."""
    return sorted({f for k, f in RENDERERS if k == kind} | {"json"})


def render(result: Result, fmt: str, **options: Any) -> Rendered:
    """``result`` in format ``fmt``: text, or (``table``) a function that prints on a rich Console.

    ``options`` are display options the renderer may use (``top``, ``sort``); others ignore them.
    """
    fn = RENDERERS.get((result.kind, fmt))
    if fn is None:
        if fmt != "json":
            raise MlmsIrError(f"a {result.kind} result has no '{fmt}' format; choose one of: {', '.join(formats_of(result.kind))}")
        fn = _json
    return fn(result, **options)
