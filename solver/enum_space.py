"""The solver's mapspace, spelled out for enumeration (docs/model.md §2–3, solver/segment.py).

Per segment plan (one Einsum alone, or consecutive Einsums fused at a single-instance level F reached through the
same levels `top`): a *bucket* fixes what group members must agree on — the shared loops above F (present ranks,
factors, order) and the kept levels at and above F of every group tensor. Within a bucket each member chooses,
independently: a compute unit, which own temporal loops have factor > 1 (the *support*), their order per level,
the tile factors (temporal >= 2 on the support, spatial >= 1 within each mesh axis) and its keep bits below F.
Unit loops are transparent and left out; in pruned mode orders are taken one per *order class* (same set of loops
outside the innermost loop relevant to each tensor at every level but the innermost, which no level is below).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod

import numpy as np

from mapsolve.model.nest import group_copy_bits, group_intermediates
from mapsolve.model.online import lock_step, split_pair, temporal_only
from mapsolve.model.views import SharedDim, run_dims, shared_dims


def prime_count(n: int) -> int:
    c, p = 0, 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            n //= p
            c += 1
        p += 1
    return c + (1 if n > 1 else 0)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@lru_cache(maxsize=None)
def factorizations(n: int, k_min2: int, k_any: int) -> tuple[tuple[int, ...], ...]:
    """Ordered tuples of k_min2 factors >= 2 then k_any factors >= 1 whose product is n."""
    if k_min2 + k_any == 0:
        return ((),) if n == 1 else ()
    lo = 2 if k_min2 else 1
    out = []
    for d in divisors(n):
        if d < lo:
            continue
        rest = factorizations(n // d, k_min2 - 1 if k_min2 else 0, k_any if k_min2 else k_any - 1)
        out.extend((d, *r) for r in rest)
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    names: tuple[str, ...]
    fusion: int | None          # architecture level index of F
    top: tuple[int, ...]         # architecture levels above F

    @property
    def fpos(self) -> int | None:
        return len(self.top) if self.fusion is not None else None


def plans(inst) -> list[Plan]:
    """Lone Einsums, and every run of >= 2 consecutive Einsums at every admissible fusion level."""
    arch = inst.architecture
    names = [e.name for e in inst.workload.einsums]
    out = [Plan((n,), None, ()) for n in names if split_pair(inst.workload, (n,)) is None]
    for i in range(len(names)):
        for j in range(i + 2, len(names) + 1):
            if split_pair(inst.workload, names[i:j]) is not None:
                continue        # a recurrence and a running reader of it must be in one group
            for f in range(1, len(arch.levels)):
                tops = sorted({tuple(p[:p.index(f)]) for u in arch.compute_units
                               for p in [arch.path(u.name)] if f in p})
                for top in tops:
                    if all(arch.levels[x].mesh.size == 1 for x in (*top[1:], f)):
                        out.append(Plan(tuple(names[i:j]), f, top))
    return out


@dataclass
class PlanInfo:
    """Facts of one plan: members, intermediates, shared ranks, candidate units, group tensors."""

    plan: Plan
    members: list
    intermediates: frozenset
    shared_dims: list[SharedDim]           # what a loop enclosing the whole group may iterate (a rank per member)
    units: dict[str, list]                 # einsum -> candidate compute units
    group_tensors: dict[str, list[str]] = field(default_factory=dict)   # tensor -> ranks, as `tensor_user` names
    tensor_user: dict[str, str] = field(default_factory=dict)            # tensor -> a member that uses it
    runs: dict[frozenset, list[SharedDim]] = field(default_factory=dict)  # run of members -> its dimensions
    users: dict[str, frozenset] = field(default_factory=dict)            # tensor -> the members using it

    def dim(self, key: str, run: frozenset | None = None) -> SharedDim:
        dims = self.shared_dims if run is None else self.runs[run]
        return next(d for d in dims if d.key == key)

    def tensor_keys(self, t: str, run: frozenset | None = None) -> set[str]:
        """Keys of the dimensions (of loops enclosing `run`, default the group) that index tensor t, as a member of
        the run that uses t names them (every dimension if no member of the run uses t: none)."""
        dims = self.shared_dims if run is None else self.runs[run]
        m = self.tensor_user[t] if run is None else next((x for x in self.plan.names if x in run and
                                                          x in self.users[t]), None)
        if m is None:
            return set()
        ranks = next(e for e in self.members if e.name == m).tensors[t]   # as m names the tensor's dimensions
        return {d.key for d in dims if d.rank_of(m) in ranks}


def plan_info(inst, plan: Plan) -> PlanInfo:
    wl, arch = inst.workload, inst.architecture
    members = [e for e in wl.einsums if e.name in plan.names]
    inter: frozenset = frozenset()
    shared: list[SharedDim] = []
    if plan.fusion is not None:
        inter = group_intermediates(wl, plan.names)
        shared = shared_dims(members)
    units = {}
    for e in members:
        us = []
        for u in arch.compute_units:
            if e.op not in u.ops:
                continue
            p = arch.path(u.name)
            if plan.fusion is not None and (plan.fusion not in p or tuple(p[:p.index(plan.fusion)]) != plan.top):
                continue
            us.append(u)
        units[e.name] = us
    gt: dict[str, list[str]] = {}
    user: dict[str, str] = {}
    users: dict[str, frozenset] = {}
    for e in members:
        gt.update(e.tensors)
        user.update({t: e.name for t in e.tensors})
        for t in e.tensors:
            users[t] = users.get(t, frozenset()) | {e.name}
    runs: dict[frozenset, list[SharedDim]] = {}
    if plan.fusion is not None:
        n = len(members)
        for i in range(n):
            for j in range(i + 1, n + 1):
                if inst.solver.nesting == "tree" or (i, j) == (0, n):
                    dims = run_dims(members, i, j)
                    if dims:
                        runs[frozenset(e.name for e in members[i:j])] = dims
    return PlanInfo(plan, members, inter, shared, units, gt, user, runs, users)


def keep_options(inst, t: str, levels: list[int], positions: list[int], backing: int) -> list[tuple[int, ...]]:
    """Every admissible set of kept positions among `positions` (segment.py's `_keep_var` rules)."""
    arch = inst.architecture
    choices = []
    for pos in positions:
        lv = arch.levels[levels[pos]]
        if pos < backing:
            choices.append((False,))
        elif lv.may_keep is not None and t not in lv.may_keep:
            if pos == backing:
                return []          # a fused intermediate must live at F (the model rejects it otherwise)
            choices.append((False,))
        elif pos == backing:
            choices.append((True,))
        elif t in lv.must_keep:
            choices.append((True,))
        else:
            choices.append((False, True))
    return [tuple(p for p, k in zip(positions, bits) if k) for bits in itertools.product(*choices)]


def order_signature(loop_ranks: tuple[str, ...], tensors: list[list[str]]) -> tuple:
    """What an order of one level's loops (outermost first) changes in the model: per tensor, the set of loops
    at or outside its innermost relevant loop there (docs/model.md §3, reload multiplier)."""
    sig = []
    for ranks in tensors:
        cut = 0
        for i, r in enumerate(loop_ranks):
            if r in ranks:
                cut = i + 1
        sig.append(frozenset(loop_ranks[:cut]))
    return tuple(sig)


def level_orders(ranks: list[str], tensors: list[list[str]], innermost: bool, prune: bool) -> list[tuple[str, ...]]:
    """Orders of one level's present loops: all permutations, or one per order class when pruning."""
    perms = list(itertools.permutations(sorted(ranks)))
    if not prune:
        return perms
    if innermost:
        return perms[:1]
    seen: dict = {}
    for p in perms:
        seen.setdefault(order_signature(p, tensors), p)
    return list(seen.values())


@dataclass(frozen=True)
class Bucket:
    """What the members of a fused group share: shared loops (pos, dimension key, factor, run of members it
    encloses) in nest order (by level; larger runs outside the runs they contain), and the kept positions at and
    above F of every group tensor."""

    shared: tuple[tuple[int, str, int, frozenset], ...]
    gkeep: tuple[tuple[str, tuple[int, ...]], ...]


def _is_tree(used: set[tuple[frozenset, int]]) -> bool:
    """segment.py's `_tree_constraints`: runs in use never cross, and a larger run is never deeper than one it
    contains."""
    used = list(used)
    for a in range(len(used)):
        for b in range(a + 1, len(used)):
            (sa, pa), (sb, pb) = used[a], used[b]
            if sa & sb and not sa <= sb and not sb <= sa:
                return False
            if (sa > sb and pa > pb) or (sb > sa and pb > pa):
                return False
    return True


def buckets(inst, info: PlanInfo, prune: bool):
    """Every bucket of a fused plan whose tiles at and above F fit (docs/model.md §5), or one empty bucket.

    Every contiguous run of members may have loops (nested fusion): per (run, dimension) a factor per level above
    F, such that each member's loops over a rank divide its bound and the runs in use form a tree."""
    plan = info.plan
    if plan.fusion is None:
        yield Bucket((), ())
        return
    wl, arch = inst.workload, inst.architecture
    fpos = plan.fpos
    levels = [*plan.top, plan.fusion]
    order = {n: i for i, n in enumerate(plan.names)}
    slots = [(run, d) for run, dims in info.runs.items() for d in dims]
    per_slot = [tuple(f[:-1] for f in factorizations(wl.ranks[d.first], 0, fpos + 1)) for _, d in slots]
    tensors = info.group_tensors
    copy_bits = {t: group_copy_bits(wl, info.members, t) for t in tensors}
    keep_sets = []
    for t in tensors:
        backing = fpos if t in info.intermediates else 0
        keep_sets.append(keep_options(inst, t, levels, list(range(fpos + 1)), backing))
    # the keys of each run's dimensions that index each tensor (order classes, and the copies' tiles)
    run_keys = {run: {t: info.tensor_keys(t, run) for t in tensors} for run in info.runs}
    pairs = [(p, c, r) for p, c, r in lock_step(wl) if p in order]
    for facs in itertools.product(*per_slot):
        # lock-step pairs: the loops enclosing both over the carried rank cover it (model/online.py)
        if any(prod(prod(f) for (run, d), f in zip(slots, facs)
                    if {p, c} <= run and d.rank_of(p) == r and d.rank_of(c) == r) != wl.ranks[r]
               for p, c, r in pairs):
            continue
        # each member's loops over a rank divide its bound
        taken: dict[tuple[str, str], int] = {}
        for (run, d), f in zip(slots, facs):
            for m in run:
                k = (m, d.rank_of(m))
                taken[k] = taken.get(k, 1) * prod(f)
        if any(wl.ranks[r] % v for (m, r), v in taken.items()):
            continue
        used = {(run, p) for (run, d), f in zip(slots, facs) for p in range(fpos) if f[p] > 1}
        if not _is_tree(used):
            continue
        # tiles at and above F: a copy is tiled by the loops enclosing every member that uses it
        tile = {}
        for t, ranks in tensors.items():
            for pos in range(fpos + 1):
                outside = prod(f[p] for (run, d), f in zip(slots, facs)
                               if info.users[t] <= run and d.key in run_keys[run][t] for p in range(pos))
                tile[(t, pos)] = prod(wl.ranks[r] for r in ranks) // outside
        at = {(p, run): [(d.key, f[p]) for (r2, d), f in zip(slots, facs) if r2 == run and f[p] > 1]
              for p in range(fpos) for run in info.runs}
        at = {k: v for k, v in at.items() if v}
        # nest order at each level: larger runs first, then by first member; within a run, its own order
        groups_ = sorted(at, key=lambda k: (k[0], -len(k[1]), min(order[m] for m in k[1])))
        order_lists = [level_orders([r for r, _ in at[k]], [sorted(v) for v in run_keys[k[1]].values()], False,
                                    prune) for k in groups_]
        for keeps in itertools.product(*keep_sets):
            ok = True
            for pos, li in enumerate(levels):
                cap = arch.levels[li].capacity(wl.word_bits)
                if cap is not None and sum(tile[(t, pos)] * copy_bits[t]
                                           for t, k in zip(tensors, keeps) if pos in k) > cap:
                    ok = False
                    break
            if not ok:
                continue
            gkeep = tuple(zip(tensors, keeps))
            for orders in itertools.product(*order_lists):
                shared = tuple((k[0], key, dict(at[k])[key], k[1]) for k, o in zip(groups_, orders) for key in o)
                yield Bucket(shared, gkeep)


def filled_before(info: PlanInfo, bucket: Bucket, upto: int, path: list[int]) -> set:
    """The shared copies at and above F already filled by members before `upto` (evaluate._counts_of's
    `filled_once` after them): inputs' kept child positions and outputs' kept positions."""
    if info.plan.fusion is None:
        return set()
    gk = dict(bucket.gkeep)
    out = set()
    for e in info.members[:upto]:
        for t in e.inputs:
            for pos in gk[t.tensor][1:]:
                out.add((t.tensor, path[pos]))
        for pos in gk[e.output.tensor]:
            out.add((e.output.tensor, path[pos]))
    return out


@dataclass
class UnitSpace:
    """One member on one compute unit inside a bucket: its own slots and remaining bounds."""

    unit: object
    path: list[int]
    first_own: int
    rem: dict[str, int]
    spatial: list[tuple[int, str, str]]            # (pos, axis, rank) slots, mesh axis > 1
    meshes: dict[tuple[int, str], int]             # (pos, axis) -> size


def unit_space(inst, e, unit, info: PlanInfo, bucket: Bucket) -> UnitSpace:
    arch, wl = inst.architecture, inst.workload
    path = arch.path(unit.name)
    first = info.plan.fpos or 0
    rem = {r: wl.ranks[r] for r in e.space}
    for _, k, f, run in bucket.shared:
        if e.name in run:
            rem[info.dim(k, run).rank_of(e.name)] //= f
    spatial, meshes = [], {}
    temporal = temporal_only(wl).get(e.name, set())    # carried ranks step in order
    for pos in range(first, len(path)):
        below = arch.levels[path[pos + 1]].mesh if pos + 1 < len(path) else unit.mesh
        for axis in ("x", "y"):
            size = getattr(below, axis)
            if size > 1:
                meshes[(pos, axis)] = size
                spatial.extend((pos, axis, r) for r in e.space if r not in temporal)
    return UnitSpace(unit, path, first, rem, spatial, meshes)


def supports(us: UnitSpace):
    """Per rank, which own levels hold a temporal loop of factor > 1 (at most as many as its prime factors)."""
    own = list(range(us.first_own, len(us.path)))
    per_rank = []
    ranks = sorted(us.rem)
    for r in ranks:
        k = prime_count(us.rem[r])
        opts = [c for n in range(0, min(k, len(own)) + 1) for c in itertools.combinations(own, n)]
        per_rank.append(opts)
    for combo in itertools.product(*per_rank):
        yield tuple(zip(ranks, combo))


def tiling_columns(us: UnitSpace, support) -> tuple[list, list[tuple[tuple[int, ...], ...]]]:
    """Variables of a support (temporal slots then spatial slots, rank by rank) and per-rank value tuples."""
    variables = []
    per_rank = []
    for r, poss in support:
        sp = [s for s in us.spatial if s[2] == r]
        variables.extend([("t", p, r) for p in poss] + [("s", p, r, a) for p, a, _ in sp])
        per_rank.append(factorizations(us.rem[r], len(poss), len(sp)))
    return variables, per_rank


def tiling_rows(us: UnitSpace, variables, per_rank, chunk: int):
    """Chunks of the tiling matrix (rows x variables) that respect every mesh axis."""
    if not per_rank:
        yield 0, np.zeros((1, 0), dtype=np.int64), np.ones(1, dtype=bool)
        return
    arrays = [np.array(v, dtype=np.int64).reshape(len(v), -1) for v in per_rank]
    sizes = [len(a) for a in arrays]
    total = prod(sizes)
    axis_cols = {}
    for i, v in enumerate(variables):
        if v[0] == "s":
            axis_cols.setdefault((v[1], v[3]), []).append(i)
    for lo in range(0, total, chunk):
        idx = np.unravel_index(np.arange(lo, min(total, lo + chunk)), sizes)
        X = np.concatenate([a[i] for a, i in zip(arrays, idx)], axis=1)
        ok = np.ones(X.shape[0], dtype=bool)
        for key, cols in axis_cols.items():
            ok &= np.prod(X[:, cols], axis=1) <= us.meshes[key]
        yield lo, X, ok


def row_values(per_rank, row: int) -> list[int]:
    """The tiling of global row `row` (same order as `tiling_rows`)."""
    if not per_rank:
        return []
    idx = np.unravel_index(row, [len(v) for v in per_rank])
    return [int(x) for v, i in zip(per_rank, idx) for x in v[int(i)]]
