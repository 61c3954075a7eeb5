"""Converters for ONNX ops that onnx2torch 1.5 lacks, or converts wrong or not at all in some settings.

:mod:`~mlms_ir.backends.onnx2torch_compat` teaches onnx2torch newer versions of ops it knows;
this module adds what ONNX's node test cases (``tools/conformance.py``) found missing:

* ops onnx2torch has no converter for at any version (:data:`TABLE`, registered by
  :func:`mlms_ir.backends.onnx2torch_compat.patch` for every version listed): the elementwise
  ``Acosh`` ``Asinh`` ``Atanh`` ``Cosh`` ``Sinh`` ``Mish`` ``ThresholdedRelu`` ``Swish``
  ``Shrink``; the bitwise ``BitwiseAnd`` ``BitwiseOr`` ``BitwiseXor`` ``BitwiseNot`` ``BitShift``;
  ``Hardmax``, ``Trilu``, ``CumProd``, ``OneHot``, ``Compress``, ``Unique``, ``ReverseSequence``,
  ``SpaceToDepth``, ``CenterCropPad``, ``Col2Im``, ``Det``, ``BitCast``, ``Range``-27; the LLM ops
  ``Attention``, ``RMSNormalization``, ``RotaryEmbedding``, ``LinearAttention``, ``SwiGLU``,
  ``CausalConvWithState``, ``TensorScatter``; ``RNN``, ``GRU``, ``LSTM``; the losses
  ``SoftmaxCrossEntropyLoss`` and ``NegativeLogLikelihoodLoss``; ``QuantizeLinear``,
  ``DequantizeLinear``, ``DynamicQuantizeLinear``, ``MatMulInteger``, ``ConvInteger``,
  ``QLinearMatMul``; ``GlobalMaxPool``, ``LpPool``, ``MaxUnpool``, ``LpNormalization``,
  ``GroupNormalization``-21, ``GridSample``, ``AffineGrid``, ``DeformConv``, ``DFT``, the
  Hann/Hamming/Blackman windows, ``ScatterElements`` and ``Scatter``;
* replacements of onnx2torch's own converters (:data:`REPLACING`; what they replace is kept in
  :data:`OWN`): ``Flatten`` (it failed for axis 0 and -rank), ``Dropout`` (no mask output; any
  seed refused), and, where onnx2torch refused the setting or computed something torch cannot,
  otherwise calling its converter: ``Conv`` and ``ConvTranspose`` whose weight is computed at run
  time, ``Clip`` with computed bounds, ``Reshape`` with ``allowzero``=1, ``DepthToSpace`` in DCR
  mode, ``MaxPool`` with its Indices, ``MaxPool`` and ``AveragePool`` with SAME padding or pads
  over half the kernel, and the arithmetic, comparisons, ``Max``/``Min`` and ``Mod`` of uint16,
  uint32 and uint64;
* modules that onnx2torch_compat's converters hand over to: ``Reduce*``-18 with computed axes
  (:func:`reduce_computed_axes`) and ``LayerNormalization`` with its ``Mean`` and ``InvStdDev``
  outputs (:func:`layer_normalization`).

Each ONNX node still becomes one torch module (the torch backend's per-node mapping holds).

The rule: a converter computes exactly what ONNX's operator spec defines, or refuses. An attribute
value, input or dtype that is not implemented exactly raises ``NotImplementedError`` when the node
is converted (the torch backend reports it as a one-line refusal), or when the module runs where
only then it is known. Each converter is a module-level function ``(node, graph) ->
OperationConverterResult`` of onnx2torch's ``OnnxNode`` and ``OnnxGraph``; torch is imported
lazily, since it is an optional dependency.
"""

from __future__ import annotations

from collections.abc import Callable

_MODULES: dict[str, type] = {}
#: (op, version) -> the converter one of :data:`REPLACING` replaced in onnx2torch's registry (filled
#: by :func:`mlms_ir.backends.onnx2torch_compat.patch`); ours call it for the settings it handles.
OWN: dict[tuple[str, int], Callable] = {}


def _own(op: str, version: int) -> Callable:
    fn = OWN.get((op, version))
    if fn is None:
        raise NotImplementedError(f"{op}: onnx2torch has no converter of version {version} to build on")
    return fn

#: ONNX TensorProto float types -> torch dtype names (softmax_precision, stash_type).
_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _module(name: str) -> type:
    """Our torch module class ``name`` (the classes are built on first use: torch is lazy)."""
    if not _MODULES:
        _MODULES.update(_build_modules())
    return _MODULES[name]


def _result(module, node):
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _float_type(op: str, what: str, code: int) -> str:
    if code not in _FLOAT_TYPES:
        raise NotImplementedError(f"{op}: {what}={code} is not supported (float, float16, double or bfloat16 only)")
    return _FLOAT_TYPES[code]


def _outputs(node) -> int:
    """How many outputs the node asks for (the position of its last non-empty one)."""
    outs = list(node.output_values)
    return max((i + 1 for i, o in enumerate(outs) if o), default=0)


def _build_modules() -> dict[str, type]:  # noqa: C901 - one class per op
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    def dtype_of(name: str):
        return getattr(torch, name)

    class Elementwise(nn.Module):
        """A unary ONNX op that is one torch function of the input."""

        def __init__(self, op: str) -> None:
            super().__init__()
            self.op = op

        def forward(self, x):
            return getattr(torch, self.op)(x)

    class Mish(nn.Module):
        """ONNX Mish: x * tanh(softplus(x))."""

        def forward(self, x):
            return x * torch.tanh(F.softplus(x))

    class ThresholdedRelu(nn.Module):
        """ONNX ThresholdedRelu: x where x > alpha, else 0."""

        def __init__(self, alpha: float) -> None:
            super().__init__()
            self.alpha = alpha

        def forward(self, x):
            return torch.where(x > self.alpha, x, torch.zeros_like(x))

    class Swish(nn.Module):
        """ONNX Swish: x * sigmoid(alpha * x)."""

        def __init__(self, alpha: float) -> None:
            super().__init__()
            self.alpha = alpha

        def forward(self, x):
            return x * torch.sigmoid(self.alpha * x)

    class Shrink(nn.Module):
        """ONNX Shrink: x - bias where x > lambd, x + bias where x < -lambd, else 0 (in x's dtype)."""

        def __init__(self, lambd: float, bias: float) -> None:
            super().__init__()
            self.lambd, self.bias = lambd, bias

        def forward(self, x):
            wide = x.to(torch.float64) if not x.is_floating_point() else x
            y = torch.where(wide < -self.lambd, wide + self.bias,
                            torch.where(wide > self.lambd, wide - self.bias, torch.zeros_like(wide)))
            return y.to(x.dtype)

    class Hardmax(nn.Module):
        """ONNX Hardmax: 1 at the first maximum along ``axis`` (version 13), or along the input
        flattened to 2-D at ``axis`` (versions 1 and 11), 0 elsewhere."""

        def __init__(self, axis: int, coerce_2d: bool) -> None:
            super().__init__()
            self.axis, self.coerce_2d = axis, coerce_2d

        def forward(self, x):
            if x.numel() == 0:
                return x
            axis = self.axis + x.dim() if self.axis < 0 else self.axis
            if self.coerce_2d:
                shape = x.shape
                flat = x.reshape(int(torch.tensor(shape[:axis]).prod()) if axis else 1, -1)
                return self._one(flat, 1).reshape(shape)
            return self._one(x, axis)

        @staticmethod
        def _one(x, axis):
            index = torch.argmax(x, dim=axis, keepdim=True)  # the first maximum
            return torch.zeros_like(x).scatter(axis, index, torch.ones_like(index, dtype=x.dtype))

    class Trilu(nn.Module):
        """ONNX Trilu: the upper or lower triangle of the last two dims, from diagonal ``k``."""

        def __init__(self, upper: bool) -> None:
            super().__init__()
            self.upper = upper

        def forward(self, x, k=None):
            diagonal = 0 if k is None else int(k.reshape(-1)[0])
            return torch.triu(x, diagonal) if self.upper else torch.tril(x, diagonal)

    # torch computes little on uint16/32/64 (no comparison, no shift): those are viewed as the
    # signed type of their width, where the bits are the same
    signed_of = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}

    def as_signed(x):
        return x.view(signed_of[x.dtype]) if x.dtype in signed_of else x

    class Bitwise(nn.Module):
        """ONNX BitwiseAnd / BitwiseOr / BitwiseXor (broadcasting) and BitwiseNot."""

        def __init__(self, fn: str) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, a, b=None):
            fn = getattr(torch, self.fn)
            return (fn(as_signed(a)) if b is None else fn(as_signed(a), as_signed(b))).view(a.dtype)

    class BitShift(nn.Module):
        """ONNX BitShift: a shift by 0 to bits - 1 is the C shift (left wraps; right is arithmetic for
        signed types, logical for unsigned ones); a shift out of that range gives 0 (-1 for a
        negative value shifted right)."""

        def __init__(self, left: bool) -> None:
            super().__init__()
            self.left = left

        def forward(self, x, y):
            dtype, unsigned = x.dtype, not x.is_signed()
            x, y = torch.broadcast_tensors(x, y)
            if dtype == torch.uint8:  # torch computes on uint8; widen it for the same rules as the others
                x, y = x.to(torch.int16), y.to(torch.int16)
                bits = 8
            else:
                x, y = as_signed(x), as_signed(y)
                bits = torch.iinfo(x.dtype).bits
            out_of_range = (y < 0) | (y >= bits)  # a huge unsigned shift reads as negative here
            amount = torch.where(out_of_range, torch.zeros_like(y), y).to(x.dtype)
            if self.left:
                z = torch.where(out_of_range, torch.zeros_like(x), torch.bitwise_left_shift(x, amount))
                if dtype == torch.uint8:
                    z = z & 0xFF
            else:
                z = torch.bitwise_right_shift(x, amount)
                if unsigned and dtype != torch.uint8:  # arithmetic on the signed view: clear the copied sign bits
                    one = torch.ones_like(amount)
                    keep = torch.bitwise_left_shift(one, bits - torch.clamp(amount, min=1)) - 1
                    z = torch.where(amount == 0, z, z & keep)
                fill = torch.where(x < 0, torch.full_like(x, -1), torch.zeros_like(x)) if not unsigned else torch.zeros_like(x)
                z = torch.where(out_of_range, fill, z)
            return z.to(dtype) if dtype == torch.uint8 else z.view(dtype)

    class CumProd(nn.Module):
        """ONNX CumProd along a scalar ``axis`` input, optionally exclusive (starting from 1) and reversed."""

        def __init__(self, exclusive: bool, reverse: bool) -> None:
            super().__init__()
            self.exclusive, self.reverse = exclusive, reverse

        def forward(self, x, axis):
            if axis.dim() != 0 and axis.numel() != 1:
                raise ValueError("CumProd: axis must be a scalar")
            dim = int(axis.reshape(-1)[0])
            if self.reverse:
                x = torch.flip(x, (dim,))
            if self.exclusive:
                ones = torch.ones_like(x.narrow(dim, 0, 1))
                x = torch.cat([ones, x.narrow(dim, 0, x.shape[dim] - 1)], dim=dim) if x.shape[dim] else x
            y = torch.cumprod(x, dim=dim, dtype=x.dtype)
            return torch.flip(y, (dim,)) if self.reverse else y

    class RMSNormalization(nn.Module):
        """ONNX RMSNormalization: X / sqrt(mean(X^2 over axis..) + epsilon) in ``stash_type``,
        cast back to X's dtype, times Scale."""

        def __init__(self, axis: int, epsilon: float, stash: str) -> None:
            super().__init__()
            self.axis, self.epsilon, self.stash = axis, epsilon, stash

        def forward(self, x, scale):
            axis = self.axis + x.dim() if self.axis < 0 else self.axis
            xs = x.to(dtype_of(self.stash))
            mean = (xs * xs).mean(dim=tuple(range(axis, x.dim())), keepdim=True)
            normalized = (xs / torch.sqrt(mean + self.epsilon)).to(x.dtype)
            return normalized * scale

    class Loss(nn.Module):
        """ONNX NegativeLogLikelihoodLoss (and SoftmaxCrossEntropyLoss, on the log-softmax of the
        scores over dim 1): -input[n, target[n, d...], d...] * weight[target], 0 where target is
        ``ignore_index``; 'mean' divides the sum by the weights of the targets not ignored."""

        def __init__(self, reduction: str, ignore_index: int | None, softmax: bool, log_prob: bool) -> None:
            super().__init__()
            self.reduction, self.ignore_index, self.softmax, self.log_prob = reduction, ignore_index, softmax, log_prob

        def forward(self, scores, labels, weights=None):
            if scores.dim() < 2:
                raise ValueError("the scores must have at least 2 dims [N, C, ...]")
            inp = torch.log_softmax(scores, dim=1) if self.softmax else scores
            labels = labels.to(torch.int64)
            valid = labels != self.ignore_index if self.ignore_index is not None else torch.ones_like(labels, dtype=torch.bool)
            target = torch.where(valid, labels, torch.zeros_like(labels))
            c = scores.shape[1]
            if bool(((target < 0) | (target >= c)).any()):
                raise ValueError(f"a target is out of [0, {c}) and not ignore_index")
            picked = -torch.gather(inp, 1, target.unsqueeze(1)).squeeze(1)
            w = weights[target] if weights is not None else torch.ones_like(picked)
            w = torch.where(valid, w, torch.zeros_like(w))
            loss = picked * w
            if self.reduction == "sum":
                loss = loss.sum()
            elif self.reduction == "mean":
                loss = loss.sum() / w.sum()
            return (loss, inp) if self.log_prob else loss

    class RotaryEmbedding(nn.Module):
        """ONNX RotaryEmbedding on [B, heads, S, head] or [B, S, heads * head] input."""

        def __init__(self, interleaved: bool, rotary_dim: int, num_heads: int) -> None:
            super().__init__()
            self.interleaved, self.rotary_dim, self.num_heads = interleaved, rotary_dim, num_heads

        def forward(self, x, cos_cache, sin_cache, position_ids=None):
            shape = x.shape
            if x.dim() == 4:
                x = x.transpose(1, 2)  # [B, S, heads, head]
            elif x.dim() == 3:
                if not self.num_heads:
                    raise ValueError("RotaryEmbedding: a 3-D input needs num_heads")
                x = x.reshape(shape[0], shape[1], self.num_heads, shape[2] // self.num_heads)
            else:
                raise ValueError("RotaryEmbedding: the input must be 3-D or 4-D")
            dim = self.rotary_dim or x.shape[3]
            rotate, keep = x[..., :dim], x[..., dim:]
            if position_ids is not None:
                cos_cache, sin_cache = cos_cache[position_ids.to(torch.int64)], sin_cache[position_ids.to(torch.int64)]
            if cos_cache.shape[-1] != dim // 2 or sin_cache.shape[-1] != dim // 2:
                raise ValueError(f"RotaryEmbedding: the caches' last dim must be {dim // 2}")
            cos, sin = cos_cache.unsqueeze(2), sin_cache.unsqueeze(2)
            if self.interleaved:
                x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
            else:
                x1, x2 = rotate[..., : dim // 2], rotate[..., dim // 2:]
            real = cos * x1 - sin * x2
            imag = sin * x1 + cos * x2
            if self.interleaved:
                rotated = torch.stack([real, imag], dim=-1).reshape(rotate.shape)
            else:
                rotated = torch.cat([real, imag], dim=-1)
            out = torch.cat([rotated.to(x.dtype), keep], dim=-1)
            return out.reshape(shape) if len(shape) == 3 else out.transpose(1, 2)

    class Attention(nn.Module):
        """ONNX Attention-23/24/25: scaled dot-product attention with optional mask, KV cache,
        causal and sliding-window masks, grouped KV heads, softcap, a softmax precision and the
        qk_matmul_output modes; a fully masked row gives 0 (as ONNX's reference computes it)."""

        def __init__(self, attrs: dict, outputs: int) -> None:
            super().__init__()
            self.scale = attrs.get("scale")
            self.is_causal = bool(attrs.get("is_causal", 0))
            self.q_num_heads, self.kv_num_heads = attrs.get("q_num_heads"), attrs.get("kv_num_heads")
            self.softmax_precision = attrs.get("softmax_precision")
            self.softcap = float(attrs.get("softcap", 0.0))
            self.mode = int(attrs.get("qk_matmul_output_mode", 0))
            self.left, self.right = int(attrs.get("left_window_size", -1)), int(attrs.get("right_window_size", -1))
            self.outputs = outputs

        def forward(self, q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
            if (past_key is None) != (past_value is None):
                raise ValueError("Attention: past_key and past_value must be given together")
            if nonpad_kv_seqlen is not None and past_key is not None:
                raise ValueError("Attention: nonpad_kv_seqlen cannot be combined with past_key/past_value")
            if not q.dim() == k.dim() == v.dim():
                raise ValueError("Attention: Q, K and V must have the same rank")
            three_d = q.dim() == 3
            batch = q.shape[0]
            if three_d:
                if self.q_num_heads is None or self.kv_num_heads is None:
                    raise ValueError("Attention: 3-D inputs need q_num_heads and kv_num_heads")
                q = q.reshape(batch, q.shape[1], self.q_num_heads, -1).transpose(1, 2)
                k = k.reshape(batch, k.shape[1], self.kv_num_heads, -1).transpose(1, 2)
                v = v.reshape(batch, v.shape[1], self.kv_num_heads, -1).transpose(1, 2)
            elif q.dim() != 4:
                raise ValueError("Attention: Q, K and V must be 3-D or 4-D")
            dt = q.dtype
            scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[3])
            root = torch.tensor(scale, dtype=torch.float64).sqrt().to(dt)
            present_key = torch.cat([past_key, k], dim=2) if past_key is not None else k
            present_value = torch.cat([past_value, v], dim=2) if past_value is not None else v
            k, v = present_key, present_value
            sq, skv = q.shape[2], k.shape[2]
            neg_inf = torch.tensor(float("-inf"), dtype=dt)
            zero = torch.tensor(0.0, dtype=dt)
            bias = torch.zeros((sq, skv), dtype=dt, device=q.device)
            if attn_mask is not None:
                pad = skv - attn_mask.shape[-1]
                if pad > 0:
                    filler = torch.full((*attn_mask.shape[:-1], pad), False if attn_mask.dtype == torch.bool else float("-inf"),
                                        dtype=attn_mask.dtype, device=attn_mask.device)
                    attn_mask = torch.cat([attn_mask, filler], dim=-1)
                attn_mask = torch.where(attn_mask, zero, neg_inf) if attn_mask.dtype == torch.bool else attn_mask.to(dt)
            if past_key is None and nonpad_kv_seqlen is not None:
                offset = (nonpad_kv_seqlen.reshape(-1).to(torch.int64) - sq).reshape(-1, 1, 1)  # per batch
            else:
                offset = past_key.shape[2] if past_key is not None else 0
            i = torch.arange(sq, device=q.device).reshape(sq, 1)
            j = torch.arange(skv, device=q.device).reshape(1, skv)

            def frontier(allowed, base):
                mask = torch.where(allowed, zero, neg_inf)
                return base + (mask.reshape(mask.shape[0], 1, sq, skv) if mask.dim() == 3 else mask)

            windowed = self.left >= 0 or self.right >= 0
            if self.is_causal:
                base = attn_mask if attn_mask is not None else torch.zeros((sq, skv), dtype=dt, device=q.device)
                if windowed:
                    base = torch.zeros((sq, skv), dtype=dt, device=q.device) + base
                bias = frontier(j <= i + offset, base)
            elif attn_mask is not None:
                bias = bias + attn_mask
            if windowed:
                bias = torch.zeros((sq, skv), dtype=dt, device=q.device) + bias
                diff = (i + offset) - j
                allowed = torch.ones_like(diff, dtype=torch.bool)
                if self.left >= 0:
                    allowed = allowed & (diff <= self.left)
                if self.right >= 0:
                    allowed = allowed & (-diff <= self.right)
                bias = frontier(allowed, bias)
            if nonpad_kv_seqlen is not None:
                padding = torch.arange(skv, device=q.device) < nonpad_kv_seqlen.to(torch.int64).reshape(-1, 1)
                bias = bias + torch.where(padding, zero, neg_inf).reshape(batch, 1, 1, skv)
            q_heads, kv_heads = q.shape[1], k.shape[1]
            if q_heads != kv_heads:
                if q_heads % kv_heads or v.shape[1] != kv_heads:
                    raise ValueError(f"Attention: {q_heads} query heads cannot share {kv_heads} key/value heads")
                k = k.repeat_interleave(q_heads // kv_heads, dim=1)
                v = v.repeat_interleave(q_heads // kv_heads, dim=1)
            qk = torch.matmul(q * root, k.transpose(2, 3) * root)
            raw = qk
            if self.softcap > 0:
                qk = torch.tanh(qk / self.softcap) * self.softcap
            with_bias = qk + bias
            scores = with_bias
            if self.softmax_precision is not None:
                scores = scores.to(dtype_of(self.softmax_precision))
            row_max = scores.amax(dim=-1, keepdim=True)
            masked_row = torch.isneginf(row_max)
            e = torch.exp(scores - torch.where(masked_row, torch.zeros_like(row_max), row_max))
            total = e.sum(dim=-1, keepdim=True)
            probs = e / torch.where(total == 0, torch.ones_like(total), total)
            all_masked = torch.isneginf(bias.amax(dim=-1, keepdim=True))
            probs = torch.where(all_masked, torch.zeros_like(probs), probs)
            qk_out = {0: raw, 1: qk, 2: with_bias, 3: probs}[self.mode].to(dt)
            y = torch.matmul(probs.to(dt), v)
            if three_d:
                y = y.transpose(1, 2).reshape(batch, sq, -1)
            outs = (y, present_key, present_value, qk_out)[: self.outputs]
            return outs[0] if self.outputs == 1 else outs

    class OneHot(nn.Module):
        """ONNX OneHot: ``values[1]`` where the index (negative ones counted from ``depth``) equals
        the position along the new ``axis``, ``values[0]`` elsewhere (also for indices out of range)."""

        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, indices, depth, values):
            d = depth.reshape(-1)[0]
            d = int(d) if not d.is_floating_point() else int(torch.floor(d))  # 'depth' is cast to int
            axis = self.axis + indices.dim() + 1 if self.axis < 0 else self.axis
            idx = indices.to(torch.int64) if not indices.is_floating_point() else torch.trunc(indices).to(torch.int64)
            idx = torch.where(idx < 0, idx + d, idx)
            positions = torch.arange(d, device=indices.device).reshape([d] + [1] * (indices.dim() - axis))
            hot = idx.unsqueeze(axis) == positions
            off, on = values.reshape(-1)[0], values.reshape(-1)[1]
            return torch.where(hot, on, off)

    class SpaceToDepth(nn.Module):
        """ONNX SpaceToDepth (DCR, or CRD at version 28) on [N, C, H, W]."""

        def __init__(self, blocksize: int, crd: bool) -> None:
            super().__init__()
            self.b, self.crd = blocksize, crd

        def forward(self, x):
            n, c, h, w = x.shape
            b = self.b
            if h % b or w % b:
                raise ValueError(f"SpaceToDepth: H and W ({h}, {w}) must be multiples of the blocksize {b}")
            y = x.reshape(n, c, h // b, b, w // b, b)
            y = y.permute(0, 1, 3, 5, 2, 4) if self.crd else y.permute(0, 3, 5, 1, 2, 4)
            return y.reshape(n, c * b * b, h // b, w // b)

    class GlobalMaxPool(nn.Module):
        """ONNX GlobalMaxPool: the maximum over all spatial dims, kept as size 1."""

        def forward(self, x):
            return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True) if x.dim() > 2 else x

    class LpNormalization(nn.Module):
        """ONNX LpNormalization: x / (sum |x|^p along axis)^(1/p), p 1 or 2; 0 where the norm is 0."""

        def __init__(self, axis: int, p: int) -> None:
            super().__init__()
            self.axis, self.p = axis, p

        def forward(self, x):
            if self.p == 1:
                norm = x.abs().sum(dim=self.axis, keepdim=True)
            else:
                norm = torch.sqrt((x * x).sum(dim=self.axis, keepdim=True))
            return torch.where(norm == 0, torch.zeros_like(x), x / norm)  # 0 where the norm is 0 (version 22's rule)

    class Det(nn.Module):
        """ONNX Det: the determinant of the last two dims."""

        def forward(self, x):
            return torch.linalg.det(x)

    class Compress(nn.Module):
        """ONNX Compress: the slices along ``axis`` (of the flattened input without one) where the
        condition is true; the condition may be shorter than the dim."""

        def __init__(self, axis: int | None) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, x, condition):
            cond = condition.reshape(-1).to(torch.bool)
            if self.axis is None:
                x, axis = x.reshape(-1), 0
            else:
                axis = self.axis + x.dim() if self.axis < 0 else self.axis
            if cond.numel() > x.shape[axis]:
                raise ValueError(f"Compress: the condition has {cond.numel()} entries, the axis {x.shape[axis]}")
            index = torch.nonzero(cond).reshape(-1)
            return torch.index_select(x, axis, index)

    class ReverseSequence(nn.Module):
        """ONNX ReverseSequence: along ``time_axis``, the first ``sequence_lens[b]`` elements of each
        batch entry reversed, the rest kept."""

        def __init__(self, batch_axis: int, time_axis: int) -> None:
            super().__init__()
            self.batch_axis, self.time_axis = batch_axis, time_axis

        def forward(self, x, sequence_lens):
            lens = sequence_lens.to(torch.int64).reshape(-1)
            t = x.shape[self.time_axis]
            pos = torch.arange(t, device=x.device).reshape(1, t)
            src = torch.where(pos < lens.reshape(-1, 1), lens.reshape(-1, 1) - 1 - pos, pos)  # [batch, time]
            shape = [1] * x.dim()
            shape[self.batch_axis], shape[self.time_axis] = src.shape[0], t
            if self.batch_axis > self.time_axis:
                src = src.transpose(0, 1)
            index = src.reshape(shape).expand(x.shape)
            return torch.gather(x, self.time_axis, index)

    class SwiGLU(nn.Module):
        """ONNX SwiGLU: A * sigmoid(alpha * A) * B, A and B of one shape."""

        def __init__(self, alpha: float) -> None:
            super().__init__()
            self.alpha = alpha

        def forward(self, a, b):
            if a.shape != b.shape:
                raise ValueError(f"SwiGLU: A {list(a.shape)} and B {list(b.shape)} must have one shape")
            return a * torch.sigmoid(self.alpha * a) * b

    class Reduce(nn.Module):
        """An ONNX ``Reduce*``-18 whose ``axes`` come at run time (an input, not a constant); the
        result keeps the input's dtype, and an empty set reduces to ONNX's identity value."""

        def __init__(self, op: str, keepdims: bool, noop: bool) -> None:
            super().__init__()
            self.op, self.keepdims, self.noop = op, keepdims, noop

        def forward(self, x, axes=None):
            if axes is None or axes.numel() == 0:
                if self.noop:
                    return x
                dims = list(range(x.dim()))
            else:
                rank = x.dim()
                dims = [int(a) for a in axes.reshape(-1).tolist()]
                if any(not -rank <= a < max(rank, 1) for a in dims):
                    raise ValueError(f"{self.op}: axes {dims} out of range for rank {rank}")
                if len({a % rank for a in dims}) < len(dims):
                    raise ValueError(f"{self.op}: axes {dims} name a dim twice")
                dims = sorted({a % rank for a in dims}) if rank else []
            if not dims:
                return x
            op, dtype = self.op, x.dtype
            if op in ("ReduceMean", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp") and not x.is_floating_point():
                raise NotImplementedError(f"{op}: {dtype} input is not supported (float types only)")
            if op in ("ReduceMax", "ReduceMin"):
                wide = x.to(torch.uint8) if dtype == torch.bool else x
                if wide.numel() == 0:
                    if dtype == torch.bool:
                        fill = op == "ReduceMin"
                    elif wide.is_floating_point():
                        fill = float("-inf") if op == "ReduceMax" else float("inf")
                    else:
                        info = torch.iinfo(dtype)
                        fill = info.min if op == "ReduceMax" else info.max
                    shape = [1 if d in dims else n for d, n in enumerate(x.shape)] if self.keepdims else \
                        [n for d, n in enumerate(x.shape) if d not in dims]
                    return torch.full(shape, fill, dtype=dtype, device=x.device)
                y = (torch.amax if op == "ReduceMax" else torch.amin)(wide, dim=dims, keepdim=self.keepdims)
                return y.to(dtype)
            if op == "ReduceProd":
                y = x
                for d in sorted(dims, reverse=True):
                    y = torch.prod(y, dim=d, keepdim=self.keepdims, dtype=dtype)
                return y
            if op == "ReduceLogSumExp":
                return torch.logsumexp(x, dim=dims, keepdim=self.keepdims)
            if op == "ReduceMean":
                return torch.mean(x, dim=dims, keepdim=self.keepdims)
            base = {"ReduceSum": x, "ReduceL1": x.abs(), "ReduceL2": x * x, "ReduceSumSquare": x * x, "ReduceLogSum": x}[op]
            y = torch.sum(base, dim=dims, keepdim=self.keepdims, dtype=dtype)
            if op == "ReduceL2":
                y = torch.sqrt(y)
            elif op == "ReduceLogSum":
                y = torch.log(y)
            return y

    class Flatten(nn.Module):
        """ONNX Flatten: [prod(dims before axis), prod(dims from axis)], for any axis in [-rank, rank]."""

        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, x):
            rank = x.dim()
            axis = self.axis + rank if self.axis < 0 else self.axis
            if not 0 <= axis <= rank:
                raise ValueError(f"Flatten: axis {self.axis} is out of range for rank {rank}")
            outer = 1
            for n in x.shape[:axis]:
                outer *= int(n)
            inner = 1
            for n in x.shape[axis:]:
                inner *= int(n)
            return x.reshape(outer, inner)

    class LayerNormalization(nn.Module):
        """ONNX LayerNormalization-17 with its Mean and InvStdDev outputs: computed in
        ``stash_type`` over the dims from ``axis``, Y cast back to X's dtype then scaled and shifted."""

        def __init__(self, axis: int, epsilon: float, stash: str, outputs: int) -> None:
            super().__init__()
            self.axis, self.epsilon, self.stash, self.outputs = axis, epsilon, stash, outputs

        def forward(self, x, scale, bias=None):
            axis = self.axis + x.dim() if self.axis < 0 else self.axis
            dims = tuple(range(axis, x.dim()))
            xs = x.to(dtype_of(self.stash))
            mean = xs.mean(dim=dims, keepdim=True)
            d = xs - mean
            inv_std = torch.reciprocal(torch.sqrt((d * d).mean(dim=dims, keepdim=True) + self.epsilon))
            y = (d * inv_std).to(x.dtype) * scale
            if bias is not None:
                y = y + bias
            return (y, mean, inv_std)[: self.outputs] if self.outputs > 1 else y

    def quant_param(value, x, axis: int, block_size: int):
        """A scale or zero point broadcast to x: per tensor, per axis (1-D) or blocked."""
        if value.dim() == 0:
            return value
        if value.numel() == 1:
            return value.reshape(())
        axis = axis + x.dim() if axis < 0 else axis
        if not block_size:
            if value.dim() != 1 or not 0 <= axis < x.dim() or value.shape[0] != x.shape[axis]:
                raise ValueError(f"a per-axis scale or zero point of shape {list(value.shape)} does not fit {list(x.shape)} "
                                 f"at axis {axis}")
            shape = [1] * x.dim()
            shape[axis] = value.shape[0]
            return value.reshape(shape)
        full = value.repeat_interleave(block_size, dim=axis)
        full = full.narrow(axis, 0, min(full.shape[axis], x.shape[axis]))
        if list(full.shape) != list(x.shape):
            raise ValueError(f"a blocked scale or zero point of shape {list(value.shape)} does not fit {list(x.shape)} with "
                             f"block_size {block_size} at axis {axis}")
        return full

    integer_inputs = (torch.int8, torch.uint8, torch.int16, torch.uint16, torch.int32)

    class DequantizeLinear(nn.Module):
        """ONNX DequantizeLinear of 8-, 16- and 32-bit integers: (x - zero_point) * scale, per
        tensor, axis or block, computed in float32 (exact for these integers), then cast to the
        output type (the scale's, or ``output_dtype``)."""

        def __init__(self, axis: int, block_size: int, output: str | None) -> None:
            super().__init__()
            self.axis, self.block_size, self.output = axis, block_size, output

        def forward(self, x, x_scale, x_zero_point=None):
            if x.dtype not in integer_inputs:
                raise NotImplementedError(f"DequantizeLinear: {x.dtype} input is not supported (8-, 16- and 32-bit integers)")
            dx = x.to(torch.int64)
            if x_zero_point is not None:
                if x_zero_point.dtype != x.dtype:
                    raise ValueError(f"DequantizeLinear: zero point of {x_zero_point.dtype} for {x.dtype} input")
                dx = dx - quant_param(x_zero_point.to(torch.int64), x, self.axis, self.block_size)
            if x.dtype == torch.int32 and bool((dx.abs() > 2 ** 24).any()):
                raise NotImplementedError("DequantizeLinear: int32 values beyond 2**24 are not supported (float32 arithmetic)")
            y = dx.to(torch.float32) * quant_param(x_scale, x, self.axis, self.block_size).to(torch.float32)
            return y.to(dtype_of(self.output) if self.output else x_scale.dtype)

    ranges = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767)}

    class QuantizeLinear(nn.Module):
        """ONNX QuantizeLinear to 8- and 16-bit integers: round(x / scale), half to even, plus the
        zero point, saturated; the division in the scale's type (or ``precision``)."""

        def __init__(self, axis: int, block_size: int, output: str | None, precision: str | None) -> None:
            super().__init__()
            self.axis, self.block_size, self.output, self.precision = axis, block_size, output, precision

        def forward(self, x, y_scale, y_zero_point=None):
            out = dtype_of(self.output) if self.output else torch.uint8
            if y_zero_point is not None:
                if self.output and y_zero_point.dtype != out:
                    raise ValueError(f"QuantizeLinear: output_dtype {out} but a zero point of {y_zero_point.dtype}")
                out = y_zero_point.dtype
            if out not in ranges:
                raise NotImplementedError(f"QuantizeLinear: output type {out} is not supported (8- and 16-bit integers)")
            scale = quant_param(y_scale, x, self.axis, self.block_size)
            if self.precision:
                work = dtype_of(self.precision)
            else:
                work = scale.dtype
                if x.dtype != work:  # the spec divides in the scale's type, ONNX's reference in numpy's promotion
                    raise NotImplementedError(f"QuantizeLinear: {x.dtype} input with a {work} scale is not supported without "
                                              "the precision attribute")
            q = torch.round(x.to(work) / scale.to(work)).to(torch.int64)
            if y_zero_point is not None:
                q = q + quant_param(y_zero_point.to(torch.int64), x, self.axis, self.block_size)
            low, high = ranges[out]
            return torch.clamp(q, low, high).to(out)

    class LinearAttention(nn.Module):
        """ONNX LinearAttention-27: the recurrence of ``update_rule`` run token by token in float32
        on [B, T, H * D] inputs, with grouped KV heads; outputs the attention and the last state."""

        def __init__(self, rule: str, q_heads: int, kv_heads: int, scale: float, outputs: int) -> None:
            super().__init__()
            self.rule, self.q_heads, self.kv_heads, self.scale, self.outputs = rule, q_heads, kv_heads, scale, outputs

        def forward(self, query, key, value, past_state=None, decay=None, beta=None):
            gating, delta = self.rule in ("gated", "gated_delta"), self.rule in ("delta", "gated_delta")
            if gating != (decay is not None) or delta != (beta is not None):
                raise ValueError(f"LinearAttention: update_rule '{self.rule}' takes decay for gated rules and beta for delta "
                                 "rules, and neither otherwise")
            if not query.dim() == key.dim() == value.dim() == 3:
                raise ValueError("LinearAttention: query, key and value must be 3-D [B, T, H * D]")
            b, t, _ = query.shape
            hq, hkv = self.q_heads, self.kv_heads

            def heads(x, n):
                if x.shape[-1] % n:
                    raise ValueError(f"LinearAttention: last dim {x.shape[-1]} not divisible by {n} heads")
                return x.reshape(x.shape[0], x.shape[1], n, x.shape[-1] // n).transpose(1, 2).to(torch.float32)

            q4, k4, v4 = heads(query, hq), heads(key, hkv), heads(value, hkv)
            dk, dv = q4.shape[-1], v4.shape[-1]
            if decay is not None:
                if decay.dim() != 3 or decay.shape[-1] not in (hkv, hkv * dk):
                    raise ValueError(f"LinearAttention: decay of shape {list(decay.shape)}")
                g4 = heads(decay, hkv)  # (B, H_kv, T, 1 or d_k)
            if beta is not None:
                if beta.dim() != 3 or beta.shape[-1] not in (hkv, 1):
                    raise ValueError(f"LinearAttention: beta of shape {list(beta.shape)}")
                beta4 = beta.reshape(b, t, beta.shape[-1], 1).transpose(1, 2).to(torch.float32)
            if past_state is not None:
                if list(past_state.shape) != [b, hkv, dk, dv]:
                    raise ValueError(f"LinearAttention: past_state of shape {list(past_state.shape)}, not {[b, hkv, dk, dv]}")
                state_dtype, state = past_state.dtype, past_state.to(torch.float32)
            else:
                state_dtype = query.dtype
                state = torch.zeros((b, hkv, dk, dv), dtype=torch.float32, device=query.device)
            scale = self.scale if self.scale else 1.0 / float(dk) ** 0.5
            outs = []
            for i in range(t):
                k_t, v_t = k4[:, :, i, :], v4[:, :, i, :]
                if gating:
                    state = state * torch.exp(g4[:, :, i, :])[..., None]
                if delta:
                    retrieved = torch.einsum("bhdm,bhd->bhm", state, k_t)
                    v_t = beta4[:, :, i, :] * (v_t - retrieved)
                state = state + k_t[..., :, None] * v_t[..., None, :]
                read = state.repeat_interleave(hq // hkv, dim=1) if hq != hkv else state
                outs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, i, :], read))
            out = torch.stack(outs, dim=2) if outs else torch.zeros((b, hq, 0, dv), dtype=torch.float32, device=query.device)
            out = out.transpose(1, 2).reshape(b, t, hq * dv).to(query.dtype)
            return (out, state.to(state_dtype)) if self.outputs > 1 else out

    class GridSample(nn.Module):
        """ONNX GridSample as torch's grid_sample (the same coordinate mapping, rounding and
        padding for the settings the converter lets through)."""

        def __init__(self, mode: str, padding: str, align_corners: bool) -> None:
            super().__init__()
            self.mode, self.padding, self.align_corners = mode, padding, align_corners

        def forward(self, x, grid):
            if self.mode == "bicubic" and x.dim() != 4:
                raise NotImplementedError("GridSample: cubic of a 3-D image is not supported (torch has 2-D bicubic only)")
            if x.dim() not in (4, 5):
                raise NotImplementedError(f"GridSample: a {x.dim() - 2}-D image is not supported (2-D and 3-D only)")
            return F.grid_sample(x, grid.to(x.dtype), mode=self.mode, padding_mode=self.padding, align_corners=self.align_corners)

    class ScatterElements(nn.Module):
        """ONNX ScatterElements (and Scatter): updates written, or combined with add / mul / max /
        min, at ``indices`` along ``axis`` (negative indices count from the end)."""

        def __init__(self, axis: int, reduction: str) -> None:
            super().__init__()
            self.axis, self.reduction = axis, reduction

        def forward(self, data, indices, updates):
            axis = self.axis + data.dim() if self.axis < 0 else self.axis
            n = data.shape[axis]
            idx = indices.to(torch.int64)
            if bool(((idx < -n) | (idx >= n)).any()):
                raise ValueError(f"ScatterElements: an index is out of [-{n}, {n})")
            idx = torch.where(idx < 0, idx + n, idx)
            if self.reduction == "none":
                if idx.numel():  # two updates of one element: ONNX leaves the order open, torch too
                    flat = torch.zeros(data.shape, dtype=torch.int64, device=data.device)
                    flat = flat.scatter_add(axis, idx, torch.ones_like(idx))
                    if int(flat.max()) > 1:
                        raise NotImplementedError("ScatterElements: indices that write one element twice are not supported "
                                                  "(the order is undefined)")
                return torch.scatter(data, axis, idx, updates)
            reduce = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[self.reduction]
            return torch.scatter_reduce(data, axis, idx, updates, reduce=reduce, include_self=True)

    class CausalConvWithState(nn.Module):
        """ONNX CausalConvWithState-27: a depthwise causal conv1d over [past_state (zeros), input],
        optionally SiLU (in float32); also the last k - 1 positions as the new state."""

        def __init__(self, silu: bool, outputs: int) -> None:
            super().__init__()
            self.silu, self.outputs = silu, outputs

        def forward(self, x, weight, bias=None, past_state=None):
            if x.dim() != 3 or weight.dim() != 3:
                raise ValueError("CausalConvWithState: input and weight must be 3-D")
            b, c, _ = x.shape
            k = weight.shape[2]
            pad = past_state if past_state is not None else torch.zeros((b, c, k - 1), dtype=x.dtype, device=x.device)
            padded = torch.cat([pad, x], dim=2)
            y = F.conv1d(padded, weight, bias, groups=c)
            if self.silu:
                y32 = y.to(torch.float32)
                y = (y32 * torch.sigmoid(y32)).to(x.dtype)
            state = padded[:, :, padded.shape[2] - (k - 1):]
            return (y, state) if self.outputs > 1 else y

    class Conv(nn.Module):
        """ONNX Conv whose weight (or bias) is an input computed at run time: explicit or automatic
        (SAME_UPPER, SAME_LOWER, VALID) padding, strides, dilations and groups, 1-D to 3-D."""

        def __init__(self, auto_pad: str, pads: list[int] | None, strides: list[int] | None, dilations: list[int] | None,
                     group: int) -> None:
            super().__init__()
            self.auto_pad, self.pads, self.strides, self.dilations, self.group = auto_pad, pads, strides, dilations, group

        def forward(self, x, weight, bias=None):
            n = x.dim() - 2
            if n not in (1, 2, 3) or weight.dim() != x.dim():
                raise NotImplementedError(f"Conv: a {n}-D convolution is not supported (1-D to 3-D)")
            strides = self.strides or [1] * n
            dilations = self.dilations or [1] * n
            begin, end = same_pads(self.auto_pad, x.shape[2:], list(weight.shape[2:]), strides, dilations, self.pads)
            x = torch_pad(x, begin, end)
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
            return conv(x, weight, bias, stride=strides, dilation=dilations, groups=self.group)

    def same_pads(auto_pad, sizes, kernel, strides, dilations, pads):
        """(begin, end) pads of each spatial dim, explicit or from auto_pad."""
        n = len(kernel)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, k, st, d in zip(sizes, kernel, strides, dilations):
                total = max(0, (-(-int(size) // st) - 1) * st + (k - 1) * d + 1 - int(size))
                begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
                end.append(total - begin[-1])
            return begin, end
        if auto_pad == "VALID":
            return [0] * n, [0] * n
        pads = pads or [0] * (2 * n)
        return list(pads[:n]), list(pads[n:])

    def torch_pad(x, begin, end):
        flat = []
        for b, e in zip(reversed(begin), reversed(end)):  # F.pad takes the last dim first
            flat += [b, e]
        return F.pad(x, flat) if any(flat) else x

    class LpPool(nn.Module):
        """ONNX LpPool: (sum over each window of |x|^p)^(1/p), zeros in the padding (a depthwise
        convolution with a kernel of ones)."""

        def __init__(self, p: float, kernel: list[int], auto_pad: str, pads, strides, dilations) -> None:
            super().__init__()
            self.p, self.kernel, self.auto_pad, self.pads = p, kernel, auto_pad, pads
            self.strides, self.dilations = strides or [1] * len(kernel), dilations or [1] * len(kernel)

        def forward(self, x):
            n = len(self.kernel)
            if x.dim() != n + 2 or n not in (1, 2, 3):
                raise NotImplementedError(f"LpPool: a {x.dim() - 2}-D input with a {n}-D kernel is not supported")
            begin, end = same_pads(self.auto_pad, x.shape[2:], self.kernel, self.strides, self.dilations, self.pads)
            powered = torch_pad(x.abs() ** self.p, begin, end)
            ones = torch.ones((x.shape[1], 1, *self.kernel), dtype=x.dtype, device=x.device)
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
            return conv(powered, ones, stride=self.strides, dilation=self.dilations, groups=x.shape[1]) ** (1.0 / self.p)

    class CenterCropPad(nn.Module):
        """ONNX CenterCropPad: each axis cropped or zero-padded to its size, centred (an odd
        difference puts the extra element at the end)."""

        def __init__(self, axes: list[int] | None) -> None:
            super().__init__()
            self.axes = axes

        def forward(self, x, shape):
            sizes = [int(v) for v in shape.reshape(-1).tolist()]
            axes = self.axes if self.axes is not None else list(range(x.dim()))
            if len(axes) != len(sizes):
                raise ValueError(f"CenterCropPad: {len(sizes)} sizes for {len(axes)} axes")
            for axis, size in zip(axes, sizes):
                axis = axis + x.dim() if axis < 0 else axis
                dim = x.shape[axis]
                if size < dim:
                    x = x.narrow(axis, (dim - size) // 2, size)
                elif size > dim:
                    shape_ = list(x.shape)
                    shape_[axis] = size
                    out = torch.zeros(shape_, dtype=x.dtype, device=x.device)
                    out.narrow(axis, (size - dim) // 2, dim).copy_(x)
                    x = out
            return x

    class Unique(nn.Module):
        """ONNX Unique: the unique values (or slices along ``axis``), sorted or in order of first
        occurrence, with the first occurrences' indices, the inverse indices and the counts."""

        def __init__(self, axis: int | None, sort: bool, outputs: int) -> None:
            super().__init__()
            self.axis, self.sort, self.outputs = axis, sort, outputs

        def forward(self, x):
            if self.axis is None:
                flat = x.reshape(-1)
                y, inverse, counts = torch.unique(flat, sorted=True, return_inverse=True, return_counts=True)
                axis, length = 0, flat.shape[0]
            else:
                axis = self.axis + x.dim() if self.axis < 0 else self.axis
                y, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=axis)
                length = x.shape[axis]
            inverse = inverse.reshape(-1)
            first = torch.full((counts.shape[0],), length, dtype=torch.int64, device=x.device)
            first = first.scatter_reduce(0, inverse, torch.arange(length, device=x.device), reduce="amin")
            if not self.sort:
                order = torch.argsort(first)
                rank = torch.empty_like(order)
                rank[order] = torch.arange(order.shape[0], device=x.device)
                y, first, counts, inverse = y.index_select(axis, order), first[order], counts[order], rank[inverse]
            outs = (y, first, inverse.to(torch.int64), counts.to(torch.int64))[: self.outputs]
            return outs if self.outputs > 1 else outs[0]

    class Range(nn.Module):
        """ONNX Range: start + i * delta for i < max(ceil((limit - start) / delta), 0), computed in
        double (in ``stash_type`` for float16 and bfloat16) and cast to the inputs' type."""

        def __init__(self, stash: str) -> None:
            super().__init__()
            self.stash = stash

        def forward(self, start, limit, delta):
            dtype = start.dtype
            if not dtype.is_floating_point:
                a, b, d = int(start), int(limit), int(delta)
                if d == 0:
                    raise ValueError("Range: delta is 0")
                n = max(-(-(b - a) // d), 0)
                return a + torch.arange(n, dtype=dtype, device=start.device) * d
            work = dtype_of(self.stash) if dtype in (torch.float16, torch.bfloat16) else torch.float64
            a, b, d = (v.to(work).reshape(()) for v in (start, limit, delta))
            n = max(int(torch.ceil((b - a) / d)), 0)
            return (a + torch.arange(n, dtype=work, device=start.device) * d).to(dtype)

    class Col2Im(nn.Module):
        """ONNX Col2Im of 2-D images: torch's fold into the padded image, then the padding cut off."""

        def __init__(self, pads, strides, dilations) -> None:
            super().__init__()
            self.pads, self.strides, self.dilations = pads, strides, dilations

        def forward(self, x, image_shape, block_shape):
            image = [int(v) for v in image_shape.reshape(-1).tolist()]
            block = [int(v) for v in block_shape.reshape(-1).tolist()]
            if len(image) != 2:
                raise NotImplementedError(f"Col2Im: a {len(image)}-D image is not supported (2-D only)")
            pads = self.pads or [0] * 4
            padded = [image[0] + pads[0] + pads[2], image[1] + pads[1] + pads[3]]
            y = F.fold(x, padded, block, dilation=self.dilations or [1, 1], padding=0, stride=self.strides or [1, 1])
            return y[:, :, pads[0]:pads[0] + image[0], pads[1]:pads[1] + image[1]]

    class GroupNormalization(nn.Module):
        """ONNX GroupNormalization-21: each group of channels normalised in ``stash_type``, cast
        back to X's type, then scaled and shifted per channel."""

        def __init__(self, groups: int, epsilon: float, stash: str) -> None:
            super().__init__()
            self.groups, self.epsilon, self.stash = groups, epsilon, stash

        def forward(self, x, scale, bias):
            n, c = x.shape[0], x.shape[1]
            if c % self.groups:
                raise ValueError(f"GroupNormalization: {c} channels in {self.groups} groups")
            xs = x.to(dtype_of(self.stash)).reshape(n, self.groups, -1)
            mean = xs.mean(dim=-1, keepdim=True)
            d = xs - mean
            normalized = (d / torch.sqrt((d * d).mean(dim=-1, keepdim=True) + self.epsilon)).reshape(x.shape).to(x.dtype)
            shape = [1, c] + [1] * (x.dim() - 2)
            return normalized * scale.reshape(shape) + bias.reshape(shape)

    class MaxUnpool(nn.Module):
        """ONNX MaxUnpool: X's values written at the flat indices (over the whole output, as
        MaxPool gives them) of a zero tensor of the inferred shape (an output_shape only where it
        is that one)."""

        def __init__(self, kernel: list[int], pads, strides) -> None:
            super().__init__()
            self.kernel, self.pads, self.strides = kernel, pads, strides

        def forward(self, x, indices, output_shape=None):
            n = len(self.kernel)
            pads = self.pads or [0] * (2 * n)
            strides = self.strides or [1] * n
            shape = list(x.shape[:2]) + [(int(size) - 1) * st + k - pads[i] - pads[i + n]
                                         for i, (size, k, st) in enumerate(zip(x.shape[2:], self.kernel, strides))]
            if output_shape is not None and [int(v) for v in output_shape.reshape(-1).tolist()] != shape:
                # MaxPool's indices count in its input, of output_shape; ONNX's reference counts them in the
                # inferred shape and pads that to output_shape: the two disagree
                raise NotImplementedError(f"MaxUnpool: an output_shape other than the inferred {shape} is not supported")
            out = torch.zeros(shape, dtype=x.dtype, device=x.device).reshape(-1)
            idx = indices.to(torch.int64).reshape(-1)
            if bool(((idx < 0) | (idx >= out.shape[0])).any()):
                raise ValueError("MaxUnpool: an index is out of the output")
            return out.scatter(0, idx, x.reshape(-1)).reshape(shape)

    class AffineGrid(nn.Module):
        """ONNX AffineGrid: torch's affine_grid (the same normalised coordinates)."""

        def __init__(self, align_corners: bool) -> None:
            super().__init__()
            self.align_corners = align_corners

        def forward(self, theta, size):
            return F.affine_grid(theta, [int(v) for v in size.reshape(-1).tolist()], align_corners=self.align_corners)

    class Window(nn.Module):
        """ONNX HannWindow / HammingWindow / BlackmanWindow, computed in double and cast to
        ``output_datatype``."""

        def __init__(self, kind: str, periodic: bool, out: str) -> None:
            super().__init__()
            self.kind, self.periodic, self.out = kind, periodic, out

        def forward(self, size):
            length = int(size.reshape(-1)[0])
            n = torch.arange(length, dtype=torch.float64, device=size.device)
            denominator = length if self.periodic else length - 1
            angle = 2 * math.pi * n / denominator
            if self.kind == "HannWindow":
                w = 0.5 - 0.5 * torch.cos(angle)
            elif self.kind == "HammingWindow":
                w = 25.0 / 46.0 - (1 - 25.0 / 46.0) * torch.cos(angle)
            else:
                w = 0.42 - 0.5 * torch.cos(angle) + 0.08 * torch.cos(2 * angle)
            return w.to(dtype_of(self.out))

    acts = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu}

    class Recurrent(nn.Module):
        """ONNX RNN, GRU and LSTM, step by step: gates in ONNX's order (LSTM i o f c, GRU z r h),
        peepholes, GRU's linear_before_reset, every direction, both layouts, initial states."""

        def __init__(self, op: str, direction: str, activations: list[str], layout: int, linear_before_reset: bool,
                     outputs: int) -> None:
            super().__init__()
            self.op, self.direction, self.activations, self.layout = op, direction, activations, layout
            self.linear_before_reset, self.outputs = linear_before_reset, outputs

        def forward(self, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
            if self.layout:  # batch first: X [batch, seq, input], the states [batch, dirs, hidden]
                x = x.transpose(0, 1)
                initial_h = initial_h.transpose(0, 1) if initial_h is not None else None
                initial_c = initial_c.transpose(0, 1) if initial_c is not None else None
            seq, batch = x.shape[0], x.shape[1]
            if sequence_lens is not None and bool((sequence_lens.reshape(-1) != seq).any()):
                raise NotImplementedError(f"{self.op}: sequence_lens shorter than the sequence are not supported")
            dirs, hidden = w.shape[0], r.shape[-1]
            gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[self.op]
            per_dir = len(self.activations) // dirs
            ys, hs, cs = [], [], []
            for d in range(dirs):
                f_acts = [acts[a] for a in self.activations[d * per_dir:(d + 1) * per_dir]]
                wb, rb = (b[d, :gates * hidden], b[d, gates * hidden:]) if b is not None else (0, 0)
                h = initial_h[d] if initial_h is not None else torch.zeros((batch, hidden), dtype=x.dtype, device=x.device)
                c = initial_c[d] if initial_c is not None else torch.zeros((batch, hidden), dtype=x.dtype, device=x.device)
                reverse = self.direction == "reverse" or d == 1
                steps = range(seq - 1, -1, -1) if reverse else range(seq)
                out = [None] * seq
                for t in steps:
                    xw = x[t] @ w[d].T + wb
                    if self.op == "RNN":
                        h = f_acts[0](xw + h @ r[d].T + rb)
                    elif self.op == "GRU":
                        f, g = f_acts
                        rz = xw[:, :2 * hidden] + h @ r[d, :2 * hidden].T + (rb[:2 * hidden] if b is not None else 0)
                        z, rr = f(rz[:, :hidden]), f(rz[:, hidden:])
                        rbh = rb[2 * hidden:] if b is not None else 0
                        if self.linear_before_reset:
                            hh = g(xw[:, 2 * hidden:] + rr * (h @ r[d, 2 * hidden:].T + rbh))
                        else:
                            hh = g(xw[:, 2 * hidden:] + (rr * h) @ r[d, 2 * hidden:].T + rbh)
                        h = (1 - z) * hh + z * h
                    else:
                        f, g, hf = f_acts
                        all_gates = xw + h @ r[d].T + rb
                        i, o, fg, cc = (all_gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
                        pi, po, pf = (p[d, k * hidden:(k + 1) * hidden] for k in range(3)) if p is not None else (0, 0, 0)
                        i, fg = f(i + pi * c), f(fg + pf * c)
                        c = fg * c + i * g(cc)
                        h = f(o + po * c) * hf(c)
                    out[t] = h
                ys.append(torch.stack(out, dim=0) if seq else torch.zeros((0, batch, hidden), dtype=x.dtype, device=x.device))
                hs.append(h)
                cs.append(c)
            y, y_h, y_c = torch.stack(ys, dim=1), torch.stack(hs, dim=0), torch.stack(cs, dim=0)
            if self.layout:
                y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
            outs = (y, y_h, y_c)[: self.outputs]
            return outs if self.outputs > 1 else outs[0]

    class Clip(nn.Module):
        """ONNX Clip-11/12/13 with bounds computed at run time (torch.clamp: a min above the max
        gives the max, as ONNX says)."""

        def forward(self, x, min=None, max=None):  # noqa: A002 - onnx2torch passes skipped inputs by name
            lo = min.reshape(()) if min is not None and min.numel() else None
            hi = max.reshape(()) if max is not None and max.numel() else None
            if lo is None and hi is None:
                return x
            return torch.clamp(x, lo, hi)

    class Dropout(nn.Module):
        """ONNX Dropout at inference: the input itself, and a mask of ones; training mode with a
        non-zero ratio (random) is refused when it runs."""

        def __init__(self, mask: bool) -> None:
            super().__init__()
            self.mask = mask

        def forward(self, data, ratio=None, training_mode=None):
            if training_mode is not None and bool(training_mode.reshape(-1)[0]):
                if ratio is None or float(ratio.reshape(-1)[0]) != 0.0:
                    raise NotImplementedError("Dropout: training mode (random) is not supported")
            out = data.clone()
            return (out, torch.ones_like(data, dtype=torch.bool)) if self.mask else out

    class ReshapeAllowZero(nn.Module):
        """ONNX Reshape with allowzero=1: a 0 in the shape is a dim of size 0, not a copy."""

        def forward(self, data, shape):
            return torch.reshape(data, [int(v) for v in shape.reshape(-1).tolist()])

    class ConvTranspose(nn.Module):
        """ONNX ConvTranspose whose weight (or bias) is computed at run time: torch's full
        transposed convolution, output_padding appended, then the pads (explicit, SAME_UPPER,
        SAME_LOWER, VALID) cut off; 1-D to 3-D."""

        def __init__(self, auto_pad: str, pads, strides, dilations, output_padding, group: int) -> None:
            super().__init__()
            self.auto_pad, self.pads, self.strides, self.dilations = auto_pad, pads, strides, dilations
            self.output_padding, self.group = output_padding, group

        def forward(self, x, weight, bias=None):
            n = x.dim() - 2
            if n not in (1, 2, 3) or weight.dim() != x.dim():
                raise NotImplementedError(f"ConvTranspose: a {n}-D convolution is not supported (1-D to 3-D)")
            strides, dilations = self.strides or [1] * n, self.dilations or [1] * n
            extra = self.output_padding or [0] * n
            kernel = list(weight.shape[2:])
            full = [st * (int(size) - 1) + (k - 1) * d + 1 for size, st, k, d in zip(x.shape[2:], strides, kernel, dilations)]
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                total = [f + e - int(size) * st for f, e, size, st in zip(full, extra, x.shape[2:], strides)]
                small = [t // 2 for t in total]
                begin = small if self.auto_pad == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
                end = [t - b for t, b in zip(total, begin)]
            elif self.auto_pad == "VALID":
                begin, end = [0] * n, [0] * n
            else:
                pads = self.pads or [0] * (2 * n)
                begin, end = pads[:n], pads[n:]
            conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
            y = conv(x, weight, None, stride=strides, dilation=dilations, groups=self.group)
            y = torch_pad(y, [0] * n, extra)
            for axis in range(n):
                size = full[axis] + extra[axis] - begin[axis] - end[axis]
                if size < 0 or begin[axis] < 0 or end[axis] < 0:
                    raise NotImplementedError("ConvTranspose: negative pads are not supported")
                y = y.narrow(axis + 2, begin[axis], size)
            if bias is not None:
                y = y + bias.reshape([1, -1] + [1] * n)
            return y

    def minus_zero_point(x, zero_point, channel_axis=None):
        """x - zero_point in int64; a 1-D zero point runs along ``channel_axis``."""
        wide = x.to(torch.int64)
        if zero_point is None:
            return wide
        zp = zero_point.to(torch.int64)
        if zp.numel() == 1:
            return wide - zp.reshape(())
        if channel_axis is None or zp.dim() != 1:
            raise NotImplementedError(f"a zero point of shape {list(zp.shape)} is not supported here")
        shape = [1] * x.dim()
        shape[channel_axis] = zp.shape[0]
        return wide - zp.reshape(shape)

    class MatMulInteger(nn.Module):
        """ONNX MatMulInteger: (A - a_zero_point) @ (B - b_zero_point) in int32 (a per-row A zero
        point, a per-column B one)."""

        def forward(self, a, b, a_zero_point=None, b_zero_point=None):
            aa = minus_zero_point(a, a_zero_point, a.dim() - 2 if a.dim() >= 2 else None)
            bb = minus_zero_point(b, b_zero_point, b.dim() - 1)
            return torch.matmul(aa, bb).to(torch.int32)

    class ConvInteger(nn.Module):
        """ONNX ConvInteger: the convolution of x - x_zero_point and w - w_zero_point (per output
        channel), exact in double for 8-bit inputs, as int32."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, w, x_zero_point=None, w_zero_point=None):
            xx = minus_zero_point(x, x_zero_point).to(torch.float64)
            ww = minus_zero_point(w, w_zero_point, 0).to(torch.float64)
            return torch.round(self.inner(xx, ww)).to(torch.int32)

    class QLinearMatMul(nn.Module):
        """ONNX QLinearMatMul with per-tensor scales and zero points: the int32 product of the
        centred inputs times a_scale * b_scale / y_scale (in the scales' type), rounded half to
        even, plus y_zero_point, saturated to y's type."""

        def forward(self, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
            if any(t.numel() != 1 for t in (a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point)):
                raise NotImplementedError("QLinearMatMul: per-row or per-column scales and zero points are not supported")
            out = y_zero_point.dtype
            if out not in ranges:
                raise NotImplementedError(f"QLinearMatMul: output type {out} is not supported")
            c = torch.matmul(minus_zero_point(a, a_zero_point), minus_zero_point(b, b_zero_point))
            multiplier = (a_scale.reshape(()) * b_scale.reshape(()) / y_scale.reshape(())).to(torch.float64)
            d = torch.round(c.to(torch.float64) * multiplier) + y_zero_point.reshape(()).to(torch.float64)
            low, high = ranges[out]
            return torch.clamp(d, low, high).to(out)

    class DynamicQuantizeLinear(nn.Module):
        """ONNX DynamicQuantizeLinear: uint8 over [min(0, min x), max(0, max x)] (a scale of 1/255
        when both are 0), the zero point and the values rounded half to even, in float32."""

        def forward(self, x):
            xf = x.to(torch.float32)
            hi = torch.clamp(xf.max(), min=0.0) if xf.numel() else torch.tensor(0.0)
            lo = torch.clamp(xf.min(), max=0.0) if xf.numel() else torch.tensor(0.0)
            scale = torch.where(hi == lo, torch.tensor(1.0), hi - lo) / torch.tensor(255.0)
            zero = torch.round(torch.clamp(-lo / scale, 0.0, 255.0))
            y = torch.clamp(torch.round(xf / scale) + zero, 0.0, 255.0)
            return y.to(torch.uint8), scale.to(x.dtype), zero.to(torch.uint8)

    class BitCast(nn.Module):
        """ONNX BitCast: the same bits read as another type of the same width (torch's view; a
        bool is the byte 0 or 1; nothing is cast to bool, whose other bytes torch cannot hold)."""

        def __init__(self, to: str) -> None:
            super().__init__()
            self.to = to

        def forward(self, x):
            to = dtype_of(self.to)
            if x.element_size() != to.itemsize:
                raise NotImplementedError(f"BitCast: {x.dtype} to {to} is not supported (not the same width)")
            if x.dtype == torch.bool:  # a bool's byte is 0 or 1
                x = x.to(torch.uint8)
            return x.contiguous().view(to)

    class TensorScatter(nn.Module):
        """ONNX TensorScatter-24: the update written into a copy of the cache along ``axis``, from
        each sample's write index (0 without them), wrapping around in circular mode."""

        def __init__(self, axis: int, circular: bool) -> None:
            super().__init__()
            self.axis, self.circular = axis, circular

        def forward(self, past_cache, update, write_indices=None):
            axis = self.axis + past_cache.dim() if self.axis < 0 else self.axis
            if axis <= 0 or axis >= past_cache.dim():
                raise ValueError(f"TensorScatter: axis {self.axis} must not be the batch dim")
            batch, size, length = past_cache.shape[0], past_cache.shape[axis], update.shape[axis]
            starts = write_indices.to(torch.int64).reshape(-1) if write_indices is not None else \
                torch.zeros(batch, dtype=torch.int64, device=past_cache.device)
            index = starts.reshape(-1, 1) + torch.arange(length, device=past_cache.device).reshape(1, -1)  # [batch, length]
            if self.circular:
                index = index % size
            elif bool(((index < 0) | (index >= size)).any()):
                raise ValueError("TensorScatter: write_indices + sequence_length exceed the cache in linear mode")
            shape = [1] * update.dim()
            shape[0], shape[axis] = batch, length
            return past_cache.scatter(axis, index.reshape(shape).expand(update.shape), update)

    class DeformConv(nn.Module):
        """ONNX DeformConv of 2-D images as torchvision's deform_conv2d (zeros outside the padded
        input, bilinear sampling), asymmetric pads applied first."""

        def __init__(self, pads, strides, dilations) -> None:
            super().__init__()
            self.pads, self.strides, self.dilations = pads, strides, dilations

        def forward(self, x, weight, offset, bias=None, mask=None):
            from torchvision.ops import deform_conv2d

            if x.dim() != 4:
                raise NotImplementedError(f"DeformConv: a {x.dim() - 2}-D image is not supported (2-D only)")
            pads = self.pads or [0] * 4
            x = torch_pad(x, pads[:2], pads[2:])
            return deform_conv2d(x, offset, weight, bias, stride=self.strides or [1, 1], padding=0,
                                 dilation=self.dilations or [1, 1], mask=mask)

    class DFT(nn.Module):
        """ONNX DFT-17/20: torch.fft along ``axis`` of a real ([..., 1]) or complex ([..., 2])
        signal, zero-padded or cut to ``dft_length``, inverse normalised by 1/n; one-sided: RFFT
        of a real input, IRFFT of a complex one (a real output, [..., 1])."""

        def __init__(self, axis: int | None, inverse: bool, onesided: bool) -> None:
            super().__init__()
            self.axis, self.inverse, self.onesided = axis, inverse, onesided

        def forward(self, x, dft_length=None, axis=None):
            rank = x.dim()
            if x.shape[-1] not in (1, 2):
                raise ValueError("DFT: the last dim must be 1 (real) or 2 (complex)")
            ax = self.axis if self.axis is not None else (int(axis.reshape(-1)[0]) if axis is not None else -2)
            ax = ax + rank if ax < 0 else ax
            if not 0 <= ax < rank - 1:
                raise ValueError(f"DFT: axis {ax} is out of range")
            real = x.shape[-1] == 1
            if self.onesided and real == self.inverse:
                raise NotImplementedError("DFT: onesided takes a real input forward and a complex one inverse")
            signal = x[..., 0].to(torch.complex128 if x.dtype == torch.float64 else torch.complex64) if real else \
                torch.complex(x[..., 0].to(torch.float64 if x.dtype == torch.float64 else torch.float32),
                              x[..., 1].to(torch.float64 if x.dtype == torch.float64 else torch.float32))
            if self.onesided and self.inverse:  # IRFFT: a real signal of dft_length, 2 * (dim - 1) by default
                n = int(dft_length.reshape(-1)[0]) if dft_length is not None else 2 * (signal.shape[ax] - 1)
                return torch.fft.irfft(signal, n=n, dim=ax).unsqueeze(-1).to(x.dtype)
            n = int(dft_length.reshape(-1)[0]) if dft_length is not None else signal.shape[ax]
            y = (torch.fft.ifft if self.inverse else torch.fft.fft)(signal, n=n, dim=ax)
            if self.onesided:
                y = y.narrow(ax, 0, n // 2 + 1)
            return torch.stack([y.real, y.imag], dim=-1).to(x.dtype)

    class MaxPoolSame(nn.Module):
        """ONNX MaxPool with auto_pad SAME_UPPER / SAME_LOWER (output ceil(size / stride)) or
        pads wider than half the kernel: the input padded with -inf, then torch's max pooling."""

        def __init__(self, auto_pad: str, kernel: list[int], strides, dilations, pads=None) -> None:
            super().__init__()
            self.auto_pad, self.kernel, self.pads = auto_pad, kernel, pads
            self.strides, self.dilations = strides or [1] * len(kernel), dilations or [1] * len(kernel)

        def forward(self, x):
            n = len(self.kernel)
            if x.dim() != n + 2 or n not in (1, 2, 3):
                raise NotImplementedError(f"MaxPool: a {x.dim() - 2}-D input with a {n}-D kernel is not supported")
            for size, k, st, d in zip(x.shape[2:], self.kernel, self.strides, self.dilations):
                if self.auto_pad != "NOTSET" and (-(-int(size) // st) - 1) * st + (k - 1) * d + 1 < int(size):
                    raise NotImplementedError(f"MaxPool: {self.auto_pad} with a stride {st} past the window {k} over {size} "
                                              "is not supported (it would need negative padding)")
            begin, end = same_pads(self.auto_pad, x.shape[2:], self.kernel, self.strides, self.dilations, self.pads)
            flat = []
            for b, e in zip(reversed(begin), reversed(end)):
                flat += [b, e]
            low = float("-inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
            x = F.pad(x, flat, value=low) if any(flat) else x
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
            return pool(x, self.kernel, stride=self.strides, dilation=self.dilations)

    class AveragePoolPadded(nn.Module):
        """ONNX AveragePool with SAME padding or pads wider than half the kernel (torch's pooling
        takes neither): window sums by a depthwise convolution with ones over the zero-padded
        input, divided by the window size, or with count_include_pad 0 by the input elements in it."""

        def __init__(self, auto_pad: str, kernel: list[int], pads, strides, count_include_pad: bool) -> None:
            super().__init__()
            self.auto_pad, self.kernel, self.pads = auto_pad, kernel, pads
            self.strides, self.count_include_pad = strides or [1] * len(kernel), count_include_pad

        def forward(self, x):
            n = len(self.kernel)
            if x.dim() != n + 2 or n not in (1, 2, 3):
                raise NotImplementedError(f"AveragePool: a {x.dim() - 2}-D input with a {n}-D kernel is not supported")
            ones_kernel = [1] * n
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                for size, k, st in zip(x.shape[2:], self.kernel, self.strides):
                    if (-(-int(size) // st) - 1) * st + k < int(size):
                        raise NotImplementedError(f"AveragePool: {self.auto_pad} with a stride {st} past the window {k} over "
                                                  f"{size} is not supported (it would need negative padding)")
            begin, end = same_pads(self.auto_pad, x.shape[2:], self.kernel, self.strides, ones_kernel, self.pads)
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
            c = x.shape[1]
            weight = torch.ones((c, 1, *self.kernel), dtype=x.dtype, device=x.device)
            total = conv(torch_pad(x, begin, end), weight, stride=self.strides, groups=c)
            if self.count_include_pad:
                count = float(math.prod(self.kernel))
            else:
                inside = torch_pad(torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device), begin, end)
                count = conv(inside, weight[:1], stride=self.strides)
            return total / count

    class DepthToSpace(nn.Module):
        """ONNX DepthToSpace in DCR mode (depth, column, row: the default) on [N, C, H, W]."""

        def __init__(self, blocksize: int) -> None:
            super().__init__()
            self.b = blocksize

        def forward(self, x):
            n, c, h, w = x.shape
            b = self.b
            if c % (b * b):
                raise ValueError(f"DepthToSpace: {c} channels are not a multiple of blocksize^2 = {b * b}")
            y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(n, c // (b * b), h * b, w * b)

    class MaxPoolIndices(nn.Module):
        """ONNX MaxPool with its Indices output: torch's max pooling with indices, which count in
        each (n, c) plane, moved to ONNX's flat index over the whole input (row major, or column
        major with storage_order 1)."""

        def __init__(self, kernel: list[int], strides, pads: list[int], dilations, ceil_mode: bool, column_major: bool) -> None:
            super().__init__()
            self.kernel, self.strides, self.pads, self.dilations = kernel, strides, pads, dilations
            self.ceil_mode, self.column_major = ceil_mode, column_major

        def forward(self, x):
            n = len(self.kernel)
            if x.dim() != n + 2 or n not in (1, 2, 3):
                raise NotImplementedError(f"MaxPool: a {x.dim() - 2}-D input with a {n}-D kernel is not supported")
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
            y, index = pool(x, self.kernel, stride=self.strides or [1] * n, padding=self.pads,
                            dilation=self.dilations or [1] * n, ceil_mode=self.ceil_mode, return_indices=True)
            plane = math.prod(int(v) for v in x.shape[2:])
            if self.column_major:
                height, width = int(x.shape[2]), int(x.shape[3])
                index = (index % width) * height + index // width
            base = torch.arange(x.shape[0] * x.shape[1], device=x.device).reshape([x.shape[0], x.shape[1]] + [1] * n) * plane
            return y, base + index

    class Unsigned(nn.Module):
        """ONNX's arithmetic, comparison, Max/Min and Mod on uint16/uint32/uint64, which torch has
        no kernels for: uint16 and uint32 computed in int64 (wrapped back to their width), uint64
        on its int64 view (add, sub and mul wrap alike; the order compared with the sign bit
        flipped; division and remainder refused for values of 2**63 and more)."""

        def __init__(self, op: str) -> None:
            super().__init__()
            self.op = op

        def forward(self, *xs):
            dt = xs[0].dtype
            if any(x.dtype != dt for x in xs) or dt not in (torch.uint16, torch.uint32, torch.uint64):
                raise NotImplementedError(f"{self.op}: inputs of {[str(x.dtype) for x in xs]} are not supported")
            op, wide = self.op, dt == torch.uint64
            if wide:
                vals = [x.view(torch.int64) for x in xs]
            else:
                vals = [x.to(torch.int64) for x in xs]
            flip = torch.iinfo(torch.int64).min
            if op in ("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Max", "Min"):
                ordered = [v ^ flip for v in vals] if wide else vals  # unsigned order as signed order
                if op in ("Max", "Min"):
                    y = ordered[0]
                    for v in ordered[1:]:
                        y = torch.maximum(y, v) if op == "Max" else torch.minimum(y, v)
                    return (y ^ flip).view(dt) if wide else y.to(dt)
                fn = {"Greater": torch.gt, "Less": torch.lt, "GreaterOrEqual": torch.ge, "LessOrEqual": torch.le}[op]
                return fn(ordered[0], ordered[1])
            a, b = vals
            if op in ("Div", "Mod"):
                if wide and bool(((a < 0).any()) or bool((b < 0).any())):
                    raise NotImplementedError(f"{op}: uint64 values of 2**63 and more are not supported")
                if bool((b == 0).any()):
                    raise ValueError(f"{op}: division by zero")
                y = torch.div(a, b, rounding_mode="floor") if op == "Div" else torch.remainder(a, b)
            else:
                y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}[op](a, b)
            if wide:
                return y.view(dt)
            return (y & (2 ** torch.iinfo(dt).bits - 1)).to(dt)

    return {name: value for name, value in locals().items() if isinstance(value, type) and issubclass(value, nn.Module)}


# ---------------------------------------------------------------------------------------------- converters
_ELEMENTWISE = {"Acosh": "acosh", "Asinh": "asinh", "Atanh": "atanh", "Cosh": "cosh", "Sinh": "sinh"}


def elementwise(node, graph):
    """``Acosh`` ``Asinh`` ``Atanh`` ``Cosh`` ``Sinh``-9/22: torch's function of the same name."""
    return _result(_module("Elementwise")(_ELEMENTWISE[node.operation_type]), node)


def mish(node, graph):
    """``Mish``-18/22: x * tanh(softplus(x))."""
    return _result(_module("Mish")(), node)


def thresholded_relu(node, graph):
    """``ThresholdedRelu``-10/22: x where x > alpha (default 1), else 0."""
    return _result(_module("ThresholdedRelu")(float(node.attributes.get("alpha", 1.0))), node)


def swish(node, graph):
    """``Swish``-24: x * sigmoid(alpha * x) (alpha default 1)."""
    return _result(_module("Swish")(float(node.attributes.get("alpha", 1.0))), node)


def shrink(node, graph):
    """``Shrink``-9: x - bias above lambd, x + bias below -lambd, 0 between."""
    attrs = node.attributes
    return _result(_module("Shrink")(float(attrs.get("lambd", 0.5)), float(attrs.get("bias", 0.0))), node)


def hardmax(node, graph):
    """``Hardmax``-13: along ``axis`` (default -1)."""
    return _result(_module("Hardmax")(int(node.attributes.get("axis", -1)), False), node)


def hardmax_11(node, graph):
    """``Hardmax``-1/11: over the input flattened to 2-D at ``axis`` (default 1)."""
    return _result(_module("Hardmax")(int(node.attributes.get("axis", 1)), True), node)


def trilu(node, graph):
    """``Trilu``-14: torch.triu / torch.tril with the diagonal ``k`` (an input, default 0)."""
    return _result(_module("Trilu")(bool(node.attributes.get("upper", 1))), node)


_BITWISE = {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor", "BitwiseNot": "bitwise_not"}


def bitwise(node, graph):
    """``BitwiseAnd`` ``BitwiseOr`` ``BitwiseXor`` ``BitwiseNot``-18: torch's bitwise functions."""
    return _result(_module("Bitwise")(_BITWISE[node.operation_type]), node)


def bit_shift(node, graph):
    """``BitShift``-11/28 (unsigned types; signed ones since 28)."""
    direction = _text(node.attributes.get("direction", ""))
    if direction not in ("LEFT", "RIGHT"):
        raise NotImplementedError(f"BitShift: direction={direction!r} is not supported (LEFT or RIGHT)")
    return _result(_module("BitShift")(direction == "LEFT"), node)


def cum_prod(node, graph):
    """``CumProd``-26 with ``exclusive`` and ``reverse``."""
    attrs = node.attributes
    return _result(_module("CumProd")(bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))), node)


def rms_normalization(node, graph):
    """``RMSNormalization``-23, computed in ``stash_type`` (default float)."""
    attrs = node.attributes
    stash = _float_type("RMSNormalization", "stash_type", int(attrs.get("stash_type", 1)))
    return _result(_module("RMSNormalization")(int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)), stash), node)


def _loss(node, softmax: bool):
    op = node.operation_type
    attrs = node.attributes
    reduction = _text(attrs.get("reduction", "mean"))
    if reduction not in ("none", "sum", "mean"):
        raise NotImplementedError(f"{op}: reduction={reduction!r} is not supported")
    ignore = int(attrs["ignore_index"]) if "ignore_index" in attrs else None
    return _result(_module("Loss")(reduction, ignore, softmax, softmax and _outputs(node) > 1), node)


def softmax_cross_entropy_loss(node, graph):
    """``SoftmaxCrossEntropyLoss``-12/13: the negative log likelihood of the log-softmax over dim 1
    (and that log-softmax as the optional second output)."""
    return _loss(node, softmax=True)


def negative_log_likelihood_loss(node, graph):
    """``NegativeLogLikelihoodLoss``-12/13/22."""
    return _loss(node, softmax=False)


def rotary_embedding(node, graph):
    """``RotaryEmbedding``-23, interleaved or not, whole or partial (``rotary_embedding_dim``)."""
    attrs = node.attributes
    return _result(_module("RotaryEmbedding")(bool(attrs.get("interleaved", 0)), int(attrs.get("rotary_embedding_dim", 0)),
                                              int(attrs.get("num_heads", 0))), node)


def attention(node, graph):
    """``Attention``-23/24/25. Refused: the ``qk_matmul_output`` of mode 0 with a softcap (the spec
    says the matmul's output before the softcap; ONNX's reference gives it after)."""
    attrs = dict(node.attributes)
    mode = int(attrs.get("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        raise NotImplementedError(f"Attention: qk_matmul_output_mode={mode} is not supported")
    n = _outputs(node)
    if n > 3 and mode == 0 and float(attrs.get("softcap", 0.0)) > 0:
        raise NotImplementedError("Attention: qk_matmul_output in mode 0 with a softcap is not supported (the spec and "
                                  "ONNX's reference disagree)")
    if "softmax_precision" in attrs:
        attrs["softmax_precision"] = _float_type("Attention", "softmax_precision", int(attrs["softmax_precision"]))
    for name in ("q_num_heads", "kv_num_heads"):
        if name in attrs:
            attrs[name] = int(attrs[name])
    if "scale" in attrs:
        attrs["scale"] = float(attrs["scale"])
    return _result(_module("Attention")(attrs, n), node)


def one_hot(node, graph):
    """``OneHot``-9/11/28."""
    return _result(_module("OneHot")(int(node.attributes.get("axis", -1))), node)


def space_to_depth(node, graph):
    """``SpaceToDepth``-1/13/28 (DCR; CRD, new in 28)."""
    mode = _text(node.attributes.get("mode", "DCR"))
    if mode not in ("DCR", "CRD"):
        raise NotImplementedError(f"SpaceToDepth: mode={mode!r} is not supported")
    return _result(_module("SpaceToDepth")(int(node.attributes["blocksize"]), mode == "CRD"), node)


def global_max_pool(node, graph):
    """``GlobalMaxPool``-1/22."""
    return _result(_module("GlobalMaxPool")(), node)


def lp_normalization(node, graph):
    """``LpNormalization``-1/22 with p 1 or 2."""
    p = int(node.attributes.get("p", 2))
    if p not in (1, 2):
        raise NotImplementedError(f"LpNormalization: p={p} is not supported (1 or 2)")
    return _result(_module("LpNormalization")(int(node.attributes.get("axis", -1)), p), node)


def det(node, graph):
    """``Det``-11/22: torch.linalg.det."""
    return _result(_module("Det")(), node)


def compress(node, graph):
    """``Compress``-9/11/28."""
    axis = node.attributes.get("axis")
    return _result(_module("Compress")(None if axis is None else int(axis)), node)


def reverse_sequence(node, graph):
    """``ReverseSequence``-10/28 (batch_axis and time_axis 0 or 1)."""
    attrs = node.attributes
    batch_axis, time_axis = int(attrs.get("batch_axis", 1)), int(attrs.get("time_axis", 0))
    if {batch_axis, time_axis} != {0, 1}:
        raise NotImplementedError(f"ReverseSequence: batch_axis={batch_axis}, time_axis={time_axis} is not supported")
    return _result(_module("ReverseSequence")(batch_axis, time_axis), node)


def swiglu(node, graph):
    """``SwiGLU``-28: A * sigmoid(alpha * A) * B."""
    return _result(_module("SwiGLU")(float(node.attributes.get("alpha", 1.0))), node)


_REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
           "ReduceLogSumExp", "ReduceSumSquare")


def reduce_computed_axes(node, graph):
    """``Reduce*``-18 (ReduceMax/ReduceMin-20) whose ``axes`` input is computed by the graph or a
    graph input: the module takes the axes at run time (onnx2torch reads only constant axes).
    Called by :func:`mlms_ir.backends.onnx2torch_compat.reduce_18`."""
    op = node.operation_type
    if op not in _REDUCE:
        raise NotImplementedError(f"{op}: not a reduction")
    attrs = node.attributes
    return _result(_module("Reduce")(op, bool(attrs.get("keepdims", 1)), bool(attrs.get("noop_with_empty_axes", 0))), node)


def flatten(node, graph):
    """``Flatten``-1/9/11/13 (21-25 alias 13): replaces onnx2torch's, which failed for ``axis`` 0
    and -rank (it flattened everything, then flattened again from dim 1)."""
    return _result(_module("Flatten")(int(node.attributes.get("axis", 1))), node)


def layer_normalization(node, graph):
    """``LayerNormalization``-17 asked for its ``Mean`` or ``InvStdDev`` output (onnx2torch's
    module gives Y only). Called by :func:`mlms_ir.backends.onnx2torch_compat.layer_norm_17`."""
    attrs = node.attributes
    stash = _float_type("LayerNormalization", "stash_type", int(attrs.get("stash_type", 1)))
    return _result(_module("LayerNormalization")(int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)), stash,
                                                 _outputs(node)), node)


#: ONNX TensorProto codes of the quantized integer types QuantizeLinear writes here -> torch dtype names.
_QUANT_OUT = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16"}


def dequantize_linear(node, graph):
    """``DequantizeLinear``-10 to 28 of int8/uint8/int16/uint16/int32 (per tensor, axis or block);
    float8, 4-bit and 2-bit inputs are refused (torch cannot take them from numpy)."""
    attrs = node.attributes
    output = int(attrs.get("output_dtype", 0))
    name = _float_type("DequantizeLinear", "output_dtype", output) if output else None
    return _result(_module("DequantizeLinear")(int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)), name), node)


def quantize_linear(node, graph):
    """``QuantizeLinear``-10 to 28 to uint8/int8/uint16/int16 (per tensor, axis or block). Refused:
    float8, 4-bit and 2-bit outputs, and an input whose type is not the scale's without ``precision``
    (the spec divides in the scale's type, ONNX's reference in numpy's promoted one)."""
    attrs = node.attributes
    output = int(attrs.get("output_dtype", 0))
    if output and output not in _QUANT_OUT:
        raise NotImplementedError(f"QuantizeLinear: output_dtype={output} is not supported (uint8, int8, uint16, int16)")
    precision = int(attrs.get("precision", 0))
    prec = _float_type("QuantizeLinear", "precision", precision) if precision else None
    return _result(_module("QuantizeLinear")(int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)),
                                             _QUANT_OUT.get(output), prec), node)


def linear_attention(node, graph):
    """``LinearAttention``-27 (linear, gated, delta and gated_delta recurrences)."""
    attrs = node.attributes
    rule = _text(attrs.get("update_rule", "gated_delta"))
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise NotImplementedError(f"LinearAttention: update_rule={rule!r} is not supported")
    if "q_num_heads" not in attrs or "kv_num_heads" not in attrs:
        raise NotImplementedError("LinearAttention: q_num_heads and kv_num_heads are required")
    q_heads, kv_heads = int(attrs["q_num_heads"]), int(attrs["kv_num_heads"])
    if q_heads <= 0 or kv_heads <= 0 or q_heads % kv_heads:
        raise NotImplementedError(f"LinearAttention: q_num_heads={q_heads} is not a multiple of kv_num_heads={kv_heads}")
    return _result(_module("LinearAttention")(rule, q_heads, kv_heads, float(attrs.get("scale", 0.0)), _outputs(node)), node)


_GRID_MODES = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest", "cubic": "bicubic", "bicubic": "bicubic"}


def grid_sample(node, graph):
    """``GridSample``-16/20/22 on 2-D and 3-D images (cubic on 2-D only). Refused where torch's
    grid_sample computes something else than ONNX: cubic with border padding (ONNX clamps the
    coordinate first, torch each tap) and nearest with reflection without align_corners (ONNX
    rounds before it reflects about a half pixel, torch after: a tie can go the other way)."""
    attrs = node.attributes
    mode = _text(attrs.get("mode", "linear"))  # version 16's default is "bilinear": the same
    padding = _text(attrs.get("padding_mode", "zeros"))
    if mode not in _GRID_MODES:
        raise NotImplementedError(f"GridSample: mode={mode!r} is not supported")
    if padding not in ("zeros", "border", "reflection"):
        raise NotImplementedError(f"GridSample: padding_mode={padding!r} is not supported")
    mode = _GRID_MODES[mode]
    align = bool(attrs.get("align_corners", 0))
    if mode == "bicubic" and padding == "border" or mode == "nearest" and padding == "reflection" and not align:
        raise NotImplementedError(f"GridSample: {mode} with padding_mode={padding!r} and align_corners={int(align)} is not what "
                                  "torch's grid_sample computes")
    return _result(_module("GridSample")(mode, padding, align), node)


def scatter_elements(node, graph):
    """``ScatterElements``-11/13/16/18 and ``Scatter``-9/11; with reduction 'none', indices that
    write one element twice are refused at run time (ONNX leaves their order undefined)."""
    attrs = node.attributes
    reduction = _text(attrs.get("reduction", "none"))
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise NotImplementedError(f"{node.operation_type}: reduction={reduction!r} is not supported")
    return _result(_module("ScatterElements")(int(attrs.get("axis", 0)), reduction), node)


def causal_conv_with_state(node, graph):
    """``CausalConvWithState``-27 (activation none, silu or swish)."""
    activation = _text(node.attributes.get("activation", "none"))
    if activation not in ("none", "silu", "swish"):
        raise NotImplementedError(f"CausalConvWithState: activation={activation!r} is not supported")
    return _result(_module("CausalConvWithState")(activation != "none", _outputs(node)), node)


def conv(node, graph):
    """``Conv``-1/11 (22 aliases 11): onnx2torch's where the weight and bias are constants; where
    they are computed at run time (onnx2torch reads initializers only), our module."""
    inputs = [i for i in node.input_values[1:] if i]
    if all(i in graph.initializers for i in inputs):
        return _own("Conv", 11)(node, graph)
    attrs = node.attributes
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise NotImplementedError(f"Conv: auto_pad={auto_pad!r} is not supported")

    def ints(name):
        return [int(v) for v in attrs[name]] if name in attrs else None

    return _result(_module("Conv")(auto_pad, ints("pads"), ints("strides"), ints("dilations"), int(attrs.get("group", 1))), node)


def _ints(attrs, name):
    return [int(v) for v in attrs[name]] if name in attrs else None


def lp_pool(node, graph):
    """``LpPool``-1/2/11/18/22 (1-D to 3-D). Refused: ceil_mode."""
    attrs = node.attributes
    if int(attrs.get("ceil_mode", 0)):
        raise NotImplementedError("LpPool: ceil_mode=1 is not supported")
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise NotImplementedError(f"LpPool: auto_pad={auto_pad!r} is not supported")
    p = float(attrs.get("p", 2))
    if p <= 0:
        raise NotImplementedError(f"LpPool: p={p} is not supported")
    return _result(_module("LpPool")(p, _ints(attrs, "kernel_shape"), auto_pad, _ints(attrs, "pads"), _ints(attrs, "strides"),
                                     _ints(attrs, "dilations")), node)


def center_crop_pad(node, graph):
    """``CenterCropPad``-18."""
    return _result(_module("CenterCropPad")(_ints(node.attributes, "axes")), node)


def unique(node, graph):
    """``Unique``-11/28: sorted or in order of first occurrence, flattened or along ``axis``."""
    attrs = node.attributes
    axis = int(attrs["axis"]) if "axis" in attrs else None
    return _result(_module("Unique")(axis, bool(attrs.get("sorted", 1)), _outputs(node)), node)


def range_27(node, graph):
    """``Range``-27: float16 and bfloat16 computed in ``stash_type`` (float or double)."""
    stash = int(node.attributes.get("stash_type", 1))
    if stash not in (1, 11):
        raise NotImplementedError(f"Range: stash_type={stash} is not supported (float or double)")
    return _result(_module("Range")(_FLOAT_TYPES[stash]), node)


def col2im(node, graph):
    """``Col2Im``-18 of 2-D images (others refused when run)."""
    attrs = node.attributes
    return _result(_module("Col2Im")(_ints(attrs, "pads"), _ints(attrs, "strides"), _ints(attrs, "dilations")), node)


def group_normalization(node, graph):
    """``GroupNormalization``-21 (scale and bias per channel)."""
    attrs = node.attributes
    stash = _float_type("GroupNormalization", "stash_type", int(attrs.get("stash_type", 1)))
    return _result(_module("GroupNormalization")(int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5)), stash), node)


def max_unpool(node, graph):
    """``MaxUnpool``-9/11/22."""
    attrs = node.attributes
    return _result(_module("MaxUnpool")(_ints(attrs, "kernel_shape"), _ints(attrs, "pads"), _ints(attrs, "strides")), node)


def affine_grid(node, graph):
    """``AffineGrid``-20 (2-D and 3-D) as torch's affine_grid."""
    return _result(_module("AffineGrid")(bool(node.attributes.get("align_corners", 0))), node)


_WINDOW_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 2: "uint8", 3: "int8", 5: "int16", 6: "int32",
                 7: "int64"}


def window(node, graph):
    """``HannWindow`` ``HammingWindow`` ``BlackmanWindow``-17."""
    out = int(node.attributes.get("output_datatype", 1))
    if out not in _WINDOW_TYPES:
        raise NotImplementedError(f"{node.operation_type}: output_datatype={out} is not supported")
    return _result(_module("Window")(node.operation_type, bool(node.attributes.get("periodic", 1)), _WINDOW_TYPES[out]), node)


_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def recurrent(node, graph):
    """``RNN``-7/14/22, ``GRU``-7/14/22, ``LSTM``-7/14/22 with Sigmoid, Tanh or Relu activations.
    Refused: other activations (and activation_alpha/beta), clip, LSTM's input_forget, and
    sequence_lens shorter than the sequence (at run time)."""
    op, attrs = node.operation_type, node.attributes
    direction = _text(attrs.get("direction", "forward"))
    if direction not in ("forward", "reverse", "bidirectional"):
        raise NotImplementedError(f"{op}: direction={direction!r} is not supported")
    dirs = 2 if direction == "bidirectional" else 1
    names = [_text(a) for a in attrs["activations"]] if "activations" in attrs else _DEFAULT_ACTIVATIONS[op] * dirs
    if len(names) != len(_DEFAULT_ACTIVATIONS[op]) * dirs or any(a not in ("Sigmoid", "Tanh", "Relu") for a in names):
        raise NotImplementedError(f"{op}: activations={names} is not supported (Sigmoid, Tanh, Relu, "
                                  f"{len(_DEFAULT_ACTIVATIONS[op])} per direction)")
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise NotImplementedError(f"{op}: {name} is not supported")
    if int(attrs.get("input_forget", 0)):
        raise NotImplementedError(f"{op}: input_forget=1 is not supported")
    return _result(_module("Recurrent")(op, direction, names, int(attrs.get("layout", 0)),
                                        bool(attrs.get("linear_before_reset", 0)), _outputs(node)), node)


_BITCAST_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 10: "float16",
                  11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def dft_17(node, graph):
    """``DFT``-17: ``axis`` an attribute (default 1)."""
    return _dft(node, int(node.attributes.get("axis", 1)))


def dft_20(node, graph):
    """``DFT``-20: ``axis`` an input (default -2)."""
    return _dft(node, None)


def _dft(node, axis):
    attrs = node.attributes
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    return _result(_module("DFT")(axis, inverse, onesided), node)


def max_pool(node, graph):
    """``MaxPool``-8/10/11/12 (22 aliases 12): onnx2torch's, except with auto_pad SAME_UPPER or
    SAME_LOWER or pads wider than half the kernel, one output and no ceil_mode, which it refused
    or torch's pooling fails on (our module pads with -inf; with dilations refused, and SAME where
    a stride skips input)."""
    attrs = node.attributes
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    kernel = _ints(attrs, "kernel_shape") or []
    pads = _ints(attrs, "pads") or [0] * (2 * len(kernel))
    wide = auto_pad == "NOTSET" and any(p > k // 2 for p, k in zip(pads, kernel * 2))
    if _outputs(node) == 2:  # with Indices (onnx2torch gave none)
        n = len(kernel)
        dilations = _ints(attrs, "dilations") or [1] * n
        order = int(attrs.get("storage_order", 0))
        if auto_pad not in ("NOTSET", "VALID") or pads[:n] != pads[n:] or \
                any(p > ((k - 1) * d + 1) // 2 for p, k, d in zip(pads, kernel, dilations)):
            raise NotImplementedError("MaxPool: Indices with SAME or asymmetric padding, or pads over half the window, are "
                                      "not supported")
        if order and n != 2:
            raise NotImplementedError(f"MaxPool: storage_order=1 of a {n}-D pool is not supported")
        return _result(_module("MaxPoolIndices")(kernel, _ints(attrs, "strides"), pads[:n] if auto_pad == "NOTSET" else [0] * n,
                                                 dilations, bool(attrs.get("ceil_mode", 0)), bool(order)), node)
    if (auto_pad in ("SAME_UPPER", "SAME_LOWER") or wide) and _outputs(node) == 1 and not int(attrs.get("ceil_mode", 0)):
        if any(d != 1 for d in _ints(attrs, "dilations") or []):  # onnxruntime leaves the dilation out of the SAME padding
            raise NotImplementedError(f"MaxPool: {auto_pad} with dilations is not supported")
        return _result(_module("MaxPoolSame")(auto_pad, kernel, _ints(attrs, "strides"), _ints(attrs, "dilations"), pads), node)
    return _own("MaxPool", 12)(node, graph)  # onnx2torch registers one converter for 8, 10, 11 and 12


def average_pool(node, graph):
    """``AveragePool``-7/10/11 (19 and 22 through onnx2torch_compat): onnx2torch's, except with
    auto_pad SAME_UPPER/SAME_LOWER or pads wider than half the kernel without ceil_mode, which it
    refused or torch's pooling fails on (our module; SAME where a stride skips input refused)."""
    attrs = node.attributes
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    kernel = _ints(attrs, "kernel_shape") or []
    pads = _ints(attrs, "pads") or [0] * (2 * len(kernel))
    wide = any(p > k // 2 for p, k in zip(pads, kernel * 2))
    if (auto_pad in ("SAME_UPPER", "SAME_LOWER") or auto_pad == "NOTSET" and wide) and not int(attrs.get("ceil_mode", 0)) \
            and all(d == 1 for d in _ints(attrs, "dilations") or []):
        return _result(_module("AveragePoolPadded")(auto_pad, kernel, pads, _ints(attrs, "strides"),
                                                    bool(attrs.get("count_include_pad", 0))), node)
    return _own("AveragePool", 11)(node, graph)  # onnx2torch registers one converter for 7, 10 and 11


def depth_to_space(node, graph):
    """``DepthToSpace``-1/11/13 (28 aliases 13): DCR, the default mode, which onnx2torch refused, by
    our module; CRD by onnx2torch's (torch's pixel_shuffle)."""
    mode = _text(node.attributes.get("mode", "DCR"))
    if mode == "CRD":
        return _own("DepthToSpace", 13)(node, graph)
    if mode != "DCR":
        raise NotImplementedError(f"DepthToSpace: mode={mode!r} is not supported")
    return _result(_module("DepthToSpace")(int(node.attributes["blocksize"])), node)


_UNSIGNED = {4, 12, 13}  # TensorProto UINT16, UINT32, UINT64


def _elem_type(graph, name: str) -> int:
    if name in graph.initializers:
        return int(graph.initializers[name].proto.data_type)
    info = graph.value_info.get(name)
    return int(info.type.tensor_type.elem_type) if info is not None and info.type.HasField("tensor_type") else 0


def _unsigned_at(version: int) -> Callable:
    """The converter of an elementwise op at ``version``: onnx2torch's, except where shape
    inference says its first input is uint16, uint32 or uint64 (torch has no kernels for those)."""
    def unsigned_or_own(node, graph):
        if node.input_values and _elem_type(graph, node.input_values[0]) in _UNSIGNED:
            return _result(_module("Unsigned")(node.operation_type), node)
        return _own(node.operation_type, version)(node, graph)

    unsigned_or_own.__name__ = unsigned_or_own.__qualname__ = f"unsigned_or_own_{version}"
    return unsigned_or_own


_UNSIGNED_VERSIONS = {"Add": (7, 13, 14), "Sub": (7, 13, 14), "Mul": (7, 13, 14), "Div": (7, 13, 14), "Mod": (10, 13),
                      "Greater": (7, 9, 13), "Less": (7, 9, 13), "GreaterOrEqual": (12, 16), "LessOrEqual": (12, 16),
                      "Max": (8, 12, 13), "Min": (8, 12, 13)}
_UNSIGNED_CONVERTERS = {v: _unsigned_at(v) for v in sorted({v for vs in _UNSIGNED_VERSIONS.values() for v in vs})}


def bit_cast(node, graph):
    """``BitCast``-26 between the types torch holds (no bool)."""
    to = int(node.attributes.get("to", 0))
    if to not in _BITCAST_TYPES:
        raise NotImplementedError(f"BitCast: to={to} is not supported")
    return _result(_module("BitCast")(_BITCAST_TYPES[to]), node)


def tensor_scatter(node, graph):
    """``TensorScatter``-24, linear or circular."""
    mode = _text(node.attributes.get("mode", "linear"))
    if mode not in ("linear", "circular"):
        raise NotImplementedError(f"TensorScatter: mode={mode!r} is not supported")
    return _result(_module("TensorScatter")(int(node.attributes.get("axis", -2)), mode == "circular"), node)


def deform_conv(node, graph):
    """``DeformConv``-19/22 of 2-D images through torchvision (groups and offset groups follow
    from the shapes, as in torchvision)."""
    attrs = node.attributes
    try:
        import torchvision.ops  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        raise NotImplementedError(f"DeformConv: torchvision is needed ({type(exc).__name__})") from None
    return _result(_module("DeformConv")(_ints(attrs, "pads"), _ints(attrs, "strides"), _ints(attrs, "dilations")), node)


def matmul_integer(node, graph):
    """``MatMulInteger``-10."""
    return _result(_module("MatMulInteger")(), node)


def conv_integer(node, graph):
    """``ConvInteger``-10 (the attributes as Conv's)."""
    attrs = node.attributes
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise NotImplementedError(f"ConvInteger: auto_pad={auto_pad!r} is not supported")
    inner = _module("Conv")(auto_pad, _ints(attrs, "pads"), _ints(attrs, "strides"), _ints(attrs, "dilations"),
                            int(attrs.get("group", 1)))
    return _result(_module("ConvInteger")(inner), node)


def qlinear_matmul(node, graph):
    """``QLinearMatMul``-10/21 with per-tensor scales and zero points (others refused when run)."""
    return _result(_module("QLinearMatMul")(), node)


def dynamic_quantize_linear(node, graph):
    """``DynamicQuantizeLinear``-11."""
    return _result(_module("DynamicQuantizeLinear")(), node)


def conv_transpose(node, graph):
    """``ConvTranspose``-1/11 (22 aliases 11): onnx2torch_compat's (onnx2torch's, output_shape
    refused) where the weight and bias are constants; our module where they are computed at run
    time. Refused: output_shape, and explicit pads together with a SAME auto_pad."""
    attrs = node.attributes
    if all(i in graph.initializers for i in node.input_values[1:] if i):
        return _own("ConvTranspose", 11)(node, graph)  # onnx2torch_compat's
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise NotImplementedError(f"ConvTranspose: auto_pad={auto_pad!r} is not supported")
    if "output_shape" in attrs:
        raise NotImplementedError("ConvTranspose: output_shape is not supported")
    if auto_pad != "NOTSET" and "pads" in attrs:
        raise NotImplementedError(f"ConvTranspose: pads with auto_pad={auto_pad!r} is not supported")
    return _result(_module("ConvTranspose")(auto_pad, _ints(attrs, "pads"), _ints(attrs, "strides"), _ints(attrs, "dilations"),
                                            _ints(attrs, "output_padding"), int(attrs.get("group", 1))), node)


def clip(node, graph):
    """``Clip``-11/12/13: onnx2torch's where min and max are constants; our module where they are
    computed at run time or both absent (onnx2torch refused those)."""
    bounds = [i for i in node.input_values[1:] if i]
    if bounds and all(i in graph.initializers for i in bounds):
        return _own("Clip", 13)(node, graph)
    return _result(_module("Clip")(), node)


def dropout(node, graph):
    """``Dropout``-10/12/13 (22 aliases 13): the input, and the mask output onnx2torch did not
    give; training mode refused at run time."""
    return _result(_module("Dropout")(_outputs(node) > 1), node)


def reshape(node, graph):
    """``Reshape``-14 (19-25 alias it): onnx2torch's, except with ``allowzero``=1, which it refused
    (our module reads the shape at run time and takes a 0 as a dim of size 0)."""
    if int(node.attributes.get("allowzero", 0)):
        return _result(_module("ReshapeAllowZero")(), node)
    return _own("Reshape", 14)(node, graph)


#: (op, version) -> our converter that replaces onnx2torch's own, which computes something else.
REPLACING: dict[tuple[str, int], Callable] = {("Flatten", 9): flatten, ("Flatten", 11): flatten, ("Flatten", 13): flatten,
                                              ("Conv", 1): conv, ("Conv", 11): conv, ("Clip", 11): clip, ("Clip", 12): clip,
                                              ("Clip", 13): clip, ("Dropout", 10): dropout, ("Dropout", 12): dropout,
                                              ("Dropout", 13): dropout, ("Reshape", 14): reshape,
                                              ("ConvTranspose", 1): conv_transpose, ("ConvTranspose", 11): conv_transpose,
                                              **{("MaxPool", v): max_pool for v in (8, 10, 11, 12)},
                                              **{("AveragePool", v): average_pool for v in (7, 10, 11)},
                                              ("DepthToSpace", 11): depth_to_space, ("DepthToSpace", 13): depth_to_space,
                                              **{(op, v): _UNSIGNED_CONVERTERS[v] for op, vs in _UNSIGNED_VERSIONS.items()
                                                 for v in vs}}


#: (op, versions, converter) of the ops onnx2torch lacks entirely.
TABLE: list[tuple[str, tuple[int, ...], Callable]] = [
    *((op, (9, 22), elementwise) for op in _ELEMENTWISE),
    ("Mish", (18, 22), mish),
    ("ThresholdedRelu", (10, 22), thresholded_relu),
    ("Swish", (24,), swish),
    ("Shrink", (9,), shrink),
    ("Hardmax", (1, 11), hardmax_11),
    ("Hardmax", (13,), hardmax),
    ("Trilu", (14,), trilu),
    *((op, (18,), bitwise) for op in _BITWISE),
    ("BitShift", (11, 28), bit_shift),
    ("CumProd", (26,), cum_prod),
    ("RMSNormalization", (23,), rms_normalization),
    ("SoftmaxCrossEntropyLoss", (12, 13), softmax_cross_entropy_loss),
    ("NegativeLogLikelihoodLoss", (12, 13, 22), negative_log_likelihood_loss),
    ("RotaryEmbedding", (23,), rotary_embedding),
    ("Attention", (23, 24, 25), attention),
    ("OneHot", (9, 11, 28), one_hot),
    ("SpaceToDepth", (1, 13, 28), space_to_depth),
    ("GlobalMaxPool", (1, 22), global_max_pool),
    ("LpNormalization", (1, 22), lp_normalization),
    ("Det", (11, 22), det),
    ("Compress", (9, 11, 28), compress),
    ("ReverseSequence", (10, 28), reverse_sequence),
    ("SwiGLU", (28,), swiglu),
    ("Flatten", (1,), flatten),
    ("DepthToSpace", (1,), depth_to_space),
    ("LinearAttention", (27,), linear_attention),
    ("GridSample", (16, 20, 22), grid_sample),
    ("ScatterElements", (11, 13, 16, 18), scatter_elements),
    ("Scatter", (9, 11), scatter_elements),
    ("CausalConvWithState", (27,), causal_conv_with_state),
    ("LpPool", (1, 2, 11, 18, 22), lp_pool),
    ("CenterCropPad", (18,), center_crop_pad),
    ("Unique", (11, 28), unique),
    ("Range", (27,), range_27),
    ("Col2Im", (18,), col2im),
    ("GroupNormalization", (21,), group_normalization),
    ("MaxUnpool", (9, 11, 22), max_unpool),
    ("AffineGrid", (20,), affine_grid),
    *((op, (17,), window) for op in ("HannWindow", "HammingWindow", "BlackmanWindow")),
    *((op, (7, 14, 22), recurrent) for op in ("RNN", "GRU", "LSTM")),
    ("MatMulInteger", (10,), matmul_integer),
    ("ConvInteger", (10,), conv_integer),
    ("QLinearMatMul", (10, 21), qlinear_matmul),
    ("DynamicQuantizeLinear", (11,), dynamic_quantize_linear),
    ("BitCast", (26,), bit_cast),
    ("DFT", (17,), dft_17),
    ("DFT", (20,), dft_20),
    ("TensorScatter", (24,), tensor_scatter),
    ("DeformConv", (19, 22), deform_conv),
    ("DequantizeLinear", (10, 13, 19, 21, 23, 24, 25, 28), dequantize_linear),
    ("QuantizeLinear", (10, 13, 19, 21, 23, 24, 25, 28), quantize_linear),
]


def converters() -> dict[tuple[str, int], Callable]:
    """(op, version) -> converter, for every version of :data:`TABLE`."""
    return {(op, v): fn for op, versions, fn in TABLE for v in versions}
