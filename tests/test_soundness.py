"""Every proof a proof: the CP-SAT 9.15 reproducers, the shared false-OPTIMAL case, certification, coarse units.

The reproducers (tests/cases/soundness/cpsat_reproducers.py) are tiny CP-SAT models whose true optimum is known by
hand; the solver parameters the mapper uses (SAFE_PARAMETERS) must get them right, and the 9.15 defaults must
still get them wrong (when that test fails, ortools fixed the bug: revisit SAFE_PARAMETERS and
docs/solver-soundness.md).
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from ortools.sat.python import cp_model

from mapsolve.model import evaluate, load_instance, load_mapping
from mapsolve.solver import solve
from mapsolve.solver.certify import (CertificationError, Certificate, batch_rank, certified, replicate,
                                     with_rank_bound)
from mapsolve.solver.construct import constructive_mapping
from mapsolve.solver.segment_solve import SAFE_PARAMETERS, SPEED_PARAMETERS, set_parameters

CASES = Path(__file__).parent / "cases" / "soundness"
sys.path.insert(0, str(CASES))
from cpsat_reproducers import element_chain, two_value_domain  # noqa: E402

QK8_OPTIMUM = 123_254_421_323_776     # fJ: the 1-head optimum run 8 times (the mapping beside the case)
QK8_FALSE = 1_700_366_412_414_976     # fJ: what ortools 9.15 with default presolve "proved"


def _solve_model(model, obj, params: dict):
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1
    s.parameters.random_seed = 0
    set_parameters(s.parameters, params)
    st = s.solve(model)
    return s.status_name(st), (s.value(obj) if st in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None)


REPRODUCERS = [("two_value_domain", two_value_domain, {}), ("two_value_domain_cuts", two_value_domain, {"cuts": True}),
               ("element_chain", element_chain, {}), ("element_chain_2^40", element_chain, {"top": 40})]


@pytest.mark.parametrize("name,build,kw", REPRODUCERS, ids=[r[0] for r in REPRODUCERS])
def test_mapper_parameters_solve_reproducers_right(name, build, kw):
    model, obj, truth = build(**kw)
    assert _solve_model(model, obj, {**SAFE_PARAMETERS, **SPEED_PARAMETERS}) == ("OPTIMAL", truth)
    model, obj, truth = build(**kw)
    assert _solve_model(model, obj, {"cp_model_presolve": False}) == ("OPTIMAL", truth)


@pytest.mark.parametrize("name,build,kw", REPRODUCERS, ids=[r[0] for r in REPRODUCERS])
def test_default_parameters_still_wrong(name, build, kw):
    """If this fails, ortools no longer has the bug: the workaround may go (measure first)."""
    model, obj, truth = build(**kw)
    assert _solve_model(model, obj, {}) != ("OPTIMAL", truth)


def test_random_gated_large_domains():
    """The reproducers' family at random (values 2^20..3^38, gate styles, coefficients): the mapper's
    parameters always find the hand-computed optimum min(coef) * min(values)."""
    rnd = random.Random(7)
    wrong = []
    for trial in range(120):
        vals = sorted({rnd.choice([2, 3, 5]) ** rnd.randint(13, 38) for _ in range(rnd.randint(1, 5))} |
                      ({1} if rnd.random() < 0.3 else set()))
        coef = (rnd.randint(1, 10**5), rnd.randint(1, 10**5))
        if max(coef) * max(vals) * 4 >= 2**62:
            continue
        mul = rnd.random() < 0.5
        n = max(vals)
        m = cp_model.CpModel()
        v = m.new_int_var_from_domain(cp_model.Domain.from_values(vals), "v")
        bs = [m.new_bool_var(f"b{i}") for i in range(2)]
        gs = [m.new_int_var(0, n, f"g{i}") for i in range(2)]
        for g, b in zip(gs, bs):
            if mul:
                m.add_multiplication_equality(g, [v, b])
            else:
                m.add(g == v).only_enforce_if(b)
                m.add(g == 0).only_enforce_if(~b)
            m.add(g >= min(vals) * b)
            m.add(g <= n * b)
        m.add_bool_or(bs)
        obj = coef[0] * gs[0] + coef[1] * gs[1]
        m.minimize(obj)
        got = _solve_model(m, obj, {**SAFE_PARAMETERS, **SPEED_PARAMETERS})
        if got != ("OPTIMAL", min(coef) * min(vals)):
            wrong.append((vals, coef, mul, got))
    assert not wrong, wrong[:3]


def test_shared_false_optimal_case_is_proven_right():
    inst = load_instance(CASES / "qk_h8_false_optimal.json")
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=30)
    assert res.status == "OPTIMAL"
    assert res.objective == [QK8_OPTIMUM] and res.best_bound == [QK8_OPTIMUM]
    assert evaluate(inst, load_mapping(CASES / "qk_h8_false_optimal.mapping.json")).energy_fj == QK8_OPTIMUM
    labels = [c["label"] for c in res.certificates]
    assert labels[0] == "constructive" and any(lb.startswith("replication over H") for lb in labels)
    assert all(c["values"][0] >= res.best_bound[0] for c in res.certificates)


def test_certification_catches_the_false_bound():
    """The check that would have caught the bug: the false bound is above the replication certificate."""
    inst = load_instance(CASES / "qk_h8_false_optimal.json")
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=30)
    cert = next(c for c in res.certificates if c["label"].startswith("replication"))
    res.best_bound = [QK8_FALSE]
    res.status = "OPTIMAL"
    fake = Certificate(cert["label"], res.mapping, tuple(cert["values"]), res.evaluation)
    with pytest.raises(CertificationError, match=str(QK8_FALSE)):
        certified(inst, res, [fake])


def test_infeasible_claim_with_a_valid_certificate_is_an_error():
    inst = load_instance(Path(__file__).parent.parent / "instances" / "tiny_matmul.json")
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=10)
    built = constructive_mapping(inst)
    ev = evaluate(inst, built)
    res.status, res.objective, res.best_bound = "INFEASIBLE", None, None
    with pytest.raises(CertificationError, match="infeasible"):
        certified(inst, res, [Certificate("constructive", built, (ev.energy_fj,), ev)])


def test_replication_is_exact_on_energy():
    """k copies in sequence cost exactly k times one copy's energy (the rank indexes every tensor)."""
    inst = load_instance(CASES / "qk_h8_false_optimal.json")
    rank = batch_rank(inst)
    assert rank == "H"
    one = with_rank_bound(inst, rank, 1)
    m1 = solve(one, "energy", workers=1, seed=0, deterministic_time=10, certify="cheap").mapping
    e1 = evaluate(one, m1)
    e8 = evaluate(inst, replicate(m1, rank, 8))
    assert e8.energy_fj == 8 * e1.energy_fj
    assert e8.latency_cycles <= 8 * e1.latency_cycles


def test_constructive_mapping_is_valid_on_shipped_instances():
    root = Path(__file__).parent.parent / "instances"
    for path in sorted(root.glob("*.json")):
        if path.name.endswith(".mapping.json"):
            continue
        inst = load_instance(path)
        for comp in ("energy", "latency"):
            m = constructive_mapping(inst, comp)
            assert m is not None, path.name
            evaluate(inst, m)   # raises if invalid


def test_retry_keeps_a_solution_it_proves(monkeypatch):
    """A segment that ran out of budget holding its optimum is retried; its cut-off must not come from a path
    through its own solution (that made the retry prune it and drop the optimum: FEASIBLE 22841664 instead of
    OPTIMAL 22361408 on tiny_matmul)."""
    import dataclasses

    import mapsolve.solver.search as search
    real = search.solve_segment
    calls: dict = {}

    def first_attempt_unproven(inst, plan, components, seconds, workers, seed, **kw):
        r = real(inst, plan, components, seconds, workers, seed, **kw)
        calls[plan[0]] = calls.get(plan[0], 0) + 1
        if calls[plan[0]] == 1 and r.status == "OPTIMAL":
            r = dataclasses.replace(r, status="FEASIBLE", bound=(0,))   # as if the limit hit after the optimum
        return r
    monkeypatch.setattr(search, "solve_segment", first_attempt_unproven)
    inst = load_instance(Path(__file__).parent.parent / "instances" / "tiny_matmul.json")
    res = search.solve(inst, "energy", workers=1, seed=0, deterministic_time=20, certify="cheap")
    assert res.status == "OPTIMAL" and res.objective == [22361408]
