"""mapsolve: optimal mappings of Einsum cascades onto spatial accelerators, from Python (docs/api.md).

    import mapsolve
    inst = mapsolve.load("instances/tiny_matmul.json")
    r = mapsolve.solve(inst, objective="energy", deterministic_time=5)
    r.energy_fj, r.status, r.mapping

Importing this package is cheap: the solver (and ortools) load on the first `solve`, `enumerate` or `pareto`.
Errors are exceptions (`InputError` for bad input, `MappingError` for a mapping breaking a rule, `SolverError`),
never `sys.exit`.
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mapsolve")
except _metadata.PackageNotFoundError:   # imported from a source tree that was never installed
    __version__ = "0+unknown"

from ._api import (Enumeration, Evaluation, Front, FrontPoint, Solution, SolverError, enumerate, evaluate,  # noqa: A004
                   load, load_mapping, pareto, solve)
from .model import InputError, Instance, Mapping, MappingError

__all__ = ["__version__", "Enumeration", "Evaluation", "Front", "FrontPoint", "InputError", "Instance", "Mapping",
           "MappingError", "Solution", "SolverError", "enumerate", "evaluate", "load", "load_mapping", "pareto",
           "solve"]
