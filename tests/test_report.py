"""The text report (cli/report.py): engineering units, tiles and occupancy per level, the legend, baselines; and
the model quantities it prints (tile shapes, per-group occupancy) against the evaluator's own."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from math import prod
from pathlib import Path

import pytest

import mapsolve
from mapsolve.cli.report import duration, energy, held, size
from mapsolve.model.evaluate import analyze, occupancy
from mapsolve.model.nest import build_nests
from mapsolve.model.variants import select
from mapsolve.solver.baseline import blocks

ROOT = Path(__file__).resolve().parents[1]
INST = ROOT / "instances"


def test_engineering_units():
    assert energy(3905264) == "3.905 nJ"
    assert energy(67 * 10**12) == "67.00 mJ"
    assert energy(2_475_507_481_837_568) == "2.476 J"
    assert energy(999) == "999 fJ"
    assert energy(12_345 * 10**15) == "12345 J"
    assert duration(19_096_046, Decimal("940")) == "20.31 ms"
    assert duration(16, Decimal("1000")) == "16.00 ns"
    assert duration(16, None) == "16 cycles"
    assert duration(3 * 10**9, Decimal("1")) == "3000 s"
    assert size(96 * 8) == "96 B" and size(2**20 * 8) == "1 MiB" and size(1536 * 8) == "1.5 KiB" and size(12) == "12 b"
    assert held(412 * 2**10 * 8, 2**20 * 8) == "412 KiB / 1 MiB (40.2 %)"
    assert held(8, None) == "1 B (unbounded)"


def evaluate_text(name: str, mapping: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "evaluate", str(INST / f"{name}.json"),
                           str(mapping)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_evaluate_shows_tiles_occupancy_and_the_legend_once():
    out = evaluate_text("tiny_block", INST / "tiny_block.mapping.json")
    assert out.splitlines()[0] == "energy   3.905 nJ"
    assert "[GLB: Q[E:2,P:4] 8 w, X[D:2,P:4] 8 w]  96 B / 512 B (18.8 %)" in out
    assert "  GLB        96 B / 512 B (18.8 %)" in out          # the occupancy section: the fullest group
    assert " ".join(out.split()).count("[L: -]: L keeps no tensor") == 1   # the legend, once (wrapped)
    assert "[PE: -]" in out
    assert "against  " not in out   # the shipped mapping itself: nothing to compare with


def test_evaluate_compares_with_the_shipped_mapping(tmp_path):
    res = mapsolve.solve(INST / "tiny_block.json", deterministic_time=1)
    alone = tmp_path / "alone.json"
    alone.write_text(res.baselines["unfused"].mapping.model_dump_json())
    out = evaluate_text("tiny_block", alone)
    assert "against  shipped mapping" in out and "this mapping has 2.486x more energy" in out


@pytest.mark.parametrize("name", ["tiny_block", "tiny_online", "tiny_nested", "tiny_int8", "llm_4k", "af_block"])
def test_printed_quantities_are_the_evaluators(name):
    """Tile shapes multiply to the tile; the per-group occupancy's maximum is what the capacity check uses."""
    inst = mapsolve.load(INST / f"{name}.json")
    mapping = mapsolve.load_mapping(INST / f"{name}.mapping.json")
    plain = select(inst, mapping.variant)
    nests = build_nests(plain, mapping)
    for n in nests:
        for t, kept in n.keep.items():
            for pos in kept:
                assert prod(n.tile_shape(pos, t).values()) == n.tile(pos, t)
    result = analyze(inst, mapping)
    groups = occupancy(plain, nests)
    for lv in plain.architecture.levels:
        assert max(g.bits[lv.name] for g in groups) == result.capacity_bits_required[lv.name]


def test_unfused_baseline_keeps_lock_step_runs_fused():
    inst = mapsolve.load(INST / "tiny_online.json")
    assert blocks(inst) == [("T",), ("S", "C")]   # S and C step together: their smallest group
    r = mapsolve.solve(INST / "tiny_online.json", deterministic_time=2)
    base = r.baselines["unfused"]
    assert base is not None and [g.einsums for g in base.mapping.groups] == [["S", "C"]]
    assert base.energy_fj >= r.energy_fj and mapsolve.evaluate(inst, base.mapping).energy_fj == base.energy_fj
