"""Optimal over variants: an instance offering alternative cascades (spec.Variant) is solved variant by variant.

Why this is exact and not a heuristic: the mapspace of an instance with variants is the disjoint union of its
variants' mapspaces (a mapping maps exactly one variant, `Mapping.variant`), so its optimum is the least of the
variants' optima, and a lower bound is the least of their lower bounds. A variant whose proven bound is not
below the winner's value cannot do better; the answer is OPTIMAL when the winner is proven and every other
variant is proven no better. The report names the winner and the runner-up with its own proven optimum.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional

from mapsolve.model.variants import alternatives


def _beats(a, b) -> bool:
    return b is None or tuple(a) < tuple(b)


def summary(name: str, res) -> dict:
    return {"variant": name, "status": res.status, "objective": res.objective, "best_bound": res.best_bound,
            "energy_fj": res.energy_fj, "latency_cycles": res.latency_cycles,
            "seconds": round(res.build_seconds + res.solve_seconds + res.certify_seconds, 4)}


def solve_variants(solve, inst, objective: Optional[str], time_limit: Optional[float],
                   deterministic_time: Optional[float], control, events, progress, **kw):
    """`solve` (solver.search.solve) over every variant; the limits are shared out evenly, what one variant
    leaves over goes to the next, and what is left at the end to a second run of the variants still open."""
    alts = alternatives(inst)
    started = time.perf_counter()
    wall = time_limit if time_limit is not None else (inst.solver.time_limit_s if deterministic_time is None
                                                      else None)
    det_left = [deterministic_time]
    results = []

    def run(name, alt, n_left: int, tags: dict):
        """Variant `name` solved with 1/n_left of what is left of each limit (what it leaves goes to the rest)."""
        wall_share = None if wall is None else max((wall - (time.perf_counter() - started)) / n_left, 0.05)
        det_share = None if det_left[0] is None else det_left[0] / n_left

        def tagged(record):
            events({**record, **tags})
        res = solve(alt, objective, wall_share, deterministic_time=det_share, control=control,
                    events=tagged if events else None, progress=progress, **kw)
        if det_left[0] is not None:
            det_left[0] = max(det_left[0] - sum(s.deterministic_time for s in res.segments), 0.0)
        return res

    for k, (name, alt) in enumerate(alts):
        if control is not None and control.interrupted:
            break
        if progress:
            progress(f"variant {name} ({k + 1}/{len(alts)})")
        results.append((name, run(name, alt, len(alts) - k, {"variant": name})))
    # what the variants proven early left over goes to those still open that could win: solved again with all of
    # it (their proven segments come back from the cache), the better of the two runs kept
    could_win = [k for k, (n, r) in enumerate(results) if _open(r, results)]
    for m, k in enumerate(could_win):
        if control is not None and control.interrupted:
            break
        wall_left = None if wall is None else wall - (time.perf_counter() - started)
        if (wall_left is not None and wall_left < SECOND_ROUND_MIN_S) or \
                (det_left[0] is not None and det_left[0] < SECOND_ROUND_MIN_DET):
            break
        name, first = results[k]
        if not _open(first, results):
            continue
        if progress:
            progress(f"variant {name}: solving again with what the others left over")
        again = run(name, dict(alts)[name], len(could_win) - m, {"variant": name, "round": 2})
        results[k] = (name, better_run(first, again))
    return combine_variants(results, control)


#: a second round is not started with less than this left (wall seconds / deterministic seconds)
SECOND_ROUND_MIN_S = 1.0
SECOND_ROUND_MIN_DET = 0.5


def _open(r, results) -> bool:
    """Whether variant result `r` is unproven and its bound still below the best value found over all variants."""
    if r.status in ("OPTIMAL", "INFEASIBLE"):
        return False
    values = [tuple(x.objective) for _, x in results if x.objective is not None]
    if not values:
        return True
    return not r.best_bound or tuple(r.best_bound) < min(values)


def better_run(a, b):
    """Two runs of one variant: the better mapping, the higher of the two proven bounds, OPTIMAL when they meet
    (one objective) or when the better run proved it; times and segments of both."""
    if a.energy_unit_fj != b.energy_unit_fj:   # priced in different units: the two are not comparable
        return b
    if b.objective is not None and (a.objective is None or tuple(b.objective) < tuple(a.objective)):
        win, other = b, a
    else:
        win, other = a, b
    bounds = [x.best_bound for x in (a, b) if x.best_bound]
    bound = max(bounds, key=tuple) if bounds else None
    status = win.status
    if win.objective is not None and bound is not None and status != "OPTIMAL" and win.energy_unit_fj == 1 and \
            len(win.objective) == 1 and bound[0] >= win.objective[0]:
        status = "OPTIMAL"
    if status == "OPTIMAL" and win.objective is not None:
        bound = list(win.objective) if len(win.objective) == 1 else win.best_bound
    return dataclasses.replace(
        win, status=status, best_bound=bound, segments=[*other.segments, *win.segments],
        build_seconds=a.build_seconds + b.build_seconds, solve_seconds=a.solve_seconds + b.solve_seconds,
        certify_seconds=a.certify_seconds + b.certify_seconds, construct_seconds=a.construct_seconds +
        b.construct_seconds)


def combine_variants(results, control=None):
    """The SolveResult of the best variant, with `variant`, `variants`, and status and bound over all of them."""
    with_value = [(n, r) for n, r in results if r.objective is not None]
    if not with_value:
        name, first = results[0]
        status = "INFEASIBLE" if all(r.status == "INFEASIBLE" for _, r in results) else first.status
        return dataclasses.replace(first, status=status, variant=None,
                                   variants=[summary(n, r) for n, r in results])
    name, best = min(with_value, key=lambda nr: tuple(nr[1].objective))
    # another variant cannot win if its bound is above the winner (or equal to it, for one objective: a tie leaves
    # the winner optimal; a lexicographic tie would leave the second component open)
    single = len(best.objective) == 1
    proven = best.status == "OPTIMAL" and all(
        r.status in ("OPTIMAL", "INFEASIBLE") or (r.best_bound and (
            r.best_bound[0] > best.objective[0] or (single and r.best_bound[0] >= best.objective[0])))
        for n, r in results if n != name)
    bounds = [r.best_bound for n, r in results if r.status != "INFEASIBLE" and r.best_bound]
    bound = min(bounds, key=tuple) if bounds else best.best_bound
    status = "OPTIMAL" if proven else ("INTERRUPTED" if control is not None and control.interrupted else
                                       "FEASIBLE")
    if proven:
        bound = best.best_bound
    mapping = best.mapping.model_copy(update={"variant": name}) if best.mapping is not None else None
    return dataclasses.replace(
        best, status=status, best_bound=bound, mapping=mapping, variant=name,
        variants=[summary(n, r) for n, r in results],
        segments=[s for _, r in results for s in r.segments],
        variant_segments={n: r.segments for n, r in results},
        build_seconds=sum(r.build_seconds for _, r in results),
        solve_seconds=sum(r.solve_seconds for _, r in results),
        certify_seconds=sum(r.certify_seconds for _, r in results),
        construct_seconds=sum(r.construct_seconds for _, r in results),
        certificates=[{**c, "variant": n} if isinstance(c, dict) else c for n, r in results for c in r.certificates])
