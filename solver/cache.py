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


def segment_key(inst: Instance, plan, components, unit: int) -> str:
    """The hash of everything segment `plan`'s model is built from (see the module docstring)."""
    names, fusion, top = plan
    wl = inst.workload
    members = [e for e in wl.einsums if e.name in set(names)]
    tensors = sorted({t for e in members for t in e.tensors})
    produced = {e.output.tensor for e in members}
    outside = sorted(t for t in produced
                     if any(i.tensor == t for e in wl.einsums if e.name not in set(names) for i in e.inputs))
    ranks = sorted({r for e in members for ranks in e.tensors.values() for r in ranks} | {r for e in members
                                                                                         for r in e.space})
    doc = {
        "code": code_hash(),
        "einsums": [e.model_dump(mode="json") for e in members],
        "tensors": {t: wl.tensors[t].model_dump(mode="json") for t in tensors if t in wl.tensors},
        "read_outside": outside,
        "ranks": {r: wl.ranks[r] for r in ranks},
        "word_bits": wl.word_bits,
        "architecture": inst.architecture.model_dump(mode="json"),
        "nesting": inst.solver.nesting,
        "plan": [list(names), fusion, list(top)],
        "components": list(components),
        "energy_unit": unit,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


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
        self.hits = 0
        self.stores = 0

    def _path(self, key: str) -> Path:
        return self.folder / f"{key[:2]}" / f"{key}.json"

    def get(self, key: str, cutoff: Optional[int]) -> Optional[SegmentResult]:
        """The stored proof for `key`, if it answers the question asked with `cutoff`."""
        doc = self.memory.get(key)
        if doc is None and self.folder is not None:
            try:
                doc = json.loads(self._path(key).read_text())
            except (OSError, ValueError):   # absent, or unreadable: solve again
                return None
        if doc is None or "status" not in doc:
            return None
        r = _from_json(doc)
        if r.status == "PRUNED" and (cutoff is None or cutoff >= r.bound[0]):
            return None    # pruned under a lower cut-off than this one: not an answer now
        self.hits += 1
        return r

    def put(self, key: str, r: SegmentResult) -> None:
        if r.status not in PROVEN or (r.status == "PRUNED" and r.bound[0] <= 0):
            return
        self._store(key, _to_json(r))


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


def _to_json(r: SegmentResult) -> dict:
    maps, group = r.mapping if r.mapping else ([], None)
    return {"names": list(r.names), "fusion": r.fusion, "status": r.status,
            "values": list(r.values) if r.values is not None else None, "bound": list(r.bound),
            "energy_fj": r.energy_fj, "latency_cycles": r.latency_cycles,
            "maps": [m.model_dump(mode="json") for m in maps],
            "group": group.model_dump(mode="json") if group is not None else None,
            "why": r.why, "model_size": r.model_size, "presolve": r.presolve}


def _from_json(doc: dict) -> SegmentResult:
    maps = [EinsumMapping.model_validate(m) for m in doc["maps"]]
    group = FusedGroup.model_validate(doc["group"]) if doc["group"] is not None else None
    return SegmentResult(tuple(doc["names"]), doc["fusion"], doc["status"],
                         tuple(doc["values"]) if doc["values"] is not None else None, tuple(doc["bound"]),
                         doc["energy_fj"], doc["latency_cycles"], (maps, group) if doc["values"] is not None else (),
                         why=doc["why"], model_size=doc["model_size"], presolve=doc["presolve"], source="cache")
