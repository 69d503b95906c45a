"""Sweep throughput: a 100-point sweep of small instances (tiny_matmul and tiny_chain, GLB capacity x a rank bound x
two objectives), run with 1 and with N local jobs; prints points per minute and the speedup in one run.

    python bench/bench_sweep.py [--jobs 1 2] [--det 2] [--ray local|ADDRESS ...]

Then the same sweep on Ray (`--ray local`: a Ray instance started for the run with the largest --jobs CPUs; or a
cluster's address), with Ray's per-point overhead against the local pool of as many jobs: (Ray's wall time − its
start-up − the pool's wall time) / points. Not a test: wall-clock figures depend on the machine and its load."""
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
    ap.add_argument("--ray", nargs="*", default=[], help="Ray addresses to run on as well (local: start one)")
    args = ap.parse_args()
    rates = {}
    tables = {}
    walls = {}
    runs = [(f"jobs {j}", j, None) for j in args.jobs] + [(f"ray {a}", max(args.jobs), a) for a in args.ray]
    for name, jobs, address in runs:
        out = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
        t0 = time.perf_counter()
        rows = []
        for k, s in enumerate(sweeps(args.det)):   # one Ray start-up per sweep, as two `mapsolve sweep` runs
            rows += run_sweep(s, ROOT, out / str(k), jobs, ray_address=address)[0]
        wall = time.perf_counter() - t0
        statuses = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        rates[name] = len(rows) / wall * 60
        walls[name] = wall
        tables[name] = [{k: v for k, v in r.items() if k not in ("solve_seconds", "deterministic_seconds")}
                        for r in rows]
        print(f"{name}: {len(rows)} points in {wall:.1f} s = {rates[name]:.1f} points/min; statuses {statuses}",
              flush=True)
        shutil.rmtree(out, ignore_errors=True)
    base = runs[0][0]
    for name, jobs, address in runs[1:]:
        print(f"{name} / {base}: {rates[name] / rates[base]:.2f}x points per minute; tables "
              f"{'identical' if tables[name] == tables[base] else 'DIFFER'}")
        if address is not None:
            startup = ray_startup(address, jobs)
            pool = walls[f"jobs {jobs}"] if f"jobs {jobs}" in walls else None
            n = len(tables[name])
            if pool is not None:
                print(f"{name}: start-up and shut-down {startup:.1f} s per sweep (x2); overhead per point against "
                      f"{jobs} local jobs {(walls[name] - 2 * startup - pool) / n * 1000:.0f} ms")


def ray_startup(address: str, jobs: int) -> float:
    """Seconds to connect to (or start) Ray and shut the connection down, with no task."""
    from mapsolve.sweep.ray_run import connect
    t0 = time.perf_counter()
    connect(address, jobs).shutdown()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
