"""Reading results back: a saved ``--format json`` file, its dict, or the object itself, as the
typed result, with one plain error when it is not what the command writes.

Every consumer of saved results (the HTML report, ``runs compare``, the store) goes through
:func:`as_result` or :func:`as_divergences`, so the checks are the type hints of the result
dataclasses (:func:`mlms_ir.results.base.build`), not validators kept beside each reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from mlms_ir.errors import ReportInputError
from mlms_ir.results.base import Result
from mlms_ir.results.divergence import DivergenceReport, DivergenceRun

R = TypeVar("R", bound=Result)

#: The command whose ``--format json`` writes each kind (for the messages).
WRITTEN_BY = {"analysis": "analyze", "run": "run", "profile": "profile", "divergence": "diverge", "diverge": "diverge",
              "counters": "profile --counters", "evaluation": "evaluate", "comparison": "runs compare",
              "scenario": "run --scenario"}


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in the file ``path`` (``what`` names the file in errors: "profile").

    Raises :class:`~mlms_ir.errors.ReportInputError` for a file that cannot be read, is not
    text, is not JSON (NaN and Infinity included: JSON has no such numbers), is nested too deeply
    or does not hold an object."""

    def no_constant(name: str) -> Any:
        raise ReportInputError(f"the {what} file '{path}' holds {name}, which is not JSON: write null for a missing figure")

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportInputError(f"cannot read the {what} file '{path}': {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ReportInputError(f"the {what} file '{path}' is not text (is it the model itself?)") from exc
    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"the {what} file '{path}' is not JSON: {exc.msg} at line {exc.lineno}") from exc
    except RecursionError as exc:
        raise ReportInputError(f"the {what} file '{path}' is nested too deeply to be a {what} result") from exc
    if not isinstance(data, dict):
        raise ReportInputError(f"the {what} file '{path}' does not hold a JSON object")
    return data


def _not_written_by(kind: str, problem: str) -> ReportInputError:
    return ReportInputError(f"the {kind} results are not what '{WRITTEN_BY.get(kind, kind)} --format json' writes: {problem}")


def as_result(obj: Any, cls: type[R], what: str | None = None) -> R | None:
    """``obj`` as a ``cls`` result: None stays None, a ``cls`` is returned as it is, a dict is read
    with ``cls.from_dict``, a path is read first (:func:`read_json`). ``what`` names the input in
    errors (default: the kind)."""
    if obj is None or isinstance(obj, cls):
        return obj
    what = what or cls.kind
    data = read_json(obj, what) if isinstance(obj, (str, Path)) else obj
    if isinstance(data, Result):
        raise ReportInputError(f"a {data.kind} result was given where {cls.kind} results were expected")
    try:
        return cls.from_dict(data)
    except ValueError as exc:  # a ResultFormatError (a value of the wrong type), or a result of another kind
        raise _not_written_by(cls.kind, str(exc)) from None


def as_divergences(obj: Any) -> list[DivergenceReport]:
    """Divergence reports from what ``diverge`` returns or writes: a :class:`DivergenceRun` (or
    its JSON, with ``reports`` and ``failed``), one :class:`DivergenceReport` (or its JSON), a
    path of either, or a list of any of these. Raises when there is none, only failed backends."""
    if obj is None:
        return []
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    out: list[DivergenceReport] = []
    failed: list[str] = []
    for item in items:
        if isinstance(item, (str, Path)):
            item = read_json(item, "divergence")
        if isinstance(item, dict) and "reports" in item:
            item = as_result(item, DivergenceRun, "divergence")
        if isinstance(item, DivergenceRun):
            out += item.reports
            failed += [f"{f.backend}: {f.error}" for f in item.failed]
        else:
            out.append(as_result(item, DivergenceReport, "divergence"))
    if not out and failed:
        raise ReportInputError("the divergence results hold no comparison, only failed backends: " + "; ".join(failed))
    return out


def result_kinds() -> dict[str, type[Result]]:
    """Every result class by its ``kind``."""
    from mlms_ir.results.analysis import Analysis
    from mlms_ir.results.comparison import Comparison
    from mlms_ir.results.counters import CountersReport
    from mlms_ir.results.evaluation import EvaluationReport
    from mlms_ir.results.profile import ProfileReport
    from mlms_ir.results.run import RunReport
    from mlms_ir.results.scenario import ScenarioReport

    return {c.kind: c for c in (Analysis, RunReport, ProfileReport, DivergenceReport, DivergenceRun, CountersReport,
                                EvaluationReport, Comparison, ScenarioReport)}


def read_result(source: str | Path | dict[str, Any]) -> Result:
    """The result a ``--format json`` file (or its dict) holds, of whatever kind its ``kind`` says."""
    data = read_json(source, "result") if isinstance(source, (str, Path)) else source
    kind = data.get("kind") if isinstance(data, dict) else None
    kinds = result_kinds()
    if kind not in kinds:
        raise ReportInputError(f"this JSON names no result kind mlms_ir writes (kind: {kind!r}); "
                               f"one of: {', '.join(sorted(kinds))}")
    return as_result(data, kinds[kind])
