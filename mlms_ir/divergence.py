"""Divergence analysis: which node makes a backend disagree with a reference, and by how much.

Every intermediate tensor (node output) of the backend under test is compared with the
reference backend's, in execution order, in chunks whose size follows a memory budget (values
are dropped as soon as they are compared). Then, for the nodes whose outputs diverge, each
node is re-run *alone* on the backend under test with the reference's inputs: the error a node
**introduces** is separated from the error it only **passes on**. The first divergent node
in execution order and the nodes that introduce the most error are where to look.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from mlms_ir.errors import MlmsIrError
from mlms_ir.ir import Graph, load
from mlms_ir.ir.load import ModelSource
from mlms_ir.ir.shapes import Dims, InputShapes

log = logging.getLogger(__name__)

DIVERGENCE_SCHEMA_VERSION = "1.0"
#: Default tolerances: an element diverges when |test - ref| > atol + rtol * |ref|.
DEFAULT_ATOL, DEFAULT_RTOL = 1e-5, 1e-3
#: Default (atol, rtol) per precision of the backend under test: a few units in the last place
#: of the format (float16: 2^-10 relative, bfloat16: 2^-7), accumulated over a layer.
TOLERANCES = {"fp32": (DEFAULT_ATOL, DEFAULT_RTOL), "fp16": (1e-3, 1e-2), "bf16": (1e-2, 5e-2), "int8": (5e-2, 1e-1)}


@dataclass
class TensorDiff:
    """How one tensor of the backend under test differs from the reference's."""

    tensor: str
    elements: int
    max_abs: float | None
    max_rel: float | None
    mean_abs: float | None
    rmse: float | None
    cosine: float | None
    snr_db: float | None
    outside_share: float
    nan_ref: int
    nan_test: int
    inf_ref: int
    inf_test: int
    exceeds: bool
    note: str = ""


@dataclass
class NodeDivergence:
    """The worst of a node's output tensors, accumulated and (where computed) introduced."""

    id: str
    name: str
    op_type: str
    max_abs: float | None
    max_rel: float | None
    cosine: float | None
    snr_db: float | None
    outside_share: float
    nan: int
    exceeds: bool
    introduced_max_abs: float | None = None
    introduced_max_rel: float | None = None
    introduced_exceeds: bool | None = None
    introduced_note: str = ""
    tensors: list[TensorDiff] = field(default_factory=list)


@dataclass
class DivergenceReport:
    model: dict[str, Any]
    backend: str
    reference: str
    device: str
    precision: str
    atol: float
    rtol: float
    first_divergent: dict[str, str] | None
    first_nan: dict[str, str] | None
    top_introduced: list[dict[str, Any]]
    outputs: list[TensorDiff]
    nodes: list[NodeDivergence]
    compared_tensors: int
    missing_tensors: list[str]
    schema_version: str = DIVERGENCE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _clean(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def tensor_diff(name: str, ref: np.ndarray, test: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> TensorDiff:
    """Max abs/rel error, mean abs error, RMSE, cosine similarity, SNR (dB), the share of elements
    outside ``atol + rtol*|ref|`` and NaN/Inf counts of ``test`` against ``ref``."""
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.shape != test.shape:
        return TensorDiff(name, int(ref.size), None, None, None, None, None, None, 1.0, 0, 0, 0, 0, True,
                          f"shape {tuple(test.shape)} differs from the reference's {tuple(ref.shape)}")
    if ref.dtype.kind not in "fc" or test.dtype.kind not in "fc":
        differ = int(np.count_nonzero(ref != test)) if ref.size else 0
        share = differ / ref.size if ref.size else 0.0
        return TensorDiff(name, int(ref.size), float(differ > 0), None, None, None, None, None, share, 0, 0, 0, 0, differ > 0,
                          "compared exactly (not floating point)")
    a = ref.astype(np.float64).ravel()
    b = test.astype(np.float64).ravel()
    nan_a, nan_b = int(np.isnan(a).sum()), int(np.isnan(b).sum())
    inf_a, inf_b = int(np.isinf(a).sum()), int(np.isinf(b).sum())
    finite = np.isfinite(a) & np.isfinite(b)
    mismatch_nonfinite = int(np.count_nonzero(~finite & ~((np.isnan(a) & np.isnan(b)) | (a == b))))
    if a.size == 0:
        return TensorDiff(name, 0, 0.0, 0.0, 0.0, 0.0, 1.0, None, 0.0, 0, 0, 0, 0, False)
    af, bf = a[finite], b[finite]
    d = np.abs(af - bf)
    max_abs = float(d.max()) if d.size else 0.0
    rel = d / np.maximum(np.abs(af), np.finfo(np.float64).tiny)
    max_rel = float(rel.max()) if rel.size else 0.0
    mean_abs = float(d.mean()) if d.size else 0.0
    rmse = float(math.sqrt(float(np.mean(d * d)))) if d.size else 0.0
    na, nb = float(np.linalg.norm(af)), float(np.linalg.norm(bf))
    cosine = float(np.dot(af, bf) / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    noise = float(np.sum(d * d))
    signal = float(np.sum(af * af))
    snr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    outside = int(np.count_nonzero(d > atol + rtol * np.abs(af))) + mismatch_nonfinite
    share = outside / a.size
    return TensorDiff(name, int(a.size), max_abs, max_rel, mean_abs, rmse, cosine, snr, share, nan_a, nan_b, inf_a, inf_b, outside > 0)


def _worst(node_id: str, name: str, op_type: str, diffs: list[TensorDiff]) -> NodeDivergence:
    def mx(vals: Iterable[float | None]) -> float | None:
        v = [x for x in vals if x is not None]
        return max(v) if v else None

    def mn(vals: Iterable[float | None]) -> float | None:
        v = [x for x in vals if x is not None]
        return min(v) if v else None

    return NodeDivergence(
        id=node_id, name=name, op_type=op_type,
        max_abs=mx(t.max_abs for t in diffs), max_rel=mx(t.max_rel for t in diffs),
        cosine=mn(t.cosine for t in diffs), snr_db=mn(t.snr_db for t in diffs),
        outside_share=max((t.outside_share for t in diffs), default=0.0),
        nan=sum(t.nan_test for t in diffs), exceeds=any(t.exceeds for t in diffs), tensors=diffs,
    )


def _chunks(names: list[str], graph: Graph, budget_bytes: int) -> list[list[str]]:
    """Split tensor names (in execution order) into chunks whose values fit the memory budget."""
    out: list[list[str]] = [[]]
    size = 0
    for n in names:
        b = graph.tensors[n].nbytes or 0
        if out[-1] and size + b > budget_bytes:
            out.append([])
            size = 0
        out[-1].append(n)
        size += b
    return [c for c in out if c]


def single_node_model(graph: Graph, node_id: str, weights: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto | None:
    """A model of one node: its activations become graph inputs, its weights stay initializers
    (external ones are loaded from ``base_dir``). None for nodes that cannot stand alone."""
    from onnx.external_data_helper import load_external_data_for_tensor

    node = graph.node(node_id)
    if node.op_type == "Constant" or node.subgraphs:
        return None
    inits = {t.name: t for t in weights.graph.initializer}
    inputs, initializers = [], []
    for name in dict.fromkeys(x for x in node.proto.input if x):
        if name in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[name])
            if t.data_location == onnx.TensorProto.EXTERNAL and base_dir is not None:
                load_external_data_for_tensor(t, str(base_dir))
                t.data_location = onnx.TensorProto.DEFAULT
                del t.external_data[:]
            initializers.append(t)
        else:
            info = graph.tensor(name)
            if info is None or not info.known:
                return None
            inputs.append(helper.make_tensor_value_info(name, info.elem_type, list(info.shape)))
    outputs = []
    for name in node.proto.output:
        if name:
            info = graph.tensor(name)
            outputs.append(helper.make_tensor_value_info(name, info.elem_type if info else 0, list(info.shape) if info and info.known else None))
    g = helper.make_graph([node.proto], f"node_{node_id}", inputs, outputs, initializers)
    m = helper.make_model(g, opset_imports=list(weights.opset_import))
    m.ir_version = weights.ir_version
    return m


def diverge(
    model: ModelSource,
    backend: str = "ort",
    reference: str = "reference",
    *,
    device: str = "cpu",
    batch: int | None = None,
    input_shapes: InputShapes = None,
    dims: Dims = None,
    inputs: str | dict | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    precision: str = "fp32",
    options: dict[str, Any] | None = None,
    introduced: str = "auto",
    max_introduced: int = 200,
    memory_budget_bytes: int = 1 << 30,
    seed: int = 0,
    top: int = 10,
) -> DivergenceReport:
    """Compare every intermediate tensor of ``backend`` with ``reference``'s.

    ``precision`` runs the backend under test in fp16, bf16 or int8 (where it can: ORT fp16 and
    dynamic int8 quantization, torch autocast fp16/bf16) against the fp32 reference; ``atol``/``rtol`` default to :data:`TOLERANCES` for it.
    ``introduced``: ``auto`` re-runs alone the nodes whose outputs diverge (at most
    ``max_introduced``), ``all`` every node, ``none`` none. Raises :class:`MlmsIrError` subclasses
    for bad input or a backend that cannot run here."""
    from mlms_ir.backends import registry
    from mlms_ir.runner import _feeds, _model_info

    if introduced not in ("auto", "all", "none"):
        raise MlmsIrError(f"introduced must be auto, all or none, not '{introduced}'")
    if precision not in TOLERANCES:
        raise MlmsIrError(f"precision must be one of {', '.join(TOLERANCES)}, not '{precision}'")
    atol = TOLERANCES[precision][0] if atol is None else float(atol)
    rtol = TOLERANCES[precision][1] if rtol is None else float(rtol)
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
    feeds = _feeds(graph, inputs, seed)
    test_be, ref_be = registry.get(backend), registry.get(reference)
    names = [o for n in graph.nodes for o in n.proto.output if o and graph.tensors[o].kind == "activation"]
    diffs: dict[str, TensorDiff] = {}
    missing: list[str] = []
    opts = dict(options or {})
    if precision != "fp32":
        opts["precision"] = precision
    if test_be.name == "ort":
        opts.setdefault("opt", "none")  # 1:1 with the graph unless asked otherwise
    with ref_be.prepare(graph, "cpu" if device != "cpu" and ref_be.name == "reference" else device) as ref_s, \
            test_be.prepare(graph, device, **opts) as test_s:
        for chunk in _chunks(names, graph, memory_budget_bytes // 2):
            ref_vals = ref_s.intermediates(feeds, chunk)
            test_vals = test_s.intermediates(feeds, chunk)
            for n in chunk:
                if n in ref_vals and n in test_vals:
                    diffs[n] = tensor_diff(n, ref_vals[n], test_vals[n], atol, rtol)
                else:
                    missing.append(n)
            del ref_vals, test_vals
        out_ref, out_test = ref_s.run(feeds), test_s.run(feeds)
    outputs = [tensor_diff(n, out_ref[n], out_test[n], atol, rtol) for n in graph.output_names if n in out_ref and n in out_test]

    nodes: list[NodeDivergence] = []
    for node in graph.nodes:
        ds = [diffs[o] for o in node.proto.output if o in diffs]
        if ds:
            nodes.append(_worst(node.id, node.name, node.op_type, ds))
    first = next((n for n in nodes if n.exceeds), None)
    first_nan = next((n for n in nodes if n.nan > sum(t.nan_ref for t in n.tensors)), None)

    if introduced != "none":
        candidates = [n for n in nodes if introduced == "all" or n.exceeds][:max_introduced]
        _introduced(graph, candidates, feeds, ref_be, test_be, device, opts, atol, rtol, precision)
    ranked = sorted((n for n in nodes if n.introduced_max_abs is not None),
                    key=lambda n: (not n.introduced_exceeds, -(n.introduced_max_abs or 0.0)))
    top_introduced = [{"id": n.id, "name": n.name, "op_type": n.op_type, "introduced_max_abs": n.introduced_max_abs,
                       "introduced_max_rel": n.introduced_max_rel, "exceeds": n.introduced_exceeds} for n in ranked[:top]]
    ident = lambda n: {"id": n.id, "name": n.name, "op_type": n.op_type} if n else None  # noqa: E731
    return DivergenceReport(
        model=_model_info(graph), backend=backend, reference=reference, device=device, precision=precision, atol=atol, rtol=rtol,
        first_divergent=ident(first), first_nan=ident(first_nan), top_introduced=top_introduced, outputs=outputs,
        nodes=nodes, compared_tensors=len(diffs), missing_tensors=missing,
    )


def _rounded(a: np.ndarray, precision: str) -> np.ndarray:
    """``a`` rounded to the precision the backend under test computes in (float inputs only)."""
    if precision in ("fp32", "int8") or a.dtype.kind != "f":
        return a  # int8 models quantize their own inputs
    if precision == "fp16":
        return a.astype(np.float16).astype(a.dtype)
    import ml_dtypes

    return a.astype(ml_dtypes.bfloat16).astype(a.dtype)


def _introduced(graph: Graph, candidates: Sequence[NodeDivergence], feeds, ref_be, test_be, device: str, opts: dict,
                atol: float, rtol: float, precision: str = "fp32") -> None:
    """Re-run each candidate node alone on the backend under test and on the reference, both with
    the reference's inputs (rounded to the tested precision, so that rounding the inputs is not
    blamed on the node)."""
    if not candidates:
        return
    from mlms_ir.backends.base import model_source

    src = model_source(graph)
    weights = onnx.load(src, load_external_data=False) if isinstance(src, str) else onnx.load_model_from_string(src)
    base_dir = Path(src).parent if isinstance(src, str) else None
    needed = list(dict.fromkeys(
        x for c in candidates for x in list(graph.node(c.id).proto.input) + list(graph.node(c.id).proto.output)
        if x and graph.tensors.get(x) is not None and graph.tensors[x].kind != "initializer"
    ))
    with ref_be.prepare(graph, "cpu" if ref_be.name == "reference" else device) as ref_s:
        values = ref_s.intermediates(feeds, needed)
    values.update({k: v for k, v in feeds.items() if k in needed})
    for c in candidates:
        sub = single_node_model(graph, c.id, weights, base_dir)
        if sub is None:
            c.introduced_note = "cannot run alone (a Constant, or a node with subgraphs or unknown shapes)"
            continue
        try:
            sg = load(sub, lenient=True)
            sub_feeds = {n: _rounded(values[n], precision) for n in sg.input_names}
            with test_be.prepare(sg, device, **opts) as s:
                got = s.run(sub_feeds)
            if precision == "fp32":
                want = values
            else:
                with ref_be.prepare(sg, "cpu" if ref_be.name == "reference" else device) as r:
                    want = r.run(sub_feeds)
        except (MlmsIrError, KeyError) as exc:
            c.introduced_note = f"could not re-run alone: {exc}"
            continue
        ds = [tensor_diff(o, want[o], got[o], atol, rtol) for o in graph.node(c.id).proto.output if o in want and o in got]
        if ds:
            w = _worst(c.id, c.name, c.op_type, ds)
            c.introduced_max_abs, c.introduced_max_rel, c.introduced_exceeds = w.max_abs, w.max_rel, w.exceeds
