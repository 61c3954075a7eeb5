"""ONNX element types: names and sizes."""

from __future__ import annotations

from onnx import TensorProto

_BITS: dict[int, int] = {
    TensorProto.FLOAT: 32,
    TensorProto.UINT8: 8,
    TensorProto.INT8: 8,
    TensorProto.UINT16: 16,
    TensorProto.INT16: 16,
    TensorProto.INT32: 32,
    TensorProto.INT64: 64,
    TensorProto.BOOL: 8,
    TensorProto.FLOAT16: 16,
    TensorProto.DOUBLE: 64,
    TensorProto.UINT32: 32,
    TensorProto.UINT64: 64,
    TensorProto.COMPLEX64: 64,
    TensorProto.COMPLEX128: 128,
    TensorProto.BFLOAT16: 16,
    TensorProto.FLOAT8E4M3FN: 8,
    TensorProto.FLOAT8E4M3FNUZ: 8,
    TensorProto.FLOAT8E5M2: 8,
    TensorProto.FLOAT8E5M2FNUZ: 8,
    TensorProto.UINT4: 4,
    TensorProto.INT4: 4,
}
for _name, _bits in (("FLOAT4E2M1", 4), ("FLOAT8E8M0", 8), ("UINT2", 2), ("INT2", 2)):
    if hasattr(TensorProto, _name):
        _BITS[getattr(TensorProto, _name)] = _bits

#: Element types that hold real numbers (weights of these types are parameters).
FLOAT_TYPES: frozenset[int] = frozenset(
    t
    for t in (
        TensorProto.FLOAT,
        TensorProto.FLOAT16,
        TensorProto.DOUBLE,
        TensorProto.BFLOAT16,
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
        getattr(TensorProto, "FLOAT4E2M1", -1),
    )
    if t >= 0
)

#: Integer element types used for quantized weights and integer arithmetic.
INT_TYPES: frozenset[int] = frozenset(
    t
    for t in (
        TensorProto.UINT8,
        TensorProto.INT8,
        TensorProto.UINT16,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.UINT4,
        TensorProto.INT4,
    )
)


def dtype_name(elem_type: int) -> str:
    """The lower-case ONNX name of an element type (``float``, ``int64``, ``float16``...)."""
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"unknown({elem_type})"


def dtype_bits(elem_type: int) -> int | None:
    """Bits per element, or None for types with no fixed size (string, undefined)."""
    return _BITS.get(elem_type)


def nbytes(elem_type: int, numel: int) -> int | None:
    """Bytes of ``numel`` elements of ``elem_type`` (sub-byte types round up), or None."""
    bits = _BITS.get(elem_type)
    if bits is None:
        return None
    return (numel * bits + 7) // 8


def np_dtype(elem_type: int):
    """The numpy dtype of an ONNX element type, or None when numpy has none (string...)."""
    import numpy as np
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return None
