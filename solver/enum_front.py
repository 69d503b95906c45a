"""The reference enumerator's energy–latency front, to check solver/pareto.py point for point (`verify --pareto`).

Per segment plan every candidate (or, pruned, every candidate on the Pareto front of the vectors the group's
objective adds up: energy, cycles per unit, words per bandwidth-limited level) is priced in energy and latency;
latency is monotone in those vectors, so no point of the 2-D front is lost by the pruning. The cascade's front is
the min-plus combination over the chain, as in the solver.
"""
from __future__ import annotations

from math import prod
from typing import Optional

import numpy as np

from mapsolve.model import evaluate
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.variants import alternatives

from .enum_space import buckets, plan_info, plans
from .enum_template import Layout
from .enumerate import (JOIN_CHUNK, EnumerationError, MapspaceTooLarge, _decode, _member, _Stats, _exact_object,
                        estimate, join, objective_columns)
from .pareto import non_dominated

COMPS = ["energy", "latency"]


def _plan_front(inst: Instance, plan, prune: bool, obj, limit: Optional[int]) -> list:
    """(energy, latency, (einsum mappings, group)) on the front of one plan."""
    info = plan_info(inst, plan)
    if any(not info.units[e.name] for e in info.members):
        return []
    arch = inst.architecture
    units = sorted({u.name for us in info.units.values() for u in us})
    levels = sorted({(li, port) for us in info.units.values() for u in us for li in arch.path(u.name)
                     for port, _ in arch.levels[li].ports})
    layout = Layout(True, units, levels)
    stats = _Stats()
    out = []
    cache: dict = {}
    for bucket in buckets(inst, info, prune):
        regs, cands = [], []
        for mi in range(len(info.members)):
            reg, c = _member(inst, info, bucket, mi, layout, COMPS, prune, stats, lambda n: None, obj, False, cache)
            if c is None:
                break
            regs.append(reg)
            cands.append(c)
        if len(cands) < len(info.members):
            continue
        chunks = []
        if prune or len(cands) == 1:
            acc = cands[0]
            for c in cands[1:]:
                acc = join(acc, c, True)
            chunks.append(acc)
        else:
            sizes = [len(c[0]) for c in cands]
            if limit is not None and prod(sizes) > limit:
                raise MapspaceTooLarge(prod(sizes), limit)
            total = prod(sizes)
            for lo in range(0, total, JOIN_CHUNK):
                idx = np.unravel_index(np.arange(lo, min(total, lo + JOIN_CHUNK)), sizes)
                chunks.append((sum(c[0][i] for c, i in zip(cands, idx)),
                               np.concatenate([c[1][i] for c, i in zip(cands, idx)], axis=1)))
        for V, M in chunks:
            e, lat = objective_columns(V, layout, COMPS, inst)
            pts = non_dominated([(int(a), int(b), k) for k, (a, b) in enumerate(zip(e, lat))])
            for a, b, k in pts:
                meta = M[k]
                out.append((a, b, (bucket, regs, [meta[3 * m:3 * m + 3] for m in range(len(info.members))])))
        out = non_dominated(out)
    return [(a, b, _decode(inst, info, *payload)) for a, b, payload in out]


def enumerate_front(inst: Instance, prune: bool = True, max_candidates: Optional[int] = 50_000_000) -> list:
    """The exact energy–latency front: [(energy_fj, latency_cycles, Mapping)] by latency ascending, each mapping
    re-evaluated by the model (over every variant when the workload offers some)."""
    if inst.workload.variants:
        pts = []
        for name, alt in alternatives(inst):
            pts += [(e, l, m.model_copy(update={"variant": name})) for e, l, m in
                    enumerate_front(alt, prune, max_candidates)]
        return non_dominated(pts)
    est = estimate(inst, prune, max_candidates)
    if max_candidates is not None and est > max_candidates:
        raise MapspaceTooLarge(est, max_candidates)
    obj = _exact_object(inst)
    names = [e.name for e in inst.workload.einsums]
    index = {nm: i for i, nm in enumerate(names)}
    fronts = [(p, _plan_front(inst, p, prune, obj, max_candidates)) for p in plans(inst)]
    best: list = [None] * (len(names) + 1)
    best[0] = [(0, 0, None)]
    for j in range(1, len(names) + 1):
        cand = []
        for p, front in fronts:
            i = index[p.names[0]] if hasattr(p, "names") else index[p[0][0]]
            last = p.names[-1] if hasattr(p, "names") else p[0][-1]
            if index[last] + 1 != j or not best[i]:
                continue
            cand += [(a + e, b + l, (chain, m)) for a, b, chain in best[i] for e, l, m in front]
        best[j] = non_dominated(cand)
    if not best[-1]:
        raise EnumerationError("infeasible: no mapping of the instance fits its capacities")
    out = []
    for e, l, chain in best[-1]:
        pieces = []
        while chain is not None:
            chain, piece = chain
            pieces.append(piece)
        maps, groups = [], []
        for einsum_maps, group in reversed(pieces):
            maps.extend(einsum_maps)
            if group is not None:
                groups.append(group)
        mapping = Mapping(einsums=maps, groups=groups)
        ev = evaluate(inst, mapping)
        if (ev.energy_fj, ev.latency_cycles) != (e, l):
            raise EnumerationError(f"internal inconsistency: enumerator front point ({e}, {l}), the evaluator says "
                                   f"({ev.energy_fj}, {ev.latency_cycles})")
        out.append((e, l, mapping))
    return out
