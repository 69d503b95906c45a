"""The mapper: one exact CP-SAT model per fusion segment, a shortest path over the chain, decode and verify.

OPT = min over partitions of the cascade into consecutive groups of Σ OPT(group), because groups run in
sequence with their own buffers (docs/model.md §5–6): energy and latency both add up over groups. The same
recursion over the segments' proven lower bounds gives a proven lower bound for the whole cascade, so the
result is OPTIMAL exactly when every segment on which the answer depends was proven.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ortools.sat.python import cp_model

from mapsolve.model import MappingError, evaluate
from mapsolve.model.result import Result
from mapsolve.model.spec import Instance, Mapping

from mapsolve.model.units import fj

from .segment import Infeasible, SegmentModel

OBJECTIVES = ("energy", "latency", "energy,latency", "latency,energy")


class SolverError(Exception):
    """The solver cannot answer: refused objective, overflow, or an internal disagreement (a bug)."""


class VerificationError(SolverError):
    """The evaluator's figures differ from the solver's objective: a bug, never a warning."""


@dataclass
class SegmentResult:
    names: tuple[str, ...]
    fusion: Optional[str]
    status: str                       # OPTIMAL, FEASIBLE, INFEASIBLE, PRUNED (cannot beat the cut-off), UNKNOWN
    values: Optional[tuple[int, ...]]  # objective components in objective order, when a solution exists
    bound: tuple[int, ...]            # proven lower bound of the first component (and the rest when proven)
    energy_fj: Optional[int] = None
    latency_cycles: Optional[int] = None
    mapping: tuple = ()
    seconds: float = 0.0
    build_seconds: float = 0.0
    why: str = ""
    model_size: dict = field(default_factory=dict)
    base: Optional[int] = None         # PRUNED: best cost before the segment when pruned (bound is relative)
    conflicts: int = 0
    branches: int = 0
    deterministic_time: float = 0.0


@dataclass
class SolveResult:
    status: str                      # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, INTERRUPTED
    objective: Optional[list[int]]
    best_bound: Optional[list[int]]
    energy_fj: Optional[int]
    latency_cycles: Optional[int]
    mapping: Optional[Mapping]
    evaluation: Optional[Result]
    objective_name: str
    build_seconds: float
    solve_seconds: float
    segments: list[SegmentResult]
    diagnosis: str = ""

    @property
    def gap(self) -> Optional[float]:
        if not self.objective or not self.best_bound:
            return None
        o, b = self.objective[0], self.best_bound[0]
        return 0.0 if o == b else (o - b) / max(abs(o), 1)


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
        plans.append(((names[i],), None, ()))
        for j in range(i + 2, len(names) + 1):
            seg = tuple(names[i:j])
            for f, lv in enumerate(arch.levels):
                if f == 0:
                    continue
                tops = {tuple(p[:p.index(f)]) for u in arch.compute_units
                        for p in [arch.path(u.name)] if f in p}
                for top in sorted(tops):
                    if all(arch.levels[x].mesh.size == 1 for x in (*top[1:], f)):
                        plans.append((seg, f, top))
    return plans


def _params(solver: cp_model.CpSolver, seconds: float, workers: int, seed: int, log=None) -> None:
    solver.parameters.max_time_in_seconds = max(seconds, 0.01)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    # ortools 9.15 can certify a wrong OPTIMAL in presolve's inclusion detection (issue 5293; cpsat.md)
    solver.parameters.presolve_inclusion_work_limit = 0
    # Ctrl-C belongs to the caller (it stops the whole cascade, not one segment): see Control
    solver.parameters.catch_sigint_signal = False
    if log is not None:
        solver.parameters.log_search_progress = True
        solver.parameters.log_to_stdout = False
        solver.log_callback = log


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports every new incumbent of a segment's search (value, bound, wall and deterministic time)."""

    def __init__(self, expr, on_solution):
        super().__init__()
        self.expr = expr
        self.on_solution = on_solution

    def on_solution_callback(self) -> None:
        self.on_solution(self.value(self.expr), self.best_objective_bound, self.wall_time, self.deterministic_time)


class Control:
    """Shared between a running search and a signal handler: stop the current CP-SAT solve, remember why."""

    def __init__(self) -> None:
        self.solver: Optional[cp_model.CpSolver] = None
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        if self.solver is not None:
            self.solver.stop_search()


def solve_segment(inst: Instance, plan, components: list[str], seconds: float, workers: int, seed: int,
                  on_solution=None, log=None, cutoff: Optional[int] = None, on_bound=None,
                  control: Optional[Control] = None, on_model=None) -> SegmentResult:
    """Solve one segment's model; with a cut-off, only solutions whose first objective is <= cutoff count."""
    names, fusion, top = plan
    fname = inst.architecture.levels[fusion].name if fusion is not None else None
    t0 = time.perf_counter()
    try:
        sm = SegmentModel(inst, list(names), fusion, top)
        exprs = {"energy": sm.energy_expr(), "latency": sm.latency_var()}
        if sm.energy_ub() >= 2**62:
            raise SolverError(f"segment {'+'.join(names)}: energy could reach {sm.energy_ub()} fJ, beyond the "
                              f"exact range of CP-SAT (2^62)")
    except Infeasible as exc:
        return SegmentResult(names, fname, "INFEASIBLE", None, (0,), why=str(exc))
    except OverflowError as exc:
        raise SolverError(f"segment {'+'.join(names)}: {exc}") from None
    if cutoff is not None:
        if cutoff < 0:
            return SegmentResult(names, fname, "PRUNED", None, (cutoff + 1,))
        sm.m.add(exprs[components[0]] <= cutoff)
    build = time.perf_counter() - t0
    size = {"variables": len(sm.m.proto.variables), "constraints": len(sm.m.proto.constraints),
            "booleans": sum(1 for v in sm.m.proto.variables if list(v.domain) == [0, 1])}
    solver = cp_model.CpSolver()
    if control is not None:
        control.solver = solver
    if on_bound:
        solver.best_bound_callback = on_bound
    values: Optional[tuple[int, ...]] = None
    first_bound = 0
    status_name = "OPTIMAL"
    energy = latency = None
    mapping: tuple = ()
    t1 = time.perf_counter()
    for k, comp in enumerate(components):
        left = seconds - (time.perf_counter() - t1)
        sm.m.minimize(exprs[comp])
        if on_model and k == 0:
            on_model(sm.m, size)
        _params(solver, left, workers, seed, log)
        if control is not None and control.interrupted:
            break
        cb = _Progress(exprs[comp], on_solution) if on_solution and k == 0 else None
        status = solver.solve(sm.m, cb) if cb else solver.solve(sm.m)

        if status == cp_model.INFEASIBLE and k == 0 and cutoff is not None:
            return SegmentResult(names, fname, "PRUNED", None, (cutoff + 1,), seconds=time.perf_counter() - t1,
                                 build_seconds=build)
        if status == cp_model.INFEASIBLE and k == 0:
            return SegmentResult(names, fname, "INFEASIBLE", None, (0,), seconds=time.perf_counter() - t1,
                                 build_seconds=build, why=_diagnose(inst, names, fname))
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if k == 0:
                return SegmentResult(names, fname, "UNKNOWN", None,
                                     (max(0, math.floor(solver.best_objective_bound)),),
                                     seconds=time.perf_counter() - t1, build_seconds=build)
            status_name = "FEASIBLE"  # the second stage did not finish: keep the first stage's solution
            break
        value = solver.value(exprs[comp])
        if k == 0:
            first_bound = value if status == cp_model.OPTIMAL else max(0, math.floor(solver.best_objective_bound))
        if status != cp_model.OPTIMAL:
            status_name = "FEASIBLE"
        solution = {i: solver.value(sm.m.get_int_var_from_proto_index(i))
                    for i in range(len(sm.m.proto.variables))}
        mapping = sm.decode(lambda v: _lookup(solution, v))
        values = tuple(solver.value(exprs[c]) for c in components)
        energy, latency = solver.value(exprs["energy"]), solver.value(exprs["latency"])
        if status != cp_model.OPTIMAL or k + 1 == len(components):
            break
        sm.m.add(exprs[comp] == value)
        sm.m.clear_hints()
        for i, v in solution.items():
            sm.m.add_hint(sm.m.get_int_var_from_proto_index(i), v)
    if values is None:
        status_name = "UNKNOWN"
    return SegmentResult(names, fname, status_name, values, (first_bound,), energy, latency, mapping,
                         time.perf_counter() - t1, build, model_size=size,
                         conflicts=solver.num_conflicts, branches=solver.num_branches,
                         deterministic_time=solver.deterministic_time)


def _lookup(solution: dict[int, int], v) -> int:
    i = v.Index()
    return solution[i] if i >= 0 else 1 - solution[-i - 1]  # negative index: a negated Boolean


def _diagnose(inst: Instance, names, fname) -> str:
    """Why a segment has no mapping: the smallest possible tiles against each capacity."""
    wl, arch = inst.workload, inst.architecture
    for lv in arch.levels[1:]:
        cap = lv.capacity(wl.word_bits)
        if cap is None:
            continue
        for e in wl.einsums:
            if e.name not in names:
                continue
            must = [t.tensor for t in (e.output, *e.inputs) if t.tensor in lv.must_keep]
            if len(must) > cap:
                return f"einsum {e.name}: level {lv.name} must keep {must} (one word each at least); capacity is {cap}"
    if fname is not None:
        return (f"fusing {'+'.join(names)} at {fname}: no tiling of the shared loops makes the intermediates' "
                f"tiles fit {fname}'s capacity of {next(lv for lv in arch.levels if lv.name == fname).capacity(wl.word_bits)} words")
    return f"einsum {names[0]}: no tiling fits the capacities of its levels"


def _better(a: tuple, b: Optional[tuple]) -> bool:
    return b is None or a < b


def solve(inst: Instance, objective: Optional[str] = None, time_limit: Optional[float] = None,
          workers: Optional[int] = None, seed: Optional[int] = None,
          progress: Optional[Callable[..., None]] = None, log=None,
          events: Optional[Callable[[dict], None]] = None, control: Optional[Control] = None,
          on_model: Optional[Callable[[str, object, dict], None]] = None) -> SolveResult:
    """Find a mapping minimising `objective`, prove it optimal when time allows, decode and verify it.

    Lone Einsums are solved first, so a complete (unfused) mapping exists early. Then the fused segments in order
    of their last Einsum, shortest first: when segment i..j is solved, the best cost of the Einsums before i is
    known, so the segment is only worth anything if it beats the best path to j found so far. That cut-off goes
    into its model as a constraint, and an INFEASIBLE answer proves the segment useless (PRUNED, with the
    cut-off as its lower bound). Time left over goes to segments not yet proven.

    `events` receives one dict per event (segment start/end, incumbent, bound, and the whole cascade's
    incumbent and bound as they improve); `control.interrupt()` stops the search and returns what was found
    with status INTERRUPTED; `on_model(label, model, size)` sees every model before it is solved.
    """
    opts = inst.solver
    objective = objective or opts.objective
    time_limit = opts.time_limit_s if time_limit is None else time_limit
    workers = workers or opts.workers
    seed = opts.seed if seed is None else seed
    components = _components(objective)
    control = control or Control()
    names = [e.name for e in inst.workload.einsums]
    index = {nm: i for i, nm in enumerate(names)}
    plans = sorted(segment_plans(inst), key=lambda p: (len(p[0]) > 1, index[p[0][-1]], -index[p[0][0]]))
    t0 = time.perf_counter()
    det_offset = [0.0]
    results: list[Optional[SegmentResult]] = [None] * len(plans)
    weight = [len(p[0]) ** 2 for p in plans]  # longer segments are the hard ones: give them more time
    total_state: dict = {}

    def emit(record: dict) -> None:
        if events:
            events({"wall": round(time.perf_counter() - t0, 6), **record})

    def report_total() -> None:
        """Emit the whole cascade's incumbent and lower bound when either improves."""
        if not events:
            return
        done = [r for r in results if r is not None]
        best = _best_paths(done, index, len(components))
        lower = _lower_bound(done + [SegmentResult(p[0], None, "UNKNOWN", None, (_floor(inst, p[0], components[0]),))
                                    for k, p in enumerate(plans) if results[k] is None], index, len(names))
        inc = best.get(len(names))
        if inc is not None and inc != total_state.get("incumbent"):
            total_state["incumbent"] = inc
            path = _path(done, index, len(names), len(components))
            emit({"type": "incumbent", "scope": "total", "objective": inc[0], "best_bound": lower,
                  "energy_fj": sum(r.energy_fj for r in path), "latency_cycles": sum(r.latency_cycles for r in path)})
        if lower is not None and lower != total_state.get("bound"):
            total_state["bound"] = lower
            emit({"type": "bound", "scope": "total", "objective": inc[0] if inc else None, "best_bound": lower})

    def run(k: int, seconds: float, attempt: str) -> None:
        plan = plans[k]
        i, j = index[plan[0][0]], index[plan[0][-1]] + 1
        best = _best_paths([r for r in results if r is not None], index, len(components))
        cutoff = None
        if i in best and j in best:
            gap = best[j][0] - best[i][0]
            cutoff = gap - 1 if len(components) == 1 else gap
        where = f"@{inst.architecture.levels[plan[1]].name}" if plan[1] is not None else ""
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
                  "time_limit": round(seconds, 4), **size})
            if on_model:
                on_model(f"{k + 1:03d}-{attempt}-{seg}", model, size)
        r = solve_segment(inst, plan, components, seconds, workers, seed, log=log, cutoff=cutoff,
                          on_solution=on_solution if (progress or events) else None,
                          on_bound=on_bound if events else None, control=control, on_model=model_seen)
        det_offset[0] += r.deterministic_time
        if r.status == "PRUNED":
            r.base = best[i][0]
        if results[k] is not None:  # a second attempt: keep the better solution and the better bound
            r = _merge(results[k], r)
        results[k] = r
        emit({"type": "segment_end", "segment": seg, "status": r.status,
              "objective": r.values[0] if r.values else None, "best_bound": r.bound[0],
              "energy_fj": r.energy_fj, "latency_cycles": r.latency_cycles, "conflicts": r.conflicts,
              "branches": r.branches, "deterministic_time": det_offset[0]})
        report_total()

    def stale_or_unproven() -> list[int]:
        """Unproven segments, and pruned ones whose cut-off was computed from a since-improved prefix."""
        best = _best_paths(results, index, len(components))
        out = []
        for k, r in enumerate(results):
            i = index[plans[k][0][0]]
            if r.status in ("FEASIBLE", "UNKNOWN") or (r.status == "PRUNED" and r.base is not None
                                                       and best[i][0] < r.base):
                out.append(k)
        return out

    for k in range(len(plans)):
        if control.interrupted:
            break
        left = time_limit - (time.perf_counter() - t0)
        run(k, max(left / (len(plans) - k), 0.05) if left > 0 else 0.01, "segment")
    while not control.interrupted:
        todo = stale_or_unproven()
        left = time_limit - (time.perf_counter() - t0)
        if not todo or left <= 0.05:
            break
        for n_done, k in enumerate(todo):
            left = time_limit - (time.perf_counter() - t0)
            if left <= 0.05 or control.interrupted:
                break
            run(k, left * weight[k] / sum(weight[q] for q in todo[n_done:]), "retry")
    for k, plan in enumerate(plans):  # never reached (interrupted): no solution, trivial bound
        if results[k] is None:
            fname = inst.architecture.levels[plan[1]].name if plan[1] is not None else None
            results[k] = SegmentResult(plan[0], fname, "UNKNOWN", None, (0,))
    elapsed = time.perf_counter() - t0
    build = sum(r.build_seconds for r in results)
    res = combine(inst, names, results, components, objective, build, elapsed - build)
    if control.interrupted and res.status != "OPTIMAL":
        res.status = "INTERRUPTED"
    return res


def _floor(inst: Instance, names, component: str) -> int:
    """A bound no mapping of these Einsums can beat, before any search: the cheapest unit's compute energy."""
    if component != "energy":
        return 0
    total = 0
    for e in inst.workload.einsums:
        if e.name in names:
            ops = 1
            for r in {r for t in (e.output, *e.inputs) for r in t.ranks}:
                ops *= inst.workload.ranks[r]
            total += ops * min(fj(u.ops[e.op].energy_pj) for u in inst.architecture.compute_units if e.op in u.ops)
    return total


def _lower_bound(results: list[SegmentResult], index: dict[str, int], n: int) -> Optional[int]:
    """Proven lower bound of the first objective for the whole cascade, by the shortest-path recursion."""
    lower: dict[int, int] = {0: 0}
    for r in sorted(results, key=lambda r: index[r.names[-1]]):
        i, j = index[r.names[0]], index[r.names[-1]] + 1
        if r.status != "INFEASIBLE" and i in lower:
            lower[j] = min(lower.get(j, lower[i] + r.bound[0]), lower[i] + r.bound[0])
    return lower.get(n)


def _path(results: list[SegmentResult], index: dict[str, int], n: int, n_components: int) -> list[SegmentResult]:
    """The segments of the best known complete path."""
    best: dict[int, tuple] = {0: tuple(0 for _ in range(n_components))}
    via: dict[int, SegmentResult] = {}
    for r in sorted(results, key=lambda r: index[r.names[-1]]):
        i, j = index[r.names[0]], index[r.names[-1]] + 1
        if r.values is not None and i in best:
            total = tuple(a + b for a, b in zip(best[i], r.values))
            if j not in best or total < best[j]:
                best[j], via[j] = total, r
    out, j = [], n
    while j > 0 and j in via:
        out.append(via[j])
        j = index[via[j].names[0]]
    return list(reversed(out))


def _best_paths(results: list[SegmentResult], index: dict[str, int], n_components: int) -> dict[int, tuple]:
    """Best known cost of the first j Einsums, for every j reachable by solved segments."""
    best: dict[int, tuple] = {0: tuple(0 for _ in range(n_components))}
    for r in sorted(results, key=lambda r: index[r.names[-1]]):
        i, j = index[r.names[0]], index[r.names[-1]] + 1
        if r.values is not None and i in best:
            total = tuple(a + b for a, b in zip(best[i], r.values))
            if j not in best or total < best[j]:
                best[j] = total
    return best


def _merge(old: SegmentResult, new: SegmentResult) -> SegmentResult:
    """Two attempts at one segment: the better solution, the higher bound, proven if either proved."""
    if new.status in ("OPTIMAL", "INFEASIBLE", "PRUNED"):
        return new
    keep = new if new.values is not None and (old.values is None or new.values < old.values) else old
    bound = max(old.bound, new.bound)
    return SegmentResult(keep.names, keep.fusion, "FEASIBLE" if keep.values is not None else "UNKNOWN",
                         keep.values, bound, keep.energy_fj, keep.latency_cycles, keep.mapping,
                         old.seconds + new.seconds, old.build_seconds + new.build_seconds, keep.why, keep.model_size)


def combine(inst: Instance, names: list[str], results: list[SegmentResult], components: list[str],
            objective: str, build: float, search: float) -> SolveResult:
    """Shortest path over the chain of Einsums: best solution and proven bound; then decode and verify."""
    n = len(names)
    index = {nm: i for i, nm in enumerate(names)}
    best: list[Optional[tuple]] = [None] * (n + 1)
    choice: list[Optional[SegmentResult]] = [None] * (n + 1)
    lower: list[Optional[tuple]] = [None] * (n + 1)
    best[0], lower[0] = tuple(0 for _ in components), (0,)
    by_end: dict[int, list[SegmentResult]] = {}
    for r in results:
        by_end.setdefault(index[r.names[-1]] + 1, []).append(r)
    for j in range(1, n + 1):
        for r in by_end.get(j, []):
            i = index[r.names[0]]
            if r.status != "INFEASIBLE" and lower[i] is not None:
                lb = (lower[i][0] + r.bound[0],)
                if lower[j] is None or lb < lower[j]:
                    lower[j] = lb
            if r.values is not None and best[i] is not None and len(r.values) == len(components):
                total = tuple(a + b for a, b in zip(best[i], r.values))
                if _better(total, best[j]):
                    best[j], choice[j] = total, r
    if best[n] is None:
        infeasible = lower[n] is None
        why = "; ".join(sorted({r.why for r in results if r.status == "INFEASIBLE" and len(r.names) == 1}))
        return SolveResult("INFEASIBLE" if infeasible else "UNKNOWN", None, list(lower[n]) if lower[n] else None,
                           None, None, None, None, objective, build, search, results,
                           diagnosis=why if infeasible else "no mapping found within the time limit")
    chosen: list[SegmentResult] = []
    j = n
    while j > 0:
        r = choice[j]
        chosen.append(r)
        j = index[r.names[0]]
    chosen.reverse()
    einsum_maps, groups = [], []
    for r in chosen:
        maps, group = r.mapping
        einsum_maps.extend(maps)
        if group is not None:
            groups.append(group)
    mapping = Mapping(einsums=einsum_maps, groups=groups)
    energy = sum(r.energy_fj for r in chosen)
    latency = sum(r.latency_cycles for r in chosen)
    try:
        evaluation = evaluate(inst, mapping)
    except MappingError as exc:
        raise VerificationError(f"the solver's mapping is invalid for the evaluator: {exc}") from None
    if (evaluation.energy_fj, evaluation.latency_cycles) != (energy, latency):
        raise VerificationError(f"solver says energy {energy} fJ, latency {latency} cycles; the evaluator says "
                                f"{evaluation.energy_fj} fJ, {evaluation.latency_cycles} cycles")
    proven = all(r.status in ("OPTIMAL", "INFEASIBLE", "PRUNED") for r in results)
    status = "OPTIMAL" if proven and lower[n] is not None and lower[n][0] == best[n][0] else "FEASIBLE"
    bound = list(best[n]) if status == "OPTIMAL" else [lower[n][0]]
    return SolveResult(status, list(best[n]), bound, energy, latency, mapping, evaluation, objective, build,
                       search, results)
