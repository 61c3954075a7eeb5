"""Small file helpers every part of mlms_ir shares: where its cache is, and the sha256 of a file
(or of bytes).

The cache (:func:`cache_root`) is ``$MLMS_IR_CACHE`` when set, else ``~/.cache/mlms_ir``; below it
live the data sets (``datasets/``), the zoo's builds and weights (``zoo/``, ``weights/``, ``locks/``,
``staging/``) and the agent environments (``envs/``, unless ``$MLMS_IR_ENVS`` puts them elsewhere).
Nothing here creates a folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: Bytes read per chunk when hashing a file (a multi-GiB weights file never sits in memory whole).
CHUNK_BYTES = 1 << 20


def cache_root() -> Path:
    """mlms_ir's cache folder: ``$MLMS_IR_CACHE`` (``~`` expanded), else ``~/.cache/mlms_ir``."""
    env = os.environ.get("MLMS_IR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlms_ir"


def sha256_of(data: str | os.PathLike[str] | bytes | bytearray | memoryview) -> str:
    """The sha256 hex digest of a file (read in :data:`CHUNK_BYTES` chunks) or of bytes in memory."""
    h = hashlib.sha256()
    if isinstance(data, (bytes, bytearray, memoryview)):
        h.update(data)
        return h.hexdigest()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["CHUNK_BYTES", "cache_root", "sha256_of"]
