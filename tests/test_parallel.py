"""Segments solved in parallel processes (solver/parallel.py, `--workers N`): the answer is the same whatever the
number of processes (cut-offs and budgets are fixed per wave), the same optimum as one process, interrupts keep a
valid mapping and a valid bound, and the command line's trace still sees every model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mapsolve.model import evaluate, load_instance
from mapsolve.solver import solve
from mapsolve.solver import parallel
from mapsolve.solver.search import Control
from mapsolve.solver.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
DET = 20

pytestmark = pytest.mark.skipif(not parallel.available(), reason="no fork server on this platform")


def _answer(res) -> tuple:
    return (res.status, res.objective, res.best_bound, res.variant,
            res.mapping.model_dump_json() if res.mapping is not None else None)


@pytest.mark.parametrize("name,objective", [("tiny_block", "energy"), ("tiny_attention", "latency"),
                                            ("tiny_variants", "energy"), ("tiny_chain", "energy,latency")])
def test_the_answer_does_not_depend_on_the_process_count(name, objective):
    inst = load_instance(ROOT / "instances" / f"{name}.json")
    two = solve(inst, objective, workers=2, seed=0, deterministic_time=DET, certify="cheap")
    three = solve(inst, objective, workers=3, seed=0, deterministic_time=DET, certify="cheap")
    assert _answer(two) == _answer(three)
    one = solve(inst, objective, workers=1, seed=0, deterministic_time=DET, certify="cheap")
    assert one.status == two.status == "OPTIMAL"
    assert one.objective == two.objective and one.best_bound == two.best_bound
    ev = evaluate(inst, two.mapping)
    assert ev.energy_fj == two.energy_fj and ev.latency_cycles == two.latency_cycles


def test_a_tight_budget_gives_the_same_answer_too():
    """Unproven segments (a deterministic budget far too small to prove the cascade) are where completion order
    could leak into the answer: it must not."""
    inst = load_instance(ROOT / "instances" / "llm_4k.json")
    runs = [solve(inst, "energy", workers=w, seed=0, deterministic_time=0.6, certify="cheap") for w in (2, 3)]
    assert _answer(runs[0]) == _answer(runs[1])
    res = runs[0]
    assert res.status == "FEASIBLE" and res.mapping is not None and res.best_bound[0] < res.objective[0]


def test_an_interrupt_mid_wave_keeps_a_valid_mapping_and_bound():
    inst = load_instance(ROOT / "instances" / "tiny_attention.json")
    control = Control()
    ends = []

    def events(record):   # the first fused model reported by a worker: its wave is running
        if record["type"] == "segment_start" and "+" in record["segment"] and "variables" in record:
            ends.append(record)
            control.interrupt()
    res = solve(inst, "energy", workers=2, seed=0, deterministic_time=600, control=control, events=events,
                certify="cheap")
    assert ends and res.status == "INTERRUPTED" and res.mapping is not None
    assert any(s.why == "interrupted" for s in res.segments)   # killed in its worker, its floor kept as bound
    assert res.best_bound[0] <= res.objective[0]
    assert evaluate(inst, res.mapping).energy_fj == res.energy_fj
    # the killed pool is replaced: the next search runs and proves
    again = solve(inst, "energy", workers=2, seed=0, deterministic_time=DET, certify="cheap")
    assert again.status == "OPTIMAL" and again.objective[0] <= res.objective[0]


def test_a_coarser_energy_unit_restarts_in_parallel_too():
    """UnitTooFine raised in a worker reaches the search, which restarts in a coarser unit (as in one process)."""
    from test_energy_unit import huge_matmul   # noqa: PLC0415  the instance whose fJ overflow
    inst = huge_matmul()
    one = solve(inst, "energy", workers=1, seed=0, deterministic_time=DET)
    two = solve(inst, "energy", workers=2, seed=0, deterministic_time=DET)
    assert two.energy_unit_fj == one.energy_unit_fj > 1
    assert two.status == one.status and two.objective == one.objective


def test_cli_workers_trace_sees_every_model(tmp_path):
    trace, out = tmp_path / "t.jsonl", tmp_path / "out.json"
    r = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", str(ROOT / "instances/tiny_chain.json"), "-q",
                        "--workers", "2", "--deterministic-time", "20", "--trace", str(trace), "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    recs = read_trace(trace)
    final = recs[-1]
    assert recs[0]["options"]["workers"] == 2 and final["status"] == "OPTIMAL"
    starts = [x for x in recs if x["type"] == "segment_start" and not x.get("cached")]
    assert len(starts) == final["model_size"]["models"] > 0 and all(s["variables"] > 0 for s in starts)
    assert sum(x["variables"] for x in starts) == final["model_size"]["variables"]
    assert json.loads(out.read_text())["objective"][0] == final["objective"]


def test_waves_keep_the_search_order():
    keys = [(0, 1, None, ()), (1, 2, None, ()), (0, 2, 1, ()), (1, 3, 1, ()), (0, 3, 1, ()), (0, 3, 2, ())]
    assert list(parallel.waves(keys)) == [keys[:2], keys[2:3], keys[3:]]
    many = [(i, i + 1, None, ()) for i in range(parallel.BATCH + 3)]
    assert [len(w) for w in parallel.waves(many)] == [parallel.BATCH, 3]


def test_a_late_event_of_an_earlier_batch_is_dropped():
    """A worker's queue feeder may deliver a solve's last events after its result, so the next batch (or the next
    search of this process) sees them: it must drop them, not fail (KeyError, seen on an imported 8-Einsum block)
    nor credit them to its own plan of the same number. Late events of a batch that no longer exists, one per plan
    number the next search uses, are put on the pool's queue first."""
    inst = load_instance(ROOT / "instances" / "tiny_block.json")
    want = solve(inst, "energy", workers=2, seed=0, deterministic_time=DET, certify="cheap")
    stale = parallel.next_batch()
    for k in range(64):
        parallel.pool(2).events.put(((stale, k), "solution", (1, 0, 0.0, 0.0)))
        parallel.pool(2).events.put(((stale, k), "model", (None,)))
    got = solve(inst, "energy", workers=2, seed=0, deterministic_time=DET, certify="cheap")
    assert _answer(got) == _answer(want) and got.status == "OPTIMAL"
