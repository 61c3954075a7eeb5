"""The op-cost registry: one small function per ONNX op (or op family).

Counting convention (version :data:`CONVENTION_VERSION`; written into every report):

* **MACs** are the multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, Einsum, attention
  and RNN/LSTM/GRU cells (and their quantized and fused forms, whose MACs are integer MACs).
* **FLOPs** are 2 x MACs for those ops, plus a per-element count for elementwise arithmetic,
  activations, normalisation, pooling and reductions, as each op's formula states.
* Data-movement ops (Reshape, Transpose, Concat, Gather, Slice, Cast...) cost zero FLOPs but read
  and write bytes. A short explicit list of ops costs nothing at all (Constant, Shape, Identity...).
* **Bytes** read and written default to the sizes of a node's inputs (weights included) and
  outputs; ops that touch only part of an input (Gather, Slice) say so.
* An op with no registered function is *unknown*: listed with its count, never silently zero.

Register a formula with ``@cost("OpType")``; registering the same op twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.graph import Graph, Node, TensorInfo, constant_value

#: Bump when any formula changes, so figures from different versions can be told apart.
CONVENTION_VERSION = "1.0"

MS = "com.microsoft"
ML = "ai.onnx.ml"


@dataclass(frozen=True)
class Cost:
    """What one node costs. ``bytes_*`` of None mean "the sizes of the node's tensors"."""

    macs: int = 0
    flops: int = 0
    bytes_read: int | None = None
    bytes_written: int | None = None
    int_macs: bool = False
    note: str = ""

    def __init__(self, macs: int = 0, flops: int = 0, bytes_read: int | None = None, bytes_written: int | None = None,
                 int_macs: bool = False, note: str = "") -> None:
        # one store of the instance's dict (as TensorInfo's): a cost per node of the graph
        object.__setattr__(self, "__dict__", {"macs": macs, "flops": flops, "bytes_read": bytes_read,
                                               "bytes_written": bytes_written, "int_macs": int_macs, "note": note})


class Unresolved(Exception):
    """A shape the formula needs is not known (internal; the node is reported as unresolved)."""

    def __init__(self, tensor: str) -> None:
        super().__init__(tensor)
        self.tensor = tensor


class OpContext:
    """What a cost formula sees of one node: shapes, attributes and constant inputs.

    A dim is an int, or an exact sympy expression of the model's dims when they are unbound
    (:mod:`mlms_ir.ir.symbolic`): formulas use ``*``, ``+``, ``//`` and the helpers of
    :mod:`mlms_ir.ir.expr` (``smax``, ``ceil_log2``) rather than comparisons, so the same
    formula gives a number or an expression.
    """

    __slots__ = ("node", "graph")

    def __init__(self, node: Node, graph: Graph) -> None:
        self.node = node
        self.graph = graph

    # --- tensors
    def has_input(self, i: int) -> bool:
        ins = self.node.inputs
        return i < len(ins) and bool(ins[i])

    def n_inputs(self) -> int:
        return sum(1 for x in self.node.inputs if x)

    def _info(self, name: str) -> TensorInfo:
        t = self.graph.tensor(name)
        if t is None or not t.sym_known:
            raise Unresolved(name)
        return t

    def in_info(self, i: int) -> TensorInfo:
        if not self.has_input(i):
            raise InvalidModelError(f"node {self.node.label} lacks its input #{i}")
        return self._info(self.node.inputs[i])

    def out_info(self, i: int = 0) -> TensorInfo:
        outs = self.node.outputs
        if i >= len(outs) or not outs[i]:
            raise InvalidModelError(f"node {self.node.label} lacks its output #{i}")
        return self._info(outs[i])

    def in_shape(self, i: int) -> tuple[int, ...]:
        return self.in_info(i).shape  # type: ignore[return-value]

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        return self.out_info(i).shape  # type: ignore[return-value]

    def in_numel(self, i: int) -> int:
        return self.in_info(i).sym_numel  # type: ignore[return-value]

    def out_numel(self, i: int = 0) -> int:
        return self.out_info(i).sym_numel  # type: ignore[return-value]

    def in_bytes(self, i: int) -> int:
        return self.in_info(i).sym_nbytes or 0

    def out_bytes(self, i: int = 0) -> int:
        return self.out_info(i).sym_nbytes or 0

    # --- attributes and constants
    def attr(self, name: str, default: Any = None) -> Any:
        v = self.node.attrs.get(name, default)
        return v.decode() if isinstance(v, bytes) else v

    def int_attr(self, name: str, default: int, *, least: int = 1) -> int:
        """Integer attribute ``name`` (``default`` when absent), which the op's schema requires to
        be at least ``least``: a value out of that domain (a negative size or head count, which would
        give negative figures) raises ValueError, which the cost pass reports as inconsistent attributes."""
        v = self.node.attrs.get(name, default)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
            raise ValueError(f"attribute {name}={v!r} must be an integer >= {least}")
        return int(v)

    def ints_attr(self, name: str, *, least: int = 1) -> list[int] | None:
        """Integer-list attribute ``name`` (None when absent or empty), each at least ``least`` (as :meth:`int_attr`)."""
        v = self.node.attrs.get(name)
        if v is None or (hasattr(v, "__len__") and len(v) == 0):
            return None
        if not isinstance(v, (list, tuple)) or any(not isinstance(x, (int, np.integer)) or isinstance(x, bool) or x < least for x in v):
            raise ValueError(f"attribute {name}={list(v) if isinstance(v, (list, tuple)) else v!r} must hold integers >= {least}")
        return [int(x) for x in v]

    def const(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` when it is an embedded initializer or a Constant's output."""
        if not self.has_input(i):
            return None
        return constant_value(self.graph, self.node.inputs[i])


CostFn = Callable[[OpContext], Cost]


@dataclass(frozen=True)
class OpEntry:
    op_type: str
    domain: str
    fn: CostFn | None
    formula: str
    category: str  # "compute", "elementwise", "data-movement", "free", "control-flow"


_REGISTRY: dict[tuple[str, str], OpEntry] = {}


def _register(op_type: str, domain: str, fn: CostFn | None, formula: str, category: str) -> None:
    key = (domain, op_type)
    if key in _REGISTRY:
        raise RuntimeError(f"cost formula for {domain or 'ai.onnx'}::{op_type} registered twice")
    _REGISTRY[key] = OpEntry(op_type, domain, fn, formula, category)


def cost(*op_types: str, domain: str | tuple[str, ...] = "", category: str = "compute") -> Callable[[CostFn], CostFn]:
    """Register ``fn`` as the cost formula of ``op_types``; its docstring's first line is the formula."""
    domains = (domain,) if isinstance(domain, str) else domain

    def deco(fn: CostFn) -> CostFn:
        formula = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        for d in domains:
            for op in op_types:
                _register(op, d, fn, formula, category)
        return fn

    return deco


def free(*op_types: str, domain: str | tuple[str, ...] = "", why: str = "costs nothing") -> None:
    """Register ops known to cost nothing: no FLOPs and no bytes."""
    domains = (domain,) if isinstance(domain, str) else domain
    for d in domains:
        for op in op_types:
            _register(op, d, None, why, "free")


def control_flow(*op_types: str, why: str) -> None:
    """Register ops whose cost is that of their subgraphs (evaluated by the cost pass)."""
    for op in op_types:
        _register(op, "", None, why, "control-flow")


def lookup(op_type: str, domain: str) -> OpEntry | None:
    """The registered formula of ``domain::op_type``, or None for an unknown op."""
    load_ops()
    d = "" if domain == "ai.onnx" else domain
    return _REGISTRY.get((d, op_type))


def entries() -> list[OpEntry]:
    """Every registered op, sorted by domain and name (used to generate the docs table)."""
    load_ops()
    return sorted(_REGISTRY.values(), key=lambda e: (e.domain, e.op_type))


_LOADED = False


def load_ops() -> None:
    global _LOADED
    if not _LOADED:
        from mlms_ir.passes import ops  # noqa: F401  (registers every formula)

        _LOADED = True
