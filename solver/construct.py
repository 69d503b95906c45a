"""Valid mappings built without CP-SAT: a trivial nest per Einsum, improved by local search on the model.

Why: a claimed optimum must be checked against mappings constructed independently of the solver (a wrong
presolve once "proved" a bound 13.8x above valid mappings; docs/solver-soundness.md). The construction uses
only the spec and the evaluator (`mapsolve.model`), so every mapping it returns is valid by the one definition
of validity, and its cost is the model's.

Start: every Einsum alone (unfused), on each capable unit, all loops at the backing level (DRAM), each tensor
kept at DRAM and wherever `must_keep` demands (tiles of one word). Then first-improvement local search over
moves that keep the nest valid or are rejected by the evaluator: move one prime factor of a rank between levels
(temporal to temporal, or onto a free mesh axis), toggle a tensor's residency at a level, swap two adjacent
temporal loops. The number of evaluations is capped, so the result is deterministic and its cost bounded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mapsolve.model import MappingError, evaluate
from mapsolve.model.nest import group_intermediates
from mapsolve.model.online import lock_step, lock_step_ranges
from mapsolve.model.spec import (EinsumMapping, FusedGroup, Instance, LevelMapping, Loop, Mapping, SharedLoop,
                                 SpatialLoop, Workload)
from mapsolve.model.views import shared_dims

from .segment import factorize


@dataclass
class _Nest:
    """A mutable loop nest of one Einsum: per path position, temporal loops (outermost first), spatial loops
    and kept tensors."""

    unit: str
    levels: list[str]
    temporal: list[list[list]]               # pos -> [[rank, factor], ...]
    spatial: list[list[list]]                # pos -> [[rank, factor, axis], ...]
    keep: list[set[str]] = field(default_factory=list)

    def copy(self) -> "_Nest":
        return _Nest(self.unit, list(self.levels), [[list(lp) for lp in t] for t in self.temporal],
                     [[list(sp) for sp in s] for s in self.spatial], [set(k) for k in self.keep])

    def to_spec(self, einsum: str) -> EinsumMapping:
        levels = []
        for pos, name in enumerate(self.levels):
            levels.append(LevelMapping(
                level=name, keep=sorted(self.keep[pos]),
                temporal=[Loop(rank=r, factor=f) for r, f in self.temporal[pos] if f > 1],
                spatial=[SpatialLoop(rank=r, factor=f, axis=a) for r, f, a in self.spatial[pos] if f > 1]))
        return EinsumMapping(einsum=einsum, compute_unit=self.unit, levels=levels)

    def key(self) -> tuple:
        """What the evaluation depends on: the unit, the non-unit loops in order, the kept tensors."""
        return (self.unit, tuple(tuple((r, f) for r, f in t if f > 1) for t in self.temporal),
                tuple(tuple((r, f, a) for r, f, a in sp if f > 1) for sp in self.spatial),
                tuple(tuple(sorted(k)) for k in self.keep))


def single_einsum_instance(inst: Instance, name: str) -> Instance:
    """The instance restricted to one Einsum (its ranks, its tensors in may_keep/must_keep): an unfused
    Einsum's cost does not depend on the others (groups run in sequence, docs/model.md §5-6)."""
    e = next(x for x in inst.workload.einsums if x.name == name)
    tensors = set(e.tensors)
    levels = [lv.model_copy(update={
        "may_keep": None if lv.may_keep is None else [t for t in lv.may_keep if t in tensors],
        "must_keep": [t for t in lv.must_keep if t in tensors]}) for lv in inst.architecture.levels]
    wl = Workload(ranks=dict(inst.workload.ranks), word_bits=inst.workload.word_bits, einsums=[e],
                  tensors={t: f for t, f in inst.workload.tensors.items() if t in tensors
                           and (t == e.output.tensor or f.accumulator_bits is None)} |
                  {t: f.model_copy(update={"accumulator_bits": None}) for t, f in inst.workload.tensors.items()
                   if t in tensors and t != e.output.tensor and f.accumulator_bits is not None})
    return inst.model_copy(update={"workload": wl,
                                   "architecture": inst.architecture.model_copy(update={"levels": levels})})


def _trivial(inst: Instance, e, unit) -> _Nest:
    """All loops at DRAM; tensors kept at DRAM and where must_keep says (one-word tiles)."""
    arch = inst.architecture
    path = arch.path(unit.name)
    tensors = set(e.tensors)
    keep = [set(tensors) if pos == 0 else {t for t in arch.levels[li].must_keep if t in tensors}
            for pos, li in enumerate(path)]
    temporal = [[] for _ in path]
    temporal[0] = [[r, inst.workload.ranks[r]] for r in e.space]
    return _Nest(unit.name, [arch.levels[li].name for li in path], temporal, [[] for _ in path], keep)


def _largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0) if cap >= 1 else 1


def _start(inst: Instance, e, unit) -> _Nest:
    """A better start than `_trivial`: every mesh axis filled with the largest fitting factors (output ranks
    first where the mesh cannot reduce), every tensor kept wherever the level may hold it."""
    arch = inst.architecture
    nest = _trivial(inst, e, unit)
    names = [lv.name for lv in arch.levels]
    for pos, name in enumerate(nest.levels[1:], start=1):
        lv = arch.levels[names.index(name)]
        if lv.capacity(inst.workload.word_bits) != 0:
            nest.keep[pos] |= {t for t in e.tensors if lv.may_keep is None or t in lv.may_keep}
    out = set(e.output.ranks)
    for pos, mesh in enumerate(_meshes(inst, nest)):
        ranks = sorted(e.space, key=lambda r: (mesh.reduction or r in out) and -inst.workload.ranks[r])
        ranks = sorted(ranks, key=lambda r: not (mesh.reduction or r in out))
        for axis in ("x", "y"):
            room = getattr(mesh, axis)
            for r in ranks:
                left = _factor_of(nest.temporal[0], r)
                d = _largest_divisor(left, room)
                if d > 1:
                    _scale(nest.temporal[0], r, d, True)
                    _scale(nest.spatial[pos], r, d, False, axis)
                    room //= d
    return nest


def _meshes(inst: Instance, nest: _Nest) -> list:
    """The mesh each position's spatial loops feed: the next path level's, or the unit's below the last."""
    arch = inst.architecture
    names = [lv.name for lv in arch.levels]
    out = []
    for pos in range(len(nest.levels)):
        if pos + 1 < len(nest.levels):
            out.append(arch.levels[names.index(nest.levels[pos + 1])].mesh)
        else:
            out.append(arch.unit(nest.unit).mesh)
    return out


def _factor_of(loops: list[list], rank: str) -> int:
    return next((lp[1] for lp in loops if lp[0] == rank), 1)


def _scale(loops: list[list], rank: str, mult: int, divide: bool, axis: Optional[str] = None) -> bool:
    """Multiply (or divide) the factor of `rank`'s loop in `loops` (on `axis` for spatial); False if impossible."""
    for lp in loops:
        if lp[0] == rank and (axis is None or lp[2] == axis):
            if divide:
                if lp[1] % mult:
                    return False
                lp[1] //= mult
            else:
                lp[1] *= mult
            return True
    if divide:
        return False
    loops.append([rank, mult] if axis is None else [rank, mult, axis])
    return True


def _neighbours(inst: Instance, e, nest: _Nest):
    """Every single-step change of the nest (some may be invalid: the evaluator decides)."""
    arch = inst.architecture
    meshes = _meshes(inst, nest)
    npos = len(nest.levels)
    primes = {r: sorted(factorize(inst.workload.ranks[r])) for r in e.space}
    for r in e.space:
        for p in primes[r]:
            for src in range(npos):
                if _factor_of(nest.temporal[src], r) % p:
                    continue
                for dst in range(npos):
                    if dst != src:
                        n = nest.copy()
                        _scale(n.temporal[src], r, p, True)
                        _scale(n.temporal[dst], r, p, False)
                        yield n
                    for axis in ("x", "y"):
                        size = getattr(meshes[dst], axis)
                        used = 1
                        for sp in nest.spatial[dst]:
                            if sp[2] == axis:
                                used *= sp[1]
                        if used * p > size:
                            continue
                        n = nest.copy()
                        _scale(n.temporal[src], r, p, True)
                        _scale(n.spatial[dst], r, p, False, axis)
                        yield n
            for pos in range(npos):
                for sp in nest.spatial[pos]:
                    if sp[0] == r and sp[1] % p == 0:
                        n = nest.copy()
                        _scale(n.spatial[pos], r, p, True, sp[2])
                        _scale(n.temporal[pos], r, p, False)
                        yield n
    names = [lv.name for lv in arch.levels]
    for pos in range(1, npos):
        lv = arch.levels[names.index(nest.levels[pos])]
        for t in sorted(e.tensors):
            if t in lv.must_keep or (lv.may_keep is not None and t not in lv.may_keep):
                continue
            n = nest.copy()
            n.keep[pos] ^= {t}
            yield n
    for pos in range(npos):
        loops = [lp for lp in nest.temporal[pos] if lp[1] > 1]
        for i in range(len(loops) - 1):
            n = nest.copy()
            live = [lp for lp in n.temporal[pos] if lp[1] > 1]
            live[i], live[i + 1] = live[i + 1], live[i]
            n.temporal[pos] = live
            yield n


def _cost(inst: Instance, name: str, nest: _Nest, component: str, seen: Optional[dict] = None
          ) -> Optional[tuple[int, int]]:
    """The nest's (component, other) cost, or None if invalid; `seen` memoises by `_Nest.key` (the local search
    revisits ~20 % of its nests). The caller still counts a revisit as an evaluation: the search, and so the
    mapping it returns, stay exactly as without the memo."""
    key = nest.key() if seen is not None else None
    if key is not None and key in seen:
        return seen[key]
    try:
        res = evaluate(inst, Mapping(einsums=[nest.to_spec(name)]))
        out = (res.energy_fj, res.latency_cycles) if component == "energy" else (res.latency_cycles, res.energy_fj)
    except MappingError:
        out = None
    if key is not None:
        seen[key] = out
    return out


def construct_einsum(inst: Instance, name: str, component: str = "energy",
                     max_evaluations: int = 200, allowance=None) -> Optional[EinsumMapping]:
    """A valid mapping of Einsum `name` alone, good for `component`, or None when none was found.

    `allowance` (solver/limits.py `Allowance`): each evaluation of the local search spends one unit of it, and the
    search stops when it is spent (the greedy start is always evaluated: the mapping stays complete)."""
    sub = single_einsum_instance(inst, name)
    e = sub.workload.einsums[0]
    best: Optional[tuple[tuple[int, int], _Nest]] = None
    units = [u for u in sub.architecture.compute_units if e.op in u.ops]
    per_unit = max(max_evaluations // max(len(units), 1), 1)
    seen: dict = {}
    for unit in units:
        # an evaluation costs about (levels on the path) x (tensors): 1 unit for tiny_matmul's 3 x 3
        cost_units = max(1.0, len(sub.architecture.path(unit.name)) * len(e.tensors) / 9)
        nest = _start(sub, e, unit)
        cost = _cost(sub, name, nest, component)
        if cost is None:
            nest = _trivial(sub, e, unit)
            cost = _cost(sub, name, nest, component)
        if allowance is not None:
            allowance.spend(cost_units)
        if cost is None:
            continue
        evaluations = 1
        improved = True
        while improved and evaluations < per_unit and not (allowance is not None and allowance.spent()):
            improved = False
            for cand in _neighbours(sub, e, nest):
                c = _cost(sub, name, cand, component, seen)
                evaluations += 1
                if allowance is not None:
                    allowance.spend(cost_units)
                if c is not None and c < cost:
                    nest, cost, improved = cand, c, True
                    break
                if evaluations >= per_unit or (allowance is not None and allowance.spent()):
                    break
        if best is None or cost < best[0]:
            best = (cost, nest)
    return best[1].to_spec(name) if best else None


def _lone_key(inst: Instance, e, component: str, arch_doc: dict):
    """(key, names) of Einsum `e` alone, in canonical names (solver/cache.py `Names`): Einsums equal but for
    their names have one key, and one constructive mapping (renamed). The key holds what `single_einsum_instance`
    keeps (the Einsum, its tensors' formats and ranks, the word width, the architecture with the residency rules
    for its tensors), in O(its size): solver/cache.py's segment key scans the whole workload."""
    import json
    from .cache import Names
    wl = inst.workload
    nm = Names([e])
    levels = []
    for lv in arch_doc["levels"]:
        levels.append({**lv, "may_keep": None if lv["may_keep"] is None else
                       sorted(nm.tensor[t] for t in lv["may_keep"] if t in nm.tensor),
                       "must_keep": sorted(nm.tensor[t] for t in lv["must_keep"] if t in nm.tensor)})
    doc = {"einsum": nm.einsum_doc(e), "output": nm.tensor[e.output.tensor],
           "tensors": {nm.tensor[t]: wl.tensors[t].model_dump(mode="json") if t in wl.tensors else None
                       for t in nm.tensor},
           "ranks": {nm.rank[r]: wl.ranks[r] for r in nm.rank}, "word_bits": wl.word_bits,
           "architecture": {**arch_doc, "levels": levels}, "component": component,
           # the local search visits tensors in name order and ranks in the Einsum's order: equal keys then make
           # equal (renamed) searches, so sharing changes no result
           "visit": [[nm.tensor[t] for t in sorted(e.tensors)], [nm.rank[r] for r in e.space]]}
    return json.dumps(doc, sort_keys=True, default=str), nm


def constructive_mapping(inst: Instance, component: str = "energy",
                         max_evaluations: int = 200, allowance=None) -> Optional[Mapping]:
    """Every Einsum alone, each on its best unit with a locally improved tiling, but the runs that must step in
    lock step (a recurrence and its running readers, `lock_step_group`); None if some Einsum or run has no valid
    mapping this way (e.g. must_keep tensors that cannot fit even as one word each).

    Einsums equal but for their names (the element-wise Einsums of a chain, the layers of a model) are mapped once
    and the mapping renamed: a 200-Einsum chain took 9 s. `allowance` bounds the local searches together (each
    Einsum still gets its greedy start)."""
    maps, groups = [], []
    by_key: dict[str, Optional[dict]] = {}   # canonical key -> canonical mapping (None: no mapping)
    arch_doc = inst.architecture.model_dump(mode="json")
    by_name = {e.name: e for e in inst.workload.einsums}
    locked = {n: run for run in lock_step_ranges(inst.workload) for n in run}
    done: set = set()
    for e in inst.workload.einsums:
        if e.name in done:
            continue
        if e.name in locked:
            options = list(lock_step_groups(inst, locked[e.name]))
            if not options:
                return None
            groups.append(options)
            done.update(locked[e.name])
            continue
        key, nm = _lone_key(inst, by_name[e.name], component, arch_doc)
        if key in by_key:
            canonical = by_key[key]
            if canonical is None:
                return None
            em = EinsumMapping.model_validate(nm.inverse().einsum_mapping(canonical))
        else:
            em = construct_einsum(inst, e.name, component, max_evaluations, allowance)
            by_key[key] = None if em is None else nm.einsum_mapping(em.model_dump(mode="json"))
        if em is None:
            return None
        maps.append(em)
    order = {e.name: k for k, e in enumerate(inst.workload.einsums)}
    chosen: list = []
    for options in groups:      # the first option of each run that makes the whole mapping valid
        for ems, group in options:
            trial = chosen + [(ems, group)] + [o[0] for o in groups[len(chosen) + 1:]]
            mapping = Mapping(einsums=sorted(maps + [m for es, _ in trial for m in es],
                                             key=lambda m: order[m.einsum]), groups=[g for _, g in trial])
            try:
                evaluate(inst, mapping)
            except MappingError:
                continue
            chosen.append((ems, group))
            break
        else:
            return None
    return Mapping(einsums=sorted(maps + [m for es, _ in chosen for m in es], key=lambda m: order[m.einsum]),
                   groups=[g for _, g in chosen])


def lock_step_groups(inst: Instance, names: list[str]):
    """Fused groups of `names` (a lock-step run), one per admissible fusion level: every dimension the group may share is a loop
    at the outermost level with its whole bound (the carried ranks among them), so every tile at the fusion
    level is as small as the members' own ranks allow; the rest of each member's ranks loop at the fusion level;
    intermediates live there, everything else at DRAM (and where must_keep says). On the first capable unit
    whose path reaches the fusion level; the caller checks validity (capacity) on the whole mapping."""
    arch, wl = inst.architecture, inst.workload
    members = [e for e in wl.einsums if e.name in names]
    carried = {r for p, c, r in lock_step(wl) if p in names}
    dims = shared_dims(members)
    if not all(any(all(rk == r for _, rk in d.ranks) for d in dims) for r in carried):
        return
    inter = group_intermediates(wl, names)
    for f in range(1, len(arch.levels)):
        units = {}
        for e in members:
            for u in arch.compute_units:
                path = arch.path(u.name)
                if e.op in u.ops and f in path:
                    units[e.name] = (u, path)
                    break
        if len(units) != len(members):
            continue
        tops = {tuple(p[:p.index(f)]) for _, p in units.values()}
        if len(tops) != 1 or any(arch.levels[x].mesh.size != 1 for x in (*list(tops)[0][1:], f)):
            continue
        top = list(tops)[0]
        shared = [SharedLoop(level=arch.levels[top[0]].name, rank=d.first, factor=wl.ranks[d.first],
                             renames={m: r for m, r in d.ranks if r != d.first})
                  for d in dims if wl.ranks[d.first] > 1]   # a loop of one iteration is no loop
        ems = []
        for e in members:
            u, path = units[e.name]
            taken = {d.rank_of(e.name) for d in dims}
            fpos = path.index(f)
            levels = []
            for pos, li in enumerate(path):
                lv = arch.levels[li]
                keep = {t for t in e.tensors if (pos == 0 and t not in inter) or (pos == fpos and t in inter)
                        or (t in lv.must_keep and not (t in inter and pos < fpos))}
                loops = [Loop(rank=r, factor=wl.ranks[r]) for r in e.space if r not in taken and wl.ranks[r] > 1] \
                    if pos == fpos else []
                levels.append(LevelMapping(level=lv.name, keep=sorted(keep), temporal=loops))
            ems.append(EinsumMapping(einsum=e.name, compute_unit=u.name, levels=levels))
        yield ems, FusedGroup(einsums=list(names), fusion_level=arch.levels[f].name, shared_loops=shared)
