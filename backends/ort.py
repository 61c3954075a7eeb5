"""ONNX Runtime: CPU, CUDA and TensorRT execution providers.

Per-node times come from ORT's profiler. With graph optimisations on, ORT fuses and renames
nodes (Conv+Relu become one node, the NCHWc transformer adds layout reorders); each profiled
node is mapped back onto the graph through the optimised model ORT writes out: a node of the
optimised graph covers the original nodes between the tensors it reads and the tensors it
writes (names ORT derives from original tensors, such as ``X_nchwc``, are matched to them).
Work with no original tensor on its outputs (layout reorders, memory copies) stays unattributed,
and so do the Casts ORT inserts (to run a float16 node in float32), though one writes an original
tensor. ORT profiles a node without a name as ``<OpType>_<index>``, an index its optimised graph
does not keep, and refuses two nodes of one name: the model ORT runs names every node uniquely,
after the graph node it is where it has no name of its own (``mlms_ir:n3``; :func:`ort_names`).

onnxruntime computes a few node configurations differently from ONNX's definition (onnx's own
backend node test cases, which ``tools/conformance.py`` runs). A wrong number is worse than none:
this backend, and ``ort-isolated``, refuse exactly those configurations in one line
(:func:`departures`, :data:`DEPARTURES`), when the session is prepared, or before a run when the
configuration depends on the values fed. onnxruntime's Python API returns ``float8e4m3fn`` outputs
as their uint8 bits: they are given back as ``ml_dtypes.float8_e4m3fn`` (:func:`as_declared`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mlms_ir.backends.base import Availability, Backend, BackendError, NodeTrace, Session, TraceResult, model_source
from mlms_ir.ir import Graph
from mlms_ir.ir.graph import Node, constant_value

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
OPT_LEVELS = ("none", "basic", "extended", "all")
#: Suffixes ORT appends to the names of tensors it derives from an original tensor.
_DERIVED_SUFFIXES = ("_nchwc",)


def _ort():
    from mlms_ir._lazy import onnxruntime

    return onnxruntime()


class OrtBackend(Backend):
    name = "ort"
    devices = ("cpu", "cuda", "tensorrt")
    takes_non_tensors = True
    description = "ONNX Runtime (CPU, CUDA and TensorRT execution providers)"

    def _available_impl(self, device: str, **options: Any) -> Availability:
        ort = _ort()
        provider = PROVIDERS[device]
        if provider not in ort.get_available_providers():
            hint = "install onnxruntime-gpu instead of onnxruntime" if device != "cpu" else ""
            return Availability(False, f"this onnxruntime ({ort.__version__}) has no {provider}" + (f"; {hint}" if hint else ""))
        if device != "cpu":
            from mlms_ir.system import gpu_count

            if gpu_count() == 0:
                return Availability(False, "no NVIDIA GPU is visible (NVML finds none)")
        return Availability(True)

    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        return OrtSession(graph, device, **options)


def _session_options(opt: str | None, threads: int | None):
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 4  # fatal only: a failure is our one error line, not also ORT's log
    if opt is not None:
        levels = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if opt not in levels:
            raise BackendError(f"unknown ORT optimisation level '{opt}'; choose one of: {', '.join(OPT_LEVELS)}")
        so.graph_optimization_level = levels[opt]
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


class OrtSession(Session):
    def __init__(self, graph: Graph, device: str, opt: str | None = None, threads: int | None = None,
                 precision: str = "fp32") -> None:
        super().__init__("ort", device, graph, {"opt": opt or "default", "threads": threads, "precision": precision})
        self._opt = opt
        self._threads = threads
        self._precision = precision
        # ORT's profile names a node without a name ``<OpType>_<index>``, unknowable from its
        # optimised graph: the model ORT runs gives every node a unique name (:func:`ort_names`)
        self._source, self._data_dir = _model_for_ort(graph, precision)
        self._providers = [PROVIDERS[device]] + (["CPUExecutionProvider"] if device != "cpu" else [])
        self._guard = departures(graph)  # refuses what onnxruntime computes differently from ONNX
        self._sess = self._make(_session_options(opt, threads))
        self._output_names = [o.name for o in self._sess.get_outputs()]
        self._mapping: dict[str, list[str]] | None = None
        self._exposed = None
        self._survivors: set[str] | None = None

    def _make(self, so, source: str | bytes | None = None):
        ort = _ort()
        if self._data_dir is not None:  # renamed, from memory: external data resolves beside the model file
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", self._data_dir)
        try:
            return ort.InferenceSession(self._source if source is None else source, so, providers=self._providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"onnxruntime cannot load the model: {' '.join(str(exc).split())[:500]}") from exc

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # onnxruntime's Python API gives and takes values as mlms_ir.values does: sequences as
        # lists, maps as dicts, an empty optional as None
        self._guard.check(feeds)
        try:
            outs = self._sess.run(None, feeds)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"onnxruntime failed to run the model: {' '.join(str(exc).split())[:500]}") from exc
        return as_declared(self.graph, dict(zip(self._output_names, outs)))

    def _trace_impl(self, feeds: dict[str, np.ndarray], runs: int) -> list[TraceResult]:
        # ORT's profiler covers a whole session: a second session, traced for all runs at once
        # (the plain session stays untraced for latency measurements)
        self._guard.check(feeds)
        with tempfile.TemporaryDirectory(prefix="mlms_ir_ort_") as tmp:
            so = _session_options(self._opt, self._threads)
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "profile")
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            sess = self._make(so)
            outputs = []
            for _ in range(max(1, runs)):
                outputs.append(as_declared(self.graph, dict(zip(self._output_names, sess.run(None, feeds)))))
            path = sess.end_profiling()
            events = json.loads(Path(path).read_text())
            if self._mapping is None:
                self._mapping = map_optimized_nodes(self.graph, Path(tmp) / "optimized.onnx")
        return split_profile(events, outputs, self._mapping)

    def _intermediates_impl(self, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        # a copy of the model with the tensors as extra outputs (ORT keeps them, so fusions that
        # would hide them do not happen); weights stay where they are (linked, never copied)
        wanted = [n for n in names if n in self.graph.tensors]
        self._guard.check(feeds)
        if set(wanted) <= set(self._output_names):  # all outputs already: no exposing copy needed
            return {k: v for k, v in self._run_impl(feeds).items() if k in set(wanted)}
        if self._opt not in ("none", "basic"):
            # with fusions on, expose only the tensors that survive them (adding the others as
            # outputs would undo the very optimisations under test)
            surviving = self._surviving()
            wanted = [n for n in wanted if n in surviving]
        key = tuple(wanted)
        if self._exposed is None or self._exposed[0] != key:
            self._exposed = (key, self._make_exposing(wanted))
        sess, out_names = self._exposed[1]
        try:
            values = sess.run(out_names, feeds)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"onnxruntime failed to run the model: {' '.join(str(exc).split())[:500]}") from exc
        return as_declared(self.graph, {n: v for n, v in zip(out_names, values) if n in set(wanted)})

    def _surviving(self) -> set[str]:
        """Original tensor names that ORT's optimised graph still computes (graph inputs included)."""
        if self._survivors is None:
            with tempfile.TemporaryDirectory(prefix="mlms_ir_ort_s_") as tmp:
                so = _session_options(self._opt, self._threads)
                so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
                self._make(so)
                opt = onnx.load(so.optimized_model_filepath, load_external_data=False)
            self._survivors = {o for n in opt.graph.node for o in n.output} | {i.name for i in opt.graph.input}
        return self._survivors

    def _make_exposing(self, names: list[str]):
        from onnx import helper

        src = self._source
        model = onnx.load(src, load_external_data=False) if isinstance(src, str) else onnx.load_model_from_string(src)
        present = {o.name for o in model.graph.output}
        types = {}
        if self._precision != "fp32":  # the converted model's element types, not the original's
            inferred = onnx.shape_inference.infer_shapes(model)
            types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for name in names:
            t = self.graph.tensors[name]
            if name not in present and t.kind not in ("input", "initializer"):
                declared = self.graph.value_type(name) if t.value_kind != "tensor" else None
                if declared is not None:  # a sequence, map or optional: its whole type
                    vi = onnx.ValueInfoProto(name=name)
                    vi.type.CopyFrom(declared)
                    model.graph.output.append(vi)
                    continue
                elem = types.get(name) or t.elem_type or onnx.TensorProto.FLOAT
                model.graph.output.append(helper.make_tensor_value_info(name, elem, None))
        so = _session_options(self._opt, self._threads)
        if isinstance(src, str):  # from memory; external data still resolves beside the model file
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(Path(src).resolve().parent))
        sess = self._make(so, model.SerializeToString())
        outs = [o.name for o in sess.get_outputs()]
        return sess, [n for n in names if n in outs]

    def _close_impl(self) -> None:
        self._exposed = None

    @property
    def node_mapping(self) -> dict[str, list[str]]:
        """ORT node name -> the graph node ids it covers (filled by the first traced run)."""
        return dict(self._mapping or {})


# ---------------------------------------------------------------------------------------------- departures from ONNX
class DecidedLater(Exception):
    """A value known only once the feeds arrive (it is, or its shape is, a graph input's)."""


class ComputedValue(Exception):
    """A value computed inside the model: mlms_ir cannot know it before running the model."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class NodeFacts:
    """What a rule may ask of the model: constant values and known shapes, plus the feeds when a
    run is about to start (None while preparing, when a graph input's value raises :class:`DecidedLater`)."""

    graph: Graph
    feeds: Mapping[str, Any] | None = None

    def _fed(self, node: Node, name: str) -> bool:
        """Whether ``name``, read by ``node``, is an input of the main graph (not a subgraph's own)."""
        t = node.graph.tensor(name)
        return t is not None and t.kind == "input" and self.graph.tensors.get(name) is t

    def value(self, node: Node, name: str) -> np.ndarray:
        v = constant_value(node.graph, name)
        if v is not None:
            return v
        if self._fed(node, name):
            if self.feeds is None:
                raise DecidedLater(name)
            return np.asarray(self.feeds[name])
        raise ComputedValue(name)

    def shape(self, node: Node, name: str) -> tuple[int, ...]:
        t = node.graph.tensor(name)
        if t is not None and t.known:
            return tuple(t.shape)  # type: ignore[arg-type]
        if self._fed(node, name):
            if self.feeds is None:
                raise DecidedLater(name)
            return tuple(np.shape(self.feeds[name]))
        v = constant_value(node.graph, name)
        if v is not None:
            return v.shape
        raise ComputedValue(name)

    def elem_type(self, node: Node, name: str) -> int:
        t = node.graph.tensor(name)
        return t.elem_type if t is not None else 0


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def is_whole(x: float) -> bool:
    """Whether ``x`` is a whole number, up to float32 rounding of a scale (5 x 0.6f is 3.0000001:
    the difference that makes is far below any tolerance)."""
    return abs(x - round(x)) <= 1e-5 * max(1.0, abs(x))


def _attention_qk_output(node: Node, facts: NodeFacts) -> str | None:
    """onnxruntime 1.32's Attention (opset 23/24) writes its optional ``qk_matmul_output`` (the 4th
    output) differently from ONNX in two settings; ``Y`` and the other modes agree:

    - mode 0 with ``softcap``: onnxruntime gives the scores before the softcap, ONNX after it;
    - mode 2 (the scores with the mask added): where a causal mask, a boolean ``attn_mask`` or
      ``nonpad_kv_seqlen`` masks a position, onnxruntime writes the float's lowest value
      (-3.4e38), ONNX -inf (a float ``attn_mask`` is added as given, the same in both)."""
    outs = node.outputs
    if len(outs) < 4 or not outs[3]:
        return None
    mode = int(node.attrs.get("qk_matmul_output_mode", 0))
    softcap = float(node.attrs.get("softcap", 0.0))
    if mode == 0 and softcap != 0.0:
        return (f"onnxruntime returns qk_matmul_output (qk_matmul_output_mode 0) before the softcap ({softcap:g}), "
                "where ONNX applies it first")
    if mode != 2:
        return None
    ins = [*node.inputs, *[""] * 7]
    masks = []
    if int(node.attrs.get("is_causal", 0)):
        masks.append("is_causal=1")
    if ins[3] and facts.elem_type(node, ins[3]) in (0, onnx.TensorProto.BOOL):
        masks.append("a boolean attn_mask")
    if ins[6]:
        masks.append("nonpad_kv_seqlen")
    if not masks:
        return None
    return (f"onnxruntime writes the positions masked by {' and '.join(masks)} as the lowest finite value (-3.4e38 "
            "in float32) in qk_matmul_output (qk_matmul_output_mode 2), where ONNX writes -inf")


def _maxunpool_output_shape(node: Node, facts: NodeFacts) -> str | None:
    """onnxruntime 1.32's MaxUnpool scatters the indices into the ``output_shape`` given as its third
    input; ONNX unpools into the default shape (from kernel, strides and pads) and pads that at the
    end of each axis. They agree when ``output_shape`` is the default shape."""
    ins = node.inputs
    if len(ins) < 3 or not ins[2]:
        return None
    wanted = [int(d) for d in facts.value(node, ins[2]).reshape(-1)]
    shape = facts.shape(node, ins[0])
    spatial = len(shape) - 2
    kernel = list(node.attrs.get("kernel_shape", []))
    strides = list(node.attrs.get("strides", [])) or [1] * spatial
    pads = list(node.attrs.get("pads", [])) or [0] * (2 * spatial)
    if spatial < 1 or len(kernel) != spatial or len(strides) != spatial or len(pads) != 2 * spatial:
        return None  # malformed: onnxruntime's own error says so
    default = [*shape[:2], *((shape[2 + i] - 1) * strides[i] - pads[i] - pads[spatial + i] + kernel[i] for i in range(spatial))]
    if wanted == default:
        return None
    return (f"onnxruntime scatters the indices into output_shape {wanted}, where ONNX unpools into "
            f"{default} and pads that")


def _resize_align_corners(node: Node, facts: NodeFacts) -> str | None:
    """onnxruntime 1.32's Resize with ``coordinate_transformation_mode=align_corners`` maps output
    coordinate x to x * (in - 1) / (out - 1) with ``out`` the rounded output length; ONNX divides
    by (in x scale - 1), the unrounded length. They differ on an axis where in x scale is not a
    whole number and the output is longer than 1: scales that are not whole numbers, or ``sizes``
    with ``keep_aspect_ratio_policy`` not_larger / not_smaller (every mode: nearest, linear, cubic)."""
    if node.opset < 11 or _text(node.attrs.get("coordinate_transformation_mode"), "half_pixel") != "align_corners":
        return None
    ins = [*node.inputs, "", "", ""]
    x, scales_in, sizes_in = ins[0], ins[2], ins[3]
    axes = node.attrs.get("axes")
    policy = _text(node.attrs.get("keep_aspect_ratio_policy"), "stretch")
    if sizes_in:
        if policy not in ("not_larger", "not_smaller"):
            return None  # stretch: in x scale is the size given
        sizes = [int(s) for s in facts.value(node, sizes_in).reshape(-1)]
        shape = facts.shape(node, x)
        dims = [int(a) % len(shape) for a in axes] if axes else list(range(len(shape)))
        if len(sizes) != len(dims):
            return None
        ratios = [sizes[k] / shape[d] for k, d in enumerate(dims) if shape[d]]
        if not ratios:
            return None
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        per_axis = [(d, scale, round) for d in dims]
    elif scales_in:
        scales = [float(s) for s in facts.value(node, scales_in).reshape(-1)]
        if not scales or all(is_whole(s) for s in scales):
            return None  # whole scales give whole lengths, whatever the input's
        shape = facts.shape(node, x)
        dims = [int(a) % len(shape) for a in axes] if axes else list(range(len(shape)))
        if len(scales) != len(dims):
            return None
        per_axis = [(d, scales[k], math.floor) for k, d in enumerate(dims)]
    else:
        return None
    for d, scale, rounding in per_axis:
        exact = shape[d] * scale
        if not is_whole(exact) and rounding(exact) > 1:
            return (f"onnxruntime aligns the corners (align_corners) to the rounded output length "
                    f"{rounding(exact)} of axis {d}, where ONNX uses input length x scale = {exact:.6g}")
    return None


def _maxpool_same_dilated(node: Node, facts: NodeFacts) -> str | None:
    """onnxruntime 1.32's MaxPool with ``auto_pad`` SAME_UPPER or SAME_LOWER pads for the
    undilated kernel: a dilation above 1 gives a shorter output than ONNX's ceil(n / stride)."""
    auto_pad = _text(node.attrs.get("auto_pad"), "NOTSET")
    dilations = [int(d) for d in node.attrs.get("dilations", []) or []]
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER") or all(d == 1 for d in dilations):
        return None
    return (f"onnxruntime leaves the dilations {dilations} out of MaxPool's {auto_pad} padding (a shorter output "
            "than ONNX's ceil(n / stride))")


@dataclass(frozen=True)
class Departure:
    """A node configuration onnxruntime computes differently from ONNX's definition: ``rule``
    gives the one-line reason for a node in that configuration (None when the node is fine);
    ``what`` names the configuration, for a node whose deciding values the model computes."""

    op: str
    rule: Callable[[Node, NodeFacts], str | None]
    what: str


#: onnxruntime's departures from ONNX found by ONNX's node test cases (onnx 1.23, onnxruntime
#: 1.32; tools/conformance.py): op type (default domain) -> the rule.
DEPARTURES = {d.op: d for d in (
    Departure("Attention", _attention_qk_output, "qk_matmul_output in these settings"),
    Departure("MaxPool", _maxpool_same_dilated, "MaxPool with SAME padding and dilations"),
    Departure("MaxUnpool", _maxunpool_output_shape, "MaxUnpool with an output_shape other than the default shape"),
    Departure("Resize", _resize_align_corners, "Resize with align_corners where input length x scale is not a whole number"),
)}


class Guard:
    """The departures of one model: :func:`departures` refuses the static ones; :meth:`check`
    refuses, before a run, those that depend on the values fed."""

    def __init__(self, graph: Graph, pending: list[tuple[Node, Departure]]) -> None:
        self.graph = graph
        self.pending = pending

    def check(self, feeds: Mapping[str, Any]) -> None:
        if not self.pending:
            return
        facts = NodeFacts(self.graph, feeds)
        for node, dep in self.pending:
            _refuse(node, dep, facts)

    def __bool__(self) -> bool:
        return bool(self.pending)


def _refuse(node: Node, dep: Departure, facts: NodeFacts) -> None:
    """Raise :class:`BackendError` when ``node`` is in a configuration onnxruntime gets wrong; let
    :class:`DecidedLater` through."""
    try:
        why = dep.rule(node, facts)
    except ComputedValue as exc:
        raise BackendError(
            f"node {node.label}: onnxruntime computes {dep.what} differently from ONNX, and this node's '{exc.name}' "
            "is computed inside the model, so mlms_ir cannot tell before running it: refused") from None
    if why:
        raise BackendError(f"node {node.label}: {why}: refused (a wrong number is worse than none)")


def departures(graph: Graph) -> Guard:
    """Refuse (:class:`BackendError`, one line) a node that onnxruntime computes differently from
    ONNX's definition (:data:`DEPARTURES`), when that follows from the model alone; the nodes that
    depend on fed values come back in a :class:`Guard`, to check before each run."""
    facts = NodeFacts(graph)
    pending: list[tuple[Node, Departure]] = []
    for node in graph.walk():
        dep = DEPARTURES.get(node.op_type) if node.domain == "" else None
        if dep is None:
            continue
        try:
            _refuse(node, dep, facts)
        except DecidedLater:
            pending.append((node, dep))
    return Guard(graph, pending)


#: onnxruntime's Python API returns outputs of these ONNX element types as their raw uint8 bits.
_RAW_BITS = {onnx.TensorProto.FLOAT8E4M3FN: "float8_e4m3fn"}


def as_declared(graph: Graph, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the raw uint8 bits onnxruntime gives for ``float8e4m3fn`` tensors viewed as
    ``ml_dtypes.float8_e4m3fn`` (which onnx itself depends on), as the graph declares them."""
    for name, v in values.items():
        t = graph.tensor(name)
        if t is None or t.elem_type not in _RAW_BITS or not isinstance(v, np.ndarray) or v.dtype != np.uint8:
            continue
        try:
            import ml_dtypes
        except ImportError:
            raise BackendError(f"onnxruntime returns the {t.dtype} tensor '{name}' as its uint8 bits, and ml_dtypes, "
                               "which reads them, is not installed: pip install ml_dtypes") from None
        values[name] = v.view(getattr(ml_dtypes, _RAW_BITS[t.elem_type]))
    return values


PRECISIONS = ("fp32", "fp16", "int8")


#: What mlms_ir names a node that has no name, or the name of a node before it: ``mlms_ir:<node id>``.
_OWN_NAME = "mlms_ir:"


def ort_names(graph: Graph) -> dict[str, str]:
    """Graph node id -> the node's name in the model ORT runs, unique across the model and its
    subgraphs: its own name, unless it has none or a node before it has it (the main graph's nodes
    in file order come first), then ``mlms_ir:<node id>`` (a ``'`` added while a node has that).
    ORT profiles an unnamed node as ``<OpType>_<index>``, an index its optimised graph does not
    keep, and two nodes of one name as one name: neither can be mapped back."""
    nodes = sorted(graph.nodes, key=lambda n: n.index) + [n for n in graph.walk() if n.graph is not graph]
    taken = {n.name for n in nodes if n.name}
    seen: set[str] = set()
    names: dict[str, str] = {}
    for node in nodes:
        name = node.name
        if not name or name in seen:
            name = _OWN_NAME + node.id
            while name in taken:
                name += "'"
            taken.add(name)
        seen.add(name)
        names[node.id] = name
    return names


def _name_nodes(model: onnx.ModelProto, graph: Graph) -> None:
    """Name every node of ``model`` (what ``graph`` was loaded from) as :func:`ort_names` says. A node
    is found by its outputs in the main graph (the loader may put the main graph's nodes in
    execution order) and by its position in a subgraph, and must have the graph node's op type and
    outputs; one that is not found (a call of a model-local function, which the loader inlines)
    gets a name of its own, ``mlms_ir:?<k>``, that no graph node has."""
    names = ort_names(graph)
    by_id = {n.id: n for n in graph.walk()}
    used = set(names.values())
    fresh = iter(range(1 << 62))

    def own() -> str:
        name = f"{_OWN_NAME}?{next(fresh)}"
        while name in used:
            name = f"{_OWN_NAME}?{next(fresh)}"
        used.add(name)
        return name

    def visit(g: onnx.GraphProto, prefix: str | None, main: bool) -> None:
        for i, p in enumerate(g.node):
            if main:
                out = next((o for o in p.output if o), "")
                found = graph.producer(out) if out else None
                nid = found.id if found is not None else None
            else:
                nid = f"{prefix}n{i}" if prefix is not None else None
            node = by_id.get(nid) if nid is not None else None
            domain = "" if p.domain == "ai.onnx" else p.domain
            if node is not None and (node.op_type, node.domain, tuple(node.outputs)) == (p.op_type, domain, tuple(p.output)):
                p.name = names[node.id]
            else:
                nid, p.name = None, own()
            for a in p.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g, f"{nid}/{a.name}/" if nid else None, False)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for k, sub in enumerate(a.graphs):
                        visit(sub, f"{nid}/{a.name}[{k}]/" if nid else None, False)

    visit(model.graph, None, True)


def _model_for_ort(graph: Graph, precision: str) -> tuple[str | bytes, str | None]:
    """The model ORT runs, with every node named as :func:`ort_names` says, at ``precision``, and the
    folder its external data lies in when it is passed from memory (None when that needs none)."""
    src = model_source(graph)
    names = ort_names(graph)
    renamed = any(names[n.id] != n.name for n in graph.walk())
    if precision == "fp32" and not renamed:
        return src, None
    if isinstance(src, str):
        model = onnx.load(src, load_external_data=precision != "fp32")  # fp32: weights stay in their files
    else:
        model = onnx.load_model_from_string(src)
    if renamed:
        _name_nodes(model, graph)
    if precision != "fp32":
        return _with_precision(model, precision), None
    return model.SerializeToString(), str(Path(src).resolve().parent) if isinstance(src, str) else None


#: The largest finite float16 and its smallest positive (subnormal) value.
FP16_MAX = 65504.0
FP16_MIN_SUBNORMAL = 2.0 ** -24


def _with_precision(src: str | bytes | onnx.ModelProto, precision: str) -> str | bytes:
    """The model to run at ``precision``: fp16 converts every float tensor and op to float16
    (onnxconverter-common; inputs and outputs stay float32 through Casts); int8 quantizes it
    dynamically (ORT's quantize_dynamic: int8 weights, activations quantized at run time)."""
    if precision == "fp32":
        return src if not isinstance(src, onnx.ModelProto) else src.SerializeToString()
    if precision not in PRECISIONS:
        raise BackendError(f"ORT runs precision {', '.join(PRECISIONS)}, not '{precision}' (bf16: use the torch backend)")
    if isinstance(src, onnx.ModelProto):
        model = src
    else:
        model = onnx.load(src) if isinstance(src, str) else onnx.load_model_from_string(src)
    if precision == "int8":
        return _quantized(model)
    import warnings

    from onnxconverter_common import float16

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # float16's own range: the converter's default clamps every constant beyond 1e4 (and
            # below 1e-7) to it, changing weights float16 holds exactly (2e4 became 1e4)
            converted = float16.convert_float_to_float16(model, keep_io_types=True, max_finite_val=FP16_MAX,
                                                         min_positive_val=FP16_MIN_SUBNORMAL)
    except Exception as exc:  # noqa: BLE001 - the converter raises various types on odd graphs
        raise BackendError(f"cannot convert the model to float16: {' '.join(str(exc).split())[:300]}") from exc
    # one line of ours for the converter's, which come one per tensor and sign ("the float32 number X
    # will be truncated to Y"), also for an X already at the bound that nothing changed
    big = tiny = False
    for w in caught:
        found = re.fullmatch(r"the float32 number (\S+) will be truncated to (\S+)", str(w.message))
        if found:
            x, y = abs(float(found[1])), abs(float(found[2]))
            big |= y == FP16_MAX and x > FP16_MAX
            tiny |= y == FP16_MIN_SUBNORMAL and x < FP16_MIN_SUBNORMAL
    if big:
        log.warning("converting to float16 saturated constants beyond float16's range to +-%g, as a float16 model holds them",
                    FP16_MAX)
    if tiny:
        log.warning("converting to float16 raised nonzero constants below float16's smallest value (2^-24) to it")
    return converted.SerializeToString()


def _quantized(model: onnx.ModelProto) -> bytes:
    import logging as _logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="mlms_ir_q_") as tmp:
        src, dst = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        root = _logging.getLogger()
        level = root.level
        root.setLevel(_logging.ERROR)  # the quantizer logs advice on the root logger
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot quantize the model to int8: {' '.join(str(exc).split())[:300]}") from exc
        finally:
            root.setLevel(level)
        return Path(dst).read_bytes()


def _normalise(name: str, known: set[str]) -> str | None:
    if name in known:
        return name
    for suffix in _DERIVED_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return name[: -len(suffix)]
    return None


def _original_name(name: str, by_name: dict[str, list[str]]) -> str:
    """The original node name an optimised node's name starts from: ORT names fused nodes
    ``<original>/MatMulAddFusion``, ``<original>_new_reshape`` and the like."""
    if not name or name in by_name:
        return name
    for i in range(len(name) - 1, 0, -1):
        if name[i] in "/_" and name[:i] in by_name:
            return name[:i]
    return ""


def map_optimized_nodes(graph: Graph, optimized: Path | onnx.ModelProto) -> dict[str, list[str]]:
    """Map every node of ORT's optimised graph to the original graph node ids it covers."""
    names = ort_names(graph)  # the names the nodes have in the model ORT runs
    if isinstance(optimized, onnx.ModelProto):
        opt = optimized
    else:
        if not Path(optimized).is_file():
            return {names[n.id]: [n.id] for n in graph.nodes}
        opt = onnx.load(str(optimized), load_external_data=False)
    known = set(graph.tensors)
    by_name: dict[str, list[str]] = {names[node.id]: [o for o in node.proto.output if o] for node in graph.nodes}

    def anchors(n: onnx.NodeProto) -> list[str]:
        """Original tensors an optimised node writes: by its outputs' names, by its own name when
        it kept an original node's name, or by a name ORT derived from an original tensor
        (the NCHWc transformer names nodes ``<tensor>_nchwc`` and their outputs ``reorder_token_N``)."""
        found = [a for a in (_normalise(o, known) for o in n.output if o) if a is not None]
        found += [o for o in by_name.get(_original_name(n.name, by_name), []) if o not in found]
        base = _normalise(n.name, known) if n.name else None
        if base is not None and base not in found:
            found.append(base)
        return found + [t for t in _fused_tail(n, found) if t not in found]

    def _fused_tail(n: onnx.NodeProto, found: list[str]) -> list[str]:
        """What a Conv that ORT fused with the Add and the activation after it writes: the NCHWc
        Conv (``Sum`` input, ``activation``) and FusedConv (``Z`` input) are named after the Conv's
        own output, but compute the Add's and the activation's too. Without these tensors the
        Relu of a residual block belonged to no optimised node, and the next node's walk back
        took it, its Add and every earlier block's with them."""
        if n.op_type not in ("Conv", "FusedConv") or n.domain not in ("com.microsoft.nchwc", "com.microsoft") or not found:
            return []
        act = next((onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "activation"), None)
        act = act.decode() if isinstance(act, bytes) else act
        steps = (["Add"] if len(n.input) > 3 and n.input[3] else []) + ([act] if act else [])
        tail, t = [], found[0]
        for op in steps:
            users = graph.consumers(t)
            if len(users) != 1 or users[0].op_type != op or not users[0].proto.output:
                break
            t = users[0].proto.output[0]
            tail.append(t)
        return tail

    layout = ("ReorderOutput", "ReorderInput", "MemcpyToHost", "MemcpyFromHost")

    def inserted(n: onnx.NodeProto) -> bool:
        """Work ORT adds around the graph's nodes: layout reorders, memory copies, and Casts whose
        name is no node's nor made from one (``InsertedPrecisionFreeCast_<tensor>``, which runs a
        float16 node in float32 where the device has no float16 kernel and may serve several nodes;
        the float16 converter's ``<tensor>_cast_to_<node>``). Such a Cast may write an original
        tensor, but does none of the work of the node that made it. (The converter's
        ``<node>_cast_to_<tensor>``, which gives a node's output back in float32, is that node's.)"""
        return n.op_type in layout or (n.op_type == "Cast" and n.domain in ("", "ai.onnx") and not _original_name(n.name, by_name))

    produced_by_opt: dict[str, str] = {}
    for n in opt.graph.node:
        if not inserted(n):
            for a in anchors(n):
                produced_by_opt.setdefault(a, n.name)
    # names that do not tell one profiled node from another: names two optimised nodes have, and
    # ``<OpType>_<index>``, the profile's name for a node ORT added without a name
    counts = Counter(n.name for n in opt.graph.node)
    unnamed_ops = sorted({n.op_type for n in opt.graph.node if not n.name})
    generated = re.compile("(?:" + "|".join(map(re.escape, unnamed_ops)) + r")_\d+") if unnamed_ops else None
    order = {node.id: k for k, node in enumerate(graph.nodes)}
    mapping: dict[str, list[str]] = {}
    for n in opt.graph.node:
        if not n.name:
            continue  # its profile name is unknown: its work stays unattributed
        if inserted(n) or counts[n.name] > 1 or (generated is not None and generated.fullmatch(n.name)):
            mapping[n.name] = []
            continue
        stop = {a for a in (_normalise(i, known) for i in n.input if i) if a is not None}
        covered: list[str] = []
        seen: set[str] = set()
        frontier = anchors(n)
        while frontier:
            t = frontier.pop()
            if t in seen:
                continue
            seen.add(t)
            prod = graph.producer(t)
            if prod is None or prod.id in covered:
                continue
            covered.append(prod.id)
            for i in prod.proto.input:
                if not i or i in stop:
                    continue
                other = produced_by_opt.get(i)
                if other is not None and other != n.name:
                    continue  # another optimised node computes it
                ti = graph.tensor(i)
                if ti is None or ti.kind == "input" or ti.is_static:
                    continue  # graph inputs and weights (or work on weights only) bound the walk
                frontier.append(i)
        mapping[n.name] = sorted(covered, key=lambda x: order.get(x, 0))
    return mapping


def split_profile(events: list[dict], outputs: list[dict[str, np.ndarray]], mapping: dict[str, list[str]]) -> list[TraceResult]:
    """Cut ORT profile events into one TraceResult per ``model_run``."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"])
    nodes = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")), key=lambda e: e["ts"])
    results: list[TraceResult] = []
    for k, run in enumerate(runs):
        start, end = run["ts"], run["ts"] + run["dur"]
        evs = []
        for e in nodes:
            if start <= e["ts"] <= end:
                name = e["name"][: -len("_kernel_time")]
                args = e.get("args", {})
                evs.append(
                    NodeTrace(
                        name=name,
                        op_type=str(args.get("op_name", "")),
                        start_us=float(e["ts"] - start),
                        time_us=float(e.get("dur", 0)),
                        covers=list(mapping.get(name, [])),
                        track=f"thread {e.get('tid', 0)}",
                        args={"provider": args.get("provider", "")},
                    )
                )
        results.append(TraceResult(outputs=outputs[min(k, len(outputs) - 1)] if outputs else {}, events=evs, wall_us=float(run["dur"])))
    return results

