"""The CP-SAT model of one fusion segment: consecutive Einsums run as one group (or one Einsum alone).

Once the fusion partition of the cascade is fixed, groups are independent: each has its own capacity, and
energy and latency add up over groups (docs/model.md §5–6). So the mapper solves one exact model per candidate
segment and combines them with a shortest path (solver/search.py). This module builds that model.

Data: the segment's Einsums, their candidate compute units, the fusion level F and the levels above it.
Variables:
- exponents of every loop factor: per (Einsum, unit, level, rank, prime) for temporal loops, per axis for
  spatial loops, and per (level above F, run of members, dimension, prime) for the group's shared loops: the
  whole group, and every proper contiguous run with dimensions of its own (nested fusion, `run_dims`);
- loop order: one Boolean per pair of ranks per level ("r1 is outside r2"), transitive;
- residency: keep[tensor, level] per Einsum and unit (at F and above: one per group);
- the compute unit of each Einsum: exactly one `choose` literal.
Constraints: factors of each rank multiply to its bound (over the member's own loops and the shared loops enclosing
it); spatial factors fit each mesh axis; live tiles fit each level's capacity (for the chosen unit); the runs in use
form a tree; the residency and fusion rules of docs/model.md §3 (a group copy is tiled by the loops enclosing all
its users, `frame`).
Objective: energy (fJ) and latency (cycles) as exact integer linear expressions of monomial variables, one per
count of docs/model.md §4, gated by the residency Booleans that make the count exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd, prod

from mapsolve.model.evaluate import port_words
from mapsolve.model.nest import group_copy_bits, group_intermediates
from mapsolve.model.online import lock_step, split_pair, temporal_only
from mapsolve.model.views import SharedDim, run_dims
from mapsolve.model.spec import EinsumMapping, FusedGroup, Instance
from mapsolve.model.units import element_fj, fj

from .bounds import fewest_cycles, fewest_words
from .exact import Exact, ExpVar, Expo


def to_unit(fj: int, unit: int) -> int:
    """A per-access or per-op energy of `fj` femtojoules in units of `unit` fJ, rounded toward zero.

    Rounding down (sign kept) makes every mapping's priced energy times `unit` at most its true energy: a level's
    terms share one coefficient and sum to a non-negative count, so the optimum in these units, times `unit`, is
    a valid lower bound of the true optimum in fJ (docs/solver-soundness.md). Rounding to nearest was not."""
    if unit == 1:
        return fj
    q = abs(fj) // unit
    return q if fj >= 0 else -q


def factorize(n: int) -> dict[int, int]:
    out: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


@dataclass
class Slot:
    """One loop of the nest: a rank at a level, temporal or spatial, with its exponent per prime."""

    pos: int
    rank: str
    exps: dict[int, ExpVar]
    spatial: bool = False
    axis: str | None = None
    mesh: object = None
    shared: bool = False
    nonunit: object = None
    key: str | None = None       # loop order key: the rank, or for a shared loop its dimension's key (and run)
    span: frozenset | None = None   # a shared loop: the members it encloses

    def __post_init__(self):
        if self.key is None:
            self.key = self.rank

    def expo(self) -> Expo:
        e = Expo()
        for ev in self.exps.values():
            e.add_var(ev)
        return e


@dataclass
class Cand:
    """One Einsum on one candidate compute unit: its nest variables."""

    einsum: object
    unit: object
    path: list[int]
    choose: object
    slots: list[Slot] = field(default_factory=list)
    order: dict[tuple[int, str, str], object] = field(default_factory=dict)
    keep: dict[tuple[str, int], object] = field(default_factory=dict)
    cycles: object = None

    @property
    def tensors(self) -> dict[str, list[str]]:
        return self.einsum.tensors

    @property
    def space(self) -> list[str]:
        return self.einsum.space


class SegmentModel:
    """Exact CP-SAT model of Einsums `names` run as one group fused at architecture level `fusion` (or alone)."""

    def __init__(self, inst: Instance, names: list[str], fusion: int | None, top: tuple[int, ...] = ()):
        self.inst = inst
        self.arch = inst.architecture
        self.wl = inst.workload
        self.names = names
        self.fusion = fusion
        self.top = top                      # architecture levels above F (DRAM first), shared by all members
        self.fpos = len(top) if fusion is not None else None
        self.x = Exact()
        self.m = self.x.m
        self.einsums = [e for e in self.wl.einsums if e.name in names]
        self.primes = {r: factorize(b) for r, b in self.wl.ranks.items()}
        self.intermediates = group_intermediates(self.wl, names) if fusion is not None else frozenset()
        self.produced = {e.output.tensor for e in self.einsums}
        self.energy_terms: list[tuple[int, object]] = []
        self.words: dict[tuple[int, str], list[tuple[int, object]]] = {}   # (level, port) -> signed words
        self.unit_time: dict[str, list] = {}
        self.shared_slots: list[Slot] = []
        self.shared_order: dict[tuple[int, str, str], object] = {}
        self.group_keep: dict[tuple[str, int], object] = {}
        self.cands: dict[str, list[Cand]] = {}
        self._selected_cache: dict[tuple[int, int], ExpVar] = {}
        cut = split_pair(self.wl, names)
        if cut is not None:
            raise Infeasible(f"{cut[1]} reads the running state of {cut[0]} over {cut[2]}: they must be in one "
                             f"fused group")
        self._build()

    # ======================================================================================================
    # Data
    # ======================================================================================================
    def candidate_units(self, e) -> list:
        out = []
        for u in self.arch.compute_units:
            if e.op not in u.ops:
                continue
            path = self.arch.path(u.name)
            if self.fusion is not None:
                if self.fusion not in path or tuple(path[:path.index(self.fusion)]) != self.top:
                    continue
            out.append(u)
        return out

    def spans(self) -> list[tuple[int, int]]:
        """The runs of members a shared loop may enclose (nested fusion, docs/model.md §3): every contiguous run,
        the whole group first. A loop's run is part of the tree the model chooses."""
        n = len(self.einsums)
        if self.inst.solver.nesting == "flat":
            return [(0, n)]
        return [(0, n)] + [(i, j) for i in range(n) for j in range(i + 1, n + 1) if (i, j) != (0, n)]


    def tensor_size_expo(self, ranks) -> Expo:
        e = Expo()
        for r in ranks:
            for p, a in self.primes[r].items():
                e.add_const(p, a)
        return e

    # ======================================================================================================
    # Variables
    # ======================================================================================================
    def _exps(self, name: str, rank: str, budget_group: str | None = None) -> dict[int, ExpVar]:
        """Exponent variables per prime of the rank's bound. `budget_group` labels the exponents whose total the
        table bounds may assume is at most the bound's (solver/exact.py): a member's own loops are labelled by
        their rank; a shared loop by its dimension's key, which is the rank when every member names it so (then
        all loops of one label in a member's expression are that member's one rank, whose exponents total the
        bound) and otherwise, a view, a key like "P~M" that no rank has. Labelling a view's loop by its first
        member's rank made the tables too small wherever another member has a rank of that name: valid mappings
        were excluded (KP+QK, QK's query rank P against the key dimension P~M)."""
        group = rank if budget_group is None else budget_group
        return {p: self.x.exponent(f"{name}.{rank}.{p}", group, p, a) for p, a in self.primes[rank].items()}

    def _nonunit(self, slot: Slot):
        if not slot.exps:
            slot.nonunit = 0
            return
        b = self.m.new_bool_var("")
        total = sum(ev.var for ev in slot.exps.values())
        self.m.add(total >= 1).only_enforce_if(b)
        self.m.add(total == 0).only_enforce_if(~b)
        slot.nonunit = b

    def _order_vars(self, store: dict, pos: int, ranks: list[str], slots: list[Slot]) -> None:
        """Pairwise order of the temporal loops at one level, transitive; unit loops go innermost, by name.

        Unit loops are transparent to reuse, so placing them canonically removes symmetric solutions only.
        """
        nonunit = {s.rank: s.nonunit for s in slots if s.pos == pos and not s.spatial}
        for i, r1 in enumerate(ranks):
            for r2 in ranks[i + 1:]:
                b = store[(pos, r1, r2)] = self.m.new_bool_var(f"order.{pos}.{r1}<{r2}")
                n1, n2 = nonunit[r1], nonunit[r2]
                if isinstance(n2, int):
                    if not n2:
                        self.m.add(b == 1)
                else:
                    self.m.add_implication(~n2, b)
                # r1 unit and r2 not: r2 is outside
                clause = [~b] + ([] if isinstance(n1, int) else [n1]) + ([] if isinstance(n2, int) else [~n2])
                if not (n1 == 1 if isinstance(n1, int) else False) and not (isinstance(n2, int) and n2 == 0):
                    self.m.add_bool_or(clause)
        for r1 in ranks:
            for r2 in ranks:
                for r3 in ranks:
                    if len({r1, r2, r3}) == 3:
                        self.m.add_implication(self._before(store, pos, r1, r2), self._before(store, pos, r1, r3)) \
                            .only_enforce_if(self._before(store, pos, r2, r3))

    @staticmethod
    def _before(store: dict, pos: int, r1: str, r2: str):
        """Literal: at level position pos, the r1 loop is outside the r2 loop."""
        if (pos, r1, r2) in store:
            return store[(pos, r1, r2)]
        return ~store[(pos, r2, r1)]

    def _keep_var(self, t: str, level: int, pos: int, backing: int, fixed_zero: bool):
        lv = self.arch.levels[level]
        if pos < backing or fixed_zero:
            return 0
        if pos == backing:
            return 1
        if lv.may_keep is not None and t not in lv.may_keep:
            return 0
        if t in lv.must_keep:
            return 1
        return self.m.new_bool_var(f"keep.{t}.{lv.name}")

    def _build(self) -> None:
        self.shared_dim: dict[int, SharedDim] = {}
        everyone = frozenset(self.names)
        runs = self.spans() if self.fusion is not None and len(self.einsums) > 1 else \
            [(0, len(self.einsums))] if self.fusion is not None else []
        for pos, level in enumerate(self.top):
            for i, j in runs:
                run = self.einsums[i:j]
                span = frozenset(e.name for e in run)
                suffix = "" if span == everyone else f"@{run[0].name}..{run[-1].name}"
                at = []
                for d in run_dims(self.einsums, i, j):
                    label = f"shared.{self.arch.levels[level].name}{suffix}"
                    s = Slot(pos, d.key + suffix, self._exps(label, d.first, d.key), shared=True, span=span)
                    self._nonunit(s)
                    at.append(s)
                    self.shared_dim[id(s)] = d
                self.shared_slots.extend(at)
                self._order_vars(self.shared_order, pos, [s.rank for s in at], at)
        self._tree_constraints()
        self._lock_step_constraints()
        # each member sees the shared loops enclosing it, under its own rank names (same variables)
        self.member_shared = {e.name: [Slot(s.pos, self.shared_dim[id(s)].rank_of(e.name), s.exps, shared=True,
                                            nonunit=s.nonunit, key=s.key, span=s.span)
                                       for s in self.shared_slots if e.name in s.span]
                              for e in self.einsums}
        if self.fusion is not None:
            tensors = {t.tensor for e in self.einsums for t in (e.output, *e.inputs)}
            for t in sorted(tensors):
                inter = t in self.intermediates
                backing = self.fpos if inter else 0
                fusion = self.arch.levels[self.fusion]
                if inter and fusion.may_keep is not None and t not in fusion.may_keep:
                    raise Infeasible(f"fusing {'+'.join(self.names)} at {fusion.name}: intermediate {t} would "
                                     f"live there, but {fusion.name}'s may_keep excludes it")
                for pos, level in enumerate((*self.top, self.fusion)):
                    self.group_keep[(t, pos)] = self._keep_var(t, level, pos, backing, False)
        for e in self.einsums:
            units = self.candidate_units(e)
            if not units:
                raise Infeasible(f"einsum {e.name}: no compute unit can run op {e.op!r}" +
                                 (f" below fusion level {self.arch.levels[self.fusion].name}"
                                  if self.fusion is not None else ""))
            chooses = [self.m.new_bool_var(f"unit.{e.name}.{u.name}") for u in units]
            self.m.add_exactly_one(chooses)
            self.cands[e.name] = [self._build_cand(e, u, c) for u, c in zip(units, chooses)]
        self._group_terms()

    def _tree_constraints(self) -> None:
        """The loops of factor > 1 form a tree (docs/model.md §3): two runs that overlap without one containing the
        other are never both used, and a loop enclosing more members is never at a deeper level than one it
        contains. Loops of one run at one level are ordered by their order literals; a loop of a larger run is
        outside one of a smaller run it contains."""
        used: dict[tuple[frozenset, int], object] = {}
        for s in self.shared_slots:
            if isinstance(s.nonunit, int):
                continue
            key = (s.span, s.pos)
            if key not in used:
                used[key] = self.m.new_bool_var(f"run used {sorted(s.span)} at {s.pos}")
            self.m.add_implication(s.nonunit, used[key])
        keys = list(used)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                (sa, pa), (sb, pb) = keys[a], keys[b]
                crossing = sa & sb and not sa <= sb and not sb <= sa
                inverted = (sa > sb and pa > pb) or (sb > sa and pb > pa)
                if crossing or inverted:
                    self.m.add_bool_or([~used[keys[a]], ~used[keys[b]]])

    def _lock_step_constraints(self) -> None:
        """A recurrence and a running reader of it step together (model/online.py): the shared loops enclosing
        both over the carried rank take all of it, so neither keeps a loop of its own over it."""
        for p, c, r in lock_step(self.wl):
            if p not in self.names:
                continue
            covering = [s for s in self.shared_slots if {p, c} <= s.span and
                        self.shared_dim[id(s)].rank_of(p) == r and self.shared_dim[id(s)].rank_of(c) == r]
            for prime, a in self.primes[r].items():
                self.m.add(sum(s.exps[prime].var for s in covering) == a)

    def _build_cand(self, e, unit, choose) -> Cand:
        path = self.arch.path(unit.name)
        c = Cand(e, unit, path, choose)
        space = c.space
        first_own = self.fpos if self.fusion is not None else 0
        c.slots.extend(self.member_shared[e.name])
        for pos in range(first_own, len(path)):
            name = f"{e.name}.{unit.name}.{self.arch.levels[path[pos]].name}"
            for r in space:
                s = Slot(pos, r, self._exps(name + ".t", r))
                self._nonunit(s)
                c.slots.append(s)
            below = self.arch.levels[path[pos + 1]].mesh if pos + 1 < len(path) else unit.mesh
            for axis in ("x", "y"):
                size = getattr(below, axis)
                if size == 1:
                    continue
                axis_slots = [Slot(pos, r, self._exps(name + f".s{axis}", r), spatial=True, axis=axis, mesh=below)
                              for r in space]
                c.slots.extend(axis_slots)
                expo = Expo()
                for s in axis_slots:
                    expo = expo + s.expo()
                used = self.x.monomial(1, expo)
                if not isinstance(used, int):
                    self.m.add(used <= size)
            self._order_vars(c.order, pos, space, c.slots)
        # factors of each rank multiply to its bound; a carried rank steps in order (never spatial)
        for r in space:
            for p, a in self.primes[r].items():
                self.m.add(sum(s.exps[p].var for s in c.slots if s.rank == r) == a)
        temporal = temporal_only(self.wl).get(e.name, set())
        for s in c.slots:
            if s.spatial and s.rank in temporal:
                for ev in s.exps.values():
                    self.m.add(ev.var == 0)
        # residency
        for t in c.tensors:
            inter = t in self.intermediates
            backing = self.fpos if inter else 0
            for pos, level in enumerate(path):
                if self.fusion is not None and pos <= self.fpos:
                    c.keep[(t, pos)] = self.group_keep[(t, pos)]
                else:
                    c.keep[(t, pos)] = self._keep_var(t, level, pos, backing, False)
        self._cand_terms(c)
        return c

    # ======================================================================================================
    # Quantities of docs/model.md, as exponent expressions
    # ======================================================================================================
    def _temporal_above(self, c_slots: list[Slot], pos: int) -> list[Slot]:
        return [s for s in c_slots if not s.spatial and s.pos < pos]

    def _before_any(self, c: Cand | None, s: Slot, other: Slot):
        """Literal (or constant): loop `s` is outside loop `other` at the same level. Shared loops of different runs
        are ordered by containment: the larger run is outside."""
        if s.shared and other.shared and s.span != other.span:
            return 1 if s.span > other.span else 0
        store = self.shared_order if s.shared else c.order
        return self._before(store, s.pos, s.key, other.key)

    def _counted(self, c: Cand | None, slots: list[Slot], pos: int, ranks: list[str], slot: Slot):
        """Literal: loop `slot` (irrelevant to the tensor) is outside the reuse run above level `pos`."""
        if slot.shared and self.fpos is not None and pos > self.fpos and len(self.names) > 1:
            return 1  # below F a group's shared loops always refetch (tiles are flushed per Einsum run)
        lits = []
        for s in slots:
            if s.spatial or s.rank not in ranks or s.pos >= pos:
                continue
            if s.pos > slot.pos:
                lits.append(s.nonunit)
            elif s.pos == slot.pos:
                lits.append(self.x.all_of([s.nonunit, self._before_any(c, slot, s)]))
        return self.x.any_of(lits)

    def _irr_temporal(self, c: Cand | None, slots: list[Slot], pos: int, ranks: list[str]) -> Expo:
        out = Expo()
        for s in self._temporal_above(slots, pos):
            if s.rank in ranks or not s.exps:
                continue
            counted = self._counted(c, slots, pos, ranks, s)
            if isinstance(counted, int) and not counted:
                continue
            for ev in s.exps.values():
                out.add_var(ev if isinstance(counted, int) else self._selected(counted, ev))
        return out

    def _selected(self, counted, ev: ExpVar) -> ExpVar:
        """An exponent equal to `ev` when `counted`, else 0."""
        key = (counted.Index(), ev.var.Index())
        cache = self._selected_cache
        if key not in cache:
            z = self.x.exponent("", ev.group[0], ev.group[1], ev.ub)
            self.m.add(z.var == ev.var).only_enforce_if(counted)
            self.m.add(z.var == 0).only_enforce_if(~counted)
            cache[key] = z
        return cache[key]

    @staticmethod
    def _spatial(slots: list[Slot], lo: int, hi: int | None, ranks: list[str] | None, cap: str | None) -> Expo:
        """Spatial exponents at levels lo <= pos < hi, of ranks not in `ranks` (all if None), on capable meshes."""
        out = Expo()
        for s in slots:
            if not s.spatial or s.pos < lo or (hi is not None and s.pos >= hi):
                continue
            if ranks is not None and s.rank in ranks:
                continue
            if cap is not None and not getattr(s.mesh, cap):
                continue
            for ev in s.exps.values():
                out.add_var(ev)
        return out

    def _tile(self, slots: list[Slot], pos: int, ranks: list[str]) -> Expo:
        out = self.tensor_size_expo(ranks)
        for s in slots:
            if s.pos < pos and s.rank in ranks:
                for ev in s.exps.values():
                    out.add_var(ev, -1)
        return out

    # ======================================================================================================
    # Costs
    # ======================================================================================================
    def _flow(self, level: int, kind: str, sign: int, expo: Expo, gate: list, inst: Expo, bits) -> None:
        """Elements read or written at architecture level `level`: energy, and per-instance bits if limited.

        `bits` is the element width, or for an output whose width depends on the mapping a pair
        (partial-sum literal, {True: accumulator bits, False: bits}): the flow is then split on the literal."""
        if isinstance(bits, tuple):
            lit, widths = bits
            if not isinstance(lit, int) and widths[True] != widths[False]:
                self._flow(level, kind, sign, expo, gate + [lit], inst, widths[True])
                self._flow(level, kind, sign, expo, gate + [_neg(lit)], inst, widths[False])
                return
            bits = widths[bool(lit)] if isinstance(lit, int) else widths[False]
        lv = self.arch.levels[level]
        b = self.x.all_of(gate)
        if isinstance(b, int) and b == 0:
            return
        value = self.x.gate(b, self.x.monomial(1, expo))
        self.energy_terms.append((sign * element_fj(lv, kind, bits, self.wl.word_bits), value))
        for port, _ in lv.ports:
            if kind in port:
                per_inst = self.x.gate(b, self.x.monomial(1, expo - inst))
                self.words.setdefault((level, port), []).append((sign * bits, per_inst))

    def _pairs(self, keep: dict, t: str, positions: list[int]):
        """(parent, child, literal list) for every pair of kept positions with nothing kept between."""
        for i, child in enumerate(positions):
            for parent in positions[:i]:
                between = [1 - keep[(t, q)] if isinstance(keep[(t, q)], int) else ~keep[(t, q)]
                           for q in positions if parent < q < child]
                yield parent, child, [keep[(t, parent)], keep[(t, child)], *between]

    def _innermost(self, keep: dict, t: str, positions: list[int], pos: int) -> list:
        return [keep[(t, pos)]] + [1 - keep[(t, q)] if isinstance(keep[(t, q)], int) else ~keep[(t, q)]
                                   for q in positions if q > pos]

    def _accumulates(self, c: Cand, o: str, ranks: list[str], positions: list[int]) -> dict[int, object]:
        """Per position: the literal "the output's residencies here start from zero and the parent accumulates
        the drains" (docs/model.md §4, `Nest.accumulates`): a spatial loop > 1 over a rank the output lacks between
        the parent and here, or a parent that accumulates itself. 0 at the backing level and where not kept."""
        acc: dict[int, object] = {}
        for child in positions:
            terms = []
            for parent, ch_, lits in self._pairs(c.keep, o, positions):
                if ch_ != child:
                    continue
                spread = self._spread(c, parent, child, ranks)
                terms.append(self.x.all_of([*lits, self.x.any_of([spread, acc.get(parent, 0)])]))
            acc[child] = self.x.any_of(terms)
        return acc

    def _partial(self, c: Cand, o: str, ranks: list[str], positions: list[int], acc: dict) -> dict[int, object]:
        """Per position: the literal "holds partial sums of the output here" (`Nest.partial`): the Einsum reduces,
        and the position is the innermost kept one (the units' updates arrive) or the next kept one below drains
        values that are not final (its residencies come back, or it accumulates)."""
        e = c.einsum
        if prod(self.wl.ranks[r] for r in set(e.space) - set(ranks)) <= 1 or \
                self.wl.bits(o) == self.wl.accumulator_bits(o):
            return {pos: 0 for pos in positions}   # one width either way: no literal needed
        out = {}
        for pos in positions:
            terms = [self.x.all_of(self._innermost(c.keep, o, positions, pos))]
            for parent, child, lits in self._pairs(c.keep, o, positions):
                if parent == pos:
                    terms.append(self.x.all_of([*lits, self.x.any_of([self._revisits(c, child, ranks,
                                                                                       self.frame(c.slots, child, o)),
                                                                       acc[child]])]))
            out[pos] = self.x.any_of(terms)
        return out

    def _revisits(self, c: Cand, pos: int, ranks: list[str], slots: list[Slot]):
        """Literal: a loop the tensor lacks, of factor > 1, is outside its reuse run above `pos` (`Nest.revisits`;
        `slots`: the nest the tile at `pos` is measured in, `frame`)."""
        lits = []
        for s in self._temporal_above(slots, pos):
            if s.rank in ranks or not s.exps:
                continue
            lits.append(self.x.all_of([self._counted(c, slots, pos, ranks, s), s.nonunit]))
        return self.x.any_of(lits)

    def users(self, tensor: str) -> frozenset:
        """The members of the segment that use `tensor`."""
        return frozenset(e.name for e in self.einsums if tensor in e.tensors)

    def frame(self, slots: list[Slot], pos: int, tensor: str) -> list[Slot]:
        """The loops a tile of `tensor` at `pos` is measured in (`Nest.frame`): at F and above, a group copy, only
        the shared loops enclosing every member that uses it (the others run inside the copy, below `pos`)."""
        if self.fpos is None or pos > self.fpos or len(self.einsums) < 2:
            return slots
        users = self.users(tensor)
        return [s for s in slots if not s.shared or users <= s.span]

    def _fits(self, live: list[tuple[int, object]], cap: int, enforce=None) -> None:
        """Σ bits · tile <= capacity in bits, divided through by the gcd (one width: the word count)."""
        g = gcd(cap, *(b for b, _ in live)) or 1
        ct = self.m.add(sum(b // g * v for b, v in live) <= cap // g)
        if enforce is not None:
            ct.only_enforce_if(enforce)

    def _spread(self, c: Cand, parent: int, child: int, ranks: list[str]):
        """Literal: a spatial loop > 1 over a rank the tensor lacks sits at levels parent..child-1 (one Boolean
        on the sum of those exponents, cached per range)."""
        evs = [ev for s in c.slots if s.spatial and parent <= s.pos < child and s.rank not in ranks
               for ev in s.exps.values()]
        if not evs:
            return 0
        key = ("spread", tuple(sorted(ev.var.Index() for ev in evs)))
        cache = self._selected_cache
        if key not in cache:
            b = self.m.new_bool_var("")
            total = sum(ev.var for ev in evs)
            self.m.add(total >= 1).only_enforce_if(b)
            self.m.add(total == 0).only_enforce_if(~b)
            cache[key] = b
        return cache[key]

    def _spatial_nonunit(self, slot: Slot):
        if slot.nonunit is None:
            self._nonunit(slot)
        return slot.nonunit

    def _cand_terms(self, c: Cand) -> None:
        slots, path, ch = c.slots, c.path, c.choose
        positions = list(range(len(path)))
        inst = {pos: self._spatial(slots, 0, pos, None, None) for pos in positions}
        space = c.space
        in_group = self.fusion is not None
        for tref in c.einsum.inputs:
            t, ranks = tref.tensor, tref.ranks
            bits = self.wl.bits(t)
            size = self.tensor_size_expo(ranks)
            irr_all = self.tensor_size_expo([r for r in space if r not in ranks])
            for parent, child, lits in self._pairs(c.keep, t, positions):
                if in_group and child <= self.fpos:
                    continue  # the group's copy: counted once in _group_terms
                irr_s = self._spatial(slots, 0, child, ranks, None)
                irr_t = self._irr_temporal(c, slots, child, ranks)
                mc = self._spatial(slots, parent, child, ranks, "multicast")
                self._flow(path[child], "w", 1, size + irr_s + irr_t, lits + [ch], inst[child], bits)
                self._flow(path[parent], "r", 1, size + irr_s - mc + irr_t, lits + [ch], inst[parent], bits)
            for pos in positions:
                lits = self._innermost(c.keep, t, positions, pos)
                mc = self._spatial(slots, pos, None, ranks, "multicast")
                self._flow(path[pos], "r", 1, size + irr_all - mc, lits + [ch], inst[pos], bits)
        o, ranks = c.einsum.output.tensor, c.einsum.output.ranks
        size = self.tensor_size_expo(ranks)
        irr_all = self.tensor_size_expo([r for r in space if r not in ranks])
        acc = self._accumulates(c, o, ranks, positions)
        drains = {pos: size + self._spatial(slots, 0, pos, ranks, None) +
                  self._irr_temporal(c, self.frame(slots, pos, o), pos, ranks) for pos in positions[1:]}
        partial = self._partial(c, o, ranks, positions, acc)
        widths = {True: self.wl.accumulator_bits(o), False: self.wl.bits(o)}
        w = {pos: (partial[pos], widths) for pos in positions}   # the output's width at each position
        replaces = c.einsum.recurrence is not None
        if replaces:
            self._state_terms(c, o, size + irr_all, drains, positions, inst, self.wl.bits(o))
        for pos in ([] if replaces else positions):   # a reduction's read-modify-write flows (not a state's)
            lits = self._innermost(c.keep, o, positions, pos)
            rd = self._spatial(slots, pos, None, ranks, "reduction")
            for kind in ("r", "w"):
                self._flow(path[pos], kind, 1, size + irr_all - rd, lits + [ch], inst[pos], w[pos])
            # element-residencies that start with no value (their first update is a plain write): the first
            # visits in read-back mode; in accumulate mode every residency (D), which cancels the D drains read
            # out (below): there the level's reads are just the arrivals, with no negative term
            first_visits = size + self._spatial(slots, 0, pos, ranks, None)
            self._flow(path[pos], "r", -1, first_visits, [c.keep[(o, pos)], _neg(acc[pos]), ch], inst[pos], w[pos])
        for parent, child, lits in ([] if replaces else self._pairs(c.keep, o, positions)):
            visits = size + self._spatial(slots, 0, child, ranks, None)
            g = lits + [ch]
            readback = g + [_neg(acc[child])]
            accumulate = g + [acc[child]]
            wc, wp = w[child], w[parent]
            self._flow(path[child], "r", 1, drains[child], readback, inst[child], wc)   # drains read out
            self._flow(path[child], "w", 1, drains[child], readback, inst[child], wc)   # read-backs (= D - V)
            self._flow(path[child], "w", -1, visits, readback, inst[child], wc)
            # read-back: the parent serves D - V read-backs, and of the D drains arriving the D - V that carry
            # their sums are plain writes, so its update reads are V - (its own empty residencies): D reads here
            self._flow(path[parent], "r", 1, drains[child], readback, inst[parent], wp)
            # accumulate: every arriving drain is a read-modify-write but the parent's empty residencies
            arriving = drains[child] - self._spatial(slots, parent, child, ranks, "reduction")
            self._flow(path[parent], "r", 1, arriving, accumulate, inst[parent], wp)
            self._flow(path[parent], "w", 1, arriving, g, inst[parent], wp)
        # compute
        cost = c.unit.ops[c.einsum.op]
        ops = prod(self.wl.ranks[r] for r in space)
        self.energy_terms.append((fj(cost.energy_pj), self.x.gate(ch, ops)))  # per-op energy x ops, if chosen
        steps = Expo()
        for s in slots:
            if not s.spatial:
                steps = steps + s.expo()
        steps_v = self.x.monomial(1, steps)
        c.cycles = self.x.ceil_div(steps_v, self.x.ub(steps_v), cost.per_cycle.numerator,
                                   cost.per_cycle.denominator, f"cycles of {c.einsum.name} on {c.unit.name}")
        # a redundant cut that makes the relaxation see compute time: every unit busy at every step at best
        fewest = fewest_cycles(self.inst, c.einsum, c.unit)
        self.m.add(c.cycles >= fewest)
        busy = self.x.gate(ch, c.cycles)
        self.m.add(busy >= fewest * ch)
        self.unit_time.setdefault(c.unit.name, []).append(busy)
        # capacity of the levels this Einsum holds alone (below F, or every level when not fused)
        for pos in positions:
            if in_group and pos <= self.fpos:
                continue
            cap = self.arch.levels[path[pos]].capacity(self.wl.word_bits)
            if cap is None:
                continue
            live = []
            for t, r in c.tensors.items():
                tile = self.x.monomial(1, self._tile(slots, pos, r))
                if t == o and widths[True] != widths[False] and not isinstance(partial[pos], int):
                    live.append((widths[True], self.x.gate(self.x.all_of([c.keep[(t, pos)], partial[pos]]), tile)))
                    live.append((widths[False], self.x.gate(self.x.all_of([c.keep[(t, pos)], _neg(partial[pos])]),
                                                            tile)))
                else:
                    bits = widths[bool(partial[pos])] if t == o and isinstance(partial[pos], int) else \
                        (widths[False] if t == o else self.wl.bits(t))
                    live.append((bits, self.x.gate(c.keep[(t, pos)], tile)))
            self._fits(live, cap, ch)

    def _state_terms(self, c: Cand, o: str, ops: Expo, drains: dict, positions: list[int], inst: dict, bits) -> None:
        """A recurrence's state (docs/model.md §4): each step is a plain write where the units' updates arrive,
        and a residency ending below the backing level drains it to the next kept level up, a plain write there;
        nothing is read back for the producer (a reader of the previous state fills it as an input)."""
        path, ch = c.path, c.choose
        for pos in positions:
            self._flow(path[pos], "w", 1, ops, self._innermost(c.keep, o, positions, pos) + [ch], inst[pos], bits)
        for parent, child, lits in self._pairs(c.keep, o, positions):
            self._flow(path[child], "r", 1, drains[child], lits + [ch], inst[child], bits)
            self._flow(path[parent], "w", 1, drains[child], lits + [ch], inst[parent], bits)

    def _previous_first(self) -> set[str]:
        """Recurrence states of the segment whose previous value a member reads at or before the producer: their
        group copies are filled from the parent like an input's (evaluate._counts_of's `filled_once`)."""
        out = set()
        for e in self.einsums:
            for ref in e.inputs:
                if ref.running == "previous" and ref.tensor in self.produced:
                    out.add(ref.tensor)
        return out

    def _group_terms(self) -> None:
        """Fills of the group's shared copies (F and above), and their capacity."""
        if self.fusion is None:
            return
        levels = (*self.top, self.fusion)
        positions = list(range(len(levels)))
        tensors: dict[str, list[str]] = {}
        seen_by: dict[str, str] = {}      # tensor -> a member using it: its names for the tensor's dimensions
        for e in self.einsums:
            for t in (e.output, *e.inputs):
                tensors[t.tensor] = t.ranks
                seen_by[t.tensor] = e.name
        zero = Expo()
        refilled = self._previous_first()
        for t, ranks in tensors.items():
            if t in self.produced and t not in refilled:
                continue
            size = self.tensor_size_expo(ranks)
            for parent, child, lits in self._pairs(self.group_keep, t, positions):
                irr_t = self._irr_temporal(None, self.frame(self.member_shared[seen_by[t]], child, t), child, ranks)
                self._flow(levels[child], "w", 1, size + irr_t, lits, zero, self.wl.bits(t))
                self._flow(levels[parent], "r", 1, size + irr_t, lits, zero, self.wl.bits(t))
        for pos, level in enumerate(levels):
            cap = self.arch.levels[level].capacity(self.wl.word_bits)
            if cap is None:
                continue
            live = [(group_copy_bits(self.wl, self.einsums, t),
                     self.x.gate(self.group_keep[(t, pos)],
                                 self.x.monomial(1, self._tile(self.frame(self.member_shared[seen_by[t]], pos, t),
                                                               pos, r))))
                    for t, r in tensors.items()]
            self._fits(live, cap)

    # ======================================================================================================
    # Objectives
    # ======================================================================================================
    def energy_expr(self, unit: int = 1):
        """Energy in units of `unit` fJ: each per-access or per-op energy rounded to the nearest unit."""
        return sum(to_unit(coef, unit) * v for coef, v in self.energy_terms)

    def energy_ub(self, unit: int = 1) -> int:
        return sum(abs(to_unit(coef, unit)) * self.x.ub(v) for coef, v in self.energy_terms)

    def latency_var(self):
        if hasattr(self, "_latency"):
            return self._latency
        parts = []
        for u, times in self.unit_time.items():
            ub = sum(self.x.ub(v) for v in times)
            tv = self.m.new_int_var(0, ub, f"time.{u}")
            self.m.add(tv == sum(times))
            parts.append(tv)
        fewest = fewest_words(self.inst, self.names, self.fusion)
        for (level, port), words in self.words.items():
            lv = self.arch.levels[level]
            bw = dict(lv.ports)[port]
            # bits moved over bw words of the level's access width per cycle; divided through by the gcd of the
            # widths and the word, so one width throughout gives the plain word count
            g = gcd(lv.word(self.wl.word_bits), *(s for s, _ in words))
            ub = sum(s // g * self.x.ub(v) for s, v in words if s > 0)
            total = sum(s // g * v for s, v in words)
            least = port_words(port, *fewest.get(level, (0, 0)))
            if least:
                self.m.add(total >= -(-least // g))  # redundant: lets the relaxation see transfer time
            most = self._most_bits() // g
            if most < ub:   # the terms' bounds add up loosely (most exclude each other): bound the sum itself
                moved = self.m.new_int_var(0, most, f"moved at {lv.name}")
                self.m.add(moved == total)
                total, ub = moved, most
            word = lv.word(self.wl.word_bits) // g
            parts.append(self.x.ceil_div(total, ub, bw.numerator * word, bw.denominator,
                                         f"transfer time of {lv.name}"))
        lat = self.m.new_int_var(0, max(self.x.ub(p) for p in parts), "latency")
        self.m.add_max_equality(lat, parts)
        self._latency = lat
        return lat

    def _most_bits(self) -> int:
        """Bits any mapping of the segment can move at one level instance, at most: per Einsum and tensor a level
        is filled at most once per operation and serves at most one read per operation (inputs: 2 accesses per
        op); an output gets at most one update, one update read, one drain, one read-back written and one served
        per op (5, rounded up to 6), at its widest width. Physical, so valid whatever the loose term bounds say."""
        total = 0
        for e in self.einsums:
            ops = prod(self.wl.ranks[r] for r in e.space)
            o = e.output.tensor
            total += ops * (sum(2 * self.wl.bits(t.tensor) for t in e.inputs) +
                            6 * max(self.wl.bits(o), self.wl.accumulator_bits(o)))
        return total

    def decode(self, value) -> tuple[list[EinsumMapping], FusedGroup | None]:
        """Turn a solution (`value(var)` callable) into mapping spec objects (solver/decode.py)."""
        from .decode import decode
        return decode(self, value)


def _neg(lit):
    """The negation of a literal or of a 0/1 constant."""
    return 1 - lit if isinstance(lit, int) else ~lit


class Infeasible(Exception):
    """No mapping of this segment can exist; the message says why."""
