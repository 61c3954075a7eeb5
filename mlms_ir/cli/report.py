"""``report``: the self-contained HTML report of a model, with a profile, divergence, runs and scenarios."""

from __future__ import annotations

import sys
from pathlib import Path

from mlms_ir.cli.common import dims_text, input_shape_list, model_path
from mlms_ir.errors import MlmsIrError


def report(
    model: str | None = None,
    profile: str | None = None,
    divergence: str | None = None,
    runs: str | None = None,
    counters: str | None = None,
    scenarios: str | None = None,
    output: str | None = None,
    input_shape: str | None = None,
    batch: int | None = None,
    dims: str | None = None,
    device: str | None = None,
    lenient: bool = False,
) -> None:
    """Write the HTML report of a model: its graph coloured by cost, time or error, tables and plots.

    Args:
        model: path of an .onnx file (default: the embedded digits-cnn model).
        profile: the JSON of `profile --format json` (per-node time, kernels).
        divergence: the JSON of `diverge --format json` (per-node error).
        runs: the JSON of `run --format json` (latency per backend and batch size).
        counters: the JSON of `profile --counters --format json` (hardware counters per node).
        scenarios: the JSON of `run --scenario ... --format json` (LoadGen's verdict, latency histogram and samples/s over time per backend).
        output: the HTML file to write (-o; default: MODEL_NAME.report.html here).
        input_shape: DIMS (a model with one input) or NAME:DIMS; repeat for several inputs.
        batch: the leading dim of every input (default: the profile's batch).
        dims: named symbolic dims, e.g. batch=8,seq=128.
        device: roofline device (see `devices`; default: the profile's).
        lenient: analyse a model that ONNX's strict shape inference rejects.
    """
    from mlms_ir.report.html import measured_inputs
    from mlms_ir.report.html import report as make_report

    if isinstance(batch, (list, tuple)):
        raise MlmsIrError("report takes one --batch value")
    path = model_path(model)
    prof, div, run, hw, scen = measured_inputs(profile or None, divergence or None, runs or None, counters or None, scenarios or None)
    if batch is None and prof is not None and isinstance(prof.batch, int) and not input_shape and not dims:
        batch = prof.batch
    hw_batch = hw.model.batch if hw is not None else None
    if batch is None and isinstance(hw_batch, int) and not input_shape and not dims:
        batch = hw_batch
    out = output or f"{Path(path).stem}.report.html"
    make_report(path, profile=prof, divergence=div, runs=run, counters=hw, scenarios=scen,
                input_shapes=input_shape_list(input_shape), batch=batch,
                dims=dims_text(dims), device=device, lenient=bool(lenient), output=out)
    print(f"wrote {out}", file=sys.stderr)


def write_html_for(model: str, html: str, **kw) -> None:
    """``--html FILE`` of analyze, profile and diverge: the report of what they computed."""
    from mlms_ir.report.html import report as make_report

    make_report(model, output=html, **kw)
    print(f"wrote {html}", file=sys.stderr)
