"""Running a sweep: every point solved in its own process (1 CP-SAT worker: the answer does not depend on how many
run at once), re-evaluated by the model, written as it finishes (resumable), then one table."""
from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Optional

from .points import PointError, base_document, expand, instance_of, point_id
from .spec import Sweep

RESULT_COLUMNS = ["id", "objective", "status", "gap", "objective_value", "best_bound", "energy_fj", "latency_cycles",
                  "fused_groups", "variant", "solve_seconds", "deterministic_seconds", "error"]
TIME_COLUMNS = ("solve_seconds", "deterministic_seconds")


def solve_point(sweep_doc: dict, folder: str, point: dict, base: Optional[dict] = None) -> dict:
    """One point's row (never raises: a point that fails is a row with its status and the reason). `base`: the
    base instance's document, read by the driver (a Ray worker may not see the sweep's folder)."""
    from mapsolve.model import evaluate
    from mapsolve.solver import SolverError, solve
    sweep = Sweep.model_validate(sweep_doc)
    row = {"objective": point["objective"], **{f"param:{k}": v for k, v in point["params"].items()}}
    t0 = time.perf_counter()
    try:
        inst = instance_of(sweep, Path(folder), point["params"], base)
        res = solve(inst, point["objective"], sweep.limits.time_limit, workers=1, seed=0,
                    deterministic_time=sweep.limits.deterministic_time)
    except PointError as exc:
        return {**row, "status": "INVALID", "error": str(exc)}
    except SolverError as exc:
        return {**row, "status": "ERROR", "error": " ".join(str(exc).splitlines())}
    row.update(status=res.status, gap=res.gap, objective_value=res.objective[0] if res.objective else None,
               best_bound=res.best_bound[0] if res.best_bound else None, energy_fj=res.energy_fj,
               latency_cycles=res.latency_cycles, variant=res.variant,
               solve_seconds=round(time.perf_counter() - t0, 3),
               deterministic_seconds=round(sum(s.deterministic_time for s in res.segments), 3),
               error=res.diagnosis if res.mapping is None else None)
    if res.mapping is not None:
        row["fused_groups"] = " ".join("+".join(g.einsums) + "@" + g.fusion_level for g in res.mapping.groups) or "-"
        ev = evaluate(inst, res.mapping)   # the model's own figures must be the solver's
        if (ev.energy_fj, ev.latency_cycles) != (res.energy_fj, res.latency_cycles):
            row.update(status="MISMATCH", error=f"the evaluator says {ev.energy_fj} fJ, {ev.latency_cycles} cycles")
    return row


class Store:
    """results/points/<id>.json, one per finished point, each written whole (a killed sweep keeps them all)."""

    def __init__(self, out: Path):
        self.folder = out / "points"
        self.folder.mkdir(parents=True, exist_ok=True)

    def done(self, pid: str) -> Optional[dict]:
        p = self.folder / f"{pid}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def put(self, pid: str, row: dict) -> None:
        tmp = self.folder / f".{pid}.tmp"
        tmp.write_text(json.dumps(row, indent=1, default=str) + "\n")
        os.replace(tmp, self.folder / f"{pid}.json")


def run_sweep(sweep: Sweep, folder: Path, out: Path, jobs: int = 1,
              on_row: Optional[Callable[[dict, int, int], None]] = None,
              ray_address: Optional[str] = None) -> tuple[list[dict], int]:
    """Every point's row in the sweep's order, and how many were already finished (skipped). Points run in this
    process (jobs 1), a local process pool (jobs > 1) or, with `ray_address`, as Ray tasks on that cluster
    ("local": a Ray instance started for this sweep); the rows are the same either way."""
    limits = sweep.limits.model_dump()
    points = expand(sweep)
    store = Store(out)
    rows: dict[str, dict] = {}
    todo = []
    for pt in points:
        pid = point_id(pt, limits)
        old = store.done(pid)
        if old is not None:
            rows[pid] = old
        else:
            todo.append((pid, pt))
    skipped = len(rows)
    doc = sweep.model_dump(by_alias=True)

    def take(pid: str, row: dict) -> None:
        row = {"id": pid, **row}
        store.put(pid, row)
        rows[pid] = row
        if on_row:
            on_row(row, len(rows), len(points))
    skeleton = {pid: {"objective": pt["objective"], **{f"param:{k}": v for k, v in pt["params"].items()}}
                for pid, pt in todo}
    try:
        base = base_document(sweep, folder)
    except PointError as exc:   # every point would fail the same way: each row says why
        for pid, _ in todo:
            take(pid, {**skeleton[pid], "status": "INVALID", "error": str(exc)})
        todo = []
        base = None
    if ray_address is not None and todo:
        from .ray_run import run_on_ray
        run_on_ray(ray_address, [(pid, (doc, str(folder), pt, base)) for pid, pt in todo], solve_point,
                   lambda pid, row: take(pid, {**skeleton[pid], **row}), local_cpus=jobs)
    elif jobs <= 1 or len(todo) <= 1:
        for pid, pt in todo:
            take(pid, solve_point(doc, str(folder), pt, base))
    else:
        import multiprocessing
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("forkserver"))
        try:
            futures = {pool.submit(solve_point, doc, str(folder), pt, base): pid for pid, pt in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    take(futures[f], f.result())
        except BaseException:   # Ctrl-C: stop now, not after every queued point (finished rows are kept)
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for w in workers:   # the points being solved are dropped; their rows were never written
                w.terminate()
            raise
        pool.shutdown()
    ordered = [rows[point_id(pt, limits)] for pt in points]
    write_table(ordered, out)
    return ordered, skipped


def columns(rows: list[dict]) -> list[str]:
    params = []
    for r in rows:
        params += [k for k in r if k.startswith("param:") and k not in params]
    return ["id"] + params + [c for c in RESULT_COLUMNS if c != "id"]


def write_table(rows: list[dict], out: Path) -> None:
    """results.csv (and results.parquet when pyarrow is installed), one row per point, parameters first."""
    cols = columns(rows)
    tmp = out / ".results.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    os.replace(tmp, out / "results.csv")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    pq.write_table(pa.Table.from_pylist([{c: (None if r.get(c) is None else str(r.get(c))) for c in cols}
                                         for r in rows]), out / "results.parquet")
