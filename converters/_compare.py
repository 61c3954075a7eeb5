"""The one output check every converter runs: a converted model's output against the source's.

Each converter runs its source (torch, TensorFlow, MXNet, or onnxruntime for ONNX -> SavedModel)
and the converted model on the same inputs, then calls :func:`check_close` on every output pair.
The rule, element by element, is ``|got - ref| <= atol + rtol * |ref|``, with:

* shapes that must match exactly (a mismatch fails before any value is compared);
* NaN on both sides counting as equal, NaN on one side only as an infinite error;
* equal infinities counting as equal, any other difference involving an infinity as infinite;
* ``|ref|`` taken as 0 where the reference is not finite, so an infinite reference never widens
  the tolerance;
* values compared in float64 (complex128 when either side is complex), so integer and float16
  outputs neither overflow nor round; outputs that are not numbers (strings, objects) must be
  exactly equal;
* empty outputs passing trivially.

A failure raises the caller's exception type with one line naming what was converted, the
reference, the largest error, the output, the batch, how many elements fail of how many, and the
tolerance.
"""

from __future__ import annotations

import numpy as np

from mlms_ir.converters import ConversionError
from mlms_ir.harness import abs_diff

#: dtype kinds compared numerically: float, complex, signed and unsigned int, bool.
_NUMERIC_KINDS = "fciub"


def check_same_shape(name: str, ref: np.ndarray, got: np.ndarray, *, batch: int, reference: str,
                     converted: str = "the ONNX model", error: type[Exception] = ConversionError) -> None:
    """Raise ``error`` unless ``got`` has ``ref``'s shape (the first step of :func:`check_close`, alone
    for outputs compared by shape only)."""
    if tuple(np.shape(ref)) != tuple(np.shape(got)):
        raise error(f"output '{name}' has shape {tuple(np.shape(got))} in {converted} but {tuple(np.shape(ref))} in "
                    f"{reference} (batch {batch})")


def check_close(name: str, ref: np.ndarray, got: np.ndarray, *, batch: int, atol: float, rtol: float, reference: str,
                converted: str = "the ONNX model", error: type[Exception] = ConversionError, int8_steps: int = 0) -> float:
    """Check one output of the converted model against the source's; return the largest absolute error.

    Args:
        name: the output's name, as the messages show it.
        ref: the source framework's output (the reference).
        got: the converted model's output.
        batch: the batch size both ran at (for the messages).
        atol: the absolute tolerance.
        rtol: the relative tolerance, a fraction of ``|ref|``.
        reference: what produced ``ref``, for the messages ("torch", "TensorFlow", "MXNet",
            "onnxruntime").
        converted: what produced ``got``, for the messages ("the ONNX model", "the SavedModel").
        error: the exception type to raise (a converter's own error type).
        int8_steps: for int8 (quantized) models, whose kernels may round differently: widen
            ``atol`` to at least this many 8-bit steps of the reference's finite range
            (``int8_steps * (max - min) / 255``).

    Returns:
        The largest ``|got - ref|`` (0.0 for empty outputs; ``inf`` is possible only when the
        tolerance allows it, which a finite tolerance never does).

    Raises:
        error: the shapes differ, or some element is beyond the tolerance.
    """
    ref, got = np.asarray(ref), np.asarray(got)
    check_same_shape(name, ref, got, batch=batch, reference=reference, converted=converted, error=error)
    if ref.size == 0:
        return 0.0
    if ref.dtype.kind not in _NUMERIC_KINDS or got.dtype.kind not in _NUMERIC_KINDS:
        if not np.array_equal(ref, got):
            raise error(f"{converted} differs from {reference} in output '{name}' at batch {batch} "
                        f"({got.dtype} vs {ref.dtype}, compared exactly)")
        return 0.0
    diff = abs_diff(ref, got)  # the same rule as run's verdict
    err = float(diff.max())
    as_type = np.complex128 if "c" in ref.dtype.kind + got.dtype.kind else np.float64
    r = ref.astype(as_type)
    ref_mag = np.abs(r)
    finite = np.isfinite(ref_mag)
    widened = ""
    if int8_steps and finite.any():
        values = ref_mag[finite] if as_type is np.complex128 else r[finite]
        step_tol = int8_steps * float(values.max() - values.min()) / 255.0
        if step_tol > atol:
            atol, widened = step_tol, f" ({int8_steps} int8 steps of the reference's range)"
    bad = diff > atol + rtol * np.where(finite, ref_mag, 0.0)
    if bad.any():
        raise error(f"{converted} differs from {reference} by up to {err:.3g} in output '{name}' at batch {batch} "
                    f"({int(bad.sum())} of {bad.size} elements beyond the tolerance {atol:.3g}{widened} + {rtol:g}*|ref|)")
    return err
