"""Issue 17: limits are kept whatever the instance, and segments CP-SAT cannot represent are not fatal.

Deterministic limits only (never wall-clock asserts): the checks are on what the search did — which segments got a
model, which kept their floor, what the result says — and on the mapping being valid and exactly priced."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mapsolve.model import evaluate
from mapsolve.model.load import parse
from mapsolve.model.spec import Instance
from mapsolve.solver import solve
from mapsolve.solver.limits import Allowance, representability_notes
from mapsolve.solver.search import PlanSpace, plan_count
from mapsolve.solver.segment_solve import solve_segment

ROOT = Path(__file__).resolve().parent.parent
BASE = json.loads((ROOT / "instances" / "tiny_matmul.json").read_text())


def _inst(doc: dict) -> Instance:
    return parse(Instance, json.dumps(doc), "test")


def chain(n: int) -> Instance:
    """tiny_matmul followed by n element-wise Einsums over [M, N], each reading the previous output."""
    d = copy.deepcopy(BASE)
    prev = "Z"
    for i in range(n):
        op = ("exp", "add", "mul")[i % 3]
        d["workload"]["einsums"].append({"name": f"E{i}", "output": {"tensor": f"E{i}", "ranks": ["M", "N"]},
                                         "inputs": [{"tensor": prev, "ranks": ["M", "N"]}], "op": op})
        prev = f"E{i}"
    for op in ("exp", "add", "mul"):
        d["architecture"]["compute_units"][0]["ops"][op] = {"energy_pj": "1.0"}
    return _inst(d)


def with_ranks(ranks: dict) -> Instance:
    d = copy.deepcopy(BASE)
    d["workload"]["ranks"] = ranks
    return _inst(d)


def slow_glb() -> Instance:
    """A GLB transfer time whose exact ceiling needs integers beyond 2^62 (latency)."""
    d = copy.deepcopy(BASE)
    d["architecture"]["levels"][1]["bandwidth"] = "1/1000000"
    d["workload"]["ranks"] = {"M": 16384, "K": 16384, "N": 16384}
    return _inst(d)


PRIMES = {"M": 999983, "K": 999979, "N": 999961}
MAX_OPS = {"M": 2097152, "K": 2097152, "N": 1048576}   # 2^62 operations, the spec's maximum


def _valid(inst: Instance, res) -> None:
    assert res.mapping is not None
    ev = evaluate(inst, res.mapping)
    assert (ev.energy_fj, ev.latency_cycles) == (res.energy_fj, res.latency_cycles)
    assert {m.einsum for m in res.mapping.einsums} == {e.name for e in inst.workload.einsums}


def test_long_chain_small_deterministic_budget_ends_with_valid_mapping():
    inst = chain(200)
    assert plan_count(inst) == 201 + 201 * 200 // 2
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=0.3)
    assert res.status in ("FEASIBLE", "OPTIMAL")
    _valid(inst, res)
    assert 0 < res.best_bound[0] <= res.objective[0]
    # most of the 20,301 plans were never reached: bounded together, not listed one by one, and few models built
    assert "segment plans not reached" in res.diagnosis
    assert len(res.segments) < plan_count(inst) / 10
    assert sum(1 for s in res.segments if s.source == "cp-sat") < 100


def test_unbuilt_plans_are_listed_with_their_floor():
    inst = chain(40)   # 861 plans: few enough to list each unreached one
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=0.05)
    _valid(inst, res)
    assert len(res.segments) == plan_count(inst)
    unbuilt = [s for s in res.segments if s.source == "floor"]
    assert unbuilt and all(s.status in ("UNKNOWN", "PRUNED") and s.values is None for s in unbuilt)
    assert any(s.why == "not reached within the limit" for s in unbuilt)
    assert res.best_bound[0] <= res.objective[0]


def test_plan_space_counts_without_listing():
    space = PlanSpace(chain(1999))   # 2,000 Einsums: ~2 million plans, counted, never listed
    assert space.count() == 2000 + 2000 * 1999 // 2
    first = next(iter(space.order()))
    assert space.plan(first) == (("Z",), None, ())


@pytest.mark.parametrize("ranks", [PRIMES, MAX_OPS], ids=["primes", "2^62 ops"])
def test_unrepresentable_energy_segment_keeps_constructive_mapping(ranks):
    inst = with_ranks(ranks)
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=1)
    assert res.status == "FEASIBLE"
    _valid(inst, res)
    assert res.energy_bound_fj <= res.energy_fj
    assert "segment Z: too large for CP-SAT's 64-bit integers" in res.diagnosis
    assert "kept the constructive mapping" in res.diagnosis
    assert [s.source for s in res.segments] == ["constructive"]


def test_unrepresentable_latency_segment_keeps_constructive_mapping():
    inst = slow_glb()
    res = solve(inst, "latency", workers=1, seed=0, deterministic_time=1)
    assert res.status == "FEASIBLE"
    _valid(inst, res)
    assert res.best_bound[0] <= res.latency_cycles
    assert "segment Z" in res.diagnosis and "GLB" in res.diagnosis


def test_representability_notes_name_the_einsum():
    notes = representability_notes(with_ranks(PRIMES))
    assert len(notes) == 1 and notes[0].startswith("einsum Z: too large for CP-SAT's 64-bit integers")
    assert representability_notes(slow_glb(), "latency")[0].startswith("einsum Z:")
    assert representability_notes(_inst(BASE)) == []


def test_build_limit_gives_no_model_not_an_error():
    inst = _inst(BASE)
    r = solve_segment(inst, (("Z",), None, ()), ["energy"], 10, 1, 0, det_seconds=1, build=(None, 10))
    assert r.status == "UNKNOWN" and r.source == "unbuilt" and r.values is None
    assert "building operations" in r.why


def test_constructive_local_search_stops_when_its_allowance_is_spent():
    from mapsolve.solver.construct import constructive_mapping
    inst = chain(20)
    few = Allowance(units=5)
    m = constructive_mapping(inst, allowance=few)
    assert m is not None and len(m.einsums) == 21
    evaluate(inst, m)
    assert few.used <= 5 + 21   # the greedy starts still run (one per Einsum at most: equal ones share)
    everything = Allowance()
    constructive_mapping(inst, allowance=everything)
    assert everything.used > 5 * few.used


def extra_levels(n: int) -> Instance:
    """tiny_matmul with n more on-chip levels (copies of GLB) between GLB and the PEs."""
    d = copy.deepcopy(BASE)
    glb = d["architecture"]["levels"][1]
    d["architecture"]["levels"][2:2] = [{**glb, "name": f"L{i}"} for i in range(n)]
    return _inst(d)


@pytest.mark.parametrize("n", [20, 100])
def test_many_on_chip_levels_end_with_a_valid_mapping(n):
    """20 or 100 extra levels: once more than 500 s of model building at --time-limit 5; now the build limit
    (counted in operations with a deterministic budget) leaves such models unbuilt, never the answer missing."""
    inst = extra_levels(n)
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=1)
    _valid(inst, res)
    assert res.best_bound[0] <= res.objective[0]


def test_a_hundred_compute_units_end_with_a_valid_mapping():
    d = copy.deepcopy(BASE)
    unit = d["architecture"]["compute_units"][0]
    d["architecture"]["compute_units"] = [{**unit, "name": f"mac{i}"} for i in range(100)]
    inst = _inst(d)
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=1)
    _valid(inst, res)
    assert res.best_bound[0] <= res.objective[0]


def test_validate_says_up_front_what_cp_sat_cannot_prove(tmp_path):
    from test_cli_errors import cli
    d = copy.deepcopy(BASE)
    d["workload"]["ranks"] = PRIMES
    (tmp_path / "i.json").write_text(json.dumps(d))
    proc = cli("validate", tmp_path / "i.json")
    assert proc.returncode == 0, proc.stderr
    assert "note: einsum Z: too large for CP-SAT's 64-bit integers" in proc.stdout


def test_bounds_of_plans_never_reached_stay_below_the_true_optimum(monkeypatch):
    """Cut short at tiny deterministic budgets, the search's bound must still be a lower bound of the optimum the
    enumerator finds, whether the plans it never reached are listed with their floors or (as beyond
    LIST_UNREACHED) bounded together by the compute energy every grouping spends (paths.py `Unreached`)."""
    import mapsolve.solver.search as search
    from mapsolve.solver import enumerate as en
    from mapsolve.solver.segment_solve import flat
    for n in (2, 3):
        d = json.loads(chain(n).model_dump_json())
        d["workload"]["ranks"] = {"M": 4, "K": 2, "N": 4}
        inst = flat(_inst(d))
        optimum = en.enumerate_optimum(inst, "energy", max_candidates=None).objective[0]
        for listed in (True, False):
            monkeypatch.setattr(search, "LIST_UNREACHED", 5000 if listed else 0)
            for det in (0.0001, 0.01):
                res = solve(inst, "energy", workers=1, seed=0, deterministic_time=det)
                _valid(inst, res)
                assert res.best_bound[0] <= optimum <= res.objective[0], (n, listed, det, res.best_bound, optimum)
                assert listed or res.status == "OPTIMAL" or "not reached" in res.diagnosis


@pytest.mark.parametrize("den_num,den_den,num_ub", [(33554432, 146875, 540431955284459520), (7, 3, 5000),
                                                    (1024, 1, 5000), (3, 1000, 5000)])
def test_split_ceiling_is_the_exact_ceiling(monkeypatch, den_num, den_den, num_ub):
    """solver/exact.py `ceil_div` past the integer limit splits num = q * den_num + r. The first case is the real
    one (5.4e17 DRAM words times a bandwidth denominator of 146,875 pass 2^62); the others force the split on small
    numbers with a limit just above what the split needs. CP-SAT's value of the ceiling is ceil(num * den_den /
    den_num) for every num tried."""
    from ortools.sat.python import cp_model
    from mapsolve.solver import exact
    ub = -(-num_ub * den_den // den_num)
    limit = min(max(ub + den_den, num_ub, den_num * den_den) + 1, 2**62)
    assert max(ub * den_num, num_ub * den_den) >= limit      # the direct encoding would not fit: the split is used
    monkeypatch.setattr(exact, "MAX_TABLE", limit)
    for num in sorted({0, 1, den_num - 1, den_num, den_num + 1, 3 * den_num + 2, num_ub // 3, num_ub}):
        x = exact.Exact()
        v = x.m.new_int_var(0, num_ub, "num")
        x.m.add(v == num)
        c = x.ceil_div(v, num_ub, den_num, den_den, "t")
        solver = cp_model.CpSolver()
        assert solver.solve(x.m) == cp_model.OPTIMAL
        assert solver.value(c) == -(-num * den_den // den_num), (num, den_num, den_den)
