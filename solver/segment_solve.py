"""Solving one segment model: objectives in stages, a cut-off, callbacks, decoding the answer."""
from __future__ import annotations

import dataclasses
from collections import Counter
import time
from typing import Optional

from ortools.sat.python import cp_model

from mapsolve.model.spec import Instance
from mapsolve.model.views import run_dims

from .exact import BuildTooLong, build_limit
from .restarts import solve_with_restarts
from .results import SegmentResult, SolverError
from .segment import Infeasible, SegmentModel

# CP-SAT parameters without which ortools 9.15.6755 proves wrong optima on our models (docs/solver-soundness.md):
SAFE_PARAMETERS = {
    # The precedence detector run while loading the presolved model ("GreaterThanAtLeastOneOf") turns a variable
    # with two values >= ~2^33 and the gated copies of it (g == v if b) into a wrong lower bound: the 8-head QK of
    # shared/cases/qk_h8_false_optimal.json was "proven" 13.8x too high, a 5-variable model INFEASIBLE
    # (tests/cases/cpsat_two_value_domain.py). 9.14.6206 gets both right.
    "auto_detect_greater_than_at_least_one_of": False,
    # presolve's inclusion detection can certify a wrong OPTIMAL when the Boolean coefficients of one enforced
    # linear constraint sum past 2^31 (ortools issue 5293; cpsat.md)
    "presolve_inclusion_work_limit": 0,
}

# Measured (docs/solver-soundness.md): with the safe parameters, the LP relaxation costs more than it prunes on our
# models; without it llm_4k energy is proven in 2.6 deterministic s instead of 69.7 (9.15 defaults, unsound: 3.5).
# Conflict minimisation over the binary implication graph is off: our element tables give it ~10^5 binary clauses
# and it took most of the wall time (perf: BinaryImplicationGraph::MarkDescendants 26 %, MinimizeConflictFirst 8 %)
# while CP-SAT's deterministic clock barely counted it (20-50 wall s per deterministic s). Without it llm_4k's
# QK+MX+SN+SD is proven in 1.0-7.9 s (seeds 0-3) instead of 29-98 s, and a 4096-point butterfly stage in 1.3 s
# instead of > 140 s unproven (docs/solver-soundness.md, "Speed"). It only shortens learned clauses: sound.
NO_BINARY_MINIMIZATION = {"binary_minimization_algorithm": "NO_BINARY_MINIMIZATION"}
SPEED_PARAMETERS = {"linearization_level": 0, **NO_BINARY_MINIMIZATION}
# Latency as the later stage of a lexicographic objective (energy fixed at its optimum) needs the LP to prove:
# llm_4k energy,latency is proven in 6.8 deterministic s with it, not in 60 without (energy as the later stage is
# the opposite: proven without, not in 60 s with it).
LATENCY_LATER_STAGE_PARAMETERS = {"linearization_level": 1, **NO_BINARY_MINIMIZATION}

ENERGY_LIMIT = 2**61  # the objective's Σ|coef|·ub stays well inside CP-SAT's int64


class UnitTooFine(Exception):
    """Energy in fJ could overflow CP-SAT's integers: the search restarts with `unit` fJ per energy unit."""

    def __init__(self, unit: int):
        super().__init__(unit)
        self.unit = unit


class Unrepresentable(SolverError):
    """A segment's exact model needs integers beyond CP-SAT's 64 bits (a cost term, a ceiling, or the sum of the
    variable domains CP-SAT checks). Not fatal: the search gives the segment no model, keeps its constructive
    mapping and its floor as bound (solver/search.py). `cause` says what overflows."""

    def __init__(self, segment: str, cause: str):
        super().__init__(f"segment {segment}: too large for CP-SAT's 64-bit integers ({cause})")
        self.segment = segment
        self.cause = cause

    def __reduce__(self):   # rebuilt from its own arguments in the parent (a worker process raised it)
        return (Unrepresentable, (self.segment, self.cause))


def coarser_unit(ub_fj: int) -> int:
    """The smallest power of ten whose rounding keeps the energy objective within ENERGY_LIMIT (with margin)."""
    unit = 1
    while ub_fj // unit >= ENERGY_LIMIT // 4:
        unit *= 10
    return unit


def set_parameters(parameters, values: dict) -> None:
    """Set CP-SAT parameters from a dict; an enum's value may be given by its name."""
    for name, value in values.items():
        if isinstance(value, str):
            value = getattr(type(getattr(parameters, name)), value)
        setattr(parameters, name, value)


def _params(solver: cp_model.CpSolver, seconds: float, workers: int, seed: int, log=None,
            det_seconds: Optional[float] = None, later_latency: bool = False, config: Optional[dict] = None) -> None:
    """`config`: a restart's own settings (solver/restarts.py), over SPEED_PARAMETERS."""
    solver.parameters.max_time_in_seconds = max(seconds, 0.01)
    # (the solver object is reused across attempts and stages: an earlier deterministic limit must not linger)
    solver.parameters.max_deterministic_time = float("inf") if det_seconds is None else max(det_seconds, 0.001)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    set_parameters(solver.parameters, SAFE_PARAMETERS)
    set_parameters(solver.parameters, LATENCY_LATER_STAGE_PARAMETERS if later_latency else SPEED_PARAMETERS)
    set_parameters(solver.parameters, config or {})
    # Ctrl-C belongs to the caller (it stops the whole cascade, not one segment): see Control
    solver.parameters.catch_sigint_signal = False
    if log is not None:
        solver.parameters.log_search_progress = True
        solver.parameters.log_to_stdout = False
        solver.log_callback = log


class Control:
    """Shared between a running search and a signal handler: stop the current CP-SAT solve, remember why."""

    def __init__(self) -> None:
        self.solver: Optional[cp_model.CpSolver] = None
        self.interrupted = False

    def interrupt(self) -> None:
        self.interrupted = True
        if self.solver is not None:
            self.solver.stop_search()


def build_segment(inst: Instance, plan, energy_unit: int = 1,
                  components: tuple[str, ...] = ("energy", "latency")) -> tuple[SegmentModel, dict]:
    """A segment's model and its objective expressions (energy in `energy_unit` fJ, latency in cycles), for the
    objective components asked for: latency's exact transfer-time ceilings are built only when latency is an
    objective (at 96 heads and sequence 2^16 they need more than 64-bit integers; energy does not).

    Raises Infeasible (no mapping of this segment can exist), UnitTooFine (energy would overflow in this unit)
    or Unrepresentable (numbers too large for CP-SAT even so: counts, ceilings, CP-SAT's own domain check)."""
    names, fusion, top = plan
    try:
        sm = SegmentModel(inst, list(names), fusion, top)
        exprs = {}
        if "energy" in components:
            if sm.energy_ub(energy_unit) >= ENERGY_LIMIT:
                invalid = sm.m.validate()
                if invalid:   # no unit helps: the model's own numbers are too large (not only energy's)
                    raise Unrepresentable("+".join(names), f"CP-SAT rejects the exact model: "
                                                           f"{invalid.splitlines()[0][:160]}")
                raise UnitTooFine(coarser_unit(sm.energy_ub(1)))
            exprs["energy"] = sm.energy_expr(energy_unit)
        if "latency" in components:
            exprs["latency"] = sm.latency_var()
    except OverflowError as exc:
        raise Unrepresentable("+".join(names), str(exc)) from None
    invalid = sm.m.validate()
    if invalid:  # e.g. a transfer time whose exact ceiling needs more than 64-bit integers
        raise Unrepresentable("+".join(names), f"CP-SAT rejects the exact model: {invalid.splitlines()[0][:160]}")
    return sm, exprs


def model_size(model: cp_model.CpModel) -> dict:
    proto = model.proto
    return {"variables": len(proto.variables), "constraints": len(proto.constraints),
            "booleans": sum(1 for v in proto.variables if list(v.domain) == [0, 1])}


def nests_deeper(inst: Instance, plan) -> bool:
    """Whether the tree mapspace of this fused segment is larger than its flat one: some proper run of members has
    a dimension of its own (model/views.py `run_dims`)."""
    names, fusion, _ = plan
    if fusion is None or len(names) < 2 or inst.solver.nesting != "tree":
        return False
    members = [e for e in inst.workload.einsums if e.name in names]
    n = len(members)
    return any(run_dims(members, i, j) for i in range(n) for j in range(i + 1, n + 1) if (i, j) != (0, n))


def flat(inst: Instance) -> Instance:
    return inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": "flat"})})


def solve_segment(inst: Instance, plan, components: list[str], seconds: float, workers: int, seed: int,
                  on_solution=None, log=None, cutoff: Optional[int] = None, on_bound=None,
                  control: Optional[Control] = None, on_model=None, energy_unit: int = 1,
                  det_seconds: Optional[float] = None, build: Optional[tuple] = None,
                  caps: Optional[dict] = None) -> SegmentResult:
    """Solve one segment's model; with a cut-off, only solutions whose first objective is <= cutoff count.

    `caps`: objective component -> the most it may be (energy in `energy_unit` fJ, latency in cycles), constraints
    of the model (the ε-constraints of solver/pareto.py); every component capped must be one of `components`.

    `build`: (wall seconds, building operations) the model's building may take at most (exact.py `build_limit`);
    past it the segment gets no model: UNKNOWN, bound 0, source "unbuilt".

    `seconds` bounds the wall-clock time; `det_seconds`, when given, CP-SAT's deterministic time (the same work
    on a fast or a loaded machine), both summed over the objective's stages.

    A segment whose tree mapspace is larger than its flat one is solved in two steps: the flat model first (at most
    half the budget), then the tree model with the flat optimum as its solution hint. Measured on llm_4k's QK+MX
    segment: the tree model alone took 0.7 to >3 deterministic seconds depending on the seed (wall up to 100 s,
    unproven), hinted it is proven in 0.19 for every seed. Only the tree model's bound is reported: the flat
    model's is not a bound of the larger mapspace."""
    # the nesting analysis (here and in the model) costs ~L³ for a run of L Einsums, outside exact.py's counted
    # operations: counted up front, so a run too long to analyse within the limit is not even started
    upfront = len(plan[0]) ** 3 if len(plan[0]) > 1 else 0
    if build is not None and build[1] is not None and upfront > build[1]:
        names, fusion, _ = plan
        return SegmentResult(names, inst.architecture.levels[fusion].name if fusion is not None else None, "UNKNOWN",
                             None, (0,), why=f"segment {'+'.join(names)}: its model needs more than {build[1]} "
                             f"building operations", source="unbuilt", build_ops=upfront)
    if build is not None and build[1] is not None:
        build = (build[0], build[1] - upfront)
    res = _solve_segment(inst, plan, components, seconds, workers, seed, on_solution, log, cutoff, on_bound,
                         control, on_model, energy_unit, det_seconds, build, caps)
    return dataclasses.replace(res, build_ops=res.build_ops + upfront)


def _solve_segment(inst, plan, components, seconds, workers, seed, on_solution, log, cutoff, on_bound, control,
                   on_model, energy_unit, det_seconds, build, caps=None) -> SegmentResult:
    if nests_deeper(inst, plan):
        t0 = time.perf_counter()
        # a warm start, not reported: its model, incumbents and bound are not the segment's (the tree model
        # finds the hinted solution at once and reports it)
        first = _solve_one(flat(inst), plan, components, seconds / 2, workers, seed, None, log, cutoff,
                           None, control, None, energy_unit, None if det_seconds is None else det_seconds / 2,
                           build=build, caps=caps)
        spent = time.perf_counter() - t0
        if control is not None and control.interrupted:
            return dataclasses.replace(first, status="UNKNOWN" if first.values is None else "FEASIBLE",
                                       bound=(0,))
        res = _solve_one(inst, plan, components, seconds - spent, workers, seed, on_solution, log, cutoff,
                         on_bound, control, on_model, energy_unit,
                         None if det_seconds is None else det_seconds - first.deterministic_time,
                         hint=first.named_solution, build=build, first_attempt=first.last_attempt, caps=caps)
        res = dataclasses.replace(res, seconds=res.seconds + first.seconds,
                                  build_seconds=res.build_seconds + first.build_seconds,
                                  build_ops=res.build_ops + first.build_ops,
                                  conflicts=res.conflicts + first.conflicts, branches=res.branches + first.branches,
                                  deterministic_time=res.deterministic_time + first.deterministic_time)
        if res.values is None and first.values is not None:   # the flat mapping is a tree mapping too
            res = dataclasses.replace(res, status="FEASIBLE", values=first.values, energy_fj=first.energy_fj,
                                      latency_cycles=first.latency_cycles, mapping=first.mapping)
        return res
    return _solve_one(inst, plan, components, seconds, workers, seed, on_solution, log, cutoff, on_bound, control,
                      on_model, energy_unit, det_seconds, build=build, caps=caps)


def _solve_one(inst: Instance, plan, components: list[str], seconds: float, workers: int, seed: int,
               on_solution=None, log=None, cutoff: Optional[int] = None, on_bound=None,
               control: Optional[Control] = None, on_model=None, energy_unit: int = 1,
               det_seconds: Optional[float] = None, hint: Optional[dict] = None,
               build: Optional[tuple] = None, first_attempt: int = 0, caps: Optional[dict] = None) -> SegmentResult:
    """One model of one segment (`solve_segment`): `_solve_model`, with the model's building operations counted in
    the result (`build_ops`, work the search charges with a deterministic budget)."""
    built: dict = {}
    r = _solve_model(inst, plan, components, seconds, workers, seed, on_solution, log, cutoff, on_bound, control,
                     on_model, energy_unit, det_seconds, hint, build, built, first_attempt, caps)
    return dataclasses.replace(r, build_ops=built["ops"]) if "ops" in built else r


def _solve_model(inst: Instance, plan, components: list[str], seconds: float, workers: int, seed: int,
               on_solution=None, log=None, cutoff: Optional[int] = None, on_bound=None,
               control: Optional[Control] = None, on_model=None, energy_unit: int = 1,
               det_seconds: Optional[float] = None, hint: Optional[dict] = None,
               build: Optional[tuple] = None, built: Optional[dict] = None,
               first_attempt: int = 0, caps: Optional[dict] = None) -> SegmentResult:
    """One model of one segment (`solve_segment`); `hint`: variable name -> value, a solution hint. `seconds`
    counts the model's building too (a model that takes long to build leaves less time to solve it)."""
    names, fusion, top = plan
    fname = inst.architecture.levels[fusion].name if fusion is not None else None
    t0 = time.perf_counter()
    try:
        with build_limit(*(build or (None, None))):
            sm, exprs = build_segment(inst, plan, energy_unit, tuple(components))
    except BuildTooLong as exc:   # no model in time: the search keeps the segment's seed and floor
        return SegmentResult(names, fname, "UNKNOWN", None, (0,), build_seconds=time.perf_counter() - t0,
                             why=f"segment {'+'.join(names)}: {exc}", source="unbuilt", build_ops=exc.ops)
    except Infeasible as exc:
        return SegmentResult(names, fname, "INFEASIBLE", None, (0,), why=str(exc))
    except Unrepresentable as exc:   # no model: the search keeps the segment's seed and floor (bound 0 here)
        return SegmentResult(names, fname, "UNKNOWN", None, (0,), build_seconds=time.perf_counter() - t0,
                             why=str(exc), source="unrepresentable")
    if built is not None:
        built["ops"] = sm.x.ops
    if cutoff is not None:
        if cutoff < 0:
            return SegmentResult(names, fname, "PRUNED", None, (cutoff + 1,))
        sm.m.add(exprs[components[0]] <= cutoff)
    for comp, most in (caps or {}).items():
        sm.m.add(exprs[comp] <= most)
    build = time.perf_counter() - t0
    size = model_size(sm.m)
    if hint:
        for i, v in enumerate(sm.m.proto.variables):
            if v.name in hint:
                sm.m.add_hint(sm.m.get_int_var_from_proto_index(i), hint[v.name])
            elif v.name.startswith("shared.") or v.name.startswith("run used"):
                sm.m.add_hint(sm.m.get_int_var_from_proto_index(i), 0)   # the tree's extra loops: unit
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
    pre: dict = {}
    det_used = 0.0
    conflicts = branches = 0
    tried = (0, 0)
    for k, comp in enumerate(components):
        if control is not None and control.interrupted:
            break

        def configure(wall, det, config, attempt_seed, k=k, comp=comp):
            _params(solver, wall, workers, attempt_seed, log, det,
                    later_latency=k > 0 and comp == "latency", config=config if k == 0 else None)

        def wall_left():
            return seconds - (time.perf_counter() - t0)

        if on_model and k == 0:
            on_model(sm.m, size)
        out = solve_with_restarts(solver, sm.m, comp, exprs, configure, wall_left,
                                  None if det_seconds is None else det_seconds - det_used, seed,
                                  on_solution if k == 0 else None,
                                  lambda: control is not None and control.interrupted, restarts=k == 0,
                                  first=first_attempt if k == 0 else 0)
        det_used += out.det
        conflicts += out.conflicts
        branches += out.branches
        if k == 0:
            pre = out.presolve
            tried = (out.attempts, out.last)
        status = out.status
        if status == cp_model.INFEASIBLE and k == 0 and cutoff is not None:
            return SegmentResult(names, fname, "PRUNED", None, (cutoff + 1,), seconds=time.perf_counter() - t1,
                                 build_seconds=build, model_size=size, presolve=pre,
                                 deterministic_time=det_used)
        if status == cp_model.INFEASIBLE and k == 0:
            return SegmentResult(names, fname, "INFEASIBLE", None, (0,), seconds=time.perf_counter() - t1,
                                 build_seconds=build, why=_diagnose(inst, names, fname), model_size=size,
                                 presolve=pre, deterministic_time=det_used)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if k == 0:
                return SegmentResult(names, fname, "UNKNOWN", None, (out.bound,),
                                     seconds=time.perf_counter() - t1, build_seconds=build, model_size=size,
                                     presolve=pre, deterministic_time=det_used)
            status_name = "FEASIBLE"  # the second stage did not finish: keep the first stage's solution
            break
        value = out.values[comp]
        if k == 0:
            first_bound = value if status == cp_model.OPTIMAL else out.bound
        if status != cp_model.OPTIMAL:
            status_name = "FEASIBLE"
        solution = out.solution
        names_ = [v.name for v in sm.m.proto.variables]
        repeated = {nm for nm, c in Counter(names_).items() if c > 1}   # names shared by candidates: no hint
        named = {names_[i]: v for i, v in solution.items() if names_[i] and names_[i] not in repeated}
        mapping = sm.decode(lambda v: _lookup(solution, v))
        values = tuple(out.values[c] for c in components)
        energy = out.values.get("energy")
        latency = out.values.get("latency")
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
                         conflicts=conflicts, branches=branches,
                         deterministic_time=det_used, presolve=pre,
                         named_solution=named if values is not None else {}, attempts=tried[0],
                         last_attempt=tried[1])


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
            if sum(wl.bits(t) for t in must) > cap:
                return (f"einsum {e.name}: level {lv.name} must keep {must} (one element each at least); "
                        f"capacity is {cap} bits")
    if fname is not None:
        cap = next(lv for lv in arch.levels if lv.name == fname).capacity(wl.word_bits)
        return (f"fusing {'+'.join(names)} at {fname}: no tiling of the shared loops makes the intermediates' "
                f"tiles fit {fname}'s capacity of {cap} bits")
    return f"einsum {names[0]}: no tiling fits the capacities of its levels"
