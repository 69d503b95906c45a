"""Deterministic restarts of one segment model: CP-SAT's single-worker search is heavy-tailed on our models.

Measured (docs/solver-soundness.md, "Speed"): one stage of a 4096-point butterfly is proven in 0.11-0.25
deterministic s with the LP (linearization_level 1) for seeds 1-5 and not in 3 s for seed 0; the fused pair of
stages is proven only with the LP (1.8 det s), while llm_4k's QK+MX+SN+SD is proven without it (0.3 det s) and
not in 2 det s with it. No single setting serves all segments, so the search alternates: attempt i runs
`CONFIGS[i % 2]` with seed `seed + i // 2` for `FIRST_DET · 2^(i // 2)` deterministic seconds, each attempt
starting from the best solution so far (a full hint), until one proves, the bounds meet the incumbent, or the
segment's limits run out. Every attempt is deterministic, so the whole sequence is; each attempt's bound is a
bound of the same model, so the best of them is.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ortools.sat.python import cp_model

CONFIGS = ({"linearization_level": 0}, {"linearization_level": 1})
FIRST_DET = 0.5


@dataclass
class Outcome:
    """The best of the attempts on one objective."""

    status: int                                   # OPTIMAL, FEASIBLE, INFEASIBLE or UNKNOWN (cp_model's codes)
    solution: Optional[dict[int, int]] = None     # variable index -> value of the best solution
    values: dict[str, int] = field(default_factory=dict)   # each expression's value there
    bound: int = 0                                # the best lower bound of the objective (floored)
    det: float = 0.0                              # deterministic seconds, all attempts
    attempts: int = 0
    conflicts: int = 0
    branches: int = 0
    presolve: dict = field(default_factory=dict)  # of the first attempt
    last: int = 0                                 # index of the last attempt run


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports every new incumbent (value, bound, wall and deterministic time since the first attempt)."""

    def __init__(self, expr, on_solution, wall0: float, det0: float):
        super().__init__()
        self.expr, self.on_solution, self.wall0, self.det0 = expr, on_solution, wall0, det0

    def on_solution_callback(self) -> None:
        self.on_solution(self.value(self.expr), self.best_objective_bound, self.wall0 + self.wall_time,
                         self.det0 + self.deterministic_time)


def solve_with_restarts(solver: cp_model.CpSolver, model: cp_model.CpModel, objective: str, exprs: dict,
                        configure: Callable[[float, Optional[float], dict, int], None], wall_left: Callable[[], float],
                        det_limit: Optional[float], seed: int, on_solution=None, interrupted=lambda: False,
                        restarts: bool = True, first: int = 0) -> Outcome:
    """Minimise exprs[objective] in `model`. `configure(wall, det, config, seed)` sets the solver's parameters for
    one attempt; `det_limit` caps the attempts' deterministic seconds in total (None: only the wall clock).
    `restarts=False`: one attempt with the first config and the whole budget (the earlier behaviour). `first`:
    the attempt to begin with (a model warm-started from a smaller one resumes where that one proved)."""
    out = Outcome(cp_model.UNKNOWN)
    expr = exprs[objective]
    model.minimize(expr)
    t0 = time.perf_counter()
    i = first
    while True:
        wall = wall_left()
        det = None if det_limit is None else det_limit - out.det
        if restarts:
            step = FIRST_DET * 2 ** (i // 2)
            det = step if det is None else min(step, det)
        if (i > first and (wall <= 0.01 or (det is not None and det <= 0.001))) or interrupted():
            break
        configure(wall, det, CONFIGS[i % 2] if restarts else CONFIGS[0], seed + i // 2)
        cb = _Progress(expr, on_solution, time.perf_counter() - t0, out.det) if on_solution else None
        status = solver.solve(model, cb) if cb else solver.solve(model)
        out.det += solver.deterministic_time
        out.conflicts += solver.num_conflicts
        out.branches += solver.num_branches
        out.attempts += 1
        out.last = i
        if i == first:
            resp = solver.response_proto
            out.presolve = {"booleans": resp.num_booleans, "integers": resp.num_integers,
                            "fixed_booleans": resp.num_fixed_booleans}
        i += 1
        if status == cp_model.INFEASIBLE:       # no solution at all (or none under a cut-off): final
            # (after an earlier attempt's solution CP-SAT contradicts itself: claim nothing)
            out.status = cp_model.INFEASIBLE if out.solution is None else cp_model.FEASIBLE
            return out
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            value = solver.value(expr)
            if out.solution is None or value < out.values[objective]:
                out.solution = {j: solver.value(model.get_int_var_from_proto_index(j))
                                for j in range(len(model.proto.variables))}
                out.values = {name: solver.value(e) for name, e in exprs.items()}
                model.clear_hints()
                for j, v in out.solution.items():
                    model.add_hint(model.get_int_var_from_proto_index(j), v)
            if status == cp_model.OPTIMAL:
                out.bound = max(out.bound, value)
        if status != cp_model.OPTIMAL:
            out.bound = max(out.bound, max(0, math.floor(solver.best_objective_bound)))
        if out.solution is not None and out.bound >= out.values[objective]:
            out.status = cp_model.OPTIMAL
            return out
        if not restarts:
            break
    out.status = cp_model.FEASIBLE if out.solution is not None else cp_model.UNKNOWN
    return out
