"""Questions asked of an analysis' formulas: figures at chosen dims, the largest dim that fits a
budget, and a figure's course along a dim.

``analyze M --solve "peak_activation_bytes<=24GiB" --dims batch=8`` finds the largest ``seq``
whose peak activations fit in 24 GiB; ``--sweep-dim seq=128:8192`` tabulates the totals along
``seq``. Both work on the exact formulas of :class:`~mlms_ir.results.analysis.Analysis` (its totals'
``symbolic`` object), so the answers are exact integers, not interpolations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mlms_ir.errors import FormulaError
from mlms_ir.results.analysis import Analysis

#: The totals a question may name, with the unit of their values.
METRICS = {
    "macs": "count", "int_macs": "count", "flops": "count", "bytes_read": "bytes", "bytes_written": "bytes",
    "activation_bytes": "bytes", "peak_activation_bytes": "bytes", "input_bytes": "bytes", "output_bytes": "bytes",
    "roofline_s": "seconds", "params": "count",
}
#: Searching stops here: a dim that fits beyond it does not bound the metric.
MAX_DIM = 2**40

_UNITS = {
    "": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15,
    "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9,
}


@dataclass
class Solution:
    """The answer to :func:`solve`."""

    constraint: str
    metric: str
    op: str
    limit: float
    dim: str | None  # the dim solved for (None: nothing was free, the constraint was only checked)
    value: int | None  # the extreme value of ``dim`` that satisfies it (None: no value does)
    fixed: dict[str, int] = field(default_factory=dict)
    at_value: float | None = None  # the metric at ``value``
    beyond: float | None = None  # the metric one step past ``value`` (it breaks the constraint)
    unbounded: bool = False  # every value up to MAX_DIM satisfies it
    holds: bool | None = None  # when nothing was free: whether the constraint holds

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


def _name(a: Analysis, dim: str) -> str:
    """The formulas' name of a dim given by its name in the model (``N`` is written ``N_``)."""
    for d in a.dims:
        if d.name == dim:
            return dim
    for d in a.dims:
        if d.kind == "input" and d.origin == dim:
            return d.name
    return dim


def _names(a: Analysis, values: dict[str, int] | None) -> dict[str, int]:
    return {_name(a, k): v for k, v in (values or {}).items()}


def _formula(a: Analysis, metric: str):
    import sympy

    if metric not in METRICS:
        raise FormulaError(f"unknown metric '{metric}'; choose one of: {', '.join(METRICS)}")
    sym = a.totals.symbolic or {}
    if metric in sym:
        return sympy.sympify(sym[metric])
    if metric == "roofline_s":
        if a.roofline is None:
            raise FormulaError("roofline_s needs a device: add --device NAME")
        return sympy.Float(a.roofline.lower_bound_us / 1e6)
    v = getattr(a.totals, metric)
    if v is None:
        raise FormulaError(f"the analysis has no figure for {metric} (some nodes are not counted)")
    return sympy.Integer(v)


def _subs(expr, values: dict[str, int]):
    free = {s.name: s for s in expr.free_symbols}
    return expr.subs({free[k]: v for k, v in values.items() if k in free})


def _number(x) -> float | int:
    from fractions import Fraction

    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else float(x)
    if isinstance(x, (int, float)):
        return x
    return int(x) if x.is_Integer else float(x)


def figures_at(a: Analysis, values: dict[str, int]) -> dict[str, float | int]:
    """Every total at the given dims (those the formulas still need must all be given)."""
    from mlms_ir.ir.expr import value_at

    values = _names(a, values)
    out: dict[str, float | int] = {}
    for metric in METRICS:
        try:
            f = _formula(a, metric)
        except FormulaError:
            continue
        missing = sorted(s.name for s in f.free_symbols if s.name not in values)
        if missing:
            raise FormulaError(f"{metric} still depends on {', '.join(missing)}: bind it with --dims NAME=VALUE")
        out[metric] = _number(value_at(f, values) if f.free_symbols else f)
    return out


def parse_constraint(text: str) -> tuple[str, str, float]:
    """``'peak_activation_bytes<=24GiB'`` -> ('peak_activation_bytes', '<=', 25769803776.0)."""
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*(<=|<|>=|>)\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ]*)\s*", str(text))
    if not m:
        raise FormulaError(f"--solve expects METRIC<=VALUE such as 'peak_activation_bytes<=24GiB', got '{text}'")
    metric, op, number, unit = m.groups()
    if metric not in METRICS:
        raise FormulaError(f"unknown metric '{metric}' in --solve; choose one of: {', '.join(METRICS)}")
    scale = _UNITS.get(unit.lower())
    if scale is None:
        raise FormulaError(f"unknown unit '{unit}' in --solve; use B, KiB, MiB, GiB, KB, MB, GB, K, M, G, T, s, ms, us")
    return metric, op, float(number) * scale


def _holds(v: float, op: str, limit: float) -> bool:
    return {"<=": v <= limit, "<": v < limit, ">=": v >= limit, ">": v > limit}[op]


def solve(a: Analysis, constraint: str, dims: dict[str, int] | None = None) -> Solution:
    """The largest value of the one free dim for which ``constraint`` holds (``<=``, ``<``), or the
    smallest (``>=``, ``>``); ``dims`` fixes the others. The totals grow with every dim, which
    the search relies on; the answer is checked at its value and one step past it.

    Raises:
        FormulaError: an unknown metric or unit, or more than one dim left free.
    """
    metric, op, limit = parse_constraint(constraint)
    dims = _names(a, dims)
    f = _subs(_formula(a, metric), dims)
    fixed = dict(a.bindings.get("dims") or {})  # bound when the model was loaded, shown with the answer
    if a.bindings.get("batch") is not None:
        fixed.setdefault("batch", a.bindings["batch"])
    fixed.update(dims or {})
    free = sorted(s.name for s in f.free_symbols)
    sol = Solution(constraint, metric, op, limit, None, None, fixed)
    if not free:
        sol.holds = _holds(float(f), op, limit)
        sol.at_value = _number(f)
        return sol
    if len(free) > 1:
        raise FormulaError(
            f"{metric} depends on {', '.join(free)}: fix all but the one to solve for, e.g. --dims {free[0]}=8"
        )
    dim = free[0]
    sol.dim = dim
    from mlms_ir.ir.expr import value_at

    def at(v: int) -> float:
        return float(value_at(f, {dim: v}))

    upper = op in ("<=", "<")
    if upper:
        if not _holds(at(1), op, limit):
            return sol  # not even 1 fits
        lo, hi = 1, 2
        while hi <= MAX_DIM and _holds(at(hi), op, limit):
            lo, hi = hi, hi * 2
        if hi > MAX_DIM:
            sol.value, sol.unbounded = lo, True
            sol.at_value = _number(value_at(f, {dim: lo}))
            return sol
        while hi - lo > 1:  # at(lo) holds, at(hi) does not
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _holds(at(mid), op, limit) else (lo, mid)
        sol.value = lo
    else:
        if _holds(at(1), op, limit):
            sol.value = 1
        else:
            lo, hi = 1, 2
            while hi <= MAX_DIM and not _holds(at(hi), op, limit):
                lo, hi = hi, hi * 2
            if hi > MAX_DIM:
                return sol
            while hi - lo > 1:  # at(lo) fails, at(hi) holds
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if _holds(at(mid), op, limit) else (mid, hi)
            sol.value = hi
    sol.at_value = _number(value_at(f, {dim: sol.value}))
    step = sol.value + 1 if upper else sol.value - 1
    sol.beyond = _number(value_at(f, {dim: step})) if step >= 1 else None
    return sol


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """``seq=128:8192`` (doubling), ``seq=128:1024:128`` (a step) or ``seq=1,8,64`` -> (dim, values)."""
    m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([0-9:, ]+)\s*", str(text))
    if not m:
        raise FormulaError(f"--sweep-dim expects NAME=START:STOP[:STEP] or NAME=V1,V2,..., got '{text}'")
    dim, spec = m.group(1), m.group(2).replace(" ", "")
    try:
        if ":" in spec:
            parts = [int(p) for p in spec.split(":")]
            if len(parts) not in (2, 3) or parts[0] < 1 or parts[1] < parts[0]:
                raise ValueError
            if len(parts) == 3:
                if parts[2] < 1:
                    raise ValueError
                values = list(range(parts[0], parts[1] + 1, parts[2]))
            else:
                values, v = [], parts[0]
                while v <= parts[1]:
                    values.append(v)
                    v *= 2
                if values[-1] != parts[1]:
                    values.append(parts[1])
        else:
            values = [int(p) for p in spec.split(",") if p]
            if not values or min(values) < 1:
                raise ValueError
    except ValueError:
        raise FormulaError(f"--sweep-dim '{text}': give positive START:STOP (STOP >= START), START:STOP:STEP or V1,V2,...") from None
    if len(values) > 10_000:
        raise FormulaError(f"--sweep-dim '{text}' asks for {len(values)} points; at most 10,000")
    return dim, values


def sweep(a: Analysis, dim: str, values: list[int], dims: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The totals at each value of ``dim`` (the other free dims fixed by ``dims``)."""
    names = {d.name for d in a.dims}
    dim, dims = _name(a, dim), _names(a, dims)
    if dim not in names:
        raise FormulaError(f"the analysis has no free dim '{dim}'; its free dims are: {', '.join(sorted(names)) or '(none)'}")
    rows = []
    for v in values:
        row: dict[str, Any] = {dim: v}
        row.update(figures_at(a, {**(dims or {}), dim: v}))
        rows.append(row)
    return rows
