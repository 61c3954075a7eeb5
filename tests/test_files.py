"""The shared file helpers (:mod:`mlms_ir.files`): one cache root, one sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from mlms_ir.files import CHUNK_BYTES, cache_root, sha256_of

REPO = Path(__file__).resolve().parents[1]


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


def test_the_old_names_are_these_functions():
    from mlms_ir.zoo import download

    assert download.sha256_of is sha256_of and download.cache_dir is cache_root


def test_mlms_ir_cache_moves_datasets_zoo_and_envs(tmp_path, monkeypatch):
    from mlms_ir.backends.worker import MXNetBackend, OnnxTfBackend, envs_dir
    from mlms_ir.datasets.sources import cache_dir as dataset_dir
    from mlms_ir.zoo import builder

    for var in ("MLMS_IR_ENVS", "MLMS_IR_MXNET_PYTHON", "MLMS_IR_ONNX_TF_PYTHON"):
        monkeypatch.delenv(var, raising=False)
    c = tmp_path / "cache"
    monkeypatch.setenv("MLMS_IR_CACHE", str(c))
    assert cache_root() == c
    assert dataset_dir("mnist") == c / "datasets" / "mnist"
    assert builder.model_dir("squeezenet1_1") == c / "zoo" / "squeezenet1_1"
    assert builder.weights_file("resnet18").parent == c / "weights"
    assert builder.lock_path("squeezenet1_1") == c / "locks" / "squeezenet1_1.lock"
    assert envs_dir() == c / "envs"
    assert MXNetBackend().python()[0] == c / "envs" / "mxnet" / "bin" / "python"
    assert OnnxTfBackend().python()[0] == c / "envs" / "onnx-tf" / "bin" / "python"
    assert not c.exists()  # asking where things go creates nothing

    monkeypatch.setenv("MLMS_IR_ENVS", str(tmp_path / "envs"))  # the envs alone can go elsewhere
    assert envs_dir() == tmp_path / "envs" and dataset_dir("mnist") == c / "datasets" / "mnist"

    monkeypatch.setenv("MLMS_IR_CACHE", "~/somewhere")
    assert cache_root() == Path.home() / "somewhere"
    for empty in ("", None):  # unset or empty: the default
        if empty is None:
            monkeypatch.delenv("MLMS_IR_CACHE")
        else:
            monkeypatch.setenv("MLMS_IR_CACHE", empty)
        assert cache_root() == Path.home() / ".cache" / "mlms_ir"


def test_make_agent_envs_puts_the_envs_where_the_backends_look(tmp_path, monkeypatch):
    # a "python" that fails at once: the script only gets as far as making the env's folder
    fake = tmp_path / "python3.11"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MLMS_IR_ENVS"}
    env.update(MLMS_IR_CACHE=str(tmp_path / "cache"), PYTHON=str(fake))
    p = subprocess.run(["bash", str(REPO / "tools" / "make_agent_envs.sh"), "mxnet"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 1
    monkeypatch.delenv("MLMS_IR_ENVS", raising=False)
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    from mlms_ir.backends.worker import envs_dir

    assert envs_dir() == tmp_path / "cache" / "envs" and envs_dir().is_dir()
    assert f"creating {envs_dir() / 'mxnet'} with {fake}" in p.stdout
    assert p.stdout.rstrip().endswith(f"envs under {envs_dir()}")
