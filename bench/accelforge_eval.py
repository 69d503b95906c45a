"""AccelForge's own evaluation of an exported LoopTree mapping (not a test; AccelForge is never a dependency).

Run it with a Python in which AccelForge is installed (a scratch venv outside this repository, docs/interop.md
says how on Python 3.11):

    mapsolve export accelforge qk_av.json r.json -o qk_av.looptree.yaml
    /path/to/scratch/python bench/accelforge_eval.py tests/data/accelforge/dram_glb_pe.arch.yaml \\
        tests/data/accelforge/attention.workload.yaml qk_av.looptree.yaml VARIANT=qk_av SEQ=4096 HEAD_DIM=128 N_HEADS=1

prints AccelForge's energy (J), latency (s), per-component and per-tensor energy, per-tensor action counts (bits,
for per-bit actions) and per-Einsum latency as JSON, to set beside `mapsolve evaluate INSTANCE r.json --json`.
"""
import json
import sys
import time

import accelforge as af
from accelforge.frontend.mapping.mapping import Compute, Loop


def _computes(nodes) -> set:
    out = set()
    for n in nodes:
        if isinstance(n, Compute):
            out.add(n.einsum)
        out |= _computes(getattr(n, "nodes", []) or [])
    return out


def _fill_shared_rank_variables(nodes, variables: dict) -> None:
    """A loop shared across views names one rank variable per Einsum (`rank_variable: [m, p]`); AccelForge 1.0.467's
    evaluate_mapping needs the private _einsum_to_rank_variable (its mapper fills it), which YAML cannot set: fill
    it with the one listed variable each Einsum below the loop has."""
    for i, node in enumerate(nodes):
        rv = getattr(node, "rank_variable", None) if isinstance(node, Loop) else None
        if isinstance(rv, (set, frozenset, list)) and len(rv) > 1:
            node._einsum_to_rank_variable = {}
            for e in _computes(nodes[i + 1:]):
                got = [v for v in rv if v in variables[e]]
                if len(got) != 1:
                    raise SystemExit(f"loop over {sorted(rv)}: Einsum {e} has {got} of them, not exactly one")
                node._einsum_to_rank_variable[e] = got[0]
        _fill_shared_rank_variables(getattr(node, "nodes", []) or [], variables)


def main(argv: list[str]) -> None:
    arch, workload, mapping, *pairs = argv
    sets = {}
    for kv in pairs:
        k, v = kv.split("=", 1)
        sets[k] = int(v) if v.isdigit() else v
    start = time.time()
    spec = af.Spec.from_yaml(arch, workload, mapping, jinja_parse_data=sets)
    _fill_shared_rank_variables(spec.mapping.nodes, {e.name: set(e.rank_variables) for e in spec.workload.einsums})
    res = spec.evaluate_mapping()
    print(json.dumps({
        "energy_J": res.energy(), "latency_s": res.latency(),
        "energy_per_component": {str(k): v for k, v in res.energy(per_component=True).items()},
        "energy_per_tensor": {str(k): v for k, v in res.energy(per_component=True, per_tensor=True).items()},
        "actions": {str(k): v for k, v in res.actions(per_component=True, per_tensor=True).items()},
        "latency_per_einsum": {str(k): v for k, v in res.latency(per_einsum=True).items()},
        "wall_s": time.time() - start}, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
