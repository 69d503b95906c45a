"""The Python API (docs/api.md): the page's code blocks run as written, and the typed results hold what they
promise (the energy is the evaluator's, bad input raises InputError, a deterministic budget gives a result)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mapsolve

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "instances" / "tiny_block.json"


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_docs_api_example_runs(monkeypatch, capsys):
    blocks = code_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 3
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    for block in blocks:   # one namespace, in order, as a reader would paste them
        exec(compile(block, "docs/api.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "OPTIMAL 3905264 16" in out   # the figures the page's comment promises
    assert "time_limit must be a positive number" in out


def test_solution_is_the_evaluators():
    r = mapsolve.solve(TINY, objective="latency", deterministic_time=2)
    assert r.status == "OPTIMAL" and r.mapping is not None
    ev = mapsolve.evaluate(TINY, r.mapping)
    assert (ev.energy_fj, ev.latency_cycles) == (r.energy_fj, r.latency_cycles)
    assert r.objective_values == [r.latency_cycles] == r.bound
    assert ev.breakdown == r.breakdown
    unfused = r.baselines["unfused"]
    assert unfused is not None and unfused.proven and not unfused.mapping.groups
    assert unfused.latency_cycles >= r.latency_cycles   # the optimum over all mappings beats the unfused one
    assert mapsolve.evaluate(TINY, unfused.mapping).latency_cycles == unfused.latency_cycles
    assert r.baselines["shipped"].source.endswith("tiny_block.mapping.json")
    assert r.to_json()["energy_fj"] == r.energy_fj


def test_deterministic_time_gives_the_same_result_twice():
    a = mapsolve.solve(TINY, deterministic_time=0.5)
    b = mapsolve.solve(mapsolve.load(TINY), deterministic_time=0.5)
    assert a.mapping is not None and a.status in ("OPTIMAL", "FEASIBLE")
    assert (a.status, a.objective_values, a.bound) == (b.status, b.objective_values, b.bound)
    assert b.baselines["shipped"] is None   # given as an Instance, not a path: no file beside it


@pytest.mark.parametrize("kwargs, says", [
    ({"objective": "speed"}, "objective must be one of"),
    ({"time_limit": float("nan")}, "time_limit must be a positive number"),
    ({"deterministic_time": 0}, "deterministic_time must be a positive number"),
    ({"seed": -1}, "seed must be between"),
    ({"workers": 0}, "workers must be between 1 and 64"),
    ({"certify": "maybe"}, "certify must be auto, full or cheap"),
    ({"nesting": "deep"}, "nesting must be tree or flat"),
    ({"max_latency": 0}, "max_latency must be a positive integer"),
])
def test_bad_options_raise_input_error(kwargs, says):
    with pytest.raises(mapsolve.InputError, match=re.escape(says)):
        mapsolve.solve(TINY, **kwargs)


def test_bad_input_raises_input_error(tmp_path):
    with pytest.raises(mapsolve.InputError, match="no such file"):
        mapsolve.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(mapsolve.InputError, match="not valid JSON"):
        mapsolve.solve(tmp_path / "broken.json")
    doc = json.loads(TINY.read_text())
    doc["architecture"]["levels"][1]["capacity_words"] = True
    with pytest.raises(mapsolve.InputError, match="capacity_words"):
        mapsolve.load(doc)
    with pytest.raises(mapsolve.InputError):
        mapsolve.load(42)
    with pytest.raises(mapsolve.InputError, match="mapspace too large"):
        mapsolve.enumerate(ROOT / "instances" / "llm_4k.json", max_candidates=1000)


def test_infeasible_is_a_result_not_an_exception():
    r = mapsolve.solve(TINY, max_latency=1, deterministic_time=2)   # no mapping runs in one cycle
    assert r.status == "INFEASIBLE" and r.mapping is None and "latency <= 1" in r.diagnosis
    assert r.energy_fj is None and r.baselines["unfused"] is None


def test_import_is_cheap_and_the_entry_point_resolves():
    """`import mapsolve` does not load ortools; mapsolve.model and the CLI's entry point import beside it."""
    code = ("import sys, mapsolve, mapsolve.model; assert 'ortools' not in sys.modules; "
            "from mapsolve.cli.main import run; print(mapsolve.__version__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() != "0+unknown"


def test_version_flag():
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(rf"mapsolve {re.escape(mapsolve.__version__)} \(ortools 9\.15\.\d+, Python [\d.]+\)\n",
                        proc.stdout)
