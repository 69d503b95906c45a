"""The Python API (docs/api.md): load, evaluate, solve, enumerate and pareto, returning typed results.

Each call is a thin layer over what the CLI calls (mapsolve.model's loader and evaluator, mapsolve.solver's
`solve`, `enumerate_optimum` and `pareto_front`); errors are exceptions, never `sys.exit`: InputError for bad
input or options, MappingError for a mapping breaking a rule of the model, SolverError when the solver cannot
answer (its subclass VerificationError for an internal inconsistency, a bug).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from mapsolve.model import InputError, Instance, Mapping, Result, evaluate as _evaluate
from mapsolve.model.load import check_instance, load_instance, load_mapping as _load_mapping_file, validate

from .options import check_options

InstanceLike = Union[Instance, str, Path, dict]
MappingLike = Union[Mapping, str, Path, dict]


def load(source: InstanceLike) -> Instance:
    """An instance from a file path, a dict (the JSON document) or an Instance (returned as it is), checked as
    `mapsolve validate` checks it. Raises InputError naming the field."""
    if isinstance(source, Instance):
        return source
    if isinstance(source, (str, Path)):
        return load_instance(source)
    if isinstance(source, dict):
        inst = validate(Instance, source, "instance")
        check_instance(inst, "instance")
        return inst
    raise InputError(f"instance: a path, a dict or a mapsolve.Instance is expected, not {type(source).__name__}")


def load_mapping(source: MappingLike) -> Mapping:
    """A mapping from a file path (a mapping file or a `mapsolve --json` result), a dict or a Mapping."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, (str, Path)):
        return _load_mapping_file(source)
    if isinstance(source, dict):
        data = source["mapping"] if "mapping" in source and "einsums" not in source else source
        return validate(Mapping, data, "mapping")
    raise InputError(f"mapping: a path, a dict or a mapsolve.Mapping is expected, not {type(source).__name__}")


def _path_of(source) -> Optional[Path]:
    return Path(source) if isinstance(source, (str, Path)) else None


@dataclass(frozen=True)
class Evaluation:
    """A mapping's exact cost (mapsolve.model's evaluator): integer fJ and cycles, and the breakdown per level,
    tensor, compute unit and group (the `breakdown` of docs/results.md)."""
    energy_fj: int
    latency_cycles: int
    breakdown: dict
    result: Result = field(repr=False)     # the evaluator's own object (counts per (level, tensor), groups, ...)

    def to_json(self) -> dict:
        """The document `mapsolve evaluate --json` prints."""
        return self.result.to_json()


def evaluate(instance: InstanceLike, mapping: MappingLike) -> Evaluation:
    """Evaluate `mapping` on `instance` exactly (capacity included). Raises InputError (bad files) or
    MappingError (the mapping breaks a rule; the message names the Einsum, level or tensor)."""
    inst, mp = load(instance), load_mapping(mapping)
    res = _evaluate(inst, mp)
    return Evaluation(res.energy_fj, res.latency_cycles, res.to_json()["breakdown"], res)


@dataclass(frozen=True)
class Solution:
    """What `solve` returns. `status`: OPTIMAL (proven), FEASIBLE (a mapping, the bound and gap when the limit
    hit), INFEASIBLE (no mapping exists: `diagnosis` says why), UNKNOWN (none found in time), INTERRUPTED.
    Energies in integer fJ, latencies in integer cycles; `objective_values` and `bound` list the objective's
    components in its order (energy in `energy_unit_fj` fJ when exact fJ would overflow CP-SAT)."""
    status: str
    objective: str
    objective_values: Optional[list[int]]
    bound: Optional[list[int]]
    gap: Optional[float]
    energy_fj: Optional[int]
    latency_cycles: Optional[int]
    energy_bound_fj: Optional[int]
    energy_unit_fj: int
    mapping: Optional[Mapping] = field(repr=False)
    breakdown: Optional[dict] = field(repr=False)
    variant: Optional[str]
    diagnosis: str
    seconds: float
    baselines: dict = field(repr=False)    # "unfused", "shipped" -> mapsolve.Baseline or None (docs/api.md)
    raw: Any = field(repr=False)           # mapsolve.solver's SolveResult: segments, certificates, timings
    instance: Instance = field(repr=False)

    @property
    def optimal(self) -> bool:
        return self.status == "OPTIMAL"

    def to_json(self) -> dict:
        """The document `mapsolve solve --json` writes (every key in docs/results.md)."""
        from mapsolve.solver.document import result_json
        return result_json(self.raw, self.instance, self.baselines)


def solve(instance: InstanceLike, objective: Optional[str] = None, time_limit: Optional[float] = None,
          deterministic_time: Optional[float] = None, workers: Optional[int] = None, seed: Optional[int] = None,
          certify: str = "auto", nesting: Optional[str] = None, max_latency: Optional[int] = None,
          max_energy: Optional[int] = None, cache: Union[str, Path, None] = None, cpsat_workers: int = 1,
          progress: Optional[Callable[[str], None]] = None) -> Solution:
    """The optimal mapping of `instance` (a path, dict or Instance), as `mapsolve solve` finds it.

    `objective`: energy, latency, energy,latency, latency,energy or edp (default: the instance's). `time_limit`:
    wall seconds; `deterministic_time`: CP-SAT deterministic seconds (the same answer on any machine; the wall
    limit then applies only if given too). `workers`: processes solving segments at once (default: the
    instance's solver.workers; more than 1 starts worker processes, so call it under `if __name__ ==
    "__main__":` in a script). `certify`, `nesting`, `max_latency`/`max_energy` (caps), `cache` (a folder of
    proven segment results), `cpsat_workers`, `seed`: as the CLI's flags of those names. `progress(line)` gets
    the CLI's progress lines.

    Raises InputError for a bad instance or option; SolverError if the solver cannot answer (VerificationError:
    a bug). An infeasible instance is a Solution with status INFEASIBLE, not an exception."""
    check_options(False, time_limit, deterministic_time, seed, workers, objective, max_latency, max_energy,
                  certify, nesting, cpsat_workers)
    inst = load(instance)
    if nesting is not None:
        inst = inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": nesting})})
    from mapsolve.solver import solve as run
    from mapsolve.solver.baseline import compare
    from mapsolve.solver.cache import SegmentCache
    try:
        segment_cache = SegmentCache(cache)
    except OSError as exc:
        raise InputError(f"cache {cache}: cannot use this folder: {exc}") from None
    caps = {k: v for k, v in (("latency", max_latency), ("energy", max_energy)) if v is not None}
    say = (lambda message, transient=False: progress(message)) if progress else None
    res = run(inst, objective, time_limit, workers, seed, progress=say, deterministic_time=deterministic_time,
              certify=certify, cache=segment_cache, cpsat_workers=cpsat_workers, caps=caps or None)
    found = compare(inst, res, _path_of(instance))
    baselines = {k: b for k, (b, _) in found.items()}
    return Solution(res.status, res.objective_name, res.objective, res.best_bound, res.gap, res.energy_fj,
                    res.latency_cycles, res.energy_bound_fj, res.energy_unit_fj, res.mapping,
                    res.evaluation.to_json()["breakdown"] if res.evaluation is not None else None, res.variant,
                    res.diagnosis, res.construct_seconds + res.build_seconds + res.solve_seconds + res.certify_seconds,
                    baselines, res, inst)


@dataclass(frozen=True)
class Enumeration:
    """The reference enumerator's optimum over the solver's mapspace (small instances only)."""
    objective: str
    objective_values: list[int]
    energy_fj: int
    latency_cycles: int
    mapping: Mapping = field(repr=False)
    candidates: int                        # complete mappings represented
    evaluated: int                         # per-Einsum partial mappings evaluated
    seconds: float
    variant: Optional[str]


def _enumerate(instance: InstanceLike, objective: Optional[str] = None, prune: bool = True,
               max_candidates: Optional[int] = 50_000_000, workers: Optional[int] = None) -> Enumeration:
    """`mapsolve enumerate`: the exhaustive optimum (Pareto-pruned unless `prune=False`, plain brute force).
    Raises InputError when the mapspace exceeds `max_candidates` (None: no limit) or the objective is unknown;
    an instance with no valid mapping raises EnumerationError."""
    check_options(False, objective=objective, workers=workers)
    if objective == "edp":
        raise InputError("objective: the enumerator takes energy, latency, energy,latency or latency,energy")
    inst = load(instance)
    from mapsolve.solver.enumerate import MapspaceTooLarge, enumerate_optimum
    try:
        r = enumerate_optimum(inst, objective, prune=prune, max_candidates=max_candidates, workers=workers)
    except MapspaceTooLarge as exc:
        raise InputError(str(exc).replace("--max-candidates", "max_candidates")) from None
    return Enumeration(r.objective_name, list(r.objective), r.energy_fj, r.latency_cycles, r.mapping,
                       r.candidates, r.evaluated, r.seconds, r.variant)


def pareto(instance: InstanceLike, time_limit: Optional[float] = None, deterministic_time: Optional[float] = None,
           max_latency: Optional[int] = None, max_energy: Optional[int] = None, max_steps: Optional[int] = None,
           workers: Optional[int] = None, seed: Optional[int] = None):
    """`mapsolve pareto`: the exact energy-latency front, a mapsolve.solver.pareto.Front (`points`, each a
    FrontPoint with exact `energy_fj`, `latency_cycles`, `mapping` and `proven`; `complete`; `lower`)."""
    check_options(False, time_limit, deterministic_time, seed, workers, max_latency=max_latency,
                  max_energy=max_energy)
    inst = load(instance)
    from mapsolve.solver.pareto import pareto_front
    caps = {k: v for k, v in (("latency", max_latency), ("energy", max_energy)) if v is not None}
    return pareto_front(inst, time_limit, deterministic_time, caps, max_steps, workers or inst.solver.workers, seed)


enumerate = _enumerate   # noqa: A001  (mapsolve.enumerate: named as the CLI's command, defined last)
