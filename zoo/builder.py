"""Build zoo models into ONNX files in the cache, with or without their published weights.

Layout under the cache (``$MLMS_IR_CACHE``, else ``~/.cache/mlms_ir``)::

    zoo/<name>/model.onnx        # (+ model.onnx.data for models over 1 GiB of weights)
    zoo/<name>/build.json        # provenance: weights, exporter, max abs error, versions, ...
    weights/<file>.pth           # published weights, downloaded on request, sha256-prefix verified

A model built with random weights says so in ``build.json`` and in its ONNX metadata: random
weights are fine for cost and speed, never for accuracy.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlms_ir.zoo.download import cache_dir, download
from mlms_ir.zoo.manifest import get

#: build.json's schema version.
BUILD_SCHEMA_VERSION = 1
#: What a random-weights build says about itself.
RANDOM_NOTE = "random weights: fine for cost and speed, never for accuracy"
MODEL_FILE = "model.onnx"
BUILD_FILE = "build.json"


def zoo_cache_dir() -> Path:
    """Where built zoo models live: ``<cache>/zoo``."""
    return cache_dir() / "zoo"


def model_dir(name: str) -> Path:
    """``<cache>/zoo/<name>`` of a zoo model (by its canonical name)."""
    return zoo_cache_dir() / get(name)["name"]


def weights_file(name: str) -> Path:
    """Where the published weights of ``name`` are (or will be) downloaded: ``<cache>/weights/<file>``."""
    m = get(name)
    return cache_dir() / "weights" / m["weights"]["file"]


def weights_downloaded(name: str) -> bool:
    """Whether the published weights of ``name`` are in the cache."""
    m = get(name)
    return m["source"]["kind"] == "torchvision" and weights_file(name).is_file()


def read_build_info(name: str) -> dict[str, Any] | None:
    """The ``build.json`` of a built model, or None."""
    try:
        return json.loads((model_dir(name) / BUILD_FILE).read_text())
    except (OSError, ValueError):
        return None


def built_path(name: str) -> Path | None:
    """The ONNX file of ``name`` when it is already there (shipped or built), else None."""
    m = get(name)
    if m["source"]["kind"] == "builtin":
        from mlms_ir.zoo import builtin_path

        return builtin_path(m["name"])
    path = model_dir(name) / MODEL_FILE
    return path if path.is_file() and read_build_info(name) is not None else None


def fetch_weights(name: str, *, progress: bool = True) -> Path:
    """Download the published weights of ``name`` into the cache (verified); return the file."""
    m = get(name)
    if m["source"]["kind"] != "torchvision":
        raise ValueError(f"{m['name']} has no weights to download")
    w = m["weights"]
    return download(w["url"], weights_file(name), sha256_prefix=w["sha256_prefix"], progress=progress)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build(name: str, *, weights: bool = False, batch: int = 1, force: bool = False, progress: bool = True) -> Path:
    """The ONNX file of zoo model ``name``, converting it first when needed; returns its path.

    Args:
        name: a zoo name or alias.
        weights: use the published weights, downloading them first (verified by their sha256 prefix);
            without it the model gets random weights (seed 0) -- fine for cost and speed, never for
            accuracy.
        batch: batch size of the example input (the model keeps a dynamic batch, except detection models).
        force: convert again even when a build is in the cache.
        progress: show a progress bar while downloading.

    A cached build is reused unless ``force``, or unless ``weights`` is asked for and the cached
    build has random weights. ``digits-cnn`` is the file shipped in the package.
    """
    m = get(name)
    name = m["name"]
    if m["source"]["kind"] == "builtin":
        return built_path(name)  # type: ignore[return-value]
    path = built_path(name)
    info = read_build_info(name)
    if path is not None and info is not None and not force and not (weights and info.get("weights") == "random"):
        return path
    wfile = fetch_weights(name, progress=progress) if weights else None

    from mlms_ir.converters.torch import from_torchvision

    src = m["source"]
    root = zoo_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    os.chmod(tmp, 0o755)
    try:
        result = from_torchvision(
            src["builder"], tmp / MODEL_FILE, weights=src["weights"] if weights else None, weights_path=wfile,
            batch=batch, resolution=m["resolution"], frames=m.get("frames") or 16,
            provenance={"zoo_name": name},
        )
        record = result.to_dict()
        record["path"] = MODEL_FILE
        info = {
            "schema_version": BUILD_SCHEMA_VERSION,
            "name": name,
            "builder": src["builder"],
            "weights": src["weights"] if weights else "random",
            "weights_file": str(wfile) if wfile else None,
            "note": None if weights else RANDOM_NOTE,
            "batch": batch,
            "resolution": m["resolution"],
            "manifest_num_params": m["num_params"],
            "manifest_gflops": m["gflops"],
            "conversion": record,
            "built_at": _now(),
        }
        (tmp / BUILD_FILE).write_text(json.dumps(info, indent=2) + "\n")
        dest = model_dir(name)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / MODEL_FILE


__all__ = [
    "RANDOM_NOTE",
    "build",
    "built_path",
    "fetch_weights",
    "model_dir",
    "read_build_info",
    "weights_downloaded",
    "weights_file",
    "zoo_cache_dir",
]
