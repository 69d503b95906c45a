"""Exhaustive reference enumerator over the solver's mapspace, for small instances (issue 4).

* MMEE matrix encoding (solver/enum_template.py): per template (unit, support, loop orders, shared loops) the
  cost polynomials come from the model's own code run on symbolic factors; all tilings of the template are then
  evaluated at once as monomial features x coefficients, every keep combo a column, capacity as a mask.
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

import dataclasses

import itertools
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from math import prod
from typing import Callable, Optional

import numpy as np

from mapsolve.model import evaluate
from mapsolve.model.variants import alternatives
from mapsolve.model.spec import (EinsumMapping, FusedGroup, Instance, LevelMapping, Loop, Mapping, SharedLoop,
                                 SpatialLoop)
from mapsolve.model.units import fj

from .enum_space import Bucket, PlanInfo, buckets, plan_info, plans, row_values
from .enum_template import (Compiled, Layout, Template, compile_key, member_templates, template_work,
                            tiling_chunks, vectors)

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

    def __reduce__(self):   # raised in a worker process, re-raised here
        return MapspaceTooLarge, (self.estimate, self.limit)


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
    variant: Optional[str] = None   # an instance with variants: the winning cascade


def components(objective: str) -> list[str]:
    if objective == "edp":
        raise EnumerationError("objective edp is refused: energy x latency is not additive over fused groups")
    if objective not in OBJECTIVES:
        raise EnumerationError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    return objective.split(",")


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
            for i, (lv, port) in enumerate(layout.levels):
                level = inst.architecture.levels[lv]
                bw = dict(level.ports)[port]
                w = V[:, k + len(layout.units) + i]            # bits per instance
                parts.append(-((-w * bw.denominator) // (bw.numerator * level.word(inst.workload.word_bits))))
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


def estimate(inst: Instance, prune: bool = True, limit: Optional[int] = None) -> int:
    """Upper bound of the work: partial mappings evaluated (and, brute force, complete combinations joined); over
    every variant."""
    if inst.workload.variants:
        return sum(estimate(alt, prune, limit) for _, alt in alternatives(inst))
    total = 0
    for plan in plans(inst):
        info = plan_info(inst, plan)
        if any(not info.units[e.name] for e in info.members):
            continue
        for bucket in buckets(inst, info, prune):
            per = []
            for e in info.members:
                w = sum(template_work(t) for t in member_templates(inst, info, bucket, e, prune))
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
    widest = max([wl.word_bits] + [max(wl.bits(t), wl.accumulator_bits(t)) for e in wl.einsums for t in e.tensors])
    e_max = max(max(fj(lv.read_pj), fj(lv.write_pj)) * -(-widest // lv.word(wl.word_bits)) * widest
                for lv in arch.levels)   # per element; widest also covers bits per word moved
    e_max = max(e_max, max(fj(c.energy_pj) for u in arch.compute_units for c in u.ops.values()), 1)
    return ops ** 3 * e_max * 1000 >= 2 ** 62


def _member(inst, info, bucket, mi, layout, comps, prune, stats, tick, obj, single, cache):
    """Candidates of one member in one bucket: best (single-member plan), Pareto front, or all of them.

    `cache` holds the plan's compilations by `compile_key`: buckets differ mostly in shared factors."""
    e = info.members[mi]
    registry: list[Template] = []
    best = None
    Vs, Ms = [], []
    last_rank, kept = None, None
    for tpl in member_templates(inst, info, bucket, e, prune):
        key = compile_key(info, tpl, mi)
        comp = cache.get(key)
        if comp is None:
            comp = cache[key] = Compiled(inst, info, tpl, mi, obj, layout)
        tid = len(registry)
        registry.append(tpl)
        if tpl.per_rank is not last_rank:  # templates of one support (all its orders) share their tilings:
            last_rank = tpl.per_rank        # kept when they fit one chunk, else generated again per template
            kept = list(tiling_chunks(tpl, obj, CHUNK)) if prod(map(len, tpl.per_rank)) <= CHUNK else None
        for lo, X, ok in (kept if kept is not None else tiling_chunks(tpl, obj, CHUNK)):
            vals = comp.pm.values(X)
            V, r, c = vectors(comp, tpl, X, vals, ok, layout, obj)
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
    levels = sorted({(li, port) for us in info.units.values() for u in us for li in arch.path(u.name)
                     for port, _ in arch.levels[li].ports})
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
                           shared_loops=[_shared_loop(info, names[info.plan.top[p]].name, k, f, run)
                                         for p, k, f, run in bucket.shared])
    return maps, group


def _shared_loop(info: PlanInfo, level: str, key: str, factor: int, run: frozenset) -> SharedLoop:
    d = info.dim(key, run)
    everyone = frozenset(info.plan.names)
    return SharedLoop(level=level, rank=d.first, factor=factor, renames={m: r for m, r in d.ranks if r != d.first},
                      einsums=None if run == everyone else [m for m in info.plan.names if m in run])


def _one_plan(inst, plan, comps, prune, obj, limit, stats, tick):
    """(_Picked plan, (value, (einsum mappings, group))) of one segment plan, or None (no unit, nothing fits)."""
    info = plan_info(inst, plan)
    if any(not info.units[e.name] for e in info.members):
        return None
    b = _plan_best(inst, info, comps, prune, stats, tick, obj, limit)
    if b is None:
        return None
    val, bucket, regs, metas = b
    return _Picked(plan), (val, _decode(inst, info, bucket, regs, metas))


@dataclass(frozen=True)
class _Picked:
    """A plan as the shortest path sees it (picklable, unlike PlanInfo): `.plan.names`."""
    plan: object


#: Below this estimated work the enumerator stays in one process: starting workers costs about a second.
PARALLEL_MIN_WORK = 2_000_000


def _workers(workers: Optional[int], n_plans: int, est: int) -> int:
    """Processes for the plans: `workers`, else the CPUs this process may use, when the work is worth it."""
    if n_plans < 2 or (workers is None and est < PARALLEL_MIN_WORK) or threading.active_count() > 1 \
            or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:   # pragma: no cover - not Linux
            workers = os.cpu_count() or 1
    return max(1, min(workers, n_plans))


def _plan_task(args):
    inst, plan, comps, prune, obj, limit = args
    stats = _Stats()
    return _one_plan(inst, plan, comps, prune, obj, limit, stats, lambda n: None), stats


def _plans_in_parallel(inst, todo, comps, prune, obj, limit, stats, tick, n_workers):
    """Plans are independent (costs add over groups): each is enumerated in a worker process, results collected
    in plan order, so the shortest path (and every tie) is the same as in one process. Workers are forked (no
    start-up, no re-import of the caller's main module); `_workers` falls back to one process when other threads
    run, which a fork could catch holding a lock."""
    out = [None] * len(todo)
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(_plan_task, (inst, plan, comps, prune, obj, limit)): k for k, plan in enumerate(todo)}
        for f in as_completed(futures):
            result, st = f.result()
            out[futures[f]] = result
            for k in ("candidates", "evaluated", "kept"):
                setattr(stats, k, getattr(stats, k) + getattr(st, k))
            tick(st.done)
    return [r for r in out if r is not None]


def enumerate_optimum(inst: Instance, objective: Optional[str] = None, prune: bool = True,
                      max_candidates: Optional[int] = 50_000_000,
                      progress: Optional[Callable[[int, int], None]] = None,
                      workers: Optional[int] = None) -> EnumResult:
    """The optimum over the solver's mapspace by exhaustive enumeration (see the module docstring); over every
    variant when the workload offers some (the least of their optima, solver/variants.py).

    `workers`: processes enumerating segment plans side by side (default: the CPUs available, when the
    estimated work is at least PARALLEL_MIN_WORK); the answer does not depend on it.

    Raises MapspaceTooLarge when the estimated work exceeds `max_candidates` (None: no limit)."""
    objective = objective or inst.solver.objective
    if inst.workload.variants:
        est = estimate(inst, prune, max_candidates)
        if max_candidates is not None and est > max_candidates:
            raise MapspaceTooLarge(est, max_candidates)
        best = None
        for name, alt in alternatives(inst):
            try:
                r = enumerate_optimum(alt, objective, prune, None, progress, workers)
            except EnumerationError as exc:
                if "infeasible" in str(exc):
                    continue
                raise
            r = dataclasses.replace(r, mapping=r.mapping.model_copy(update={"variant": name}), variant=name)
            if best is None or tuple(r.objective) < tuple(best.objective):
                best = dataclasses.replace(r, estimate=est, candidates=r.candidates + (best.candidates if best else 0))
            else:
                best = dataclasses.replace(best, candidates=best.candidates + r.candidates)
        if best is None:
            raise EnumerationError("infeasible: no mapping of any variant fits its capacities")
        return best
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
    todo = list(plans(inst))
    n_workers = _workers(workers, len(todo), est)
    if n_workers > 1:
        per_plan = _plans_in_parallel(inst, todo, comps, prune, obj, max_candidates, stats, tick, n_workers)
    else:
        per_plan = [r for r in (_one_plan(inst, plan, comps, prune, obj, max_candidates, stats, tick)
                                for plan in todo) if r is not None]
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
    for _, (_, (maps, group)) in reversed(chosen):
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
