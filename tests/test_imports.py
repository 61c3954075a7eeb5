"""Import hygiene: the core pulls in no heavy framework; every module imports with core deps only."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import mlms_ir
from mlms_ir._lazy import LAZY_PACKAGES, lazy_import
from mlms_ir.errors import MissingExtraError

HEAVY = ("torch", "torchvision", "timm", "tensorflow", "tensorrt", "onnxscript", "onnx2torch", "ray", "cupy", "pynvml", "mxnet")


def test_import_pulls_in_no_heavy_framework():
    code = (
        "import sys, mlms_ir, mlms_ir.cli, mlms_ir.cli.analyze, mlms_ir.passes.analyze;"
        "mlms_ir.analyze(mlms_ir.zoo.builtin_path() if False else __import__('mlms_ir.zoo', fromlist=['x']).builtin_path(), batch=1);"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_module_imports():
    # backends, converters and zoo live in top-level folders mapped into the package (package_dir)
    mapped = ["mlms_ir.backends", "mlms_ir.converters", "mlms_ir.zoo"]
    names = [m.name for m in pkgutil.walk_packages(mlms_ir.__path__[:1], "mlms_ir.")] + mapped
    assert "mlms_ir.passes.ops.linear" in names
    for name in names:
        importlib.import_module(name)


def test_lazy_packages_are_pinned():
    assert set(LAZY_PACKAGES) == {"torch", "torchvision", "onnxscript", "onnx2torch", "timm", "tensorflow", "tf2onnx", "tensorrt", "pynvml", "cupy", "ray", "playwright", "mlperf_loadgen"}


def test_missing_extra_names_the_extra():
    try:
        lazy_import("tensorrt_does_not_exist_here")
    except MissingExtraError as exc:
        assert "pip install" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected MissingExtraError")


def test_version_has_one_source():
    from importlib.metadata import version

    assert version("mlms_ir") == mlms_ir.__version__
