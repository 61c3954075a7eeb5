"""Build zoo models into ONNX files in the cache, with or without their published weights.

Layout under the cache (``$MLMS_IR_CACHE``, else ``~/.cache/mlms_ir``)::

    zoo/<name>/model.onnx        # (+ model.onnx.data for models over 1 GiB of weights)
    zoo/<name>/build.json        # provenance: weights, exporter, max abs error, versions, ...
    weights/<file>.pth           # published weights, downloaded on request, sha256-prefix verified
    locks/<name>.lock            # held while <name> is built (or its weights downloaded)
    staging/<name>/              # the build in progress (new/) and the build it replaces (old/)

A model built with random weights says so in ``build.json`` and in its ONNX metadata: random
weights are fine for cost and speed, never for accuracy.

Builds may run at once in several processes (or threads): a build of one model holds an exclusive
lock on ``locks/<name>.lock`` (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) while it
downloads, converts into a temporary folder beside ``zoo/<name>`` and renames that folder into
place; a second build of the same model waits for the lock and then finds the model built.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlms_ir.errors import WeightsUnavailableError
from mlms_ir.files import cache_root
from mlms_ir.progress import progress_bar
from mlms_ir.zoo.download import download
from mlms_ir.zoo.manifest import get

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: build.json's schema version.
BUILD_SCHEMA_VERSION = 1
#: What a random-weights build says about itself.
RANDOM_NOTE = "random weights: fine for cost and speed, never for accuracy"
MODEL_FILE = "model.onnx"
BUILD_FILE = "build.json"
#: Source kinds whose published weights mlms_ir downloads (and verifies) itself.
DOWNLOADABLE_KINDS = ("torchvision",)


def zoo_cache_dir() -> Path:
    """Where built zoo models live: ``<cache>/zoo``."""
    return cache_root() / "zoo"


def model_dir(name: str) -> Path:
    """``<cache>/zoo/<name>`` of a zoo model (by its canonical name)."""
    return zoo_cache_dir() / get(name)["name"]


def weights_unavailable_message(m: dict[str, Any]) -> str:
    """One sentence on why a zoo model's published weights cannot be fetched, and what to do instead."""
    name, src, w = m["name"], m["source"], m["weights"]
    if src["kind"] == "builtin":
        return f"{name} is shipped with its trained weights; there is nothing to download (use it as zoo:{name})"
    if src["kind"] == "timm":
        return (
            f"{name}'s published weights are on the Hugging Face hub ({w.get('hf_hub_id')}), which gives no checksum "
            "to pin and which mlms_ir does not download from: build it without --weights (random weights, fine for "
            "cost and speed), or fetch the file yourself and convert it with "
            f"mlms_ir.converters.torch.from_timm('{src['model']}', OUT, weights_path=FILE)"
        )
    return f"{name} has no published weights that mlms_ir can download ({w.get('weights_note') or 'no URL'})"


def weights_file(name: str) -> Path:
    """Where the published weights of ``name`` are (or will be) downloaded: ``<cache>/weights/<file>``.

    Raises:
        WeightsUnavailableError: mlms_ir cannot download ``name``'s weights (timm, shipped models).
    """
    m = get(name)
    if m["source"]["kind"] not in DOWNLOADABLE_KINDS or not m["weights"].get("file"):
        raise WeightsUnavailableError(weights_unavailable_message(m))
    return cache_root() / "weights" / m["weights"]["file"]


def weights_downloaded(name: str) -> bool:
    """Whether the published weights of ``name`` are in the cache (never for weights mlms_ir cannot download)."""
    m = get(name)
    if m["source"]["kind"] not in DOWNLOADABLE_KINDS or not m["weights"].get("file"):
        return False
    return weights_file(name).is_file()


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
    """Download the published weights of ``name`` into the cache (verified); return the file.

    Raises:
        WeightsUnavailableError: mlms_ir cannot download these weights (timm, shipped models).
        DownloadError: the download failed, or the file does not have the expected hash.
    """
    m = get(name)
    dest = weights_file(name)
    w = m["weights"]
    return download(w["url"], dest, sha256_prefix=w["sha256_prefix"], progress=progress)


def lock_path(name: str) -> Path:
    """The lock file of ``name``'s builds: ``<cache>/locks/<name>.lock`` (by its canonical name)."""
    return cache_root() / "locks" / f"{get(name)['name']}.lock"


@contextlib.contextmanager
def build_lock(name: str, *, wait_note: bool = True) -> Iterator[Path]:
    """Hold the exclusive build lock of zoo model ``name``, waiting while another process or thread holds it.

    An advisory lock on ``<cache>/locks/<name>.lock`` (``fcntl.flock``; ``msvcrt.locking`` on
    Windows), released when the block ends or the process dies. Each call opens the file anew, so
    two threads of one process exclude each other too. The file stays: deleting it would let a third
    process lock a new file while a second one still holds the old one. With ``wait_note``, waiting
    is said on stderr.
    """
    canonical = get(name)["name"]
    path = lock_path(canonical)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fd = f.fileno()
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if wait_note:
                    print(f"mlms_ir: waiting for another build of {canonical} to finish ({path})", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
        else:  # pragma: no cover - Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # tries for 10 s, then raises
                    break
                except OSError:
                    continue
        try:
            yield path
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:  # pragma: no cover - Windows
                import msvcrt

                f.seek(0)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _reusable(name: str, weights: bool, force: bool) -> Path | None:
    """The cached build of ``name`` when it may be reused (not ``force``; not random weights when weights are asked for)."""
    path = built_path(name)
    info = read_build_info(name)
    if path is not None and info is not None and not force and not (weights and info.get("weights") == "random"):
        return path
    return None


def _convert(m: dict[str, Any], out: Path, *, weights: bool, wfile: Path | None, batch: int) -> Any:
    """Convert the model of manifest ``m`` to ``out`` with the converter of its source kind."""
    src = m["source"]
    if src["kind"] == "timm":
        from mlms_ir.converters.torch import from_timm

        return from_timm(src["model"], out, batch=batch, resolution=m["resolution"], provenance={"zoo_name": m["name"]})
    from mlms_ir.converters.torch import from_torchvision

    return from_torchvision(
        src["builder"], out, weights=src["weights"] if weights else None, weights_path=wfile,
        batch=batch, resolution=m["resolution"], frames=m.get("frames") or 16,
        provenance={"zoo_name": m["name"]},
    )


def _staging(name: str) -> Path:
    """Where a build of ``name`` is made before it is renamed into place: ``<cache>/staging/<name>``
    (beside ``zoo/``, on the same file system), used only under the model's build lock."""
    return cache_root() / "staging" / name


def _recover(name: str) -> None:
    """Clear what a build of ``name`` that died left behind (under its lock): a half-made model is
    deleted; a finished older build moved aside just before the process died is put back."""
    stage = _staging(name)
    old, dest = stage / "old", model_dir(name)
    if old.is_dir() and not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, dest)
    shutil.rmtree(stage, ignore_errors=True)


def _move_into_place(tmp: Path, dest: Path, old: Path) -> None:
    """Rename the finished folder ``tmp`` to ``dest``; an older ``dest`` is renamed to ``old`` first, then deleted."""
    moved = False
    if dest.exists():
        os.replace(dest, old)
        moved = True
    os.replace(tmp, dest)
    if moved:
        shutil.rmtree(old, ignore_errors=True)


def build(name: str, *, weights: bool = False, batch: int = 1, force: bool = False, progress: bool = True) -> Path:
    """The ONNX file of zoo model ``name``, converting it first when needed; returns its path.

    Args:
        name: a zoo name or alias.
        weights: use the published weights, downloading them first (verified by their sha256 prefix);
            without it the model gets random weights (seed 0) -- fine for cost and speed, never for
            accuracy. Weights mlms_ir cannot download (timm's, on the Hugging Face hub) raise
            :class:`WeightsUnavailableError`.
        batch: batch size of the example input (the model keeps a dynamic batch, except detection models).
        force: convert again even when a build is in the cache.
        progress: show a progress bar while downloading, and a spinner while converting.

    A cached build is reused unless ``force``, or unless ``weights`` is asked for and the cached
    build has random weights. ``digits-cnn`` is the file shipped in the package. Builds of one model
    running at once (processes or threads) are serialised by :func:`build_lock`: the later one waits,
    then reuses the model the first one built (with ``force`` it converts again).
    """
    m = get(name)
    name = m["name"]
    if m["source"]["kind"] == "builtin":
        return built_path(name)  # type: ignore[return-value]
    if weights and m["source"]["kind"] not in DOWNLOADABLE_KINDS:
        raise WeightsUnavailableError(weights_unavailable_message(m))
    path = _reusable(name, weights, force)
    if path is not None:
        return path
    with build_lock(name):
        path = None if force else _reusable(name, weights, False)
        if path is not None:
            return path  # another process built it while this one waited for the lock
        wfile = fetch_weights(name, progress=progress) if weights else None
        zoo_cache_dir().mkdir(parents=True, exist_ok=True)
        _recover(name)
        stage = _staging(name)
        tmp = stage / "new"
        tmp.mkdir(parents=True)
        os.chmod(tmp, 0o755)
        log.info("converting %s (%s weights)", name, "published" if weights else "random")
        try:
            with progress_bar(None, f"converting {name}", enabled=progress):
                result = _convert(m, tmp / MODEL_FILE, weights=weights, wfile=wfile, batch=batch)
            record = result.to_dict()
            record["path"] = MODEL_FILE
            src = m["source"]
            info = {
                "schema_version": BUILD_SCHEMA_VERSION,
                "name": name,
                "source_kind": src["kind"],
                "builder": src.get("builder") or src.get("model"),
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
            _move_into_place(tmp, model_dir(name), stage / "old")
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return model_dir(name) / MODEL_FILE


__all__ = [
    "DOWNLOADABLE_KINDS",
    "RANDOM_NOTE",
    "WeightsUnavailableError",
    "build",
    "build_lock",
    "built_path",
    "fetch_weights",
    "lock_path",
    "model_dir",
    "read_build_info",
    "weights_downloaded",
    "weights_file",
    "weights_unavailable_message",
    "zoo_cache_dir",
]
