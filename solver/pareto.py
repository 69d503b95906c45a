"""Exact energy–latency Pareto fronts, objective caps and EDP, by ε-constraints per segment.

Why this is exact: groups run in sequence with their own buffers, so a cascade's energy and latency are both sums
over its groups (docs/model.md §5–6). The cascade's front is therefore the min-plus (Minkowski) combination of
the segments' fronts over the same shortest-path recursion as solver/search.py, filtered to its non-dominated
points; a cap or EDP, which do not decompose over groups, are read off that front.

One segment's front, by ε-constraint on latency from the energy end: minimise energy, then latency at that
energy, subject to latency <= ε; the answer (e, l) is a non-dominated point when both stages are proven, and
every mapping of the segment with latency in [l, ε] costs at least the first stage's proven bound b. So the next
ε is l - 1, and the segment is done when latency <= ε has no mapping (INFEASIBLE). Each step therefore leaves a
*lower point* (b, l): every mapping of the segment is weakly dominated by one of them, and where time ran out a
last lower point (b, the segment's latency floor) covers what is left.

The same recursion over lower points gives the cascade's *lower front*. A point of the cascade's front is proven
non-dominated when no lower point lies strictly below it; the front is complete when every lower point is a
point found. A segment is not solved at all (pruned) when its lowest conceivable points, added to the prefix's
lower front, are each weakly dominated by points already found: it cannot add anything to the front.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from mapsolve.model import MappingError, evaluate
from mapsolve.model.spec import Instance, Mapping

from .bounds import ChainFloors
from .paths import energy_in_units
from .plans import PlanSpace
from .results import SegmentResult, SolveResult, SolverError, VerificationError
from .segment_solve import Control, UnitTooFine, solve_segment

COMPONENTS = ["energy", "latency"]


# ------------------------------------------------------------------------------------------------------------
# Points and fronts
# ------------------------------------------------------------------------------------------------------------
def non_dominated(points: list, key=lambda p: (p[0], p[1])) -> list:
    """The points no other point weakly dominates (one per distinct (energy, latency)), by latency ascending
    (energy then descends)."""
    out = []
    least = None
    for p in sorted(points, key=lambda p: (key(p)[1], key(p)[0])):
        e = key(p)[0]
        if least is None or e < least:
            out.append(p)
            least = e
    return out


def weakly_dominated(front: list, e: int, l: int) -> bool:
    """Whether some point of `front` (by latency ascending) has energy <= e and latency <= l."""
    return any(p[1] <= l and p[0] <= e for p in front)


def within(caps: dict, e: int, l: int) -> bool:
    return e <= caps.get("energy", e) and l <= caps.get("latency", l)


@dataclass
class FrontPoint:
    """One point of a cascade's front: a complete mapping, its exact figures, whether it is proven
    non-dominated (no lower point below it)."""
    energy: int                 # in `energy_unit_fj` fJ (the unit the segments were solved in)
    latency_cycles: int
    energy_fj: int              # exact, from the evaluator
    mapping: Mapping
    proven: bool
    groups: list = field(default_factory=list)   # the fused groups, e.g. ["QK+MX@GLB"]


@dataclass
class Front:
    """A cascade's energy–latency front (solver/pareto.py's module docstring)."""
    points: list[FrontPoint]          # by latency ascending
    lower: list[tuple[int, int]]      # the lower front: every mapping is weakly dominated by one of these
    complete: bool                    # every lower point is a point found: nothing else is non-dominated
    energy_unit_fj: int = 1
    caps: dict = field(default_factory=dict)
    segments: list[SegmentResult] = field(default_factory=list)   # every ε-step's result
    pruned: int = 0                   # segment plans that provably could not add a point
    unfinished: list[str] = field(default_factory=list)   # segments whose fronts ran out of time
    seconds: float = 0.0
    deterministic_time: float = 0.0
    variant: Optional[str] = None

    def largest_gap(self) -> Optional[dict]:
        """The widest step between neighbouring points (latency and energy ratios), where an unseen point could
        hide if the front is not complete."""
        if len(self.points) < 2:
            return None
        best = None
        for a, b in zip(self.points, self.points[1:]):
            r = (b.latency_cycles / max(a.latency_cycles, 1), a.energy_fj / max(b.energy_fj, 1))
            if best is None or r[0] * r[1] > best[0] * best[1]:
                best = (*r, a, b)
        return {"latency_ratio": best[0], "energy_ratio": best[1],
                "between": [[best[2].energy_fj, best[2].latency_cycles], [best[3].energy_fj, best[3].latency_cycles]]}


# ------------------------------------------------------------------------------------------------------------
# One segment
# ------------------------------------------------------------------------------------------------------------
@dataclass
class SegmentFront:
    points: list                  # (energy, latency, (einsum mappings, group)) found, by latency descending
    lower: list                   # (energy, latency) lower points
    results: list                 # every step's SegmentResult
    complete: bool


def segment_front(inst: Instance, plan, unit: int, floors: tuple[int, int], seconds: float,
                  det_seconds: Optional[float], workers: int, seed: int, caps: dict,
                  useless: Callable[[int, int], bool], control: Control, max_steps: Optional[int] = None
                  ) -> SegmentFront:
    """The ε-constraint sweep of one segment (module docstring), within `seconds` (and `det_seconds`), at most
    `max_steps` solves. `useless(e, l)`: whether points at or above (e, l) can no longer add to the cascade's
    front (the sweep stops there: a lower point (e, l) is all it leaves). With `max_steps` >= 2 the steps are
    spread over the front instead (`spread_front`)."""
    if max_steps is not None and max_steps >= 2:
        return spread_front(inst, plan, unit, floors, seconds, det_seconds, workers, seed, caps, useless, control,
                            max_steps)
    e_floor, l_floor = floors
    t0 = time.perf_counter()
    det_used = 0.0
    eps = caps.get("latency")
    least = e_floor                  # every mapping still to be covered costs at least this
    points, lower, results = [], [], []
    complete = False
    steps = 0
    while True:
        if useless(least, l_floor):
            lower.append((least, l_floor))
            complete = True
            break
        wall = seconds - (time.perf_counter() - t0)
        det = None if det_seconds is None else det_seconds - det_used
        if control.interrupted or wall <= 0.01 or (det is not None and det <= 0.001) or \
                (max_steps is not None and steps >= max_steps):
            lower.append((least, l_floor))
            break
        step_caps = {k: v for k, v in (("energy", caps.get("energy")), ("latency", eps)) if v is not None}
        r = solve_segment(inst, plan, COMPONENTS, wall, workers, seed, control=control, energy_unit=unit,
                          det_seconds=det, caps=step_caps, build=(max(wall, 0.05), None))
        steps += 1
        results.append(r)
        det_used += r.deterministic_time
        if r.status == "INFEASIBLE":    # no mapping with latency <= eps (within the caps): all covered
            complete = True
            break
        if r.values is None:            # out of time: its bound covers the rest
            lower.append((max(least, r.bound[0]), l_floor))
            break
        e, l = r.values
        first_proven = r.status == "OPTIMAL" or r.bound[0] == e
        b = e if first_proven else max(least, r.bound[0])
        points.append((e, l, r.mapping))
        lower.append((b, l))
        # below l: energy at least b, and more than e when both stages were proven (e's least latency is l)
        least = max(least, b + (1 if r.status == "OPTIMAL" else 0))
        if l <= l_floor:
            complete = True
            break
        eps = l - 1
    return SegmentFront(points, non_dominated(lower), results, complete)


class _Knowledge:
    """What a segment's solves have proven, as a lower bound LB(L) on the energy of any mapping of latency L.

    An energy-first solve under latency <= ε answering (e, l) proves: latency <= ε implies energy >= b (b = e when
    its first stage is proven, else its bound), and, when both stages are proven, latency < l implies energy > e.
    A latency-first solve proves latency >= λ for every mapping (and, when both stages are proven, energy >= e at
    latency <= l, the least latency). LB is non-increasing in L and changes only at ε + 1, at l and at λ, so the
    lower points (LB(L), L) at those latencies cover every mapping not found."""

    def __init__(self, e_floor: int, l_floor: int, cap_l: Optional[int]):
        self.e_floor, self.lam, self.cap_l = e_floor, l_floor, cap_l
        self.records: list = []   # (ε or None, b, l or None, strict)

    def add(self, eps: Optional[int], b: int, l: Optional[int], strict: bool) -> None:
        self.records.append((eps, b, l, strict))

    def lb(self, L: int) -> int:
        return max([self.e_floor] + [b + (1 if strict and L < l else 0) for eps, b, l, strict in self.records
                                     if eps is None or L <= eps])

    def lower(self) -> list:
        cands = {self.lam} | {eps + 1 for eps, _, _, _ in self.records if eps is not None} | \
            {l for _, _, l, _ in self.records if l is not None}
        cands = [L for L in cands if L >= self.lam and (self.cap_l is None or L <= self.cap_l)]
        return non_dominated([(self.lb(L), L) for L in cands])

    def open_from(self, lo: tuple, hi: tuple) -> Optional[int]:
        """The least latency strictly between two neighbouring found points where a mapping could still beat `lo`'s
        energy (a non-dominated point not found yet), or None when the gap between them is closed."""
        top = hi[1] - 1
        if top <= lo[1] or self.lb(top) >= lo[0]:   # LB is non-increasing: its least value there is at the top
            return None
        breaks = sorted({eps + 1 for eps, _, _, _ in self.records if eps is not None} |
                        {l for _, _, l, _ in self.records if l is not None} | {lo[1] + 1})
        return next((L for L in breaks if lo[1] < L <= top and self.lb(L) < lo[0]), top)


def spread_front(inst: Instance, plan, unit: int, floors: tuple[int, int], seconds: float,
                 det_seconds: Optional[float], workers: int, seed: int, caps: dict,
                 useless: Callable[[int, int], bool], control: Control, max_steps: int) -> SegmentFront:
    """A segment's front in at most `max_steps` solves spread over it: the energy end, the latency end, then
    ε in the middle of the widest gap still open between neighbouring points (by the larger of their latency
    and energy ratios), and just below its upper point once the middle found nothing new. Every answer is kept as proven knowledge (`_Knowledge`), so the lower points are exact
    whatever the order of the solves; the segment is complete when every gap is closed."""
    e_floor, l_floor = floors
    cap_l = caps.get("latency")
    know = _Knowledge(e_floor, l_floor, cap_l)
    t0 = time.perf_counter()
    det_used = 0.0
    points, results = [], []
    steps = 0

    def solve(eps: Optional[int], components: list[str]):
        nonlocal steps, det_used
        # up to a third of what is left: the ends and the first gaps matter most, and a solve that finishes early
        # leaves the rest to the later ones
        left = min(max_steps - steps, 3)
        wall = (seconds - (time.perf_counter() - t0)) / left
        det = None if det_seconds is None else (det_seconds - det_used) / left
        if control.interrupted or wall <= 0.01 or (det is not None and det <= 0.001):
            return None
        step_caps = {k: v for k, v in (("energy", caps.get("energy")), ("latency", eps)) if v is not None}
        r = solve_segment(inst, plan, components, wall, workers, seed, control=control, energy_unit=unit,
                          det_seconds=det, caps=step_caps, build=(max(wall, 0.05), None))
        steps += 1
        det_used += r.deterministic_time
        results.append(r)
        return r

    def energy_first(eps: Optional[int]) -> bool:
        """One ε-solve; False when it gave nothing to go on (out of time, or no mapping at all)."""
        r = solve(eps, COMPONENTS)
        if r is None:
            return False
        if r.status == "INFEASIBLE":             # nothing within latency <= ε: every mapping is slower
            know.lam = max(know.lam, (eps if eps is not None else 0) + 1)
            if eps is None or eps == cap_l:
                know.lam = None                  # no mapping at all within the caps
            return eps is not None and eps != cap_l
        if r.values is None:
            know.add(eps, max(e_floor, r.bound[0]), None, False)
            return False
        e, l = r.values
        proven = r.status == "OPTIMAL" or r.bound[0] == e
        know.add(eps, e if proven else max(e_floor, r.bound[0]), l, r.status == "OPTIMAL")
        points.append((e, l, r.mapping))
        return True

    if not energy_first(cap_l) or know.lam is None:
        lower = [] if know.lam is None else know.lower()
        return SegmentFront(points, lower, results, know.lam is None)
    r = solve(cap_l, ["latency", "energy"])      # the latency end
    if r is not None and r.values is not None:
        l, e = r.values
        know.lam = max(know.lam, r.bound[0])
        if r.status == "OPTIMAL":
            know.add(l, e, None, False)
        points.append((e, l, r.mapping))
    elif r is not None and r.status != "INFEASIBLE":
        know.lam = max(know.lam, r.bound[0])
    while steps < max_steps:
        found = sorted({(e, l) for e, l, _ in points}, key=lambda q: -q[1])   # latency descending
        gaps = []
        for hi, lo in zip(found, found[1:]):
            a = know.open_from(lo, hi)
            if a is not None and not useless(know.lb(hi[1] - 1), a):   # the gap's lowest conceivable point
                gaps.append((max(hi[1] / max(lo[1], 1), lo[0] / max(hi[0], 1)), a, hi, lo[1]))
        tail = found[-1]   # below the fastest point found, any energy would be a new point
        if know.lam < tail[1] and not useless(know.lb(tail[1] - 1), know.lam):
            gaps.append((tail[1] / max(know.lam, 1), know.lam, tail, know.lam - 1))
        if not gaps:
            break
        _, a, hi, lo_l = max(gaps, key=lambda g: (g[0], -g[1]))
        # the gap's middle first; once a probe there found nothing new (the open part starts above the lower
        # point), just below the upper point: that finds the upper point's neighbour or closes the gap at once
        before = len(results)
        energy_first((a + hi[1] - 1) // 2 if a <= lo_l + 1 else hi[1] - 1)
        if control.interrupted or len(results) == before or results[-1].status not in ("OPTIMAL", "FEASIBLE",
                                                                                       "INFEASIBLE"):
            break   # out of time (or interrupted): what is proven so far stands
    lower = know.lower()
    found = {(e, l) for e, l, _ in points}
    complete = all(q in found or useless(*q) for q in lower)
    return SegmentFront(non_dominated(points), lower, results, complete)


# ------------------------------------------------------------------------------------------------------------
# The cascade
# ------------------------------------------------------------------------------------------------------------
def _order(space: PlanSpace) -> list:
    """Plans by their last Einsum, shortest first: every prefix's front is final before a plan extends it."""
    return sorted(space.order(), key=lambda k: (k[1], k[1] - k[0]))


def pareto_front(inst: Instance, time_limit: Optional[float] = None, deterministic_time: Optional[float] = None,
                 caps: Optional[dict] = None, max_steps: Optional[int] = None, workers: int = 1,
                 seed: Optional[int] = None, control: Optional[Control] = None,
                 progress: Optional[Callable[..., None]] = None) -> Front:
    """The energy–latency front of `inst` (over every variant), within the limits; `caps` (energy in fJ,
    latency in cycles) restrict it to the mappings within them. `max_steps`: at most this many ε-solves per
    segment (a partial front, said so). With `deterministic_time` the wall clock applies only when given."""
    caps = dict(caps or {})
    control = control or Control()
    if inst.workload.variants:
        from mapsolve.model.variants import alternatives
        alts = alternatives(inst)
        fronts = []
        t0 = time.perf_counter()
        for k, (name, alt) in enumerate(alts):
            share = lambda x: None if x is None else x / (len(alts) - k)   # noqa: E731
            left_wall = None if time_limit is None else time_limit - (time.perf_counter() - t0)
            left_det = None if deterministic_time is None else deterministic_time - sum(
                f.deterministic_time for f in fronts)
            f = pareto_front(alt, share(left_wall), share(left_det), caps, max_steps, workers, seed, control, progress)
            for p in f.points:
                p.mapping = p.mapping.model_copy(update={"variant": name})
            fronts.append(dataclasses.replace(f, variant=name))
        return _union(fronts)
    unit = 1
    while True:
        try:
            return _front(inst, time_limit, deterministic_time, caps, max_steps, workers, seed, control, progress,
                          unit)
        except UnitTooFine as exc:
            unit = max(exc.unit, unit * 10)


def _union(fronts: list[Front]) -> Front:
    """The front of a disjoint union of mapspaces (variants): the non-dominated points of all of them."""
    units = {f.energy_unit_fj for f in fronts}
    if len(units) > 1:
        raise SolverError("the variants' fronts were solved in different energy units; compare them one by one")
    pts = non_dominated([p for f in fronts for p in f.points], key=lambda p: (p.energy, p.latency_cycles))
    lower = non_dominated([q for f in fronts for q in f.lower])
    for p in pts:
        p.proven = not any(q[0] <= p.energy and q[1] <= p.latency_cycles and q != (p.energy, p.latency_cycles)
                           for q in lower)
    return Front(pts, lower, all(f.complete for f in fronts) and _covers(pts, lower), units.pop(), fronts[0].caps,
                 [s for f in fronts for s in f.segments], sum(f.pruned for f in fronts),
                 [u for f in fronts for u in f.unfinished], sum(f.seconds for f in fronts),
                 sum(f.deterministic_time for f in fronts))


def _covers(points: list[FrontPoint], lower: list) -> bool:
    found = {(p.energy, p.latency_cycles) for p in points}
    return all(q in found for q in lower)


def _front(inst, time_limit, deterministic_time, caps, max_steps, workers, seed, control, progress, unit) -> Front:
    t0 = time.perf_counter()
    seed = inst.solver.seed if seed is None else seed
    if time_limit is None:
        time_limit = inst.solver.time_limit_s if deterministic_time is None else float("inf")
    space = PlanSpace(inst)
    n = space.n
    # caps in the unit the segments are solved in (energy rounded down per event: a cap in units rounds down too)
    ucaps = {k: (v // unit if k == "energy" else v) for k, v in caps.items()}
    fe, fl = ChainFloors(inst, "energy", unit), ChainFloors(inst, "latency", unit)
    found: list = [None] * (n + 1)    # per prefix: (energy, latency, chain) points, non-dominated
    lower: list = [None] * (n + 1)    # per prefix: lower points
    found[0], lower[0] = [(0, 0, None)], [(0, 0)]
    cand_found: dict[int, list] = {}
    cand_lower: dict[int, list] = {}
    keys = _order(space)
    det_used = 0.0
    results: list[SegmentResult] = []
    pruned = 0
    unfinished = []
    done_upto = 0

    def close(j: int) -> None:
        found[j] = non_dominated(cand_found.pop(j, []))
        lower[j] = non_dominated(cand_lower.pop(j, []))

    for n_done, key in enumerate(keys):
        i, j, f, _ = key
        while done_upto + 1 < j:
            done_upto += 1
            close(done_upto)
        if not lower[i]:
            continue                   # no mapping of the first i Einsums: nothing to extend
        plan = space.plan(key)
        floors = (fe.lone(i), fl.lone(i)) if f is None else (fe.fused(i, j), fl.fused(i, j))
        here = cand_found.setdefault(j, [])

        def useless(e: int, l: int) -> bool:
            return all(not within(ucaps, q[0] + e, q[1] + l) or weakly_dominated(here, q[0] + e, q[1] + l)
                       for q in lower[i])
        label = "+".join(plan[0]) + (f"@{inst.architecture.levels[f].name}" if f is not None else "")
        if useless(*floors):
            pruned += 1
            continue
        left = len(keys) - n_done
        wall_left = time_limit - (time.perf_counter() - t0)
        det = None if deterministic_time is None else max(deterministic_time - det_used, 0.0) / left
        if control.interrupted or wall_left <= 0 or (det is not None and det <= 0.001):
            # out of time: no model at all, its floors bound it
            unfinished.append(label)
            cand_lower.setdefault(j, []).extend((q[0] + floors[0], q[1] + floors[1]) for q in lower[i])
            cand_lower[j] = non_dominated(cand_lower[j])
            continue
        if progress:
            progress(f"front {n_done + 1}/{len(keys)} {label}")
        seg = segment_front(inst, plan, unit, floors, max(wall_left / left, 0.05) if deterministic_time is None
                            else max(wall_left, 0.05), det, workers, seed, ucaps, useless, control, max_steps)
        det_used += sum(r.deterministic_time for r in seg.results)
        results.extend(seg.results)
        if not seg.complete:
            unfinished.append(label)
        here.extend((q[0] + e, q[1] + l, (q[2], m)) for q in found[i] for e, l, m in seg.points
                    if within(ucaps, q[0] + e, q[1] + l))
        here[:] = non_dominated(here)
        cand_lower.setdefault(j, []).extend((q[0] + e, q[1] + l) for q in lower[i] for e, l in seg.lower
                                            if within(ucaps, q[0] + e, q[1] + l))
        cand_lower[j] = non_dominated(cand_lower[j])
    while done_upto < n:
        done_upto += 1
        close(done_upto)
    points = [_decode(inst, e, l, chain, unit) for e, l, chain in found[n]]
    for p in points:
        p.proven = not any(q[0] <= p.energy and q[1] <= p.latency_cycles and q != (p.energy, p.latency_cycles)
                           for q in lower[n])
    complete = not control.interrupted and _covers(points, lower[n])
    return Front(points, lower[n], complete, unit, caps, results, pruned, unfinished, time.perf_counter() - t0,
                 det_used)


def _decode(inst: Instance, e: int, l: int, chain, unit: int) -> FrontPoint:
    """A cascade point's mapping from its chain of segment mappings, re-evaluated: the model must agree exactly."""
    pieces = []
    while chain is not None:
        chain, piece = chain
        pieces.append(piece)
    maps, groups = [], []
    for einsum_maps, group in reversed(pieces):
        maps.extend(einsum_maps)
        if group is not None:
            groups.append(group)
    mapping = Mapping(einsums=maps, groups=groups)
    try:
        ev = evaluate(inst, mapping)
    except MappingError as exc:
        raise VerificationError(f"a front point's mapping is invalid for the evaluator: {exc}") from None
    energy, _ = energy_in_units(inst, ev, unit)
    if (energy, ev.latency_cycles) != (e, l):
        raise VerificationError(f"front point: solver says energy {e} x {unit} fJ, latency {l} cycles; the "
                                f"evaluator says {energy} x {unit} fJ, {ev.latency_cycles} cycles")
    names = [("+".join(g.einsums) + f"@{g.fusion_level}") for g in groups]
    return FrontPoint(e, l, ev.energy_fj, mapping, False, names)


# ------------------------------------------------------------------------------------------------------------
# Caps and EDP: read off the front
# ------------------------------------------------------------------------------------------------------------
def value_of(objective: str, energy: int, latency: int) -> int:
    if objective == "edp":
        return energy * latency
    return latency if objective.startswith("latency") else energy


def solve_on_front(inst: Instance, objective: str, caps: dict, time_limit=None, deterministic_time=None,
                   workers: int = 1, seed=None, control=None, progress=None) -> SolveResult:
    """The optimum of `objective` (energy, latency, edp; lexicographic ones tie-break on the other component,
    which front points do by construction) within `caps`, from the front: proven when no lower point within the
    caps could do better."""
    front = pareto_front(inst, time_limit, deterministic_time, caps, workers=workers, seed=seed, control=control,
                         progress=progress)
    first = objective.split(",")[0]
    unit = front.energy_unit_fj
    lows = [value_of(first, q[0], q[1]) for q in front.lower]
    bound = min(lows) if lows else None
    segs = front.segments
    build = sum(s.build_seconds for s in segs)
    name = objective + "".join(f" with {k} <= {v}" for k, v in caps.items())
    if not front.points:
        status = "INFEASIBLE" if not front.lower and front.complete else \
            ("INTERRUPTED" if control is not None and control.interrupted else "UNKNOWN")
        why = f"no mapping within {', '.join(f'{k} <= {v}' for k, v in caps.items())}" if caps else \
            "no mapping found within the time limit"
        return SolveResult(status, None, [bound] if bound is not None else None, None, None, None, None, objective,
                           build, front.seconds - build, segs, diagnosis=why, energy_unit_fj=unit)
    best = min(front.points, key=lambda p: (value_of(first, p.energy, p.latency_cycles),
                                            p.latency_cycles if first == "energy" else p.energy))
    value = value_of(first, best.energy, best.latency_cycles)
    status = "OPTIMAL" if bound == value and (unit == 1 or first == "latency") else "FEASIBLE"
    if status != "OPTIMAL" and control is not None and control.interrupted:
        status = "INTERRUPTED"
    ev = evaluate(inst, best.mapping)
    res = SolveResult(status, [value], [value if status == "OPTIMAL" else bound], best.energy_fj,
                      best.latency_cycles, best.mapping, ev, objective, build, front.seconds - build, segs,
                      diagnosis=f"read off the energy-latency front ({len(front.points)} points, "
                                f"{'complete' if front.complete else 'not complete'}){'; ' + name if caps else ''}",
                      energy_unit_fj=unit, variant=best.mapping.variant, incumbent_source="cp-sat")
    return res
