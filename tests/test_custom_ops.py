"""Custom element-wise operations by name (issue 16, part 4): gelu, silu, rsqrt, tanh, ... priced per compute unit.

The cost model prices an op by its name in the unit's `ops`, so a custom op must cost exactly what a known op of
the same price costs (model vs the literal simulator, tests/simulator.py, on generated cases); reductions keep
their combiners (only mac, add and max reduce); the solver proves the same optimum as the enumerator on an FFN
with a gelu; the shipped edge FFN is proven optimal.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import MappingError, analyze, evaluate, load_instance  # noqa: E402
from mapsolve.model.spec import KNOWN_OPS, Instance  # noqa: E402
from mapsolve.solver import enumerate as en  # noqa: E402
from mapsolve.solver.search import solve  # noqa: E402
from strategies import custom_op_cases  # noqa: E402
from test_cli_errors import assert_input_error, cli  # noqa: E402
from test_model_vs_simulator import mismatches  # noqa: E402

ROOT = Path(__file__).parent.parent
FFN = ROOT / "instances" / "edge_ffn_gelu.yaml"


def tiny_ffn(op: str = "gelu", reduce_with: str | None = None) -> dict:
    """A 2x4x4x2 FFN, H = X W1, G = op(H), Y = G W2, on DRAM -> 64-word buffer -> 2 PEs (mac) beside 2 lanes
    (small enough for the enumerator: 244,736 candidates, about 4 s per objective)."""
    g_out = ["M"] if reduce_with else ["M", "F"]
    return {"name": "tiny_ffn", "workload": {
        "ranks": {"M": 2, "D": 4, "F": 4, "N": 2},
        "einsums": [
            {"name": "UP", "op": "mac", "output": {"tensor": "H", "ranks": ["M", "F"]},
             "inputs": [{"tensor": "X", "ranks": ["M", "D"]}, {"tensor": "W1", "ranks": ["D", "F"]}]},
            {"name": "ACT", "op": reduce_with or op, "output": {"tensor": "G", "ranks": g_out},
             "inputs": [{"tensor": "H", "ranks": ["M", "F"]}]},
            {"name": "DOWN", "op": "mac", "output": {"tensor": "Y", "ranks": ["M", "N"]},
             "inputs": [{"tensor": "G", "ranks": ["M", "F"]}, {"tensor": "W2", "ranks": ["F", "N"]}]}]
        if not reduce_with else [
            {"name": "ACT", "op": reduce_with, "output": {"tensor": "G", "ranks": g_out},
             "inputs": [{"tensor": "H", "ranks": ["M", "F"]}]}]},
        "architecture": {"frequency_mhz": "1 GHz", "levels": [
            {"name": "DRAM", "read_pj": "62.4 pJ", "write_pj": "62.4 pJ", "bandwidth": "4 words/cycle"},
            {"name": "GLB", "read_pj": "1.894 pJ", "write_pj": "1.763 pJ", "capacity_words": "64 words",
             "bandwidth": "8 words/cycle"},
            {"name": "PE", "read_pj": "653 fJ", "write_pj": "570 fJ", "capacity_words": 8, "mesh": {"x": 2},
             "serves": ["mac2d"]},
            {"name": "VR", "read_pj": "653 fJ", "write_pj": "570 fJ", "capacity_words": 8, "mesh": {"x": 2},
             "serves": ["vec1d"]}],
            "compute_units": [
                {"name": "mac2d", "ops": {"mac": {"energy_pj": "17.16 pJ/op"}}},
                {"name": "vec1d", "ops": {op: {"energy_pj": "196.62 pJ/op", "per_cycle": "1/7 per cycle"}}}]}}


def write(tmp_path: Path, d: dict, name: str = "i.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("op", ["gelu", "silu", "rsqrt", "tanh", "my_op2", "_private"])
def test_any_element_wise_op_name(op, tmp_path):
    proc = cli("validate", write(tmp_path, tiny_ffn(op)))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("op, needles", [
    ("ge lu", ("workload.einsums[1].op", "String should match pattern")),
    ("1x", ("workload.einsums[1].op", "String should match pattern")),
    ("", ("workload.einsums[1].op", "at least 1 character")),
    ("g" * 65, ("workload.einsums[1].op", "at most 64 characters")),
])
def test_bad_op_names(op, needles, tmp_path):
    assert_input_error(cli("validate", write(tmp_path, tiny_ffn(op))), *needles)


def test_an_op_no_unit_runs_is_refused(tmp_path):
    d = tiny_ffn("gelu")
    d["architecture"]["compute_units"][1]["ops"] = {"silu": {"energy_pj": "1"}}
    assert_input_error(cli("validate", write(tmp_path, d)), "einsum ACT: no compute unit can run op 'gelu'")


@pytest.mark.parametrize("op", ["gelu", "mul", "exp"])
def test_only_mac_add_max_reduce(op, tmp_path):
    d = tiny_ffn(op, reduce_with=op)
    assert_input_error(cli("validate", write(tmp_path, d)),
                       f"einsum ACT: op {op} cannot reduce ranks ['F'] (only mac, add and max reduce)")


@pytest.mark.parametrize("op", ["add", "max"])
def test_known_reductions_still_reduce(op, tmp_path):
    assert cli("validate", write(tmp_path, tiny_ffn(op, reduce_with=op))).returncode == 0


def test_schema_instance_still_works():
    proc = cli("schema", "instance")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    op = schema["$defs"]["Einsum"]["properties"]["op"]
    assert op["type"] == "string" and op["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    assert "patternProperties" in schema["$defs"]["ComputeUnit"]["properties"]["ops"]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(custom_op_cases())
def test_custom_ops_model_vs_simulator(case):
    """Model == literal simulator with custom op names, and the same figures as with the known op names."""
    custom, known, mapping = case
    assert {e.op for e in custom.workload.einsums} - set(KNOWN_OPS)
    assert mismatches(custom, mapping) == []
    try:
        a = analyze(custom, mapping)
    except MappingError:
        with pytest.raises(MappingError):   # a mapping the rules refuse is refused whatever the op is called
            analyze(known, mapping)
        return
    b = analyze(known, mapping)
    assert (a.energy_fj, a.latency_cycles) == (b.energy_fj, b.latency_cycles)


def test_solver_equals_enumerator_on_a_custom_op_ffn():
    from mapsolve.model.load import validate
    inst = validate(Instance, tiny_ffn("gelu"), "tiny_ffn")
    inst = inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": "flat"})})
    for objective in ("energy", "latency"):
        res = solve(inst, objective, workers=1, seed=0, deterministic_time=20)
        assert res.status == "OPTIMAL", res.diagnosis
        ev = evaluate(inst, res.mapping)
        assert (ev.energy_fj, ev.latency_cycles) == (res.energy_fj, res.latency_cycles)
        assert res.objective == en.enumerate_optimum(inst, objective).objective


def test_the_shipped_edge_ffn_is_proven_optimal():
    inst = load_instance(FFN)
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=30)
    assert res.status == "OPTIMAL" and res.objective == res.best_bound
    assert res.energy_fj == 1_262_492_286_976
    units = {em.einsum: em.compute_unit for em in res.mapping.einsums}
    assert units == {"UP": "mac2d", "GELU": "vec1d", "DOWN": "mac2d"}
