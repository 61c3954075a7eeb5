"""PyTorch to ONNX: modules, TorchScript files, torchvision and timm models, each checked numerically.

Every conversion goes the same way (:func:`from_torch`):

1. the module is put in eval mode and run under ``torch.no_grad()`` on the example inputs;
2. it is exported with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which needs
   ``onnxscript``) and, with ``exporter="auto"``, with the legacy TorchScript exporter
   (``dynamo=False``, opset 17) when that fails, recording why;
3. the ONNX model is run with onnxruntime on seeded random inputs, at the example batch size and
   (with a dynamic batch) at a second one, and compared with the module on the same inputs: a
   difference beyond ``atol + rtol * |torch|`` is a :class:`~mlms_ir.converters.ConversionError`
   (in ``auto`` mode the next exporter is tried first);
4. provenance goes into the model's ``metadata_props`` (keys prefixed ``mlms_ir.``) and the model
   is written as one ``.onnx`` file, or, when its weights exceed
   :data:`EXTERNAL_DATA_THRESHOLD_BYTES`, as ``NAME.onnx`` plus one ``NAME.onnx.data`` beside it.

torch (and torchvision, onnxscript, timm) are imported only when a converter runs; without them a
:class:`~mlms_ir.errors.MissingExtraError` names the extra to install (``pip install 'mlms_ir[torch]'``,
``'mlms_ir[timm]'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir._lazy import lazy_import, onnxruntime
from mlms_ir.converters import ConversionError, patched
from mlms_ir.converters import torchvision_spec as spec
from mlms_ir.comparator import check_close, check_same_shape
from mlms_ir.files import sha256_of

log = logging.getLogger(__name__)

#: ``exporter`` values: try dynamo then legacy, or one of them only.
EXPORTERS = ("auto", "dynamo", "legacy")
#: The oldest opset a conversion may ask for (torch's legacy exporter's oldest).
MIN_OPSET = 7
#: Opset of the legacy exporter (the dynamo exporter uses its own native opset unless told).
LEGACY_OPSET = 17
#: Models whose weights exceed this are written with their weights in one external data file.
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30
#: Tensors smaller than this stay inside the .onnx file when the weights go to external data.
EXTERNAL_TENSOR_MIN_BYTES = 1024
#: Seed of the random inputs of the numerical check.
CHECK_SEED = 0
#: Prefix of the provenance keys written into ONNX ``metadata_props``.
METADATA_PREFIX = "mlms_ir."
#: Tasks whose torchvision models take a list of images: exported for one image, no dynamic batch.
DETECTION_TASKS = ("object-detection", "instance-segmentation", "keypoint-detection")
#: Default absolute tolerance of the check for detection models (scores after thresholds, NMS and top-k).
DETECTION_ATOL = 1e-2
#: torchvision's int8 models are also allowed this many 8-bit steps of each output's range.
INT8_STEPS = 2
#: Default absolute tolerance of the check for the optical-flow models (in pixels): RAFT refines its
#: flow in 12 recurrent steps through grid sampling, which accumulates float error.
FLOW_ATOL = 1e-3
#: Most exporter warnings kept in a result.
MAX_WARNINGS = 20

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclasses.dataclass
class ConversionResult:
    """What a conversion wrote and how well the ONNX model matches its source.

    ``max_abs_error`` is the largest absolute difference between the source module's and
    onnxruntime's outputs over every checked batch size (``checked_batches``; None and empty when
    the check was turned off). ``fallback_reason`` says why the dynamo exporter was not used when
    ``exporter="auto"`` fell back to the legacy one. ``provenance`` holds what was written into the
    model's ``metadata_props`` (without the ``mlms_ir.`` prefix).
    """

    path: Path
    exporter: str
    fallback_reason: str | None
    max_abs_error: float | None
    checked_batches: list[int]
    provenance: dict[str, str]
    warnings: list[str]

    @property
    def files(self) -> list[Path]:
        """The files written: the model and, for a large model, its external data."""
        data = self.path.with_name(self.path.name + ".data")
        return [self.path] + ([data] if data.is_file() else [])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["files"] = {p.name: p.stat().st_size for p in self.files if p.is_file()}
        return d

    def summary(self) -> str:
        """One line: path, exporter, max abs error."""
        ex = self.exporter + (" (fallback: " + _shorten(self.fallback_reason, 120) + ")" if self.fallback_reason else "")
        if self.max_abs_error is None:
            err = "not checked"
        else:
            err = f"{self.max_abs_error:.3g} (batch {', '.join(str(b) for b in self.checked_batches)})"
        return f"{self.path}: exporter {ex}, max abs error {err}"


class _CheckFailed(Exception):
    """The exported model does not match the module (internal: becomes a ConversionError)."""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _torch():
    return lazy_import("torch")


def _shorten(text: str | None, n: int = 300) -> str:
    text = _ANSI.sub("", text or "").strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def _reason(exc: BaseException) -> str:
    """One line saying why an export failed: the innermost cause's first meaningful line."""
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    lines = [ln.strip() for ln in _ANSI.sub("", str(inner)).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return _shorten(f"{type(inner).__name__}: {first}" if first else type(inner).__name__)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _flatten(obj: Any) -> list[Any]:
    """Tensors of a module's output, in the order the exporters flatten them (tuples, lists, dict values)."""
    torch = _torch()
    if obj is None:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in _flatten(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _flatten(v)]
    raise ConversionError(f"the module returned a {type(obj).__name__}; only tensors, tuples, lists and dicts of tensors convert")


def _default_output_names(obj: Any) -> list[str]:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return ["output"]
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return [str(k) for k in obj]
    return [f"output_{i}" for i in range(len(_flatten(obj)))]


@contextlib.contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    """The fused MultiheadAttention fast path has no legacy-exporter symbolic (torchvision ViTs)."""
    torch = _torch()
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)


@contextlib.contextmanager
def _no_download() -> Iterator[None]:
    """Make any attempt of torch.hub to download (weights, backbones) an error instead."""
    hub = lazy_import("torch.hub")

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise ConversionError(
            f"converting would download {url}; mlms_ir never downloads while converting: fetch the weights "
            "first (mlms_ir zoo build NAME --weights) or pass a local .pth file"
        )

    with patched(hub, "download_url_to_file", refuse):
        yield


def _flush_c_stdio() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def _quiet_output() -> Iterator[None]:
    """Keep the exporters' console output off the terminal: the dynamo exporter prints whole graphs on
    failure, and the legacy one logs the TorchScript graph from C++ (so file descriptors 1 and 2 are
    redirected too). What was printed is logged at DEBUG level."""
    import io

    buf = io.StringIO()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as sink:
        saved: list[tuple[int, int]] = []
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                continue
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield
        finally:
            _flush_c_stdio()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = buf.getvalue() + sink.read().decode("utf-8", errors="replace")
            if text.strip():
                log.debug("exporter output (last 4000 characters): %s", text[-4000:])


@contextlib.contextmanager
def _record_warnings(sink: list[str]) -> Iterator[None]:
    """Collect the exporters' warnings (deduplicated, first line) into ``sink`` instead of printing them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                first = (str(w.message).strip().splitlines() or [""])[0]
                text = _shorten(f"{w.category.__name__}: {first}", 240)
                if text not in sink and len(sink) < MAX_WARNINGS:
                    sink.append(text)


def _as_inputs(example_inputs: Any) -> tuple:
    torch = _torch()
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)) and example_inputs and all(isinstance(t, torch.Tensor) for t in example_inputs):
        return tuple(example_inputs)
    raise ConversionError("example_inputs must be a tensor or a non-empty tuple of tensors (one per input of forward)")


def _inputs_from_shapes(inputs: Any) -> tuple:
    """Tensors as given, or seeded random float32 tensors for shapes (``(1, 3, 224, 224)`` or a list of them)."""
    torch = _torch()
    if isinstance(inputs, torch.Tensor) or (
        isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs)
    ):
        return _as_inputs(inputs)

    def is_shape(s: Any) -> bool:
        ints = all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in s) if isinstance(s, (list, tuple)) else False
        return ints and len(s) > 0

    shapes = [inputs] if is_shape(inputs) else list(inputs) if isinstance(inputs, (list, tuple)) else []
    if not shapes or not all(is_shape(s) for s in shapes):
        raise ConversionError(
            f"inputs must be example tensors or shapes of positive ints such as (1, 3, 224, 224), got {inputs!r}"
        )
    g = torch.Generator().manual_seed(CHECK_SEED)
    return tuple(torch.randn(*s, generator=g) for s in shapes)


def _random_like(inputs: Sequence[Any], batch: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded random arrays with the example inputs' dtypes and shapes (leading dim ``batch`` when given)."""
    out = []
    for t in inputs:
        a = t.detach().cpu().numpy()
        shape = a.shape if batch is None else (batch, *a.shape[1:])
        if a.dtype == np.bool_:
            out.append(rng.integers(0, 2, size=shape).astype(np.bool_))
        elif np.issubdtype(a.dtype, np.integer):
            lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 1)
            out.append(rng.integers(lo, hi + 1, size=shape).astype(a.dtype))
        else:
            out.append(rng.standard_normal(size=shape).astype(a.dtype))
    return out


# ----------------------------------------------------------------------------------------------
# exporters
# ----------------------------------------------------------------------------------------------
def _export_legacy(module: Any, args: tuple, path: Path, *, input_names: list[str], output_names: list[str],
                   dynamic_batch: bool, opset: int | None) -> None:
    """``torch.onnx.export(..., dynamo=False)``: the TorchScript (tracing) exporter."""
    torch = _torch()
    axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
    with _quantized_chunk_symbolic(opset or LEGACY_OPSET):
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=opset or LEGACY_OPSET, do_constant_folding=True,
            input_names=input_names, output_names=output_names, dynamic_axes=axes,
        )


_CHUNK_LOCK = threading.Lock()
_CHUNK_REGISTRATIONS: dict[int, list[Any]] = {}  # opset -> [our ConstantChunk symbolic, users]


@contextlib.contextmanager
def _quantized_chunk_symbolic(opset: int) -> Iterator[None]:
    """Let the legacy exporter chunk a quantized tensor (torchvision's int8 ShuffleNetV2 channel split).

    The legacy exporter carries an int8 tensor as a (values, scale, zero point) tuple and most of its
    symbolics unpack it (``symbolic_helper.quantized_args``), but ``prim::ConstantChunk``, which a
    traced ``x.chunk(2, dim=1)`` becomes, slices the tuple as if it were a tensor and the export
    fails ("ONNX symbolic expected the output of onnx::Slice ... to be a quantized tensor"). While
    exporting, this registers a ConstantChunk that dequantizes, chunks, and quantizes every piece
    again with the input's scale and zero point: exact, since a chunk of an int8 tensor keeps its
    quantization. Float inputs take torch's own symbolic unchanged; a symbolic the user registered
    for ConstantChunk is left alone.

    Safe across threads and when nested, as :func:`mlms_ir.converters.patched` is: torch's registry
    is global, so the first caller in registers the symbolic, later callers share it, and the last
    one out unregisters it (unless something else replaced it meanwhile). torch's legacy exporter
    itself keeps global state, so concurrent legacy exports may still interfere in torch.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import registration
        from torch.onnx._internal.torchscript_exporter import symbolic_helper as sh
    except ImportError:  # another torch layout: export as torch does
        yield
        return
    name = "prim::ConstantChunk"
    with _CHUNK_LOCK:
        entry = _CHUNK_REGISTRATIONS.get(opset)
        if entry is None:
            group = registration.registry.get_function_group(name)
            base = group.get(opset) if group is not None else None
            if base is not None and not group._functions.overridden(opset):  # noqa: SLF001 - no public "is overridden"
                symbolic = _quantized_constant_chunk(base, sh)
                registration.registry.register(name, opset, symbolic, custom=True)
                entry = _CHUNK_REGISTRATIONS[opset] = [symbolic, 0]
        if entry is not None:
            entry[1] += 1
    if entry is None:  # no symbolic to wrap, or the user's own: export as torch does
        yield
        return
    try:
        yield
    finally:
        with _CHUNK_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _CHUNK_REGISTRATIONS[opset]
                group = registration.registry.get_function_group(name)
                if group is not None and group.get(opset) is entry[0]:
                    registration.registry.unregister(name, opset)


def _quantized_constant_chunk(base: Any, sh: Any) -> Any:
    """A ConstantChunk symbolic that handles quantized inputs and hands float ones to ``base``."""

    def constant_chunk(g: Any, self: Any, chunks: int, dim: int) -> Any:
        if not sh._is_tuple_construct(self):  # noqa: SLF001 - not a quantized tensor
            return base(g, self, chunks, dim)
        x, scale, zero_point, axis = sh.dequantize_helper(g, self)
        return [sh.quantize_helper(g, piece, scale, zero_point, axis) for piece in base(g, x, chunks, dim)]

    return constant_chunk


def _export_dynamo(module: Any, args: tuple, path: Path, *, input_names: list[str], output_names: list[str],
                   dynamic_batch: bool, opset: int | None) -> None:
    """``torch.onnx.export(..., dynamo=True)``: the torch.export-based exporter (needs onnxscript)."""
    torch = _torch()
    lazy_import("onnxscript")
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        kwargs["dynamic_shapes"] = tuple({0: batch} for _ in args)
    if opset is not None:
        kwargs["opset_version"] = opset
    torch.onnx.export(
        module, args, str(path), dynamo=True, external_data=True, verbose=False,
        input_names=input_names, output_names=output_names, **kwargs,
    )


_EXPORT = {"dynamo": "_export_dynamo", "legacy": "_export_legacy"}


# ----------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------
def _ort_session(path: Path):
    ort = onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _compare(name: str, ref: np.ndarray, got: np.ndarray, batch: int, atol: float, rtol: float, int8_steps: int = 0) -> float:
    return check_close(name, ref, got, batch=batch, atol=atol, rtol=rtol, reference="torch", error=_CheckFailed,
                       int8_steps=int8_steps)


def _check(module: Any, path: Path, inputs: tuple, input_names: list[str], output_names: list[str],
           batches: list[int | None], atol: float, rtol: float, *, unordered: bool = False,
           int8_steps: int = 0) -> tuple[float, list[str]]:
    """Run ``module`` and onnxruntime on the same seeded random inputs; return the max abs error and notes.

    With ``unordered`` (detection outputs: lists of detections whose order and near-tied members may
    differ between two correct implementations) every output must have the same shape, 1-D float
    outputs (scores) are compared after sorting, and the others only by shape (said in the notes).
    """
    torch = _torch()
    try:
        sess = _ort_session(path)
    except Exception as exc:  # noqa: BLE001 - any ORT failure means the export is unusable
        raise _CheckFailed(f"onnxruntime cannot load the exported model: {_reason(exc)}") from exc
    ort_inputs = [i.name for i in sess.get_inputs()]
    unknown = [n for n in ort_inputs if n not in input_names]
    if unknown:
        raise _CheckFailed(f"the exported model has inputs {unknown} that the module does not ({input_names})")
    rng = np.random.default_rng(CHECK_SEED)
    max_err = 0.0
    notes: list[str] = []
    for batch in batches:
        arrays = _random_like(inputs, batch, rng)
        b = batch if batch is not None else (arrays[0].shape[0] if arrays[0].ndim else 1)
        with torch.no_grad(), _mha_fastpath_disabled():
            ref = [t.detach().cpu().numpy() for t in _flatten(module(*[torch.from_numpy(a) for a in arrays]))]
        feeds = {n: a for n, a in zip(input_names, arrays, strict=True) if n in ort_inputs}
        try:
            got = [np.asarray(g) for g in sess.run(None, feeds)]
        except Exception as exc:  # noqa: BLE001
            raise _CheckFailed(f"onnxruntime failed to run the exported model at batch {b}: {_reason(exc)}") from exc
        if len(got) != len(ref):
            raise _CheckFailed(f"the exported model has {len(got)} outputs, the module {len(ref)}")
        for name, r, g in zip(output_names, ref, got, strict=True):
            if not unordered:
                max_err = max(max_err, _compare(name, r, g, b, atol, rtol, int8_steps))
            else:
                check_same_shape(name, r, g, batch=b, reference="torch", error=_CheckFailed)
                if r.ndim == 1 and np.issubdtype(r.dtype, np.floating):
                    max_err = max(max_err, _compare(name, np.sort(r), np.sort(g), b, atol, rtol, int8_steps))
                else:
                    _note(notes, f"output '{name}' was compared by shape only (detections may come in another order)")
            if r.size == 0:
                _note(notes, f"output '{name}' is empty on the random inputs, so the check says nothing about it")
            elif r.size > 1 and np.all(r == r.flat[0]):
                _note(notes, f"output '{name}' is constant ({r.flat[0].item()!r}) on the random inputs, "
                             "so the check says little about it")
    return max_err, notes


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _initializer_bytes(proto: Any) -> int:
    from onnx import helper

    total = 0
    for t in proto.graph.initializer:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            n = 1
            for d in t.dims:
                n *= d
            total += n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def _write_final(scratch_model: Path, out: Path, metadata: Mapping[str, str]) -> None:
    """Write the checked model to ``out`` with ``metadata`` added; external data in one file when large."""
    import onnx

    proto = onnx.load(str(scratch_model), load_external_data=True)
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for k, v in [*keep, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    data = out.with_name(out.name + ".data")
    for p in (out, data):
        if p.exists():
            p.unlink()
    if _initializer_bytes(proto) > EXTERNAL_DATA_THRESHOLD_BYTES:
        onnx.save(proto, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
                  size_threshold=EXTERNAL_TENSOR_MIN_BYTES)
        with contextlib.suppress(OSError):
            os.chmod(data, 0o644)  # onnx creates it 0600
    else:
        onnx.save(proto, str(out))


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def from_torch(
    module: Any,
    example_inputs: Any,
    out: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    opset: int | None = None,
    exporter: str = "auto",
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    provenance: Mapping[str, Any] | None = None,
    unordered_outputs: bool = False,
    int8_steps: int = 0,
) -> ConversionResult:
    """Convert a ``torch.nn.Module`` to ONNX at ``out`` and check it numerically against the module.

    Args:
        module: the module (or a ``torch.jit.ScriptModule``); it runs in eval mode under
            ``torch.no_grad()`` and its training flag is restored afterwards.
        example_inputs: a tensor or a tuple of tensors, one per positional argument of ``forward``.
        out: the ``.onnx`` file to write (its folder is created).
        input_names: graph input names (default ``input``, or ``input_0``, ``input_1``, ...).
        output_names: graph output names (default ``output``, ``output_0``, ... or a dict output's keys).
        dynamic_batch: make dim 0 of every input and output the symbolic dim ``batch``, and check at a
            second batch size.
        opset: the ONNX opset (default: 17 for the legacy exporter, the dynamo exporter's own).
        exporter: ``auto`` (dynamo, then legacy when it fails), ``dynamo`` or ``legacy``.
        check: compare onnxruntime with the module on seeded random inputs.
        atol: absolute tolerance of the check; an element fails when ``|onnx - torch| > atol + rtol * |torch|``.
        rtol: relative tolerance of the check.
        provenance: extra facts for the model's ``metadata_props`` (``source``, ``weights``, ...);
            keys are prefixed with ``mlms_ir.``.
        unordered_outputs: the outputs are lists of detections whose order (and near-tied members) two
            correct implementations may give differently: shapes must agree, 1-D float outputs (scores) are
            compared after sorting, and the other outputs only by shape (said in the result's warnings).
        int8_steps: for int8 (quantized) models, whose kernels may round differently: also accept
            differences up to this many 8-bit steps of each output's range (``steps * range / 255``).

    Returns:
        A :class:`ConversionResult`.

    Raises:
        ConversionError: the module does not run on the example inputs, both exporters failed, or the
            exported model differs from the module beyond the tolerance.
        MissingExtraError: torch is not installed.
    """
    torch = _torch()
    if exporter not in EXPORTERS:
        raise ConversionError(f"unknown exporter '{exporter}'; one of: {', '.join(EXPORTERS)}")
    if opset is not None:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
        if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
            raise ConversionError(f"opset must be an integer from {MIN_OPSET} to {newest} (the installed onnx's newest), not '{opset}'")
    inputs = _as_inputs(example_inputs)
    out = Path(out).expanduser()
    default_names = ["input"] if len(inputs) == 1 else [f"input_{i}" for i in range(len(inputs))]
    in_names = list(input_names) if input_names else default_names
    if len(in_names) != len(inputs):
        raise ConversionError(f"{len(in_names)} input names for {len(inputs)} example inputs")
    if dynamic_batch:
        dims0 = {int(t.shape[0]) if t.ndim else None for t in inputs}
        if None in dims0 or len(dims0) != 1:
            raise ConversionError(
                "dynamic_batch needs every example input to have the same leading (batch) dim; pass dynamic_batch=False")
    was_training = bool(getattr(module, "training", False))
    module.eval()
    collected: list[str] = []
    try:
        try:
            with torch.no_grad(), _mha_fastpath_disabled(), _record_warnings(collected):
                reference = module(*inputs)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"the module fails on the example inputs: {_reason(exc)}") from exc
        ref_flat = _flatten(reference)
        out_names = list(output_names) if output_names else _default_output_names(reference)
        if len(out_names) != len(ref_flat):
            raise ConversionError(f"{len(out_names)} output names for {len(ref_flat)} outputs of the module")
        batch = int(inputs[0].shape[0]) if dynamic_batch else None
        export_args = inputs
        if dynamic_batch and batch == 1:
            # torch.export specialises a size-1 dim; export at batch 2 (the check covers batch 1 and 3)
            export_args = tuple(torch.cat([t, t]) for t in inputs)
        batches: list[int | None] = [batch, batch + 2] if dynamic_batch and batch is not None else [None]
        order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
        failures: list[str] = []
        out.parent.mkdir(parents=True, exist_ok=True)
        for ex in order:
            scratch = Path(tempfile.mkdtemp(prefix=".mlms_ir_export_", dir=out.parent))
            tmp = scratch / "model.onnx"
            try:
                try:
                    with torch.no_grad(), _mha_fastpath_disabled(), _record_warnings(collected), _quiet_output():
                        getattr(sys.modules[__name__], _EXPORT[ex])(
                            module, export_args, tmp, input_names=in_names, output_names=out_names,
                            dynamic_batch=dynamic_batch, opset=opset)
                    if not tmp.is_file():
                        raise RuntimeError(f"the {ex} exporter wrote no file")
                    got = opset_of(tmp)
                    if opset is not None and got != opset:
                        # the dynamo exporter writes its own opset when it cannot convert to the one asked
                        raise RuntimeError(f"it wrote opset {got}, not the opset {opset} asked for")
                except ConversionError:
                    raise
                except Exception as exc:  # noqa: BLE001 - exporters raise anything; recorded and reported
                    failures.append(f"{ex} export failed: {_reason(exc)}")
                    log.info("%s export failed", ex, exc_info=True)
                    continue
                err: float | None = None
                if check:
                    try:
                        err, notes = _check(module, tmp, inputs, in_names, out_names, batches, atol, rtol,
                                            unordered=unordered_outputs, int8_steps=int8_steps)
                        collected.extend(n for n in notes if n not in collected)
                    except _CheckFailed as exc:
                        failures.append(f"{ex} export does not match torch: {exc}")
                        continue
                example_batch = int(inputs[0].shape[0]) if inputs[0].ndim else 1
                checked = [b if b is not None else example_batch for b in batches] if check else []
                prov = _provenance(torch, module, ex, opset_of(tmp), err, checked, failures, provenance)
                _write_final(tmp, out, {METADATA_PREFIX + k: v for k, v in prov.items()})
                return ConversionResult(
                    path=out, exporter=ex, fallback_reason="; ".join(failures) or None, max_abs_error=err,
                    checked_batches=checked, provenance=prov, warnings=collected,
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        what = "both exporters failed" if len(order) > 1 else f"the {order[0]} exporter failed"
        source = (provenance or {}).get("source") or f"{type(module).__name__} module"
        raise ConversionError(f"cannot convert {source} to ONNX: {what}: {'; '.join(failures)}")
    finally:
        module.train(was_training)


def opset_of(path: str | os.PathLike[str]) -> int | None:
    """The default-domain opset of an ONNX file (external data not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _provenance(torch: Any, module: Any, exporter: str, opset: int | None, err: float | None, checked: list[int],
                failures: list[str], extra: Mapping[str, Any] | None) -> dict[str, str]:
    import mlms_ir

    cls = type(module)
    prov: dict[str, str] = {
        "framework": "pytorch",
        "source": f"torch.nn.Module {cls.__module__}.{cls.__qualname__}",
        "weights": "the module's own",
    }
    for k, v in (extra or {}).items():
        prov[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    prov.update({
        "framework_version": str(torch.__version__),
        "exporter": exporter,
        "opset": str(opset),
        "max_abs_error": "not checked" if err is None else repr(err),
        "checked_batches": ",".join(str(b) for b in checked),
        "converted_at": _now(),
        "mlms_ir_version": mlms_ir.__version__,
    })
    tv = sys.modules.get("torchvision")
    if tv is not None:
        prov.setdefault("torchvision_version", str(tv.__version__))
    if failures:
        prov["fallback_reason"] = "; ".join(failures)
    return prov


def from_torchscript(
    path: str | os.PathLike[str],
    inputs: Any,
    out: str | os.PathLike[str],
    **kwargs: Any,
) -> ConversionResult:
    """Convert a TorchScript file (``torch.jit.save``) to ONNX; see :func:`from_torch`.

    **Security**: ``torch.jit.load`` executes the program stored in the file. Convert only files
    you trust, and only on a user's explicit request; mlms_ir never loads TorchScript by itself.

    Args:
        path: the TorchScript file.
        inputs: example tensors, or their shapes (``(1, 3, 224, 224)``, or a list of shapes for
            several inputs; seeded random float32 values). TorchScript files do not record input
            shapes, so they must be given.
        out: the ``.onnx`` file to write.
        **kwargs: passed to :func:`from_torch` (``input_names``, ``dynamic_batch``, ``exporter``, ...).
    """
    torch = _torch()
    src = Path(path).expanduser()
    if not src.is_file():
        raise ConversionError(f"no TorchScript file at '{src}'")
    example = _inputs_from_shapes(inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": asked for explicitly
            module = torch.jit.load(str(src), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a bad file raises anything
        raise ConversionError(f"cannot load '{src}' as TorchScript (torch.jit.save output): {_reason(exc)}") from exc
    prov = {"source": f"torchscript:{src.resolve()}", "weights": f"stored in {src.name}", "source_sha256": sha256_of(src)}
    prov.update(kwargs.pop("provenance", None) or {})
    return from_torch(module, example, out, provenance=prov, **kwargs)


def _wrapper_classes() -> dict[str, type]:
    """nn.Module adapters that give torchvision's non-classification models tensor inputs and outputs."""
    cached = getattr(_wrapper_classes, "_cache", None)
    if cached is not None:
        return cached
    torch = _torch()

    class SegmentationOutputs(torch.nn.Module):
        """Returns the model's output dict (``out`` and, with the auxiliary head, ``aux``)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input):  # noqa: A002
            return dict(self.model(input))

    class FlowOutputs(torch.nn.Module):
        """RAFT returns one flow per refinement step; the last one is the prediction."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, image1, image2):
            return self.model(image1, image2)[-1]

    class DetectionOutputs(torch.nn.Module):
        """Detection models take a list of images and return a list of dicts; one image in, its dict out."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(list(images.unbind(0)))[0]

    cached = {"semantic-segmentation": SegmentationOutputs, "optical-flow": FlowOutputs,
              **{t: DetectionOutputs for t in DETECTION_TASKS}}
    _wrapper_classes._cache = cached  # type: ignore[attr-defined]
    return cached


def _load_state_dict(path: Path) -> dict:
    torch = _torch()
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"cannot read weights from '{path}' with torch.load(weights_only=True): {_reason(exc)}") from exc
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ConversionError(f"'{path}' holds a {type(sd).__name__}, not a state dict")
    return sd


def local_weights_path(w: Any) -> Path:
    """Where torch.hub keeps a downloaded weights file (``torch.hub.get_dir()/checkpoints/NAME``)."""
    hub = lazy_import("torch.hub")
    return Path(hub.get_dir()) / "checkpoints" / w.url.rsplit("/", 1)[-1]


def _perturb_constant_parameters(model: Any, std: float = 0.01) -> int:
    """Add small noise (N(0, std)) to every parameter tensor whose elements are all equal; return how many.

    torchvision initialises biases (and the ViT heads) to zero and norm scales to one. The dynamo
    exporter's optimiser drops an all-zero Conv bias and merges identical initializers, so a
    random-weights export would lack parameters the published weights have (its parameter count
    would be off), and a zero head makes every output constant, which leaves the numerical check
    nothing to see.
    """
    torch = _torch()
    count = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and p.is_floating_point() and bool((p == p.reshape(-1)[0]).all()):
                p.add_(torch.randn_like(p) * std)
                count += 1
    return count


def _resolution(resolution: int | Sequence[int] | None) -> tuple[int, int] | None:
    if resolution is None:
        return None
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        return (resolution, resolution)
    r = [int(v) for v in resolution]
    if len(r) == 1:
        return (r[0], r[0])
    if len(r) != 2 or min(r) < 1:
        raise ConversionError(f"resolution must be an int or (height, width), got {resolution!r}")
    return (r[0], r[1])


def _builder_provenance(source: str, weights_label: str, perturbed: int, extra: dict[str, Any] | None,
                        **fields: Any) -> dict[str, Any]:
    """The provenance of a model built from a library's builder (torchvision, timm): its source,
    weights and ``fields``, with the random-weights note where the weights are random, then
    ``extra`` over it."""
    prov: dict[str, Any] = {"source": source, "weights": weights_label, **fields}
    if weights_label == "random":
        prov["weights_note"] = (
            f"random weights (torch.manual_seed(0); {perturbed} constant-initialised parameter tensors given N(0, 0.01) noise): "
            "fine for cost and speed, never for accuracy"
        )
    prov.update(extra or {})
    return prov


def from_torchvision(
    name: str,
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    weights_path: str | os.PathLike[str] | None = None,
    batch: int = 1,
    resolution: int | Sequence[int] | None = None,
    frames: int = spec.VIDEO_FRAMES,
    dynamic_batch: bool | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    check: bool = True,
    atol: float | None = None,
    rtol: float = 1e-3,
    provenance: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Build torchvision model ``name`` and convert it with :func:`from_torch`. Never downloads.

    Args:
        name: a torchvision builder (``torchvision.models.list_models()``), e.g. ``resnet50``.
        out: the ``.onnx`` file to write.
        weights: ``None``: random parameters (``torch.manual_seed(0)``), with the architecture of the
            DEFAULT weights (see :func:`~mlms_ir.converters.torchvision_spec.builder_kwargs`); marked
            ``weights: random`` in the provenance. ``"DEFAULT"`` or a weights name (``IMAGENET1K_V1``,
            ``ResNet50_Weights.IMAGENET1K_V1``): the published weights, read from ``weights_path`` or
            torch.hub's cache (``torch.hub.get_dir()/checkpoints``), their sha256 prefix verified. A path
            to a ``.pth`` file: a state dict for the DEFAULT architecture, read with
            ``torch.load(weights_only=True)``.
        weights_path: the local file of the published weights named by ``weights``.
        batch: batch size of the example input (detection models: 1).
        resolution: input height and width (an int for square), default: the weights' transforms
            (crop size for classification and video, resize size for segmentation; detection: the
            model's own ``transform.min_size`` or fixed size; optical flow: 440x1024).
        frames: clip length of video models.
        dynamic_batch: default True, except for detection models, which take a list of images and are
            exported for one image.
        atol: absolute tolerance of the check; default 1e-4, 1e-2 (:data:`DETECTION_ATOL`) for the
            detection models (whose scores pass through thresholds, NMS and top-k) and 1e-3
            (:data:`FLOW_ATOL`) for the optical-flow models (12 recurrent refinement steps). The int8
            quantized models are also allowed :data:`INT8_STEPS` 8-bit steps of each output's range.
        exporter, opset, check, rtol, provenance: as for :func:`from_torch`.
    """
    torch = _torch()
    lazy_import("torchvision")
    import torchvision

    spec.check_model_name(name)
    task = spec.task_of(name)
    detection = task in DETECTION_TASKS
    if dynamic_batch is None:
        dynamic_batch = not detection
    if detection and (dynamic_batch or batch != 1):
        raise ConversionError(f"{name} takes a list of images and is exported for one image: use batch=1, dynamic_batch=False")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConversionError(f"batch must be a positive integer, got {batch!r}")

    file_weights: Path | None = None
    perturbed = 0
    looks_like_file = isinstance(weights, os.PathLike) or str(weights).endswith((".pth", ".pt")) or os.sep in str(weights)
    if weights is not None and looks_like_file:
        file_weights = Path(weights).expanduser()
        if not file_weights.is_file():
            raise ConversionError(f"no weights file at '{file_weights}'")
    published = None if (weights is None or file_weights is not None) else spec.weights_of(name, str(weights))
    arch = published if published is not None else spec.weights_of(name, "DEFAULT")
    kwargs = spec.builder_kwargs(name, arch)

    with _no_download(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision init FutureWarnings, quantization observers
        torch.manual_seed(0)
        if published is not None:
            local = Path(weights_path).expanduser() if weights_path else local_weights_path(published)
            if not local.is_file():
                raise ConversionError(
                    f"the weights {spec.weights_full_name(published)} are not on this machine (looked for '{local}'); "
                    f"download them with: mlms_ir zoo build {name} --weights (or pass weights_path)"
                )
            prefix = spec.sha256_prefix_of(published.url)
            if prefix and not sha256_of(local).startswith(prefix):
                raise ConversionError(
                    f"'{local}' is not {published.url}: its sha256 does not start with {prefix}; delete it and download again")
            import torchvision.models._api as tv_api

            original = tv_api.load_state_dict_from_url
            tv_api.load_state_dict_from_url = lambda url, *a, **k: _load_state_dict(local)
            try:
                extra = {k: v for k, v in kwargs.items() if k == "quantize"}
                model = torchvision.models.get_model(name, weights=published, **extra)
            finally:
                tv_api.load_state_dict_from_url = original
            weights_label = spec.weights_full_name(published)
        else:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
            if file_weights is not None:
                try:
                    model.load_state_dict(_load_state_dict(file_weights))
                except RuntimeError as exc:
                    raise ConversionError(
                        f"'{file_weights}' does not fit {name} built as {kwargs}: {_shorten(str(exc), 400)}"
                    ) from exc
                weights_label = f"file:{file_weights.resolve()}"
            else:
                weights_label = "random"
                perturbed = _perturb_constant_parameters(model)
    model.eval()

    res = _resolution(resolution) or spec.resolution_of(name, arch) or spec.detection_resolution(model)
    specs = spec.input_spec(name, res, batch=batch, frames=frames)
    g = torch.Generator().manual_seed(CHECK_SEED)
    example = tuple(torch.rand(*s["shape"], generator=g) for s in specs)
    wrapper = _wrapper_classes().get(task)
    module = wrapper(model) if wrapper is not None else model
    output_names = {"optical-flow": ["flow"], "image-classification": ["logits"], "video-classification": ["logits"]}.get(task)
    if atol is None:
        atol = DETECTION_ATOL if detection else FLOW_ATOL if task == "optical-flow" else 1e-4
    prov = _builder_provenance(f"torchvision:{name}", weights_label, perturbed, provenance,
                               torchvision_version=torchvision.__version__, task=task,
                               builder_kwargs={k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                               resolution=list(res))
    return from_torch(
        module, example, out, input_names=[s["name"] for s in specs], output_names=output_names,
        dynamic_batch=dynamic_batch, opset=opset, exporter=exporter, check=check, atol=atol, rtol=rtol, provenance=prov,
        unordered_outputs=detection, int8_steps=INT8_STEPS if spec.is_quantized(name) else 0,
    )


def _load_weights_file(path: Path) -> dict:
    """A state dict from a ``.safetensors`` file (safetensors) or a torch file (``torch.load(weights_only=True)``)."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ConversionError(f"reading '{path}' needs the safetensors package (pip install safetensors)") from exc
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"cannot read weights from '{path}' with safetensors: {_reason(exc)}") from exc
    return _load_state_dict(path)


def from_timm(
    name: str,
    out: str | os.PathLike[str],
    *,
    weights_path: str | os.PathLike[str] | None = None,
    batch: int = 1,
    resolution: int | Sequence[int] | None = None,
    dynamic_batch: bool = True,
    exporter: str = "auto",
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    provenance: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Build timm model ``name`` and convert it with :func:`from_torch`. Never downloads.

    Args:
        name: a timm model with published weights, ``arch`` (its default weights) or ``arch.tag``
            (``timm.list_models(pretrained=True)``), e.g. ``deit_tiny_patch16_224.fb_in1k``.
        out: the ``.onnx`` file to write.
        weights_path: a local state dict for this architecture (``.safetensors``, or a torch file read
            with ``torch.load(weights_only=True)``), e.g. the published weights fetched by hand.
            Default: random parameters (``torch.manual_seed(0)``; every parameter tensor that timm
            initialises to a constant gets N(0, 0.01) noise, as for torchvision), marked
            ``weights: random`` in the provenance. The model is built with
            ``timm.create_model(name, pretrained=False, num_classes=...)`` from the weights'
            ``pretrained_cfg``, so its parameter count and cost are those of the published weights.
        batch: batch size of the example input.
        resolution: input height and width (an int for square); default: ``input_size`` of the
            weights' data config (``timm.data.resolve_model_data_config``).
        dynamic_batch, exporter, opset, check, atol, rtol, provenance: as for :func:`from_torch`.
    """
    torch = _torch()
    timm = lazy_import("timm")
    from mlms_ir.converters import timm_spec

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConversionError(f"batch must be a positive integer, got {batch!r}")
    cfg = timm_spec.pretrained_cfg(name)
    full = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else cfg["architecture"]
    kwargs = timm_spec.builder_kwargs(cfg)
    perturbed = 0
    with _no_download(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's deprecation and init warnings
        torch.manual_seed(0)
        model = timm_spec.create(full, **kwargs)
        if weights_path is not None:
            file = Path(weights_path).expanduser()
            if not file.is_file():
                raise ConversionError(f"no weights file at '{file}'")
            try:
                model.load_state_dict(_load_weights_file(file))
            except RuntimeError as exc:
                raise ConversionError(f"'{file}' does not fit {full} built as {kwargs}: {_shorten(str(exc), 400)}") from exc
            weights_label = f"file:{file.resolve()}"
        else:
            weights_label = "random"
            perturbed = _perturb_constant_parameters(model)
    model.eval()
    res = _resolution(resolution) or timm_spec.resolution_of(model)
    specs = timm_spec.input_spec(res, batch=batch)
    g = torch.Generator().manual_seed(CHECK_SEED)
    example = tuple(torch.rand(*s["shape"], generator=g) for s in specs)
    prov = _builder_provenance(f"timm:{full}", weights_label, perturbed, provenance,
                               timm_version=timm.__version__,
                               task="image-classification", builder_kwargs=kwargs, resolution=list(res))
    return from_torch(
        model, example, out, input_names=[s["name"] for s in specs], output_names=["logits"],
        dynamic_batch=dynamic_batch, opset=opset, exporter=exporter, check=check, atol=atol, rtol=rtol, provenance=prov,
    )


__all__ = [
    "EXPORTERS",
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "ConversionError",
    "ConversionResult",
    "from_torch",
    "from_timm",
    "from_torchscript",
    "from_torchvision",
    "local_weights_path",
    "opset_of",
]
