"""docs/results.md lists every key of `mapsolve solve --json` and `mapsolve evaluate --json` with its type: the
keys documented must be exactly the keys emitted (on instances that emit every optional part: variants,
certificates, both baselines), and each emitted value must have the documented type."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import mapsolve

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results.md"
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|")


def documented() -> dict[str, dict[str, str]]:
    """Section title -> {key: type column}."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
        elif current is not None and (m := ROW.match(line)):
            current[m.group(1)] = m.group(2).strip()
    return sections


def doc_keys() -> tuple[dict[str, str], dict[str, str]]:
    """(solve keys, evaluate keys) -> type, with the breakdown's keys under `breakdown.`."""
    s = documented()
    solve, evaluate, breakdown = s["`mapsolve solve --json`"], s["`mapsolve evaluate --json`"], \
        s["`breakdown` (both documents)"]
    under = {f"breakdown.{k}": t for k, t in breakdown.items()}
    return {**solve, **under}, {**evaluate, **under}


def emitted(doc, named: set[str], prefix: str = "", out=None) -> dict[str, list]:
    """Key path -> values, with the keys of name-keyed objects (a documented `<x>` below them) as `<x>`; the
    mapping is its own schema's business (`mapsolve schema mapping`)."""
    out = {} if out is None else out
    if isinstance(doc, dict):
        for k, v in doc.items():
            name = next((n for n in named if n.rsplit(".", 1)[0] == prefix.rstrip(".")
                         and n.rsplit(".", 1)[-1].startswith("<") and prefix), None)
            path = name if name is not None else prefix + k
            out.setdefault(path, []).append(v)
            if path != "mapping":
                emitted(v, named, path + ".", out)
    elif isinstance(doc, list):
        for v in doc:
            emitted(v, named, prefix.rstrip(".") + "[].", out)
    return out


TYPES = {"int": int, "float": float, "str": str, "bool": bool, "object": dict, "null": type(None)}


def type_ok(value, declared: str) -> bool:
    kinds = [k.strip() for k in declared.split(",")]
    if value is None:
        return "nullable" in kinds or "null" in kinds
    base = kinds[0]
    if base.startswith("list"):
        inner = base[5:-1] if "[" in base else None
        return isinstance(value, list) and (inner is None or all(type_ok(v, inner) for v in value))
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, TYPES[base])


def check(doc: dict, keys: dict[str, str]) -> set[str]:
    got = emitted(doc, set(keys))
    for path, values in got.items():
        if path in keys:
            bad = [v for v in values if not type_ok(v, keys[path])]
            assert not bad, f"{path}: documented as {keys[path]}, emitted {bad[:2]}"
    return set(got)


def test_solve_json_keys_are_documented_exactly(tmp_path):
    solve_keys, _ = doc_keys()
    out = tmp_path / "r.json"   # the CLI on an instance with variants (variants, per-variant certificates)
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "solve", str(ROOT / "instances" /
                           "tiny_variants.json"), "--deterministic-time", "2", "--workers", "1", "-q", "--json",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = check(json.loads(out.read_text()), solve_keys)
    # the API on one without variants: the same document (Solution.to_json)
    r = mapsolve.solve(ROOT / "instances" / "tiny_block.json", deterministic_time=2)
    assert r.baselines["unfused"] is not None and r.baselines["shipped"] is not None
    seen |= check(json.loads(json.dumps(r.to_json())), solve_keys)
    assert seen - set(solve_keys) == set(), "emitted but not documented in docs/results.md"
    assert set(solve_keys) - seen == set(), "documented in docs/results.md but not emitted"


def test_evaluate_json_keys_are_documented_exactly():
    _, eval_keys = doc_keys()
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "evaluate", str(ROOT / "instances" /
                           "tiny_block.json"), str(ROOT / "instances" / "tiny_block.mapping.json"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = check(json.loads(proc.stdout), eval_keys)
    assert seen == set(eval_keys)


def test_an_undocumented_key_is_caught():
    """The check itself: a key the page does not list fails it."""
    solve_keys, _ = doc_keys()
    seen = check({"status": "OPTIMAL", "surprise": 1}, solve_keys)
    assert "surprise" in seen - set(solve_keys)
