"""The templates of one member of a segment plan in one bucket, and their costs as one matrix (MMEE encoding).

A template fixes everything but the tile factors (compute unit, which loops are present, their order, the
spatial slots, the bucket's shared loops, the kept levels). `Compiled` runs the model's own nest code on
symbolic factors (solver/enum_poly.py) and folds every keep combo and every quantity the objective adds up —
capacity tiles, energy, words per bandwidth-limited level, steps — into one `PolyMatrix`; `vectors` turns its
values on a chunk of tilings into candidate vectors with capacity as a mask. Shared-loop factors are symbolic,
so a plan compiles each template structure once for all its buckets (`compile_key`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import prod

import numpy as np

from mapsolve.model.nest import Group, NestLoop
from mapsolve.model.units import fj

from .enum_poly import Poly, PolyMatrix, steps_poly, symbolic_nest, tensor_quantities
from .enum_space import (Bucket, PlanInfo, UnitSpace, filled_before, keep_options, level_orders, supports,
                         tiling_columns, tiling_rows, unit_space)


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
    acc: list = None     # per option of the output: (accumulate map, columns that must be 1, columns one of
                         # which must be > 1) -- the output's read-back/accumulate modes (docs/model.md §4)


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


def compile_key(info: PlanInfo, tpl: Template, mi: int) -> tuple:
    """Everything a compilation depends on. Not the shared factors (symbolic) nor the remaining bounds (they only
    change the tilings); of the copies already filled by earlier members only this member's tensors count."""
    mine = set(tpl.options)
    filled = frozenset(x for x in filled_before(info, tpl.bucket, mi, tpl.us.path) if x[0] in mine)
    return (mi, tpl.us.unit.name, tpl.support, tuple(sorted(tpl.orders.items())),
            tuple((t, tuple(o)) for t, o in tpl.options.items()), filled,
            tuple((p, r, run) for p, r, _, run in tpl.bucket.shared))


class Compiled:
    """Symbolic quantities of one template: per keep combo (one option per tensor), the tiles at each capacity-
    limited own level, the energy and the words at each of the layout's levels, summed over tensors; then the
    steps. All held in one `PolyMatrix`, outputs quantity-major then combo (see `vectors`).

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
                for j, (p, k, _, run) in enumerate(tpl.bucket.shared):
                    if p == pos and e.name in run:         # the loops enclosing this member
                        r = info.dim(k, run).rank_of(e.name)    # the member's name for the shared dimension
                        v = Poly.var(len(tpl.variables) + j)
                        loops.append(NestLoop(r, v, pos, False, shared=True, span=run))
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
        group = (Group(info.plan.names, info.plan.fusion, info.intermediates, tuple(info.users.items()))
                 if fpos is not None
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
            nest = symbolic_nest(e, us.unit.name, us.path, group, loops, keep, bounds, memo, wl)
            nest.acc_override = tpl.acc[min(i, len(tpl.acc) - 1)][0]
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
        self.out_index = tensors.index(e.output.tensor)
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


def tiling_chunks(tpl: Template, obj: bool, chunk: int):
    """Per chunk of tilings: (first row, the tilings with the bucket's shared factors appended, which respect
    every mesh axis)."""
    for lo, X, ok in tiling_rows(tpl.us, tpl.variables, tpl.per_rank, chunk):
        yield lo, shared_columns(X, tpl.bucket, obj), ok


def shared_columns(X: np.ndarray, bucket: Bucket, obj: bool) -> np.ndarray:
    """X with the bucket's shared factors appended as constant columns (the variables after the tiling's)."""
    if obj:
        X = X.astype(object)
    if not bucket.shared:
        return X
    S = np.array([[f for _, _, f, _ in bucket.shared]], dtype=X.dtype)
    return np.concatenate([X, np.repeat(S, len(X), axis=0)], axis=1)


@dataclass
class Layout:
    """Columns of a member's candidate vector: what its group's objective adds up."""

    energy: bool
    units: list[str]
    levels: list[tuple[int, str]]   # bandwidth-limited (architecture level index, port)

    @property
    def width(self) -> int:
        return int(self.energy) + len(self.units) + len(self.levels)


def vectors(comp: Compiled, tpl: Template, X: np.ndarray, vals: np.ndarray, ok: np.ndarray, layout: Layout,
            obj: bool):
    """Per valid (row, keep combo), combo-major: the candidate vector. Returns (vectors, rows, combo indices).

    `vals` is `comp.pm` on the rows X: per quantity a rows x combos block, then the steps. A combo is valid on a
    row when the capacities hold and the row's spatial factors give its output option's accumulate pattern."""
    n, nc = len(vals), len(comp.combos)
    dt = object if obj else np.int64
    blocks = vals[:, :-1].reshape(n, -1, nc)
    out_opt = np.array([c[comp.out_index] for c in comp.combos], dtype=np.int64)
    valid = ok[:, None] & accumulate_mask(tpl, X)[:, out_opt]
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


def member_templates(inst, info, bucket, e, prune):
    for ui, unit in enumerate(info.units[e.name]):
        us = unit_space(inst, e, unit, info, bucket)
        opts = _keep_opts(inst, info, bucket, e, us)
        for sup in supports(us):
            variables, per_rank = tiling_columns(us, sup)
            if any(len(p) == 0 for p in per_rank):
                continue
            out_opts, acc = _accumulate_variants(e, variables, opts[e.output.tensor])
            topts = {**opts, e.output.tensor: out_opts}
            for orders in _orders_for(us, e, sup, prune):
                yield Template(e, us, sup, orders, variables, per_rank, topts, bucket, acc)


def _accumulate_variants(e, variables, options):
    """The output's keep options, each repeated once per accumulate pattern its tilings can have.

    Whether a kept level reads its partial sums back or has its parent accumulate depends on which spatial
    factors are > 1 (`Nest.accumulates`), which a template leaves open (spatial slots range over 1..mesh). Down
    the kept chain, the first pair (parent, child) with an irrelevant spatial factor > 1 between them makes that
    child and every level below it accumulate; so the patterns are "none" and "from pair j", each with a row
    condition on the tiling's spatial columns."""
    ranks = e.output.ranks
    out, acc = [], []
    for kept in options:
        pairs = list(zip(kept, kept[1:]))
        cols = [[i for i, v in enumerate(variables) if v[0] == "s" and p <= v[1] < k and v[2] not in ranks]
                for p, k in pairs]
        out.append(kept)
        acc.append(({k: False for _, k in pairs}, [c for cs in cols for c in cs], []))
        for j, cs in enumerate(cols):
            if cs:
                out.append(kept)
                acc.append(({k: i >= j for i, (_, k) in enumerate(pairs)}, [c for c2 in cols[:j] for c in c2], cs))
    return out, acc


def accumulate_mask(tpl: Template, X: np.ndarray) -> np.ndarray:
    """rows x output options: whether the row's spatial factors give that option's accumulate pattern."""
    cols = []
    for _, ones, some in tpl.acc:
        ok = np.ones(len(X), dtype=bool)
        if ones:
            ok &= (X[:, ones] == 1).all(axis=1)
        if some:
            ok &= (X[:, some] > 1).any(axis=1)
        cols.append(ok)
    return np.stack(cols, axis=1) if cols else np.ones((len(X), 0), dtype=bool)


def template_work(tpl: Template) -> int:
    return prod(len(p) for p in tpl.per_rank) * prod(len(o) for o in tpl.options.values())
