"""The one comparator: whether two backends' (or a framework's and its export's) values agree.

``run``'s output check (:func:`compare_outputs`), ``diverge``'s per-tensor figures
(:func:`tensor_diff`) and every converter's export check (:func:`check_close`) apply one rule,
element by element, with one table of default tolerances (:data:`TOLERANCES`), so two commands
can never disagree about the same pair of values:

* an element is beyond the tolerance when ``|got - ref| > atol + rtol * |ref|``, with ``|ref|``
  taken as 0 where the reference is not finite (an infinite reference never widens it);
* NaN on both sides and equal infinities agree; NaN on one side only, or any other difference
  involving an infinity, is an infinite error;
* numbers (floats, integers, booleans) are compared in float64 (complex128 when either side is
  complex), so float16 and integers neither overflow nor wrap; values that are not numbers
  (strings, objects) must be exactly equal;
* shapes must match; a shape mismatch or a missing output counts every element as beyond.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlms_ir.results.divergence import TensorDiff

#: Default (atol, rtol) by the precision of the values under test: for fp16/bf16 a few units in
#: the last place of the format (2^-10, 2^-7 relative) accumulated over a layer; int8 for
#: quantized kernels. ``run``, ``diverge`` and the converters all start from the fp32 row.
TOLERANCES: dict[str, tuple[float, float]] = {"fp32": (1e-4, 1e-3), "fp16": (1e-3, 1e-2), "bf16": (1e-2, 5e-2),
                                              "int8": (5e-2, 1e-1)}
DEFAULT_ATOL, DEFAULT_RTOL = TOLERANCES["fp32"]

#: dtype kinds compared as numbers, with the tolerance: float, complex, signed and unsigned int, bool.
_NUMERIC_KINDS = "fciub"


def _as_number(a: np.ndarray, complex_: bool) -> np.ndarray:
    return a.astype(np.complex128 if complex_ else np.float64)


def abs_diff(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """``|got - ref|`` element by element, for two numeric arrays of one shape, in float64
    (complex128 when either is complex): equal values (equal infinities too) and NaN on both
    sides give 0, NaN on one side only gives ``inf``."""
    c = "c" in ref.dtype.kind + got.dtype.kind
    r, g = _as_number(ref, c), _as_number(got, c)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities, whose difference is NaN
        diff = np.where(same, 0.0, np.abs(g - r))
    return np.where(np.isnan(diff), np.inf, diff)


def reference_magnitude(ref: np.ndarray) -> np.ndarray:
    """``|ref|`` as the tolerance uses it: 0 where the reference is not finite."""
    mag = np.abs(_as_number(ref, ref.dtype.kind == "c"))
    return np.where(np.isfinite(mag), mag, 0.0)


def beyond_mask(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float, diff: np.ndarray | None = None) -> np.ndarray:
    """The elements of ``got`` beyond the tolerance of ``ref`` (same shape; see the module's rule).
    Values that are not numbers are compared exactly."""
    if any(k not in _NUMERIC_KINDS for k in ref.dtype.kind + got.dtype.kind):
        return np.asarray(ref != got)
    d = abs_diff(ref, got) if diff is None else diff
    return d > atol + rtol * reference_magnitude(ref)


#: ONNX element types computed in a reduced float precision, by the precision they compute in.
_REDUCED = {10: "fp16", 16: "bf16"}  # TensorProto.FLOAT16, TensorProto.BFLOAT16


def model_precision(graph: Any) -> str:
    """The float precision a model computes in as it is: ``fp16`` or ``bf16`` when a node of the
    main graph writes such a tensor (bf16 where both occur: the coarser), else ``fp32``. A model
    exported in half precision is compared with half precision's tolerances: its backends round
    differently by a few units of the last place of fp16, not of fp32."""
    found = {_REDUCED[t.elem_type] for n in graph.nodes for o in n.outputs if o
             for t in (graph.tensor(o),) if t is not None and t.elem_type in _REDUCED}
    return "bf16" if "bf16" in found else "fp16" if found else "fp32"


def tolerances(precision: str = "fp32", atol: float | None = None, rtol: float | None = None) -> tuple[float, float]:
    """(atol, rtol): the given ones, else :data:`TOLERANCES`' defaults for ``precision``."""
    if precision not in TOLERANCES:
        raise ValueError(f"precision must be one of {', '.join(TOLERANCES)}, not '{precision}'")
    d_atol, d_rtol = TOLERANCES[precision]
    return (d_atol if atol is None else float(atol)), (d_rtol if rtol is None else float(rtol))


# ---------------------------------------------------------------------------------------------- run
def compare_outputs(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], *, atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL) -> dict[str, Any]:
    """``other``'s outputs against ``reference``'s (``run``'s check).

    Returns ``max_abs_diff`` and ``max_rel_diff`` (infinite when a shape differs, an output is
    missing, or a value is not finite on one side only; None when no element was there to
    measure: every output compared is empty), ``outputs_compared``, and the verdict:
    ``beyond_tolerance``, the number of elements beyond the tolerance, of ``elements_compared``,
    and ``agree`` (none beyond). Outputs that are sequences, maps or optionals (lists, dicts,
    None) are compared by :func:`compare_values`.
    """
    max_abs = max_rel = 0.0
    compared = beyond = elements = 0
    measured = False  # an element (or a mismatch) gave the figures: else they are None, not 0
    for name, ref in reference.items():
        if is_structured(ref) or (name in other and is_structured(other[name])):  # a sequence, map or optional
            part = compare_values(ref, other.get(name, MISSING), atol=atol, rtol=rtol)
            if part["max_abs_diff"] is not None:
                max_abs, max_rel = max(max_abs, part["max_abs_diff"]), max(max_rel, part["max_rel_diff"])
                measured = True
            compared += name in other
            beyond += part["beyond_tolerance"]
            elements += part["elements_compared"]
            continue
        a = np.asarray(ref)
        if name not in other or np.asarray(other[name]).shape != a.shape:
            b_size = np.asarray(other[name]).size if name in other else 0
            max_abs = max_rel = math.inf
            measured = True
            beyond += max(a.size, b_size, 1)
            elements += max(a.size, b_size)
            continue
        b = np.asarray(other[name])
        compared += 1
        elements += a.size
        if a.size == 0:
            continue
        measured = True
        if a.dtype.kind not in _NUMERIC_KINDS or b.dtype.kind not in _NUMERIC_KINDS:
            differ = int(np.count_nonzero(a != b))
            beyond += differ
            if differ:
                max_abs = max_rel = math.inf
            continue
        diff = abs_diff(a, b)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(relative_error(diff, _as_number(a, a.dtype.kind == "c")).max()))
        beyond += int(beyond_mask(a, b, atol, rtol, diff).sum())
    if not measured:
        max_abs = max_rel = None
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "outputs_compared": compared,
            "beyond_tolerance": beyond, "elements_compared": elements, "agree": beyond == 0}


#: Stands for a value one side does not have (:func:`compare_values`).
MISSING = object()


def is_structured(value: object) -> bool:
    """A sequence (list), a map (dict) or an empty optional (None): values :func:`compare_values`
    compares (see :mod:`mlms_ir.values`); anything else is a tensor."""
    return value is None or isinstance(value, (list, tuple, dict))


def value_size(value: object) -> int:
    """Elements of the tensors in a value (0 for an empty optional or a missing value)."""
    if value is None or value is MISSING:
        return 0
    if isinstance(value, (list, tuple)):
        return sum(value_size(x) for x in value)
    if isinstance(value, dict):
        return sum(value_size(x) for x in value.values())
    return int(np.asarray(value).size)


def value_pairs(reference: object, other: object) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """Walk two values side by side: (the tensor pairs at matching places, the parts that do not
    match), each as (path, reference's, other's); a path is ``""`` for the value itself, ``[1]``
    for a sequence's element, ``['key']`` for a map's entry. Sequences match when their lengths
    do, maps key by key, two empty optionals match with nothing to compare; a list against an
    array (a stacked sequence), a value against None or against :data:`MISSING` does not match."""
    pairs: list[tuple[str, Any, Any]] = []
    unmatched: list[tuple[str, Any, Any]] = []

    def walk(path: str, r: object, o: object) -> None:
        if isinstance(r, (list, tuple)) and isinstance(o, (list, tuple)) and len(r) == len(o):
            for k, (x, y) in enumerate(zip(r, o)):
                walk(f"{path}[{k}]", x, y)
        elif isinstance(r, dict) and isinstance(o, dict):
            for key in list(r) + [k for k in o if k not in r]:
                walk(f"{path}[{key!r}]", r.get(key, MISSING), o.get(key, MISSING))
        elif r is None and o is None:
            pass
        elif is_structured(r) or is_structured(o) or r is MISSING or o is MISSING:
            unmatched.append((path, r, o))
        else:
            pairs.append((path, r, o))

    walk("", reference, other)
    return pairs, unmatched


def compare_values(reference: object, other: object, *, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> dict[str, Any]:
    """Two values that may be sequences, maps or optionals, in :func:`compare_outputs`' terms:
    sequences element by element (their lengths must match), maps key by key (their keys must
    match), optionals as their values (two empty ones agree, an empty one and a value do not),
    the tensors inside as :func:`compare_outputs` compares tensors. A part one side lacks or has
    of another kind (a list against an array, a stacked sequence) counts all its elements (at
    least 1) as beyond the tolerance, with an infinite error."""
    pairs, unmatched = value_pairs(reference, other)
    res = compare_outputs({p: r for p, r, _ in pairs}, {p: o for p, _, o in pairs}, atol=atol, rtol=rtol)
    if unmatched:
        n = sum(max(value_size(r), value_size(o), 1) for _, r, o in unmatched)
        res["max_abs_diff"] = res["max_rel_diff"] = math.inf
        res["beyond_tolerance"] += n
        res["elements_compared"] += n
        res["agree"] = False
    return res


def value_diffs(name: str, ref: object, test: object, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> list[TensorDiff]:
    """``diverge``'s figures for a value that may be a sequence, map or optional: one
    :func:`tensor_diff` per tensor inside, named ``name[0]``, ``name['key']``; a part that does not
    match (:func:`value_pairs`) is one diff that exceeds, with an infinite error and a note saying
    what each side has; two empty optionals give none. A tensor gives ``[tensor_diff(name, ...)]``."""
    from mlms_ir.values import describe

    pairs, unmatched = value_pairs(ref, test)
    out = [tensor_diff(f"{name}{p}", r, o, atol, rtol) for p, r, o in pairs]
    for p, r, o in unmatched:
        what = lambda v: "nothing" if v is MISSING else describe(v)  # noqa: E731
        out.append(TensorDiff(tensor=f"{name}{p}", elements=max(value_size(r), value_size(o), 1), max_abs=math.inf,
                              max_rel=math.inf, mean_abs=None, rmse=None, cosine=None, snr_db=None, outside_share=1.0,
                              nan_ref=0, nan_test=0, inf_ref=0, inf_test=0, exceeds=True,
                              note=f"{what(o)} where the reference has {what(r)}"))
    return out


# ---------------------------------------------------------------------------------------------- diverge
def relative_error(diff: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``diff / |ref|`` element by element: 0 where the difference is 0, ``inf`` where the
    reference is 0 (or not finite) and the difference is not (as numpy's ``assert_allclose``
    reports it), never a huge quotient by a tiny floor."""
    mag = np.abs(ref)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rel = np.where(diff == 0, 0.0, np.where((mag > 0) & np.isfinite(mag), diff / np.where(mag > 0, mag, 1.0), np.inf))
    return rel


def tensor_diff(name: str, ref: np.ndarray, test: np.ndarray, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> TensorDiff:
    """Max abs/rel error, mean abs error, RMSE, cosine similarity, SNR (dB), the share of elements
    beyond the tolerance and NaN/Inf counts of ``test`` against ``ref`` (``diverge``'s figures).

    An element that is not finite on one side only (an overflow to inf, a NaN) is an infinite
    error: ``max_abs``, ``max_rel``, ``mean_abs`` and ``rmse`` are ``inf``, the SNR ``-inf``,
    the cosine undefined (None). NaN on both sides and equal infinities agree; the other figures
    are of the finite elements, and the cosine is None where either side's finite elements are all
    zero (no angle). An empty tensor has no figures (None) and does not exceed. ``max_rel`` is
    ``inf`` where the reference is 0 and the value is not. No numpy warning is printed."""
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.shape != test.shape:
        return TensorDiff(name, int(ref.size), None, None, None, None, None, None, 1.0, 0, 0, 0, 0, True,
                          f"shape {tuple(test.shape)} differs from the reference's {tuple(ref.shape)}")
    if ref.dtype.kind not in _NUMERIC_KINDS or test.dtype.kind not in _NUMERIC_KINDS or "c" in ref.dtype.kind + test.dtype.kind:
        differ = int(np.count_nonzero(beyond_mask(ref, test, atol, rtol))) if ref.size else 0
        share = differ / ref.size if ref.size else 0.0
        return TensorDiff(name, int(ref.size), math.inf if differ else 0.0, None, None, None, None, None, share, 0, 0, 0, 0,
                          differ > 0, "compared element by element (not real numbers): no error statistics")
    if ref.size == 0:  # nothing to measure: no figure, and nothing beyond the tolerance
        return TensorDiff(name, 0, None, None, None, None, None, None, 0.0, 0, 0, 0, 0, False, "empty: no elements")
    a = ref.astype(np.float64).ravel()
    b = test.astype(np.float64).ravel()
    nan_a, nan_b = int(np.isnan(a).sum()), int(np.isnan(b).sum())
    inf_a, inf_b = int(np.isinf(a).sum()), int(np.isinf(b).sum())
    diff = abs_diff(a, b)  # inf where one side only is not finite, 0 where both are NaN or equal
    outside = int(np.count_nonzero(beyond_mask(a, b, atol, rtol, diff)))
    with np.errstate(all="ignore"):
        max_abs = float(diff.max())
        max_rel = float(relative_error(diff, a).max())
        mean_abs = float(diff.mean())
        rmse = float(math.sqrt(float(np.mean(diff * diff))))
        if math.isinf(max_abs):  # an overflow or a NaN on one side: no angle, infinite noise
            cosine, snr = None, -math.inf
        else:
            finite = np.isfinite(a) & np.isfinite(b)
            af, bf = a[finite], b[finite]
            na, nb = float(np.linalg.norm(af)), float(np.linalg.norm(bf))
            # the angle between two vectors, one of them zero (or no finite element at all), is undefined
            cosine = float(np.dot(af, bf) / (na * nb)) if na > 0 and nb > 0 else None
            noise = float(np.sum(diff[finite] ** 2))
            signal = float(np.sum(af * af))
            snr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return TensorDiff(name, int(a.size), max_abs, max_rel, mean_abs, rmse, cosine, snr, outside / a.size, nan_a, nan_b,
                      inf_a, inf_b, outside > 0)


# ---------------------------------------------------------------------------------------------- converters
def check_same_shape(name: str, ref: np.ndarray, got: np.ndarray, *, batch: int, reference: str,
                     converted: str = "the ONNX model", error: type[Exception] = ValueError) -> None:
    """Raise ``error`` unless ``got`` has ``ref``'s shape (the first step of :func:`check_close`, alone
    for outputs compared by shape only)."""
    if tuple(np.shape(ref)) != tuple(np.shape(got)):
        raise error(f"output '{name}' has shape {tuple(np.shape(got))} in {converted} but {tuple(np.shape(ref))} in "
                    f"{reference} (batch {batch})")


def check_close(name: str, ref: np.ndarray, got: np.ndarray, *, batch: int, atol: float, rtol: float, reference: str,
                converted: str = "the ONNX model", error: type[Exception] = ValueError, int8_steps: int = 0) -> float:
    """Check one output of a converted model against the source's; return the largest absolute error.

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
        The largest ``|got - ref|`` (0.0 for empty or exactly compared outputs).

    Raises:
        error: the shapes differ, or some element is beyond the tolerance (one line naming the
        output, the batch, the largest error, how many elements fail of how many, and the tolerance).
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
    diff = abs_diff(ref, got)
    err = float(diff.max())
    widened = ""
    c = "c" in ref.dtype.kind + got.dtype.kind
    r = _as_number(ref, c)
    finite = np.isfinite(np.abs(r))
    if int8_steps and finite.any():
        values = np.abs(r[finite]) if c else r[finite]
        step_tol = int8_steps * float(values.max() - values.min()) / 255.0
        if step_tol > atol:
            atol, widened = step_tol, f" ({int8_steps} int8 steps of the reference's range)"
    bad = beyond_mask(ref, got, atol, rtol, diff)
    if bad.any():
        raise error(f"{converted} differs from {reference} by up to {err:.3g} in output '{name}' at batch {batch} "
                    f"({int(bad.sum())} of {bad.size} elements beyond the tolerance {atol:.3g}{widened} + {rtol:g}*|ref|)")
    return err
