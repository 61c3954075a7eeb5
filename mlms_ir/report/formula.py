"""Formulas as people read them: ``3.07 K·batch·seq² + 52.8 M·batch·seq``.

The analysis writes a figure that depends on unbound dims as a string in sympy syntax (the JSON's
``symbolic`` objects). These helpers print one for a table: terms largest first, coefficients
with SI (or binary, for bytes) magnitudes, ``·`` between factors, exponents as superscripts,
``⌊x⌋``/``⌈x⌉`` for floor and ceiling. Presentation only: the figure itself is the string.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mlms_ir.ir.expr import degree

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _count(v: float) -> str:
    from mlms_ir.report.text import human_count

    return human_count(v)


def _bytes(v: float) -> str:
    from mlms_ir.report.text import human_bytes

    return human_bytes(v)


def _seconds(v: float) -> str:
    from mlms_ir.report.text import human_count, sig

    v = float(v)
    return f"{sig(v)} s" if abs(v) >= 1 else human_count(v, "s", small=True)


UNITS: dict[str, Callable[[float], str]] = {"count": _count, "bytes": _bytes, "seconds": _seconds}


def unit_of(key: str) -> str:
    """The unit a figure's key implies: bytes, seconds or a count."""
    if key.endswith("bytes") or key in ("bytes_read", "bytes_written"):
        return "bytes"
    if key.endswith("_s"):
        return "seconds"
    return "count"


@functools.lru_cache(maxsize=4096)
def parse(text: str):
    """The sympy expression of a formula string from the JSON."""
    import sympy

    return sympy.sympify(text)


@functools.lru_cache(maxsize=4096)
def pretty(text: str, unit: str = "count") -> str:
    """A formula string (sympy syntax) for a table; the string itself if sympy cannot read it."""
    try:
        e = parse(text)
    except Exception:  # noqa: BLE001 - show what we were given
        return text
    return _fmt(e, UNITS.get(unit, _count))


@functools.lru_cache(maxsize=1)
def _printer():
    import sympy
    from sympy.printing.str import StrPrinter

    class Printer(StrPrinter):
        def _print_floor(self, e):  # noqa: N802 - sympy's printer protocol
            return f"⌊{self._print(sympy.together(e.args[0]))}⌋"

        def _print_ceiling(self, e):  # noqa: N802
            return f"⌈{self._print(sympy.together(e.args[0]))}⌉"

    return Printer()


def _plain(e) -> str:
    """Exact inner arithmetic (inside floor, ceiling, max): no magnitudes."""
    return _printer().doprint(e).replace("**", "^").replace("*", "·")


def _factor(f) -> str:
    import sympy

    if f.is_Symbol:
        return f.name
    if f.is_Pow and f.exp.is_Integer and f.exp > 0:
        return _factor(f.base) + str(int(f.exp)).translate(_SUPERSCRIPT)
    if isinstance(f, (sympy.floor, sympy.ceiling)):
        return _plain(f)
    if f.is_Add:
        return f"({_plain(f)})"
    if isinstance(f, (sympy.Max, sympy.Min)):
        name = "max" if isinstance(f, sympy.Max) else "min"
        return f"{name}({', '.join(_plain(a) for a in f.args)})"
    return _plain(f)


def _term(t, number: Callable[[float], str]) -> str:
    import sympy

    coeff, rest = t.as_coeff_Mul()
    if rest == 1:
        return number(float(coeff))
    if isinstance(rest, (sympy.Max, sympy.Min)) and coeff > 0:
        # c·max(a, b) is max(c·a, c·b): the unit is the coefficient's, so it goes inside
        return _fmt(type(rest)(*(coeff * a for a in rest.args), evaluate=False), number)
    factors = "·".join(_factor(f) for f in (rest.args if rest.is_Mul else (rest,)))
    if coeff == 1:
        return factors
    return f"{number(float(coeff))}·{factors}"


def _fmt(e, number: Callable[[float], str]) -> str:
    import sympy

    if e.is_Number:
        return number(float(e))
    if isinstance(e, (sympy.Max, sympy.Min)):
        name = "max" if isinstance(e, sympy.Max) else "min"
        return f"{name}({', '.join(_fmt(a, number) for a in _ordered(e.args))})"
    if e.is_Add:
        out = ""
        for t in _ordered(e.args):
            neg = t.could_extract_minus_sign()
            body = _term(-t if neg else t, number)
            out += (" − " if neg else " + ") + body if out else ("−" if neg else "") + body
        return out
    return _term(e, number)


def _ordered(args) -> list:
    """Largest terms first: by total degree in the dims, then by coefficient."""
    def key(t):
        coeff = t.as_coeff_Mul()[0]
        return (-degree(t), -abs(float(coeff)) if coeff.is_Number else 0.0)

    return sorted(args, key=key)


def figure(value, symbolic: dict[str, str] | None, key: str, number: Callable[[float], str]) -> str:
    """One cell: the number, or the formula when the figure depends on unbound dims."""
    if value is not None:
        return number(value)
    if symbolic and key in symbolic:
        return pretty(symbolic[key], unit_of(key))
    return number(None)
