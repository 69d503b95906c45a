"""mapsolve: optimal mappings of Einsum cascades onto spatial accelerators, from Python (docs/api.md).

    import mapsolve
    r = mapsolve.solve("instances/tiny_matmul.json", objective="energy", deterministic_time=5)
    r.status, r.energy_fj, r.latency_cycles, r.mapping

Importing this package is cheap: the solver (and ortools) load on the first `solve`, `enumerate` or `pareto`,
or when a solver name below is first used. Errors are exceptions, never `sys.exit`: InputError (bad input or
option), MappingError (a mapping breaks a rule), SolverError (the solver cannot answer; VerificationError: a bug).
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mapsolve")
except _metadata.PackageNotFoundError:   # a source tree that was never installed
    __version__ = "0+unknown"

from .model import InputError, Instance, Mapping, MappingError
from ._api import Enumeration, Evaluation, Solution, enumerate, evaluate, load, load_mapping, pareto, solve  # noqa: A004,E501
from .options import OptionError

# names from mapsolve.solver, imported when first used (`import mapsolve` stays free of ortools)
_LAZY = {"Baseline": "mapsolve.solver.baseline", "SolverError": "mapsolve.solver.results", "VerificationError": "mapsolve.solver.results",
         "EnumerationError": "mapsolve.solver.enumerate", "Front": "mapsolve.solver.pareto",
         "FrontPoint": "mapsolve.solver.pareto"}

__all__ = ["__version__", "Baseline", "Enumeration", "EnumerationError", "Evaluation", "Front", "FrontPoint",
           "InputError", "Instance", "Mapping", "MappingError", "OptionError", "Solution", "SolverError",
           "VerificationError", "enumerate", "evaluate", "load", "load_mapping", "pareto", "solve"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mapsolve' has no attribute {name!r}")
