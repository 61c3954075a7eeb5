"""The public exception hierarchy.

Every error a user can cause (a bad file, a bad binding, an unknown device name) raises a
subclass of :class:`MlmsIrError` whose message is one plain sentence: what is wrong, where,
and how to fix it. The CLI prints that sentence and exits with status 2. Any other exception
is a bug in mlms_ir.
"""

from __future__ import annotations


class MlmsIrError(Exception):
    """Base class of every error a user can cause."""

    #: The command line's exit status for this error.
    exit_code = 2


class ModelLoadError(MlmsIrError):
    """The model file cannot be read or is not an ONNX model (missing, empty, truncated, corrupt)."""


class ExternalDataError(ModelLoadError):
    """External weight data is missing, too short, or points outside the model's folder."""


class InvalidModelError(MlmsIrError):
    """The file is ONNX, but its graph is malformed (dangling inputs, cycles, bad attributes...)."""


class UnsupportedOpsetError(InvalidModelError):
    """The model uses an opset or IR version newer than the installed onnx package knows."""


class ShapeBindingError(MlmsIrError):
    """A shape binding (``--input-shape``, ``--batch``, ``--dims``) is malformed or does not fit."""


class FormulaError(MlmsIrError):
    """A question asked of the analysis' formulas cannot be answered as given (``--solve``,
    ``--sweep-dim``): an unknown metric or unit, a malformed range, or dims left free."""


class UnknownDeviceError(MlmsIrError):
    """A roofline device name or spec is not known or malformed."""


class MissingExtraError(MlmsIrError):
    """An optional dependency is not installed; the message names the extra to install."""


class CountersUnavailableError(MlmsIrError):
    """GPU hardware counters cannot be collected here: Nsight Compute (``ncu``) is missing, no CUDA
    GPU is visible to torch, the user may not read the GPU's performance counters
    (``ERR_NVGPUCTRPERM``), or ``ncu`` failed or timed out; the message says which and how to fix it."""


__all__ = [
    "CountersUnavailableError",
    "ExternalDataError",
    "FormulaError",
    "InvalidModelError",
    "MissingExtraError",
    "MlmsIrError",
    "ModelLoadError",
    "ShapeBindingError",
    "UnknownDeviceError",
    "UnsupportedOpsetError",
]
