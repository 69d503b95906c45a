"""Cost polynomials of a mapping template, derived by running the model's own code on symbolic loop factors.

A *template* fixes everything but the tile factors: compute unit, which temporal loops are present (factor > 1),
their order, the spatial slots, the shared loops of a fused group (constants) and the kept levels. Every count of
docs/model.md §4 is then a polynomial in the factors: `mapsolve.model.nest.Nest` and `mapsolve.model.evaluate.
_counts_of` are run unchanged on `Poly` factors, so the enumerator's costs are the evaluator's costs by
construction, not a second implementation. Numeric evaluation of the polynomials on all tilings of a template at
once is a matrix product (monomial features x coefficients) in `MonomialBasis`.
"""
from __future__ import annotations

from math import prod

import numpy as np

from mapsolve.model.evaluate import _counts_of
from mapsolve.model.nest import Group, Nest, NestLoop
from mapsolve.model.units import fj

Key = tuple  # sorted ((var, exponent), ...)


def _mul_keys(a: Key, b: Key, sign: int = 1) -> Key:
    d = dict(a)
    for v, e in b:
        d[v] = d.get(v, 0) + sign * e
    return tuple(sorted((v, e) for v, e in d.items() if e))


class Poly:
    """An integer polynomial (Laurent, but every count of the model ends with non-negative exponents)."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict | None = None):
        self.terms = terms or {}

    @staticmethod
    def var(i: int) -> "Poly":
        return Poly({((i, 1),): 1})

    @staticmethod
    def lift(x) -> "Poly":
        if isinstance(x, Poly):
            return x
        if isinstance(x, int):
            return Poly({(): x} if x else {})
        raise TypeError(f"cannot lift {type(x)} into a polynomial")

    def __add__(self, other):
        o = Poly.lift(other)
        t = dict(self.terms)
        for k, c in o.terms.items():
            v = t.get(k, 0) + c
            if v:
                t[k] = v
            else:
                t.pop(k, None)
        return Poly(t)

    __radd__ = __add__

    def __neg__(self):
        return Poly({k: -c for k, c in self.terms.items()})

    def __sub__(self, other):
        return self + (-Poly.lift(other))

    def __rsub__(self, other):
        return Poly.lift(other) + (-self)

    def __mul__(self, other):
        o = Poly.lift(other)
        t: dict = {}
        for k1, c1 in self.terms.items():
            for k2, c2 in o.terms.items():
                k = _mul_keys(k1, k2)
                v = t.get(k, 0) + c1 * c2
                if v:
                    t[k] = v
                else:
                    t.pop(k, None)
        return Poly(t)

    __rmul__ = __mul__

    def __floordiv__(self, other):
        o = Poly.lift(other)
        if len(o.terms) != 1:
            raise ValueError("division by a non-monomial")
        (kd, cd), = o.terms.items()
        t = {}
        for k, c in self.terms.items():
            if c % cd:
                raise ValueError("inexact division of a coefficient")
            t[_mul_keys(k, kd, -1)] = c // cd
        return Poly(t)

    def __rfloordiv__(self, other):
        return Poly.lift(other) // self

    def __gt__(self, other):
        # Only `factor > 1` on a present temporal loop reaches here: templates hold only loops of factor > 1.
        if other != 1 or len(self.terms) != 1:
            raise ValueError("symbolic comparison outside `factor > 1`")
        return True

    def is_zero(self) -> bool:
        return not self.terms


class MonomialBasis:
    """Numeric values of monomials on a matrix of tilings (rows x variables), cached per monomial."""

    def __init__(self, X: np.ndarray, exact_object: bool):
        self.X = X
        self.obj = exact_object
        self.cols: dict[Key, np.ndarray] = {}

    def col(self, key: Key) -> np.ndarray:
        c = self.cols.get(key)
        if c is None:
            n = self.X.shape[0]
            c = np.ones(n, dtype=object if self.obj else np.int64)
            for v, e in key:
                if e < 0:
                    raise ValueError("negative exponent in a count")
                c = c * (self.X[:, v] ** e)
            self.cols[key] = c
        return c

    def value(self, p: Poly) -> np.ndarray:
        """Σ coef · monomial: the feature columns times the coefficient vector."""
        if not p.terms:
            return np.zeros(self.X.shape[0], dtype=object if self.obj else np.int64)
        keys = list(p.terms)
        F = np.stack([self.col(k) for k in keys], axis=1)
        coef = np.array([p.terms[k] for k in keys], dtype=object if self.obj else np.int64)
        return F @ coef


def symbolic_nest(e, unit_name: str, path: list[int], group: Group, loops: list[NestLoop],
                  keep: dict[str, list[int]], bounds: dict) -> Nest:
    start: dict[int, int] = {}
    for pos in range(len(path)):
        start[pos] = next((i for i, lp in enumerate(loops) if lp.pos >= pos), len(loops))
    return Nest(e, unit_name, path, loops, keep, group, bounds, start)


def tensor_quantities(inst, n: Nest, filled: set, own_cap_positions: list[int]) -> dict[str, dict]:
    """Per tensor of `n`: energy (fJ), per-instance words at each bandwidth-limited level, tiles at own levels.

    Everything comes out of `_counts_of` (docs/model.md §4) and `Nest.tile`/`Nest.inst`; energy and words follow
    `analyze` (§6): reads·read_fJ + writes·write_fJ, and (reads + writes) / inst per (level, tensor).
    """
    arch = inst.architecture
    counts = _counts_of(n, filled)
    out: dict[str, dict] = {t: {"energy": Poly(), "words": {}, "cap": {}} for t in n.keep}
    for (pos, t), c in counts.items():
        lv = arch.levels[n.path[pos]]
        q = out[t]
        q["energy"] = q["energy"] + Poly.lift(c.reads) * fj(lv.read_pj) + Poly.lift(c.writes) * fj(lv.write_pj)
        if lv.bandwidth is not None:
            w = (Poly.lift(c.reads) + c.writes) // n.inst(pos)
            q["words"][n.path[pos]] = q["words"].get(n.path[pos], Poly()) + w
    for t, kept in n.keep.items():
        for pos in own_cap_positions:
            if pos in kept:
                out[t]["cap"][pos] = Poly.lift(n.tile(pos, t))
    return out


def steps_poly(n: Nest) -> Poly:
    return Poly.lift(prod(lp.factor for lp in n.loops if not lp.spatial))
