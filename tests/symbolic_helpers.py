"""Checks shared by the symbolic-analysis tests: a formula evaluated at some dims equals the
analysis bound to those dims, node by node and in total."""

from __future__ import annotations

import mlms_ir
import pytest

sympy = pytest.importorskip("sympy")

NODE_KEYS = ("macs", "flops", "bytes_read", "bytes_written", "output_bytes")
TOTAL_KEYS = ("macs", "int_macs", "flops", "bytes_read", "bytes_written", "activation_bytes", "peak_activation_bytes",
              "input_bytes", "output_bytes")


def value(obj, key: str, at: dict[str, int]):
    """A figure of a node or the totals at the given dims (from its formula if it has one)."""
    v = getattr(obj, key)
    if v is None and obj.symbolic and key in obj.symbolic:
        f = sympy.sympify(obj.symbolic[key])
        free = {s.name: s for s in f.free_symbols}
        v = f.subs({free[k]: x for k, x in at.items() if k in free})
        assert not v.free_symbols, (key, obj.symbolic[key], at)
        return int(v) if v.is_Integer else float(v)
    return v


def assert_formulas_match(source, points: list[dict[str, int]], *, device: str | None = None, **load_kw):
    """The symbolic analysis, evaluated at each point, equals the analysis bound to that point."""
    sym = mlms_ir.analyze(source, device=device, **load_kw)
    assert sym.totals.symbolic, "the model should have formulas"
    for at in points:
        bound = mlms_ir.analyze(source, dims=at, device=device, **load_kw)
        assert not bound.totals.symbolic, bound.totals.symbolic
        for key in TOTAL_KEYS:
            assert value(sym.totals, key, at) == getattr(bound.totals, key), (key, at)
        if device:
            rs = sympy.sympify(sym.totals.symbolic["roofline_s"]).subs(at)
            assert float(rs) == pytest.approx(bound.roofline.lower_bound_us / 1e6, rel=1e-9)
        by_id = {n.id: n for n in bound.nodes}
        for n in sym.nodes:
            b = by_id[n.id]
            assert n.status == b.status, n.id
            for key in NODE_KEYS:
                assert value(n, key, at) == getattr(b, key), (n.id, n.op_type, key, at)
    return sym


