"""Large, realistic instances and the transformations of tests/test_large_metamorphic.py, all seeded.

Sizes are those of real attention layers and FFNs: at least 2^34 operations per Einsum, sequences up to 2^20,
up to 96 heads, head dims 64/128, and bounds that are not powers of two (96 heads, 3·2^k sequences, 11008 FFN
dims). Nothing here calls the solver; everything is built from the pydantic spec classes and checked with the
evaluator only.

* `instance(seed)`            one instance: a lone matmul/QK/AV or a 2-3-Einsum window of the attention cascade
                              (or a 2-matmul FFN chain), on a FuseMax-cloud-like, an edge-like (the shape of
                              shared/cases/qk_h8_false_optimal.json) or a plain 3-level architecture.
* `with_bound(inst, r, b)`    the same instance with rank r's bound replaced.
* `replicate(m, r, k)`        a mapping with a temporal loop r:k added outermost at DRAM (the group's shared loops
                              for a fused group): the mapping of the instance with r k times larger.
* `roomier(inst, rng)`        more capacity or bandwidth at one level (every mapping stays valid).
* `with_extra_level(inst, rng)` / `relaxed_keep(inst)`   more mapping options; `lift_mapping` carries a mapping over.
* `random_mapping(inst, rng)` a random valid mapping (repaired until the evaluator accepts it), and `improve`
                              (an evaluator-only local search from it): no CP-SAT involved.
"""
from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from fractions import Fraction
from typing import Optional

from mapsolve.model import MappingError, evaluate
from mapsolve.model.nest import group_intermediates
from mapsolve.model.spec import (EinsumMapping, FusedGroup, Instance, LevelMapping, Loop, Mapping, SharedLoop,
                                 SpatialLoop)
from mapsolve.solver.paths import energy_in_units

MIN_OPS = 2**34
MAX_OPS = 2**62

SEQ = [2**12, 2**13, 2**14, 2**15, 2**16, 2**18, 2**20, 3 * 2**10, 3 * 2**12, 3 * 2**14, 3 * 2**16, 3 * 2**18]
HEADS = [8, 12, 16, 32, 40, 64, 96]
HEAD_DIMS = [64, 128]
MODEL_DIMS = [4096, 5120, 6144, 8192]
FFN_DIMS = [11008, 11008, 11008, 13824, 14336, 16384]
BATCHES = [2, 3, 4, 8, 16]


# --------------------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------------------
def _E(name, op, out, inputs):
    return {"name": name, "op": op, "output": {"tensor": out[0], "ranks": list(out[1])},
            "inputs": [{"tensor": t, "ranks": list(r)} for t, r in inputs]}


CASCADE = {   # the 3-pass attention cascade of instances/llm_4k.json
    "QK": _E("QK", "mac", ("QK", "HMP"), [("Q", "HEP"), ("K", "HEM")]),
    "MX": _E("MX", "max", ("MX", "HP"), [("QK", "HMP")]),
    "SN": _E("SN", "exp", ("SN", "HMP"), [("QK", "HMP"), ("MX", "HP")]),
    "SD": _E("SD", "add", ("SD", "HP"), [("SN", "HMP")]),
    "A": _E("A", "div", ("A", "HMP"), [("SN", "HMP"), ("SD", "HP")]),
    "AV": _E("AV", "mac", ("AV", "HFP"), [("A", "HMP"), ("V", "HFM")]),
}
ORDER = ["QK", "MX", "SN", "SD", "A", "AV"]
STATIONARY = {"QK": "K", "AV": "V", "MM": "W", "F1": "W1", "F2": "W2"}   # what an edge PE register holds


def _shuffled(rng: random.Random, ranks: str) -> list[str]:
    out = list(ranks)
    rng.shuffle(out)
    return out


def _points(ranks: dict[str, int], einsums) -> list[int]:
    out = []
    for e in einsums:
        space = set(e["output"]["ranks"]).union(*(set(i["ranks"]) for i in e["inputs"]))
        out.append(math.prod(ranks[r] for r in space))
    return out


KINDS = ["qk", "cascade", "av", "matmul", "cascade", "qk", "ffn", "cascade"]


def workload(rng: random.Random, kind: str, three: bool = False) -> tuple[dict, str, str]:
    """(workload dict, kind, batch rank): the batch rank indexes every tensor of every Einsum. A cascade has
    2 Einsums, or 3 with `three` (those take several times longer to solve: segment models of 3 Einsums)."""
    if kind in ("qk", "av", "cascade"):
        ranks = {"H": rng.choice(HEADS), "E": rng.choice(HEAD_DIMS), "P": rng.choice(SEQ), "M": rng.choice(SEQ)}
        ranks["F"] = ranks["E"] if rng.random() < 0.7 else rng.choice(HEAD_DIMS)
        if kind == "qk":
            names = ["QK"]
        elif kind == "av":
            names = ["AV"]
        else:
            n = 3 if three else 2
            start = rng.randrange(len(ORDER) - n + 1)
            names = ORDER[start:start + n]
        einsums = []
        for nm in names:
            e = json.loads(json.dumps(CASCADE[nm]))
            for ref in (e["output"], *e["inputs"]):
                ref["ranks"] = _shuffled(rng, ref["ranks"])
            einsums.append(e)
        batch = "H"
        grow = ["P", "M", "H"]
    elif kind == "matmul":
        ranks = {"B": rng.choice(BATCHES), "M": rng.choice(SEQ[:6] + SEQ[7:10]), "K": rng.choice(MODEL_DIMS),
                 "N": rng.choice(FFN_DIMS + MODEL_DIMS)}
        einsums = [_E("MM", "mac", ("Z", _shuffled(rng, "BMN")), [("X", _shuffled(rng, "BMK")),
                                                                   ("W", _shuffled(rng, "BKN"))])]
        batch = "B"
        grow = ["M"]
    else:  # a batched FFN: two matmuls, the first one's output feeds the second
        ranks = {"B": rng.choice(BATCHES), "M": rng.choice([2048, 4096, 3 * 2**10, 3 * 2**11]),
                 "D": rng.choice(MODEL_DIMS), "G": rng.choice(FFN_DIMS)}
        einsums = [_E("F1", "mac", ("Y", _shuffled(rng, "BMG")), [("X", _shuffled(rng, "BMD")),
                                                                   ("W1", _shuffled(rng, "BDG"))]),
                   _E("F2", "mac", ("Z", _shuffled(rng, "BMD")), [("Y", _shuffled(rng, "BMG")),
                                                                   ("W2", _shuffled(rng, "BGD"))])]
        batch = "B"
        grow = ["M"]
    # at least 2^34 operations in every Einsum: double a growable rank (sequence first) until it is so
    i = 0
    while min(_points(ranks, einsums)) < MIN_OPS:
        r = grow[i % len(grow)]
        i += 1
        if r in ("P", "M") and ranks[r] * 2 > 2**20:
            continue
        if r == "H" and ranks[r] >= 96:
            continue
        ranks[r] *= 2
        if i > 200:
            raise AssertionError("cannot reach 2^34 operations")
    assert max(_points(ranks, einsums)) <= MAX_OPS
    return {"ranks": ranks, "word_bits": 16, "einsums": einsums}, kind, batch


def _tensors(wl: dict) -> list[str]:
    out = []
    for e in wl["einsums"]:
        for ref in (e["output"], *e["inputs"]):
            if ref["tensor"] not in out:
                out.append(ref["tensor"])
    return out


# --------------------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------------------
def _pj(rng: random.Random, lo: float, hi: float) -> str:
    return str(Decimal(rng.randint(int(lo * 1000), int(hi * 1000))).scaleb(-3))


def architecture(rng: random.Random, wl: dict) -> tuple[dict, str]:
    ops = sorted({e["op"] for e in wl["einsums"]})
    family = rng.choice(["cloud", "cloud", "edge", "plain"])
    dram = {"name": "DRAM", "read_pj": _pj(rng, 40, 120), "write_pj": _pj(rng, 40, 120)}
    if family == "cloud":   # instances/llm_4k.json, with the array, buffer and DRAM varied
        n = rng.choice([32, 64, 128, 256])
        dram["bandwidth"] = rng.choice(["33554432/146875", "2097152/78125", "128", "512/3"])
        levels = [dram,
                  {"name": "GLB", "read_pj": _pj(rng, 1, 4), "write_pj": _pj(rng, 1, 4),
                   "bandwidth": rng.choice(["1024", "256", "96"]),
                   "capacity_bits": rng.choice([2, 4, 8, 16, 32]) * 2**23},
                  {"name": "PE", "capacity_words": rng.choice([16, 32, 64, 128]), "read_pj": _pj(rng, 0.3, 1),
                   "write_pj": _pj(rng, 0.3, 1), "mesh": {"x": n, "y": n}, "serves": ["mac2d"]},
                  {"name": "VR", "capacity_words": 64, "read_pj": "0.653", "write_pj": "0.570",
                   "mesh": {"x": n, "y": 1}, "serves": ["vec1d"]}]
        units = [{"name": "mac2d", "ops": {"mac": {"energy_pj": "17.16"}, "exp": {"energy_pj": "111.3"},
                                           "add": {"energy_pj": "8.34"}, "max": {"energy_pj": "0.028"}}},
                 {"name": "vec1d", "ops": {"max": {"energy_pj": "0.028"}, "add": {"energy_pj": "8.34"},
                                           "sub": {"energy_pj": "8.34"}, "mul": {"energy_pj": "17.16"},
                                           "div": {"energy_pj": "36.25"}, "exp": {"energy_pj": "111.3"}}}]
    elif family == "edge":  # shared/cases/qk_h8_false_optimal.json: multicast-only X fanout, 1-word registers
        n = rng.choice([8, 16, 32])
        dram["bandwidth"] = rng.choice(["307", "64", "1000/3"])
        stationary = sorted({STATIONARY[e["name"]] for e in wl["einsums"] if e["name"] in STATIONARY})
        levels = [dram,
                  {"name": "GLB", "capacity_bits": rng.choice([1, 2, 4, 8]) * 2**23, "read_pj": _pj(rng, 10, 40),
                   "write_pj": _pj(rng, 10, 40), "bandwidth": rng.choice(["768", "256"])},
                  {"name": "PEX", "capacity_words": 0, "read_pj": "0", "write_pj": "0", "may_keep": [],
                   "mesh": {"x": n, "y": 1, "multicast": True, "reduction": False}, "serves": ["mac"]},
                  {"name": "Reg", "capacity_words": 1, "read_pj": "0", "write_pj": "0", "may_keep": stationary,
                   "must_keep": stationary, "serves": ["mac"],
                   "mesh": {"x": 1, "y": n, "multicast": False, "reduction": True}}]
        units = [{"name": "mac", "ops": {"mac": {"energy_pj": _pj(rng, 0.05, 0.5)}}},
                 {"name": "scalar", "ops": {op: {"energy_pj": "0.5", "per_cycle": "16"}
                                            for op in ("copy", "max", "exp", "add", "sub", "div")}}]
    else:                   # DRAM -> GLB -> one register level, one unit that runs every op
        x, y = rng.choice([(16, 16), (32, 32), (64, 64), (128, 1), (96, 1), (12, 12)])
        dram["bandwidth"] = rng.choice(["64", "256", "1/2", "1000/7"])
        levels = [dram,
                  {"name": "GLB", "capacity_words": rng.choice([2**18, 2**20, 3 * 2**20, 2**22]),
                   "read_pj": _pj(rng, 1, 10), "write_pj": _pj(rng, 1, 10), "bandwidth": rng.choice(["512", "64"])},
                  {"name": "RF", "capacity_words": rng.choice([4, 16, 64, 256]), "read_pj": _pj(rng, 0.1, 1),
                   "write_pj": _pj(rng, 0.1, 1),
                   "mesh": {"x": x, "y": y, "multicast": rng.random() < 0.8, "reduction": rng.random() < 0.8}}]
        units = [{"name": "pe", "ops": {op: {"energy_pj": _pj(rng, 0.02, 20),
                                             "per_cycle": rng.choice(["1", "2", "1/2"])} for op in ops}}]
    return {"levels": levels, "compute_units": units, "frequency_mhz": "1000"}, family


def instance(seed: int, objective: Optional[str] = None) -> tuple[Instance, dict]:
    """A large instance from `seed`, and facts about it: kind, family, batch rank, objective."""
    rng = random.Random(seed)
    wl, kind, batch = workload(rng, KINDS[seed % len(KINDS)], three=seed % 32 == 23)
    arch, family = architecture(rng, wl)
    objective = objective or rng.choice(["energy", "energy", "latency"])
    dram = arch["levels"][0]
    if objective.startswith("latency") and Fraction(dram["bandwidth"]).denominator > 1000:
        # the solver refuses exact DRAM transfer times words x 146875 / 33554432 past 2^62 (the llm_4k DRAM at
        # sequence 64k already): test_large_metamorphic.py::test_latency_refusal documents it; here, round
        dram["bandwidth"] = str(round(Fraction(dram["bandwidth"])))
    inst = Instance.model_validate({"name": f"large-{seed}", "description": f"tests/large_instances.py seed "
                                    f"{seed}: {kind} on {family}", "workload": wl, "architecture": arch,
                                    "solver": {"objective": objective}})
    return inst, {"seed": seed, "kind": kind, "family": family, "batch": batch, "objective": objective}


def to_json(inst: Instance) -> str:
    return json.dumps(inst.model_dump(mode="json", exclude_defaults=True))


def mapping_json(mapping: Optional[Mapping]) -> str:
    return "null" if mapping is None else json.dumps(mapping.model_dump(mode="json", exclude_defaults=True))


# --------------------------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------------------------
def _edit(inst: Instance, fn, suffix: str) -> Instance:
    d = inst.model_dump(mode="json")
    fn(d)
    d["name"] = f"{inst.name}-{suffix}"
    return Instance.model_validate(d)


def with_bound(inst: Instance, rank: str, bound: int) -> Instance:
    def fn(d):
        d["workload"]["ranks"][rank] = bound
    return _edit(inst, fn, f"{rank}{bound}")


def replicate(mapping: Mapping, inst: Instance, rank: str, k: int) -> tuple[Mapping, bool]:
    """A mapping of `inst` (whose `rank` is k times that of the instance `mapping` maps) that runs the small
    mapping k times: rank:k outermost at DRAM, in the group's shared loops for a fused group of several Einsums
    (docs/model.md §2: the levels above the fusion level carry only shared loops). A loop over `rank` already at
    DRAM is merged into the new one (a level has at most one loop per rank). Returns (mapping, exact): exact
    when that merge moved nothing past a loop of factor > 1, so the nest is the small nest inside rank:k and
    every count is exactly k times the small mapping's (every tensor is indexed by `rank`)."""
    dram = inst.architecture.levels[0].name
    exact = True

    def merged(loops, level_of):
        nonlocal exact
        at_dram = [lp for lp in loops if level_of(lp) == dram]
        same = [i for i, lp in enumerate(at_dram) if lp.rank == rank]
        f = 1
        if same:
            f = at_dram[same[0]].factor
            if f > 1 and any(lp.factor > 1 for lp in at_dram[:same[0]]):
                exact = False
        return k * f, [lp for lp in loops if not (level_of(lp) == dram and lp.rank == rank)]

    multi = {nm for g in mapping.groups if len(g.einsums) > 1 for nm in g.einsums}
    groups = []
    for g in mapping.groups:
        if len(g.einsums) > 1:
            f, rest = merged(list(g.shared_loops), lambda lp: lp.level)
            g = FusedGroup(einsums=g.einsums, fusion_level=g.fusion_level,
                           shared_loops=[SharedLoop(level=dram, rank=rank, factor=f), *rest])
        groups.append(g)
    ems = []
    for em in mapping.einsums:
        levels = list(em.levels)
        if em.einsum not in multi:
            top = levels[0]
            f, rest = merged(list(top.temporal), lambda lp: dram)
            levels[0] = LevelMapping(level=top.level, keep=top.keep, spatial=top.spatial,
                                     temporal=[Loop(rank=rank, factor=f), *rest])
        ems.append(EinsumMapping(einsum=em.einsum, compute_unit=em.compute_unit, levels=levels))
    return Mapping(einsums=ems, groups=groups), exact


def roomier(inst: Instance, rng: random.Random) -> tuple[Instance, str]:
    """More capacity at an on-chip level, or more bandwidth (possibly unlimited) at any level."""
    d = inst.model_dump(mode="json")
    levels = d["architecture"]["levels"]
    bounded = [i for i, lv in enumerate(levels) if lv.get("capacity_words") or lv.get("capacity_bits")]
    limited = [i for i, lv in enumerate(levels) if lv.get("bandwidth") is not None]
    what = rng.choice(["capacity", "bandwidth"]) if bounded and limited else "capacity" if bounded else "bandwidth"
    if what == "capacity":
        i = rng.choice(bounded)
        lv = levels[i]
        f = rng.choice([2, 3, 4, 16])
        key = "capacity_words" if lv.get("capacity_words") else "capacity_bits"
        lv[key] = lv[key] * f + rng.choice([0, 1, 7])
        change = f"{lv['name']} {key} x{f}"
    else:
        limited = [i for i, lv in enumerate(levels) if lv.get("bandwidth") is not None]
        lv = levels[rng.choice(limited)]
        if rng.random() < 0.25:
            del lv["bandwidth"]
            change = f"{lv['name']} bandwidth unlimited"
        else:
            f = rng.choice([Fraction(2), Fraction(3, 2), Fraction(8)])
            lv["bandwidth"] = str(Fraction(lv["bandwidth"]) * f)
            change = f"{lv['name']} bandwidth x{f}"
    d["name"] = f"{inst.name}-roomier"
    return Instance.model_validate(d), change


def with_extra_level(inst: Instance, rng: random.Random) -> tuple[Instance, str]:
    """A new single-instance buffer where it changes nothing for a mapping that keeps nothing in it: between
    DRAM and the first on-chip level, or below an innermost level whose compute mesh is 1x1 (serving that
    level's units only)."""
    d = inst.model_dump(mode="json")
    arch = inst.architecture
    levels = d["architecture"]["levels"]
    spots = []
    if len(arch.levels) == 1 or (arch.levels[1].mesh.size == 1 and arch.levels[1].serves is None):
        spots.append((1, None))
    for u in arch.compute_units:
        path = arch.path(u.name)
        if u.mesh.size == 1 and len(path) > 1:
            spots.append((path[-1] + 1, [x.name for x in arch.compute_units if arch.path(x.name)[-1] == path[-1]]))
    at, serves = rng.choice(sorted(spots, key=str))
    new = {"name": "XB", "read_pj": _pj(rng, 0.05, 3), "write_pj": _pj(rng, 0.05, 3),
           "capacity_words": rng.choice([1, 8, 64, 2**12, 2**16, 2**20])}
    if rng.random() < 0.5:
        new["bandwidth"] = str(rng.choice([16, 256, 2048]))
    if serves is not None:
        new["serves"] = serves
    levels.insert(at, new)
    d["name"] = f"{inst.name}-xb"
    where = "below DRAM" if at == 1 else f"below {levels[at - 1]['name']} (serves {serves})"
    return Instance.model_validate(d), f"extra level XB ({new['capacity_words']} words) {where}"


def relaxed_keep(inst: Instance) -> Optional[tuple[Instance, str]]:
    """Every may_keep and must_keep restriction dropped (None if there is none)."""
    d = inst.model_dump(mode="json")
    changed = []
    for lv in d["architecture"]["levels"]:
        if lv.get("may_keep") is not None or lv.get("must_keep"):
            changed.append(lv["name"])
            lv["may_keep"] = None
            lv["must_keep"] = []
    if not changed:
        return None
    d["name"] = f"{inst.name}-relaxed"
    return Instance.model_validate(d), f"may_keep/must_keep dropped at {', '.join(changed)}"


def lift_mapping(mapping: Mapping, old: Instance, new: Instance) -> Mapping:
    """`mapping` of `old` on `new`, which has the same levels plus maybe new ones: keep nothing and loop
    nothing at a new level."""
    ems = []
    for em in mapping.einsums:
        by = {lm.level: lm for lm in em.levels}
        levels = [by.get(new.architecture.levels[i].name, LevelMapping(level=new.architecture.levels[i].name))
                  for i in new.architecture.path(em.compute_unit)]
        ems.append(EinsumMapping(einsum=em.einsum, compute_unit=em.compute_unit, levels=levels))
    return Mapping(einsums=ems, groups=mapping.groups)


# --------------------------------------------------------------------------------------------------------------
# Costs
# --------------------------------------------------------------------------------------------------------------
def cost(inst: Instance, mapping: Mapping, objective: str, unit: int = 1) -> int:
    """The first objective component of a mapping as the solver prices it (energy in units of `unit` fJ)."""
    res = evaluate(inst, mapping)
    if objective.split(",")[0] == "energy":
        return energy_in_units(inst, res, unit)[0]
    return res.latency_cycles


# --------------------------------------------------------------------------------------------------------------
# Random valid mappings (no solver)
# --------------------------------------------------------------------------------------------------------------
def _factorize(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


class _State:
    """A mutable mapping: per Einsum, per path position, ordered temporal loops and spatial loops (as lists of
    [rank, factor] / [rank, factor, axis]), keep sets; groups with a fusion position and shared loops."""

    def __init__(self, inst: Instance):
        self.inst = inst
        self.units: dict[str, str] = {}
        self.groups: list[dict] = []          # {"einsums", "F" (level index) or None, "shared": [[li, r, f]]}
        self.temporal: dict[str, list[list]] = {}   # einsum -> per pos [[r, f], ...]
        self.spatial: dict[str, list[list]] = {}    # einsum -> per pos [[r, f, axis], ...]
        self.keep: dict[str, list[set]] = {}

    def copy(self) -> "_State":
        s = _State(self.inst)
        s.units = dict(self.units)
        s.groups = [{"einsums": list(g["einsums"]), "F": g["F"], "shared": [list(x) for x in g["shared"]],
                     "inter": g["inter"]} for g in self.groups]
        s.temporal = {e: [[list(lp) for lp in pos] for pos in v] for e, v in self.temporal.items()}
        s.spatial = {e: [[list(lp) for lp in pos] for pos in v] for e, v in self.spatial.items()}
        s.keep = {e: [set(k) for k in v] for e, v in self.keep.items()}
        return s

    def group_of(self, name: str) -> dict:
        return next(g for g in self.groups if name in g["einsums"])

    def fpos(self, name: str) -> Optional[int]:
        g = self.group_of(name)
        if g["F"] is None:
            return None
        return self.inst.architecture.path(self.units[name]).index(g["F"])

    def mapping(self) -> Mapping:
        arch = self.inst.architecture
        ems = []
        for e in self.inst.workload.einsums:
            path = arch.path(self.units[e.name])
            levels = []
            for pos, li in enumerate(path):
                levels.append(LevelMapping(
                    level=arch.levels[li].name,
                    keep=[t for t in e.tensors if t in self.keep[e.name][pos]],
                    temporal=[Loop(rank=r, factor=f) for r, f in self.temporal[e.name][pos] if f > 1],
                    spatial=[SpatialLoop(rank=r, factor=f, axis=a) for r, f, a in self.spatial[e.name][pos] if f > 1]))
            ems.append(EinsumMapping(einsum=e.name, compute_unit=self.units[e.name], levels=levels))
        groups = [FusedGroup(einsums=g["einsums"], fusion_level=arch.levels[g["F"]].name,
                             shared_loops=[SharedLoop(level=arch.levels[li].name, rank=r, factor=f)
                                           for li, r, f in g["shared"] if f > 1])
                  for g in self.groups if g["F"] is not None]
        return Mapping(einsums=ems, groups=groups)


def _fusion_candidates(inst: Instance, names: list[str], units: dict[str, str]) -> list[int]:
    arch = inst.architecture
    paths = [arch.path(units[nm]) for nm in names]
    inter = group_intermediates(inst.workload, names)
    out = []
    for li in paths[0][1:]:
        if not all(li in p and p[:p.index(li)] == paths[0][:paths[0].index(li)] for p in paths):
            continue
        if any(arch.levels[x].mesh.size != 1 for x in paths[0][1:paths[0].index(li) + 1]):
            continue
        lv = arch.levels[li]
        if lv.may_keep is not None and not inter <= set(lv.may_keep):
            continue
        out.append(li)
    return out


def _shared_ranks(inst: Instance, names: list[str]) -> list[str]:
    by = {e.name: e for e in inst.workload.einsums}
    common = set(by[names[0]].space)
    for nm in names[1:]:
        common &= set(by[nm].space)
    consumers: dict[str, set[str]] = {}
    for e in inst.workload.einsums:
        for t in e.inputs:
            consumers.setdefault(t.tensor, set()).add(e.name)
    forbidden = set()
    for nm in names:
        e = by[nm]
        if consumers.get(e.output.tensor, set()) & set(names):
            forbidden |= set(e.space) - set(e.output.ranks)
    return sorted(common - forbidden)


def random_state(inst: Instance, rng: random.Random, fuse: float = 0.5) -> _State:
    wl, arch = inst.workload, inst.architecture
    s = _State(inst)
    names = [e.name for e in wl.einsums]
    for e in wl.einsums:
        s.units[e.name] = rng.choice([u.name for u in arch.compute_units if e.op in u.ops])
    chunks, cur = [], [names[0]]
    for nm in names[1:]:
        if rng.random() < 0.7:
            cur.append(nm)
        else:
            chunks.append(cur)
            cur = [nm]
    chunks.append(cur)
    for chunk in chunks:
        cands = _fusion_candidates(inst, chunk, s.units) if len(chunk) > 1 else []
        if cands and rng.random() < fuse:
            F = rng.choice(cands)
            top = arch.path(s.units[chunk[0]])
            above = top[:top.index(F)]
            shared = []
            for r in _shared_ranks(inst, chunk):
                rest = wl.ranks[r]
                for li in above:
                    f = math.prod(p for p in _factorize(rest) if rng.random() < 0.6)
                    shared.append([li, r, f])
                    rest //= f
            rng.shuffle(shared)
            shared.sort(key=lambda x: above.index(x[0]))
            s.groups.append({"einsums": chunk, "F": F, "shared": shared,
                             "inter": group_intermediates(wl, chunk)})
        else:
            s.groups.extend({"einsums": [nm], "F": None, "shared": [], "inter": frozenset()} for nm in chunk)
    for e in wl.einsums:
        g = s.group_of(e.name)
        path = arch.path(s.units[e.name])
        n = len(path)
        fpos = s.fpos(e.name) or 0
        unit = arch.unit(s.units[e.name])
        fed = [arch.levels[path[p + 1]].mesh if p + 1 < n else unit.mesh for p in range(n)]
        budget = {(p, a): getattr(fed[p], a) for p in range(n) for a in "xy"}
        temporal = [[] for _ in range(n)]
        spatial = [[] for _ in range(n)]
        for r in e.space:
            rest = wl.ranks[r] // math.prod(f for _, rr, f in g["shared"] if rr == r)
            tf = [1] * n
            sf: dict[tuple[int, str], int] = {}
            for p in _factorize(rest):
                # outer levels more likely: the inner ones are small
                pos = min(rng.randrange(fpos, n), rng.randrange(fpos, n))
                if rng.random() < 0.35:
                    pos2 = rng.randrange(fpos, n)
                    axis = rng.choice("xy")
                    if budget[(pos2, axis)] >= p:
                        budget[(pos2, axis)] //= p
                        sf[(pos2, axis)] = sf.get((pos2, axis), 1) * p
                        continue
                tf[pos] *= p
            for pos in range(n):
                temporal[pos].append([r, tf[pos]])
            for (pos, axis), f in sf.items():
                spatial[pos].append([r, f, axis])
        for pos in range(n):
            rng.shuffle(temporal[pos])
        keep = []
        for pos, li in enumerate(path):
            lv = arch.levels[li]
            ks = set()
            for t in e.tensors:
                if pos == 0:
                    k = t not in g["inter"]
                elif t in g["inter"]:
                    k = pos == s.fpos(e.name)
                elif t in lv.must_keep:
                    k = True
                elif lv.may_keep is not None and t not in lv.may_keep:
                    k = False
                else:
                    k = rng.random() < 0.5
                if k:
                    ks.add(t)
            keep.append(ks)
        s.temporal[e.name], s.spatial[e.name], s.keep[e.name] = temporal, spatial, keep
    _sync_shared_keeps(s)
    return s


def _sync_shared_keeps(s: _State) -> None:
    """In a fused group every member that uses a tensor keeps it at the same levels at and above F: the first
    such member decides."""
    arch = s.inst.architecture
    by = {e.name: e for e in s.inst.workload.einsums}
    for g in s.groups:
        if g["F"] is None:
            continue
        decided: dict[tuple[int, str], bool] = {}
        for nm in g["einsums"]:
            path = arch.path(s.units[nm])
            for pos in range(path.index(g["F"]) + 1):
                for t in by[nm].tensors:
                    k = decided.setdefault((path[pos], t), t in s.keep[nm][pos])
                    if k:
                        s.keep[nm][pos].add(t)
                    else:
                        s.keep[nm][pos].discard(t)


def _moves(s: _State, rng: random.Random, outward: bool = False) -> None:
    """One random change that keeps every rank's factors multiplying to its bound. `outward`: move a prime
    factor to an outer loop (DRAM, or the shared loops) or drop an optional keep: a repair towards validity."""
    wl, arch = s.inst.workload, s.inst.architecture
    e = rng.choice(wl.einsums)
    nm = e.name
    path = arch.path(s.units[nm])
    n = len(path)
    g = s.group_of(nm)
    fpos = s.fpos(nm) or 0
    kind = rng.random()
    loops = [(pos, i, False) for pos in range(n) for i, lp in enumerate(s.temporal[nm][pos]) if lp[1] > 1] + \
            [(pos, i, True) for pos in range(n) for i, lp in enumerate(s.spatial[nm][pos]) if lp[1] > 1]
    if outward and kind < 0.25:
        drop = [(pos, t) for pos in range(max(fpos, 1), n) for t in s.keep[nm][pos]
                if t not in arch.levels[path[pos]].must_keep and t not in g["inter"]]
        if drop:
            pos, t = rng.choice(drop)
            if g["F"] is not None and pos <= fpos:
                for other in g["einsums"]:
                    p2 = arch.path(s.units[other]).index(path[pos])
                    s.keep[other][p2].discard(t)
            else:
                s.keep[nm][pos].discard(t)
            return
    if not outward and kind < 0.15:        # toggle a keep below the fusion level (or anywhere unfused)
        lo = max(fpos + (1 if g["F"] is not None else 0), 1)
        if lo >= n:
            return
        pos = rng.randrange(lo, n)
        t = rng.choice(list(e.tensors))
        lv = arch.levels[path[pos]]
        if t in lv.must_keep or t in g["inter"] or (lv.may_keep is not None and t not in lv.may_keep):
            return
        s.keep[nm][pos] ^= {t}
        return
    if not outward and kind < 0.3:         # swap two temporal loops at one level
        pos = rng.randrange(n)
        tl = s.temporal[nm][pos]
        if len(tl) > 1:
            i, j = rng.sample(range(len(tl)), 2)
            tl[i], tl[j] = tl[j], tl[i]
        return
    if not loops:
        return
    pos, i, sp = rng.choice(loops)
    src = (s.spatial if sp else s.temporal)[nm][pos][i]
    r, p = src[0], rng.choice(_factorize(src[1]))
    if outward:
        shared_ok = g["F"] is not None and r in _shared_ranks(s.inst, g["einsums"]) and rng.random() < 0.7
        if shared_ok:
            # every member gives up a factor p of r: only if each has one at/below F
            donors = {}
            for other in g["einsums"]:
                cands = [lp for q in s.temporal[other] + s.spatial[other] for lp in q if lp[0] == r and lp[1] % p == 0]
                if not cands:
                    return
                donors[other] = rng.choice(cands)
            for lp in donors.values():
                lp[1] //= p
            top = next((x for x in g["shared"] if x[1] == r and x[0] == 0), None)
            if top is None:
                g["shared"].insert(0, [0, r, 1])
                top = g["shared"][0]
            top[2] *= p
            return
        dst_pos = fpos if (g["F"] is not None) else 0
        if dst_pos >= pos and not sp:
            dst_pos = max(pos - 1, 0)
            if g["F"] is not None and dst_pos < fpos:
                return
        sp_dst = False
    else:
        dst_pos = rng.randrange(fpos, n)
        sp_dst = rng.random() < 0.3
    src[1] //= p
    if sp_dst:
        axis = rng.choice("xy")
        dst = next((lp for lp in s.spatial[nm][dst_pos] if lp[0] == r and lp[2] == axis), None)
        if dst is None:
            s.spatial[nm][dst_pos].append([r, 1, axis])
            dst = s.spatial[nm][dst_pos][-1]
    else:
        dst = next((lp for lp in s.temporal[nm][dst_pos] if lp[0] == r), None)
        if dst is None:
            s.temporal[nm][dst_pos].insert(rng.randrange(len(s.temporal[nm][dst_pos]) + 1), [r, 1])
            dst = next(lp for lp in s.temporal[nm][dst_pos] if lp[0] == r and lp[1] == 1)
    dst[1] *= p


def _try(s: _State):
    try:
        m = s.mapping()
        return m, evaluate(s.inst, m)
    except MappingError:
        return None


def _valid_state(inst: Instance, rng: random.Random, tries: int = 400):
    """A random state the evaluator accepts, with its mapping and evaluation (fused groups first, then unfused)."""
    for fuse in (0.6, 0.0):
        s = random_state(inst, rng, fuse)
        for _ in range(tries):
            got = _try(s)
            if got is not None:
                return s, got[0], got[1]
            _moves(s, rng, outward=True)
    return None


def random_mapping(inst: Instance, rng: random.Random) -> Optional[tuple[Mapping, object]]:
    """A random valid mapping and its evaluation: random factors, loop orders, keeps, units and fused groups,
    repaired (factors moved outward, optional keeps dropped) until the evaluator accepts it."""
    got = _valid_state(inst, rng)
    return None if got is None else (got[1], got[2])


def improve(inst: Instance, rng: random.Random, objective: str, unit: int, steps: int,
            restarts: int = 2) -> Optional[tuple[Mapping, int, list[int]]]:
    """Evaluator-only local search from random valid mappings: (best mapping, its cost, the cost of each
    random starting mapping). Costs are priced like the solver's objective (energy in `unit` fJ)."""
    best = None
    starts = []
    for _ in range(restarts):
        got = _valid_state(inst, rng)
        if got is None:
            continue
        cur, _, res = got
        cur_c = _price(inst, res, objective, unit)
        starts.append(cur_c)
        for _ in range(steps):
            t = cur.copy()
            for _ in range(rng.choice([1, 1, 2, 3])):
                _moves(t, rng)
            _sync_shared_keeps(t)
            tried = _try(t)
            if tried is None:
                continue
            tc = _price(inst, tried[1], objective, unit)
            if tc <= cur_c:
                cur, cur_c = t, tc
        if best is None or cur_c < best[1]:
            best = (cur.mapping(), cur_c)
    return None if best is None else (best[0], best[1], starts)


def _price(inst: Instance, res, objective: str, unit: int) -> int:
    if objective.split(",")[0] == "energy":
        return energy_in_units(inst, res, unit)[0]
    return res.latency_cycles
