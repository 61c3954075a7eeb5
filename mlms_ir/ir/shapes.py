"""Shape bindings and shape inference.

Shapes come from ONNX shape inference (with data propagation), after the user's bindings have
been written into the graph inputs: ``--input-shape name:1x3x224x224`` (repeatable), ``--batch N``
(the leading dim of every input) and ``--dims batch=8,seq=128`` (named symbolic dims). A dim that
stays unknown is reported by the analysis, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import onnx
import onnx.shape_inference

from mlms_ir.errors import InvalidModelError, ShapeBindingError
from mlms_ir.ir import contrib
from mlms_ir.ir.fold import complete_shapes
from mlms_ir.ir.graph import TypeTable
from mlms_ir.ir.guard import GuardedCall, GuardedCrash, GuardedError, frame, memory_limit_bytes, start_call_guarded, unframe

MAX_DIM = 2**62  # ONNX dims are int64; larger bindings are mistakes

InputShapes = Mapping[str, Iterable[int]] | Iterable[str] | str | None
Dims = Mapping[str, int] | str | None


@dataclass
class Bindings:
    """What the user bound, in normalised form."""

    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    batch: int | None = None
    dims: dict[str, int] = field(default_factory=dict)
    #: Values of scalar inputs (``--input-value sr=16000``): an If whose condition they decide
    #: counts the branch taken.
    input_values: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"input_shapes": self.input_shapes, "batch": self.batch, "dims": self.dims, "input_values": self.input_values}

    def __bool__(self) -> bool:
        return bool(self.input_shapes or self.batch is not None or self.dims)


def _positive(value: object, what: str) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise ShapeBindingError(f"{what} must be a positive integer, got '{value}'") from None
    if v <= 0:
        raise ShapeBindingError(f"{what} must be a positive integer, got {v}")
    if v > MAX_DIM:
        raise ShapeBindingError(f"{what} must be at most 2**62 ({MAX_DIM}), got {v}")
    return v


def _dims_of(spec: str, what: str) -> list[int]:
    """'1x3x224x224' (or '1,3,224,224', '[1,3,224,224]') -> [1, 3, 224, 224]."""
    parts = re.split(r"[x,×]", spec.strip().strip("[]()"))
    if not spec.strip() or any(not p.strip() for p in parts):
        raise ShapeBindingError(f"{what} must be dims separated by 'x', such as 1x3x224x224")
    return [_positive(p, f"dim {k} of {what}") for k, p in enumerate(parts)]


def parse_input_values(values: Mapping[str, object] | str | None) -> dict[str, float]:
    """``"sr=16000,task=1"`` or a mapping -> {name: number} (ints stay ints; true/false are 1/0)."""
    out: dict[str, float] = {}
    if values is None:
        return out
    items = values.items() if isinstance(values, Mapping) else (
        part.partition("=")[::2] for part in str(values).split(",") if part.strip())
    for key, raw in items:
        key = str(key).strip()
        text = str(raw).strip().lower()
        if not key or not text:
            raise ShapeBindingError(f"--input-value expects NAME=NUMBER pairs such as 'sr=16000', got '{key}={raw}'")
        try:
            out[key] = {"true": 1, "false": 0}[text] if text in ("true", "false") else (
                int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text))
        except ValueError:
            raise ShapeBindingError(f"--input-value '{key}={raw}': the value must be a number or true/false") from None
    return out


def parse_bindings(input_shapes: InputShapes = None, batch: int | str | None = None, dims: Dims = None) -> Bindings:
    """Normalise the three kinds of binding; raises :class:`ShapeBindingError` on bad syntax.

    ``input_shapes`` is a mapping ``{name: [dims]}`` or strings ``"name:1x3x224x224"`` (also
    ``name:1,3,224,224``); ``dims`` a mapping or ``"batch=8,seq=128"``.
    """
    b = Bindings()
    if isinstance(input_shapes, Mapping):
        for name, shape in input_shapes.items():
            if isinstance(shape, str):
                b.input_shapes[str(name)] = _dims_of(shape, f"the shape '{shape}' of input '{name}'")
            elif isinstance(shape, Iterable):
                b.input_shapes[str(name)] = [_positive(d, f"dim {k} of input '{name}'") for k, d in enumerate(shape)]
            else:
                raise ShapeBindingError(f"the shape of input '{name}' must be a list of dims such as [1, 3, 224, 224], got {shape!r}")
    elif input_shapes is not None:
        items = [input_shapes] if isinstance(input_shapes, str) else list(input_shapes)
        for item in items:
            text = str(item).strip()
            name, sep, spec = text.rpartition(":")
            if not sep:  # bare DIMS: the model's one input (resolved by apply_bindings)
                name, spec = "", text
                if len(items) > 1:
                    raise ShapeBindingError(f"--input-shape '{text}' names no input: with several, give NAME:DIMS for each, "
                                            "such as 'input_ids:1x128'")
            if (sep and not name) or not spec:
                raise ShapeBindingError(f"--input-shape expects DIMS or NAME:DIMS such as '1x3x224x224' or 'input:1x3x224x224', got '{text}'")
            if name in b.input_shapes:
                raise ShapeBindingError(f"--input-shape gives input '{name}' twice")
            b.input_shapes[name] = _dims_of(spec, f"--input-shape '{text}'")
    if batch is not None:
        b.batch = _positive(batch, "--batch")
    if isinstance(dims, Mapping):
        b.dims = {str(k): _positive(v, f"dim '{k}'") for k, v in dims.items()}
    elif dims is not None:
        for part in str(dims).split(","):
            if not part.strip():
                continue
            key, sep, val = part.partition("=")
            if not sep or not key.strip():
                raise ShapeBindingError(f"--dims expects NAME=VALUE pairs such as 'batch=8,seq=128', got '{part}'")
            b.dims[key.strip()] = _positive(val, f"dim '{key.strip()}'")
    return b


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def apply_bindings(model: onnx.ModelProto, b: Bindings) -> dict[str, int]:
    """Write the bindings into ``model`` (in place): graph inputs, then every use of a bound dim name.

    Returns the ``dims`` bindings that name no input dim: the symbolic pass checks them against
    the dims it names (data-dependent counts, a Loop's iterations) and binds them there.
    """
    if not b:
        return {}
    inputs = {vi.name: vi for vi in _graph_inputs(model)}
    params: dict[str, int] = {}
    symbolic = sorted({d.dim_param for vi in inputs.values() for d in _shape(vi).dim if d.dim_param})

    def bind_param(p: str, v: int, why: str) -> None:
        old = params.get(p)
        if old is not None and old != v:
            raise ShapeBindingError(f"dim '{p}' is bound to both {old} and {v} ({why})")
        params[p] = v

    if "" in b.input_shapes:  # bare DIMS: the one input there is
        if len(inputs) != 1:
            raise ShapeBindingError(f"--input-shape without a name binds a model's only input; this one has {len(inputs)}: "
                                    f"{', '.join(inputs) or '(none)'}; give NAME:DIMS")
        b.input_shapes = {next(iter(inputs)): b.input_shapes[""]}
    for name, dims in b.input_shapes.items():
        vi = inputs.get(name)
        if vi is None:
            raise ShapeBindingError(
                f"the model has no input '{name}'; its inputs are: {', '.join(inputs) or '(none)'}"
            )
        if vi.type.WhichOneof("value") != "tensor_type":
            raise ShapeBindingError(f"input '{name}' is a {vi.type.WhichOneof('value') or 'typeless value'}, not a tensor; --input-shape binds tensors only")
        shape = _shape(vi)
        if shape.dim and len(shape.dim) != len(dims):
            raise ShapeBindingError(
                f"input '{name}' has rank {len(shape.dim)} ({_fmt(shape)}), but --input-shape gives {len(dims)} dims"
            )
        for axis, v in enumerate(dims):
            if axis < len(shape.dim):
                d = shape.dim[axis]
                if d.HasField("dim_value") and d.dim_value >= 0 and d.dim_value != v:
                    raise ShapeBindingError(
                        f"dim {axis} of input '{name}' is fixed at {d.dim_value} in the model; --input-shape gives {v}"
                    )
                if d.dim_param:
                    bind_param(d.dim_param, v, f"input '{name}'")
        del shape.dim[:]
        for v in dims:
            shape.dim.add().dim_value = v

    if b.batch is not None:
        fixed: list[str] = []
        bound = 0
        for name, vi in inputs.items():
            if name in b.input_shapes or vi.type.WhichOneof("value") != "tensor_type":
                continue
            shape = _shape(vi)
            if not shape.dim:
                continue
            d = shape.dim[0]
            if d.HasField("dim_value") and d.dim_value >= 0:
                if d.dim_value == b.batch:
                    bound += 1
                else:
                    fixed.append(f"'{name}' ({d.dim_value})")
                continue  # a fixed leading dim is not a batch dim
            bound += 1
            if d.dim_param:
                bind_param(d.dim_param, b.batch, "--batch")
            d.Clear()
            d.dim_value = b.batch
        if not bound and fixed:
            raise ShapeBindingError(
                f"every input has a fixed leading dim ({', '.join(fixed)}), so --batch {b.batch} cannot apply; "
                "re-export the model with a dynamic batch dim"
            )

    leftover: dict[str, int] = {}
    for p, v in b.dims.items():
        if p not in symbolic and p not in params:
            leftover[p] = v  # a dim the symbolic pass names (data-dependent, derived): bound after it
            continue
        bind_param(p, v, "--dims")
    if params:
        _substitute(model.graph, params)
    return leftover


def _shape(vi: onnx.ValueInfoProto) -> onnx.TensorShapeProto:
    return vi.type.tensor_type.shape


def _fmt(shape: onnx.TensorShapeProto) -> str:
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)


def _substitute(g: onnx.GraphProto, params: Mapping[str, int]) -> None:
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param in params:
                    v = params[d.dim_param]
                    d.Clear()
                    d.dim_value = v
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _substitute(a.g, params)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    _substitute(sg, params)


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def infer_shapes(model: onnx.ModelProto, *, lenient: bool = False) -> tuple[onnx.ModelProto, list[str]]:
    """Run ONNX shape inference (strict, with data propagation), then the per-node completion and
    the contrib-op rules, all in one guarded child (:mod:`mlms_ir.ir.guard`): ONNX's C++ code
    trusts the model, so a crash or a runaway in it (a Split into 2**31 outputs grows for minutes)
    is an :class:`InvalidModelError`, never the end of this process.

    Returns the inferred model and warnings. A strict failure raises :class:`InvalidModelError`
    unless ``lenient``, in which case inference is re-run non-strictly and the failure becomes a
    warning.
    """
    body, warnings, _ = start_infer_shapes(model, lenient=lenient).result()
    out = onnx.ModelProto()
    out.ParseFromString(body)
    return out, warnings


class PendingInference:
    """:func:`infer_shapes` under way in its guarded child (:func:`start_infer_shapes`)."""

    def __init__(self, call: GuardedCall) -> None:
        self._call = call

    def result(self) -> tuple[bytes, list[str], TypeTable | None]:
        """The serialized answer (a ``ModelProto``, or with ``types_only`` a ``GraphProto`` of the
        main graph's value infos and outputs), the warnings and, with ``types_only`` where the
        child read them whole, those value infos and outputs as a
        :class:`~mlms_ir.ir.graph.TypeTable`; waits for the child; raises
        :class:`InvalidModelError` as :func:`infer_shapes` does."""
        try:
            data = self._call.result()
        except GuardedCrash as exc:
            raise InvalidModelError(f"ONNX's shape inference failed on this model: {exc}; the model is malformed or "
                                    "hostile (an attribute or a declared size out of range)") from None
        except GuardedError as exc:
            if exc.type_name == "InvalidModelError":
                raise InvalidModelError(exc.message) from None
            raise InvalidModelError(f"ONNX's shape inference failed on this model: {_one_line(exc)}") from None
        head, body = unframe(data)
        n = head["table"]
        table = TypeTable.from_bytes(body[len(body) - n:]) if n else None
        return body[:len(body) - n], head["warnings"], table

    def cancel(self) -> None:
        """Stop the child (its answer is no longer wanted)."""
        self._call.cancel()


def start_infer_shapes(model: onnx.ModelProto, *, lenient: bool = False, types_only: bool = False,
                       outputs: list[str] | None = None) -> PendingInference:
    """:func:`infer_shapes`, started in its guarded child: this process may change ``model`` and go
    on with other work until it asks for the :meth:`~PendingInference.result`. With
    ``types_only`` the child answers with what inference adds to the main graph only (its value
    infos and outputs, as a ``GraphProto``), for a model without subgraphs whose caller keeps its
    own copy: no second copy of every node is sent back and parsed. ``outputs``: the names of
    every output of the main graph's nodes, when the caller has them (the forked child reads
    them instead of the nodes)."""
    def work() -> bytes:
        return _answer(*_infer_here(model, lenient, outputs), types_only)

    budget = memory_limit_bytes()
    need = INFER_BASE_BYTES + INFER_BYTES_PER_MODEL_BYTE * model.ByteSize()
    head = {"lenient": lenient, "types_only": types_only}
    return PendingInference(start_call_guarded("infer_shapes", lambda: frame(head, model.SerializeToString()), work,
                                               memory_bytes=min(budget, need) if budget else need))


def _answer(inferred: onnx.ModelProto, warnings: list[str], table: TypeTable | None, types_only: bool) -> bytes:
    """The child's answer: a frame of the warnings and the inferred model, or with ``types_only``
    its main graph's types (:func:`_types_of`) followed by their :class:`~mlms_ir.ir.graph.TypeTable`
    where the child has it (the head says how many bytes it takes)."""
    if not types_only:
        return frame({"warnings": warnings, "table": 0}, inferred.SerializeToString())
    extra = table.to_bytes() if table is not None else b""
    return frame({"warnings": warnings, "table": len(extra)}, _types_of(inferred) + extra)


def _types_of(inferred: onnx.ModelProto) -> bytes:
    """The main graph's value infos and outputs of ``inferred``, as a serialized ``GraphProto``.
    ``inferred`` is the child's own, done with: its graph loses every other field (copying
    200,000 value infos out instead cost 0.15 s, clearing the rest 0.04 s)."""
    g = inferred.graph
    for desc, _ in g.ListFields():
        if desc.name not in ("value_info", "output"):
            g.ClearField(desc.name)
    return g.SerializeToString()


def infer_request(data: bytes) -> bytes:
    """:func:`infer_shapes`' work as a guard server runs it: a frame of ``{"lenient": ...,
    "types_only": ...}`` and the serialized model in, a frame of the warnings and the inferred
    model (or its types) out."""
    head, body = unframe(data)
    model = onnx.ModelProto()
    model.ParseFromString(body)
    return _answer(*_infer_here(model, bool(head["lenient"])), bool(head.get("types_only")))


def warm_up() -> None:
    """What a guard server does once before serving :func:`infer_request`: import what the work
    imports lazily and run it on a small model of its own, so that each forked child starts warm
    (as a child forked from a process that has analysed a model does)."""
    import onnx.reference  # noqa: F401 - constant folding's evaluator

    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Reshape", ["x", "s"], ["r"]),
             h.make_node("MatMul", ["r", "w"], ["y"])]
    w = onnx.numpy_helper.from_array(__import__("numpy").ones((4, 2), "float32"), "w")
    model = h.make_model(h.make_graph(nodes, "warm", [x], [y], [w]), opset_imports=[h.make_opsetid("", 17)])
    _infer_here(model, True)


#: Memory ONNX's inference may use on a model (weights stripped): a base and a multiple of the
#: model's size. A legitimate model stays far below it; a hostile one is stopped within seconds
#: instead of growing towards the machine's memory for minutes.
INFER_BASE_BYTES = 1 << 30
INFER_BYTES_PER_MODEL_BYTE = 64


def _infer_here(model: onnx.ModelProto, lenient: bool,
                outputs: list[str] | None = None) -> tuple[onnx.ModelProto, list[str], TypeTable | None]:
    """:func:`infer_shapes`' work, in the process it is called in (the guarded child); ``outputs``
    as :func:`start_infer_shapes` has them. Returns the inferred model, the warnings, and the main
    graph's value infos as the last check read them, where nothing changed them after it."""
    warnings: list[str] = []

    def infer(m: onnx.ModelProto, strict: bool) -> onnx.ModelProto:
        return onnx.shape_inference.infer_shapes(m, check_type=strict, strict_mode=strict, data_prop=True)

    try:
        inferred = infer(model, True)
    except Exception as exc:  # noqa: BLE001 - ONNX's C++ core raises InferenceError, IndexError...
        msg = _one_line(exc)
        if not lenient:
            raise InvalidModelError(
                f"ONNX shape inference rejects the model: {msg} (the model is malformed; "
                "'analyze --lenient' or lenient=True analyses what can be inferred anyway)"
            ) from None
        warnings.append(f"shape inference failed in strict mode, results may be incomplete: {msg}")
        try:
            inferred = infer(model, False)
        except Exception as exc2:  # noqa: BLE001
            warnings.append(f"shape inference failed: {_one_line(exc2)}")
            inferred = model
    table = None
    for _ in range(3):
        read: list[TypeTable] = []
        complete_shapes(inferred, outputs, read)
        if not contrib.add_contrib_shapes(inferred):
            table = read[0] if read else None  # every output was resolved, and nothing changed since
            break
        try:
            inferred = infer(inferred, False)
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"shape inference after contrib-op shapes failed: {_one_line(exc)}")
            break
    return inferred, warnings, table


def input_shape_list(value: object) -> list[str] | None:
    """``--input-shape`` as given (a string of ``;``-separated specs, or a list) as a list of specs."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(";")
    return [s for s in (x.strip() for x in items) if s]


def dims_text(value: object) -> str | None:
    """``--dims`` as given (a string, a list of ``name=value``, or a dict) as one ``a=1,b=2`` string."""
    if value is None:
        return None
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
