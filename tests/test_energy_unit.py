"""When exact femtojoules would overflow CP-SAT's integers, the solver optimises in a coarser unit and says so."""
from __future__ import annotations

from mapsolve.model import evaluate
from mapsolve.model.spec import Instance
from mapsolve.solver import solve
from mapsolve.solver.construct import constructive_mapping


def huge_matmul() -> Instance:
    return Instance.model_validate({
        "name": "huge-energies",
        "workload": {"ranks": {"M": 256, "N": 256, "K": 64}, "einsums": [
            {"name": "MM", "output": {"tensor": "Z", "ranks": ["M", "N"]},
             "inputs": [{"tensor": "A", "ranks": ["M", "K"]}, {"tensor": "B", "ranks": ["K", "N"]}], "op": "mac"}]},
        "architecture": {
            "levels": [{"name": "DRAM", "read_pj": "999999999.999", "write_pj": "987654321.123"},
                       {"name": "GLB", "capacity_words": 4096, "read_pj": "12345.678", "write_pj": "0.001"}],
            "compute_units": [{"name": "mac", "mesh": {"x": 4}, "ops": {"mac": {"energy_pj": "999999999.5"}}}]},
    })


def test_coarser_unit_is_reported_and_verified():
    inst = huge_matmul()
    res = solve(inst, "energy", deterministic_time=30)
    assert res.energy_unit_fj > 1                               # fJ would overflow: said in the result
    assert res.best_bound[0] <= res.objective[0]
    exact = evaluate(inst, res.mapping)
    assert exact.energy_fj == res.energy_fj                      # the reported energy is the exact one
    assert exact.energy_fj - res.objective[0] * res.energy_unit_fj == res.rounding_error_fj
    assert 0 <= res.rounding_error_fj <= res.rounding_bound_fj   # rounded down: never above the true energy


def test_exact_unit_when_it_fits():
    inst = huge_matmul()
    small = inst.model_copy(update={"workload": inst.workload.model_copy(
        update={"ranks": {"M": 4, "N": 4, "K": 2}})})
    res = solve(small, "energy", deterministic_time=30)
    assert res.status == "OPTIMAL" and res.energy_unit_fj == 1 and res.rounding_error_fj == 0
    assert evaluate(small, res.mapping).energy_fj == res.objective[0]


def test_coarse_unit_bound_is_a_lower_bound_in_fj():
    """In a coarser unit the per-access energies are rounded down, so unit x bound never exceeds a valid
    mapping's exact energy, and OPTIMAL is claimed only when the exact energy meets it."""
    inst = huge_matmul()
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=20)
    assert res.energy_unit_fj > 1
    assert res.energy_bound_fj == res.best_bound[0] * res.energy_unit_fj
    assert res.energy_bound_fj <= res.energy_fj
    assert (res.status == "OPTIMAL") == (res.energy_bound_fj == res.energy_fj)
    assert 0 <= res.rounding_error_fj <= res.rounding_bound_fj
    for comp in ("energy", "latency"):
        assert res.energy_bound_fj <= evaluate(inst, constructive_mapping(inst, comp)).energy_fj
