"""Recurrent cells: RNN, GRU, LSTM (every time step, every direction)."""

from __future__ import annotations

from mlms_ir.passes.registry import Cost, OpContext, cost

#: gates per cell and the elementwise FLOPs per hidden unit per step beyond the gate activations.
_CELLS = {"RNN": (1, 0), "GRU": (3, 4), "LSTM": (4, 5)}


@cost("RNN", "GRU", "LSTM")
def recurrent(ctx: OpContext) -> Cost:
    """MACs = steps*batch*dirs*gates*H*(I+H) (gates: RNN 1, GRU 3, LSTM 4); FLOPs = 2*MACs + steps*batch*dirs*H*(gates + cell update (GRU 4, LSTM 5, +3 peepholes) + 2*gates if bias)"""
    gates, update = _CELLS[ctx.node.op_type]
    x = ctx.in_shape(0)
    w = ctx.in_shape(1)  # [dirs, gates*H, I]
    layout = int(ctx.attr("layout", 0))
    steps, batch = (x[1], x[0]) if layout == 1 else (x[0], x[1])
    dirs = w[0]
    hidden = ctx.int_attr("hidden_size", 0, least=0) or w[1] // gates
    inp = w[2]
    macs = steps * batch * dirs * gates * hidden * (inp + hidden)
    per_unit = gates + update
    if ctx.has_input(3):
        per_unit += 2 * gates
    if ctx.node.op_type == "LSTM" and ctx.has_input(7):
        per_unit += 3
    return Cost(macs, 2 * macs + steps * batch * dirs * hidden * per_unit)
