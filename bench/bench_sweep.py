"""Sweep throughput: a 100-point sweep of small instances (tiny_matmul and tiny_chain, GLB capacity x a rank bound x
two objectives), run with 1 and with N local jobs; prints points per minute and the speedup in one run.

    python bench/bench_sweep.py [--jobs 1 2] [--det 2]

Not a test: wall-clock figures depend on the machine and its load. Ray is not supported yet (docs/sweeps.md)."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from mapsolve.sweep.run import run_sweep
from mapsolve.sweep.spec import Sweep

ROOT = Path(__file__).resolve().parent.parent


def sweeps(det: float) -> list[Sweep]:
    grid = {"architecture.levels.GLB.capacity_words": [16, 32, 64, 128, 256]}
    return [Sweep.model_validate({"base": str(ROOT / "instances" / "tiny_matmul.json"),
                                  "grid": {**grid, "workload.ranks.N": [2, 4, 8, 16, 32]},
                                  "objectives": ["energy", "latency"], "limits": {"deterministic_time": det}}),
            Sweep.model_validate({"base": str(ROOT / "instances" / "tiny_chain.json"),
                                  "grid": {**grid, "architecture.levels.PE.capacity_words": [2, 4, 8, 16, 32]},
                                  "objectives": ["energy", "latency"], "limits": {"deterministic_time": det}})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--det", type=float, default=2.0, help="deterministic seconds per point")
    args = ap.parse_args()
    rates = {}
    tables = {}
    for jobs in args.jobs:
        out = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
        t0 = time.perf_counter()
        rows = []
        for k, s in enumerate(sweeps(args.det)):
            rows += run_sweep(s, ROOT, out / str(k), jobs)[0]
        wall = time.perf_counter() - t0
        statuses = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        rates[jobs] = len(rows) / wall * 60
        tables[jobs] = [{k: v for k, v in r.items() if k not in ("solve_seconds", "deterministic_seconds")}
                        for r in rows]
        print(f"jobs {jobs}: {len(rows)} points in {wall:.1f} s = {rates[jobs]:.1f} points/min; statuses {statuses}")
        shutil.rmtree(out, ignore_errors=True)
    base = args.jobs[0]
    for jobs in args.jobs[1:]:
        print(f"jobs {jobs} / jobs {base}: {rates[jobs] / rates[base]:.2f}x points per minute; tables "
              f"{'identical' if tables[jobs] == tables[base] else 'DIFFER'}")


if __name__ == "__main__":
    main()
