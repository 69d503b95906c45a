"""Traces, solver log, model export and Ctrl-C, through the real command line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mapsolve.solver.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
CMD = [sys.executable, "-m", "mapsolve.cli.main"]


def mapsolve(*args, **kw):
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv"])
def test_trace_records(tmp_path, name):
    trace = tmp_path / name
    out = tmp_path / "out.json"
    r = mapsolve(ROOT / "instances/tiny_chain.json", "-q", "--trace", trace, "--json", out,
                 "--solver-log", tmp_path / "log.txt", "--export-model", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    recs = read_trace(trace)
    assert recs[0]["type"] == "header" and recs[0]["instance_hash"].startswith("sha256:")
    assert set(recs[0]["versions"]) == {"mapsolve", "ortools", "python"}
    size = recs[0]["model_size"]
    assert size["models"] >= 1     # segment models the search may build (counted, not built)
    final = recs[-1]
    assert final["type"] == "final" and final["status"] == "OPTIMAL" and final["proof"] is True
    # a segment reused from the cache or skipped (its floor above the cut-off) has no model of its own
    ends = [x for x in recs if x["type"] == "segment_end" and not x["cached"] and "skipped" not in x]
    assert all(set(x["presolve"]) == {"booleans", "integers", "fixed_booleans"} for x in ends)
    last = {x["segment"]: x for x in ends}      # a retried segment ends twice: the result keeps the last
    assert final["presolve"]["booleans"] == sum(x["presolve"]["booleans"] for x in last.values()) > 0
    result = json.loads(out.read_text())
    assert final["objective"] == result["objective"][0] == result["energy_fj"]
    totals = [x for x in recs if x["type"] == "incumbent" and x.get("scope") == "total"]
    assert totals and totals[-1]["objective"] == final["objective"]
    assert all(a["objective"] > b["objective"] for a, b in zip(totals, totals[1:]))  # strictly improving
    bounds = [x["best_bound"] for x in recs if x["type"] == "bound" and x.get("scope") == "total"]
    assert bounds == sorted(bounds) and bounds[-1] == final["best_bound"]  # a proof only tightens
    starts = [x for x in recs if x["type"] == "segment_start" and not x.get("cached")]
    assert len(starts) == final["model_size"]["models"] and all(s["variables"] > 0 for s in starts)
    # every model is built at most once per attempt, and only from the header's plans
    first = {}
    for x in starts:
        first.setdefault(x["segment"], x)
    assert len(first) <= size["models"]
    assert sum(x["variables"] for x in starts) == final["model_size"]["variables"]
    assert sum(x["constraints"] for x in starts) == final["model_size"]["constraints"]
    assert len(final["exported_models"]) == len(starts)
    for path in final["exported_models"]:
        assert Path(path).stat().st_size > 0
    assert "#### model" in (tmp_path / "log.txt").read_text()


def test_summary_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.csv"
    for t, obj in ((a, "energy"), (b, "latency")):
        assert mapsolve(ROOT / "instances/tiny_matmul.json", "-q", "-o", obj, "--trace", t).returncode == 0
    r = mapsolve("trace", "summary", a, b)
    assert r.returncode == 0 and r.stdout.count("OPTIMAL") == 2
    png = tmp_path / "p.png"
    r = mapsolve("trace", "plot", a, b, "-o", png)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_errors(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"type": "final"}\n')
    r = mapsolve("trace", "summary", bad)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a mapsolve trace" in r.stderr
    r = mapsolve(ROOT / "instances/tiny_chain.json", "--export-model", tmp_path / "nodir" / "m")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_ctrl_c_writes_best_mapping_and_partial_trace(tmp_path):
    trace, out = tmp_path / "t.jsonl", tmp_path / "out.json"
    proc = subprocess.Popen([*CMD, str(ROOT / "instances/tiny_attention.json"), "--time-limit", "120",
                             "--trace", str(trace), "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until a complete mapping exists (a total incumbent is traced)
        if trace.exists() and any(r.get("scope") == "total" and r["type"] == "incumbent" for r in read_trace(trace)):
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    recs = read_trace(trace)
    if recs[-1].get("status") == "OPTIMAL":
        pytest.skip("the search finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert recs[-1]["type"] == "final" and recs[-1]["status"] == "INTERRUPTED" and recs[-1]["proof"] is False
    doc = json.loads(out.read_text())
    assert doc["status"] == "INTERRUPTED" and doc["mapping"] is not None
    assert doc["best_bound"][0] <= doc["objective"][0]
    r = mapsolve("evaluate", ROOT / "instances/tiny_attention.json", out, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["energy_fj"] == doc["energy_fj"]


def test_killed_run_leaves_readable_trace(tmp_path):
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen([*CMD, str(ROOT / "instances/tiny_attention.json"), "-q", "--time-limit", "120",
                             "--trace", str(trace)])
    deadline = time.time() + 60
    while time.time() < deadline and not (trace.exists() and len(read_trace(trace)) > 3):
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    recs = read_trace(trace)
    assert recs[0]["type"] == "header" and len(recs) > 3
    r = mapsolve("trace", "summary", trace)
    assert r.returncode == 0 and "PARTIAL" in r.stdout


def test_verify_trace(tmp_path):
    trace = tmp_path / "v.jsonl"
    r = mapsolve("verify", ROOT / "instances/doc_example.json", "-q", "--trace", trace)
    assert r.returncode == 0, r.stderr
    recs = read_trace(trace)
    assert recs[0]["type"] == "header" and recs[0]["options"]["command"] == "verify"
    final = recs[-1]
    assert final["status"] == "OPTIMAL"
    assert final["verify"]["enumerator"]["objective"] == [final["objective"]]
    # the proof moment is when the cascade's bound met its incumbent, not the end of the enumerators
    from mapsolve.cli.trace_cmd import proof_time
    walls = {x["wall"] for x in recs if x.get("scope") == "total"}
    assert proof_time(recs) in walls and proof_time(recs) <= final["wall"]


def test_proof_time_is_when_bound_meets_incumbent():
    from mapsolve.cli.trace_cmd import proof_time
    recs = [{"type": "header"},
            {"type": "bound", "scope": "total", "wall": 0.1, "best_bound": 5},
            {"type": "incumbent", "scope": "total", "wall": 0.2, "objective": 9, "best_bound": 5},
            {"type": "bound", "scope": "total", "wall": 0.3, "best_bound": 7},
            {"type": "incumbent", "scope": "total", "wall": 0.4, "objective": 8, "best_bound": 7},
            {"type": "bound", "scope": "total", "wall": 0.5, "best_bound": 8},
            {"type": "final", "wall": 30.0, "proof": True, "objective": 8}]
    assert proof_time(recs) == 0.5
    recs[-1]["proof"] = False
    assert proof_time(recs) is None


# Every phase a Ctrl-C can land in (cli/solve_cmd.py `checkpoint`): before the handler, around the constructive
# incumbent, while segments are built and solved (the N-th start/end), during certification and while writing.
PHASES = ["load", "search", "constructive", "incumbent", "segment_start", "segment_start:3", "bound",
          "segment_end", "segment_end:4", "certificate", "close_trace", "write_json", "report", "done"]


@pytest.mark.parametrize("phase", PHASES)
def test_interrupt_at_every_phase(tmp_path, phase):
    """Exit 130, no traceback, and whatever was asked for is complete and valid: the JSON result (with a mapping the
    evaluator prices as it says) and a trace ending in its final record."""
    trace, out = tmp_path / "t.jsonl", tmp_path / "out.json"
    inst = ROOT / "instances/tiny_chain.json"
    r = subprocess.run([*CMD, str(inst), "-q", "--deterministic-time", "20", "--trace", str(trace),
                        "--json", str(out)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MAPSOLVE_INTERRUPT_AT": phase})
    assert r.returncode == 130, (phase, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "interrupted" in r.stderr, r.stderr
    if phase == "load":    # nothing started: nothing written
        assert not out.exists()
        return
    doc = json.loads(out.read_text())
    assert doc["mapping"] is not None and doc["status"] in ("INTERRUPTED", "OPTIMAL")
    assert doc["best_bound"][0] <= doc["objective"][0]
    ev = mapsolve("evaluate", inst, out, "--json")
    assert ev.returncode == 0 and json.loads(ev.stdout)["energy_fj"] == doc["energy_fj"]
    recs = read_trace(trace)
    assert recs[0]["type"] == "header" and recs[-1]["type"] == "final"
    assert recs[-1]["status"] == doc["status"] and recs[-1]["objective"] == doc["objective"][0]
    assert not list(tmp_path.glob(".*.tmp"))   # no half-written file left behind


def test_sigterm_mid_search_is_an_interrupt(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.Popen([*CMD, str(ROOT / "instances/tiny_attention.json"), "-q", "--deterministic-time", "600",
                             "--json", str(out), "--trace", str(tmp_path / "t.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:   # wait for a segment to start (the handler is installed by then)
        t = tmp_path / "t.jsonl"
        if t.exists() and any(x["type"] == "segment_start" for x in read_trace(t)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert json.loads(out.read_text())["mapping"] is not None
