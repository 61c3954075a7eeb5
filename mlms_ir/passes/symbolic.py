"""Turning the passes' formulas into the report model: strings in sympy syntax, and the dims.

The cost, memory and roofline passes compute with exact sympy expressions wherever the model's
dims are unbound (:mod:`mlms_ir.ir.symbolic`). This step, the last of the analysis, moves every
figure that is still a formula from its numeric field (which becomes None: never a number that
is not one) into the ``symbolic`` object beside it, and lists every free symbol with its meaning.
"""

from __future__ import annotations

from mlms_ir.ir.expr import is_symbolic, order_value, to_str
from mlms_ir.ir.symbolic import SymbolicShapes
from mlms_ir.results.analysis import Dim, NodeCost, Roofline, Structure, Totals

NODE_FIELDS = ("macs", "flops", "bytes_read", "bytes_written", "output_bytes")
TOTAL_FIELDS = ("macs", "int_macs", "flops", "bytes_read", "bytes_written", "activation_bytes",
                "peak_activation_bytes", "input_bytes", "output_bytes")
ORDER_FIELDS = ("macs", "flops", "output_bytes", "bytes_read", "bytes_written", "time_lower_bound_us")


def _move(obj: object, fields: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in fields:
        v = getattr(obj, f)
        if is_symbolic(v):
            out[f] = to_str(v)
            setattr(obj, f, None)
    return out


def finalize(nodes: list[NodeCost], totals: Totals, structure: Structure, roofline: Roofline | None,
             sym: SymbolicShapes) -> list[Dim]:
    """Move formulas into the ``symbolic`` objects (in place); return the free dims they use."""
    used: set[str] = set()
    noted: set = set()

    def note(v) -> None:
        if is_symbolic(v) and v not in noted:
            noted.add(v)
            used.update(s.name for s in v.free_symbols)

    for nc in nodes:
        if not any(is_symbolic(getattr(nc, f)) for f in ORDER_FIELDS):
            continue
        nc.rank = {f: order_value(getattr(nc, f)) for f in ORDER_FIELDS}
        for f in ORDER_FIELDS:
            note(getattr(nc, f))
        d = _move(nc, NODE_FIELDS)
        t = nc.time_lower_bound_us
        if is_symbolic(t):
            d["roofline_s"] = to_str(t / 1_000_000)
            nc.time_lower_bound_us = None
        nc.symbolic = d or None
    for f in TOTAL_FIELDS:
        note(getattr(totals, f))
    d = _move(totals, TOTAL_FIELDS)
    if roofline is not None and roofline.symbolic_lower_bound_us is not None:
        note(roofline.symbolic_lower_bound_us)
        d["roofline_s"] = to_str(roofline.symbolic_lower_bound_us / 1_000_000)
        roofline.symbolic_lower_bound_us = None
    totals.symbolic = d or None
    for o in structure.op_types:
        o.symbolic = _move(o, ("macs", "flops")) or None
    for b in structure.blocks:
        b.symbolic = _move(b, ("macs", "flops")) or None
    for s in structure.subgraphs:
        if s.symbolic_multiplier:
            used.update(n for n in sym.symbols if n in s.symbolic_multiplier)
    return [Dim(s.name, s.kind, s.meaning, s.origin) for s in sym.symbols.values() if s.name in used]
