"""Standalone: export an MXNet symbol + params to ONNX and run the source model on check inputs.

Run by :mod:`mlms_ir.converters.mxnet` with the MXNet environment's Python (mxnet 1.9.1 needs
numpy<1.24 and onnx<=1.18, so it cannot live beside mlms_ir). It imports only the standard
library, numpy, onnx and mxnet, never mlms_ir::

    PYTHON mxnet_export.py REQUEST.json

The request: ``symbol``, ``params``, ``output`` (the .onnx path), ``input_shapes`` (one list per
input, the batch dim first), ``dynamic`` (keep the batch dim dynamic), ``check_inputs`` (an
.npz of inputs per batch size, keyed ``b{B}_{i}``; optional), ``check_outputs`` (where to write
the source's outputs, keyed the same way), ``result`` (the JSON written back: ``status``,
``error``, ``mxnet_version``, ``onnx_version``, ``opset``).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    req = json.loads(open(argv[1]).read())
    res = {"status": "ok", "error": ""}
    try:
        import mxnet as mx
        import numpy as np
        import onnx

        res.update(mxnet_version=mx.__version__, onnx_version=onnx.__version__)
        shapes = [tuple(s) for s in req["input_shapes"]]
        kw = {}
        if req.get("dynamic"):
            kw = {"dynamic": True, "dynamic_input_shapes": [(None, *s[1:]) for s in shapes]}
        mx.onnx.export_model(req["symbol"], req["params"], shapes, [np.float32] * len(shapes), req["output"], **kw)
        res["opset"] = max((o.version for o in onnx.load(req["output"]).opset_import if o.domain in ("", "ai.onnx")), default=None)
        if req.get("check_inputs"):
            sym = mx.sym.load(req["symbol"])
            loaded = mx.nd.load(req["params"])
            args = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("arg:")}
            aux = {k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("aux:")}
            names = [n for n in sym.list_inputs() if n not in args and n not in aux]
            with np.load(req["check_inputs"], allow_pickle=False) as d:
                feeds = {k: d[k] for k in d.files}
            outs = {}
            for b in sorted({int(k.split("_")[0][1:]) for k in feeds}):
                xs = {n: mx.nd.array(feeds[f"b{b}_{i}"]) for i, n in enumerate(names)}
                ex = sym.bind(mx.cpu(), {**args, **xs}, aux_states=aux, grad_req="null")
                for j, o in enumerate(ex.forward(is_train=False)):
                    outs[f"b{b}_{j}"] = o.asnumpy()
            np.savez(req["check_outputs"], **outs)
    except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
        res = {**res, "status": "error", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
    with open(req["result"], "w") as fh:
        json.dump(res, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
