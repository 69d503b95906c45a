"""Reading an instance or mapping written in YAML into the same document JSON gives, with the same exactness.

Why a loader of our own rather than yaml.safe_load: PyYAML reads `1.88` as a binary float (the JSON reader keeps
it as its text, JsonNumber, and so must this), silently keeps the last of two equal keys, expands aliases (a
billion-laughs bomb is a few lines), honours tags, and reads YAML 1.1's `yes`/`no`/`on`/`off` as booleans and
`1:30` as 90. Here scalars resolve as in JSON (null, true/false, integers, numbers with a fraction or exponent as
their exact text, everything else a string), and duplicate keys, aliases, explicit tags and unquoted
yes/no/on/off are refused with one line naming the place.
"""
from __future__ import annotations

import re

import yaml

from .spec import JsonNumber


class YamlRefused(ValueError):
    """A YAML construct mapsolve does not accept; the message is one line."""


class _Ambiguous(str):
    """An unquoted yes/no/on/off: a boolean in YAML 1.1, a string in YAML 1.2 (found after loading, to name the
    field)."""


def _line(node_or_event) -> str:
    return f"line {node_or_event.start_mark.line + 1}"


class _Loader(yaml.SafeLoader):
    """SafeLoader with JSON's scalars and refusals instead of surprises."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise YamlRefused(f"{_line(ev)}: YAML aliases (*{ev.anchor}) are not accepted (they can expand a "
                              f"small file into a huge one); write the value out")
        ev = self.peek_event()
        tag = getattr(ev, "tag", None)
        if tag is not None and tag != "!":
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            raise YamlRefused(f"{_line(ev)}: YAML tags ({shown[:60]}) are not accepted; write plain values")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                new = key not in seen
            except TypeError:
                raise YamlRefused(f"{_line(key_node)}: a mapping key must be a plain value, not a list or "
                                  f"mapping") from None
            if not new:
                raise YamlRefused(f"{_line(key_node)}: key {str(key)[:60]!r} appears twice in one mapping (YAML "
                                  f"would keep the last silently)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {}   # a fresh table: SafeLoader's is shared by every PyYAML user


def _resolver(tag: str, pattern: str, first: str) -> None:
    _Loader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL)$", "~nN")
_Loader.yaml_implicit_resolvers[""] = [("tag:yaml.org,2002:null", re.compile(r"^$"))]   # `key:` is null
_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("tag:mapsolve,2026:ambiguous", r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$", "yYnNoO")
_resolver("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789")
_resolver("tag:yaml.org,2002:float", r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+"
                                     r"|\.[0-9]+[eE][-+]?[0-9]+)$", "-+0123456789.")


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    return loader.int_hook(text)


_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: JsonNumber(loader.construct_scalar(node)))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:mapsolve,2026:ambiguous", lambda loader, node: _Ambiguous(loader.construct_scalar(node)))


def read_yaml(text: str, int_hook):
    """The document in `text`, scalars as JSON would give them; `int_hook` builds integers from their text (the
    JSON reader's bound on digits). Raises YamlRefused or yaml.YAMLError."""
    loader = _Loader(text)
    loader.int_hook = int_hook
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    found = _first_ambiguous(data)
    if found is not None:
        where, word = found
        raise YamlRefused(f"{where}: unquoted {word} is a boolean in YAML 1.1 and a string in YAML 1.2: write "
                          f"true or false for a flag, a number for a number, or quote it (\"{word}\") for a name")
    return data


def _first_ambiguous(data):
    """(JSON path, word) of the first unquoted yes/no/on/off, as a key or a value, or None."""
    from .quantities import where
    stack = [(data, ())]
    while stack:
        item, at = stack.pop()
        if isinstance(item, _Ambiguous):
            return where(at), str(item)
        if isinstance(item, dict):
            for k in item:
                if isinstance(k, _Ambiguous):
                    return where((*at, k)) + " (a key)", str(k)
            stack.extend((v, (*at, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*at, i)) for i, v in reversed(list(enumerate(item))))
    return None
