"""The public exception hierarchy.

Every error a user can cause (a bad file, a bad binding, an unknown device name) raises a
subclass of :class:`MlmsIrError` whose message is one plain sentence: what is wrong, where,
and how to fix it. The CLI prints that sentence and exits with status 2. Any other exception
is a bug in mlms_ir. Every such class is defined here, so this module is the whole hierarchy
(the modules that raise them import them from here).
"""

from __future__ import annotations


class MlmsIrError(Exception):
    """Base class of every error a user can cause."""

    #: The command line's exit status for this error.
    exit_code = 2


class UsageError(MlmsIrError):
    """A command line the verb cannot take (an unknown flag or command, a value too many): nothing
    has run, nothing is recorded."""


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


class MemoryBudgetError(MlmsIrError):
    """Something a model or a file declares (an input's size, an array's header) would take more
    memory than the budget (``--max-memory``, ``$MLMS_IR_MAX_MEMORY``; by default three quarters
    of the machine's memory): refused before anything is allocated."""


class ReportInputError(MlmsIrError):
    """A result file given to a report or a comparison (a ``profile``, ``diverge``, ``run`` or
    counters JSON) cannot be read, is not what that command writes, or is of another model."""


class DatasetError(MlmsIrError):
    """A data set cannot be found or read: a missing or malformed file, a wrong layout."""


class SweepSpecError(MlmsIrError):
    """A sweep spec that cannot be read or is not what it should be."""


class StoreError(MlmsIrError):
    """The results store cannot be opened, read or written, or a run id is unknown."""


class ConversionError(MlmsIrError):
    """A model could not be converted to ONNX, or the ONNX it gave does not compute what the source does."""


class BackendError(MlmsIrError):
    """A backend cannot run here or failed on a model (the message says which and why)."""


class BackendUnavailableError(BackendError):
    """The backend or device is not usable on this machine (missing extra, no GPU...)."""


class FeedError(BackendError):
    """Feeds do not match the model's inputs (names, dtypes or shapes)."""


class AgentTimeoutError(BackendError):
    """A framework agent's worker process ran past its timeout and was killed."""


class AgentCrashError(BackendError):
    """A framework agent's worker process died (non-zero exit, signal) or wrote no result."""


class UnknownModelError(MlmsIrError):
    """No model of the zoo has this name."""


class ManifestError(MlmsIrError):
    """A zoo manifest file is malformed (a bug in the shipped data, or a hand-edited file)."""


class DownloadError(MlmsIrError):
    """A download failed (network, HTTP status) or its content does not have the expected hash."""


class WeightsUnavailableError(MlmsIrError):
    """A zoo model's published weights cannot be downloaded by mlms_ir (timm's live on the Hugging Face hub)."""


__all__ = [
    "AgentCrashError",
    "AgentTimeoutError",
    "BackendError",
    "BackendUnavailableError",
    "ConversionError",
    "CountersUnavailableError",
    "DatasetError",
    "DownloadError",
    "ExternalDataError",
    "FeedError",
    "FormulaError",
    "InvalidModelError",
    "MemoryBudgetError",
    "ManifestError",
    "MissingExtraError",
    "MlmsIrError",
    "ModelLoadError",
    "ReportInputError",
    "ShapeBindingError",
    "StoreError",
    "SweepSpecError",
    "UnknownDeviceError",
    "UnknownModelError",
    "UnsupportedOpsetError",
    "UsageError",
    "WeightsUnavailableError",
]
