"""Exact unit conversions: picojoule decimals to integer femtojoules."""
from decimal import Decimal


def fj(pj: Decimal) -> int:
    """Femtojoules of a pJ figure with at most 3 decimals (the spec enforces it), exactly."""
    value = pj * 1000
    if value != value.to_integral_value():
        raise ValueError(f"{pj} pJ has more than 3 decimals")
    return int(value)
