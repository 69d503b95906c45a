"""The solve result as a JSON document: what `mapsolve solve --json` writes and `mapsolve.Solution.to_json`
returns (the keys are listed, with types and units, in docs/results.md)."""
from __future__ import annotations

from typing import Optional

from mapsolve.model.spec import Instance

from .results import SolveResult


def result_json(res: SolveResult, inst: Instance, baselines: Optional[dict] = None) -> dict:
    """The `--json OUT` document: the keys users and checks rely on first, then detail. Every key is documented
    in docs/results.md (tests/test_results_doc.py holds the two equal). `baselines`: name -> `Baseline` or None
    (solver/baseline.py)."""
    doc = {
        "status": res.status,
        "objective": res.objective,
        "best_bound": res.best_bound,
        "gap": res.gap,
        "objective_name": res.objective_name,
        "energy_fj": res.energy_fj,
        "latency_cycles": res.latency_cycles,
        "mapping": res.mapping.model_dump(mode="json") if res.mapping else None,
        "solve_seconds": round(res.build_seconds + res.solve_seconds, 4),
        "build_seconds": round(res.build_seconds, 4),
        "search_seconds": round(res.solve_seconds, 4),
        "certify_seconds": round(res.certify_seconds, 4),
        "construct_seconds": round(res.construct_seconds, 4),
        "energy_unit_fj": res.energy_unit_fj,
        "rounding_error_fj": res.rounding_error_fj,
        "rounding_bound_fj": res.rounding_bound_fj,
        "energy_bound_fj": res.energy_bound_fj,
        "certificates": res.certificates,
        "instance": inst.name,
        "variant": res.variant,
        "variants": res.variants or None,
        "diagnosis": res.diagnosis or None,
        "incumbent_source": res.incumbent_source or None,
        "segments": [{"einsums": list(s.names), "fusion_level": s.fusion, "status": s.status,
                      "values": list(s.values) if s.values else None, "bound": list(s.bound),
                      "seconds": round(s.seconds, 4), "build_seconds": round(s.build_seconds, 4),
                      "model_size": s.model_size, "presolve": s.presolve, "source": s.source}
                     for s in res.segments],
    }
    doc["baselines"] = {name: None if b is None else b.to_json() for name, b in (baselines or {}).items()}
    doc["breakdown"] = res.evaluation.to_json()["breakdown"] if res.evaluation is not None else None
    return doc
