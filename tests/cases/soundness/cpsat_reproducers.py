"""Minimal CP-SAT models on which ortools 9.15.6755 proves wrong optima (9.14.6206 solves all of them right).

Found by reducing the exported segment model of `qk_h8_false_optimal.json` (8-head QK, 2^34 MACs): delta
debugging over its 719 constraints kept 10, which shrink to `element_chain` below; `two_value_domain` is the
smallest model of the same kind found by hand. What triggers it:

- a variable with a few large values, at or above about 2^33 (an `add_element` table of powers of two, or a
  domain of two values such as {1, 2^33});
- copies of it gated by Booleans, `g == v` enforced by `b` (our exact `gate`), with at least one gate on;
- CP-SAT's presolve on. Two different steps go wrong, one per model: `element_chain` is fixed by
  `auto_detect_greater_than_at_least_one_of: false` (the precedence detector run when the presolved model is
  loaded), `two_value_domain` (whose gates also say `g == 0` when off) by `presolve_inclusion_work_limit: 0`
  (inclusion detection; cf. ortools issue 5293). Neither parameter alone fixes both; solver/segment_solve.py
  sets both (SAFE_PARAMETERS). The objective coefficients do not matter; the magnitude does (`element_chain`
  is right with top = 33, wrong from 34).

Each function returns (model, objective expression, true optimum): the true optimum is worked out by hand in
the docstring, independently of any solver.
"""
from __future__ import annotations

from ortools.sat.python import cp_model


def two_value_domain(n: int = 2**33, cuts: bool = False):
    """v in {1, n}; g1 = v if b1, g2 = v if b2, b1 or b2; minimise 2*g1 + g2.

    Optimum 1: b2 on, b1 off (g1 = 0), v = 1, g2 = 1. ortools 9.15 with default parameters: INFEASIBLE."""
    m = cp_model.CpModel()
    v = m.new_int_var_from_domain(cp_model.Domain.from_values([1, n]), "v")
    b1, b2 = m.new_bool_var("b1"), m.new_bool_var("b2")
    g1, g2 = m.new_int_var(0, n, "g1"), m.new_int_var(0, n, "g2")
    for g, b in ((g1, b1), (g2, b2)):
        m.add(g == v).only_enforce_if(b)
        m.add(g == 0).only_enforce_if(~b)
        if cuts:
            m.add(g >= b)
            m.add(g <= n * b)
    m.add_bool_or([b1, b2])
    obj = 2 * g1 + g2
    m.minimize(obj)
    return m, obj, 1


def element_chain(top: int = 34, x_cap: int = 4, coef: tuple[int, int] = (112480, 30080)):
    """The shape of the QK segment's failing core: a spatial exponent x <= x_cap, e = top - x, v = 2^e by an
    element table, two gated copies of v priced coef[0] and coef[1], at least one gate on.

    Optimum: x = x_cap, the cheaper gate: min(coef) * 2^(top - x_cap). ortools 9.15 defaults: min(coef) * 2^top."""
    m = cp_model.CpModel()
    lo = top - 12
    x = m.new_int_var(0, 12, "x")
    m.add(x <= x_cap)
    e = m.new_int_var(lo, top, "e")
    m.add(x + e == top)
    v = m.new_int_var(2**lo, 2**top, "v")
    m.add_element(e - lo, [2**k for k in range(lo, top + 1)], v)
    b1, b2, k = m.new_bool_var("b1"), m.new_bool_var("b2"), m.new_bool_var("k")
    g1, g2 = m.new_int_var(0, 2**top, "g1"), m.new_int_var(0, 2**top, "g2")
    m.add(g1 == v).only_enforce_if(b1)
    m.add(g2 == v).only_enforce_if(b2)
    m.add_implication(~b1, k)
    m.add_implication(~b2, ~k)
    obj = coef[0] * g1 + coef[1] * g2
    m.minimize(obj)
    return m, obj, min(coef) * 2**(top - x_cap)
