"""Exact unit conversions: picojoule decimals to integer femtojoules."""
from decimal import Decimal


def fj(pj: Decimal) -> int:
    """Femtojoules of a pJ figure with at most 3 decimals (the spec enforces it), exactly."""
    value = pj * 1000
    if value != value.to_integral_value():
        raise ValueError(f"{pj} pJ has more than 3 decimals")
    return int(value)


def element_fj(level, kind: str, bits: int, word_bits: int) -> int:
    """Femtojoules to read ("r") or write ("w") one element of `bits` bits at `level` (docs/model.md §6).

    read_pj/write_pj are per access of the level's word (`access_bits`, default the workload's word_bits). An
    access carries `word // bits` whole elements, so a narrower element costs the access energy divided by that
    and rounded up to a whole fJ; a wider one takes `ceil(bits / word)` accesses. Equal widths: the per-word
    energy, exactly."""
    e = fj(level.read_pj if kind == "r" else level.write_pj)
    word = level.word(word_bits)
    if bits <= word:
        return -(-e // (word // bits))
    return e * -(-bits // word)
