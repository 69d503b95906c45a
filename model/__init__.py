"""mapsolve's cost model: the instance and mapping spec, and the one exact evaluator of their cost."""
from .evaluate import analyze, check_capacity, evaluate
from .load import InputError, load_instance, load_mapping
from .result import MappingError, Result, TensorCounts
from .spec import Instance, Mapping

__all__ = ["analyze", "evaluate", "check_capacity", "InputError", "load_instance", "load_mapping",
           "MappingError", "Result", "TensorCounts", "Instance", "Mapping"]
