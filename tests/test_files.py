"""The shared file helpers (:mod:`mlms_ir.files`): one sha256."""

from __future__ import annotations

import hashlib

from mlms_ir.files import CHUNK_BYTES, sha256_of


def test_sha256_of_a_file_bytes_and_a_path_string(tmp_path):
    # 2.5 chunks: the digest must not depend on where the chunks end
    data = bytes(range(256)) * (CHUNK_BYTES * 5 // 2 // 256)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_of(f) == sha256_of(str(f)) == sha256_of(data) == sha256_of(bytearray(data)) == want


def test_sha256_of_nothing():
    # the sha256 of zero bytes, a well-known constant
    assert sha256_of(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_the_old_names_are_this_function():
    from mlms_ir.zoo import download

    assert download.sha256_of is sha256_of
