"""Shortest paths over segment results: best known mapping, proven lower bound, decode and verify.

Groups run in sequence with their own buffers, so the cost of a partition is the sum of its segments' costs,
and the same recursion over proven segment bounds bounds the whole cascade.
"""
from __future__ import annotations

from math import prod
from typing import Optional

from mapsolve.model import MappingError, Result, evaluate
from mapsolve.model.evaluate import port_words
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.units import fj

from .results import SegmentResult, SolveResult, VerificationError
from .bounds import compute_cycles, dram_energy, dram_words, fewest_cycles
from .segment import to_unit


def _better(a: tuple, b: Optional[tuple]) -> bool:
    return b is None or a < b


def _floor(inst: Instance, names, component: str, unit: int = 1) -> int:
    """A bound no mapping of these Einsums (fused if several, as every multi-Einsum segment is) can beat, before
    any search. Energy: the cheapest unit's compute energy and the accesses DRAM cannot avoid (`dram_energy`;
    every other access costs a non-negative amount, with rounded per-access energies too). Latency (`compute_cycles`):
    the busiest unit's share of the compute, and the words DRAM must move at its bandwidth."""
    wl, arch = inst.workload, inst.architecture
    einsums = [e for e in wl.einsums if e.name in names]
    capable = {e.name: [u for u in arch.compute_units if e.op in u.ops] for e in einsums}
    if any(not us for us in capable.values()):
        return 0  # infeasible: the segment's own model says why
    if component == "energy":
        compute = sum(prod(wl.ranks[r] for r in e.space) * min(to_unit(fj(u.ops[e.op].energy_pj), unit)
                                                            for u in capable[e.name]) for e in einsums)
        return compute + dram_energy(inst, names, len(names) > 1, unit)
    floor = compute_cycles([(min(fewest_cycles(inst, e, u) for u in capable[e.name]),
                             capable[e.name][0].name if len(capable[e.name]) == 1 else None) for e in einsums],
                           len(arch.compute_units))
    reads, writes = dram_words(inst, names, fused=len(names) > 1)
    word = arch.levels[0].word(wl.word_bits)
    for port, bw in arch.levels[0].ports:
        bits = port_words(port, reads, writes)
        floor = max(floor, -(-bits * bw.denominator // (bw.numerator * word)))
    return floor


def _lower_bound(results: list[SegmentResult], index: dict[str, int], n: int) -> Optional[int]:
    """Proven lower bound of the first objective for the whole cascade, by the shortest-path recursion."""
    lower: dict[int, int] = {0: 0}
    for r in sorted(results, key=lambda r: index[r.names[-1]]):
        i, j = index[r.names[0]], index[r.names[-1]] + 1
        if r.status != "INFEASIBLE" and i in lower:
            lower[j] = min(lower.get(j, lower[i] + r.bound[0]), lower[i] + r.bound[0])
    return lower.get(n)


class Unreached:
    """Segment plans the search never looked at (out of time), as edges of the bound's shortest path without a
    result each: a chain of n Einsums has ~n²/2 plans, too many to list. Every run of Einsums i..j-1 that may not
    have been reached is an edge of weight C[j] - C[i] (the compute energy every grouping of them spends, solver/
    bounds.py `ChainFloors.compute_prefix`; 0 for latency), a lower bound of that plan's floor. Runs that are no
    plan at all (a split lock-step pair) are edges too: extra edges only lower the shortest path, so the bound stays
    valid.

    Which runs: lone Einsums from `lone_from` on (None: all were reached); fused runs ending after `fused_end`, and
    those ending at `fused_end` starting at or before `fused_start`. `count`: how many plans that is at most."""

    def __init__(self, prefix: list[int], lone_from: Optional[int], fused_end: int, fused_start: int, count: int):
        self.prefix = prefix
        self.lone_from = lone_from
        self.fused_end = fused_end
        self.fused_start = fused_start
        self.count = count

    def edges(self):
        """A function (j, lower) -> the least lower[i] + weight over unreached runs i..j-1 (or None), to be called
        for j = 1, 2, ... in order with lower[0..j-1] final (a running prefix minimum of lower[i] - C[i])."""
        C = self.prefix
        pm: list[Optional[int]] = []

        def into(j: int, lower) -> Optional[int]:
            while len(pm) < j - 1:   # pm[x] = min over i <= x of lower[i] - C[i]
                x = len(pm)
                v = None if lower[x] is None else lower[x] - C[x]
                prev = pm[-1] if pm else None
                pm.append(v if prev is None else prev if v is None else min(prev, v))
            cands = []
            if self.lone_from is not None and j - 1 >= self.lone_from and lower[j - 1] is not None:
                cands.append(lower[j - 1] + C[j] - C[j - 1])
            x = j - 2 if j > self.fused_end else min(self.fused_start, j - 2) if j == self.fused_end else -1
            if x >= 0 and pm[x] is not None:
                cands.append(pm[x] + C[j])
            return min(cands) if cands else None
        return into


def lower_bounds(results, index: dict[str, int], n: int, unreached: Optional[Unreached] = None) -> list:
    """lower[j]: proven lower bound of the first objective for the first j Einsums (None: no path), by the
    shortest-path recursion over the results' bounds (INFEASIBLE ones are no edge) and the unreached plans."""
    lower: list[Optional[int]] = [None] * (n + 1)
    lower[0] = 0
    by_end: dict[int, list] = {}
    for r in results:
        by_end.setdefault(index[r.names[-1]] + 1, []).append(r)
    into = unreached.edges() if unreached is not None else None
    for j in range(1, n + 1):
        best = None
        for r in by_end.get(j, ()):
            i = index[r.names[0]]
            if r.status != "INFEASIBLE" and lower[i] is not None:
                v = lower[i] + r.bound[0]
                best = v if best is None else min(best, v)
        if into is not None:
            v = into(j, lower)
            if v is not None:
                best = v if best is None else min(best, v)
        lower[j] = best
    return lower


def mapping_of(chosen, variant=None) -> Mapping:
    """The whole mapping of a chain of segment results, in cascade order (each holds (einsum mappings, group))."""
    einsum_maps, groups = [], []
    for r in chosen:
        maps, group = r.mapping
        einsum_maps.extend(maps)
        if group is not None:
            groups.append(group)
    return Mapping(einsums=einsum_maps, groups=groups, variant=variant)


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
    """Two attempts at one segment: the better solution, the higher bound, proven if either proved.

    A proven bound above a solution already in hand (a constructive seed, an earlier attempt) is a wrong proof."""
    if old.values is not None and new.status != "UNKNOWN" and (new.status == "INFEASIBLE" or
                                                                new.bound[0] > old.values[0]):
        from .certify import CertificationError
        claim = "infeasible" if new.status == "INFEASIBLE" else f"bound {new.bound[0]} ({new.status})"
        raise CertificationError(f"certification failed: segment {'+'.join(new.names)}: CP-SAT says {claim}, but "
                                 f"a valid mapping of it ({old.source}) costs {old.values[0]}; the proof is wrong")
    if new.status in ("OPTIMAL", "INFEASIBLE", "PRUNED"):
        return new
    keep = new if new.values is not None and (old.values is None or new.values < old.values) else old
    bound = max(old.bound, new.bound)
    return SegmentResult(keep.names, keep.fusion, "FEASIBLE" if keep.values is not None else "UNKNOWN",
                         keep.values, bound, keep.energy_fj, keep.latency_cycles, keep.mapping,
                         old.seconds + new.seconds, old.build_seconds + new.build_seconds, keep.why, keep.model_size,
                         conflicts=old.conflicts + new.conflicts, branches=old.branches + new.branches,
                         deterministic_time=old.deterministic_time + new.deterministic_time,
                         presolve=new.presolve or old.presolve, source=keep.source)


def priced(events, unit: int) -> int:
    """(count, fJ each) events priced in `unit` fJ, each per-event energy rounded as the search rounds it."""
    return sum(n * to_unit(e, unit) for n, e in events)


def energy_in_units(inst: Instance, evaluation: Result, unit: int) -> tuple[int, int]:
    """The evaluator's counts priced with per-access and per-op energies rounded to `unit` fJ, and the exact
    difference from the true energy in fJ. With unit 1 this is the evaluator's energy, difference 0."""
    total = priced(evaluation.access_energies, unit) + priced(evaluation.op_energies, unit)   # per element
    return total, evaluation.energy_fj - total * unit


def _rounding_bound(evaluation: Result, unit: int) -> int:
    """Most the rounding down to `unit` fJ can take off this mapping's energy: under one unit per event."""
    if unit == 1:
        return 0
    events = sum(c.reads + c.writes for c in evaluation.counts.values()) + sum(o for o, _ in evaluation.op_energies)
    return events * (unit - 1)


def _stale_for_lex(r: SegmentResult, best: list, index: dict[str, int], components: list[str]) -> bool:
    """A lexicographic PRUNED segment whose cut-off came from a prefix that has since improved: its bound covers
    the first component only, so a path through it could tie there and win on the second (not a proof)."""
    if len(components) < 2 or r.status != "PRUNED" or r.base is None:
        return False
    prefix = best[index[r.names[0]]]
    return prefix is not None and prefix[0] < r.base


def combine(inst: Instance, names: list[str], results: list[SegmentResult], components: list[str],
            objective: str, build: float, search: float, unit: int = 1,
            unreached: Optional[Unreached] = None) -> SolveResult:
    """Shortest path over the chain of Einsums: best solution and proven bound; then decode and verify.

    `unreached`: plans without a result (solver/search.py, out of time), bounded by `Unreached`'s edges."""
    n = len(names)
    index = {nm: i for i, nm in enumerate(names)}
    best: list[Optional[tuple]] = [None] * (n + 1)
    choice: list[Optional[SegmentResult]] = [None] * (n + 1)
    lower: list[Optional[tuple]] = [None] * (n + 1)
    best[0], lower[0] = tuple(0 for _ in components), (0,)
    by_end: dict[int, list[SegmentResult]] = {}
    for r in results:
        by_end.setdefault(index[r.names[-1]] + 1, []).append(r)
    lows = lower_bounds(results, index, n, unreached)
    lower = [None if v is None else (v,) for v in lows]
    for j in range(1, n + 1):
        for r in by_end.get(j, []):
            i = index[r.names[0]]
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
    mapping = mapping_of(chosen)
    try:
        evaluation = evaluate(inst, mapping)
    except MappingError as exc:
        raise VerificationError(f"the solver's mapping is invalid for the evaluator: {exc}") from None
    evaluated, rounding_error = energy_in_units(inst, evaluation, unit)
    # a component that was not an objective was not modelled: the evaluator's figure is the answer
    energy = sum(r.energy_fj for r in chosen) if "energy" in components else evaluated  # in `unit` fJ
    latency = sum(r.latency_cycles for r in chosen) if "latency" in components else evaluation.latency_cycles
    if (evaluated, evaluation.latency_cycles) != (energy, latency):
        raise VerificationError(f"solver says energy {energy} x {unit} fJ, latency {latency} cycles; the evaluator "
                                f"says {evaluated} x {unit} fJ, {evaluation.latency_cycles} cycles")
    proven = unreached is None and all(r.status in ("OPTIMAL", "INFEASIBLE", "PRUNED")
                                       and not _stale_for_lex(r, best, index, components) for r in results)
    # every segment's bound is a proven bound (CP-SAT's, or the cut-off's): when their shortest path meets the best
    # mapping, that is a proof for one objective; a lexicographic one needs every segment proven on both
    met = lower[n] is not None and lower[n][0] == best[n][0]
    status = "OPTIMAL" if met and (proven or len(components) == 1) else "FEASIBLE"
    if unit > 1 and "energy" in components and status == "OPTIMAL":
        # proven in rounded-down units only: the true fJ optimum lies between unit x bound and this mapping
        k = components.index("energy")
        if k > 0 or evaluation.energy_fj != best[n][0] * unit:
            status = "FEASIBLE"
    bound = list(best[n]) if status == "OPTIMAL" else [lower[n][0]]
    return SolveResult(status, list(best[n]), bound, evaluation.energy_fj, latency, mapping, evaluation, objective,
                       build, search, results, energy_unit_fj=unit, rounding_error_fj=rounding_error,
                       rounding_bound_fj=_rounding_bound(evaluation, unit), incumbent_source=_sources(chosen))


def _sources(chosen: list[SegmentResult]) -> str:
    """Who found the mapping's pieces: "cp-sat", "constructive", or CP-SAT with the constructive pieces named."""
    seeded = ["+".join(r.names) for r in chosen if r.source == "constructive"]
    if not seeded:
        return "cp-sat"
    if len(seeded) == len(chosen):
        return "constructive"
    return f"cp-sat, constructive for {', '.join(seeded)}"

