"""``analyze`` (static analysis), ``devices``, ``ops`` and ``version``."""

from __future__ import annotations

import sys
from pathlib import Path

from mlms_ir.cli.common import dims_text, emit, input_shape_list, model_path, write_text
from mlms_ir.errors import MlmsIrError

FORMATS = ("table", "json", "csv", "md")


def analyze(
    model: str | None = None,
    format: str | None = None,  # noqa: A002 - the flag users type
    top: int = 20,
    output: str | None = None,
    input_shape: str | None = None,
    batch: int | None = None,
    dims: str | None = None,
    device: str | None = None,
    sort: str = "macs",
    lenient: bool = False,
    html: str | None = None,
    store: str | None = None,
    solve: str | None = None,
    sweep_dim: str | None = None,
    input_value: str | None = None,
) -> None:
    """Static analysis of an ONNX model: MACs/FLOPs, params, memory, structure, roofline.

    With dims left unbound every figure is an exact formula of them (batch, seq...); --solve and
    --sweep-dim ask questions of those formulas.

    Args:
        model: path of an .onnx file (default: the embedded digits-cnn model).
        format: table (default), json, csv (one row per node) or md; inferred from --output's suffix.
        top: how many nodes the table and Markdown list.
        output: write to this file instead of stdout.
        input_shape: DIMS such as 1x3x224x224 (a model with one input) or NAME:DIMS (input:1x3x224x224); repeat for several inputs.
        batch: the leading dim of every input whose leading dim is dynamic.
        dims: named symbolic dims, e.g. batch=8,seq=128.
        device: roofline device (see `devices`), or fp32=FLOPS,bw=BYTES_PER_S, or a JSON file.
        sort: order of the top nodes: macs, flops, params, output_bytes, bytes, time, order.
        lenient: analyse a model that ONNX's strict shape inference rejects.
        html: also write the HTML report (graph, tables, plots) to this file.
        store: the results store to record this in (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
        solve: METRIC<=VALUE, e.g. "peak_activation_bytes<=24GiB": the largest value of the one dim left free (bind the others with --dims) that fits; >= gives the smallest.
        sweep_dim: NAME=START:STOP (doubling), NAME=START:STOP:STEP or NAME=V1,V2,...: the totals along that dim.
        input_value: NAME=NUMBER,... values of scalar inputs (e.g. sr=16000): an If they decide counts the branch taken.
    """
    from mlms_ir.ir.gc_pause import paused_gc
    from mlms_ir.results.analysis import SORT_KEYS

    fmt = format
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output else ""
        fmt = {"json": "json", "csv": "csv", "md": "md", "markdown": "md"}.get(suffix, "table")
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise MlmsIrError(f"unknown --format '{format}'; choose one of: {', '.join(FORMATS)}")
    if sort not in SORT_KEYS:
        raise MlmsIrError(f"unknown --sort '{sort}'; choose one of: {', '.join(SORT_KEYS)}")
    if isinstance(batch, (list, tuple)):
        raise MlmsIrError("analyze takes one --batch value; run it once per batch size")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise MlmsIrError(f"--top must be a non-negative integer, got '{top}'")
    if solve is not None and sweep_dim is not None:
        raise MlmsIrError("give --solve or --sweep-dim, not both")
    with paused_gc(last=True):  # millions of live objects and nothing to collect (mlms_ir.ir.gc_pause)
        _analyze(model, fmt, top, output, input_shape, batch, dims, device, sort, lenient, html, store, solve, sweep_dim,
                 input_value)


def _analyze(model, fmt, top, output, input_shape, batch, dims, device, sort, lenient, html, store, solve, sweep_dim,
             input_value) -> None:
    from mlms_ir.ir import load
    from mlms_ir.ir.symbolic import resolve
    from mlms_ir.passes import formulas
    from mlms_ir.passes.analyze import analyze as run_analysis
    from mlms_ir.passes.nodes_text import JsonAhead
    from mlms_ir.store import JsonPacker, resolve_store_path

    question = formulas.parse_constraint(str(solve)) if solve is not None else None
    swept = formulas.parse_sweep(str(sweep_dim)) if sweep_dim is not None else None
    graph = load(model_path(model), input_shapes=input_shape_list(input_shape), batch=batch, dims=dims_text(dims), lenient=bool(lenient),
                 input_values=dims_text(input_value))
    resolve(graph)  # our own graph: its dims become formulas in place (no copy), the report shows them
    asking = question is not None or swept is not None
    # The JSON text is written once, piece by piece, to the output (--format json) and compressed
    # for the store as it goes: a 200,000-node analysis never holds its 80 MB of text. A large
    # graph's node lines are encoded (and compressed, for the store) by a worker beside the passes.
    json_size = len(graph.nodes) * _JSON_BYTES_PER_NODE  # about; it picks the store's compression level
    packer = JsonPacker(json_size) if resolve_store_path(store) is not None and not asking else None
    ahead = None
    if not asking and (fmt == "json" or packer is not None):
        ahead = JsonAhead(text=fmt == "json", deflate_level=packer.level if packer is not None else None)
    result = run_analysis(graph, device=device, json_ahead=ahead or False)
    if asking:
        if html and swept is not None:  # the report plots the totals along the swept dim
            from mlms_ir.report.html import write_html

            write_html(html, result, graph, sweep=(swept[0], formulas.sweep(result, swept[0], swept[1])))
            print(f"wrote {html}", file=sys.stderr)
        _ask(result, str(solve) if question is not None else None, swept, fmt, output)
        return
    from mlms_ir.cli.runs import record
    from mlms_ir.store import records_from_analysis

    head = result.head_dict() if packer is not None or fmt == "json" else None  # once, for the output and the store
    failed: MlmsIrError | None = None
    if fmt == "json":
        try:
            _write_json(result, output, packer, head)
        except MlmsIrError as exc:  # the output cannot be written: the result is still recorded
            failed = exc
            if packer is not None:  # from the start: it may have had part of the text
                packer = JsonPacker(json_size)
                result.write_json(packer, head=head)
    else:
        # The table first: the user reads it while a large graph's node lines are encoded and
        # compressed for the store by the worker.
        try:
            emit(result, fmt, output, top=top, sort=sort)
        except MlmsIrError as exc:  # as above
            failed = exc
        if packer is not None:
            result.write_json(packer, head=head)
    if packer is not None:
        record(store, lambda: records_from_analysis(result, {"device": device}, payload_zlib=packer.finish(), head=head))
    if failed is not None:
        raise failed
    if html:
        from mlms_ir.report.html import write_html

        write_html(html, result, graph)
        print(f"wrote {html}", file=sys.stderr)


#: About how much JSON text an analysis writes per node (its compression level depends on it).
_JSON_BYTES_PER_NODE = 420


class _Tee:
    """A sink for ``write_json`` that writes each piece to ``fh`` and to ``packer`` (if any).
    Text a worker encoded and compressed goes to the packer compressed, and to ``fh`` as text
    (:meth:`NodesText.copy_to <mlms_ir.passes.nodes_text.NodesText.copy_to>`)."""

    def __init__(self, fh, packer) -> None:
        self.fh, self.packer = fh, packer
        self.text_sink = fh
        if packer is not None:
            self.write_deflated = packer.write_deflated

    def write(self, text: str) -> None:
        self.fh.write(text)
        if self.packer is not None:
            self.packer.write(text)


def _write_json(result, output: str | None, packer, head: dict) -> None:
    """``--format json``, written piece by piece to the file or stdout (no renderer, no rich);
    ``head``: the result's :meth:`~mlms_ir.results.analysis.Analysis.head_dict`."""
    if not output:
        result.write_json(_Tee(sys.stdout, packer), head=head)
        return
    try:
        with open(output, "w") as fh:
            result.write_json(_Tee(fh, packer), head=head)
    except OSError as exc:
        raise MlmsIrError(f"cannot write '{output}': {exc.strerror or exc}") from exc
    print(f"wrote {output}", file=sys.stderr)


def _ask(result, solve: str | None, swept: tuple[str, list[int]] | None, fmt: str, output: str | None) -> None:
    """Answer --solve or --sweep-dim from the analysis' formulas (nothing is recorded)."""
    import json

    from mlms_ir.passes import formulas
    from mlms_ir.results.analysis import SCHEMA_VERSION
    from mlms_ir.results.base import json_safe

    if solve is not None:
        answer = formulas.solve(result, solve)
        if fmt == "json":
            write_text(json.dumps(json_safe({"schema_version": SCHEMA_VERSION, "model": result.model.name,
                                         "bindings": result.bindings, "solve": answer.to_dict()}), indent=2) + "\n", output)
            return
        from mlms_ir.report.text import render_solution as render

        args = (answer,)
    else:
        assert swept is not None
        rows = formulas.sweep(result, swept[0], swept[1])
        if fmt == "json":
            write_text(json.dumps(json_safe({"schema_version": SCHEMA_VERSION, "model": result.model.name,
                                         "bindings": result.bindings, "sweep": {"dim": swept[0], "rows": rows}}), indent=2) + "\n", output)
            return
        if fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            write_text(buf.getvalue(), output)
            return
        from mlms_ir.report.text import render_sweep as render

        args = (result, swept[0], rows)
    from rich.console import Console

    if output:
        try:
            with open(output, "w") as fh:
                render(*args, console=Console(file=fh, width=160, color_system=None))
        except OSError as exc:
            raise MlmsIrError(f"cannot write '{output}': {exc.strerror or exc}") from exc
        print(f"wrote {output}", file=sys.stderr)
    else:
        render(*args)


def devices() -> None:
    """List the roofline devices known to `analyze --device`."""
    from mlms_ir.report.text import default_console
    from rich.table import Table

    from mlms_ir.passes.roofline import known_devices
    from mlms_ir.report.text import human_count

    t = Table(title="roofline devices (peak dense FLOP/s by dtype, DRAM bandwidth)")
    for col in ("name", "description", "fp32", "fp16/bf16", "int8", "bandwidth"):
        t.add_column(col)
    for name, d in sorted(known_devices().items()):
        half = d.peak_flops.get("fp16") or d.peak_flops.get("bf16")
        t.add_row(name, d.description, human_count(d.peak("fp32"), "FLOP/s"), human_count(half, "FLOP/s") if half else "-",
                  human_count(d.peak_flops.get("int8"), "OP/s") if "int8" in d.peak_flops else "-",
                  human_count(d.bandwidth_bytes_per_s, "B/s"))
    default_console().print(t)


def ops(domain: str | None = None) -> None:
    """List every op with a cost formula (the counting convention), optionally for one domain.

    Args:
        domain: list only this domain's ops (ai.onnx, com.microsoft, ...).
    """
    from mlms_ir.report.text import default_console
    from rich.table import Table

    from mlms_ir.passes.registry import CONVENTION_VERSION, entries

    t = Table(title=f"cost formulas (convention {CONVENTION_VERSION})")
    for col in ("domain", "op", "category", "formula"):
        t.add_column(col, overflow="fold")
    for e in entries():
        if domain is not None and e.domain != ("" if domain in ("ai.onnx", "") else domain):
            continue
        t.add_row(e.domain or "ai.onnx", e.op_type, e.category, e.formula)
    default_console().print(t)


def version() -> None:
    """Print the versions of mlms_ir and its core dependencies."""
    import networkx
    import numpy
    import onnx

    from mlms_ir import __version__

    print(f"mlms_ir {__version__} (onnx {onnx.__version__}, networkx {networkx.__version__}, numpy {numpy.__version__})")
