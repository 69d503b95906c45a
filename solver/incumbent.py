"""The first incumbent: the constructive mapping cut into the segment results the search starts from.

Why: a search that may run out of time must still answer. Before any CP-SAT model is built, the constructive
mapping (solver/construct.py: every Einsum alone with a locally improved tiling, the lock-step runs fused) is
priced by the model and split into one result per segment of the plan — each lone Einsum, each lock-step
group — so the shortest path over segments is complete before the first solve, every fused segment gets a
cut-off from the start, and a segment the search never reaches still has a valid mapping. A CP-SAT answer for a
segment replaces its seed when better (solver/paths.py `_merge`); the final mapping is re-evaluated as a whole
like any other, so a wrong split would be a VerificationError, not a silent miscount.
"""
from __future__ import annotations

from typing import Optional

from mapsolve.model import MappingError, evaluate
from mapsolve.model.spec import Instance, Mapping

from .paths import _floor, energy_in_units, priced
from .results import SegmentResult, VerificationError

SOURCE = "constructive"


def seed_results(inst: Instance, plans, components: list[str], unit: int,
                 mapping: Optional[Mapping], floor_of=None) -> dict:
    """plan -> FEASIBLE SegmentResult holding the constructive `mapping`'s piece for that plan (its bound is the
    segment's floor), for every piece of it; {} when there is no constructive mapping or a piece is not a plan.

    `plans`: a list of plans (then the keys are their indices) or a container of plan tuples answering `in`
    (solver/search.py `PlanSpace`; then the keys are the plan tuples). `floor_of(plan)`: the plan's floor
    (default solver/paths.py `_floor`)."""
    if mapping is None:
        return {}
    try:
        ev = evaluate(inst, mapping)
    except MappingError:
        return {}
    arch = inst.architecture
    level_index = {lv.name: i for i, lv in enumerate(arch.levels)}
    by_name = {em.einsum: em for em in mapping.einsums}
    explicit = {tuple(g.einsums): g for g in mapping.groups}
    pieces = []   # (plan key, energy in units, latency, (maps, group))
    for g in ev.groups:   # groups run in sequence: each one's cost is its own
        members = [by_name[n] for n in g.einsums]
        energy = priced(g.energy_events, unit)
        group = explicit.get(tuple(g.einsums))
        if group is None or len(g.einsums) == 1:
            pieces.append(((tuple(g.einsums), None, ()), energy, g.latency_cycles, (members, group)))
            continue
        path = arch.path(members[0].compute_unit)
        f = level_index[group.fusion_level]
        pieces.append(((tuple(g.einsums), f, tuple(path[:path.index(f)])), energy, g.latency_cycles,
                       (members, group)))
    total = energy_in_units(inst, ev, unit)[0]
    if (sum(p[1] for p in pieces), sum(p[2] for p in pieces)) != (total, ev.latency_cycles):
        raise VerificationError(f"the constructive mapping's groups cost {sum(p[1] for p in pieces)} energy units, "
                                f"{sum(p[2] for p in pieces)} cycles; as a whole {total}, {ev.latency_cycles}")
    if isinstance(plans, list):
        where = {(tuple(p[0]), p[1], tuple(p[2])): k for k, p in enumerate(plans)}
    else:
        where = {p[0]: p[0] for p in pieces if p[0] in plans}
    if floor_of is None:
        def floor_of(plan):
            return _floor(inst, plan[0], components[0], unit)
    out: dict = {}
    for key, energy, latency, piece in pieces:
        k = where.get(key)
        if k is None:
            return {}   # a piece the search does not model: the seed would not be comparable
        values = tuple(energy if c == "energy" else latency for c in components)
        names, fusion, _ = key
        out[k] = SegmentResult(names, arch.levels[fusion].name if fusion is not None else None, "FEASIBLE",
                               values, (floor_of(key),), energy, latency, piece,
                               source=SOURCE)
    return out
