"""Inputs for running a model: seeded random data that respects dtypes, shapes and index ranges,
or arrays from an ``.npz`` file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlms_ir.errors import MlmsIrError, ShapeBindingError
from mlms_ir.ir import Graph
from mlms_ir.ir.dtypes import np_dtype


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


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs: floats ~ N(0, 1); integer inputs read as indices stay within the
    indexed axis; masks (an integer input named ``*mask*``) are ones; other integers in [0, 2)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name in graph.input_names:
        t = graph.tensors[name]
        if not t.known:
            dims = "x".join("?" if not isinstance(d, int) else str(d) for d in (t.shape or ()))
            raise ShapeBindingError(
                f"input '{name}' has unbound dims ({dims or 'unknown rank'}); bind them with --batch, --dims or --input-shape"
            )
        dtype = np_dtype(t.elem_type)
        if dtype is None:
            raise MlmsIrError(f"cannot make random data for input '{name}' of type {t.dtype}; give --inputs FILE.npz")
        shape = tuple(t.shape)  # type: ignore[arg-type]
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        elif dtype.kind in "iu":
            if "mask" in name.lower():
                feeds[name] = np.ones(shape, dtype=dtype)
            else:
                hi = _index_bound(graph, name) or 2
                feeds[name] = rng.integers(0, hi, shape).astype(dtype)
        else:
            raise MlmsIrError(f"cannot make random data for input '{name}' of type {t.dtype}; give --inputs FILE.npz")
    return feeds


def load_feeds(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays from an ``.npz`` file (no pickled objects are loaded)."""
    p = Path(path)
    if not p.is_file():
        raise MlmsIrError(f"inputs file '{p}' does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise MlmsIrError(f"cannot read inputs from '{p}' ({exc}); give an .npz file written by numpy.savez") from exc


def batch_of(feeds: dict[str, np.ndarray]) -> int:
    """The leading dim of the first input with one (1 for scalars)."""
    for v in feeds.values():
        if v.ndim:
            return int(v.shape[0])
    return 1


def feeds_for(graph: Graph, inputs: str | dict | None, seed: int) -> dict[str, np.ndarray]:
    """The feeds of one run: seeded random data (``inputs`` None), an ``.npz`` file's arrays (a
    path), or the given arrays (a dict of name -> array-like)."""
    if inputs is None:
        return random_feeds(graph, seed)
    return load_feeds(inputs) if isinstance(inputs, str) else {k: np.asarray(v) for k, v in inputs.items()}
