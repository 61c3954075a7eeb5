"""Symbolic shapes: every dim an exact expression over the model's named dims.

ONNX's shape inference keeps a dim's *name* where a dim passes through unchanged (``batch`` from
input to output of an Add), but gives up where dims are computed: a Reshape to ``[-1, seq, 12,
64]``, a Concat of a Shape's parts, a strided Conv over a dynamic height, a Slice to ``512``.
There it invents an unrelated unknown (``unk__3``) or leaves the dim empty, and every cost that
depends on it is lost. This pass walks the graph once in execution order, after ONNX's inference,
and gives every dim an exact sympy expression over the model's input dims:

* where ONNX's dim is a number, or a name or an expression (``(((h - 1)//2)) + 1``, as torch's
  dynamo exporter writes) over known dims, that is the dim;
* elsewhere the op's own rule (:mod:`mlms_ir.ir.symbolic_rules`) computes it from the input
  shapes and from the *values* of small integer tensors (shape arithmetic: Shape, Gather,
  Concat, Mul, Div...), which this pass tracks as expressions too; an ``unk__N`` it resolves
  is resolved everywhere ONNX propagated it;
* a dim that depends on data (NonZero, NonMaxSuppression, Unique, TopK with a computed k, a
  Loop's trip count) becomes a named symbol saying what it is (``nonzero_n412``: "elements
  NonZero n412 finds"), bindable with ``--dims`` like an input dim;
* a dim that no rule derives becomes a symbol named after the tensor, listed as unknown: the
  figures that depend on it are still exact formulas *in* it, and it can be bound.

Anonymous input dims get stable names, ``<input>_d<axis>`` (see :func:`name_anonymous_dims`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx

from mlms_ir.errors import ShapeBindingError
from mlms_ir.ir import expr as E
from mlms_ir.ir.dtypes import INT_TYPES
from mlms_ir.ir.graph import Graph, TensorInfo

log = logging.getLogger(__name__)

#: Integer tensors of up to this many elements have their values tracked (shape arithmetic).
MAX_VALUE_ELEMENTS = 64

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
#: Functions allowed in a dim expression written by an exporter (torch's printer and sympy's).
_FUNCS = {
    "floor": "floor", "ceiling": "ceiling", "ceil": "ceiling", "Min": "Min", "Max": "Max", "min": "Min",
    "max": "Max", "Mod": "Mod", "FloorDiv": None, "CeilDiv": None, "CeilToInt": "ceiling", "FloorToInt": "floor",
    "IntTrueDiv": None, "PythonMod": "Mod", "TruncToInt": "floor", "sqrt": "sqrt",
}


@dataclass
class DimSymbol:
    """One free symbol of the analysis' formulas."""

    name: str
    kind: str  # "input" (a dim of a graph input), "data" (set by the data), "unknown" (no rule derives it)
    meaning: str
    origin: str | None = None  # the dim's name in the model, or the node that makes it


@dataclass
class SymbolicShapes:
    """What :func:`resolve` found: the symbols, and the assumptions and warnings it made."""

    symbols: dict[str, DimSymbol] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    bound: dict[str, int] = field(default_factory=dict)  # symbols the user bound after resolution
    trips: dict[str, Any] = field(default_factory=dict)  # Loop node id -> its iterations (an expression)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # small integer tensors' values


def is_anonymous(d: onnx.TensorShapeProto.Dimension) -> bool:
    """A dim with neither a value nor a usable name (empty, ``?``, or not an identifier)."""
    if d.HasField("dim_value"):
        return False
    p = d.dim_param.strip() if d.HasField("dim_param") else ""
    return not p or p == "?" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", p)


def name_anonymous_dims(model: onnx.ModelProto, warnings: list[str] | None = None) -> list[str]:
    """Give every anonymous dim of the main graph's inputs a stable name, ``<input>_d<axis>``
    (``?`` dims used to be taken as one shared name), so each binds on its own. Returns the names.

    A negative ``dim_value`` is read as unknown (ONNX requires ``>= 0``; some exporters write -1 for
    a dynamic dim): any other negative value is named in ``warnings``, when given."""
    inits = {t.name for t in model.graph.initializer}
    named: list[str] = []
    taken = {d.dim_param for vi in model.graph.input if vi.type.HasField("tensor_type")
             for d in vi.type.tensor_type.shape.dim if d.dim_param}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                if d.dim_value != -1 and warnings is not None:
                    warnings.append(f"dim {axis} of input '{vi.name}' is {d.dim_value}, read as unknown")
                d.Clear()
            if is_anonymous(d):
                base = re.sub(r"[^A-Za-z0-9_]", "_", vi.name) or "input"
                name = f"{base}_d{axis}"
                while name in taken:
                    name += "_"
                taken.add(name)
                d.Clear()
                d.dim_param = name
                named.append(name)
    return named


class SymbolTable:
    def __init__(self) -> None:
        self.infos: dict[str, DimSymbol] = {}
        self.by_origin: dict[str, Any] = {}

    def new(self, base: str, kind: str, meaning: str, origin: str | None = None) -> Any:
        sp = E.sympy()
        name = E.safe_name(base)
        k = 2
        while name in self.infos:
            name = f"{E.safe_name(base)}_{k}"
            k += 1
        self.infos[name] = DimSymbol(name, kind, meaning, origin)
        if kind == "input":
            return sp.Symbol(name, integer=True, positive=True)
        return sp.Symbol(name, integer=True, nonnegative=True)


def needs_resolution(graph: Graph) -> bool:
    """True when some tensor's shape is not all numbers, or a Loop's trip count or an If's
    condition is computed (the pass tracks those values), so the symbolic pass has work to do.

    The answer is kept on the graph (its shapes change only in :func:`resolve`, which drops it):
    ``analyze`` asks twice, and a 50,000-node graph takes 0.1 s to answer."""
    known = graph.__dict__.get("_needs_resolution")
    if known is None:
        known = graph._needs_resolution = _needs_resolution(graph)
    return known


def _needs_resolution(graph: Graph) -> bool:
    from mlms_ir.ir.graph import constant_value

    for g in [graph] + [sub for _, _, sub in graph.all_subgraphs()]:
        for node in g.nodes:
            if node.op_type in ("Loop", "If") and node.domain == "" and node.proto.input and node.proto.input[0]:
                if constant_value(g, node.proto.input[0]) is None and g.tensor(node.proto.input[0]) is not None \
                        and g.tensor(node.proto.input[0]).kind != "input":
                    return True
        for t in g.tensors.values():
            if t.known:
                continue  # every dim a number (read from the size pair a type's tensors share)
            if t.shape is None:
                if t.kind == "activation" and g.producer(t.name) is not None:
                    return True
                continue
            return True  # a dim that is not a number
    return False


class _Walker:
    """One pass over a Graph (and its subgraphs) in execution order."""

    def __init__(self, root: Graph) -> None:
        self.root = root
        self.table = SymbolTable()
        self.params: dict[str, Any] = {}  # a dim's name in the model -> its expression
        self.shapes: dict[str, tuple | None] = {}
        self.values: dict[str, np.ndarray] = {}
        self.changed: dict[str, tuple] = {}  # tensor -> its new shape
        self._parsed: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.trips: dict[str, Any] = {}

    # ------------------------------------------------------------------ dims
    def param(self, name: str, default_base: str, kind: str, meaning: str) -> Any:
        if name in self.params:
            return self.params[name]
        s = self.table.new(name if _IDENT.fullmatch(name) else default_base, kind, meaning, origin=name)
        self.params[name] = s
        return s

    def parse(self, text: str) -> Any | None:
        """An exporter's dim expression over known dims (``(((h - 1)//2)) + 1``), or None."""
        if text in self._parsed:
            return self._parsed[text]
        out = None
        idents = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
        if idents and all(i in self.params or i in _FUNCS for i in idents) and re.fullmatch(r"[A-Za-z0-9_+\-*/%()., ]+", text):
            sp = E.sympy()
            local: dict[str, Any] = {k: v for k, v in self.params.items() if k in idents}
            for i in idents & set(_FUNCS):
                target = _FUNCS[i]
                if target is not None:
                    local[i] = getattr(sp, target)
            local["FloorDiv"] = lambda a, b: sp.floor(a / b)
            local["CeilDiv"] = lambda a, b: sp.ceiling(a / b)
            local["IntTrueDiv"] = lambda a, b: a / b
            try:
                v = eval(compile(text, "<dim>", "eval"), {"__builtins__": {}}, local)  # noqa: S307 - checked charset and names
                out = E.normalize(sp.sympify(v))
                if not (E.is_int(out) or (E.is_symbolic(out) and out.is_integer is not False)):
                    out = None
            except Exception:  # noqa: BLE001 - not an expression we can read: the rule decides
                out = None
        self._parsed[text] = out
        return out

    def onnx_dim(self, d: Any) -> Any | None:
        if isinstance(d, int):
            return d
        if isinstance(d, str):
            if d in self.params:
                return self.params[d]
            if _IDENT.fullmatch(d):
                return None  # a name ONNX invented (unk__N) or an exporter's unrelated one
            return self.parse(d)
        if E.is_symbolic(d):
            return d
        return None

    # ------------------------------------------------------------------ lookups
    def shape(self, g: Graph, name: str) -> tuple | None:
        if name in self.shapes:
            return self.shapes[name]
        t = g.tensor(name)
        if t is None or t.shape is None:
            return None
        dims = tuple(self.onnx_dim(d) for d in t.shape)
        return None if any(d is None for d in dims) else dims

    def value(self, g: Graph, name: str) -> np.ndarray | None:
        if not name:
            return None
        v = self.values.get(name)
        if v is not None:
            return v
        from mlms_ir.ir.graph import constant_value

        t = g.tensor(name)
        if t is None or not t.is_weight:
            return None
        if t.shape is not None and all(isinstance(d, int) for d in t.shape) and np.prod(t.shape, dtype=np.int64) > MAX_VALUE_ELEMENTS:
            return None
        c = constant_value(g, name)
        if c is None or c.size > MAX_VALUE_ELEMENTS:
            return None
        v = _to_object(c)
        self.values[name] = v
        return v

    # ------------------------------------------------------------------ the walk
    def inputs(self, g: Graph, names: list[str], where: str) -> None:
        for name in names:
            t = g.tensors.get(name)
            if t is None or t.shape is None:
                continue
            dims = []
            for axis, d in enumerate(t.shape):
                if isinstance(d, int):
                    dims.append(d)
                    continue
                v = self.onnx_dim(d) if isinstance(d, str) else None
                if v is None:
                    base = d if isinstance(d, str) and _IDENT.fullmatch(d) and not d.startswith("unk__") else f"{name}_d{axis}"
                    kind = "input" if g is self.root else "unknown"
                    meaning = f"dim {axis} of input '{name}'" if g is self.root else f"dim {axis} of '{name}' in {where}"
                    if isinstance(d, str):
                        v = self.param(d, base, kind, meaning)
                    else:
                        v = self.table.new(base, kind, meaning)
                dims.append(v)
            self.set_shape(name, tuple(dims), t)

    def set_shape(self, name: str, dims: tuple | None, t: TensorInfo | None) -> None:
        self.shapes[name] = dims
        if dims is not None and (t is None or t.shape is None or tuple(t.shape) != dims):
            self.changed[name] = dims

    def graph(self, g: Graph, where: str = "the main graph") -> None:
        if g is self.root:
            self.inputs(g, g.input_names, where)
            given = getattr(g.bindings, "input_values", None) or {}
            for name, v in given.items():
                t = g.tensors.get(name)
                if t is not None and t.shape is not None:
                    self.values[name] = _to_object(np.full(tuple(int(d) if isinstance(d, int) else 1 for d in t.shape), v, dtype=object))
        from mlms_ir.ir import symbolic_rules as R

        for node in g.nodes:
            R.apply(self, g, node)

    def unknown_dim(self, node, k: int, axis: int, onnx_name: Any) -> Any:
        """A symbol for a dim no rule derives (shared by every tensor ONNX gave the same name)."""
        if isinstance(onnx_name, str) and onnx_name in self.params:
            return self.params[onnx_name]
        base = f"{node.id}_out{k}_d{axis}".replace("/", "_")
        meaning = f"dim {axis} of output {k} of {node.id} ({node.op_type}): no rule derives it"
        s = self.table.new(base, "unknown", meaning, origin=node.id)
        if isinstance(onnx_name, str) and onnx_name:
            self.params[onnx_name] = s
        return s

    def data_dim(self, node, what: str, base: str | None = None) -> Any:
        """A symbol for a dim set by the data at run time (NonZero's count, a Loop's iterations)."""
        key = f"{node.id}:{base or ''}:{what}"
        if key in self.table.by_origin:
            return self.table.by_origin[key]
        name = f"{(base or node.op_type).lower()}_{node.id}".replace("/", "_")
        s = self.table.new(name, "data", f"{what} ({node.id}, {node.op_type}{' ' + repr(node.name) if node.name else ''})", origin=node.id)
        self.table.by_origin[key] = s
        return s


def _to_object(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    flat = a.reshape(-1).tolist()
    out.reshape(-1)[:] = flat if a.ndim else flat[:1]
    return out


def resolve(graph: Graph, dims: dict[str, int] | None = None) -> SymbolicShapes | None:
    """Give every dim of ``graph`` (subgraphs included) an exact expression, in place.

    Returns None when every shape is already numbers (nothing to do). ``dims`` binds symbols the
    pass creates (data-dependent and unknown dims, by the names it reports), after resolution.

    Raises:
        mlms_ir.errors.ShapeBindingError: ``dims`` names a dim that is no symbol of the model.
    """
    existing = graph.symbolic
    if existing is not None:
        return existing
    if not needs_resolution(graph) and not dims and not getattr(graph.bindings, "input_values", None):
        return None
    w = _Walker(graph)
    w.graph(graph)
    result = SymbolicShapes(w.table.infos, w.warnings, trips=w.trips, values=w.values)
    if dims:
        unknown = [k for k in dims if k not in w.table.infos and k not in w.params]
        if unknown:
            names = ", ".join(sorted(w.table.infos)) or "(none)"
            raise ShapeBindingError(f"the model has no dim named '{unknown[0]}'; its free dims are: {names}")
        values = {}
        for k, v in dims.items():
            sym = w.params.get(k)
            name = sym.name if E.is_symbolic(sym) else k
            values[name] = v
        result.bound = values
        for name, dims_ in list(w.changed.items()):
            w.changed[name] = tuple(E.evaluate(d, values) for d in dims_)
        for name, d in w.shapes.items():
            if d is not None and name not in w.changed and any(E.is_symbolic(x) for x in d):
                w.changed[name] = tuple(E.evaluate(x, values) for x in d)
        result.trips = {k: E.evaluate(v, values) for k, v in w.trips.items()}
    _write_back(graph, w.changed)
    graph.__dict__.pop("_needs_resolution", None)  # its shapes changed: ask again if asked
    graph.symbolic = result
    return result


def _write_back(graph: Graph, changed: dict[str, tuple]) -> None:
    for g in [graph] + [sub for _, _, sub in graph.all_subgraphs()]:
        for name, t in list(g.tensors.items()):
            dims = changed.get(name)
            if dims is not None:
                g.tensors[name] = replace(t, shape=tuple(E.normalize(d) for d in dims))


def is_int_type(elem_type: int) -> bool:
    return elem_type in INT_TYPES or elem_type == onnx.TensorProto.BOOL
