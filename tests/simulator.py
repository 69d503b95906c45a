"""A literal loop-nest simulator: the independent oracle for the closed-form evaluator.

Written from docs/model.md alone, without looking at the evaluator. Instead of formulas it *executes* a mapping on a
tiny instance: it walks every temporal step of every loop nest (fused groups: the shared loops outermost, then
each Einsum of the group in cascade order runs its own loops per shared iteration), enumerates every spatial point
of each step, keeps for every (level, physical instance, tensor) the tile currently resident there as an explicit
set of element coordinates, and counts each word that moves:

* a tile that changes at an instance is drained (outputs, non-backing levels, every residency including the final
  one) and the new one is filled (inputs) or has its already-drained elements read back (outputs);
* the deliveries of one step from one parent instance that carry the same element and differ only in their
  position on multicast-capable meshes cost one parent read (the rest are counted as multicast);
* updates of one step (from units, or drains of child tiles) that target the same element of the same parent
  instance and differ only in their position on reduction-capable meshes arrive as one update (the rest are counted
  as reductions); every arriving update is a read-modify-write except the first update of an element at that
  instance;
* tiles below a fused group's fusion level are flushed at the end of each Einsum's run (groups of two or more
  Einsums), everything is flushed at the end of the group;
* a consumer reading an element of an intermediate that has not received all its contributions raises
  `FusionAcrossReduction`;
* a recurrence (docs §3, online reductions) keeps its state as one element per output coordinate: each step of the
  carried rank *replaces* it (a plain write, no read-modify-write, nothing read back), and the simulator counts the
  steps applied to every state element. The producer must apply step c to a state that has had exactly c steps (in
  order, one per step: never two updates of one element in one step), a running "current" read at step c must find
  c + 1 steps applied, a "previous" read c; otherwise `StateOutOfStep`. A state the producer itself reads
  ("previous") is filled from its parent whenever a residency of it starts, as an input would be.

Peak live bits (and words) per level instance, energy (integer fJ) and latency (integer cycles, per docs §6 with per-instance
traffic and one exact rounding per (group, level, port)) are derived from these literal counts.

It is deliberately slow and simple: meant for instances with at most a few thousand iteration points.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from mapsolve.model.spec import Instance, Mapping

COUNTERS = ("reads", "writes", "fills", "drains", "updates", "update_reads", "readbacks", "multicast",
            "reductions")


class SimulatorError(Exception):
    """The simulator cannot run this mapping (it breaks a structural rule the simulator relies on)."""


class FusionAcrossReduction(SimulatorError):
    """A consumer read an element of an intermediate before all contributions to it were made."""


class StateOutOfStep(FusionAcrossReduction):
    """A recurrence's state was updated, or read running, at a step it is not at (steps out of order, run side by
    side, or a running reader not in lock step with the producer)."""


def fj(pj: Decimal) -> int:
    v = Decimal(pj) * 1000
    if v != v.to_integral_value():
        raise SimulatorError(f"energy {pj} pJ has more than 3 decimals")
    return int(v)


# --------------------------------------------------------------------------------------------------------------
# The loop nest of one Einsum
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SLoop:
    kind: str            # "T" temporal (own or shared) or "S" spatial
    rank: str
    factor: int
    pos: int             # path position of the level the loop is written at (0 = DRAM)
    axis: str | None = None
    shared: bool = False
    stride: int = 0      # weight of this loop's index in the rank coordinate
    radix: int = 0       # (spatial) weight of this loop's index in its mesh axis coordinate
    slot: int = -1       # index in Nest.temporal or Nest.spatial
    sid: int = -1        # a shared loop: its index in the group's shared_loops
    span: frozenset = frozenset()   # a shared loop: the members it encloses


@dataclass
class Nest:
    name: str
    op: str
    unit: str
    path: list[int]                       # architecture level indices, outermost first
    loops: list[SLoop]                    # nest order, outermost first
    temporal: list[SLoop]
    spatial: list[SLoop]
    shared_count: int                     # the first shared_count temporal loops are the group's shared loops
    output: str
    out_ranks: list[str]
    inputs: list[tuple[str, list[str]]]
    kept: dict[str, list[int]]            # tensor -> kept path positions, outermost first
    meshes: list                           # meshes[j] for j in 1..n: mesh of path level j (j < n) / unit (j = n)
    space: list[str]
    ops: int
    fusion_pos: int | None                 # path position of the group's fusion level
    accumulate: dict = None                # output -> kept position -> the parent accumulates its drains
    group_members: tuple = ()              # the Einsums of its fused group
    users: dict = None                     # tensor -> the group's members that use it
    carried: str | None = None             # a recurrence: the rank its output carries state across
    running: dict = None                   # input tensor -> "current" / "previous" (running reads)
    carried_of: dict = None                # running input tensor -> the rank its producer carries

    def tensor_ranks(self, t: str) -> list[str]:
        if t == self.output:
            return self.out_ranks
        return dict(self.inputs)[t]


def _build_nest(inst: Instance, mapping: Mapping, ename: str, group) -> Nest:
    wl, arch = inst.workload, inst.architecture
    e = next(x for x in wl.einsums if x.name == ename)
    em = [m for m in mapping.einsums if m.einsum == ename]
    if len(em) != 1:
        raise SimulatorError(f"einsum {ename}: {len(em)} mappings")
    em = em[0]
    unit = arch.unit(em.compute_unit)
    path = arch.path(em.compute_unit)
    names = [arch.levels[i].name for i in path]
    if [lm.level for lm in em.levels] != names:
        raise SimulatorError(f"einsum {ename}: levels {[lm.level for lm in em.levels]} != path {names}")
    fpos = None
    if group is not None:
        if group.fusion_level not in names:
            raise SimulatorError(f"fusion level {group.fusion_level} not on the path of {ename}")
        fpos = names.index(group.fusion_level)

    loops: list[SLoop] = []
    for pos, lm in enumerate(em.levels):
        if fpos is not None and pos < fpos:
            if lm.temporal:
                raise SimulatorError(f"{ename}: own temporal loops above the fusion level")
            for sid, sl in enumerate(group.shared_loops):
                # only the loops enclosing this member; it may name the shared dimension otherwise (renames)
                if sl.level == lm.level and (sl.einsums is None or ename in sl.einsums):
                    loops.append(SLoop("T", sl.renames.get(ename, sl.rank), sl.factor, pos, shared=True, sid=sid,
                                       span=frozenset(sl.einsums or group.einsums)))
        else:
            for lp in lm.temporal:
                loops.append(SLoop("T", lp.rank, lp.factor, pos))
        for sp in lm.spatial:
            if fpos is not None and pos < fpos and sp.factor > 1:
                raise SimulatorError(f"{ename}: spatial loop above the fusion level")
            loops.append(SLoop("S", sp.rank, sp.factor, pos, axis=sp.axis))
    if group is not None:
        known = set(names[:fpos])
        for sl in group.shared_loops:
            if sl.level not in known:
                raise SimulatorError(f"shared loop at {sl.level}, not above the fusion level of {ename}")

    space = []
    for ref in (e.output, *e.inputs):
        for r in ref.ranks:
            if r not in space:
                space.append(r)
    # strides: loops of a rank later in the nest are the lower-order digits
    for r in {lp.rank for lp in loops}:
        if r not in space:
            raise SimulatorError(f"{ename}: loop over rank {r} outside the iteration space")
    for r in space:
        mine = [lp for lp in loops if lp.rank == r]
        s = 1
        for lp in reversed(mine):
            lp.stride = s
            s *= lp.factor
        if s != wl.ranks[r]:
            raise SimulatorError(f"{ename}: factors of {r} multiply to {s}, bound {wl.ranks[r]}")
    # positions on meshes
    n = len(path)
    meshes = [None] + [arch.levels[i].mesh for i in path[1:]] + [unit.mesh]
    for pos in range(n):
        for axis in ("x", "y"):
            mine = [lp for lp in loops if lp.kind == "S" and lp.pos == pos and lp.axis == axis]
            s = 1
            for lp in reversed(mine):
                lp.radix = s
                s *= lp.factor
            limit = getattr(meshes[pos + 1], axis)
            if s > limit:
                raise SimulatorError(f"{ename}: spatial {axis} factors {s} > mesh {limit} below {names[pos]}")
    temporal = [lp for lp in loops if lp.kind == "T"]
    spatial = [lp for lp in loops if lp.kind == "S"]
    for i, lp in enumerate(temporal):
        lp.slot = i
    for i, lp in enumerate(spatial):
        lp.slot = i
    shared_count = sum(1 for lp in temporal if lp.shared)
    if any(lp.shared for lp in temporal[shared_count:]):
        raise SimulatorError("shared loops must be outermost")
    kept = {}
    tensors = [e.output.tensor] + [i.tensor for i in e.inputs]
    for t in tensors:
        kept[t] = [pos for pos, lm in enumerate(em.levels) if t in lm.keep]
        if not kept[t]:
            raise SimulatorError(f"{ename}: tensor {t} kept nowhere")
    ops = math.prod(wl.ranks[r] for r in space)
    # docs §4: a residency reads its partial sums back only if exactly one of its instances feeds each parent
    # element (no spatial loop > 1 between parent and it over a rank the output lacks) and the parent holds
    # every partial sum itself; otherwise it starts from zero and the parent accumulates.
    accumulate = {e.output.tensor: {}}
    chain = kept[e.output.tensor]
    for p, k in zip(chain, chain[1:]):
        spread = any(lp.kind == "S" and p <= lp.pos < k and lp.rank not in e.output.ranks and lp.factor > 1
                     for lp in loops)
        accumulate[e.output.tensor][k] = spread or accumulate[e.output.tensor].get(p, False)
    users: dict[str, frozenset] = {}
    if group is not None:
        for x in wl.einsums:
            if x.name in group.einsums:
                for ref in (x.output, *x.inputs):
                    users[ref.tensor] = users.get(ref.tensor, frozenset()) | {x.name}
    producers = {x.output.tensor: x for x in wl.einsums}
    running = {i.tensor: i.running for i in e.inputs if i.running is not None}
    return Nest(ename, e.op, em.compute_unit, path, loops, temporal, spatial, shared_count,
                e.output.tensor, list(e.output.ranks), [(i.tensor, list(i.ranks)) for i in e.inputs], kept,
                meshes, space, ops, fpos, accumulate, tuple(group.einsums) if group is not None else (), users,
                e.recurrence, running, {t: producers[t].recurrence for t in running})


# --------------------------------------------------------------------------------------------------------------
# Simulation state
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """A tile resident at one level instance."""

    level: int                      # architecture level index
    inst: tuple                     # physical instance coordinate
    tensor: str
    tile: frozenset
    dirty: bool                     # holds output data that must be drained when evicted
    parent: tuple | None = None     # (level index, instance) the tile drains to
    nonred: tuple = ()              # positions on non-reduction meshes between parent and this instance
    owner: str = ""                 # the Einsum that created it
    bits: int = 0                   # width of its elements here (an output's partial sums: accumulator width)
    cap_bits: int = 0               # width it occupies (a fused group's copy: docs §5's group copy width)
    back: frozenset = frozenset()   # output elements whose partial sums were read back into this residency
    valued: set = None              # output elements that hold a value here (read back, or updated already)

    def __post_init__(self):
        if self.valued is None:
            self.valued = set(self.back)


@dataclass
class SimGroup:
    einsums: list[str]
    latency_cycles: int
    unit_cycles: dict[str, int]
    level_cycles: dict[str, int]
    level_traffic: dict[str, int]   # max over instances of words read + written, per level


@dataclass
class SimResult:
    counts: dict[tuple[str, str], dict[str, int]]
    ops: dict[str, int]
    steps: dict[str, int]
    unit_ops: dict[str, int]
    unit_cycles: dict[str, int]
    unit_energy_fj: dict[str, int]
    peak: dict[str, int]
    groups: list[SimGroup]
    energy_fj: int
    latency_cycles: int
    peak_bits: dict[str, int] = None   # live bits per level instance at worst (peak: in words, rounded up)


class Simulator:
    def __init__(self, inst: Instance, mapping: Mapping, out_bits: dict | None = None):
        self.inst = inst
        self.mapping = mapping
        # (einsum, path position) -> width of its output there; None on the first pass, which only finds out
        # which kept levels drain an element more than once (`drained_twice`)
        self.out_bits = out_bits
        self.drain_times: dict[tuple[str, int], dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
        self.energy = 0
        self.arch = inst.architecture
        self.wl = inst.workload
        self.counts: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
        self.resident: dict[tuple[int, tuple, str], Entry] = {}
        self.live: dict[tuple[int, tuple], int] = defaultdict(int)
        self.peak: dict[int, int] = defaultdict(int)
        self.drained: dict[tuple[int, tuple, str], set] = defaultdict(set)   # elements drained from an instance
        self.contrib: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
        self.expected: dict[str, int] = {}
        self.traffic: dict[tuple[int, tuple, str], int] = defaultdict(int)  # current group: per instance, r/w
        self.seen: set = set()
        self.event = 0
        self.intern: dict[frozenset, frozenset] = {}
        for e in self.wl.einsums:
            space = {r for ref in (e.output, *e.inputs) for r in ref.ranks}
            self.expected[e.output.tensor] = math.prod(self.wl.ranks[r] for r in space - set(e.output.ranks))
        self.producer = {e.output.tensor: e.name for e in self.wl.einsums}
        self.states = {e.output.tensor for e in self.wl.einsums if e.recurrence is not None}  # replaced, not RMW

    # ---------------- primitive counters ----------------
    def _bump(self, level: int, inst: tuple, t: str, what: str, n: int = 1, bits: int = 0) -> None:
        if n == 0:
            return
        self.counts[(level, t)][what] += n
        if what in ("reads", "writes"):
            assert bits > 0
            self.traffic[(level, inst, what)] += n * bits
            self.energy += n * element_fj(self.arch.levels[level], what[0], bits, self.wl.word_bits)

    def _arrive_update(self, level: int, inst: tuple, t: str, elt: tuple, carries_old: bool = False) -> None:
        """An update arrives: a read-modify-write if the element already holds a value in this residency, a
        plain write if it holds none or if the update already carries the old partial sum (a read-back drain)."""
        ent = self.resident[(level, inst, t)]
        self._bump(level, inst, t, "updates")
        self._bump(level, inst, t, "writes", bits=ent.bits)
        if elt in ent.valued and not carries_old:
            self._bump(level, inst, t, "update_reads")
            self._bump(level, inst, t, "reads", bits=ent.bits)
        ent.valued.add(elt)

    def _out_bits(self, n: Nest, k: int) -> int:
        """Width of Einsum n's output at path position k (the first pass counts elements at final width)."""
        if self.out_bits is None:
            return self.wl.bits(n.output)
        return self.out_bits[(n.name, k)]

    # ---------------- geometry ----------------
    @staticmethod
    def _coords(n: Nest, tau: tuple, sigma: tuple) -> dict[str, int]:
        c = {r: 0 for r in n.space}
        for lp in n.temporal:
            c[lp.rank] += tau[lp.slot] * lp.stride
        for lp in n.spatial:
            c[lp.rank] += sigma[lp.slot] * lp.stride
        return c

    @staticmethod
    def _positions(n: Nest, sigma: tuple) -> list:
        """positions[j] = (x, y) on mesh j (1..len(path)); positions[0] unused."""
        pos = [None] + [[0, 0] for _ in range(len(n.path))]
        for lp in n.spatial:
            j = lp.pos + 1
            pos[j][0 if lp.axis == "x" else 1] += sigma[lp.slot] * lp.radix
        return [None] + [tuple(p) for p in pos[1:]]

    @staticmethod
    def _inst(positions: list, k: int) -> tuple:
        """Physical coordinate of the instance of path position k (the unit when k == len(path))."""
        return tuple(positions[1:k + 1])

    @staticmethod
    def _key_between(n: Nest, positions: list, p: int, k: int, flag: str) -> tuple:
        """Positions on the meshes between path position p and k (p < k) that lack `flag` capability."""
        return tuple(positions[j] for j in range(p + 1, k + 1) if not getattr(n.meshes[j], flag))

    def _tile(self, n: Nest, t: str, k: int, tau: tuple, sigma: tuple, cache: dict) -> frozenset:
        ranks = n.tensor_ranks(t)
        outer = [lp for lp in n.loops if lp.pos < k]
        key = (t, k, tuple(tau[lp.slot] if lp.kind == "T" else sigma[lp.slot] for lp in outer))
        got = cache.get(key)
        if got is not None:
            return got
        # a group's copy (F and above) is the tile under the shared loops enclosing every member that uses the
        # tensor; a shared loop enclosing only some of them runs inside the copy, which holds its whole extent
        copy = n.fusion_pos is not None and k <= n.fusion_pos and len(n.group_members) > 1
        ranges = []
        for r in ranks:
            base = 0
            extent = 1
            for lp in n.loops:
                if lp.rank != r:
                    continue
                if lp.pos < k and not (copy and lp.shared and not n.users[t] <= lp.span):
                    base += (tau[lp.slot] if lp.kind == "T" else sigma[lp.slot]) * lp.stride
                else:
                    extent *= lp.factor
            ranges.append(range(base, base + extent))
        tile = frozenset(itertools.product(*ranges))
        tile = self.intern.setdefault(tile, tile)   # equal tiles are the same object, across Einsums too
        cache[key] = tile
        return tile

    # ---------------- residency ----------------
    def _evict(self, ent: Entry, ev: int) -> None:
        if ent.dirty:
            child = (ent.level, ent.inst, ent.tensor)
            plevel, pinst = ent.parent
            pent = self.resident.get((plevel, pinst, ent.tensor))
            for elt in sorted(ent.tile):
                if pent is None or elt not in pent.tile:
                    raise SimulatorError(f"drain of {ent.tensor}{elt} to a parent that does not hold it")
                self._bump(ent.level, ent.inst, ent.tensor, "drains")
                self._bump(ent.level, ent.inst, ent.tensor, "reads", bits=ent.bits)
                self.drain_times[(ent.owner, ent.level)][elt] += 1
                self.drained[child].add(elt)
                key = (ev, "drain", plevel, pinst, ent.tensor, elt, ent.nonred)
                if key in self.seen:
                    self._bump(plevel, pinst, ent.tensor, "reductions")
                else:
                    self.seen.add(key)
                    self._arrive_update(plevel, pinst, ent.tensor, elt,
                                        carries_old=elt in ent.back or ent.tensor in self.states)
        del self.resident[(ent.level, ent.inst, ent.tensor)]
        self.live[(ent.level, ent.inst)] -= len(ent.tile) * ent.cap_bits

    def _flush(self, predicate, ev: int) -> None:
        victims = [ent for ent in self.resident.values() if predicate(ent)]
        victims.sort(key=lambda ent: -ent.level)   # innermost first: children drain into resident parents
        for ent in victims:
            self._evict(ent, ev)

    def _step(self, n: Nest, tau: tuple, cache: dict) -> None:
        self.event += 1
        ev = self.event
        self.seen = set()
        sigmas = list(itertools.product(*(range(lp.factor) for lp in n.spatial)))
        tensors = list(dict.fromkeys([n.output] + [t for t, _ in n.inputs]))  # a recurrence may read its own state
        # 1. which tiles change
        changes = []
        for t in tensors:
            for k in n.kept[t]:
                # one representative spatial point per instance of level k
                reps = {}
                for sigma in sigmas:
                    positions = self._positions(n, sigma)
                    reps.setdefault(self._inst(positions, k), (sigma, positions))
                for inst, (sigma, positions) in reps.items():
                    tile = self._tile(n, t, k, tau, sigma, cache)
                    cur = self.resident.get((n.path[k], inst, t))
                    if cur is None or cur.tile is not tile:
                        changes.append((k, t, inst, tile, positions))
        # 2. drains and evictions, innermost first
        for k, t, inst, tile, positions in sorted(changes, key=lambda c: -c[0]):
            cur = self.resident.get((n.path[k], inst, t))
            if cur is not None:
                self._evict(cur, ev)
        # 3. fills and read-backs, outermost first
        touched = set()
        for k, t, inst, tile, positions in sorted(changes, key=lambda c: c[0]):
            level = n.path[k]
            chain = n.kept[t]
            idx = chain.index(k)
            is_out = t == n.output
            width = self._out_bits(n, k) if is_out else self.wl.bits(t)
            room = width
            if n.fusion_pos is not None and k <= n.fusion_pos:   # a group copy: sized for partial sums if a
                room = self.wl.bits(t)                           # member produces it by a reduction
                if self.producer.get(t) in n.group_members and self.expected[t] > 1:
                    room = max(room, self.wl.accumulator_bits(t))
            ent = Entry(level, inst, t, tile, dirty=is_out and idx > 0, bits=width, cap_bits=room, owner=n.name)
            if idx > 0:
                p = chain[idx - 1]
                plevel, pinst = n.path[p], self._inst(positions, p)
                pent = self.resident.get((plevel, pinst, t))
                if pent is None or not tile <= pent.tile:
                    raise SimulatorError(f"{n.name}: parent of {t} at {level} does not hold the tile")
                ent.parent = (plevel, pinst)
                if is_out and n.carried is not None and t in n.running:
                    # the producer reads its previous state: the residency is filled like an input's
                    for elt in sorted(tile):
                        self._bump(level, inst, t, "fills")
                        self._bump(level, inst, t, "writes", bits=width)
                        self._bump(plevel, pinst, t, "reads", bits=width)
                elif is_out:
                    ent.nonred = self._key_between(n, positions, p, k, "reduction")
                    # read back what this instance drained before, unless the parent accumulates (the
                    # residency then starts from zero); a recurrence's state is replaced, never read back
                    back = frozenset() if n.accumulate[t][k] or n.carried is not None \
                        else tile & self.drained[(level, inst, t)]
                    ent.back, ent.valued = back, set(back)
                    self._bump(level, inst, t, "fills", len(back))
                    self._bump(level, inst, t, "readbacks", len(back))
                    self._bump(level, inst, t, "writes", len(back), bits=width)
                    self._bump(plevel, pinst, t, "reads", len(back), bits=pent.bits)
                else:
                    nonmc = self._key_between(n, positions, p, k, "multicast")
                    for elt in sorted(tile):
                        self._bump(level, inst, t, "fills")
                        self._bump(level, inst, t, "writes", bits=width)
                        key = (ev, "fill", plevel, pinst, t, elt, nonmc)
                        if key in self.seen:
                            self._bump(plevel, pinst, t, "multicast")
                        else:
                            self.seen.add(key)
                            self._bump(plevel, pinst, t, "reads", bits=width)   # read as an input
            self.resident[(level, inst, t)] = ent
            self.live[(level, inst)] += len(tile) * room
            touched.add((level, inst))
        for level, inst in touched:
            self.peak[level] = max(self.peak[level], self.live[(level, inst)])
        # a state a reader of its previous value brought in is the producer's to write back from now on
        for k in n.kept[n.output][1:]:
            for sigma in sigmas:
                ent = self.resident.get((n.path[k], self._inst(self._positions(n, sigma), k), n.output))
                if ent is not None and not ent.dirty:
                    ent.dirty = True
        # 4. the operations of this step
        n_units = len(n.path)
        stepped: set = set()
        for sigma in sigmas:
            c = self._coords(n, tau, sigma)
            positions = self._positions(n, sigma)
            for t, ranks in n.inputs:
                elt = tuple(c[r] for r in ranks)
                if t in n.running:
                    step = c[n.carried_of[t]] + (n.running[t] == "current")
                    if self.contrib[t][elt] != step:
                        raise StateOutOfStep(f"{n.name} reads {t}{elt} ({n.running[t]}) at step "
                                             f"{c[n.carried_of[t]]} with {self.contrib[t][elt]} steps applied")
                elif t in self.producer and self.contrib[t][elt] != self.expected[t]:
                    raise FusionAcrossReduction(
                        f"{n.name} reads {t}{elt} with {self.contrib[t][elt]} of {self.expected[t]} "
                        f"contributions")
                L = n.kept[t][-1]
                linst = self._inst(positions, L)
                ent = self.resident.get((n.path[L], linst, t))
                if ent is None or elt not in ent.tile:
                    raise SimulatorError(f"{n.name}: {t}{elt} not resident at the innermost kept level")
                key = (ev, "unit-read", n.path[L], linst, t, elt,
                       self._key_between(n, positions, L, n_units, "multicast"))
                if key in self.seen:
                    self._bump(n.path[L], linst, t, "multicast")
                else:
                    self.seen.add(key)
                    self._bump(n.path[L], linst, t, "reads", bits=self.wl.bits(t))
            o = n.output
            elt = tuple(c[r] for r in n.out_ranks)
            if n.carried is not None:
                if self.contrib[o][elt] != c[n.carried] or (o, elt) in stepped:
                    raise StateOutOfStep(f"{n.name} applies step {c[n.carried]} to {o}{elt}, which has had "
                                         f"{self.contrib[o][elt]} steps" + (" (twice in one step)"
                                                                             if (o, elt) in stepped else ""))
                stepped.add((o, elt))
            self.contrib[o][elt] += 1
            L = n.kept[o][-1]
            linst = self._inst(positions, L)
            ent = self.resident.get((n.path[L], linst, o))
            if ent is None or elt not in ent.tile:
                raise SimulatorError(f"{n.name}: {o}{elt} not resident at the innermost kept level")
            key = (ev, "unit-update", n.path[L], linst, o, elt,
                   self._key_between(n, positions, L, n_units, "reduction"))
            if key in self.seen:
                self._bump(n.path[L], linst, o, "reductions")
            else:
                self.seen.add(key)
                self._arrive_update(n.path[L], linst, o, elt, carries_old=n.carried is not None)

    # ---------------- groups ----------------
    def _groups(self):
        order = [e.name for e in self.wl.einsums]
        listed = {}
        for g in self.mapping.groups:
            for name in g.einsums:
                if name in listed:
                    raise SimulatorError(f"einsum {name} in two groups")
                listed[name] = g
        out = []
        done = set()
        for name in order:
            if name in done:
                continue
            g = listed.get(name)
            if g is None:
                out.append(([name], None))
                done.add(name)
            else:
                if g.einsums[0] != name:
                    raise SimulatorError(f"group {g.einsums} out of cascade order")
                i = order.index(name)
                if order[i:i + len(g.einsums)] != list(g.einsums):
                    raise SimulatorError(f"group {g.einsums} is not consecutive")
                out.append((list(g.einsums), g))
                done.update(g.einsums)
        return out

    def run(self) -> SimResult:
        ops: dict[str, int] = {}
        steps: dict[str, int] = {}
        unit_ops: dict[str, int] = defaultdict(int)
        unit_cycles: dict[str, int] = defaultdict(int)
        unit_energy: dict[str, int] = defaultdict(int)
        groups: list[SimGroup] = []
        for names, g in self._groups():
            nests = [_build_nest(self.inst, self.mapping, name, g) for name in names]
            self.traffic = defaultdict(int)
            caches = {n.name: {} for n in nests}
            nsteps = defaultdict(int)
            fidx = self.arch.level_index(g.fusion_level) if g is not None else None
            shared = list(g.shared_loops) if g is not None else []
            by_name = {n.name: n for n in nests}
            levels = [lv.name for lv in self.arch.levels]
            # the shared loops in nest order: outer levels first, then as listed
            tree = sorted(range(len(shared)), key=lambda i: (levels.index(shared[i].level), i))
            span = {i: tuple(m for m in names if shared[i].einsums is None or m in shared[i].einsums) for i in tree}

            def run_member(n, idx):
                own = n.temporal[n.shared_count:]
                outer = tuple(idx[lp.sid] for lp in n.temporal[:n.shared_count])
                for own_idx in itertools.product(*(range(lp.factor) for lp in own)):
                    self._step(n, outer + tuple(own_idx), caches[n.name])
                    nsteps[n.name] += 1
                if len(nests) >= 2:
                    self.event += 1
                    self._flush(lambda ent: ent.level > fidx, self.event)

            def execute(run: tuple, open_loops: list, idx: dict):
                """Run members `run` in cascade order; each loop of `open_loops` (nest order) not yet entered
                that encloses the next member is entered there and runs its whole span per iteration."""
                i = 0
                while i < len(run):
                    loop = next((L for L in open_loops if run[i] in span[L]), None)
                    if loop is None:
                        run_member(by_name[run[i]], idx)
                        i += 1
                        continue
                    inner = open_loops[open_loops.index(loop) + 1:]
                    if span[loop][0] != run[i] or any(set(span[L]) & set(span[loop]) and
                                                      not set(span[L]) <= set(span[loop]) for L in open_loops):
                        raise SimulatorError(f"shared loops of {names} do not form a tree")
                    inner = [L for L in inner if set(span[L]) <= set(span[loop])]
                    for v in range(shared[loop].factor):
                        execute(span[loop], inner, {**idx, loop: v})
                    i += len(span[loop])

            execute(tuple(names), tree, {})
            self.event += 1
            self._flush(lambda ent: True, self.event)
            # compute
            g_units: dict[str, int] = defaultdict(int)
            for n in nests:
                ops[n.name] = n.ops
                steps[n.name] = nsteps[n.name]
                cost = self.arch.unit(n.unit).ops[n.op]
                cyc = math.ceil(Fraction(nsteps[n.name]) / Fraction(cost.per_cycle))
                g_units[n.unit] += cyc
                unit_ops[n.unit] += n.ops
                unit_cycles[n.unit] += cyc
                unit_energy[n.unit] += n.ops * fj(cost.energy_pj)
            # levels: max over instances of the words moved there during the group
            # a level with one port moves reads and writes through it; with two, each through its own and
            # the slower port sets the time
            g_traffic: dict[str, int] = {}
            g_levels: dict[str, int] = {}
            per_port: dict[tuple[str, str], int] = {}
            per_inst: dict[tuple[int, tuple], dict[str, int]] = defaultdict(lambda: {"reads": 0, "writes": 0})
            for (level, inst, what), words in self.traffic.items():
                per_inst[(level, inst)][what] += words
            for (level, _inst), rw in per_inst.items():
                lv = self.arch.levels[level]
                g_traffic[lv.name] = max(g_traffic.get(lv.name, 0), rw["reads"] + rw["writes"])
                if lv.bandwidth is not None:
                    ports = {"rw": (rw["reads"] + rw["writes"], lv.bandwidth)}
                else:
                    ports = {k: (rw[what], bw) for k, what, bw in (("r", "reads", lv.read_bandwidth),
                                                                    ("w", "writes", lv.write_bandwidth))
                             if bw is not None}
                word = lv.access_bits or self.wl.word_bits
                for k, (moved, bw) in ports.items():     # bits moved, at bw words of `word` bits per cycle
                    if moved:
                        cyc = math.ceil(Fraction(moved) / (Fraction(bw) * word))
                        per_port[(lv.name, k)] = max(per_port.get((lv.name, k), 0), cyc)
            for (name, _), cyc in per_port.items():
                g_levels[name] = max(g_levels.get(name, 0), cyc)
            latency = max([0, *g_units.values(), *g_levels.values()])
            groups.append(SimGroup(names, latency, dict(g_units), g_levels, g_traffic))
        counts = {}
        energy = 0
        for (level, t), c in self.counts.items():
            lv = self.arch.levels[level]
            counts[(lv.name, t)] = dict(c)
        energy = self.energy + sum(unit_energy.values())
        peak_bits = {self.arch.levels[i].name: v for i, v in self.peak.items()}
        peak = {self.arch.levels[i].name: -(-v // (self.arch.levels[i].access_bits or self.wl.word_bits))
                for i, v in self.peak.items()}
        return SimResult(counts, ops, steps, dict(unit_ops), dict(unit_cycles), dict(unit_energy), peak, groups,
                         energy, sum(g.latency_cycles for g in groups), peak_bits)


def element_fj(level, kind: str, bits: int, word_bits: int) -> int:
    """docs §6: an access of the level's word carries word // bits whole elements (energy per element rounded up
    to a whole fJ), a wider element takes ceil(bits / word) accesses."""
    e = fj(level.read_pj if kind == "r" else level.write_pj)
    word = level.access_bits or word_bits
    return math.ceil(Fraction(e, word // bits)) if bits <= word else e * math.ceil(Fraction(bits, word))


def simulate(inst: Instance, mapping: Mapping) -> SimResult:
    """Run the mapping literally; raises FusionAcrossReduction or SimulatorError.

    Twice: the first run finds which kept levels drain some element more than once (its values are then partial
    sums at the next kept level up); the second counts bits with every output at its width (docs §1: an output is
    held at accumulator width where the units' updates arrive, if it reduces, and where such drains arrive)."""
    first = Simulator(inst, mapping)
    first.run()
    widths = {}
    wl = inst.workload
    for names, g in first._groups():
        for name in names:
            n = _build_nest(inst, mapping, name, g)
            kept = n.kept[n.output]
            for i, k in enumerate(kept):
                partial = first.expected[n.output] > 1 and (
                    i == len(kept) - 1 or any(v > 1 for v in first.drain_times[(name, n.path[kept[i + 1]])].values()))
                widths[(name, k)] = wl.accumulator_bits(n.output) if partial else wl.bits(n.output)
    return Simulator(inst, mapping, widths).run()
