"""``evaluate``'s result as a table: top-1, top-5 and speed per backend, with the verdict."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from mlms_ir.report.text import plain
from mlms_ir.results.evaluation import EvaluationReport, describe_preprocess


def render_evaluation(report: EvaluationReport, console: Any) -> None:
    """The accuracy table of one evaluation (a failed backend shows its error)."""
    ref = report.reference or {}
    title = (f"{report.model.name} on {report.dataset['name']} ({report.dataset['samples']} images"
             + (f"; reference top-1 {100 * ref['top1']:.2f}%" if ref.get("top1") is not None else "") + ")")
    t = Table(title=title)
    for col in ("backend", "device", "top-1", "top-5", "images/s", "verdict"):
        t.add_column(col, justify="right" if col in ("top-1", "top-5", "images/s") else "left")
    for r in report.results:
        if r.status != "ok":
            t.add_row(r.backend, r.device, "-", "-", "-", plain(f"failed: {r.error}", style="yellow"))
            continue
        t.add_row(r.backend, r.device, f"{100 * r.top1:.2f}%" if r.top1 is not None else "-",
                  f"{100 * r.top5:.2f}%" if r.top5 is not None else "-", f"{r.images_per_s:,.0f}" if r.images_per_s else "-",
                  plain(r.verdict or "no reference accuracy", style="green" if (r.verdict or "").startswith("replicated") else "red"
                       if r.verdict else ""))
    prep = report.preprocess or {}
    notes = []
    if report.label_offset:  # the figures rank these classes only
        k, n = report.label_offset, report.dataset["classes"]
        notes.append(f"model classes {k}..{k + n - 1} scored as the labels 0..{n - 1} (--label-offset {k})")
    if prep.get("assumed"):  # a guess, not the model's own recipe: said under the figures it made
        notes.append(f"preprocessing assumed ({prep.get('source')}): {describe_preprocess({k: prep[k] for k in prep['assumed'] if k in prep})}; "
                     "pass --preprocess if the model expects otherwise")
    if notes:
        t.caption = plain("; ".join(notes))
    console.print(t)

