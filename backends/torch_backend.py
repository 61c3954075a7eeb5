"""PyTorch eager mode, on CPU or CUDA: the ONNX model converted by onnx2torch.

onnx2torch turns every ONNX node into one submodule of a ``torch.fx.GraphModule`` (called in
the graph's order) and adds ``operator.getitem`` calls that pick the outputs of multi-output
nodes. It names submodules after ONNX node names (dots become slashes, empty names become the op
type, repeats get ``_1``, ``_2``...), and that scheme breaks on real files: a node called
``Relu_1`` beside two unnamed Relu nodes collides and the conversion fails. So the session
converts a private copy whose nodes are renamed to their graph ids (``n0``, ``n1``...) and put
in the graph's (topological) order: submodule ``n7`` *is* graph node ``n7`` (a mismatch between
the order of the fx graph's ``call_module`` calls and the nodes is logged). ``getitem`` calls map
to the node whose outputs they pick.
onnx2torch lacks the op versions of opsets 18-21; :mod:`mlms_ir.backends.onnx2torch_compat`
registers those of common exports when onnx2torch is first imported. Before converting,
:func:`adapt_for_onnx2torch` works around what is left (ops it still lacks, converted down with
``onnx.version_converter``; Identity-shared weights; ``Reshape(allowzero=1)``); the session's
``rewrites`` says what it did.

Intermediate tensors (:meth:`TorchSession.intermediates`, for divergence analysis) are captured by
forward hooks on the submodules of the nodes that produce them, registered for that one run; a
multi-output node's k-th output is the k-th element of its module's tuple (what the fx graph's
``getitem`` calls pick). Nodes without a submodule (folded Identity nodes) expose nothing.

Per-node tracing wraps each node's submodule in ``torch.profiler.record_function("mlms_ir::<id>")``
for the traced runs only (plain runs pay nothing), runs under ``torch.profiler.profile`` and reads
the exported Chrome trace: one ``node`` event per range (host time), and on CUDA one ``kernel``
event per kernel, memcpy and memset, attributed to the node whose range enclosed its launch
(:func:`attribute_kernels`, a pure function over the trace, tested without a GPU on a trace in
torch.profiler's CUDA layout).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import operator
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from mlms_ir.backends.base import Availability, Backend, BackendError, BackendUnavailableError, NodeTrace, Session, TraceResult, model_source
from mlms_ir.errors import MissingExtraError
from mlms_ir.ir import Graph
from mlms_ir.ir.dtypes import np_dtype

log = logging.getLogger(__name__)

#: Name prefix of the ``record_function`` range around each graph node (``mlms_ir::n12``).
NODE_PREFIX = "mlms_ir::"
#: Name prefix of the range around each traced run (``mlms_ir.run::0``).
RUN_PREFIX = "mlms_ir.run::"
#: Chrome-trace categories of device work, of the host calls that launch it, and of host ranges.
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
LAUNCH_CATS = frozenset({"cuda_runtime", "cuda_driver"})
HOST_CATS = frozenset({"cpu_op", "user_annotation"})
#: Kernel args copied from the trace, under our names.
KERNEL_ARGS = {
    "grid": "grid",
    "block": "block",
    "registers per thread": "registers_per_thread",
    "shared memory": "shared_memory",
    "blocks per SM": "blocks_per_sm",
    "warps per SM": "warps_per_sm",
    "est. achieved occupancy %": "occupancy_pct",
    "device": "device",
    "stream": "stream",
    "correlation": "correlation",
    "bytes": "bytes",
    "memory bandwidth (GB/s)": "bandwidth_gbs",
    # Kineto built against CUDA >= 12 adds these to kernels, memcpys and memsets (0 outside a
    # CUDA graph): libkineto CuptiActivity.h getGraphNodeMetadata
    "graph id": "graph_id",
    "graph node id": "graph_node_id",
}
#: How far (us) a launch call may lie outside the host op its ``External id`` names and still be
#: taken as launched by it: the runtime/driver call is timed by CUPTI, the op by torch's clock.
LAUNCH_SLACK_US = 2.0


# ---------------------------------------------------------------------------------------------- imports
def _torch():
    from mlms_ir._lazy import lazy_import

    return lazy_import("torch")


def _onnx2torch():
    """onnx2torch, or MissingExtraError naming the ``torch`` extra (it imports torchvision, which
    must match the installed torch: a mismatched pair fails with a RuntimeError, not ImportError)."""
    from mlms_ir._lazy import lazy_import

    try:
        module = lazy_import("onnx2torch")
        from mlms_ir.backends import onnx2torch_compat

        onnx2torch_compat.patch()  # the opset 18-21 op versions dynamo exports carry
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


# ---------------------------------------------------------------------------------------------- backend
#: fp16/bf16 run under torch.autocast (matmuls and convolutions in the reduced type).
PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")
    extra = "torch"
    description = "PyTorch eager mode (CPU, CUDA): the ONNX model converted with onnx2torch"

    def _available_impl(self, device: str, **options: Any) -> Availability:
        try:
            torch = _torch()
            _onnx2torch()
        except (MissingExtraError, BackendUnavailableError) as exc:
            return Availability(False, str(exc))
        if device == "cuda" and not torch.cuda.is_available():
            if torch.version.cuda is None:
                return Availability(False, f"this torch ({torch.__version__}) is a CPU-only build")
            return Availability(False, f"torch.cuda.is_available() is False: no CUDA device is visible to torch {torch.__version__} (built for CUDA {torch.version.cuda})")
        return Availability(True)

    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        return TorchSession(graph, device, **options)


# ---------------------------------------------------------------------------------------------- conversion
def _load_model(src: str | bytes) -> onnx.ModelProto:
    try:
        if isinstance(src, (bytes, bytearray)):
            return onnx.ModelProto.FromString(bytes(src))
        return onnx.load(src)
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise many types
        raise BackendError(f"the torch backend cannot read the model: {' '.join(str(exc).split())[:300]}") from exc


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


def _unsupported(model: onnx.ModelProto, graph: Graph) -> list[str]:
    """Nodes for which onnx2torch has no converter at the model's opset."""
    try:
        from onnx2torch.node_converters import get_converter
    except Exception:  # noqa: BLE001
        return []
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    seen: dict[tuple[str, str, int], list[str]] = {}
    for n in model.graph.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        version = opsets.get(domain, 0)
        try:
            get_converter(domain=domain, operation_type=n.op_type, version=version)
        except NotImplementedError:
            seen.setdefault((domain, n.op_type, version), []).append(graph.node(n.name).label if _has_node(graph, n.name) else n.name)
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
            if not _unsupported(lower, graph):
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
    o2t = _onnx2torch()
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
    torch = _torch()
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


# ---------------------------------------------------------------------------------------------- session
def _range_module():
    """The wrapper that puts a profiler range around a submodule (built on first use: torch is lazy)."""
    global _Ranged
    if _Ranged is None:
        torch = _torch()

        class Ranged(torch.nn.Module):
            def __init__(self, inner, label: str, profiler: bool = True, nvtx: bool = False) -> None:
                super().__init__()
                self.inner = inner
                self.label = label
                self.profiler = profiler
                self.nvtx = nvtx

            def forward(self, *args, **kwargs):
                if self.nvtx:
                    torch.cuda.nvtx.range_push(self.label)
                try:
                    if self.profiler:
                        with torch.profiler.record_function(self.label):
                            return self.inner(*args, **kwargs)
                    return self.inner(*args, **kwargs)
                finally:
                    if self.nvtx:
                        torch.cuda.nvtx.range_pop()

        _Ranged = Ranged
    return _Ranged


_Ranged = None
_NVTX: bool | None = None


def _nvtx_works(torch) -> bool:
    """Whether this torch build can push NVTX ranges (builds without NVTX raise on the first push)."""
    global _NVTX
    if _NVTX is None:
        try:
            torch.cuda.nvtx.range_push("mlms_ir.nvtx-check")
            torch.cuda.nvtx.range_pop()
            _NVTX = True
        except Exception as exc:  # noqa: BLE001 - RuntimeError("NVTX functions not installed") and the like
            log.info("torch backend: no NVTX ranges in traced runs (%s)", exc)
            _NVTX = False
    return _NVTX


class TorchSession(Session):
    def __init__(self, graph: Graph, device: str, precision: str = "fp32", **options: Any) -> None:
        if options:
            raise BackendError(f"the torch backend takes only the option precision (got {', '.join(sorted(options))})")
        if precision not in PRECISIONS:
            raise BackendError(f"the torch backend runs precision {', '.join(PRECISIONS)}, not '{precision}'")
        super().__init__("torch", device, graph, {"precision": precision})
        torch = _torch()
        self._torch = torch
        self._precision = precision
        self._device = torch.device(device)
        model = _load_model(model_source(graph))
        rename_to_ids(model, graph)
        #: What was rewritten in the model before onnx2torch converted it (one line each).
        self.rewrites = adapt_for_onnx2torch(model, graph)
        for note in self.rewrites:
            log.info("torch backend: %s", note)
        conv = convert_model(model, graph)
        # tensor -> (node id, output index, output count), over the nodes onnx2torch converted
        self._producers: dict[str, tuple[str, int, int]] = {}
        for n in model.graph.node:
            outs = list(n.output)
            for k, o in enumerate(outs):
                if o:
                    self._producers[o] = (n.name, k, len(outs))
        try:
            self._gm = conv.module.eval().to(self._device)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory
            raise BackendError(f"cannot move the converted model to {device}: {' '.join(str(exc).split())[:300]}") from exc
        self._targets = conv.targets
        self._fx_nodes = conv.fx_nodes
        self.unmapped = conv.unmapped
        self._op_types = {n.id: n.op_type for n in graph.nodes}
        self._names = {n.id: (n.name or n.id) for n in graph.nodes}
        self._module_ids = {id(self._gm.get_submodule(t)): nid for t, nid in self._targets.items()}
        self._weight_storages = {t.untyped_storage().data_ptr() for t in (*self._gm.parameters(), *self._gm.buffers())}
        self._out_dtypes: list[np.dtype | None] = []
        for name in graph.output_names:
            t = graph.tensors.get(name)
            self._out_dtypes.append(np_dtype(t.elem_type) if t is not None else None)

    # ------------------------------------------------------------------ facts
    @property
    def module(self):
        """The converted ``torch.fx.GraphModule`` (submodules named after graph node ids)."""
        return self._gm

    @property
    def node_mapping(self) -> dict[str, list[str]]:
        """Submodule name -> the graph node ids it covers (one each)."""
        return {t: [nid] for t, nid in self._targets.items()}

    @property
    def fx_node_mapping(self) -> dict[str, str]:
        """fx node name -> graph node id, for call_module nodes and the getitem calls on them."""
        return dict(self._fx_nodes)

    # ------------------------------------------------------------------ running
    def _tensors(self, feeds: Mapping[str, np.ndarray]) -> list:
        torch = self._torch
        out = []
        for name in self.graph.input_names:
            a = feeds[name]
            if not (a.flags.c_contiguous and a.flags.writeable):
                a = np.array(a, order="C", copy=True)
            try:
                t = torch.from_numpy(a)
            except TypeError as exc:
                raise BackendError(f"torch cannot take input '{name}' of dtype {a.dtype}: {exc}") from exc
            out.append(t.to(self._device) if self._device.type != "cpu" else t)
        return out

    def _numpy(self, result, args: Sequence[Any] = ()) -> dict[str, np.ndarray]:
        """Outputs as numpy arrays of the graph's dtypes. On the CPU, an output that shares memory
        with a feed, a weight or another output (a passed-through input, an initializer output, a
        view) is copied, so no returned array aliases the caller's feeds or the model."""
        torch = self._torch
        outs = {}
        guard = set(self._weight_storages) if self._device.type == "cpu" else set()
        if guard:
            guard.update(a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor))
        for name, value, want in zip(self.graph.output_names, result, self._out_dtypes):
            if isinstance(value, torch.Tensor):
                v = value.detach()
                if v.dtype == torch.bfloat16:
                    v = v.float()
                arr = v.cpu().numpy()
                if guard:
                    ptr = v.untyped_storage().data_ptr()
                    if ptr in guard:
                        arr = arr.copy()
                    guard.add(ptr)
            else:
                arr = np.asarray(value)
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
            outs[name] = arr
        return outs

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """Inference mode, under autocast to float16/bfloat16 when the session's precision says."""
        torch = self._torch
        with torch.inference_mode():
            if self._precision == "fp32":
                yield
            else:
                dtype = torch.float16 if self._precision == "fp16" else torch.bfloat16
                with torch.autocast(device_type=self._device.type, dtype=dtype):
                    yield

    def _call(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = self._tensors(feeds)
        try:
            with self._context():
                result = self._gm(*args)
            return self._numpy(result, args)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - a converted op failing at run time
            raise BackendError(self._failure(exc)) from exc

    def _failure(self, exc: BaseException) -> str:
        """Name the graph node whose submodule raised, from the traceback."""
        where = None
        tb = exc.__traceback__
        while tb is not None:
            obj = tb.tb_frame.f_locals.get("self")
            if obj is not None and id(obj) in self._module_ids:
                where = self._module_ids[id(obj)]
            tb = tb.tb_next
        msg = " ".join(str(exc).split())[:400]
        if where is not None:
            return f"torch failed at node {self.graph.node(where).label}: {type(exc).__name__}: {msg}"
        return f"torch failed to run the model: {type(exc).__name__}: {msg}"

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._call(feeds)

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)

    def _close_impl(self) -> None:
        self._gm = None
        self._module_ids = {}
        if self._device.type == "cuda":
            with contextlib.suppress(Exception):
                self._torch.cuda.empty_cache()

    # ------------------------------------------------------------------ intermediates
    def _intermediates_impl(self, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors, captured in one run by forward hooks on the submodules of the nodes
        that produce them (registered for this call only). A module's output is its node's value
        when the node has one output; a tuple or list holds the node's outputs in ONNX order (the
        index the ``getitem`` calls of the fx graph pick), so output k is its k-th element. Graph
        inputs come from the feeds and graph outputs without a submodule (initializers, passed-through
        inputs) from the run's results. Missing: unknown names, and the outputs of nodes with no
        submodule (``unmapped``: Identity nodes folded into initializers) or whose module's output
        has no tensor in that place. Values are copied when captured, to the CPU, as the ONNX
        tensor's dtype, so later in-place ops cannot change them."""
        torch = self._torch
        module_of = {nid: t for t, nid in self._targets.items()}
        inputs = set(self.graph.input_names)
        outputs = set(self.graph.output_names)
        wanted = list(dict.fromkeys(names))
        # node id -> [(output index, output count, tensor name)]
        hooked: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        from_results: list[str] = []
        for name in wanted:
            if name in inputs:
                continue
            prod = self._producers.get(name)
            if prod is not None and prod[0] in module_of:
                hooked[prod[0]].append((prod[1], prod[2], name))
            elif name in outputs:
                from_results.append(name)
        values: dict[str, np.ndarray] = {}
        if hooked or from_results:
            captured: dict[str, Any] = {}

            def hook_for(picks: list[tuple[int, int, str]]):
                def hook(module, args, output) -> None:
                    for k, count, name in picks:
                        if isinstance(output, (tuple, list)):
                            value = output[k] if k < len(output) else None
                        else:
                            value = output if k == 0 else None
                        if isinstance(value, torch.Tensor):
                            # a copy on the CPU (.cpu() alone returns the same tensor there)
                            captured[name] = value.detach().to("cpu", copy=True)

                return hook

            handles = []
            args = self._tensors(feeds)
            try:
                for nid, picks in hooked.items():
                    handles.append(self._gm.get_submodule(module_of[nid]).register_forward_hook(hook_for(picks)))
                with self._context():
                    result = self._gm(*args)
                    results = self._numpy(result, args) if from_results else {}
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - a converted op failing at run time
                raise BackendError(self._failure(exc)) from exc
            finally:
                for h in handles:
                    h.remove()
            for name, t in captured.items():
                arr = self._as_numpy(name, t)
                if arr is not None:
                    values[name] = arr
            for name in from_results:
                if name in results:
                    values[name] = results[name]
        out: dict[str, np.ndarray] = {}
        for name in wanted:  # in the order asked
            if name in inputs:
                out[name] = np.array(feeds[name], copy=True)
            elif name in values:
                out[name] = values[name]
        return out

    def _as_numpy(self, name: str, t) -> np.ndarray | None:
        """A captured CPU tensor as numpy, in the dtype of ONNX tensor ``name`` where the graph
        knows it (None when numpy cannot hold the value)."""
        try:
            if t.dtype == self._torch.bfloat16:
                t = t.float()
            arr = t.numpy()
            info = self.graph.tensor(name)
            want = np_dtype(info.elem_type) if info is not None and info.elem_type else None
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
        except Exception:  # noqa: BLE001 - dtypes numpy lacks
            return None
        return arr

    # ------------------------------------------------------------------ tracing
    @contextlib.contextmanager
    def _ranges(self, profiler: bool = True, nvtx: bool = False) -> Iterator[None]:
        """Wrap each mapped submodule in a ``record_function`` range (``profiler``) and/or an
        NVTX push/pop range (``nvtx``), both named ``mlms_ir::<node id>``, for the duration."""
        ranged = _range_module()
        swapped: list[tuple[Any, str, Any]] = []
        try:
            for target, nid in self._targets.items():
                parent_name, _, leaf = target.rpartition(".")
                parent = self._gm.get_submodule(parent_name) if parent_name else self._gm
                inner = getattr(parent, leaf)
                setattr(parent, leaf, ranged(inner, NODE_PREFIX + nid, profiler=profiler, nvtx=nvtx))
                swapped.append((parent, leaf, inner))
            yield
        finally:
            for parent, leaf, inner in reversed(swapped):
                setattr(parent, leaf, inner)

    @contextlib.contextmanager
    def nvtx_ranges(self) -> Iterator[None]:
        """While open, every graph node's call is wrapped in an NVTX push/pop range named
        ``mlms_ir::<node id>`` (default domain), for external tools: Nsight Systems shows the
        graph's nodes on its timeline, and Nsight Compute filters and attributes kernels by them
        (:mod:`mlms_ir.gpu.ncu`). A CUDA session's traced runs carry these ranges too. Cheap, but
        not free: plain runs go without them."""
        if self._device.type != "cuda":
            raise BackendError("NVTX ranges need the torch backend on a CUDA device")
        if not _nvtx_works(self._torch):
            raise BackendError(f"this torch build ({self._torch.__version__}) cannot push NVTX ranges")
        with self._ranges(profiler=False, nvtx=True):
            yield

    def _trace_impl(self, feeds: dict[str, np.ndarray], runs: int) -> list[TraceResult]:
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._device.type == "cuda" else [])
        outputs: list[dict[str, np.ndarray]] = []
        walls: list[float] = []
        nvtx = self._device.type == "cuda" and _nvtx_works(self._torch)
        with tempfile.TemporaryDirectory(prefix="mlms_ir_torch_") as tmp, self._ranges(nvtx=nvtx):
            path = os.path.join(tmp, "trace.json")
            with profile(activities=activities) as prof:
                for k in range(runs):
                    t0 = time.perf_counter()
                    with record_function(f"{RUN_PREFIX}{k}"):
                        outputs.append(self._call(feeds))  # the outputs' copy to numpy waits for the device
                    walls.append((time.perf_counter() - t0) * 1e6)
            prof.export_chrome_trace(path)
            with open(path, encoding="utf-8") as fh:
                trace = json.load(fh)
        per_run = split_trace(trace, self._op_types, self._names)
        if len(per_run) != runs:
            log.warning("the torch profile holds %d run ranges for %d runs", len(per_run), runs)
        results = []
        for k in range(runs):
            events, wall = per_run[k] if k < len(per_run) else ([], walls[k])
            results.append(TraceResult(outputs=outputs[k], events=events, wall_us=wall))
        return results



# ---------------------------------------------------------------------------------------------- chrome traces
def trace_events(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The complete ('X') events of a Chrome trace (a dict with ``traceEvents`` or the list)."""
    events = trace.get("traceEvents", []) if isinstance(trace, Mapping) else trace
    return [e for e in events if e.get("ph") == "X" and "ts" in e]


def _node_id(name: str) -> str | None:
    if name.startswith(NODE_PREFIX):
        return name[len(NODE_PREFIX):] or None
    return None


class _Ranges:
    """Node ranges of one thread (or stream), for innermost-enclosing lookups."""

    def __init__(self, ranges: Iterable[tuple[float, float, str]]) -> None:
        items = sorted(ranges)
        self.starts = [s for s, _, _ in items]
        self.ends = [e for _, e, _ in items]
        self.ids = [i for _, _, i in items]
        self.max_end: list[float] = []
        m = float("-inf")
        for e in self.ends:
            m = max(m, e)
            self.max_end.append(m)

    def at(self, t: float) -> str | None:
        """The innermost range containing ``t`` (the latest-starting one)."""
        k = bisect.bisect_right(self.starts, t) - 1
        while k >= 0 and self.max_end[k] >= t:
            if self.ends[k] >= t:
                return self.ids[k]
            k -= 1
        return None


@dataclass
class DeviceWork:
    """One kernel, memcpy or memset, with where it was launched from and the node it belongs to."""

    event: dict[str, Any]
    node: str | None
    launch_ts: float | None
    via: str  # "launch" (its launch call lay in a node range), "external id", "gpu range" or ""
    #: The runtime/driver call (or host op) that launched it, when the trace links one.
    launch: dict[str, Any] | None = None


def _thread(e: Mapping[str, Any]) -> tuple[Any, Any]:
    return (e.get("pid"), e.get("tid"))


def find_device_work(events: Sequence[Mapping[str, Any]]) -> list[DeviceWork]:
    """Attribute every device event of a parsed Chrome trace to a graph node.

    A kernel is linked to the runtime or driver call that launched it by ``args.correlation``; the
    innermost ``mlms_ir::<id>`` host range (``user_annotation``) around that call on the same
    thread is its node. Without a launch record, the host op with the kernel's ``External id``
    stands in for it. When the launch call lies in no node range of its thread, the host op its
    ``External id`` names (the innermost torch op around the launch, on torch's own thread id and
    clock) decides, provided the call lies within that op: Kineto writes a runtime call's ``tid``
    as CUPTI's thread id, mapped to the system thread id only for threads it registered (an
    unmapped one looks like ``81150400`` beside a process id of ``134579``), and times it with
    CUPTI's clock. Failing all that, the ``mlms_ir::<id>`` range the profiler projects onto the
    kernel's stream (``gpu_user_annotation``) that contains it. Otherwise it stays unattributed.
    """
    host: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    device_ranges: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    launches: dict[Any, Mapping[str, Any]] = {}
    by_external: dict[Any, Mapping[str, Any]] = {}
    for e in events:
        cat = e.get("cat")
        args = e.get("args") or {}
        if cat in HOST_CATS:
            ext = args.get("External id")
            if ext is not None:
                by_external.setdefault(ext, e)
            nid = _node_id(str(e.get("name", ""))) if cat == "user_annotation" else None
            if nid is not None:
                host[_thread(e)].append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), nid))
        elif cat in LAUNCH_CATS:
            corr = args.get("correlation")
            if corr is not None:
                launches.setdefault(corr, e)
        elif cat == "gpu_user_annotation":
            nid = _node_id(str(e.get("name", "")))
            if nid is not None:
                device_ranges[_thread(e)].append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), nid))
    host_idx = {k: _Ranges(v) for k, v in host.items()}
    dev_idx = {k: _Ranges(v) for k, v in device_ranges.items()}
    work: list[DeviceWork] = []
    for e in events:
        if e.get("cat") not in DEVICE_CATS:
            continue
        args = e.get("args") or {}
        node, via, launch_ts = None, "", None
        launch = launches.get(args.get("correlation")) if args.get("correlation") is not None else None
        if launch is None and args.get("External id") is not None:
            launch = by_external.get(args.get("External id"))
            kind = "external id"
        else:
            kind = "launch"
        if launch is not None:
            launch_ts = float(launch["ts"])
            idx = host_idx.get(_thread(launch))
            node = idx.at(launch_ts) if idx is not None else None
            if node is None and launch.get("cat") == "user_annotation":
                node = _node_id(str(launch.get("name", "")))
            if node is not None:
                via = kind
        if node is None and launch is not None and launch.get("cat") in LAUNCH_CATS:
            # the call lies in no node range of its thread: try the host op its External id names.
            # Kineto before 2024 (pytorch/kineto#873, #1001) wrote the call's own CUPTI
            # correlation id there, a number from another sequence: the op must enclose the call
            op = by_external.get((launch.get("args") or {}).get("External id"))
            if op is not None:
                start = float(op["ts"])
                if start - LAUNCH_SLACK_US <= launch_ts <= start + float(op.get("dur", 0)) + LAUNCH_SLACK_US:
                    idx = host_idx.get(_thread(op))
                    node = idx.at(start) if idx is not None else None
                    if node is None and op.get("cat") == "user_annotation":
                        node = _node_id(str(op.get("name", "")))
                    if node is not None:
                        via = "external id"
        if node is None:
            idx = dev_idx.get(_thread(e))
            if idx is not None:
                mid = float(e["ts"]) + float(e.get("dur", 0)) / 2
                node = idx.at(mid)
                if node is not None:
                    via = "gpu range"
        work.append(DeviceWork(dict(e), node, launch_ts, via, dict(launch) if launch is not None else None))
    return work


def _kernel_trace(w: DeviceWork, origin: float, op_types: Mapping[str, str]) -> NodeTrace:
    e = w.event
    args_in = e.get("args") or {}
    args: dict[str, Any] = {"category": e.get("cat")}
    for key, ours in KERNEL_ARGS.items():
        if key in args_in:
            args[ours] = args_in[key]
    if w.via:
        args["attributed_by"] = w.via
    if w.launch is not None and w.launch.get("cat") in LAUNCH_CATS:
        args["launch_us"] = float(w.launch["ts"]) - origin
        args["launch_dur_us"] = float(w.launch.get("dur", 0))
        args["launch_call"] = str(w.launch.get("name", ""))
    stream = args_in.get("stream", e.get("tid"))
    device = args_in.get("device", e.get("pid"))
    return NodeTrace(
        name=str(e.get("name", "")),
        op_type=op_types.get(w.node, "") if w.node else "",
        start_us=float(e["ts"]) - origin,
        time_us=float(e.get("dur", 0)),
        covers=[w.node] if w.node else [],
        track=f"cuda:{device} stream {stream}",
        kind="kernel",
        args=args,
    )


def attribute_kernels(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]], op_types: Mapping[str, str] | None = None,
                      origin: float | None = None) -> list[NodeTrace]:
    """One ``kernel`` NodeTrace per kernel, memcpy and memset of a ``torch.profiler`` Chrome trace,
    covering the graph node whose ``mlms_ir::<id>`` range launched it (``[]`` when none did).
    ``start_us`` counts from ``origin`` (default: the trace's first event). Args carry the grid,
    block, registers per thread, shared memory, blocks and warps per SM, estimated achieved
    occupancy, device, stream and correlation id where the trace has them."""
    events = trace_events(trace)
    if origin is None:
        origin = min((float(e["ts"]) for e in events), default=0.0)
    ops = op_types or {}
    return [_kernel_trace(w, origin, ops) for w in sorted(find_device_work(events), key=lambda w: float(w.event["ts"]))]


def kernel_coverage(events: Iterable[NodeTrace]) -> float:
    """The share of device time (``kernel`` events) attributed to graph nodes; 0.0 without any."""
    total = attributed = 0.0
    for ev in events:
        if ev.kind != "kernel":
            continue
        total += ev.time_us
        if ev.covers:
            attributed += ev.time_us
    return attributed / total if total else 0.0


def split_trace(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]], op_types: Mapping[str, str] | None = None,
                names: Mapping[str, str] | None = None) -> list[tuple[list[NodeTrace], float]]:
    """Cut a traced session's Chrome trace into runs (``mlms_ir.run::<k>`` ranges; the whole
    trace is one run when it has none): per run, the ``node`` events of its node ranges and the
    ``kernel`` events of the device work it launched, times from the run's start, and its wall
    time. Node events carry ``device_us`` (the time of their kernels) and ``kernels`` when any
    device work was attributed to them."""
    events = trace_events(trace)
    ops = op_types or {}
    nm = names or {}
    runs = sorted((e for e in events if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith(RUN_PREFIX)),
                  key=lambda e: float(e["ts"]))
    if runs:
        windows = [(float(r["ts"]), float(r["ts"]) + float(r.get("dur", 0))) for r in runs]
    else:
        start = min((float(e["ts"]) for e in events), default=0.0)
        end = max((float(e["ts"]) + float(e.get("dur", 0)) for e in events), default=0.0)
        windows = [(start, end)]
    starts = [s for s, _ in windows]

    def run_of(t: float) -> int | None:
        k = bisect.bisect_right(starts, t) - 1
        return k if k >= 0 and t <= windows[k][1] else None

    nodes: list[list[NodeTrace]] = [[] for _ in windows]
    for e in events:
        if e.get("cat") != "user_annotation":
            continue
        nid = _node_id(str(e.get("name", "")))
        if nid is None or str(e.get("name", "")).startswith(RUN_PREFIX):
            continue
        k = run_of(float(e["ts"]))
        if k is None:
            continue
        nodes[k].append(NodeTrace(name=nm.get(nid, nid), op_type=ops.get(nid, ""), start_us=float(e["ts"]) - windows[k][0],
                                  time_us=float(e.get("dur", 0)), covers=[nid], track="cpu", kind="node"))
    kernels: list[list[NodeTrace]] = [[] for _ in windows]
    for w in find_device_work(events):
        k = run_of(w.launch_ts if w.launch_ts is not None else float(w.event["ts"]))
        if k is None:
            continue
        kernels[k].append(_kernel_trace(w, windows[k][0], ops))
    out = []
    for k, (start, end) in enumerate(windows):
        dev: dict[str, list[float]] = defaultdict(list)
        for kt in kernels[k]:
            if kt.covers:
                dev[kt.covers[0]].append(kt.time_us)
        for nt in nodes[k]:
            times = dev.get(nt.covers[0])
            if times:
                nt.args = {"device_us": sum(times), "kernels": len(times)}
        evs = sorted(nodes[k], key=lambda n: n.start_us) + sorted(kernels[k], key=lambda n: n.start_us)
        # on CUDA the run ends when its last kernel does, which the host range already waits for
        last = max((kt.start_us + kt.time_us for kt in kernels[k]), default=0.0)
        out.append((evs, max(end - start, last)))
    return out
