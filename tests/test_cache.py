"""The segment cache (solver/cache.py, `mapsolve solve --cache DIR`): a re-solve reuses every proof and gives the
same answer; a changed instance reuses only what its change cannot touch; a damaged entry is solved again."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mapsolve.model import evaluate, load_instance
from mapsolve.solver import solve
from mapsolve.solver.cache import SegmentCache, segment_key
from mapsolve.solver.search import segment_plans

ROOT = Path(__file__).resolve().parent.parent
DET = 20


def _solve(inst, cache=None, objective="energy"):
    return solve(inst, objective, workers=1, seed=0, deterministic_time=DET, cache=cache)


def test_resolve_reuses_every_proof(tmp_path):
    inst = load_instance(ROOT / "instances" / "tiny_chain.json")
    first = _solve(inst, SegmentCache(tmp_path))
    again = _solve(inst, SegmentCache(tmp_path))
    assert first.status == again.status == "OPTIMAL"
    assert again.objective == first.objective and again.best_bound == first.best_bound
    assert all(s.source in ("cache", "floor") for s in again.segments
               if s.status in ("OPTIMAL", "INFEASIBLE", "PRUNED"))
    assert sum(s.deterministic_time for s in again.segments) == 0
    assert evaluate(inst, again.mapping).energy_fj == again.energy_fj


def test_changed_instance_gets_its_own_answer(tmp_path):
    """A smaller global buffer changes every fused segment's model: their keys change, and the answer equals a
    solve without any cache."""
    inst = load_instance(ROOT / "instances" / "tiny_chain.json")
    cache = SegmentCache(tmp_path)
    _solve(inst, cache)
    levels = [lv.model_copy(update={"capacity_words": max(lv.capacity_words // 4, 1)})
              if lv.capacity_words and i == 1 else lv for i, lv in enumerate(inst.architecture.levels)]
    small = inst.model_copy(update={"architecture": inst.architecture.model_copy(update={"levels": levels})})
    cached, fresh = _solve(small, cache), _solve(small)
    assert cached.status == fresh.status == "OPTIMAL" and cached.objective == fresh.objective
    plans = segment_plans(inst)
    assert all(segment_key(inst, p, ["energy"], 1) != segment_key(small, p, ["energy"], 1) for p in plans)


def test_damaged_entry_is_solved_again(tmp_path):
    inst = load_instance(ROOT / "instances" / "tiny_chain.json")
    _solve(inst, SegmentCache(tmp_path))
    for f in tmp_path.rglob("*.json"):
        f.write_text("{not json")
    again = _solve(inst, SegmentCache(tmp_path))
    assert again.status == "OPTIMAL" and not any(s.source == "cache" for s in again.segments)


def test_variants_solve_shared_segments_once():
    """tiny_variants' cascades share Einsums: a segment proven for one variant is not solved again for another."""
    inst = load_instance(ROOT / "instances" / "tiny_variants.json")
    res = _solve(inst)
    assert res.status == "OPTIMAL"
    assert any(s.source == "cache" for s in res.segments)


def test_cli_cache_line(tmp_path):
    cmd = [sys.executable, "-m", "mapsolve.cli.main", str(ROOT / "instances" / "tiny_matmul.json"),
           "--deterministic-time", "10", "--cache", str(tmp_path / "c"), "--json", str(tmp_path / "out.json")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "reused from" in second.stdout and "reused from" not in first.stdout
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "OPTIMAL"
    bad = subprocess.run([*cmd[:-4], "--cache", str(tmp_path / "out.json")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "--cache" in bad.stderr and "Traceback" not in bad.stderr


def test_segments_equal_but_for_names_share_a_proof():
    """tiny_block's Q, K and V projections are one segment model up to names: K's and V's are not solved again, and
    the renamed mappings are priced by the model like any other (the whole answer is re-evaluated)."""
    inst = load_instance(ROOT / "instances" / "tiny_block.json")
    res = _solve(inst)
    hits = {s.names for s in res.segments if s.source == "cache"}
    assert {("KP",), ("VP",)} <= hits, hits
    assert res.status == "OPTIMAL" and evaluate(inst, res.mapping).energy_fj == res.energy_fj


def test_cli_reports_in_memory_reuse():
    """Regression: without --cache, the summary's cache line crashed (no folder) when tiny_block reused a proof."""
    r = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", str(ROOT / "instances" / "tiny_block.json"),
                        "--deterministic-time", str(DET)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "reused from memory" in r.stdout
