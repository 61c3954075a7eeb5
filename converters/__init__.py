"""Converters from source frameworks to ONNX (installed as ``mlms_ir.converters``).

One module per source framework, each producing an ONNX file plus provenance:

* :mod:`mlms_ir.converters.torch`: PyTorch modules, TorchScript files and torchvision models
  (:func:`~mlms_ir.converters.torch.from_torch`, :func:`~mlms_ir.converters.torch.from_torchscript`,
  :func:`~mlms_ir.converters.torch.from_torchvision`).
* :mod:`mlms_ir.converters.torchvision_spec`: what torchvision's own metadata says about a model
  (task, builder arguments, input shapes, preprocessing), shared by the converter and the zoo.
* :mod:`mlms_ir.converters.timm_spec`: the same for timm models (``pretrained_cfg``, data config,
  evaluation transform, licence); :func:`~mlms_ir.converters.torch.from_timm` converts them.

TensorFlow/Keras conversion has its own module (:mod:`mlms_ir.converters.tensorflow`), MXNet too
(:mod:`mlms_ir.converters.mxnet`, run in the MXNet agent environment). One converter goes the other
way: :mod:`mlms_ir.converters.onnx_tf` turns ONNX into a TensorFlow SavedModel (onnx-tf, run in
its agent environment), with the provenance in a JSON file inside the SavedModel.

Every converter checks the converted model's outputs against the source's with one rule and one
message format: :func:`mlms_ir.comparator.check_close`.

Importing this package imports no deep-learning framework; torch is imported when a converter runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from mlms_ir.errors import ConversionError


_PATCH_LOCK = threading.Lock()
_PATCHES: dict[tuple[int, str], list[Any]] = {}  # (id(owner), attribute) -> [original, users]


@contextlib.contextmanager
def patched(owner: Any, attr: str, replacement: Any) -> Iterator[None]:
    """Replace ``owner.attr`` while any caller is inside (safe across threads: the first one in
    installs ``replacement``, the last one out puts the original back; callers must agree on what
    the replacement does, e.g. refuse a download)."""
    key = (id(owner), attr)
    with _PATCH_LOCK:
        entry = _PATCHES.get(key)
        if entry is None:
            entry = _PATCHES[key] = [getattr(owner, attr), 0]
            setattr(owner, attr, replacement)
        entry[1] += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                setattr(owner, attr, entry[0])
                del _PATCHES[key]


__all__ = ["ConversionError", "patched"]
