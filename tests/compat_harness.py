"""Each handler of a standalone compat module alone, on one-node models, in its framework's Python.

onnx-tf and MXNet live in their own environments (``bash tools/make_agent_envs.sh``), so the tests
(tests/test_onnx_tf_compat.py, tests/test_mxnet_compat.py) write their cases to a folder and run
this file there once::

    PYTHON compat_harness.py {onnx-tf|mxnet} BACKENDS_DIR CASES_DIR

For each ``CASES_DIR/<name>.onnx`` (one node) with its feeds ``<name>.npz``, it calls the handler
the compat module's table lists for the node (without :func:`patch`: onnx-tf's own classes and
MXNet's own translations stay as they are) and writes ``<name>.out.npz`` (outputs by name) or
``<name>.err`` (the exception, one line). The module imports only the standard library at top
level: the tests import :func:`run_cases` from it in the core environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BACKENDS = Path(__file__).resolve().parent.parent / "backends"


def run_cases(python, framework: str, cases: dict, folder: Path, timeout: float = 300) -> dict:
    """Run ``cases`` (name -> (ModelProto, feeds)) in ``python``; name -> outputs by name, or the
    error line (a str)."""
    import numpy as np
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    for name, (model, feeds) in cases.items():
        onnx.save(model, folder / f"{name}.onnx")
        np.savez(folder / f"{name}.npz", **feeds)
    done = subprocess.run([str(python), __file__, framework, str(BACKENDS), str(folder)], capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the {framework} harness failed ({done.returncode}): {done.stderr[-3000:]}")
    out: dict = {}
    for name in cases:
        err = folder / f"{name}.err"
        if err.is_file():
            out[name] = err.read_text()
        else:
            with np.load(folder / f"{name}.out.npz") as z:
                out[name] = {k: z[k] for k in z.files}
    return out


def run_alone(python, framework: str, table: dict, rng, folder: Path) -> tuple[dict, dict]:
    """Every one-node case of ``table`` (name -> (node, input shapes, initializers, opset, _)) as
    (its model, its feeds), and what ``framework`` in ``python`` gives for each (:func:`run_cases`)."""
    from op_models import one_node_feeds, one_node_model

    cases = {name: (one_node_model(node, inputs, inits, opset), one_node_feeds(inputs, rng))
             for name, (node, inputs, inits, opset, _) in table.items()}
    return cases, run_cases(python, framework, cases, folder)


def check_alone(alone: tuple[dict, dict], table: dict, case: str, *, atol: float) -> None:
    """One case of :func:`run_alone`'s results: the error the table expects (its last item), or
    onnxruntime's outputs on the same model and feeds."""
    from op_models import assert_outputs_match, ort_outputs

    cases, results = alone
    got, error = results[case], table[case][4]
    if error is not None:
        assert isinstance(got, str) and error in got, got
        return
    assert not isinstance(got, str), got
    model, feeds = cases[case]
    assert_outputs_match(got, ort_outputs(model, feeds), atol=atol, rtol=1e-5)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _since_version(node, opset: int) -> int:
    from onnx import defs

    return defs.get_schema(node.op_type, opset, node.domain).since_version


def _onnx_tf_case(model, feeds: dict) -> dict:
    """The node's handler from onnx_tf_compat's tables, called as onnx-tf calls a ``version_N``
    method, inside a ``tf.function`` whose arguments are the feeds (initializers are constants)."""
    import numpy as np
    import tensorflow as tf
    from onnx import numpy_helper
    from onnx_tf.common import handler_helper
    from onnx_tf.pb_wrapper import OnnxNode

    import onnx_tf_compat as compat

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    classes = handler_helper.get_all_backend_handlers({"": opset})[""]  # sets each class's SINCE_VERSION
    (node,) = model.graph.node
    key = (node.op_type, _since_version(node, opset))
    new = compat.NEW_OPS.get(node.op_type)
    fn = compat.HANDLERS.get(key) or compat.REPLACES.get(key) or (new[1] if new and new[0] == key[1] else None)
    if fn is None:
        raise LookupError(f"onnx_tf_compat has no handler for {key[0]}-{key[1]}")
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    names = list(feeds)

    @tf.function(input_signature=[tf.TensorSpec(feeds[n].shape, tf.as_dtype(feeds[n].dtype)) for n in names])
    def run(*args):
        tensors = dict(zip(names, args))
        tensors.update({k: tf.constant(v) for k, v in consts.items()})
        return fn(classes.get(node.op_type), OnnxNode(node), tensor_dict=tensors, strict=True)

    outs = run(*[tf.constant(feeds[n]) for n in names])
    return {name: np.asarray(v) for name, v in zip([o for o in node.output if o], outs)}


def _mxnet_case(model, feeds: dict) -> dict:
    """The node's translation from mxnet_compat's table (after :func:`prepare`, as the agent does
    before importing), called as the importer calls it, and the symbol it gives run on the feeds."""
    import mxnet as mx
    from mxnet import symbol
    from mxnet.contrib.onnx.onnx2mx.import_onnx import GraphProto

    import mxnet_compat as compat

    compat.prepare(model, {k: v.shape for k, v in feeds.items()})
    (node,) = model.graph.node
    proto = GraphProto()
    proto._params = {t.name: proto._parse_array(t) for t in model.graph.initializer}
    names = list(node.input)
    while names and not names[-1]:
        names.pop()
    inputs = [symbol.Variable(n) if n else None for n in names]
    op, attrs, inputs = compat.TRANSLATIONS[node.op_type](proto._parse_attr(node.attribute), inputs, proto)
    sym = getattr(symbol, op)(*inputs, **attrs) if isinstance(op, str) else op
    values = {**proto._params, **{k: mx.nd.array(v, dtype=v.dtype) for k, v in feeds.items()}}
    outs = sym.eval(ctx=mx.cpu(), **{n: values[n] for n in sym.list_arguments()})
    return {name: o.asnumpy() for name, o in zip([o for o in node.output if o], outs)}


def main(framework: str, backends: str, folder: str) -> None:
    import numpy as np
    import onnx

    sys.path.insert(0, backends)
    case = {"onnx-tf": _onnx_tf_case, "mxnet": _mxnet_case}[framework]
    one_line = __import__("onnx_tf_compat").one_line if framework == "onnx-tf" else _one_line
    for path in sorted(Path(folder).glob("*.onnx")):
        with np.load(path.with_suffix(".npz")) as z:
            feeds = {k: z[k] for k in z.files}
        try:
            outs = case(onnx.load(str(path)), feeds)
        except Exception as exc:  # noqa: BLE001 - each case's error is its result
            path.with_suffix(".err").write_text(one_line(exc))
        else:
            np.savez(str(path.with_suffix(".out.npz")), **outs)
    print(json.dumps({"cases": len(list(Path(folder).glob("*.onnx")))}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
