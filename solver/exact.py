"""Exact integer building blocks on top of CP-SAT: exponent algebra, monomials, gates, ceilings.

Why exponents: every count of the cost model is a constant times a product of loop factors (docs/model.md §4).
A factor of a rank with bound Π p^a is Π p^x with integer exponents x; a product of factors is Π p^(Σ x), so
each count is `const · Π_p p^(linear expression of exponents)`. One `add_element` per prime turns the exponent
back into an exact value (tables indexed by the exponent); several primes are joined by 2-ary products.
Identical monomials are built once (a cache keyed by the exponent expression).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

MAX_TABLE = 2**62


class BuildTooLong(Exception):
    """A model's building went past its limit (`build_limit`): wall seconds, or a count of building operations
    (deterministic). The caller gives the segment no model: its floor stays its bound."""

    def __init__(self, ops: int, why: str):
        super().__init__(why)
        self.ops = ops


_LIMIT: dict = {"deadline": None, "ops": None}


@contextmanager
def build_limit(seconds: float | None = None, ops: int | None = None):
    """Models built inside stop with BuildTooLong after `seconds` of wall time or `ops` building operations
    (monomials, gates, conjunctions, disjunctions: what a model's size grows with)."""
    saved = dict(_LIMIT)
    _LIMIT["deadline"] = None if seconds is None else time.perf_counter() + seconds
    _LIMIT["ops"] = ops
    try:
        yield
    finally:
        _LIMIT.update(saved)


def _pow2(x: int) -> str:
    """x as a power of two for messages: "2^63" when exact, else "~2^62.4"."""
    if x > 0 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    from math import log2
    return f"~2^{log2(x):.1f}" if x > 0 else str(x)


@dataclass
class ExpVar:
    """An integer exponent of one prime, belonging to a (rank, prime) budget of `budget`."""

    var: cp_model.IntVar
    group: tuple[str, int]   # (rank, prime)
    ub: int


@dataclass
class Expo:
    """A linear expression of exponent variables, per prime, plus constants."""

    terms: dict[int, dict[int, int]] = field(default_factory=dict)  # prime -> {var index: coef}
    const: dict[int, int] = field(default_factory=dict)             # prime -> constant

    def copy(self) -> "Expo":
        return Expo({p: dict(t) for p, t in self.terms.items()}, dict(self.const))

    def add_var(self, ev: "ExpVar", coef: int = 1) -> "Expo":
        p = ev.group[1]
        t = self.terms.setdefault(p, {})
        i = ev.var.Index()
        t[i] = t.get(i, 0) + coef
        if t[i] == 0:
            del t[i]
        return self

    def add_const(self, p: int, c: int) -> "Expo":
        self.const[p] = self.const.get(p, 0) + c
        return self

    def __add__(self, other: "Expo") -> "Expo":
        out = self.copy()
        for p, t in other.terms.items():
            d = out.terms.setdefault(p, {})
            for i, c in t.items():
                d[i] = d.get(i, 0) + c
                if d[i] == 0:
                    del d[i]
        for p, c in other.const.items():
            out.add_const(p, c)
        return out

    def __sub__(self, other: "Expo") -> "Expo":
        neg = Expo({p: {i: -c for i, c in t.items()} for p, t in other.terms.items()},
                   {p: -c for p, c in other.const.items()})
        return self + neg

    def primes(self) -> list[int]:
        return sorted({p for p, t in self.terms.items() if t} | {p for p, c in self.const.items() if c})

    def key(self) -> tuple:
        return tuple((p, tuple(sorted(self.terms.get(p, {}).items())), self.const.get(p, 0)) for p in self.primes())


class Exact:
    """A CP-SAT model with exact monomials. All values are non-negative integers."""

    def __init__(self) -> None:
        self.m = cp_model.CpModel()
        self.exp_vars: dict[int, ExpVar] = {}
        self.budget: dict[tuple[str, int], int] = {}
        self._mono: dict[tuple, cp_model.IntVar | int] = {}
        self._pow: dict[tuple, cp_model.IntVar] = {}
        self._gate: dict[tuple, cp_model.IntVar] = {}
        self._and: dict[tuple, cp_model.IntVar] = {}
        self._pb: dict[int, tuple[int, int]] = {}  # bounds of every value variable built here
        self.true = self.m.new_constant(1)
        self.ops = 0
        self._deadline = _LIMIT["deadline"]
        self._max_ops = _LIMIT["ops"]

    def _tick(self) -> None:
        """One building operation; past the limit (`build_limit`) the build stops."""
        self.ops += 1
        if self._max_ops is not None and self.ops > self._max_ops:
            raise BuildTooLong(self.ops, f"its model needs more than {self._max_ops} building operations")
        if self._deadline is not None and self.ops % 64 == 0 and time.perf_counter() > self._deadline:
            raise BuildTooLong(self.ops, f"building its model took longer than its share of the time limit "
                                         f"({self.ops} operations)")

    # -- exponents ---------------------------------------------------------------------------------------
    def exponent(self, name: str, rank: str, prime: int, ub: int) -> ExpVar:
        v = self.m.new_int_var(0, ub, name)
        ev = ExpVar(v, (rank, prime), ub)
        self.exp_vars[v.Index()] = ev
        self.budget[(rank, prime)] = max(self.budget.get((rank, prime), 0), ub)
        return ev

    def linear(self, expo: Expo, p: int):
        return sum(c * self.m.get_int_var_from_proto_index(i) for i, c in expo.terms.get(p, {}).items()) + \
            expo.const.get(p, 0)

    def bounds(self, expo: Expo, p: int) -> tuple[int, int]:
        """Tight-enough bounds: exponents of one (rank, prime) never exceed its budget in total."""
        hi = lo = expo.const.get(p, 0)
        pos: dict[tuple, int] = {}
        neg: dict[tuple, int] = {}
        for i, c in expo.terms.get(p, {}).items():
            ev = self.exp_vars[i]
            bucket = pos if c > 0 else neg
            bucket[ev.group] = bucket.get(ev.group, 0) + abs(c) * ev.ub
        for g, s in pos.items():
            hi += min(s, self.budget[g] * max(abs(c) for i, c in expo.terms[p].items()
                                             if self.exp_vars[i].group == g and c > 0))
        for g, s in neg.items():
            lo -= min(s, self.budget[g] * max(abs(c) for i, c in expo.terms[p].items()
                                             if self.exp_vars[i].group == g and c < 0))
        return max(lo, 0), hi

    # -- monomials ---------------------------------------------------------------------------------------
    def monomial(self, const: int, expo: Expo) -> cp_model.IntVar | int:
        """An integer variable equal to const · Π_p p^expo_p (or an int when the exponent is constant)."""
        self._tick()
        key = (const, expo.key())
        if key in self._mono:
            return self._mono[key]
        value: cp_model.IntVar | int = const
        factors = []
        for p in expo.primes():
            if not expo.terms.get(p):
                value = value * p ** expo.const.get(p, 0)
                continue
            factors.append(self._power(p, expo))
        if not factors:
            self._mono[key] = value
            return value
        if isinstance(value, int) and value != 1:
            first = factors[0]
            lo, hi = self._pb[first.Index()]
            if value * hi >= MAX_TABLE:
                raise OverflowError(f"a cost term reaches {_pow2(value * hi)} (CP-SAT needs it below 2^62)")
            scaled = self.m.new_int_var(value * lo, value * hi, "")
            self.m.add(scaled == value * first)
            self._pb[scaled.Index()] = (value * lo, value * hi)
            factors[0] = scaled
        acc = factors[0]
        for f in factors[1:]:
            lo = self._pb[acc.Index()][0] * self._pb[f.Index()][0]
            hi = self._pb[acc.Index()][1] * self._pb[f.Index()][1]
            if hi >= MAX_TABLE:
                raise OverflowError(f"a cost term reaches {_pow2(hi)} (CP-SAT needs it below 2^62)")
            prod = self.m.new_int_var(lo, hi, "")
            self.m.add_multiplication_equality(prod, [acc, f])
            self._pb[prod.Index()] = (lo, hi)
            acc = prod
        self._mono[key] = acc
        return acc

    def _power(self, p: int, expo: Expo) -> cp_model.IntVar:
        key = (p, tuple(sorted(expo.terms[p].items())), expo.const.get(p, 0))
        if key in self._pow:
            return self._pow[key]
        lo, hi = self.bounds(expo, p)
        if p ** hi >= MAX_TABLE:
            raise OverflowError(f"a cost term reaches {p}^{hi}" + (f" ({_pow2(p ** hi)})" if p != 2 else "") +
                                " (CP-SAT needs it below 2^62)")
        x = self.m.new_int_var(lo, hi, "")
        self.m.add(x == self.linear(expo, p))
        v = self.m.new_int_var(p ** lo, p ** hi, "")
        self.m.add_element(x - lo, [p ** k for k in range(lo, hi + 1)], v)
        self._pb[v.Index()] = (p ** lo, p ** hi)
        self._pow[key] = v
        return v

    def ub(self, v) -> int:
        if isinstance(v, int):
            return v
        if v.Index() in self._pb:
            return self._pb[v.Index()][1]
        return list(self.m.proto.variables[v.Index()].domain)[-1]  # the wrapper ignores negative indices

    # -- Booleans ----------------------------------------------------------------------------------------
    def gate(self, b, v) -> cp_model.IntVar | int:
        """b ? v : 0, exactly."""
        self._tick()
        if isinstance(b, int):
            return v if b else 0
        if isinstance(v, int):
            key = (b.Index(), "const", v)
            if key not in self._gate:
                g = self.m.new_int_var(0, v, "")
                self.m.add(g == v * b)
                self._gate[key] = g
            return self._gate[key]
        key = (b.Index(), v.Index())
        if key in self._gate:
            return self._gate[key]
        lo, hi = self._pb.get(v.Index(), (0, self.ub(v)))
        g = self.m.new_int_var(0, hi, "")
        self.m.add(g == v).only_enforce_if(b)
        self.m.add(g == 0).only_enforce_if(~b)
        # redundant, for the relaxation: the gate is between lo and hi times its literal
        self.m.add(g >= lo * b)
        self.m.add(g <= hi * b)
        self._gate[key] = g
        return g

    def all_of(self, lits: list) -> cp_model.IntVar | int:
        """A Boolean equal to the conjunction (ints 0/1 fold away)."""
        self._tick()
        vs = []
        for lit in lits:
            if isinstance(lit, int):
                if not lit:
                    return 0
                continue
            vs.append(lit)
        if not vs:
            return 1
        if len(vs) == 1:
            return vs[0]
        key = tuple(sorted(lit.Index() for lit in vs))
        if key in self._and:
            return self._and[key]
        b = self.m.new_bool_var("")
        self.m.add_bool_and(vs).only_enforce_if(b)
        self.m.add_bool_or([~lit for lit in vs]).only_enforce_if(~b)
        self._and[key] = b
        return b

    def any_of(self, lits: list) -> cp_model.IntVar | int:
        self._tick()
        vs = []
        for lit in lits:
            if isinstance(lit, int):
                if lit:
                    return 1
                continue
            vs.append(lit)
        if not vs:
            return 0
        if len(vs) == 1:
            return vs[0]
        b = self.m.new_bool_var("")
        self.m.add_bool_or(vs).only_enforce_if(b)
        for lit in vs:
            self.m.add_implication(lit, b)
        return b

    def ceil_div(self, num_expr, num_ub: int, den_num: int, den_den: int, name: str = "") -> cp_model.IntVar:
        """c = ceil(num_expr · den_den / den_num) exactly (division by the fraction den_num/den_den).

        When num · den_den would pass 2^62 (a DRAM transfer time at sequence 16K and batch 64: 5.4e17 words times a
        bandwidth denominator of 146,875), the numerator is split as num = q · den_num + r with 0 <= r < den_num,
        so c = q · den_den + ceil(r · den_den / den_num): the same integer, with no product larger than
        max(num, c, den_num · den_den)."""
        ub = -(-num_ub * den_den // den_num)
        if max(ub * den_num, num_ub * den_den) < MAX_TABLE:
            return self._ceiling(num_expr, ub, den_num, den_den, name)
        if max(ub + den_den, num_ub, den_num * den_den) >= MAX_TABLE:
            raise OverflowError(f"{name or 'a ceiling'}: {num_ub} x {den_den} / {den_num} needs integers beyond 2^62")
        q = self.m.new_int_var(0, num_ub // den_num, f"{name} quotient")
        r = self.m.new_int_var(0, den_num - 1, f"{name} remainder")
        self.m.add(num_expr == q * den_num + r)
        part = self._ceiling(r, den_den, den_num, den_den, f"{name} remainder part")
        c = self.m.new_int_var(0, ub, name)
        self.m.add(c == q * den_den + part)
        return c

    def _ceiling(self, x, ub: int, den_num: int, den_den: int, name: str) -> cp_model.IntVar:
        """c in [0, ub] with c = ceil(x · den_den / den_num), by the two inequalities (the caller checked sizes)."""
        c = self.m.new_int_var(0, ub, name)
        self.m.add(c * den_num >= x * den_den)
        self.m.add(c * den_num <= x * den_den + den_num - 1)
        return c
