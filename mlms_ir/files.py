"""Small file helpers every part of mlms_ir shares: the sha256 of a file (or of bytes)."""

from __future__ import annotations

import hashlib
import os

#: Bytes read per chunk when hashing a file (a multi-GiB weights file never sits in memory whole).
CHUNK_BYTES = 1 << 20


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


__all__ = ["CHUNK_BYTES", "sha256_of"]
