"""ONNX to a TensorFlow SavedModel, through onnx-tf in its agent environment, checked against onnxruntime.

onnx-tf 1.10 needs TensorFlow 2.15 with numpy<2 and onnx<=1.18, so it runs in its own Python
(``bash tools/make_agent_envs.sh onnx-tf``), found as the ``onnx-tf`` backend finds it: the
``python`` argument, then ``$MLMS_IR_ONNX_TF_PYTHON``, then
``${MLMS_IR_ENVS:-${MLMS_IR_CACHE:-~/.cache/mlms_ir}/envs}/onnx-tf/bin/python``.

:func:`to_saved_model` goes like this:

1. the ONNX model is read here (without its weights) to make seeded random inputs: at batch
   sizes :data:`DYNAMIC_BATCHES` when dim 0 of the inputs is dynamic, other symbolic dims bound
   by ``dims`` (a dim the inputs need and nobody bound is an error that names it);
   onnxruntime (the source's reference) runs them;
2. the export script (:mod:`mlms_ir.converters.onnx_tf_export`) runs in the onnx-tf Python:
   ``onnx_tf.backend.prepare(model).export_graph(dir)``, then ``tf.saved_model.load(dir)`` and its
   ``serving_default`` signature on the same inputs;
3. the outputs are compared here: an element beyond ``atol + rtol*|onnxruntime|`` is a
   :class:`~mlms_ir.converters.ConversionError`, and the largest absolute difference is the
   result's ``max_abs_error``;
4. a SavedModel has no place for ONNX ``metadata_props``, so the provenance goes into
   :data:`PROVENANCE_FILE` inside the SavedModel folder (TensorFlow ignores it).

The SavedModel is written into a staging folder beside ``out_dir`` and moved into place only once
the check passed: a failed conversion leaves no output (and, with ``overwrite``, the old one as it
was).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir._proc import ChildStartError, ChildTimeout, child_env, run_child
from mlms_ir.converters import ConversionError
from mlms_ir.comparator import check_close
from mlms_ir.converters.torch import ConversionResult
from mlms_ir.files import sha256_of

#: The file written beside ``saved_model.pb`` with where the SavedModel came from.
PROVENANCE_FILE = "mlms_ir_provenance.json"
#: Version of the provenance file's layout.
PROVENANCE_VERSION = 1
#: Batch sizes of the check when dim 0 of the model's inputs is dynamic.
DYNAMIC_BATCHES = (2, 3)
#: Seed of the check's random inputs.
CHECK_SEED = 0
#: Seconds the export (importing TensorFlow, converting, reloading, running) may take by default.
DEFAULT_TIMEOUT_S = 600.0
#: The SavedModel signature that is converted, reloaded and checked.
SIGNATURE = "serving_default"


class SavedModelResult(ConversionResult):
    """A :class:`~mlms_ir.converters.torch.ConversionResult` whose ``path`` is a SavedModel folder.

    ``exporter`` is ``"onnx-tf"``; ``max_abs_error`` and ``checked_batches`` compare the
    SavedModel's ``serving_default`` signature with onnxruntime running the ONNX source;
    ``provenance`` is what :data:`PROVENANCE_FILE` holds (JSON values, not only strings).
    """

    @property
    def files(self) -> list[Path]:
        """Every file of the SavedModel folder (``saved_model.pb``, ``variables/...``, the provenance)."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy; ``files`` maps paths relative to the folder to their sizes."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["files"] = {p.relative_to(self.path).as_posix(): p.stat().st_size for p in self.files}
        return d


def onnx_tf_python(python: str | os.PathLike | None = None) -> Path:
    """The onnx-tf environment's interpreter: ``python``, ``$MLMS_IR_ONNX_TF_PYTHON``, or the agent env."""
    from mlms_ir.backends.worker import OnnxTfBackend

    path, source = OnnxTfBackend().python(python)
    if not path.exists():
        raise ConversionError(f"no onnx-tf environment at {path} ({source}): create it with `bash tools/make_agent_envs.sh onnx-tf`, "
                              "or point $MLMS_IR_ONNX_TF_PYTHON (or python=) at a Python that has onnx-tf 1.10 and TensorFlow 2.15")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise ConversionError(f"{path} ({source}) is not an executable Python interpreter")
    return path


# ---------------------------------------------------------------------------- the check's inputs
def _np_dtype(elem_type: int, name: str) -> np.dtype:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001 - bfloat16, float8 and the like
        raise ConversionError(f"input '{name}' has the element type {onnx.TensorProto.DataType.Name(elem_type)}, "
                              "which the check cannot make random inputs for (check=False skips the check)") from None


def _input_plan(model, dims: Mapping[str, int]) -> tuple[list[tuple[str, np.dtype, list]], list[int]]:
    """The graph inputs as (name, dtype, dims: an int, or None for the batch) and the batch sizes to check.

    Dim 0 of an input is the batch when it is symbolic (a name, or no size at all) and ``dims``
    does not bind it; a batch name stands for the batch wherever it appears (an attention mask's
    dim 1, say). Other symbolic dims must be bound by ``dims``."""
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [vi for vi in model.graph.input if vi.name not in inits]
    batch_names = {vi.type.tensor_type.shape.dim[0].dim_param for vi in graph_inputs
                   if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.shape.dim}
    batch_names -= set(dims) | {""}
    plan: list[tuple[str, np.dtype, list]] = []
    dynamic = False
    first_static: int | None = None
    for vi in graph_inputs:
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            raise ConversionError(f"input '{vi.name}' is a {kind or 'typeless value'}, not a tensor; the check feeds tensors only "
                                  "(check=False skips the check)")
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            raise ConversionError(f"input '{vi.name}' has no shape (not even its rank): the check cannot make an input for it "
                                  "(check=False skips the check)")
        shape: list = []
        for k, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif d.dim_param and d.dim_param in dims:
                shape.append(int(dims[d.dim_param]))
            elif k == 0 or d.dim_param in batch_names:
                dynamic = True
                shape.append(None)
            elif d.dim_param:
                raise ConversionError(f"input '{vi.name}' has the symbolic dim '{d.dim_param}' (dim {k}): bind it for the check, "
                                      f"e.g. dims={{'{d.dim_param}': 16}} (--dims {d.dim_param}=16)")
            else:
                raise ConversionError(f"dim {k} of input '{vi.name}' has neither a size nor a name: the check cannot make an input "
                                      "for it (name the dim in the model and bind it with dims, or check=False)")
            if k == 0 and first_static is None and shape[0] is not None:
                first_static = shape[0]
        plan.append((vi.name, _np_dtype(tt.elem_type, vi.name), shape))
    return plan, (list(DYNAMIC_BATCHES) if dynamic else [first_static or 1])


def _make_inputs(plan, batches: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(CHECK_SEED)
    out: dict[str, np.ndarray] = {}
    for b in batches:
        for i, (_, dtype, shape) in enumerate(plan):
            s = [b if d is None else d for d in shape]
            if dtype.kind == "f":
                a = rng.standard_normal(s).astype(dtype)
            elif dtype.kind == "b":
                a = rng.integers(0, 2, size=s).astype(bool)
            elif dtype.kind in "iu":
                a = rng.integers(0, 10, size=s).astype(dtype)
            elif dtype.kind == "c":
                a = (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dtype)
            else:
                raise ConversionError(f"input '{plan[i][0]}' has the dtype {dtype}, which the check cannot make random inputs for "
                                      "(check=False skips the check)")
            out[f"b{b}_{i}"] = a
    return out


def _reference(path: Path, plan, inputs: dict[str, np.ndarray], batches: list[int]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for the check inputs, keyed ``b{B}_{j}``."""
    from mlms_ir._lazy import onnxruntime

    ort = onnxruntime()

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the source model: {' '.join(str(exc).split())[:300]}") from exc
    out: dict[str, np.ndarray] = {}
    for b in batches:
        feeds = {name: inputs[f"b{b}_{i}"] for i, (name, _, _) in enumerate(plan)}
        try:
            got = sess.run(None, feeds)
        except Exception as exc:
            raise ConversionError(f"onnxruntime cannot run the source model at batch {b}: {' '.join(str(exc).split())[:300]}") from exc
        for j, g in enumerate(got):
            out[f"b{b}_{j}"] = np.asarray(g)
    return out


def _compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], outputs: list[str], batches: list[int],
             atol: float, rtol: float) -> float:
    """Check the SavedModel's outputs (``got``) against onnxruntime's (``ref``), both keyed ``b{B}_{j}``;
    return the largest absolute error."""
    worst = 0.0
    for b in batches:
        for j, name in enumerate(outputs):
            w, g = ref.get(f"b{b}_{j}"), got.get(f"b{b}_{j}")
            if g is None:
                raise ConversionError(f"the SavedModel gave no output '{name}' at batch {b}")
            if w is None:
                raise ConversionError(f"onnxruntime gave no output '{name}' at batch {b}")
            worst = max(worst, check_close(name, w, g, batch=b, atol=atol, rtol=rtol, reference="onnxruntime",
                                           converted="the SavedModel", error=ConversionError))
    return worst


# ---------------------------------------------------------------------------- running the script
def _run_script(python: Path, req: dict, tmp: Path, timeout: float) -> dict:
    from mlms_ir.backends import worker

    (tmp / "req.json").write_text(json.dumps(req))
    # run from a copy: beside this file, tensorflow.py and onnx_tf.py would shadow the real packages
    script = tmp / "onnx_tf_export.py"
    script.write_text(Path(__file__).with_name("onnx_tf_export.py").read_text())
    # the op versions onnx-tf 1.10 lacks, and the ONNX facts it shares with the other compat
    # modules (the worker agent imports the same files from its own folder)
    for name in ("onnx_tf_compat.py", "onnx_versions.py"):
        (tmp / name).write_text(Path(worker.__file__).with_name(name).read_text())
    try:  # the script leads its own session, as a worker does; its output stays in tmp
        done = run_child([python, script, tmp / "req.json"], timeout=timeout, env=child_env(foreign=True), cwd=tmp,
                         output_dir=tmp)
    except ChildStartError as exc:
        why = getattr(exc.__cause__, "strerror", None) or exc.__cause__ or exc  # the OS error in words
        raise ConversionError(f"cannot start the onnx-tf Python {python}: {why}") from exc
    except ChildTimeout:
        raise ConversionError(f"the onnx-tf conversion took longer than {timeout:g} s and was stopped") from None
    try:
        return json.loads((tmp / "result.json").read_text())
    except (OSError, ValueError):
        last = done.tail(1)
        raise ConversionError(f"the onnx-tf conversion crashed (status {done.returncode}) in {python}: "
                              f"{last.strip()[:300] if last else 'no message'}") from None


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.is_symlink():
        raise ConversionError(f"the output '{out}' is a symbolic link: give the folder itself")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConversionError(f"cannot write '{out}': '{out.parent}' is not a folder")
    if out.exists():
        if not out.is_dir():
            raise ConversionError(f"the output '{out}' exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise ConversionError(f"the output folder '{out}' already exists and is not empty: choose another, "
                                      "or replace it with overwrite=True (--overwrite)")
            if not (out / "saved_model.pb").is_file():
                raise ConversionError(f"not replacing '{out}': it is not a SavedModel folder (no saved_model.pb)")
    out.parent.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------- the converter
def to_saved_model(model, out_dir: str | os.PathLike, *, check: bool = True, atol: float = 1e-4, rtol: float = 1e-3,
                   dims: Mapping[str, int] | str | None = None, overwrite: bool = False,
                   python: str | os.PathLike | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> SavedModelResult:
    """Convert an ONNX model to a TensorFlow SavedModel folder ``out_dir`` with onnx-tf, checked against onnxruntime.

    Args:
        model: an ``.onnx`` path (external data beside it is used), ``zoo:NAME``, or an ``onnx.ModelProto``.
        out_dir: the SavedModel folder to write; it must not exist or be empty, unless ``overwrite``
            (which replaces only a folder that holds a ``saved_model.pb``).
        check: run the SavedModel's ``serving_default`` signature and onnxruntime on the same seeded
            random inputs (at batch 2 and 3 when dim 0 of the inputs is dynamic) and compare.
        atol, rtol: an element beyond ``atol + rtol*|onnxruntime|`` fails the conversion.
        dims: values of the inputs' symbolic dims other than the batch, for the check (``{"seq": 16}``
            or ``"seq=16"``); binding the batch's name too checks that one batch size only.
        overwrite: replace an existing SavedModel folder.
        python: the onnx-tf environment's interpreter (default: ``$MLMS_IR_ONNX_TF_PYTHON``, then the agent env).
        timeout: seconds the export script may take (it imports TensorFlow, converts, reloads, runs).

    Returns a :class:`SavedModelResult`; raises :class:`~mlms_ir.converters.ConversionError` with
    one line on every failure (no environment, unreadable model, an op onnx-tf cannot convert, a
    mismatch, a timeout).
    """
    import onnx

    import mlms_ir
    from mlms_ir.errors import MlmsIrError
    from mlms_ir.ir.shapes import parse_bindings

    try:
        bound = parse_bindings(dims=dims).dims if dims else {}
    except MlmsIrError as exc:
        raise ConversionError(str(exc)) from exc
    atol, rtol = float(atol), float(rtol)
    if atol < 0 or rtol < 0:
        raise ConversionError(f"atol and rtol must not be negative, got {atol:g} and {rtol:g}")
    if float(timeout) <= 0:
        raise ConversionError(f"the timeout must be positive, got {timeout:g}")
    out = Path(out_dir)
    _prepare_out(out, overwrite)

    with tempfile.TemporaryDirectory(prefix="mlms_ir_onnx_tf_") as tmp_s:
        tmp = Path(tmp_s)
        # the source: a path, zoo:NAME or a ModelProto
        if isinstance(model, onnx.ModelProto):
            src_path = tmp / "model.onnx"
            data = model.SerializeToString()
            src_path.write_bytes(data)
            source, sha = "<onnx.ModelProto>", sha256_of(data)
        else:
            source = os.fspath(model)
            if str(source).startswith("zoo:"):
                from mlms_ir.zoo import resolve

                try:
                    src_path = Path(resolve(source))
                except MlmsIrError as exc:
                    raise ConversionError(str(exc)) from exc
            else:
                src_path = Path(source)
            if not src_path.is_file():
                raise ConversionError(f"no ONNX file '{src_path}'")
            sha = sha256_of(src_path)
        try:
            proto = onnx.load(str(src_path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001
            raise ConversionError(f"'{src_path}' is not a readable ONNX model: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
        if not proto.graph.node and not proto.graph.output:
            raise ConversionError(f"'{src_path}' holds no ONNX graph")
        outputs = [o.name for o in proto.graph.output]
        opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)

        batches: list[int] = []
        inputs = ref = None
        if check:
            known = {d.dim_param for vi in proto.graph.input if vi.type.WhichOneof("value") == "tensor_type"
                     for d in vi.type.tensor_type.shape.dim if d.dim_param}
            unknown = sorted(set(bound) - known)
            if unknown:
                raise ConversionError(f"the model's inputs have no dim named {', '.join(repr(u) for u in unknown)}; "
                                      f"their symbolic dims are: {', '.join(sorted(known)) or '(none)'}")
            plan, batches = _input_plan(proto, bound)
            inputs = _make_inputs(plan, batches)
        py = onnx_tf_python(python)  # after the checks of what the caller gave, before the slow part
        if check:
            ref = _reference(src_path, plan, inputs, batches)
            np.savez(tmp / "in.npz", **inputs)

        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent.absolute()))
        try:
            saved = staging / "saved_model"
            req = {"model": str(src_path.resolve()), "output": str(saved), "result": str(tmp / "result.json"),
                   **({"check_inputs": str(tmp / "in.npz"), "check_outputs": str(tmp / "out.npz"), "check_batches": batches}
                      if check else {})}
            res = _run_script(py, req, tmp, float(timeout))
            if res.get("status") != "ok":
                stage, err = res.get("stage"), res.get("error") or "no message"
                if stage == "import":
                    raise ConversionError(f"onnx-tf does not import in {py}: {err}; recreate the environment with "
                                          "`bash tools/make_agent_envs.sh onnx-tf`")
                what = {"load": "onnx-tf's onnx could not load the model", "convert": "onnx-tf could not convert the model",
                        "reload": "TensorFlow could not load the SavedModel onnx-tf wrote",
                        "run": "the SavedModel failed on the check inputs"}.get(stage, "the onnx-tf conversion failed")
                raise ConversionError(f"{what}: {err}")
            max_err = None
            warnings: list[str] = []
            if check:
                got = dict(np.load(tmp / "out.npz", allow_pickle=False))
                max_err = _compare(ref, got, outputs, batches, atol, rtol)
            renamed = res.get("renamed_inputs") or {}
            if renamed:
                warnings.append("inputs renamed in the SavedModel's signature (TensorFlow cannot take their names as arguments): "
                                + ", ".join(f"{k} -> {v}" for k, v in renamed.items()))
            from mlms_ir._lazy import onnxruntime

            ort = onnxruntime()

            prov: dict[str, Any] = {
                "provenance_version": PROVENANCE_VERSION,
                "source_framework": "onnx",
                "target_framework": "tensorflow",
                "format": "saved_model",
                "converter": "onnx-tf",
                "onnx_tf_version": res.get("onnx_tf_version", ""),
                "tensorflow_version": res.get("tensorflow_version", ""),
                "onnx_version": res.get("onnx_version", ""),
                "numpy_version": res.get("numpy_version", ""),
                "python_version": res.get("python", ""),
                "mlms_ir_version": mlms_ir.__version__,
                "source": source,
                "source_path": str(src_path.resolve()) if source != "<onnx.ModelProto>" else None,
                "source_sha256": sha,
                "source_opset": opset,
                "signature": SIGNATURE,
                "signature_inputs": res.get("signature_inputs", {}),
                "signature_outputs": res.get("signature_outputs", {}),
                "renamed_inputs": renamed,
                "checked": bool(check),
                "reference": f"onnxruntime {ort.__version__} (CPUExecutionProvider)" if check else None,
                "max_abs_error": max_err,
                "checked_batches": batches,
                "dims": bound,
                "atol": atol if check else None,
                "rtol": rtol if check else None,
                "converted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            (saved / PROVENANCE_FILE).write_text(json.dumps(prov, indent=2) + "\n")
            try:
                _prepare_out(out, overwrite)  # again: the conversion took a while, and someone may have written there
                old = staging / "old"
                if out.exists():
                    os.replace(out, old)  # aside, not deleted, until the new one is in place
                os.replace(saved, out)
            except OSError as exc:
                if (staging / "old").exists() and not out.exists():
                    os.replace(staging / "old", out)
                raise ConversionError(f"cannot put the SavedModel at '{out}': {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return SavedModelResult(path=out, exporter="onnx-tf", fallback_reason=None, max_abs_error=max_err,
                            checked_batches=batches, provenance=prov, warnings=warnings)


def read_provenance(saved_model_dir: str | os.PathLike) -> dict[str, Any]:
    """The provenance :func:`to_saved_model` wrote into ``saved_model_dir``."""
    p = Path(saved_model_dir) / PROVENANCE_FILE
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ConversionError(f"'{saved_model_dir}' holds no {PROVENANCE_FILE}: it was not written by mlms_ir") from None
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read '{p}': {exc}") from exc


__all__ = ["DYNAMIC_BATCHES", "PROVENANCE_FILE", "SavedModelResult", "onnx_tf_python", "read_provenance", "to_saved_model"]
