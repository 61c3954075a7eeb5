"""The model catalog. For now: the embedded default model, ``digits-cnn``.

``digits-cnn`` is a small CNN trained on scikit-learn's bundled digits data by
``tools/train_digits_cnn.py`` and shipped in the package (``builtin/digits_cnn.onnx``), with its
provenance and measured test accuracy in ``builtin/digits_cnn.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

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
