"""The converters of :mod:`mlms_ir.backends.onnx2torch_ops` (ops onnx2torch lacks entirely), through
the torch backend, against ONNX's reference implementation on inputs ONNX's node test cases do
not cover (other dtypes, negative axes, broadcasting, edge values), and the settings they refuse."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

import mlms_ir  # noqa: E402
from mlms_ir.backends import registry  # noqa: E402
from mlms_ir.backends.base import BackendError  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

RNG = np.random.default_rng(15)


def _model(op: str, inputs: list[np.ndarray | None], opset: int, n_out: int = 1, **attrs) -> onnx.ModelProto:
    names = [f"x{i}" if v is not None else "" for i, v in enumerate(inputs)]
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for n, v in zip(names, inputs) if v is not None]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _feeds(inputs):
    return {f"x{i}": v for i, v in enumerate(inputs) if v is not None}


def torch_run(model: onnx.ModelProto, inputs) -> list[np.ndarray]:
    with registry.get("torch").prepare(mlms_ir.load(model.SerializeToString()), "cpu") as s:
        out = s.run(_feeds(inputs))
    return [out[o.name] for o in model.graph.output]


def check(op: str, inputs, opset: int, n_out: int = 1, rtol: float = 1e-5, atol: float = 1e-6, **attrs) -> list[np.ndarray]:
    """Run ``op`` through the torch backend and ONNX's reference; they must agree in value and dtype."""
    model = _model(op, inputs, opset, n_out, **attrs)
    want = ReferenceEvaluator(model).run(None, _feeds(inputs))
    got = torch_run(model, inputs)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (op, attrs, g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g.astype(np.float64) if g.dtype != bool else g, w.astype(np.float64) if w.dtype != bool else w,
                                   rtol=rtol, atol=atol, err_msg=f"{op} {attrs}")
    return got


def refused(op: str, inputs, opset: int, n_out: int = 1, **attrs) -> str:
    model = _model(op, inputs, opset, n_out, **attrs)
    with pytest.raises(BackendError) as err:
        torch_run(model, inputs)
    return str(err.value)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def ints(dtype, shape, low=None, high=None):
    info = np.iinfo(dtype)
    low = info.min if low is None else low
    high = info.max if high is None else high
    return RNG.integers(low, high, size=shape, dtype=dtype, endpoint=True)


# ---------------------------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize("op", ["Acosh", "Asinh", "Atanh", "Cosh", "Sinh"])
def test_hyperbolic_functions_in_double_and_half(op):
    x = RNG.uniform(-0.9, 0.9, (3, 4))
    if op == "Acosh":
        x = 1 + np.abs(x) * 3
    check(op, [x], 22, rtol=1e-12)
    check(op, [x.astype(np.float16)], 9, rtol=2e-3, atol=1e-3)


def test_activations_with_their_attributes():
    x = f32(4, 5) * 3
    check("Mish", [x.astype(np.float64)], 22, rtol=1e-12)
    check("ThresholdedRelu", [x], 10, alpha=0.3)
    check("ThresholdedRelu", [x], 22, alpha=-1.5)  # a negative threshold keeps negative values
    check("Swish", [x], 24, alpha=0.7)
    check("Shrink", [x], 9, lambd=0.8, bias=0.25)
    check("Shrink", [ints(np.int32, (4, 5), -5, 5)], 9, lambd=1.5, bias=1.0)  # integers: in the input's dtype


def test_hardmax_first_maximum_and_coerced_versions():
    x = RNG.integers(0, 3, (2, 3, 4)).astype(np.float32)  # many ties: the first maximum wins
    for axis in (0, 1, -1, -2):
        check("Hardmax", [x], 13, axis=axis)
    # versions 1 and 11: over the input flattened to 2-D at axis (ONNX's reference computes version 13 for all)
    for version, axis in ((11, 0), (11, 1), (11, -1), (1, None)):
        attrs = {} if axis is None else {"axis": axis}
        got = torch_run(_model("Hardmax", [x], version, **attrs), [x])[0]
        a = 1 if axis is None else axis % 3
        flat = x.reshape(int(np.prod(x.shape[:a])), -1)
        want = np.zeros_like(flat)
        want[np.arange(flat.shape[0]), flat.argmax(axis=1)] = 1
        np.testing.assert_array_equal(got, want.reshape(x.shape))


def test_trilu_diagonals_dtypes_and_batches():
    x = ints(np.int64, (2, 3, 4, 5))
    for upper in (0, 1):
        for k in (-7, -2, 0, 1, 6):
            check("Trilu", [x, np.array(k, np.int64)], 14, upper=upper)
    check("Trilu", [RNG.random((3, 2)) > 0.5], 14, upper=0)
    check("Trilu", [f32(4, 4), None], 14)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64])
def test_bit_shift_and_bitwise_ops_on_every_integer_width(dtype):
    bits = np.iinfo(dtype).bits
    x = ints(dtype, (3, 40))
    y = RNG.integers(0, bits + 3, size=(40,)).astype(dtype)  # some shifts out of range: 0 (or -1 right of a negative)
    if np.issubdtype(dtype, np.signedinteger):
        y[:3] = [-1, -bits, -100]  # negative shifts are out of range too
    for direction in ("LEFT", "RIGHT"):
        check("BitShift", [x, y], 28, direction=direction)
        if not np.issubdtype(dtype, np.signedinteger):
            check("BitShift", [x, y], 11, direction=direction)
    for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        check(op, [x, y[None]], 18)
    check("BitwiseNot", [x], 18)


def test_cum_prod_axes_exclusive_reverse():
    x = RNG.uniform(0.5, 1.5, (3, 4, 2))
    for axis in (0, -1, 1):
        for exclusive in (0, 1):
            for reverse in (0, 1):
                check("CumProd", [x, np.array(axis, np.int32)], 26, exclusive=exclusive, reverse=reverse, rtol=1e-12)
    check("CumProd", [ints(np.int64, (5, 3), -3, 3), np.array(0, np.int64)], 26, exclusive=1)


# ---------------------------------------------------------------------------------------------- LLM ops
def test_rms_normalization_axes_and_dtypes():
    x, scale = f32(2, 3, 4), f32(3, 4)
    check("RMSNormalization", [x, scale], 23, axis=-2, epsilon=1e-3)
    check("RMSNormalization", [x, scale[-1]], 23)
    check("RMSNormalization", [x.astype(np.float64), scale.astype(np.float64)], 23, axis=1, rtol=1e-6)  # in float32
    # in double (ONNX's reference computes stash_type 1 only)
    xd, sd = x.astype(np.float64), scale.astype(np.float64)
    got = torch_run(_model("RMSNormalization", [xd, sd], 23, axis=1, stash_type=11), [xd, sd])[0]
    np.testing.assert_allclose(got, xd / np.sqrt((xd * xd).mean(axis=(1, 2), keepdims=True) + 1e-5) * sd, rtol=1e-13)
    # float16 computed in float32 (stash_type 1), then cast back: closer than the reference's float16 arithmetic
    check("RMSNormalization", [x.astype(np.float16), scale.astype(np.float16)], 23, axis=0, rtol=5e-3, atol=5e-3)


def test_rms_normalization_refuses_an_integer_stash_type():
    assert "stash_type=7 is not supported" in refused("RMSNormalization", [f32(2, 3), f32(3)], 23, stash_type=7)


def _rope_caches(positions: int, half: int):
    theta = RNG.uniform(0, 6.3, (positions, half))
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_3d_partial_with_position_ids(interleaved):
    cos, sin = _rope_caches(10, 2)
    x = f32(2, 5, 3 * 6)  # 3 heads of 6, the first 4 rotated
    pos = RNG.integers(0, 10, (2, 5)).astype(np.int64)
    check("RotaryEmbedding", [x, cos, sin, pos], 23, interleaved=interleaved, num_heads=3, rotary_embedding_dim=4)
    cos, sin = _rope_caches(5, 3)
    x4 = f32(2, 3, 5, 6)  # [batch, heads, seq, head], caches per batch and position
    check("RotaryEmbedding", [x4, np.stack([cos, cos]), np.stack([sin, sin])], 23, interleaved=interleaved)


def _attention(q, k, v, mask=None, past_k=None, past_v=None, nonpad=None, opset=24, n_out=1, **attrs):
    inputs = [q, k, v, mask, past_k, past_v] + ([nonpad] if nonpad is not None else [])
    while inputs[-1] is None:
        inputs.pop()
    return check("Attention", inputs, opset, n_out, rtol=1e-4, atol=1e-5, **attrs)


def test_attention_3d_grouped_heads_with_cache_mask_softcap_and_outputs():
    b, sq, skv, past, qh, kvh, hd = 2, 3, 4, 2, 4, 2, 5
    q, k, v = f32(b, sq, qh * hd), f32(b, skv, kvh * hd), f32(b, skv, kvh * 3)
    pk, pv = f32(b, kvh, past, hd), f32(b, kvh, past, 3)
    mask = f32(qh, sq, past + skv - 1)  # shorter than the total length: padded with -inf
    for mode in (1, 2, 3):
        _attention(q, k, v, mask, pk, pv, n_out=4, q_num_heads=qh, kv_num_heads=kvh, softcap=2.5, qk_matmul_output_mode=mode,
                   scale=0.3, opset=23)
    bool_mask = RNG.random((b, 1, sq, past + skv)) > 0.3
    _attention(q, k, v, bool_mask, pk, pv, n_out=3, q_num_heads=qh, kv_num_heads=kvh, is_causal=1)


def test_attention_4d_causal_cache_nonpad_window_and_precision():
    q, k, v = f32(2, 2, 3, 4), f32(2, 2, 5, 4), f32(2, 2, 5, 4)
    _attention(q, k, v, n_out=4, is_causal=1, qk_matmul_output_mode=3)
    _attention(q, k, v, None, f32(2, 2, 2, 4), f32(2, 2, 2, 4), n_out=3, is_causal=1, softmax_precision=TensorProto.DOUBLE)
    _attention(q, k, v, f32(3, 5), nonpad=np.array([4, 2], np.int64), is_causal=1)
    _attention(q, k, v, RNG.random((5,)) > 0.2, opset=25, left_window_size=1, right_window_size=0)
    _attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), n_out=4, qk_matmul_output_mode=0)


def test_attention_fully_masked_rows_are_zero():
    q, k, v = f32(1, 1, 2, 4), f32(1, 1, 3, 4), f32(1, 1, 3, 4)
    mask = np.array([[True, True, False], [False, False, False]])
    y = _attention(q, k, v, mask, n_out=4, qk_matmul_output_mode=3)
    assert np.all(y[0][0, 0, 1] == 0) and np.all(y[3][0, 0, 1] == 0)


def test_attention_refuses_the_pre_softcap_output():
    q = f32(1, 1, 2, 4)
    msg = refused("Attention", [q, q, q], 24, 4, softcap=1.0, qk_matmul_output_mode=0)
    assert "qk_matmul_output in mode 0 with a softcap is not supported" in msg


# ---------------------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_losses_weights_ignore_index_and_extra_dims(reduction):
    scores = f32(3, 5, 2, 2).astype(np.float64)
    labels = RNG.integers(0, 5, (3, 2, 2)).astype(np.int64)
    labels[0, 0, 0] = labels[2, 1, 1] = 3
    weights = RNG.uniform(0.1, 2, 5)
    for op, opset in (("NegativeLogLikelihoodLoss", 22), ("SoftmaxCrossEntropyLoss", 13)):
        check(op, [scores, labels], opset, reduction=reduction, rtol=1e-12)
        check(op, [scores, labels, weights], opset, reduction=reduction, ignore_index=3, rtol=1e-12)
        check(op, [scores.astype(np.float32), labels.astype(np.int32)], opset, reduction=reduction, ignore_index=3, rtol=1e-5)
    check("SoftmaxCrossEntropyLoss", [scores, labels, weights], 12, 2, reduction=reduction, rtol=1e-12)


def test_loss_mean_without_weights_skips_targets_equal_to_ignore_index_minus_one():
    """The spec's function body divides by the targets not ignored (as for any other ignore_index);
    ONNX's reference NegativeLogLikelihoodLoss alone divides by all of them when ignore_index is -1."""
    scores = f32(3, 4, 2).astype(np.float64)
    labels = np.array([[0, -1], [2, 1], [-1, 3]], np.int64)
    model = _model("NegativeLogLikelihoodLoss", [scores, labels], 22, ignore_index=-1)
    got = torch_run(model, [scores, labels])[0]
    valid = labels != -1
    picked = -np.take_along_axis(scores, np.where(valid, labels, 0)[:, None], 1)[:, 0] * valid
    np.testing.assert_allclose(got, picked.sum() / valid.sum(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------- the rest
def test_one_hot_negative_and_out_of_range_indices_and_axes():
    indices = np.array([[0, -1, 3], [5, -6, 2]], np.int64)  # 5 and -6 are out of range for depth 5: all off
    values = np.array([-2, 7], np.int32)
    for axis in (-1, 0, 1, -3):
        check("OneHot", [indices, np.array(5, np.int64), values], 11, axis=axis)
    check("OneHot", [indices.astype(np.float32), np.array(5.0, np.float32), values.astype(np.float64)], 9)
    # depth as a 1-element vector, as the spec allows (ONNX's reference takes a scalar only)
    model = _model("OneHot", [indices, np.array([5], np.int64), values], 11)
    got = torch_run(model, [indices, np.array([5], np.int64), values])[0]
    np.testing.assert_array_equal(got, check("OneHot", [indices, np.array(5, np.int64), values], 11)[0])


def test_space_to_depth_compress_reverse_sequence_and_pools():
    x = f32(2, 3, 4, 6)
    check("SpaceToDepth", [x], 13, blocksize=2)
    check("SpaceToDepth", [x], 28, blocksize=2, mode="CRD")
    check("Compress", [x, np.array([True, False, True])], 11, axis=1)
    check("Compress", [x, np.array([False, True, True, False])], 28, axis=-2)
    check("Compress", [x, RNG.random(30) > 0.5], 9)  # no axis: the flattened input; a short condition
    seq = ints(np.int32, (4, 3, 2))
    check("ReverseSequence", [seq, np.array([4, 1, 2], np.int64)], 10, batch_axis=1, time_axis=0)
    check("ReverseSequence", [seq, np.array([2, 3, 1, 0], np.int64)], 28, batch_axis=0, time_axis=1)
    check("GlobalMaxPool", [f32(2, 3, 4, 5)], 22)
    # 1 and 3 spatial dims (ONNX's reference takes the maximum over dims 1-2 and 3-4 there)
    for pooled in (f32(2, 3, 4), f32(2, 3, 2, 2, 2)):
        got = torch_run(_model("GlobalMaxPool", [pooled], 1), [pooled])[0]
        np.testing.assert_array_equal(got, pooled.max(axis=tuple(range(2, pooled.ndim)), keepdims=True))
    x[0, :, 1, 2] = 0  # a zero norm: 0
    check("LpNormalization", [x], 22, axis=1, p=2)
    # p=1 by hand: ONNX's reference sums x, not |x|
    got = torch_run(_model("LpNormalization", [x], 1, axis=-1, p=1), [x])[0]
    norm = np.abs(x).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(got, np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)), rtol=1e-6)
    check("Det", [RNG.standard_normal((2, 3, 3))], 22, rtol=1e-10)
    check("SwiGLU", [f32(3, 4), f32(3, 4)], 28, alpha=1.702)


def test_refused_settings_say_what():
    assert "p=3 is not supported" in refused("LpNormalization", [f32(2, 3)], 22, p=3)
    assert "batch_axis=0, time_axis=2" in refused("ReverseSequence", [f32(2, 3, 4), np.array([1, 2], np.int64)], 10,
                                                  batch_axis=0, time_axis=2)


# ---------------------------------------------------------------------------------------------- reductions
REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
              "ReduceLogSumExp", "ReduceSumSquare"]


def _reduce_model(op: str, x: np.ndarray, opset: int = 18, **attrs) -> onnx.ModelProto:
    """``op`` with its axes a graph input (onnx2torch reads constant axes only)."""
    node = helper.make_node(op, ["x", "axes"], ["y"], **attrs)
    vis = [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape),
           helper.make_tensor_value_info("axes", TensorProto.INT64, None)]
    graph = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_with_axes_computed_at_run_time(op):
    x = RNG.uniform(0.5, 2, (2, 3, 4)).astype(np.float32)
    empty = np.zeros((2, 0, 3), np.float32)
    with registry.get("torch").prepare(mlms_ir.load(_reduce_model(op, x, keepdims=0).SerializeToString()), "cpu") as s:
        # one session, several axes: they are read at each run
        for axes in ([0], [-1], [2, 0], [-2, 0], []):
            feeds = {"x": x, "axes": np.array(axes, np.int64)}
            want = ReferenceEvaluator(_reduce_model(op, x, keepdims=0)).run(None, feeds)[0]
            np.testing.assert_allclose(s.run(feeds)["y"], want, rtol=1e-5, err_msg=f"{op} {axes}")
    for keepdims in (0, 1):  # an empty set: ONNX's identity value (0, 1, -inf, the dtype's min ...)
        feeds = {"x": empty, "axes": np.array([1], np.int64)}
        if op != "ReduceMean":
            want = ReferenceEvaluator(_reduce_model(op, empty, keepdims=keepdims)).run(None, feeds)[0]
            got = torch_run_feeds(_reduce_model(op, empty, keepdims=keepdims), feeds)
            np.testing.assert_array_equal(got, want)
    got = torch_run_feeds(_reduce_model(op, x, noop_with_empty_axes=1), {"x": x, "axes": np.zeros(0, np.int64)})
    np.testing.assert_array_equal(got, x)


def torch_run_feeds(model, feeds):
    with registry.get("torch").prepare(mlms_ir.load(model.SerializeToString()), "cpu") as s:
        return s.run(feeds)["y"]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_and_boolean_reductions_keep_the_dtype(dtype):
    x = (RNG.integers(-3, 4, (3, 4)) if dtype is not np.bool_ else RNG.random((3, 4)) > 0.5).astype(dtype)
    ops = ["ReduceMax", "ReduceMin"] if dtype is np.bool_ else ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                                                  "ReduceSumSquare"]
    for op in ops:
        for opset in (20,) if dtype is np.bool_ else (18, 20) if op in ("ReduceMax", "ReduceMin") else (18,):
            feeds = {"x": x, "axes": np.array([-1], np.int64)}
            want = ReferenceEvaluator(_reduce_model(op, x, opset)).run(None, feeds)[0]
            got = torch_run_feeds(_reduce_model(op, x, opset), feeds)
            assert got.dtype == x.dtype, (op, got.dtype)  # ONNX's reference widens ReduceSumSquare of int32 to int64
            np.testing.assert_array_equal(got, want)
    empty = np.zeros((0, 2), dtype)
    feeds = {"x": empty, "axes": np.array([0], np.int64)}
    for op in ("ReduceMax", "ReduceMin"):
        np.testing.assert_array_equal(torch_run_feeds(_reduce_model(op, empty, 20), feeds),
                                      ReferenceEvaluator(_reduce_model(op, empty, 20)).run(None, feeds)[0])


def test_a_float_only_reduction_of_integers_is_refused_at_run_time():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    with pytest.raises(BackendError, match="ReduceL2: torch.int32 input is not supported"):
        torch_run_feeds(_reduce_model("ReduceL2", x), {"x": x, "axes": np.array([1], np.int64)})
    with pytest.raises(BackendError, match=r"ReduceL1: axes \[1, -1\] name a dim twice"):
        torch_run_feeds(_reduce_model("ReduceL1", x), {"x": x, "axes": np.array([1, -1], np.int64)})


# ---------------------------------------------------------------------------------------------- replaced or extended
def test_flatten_at_every_axis_including_zero_and_minus_rank():
    x = f32(2, 3, 4)
    for axis in (-3, -2, -1, 0, 1, 2, 3):
        for opset in (1, 13, 21):
            if opset == 1 and axis < 0:
                continue  # version 1 has no negative axes
            check("Flatten", [x], opset, axis=axis)
    check("Flatten", [np.zeros((0, 3), np.float32)], 13, axis=0)  # no elements


def test_layer_normalization_with_mean_and_inv_std_dev():
    x, scale, bias = f32(2, 3, 4), f32(3, 4), f32(4)
    check("LayerNormalization", [x, scale, bias], 17, 3, axis=-2, epsilon=1e-3)
    # Mean and InvStdDev are of stash_type (float here), which ONNX's reference leaves in X's double
    xd, sd = x.astype(np.float64), scale[0, :].astype(np.float64)
    y, mean, inv = torch_run(_model("LayerNormalization", [xd, sd], 17, 3, axis=2), [xd, sd])
    assert y.dtype == np.float64 and mean.dtype == inv.dtype == np.float32
    want = ReferenceEvaluator(_model("LayerNormalization", [xd, sd], 17, 3, axis=2)).run(None, _feeds([xd, sd]))
    for g, w in zip((y, mean, inv), want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    check("LayerNormalization", [x, scale[None]], 17, 2, axis=0)


# ---------------------------------------------------------------------------------------------- quantization
def test_quantize_linear_rounds_half_to_even_saturates_per_axis_and_block():
    x = np.array([[-300.0, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 300.0]] * 3, np.float32) * np.array([[1], [2], [0.5]], np.float32)
    scale1 = np.array(1.0, np.float32)
    for zp in (np.array(0, np.uint8), np.array(3, np.int8), np.array(-7, np.int16), np.array(100, np.uint16), None):
        check("QuantizeLinear", [x, scale1, zp], 13 if zp is None or zp.dtype.itemsize == 1 else 21)
    per_axis = RNG.uniform(0.5, 2, 3).astype(np.float32)
    check("QuantizeLinear", [x, per_axis, np.array([1, -2, 3], np.int8)], 13, axis=0)
    check("QuantizeLinear", [x, RNG.uniform(0.5, 2, 8).astype(np.float32), None], 19, axis=-1)
    blocked = RNG.uniform(0.5, 2, (3, 3)).astype(np.float32)  # blocks of 3 along axis 1 (8 = 3 + 3 + 2)
    check("QuantizeLinear", [x, blocked, RNG.integers(-5, 5, (3, 3)).astype(np.int8)], 21, axis=1, block_size=3)
    check("QuantizeLinear", [x, blocked, None], 28, axis=1, block_size=3, output_dtype=TensorProto.INT16)
    check("QuantizeLinear", [x.astype(np.float16), np.array(0.5, np.float16), np.array(0, np.int8)], 21)
    check("QuantizeLinear", [x, np.array(0.5, np.float16), None], 25, precision=TensorProto.FLOAT)


def test_dequantize_linear_per_tensor_axis_block_and_output_dtype():
    x = ints(np.int8, (3, 8))
    check("DequantizeLinear", [x, np.array(0.1, np.float32), np.array(-3, np.int8)], 19)
    check("DequantizeLinear", [x, RNG.uniform(0.1, 1, 3).astype(np.float32), ints(np.int8, (3,))], 19, axis=-2)
    blocked = RNG.uniform(0.1, 1, (3, 2)).astype(np.float32)
    check("DequantizeLinear", [x, blocked, ints(np.int8, (3, 2))], 21, axis=1, block_size=4)
    check("DequantizeLinear", [ints(np.uint16, (4,)), np.array(0.01, np.float32), ints(np.uint16, ())], 21)
    check("DequantizeLinear", [ints(np.int16, (2, 4)), np.array(0.5, np.float16)], 21, rtol=1e-3)
    check("DequantizeLinear", [ints(np.int32, (5,), -2 ** 20, 2 ** 20), np.array(0.25, np.float32)], 19)
    check("DequantizeLinear", [x, np.array(0.5, np.float32)], 23, output_dtype=TensorProto.FLOAT16)


def test_quantization_refusals():
    x = f32(2, 3)
    assert "output_dtype=17 is not supported" in refused("QuantizeLinear", [x, np.array(1.0, np.float32)], 21,
                                                         output_dtype=TensorProto.FLOAT8E4M3FN)
    msg = refused("QuantizeLinear", [x, np.array(0.5, np.float16)], 25)  # types may differ since 25
    assert "torch.float32 input with a torch.float16 scale is not supported without the precision attribute" in msg


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention_rules_grouped_heads_and_past_state(rule):
    b, t, hq, hkv, dk, dv = 2, 4, 4, 2, 3, 5
    q, k, v = f32(b, t, hq * dk), f32(b, t, hkv * dk) * 0.5, f32(b, t, hkv * dv)
    decay = -RNG.uniform(0, 1, (b, t, hkv * dk if rule == "gated" else hkv)).astype(np.float32) if "gated" in rule else None
    beta = RNG.uniform(0, 1, (b, t, 1)).astype(np.float32) if "delta" in rule else None
    past = f32(b, hkv, dk, dv).astype(np.float16)  # the state keeps its own type
    check("LinearAttention", [q, k, v, past, decay, beta], 27, 2, rtol=2e-3, atol=2e-3, update_rule=rule, q_num_heads=hq,
          kv_num_heads=hkv, scale=0.7)
    check("LinearAttention", [q, k, v, None, decay, beta], 27, 2, rtol=1e-5, atol=1e-5, update_rule=rule, q_num_heads=hq,
          kv_num_heads=hkv)


@pytest.mark.parametrize("mode, padding, align", [
    ("linear", "zeros", 0), ("linear", "border", 1), ("linear", "reflection", 0), ("nearest", "zeros", 1),
    ("nearest", "border", 0), ("nearest", "reflection", 1), ("cubic", "zeros", 0), ("cubic", "reflection", 1),
])
def test_grid_sample_beyond_the_borders(mode, padding, align):
    x = f32(1, 2, 4, 5)
    grid = RNG.uniform(-1.8, 1.8, (1, 3, 4, 2)).astype(np.float32)  # many points outside [-1, 1]
    grid.reshape(-1)[:6] = [-1, 1, 0, -1.25, 1.25, 0.5]
    check("GridSample", [x, grid], 22, mode=mode, padding_mode=padding, align_corners=align, rtol=1e-4, atol=1e-5)
    if mode != "cubic":  # a 3-D image
        check("GridSample", [f32(1, 1, 3, 4, 5), RNG.uniform(-1.3, 1.3, (1, 2, 2, 3, 3)).astype(np.float32)], 20, mode=mode,
              padding_mode=padding, align_corners=align, rtol=1e-4, atol=1e-5)


def test_grid_sample_refuses_what_torch_computes_otherwise():
    x, grid = f32(1, 1, 3, 3), f32(1, 2, 2, 2)
    assert "bicubic with padding_mode='border'" in refused("GridSample", [x, grid], 22, mode="cubic", padding_mode="border")
    assert "nearest with padding_mode='reflection' and align_corners=0" in refused("GridSample", [x, grid], 16, mode="nearest",
                                                                                  padding_mode="reflection")


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_negative_indices_and_reductions(reduction):
    data = f32(3, 4, 2)
    if reduction == "none":  # distinct targets per (j, k): a permutation of rows
        indices = np.stack([RNG.permutation(3)[:2] for _ in range(8)], axis=1).reshape(2, 4, 2) - 3  # negative
    else:
        indices = RNG.integers(-3, 3, (5, 4, 2))  # repeated targets combine
    updates = f32(*indices.shape)
    check("ScatterElements", [data, indices.astype(np.int64), updates], 18, axis=0, reduction=reduction)
    check("ScatterElements", [data, np.array([[[1], [-1], [0], [-2]]], np.int32), f32(1, 4, 1)], 16, axis=-1,
          reduction=reduction)
    if reduction == "none":
        inputs = [data, np.array([[[1, 0]]], np.int64), f32(1, 1, 2)]  # Scatter-9: ScatterElements before its name
        np.testing.assert_array_equal(torch_run(_model("Scatter", inputs, 9, axis=2), inputs)[0],
                                      check("ScatterElements", inputs, 11, axis=2)[0])


def test_scatter_elements_refuses_a_double_write_without_reduction():
    data = f32(3,)
    with pytest.raises(BackendError, match="write one element twice"):
        torch_run(_model("ScatterElements", [data, np.array([1, 1], np.int64), f32(2)], 18), [data, np.array([1, 1]), f32(2)])


@pytest.mark.parametrize("activation", ["none", "silu"])
def test_causal_conv_with_state_and_without(activation):
    x, w, bias, past = f32(2, 3, 5), f32(3, 1, 4), f32(3), f32(2, 3, 3)
    check("CausalConvWithState", [x, w, bias, past], 27, 2, rtol=1e-5, atol=1e-5, activation=activation)
    check("CausalConvWithState", [x.astype(np.float16), w.astype(np.float16)], 27, 2, rtol=3e-3, atol=3e-3, activation=activation)


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_with_a_weight_computed_at_run_time(auto_pad):
    """onnx2torch reads Conv's weight among the initializers; fed as an input, our module takes it."""
    x = f32(2, 4, 7, 6)
    w, b = f32(6, 2, 3, 2), f32(6)
    pads = {"pads": [1, 0, 2, 1]} if auto_pad == "NOTSET" else {}
    check("Conv", [x, w, b], 22, rtol=1e-4, atol=1e-5, auto_pad=auto_pad, strides=[2, 1], dilations=[1, 2], group=2, **pads)
    check("Conv", [f32(1, 2, 9), f32(3, 2, 4)], 11, rtol=1e-4, atol=1e-5, auto_pad=auto_pad, strides=[3])
    check("Conv", [f32(1, 1, 4, 3, 5), f32(2, 1, 2, 2, 3)], 1, rtol=1e-4, atol=1e-5, auto_pad=auto_pad)


# ---------------------------------------------------------------------------------------------- pools, shapes, signals
def test_lp_pool_p_pads_strides_dilations_auto_pad():
    x = f32(2, 3, 7, 6)
    check("LpPool", [x], 18, kernel_shape=[3, 2], p=3, pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2], rtol=1e-4)
    check("LpPool", [x], 22, kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2, 2], rtol=1e-5)
    check("LpPool", [f32(1, 2, 9)], 11, kernel_shape=[4], p=1, strides=[3], rtol=1e-5)
    assert "ceil_mode=1 is not supported" in refused("LpPool", [x], 18, kernel_shape=[2, 2], ceil_mode=1)


def test_center_crop_pad_odd_differences_and_axes():
    x = f32(5, 4, 3)
    check("CenterCropPad", [x, np.array([2, 7, 3], np.int64)], 18)
    check("CenterCropPad", [x, np.array([6, 1], np.int64)], 18, axes=[-1, 0])


def _unique_unsorted(x, axis):
    """Unique in order of first occurrence, by hand (ONNX's reference takes the values along axis 0
    whatever the axis, and fails with an axis)."""
    flat = x.reshape(-1) if axis is None else x
    a = 0 if axis is None else axis % x.ndim
    y, first, inverse, counts = np.unique(flat, True, True, True, axis=None if axis is None else a)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [np.take(flat, first[order], axis=a), first[order], rank[inverse.reshape(-1)], counts[order]]


def test_unique_flat_and_along_an_axis():
    x = RNG.integers(0, 4, (6, 3)).astype(np.int64)
    x[4] = x[1]  # a repeated row
    check("Unique", [x], 11, 4)
    check("Unique", [x], 28, 4, axis=0)
    check("Unique", [x.astype(np.float32)], 11, 4, axis=-1)
    check("Unique", [x], 11, 1)
    for axis in (None, 0, -1):
        attrs = {} if axis is None else {"axis": axis}
        got = torch_run(_model("Unique", [x], 11, 4, sorted=0, **attrs), [x])
        for g, w in zip(got, _unique_unsorted(x, axis)):
            np.testing.assert_array_equal(g, w)


def test_range_27_and_windows():
    for start, limit, delta, dtype in ((1, 10, 3, np.int32), (10, -3, -4, np.int64), (0.5, 3.2, 0.7, np.float32),
                                       (2.0, 1.0, 0.5, np.float64), (0.1, 2.0, 0.3, np.float16)):
        check("Range", [np.array(start, dtype), np.array(limit, dtype), np.array(delta, dtype)], 27,
              rtol=1e-3 if dtype == np.float16 else 1e-6)
    for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
        for periodic in (0, 1):
            check(op, [np.array(7, np.int64)], 17, periodic=periodic, rtol=1e-6, atol=1e-7)
        check(op, [np.array(5, np.int32)], 17, output_datatype=TensorProto.DOUBLE, rtol=1e-12, atol=1e-12)


def test_col2im_group_norm_max_unpool_affine_grid():
    check("Col2Im", [f32(2, 3 * 2 * 2, 9), np.array([5, 6], np.int64), np.array([2, 2], np.int64)], 18, rtol=1e-5,
          pads=[1, 0, 0, 1], strides=[2, 2], dilations=[1, 2])
    check("GroupNormalization", [f32(2, 6, 3, 2), f32(6), f32(6)], 21, num_groups=3, epsilon=1e-3, rtol=1e-5, atol=1e-6)
    x = f32(1, 2, 4, 4)
    pool = _model("MaxPool", [x], 12, n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    pooled, indices = ReferenceEvaluator(pool).run(None, {"x0": x})
    got = check("MaxUnpool", [pooled, indices], 22, kernel_shape=[2, 2], strides=[2, 2])[0]
    np.testing.assert_array_equal(got.max(axis=(2, 3)), x.max(axis=(2, 3)))
    assert "an output_shape other than the inferred" in refused("MaxUnpool", [pooled, indices, np.array([1, 2, 5, 5], np.int64)],
                                                                11, kernel_shape=[2, 2], strides=[2, 2])
    for align in (0, 1):
        check("AffineGrid", [f32(2, 2, 3), np.array([2, 1, 3, 4], np.int64)], 20, align_corners=align, rtol=1e-5, atol=1e-6)
        check("AffineGrid", [f32(1, 3, 4), np.array([1, 1, 2, 3, 2], np.int64)], 20, align_corners=align, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- recurrent
def _ort(model, inputs):
    ort = pytest.importorskip("onnxruntime")
    typed = onnx.ModelProto()
    typed.CopyFrom(model)
    for out in typed.graph.output:  # onnxruntime wants the outputs' types
        if not out.type.tensor_type.elem_type:
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    session = ort.InferenceSession(typed.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, _feeds(inputs))


@pytest.mark.parametrize("op, gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_recurrent_ops_against_onnxruntime(op, gates, direction):
    """Every direction, both layouts, biases, initial states, peepholes, linear_before_reset and a
    Relu activation, against onnxruntime (ONNX's reference ignores several of them)."""
    seq, batch, size, hidden = 4, 2, 3, 5
    dirs = 2 if direction == "bidirectional" else 1
    w, r = f32(dirs, gates * hidden, size) * 0.5, f32(dirs, gates * hidden, hidden) * 0.5
    b, h0 = f32(dirs, 2 * gates * hidden) * 0.3, f32(dirs, batch, hidden)
    extra = {"GRU": {"linear_before_reset": 1}, "RNN": {"activations": ["Relu"] * dirs}, "LSTM": {}}[op]
    x, c0, peep = f32(seq, batch, size), f32(dirs, batch, hidden), f32(dirs, 3 * hidden)
    inputs = [x, w, r, b, np.full(batch, seq, np.int32), h0] + ([c0, peep] if op == "LSTM" else [])
    n_out = 3 if op == "LSTM" else 2
    model = _model(op, inputs, 22, n_out, direction=direction, hidden_size=hidden, **extra)
    want = _ort(model, inputs)
    for g, wv in zip(torch_run(model, inputs), want):
        np.testing.assert_allclose(g, wv, rtol=1e-4, atol=1e-5, err_msg=f"{op} {direction}")
    # layout 1 (batch first; onnxruntime has none): the same values transposed
    batch_first = [x.transpose(1, 0, 2).copy(), w, r, b, inputs[4], h0.transpose(1, 0, 2).copy()]
    if op == "LSTM":
        batch_first += [c0.transpose(1, 0, 2).copy(), peep]
    got = torch_run(_model(op, batch_first, 22, n_out, direction=direction, hidden_size=hidden, layout=1, **extra), batch_first)
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), rtol=1e-4, atol=1e-5)
    for g, wv in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, wv.transpose(1, 0, 2), rtol=1e-4, atol=1e-5)
    if op == "GRU":  # the other reset, no bias and no initial state, against ONNX's reference too
        check("GRU", [f32(seq, batch, size), w, r], 14, 2, rtol=1e-4, atol=1e-5, direction=direction, hidden_size=hidden)


def test_recurrent_refusals():
    x, w, r = f32(3, 1, 2), f32(1, 8, 2), f32(1, 8, 2)
    assert "clip is not supported" in refused("LSTM", [x, w, r], 22, hidden_size=2, clip=1.0)
    assert "input_forget=1 is not supported" in refused("LSTM", [x, w, r], 22, hidden_size=2, input_forget=1)
    assert "activations=['Sigmoid', 'Softsign', 'Tanh'] is not supported" in refused(
        "LSTM", [x, w, r], 22, hidden_size=2, activations=["Sigmoid", "Softsign", "Tanh"])
    msg = refused("LSTM", [x, w, r, None, np.array([2], np.int32)], 22, hidden_size=2)
    assert "sequence_lens shorter than the sequence are not supported" in msg


def test_clip_with_bounds_computed_at_run_time():
    x = RNG.integers(-10, 10, (3, 4)).astype(np.int32)
    check("Clip", [x, np.array(-3, np.int32), np.array(5, np.int32)], 13)
    check("Clip", [x, None, np.array(2, np.int32)], 13)
    check("Clip", [x.astype(np.float32), np.array(4.0, np.float32), np.array(-1.0, np.float32)], 12)  # min > max: max
    check("Clip", [x.astype(np.float32)], 11)


def test_dropout_at_inference_and_its_mask():
    x = f32(3, 4)
    check("Dropout", [x], 10, 2, ratio=0.3)
    check("Dropout", [x, np.array(0.5, np.float32), np.array(False)], 22, 2, seed=3)
    check("Dropout", [x, np.array(0.0, np.float32), np.array(True)], 13, 2)  # ratio 0: nothing dropped even in training
    with pytest.raises(BackendError, match="training mode"):
        torch_run(_model("Dropout", [x, np.array(0.5, np.float32), np.array(True)], 13), [x, np.array(0.5, np.float32),
                                                                                          np.array(True)])


def test_reshape_allowzero_takes_zero_as_a_size():
    x = np.zeros((0, 3, 4), np.float32)
    check("Reshape", [x, np.array([3, 0, 4], np.int64)], 14, allowzero=1)
    check("Reshape", [f32(2, 3, 4), np.array([4, -1], np.int64)], 21, allowzero=1)
    check("Reshape", [f32(2, 3, 4), np.array([0, -1], np.int64)], 19)  # allowzero 0: onnx2torch's, 0 copies the dim


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_transpose_with_a_weight_computed_at_run_time(auto_pad):
    x, w, b = f32(2, 4, 3, 5), f32(4, 3, 3, 2), f32(3)
    pads = {"pads": [1, 0, 0, 2]} if auto_pad == "NOTSET" else {}
    check("ConvTranspose", [x, w, b], 22, rtol=1e-4, atol=1e-5, auto_pad=auto_pad, strides=[2, 3], dilations=[1, 2],
          output_padding=[1, 0], **pads)
    # groups against onnxruntime (ONNX's reference fails on them)
    inputs = [x, w, f32(6)]
    model = _model("ConvTranspose", inputs, 22, auto_pad=auto_pad, strides=[2, 3], group=2, output_padding=[0, 1], **pads)
    np.testing.assert_allclose(torch_run(model, inputs)[0], _ort(model, inputs)[0], rtol=1e-4, atol=1e-5)
    check("ConvTranspose", [f32(1, 2, 4), f32(2, 3, 3)], 11, rtol=1e-4, atol=1e-5, auto_pad=auto_pad, strides=[2])
    check("ConvTranspose", [f32(1, 1, 2, 3, 2), f32(1, 2, 2, 2, 2)], 1, rtol=1e-4, atol=1e-5, auto_pad=auto_pad)


def test_conv_transpose_output_shape_is_refused_with_a_weight_input_too():
    msg = refused("ConvTranspose", [f32(1, 1, 3), f32(1, 1, 2)], 22, output_shape=[7])
    assert "output_shape is not supported" in msg


def test_integer_matmul_conv_and_qlinear_matmul():
    a, b = ints(np.uint8, (3, 4)), ints(np.uint8, (4, 5))
    azp, bzp = ints(np.uint8, (3,)), ints(np.uint8, (5,))
    # per row of A and per column of B, as the spec says (ONNX's reference subtracts A's along K)
    got = torch_run(_model("MatMulInteger", [a, b, azp, bzp], 10), [a, b, azp, bzp])[0]
    want = (a.astype(np.int32) - azp.astype(np.int32)[:, None]) @ (b.astype(np.int32) - bzp.astype(np.int32))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    check("MatMulInteger", [a, b, np.array(9, np.uint8), bzp], 10)
    check("MatMulInteger", [ints(np.int8, (2, 3, 4)), ints(np.int8, (4, 2)), np.array(-3, np.int8)], 10)
    x, w = ints(np.uint8, (1, 2, 5, 5)), ints(np.uint8, (4, 2, 3, 3))
    check("ConvInteger", [x, w, np.array(7, np.uint8), ints(np.uint8, (4,))], 10, pads=[1, 0, 0, 1], strides=[2, 1])
    check("ConvInteger", [ints(np.int8, (1, 1, 4, 4)), ints(np.int8, (2, 1, 2, 2))], 10, auto_pad="SAME_UPPER")
    for dtype in (np.uint8, np.int8):
        qa, qb = ints(dtype, (2, 3, 4)), ints(dtype, (4, 3))
        scales = [np.array(v, np.float32) for v in RNG.uniform(0.01, 0.1, 3)]
        check("QLinearMatMul", [qa, scales[0], ints(dtype, ()), qb, scales[1], ints(dtype, ()), scales[2], ints(dtype, ())], 21)


def test_dynamic_quantize_linear_ranges():
    for x in (f32(3, 4) * 5, np.abs(f32(6)) + 1, -np.abs(f32(2, 2)), np.zeros((2, 3), np.float32)):
        check("DynamicQuantizeLinear", [x], 11, 3)


def test_bit_cast_tensor_scatter_and_deform_conv():
    x = f32(3, 4)
    x[0, 0], x[0, 1] = np.nan, -0.0
    check("BitCast", [x], 26, to=TensorProto.INT32)
    check("BitCast", [ints(np.uint16, (5,))], 26, to=TensorProto.FLOAT16)
    check("BitCast", [ints(np.int64, (2, 2))], 26, to=TensorProto.UINT64)
    check("BitCast", [RNG.random(4) > 0.5], 26, to=TensorProto.INT8)
    cache, update = f32(2, 3, 6, 4), f32(2, 3, 3, 4)
    check("TensorScatter", [cache, update, np.array([1, 3], np.int64)], 24)
    check("TensorScatter", [cache, update, np.array([5, 2], np.int64)], 24, mode="circular")
    check("TensorScatter", [f32(2, 5, 3), f32(2, 2, 3)], 24, axis=1)
    x, w = f32(1, 4, 5, 6), f32(6, 2, 3, 2)  # 2 groups, 2 offset groups
    offset, mask = f32(1, 2 * 3 * 2 * 2, 4, 3) * 0.7, RNG.random((1, 2 * 3 * 2, 4, 3)).astype(np.float32)
    check("DeformConv", [x, w, offset, f32(6), mask], 22, rtol=1e-4, atol=1e-5, group=2, offset_group=2, pads=[1, 0, 0, 1],
          strides=[1, 2])


def test_dft_forward_inverse_onesided_lengths_and_axes():
    real, complex_ = f32(2, 6, 3, 1), f32(2, 6, 3, 2)
    for axis in (1, 2, -2, -3):
        check("DFT", [real, np.array(8, np.int64), np.array(axis, np.int64)], 20, rtol=1e-4, atol=1e-4, onesided=1)
        check("DFT", [complex_, None, np.array(axis, np.int64)], 20, rtol=1e-4, atol=1e-4, inverse=1)
        check("DFT", [complex_, np.array(4, np.int64), np.array(axis, np.int64)], 20, rtol=1e-4, atol=1e-4)
        check("DFT", [complex_, None, np.array(axis, np.int64)], 20, rtol=1e-4, atol=1e-4, inverse=1, onesided=1)  # IRFFT
    check("DFT", [real.astype(np.float64)], 17, rtol=1e-10, atol=1e-10, axis=2)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_max_pool_same_padding(auto_pad):
    """Against onnxruntime: ONNX's reference gives SAME_LOWER a smaller output than the spec's
    ceil(size / stride)."""
    for x, attrs in ((f32(2, 3, 7, 6), {"kernel_shape": [3, 2], "strides": [2, 2]}),
                     (-np.abs(f32(2, 3, 7, 6)), {"kernel_shape": [2, 3]}),  # the -inf padding never wins
                     (f32(1, 2, 9), {"kernel_shape": [4], "strides": [2]}),
                     (f32(1, 1, 8, 5), {"kernel_shape": [3, 3], "strides": [3, 2]})):
        model = _model("MaxPool", [x], 12, auto_pad=auto_pad, **attrs)
        np.testing.assert_array_equal(torch_run(model, [x])[0], _ort(model, [x])[0])
    if auto_pad == "SAME_UPPER":
        check("MaxPool", [f32(2, 3, 7, 6)], 22, auto_pad=auto_pad, kernel_shape=[3, 2], strides=[2, 2])
    assert "with dilations is not supported" in refused("MaxPool", [f32(1, 1, 5, 5)], 12, auto_pad=auto_pad, kernel_shape=[2, 2],
                                                        dilations=[2, 2])
    assert "would need negative padding" in refused("MaxPool", [f32(1, 1, 6)], 12, auto_pad=auto_pad, kernel_shape=[2],
                                                    strides=[3])


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_pools_with_same_or_wide_padding(count_include_pad):
    x = f32(2, 3, 7, 6)
    check("AveragePool", [x], 22, kernel_shape=[3, 3], pads=[2, 0, 1, 2], strides=[2, 1], count_include_pad=count_include_pad,
          rtol=1e-5, atol=1e-6)
    check("AveragePool", [f32(1, 2, 9)], 11, kernel_shape=[2], pads=[2, 1], count_include_pad=count_include_pad, rtol=1e-5)
    for auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # against onnxruntime, as MaxPool's
        model = _model("AveragePool", [x], 19, auto_pad=auto_pad, kernel_shape=[3, 2], strides=[2, 2],
                       count_include_pad=count_include_pad)
        np.testing.assert_allclose(torch_run(model, [x])[0], _ort(model, [x])[0], rtol=1e-5, atol=1e-6)
    if count_include_pad == 0:  # against onnxruntime: ONNX's reference MaxPool reads asymmetric pads in another order
        for pads in ([2, 0, 2, 1], [1, 2, 0, 2]):
            model = _model("MaxPool", [x], 12, kernel_shape=[3, 3], pads=pads)
            np.testing.assert_array_equal(torch_run(model, [x])[0], _ort(model, [x])[0])


def test_depth_to_space_in_both_modes():
    x = f32(2, 8, 3, 2)
    check("DepthToSpace", [x], 13, blocksize=2)  # DCR, the default, which onnx2torch refused
    check("DepthToSpace", [x], 11, blocksize=2, mode="CRD")
    check("DepthToSpace", [f32(1, 9, 2, 2)], 1, blocksize=3)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices_over_the_whole_input(storage_order):
    """Against onnxruntime (ONNX's reference miscounts the indices without a strides attribute)."""
    x = f32(2, 3, 6, 5)
    for attrs in ({"kernel_shape": [2, 2]}, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 0]},
                  {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}):
        model = _model("MaxPool", [x], 12, 2, storage_order=storage_order, **attrs)
        model.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64
        got, want = torch_run(model, [x]), _ort(model, [x])
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1].dtype == np.int64
        np.testing.assert_array_equal(got[1], want[1])
    if storage_order == 0:
        check("MaxPool", [f32(1, 2, 7)], 12, 2, kernel_shape=[3], strides=[2])


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_arithmetic_and_comparisons(dtype):
    """torch has no uint16/32/64 kernels for these: computed wider (uint64 on its int64 view)."""
    a, b = ints(dtype, (3, 5)), ints(dtype, (5,))  # uint64 values of 2**63 and more too
    for op in ("Add", "Sub", "Mul", "Greater", "Less"):
        check(op, [a, b], 14 if op in ("Add", "Sub", "Mul") else 13)
    for op in ("GreaterOrEqual", "LessOrEqual"):
        check(op, [a, b], 16)
    for op in ("Max", "Min"):
        check(op, [a, b, ints(dtype, (1, 5))], 13)
    small_a, small_b = ints(dtype, (3, 5), 0, 1000), ints(dtype, (5,), 1, 50)
    check("Div", [small_a, small_b], 14)
    check("Mod", [small_a, small_b], 13)
    if dtype == np.uint64:
        big = np.array([2 ** 63 + 5], np.uint64)
        assert "2**63 and more are not supported" in refused("Div", [big, np.array([3], np.uint64)], 14)
