"""Fused attention ops (ai.onnx Attention, com.microsoft Attention/MultiHeadAttention/GQA)."""

from __future__ import annotations

from mlms_ir.errors import InvalidModelError
from mlms_ir.passes.registry import MS, Cost, OpContext, cost


def _scores_cost(batch_heads_s_l: int, masked: bool) -> int:
    """Per attention score: scale (1), mask add (1 if masked), softmax (4)."""
    return batch_heads_s_l * (5 + (1 if masked else 0))


@cost("Attention")
def onnx_attention(ctx: OpContext) -> Cost:
    """MACs = B*Nq*S*L*(H + Hv) (QK^T and scores*V, L including past); FLOPs = 2*MACs + 5 per score (+1 with a mask)"""
    q, k, v = ctx.in_shape(0), ctx.in_shape(1), ctx.in_shape(2)
    if len(q) == 4:
        b, nq, s, h = q
    elif len(q) == 3:
        nq = int(ctx.attr("q_num_heads", 0))
        if nq <= 0:
            raise InvalidModelError(f"node {ctx.node.label}: 3-D Attention inputs need q_num_heads")
        b, s, h = q[0], q[1], q[2] // nq
    else:
        raise InvalidModelError(f"node {ctx.node.label}: Attention query has rank {len(q)}, expected 3 or 4")
    if len(k) == 4:
        length = k[2]
    else:
        length = k[1]
    if len(v) == 4:
        hv = v[3]
    else:
        kvh = ctx.int_attr("kv_num_heads", 0, least=0) or nq
        hv = v[2] // kvh
    if ctx.has_input(4):  # past_key [B, Nkv, P, H]
        length += ctx.in_shape(4)[2]
    macs = b * nq * s * length * (h + hv)
    return Cost(macs, 2 * macs + _scores_cost(b * nq * s * length, ctx.has_input(3)))


@cost("Attention", domain=MS)
def ms_attention(ctx: OpContext) -> Cost:
    """QKV projection B*S*Din*(Dq+Dk+Dv) + B*S*L*(Dq + Dv) attention MACs; FLOPs = 2*MACs + bias adds + 5 per score (+1 with a mask)"""
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)
    heads = ctx.int_attr("num_heads", 1)
    b, s, din = x
    sizes = ctx.ints_attr("qkv_hidden_sizes")
    if sizes:
        dq, dk, dv = sizes
    else:
        dq = dk = dv = w[1] // 3
    length = s
    if ctx.has_input(4):  # past [2, B, N, P, H]
        length += ctx.in_shape(4)[3]
    proj = b * s * din * (dq + dk + dv)
    attn = b * s * length * (dq + dv)
    macs = proj + attn
    flops = 2 * macs + (b * s * (dq + dk + dv) if ctx.has_input(2) else 0)
    return Cost(macs, flops + _scores_cost(b * heads * s * length, ctx.has_input(3)))


@cost("MultiHeadAttention", domain=MS)
def ms_mha(ctx: OpContext) -> Cost:
    """MACs = B*S*L*(D + Dv) (no projections; L including past); FLOPs = 2*MACs + Q/K/V bias adds + 5 per score (+1 with a mask)"""
    q = ctx.in_shape(0)
    heads = ctx.int_attr("num_heads", 1)
    if len(q) == 5:  # packed QKV [B, S, N, 3, H]
        b, s, n, _, h = q
        d = dv = n * h
        length = s
    else:
        b, s, d = q
        k = ctx.in_shape(1)
        if len(k) == 5:  # packed KV [B, L, N, 2, H]
            length, dv = k[1], k[2] * k[4]
        elif len(k) == 4:  # [B, N, L, H]
            length = k[2]
            v = ctx.in_shape(2)
            dv = v[1] * v[3]
        else:
            length = k[1]
            dv = ctx.in_shape(2)[2] if ctx.has_input(2) else d
    if ctx.has_input(6):  # past_key [B, N, P, H]
        length += ctx.in_shape(6)[2]
    macs = b * s * length * (d + dv)
    masked = ctx.has_input(4) or ctx.has_input(5)
    bias = b * s * d + b * length * (d + dv) if ctx.has_input(3) else 0  # Q, K, V bias adds
    return Cost(macs, 2 * macs + bias + _scores_cost(b * heads * s * length, masked))


@cost("GroupQueryAttention", domain=MS)
def ms_gqa(ctx: OpContext) -> Cost:
    """MACs = 2*B*Nq*S*L*H with L the present (total) length; FLOPs = 2*MACs + 5 per score"""
    q = ctx.in_shape(0)
    nq = ctx.int_attr("num_heads", 1)
    nkv = ctx.int_attr("kv_num_heads", nq)
    b, s, d = q
    h = d // (nq + 2 * nkv) if not ctx.has_input(1) else d // nq
    length = s
    outs = ctx.node.outputs
    if len(outs) > 1 and outs[1]:
        length = ctx.out_shape(1)[2]
    elif ctx.has_input(3):
        length = ctx.in_shape(3)[2] + s
    macs = 2 * b * nq * s * length * h
    return Cost(macs, 2 * macs + _scores_cost(b * nq * s * length, False))


@cost("RotaryEmbedding", domain=("", MS), category="elementwise")
def rotary(ctx: OpContext) -> Cost:
    """3 FLOPs per element: x*cos + rotate(x)*sin"""
    return Cost(0, 3 * ctx.in_numel(0))
