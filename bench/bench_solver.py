"""Benchmark of the CP-SAT mapper (not a test): time to proven optimum, model building vs search, scaling.

    python bench/bench_solver.py            # all cases, 120 s limit each
    python bench/bench_solver.py --quick    # llm_4k and af_block energy, tree and flat nesting
    python bench/bench_solver.py --quick --workers 1 2   # and with 2 processes solving segments (solver/parallel.py)

Prints, per case: status, optimum, bound, build and search seconds, wall seconds (including certification),
CP-SAT's deterministic seconds (load-independent: compare these across runs), number of segment models, and the ratio of
the optimum to the hand-written baseline mapping's cost (af_block: to FFM's optimum, 31.82 mJ). Each case runs with
nested fusion (solver.nesting "tree", the default) and, for the cost of nesting, flat; "tree/flat" is the ratio of
their deterministic seconds. Scaling: prefixes of the GPT-3 block with 1..12
Einsums. The FFM column is the wall time measured for accelforge's FFM on this kind of machine and recorded in
../shared/notes/peers.md (3-Einsum attention cascade: 10.0-10.6 s; 8-Einsum block: 37.8 s); it is quoted, not
rerun here, and FFM's architecture there is smaller than ours, so the ratio is indicative only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mapsolve.model import evaluate, load_instance, load_mapping
from mapsolve.solver import solve

ROOT = Path(__file__).resolve().parent.parent
# peers.md: FFM on one head's QK -> softmax -> AV (softmax as one Einsum) and on an 8-Einsum block
FFM_SECONDS = {"llm_4k": 10.3, "gpt3_block": 37.8, "af_block": 37.8}
FFM_ENERGY_FJ = {"af_block": 31_820_000_000_000}   # peers.md: FFM's optimum of the block on dram_glb_pe, 31.82 mJ
CERTIFY = ["auto"]
WORKERS = [1]


def run(name: str, inst, objective: str, limit: float, baseline=None, nesting: str = "tree", workers: int = 1) -> dict:
    inst = inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": nesting})})
    t0 = time.perf_counter()
    res = solve(inst, objective=objective, time_limit=limit, workers=workers, seed=0, certify=CERTIFY[0])
    wall = time.perf_counter() - t0
    comp = objective.split(",")[0]
    ratio = ""
    if baseline is not None and res.objective:
        base = baseline.energy_fj if comp == "energy" else baseline.latency_cycles
        ratio = f"{res.objective[0] / base:.3f}"
    elif name in FFM_ENERGY_FJ and comp == "energy" and res.objective:
        ratio = f"{res.objective[0] / FFM_ENERGY_FJ[name]:.4f}"
    n = len(inst.workload.einsums)
    ffm = f"{FFM_SECONDS[name] / wall:.1f}x" if name in FFM_SECONDS and res.status == "OPTIMAL" else ""
    det = sum(s.deterministic_time for s in res.segments)
    print(f"{name:<22} {objective:<15} {nesting:<5} {workers:>2} {n:>3} {res.status:<9} {res.objective[0] if res.objective else '-':>20} "
          f"{res.best_bound[0] if res.best_bound else '-':>20} {res.build_seconds:7.2f} {res.solve_seconds:8.2f} "
          f"{wall:8.2f} {det:7.2f} {len(res.segments):>5} {ratio:>8} "
          f"{ffm:>8}", flush=True)
    return {"status": res.status, "wall": wall, "det": det}


def both(name: str, inst, objective: str, limit: float, baseline=None) -> None:
    """Tree then flat nesting, and the ratio of their deterministic seconds (what nesting costs); per nesting, each
    process count of --workers, and the wall-time ratio of one process to each of the others."""
    walls: dict = {}
    det: dict = {}
    for nesting in ("tree", "flat"):
        for w in WORKERS:
            r = run(name, inst, objective, limit, baseline, nesting, w)
            walls[nesting, w], det[nesting, w] = r["wall"], r["det"]
    w0 = WORKERS[0]
    print(f"{'':<22} tree/flat deterministic seconds: {det['tree', w0] / max(det['flat', w0], 1e-9):.2f}"
          + "".join(f"; wall {w0}/{w} workers: tree {walls['tree', w0] / walls['tree', w]:.2f}x, flat "
                    f"{walls['flat', w0] / walls['flat', w]:.2f}x" for w in WORKERS[1:]), flush=True)


def prefix(inst, k: int):
    """The first k Einsums of an instance, as an instance of their own."""
    wl = inst.workload.model_copy(update={"einsums": inst.workload.einsums[:k]})
    used = {r for e in wl.einsums for t in (e.output, *e.inputs) for r in t.ranks}
    wl = wl.model_copy(update={"ranks": {r: b for r, b in wl.ranks.items() if r in used}})
    return inst.model_copy(update={"workload": wl, "name": f"{inst.name}[:{k}]"})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--limit", type=float, default=120.0)
    ap.add_argument("--certify", default="auto", help="auto (the mapper's default), full or cheap")
    ap.add_argument("--workers", type=int, nargs="+", default=[1],
                    help="process counts to run each case with (solver/parallel.py); ratios against the first")
    ap.add_argument("--cpsat-defaults", action="store_true",
                    help="drop the mapper's CP-SAT parameters (SAFE_PARAMETERS, SPEED_PARAMETERS) to measure what "
                         "soundness costs: ortools 9.15's defaults prove wrong optima (docs/solver-soundness.md)")
    args = ap.parse_args()
    CERTIFY[0] = args.certify
    WORKERS[:] = args.workers
    if args.cpsat_defaults:
        from mapsolve.solver import segment_solve
        segment_solve.SAFE_PARAMETERS.clear()
        segment_solve.SPEED_PARAMETERS.clear()
        print("CP-SAT defaults (unsound on large instances): for comparison only")
    print(f"{'case':<22} {'objective':<15} {'nest':<5} {'w':>2} {'E':>3} {'status':<9} {'optimum':>20} {'bound':>20} "
          f"{'build s':>7} {'search s':>8} {'wall s':>8} {'det s':>7} {'segs':>5} {'/base':>8} {'vs FFM':>8}")
    llm = load_instance(ROOT / "instances/llm_4k.json")
    llm_base = evaluate(llm, load_mapping(ROOT / "instances/llm_4k.mapping.json"))
    both("llm_4k", llm, "energy", args.limit, llm_base)
    af = load_instance(ROOT / "instances/af_block.json")
    both("af_block", af, "energy", args.limit)
    if args.quick:
        return 0
    both("llm_4k", llm, "latency", args.limit, llm_base)
    both("llm_4k", llm, "energy,latency", args.limit, llm_base)
    gpt = load_instance(ROOT / "instances/gpt3_block.json")
    gpt_base = evaluate(gpt, load_mapping(ROOT / "instances/gpt3_block.mapping.json"))
    both("gpt3_block", gpt, "energy", args.limit, gpt_base)
    both("gpt3_block", gpt, "latency", args.limit, gpt_base)
    print("scaling with the number of Einsums (GPT-3 block prefixes, energy):")
    for k in range(1, len(gpt.workload.einsums) + 1):
        for w in WORKERS:
            run(f"gpt3_block[:{k}]", prefix(gpt, k), "energy", args.limit, workers=w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
