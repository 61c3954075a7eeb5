"""Divergence analysis: which node makes a backend disagree with a reference, and by how much.

Every intermediate tensor (node output) of the backend under test is compared with the
reference backend's, in execution order, in chunks whose size follows a memory budget (values
are dropped as soon as they are compared). Then, for the nodes whose outputs diverge, each
node is re-run *alone* on the backend under test with the reference's inputs: the error a node
**introduces** is separated from the error it only **passes on**. The first divergent node
in execution order and the nodes that introduce the most error are where to look.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from mlms_ir.errors import MlmsIrError
from mlms_ir.ir import Graph, load
from mlms_ir.ir.graph import node_reads
from mlms_ir.ir.load import ModelSource
from mlms_ir.ir.shapes import Dims, InputShapes
from mlms_ir.comparator import TOLERANCES, model_precision, tolerances, value_diffs
from mlms_ir.inputs import batch_of, feeds_for
from mlms_ir.progress import progress_bar
from mlms_ir.results.base import model_ref
from mlms_ir.results.divergence import DivergenceReport, DivergenceRun, FailedBackend, NodeDivergence, TensorDiff

log = logging.getLogger(__name__)

#: Default tolerances: an element diverges when |test - ref| > atol + rtol * |ref|.
def _worst_tensor(name: str, parts: list[TensorDiff]) -> TensorDiff:
    """One figure for a value whose parts (a sequence's tensors) were compared one by one: the part
    that exceeds first, else the one with the largest error."""
    if len(parts) == 1:
        return parts[0]
    bad = [p for p in parts if p.exceeds]
    if bad:
        return bad[0]
    return max(parts, key=lambda p: p.max_abs or 0.0, default=TensorDiff(name, 0, None, None, None, None, None, None, 0.0, 0, 0, 0, 0, False,
                                                                          "empty: no tensor in it"))


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


_reads = node_reads  # what a node reads, its subgraphs' outer-scope names included


def plan_segments(graph: Graph, budget_bytes: int) -> list[list[str]]:
    """Split the main graph's nodes (in execution order) into consecutive segments, each of
    whose activations and weights fit ``budget_bytes``; a node larger than the budget is a
    segment of its own. A cut is only made where every tensor crossing it is a tensor of known
    type and shape (so that it can feed the next segment). Returns lists of node ids."""
    nodes = graph.nodes
    reads = [_reads(n.proto) for n in nodes]
    last_use: dict[str, int] = {}
    for i, rs in enumerate(reads):
        for x in rs:
            last_use[x] = i
    for x in graph.output_names:
        last_use[x] = len(nodes)
    produced_at = {o: i for i, n in enumerate(nodes) for o in n.proto.output if o}

    def size(name: str) -> int:
        info = graph.tensors.get(name)
        return (info.nbytes or 0) if info is not None else 0

    unknown = [o for n in nodes for o in n.proto.output if o and _kind(graph, o) == "activation" and size(o) == 0
               and graph.tensors[o].value_kind == "tensor"]  # a sequence's size is the data's: not an unknown shape
    if unknown:
        log.warning("divergence: %d tensors of unknown size (e.g. '%s') are counted as 0 bytes in the memory budget",
                    len(unknown), unknown[0])
    outputs = set(graph.output_names)
    segments: list[list[str]] = [[]]
    used = 0
    weights: set[str] = set()
    live: set[str] = set()  # node outputs produced so far that a later node (or the output) reads
    for i, node in enumerate(nodes):
        new_weights = [x for x in reads[i] if x not in weights and x not in produced_at and x not in graph.input_names]
        cost = sum(size(o) for o in node.proto.output if o) + sum(size(x) for x in new_weights)
        if segments[-1] and used + cost > budget_bytes and all(_crossable(graph, x) for x in live if last_use.get(x, -1) >= i):
            segments.append([])
            # the values carried across the cut stay in memory while this segment runs
            used, weights = sum(size(x) for x in live if last_use.get(x, -1) >= i), set()
            new_weights = [x for x in reads[i] if x not in produced_at and x not in graph.input_names]
            cost = sum(size(o) for o in node.proto.output if o) + sum(size(x) for x in new_weights)
        segments[-1].append(node.id)
        used += cost
        weights.update(new_weights)
        live = {x for x in live if last_use.get(x, -1) > i} | {o for o in node.proto.output if o and last_use.get(o, -1) > i
                                                                and (_kind(graph, o) == "activation" or o in outputs)}
    return [s for s in segments if s]


def _kind(graph: Graph, name: str) -> str | None:
    info = graph.tensors.get(name)
    return info.kind if info is not None else None


def _with_constant_producers(graph: Graph, node_ids: Sequence[str]) -> list[str]:
    """``node_ids`` and the nodes that compute, from weights and constants alone, what they read
    (a Constant, an Identity or DequantizeLinear of a weight), in execution order: such tensors
    are recomputed in each segment that reads them rather than passed across a cut."""
    chosen = set(node_ids)
    stack = [x for i in node_ids for x in _reads(graph.node(i).proto)]
    while stack:
        name = stack.pop()
        if _kind(graph, name) not in ("constant", "derived"):
            continue
        p = graph.producer(name)
        if p is not None and p.id not in chosen:
            chosen.add(p.id)
            stack.extend(_reads(p.proto))
    return [n.id for n in graph.nodes if n.id in chosen]


def _crossable(graph: Graph, name: str) -> bool:
    info = graph.tensors.get(name)
    return info is not None and bool(info.elem_type) and info.known


def sub_model(graph: Graph, node_ids: Sequence[str], weights: onnx.ModelProto, base_dir: Path | None,
              outputs: Sequence[str] | None = None) -> onnx.ModelProto | None:
    """A model of some of the main graph's nodes (in order): what they read from outside
    becomes graph inputs, their weights stay initializers (external ones are read from
    ``base_dir``, inside it). ``outputs`` defaults to every output of the nodes. None when a
    node cannot stand in such a model (a tensor it reads has an unknown type or shape)."""
    from onnx.external_data_helper import load_external_data_for_tensor

    inits = {t.name: t for t in weights.graph.initializer}
    protos = [graph.node(i).proto for i in node_ids]
    produced = {o for p in protos for o in p.output if o}
    inputs, initializers = [], []
    for name in dict.fromkeys(x for p in protos for x in _reads(p) if x not in produced):
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
    outs = []
    for name in (outputs if outputs is not None else [o for p in protos for o in p.output if o]):
        info = graph.tensor(name)
        outs.append(helper.make_tensor_value_info(name, info.elem_type if info else 0, list(info.shape) if info and info.known else None))
    g = helper.make_graph(protos, f"nodes_{node_ids[0]}_{node_ids[-1]}", inputs, outs, initializers)
    m = helper.make_model(g, opset_imports=list(weights.opset_import))
    m.ir_version = weights.ir_version
    m.functions.extend(weights.functions)
    return m


def single_node_model(graph: Graph, node_id: str, weights: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto | None:
    """A model of one node: the activations it reads become graph inputs, its weights stay
    initializers (external ones are loaded from ``base_dir``) and the constants it reads are
    computed in it. None for a Constant or a node reading a tensor of unknown shape."""
    node = graph.node(node_id)
    if node.op_type == "Constant":
        return None
    return sub_model(graph, _with_constant_producers(graph, [node_id]), weights, base_dir,
                     outputs=[o for o in node.proto.output if o])


def _weights(graph: Graph) -> tuple[onnx.ModelProto, Path | None]:
    """The model with its weights (external ones left in their files) and the folder they are in."""
    from mlms_ir.backends.base import model_source

    src = model_source(graph)
    weights = onnx.load(src, load_external_data=False) if isinstance(src, str) else onnx.load_model_from_string(src)
    return weights, (Path(src).parent if isinstance(src, str) else None)


class _Comparison:
    """Compares node outputs as they come (all at once, or a segment at a time), keeps the
    per-node results, and re-runs the diverging nodes alone while their reference inputs are at
    hand."""

    def __init__(self, graph: Graph, compared: set[str], atol: float, rtol: float, introduced: str, max_introduced: int,
                 run_alone) -> None:
        self.graph, self.compared, self.atol, self.rtol = graph, compared, atol, rtol
        self.introduced, self.left, self.run_alone = introduced, max_introduced, run_alone
        self.diffs: dict[str, TensorDiff] = {}
        self.missing: list[str] = []
        self.nodes: list[NodeDivergence] = []
        self._weights: tuple[onnx.ModelProto, Path | None] | None = None

    def weights(self) -> tuple[onnx.ModelProto, Path | None]:
        if self._weights is None:
            self._weights = _weights(self.graph)
        return self._weights

    def take(self, node_ids: Sequence[str], ref_vals: dict[str, np.ndarray], test_vals: dict[str, np.ndarray],
             ref_env: dict[str, np.ndarray]) -> None:
        """Compare the outputs of ``node_ids``; ``ref_env`` has the reference's values of
        everything they read and write (for re-running them alone)."""
        new = []
        for nid in node_ids:
            node = self.graph.node(nid)
            ds = []
            for o in node.proto.output:
                if o not in self.compared:
                    continue
                if o in ref_vals and o in test_vals:
                    parts = value_diffs(o, ref_vals[o], test_vals[o], self.atol, self.rtol)
                    ds.extend(parts)
                    self.diffs[o] = _worst_tensor(o, parts)
                else:
                    self.missing.append(o)
            if ds:
                new.append(_worst(node.id, node.name, node.op_type, ds))
        self.nodes.extend(new)
        if self.introduced != "none" and self.left > 0:
            cands = [n for n in new if self.introduced == "all" or n.exceeds][:self.left]
            if cands:
                self.left -= len(cands)
                self.run_alone(cands, ref_env, *self.weights())


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
    ``fp32`` (the default) runs the model as it is: one exported in fp16 or bf16
    (:func:`~mlms_ir.comparator.model_precision`) is reported in that precision, with its tolerances.
    ``introduced``: ``auto`` re-runs alone the nodes whose outputs diverge (at most
    ``max_introduced``), ``all`` every node, ``none`` none. ``memory_budget_bytes`` bounds the
    values held at once: a model whose activations and weights exceed half of it runs in
    consecutive segments (see :func:`plan_segments`) instead of whole (fp32 only: a reduced
    precision converts the whole model, so it always runs whole). Raises :class:`MlmsIrError` subclasses
    for bad input or a backend that cannot run here."""
    from mlms_ir.backends import registry

    if introduced not in ("auto", "all", "none"):
        raise MlmsIrError(f"introduced must be auto, all or none, not '{introduced}'")
    if precision not in TOLERANCES:
        raise MlmsIrError(f"precision must be one of {', '.join(TOLERANCES)}, not '{precision}'")
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
    native = model_precision(graph)
    if precision == "fp32":  # run as it is: a model exported in fp16 or bf16 computes in it
        precision = native
    atol, rtol = tolerances(precision, atol, rtol)
    feeds = feeds_for(graph, inputs, seed)
    test_be, ref_be = registry.get(backend), registry.get(reference)
    names = [o for n in graph.nodes for o in n.proto.output if o and graph.tensors[o].kind == "activation"]
    opts = dict(options or {})
    # the precision the backend under test is converted to (or quantized to); "fp32": run as it is
    converted = precision if precision != native else "fp32"
    if converted != "fp32":
        opts["precision"] = converted
    if test_be.name == "ort":
        opts.setdefault("opt", "none")  # 1:1 with the graph unless asked otherwise
    # the reference computes every tensor of the graph: an optimising runtime as the reference runs
    # unoptimised (ORT's fusions would hide most intermediates: 3 of 122 on ResNet-50)
    ref_opts = {"opt": "none"} if ref_be.name == "ort" else {}
    ref_device = "cpu" if device != "cpu" and ref_be.name == "reference" else device
    # a reduced precision converts (or quantizes) the whole model at once: cutting it first would
    # change what is computed (casts at every cut), so such runs are never streamed
    segments = plan_segments(graph, memory_budget_bytes // 2) if converted == "fp32" else [[n.id for n in graph.nodes]]
    cmp = _Comparison(graph, set(names), atol, rtol, introduced, max_introduced,
                      lambda cands, values, weights, base_dir: _introduced(graph, cands, values, weights, base_dir, ref_be, test_be,
                                                                           device, opts, atol, rtol, converted, ref_opts))
    if len(segments) == 1:
        with ref_be.prepare(graph, ref_device, **ref_opts) as ref_s, test_be.prepare(graph, device, **opts) as test_s:
            wanted = list(dict.fromkeys(names + [n for n in graph.output_names if n not in feeds]))
            ref_vals = ref_s.intermediates(feeds, wanted)
            test_vals = test_s.intermediates(feeds, wanted)
            out_ref = {n: ref_vals[n] for n in graph.output_names if n in ref_vals}
            out_test = {n: test_vals[n] for n in graph.output_names if n in test_vals}
            if len(out_ref) < len(graph.output_names) or len(out_test) < len(graph.output_names):
                out_ref, out_test = ref_s.run(feeds), test_s.run(feeds)
        cmp.take([n.id for n in graph.nodes], ref_vals, test_vals, {**feeds, **ref_vals})
        del ref_vals, test_vals
    else:
        out_ref, out_test = _stream_segments(graph, segments, feeds, ref_be, test_be, ref_device, device, opts, cmp, ref_opts)
    outputs = [d for n in graph.output_names if n in out_ref and n in out_test for d in value_diffs(n, out_ref[n], out_test[n], atol, rtol)]
    nodes, diffs, missing = cmp.nodes, cmp.diffs, cmp.missing
    first = next((n for n in nodes if n.exceeds), None)
    first_nan = next((n for n in nodes if n.nan > sum(t.nan_ref for t in n.tensors)), None)
    ranked = sorted((n for n in nodes if n.introduced_max_abs is not None),
                    key=lambda n: (not n.introduced_exceeds, -(n.introduced_max_abs or 0.0)))
    top_introduced = [{"id": n.id, "name": n.name, "op_type": n.op_type, "introduced_max_abs": n.introduced_max_abs,
                       "introduced_max_rel": n.introduced_max_rel, "exceeds": n.introduced_exceeds} for n in ranked[:top]]
    ident = lambda n: {"id": n.id, "name": n.name, "op_type": n.op_type} if n else None  # noqa: E731
    return DivergenceReport(
        model=model_ref(graph), backend=backend, reference=reference, device=device, precision=precision, atol=atol, rtol=rtol,
        first_divergent=ident(first), first_nan=ident(first_nan), top_introduced=top_introduced, outputs=outputs,
        nodes=nodes, compared_tensors=len(diffs), missing_tensors=missing, segments=len(segments),
        batch=batch_of(feeds), inputs=inputs if isinstance(inputs, str) else ("given" if inputs is not None else "random"),
        seed=seed if inputs is None else None,
        input_shapes={k: [int(d) for d in np.shape(v)] for k, v in feeds.items() if isinstance(v, np.ndarray)},
    )


def diverge_backends(model: ModelSource, backends: Sequence[str], reference: str = "reference", *,
                     options: dict[str, dict[str, Any]] | None = None, progress: bool = False, **kwargs: Any) -> DivergenceRun:
    """:func:`diverge` for each of ``backends`` against one ``reference``; ``options`` per backend
    name, the other keyword arguments as :func:`diverge` takes them; ``progress`` shows a bar on
    stderr, a step per backend.

    A backend that fails is recorded in ``failed`` and the others go on; a model or a binding
    that is wrong (:class:`~mlms_ir.errors.ModelLoadError`, :class:`~mlms_ir.errors.ShapeBindingError`)
    raises at once, since no backend would do better."""
    from mlms_ir.errors import ModelLoadError, ShapeBindingError

    out = DivergenceRun(reports=[])
    with progress_bar(len(backends), "diverge", enabled=progress) as bar:
        for name in backends:
            bar.advance(0, note=f"{name} against {reference}")
            try:
                out.reports.append(diverge(model, name, reference, options=(options or {}).get(name, {}), **kwargs))
            except (ModelLoadError, ShapeBindingError):
                raise
            except MlmsIrError as exc:
                out.failed.append(FailedBackend(backend=name, error=str(exc)))
            bar.advance()
    return out


def _stream_segments(graph: Graph, segments: list[list[str]], feeds: dict[str, np.ndarray], ref_be, test_be, ref_device: str,
                     device: str, opts: dict, cmp: _Comparison, ref_opts: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the graph one segment at a time on both backends, each segment fed with its own
    backend's values of the tensors that cross into it; compare, keep only what a later segment
    (or the graph's output) reads, and drop the rest, so that memory follows the largest segment
    rather than the whole model. Returns both backends' graph outputs."""
    weights, base_dir = cmp.weights()
    last_seg: dict[str, int] = {}
    for k, seg in enumerate(segments):
        for nid in seg:
            for x in _reads(graph.node(nid).proto):
                last_seg[x] = k
    for x in graph.output_names:
        last_seg[x] = len(segments)
    live = {"ref": dict(feeds), "test": dict(feeds)}
    with tempfile.TemporaryDirectory(prefix="mlms_ir_segments_") as tmp:
        for k, seg in enumerate(segments):
            produced = [o for i in seg for o in graph.node(i).proto.output if o]
            crossing = [o for o in produced if last_seg.get(o, -1) > k and (_kind(graph, o) == "activation" or o in graph.output_names)]
            want = [o for o in produced if o in cmp.compared or o in crossing]
            # every wanted tensor an output of the segment, so that no backend needs a second
            # copy of it to expose them; through a file, so that no copy of its weights stays here
            model = sub_model(graph, _with_constant_producers(graph, seg), weights, base_dir, outputs=want or produced[-1:])
            if model is None:  # plan_segments only cuts where crossing tensors are known
                raise MlmsIrError(f"cannot stream the comparison through node '{graph.node(seg[0]).name}': "
                                  "give a larger memory budget")
            path = Path(tmp) / f"segment_{k}.onnx"
            try:
                onnx.save(model, str(path))
            except ValueError as exc:  # protobuf's 2 GB limit (EncodeError is a ValueError)
                raise MlmsIrError(f"the part of the model from node '{graph.node(seg[0]).name or seg[0]}' holds more than 2 GB of "
                                  "weights, more than one ONNX file can: give a smaller memory budget") from exc
            del model
            vals = {side: _segment_values(path, be, dev, o, live[side], want, crossing)
                    for side, be, dev, o in (("ref", ref_be, ref_device, ref_opts or {}), ("test", test_be, device, opts))}
            path.unlink()
            cmp.take(seg, vals["ref"], vals["test"], {**live["ref"], **vals["ref"]})
            for side in live:
                live[side].update((o, vals[side][o]) for o in crossing)
                live[side] = {x: v for x, v in live[side].items() if last_seg.get(x, -1) > k}
            del vals
            log.debug("divergence: segment %d/%d (%d nodes) compared", k + 1, len(segments), len(seg))
    outs = [n for n in graph.output_names if n in live["ref"] and n in live["test"]]
    return {n: live["ref"][n] for n in outs}, {n: live["test"][n] for n in outs}


def _segment_values(path: Path, backend, device: str, opts: dict, live: dict[str, np.ndarray], want: list[str],
                    crossing: list[str]) -> dict[str, np.ndarray]:
    """One backend's values of ``want`` for the segment model at ``path``, fed from ``live``."""
    from mlms_ir.backends.base import BackendError

    sg = load(path, lenient=True)
    with backend.prepare(sg, device, **opts) as s:
        vals = s.intermediates({n: live[n] for n in sg.input_names}, want)
    lost = [o for o in crossing if o not in vals]
    if lost:
        raise BackendError(f"{backend.name} gave no value for '{lost[0]}', which a later part of the model reads: "
                           "give a larger memory budget")
    return vals


def _rounded(a: np.ndarray, precision: str) -> np.ndarray:
    """``a`` rounded to the precision the backend under test computes in (float tensors only;
    inside a sequence or an optional, each tensor)."""
    if isinstance(a, list):
        return [_rounded(x, precision) for x in a]
    if isinstance(a, dict):
        return {k: _rounded(v, precision) for k, v in a.items()}
    if a is None or precision in ("fp32", "int8") or a.dtype.kind != "f":
        return a  # int8 models quantize their own inputs
    if precision == "fp16":
        with np.errstate(over="ignore"):  # beyond float16's range is inf, as the backend holds it
            return a.astype(np.float16).astype(a.dtype)
    import ml_dtypes

    return a.astype(ml_dtypes.bfloat16).astype(a.dtype)


def _outputs_inside(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each graph output passed through an Identity, so that the outputs of its
    nodes are intermediates (kept in the model's own precision by a converter that casts graph
    outputs back to float32)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.output:
        inner = vi.name
        vi.name = f"{inner}__mlms_ir_out"
        m.graph.node.append(helper.make_node("Identity", [inner], [vi.name]))
    return m


def _introduced(graph: Graph, candidates: Sequence[NodeDivergence], values: dict[str, np.ndarray], weights: onnx.ModelProto,
                base_dir: Path | None, ref_be, test_be, device: str, opts: dict, atol: float, rtol: float,
                precision: str = "fp32", ref_opts: dict | None = None, arbiter: bool = True) -> None:
    """Re-run each candidate node alone on the backend under test and on the reference, both with
    the reference's values of its inputs from ``values`` (rounded to the tested precision, so
    that rounding the inputs is not blamed on the node); ``values`` holds the reference's
    outputs of the candidates too. With ``arbiter``, a node whose introduced error exceeds the
    tolerance is judged against its exact float64 result (:mod:`mlms_ir.oracle`)."""
    ref_opts = ref_opts or {}
    test_name = test_be.name
    ref_name = ref_be.name if ref_be.name != test_be.name else f"{ref_be.name} (reference)"
    for c in candidates:
        sub = alone = single_node_model(graph, c.id, weights, base_dir)
        if sub is None:
            c.introduced_note = "cannot run alone (a Constant, or a node reading a tensor of unknown shape)"
            continue
        outs = [o for o in graph.node(c.id).proto.output if o]
        try:
            if precision != "fp32":
                # read the node's outputs inside the model, as the full run's intermediates are read:
                # a graph output would be cast back to float32 and a runtime may then compute the
                # node in float32 (ORT on CPU does), hiding an overflow the full run shows
                sub = _outputs_inside(sub)
            sg = load(sub, lenient=True)
            sub_feeds = {n: _rounded(values[n], precision) for n in sg.input_names}
            with test_be.prepare(sg, device, **opts) as s:
                got = s.run(sub_feeds) if precision == "fp32" else s.intermediates(sub_feeds, outs)
            if precision == "fp32":
                want = values
            else:
                with ref_be.prepare(sg, "cpu" if ref_be.name == "reference" else device, **ref_opts) as r:
                    want = r.intermediates(sub_feeds, outs)
        except (MlmsIrError, KeyError) as exc:
            c.introduced_note = f"could not re-run alone: {exc}"
            continue
        ds = [d for o in outs if o in want and o in got for d in value_diffs(o, want[o], got[o], atol, rtol)]
        if ds:
            w = _worst(c.id, c.name, c.op_type, ds)
            c.introduced_max_abs, c.introduced_max_rel, c.introduced_exceeds = w.max_abs, w.max_rel, w.exceeds
            if arbiter and w.exceeds:
                from mlms_ir.oracle import judge

                c.oracle = judge(alone, sub_feeds, outs, {test_name: got, ref_name: want}, atol, rtol)
