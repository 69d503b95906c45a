"""The mapper (mapsolve.solver) against the evaluator (mapsolve.model).

Property test: for random small instances and random valid mappings (tests/strategies.py), the solver proves an
optimum within the time limit, that optimum is no worse than the random mapping's cost, the figures it reports
are the evaluator's figures for the mapping it returns, and a lexicographic objective's first component is the
single objective's optimum. Deterministic tests on the shipped tiny instances, EDP against both optima, an
infeasible instance, and every saved solver case in tests/cases/solver_*.json.

A failure here is a solver bug (the evaluator is checked against the simulator in test_model_vs_simulator.py):
save the minimal case to tests/cases/solver_<what>.json as {"instance", "mapping", "objective"}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import MappingError, evaluate, load_instance, load_mapping  # noqa: E402
from mapsolve.model.spec import Instance, Mapping  # noqa: E402
from mapsolve.solver.search import SolverError, VerificationError, solve  # noqa: E402
from mapsolve.solver.paths import _floor  # noqa: E402
from mapsolve.solver.segment import to_unit  # noqa: E402
from mapsolve.model.evaluate import port_words  # noqa: E402
from mapsolve.solver.bounds import ChainFloors, fewest_words  # noqa: E402
from strategies import cases  # noqa: E402

ROOT = Path(__file__).parent.parent
INSTANCES = ROOT / "instances"
CASES = Path(__file__).parent / "cases"

TIME_LIMIT = 20        # CP-SAT deterministic seconds per solve (load-independent); cases take well under 5
MAX_EINSUMS = 3        # 4-Einsum fused segments can need a minute to prove (see the report of this test's author)
EXAMPLES = 1000        # ~2 minutes on a 2-core machine; the whole file ~3 minutes


def metric(result, name: str) -> int:
    return result.energy_fj if name == "energy" else result.latency_cycles


def case_json(inst: Instance, mapping: Mapping, objective: str) -> str:
    return json.dumps({"instance": inst.model_dump(mode="json", exclude_defaults=True),
                       "mapping": mapping.model_dump(mode="json", exclude_defaults=True),
                       "objective": objective}, indent=1)


def solve_checked(inst: Instance, objective: str, time_limit: float, context: str = ""):
    """solve(), then every check that does not need a reference mapping: status, verification, re-evaluation."""
    try:
        res = solve(inst, objective, workers=1, seed=0, deterministic_time=time_limit)
    except VerificationError as exc:    # decode/re-evaluation disagreed inside the solver: a bug
        pytest.fail(f"objective {objective}: VerificationError: {exc}{context}")
    assert res.status == "OPTIMAL", \
        f"objective {objective}: status {res.status} within {time_limit} deterministic s ({res.diagnosis}){context}"
    assert res.mapping is not None and res.evaluation is not None
    comps = objective.split(",")
    assert len(res.objective) == len(comps)
    for k, comp in enumerate(comps):
        assert res.objective[k] == metric(res, comp), f"objective {objective}: component {comp}{context}"
    assert res.evaluation.energy_fj == res.energy_fj, context
    assert res.evaluation.latency_cycles == res.latency_cycles, context
    again = evaluate(inst, res.mapping)        # the returned mapping is valid and re-evaluates to the same numbers
    assert (again.energy_fj, again.latency_cycles) == (res.energy_fj, res.latency_cycles), context
    assert res.best_bound[0] == res.objective[0], context
    return res


# --------------------------------------------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------------------------------------------
@st.composite
def small_cases(draw):
    """Valid (instance, mapping) pairs with at most MAX_EINSUMS Einsums."""
    inst, mapping = draw(cases(allow_invalid=False))
    assume(len(inst.workload.einsums) <= MAX_EINSUMS)
    return inst, mapping


# No shrinking: every shrink step is a full solve; the failure message carries the whole case instead.
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(small_cases(), st.sampled_from(["energy", "latency"]), st.integers(0, 3))
def test_solver_beats_random_mapping(case, objective, lex):
    inst, mapping = case
    try:
        ref = evaluate(inst, mapping)
    except MappingError:
        assume(False)     # over capacity: not a reference
    context = "\n\ncase:\n" + case_json(inst, mapping, objective)
    res = solve_checked(inst, objective, TIME_LIMIT, context)
    assert res.objective[0] <= metric(ref, objective), \
        f"objective {objective}: solver optimum {res.objective[0]} > {metric(ref, objective)} of a valid mapping" \
        + context
    if lex == 0:          # one case in four: the lexicographic objective with this one first
        other = "latency" if objective == "energy" else "energy"
        both = solve_checked(inst, f"{objective},{other}", TIME_LIMIT, context)
        assert both.objective[0] == res.objective[0], \
            f"{objective},{other}: first component {both.objective[0]} != {objective} optimum {res.objective[0]}" \
            + context
        # the single-objective answer has the same first component, so it bounds the second
        assert both.objective[1] <= metric(res, other), context


def assert_transfer_floors_hold(inst, res, context=lambda: "") -> None:
    """Every group of the evaluated mapping `res` moves at least fewest_words at DRAM and at its fusion level:
    its transfer time there is at least ceil(fewest / bandwidth) on every port. `context()` describes the case."""
    levels = inst.architecture.levels
    index = {lv.name: i for i, lv in enumerate(levels)}
    for g in res.groups:
        fusion = index[g.fusion_level] if g.fusion_level is not None else None
        for li, (reads, writes) in fewest_words(inst, g.einsums, fusion).items():
            word = levels[li].word(inst.workload.word_bits)
            for port, bw in levels[li].ports:
                words = port_words(port, reads, writes)       # bits
                floor = -(-words * bw.denominator // (bw.numerator * word))
                assert g.level_cycles.get(levels[li].name, 0) >= floor, \
                    (g, levels[li].name, port, words, context())


@settings(max_examples=400, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(cases(allow_invalid=False))
def test_fewest_words_cut_is_valid(case):
    """The solver's redundant transfer cut (solver/bounds.py fewest_words) never exceeds what a valid mapping
    moves: every group's transfer time at DRAM and at its fusion level is at least ceil(fewest / bandwidth); nor
    does the latency floor the search assumes for a segment it has not solved yet."""
    inst, mapping = case
    try:
        res = evaluate(inst, mapping)
    except MappingError:
        assume(False)
    assert_transfer_floors_hold(inst, res, lambda: case_json(inst, mapping, "latency"))
    for g in res.groups:
        # the search's bound for a segment not solved yet (solver/paths.py) holds for the group too
        assert _floor(inst, g.einsums, "latency") <= g.latency_cycles, (g, case_json(inst, mapping, "latency"))
        assert _floor(inst, g.einsums, "energy") <= g.energy_fj, (g, case_json(inst, mapping, "energy"))
        in_tens = sum(n * to_unit(e, 10) for n, e in g.energy_events)
        assert _floor(inst, g.einsums, "energy", 10) <= in_tens, (g, case_json(inst, mapping, "energy"))


@pytest.mark.parametrize("name", ["tiny_chain", "af_block", "llm_4k", "gpt3_block", "butterfly_4k"])
def test_incremental_floors_equal_the_floor(name):
    """bounds.py `ChainFloors` (the search's incremental floors: a fixed end, the start moving left one Einsum at a
    time, and jumps) equals paths.py `_floor` on every run of Einsums, for energy (in fJ and in tens) and latency;
    and the latency floor of a fused attention segment counts QK and AV one after another on the one unit that
    runs MACs."""
    inst = load_instance(ROOT / "instances" / f"{name}.json")
    names = [e.name for e in inst.workload.einsums]
    n = len(names)
    for component, unit in (("energy", 1), ("energy", 10), ("latency", 1)):
        floors = ChainFloors(inst, component, unit)
        for i in range(n):
            assert floors.lone(i) == _floor(inst, [names[i]], component, unit)
        for j in range(2, n + 1):
            for i in range(j - 2, -1, -1):
                assert floors.fused(i, j) == _floor(inst, names[i:j], component, unit), (component, i, j)
        if n > 3:
            assert floors.fused(0, n) == _floor(inst, names, component, unit)
    if name == "llm_4k":
        qk_av = [e for e in inst.workload.einsums if e.op == "mac"]
        from mapsolve.solver.bounds import fewest_cycles
        mac2d = inst.architecture.unit("mac2d")
        assert _floor(inst, names, "latency") >= sum(fewest_cycles(inst, e, mac2d) for e in qk_av)


# --------------------------------------------------------------------------------------------------------------
# The shipped instances
# --------------------------------------------------------------------------------------------------------------
TINY = ["tiny_matmul", "tiny_chain", "tiny_attention"]


@pytest.mark.parametrize("objective", ["energy", "latency"])
@pytest.mark.parametrize("name", TINY)
def test_tiny_instance(name, objective):
    inst = load_instance(INSTANCES / f"{name}.json")
    baseline = evaluate(inst, load_mapping(INSTANCES / f"{name}.mapping.json"))
    res = solve_checked(inst, objective, 60)
    assert res.objective[0] <= metric(baseline, objective)
    assert res.objective_name == objective


@pytest.mark.parametrize("name", TINY)
def test_edp_is_no_worse_than_either_optimum(name):
    """EDP, read off the exact front (solver/pareto.py), is proven and at most the energy x latency of the
    energy-optimal and of the latency-optimal mappings (both lie on the front)."""
    inst = load_instance(INSTANCES / f"{name}.json")
    r = solve(inst, "edp", deterministic_time=120, workers=1, seed=0)
    assert r.status == "OPTIMAL" and r.objective == [r.energy_fj * r.latency_cycles] == r.best_bound
    for obj in ("energy,latency", "latency,energy"):
        o = solve(inst, obj, deterministic_time=60, workers=1, seed=0)
        assert r.objective[0] <= o.energy_fj * o.latency_cycles


# --------------------------------------------------------------------------------------------------------------
# Infeasible
# --------------------------------------------------------------------------------------------------------------
def test_infeasible_capacity():
    # Every Einsum must keep all its tensors in a 2-word buffer: no tiling can fit, fused or not.
    inst = Instance.model_validate({"name": "cramped", "workload": {
        "ranks": {"m": 4, "n": 4, "k": 2},
        "einsums": [{"name": "P", "op": "mac", "output": {"tensor": "P", "ranks": ["m", "n"]},
                     "inputs": [{"tensor": "A", "ranks": ["m", "k"]}, {"tensor": "B", "ranks": ["k", "n"]}]},
                    {"name": "Q", "op": "exp", "output": {"tensor": "Q", "ranks": ["m", "n"]},
                     "inputs": [{"tensor": "P", "ranks": ["m", "n"]}]}]},
        "architecture": {"levels": [{"name": "DRAM", "read_pj": "1", "write_pj": "1"},
                                    {"name": "Buf", "read_pj": "0.1", "write_pj": "0.1", "capacity_words": 2,
                                     "must_keep": ["A", "B", "P", "Q"]}],
                         "compute_units": [{"name": "U", "ops": {"mac": {"energy_pj": "1"},
                                                                 "exp": {"energy_pj": "1"}}}]}})
    for objective in ("energy", "latency"):
        res = solve(inst, objective, workers=1, seed=0, deterministic_time=20)
        assert res.status == "INFEASIBLE"
        assert res.mapping is None and res.objective is None
        assert res.diagnosis.strip()
        assert "Buf" in res.diagnosis


# --------------------------------------------------------------------------------------------------------------
# Saved solver cases (minimal reproductions of past solver bugs)
# --------------------------------------------------------------------------------------------------------------
def saved_solver_cases() -> list[Path]:
    """tests/cases/solver_*.json holding {"instance", "mapping", "objective"} (other schemas belong to other tests)."""
    out = []
    for path in sorted(CASES.glob("solver_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and {"instance", "mapping", "objective"} <= set(data):
            out.append(path)
    return out


@pytest.mark.parametrize("path", saved_solver_cases(), ids=lambda p: p.stem)
def test_saved_solver_case(path):
    data = json.loads(path.read_text())
    inst, mapping = Instance.model_validate(data["instance"]), Mapping.model_validate(data["mapping"])
    objective = data["objective"]
    ref = evaluate(inst, mapping)
    res = solve_checked(inst, objective, 60, f"\n\ncase: {path.name}")
    assert res.objective[0] <= metric(ref, objective.split(",")[0])


# --------------------------------------------------------------------------------------------------------------
# Views: fusing a projection with its consumer across a renamed dimension
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("capacity", [100, 24, 12, 10])
def test_fusion_through_a_view_matches_enumeration(capacity):
    """KP writes K[p,e] over its key rank p; QK reads it as K[m,e]. With a small GLB the optimum fuses them under
    a loop that is p in KP and m in QK (found at 24 words and below when this test was written). The solver and
    the exhaustive enumerator must agree on the optimum, whatever the mapping."""
    from mapsolve.solver import enumerate as en
    from test_model_vs_simulator import KEY_PROJECTION_THEN_QK
    arch = {"levels": [{"name": "DRAM", "read_pj": "10", "write_pj": "10"},
                       {"name": "GLB", "read_pj": "1", "write_pj": "1", "capacity_words": capacity}],
            "compute_units": [{"name": "U", "ops": {"mac": {"energy_pj": "0.5"}}}]}
    inst = Instance.model_validate({"name": "views", "workload": KEY_PROJECTION_THEN_QK, "architecture": arch})
    for objective in ("energy", "latency"):
        res = solve_checked(inst, objective, TIME_LIMIT)
        assert res.objective == en.enumerate_optimum(inst, objective).objective


SHIPPED = sorted(p.name for ext in ("json", "yaml") for p in INSTANCES.glob(f"*.{ext}") if ".mapping" not in p.name)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_instance_has_a_mapping_at_once(name):
    """With almost no budget (deterministic, so the same on a loaded machine) every shipped instance still ends
    with a complete valid mapping — the constructive first incumbent — never "no mapping found" (exit 4)."""
    inst = load_instance(INSTANCES / name)
    res = solve(inst, None, workers=1, seed=0, deterministic_time=0.01, certify="cheap")
    assert res.mapping is not None and res.status in ("OPTIMAL", "FEASIBLE"), (res.status, res.diagnosis)
    ev = evaluate(inst, res.mapping)
    assert (ev.energy_fj, ev.latency_cycles) == (res.energy_fj, res.latency_cycles)
    assert res.best_bound[0] <= res.objective[0]
