"""The search options' ranges, checked before anything slow starts: one rule for the CLI's flags and the Python
API's arguments (named as each caller names them: `--time-limit` or `time_limit`)."""
from __future__ import annotations

import math
from typing import Optional

from mapsolve.model import InputError

OBJECTIVE_NAMES = ("energy", "latency", "energy,latency", "latency,energy", "edp")
CERTIFY_MODES = ("auto", "full", "cheap")
NESTINGS = ("tree", "flat")


class OptionError(InputError):
    """A search option out of range; the message names it (as a flag or as an argument)."""


def _name(option: str, flags: bool) -> str:
    return "--" + option.replace("_", "-") if flags else option


def check_options(flags: bool = False, time_limit: Optional[float] = None,
                  deterministic_time: Optional[float] = None, seed: Optional[int] = None,
                  workers: Optional[int] = None, objective: Optional[str] = None,
                  max_latency: Optional[int] = None, max_energy: Optional[int] = None,
                  certify: Optional[str] = None, nesting: Optional[str] = None,
                  cpsat_workers: Optional[int] = None) -> None:
    """Raise OptionError naming the option when one is out of range: NaN or infinite seconds would never stop a
    search, a seed beyond 2^31 - 1 is refused by CP-SAT deep inside it. `flags`: name them as CLI flags."""
    def bad(option: str, rule: str) -> None:
        raise OptionError(f"{_name(option, flags)} {rule}")
    for option, value in (("time_limit", time_limit), ("deterministic_time", deterministic_time)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and 0 < value <= 10**7):
            bad(option, f"must be a positive number of seconds (at most 10^7), not {value}")
    if seed is not None and not (_integer(seed) and 0 <= seed <= 2**31 - 1):
        bad("seed", f"must be between 0 and 2^31 - 1 (CP-SAT's random seed is a 32-bit integer), not {seed}")
    for option, value in (("workers", workers), ("cpsat_workers", cpsat_workers)):
        if value is not None and not (_integer(value) and 1 <= value <= 64):
            bad(option, f"must be between 1 and 64, not {value}")
    if objective is not None and objective not in OBJECTIVE_NAMES:
        bad("objective", f"must be one of {', '.join(OBJECTIVE_NAMES)}, not {objective!r}")
    for option, unit, value in (("max_latency", "cycles", max_latency), ("max_energy", "fJ", max_energy)):
        if value is not None and not (_integer(value) and 0 < value < 2**62):
            bad(option, f"must be a positive integer ({unit}) below 2^62, not {value}")
    if certify is not None and certify not in CERTIFY_MODES:
        bad("certify", f"must be auto, full or cheap, not {certify!r}")
    if nesting is not None and nesting not in NESTINGS:
        bad("nesting", f"must be tree or flat, not {nesting!r}")


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
