"""The mapper: one exact CP-SAT model per fusion segment, a shortest path over the chain, decode and verify.

OPT = min over partitions of the cascade into consecutive groups of Σ OPT(group), because groups run in
sequence with their own buffers (docs/model.md §5–6): energy and latency both add up over groups. The same
recursion over the segments' proven lower bounds gives a proven lower bound for the whole cascade, so the
result is OPTIMAL exactly when every segment on which the answer depends was proven.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

from mapsolve.model.spec import Instance, Mapping

from .certify import CERTIFY_MODES, certificates, certified, replication_rank
from .construct import constructive_mapping
from .paths import _best_paths, _floor, _lower_bound, _merge, _path, combine
from .results import SegmentResult, SolveResult, SolverError, VerificationError
from mapsolve.model.online import split_pair
from .segment_solve import Control, UnitTooFine, solve_segment
from .incumbent import seed_results
from .cache import SegmentCache, instance_key

__all__ = ["OBJECTIVES", "Control", "SegmentResult", "SolveResult", "SolverError", "VerificationError",
           "segment_plans", "solve", "solve_segment"]

OBJECTIVES = ("energy", "latency", "energy,latency", "latency,energy")


def _components(objective: str) -> list[str]:
    if objective == "edp":
        raise SolverError("objective edp is refused: energy x latency is not additive over fused groups, so "
                          "the segment decomposition cannot prove it; use energy,latency or latency,energy")
    if objective not in OBJECTIVES:
        raise SolverError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    return objective.split(",")


def segment_plans(inst: Instance) -> list[tuple[tuple[str, ...], Optional[int], tuple[int, ...]]]:
    """Every (consecutive Einsums, fusion level, levels above it) worth a model."""
    names = [e.name for e in inst.workload.einsums]
    arch = inst.architecture
    plans = []
    for i in range(len(names)):
        if split_pair(inst.workload, names[i:i + 1]) is None:   # a lock-step Einsum is never alone
            plans.append(((names[i],), None, ()))
        for j in range(i + 2, len(names) + 1):
            seg = tuple(names[i:j])
            if split_pair(inst.workload, seg) is not None:
                continue
            for f, lv in enumerate(arch.levels):
                if f == 0:
                    continue
                tops = {tuple(p[:p.index(f)]) for u in arch.compute_units
                        for p in [arch.path(u.name)] if f in p}
                for top in sorted(tops):
                    if all(arch.levels[x].mesh.size == 1 for x in (*top[1:], f)):
                        plans.append((seg, f, top))
    return plans


def solve(inst: Instance, objective: Optional[str] = None, time_limit: Optional[float] = None,
          workers: Optional[int] = None, seed: Optional[int] = None,
          progress: Optional[Callable[..., None]] = None, log=None,
          events: Optional[Callable[[dict], None]] = None, control: Optional[Control] = None,
          on_model: Optional[Callable[[str, object, dict], None]] = None,
          deterministic_time: Optional[float] = None, certify: str = "auto",
          cache: Optional[SegmentCache] = None) -> SolveResult:
    """Find a mapping minimising `objective`, prove it optimal when time allows, decode and verify it.

    `deterministic_time` (CP-SAT's deterministic seconds, summed over every segment solve) makes the budget and
    its split across segments independent of the machine's load: the same answer on a fast or a busy machine.
    With it, the wall-clock `time_limit` applies only when given explicitly.

    `certify` (solver/certify.py): the proven bound is checked against valid mappings built without CP-SAT's
    proof — the constructive mapping always, batch replication ("auto": on instances with an Einsum of at least
    2^31 operations, where 9.15's presolve went wrong; "full": whenever a batch rank exists; "cheap": never). A
    bound above one is CertificationError (exit 5). Replication gets a fifth of the budget.

    Lone Einsums are solved first, so a complete (unfused) mapping exists early. Then the fused segments in order
    of their last Einsum, shortest first: when segment i..j is solved, the best cost of the Einsums before i is
    known, so the segment is only worth anything if it beats the best path to j found so far. That cut-off goes
    into its model as a constraint, and an INFEASIBLE answer proves the segment useless (PRUNED, with the
    cut-off as its lower bound). Time left over goes to segments not yet proven.

    `events` receives one dict per event (segment start/end, incumbent, bound, and the whole cascade's
    incumbent and bound as they improve); `control.interrupt()` stops the search and returns what was found
    with status INTERRUPTED; `on_model(label, model, size)` sees every model before it is solved.
    """
    cache = cache if cache is not None else SegmentCache()   # in memory: one run's proofs, shared by variants
    if inst.workload.variants:   # the least of the variants' optima (solver/variants.py)
        from .variants import solve_variants
        return solve_variants(solve, inst, objective, time_limit, deterministic_time, control, events, progress,
                              workers=workers, seed=seed, log=log, on_model=on_model, certify=certify, cache=cache)
    opts = inst.solver
    objective = objective or opts.objective
    if time_limit is None:
        time_limit = opts.time_limit_s if deterministic_time is None else float("inf")
    workers = workers or opts.workers
    seed = opts.seed if seed is None else seed
    components = _components(objective)
    if certify not in CERTIFY_MODES:
        raise SolverError(f"unknown certify mode {certify!r}; use one of {', '.join(CERTIFY_MODES)}")
    control = control or Control()
    started = time.perf_counter()
    share = 0.8 if replication_rank(inst, certify) is not None else 1.0
    # a valid mapping before any search (solver/incumbent.py); a function of the instance alone, so cached too
    built = cache.mapping(instance_key(inst, f"constructive {components[0]}"),
                          lambda: constructive_mapping(inst, components[0]))
    construct_seconds = time.perf_counter() - started
    if events:
        events({"type": "constructive", "wall": round(construct_seconds, 6), "found": built is not None,
                "seconds": round(construct_seconds, 6)})
    if progress:
        progress(f"constructive mapping in {construct_seconds:.2f} s" if built is not None else
                 "no constructive mapping: the search starts from nothing")
    unit = 1
    while True:
        try:
            budget = Budget(share * (time_limit - (time.perf_counter() - started)),
                            None if deterministic_time is None else share * deterministic_time)
            res = _search(inst, objective, components, budget, workers, seed, progress, log, events, control,
                          on_model, unit, built, cache)
            break
        except UnitTooFine as exc:  # exact fJ would overflow: restart in a coarser unit, said in the result
            unit = max(exc.unit, unit * 10)
            if progress:
                progress(f"energy in fJ could overflow CP-SAT's integers: restarting in units of {unit} fJ")
            if events:
                events({"type": "energy_unit", "energy_unit_fj": unit})
    res.construct_seconds = construct_seconds
    if control.interrupted:
        return res

    def solve_copy(copy: Instance):
        """The one-copy instance of batch replication, in the rest of the budget, itself certified cheaply."""
        if progress:
            progress("certifying: solving one copy of the batch rank for replication")
        try:
            r = solve(copy, objective, max(time_limit - (time.perf_counter() - started), 0.05), workers, seed,
                      control=control, certify="cheap", cache=cache,
                      deterministic_time=None if deterministic_time is None else (1 - share) * deterministic_time)
        except VerificationError:
            raise
        except SolverError:
            return None
        return r.mapping
    t_cert = time.perf_counter()
    certs = certificates(inst, components, res.energy_unit_fj, certify, solve_copy, built)
    res.certify_seconds = time.perf_counter() - t_cert
    if events:
        for c in certs:
            events({"type": "certificate", "label": c.label, "objective": c.values[0], "best_bound":
                    res.best_bound[0] if res.best_bound else None, "energy_fj": c.energy_fj,
                    "latency_cycles": c.latency_cycles})
    return certified(inst, res, certs)


def _fusion_name(inst: Instance, plan) -> Optional[str]:
    return inst.architecture.levels[plan[1]].name if plan[1] is not None else None


def _total(values) -> Optional[int]:
    """Sum over a path's segments; None when the component was not modelled (not an objective)."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


class Budget:
    """The search's limit: wall-clock seconds, or CP-SAT deterministic seconds when those are given.

    Segments share what is left of the governing clock; with a deterministic budget the wall clock only stops a
    search when the caller asked for a wall limit too."""

    def __init__(self, wall: float, det: Optional[float]):
        self.t0 = time.perf_counter()
        self.wall = wall
        self.det = det
        self.det_used = 0.0

    def wall_left(self) -> float:
        return self.wall - (time.perf_counter() - self.t0)

    def left(self) -> float:
        """What is left of the governing clock."""
        if self.det is None:
            return self.wall_left()
        return min(self.det - self.det_used, self.wall_left())

    def limits(self, share: float) -> tuple[float, Optional[float]]:
        """(wall seconds, deterministic seconds) for a solve given `share` of the governing clock."""
        if self.det is None:
            return share, None
        return max(min(self.wall_left(), 1e7), 0.01), share


def _search(inst: Instance, objective: str, components: list[str], budget: Budget, workers: int, seed: int,
            progress, log, events, control: Control, on_model, unit: int,
            first_mapping: Optional[Mapping], cache: SegmentCache) -> SolveResult:
    """One search with energy in units of `unit` fJ (see `solve`), starting from the constructive mapping
    `first_mapping` cut into segments (solver/incumbent.py)."""
    names = [e.name for e in inst.workload.einsums]
    index = {nm: i for i, nm in enumerate(names)}
    plans = sorted(segment_plans(inst), key=lambda p: (len(p[0]) > 1, index[p[0][-1]], -index[p[0][0]]))
    t0 = time.perf_counter()
    det_offset = [0.0]
    results: list[Optional[SegmentResult]] = [None] * len(plans)
    seeds = seed_results(inst, plans, components, unit, first_mapping)
    for k, r in seeds.items():
        results[k] = r
    weight = [len(p[0]) ** 2 for p in plans]  # longer segments are the hard ones: give them more time
    total_state: dict = {}

    floors: dict[int, int] = {}

    def floor_of(k: int) -> int:
        """Plan k's floor (solver/paths.py `_floor`), computed once: the total bound asks for every unsolved
        plan's floor after each segment, and a 200-Einsum chain has 20,301 plans."""
        if k not in floors:
            floors[k] = _floor(inst, plans[k][0], components[0], unit)
        return floors[k]

    def emit(record: dict) -> None:
        if events:
            events({"wall": round(time.perf_counter() - t0, 6), **record})

    def report_total() -> None:
        """Emit the whole cascade's incumbent and lower bound when either improves."""
        if not events:
            return
        done = [r for r in results if r is not None]
        best = _best_paths(done, index, len(components))
        lower = _lower_bound(done + [SegmentResult(p[0], None, "UNKNOWN", None, (floor_of(k),))
                                    for k, p in enumerate(plans) if results[k] is None], index, len(names))
        inc = best.get(len(names))
        if inc is not None and inc != total_state.get("incumbent"):
            total_state["incumbent"] = inc
            path = _path(done, index, len(names), len(components))
            emit({"type": "incumbent", "scope": "total", "objective": inc[0], "best_bound": lower,
                  "energy_fj": _total(r.energy_fj for r in path),
                  "latency_cycles": _total(r.latency_cycles for r in path)})
        if lower is not None and lower != total_state.get("bound"):
            total_state["bound"] = lower
            emit({"type": "bound", "scope": "total", "objective": inc[0] if inc else None, "best_bound": lower})

    def run(k: int, share: float, attempt: str) -> None:
        plan = plans[k]
        i, j = index[plan[0][0]], index[plan[0][-1]] + 1
        # the segment's own earlier attempt is left out: a cut-off below its own incumbent would prune the segment
        # and drop the solution that was just proven best
        best = _best_paths([r for q, r in enumerate(results) if r is not None and q != k], index, len(components))
        cutoff = None
        if i in best and j in best:
            gap = best[j][0] - best[i][0]
            cutoff = gap - 1 if len(components) == 1 else gap
        fname = _fusion_name(inst, plan)
        where = f"@{fname}" if fname is not None else ""
        seg = "+".join(plan[0]) + where
        label = f"{attempt} {k + 1}/{len(plans)} {seg}"
        if progress:
            progress(label)

        def on_solution(value, bound, wall, det):
            gap_ = (value - bound) / max(abs(value), 1)
            if progress:
                progress(f"{label}: incumbent {value} bound {bound:.6g} gap {100 * gap_:.2f}%", transient=True)
            emit({"type": "incumbent", "scope": "segment", "segment": seg, "objective": value,
                  "best_bound": bound, "gap": gap_, "deterministic_time": det_offset[0] + det})

        def on_bound(bound):
            emit({"type": "bound", "scope": "segment", "segment": seg, "best_bound": bound})

        def model_seen(model, size):
            emit({"type": "segment_start", "segment": seg, "attempt": attempt, "cutoff": cutoff,
                  "time_limit": round(share, 4), **size})
            if on_model:
                on_model(f"{k + 1:03d}-{attempt}-{seg}", model, size)
        seconds, det_seconds = budget.limits(share)
        floor = floor_of(k)
        entry = cache.entry(inst, plan, components, unit)
        r = cache.get(entry, cutoff)
        if r is None and cutoff is not None and floor > cutoff:   # dominated before it is built: costs nothing
            r = SegmentResult(plan[0], fname, "PRUNED", None, (floor,), why="its floor is above the cut-off",
                              source="floor")
        elif r is None:
            r = solve_segment(inst, plan, components, seconds, workers, seed, log=log, cutoff=cutoff,
                              on_solution=on_solution if (progress or events) else None,
                              on_bound=on_bound if events else None, control=control, on_model=model_seen,
                              energy_unit=unit, det_seconds=det_seconds)
            if not control.interrupted:
                cache.put(entry, r)
        else:
            emit({"type": "segment_start", "segment": seg, "attempt": attempt, "cutoff": cutoff, "cached": True})
            if progress:
                progress(f"{label}: {r.status} (cached)")
        det_offset[0] += r.deterministic_time
        budget.det_used += r.deterministic_time
        if r.status in ("FEASIBLE", "UNKNOWN"):  # an unproven segment is still worth at least its floor
            if floor > r.bound[0]:
                r = dataclasses.replace(r, bound=(floor, *r.bound[1:]))
        if r.status == "PRUNED":
            r.base = best[i][0]
        if results[k] is not None:  # a second attempt: keep the better solution and the better bound
            r = _merge(results[k], r)
        results[k] = r
        emit({"type": "segment_end", "segment": seg, "status": r.status,
              "objective": r.values[0] if r.values else None, "best_bound": r.bound[0],
              # in a coarser energy unit the segment's energy is priced in that unit, not in fJ
              "energy_fj": r.energy_fj if unit == 1 else None, "latency_cycles": r.latency_cycles,
              **({"energy_units": r.energy_fj, "energy_unit_fj": unit} if unit > 1 else {}), "conflicts": r.conflicts,
              "branches": r.branches, "deterministic_time": det_offset[0], "presolve": r.presolve,
              "cached": r.source == "cache", **({"skipped": r.why} if r.source == "floor" else {})})
        report_total()

    def stale_or_unproven() -> list[int]:
        """Unproven segments, and pruned ones whose cut-off was computed from a since-improved prefix."""
        best = _best_paths([r for r in results if r is not None], index, len(components))
        out = []
        for k, r in enumerate(results):
            if r is None:
                continue
            i = index[plans[k][0][0]]
            if r.status in ("FEASIBLE", "UNKNOWN") or (r.status == "PRUNED" and r.base is not None
                                                       and best[i][0] < r.base):
                out.append(k)
        return out

    report_total()   # the constructive incumbent, before any model is built
    for k in range(len(plans)):
        if control.interrupted:
            break
        left = budget.left()
        if left <= 0:   # out of time: the rest are not even built (they keep their floors, and any seed)
            break
        run(k, max(left / (len(plans) - k), 0.05), "segment")
    while not control.interrupted:
        todo = stale_or_unproven()
        left = budget.left()
        if not todo or left <= 0.05:
            break
        for n_done, k in enumerate(todo):
            left = budget.left()
            if left <= 0.05 or control.interrupted:
                break
            run(k, left * weight[k] / sum(weight[q] for q in todo[n_done:]), "retry")
    for k, plan in enumerate(plans):  # never reached (interrupted, out of time): no solution, the floor as bound
        if results[k] is None:
            results[k] = SegmentResult(plan[0], _fusion_name(inst, plan), "UNKNOWN", None, (floor_of(k),))
    elapsed = time.perf_counter() - t0
    build = sum(r.build_seconds for r in results)
    res = combine(inst, names, results, components, objective, build, elapsed - build, unit)
    if control.interrupted and res.status != "OPTIMAL":
        res.status = "INTERRUPTED"
    return res
