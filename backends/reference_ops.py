"""Operators onnx's reference evaluator (``onnx.reference.ReferenceEvaluator``, onnx 1.23) computes
differently from ONNX's definition, replaced by ones that follow it (:func:`fixed_ops`, for the
evaluator's ``new_ops``), or refused (:class:`RefusedNode`, one line) where that is not practical.
The ``reference`` backend and the divergence arbiter (:func:`mlms_ir.oracle.exact_outputs`, in
float64) both use them, so neither gives nor trusts a wrong value. Each was checked on a single-node
model against the operator's text (``onnx.defs.get_schema(op, version).doc``), a value derived by
hand in numpy and, where it implements the op, onnxruntime (``tests/test_reference_ops.py``):

- ``NegativeLogLikelihoodLoss`` with ``ignore_index=-1``, ``reduction=mean`` and no weights divides
  by every target; ONNX (its function body) by the targets not ignored. Ours divides by the sum of
  the weights (1 without weights) of the targets not ignored, for every ignore_index.
- ``Hardmax``, ``Softmax`` and ``LogSoftmax`` 1 and 11 get version 13's result (along ``axis``,
  default -1); those versions coerce the input to 2-D at ``axis`` (default 1) and take it over the
  flattened trailing dims (for a (2, 3, 4) Softmax-11 input, over 12 values, not 4). Ours does, per
  the node's version; Hardmax-13 and Softmax-13 are onnx's own. (onnx's version converter, which
  the arbiter applies first, also turns Hardmax-11 into 13 without keeping the 2-D view: the
  arbiter evaluates a model with Hardmax at its own opset, ``mlms_ir.oracle._KEEP_OPSET``.)
- ``LogSoftmax`` (every version) takes the log of the softmax, which underflows: [0, -200, 1] in
  float32 gives -inf where ONNX (x - max - log(sum(exp(x - max)))) gives -201.31. Ours uses that.
- ``GlobalMaxPool`` reduces the dims ``ndim-2`` and ``ndim-1`` (for a 3-D input the channel dim,
  for a 5-D one not the first spatial dim); ONNX every spatial dim. Ours takes the max over dims 2..
- ``LpNormalization`` with ``p=1`` sums x, not |x| (and p=2 and x**2 agree). Ours uses |x|.
- ``LayerNormalization`` gives ``Mean`` and ``InvStdDev`` in X's type and computes in it; ONNX in
  ``stash_type`` (float32 by default) and computes in it. Ours computes in float64 and gives
  Mean and InvStdDev in stash_type, Y in X's type.
- ``Unique`` with ``sorted=0`` takes the unique values along axis 0 whatever ``axis`` is (and, with
  no axis, rows of a tensor of rank > 1 rather than elements of the flattened tensor). Ours takes
  them along ``axis`` (from the flattened tensor without one).
- ``MatMulInteger`` subtracts a 1-D (per-row) ``a_zero_point`` along K, the last axis of A, instead
  of along M (so it fails when M != K). Ours subtracts it per row.
- ``ReduceSumSquare`` of an int32 (or other narrow integer) tensor returns int64 (numpy's sum widens
  it); ONNX keeps the input's type. Ours sums in the input's type, as ``ReduceSum`` does.
- ``LRN`` walks the batch dim where it means the channels (``for c in range(x.shape[0])``): with
  N < C the channels from N on get no square sum (a (2, 3, 5, 5) input, size 3: off by 0.094), with
  N > C it fails; and it takes 4-D inputs only. Ours sums over the channel window of any rank.
- ``MaxPool``: without strides or dilations (all 1) it reads ``pads`` in another order than
  ONNX's (x1_begin, x2_begin, ..., x1_end, ...) when they are not symmetric (pads [1, 0, 2, 1] on
  6 x 6 with a 3 x 3 kernel give 5 x 7, not 7 x 5; in 1-D and 3-D it fails), and its ``Indices``
  count positions in the padded input; ``SAME_LOWER`` gives floor(n / stride) outputs instead of
  ceil(n / stride). Ours is written from the definition:
  the output shape of the formulas above, windows over the input with the pads excluded, Indices
  the flattened position in X (row major, or column major over the spatial dims with
  ``storage_order=1``), the first maximum of a window winning.
- ``BatchNormalization`` below version 14 (6, 7, 9) with one output (the inference form)
  normalises with statistics blended from the batch's and the given ones (momentum), up to 3.5 off
  the formula Y = scale * (X - mean) / sqrt(var + epsilon) + B. Ours uses that formula; the
  training form (more than one output, or BatchNormalization-6 with ``is_test=0``) is refused.
  Version 14 and later are onnx's own.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import onnx


class RefusedNode(Exception):
    """A node configuration the reference evaluator computes wrongly and mlms_ir does not compute
    itself: one line naming the op and the setting."""


def _version(op_run, op_type: str) -> int:
    """The version of ``op_type`` the node's model (or function) imports."""
    opset = op_run.run_params.get("opsets", {}).get("") or onnx.defs.onnx_opset_version()
    return onnx.defs.get_schema(op_type, opset, "").since_version


def _with_version_schema(cls_init):
    """Load the node's attribute defaults from the schema of its own version (onnx loads the
    newest's: Hardmax's default axis is 1 before version 13, -1 since)."""

    def __init__(self, onnx_node, run_params, schema=None):  # noqa: ANN001 - onnx's signature
        if schema is None:
            opset = run_params.get("opsets", {}).get("", onnx.defs.onnx_opset_version())
            schema = onnx.defs.get_schema(onnx_node.op_type, opset, "")
        cls_init(self, onnx_node, run_params, schema)

    return __init__


def fixed_ops() -> list[type]:
    """The replacements, for ``ReferenceEvaluator(..., new_ops=...)`` (one class per op type; the
    versions are told apart from the node's opset)."""
    return list(_fixed_ops())


@functools.cache
def _fixed_ops() -> tuple[type, ...]:
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.op_batch_normalization import BatchNormalization_14 as OnnxBatchNorm14
    from onnx.reference.ops.op_hardmax import Hardmax as OnnxHardmax
    from onnx.reference.ops.op_log_softmax import LogSoftmax as OnnxLogSoftmax
    from onnx.reference.ops.op_reduce_sum_square import ReduceSumSquare_1, ReduceSumSquare_18
    from onnx.reference.ops.op_softmax import Softmax as OnnxSoftmax
    from onnx.reference.ops.op_unique import Unique as OnnxUnique

    class NegativeLogLikelihoodLoss(OpRun):
        op_domain = ""

        def _run(self, x, target, weight=None, ignore_index=None, reduction=None):  # noqa: ANN001
            reduction = (reduction.decode() if isinstance(reduction, bytes) else reduction) or "mean"
            n, c = x.shape[:2]
            x3 = x.reshape(n, c, -1)
            t = np.asarray(target).reshape(n, -1).astype(np.int64)
            keep = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
            tc = np.where(keep, t, 0)
            if np.any((tc < 0) | (tc >= c)):
                raise ValueError(f"NegativeLogLikelihoodLoss: a target is outside [0, {c})")
            picked = np.take_along_axis(x3, tc[:, np.newaxis, :], axis=1)[:, 0, :]
            w = np.ones(t.shape, dtype=x.dtype) if weight is None else np.asarray(weight)[tc].astype(x.dtype)
            w = np.where(keep, w, np.zeros((), dtype=x.dtype))
            loss = -(picked * w)
            if reduction == "none":
                return (loss.reshape(np.shape(target)).astype(x.dtype),)
            if reduction == "sum":
                return (np.array(loss.sum(), dtype=x.dtype),)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (np.array(loss.sum() / w.sum(), dtype=x.dtype),)

    def _hardmax(rows: np.ndarray) -> np.ndarray:
        y = np.zeros_like(rows)
        y[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = 1  # the first maximum
        return y

    def _softmax(rows: np.ndarray) -> np.ndarray:
        e = np.exp(rows - rows.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _log_softmax(rows: np.ndarray) -> np.ndarray:
        shifted = rows - rows.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _along(fn, x: np.ndarray, axis: int, coerce: bool) -> np.ndarray:
        """``fn`` over ``x``'s rows: the flattened trailing dims from ``axis`` (``coerce``: versions
        1 and 11's 2-D view), or the dim ``axis`` alone (version 13)."""
        axis = axis + x.ndim if axis < 0 else axis
        if x.size == 0:
            return x.copy()
        if coerce:
            rows = int(np.prod(x.shape[:axis], dtype=np.int64))
            return fn(x.reshape(rows, -1)).reshape(x.shape).astype(x.dtype)
        moved = np.moveaxis(x, axis, -1)
        return np.moveaxis(fn(moved.reshape(-1, moved.shape[-1])).reshape(moved.shape), -1, axis).astype(x.dtype)

    def _coerced_op(name: str, fn, onnx_cls, newest_is_right: bool) -> type:
        class Op(onnx_cls):
            op_domain = ""
            __init__ = _with_version_schema(onnx_cls.__init__)

            def _run(self, x, axis=None):  # noqa: ANN001
                axis = int(self.axis if axis is None else axis)
                coerce = _version(self, name) < 13
                if newest_is_right and not coerce:
                    return onnx_cls._run(self, x, axis=axis)
                return (_along(fn, x, axis, coerce),)

        Op.__name__ = Op.__qualname__ = name
        return Op

    Hardmax = _coerced_op("Hardmax", _hardmax, OnnxHardmax, True)
    Softmax = _coerced_op("Softmax", _softmax, OnnxSoftmax, True)
    LogSoftmax = _coerced_op("LogSoftmax", _log_softmax, OnnxLogSoftmax, False)

    class GlobalMaxPool(OpRun):
        op_domain = ""

        def _run(self, x):  # noqa: ANN001
            return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)

    class LpNormalization(OpRun):
        op_domain = ""

        def _run(self, x, axis=None, p=None):  # noqa: ANN001
            axis = -1 if axis is None else int(axis)
            p = 2 if p is None else int(p)
            a = np.abs(x)
            norm = (a.sum(axis=axis, keepdims=True) if p == 1
                    else np.sqrt((a * a).sum(axis=axis, keepdims=True)) if p == 2
                    else np.power(np.power(a, p).sum(axis=axis, keepdims=True), 1.0 / p))
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(norm == 0, 0, x / norm)
            return (y.astype(x.dtype),)

    class LayerNormalization(OpRun):
        op_domain = ""

        def _run(self, X, Scale, B=None, axis=None, epsilon=None, stash_type=None):  # noqa: ANN001, N803
            axis = -1 if axis is None else int(axis)
            axis = axis + X.ndim if axis < 0 else axis
            epsilon = 1e-5 if epsilon is None else float(epsilon)
            stash = onnx.helper.tensor_dtype_to_np_dtype(int(stash_type) if stash_type else onnx.TensorProto.FLOAT)
            dims = tuple(range(axis, X.ndim))
            x = X.astype(np.float64)
            mean = x.mean(axis=dims, keepdims=True)
            d = x - mean
            inv = 1.0 / np.sqrt((d * d).mean(axis=dims, keepdims=True) + epsilon)
            y = d * inv * Scale.astype(np.float64)
            if B is not None:
                y = y + B.astype(np.float64)
            return y.astype(X.dtype), mean.astype(stash), inv.astype(stash)

    class Unique(OnnxUnique):
        op_domain = ""

        def _run(self, x, axis=None, sorted=None):  # noqa: ANN001, A002
            if sorted or sorted is None:
                return super()._run(x, axis=axis, sorted=1)
            flat = axis is None or (isinstance(axis, float) and np.isnan(axis))
            data = x.reshape(-1) if flat else x
            ax = 0 if flat else int(axis) % x.ndim
            y, indices, inverse, counts = np.unique(data, True, True, True, axis=ax)
            inverse = np.asarray(inverse).reshape(-1)
            order = np.argsort(indices, kind="stable")  # first occurrence order
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            indices = indices[order]
            y = np.take(data, indices, axis=ax)
            outs = (y, indices.astype(np.int64), rank[inverse].astype(np.int64), counts[order].astype(np.int64))
            return outs[:len(self.onnx_node.output)]

    class MatMulInteger(OpRun):
        op_domain = ""

        def _run(self, A, B, a_zero_point=None, b_zero_point=None):  # noqa: ANN001, N803
            a = A.astype(np.int32)
            if a_zero_point is not None:
                za = np.asarray(a_zero_point).astype(np.int32)
                if za.size == 1:
                    za = za.reshape(())
                elif za.ndim == 1 and a.ndim >= 2:
                    za = za.reshape(-1, 1)  # per row of A: along M
                a = a - za
            b = B.astype(np.int32)
            if b_zero_point is not None:
                b = b - np.asarray(b_zero_point).astype(np.int32)
            return (np.matmul(a, b).astype(np.int32),)

    class ReduceSumSquare(ReduceSumSquare_18):
        op_domain = ""

        def _run(self, data, axes=None, keepdims=1, noop_with_empty_axes=0):  # noqa: ANN001
            if _version(self, "ReduceSumSquare") >= 18:
                (res,) = ReduceSumSquare_18._run(self, data, axes, keepdims=keepdims, noop_with_empty_axes=noop_with_empty_axes)
            else:  # axes is an attribute; the newest schema's noop_with_empty_axes default is left out
                (res,) = ReduceSumSquare_1._run(self, data, axes=axes, keepdims=keepdims)
            return (np.asarray(res).astype(data.dtype),)

    class LRN(OpRun):
        op_domain = ""

        def _run(self, x, alpha=None, beta=None, bias=None, size=None):  # noqa: ANN001
            alpha = 1e-4 if alpha is None else float(alpha)
            beta = 0.75 if beta is None else float(beta)
            bias = 1.0 if bias is None else float(bias)
            size = int(size)
            sq = x.astype(np.float64) ** 2
            channels = x.shape[1]
            total = np.zeros_like(sq)
            for c in range(channels):  # i in [c - floor((size-1)/2), c + ceil((size-1)/2)], within [0, C-1]
                lo, hi = max(0, c - (size - 1) // 2), min(channels - 1, c + size // 2)
                total[:, c] = sq[:, lo:hi + 1].sum(axis=1)
            return ((x.astype(np.float64) / (bias + alpha / size * total) ** beta).astype(x.dtype),)

    class MaxPool(OpRun):
        op_domain = ""

        def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,  # noqa: ANN001, PLR0913
                 storage_order=None, strides=None):
            return max_pool(x, kernel_shape, auto_pad, ceil_mode, dilations, pads, storage_order, strides,
                            len(self.onnx_node.output) > 1 and bool(self.onnx_node.output[1]))

    class BatchNormalization(OnnxBatchNorm14):
        op_domain = ""

        def __init__(self, onnx_node, run_params, schema=None):  # noqa: ANN001
            _with_version_schema(OnnxBatchNorm14.__init__)(self, onnx_node, run_params, schema)
            version = _version(self, "BatchNormalization")
            if version < 14:
                outputs = [o for o in onnx_node.output if o]
                is_test = getattr(self, "is_test", 1) if version < 7 else 1
                if len(outputs) > 1 or not is_test:
                    raise RefusedNode(
                        f"BatchNormalization-{version} in training mode ({len(outputs)} outputs"
                        f"{', is_test=0' if not is_test else ''}): onnx.reference computes it differently from ONNX; refused")

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None, **_):  # noqa: ANN001, ANN003
            if _version(self, "BatchNormalization") >= 14:
                return super()._run(x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum, training_mode=training_mode)
            shape = (-1,) + (1,) * (x.ndim - 2)
            if not _.get("spatial", 1):  # BatchNormalization-6/7 spatial=0: statistics per C x D1 x ... position
                shape = x.shape[1:]
            eps = 1e-5 if epsilon is None else epsilon
            y = scale.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) + bias.reshape(shape)
            return (y.astype(x.dtype),)

    return (NegativeLogLikelihoodLoss, Hardmax, Softmax, LogSoftmax, GlobalMaxPool, LpNormalization, LayerNormalization, Unique,
            MatMulInteger, ReduceSumSquare, LRN, MaxPool, BatchNormalization)


def max_pool(x: np.ndarray, kernel_shape, auto_pad=None, ceil_mode=None, dilations=None, pads=None,  # noqa: ANN001, PLR0913
             storage_order=None, strides=None, with_indices: bool = False) -> tuple[np.ndarray, ...]:
    """MaxPool as ONNX defines it (any rank, strides, dilations, pads, auto_pad, ceil_mode): Y, and
    Indices when asked."""
    kernel = [int(k) for k in kernel_shape]
    n = len(kernel)
    spatial = x.shape[2:]
    if len(spatial) != n:
        raise ValueError(f"MaxPool: kernel_shape {kernel} for a {x.ndim}-D input")
    strides = [int(s) for s in strides] if strides else [1] * n
    dil = [int(d) for d in dilations] if dilations else [1] * n
    auto_pad = (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) or "NOTSET"
    extent = [(kernel[i] - 1) * dil[i] + 1 for i in range(n)]
    begin, out = [0] * n, [0] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(n):
            out[i] = -(-spatial[i] // strides[i])
            total = max(0, (out[i] - 1) * strides[i] + extent[i] - spatial[i])
            begin[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
    elif auto_pad == "VALID":
        for i in range(n):
            span = spatial[i] - extent[i]
            out[i] = -(-(span + 1) // strides[i]) if ceil_mode else span // strides[i] + 1
    else:
        p = [int(v) for v in pads] if pads else [0] * (2 * n)
        for i in range(n):
            span = spatial[i] + p[i] + p[n + i] - extent[i]
            out[i] = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
            if ceil_mode and (out[i] - 1) * strides[i] >= spatial[i] + p[i]:
                out[i] -= 1  # a window starting in the end padding is ignored
            begin[i] = p[i]
    out = [max(0, o) for o in out]
    lead = x.shape[:2]
    xf = x.astype(np.float64) if x.dtype.kind in "iub" else x
    best = np.full((*lead, *out), -np.inf, dtype=np.float64 if x.dtype.kind in "iub" else x.dtype)
    found = np.zeros((*lead, *out), dtype=bool)
    where = np.zeros((*lead, *out), dtype=np.int64)
    grids = [np.arange(o) * strides[i] - begin[i] for i, o in enumerate(out)]
    for offsets in itertools.product(*(range(k) for k in kernel)):
        pos = [grids[i] + offsets[i] * dil[i] for i in range(n)]
        valid = [(q >= 0) & (q < spatial[i]) for i, q in enumerate(pos)]
        clipped = [np.clip(q, 0, max(spatial[i] - 1, 0)) for i, q in enumerate(pos)]
        mesh = np.ix_(*clipped)
        vals = xf[(slice(None), slice(None), *mesh)]
        ok = np.ones(out, dtype=bool)
        for i in range(n):
            ok = ok & valid[i].reshape([-1 if j == i else 1 for j in range(n)])
        take = ok & (~found | (vals > best))  # the first maximum wins
        best = np.where(take, vals, best)
        found |= ok
        if with_indices:
            idx = np.zeros(out, dtype=np.int64)
            if storage_order:  # column major over the spatial dims
                mult = 1
                for i in range(n):
                    idx = idx + clipped[i].reshape([-1 if j == i else 1 for j in range(n)]) * mult
                    mult *= spatial[i]
            else:
                for i in range(n):
                    idx = idx * spatial[i] + clipped[i].reshape([-1 if j == i else 1 for j in range(n)])
            where = np.where(take, idx, where)
    y = best.astype(x.dtype)
    if not with_indices:
        return (y,)
    per = int(np.prod(spatial, dtype=np.int64))
    base = (np.arange(lead[0])[:, None] * lead[1] + np.arange(lead[1])[None, :]) * per
    return y, where + base.reshape(*lead, *([1] * n))
