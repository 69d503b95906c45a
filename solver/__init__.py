"""mapsolve's mapper: exact CP-SAT models per fusion segment, combined and verified against mapsolve.model."""
from .search import OBJECTIVES, SolveResult, SolverError, VerificationError, solve

__all__ = ["OBJECTIVES", "SolveResult", "SolverError", "VerificationError", "solve"]
