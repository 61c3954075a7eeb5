"""TensorFlow and Keras to ONNX, through tf2onnx (``pip install 'mlms_ir[tensorflow]'``).

* :func:`from_keras`: a Keras model (Keras 3: tf2onnx's own ``from_keras`` fails there, so the
  model is wrapped in a ``tf.function`` over its input specs and converted with ``from_function``);
* :func:`from_saved_model`: a SavedModel directory, one of its signatures (``serving_default``);
* :func:`from_function`: a ``tf.function`` with an input signature.

The batch dim stays dynamic (``None`` in the specs becomes the ONNX dim ``batch``). Every
conversion is checked: the source and onnxruntime run the same seeded inputs, at two batch sizes
when the batch is dynamic, and a difference beyond ``atol + rtol*|ref|`` is a
:class:`~mlms_ir.converters.ConversionError`. Provenance (framework versions, source, the check)
goes into the ONNX file's ``metadata_props`` under ``mlms_ir.``. A ``tf.constant`` captured from
outside a ``tf.function`` becomes a graph input tf2onnx cannot feed: build such constants inside.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir.converters import ConversionError
from mlms_ir.comparator import check_close
from mlms_ir.errors import MissingExtraError

DEFAULT_OPSET = 17
METADATA_PREFIX = "mlms_ir."


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise MissingExtraError("converting TensorFlow/Keras models needs TensorFlow and tf2onnx: "
                                "pip install 'mlms_ir[tensorflow]'") from exc
    return tf, tf2onnx


def _result(**kw: Any):
    from mlms_ir.converters.torch import ConversionResult

    return ConversionResult(**kw)


def _random_inputs(specs: Sequence[Any], batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = [batch if d is None and i == 0 else (d if d is not None else 4) for i, d in enumerate(s.shape.as_list())]
        dt = s.dtype.as_numpy_dtype
        if np.issubdtype(dt, np.floating):
            out.append(rng.standard_normal(shape).astype(dt))
        elif np.issubdtype(dt, np.integer):
            out.append(rng.integers(0, 8, shape).astype(dt))
        elif dt == np.bool_:
            out.append(rng.integers(0, 2, shape).astype(bool))
        else:
            raise ConversionError(f"cannot make check inputs of type {s.dtype.name} for input '{s.name}'")
    return out


def _flatten(outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def from_function(fn: Callable[..., Any], input_signature: Sequence[Any], out: str | os.PathLike, *, output_names: Sequence[str] | None = None,
                  opset: int | None = None, check: bool = True, atol: float = 1e-4, rtol: float = 1e-3,
                  provenance: dict[str, str] | None = None, _source_call: Callable[..., Any] | None = None):
    """Convert a ``tf.function`` (or a callable, wrapped in one) with ``input_signature`` (a list of
    ``tf.TensorSpec``, ``None`` for the batch dim) to ``out``; returns a ``ConversionResult``."""
    tf, tf2onnx = _tf()
    import onnx

    specs = list(input_signature)
    names = [s.name or f"input_{i}" for i, s in enumerate(specs)]
    specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for s, n in zip(specs, names)]
    func = fn if hasattr(fn, "get_concrete_function") else tf.function(fn)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model, _ = tf2onnx.convert.from_function(func, input_signature=specs, opset=opset or DEFAULT_OPSET)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises whatever TensorFlow or its handlers raise
        raise ConversionError(f"tf2onnx cannot convert the function: {' '.join(str(exc).split())[:400]}") from exc
    if output_names:
        if len(output_names) != len(model.graph.output):
            raise ConversionError(f"{len(output_names)} output names for {len(model.graph.output)} outputs")
        rename = {o.name: n for o, n in zip(model.graph.output, output_names)}
        for node in model.graph.node:
            node.output[:] = [rename.get(x, x) for x in node.output]
            node.input[:] = [rename.get(x, x) for x in node.input]
        for o in model.graph.output:
            o.name = rename[o.name]
    dynamic = any(s.shape.rank and s.shape.as_list()[0] is None for s in specs)
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dynamic and dims and not dims[0].dim_value:
            dims[0].dim_param = "batch"
    call = _source_call or func
    max_err, batches = None, []
    if check:
        max_err, batches = _check(model, call, specs, atol, rtol)
    prov = {"source_framework": "tensorflow", "framework_version": tf.__version__, "exporter": f"tf2onnx {tf2onnx.__version__}",
            "opset": str(opset or DEFAULT_OPSET), "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {})}
    if max_err is not None:
        prov["max_abs_error"] = f"{max_err:.3g}"
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        **{METADATA_PREFIX + k: v for k, v in prov.items()}})
    onnx.save(model, str(out))
    return _result(path=out, exporter=prov["exporter"], fallback_reason=None, max_abs_error=max_err, checked_batches=batches,
                   provenance=prov, warnings=[])


def _check(model: Any, call: Callable[..., Any], specs: Sequence[Any], atol: float, rtol: float) -> tuple[float, list[int]]:
    from mlms_ir._lazy import onnxruntime

    ort = onnxruntime()

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    dynamic = any(s.shape.rank and s.shape.as_list()[0] is None for s in specs)
    batches = [2, 3] if dynamic else [specs[0].shape.as_list()[0] or 1]
    worst = 0.0
    for k, b in enumerate(batches):
        xs = _random_inputs(specs, b, seed=k)
        want = _flatten(call(*xs))
        got = sess.run(None, dict(zip(names, xs)))
        if len(got) != len(want):
            raise ConversionError(f"the ONNX model has {len(got)} outputs, the source {len(want)}")
        for name, w, g in zip(out_names, want, got):
            worst = max(worst, check_close(name, w, g, batch=b, atol=atol, rtol=rtol, reference="TensorFlow", error=ConversionError))
    return worst, batches


def from_keras(model: Any, out: str | os.PathLike, **kw: Any):
    """Convert a Keras model (its inputs' batch dim stays dynamic)."""
    tf, _ = _tf()
    specs = [tf.TensorSpec([None, *i.shape[1:]], i.dtype, name=i.name) for i in model.inputs]
    names = list(getattr(model, "output_names", None) or [])
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    prov = {"source": f"keras model '{model.name}'", **kw.pop("provenance", {})}
    return from_function(fn, specs, out, output_names=names if len(names) == len(model.outputs) else None, provenance=prov, **kw)


def from_saved_model(path: str | os.PathLike, out: str | os.PathLike, *, signature: str = "serving_default", **kw: Any):
    """Convert one signature of a SavedModel directory (its inputs keyed by name, outputs in name order)."""
    tf, _ = _tf()
    p = Path(path)
    if not (p / "saved_model.pb").is_file():
        raise ConversionError(f"'{p}' is not a SavedModel directory (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"TensorFlow cannot load the SavedModel '{p}': {' '.join(str(exc).split())[:300]}") from exc
    if signature not in loaded.signatures:
        raise ConversionError(f"the SavedModel has no signature '{signature}'; it has: {', '.join(loaded.signatures) or 'none'}")
    sig = loaded.signatures[signature]
    _, kwargs = sig.structured_input_signature
    order = sorted(kwargs)
    specs = [tf.TensorSpec(kwargs[k].shape, kwargs[k].dtype, name=k) for k in order]
    out_names = sorted(sig.structured_outputs)

    def call(*xs: Any) -> list[Any]:
        res = sig(**dict(zip(order, xs)))
        return [res[k] for k in out_names]

    fn = tf.function(call)
    prov = {"source": f"SavedModel {p.resolve()} [{signature}]", **kw.pop("provenance", {})}
    return from_function(fn, specs, out, output_names=out_names, provenance=prov, **kw)


def load_keras(path: str | os.PathLike) -> Any:
    """A ``.keras`` file, loaded in Keras' safe mode (a Lambda layer's code is refused, not run)."""
    tf, _ = _tf()
    p = Path(path)
    if not p.is_file():
        raise ConversionError(f"no Keras file '{p}'")
    try:
        return tf.keras.models.load_model(str(p), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a file it cannot read
        raise ConversionError(f"Keras cannot load '{p}': {' '.join(str(exc).split())[:300]}") from exc
