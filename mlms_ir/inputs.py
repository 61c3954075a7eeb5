"""Inputs for running a model: seeded random data that respects dtypes, shapes and index ranges,
or arrays from an ``.npz`` file.

Sequence, map and optional inputs follow :mod:`mlms_ir.values` (a list, a dict, the value or
None). Random feeds give a sequence of 2 tensors, a map of 2 entries and an optional with a
value; an ``.npz`` file holds arrays only, so such inputs (beyond an optional's tensor) are given
through the Python API: ``run_backends(model, inputs={"seq": [a, b], "opt": None})``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import onnx

from mlms_ir.errors import MlmsIrError, ShapeBindingError
from mlms_ir.ir import Graph
from mlms_ir.ir.guard import check_allocation
from mlms_ir.ir.dtypes import dtype_name, np_dtype
from mlms_ir.values import Value, random_value


def _index_bound(graph: Graph, name: str) -> int | None:
    """The exclusive upper bound of an integer input used as indices (Gather data's axis size)."""
    bounds = []
    for node in graph.consumers(name):
        if node.op_type in ("Gather", "GatherElements") and len(node.proto.input) > 1 and node.proto.input[1] == name:
            data = graph.tensor(node.proto.input[0])
            axis = int(node.attrs.get("axis", 0))
            if data is not None and data.shape is not None and data.shape and isinstance(data.shape[axis], int):
                bounds.append(data.shape[axis])
        elif node.op_type == "EmbedLayerNormalization":
            data = graph.tensor(node.proto.input[2])
            if data is not None and data.shape is not None and isinstance(data.shape[0], int):
                bounds.append(data.shape[0])
    return min(bounds) if bounds else None


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, Value]:
    """Seeded random inputs: floats ~ N(0, 1); integer inputs read as indices stay within the
    indexed axis; masks (an integer input named ``*mask*``) are ones; other integers in [0, 2);
    strings short random words. A sequence input gets 2 such tensors of its element type, a map
    2 entries, an optional a value (:func:`mlms_ir.values.random_value`)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MlmsIrError(f"the seed of the random inputs must be an integer >= 0, got '{seed}'")
    rng = np.random.default_rng(seed)
    feeds: dict[str, Value] = {}
    held = 0

    def tensor(label: str, elem_type: int, shape: tuple, name: str) -> np.ndarray:
        nonlocal held
        dtype = np_dtype(elem_type)
        numel = math.prod(int(d) for d in shape)
        # float data is drawn in float64 and then converted: both are alive for a moment
        need = numel * (8 + (dtype.itemsize if dtype is not None else 8))
        check_allocation(f"random data for {label} ({'x'.join(str(d) for d in shape) or 'scalar'})", held + need)
        held += numel * (dtype.itemsize if dtype is not None else 8)
        if elem_type == onnx.TensorProto.STRING:
            words = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
            return np.asarray(words[rng.integers(0, len(words), shape)], dtype=object)
        if dtype is None or dtype.kind not in "fbiu":
            raise MlmsIrError(f"cannot make random data for {label} of type {dtype_name(elem_type)}; give --inputs FILE.npz")
        if dtype.kind == "f":
            return rng.standard_normal(shape).astype(dtype)
        if dtype.kind == "b":
            return rng.integers(0, 2, shape).astype(bool)
        if "mask" in name.lower():
            return np.ones(shape, dtype=dtype)
        hi = _index_bound(graph, name) or 2
        return rng.integers(0, hi, shape).astype(dtype)

    for name in graph.input_names:
        t = graph.tensors[name]
        if t.value_kind != "tensor":
            tp = graph.value_type(name)
            if tp is None:
                raise MlmsIrError(f"input '{name}' is a {t.value_kind} of no declared type; give the feeds through the Python API")
            feeds[name] = random_value(f"input '{name}'", tp, lambda label, elem, shape: tensor(label, elem, shape, name))
            continue
        if not t.known:
            # a named dim by its name (what --dims binds), an anonymous one as ?
            dims = "x".join(str(d) if isinstance(d, (int, str)) else "?" for d in (t.shape or ()))
            raise ShapeBindingError(
                f"input '{name}' has unbound dims ({dims or 'unknown rank'}); bind them with --batch, --dims or --input-shape"
            )
        feeds[name] = tensor(f"input '{name}'", t.elem_type, tuple(t.shape), name)  # type: ignore[arg-type]
    return feeds


def load_feeds(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` file (no pickled objects are loaded)."""
    p = Path(path)
    if not p.is_file():
        raise MlmsIrError(f"inputs file '{p}' does not exist")
    hint = "give an .npz file written by numpy.savez"
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
        if magic.startswith(b"\x93NUMPY"):  # np.load would read (and size) a bare array by its header
            raise MlmsIrError(f"'{p}' is a single .npy array, not an .npz of named inputs; {hint}")
        if not magic.startswith(b"PK"):
            raise MlmsIrError(f"cannot read inputs from '{p}': it is not an .npz (zip) file; {hint}")
        with np.load(p, allow_pickle=False) as data:
            total = 0
            for k in data.files:  # every array's declared size, read from its header, before any data
                with data.zip.open(k if k in data.zip.namelist() else f"{k}.npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(fh))
                total += math.prod(shape) * dtype.itemsize
                check_allocation(f"the inputs in '{p}'", total)
            return {k: data[k] for k in data.files}
    except MlmsIrError:
        raise
    except (ValueError, OSError, EOFError, KeyError, TypeError, AttributeError, MemoryError, zipfile.BadZipFile) as exc:
        raise MlmsIrError(f"cannot read inputs from '{p}' ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); {hint}") from None


def batch_of(feeds: dict[str, Value]) -> int:
    """The leading dim of the first tensor input with one (1 for scalars and when every input is
    a sequence, map or optional)."""
    for v in feeds.values():
        if isinstance(v, np.ndarray) and v.ndim:
            return int(v.shape[0])
    return 1


def feeds_for(graph: Graph, inputs: str | dict | None, seed: int) -> dict[str, Value]:
    """The feeds of one run: seeded random data (``inputs`` None), an ``.npz`` file's arrays (a
    path), or the given values (a dict of name -> array-like, or for a sequence, map or optional
    input a list, a dict or None: :mod:`mlms_ir.values`)."""
    if inputs is None:
        return random_feeds(graph, seed)
    if isinstance(inputs, str):
        return load_feeds(inputs)
    tensors = {n for n in graph.input_names if graph.tensors[n].value_kind == "tensor"}
    return {k: np.asarray(v) if k in tensors or k not in graph.input_names else v for k, v in inputs.items()}
