"""Values that are not plain tensors: how every backend gives and takes ONNX sequences, maps,
optionals and string tensors.

The convention is the one onnxruntime's Python API and ``onnx.reference`` use:

* a tensor is a numpy array (a string tensor: an array of ``str`` objects, dtype ``object``, as
  onnxruntime returns it; a unicode array ``<U…`` is taken as a feed and made one);
* a sequence is a Python ``list`` of its elements (tensors, maps), never stacked into one
  array, even when its tensors have one shape;
* a map is a ``dict`` from keys (``int`` or ``str``) to values;
* an optional is its contained value, or ``None`` when it is empty.

Feeds are checked against the graph's declared types (:func:`check_value`), outputs of a runtime
are brought to the convention by :func:`normalise`; the comparator compares such values element by
element (:func:`mlms_ir.comparator.compare_values`). An ``.npz`` inputs file holds arrays only:
sequence and map inputs (and empty optionals) are given through the Python API
(``run_backends(..., inputs={"seq": [a, b]})``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
import onnx

from mlms_ir.errors import FeedError, MlmsIrError, ShapeBindingError
from mlms_ir.ir.dtypes import dtype_name, np_dtype

#: A value of an ONNX graph in the convention above.
Value = Union[np.ndarray, list, dict, None]

#: The dtype kinds a string tensor may have (unicode, bytes, Python objects).
STRING_KINDS = "USO"


def is_tensor(value: object) -> bool:
    """True for a tensor value (an array or a numpy scalar), False for a sequence (list), a map
    (dict) or an empty optional (None)."""
    return isinstance(value, (np.ndarray, np.generic))


def type_text(tp: onnx.TypeProto | None) -> str:
    """An ONNX type as onnxruntime writes it: ``tensor(float)``, ``seq(tensor(float))``,
    ``map(int64,tensor(float))``, ``optional(seq(tensor(int32)))``."""
    if tp is None:
        return "?"
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({dtype_name(tp.tensor_type.elem_type)})"
    if which == "sparse_tensor_type":
        return f"sparse_tensor({dtype_name(tp.sparse_tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"seq({type_text(tp.sequence_type.elem_type)})"
    if which == "map_type":
        return f"map({dtype_name(tp.map_type.key_type)},{type_text(tp.map_type.value_type)})"
    if which == "optional_type":
        return f"optional({type_text(tp.optional_type.elem_type)})"
    return "?"


def _what(value: object) -> str:
    if value is None:
        return "None (an empty optional)"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"a dict of {len(value)}"
    a = np.asarray(value)
    return f"an array of shape {a.shape} ({a.dtype})"


def check_tensor(label: str, value: object, elem_type: int, shape: tuple | None) -> np.ndarray:
    """``value`` as an array of ``elem_type`` and ``shape`` (fixed dims only; others free), or a
    :class:`FeedError` that says what was expected and what came (``label``: "input 'x'")."""
    if value is None or isinstance(value, dict):
        raise FeedError(f"{label} is a tensor (tensor({dtype_name(elem_type)})), got {_what(value)}")
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # a ragged list: a sequence given for a tensor
        raise FeedError(f"{label} is a tensor (tensor({dtype_name(elem_type)})), got {_what(value)} that is not one "
                        f"array ({exc})") from None
    if elem_type == onnx.TensorProto.STRING:
        if arr.dtype.kind not in STRING_KINDS:
            raise FeedError(f"{label} expects string, got {arr.dtype}")
        arr = arr.astype(object)  # one form for every backend: onnxruntime's (and onnx's) own
    else:
        want = np_dtype(elem_type) if elem_type else None
        if want is not None and arr.dtype != want:
            raise FeedError(f"{label} expects {dtype_name(elem_type)}, got {arr.dtype}")
    if shape is not None:
        if arr.ndim != len(shape):
            raise FeedError(f"{label} has rank {len(shape)}, got an array of shape {arr.shape}")
        for axis, (d, a) in enumerate(zip(shape, arr.shape)):
            if isinstance(d, int) and d != a:
                raise FeedError(f"{label} needs dim {axis} = {d}, got an array of shape {arr.shape}")
    return arr


def tensor_shape(tp: onnx.TypeProto.Tensor) -> tuple | None:
    """The dims of a tensor type: ints, dim names, None for unknown dims; None for an unknown rank."""
    if not tp.HasField("shape"):
        return None
    return tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tp.shape.dim)


def check_value(label: str, value: object, tp: onnx.TypeProto | None) -> Value:
    """``value`` checked against the ONNX type ``tp`` and brought to the convention (arrays for
    tensors, a list for a sequence, a dict for a map, value-or-None for an optional); a
    :class:`FeedError` saying where it does not fit. A value of no declared type passes as given."""
    which = tp.WhichOneof("value") if tp is not None else None
    if which is None or which == "sparse_tensor_type":
        return value if value is None or isinstance(value, (list, dict)) else np.asarray(value)
    if which == "tensor_type":
        return check_tensor(label, value, tp.tensor_type.elem_type, tensor_shape(tp.tensor_type))
    if which == "optional_type":
        return None if value is None else check_value(label, value, tp.optional_type.elem_type)
    if which == "sequence_type":
        if not isinstance(value, (list, tuple)):
            hint = " (an .npz file cannot hold one: give it through the Python API)" if is_tensor(value) else ""
            raise FeedError(f"{label} is a sequence ({type_text(tp)}): give a list of its elements{hint}, got {_what(value)}")
        elem = tp.sequence_type.elem_type
        return [check_value(f"{label} element {k}", v, elem) for k, v in enumerate(value)]
    if which == "map_type":
        if not isinstance(value, dict):
            raise FeedError(f"{label} is a map ({type_text(tp)}): give a dict, got {_what(value)}")
        key_type = tp.map_type.key_type
        strings = key_type == onnx.TensorProto.STRING
        out = {}
        for k, v in value.items():
            ok = isinstance(k, (str, bytes)) if strings else isinstance(k, (int, np.integer)) and not isinstance(k, bool)
            if not ok:
                raise FeedError(f"{label} is a map with {dtype_name(key_type)} keys ({type_text(tp)}), got the key {k!r}")
            out[k] = check_map_entry(f"{label} at key {k!r}", v, tp.map_type.value_type)
        return out
    return value


def check_map_entry(label: str, value: object, tp: onnx.TypeProto) -> object:
    """A map's value: a Python scalar stays one (onnxruntime takes and gives map values so) when
    it fits the value type's kind; anything else as :func:`check_value` checks it."""
    if not isinstance(value, (bool, int, float, str, bytes)) or tp.WhichOneof("value") != "tensor_type":
        return check_value(label, value, tp)
    elem = tp.tensor_type.elem_type
    kind = "U" if elem == onnx.TensorProto.STRING else getattr(np_dtype(elem), "kind", "")
    fits = isinstance(value, (str, bytes)) if kind == "U" else kind == "b" if isinstance(value, bool) else (
        kind in "fc" and isinstance(value, (int, float)) or kind in "iu" and isinstance(value, int))
    if not fits:
        raise FeedError(f"{label} expects {dtype_name(elem)}, got {value!r}")
    return value


def normalise(value: object, empty: Callable[[object], bool] = lambda v: False, *, in_map: bool = False) -> Value:
    """A runtime's value in the convention: lists stay lists (element by element), dicts stay dicts,
    None stays None, anything else becomes an array (a Python or numpy scalar a 0-d one, except a
    map's Python scalar values, which stay as onnxruntime gives them). ``empty`` marks a runtime's
    own stand-in for an empty optional, which becomes None."""
    if value is None or empty(value):
        return None
    if isinstance(value, (list, tuple)):
        return [normalise(v, empty) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v, empty, in_map=True) for k, v in value.items()}
    if in_map and isinstance(value, (bool, int, float, str, bytes)):
        return value
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def describe(value: object) -> str:
    """A short description of a value: ``float32[2x3]``, ``seq[2: float32[2], float32[3]]``,
    ``map[2]``, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(describe(v) for v in value[:3]) + (", ..." if len(value) > 3 else "")
        return f"seq[{len(value)}: {inner}]" if value else "seq[0]"
    if isinstance(value, dict):
        return f"map[{len(value)}]"
    a = np.asarray(value)
    return f"{a.dtype}[{'x'.join(map(str, a.shape))}]"


def random_value(label: str, tp: onnx.TypeProto, make_tensor: Callable[[str, int, tuple], np.ndarray]) -> Value:
    """Random data of type ``tp``: a sequence of 2 elements, a map of 2 entries (keys 0, 1 or
    "a", "b"; scalar values as Python scalars), an optional with a value;
    ``make_tensor(label, elem_type, shape)`` makes each tensor."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        shape = tensor_shape(tp.tensor_type)
        if shape is None or not all(isinstance(d, int) for d in shape):
            dims = "x".join("?" if not isinstance(d, int) else str(d) for d in (shape or ()))
            raise ShapeBindingError(f"{label} has unbound dims ({dims or 'unknown rank'}), which no option binds inside a "
                            "sequence, map or optional; give the feeds through the Python API (inputs={name: value})")
        return make_tensor(label, tp.tensor_type.elem_type, shape)
    if which == "sequence_type":
        return [random_value(f"{label} element {k}", tp.sequence_type.elem_type, make_tensor) for k in range(2)]
    if which == "optional_type":
        return random_value(label, tp.optional_type.elem_type, make_tensor)
    if which == "map_type":
        keys: list[Any] = ["a", "b"] if tp.map_type.key_type == onnx.TensorProto.STRING else [0, 1]
        vt = tp.map_type.value_type
        if vt.WhichOneof("value") == "tensor_type" and tensor_shape(vt.tensor_type) in (None, ()):
            # a scalar value: a Python scalar, as onnxruntime takes and gives map values
            return {k: make_tensor(f"{label} at key {k!r}", vt.tensor_type.elem_type, ()).item() for k in keys}
        return {k: random_value(f"{label} at key {k!r}", vt, make_tensor) for k in keys}
    raise MlmsIrError(f"cannot make random data for {label} of type {type_text(tp)}; give the feeds through the Python API")


__all__ = ["STRING_KINDS", "Value", "check_map_entry", "check_tensor", "check_value", "describe", "is_tensor", "normalise", "random_value",
           "tensor_shape", "type_text"]
