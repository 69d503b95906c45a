"""Expanding a sweep into points and building each point's instance (dotted paths into the instance's JSON)."""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from mapsolve.model.load import InputError, check_instance, validate
from mapsolve.model.spec import Instance

from .spec import Sweep


class PointError(ValueError):
    """One point cannot be built (an unknown path, an invalid value): its row says why, the sweep goes on."""


def expand(sweep: Sweep) -> list[dict]:
    """Every point: {"params": {path: value}, "objective": name}, in a stable order."""
    keys = list(sweep.grid)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(sweep.grid[k] for k in keys))] or [{}]
    listed = sweep.list_ or [{}]
    out = []
    for g in grid:
        for extra in listed:
            for obj in sweep.objectives:
                out.append({"params": {**g, **extra}, "objective": obj})
    return out


def point_id(point: dict, limits: dict) -> str:
    """A stable name for a point: a changed value, objective or limit is a different point (never reused)."""
    doc = json.dumps({"p": point["params"], "o": point["objective"], "l": limits}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def set_path(doc: Any, path: str, value: Any) -> None:
    """Set `path` (dots; list elements by their `name`, or by index) in the JSON document `doc`."""
    parts = path.split(".")
    node = doc
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        where = ".".join(parts[:k + 1])
        if isinstance(node, list):
            hit = [x for x in node if isinstance(x, dict) and x.get("name") == part]
            if hit:
                idx = node.index(hit[0])
            elif part.isdigit() and int(part) < len(node):
                idx = int(part)
            else:
                raise PointError(f"{path}: no element named {part!r} at {where}")
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif part not in node or node[part] is None:
                raise PointError(f"{path}: {where} does not exist")
            else:
                node = node[part]
        else:
            raise PointError(f"{path}: {'.'.join(parts[:k])} is a value, not an object")


def base_document(sweep: Sweep, folder: Path) -> dict | None:
    """The base instance file as a JSON document, read once by the sweep's driver so that a point solved on
    another machine (a Ray cluster) needs no file of it; None for a `make:` sweep. Raises PointError."""
    if sweep.make is not None:
        return None
    from mapsolve.model import load_instance
    try:
        return load_instance(folder / sweep.base).model_dump(mode="json")
    except InputError as exc:
        raise PointError(str(exc)) from None


def instance_of(sweep: Sweep, folder: Path, params: dict, base: dict | None = None) -> Instance:
    """The point's instance: the base (`base`, its document, or the file) or the generator with its `make.`
    arguments, then every other path."""
    make_args = {k[5:]: v for k, v in params.items() if k.startswith("make.")}
    if sweep.make is not None:
        from mapsolve.model import make
        args = {**{k: v for k, v in sweep.make.model_dump().items() if k != "kind"}, **make_args}
        gen = {"attention": make.attention, "butterfly": make.butterfly, "hybrid": make.hybrid}.get(sweep.make.kind)
        if gen is None:
            raise PointError(f"make.kind: {sweep.make.kind!r} is not attention, butterfly or hybrid")
        try:
            inst = gen(**{k.replace("-", "_"): v for k, v in args.items()})
        except (TypeError, ValueError) as exc:
            raise PointError(f"make: {' '.join(str(exc).splitlines())}") from None
    elif make_args:
        raise PointError(f"{next(iter(make_args))}: make arguments need a `make:` base")
    else:
        inst = None
    doc = inst.model_dump(mode="json") if inst is not None else copy.deepcopy(
        base if base is not None else base_document(sweep, folder))   # a copy: set_path writes into it
    for path, value in params.items():
        if not path.startswith("make."):
            set_path(doc, path, value)
    try:
        out = validate(Instance, doc, "point")
        check_instance(out, "point")
        return out
    except InputError as exc:
        raise PointError(str(exc)) from None
