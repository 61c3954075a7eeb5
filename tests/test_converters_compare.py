"""The output check all converters share (``mlms_ir.comparator``): no framework needed."""

from __future__ import annotations

import numpy as np
import pytest

from mlms_ir.converters import ConversionError
from mlms_ir.comparator import check_close, check_same_shape


class _Mine(Exception):
    """A converter's own error type."""


def close(ref, got, **kw) -> float:
    kw = {"batch": 2, "atol": 1e-4, "rtol": 1e-3, "reference": "torch", "error": ConversionError, **kw}
    return check_close("y", np.asarray(ref), np.asarray(got), **kw)


def test_returns_the_largest_absolute_error():
    # |1.00005 - 1| = 5e-5 and |2.001 - 2| = 1e-3; the tolerance at 2 is 1e-4 + 1e-3*2 = 2.1e-3
    assert close([1.0, 2.0], [1.00005, 2.001]) == pytest.approx(1e-3)
    assert close([3, 4], [3, 4]) == 0.0  # ints, in float64


def test_tolerance_boundary_uses_the_reference_magnitude():
    # atol 0.5 + rtol 0.25*|ref|: at ref = -4 that is 0.5 + 1.0 = 1.5 (values exact in binary)
    assert close([-4.0], [-2.5], atol=0.5, rtol=0.25) == 1.5  # exactly at the bound passes
    with pytest.raises(ConversionError, match=r"by up to 1\.5 .*tolerance 0\.5 \+ 0\.25\*\|ref\|"):
        close([-2.5], [-4.0], atol=0.5, rtol=0.25)  # |ref| is 2.5 now: bound 1.125, not the converted side's 1.5
    with pytest.raises(ConversionError, match="1 of 1 elements"):
        close([-4.0], [-2.4375], atol=0.5, rtol=0.25)  # 1.5625 > 1.5


def test_nan_on_both_sides_is_equal_on_one_side_infinite():
    assert close([1.0, np.nan], [1.0, np.nan]) == 0.0
    for ref, got in (([1.0, np.nan], [1.0, 0.0]), ([1.0, 0.0], [1.0, np.nan])):
        with pytest.raises(ConversionError, match=r"by up to inf in output 'y' at batch 2 \(1 of 2 elements"):
            close(ref, got)
    with pytest.raises(ConversionError, match="by up to inf"):
        close([np.nan], [1.0], rtol=1e9)  # a NaN reference has no magnitude for rtol to scale


def test_infinities():
    assert close([np.inf, -np.inf, 1.0], [np.inf, -np.inf, 1.0]) == 0.0  # equal infinities: inf - inf is NaN, not an error
    for got in ([-np.inf], [1e300], [np.nan]):
        with pytest.raises(ConversionError, match="by up to inf"):
            close([np.inf], got, rtol=1.0)  # an infinite reference does not widen the tolerance to inf
    with pytest.raises(ConversionError, match="by up to inf"):
        close([1.0], [np.inf])


def test_float16_and_huge_values_do_not_overflow():
    # float16 max 65504: the difference 65504 - (-65504) overflows float16 but not float64
    ref = np.array([65504.0], np.float16)
    with pytest.raises(ConversionError, match=r"by up to 1\.31e\+05"):
        close(ref, -ref)
    assert close(np.array([7], np.uint8), np.array([5], np.uint8), atol=2.0, rtol=0.0) == 2.0  # no uint8 wrap-around to 254


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ConversionError, match=r"^output 'y' has shape \(2, 3\) in the ONNX model but \(3, 2\) in torch \(batch 2\)$"):
        close(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ConversionError, match=r"has shape \(0,\) in the SavedModel but \(1,\) in onnxruntime"):
        close(np.zeros(1), np.zeros(0), converted="the SavedModel", reference="onnxruntime")
    with pytest.raises(_Mine, match=r"has shape \(\) in the ONNX model but \(1,\) in MXNet \(batch 3\)"):
        check_same_shape("y", np.zeros(1), np.float32(0), batch=3, reference="MXNet", error=_Mine)
    check_same_shape("y", np.zeros((2, 1)), np.ones((2, 1)), batch=3, reference="MXNet")


def test_empty_outputs_pass():
    assert close(np.zeros((0, 4)), np.ones((0, 4))) == 0.0
    assert close(np.zeros((0, 4)), np.ones((0, 4)), int8_steps=2) == 0.0


def test_int8_steps_widen_atol_to_the_reference_range():
    ref = np.array([-1.0, 0.0, 1.55])  # range 2.55: one 8-bit step is 2.55/255 = 0.01, two are 0.02
    got = ref + np.array([0.0, 0.0, 0.015])
    with pytest.raises(ConversionError, match="1 of 3 elements"):
        close(ref, got, atol=1e-4, rtol=0.0)
    assert close(ref, got, atol=1e-4, rtol=0.0, int8_steps=2) == pytest.approx(0.015)
    with pytest.raises(ConversionError, match=r"tolerance 0\.02 \(2 int8 steps of the reference's range\) \+ 0\*\|ref\|"):
        close(ref, ref + 0.025, atol=1e-4, rtol=0.0, int8_steps=2)
    # a larger atol is kept (and not said to be widened); non-finite references do not count in the range
    # (one step of the finite range 0.255 is 0.001 < 0.002)
    with pytest.raises(ConversionError, match=r"by up to 0\.005 .*tolerance 0\.002 \+ 0\*\|ref\|\)"):
        close([0.0, 0.255, np.inf], [0.0, 0.26, np.inf], atol=2e-3, rtol=0.0, int8_steps=1)


def test_message_names_everything():
    ref = np.arange(10, dtype=np.float32)
    got = ref.copy()
    got[[2, 7]] += np.float32(0.5)
    with pytest.raises(_Mine) as err:
        check_close("logits", ref, got, batch=3, atol=1e-4, rtol=1e-3, reference="TensorFlow", error=_Mine)
    assert str(err.value) == ("the ONNX model differs from TensorFlow by up to 0.5 in output 'logits' at batch 3 "
                              "(2 of 10 elements beyond the tolerance 0.0001 + 0.001*|ref|)")
    assert not isinstance(err.value, ConversionError)  # the caller's error type, not the default


def test_complex_and_non_numeric_outputs():
    # |(1+1j) - (1+1.5j)| = 0.5
    assert close(np.array([1 + 1j]), np.array([1 + 1.5j]), atol=0.5, rtol=0.0) == 0.5
    with pytest.raises(ConversionError, match=r"by up to 0\.5"):
        close(np.array([1 + 1j]), np.array([1 + 1.5j]), atol=0.4, rtol=0.0)
    assert close(np.array(["a", "b"]), np.array(["a", "b"])) == 0.0
    with pytest.raises(ConversionError, match=r"differs from torch in output 'y' at batch 2 \(<U1 vs <U1, compared exactly\)"):
        close(np.array(["a", "b"]), np.array(["a", "c"]))
