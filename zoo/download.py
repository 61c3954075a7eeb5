"""Resumable, verified downloads into mlms_ir's cache.

:func:`download` fetches a URL with urllib into ``DEST.part``, continuing a partial file with an
HTTP ``Range`` request, shows a rich progress bar, verifies the sha256 (the whole digest, or the
prefix torchvision puts in its file names) and only then moves the file to ``DEST``. A file whose
hash does not match is deleted. Nothing here runs unless a user asks for weights.

The cache is :func:`mlms_ir.files.cache_root`: ``$MLMS_IR_CACHE`` when set, else ``~/.cache/mlms_ir``.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from mlms_ir.errors import DownloadError
# re-exported: tests/test_zoo.py imports both from here (cache_dir is mlms_ir.files.cache_root)
from mlms_ir.files import cache_root as cache_dir
from mlms_ir.files import sha256_of
from mlms_ir.progress import progress_bar

#: Bytes read per chunk.
CHUNK_BYTES = 1 << 20
#: Seconds to wait for the server before giving up.
TIMEOUT_S = 60.0
_HEX = re.compile(r"^[0-9a-fA-F]{1,64}$")


def _expected(sha256: str | None, sha256_prefix: str | None) -> tuple[str | None, str]:
    """The expected digest (or prefix) in lower case, and how to describe it."""
    if sha256 is not None and sha256_prefix is not None:
        raise ValueError("give sha256 or sha256_prefix, not both")
    want = sha256 if sha256 is not None else sha256_prefix
    if want is None:
        return None, ""
    if not _HEX.match(want) or (sha256 is not None and len(want) != 64):
        raise ValueError(f"not a sha256 {'digest' if sha256 is not None else 'prefix'}: {want!r}")
    return want.lower(), ("sha256" if sha256 is not None else "sha256 prefix")


def _matches(digest: str, want: str | None) -> bool:
    return want is None or digest.startswith(want)


def _total_from(resp, offset: int) -> int | None:
    """The full size of the resource from a 200 or 206 response."""
    rng = resp.headers.get("Content-Range")
    if rng and "/" in rng:
        tail = rng.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    length = resp.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (offset if resp.status == 206 else 0)
    return None


def _range_start(resp) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", resp.headers.get("Content-Range") or "")
    return int(m.group(1)) if m else None


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified); return ``dest``.

    An existing ``dest`` whose hash matches is kept without touching the network. Bytes arrive in
    ``dest.part``; when that file exists, the download continues from its end (``Range: bytes=N-``;
    a server that ignores ranges sends everything again). The hash (``sha256``: the whole hex
    digest; ``sha256_prefix``: its first characters, as in torchvision's ``resnet50-11ad3fa6.pth``)
    is checked before the file is moved to ``dest``; on a mismatch the partial file is deleted and
    :class:`DownloadError` raised. A network failure keeps the partial file, so running again resumes.
    """
    want, what = _expected(sha256, sha256_prefix)
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if _matches(sha256_of(dest), want):
            return dest
        dest.unlink()  # stale or corrupt: fetch again
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "mlms_ir"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - the URLs come from the manifests or the user
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file already holds everything
            resp = None
        else:
            raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url}: {reason}; check the network and run again") from exc
    if resp is not None:
        with resp:
            if offset and resp.status != 206:
                offset = 0  # the server ignored the Range header: start over
            elif offset and _range_start(resp) not in (None, offset):
                part.unlink()
                raise DownloadError(
                    f"{url} answered a resume from byte {offset} with other bytes; the partial file was deleted, run again")
            total = _total_from(resp, offset)
            bar = progress_bar(total, dest.name, enabled=progress, unit="bytes", completed=offset)
            received = offset
            try:
                with open(part, "ab" if offset else "wb") as f:
                    while True:
                        try:
                            chunk = resp.read(CHUNK_BYTES)
                        except (OSError, http.client.HTTPException) as exc:
                            raise DownloadError(
                                f"the download of {url} broke off after {received} bytes ({exc}); run again to resume"
                            ) from exc
                        if not chunk:
                            break
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(received)
            finally:
                bar.close()
            if total is not None and received < total:
                raise DownloadError(f"the download of {url} stopped at {received} of {total} bytes; run again to resume")
    digest = sha256_of(part)
    if not _matches(digest, want):
        part.unlink()
        raise DownloadError(
            f"{url} has sha256 {digest}, which does not match the expected {what} {want}; "
            "the downloaded file was deleted (a changed or corrupted file: try again, or check the URL)"
        )
    os.replace(part, dest)
    return dest


__all__ = ["DownloadError", "cache_dir", "download", "sha256_of"]
