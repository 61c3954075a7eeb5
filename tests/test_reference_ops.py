"""The reference backend's replacements for ops onnx's reference evaluator computes differently
from ONNX's definition (mlms_ir.backends.reference_ops): for each, a single-node model whose value
is derived by hand from the operator's text (and checked against onnxruntime where it implements
the op the same), the backend giving it, and the bare ``onnx.reference.ReferenceEvaluator`` giving
something else (skipped once an onnx release fixes it)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.base import BackendError
from mlms_ir.oracle import exact_outputs


def _model(op, feeds, outputs, opset, inits=None, **attrs):
    """A single-node model: ``feeds`` (name -> array) are graph inputs, ``inits`` initializers,
    ``outputs`` (name, element type) its outputs."""
    inits = inits or {}
    names = [*feeds, *inits]
    node = helper.make_node(op, names, [n for n, _ in outputs], **attrs)
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in outputs]
    graph = helper.make_graph([node], "g", ins, outs, [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _reference(model, feeds, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with registry.get("reference").prepare(mlms_ir.load(str(path)), "cpu") as sess:
        out = sess.run(feeds)
    return [out[o.name] for o in model.graph.output]


def _bare(model, feeds):
    try:
        with np.errstate(all="ignore"):
            return ReferenceEvaluator(model).run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - the bug may be a failure
        return exc


def _differs(bare, expected):
    """Skip unless the bare evaluator's result differs from ``expected`` (a list of arrays)."""
    if isinstance(bare, Exception):
        return
    for b, e in zip(bare, expected):
        if np.asarray(b).shape != np.asarray(e).shape or np.asarray(b).dtype != np.asarray(e).dtype:
            return
        if not np.allclose(np.asarray(b, dtype=np.float64), np.asarray(e, dtype=np.float64), atol=1e-6):
            return
    pytest.skip(f"the installed onnx ({onnx.__version__})'s reference evaluator computes this correctly now")


def _ort(model, feeds):
    from mlms_ir._lazy import onnxruntime

    sess = onnxruntime().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _check(model, feeds, expected, tmp_path, ort=True, rtol=1e-6):
    got = _reference(model, feeds, tmp_path)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-6)
    if ort:
        for o, e in zip(_ort(model, feeds), expected):
            np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-6)
    _differs(_bare(model, feeds), expected)


def test_nll_loss_mean_leaves_ignored_targets_out(tmp_path):
    x = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32))
    t = np.array([0, -1, 2], dtype=np.int64)
    m = _model("NegativeLogLikelihoodLoss", {"x": x, "t": t}, [("y", TensorProto.FLOAT)], 13, ignore_index=-1)
    expected = np.array(-(x[0, 0] + x[2, 2]) / 2, dtype=np.float32)  # 2 targets not ignored, not 3
    _check(m, {"x": x, "t": t}, [expected], tmp_path)


@pytest.mark.parametrize("opset", [1, 11])
def test_hardmax_before_13_takes_the_flattened_trailing_dims(opset, tmp_path):
    x = np.array([[[1, 5, 2], [7, 0, 3]], [[9, 1, 1], [2, 8, 0]]], dtype=np.float32)  # (2, 2, 3), axis 1
    m = _model("Hardmax", {"x": x}, [("y", TensorProto.FLOAT)], opset)
    flat = x.reshape(2, 6)
    expected = np.zeros_like(flat)
    expected[np.arange(2), flat.argmax(axis=1)] = 1  # the first maximum of each row of 6
    _check(m, {"x": x}, [expected.reshape(x.shape)], tmp_path)
    exact, method = exact_outputs(m, {"x": x}, ["y"])  # not converted to 13: the converter drops the 2-D view
    np.testing.assert_array_equal(exact["y"], expected.reshape(x.shape))
    assert f"opset {opset}" in method


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_11_takes_the_flattened_trailing_dims(op, tmp_path):
    x = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(np.float32)
    m = _model(op, {"x": x}, [("y", TensorProto.FLOAT)], 11)  # axis 1: rows of 12
    rows = x.astype(np.float64).reshape(2, 12)
    shifted = rows - rows.max(axis=1, keepdims=True)
    log_sm = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = (np.exp(log_sm) if op == "Softmax" else log_sm).reshape(x.shape).astype(np.float32)
    _check(m, {"x": x}, [expected], tmp_path, rtol=1e-5)


def test_log_softmax_does_not_underflow(tmp_path):
    x = np.array([[0.0, -200.0, 1.0]], dtype=np.float32)
    m = _model("LogSoftmax", {"x": x}, [("y", TensorProto.FLOAT)], 13)
    lse = 1.0 + np.log(np.exp(-1.0) + np.exp(-201.0) + 1.0)  # log(sum(exp(x))), by hand
    _check(m, {"x": x}, [(x.astype(np.float64) - lse).astype(np.float32)], tmp_path)  # -201.31, not -inf


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 2, 2)])
def test_global_max_pool_reduces_every_spatial_dim(shape, tmp_path):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    m = _model("GlobalMaxPool", {"x": x}, [("y", TensorProto.FLOAT)], 22)
    expected = x.max(axis=tuple(range(2, len(shape))), keepdims=True)
    _check(m, {"x": x}, [expected], tmp_path)


def test_lp_normalization_p1_divides_by_the_sum_of_absolute_values(tmp_path):
    x = np.array([[1.0, -2.0, 3.0], [-1.0, -1.0, 2.0]], dtype=np.float32)
    m = _model("LpNormalization", {"x": x}, [("y", TensorProto.FLOAT)], 22, p=1, axis=1)
    expected = x / np.abs(x).sum(axis=1, keepdims=True)
    _check(m, {"x": x}, [expected], tmp_path)
    exact, _ = exact_outputs(m, {"x": x}, ["y"])  # the arbiter's exact result too
    np.testing.assert_allclose(exact["y"], expected.astype(np.float64), rtol=1e-6)


def test_layer_normalization_gives_mean_and_inv_std_dev_in_stash_type(tmp_path):
    x = np.array([[1.0, 2.0, 4.0, 7.0], [0.5, -1.0, 3.0, 2.0]], dtype=np.float16)
    s = np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float16)
    m = _model("LayerNormalization", {"x": x}, [("y", TensorProto.FLOAT16), ("mean", TensorProto.FLOAT),
               ("inv", TensorProto.FLOAT)], 17, inits={"s": s}, axis=-1)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(axis=1, keepdims=True) + 1e-5)
    y = ((x64 - mean) * inv * s.astype(np.float64)).astype(np.float16)
    _check(m, {"x": x}, [y, mean.astype(np.float32), inv.astype(np.float32)], tmp_path, rtol=1e-3)


def test_unique_unsorted_along_an_axis(tmp_path):
    x = np.array([[3, 1, 3, 2], [0, 5, 0, 4]], dtype=np.int64)  # columns 0 and 2 are equal
    outs = [("y", TensorProto.INT64), ("i", TensorProto.INT64), ("inv", TensorProto.INT64), ("c", TensorProto.INT64)]
    m = _model("Unique", {"x": x}, outs, 11, axis=1, sorted=0)
    expected = [x[:, [0, 1, 3]], np.array([0, 1, 3]), np.array([0, 1, 0, 2]), np.array([2, 1, 1])]
    _check(m, {"x": x}, expected, tmp_path)
    x = np.array([[1, 1], [2, 2], [3, 3]], dtype=np.int64)  # onnx 1.23's evaluator: [[1, 1]], rows not columns
    m = _model("Unique", {"x": x}, outs, 11, axis=1, sorted=0)
    _check(m, {"x": x}, [x[:, :1], np.array([0]), np.array([0, 0]), np.array([2])], tmp_path)


def test_unique_unsorted_without_axis_flattens(tmp_path):
    x = np.array([[2, 1], [2, 0]], dtype=np.int64)
    outs = [("y", TensorProto.INT64), ("i", TensorProto.INT64), ("inv", TensorProto.INT64), ("c", TensorProto.INT64)]
    m = _model("Unique", {"x": x}, outs, 11, sorted=0)
    expected = [np.array([2, 1, 0]), np.array([0, 1, 3]), np.array([0, 1, 0, 2]), np.array([2, 1, 1])]
    _check(m, {"x": x}, expected, tmp_path)


@pytest.mark.parametrize("m_rows", [3, 2])
def test_matmul_integer_subtracts_the_per_row_zero_point_along_m(m_rows, tmp_path):
    a = np.arange(3 * m_rows, dtype=np.uint8).reshape(m_rows, 3) + 10
    b = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)
    za = np.array([1, 2, 3][:m_rows], dtype=np.uint8)
    m = _model("MatMulInteger", {"a": a, "b": b}, [("y", TensorProto.INT32)], 10, inits={"za": za})
    expected = (a.astype(np.int32) - za.astype(np.int32)[:, None]) @ b.astype(np.int32)
    _check(m, {"a": a, "b": b}, [expected.astype(np.int32)], tmp_path, ort=False)  # onnxruntime: scalar zero points only


def test_reduce_sum_square_keeps_int32(tmp_path):
    x = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32)
    m = _model("ReduceSumSquare", {"x": x}, [("y", TensorProto.INT32)], 18, keepdims=0)
    _check(m, {"x": x}, [np.array(91, dtype=np.int32)], tmp_path)
    m = _model("ReduceSumSquare", {"x": x}, [("y", TensorProto.INT32)], 13, axes=[1])
    _check(m, {"x": x}, [np.array([[14], [77]], dtype=np.int32)], tmp_path)


@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 4, 3)])
def test_lrn_sums_over_the_channel_window(shape, tmp_path):
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    m = _model("LRN", {"x": x}, [("y", TensorProto.FLOAT)], 13, size=3, alpha=0.1, beta=0.8, bias=2.0)
    sq = x.astype(np.float64) ** 2
    total = np.stack([sq[:, max(0, c - 1):c + 2].sum(axis=1) for c in range(shape[1])], axis=1)  # channels c-1..c+1
    expected = (x / (2.0 + 0.1 / 3 * total) ** 0.8).astype(np.float32)
    _check(m, {"x": x}, [expected], tmp_path, ort=len(shape) == 4, rtol=1e-5)  # onnxruntime: 4-D only


def _naive_max_pool(x, kernel, strides, dil, begin, out, storage_order=0):
    """MaxPool of a 4-D input by its definition, one window at a time (pads excluded)."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, *out), dtype=x.dtype)
    idx = np.zeros((n, c, *out), dtype=np.int64)
    for b, ch, i, j in np.ndindex(n, c, *out):
        best = None
        for ki, kj in np.ndindex(*kernel):
            r, q = i * strides[0] - begin[0] + ki * dil[0], j * strides[1] - begin[1] + kj * dil[1]
            if 0 <= r < h and 0 <= q < w and (best is None or x[b, ch, r, q] > best[0]):
                best = (x[b, ch, r, q], r, q)
        y[b, ch, i, j] = best[0]
        spatial = best[1] * w + best[2] if not storage_order else best[2] * h + best[1]
        idx[b, ch, i, j] = (b * c + ch) * h * w + spatial
    return y, idx


def test_max_pool_asymmetric_pads_without_strides(tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32)
    # pads: x1_begin=1, x2_begin=0, x1_end=2, x2_end=1: a 7 x 5 output (onnx 1.23's evaluator gives 5 x 7)
    m = _model("MaxPool", {"x": x}, [("y", TensorProto.FLOAT)], 12, kernel_shape=[3, 3], pads=[1, 0, 2, 1])
    y, _ = _naive_max_pool(x, (3, 3), (1, 1), (1, 1), (1, 0), (6 + 3 - 3 + 1, 6 + 1 - 3 + 1))
    _check(m, {"x": x}, [y], tmp_path)
    exact, _ = exact_outputs(m, {"x": x}, ["y"])  # the arbiter's exact result too
    np.testing.assert_array_equal(exact["y"], y.astype(np.float64))


def test_max_pool_indices_without_strides_count_in_the_input(tmp_path):
    x = np.random.default_rng(2).standard_normal((2, 1, 3, 3)).astype(np.float32)
    m = _model("MaxPool", {"x": x}, [("y", TensorProto.FLOAT), ("i", TensorProto.INT64)], 12, kernel_shape=[2, 2],
               pads=[1, 1, 1, 1])
    y, idx = _naive_max_pool(x, (2, 2), (1, 1), (1, 1), (1, 1), (4, 4))
    _check(m, {"x": x}, [y, idx], tmp_path)


def test_max_pool_same_lower_has_ceil_n_over_stride_outputs(tmp_path):
    x = np.random.default_rng(3).standard_normal((1, 1, 5, 5)).astype(np.float32)
    m = _model("MaxPool", {"x": x}, [("y", TensorProto.FLOAT)], 12, kernel_shape=[2, 2], strides=[2, 2],
               auto_pad="SAME_LOWER")
    # ceil(5/2) = 3 outputs; pad (3-1)*2 + 2 - 5 = 1, at the beginning for SAME_LOWER
    y, _ = _naive_max_pool(x, (2, 2), (2, 2), (1, 1), (1, 1), (3, 3))
    _check(m, {"x": x}, [y], tmp_path)
    exact, _ = exact_outputs(m, {"x": x}, ["y"])
    np.testing.assert_array_equal(exact["y"], y.astype(np.float64))


def test_max_pool_same_upper_with_dilation(tmp_path):
    """ONNX pads for the dilated window; onnxruntime 1.32 leaves the dilation out (the ort
    backend refuses that configuration)."""
    x = np.random.default_rng(4).standard_normal((1, 1, 6, 5)).astype(np.float32)
    m = _model("MaxPool", {"x": x}, [("y", TensorProto.FLOAT)], 12, kernel_shape=[2, 2], dilations=[2, 2],
               auto_pad="SAME_UPPER")
    # extent 3: total pad 2 per axis, 1 at the beginning
    y, _ = _naive_max_pool(x, (2, 2), (1, 1), (2, 2), (1, 1), (6, 5))
    np.testing.assert_array_equal(_reference(m, {"x": x}, tmp_path)[0], y)
    path = tmp_path / "m.onnx"
    with pytest.raises(BackendError, match="dilation"):
        registry.get("ort").prepare(mlms_ir.load(str(path)), "cpu")


def test_batch_normalization_9_follows_the_formula(tmp_path):
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 2)).astype(np.float32)
    s, b = np.array([1.0, 2.0, 0.5], np.float32), np.array([0.0, 1.0, -1.0], np.float32)
    mean, var = np.array([3.0, -2.0, 0.5], np.float32), np.array([0.5, 2.0, 0.1], np.float32)
    m = _model("BatchNormalization", {"x": x}, [("y", TensorProto.FLOAT)], 9,
               inits={"s": s, "b": b, "mean": mean, "var": var})
    r = (-1, 1, 1)
    y = s.reshape(r) * (x - mean.reshape(r)) / np.sqrt(var.reshape(r) + 1e-5) + b.reshape(r)
    _check(m, {"x": x}, [y.astype(np.float32)], tmp_path, rtol=1e-5)


def test_batch_normalization_9_training_mode_is_refused(tmp_path):
    x = np.ones((2, 3, 2, 2), np.float32)
    p = {k: np.ones(3, np.float32) for k in ("s", "b", "mean", "var")}
    outs = [(n, TensorProto.FLOAT) for n in ("y", "rm", "rv", "sm", "sv")]
    m = _model("BatchNormalization", {"x": x}, outs, 9, inits=p)
    with pytest.raises(BackendError, match="BatchNormalization-9 in training mode"):
        _reference(m, {"x": x}, tmp_path)
