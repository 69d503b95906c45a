"""Baselines to judge a solve by, at no extra search: the best unfused mapping and the instance's shipped mapping.

The search solves every lone Einsum (and every lock-step run, the smallest group a recurrence and its running
readers may form) before any fused segment, so the best mapping without optional fusion is a shortest path over
results it already has. It is read off the segment results, assembled, and re-evaluated by mapsolve.model; it is
*proven* best-unfused when each of its pieces was proven optimal on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mapsolve.model import InputError, MappingError, evaluate, load_mapping
from mapsolve.model.online import lock_step_ranges
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.variants import select

from .paths import mapping_of
from .results import SolveResult


@dataclass
class Baseline:
    """A complete mapping to compare the answer with, and its exact figures (from the evaluator)."""
    kind: str                      # "unfused" or "shipped"
    energy_fj: int
    latency_cycles: int
    mapping: Mapping = field(repr=False)
    proven: bool = False           # unfused: every piece proven optimal alone (the best unfused mapping)
    source: str = ""               # shipped: the mapping file

    def to_json(self) -> dict:
        """Its entry under `baselines` in the result document (docs/results.md); the mapping is not repeated."""
        return {"energy_fj": self.energy_fj, "latency_cycles": self.latency_cycles, "proven": self.proven,
                "source": self.source or None}


def blocks(inst: Instance) -> list[tuple[str, ...]]:
    """The finest partition of the cascade into groups: lone Einsums, and the lock-step runs that must be fused."""
    names = [e.name for e in inst.workload.einsums]
    runs = {r[0]: tuple(r) for r in lock_step_ranges(inst.workload)}
    out, i = [], 0
    while i < len(names):
        run = runs.get(names[i], (names[i],))
        out.append(run)
        i += len(run)
    return out


def unfused(inst: Instance, res: SolveResult) -> tuple[Optional[Baseline], str]:
    """The best mapping without optional fusion found by the search `res` of `inst` (over every variant: the
    union mapspace's), and why there is none when there is none (a piece's result was pruned away, or the search
    never reached it)."""
    if res.mapping is None:
        return None, "no mapping"
    objective = res.objective_name.split(" with ")[0]
    # caps and edp are read off the front (solver/pareto.py): its segment results are epsilon-steps, not proofs
    # of each piece alone
    on_path = " with " not in res.objective_name and objective != "edp"
    if not res.variant_segments:
        return _unfused(inst, None, res.segments, on_path)
    found, whys = [], []
    for name, segments in res.variant_segments.items():
        base, why = _unfused(inst, name, segments, on_path)
        if base is None:
            whys.append(f"variant {name}: {why}")
        else:
            found.append(base)
    if not found:
        return None, "; ".join(whys)
    first = objective.split(",")[0]
    best = min(found, key=lambda b: (b.latency_cycles, b.energy_fj) if first == "latency" else
               (b.energy_fj * b.latency_cycles,) if first == "edp" else (b.energy_fj, b.latency_cycles))
    # the best over the variants is proven only if every variant's is
    best.proven = best.proven and not whys and all(b.proven for b in found)
    return best, ""


def _unfused(inst: Instance, variant: Optional[str], segments, on_path: bool) -> tuple[Optional[Baseline], str]:
    """The unfused mapping of one cascade (`variant`) from its own segment results."""
    try:
        plain = select(inst, variant)
    except MappingError as exc:
        return None, str(exc)
    pieces, proven = [], True
    for block in blocks(plain):
        mine = [s for s in segments if tuple(s.names) == block]
        solved = [s for s in mine if s.values is not None and s.mapping]
        if not solved:
            return None, f"no result kept for {'+'.join(block)} alone (pruned, or not reached within the limit)"
        best = min(solved, key=lambda s: s.values)   # the objective's components, in its order
        pieces.append(best)
        others_bounded = all(s is best or s.status == "INFEASIBLE" or s.bound[0] >= best.values[0] for s in mine)
        proven = proven and best.status == "OPTIMAL" and others_bounded and \
            (len(block) == 1 or len({s.fusion for s in mine}) == len(mine))
    mapping = mapping_of(pieces, variant)
    try:
        ev = evaluate(inst, mapping)
    except MappingError as exc:   # each piece is valid alone and groups run in sequence: this is a bug
        return None, f"the unfused pieces do not evaluate together: {exc}"
    return Baseline("unfused", ev.energy_fj, ev.latency_cycles, mapping, proven and on_path), ""


def shipped_mapping_path(instance_path) -> Optional[Path]:
    """`instances/X.json` -> `instances/X.mapping.json`, when that file exists (and is not the instance)."""
    if instance_path is None:
        return None
    p = Path(instance_path)
    q = p.with_name(p.name.removesuffix(p.suffix) + ".mapping.json")
    return q if q.is_file() and q != p else None


def shipped(inst: Instance, instance_path) -> tuple[Optional[Baseline], str]:
    """The mapping file shipped beside the instance, evaluated; (None, why) when absent or not valid for it."""
    path = shipped_mapping_path(instance_path)
    if path is None:
        return None, ""
    try:
        mapping = load_mapping(path)
        ev = evaluate(inst, mapping)
    except (InputError, MappingError) as exc:
        return None, f"{path}: {exc}"
    return Baseline("shipped", ev.energy_fj, ev.latency_cycles, mapping, source=str(path)), ""


def compare(inst: Instance, res: SolveResult, instance_path=None) -> dict[str, tuple[Optional[Baseline], str]]:
    """Both baselines of a solve: {"unfused": (baseline or None, why not), "shipped": (...)} (why "" when there
    is simply no shipped mapping)."""
    return {"unfused": unfused(inst, res), "shipped": shipped(inst, instance_path)}
