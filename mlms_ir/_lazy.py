"""The one helper through which optional heavy dependencies are imported."""

from __future__ import annotations

import importlib
from types import ModuleType

from mlms_ir.errors import MissingExtraError

#: Packages that mlms_ir imports only on demand, and the extra that installs each.
LAZY_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torch",
    "onnxscript": "torch",
    "onnx2torch": "torch",
    "timm": "timm",
    "tensorflow": "tensorflow",
    "tf2onnx": "tensorflow",
    "tensorrt": "tensorrt",
    "pynvml": "gpu",
    "cupy": "gpu",
    "ray": "ray",
    "playwright": "browser",
    "mlperf_loadgen": "loadgen",
}


def lazy_import(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = LAZY_PACKAGES.get(top)
        hint = f"pip install 'mlms_ir[{extra}]'" if extra else f"pip install {top}"
        raise MissingExtraError(f"{module} is not installed ({exc}); install it with: {hint}") from exc


def onnxruntime() -> ModuleType:
    """onnxruntime, its default logger set to fatal only: its failures reach the user as our one
    error line (from the exception it raises), not also as its own coloured log lines on stderr."""
    ort = lazy_import("onnxruntime")
    ort.set_default_logger_severity(4)
    return ort
