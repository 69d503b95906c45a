"""The mapper: one exact CP-SAT model per fusion segment, a shortest path over the chain, decode and verify.

OPT = min over partitions of the cascade into consecutive groups of Σ OPT(group), because groups run in
sequence with their own buffers (docs/model.md §5–6): energy and latency both add up over groups. The same
recursion over the segments' proven lower bounds gives a proven lower bound for the whole cascade, so the
result is OPTIMAL exactly when every segment on which the answer depends was proven.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pickle
import time
from typing import Callable, Optional

from mapsolve.model.spec import Instance, Mapping

from .certify import CERTIFY_MODES, certificates, certified, replication_rank
from .construct import constructive_mapping
from .bounds import ChainFloors
from .limits import BUILD_CAP_DET, BUILD_OP_DET, CONSTRUCT_SHARE, EVALUATION_DET, MIN_BUILD_DET, PLAN_DET, Allowance
from .paths import Unreached, _merge, _path, combine, lower_bounds
from .results import SegmentResult, SolveResult, SolverError, VerificationError
from . import parallel
from .segment_solve import Control, UnitTooFine, solve_segment
from .incumbent import seed_results
from .cache import SegmentCache, instance_key
from .plans import PlanSpace, plan_count, segment_plans

__all__ = ["OBJECTIVES", "Control", "PlanSpace", "SegmentResult", "SolveResult", "SolverError", "VerificationError",
           "plan_count", "segment_plans", "solve", "solve_segment"]

OBJECTIVES = ("energy", "latency", "energy,latency", "latency,energy")


def _components(objective: str) -> list[str]:
    if objective not in OBJECTIVES:
        raise SolverError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    return objective.split(",")


def solve(inst: Instance, objective: Optional[str] = None, time_limit: Optional[float] = None,
          workers: Optional[int] = None, seed: Optional[int] = None,
          progress: Optional[Callable[..., None]] = None, log=None,
          events: Optional[Callable[[dict], None]] = None, control: Optional[Control] = None,
          on_model: Optional[Callable[[str, object, dict], None]] = None,
          deterministic_time: Optional[float] = None, certify: str = "auto",
          cache: Optional[SegmentCache] = None, cpsat_workers: int = 1,
          caps: Optional[dict] = None) -> SolveResult:
    """Find a mapping minimising `objective`, prove it optimal when time allows, decode and verify it.

    `caps` ({"energy": fJ, "latency": cycles}, the most each may be) and the objective "edp" (energy x latency)
    do not decompose over fused groups: they are read off the exact energy-latency front (solver/pareto.py).

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

    `workers`: processes solving segments at once (solver/parallel.py; the instance's `solver.workers` when not
    given), each CP-SAT search with `cpsat_workers` threads (1: deterministic). A CP-SAT log or exported models
    (`log`, `on_model`) need the models in this process: the search then runs in it alone.
    """
    objective = objective or inst.solver.objective
    if caps or objective == "edp":
        from .pareto import solve_on_front
        if objective != "edp":
            _components(objective)
        return solve_on_front(inst, objective, dict(caps or {}), time_limit, deterministic_time, cpsat_workers,
                              seed, control, progress)
    cache = cache if cache is not None else SegmentCache()   # in memory: one run's proofs, shared by variants
    if inst.workload.variants:   # the least of the variants' optima (solver/variants.py)
        from .variants import solve_variants
        return solve_variants(solve, inst, objective, time_limit, deterministic_time, control, events, progress,
                              workers=workers, seed=seed, log=log, on_model=on_model, certify=certify, cache=cache,
                              cpsat_workers=cpsat_workers)
    opts = inst.solver
    objective = objective or opts.objective
    if time_limit is None:
        time_limit = opts.time_limit_s if deterministic_time is None else float("inf")
    workers = workers or opts.workers
    processes = workers if log is None and on_model is None and parallel.available() else 1
    seed = opts.seed if seed is None else seed
    components = _components(objective)
    if certify not in CERTIFY_MODES:
        raise SolverError(f"unknown certify mode {certify!r}; use one of {', '.join(CERTIFY_MODES)}")
    control = control or Control()
    started = time.perf_counter()
    share = 0.8 if replication_rank(inst, certify) is not None else 1.0
    # a valid mapping before any search (solver/incumbent.py); a function of the instance (and of its share of the
    # budget, solver/limits.py: local search stops when that is spent), so cached too
    allowance = Allowance(CONSTRUCT_SHARE * time_limit,
                          None if deterministic_time is None else CONSTRUCT_SHARE * deterministic_time / EVALUATION_DET)
    what = f"constructive {components[0]}"
    if deterministic_time is not None:
        what += f" within {allowance.units:.6g} evaluations"
    if time_limit != float("inf"):
        what += f" within {allowance.seconds:.3g} s"
    built = cache.mapping(instance_key(inst, what),
                          lambda: constructive_mapping(inst, components[0], allowance=allowance))
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
            res = _search(inst, objective, components, budget, processes, cpsat_workers, seed, progress, log, events,
                          control, on_model, unit, built, cache)
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
                      control=control, certify="cheap", cache=cache, cpsat_workers=cpsat_workers,
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


#: Unreached plans listed one by one in the result (UNKNOWN, their floor as bound) up to this many; beyond, they are
#: bounded together (paths.py `Unreached`) and counted in the diagnosis.
LIST_UNREACHED = 5000
#: Notes on segments CP-SAT cannot represent, named in the diagnosis (the rest counted).
NOTES_SHOWN = 3


def _search(inst: Instance, objective: str, components: list[str], budget: Budget, processes: int,
            cpsat_workers: int, seed: int, progress, log, events, control: Control, on_model, unit: int,
            first_mapping: Optional[Mapping], cache: SegmentCache) -> SolveResult:
    """One search with energy in units of `unit` fJ (see `solve`), starting from the constructive mapping
    `first_mapping` cut into segments (solver/incumbent.py).

    Plans are met lazily in the search's order (`PlanSpace.order`): each costs O(1) before its model (an
    incremental floor, a cut-off from the best prefix costs kept up to date), and the deadline is checked before
    each one, so an instance with millions of plans answers in its time limit; the plans never reached bound the
    result through `Unreached` (or, when few, each with its floor)."""
    space = PlanSpace(inst)
    names, index, n = space.names, space.index, space.n
    total_plans = space.count()
    t0 = time.perf_counter()
    det_offset = [0.0]
    floors = ChainFloors(inst, components[0], unit)
    keys: list[tuple] = []                 # plan id -> key (i, j, f, top), ids given in the order met
    ids: dict[tuple, int] = {}
    plans: list[tuple] = []                # plan id -> (names, fusion level, levels above it)
    results: dict[int, SegmentResult] = {}
    by_end: dict[int, list[int]] = {}
    floor_k: dict[int, int] = {}
    hopeless: set[int] = set()             # no CP-SAT model (numbers beyond 64 bits): never retried
    notes: list[str] = []
    n_comp = len(components)

    def ident(key) -> int:
        k = ids.get(key)
        if k is None:
            k = ids[key] = len(keys)
            keys.append(key)
            plans.append(space.plan(key))
        return k

    def floor_of(k: int) -> int:
        """Plan k's floor (solver/paths.py `_floor`), computed once, incrementally (bounds.py `ChainFloors`)."""
        if k not in floor_k:
            i, j = keys[k][0], keys[k][1]
            floor_k[k] = floors.lone(i) if keys[k][2] is None else floors.fused(i, j)
        return floor_k[k]

    best: list[Optional[tuple]] = [None] * (n + 1)   # best known cost of the first j Einsums
    best[0] = tuple(0 for _ in components)
    valid = [0]                                      # best[0..valid[0]] are up to date

    def best_upto(J: int) -> None:
        for x in range(valid[0] + 1, J + 1):
            b = None
            for q in by_end.get(x, ()):
                r, i = results[q], keys[q][0]
                if r.values is not None and best[i] is not None:
                    t = tuple(a + c for a, c in zip(best[i], r.values))
                    if b is None or t < b:
                        b = t
            best[x] = b
        valid[0] = max(valid[0], J)

    def best_without(j: int, k: int) -> Optional[tuple]:
        """Best known cost of the first j Einsums by a path whose last segment is not plan k."""
        own = results.get(k)
        if own is None or own.values is None:
            best_upto(j)
            return best[j]
        best_upto(j - 1)
        b = None
        for q in by_end.get(j, ()):
            r, i = results[q], keys[q][0]
            if q != k and r.values is not None and best[i] is not None:
                t = tuple(a + c for a, c in zip(best[i], r.values))
                if b is None or t < b:
                    b = t
        return b

    def put(k: int, r: SegmentResult) -> None:
        old = results.get(k)
        results[k] = r
        i, j = keys[k][0], keys[k][1]
        if old is None:
            by_end.setdefault(j, []).append(k)
        ov, nv = (old.values if old is not None else None), r.values
        if ov == nv:
            return
        if nv is not None and (ov is None or nv < ov):
            if valid[0] >= j and best[i] is not None:
                t = tuple(a + c for a, c in zip(best[i], nv))
                if best[j] is None or t < best[j]:
                    best[j] = t
                    valid[0] = j   # the positions after j may improve
        else:
            valid[0] = min(valid[0], j - 1)

    # the constructive mapping's pieces (solver/incumbent.py), before any model
    t_seed = time.perf_counter()
    seeds = seed_results(inst, space, components, unit, first_mapping, floor_of=lambda p: floor_of(ident(space.key(p))))
    seed_seconds = time.perf_counter() - t_seed
    for plan, r in seeds.items():
        put(ident(space.key(plan)), r)
    # the final decode and certification evaluate the whole mapping again (about as long as the seeds took)
    budget.wall -= 2.5 * seed_seconds
    weight = lambda k: (keys[k][1] - keys[k][0]) ** 2   # noqa: E731  longer segments are the hard ones
    total_state: dict = {"runs": 0}
    frontier: list = [None]                # the key the first pass stopped at (None: it met every plan)
    prefix = floors.compute_prefix()

    def unreached_from(key) -> Optional[Unreached]:
        """The plans from `key` on in the search's order (it included), as `Unreached` edges."""
        if key is None:
            return None
        i, j, f, _ = key
        left = max(total_plans - len(keys), 0) + 1
        if f is None:
            return Unreached(prefix, i, 1, -1, left)
        return Unreached(prefix, None, j, i, left)

    def emit(record: dict) -> None:
        if events:
            events({"wall": round(time.perf_counter() - t0, 6), **record})

    def report_total(at=None, force: bool = False) -> None:
        """Emit the whole cascade's incumbent and lower bound when either improves (the bound at most every
        len(results)/100 segments: each costs a shortest path over every result)."""
        if not events:
            return
        best_upto(n)
        inc = best[n]
        if inc is not None and inc != total_state.get("incumbent"):
            total_state["incumbent"] = inc
            done = list(results.values())
            path = _path(done, index, n, n_comp)
            lower = lower_bounds(done, index, n, unreached_from(at))[n]
            emit({"type": "incumbent", "scope": "total", "objective": inc[0], "best_bound": lower,
                  "energy_fj": _total(r.energy_fj for r in path),
                  "latency_cycles": _total(r.latency_cycles for r in path)})
            total_state["runs"] = 0
        else:
            total_state["runs"] += 1
            if not force and total_state["runs"] < max(1, len(results) // 100):
                return
            total_state["runs"] = 0
            lower = lower_bounds(results.values(), index, n, unreached_from(at))[n]
        if lower is not None and lower != total_state.get("bound") and \
                (total_state.get("bound") is None or lower > total_state["bound"]):
            total_state["bound"] = lower
            emit({"type": "bound", "scope": "total", "objective": inc[0] if inc else None, "best_bound": lower})

    def prepare(k: int, share: float, attempt: str) -> dict:
        """Everything about plan k's solve that is fixed before it starts: its cut-off from the best known costs,
        its limits, and an answer already known (its floor above the cut-off, or a cached proof) in `r`."""
        plan = plans[k]
        i, j = keys[k][0], keys[k][1]
        # the segment's own earlier attempt is left out: a cut-off below its own incumbent would prune the segment
        # and drop the solution that was just proven best
        best_upto(i)
        bi, bj = best[i], best_without(j, k)
        cutoff = None
        if bi is not None and bj is not None:
            gap = bj[0] - bi[0]
            cutoff = gap - 1 if n_comp == 1 else gap
        floor = floor_of(k)
        if budget.det is not None:
            budget.det_used += PLAN_DET   # looking at a plan is work too: millions of them are not free
        seg = _label(inst, plan)
        label = f"{attempt} {k + 1}/{total_plans} {seg}"
        if progress:
            progress(label)
        seconds, det_seconds = budget.limits(share)
        job = {"k": k, "plan": plan, "cutoff": cutoff, "floor": floor, "seg": seg, "label": label,
               "attempt": attempt, "share": share, "base": bi[0] if bi is not None else None, "r": None,
               "entry": None, "seconds": seconds, "det_seconds": det_seconds, "det_at": det_offset[0]}
        if cutoff is not None and floor > cutoff:
            job["r"] = SegmentResult(plan[0], _fusion_name(inst, plan), "PRUNED", None, (floor,),
                                     why="its floor is above the cut-off", source="floor")
            return job
        job["entry"] = cache.entry(inst, plan, components, unit)
        if from_cache(job):
            return job
        # building may take what is left of the wall clock; with a deterministic budget, a count of building
        # operations (solver/limits.py BUILD_CAP_DET)
        job["build"] = (max(budget.wall_left(), 0.05) if budget.wall != float("inf") else None,
                        None if det_seconds is None else int(max(det_seconds, MIN_BUILD_DET) / BUILD_CAP_DET))
        return job

    def from_cache(job) -> bool:
        """Whether the cache answers plan `job` (a proof of this segment, or of one equal to it but for names);
        if so the answer is in job["r"]."""
        r = cache.get(job["entry"], job["cutoff"])
        if r is None:
            return False
        emit({"type": "segment_start", "segment": job["seg"], "attempt": job["attempt"], "cutoff": job["cutoff"],
              "cached": True})
        if progress:
            progress(f"{job['label']}: {r.status} (cached)")
        job["r"] = r
        return True

    def on_solution_of(job):
        def on_solution(value, bound, wall, det):
            gap_ = (value - bound) / max(abs(value), 1)
            if progress:
                progress(f"{job['label']}: incumbent {value} bound {bound:.6g} gap {100 * gap_:.2f}%",
                         transient=True)
            emit({"type": "incumbent", "scope": "segment", "segment": job["seg"], "objective": value,
                  "best_bound": bound, "gap": gap_, "deterministic_time": job["det_at"] + det})
        return on_solution

    def on_bound_of(job):
        return lambda bound: emit({"type": "bound", "scope": "segment", "segment": job["seg"], "best_bound": bound})

    def model_seen_of(job):
        def model_seen(model, size):
            emit({"type": "segment_start", "segment": job["seg"], "attempt": job["attempt"], "cutoff": job["cutoff"],
                  "time_limit": round(job["share"], 4), **size})
            if on_model and model is not None:
                on_model(f"{job['k'] + 1:03d}-{job['attempt']}-{job['seg']}", model, size)
        return model_seen

    def solve_here(job) -> SegmentResult:
        """Plan `job`'s CP-SAT solve in this process."""
        return solve_segment(inst, job["plan"], components, job["seconds"], cpsat_workers, seed, log=log,
                             cutoff=job["cutoff"], on_solution=on_solution_of(job) if (progress or events) else None,
                             on_bound=on_bound_of(job) if events else None, control=control,
                             on_model=model_seen_of(job), energy_unit=unit, det_seconds=job["det_seconds"],
                             build=job["build"])

    def finish(job, r: SegmentResult) -> None:
        """Take plan `job`'s answer into the search: budget, bound, merge with an earlier attempt, events."""
        k, floor, seg, label = job["k"], job["floor"], job["seg"], job["label"]
        if job["r"] is None:   # solved now (not pruned by its floor, not cached)
            if r.source in ("unrepresentable", "unbuilt"):
                hopeless.add(k)
                seeded = results.get(k) is not None and results[k].values is not None
                notes.append(f"{r.why}; " + ("kept the constructive mapping and the floor bound" if seeded else
                                             "no model, the floor bound"))
                if progress:
                    progress(f"{label}: {r.why}")
            elif not control.interrupted and r.source != "interrupted":
                cache.put(job["entry"], r)
        det_offset[0] += r.deterministic_time
        budget.det_used += r.deterministic_time
        if budget.det is not None and r.source != "cache":   # building a model is work CP-SAT does not count
            budget.det_used += r.build_ops * BUILD_OP_DET
        if r.status in ("FEASIBLE", "UNKNOWN"):  # an unproven segment is still worth at least its floor
            if floor > r.bound[0]:
                r = dataclasses.replace(r, bound=(floor, *r.bound[1:]))
        if r.status == "PRUNED":
            r.base = job["base"]
        if results.get(k) is not None:  # a second attempt: keep the better solution and the better bound
            r = _merge(results[k], r)
        put(k, r)
        emit({"type": "segment_end", "segment": seg, "status": r.status,
              "objective": r.values[0] if r.values else None, "best_bound": r.bound[0],
              # in a coarser energy unit the segment's energy is priced in that unit, not in fJ
              "energy_fj": r.energy_fj if unit == 1 else None, "latency_cycles": r.latency_cycles,
              **({"energy_units": r.energy_fj, "energy_unit_fj": unit} if unit > 1 else {}), "conflicts": r.conflicts,
              "branches": r.branches, "deterministic_time": det_offset[0], "presolve": r.presolve,
              "cached": r.source == "cache", **({"skipped": r.why} if r.source == "floor" else {})})
        report_total(keys[k])

    def run(k: int, share: float, attempt: str) -> None:
        job = prepare(k, share, attempt)
        finish(job, job["r"] if job["r"] is not None else solve_here(job))

    def run_batch(ks: list[int], shares: list[float], attempt: str) -> bool:
        """Plans `ks` solved at once in the worker processes (solver/parallel.py): every cut-off and share fixed
        before any of them starts, the answers taken back in order. Plans equal but for names (the Q, K and V
        projections) are solved once: the others take the proof from the cache, or are solved after. False when
        interrupted (the plans not finished keep their floor, or their earlier result)."""
        jobs = [prepare(k, share, attempt) for k, share in zip(ks, shares)]
        leaders: dict = {}
        for job in jobs:
            if job["r"] is None:
                leaders.setdefault(job["entry"][0], job)
        got = in_workers(list(leaders.values()))
        later = []
        for job in jobs:
            if job["r"] is not None:
                finish(job, job["r"])
            elif job["k"] in got:
                finish(job, got[job["k"]])
            elif control.interrupted:
                interrupted_at(job)
            elif from_cache(job):   # the same model as an earlier plan of this wave, which is finished by now
                finish(job, job["r"])
            else:
                later.append(job)
        got = in_workers(later)
        for job in later:
            if job["k"] in got:
                finish(job, got[job["k"]])
            else:
                interrupted_at(job)
        return not control.interrupted

    def interrupted_at(job) -> None:
        """A plan interrupted before its worker finished: its floor bounds it (an earlier result is kept)."""
        if results.get(job["k"]) is None:
            finish(job, SegmentResult(job["plan"][0], _fusion_name(inst, job["plan"]), "UNKNOWN", None,
                                      (job["floor"],), why="interrupted", source="interrupted"))

    def in_workers(todo: list[dict]) -> dict:
        """Plan k -> SegmentResult for the jobs `todo` solved in the worker processes (those finished)."""
        if not todo or control.interrupted:
            return {}
        by_tag = {job["k"]: job for job in todo}
        blob_key, blob = instance_blob()
        tasks = [(blob_key, blob, job["k"], job["plan"], components, job["seconds"], seed, job["cutoff"], unit,
                  job["det_seconds"], job["build"], cpsat_workers) for job in todo]

        def handle(tag, kind, payload):
            job = by_tag[tag]    # only this batch's events reach here (parallel.run_batch)
            if kind == "model":
                model_seen_of(job)(None, payload[0])
            elif kind == "solution" and (progress or events):
                on_solution_of(job)(*payload)
            elif kind == "bound" and events:
                on_bound_of(job)(*payload)
        return parallel.run_batch(processes, tasks, handle, lambda: control.interrupted)

    blob_cache: list = []

    def instance_blob() -> tuple[str, bytes]:
        if not blob_cache:
            blob = pickle.dumps(inst)
            blob_cache.append((hashlib.sha256(blob).hexdigest(), blob))
        return blob_cache[0]

    def stale_or_unproven() -> list[int]:
        """Unproven segments, and pruned ones whose cut-off was computed from a since-improved prefix."""
        best_upto(n)
        out = []
        for k in sorted(results):
            r = results[k]
            if k in hopeless:
                continue
            i = keys[k][0]
            if r.status in ("FEASIBLE", "UNKNOWN") or (r.status == "PRUNED" and r.base is not None
                                                       and best[i] is not None and best[i][0] < r.base):
                out.append(k)
        return out

    report_total(next(iter(space.order()), None), force=True)   # the constructive incumbent, before any model
    met = 0
    # in batches each plan gets its share as if alone: times the processes under a wall limit, which they share
    speedup = processes if budget.det is None else 1
    if processes == 1:
        for key in space.order():
            left = budget.left()
            if control.interrupted or left <= 0:   # out of time: the rest are not even built (floors, any seed)
                frontier[0] = key
                break
            run(ident(key), max(left / max(total_plans - met, 1), 0.05), "segment")
            met += 1
    else:   # in batches (solver/parallel.py)
        order = parallel.waves(space.order())
        for batch in order:
            left = budget.left()
            if control.interrupted or left <= 0:
                frontier[0] = batch[0]
                break
            share = max(min(left, speedup * left / max(total_plans - met, 1)), 0.05)
            if not run_batch([ident(key) for key in batch], [share] * len(batch), "segment"):
                frontier[0] = next(iter(next(order, [])), None)
                met += len(batch)
                break
            met += len(batch)
    while frontier[0] is None and not control.interrupted:
        todo = stale_or_unproven()
        left = budget.left()
        if not todo or left <= 0.05:
            break
        if processes == 1:
            for n_done, k in enumerate(todo):
                left = budget.left()
                if left <= 0.05 or control.interrupted:
                    break
                run(k, left * weight(k) / sum(weight(q) for q in todo[n_done:]), "retry")
            continue
        for start in range(0, len(todo), parallel.BATCH):
            left = budget.left()
            if left <= 0.05 or control.interrupted:
                break
            chunk, rest = todo[start:start + parallel.BATCH], todo[start:]
            total_weight = sum(weight(q) for q in rest)
            run_batch(chunk, [min(left, speedup * left * weight(k) / total_weight) for k in chunk], "retry")
    unreached = None
    if frontier[0] is not None:
        left_over = total_plans - met
        if left_over <= LIST_UNREACHED:   # few: each with its floor (cheap, incremental), listed in the result
            started = False
            for key in space.order():
                started = started or key == frontier[0]
                if not started:
                    continue
                k = ident(key)
                if k not in results:
                    put(k, SegmentResult(plans[k][0], _fusion_name(inst, plans[k]), "UNKNOWN", None,
                                         (floor_of(k),), why="not reached within the limit", source="floor"))
        else:
            unreached = unreached_from(frontier[0])
            notes.append(f"{left_over} of {total_plans} segment plans not reached within the limit: bounded by "
                         f"their compute {'energy' if components[0] == 'energy' else 'time (0)'}")
    report_total(frontier[0], force=True)
    elapsed = time.perf_counter() - t0
    done = [results[k] for k in sorted(results)]
    build = sum(r.build_seconds for r in done)
    res = combine(inst, names, done, components, objective, build, elapsed - build, unit, unreached)
    if notes:
        shown = notes[:NOTES_SHOWN] + ([f"and {len(notes) - NOTES_SHOWN} more segments like these"]
                                       if len(notes) > NOTES_SHOWN else [])
        res.diagnosis = "; ".join([res.diagnosis] * bool(res.diagnosis) + shown)
    if control.interrupted and res.status != "OPTIMAL":
        res.status = "INTERRUPTED"
    return res


def _label(inst: Instance, plan) -> str:
    fname = _fusion_name(inst, plan)
    return "+".join(plan[0]) + (f"@{fname}" if fname is not None else "")
