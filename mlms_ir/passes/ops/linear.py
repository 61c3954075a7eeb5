"""Convolutions, matrix products and their quantized and fused forms (the MAC-heavy ops)."""

from __future__ import annotations

import math
import re

from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.expr import smax
from mlms_ir.passes.registry import MS, ML, Cost, OpContext, cost


def _conv_macs(ctx: OpContext, x: int, w: int, nhwc: bool = False) -> tuple[int, int]:
    """(MACs, output elements) of a convolution with data input ``x`` and weight input ``w``."""
    out = ctx.out_shape(0)
    wshape = ctx.in_shape(w)
    if len(wshape) < 2:
        raise InvalidModelError(f"node {ctx.node.label} has a weight of rank {len(wshape)}; Conv needs rank >= 3")
    kernel = math.prod(wshape[2:])
    cin_per_group = wshape[1]  # W is [Cout, Cin/group, k...]
    out_numel = math.prod(out)
    return out_numel * cin_per_group * kernel, out_numel


@cost("Conv", "FusedConv", domain=("", MS))
def conv(ctx: OpContext) -> Cost:
    """MACs = N*Cout*prod(out_spatial)*(Cin/group)*prod(kernel); FLOPs = 2*MACs + out elements if bias (+1/elt for a fused activation)"""
    macs, out = _conv_macs(ctx, 0, 1)
    flops = 2 * macs + (out if ctx.has_input(2) else 0)
    if ctx.node.op_type == "FusedConv":
        flops += out * (1 + (1 if ctx.has_input(3) else 0))  # activation, optional residual add
    return Cost(macs, flops)


@cost("NhwcConv", domain=MS)
def nhwc_conv(ctx: OpContext) -> Cost:
    """Conv in NHWC layout: MACs = N*prod(out_spatial)*Cout*(Cin/group)*prod(kernel); FLOPs = 2*MACs (+ bias)"""
    macs, out = _conv_macs(ctx, 0, 1)
    return Cost(macs, 2 * macs + (out if ctx.has_input(2) else 0))


@cost("ConvTranspose")
def conv_transpose(ctx: OpContext) -> Cost:
    """MACs = N*Cin*prod(in_spatial)*(Cout/group)*prod(kernel); FLOPs = 2*MACs + out elements if bias"""
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)  # [Cin, Cout/group, k...]
    macs = math.prod(x) * w[1] * math.prod(w[2:])
    return Cost(macs, 2 * macs + (ctx.out_numel() if ctx.has_input(2) else 0))


@cost("ConvInteger")
def conv_integer(ctx: OpContext) -> Cost:
    """Integer MACs as Conv; FLOPs (integer ops) = 2*MACs"""
    macs, _ = _conv_macs(ctx, 0, 1)
    return Cost(macs, 2 * macs, int_macs=True)


@cost("QLinearConv", domain=("", MS))
def qlinear_conv(ctx: OpContext) -> Cost:
    """Integer MACs as Conv (W is input 3); ops = 2*MACs + 1/elt requantisation (+ bias)"""
    macs, out = _conv_macs(ctx, 0, 3)
    return Cost(macs, 2 * macs + out + (out if ctx.has_input(8) else 0), int_macs=True)


@cost("Gemm", "FusedGemm", domain=("", MS))
def gemm(ctx: OpContext) -> Cost:
    """Y = alpha*A'B' + beta*C: MACs = M*N*K; FLOPs = 2*MACs + M*N if C is given (alpha/beta scaling not counted)"""
    a = ctx.in_shape(0)
    if len(a) != 2:
        raise InvalidModelError(f"node {ctx.node.label}: Gemm input A has rank {len(a)}, expected 2")
    k = a[0] if ctx.attr("transA", 0) else a[1]
    m, n = ctx.out_shape(0)[-2:]
    macs = m * n * k
    flops = 2 * macs + (m * n if ctx.has_input(2) else 0)
    if ctx.node.op_type == "FusedGemm":
        flops += m * n
    return Cost(macs, flops)


def _matmul_macs(ctx: OpContext, a: int = 0, trans_a: bool = False) -> int:
    ashape = ctx.in_shape(a)
    if not ashape:
        raise InvalidModelError(f"node {ctx.node.label}: MatMul input is a scalar")
    k = ashape[-2] if trans_a and len(ashape) >= 2 else ashape[-1]
    return ctx.out_numel(0) * k


@cost("MatMul")
def matmul(ctx: OpContext) -> Cost:
    """MACs = out elements * K (broadcast batch dims included); FLOPs = 2*MACs"""
    macs = _matmul_macs(ctx)
    return Cost(macs, 2 * macs)


@cost("FusedMatMul", domain=MS)
def fused_matmul(ctx: OpContext) -> Cost:
    """alpha * A'B' (transposes folded): MACs = out elements * K; FLOPs = 2*MACs + out elements if alpha != 1"""
    macs = _matmul_macs(ctx, trans_a=bool(ctx.attr("transA", 0)))
    alpha = ctx.attr("alpha", 1.0)
    return Cost(macs, 2 * macs + (ctx.out_numel() if alpha != 1.0 else 0))


@cost("MatMulNBits", domain=MS)
def matmul_nbits(ctx: OpContext) -> Cost:
    """Weight-only quantized MatMul (weights dequantized on the fly): MACs = out elements * K; FLOPs = 2*MACs + K*N dequantisation"""
    macs = _matmul_macs(ctx)
    k, n = ctx.int_attr("K", 0, least=0), ctx.int_attr("N", 0, least=0)  # required > 0; absent: no dequantisation counted
    return Cost(macs, 2 * macs + 2 * k * n)


@cost("MatMulInteger", "QLinearMatMul")
def matmul_integer(ctx: OpContext) -> Cost:
    """Integer MACs = out elements * K; ops = 2*MACs (+1/elt requantisation for QLinearMatMul)"""
    a = 0
    macs = _matmul_macs(ctx, a)
    extra = ctx.out_numel() if ctx.node.op_type == "QLinearMatMul" else 0
    return Cost(macs, 2 * macs + extra, int_macs=True)


@cost("MatMulIntegerToFloat", "DynamicQuantizeMatMul", domain=MS)
def matmul_integer_to_float(ctx: OpContext) -> Cost:
    """Integer MACs = out elements * K; ops = 2*MACs + 2/elt rescaling to float"""
    macs = _matmul_macs(ctx)
    return Cost(macs, 2 * macs + 2 * ctx.out_numel(), int_macs=True)


_TERM = re.compile(r"[A-Za-z]|\.\.\.")


@cost("Einsum")
def einsum(ctx: OpContext) -> Cost:
    """Two or more operands: MACs = (operands-1) * product of every index's size; one operand: FLOPs = input elements"""
    eq = str(ctx.attr("equation", "")).replace(" ", "")
    lhs = eq.split("->")[0]
    terms = lhs.split(",")
    n = ctx.n_inputs()
    if len(terms) != n:
        raise InvalidModelError(f"node {ctx.node.label}: Einsum equation '{eq}' names {len(terms)} operands, node has {n}")
    sizes: dict[str, int] = {}
    for i, term in enumerate(terms):
        shape = ctx.in_shape(i)
        letters = _TERM.findall(term)
        if "..." in letters:
            k = letters.index("...")
            n_ell = max(len(shape) - (len(letters) - 1), 0)
            # broadcast dims align from the right, as in numpy: the last one is "...0" everywhere
            ell = [f"...{n_ell - 1 - j}" for j in range(n_ell)]
            letters = letters[:k] + ell + letters[k + 1 :]
        if len(letters) != len(shape):
            raise InvalidModelError(f"node {ctx.node.label}: Einsum term '{term}' does not match input rank {len(shape)}")
        for letter, d in zip(letters, shape):
            sizes[letter] = smax(sizes.get(letter, 1), d)
    if n == 1:
        return Cost(0, ctx.in_numel(0))
    macs = (n - 1) * math.prod(sizes.values())
    return Cost(macs, 2 * macs)


@cost("LinearClassifier", "LinearRegressor", domain=ML)
def linear_classifier(ctx: OpContext) -> Cost:
    """MACs = N * features * targets (coefficients); FLOPs = 2*MACs + N*targets (intercepts)"""
    x = ctx.in_shape(0)
    n = x[0] if len(x) > 1 else 1
    feats = x[-1]
    coef = ctx.attr("coefficients", []) or []
    targets = max(len(coef) // feats, 1) if isinstance(feats, int) and feats > 0 else 1
    macs = n * feats * targets
    return Cost(macs, 2 * macs + n * targets)


@cost("SVMClassifier", "SVMRegressor", domain=ML)
def svm(ctx: OpContext) -> Cost:
    """MACs = N * support vectors * features (kernel evaluations; linear SVM: N * classes * features); FLOPs = 2*MACs"""
    x = ctx.in_shape(0)
    n = x[0] if len(x) > 1 else 1
    feats = x[-1]
    sv = ctx.attr("support_vectors", []) or []
    f = feats if isinstance(feats, int) and feats > 0 else 1
    n_sv = len(sv) // f
    if n_sv == 0:
        coef = ctx.attr("coefficients", []) or []
        n_sv = max(len(coef) // f, 1)
    macs = n * n_sv * feats
    return Cost(macs, 2 * macs)
