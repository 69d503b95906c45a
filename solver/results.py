"""What the mapper returns: per-segment results and the whole answer; its error types."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mapsolve.model.result import Result
from mapsolve.model.spec import Mapping


class SolverError(Exception):
    """The solver cannot answer: refused objective, overflow, or an internal disagreement (a bug)."""


class VerificationError(SolverError):
    """The evaluator's figures differ from the solver's objective: a bug, never a warning."""


@dataclass
class SegmentResult:
    names: tuple[str, ...]
    fusion: Optional[str]
    status: str                       # OPTIMAL, FEASIBLE, INFEASIBLE, PRUNED (cannot beat the cut-off), UNKNOWN
    values: Optional[tuple[int, ...]]  # objective components in objective order, when a solution exists
    bound: tuple[int, ...]            # proven lower bound of the first component (and the rest when proven)
    energy_fj: Optional[int] = None
    latency_cycles: Optional[int] = None
    mapping: tuple = ()
    seconds: float = 0.0
    build_seconds: float = 0.0
    why: str = ""
    model_size: dict = field(default_factory=dict)
    base: Optional[int] = None         # PRUNED: best cost before the segment when pruned (bound is relative)
    conflicts: int = 0
    branches: int = 0
    deterministic_time: float = 0.0
    presolve: dict = field(default_factory=dict)  # CP-SAT's model after presolve: booleans, integers, fixed
    named_solution: dict = field(default_factory=dict, repr=False)  # variable name -> value (hints a bigger model)
    source: str = "cp-sat"             # who found the solution: cp-sat, or constructive (solver/incumbent.py);
    #                                    floor (no model: pruned by its floor, or never reached), unrepresentable
    #                                    (numbers beyond CP-SAT's 64 bits), unbuilt (building went past its limit)
    build_ops: int = 0                 # building operations of its model (solver/exact.py), charged as work
    attempts: int = 0                  # CP-SAT runs of its first objective (restarts, solver/restarts.py)
    last_attempt: int = 0              # the index of the last of them (a warm-started model resumes there)


@dataclass
class SolveResult:
    status: str                      # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, INTERRUPTED
    objective: Optional[list[int]]
    best_bound: Optional[list[int]]
    energy_fj: Optional[int]
    latency_cycles: Optional[int]
    mapping: Optional[Mapping]
    evaluation: Optional[Result]
    objective_name: str
    build_seconds: float
    solve_seconds: float
    segments: list[SegmentResult]
    diagnosis: str = ""
    energy_unit_fj: int = 1          # >1 when exact fJ would overflow: energies in the objective are rounded
    rounding_error_fj: int = 0       # true energy minus the rounded-down objective x unit (>= 0), this mapping
    rounding_bound_fj: int = 0       # at most this for any mapping priced like this one (< unit per access/op)
    certificates: list = field(default_factory=list)  # valid mappings the bound was checked against (certify.py)
    certify_seconds: float = 0.0     # building the certificates (the constructive mapping, the one-copy solve)
    variant: Optional[str] = None    # an instance with variants: the cascade the mapping maps (the winner)
    variants: list = field(default_factory=list)   # per variant: its status, objective, bound, energy, latency
    construct_seconds: float = 0.0   # building the constructive mapping, the first incumbent
    incumbent_source: str = ""       # where the mapping came from: cp-sat, constructive, or both (per segment)
    variant_segments: dict = field(default_factory=dict, repr=False)   # variant -> its own segments (baselines)

    @property
    def energy_bound_fj(self) -> Optional[int]:
        """A proven lower bound of the optimal energy in fJ, when energy is the first objective component."""
        if not self.best_bound or not self.objective_name.startswith("energy"):
            return None
        return self.best_bound[0] * self.energy_unit_fj

    @property
    def gap(self) -> Optional[float]:
        """Relative gap of the first objective component; for energy in a coarser unit, in exact fJ (the exact
        energy against the rounded-down bound), since both numbers in units can meet while the fJ optimum is
        still open."""
        if not self.objective or not self.best_bound:
            return None
        o, b = self.objective[0], self.best_bound[0]
        if self.energy_unit_fj > 1 and self.energy_bound_fj is not None and self.energy_fj is not None:
            o, b = self.energy_fj, self.energy_bound_fj
        return 0.0 if o == b else (o - b) / max(abs(o), 1)
