"""Helpers of tests/test_fuzz.py: the in-process CLI runner, the input contract, and structure-aware mutations of
the shipped instance and mapping files (each mutation says whether the docs make its result invalid).

A mutation draws its choices through a `Chooser` (hypothesis' `data.draw` in the tests, `random.Random` in a
quick survey script), so the same generators serve both.
"""
from __future__ import annotations

import copy
import io
import json
import math
import random
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mapsolve.model.spec import KNOWN_OPS

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"

#: Small shipped instances and their mappings (validate/evaluate take milliseconds on them).
SMALL = ["tiny_matmul", "tiny_attention", "tiny_chain", "tiny_online", "tiny_variants", "tiny_int8",
         "tiny_nested", "tiny_block", "doc_example"]
PAIRS = [(f"{n}.json", f"{n}.mapping.json") for n in SMALL] + [("doc_example.json",
                                                                 "doc_example_readback.mapping.json")]
#: Instances a bounded solve (--deterministic-time 0.3) finishes in well under a second.
SOLVABLE = ["tiny_matmul", "doc_example", "tiny_online", "tiny_nested", "tiny_variants"]
SOLVE_BOUNDS = ["--deterministic-time", "0.3", "--time-limit", "10"]

MAX_LINE = 400          # an error line longer than this (beyond the file names it quotes) echoes input
HUGE = "x" * 100_000
NESTED = {"a": {"b": {"c": [1, {"d": None}]}}}
NAN = float("nan")
INF = float("inf")
#: The extreme values a JSON value is replaced by (1e-30/1e30 are JSON floats: the loader reads them as text).
DEEP: Any = 0
for _ in range(200):            # well below json's recursion limit: it reaches the validators
    DEEP = [DEEP]
EXTREMES: list[Any] = [True, False, None, 0, -1, 2**31, 2**63, 1e-30, 1e30, "NaN", NAN, INF, "", HUGE, [], {},
                       "1/0", "abc", NESTED, DEEP, "a\nb", "x\u2028y", " 8 ", "1_000", "\u0663", -0.0, 1.5]
UNKNOWN_KEY = "zz_fuzz_unknown"
LAX_NUMERALS = (" 8 ", "1_000", "\u0663")   # numerals in text: no claim either way


def load(name: str) -> Any:
    return json.loads((INSTANCES / name).read_text())


BASES = {name: load(name) for pair in PAIRS for name in pair}
# a `mapsolve --json` result file wrapping a mapping (evaluate accepts those too, model/load.py)
for _i, _m in list(PAIRS[:3]):
    BASES["result:" + _m] = {"status": "OPTIMAL", "objective": 1, "energy_fj": 1, "latency_cycles": 1,
                             "mapping": copy.deepcopy(BASES[_m])}
    PAIRS.append((_i, "result:" + _m))


# ------------------------------------------------------------------------------------------------------------
# Running the CLI in this process
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str
    seconds: float
    exc: BaseException | None = None     # an exception other than SystemExit that escaped run()

    def last_line(self) -> str:
        lines = [l for l in self.err.splitlines() if l.strip()]
        return lines[-1] if lines else ""


def cli(*args: Any) -> Run:
    """`mapsolve ARGS` through `mapsolve.cli.main.run()` (the entry point, argv rewriting included)."""
    from mapsolve.cli import main
    args = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["mapsolve", *args]
    code, exc = 0, None
    t0 = time.perf_counter()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main.run()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # what the interpreter does with an escaping exception: exit 1
                exc = e
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
    return Run(args, code, out.getvalue(), err.getvalue(), time.perf_counter() - t0, exc)


class ContractViolation(AssertionError):
    """The run broke the input contract; one subclass per kind, raised from its own line, so hypothesis reports
    each kind as a distinct failure."""


class EscapedException(ContractViolation): pass
class TracebackPrinted(ContractViolation): pass
class BadExitCode(ContractViolation): pass
class PastTimeLimit(ContractViolation): pass
class NotOneLine(ContractViolation): pass
class NoErrorPrefix(ContractViolation): pass
class EchoesInput(ContractViolation): pass
class SilentAcceptance(ContractViolation): pass


def contract_violation(run: Run, must_reject: str | None = None,
                       time_limit: float | None = None) -> tuple[type[ContractViolation], str] | None:
    """(kind, why) if `run` breaks the README's input contract, else None. `must_reject`: the docs make the input
    invalid (the reason), so only exit 2 is right."""
    if run.exc is not None:
        return EscapedException, f"exception escaped: {type(run.exc).__name__}: {run.exc}"[:300]
    if "Traceback" in run.out or "Traceback" in run.err:
        return TracebackPrinted, "Traceback printed"
    if run.code not in (0, 2, 3, 4):
        return BadExitCode, f"exit code {run.code}"
    if time_limit is not None and run.seconds > time_limit + 30:
        return PastTimeLimit, f"took {run.seconds:.0f} s, time limit {time_limit} s"
    if run.code == 2:
        lines = [l for l in run.err.splitlines() if l.strip()]
        if len(lines) != 1:
            return NotOneLine, f"exit 2 with {len(lines)} stderr lines"
        line = lines[0]
        if not line.startswith("mapsolve: error:"):
            return NoErrorPrefix, "exit 2 without 'mapsolve: error:'"
        quoted = sum(len(a) for a in run.args if len(a) < 1000 and a in line)
        if len(line) - quoted > MAX_LINE:
            return EchoesInput, f"exit 2 error line of {len(line)} characters"
    elif must_reject:
        return SilentAcceptance, f"silent acceptance (exit {run.code}) of invalid input: {must_reject}"
    return None


def assert_contract(run: Run, must_reject: str | None = None, time_limit: float | None = None,
                    what: str = "") -> None:
    found = contract_violation(run, must_reject, time_limit)
    if found is None:
        return
    kind, why = found
    msg = (f"{why}\n  case: {what}\n  argv: mapsolve {' '.join(a[:80] for a in run.args)}\n"
           f"  exit {run.code}; stderr tail: {run.err[-1500:]!r}; stdout tail: {run.out[-300:]!r}")
    if kind is EscapedException:
        raise EscapedException(msg) from run.exc
    raise kind(msg)   # one exception class per kind of violation: hypothesis reports each kind apart


# ------------------------------------------------------------------------------------------------------------
# Choosing
# ------------------------------------------------------------------------------------------------------------
class Chooser:
    """The draws a mutation makes: hypothesis' `data` (shrinkable) or a seeded `random.Random`."""

    def __init__(self, data=None, rng: random.Random | None = None):
        self.data, self.rng = data, rng

    def choice(self, seq: Sequence[Any], label: str = "") -> Any:
        seq = list(seq)
        assert seq, label
        if self.data is not None:
            from hypothesis import strategies as st
            return seq[self.data.draw(st.integers(0, len(seq) - 1), label=label or None)]
        return seq[self.rng.randrange(len(seq))]

    def integer(self, lo: int, hi: int, label: str = "") -> int:
        if self.data is not None:
            from hypothesis import strategies as st
            return self.data.draw(st.integers(lo, hi), label=label or None)
        return self.rng.randint(lo, hi)

    def boolean(self, label: str = "") -> bool:
        return bool(self.integer(0, 1, label))


# ------------------------------------------------------------------------------------------------------------
# JSON paths
# ------------------------------------------------------------------------------------------------------------
Path_ = tuple  # of str keys and int indices


def walk(doc: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    """Every (path, value) below the root, the root included as ()."""
    out = [(path, doc)]
    if doc is DEEP:
        return out
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += walk(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += walk(v, path + (i,))
    return out


def get(doc: Any, path: Path_) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def show(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(root)"


def short(v: Any) -> str:
    if v is DEEP or (isinstance(v, list) and v and isinstance(v[0], list)):
        return "[[[...0...]]] (200 deep)"
    if isinstance(v, str) and len(v) > 40:
        return f"'{v[:5]}...' ({len(v)} chars)"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return f"{v} (JSON token)"
    if isinstance(v, float):
        return f"{v!r} (JSON float)"
    return json.dumps(v)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, allow_nan=True)   # NaN/Infinity tokens: Python's json reads them


# ------------------------------------------------------------------------------------------------------------
# What a JSON position is, per the spec (model/spec.py)
# ------------------------------------------------------------------------------------------------------------
#: int fields: (min, max, optional)
INT_FIELDS = {"word_bits": (1, 1024, False), "bits": (1, 1024, True), "accumulator_bits": (1, 1024, True),
              "capacity_words": (0, 2**50, True), "capacity_bits": (0, 2**56, True),
              "access_bits": (1, 4096, True), "x": (1, 2**20, False), "y": (1, 2**20, False),
              "workers": (1, 64, False), "seed": (0, 2**31 - 1, False), "factor": (1, 2**40, False)}
RANK_BOUND = (1, 2**40, False)
ENERGY_FIELDS = {"read_pj", "write_pj", "energy_pj"}           # decimal, 0..1e9, <= 3 places, required
FRACTION_FIELDS = {"bandwidth": True, "read_bandwidth": True, "write_bandwidth": True, "per_cycle": False}
LITERAL_FIELDS = {"objective", "nesting", "axis", "running"}
#: Ops the shipped small instances' units run (an op is any name, model/spec.py; one no unit runs is refused).
SHIPPED_OPS = set(KNOWN_OPS)
OPTIONAL_STR = {"recurrence", "running", "variant"}
OPTIONAL_LIST = {"may_keep", "serves", "replaces"}              # plus a shared loop's einsums
USER_KEYED = {"ranks", "tensors", "ops", "renames"}              # dicts keyed by names, not by spec fields


def _field(path: Path_) -> tuple[str | None, str | None]:
    """(the spec field name at `path`, the enclosing user-keyed dict's name if the key is a user name)."""
    if not path:
        return None, None
    last = path[-1]
    if isinstance(last, int):
        return (path[-2] if len(path) > 1 and isinstance(path[-2], str) else None), None
    if len(path) >= 2 and path[-2] in USER_KEYED and (path[-2] != "ranks" or path[-3:-2] == ("workload",)):
        return None, path[-2]
    return last, None


def _is_shared_loop_einsums(doc: Any, path: Path_) -> bool:
    return bool(path) and path[-1] == "einsums" and isinstance(get(doc, path[:-1]), dict) \
        and "factor" in get(doc, path[:-1])


def _number(v: Any) -> float | None:
    """The number a replacement value denotes, if it is one (a JSON float arrives as text: see model/load.py)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    return None


def replace_invalid(doc: Any, path: Path_, old: Any, new: Any) -> str | None:
    """Why replacing `old` at `path` by `new` makes the file invalid per the spec, or None (valid, or unclear)."""
    name, user = _field(path)
    if isinstance(new, dict) and new == NESTED and isinstance(old, dict):
        return "a dict with unknown keys replaces an object"
    if isinstance(old, bool):
        if new is None or isinstance(new, (list, dict)) or new in ("", "abc", "1/0", HUGE, "NaN") \
                or (type(new) is int and new not in (0, 1)) or isinstance(new, float):
            return f"{short(new)} for the boolean {show(path)}"
        return None
    if isinstance(old, int) and name != "time_limit_s":
        lo, hi, optional = RANK_BOUND if user == "ranks" else INT_FIELDS.get(name, (None, None, None))
        if lo is None:
            return None
        if isinstance(new, bool):
            return f"JSON boolean where the integer {show(path)} is expected"
        if new is None:
            return None if optional else f"null for the required integer {show(path)}"
        if type(new) is int:
            return f"{new} outside [{lo}, {hi}] for {show(path)}" if not lo <= new <= hi else None
        if new in LAX_NUMERALS or (isinstance(new, float) and new == 0):
            return None   # text a lax parser may read as a number; -0.0
        return f"{short(new)} for the integer {show(path)}"
    if name == "time_limit_s":
        if isinstance(new, bool):
            return "JSON boolean for solver.time_limit_s"
        n = _number(new)
        if isinstance(new, float) and new == 0:
            return "zero for solver.time_limit_s"
        if isinstance(new, float) and abs(new) < 1:   # 1e-30 reads as text "1e-30": a valid float
            return None
        if n is not None and (math.isnan(n) or not 0 < n <= 86400):
            return f"{short(new)} outside (0, 86400] for solver.time_limit_s"
        if new is None or isinstance(new, (list, dict)) or new in ("", "abc", "1/0", HUGE, "NaN"):
            return f"{short(new)} for solver.time_limit_s"
        return None
    if isinstance(old, str):
        if name in ENERGY_FIELDS | {"frequency_mhz", *FRACTION_FIELDS} and new in LAX_NUMERALS:
            return None
        if name in ENERGY_FIELDS:
            if type(new) is int and 0 <= new <= 10**9:
                return None
            if isinstance(new, float) and not (math.isnan(new) or math.isinf(new)) and 0 <= new <= 1e9 \
                    and new == round(new, 3):
                return None
            return f"{short(new)} for the energy {show(path)} (a decimal in [0, 1e9] with <= 3 places)"
        if name == "frequency_mhz":
            if new is None or (type(new) is int and new > 0) or new in (1e-30, 1e30, 1.5):
                return None
            return f"{short(new)} for architecture.frequency_mhz (a positive decimal)"
        if name in FRACTION_FIELDS:
            if new is None and FRACTION_FIELDS[name]:
                return None
            if (type(new) is int and new > 0) or new in (1e-30, 1e30, 1.5):
                return None
            return f"{short(new)} for the fraction {show(path)} (positive)"
        if name == "description":
            return None if isinstance(new, str) else f"{short(new)} for the text {show(path)}"
        # a name, a reference to one, or a literal
        if new is None and name in OPTIONAL_STR:
            return None
        if not isinstance(new, str):
            return f"{short(new)} for the name {show(path)}"
        if new == "":
            return f"empty string for the name {show(path)}"
        if name in LITERAL_FIELDS and new not in ("energy", "latency", "x", "y", "tree", "flat"):
            return f"{short(new)} is none of the values {show(path)} allows"
        if name == "op" and new not in SHIPPED_OPS:
            return f"{short(new)}: no compute unit runs op {show(path)} (or not an op name)"
        return None
    if isinstance(old, list):
        if isinstance(new, list):
            return None
        if new is None and (name in OPTIONAL_LIST or _is_shared_loop_einsums(doc, path)):
            return None
        return f"{short(new)} for the list {show(path)}"
    if isinstance(old, dict):
        if isinstance(new, dict):
            return None
        return f"{short(new)} for the object {show(path)}"
    return None


#: Keys a spec object cannot do without (schema `required`), outside user-keyed dicts.
REQUIRED = {"tensor", "ranks", "name", "output", "inputs", "op", "einsums", "workload", "architecture", "read_pj",
            "write_pj", "energy_pj", "ops", "levels", "compute_units", "rank", "factor", "axis", "level", "einsum",
            "compute_unit", "fusion_level"}
#: Lists the mapping may repeat an element of without the docs saying it is wrong.
DUP_OK = {"shared_loops"}


# ------------------------------------------------------------------------------------------------------------
# Mutations
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Mutation:
    base: str                # the shipped file mutated
    what: str                # readable description (a reproducer)
    must_reject: str | None  # the docs make the result invalid: why
    doc: Any = field(repr=False, default=None)

    def __str__(self) -> str:
        return f"{self.base}: {self.what}" + (f"  [invalid: {self.must_reject}]" if self.must_reject else "")


def _names(doc: Any) -> list[str]:
    """Every string naming something (values of name-like keys and string-list elements)."""
    out = set()
    for path, v in walk(doc):
        if isinstance(v, str) and path and _field(path)[0] not in ("description", *ENERGY_FIELDS,
                                                                 *FRACTION_FIELDS, "frequency_mhz"):
            out.add(v)
    return sorted(out)


def generic(ch: Chooser, base: str, op: str | None = None, doc: Any = None) -> Mutation:
    """One structure-aware mutation of the shipped file `base` (or of `doc`, a mutated copy of it) at a path
    chosen among all of its positions."""
    doc = copy.deepcopy(BASES[base]) if doc is None else doc
    ops = ["replace", "replace", "replace", "delete", "add_key", "dup", "swap", "empty", "rename"]
    op = op or ch.choice(ops, "op")
    spots = walk(doc)
    if len(spots) == 1 or (op == "delete" and not any(p and isinstance(p[-1], str) for p, _ in spots)):
        op = "add_key"   # an earlier mutation left an empty object
    if op == "replace":
        path, old = ch.choice(spots[1:], "path")
        new = ch.choice(EXTREMES, "value")
        new = new if new is DEEP else copy.deepcopy(new)
        get(doc, path[:-1])[path[-1]] = new
        return Mutation(base, f"set {show(path)} = {short(new)} (was {short(old)[:40]})",
                        replace_invalid(doc, path, old, new), doc)
    if op == "delete":
        keyed = [(p, v) for p, v in spots if p and isinstance(p[-1], str)]
        path, _ = ch.choice(keyed, "path")
        del get(doc, path[:-1])[path[-1]]
        name, user = _field(path)
        required = name in REQUIRED and not (name == "einsums" and _is_shared_loop_einsums(BASES[base], path))
        return Mutation(base, f"delete {show(path)}",
                        f"{show(path)} is required" if required and user is None else None, doc)
    if op == "add_key":
        dicts = [(p, v) for p, v in spots if isinstance(v, dict)]
        path, d = ch.choice(dicts, "path")
        d[UNKNOWN_KEY] = 1
        user = path[-1] if path and path[-1] in USER_KEYED and (path[-1] != "ranks" or path[-2:-1] == ("workload",)) \
            else None
        bad = None if user in ("ranks", "renames") else f"unknown key {UNKNOWN_KEY} in {show(path)}"
        return Mutation(base, f"add {show(path + (UNKNOWN_KEY,))} = 1", bad, doc)
    lists = [(p, v) for p, v in spots if isinstance(v, list) and v]
    if op == "swap":
        lists = [(p, v) for p, v in lists if len(v) >= 2]
    strs = [(p, v) for p, v in spots if isinstance(v, str) and p and _field(p)[0] not in (
        "description", *ENERGY_FIELDS, *FRACTION_FIELDS, "frequency_mhz")]
    if not lists and not strs:
        return generic(ch, base, "add_key", doc)
    if not lists or (op == "rename" and strs):
        path, old = ch.choice(strs, "path")
        pool = [n for n in _names(doc) if n != old] + ["zz_renamed"]
        new = ch.choice(pool, "new name")
        get(doc, path[:-1])[path[-1]] = new
        return Mutation(base, f"rename {show(path)} {old!r} -> {new!r}", None, doc)
    path, lst = ch.choice(lists, "path")
    name = path[-1] if path and isinstance(path[-1], str) else None
    if op == "dup":
        i = ch.integer(0, len(lst) - 1, "index")
        lst.insert(i + 1, copy.deepcopy(lst[i]))
        bad = None if name in DUP_OK else f"{show(path)} repeats element {i} (a set / unique names)"
        return Mutation(base, f"duplicate {show(path)}[{i}] ({short(lst[i])[:60]})", bad, doc)
    if op == "swap":
        i = ch.integer(0, len(lst) - 2, "index")
        j = ch.integer(i + 1, len(lst) - 1, "index2")
        lst[i], lst[j] = lst[j], lst[i]
        return Mutation(base, f"swap {show(path)}[{i}] and [{j}]", None, doc)
    lst.clear()
    return Mutation(base, f"empty {show(path)}", None, doc)


#: Values for the numeric fields of an instance: every one either in range or exactly one documented rule away.
NUMERIC_VALUES = {
    "rank": [1, 2, 3, 7, 64, 2**20, 2**31, 2**40, 2**40 + 1, 0, -1, 2**63, True, "8", 8.0],
    "capacity_words": [0, 1, 2, 3, 2**31, 2**50, 2**50 + 1, -1, 2**63, True, None, 1.5],
    "capacity_bits": [0, 1, 7, 8, 16, 2**40, 2**56, 2**56 + 1, -1, True, None],
    "bandwidth": ["1000000007/999999937", "1/1000000007", "3/7", "1e-30", "1e30", "0", "-1/2", "1/0", 0, 1,
                  2**63, True, None, 1e-30, 1e30, NAN, INF, "NaN", "inf", "0.5", "1/-2"],
    "per_cycle": ["1000000007/999999937", "1/1000000007", "1/7", "0", "1/0", 1, 2**31, True, None, NAN, "1e-30"],
    "energy": ["1e-30", "1e30", "0", "0.001", "0.0001", "999999999.999", "1000000000.001", "-0", "-0.001", 2**31,
               2**63, True, NAN, INF, "NaN", "Infinity", "1E+3", "1/2", 0.5, 1e-30],
    "mesh": [1, 2, 3, 1024, 2**20, 2**20 + 1, 0, -1, True, None, 2.0],
    "frequency_mhz": ["1e-30", "1e30", "0", "-1", "1000", 1000, 0, True, NAN, "NaN", None, "1/2"],
    "bits": [1, 3, 8, 1024, 1025, 0, True, None],
    "access_bits": [1, 8, 4096, 4097, 0, True, None],
    "time_limit_s": [1e-30, 1e-9, 0, -1, 86400, 86401, 1e30, NAN, INF, True, "10"],
    "workers": [1, 64, 65, 0, -1, True, 2**63],
    "word_bits": [1, 8, 1024, 1025, 0, True, None],
    "seed": [0, 2**31 - 1, 2**31, -1, 2**63, True],
}


def _numeric_invalid(kind: str, key: str, new: Any) -> str | None:
    """Whether `new` is invalid for a field of `kind` (per model/spec.py and docs/model.md); None if valid."""
    bad = f"{short(new)} for {key}"
    if isinstance(new, bool):
        return "JSON boolean where a number is expected: " + bad
    if isinstance(new, float) and (math.isnan(new) or math.isinf(new)):
        return "non-finite number: " + bad
    if kind in ("rank", "capacity_words", "capacity_bits", "mesh", "bits", "access_bits", "word_bits", "workers",
                "seed"):
        lo, hi, optional = {"rank": RANK_BOUND, "mesh": INT_FIELDS["x"]}.get(kind, INT_FIELDS.get(kind))
        if new is None:
            return None if optional else "null: " + bad
        if type(new) is int:
            return None if lo <= new <= hi else "out of range: " + bad
        if isinstance(new, float):
            return None if new == int(new) and lo <= new <= hi else "not an integer: " + bad
        if isinstance(new, str):
            return None if new.isdigit() and lo <= int(new) <= hi else "not an integer: " + bad
        return bad
    if kind in ("bandwidth", "per_cycle"):
        if new is None:
            return None if kind == "bandwidth" else "null: " + bad
        if isinstance(new, (int, float)):
            return None if new > 0 else "not positive: " + bad
        from fractions import Fraction
        try:
            f = Fraction(new)
        except (ValueError, ZeroDivisionError):
            return "not a fraction: " + bad
        return None if f > 0 else "not positive: " + bad
    if kind in ("energy", "frequency_mhz"):
        if new is None:
            return None if kind == "frequency_mhz" else "null: " + bad
        from decimal import Decimal, InvalidOperation
        try:
            d = Decimal(str(new))
        except InvalidOperation:
            return "not a decimal: " + bad
        if not d.is_finite():
            return "not finite: " + bad
        if kind == "frequency_mhz":
            return None if d > 0 else "not positive: " + bad
        if d < 0 or d > 10**9:
            return "out of [0, 1e9]: " + bad
        return None if d == round(d, 3) else "more than 3 decimals: " + bad
    if kind == "time_limit_s":
        if new is None or isinstance(new, str) and not new.replace(".", "").isdigit():
            return bad
        v = float(new)
        return None if 0 < v <= 86400 else "out of (0, 86400]: " + bad
    return None


def numeric(ch: Chooser, base: str, doc: Any = None) -> Mutation:
    """A numeric extreme on one of the specific numeric fields of the instance `base` (or of `doc`)."""
    doc = copy.deepcopy(BASES[base]) if doc is None else doc
    spots = []
    for r in doc["workload"]["ranks"]:
        spots.append(("rank", ("workload", "ranks", r)))
    for i, lv in enumerate(doc["architecture"]["levels"]):
        lp = ("architecture", "levels", i)
        if i > 0:
            spots.append(("capacity_bits" if "capacity_bits" in lv else "capacity_words",
                          lp + ("capacity_bits" if "capacity_bits" in lv else "capacity_words",)))
            spots.append(("capacity_bits", lp + ("capacity_bits",)) if "capacity_words" not in lv else
                         ("capacity_words", lp + ("capacity_words",)))
        for k in ("bandwidth", "read_bandwidth", "write_bandwidth"):
            if k in lv or (k == "bandwidth" and "read_bandwidth" not in lv and "write_bandwidth" not in lv):
                spots.append(("bandwidth", lp + (k,)))
        spots += [("energy", lp + ("read_pj",)), ("energy", lp + ("write_pj",)),
                  ("mesh", lp + ("mesh", "x")), ("mesh", lp + ("mesh", "y")),
                  ("access_bits", lp + ("access_bits",))]
    for i, u in enumerate(doc["architecture"]["compute_units"]):
        up = ("architecture", "compute_units", i)
        spots += [("mesh", up + ("mesh", "x")), ("mesh", up + ("mesh", "y"))]
        for op in u["ops"]:
            spots += [("energy", up + ("ops", op, "energy_pj")), ("per_cycle", up + ("ops", op, "per_cycle"))]
    spots += [("frequency_mhz", ("architecture", "frequency_mhz")), ("word_bits", ("workload", "word_bits")),
              ("time_limit_s", ("solver", "time_limit_s")), ("workers", ("solver", "workers")),
              ("seed", ("solver", "seed"))]
    kind, path = ch.choice(spots, "field")
    new = ch.choice(NUMERIC_VALUES[kind], "value")
    parent = doc
    for p in path[:-1]:
        parent = parent.setdefault(p, {}) if isinstance(parent, dict) else parent[p]
    old = parent.get(path[-1], "<absent>")
    parent[path[-1]] = new
    bad = _numeric_invalid(kind, show(path), new)
    lv = get(doc, path[:-1])
    if kind.startswith("capacity") and "capacity_words" in lv and "capacity_bits" in lv \
            and lv["capacity_words"] is not None and lv["capacity_bits"] is not None:
        bad = bad or "capacity_words and capacity_bits both given"
    if kind == "bandwidth" and new is not None and (
            "bandwidth" in lv and lv["bandwidth"] is not None and path[-1] != "bandwidth"):
        bad = bad or "bandwidth and read/write_bandwidth both given"
    return Mutation(base, f"set {show(path)} = {short(new)} (was {short(old)[:40]})", bad, doc)


def stacked(ch: Chooser, base: str, kinds: Sequence[Any]) -> Mutation:
    """One to three mutations in a row (each drawn from `kinds`: generic or numeric). Only a single mutation
    claims the docs make the file invalid (a later one may undo an earlier one)."""
    n = ch.integer(1, 3, "mutations")
    doc, whats, mut = None, [], None
    for _ in range(n):
        kind = ch.choice(kinds, "kind")
        try:
            mut = kind(ch, base, doc=copy.deepcopy(doc) if doc is not None else None)
        except (TypeError, KeyError, AttributeError, IndexError, ValueError):
            continue   # an earlier mutation broke the structure this one edits
        doc = mut.doc
        whats.append(mut.what)
    if mut is None:
        return generic(ch, base)
    claim = mut.must_reject if len(whats) == 1 else None
    if base.startswith("result:") and not mut.what.split(" ", 2)[1].startswith(".mapping"):
        claim = None   # a result file's other keys are the solver's report, not read by evaluate
    return Mutation(base, "; then ".join(whats), claim, doc)


# ------------------------------------------------------------------------------------------------------------
# Mapping-specific mutations
# ------------------------------------------------------------------------------------------------------------
def _paths_of_units(inst: dict) -> dict[str, list[str]]:
    arch = inst["architecture"]
    return {u["name"]: [lv["name"] for lv in arch["levels"] if lv.get("serves") is None or u["name"] in lv["serves"]]
            for u in arch["compute_units"]}


def _tensors(inst: dict) -> list[str]:
    out = set()
    for e in inst["workload"]["einsums"] + [e for v in inst["workload"].get("variants", []) for e in v["einsums"]]:
        out |= {t["tensor"] for t in (e["output"], *e["inputs"])}
    return sorted(out)


def _einsum_defs(inst: dict, variant: str | None) -> dict[str, dict]:
    wl = inst["workload"]
    out = {e["name"]: e for e in wl["einsums"]}
    for v in wl.get("variants", []):
        if v["name"] == variant:
            out.update({e["name"]: e for e in v["einsums"]})
    return out


def _space(e: dict) -> set[str]:
    return {r for t in (e["output"], *e["inputs"]) for r in t["ranks"]}


def mapping_targeted(ch: Chooser, inst_name: str, map_name: str) -> Mutation:
    """A mutation of a mapping's decisions: factors, keep lists, levels, groups and shared loops."""
    inst = BASES[inst_name]
    m_doc = copy.deepcopy(BASES[map_name])
    m = m_doc["mapping"] if "mapping" in m_doc and "einsums" not in m_doc else m_doc   # a result file
    arch_levels = inst["architecture"]["levels"]
    levels = [lv["name"] for lv in arch_levels]
    ranks = list(inst["workload"]["ranks"])
    max_bound = max(inst["workload"]["ranks"].values())
    tensors = _tensors(inst)
    unit_path = _paths_of_units(inst)
    defs = _einsum_defs(inst, m.get("variant"))
    names = [em["einsum"] for em in m["einsums"]]
    unit_of = {em["einsum"]: em["compute_unit"] for em in m["einsums"]}
    kinds = ["factor", "keep_add", "keep_dup", "keep_drop", "level_drop", "level_rename", "group_new",
             "group_bad_fusion", "group_non_consecutive", "group_dup_member", "shared_loop_add",
             "shared_loop_einsums", "temporal_add", "spatial_add", "unit_swap"]
    kind = ch.choice(kinds, "kind")
    ei = ch.integer(0, len(m["einsums"]) - 1, "einsum")
    em = m["einsums"][ei]
    edef = defs.get(em["einsum"])
    space = _space(edef) if edef else set()
    used = {t["tensor"] for t in (edef["output"], *edef["inputs"])} if edef else set()
    li = ch.integer(0, len(em["levels"]) - 1, "level")
    lm = em["levels"][li]
    where = f"einsums[{ei}].levels[{li}]"
    if kind == "factor":
        loops = [("temporal", i) for i in range(len(lm.get("temporal", [])))] + \
                [("spatial", i) for i in range(len(lm.get("spatial", [])))]
        if loops:
            k, i = ch.choice(loops, "loop")
            new = ch.choice([1, 2, 3, 4, 16, 2**31, 2**40, 2**40 + 1, 0, -1, True, 2.0, "2"], "factor")
            lm[k][i]["factor"] = new
            bad = ("JSON boolean for a factor" if isinstance(new, bool) else
                   f"factor {new} outside [1, 2^40]" if type(new) is int and not 1 <= new <= 2**40 else
                   f"factor {new} above every rank bound (factors multiply to the bound)"
                   if type(new) is int and new > max_bound else None)
            return Mutation(map_name, f"set {where}.{k}[{i}].factor = {short(new)}", bad, m_doc)
        kind = "keep_add"
    if kind == "keep_add":
        t = ch.choice(tensors + ["zz_nope"], "tensor")
        lm.setdefault("keep", []).append(t)
        bad = (f"{t} twice in a keep list" if lm["keep"].count(t) > 1 else
               f"keeps {t}, which einsum {em['einsum']} does not use" if edef and t not in used else None)
        return Mutation(map_name, f"append {t!r} to {where}.keep", bad, m_doc)
    if kind == "keep_dup" and lm.get("keep"):
        t = ch.choice(lm["keep"], "tensor")
        lm["keep"].append(t)
        return Mutation(map_name, f"append {t!r} again to {where}.keep", f"{t} twice in a keep list", m_doc)
    if kind in ("keep_dup", "keep_drop"):
        if lm.get("keep"):
            t = ch.choice(lm["keep"], "tensor")
            lm["keep"].remove(t)
            return Mutation(map_name, f"remove {t!r} from {where}.keep", None, m_doc)
        kind = "level_drop"
    if kind == "level_drop":
        del em["levels"][li]
        return Mutation(map_name, f"delete einsums[{ei}].levels[{li}] ({lm['level']})",
                        "a level of the unit's path has no entry", m_doc)
    if kind == "level_rename":
        new = ch.choice([n for n in levels if n != lm["level"]] + ["zz_nope"], "level")
        old = lm["level"]
        lm["level"] = new
        return Mutation(map_name, f"set {where}.level = {new!r} (was {old!r})",
                        "the entries no longer list the unit's path (repeated, off-path or unknown level)", m_doc)
    if kind == "unit_swap":
        new = ch.choice(list(unit_path) + ["zz_nope"], "unit")
        old = em["compute_unit"]
        em["compute_unit"] = new
        return Mutation(map_name, f"set einsums[{ei}].compute_unit = {new!r} (was {old!r})",
                        "unknown compute unit" if new == "zz_nope" else None, m_doc)
    if kind == "temporal_add":
        r = ch.choice(ranks + ["zz_nope"], "rank")
        f = ch.choice([1, 2, 3], "factor")
        lm.setdefault("temporal", []).append({"rank": r, "factor": f})
        bad = ("unknown rank in a loop" if r not in ranks else
               f"rank {r} is outside einsum {em['einsum']}'s space" if edef and r not in space else
               "two temporal loops of one rank at one level" if sum(lp["rank"] == r for lp in lm["temporal"]) > 1
               else f"an extra factor {f} breaks the product of {r}'s factors" if f > 1 and not m.get("groups")
               else None)
        return Mutation(map_name, f"append {{rank {r}, factor {f}}} to {where}.temporal", bad, m_doc)
    if kind == "spatial_add":
        r = ch.choice(ranks, "rank")
        f = ch.choice([1, 2, 2**20, 0], "factor")
        axis = ch.choice(["x", "y", "z"], "axis")
        lm.setdefault("spatial", []).append({"rank": r, "factor": f, "axis": axis})
        dup = sum(1 for lp in lm["spatial"] if lp["rank"] == r and lp["axis"] == axis) > 1
        bad = ("axis z" if axis == "z" else "factor 0" if f == 0 else
               f"rank {r} is outside einsum {em['einsum']}'s space" if edef and r not in space else
               "two spatial loops of one rank and axis at one level" if dup else
               f"factor {f} above every rank bound" if f > max_bound else
               f"an extra factor {f} breaks the product of {r}'s factors" if f > 1 and not m.get("groups") else None)
        return Mutation(map_name, f"append {{rank {r}, factor {f}, axis {axis}}} to {where}.spatial", bad, m_doc)
    groups = m.setdefault("groups", [])

    def fusion_problem(members: list[str], fl: str) -> str | None:
        if fl not in levels:
            return f"unknown fusion level {fl!r}"
        if fl == levels[0]:
            return f"fusion level {fl} is the backing store, not on chip"
        for e in members:
            path = unit_path.get(unit_of.get(e, ""), [])
            if fl not in path:
                return f"fusion level {fl} is not on the path of member {e}"
        return None

    def above_fusion_problem(loop: dict, g: dict) -> str | None:
        fl = g["fusion_level"]
        if loop["level"] not in levels:
            return f"unknown shared-loop level {loop['level']!r}"
        if fl in levels and levels.index(loop["level"]) >= levels.index(fl):
            return f"shared loop at {loop['level']}, not above the fusion level {fl}"
        return None

    if kind in ("group_dup_member", "shared_loop_add", "shared_loop_einsums", "group_bad_fusion",
                "group_non_consecutive") and not groups:
        kind = "group_new"
    if kind == "group_new":
        i = ch.integer(0, len(names) - 1, "first")
        j = ch.integer(i, min(len(names) - 1, i + 3), "last")
        fl = ch.choice(levels + ["zz_nope"], "fusion level")
        members = names[i:j + 1]
        g = {"einsums": members, "fusion_level": fl}
        if ch.boolean("with shared loop"):
            g["shared_loops"] = [{"level": ch.choice(levels, "sl level"), "rank": ch.choice(ranks, "sl rank"),
                                  "factor": ch.choice([1, 2, 4], "sl factor")}]
        taken = {e for gr in groups for e in gr["einsums"]}
        groups.append(g)
        bad = fusion_problem(members, fl) or (
            f"einsum {sorted(taken & set(members))[0]} in two groups" if taken & set(members) else None) or (
            above_fusion_problem(g["shared_loops"][0], g) if g.get("shared_loops") else None)
        return Mutation(map_name, f"append group {json.dumps(g)}", bad, m_doc)
    gi = ch.integer(0, len(groups) - 1, "group")
    g = groups[gi]
    if kind == "group_bad_fusion":
        cands = [lv for lv in levels if fusion_problem(g["einsums"], lv)] + ["zz_nope"]
        fl = ch.choice(cands, "fusion level")
        old = g["fusion_level"]
        g["fusion_level"] = fl
        return Mutation(map_name, f"set groups[{gi}].fusion_level = {fl!r} (was {old!r})",
                        fusion_problem(g["einsums"], fl), m_doc)
    if kind == "group_non_consecutive":
        outside = [n for n in names if n not in g["einsums"]]
        if outside:
            extra = ch.choice(outside, "extra")
            g["einsums"] = g["einsums"] + [extra]
            order = [names.index(e) for e in g["einsums"] if e in names]
            contiguous = order == list(range(min(order), max(order) + 1))
            other = any(extra in gr["einsums"] for k, gr in enumerate(groups) if k != gi)
            return Mutation(map_name, f"append {extra!r} to groups[{gi}].einsums",
                            f"{extra} in two groups" if other else
                            None if contiguous else "group members not consecutive in cascade order", m_doc)
        kind = "group_dup_member"
    if kind == "group_dup_member":
        e = ch.choice(g["einsums"], "member")
        g["einsums"].append(e)
        return Mutation(map_name, f"append {e!r} again to groups[{gi}].einsums", f"{e} twice in a group", m_doc)
    loops = g.setdefault("shared_loops", [])
    if kind == "shared_loop_einsums" and loops:
        k = ch.integer(0, len(loops) - 1, "loop")
        members = g["einsums"]
        sub = ch.choice([[members[0]], members[::-1], [members[-1], members[-1]], ["zz_nope"], members[1:] or
                         members], "members")
        loops[k]["einsums"] = sub
        bad = ("repeated member" if len(set(sub)) != len(sub) else
               "not a member of the group" if not set(sub) <= set(members) else
               "members not in cascade order" if sub == members[::-1] and len(members) > 1 else None)
        return Mutation(map_name, f"set groups[{gi}].shared_loops[{k}].einsums = {sub}", bad, m_doc)
    loop = {"level": ch.choice(levels + ["zz_nope"], "level"), "rank": ch.choice(ranks, "rank"),
            "factor": ch.choice([1, 2, 3, 4, 2**40], "factor")}
    at = ch.integer(0, len(loops), "position")
    loops.insert(at, loop)
    bad = above_fusion_problem(loop, g) or (
        f"factor {loop['factor']} above every rank bound" if loop["factor"] > max_bound and any(
            loop["rank"] in _space(defs[e]) for e in g["einsums"] if e in defs) else None)
    return Mutation(map_name, f"insert shared loop {json.dumps(loop)} at groups[{gi}].shared_loops[{at}]", bad, m_doc)


# ------------------------------------------------------------------------------------------------------------
# Command-line flags of solve
# ------------------------------------------------------------------------------------------------------------
FLAG_VALUES = {
    "--time-limit": ["nan", "inf", "-inf", "-1", "0", "1e-9", "abc", "", "1e400", "0.5", "10"],
    "--deterministic-time": ["nan", "inf", "-1", "0", "1e-9", "abc", "", "1e9", "0.05", "0.3"],
    "--seed": ["-1", str(2**31), str(2**63), "0", "7", str(2**31 - 1), "1.5", "abc", ""],
    "--objective": ["", "edp", "foo", "energy,energy", "latency", "energy,latency", "latency,energy", "ENERGY",
                    "energy ", "energy,latency,energy", "latency"],
    "--workers": ["0", "-1", str(10**9), "1", "2", "65", "64", str(2**63), "x"],
    "--nesting": ["", "tree", "flat", "deep", "TREE"],
    "--certify": ["", "auto", "full", "cheap", "none"],
}
OUTPUT_FLAGS = ["--json", "--trace", "--solver-log", "--export-model", "--cache"]


def flag_invalid(flag: str, value: str) -> str | None:
    """Whether the README / cli/solve_cmd.py / SolverOptions make `flag value` invalid."""
    if flag in ("--time-limit", "--deterministic-time"):
        try:
            v = float(value)
        except ValueError:
            return f"{flag} {value!r} is not a number"
        if math.isnan(v) or v <= 0:
            return f"{flag} {value} is not a positive number of seconds"
        if flag == "--deterministic-time" and v >= 1e9:
            return f"{flag} {value} (>= 1e9, refused by solve_cmd)"
        return None
    if flag == "--seed":
        if not value.lstrip("-").isdigit():
            return f"--seed {value!r} is not an integer"
        return None if 0 <= int(value) <= 2**31 - 1 else f"--seed {value} outside [0, 2^31-1] (SolverOptions)"
    if flag == "--objective":
        return None if value in ("energy", "latency", "energy,latency", "latency,energy", "edp") else \
            f"--objective {value!r} is not energy|latency|energy,latency|latency,energy|edp"
    if flag == "--workers":
        if not value.lstrip("-").isdigit():
            return f"--workers {value!r} is not an integer"
        return None if 1 <= int(value) <= 64 else f"--workers {value} outside [1, 64] (SolverOptions)"
    if flag == "--nesting":
        return None if value in ("tree", "flat") else f"--nesting {value!r}"
    if flag == "--certify":
        return None if value in ("auto", "full", "cheap") else f"--certify {value!r}"
    return None
