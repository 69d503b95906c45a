"""Reading AccelForge's input files: Jinja templating, its YAML tags, exact numbers.

AccelForge writes its specs as Jinja-templated YAML whose nodes carry tags (`!Memory`, `!Compute`, `!Container`).
Numbers must stay exact (energies become pJ with at most 3 decimals), so YAML floats are read as fractions of
their literal text; anything outside the subset the importer understands is refused with one line naming it.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import yaml

#: The node tags the importer understands (AccelForge's arch node classes).
KNOWN_TAGS = ("Memory", "Compute", "Container")


class Refused(ValueError):
    """Input outside the subset the importer converts exactly: one line naming the feature and where it is."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def parse_sets(pairs: list[str]) -> dict[str, object]:
    """--set K=V pairs as template variables: integers and decimals become numbers (the templates compute with
    them, e.g. `4 * D_MODEL`), anything else stays text."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise Refused(f"--set {pair!r}: expected NAME=VALUE with NAME an identifier")
        if key in out:
            raise Refused(f"--set {key}: given twice")
        value = value.strip()
        if re.fullmatch(r"[-+]?\d+", value):
            out[key] = int(value)
        elif re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", value):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def render(path: Path, variables: dict[str, object]) -> str:
    """The file's text after Jinja templating (undefined variables are left to the template's `default`)."""
    import jinja2
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise Refused(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"{path}: cannot read: {exc}") from None
    env = jinja2.Environment(undefined=jinja2.Undefined, keep_trailing_newline=True)
    try:
        return env.from_string(text).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        raise Refused(f"{path}: line {exc.lineno}: Jinja template error: {exc.message}") from None
    except Exception as exc:   # the template is the user's code: whatever it raises is its error, in one line
        raise Refused(f"{path}: Jinja template error: {type(exc).__name__}: {exc}") from None


def uses_variable(path: Path, name: str) -> bool:
    """Whether the template text names `name` (a --set that no file uses is a typo, not a silent no-op)."""
    try:
        return re.search(rf"\b{re.escape(name)}\b", Path(path).read_text()) is not None
    except OSError:
        return False


class Tagged(dict):
    """A YAML mapping that carried a tag: `tag` is the tag without its `!`."""

    def __init__(self, tag: str, items: dict) -> None:
        super().__init__(items)
        self.tag = tag


def exact_number(text: str):
    """A YAML/expression number literal as an exact Fraction (an int stays int); .inf/inf as float('inf')."""
    t = text.strip().replace("_", "")
    if t.lower().lstrip("+") in (".inf", "inf"):
        return float("inf")
    if t.lower().lstrip("-") in (".inf", "inf", ".nan", "nan"):
        raise Refused(f"number {text!r}: not a finite positive quantity")
    try:
        d = Decimal(t)
    except InvalidOperation:
        raise Refused(f"number {text!r}: not a number") from None
    f = Fraction(d)
    return int(f) if f.denominator == 1 and re.fullmatch(r"[-+]?\d+", t) else f


class _Loader(yaml.SafeLoader):
    """SafeLoader with exact floats, AccelForge's node tags, and duplicate keys refused."""


def _float(loader: _Loader, node: yaml.Node):
    return exact_number(loader.construct_scalar(node))


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float)) or isinstance(key, bool):
            raise Refused(f"line {key_node.start_mark.line + 1}: a key must be a name or a number, not "
                          f"{type(key).__name__}")
        if key in out:
            raise Refused(f"line {key_node.start_mark.line + 1}: key {key!r} given twice")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


def _tagged(loader: _Loader, suffix: str, node: yaml.Node):
    if suffix not in KNOWN_TAGS:
        raise Refused(f"line {node.start_mark.line + 1}: YAML tag !{suffix} is not supported (the importer "
                      f"converts {', '.join('!' + t for t in KNOWN_TAGS)} nodes)")
    if not isinstance(node, yaml.MappingNode):
        raise Refused(f"line {node.start_mark.line + 1}: !{suffix} must be a mapping")
    return Tagged(suffix, _mapping(loader, node, deep=True))


_Loader.add_constructor("tag:yaml.org,2002:float", _float)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, lambda l, n: _mapping(l, n, deep=True))
_Loader.add_multi_constructor("!", _tagged)


def load_yaml(text: str, source: str):
    """Parse rendered YAML text, with one-line errors naming `source`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except Refused as exc:
        raise Refused(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        raise Refused(f"{source}: not valid YAML after templating: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise Refused(f"{source}: not valid YAML after templating: {exc}") from None
    except RecursionError:
        raise Refused(f"{source}: YAML nested too deeply") from None


def load(path: Path, variables: dict[str, object]):
    """Template, then parse, one AccelForge file."""
    return load_yaml(render(path, variables), str(path))
