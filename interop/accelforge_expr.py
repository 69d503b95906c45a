"""AccelForge's expressions, evaluated exactly for the subset its examples use.

Numbers (`8 * 614e9`, `1024 * 1024 * 8`, `inf`) become exact fractions; set expressions over tensors (`~Intermediates`,
`All`, `weight`, `input | output`) become frozensets within one Einsum's tensors; `len(...)`, comparisons, `and`/
`or`/`not`, `A if C else B` and `T.bits_per_value` work on those. `~X.tensors` (the tensors a memory X does not hold)
depends on the mapping, so it is a marker the importer interprets. Anything else is refused, naming it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction

from .accelforge_yaml import Refused, exact_number

INF = float("inf")


@dataclass(frozen=True)
class TensorSet:
    """Tensors of one Einsum's universe; `~` complements within it."""

    items: frozenset
    universe: frozenset

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass(frozen=True)
class HeldBy:
    """`X.tensors` (or its complement): the tensors memory X holds, known only once a mapping exists."""

    node: str
    complement: bool = False


@dataclass
class Context:
    """Names an expression may use: sets (per Einsum), bits per tensor, arch node names for `X.tensors`."""

    sets: dict
    bits: dict
    nodes: frozenset = frozenset()


def _num(value, where: str):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, Fraction)) or value == INF:
        return value
    raise Refused(f"{where}: a number is expected here")


class _Eval:
    def __init__(self, text: str, ctx: Context, where: str) -> None:
        self.text, self.ctx, self.where = text, ctx, where

    def refuse(self, what: str):
        raise Refused(f"{self.where}: {what} in expression {self.text!r} is not supported")

    def run(self, node):
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            self.refuse(f"{type(node).__name__} syntax")
        return method(node)

    def _Expression(self, node):
        return self.run(node.body)

    def _Constant(self, node):
        if isinstance(node.value, bool):
            return node.value
        if isinstance(node.value, (int, float)):
            return exact_number(ast.get_source_segment(self.text, node) or repr(node.value))
        self.refuse(f"the constant {node.value!r}")

    def _Name(self, node):
        n = node.id
        if n in self.ctx.sets:
            return self.ctx.sets[n]
        if n in ("inf", "Infinity"):
            return INF
        if n in ("True", "False"):
            return n == "True"
        if n in self.ctx.nodes:
            return HeldBy(n)   # a memory's name stands for the tensors it holds, as X.tensors
        raise Refused(f"{self.where}: unknown name {n!r} in expression {self.text!r}")

    def _Attribute(self, node):
        if node.attr == "tensors" and isinstance(node.value, ast.Name) and node.value.id in self.ctx.nodes:
            return HeldBy(node.value.id)
        if node.attr == "bits_per_value":
            s = self.run(node.value)
            if not isinstance(s, TensorSet):
                self.refuse(".bits_per_value of something that is not a tensor set")
            widths = {self.ctx.bits[t] for t in s.items}
            if len(widths) != 1:
                self.refuse(f".bits_per_value of a set of {len(s.items)} tensors with widths {sorted(widths)}")
            return widths.pop()
        self.refuse(f"the attribute .{node.attr}")

    def _UnaryOp(self, node):
        v = self.run(node.operand)
        if isinstance(node.op, ast.Invert):
            if isinstance(v, TensorSet):
                return TensorSet(v.universe - v.items, v.universe)
            if isinstance(v, HeldBy) and not v.complement:
                return HeldBy(v.node, True)
            self.refuse("~ of something that is not a tensor set")
        if isinstance(node.op, ast.Not):
            return not self._truth(v)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            x = _num(v, self.where)
            return -x if isinstance(node.op, ast.USub) else x
        self.refuse(type(node.op).__name__)

    def _truth(self, v):
        if isinstance(v, HeldBy):
            self.refuse("the truth of X.tensors")
        return bool(v)

    def _BinOp(self, node):
        a, b = self.run(node.left), self.run(node.right)
        if isinstance(a, TensorSet) and isinstance(b, TensorSet):
            ops = {ast.BitOr: frozenset.__or__, ast.BitAnd: frozenset.__and__, ast.Sub: frozenset.__sub__,
                   ast.BitXor: frozenset.__xor__}
            if type(node.op) in ops:
                return TensorSet(ops[type(node.op)](a.items, b.items), a.universe | b.universe)
            self.refuse(f"the operator {type(node.op).__name__} on tensor sets")
        if isinstance(a, HeldBy) or isinstance(b, HeldBy):
            self.refuse("X.tensors combined with other sets")
        x, y = _num(a, self.where), _num(b, self.where)
        if isinstance(node.op, ast.Add):
            return x + y
        if isinstance(node.op, ast.Sub):
            return x - y
        if isinstance(node.op, ast.Mult):
            if 0 in (x, y) and INF in (x, y):
                self.refuse("0 * inf")
            return x * y
        if isinstance(node.op, ast.Div):
            if y == 0:
                self.refuse("division by zero")
            return INF if x == INF else Fraction(x) / y if y != INF else Fraction(0)
        if isinstance(node.op, ast.Pow) and isinstance(y, int) and 0 <= y <= 64 and x != INF:
            return Fraction(x) ** y
        self.refuse(f"the operator {type(node.op).__name__}")

    def _BoolOp(self, node):
        if isinstance(node.op, ast.And):
            return all(self._truth(self.run(v)) for v in node.values)
        return any(self._truth(self.run(v)) for v in node.values)

    def _IfExp(self, node):
        return self.run(node.body) if self._truth(self.run(node.test)) else self.run(node.orelse)

    def _Compare(self, node):
        left = self.run(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.run(right_node)
            if isinstance(left, TensorSet) and isinstance(right, TensorSet) and isinstance(op, (ast.Eq, ast.NotEq)):
                ok = (left.items == right.items) == isinstance(op, ast.Eq)
            else:
                x, y = _num(left, self.where), _num(right, self.where)
                table = {ast.Eq: x == y, ast.NotEq: x != y, ast.Lt: x < y, ast.LtE: x <= y, ast.Gt: x > y,
                         ast.GtE: x >= y}
                if type(op) not in table:
                    self.refuse(f"the comparison {type(op).__name__}")
                ok = table[type(op)]
            if not ok:
                return False
            left = right
        return True

    def _Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1 and not node.keywords:
            v = self.run(node.args[0])
            if isinstance(v, TensorSet):
                return len(v.items)
            self.refuse("len() of something that is not a tensor set")
        if isinstance(node.func, ast.Name) and node.func.id in ("min", "max") and node.args and not node.keywords:
            vals = [_num(self.run(a), self.where) for a in node.args]
            return (min if node.func.id == "min" else max)(vals)
        self.refuse("this function call")


def evaluate(value, ctx: Context, where: str):
    """`value` (a YAML number, bool or expression text) evaluated in `ctx`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Fraction)) or value == INF:
        return value
    if not isinstance(value, str):
        raise Refused(f"{where}: expected a number or an expression, not {type(value).__name__}")
    text = value.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise Refused(f"{where}: cannot parse expression {text!r}") from None
    return _Eval(text, ctx, where).run(tree)


def number(value, ctx: Context, where: str):
    """An exact number (Fraction/int) or INF."""
    return _num(evaluate(value, ctx, where), where)


def tensor_set(value, ctx: Context, where: str):
    """A TensorSet, or a HeldBy marker."""
    v = evaluate(value, ctx, where)
    if not isinstance(v, (TensorSet, HeldBy)):
        raise Refused(f"{where}: expected a set of tensors, got {value!r}")
    return v
