"""Reading instance and mapping files (JSON or YAML), with one-line errors that name the field or the cause.

Quantities with units in an instance ("50 GiB/s", model/quantities.py) are converted exactly before the spec
validates it, so the spec keeps its exact types; `read_instance` also returns the conversions made."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .quantities import Conversion, QuantityError, convert
from .spec import Instance, JsonNumber, Mapping


class InputError(ValueError):
    """Bad input: not JSON, wrong types, unknown fields, impossible numbers. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))  # a file name may hold a newline


M = TypeVar("M", bound=BaseModel)


def _where(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif "[" in str(p) or "function-" in str(p):
            continue  # pydantic's internal union/validator tags
        else:
            name = str(p) if len(str(p)) <= 40 else f"{str(p)[:40]}...({len(str(p))} characters)"
            parts.append(("." if parts else "") + name)
    return "".join(parts) or "(top level)"


def one_line(err: ValidationError) -> str:
    e = err.errors()[0]
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown field"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{_where(tuple(e['loc']))}: {msg}{more}".replace("\n", " ")


class _RepeatedKey(ValueError):
    """A JSON object names a key twice."""


def _no_repeated_keys(pairs: list) -> dict:
    """An object of a JSON file, refusing a key given twice (json.loads would keep the last one silently: a
    typo'd copy of a field would override the one the user reads)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _RepeatedKey(k)
        out[k] = v
    return out


def read_json(text: str, source: str):
    """JSON with exact numbers: a number with a fraction or exponent is kept as its text (JsonNumber), an
    integer of more than 30 digits is refused naming its field."""
    try:
        too_big: list = []
        data = json.loads(text, parse_float=JsonNumber, parse_int=lambda t: _bounded_int(t, too_big),
                          object_pairs_hook=_no_repeated_keys)
    except _RepeatedKey as exc:
        raise InputError(f"{source}: key {exc.args[0][:60]!r} appears twice in one object (JSON keeps only the "
                         f"last one silently; give it once)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    _refuse_too_big(data, too_big, source)
    return data


def _refuse_too_big(data, too_big: list, source: str) -> None:
    """An integer of more than 30 digits was read (`too_big` not empty): refuse it naming its field."""
    big = _find_too_big(data, ()) if too_big else None
    if big is not None:
        where, number = big
        raise InputError(f"{source}: {_where(where)}: number {number.text[:20]}... ({len(number.text)} digits) "
                         f"is too big")


YAML_SUFFIXES = (".yaml", ".yml")


def is_yaml(text: str, source: str) -> bool:
    """YAML by extension (.yaml/.yml); JSON by extension (.json); otherwise by content: JSON starts with { or [."""
    suffix = Path(source).suffix.lower()
    if suffix in YAML_SUFFIXES:
        return True
    if suffix == ".json":
        return False
    return not text.lstrip().startswith(("{", "["))


def read_document(text: str, source: str):
    """The document in `text`, YAML or JSON (see is_yaml), with exact numbers either way."""
    if not is_yaml(text, source):
        return read_json(text, source)
    import yaml
    from .yaml_doc import YamlRefused, read_yaml
    too_big: list = []
    try:
        data = read_yaml(text, lambda t: _bounded_int(t, too_big))
    except YamlRefused as exc:
        raise InputError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = ", ".join(str(t) for t in (exc.context, exc.problem) if t)
        raise InputError(f"{source}: not valid YAML: {what}{at}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply") from None
    _refuse_too_big(data, too_big, source)
    return data


def parse(model: type[M], text: str, source: str) -> M:
    return validate(model, read_document(text, source), source)


def validate(model: type[M], data, source: str) -> M:
    """`data` as a `model`; for an instance, its quantities with units converted first (model/quantities.py)."""
    return validate_converted(model, data, source)[0]


def validate_converted(model: type[M], data, source: str) -> tuple[M, list[Conversion]]:
    conversions: list[Conversion] = []
    if model is Instance:
        try:
            data, conversions = convert(data)
        except QuantityError as exc:
            raise InputError(f"{source}: {exc}") from None
    try:
        return model.model_validate(data), conversions
    except ValidationError as err:
        raise InputError(f"{source}: {one_line(err)}") from None


class _TooBig:
    """A JSON integer of more than 30 digits, kept as text so the error can name its field (no spec number comes
    near it, and Python refuses to parse integers of more than 4,300 digits)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _bounded_int(text: str, too_big: list):
    if len(text.lstrip("-")) > 30:
        too_big.append(_TooBig(text))
        return too_big[-1]
    return int(text)


def _find_too_big(data, where: tuple):
    """(JSON path, number) of the first over-long integer in `data`, or None."""
    stack = [(data, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, _TooBig):
            return at, item
        if isinstance(item, dict):
            stack.extend((v, (*at, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*at, i)) for i, v in reversed(list(enumerate(item))))
    return None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def load_instance(path: str | Path) -> Instance:
    """An instance file (JSON or YAML), checked."""
    return read_instance(path)[0]


def read_instance(path: str | Path) -> tuple[Instance, list[Conversion]]:
    """An instance file, checked, and the quantities with units it converted (for `mapsolve validate`)."""
    inst, conversions = validate_converted(Instance, read_document(_read(path), str(path)), str(path))
    check_instance(inst, str(path))
    return inst, conversions


def load_mapping(path: str | Path) -> "Mapping":
    """A mapping file (JSON or YAML), or the `mapping` field of a `mapsolve --json` result file."""
    data = read_document(_read(path), str(path))
    if isinstance(data, dict) and "mapping" in data and "einsums" not in data:
        data = data["mapping"]
    return validate(Mapping, data, str(path))


def check_instance(inst: Instance, source: str = "instance") -> None:
    """Architecture facts no mapping can get around, caught before any search (for every variant)."""
    from .variants import alternatives
    for _, alt in alternatives(inst):
        _check_plain(alt, source)


def _check_plain(inst: Instance, source: str) -> None:
    arch, wl = inst.architecture, inst.workload
    root = arch.levels[0]
    for e in wl.einsums:
        for t in (e.output, *e.inputs):
            if root.may_keep is not None and t.tensor not in root.may_keep:
                raise InputError(f"{source}: architecture.levels[0] ({root.name}): may_keep must allow every "
                                 f"tensor; {t.tensor} has nowhere to live")
    for li, lv in enumerate(arch.levels):
        cap = lv.capacity(wl.word_bits)
        if cap is None:
            continue
        for e in wl.einsums:
            users = [u.name for u in arch.compute_units if e.op in u.ops and li in arch.path(u.name)]
            if not users:
                continue
            must = [t.tensor for t in (e.output, *e.inputs) if t.tensor in lv.must_keep]
            if sum(wl.bits(t) for t in must) > cap:
                word = lv.word(wl.word_bits)
                have = f"{cap // word} words" if cap % word == 0 else f"{cap} bits"
                raise InputError(f"{source}: architecture.levels[{li}] ({lv.name}): capacity {have} cannot "
                                 f"hold even one-element tiles of {must} (must_keep) for einsum {e.name}")
    for li, lv in enumerate(arch.levels):
        for t in lv.must_keep:
            if lv.may_keep is not None and t not in lv.may_keep:
                raise InputError(f"{source}: architecture.levels[{li}] ({lv.name}): {t} is in must_keep "
                                 f"but not in may_keep")
