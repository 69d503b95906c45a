"""Certify a claimed bound against valid mappings built independently of the CP-SAT proof.

Why: CP-SAT proves bounds through presolve and propagation we cannot inspect, and ortools 9.15 once "proved" an
8-head QK 13.8x above a valid mapping (docs/solver-soundness.md). So before the mapper reports a bound, it checks
it against mappings whose cost the model computes directly:

- the *constructive* mapping (solver/construct.py: every Einsum alone, greedy tiling, local search on the model);
- *batch replication*: a rank that indexes every tensor of every Einsum (heads, batch) splits the cascade into
  independent copies. Solve the instance with that rank's bound set to 1 (far smaller numbers), then run the copies
  in sequence: a temporal loop over the rank, outermost at DRAM (in a fused group, the first shared loop at DRAM).
  That mapping is valid for the full instance, so OPT(k·H) <= its cost <= k·OPT(H).

Any proven bound above one of these costs is a wrong proof: CertificationError (exit 5), never OPTIMAL. A
certificate cheaper than an unproven incumbent replaces it (it is a valid mapping, re-evaluated like any other).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Optional

from mapsolve.model import MappingError, Result, evaluate
from mapsolve.model.spec import EinsumMapping, FusedGroup, Instance, Loop, Mapping, SharedLoop

from .construct import constructive_mapping
from .results import VerificationError

#: "auto": replication only where CP-SAT's numbers get large (an Einsum of at least this many operations).
LARGE_OPS = 2**31
CERTIFY_MODES = ("auto", "full", "cheap")


class CertificationError(VerificationError):
    """A proven bound exceeds the cost of a valid mapping: the proof is wrong (a solver bug)."""


@dataclass
class Certificate:
    label: str
    mapping: Mapping
    values: tuple[int, ...]      # objective components in objective order, in the result's energy unit
    evaluation: Result           # the model's exact figures for the mapping

    @property
    def energy_fj(self) -> int:
        return self.evaluation.energy_fj

    @property
    def latency_cycles(self) -> int:
        return self.evaluation.latency_cycles

    def to_json(self) -> dict:
        return {"label": self.label, "values": list(self.values), "energy_fj": self.energy_fj,
                "latency_cycles": self.latency_cycles}


def batch_rank(inst: Instance) -> Optional[str]:
    """The largest rank that indexes every tensor of every Einsum, if any (bound > 1)."""
    wl = inst.workload
    common = set(wl.ranks)
    for e in wl.einsums:
        for ranks in e.tensors.values():
            common &= set(ranks)
    common = {r for r in common if wl.ranks[r] > 1}
    return max(sorted(common), key=lambda r: wl.ranks[r]) if common else None


def replication_rank(inst: Instance, mode: str) -> Optional[str]:
    """The rank batch replication runs over in this certify mode, or None when it does not run."""
    rank = batch_rank(inst)
    if rank is None or mode == "cheap" or (mode == "auto" and not is_large(inst)):
        return None
    return rank


def is_large(inst: Instance) -> bool:
    wl = inst.workload
    return any(prod(wl.ranks[r] for r in e.space) >= LARGE_OPS for e in wl.einsums)


def with_rank_bound(inst: Instance, rank: str, bound: int) -> Instance:
    ranks = dict(inst.workload.ranks)
    ranks[rank] = bound
    return inst.model_copy(update={"workload": inst.workload.model_copy(update={"ranks": ranks})})


def replicate(mapping: Mapping, rank: str, k: int) -> Mapping:
    """The mapping of one copy, run k times in sequence: a loop over `rank` outermost at the backing level.

    The copy's instance has `rank` of bound 1, so any loop over it has one iteration: it is dropped."""
    grouped = {n for g in mapping.groups for n in g.einsums}
    einsums = []
    for em in mapping.einsums:
        if em.einsum in grouped:
            einsums.append(em)
            continue
        top = em.levels[0]
        top = top.model_copy(update={"temporal": [Loop(rank=rank, factor=k),
                                                  *(lp for lp in top.temporal if lp.rank != rank)]})
        einsums.append(EinsumMapping(einsum=em.einsum, compute_unit=em.compute_unit,
                                     levels=[top, *em.levels[1:]]))
    backing = {em.einsum: em.levels[0].level for em in mapping.einsums}
    groups = []
    for g in mapping.groups:
        dram = backing[g.einsums[0]]
        shared = [SharedLoop(level=dram, rank=rank, factor=k), *(s for s in g.shared_loops if s.rank != rank)]
        groups.append(FusedGroup(einsums=g.einsums, fusion_level=g.fusion_level, shared_loops=shared))
    return mapping.model_copy(update={"einsums": einsums, "groups": groups})   # keeps its variant


def _values(inst: Instance, mapping: Mapping, components: list[str], unit: int):
    from .paths import energy_in_units
    ev = evaluate(inst, mapping)
    energy = energy_in_units(inst, ev, unit)[0]
    return tuple(energy if c == "energy" else ev.latency_cycles for c in components), ev


def certificates(inst: Instance, components: list[str], unit: int, mode: str,
                 solve_copy: Callable[[Instance], Optional[Mapping]], built: Optional[Mapping] = None) -> list[Certificate]:
    """Valid mappings of `inst` priced like the solver's objective (energy in `unit` fJ).

    `solve_copy(instance)` maps the one-copy instance of batch replication (the caller gives it its budget);
    `built`: the constructive mapping when the caller has it already."""
    out: list[Certificate] = []
    built = built if built is not None else constructive_mapping(inst, components[0])
    if built is not None:
        values, ev = _values(inst, built, components, unit)
        out.append(Certificate("constructive", built, values, ev))
    rank = replication_rank(inst, mode)
    if rank is not None:
        k = inst.workload.ranks[rank]
        copy_mapping = solve_copy(with_rank_bound(inst, rank, 1))
        if copy_mapping is not None:
            mapping = replicate(copy_mapping, rank, k)
            try:
                values, ev = _values(inst, mapping, components, unit)
            except MappingError as exc:  # our construction is wrong, not the user's input
                raise VerificationError(f"replicating a one-{rank} mapping {k} times is invalid: {exc}") from None
            out.append(Certificate(f"replication over {rank} ({k} copies of {rank}=1)", mapping, values, ev))
    return out


def check(bound: Optional[list[int]], certs: list[Certificate], objective: str) -> None:
    """A bound above any certificate's cost is a wrong proof."""
    if not bound:
        return
    for c in certs:
        if bound[0] > c.values[0]:
            raise CertificationError(
                f"certification failed: CP-SAT's proven bound {bound[0]} on {objective.split(',')[0]} is above "
                f"{c.values[0]}, the model's cost of a valid mapping ({c.label}); the proof is wrong "
                f"(ortools presolve? see docs/solver-soundness.md)")


def certified(inst: Instance, res, certs: list[Certificate]):
    """`res` checked against the certificates; an unproven or missing incumbent beaten by one is replaced.

    INFEASIBLE with a valid certificate, or any bound above a certificate's cost, is a wrong proof."""
    from .paths import _rounding_bound, energy_in_units
    if res.status == "INFEASIBLE" and certs:
        raise CertificationError(f"certification failed: CP-SAT proved the instance infeasible, but the "
                                 f"{certs[0].label} mapping is valid (energy {certs[0].energy_fj} fJ)")
    check(res.best_bound, certs, res.objective_name)
    res.certificates = [c.to_json() for c in certs]
    best = min(certs, key=lambda c: c.values, default=None)
    if best is None or (res.objective is not None and tuple(res.objective) <= best.values):
        return res
    # the certificate is better than what the search kept: it becomes the answer (never OPTIMAL by itself
    # unless the proven bound meets it)
    ev = best.evaluation
    unit = res.energy_unit_fj
    res.objective = list(best.values)
    res.mapping, res.evaluation = best.mapping, ev
    res.energy_fj, res.latency_cycles = ev.energy_fj, ev.latency_cycles
    res.rounding_error_fj = energy_in_units(inst, ev, unit)[1]
    res.rounding_bound_fj = _rounding_bound(ev, unit)
    proven = res.best_bound is not None and res.best_bound[0] == best.values[0] and len(best.values) == 1
    res.status = "OPTIMAL" if proven else "FEASIBLE"
    res.incumbent_source = best.label
    res.diagnosis = res.diagnosis if res.status == "OPTIMAL" else f"incumbent from {best.label}"
    return res
