"""Keeping the time limit, and saying up front what CP-SAT cannot represent.

Why: `mapsolve INSTANCE --time-limit S` must return within S plus a bounded margin whatever the instance (issue
17: a matmul followed by 200 element-wise Einsums took 46.7 s at --time-limit 5). Every phase around the search —
the constructive mapping, plan enumeration and floors, the shortest path — spends a share of one budget, checked
inside its loops. With `--deterministic-time` the same phases count work instead of seconds (`Allowance` units),
so the answer does not depend on the machine's load.

Representability: a lone Einsum whose exact model needs integers beyond CP-SAT's 64 bits is not fatal (its segment
gets no model, keeps the constructive mapping and its floor as bound: solver/segment_solve.py `Unrepresentable`);
`representability_notes` says which ones, before solving (`mapsolve validate`).
"""
from __future__ import annotations

import time
from typing import Optional

from mapsolve.model.spec import Instance

#: Deterministic seconds charged for work outside CP-SAT with `--deterministic-time` (rough, load-independent):
#: one evaluation of a one-Einsum mapping by the model (the constructive local search), one segment plan looked at
#: (its floor, its cut-off).
EVALUATION_DET = 1e-4
PLAN_DET = 1e-5
#: Building a model, in building operations (solver/exact.py `build_limit`, ~1e-4 wall s each; a fused run of L
#: Einsums also costs ~L³ operations' worth in its nesting analysis, counted up front): each is charged
#: BUILD_OP_DET deterministic seconds, and a model may take max(its deterministic share, MIN_BUILD_DET) /
#: BUILD_CAP_DET operations (10,000 at least; the shipped instances' models need at most ~5,000, 20 extra on-chip
#: levels ~36,000, 100 of them millions).
BUILD_OP_DET = 1e-5
BUILD_CAP_DET = 1e-4
MIN_BUILD_DET = 1.0
#: Share of the budget the constructive mapping's local search may spend (its greedy start always runs).
CONSTRUCT_SHARE = 0.2


class Allowance:
    """A share of the budget for work outside CP-SAT: wall seconds, and (deterministic mode) work units.

    `spend(n)` counts n units of work; `spent()` says whether either limit is reached. With units given, only they
    decide (the same work on any machine), unless a wall limit was given too."""

    def __init__(self, seconds: float = float("inf"), units: Optional[float] = None):
        self.t0 = time.perf_counter()
        self.seconds = seconds
        self.units = units
        self.used = 0.0

    def spend(self, n: float = 1.0) -> None:
        self.used += n

    def spent(self) -> bool:
        if self.units is not None and self.used >= self.units:
            return True
        return time.perf_counter() - self.t0 >= self.seconds


def representability_notes(inst: Instance, objective: Optional[str] = None, seconds: float = 5.0) -> list[str]:
    """One line per lone Einsum whose exact CP-SAT model cannot be built (numbers beyond 64-bit integers), for the
    objective components of `objective` (default: the instance's), e.g. "einsum Z: too large for CP-SAT's 64-bit
    integers (a cost term reaches 2^63); the solver keeps the constructive mapping and the floor bound for it".
    Energy that only needs a coarser unit is not a note (the search handles it). Einsums equal but for names are
    checked once; checking stops after `seconds` (then a last line says how many were not checked)."""
    from .cache import segment_key
    from .segment import Infeasible
    from .segment_solve import Unrepresentable, UnitTooFine, build_segment
    from mapsolve.model.online import lock_step
    components = tuple((objective or inst.solver.objective).split(","))
    if any(c not in ("energy", "latency") for c in components):
        return []
    t0 = time.perf_counter()
    seen: dict[str, Optional[str]] = {}
    notes: list[str] = []
    einsums = list(inst.workload.einsums)
    paired = {x for p, c, _ in lock_step(inst.workload) for x in (p, c)}   # once: each scan is O(Einsums)
    for n_done, e in enumerate(einsums):
        if time.perf_counter() - t0 > seconds:
            notes.append(f"{len(einsums) - n_done} Einsums not checked for CP-SAT's 64-bit limits (out of time)")
            break
        if e.name in paired:
            continue   # a lock-step Einsum is never alone
        plan = ((e.name,), None, ())
        key = segment_key(inst, plan, list(components), 1)
        if key not in seen:
            seen[key] = None
            unit = 1
            for _ in range(40):
                try:
                    build_segment(inst, plan, unit, components)
                except UnitTooFine as exc:
                    unit = max(exc.unit, unit * 10)
                    continue
                except Unrepresentable as exc:
                    seen[key] = exc.cause
                except Infeasible:
                    pass
                break
        if seen[key] is not None:
            notes.append(f"einsum {e.name}: too large for CP-SAT's 64-bit integers ({seen[key]}); the solver keeps "
                         f"the constructive mapping and the floor bound for it")
    return notes
