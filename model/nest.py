"""One Einsum's loop nest, flattened, with the reuse quantities the cost model is built from.

A mapping says loops per level; the cost model reasons about the whole nest from DRAM to the compute unit.
`build_nests` validates a mapping against the rules of docs/model.md §2–3 and returns one `Nest` per Einsum.
Everything here is integer arithmetic on factors: tiles, instances, reload multipliers, multicast factors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .result import MappingError
from .online import check_recurrences, reads_final
from .views import incompatibility
from .spec import Einsum, Instance, Mapping, Mesh


@dataclass(frozen=True)
class NestLoop:
    rank: str
    factor: int
    pos: int               # position on the Einsum's path of the level the loop sits at
    spatial: bool
    shared: bool = False
    mesh: Mesh | None = None  # the mesh a spatial loop spreads over
    span: frozenset | None = None  # a shared loop: the group members it encloses


@dataclass(frozen=True)
class Group:
    """A fused group (or a lone Einsum: fusion_level None)."""

    einsums: tuple[str, ...]
    fusion_level: int | None      # architecture level index of F
    intermediates: frozenset[str]  # tensors produced and fully consumed inside the group
    users: tuple = ()              # (tensor, frozenset of the members using it), for every group tensor

    @property
    def multi(self) -> bool:
        return self.fusion_level is not None and len(self.einsums) > 1

    def users_of(self, tensor: str) -> frozenset:
        return dict(self.users).get(tensor, frozenset(self.einsums))


@dataclass
class Nest:
    einsum: Einsum
    unit: str
    path: list[int]                      # architecture level indices, outermost first
    loops: list[NestLoop]                # outermost first
    keep: dict[str, list[int]]           # tensor -> kept path positions, outermost first
    group: Group
    bounds: dict[str, int]
    start: dict[int, int] = field(default_factory=dict)  # path position -> index of its first loop
    formats: dict[str, tuple[int, int]] = field(default_factory=dict)  # tensor -> (bits, accumulator bits)
    reduces: bool = False                # the Einsum sums or maxes over a rank of bound > 1
    frames: dict = field(default_factory=dict, repr=False)  # cache: tensor -> its group copy's (loops, start)

    # -- basic facts --------------------------------------------------------------------------------------
    @property
    def tensors(self) -> dict[str, list[str]]:
        return self.einsum.tensors

    @property
    def space(self) -> list[str]:
        return self.einsum.space

    @property
    def ops(self) -> int:
        return prod(self.bounds[r] for r in self.space)

    @property
    def steps(self) -> int:
        """Temporal iterations: one per cycle-step of every active unit."""
        return prod(lp.factor for lp in self.loops if not lp.spatial)

    def fpos(self) -> int | None:
        """Path position of the fusion level, if fused with others."""
        return self.path.index(self.group.fusion_level) if self.group.multi else None

    def frame(self, pos: int, tensor: str) -> tuple[list[NestLoop], dict[int, int]]:
        """(loops, start) in which the tensor's tile at `pos` is measured (docs/model.md §3, nested fusion).

        Below F: this Einsum's nest. At F and above in a fused group the tile is the group's copy, shared by every
        member using the tensor, so only the shared loops enclosing all of them tile it; a shared loop enclosing
        just some of them runs inside the copy's residency, as if it were a loop at F (the copy holds that loop's
        whole extent). With every shared loop enclosing the whole group (flat fusion) this is the nest itself."""
        fpos = self.fpos()
        if fpos is None or pos > fpos:
            return self.loops, self.start
        got = self.frames.get(tensor)
        if got is None:
            users = self.group.users_of(tensor)
            inner = [lp for lp in self.loops if lp.shared and lp.span is not None and not users <= lp.span]
            if not inner:
                got = (self.loops, self.start)
            else:
                common = [lp for lp in self.loops[:self.start[fpos]] if lp not in inner]
                moved = [NestLoop(lp.rank, lp.factor, fpos, False) for lp in inner]
                loops = common + moved + self.loops[self.start[fpos]:]
                start = dict(self.start)
                for p in range(fpos + 1):
                    start[p] = sum(1 for lp in common if lp.pos < p)
                got = (loops, start)
            self.frames[tensor] = got
        return got

    # -- the quantities of docs/model.md ----------------------------------------------------------------
    def tile(self, pos: int, tensor: str) -> int:
        ranks = self.tensors[tensor]
        loops, start = self.frame(pos, tensor)
        return prod(lp.factor for lp in loops[start[pos]:] if lp.rank in ranks)

    def tile_shape(self, pos: int, tensor: str) -> dict[str, int]:
        """The tile's extent per rank of the tensor (in this Einsum's names for them): `tile` is their product."""
        loops, start = self.frame(pos, tensor)
        return {r: prod(lp.factor for lp in loops[start[pos]:] if lp.rank == r) for r in self.tensors[tensor]}

    def inst(self, pos: int) -> int:
        return prod(lp.factor for lp in self.loops[:self.start[pos]] if lp.spatial)

    def counted_loops(self, pos: int, tensor: str) -> list[NestLoop]:
        """The temporal loops above `pos` that refetch the tensor's tile there (docs §3): outermost down to the
        innermost relevant loop of factor > 1 (below F in a group, a shared loop counts as relevant)."""
        ranks = self.tensors[tensor]
        fpos = self.fpos()
        barrier_shared = fpos is not None and pos > fpos
        loops, start = self.frame(pos, tensor)
        above = [lp for lp in loops[:start[pos]] if not lp.spatial]
        cut = 0
        for i, lp in enumerate(above):
            if lp.factor > 1 and (lp.rank in ranks or (barrier_shared and lp.shared)):
                cut = i + 1
        return above[:cut]

    def reload(self, pos: int, tensor: str) -> int:
        """R: product of the temporal loops above `pos` down to the innermost relevant non-unit one."""
        return prod(lp.factor for lp in self.counted_loops(pos, tensor))

    def revisits(self, pos: int, tensor: str) -> bool:
        """Whether a residency of the tensor at `pos` comes back: a loop the tensor lacks, of factor > 1, sits
        outside the innermost relevant loop above `pos` (R > Rrel; a shared loop below F counts, docs §3)."""
        ranks = self.tensors[tensor]
        return any(lp.rank not in ranks and lp.factor > 1 for lp in self.counted_loops(pos, tensor))

    def partial(self, pos: int, tensor: str) -> bool:
        """Whether kept position `pos` holds partial sums of this Einsum's output (docs/model.md §1): the Einsum
        reduces and `pos` is where the units' updates arrive, or the next kept level below drains values that
        are not final (it revisits its residencies, or several instances feed one element: accumulate mode)."""
        kept = self.keep[tensor]
        if not self.reduces or tensor != self.einsum.output.tensor or pos not in kept:
            return False
        i = kept.index(pos)
        if i == len(kept) - 1:
            return True
        child = kept[i + 1]
        return self.revisits(child, tensor) or self.accumulates(tensor)[child]

    def width(self, pos: int, tensor: str) -> int:
        """Bits per element of the tensor at kept position `pos`: partial sums at accumulator width."""
        bits, acc = self.formats[tensor]
        return acc if acc != bits and self.partial(pos, tensor) else bits

    def reload_relevant(self, pos: int, tensor: str) -> int:
        """Rrel: product of the temporal loops above `pos` whose rank indexes the tensor."""
        ranks = self.tensors[tensor]
        loops, start = self.frame(pos, tensor)
        return prod(lp.factor for lp in loops[:start[pos]] if not lp.spatial and lp.rank in ranks)

    def _spatial_between(self, upper: int, lower: int | None, tensor: str, capability: str) -> int:
        """Product of irrelevant spatial factors at levels upper..lower-1 whose mesh has the capability."""
        ranks = self.tensors[tensor]
        end = len(self.loops) if lower is None else self.start[lower]
        return prod(lp.factor for lp in self.loops[self.start[upper]:end]
                    if lp.spatial and lp.rank not in ranks and getattr(lp.mesh, capability))

    def spread(self, upper: int, lower: int, tensor: str) -> bool:
        """Whether a spatial loop of factor > 1 at levels upper..lower-1 runs over a rank the tensor lacks: then
        several instances of `lower` hold the same elements under one instance of `upper`."""
        ranks = self.tensors[tensor]
        return any(lp.spatial and lp.rank not in ranks and lp.factor > 1
                   for lp in self.loops[self.start[upper]:self.start[lower]])

    def accumulates(self, tensor: str) -> dict[int, bool]:
        """Per kept position of output `tensor` below its backing level: True when that level's residencies
        start from zero and its parent accumulates the drains (docs/model.md §4), False when it reads its
        partial sums back. Read-back is only sound when one instance contributes to each parent element
        (no spread) and the parent itself holds every partial sum (it is the backing level or reads back)."""
        kept = self.keep[tensor]
        out: dict[int, bool] = {}
        for parent, pos in zip(kept, kept[1:]):
            out[pos] = self.spread(parent, pos, tensor) or out.get(parent, False)
        return out

    def multicast(self, upper: int, lower: int | None, tensor: str) -> int:
        return self._spatial_between(upper, lower, tensor, "multicast")

    def reduction(self, upper: int, lower: int | None, tensor: str) -> int:
        return self._spatial_between(upper, lower, tensor, "reduction")


# ------------------------------------------------------------------------------------------------------------
# Building and validating
# ------------------------------------------------------------------------------------------------------------
def group_intermediates(workload, names) -> frozenset[str]:
    """Tensors a fused group (two or more Einsums) produces and only its own members consume: they live on
    chip at the fusion level and never reach DRAM (docs/model.md §5). The mapper and the enumerator use this."""
    members = set(names)
    if len(members) < 2:
        return frozenset()
    consumers: dict[str, set[str]] = {}
    for e in workload.einsums:
        for t in e.inputs:
            consumers.setdefault(t.tensor, set()).add(e.name)
    return frozenset(e.output.tensor for e in workload.einsums
                     if e.name in members and consumers.get(e.output.tensor) and consumers[e.output.tensor] <= members)


def _groups(inst: Instance, mapping: Mapping) -> dict[str, Group]:
    arch, wl = inst.architecture, inst.workload
    order = [e.name for e in wl.einsums]
    by_einsum: dict[str, Group] = {}
    for gi, g in enumerate(mapping.groups):
        where = f"groups[{gi}]"
        for n in g.einsums:
            if n not in order:
                raise MappingError(f"{where}: unknown einsum {n!r}")
            if n in by_einsum:
                raise MappingError(f"{where}: einsum {n} is in two groups")
        idx = [order.index(n) for n in g.einsums]
        if idx != list(range(idx[0], idx[0] + len(idx))):
            raise MappingError(f"{where}: einsums must be consecutive in cascade order, got {g.einsums}")
        names = [lv.name for lv in arch.levels]
        if g.fusion_level not in names:
            raise MappingError(f"{where}: unknown fusion level {g.fusion_level!r}")
        f = names.index(g.fusion_level)
        if f == 0:
            raise MappingError(f"{where}: the fusion level must be on chip, not {g.fusion_level}")
        _check_spans(g, where)
        users: dict[str, set] = {}
        for e in wl.einsums:
            if e.name in g.einsums:
                for t in e.tensors:
                    users.setdefault(t, set()).add(e.name)
        grp = Group(tuple(g.einsums), f, group_intermediates(wl, g.einsums),
                    tuple((t, frozenset(u)) for t, u in users.items()))
        for n in g.einsums:
            by_einsum[n] = grp
    for n in order:
        by_einsum.setdefault(n, Group((n,), None, frozenset()))
    return by_einsum


def _check_spans(g, where: str) -> None:
    """A shared loop's `einsums` is a contiguous run of the group; in nest order (levels outermost first, then as
    listed) a loop that shares a member with an earlier one encloses a subset of its members: a tree."""
    names = list(g.einsums)
    for sl in g.shared_loops:
        if sl.einsums is None:
            continue
        for m in sl.einsums:
            if m not in names:
                raise MappingError(f"{where}: shared loop over {sl.rank} encloses {m!r}, which is not a member "
                                   f"of the group")
        idx = [names.index(m) for m in sl.einsums]
        if len(set(idx)) != len(idx) or idx != list(range(idx[0], idx[0] + len(idx))):
            raise MappingError(f"{where}: shared loop over {sl.rank} must enclose a contiguous run of the group in "
                               f"cascade order, got {sl.einsums}")


def _tree_order(inst: Instance, g, where: str) -> None:
    """Check the tree rule in nest order (path levels outermost first, then list order)."""
    levels = [lv.name for lv in inst.architecture.levels]
    spans = sorted(((levels.index(sl.level) if sl.level in levels else -1, i,
                     frozenset(sl.einsums) if sl.einsums is not None else frozenset(g.einsums), sl)
                    for i, sl in enumerate(g.shared_loops)), key=lambda x: (x[0], x[1]))
    for a in range(len(spans)):
        for b in range(a + 1, len(spans)):
            sa, sb = spans[a][2], spans[b][2]
            if sa & sb and not sb <= sa:
                raise MappingError(f"{where}: shared loop over {spans[b][3].rank} at {spans[b][3].level} is inside "
                                   f"the loop over {spans[a][3].rank} at {spans[a][3].level} for "
                                   f"{sorted(sa & sb)} but encloses {sorted(sb - sa)} too: the shared loops must "
                                   f"form a tree (an inner loop encloses a subset of the members of an outer one)")


def build_nests(inst: Instance, mapping: Mapping) -> list[Nest]:
    """Validate `mapping` against `inst` (except capacity) and flatten every Einsum's nest."""
    wl = inst.workload
    einsums = {e.name: e for e in wl.einsums}
    seen: dict[str, object] = {}
    for em in mapping.einsums:
        if em.einsum not in einsums:
            raise MappingError(f"mapping.einsums: unknown einsum {em.einsum!r}")
        if em.einsum in seen:
            raise MappingError(f"mapping.einsums: einsum {em.einsum} mapped twice")
        seen[em.einsum] = em
    for name in einsums:
        if name not in seen:
            raise MappingError(f"mapping.einsums: einsum {name} has no mapping")
    groups = _groups(inst, mapping)
    arch = inst.architecture
    units = {u.name for u in arch.compute_units}
    for gi, g in enumerate(mapping.groups):
        _tree_order(inst, g, f"groups[{gi}]")
        for n in g.einsums:
            unit = seen[n].compute_unit
            if unit in units and groups[n].fusion_level not in arch.path(unit):
                raise MappingError(f"groups[{gi}]: the fusion level {g.fusion_level} is not on the path of einsum "
                                   f"{n} (unit {unit} uses "
                                   f"{', '.join(arch.levels[i].name for i in arch.path(unit))})")
    shared_by_group = {tuple(g.einsums): g.shared_loops for g in mapping.groups}
    at = {em.einsum: i for i, em in enumerate(mapping.einsums)}   # JSON index, for messages
    nests = [_build_one(inst, seen[e.name], e, groups[e.name], shared_by_group.get(groups[e.name].einsums, []),
                        at[e.name]) for e in wl.einsums]
    specs = {tuple(g.einsums): g for g in mapping.groups}
    _check_groups(inst, nests, specs)
    check_recurrences(inst, nests, specs)
    return nests


def _build_one(inst: Instance, em, e: Einsum, group: Group, shared, index: int = 0) -> Nest:
    """`index`: the entry's position in mapping.einsums, so messages give its JSON path."""
    arch, wl = inst.architecture, inst.workload
    where = f"einsums[{index}] (einsum {e.name})"
    units = {u.name: u for u in arch.compute_units}
    if em.compute_unit not in units:
        raise MappingError(f"{where}: unknown compute unit {em.compute_unit!r}")
    unit = units[em.compute_unit]
    if e.op not in unit.ops:
        raise MappingError(f"{where}: compute unit {unit.name} cannot run op {e.op!r}")
    path = arch.path(unit.name)
    want = [arch.levels[i].name for i in path]
    got = [lm.level for lm in em.levels]
    if got != want:
        raise MappingError(f"{where}: levels must be exactly the path of {unit.name}, outermost first: "
                           f"{want}, got {got}")
    tensors = {t.tensor: t.ranks for t in (e.output, *e.inputs)}
    space = set().union(*(set(r) for r in tensors.values()))
    if group.fusion_level is not None and group.fusion_level not in path:
        raise MappingError(f"{where}: fusion level {arch.levels[group.fusion_level].name} is not on the path "
                           f"of compute unit {unit.name}")
    fpos = path.index(group.fusion_level) if group.fusion_level is not None else None

    if fpos is not None:
        above_f = [arch.levels[i].name for i in path[:fpos]]
        everyone = frozenset(group.einsums)
        spans = {id(sl): frozenset(sl.einsums) if sl.einsums is not None else everyone for sl in shared}
        for sl in shared:
            if sl.level not in above_f:
                raise MappingError(f"{where}: shared loop at level {sl.level!r}, which is not above the "
                                   f"fusion level on its path ({above_f})")
        shared = [sl for sl in shared if sl.encloses(e.name)]
        for sl in shared:
            if sl.level not in above_f:
                raise MappingError(f"{where}: shared loop at level {sl.level!r}, which is not above the "
                                   f"fusion level on its path ({above_f})")
        for sl in shared:
            for m in sl.renames:
                if m not in group.einsums:
                    raise MappingError(f"{where}: shared loop over {sl.rank} renames it for {m!r}, which is not "
                                       f"a member of the group")
        levels_ranks = [(sl.level, sl.rank_of(e.name), spans[id(sl)]) for sl in shared]
        if len(set(levels_ranks)) != len(levels_ranks):
            raise MappingError(f"{where}: two shared loops over the same rank at one level enclose the same "
                               f"members")
    loops: list[NestLoop] = []
    start: dict[int, int] = {}
    for pos, lm in enumerate(em.levels):
        lwhere = f"einsums[{index}].levels[{pos}] (einsum {e.name}, level {lm.level})"
        start[pos] = len(loops)
        below = arch.levels[path[pos + 1]].mesh if pos + 1 < len(path) else unit.mesh
        if fpos is not None and pos < fpos:
            if lm.temporal or lm.spatial:
                raise MappingError(f"{lwhere}: in a fused group the levels above the fusion level carry only "
                                   f"the group's shared loops")
            for sl in shared:
                if sl.level == lm.level:
                    r = sl.rank_of(e.name)
                    if r not in space:
                        raise MappingError(f"{lwhere}: shared loop over {r}, which is not a rank of "
                                           f"{e.name} (a member naming the dimension otherwise needs renames)")
                    loops.append(NestLoop(r, sl.factor, pos, False, shared=True, span=spans[id(sl)]))
        else:
            seen_t = set()
            for lp in lm.temporal:
                if lp.rank not in space:
                    raise MappingError(f"{lwhere}: temporal loop over {lp.rank!r}, not a rank of {e.name}")
                if lp.rank in seen_t:
                    raise MappingError(f"{lwhere}: two temporal loops over {lp.rank}")
                seen_t.add(lp.rank)
                loops.append(NestLoop(lp.rank, lp.factor, pos, False))
        seen_s = set()
        for sp in lm.spatial:
            if sp.rank not in space:
                raise MappingError(f"{lwhere}: spatial loop over {sp.rank!r}, not a rank of {e.name}")
            if (sp.rank, sp.axis) in seen_s:
                raise MappingError(f"{lwhere}: two spatial loops over {sp.rank} on axis {sp.axis}")
            seen_s.add((sp.rank, sp.axis))
            loops.append(NestLoop(sp.rank, sp.factor, pos, True, mesh=below))
        for axis in ("x", "y"):
            used = prod(sp.factor for sp in lm.spatial if sp.axis == axis)
            if used > getattr(below, axis):
                raise MappingError(f"{lwhere}: spatial factors on axis {axis} multiply to {used}, "
                                   f"more than the mesh's {getattr(below, axis)}")
    for r in sorted(space):
        got_f = prod(lp.factor for lp in loops if lp.rank == r)
        if got_f != wl.ranks[r]:
            raise MappingError(f"{where}: factors of rank {r} multiply to {got_f}, bound is {wl.ranks[r]}")

    keep: dict[str, list[int]] = {t: [] for t in tensors}
    for pos, lm in enumerate(em.levels):
        level = arch.levels[path[pos]]
        for t in lm.keep:
            if t not in tensors:
                raise MappingError(f"einsums[{index}].levels[{pos}].keep (einsum {e.name}, level {lm.level}): keeps {t!r}, which {e.name} does not use")
            if level.may_keep is not None and t not in level.may_keep:
                raise MappingError(f"einsums[{index}].levels[{pos}].keep (einsum {e.name}, level {lm.level}): may not keep "
                                   f"{t} (may_keep)")
            keep[t].append(pos)
    for t in tensors:
        on_chip = t in group.intermediates
        for pos, lm in enumerate(em.levels):
            level = arch.levels[path[pos]]
            above_f = fpos is not None and pos < fpos
            if t in level.must_keep and pos not in keep[t] and not (on_chip and above_f):
                raise MappingError(f"einsums[{index}].levels[{pos}].keep (einsum {e.name}, level {lm.level}): must keep "
                                   f"{t} (must_keep)")
        if on_chip:
            if any(p < fpos for p in keep[t]):
                raise MappingError(f"{where}: fused intermediate {t} cannot be kept above the fusion level "
                                   f"{arch.levels[group.fusion_level].name}")
            if fpos not in keep[t]:
                raise MappingError(f"{where}: fused intermediate {t} must be kept at the fusion level "
                                   f"{arch.levels[group.fusion_level].name}")
        elif 0 not in keep[t]:
            raise MappingError(f"{where}: {t} must be kept at {arch.levels[0].name} (only intermediates of a "
                               f"fused group stay on chip)")
    return Nest(e, unit.name, path, loops, keep, group, dict(wl.ranks), start, *formats(wl, e))


def group_copy_bits(wl, members, tensor: str) -> int:
    """Bits per element a fused group's copy of `tensor` at the fusion level and above is sized at (docs §5): the
    accumulator width if a member produces it by a reduction (it may hold partial sums there; whether it does
    depends on that member's own loops, while the group's copies must fit for every member at once), else its
    width."""
    for e in members:
        if e.output.tensor == tensor and e.recurrence is None and prod(wl.ranks[r] for r in e.reduced) > 1:
            return max(wl.bits(tensor), wl.accumulator_bits(tensor))
    return wl.bits(tensor)


def formats(wl, e) -> tuple[dict[str, tuple[int, int]], bool]:
    """(tensor -> (bits, accumulator bits), whether it reduces) of Einsum e: the `Nest` fields widths need."""
    reduced = e.reduced if e.recurrence is None else set()   # a recurrence's state is never a partial sum
    return ({t: (wl.bits(t), wl.accumulator_bits(t)) for t in e.tensors},
            prod(wl.ranks[r] for r in reduced) > 1)


def _check_groups(inst: Instance, nests: list[Nest], specs: dict) -> None:
    """The group rules of docs/model.md §3–4 (`specs`: member names -> the mapping's FusedGroup)."""
    arch = inst.architecture
    by_group: dict[tuple[str, ...], list[Nest]] = {}
    for n in nests:
        by_group.setdefault(n.group.einsums, []).append(n)
    for names, members in by_group.items():
        g = members[0].group
        if g.fusion_level is None:
            continue
        fname = arch.levels[g.fusion_level].name
        where = f"fused group {list(names)}"
        tops = {tuple(n.path[:n.path.index(g.fusion_level)]) for n in members}
        if len(tops) != 1:
            raise MappingError(f"{where}: members reach {fname} through different levels")
        for lv in list(tops)[0][1:] + (g.fusion_level,):
            if arch.levels[lv].mesh.size != 1:
                raise MappingError(f"{where}: fusion level {fname} must have a single instance; level "
                                   f"{arch.levels[lv].name} has a mesh of {arch.levels[lv].mesh.size}")
        by_name = {n.einsum.name: n for n in members}
        for sl in specs[names].shared_loops:
            if sl.factor == 1:
                continue
            inside = [by_name[m].einsum for m in names if sl.encloses(m)]
            dim = {e.name: sl.rank_of(e.name) for e in inside}
            why = incompatibility(inside, dim)
            if why is not None:
                raise MappingError(f"{where}: shared loop over {'/'.join(dict.fromkeys(dim.values()))} tiles a "
                                   f"tensor differently in two members: {why}")
            for e in inside:
                r = dim[e.name]
                if r not in set(e.space) - set(e.output.ranks):
                    continue
                readers = [c.name for c in inside if c is not e and reads_final(c, e.output.tensor)]
                if readers:
                    raise MappingError(f"{where}: shared loop over {r} crosses a reduction: {e.name} reduces {r} "
                                       f"and {readers[0]} reads its output {e.output.tensor} under the same loop "
                                       f"(a loop enclosing the producer but not the consumer may)")
        fpos_levels = set(list(tops)[0]) | {g.fusion_level}
        kept: dict[str, tuple] = {}
        for n in members:
            for t, poss in n.keep.items():
                upper = tuple(sorted(n.path[p] for p in poss if n.path[p] in fpos_levels))
                if kept.setdefault(t, upper) != upper:
                    names_ = [arch.levels[i].name for i in upper]
                    raise MappingError(f"{where}: members keep {t} at different levels at or above {fname} "
                                       f"({n.einsum.name}: {names_})")
