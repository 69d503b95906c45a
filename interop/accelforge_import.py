"""AccelForge arch + workload YAML → a mapsolve instance (a JSON-ready dict), exactly or refused.

Architecture nodes are read in order: each `!Memory` is a storage level, each `!Compute` a compute unit serving
the Einsums its `enabled:` expression allows and using the memories above it, each `!Container`'s spatial fanouts
the mesh of the next node below. Energies (J per action of `bits_per_action` bits, default 1: per bit) become pJ
per word of `bits_per_value` bits; throughputs (actions per second) become words or operations per cycle at a clock
equal to the slowest compute unit's operations per second. Everything the conversion approximates is written in
the instance's description; anything it cannot express raises Refused (one line).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .accelforge_expr import INF, Context, HeldBy, TensorSet, evaluate, number
from .accelforge_workload import AfEinsum, AfWorkload, convert_workload
from .accelforge_yaml import Refused, Tagged, load, uses_variable

NODE_KEYS = {
    "Memory": {"name", "size", "leak_power", "area", "actions", "tensors", "bits_per_action", "values_per_action",
               "spatial"},
    "Compute": {"name", "leak_power", "area", "actions", "enabled", "spatial"},
    "Container": {"name", "spatial"},
}
ACTION_KEYS = {"name", "energy", "throughput", "bits_per_action", "values_per_action"}
SPATIAL_KEYS = {"name", "fanout", "may_reuse"}
#: Marker in the description: the AccelForge names of each mesh axis, read back by `mapsolve export accelforge`.
SPATIAL_TAG = "AccelForge spatial axes: "


def _where(source: str, i: int, node: dict) -> str:
    return f"{source}: arch.nodes[{i}] ({node.get('name', '?')})"


class _Arch:
    """The architecture conversion's state: levels, units, notes."""

    def __init__(self, nodes: list, wl: AfWorkload, source: str) -> None:
        self.nodes, self.wl, self.source = nodes, wl, source
        self.notes: list[str] = []
        self.node_names = frozenset(n.get("name") for n in nodes if isinstance(n, dict))
        vals = set(wl.bits.values())
        if len(vals) != 1:
            raise Refused(f"{source}: tensors of different widths {sorted(vals)} are not supported (per-bit "
                          f"energies would need per-tensor access widths)")
        self.word = vals.pop()

    def ctx(self, e: AfEinsum) -> Context:
        return self.wl.context(e, self.node_names)

    # ---------------------------------------------------------------------------------------------------
    def uniform(self, value, einsums: list, where: str):
        """A number that must be the same for every Einsum in `einsums` (evaluated in each one's context)."""
        got = {}
        for e in einsums or self.wl.einsums[:1]:
            got[e.name] = number(value, self.ctx(e), where)
        if len(set(got.values())) > 1:
            raise Refused(f"{where}: {value!r} differs between Einsums ({', '.join(f'{k}: {v}' for k, v in got.items())}); "
                          f"mapsolve needs one value per node")
        return next(iter(got.values()))

    def actions(self, node: dict, where: str, expected: tuple[str, ...], einsums: list) -> dict:
        """name -> (energy J, throughput per s, bits per action), the same for every Einsum in `einsums`."""
        acts = node.get("actions")
        if not isinstance(acts, list):
            raise Refused(f"{where}.actions: a list of actions ({', '.join(expected)}) is required")
        out = {}
        for k, a in enumerate(acts):
            w = f"{where}.actions[{k}]"
            if not isinstance(a, dict) or "name" not in a:
                raise Refused(f"{w}: an action needs a name")
            for key in a:
                if key not in ACTION_KEYS:
                    raise Refused(f"{w}.{key} is not supported (the importer converts {', '.join(sorted(ACTION_KEYS))})")
            name = a["name"]
            if name not in expected:
                raise Refused(f"{w}: action {name!r} is not supported here (only {', '.join(expected)})")
            if name in out:
                raise Refused(f"{w}: action {name!r} given twice")
            for key in ("energy", "throughput"):
                if a.get(key) is None:
                    raise Refused(f"{w}.{key} is required (energies and throughputs come from the file, not from "
                                  f"a component model)")
            bits = self.bits_per_action(a, node, einsums, w)
            out[name] = (self.uniform(a["energy"], einsums, f"{w}.energy"),
                         self.uniform(a["throughput"], einsums, f"{w}.throughput"), bits)
        missing = [n for n in expected if n not in out]
        if missing:
            raise Refused(f"{where}.actions: action {missing[0]!r} is missing")
        return out

    def bits_per_action(self, action: dict, node: dict, einsums: list, where: str):
        """Bits one action moves: the action's or the node's bits_per_action / values_per_action, default 1."""
        for holder, w in ((action, where), (node, where.rsplit(".actions", 1)[0])):
            if holder.get("values_per_action") not in (None, {}):
                vpa = holder["values_per_action"]
                if not isinstance(vpa, dict) or len(vpa) != 1 or str(next(iter(vpa))) != "All":
                    raise Refused(f"{w}.values_per_action: only {{All: N}} is supported")
                n = self.uniform(next(iter(vpa.values())), einsums, f"{w}.values_per_action")
                if n == INF or n <= 0:
                    raise Refused(f"{w}.values_per_action: {n} is not a positive number")
                return n * self.word
            if holder.get("bits_per_action") is not None:
                n = self.uniform(holder["bits_per_action"], einsums, f"{w}.bits_per_action")
                if n == INF or n <= 0:
                    raise Refused(f"{w}.bits_per_action: {n} is not a positive number")
                return n
        return 1

    def zero_leak(self, node: dict, where: str) -> None:
        if node.get("leak_power") not in (None, 0):
            v = self.uniform(node["leak_power"], self.wl.einsums, f"{where}.leak_power")
            if v != 0:
                raise Refused(f"{where}.leak_power: {node['leak_power']!r} is not supported (mapsolve has no "
                              f"leakage energy; only 0)")

    # ---------------------------------------------------------------------------------------------------
    def units(self) -> dict:
        """Compute node name -> (index, einsum names it runs, energy J, ops/s)."""
        units = {}
        for i, node in enumerate(self.nodes):
            if not (isinstance(node, Tagged) and node.tag == "Compute"):
                continue
            where = _where(self.source, i, node)
            self.zero_leak(node, where)
            runs = []
            for e in self.wl.einsums:
                ok = evaluate(node.get("enabled", True), self.ctx(e), f"{where}.enabled (einsum {e.name})")
                if not isinstance(ok, bool):
                    if isinstance(ok, (TensorSet, HeldBy)):
                        raise Refused(f"{where}.enabled: expected true or false, got a tensor set")
                    ok = bool(ok)
                if ok:
                    runs.append(e.name)
            acts = self.actions(node, where, ("compute",), [e for e in self.wl.einsums if e.name in runs])
            energy, thr, bits = acts["compute"]
            if bits != 1:
                raise Refused(f"{where}: bits_per_action/values_per_action on a compute action is not supported")
            if thr == INF or thr <= 0:
                raise Refused(f"{where}: compute throughput {thr} must be a finite positive number of ops/s")
            units[node["name"]] = (i, runs, energy, thr)
        if not units:
            raise Refused(f"{self.source}: arch.nodes has no !Compute node")
        return units


def convert(arch_path: Path, workload_path: Path, variables: dict[str, object]) -> dict:
    """The instance (a dict mapsolve's loader accepts) for the two AccelForge files."""
    for name in variables:
        if not (uses_variable(arch_path, name) or uses_variable(workload_path, name)):
            raise Refused(f"--set {name}: neither {arch_path} nor {workload_path} uses a variable {name}")
    wl = convert_workload(load(workload_path, variables), str(workload_path))
    arch_doc = load(arch_path, variables)
    src = str(arch_path)
    if not isinstance(arch_doc, dict) or "arch" not in arch_doc:
        raise Refused(f"{src}: expected a mapping with the key `arch`")
    extra = sorted(set(arch_doc) - {"arch"})
    if extra:
        raise Refused(f"{src}: top-level key {extra[0]!r} is not supported (an arch file holds `arch:`)")
    arch = arch_doc["arch"]
    if not isinstance(arch, dict) or set(arch) != {"nodes"} or not isinstance(arch["nodes"], list):
        bad = sorted(set(arch) - {"nodes"}) if isinstance(arch, dict) else []
        raise Refused(f"{src}: arch.{bad[0]} is not supported" if bad else f"{src}: arch.nodes must be a list")
    nodes = arch["nodes"]
    for i, node in enumerate(nodes):
        if not isinstance(node, Tagged):
            raise Refused(f"{src}: arch.nodes[{i}]: every node needs a tag (!Memory, !Compute or !Container)")
        if not isinstance(node.get("name"), str):
            raise Refused(f"{src}: arch.nodes[{i}]: a node needs a name")
        for k in node:
            if k not in NODE_KEYS[node.tag]:
                raise Refused(f"{_where(src, i, node)}.{k} is not supported on a !{node.tag} (the importer "
                              f"converts {', '.join(sorted(NODE_KEYS[node.tag]))})")
    names = [n["name"] for n in nodes]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise Refused(f"{src}: node name {dup[0]} is used twice")
    a = _Arch(nodes, wl, src)
    from .accelforge_arch import build_architecture
    architecture, notes, spatial_axes = build_architecture(a)
    workload = _workload_dict(wl)
    desc = _description(arch_path, workload_path, variables, a, architecture, notes, spatial_axes)
    stem = lambda p: Path(p).name.split(".")[0]
    tag = ",".join(f"{k}={v}" for k, v in variables.items())
    return {"name": f"{stem(arch_path)}+{stem(workload_path)}" + (f"[{tag}]" if tag else ""),
            "description": desc, "workload": workload, "architecture": architecture}


def _workload_dict(wl: AfWorkload) -> dict:
    word = next(iter(wl.bits.values()))
    ranks = {}
    for e in wl.einsums:
        for acc in (e.output, *e.inputs):
            for v in acc.variables:
                ranks.setdefault(v, wl.bounds[v])
    return {
        "ranks": ranks,
        "word_bits": word,
        "einsums": [{"name": e.name, "output": {"tensor": e.output.tensor, "ranks": e.output.variables},
                     "inputs": [{"tensor": i.tensor, "ranks": i.variables} for i in e.inputs], "op": e.op}
                    for e in wl.einsums],
    }


def _description(arch_path, workload_path, variables, a: _Arch, architecture, notes, spatial_axes) -> str:
    sets = " ".join(f"{k}={v}" for k, v in variables.items()) or "none (the templates' defaults)"
    wl = a.wl
    einsums = "; ".join(
        f"{e.name}: {e.output.tensor}[{', '.join(e.output.variables)}] = "
        + " * ".join(f"{i.tensor}[{', '.join(i.variables)}]" for i in e.inputs) + f" (op {e.op})"
        for e in wl.einsums)
    parts = [
        f"Imported by `mapsolve import accelforge` from AccelForge inputs {arch_path} and {workload_path} "
        f"with template variables {sets}.",
        f"Workload: mapsolve's ranks are AccelForge's rank variables, each bounded by the rank_sizes entry of the "
        f"rank it indexes ({', '.join(f'{v}={b}' for v, b in wl.bounds.items())}); a dimension written `R: v` is "
        f"a view (dimensions are positional). Einsums are named after their outputs: {einsums}. Ops: an Einsum "
        f"of one input is copy (add if it reduces), of two mul (mac if it reduces); every op costs the unit's "
        f"compute action. bits_per_value {a.word} for every tensor -> word_bits {a.word}.",
        *notes,
        SPATIAL_TAG + json.dumps(spatial_axes, sort_keys=True),
    ]
    return " ".join(parts)
