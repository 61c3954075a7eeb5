"""The divergence arbiter's exact result: one node re-run alone in float64, to say which of two
disagreeing backends is wrong.

When a node's introduced error exceeds the tolerance, both backends computed it from the same
inputs (the reference's values, rounded to the tested precision), and they disagree. The node is
then evaluated once more on float64 copies of those inputs and weights, by ONNX's reference
evaluator on the model converted to the newest opset the installed onnx knows (older versions of
some ops are implemented wrongly there: BatchNormalization below opset 14 is off by up to 3.5
in onnx 1.23, the newest is right), with the ops onnx 1.23 computes differently from ONNX's
definition replaced by :mod:`mlms_ir.backends.reference_ops`' (NegativeLogLikelihoodLoss with
ignore_index, Hardmax/Softmax/LogSoftmax-1/11, LogSoftmax's underflow, GlobalMaxPool,
LpNormalization p=1, LayerNormalization, Unique, MatMulInteger, ReduceSumSquare, LRN, MaxPool,
BatchNormalization below 14), so that it does not blame the right backend. The backend whose result is farther from that exact result, beyond the
tolerance, is the one that is wrong here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from mlms_ir.comparator import tensor_diff
from mlms_ir.results.divergence import Oracle

#: Element types computed in float64 by the oracle.
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


#: Ops whose conversion by onnx's version converter (1.23) changes their meaning: Hardmax 11 to
#: 13 is a bare version bump, without the Flatten and Reshape that keep version 11's 2-D view (the
#: converter adds them for Softmax and LogSoftmax). A model with one is evaluated at its own opset
#: (reference_ops computes each version as defined).
_KEEP_OPSET = {"Hardmax"}


def _retype(vi: onnx.ValueInfoProto) -> None:
    t = vi.type.tensor_type
    if vi.type.HasField("tensor_type") and t.elem_type in _FLOATS:
        t.elem_type = onnx.TensorProto.DOUBLE


def _as_double(t: onnx.TensorProto) -> onnx.TensorProto:
    if t.data_type not in _FLOATS:
        return t
    return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` (one graph, no subgraphs retyped) computing in float64: every float
    input, output, initializer and Constant becomes double, and a Cast to a float type casts to
    double."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for vi in (*g.input, *g.output, *g.value_info):
        _retype(vi)
    inits = [_as_double(t) for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(inits)
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(_as_double(a.t))
            elif node.op_type == "Cast" and a.name == "to" and a.i in _FLOATS:
                a.i = onnx.TensorProto.DOUBLE
    return m


def exact_outputs(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> tuple[dict[str, np.ndarray], str]:
    """The float64 values of ``outputs`` of the (single-node) ``model`` for ``feeds``, and how they
    were computed (for the report)."""
    from onnx import version_converter
    from onnx.reference import ReferenceEvaluator

    m = to_float64(model)
    newest = onnx.defs.onnx_opset_version()
    version = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), newest)
    if version < newest and not any(n.op_type in _KEEP_OPSET for n in m.graph.node):
        try:
            m = version_converter.convert_version(m, newest)
            version = newest
        except Exception:  # noqa: BLE001 - no adapter for some op: evaluate at the model's own opset
            pass
    x = {k: (np.asarray(v).astype(np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)) for k, v in feeds.items()}
    from mlms_ir.backends.reference_ops import fixed_ops

    values = ReferenceEvaluator(m, new_ops=fixed_ops()).run(list(outputs), x)
    return dict(zip(outputs, values)), f"onnx.reference in float64 at opset {version}"


def judge(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], outputs: Sequence[str],
          results: Mapping[str, Mapping[str, np.ndarray]], atol: float, rtol: float) -> Oracle:
    """The arbiter's verdict on one node: each backend's largest error against the exact result
    (:func:`exact_outputs`), the closer backend, and the backends beyond ``atol + rtol*|exact|``
    of it. ``results``: backend name -> its values of ``outputs`` for the same ``feeds``."""
    try:
        exact, method = exact_outputs(model, feeds, outputs)
    except Exception as exc:  # noqa: BLE001 - the evaluator has no float64 kernel, or fails on the node
        return Oracle(closer=None, errors={}, wrong=[], method="onnx.reference in float64",
                      note=f"no exact result: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    errors: dict[str, float | None] = {}
    wrong: list[str] = []
    for name, vals in results.items():
        diffs = [tensor_diff(o, exact[o], vals[o], atol, rtol) for o in outputs if o in vals and exact.get(o) is not None]
        if not diffs:
            errors[name] = None
            continue
        errs = [d.max_abs for d in diffs]
        errors[name] = None if any(e is None for e in errs) else max(errs)
        if any(d.exceeds for d in diffs):
            wrong.append(name)
    known = {k: v for k, v in errors.items() if v is not None}
    best = min(known.values()) if known else None
    closest = [k for k, v in known.items() if v == best]
    return Oracle(closer=closest[0] if len(closest) == 1 else None, errors=errors, wrong=wrong, method=method)
