"""The backend registry: built-in backends plus any registered under the ``mlms_ir.backends``
entry-point group (``name = package.module:BackendClass``), so a third party can add one.

A backend whose module fails to import is replaced by a stand-in that reports the import error
as its unavailability: one broken optional dependency never breaks the others or the CLI.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib import metadata
from typing import Any

from mlms_ir.backends.base import Availability, Backend, BackendError

log = logging.getLogger(__name__)

GROUP = "mlms_ir.backends"
BUILTIN: dict[str, str] = {
    "ort": "mlms_ir.backends.ort:OrtBackend",
    "reference": "mlms_ir.backends.reference:ReferenceBackend",
    "torch": "mlms_ir.backends.torch_backend:TorchBackend",
    "tensorrt": "mlms_ir.backends.tensorrt:TensorRTBackend",
    "mxnet": "mlms_ir.backends.worker:MXNetBackend",
    "onnx-tf": "mlms_ir.backends.worker:OnnxTfBackend",
    "ort-isolated": "mlms_ir.backends.worker:IsolatedOrtBackend",
}
ALIASES = {"onnxruntime": "ort", "trt": "tensorrt", "ref": "reference", "pytorch": "torch", "onnx_tf": "onnx-tf", "tensorflow": "onnx-tf"}

_cache: dict[str, Backend] = {}


class _Broken(Backend):
    """Stands in for a backend whose module cannot be imported."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.devices = ("cpu", "cuda", "tensorrt")
        self._reason = reason

    def _available_impl(self, device: str, **options: Any) -> Availability:
        return Availability(False, self._reason)

    def _prepare_impl(self, graph, device, **options):  # pragma: no cover - prepare() checks first
        raise BackendError(self._reason)


def _targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    try:
        for ep in metadata.entry_points(group=GROUP):
            targets.setdefault(ep.name, ep.value)
    except Exception as exc:  # noqa: BLE001 - broken metadata must not break the registry
        log.debug("reading entry points failed: %s", exc)
    return targets


def names() -> list[str]:
    """Every backend name known here, built-in first."""
    t = _targets()
    return list(BUILTIN) + sorted(k for k in t if k not in BUILTIN)


def check(wanted: list[str]) -> None:
    """Raise :class:`BackendError` naming the first of ``wanted`` that is no backend, with the known
    names: a mistake in a command line or a sweep spec is reported before anything runs. A known
    backend that cannot run here (a missing package, no GPU, another device) passes: the run
    reports that as unavailability."""
    targets = _targets()
    for name in wanted:
        key = ALIASES.get(str(name).lower(), str(name).lower())
        if key not in targets:
            close = difflib.get_close_matches(key, list(targets) + list(ALIASES), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BackendError(f"unknown backend '{name}'{hint}; known backends: {', '.join(names())}")


def usable(name: str, device: str, **options) -> tuple[Backend | None, str | None]:
    """``(backend, None)`` when ``name`` can run on ``device`` with ``options`` here, else
    ``(None, reason)``: an unknown name, a failed import or a missing runtime/device, each
    reported as unavailability (the row a run or scenario records) rather than raised."""
    try:
        backend = get(name)
    except BackendError as exc:
        return None, str(exc)
    avail = backend.available(device, **options)
    return (backend, None) if avail else (None, avail.reason)


def get(name: str) -> Backend:
    """The backend called ``name`` (or an alias such as ``onnxruntime``)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in _cache:
        return _cache[key]
    targets = _targets()
    if key not in targets:
        raise BackendError(f"unknown backend '{name}'; known backends: {', '.join(names())}")
    module, _, attr = targets[key].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
        backend = cls()
    except Exception as exc:  # noqa: BLE001 - reported as unavailability
        backend = _Broken(key, f"cannot import {module} ({type(exc).__name__}: {exc})")
    _cache[key] = backend
    return backend
