"""Cost polynomials of a mapping template, derived by running the model's own code on symbolic loop factors.

A *template* fixes everything but the tile factors: compute unit, which temporal loops are present (factor > 1),
their order, the spatial slots, the shared loops of a fused group and the kept levels. Every count of
docs/model.md §4 is then a polynomial in the factors: `mapsolve.model.nest.Nest` and `mapsolve.model.evaluate.
_counts_of` are run unchanged on `Poly` factors, so the enumerator's costs are the evaluator's costs by
construction, not a second implementation. Shared-loop factors are symbolic too (always > 1 in a bucket), so one
compilation serves every bucket that differs only in them.

Speed matters here (tens of thousands of templates): a monomial is one Python int packing every variable's
exponent in a signed `BITS`-bit field, so multiplying monomials is adding ints and dividing is subtracting.
Numeric evaluation of all of a template's polynomials on all its tilings is one matrix product (monomial values
x coefficient matrix) in `PolyMatrix`.
"""
from __future__ import annotations

from math import prod

import numpy as np

from mapsolve.model.evaluate import _counts_of, port_words
from mapsolve.model.nest import Group, Nest, NestLoop, formats
from mapsolve.model.units import element_fj

BITS = 16                      # per-variable exponent field; exponents stay exact while |e| < 2**15
_FULL = 1 << BITS
_HALF = 1 << (BITS - 1)
_MASK = _FULL - 1


def decode_key(key: int, nvars: int) -> list[int]:
    """The exponents of a packed monomial (fields are signed: a negative one borrows from the next)."""
    out = []
    for _ in range(nvars):
        e = key & _MASK
        if e >= _HALF:
            e -= _FULL
        out.append(e)
        key = (key - e) >> BITS
    if key:
        raise ValueError("monomial over more variables than declared")
    return out


class Poly:
    """An integer polynomial (Laurent, but every count of the model ends with non-negative exponents).

    `terms` maps a packed monomial (see `decode_key`; 0 is the constant) to a non-zero coefficient."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict | None = None):
        self.terms = terms or {}

    @staticmethod
    def var(i: int) -> "Poly":
        return Poly({1 << (BITS * i): 1})

    @staticmethod
    def lift(x) -> "Poly":
        if isinstance(x, Poly):
            return x
        if isinstance(x, int):
            return Poly({0: x} if x else {})
        raise TypeError(f"cannot lift {type(x)} into a polynomial")

    def _merge(self, other, sign: int) -> "Poly":
        o = other.terms if other.__class__ is Poly else Poly.lift(other).terms
        if not o:
            return self
        if not self.terms and sign == 1:
            return other if other.__class__ is Poly else Poly(o)
        t = dict(self.terms)
        for k, c in o.items():
            v = t.get(k, 0) + sign * c
            if v:
                t[k] = v
            else:
                del t[k]
        return Poly(t)

    def __add__(self, other):
        return self._merge(other, 1)

    __radd__ = __add__

    def __neg__(self):
        return Poly({k: -c for k, c in self.terms.items()})

    def __sub__(self, other):
        return self._merge(other, -1)

    def __rsub__(self, other):
        return Poly.lift(other)._merge(self, -1)

    def __mul__(self, other):
        if other.__class__ is not Poly:
            if isinstance(other, int):
                return Poly({k: c * other for k, c in self.terms.items()} if other else {})
            other = Poly.lift(other)
        a, b = self.terms, other.terms
        if len(a) > len(b):
            a, b = b, a
        if len(a) == 1:        # monomial times polynomial: keys stay distinct, no cancellation
            (k1, c1), = a.items()
            if len(b) == 1:
                (k2, c2), = b.items()
                return Poly({k1 + k2: c1 * c2})
            return Poly({k1 + k: c1 * c for k, c in b.items()})
        t: dict = {}
        for k1, c1 in a.items():
            for k2, c2 in b.items():
                k = k1 + k2
                t[k] = t.get(k, 0) + c1 * c2
        return Poly({k: c for k, c in t.items() if c})

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
            t[k - kd] = c // cd
        return Poly(t)

    def __rfloordiv__(self, other):
        return Poly.lift(other) // self

    def __gt__(self, other):
        # Only `factor > 1` on a present temporal or shared loop reaches here: templates hold only loops of
        # factor > 1, and buckets only shared loops of factor > 1.
        if other != 1 or len(self.terms) != 1:
            raise ValueError("symbolic comparison outside `factor > 1`")
        return True

    def is_zero(self) -> bool:
        return not self.terms


class PolyMatrix:
    """Linear combinations of polynomials over the same variables, ready for numeric evaluation.

    `combine` (polynomials x outputs, small integers) says which sums of the polynomials are wanted; they are
    folded into one coefficient matrix (monomials x outputs), so evaluating every output on every tiling is one
    product: monomial values (rows x monomials) times that matrix."""

    def __init__(self, polys: list[Poly], nvars: int, exact_object: bool, combine: np.ndarray):
        keys = sorted({k for p in polys for k in p.terms})
        row = {k: i for i, k in enumerate(keys)}
        E = np.array([decode_key(k, nvars) for k in keys], dtype=np.int64).reshape(len(keys), nvars)
        if (E < 0).any():
            raise ValueError("negative exponent in a count")
        C = [[0] * len(polys) for _ in keys]
        for j, p in enumerate(polys):
            for k, c in p.terms.items():
                C[row[k]][j] = c
        self.obj = exact_object
        dt = object if exact_object else np.int64
        self.C = np.array(C, dtype=dt).reshape(len(keys), len(polys)) @ combine.astype(dt)
        if not exact_object:
            self.Cf = self.C.astype(np.float64)
            self.Cabs = np.abs(self.Cf)
        # per variable: the monomials it appears in and with which exponent (Python ints in exact mode)
        self.powers = []
        for v in range(nvars):
            nz = np.nonzero(E[:, v])[0]
            if len(nz):
                self.powers.append((v, nz, E[nz, v].astype(object) if exact_object else E[nz, v]))

    def values(self, X: np.ndarray) -> np.ndarray:
        """Every output on every row of X (rows x variables): rows x outputs.

        In int64 mode the product goes through float64 (BLAS) when every partial sum is provably below 2**52 in
        magnitude: then every float operation is exact and the result equals the integer product."""
        F = np.ones((X.shape[0], self.C.shape[0]), dtype=object if self.obj else np.int64)
        for v, nz, e in self.powers:
            F[:, nz] *= X[:, v:v + 1] ** e
        if self.obj or not len(F):
            return F @ self.C
        Ff = F.astype(np.float64)
        if (Ff.max(axis=0) @ self.Cabs).max(initial=0.0) < 2.0 ** 52:
            return np.rint(Ff @ self.Cf).astype(np.int64)
        return F @ self.C


class _MemoNest(Nest):
    """A `Nest` whose keep-independent quantities are computed once per template: the nests of one template's
    keep options share the loops, and the model code asks for the same tiles, instances and reloads many times."""

    memo: dict

    def _m(self, f, *args):
        k = (f, *args)
        v = self.memo.get(k)
        if v is None:
            v = self.memo[k] = f(self, *args)
        return v

    @property
    def tensors(self):
        return self._m(_einsum_tensors)

    @property
    def ops(self):
        return self._m(Nest.ops.fget)

    def tile(self, pos, tensor):
        return self._m(Nest.tile, pos, tensor)

    def inst(self, pos):
        return self._m(Nest.inst, pos)

    def reload(self, pos, tensor):
        return self._m(Nest.reload, pos, tensor)

    def reload_relevant(self, pos, tensor):
        return self._m(Nest.reload_relevant, pos, tensor)

    def multicast(self, upper, lower, tensor):
        return self._m(Nest.multicast, upper, lower, tensor)

    def accumulates(self, tensor):
        # symbolic spatial factors cannot say whether they are > 1: the template fixes the pattern per option
        return self.acc_override

    def reduction(self, upper, lower, tensor):
        return self._m(Nest.reduction, upper, lower, tensor)


def _einsum_tensors(n: Nest) -> dict[str, list[str]]:
    return n.einsum.tensors


def symbolic_nest(e, unit_name: str, path: list[int], group: Group, loops: list[NestLoop],
                  keep: dict[str, list[int]], bounds: dict, memo: dict | None = None, wl=None) -> Nest:
    """A nest over symbolic factors; nests of one template (same loops) should share `memo`."""
    start: dict[int, int] = {}
    for pos in range(len(path)):
        start[pos] = next((i for i, lp in enumerate(loops) if lp.pos >= pos), len(loops))
    n = _MemoNest(e, unit_name, path, loops, keep, group, bounds, start, *formats(wl, e))
    n.memo = {} if memo is None else memo
    return n


def tensor_quantities(inst, n: Nest, filled: set, own_cap_positions: list[int]) -> dict[str, dict]:
    """Per tensor of `n`: energy (fJ), per-instance bits at each bandwidth-limited (level, port), tile bits at own
    levels.

    Everything comes out of `_counts_of` (docs/model.md §4) and `Nest.tile`/`Nest.inst`; energy and words follow
    `analyze` (§6): reads·read_fJ + writes·write_fJ, and (reads + writes) / inst per (level, tensor).
    """
    arch = inst.architecture
    wb = inst.workload.word_bits
    counts = _counts_of(n, filled)
    out: dict[str, dict] = {t: {"energy": Poly(), "words": {}, "cap": {}} for t in n.keep}
    for (pos, t), c in counts.items():
        lv = arch.levels[n.path[pos]]
        q = out[t]
        bits = n.width(pos, t)
        q["energy"] = q["energy"] + Poly.lift(c.reads) * element_fj(lv, "r", bits, wb) + \
            Poly.lift(c.writes) * element_fj(lv, "w", bits, wb)
        for port, _ in lv.ports:   # bits per instance; objective_columns divides by bandwidth x word
            w = Poly.lift(port_words(port, c.reads, c.writes)) * bits // n.inst(pos)
            key = (n.path[pos], port)
            q["words"][key] = q["words"].get(key, Poly()) + w
    for t, kept in n.keep.items():
        for pos in own_cap_positions:
            if pos in kept:
                out[t]["cap"][pos] = Poly.lift(n.tile(pos, t)) * n.width(pos, t)
    return out


def steps_poly(n: Nest) -> Poly:
    return Poly.lift(prod(lp.factor for lp in n.loops if not lp.spatial))
