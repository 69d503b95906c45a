"""Sweeps (`mapsolve sweep`, the mapsolve.sweep package): points and dotted paths, the table against independent
solves, resuming, and the same table whatever the number of jobs."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mapsolve.model import load_instance
from mapsolve.solver import solve
from mapsolve.sweep.points import PointError, expand, instance_of, set_path
from mapsolve.sweep.run import TIME_COLUMNS
from mapsolve.sweep.spec import Sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEP = f"""base: {ROOT / 'instances' / 'tiny_matmul.json'}
grid:
  architecture.levels.GLB.capacity_words: [16, 256]
  workload.ranks.N: [4, 8]
list:
  - {{}}
objectives: [energy, latency]
limits:
  deterministic_time: 5
"""


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "sweep", *map(str, args), "--quiet"],
                          capture_output=True, text=True)


def _table(folder: Path) -> list[dict]:
    with (folder / "results.csv").open() as fh:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(fh)]


def test_grid_and_list_expand_to_every_combination_and_objective():
    s = Sweep.model_validate({"base": "x.json", "grid": {"a": [1, 2], "b": [3, 4, 5]}, "list": [{"c": 1}, {"c": 2}],
                              "objectives": ["energy", "latency"]})
    pts = expand(s)
    assert len(pts) == 2 * 3 * 2 * 2
    assert len({json.dumps(p, sort_keys=True) for p in pts}) == len(pts)


def test_dotted_paths_address_levels_by_name():
    doc = {"architecture": {"levels": [{"name": "DRAM"}, {"name": "GLB", "capacity_words": 8}]}}
    set_path(doc, "architecture.levels.GLB.capacity_words", 64)
    assert doc["architecture"]["levels"][1]["capacity_words"] == 64
    set_path(doc, "architecture.levels.0.read_pj", 5)
    assert doc["architecture"]["levels"][0]["read_pj"] == 5
    with pytest.raises(PointError, match="no element named 'L9'"):
        set_path(doc, "architecture.levels.L9.capacity_words", 1)
    with pytest.raises(PointError, match="does not exist"):
        set_path(doc, "architecture.nothing.x", 1)


def test_an_invalid_value_is_the_loaders_message(tmp_path):
    s = Sweep.model_validate({"base": str(ROOT / "instances" / "tiny_matmul.json")})
    with pytest.raises(PointError, match="capacity_words"):
        instance_of(s, tmp_path, {"architecture.levels.GLB.capacity_words": "lots"})
    inst = instance_of(s, tmp_path, {"architecture.levels.GLB.capacity_words": 16})
    assert next(lv for lv in inst.architecture.levels if lv.name == "GLB").capacity_words == 16


def test_sweep_table_equals_independent_solves_and_resumes(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    cp = _run(spec, "-o", out, "--jobs", "1", "--no-plot")
    assert cp.returncode == 0, cp.stderr
    rows = _table(out)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"OPTIMAL"}
    base = load_instance(ROOT / "instances" / "tiny_matmul.json")
    for r in rows[:4]:   # independent solves of the same points
        doc = base.model_dump(mode="json")
        set_path(doc, "architecture.levels.GLB.capacity_words", int(r["param:architecture.levels.GLB.capacity_words"]))
        set_path(doc, "workload.ranks.N", int(r["param:workload.ranks.N"]))
        inst = type(base).model_validate(doc)
        res = solve(inst, r["objective"], workers=1, seed=0, deterministic_time=5)
        assert (str(res.energy_fj), str(res.latency_cycles)) == (r["energy_fj"], r["latency_cycles"])
    # the points differ: a smaller N is cheaper
    by = {(r["param:architecture.levels.GLB.capacity_words"], r["param:workload.ranks.N"], r["objective"]):
          int(r["energy_fj"]) for r in rows}
    assert by[("256", "4", "energy")] < by[("256", "8", "energy")]
    # killed after some points: the rest are solved on restart, the table is the same
    files = sorted((out / "points").glob("*.json"))
    assert len(files) == 8
    for f in files[:3]:
        f.unlink()
    cp = _run(spec, "-o", out, "--jobs", "1", "--no-plot")
    assert cp.returncode == 0, cp.stderr
    assert "5 finished before, skipped" in cp.stdout
    assert _table(out) == rows
    # two jobs at once: the same table
    cp = _run(spec, "-o", tmp_path / "two", "--jobs", "2")
    assert cp.returncode == 0, cp.stderr
    assert _table(tmp_path / "two") == rows
    assert (tmp_path / "two" / "pareto_scatter.png").stat().st_size > 0


def test_a_bad_point_is_a_row_and_the_sweep_goes_on(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {ROOT / 'instances' / 'tiny_matmul.json'}\ngrid:\n  workload.ranks.N: [8, -3]\n"
                    f"limits: {{deterministic_time: 5}}\n")
    cp = _run(spec, "-o", tmp_path / "o", "--no-plot")
    assert cp.returncode == 0, cp.stderr
    rows = _table(tmp_path / "o")
    assert [r["status"] for r in rows] == ["OPTIMAL", "INVALID"]
    assert "workload.ranks" in rows[1]["error"]


@pytest.mark.parametrize("text, names", [("base: a.json\nbogus: 1\n", "bogus"),
                                         ("grid: {a: [1]}\n", "exactly one of base"),
                                         ("base: [unclosed\n", "not valid YAML"),
                                         ("base: a.json\nobjectives: [speed]\n", "speed")])
def test_bad_sweep_files_are_refused_with_one_line(tmp_path, text, names):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    cp = _run(spec, "-o", tmp_path / "o")
    assert cp.returncode == 2 and names in cp.stderr and "Traceback" not in cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1
