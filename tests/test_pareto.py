"""Exact energy–latency fronts (solver/pareto.py): the solver's complete front equals the enumerator's point for
point on generated instances; caps and EDP read off it equal brute force over the enumerator's front; every point
is a valid mapping the model prices exactly; partial fronts are never claimed complete."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mapsolve.model import evaluate, load_instance
from mapsolve.solver import solve
from mapsolve.solver.enum_front import enumerate_front
from mapsolve.solver.enumerate import EnumerationError
from mapsolve.solver.pareto import non_dominated, pareto_front
from test_enumerator import small_fused_instances, small_instances

ROOT = Path(__file__).resolve().parent.parent
SEEN = {"fronts": 0, "multi": 0}   # generated fronts with more than one point (the cases that test anything new)


def _enum_front(inst, prune=True):
    try:
        return [(e, l) for e, l, _ in enumerate_front(inst, prune=prune, max_candidates=None)]
    except EnumerationError as exc:
        assert "infeasible" in str(exc), exc
        return []


def _check_points(inst, front):
    for p in front.points:
        ev = evaluate(inst, p.mapping)
        assert (ev.energy_fj, ev.latency_cycles) == (p.energy_fj, p.latency_cycles)


def test_non_dominated_keeps_exactly_the_minimal_points():
    pts = [(5, 1), (3, 2), (3, 3), (4, 2), (1, 9), (1, 9), (2, 9), (6, 0)]
    assert non_dominated(pts) == [(6, 0), (5, 1), (3, 2), (1, 9)]


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_instances())
def test_front_equals_enumerated_front(inst):
    """Complete within the limit, the solver's front is the enumerator's (pruned and brute force), point for point,
    and every point is proven non-dominated."""
    pruned = _enum_front(inst, True)
    assert _enum_front(inst, False) == pruned
    front = pareto_front(inst, deterministic_time=60, seed=0)
    assert front.complete
    assert [(p.energy_fj, p.latency_cycles) for p in front.points] == pruned
    assert all(p.proven for p in front.points)
    SEEN["fronts"] += 1
    SEEN["multi"] += len(pruned) > 1
    _check_points(inst, front)
    if pruned:   # the front's ends are the lexicographic optima
        assert list(solve(inst, "energy,latency", deterministic_time=30, workers=1, seed=0).objective) == \
            list(pruned[-1])
        assert list(solve(inst, "latency,energy", deterministic_time=30, workers=1, seed=0).objective) == \
            list(pruned[0][::-1])


@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_fused_instances())
def test_front_of_fusable_instances_equals_enumerated_front(inst):
    pruned = _enum_front(inst, True)
    front = pareto_front(inst, deterministic_time=60, seed=0)
    assert front.complete
    assert [(p.energy_fj, p.latency_cycles) for p in front.points] == pruned
    _check_points(inst, front)
    SEEN["fronts"] += 1
    SEEN["multi"] += len(pruned) > 1


def test_generated_fronts_include_real_trade_offs():
    """Run after the two property tests: at the counts above, 6 of the 85 generated fronts have more than one point."""
    if SEEN["fronts"] < 80:
        pytest.skip("run with the property tests above")
    assert SEEN["multi"] >= 5, SEEN


@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_fused_instances())
def test_caps_and_edp_equal_brute_force_over_the_front(inst):
    """min energy with latency <= C, min latency with energy <= E and min energy x latency, proven, equal the
    best over the enumerated front (C and E between the front's ends, so some points are cut off)."""
    pts = _enum_front(inst, True)
    if not pts:
        return
    lat_cap = (pts[0][1] + pts[-1][1]) // 2
    en_cap = (pts[0][0] + pts[-1][0]) // 2
    r = solve(inst, "energy", deterministic_time=60, workers=1, seed=0, caps={"latency": lat_cap})
    assert r.status == "OPTIMAL" and r.latency_cycles <= lat_cap
    assert r.energy_fj == min(e for e, l in pts if l <= lat_cap)
    r = solve(inst, "latency", deterministic_time=60, workers=1, seed=0, caps={"energy": en_cap})
    want = [l for e, l in pts if e <= en_cap]
    if want:
        assert r.status == "OPTIMAL" and r.energy_fj <= en_cap and r.latency_cycles == min(want)
    else:
        assert r.status == "INFEASIBLE"
    r = solve(inst, "edp", deterministic_time=60, workers=1, seed=0)
    assert r.status == "OPTIMAL" and r.objective == [min(e * l for e, l in pts)]
    assert r.objective == [r.energy_fj * r.latency_cycles]


def _qk_mx():
    """tiny_attention's first two Einsums (QK, MX): a front of three points in under 2 s."""
    inst = load_instance(ROOT / "instances" / "tiny_attention.json")
    return inst.model_copy(update={"workload": inst.workload.model_copy(
        update={"einsums": inst.workload.einsums[:2]})})


def test_partial_front_is_not_claimed_complete():
    """One ε-step per segment cannot finish QK+MX's front: the points are valid, the front says it is partial."""
    inst = _qk_mx()
    full = pareto_front(inst, deterministic_time=60, seed=0)
    part = pareto_front(inst, deterministic_time=60, seed=0, max_steps=1)
    _check_points(inst, part)
    assert len(full.points) > 1 and full.complete
    assert not part.complete and part.unfinished
    # every partial point is weakly dominated by a point of the complete front
    for p in part.points:
        assert any(q.energy_fj <= p.energy_fj and q.latency_cycles <= p.latency_cycles for q in full.points)
    # and the partial front's lower points lie below the complete front
    for q in full.points:
        assert any(a <= q.energy and b <= q.latency_cycles for a, b in part.lower)


def test_a_few_steps_spread_over_the_front():
    """Two ε-solves per segment give both ends of the complete front, three the middle point too (solver/pareto.py
    spread_front), each proven; not yet complete, with lower points below the complete front; enough steps
    close every gap and give the complete front."""
    inst = _qk_mx()
    full = [(p.energy_fj, p.latency_cycles) for p in pareto_front(inst, deterministic_time=60, seed=0).points]
    assert len(full) == 3
    for k, want in ((2, [full[0], full[-1]]), (3, full)):
        part = pareto_front(inst, deterministic_time=60, seed=0, max_steps=k)
        _check_points(inst, part)
        assert [(p.energy_fj, p.latency_cycles) for p in part.points] == want and all(p.proven for p in part.points)
        assert not part.complete
        assert all(any(a <= e and b <= l for a, b in part.lower) for e, l in full)
    many = pareto_front(inst, deterministic_time=60, seed=0, max_steps=12)
    assert many.complete and [(p.energy_fj, p.latency_cycles) for p in many.points] == full


@settings(max_examples=15, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(small_fused_instances())
def test_spread_steps_are_sound_on_generated_instances(inst):
    """Whatever the order of its solves, a spread front claims nothing false: its proven points are points of the
    enumerated front, its lower points lie below every point of it, and complete means equal."""
    pts = _enum_front(inst, True)
    for k in (2, 4, 30):
        front = pareto_front(inst, deterministic_time=60, seed=0, max_steps=k)
        _check_points(inst, front)
        got = [(p.energy_fj, p.latency_cycles) for p in front.points]
        assert all(q in pts for q, p in zip(got, front.points) if p.proven)
        assert all(any(a <= e and b <= l for a, b in front.lower) for e, l in pts)
        if front.complete:
            assert got == pts
        assert front.complete or k < 30   # these fronts have a handful of points: 30 steps close every gap


def test_pareto_command_writes_the_front(tmp_path):
    out, png, src = tmp_path / "front.json", tmp_path / "front.png", tmp_path / "qk_mx.json"
    src.write_text(_qk_mx().model_dump_json())
    cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "pareto", str(src), "--deterministic-time", "60",
                         "--json", str(out), "--plot", str(png)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and len(doc["points"]) == 3 and png.stat().st_size > 0
    lat = [p["latency_cycles"] for p in doc["points"]]
    en = [p["energy_fj"] for p in doc["points"]]
    assert lat == sorted(lat) and en == sorted(en, reverse=True)
    assert "complete" in cp.stdout


def test_verify_pareto_agrees_on_a_small_instance():
    cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "verify", str(ROOT / "instances" /
                        "tiny_matmul.json"), "--pareto", "--brute-max", "0"], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.splitlines()[-1].startswith("verified: the fronts are equal")


@pytest.mark.parametrize("flag", ["--max-latency", "--max-energy"])
def test_caps_refuse_nonsense(flag):
    cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", str(ROOT / "instances" / "tiny_matmul.json"),
                         flag, "-5"], capture_output=True, text=True)
    assert cp.returncode == 2 and flag in cp.stderr and "Traceback" not in cp.stderr


def test_interrupted_front_exits_130_with_its_json(tmp_path):
    """Ctrl-C (the testing hook sends SIGINT as the front starts): exit 130, one line, the JSON says incomplete."""
    import os
    out = tmp_path / "f.json"
    cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "pareto", str(ROOT / "instances" /
                        "tiny_attention.json"), "--json", str(out), "-q"], capture_output=True, text=True,
                        env={**os.environ, "MAPSOLVE_INTERRUPT_AT": "pareto"})
    assert cp.returncode == 130, cp.stderr
    assert "Traceback" not in cp.stderr and len(cp.stderr.strip().splitlines()) == 1
    assert json.loads(out.read_text())["complete"] is False
