"""Hypothesis strategies: small random instances and random mappings for them.

Everything is built from the pydantic spec classes only. Instances are kept tiny (at most MAX_POINTS iteration
points per Einsum) so that the literal simulator in tests/simulator.py can run every point.

* `workloads()`         1-4 Einsums: matmul chains, windows of the softmax cascade (QK, MX, SN, SD, A, AV) or a
                        random cascade of matmuls, reductions (add/max) and element-wise ops with broadcasting.
* `architectures(wl)`   DRAM + 1..3 on-chip levels (small capacities sometimes, energies with <= 3 decimals,
                        fractional or unlimited bandwidths, one port or separate read/write ports,
                        1..4 x 1..4 meshes with random multicast/reduction),
                        one or two compute units (the second with its own `serves`-restricted level).
* `mappings(inst)`      random valid mappings: keep/bypass respecting may_keep/must_keep and the residency rules,
                        random factorizations (temporal and spatial within mesh limits), random loop orders, random
                        fused groups (a single-instance fusion level, shared loops over allowed ranks) and, when
                        `allow_invalid`, sometimes a deliberately invalid shared loop over a reduced rank.
* `cases()`             (instance, mapping) pairs for the property test.
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import assume, strategies as st

from mapsolve.model.cascades import one_pass, two_pass
from mapsolve.model.online import lock_step, lock_step_ranges, reads_final
from mapsolve.model.views import incompatibility
from mapsolve.model.spec import (Architecture, ComputeUnit, Einsum, EinsumMapping, FusedGroup, Instance, Level,
                                 LevelMapping, Loop, Mapping, Mesh, OpCost, SharedLoop, SpatialLoop, TensorFormat,
                                 TensorRef, Workload)

BOUNDS = [1, 2, 3, 4, 5, 6, 7, 8, 12]
MAX_POINTS = 500          # per Einsum
MAX_TOTAL_POINTS = 1200   # whole workload
REDUCING = ("mac", "add", "max")


# --------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------
def _E(name, out, out_ranks, inputs, op):
    return dict(name=name, out=(out, list(out_ranks)), inputs=[(t, list(r)) for t, r in inputs], op=op)


SOFTMAX = [
    _E("QK", "QK", "mp", [("Q", "me"), ("K", "ep")], "mac"),
    _E("MX", "MX", "p", [("QK", "mp")], "max"),
    _E("SN", "SN", "mp", [("QK", "mp"), ("MX", "p")], "exp"),
    _E("SD", "SD", "p", [("SN", "mp")], "add"),
    _E("A", "A", "mp", [("SN", "mp"), ("SD", "p")], "div"),
    _E("AV", "AV", "pf", [("A", "mp"), ("V", "mf")], "mac"),
]

CHAIN_RANKS = ["m", "k", "n", "p", "q"]


def _space(e) -> list[str]:
    out = []
    for _, ranks in [e["out"], *e["inputs"]]:
        for r in ranks:
            if r not in out:
                out.append(r)
    return out


@st.composite
def _softmax_window(draw):
    n = draw(st.integers(1, 4))
    start = draw(st.integers(0, len(SOFTMAX) - n))
    return [dict(e) for e in SOFTMAX[start:start + n]]


@st.composite
def _matmul_chain(draw):
    n = draw(st.integers(1, 4))
    out = []
    prev = ("X", ["m", "k"])
    for i in range(n):
        a, b = CHAIN_RANKS[i + 1], CHAIN_RANKS[i + 2] if i + 2 < len(CHAIN_RANKS) else "r"
        w = (f"W{i}", [a, b] if draw(st.booleans()) else [b, a])
        name = f"C{i}"
        out.append(_E(name, name, ["m", b], [prev, w] if draw(st.booleans()) else [w, prev], "mac"))
        prev = (name, ["m", b])
    return out


@st.composite
def _random_cascade(draw):
    pool = ["m", "n", "k", "p", "q"]
    n = draw(st.integers(1, 4))
    produced: list[tuple[str, list[str]]] = []
    einsums = []
    fresh = iter(range(100))

    def new_input(ranks):
        return (f"X{next(fresh)}", list(ranks))

    for i in range(n):
        if produced and draw(st.integers(0, 9)) < 8:
            main = draw(st.sampled_from(produced))
        else:
            k = draw(st.integers(1, 2))
            main = new_input(draw(st.permutations(pool))[:k])
        R = main[1]
        kinds = ["unary", "binary"] + (["matmul", "reduce"] if R else [])
        kind = draw(st.sampled_from(kinds))
        name = f"T{i}"
        if kind == "matmul":
            k = draw(st.sampled_from(R))
            others = [r for r in pool if r not in R]
            nr = draw(st.sampled_from(others)) if others and draw(st.integers(0, 4)) else None
            wr = [k] + ([nr] if nr else [])
            if draw(st.booleans()):
                wr.reverse()
            w = new_input(wr)
            out_r = [r for r in R if r != k] + ([nr] if nr else [])
            ins = [main, w] if draw(st.booleans()) else [w, main]
            einsums.append(_E(name, name, out_r, ins, "mac"))
        elif kind == "reduce":
            r = draw(st.sampled_from(R))
            out_r = [x for x in R if x != r]
            einsums.append(_E(name, name, out_r, [main], draw(st.sampled_from(["add", "max"]))))
        elif kind == "unary":
            einsums.append(_E(name, name, R, [main], draw(st.sampled_from(["exp", "copy"]))))
        else:
            cands = [p for p in produced if p[0] != main[0] and set(p[1]) <= set(R)]
            if cands and draw(st.booleans()):
                second = draw(st.sampled_from(cands))
            else:
                extra = [r for r in pool if r not in R]
                sub = [r for r in R if draw(st.booleans())]
                if extra and len(R) < 3 and draw(st.integers(0, 3)) == 0:
                    sub.append(draw(st.sampled_from(extra)))
                second = new_input(sub)
            out_r = list(R) + [r for r in second[1] if r not in R]
            ins = [main, second] if draw(st.booleans()) else [second, main]
            einsums.append(_E(name, name, out_r, ins, draw(st.sampled_from(["sub", "div", "mul", "add"]))))
        produced.append((name, einsums[-1]["out"][1]))
    return einsums


def _fit_bounds(bounds: dict[str, int], einsums) -> dict[str, int]:
    """Shrink the largest bounds until every Einsum (and the whole workload) is small enough."""
    def points(e):
        return math.prod(bounds[r] for r in _space(e))

    while True:
        big = [e for e in einsums if points(e) > MAX_POINTS]
        if not big and sum(points(e) for e in einsums) <= MAX_TOTAL_POINTS:
            return bounds
        e = big[0] if big else max(einsums, key=points)
        r = max(_space(e), key=lambda x: (bounds[x], x))
        bounds[r] = max(b for b in BOUNDS if b < bounds[r])


@st.composite
def workloads(draw) -> Workload:
    kind = draw(st.sampled_from(["softmax", "chain", "random"]))
    einsums = draw({"softmax": _softmax_window(), "chain": _matmul_chain(), "random": _random_cascade()}[kind])
    ranks = []
    for e in einsums:
        for r in _space(e):
            if r not in ranks:
                ranks.append(r)
    bounds = {r: draw(st.sampled_from(BOUNDS)) for r in ranks}
    bounds = _fit_bounds(bounds, einsums)
    formats = {}
    if draw(st.integers(0, 2)) == 0:      # mixed widths: some tensors narrower or wider, wide partial sums
        reducing = {e["out"][0] for e in einsums if set(_space(e)) - set(e["out"][1])}
        names = sorted({t for e in einsums for t, _ in [e["out"], *e["inputs"]]})
        for t in names:
            bits = draw(st.sampled_from([None, None, 4, 8, 24, 32]))
            acc = draw(st.sampled_from([None, 16, 32, 48])) if t in reducing else None
            if bits is not None or acc is not None:
                formats[t] = TensorFormat(bits=bits, accumulator_bits=acc)
    return Workload(
        ranks=bounds,
        word_bits=draw(st.sampled_from([8, 16, 32])),
        tensors=formats,
        einsums=[Einsum(name=e["name"], output=TensorRef(tensor=e["out"][0], ranks=e["out"][1]),
                        inputs=[TensorRef(tensor=t, ranks=r) for t, r in e["inputs"]], op=e["op"])
                 for e in einsums])


# --------------------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------------------
def tensors_of(wl: Workload) -> list[str]:
    out = []
    for e in (e for _, alt in wl.alternatives() for e in alt.einsums):
        for ref in (e.output, *e.inputs):
            if ref.tensor not in out:
                out.append(ref.tensor)
    return out


_pj = st.integers(0, 4000).map(lambda i: Decimal(i).scaleb(-3))
_bandwidth = st.one_of(st.none(), st.builds(Fraction, st.integers(1, 12), st.sampled_from([1, 2, 3, 4])))
_per_cycle = st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2), Fraction(1, 7), Fraction(3, 2),
                              Fraction(4)])


@st.composite
def _ports(draw) -> dict:
    """One port (bandwidth, possibly unlimited) or separate read and write ports (either possibly unlimited)."""
    if draw(st.integers(0, 2)):
        return {"bandwidth": draw(_bandwidth)}
    return {"read_bandwidth": draw(_bandwidth), "write_bandwidth": draw(_bandwidth)}


@st.composite
def meshes(draw) -> Mesh:
    return Mesh(x=draw(st.sampled_from([1, 1, 2, 2, 3, 4])), y=draw(st.sampled_from([1, 1, 1, 2, 3, 4])),
                multicast=draw(st.booleans()), reduction=draw(st.booleans()))


@st.composite
def architectures(draw, wl: Workload) -> Architecture:
    tensors = tensors_of(wl)
    ops = sorted({e.op for _, alt in wl.alternatives() for e in alt.einsums})
    two_units = draw(st.integers(0, 3)) == 0
    n_common = draw(st.integers(1, 3))
    tails = []
    if two_units:
        n_common = min(n_common, 2)
        tails = [u for u in ("U0", "U1") if draw(st.booleans())][: 3 - n_common]
    levels = [Level(name="DRAM", read_pj=draw(_pj), write_pj=draw(_pj), **draw(_ports()),
                    access_bits=draw(st.sampled_from([None, None, None, 8, 64])))]
    names = [f"L{i}" for i in range(1, n_common + 1)] + [f"R{u}" for u in tails]
    serves = [None] * n_common + [[u] for u in tails]
    for i, (name, sv) in enumerate(zip(names, serves)):
        cap = draw(st.sampled_from(["none", "words", "words", "bits"]))
        kw = {}
        if cap == "words":
            kw["capacity_words"] = draw(st.integers(1, 300))
        elif cap == "bits":
            kw["capacity_bits"] = draw(st.integers(1, 300 * wl.word_bits))
        may = None
        must: list[str] = []
        if draw(st.integers(0, 9)) == 0:
            may = sorted(draw(st.sets(st.sampled_from(tensors), min_size=1)))
        if draw(st.integers(0, 9)) == 0:
            must = sorted(draw(st.sets(st.sampled_from(may or tensors), max_size=2)))
        if draw(st.integers(0, 3)) == 0:
            kw["access_bits"] = draw(st.sampled_from([8, 16, 32, 64]))
        levels.append(Level(name=name, read_pj=draw(_pj), write_pj=draw(_pj), **draw(_ports()),
                            mesh=Mesh() if i == 0 and draw(st.booleans()) else draw(meshes()), may_keep=may,
                            must_keep=must, serves=sv, **kw))

    def opcosts(sub):
        return {op: OpCost(energy_pj=draw(_pj), per_cycle=draw(_per_cycle)) for op in sub}

    units = [ComputeUnit(name="U0", mesh=draw(meshes()), ops=opcosts(ops))]
    if two_units:
        sub = sorted(draw(st.sets(st.sampled_from(ops), min_size=1)))
        units.append(ComputeUnit(name="U1", mesh=draw(meshes()), ops=opcosts(sub)))
    return Architecture(levels=levels, compute_units=units)


@st.composite
def instances(draw) -> Instance:
    wl = draw(workloads())
    return Instance(name="random", workload=wl, architecture=draw(architectures(wl)))


# --------------------------------------------------------------------------------------------------------------
# Mappings
# --------------------------------------------------------------------------------------------------------------
def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _space_of(e: Einsum) -> list[str]:
    out = []
    for ref in (e.output, *e.inputs):
        for r in ref.ranks:
            if r not in out:
                out.append(r)
    return out


def _reduced(e: Einsum) -> set[str]:
    return set(_space_of(e)) - set(e.output.ranks)


@st.composite
def _factorize(draw, inst: Instance, e: Einsum, path: list[int], unit: ComputeUnit, first_pos: int,
               remaining: dict[str, int]):
    """Random temporal/spatial loops for the path positions >= first_pos; returns per position (temporal, spatial)."""
    arch = inst.architecture
    n = len(path)
    fed = [arch.levels[path[p + 1]].mesh if p + 1 < n else unit.mesh for p in range(n)]
    budget = {(p, a): getattr(fed[p], a) for p in range(n) for a in ("x", "y")}
    temporal: dict[tuple[int, str], int] = {}
    spatial: dict[tuple[int, str, str], int] = {}
    space = _space_of(e)
    for r in space:
        for prime in _primes(remaining[r]):
            pos = draw(st.integers(first_pos, n - 1))
            if draw(st.integers(0, 2)) == 0:
                axis = draw(st.sampled_from(["x", "y"]))
                if budget[(pos, axis)] >= prime:       # budget = floor(mesh axis / spatial product so far)
                    budget[(pos, axis)] //= prime
                    spatial[(pos, r, axis)] = spatial.get((pos, r, axis), 1) * prime
                    continue
            temporal[(pos, r)] = temporal.get((pos, r), 1) * prime
    per_pos = []
    for p in range(n):
        if p < first_pos:
            per_pos.append(([], []))
            continue
        tl = [Loop(rank=r, factor=f) for (q, r), f in temporal.items() if q == p]
        # sometimes a transparent factor-1 loop
        have = {lp.rank for lp in tl}
        for r in space:
            if r not in have and draw(st.integers(0, 7)) == 0:
                tl.append(Loop(rank=r, factor=1))
        tl = draw(st.permutations(tl)) if tl else []
        sl = [SpatialLoop(rank=r, factor=f, axis=a) for (q, r, a), f in spatial.items() if q == p]
        sl = draw(st.permutations(sl)) if sl else []
        per_pos.append((list(tl), list(sl)))
    return per_pos


def _budget_ok(inst, path, unit, per_pos) -> bool:
    arch = inst.architecture
    n = len(path)
    for p, (_, sl) in enumerate(per_pos):
        mesh = arch.levels[path[p + 1]].mesh if p + 1 < n else unit.mesh
        for a in ("x", "y"):
            if math.prod(s.factor for s in sl if s.axis == a) > getattr(mesh, a):
                return False
    return True


@st.composite
def mappings(draw, inst: Instance, allow_invalid: bool = True, nested: bool = False, online: bool = False,
             views: bool = False) -> Mapping:
    """A random valid mapping (or, with `allow_invalid`, sometimes one fusing across a reduction); `nested`: fused
    groups of two or more also get shared loops enclosing only a contiguous run of their members (a tree);
    `online`: Einsums that must step in lock step (a recurrence and its running readers) are mostly put in one
    group whose shared loops cover the carried rank (`_lock_step_loops`). `views`: a shared loop over a rank name
    that tiles a tensor differently in two members (a view renames it) is mostly left out (model/views.py)."""
    wl, arch = inst.workload, inst.architecture
    einsums = list(wl.einsums)
    names = [e.name for e in einsums]
    by_name = {e.name: e for e in einsums}
    consumers: dict[str, list[str]] = {}
    producer: dict[str, str] = {}
    for e in einsums:
        producer[e.output.tensor] = e.name
        for i in e.inputs:
            consumers.setdefault(i.tensor, []).append(e.name)

    # units
    unit_of = {}
    for e in einsums:
        able = [u.name for u in arch.compute_units if e.op in u.ops]
        unit_of[e.name] = draw(st.sampled_from(able))

    # partition into consecutive chunks
    chunks, cur = [], [names[0]]
    for nm in names[1:]:
        if draw(st.integers(0, 5 if nested else 2)) > 0:
            cur.append(nm)
        else:
            chunks.append(cur)
            cur = [nm]
    chunks.append(cur)
    locked: set = set()
    if online and not (allow_invalid and draw(st.integers(0, 7)) == 0):   # else a lock-step pair may be cut
        chunks = _keep_lock_steps_together(wl, chunks)
        locked = {x for p, c, _ in lock_step(wl) for x in (p, c)}

    groups: list[dict] = []
    for chunk in chunks:
        fuse = len(chunk) >= 2 and (nested or set(chunk) & locked or draw(st.integers(0, 5)) > 0) or \
            len(chunk) == 1 and draw(st.integers(0, 9)) == 0
        g = None
        if fuse:
            g = _plan_group(draw, inst, chunk, unit_of, consumers, producer, allow_invalid, nested, online, views)
        if g is None:
            groups.extend({"einsums": [nm], "fused": False} for nm in chunk)
        else:
            groups.append(g)

    ems = []
    fgroups = []
    for g in groups:
        keep_above: dict[tuple[int, str], bool] = {}     # shared keep decisions at F and above
        for nm in g["einsums"]:
            e = by_name[nm]
            unit = arch.unit(unit_of[nm])
            path = arch.path(unit.name)
            fpos = path.index(g["F"]) if g["fused"] else None
            remaining = {r: wl.ranks[r] for r in _space_of(e)}
            if g["fused"]:
                for sl in g["shared"]:
                    if sl[3] is None or nm in sl[3]:
                        remaining[sl[1]] //= sl[2]
            per_pos = draw(_factorize(inst, e, path, unit, fpos or 0, remaining))
            assert _budget_ok(inst, path, unit, per_pos)
            levels = []
            for pos, li in enumerate(path):
                lv = arch.levels[li]
                keep = []
                for t in e.tensors:
                    fused_int = g["fused"] and t in g["intermediates"]
                    if pos == 0:
                        k = not fused_int
                    elif fused_int and pos < fpos:
                        k = False
                    elif fused_int and pos == fpos:
                        k = True
                    elif t in lv.must_keep:
                        k = True
                    elif lv.may_keep is not None and t not in lv.may_keep:
                        k = False
                    elif g["fused"] and pos <= fpos:
                        k = keep_above.setdefault((li, t), draw(st.booleans()))
                    else:
                        k = draw(st.booleans())
                    if g["fused"] and pos <= fpos:
                        keep_above.setdefault((li, t), k)
                    if k:
                        keep.append(t)
                tl, sl = per_pos[pos]
                levels.append(LevelMapping(level=lv.name, keep=keep, temporal=tl, spatial=sl))
            ems.append(EinsumMapping(einsum=nm, compute_unit=unit.name, levels=levels))
        if g["fused"]:
            fgroups.append(FusedGroup(einsums=g["einsums"], fusion_level=arch.levels[g["F"]].name,
                                      shared_loops=[SharedLoop(level=arch.levels[li].name, rank=r, factor=f,
                                                               einsums=span)
                                                    for li, r, f, span in g["shared"]]))
    return Mapping(einsums=ems, groups=fgroups)


def _keep_lock_steps_together(wl, chunks):
    """Merge the consecutive chunks that cut a lock-step run (`lock_step_ranges`: a recurrence and its running
    readers, with everything between them)."""
    for run in lock_step_ranges(wl):
        inside = set(run)
        merged: list = []
        for ch in chunks:
            if merged and inside & set(ch) and inside & set(merged[-1]):
                merged[-1] = merged[-1] + ch
            else:
                merged.append(ch)
        chunks = merged
    return chunks


def _lock_step_loops(draw, inst, chunk, above, lo, allow_invalid):
    """Shared loops covering each carried rank of the chunk's lock-step pairs: over the smallest run holding the
    pairs (grown at random through members that iterate the rank), its bound split over levels above[lo:]."""
    wl = inst.workload
    by_name = {e.name: e for e in wl.einsums}
    out = []
    for r in sorted({r for p, c, r in lock_step(wl) if p in chunk and c in chunk}):
        idx = [chunk.index(x) for p, c, rr in lock_step(wl) if rr == r and p in chunk and c in chunk for x in (p, c)]
        i, j = min(idx), max(idx) + 1
        while i > 0 and r in by_name[chunk[i - 1]].space and draw(st.booleans()):
            i -= 1
        while j < len(chunk) and r in by_name[chunk[j]].space and draw(st.booleans()):
            j += 1
        if any(r not in by_name[m].space for m in chunk[i:j]):
            continue
        span = None if (i, j) == (0, len(chunk)) else list(chunk[i:j])
        rest = wl.ranks[r]
        if allow_invalid and rest > 1 and draw(st.integers(0, 7)) == 0:
            rest = draw(st.sampled_from(_divisors(rest)))      # leaves part of r to the members: invalid
        for k in range(lo, len(above)):
            f = rest if k == len(above) - 1 else draw(st.sampled_from(_divisors(rest)))
            if f > 1 or draw(st.integers(0, 5)) == 0:
                out.append((above[k], r, f, span))
                rest //= f
    return out


def _plan_group(draw, inst: Instance, chunk: list[str], unit_of, consumers, producer, allow_invalid, nested=False,
                online=False, views=False):
    wl, arch = inst.workload, inst.architecture
    by_name = {e.name: e for e in wl.einsums}
    paths = [arch.path(unit_of[nm]) for nm in chunk]
    intermediates = []
    for nm in chunk:
        t = by_name[nm].output.tensor
        cons = consumers.get(t, [])
        if cons and all(c in chunk for c in cons):
            intermediates.append(t)
    # F: on every path, every level above it on every path too, single instance guaranteed by construction
    cands = []
    for li in paths[0][1:]:
        if not all(li in p for p in paths):
            continue
        if not all(p[:p.index(li)] == paths[0][:paths[0].index(li)] for p in paths):
            continue
        lv = arch.levels[li]
        if any(arch.levels[x].mesh.size != 1 for x in paths[0][1:paths[0].index(li) + 1]):
            continue      # the fusion level must be a single physical instance (evaluator rule)
        if lv.may_keep is not None and not set(intermediates) <= set(lv.may_keep):
            continue
        cands.append(li)
    if not cands:
        return None
    F = draw(st.sampled_from(cands))
    above = paths[0][:paths[0].index(F)]
    # ranks a shared loop may use
    common = set(_space_of(by_name[chunk[0]]))
    for nm in chunk[1:]:
        common &= set(_space_of(by_name[nm]))
    forbidden = set()
    for nm in chunk:
        e = by_name[nm]
        if any(c in chunk and reads_final(by_name[c], e.output.tensor) for c in consumers.get(e.output.tensor, [])):
            forbidden |= _reduced(e)
    stepped = {r for p, c, r in lock_step(wl) if p in chunk and c in chunk} if online else set()
    ok = sorted(common - forbidden - stepped)
    if views:
        members = [by_name[nm] for nm in chunk]
        ok = [r for r in ok if incompatibility(members, {nm: r for nm in chunk}) is None
              or allow_invalid and draw(st.integers(0, 3)) == 0]
    shared: list[tuple[int, str, int]] = []
    for r in ok:
        rest = wl.ranks[r]
        for li in above:
            f = draw(st.sampled_from(_divisors(rest)))
            if f > 1 or draw(st.integers(0, 5)) == 0:
                shared.append((li, r, f))
                rest //= f
    bad = sorted(r for r in common & forbidden if wl.ranks[r] > 1)
    invalid = False
    if allow_invalid and bad and draw(st.integers(0, 2)) == 0:
        r = draw(st.sampled_from(bad))
        f = draw(st.sampled_from([d for d in _divisors(wl.ranks[r]) if d > 1]))
        shared.append((draw(st.sampled_from(above)), r, f))
        invalid = True
    # order: by level, random within a level
    shared = draw(st.permutations(shared)) if shared else []
    shared = [(li, r, f, None) for li, r, f in sorted(shared, key=lambda s: above.index(s[0]))]
    if stepped:
        deepest = max([above.index(li) for li, _, _, _ in shared], default=0)
        shared += _lock_step_loops(draw, inst, list(chunk), above, deepest, allow_invalid)
    elif nested and len(chunk) >= 2:
        outer = {r: math.prod(f for _, r2, f, _ in shared if r2 == r) for r in wl.ranks}
        deepest = max([above.index(li) for li, _, _, _ in shared], default=0)
        shared += _subtree(draw, inst, list(chunk), chunk, above, deepest, outer, consumers, 2)
    return {"einsums": list(chunk), "fused": True, "F": F, "shared": shared, "intermediates": intermediates,
            "invalid": invalid}


def _subtree(draw, inst, run, chunk, above, lo, done, consumers, depth):
    """Shared loops enclosing a proper contiguous sub-run of `run` (and, recursively, of it), at levels `above[lo:]`
    in nest order, over ranks every member of the sub-run has and none of them reduces for a reader in the sub-run.
    `done`: per rank, the factor the loops enclosing `run` already take."""
    wl = inst.workload
    by_name = {e.name: e for e in wl.einsums}
    if depth == 0 or len(run) < 1 or draw(st.integers(0, 5)) == 0:
        return []
    i = draw(st.integers(0, len(run) - 1))
    j = draw(st.integers(i + 1, len(run)))
    sub = run[i:j]
    if sub == run:
        return []
    common = set(_space_of(by_name[sub[0]]))
    for nm in sub[1:]:
        common &= set(_space_of(by_name[nm]))
    forbidden = set()
    for nm in sub:
        e = by_name[nm]
        if any(c in sub and c != nm for c in consumers.get(e.output.tensor, [])):
            forbidden |= _reduced(e)
    loops = []
    deepest = lo
    taken = dict(done)
    for r in sorted(common - forbidden):
        rest = wl.ranks[r] // done.get(r, 1)
        for k in range(lo, len(above)):
            f = draw(st.sampled_from(_divisors(rest)))
            if f > 1 or draw(st.integers(0, 7)) == 0:
                loops.append((k, r, f, list(sub)))
                rest //= f
                taken[r] = taken.get(r, 1) * f
                deepest = max(deepest, k)
    loops = draw(st.permutations(loops)) if loops else []
    loops = sorted(loops, key=lambda s: s[0])
    out = [(above[k], r, f, span) for k, r, f, span in loops]
    out += _subtree(draw, inst, sub, chunk, above, deepest, taken, consumers, depth - 1)
    # a sibling after it, under the same parent
    rest_run = run[j:]
    if rest_run and draw(st.booleans()):
        out += _subtree(draw, inst, rest_run, chunk, above, lo, done, consumers, depth - 1)
    return out


@st.composite
def cases(draw, allow_invalid: bool = True, rename: bool = True, nested: bool = False):
    """(instance, mapping) pairs for the property test; one in three has ranks renamed per Einsum (views)."""
    inst = draw(instances().filter(lambda i: len(i.workload.einsums) >= 2) if nested else instances())
    mapping = draw(mappings(inst, allow_invalid=allow_invalid, nested=nested))
    if rename and draw(st.integers(0, 2)) == 0:
        return draw(renamings(inst, mapping))
    return inst, mapping


@st.composite
def renamings(draw, inst: Instance, mapping: Mapping):
    """The same problem with some Einsums naming one of their ranks otherwise (a fresh rank of equal bound).

    Every tensor that Einsum shares with others becomes a view (same dimensions, other names), and shared loops
    over the renamed rank name it per member (`renames`). Nothing physical changes, so every count must too."""
    wl = inst.workload
    sigma: dict[str, dict[str, str]] = {}
    ranks = dict(wl.ranks)
    for e in wl.einsums:
        if e.space and draw(st.integers(0, 1)) == 0:
            r = draw(st.sampled_from(e.space))
            sigma[e.name] = {r: f"{r}_{e.name}"}
            ranks[f"{r}_{e.name}"] = wl.ranks[r]

    def ren(name: str, r: str) -> str:
        return sigma.get(name, {}).get(r, r)

    def ref(name, t: TensorRef) -> TensorRef:
        return TensorRef(tensor=t.tensor, ranks=[ren(name, r) for r in t.ranks])

    einsums = [Einsum(name=e.name, op=e.op, output=ref(e.name, e.output), inputs=[ref(e.name, t) for t in e.inputs])
               for e in wl.einsums]
    new_inst = inst.model_copy(update={"workload": Workload(ranks=ranks, word_bits=wl.word_bits, tensors=wl.tensors, einsums=einsums)})
    ems = [EinsumMapping(einsum=em.einsum, compute_unit=em.compute_unit, levels=[
        LevelMapping(level=lm.level, keep=lm.keep,
                     temporal=[Loop(rank=ren(em.einsum, lp.rank), factor=lp.factor) for lp in lm.temporal],
                     spatial=[SpatialLoop(rank=ren(em.einsum, sp.rank), factor=sp.factor, axis=sp.axis)
                              for sp in lm.spatial]) for lm in em.levels]) for em in mapping.einsums]
    groups = []
    for g in mapping.groups:
        shared = []
        for sl in g.shared_loops:
            span = sl.einsums or g.einsums
            first = ren(span[0], sl.rank)
            shared.append(SharedLoop(level=sl.level, rank=first, factor=sl.factor, einsums=sl.einsums,
                                     renames={m: ren(m, sl.rank) for m in span if ren(m, sl.rank) != first}))
        groups.append(FusedGroup(einsums=g.einsums, fusion_level=g.fusion_level, shared_loops=shared))
    return new_inst, Mapping(einsums=ems, groups=groups)


# --------------------------------------------------------------------------------------------------------------
# Revisited outputs, on purpose
# --------------------------------------------------------------------------------------------------------------
@st.composite
def readback_cases(draw):
    """A matmul whose output tile is revisited below DRAM: a temporal loop over the reduced rank k is outermost at
    DRAM and a loop over the output rank m sits inside it, above a level that keeps Z. Spatial loops are random, so
    both the read-back mode and the accumulate mode of docs/model.md §4 come up (several instances feeding one
    parent element), with random meshes, capacities, bandwidths and keeps."""
    bounds = {"m": draw(st.sampled_from([2, 3, 4, 6])), "n": draw(st.sampled_from([1, 2, 3, 4])),
              "k": draw(st.sampled_from([2, 3, 4, 6]))}
    formats = draw(st.sampled_from([{}, {"A": TensorFormat(bits=8), "B": TensorFormat(bits=8),
                                          "Z": TensorFormat(bits=8, accumulator_bits=32)},
                                    {"Z": TensorFormat(accumulator_bits=24)}]))
    wl = Workload(ranks=bounds, word_bits=draw(st.sampled_from([8, 16])), tensors=formats, einsums=[Einsum(
        name="MM", op="mac", output=TensorRef(tensor="Z", ranks=["m", "n"]),
        inputs=[TensorRef(tensor="A", ranks=["m", "k"]), TensorRef(tensor="B", ranks=["k", "n"])])])
    arch = draw(architectures(wl))
    inst = Instance(name="readback", workload=wl, architecture=arch)
    unit = arch.compute_units[0]
    path = arch.path(unit.name)
    e = wl.einsums[0]
    z_levels = [p for p in range(1, len(path)) if arch.levels[path[p]].may_keep is None
                or "Z" in arch.levels[path[p]].may_keep]
    assume(z_levels)                 # rare: every on-chip level's may_keep excludes Z
    child = draw(st.sampled_from(z_levels))
    q = draw(st.integers(0, child - 1))            # where the m loop goes: inside k, above the kept child
    pk, pm = _primes(bounds["k"])[0], _primes(bounds["m"])[0]
    remaining = dict(bounds)
    remaining["k"] //= pk
    remaining["m"] //= pm
    per_pos = draw(_factorize(inst, e, path, unit, 0, remaining))

    def merged(loops, rank, factor, front):
        rest = [lp for lp in loops if lp.rank != rank]
        f = factor * math.prod(lp.factor for lp in loops if lp.rank == rank)
        return [Loop(rank=rank, factor=f), *rest] if front else [*rest, Loop(rank=rank, factor=f)]

    per_pos = [(list(tl), list(sl)) for tl, sl in per_pos]
    per_pos[0] = (merged(per_pos[0][0], "k", pk, True), per_pos[0][1])
    if q == 0:
        tl = per_pos[0][0]
        per_pos[0] = ([tl[0], *merged(tl[1:], "m", pm, draw(st.booleans()))], per_pos[0][1])
    else:
        per_pos[q] = (merged(per_pos[q][0], "m", pm, draw(st.booleans())), per_pos[q][1])
    levels = []
    for pos, li in enumerate(path):
        lv = arch.levels[li]
        keep = []
        for t in ("Z", "A", "B"):
            if pos == 0 or t in lv.must_keep or (t == "Z" and pos == child):
                keep.append(t)
            elif lv.may_keep is not None and t not in lv.may_keep:
                continue
            elif draw(st.integers(0, 3)) > (1 if t == "Z" else 2):
                keep.append(t)
        levels.append(LevelMapping(level=lv.name, keep=keep, temporal=per_pos[pos][0], spatial=per_pos[pos][1]))
    return inst, Mapping(einsums=[EinsumMapping(einsum="MM", compute_unit=unit.name, levels=levels)])


# --------------------------------------------------------------------------------------------------------------
# Online cascades: recurrences and running reads
# --------------------------------------------------------------------------------------------------------------
def _ref(t, ranks, running=None):
    return TensorRef(tensor=t, ranks=list(ranks), running=running)


@st.composite
def _online_cascade(draw) -> list[Einsum]:
    """A small cascade around one recurrence S[p] over r: a per-step tensor T, sometimes a reader of S's previous
    state before S (U, like SPD), S itself (sometimes reading its own previous state), sometimes a reader of the
    current state after it (C, like SLN) and a reader of the final state (Z)."""
    q = draw(st.booleans())
    x = ["r", "q", "p"] if q else ["r", "p"]
    es = []
    if q and draw(st.booleans()):
        es.append(Einsum(name="T", output=_ref("T", "rp"), inputs=[_ref("X", x), _ref("W", "q")], op="mac"))
    else:
        es.append(Einsum(name="T", output=_ref("T", x), inputs=[_ref("X", x)], op=draw(st.sampled_from(["exp", "copy"]))))
    t_ranks = list(es[-1].output.ranks)
    step_in = ("T", t_ranks)
    if draw(st.booleans()):
        es.append(Einsum(name="U", output=_ref("U", t_ranks), inputs=[_ref("T", t_ranks), _ref("S", "p", "previous")],
                         op="mul"))
        step_in = ("U", t_ranks)
    ins = [_ref(*step_in)]
    if draw(st.booleans()) or step_in[0] == "T":
        ins.append(_ref("S", "p", "previous"))
    if draw(st.booleans()):
        ins = ins[::-1]
    s_ranks = ["p"] + (["q"] if "q" in t_ranks else [])
    ins = [i if i.tensor != "S" else _ref("S", s_ranks, "previous") for i in ins]
    if step_in[0] == "U" and s_ranks != ["p"]:
        es[-1] = Einsum(name="U", output=_ref("U", t_ranks), inputs=[_ref("T", t_ranks), _ref("S", s_ranks, "previous")],
                        op="mul")
    es.append(Einsum(name="S", output=_ref("S", s_ranks), inputs=ins, op=draw(st.sampled_from(["add", "max", "mul"])),
                     recurrence="r"))
    if draw(st.booleans()):
        es.append(Einsum(name="C", output=_ref("C", t_ranks), inputs=[_ref("T", t_ranks), _ref("S", s_ranks, "current")],
                         op=draw(st.sampled_from(["sub", "exp"]))))
        if draw(st.booleans()):
            es.append(Einsum(name="D", output=_ref("D", s_ranks), inputs=[_ref("C", t_ranks)], op="add"))
    if draw(st.booleans()):
        es.append(Einsum(name="Z", output=_ref("Z", s_ranks), inputs=[_ref("S", s_ranks)], op="copy"))
    return es


@st.composite
def online_instances(draw) -> Instance:
    """Tiny online cascades: FuseMax's 1-pass attention, the 2-pass one, or `_online_cascade`."""
    kind = draw(st.sampled_from(["1pass", "2pass", "random", "random"]))
    if kind == "random":
        einsums = draw(_online_cascade())
        ranks = {"r": draw(st.sampled_from([2, 3, 4, 6])), "p": draw(st.sampled_from([1, 2, 3])),
                 "q": draw(st.sampled_from([1, 2]))}
        ranks = {k: v for k, v in ranks.items() if any(k in e.space for e in einsums)}
    else:
        einsums = one_pass(batch=()) if kind == "1pass" else two_pass(batch=())
        ranks = {"E": draw(st.sampled_from([1, 2])), "F": draw(st.sampled_from([1, 2])),
                 "P": draw(st.sampled_from([1, 2])), "M1": draw(st.sampled_from([2, 3])),
                 "M0": draw(st.sampled_from([1, 2]))}
    wl = Workload(ranks=ranks, word_bits=draw(st.sampled_from([8, 16])), einsums=einsums)
    arch = draw(architectures(wl))
    if draw(st.integers(0, 3)):   # mostly a single-instance level to fuse at
        levels = list(arch.levels)
        levels[1] = levels[1].model_copy(update={"mesh": Mesh(), "may_keep": None, "must_keep": []})
        arch = arch.model_copy(update={"levels": levels})
    return Instance(name=f"online-{kind}", workload=wl, architecture=arch)


@st.composite
def online_cases(draw, allow_invalid: bool = True):
    inst = draw(online_instances())
    return inst, draw(mappings(inst, allow_invalid=allow_invalid, online=True))


@st.composite
def variant_workloads(draw) -> Workload:
    """One computation three ways, over the same input X[r, p] (and W[r, p]) and the same output Z[p]: a plain
    reduction over r, a recurrence over r reading its own previous state, and a recurrence fed by a reader of
    its previous state (like FuseMax's SPD/RD) -- each optionally behind a per-step tensor T."""
    op = draw(st.sampled_from(["add", "max"]))
    pre = draw(st.sampled_from(["exp", "copy", None]))
    src = "X"
    head = []
    if pre is not None:
        head = [Einsum(name="T", output=_ref("T", "rp"), inputs=[_ref("X", "rp")], op=pre)]
        src = "T"
    plain = head + [Einsum(name="S", output=_ref("S", "p"), inputs=[_ref(src, "rp")], op=op),
                    Einsum(name="Z", output=_ref("Z", "p"), inputs=[_ref("S", "p")], op="copy")]
    online = head + [Einsum(name="S", output=_ref("S", "p"), inputs=[_ref(src, "rp"), _ref("S", "p", "previous")],
                            op=op, recurrence="r"),
                     Einsum(name="Z", output=_ref("Z", "p"), inputs=[_ref("S", "p")], op="copy")]
    fed = head + [Einsum(name="U", output=_ref("U", "rp"), inputs=[_ref(src, "rp"), _ref("S", "p", "previous")],
                         op="mul"),
                  Einsum(name="S", output=_ref("S", "p"), inputs=[_ref("U", "rp"), _ref(src, "rp")], op="add",
                         recurrence="r"),
                  Einsum(name="Z", output=_ref("Z", "p"), inputs=[_ref("S", "p")], op="copy")]
    ranks = {"r": draw(st.sampled_from([2, 3, 4])), "p": draw(st.sampled_from([1, 2, 3]))}
    chosen = draw(st.sampled_from([("plain", "online"), ("online", "fed"), ("plain", "online", "fed")]))
    by = {"plain": plain, "online": online, "fed": fed}
    from mapsolve.model.spec import Variant
    return Workload(ranks=ranks, word_bits=draw(st.sampled_from([8, 16])), einsums=by[chosen[0]],
                    base_variant=chosen[0], variants=[Variant(name=n, einsums=by[n]) for n in chosen[1:]])


# --------------------------------------------------------------------------------------------------------------
# Butterfly cascades: digit ranks, one renamed per stage (views)
# --------------------------------------------------------------------------------------------------------------
@st.composite
def butterfly_instances(draw) -> Instance:
    """Tiny butterfly layers (model/make.py `butterfly_workload`): 4 or 8 points, radix 2 or 4, over the sequence,
    the hidden dimension or both, learned blocks or FFT twiddles (complex); or a butterfly-factorised FFN
    (model/hybrid.py `butterfly_ffn`: up stages broadcasting to FX copies, ReLU, down stages summing them); on
    random architectures."""
    from mapsolve.model.make import butterfly_workload
    mix = draw(st.sampled_from(["seq", "seq", "hidden", "both", "ffn"]))
    if mix == "ffn":
        return draw(butterfly_ffn_instances())
    n = draw(st.sampled_from([4, 8]))
    hidden = draw(st.sampled_from([2, 4])) if mix != "seq" else draw(st.sampled_from([1, 2, 3]))
    if mix == "both":
        n = 4
    wl = butterfly_workload(n, draw(st.sampled_from([1, 2])), hidden, draw(st.sampled_from([2, 4])), mix,
                            draw(st.sampled_from(["learned", "learned", "fft"])),
                            word_bits=draw(st.sampled_from([8, 16])))
    return Instance(name=f"butterfly-{mix}", workload=wl, architecture=draw(architectures(wl)))


@st.composite
def butterfly_ffn_instances(draw) -> Instance:
    """A butterfly-factorised FFN alone: hidden 4 as digits of radix 2 or 4, 1 or 2 copies, 1 to 3 tokens."""
    from mapsolve.model.butterfly import digits, stage_ranks
    from mapsolve.model.hybrid import butterfly_ffn
    tokens, expand = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2]))
    seq, hid = digits("N", 2, 2), digits("D", 4, draw(st.sampled_from([2, 4])))
    ranks = {"B": tokens, "N0": 2, **stage_ranks(hid, "learned"), **({"FX": expand} if expand > 1 else {})}
    wl = Workload(ranks=ranks, word_bits=draw(st.sampled_from([8, 16])), einsums=butterfly_ffn("F", "X", seq, hid,
                                                                                              expand))
    return Instance(name="butterfly-ffn", workload=wl, architecture=draw(architectures(wl)))


@st.composite
def butterfly_cases(draw, allow_invalid: bool = True):
    inst = draw(butterfly_instances())
    return inst, draw(mappings(inst, allow_invalid=allow_invalid, nested=draw(st.booleans()), views=True))


#: Custom element-wise op names the custom-op cases give the known element-wise ops (tests/test_custom_ops.py).
CUSTOM_NAMES = {"exp": "gelu", "copy": "silu", "mul": "swish_gate", "sub": "rsqrt", "div": "tanh"}


def with_custom_ops(inst: Instance) -> Instance:
    """`inst` with every element-wise op (no reduced ranks) renamed to a custom op name, and each unit's ops
    renamed alike with the same costs: the cost model prices an op by its name only, so nothing else changes."""
    doc = inst.model_dump(mode="json")

    def rename(e: dict) -> None:
        if e["op"] in CUSTOM_NAMES:
            e["op"] = CUSTOM_NAMES[e["op"]]
    for e in doc["workload"]["einsums"]:
        rename(e)
    for v in doc["workload"]["variants"]:
        for e in v["einsums"]:
            rename(e)
    for u in doc["architecture"]["compute_units"]:
        u["ops"] = {CUSTOM_NAMES.get(op, op): cost for op, cost in u["ops"].items()}
    return Instance.model_validate(doc)


@st.composite
def custom_op_cases(draw, allow_invalid: bool = True):
    """(instance with custom ops, the same instance with the known ops, mapping): a case of `cases` whose
    workload has an element-wise Einsum, renamed by with_custom_ops."""
    inst, mapping = draw(cases(allow_invalid=allow_invalid).filter(
        lambda c: any(e.op in CUSTOM_NAMES for e in c[0].workload.einsums)))
    return with_custom_ops(inst), inst, mapping
