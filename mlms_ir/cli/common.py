"""What the CLI verbs share: naming the model, the output, the format, and reading flag values.

Every function here is a thin adapter between Fire's values and the library; none computes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mlms_ir.errors import MlmsIrError
from mlms_ir.ir.shapes import dims_text, input_shape_list

__all__ = ["backend_names", "batch_list", "dims_text", "emit", "input_shape_list", "model_path", "nonnegative_float", "output_format", "positive_int",
           "render_to", "session_options", "split_list", "write_text"]


def model_path(model: str | None) -> str:
    """The file a verb's MODEL names: a path, ``zoo:NAME`` (built into the cache on first use),
    or nothing for the embedded digits-cnn model."""
    if model is None or str(model) == "":
        from mlms_ir.zoo import builtin_path

        return str(builtin_path())
    if str(model).startswith("zoo:"):
        from mlms_ir.zoo import resolve

        return str(resolve(str(model)))
    return str(model)


def write_text(text: str, output: str | None) -> None:
    if output:
        try:
            Path(output).write_text(text)
        except OSError as exc:
            raise MlmsIrError(f"cannot write '{output}': {exc.strerror or exc}") from exc
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def split_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def backend_names(value, flag: str = "--backends") -> list[str]:
    """The backend names a flag gives, once each is a known backend: a misspelt name stops the
    command before anything runs (a known backend that cannot run here, or not on the device
    asked for, is reported by the run itself)."""
    from mlms_ir.backends import registry

    names = split_list(value)
    if not names:
        raise MlmsIrError(f"{flag} names no backend (see `mlms_ir backends`)")
    registry.check(names)
    return names


def batch_list(value) -> list[int | None]:
    if value is None:
        return [None]
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out: list[int | None] = []
    for v in items:
        try:
            b = int(str(v).strip())
        except ValueError:
            raise MlmsIrError(f"--batch takes integers such as 1,8; got '{v}'") from None
        if b <= 0:
            raise MlmsIrError(f"--batch values must be positive, got {b}")
        out.append(b)
    return out


def session_options(names: list[str], opt: str | None, python: str | None, timeout: float | None,
                    threads: int | None = None) -> dict[str, dict]:
    """Session options per backend name (as typed): --opt and --threads for ORT, --python/--worker-timeout
    for agents."""
    from mlms_ir.backends import registry
    from mlms_ir.backends.worker import WorkerBackend

    per_backend: dict[str, str] = {}
    default_python = None
    if python:
        for part in str(python).split(","):
            key, sep, val = part.partition("=")
            if sep:
                per_backend[key.strip()] = val.strip()
            else:
                default_python = part.strip()
    options: dict[str, dict] = {}
    for name in names:
        try:
            be = registry.get(name)
        except MlmsIrError:
            continue  # recorded as unavailable by the run
        o: dict = {}
        if opt and be.name == "ort":
            o["opt"] = opt
        if threads is not None and be.name == "ort":
            o["threads"] = threads
        if isinstance(be, WorkerBackend):
            py = per_backend.get(name, per_backend.get(be.name, default_python))
            if py:
                o["python"] = py
            if timeout:
                o["timeout"] = float(timeout)
        options[name] = o
    if threads is not None and not any(o.get("threads") for o in options.values()):
        raise MlmsIrError("--threads sets onnxruntime's intra-op threads, and no backend here is ort")
    return options


def output_format(fmt: str | None, output: str | None) -> str:
    if fmt is None:
        fmt = "json" if output and Path(output).suffix.lower() == ".json" else "table"
    fmt = str(fmt).lower()
    if fmt not in ("table", "json"):
        raise MlmsIrError(f"unknown --format '{fmt}'; choose table or json")
    return fmt


def positive_int(value, flag: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MlmsIrError(f"{flag} must be an integer >= {minimum}, got '{value}'")
    return value


def nonnegative_float(value, flag: str) -> float:
    """A non-negative number given on the command line."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MlmsIrError(f"{flag} must be a number, got '{value}'") from None
    if not v >= 0 or v == float("inf"):
        raise MlmsIrError(f"{flag} must be a finite number >= 0, got '{value}'")
    return v


def positive_float(value, flag: str, unit: str = "") -> float:
    """A finite number > 0 given on the command line (``unit`` names what it counts, for the message)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (v > 0 and math.isfinite(v)):
        raise MlmsIrError(f"{flag} must be a positive number{' of ' + unit if unit else ''}, not '{value}'")
    return v


def render_to(fn, output: str | None) -> None:
    """Call ``fn`` with a rich Console on ``output`` (160 columns, no colour), or on stdout (a
    terminal's width; piped, wide enough to keep every column)."""
    from rich.console import Console

    from mlms_ir.report.text import default_console

    if output:
        try:
            with open(output, "w") as fh:
                fn(Console(file=fh, width=160, color_system=None))
        except OSError as exc:
            raise MlmsIrError(f"cannot write '{output}': {exc.strerror or exc}") from exc
        print(f"wrote {output}", file=sys.stderr)
    else:
        fn(default_console())


def emit(result, fmt: str, output: str | None = None, **options) -> None:
    """Write ``result`` in format ``fmt`` to ``output`` (stdout when None), with the renderer
    :func:`mlms_ir.report.select.render` picks: every verb ends here."""
    from mlms_ir.report.select import render

    out = render(result, fmt, **options)
    if isinstance(out, str):
        write_text(out, output)
    else:
        render_to(out, output)
