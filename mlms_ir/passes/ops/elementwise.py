"""Elementwise arithmetic, math, activations, comparisons and quantization."""

from __future__ import annotations

from mlms_ir.passes.registry import MS, ML, Cost, OpContext, cost

BINARY = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu", "BitShift", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor",
)
UNARY = (
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
    "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "Not", "BitwiseNot", "IsNaN", "IsInf",
)
ACTIVATIONS = (
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Clip", "Elu",
    "Selu", "Celu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Shrink", "Swish",
)


@cost(*BINARY, category="elementwise")
def binary(ctx: OpContext) -> Cost:
    """1 FLOP per output element (broadcasting included)"""
    return Cost(0, ctx.out_numel())


@cost(*UNARY, category="elementwise")
def unary(ctx: OpContext) -> Cost:
    """1 FLOP per output element"""
    return Cost(0, ctx.out_numel())


@cost(*ACTIVATIONS, category="elementwise")
def activation(ctx: OpContext) -> Cost:
    """1 FLOP per output element (activations count once, whatever their internal formula)"""
    return Cost(0, ctx.out_numel())


@cost("Gelu", "FastGelu", "QuickGelu", "BiasGelu", "BiasAdd", domain=MS, category="elementwise")
def ms_activation(ctx: OpContext) -> Cost:
    """1 FLOP per output element, +1 per element for a fused bias (BiasGelu, BiasAdd, FastGelu with bias)"""
    n = ctx.out_numel()
    fused_bias = ctx.node.op_type in ("BiasGelu", "BiasAdd") or (ctx.node.op_type == "FastGelu" and ctx.has_input(1))
    return Cost(0, n * (2 if fused_bias else 1))


@cost("Sum", "Max", "Min", "Mean", category="elementwise")
def variadic(ctx: OpContext) -> Cost:
    """(inputs - 1) FLOPs per output element; Mean adds 1 per element for the division"""
    n = ctx.out_numel()
    k = max(ctx.n_inputs() - 1, 0)
    return Cost(0, n * (k + (1 if ctx.node.op_type == "Mean" else 0)))


@cost("QuantizeLinear", "DequantizeLinear", domain=("", MS), category="elementwise")
def quantize(ctx: OpContext) -> Cost:
    """2 ops per element (scale, shift/round)"""
    return Cost(0, 2 * ctx.out_numel())


@cost("DynamicQuantizeLinear", category="elementwise")
def dynamic_quantize(ctx: OpContext) -> Cost:
    """4 ops per element (min/max scan, scale, shift, round)"""
    return Cost(0, 4 * ctx.in_numel(0))


@cost("QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", domain=MS, category="elementwise")
def qlinear_elementwise(ctx: OpContext) -> Cost:
    """3 integer ops per output element (dequantise, operate, requantise)"""
    return Cost(0, 3 * ctx.out_numel())


@cost("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", category="elementwise")
def random(ctx: OpContext) -> Cost:
    """1 FLOP per generated element"""
    return Cost(0, ctx.out_numel())


@cost("Scaler", domain=ML, category="elementwise")
def scaler(ctx: OpContext) -> Cost:
    """2 FLOPs per element (offset, scale)"""
    return Cost(0, 2 * ctx.out_numel())


@cost("Normalizer", domain=ML, category="elementwise")
def normalizer(ctx: OpContext) -> Cost:
    """3 FLOPs per element (norm accumulation, root, divide)"""
    return Cost(0, 3 * ctx.out_numel())


@cost("Binarizer", "Imputer", domain=ML, category="elementwise")
def binarizer(ctx: OpContext) -> Cost:
    """1 op per element"""
    return Cost(0, ctx.out_numel())
