"""AccelForge's arch nodes → mapsolve's levels, compute units and meshes (see interop/accelforge_import.py).

Why the shapes differ: AccelForge's fanouts say per tensor which may be reused (multicast or reduced) across
them, and a memory's keep sets are per Einsum role (`weight`); mapsolve's mesh has one multicast and one reduction
flag, and keep sets are per tensor. Where the two differ the conversion keeps every AccelForge mapping possible
and writes the difference in a note; a fanout pair whose flags differ becomes two meshes (a pass-through level,
capacity 0, for the first).
"""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from mapsolve.model.spec import MAX_RATE_TERM

from .accelforge_expr import INF, HeldBy, TensorSet, number, tensor_set
from .accelforge_yaml import Refused


def _dec(d: Decimal) -> str:
    return format(d.normalize(), "f") if d != 0 else "0"


def _frac(f: Fraction, where: str) -> str:
    if f.numerator > MAX_RATE_TERM or f.denominator > MAX_RATE_TERM:
        raise Refused(f"{where}: rate {f} has a term above 2^40")
    return f"{f.numerator}/{f.denominator}"


def _pj(joules, per: Fraction, where: str) -> str:
    """Exact pJ (at most 3 decimals) for `joules` J times `per`."""
    if joules == INF or joules < 0:
        raise Refused(f"{where}: energy {joules} is not a finite non-negative number")
    fj = Fraction(joules) * per * 10**15
    if fj > 10**12 * 10**3:   # mapsolve's energies are at most 10^9 pJ
        raise Refused(f"{where}: {joules} J is above mapsolve's 10^9 pJ per word or operation")
    if fj.denominator != 1:
        raise Refused(f"{where}: {float(fj) / 1000!r} pJ needs more than 3 decimals (mapsolve energies are "
                      f"integer femtojoules)")
    return _dec(Decimal(int(fj)) / 1000)


def _g(x) -> str:
    """A number for the description: exact integers as such, others in short float form."""
    if x == INF:
        return "inf"
    f = Fraction(x)
    return str(f.numerator) if f.denominator == 1 and abs(f) < 10**6 else f"{float(f):g}"


def _area(node) -> str:
    a = node.get("area")
    return "" if a in (None, 0) else f"; area {a} ignored (not a cost in mapsolve)"


def _first(order: list[str], items) -> list[str]:
    return [t for t in order if t in items]


def build_architecture(a) -> tuple[dict, list[str], dict]:
    """(architecture dict, notes for the description, AccelForge names of every mesh axis)."""
    wl, src = a.wl, a.source
    notes: list[str] = []
    units = a.units()
    by_name = {e.name: e for e in wl.einsums}
    tensor_order = list(dict.fromkeys(t for e in wl.einsums for t in e.tensors))

    # --- which unit runs which Einsum, and the ops that say so in mapsolve ---------------------------
    runs_on: dict[str, list[str]] = {e.name: [u for u, (_, r, _, _) in units.items() if e.name in r]
                                    for e in wl.einsums}
    for e in wl.einsums:
        if not runs_on[e.name]:
            raise Refused(f"{src}: no !Compute node's `enabled:` allows Einsum {e.name}")
    for op in sorted({e.op for e in wl.einsums}):
        sets = {tuple(runs_on[e.name]) for e in wl.einsums if e.op == op}
        if len(sets) > 1:
            raise Refused(f"{src}: `enabled:` gives Einsums of op {op} different compute units ({sorted(sets)}); "
                          f"mapsolve chooses units by op, so it cannot express that")
    active = {u: v for u, v in units.items() if v[1]}
    for u, (i, _, _, _) in units.items():
        if u not in active:
            notes.append(f"Compute {u} runs none of these Einsums (its enabled: is false for all) and is left "
                         f"out.")
    clock = min(thr for _, _, _, thr in active.values())
    mhz = Fraction(clock) / 10**6
    if (mhz * 10**6).denominator != 1 or not Fraction(1, 1000) <= mhz <= 10**6:
        raise Refused(f"{src}: the derived clock, the slowest compute unit's {float(clock):g} ops/s as 1 op per "
                      f"cycle, is {float(clock):g} Hz: outside mapsolve's 1 kHz to 1 THz (frequency_mhz)")
    frequency = _dec(Decimal((mhz * 10**6).numerator) / 10**6)
    notes.append(f"Clock: {frequency} MHz, the slowest compute unit's throughput ({float(clock):g} ops/s) as one "
                 f"operation per cycle; every other throughput is divided by it.")

    levels: list[dict] = []
    unit_docs: list[dict] = []
    axes: dict[str, dict] = {}
    pending: list[tuple[str, dict, str]] = []   # (container, spatial entry, where)
    root = None
    used_names = {n["name"] for n in a.nodes}

    def served_units(i: int) -> list[str]:
        return [u for u, (j, _, _, _) in active.items() if j > i]

    def served_einsums(i: int) -> list:
        us = served_units(i)
        return [e for e in wl.einsums if any(u in us for u in runs_on[e.name])]

    def serves_field(i: int) -> dict:
        us = served_units(i)
        return {} if set(us) == set(active) else {"serves": us}

    def flags(container: str, sp: dict, where: str, below: list) -> tuple[bool, bool, str]:
        expr = sp.get("may_reuse", "All")
        mc = rd = False
        partial = []
        for e in below:
            s = tensor_set(expr, a.ctx(e), f"{where}.may_reuse (einsum {e.name})")
            if not isinstance(s, TensorSet):
                raise Refused(f"{where}.may_reuse: X.tensors is not supported here")
            ins = set(e.tensors[1:])
            mc |= bool(s.items & ins)
            rd |= e.output.tensor in s.items
            if s.items != set(e.tensors):
                partial.append(f"{e.name}: {', '.join(_first(e.tensors, s.items)) or 'nothing'}")
        note = ""
        if partial:
            note = (f"{container}.{sp['name']} may_reuse {expr}: AccelForge reuses across it only "
                    f"{'; '.join(partial)}; mapsolve's mesh multicasts {'every input' if mc else 'nothing'} and "
                    f"reduces {'every output' if rd else 'nothing'} along it (per-tensor reuse is not expressible; "
                    f"{'a looser model where it multicasts or reduces more than AccelForge allows' if mc or rd else 'exact'}).")
        return mc, rd, note

    def meshes(owner: str, i: int, below: list) -> tuple[list[dict], dict]:
        """Pass-through levels to insert before `owner`, and owner's mesh, from the pending fanouts."""
        if not pending:
            return [], {}
        if len(pending) > 2:
            raise Refused(f"{pending[2][2]}: more than two spatial fanouts between two memories is not "
                          f"supported (mapsolve meshes are 2-D)")
        parts = []
        for container, sp, where in pending:
            fan = a.uniform(sp.get("fanout"), below, f"{where}.fanout")
            if fan == INF or fan != int(fan) or fan < 1:
                raise Refused(f"{where}.fanout: {sp.get('fanout')!r} is not a positive integer")
            mc, rd, note = flags(container, sp, where, below)
            if note:
                notes.append(note)
            parts.append((container, sp["name"], int(fan), mc, rd))
        extra = []
        if len(parts) == 2 and parts[0][3:] != parts[1][3:]:
            c, d, fan, mc, rd = parts[0]
            name = f"{c}.{d}"
            while name in used_names:
                name += f"@{owner}"
            used_names.add(name)
            extra.append({"name": name, "capacity_words": 0, "read_pj": "0", "write_pj": "0",
                          "mesh": {"x": fan, "y": 1, "multicast": mc, "reduction": rd}, **serves_field(i),
                          "may_keep": []})
            axes[name] = {"x": [c, d]}
            notes.append(f"{c}'s fanouts {parts[0][1]} and {parts[1][1]} reuse differently: {c}.{d} is a "
                         f"pass-through level (capacity 0, 0 pJ, keeps nothing) carrying the {d} fanout as mesh x; "
                         f"{owner} carries {parts[1][1]} as mesh y.")
            parts = parts[1:]
            mesh = {"x": 1, "y": parts[0][2], "multicast": parts[0][3], "reduction": parts[0][4]}
            axes[owner] = {"y": list(parts[0][:2])}
        else:
            mesh = {"x": parts[0][2], "y": parts[1][2] if len(parts) == 2 else 1,
                    "multicast": parts[0][3], "reduction": parts[0][4]}
            axes[owner] = {"x": list(parts[0][:2]), **({"y": list(parts[1][:2])} if len(parts) == 2 else {})}
        return extra, mesh

    def fanouts(node, where: str) -> list:
        """A node's `spatial` fanouts (a Container's, or a Memory's or Compute's own: the same as a Container
        with them right above the node)."""
        sps = node.get("spatial") or []
        if not isinstance(sps, list):
            raise Refused(f"{where}.spatial must be a list")
        if sps and root is None:
            raise Refused(f"{where}: a fanout above the first memory is not supported")
        out = []
        for k, sp in enumerate(sps):
            w = f"{where}.spatial[{k}]"
            if not isinstance(sp, dict) or not isinstance(sp.get("name"), str):
                raise Refused(f"{w}: a fanout needs a name")
            for key in sp:
                if key not in {"name", "fanout", "may_reuse"}:
                    raise Refused(f"{w}.{key} is not supported (the importer converts name, fanout, may_reuse)")
            out.append((node["name"], sp, w))
        return out

    for i, node in enumerate(a.nodes):
        where = f"{src}: arch.nodes[{i}] ({node['name']})"
        if node.tag == "Container":
            pending.extend(fanouts(node, where))
            continue
        if node.tag == "Compute":
            if node["name"] not in active:
                continue
            if root is None:
                raise Refused(f"{where}: a compute node above the first memory is not supported")
            _, runs, energy, thr = active[node["name"]]
            below = [by_name[n] for n in runs]
            saved = list(pending)
            pending.extend(fanouts(node, where))   # its own fanout replicates only itself
            extra, mesh = meshes(node["name"], i, below)
            pending[:] = saved        # fanouts above a compute node also replicate the nodes below it
            for lv in extra:
                lv["serves"] = [node["name"]]
            levels.extend(extra)
            per_cycle = _frac(Fraction(thr) / Fraction(clock), f"{where}: compute throughput")
            cost = {"energy_pj": _pj(energy, Fraction(1), f"{where}: compute energy"), "per_cycle": per_cycle}
            unit_docs.append({"name": node["name"], **({"mesh": mesh} if mesh else {}),
                              "ops": {op: dict(cost) for op in sorted({e.op for e in below})}})
            notes.append(f"Compute {node['name']} runs {', '.join(runs)} (enabled: {node.get('enabled', True)}): "
                         f"{_g(energy)} J per op = {cost['energy_pj']} pJ, {_g(thr)} ops/s = {per_cycle} per "
                         f"cycle{_area(node)}.")
            continue
        # a Memory (its own fanout replicates it and everything below it)
        pending.extend(fanouts(node, where))
        a.zero_leak(node, where)
        below = served_einsums(i)
        acts = a.actions(node, where, ("read", "write"), below)
        lv: dict = {"name": node["name"]}
        for act in ("read", "write"):
            energy, _, bpa = acts[act]
            lv[f"{act}_pj"] = _pj(energy, Fraction(a.word) / Fraction(bpa), f"{where}: {act} energy")
        bw = {}
        for act in ("read", "write"):
            _, thr, bpa = acts[act]
            if thr != INF:
                if thr <= 0:
                    raise Refused(f"{where}: {act} throughput must be positive")
                bw[act] = Fraction(thr) * Fraction(bpa) / a.word / Fraction(clock)
        if len(bw) == 2 and bw["read"] == bw["write"]:
            lv["bandwidth"] = _frac(bw["read"], f"{where}: throughput")
        else:
            for act, v in bw.items():
                lv[f"{act}_bandwidth"] = _frac(v, f"{where}: {act} throughput")
            if len(bw) == 2:
                notes.append(f"{node['name']}: read and write throughputs differ ({bw['read']} and {bw['write']} "
                             f"words/cycle): AccelForge adds the two times, mapsolve takes the slower of two "
                             f"ports (a lower latency where both are busy).")
        conv = "; ".join(
            f"{act} {_g(acts[act][0])} J per action of {_g(acts[act][2])} bit(s) = {lv[act + '_pj']} pJ per "
            f"{a.word}-bit word, "
            + (f"{_g(acts[act][1])} actions/s = {bw[act]} words/cycle" if act in bw else "unlimited throughput")
            for act in ("read", "write"))
        if root is None:
            _root(node, where, a, below)
            notes.append(f"{node['name']}: {conv}; size inf: the backing store (keep ~Intermediates, may_keep All: "
                         f"every input and output, and unfused intermediates){_area(node)}.")
            root = node["name"]
            if pending:
                raise Refused(f"{where}: a fanout above the first memory is not supported")
            levels.append(lv)
            continue
        extra, mesh = meshes(node["name"], i, below)
        pending.clear()
        levels.extend(extra)
        if mesh:
            lv["mesh"] = mesh
        lv.update(serves_field(i))
        _keeps(node, where, a, below, root, lv, tensor_order, notes)
        _size(node, where, a, below, lv)
        notes.append(f"{node['name']}: {conv}; size {node.get('size')} = "
                     f"{str(lv['capacity_bits']) + ' bits' if 'capacity_bits' in lv else 'unbounded'}{_area(node)}.")
        levels.append(lv)
    if root is None:
        raise Refused(f"{src}: arch.nodes has no !Memory node")
    arch = {"frequency_mhz": frequency, "levels": levels, "compute_units": unit_docs}
    return arch, notes, axes


def _tensor_sets(node, where, a, e):
    tdoc = node.get("tensors") or {}
    if not isinstance(tdoc, dict):
        raise Refused(f"{where}.tensors must be a mapping with keep and/or may_keep")
    for k in tdoc:
        if k not in ("keep", "may_keep"):
            raise Refused(f"{where}.tensors.{k} is not supported (the importer converts keep and may_keep)")
    ctx = a.ctx(e)
    keep_expr = tdoc.get("keep")
    may_expr = tdoc.get("may_keep", "All" if keep_expr is None else "Nothing")
    keep = tensor_set(keep_expr if keep_expr is not None else "Nothing", ctx, f"{where}.tensors.keep (einsum {e.name})")
    may = tensor_set(may_expr, ctx, f"{where}.tensors.may_keep (einsum {e.name})")
    return keep, may, keep_expr, may_expr


def _root(node, where, a, below) -> None:
    size = node.get("size")
    if size is None or a.uniform(size, below, f"{where}.size") != INF:
        raise Refused(f"{where}.size: the first memory is mapsolve's backing store and must be size: inf")
    for e in below:
        keep, may, ke, me = _tensor_sets(node, where, a, e)
        inter = e.sets["Intermediates"].items
        if isinstance(keep, HeldBy) or isinstance(may, HeldBy) or keep.items != set(e.tensors) - inter \
                or (keep.items | may.items) != set(e.tensors):
            raise Refused(f"{where}.tensors: keep {ke!r} / may_keep {me!r} is not supported for the backing store "
                          f"(mapsolve's holds every input and output and may hold intermediates: keep "
                          f"~Intermediates, may_keep All)")


def _keeps(node, where, a, below, root: str, lv: dict, order: list[str], notes: list[str]) -> None:
    keep_in: dict[str, list[str]] = {}
    allow_in: dict[str, list[str]] = {}
    users: dict[str, list[str]] = {}
    held_note = False
    for e in below:
        keep, may, ke, _ = _tensor_sets(node, where, a, e)
        if isinstance(may, HeldBy):
            raise Refused(f"{where}.tensors.may_keep: X.tensors is not supported in may_keep")
        if isinstance(keep, HeldBy):
            if not (keep.complement and keep.node == root):
                raise Refused(f"{where}.tensors.keep {ke!r}: of X.tensors only ~{root}.tensors (the fused "
                              f"intermediates) is supported")
            held_note = ke
            keep_items = frozenset()
        else:
            keep_items = keep.items
        for t in e.tensors:
            users.setdefault(t, []).append(e.name)
            if t in keep_items:
                keep_in.setdefault(t, []).append(e.name)
            if t in keep_items or t in may.items:
                allow_in.setdefault(t, []).append(e.name)
    if held_note:
        notes.append(f"{node['name']}: keep {held_note} (tensors {root} does not hold: the fused "
                     f"intermediates) is mapsolve's fusion rule: a fused group's intermediates live at its fusion "
                     f"level, which the mapper chooses among the on-chip levels that may keep them.")
    all_t = [t for t in order if t in users]
    allowed = [t for t in all_t if t in allow_in]
    must = [t for t in all_t if keep_in.get(t) == users[t]]
    if allowed != all_t:
        lv["may_keep"] = allowed
    if must:
        lv["must_keep"] = must
    for t in all_t:
        if t in keep_in and keep_in[t] != users[t]:
            notes.append(f"{node['name']}: AccelForge must keep {t} here in {', '.join(keep_in[t])} but not in "
                         f"{', '.join(x for x in users[t] if x not in keep_in[t])}; mapsolve's keep rules are per "
                         f"tensor, so it may keep {t} here (not must).")
        elif t in allow_in and allow_in[t] != users[t]:
            notes.append(f"{node['name']}: AccelForge lets {', '.join(allow_in[t])} keep {t} here but not "
                         f"{', '.join(x for x in users[t] if x not in allow_in[t])}; mapsolve allows every Einsum "
                         f"to (a looser model).")


def _size(node, where, a, below, lv: dict) -> None:
    if node.get("size") is None:
        raise Refused(f"{where}.size is required")
    sizes = {}
    for e in below:
        s = number(node["size"], a.ctx(e), f"{where}.size (einsum {e.name})")
        if s == INF:
            sizes[e.name] = INF
            continue
        if s < 0 or s != int(s):
            raise Refused(f"{where}.size: {s} is not a whole number of bits")
        sizes[e.name] = int(s)
    if not sizes:
        lv["capacity_bits"] = 0
        return
    if INF in sizes.values():
        if set(sizes.values()) != {INF}:
            raise Refused(f"{where}.size: unbounded for some Einsums and bounded for others")
        return   # unbounded: no capacity field
    cap = max(sizes.values())
    allowed = set(lv.get("may_keep", [t for e in below for t in e.tensors]))
    for e in below:
        if sizes[e.name] != cap and allowed & set(e.tensors):
            raise Refused(f"{where}.size: {sizes[e.name]} bits for Einsum {e.name} but {cap} for others, and "
                          f"{e.name} may keep tensors here (mapsolve's capacity is one number per level)")
    lv["capacity_bits"] = cap
