"""The model catalog: the shipped ``digits-cnn``, every torchvision model with published weights, and 40 timm models.

``digits-cnn`` is a small CNN trained on scikit-learn's bundled digits data by
``tools/train_digits_cnn.py`` and shipped in the package (``builtin/digits_cnn.onnx``), with its
provenance and measured test accuracy in ``builtin/digits_cnn.json``.

The torchvision and timm models are manifests (data: ``manifests/*.json``, label sets in
``labels.json``, written by ``tools/make_zoo_manifests.py``): :func:`get`, :func:`list_models` and
:func:`resolve` (``zoo:NAME`` -> an ONNX file, built into the cache on first use) need no framework;
building (:func:`mlms_ir.zoo.builder.build`) needs the ``torch`` extra (and ``timm`` for the timm
models), and downloading weights (:mod:`mlms_ir.zoo.download`) happens only when asked for (timm's
weights, on the Hugging Face hub, never).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from mlms_ir.zoo.manifest import UnknownModelError, get, is_zoo_ref, list_models, resolve

DEFAULT_MODEL = "digits-cnn"
_BUILTIN = {"digits-cnn": "digits_cnn"}


def builtin_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a model shipped inside the package."""
    stem = _BUILTIN[name]
    return Path(str(resources.files("mlms_ir.zoo").joinpath(f"builtin/{stem}.onnx")))


def builtin_manifest(name: str = DEFAULT_MODEL) -> dict:
    """The manifest (provenance, preprocessing, measured accuracy) of a shipped model."""
    stem = _BUILTIN[name]
    return json.loads(resources.files("mlms_ir.zoo").joinpath(f"builtin/{stem}.json").read_text())


__all__ = [
    "DEFAULT_MODEL",
    "UnknownModelError",
    "builtin_manifest",
    "builtin_path",
    "get",
    "is_zoo_ref",
    "list_models",
    "resolve",
]
