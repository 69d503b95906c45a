"""A persistent, content-addressed cache of proven segment results (`mapsolve solve --cache DIR`).

Why: re-solving an unchanged instance, or a sweep over similar ones, repeats the same segment models. A
segment's proven answer depends only on what its model is built from, so it is stored under a hash of exactly
that: the member Einsums and every tensor they touch (with, for each tensor a member produces, whether an
Einsum outside the segment reads it: that decides what stays on chip), the ranks they use, the workload's word
width, the whole architecture, the nesting mode, the plan (fusion level and the levels above it), the
objective components, the energy unit, and a hash of the model's and solver's own source code and the ortools
version (a code change never reuses an old answer).

Only proofs are stored: OPTIMAL (with its mapping), INFEASIBLE, and PRUNED with its bound (a proven lower bound
whatever the cut-off that produced it: it is reused only while the new cut-off is still below it). Unproven
results depend on the time they had and are never stored. A hit is still a mapping the model re-evaluates with
the rest of the cascade (solver/paths.py `combine`), so a stale entry cannot go unnoticed as a wrong cost.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Optional

from mapsolve.model.spec import EinsumMapping, FusedGroup, Instance, Mapping

from .results import SegmentResult

PROVEN = ("OPTIMAL", "INFEASIBLE", "PRUNED")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """The model's and the solver's source, and the ortools version: what a cached answer was computed by."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for folder in ("model", "solver"):
        for f in sorted((root / folder).glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    try:
        h.update(metadata.version("ortools").encode())
    except metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


class Names:
    """A segment's Einsums, tensors and ranks renamed E0.., T0.., R0.. in order of appearance, so that segments
    equal but for their names (the Q, K and V projections of a block) share one key and one proof. Costs never
    depend on names (the model knows tensors and ranks only by identity), so a proof for one is a proof for the
    other; a mapping is stored in canonical names and renamed back on reuse."""

    def __init__(self, members):
        self.einsum = {e.name: f"E{i}" for i, e in enumerate(members)}
        self.tensor: dict[str, str] = {}
        self.rank: dict[str, str] = {}
        for e in members:
            for ref in (e.output, *e.inputs):
                self.tensor.setdefault(ref.tensor, f"T{len(self.tensor)}")
                for r in ref.ranks:
                    self.rank.setdefault(r, f"R{len(self.rank)}")
            if e.recurrence is not None:
                self.rank.setdefault(e.recurrence, f"R{len(self.rank)}")

    def inverse(self) -> "Names":
        inv = Names([])
        inv.einsum = {v: k for k, v in self.einsum.items()}
        inv.tensor = {v: k for k, v in self.tensor.items()}
        inv.rank = {v: k for k, v in self.rank.items()}
        return inv

    def einsum_doc(self, e) -> dict:
        def ref(r):
            return {"tensor": self.tensor[r.tensor], "ranks": [self.rank[x] for x in r.ranks], "running": r.running}
        return {"name": self.einsum[e.name], "output": ref(e.output), "inputs": [ref(r) for r in e.inputs],
                "op": e.op, "recurrence": self.rank.get(e.recurrence) if e.recurrence else None}

    def einsum_mapping(self, m: dict) -> dict:
        return {**m, "einsum": self.einsum[m["einsum"]],
                "levels": [{**lv, "keep": [self.tensor[t] for t in lv["keep"]],
                            "temporal": [{**lp, "rank": self.rank[lp["rank"]]} for lp in lv["temporal"]],
                            "spatial": [{**sp, "rank": self.rank[sp["rank"]]} for sp in lv["spatial"]]}
                           for lv in m["levels"]]}

    def group(self, g: dict) -> dict:
        return {**g, "einsums": [self.einsum[n] for n in g["einsums"]],
                "shared_loops": [{**sl, "rank": self.rank[sl["rank"]],
                                  "renames": {self.einsum[k]: self.rank[v] for k, v in sl["renames"].items()},
                                  "einsums": None if sl["einsums"] is None else [self.einsum[n]
                                                                                 for n in sl["einsums"]]}
                                 for sl in g["shared_loops"]]}


def segment_key(inst: Instance, plan, components, unit: int) -> str:
    """The hash of everything segment `plan`'s model is built from, in canonical names (see `Names`)."""
    return _segment_doc(inst, plan, components, unit)[0]


_FACTS: dict[int, tuple] = {}


def _facts(inst: Instance) -> tuple:
    """Per instance, once (a key per plan must not scan the whole workload: 2,000 Einsums have 2 million plans):
    Einsums by name, the Einsums reading each tensor, the architecture as JSON. Kept for the last few instances
    (the instance itself is held, so its id is not reused while cached)."""
    hit = _FACTS.get(id(inst))
    if hit is not None and hit[0] is inst:
        return hit[1]
    wl = inst.workload
    readers: dict[str, set[str]] = {}
    for e in wl.einsums:
        for i in e.inputs:
            readers.setdefault(i.tensor, set()).add(e.name)
    facts = ({e.name: e for e in wl.einsums}, readers, inst.architecture.model_dump(mode="json"))
    if len(_FACTS) >= 8:
        _FACTS.clear()
    _FACTS[id(inst)] = (inst, facts)
    return facts


def _segment_doc(inst: Instance, plan, components, unit: int) -> tuple[str, Names]:
    names, fusion, top = plan
    wl = inst.workload
    by_name, readers, arch_json = _facts(inst)
    members = [by_name[n] for n in names]
    nm = Names(members)
    inside = set(names)
    produced = {e.output.tensor for e in members}
    outside = sorted(nm.tensor[t] for t in produced if readers.get(t, set()) - inside)
    arch = {**arch_json, "levels": [dict(lv) for lv in arch_json["levels"]]}
    for lv in arch["levels"]:   # residency rules, for this segment's tensors only, in canonical names
        lv["may_keep"] = None if lv["may_keep"] is None else sorted(nm.tensor[t] for t in lv["may_keep"]
                                                                    if t in nm.tensor)
        lv["must_keep"] = sorted(nm.tensor[t] for t in lv["must_keep"] if t in nm.tensor)
    doc = {
        "code": code_hash(),
        "einsums": [nm.einsum_doc(e) for e in members],
        "tensors": {nm.tensor[t]: wl.tensors[t].model_dump(mode="json") if t in wl.tensors else None
                    for t in nm.tensor},
        "read_outside": outside,
        "ranks": {nm.rank[r]: wl.ranks[r] for r in nm.rank},
        "word_bits": wl.word_bits,
        "architecture": arch,
        "nesting": inst.solver.nesting,
        "plan": [len(names), fusion, list(top)],
        "components": list(components),
        "energy_unit": unit,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest(), nm


def instance_key(inst: Instance, what: str) -> str:
    """The hash of a whole instance, the code, and `what` is asked of it (e.g. the constructive mapping)."""
    doc = {"code": code_hash(), "instance": inst.model_dump(mode="json", exclude={"name", "description"}),
           "what": what}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class SegmentCache:
    """Proven segment results on disk, one JSON file per key (written whole: a temporary file renamed), or in
    memory for one run (`folder` None: variants that share segments solve them once)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.memory: dict[str, dict] = {}
        self.error: Optional[str] = None   # why the folder stopped being written, if it did
        self.hits = 0
        self.stores = 0

    def _path(self, key: str) -> Path:
        return self.folder / f"{key[:2]}" / f"{key}.json"

    def entry(self, inst: Instance, plan, components, unit: int) -> tuple[str, Names]:
        """(key, names) of a segment: computed once per segment solve, for `get` and `put`."""
        return _segment_doc(inst, plan, components, unit)

    def get(self, entry: tuple[str, Names], cutoff: Optional[int]) -> Optional[SegmentResult]:
        """The stored proof for this segment `entry` (or one equal to it but for names), if it answers the question
        asked with `cutoff`; its mapping in this segment's names."""
        key, nm = entry
        doc = self.memory.get(key)
        if doc is None and self.folder is not None:
            try:
                doc = json.loads(self._path(key).read_text())
            except (OSError, ValueError):   # absent, or unreadable: solve again
                return None
        if doc is None or "status" not in doc:
            return None
        try:
            r = _from_json(doc, nm.inverse(), tuple(nm.einsum))
        except (KeyError, TypeError, ValueError):   # damaged or foreign: solve again
            return None
        if r.status == "PRUNED" and (cutoff is None or cutoff >= r.bound[0]):
            return None    # pruned under a lower cut-off than this one: not an answer now
        self.hits += 1
        return r

    def put(self, entry: tuple[str, Names], r: SegmentResult) -> None:
        if r.status not in PROVEN or (r.status == "PRUNED" and r.bound[0] <= 0):
            return
        key, nm = entry
        self._store(key, _to_json(r, nm))

    def mapping(self, key: str, build):
        """The Mapping stored under `key`, else `build()` stored (None is stored too: no mapping exists)."""
        if key in self.memory:
            doc = self.memory[key]
        elif self.folder is not None and self._path(key).exists():
            try:
                doc = json.loads(self._path(key).read_text())
            except (OSError, ValueError):
                doc = None
        else:
            doc = None
        if doc is not None and "mapping" in doc:
            self.hits += 1
            return Mapping.model_validate(doc["mapping"]) if doc["mapping"] is not None else None
        built = build()
        self._store(key, {"mapping": built.model_dump(mode="json") if built is not None else None})
        return built

    def _store(self, key: str, doc: dict) -> None:
        self.memory[key] = doc
        self.stores += 1
        if self.folder is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as exc:   # a cache that cannot be written costs a re-solve later, not this answer
            self.folder = None
            self.error = f"--cache {path.parent}: cannot write ({exc}); caching in memory only"


def _to_json(r: SegmentResult, nm: Names) -> dict:
    """The result with its mapping in canonical names."""
    maps, group = r.mapping if r.mapping else ([], None)
    return {"status": r.status, "fusion": r.fusion,
            "values": list(r.values) if r.values is not None else None, "bound": list(r.bound),
            "energy_fj": r.energy_fj, "latency_cycles": r.latency_cycles,
            "maps": [nm.einsum_mapping(m.model_dump(mode="json")) for m in maps],
            "group": nm.group(group.model_dump(mode="json")) if group is not None else None,
            "why": r.why, "model_size": r.model_size, "presolve": r.presolve}


def _from_json(doc: dict, back: Names, names: tuple) -> SegmentResult:
    """A stored result, its mapping renamed by `back` (canonical -> this segment's names)."""
    maps = [EinsumMapping.model_validate(back.einsum_mapping(m)) for m in doc["maps"]]
    group = FusedGroup.model_validate(back.group(doc["group"])) if doc["group"] is not None else None
    return SegmentResult(names, doc["fusion"], doc["status"],
                         tuple(doc["values"]) if doc["values"] is not None else None, tuple(doc["bound"]),
                         doc["energy_fj"], doc["latency_cycles"], (maps, group) if doc["values"] is not None else (),
                         why=doc["why"], model_size=doc["model_size"], presolve=doc["presolve"], source="cache")
