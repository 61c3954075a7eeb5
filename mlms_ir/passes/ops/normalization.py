"""Normalisation layers and softmax."""

from __future__ import annotations

from mlms_ir.passes.registry import MS, Cost, OpContext, cost


@cost("BatchNormalization", category="elementwise")
def batch_norm(ctx: OpContext) -> Cost:
    """Inference form, folded to y = x*a + b: 2 FLOPs per element"""
    return Cost(0, 2 * ctx.in_numel(0))


@cost("LayerNormalization", domain=("", MS), category="elementwise")
@cost("InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization", category="elementwise")
def layer_norm(ctx: OpContext) -> Cost:
    """5 FLOPs per element: mean, centre, variance, normalise, affine"""
    return Cost(0, 5 * ctx.in_numel(0))


@cost("RMSNormalization", category="elementwise")
def rms_norm(ctx: OpContext) -> Cost:
    """3 FLOPs per element: sum of squares, normalise, scale"""
    return Cost(0, 3 * ctx.in_numel(0))


@cost("SimplifiedLayerNormalization", domain=("", MS), category="elementwise")
def simplified_layer_norm(ctx: OpContext) -> Cost:
    """RMSNorm: 3 FLOPs per element: sum of squares, normalise, scale"""
    return Cost(0, 3 * ctx.in_numel(0))


@cost("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain=MS, category="elementwise")
def skip_layer_norm(ctx: OpContext) -> Cost:
    """Residual add fused into the norm: 5 FLOPs per element (3 for the simplified form) + 1 for the skip add + 1 for a bias"""
    per = 3 if ctx.node.op_type.startswith("SkipSimplified") else 5
    per += 1 + (1 if ctx.has_input(4 if per == 5 else 3) else 0)
    return Cost(0, per * ctx.in_numel(0))


@cost("LpNormalization", category="elementwise")
def lp_norm(ctx: OpContext) -> Cost:
    """3 FLOPs per element: power, accumulate, divide"""
    return Cost(0, 3 * ctx.in_numel(0))


@cost("LRN", category="elementwise")
def lrn(ctx: OpContext) -> Cost:
    """(size + 3) FLOPs per element: square-sum over `size` channels, scale, power, divide"""
    size = ctx.int_attr("size", 1)
    return Cost(0, (size + 3) * ctx.in_numel(0))


@cost("Softmax", "LogSoftmax", category="elementwise")
def softmax(ctx: OpContext) -> Cost:
    """4 FLOPs per element: subtract max, exp, sum, divide (LogSoftmax: log instead of divide)"""
    return Cost(0, 4 * ctx.in_numel(0))


@cost("BiasSoftmax", domain=MS, category="elementwise")
def bias_softmax(ctx: OpContext) -> Cost:
    """Softmax with a fused bias add: 5 FLOPs per element"""
    return Cost(0, 5 * ctx.in_numel(0))


@cost("Hardmax", category="elementwise")
def hardmax(ctx: OpContext) -> Cost:
    """1 comparison per element"""
    return Cost(0, ctx.in_numel(0))
