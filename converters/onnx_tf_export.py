"""Standalone: convert an ONNX model to a TensorFlow SavedModel with onnx-tf and run the SavedModel.

Run by :mod:`mlms_ir.converters.onnx_tf` with the onnx-tf environment's Python (onnx-tf 1.10
needs TensorFlow 2.15, numpy<2 and onnx<=1.18, so it cannot live beside mlms_ir). It imports
only the standard library, numpy, onnx, tensorflow, onnx_tf and ``onnx_tf_compat`` (the op
versions onnx-tf lacks, from ``mlms_ir/backends``), never mlms_ir, and is run from a copy in a
temporary folder, with ``onnx_tf_compat.py`` and the ``onnx_versions.py`` it imports copied
beside it (beside this file, ``tensorflow.py`` and ``onnx_tf.py`` would shadow the real packages)::

    PYTHON onnx_tf_export.py REQUEST.json

The request (JSON): ``model`` (the .onnx path; external data resolves beside it), ``output``
(the SavedModel folder to write; it must not exist), ``check_inputs`` (optional: an .npz of
inputs keyed ``b{B}_{i}``, batch size ``B``, ``i`` the index of the graph input among the
non-initializer inputs), ``check_outputs`` (where to write the SavedModel's outputs, keyed
``b{B}_{j}``, ``j`` the index of the graph output), ``result`` (the JSON written back).

The result: ``status`` (``ok`` or ``error``), ``stage`` (where it failed: ``import``, ``load``,
``convert``, ``reload``, ``run``), ``error`` (one line), ``onnx_tf_version``,
``tensorflow_version``, ``onnx_version``, ``numpy_version``, ``python``, ``renamed_inputs``
(ONNX name -> signature name, for inputs whose names TensorFlow cannot take as arguments),
``signature_inputs`` / ``signature_outputs`` (name -> ``{"dtype", "shape"}`` of the SavedModel's
``serving_default`` signature; a dim is null when dynamic), ``output_keys`` (the signature's
output key of each graph output, in graph order).

onnx-tf 1.10 builds a ``tf.function`` whose keyword arguments are the graph's input names; a name
TensorFlow has to rewrite (``input.1``) makes its export fail with a ``KeyError``, so such inputs
are renamed (``input_1``) in the model before conversion.
"""

from __future__ import annotations

import json
import keyword
import os
import platform
import re
import sys

_VALID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _one_line(exc: BaseException) -> str:
    from onnx_tf_compat import one_line  # copied beside this script with it

    return one_line(exc)


def _safe_names(names: list[str], taken: set[str]) -> dict[str, str]:
    """ONNX name -> a name TensorFlow takes as a keyword argument, for the names that need one."""
    out: dict[str, str] = {}
    used = set(taken)
    for name in names:
        if _VALID.match(name) and not keyword.iskeyword(name):
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not base or not base[0].isalpha():
            base = "input_" + base
        new, k = base, 1
        while new in used:
            k += 1
            new = f"{base}_{k}"
        used.add(new)
        out[name] = new
    return out


def _rename(graph, mapping: dict[str, str]) -> None:
    """Rename tensors in ``graph`` and every subgraph that refers to them (If/Loop/Scan bodies)."""
    import onnx

    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x in mapping:
                node.input[i] = mapping[x]
        for i, x in enumerate(node.output):
            if x in mapping:
                node.output[i] = mapping[x]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename(attr.g, mapping)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _rename(g, mapping)


def _spec(t) -> dict:
    shape = None if t.shape.rank is None else [None if d is None else int(d) for d in t.shape.as_list()]
    return {"dtype": t.dtype.name, "shape": shape}


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        req = json.load(fh)
    res: dict = {"status": "ok", "stage": "import", "error": "", "python": platform.python_version()}
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from importlib import metadata

        import numpy as np
        import onnx
        import onnx_tf
        import tensorflow as tf
        from onnx_tf.backend import prepare
        from onnx_tf_compat import patch  # the op versions onnx-tf 1.10 lacks

        res["onnx_tf_added_ops"] = patch()
        res.update(numpy_version=np.__version__, onnx_version=onnx.__version__, tensorflow_version=tf.__version__,
                   onnx_tf_version=getattr(onnx_tf, "__version__", "") or metadata.version("onnx-tf"))

        res["stage"] = "load"
        model = onnx.load(req["model"])
        inits = {t.name for t in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in inits]
        outputs = [o.name for o in model.graph.output]
        taken = set(inputs) | set(outputs) | inits | {x for n in model.graph.node for x in list(n.input) + list(n.output)}
        mapping = _safe_names(inputs, taken)
        if mapping:
            _rename(model.graph, mapping)
        res["renamed_inputs"] = mapping

        res["stage"] = "convert"
        rep = prepare(model, logging_level="ERROR")
        rep.export_graph(req["output"])

        res["stage"] = "reload"
        loaded = tf.saved_model.load(req["output"])
        if "serving_default" not in loaded.signatures:
            raise RuntimeError(f"the SavedModel has no serving_default signature (it has: {', '.join(loaded.signatures) or 'none'})")
        fn = loaded.signatures["serving_default"]
        sig_in = fn.structured_input_signature[1]
        sig_out = fn.structured_outputs
        res["signature_inputs"] = {k: _spec(v) for k, v in sig_in.items()}
        res["signature_outputs"] = {k: _spec(v) for k, v in sig_out.items()}
        names = [mapping.get(n, n) for n in inputs]
        missing = [n for n in names if n not in sig_in]
        if missing:
            raise RuntimeError(f"the SavedModel's signature has no input {', '.join(missing)} (it has: {', '.join(sig_in)})")
        keys = []
        for o in outputs:
            k = mapping.get(o, o)
            if k not in sig_out:
                raise RuntimeError(f"the SavedModel's signature has no output '{o}' (it has: {', '.join(sig_out)})")
            keys.append(k)
        res["output_keys"] = keys

        if req.get("check_inputs"):
            res["stage"] = "run"
            with np.load(req["check_inputs"], allow_pickle=False) as d:
                feeds = {k: d[k] for k in d.files}
            got = {}
            # the batches come with the request: a model without inputs has no feeds to read them from
            for b in req.get("check_batches") or sorted({int(k.split("_")[0][1:]) for k in feeds}):
                args = {n: tf.constant(feeds[f"b{b}_{i}"]) for i, n in enumerate(names)}
                out = fn(**args)
                for j, k in enumerate(keys):
                    got[f"b{b}_{j}"] = out[k].numpy()
            np.savez(req["check_outputs"], **got)
        res["stage"] = "done"
    except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
        res.update(status="error", error=_one_line(exc))
        import traceback

        traceback.print_exc(file=sys.stderr)
    with open(req["result"], "w", encoding="utf-8") as fh:
        json.dump(res, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
