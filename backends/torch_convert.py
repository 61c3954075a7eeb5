"""ONNX -> ``torch.fx.GraphModule`` with onnx2torch, for the torch backend.

onnx2torch turns every ONNX node into one submodule of a ``torch.fx.GraphModule`` (called in
the graph's order) and adds ``operator.getitem`` calls that pick the outputs of multi-output
nodes. It names submodules after ONNX node names (dots become slashes, empty names become the op
type, repeats get ``_1``, ``_2``...), and that scheme breaks on real files: a node called
``Relu_1`` beside two unnamed Relu nodes collides and the conversion fails. So the torch backend
converts a private copy whose nodes are renamed to their graph ids (``n0``, ``n1``...) and put
in the graph's (topological) order (:func:`rename_to_ids`): submodule ``n7`` *is* graph node
``n7`` (a mismatch between the order of the fx graph's ``call_module`` calls and the nodes is
logged). ``getitem`` calls map to the node whose outputs they pick (:class:`Conversion`).
onnx2torch lacks the op versions of opsets 18-21; :mod:`mlms_ir.backends.onnx2torch_compat`
registers those of common exports when onnx2torch is first imported. Before converting,
:func:`adapt_for_onnx2torch` works around what is left (ops it still lacks, converted down with
``onnx.version_converter``; Identity-shared weights; ``Reshape(allowzero=1)``).
"""

from __future__ import annotations

import logging
import operator
import warnings
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from mlms_ir.backends.base import BackendError, BackendUnavailableError
from mlms_ir.errors import MissingExtraError
from mlms_ir.ir import Graph
from mlms_ir.ir.load import normalize_default_domain

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- imports
def load_torch():
    """torch, or MissingExtraError naming the ``torch`` extra."""
    from mlms_ir._lazy import lazy_import

    return lazy_import("torch")


def load_onnx2torch():
    """onnx2torch, or MissingExtraError naming the ``torch`` extra (it imports torchvision, which
    must match the installed torch: a mismatched pair fails with a RuntimeError, not ImportError)."""
    from mlms_ir._lazy import lazy_import

    try:
        module = lazy_import("onnx2torch")
        from mlms_ir.backends import onnx2torch_compat

        onnx2torch_compat.patch()  # the opset 18-21 op versions dynamo exports carry
        # torch's notes on how onnx2torch's Slice indexes (a deprecated but still exact form, and
        # ONNX's INT64_MAX ends clamped as ONNX defines): noise on every run of a ViT, not news
        for text in ("Using a non-tuple sequence for multidimensional indexing", "Truncating the start/stop/step of slice"):
            warnings.filterwarnings("ignore", message=text, category=UserWarning, module=r"onnx2torch(\.|$)")
        return module
    except MissingExtraError as exc:
        msg = str(exc)
        if "mlms_ir[torch]" not in msg:
            msg = f"onnx2torch is not installed ({exc.__cause__ or exc}); install it with: pip install 'mlms_ir[torch]'"
        raise MissingExtraError(msg) from exc
    except Exception as exc:  # noqa: BLE001 - e.g. "operator torchvision::nms does not exist"
        raise BackendUnavailableError(
            f"onnx2torch cannot be imported ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); it imports "
            "torchvision, which must match the installed torch: pip install 'mlms_ir[torch]'"
        ) from exc


# ---------------------------------------------------------------------------------------------- conversion
def load_model(src: str | bytes) -> onnx.ModelProto:
    """The model from a path or serialized bytes, ONNX's default domain spelt ``""``; a BackendError
    when it cannot be read."""
    try:
        if isinstance(src, (bytes, bytearray)):
            model = onnx.ModelProto.FromString(bytes(src))
        else:
            model = onnx.load(src)
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise many types
        raise BackendError(f"the torch backend cannot read the model: {' '.join(str(exc).split())[:300]}") from exc
    normalize_default_domain(model)  # onnx2torch looks converters up by domain: "ai.onnx" is ""
    return model


def _node_key(n: onnx.NodeProto) -> tuple:
    return (n.domain if n.domain != "ai.onnx" else "", n.op_type, n.name, tuple(n.input), tuple(n.output))


def rename_to_ids(model: onnx.ModelProto, graph: Graph) -> list[str]:
    """Rewrite ``model``'s main graph in place: its nodes in the graph's order, each named after
    its graph id. Nodes are matched on (domain, op type, name, inputs, outputs), so the file's own
    order does not matter (:func:`mlms_ir.load` sorts nodes before numbering them). Returns the ids
    in the new order."""
    if model.functions:
        from onnx import inliner

        inlined = inliner.inline_local_functions(model)
        model.CopyFrom(inlined)
    pool: dict[tuple, list[int]] = defaultdict(list)
    raw = list(model.graph.node)
    for i, n in enumerate(raw):
        pool[_node_key(n)].append(i)
    order: list[int] = []
    for node in graph.nodes:
        hits = pool.get(_node_key(node.proto))
        if not hits:
            raise BackendError(f"the model file has no node matching graph node {node.label}; was the graph built from another file?")
        order.append(hits.pop(0))
    if len(order) != len(raw):
        raise BackendError(f"the model file has {len(raw)} nodes, the graph {len(order)}")
    nodes = []
    for k, i in enumerate(order):
        n = onnx.NodeProto()
        n.CopyFrom(raw[i])
        n.name = graph.nodes[k].id
        nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return [node.id for node in graph.nodes]


def _module_name(node: onnx.NodeProto) -> str:
    """The submodule name onnx2torch gives ``node`` (its own rule, when it still has it)."""
    try:
        from onnx2torch.onnx_graph import OnnxGraph

        return OnnxGraph.generate_node_name(node)
    except Exception:  # noqa: BLE001 - a future onnx2torch may rename or drop it
        return (f"{node.domain}/" + (node.name.replace(".", "/") or node.op_type)).lstrip("/")


def unsupported_ops(model: onnx.ModelProto) -> dict[tuple[str, str, int], list[str]]:
    """(domain, op, opset) -> the names of the main graph's nodes for which onnx2torch (with
    :mod:`~mlms_ir.backends.onnx2torch_compat`, once :func:`load_onnx2torch` has run) has no
    converter at the model's opset."""
    try:
        from onnx2torch.node_converters import get_converter
    except Exception:  # noqa: BLE001
        return {}
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    seen: dict[tuple[str, str, int], list[str]] = {}
    for n in model.graph.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        version = opsets.get(domain, 0)
        try:
            get_converter(domain=domain, operation_type=n.op_type, version=version)
        except NotImplementedError:
            seen.setdefault((domain, n.op_type, version), []).append(n.name)
    return seen


def _unsupported(model: onnx.ModelProto, graph: Graph) -> list[str]:
    """Nodes for which onnx2torch has no converter at the model's opset, one line per op."""
    seen = {key: [graph.node(name).label if _has_node(graph, name) else name for name in names]
            for key, names in unsupported_ops(model).items()}
    out = []
    for (domain, op, version), where in seen.items():
        label = f"{domain}:{op}" if domain else op
        more = f" and {len(where) - 1} more" if len(where) > 1 else ""
        out.append(f"{label} (opset {version}; node {where[0]}{more})")
    return out


def _has_node(graph: Graph, node_id: str) -> bool:
    try:
        graph.node(node_id)
        return True
    except KeyError:
        return False


def _failing_converter(model: onnx.ModelProto, graph: Graph) -> str | None:
    """Run onnx2torch's converters one node at a time to find the one that fails."""
    try:
        from onnx2torch.node_converters import get_converter
        from onnx2torch.onnx_graph import OnnxGraph
        from onnx2torch.utils.safe_shape_inference import safe_shape_inference

        m = safe_shape_inference(model)
        opsets = {o.domain: o.version for o in m.opset_import}
        og = OnnxGraph(m.graph)
        for onnx_node in og.nodes.values():
            p = onnx_node.proto
            try:
                conv = get_converter(domain=p.domain, operation_type=p.op_type, version=opsets.get(p.domain, 0))
                conv(onnx_node, og)
            except Exception as exc:  # noqa: BLE001
                label = graph.node(p.name).label if _has_node(graph, p.name) else f"'{p.name}' ({p.op_type})"
                if isinstance(exc, KeyError) and exc.args and exc.args[0] in list(p.input)[1:]:
                    # its converter looked the input up among the initializers and Constants
                    name = exc.args[0]
                    where = "a graph input" if name in {i.name for i in m.graph.input} else "computed by the graph"
                    return (f"op {p.op_type} at node {label}: its input '{name}' must be a constant (an initializer), "
                            f"and here it is {where}")
                return f"op {p.op_type} at node {label}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    except Exception:  # noqa: BLE001 - the diagnosis itself failed; the caller says what it knows
        return None
    return None


#: Ops whose onnx2torch converters read their inputs after the first as initializers or Constant
#: nodes only (weights, biases, norms' statistics, axes, clip bounds).
_NEEDS_INITIALIZER = frozenset({
    "Conv", "ConvTranspose", "Gemm", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "Clip",
    "Unsqueeze", "Squeeze", "Transpose", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
})
#: The opset that onnx2torch 1.5 covers best; models above it are converted down when it lacks an op.
TARGET_OPSET = 17


def adapt_for_onnx2torch(model: onnx.ModelProto, graph: Graph) -> list[str]:
    """Rewrite ``model`` (renamed by :func:`rename_to_ids`) in place where onnx2torch would
    otherwise fail on common exports; returns what was done, one line each.

    * Ops it has no converter for at the model's opset even with
      :mod:`~mlms_ir.backends.onnx2torch_compat` (IsNaN-20, say): the model is converted down to
      opset 17 with ``onnx.version_converter`` when that covers them (node names, hence the
      mapping, are kept).
    * Identity nodes of initializers (the legacy exporter's shared weights) that feed a weight
      input of Conv, Gemm, the norms (and other ops whose converters need constants): onnx2torch
      reads those as initializers only, so each becomes an initializer of its output's name.
      These nodes get no submodule (``TorchSession.unmapped``).
    * Nodes that compute a weight input of those ops from initializers alone (weight-standardised
      convolutions) are evaluated once and become initializers (:func:`_fold_weight_subgraphs`).
    * Reshape with ``allowzero=1`` (written by the dynamo exporter) on a constant shape without a
      0: the attribute changes nothing there, and onnx2torch rejects it.
    """
    notes: list[str] = []
    main = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if main is not None and main.version > TARGET_OPSET and _unsupported(model, graph):
        try:
            from onnx import version_converter

            lower = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # noqa: BLE001 - no adapter for some op; the caller reports the op
            log.debug("converting opset %d down to %d failed: %s", main.version, TARGET_OPSET, exc)
        else:
            lost = settings_lost(lower)
            if lost:  # the converter keeps what the older version lacks; onnx2torch would ignore it
                log.debug("not converting opset %d down to %d: %s", main.version, TARGET_OPSET, "; ".join(lost))
            elif not _unsupported(lower, graph):
                notes.append(f"converted opset {main.version} down to {TARGET_OPSET} (onnx.version_converter): onnx2torch lacks "
                             + ", ".join(_unsupported(model, graph)))
                model.CopyFrom(lower)
    inits = {t.name: t for t in model.graph.initializer}
    identity = {n.output[0]: n for n in model.graph.node
                if n.op_type == "Identity" and n.domain in ("", "ai.onnx") and len(n.input) == 1 and n.output and n.output[0]}
    needed: set[str] = set()
    for n in model.graph.node:
        if n.op_type in _NEEDS_INITIALIZER and n.domain in ("", "ai.onnx"):
            needed.update(i for i in list(n.input)[1:] if i in identity)
    frontier = list(needed)
    while frontier:  # chains: Identity(Identity(w))
        src = identity[frontier.pop()].input[0]
        if src in identity and src not in needed:
            needed.add(src)
            frontier.append(src)
    folded: list[str] = []
    keep = []
    for n in model.graph.node:  # in topological order: a chain's head folds first
        out = n.output[0] if n.output else ""
        if out in needed and identity.get(out) is n and n.input[0] in inits:
            t = onnx.TensorProto()
            t.CopyFrom(inits[n.input[0]])
            t.name = out
            model.graph.initializer.append(t)
            inits[out] = model.graph.initializer[-1]
            folded.append(n.name)
        else:
            keep.append(n)
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        notes.append(f"folded {len(folded)} Identity node(s) of weights into initializers: {', '.join(folded[:8])}{' ...' if len(folded) > 8 else ''}")
    computed = _fold_weight_subgraphs(model)
    if computed:
        notes.append(f"folded {len(computed)} node(s) that compute weights from initializers into initializers (onnx2torch "
                     f"needs Conv/Gemm/norm weights as constants): {', '.join(computed[:8])}{' ...' if len(computed) > 8 else ''}")
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
    dropped = 0
    for n in model.graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2:
            continue
        attr = next((a for a in n.attribute if a.name == "allowzero"), None)
        if attr is None or attr.i == 0:
            continue
        shape = _constant(n.input[1], inits, constants)
        if shape is not None and 0 not in shape.tolist():
            n.attribute.remove(attr)
            dropped += 1
    if dropped:
        notes.append(f"dropped allowzero=1 from {dropped} Reshape node(s) with constant shapes (no 0 in them)")
    return notes


def settings_lost(model: onnx.ModelProto) -> list[str]:
    """What the nodes of ``model`` (converted down by ``onnx.version_converter``) carry that their
    op's version at the model's opset does not define: an attribute (AveragePool-22's
    ``dilations`` stays on the AveragePool-11 it becomes) or an input past the last. An older
    converter would ignore it and compute something else, so such a model is not converted down."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    lost: list[str] = []
    for n in model.graph.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        try:
            schema = onnx.defs.get_schema(n.op_type, opsets.get(domain, 1), domain)
        except Exception:  # noqa: BLE001 - no schema at that opset: onnx2torch will say it lacks the op
            continue
        extra = [a.name for a in n.attribute if a.name not in schema.attributes]
        if extra:
            lost.append(f"{n.op_type}-{schema.since_version} has no attribute {', '.join(extra)}")
        given = max((k + 1 for k, x in enumerate(n.input) if x), default=0)
        if given > schema.max_input:
            lost.append(f"{n.op_type}-{schema.since_version} takes {schema.max_input} inputs, not {given}")
    return lost


def _fold_weight_subgraphs(model: onnx.ModelProto) -> list[str]:
    """Evaluate, once, the nodes that compute a weight input of a :data:`_NEEDS_INITIALIZER` op from
    initializers and Constants alone (NFNet's and timm's weight-standardised convolutions:
    ReduceMean, Sub, Div ... on the kernel), and make their outputs initializers, as ORT's constant
    folding does. Returns the folded nodes' names (they get no submodule)."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output if o}
    memo: dict[str, bool] = {}

    def derivable(name: str, depth: int = 0) -> bool:
        if not name or name in inits:
            return True
        if name in memo:
            return memo[name]
        n = producer.get(name)
        ok = (n is not None and depth < 64 and n.domain in ("", "ai.onnx") and not n.op_type.startswith("Random")
              and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute))
        memo[name] = False  # cycles cannot happen in a valid graph; this keeps the recursion finite anyway
        ok = ok and all(derivable(x, depth + 1) for x in n.input)
        memo[name] = ok
        return ok

    wanted = [x for n in model.graph.node if n.op_type in _NEEDS_INITIALIZER and n.domain in ("", "ai.onnx")
              for x in list(n.input)[1:] if x and x not in inits and x in producer and derivable(x)]
    if not wanted:
        return []
    fold: set[int] = set()
    stack = list(wanted)
    while stack:
        n = producer.get(stack.pop())
        if n is not None and id(n) not in fold:
            fold.add(id(n))
            stack.extend(x for x in n.input if x and x not in inits)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    protos = {t.name: t for t in model.graph.initializer}
    values: dict[str, np.ndarray] = {}
    keep, folded = [], []
    try:
        for n in model.graph.node:
            if id(n) not in fold:
                keep.append(n)
                continue
            feeds = {}
            for x in n.input:
                if x:
                    feeds[x] = values[x] if x in values else numpy_helper.to_array(protos[x])
            outs = ReferenceEvaluator(n, opsets={"": opset}).run(None, feeds)
            for name, v in zip(n.output, outs, strict=False):
                if name:
                    values[name] = np.asarray(v)
            folded.append(n.name or n.op_type)
    except Exception as exc:  # noqa: BLE001 - leave the graph as it was; onnx2torch reports what it cannot do
        log.debug("folding weight subgraphs failed: %s", exc)
        return []
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items())
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return folded


def _constant(name: str, inits: Mapping[str, onnx.TensorProto], constants: Mapping[str, onnx.NodeProto]) -> np.ndarray | None:
    from onnx import numpy_helper

    try:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = constants.get(name)
        if node is not None:
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                return numpy_helper.to_array(attr.t)
    except Exception:  # noqa: BLE001 - external data not loaded, odd types
        return None
    return None


def _check_outputs_supported(model: onnx.ModelProto) -> list[str]:
    """Graph outputs no node produces (passed-through inputs, initializers): onnx2torch cannot
    return them (KeyError), so they are taken off the copy it converts and wired in afterwards."""
    produced = {o for n in model.graph.node for o in n.output if o}
    extra = [vi.name for vi in model.graph.output if vi.name not in produced]
    if extra:
        keep = [vi for vi in model.graph.output if vi.name in produced]
        del model.graph.output[:]
        model.graph.output.extend(keep)
    return extra


@dataclass
class Conversion:
    """A converted model and how its parts map onto the graph."""

    module: Any  # torch.fx.GraphModule
    #: submodule name (fx call_module target) -> graph node id
    targets: dict[str, str]
    #: fx node name -> graph node id (call_module nodes, and the getitem calls on their outputs)
    fx_nodes: dict[str, str]
    #: graph node ids with no submodule (Identity nodes of weights folded into initializers)
    unmapped: list[str] = field(default_factory=list)


def convert_model(model: onnx.ModelProto, graph: Graph) -> Conversion:
    """Convert ``model`` (already renamed by :func:`rename_to_ids`) with onnx2torch; map its
    submodules to graph ids; make it return every graph output, in order, as a tuple."""
    o2t = load_onnx2torch()
    bad = _unsupported(model, graph)
    if bad:
        raise BackendError(f"onnx2torch cannot convert op {', '.join(bad)}: it has no converter for it")
    passthrough = _check_outputs_supported(model)
    initializers = {t.name: t for t in model.graph.initializer}
    try:
        gm = o2t.convert(model)
    except Exception as exc:  # noqa: BLE001 - converters raise NotImplementedError, KeyError, ValueError...
        culprit = _failing_converter(model, graph)
        if culprit:
            raise BackendError(f"onnx2torch cannot convert {culprit}") from exc
        raise BackendError(f"onnx2torch cannot convert the model: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
    known = {n.id for n in graph.nodes}
    ids = [n.name for n in model.graph.node]
    expected = {_module_name(n): n.name for n in model.graph.node if n.name in known}
    targets: dict[str, str] = {}
    fx_nodes: dict[str, str] = {}
    calls = [n for n in gm.graph.nodes if n.op == "call_module"]
    if not (len(calls) == len(ids) and all(expected.get(str(c.target)) == i for c, i in zip(calls, ids))):
        log.warning("onnx2torch's submodules do not follow the model's nodes one to one; mapping those it names after them")
    for c in calls:
        nid = expected.get(str(c.target))
        if nid is None:
            continue
        targets[str(c.target)] = nid
        fx_nodes[c.name] = nid
    for n in gm.graph.nodes:
        if n.op in ("call_function", "call_method") and n.name not in fx_nodes:
            src = next((a for a in n.args if hasattr(a, "name") and a.name in fx_nodes), None)
            if src is not None:
                fx_nodes[n.name] = fx_nodes[src.name]
    mapped = set(targets.values())
    _rewire_outputs(gm, model, graph, {v: k for k, v in targets.items()}, passthrough, initializers)
    return Conversion(gm, targets, fx_nodes, [n.id for n in graph.nodes if n.id not in mapped])


def _rewire_outputs(gm, model: onnx.ModelProto, graph: Graph, module_of: dict[str, str], passthrough: list[str],
                    initializers: Mapping[str, onnx.TensorProto]) -> None:
    """onnx2torch returns the *nodes* that produce outputs, deduplicated and in node order (a Split
    feeding two graph outputs returns its whole tuple once). Return each graph output instead."""
    torch = load_torch()
    fxg = gm.graph
    calls = {str(n.target): n for n in fxg.nodes if n.op == "call_module"}
    producer: dict[str, tuple[str, int, int]] = {}
    for n in model.graph.node:
        outs = list(n.output)
        for i, o in enumerate(outs):
            if o:
                producer[o] = (n.name, i, len(outs))
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    placeholders = dict(zip(inputs, [n for n in fxg.nodes if n.op == "placeholder"]))
    out_node = next(n for n in fxg.nodes if n.op == "output")
    values = []
    with fxg.inserting_before(out_node):
        for k, name in enumerate(graph.output_names):
            if name in producer:
                nid, i, count = producer[name]
                target = module_of.get(nid)
                if target is None or target not in calls:
                    raise BackendError(f"onnx2torch gave no submodule for node {nid}, which computes output '{name}'")
                src = calls[target]
                values.append(src if count == 1 else fxg.call_function(operator.getitem, (src, i)))
            elif name in placeholders:
                values.append(placeholders[name])
            elif name in initializers or name in passthrough:
                tensor = initializers.get(name)
                if tensor is None:
                    raise BackendError(f"graph output '{name}' is neither computed nor an input or initializer")
                buf = f"mlms_ir_output_{k}"
                gm.register_buffer(buf, torch.from_numpy(onnx.numpy_helper.to_array(tensor).copy()))
                values.append(fxg.get_attr(buf))
            else:
                raise BackendError(f"graph output '{name}' is not computed by any node")
    out_node.args = (tuple(values),)
    fxg.lint()
    gm.recompile()
