"""Exhaustive reference enumerator over the solver's mapspace, for small instances (issue 4).

* MMEE matrix encoding: per template (unit, support, loop orders, shared loops) the cost polynomials come from the
  model's own code run on symbolic factors (solver/enum_poly.py); all tilings of the template are then evaluated
  at once as monomial features x coefficients, keep choices combined per tensor (energy, words and tiles add up
  over tensors, so every keep combo is a column of the coefficient matrix), capacity as a mask. Shared-loop
  factors are symbolic, so a plan compiles each template structure once for all its buckets (`_compile_key`).
  Exact: int64 with a magnitude check (float64 products only where provably exact), else Python ints.
* Groups are independent (docs/model.md §5–6: costs add over groups), so each segment plan is enumerated alone
  and the best partition is a shortest path over the cascade.
* FFM pruning (prune=True): per bucket of a fused plan (shared loops + kept levels at and above F), each
  member's partial mappings are reduced to the Pareto front of (energy, cycles per unit, words per bandwidth-
  limited level) — what the group's objective adds up — then joined member by member, re-pruning after each
  join; loop orders are taken one per order class. prune=False is plain brute force: every permutation, every
  combination of members.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from math import prod
from typing import Callable, Optional

import numpy as np

from mapsolve.model import evaluate
from mapsolve.model.nest import Group, NestLoop
from mapsolve.model.spec import (EinsumMapping, FusedGroup, Instance, LevelMapping, Loop, Mapping, SharedLoop,
                                 SpatialLoop)
from mapsolve.model.units import fj

from .enum_poly import Poly, PolyMatrix, steps_poly, symbolic_nest, tensor_quantities
from .enum_space import (Bucket, PlanInfo, UnitSpace, buckets, filled_before, keep_options,
                         level_orders, plan_info, plans, row_values, supports, tiling_columns, tiling_rows,
                         unit_space)

OBJECTIVES = ("energy", "latency", "energy,latency", "latency,energy")
CHUNK = 20000
JOIN_CHUNK = 200000


class EnumerationError(Exception):
    """The enumerator cannot answer (refused objective, or an internal inconsistency: a bug)."""


class MapspaceTooLarge(EnumerationError):
    """The mapspace is beyond the limit; the message gives the estimate."""

    def __init__(self, estimate: int, limit: int):
        self.estimate, self.limit = estimate, limit
        super().__init__(f"mapspace too large to enumerate: more than {estimate:,} candidates (limit "
                         f"{limit:,}); use a smaller instance or raise --max-candidates")


@dataclass
class EnumResult:
    objective: list[int]
    objective_name: str
    energy_fj: int
    latency_cycles: int
    mapping: Mapping
    pruned: bool
    candidates: int = 0          # complete mappings represented (before pruning)
    evaluated: int = 0           # per-Einsum partial mappings evaluated (valid ones)
    kept: int = 0                # partial mappings kept after Pareto pruning and joins
    estimate: int = 0
    seconds: float = 0.0
    plans: int = 0


def components(objective: str) -> list[str]:
    if objective == "edp":
        raise EnumerationError("objective edp is refused: energy x latency is not additive over fused groups")
    if objective not in OBJECTIVES:
        raise EnumerationError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    return objective.split(",")


# ------------------------------------------------------------------------------------------------------------
# Templates of one member in one bucket
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Template:
    einsum: object
    us: UnitSpace
    support: tuple
    orders: dict
    variables: list
    per_rank: list
    options: dict        # tensor -> list of kept-position tuples
    bucket: Bucket


def _orders_for(us: UnitSpace, e, support, prune: bool):
    tensors = [t.ranks for t in (e.output, *e.inputs)]
    at = {pos: [r for r, poss in support if pos in poss] for pos in range(us.first_own, len(us.path))}
    lists = [level_orders(at[pos], tensors, pos == len(us.path) - 1, prune) for pos in at]
    for combo in itertools.product(*lists):
        yield dict(zip(at, combo))


def _keep_opts(inst, info: PlanInfo, bucket: Bucket, e, us: UnitSpace) -> dict[str, list[tuple[int, ...]]]:
    gk = dict(bucket.gkeep)
    fpos = info.plan.fpos
    own = list(range(0 if fpos is None else fpos + 1, len(us.path)))  # F and above: the bucket's
    out = {}
    for t in [x.tensor for x in (e.output, *e.inputs)]:
        backing = fpos if t in info.intermediates else 0
        part = gk.get(t, ())
        out[t] = [tuple(part) + o for o in keep_options(inst, t, us.path, own, backing)]
    return out


def _compile_key(info: PlanInfo, tpl: Template, mi: int) -> tuple:
    """Everything a compilation depends on. Not the shared factors (symbolic) nor the remaining bounds (they only
    change the tilings); of the copies already filled by earlier members only this member's tensors count."""
    mine = set(tpl.options)
    filled = frozenset(x for x in filled_before(info, tpl.bucket, mi, tpl.us.path) if x[0] in mine)
    return (mi, tpl.us.unit.name, tpl.support, tuple(sorted(tpl.orders.items())),
            tuple((t, tuple(o)) for t, o in tpl.options.items()), filled,
            tuple((p, r) for p, r, _ in tpl.bucket.shared))


class Compiled:
    """Symbolic quantities of one template: per keep combo (one option per tensor), the tiles at each capacity-
    limited own level, the energy and the words at each of the layout's levels, summed over tensors; then the
    steps. All held in one `PolyMatrix`, outputs quantity-major then combo (see `_vectors`).

    Variables: the template's tiling variables, then one per shared loop of the bucket (outermost first), so
    buckets that differ only in shared factors share the compilation; `shared_columns` supplies their values."""

    def __init__(self, inst, info: PlanInfo, tpl: Template, mi: int, obj: bool, layout: "Layout"):
        arch, wl = inst.architecture, inst.workload
        e, us = tpl.einsum, tpl.us
        index = {v: i for i, v in enumerate(tpl.variables)}
        nvars = len(tpl.variables) + len(tpl.bucket.shared)
        fpos = info.plan.fpos
        loops = []
        bounds = {r: Poly.lift(1) for r in us.rem}
        for pos in range(len(us.path)):
            if fpos is not None and pos < fpos:
                for j, (p, r, _) in enumerate(tpl.bucket.shared):
                    if p == pos:
                        v = Poly.var(len(tpl.variables) + j)
                        loops.append(NestLoop(r, v, pos, False, shared=True))
                        bounds[r] = bounds[r] * v
                continue
            below = arch.levels[us.path[pos + 1]].mesh if pos + 1 < len(us.path) else us.unit.mesh
            for r in tpl.orders.get(pos, ()):
                v = Poly.var(index[("t", pos, r)])
                loops.append(NestLoop(r, v, pos, False))
                bounds[r] = bounds[r] * v
            for p, a, r in us.spatial:
                if p == pos:
                    v = Poly.var(index[("s", pos, r, a)])
                    loops.append(NestLoop(r, v, pos, True, mesh=below))
                    bounds[r] = bounds[r] * v
        group = (Group(info.plan.names, info.plan.fusion, info.intermediates) if fpos is not None
                 else Group((e.name,), None, frozenset()))
        own_cap = [pos for pos in range(us.first_own if fpos is None else fpos + 1, len(us.path))
                   if arch.levels[us.path[pos]].capacity(wl.word_bits) is not None]
        self.caps = {pos: arch.levels[us.path[pos]].capacity(wl.word_bits) for pos in own_cap}
        filled0 = filled_before(info, tpl.bucket, mi, us.path)
        polys: list[Poly] = []

        def col(p: Poly) -> int:
            polys.append(p)
            return len(polys) - 1

        energy: dict[str, list[int]] = {t: [] for t in tpl.options}
        words: dict[str, list[dict[int, int]]] = {t: [] for t in tpl.options}
        cap: dict[str, list[dict[int, int]]] = {t: [] for t in tpl.options}
        n_max = max(len(o) for o in tpl.options.values())
        nest = None
        memo: dict = {}
        for i in range(n_max):
            keep = {t: list(o[min(i, len(o) - 1)]) for t, o in tpl.options.items()}
            nest = symbolic_nest(e, us.unit.name, us.path, group, loops, keep, bounds, memo)
            q = tensor_quantities(inst, nest, set(filled0), own_cap)
            for t, o in tpl.options.items():
                if i < len(o):
                    energy[t].append(col(q[t]["energy"]))
                    words[t].append({lv: col(p) for lv, p in q[t]["words"].items()})
                    cap[t].append({pos: col(p) for pos, p in q[t]["cap"].items()})
        steps = col(steps_poly(nest))
        # outputs: per quantity (capacity positions, energy, words per layout level) and keep combo, the sum over
        # tensors of that tensor's option's polynomial; then the steps
        tensors = list(tpl.options)
        self.combos = list(itertools.product(*[range(len(tpl.options[t])) for t in tensors]))
        quantities = ([lambda t, k, pos=pos: cap[t][k].get(pos) for pos in self.caps]
                      + [lambda t, k: energy[t][k]]
                      + [lambda t, k, lv=lv: words[t][k].get(lv) for lv in layout.levels])
        nc = len(self.combos)
        combos = np.array(self.combos, dtype=np.int64).reshape(nc, len(tensors))
        G = np.zeros((len(polys) + 1, len(quantities) * nc + 1), dtype=np.int64)   # last row: "nothing"
        for qi, sel in enumerate(quantities):
            for ti, t in enumerate(tensors):
                picks = (sel(t, k) for k in range(len(tpl.options[t])))
                opt = np.array([len(polys) if c is None else c for c in picks])
                np.add.at(G, (opt[combos[:, ti]], qi * nc + np.arange(nc)), 1)
        G = G[:-1]
        G[steps, -1] = 1
        self.pm = PolyMatrix(polys, nvars, obj, G)
        cost = us.unit.ops[e.op]
        self.op_energy = prod(wl.ranks[r] for r in us.rem) * fj(cost.energy_pj)
        self.per_cycle = cost.per_cycle


def shared_columns(X: np.ndarray, bucket: Bucket, obj: bool) -> np.ndarray:
    """X with the bucket's shared factors appended as constant columns (the variables after the tiling's)."""
    if obj:
        X = X.astype(object)
    if not bucket.shared:
        return X
    S = np.array([[f for _, _, f in bucket.shared]], dtype=X.dtype)
    return np.concatenate([X, np.repeat(S, len(X), axis=0)], axis=1)


@dataclass
class Layout:
    """Columns of a member's candidate vector: what its group's objective adds up."""

    energy: bool
    units: list[str]
    levels: list[int]         # architecture indices of bandwidth-limited levels

    @property
    def width(self) -> int:
        return int(self.energy) + len(self.units) + len(self.levels)


def _vectors(comp: Compiled, tpl: Template, vals: np.ndarray, ok: np.ndarray, layout: Layout, obj: bool):
    """Per valid (row, keep combo), combo-major: the candidate vector. Returns (vectors, rows, combo indices).

    `vals` is `comp.pm` on the rows: per quantity a rows x combos block, then the steps."""
    n, nc = len(vals), len(comp.combos)
    dt = object if obj else np.int64
    blocks = vals[:, :-1].reshape(n, -1, nc)
    valid = np.repeat(ok[:, None], nc, axis=1)
    for i, cap in enumerate(comp.caps.values()):
        valid &= blocks[:, i, :] <= cap
    k = len(comp.caps)
    cols = []
    if layout.energy:
        cols.append(blocks[:, k, :] + comp.op_energy)
    if layout.units:
        steps = vals[:, -1]
        pc = comp.per_cycle
        cycles = np.repeat((-((-steps * pc.denominator) // pc.numerator))[:, None], nc, axis=1)
        for u in layout.units:
            cols.append(cycles if u == tpl.us.unit.name else np.zeros((n, nc), dtype=dt))
    for j in range(len(layout.levels)):
        cols.append(blocks[:, k + 1 + j, :])
    ci, rows = np.nonzero(valid.T)
    V = (np.stack([c.T[ci, rows] for c in cols], axis=1) if cols
         else np.zeros((len(rows), 0), dtype=dt))
    return V, rows, ci


# ------------------------------------------------------------------------------------------------------------
# Objective, Pareto fronts, joins
# ------------------------------------------------------------------------------------------------------------
def objective_columns(V: np.ndarray, layout: Layout, comps: list[str], inst) -> list[np.ndarray]:
    out = []
    for c in comps:
        if c == "energy":
            out.append(V[:, 0])
        else:
            k = int(layout.energy)
            parts = [V[:, k + i] for i in range(len(layout.units))]
            for i, lv in enumerate(layout.levels):
                bw = inst.architecture.levels[lv].bandwidth
                w = V[:, k + len(layout.units) + i]
                parts.append(-((-w * bw.denominator) // bw.numerator))
            lat = parts[0]
            for p in parts[1:]:
                lat = np.maximum(lat, p)
            out.append(lat)
    return out


def lex_argmin(cols: list[np.ndarray]) -> int:
    mask = np.ones(len(cols[0]), dtype=bool)
    for c in cols:
        m = c[mask].min()
        mask &= c == m
    return int(np.nonzero(mask)[0][0])


def pareto(V: np.ndarray, meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of V not dominated (<= in every column) by another row; one row per distinct vector."""
    if len(V) == 0:
        return V, meta
    if V.shape[1] == 1:
        i = int(np.argmin(V[:, 0]))
        return V[i:i + 1], meta[i:i + 1]
    order = np.lexsort(V.T[::-1].astype(np.int64) if V.dtype != object else np.array(V.T[::-1].tolist(), dtype=object))
    V, meta = V[order], meta[order]
    keep_v, keep_m = [], []
    alive = np.ones(len(V), dtype=bool)
    while alive.any():
        i = int(np.argmax(alive))       # lexicographically smallest alive: on the front
        keep_v.append(V[i])
        keep_m.append(meta[i])
        alive &= ~np.all(V >= V[i], axis=1)
    return np.stack(keep_v), np.stack(keep_m)


def join(A: tuple, B: tuple, prune: bool) -> tuple:
    (Va, Ma), (Vb, Mb) = A, B
    ia = np.repeat(np.arange(len(Va)), len(Vb))
    ib = np.tile(np.arange(len(Vb)), len(Va))
    V, M = Va[ia] + Vb[ib], np.concatenate([Ma[ia], Mb[ib]], axis=1)
    return pareto(V, M) if prune else (V, M)


# ------------------------------------------------------------------------------------------------------------
# The driver
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Stats:
    candidates: int = 0
    evaluated: int = 0
    kept: int = 0
    done: int = 0


def _member_templates(inst, info, bucket, e, prune):
    for ui, unit in enumerate(info.units[e.name]):
        us = unit_space(inst, e, unit, info, bucket)
        opts = _keep_opts(inst, info, bucket, e, us)
        for sup in supports(us):
            variables, per_rank = tiling_columns(us, sup)
            if any(len(p) == 0 for p in per_rank):
                continue
            for orders in _orders_for(us, e, sup, prune):
                yield Template(e, us, sup, orders, variables, per_rank, opts, bucket)


def _template_work(tpl: Template) -> int:
    return prod(len(p) for p in tpl.per_rank) * prod(len(o) for o in tpl.options.values())


def estimate(inst: Instance, prune: bool = True, limit: Optional[int] = None) -> int:
    """Upper bound of the work: partial mappings evaluated (and, brute force, complete combinations joined)."""
    total = 0
    for plan in plans(inst):
        info = plan_info(inst, plan)
        if any(not info.units[e.name] for e in info.members):
            continue
        for bucket in buckets(inst, info, prune):
            per = []
            for e in info.members:
                w = sum(_template_work(t) for t in _member_templates(inst, info, bucket, e, prune))
                per.append(w)
                total += w
                if limit is not None and total > limit:
                    return total
            if not prune and len(per) > 1:
                total += prod(per)
            if limit is not None and total > limit:
                return total
    return total


def _exact_object(inst) -> bool:
    wl, arch = inst.workload, inst.architecture
    ops = max(prod(wl.ranks[r] for r in set().union(*(set(t.ranks) for t in (e.output, *e.inputs))))
              for e in wl.einsums)
    e_max = max(max(fj(lv.read_pj), fj(lv.write_pj)) for lv in arch.levels)
    e_max = max(e_max, max(fj(c.energy_pj) for u in arch.compute_units for c in u.ops.values()), 1)
    return ops ** 3 * e_max * 1000 >= 2 ** 62


def _member(inst, info, bucket, mi, layout, comps, prune, stats, tick, obj, single, cache):
    """Candidates of one member in one bucket: best (single-member plan), Pareto front, or all of them.

    `cache` holds the plan's compilations by `_compile_key`: buckets differ mostly in shared factors."""
    e = info.members[mi]
    registry: list[Template] = []
    best = None
    Vs, Ms = [], []
    last: tuple = (None, None)
    for tpl in _member_templates(inst, info, bucket, e, prune):
        key = _compile_key(info, tpl, mi)
        comp = cache.get(key)
        if comp is None:
            comp = cache[key] = Compiled(inst, info, tpl, mi, obj, layout)
        tid = len(registry)
        registry.append(tpl)
        if tpl.per_rank is not last[0]:    # templates of one support (all its orders) share their tilings
            rows = tiling_rows(tpl.us, tpl.variables, tpl.per_rank, CHUNK)
            last = (tpl.per_rank, [(lo, shared_columns(X, bucket, obj), ok) for lo, X, ok in rows]
                    if prod(len(p) for p in tpl.per_rank) <= CHUNK else None)
        chunks = last[1] if last[1] is not None else (
            (lo, shared_columns(X, bucket, obj), ok) for lo, X, ok in
            tiling_rows(tpl.us, tpl.variables, tpl.per_rank, CHUNK))
        for lo, X, ok in chunks:
            vals = comp.pm.values(X)
            V, r, c = _vectors(comp, tpl, vals, ok, layout, obj)
            tick(len(X) * prod(len(o) for o in tpl.options.values()))
            if len(V):
                stats.evaluated += len(V)
                meta = np.stack([np.full(len(r), tid), r + lo, c], axis=1)
                if single:
                    cols = objective_columns(V, layout, comps, inst)
                    i = lex_argmin(cols)
                    val = tuple(int(x[i]) for x in cols)
                    if best is None or val < best[0]:
                        best = (val, V[i], meta[i])
                    continue
                if prune:
                    V, meta = pareto(V, meta)
                Vs.append(V)
                Ms.append(meta)
                if prune and sum(len(v) for v in Vs) > 4096:
                    V2, M2 = pareto(np.concatenate(Vs), np.concatenate(Ms))
                    Vs, Ms = [V2], [M2]
    if single:
        return registry, best
    if not Vs:
        return registry, None
    V, M = np.concatenate(Vs), np.concatenate(Ms)
    if prune:
        V, M = pareto(V, M)
    return registry, (V, M)


def _plan_best(inst, info: PlanInfo, comps, prune, stats, tick, obj, limit):
    """Best (objective tuple, payload) of one plan over all its buckets."""
    arch = inst.architecture
    units = sorted({u.name for us in info.units.values() for u in us})
    levels = sorted({li for us in info.units.values() for u in us for li in arch.path(u.name)
                     if arch.levels[li].bandwidth is not None})
    lat = "latency" in comps
    layout = Layout("energy" in comps, units if lat else [], levels if lat else [])
    single = len(info.members) == 1
    best = None
    cache: dict = {}
    for bucket in buckets(inst, info, prune):
        before = stats.evaluated
        regs, cands = [], []
        for mi in range(len(info.members)):
            reg, c = _member(inst, info, bucket, mi, layout, comps, prune, stats, tick, obj, single, cache)
            if c is None:
                break
            regs.append(reg)
            cands.append(c)
        if len(cands) < len(info.members):
            continue
        if single:
            val, _, meta = cands[0]
            stats.candidates += stats.evaluated - before
            stats.kept += 1
            if best is None or val < best[0]:
                best = (val, bucket, regs, [meta])
            continue
        sizes = [len(c[0]) for c in cands]
        stats.candidates += prod(sizes)
        if prune:
            acc = cands[0]
            stats.kept += sum(sizes)
            for c in cands[1:]:
                acc = join(acc, c, True)
                stats.kept += len(acc[0])
            cols = objective_columns(acc[0], layout, comps, inst)
            i = lex_argmin(cols)
            val, meta = tuple(int(x[i]) for x in cols), acc[1][i]
        else:
            if limit is not None and prod(sizes) > limit:
                raise MapspaceTooLarge(prod(sizes), limit)
            val, meta = None, None
            total = prod(sizes)
            for lo in range(0, total, JOIN_CHUNK):
                idx = np.unravel_index(np.arange(lo, min(total, lo + JOIN_CHUNK)), sizes)
                V = sum(c[0][i] for c, i in zip(cands, idx))
                cols = objective_columns(V, layout, comps, inst)
                k = lex_argmin(cols)
                v = tuple(int(x[k]) for x in cols)
                if val is None or v < val:
                    val, meta = v, np.concatenate([c[1][i[k]] for c, i in zip(cands, idx)])
                tick(len(V))
        if best is None or val < best[0]:
            best = (val, bucket, regs, [meta[3 * i:3 * i + 3] for i in range(len(info.members))])
    return best


def _decode(inst, info: PlanInfo, bucket: Bucket, regs, metas) -> tuple[list[EinsumMapping], Optional[FusedGroup]]:
    arch = inst.architecture
    names = arch.levels
    maps = []
    for reg, meta in zip(regs, metas):
        tid, row, ci = (int(x) for x in meta)
        tpl = reg[tid]
        vals = dict(zip(tpl.variables, row_values(tpl.per_rank, row)))
        combo = list(itertools.product(*[range(len(o)) for o in tpl.options.values()]))[ci]
        keep = {t: tpl.options[t][k] for t, k in zip(tpl.options, combo)}
        levels = []
        fpos = info.plan.fpos
        for pos, li in enumerate(tpl.us.path):
            kept = [t for t in keep if pos in keep[t]]
            if fpos is not None and pos < fpos:
                levels.append(LevelMapping(level=names[li].name, keep=kept))
                continue
            temporal = [Loop(rank=r, factor=vals[("t", pos, r)]) for r in tpl.orders.get(pos, ())]
            spatial = [SpatialLoop(rank=r, factor=vals[("s", pos, r, a)], axis=a) for p, a, r in tpl.us.spatial
                       if p == pos and vals[("s", pos, r, a)] > 1]
            levels.append(LevelMapping(level=names[li].name, keep=kept, temporal=temporal, spatial=spatial))
        maps.append(EinsumMapping(einsum=tpl.einsum.name, compute_unit=tpl.us.unit.name, levels=levels))
    group = None
    if info.plan.fusion is not None:
        group = FusedGroup(einsums=list(info.plan.names), fusion_level=names[info.plan.fusion].name,
                           shared_loops=[SharedLoop(level=names[info.plan.top[p]].name, rank=r, factor=f)
                                         for p, r, f in bucket.shared])
    return maps, group


def enumerate_optimum(inst: Instance, objective: Optional[str] = None, prune: bool = True,
                      max_candidates: Optional[int] = 50_000_000,
                      progress: Optional[Callable[[int, int], None]] = None) -> EnumResult:
    """The optimum over the solver's mapspace by exhaustive enumeration (see the module docstring).

    Raises MapspaceTooLarge when the estimated work exceeds `max_candidates` (None: no limit)."""
    objective = objective or inst.solver.objective
    comps = components(objective)
    t0 = time.perf_counter()
    est = estimate(inst, prune, max_candidates)
    if max_candidates is not None and est > max_candidates:
        raise MapspaceTooLarge(est, max_candidates)
    stats = _Stats()

    def tick(n: int) -> None:
        stats.done += n
        if progress:
            progress(min(stats.done, est), est)

    obj = _exact_object(inst)
    names = [e.name for e in inst.workload.einsums]
    index = {n: i for i, n in enumerate(names)}
    per_plan = []
    for plan in plans(inst):
        info = plan_info(inst, plan)
        if any(not info.units[e.name] for e in info.members):
            continue
        b = _plan_best(inst, info, comps, prune, stats, tick, obj, max_candidates)
        if b is not None:
            per_plan.append((info, b))
    # shortest path over the cascade: groups are independent and their costs add up
    best: list = [None] * (len(names) + 1)
    best[0] = (tuple(0 for _ in comps), None, None)
    for j in range(1, len(names) + 1):
        for info, b in per_plan:
            i = index[info.plan.names[0]]
            if index[info.plan.names[-1]] + 1 != j or best[i] is None:
                continue
            total = tuple(x + y for x, y in zip(best[i][0], b[0]))
            if best[j] is None or total < best[j][0]:
                best[j] = (total, i, (info, b))
    if best[-1] is None:
        raise EnumerationError("infeasible: no mapping of the instance fits its capacities")
    chosen = []
    j = len(names)
    while j > 0:
        chosen.append(best[j][2])
        j = best[j][1]
    einsum_maps, groups = [], []
    for info, (val, bucket, regs, metas) in reversed(chosen):
        maps, group = _decode(inst, info, bucket, regs, metas)
        einsum_maps.extend(maps)
        if group is not None:
            groups.append(group)
    mapping = Mapping(einsums=einsum_maps, groups=groups)
    res = evaluate(inst, mapping)
    got = tuple(res.energy_fj if c == "energy" else res.latency_cycles for c in comps)
    if got != best[-1][0]:
        raise EnumerationError(f"internal inconsistency: enumerator found {best[-1][0]}, the evaluator says {got} "
                               f"for its mapping")
    return EnumResult(list(got), objective, res.energy_fj, res.latency_cycles, mapping, prune,
                      candidates=stats.candidates if prune else stats.candidates, evaluated=stats.evaluated,
                      kept=stats.kept if prune else stats.candidates, estimate=est,
                      seconds=time.perf_counter() - t0, plans=len(per_plan))
