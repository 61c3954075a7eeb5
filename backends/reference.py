"""The ONNX reference evaluator (``onnx.reference.ReferenceEvaluator``): the numerical ground
truth. Slow, CPU only. Per-node times come from timing each node's kernel call.

Values that are not tensors follow :mod:`mlms_ir.values` (sequences as lists, optionals as their
value or None). The evaluator's own ``Optional`` ops (onnx 1.23) wrap the value in a list, so that
``OptionalGetElement(Optional(x))`` is ``[x]`` and ``OptionalHasElement`` of an empty optional is
true; this backend replaces the three ops with ones that keep the value itself, and an empty
optional as :class:`EmptyOptional` (the evaluator refuses None as an op's result), given back as None.

onnx 1.23's ``Loop`` joins its scan outputs with ``np.vstack``, which gives per-iteration scalars a
second axis (n iterations of a scalar make (n, 1), ONNX's definition (n,)) and concatenates
per-iteration matrices instead of stacking them: the functions built on Loop, such as Range's
(``test_range_*_expanded``), came back with the wrong shape. This backend's ``Loop``
(:func:`loop_op`) stacks them on a new first axis, as ONNX defines and onnxruntime computes.

onnx 1.23's evaluator computes a few more ops differently from ONNX's definition
(NegativeLogLikelihoodLoss, Hardmax, Softmax and LogSoftmax 1/11, LogSoftmax's underflow,
GlobalMaxPool, LpNormalization, LayerNormalization, Unique, MatMulInteger, ReduceSumSquare, LRN,
MaxPool, BatchNormalization below 14): this backend, and the divergence arbiter, use
:mod:`mlms_ir.backends.reference_ops`' replacements, and refuse (one line) what those do not
compute (BatchNormalization below 14 in training mode).
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import onnx

from mlms_ir.backends.base import Availability, Backend, BackendError, NodeTrace, Session, TraceResult, model_source
from mlms_ir.ir import Graph
from mlms_ir.values import Value, normalise


class EmptyOptional(list):
    """An empty optional inside the evaluator (which holds no None as an op's result); never
    returned: outputs give None. A list, which the evaluator accepts, that copies as itself."""

    def copy(self) -> EmptyOptional:  # Identity copies its input
        return EmptyOptional()


def is_empty_optional(value: object) -> bool:
    return isinstance(value, EmptyOptional)


def optional_ops() -> list[type]:
    """``Optional``, ``OptionalHasElement`` and ``OptionalGetElement`` for the evaluator's
    ``new_ops``, holding an optional as its value (or :class:`EmptyOptional`)."""
    from onnx.reference.op_run import OpRun

    class Optional(OpRun):
        op_domain = ""

        def _run(self, x=None, type=None):  # noqa: A002 - the attribute's name
            return (EmptyOptional() if x is None else x,)

    class OptionalHasElement(OpRun):
        op_domain = ""

        def _run(self, x=None):
            return (np.array(x is not None and not is_empty_optional(x)),)

    class OptionalGetElement(OpRun):
        op_domain = ""

        def _run(self, x=None):
            if x is None or is_empty_optional(x):
                raise ValueError("OptionalGetElement of an empty optional")
            return (x,)

    return [Optional, OptionalHasElement, OptionalGetElement]


def loop_op() -> type:
    """``Loop`` for the evaluator's ``new_ops``: onnx's own, with its scan outputs stacked on a new
    first axis as ONNX defines (onnx 1.23 joins them with ``np.vstack``): each iteration's scan
    value gets a leading axis of 1 before that ``vstack``, and scalars, which ``vstack`` makes
    (n, 1), are flattened back to (n,)."""
    from onnx.reference.ops.op_loop import Loop as OnnxLoop

    class Loop(OnnxLoop):
        op_domain = ""

        def __init__(self, onnx_node, run_params):  # noqa: ANN001 - onnx's signature
            super().__init__(onnx_node, run_params)
            self._scalar_scans: set[int] = set()
            if self.K <= 0:
                return
            run_body = self._run_body  # onnx's OpRun sets it on the instance, from the body attribute

            def stacked(*args, **kwargs):
                outputs = list(run_body(*args, **kwargs))
                for k in range(self.K):
                    j = len(outputs) - self.K + k
                    value = np.asarray(outputs[j])
                    if value.ndim == 0:
                        self._scalar_scans.add(k)
                    else:
                        outputs[j] = value[np.newaxis]
                return outputs

            self._run_body = stacked

        def _run(self, *args, **kwargs):  # noqa: ANN002, ANN003 - onnx's signature
            self._scalar_scans = set()
            outputs = list(super()._run(*args, **kwargs))
            for k in self._scalar_scans:
                outputs[self.N + k] = outputs[self.N + k].reshape(-1)
            return tuple(outputs)

    return Loop


def _fed(feeds: dict[str, Value]) -> dict[str, object]:
    """Feeds as the evaluator takes them: an empty optional (None) as :class:`EmptyOptional`."""
    return {k: EmptyOptional() if v is None else v for k, v in feeds.items()}


class ReferenceBackend(Backend):
    name = "reference"
    devices = ("cpu",)
    takes_non_tensors = True
    description = "onnx.reference.ReferenceEvaluator (numerical ground truth, slow)"

    def _available_impl(self, device: str, **options: Any) -> Availability:
        return Availability(True)

    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        return ReferenceSession(graph, device)


class ReferenceSession(Session):
    backend_name = "reference"
    #: Whether onnx's wrongly computed ops are replaced (:mod:`mlms_ir.backends.reference_ops`);
    #: tests turn it off to show the unpatched evaluator's bugs.
    fix_onnx_ops = True

    def __init__(self, graph: Graph, device: str) -> None:
        super().__init__(self.backend_name, device, graph)
        from onnx.reference import ReferenceEvaluator

        from mlms_ir.backends.reference_ops import RefusedNode, fixed_ops
        from mlms_ir.ir.load import normalize_default_domain

        src = model_source(graph)
        try:
            model = onnx.load(src) if isinstance(src, str) else onnx.load_model(io.BytesIO(src))
            normalize_default_domain(model)  # the evaluator knows no domain "ai.onnx"
            fixed = fixed_ops() if self.fix_onnx_ops else []
            self._ev = ReferenceEvaluator(model, new_ops=[*optional_ops(), loop_op(), *fixed])
        except RefusedNode as exc:
            raise BackendError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the evaluator raises many types for unsupported models
            raise BackendError(f"the reference evaluator cannot load the model: {' '.join(str(exc).split())[:400]}") from exc
        self._output_names = list(self._ev.output_names)
        self._timings: list[tuple[int, float, float]] | None = None
        self._covers: list[list[str]] = []
        for k, rt in enumerate(self._ev.rt_nodes_):
            prod = next((graph.producer(o) for o in rt.output if o and graph.producer(o) is not None), None)
            self._covers.append([prod.id] if prod is not None else [])
            rt.run = self._timed(k, rt.run)

    def _timed(self, k: int, run):
        def wrapper(*args, **kwargs):
            if self._timings is None:
                return run(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                self._timings.append((k, t0, time.perf_counter()))

        return wrapper

    def _call(self, feeds: dict[str, Value]) -> dict[str, Value]:
        try:
            with np.errstate(all="ignore"):  # a log of a negative is NaN, said by the comparison, not by numpy on stderr
                outs = self._ev.run(None, _fed(feeds))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the reference evaluator failed: {' '.join(str(exc).split())[:400]}") from exc
        return dict(zip(self._output_names, (normalise(o, is_empty_optional) for o in outs)))

    def _run_impl(self, feeds: dict[str, Value]) -> dict[str, Value]:
        return self._call(feeds)

    def _intermediates_impl(self, feeds: dict[str, Value], names: list[str]) -> dict[str, Value]:
        produced = {o for rt in self._ev.rt_nodes_ for o in rt.output if o}
        wanted = [n for n in names if n in produced or n in feeds]
        if not wanted:
            return {}
        try:
            with np.errstate(all="ignore"):
                values = self._ev.run(wanted, _fed(feeds))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the reference evaluator failed: {' '.join(str(exc).split())[:400]}") from exc
        return {n: normalise(v, is_empty_optional) for n, v in zip(wanted, values)}

    def _trace_impl(self, feeds: dict[str, Value], runs: int) -> list[TraceResult]:
        results = []
        for _ in range(runs):
            self._timings = []
            t0 = time.perf_counter()
            try:
                outputs = self._call(feeds)
            finally:
                timings, self._timings = self._timings, None
            wall = (time.perf_counter() - t0) * 1e6
            events = [
                NodeTrace(
                    name=self._ev.rt_nodes_[k].onnx_node.name or self._ev.rt_nodes_[k].op_type,
                    op_type=self._ev.rt_nodes_[k].op_type,
                    start_us=(start - t0) * 1e6,
                    time_us=(end - start) * 1e6,
                    covers=list(self._covers[k]),
                )
                for k, start, end in timings
            ]
            results.append(TraceResult(outputs, events, wall))
        return results
