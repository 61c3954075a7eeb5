"""MXNet (a symbol JSON and its params) to ONNX, through ``mx.onnx.export_model`` in the MXNet
agent environment (``bash tools/make_agent_envs.sh mxnet``; mxnet 1.9.1 needs numpy<1.24 and
onnx<=1.18, so it runs in its own Python, found as the ``mxnet`` backend finds it).

The export script (:mod:`mlms_ir.converters.mxnet_export`) also runs the MXNet model on seeded
inputs at two batch sizes; onnxruntime runs the same inputs here, and a difference beyond
``atol + rtol*|ref|`` is a :class:`~mlms_ir.converters.ConversionError`. Provenance goes into the
ONNX metadata under ``mlms_ir.``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlms_ir._proc import ChildStartError, ChildTimeout, child_env, run_child
from mlms_ir.converters import ConversionError
from mlms_ir.comparator import check_close

METADATA_PREFIX = "mlms_ir."


def mxnet_python(python: str | os.PathLike | None = None) -> Path:
    """The MXNet environment's interpreter: ``python``, ``$MLMS_IR_MXNET_PYTHON``, or the agent env."""
    from mlms_ir.backends.worker import MXNetBackend

    path, _ = MXNetBackend().python(python)
    if not Path(path).exists():
        raise ConversionError(f"no MXNet environment at {path}: create it with `bash tools/make_agent_envs.sh mxnet`, "
                              "or point $MLMS_IR_MXNET_PYTHON at a Python that has mxnet 1.9 and onnx<=1.18")
    return Path(path)


def from_mxnet(symbol: str | os.PathLike, params: str | os.PathLike, out: str | os.PathLike, *, input_shapes: Sequence[Sequence[int]],
               dynamic_batch: bool = True, check: bool = True, atol: float = 1e-4, rtol: float = 1e-3,
               python: str | os.PathLike | None = None, timeout: float = 600.0):
    """Convert ``symbol`` (``*-symbol.json``) with ``params`` (``*-0000.params``) to ``out``; the
    ``input_shapes`` give one shape per data input, batch first. Returns a ``ConversionResult``."""
    import onnx

    from mlms_ir.converters.torch import ConversionResult

    for p in (symbol, params):
        if not Path(p).is_file():
            raise ConversionError(f"no MXNet file '{p}'")
    shapes = [[int(d) for d in s] for s in input_shapes]
    if not shapes or any(not s or min(s) < 1 for s in shapes):
        raise ConversionError("give one positive shape per input, batch first (e.g. 1x3x224x224)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batches = [2, 3] if dynamic_batch else [shapes[0][0]]
    with tempfile.TemporaryDirectory(prefix="mlms_ir_mx_") as tmp:
        t = Path(tmp)
        rng = np.random.default_rng(0)
        inputs = {f"b{b}_{i}": rng.standard_normal([b if dynamic_batch else s[0], *s[1:]]).astype(np.float32)
                  for b in batches for i, s in enumerate(shapes)}
        np.savez(t / "in.npz", **inputs)
        req = {"symbol": str(Path(symbol).resolve()), "params": str(Path(params).resolve()), "output": str(out.resolve()),
               "input_shapes": shapes, "dynamic": dynamic_batch, "result": str(t / "result.json"),
               **({"check_inputs": str(t / "in.npz"), "check_outputs": str(t / "out.npz")} if check else {})}
        (t / "req.json").write_text(json.dumps(req))
        # run from a copy: beside this file, ``mxnet.py`` would shadow the real mxnet package
        script = t / "mxnet_export.py"
        script.write_text(Path(__file__).with_name("mxnet_export.py").read_text())
        py = mxnet_python(python)
        try:
            done = run_child([py, script, t / "req.json"], timeout=timeout, env=child_env(foreign=True))
        except ChildStartError as exc:
            why = getattr(exc.__cause__, "strerror", None) or exc.__cause__ or exc  # the OS error in words
            raise ConversionError(f"cannot start the MXNet Python {py}: {why}") from exc
        except ChildTimeout as exc:
            raise ConversionError(f"the MXNet export took longer than {timeout:g} s") from exc
        if not (t / "result.json").is_file():
            last = done.tail(1, stdout_too=False)
            raise ConversionError(f"the MXNet export crashed (status {done.returncode}): {last or 'no message'}")
        res = json.loads((t / "result.json").read_text())
        if res["status"] != "ok":
            out.unlink(missing_ok=True)
            raise ConversionError(f"MXNet could not export the model: {res['error']}")
        max_err = None
        if check:
            max_err = _check(out, inputs, dict(np.load(t / "out.npz", allow_pickle=False)), batches, len(shapes), atol, rtol)
    prov = {"source_framework": "mxnet", "framework_version": res.get("mxnet_version", "?"), "exporter": "mxnet.onnx.export_model",
            "export_onnx_version": res.get("onnx_version", "?"), "opset": str(res.get("opset")), "source": f"{symbol} + {params}",
            "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if max_err is not None:
        prov["max_abs_error"] = f"{max_err:.3g}"
    m = onnx.load(str(out))
    inits = {i.name for i in m.graph.initializer}
    kept = [i for i in m.graph.input if i.name not in inits]  # weights listed as inputs too (an old ONNX habit)
    del m.graph.input[:]
    m.graph.input.extend(kept)
    onnx.helper.set_model_props(m, {**{x.key: x.value for x in m.metadata_props}, **{METADATA_PREFIX + k: v for k, v in prov.items()}})
    onnx.save(m, str(out))
    return ConversionResult(path=out, exporter=prov["exporter"], fallback_reason=None, max_abs_error=max_err,
                            checked_batches=batches if check else [], provenance=prov, warnings=[])


def _check(path: Path, inputs: dict[str, np.ndarray], want: dict[str, np.ndarray], batches: list[int], n_inputs: int,
           atol: float, rtol: float) -> float:
    from mlms_ir._lazy import onnxruntime

    ort = onnxruntime()

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        raise ConversionError(f"onnxruntime cannot load the exported model: {' '.join(str(exc).split())[:300]}") from exc
    import onnx

    inits = {i.name for i in onnx.load(str(path), load_external_data=False).graph.initializer}
    names = [i.name for i in sess.get_inputs() if i.name not in inits][:n_inputs]
    out_names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    try:
        for b in batches:
            got = sess.run(None, {n: inputs[f"b{b}_{i}"] for i, n in enumerate(names)})
            for j, g in enumerate(got):
                w = want.get(f"b{b}_{j}")
                if w is None:
                    raise ConversionError(f"output '{out_names[j]}' (output {j}) has no counterpart in MXNet's outputs "
                                          f"(batch {b})")
                worst = max(worst, check_close(out_names[j], w, g, batch=b, atol=atol, rtol=rtol, reference="MXNet", error=ConversionError))
    except ConversionError:
        path.unlink(missing_ok=True)
        raise
    return worst

