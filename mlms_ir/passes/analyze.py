"""The static analysis: every pass over one Graph, gathered into an :class:`Analysis`."""

from __future__ import annotations

from collections import defaultdict

import onnx

from mlms_ir.ir import Graph, load
from mlms_ir.ir.expr import is_symbolic
from mlms_ir.ir.gc_pause import paused_gc
from mlms_ir.ir.graph import shape_json
from mlms_ir.ir.load import ModelSource
from mlms_ir.ir.shapes import Dims, InputShapes
from mlms_ir.passes.cost import count_costs, sum_field
from mlms_ir.passes.memory import memory
from mlms_ir.passes.nodes_text import JsonAhead, start_nodes_text
from mlms_ir.passes.registry import CONVENTION_VERSION
from mlms_ir.passes.roofline import Device, resolve_device, roofline
from mlms_ir.passes.structure import structure
from mlms_ir.results.analysis import Analysis, Dim, ModelInfo, NodeCost, Totals, UnknownOp, UnresolvedDim

CONVENTION = {
    "version": CONVENTION_VERSION,
    "macs": "multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, Einsum, attention and RNN cells",
    "flops": "2 x MACs for those ops, plus the per-element counts of each op's documented formula",
    "params": "elements of float initializers and constants read as weights (not shapes, indices or quantization scales); integer weights of quantized ops",
    "peak_activation_bytes": "largest total of live non-weight tensors over the execution order, no aliasing",
}


def analyze(
    model: ModelSource | Graph,
    *,
    input_shapes: InputShapes = None,
    batch: int | None = None,
    dims: Dims = None,
    device: str | Device | None = None,
    lenient: bool = False,
    input_values: dict[str, object] | str | None = None,
    json_ahead: bool | JsonAhead = False,
) -> Analysis:
    """Analyse a model statically: cost, memory, structure and (with ``device``) a roofline bound.

    ``model`` is a path, bytes, an ``onnx.ModelProto`` or a :class:`~mlms_ir.ir.Graph` from
    :func:`mlms_ir.load` (then the binding arguments must be given to ``load`` instead).
    ``device`` is a name from :func:`mlms_ir.passes.roofline.known_devices`, a spec string
    ``fp32=1e13,bw=1e11`` or a :class:`~mlms_ir.passes.roofline.Device`.

    ``json_ahead``: the caller will write the result's JSON once, leaving its nodes as they are
    (the command line does): a large graph's node lines are then encoded by a forked worker
    while the passes after the cost pass run (:mod:`mlms_ir.passes.nodes_text`). True: as text,
    for an output; a :class:`~mlms_ir.passes.nodes_text.JsonAhead` says whether as text, and at
    which zlib level compressed for the results store.

    Raises the :mod:`mlms_ir.errors` types documented on :func:`mlms_ir.load`, and
    :class:`~mlms_ir.errors.UnknownDeviceError`.
    """
    with paused_gc():
        return _analyze(model, input_shapes=input_shapes, batch=batch, dims=dims, device=device, lenient=lenient,
                        input_values=input_values, json_ahead=json_ahead)


def _analyze(model, *, input_shapes, batch, dims, device, lenient, input_values, json_ahead) -> Analysis:
    dev = resolve_device(device)
    if isinstance(model, Graph):
        graph = symbolic_graph(model)  # a copy when it needs resolving: the caller's graph keeps its shapes
    else:
        from mlms_ir.ir.symbolic import resolve

        graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims, lenient=lenient, input_values=input_values)
        resolve(graph)  # a graph of our own: resolved in place
    sym = graph.symbolic
    costs = count_costs(graph)
    ahead = None
    if json_ahead and dev is None and sym is None:  # no later pass changes a node: its line is final now
        ahead = start_nodes_text(costs.nodes, want=json_ahead if isinstance(json_ahead, JsonAhead) else JsonAhead())
    mem = memory(graph, costs)
    struct = structure(graph, costs)
    top = costs.top
    warnings = list(graph.warnings)

    unknown: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in costs.nodes:
        if c.status == "unknown_op":
            unknown[(c.domain, c.op_type)].append(c.id)
    unknown_ops = [UnknownOp(op, dom, len(ids), ids) for (dom, op), ids in sorted(unknown.items())]
    unresolved = _unresolved_dims(graph, costs.nodes)

    roof = None
    if dev is not None:
        dtypes = {}
        for node in graph.walk():
            t = node.graph.tensor(node.inputs[0]) if node.inputs and node.inputs[0] else None
            dtypes[node.id] = t.dtype if t is not None else "float"
        roof = roofline(costs.nodes, top, dev, dtypes)

    per_iteration = sorted({s.owner for s in costs.subgraphs if s.multiplier is None and not s.symbolic_multiplier})
    if per_iteration:
        warnings.append(
            f"{len(per_iteration)} Loop/Scan node(s) counted for one iteration only (trip count unknown): "
            + ", ".join(per_iteration[:5])
        )
    n_unresolved = sum(1 for c in costs.nodes if c.status == "unresolved")
    n_unknown = sum(1 for c in costs.nodes if c.status == "unknown_op")
    if n_unresolved:
        names = ", ".join(d.dim for d in unresolved[:5])
        warnings.append(
            f"{n_unresolved} node(s) not counted because shapes are unknown (dims: {names}); "
            "bind them with --dims NAME=VALUE, --batch N or --input-shape [NAME:]DIMS"
        )
    if n_unknown:
        warnings.append(
            f"{n_unknown} node(s) of {len(unknown_ops)} op type(s) have no cost formula: "
            + ", ".join(f"{u.domain + '::' if u.domain else ''}{u.op_type} x{u.count}" for u in unknown_ops[:8])
        )
    totals = Totals(
        params=mem.params,
        param_bytes=mem.param_bytes,
        params_by_dtype=mem.params_by_dtype,
        macs=sum_field(top, "macs"),
        int_macs=sum_field([c for c in top if c.int_macs], "macs"),
        flops=sum_field(top, "flops"),
        bytes_read=sum_field(top, "bytes_read"),
        bytes_written=sum_field(top, "bytes_written"),
        weight_bytes=mem.weight_bytes,
        constant_bytes=mem.constant_bytes,
        activation_bytes=mem.activation_bytes,
        peak_activation_bytes=mem.peak_activation_bytes,
        peak_at_node=mem.peak_at_node,
        input_bytes=mem.input_bytes,
        output_bytes=mem.output_bytes,
        nodes=len(costs.nodes),
        counted_nodes=sum(1 for c in costs.nodes if c.status in ("counted", "free")),
        unresolved_nodes=n_unresolved,
        unknown_nodes=n_unknown,
        complete=n_unresolved == 0 and n_unknown == 0 and not mem.unknown_size_tensors and not per_iteration,
        peak_candidates=mem.peak_candidates,
    )
    _unknown_zeros(graph, totals, uncounted=n_unresolved + n_unknown, unknown_sizes=bool(mem.unknown_size_tensors))
    free_dims: list[Dim] = []
    if sym is not None:
        from mlms_ir.passes.symbolic import finalize

        free_dims = finalize(costs.nodes, totals, struct, roof, sym)
        warnings.extend(sym.warnings)
        unknown_syms = [d.name for d in free_dims if d.kind == "unknown"]
        if unknown_syms:
            warnings.append(
                f"{len(unknown_syms)} dim(s) no rule derives are left as symbols ({', '.join(unknown_syms[:5])}); "
                "the figures are exact formulas in them: bind them with --dims NAME=VALUE"
            )
    from mlms_ir import __version__

    result = Analysis(
        model=_model_info(graph),
        convention=dict(CONVENTION),
        bindings=graph.bindings.as_dict() if hasattr(graph, "bindings") else {},
        totals=totals,
        structure=struct,
        unknown_ops=unknown_ops,
        unresolved_dims=unresolved,
        nodes=costs.nodes,
        roofline=roof,
        warnings=warnings,
        dims=free_dims,
        tool={"name": "mlms_ir", "version": __version__, "onnx": onnx.__version__},
    )
    if ahead is not None:
        result.attach_nodes_text(ahead)
    return result


#: Totals summed over nodes, and over tensor sizes.
_NODE_SUMS = ("macs", "int_macs", "flops", "bytes_read", "bytes_written")
_SIZE_SUMS = ("activation_bytes", "peak_activation_bytes")


def _unknown_zeros(graph: Graph, totals: Totals, *, uncounted: int, unknown_sizes: bool) -> None:
    """Totals that are 0 only because what they sum was not counted become None (unknown): a
    sum that left nodes or tensors out is a lower bound, and a lower bound of 0 says nothing,
    so a reader must never see it as the figure (``"macs": 0`` for a model whose shapes are
    unknown). Positive partial sums stay, marked by ``complete`` false."""
    if uncounted:
        for f in _NODE_SUMS:
            if getattr(totals, f) == 0:
                setattr(totals, f, None)
    if unknown_sizes:
        for f in _SIZE_SUMS:
            if getattr(totals, f) == 0:
                setattr(totals, f, None)
        if totals.peak_activation_bytes is None:
            totals.peak_at_node = None
    for f, names in (("input_bytes", graph.input_names), ("output_bytes", graph.output_names)):
        if getattr(totals, f) == 0 and any(_size_unknown(graph.tensor(x)) for x in names):
            setattr(totals, f, None)


def _size_unknown(t) -> bool:
    """Whether a graph input's or output's byte size is unknown (strings have none to give)."""
    from mlms_ir.ir.dtypes import dtype_bits

    return t is None or (t.sym_nbytes is None and not (t.sym_known and dtype_bits(t.elem_type) is None))


def symbolic_graph(graph: Graph) -> Graph:
    """``graph`` with every dim an exact expression (:func:`mlms_ir.ir.symbolic.resolve`): itself
    when all shapes are numbers or it was resolved already, else a resolved copy (so the
    caller's graph keeps its plain shapes, which backends read)."""
    from mlms_ir.ir.symbolic import needs_resolution, resolve

    if graph.symbolic is not None or not needs_resolution(graph):
        return graph
    copy = Graph(graph.model, source=graph.source, ordered=True, loaded=graph.loaded, bindings=graph.bindings,
                 warnings=graph.warnings)
    resolve(copy)
    return copy


def _unresolved_dims(graph: Graph, nodes: list[NodeCost]) -> list[UnresolvedDim]:
    """Group nodes left uncounted by the unknown dims of their tensors."""
    by_dim: dict[str, list[str]] = defaultdict(list)
    for c in nodes:
        if c.status != "unresolved":
            continue
        names: set[str] = set()
        for shape in c.input_shapes + c.output_shapes:
            if shape is None:
                names.add("?")
                continue
            for d in shape:
                if not isinstance(d, int) and not is_symbolic(d):
                    names.add(d if isinstance(d, str) else "?")
        for name in names or {"?"}:
            by_dim[name].append(c.id)
    inputs: dict[str, list[str]] = defaultdict(list)
    for name in graph.input_names:
        t = graph.tensors[name]
        if t.shape is None:
            inputs["?"].append(f"{name}[rank?]")
            continue
        for axis, d in enumerate(t.shape):
            if not isinstance(d, int) and not is_symbolic(d):
                inputs[d if isinstance(d, str) else "?"].append(f"{name}[{axis}]")
    keys = sorted(set(by_dim) | set(inputs), key=lambda k: (k == "?", k))
    return [UnresolvedDim(k, inputs.get(k, []), by_dim.get(k, [])) for k in keys]


def _model_info(graph: Graph) -> ModelInfo:
    m = graph.model
    loaded = graph.loaded

    def io(names: list[str]) -> list[dict]:
        out = []
        for n in names:
            t = graph.tensor(n)
            out.append({"name": n, "dtype": t.dtype if t else "unknown", "shape": shape_json(t.shape) if t else None})
        return out

    return ModelInfo(
        name=loaded.name if loaded else (m.graph.name or "model"),
        path=str(loaded.path) if loaded and loaded.path else None,
        graph_name=m.graph.name,
        producer=f"{m.producer_name} {m.producer_version}".strip(),
        ir_version=m.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        file_bytes=loaded.file_bytes if loaded else None,
        external_data_bytes=loaded.external_data_bytes if loaded else 0,
        inputs=io(graph.input_names),
        outputs=io(graph.output_names),
        doc_string=m.doc_string,
        metadata={p.key: p.value for p in m.metadata_props},
    )
