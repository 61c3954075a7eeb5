"""Exact arithmetic on dims that may be symbolic (sympy expressions over the model's named dims).

A figure is an ``int`` when it is known, or a sympy expression over the model's dims (``batch``,
``seq``, ``nonzero_n12``...) when it is not. Every helper here keeps plain ints plain, so a model
whose dims are all bound never touches sympy (which is imported only when a symbol exists).
"""

from __future__ import annotations

import functools
import math
import keyword
import re
from fractions import Fraction
from typing import Any

Num = Any  # int | sympy.Expr

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def sympy():  # noqa: D103 - the lazily imported module
    import sympy as _sympy

    return _sympy


def is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_symbolic(x: object) -> bool:
    """True for a sympy expression that is not a plain number."""
    return (x is not None and not isinstance(x, (int, float, str)) and hasattr(type(x), "free_symbols")
            and not x.is_Number)


def normalize(x: Num) -> Num:
    """An integer-valued sympy number becomes an int; everything else is returned as it is."""
    if isinstance(x, int) or x is None:
        return x
    if getattr(x, "is_Integer", False):
        return int(x)
    return x


_PLAIN_TERMS = frozenset({int, type(None)})


def add(values) -> Num:
    """The sum of ints and expressions, in one sympy Add (equal expressions counted first):
    summing one at a time re-flattens the growing sum at every step. Nones are skipped."""
    values = values if isinstance(values, list) else list(values)
    if _PLAIN_TERMS.issuperset(map(type, values)):  # plain ints (a 50,000-node total): summed in C
        return sum(filter(None, values))
    total = 0
    counts: dict = {}
    for v in values:
        if v is None:
            continue
        if isinstance(v, (int, float)):
            total += v
        else:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return total
    if len(counts) == 1 and total == 0:
        ((e, c),) = counts.items()
        return e if c == 1 else normalize(c * e)
    sp = sympy()
    return normalize(sp.Add(*(e if c == 1 else c * e for e, c in counts.items()), total))


def smax(*xs: Num) -> Num:
    """max() that also takes expressions (sympy's Max simplifies with the dims' assumptions)."""
    if all(is_int(x) for x in xs):
        return max(xs)
    return normalize(sympy().Max(*xs))


def smin(*xs: Num) -> Num:
    if all(is_int(x) for x in xs):
        return min(xs)
    return normalize(sympy().Min(*xs))


def floordiv(a: Num, b: Num) -> Num:
    if is_int(a) and is_int(b):
        return a // b
    sp = sympy()
    if is_int(b) and b > 0 and is_symbolic(a):
        # floor((floor(y) + c) / b) == floor((y + c) / b) for integers c and b > 0: keeps a chain of
        # strided convolutions as floor((h - 1)/32) + 1 rather than five nested floors
        inner, rest = None, 0
        for t in (a.args if a.is_Add else (a,)):
            if isinstance(t, sp.floor) and inner is None:
                inner = t.args[0]
            else:
                rest += t
        if inner is not None and getattr(sp.sympify(rest), "is_integer", False):
            return normalize(sp.floor((inner + rest) / b))
    return normalize(sp.floor(sp.Integer(a) / b if is_int(a) else a / b))


def exact_div(a: Num, b: Num) -> Num:
    """a / b where b divides a (a Reshape's -1): common factors cancelled, e.g. 819·(f + 1) /
    (91·(f + 1)) is 9 (sympy distributes a number into a sum, which hides the common factor)."""
    sp = sympy()
    q = sp.sympify(a) / b
    if q.is_Number or q.as_numer_denom()[1] == 1:
        return normalize(q)
    return normalize(sp.cancel(sp.factor_terms(q)))


def ceildiv(a: Num, b: Num) -> Num:
    if is_int(a) and is_int(b):
        return -((-a) // b)
    sp = sympy()
    return normalize(sp.ceiling(sp.Integer(a) / b if is_int(a) else a / b))


def differs(a: Num, b: Num) -> Num:
    """1 if a != b, else 0; for dims that may or may not be equal, the exact indicator
    ``Piecewise((0, Eq(a, b)), (1, True))``."""
    if is_int(a) and is_int(b):
        return int(a != b)
    if a == b:
        return 0
    sp = sympy()
    rel = sp.Eq(a, b)
    if rel is sp.false:
        return 1
    if rel is sp.true:
        return 0
    return sp.Piecewise((0, rel), (1, True))


def ceil_log2(x: Num) -> Num:
    """ceil(log2(max(x, 1)))."""
    if is_int(x):
        x = max(x, 1)
        return (x - 1).bit_length()
    sp = sympy()
    return normalize(sp.ceiling(sp.log(sp.Max(x, 1), 2)))


@functools.lru_cache(maxsize=None)
def _reserved() -> frozenset[str]:
    sp = sympy()
    return frozenset(n for n in dir(sp) if not n.startswith("_")) | frozenset(keyword.kwlist) | {"lambda"}


def safe_name(name: str) -> str:
    """A symbol name that ``sympy.sympify`` reads back as a symbol: an identifier, not a sympy name
    (``N``, ``E``, ``beta``...) and not a Python keyword (those get a trailing ``_``)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name.strip()) or "dim"
    if s[0].isdigit():
        s = "d_" + s
    while s in _reserved():
        s += "_"
    return s


def dominates(a: Num, b: Num) -> bool:
    """a >= b for every non-negative value of the dims, by a sufficient test: every coefficient
    of a - b, as a polynomial in its (non-negative) terms, is non-negative."""
    diff = a - b
    if is_int(diff) or getattr(diff, "is_Number", False):
        return diff >= 0
    sp = sympy()
    diff = sp.sympify(expand(diff))
    if diff.is_Number:
        return bool(diff >= 0)
    for term, coeff in diff.as_coefficients_dict().items():
        if coeff < 0 and term != 0:
            return False
        if not _nonnegative(term):
            return False
    return True


def _nonnegative(term) -> bool:
    if term.is_Number:
        return term >= 0
    if term.is_Symbol or (term.is_Mul and all(_nonnegative(f) for f in term.args)):
        # a product of non-negative factors, proved factor by factor: sympy's assumptions on a
        # product of 1,000 dims take seconds
        ok = term.is_nonnegative if term.is_Symbol else True
        if ok is not None:
            return bool(ok)
    ok = term.is_nonnegative
    if ok is not None:
        return bool(ok)
    # floor/ceiling of non-negative arguments and products of such terms
    sp = sympy()
    if isinstance(term, (sp.floor, sp.ceiling)):
        return dominates(term.args[0], 0)
    if term.is_Mul:
        return all(_nonnegative(f) for f in term.args)
    if term.is_Pow:
        return _nonnegative(term.base)
    if isinstance(term, (sp.Max,)):
        return any(_nonnegative(a) for a in term.args)
    if isinstance(term, (sp.Min,)):
        return all(_nonnegative(a) for a in term.args)
    return False


#: Expressions whose expansion would have more terms than this are not expanded (a product of
#: sums of Min/Max/floor terms grows exponentially); they stay one term of their own.
MAX_EXPANDED_TERMS = 256


def _expanded_terms(e) -> int:
    if e.is_Add:
        return sum(_expanded_terms(a) for a in e.args)
    if e.is_Mul:
        n = 1
        for a in e.args:
            n *= _expanded_terms(a)
            if n > MAX_EXPANDED_TERMS:
                break
        return n
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return min(_expanded_terms(e.base) ** int(e.exp), MAX_EXPANDED_TERMS + 1)
    return 1


def expand(x: Num) -> Num:
    """sympy's expand, unless the result would be huge (then ``x`` as it is)."""
    if not is_symbolic(x) or _expanded_terms(x) > MAX_EXPANDED_TERMS:
        return x
    return sympy().expand(x, deep=False)


@functools.lru_cache(maxsize=65536)
def terms(x) -> tuple:
    """``x`` (an expression) as ((term, coefficient), ...) of its expanded form, or () for a
    non-polynomial one that cannot be split (then it is its own term)."""
    sp = sympy()
    e = sp.sympify(expand(x))
    if e.is_Number:
        return ((sp.Integer(1), e),)
    return tuple(e.as_coefficients_dict().items())


def from_terms(d: dict) -> Num:
    sp = sympy()
    return normalize(sp.Add(*(c * t for t, c in d.items() if c != 0)))


def _poly_ge(a: dict, b: dict, term=None) -> bool:
    """a >= b for every value of the dims, by a sufficient test on their terms (each non-negative):
    every coefficient of a - b is non-negative, or each shortfall is covered by a surplus on a
    term that is the short term times input dims (which are >= 1): 3.25 K·batch·seq covers
    1 K·batch·seq + 128. The keys are terms, or ids of :class:`_Terms` ``term``."""
    surplus: dict = {}
    deficit: dict = {}
    for t in a.keys() | b.keys():
        d = a.get(t, 0) - b.get(t, 0)
        if d > 0:
            surplus[t] = d
        elif d < 0:
            deficit[t] = -d
    if not deficit:
        return True
    if not surplus:
        return False
    if term is None:
        deg, covers = degree, _covers
    else:
        deg, covers = term.degree, term.covers
    for t, need in sorted(deficit.items(), key=lambda kv: -deg(kv[0])):
        for s in sorted(surplus, key=deg):
            if need <= 0:
                break
            if surplus[s] > 0 and covers(s, t):
                take = min(need, surplus[s])
                surplus[s] -= take
                need -= take
        if need > 0:
            return False
    return True


@functools.lru_cache(maxsize=65536)
def _covers(big, small) -> bool:
    """big >= small whenever the input dims are >= 1: big is small times a product of input dims."""
    if big == small:
        return True
    r = big / small
    factors = r.args if r.is_Mul else (r,)
    for f in factors:
        base, exp = (f.base, f.exp) if f.is_Pow else (f, 1)
        if not (base.is_Symbol and base.is_positive and getattr(exp, "is_Integer", isinstance(exp, int)) and exp > 0):
            return False
    return True


@functools.lru_cache(maxsize=65536)
def degree(t) -> int:
    """A term's total degree in the dims (``batch·seq²``: 3; ``⌊(h - 1)/2⌋``: 1), to put the
    larger terms first."""
    if t.is_Number:
        return 0
    if t.is_Symbol:
        return 1
    if t.is_Pow and t.exp.is_Integer:
        return degree(t.base) * int(t.exp)
    if t.is_Mul:
        return sum(degree(f) for f in t.args)
    return max((degree(a) for a in t.args), default=0)


class _Terms:
    """The terms of a set of polynomials as int ids, with each one's degree and the covers test
    between two ids kept: :func:`maximum_terms` compares polynomials pairwise, and sympy's hashing
    and arithmetic on the terms themselves dominated it (164 s on SSDlite's post-processing, whose
    sizes hang on 180 data-dependent dims)."""

    def __init__(self) -> None:
        self.ids: dict = {}
        self.terms: list = []
        self._degree: list[int] = []
        self._covers: dict[tuple[int, int], bool] = {}

    def add(self, t: Any) -> int:
        self.ids[t] = k = len(self.terms)
        self.terms.append(t)
        self._degree.append(degree(t))
        return k

    def degree(self, k: int) -> int:
        return self._degree[k]

    def covers(self, big: int, small: int) -> bool:
        key = (big, small)
        v = self._covers.get(key)
        if v is None:
            v = self._covers[key] = _covers(self.terms[big], self.terms[small])
        return v


def _plain_number(c: Any) -> Any:
    """A sympy rational coefficient as a Python int or Fraction (exact, and compared without
    sympy's sympify on every ``>``: the domination test compares coefficients millions of times
    on a graph whose sizes hang on many data-dependent dims); anything else as it is."""
    if isinstance(c, (int, Fraction)):
        return c
    if getattr(c, "is_Integer", False):
        return int(c)
    if getattr(c, "is_Rational", False):
        return Fraction(int(c.p), int(c.q))
    return c


def maximum_terms(values: list[dict]) -> list[int]:
    """Indices of the polynomials ({term: coefficient}) that no other one dominates for every
    non-negative value of their terms (the first of equal ones)."""
    # each term as an int id (sympy's hashing of terms dominated the comparisons), each
    # coefficient as a Python number
    term = _Terms()
    ids = term.ids
    values = [{(ids[t] if t in ids else term.add(t)): _plain_number(c) for t, c in v.items()} for v in values]
    first: dict = {}
    for i, v in enumerate(values):
        first.setdefault(frozenset(v.items()), i)
    nonneg: dict = {}

    def ok(d: dict) -> bool:
        for k in d:
            if k not in nonneg:
                t = term.terms[k]
                nonneg[k] = bool(t.is_Number and t >= 0) or _nonnegative(t)
            if not nonneg[k]:
                return False
        return True

    kept: list[int] = []
    for key, i in first.items():
        v = values[i]
        if not ok(v):
            kept.append(i)
            continue
        if any(ok(values[k]) and _poly_ge(values[k], v, term) for k in kept):
            continue
        kept = [k for k in kept if not (ok(values[k]) and _poly_ge(v, values[k], term))]
        kept.append(i)
    return sorted(kept)


def maximum(values: list[Num]) -> tuple[Num, list[int]]:
    """The largest of ``values`` for every value of the dims: the int maximum when all are ints,
    else Max() of the values no other one dominates (:func:`maximum_terms`). Returns it and the
    indices of those kept (the first index of each distinct value)."""
    if all(is_int(v) for v in values):
        if not values:
            return 0, []
        best = max(range(len(values)), key=lambda i: values[i])
        return values[best], [best]
    kept = maximum_terms([dict(terms(v)) for v in values])
    if len(kept) == 1:
        return values[kept[0]], kept
    return normalize(sympy().Max(*(values[i] for i in kept))), kept


@functools.lru_cache(maxsize=65536)
def to_str(x: Num) -> str:
    """The expression in sympy syntax (``sympy.sympify`` reads it back). Terms are printed in
    sympy's canonical order for small expressions; for large ones in the order they are held
    (sorting a large expression's terms for printing costs more than building it)."""
    if not is_symbolic(x):
        return str(x)
    return _printer().doprint(x)


@functools.lru_cache(maxsize=1)
def _printer():
    """sympy's str printer, remembering what it printed: formulas of detection models share large
    subexpressions (the resized image's height appears in every anchor count), which a plain
    printer prints again at every use."""
    from sympy.printing.str import StrPrinter

    class MemoPrinter(StrPrinter):
        def __init__(self) -> None:
            super().__init__()
            self._memo: dict = {}

        def _print(self, expr, **kwargs):
            if kwargs:
                return super()._print(expr, **kwargs)
            try:
                return self._memo[expr]
            except (KeyError, TypeError):
                pass
            s = super()._print(expr)
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[expr] = s
            return s

    return MemoPrinter()


def evaluate(x: Num, values: dict[str, int]) -> Num:
    """``x`` with the dims in ``values`` substituted (an int when none is left)."""
    if not is_symbolic(x):
        return x
    free = x.free_symbols
    if all(s.name in values for s in free):
        v = value_at(x, values)
        if isinstance(v, int):
            return v
    subs = {s: values[s.name] for s in free if s.name in values}
    if not subs:
        return x
    return normalize(x.subs(subs))


#: Every free dim takes this value when formulas are only ordered (largest first), never shown.
ORDER_DIM = 1024


def order_value(x: Num) -> float:
    """A number to sort figures by: the figure itself, or a formula at every dim = :data:`ORDER_DIM`."""
    if x is None:
        return 0.0
    if not is_symbolic(x):
        try:
            return float(x)
        except OverflowError:  # an int beyond a float's range (2**62 ** 17): itself, which sorts exactly
            return x
    return _order_value(x)


@functools.lru_cache(maxsize=65536)
def _order_value(x) -> float:
    try:
        v = value_at(x, {s.name: ORDER_DIM for s in x.free_symbols})
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return 0.0
    try:
        return float(v)
    except OverflowError:  # beyond a float's range: the exact int or Fraction compares with floats exactly
        return v if isinstance(v, (int, Fraction)) else math.inf
    except (TypeError, ValueError):
        return 0.0


def value_at(x: Num, values: dict[str, int]):
    """``x`` at the given dims, exactly (an int or a Fraction; a float where the formula has
    floats, as the roofline's), by one walk over the expression's DAG: large formulas share
    subexpressions that ``subs`` would rebuild at every use. Every free symbol must be given."""
    from fractions import Fraction

    if not is_symbolic(x):
        return x
    sp = sympy()
    memo: dict = {}

    def ev(e):
        r = memo.get(e)
        if r is not None:
            return r
        if e.is_Integer:
            r = int(e)
        elif e.is_Rational:
            r = Fraction(int(e.p), int(e.q))
        elif e.is_Float:
            r = float(e)
        elif e.is_Symbol:
            r = values[e.name]
        elif e.is_Add:
            r = sum(ev(a) for a in e.args)
        elif e.is_Mul:
            r = 1
            for a in e.args:
                r = r * ev(a)
        elif e.is_Pow:
            base, exp = ev(e.base), ev(e.exp)
            r = Fraction(base) ** exp if isinstance(exp, int) and exp < 0 else base ** exp
        elif isinstance(e, sp.floor):
            r = _floor(ev(e.args[0]))
        elif isinstance(e, sp.ceiling):
            u = _log2_argument(e.args[0])
            if u is not None:  # ceiling(log(u)/log(2)), exactly (floats round log2(8) up to 3.0000000000000004)
                n = max(int(ev(u)), 1) if not isinstance(ev(u), float) else max(math.ceil(ev(u)), 1)
                r = (n - 1).bit_length()
            else:
                r = -_floor(-ev(e.args[0]))
        elif isinstance(e, sp.log):
            r = math.log(ev(e.args[0]))
        elif isinstance(e, sp.Max):
            r = max(ev(a) for a in e.args)
        elif isinstance(e, sp.Min):
            r = min(ev(a) for a in e.args)
        elif isinstance(e, sp.Mod):
            r = ev(e.args[0]) % ev(e.args[1])
        elif isinstance(e, sp.Piecewise):
            r = next(ev(v) for v, c in e.args if ev_bool(c))
        else:
            r = e.subs({s: values[s.name] for s in e.free_symbols})
            r = int(r) if r.is_Integer else Fraction(str(r)) if r.is_Rational else float(r)
        if isinstance(r, Fraction) and r.denominator == 1:
            r = int(r)
        memo[e] = r
        return r

    def ev_bool(c) -> bool:
        if c is sp.true or c is True:
            return True
        if c is sp.false or c is False:
            return False
        if isinstance(c, sp.Eq):
            return ev(c.lhs) == ev(c.rhs)
        if isinstance(c, sp.Ne):
            return ev(c.lhs) != ev(c.rhs)
        return bool(c.subs({s: values[s.name] for s in c.free_symbols}))

    return ev(x)


def _floor(v) -> int:
    return math.floor(v)


def _log2_argument(e):
    """u when e is log(u)/log(2) (how sympy holds log(u, 2)), else None."""
    sp = sympy()
    if not e.is_Mul or len(e.args) != 2:
        return None
    logs = [a for a in e.args if isinstance(a, sp.log)]
    inv = [a for a in e.args if a.is_Pow and a.exp == -1 and a.base == sp.log(2)]
    return logs[0].args[0] if len(logs) == 1 and len(inv) == 1 else None
