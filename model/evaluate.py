"""The exact evaluator: counts, capacity, energy and latency of a mapping (docs/model.md §4–6).

This is the one implementation of the cost semantics. The solver's tables and the enumerator's matrices are
derived from the same `Nest` quantities, and every solver answer is re-evaluated here.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import ceil

from .nest import Nest, build_nests, group_copy_bits
from .result import GroupResult, MappingError, Result, TensorCounts, UnitCounts
from .spec import Instance, Mapping
from .units import element_fj, fj
from .variants import select


def _counts_of(n: Nest, filled_once: set[tuple[str, int]]) -> dict[tuple[int, str], TensorCounts]:
    """Per (path position, tensor) counts of one Einsum. `filled_once` dedupes a fused group's shared copies."""
    out: dict[tuple[int, str], TensorCounts] = {}

    def at(pos: int, t: str) -> TensorCounts:
        return out.setdefault((pos, t), TensorCounts())

    fpos = n.fpos()
    ops = n.ops
    for tref in n.einsum.inputs:
        t = tref.tensor
        kept = n.keep[t]
        for parent, pos in zip(kept, kept[1:]):
            if fpos is not None and pos <= fpos:
                key = (t, n.path[pos])
                if key in filled_once:
                    continue
                filled_once.add(key)
            fills = n.inst(pos) * n.tile(pos, t) * n.reload(pos, t)
            served = fills // n.multicast(parent, pos, t)
            c = at(pos, t)
            c.fills += fills
            c.writes += fills
            p = at(parent, t)
            p.reads += served
            p.multicast += fills - served
        inner = at(kept[-1], t)
        served = ops // n.multicast(kept[-1], None, t)
        inner.reads += served
        inner.multicast += ops - served

    o = n.einsum.output.tensor
    kept = n.keep[o]
    if fpos is not None:  # the group's copy at F and above is produced here: consumers in the group never fill it
        filled_once.update((o, n.path[pos]) for pos in kept if pos <= fpos)
    acc = n.accumulates(o)
    # a recurrence's step replaces its state: updates are plain writes and a residency never reads its old state
    # back for the producer (a reader of the previous state fills it as an input, docs §4)
    replaces = n.einsum.recurrence is not None
    arriving = ops // n.reduction(kept[-1], None, o)
    carrying = 0          # arrivals that already hold the old partial sum (drains of read-back residencies)
    at(kept[-1], o).reductions += ops - arriving
    for i in range(len(kept) - 1, -1, -1):
        pos = kept[i]
        c = at(pos, o)
        base = n.inst(pos) * n.tile(pos, o)
        first_visits = base * n.reload_relevant(pos, o)
        drains = base * n.reload(pos, o) if i else 0
        empty = drains if acc.get(pos) else first_visits   # element-residencies that start with no value
        c.updates += arriving
        c.writes += arriving
        if not replaces:
            c.update_reads += arriving - carrying - empty
            c.reads += arriving - carrying - empty
        if i == 0:
            break
        parent = kept[i - 1]
        readbacks = 0 if acc[pos] or replaces else drains - first_visits
        c.drains += drains
        c.reads += drains
        c.fills += readbacks
        c.readbacks += readbacks
        c.writes += readbacks
        p = at(parent, o)
        p.reads += readbacks
        arriving = drains // n.reduction(parent, pos, o)
        carrying = readbacks
        p.reductions += drains - arriving
    return out


def port_words(port: str, reads, writes):
    """Words a port carries: reads through a port named with "r", writes through one named with "w"."""
    return (reads if "r" in port else 0) + (writes if "w" in port else 0)


@dataclass
class Occupancy:
    """What one group (or lone Einsum) holds per instance of each level while it runs (docs §5)."""
    einsums: tuple[str, ...]
    bits: dict[str, int]                       # level -> bits per instance: shared copies + the worst member
    tiles: dict[str, dict[str, int]]           # level -> the tiles making it up ("T" shared, "E.T" a member's)


def kept_tiles(n: Nest, li: int, copy_bits: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Tensor -> (elements, bits) of the tiles Einsum `n` keeps at architecture level `li` (none when the level
    is not on its path). A tile is counted at its width there: partial sums at accumulator width; a fused group's
    copy at F and above at `group_copy_bits` (`copy_bits`)."""
    if li not in n.path:
        return {}
    pos = n.path.index(li)
    f = n.group.fusion_level
    group_copy = f is not None and li <= f
    return {t: (n.tile(pos, t), n.tile(pos, t) * (copy_bits[t] if group_copy else n.width(pos, t)))
            for t, kept in n.keep.items() if pos in kept}


def occupancy(inst: Instance, nests: list[Nest]) -> list[Occupancy]:
    """Per group, in order, the bits per instance each level needs: a group's copies at F and above once, plus
    the member whose own tiles are largest (members below F run one after the other)."""
    levels = inst.architecture.levels
    groups: dict[tuple[str, ...], list[Nest]] = {}
    for n in nests:
        groups.setdefault(n.group.einsums, []).append(n)
    wl = inst.workload
    out = []
    for names, members in groups.items():
        f = members[0].group.fusion_level
        copy_bits = {t: group_copy_bits(wl, [n.einsum for n in members], t) for n in members for t in n.keep}
        occ = Occupancy(names, {}, {})
        for li, lv in enumerate(levels):
            shared: dict[str, tuple[int, int]] = {}
            worst: dict[str, tuple[int, int]] = {}
            for n in members:
                tiles = kept_tiles(n, li, copy_bits)
                if f is not None and li <= f:
                    shared.update(tiles)
                elif sum(b for _, b in tiles.values()) > sum(b for _, b in worst.values()):
                    worst = {f"{n.einsum.name}.{t}": v for t, v in tiles.items()}
            occ.bits[lv.name] = sum(b for _, b in shared.values()) + sum(b for _, b in worst.values())
            occ.tiles[lv.name] = {k: e for k, (e, _) in {**shared, **worst}.items()}
        out.append(occ)
    return out


def _capacity(inst: Instance, nests: list[Nest]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Bits per instance each level needs, the worst group, and the tiles (elements) making it up (docs §5)."""
    levels = inst.architecture.levels
    need: dict[str, int] = {lv.name: 0 for lv in levels}
    detail: dict[str, dict[str, int]] = {lv.name: {} for lv in levels}
    for occ in occupancy(inst, nests):
        for lv in levels:
            total = occ.bits[lv.name]
            if total > need[lv.name] or (total == need[lv.name] and not detail[lv.name]):
                need[lv.name] = total
                detail[lv.name] = occ.tiles[lv.name]
    return need, detail


def analyze(inst: Instance, mapping: Mapping) -> Result:
    """Validate the mapping (capacity excepted) and compute every count, energy and latency exactly."""
    inst = select(inst, mapping.variant)
    arch = inst.architecture
    nests = build_nests(inst, mapping)
    counts: dict[tuple[str, str], TensorCounts] = {}
    units = {u.name: UnitCounts() for u in arch.compute_units}
    unit_capacity: dict[str, Fraction] = {u.name: Fraction(0) for u in arch.compute_units}
    groups: list[GroupResult] = []
    op_energies: list[tuple[int, int]] = []
    filled: dict[tuple[str, ...], set] = {}
    level_energy: dict[tuple[str, str], int] = {}
    access_energies: list[tuple[int, int]] = []
    wb = inst.workload.word_bits
    order: list[tuple[str, ...]] = []
    for n in nests:
        if n.group.einsums not in order:
            order.append(n.group.einsums)
    for names in order:
        members = [n for n in nests if n.group.einsums == names]
        events_before = (len(access_energies), len(op_energies))
        unit_cycles: dict[str, int] = {}
        level_time: dict[tuple[str, str], Fraction] = {}
        for n in members:
            unit = arch.unit(n.unit)
            cost = unit.ops[n.einsum.op]
            cycles = ceil(Fraction(n.steps) / cost.per_cycle)
            unit_cycles[n.unit] = unit_cycles.get(n.unit, 0) + cycles
            uc = units[n.unit]
            uc.ops += n.ops
            uc.cycles += cycles
            uc.energy_fj += n.ops * fj(cost.energy_pj)
            op_energies.append((n.ops, fj(cost.energy_pj)))
            lanes = unit.mesh.size
            for li in n.path[1:]:
                lanes *= arch.levels[li].mesh.size
            unit_capacity[n.unit] += cycles * lanes * cost.per_cycle
            for (pos, t), c in _counts_of(n, filled.setdefault(names, set())).items():
                level = arch.levels[n.path[pos]]
                counts.setdefault((level.name, t), TensorCounts()).add(c)
                bits = n.width(pos, t)
                e_r, e_w = element_fj(level, "r", bits, wb), element_fj(level, "w", bits, wb)
                access_energies.extend(((c.reads, e_r), (c.writes, e_w)))
                energy = c.reads * e_r + c.writes * e_w
                level_energy[(level.name, t)] = level_energy.get((level.name, t), 0) + energy
                for port, bw in level.ports:   # bandwidth counts words of the level's access width
                    moved = port_words(port, c.reads, c.writes) * bits
                    key = (level.name, port)
                    level_time[key] = level_time.get(key, Fraction(0)) + \
                        Fraction(moved) / (n.inst(pos) * bw * level.word(wb))
        level_cycles: dict[str, int] = {}
        for (name, _), tm in level_time.items():   # rounded once per (group, level, port); the slowest port
            level_cycles[name] = max(level_cycles.get(name, 0), ceil(tm))
        candidates = {**{f"unit {u}": c for u, c in unit_cycles.items()},
                      **{f"level {lv}": c for lv, c in level_cycles.items()}}
        bound_by = max(candidates, key=lambda k: candidates[k])
        g = members[0].group
        groups.append(GroupResult(list(names), arch.levels[g.fusion_level].name if g.fusion_level is not None
                                  else None, candidates[bound_by], unit_cycles, level_cycles, bound_by,
                                  access_energies[events_before[0]:] + op_energies[events_before[1]:]))
    need, detail = _capacity(inst, nests)
    utilization = {u: (Fraction(units[u].ops) / cap if cap else Fraction(0)) for u, cap in unit_capacity.items()}
    for u, cap in unit_capacity.items():
        units[u].capacity_ops = int(cap)
    energy = sum(level_energy.values()) + sum(u.energy_fj for u in units.values())
    words = {lv.name: -(-need[lv.name] // lv.word(wb)) for lv in arch.levels}
    return Result(energy, sum(g.latency_cycles for g in groups), counts, level_energy, units, groups, words,
                  detail, utilization, op_energies, need, access_energies)


def check_capacity(inst: Instance, result: Result) -> None:
    wb = inst.workload.word_bits
    for lv in inst.architecture.levels:
        cap = lv.capacity(wb)
        need = result.capacity_bits_required.get(lv.name, 0)
        if cap is not None and need > cap:
            tiles = ", ".join(f"{t} {v}" for t, v in result.capacity_detail[lv.name].items())
            word = lv.word(wb)
            have = f"{cap // word} words" if cap % word == 0 else f"{cap} bits"
            want = f"{-(-need // word)} words" if all(w == word for w in _widths(inst)) else f"{need} bits"
            raise MappingError(f"level {lv.name}: live tiles need {want} per instance (elements: {tiles}); "
                               f"capacity is {have}")


def _widths(inst: Instance) -> set[int]:
    wl = inst.workload
    names = {t for e in wl.einsums for t in e.tensors}
    return {wl.bits(t) for t in names} | {wl.accumulator_bits(t) for t in names}


def evaluate(inst: Instance, mapping: Mapping) -> Result:
    """`analyze`, then reject the mapping if any level's live tiles exceed its capacity."""
    result = analyze(inst, mapping)
    check_capacity(inst, result)
    return result
