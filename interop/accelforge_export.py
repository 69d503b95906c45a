"""A mapsolve mapping → AccelForge's LoopTree mapping YAML (`mapping: nodes: [...]`).

mapsolve and AccelForge read loop nests alike except for one rule. In mapsolve a tile kept at a level stays
resident across the irrelevant loops just outside that level's loops (its reuse run, docs/model.md §3; the run
crosses level boundaries). In AccelForge a `!Storage` node is refetched on every iteration of each loop above it.
So temporal loops keep their nest order, and each tensor's storage node is written directly below the innermost
temporal loop above its level that indexes the tensor (and below its storage at an outer level). Its tile is
unchanged, because the loops it moves above do not index it. A level's spatial loops are written as high as they
may go: below the storage of their level and the levels above it, above the storage of the levels they feed.
Spatial loops select instances, not time, so mapsolve's counts do not depend on where they sit among temporal
loops; AccelForge's do. Where a storage would have to move below loops it is resident across, a note says so.

The backing store's storage is the root. Einsums or fused groups run one after another in a `!Sequential`. A
fused group's shared loops (a tree, for nested fusion) and its copies above the fusion level sit above its members'
branches. Names are the instance's: an imported instance's ranks, tensors, Einsums, levels and units are
AccelForge's, and its description records which AccelForge fanout each mesh axis is (interop/accelforge_arch.py).
"""
from __future__ import annotations

import json

import yaml

from mapsolve.model.nest import build_nests
from mapsolve.model.spec import Instance, Mapping

from .accelforge_import import SPATIAL_TAG
from .accelforge_yaml import Refused


class _Node(dict):
    def __init__(self, tag: str, **items) -> None:
        super().__init__(items)
        self.tag = tag


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Node, lambda d, n: d.represent_mapping("!" + n.tag, dict(n)))


def spatial_axes(inst: Instance) -> dict:
    """The importer's record of which AccelForge fanout each mesh axis is ({} for a hand-written instance)."""
    desc = inst.description
    k = desc.rfind(SPATIAL_TAG)
    if k < 0:
        return {}
    try:
        return json.JSONDecoder().raw_decode(desc[k + len(SPATIAL_TAG):])[0]
    except ValueError:
        return {}


class _Writer:
    def __init__(self, inst: Instance, mapping: Mapping) -> None:
        self.inst, self.mapping, self.arch = inst, mapping, inst.architecture
        self.nests = {n.einsum.name: n for n in build_nests(inst, mapping)}
        self.axes = spatial_axes(inst)
        self.em = {m.einsum: m for m in mapping.einsums}
        self.notes: list[str] = []   # where AccelForge will count what mapsolve does not

    def order(self, name: str, lo: int, shared: bool) -> list:
        """The Einsum's non-unit loops from path position `lo` down (or its shared loops), each a (loop, index
        in the nest), in nest order."""
        nest = self.nests[name]
        return [(lp, i) for i, lp in enumerate(nest.loops) if lp.factor > 1 and lp.shared == shared and lp.pos >= lo]

    def axis(self, nest, lp) -> str:
        """NestLoop keeps the mesh, not the axis: the k-th spatial loop at a level is its k-th spatial entry."""
        k = next(k for k, x in enumerate(x for x in nest.loops if x.spatial and x.pos == lp.pos) if x is lp)
        return self.em[nest.einsum.name].levels[lp.pos].spatial[k].axis

    def loop_node(self, nest, lp, shape: int, rank):
        if not lp.spatial:
            return _Node("Temporal", rank_variable=rank, tile_shape=shape)
        below = self.arch.levels[nest.path[lp.pos + 1]].name if lp.pos + 1 < len(nest.path) else nest.unit
        got = self.axes.get(below, {}).get(self.axis(nest, lp))
        comp, dim = (got[0], got[1]) if got else (below, self.axis(nest, lp).upper())
        return _Node("Spatial", rank_variable=rank, tile_shape=shape, name=dim, component=comp)

    def place(self, nest, loops: list, levels: range, tensors_at, relevant=None, rank_of=None, outer=()) -> list:
        """Loop and storage nodes (see the module doc). `loops`: (loop, nest index) pairs as from order();
        `levels`: the path positions whose storage goes in this list; `tensors_at(pos)`: the tensors kept there;
        `relevant(j, t)`: whether temporal loop j indexes tensor t; `rank_of(j)`: the rank variable(s) temporal
        loop j is written with; `outer`: the loops written above this list (a group's shared loops), which tile
        shapes start from.

        Temporal loops keep their nest order. A storage node goes into the slot right below the innermost
        temporal loop above its level that indexes its tensor (slot 0: the top). A level's spatial loops go
        below every storage of their level and above it, and above every storage below it; where a storage below
        was placed higher than that, it moves down and the note says what AccelForge will count differently."""
        temporal = [x for x in loops if not x[0].spatial]
        relevant = relevant or (lambda j, t: temporal[j][0].rank in nest.tensors[t])
        rank_of = rank_of or (lambda j: temporal[j][0].rank)
        slot: dict[tuple[int, str], int] = {}   # (path position, tensor) -> slot
        for pos in levels:
            first_own = next((j for j, (lp, _) in enumerate(temporal) if lp.pos >= pos), len(temporal))
            for t in tensors_at(pos):
                at = max([s for (p, u), s in slot.items() if u == t], default=0)   # below its outer storage
                for j in range(at, first_own):
                    if relevant(j, t):
                        at = j + 1
                slot[(pos, t)] = at
        spatial_slot: dict[int, int] = {}
        floor = 0
        for pos in sorted({lp.pos for lp, _ in loops if lp.spatial}):
            at = max([floor] + [s for (p, _), s in slot.items() if p <= pos])
            for (p, t), s in list(slot.items()):
                if p > pos and s < at:
                    lost = [temporal[j][0] for j in range(s, at) if not relevant(j, t)]
                    slot[(p, t)] = at
                    if lost:   # mapsolve keeps the tile across these; AccelForge refetches it below them
                        self.notes.append(
                            f"einsum {nest.einsum.name}: {t} at {self.arch.levels[nest.path[p]].name} stays "
                            f"resident across {', '.join(f'{lp.rank}:{lp.factor}' for lp in lost)} in mapsolve, "
                            f"but the spatial loops feeding it must sit above its storage and below a storage at "
                            f"{self.arch.levels[nest.path[pos]].name}: AccelForge will count "
                            f"{_prod(lp.factor for lp in lost)}x its fills there")
            spatial_slot[pos] = floor = at
        out = []
        left = {r: nest.bounds[r] for r in nest.space}
        for lp, _ in outer:
            left[lp.rank] //= lp.factor
        for j in range(len(temporal) + 1):
            items = [((p, 0), ("storage", p)) for p in sorted({p for (p, _), s in slot.items() if s == j})]
            items += [((p, 1), ("spatial", p)) for p, s in spatial_slot.items() if s == j]
            for _, (kind, p) in sorted(items):
                if kind == "storage":
                    out.append(_Node("Storage", component=self.arch.levels[nest.path[p]].name,
                                     tensors=[t for (q, t), s in slot.items() if q == p and s == j]))
                else:
                    for lp, _ in loops:
                        if lp.spatial and lp.pos == p:
                            left[lp.rank] //= lp.factor
                            out.append(self.loop_node(nest, lp, left[lp.rank], lp.rank))
            if j < len(temporal):
                lp, _ = temporal[j]
                left[lp.rank] //= lp.factor
                out.append(self.loop_node(nest, lp, left[lp.rank], rank_of(j)))
        return out

    def kept(self, name: str, pos: int) -> list[str]:
        nest = self.nests[name]
        return [t for t in nest.tensors if pos in nest.keep.get(t, [])]

    def lone(self, name: str) -> list:
        nest = self.nests[name]
        loops = self.order(name, 0, False)
        body = self.place(nest, loops, range(1, len(nest.path)), lambda pos: self.kept(name, pos))
        return body + [_Node("Compute", einsum=name, component=nest.unit)]

    def member(self, name: str, fpos: int) -> list:
        """A fused group's member below the fusion level (its storage there is the group's, written above)."""
        nest = self.nests[name]
        loops = self.order(name, fpos, False)
        body = self.place(nest, loops, range(fpos + 1, len(nest.path)), lambda pos: self.kept(name, pos),
                          outer=[(lp, i) for i, lp in enumerate(nest.loops) if lp.shared])
        return body + [_Node("Compute", einsum=name, component=nest.unit)]

    def group(self, g) -> list:
        """A fused group: its shared loops as a tree (a loop enclosing a run of members sits above a `!Sequential`
        of what it encloses), each group copy's storage directly below the innermost shared loop that encloses
        all the tensor's users and indexes it, then each member's own nest below the fusion level."""
        members = list(g.einsums)
        first = self.nests[members[0]]
        fpos = first.fpos()
        arch_pos = {self.arch.levels[i].name: k for k, i in enumerate(first.path)}
        loops = [(k, sl) for k, sl in enumerate(g.shared_loops) if sl.factor > 1]
        span = {k: (set(sl.einsums) if sl.einsums is not None else set(members)) for k, sl in loops}

        def shape(k: int, sl) -> int:
            m = next(x for x in members if x in span[k])
            r = sl.rank_of(m)
            left = self.nests[m].bounds[r]
            for j, other in loops:
                if m in span[j] and other.rank_of(m) == r:
                    left //= other.factor
                if j == k:
                    return left
            return left

        def node(k: int, sl):
            names = list(dict.fromkeys(sl.rank_of(m) for m in members if m in span[k]))
            return _Node("Temporal", rank_variable=names[0] if len(names) == 1 else names, tile_shape=shape(k, sl))

        slots: dict = {}   # loop index (or None: the group's top) -> [(pos, tensor)]
        for pos in range(1, fpos + 1):
            for t in dict.fromkeys(t for m in members for t in self.kept(m, pos)):
                users = {m for m in members if t in self.nests[m].tensors}
                at = None
                for k, sl in loops:
                    if users <= span[k] and arch_pos[sl.level] < pos and any(
                            sl.rank_of(m) in self.nests[m].tensors[t] for m in users):
                        at = k
                slots.setdefault(at, []).append((pos, t))

        def storages(at) -> list:
            got = slots.get(at, [])
            return [_Node("Storage", component=self.arch.levels[first.path[pos]].name,
                          tensors=[t for p, t in got if p == pos]) for pos in sorted({p for p, _ in got})]

        def build(run: list[str], avail: list) -> list:
            mine = set(run)
            out = []
            for k, sl in avail:
                if span[k] == mine:
                    out.append(node(k, sl))
                    out += storages(k)
            rest = [(k, sl) for k, sl in avail if span[k] < mine]
            if len(run) == 1 and not rest:
                return out + self.member(run[0], fpos)
            subruns, seen = [], set()
            for m in run:
                if m in seen:
                    continue
                k = next((k for k, _ in rest if m in span[k]), None)
                sub = [x for x in run if x in span[k]] if k is not None else [m]
                seen.update(sub)
                subruns.append(sub)
            return out + [_Node("Sequential", nodes=[
                _Node("Nested", nodes=build(sub, [(k, sl) for k, sl in rest if span[k] <= set(sub)]))
                for sub in subruns])]

        return storages(None) + build(members, loops)

    def write(self) -> str:
        if self.mapping.variant is not None:
            raise Refused("mapping.variant: mappings of workload variants are not exported (AccelForge has none)")
        for e in self.inst.workload.einsums:
            if e.recurrence is not None or e.running_inputs():
                raise Refused(f"einsum {e.name}: a recurrence or a running read (online reduction) is not "
                              f"expressible in an AccelForge workload, so its mapping is not exported")
        groups = {n: g for g in self.mapping.groups for n in g.einsums}
        root: list[str] = []
        branches, done = [], set()
        for e in self.inst.workload.einsums:
            if e.name in done:
                continue
            g = groups.get(e.name)
            members = list(g.einsums) if g is not None else [e.name]
            done.update(members)
            for m in members:
                root += [t for t in self.kept(m, 0) if t not in root]
            branches.append(self.lone(e.name) if g is None or len(members) == 1 else self.group(g))
        body = branches[0] if len(branches) == 1 else [
            _Node("Sequential", nodes=[_Node("Nested", nodes=b) for b in branches])]
        doc = {"mapping": {"nodes": [_Node("Storage", component=self.arch.levels[0].name, tensors=root), *body]}}
        return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=120)


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def export(inst: Instance, mapping: Mapping) -> tuple[str, list[str]]:
    """(the LoopTree YAML text of `mapping`, notes on where AccelForge's counts of it will differ); `mapping` must
    be valid for `inst` (check it with the evaluator first)."""
    w = _Writer(inst, mapping)
    text = w.write()
    return text, w.notes
