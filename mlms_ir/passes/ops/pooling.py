"""Pooling, reductions and resizing."""

from __future__ import annotations

import math

from mlms_ir.ir.expr import ceil_log2, differs, floordiv, smax
from mlms_ir.passes.registry import MS, ML, Cost, OpContext, cost


def _kernel(ctx: OpContext) -> int:
    k = ctx.ints_attr("kernel_shape")
    return math.prod(k) if k else 1


@cost("MaxPool", "AveragePool", category="elementwise")
def pool(ctx: OpContext) -> Cost:
    """prod(kernel) FLOPs per output element (compares or adds; AveragePool's divide folded in)"""
    return Cost(0, ctx.out_numel() * _kernel(ctx))


@cost("LpPool", category="elementwise")
def lp_pool(ctx: OpContext) -> Cost:
    """2*prod(kernel) FLOPs per output element (power and accumulate)"""
    return Cost(0, 2 * ctx.out_numel() * _kernel(ctx))


@cost("GlobalAveragePool", "GlobalMaxPool", category="elementwise")
def global_pool(ctx: OpContext) -> Cost:
    """1 FLOP per input element"""
    return Cost(0, ctx.in_numel(0))


@cost("QLinearGlobalAveragePool", domain=MS, category="elementwise")
def qlinear_global_pool(ctx: OpContext) -> Cost:
    """1 integer op per input element, +2 per output element (requantise)"""
    return Cost(0, ctx.in_numel(0) + 2 * ctx.out_numel())


@cost("GlobalLpPool", category="elementwise")
def global_lp_pool(ctx: OpContext) -> Cost:
    """2 FLOPs per input element"""
    return Cost(0, 2 * ctx.in_numel(0))


@cost("MaxRoiPool", category="elementwise")
def max_roi_pool(ctx: OpContext) -> Cost:
    """Upper bound: each output element compares every element of its ROI's bin, taken as input_spatial/pooled_shape"""
    x = ctx.in_shape(0)
    pooled = ctx.ints_attr("pooled_shape") or [1, 1]
    bin_elems = smax(1, floordiv(math.prod(x[2:]), max(1, math.prod(pooled))))
    return Cost(0, ctx.out_numel() * bin_elems)


@cost("RoiAlign", category="elementwise")
def roi_align(ctx: OpContext) -> Cost:
    """Per output element: sampling_ratio^2 bilinear samples (4 taps, 7 FLOPs each) + average; adaptive ratio (0) counted as 2"""
    r = ctx.int_attr("sampling_ratio", 0, least=0) or 2
    return Cost(0, ctx.out_numel() * (r * r * 7 + 1))


@cost("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ArgMax", "ArgMin", "CumSum", category="elementwise")
def reduce(ctx: OpContext) -> Cost:
    """1 FLOP per input element"""
    return Cost(0, ctx.in_numel(0))


@cost("ReduceMean", category="elementwise")
def reduce_mean(ctx: OpContext) -> Cost:
    """1 FLOP per input element + 1 per output element (the division)"""
    return Cost(0, ctx.in_numel(0) + ctx.out_numel())


@cost("ReduceSumSquare", category="elementwise")
def reduce_sum_square(ctx: OpContext) -> Cost:
    """2 FLOPs per input element (square, accumulate)"""
    return Cost(0, 2 * ctx.in_numel(0))


@cost("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", category="elementwise")
def reduce_l2(ctx: OpContext) -> Cost:
    """2 FLOPs per input element (square/exp, accumulate) + 1 per output element (sqrt/log)"""
    return Cost(0, 2 * ctx.in_numel(0) + ctx.out_numel())


@cost("TopK", category="elementwise")
def topk(ctx: OpContext) -> Cost:
    """input elements * ceil(log2(K)) comparisons (heap selection; at least 1 per element)"""
    k = ctx.const(1)
    kv = int(k.reshape(-1)[0]) if k is not None and k.size else ctx.out_shape(0)[int(ctx.attr("axis", -1))]
    return Cost(0, ctx.in_numel(0) * smax(1, ceil_log2(kv)))


def _resized_axes(ctx: OpContext) -> list:
    """Per axis, 1 if the op changes its size, else 0 (an indicator of the dims when that depends on them)."""
    x = ctx.in_shape(0)
    y = ctx.out_shape(0)
    return [differs(a, b) for a, b in zip(x, y)]


@cost("Resize", "Upsample", category="elementwise")
def resize(ctx: OpContext) -> Cost:
    """nearest: 0 FLOPs (data movement); linear: 2^k taps, cubic: 4^k taps over the k resized axes; (2*taps - 1) FLOPs per output element"""
    mode = str(ctx.attr("mode", "nearest")).lower()
    resized = _resized_axes(ctx)
    if mode == "nearest" or not any(resized):
        return Cost(0, 0)
    k = sum(resized)
    taps = (4 if mode == "cubic" else 2) ** k
    flops = ctx.out_numel() * (2 * taps - 1)
    if not isinstance(k, int):  # whether any axis is resized depends on the dims: 0 when none is
        flops = flops * (1 - math.prod(1 - r for r in resized))
    return Cost(0, flops)


@cost("GridSample", category="elementwise")
def grid_sample(ctx: OpContext) -> Cost:
    """bilinear: 2^d taps, bicubic: 4^d taps, nearest: 1 over the d spatial dims; (2*taps - 1) FLOPs per output element"""
    mode = str(ctx.attr("mode", "linear")).lower()
    d = len(ctx.out_shape(0)) - 2
    taps = 1 if mode == "nearest" else (4 if mode in ("cubic", "bicubic") else 2) ** d
    return Cost(0, ctx.out_numel() * (2 * taps - 1))


def _tree_depths(ctx: OpContext) -> tuple[int, int]:
    """(number of trees, summed depth of all trees) from the tree-ensemble attributes."""
    tree_ids = ctx.attr("nodes_treeids", []) or []
    node_ids = ctx.attr("nodes_nodeids", []) or []
    modes = ctx.attr("nodes_modes", []) or []
    t_ids = ctx.attr("nodes_truenodeids", []) or []
    f_ids = ctx.attr("nodes_falsenodeids", []) or []
    children: dict[tuple[int, int], list[int]] = {}
    for i, (t, n) in enumerate(zip(tree_ids, node_ids)):
        mode = modes[i].decode() if i < len(modes) and isinstance(modes[i], bytes) else (modes[i] if i < len(modes) else "LEAF")
        if mode != "LEAF" and i < len(t_ids) and i < len(f_ids):
            children[(t, n)] = [t_ids[i], f_ids[i]]
    total = 0
    trees = sorted(set(tree_ids))
    for t in trees:
        depth, frontier, seen = 0, [0], set()
        while frontier:
            nxt = []
            for n in frontier:
                if (t, n) in seen:
                    continue
                seen.add((t, n))
                nxt.extend(children.get((t, n), []))
            if any((t, n) in children for n in frontier):
                depth += 1
            frontier = [n for n in nxt if (t, n) not in seen]
        total += depth
    return len(trees), total


@cost("TreeEnsembleClassifier", "TreeEnsembleRegressor", domain=ML, category="elementwise")
def tree_ensemble(ctx: OpContext) -> Cost:
    """N * (sum over trees of tree depth) comparisons + N * trees accumulations"""
    x = ctx.in_shape(0)
    n = x[0] if len(x) > 1 else 1
    trees, depth = _tree_depths(ctx)
    return Cost(0, n * (depth + trees))
