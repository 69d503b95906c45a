"""Quantities with units in instance files ("50 GiB/s", "940 MHz", "16 MiB", "1.88 pJ/bit", "1/7 per cycle"),
converted exactly to the integers, decimals and fractions of the spec before pydantic sees them.

Why here, before validation: the spec keeps its exact types (Fraction words/cycle, Decimal pJ, integer bits), so
the cost model never sees a unit, and a conversion that is not exact at the model's precision is refused naming
the field and the nearest exact values instead of being rounded. A string with no unit ("3/7", "1.5") is left
alone for the spec to read as today. Every conversion is recorded (`Conversion`) so `mapsolve validate` can show
the text given and the exact value used.

The fields that accept each kind of quantity are listed in one table, `FIELDS`.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

#: (path pattern, kind): "*" matches any list index or dict key. Widths come first (the others need them), then
#: the clock (bandwidths in bytes per second need it).
FIELDS: list[tuple[tuple[str, ...], str]] = [
    (("workload", "word_bits"), "width"),
    (("workload", "tensors", "*", "bits"), "width"),
    (("workload", "tensors", "*", "accumulator_bits"), "width"),
    (("architecture", "levels", "*", "access_bits"), "width"),
    (("architecture", "frequency_mhz"), "frequency"),
    (("architecture", "levels", "*", "capacity_bits"), "capacity_bits"),
    (("architecture", "levels", "*", "capacity_words"), "capacity_words"),
    (("architecture", "levels", "*", "bandwidth"), "bandwidth"),
    (("architecture", "levels", "*", "read_bandwidth"), "bandwidth"),
    (("architecture", "levels", "*", "write_bandwidth"), "bandwidth"),
    (("architecture", "levels", "*", "read_pj"), "access_energy"),
    (("architecture", "levels", "*", "write_pj"), "access_energy"),
    (("architecture", "compute_units", "*", "ops", "*", "energy_pj"), "op_energy"),
    (("architecture", "compute_units", "*", "ops", "*", "per_cycle"), "throughput"),
]

#: What each kind accepts, for the "unknown unit" message (and docs/guide.md).
ACCEPTS = {
    "width": "bit, B",
    "frequency": "Hz, kHz, MHz, GHz",
    "capacity_bits": "bit, kbit, Mbit, B, kB, MB, GB, KiB, MiB, GiB, words",
    "capacity_words": "words, bit, B, kB, MB, GB, KiB, MiB, GiB",
    "bandwidth": "words/cycle, B/cycle, bit/cycle, or B/s, kB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s, "
                 "bit/s, Gbit/s (per second needs architecture.frequency_mhz)",
    "access_energy": "J, mJ, uJ, nJ, pJ, fJ, aJ, per word (pJ or pJ/word), per bit (pJ/bit) or per byte (pJ/B)",
    "op_energy": "J, mJ, uJ, nJ, pJ, fJ, aJ, optionally /op",
    "throughput": "per cycle, /cycle, ops/cycle, cycles/op",
}

#: The unit each kind converts to, as printed.
TARGET = {"width": "bits", "frequency": "MHz", "capacity_bits": "bits", "capacity_words": "words",
          "bandwidth": "words/cycle", "access_energy": "pJ", "op_energy": "pJ", "throughput": "ops/cycle"}

_SI = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}   # no "KB": 1000 or 1024? write kB or KiB
_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
#: bits in one unit of data
_DATA: dict[str, Fraction] = {}
for _p, _m in _SI.items():
    _DATA[f"{_p}B"] = Fraction(8 * _m)
    for _b in ("bit", "bits", "b"):
        _DATA[f"{_p}{_b}"] = Fraction(_m)
for _p, _m in _BIN.items():
    _DATA[f"{_p}B"] = Fraction(8 * _m)
    for _b in ("bit", "bits", "b"):
        _DATA[f"{_p}{_b}"] = Fraction(_m)
for _b in ("byte", "bytes"):
    _DATA[_b] = Fraction(8)
#: pJ in one unit of energy
_ENERGY = {"J": Fraction(10**12), "mJ": Fraction(10**9), "uJ": Fraction(10**6), "µJ": Fraction(10**6),
           "nJ": Fraction(10**3), "pJ": Fraction(1), "fJ": Fraction(1, 10**3), "aJ": Fraction(1, 10**6)}
#: MHz in one unit of frequency
_FREQ = {"Hz": Fraction(1, 10**6), "kHz": Fraction(1, 10**3), "MHz": Fraction(1), "GHz": Fraction(10**3),
         "THz": Fraction(10**6)}
_WORDS = ("word", "words")

_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?(?:\s*/\s*[0-9]+)?"
_QUANTITY = re.compile(rf"\s*(?P<number>{_NUMBER})\s*(?P<unit>[^\s0-9.+-].*)?", re.DOTALL)
MAX_EXPONENT = 40   # "1e999999999 pJ" would be a billion-digit integer: no quantity of the spec comes near 1e40


class QuantityError(ValueError):
    """A quantity that cannot be converted exactly; `path` is its field, the message one line."""

    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Conversion:
    """One converted field: where, the text given, and the exact value the spec reads (with its unit)."""

    path: tuple
    text: str
    value: Fraction
    unit: str

    def show(self) -> str:
        exact = str(self.value)
        approx = "" if self.value.denominator == 1 else f" (≈ {float(self.value):.6g})"
        if self.unit in ("pJ", "MHz") and _decimal(self.value) is not None:
            exact, approx = _decimal(self.value), ""
        return f"{where(self.path)}: {_q(self.text)} -> {exact} {self.unit}{approx}"


def _q(text: str) -> str:
    """A text quoted as the user wrote it in JSON or YAML ("50 GiB/s")."""
    return json.dumps(text, ensure_ascii=False)


def where(path: tuple) -> str:
    """A JSON path as the error messages write it: architecture.levels[0].bandwidth."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out or "(top level)"


def convert(data: Any) -> tuple[Any, list[Conversion]]:
    """`data` (a parsed instance document) with every quantity with units replaced by its exact value, and the
    conversions made. Raises QuantityError naming the field. Anything that is not a dict is returned as is."""
    if not isinstance(data, dict):
        return data, []
    done: list[Conversion] = []
    original = data
    for pattern, kind in FIELDS:
        for path, text in _matches(data, pattern):
            try:
                value = _convert(data, path, kind, text)
            except _Unknown:
                continue
            if value is None:
                continue
            if data is original:   # the caller's document stays as given
                data = copy.deepcopy(original)
            _set(data, path, _as_spec(value, kind))
            done.append(Conversion(path, text, value, TARGET[kind]))
    return data, sorted(done, key=lambda c: _position(data, c.path))


def _matches(data, pattern: tuple) -> list[tuple[tuple, str]]:
    """(path, text) of every string found at `pattern` in `data`."""
    found = [((), data)]
    for part in pattern:
        nxt = []
        for path, node in found:
            if part == "*":
                items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
                nxt += [((*path, k), v) for k, v in items]
            elif isinstance(node, dict) and part in node:
                nxt.append(((*path, part), node[part]))
        found = nxt
    return [(p, v) for p, v in found if type(v) is str]   # a JsonNumber (a str subclass) is a bare number


def _position(data, path: tuple) -> tuple:
    """Where `path` comes in the document (keys in their written order), to list conversions as written."""
    out, node = [], data
    for p in path:
        out.append(p if isinstance(p, int) else list(node).index(p))
        node = node[p]
    return tuple(out)


def _set(data, path: tuple, value) -> None:
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _as_spec(value: Fraction, kind: str):
    """The converted value as the spec reads it exactly: an int, a decimal text or a fraction text."""
    if kind in ("width", "capacity_bits", "capacity_words"):
        return int(value)
    if kind in ("access_energy", "op_energy", "frequency"):
        return _decimal(value)
    return f"{value.numerator}/{value.denominator}"


def _decimal(value: Fraction) -> str | None:
    """The exact decimal text of `value`, or None when it has none (a denominator with a prime besides 2, 5)."""
    d = value.denominator
    places = 0
    while d % 10 == 0 or d % 2 == 0 or d % 5 == 0:
        if d % 10 == 0:
            d //= 10
        elif d % 2 == 0:
            d //= 2
        else:
            d //= 5
        places += 1
    if d != 1:
        return None
    scaled = value * 10**places                      # an integer: the digits, exactly (no rounding context)
    digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
    whole, frac = (digits[:-places], digits[-places:].rstrip("0")) if places else (digits, "")
    return ("-" if scaled < 0 else "") + whole + ("." + frac if frac else "")


def parse(text: str) -> tuple[Fraction, str] | None:
    """(number, unit) of a quantity such as "50 GiB/s", or None when the text is not a number followed by a unit
    (a bare number, a fraction, or anything else: left to the spec)."""
    m = _QUANTITY.fullmatch(text)
    if m is None or not m.group("unit") or not m.group("unit").strip():
        return None
    number = "".join(m.group("number").split())
    mantissa, _, denominator = number.partition("/")
    shown = text if len(text) <= 60 else text[:60] + "..."
    if len(number) > 60 or not -MAX_EXPONENT <= Decimal(mantissa).adjusted() <= MAX_EXPONENT:
        raise ValueError(f"{_q(shown)}: the number is out of range")
    if denominator and int(denominator) == 0:
        raise ValueError(f"{_q(shown)} divides by zero")
    value = Fraction(Decimal(mantissa))
    unit = re.sub(r"\s*/\s*", "/", re.sub(r"(?<=\S)\s+per\s+", "/", " ".join(m.group("unit").split())))
    return (value / int(denominator) if denominator else value), unit


def _convert(data: dict, path: tuple, kind: str, text: str) -> Fraction | None:
    field = where(path)
    try:
        parsed = parse(text)
    except ValueError as exc:
        raise QuantityError(path, f"{field}: {exc}") from None
    if parsed is None:
        return None
    number, unit = parsed
    if len(text) > 60:
        text = text[:60] + "..."
    what = kind.replace("_", " ")
    unknown = QuantityError(path, f"{field}: unknown unit {_q(unit[:30])} in {_q(text)} "
                                  f"({'an' if what[0] in 'aeiou' else 'a'} {what} takes {ACCEPTS[kind]})")
    if kind == "width":
        bits = _DATA.get(unit) if unit in ("bit", "bits", "b", "B", "byte", "bytes") else None
        if bits is None:
            raise unknown
        return _whole(path, text, number * bits, "bits")
    if kind == "frequency":
        scale = _FREQ.get(unit)
        if scale is None:
            raise unknown
        return _exact(path, text, number * scale, 6, "MHz")
    if kind in ("capacity_bits", "capacity_words"):
        word = _word_bits(data, path)
        if unit in _WORDS:
            bits = number * word
        elif unit in _DATA:
            bits = number * _DATA[unit]
        else:
            raise unknown
        if kind == "capacity_bits":
            return _whole(path, text, bits, "bits")
        return _whole(path, text, bits / word, f"words of {word} bits")
    if kind == "bandwidth":
        amount, _, per = unit.partition("/")
        amount, per = amount.strip(), per.strip()
        if amount in _WORDS:
            bits = number * _word_bits(data, path)
        elif amount in _DATA:
            bits = number * _DATA[amount]
        else:
            raise unknown
        words = bits / _word_bits(data, path)
        if per == "cycle":
            return words
        if per != "s":
            raise unknown
        return words / (_clock_mhz(data, path, text) * 10**6)
    if kind in ("access_energy", "op_energy"):
        amount, _, per = unit.partition("/")
        amount, per = amount.strip(), per.strip()
        if amount not in _ENERGY:
            raise unknown
        pj = number * _ENERGY[amount]
        if kind == "op_energy":
            if per not in ("", "op"):
                raise unknown
        elif per in ("bit", "b"):
            pj *= _word_bits(data, path)
        elif per in ("B", "byte"):
            pj *= Fraction(_word_bits(data, path), 8)
        elif per not in ("", "word", "access"):
            raise unknown
        return _exact(path, text, pj, 3, "pJ")
    if kind == "throughput":
        if unit in ("per cycle", "/cycle", "op/cycle", "ops/cycle"):
            return number
        if unit in ("cycle/op", "cycles/op"):
            if number == 0:
                raise QuantityError(path, f"{field}: {_q(text)} is no throughput (zero cycles per op)")
            return 1 / number
        raise unknown
    raise AssertionError(kind)


def _whole(path: tuple, text: str, value: Fraction, unit: str) -> Fraction:
    if value.denominator != 1:
        lo = value.numerator // value.denominator
        raise QuantityError(path, f"{where(path)}: {_q(text)} is {float(value):.6g} {unit}, not a whole number "
                                  f"(nearest: {lo} or {lo + 1} {unit})")
    return value


def _exact(path: tuple, text: str, value: Fraction, places: int, unit: str) -> Fraction:
    """`value` if it has at most `places` decimals, else refused with the two nearest values that have."""
    scaled = value * 10**places
    if scaled.denominator != 1:
        lo = scaled.numerator // scaled.denominator
        a, b = (_decimal(Fraction(n, 10**places)) for n in (lo, lo + 1))
        shown = _decimal(value) or f"{float(value):.9g}"
        raise QuantityError(path, f"{where(path)}: {_q(text)} is {shown} {unit}, not exact at the model's precision "
                                  f"({unit} with at most {places} decimals): write {a} {unit} or {b} {unit}")
    return value


class _Unknown(Exception):
    """A figure a conversion needs (a width, the clock) is itself invalid: the field is left as given, and the
    spec reports that figure's own error first (it validates the workload and the clock before the levels)."""


def _word_bits(data: dict, path: tuple) -> int:
    """Bits of one word of the level at `path` (its access_bits, else the workload's word_bits, else 16)."""
    level = data["architecture"]["levels"][path[2]] if path[:2] == ("architecture", "levels") else {}
    workload = data.get("workload") if isinstance(data.get("workload"), dict) else {}
    for value in (level.get("access_bits"), workload.get("word_bits")):
        if value is None:
            continue
        if type(value) is not int or not 1 <= value <= 4096:
            raise _Unknown
        return value
    return 16


def _clock_mhz(data: dict, path: tuple, text: str) -> Fraction:
    mhz = data["architecture"].get("frequency_mhz")
    if mhz is None:
        raise QuantityError(path, f"{where(path)}: {_q(text)} is per second and needs the clock: give "
                                  f"architecture.frequency_mhz, or write the bandwidth per cycle")
    try:
        value = Decimal(str(mhz)) if isinstance(mhz, (int, str)) and not isinstance(mhz, bool) else None
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite() or not Decimal("0.001") <= value <= 10**6:
        raise _Unknown   # the spec names architecture.frequency_mhz
    return Fraction(value)


#: The spec model holding the fields under each path prefix of FIELDS (for the JSON Schema).
_MODEL_OF = {("workload",): "Workload", ("workload", "tensors", "*"): "TensorFormat",
             ("architecture",): "Architecture", ("architecture", "levels", "*"): "Level",
             ("architecture", "compute_units", "*", "ops", "*"): "OpCost"}


def schema_with_units(schema: dict) -> dict:
    """The instance's JSON Schema with a quantity with units allowed wherever FIELDS converts one, so that a
    schema-checking editor accepts what mapsolve accepts."""
    defs = schema.get("$defs", {})
    for pattern, kind in FIELDS:
        prop = defs.get(_MODEL_OF[pattern[:-1]], {}).get("properties", {}).get(pattern[-1])
        if prop is None:
            continue
        text = {"type": "string", "description": f"a quantity with units, converted exactly: {ACCEPTS[kind]}"}
        if "anyOf" in prop:
            prop["anyOf"].append(text)
        else:
            rest = {k: prop.pop(k) for k in list(prop) if k not in ("description", "title", "default")}
            prop["anyOf"] = [rest, text]
    return schema
